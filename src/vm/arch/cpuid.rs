//! The CPUID view the guest gets.
//!
//! Guest user code runs natively on the host CPU on both kinds of KVM, so what the host CPU
//! executes is what the guest can use. KVM's supported list is the base; the user-level
//! features the host really has are added back (PVM's list under-reports XSAVE, AVX and AVX2),
//! and features whose state trapbox does not enable are removed: AVX-512 and AMX (XCR0 is
//! x87|SSE|AVX), protection keys, 5-level paging. Leaf 0xD is rewritten for XCR0 = 0x7 so
//! glibc sizes its XSAVE buffers for exactly the state that exists.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// XCR0 the guest runs with: x87, SSE, AVX.
pub const GUEST_XCR0: u64 = 0x7;
/// XSAVE area size for GUEST_XCR0: 512 legacy + 64 header + 256 AVX.
const XSAVE_SIZE: u32 = 832;

fn host_cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    // `cpuid` is available on every x86-64 CPU and has no side effects.
    let r = std::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn bits(list: &[u32]) -> u32 {
    list.iter().fold(0, |m, b| m | (1 << b))
}

/// Leaf 1 ECX features added from the host: SSE3, PCLMULQDQ, SSSE3, FMA, CX16, SSE4.1, SSE4.2,
/// MOVBE, POPCNT, AES, XSAVE, AVX, F16C, RDRAND.
const L1_ECX_ADD: &[u32] = &[0, 1, 9, 12, 13, 19, 20, 22, 23, 25, 26, 28, 29, 30];
/// Leaf 7 EBX added: BMI1, AVX2, BMI2, ERMS, RDSEED, ADX, CLFLUSHOPT, CLWB, SHA.
const L7_EBX_ADD: &[u32] = &[3, 5, 8, 9, 18, 19, 23, 24, 29];
/// Leaf 7 EBX removed: AVX-512 F/DQ/IFMA/PF/ER/CD/BW/VL.
const L7_EBX_DEL: &[u32] = &[16, 17, 21, 26, 27, 28, 30, 31];
/// Leaf 7 ECX added: GFNI, VAES, VPCLMULQDQ, RDPID.
const L7_ECX_ADD: &[u32] = &[8, 9, 10, 22];
/// Leaf 7 ECX removed: AVX-512 VBMI, PKU, OSPKE, VBMI2, VNNI, BITALG, VPOPCNTDQ, LA57.
const L7_ECX_DEL: &[u32] = &[1, 3, 4, 6, 11, 12, 14, 16];
/// Leaf 7 EDX added: FSRM.
const L7_EDX_ADD: &[u32] = &[4];
/// Leaf 7 EDX removed: AVX-512 4VNNIW/4FMAPS/VP2INTERSECT/FP16, AMX.
const L7_EDX_DEL: &[u32] = &[2, 3, 8, 22, 23, 24, 25];
/// Leaf 7.1 EAX removed: AVX-512 BF16.
const L71_EAX_DEL: &[u32] = &[5];
/// Leaf 0x80000001 ECX added: LAHF, ABM, SSE4A, MISALIGNSSE, PREFETCHW.
const LX1_ECX_ADD: &[u32] = &[0, 5, 6, 7, 8];

fn entry(function: u32, index: u32, regs: [u32; 4], indexed: bool) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        index,
        flags: if indexed { KVM_CPUID_FLAG_SIGNIFCANT_INDEX } else { 0 },
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    }
}

/// Adjusts KVM's supported CPUID list into the guest's view.
pub fn guest_cpuid(supported: &CpuId) -> CpuId {
    let mut out: Vec<kvm_cpuid_entry2> = Vec::new();
    for e in supported.as_slice() {
        let mut e = *e;
        match (e.function, e.index) {
            (1, _) => {
                let h = host_cpuid(1, 0);
                e.ecx |= h[2] & bits(L1_ECX_ADD);
            }
            (7, 0) => {
                let h = host_cpuid(7, 0);
                e.ebx = (e.ebx | (h[1] & bits(L7_EBX_ADD))) & !bits(L7_EBX_DEL);
                e.ecx = (e.ecx | (h[2] & bits(L7_ECX_ADD))) & !bits(L7_ECX_DEL);
                e.edx = (e.edx | (h[3] & bits(L7_EDX_ADD))) & !bits(L7_EDX_DEL);
            }
            (7, 1) => e.eax &= !bits(L71_EAX_DEL),
            (0xd, _) => continue, // rebuilt below
            (0x8000_0001, _) => {
                let h = host_cpuid(0x8000_0001, 0);
                e.ecx |= h[2] & bits(LX1_ECX_ADD);
            }
            _ => {}
        }
        out.push(e);
    }
    let avx = host_cpuid(0xd, 2);
    let xsave_features = host_cpuid(0xd, 1)[0] & bits(&[0, 1, 2]); // XSAVEOPT, XSAVEC, XGETBV1
    out.push(entry(0xd, 0, [GUEST_XCR0 as u32, XSAVE_SIZE, XSAVE_SIZE, 0], true));
    out.push(entry(0xd, 1, [xsave_features, XSAVE_SIZE, 0, 0], true));
    out.push(entry(0xd, 2, [avx[0], avx[1], 0, 0], true));
    CpuId::from_entries(&out).expect("CPUID list shorter than KVM's own maximum")
}

/// Whether the host CPU can run the guest's AVX state (XSAVE and AVX present).
pub fn host_has_avx() -> bool {
    let c = host_cpuid(1, 0)[2];
    c & (1 << 26) != 0 && c & (1 << 28) != 0
}

/// Guest-physical address width from a CPUID list (leaf 0x80000008), 36 if absent.
pub fn phys_bits(cpuid: &CpuId) -> u32 {
    cpuid.as_slice().iter().find(|e| e.function == 0x8000_0008).map(|e| e.eax & 0xff).filter(|b| *b >= 32).unwrap_or(36)
}

/// AT_HWCAP as Linux reports it on x86: CPUID leaf 1 EDX — of the CPUID view the guest gets
/// (on hardware KVM, KVM answers the guest's `cpuid` from this list, which can differ from
/// the host's).
pub fn hwcap(cpuid: &CpuId) -> u64 {
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == 1)
        .map(|e| e.edx as u64)
        .unwrap_or_else(|| host_cpuid(1, 0)[3] as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_cpuid_masks_avx512_and_sets_xsave_leaf() {
        let base = CpuId::from_entries(&[
            entry(1, 0, [0, 0, 0, 0], false),
            entry(7, 0, [0, u32::MAX, u32::MAX, u32::MAX], true),
            entry(0xd, 0, [0xe7, 2696, 2696, 0], true),
        ])
        .unwrap();
        let g = guest_cpuid(&base);
        let l7 = g.as_slice().iter().find(|e| e.function == 7).unwrap();
        assert_eq!(l7.ebx & (1 << 16), 0, "AVX-512F must be hidden");
        assert_eq!(l7.ecx & (1 << 3), 0, "PKU must be hidden");
        let d0 = g.as_slice().iter().find(|e| e.function == 0xd && e.index == 0).unwrap();
        assert_eq!(d0.eax, 7);
        assert_eq!(d0.ebx, 832);
        assert_eq!(g.as_slice().iter().filter(|e| e.function == 0xd && e.index == 0).count(), 1);
    }

    #[test]
    fn phys_bits_defaults_when_missing() {
        let c = CpuId::from_entries(&[entry(0x8000_0008, 0, [0x3030, 0, 0, 0], false)]).unwrap();
        assert_eq!(phys_bits(&c), 48);
        let none = CpuId::from_entries(&[]).unwrap();
        assert_eq!(phys_bits(&none), 36);
    }
}
