//! trapbox runs unmodified Linux x86-64 programs inside a KVM virtual machine whose guest
//! virtual addresses equal the host's, and turns every syscall, fault and breakpoint into a
//! [`Trap`] handed to a [`TrapHandler`].
//!
//! ```no_run
//! use trapbox::{Sandbox, Passthrough};
//! let mut sb = Sandbox::builder("/bin/echo").args(["echo", "hello"]).build()?;
//! let report = sb.run(Passthrough)?;
//! std::process::exit(report.outcome.exit_status());
//! # Ok::<(), trapbox::SandboxError>(())
//! ```
//!
//! Layers, bottom up: [`vm`] (KVM, long mode, trap paths), [`process`] (loader, address
//! space, syscall ABI table, passthrough), [`trap`] (the backend-neutral API), [`sandbox`]
//! (the run loop that joins them). See docs/ARCHITECTURE.md.

pub mod boot;
mod le;
pub mod process;
pub mod sandbox;
pub mod tools;
pub mod trap;
pub mod vm;

pub use sandbox::{Report, Sandbox, SandboxBuilder, SandboxError, VdsoMode};
pub use trap::{
    Action, Deny, Fault, Guest, GuestAddr, Kicker, Observe, Outcome, Passthrough, Regs, Syscall, Trap, TrapHandler,
};
