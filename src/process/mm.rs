//! The guest's memory syscalls: mmap, munmap, mprotect, mremap, brk.
//!
//! Each one acts on the host (the guest's memory *is* trapbox's memory at the same addresses)
//! and then brings the address space, the KVM slots and the guest page tables in step. The
//! guest sees memory the way a kernel would show it: trapbox's own ranges look unmapped (munmap
//! of them is a no-op, mprotect fails with ENOMEM), except that MAP_FIXED onto them fails with
//! ENOMEM instead of clobbering trapbox.

use super::host;
use super::mem::{AddressSpace, USER_END};
use super::Process;
use crate::vm::GuestMemory;

const PAGE: u64 = 4096;

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE - 1).map(|v| v & !(PAGE - 1))
}

fn neg(e: i32) -> i64 {
    -(e as i64)
}

/// Makes sure every part of `[start, end)` that is not guest memory is free on the host, by
/// placing inaccessible placeholders there (the caller's MAP_FIXED then replaces them). On
/// failure the placeholders are removed again and nothing changed.
fn claim_gaps(aspace: &AddressSpace, start: u64, end: u64) -> Result<(), i32> {
    let mut gaps = Vec::new();
    let mut at = start;
    for (s, e, _) in aspace.overlapping(start, end) {
        if s > at {
            gaps.push((at, s));
        }
        at = e;
    }
    if at < end {
        gaps.push((at, end));
    }
    let mut placed = Vec::new();
    for (s, e) in gaps {
        match host::reserve_exact(s, e - s) {
            Ok(_) => placed.push((s, e)),
            Err(_) => {
                for (ps, pe) in placed {
                    // SAFETY: these placeholders were made just above and hold nothing.
                    let _ = unsafe { host::munmap(ps, pe - ps) };
                }
                return Err(libc::ENOMEM);
            }
        }
    }
    Ok(())
}

impl Process {
    fn over_limit(&self, extra: u64) -> bool {
        self.memory_limit.is_some_and(|l| self.aspace.committed().saturating_add(extra) > l)
    }

    /// mmap(2).
    pub fn sys_mmap(&mut self, mem: &mut GuestMemory, a: &[u64; 6]) -> i64 {
        let (addr, len, mut prot, mut flags, fd, off) = (a[0], a[1], a[2] as i32, a[3] as i32, a[4] as i32, a[5]);
        let Some(len) = page_up(len).filter(|l| *l > 0) else { return neg(libc::EINVAL) };
        if flags & libc::MAP_ANONYMOUS == 0 && self.fds.is_reserved(fd as i64) {
            return neg(libc::EBADF);
        }
        // Guest stacks do not grow on demand: their page tables are built at mmap time.
        flags &= !libc::MAP_GROWSDOWN;
        prot &= libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        if prot != libc::PROT_NONE && self.over_limit(len) {
            return neg(libc::ENOMEM);
        }
        let fixed = flags & libc::MAP_FIXED != 0 && flags & libc::MAP_FIXED_NOREPLACE == 0;
        if fixed {
            if addr & (PAGE - 1) != 0 {
                return neg(libc::EINVAL);
            }
            if addr.checked_add(len).is_none_or(|e| e > USER_END) {
                return neg(libc::ENOMEM);
            }
            if let Err(e) = claim_gaps(&self.aspace, addr, addr + len) {
                self.warn_once(
                    "mmap-fixed",
                    format_args!("refused mmap(MAP_FIXED) at {addr:#x}: the range holds trapbox memory"),
                );
                return neg(e);
            }
        }
        // SAFETY: MAP_FIXED only replaces guest memory or placeholders claimed just above;
        // otherwise the kernel picks free space (or fails for MAP_FIXED_NOREPLACE).
        let got = match unsafe { host::mmap(addr, len, prot, flags, fd, off) } {
            Ok(p) => p,
            Err(e) => return neg(e),
        };
        if let Err(e) = self.aspace.insert(mem, got, len, prot) {
            self.warn_once("mmap-slot", format_args!("mmap: {e}"));
            // SAFETY: `got` is the mapping just made for the guest.
            let _ = unsafe { host::munmap(got, len) };
            let _ = self.aspace.remove(mem, got, len);
            return neg(libc::ENOMEM);
        }
        got as i64
    }

    /// munmap(2): only the guest's parts of the range are unmapped; the rest looks unmapped
    /// to the guest already.
    pub fn sys_munmap(&mut self, mem: &mut GuestMemory, addr: u64, len: u64) -> i64 {
        let Some(len) = page_up(len).filter(|l| *l > 0) else { return neg(libc::EINVAL) };
        if addr & (PAGE - 1) != 0 || addr.checked_add(len).is_none_or(|e| e > USER_END) {
            return neg(libc::EINVAL);
        }
        for (s, e, _) in self.aspace.overlapping(addr, addr + len) {
            if let Err(err) = self.aspace.remove(mem, s, e - s) {
                self.warn_once("munmap-slot", format_args!("munmap: {err}"));
            }
            // SAFETY: [s, e) was guest memory; the guest's view of it is gone.
            let _ = unsafe { host::munmap(s, e - s) };
        }
        0
    }

    /// mprotect(2).
    pub fn sys_mprotect(&mut self, mem: &mut GuestMemory, addr: u64, len: u64, prot: i32) -> i64 {
        if addr & (PAGE - 1) != 0 {
            return neg(libc::EINVAL);
        }
        let Some(len) = page_up(len) else { return neg(libc::ENOMEM) };
        if len == 0 {
            return 0;
        }
        let prot = prot & (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC);
        let end = addr.saturating_add(len);
        if !self.aspace.covers(addr, end) {
            return neg(libc::ENOMEM);
        }
        if prot != libc::PROT_NONE {
            let newly: u64 = self
                .aspace
                .overlapping(addr, end)
                .iter()
                .filter(|(_, _, p)| *p == libc::PROT_NONE)
                .map(|(s, e, _)| e - s)
                .sum();
            if self.over_limit(newly) {
                return neg(libc::ENOMEM);
            }
        }
        // SAFETY: the whole range is guest memory (checked above).
        if let Err(e) = unsafe { host::mprotect(addr, len, prot) } {
            return neg(e);
        }
        if let Err(e) = self.aspace.protect(mem, addr, len, prot) {
            self.warn_once("mprotect-slot", format_args!("mprotect: {e}"));
            return neg(libc::ENOMEM);
        }
        0
    }

    /// mremap(2).
    pub fn sys_mremap(&mut self, mem: &mut GuestMemory, a: &[u64; 6]) -> i64 {
        let (old, old_len, new_len, flags, new_addr) = (a[0], a[1], a[2], a[3] as i32, a[4]);
        if old & (PAGE - 1) != 0 {
            return neg(libc::EINVAL);
        }
        let (Some(old_len), Some(new_len)) = (page_up(old_len), page_up(new_len)) else { return neg(libc::EINVAL) };
        if new_len == 0 {
            return neg(libc::EINVAL);
        }
        let Some((_, region)) = self.aspace.region_at(old) else { return neg(libc::EFAULT) };
        if old_len > 0 && !self.aspace.covers(old, old.saturating_add(old_len)) {
            return neg(libc::EFAULT);
        }
        let prot = region.prot;
        if new_len > old_len && prot != libc::PROT_NONE && self.over_limit(new_len - old_len) {
            return neg(libc::ENOMEM);
        }
        if flags & libc::MREMAP_FIXED != 0 {
            if new_addr & (PAGE - 1) != 0 || new_addr.checked_add(new_len).is_none_or(|e| e > USER_END) {
                return neg(libc::EINVAL);
            }
            if let Err(e) = claim_gaps(&self.aspace, new_addr, new_addr + new_len) {
                return neg(e);
            }
        }
        // SAFETY: the old range is guest memory; a fixed target was claimed above; otherwise
        // the kernel grows in place into free space or moves to free space.
        let got = match unsafe { host::mremap(old, old_len, new_len, flags, new_addr) } {
            Ok(p) => p,
            Err(e) => return neg(e),
        };
        let keep_old = old_len == 0 || flags & libc::MREMAP_DONTUNMAP != 0;
        let mut r = Ok(());
        if !keep_old {
            r = r.and(self.aspace.remove(mem, old, old_len));
        }
        r = r.and(self.aspace.insert(mem, got, new_len, prot));
        if let Err(e) = r {
            self.warn_once("mremap-slot", format_args!("mremap: {e}"));
        }
        got as i64
    }

    /// brk(2): the heap lives in the space reserved after the main image at load time.
    pub fn sys_brk(&mut self, mem: &mut GuestMemory, want: u64) -> i64 {
        if want < self.brk_start || want > self.brk_limit {
            return self.brk as i64;
        }
        let (cur_top, new_top) = (page_up(self.brk).unwrap_or(self.brk), page_up(want).unwrap_or(want));
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        if new_top > cur_top {
            if self.over_limit(new_top - cur_top) {
                return self.brk as i64;
            }
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
            // SAFETY: [cur_top, new_top) is inside the brk reservation made by the loader,
            // which holds only trapbox's placeholder.
            if unsafe { host::mmap(cur_top, new_top - cur_top, rw, flags, -1, 0) }.is_err() {
                return self.brk as i64;
            }
            if self.aspace.insert(mem, cur_top, new_top - cur_top, rw).is_err() {
                return self.brk as i64;
            }
        } else if new_top < cur_top {
            let _ = self.aspace.remove(mem, new_top, cur_top - new_top);
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE;
            // SAFETY: the released heap pages go back to being the reservation's placeholder.
            let _ = unsafe { host::mmap(new_top, cur_top - new_top, libc::PROT_NONE, flags, -1, 0) };
        }
        self.brk = want;
        want as i64
    }
}
