//! The start-up probe: what guest user code really gets from `xgetbv` and `cpuid`.
//!
//! Which answers come from the CPUID table trapbox gives KVM and which from the CPU differs
//! by kind of KVM and, on PVM, by leaf; and whether KVM loads the XCR0 trapbox asks for or
//! the CPU keeps the host's is the same kind of question. So trapbox asks the guest's CPU
//! itself: a few instructions at CPL3, before any guest program exists, store the answers in
//! a page mapped user-writable for the probe alone and ring the doorbell (one exit).

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::arch::cpuview::{CpuView, Leaf};
use super::arch::xsave;

/// Bytes per answer in the output page; the first slot holds XCR0.
const SLOT: u32 = 16;

/// The probe's code, to run at `ip`: XCR0 (when `xgetbv` is usable) and each of `leaves`
/// stored to `out`, then a store to `doorbell`.
pub fn code(ip: u64, out: u64, doorbell: u64, leaves: &[(u32, u32)], xgetbv: bool) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    a.mov(rdi, out)?;
    if xgetbv {
        a.xor(ecx, ecx)?;
        a.xgetbv()?;
        a.mov(dword_ptr(rdi), eax)?;
        a.mov(dword_ptr(rdi + 4), edx)?;
    }
    for (i, &(leaf, sub)) in leaves.iter().enumerate() {
        let at = (SLOT as usize * (i + 1)) as i32;
        a.mov(eax, leaf)?;
        a.mov(ecx, sub)?;
        a.cpuid()?;
        a.mov(dword_ptr(rdi + at), eax)?;
        a.mov(dword_ptr(rdi + (at + 4)), ebx)?;
        a.mov(dword_ptr(rdi + (at + 8)), ecx)?;
        a.mov(dword_ptr(rdi + (at + 12)), edx)?;
    }
    a.mov(rsi, doorbell)?;
    a.mov(byte_ptr(rsi), al)?;
    a.assemble(ip)
}

/// Bytes of output the probe of `n` leaves writes.
pub fn out_len(n: usize) -> usize {
    SLOT as usize * (n + 1)
}

/// The view the probe's output `out` describes (`xgetbv`: whether XCR0 was read; without it
/// the CPU saves only the legacy state).
pub fn view(out: &[u8], leaves: &[(u32, u32)], xgetbv: bool) -> CpuView {
    let word = |off: usize| u32::from_le_bytes(out[off..off + 4].try_into().expect("4 bytes"));
    let xcr0 = if xgetbv { u64::from(word(0)) | (u64::from(word(4)) << 32) } else { xsave::LEGACY };
    let found = leaves
        .iter()
        .enumerate()
        .map(|(i, &(leaf, sub))| {
            let at = SLOT as usize * (i + 1);
            Leaf { leaf, sub, regs: [word(at), word(at + 4), word(at + 8), word(at + 12)] }
        })
        .collect();
    CpuView::new(xcr0, found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    #[test]
    fn code_asks_each_leaf_and_rings_once() {
        let leaves = [(1, 0), (0xd, 5)];
        let bytes = code(0x1000, 0x2000, 0x3000, &leaves, true).unwrap();
        let insns: Vec<_> = Decoder::with_ip(64, &bytes, 0x1000, DecoderOptions::NONE).into_iter().collect();
        let count = |m| insns.iter().filter(|i| i.mnemonic() == m).count();
        assert_eq!(count(Mnemonic::Cpuid), 2);
        assert_eq!(count(Mnemonic::Xgetbv), 1);
        let last = insns.last().unwrap();
        assert_eq!(last.mnemonic(), Mnemonic::Mov);
        assert!(insns.iter().all(|i| !i.is_invalid()));
        let without = code(0x1000, 0x2000, 0x3000, &leaves, false).unwrap();
        let n = Decoder::with_ip(64, &without, 0x1000, DecoderOptions::NONE)
            .into_iter()
            .filter(|i| i.mnemonic() == Mnemonic::Xgetbv)
            .count();
        assert_eq!(n, 0);
    }

    #[test]
    fn view_reads_the_slots_back() {
        let leaves = [(0xd, 0), (0xd, 2)];
        let mut out = vec![0u8; out_len(2)];
        out[0..4].copy_from_slice(&7u32.to_le_bytes());
        for (i, regs) in [[7u32, 832, 832, 0], [256, 576, 0, 0]].iter().enumerate() {
            for (j, r) in regs.iter().enumerate() {
                let at = 16 * (i + 1) + 4 * j;
                out[at..at + 4].copy_from_slice(&r.to_le_bytes());
            }
        }
        let v = view(&out, &leaves, true);
        assert_eq!(v.xcr0(), 7);
        assert_eq!(v.cpuid(0xd, 0), Some([7, 832, 832, 0]));
        assert_eq!(v.layout().standard_size(7), 832);
        assert_eq!(view(&out, &leaves, false).xcr0(), xsave::LEGACY);
    }
}
