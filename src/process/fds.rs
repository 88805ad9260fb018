//! trapbox's own file descriptors, out of the guest's reach (invariant 4).
//!
//! Everything trapbox opens for itself (the KVM fds, its diagnostic stream, trace files) lives
//! at high numbers, so the guest's descriptors number from 3 as natively. Any syscall argument
//! naming one of them fails with EBADF as if it were closed, and a newly opened descriptor that
//! turns out to be a way into trapbox (`/proc/<trapbox>/mem`, `/dev/kvm`) is closed again and
//! the open fails with EACCES.

use std::collections::BTreeSet;
use std::os::fd::RawFd;

/// The set of descriptors the guest must not name.
#[derive(Debug, Default, Clone)]
pub struct FdGuard {
    reserved: BTreeSet<RawFd>,
}

/// Descriptors open in this process now.
pub fn open_fds() -> BTreeSet<RawFd> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// How many numbers the private range has: room for a vCPU per guest thread and, in a
/// replay, a memory file per stored file the guest maps (a Python program with its extension
/// modules maps dozens).
pub const PRIVATE_RANGE: i32 = 256;

/// Lowest number for trapbox's own descriptors: [`PRIVATE_RANGE`] below the soft
/// RLIMIT_NOFILE, so the guest's descriptors number from 3 as natively and reach trapbox's
/// only after it has opened hundreds of files. (Numbers in the range that trapbox does not use
/// are the guest's like any other.)
pub fn private_fd_base() -> i32 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: r is a valid rlimit to write.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    let soft = r.rlim_cur.min(1 << 20) as i32;
    (soft - PRIVATE_RANGE).max(64)
}

impl FdGuard {
    /// Reserves every descriptor open now that was not in `inherited` (those belong to the
    /// guest, as they would natively), and every one at or above `private_base` (where trapbox
    /// keeps its own, including those opened before the sandbox, like a trace file).
    pub fn from_difference(inherited: &BTreeSet<RawFd>, private_base: RawFd) -> FdGuard {
        FdGuard {
            reserved: open_fds().into_iter().filter(|fd| !inherited.contains(fd) || *fd >= private_base).collect(),
        }
    }

    /// Adds one descriptor.
    pub fn reserve(&mut self, fd: RawFd) {
        self.reserved.insert(fd);
    }

    /// Forgets the reserved descriptors that are no longer open and reserves `new` (a forked
    /// child replaced its KVM descriptors).
    pub fn replace_closed(&mut self, new: impl IntoIterator<Item = RawFd>) {
        let open = open_fds();
        self.reserved.retain(|fd| open.contains(fd));
        self.reserved.extend(new);
    }

    /// Whether `fd` is trapbox's.
    pub fn is_reserved(&self, fd: i64) -> bool {
        i32::try_from(fd).is_ok_and(|fd| self.reserved.contains(&fd) || privatized().contains(&fd))
    }

    /// The reserved descriptors, in ascending order (close_range skips them in one pass).
    pub fn reserved(&self) -> BTreeSet<RawFd> {
        let mut all = self.reserved.clone();
        all.extend(privatized().iter().copied());
        all
    }
}

/// Descriptors [`privatize`] made, which every sandbox treats as trapbox's (like those open in
/// the private range when it was built): files a tool opens while the guest runs.
fn privatized() -> std::sync::MutexGuard<'static, BTreeSet<RawFd>> {
    static PRIVATE: std::sync::Mutex<BTreeSet<RawFd>> = std::sync::Mutex::new(BTreeSet::new());
    PRIVATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serializes looking through the open descriptors to tell the guest's from trapbox's (a
/// sandbox being built, execve's close-on-exec sweep) with trapbox opening descriptors that
/// are briefly at a low number: a sandbox built meanwhile would take such a number for
/// trapbox's for good (a replay later lending it to an mmap got EBADF), and the sweep would
/// close it as the guest's (the number, reused by the guest's next open, was then read and
/// closed by a helper thread).
pub fn stocktaking() -> std::sync::MutexGuard<'static, ()> {
    static STOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    STOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The file `make` opens, moved straight into the private range under [`stocktaking`]: the
/// way to get a descriptor that a helper thread keeps (or that the guest's thread hands to
/// one). It fails when the range's few numbers are all taken.
pub fn private(make: impl FnOnce() -> std::io::Result<std::fs::File>) -> std::io::Result<std::fs::File> {
    let _stock = stocktaking();
    privatize(make()?)
}

/// Moves a file trapbox opened for itself (a trace or record file) into the private range, so
/// the guest's descriptors number as they would natively and the guest cannot name, close or
/// inherit it across exec.
pub fn privatize(f: std::fs::File) -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor.
    let n = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, private_fd_base()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    privatized().insert(n);
    // SAFETY: n is a fresh descriptor owned by nothing else; `f` closes the old number.
    Ok(unsafe { std::fs::File::from_raw_fd(n) })
}

/// Whether open descriptor `fd` is a KVM object: the device, a VM, a vCPU or their kin
/// (anonymous inodes named kvm-*). Mapping a vCPU's gives its run page, whose registers KVM
/// loads at the next entry.
pub fn is_kvm(fd: i64) -> bool {
    let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else { return false };
    let t = target.to_string_lossy();
    t == "/dev/kvm" || t.starts_with("anon_inode:kvm")
}

/// Whether an open descriptor `fd` leads into trapbox: the memory of trapbox's process (the
/// guest's pid is trapbox's) or the KVM device.
pub fn leads_into_trapbox(fd: i64) -> bool {
    let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else { return false };
    let t = target.to_string_lossy();
    if t == "/dev/kvm" || t.starts_with("anon_inode:kvm") {
        return true;
    }
    let pid = std::process::id().to_string();
    let mut parts = t.trim_start_matches('/').split('/');
    if parts.next() != Some("proc") || parts.next() != Some(pid.as_str()) {
        return false;
    }
    let rest: Vec<&str> = parts.collect();
    matches!(rest.as_slice(), ["mem"] | ["task", _, "mem"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn privatize_moves_above_the_base() {
        let f = privatize(std::fs::File::open("/dev/null").unwrap()).unwrap();
        assert!(f.as_raw_fd() >= private_fd_base());
        let g = FdGuard::from_difference(&open_fds(), f.as_raw_fd());
        assert!(g.is_reserved(f.as_raw_fd() as i64));
    }

    #[test]
    fn leads_into_trapbox_catches_proc_mem() {
        let f = std::fs::File::open("/proc/self/mem").unwrap();
        assert!(leads_into_trapbox(f.as_raw_fd() as i64));
        let g = std::fs::File::open("/proc/self/maps").unwrap();
        assert!(!leads_into_trapbox(g.as_raw_fd() as i64));
    }

    #[test]
    fn from_difference_reserves_new_fds_only() {
        let f = std::fs::File::open("/dev/null").unwrap();
        // Other tests open and close descriptors concurrently: build "before" from the
        // current set minus ours rather than from an earlier snapshot.
        let mut before = open_fds();
        before.remove(&f.as_raw_fd());
        let g = FdGuard::from_difference(&before, i32::MAX);
        assert!(g.is_reserved(f.as_raw_fd() as i64));
        assert!(!g.is_reserved(0));
        assert!(!g.is_reserved(-100));
        assert!(!g.is_reserved(1 << 40));
    }
}
