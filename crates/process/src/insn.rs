//! Decoding a guest instruction to find the memory it touches, for faults whose address the
//! CPU does not report (KVM fails the run with EFAULT when the host page behind a guest page
//! cannot be provided, e.g. past the end of a mapped file: the guest gets SIGBUS with the
//! address its instruction used, as natively).

use iced_x86::{Decoder, DecoderOptions, OpKind, Register};

use trapbox_trap::Regs;

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

/// What one of the instructions UMIP makes fault at CPL3 (sgdt, sidt, sldt, smsw, str) gives
/// a Linux process: the kernel emulates them with fixed values, so that the addresses of its
/// own tables stay secret. The box does the same — with the CPU's UMIP on, they fault in the
/// guest too, and nothing of trapbox's system region (where its GDT and IDT live) leaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Umip {
    /// The instruction's length.
    pub len: u64,
    /// Bytes to store at a guest address (a memory operand).
    pub store: Option<(u64, Vec<u8>)>,
    /// Or a register to set: (GPR number, value, bytes written: 2, 4 or 8).
    pub reg: Option<(u8, u64, u8)>,
}

/// Linux's values (arch/x86/kernel/umip.c): dummy table bases in the kernel half, a CR0 with
/// PE, MP, ET, NE, WP, AM and PG, no LDT, and its TSS selector.
const DUMMY_GDT_BASE: u64 = 0xffff_ffff_fffe_0000;
const DUMMY_IDT_BASE: u64 = 0xffff_ffff_ffff_0000;
const DUMMY_CR0: u64 = 0x8005_0033;
const DUMMY_TR: u64 = 0x40;

/// The emulation of the UMIP instruction `code` at `rip`, if it is one.
pub fn umip(code: &[u8], rip: u64, r: &Regs, fs_base: u64, gs_base: u64) -> Option<Umip> {
    use iced_x86::Mnemonic;
    let mut d = Decoder::with_ip(64, code, rip, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() {
        return None;
    }
    let value = match insn.mnemonic() {
        Mnemonic::Sgdt | Mnemonic::Sidt => {
            let base = if insn.mnemonic() == Mnemonic::Sgdt { DUMMY_GDT_BASE } else { DUMMY_IDT_BASE };
            let addr = memory_operand_address(code, rip, r, fs_base, gs_base)?;
            let mut b = vec![0u8; 10];
            b[2..].copy_from_slice(&base.to_le_bytes());
            return Some(Umip { len: insn.len() as u64, store: Some((addr, b)), reg: None });
        }
        Mnemonic::Smsw => DUMMY_CR0,
        Mnemonic::Sldt => 0,
        Mnemonic::Str => DUMMY_TR,
        _ => return None,
    };
    let len = insn.len() as u64;
    Some(match insn.op0_kind() {
        OpKind::Memory => {
            let addr = memory_operand_address(code, rip, r, fs_base, gs_base)?;
            Umip { len, store: Some((addr, (value as u16).to_le_bytes().to_vec())), reg: None }
        }
        OpKind::Register => {
            let reg = insn.op0_register();
            let size = reg.size() as u8;
            Umip { len, store: None, reg: Some((reg.full_register().number() as u8, value, size)) }
        }
        _ => return None,
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
    fn umip_instructions_give_linuxs_values() {
        let r = Regs { rdi: 0x1000, ..Regs::default() };
        // sgdt [rdi]
        let u = umip(&[0x0f, 0x01, 0x07], 0x400000, &r, 0, 0).unwrap();
        assert_eq!(u.len, 3);
        let (at, b) = u.store.unwrap();
        assert_eq!(at, 0x1000);
        assert_eq!(b, [0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);
        // smsw eax, str ax, sldt rbx
        assert_eq!(umip(&[0x0f, 0x01, 0xe0], 0, &r, 0, 0).unwrap().reg, Some((0, 0x8005_0033, 4)));
        assert_eq!(umip(&[0x66, 0x0f, 0x00, 0xc8], 0, &r, 0, 0).unwrap().reg, Some((0, 0x40, 2)));
        assert_eq!(umip(&[0x48, 0x0f, 0x00, 0xc3], 0, &r, 0, 0).unwrap().reg, Some((3, 0, 8)));
        // Not a UMIP instruction.
        assert_eq!(umip(&[0x90], 0, &r, 0, 0), None);
    }

    #[test]
    fn canonical_addresses() {
        assert!(is_canonical(0x7fff_ffff_f000) && is_canonical(0xffff_8000_0000_0000) && is_canonical(0));
        assert!(!is_canonical(0x8000_0000_0000) && !is_canonical(0x8000_6643_4c00));
    }
}
