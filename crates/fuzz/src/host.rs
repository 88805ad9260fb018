//! Where the fuzzer meets the host's descriptors, which are the guest's at the same numbers.
//!
//! In stdin file mode, descriptor 0 becomes a fresh descriptor of the input file before each
//! execution, so the program reads it from the start whatever the last execution read.
//!
//! The fuzzer's own thread opens files (seeds, crashes, stats, the queues) while the guest
//! runs, and so does library code on it that trapbox does not see (glibc's `tzset` reads
//! /etc/localtime the first time a time is formatted). In the guest's descriptor table each
//! would take the lowest free number, which may be one the guest closed during the execution:
//! the reset then puts the guest's file back over it, and the fuzzer's `close` closes the
//! guest's. So the fuzzer's thread gets a descriptor table of its own ([`own_table`]): nothing
//! it opens is ever at a guest's number. Its opens also stay under [`files`], the lock a
//! reset's listing holds, for any thread that still shares the guest's table.

use std::os::fd::AsRawFd;
use std::path::Path;

/// Runs `f`, which opens and closes files, where no reset lists the guest's descriptors.
pub fn files<T>(f: impl FnOnce() -> T) -> T {
    let _stock = trapbox_host::fds::stocktaking();
    f()
}

/// Gives the calling thread a private copy of the descriptor table (`unshare(CLONE_FILES)`):
/// what it opens and closes from now on never touches the guest's numbers. For a thread that
/// needs none of the guest's descriptors (the copies it holds of them only keep those files
/// open a little longer, as a forked child's would).
pub fn own_table() -> std::io::Result<()> {
    // SAFETY: unshare(CLONE_FILES) only replaces the calling thread's descriptor table with a
    // copy; every descriptor number valid before stays valid on this thread.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes descriptor 0 a new descriptor of `path`.
pub fn stdin_from(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: dup2 only replaces descriptor 0, which is the guest's stdin and never one of
    // trapbox's own (those live in the private range); `f` stays valid for the call.
    if unsafe { libc::dup2(f.as_raw_fd(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
