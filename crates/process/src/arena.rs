//! The guest arena: the part of trapbox's address space where guest memory lives, and only
//! guest memory.
//!
//! Guest addresses are host addresses (1:1), so guest memory and trapbox's own share one
//! address space. If they interleaved, a buffer the guest unmaps while a host call it made is
//! still using it could become trapbox memory a moment later (a thread stack, a heap block),
//! and the kernel would read or write it for the guest. So the arena is reserved whole when
//! the process is made, with inaccessible placeholders, and:
//!
//! - every guest mapping is made inside it, over a placeholder (MAP_FIXED), at an address
//!   trapbox chooses ([`crate::mem::AddressSpace::find_free`]);
//! - guest memory that goes away (munmap, shmdt, a mapping moved by mremap, an image replaced
//!   by exec) becomes a placeholder again ([`park`]), never a hole;
//! - trapbox's own mappings are made by the kernel where it chooses, which is never inside a
//!   range that is mapped — and every page of the arena always is.
//!
//! The arena is the low part of the user address space, below where the kernel puts a PIE's
//! image and trapbox's own mappings (top-down from the stack), so reserving it takes nothing
//! trapbox already has; whatever was mapped there anyway is left out of it ([`Arena::held`]).

use super::host;

/// Highest address the arena may end at: the lower half of the 47-bit user address space.
pub const END: u64 = 0x4000_0000_0000;
/// Smallest arena worth having (when an address-space limit refuses the full one).
const MIN_SIZE: u64 = 1 << 32;

/// The reserved range and what inside it was not trapbox's to reserve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arena {
    /// Start (the lowest address the kernel lets a process map).
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
    /// Pieces of `[start, end)` already mapped when the arena was reserved (never guest
    /// memory, never unmapped by trapbox).
    pub held: Vec<(u64, u64)>,
}

/// The lowest address a process may map (`vm.mmap_min_addr`, at least one page).
fn mmap_min_addr() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(65536)
        .max(4096)
        .next_multiple_of(4096)
}

/// What is mapped in trapbox's address space now: (start, end) ranges, sorted.
fn mapped_now() -> Vec<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut out: Vec<(u64, u64)> = maps
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .collect();
    out.sort_unstable();
    out
}

impl Arena {
    /// Reserves the arena: every free part of `[mmap_min_addr, END)` gets a placeholder. An
    /// address-space limit (RLIMIT_AS) may refuse that much; the arena then shrinks from the
    /// top, down to 4 GiB.
    pub fn reserve() -> std::io::Result<Arena> {
        let start = mmap_min_addr();
        let mut end = END;
        loop {
            match Arena::reserve_range(start, end) {
                Ok(a) => return Ok(a),
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && end - start > MIN_SIZE => {
                    end = start + (end - start) / 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn reserve_range(start: u64, end: u64) -> std::io::Result<Arena> {
        let held: Vec<(u64, u64)> = mapped_now()
            .into_iter()
            .filter(|&(s, e)| s < end && e > start)
            .map(|(s, e)| (s.max(start), e.min(end)))
            .collect();
        let mut placed = Vec::new();
        let mut at = start;
        for &(s, e) in held.iter().chain(std::iter::once(&(end, end))) {
            if s > at {
                match host::reserve_exact(at, s - at) {
                    Ok(_) => placed.push((at, s)),
                    Err(err) => {
                        for (ps, pe) in placed {
                            // SAFETY: placeholders made just above, holding nothing.
                            let _ = unsafe { host::munmap(ps, pe - ps) };
                        }
                        return Err(std::io::Error::from_raw_os_error(err));
                    }
                }
            }
            at = at.max(e);
        }
        Ok(Arena { start, end, held })
    }

    /// Whether `[addr, addr+len)` lies inside the arena and outside what it holds for others.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        addr >= self.start && end <= self.end && !self.held.iter().any(|&(s, e)| s < end && e > addr)
    }

    /// Gives the arena back to the host (the sandbox is gone): everything but what it held.
    pub fn release(&self) {
        let mut at = self.start;
        for &(s, e) in self.held.iter().chain(std::iter::once(&(self.end, self.end))) {
            if s > at {
                // SAFETY: the arena's own range: guest memory and placeholders, which nothing
                // uses once the sandbox is gone.
                let _ = unsafe { host::munmap(at, s - at) };
            }
            at = at.max(e);
        }
    }
}

pub use trapbox_host::park;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_is_below_trapbox_and_fully_mapped() {
        let a = Arena::reserve().unwrap();
        // trapbox's own code is outside it.
        let code = arena_is_below_trapbox_and_fully_mapped as *const () as u64;
        assert!(!a.contains(code, 1));
        // Every page of the arena is mapped: the kernel can place nothing of trapbox's there.
        let maps = mapped_now();
        let mut at = a.start;
        for (s, e) in maps.into_iter().filter(|&(s, e)| e > a.start && s < a.end) {
            assert!(s <= at, "a hole at {at:#x}..{s:#x}");
            at = at.max(e);
        }
        assert!(at >= a.end);
        // A fresh mapping of trapbox's lands outside.
        let v = vec![0u8; 1 << 20];
        assert!(!a.contains(v.as_ptr() as u64, 1));
        a.release();
    }
}
