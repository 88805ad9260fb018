//! Tools built on the trap API: each is a handler (or a driver around one). They stand on
//! `trapbox-trap` and `trapbox-abi`, with `trapbox-host` for trapbox's own files and threads
//! and `trapbox-vdso` for the time buffer; the crate does not depend on the engines
//! (`trapbox-vm`) or the process model (`trapbox-process`), so the compiler holds that a tool
//! sees a guest only through [`Guest`](trapbox_trap::Guest) and its capabilities.

#![forbid(unsafe_code)]

pub mod record;
pub mod trace;
