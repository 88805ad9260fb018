//! How a guest `syscall` and a guest exception reach trapbox: the two trap paths.
//!
//! | | hardware KVM (VMX/SVM) | PVM (`kvm_pvm`) |
//! |---|---|---|
//! | `syscall` at CPL3 | enters CPL0 at LSTAR: [`hw`] stub `out SYSCALL_PORT; sysretq` | stays at CPL3, jumps to LSTAR: [`pvm`] user trampoline stores to the doorbell page (an MMIO exit); trapbox sets RIP/RFLAGS from RCX/R11 itself |
//! | exception at CPL3 | IDT gate → CPL0 stub `out 0x80+vector; [add rsp,8]; iretq` | the same |
//! | return to CPL3 | `sysretq` / `iretq` in the stubs | trapbox writes RIP/RFLAGS (syscall), `iretq` (exceptions) |
//!
//! Both paths cost one exit per syscall. On PVM ring-0 code is emulated (~700 ns an
//! instruction), so the syscall path avoids CPL0 entirely and the exception stubs are three
//! instructions. The path is chosen once at start-up (`TrapPath::detect`).

pub mod hw;
pub mod pvm;

/// Port the exception stubs write: `EXCEPTION_PORT_BASE + vector`.
pub const EXCEPTION_PORT_BASE: u16 = 0x80;

/// Offset of the `iretq` in vector 0's stub (`out imm8, al` is two bytes; no error code).
pub const IRETQ_IN_STUB0: u64 = 2;

/// Ring-0 exception stubs, 16 bytes per vector: `out EXCEPTION_PORT_BASE+v, al`, then
/// `add rsp, 8` for vectors that push an error code (so trapbox finds it on the stack during
/// the exit), then `iretq`. trapbox edits the interrupt frame in place to change where the
/// guest resumes.
pub fn exception_stubs() -> [u8; 16 * crate::arch::IDT_ENTRIES] {
    let mut code = [0xcc; 16 * crate::arch::IDT_ENTRIES];
    for v in 0..crate::arch::IDT_ENTRIES {
        let s = &mut code[v * 16..v * 16 + 16];
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            s[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        put(&[0xe6, EXCEPTION_PORT_BASE as u8 + v as u8]); // out imm8, al
        if crate::arch::has_error_code(v as u8) {
            put(&[0x48, 0x83, 0xc4, 0x08]); // add rsp, 8
        }
        put(&[0x48, 0xcf]); // iretq
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_stubs_out_then_iret() {
        let c = exception_stubs();
        assert_eq!(&c[0..4], &[0xe6, 0x80, 0x48, 0xcf]);
        let pf = &c[14 * 16..15 * 16];
        assert_eq!(&pf[0..8], &[0xe6, 0x8e, 0x48, 0x83, 0xc4, 0x08, 0x48, 0xcf]);
    }
}
