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
//! This crate is the facade and the `trapbox` command; the work is done by the workspace's
//! crates, bottom up (each depends only on those before it):
//!
//! - [`abi`] (`trapbox-abi`): the x86-64 Linux user ABI — the syscall table and its argument
//!   walker, registers, signal frames, XSAVE, CPUID views, clone requests;
//! - `trapbox-host`: trapbox's own process discipline (private descriptors, helper threads);
//!   `trapbox-vdso`: the time vDSO recorded and replayed runs use;
//! - [`trap`] (`trapbox-trap`): the backend-neutral API — [`Trap`], [`Action`], [`Guest`],
//!   [`TrapHandler`], the [`trap::Process`] capability and a scripted engine for tests;
//! - [`vm`] (`trapbox-vm`): the engine chosen at start-up, over `trapbox-kvm` (the KVM
//!   engine: hardware and PVM trap paths) and `trapbox-inproc` (the in-process engine);
//! - [`process`] (`trapbox-process`): the Linux process model on either engine, and
//!   [`Sandbox`], the run loop;
//! - [`tools`] (`trapbox-tools`): the tracer and record/replay, on the trap API alone;
//! - [`fuzz`] (`trapbox-fuzz`), [`gdb`], [`repl`]: the fuzzer (on LibAFL, with the engines'
//!   [`trap::Snapshots`]), the debugger's stub and the assembly REPL, on the trap API too;
//! - [`boot`] (`trapbox-boot`): direct boot of a Linux kernel.
//!
//! See docs/ARCHITECTURE.md.

pub use trapbox_abi as abi;
pub use trapbox_boot as boot;
pub use trapbox_fuzz as fuzz;
pub use trapbox_gdb as gdb;
pub use trapbox_process as process;
pub use trapbox_process::sandbox;
pub use trapbox_repl as repl;
pub use trapbox_tools as tools;
pub use trapbox_trap as trap;
pub use trapbox_vm as vm;

pub use sandbox::{Report, Sandbox, SandboxBuilder, SandboxError, VdsoMode};
pub use trap::{
    Action, Deny, Fault, Guest, GuestAddr, Kicker, Observe, Outcome, Passthrough, Process, Regs, Syscall, Trap,
    TrapHandler,
};
