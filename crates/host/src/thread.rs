//! Helper threads of trapbox's own.

/// Starts a helper thread (watchdog, trace writer or reader) with every signal blocked from
/// its first instruction. A helper must never be the thread a guest's signal lands on, since
/// only a vCPU's thread can kick its vCPU. Blocking from inside the new thread is too late: a
/// thread inherits its creator's mask (the guest's), and until it first runs, the kernel may
/// pick it for a process-directed signal (it does when the vCPU's thread already has one
/// pending); the forwarder then runs there, kicks no vCPU, and a guest waiting in pause()
/// never wakes. So the creator blocks everything around the spawn.
pub fn spawn_helper<T: Send + 'static>(
    builder: std::thread::Builder,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    // SAFETY: sigset manipulation on local sets; the calling thread's mask is put back below.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let spawned = builder.spawn(body);
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    spawned
}
