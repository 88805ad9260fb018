//! Guest memory as KVM sees it: memory slots and the guest-physical addresses behind them.
//!
//! A guest mapping is a range of trapbox's own host address space (invariant 1). To make it
//! reachable, `GuestMemory` gives it a range of guest-physical addresses (private to `vm`:
//! nothing outside assumes a layout, and nothing assumes the host has 47 physical address
//! bits), registers a KVM memory slot from those addresses to the host range, and writes the
//! page-table entries from guest-virtual (= host-virtual) to guest-physical.
//!
//! Guest-physical ranges are chosen congruent to the host address modulo 2 MiB, so that page
//! tables can use 2 MiB leaves wherever the mapping covers a whole aligned 2 MiB. Removing part
//! of a slot re-registers its remaining pieces with their old guest-physical addresses, so the
//! page-table entries of the rest stay valid.

use std::collections::BTreeMap;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use thiserror::Error;

use super::paging::{PageTables, PagingError, PteFlags, LARGE_PAGE_SIZE, PAGE_SIZE};

/// Errors from guest memory management.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// KVM refused a memory slot.
    #[error("KVM_SET_USER_MEMORY_REGION (slot {slot}, {len:#x} bytes at {hva:#x}): {source}")]
    Slot {
        /// Slot number.
        slot: u32,
        /// Host address.
        hva: u64,
        /// Length.
        len: u64,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// All memory slots are in use.
    #[error("out of KVM memory slots ({0})")]
    NoSlots(usize),
    /// Guest-physical address space is exhausted.
    #[error("out of guest-physical address space for {0:#x} bytes")]
    NoPhysSpace(u64),
    /// A page-table update failed.
    #[error("page tables: {0}")]
    Paging(#[from] PagingError),
}

/// First-fit allocator of guest-physical ranges with 2 MiB colouring.
#[derive(Debug)]
pub struct PhysAllocator {
    /// Free ranges: start -> end.
    free: BTreeMap<u64, u64>,
}

impl PhysAllocator {
    /// An allocator handing out addresses in `[start, end)`.
    pub fn new(start: u64, end: u64) -> PhysAllocator {
        let mut free = BTreeMap::new();
        free.insert(start, end);
        PhysAllocator { free }
    }

    /// Allocates `len` bytes whose start is congruent to `color` modulo 2 MiB.
    pub fn alloc(&mut self, len: u64, color: u64) -> Option<u64> {
        let color = color % LARGE_PAGE_SIZE;
        let (&s, &e, at) = self.free.iter().find_map(|(s, e)| {
            let base = (s & !(LARGE_PAGE_SIZE - 1)) + color;
            let at = if base >= *s { base } else { base + LARGE_PAGE_SIZE };
            (at.checked_add(len)? <= *e).then_some((s, e, at))
        })?;
        self.free.remove(&s);
        if at > s {
            self.free.insert(s, at);
        }
        if at + len < e {
            self.free.insert(at + len, e);
        }
        Some(at)
    }

    /// Returns a range, merging it with free neighbours.
    pub fn release(&mut self, start: u64, len: u64) {
        let (mut s, mut e) = (start, start + len);
        if let Some((&ps, &pe)) = self.free.range(..s).next_back() {
            if pe == s {
                self.free.remove(&ps);
                s = ps;
            }
        }
        if let Some(&ne) = self.free.get(&e) {
            self.free.remove(&e);
            e = ne;
        }
        self.free.insert(s, e);
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).sum()
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    id: u32,
    end: u64,
    gpa: u64,
}

/// Guest memory: slots, guest-physical space and the page tables that tie them together.
///
/// Slots are windows from host addresses to guest-physical ones and outlive the mappings that
/// created them: a later mapping over the same host range reuses the window (KVM resolves
/// the host address at fault time, so it sees whatever is mapped there now). Deleting a slot
/// makes a shadow-paging KVM (PVM) drop every translation it holds, so trapbox deletes slots
/// only to reclaim them when slots run short ([`GuestMemory::collect`]).
///
/// Removing or reducing rights must reach KVM before the guest runs again, because trapbox
/// writes the guest page tables from the host side: a shadow-paging KVM (PVM) keeps shadow
/// copies of guest page tables that only guest writes invalidate, and neither a CR3 reload
/// nor the MMU notifier's invalidation of the host range drops them (measured: without it a
/// freed page stays reachable through its old address once the host reuses it). So such a
/// change sets a flag, and before the next run [`GuestMemory::flush`] deletes and re-creates a
/// one-page "zap" slot, which makes x86 KVM discard all its translations (shadow pages or
/// TDP entries) and flush the guest TLB — once per exit however many changes there were.
pub struct GuestMemory {
    vm: VmFd,
    tables: PageTables,
    phys: PhysAllocator,
    /// Slots by host start address; never overlapping.
    slots: BTreeMap<u64, Slot>,
    free_ids: Vec<u32>,
    next_id: u32,
    max_slots: usize,
    /// An entry lost rights or vanished: flush the guest TLB before the next run.
    flush_needed: bool,
    /// Flush at once instead of before the next run: another vCPU may be running guest code
    /// right now (a multi-threaded guest), and must not keep using what was taken away.
    eager: Option<(u32, u64, u64)>,
    /// Ranges mapped since the guest last ran: KVM cannot have cached a translation of them
    /// yet, so their contents may change without a flush.
    unseen: Vec<(u64, u64)>,
}

impl GuestMemory {
    /// Wraps a VM whose slot 0 already holds trapbox's own system memory (including the page
    /// tables' pool); guest slots are numbered from 1.
    pub fn new(vm: VmFd, tables: PageTables, phys: PhysAllocator, max_slots: usize) -> GuestMemory {
        GuestMemory {
            vm,
            tables,
            phys,
            slots: BTreeMap::new(),
            free_ids: Vec::new(),
            next_id: 1,
            max_slots,
            flush_needed: false,
            eager: None,
            unseen: Vec::new(),
        }
    }

    /// The VM file descriptor.
    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// The page tables (for ring-0 pages mapped at start-up).
    pub fn tables(&mut self) -> &mut PageTables {
        &mut self.tables
    }

    /// `[hva, hva+len)` was written behind the guest page tables' back (code was patched; a
    /// read-only private page becomes a copy of its own). Unless the guest cannot have run
    /// with that memory yet (mapped during this exit, and no other vCPU exists), KVM drops its
    /// cached translations before the next run: on PVM, a translation made before the copy
    /// would keep executing the unpatched page.
    pub fn code_changed(&mut self, hva: u64, len: u64) {
        let end = hva.saturating_add(len);
        let unseen = self.eager.is_none() && self.unseen.iter().any(|&(s, e)| s <= hva && end <= e);
        self.flush_needed |= !unseen;
    }

    /// If rights were removed since the last run, makes KVM drop every translation it holds:
    /// deleting a slot does that on x86; the zap slot (id `zap.0`, one page of trapbox memory
    /// at host `zap.1`, guest-physical `zap.2`) exists only for this and is re-created at once.
    pub fn flush(&mut self, zap: (u32, u64, u64)) -> Result<bool, MemoryError> {
        // Called before every run: from now on the guest may touch what was mapped.
        self.unseen.clear();
        if !std::mem::take(&mut self.flush_needed) {
            return Ok(false);
        }
        self.set_slot(zap.0, zap.2, zap.1, 0)?;
        self.set_slot(zap.0, zap.2, zap.1, PAGE_SIZE)?;
        Ok(true)
    }

    fn set_slot(&self, id: u32, gpa: u64, hva: u64, len: u64) -> Result<(), MemoryError> {
        let region = kvm_userspace_memory_region {
            slot: id,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: hva,
        };
        // SAFETY: a slot only names host addresses; KVM resolves them through the host page
        // tables at fault time (MMU notifiers track changes), so the range need not stay
        // mapped. Guest access is bounded by the guest page tables, which point only at
        // ranges that are guest memory now. An empty region deletes the slot.
        super::eintr_retry(|| unsafe { self.vm.set_user_memory_region(region) }).map_err(|source| MemoryError::Slot {
            slot: id,
            hva,
            len,
            source,
        })
    }

    fn new_id(&mut self) -> Result<u32, MemoryError> {
        if let Some(id) = self.free_ids.pop() {
            return Ok(id);
        }
        if self.next_id as usize >= self.max_slots {
            return Err(MemoryError::NoSlots(self.max_slots));
        }
        self.next_id += 1;
        Ok(self.next_id - 1)
    }

    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, Slot)> + '_ {
        let first = self.slots.range(..=start).next_back().map(|(s, _)| *s).unwrap_or(start);
        self.slots.range(first..end).filter(move |(_, sl)| sl.end > start).map(|(s, sl)| (*s, *sl))
    }

    /// Moves guest memory to a new VM (a forked child's): every slot is registered again with
    /// the same guest-physical and host addresses, so the page tables stay valid as they are.
    pub fn rebind(&mut self, vm: VmFd) -> Result<(), MemoryError> {
        self.vm = vm;
        for (start, sl) in &self.slots {
            self.set_slot(sl.id, sl.gpa, *start, sl.end - start)?;
        }
        Ok(())
    }

    /// Makes sure every byte of `[start, end)` lies in some slot, adding slots for the gaps.
    fn cover(&mut self, start: u64, end: u64) -> Result<(), MemoryError> {
        let mut gaps = Vec::new();
        let mut at = start;
        for (s, sl) in self.overlapping(start, end).collect::<Vec<_>>() {
            if s > at {
                gaps.push((at, s));
            }
            at = at.max(sl.end);
        }
        if at < end {
            gaps.push((at, end));
        }
        for (a, b) in gaps {
            let len = b - a;
            let gpa = self.phys.alloc(len, a).ok_or(MemoryError::NoPhysSpace(len))?;
            let id = match self.new_id() {
                Ok(id) => id,
                Err(e) => {
                    self.phys.release(gpa, len);
                    return Err(e);
                }
            };
            if let Err(e) = self.set_slot(id, gpa, a, len) {
                self.free_ids.push(id);
                self.phys.release(gpa, len);
                return Err(e);
            }
            self.slots.insert(a, Slot { id, end: b, gpa });
        }
        Ok(())
    }

    /// Sets the page-table entries of `[start, end)` (covered by slots) to `flags`.
    fn set_rights(&mut self, start: u64, end: u64, flags: Option<PteFlags>) -> Result<(), MemoryError> {
        let pieces: Vec<(u64, u64, u64)> = self
            .overlapping(start, end)
            .map(|(s, slot)| {
                let (a, b) = (s.max(start), slot.end.min(end));
                (a, b, slot.gpa + (a - s))
            })
            .collect();
        for (a, b, gpa) in pieces {
            match flags {
                Some(f) => self.tables.map(a, gpa, b - a, f)?,
                None => self.tables.unmap(a, b - a)?,
            }
        }
        Ok(())
    }

    /// Makes `[hva, hva+len)` guest memory with the given rights (None: reserved but
    /// inaccessible). The range must hold no guest memory now (unmap it first), so nothing
    /// stale can be cached for it and no flush is needed.
    pub fn map(&mut self, hva: u64, len: u64, flags: Option<PteFlags>) -> Result<(), MemoryError> {
        self.cover(hva, hva + len)?;
        self.unseen.push((hva, hva + len));
        if flags.is_none() {
            self.tables.unmap(hva, len)?;
            return Ok(());
        }
        self.set_rights(hva, hva + len, flags)
    }

    /// Changes the rights of `[hva, hva+len)` (None removes access but keeps the memory).
    /// `reduces`: some page loses a right it had, so cached translations must go.
    pub fn protect(&mut self, hva: u64, len: u64, flags: Option<PteFlags>, reduces: bool) -> Result<(), MemoryError> {
        self.cover(hva, hva + len)?;
        self.flush_needed |= reduces;
        self.set_rights(hva, hva + len, flags)?;
        self.flush_if_eager()
    }

    /// From now on, removals and rights reductions reach every vCPU before the call returns
    /// (through the zap slot `zap`, see [`GuestMemory::flush`]).
    pub fn flush_eagerly(&mut self, zap: (u32, u64, u64)) {
        self.eager = Some(zap);
    }

    fn flush_if_eager(&mut self) -> Result<(), MemoryError> {
        if let Some(zap) = self.eager {
            self.flush(zap)?;
        }
        Ok(())
    }

    /// Removes `[hva, hva+len)` from the guest's page tables. The slots stay for reuse.
    pub fn unmap(&mut self, hva: u64, len: u64) -> Result<(), MemoryError> {
        self.tables.unmap(hva, len)?;
        self.flush_needed = true;
        self.flush_if_eager()
    }

    /// Deletes the slots that hold no live guest memory, as `live(start, end)` says, to make
    /// room when slots run short.
    pub fn collect(&mut self, live: impl Fn(u64, u64) -> bool) -> Result<usize, MemoryError> {
        let dead: Vec<(u64, Slot)> =
            self.slots.iter().filter(|(s, sl)| !live(**s, sl.end)).map(|(s, sl)| (*s, *sl)).collect();
        for (s, sl) in &dead {
            self.slots.remove(s);
            self.set_slot(sl.id, sl.gpa, *s, 0)?;
            self.free_ids.push(sl.id);
            self.phys.release(sl.gpa, sl.end - s);
        }
        Ok(dead.len())
    }

    /// Whether few slots are left.
    pub fn slots_low(&self) -> bool {
        self.slots.len() + 64 >= self.max_slots
    }

    /// Number of guest slots in use.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

/// What the process layer keeps in step with its map of the guest's address space: a second
/// view of guest memory that the engine running the guest may have. KVM has one (slots and
/// page tables, [`GuestMemory`]); the in-process engine has none, since there the host's own
/// page tables are the guest's ([`NoMirror`]).
pub trait MemoryMirror {
    /// `[hva, hva+len)` became guest memory with these rights (None: reserved, inaccessible).
    fn map(&mut self, hva: u64, len: u64, flags: Option<PteFlags>) -> Result<(), MemoryError>;
    /// The rights of `[hva, hva+len)` changed; `reduces`: some page lost a right.
    fn protect(&mut self, hva: u64, len: u64, flags: Option<PteFlags>, reduces: bool) -> Result<(), MemoryError>;
    /// `[hva, hva+len)` is no longer guest memory.
    fn unmap(&mut self, hva: u64, len: u64) -> Result<(), MemoryError>;
    /// Whether the mirror is running short of room (KVM slots) and should [`Self::collect`].
    fn slots_low(&self) -> bool;
    /// Drops what mirrors memory `live(start, end)` says is gone; how many were dropped.
    fn collect(&mut self, live: &dyn Fn(u64, u64) -> bool) -> Result<usize, MemoryError>;
    /// `[hva, hva+len)` was written behind the guest's back (patched code).
    fn code_changed(&mut self, hva: u64, len: u64);
}

impl MemoryMirror for GuestMemory {
    fn map(&mut self, hva: u64, len: u64, flags: Option<PteFlags>) -> Result<(), MemoryError> {
        GuestMemory::map(self, hva, len, flags)
    }
    fn protect(&mut self, hva: u64, len: u64, flags: Option<PteFlags>, reduces: bool) -> Result<(), MemoryError> {
        GuestMemory::protect(self, hva, len, flags, reduces)
    }
    fn unmap(&mut self, hva: u64, len: u64) -> Result<(), MemoryError> {
        GuestMemory::unmap(self, hva, len)
    }
    fn slots_low(&self) -> bool {
        GuestMemory::slots_low(self)
    }
    fn collect(&mut self, live: &dyn Fn(u64, u64) -> bool) -> Result<usize, MemoryError> {
        GuestMemory::collect(self, live)
    }
    fn code_changed(&mut self, hva: u64, len: u64) {
        GuestMemory::code_changed(self, hva, len)
    }
}

/// The mirror of an engine whose guest uses the host's page tables directly: nothing to do.
#[derive(Debug, Default)]
pub struct NoMirror;

impl MemoryMirror for NoMirror {
    fn map(&mut self, _: u64, _: u64, _: Option<PteFlags>) -> Result<(), MemoryError> {
        Ok(())
    }
    fn protect(&mut self, _: u64, _: u64, _: Option<PteFlags>, _: bool) -> Result<(), MemoryError> {
        Ok(())
    }
    fn unmap(&mut self, _: u64, _: u64) -> Result<(), MemoryError> {
        Ok(())
    }
    fn slots_low(&self) -> bool {
        false
    }
    fn collect(&mut self, _: &dyn Fn(u64, u64) -> bool) -> Result<usize, MemoryError> {
        Ok(0)
    }
    fn code_changed(&mut self, _: u64, _: u64) {}
}

/// Rounds up to a page.
pub fn page_up(x: u64) -> u64 {
    (x + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_respects_color() {
        let mut a = PhysAllocator::new(1 << 30, 1 << 40);
        let g = a.alloc(0x5000, 0x7f12_3456_7000).unwrap();
        assert_eq!(g % LARGE_PAGE_SIZE, 0x7f12_3456_7000 % LARGE_PAGE_SIZE);
        assert!(g >= 1 << 30);
    }

    #[test]
    fn alloc_release_merges() {
        let mut a = PhysAllocator::new(0, 64 << 20);
        let total = a.free_bytes();
        let x = a.alloc(4 << 20, 0).unwrap();
        let y = a.alloc(4 << 20, 0x1000).unwrap();
        assert!(y >= x + (4 << 20));
        a.release(x, 4 << 20);
        a.release(y, 4 << 20);
        assert_eq!(a.free_bytes(), total);
        assert_eq!(a.free.len(), 1);
    }

    #[test]
    fn alloc_fails_when_full() {
        let mut a = PhysAllocator::new(0, 4 << 20);
        assert!(a.alloc(4 << 20, 0).is_some());
        assert!(a.alloc(0x1000, 0).is_none());
    }

    #[test]
    fn alloc_release_middle_piece() {
        let mut a = PhysAllocator::new(0, 16 << 20);
        let x = a.alloc(8 << 20, 0).unwrap();
        a.release(x + 0x1000, 0x1000);
        assert_eq!(a.alloc(0x1000, 0x1000), Some(x + 0x1000));
    }
}
