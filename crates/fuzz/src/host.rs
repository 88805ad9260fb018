//! The one host call the fuzzer makes on the guest's behalf outside the trap API: in stdin
//! file mode, descriptor 0 (the guest's stdin: guest descriptors are trapbox's at the same
//! numbers) becomes a fresh descriptor of the input file before each execution, so the
//! program reads it from the start whatever the last execution read.

use std::os::fd::AsRawFd;
use std::path::Path;

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
