//! The guest's memory syscalls: mmap, munmap, mprotect, mremap, brk.
//!
//! Each one acts on the host (the guest's memory *is* trapbox's memory at the same addresses)
//! and then brings the address space, the KVM slots and the guest page tables in step. Guest
//! memory lives only in the arena (`process::arena`): trapbox chooses where a mapping goes and
//! makes it over a placeholder with MAP_FIXED, and memory the guest gives up becomes a
//! placeholder again, so no range the guest ever had can become trapbox's. The guest sees
//! memory the way a kernel would show it: outside the arena nothing is its own (munmap there
//! is a no-op, mprotect fails with ENOMEM, MAP_FIXED fails with ENOMEM instead of clobbering
//! trapbox).

use super::arena;
use super::host;
use super::Process;
use trapbox_vm::MemoryMirror;

const PAGE: u64 = 4096;

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE - 1).map(|v| v & !(PAGE - 1))
}

fn neg(e: i32) -> i64 {
    -(e as i64)
}

/// Where new mappings go when the guest gives no usable hint: below its stack, top-down.
const MMAP_BELOW: u64 = u64::MAX;
/// MAP_32BIT: the first 2 GiB.
const LOW_2G: u64 = 1 << 31;

impl Process {
    /// Whether `extra` more bytes of accessible memory would pass `--memory-limit`, or the
    /// guest's own RLIMIT_AS (which counts every mapping).
    fn over_limit(&self, extra: u64) -> bool {
        self.memory_limit.is_some_and(|l| self.aspace.committed().saturating_add(extra) > l)
            || self.aspace.mapped().saturating_add(extra) > self.limits.soft(libc::RLIMIT_AS)
    }

    /// What the guest's own settings refuse of a new mapping's or a change's rights:
    /// PR_SET_MDWE's no write-and-execute and no gaining execute.
    fn mdwe_refuses(&self, prot: i32, had_exec: bool) -> bool {
        let wx = libc::PROT_WRITE | libc::PROT_EXEC;
        self.view.mdwe != 0 && (prot & wx == wx || (prot & libc::PROT_EXEC != 0 && !had_exec))
    }

    /// mmap(2).
    pub fn sys_mmap(&mut self, mem: &mut dyn MemoryMirror, a: &[u64; 6]) -> i64 {
        let (hint, len, mut prot, mut flags, fd, off) = (a[0], a[1], a[2] as i32, a[3] as i32, a[4] as i32, a[5]);
        let Some(len) = page_up(len).filter(|l| *l > 0) else { return neg(libc::EINVAL) };
        if flags & libc::MAP_ANONYMOUS == 0 && self.fds.is_reserved(fd as i64) {
            return neg(libc::EBADF);
        }
        if flags & libc::MAP_ANONYMOUS == 0 && super::fds::is_kvm(fd.into()) {
            // The KVM run page of a vCPU (or any KVM object) is never the guest's to map.
            return neg(libc::ENODEV);
        }
        // Guest stacks do not grow on demand: their page tables are built at mmap time.
        flags &= !libc::MAP_GROWSDOWN;
        prot &= libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        if prot != libc::PROT_NONE && self.over_limit(len) {
            return neg(libc::ENOMEM);
        }
        // A new mapping only refuses write-and-execute (its rights are its own from the start).
        if self.mdwe_refuses(prot, true) {
            return neg(libc::EACCES);
        }
        if self.view.lock_future && prot != libc::PROT_NONE {
            flags |= libc::MAP_LOCKED;
        }
        let noreplace = flags & libc::MAP_FIXED_NOREPLACE != 0;
        let fixed = flags & libc::MAP_FIXED != 0 && !noreplace;
        let Some(end) = hint.checked_add(len) else { return neg(libc::ENOMEM) };
        let at = if fixed {
            if hint & (PAGE - 1) != 0 {
                return neg(libc::EINVAL);
            }
            if self.view.sealed(hint, end) {
                return neg(libc::EPERM);
            }
            if !self.aspace.fixed_allowed(hint, end) {
                self.warn_once(
                    "mmap-fixed",
                    format_args!("refused mmap(MAP_FIXED) at {hint:#x}: outside the guest's part of the address space"),
                );
                return neg(libc::ENOMEM);
            }
            hint
        } else if noreplace {
            if hint & (PAGE - 1) != 0 {
                return neg(libc::EINVAL);
            }
            if !self.aspace.is_free(hint, end) {
                return neg(libc::EEXIST);
            }
            hint
        } else {
            let below = if flags & libc::MAP_32BIT != 0 { LOW_2G } else { MMAP_BELOW };
            match self.aspace.find_free(len, PAGE, hint & !(PAGE - 1), below) {
                Some(at) => at,
                None => return neg(libc::ENOMEM),
            }
        };
        let host_flags = (flags & !(libc::MAP_FIXED_NOREPLACE | libc::MAP_32BIT)) | libc::MAP_FIXED;
        // SAFETY: [at, at+len) is in the arena, outside held ranges: guest memory or
        // placeholders, which MAP_FIXED replaces in one step.
        let got = match unsafe { host::mmap(at, len, prot, host_flags, fd, off) } {
            Ok(p) => p,
            Err(e) => return neg(e),
        };
        if let Err(e) = self.aspace.insert(mem, got, len, prot) {
            self.warn_once("mmap-slot", format_args!("mmap: {e}"));
            let _ = self.aspace.remove(mem, got, len);
            // SAFETY: the mapping just made for the guest, in the arena.
            unsafe { arena::park(got, len) };
            return neg(libc::ENOMEM);
        }
        got as i64
    }

    /// munmap(2): the guest's parts of the range become placeholders; the rest looks unmapped
    /// to the guest already.
    pub fn sys_munmap(&mut self, mem: &mut dyn MemoryMirror, addr: u64, len: u64) -> i64 {
        let Some(len) = page_up(len).filter(|l| *l > 0) else { return neg(libc::EINVAL) };
        if addr & (PAGE - 1) != 0 || addr.checked_add(len).is_none_or(|e| e > super::mem::USER_END) {
            return neg(libc::EINVAL);
        }
        if self.view.sealed(addr, addr + len) {
            return neg(libc::EPERM);
        }
        for (s, e, _) in self.aspace.overlapping(addr, addr + len) {
            if let Err(err) = self.aspace.remove(mem, s, e - s) {
                self.warn_once("munmap-slot", format_args!("munmap: {err}"));
            }
            // SAFETY: [s, e) was guest memory, in the arena; the guest's view of it is gone.
            unsafe { arena::park(s, e - s) };
        }
        0
    }

    /// mprotect(2).
    pub fn sys_mprotect(&mut self, mem: &mut dyn MemoryMirror, addr: u64, len: u64, prot: i32) -> i64 {
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
        if self.view.sealed(addr, end) {
            return neg(libc::EPERM);
        }
        if prot & libc::PROT_EXEC != 0 && self.view.mdwe != 0 {
            let had_exec = self.aspace.overlapping(addr, end).iter().all(|(_, _, p)| p & libc::PROT_EXEC != 0);
            if self.mdwe_refuses(prot, had_exec) {
                return neg(libc::EACCES);
            }
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

    /// mremap(2). The new place is trapbox's choice (in the arena) unless MREMAP_FIXED names
    /// one; what the old range held becomes a placeholder.
    pub fn sys_mremap(&mut self, mem: &mut dyn MemoryMirror, a: &[u64; 6]) -> i64 {
        let (old, old_len, new_len, flags, new_addr) = (a[0], a[1], a[2], a[3] as i32, a[4]);
        if old & (PAGE - 1) != 0 {
            return neg(libc::EINVAL);
        }
        let (Some(old_len), Some(new_len)) = (page_up(old_len), page_up(new_len)) else { return neg(libc::EINVAL) };
        if new_len == 0 {
            return neg(libc::EINVAL);
        }
        let Some((_, region)) = self.aspace.region_at(old) else { return neg(libc::EFAULT) };
        if self.view.sealed(old, old.saturating_add(old_len.max(PAGE))) {
            return neg(libc::EPERM);
        }
        if old_len > 0 && !self.aspace.covers(old, old.saturating_add(old_len)) {
            return neg(libc::EFAULT);
        }
        let prot = region.prot;
        if new_len > old_len && prot != libc::PROT_NONE && self.over_limit(new_len - old_len) {
            return neg(libc::ENOMEM);
        }
        let may_move = flags & libc::MREMAP_MAYMOVE != 0;
        let keep_old = old_len == 0 || flags & libc::MREMAP_DONTUNMAP != 0;
        let got = if flags & libc::MREMAP_FIXED != 0 {
            let Some(end) = new_addr.checked_add(new_len) else { return neg(libc::EINVAL) };
            if new_addr & (PAGE - 1) != 0 || !self.aspace.fixed_allowed(new_addr, end) {
                return neg(libc::EINVAL);
            }
            // SAFETY: the old range is guest memory; the target is in the arena (guest memory
            // or placeholders), which the kernel unmaps as it moves the pages there.
            match unsafe { host::mremap(old, old_len, new_len, flags, new_addr) } {
                Ok(p) => p,
                Err(e) => return neg(e),
            }
        } else if new_len <= old_len && !keep_old {
            // Shrinking in place: the tail becomes a placeholder.
            // SAFETY: the old range is guest memory.
            match unsafe { host::mremap(old, old_len, new_len, 0, 0) } {
                Ok(p) => p,
                Err(e) => return neg(e),
            }
        } else {
            match self.grow_in_place(old, old_len, new_len, keep_old) {
                Some(p) => p,
                None if !may_move => return neg(libc::ENOMEM),
                None => {
                    let Some(at) = self.aspace.find_free(new_len, PAGE, 0, MMAP_BELOW) else {
                        return neg(libc::ENOMEM);
                    };
                    let moved = flags | libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
                    // SAFETY: the old range is guest memory; [at, at+new_len) is free arena
                    // space (placeholders), which the kernel replaces.
                    match unsafe { host::mremap(old, old_len, new_len, moved, at) } {
                        Ok(p) => p,
                        Err(e) => return neg(e),
                    }
                }
            }
        };
        let mut r = Ok(());
        if !keep_old {
            r = r.and(self.aspace.remove(mem, old, old_len));
            // What the old range held is gone from the host: make it a placeholder again,
            // except where the result now lies.
            let (gone_s, gone_e) = (old, old + old_len);
            for (s, e) in [(gone_s, gone_e.min(got).max(gone_s)), (gone_s.max(got + new_len), gone_e)] {
                if e > s {
                    // SAFETY: the part of the old guest range the kernel left empty.
                    unsafe { arena::park(s, e - s) };
                }
            }
        }
        r = r.and(self.aspace.insert(mem, got, new_len, prot));
        if let Err(e) = r {
            self.warn_once("mremap-slot", format_args!("mremap: {e}"));
        }
        got as i64
    }

    /// Grows `[old, old+old_len)` to `new_len` where it is, if the arena is free right after
    /// it: the placeholder there is removed and the kernel grows the mapping into the hole at
    /// once. (The hole exists for one syscall; the kernel places trapbox's own mappings
    /// top-down from above the arena, and finds room there long before it would look here.)
    fn grow_in_place(&mut self, old: u64, old_len: u64, new_len: u64, keep_old: bool) -> Option<u64> {
        if keep_old || new_len <= old_len {
            return None;
        }
        let (ext, ext_end) = (old + old_len, old.checked_add(new_len)?);
        if !self.aspace.is_free(ext, ext_end) {
            return None;
        }
        // SAFETY: [ext, ext_end) is a placeholder in the arena (free for the guest).
        let _ = unsafe { host::munmap(ext, ext_end - ext) };
        // SAFETY: the old range is guest memory; the extension was just freed for it.
        match unsafe { host::mremap(old, old_len, new_len, 0, 0) } {
            Ok(p) => Some(p),
            Err(_) => {
                // SAFETY: the hole just made, back to a placeholder.
                unsafe { arena::park(ext, ext_end - ext) };
                None
            }
        }
    }

    /// brk(2): the heap lives in the space reserved after the main image at load time.
    pub fn sys_brk(&mut self, mem: &mut dyn MemoryMirror, want: u64) -> i64 {
        if want < self.brk_start || want > self.brk_limit {
            return self.brk as i64;
        }
        let (cur_top, new_top) = (page_up(self.brk).unwrap_or(self.brk), page_up(want).unwrap_or(want));
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        if new_top > cur_top {
            if self.over_limit(new_top - cur_top) || new_top - self.brk_start > self.limits.soft(libc::RLIMIT_DATA) {
                return self.brk as i64;
            }
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
            // SAFETY: [cur_top, new_top) is inside the brk room, which holds only
            // placeholders (the guest cannot map there).
            if unsafe { host::mmap(cur_top, new_top - cur_top, rw, flags, -1, 0) }.is_err() {
                return self.brk as i64;
            }
            if self.aspace.insert(mem, cur_top, new_top - cur_top, rw).is_err() {
                return self.brk as i64;
            }
        } else if new_top < cur_top {
            let _ = self.aspace.remove(mem, new_top, cur_top - new_top);
            // SAFETY: the released heap pages go back to being the room's placeholder.
            unsafe { arena::park(new_top, cur_top - new_top) };
        }
        self.brk = want;
        self.aspace.set_brk_room(new_top, self.brk_limit);
        want as i64
    }

    /// shmat(2): the segment goes where trapbox chooses in the arena (or where the guest
    /// asks, if that is in the arena and free, or its own memory with SHM_REMAP); the host
    /// attaches it over the placeholder.
    pub fn sys_shmat(&mut self, mem: &mut dyn MemoryMirror, id: i32, addr: u64, flags: i32) -> i64 {
        const SHMLBA: u64 = PAGE;
        // SAFETY: IPC_STAT writes a shmid_ds into the local.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `ds` is a valid shmid_ds.
        if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } != 0 {
            return neg(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
        }
        let Some(len) = page_up(ds.shm_segsz as u64).filter(|l| *l > 0) else { return neg(libc::EINVAL) };
        let at = if addr == 0 {
            match self.aspace.find_free(len, PAGE, 0, MMAP_BELOW) {
                Some(at) => at,
                None => return neg(libc::ENOMEM),
            }
        } else {
            let at = if flags & libc::SHM_RND != 0 { addr & !(SHMLBA - 1) } else { addr };
            if at & (PAGE - 1) != 0 {
                return neg(libc::EINVAL);
            }
            let Some(end) = at.checked_add(len) else { return neg(libc::EINVAL) };
            let ok = if flags & libc::SHM_REMAP != 0 {
                self.aspace.fixed_allowed(at, end)
            } else {
                self.aspace.is_free(at, end)
            };
            if !ok {
                return neg(libc::EINVAL);
            }
            at
        };
        let prot = libc::PROT_READ
            | if flags & libc::SHM_RDONLY != 0 { 0 } else { libc::PROT_WRITE }
            | if flags & libc::SHM_EXEC != 0 { libc::PROT_EXEC } else { 0 };
        if prot & libc::PROT_WRITE != 0 && self.over_limit(len) {
            return neg(libc::ENOMEM);
        }
        // SAFETY: [at, at+len) is in the arena: placeholders or the guest's own memory, which
        // SHM_REMAP replaces.
        let got = unsafe { libc::shmat(id, at as *const libc::c_void, flags | libc::SHM_REMAP) };
        if got as isize == -1 {
            return neg(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
        }
        let got = got as u64;
        if let Err(e) = self.aspace.insert(mem, got, len, prot) {
            self.warn_once("shmat-slot", format_args!("shmat: {e}"));
            let _ = self.aspace.remove(mem, got, len);
            // SAFETY: the attachment just made for the guest, in the arena.
            unsafe { arena::park(got, len) };
            return neg(libc::ENOMEM);
        }
        self.shm.insert(got, len);
        got as i64
    }

    /// shmdt(2): the attachment at `addr` becomes a placeholder (mapping over it detaches it,
    /// with no moment where the range is free).
    pub fn sys_shmdt(&mut self, mem: &mut dyn MemoryMirror, addr: u64) -> i64 {
        let Some(len) = self.shm.remove(&addr) else { return neg(libc::EINVAL) };
        let _ = self.aspace.remove(mem, addr, len);
        // SAFETY: the guest's attachment, in the arena, which it gave up.
        unsafe { arena::park(addr, len) };
        0
    }
}
