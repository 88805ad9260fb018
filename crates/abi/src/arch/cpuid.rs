//! The CPUID table trapbox gives KVM, and the XCR0 it asks for.
//!
//! Guest user code runs natively on the host CPU on both kinds of KVM, so what the host CPU
//! executes is what the guest can use. KVM's supported list is the base; the user-level
//! features the host really has are added back (PVM's list under-reports XSAVE, AVX and AVX2).
//! The state components are the host's (so a recording's XSAVE layout is the same whichever
//! backend of one host made it), less AMX and PKRU where trapbox can choose XCR0: AMX's tile
//! data needs Linux's per-process permission protocol, which trapbox refuses, and protection
//! keys are not offered. Features are advertised
//! only with the components they need, and leaf 0xD describes exactly the enabled
//! components with the host's offsets. Protection keys and 5-level paging stay hidden.
//!
//! On PVM this table is only part of what the guest sees: `cpuid` at CPL3 is answered leaf by
//! leaf from the table or from the CPU, and the CPU runs guest user code with the host's XCR0
//! whatever KVM was told (measured; docs/ARCHITECTURE.md). What the guest really sees is the
//! [`super::cpuview::CpuView`] measured at start-up.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
use thiserror::Error;

use super::cpuview::host_cpuid;
use super::xsave::{self, XsaveLayout};

/// Bytes of `struct kvm_xsave`: state KVM_GET_XSAVE cannot carry is never offered.
const KVM_XSAVE_BYTES: u32 = 4096;

/// Why no XCR0 can be given to the guest.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum XcrError {
    /// The CPU runs guest user code with the host's XCR0, which holds state KVM cannot keep.
    #[error(
        "this kind of KVM runs guest code with the host's XSAVE state {}, and KVM cannot save {}",
        xsave::names(*.host),
        xsave::names(*.host & !*.kvm)
    )]
    HostStateUnsupported {
        /// The host's XCR0.
        host: u64,
        /// What KVM supports.
        kvm: u64,
    },
}

/// The XCR0 trapbox gives the guest. Where guest user code runs with the host's XCR0 whatever
/// KVM is told (`follows_host`: PVM), it is the host's, and KVM must support all of it. Where
/// KVM loads the guest's XCR0 (hardware KVM), it is the host's less what KVM cannot save, less
/// AMX, less PKRU (protection keys are hidden and CR4.PKE is off, as in a kernel booted with
/// `nopku`; a PKRU component the guest cannot use froze the nested tier's whole VM in every
/// run, docs/ARCHITECTURE.md), less what does not fit in `kvm_xsave`.
pub fn guest_xcr0(host: &XsaveLayout, kvm: u64, follows_host: bool) -> Result<u64, XcrError> {
    let host_xcr0 = host.xcr0();
    if follows_host {
        if host_xcr0 & !kvm != 0 {
            return Err(XcrError::HostStateUnsupported { host: host_xcr0, kvm });
        }
        return Ok(host_xcr0);
    }
    let mut x = xsave::valid_xcr0(host_xcr0 & kvm & !xsave::AMX & !(1 << xsave::bit::PKRU));
    while host.standard_size(x) > KVM_XSAVE_BYTES {
        let top = 63 - x.leading_zeros();
        x = xsave::valid_xcr0(x & !(1 << top));
    }
    Ok(x)
}

fn bits(list: &[u32]) -> u32 {
    list.iter().fold(0, |m, b| m | (1 << b))
}

/// Leaf 1 ECX features added from the host: SSE3, PCLMULQDQ, SSSE3, FMA, CX16, SSE4.1, SSE4.2,
/// MOVBE, POPCNT, AES, XSAVE, AVX, F16C, RDRAND.
const L1_ECX_ADD: &[u32] = &[0, 1, 9, 12, 13, 19, 20, 22, 23, 25, 26, 28, 29, 30];
/// Leaf 1 ECX features that need AVX state: FMA, AVX, F16C.
const L1_ECX_AVX: &[u32] = &[12, 28, 29];
/// Leaf 7 EBX added: BMI1, AVX2, BMI2, ERMS, RDSEED, ADX, CLFLUSHOPT, CLWB, SHA, and the
/// AVX-512 F/DQ/IFMA/CD/BW/VL.
const L7_EBX_ADD: &[u32] = &[3, 5, 8, 9, 16, 17, 18, 19, 21, 23, 24, 28, 29, 30, 31];
/// Leaf 7 EBX AVX-512 bits: F, DQ, IFMA, PF, ER, CD, BW, VL.
const L7_EBX_AVX512: &[u32] = &[16, 17, 21, 26, 27, 28, 30, 31];
/// Leaf 7 EBX AVX-state bits: AVX2.
const L7_EBX_AVX: &[u32] = &[5];
/// Leaf 7 ECX added: AVX-512 VBMI, VBMI2, GFNI, VAES, VPCLMULQDQ, AVX-512 VNNI, BITALG,
/// VPOPCNTDQ, RDPID.
const L7_ECX_ADD: &[u32] = &[1, 6, 8, 9, 10, 11, 12, 14, 22];
/// Leaf 7 ECX AVX-512 bits.
const L7_ECX_AVX512: &[u32] = &[1, 6, 11, 12, 14];
/// Leaf 7 ECX removed always: PKU, OSPKE (no protection keys in the box), CET shadow stacks,
/// LA57.
const L7_ECX_DEL: &[u32] = &[3, 4, 7, 16];
/// Leaf 7 EDX added: FSRM, AVX-512 VP2INTERSECT, AVX-512 FP16.
const L7_EDX_ADD: &[u32] = &[4, 8, 23];
/// Leaf 7 EDX AVX-512 bits: 4VNNIW, 4FMAPS, VP2INTERSECT, FP16.
const L7_EDX_AVX512: &[u32] = &[2, 3, 8, 23];
/// Leaf 7 EDX AMX bits: BF16, TILE, INT8.
const L7_EDX_AMX: &[u32] = &[22, 24, 25];
/// Leaf 7 EDX removed always: CET indirect-branch tracking.
const L7_EDX_DEL: &[u32] = &[20];
/// Leaf 7.1 EAX added: AVX-VNNI, AVX-512 BF16.
const L71_EAX_ADD: &[u32] = &[4, 5];
/// Leaf 7.1 EAX AVX-512 bits: BF16.
const L71_EAX_AVX512: &[u32] = &[5];
/// Leaf 7.1 EAX AVX bits: AVX-VNNI, AVX-IFMA.
const L71_EAX_AVX: &[u32] = &[4, 23];
/// Leaf 7.1 EAX AMX bits: AMX-FP16.
const L71_EAX_AMX: &[u32] = &[21];
/// Leaf 0x80000001 ECX added: LAHF, ABM, SSE4A, MISALIGNSSE, PREFETCHW.
const LX1_ECX_ADD: &[u32] = &[0, 5, 6, 7, 8];
/// Leaf 0xD.1 EAX kept from the host: XSAVEOPT, XSAVEC, XGETBV1 (XSAVES is for ring 0).
const LD1_EAX_KEEP: &[u32] = &[0, 1, 2];

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

/// The bits of `group` that state `needs` allows: all of them if `xcr0` has it, none if not.
fn unless(xcr0: u64, needs: u64, group: &[u32]) -> u32 {
    if xcr0 & needs == needs {
        0
    } else {
        bits(group)
    }
}

/// KVM's supported XCR0 (leaf 0xD.0 EDX:EAX of its supported list).
pub fn kvm_xcr0(supported: &CpuId) -> u64 {
    supported
        .as_slice()
        .iter()
        .find(|e| e.function == 0xd && e.index == 0)
        .map_or(xsave::LEGACY, |e| u64::from(e.eax) | (u64::from(e.edx) << 32))
}

/// KVM's supported CPUID list adjusted into the table for a guest running with `xcr0`, whose
/// components `host` lays out (see the module comment).
pub fn guest_cpuid(supported: &CpuId, host: &XsaveLayout, xcr0: u64) -> CpuId {
    let avx = 1 << xsave::bit::AVX;
    let mut out: Vec<kvm_cpuid_entry2> = Vec::new();
    for e in supported.as_slice() {
        let mut e = *e;
        match (e.function, e.index) {
            (1, _) => {
                let h = host_cpuid(1, 0);
                e.ecx = (e.ecx | (h[2] & bits(L1_ECX_ADD))) & !unless(xcr0, avx, L1_ECX_AVX);
            }
            (7, 0) => {
                let h = host_cpuid(7, 0);
                let ebx_del = unless(xcr0, xsave::AVX512, L7_EBX_AVX512) | unless(xcr0, avx, L7_EBX_AVX);
                let ecx_del = unless(xcr0, xsave::AVX512, L7_ECX_AVX512) | bits(L7_ECX_DEL);
                let edx_del = unless(xcr0, xsave::AVX512, L7_EDX_AVX512)
                    | unless(xcr0, xsave::AMX, L7_EDX_AMX)
                    | bits(L7_EDX_DEL);
                e.ebx = (e.ebx | (h[1] & bits(L7_EBX_ADD))) & !ebx_del;
                e.ecx = (e.ecx | (h[2] & bits(L7_ECX_ADD))) & !ecx_del;
                e.edx = (e.edx | (h[3] & bits(L7_EDX_ADD))) & !edx_del;
            }
            (7, 1) => {
                let h = host_cpuid(7, 1);
                let del = unless(xcr0, xsave::AVX512, L71_EAX_AVX512)
                    | unless(xcr0, avx, L71_EAX_AVX)
                    | unless(xcr0, xsave::AMX, L71_EAX_AMX);
                e.eax = (e.eax | (h[0] & bits(L71_EAX_ADD))) & !del;
            }
            // AMX's own leaves go with its state.
            (0x1d | 0x1e, _) if xcr0 & xsave::AMX == 0 => continue,
            (0xd, _) => continue, // rebuilt below
            (0x8000_0001, _) => {
                let h = host_cpuid(0x8000_0001, 0);
                e.ecx |= h[2] & bits(LX1_ECX_ADD);
            }
            _ => {}
        }
        out.push(e);
    }
    let size = host.standard_size(xcr0);
    let (lo, hi) = (xcr0 as u32, (xcr0 >> 32) as u32);
    let d1 = host_cpuid(0xd, 1)[0] & bits(LD1_EAX_KEEP);
    out.push(entry(0xd, 0, [lo, size, size, hi], true));
    out.push(entry(0xd, 1, [d1, host.compacted_size(xcr0), 0, 0], true));
    for c in host.components().iter().filter(|c| xcr0 & (1 << c.bit) != 0) {
        let align = if c.align64 { 2 } else { 0 };
        out.push(entry(0xd, c.bit, [c.size, c.offset, align, 0], true));
    }
    CpuId::from_entries(&out).expect("CPUID list shorter than KVM's own maximum")
}

/// Guest-physical address width from a CPUID list (leaf 0x80000008), 36 if absent.
pub fn phys_bits(cpuid: &CpuId) -> u32 {
    cpuid.as_slice().iter().find(|e| e.function == 0x8000_0008).map(|e| e.eax & 0xff).filter(|b| *b >= 32).unwrap_or(36)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zen4(xcr0: u64) -> XsaveLayout {
        XsaveLayout::from_leaf_d(xcr0, xsave::test_cpus::zen4)
    }

    fn sapphire_rapids(xcr0: u64) -> XsaveLayout {
        XsaveLayout::from_leaf_d(xcr0, xsave::test_cpus::sapphire_rapids)
    }

    fn find(c: &CpuId, f: u32, i: u32) -> kvm_cpuid_entry2 {
        *c.as_slice().iter().find(|e| e.function == f && e.index == i).unwrap()
    }

    #[test]
    fn guest_xcr0_follows_the_host_where_kvm_cannot_set_it() {
        // PVM: the CPU runs guest user code with the host's XCR0, AMX included.
        assert_eq!(guest_xcr0(&sapphire_rapids(0x602e7), 0x602e7, true), Ok(0x602e7));
        assert_eq!(guest_xcr0(&zen4(0xe7), 0x7, true), Err(XcrError::HostStateUnsupported { host: 0xe7, kvm: 0x7 }));
    }

    #[test]
    fn guest_xcr0_hides_amx_and_pkru_where_kvm_sets_it() {
        // Hardware KVM: AMX goes (permission protocol refused; 8 KiB beyond kvm_xsave), and
        // PKRU with the protection keys it belongs to.
        assert_eq!(guest_xcr0(&sapphire_rapids(0x602e7), 0x602e7, false), Ok(0xe7));
        assert_eq!(guest_xcr0(&zen4(0xe7), 0xe7, false), Ok(0xe7));
        // What KVM cannot save is not offered, and groups stay whole.
        assert_eq!(guest_xcr0(&zen4(0xe7), 0x67, false), Ok(0x7));
    }

    #[test]
    fn guest_cpuid_describes_exactly_the_enabled_state() {
        let base = CpuId::from_entries(&[
            entry(1, 0, [0, 0, 0, 0], false),
            entry(7, 0, [0, u32::MAX, u32::MAX, u32::MAX], true),
            entry(7, 1, [u32::MAX, 0, 0, 0], true),
            entry(0xd, 0, [0xe7, 2432, 2432, 0], true),
            entry(0x1d, 0, [1, 0, 0, 0], true),
        ])
        .unwrap();
        let g = guest_cpuid(&base, &zen4(0xe7), 0xe7);
        let l7 = find(&g, 7, 0);
        assert_eq!(l7.ebx & (1 << 16), 1 << 16, "AVX-512F goes with its state");
        assert_eq!(l7.ecx & (1 << 3), 0, "PKU stays hidden");
        assert_eq!(l7.edx & (1 << 24), 0, "AMX stays hidden without its state");
        assert!(g.as_slice().iter().all(|e| e.function != 0x1d), "AMX's leaf goes too");
        let d0 = find(&g, 0xd, 0);
        assert_eq!((d0.eax, d0.ebx, d0.edx), (0xe7, 2432, 0));
        assert_eq!(find(&g, 0xd, 5).ebx, 832);
        assert_eq!(find(&g, 0xd, 7).eax, 1024);
        assert_eq!(g.as_slice().iter().filter(|e| e.function == 0xd && e.index == 0).count(), 1);

        let g = guest_cpuid(&base, &zen4(0x7), 0x7);
        assert_eq!(find(&g, 7, 0).ebx & (1 << 16), 0, "AVX-512F hidden without its state");
        assert_eq!(find(&g, 7, 1).eax & (1 << 5), 0, "AVX-512 BF16 too");
        assert_eq!(find(&g, 0xd, 0).ebx, 832);
        assert!(g.as_slice().iter().all(|e| !(e.function == 0xd && e.index == 5)));
    }

    #[test]
    fn phys_bits_defaults_when_missing() {
        let c = CpuId::from_entries(&[entry(0x8000_0008, 0, [0x3030, 0, 0, 0], false)]).unwrap();
        assert_eq!(phys_bits(&c), 48);
        let none = CpuId::from_entries(&[]).unwrap();
        assert_eq!(phys_bits(&none), 36);
    }
}
