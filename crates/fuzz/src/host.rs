//! Where the fuzzer meets the host's descriptors, which are the guest's at the same numbers.
//!
//! In stdin file mode, descriptor 0 becomes a fresh descriptor of the input file before each
//! execution, so the program reads it from the start whatever the last execution read.
//!
//! The fuzzer's own thread opens files (seeds, crashes, stats, the queues) while the guest
//! runs, and each would take the lowest free number — which a reset on the guest's thread,
//! listing the guest's descriptors to close those made since the snapshot, would take for the
//! guest's. So it opens, uses and closes every file under [`files`], the lock a reset's
//! listing also holds.

use std::os::fd::AsRawFd;
use std::path::Path;

/// Runs `f`, which opens and closes files, where no reset lists the guest's descriptors.
pub fn files<T>(f: impl FnOnce() -> T) -> T {
    let _stock = trapbox_host::fds::stocktaking();
    f()
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
