//! Decoding a guest instruction to find the memory it touches, for faults whose address the
//! CPU does not report (KVM fails the run with EFAULT when the host page behind a guest page
//! cannot be provided, e.g. past the end of a mapped file: the guest gets SIGBUS with the
//! address its instruction used, as natively).

use iced_x86::{Decoder, DecoderOptions, OpKind, Register};

use crate::trap::Regs;

/// The first memory operand's address of the instruction `code` at `rip`.
pub fn memory_operand_address(code: &[u8], rip: u64, r: &Regs, fs_base: u64, gs_base: u64) -> Option<u64> {
    let mut d = Decoder::with_ip(64, code, rip, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() {
        return None;
    }
    let op = (0..insn.op_count()).find(|i| insn.op_kind(*i) == OpKind::Memory)?;
    insn.virtual_address(op, 0, |reg, _, _| {
        let full = match reg.full_register() {
            Register::FS => fs_base,
            Register::GS => gs_base,
            Register::ES | Register::CS | Register::SS | Register::DS => 0,
            f if f.is_gpr64() => r.gpr(f.number() as u8),
            _ => return None,
        };
        Some(if reg.size() == 4 { full & 0xffff_ffff } else { full })
    })
}

/// Whether `addr` is canonical for 48-bit virtual addresses (bits 63..47 all equal).
pub fn is_canonical(addr: u64) -> bool {
    ((addr as i64) << 16 >> 16) as u64 == addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_index_displacement_and_fs() {
        let r = Regs { rdi: 0x1000, r12: 0x10, ..Regs::default() };
        // mov eax, [rdi+r12*8+0x20]
        let code = [0x42, 0x8b, 0x44, 0xe7, 0x20];
        assert_eq!(memory_operand_address(&code, 0x400000, &r, 0, 0), Some(0x1000 + 0x80 + 0x20));
        // mov rax, fs:[0x28]
        let code = [0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0];
        assert_eq!(memory_operand_address(&code, 0x400000, &r, 0x7000, 0), Some(0x7028));
        // nop: no memory operand
        assert_eq!(memory_operand_address(&[0x90], 0x400000, &r, 0, 0), None);
        // vmovdqu ymm0, [rdi]
        assert_eq!(memory_operand_address(&[0xc5, 0xfe, 0x6f, 0x07], 0x400000, &r, 0, 0), Some(0x1000));
    }

    #[test]
    fn canonical_addresses() {
        assert!(is_canonical(0x7fff_ffff_f000) && is_canonical(0xffff_8000_0000_0000) && is_canonical(0));
        assert!(!is_canonical(0x8000_0000_0000) && !is_canonical(0x8000_6643_4c00));
    }
}
