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
pub struct GuestMemory {
    vm: VmFd,
    tables: PageTables,
    phys: PhysAllocator,
    /// Slots by host start address.
    slots: BTreeMap<u64, Slot>,
    free_ids: Vec<u32>,
    next_id: u32,
    max_slots: usize,
    /// Set when an entry lost rights or vanished: the guest TLB must be flushed before the
    /// guest runs again.
    flush_needed: bool,
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

    /// Whether a TLB flush is due, clearing the flag.
    pub fn take_flush(&mut self) -> bool {
        std::mem::take(&mut self.flush_needed)
    }

    fn set_slot(&self, id: u32, gpa: u64, hva: u64, len: u64) -> Result<(), MemoryError> {
        let region = kvm_userspace_memory_region {
            slot: id,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: hva,
        };
        // SAFETY: a non-empty region maps host memory that the address space keeps mapped for
        // as long as the slot exists (slots are removed here before the host range is unmapped,
        // see process::mem); an empty region deletes the slot.
        unsafe { self.vm.set_user_memory_region(region) }.map_err(|source| MemoryError::Slot {
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

    /// Makes `[hva, hva+len)` guest memory with the given rights (None: reserved but
    /// inaccessible). Whatever was mapped there before is replaced.
    pub fn map(&mut self, hva: u64, len: u64, flags: Option<PteFlags>) -> Result<(), MemoryError> {
        self.unmap(hva, len)?;
        let gpa = self.phys.alloc(len, hva).ok_or(MemoryError::NoPhysSpace(len))?;
        let id = match self.new_id() {
            Ok(id) => id,
            Err(e) => {
                self.phys.release(gpa, len);
                return Err(e);
            }
        };
        if let Err(e) = self.set_slot(id, gpa, hva, len) {
            self.free_ids.push(id);
            self.phys.release(gpa, len);
            return Err(e);
        }
        self.slots.insert(hva, Slot { id, end: hva + len, gpa });
        if let Some(f) = flags {
            self.tables.map(hva, gpa, len, f)?;
        }
        Ok(())
    }

    /// Changes the rights of `[hva, hva+len)`, which must be covered by slots (None removes
    /// access but keeps the memory).
    pub fn protect(&mut self, hva: u64, len: u64, flags: Option<PteFlags>) -> Result<(), MemoryError> {
        let end = hva + len;
        let pieces: Vec<(u64, u64, u64)> = self
            .overlapping(hva, end)
            .map(|(s, slot)| {
                let (a, b) = (s.max(hva), slot.end.min(end));
                (a, b, slot.gpa + (a - s))
            })
            .collect();
        for (a, b, gpa) in pieces {
            match flags {
                Some(f) => self.tables.map(a, gpa, b - a, f)?,
                None => self.tables.unmap(a, b - a)?,
            }
        }
        // Any change may remove a right the TLB still holds.
        self.flush_needed = true;
        Ok(())
    }

    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, Slot)> + '_ {
        let first = self.slots.range(..=start).next_back().map(|(s, _)| *s).unwrap_or(start);
        self.slots.range(first..end).filter(move |(_, sl)| sl.end > start).map(|(s, sl)| (*s, *sl))
    }

    /// Removes `[hva, hva+len)` from the guest: page-table entries, then the slot coverage
    /// (slots cut in two keep the guest-physical addresses of their remaining pieces).
    pub fn unmap(&mut self, hva: u64, len: u64) -> Result<(), MemoryError> {
        let end = hva + len;
        let hit: Vec<(u64, Slot)> = self.overlapping(hva, end).collect();
        if hit.is_empty() {
            return Ok(());
        }
        self.tables.unmap(hva, len)?;
        self.flush_needed = true;
        for (s, slot) in hit {
            self.slots.remove(&s);
            self.set_slot(slot.id, slot.gpa, s, 0)?;
            self.free_ids.push(slot.id);
            let (cut_a, cut_b) = (s.max(hva), slot.end.min(end));
            self.phys.release(slot.gpa + (cut_a - s), cut_b - cut_a);
            if s < cut_a {
                self.keep_piece(s, cut_a, slot.gpa)?;
            }
            if cut_b < slot.end {
                self.keep_piece(cut_b, slot.end, slot.gpa + (cut_b - s))?;
            }
        }
        Ok(())
    }

    fn keep_piece(&mut self, start: u64, end: u64, gpa: u64) -> Result<(), MemoryError> {
        let id = self.new_id()?;
        self.set_slot(id, gpa, start, end - start)?;
        self.slots.insert(start, Slot { id, end, gpa });
        Ok(())
    }

    /// Number of guest slots in use.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
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
