//! The PVM syscall path. Under PVM a `syscall` at CPL3 does not change privilege: RIP becomes
//! LSTAR, RCX/R11 get the return address and flags, CS stays the user's. So LSTAR points at a
//! *user* page holding one store to the doorbell page, whose guest-physical address has no
//! memory slot: KVM exits with KVM_EXIT_MMIO, the cheapest exit from CPL3 measured here.
//! trapbox then sets RAX, and RIP/RFLAGS from RCX/R11 (what `sysret` would have done), through
//! `kvm_run` sync regs, so no ring-0 instruction runs at all.
//!
//! The trampoline page is read-only and executable for the guest; jumping to it without a
//! `syscall` only fakes a syscall, which the guest could make anyway.

/// The LSTAR trampoline: `mov [doorbell], al` (moffs64 form) then `ud2` as a guard that is
/// never reached because trapbox resumes the guest at RCX.
pub fn trampoline(doorbell: u64) -> [u8; 11] {
    let mut t = [0u8; 11];
    t[0] = 0xa2;
    t[1..9].copy_from_slice(&doorbell.to_le_bytes());
    t[9..11].copy_from_slice(&[0x0f, 0x0b]);
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn trampoline_encodes_doorbell() {
        let t = super::trampoline(0x1122_3344_5566_7788);
        assert_eq!(t[0], 0xa2);
        assert_eq!(u64::from_le_bytes(t[1..9].try_into().unwrap()), 0x1122_3344_5566_7788);
        assert_eq!(&t[9..], &[0x0f, 0x0b]);
    }
}
