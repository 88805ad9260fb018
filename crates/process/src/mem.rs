//! The guest's address space: which ranges of the (shared, 1:1) host address space are guest
//! memory, with which rights — and the only place that turns a guest pointer into bytes.
//!
//! Every region here is a live host mapping made for the guest, registered with KVM and
//! present in the guest page tables with the same rights (invariant 2: anything not listed is
//! trapbox's or unmapped, and the guest cannot reach it). Pointer checks (invariant 3) ask
//! this map. Reads and writes of guest memory on trapbox's side go through
//! `process_vm_readv`/`process_vm_writev` on trapbox's own pid, so a page that faults (a file
//! mapping past EOF, say) gives an error instead of a SIGBUS in trapbox.

use std::collections::BTreeMap;

use trapbox_trap::{GuestAddr, MemError};
use trapbox_vm::{MemoryError, MemoryMirror, PteFlags};

/// Highest user address + 1 (47-bit user space, minus the guard page Linux keeps).
pub const USER_END: u64 = 0x7fff_ffff_f000;
/// Room at the arena's top kept for the stack and the unmapped space below it.
pub const MMAP_GAP: u64 = 256 << 20;

/// One guest region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// End (exclusive).
    pub end: u64,
    /// PROT_* bits.
    pub prot: i32,
}

/// Access direction for checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The kernel (or trapbox) reads guest memory.
    Read,
    /// The kernel (or trapbox) writes guest memory.
    Write,
}

/// Guest page-table rights for PROT_* bits (None: no access).
pub fn pte_flags(prot: i32) -> Option<PteFlags> {
    if prot & (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) == 0 {
        return None;
    }
    Some(PteFlags { write: prot & libc::PROT_WRITE != 0, exec: prot & libc::PROT_EXEC != 0, user: true })
}

/// The guest's regions, and where in the arena new ones may go.
#[derive(Debug, Default)]
pub struct AddressSpace {
    regions: BTreeMap<u64, Region>,
    committed: u64,
    /// Bytes in all regions, inaccessible ones included (what RLIMIT_AS counts).
    mapped: u64,
    /// The arena's bounds (see `process::arena`): guest memory is placed only inside.
    bounds: (u64, u64),
    /// Ranges of the arena that are not free for new guest mappings though they hold no guest
    /// memory: what the arena found mapped. start -> end.
    held: BTreeMap<u64, u64>,
    /// The brk heap's room above the current break (reserved for it, not for mmap).
    brk_room: (u64, u64),
}

impl AddressSpace {
    /// An empty address space.
    pub fn new() -> AddressSpace {
        AddressSpace::default()
    }

    /// Places new guest memory only in `[start, end)`, never in `held` (the arena's bounds
    /// and what it holds for others).
    pub fn set_arena(&mut self, start: u64, end: u64, held: &[(u64, u64)]) {
        self.bounds = (start, end);
        self.held = held.iter().copied().collect();
    }

    /// The arena's bounds.
    pub fn arena(&self) -> (u64, u64) {
        self.bounds
    }

    /// Where top-down placement of mappings starts: far enough below the arena's top, where
    /// the stack goes, that a stack overflowing runs into unmapped space and faults, as it
    /// does natively below the kernel's mmap base.
    pub fn mmap_top(&self) -> u64 {
        self.bounds.1.saturating_sub(MMAP_GAP).max(self.bounds.0)
    }

    /// Keeps `[start, end)`, the brk heap's room above the break, out of placement and out
    /// of MAP_FIXED's reach (an empty range gives it back).
    pub fn set_brk_room(&mut self, start: u64, end: u64) {
        self.brk_room = (start, end.max(start));
    }

    /// Keeps `[start, end)` out of placement and MAP_FIXED's reach: trapbox's own memory in
    /// the arena (the in-process engine's syscall stubs).
    pub fn hold(&mut self, start: u64, end: u64) {
        self.held.insert(start, end);
    }

    /// Gives back a range [`AddressSpace::hold`] took.
    pub fn unhold(&mut self, start: u64) {
        self.held.remove(&start);
    }

    /// Whether `[start, end)` meets a held range or the brk room.
    fn meets_held(&self, start: u64, end: u64) -> bool {
        let (bs, be) = self.brk_room;
        (bs < end && be > start) || self.held.range(..end).any(|(&s, &e)| s < end && e > start)
    }

    /// Whether `[start, end)` may take a new guest mapping: inside the arena, no guest memory
    /// and nothing held there.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        let (lo, hi) = self.bounds;
        start >= lo
            && end <= hi
            && start < end
            && self.overlapping(start, end).is_empty()
            && !self.meets_held(start, end)
    }

    /// Whether `[start, end)` lies in the arena and outside held ranges (guest memory there or
    /// not): where MAP_FIXED may go.
    pub fn fixed_allowed(&self, start: u64, end: u64) -> bool {
        let (lo, hi) = self.bounds;
        start >= lo && end <= hi && start < end && !self.meets_held(start, end)
    }

    /// Where a new guest mapping of `len` bytes (a multiple of the page size) goes: at `hint`
    /// if that is free, else the highest free place below `below` aligned to `align`, as Linux
    /// places mappings top-down. None when the arena has no room.
    pub fn find_free(&self, len: u64, align: u64, hint: u64, below: u64) -> Option<u64> {
        let align = align.max(4096);
        if hint != 0 && hint.is_multiple_of(align) && hint.checked_add(len).is_some_and(|e| self.is_free(hint, e)) {
            return Some(hint);
        }
        let (lo, _) = self.bounds;
        let top = below.min(self.mmap_top());
        // Occupied intervals below `top`, from the top down: guest regions and held ranges.
        let mut taken: Vec<(u64, u64)> = self
            .regions
            .range(..top)
            .map(|(&s, r)| (s, r.end))
            .chain(self.held.range(..top).map(|(&s, &e)| (s, e)))
            .chain(std::iter::once(self.brk_room).filter(|&(s, e)| e > s && s < top))
            .collect();
        taken.sort_unstable_by_key(|t| std::cmp::Reverse(t.0));
        let mut gap_end = top;
        for (s, e) in taken.into_iter().chain(std::iter::once((lo, lo))) {
            if e < gap_end {
                let gap_start = e.max(lo);
                if let Some(at) = gap_end.checked_sub(len).map(|a| a & !(align - 1)) {
                    if at >= gap_start {
                        return Some(at);
                    }
                }
            }
            gap_end = gap_end.min(s);
            if gap_end <= lo {
                break;
            }
        }
        None
    }

    /// Splits the region containing `at` so that a region starts exactly at `at`.
    fn split(&mut self, at: u64) {
        if let Some((&s, &r)) = self.regions.range(..at).next_back() {
            if r.end > at {
                self.regions.insert(s, Region { end: at, prot: r.prot });
                self.regions.insert(at, Region { end: r.end, prot: r.prot });
            }
        }
    }

    fn cut(&mut self, start: u64, end: u64) -> Vec<(u64, Region)> {
        self.split(start);
        self.split(end);
        let keys: Vec<u64> = self.regions.range(start..end).map(|(k, _)| *k).collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let r = self.regions.remove(&k).expect("key listed above");
            if r.prot != libc::PROT_NONE {
                self.committed -= r.end - k;
            }
            self.mapped -= r.end - k;
            out.push((k, r));
        }
        out
    }

    /// Records a new guest mapping that the host already made at `[start, start+len)`,
    /// replacing whatever guest regions were there, and makes it reachable in the guest.
    pub fn insert(&mut self, mem: &mut dyn MemoryMirror, start: u64, len: u64, prot: i32) -> Result<(), MemoryError> {
        if !self.cut(start, start + len).is_empty() {
            // Replacing guest memory: its entries go first (and get flushed).
            mem.unmap(start, len)?;
        }
        if mem.slots_low() {
            // Reclaim slots whose host range holds no guest memory any more.
            let end = start + len;
            mem.collect(&|s, e| {
                (s < end && e > start) || self.regions.range(..e).next_back().is_some_and(|(_, r)| r.end > s)
            })?;
        }
        mem.map(start, len, pte_flags(prot))?;
        self.regions.insert(start, Region { end: start + len, prot });
        self.mapped += len;
        if prot != libc::PROT_NONE {
            self.committed += len;
        }
        Ok(())
    }

    /// Forgets `[start, start+len)` (the host range is about to be unmapped or was).
    pub fn remove(&mut self, mem: &mut dyn MemoryMirror, start: u64, len: u64) -> Result<(), MemoryError> {
        if self.cut(start, start + len).is_empty() {
            return Ok(());
        }
        mem.unmap(start, len)
    }

    /// Changes the rights of `[start, start+len)`, which must be covered.
    pub fn protect(&mut self, mem: &mut dyn MemoryMirror, start: u64, len: u64, prot: i32) -> Result<(), MemoryError> {
        let pieces = self.cut(start, start + len);
        let reduces = pieces.iter().any(|(_, r)| r.prot & !prot != 0);
        for (s, r) in pieces {
            self.regions.insert(s, Region { end: r.end, prot });
            self.mapped += r.end - s;
            if prot != libc::PROT_NONE {
                self.committed += r.end - s;
            }
        }
        mem.protect(start, len, pte_flags(prot), reduces)
    }

    /// Whether every page of `[start, end)` is guest memory.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        // Walk forward from the region containing `start`.
        let first = self.regions.range(..=start).next_back();
        let mut iter = match first {
            Some((&s, r)) if r.end > start => self.regions.range(s..),
            _ => return start >= end,
        };
        while at < end {
            match iter.next() {
                Some((&s, r)) if s <= at => at = r.end,
                _ => return false,
            }
        }
        true
    }

    /// The regions overlapping `[start, end)`, clipped to it.
    pub fn overlapping(&self, start: u64, end: u64) -> Vec<(u64, u64, i32)> {
        let first = self.regions.range(..=start).next_back().map(|(s, _)| *s).unwrap_or(start);
        self.regions
            .range(first..end)
            .filter(|(_, r)| r.end > start)
            .map(|(&s, r)| (s.max(start), r.end.min(end), r.prot))
            .collect()
    }

    /// The region containing `addr`.
    pub fn region_at(&self, addr: u64) -> Option<(u64, Region)> {
        self.regions.range(..=addr).next_back().filter(|(_, r)| r.end > addr).map(|(s, r)| (*s, *r))
    }

    /// Checks that the kernel may access `len` bytes at `addr` in direction `access`. On
    /// failure, returns the first bad address.
    pub fn check(&self, addr: u64, len: u64, access: Access) -> Result<(), u64> {
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(addr)?;
        let need = match access {
            Access::Read => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            Access::Write => libc::PROT_WRITE,
        };
        let mut at = addr;
        while at < end {
            match self.region_at(at) {
                Some((_, r)) if r.prot & need != 0 => at = r.end,
                _ => return Err(at),
            }
        }
        Ok(())
    }

    /// Bytes in all regions (RLIMIT_AS).
    pub fn mapped(&self) -> u64 {
        self.mapped
    }

    /// Bytes in regions with some access (for `--memory-limit`).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// All regions, in address order.
    pub fn regions(&self) -> impl Iterator<Item = (u64, Region)> + '_ {
        self.regions.iter().map(|(s, r)| (*s, *r))
    }

    /// All regions as (start, end, PROT_* bits), in address order.
    pub fn listing(&self) -> Vec<(u64, u64, i32)> {
        self.regions.iter().map(|(s, r)| (*s, r.end, r.prot)).collect()
    }

    /// Reads guest memory after checking it.
    pub fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(addr.0, buf.len() as u64, Access::Read).map_err(MemError::Fault)?;
        copy_self(addr.0, buf.as_mut_ptr() as u64, buf.len(), false).map_err(|_| MemError::Fault(addr.0))
    }

    /// Reads as much of `buf.len()` bytes at `addr` as is readable, skipping unreadable pages
    /// (a file mapping past its end): the readable runs, as (address, bytes). Only ranges the
    /// guest may read are read.
    pub fn read_runs(&self, addr: u64, len: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let end = addr.saturating_add(len);
        let mut at = addr;
        while at < end {
            // Stop at the end of what the guest may read.
            let Some((_, r)) = self.region_at(at).filter(|(_, r)| r.prot != libc::PROT_NONE) else {
                at = (at | 0xfff) + 1;
                continue;
            };
            let stop = r.end.min(end);
            let mut buf = vec![0u8; (stop - at) as usize];
            let n = copy_self_partial(at, buf.as_mut_ptr() as u64, buf.len(), false);
            if n > 0 {
                buf.truncate(n);
                out.push((at, buf));
            }
            at += n as u64;
            if at < stop {
                // Skip the page that failed.
                at = (at | 0xfff) + 1;
            }
        }
        out
    }

    /// Writes guest memory after checking it is writable.
    pub fn write(&self, addr: GuestAddr, data: &[u8]) -> Result<(), MemError> {
        self.check(addr.0, data.len() as u64, Access::Write).map_err(MemError::Fault)?;
        copy_self(data.as_ptr() as u64, addr.0, data.len(), true).map_err(|_| MemError::Fault(addr.0))
    }

    /// Reads a u64 from guest memory.
    pub fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(GuestAddr(addr), &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a NUL-terminated string of at most `max` bytes, page by page.
    pub fn read_cstr(&self, addr: GuestAddr, max: usize) -> Result<Vec<u8>, MemError> {
        let mut out = Vec::new();
        let mut at = addr.0;
        while out.len() < max {
            let page_end = (at | 0xfff) + 1;
            let n = ((page_end - at) as usize).min(max - out.len());
            let mut chunk = vec![0u8; n];
            self.read(GuestAddr(at), &mut chunk)?;
            if let Some(z) = chunk.iter().position(|b| *b == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
            at += n as u64;
        }
        Err(MemError::Fault(at))
    }
}

/// Copies `data` to guest address `addr` without consulting the address space map (the
/// caller made the host pages writable); the kernel does the access, so a bad page is EFAULT.
pub(crate) fn copy_into_guest(addr: u64, data: &[u8]) -> std::io::Result<()> {
    copy_self(data.as_ptr() as u64, addr, data.len(), true)
}

/// Writes `data` at guest address `addr` whatever the rights of its pages, which are
/// `pieces` (start, end, rights; none PROT_NONE): code patching. A private mapping takes its
/// own copy of the page, as under a debugger's breakpoint.
///
/// The write goes through `/proc/self/mem`, which may write read-only pages: the mapping's
/// rights are not touched. Only where the kernel refuses that (`proc_mem.force_override=never`)
/// are the pages made writable for the copy and given their rights back, at the cost of two
/// mprotects, each splitting the mapping and making KVM drop what it maps there.
pub(crate) fn write_code(pieces: &[(u64, u64, i32)], addr: u64, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: guest memory, as the caller says.
    match unsafe { trapbox_host::write_own_memory(addr, data) } {
        Ok(()) => Ok(()),
        Err(_) => write_unprotected(pieces, addr, data),
    }
}

fn write_unprotected(pieces: &[(u64, u64, i32)], addr: u64, data: &[u8]) -> std::io::Result<()> {
    for (s, e, p) in pieces {
        // SAFETY: guest memory, as the caller says; rights are restored below.
        unsafe { super::host::mprotect(*s, e - s, p | libc::PROT_WRITE) }.map_err(std::io::Error::from_raw_os_error)?;
    }
    // The address space's checked path would refuse the region (read-only in its map).
    let r = copy_into_guest(addr, data);
    for (s, e, p) in pieces {
        // SAFETY: restores the rights the guest had.
        let _ = unsafe { super::host::mprotect(*s, e - s, *p) };
    }
    r
}

/// trapbox's pid, cached (glibc does not cache getpid); 0 until asked, reset in a forked child.
static OWN_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

pub(crate) fn own_pid() -> libc::pid_t {
    use std::sync::atomic::Ordering;
    match OWN_PID.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: getpid has no preconditions.
            let p = unsafe { libc::getpid() };
            OWN_PID.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

/// Drops the cached pid: the caller is a freshly forked child.
pub(crate) fn forget_own_pid() {
    OWN_PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// Copies `len` bytes inside trapbox's own address space with the kernel doing the access, so
/// an unreadable or unwritable page gives EFAULT rather than a signal. `write_remote` says
/// which side is the guest's (the "remote" side of process_vm_*).
fn copy_self(src: u64, dst: u64, len: usize, write_remote: bool) -> std::io::Result<()> {
    match copy_self_partial(src, dst, len, write_remote) {
        n if n == len => Ok(()),
        _ => Err(std::io::Error::from_raw_os_error(libc::EFAULT)),
    }
}

/// Like copy_self, but returns how many bytes were copied before the first bad page.
fn copy_self_partial(src: u64, dst: u64, len: usize, write_remote: bool) -> usize {
    if len == 0 {
        return 0;
    }
    let local = libc::iovec { iov_base: (if write_remote { src } else { dst }) as *mut libc::c_void, iov_len: len };
    let remote = libc::iovec { iov_base: (if write_remote { dst } else { src }) as *mut libc::c_void, iov_len: len };
    // SAFETY: the kernel validates both ranges against this process's mappings and copies
    // through them; `local` is a buffer the caller owns for `len` bytes; no Rust reference
    // aliases the guest side.
    let n = unsafe {
        if write_remote {
            libc::process_vm_writev(own_pid(), &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(own_pid(), &local, 1, &remote, 1, 0)
        }
    };
    n.max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(regions: &[(u64, u64, i32)]) -> AddressSpace {
        let mut a = AddressSpace::new();
        for &(s, e, p) in regions {
            a.regions.insert(s, Region { end: e, prot: p });
        }
        a
    }

    const R: i32 = libc::PROT_READ;
    const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

    #[test]
    fn find_free_places_top_down_in_the_arena() {
        let mut a = space(&[(0x7000_0000, 0x8000_0000, RW)]);
        a.set_arena(0x1_0000, 0x1_0000_0000, &[(0x2000_0000, 0x3000_0000)]);
        // The first mapping goes at the top, below the stack's room; the next right below
        // what is there.
        assert_eq!(a.mmap_top(), 0xf000_0000);
        assert_eq!(a.find_free(0x1000, 4096, 0, u64::MAX), Some(0xefff_f000));
        assert_eq!(a.find_free(0x1000_0000, 4096, 0, 0x8000_0000), Some(0x6000_0000));
        // A free hint is taken; a taken one, or one outside the arena, is not.
        assert_eq!(a.find_free(0x1000, 4096, 0x5000_0000, u64::MAX), Some(0x5000_0000));
        assert_eq!(a.find_free(0x1000, 4096, 0x7000_0000, u64::MAX), Some(0xefff_f000));
        assert_eq!(a.find_free(0x1000, 4096, 0x1_0000_0000, u64::MAX), Some(0xefff_f000));
        // A hint may be above the top-down start (the stack's own place).
        assert_eq!(a.find_free(0x80_0000, 4096, 0xff80_0000, u64::MAX), Some(0xff80_0000));
        // Held ranges are skipped.
        assert_eq!(a.find_free(0x1000_0000, 4096, 0, 0x3000_0000), Some(0x1000_0000));
        assert!(!a.is_free(0x2800_0000, 0x2800_1000));
        assert!(!a.fixed_allowed(0x2800_0000, 0x2800_1000));
        assert!(a.fixed_allowed(0x7000_0000, 0x7000_1000));
        assert!(!a.is_free(0x7000_0000, 0x7000_1000));
        // Alignment, and no room.
        assert_eq!(a.find_free(0x1000, 1 << 21, 0, 0x7000_0000).map(|x| x % (1 << 21)), Some(0));
        assert_eq!(a.find_free(0x2_0000_0000, 4096, 0, u64::MAX), None);
    }

    /// A private read-execute page holding `ret` instructions, and its rights as
    /// /proc/self/maps shows them.
    fn code_page() -> (u64, impl Fn() -> String) {
        // SAFETY: a fresh anonymous mapping, owned by the test.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the page is ours and writable.
        unsafe { std::ptr::write_bytes(p as *mut u8, 0xc3, 4096) };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::mprotect(p, 4096, R | libc::PROT_EXEC) }, 0);
        let at = p as u64;
        let rights = move || {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            let line = maps.lines().find(|l| l.starts_with(&format!("{at:x}-"))).unwrap().to_string();
            line.split_whitespace().nth(1).unwrap().to_string()
        };
        (at, rights)
    }

    #[test]
    fn code_is_written_into_read_only_pages_which_stay_read_only() {
        type WriteWay = fn(&[(u64, u64, i32)], u64, &[u8]) -> std::io::Result<()>;
        // SAFETY: the test's own page, which nothing runs.
        let through_proc_mem: WriteWay = |_, a, d| unsafe { trapbox_host::write_own_memory(a, d) };
        let write_ways: [WriteWay; 2] = [through_proc_mem, write_unprotected];
        for write in write_ways {
            let (at, rights) = code_page();
            assert_eq!(rights(), "r-xp");
            write(&[(at, at + 4096, R | libc::PROT_EXEC)], at + 10, &[0xcc, 0x90]).unwrap();
            let mut back = [0u8; 4];
            copy_self(at + 9, back.as_mut_ptr() as u64, 4, false).unwrap();
            assert_eq!(back, [0xc3, 0xcc, 0x90, 0xc3]);
            assert_eq!(rights(), "r-xp");
            // SAFETY: unmaps the test's own page.
            unsafe { libc::munmap(at as *mut libc::c_void, 4096) };
        }
    }

    #[test]
    fn check_direction_and_gaps() {
        let a = space(&[(0x1000, 0x3000, R), (0x3000, 0x5000, RW)]);
        assert_eq!(a.check(0x1000, 0x4000, Access::Read), Ok(()));
        assert_eq!(a.check(0x1000, 0x4000, Access::Write), Err(0x1000));
        assert_eq!(a.check(0x3000, 0x2000, Access::Write), Ok(()));
        assert_eq!(a.check(0x4000, 0x2000, Access::Read), Err(0x5000));
        assert_eq!(a.check(0, 1, Access::Read), Err(0));
        assert_eq!(a.check(u64::MAX - 1, 4, Access::Read), Err(u64::MAX - 1));
    }

    #[test]
    fn check_prot_none_is_not_readable() {
        let a = space(&[(0x1000, 0x2000, libc::PROT_NONE)]);
        assert_eq!(a.check(0x1000, 1, Access::Read), Err(0x1000));
    }

    #[test]
    fn covers_needs_contiguity() {
        let a = space(&[(0x1000, 0x2000, R), (0x2000, 0x3000, libc::PROT_NONE), (0x4000, 0x5000, R)]);
        assert!(a.covers(0x1000, 0x3000));
        assert!(!a.covers(0x1000, 0x5000));
        assert!(!a.covers(0x3000, 0x4000));
        assert!(a.covers(0x4800, 0x4900));
    }

    #[test]
    fn cut_splits_and_counts_commit() {
        let mut a = space(&[(0x1000, 0x5000, RW)]);
        a.committed = 0x4000;
        let removed = a.cut(0x2000, 0x3000);
        assert_eq!(removed, vec![(0x2000, Region { end: 0x3000, prot: RW })]);
        assert_eq!(a.committed(), 0x3000);
        assert_eq!(a.region_at(0x1fff).map(|r| r.1.end), Some(0x2000));
        assert_eq!(a.region_at(0x3000).map(|r| r.0), Some(0x3000));
        assert!(a.region_at(0x2800).is_none());
    }

    #[test]
    fn read_cstr_stops_at_nul_and_unmapped() {
        let buf = b"hello\0world".to_vec();
        let p = buf.as_ptr() as u64;
        let page = p & !0xfff;
        let a = space(&[(page, page + 0x2000, R)]);
        // The buffer may straddle into an unlisted page only if it is near a page end; the
        // string itself is 6 bytes, so allow for that by listing two pages.
        assert_eq!(a.read_cstr(GuestAddr(p), 64).unwrap(), b"hello");
        let none = space(&[]);
        assert_eq!(none.read_cstr(GuestAddr(p), 64), Err(MemError::Fault(p)));
    }
}
