//! Little-endian integers at byte offsets of untrusted buffers: `None` past the end, never a
//! panic. Shared by the ELF, bzImage and trace decoders.

/// The u16 at `o`.
pub fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o.checked_add(2)?)?.try_into().ok()?))
}

/// The u32 at `o`.
pub fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o.checked_add(4)?)?.try_into().ok()?))
}

/// The u64 at `o`.
pub fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o.checked_add(8)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds_and_refuses_past_the_end() {
        let b = [1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(u16_at(&b, 0), Some(1));
        assert_eq!(u32_at(&b, 2), Some(2));
        assert_eq!(u64_at(&b, 6), Some(3));
        assert_eq!(u64_at(&b, 7), None);
        assert_eq!(u16_at(&b, usize::MAX), None);
    }
}
