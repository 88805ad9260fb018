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
//! instructions. The path is chosen once at start-up ([`TrapPath::detect`]).

pub mod hw;
pub mod pvm;

use std::path::Path;

/// Port the exception stubs write: `EXCEPTION_PORT_BASE + vector`.
pub const EXCEPTION_PORT_BASE: u16 = 0x80;

/// Which trap path the vCPU uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapPath {
    /// `syscall` switches to CPL0 (VMX/SVM KVM).
    Hardware,
    /// `syscall` does not change privilege (PVM's software hypervisor).
    Pvm,
    /// No VM: the in-process engine's Syscall User Dispatch (`vm::inproc`).
    InProcess,
}

impl TrapPath {
    /// Detects the kind of KVM: PVM announces itself as the `kvm_pvm` module. An explicit
    /// `TRAPBOX_TRAP_PATH=hw|pvm` wins (for tests of the detection's consumers).
    pub fn detect() -> TrapPath {
        match std::env::var("TRAPBOX_TRAP_PATH").as_deref() {
            Ok("hw") => return TrapPath::Hardware,
            Ok("pvm") => return TrapPath::Pvm,
            _ => {}
        }
        if Path::new("/sys/module/kvm_pvm").exists() {
            TrapPath::Pvm
        } else {
            TrapPath::Hardware
        }
    }

    /// Name for logs and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            TrapPath::Hardware => "hardware KVM (syscall → CPL0 stub → out)",
            TrapPath::Pvm => "PVM (syscall → CPL3 trampoline → MMIO doorbell)",
            TrapPath::InProcess => "in-process, no VM (syscall → Syscall User Dispatch → SIGSYS)",
        }
    }
}

/// Offset of the `iretq` in vector 0's stub (`out imm8, al` is two bytes; no error code).
pub const IRETQ_IN_STUB0: u64 = 2;

/// Ring-0 exception stubs, 16 bytes per vector: `out EXCEPTION_PORT_BASE+v, al`, then
/// `add rsp, 8` for vectors that push an error code (so trapbox finds it on the stack during
/// the exit), then `iretq`. trapbox edits the interrupt frame in place to change where the
/// guest resumes.
pub fn exception_stubs() -> [u8; 16 * crate::vm::arch::IDT_ENTRIES] {
    let mut code = [0xcc; 16 * crate::vm::arch::IDT_ENTRIES];
    for v in 0..crate::vm::arch::IDT_ENTRIES {
        let s = &mut code[v * 16..v * 16 + 16];
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            s[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        put(&[0xe6, EXCEPTION_PORT_BASE as u8 + v as u8]); // out imm8, al
        if crate::vm::arch::has_error_code(v as u8) {
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
