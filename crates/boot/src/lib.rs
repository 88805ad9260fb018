//! The `boot` layer: booting a Linux kernel directly in KVM by the x86 boot protocol (64-bit
//! entry), with a 16550 console on the terminal and diagnostics that say why a kernel cannot
//! boot. Independent of the ELF engine except for `vm`'s arch helpers and KVM-kind detection.
//!
//! Files, one concept each: `bzimage.rs` (the setup header and its checks), `loader.rs` (plan
//! and load over linux-loader), `layout.rs` (guest-physical map), `vm.rs` (the boot VM: RAM,
//! irqchip, PIT, vCPUs), `mptable.rs` (SMP without ACPI), `serial.rs` (vm-superio's 16550 and
//! the console watcher), `devices.rs` (the port-I/O bus, i8042), `cmos.rs` (the RTC), `diagnose.rs` (outcomes in words and
//! exit statuses), `run.rs` (one boot, start to end), `host.rs` (signals, terminal, polling),
//! `testimage.rs` (the tiny kernel image trapbox builds for its own tests).
//!
//! Unsafe code is confined to `vm.rs` (registering guest RAM) and `host.rs` (libc wrappers);
//! every other file forbids it.

pub mod bzimage;
pub mod cmos;
pub mod devices;
pub mod diagnose;
pub mod host;
pub mod layout;
pub mod loader;
pub mod mptable;
pub mod run;
pub mod serial;
pub mod testimage;
pub mod vm;

pub use bzimage::{BootError, BzImage};
pub use diagnose::{Outcome, ResetPath};
pub use run::{boot, default_cmdline, BootConfig, BootReport, ConsoleInput, Error};
