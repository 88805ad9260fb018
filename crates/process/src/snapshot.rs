//! Snapshots of a guest process's memory, mappings, program break, descriptors and signal
//! state (the
//! engine-neutral part of [`trapbox_trap::Snapshots`]; registers and vector state are the
//! run loop's, see `sandbox::guest`).
//!
//! Guest memory is trapbox's memory at the same addresses on both engines, so one mechanism
//! finds what the guest wrote, whichever engine runs it: the kernel's write tracking of
//! trapbox's own pages. Where the kernel has it (Linux 6.7+: userfaultfd's asynchronous
//! write-protection, read back with the page map's PAGEMAP_SCAN), the guest's writable
//! regions are write-protected at each take and restore; a write — the guest's own
//! instruction in-process, or through KVM, whose faults go through the host's page tables —
//! lifts the protection of its page and marks it written, and a restore visits exactly those
//! pages. Elsewhere a restore compares every present page of the writable regions with the
//! snapshot's copy. (The soft-dirty bits would serve too, but kernels are built without them:
//! this machine's is.)
//!
//! A page the snapshot had is copied back; a page it did not have (never touched before it)
//! is dropped (MADV_DONTNEED: zeroes for anonymous memory, the file's bytes for a private file
//! mapping), which is what it held. A page the snapshot had that is not present now (the
//! guest dropped it, or unmapped and mapped it again) is copied back too.
//!
//! Written-page tracking is relative to the last take or restore, so the cheap path is for the
//! snapshot last taken or restored; any other is restored by comparing every page of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;

use trapbox_trap::{Restored, SnapshotError, SnapshotId};
use trapbox_vm::MemoryMirror;

use super::Process;

const PAGE: u64 = 4096;
/// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;

/// userfaultfd's ABI (linux/userfaultfd.h), newer than the libc crate's.
mod uffd {
    pub const API: u64 = 0xaa;
    pub const FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
    pub const FEATURE_WP_ASYNC: u64 = 1 << 15;
    pub const IOC_API: u64 = 0xc018_aa3f;
    pub const IOC_REGISTER: u64 = 0xc020_aa00;
    pub const IOC_WRITEPROTECT: u64 = 0xc018_aa06;
    pub const REGISTER_MODE_WP: u64 = 1 << 1;
    pub const WRITEPROTECT_MODE_WP: u64 = 1;
    /// PAGEMAP_SCAN on /proc/self/pagemap (linux/fs.h), and its flags and categories.
    pub const IOC_PAGEMAP_SCAN: u64 = 0xc060_6610;
    pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
    pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
    pub const PAGE_IS_PRESENT: u64 = 1 << 3;
    pub const PAGE_IS_SWAPPED: u64 = 1 << 4;

    #[repr(C)]
    pub struct Api {
        pub api: u64,
        pub features: u64,
        pub ioctls: u64,
    }
    #[repr(C)]
    pub struct Register {
        pub start: u64,
        pub len: u64,
        pub mode: u64,
        pub ioctls: u64,
    }
    #[repr(C)]
    pub struct WriteProtect {
        pub start: u64,
        pub len: u64,
        pub mode: u64,
    }
    #[repr(C)]
    pub struct ScanArg {
        pub size: u64,
        pub flags: u64,
        pub start: u64,
        pub end: u64,
        pub walk_end: u64,
        pub vec: u64,
        pub vec_len: u64,
        pub max_pages: u64,
        pub category_inverted: u64,
        pub category_mask: u64,
        pub category_anyof_mask: u64,
        pub return_mask: u64,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct PageRegion {
        pub start: u64,
        pub end: u64,
        pub categories: u64,
    }
}

/// How the pages written since the last take or restore are found.
enum Tracker {
    /// userfaultfd asynchronous write-protection: the guest's writable regions registered
    /// with it, start and end.
    Written { uffd: File, registered: BTreeSet<(u64, u64)> },
    /// Every present page compared with the snapshot's copy.
    Compare,
}

/// The snapshots of one process, and what finds what changed.
pub struct Store {
    pagemap: File,
    tracker: Tracker,
    snaps: BTreeMap<u32, MemSnapshot>,
    next: u32,
    /// The snapshot memory equals but for the pages written since.
    clean_at: Option<u32>,
    /// A call since the last take or restore may have made guest descriptors.
    fds_touched: bool,
    /// A call since the last take or restore may have moved a descriptor's offset.
    offsets_moved: bool,
    /// A call since the last take or restore may have taken pages away without writing them
    /// (an unmap, a madvise, a truncated shared file): the page map must then be read to find
    /// the snapshot's pages that are gone. Without one, every page is where it was or was
    /// written, and the write tracking alone finds what to put back.
    maps_touched: bool,
}

/// The trapping thread's CPU state at a snapshot (the run loop takes and sets it).
#[derive(Clone)]
pub struct CpuSnapshot {
    /// General registers, RIP and RFLAGS.
    pub regs: trapbox_trap::Regs,
    /// x87/SSE/AVX/AVX-512 state, as an XSAVE image.
    pub xsave: Vec<u8>,
    /// FS base (the thread's TLS).
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
}

mod fds;

/// One snapshot.
struct MemSnapshot {
    cpu: CpuSnapshot,
    /// Regions: start, end, PROT_* bits.
    regions: Vec<(u64, u64, i32)>,
    brk: u64,
    /// The present pages of writable regions: address -> offset in `data`.
    pages: BTreeMap<u64, usize>,
    data: Vec<u8>,
    /// The guest's descriptors.
    fds: BTreeSet<RawFd>,
    /// Each one's duplicate and offset.
    kept: Vec<fds::Kept>,
    /// Dispositions, the mask, the alternate stack and pending signals: a program that blocks
    /// a signal after the snapshot must not leave it blocked for the next run.
    signals: crate::signals::SignalState,
}

fn host(what: &'static str) -> impl FnOnce(std::io::Error) -> SnapshotError {
    move |source| SnapshotError::Host { what, source: Box::new(source) }
}

impl Store {
    fn open() -> Result<Store, SnapshotError> {
        let pagemap = trapbox_host::fds::private(|| File::open("/proc/self/pagemap"))
            .map_err(host("cannot open /proc/self/pagemap"))?;
        // TRAPBOX_NO_WRITE_TRACKING makes restores compare, as on kernels without the
        // tracking (the tests use it to run that path here).
        let tracking = std::env::var_os("TRAPBOX_NO_WRITE_TRACKING").is_none().then(tracking_fd).flatten();
        let tracker = match tracking {
            Some(uffd) => Tracker::Written { uffd, registered: BTreeSet::new() },
            None => Tracker::Compare,
        };
        Ok(Store {
            pagemap,
            tracker,
            snaps: BTreeMap::new(),
            next: 1,
            clean_at: None,
            fds_touched: false,
            offsets_moved: false,
            maps_touched: true,
        })
    }

    /// Whether written pages are tracked (else restores compare).
    pub fn tracks_writes(&self) -> bool {
        matches!(self.tracker, Tracker::Written { .. })
    }

    /// The pagemap entries of `[start, end)`.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<u64>, SnapshotError> {
        let n = ((end - start) / PAGE) as usize;
        let mut raw = vec![0u8; n * 8];
        self.pagemap.read_exact_at(&mut raw, start / PAGE * 8).map_err(host("cannot read /proc/self/pagemap"))?;
        Ok(raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    }

    /// From here on, writes to `[start, end)` are tracked: registered with userfaultfd if it
    /// is not, and write-protected.
    fn protect(&mut self, start: u64, end: u64) -> Result<(), SnapshotError> {
        let Tracker::Written { uffd, registered } = &mut self.tracker else { return Ok(()) };
        if !registered.contains(&(start, end)) {
            let mut r = uffd::Register { start, len: end - start, mode: uffd::REGISTER_MODE_WP, ioctls: 0 };
            ioctl(uffd.as_raw_fd(), uffd::IOC_REGISTER, &mut r).map_err(host("cannot track writes"))?;
            registered.insert((start, end));
        }
        self.reprotect(start, end)
    }

    /// Write-protects `[start, end)` again (part of a registered region).
    fn reprotect(&self, start: u64, end: u64) -> Result<(), SnapshotError> {
        let Tracker::Written { uffd, .. } = &self.tracker else { return Ok(()) };
        let mut wp = uffd::WriteProtect { start, len: end - start, mode: uffd::WRITEPROTECT_MODE_WP };
        ioctl(uffd.as_raw_fd(), uffd::IOC_WRITEPROTECT, &mut wp).map(|_| ()).map_err(host("cannot write-protect"))
    }

    /// The pages of `[start, end)` written since it was last protected, as ranges: of the
    /// tracked regions only (the others, code and trapbox's placeholders between the guest's
    /// regions, are passed over whole, not walked), so one scan serves every region.
    fn written(&self, start: u64, end: u64) -> Result<Vec<(u64, u64)>, SnapshotError> {
        let mut out = Vec::new();
        let mut at = start;
        let mut vec = [uffd::PageRegion::default(); 64];
        while at < end {
            let mut arg = uffd::ScanArg {
                size: std::mem::size_of::<uffd::ScanArg>() as u64,
                flags: 0,
                start: at,
                end,
                walk_end: 0,
                vec: vec.as_mut_ptr() as u64,
                vec_len: vec.len() as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: uffd::PAGE_IS_WRITTEN | uffd::PAGE_IS_WPALLOWED,
                // Only pages that hold data: the kernel counts a hole in a tracked region as
                // written, and a stack region is megabytes of holes. (A page the snapshot had
                // that is a hole now is found through the page map below.)
                category_anyof_mask: uffd::PAGE_IS_PRESENT | uffd::PAGE_IS_SWAPPED,
                return_mask: uffd::PAGE_IS_WRITTEN,
            };
            let n = ioctl(self.pagemap.as_raw_fd(), uffd::IOC_PAGEMAP_SCAN, &mut arg)
                .map_err(host("cannot scan the page map"))?;
            out.extend(vec[..n as usize].iter().map(|r| (r.start, r.end)));
            if arg.walk_end <= at {
                break;
            }
            at = arg.walk_end;
        }
        Ok(out)
    }

    /// Forgets regions that no longer exist as registered (unmapped, or changed).
    fn forget_registrations(&mut self, regions: &[(u64, u64, i32)]) {
        if let Tracker::Written { registered, .. } = &mut self.tracker {
            registered.retain(|&(s, e)| regions.iter().any(|&(rs, re, p)| rs == s && re == e && writable(p)));
        }
    }
}

/// The process's userfaultfd for write tracking, opened before trapbox hardens itself: the
/// seccomp filter refuses `userfaultfd` (the ABI table says it reaches outside the box), so a
/// snapshot taken later could not open one, and restores fell back to comparing every page.
static TRACKING: std::sync::OnceLock<Option<File>> = std::sync::OnceLock::new();

/// Opens the write-tracking userfaultfd now, if it can be (called before hardening).
pub(crate) fn prepare_write_tracking() {
    TRACKING.get_or_init(write_tracking);
}

/// A descriptor of the process's write-tracking userfaultfd, if there is one.
fn tracking_fd() -> Option<File> {
    let f = TRACKING.get()?.as_ref()?;
    trapbox_host::fds::private(|| f.try_clone()).ok()
}

/// A userfaultfd with asynchronous write-protection, where the kernel has it (6.7+).
fn write_tracking() -> Option<File> {
    // SAFETY: userfaultfd takes flags only; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor just created and owned by nothing else.
    let f = unsafe { File::from_raw_fd(fd as RawFd) };
    let mut api =
        uffd::Api { api: uffd::API, features: uffd::FEATURE_WP_ASYNC | uffd::FEATURE_WP_UNPOPULATED, ioctls: 0 };
    ioctl(f.as_raw_fd(), uffd::IOC_API, &mut api).ok()?;
    trapbox_host::fds::privatize(f).ok()
}

/// ioctl(fd, request, arg): its result, or the error.
fn ioctl<T>(fd: RawFd, request: u64, arg: &mut T) -> std::io::Result<i64> {
    // SAFETY: `arg` is the structure `request` names (the callers pair them), alive and
    // writable for the call.
    let r = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as i64)
}

/// Guest memory at `addr` (a page of a region the guest has; the host maps it at the same
/// address, readable since the region is writable).
fn page(addr: u64) -> &'static [u8] {
    // SAFETY: the caller names a page of a writable guest region, which the host maps at the
    // same address for as long as the region exists; the slice is copied before any change
    // to the mappings.
    unsafe { std::slice::from_raw_parts(addr as *const u8, PAGE as usize) }
}

/// Writes `bytes` over the guest page at `addr` (writable: see [`page`]).
fn put_page(addr: u64, bytes: &[u8]) {
    // SAFETY: as for `page`; the region is writable on the host, and only the trapping
    // thread exists (a snapshot is of a single-threaded process).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, PAGE as usize) }
}

/// Drops the guest page at `addr`: it reads as it did before the guest first touched it.
fn drop_page(addr: u64) -> Result<(), SnapshotError> {
    // SAFETY: a page of a private guest mapping, which trapbox never uses itself.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, PAGE as usize, libc::MADV_DONTNEED) };
    if r != 0 {
        return Err(SnapshotError::Host {
            what: "cannot drop a page",
            source: Box::new(std::io::Error::last_os_error()),
        });
    }
    Ok(())
}

/// Whether a page-map entry's page holds data (in memory or swapped out).
fn resident(entry: u64) -> bool {
    entry & (PM_PRESENT | PM_SWAPPED) != 0
}

fn writable(prot: i32) -> bool {
    prot & libc::PROT_WRITE != 0
}

impl Process {
    /// The guest's descriptors: the process's open descriptors that are not trapbox's.
    fn guest_fds(&self) -> BTreeSet<RawFd> {
        let own = self.fds.reserved();
        trapbox_host::fds::open_fds().into_iter().filter(|fd| !own.contains(fd)).collect()
    }

    /// Closes the guest's descriptors that are not in `kept`, if it may have made any since
    /// the last take or restore (listing /proc/self/fd is most of a reset's time otherwise).
    fn close_fds_since(&self, kept: &BTreeSet<RawFd>, touched: bool) {
        if !touched {
            return;
        }
        for fd in self.guest_fds().difference(kept) {
            // SAFETY: a guest descriptor the snapshot did not have; trapbox's own are excluded
            // by `guest_fds`.
            unsafe { libc::close(*fd) };
        }
    }

    /// Notes what a call may change that a restore must then look for: new descriptors (see
    /// [`Process::close_fds_since`]), moved offsets, pages gone (see `Store::maps_touched`).
    pub(crate) fn note_call(&mut self, call: &trapbox_abi::Syscall) {
        let Some(store) = self.snapshots.as_mut() else { return };
        use trapbox_abi::Sysno as S;
        // The calls a harness or an input's handling makes most, none of which takes a page
        // away; any other may.
        let sysno = call.sysno();
        let keeps_pages = matches!(
            sysno,
            Some(
                S::read
                    | S::write
                    | S::pread64
                    | S::pwrite64
                    | S::readv
                    | S::writev
                    | S::lseek
                    | S::fstat
                    | S::newfstatat
                    | S::close
                    | S::getpid
                    | S::gettid
                    | S::clock_gettime
                    | S::gettimeofday
                    | S::getrandom
                    | S::rt_sigprocmask
            )
        );
        // Nor does a break that grows or a mapping made where nothing was (which a restore
        // finds as a region to take away); rights that change keep the pages too.
        let grows = match sysno {
            Some(S::brk) => call.args[0] == 0 || call.args[0] >= self.brk,
            Some(S::mmap) => call.args[3] & libc::MAP_FIXED as u64 == 0,
            Some(S::mprotect) => true,
            _ => false,
        };
        store.maps_touched |= !keeps_pages && !grows;
        let Some(desc) = call.desc() else { return };
        let makes = matches!(desc.ret, trapbox_abi::Ret::Fd)
            || matches!(desc.sysno, S::pipe | S::pipe2 | S::socketpair | S::recvmsg | S::recvmmsg | S::fcntl);
        // Closing one (or replacing it, which returns a descriptor) changes the set too.
        store.fds_touched |= makes || matches!(desc.sysno, S::close | S::close_range);
        // A call on a descriptor may move its offset, but for those that name the offset.
        let on_fd = desc.args.first().is_some_and(|a| matches!(a.kind, trapbox_abi::ArgKind::Fd));
        let positioned = matches!(
            desc.sysno,
            S::pread64 | S::pwrite64 | S::preadv | S::pwritev | S::preadv2 | S::pwritev2 | S::fstat | S::close
        );
        store.offsets_moved |= on_fd && !positioned;
    }

    /// Takes the memory side of a snapshot: a copy of every present page of the writable
    /// regions, the regions, the break and the descriptors.
    pub fn take_snapshot(&mut self, cpu: CpuSnapshot) -> Result<SnapshotId, SnapshotError> {
        if !self.thread_ids.is_empty() {
            return Err(SnapshotError::Threads(self.thread_ids.len() + 1));
        }
        if self.snapshots.is_none() {
            self.snapshots = Some(Store::open()?);
        }
        let regions = self.aspace.listing();
        let stock = crate::fds::stocktaking();
        let fds = self.guest_fds();
        drop(stock);
        let kept = fds::keep(&fds);
        let store = self.snapshots.as_mut().expect("opened above");
        let (mut pages, mut data) = (BTreeMap::new(), Vec::new());
        for &(start, end, _) in regions.iter().filter(|r| writable(r.2)) {
            for (i, e) in store.entries(start, end)?.into_iter().enumerate() {
                if resident(e) {
                    let at = start + i as u64 * PAGE;
                    pages.insert(at, data.len());
                    data.extend_from_slice(page(at));
                }
            }
        }
        let id = store.next;
        store.next += 1;
        for &(start, end, prot) in &regions {
            if writable(prot) {
                store.protect(start, end)?;
            }
        }
        store.fds_touched = false;
        let signals = self.signals.clone();
        store.offsets_moved = false;
        store.maps_touched = false;
        store.snaps.insert(id, MemSnapshot { cpu, regions, brk: self.brk, pages, data, fds, kept, signals });
        store.clean_at = Some(id);
        Ok(SnapshotId(id))
    }

    /// Puts memory, mappings, break and descriptors back as snapshot `id` had them, and gives
    /// the CPU state to set.
    pub fn restore_snapshot(
        &mut self,
        mem: &mut dyn MemoryMirror,
        id: SnapshotId,
    ) -> Result<(Restored, CpuSnapshot), SnapshotError> {
        if !self.thread_ids.is_empty() {
            return Err(SnapshotError::Threads(self.thread_ids.len() + 1));
        }
        let mut store = self.snapshots.take().ok_or(SnapshotError::Unknown(id))?;
        let r = self.restore_from(&mut store, mem, id);
        let cpu = store.snaps.get(&id.0).map(|s| s.cpu.clone());
        self.snapshots = Some(store);
        Ok((r?, cpu.ok_or(SnapshotError::Unknown(id))?))
    }

    fn restore_from(
        &mut self,
        store: &mut Store,
        mem: &mut dyn MemoryMirror,
        id: SnapshotId,
    ) -> Result<Restored, SnapshotError> {
        let snap = store.snaps.get(&id.0).ok_or(SnapshotError::Unknown(id))?;
        let mut done = Restored { tracked: store.tracks_writes(), ..Restored::default() };
        // A thread of trapbox's opening a file now would take a number this takes for the
        // guest's (see `fds::stocktaking`).
        let stock = crate::fds::stocktaking();
        let touched = std::mem::take(&mut store.fds_touched);
        self.close_fds_since(&snap.fds, touched);
        fds::put_back(&snap.kept, touched, std::mem::take(&mut store.offsets_moved));
        drop(stock);
        if self.signals.mask != snap.signals.mask {
            crate::signals::mirror_mask(snap.signals.mask);
        }
        self.signals.clone_from(&snap.signals);
        // The break first: the heap's pages come and go with it.
        if self.brk != snap.brk {
            self.sys_brk(mem, snap.brk);
            done.remapped += 1;
        }
        // Then every other difference in the map: what is mapped now and was not goes, what
        // was mapped and is not comes back (anonymous, its pages copied below), rights that
        // changed change back.
        let now = self.aspace.listing();
        let mut remade: Vec<(u64, u64)> = Vec::new();
        for &(s, e, _) in &now {
            for (gs, ge) in uncovered(s, e, &snap.regions) {
                self.sys_munmap(mem, gs, ge - gs);
                done.remapped += 1;
            }
        }
        for &(s, e, prot) in &snap.regions {
            for (gs, ge) in uncovered(s, e, &now) {
                let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
                let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
                let at = self.sys_mmap(mem, &[gs, ge - gs, rw, flags, u64::MAX, 0]);
                if at != gs as i64 {
                    return Err(SnapshotError::Unrestorable(gs));
                }
                remade.push((gs, ge));
                done.remapped += 1;
            }
            for (rs, re, rprot) in self.aspace.overlapping(s, e) {
                if rprot != prot || remade.iter().any(|&(a, b)| a < re && rs < b) {
                    // Writable for the copy below when the snapshot's rights are. The guest can
                    // refuse it (sealed since): then the pages cannot be put back.
                    if self.sys_mprotect(mem, rs, re - rs, prot) != 0 {
                        return Err(SnapshotError::Unrestorable(rs));
                    }
                    if rprot != prot {
                        done.remapped += 1;
                    }
                }
            }
        }
        // Pages: with the map as the snapshot's, each writable region's pages that differ.
        let now = self.aspace.listing();
        store.forget_registrations(&now);
        let full = store.clean_at != Some(id.0) || !store.tracks_writes();
        let maps_touched = std::mem::take(&mut store.maps_touched);
        let snap = store.snaps.get(&id.0).ok_or(SnapshotError::Unknown(id))?;
        // Regions visited whole, protected whole after (registering them needs the store).
        let mut visited_whole: Vec<(u64, u64)> = Vec::new();
        let tracked = snap.regions.iter().filter(|r| writable(r.2));
        let span = tracked.clone().map(|r| r.0).min().zip(tracked.map(|r| r.1).max());
        // One scan for all the regions (a scan per region cost a system call and a walk each).
        let written_anywhere = match span {
            Some((lo, hi)) if !full => store.written(lo, hi)?,
            _ => Vec::new(),
        };
        for &(start, end, _) in snap.regions.iter().filter(|r| writable(r.2)) {
            let fresh = remade.iter().any(|&(a, b)| a < end && start < b);
            let whole = full || fresh;
            let written: Vec<(u64, u64)> = if whole {
                vec![(start, end)]
            } else {
                written_anywhere
                    .iter()
                    .filter(|&&(a, b)| a < end && start < b)
                    .map(|&(a, b)| (a.max(start), b.min(end)))
                    .collect()
            };
            let kept_pages: Vec<u64> = snap.pages.range(start..end).map(|(a, _)| *a).collect();
            // The page map is read over the span that matters only (a stack region is
            // megabytes, its live pages a few).
            let lo = written.first().map(|w| w.0).into_iter().chain(kept_pages.first().copied()).min();
            let hi = written.last().map(|w| w.1).into_iter().chain(kept_pages.last().map(|a| a + PAGE)).max();
            let (Some(lo), Some(hi)) = (lo, hi) else { continue };
            // Without a call that takes pages away, a page is present if it was written (the
            // scan asks for present ones) or the snapshot's and not written.
            let entries = if whole || maps_touched { Some(store.entries(lo, hi)?) } else { None };
            let present = |at: u64| entries.as_ref().is_none_or(|e| resident(e[((at - lo) / PAGE) as usize]));
            // Puts page `at` back as the snapshot had it; says whether it wrote it.
            let mut visit = |at: u64| -> Result<bool, SnapshotError> {
                let here = present(at);
                match snap.pages.get(&at) {
                    Some(&off) => {
                        let want = &snap.data[off..off + PAGE as usize];
                        if !here || page(at) != want {
                            put_page(at, want);
                            done.dirty_pages += 1;
                            return Ok(true);
                        }
                    }
                    None if here => {
                        drop_page(at)?;
                        done.dirty_pages += 1;
                    }
                    None => {}
                }
                Ok(false)
            };
            for &(ws, we) in &written {
                for at in (ws..we).step_by(PAGE as usize) {
                    visit(at)?;
                }
            }
            if whole {
                visited_whole.push((start, end));
                continue;
            }
            // Pages the snapshot had that went away without a write (dropped, remapped): the
            // copy back writes them, so they are protected again with what the guest wrote.
            for at in kept_pages.into_iter().filter(|a| entries.is_some() && !present(*a)) {
                if visit(at)? {
                    store.reprotect(at, at + PAGE)?;
                }
            }
            for &(ws, we) in &written {
                store.reprotect(ws, we)?;
            }
        }
        for (start, end) in visited_whole {
            store.protect(start, end)?;
        }
        store.clean_at = Some(id.0);
        Ok(done)
    }

    /// Forgets snapshot `id`.
    pub fn discard_snapshot(&mut self, id: SnapshotId) {
        if let Some(store) = self.snapshots.as_mut() {
            store.snaps.remove(&id.0);
            if store.clean_at == Some(id.0) {
                store.clean_at = None;
            }
        }
    }
}

/// The parts of `[s, e)` that no region of `regions` (sorted, disjoint) covers.
fn uncovered(s: u64, e: u64, regions: &[(u64, u64, i32)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = s;
    for &(rs, re, _) in regions {
        if re <= at || rs >= e {
            continue;
        }
        if rs > at {
            out.push((at, rs));
        }
        at = at.max(re);
        if at >= e {
            break;
        }
    }
    if at < e {
        out.push((at, e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uncovered;

    #[test]
    fn uncovered_finds_the_gaps() {
        let r = [(0x1000, 0x3000, 3), (0x5000, 0x6000, 3)];
        assert_eq!(uncovered(0x0, 0x8000, &r), vec![(0x0, 0x1000), (0x3000, 0x5000), (0x6000, 0x8000)]);
        assert_eq!(uncovered(0x1000, 0x3000, &r), vec![]);
        assert_eq!(uncovered(0x2000, 0x5800, &r), vec![(0x3000, 0x5000)]);
    }
}
