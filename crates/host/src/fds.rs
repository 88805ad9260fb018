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
        i32::try_from(fd)
            .is_ok_and(|fd| self.reserved.contains(&fd) || privatized().contains(&fd) || guest_files().contains(&fd))
    }

    /// The reserved descriptors, in ascending order (close_range skips them in one pass).
    pub fn reserved(&self) -> BTreeSet<RawFd> {
        let mut all = self.reserved.clone();
        all.extend(privatized().iter().copied());
        all.extend(guest_files().iter().copied());
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

/// The descriptor bookkeeping's locks, held while the process forks: a helper thread may hold
/// one at that moment (the trace writer checksums the program under [`stocktaking`]), and the
/// child, which has only the forking thread, would find it locked for ever.
pub struct ForkHold {
    _stock: std::sync::MutexGuard<'static, ()>,
    _private: std::sync::MutexGuard<'static, BTreeSet<RawFd>>,
}

/// Takes the locks a forked child needs free (see [`ForkHold`]); drop it after the fork, in
/// the parent and in the child.
pub fn hold_across_fork() -> ForkHold {
    // The order every other path takes them in: stocktaking, then the private set.
    let stock = stocktaking();
    ForkHold { _stock: stock, _private: privatized() }
}

/// The file `make` opens, moved straight into the private range under [`stocktaking`]: the
/// way to get a descriptor that a helper thread keeps (or that the guest's thread hands to
/// one). It fails when the range's few numbers are all taken.
pub fn private(make: impl FnOnce() -> std::io::Result<std::fs::File>) -> std::io::Result<std::fs::File> {
    let _stock = stocktaking();
    privatize(make()?)
}

/// Like [`private`], for trapbox's own descriptor of a file that is the guest's (a recorder
/// reading a mapped library to store it): the number is trapbox's, but the file is not, so
/// the guest opening it by its name is not an escape ([`leads_into_trapbox`] looks only at
/// the files of [`privatize`]). A forked child inherits such a descriptor while its parent's
/// helper still holds it; the child's guest must still be able to open its own libc.
pub fn private_of_guest_file(make: impl FnOnce() -> std::io::Result<std::fs::File>) -> std::io::Result<std::fs::File> {
    let _stock = stocktaking();
    into_private_range(make()?, Owner::Guest)
}

/// Descriptors [`private_of_guest_file`] made: trapbox's numbers, the guest's files.
fn guest_files() -> std::sync::MutexGuard<'static, BTreeSet<RawFd>> {
    static GUEST: std::sync::Mutex<BTreeSet<RawFd>> = std::sync::Mutex::new(BTreeSet::new());
    GUEST.lock().unwrap_or_else(|e| e.into_inner())
}

/// Moves a file trapbox opened for itself (a trace or record file) into the private range, so
/// the guest's descriptors number as they would natively and the guest cannot name, close or
/// inherit it across exec.
pub fn privatize(f: std::fs::File) -> std::io::Result<std::fs::File> {
    into_private_range(f, Owner::Trapbox)
}

/// Whose file a descriptor in the private range is.
enum Owner {
    /// trapbox's own ([`privatize`]).
    Trapbox,
    /// The guest's, held by trapbox ([`private_of_guest_file`]).
    Guest,
}

/// Moves `f` to a number in the private range, recorded as `owner`'s file.
fn into_private_range(f: std::fs::File, owner: Owner) -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor.
    let n = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, private_fd_base()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A number is reused once closed: it is the newest file's. (Both sets, always locked in
    // this order.)
    let (mut trapbox, mut guest) = (privatized(), guest_files());
    let (mine, other) = match owner {
        Owner::Trapbox => (&mut trapbox, &mut guest),
        Owner::Guest => (&mut guest, &mut trapbox),
    };
    mine.insert(n);
    other.remove(&n);
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

/// Whether open descriptor `fd` leads into trapbox, by what the open file is, however it was
/// named: a process's memory (`/proc/N/mem` and `/proc/N/task/M/mem` for any N: the guest's
/// threads are trapbox's threads, and its parent and children are trapbox processes — the
/// kernel's own name for the file, which symlinks, `thread-self` and dirfd-relative opens all
/// resolve to), a KVM object, the KVM device under any name (character device 10:232), or a
/// regular file trapbox opened for itself ([`privatize`]: its trace, its memory files),
/// reached again through `/proc/self/fd` or `map_files`. (Files the guest shares with trapbox
/// — the standard streams trapbox's diagnostics go to — are the guest's too.)
pub fn leads_into_trapbox(fd: i64) -> bool {
    let Ok(fd) = i32::try_from(fd) else { return false };
    if is_kvm(fd.into()) {
        return true;
    }
    if let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        if is_proc_mem(&target.to_string_lossy()) {
            return true;
        }
    }
    let Some(st) = stat_of(fd) else { return false };
    const KVM_DEV: libc::dev_t = 10 << 8 | 232;
    if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == KVM_DEV {
        return true;
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return false;
    }
    let own: Vec<RawFd> = privatized().iter().copied().filter(|o| *o != fd).collect();
    own.into_iter().any(|o| stat_of(o).is_some_and(|t| (t.st_dev, t.st_ino) == (st.st_dev, st.st_ino)))
}

/// `fstat` of a descriptor.
fn stat_of(fd: i32) -> Option<libc::stat> {
    // SAFETY: fstat writes a stat into the local; a closed fd gives an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
}

/// Whether `path` (the kernel's name of an open file) is a process's memory file.
fn is_proc_mem(path: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["proc", pid, "mem"] => digits(pid),
        ["proc", pid, "task", tid, "mem"] => digits(pid) && digits(tid),
        _ => false,
    }
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
    fn leads_into_trapbox_catches_proc_mem_by_any_name() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        for name in [
            "/proc/self/mem".to_string(),
            "/proc/thread-self/mem".to_string(),
            format!("/proc/{tid}/mem"),
            format!("/proc/self/task/{tid}/mem"),
        ] {
            let f = std::fs::File::open(&name).unwrap();
            assert!(leads_into_trapbox(f.as_raw_fd() as i64), "{name}");
        }
        // Through a symlink the guest makes.
        let dir = std::env::temp_dir().join(format!("tb-fds-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let link = dir.join("innocent");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/proc/self/mem", &link).unwrap();
        let f = std::fs::File::open(&link).unwrap();
        assert!(leads_into_trapbox(f.as_raw_fd() as i64));
        let _ = std::fs::remove_dir_all(&dir);
        let g = std::fs::File::open("/proc/self/maps").unwrap();
        assert!(!leads_into_trapbox(g.as_raw_fd() as i64));
    }

    #[test]
    fn leads_into_trapbox_catches_trapbox_files_reopened() {
        let mine = privatize(crate::memory_file("trapbox-test", b"x").unwrap()).unwrap();
        // The same file opened again through /proc/self/fd is trapbox's file.
        let again = std::fs::File::open(format!("/proc/self/fd/{}", mine.as_raw_fd())).unwrap();
        assert!(leads_into_trapbox(again.as_raw_fd() as i64));
        // An eventfd shares the anonymous inode with trapbox's KVM descriptors, and is fine.
        // SAFETY: eventfd creates a descriptor.
        let e = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(!leads_into_trapbox(e.into()));
        // SAFETY: closing the eventfd made above.
        unsafe { libc::close(e) };
    }

    #[test]
    fn is_proc_mem_needs_the_shape() {
        assert!(is_proc_mem("/proc/123/mem"));
        assert!(is_proc_mem("/proc/123/task/456/mem"));
        assert!(!is_proc_mem("/proc/123/maps"));
        assert!(!is_proc_mem("/home/u/proc/1/mem"));
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
