//! XSAVE state components and where the CPU puts them, as CPUID leaf 0xD describes them.
//!
//! Everything trapbox sizes by the extended state — signal frames, AT_MINSIGSTKSZ, the CPUID
//! table it gives KVM, the check that a recording can be replayed here — reads one
//! [`XsaveLayout`], built from the leaf-0xD answers of the CPU view the guest really gets.
//! Layouts are compared component by component, not by feature name: AMD and Intel place the
//! same component at different offsets (Zen 4 puts the opmask state at 832, Intel at 1088).

/// Bit numbers of the XSAVE state components (XCR0 / IA32_XSS bits).
pub mod bit {
    /// x87 FPU state.
    pub const X87: u32 = 0;
    /// SSE state (XMM registers, MXCSR).
    pub const SSE: u32 = 1;
    /// Upper halves of YMM0-15.
    pub const AVX: u32 = 2;
    /// AVX-512 opmask registers k0-k7.
    pub const OPMASK: u32 = 5;
    /// Upper halves of ZMM0-15.
    pub const ZMM_HI256: u32 = 6;
    /// ZMM16-31.
    pub const HI16_ZMM: u32 = 7;
    /// Protection-key rights register.
    pub const PKRU: u32 = 9;
    /// AMX tile configuration.
    pub const XTILECFG: u32 = 17;
    /// AMX tile data (8 KiB; Linux enables it per process through ARCH_REQ_XCOMP_PERM).
    pub const XTILEDATA: u32 = 18;
}

/// The three AVX-512 components: XCR0 must enable all or none of them.
pub const AVX512: u64 = (1 << bit::OPMASK) | (1 << bit::ZMM_HI256) | (1 << bit::HI16_ZMM);
/// The two AMX components.
pub const AMX: u64 = (1 << bit::XTILECFG) | (1 << bit::XTILEDATA);
/// Components a Linux process uses only after asking for them (ARCH_REQ_XCOMP_PERM); a
/// process that did not ask has them in neither its signal frames nor its permitted set.
pub const DYNAMIC: u64 = 1 << bit::XTILEDATA;
/// x87 and SSE: the legacy area every XSAVE image starts with.
pub const LEGACY: u64 = (1 << bit::X87) | (1 << bit::SSE);
/// Size of the legacy area plus the XSAVE header: where the first extended component may start.
pub const HEADER_END: u32 = 576;

/// Names of the state components, by bit, as the SDM and Linux's boot log call them.
const NAMES: [&str; 20] = [
    "x87",
    "SSE",
    "AVX",
    "BNDREGS",
    "BNDCSR",
    "opmask",
    "ZMM_Hi256",
    "Hi16_ZMM",
    "PT",
    "PKRU",
    "PASID",
    "CET_U",
    "CET_S",
    "HDC",
    "UINTR",
    "LBR",
    "HWP",
    "XTILECFG",
    "XTILEDATA",
    "APX",
];

/// `x87|SSE|AVX` for a set of component bits.
pub fn names(mask: u64) -> String {
    let mut out = Vec::new();
    for b in 0..64 {
        if mask & (1 << b) != 0 {
            out.push(NAMES.get(b).map_or_else(|| format!("component {b}"), |n| (*n).to_string()));
        }
    }
    if out.is_empty() {
        return "none".into();
    }
    out.join("|")
}

/// The largest subset of `mask` that XCR0 can hold: x87 always; AVX only with SSE; the three
/// AVX-512 components together and only with AVX; the two AMX components together.
pub fn valid_xcr0(mask: u64) -> u64 {
    let mut m = mask | (1 << bit::X87);
    if m & (1 << bit::SSE) == 0 {
        m &= !(1 << bit::AVX);
    }
    if m & (1 << bit::AVX) == 0 || m & AVX512 != AVX512 {
        m &= !AVX512;
    }
    if m & AMX != AMX {
        m &= !AMX;
    }
    m
}

/// One extended state component (bit 2 and up) as CPUID leaf 0xD sub-leaf `bit` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    /// The XCR0 bit.
    pub bit: u32,
    /// Offset in the standard (non-compacted) form; 0 for a supervisor component.
    pub offset: u32,
    /// Size in bytes; 0 when the CPUID view does not describe the component.
    pub size: u32,
    /// Whether the compacted form aligns it to 64 bytes.
    pub align64: bool,
}

/// The XSAVE layout of a set of enabled components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XsaveLayout {
    xcr0: u64,
    components: Vec<Component>,
}

impl XsaveLayout {
    /// Where component `bit` starts in the standard form, if the layout describes it.
    pub fn offset(&self, bit: u32) -> Option<usize> {
        self.components.iter().find(|c| c.bit == bit && c.size != 0).map(|c| c.offset as usize)
    }

    /// The layout of the components enabled in `xcr0`, each read from `leaf_d(bit)` (CPUID
    /// leaf 0xD, sub-leaf `bit`, as `[eax, ebx, ecx, edx]`).
    pub fn from_leaf_d(xcr0: u64, leaf_d: impl Fn(u32) -> [u32; 4]) -> XsaveLayout {
        let components = (2..64)
            .filter(|b| xcr0 & (1u64 << b) != 0)
            .map(|b| {
                let r = leaf_d(b);
                Component { bit: b, size: r[0], offset: r[1], align64: r[2] & 2 != 0 }
            })
            .collect();
        XsaveLayout { xcr0, components }
    }

    /// The enabled components.
    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    /// The extended components, in bit order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Components enabled but described with no size: the CPU saves them, and a program that
    /// sizes its buffers from CPUID does not know it.
    pub fn undescribed(&self) -> u64 {
        self.components.iter().filter(|c| c.size == 0).fold(0, |m, c| m | (1 << c.bit))
    }

    /// Bytes `XSAVE` (standard form) writes for the components in `features` (a subset of the
    /// enabled ones): the legacy area and header, and up to the end of the last component.
    pub fn standard_size(&self, features: u64) -> u32 {
        self.components
            .iter()
            .filter(|c| features & (1 << c.bit) != 0)
            .map(|c| c.offset.saturating_add(c.size))
            .fold(HEADER_END, u32::max)
    }

    /// Bytes `XSAVEC` writes for the components in `features`: the components packed after
    /// the header in bit order, each aligned to 64 bytes where it asks for that.
    pub fn compacted_size(&self, features: u64) -> u32 {
        let mut end = HEADER_END;
        for c in self.components.iter().filter(|c| features & (1 << c.bit) != 0) {
            if c.align64 {
                end = end.next_multiple_of(64);
            }
            end = end.saturating_add(c.size);
        }
        end
    }

    /// Components placed differently in `other` (same bit, another offset or size), as a mask.
    pub fn moved(&self, other: &XsaveLayout) -> u64 {
        self.components
            .iter()
            .filter(|c| other.components.iter().any(|o| o.bit == c.bit && (o.offset, o.size) != (c.offset, c.size)))
            .fold(0, |m, c| m | (1 << c.bit))
    }
}

/// CPUID leaf 0xD of real CPUs, for tests here and in cpuid.rs.
#[cfg(test)]
pub(crate) mod test_cpus {
    /// Leaf 0xD sub-leaves 2..=18 of an AMD Zen 4 (AVX-512 opmask at 832).
    pub fn zen4(b: u32) -> [u32; 4] {
        match b {
            2 => [256, 576, 0, 0],
            5 => [64, 832, 0, 0],
            6 => [512, 896, 0, 0],
            7 => [1024, 1408, 0, 0],
            9 => [8, 2432, 0, 0],
            _ => [0; 4],
        }
    }

    /// Leaf 0xD sub-leaves of an Intel Sapphire Rapids (opmask at 1088, AMX after PKRU).
    pub fn sapphire_rapids(b: u32) -> [u32; 4] {
        match b {
            2 => [256, 576, 0, 0],
            5 => [64, 1088, 0, 0],
            6 => [512, 1152, 0, 0],
            7 => [1024, 1664, 0, 0],
            9 => [8, 2688, 0, 0],
            17 => [64, 2752, 0, 0],
            18 => [8192, 2816, 6, 0],
            _ => [0; 4],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_cpus::{sapphire_rapids, zen4};
    use super::*;

    #[test]
    fn standard_size_matches_the_cpus() {
        assert_eq!(XsaveLayout::from_leaf_d(0x7, zen4).standard_size(0x7), 832);
        assert_eq!(XsaveLayout::from_leaf_d(0xe7, zen4).standard_size(0xe7), 2432);
        assert_eq!(XsaveLayout::from_leaf_d(0x2e7, zen4).standard_size(0x2e7), 2440);
        let spr = XsaveLayout::from_leaf_d(0x602e7, sapphire_rapids);
        assert_eq!(spr.standard_size(0x602e7), 11008);
        assert_eq!(spr.standard_size(0x602e7 & !DYNAMIC), 2816);
    }

    #[test]
    fn compacted_size_packs_and_aligns() {
        let zen = XsaveLayout::from_leaf_d(0xe7, zen4);
        assert_eq!(zen.compacted_size(0xe7), 576 + 256 + 64 + 512 + 1024);
        // Without AVX the opmask state moves up to the header's end.
        assert_eq!(zen.compacted_size(0xe3), 576 + 64 + 512 + 1024);
        let spr = XsaveLayout::from_leaf_d(0x602e7, sapphire_rapids);
        // Tile data asks for 64-byte alignment: 2440 + 64 = 2504 rounds up to 2560.
        assert_eq!(spr.compacted_size(0x602e7), 2560 + 8192);
    }

    #[test]
    fn undescribed_names_components_without_a_size() {
        let l = XsaveLayout::from_leaf_d(0xe7, |b| if b == 2 { [256, 576, 0, 0] } else { [0; 4] });
        assert_eq!(l.undescribed(), AVX512);
        assert_eq!(XsaveLayout::from_leaf_d(0xe7, zen4).undescribed(), 0);
    }

    #[test]
    fn moved_compares_offsets_not_names() {
        let zen = XsaveLayout::from_leaf_d(0xe7, zen4);
        let spr = XsaveLayout::from_leaf_d(0xe7, sapphire_rapids);
        assert_eq!(zen.moved(&spr), AVX512);
        assert_eq!(zen.moved(&zen.clone()), 0);
        let avx_only = XsaveLayout::from_leaf_d(0x7, zen4);
        assert_eq!(avx_only.moved(&spr), 0);
    }

    #[test]
    fn valid_xcr0_keeps_groups_whole() {
        assert_eq!(valid_xcr0(0xe7), 0xe7);
        assert_eq!(valid_xcr0(0x67), 0x7, "AVX-512 needs all three components");
        assert_eq!(valid_xcr0(0xe3), 0x3, "AVX-512 needs AVX");
        assert_eq!(valid_xcr0(0x5), 0x1, "AVX needs SSE");
        assert_eq!(valid_xcr0(0x202e7 & !(1 << 18)), 0x2e7, "AMX needs both tile components");
        assert_eq!(valid_xcr0(0x602e7), 0x602e7);
    }

    #[test]
    fn names_spell_components() {
        assert_eq!(names(0x7), "x87|SSE|AVX");
        assert_eq!(names(AMX), "XTILECFG|XTILEDATA");
        assert_eq!(names(0xe7), "x87|SSE|AVX|opmask|ZMM_Hi256|Hi16_ZMM");
        assert_eq!(names(1 << 40), "component 40");
        assert_eq!(names(0), "none");
    }
}

/// The bytes of a KVM XSAVE area (standard form).
pub fn xsave_bytes(x: &kvm_bindings::kvm_xsave) -> Vec<u8> {
    x.region.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Fills a KVM XSAVE area from `b` (as many bytes as both hold).
pub fn set_xsave_bytes(x: &mut kvm_bindings::kvm_xsave, b: &[u8]) {
    for (w, c) in x.region.iter_mut().zip(b.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}
