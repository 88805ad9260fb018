//! Guest page tables: 4-level x86-64 tables that trapbox writes from the host side.
//!
//! The tables translate guest-virtual addresses (equal to host-virtual ones, invariant 1) to
//! guest-physical addresses that `memory.rs` allocates. They are built when a mapping is
//! created, so a guest's first touch of a page is resolved by KVM and the host kernel without a
//! trip to trapbox. Ranges aligned on 2 MiB in both address spaces use 2 MiB leaves; changing
//! part of one splits it into 512 4 KiB entries first.
//!
//! Table pages come from a [`TablePool`]: a region of host memory that `vm` also registers as
//! guest-physical memory (the CPU walks the tables by guest-physical address) but never maps
//! into the guest's virtual address space, so the guest can neither read nor change them.

use thiserror::Error;

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large (PDE-level) page.
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_ACCESSED: u64 = 1 << 5;
const PTE_DIRTY: u64 = 1 << 6;
const PTE_LARGE: u64 = 1 << 7;
const PTE_NX: u64 = 1 << 63;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Entries of intermediate levels allow everything; leaves decide.
const TABLE_FLAGS: u64 = PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_ACCESSED;

/// Access rights of a leaf entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteFlags {
    /// Writable.
    pub write: bool,
    /// Executable (the NX bit is clear).
    pub exec: bool,
    /// Reachable at CPL3. Entries for trapbox's own ring-0 pages have this clear.
    pub user: bool,
}

impl PteFlags {
    fn bits(self) -> u64 {
        // Accessed and dirty are preset so the CPU never has to write them back.
        let mut b = PTE_PRESENT | PTE_ACCESSED | PTE_DIRTY;
        if self.write {
            b |= PTE_WRITE;
        }
        if self.user {
            b |= PTE_USER;
        }
        if !self.exec {
            b |= PTE_NX;
        }
        b
    }

    fn from_bits(b: u64) -> PteFlags {
        PteFlags { write: b & PTE_WRITE != 0, exec: b & PTE_NX == 0, user: b & PTE_USER != 0 }
    }
}

/// Errors from the page-table builder.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PagingError {
    /// The pool of table pages is exhausted.
    #[error("page-table pool exhausted ({0} pages)")]
    PoolExhausted(usize),
    /// An address or length is not page aligned.
    #[error("unaligned page-table request at {0:#x}")]
    Unaligned(u64),
    /// A virtual address is not canonical lower-half.
    #[error("address {0:#x} is outside the 47-bit user address space")]
    OutOfRange(u64),
}

/// Host memory holding table pages, with the guest-physical address of its first byte.
pub struct TablePool {
    host: *mut u64,
    gpa: u64,
    pages: usize,
    next: usize,
    free: Vec<usize>,
}

// SAFETY: the pool owns its region exclusively (see `TablePool::new`); moving it to another
// thread moves that ownership.
unsafe impl Send for TablePool {}

impl TablePool {
    /// Creates a pool over `pages` 4 KiB pages at `host`, which the guest sees at `gpa`.
    ///
    /// # Safety
    /// `host` must be 4 KiB aligned, valid for reads and writes of `pages * 4096` bytes, zeroed,
    /// and used by nothing else for as long as the pool lives.
    pub unsafe fn new(host: *mut u8, gpa: u64, pages: usize) -> TablePool {
        TablePool { host: host.cast(), gpa, pages, next: 0, free: Vec::new() }
    }

    fn alloc(&mut self) -> Result<u64, PagingError> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None if self.next < self.pages => {
                self.next += 1;
                self.next - 1
            }
            None => return Err(PagingError::PoolExhausted(self.pages)),
        };
        Ok(self.gpa + idx as u64 * PAGE_SIZE)
    }

    fn release(&mut self, table_gpa: u64) {
        self.table(table_gpa).fill(0);
        self.free.push(((table_gpa - self.gpa) / PAGE_SIZE) as usize);
    }

    /// The 512 entries of the table page at `table_gpa`.
    fn table(&mut self, table_gpa: u64) -> &mut [u64] {
        let idx = (table_gpa - self.gpa) / PAGE_SIZE;
        assert!((idx as usize) < self.pages, "table {table_gpa:#x} outside the pool");
        // SAFETY: idx is inside the pool (checked above), the pool's region is valid and
        // exclusively ours (TablePool::new's contract), and the &mut self borrow prevents a
        // second live slice into the same pool.
        unsafe { std::slice::from_raw_parts_mut(self.host.add(idx as usize * 512), 512) }
    }

    /// Number of table pages in use.
    pub fn used(&self) -> usize {
        self.next - self.free.len()
    }
}

/// A 4-level page-table hierarchy.
pub struct PageTables {
    pool: TablePool,
    root: u64,
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// Bytes mapped by one entry at `level` (1 = PTE, 2 = PDE, 3 = PDPTE, 4 = PML4E).
fn span(level: u32) -> u64 {
    1u64 << (12 + 9 * (level - 1))
}

impl PageTables {
    /// Creates an empty hierarchy whose root table comes from `pool`.
    pub fn new(mut pool: TablePool) -> Result<PageTables, PagingError> {
        let root = pool.alloc()?;
        Ok(PageTables { pool, root })
    }

    /// Guest-physical address of the PML4 (the value for CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Table pages in use.
    pub fn tables_used(&self) -> usize {
        self.pool.used()
    }

    fn check(va: u64, len: u64) -> Result<(), PagingError> {
        if !va.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(PagingError::Unaligned(va));
        }
        if va.checked_add(len).is_none_or(|end| end > 1 << 47) {
            return Err(PagingError::OutOfRange(va));
        }
        Ok(())
    }

    /// The PDE for `va`, creating the upper levels as needed.
    fn pd_entry(&mut self, va: u64) -> Result<(u64, usize), PagingError> {
        let mut table = self.root;
        for level in [4u32, 3] {
            let i = index(va, level);
            let e = self.pool.table(table)[i];
            table = if e & PTE_PRESENT != 0 {
                e & PTE_ADDR
            } else {
                let t = self.pool.alloc()?;
                self.pool.table(table)[i] = t | TABLE_FLAGS;
                t
            };
        }
        Ok((table, index(va, 2)))
    }

    /// The PD table covering `va` if the upper levels exist; else how far to skip.
    fn find_pd(&mut self, va: u64) -> Result<u64, u64> {
        let mut table = self.root;
        for level in [4u32, 3] {
            let e = self.pool.table(table)[index(va, level)];
            if e & PTE_PRESENT == 0 {
                let s = span(level);
                return Err((va & !(s - 1)) + s);
            }
            table = e & PTE_ADDR;
        }
        Ok(table)
    }

    /// Replaces a 2 MiB leaf by a table of 512 equivalent 4 KiB entries.
    fn split(&mut self, pd: u64, i: usize) -> Result<u64, PagingError> {
        let e = self.pool.table(pd)[i];
        let t = self.pool.alloc()?;
        let base = e & PTE_ADDR & !(LARGE_PAGE_SIZE - 1);
        let flags = e & !PTE_ADDR & !PTE_LARGE;
        let pt = self.pool.table(t);
        for (k, pte) in pt.iter_mut().enumerate() {
            *pte = (base + k as u64 * PAGE_SIZE) | flags;
        }
        self.pool.table(pd)[i] = t | TABLE_FLAGS;
        Ok(t)
    }

    /// Maps `len` bytes at guest-virtual `va` to guest-physical `gpa`, replacing whatever was
    /// mapped there.
    pub fn map(&mut self, va: u64, gpa: u64, len: u64, flags: PteFlags) -> Result<(), PagingError> {
        Self::check(va, len)?;
        if !gpa.is_multiple_of(PAGE_SIZE) {
            return Err(PagingError::Unaligned(gpa));
        }
        let bits = flags.bits();
        let (mut va, mut gpa, end) = (va, gpa, va + len);
        while va < end {
            let (pd, i) = self.pd_entry(va)?;
            let old = self.pool.table(pd)[i];
            let large_ok = va % LARGE_PAGE_SIZE == 0 && gpa % LARGE_PAGE_SIZE == 0 && end - va >= LARGE_PAGE_SIZE;
            if large_ok {
                if old & PTE_PRESENT != 0 && old & PTE_LARGE == 0 {
                    self.pool.release(old & PTE_ADDR);
                }
                self.pool.table(pd)[i] = gpa | bits | PTE_LARGE;
                va += LARGE_PAGE_SIZE;
                gpa += LARGE_PAGE_SIZE;
                continue;
            }
            let pt = if old & PTE_PRESENT == 0 {
                let t = self.pool.alloc()?;
                self.pool.table(pd)[i] = t | TABLE_FLAGS;
                t
            } else if old & PTE_LARGE != 0 {
                self.split(pd, i)?
            } else {
                old & PTE_ADDR
            };
            let stop = end.min((va & !(LARGE_PAGE_SIZE - 1)) + LARGE_PAGE_SIZE);
            let t = self.pool.table(pt);
            while va < stop {
                t[index(va, 1)] = gpa | bits;
                va += PAGE_SIZE;
                gpa += PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Removes the mappings of `len` bytes at `va`. Absent parts are skipped quickly, so
    /// unmapping a large sparse reservation costs little.
    pub fn unmap(&mut self, va: u64, len: u64) -> Result<(), PagingError> {
        Self::check(va, len)?;
        let (mut va, end) = (va, va + len);
        while va < end {
            let pd = match self.find_pd(va) {
                Ok(pd) => pd,
                Err(next) => {
                    va = next;
                    continue;
                }
            };
            let i = index(va, 2);
            let e = self.pool.table(pd)[i];
            let chunk_end = (va & !(LARGE_PAGE_SIZE - 1)) + LARGE_PAGE_SIZE;
            if e & PTE_PRESENT == 0 {
                va = chunk_end;
                continue;
            }
            if va % LARGE_PAGE_SIZE == 0 && end >= chunk_end {
                if e & PTE_LARGE == 0 {
                    self.pool.release(e & PTE_ADDR);
                }
                self.pool.table(pd)[i] = 0;
                va = chunk_end;
                continue;
            }
            let pt = if e & PTE_LARGE != 0 { self.split(pd, i)? } else { e & PTE_ADDR };
            let stop = end.min(chunk_end);
            let t = self.pool.table(pt);
            while va < stop {
                t[index(va, 1)] = 0;
                va += PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Translates `va`: the guest-physical address and the leaf's flags, if mapped.
    pub fn translate(&mut self, va: u64) -> Option<(u64, PteFlags)> {
        let pd = self.find_pd(va).ok()?;
        let e = self.pool.table(pd)[index(va, 2)];
        if e & PTE_PRESENT == 0 {
            return None;
        }
        if e & PTE_LARGE != 0 {
            let base = e & PTE_ADDR & !(LARGE_PAGE_SIZE - 1);
            return Some((base + (va & (LARGE_PAGE_SIZE - 1)), PteFlags::from_bits(e)));
        }
        let pte = self.pool.table(e & PTE_ADDR)[index(va, 1)];
        if pte & PTE_PRESENT == 0 {
            return None;
        }
        Some(((pte & PTE_ADDR) + (va & (PAGE_SIZE - 1)), PteFlags::from_bits(pte)))
    }

    /// Whether `va` is mapped by a 2 MiB leaf (for tests and diagnostics).
    pub fn is_large(&mut self, va: u64) -> bool {
        match self.find_pd(va) {
            Ok(pd) => {
                let e = self.pool.table(pd)[index(va, 2)];
                e & PTE_PRESENT != 0 && e & PTE_LARGE != 0
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Page([u64; 512]);

    fn tables(pages: usize) -> (Vec<Page>, PageTables) {
        let mut mem: Vec<Page> = (0..pages).map(|_| Page([0; 512])).collect();
        // SAFETY: the Vec's buffer is page aligned, zeroed, and outlives the tables in each
        // test (it is returned alongside them and dropped after).
        let pool = unsafe { TablePool::new(mem.as_mut_ptr().cast(), 0x1000_0000, pages) };
        (mem, PageTables::new(pool).expect("root"))
    }

    const RW: PteFlags = PteFlags { write: true, exec: false, user: true };
    const RX: PteFlags = PteFlags { write: false, exec: true, user: true };

    #[test]
    fn map_small_pages_translate() {
        let (_m, mut pt) = tables(16);
        pt.map(0x40_1000, 0x8000_3000, 0x3000, RX).unwrap();
        assert_eq!(pt.translate(0x40_1234), Some((0x8000_3234, RX)));
        assert_eq!(pt.translate(0x40_3fff), Some((0x8000_5fff, RX)));
        assert_eq!(pt.translate(0x40_4000), None);
        assert_eq!(pt.translate(0x40_0fff), None);
        assert!(!pt.is_large(0x40_1000));
    }

    #[test]
    fn map_uses_large_pages_when_aligned() {
        let (_m, mut pt) = tables(16);
        pt.map(0x7f00_0020_0000, 0x4_0020_0000, 4 << 20, RW).unwrap();
        assert!(pt.is_large(0x7f00_0020_0000));
        assert!(pt.is_large(0x7f00_0040_0000));
        assert_eq!(pt.translate(0x7f00_0041_2345), Some((0x4_0041_2345, RW)));
        // root + pdpt + pd only: no 4 KiB tables were needed.
        assert_eq!(pt.tables_used(), 3);
    }

    #[test]
    fn map_misaligned_gpa_falls_back_to_small_pages() {
        let (_m, mut pt) = tables(16);
        pt.map(0x20_0000, 0x1000, 2 << 20, RW).unwrap();
        assert!(!pt.is_large(0x20_0000));
        assert_eq!(pt.translate(0x3f_f000), Some((0x20_0000, RW)));
    }

    #[test]
    fn unmap_part_of_large_page_splits_it() {
        let (_m, mut pt) = tables(16);
        pt.map(0x20_0000, 0x60_0000, 2 << 20, RW).unwrap();
        pt.unmap(0x20_1000, 0x1000).unwrap();
        assert!(!pt.is_large(0x20_0000));
        assert_eq!(pt.translate(0x20_0000), Some((0x60_0000, RW)));
        assert_eq!(pt.translate(0x20_1000), None);
        assert_eq!(pt.translate(0x20_2000), Some((0x60_2000, RW)));
    }

    #[test]
    fn map_over_existing_changes_flags() {
        let (_m, mut pt) = tables(16);
        pt.map(0x20_0000, 0x60_0000, 2 << 20, RW).unwrap();
        pt.map(0x20_3000, 0x60_3000, 0x1000, RX).unwrap();
        assert_eq!(pt.translate(0x20_3000), Some((0x60_3000, RX)));
        assert_eq!(pt.translate(0x20_4000), Some((0x60_4000, RW)));
    }

    #[test]
    fn unmap_sparse_reservation_is_cheap() {
        let (_m, mut pt) = tables(16);
        pt.map(0x1000_0000, 0x1000_0000, 0x1000, RW).unwrap();
        let used = pt.tables_used();
        // 64 GiB of nothing: must not allocate tables to discover that.
        pt.unmap(0x20_0000_0000, 64 << 30).unwrap();
        assert_eq!(pt.tables_used(), used);
        assert_eq!(pt.translate(0x1000_0000), Some((0x1000_0000, RW)));
    }

    #[test]
    fn unmap_whole_large_chunk_releases_table() {
        let (_m, mut pt) = tables(16);
        pt.map(0x20_0000, 0x1000, 0x1000, RW).unwrap();
        let used = pt.tables_used();
        pt.unmap(0x20_0000, 2 << 20).unwrap();
        assert_eq!(pt.tables_used(), used - 1);
    }

    #[test]
    fn map_rejects_unaligned_and_kernel_addresses() {
        let (_m, mut pt) = tables(4);
        assert_eq!(pt.map(0x1001, 0, 0x1000, RW), Err(PagingError::Unaligned(0x1001)));
        assert_eq!(pt.map(0xffff_8000_0000_0000, 0, 0x1000, RW), Err(PagingError::OutOfRange(0xffff_8000_0000_0000)));
    }

    #[test]
    fn pool_exhaustion_is_an_error() {
        let (_m, mut pt) = tables(3);
        // root + pdpt + pd fit; the 4 KiB table does not.
        assert_eq!(pt.map(0x1000, 0x1000, 0x1000, RW), Err(PagingError::PoolExhausted(3)));
    }

    #[test]
    fn supervisor_pages_have_user_clear() {
        let (_m, mut pt) = tables(8);
        let sup = PteFlags { write: true, exec: false, user: false };
        pt.map(0x5000, 0x5000, 0x1000, sup).unwrap();
        assert_eq!(pt.translate(0x5000).map(|(_, f)| f.user), Some(false));
    }
}
