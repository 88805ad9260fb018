//! The host-side plumbing of a boot, as small wrappers around libc: kicking a vCPU thread out of
//! KVM_RUN with a signal, the terminal's raw mode for an interactive guest console, and polled
//! reads of the console input. Every unsafe block is here or in `vm.rs`.

use std::io;
use std::os::fd::RawFd;

/// The signal that interrupts a vCPU thread's KVM_RUN (the engine uses SIGRTMIN+2).
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the kick handler: it does nothing, but without SA_RESTART its arrival makes a
/// blocked KVM_RUN (a halted vCPU included) return EINTR.
pub fn install_kick_handler() -> io::Result<()> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))
}

/// The calling thread, for [`kick`].
#[derive(Clone, Copy, Debug)]
pub struct ThreadId(libc::pthread_t);

impl ThreadId {
    /// The calling thread.
    pub fn current() -> ThreadId {
        // SAFETY: pthread_self has no preconditions and cannot fail.
        ThreadId(unsafe { libc::pthread_self() })
    }
}

/// Sends the kick signal to `t`. The caller keeps the thread alive until it is joined (the
/// vCPU threads are scoped threads the caller joins), so the handle is valid.
pub fn kick(t: ThreadId) {
    // SAFETY: `t` names a live thread of this process (see above); the signal has a handler.
    unsafe { libc::pthread_kill(t.0, kick_signal()) };
}

/// Waits up to `timeout_ms` for `fd` to be readable (or at end of file).
pub fn poll_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, alive for the call.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    match n {
        n if n < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// read(2) on `fd` (no buffering: the bytes go to the guest as they come).
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length for the call.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Puts a terminal in raw mode (keys go to the guest as typed, Ctrl-C included) until dropped.
pub struct RawTerminal {
    fd: RawFd,
    saved: libc::termios,
}

impl RawTerminal {
    /// Raw mode on `fd` if it is a terminal; None otherwise.
    pub fn enable(fd: RawFd) -> Option<RawTerminal> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid termios for tcgetattr to write.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return None;
        }
        let saved = t;
        // SAFETY: cfmakeraw edits the termios in place.
        unsafe { libc::cfmakeraw(&mut t) };
        // Keep output processing: the guest's console sends \r\n already, and trapbox's own
        // messages at the end are printed after the mode is restored.
        // SAFETY: `t` is a valid termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
            return None;
        }
        Some(RawTerminal { fd, saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the termios read in `enable` on the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}
