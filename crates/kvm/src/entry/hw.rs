//! The hardware-KVM syscall path: `syscall` enters CPL0 at LSTAR, where a two-instruction
//! stub exits with `out` and returns with `sysretq` once trapbox has written RAX (and RCX/R11
//! when a handler moved the return point).
//!
//! The stub runs on the user's stack pointer (syscall does not switch stacks) and touches no
//! memory. Verified on hardware-style KVM only through the hardware-KVM test tier.

/// Port the syscall stub writes.
pub const SYSCALL_PORT: u16 = 0x7f;

/// Length of the stub's `out imm8, al` (where `sysretq` starts).
pub const OUT_LEN: u64 = 2;

/// The LSTAR stub: `out SYSCALL_PORT, al; sysretq`.
pub fn syscall_stub() -> [u8; 5] {
    [0xe6, SYSCALL_PORT as u8, 0x48, 0x0f, 0x07]
}

#[cfg(test)]
mod tests {
    #[test]
    fn syscall_stub_is_out_sysretq() {
        assert_eq!(super::syscall_stub(), [0xe6, 0x7f, 0x48, 0x0f, 0x07]);
    }
}
