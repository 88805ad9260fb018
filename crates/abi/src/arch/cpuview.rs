//! The CPU as guest user code really sees it: the XCR0 it runs with, the CPUID leaves that
//! matter to programs, and the XSAVE layout those leaves describe.
//!
//! A view is measured, not assumed: [`crate::vm::Machine`] runs `xgetbv` and `cpuid` at CPL3 in
//! the guest at start-up, because who answers differs by kind of KVM and by leaf (see
//! docs/ARCHITECTURE.md, "The guest's CPU view"), and trapbox's own process measures the
//! host's view the same way ([`CpuView::host`]). A view must be consistent — every state
//! component the CPU saves is described with its size, and no feature is advertised without
//! the state it needs — or programs that size XSAVE buffers from CPUID write past them.
//! Recordings carry the view they were made with, and a replay compares it with its own.

use thiserror::Error;

use super::xsave::{self, XsaveLayout};

/// One CPUID answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// EAX on input.
    pub leaf: u32,
    /// ECX on input.
    pub sub: u32,
    /// EAX, EBX, ECX, EDX on output.
    pub regs: [u32; 4],
}

/// A CPU view: XCR0, the leaves that were measured, and their XSAVE layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuView {
    xcr0: u64,
    leaves: Vec<Leaf>,
    layout: XsaveLayout,
}

/// Leaf 1 ECX: XSAVE enabled by the OS.
const OSXSAVE: u32 = 1 << 27;

/// The leaves a view measures for a CPU whose XCR0 may hold `components`: the feature
/// leaves, leaf 0xD's two summary sub-leaves and one sub-leaf per component.
pub fn probe_list(components: u64) -> Vec<(u32, u32)> {
    let mut v = vec![(1, 0), (7, 0), (7, 1), (0xd, 0), (0xd, 1), (0x8000_0001, 0)];
    v.extend((2..64).filter(|b| components & (1u64 << b) != 0).map(|b| (0xd, b)));
    v
}

/// The host CPU's answer to `cpuid(leaf, sub)` in trapbox's own process.
pub fn host_cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    // `cpuid` is available on every x86-64 CPU and has no side effects.
    let r = std::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// XCR0 of trapbox's own process (the state the host OS enables for user code); x87|SSE when
/// the OS has not enabled XSAVE.
pub fn host_xcr0() -> u64 {
    if host_cpuid(1, 0)[2] & OSXSAVE == 0 {
        return xsave::LEGACY;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: xgetbv reads XCR0 into EDX:EAX and touches nothing else; it does not fault
    // because CPUID says the OS enabled XSAVE (checked above).
    unsafe { std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

impl CpuView {
    /// A view from an XCR0 value and measured leaves.
    pub fn new(xcr0: u64, mut leaves: Vec<Leaf>) -> CpuView {
        leaves.sort_by_key(|l| (l.leaf, l.sub));
        leaves.dedup_by_key(|l| (l.leaf, l.sub));
        let find = |leaf: u32, sub: u32| leaves.iter().find(|l| l.leaf == leaf && l.sub == sub).map(|l| l.regs);
        let layout = XsaveLayout::from_leaf_d(xcr0, |b| find(0xd, b).unwrap_or([0; 4]));
        CpuView { xcr0, leaves, layout }
    }

    /// The host's own view, measured in trapbox's process.
    pub fn host() -> CpuView {
        let xcr0 = host_xcr0();
        let leaves =
            probe_list(xcr0).into_iter().map(|(leaf, sub)| Leaf { leaf, sub, regs: host_cpuid(leaf, sub) }).collect();
        CpuView::new(xcr0, leaves)
    }

    /// The state components the CPU saves for guest user code.
    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    /// Where XSAVE puts each component.
    pub fn layout(&self) -> &XsaveLayout {
        &self.layout
    }

    /// The measured leaves, sorted.
    pub fn leaves(&self) -> &[Leaf] {
        &self.leaves
    }

    /// The measured answer for `(leaf, sub)`, if that leaf was measured.
    pub fn cpuid(&self, leaf: u32, sub: u32) -> Option<[u32; 4]> {
        self.leaves.iter().find(|l| l.leaf == leaf && l.sub == sub).map(|l| l.regs)
    }

    /// Whether the OS side of XSAVE is on (CPUID.1:ECX.OSXSAVE).
    pub fn osxsave(&self) -> bool {
        self.cpuid(1, 0).is_some_and(|r| r[2] & OSXSAVE != 0)
    }

    /// The components a process may use without asking, and the only ones trapbox offers:
    /// AMX stays hidden (trapbox refuses ARCH_REQ_XCOMP_PERM) even where the CPU saves it.
    pub fn user_features(&self) -> u64 {
        self.xcr0 & !xsave::AMX
    }

    /// The components a signal frame holds: those of a process that never asked for dynamic
    /// ones, as Linux builds frames for it.
    pub fn frame_features(&self) -> u64 {
        self.xcr0 & !xsave::DYNAMIC
    }

    /// Bytes of a signal frame's XSAVE image (without the trailing magic word).
    pub fn frame_xsave_size(&self) -> u32 {
        self.layout.standard_size(self.frame_features())
    }

    /// What is inconsistent in this view; empty when a program can trust it.
    pub fn inconsistencies(&self) -> Vec<Inconsistency> {
        let mut out = Vec::new();
        if self.xcr0 & !xsave::LEGACY != 0 && !self.osxsave() {
            out.push(Inconsistency::NoOsxsave { xcr0: self.xcr0 });
        }
        let undescribed = self.layout.undescribed();
        if undescribed != 0 {
            out.push(Inconsistency::Undescribed { components: undescribed });
        }
        let d0 = self.cpuid(0xd, 0).unwrap_or([0; 4]);
        let supported = u64::from(d0[0]) | (u64::from(d0[3]) << 32);
        if self.xcr0 & !supported != 0 {
            out.push(Inconsistency::NotSupported { components: self.xcr0 & !supported });
        }
        let needed = self.layout.standard_size(self.xcr0);
        if self.osxsave() && d0[1] < needed {
            out.push(Inconsistency::AreaTooSmall { advertised: d0[1], needed });
        }
        let d1 = self.cpuid(0xd, 1).unwrap_or([0; 4]);
        let compacted = self.layout.compacted_size(self.xcr0);
        if d1[0] & 2 != 0 && d1[1] < compacted {
            out.push(Inconsistency::CompactedTooSmall { advertised: d1[1], needed: compacted });
        }
        for f in FEATURES.iter().filter(|f| f.needs != 0 && self.has(f)) {
            if self.xcr0 & f.needs != f.needs {
                out.push(Inconsistency::FeatureWithoutState { feature: f.name, components: f.needs & !self.xcr0 });
            }
        }
        out
    }

    /// Whether the view advertises feature `f`.
    fn has(&self, f: &Feature) -> bool {
        self.cpuid(f.leaf, f.sub).is_some_and(|r| r[f.reg as usize] & (1 << f.bit) != 0)
    }

    /// The named instruction-set features this view advertises.
    pub fn features(&self) -> Vec<&'static str> {
        FEATURES.iter().filter(|f| self.has(f)).map(|f| f.name).collect()
    }

    /// Why a program recorded with the view `recorded` cannot be replayed on this one: its
    /// CPUID answers come from the recording, so every feature it was told of must execute
    /// here, and its XSAVE buffers were sized for the recorded state, so this CPU must save
    /// the same components at the same places.
    pub fn replay_mismatch(&self, recorded: &CpuView) -> Option<ViewMismatch> {
        let missing: Vec<&'static str> =
            FEATURES.iter().filter(|f| recorded.has(f) && !self.has(f)).map(|f| f.name).collect();
        if !missing.is_empty() {
            return Some(ViewMismatch::Features { missing: missing.join(" ") });
        }
        if recorded.xcr0 != self.xcr0 {
            return Some(ViewMismatch::State { recorded: recorded.xcr0, here: self.xcr0 });
        }
        let moved = recorded.layout.moved(&self.layout);
        if moved != 0 {
            return Some(ViewMismatch::Layout { components: moved });
        }
        None
    }
}

/// Something a program would be misled by in a CPU view.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Inconsistency {
    /// XCR0 enables extended state but CPUID says the OS did not enable XSAVE.
    #[error("XCR0 is {xcr0:#x} but CPUID says XSAVE is off")]
    NoOsxsave {
        /// XCR0.
        xcr0: u64,
    },
    /// Components the CPU saves have no size in leaf 0xD.
    #[error("the CPU saves {} but CPUID leaf 0xD gives no size for it", xsave::names(*.components))]
    Undescribed {
        /// The components.
        components: u64,
    },
    /// Components enabled that leaf 0xD sub-leaf 0 does not list as supported.
    #[error("XCR0 enables {} but CPUID leaf 0xD does not list it", xsave::names(*.components))]
    NotSupported {
        /// The components.
        components: u64,
    },
    /// Leaf 0xD.0 EBX is smaller than what XSAVE writes.
    #[error("CPUID sizes the XSAVE area at {advertised} bytes, XSAVE writes {needed}")]
    AreaTooSmall {
        /// CPUID.(0xD,0):EBX.
        advertised: u32,
        /// What XSAVE writes for XCR0.
        needed: u32,
    },
    /// Leaf 0xD.1 EBX is smaller than what XSAVEC writes.
    #[error("CPUID sizes the compacted XSAVE area at {advertised} bytes, XSAVEC writes {needed}")]
    CompactedTooSmall {
        /// CPUID.(0xD,1):EBX.
        advertised: u32,
        /// What XSAVEC writes for XCR0.
        needed: u32,
    },
    /// A feature is advertised whose registers are not enabled.
    #[error("CPUID advertises {feature} but XCR0 does not enable {}", xsave::names(*.components))]
    FeatureWithoutState {
        /// The feature.
        feature: &'static str,
        /// The components it needs that are off.
        components: u64,
    },
}

/// Why a recording cannot be replayed on this CPU view.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ViewMismatch {
    /// The recording's program was told of features this CPU lacks.
    #[error("the recording's CPU had {missing}, which this CPU lacks")]
    Features {
        /// The features, space-separated.
        missing: String,
    },
    /// The CPU saves other state components.
    #[error(
        "the recording's CPU saved {} (XCR0 {recorded:#x}), this one saves {} (XCR0 {here:#x})",
        xsave::names(*.recorded),
        xsave::names(*.here)
    )]
    State {
        /// XCR0 of the recording.
        recorded: u64,
        /// XCR0 here.
        here: u64,
    },
    /// The same components at other offsets or sizes.
    #[error("this CPU lays out {} differently in XSAVE areas than the recording's did", xsave::names(*.components))]
    Layout {
        /// The components that moved.
        components: u64,
    },
}

/// An instruction-set feature bit a program can act on, and the state it needs enabled.
pub struct Feature {
    /// Linux's /proc/cpuinfo name.
    pub name: &'static str,
    /// CPUID leaf.
    pub leaf: u32,
    /// CPUID sub-leaf.
    pub sub: u32,
    /// Output register: 0 EAX, 1 EBX, 2 ECX, 3 EDX.
    pub reg: u8,
    /// Bit in that register.
    pub bit: u8,
    /// XCR0 components the feature's instructions need.
    pub needs: u64,
}

const AVX: u64 = 1 << xsave::bit::AVX;
const PKRU: u64 = 1 << xsave::bit::PKRU;

const fn f(name: &'static str, leaf: u32, sub: u32, reg: u8, bit: u8, needs: u64) -> Feature {
    Feature { name, leaf, sub, reg, bit, needs }
}

/// The features trapbox names and compares: what compilers and libraries dispatch on.
pub const FEATURES: &[Feature] = &[
    f("sse3", 1, 0, 2, 0, 0),
    f("pclmulqdq", 1, 0, 2, 1, 0),
    f("ssse3", 1, 0, 2, 9, 0),
    f("fma", 1, 0, 2, 12, AVX),
    f("cx16", 1, 0, 2, 13, 0),
    f("sse4_1", 1, 0, 2, 19, 0),
    f("sse4_2", 1, 0, 2, 20, 0),
    f("movbe", 1, 0, 2, 22, 0),
    f("popcnt", 1, 0, 2, 23, 0),
    f("aes", 1, 0, 2, 25, 0),
    f("xsave", 1, 0, 2, 26, 0),
    f("avx", 1, 0, 2, 28, AVX),
    f("f16c", 1, 0, 2, 29, AVX),
    f("rdrand", 1, 0, 2, 30, 0),
    f("sse", 1, 0, 3, 25, 0),
    f("sse2", 1, 0, 3, 26, 0),
    f("fsgsbase", 7, 0, 1, 0, 0),
    f("bmi1", 7, 0, 1, 3, 0),
    f("hle", 7, 0, 1, 4, 0),
    f("avx2", 7, 0, 1, 5, AVX),
    f("bmi2", 7, 0, 1, 8, 0),
    f("erms", 7, 0, 1, 9, 0),
    f("rtm", 7, 0, 1, 11, 0),
    f("avx512f", 7, 0, 1, 16, xsave::AVX512),
    f("avx512dq", 7, 0, 1, 17, xsave::AVX512),
    f("rdseed", 7, 0, 1, 18, 0),
    f("adx", 7, 0, 1, 19, 0),
    f("avx512ifma", 7, 0, 1, 21, xsave::AVX512),
    f("clflushopt", 7, 0, 1, 23, 0),
    f("clwb", 7, 0, 1, 24, 0),
    f("avx512pf", 7, 0, 1, 26, xsave::AVX512),
    f("avx512er", 7, 0, 1, 27, xsave::AVX512),
    f("avx512cd", 7, 0, 1, 28, xsave::AVX512),
    f("sha_ni", 7, 0, 1, 29, 0),
    f("avx512bw", 7, 0, 1, 30, xsave::AVX512),
    f("avx512vl", 7, 0, 1, 31, xsave::AVX512),
    f("avx512vbmi", 7, 0, 2, 1, xsave::AVX512),
    f("pku", 7, 0, 2, 3, 0),
    f("ospke", 7, 0, 2, 4, PKRU),
    f("waitpkg", 7, 0, 2, 5, 0),
    f("avx512_vbmi2", 7, 0, 2, 6, xsave::AVX512),
    f("user_shstk", 7, 0, 2, 7, 0),
    f("gfni", 7, 0, 2, 8, 0),
    f("vaes", 7, 0, 2, 9, AVX),
    f("vpclmulqdq", 7, 0, 2, 10, AVX),
    f("avx512_vnni", 7, 0, 2, 11, xsave::AVX512),
    f("avx512_bitalg", 7, 0, 2, 12, xsave::AVX512),
    f("avx512_vpopcntdq", 7, 0, 2, 14, xsave::AVX512),
    f("rdpid", 7, 0, 2, 22, 0),
    f("movdiri", 7, 0, 2, 27, 0),
    f("movdir64b", 7, 0, 2, 28, 0),
    f("fsrm", 7, 0, 3, 4, 0),
    f("avx512_vp2intersect", 7, 0, 3, 8, xsave::AVX512),
    f("serialize", 7, 0, 3, 14, 0),
    f("ibt", 7, 0, 3, 20, 0),
    f("amx_bf16", 7, 0, 3, 22, xsave::AMX),
    f("avx512_fp16", 7, 0, 3, 23, xsave::AVX512),
    f("amx_tile", 7, 0, 3, 24, xsave::AMX),
    f("amx_int8", 7, 0, 3, 25, xsave::AMX),
    f("avx_vnni", 7, 1, 0, 4, AVX),
    f("avx512_bf16", 7, 1, 0, 5, xsave::AVX512),
    f("amx_fp16", 7, 1, 0, 21, xsave::AMX),
    f("avx_ifma", 7, 1, 0, 23, AVX),
    f("xsaveopt", 0xd, 1, 0, 0, 0),
    f("xsavec", 0xd, 1, 0, 1, 0),
    f("xgetbv1", 0xd, 1, 0, 2, 0),
    f("lahf_lm", 0x8000_0001, 0, 2, 0, 0),
    f("abm", 0x8000_0001, 0, 2, 5, 0),
    f("sse4a", 0x8000_0001, 0, 2, 6, 0),
    f("misalignsse", 0x8000_0001, 0, 2, 7, 0),
    f("3dnowprefetch", 0x8000_0001, 0, 2, 8, 0),
    f("xop", 0x8000_0001, 0, 2, 11, AVX),
    f("fma4", 0x8000_0001, 0, 2, 16, AVX),
    f("tbm", 0x8000_0001, 0, 2, 21, 0),
    f("rdtscp", 0x8000_0001, 0, 3, 27, 0),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(leaf: u32, sub: u32, regs: [u32; 4]) -> Leaf {
        Leaf { leaf, sub, regs }
    }

    /// The view measured in the box on a Zen 4 host under PVM before trapbox described
    /// AVX-512 (issue 19): XCR0 0xe7, leaf 0xD sized for 0x7.
    fn zen4_before_fix() -> CpuView {
        CpuView::new(
            0xe7,
            vec![
                leaf(1, 0, [0x00a1_0f11, 0, 0xfff8_3203, 0x178b_fbff]),
                leaf(7, 0, [1, 0xf1bf_03ab, 0x0000_5f46, 0x10]),
                leaf(0xd, 0, [0xe7, 0x340, 0x980, 0]),
                leaf(0xd, 1, [7, 0x340, 0, 0]),
                leaf(0xd, 2, [0x100, 0x240, 0, 0]),
                leaf(0xd, 5, [0; 4]),
                leaf(0xd, 6, [0; 4]),
                leaf(0xd, 7, [0; 4]),
            ],
        )
    }

    fn zen4_native() -> CpuView {
        CpuView::new(
            0xe7,
            vec![
                leaf(1, 0, [0x00a1_0f11, 0, 0xfffa_3203, 0x178b_fbff]),
                leaf(7, 0, [1, 0xf1bf_07ab, 0x0040_5fc6, 0x10]),
                leaf(0xd, 0, [0xe7, 0x980, 0x980, 0]),
                leaf(0xd, 1, [0xf, 0x9a8, 0x1800, 0]),
                leaf(0xd, 2, [0x100, 0x240, 0, 0]),
                leaf(0xd, 5, [0x40, 0x340, 0, 0]),
                leaf(0xd, 6, [0x200, 0x380, 0, 0]),
                leaf(0xd, 7, [0x400, 0x580, 0, 0]),
            ],
        )
    }

    /// A CPU without AVX-512 (the 2026-11 machines, QEMU's TCG).
    fn avx2_only() -> CpuView {
        CpuView::new(
            0x7,
            vec![
                leaf(1, 0, [0, 0, 0x1800_0000 | (1 << 12), 0]),
                leaf(7, 0, [0, 1 << 5, 0, 0]),
                leaf(0xd, 0, [0x7, 0x340, 0x340, 0]),
                leaf(0xd, 1, [0x7, 0x340, 0, 0]),
                leaf(0xd, 2, [0x100, 0x240, 0, 0]),
            ],
        )
    }

    #[test]
    fn inconsistencies_find_the_avx512_crash() {
        assert_eq!(zen4_before_fix().inconsistencies(), vec![Inconsistency::Undescribed { components: xsave::AVX512 }]);
        // Described components, but the sizes KVM computes for an XCR0 of 0x7 (what KVM
        // reports when it was told 0x7 while the CPU runs with 0xe7).
        let mut leaves = zen4_native().leaves().to_vec();
        for l in &mut leaves {
            if (l.leaf, l.sub) == (0xd, 0) || (l.leaf, l.sub) == (0xd, 1) {
                l.regs[1] = 0x340;
            }
        }
        let bad = CpuView::new(0xe7, leaves).inconsistencies();
        assert!(bad.contains(&Inconsistency::AreaTooSmall { advertised: 0x340, needed: 2432 }), "{bad:?}");
        assert!(bad.contains(&Inconsistency::CompactedTooSmall { advertised: 0x340, needed: 2432 }), "{bad:?}");
        assert_eq!(zen4_native().inconsistencies(), vec![]);
        assert_eq!(avx2_only().inconsistencies(), vec![]);
    }

    #[test]
    fn inconsistencies_find_features_without_state() {
        let v = CpuView::new(
            0x7,
            vec![
                leaf(1, 0, [0, 0, OSXSAVE, 0]),
                leaf(7, 0, [0, 1 << 16, 0, 0]),
                leaf(0xd, 0, [0x7, 0x340, 0x340, 0]),
                leaf(0xd, 2, [0x100, 0x240, 0, 0]),
            ],
        );
        assert_eq!(
            v.inconsistencies(),
            vec![Inconsistency::FeatureWithoutState { feature: "avx512f", components: xsave::AVX512 }]
        );
    }

    #[test]
    fn frame_leaves_dynamic_state_out() {
        // Sapphire Rapids under a kind of KVM that runs guests with the host's XCR0: the tile
        // data is saved by the CPU but never part of a frame (trapbox grants no permission).
        let mut leaves = vec![
            leaf(1, 0, [0, 0, OSXSAVE, 0]),
            leaf(0xd, 0, [0x602e7, 11008, 11008, 0]),
            leaf(0xd, 2, [256, 576, 0, 0]),
            leaf(0xd, 5, [64, 1088, 0, 0]),
            leaf(0xd, 6, [512, 1152, 0, 0]),
            leaf(0xd, 7, [1024, 1664, 0, 0]),
            leaf(0xd, 9, [8, 2688, 0, 0]),
            leaf(0xd, 17, [64, 2752, 0, 0]),
            leaf(0xd, 18, [8192, 2816, 6, 0]),
        ];
        let v = CpuView::new(0x602e7, leaves.clone());
        assert_eq!(v.frame_features(), 0x202e7);
        assert_eq!(v.frame_xsave_size(), 2816);
        assert_eq!(v.user_features(), 0x2e7);
        assert_eq!(v.inconsistencies(), vec![]);
        leaves.retain(|l| (l.leaf, l.sub) != (0xd, 18));
        assert_eq!(
            CpuView::new(0x602e7, leaves).inconsistencies(),
            vec![Inconsistency::Undescribed { components: 1 << 18 }]
        );
    }

    #[test]
    fn replay_mismatch_names_what_is_missing() {
        let zen = zen4_native();
        let old = avx2_only();
        let m = old.replay_mismatch(&zen).unwrap();
        assert!(matches!(&m, ViewMismatch::Features { missing } if missing.contains("avx512f")), "{m}");
        assert!(m.to_string().contains("avx512f"));
        // The other way the features are there but the state differs.
        assert_eq!(
            zen.replay_mismatch(&CpuView::new(0x7, avx2_only().leaves().to_vec())),
            Some(ViewMismatch::State { recorded: 0x7, here: 0xe7 })
        );
        assert_eq!(zen.replay_mismatch(&zen.clone()), None);
    }

    #[test]
    fn replay_mismatch_compares_layouts() {
        let zen = zen4_native();
        let mut intel = zen.leaves().to_vec();
        for l in &mut intel {
            match (l.leaf, l.sub) {
                (0xd, 5) => l.regs[1] = 1088,
                (0xd, 6) => l.regs[1] = 1152,
                (0xd, 7) => l.regs[1] = 1664,
                _ => {}
            }
        }
        let intel = CpuView::new(0xe7, intel);
        assert_eq!(zen.replay_mismatch(&intel), Some(ViewMismatch::Layout { components: xsave::AVX512 }));
    }

    #[test]
    fn probe_list_covers_each_component() {
        let l = probe_list(0xe7);
        for b in [2, 5, 6, 7] {
            assert!(l.contains(&(0xd, b)));
        }
        assert!(!l.contains(&(0xd, 3)));
        assert!(l.contains(&(7, 0)) && l.contains(&(0xd, 0)));
    }

    #[test]
    fn host_view_is_consistent() {
        // trapbox's own process sees what the host kernel set up for user code; a host whose
        // own view is inconsistent would crash its native programs too.
        let h = CpuView::host();
        assert_eq!(h.inconsistencies(), vec![], "{h:?}");
        assert_eq!(h.xcr0() & xsave::LEGACY, xsave::LEGACY);
    }
}
