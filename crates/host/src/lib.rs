//! trapbox's own process discipline, shared by the engines, the process model and the tools:
//! its descriptors kept in a private range out of the guest's reach ([`fds`]), helper threads
//! that never take a signal meant for a guest thread, CPU placement, memory files, and thin
//! wrappers over the host's memory-mapping calls. It knows nothing of guests: callers decide
//! where these may act.

pub mod fds;
pub mod kick;
mod sys;
mod thread;

pub use sys::*;
pub use thread::spawn_helper;
