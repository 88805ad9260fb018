//! The guest's descriptors in a snapshot: which were open, a duplicate of each (so one the
//! guest closes or replaces after the snapshot can be put back, with its close-on-exec flag),
//! and each seekable one's offset (an offset belongs to the open file, which the duplicate
//! shares, so a read after the snapshot moves it for both: it is set back by number).
//!
//! The duplicates live in trapbox's private descriptor range (the guest cannot name them);
//! where that range is full, a descriptor is kept without one, and the guest closing it after
//! the snapshot cannot be undone.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// One descriptor open at the snapshot.
pub(super) struct Kept {
    fd: RawFd,
    /// The same open file, in trapbox's private range.
    dup: Option<File>,
    cloexec: bool,
    /// Its offset, if it has one (a regular file or directory).
    offset: Option<i64>,
}

/// Records `fds`.
pub(super) fn keep(fds: &BTreeSet<RawFd>) -> Vec<Kept> {
    fds.iter()
        .map(|&fd| {
            // SAFETY: fcntl and lseek on a descriptor number only query it; a failure is an
            // answer.
            let (flags, offset) = unsafe { (libc::fcntl(fd, libc::F_GETFD), libc::lseek(fd, 0, libc::SEEK_CUR)) };
            // The copy is made and moved to the private range under the descriptor lock, so
            // no listing of the guest's descriptors sees it at a low number.
            let dup = trapbox_host::fds::private_of_guest_file(|| {
                // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, owned by the File.
                let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
                if copy < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: `copy` is a fresh descriptor nothing else owns.
                Ok(unsafe { File::from_raw_fd(copy) })
            })
            .ok();
            Kept {
                fd,
                dup,
                cloexec: flags >= 0 && flags & libc::FD_CLOEXEC != 0,
                offset: (offset >= 0).then_some(offset),
            }
        })
        .collect()
}

/// Puts back each kept descriptor the guest closed or replaced since (if `touched`: a call
/// since may have), and every offset (if `moved`: a call since may have moved one).
pub(super) fn put_back(kept: &[Kept], touched: bool, moved: bool) {
    for k in kept {
        if let (true, Some(dup)) = (touched, &k.dup) {
            if !same_file(k.fd, dup) {
                let flags = if k.cloexec { libc::O_CLOEXEC } else { 0 };
                // SAFETY: dup3 onto a guest descriptor number the snapshot had (trapbox's own
                // numbers are never in a guest's list); it closes what the guest put there.
                unsafe { libc::dup3(dup.as_raw_fd(), k.fd, flags) };
            }
        }
        if let (true, Some(off)) = (moved, k.offset) {
            // SAFETY: lseek on the guest's descriptor, back to where the snapshot had it.
            unsafe { libc::lseek(k.fd, off, libc::SEEK_SET) };
        }
    }
}

/// Whether `fd` is open on the same file as `dup`.
fn same_file(fd: RawFd, dup: &File) -> bool {
    // SAFETY: fstat into zeroed structs on two descriptor numbers; a failure is an answer.
    unsafe {
        let (mut a, mut b): (libc::stat, libc::stat) = (std::mem::zeroed(), std::mem::zeroed());
        libc::fstat(fd, &mut a) == 0
            && libc::fstat(dup.as_raw_fd(), &mut b) == 0
            && (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)
    }
}
