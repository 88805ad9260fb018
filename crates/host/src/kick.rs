//! Kicking the guest CPU a host thread runs out of guest code, from a signal handler: each
//! engine's CPU names the byte its run loop checks (a vCPU's `immediate_exit`, an in-process
//! CPU's kick byte), and a kick is one store to it.

use std::cell::Cell;

thread_local! {
    /// The kick byte of the guest CPU this host thread runs (a vCPU's `kvm_run.immediate_exit`,
    /// an in-process CPU's block byte), for the kick signal handler (each guest thread has its
    /// own CPU on its own host thread). Const-initialised
    /// with no destructor, so reading it from a signal handler is sound.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// Makes this host thread's vCPU leave (or not enter) guest mode soon. Async-signal-safe: it
/// is one store.
pub fn from_signal_handler() {
    let p = IMMEDIATE_EXIT.with(Cell::get);
    if !p.is_null() {
        // SAFETY: p points at the kick byte of the CPU that registered it (a vCPU's kvm_run
        // mapping, an in-process CPU's region), which lives until that CPU is dropped, which
        // clears the pointer first. A volatile byte store cannot tear.
        unsafe { p.write_volatile(1) };
    }
}

/// Makes kicks on the calling host thread set `p` (the in-process engine's kick byte).
pub fn claim(p: *mut u8) {
    IMMEDIATE_EXIT.with(|c| c.set(p));
}

/// Forgets `p` as the calling thread's kick target, if it is (its owner goes away).
pub fn release(p: *mut u8) {
    IMMEDIATE_EXIT.with(|c| {
        if c.get() == p {
            c.set(std::ptr::null_mut())
        }
    });
}
