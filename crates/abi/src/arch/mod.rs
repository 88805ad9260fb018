//! x86-64 long-mode structures: the GDT, TSS, IDT, control registers and MSRs that put the
//! guest at CPL3 with every exception routed to a ring-0 stub.
//!
//! Selectors follow Linux's layout (kernel CS/DS 0x10/0x18, user CS/SS 0x33/0x2b), which both
//! kinds of KVM accept and which makes `syscall`/`sysret` work with Linux's STAR value.

pub mod cpuid;
pub mod cpustate;
pub mod cpuview;
pub mod regs;
pub mod sigframe;
pub mod xsave;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x10;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x18;
/// User 32-bit code selector (only named in STAR, for `sysret`'s arithmetic).
pub const USER32_CS: u16 = 0x23;
/// User data/stack selector.
pub const USER_DS: u16 = 0x2b;
/// User 64-bit code selector.
pub const USER_CS: u16 = 0x33;
/// TSS selector.
pub const TSS_SEL: u16 = 0x40;

/// CR0: protection, monitor coprocessor, extension type, numeric error, write protect, paging.
pub const CR0: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
/// CR4: PAE, OSFXSR, OSXMMEXCPT.
pub const CR4_BASE: u64 = (1 << 5) | (1 << 9) | (1 << 10);
/// CR4.OSXSAVE.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.UMIP: user-mode instruction prevention.
pub const CR4_UMIP: u64 = 1 << 11;
/// EFER: SCE, LME, LMA, NXE.
pub const EFER: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);

/// MSR numbers used at start-up.
pub mod msr {
    /// Target selectors for syscall/sysret.
    pub const STAR: u32 = 0xc000_0081;
    /// `syscall` entry point in 64-bit mode.
    pub const LSTAR: u32 = 0xc000_0082;
    /// `syscall` entry point in compatibility mode.
    pub const CSTAR: u32 = 0xc000_0083;
    /// RFLAGS bits cleared by `syscall`.
    pub const SFMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// Kernel GS base (swapgs).
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// `sysenter` code selector (0 makes `sysenter` fault).
    pub const SYSENTER_CS: u32 = 0x174;
    /// Page attribute table.
    pub const PAT: u32 = 0x277;
}

/// Vectors whose exceptions push an error code.
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// Number of IDT entries trapbox fills: the architectural exceptions. A vector above them
/// (`int 0x80`, a stray interrupt) exceeds the IDT limit and becomes a #GP whose error code
/// names the vector.
pub const IDT_ENTRIES: usize = 32;

/// A flat segment descriptor.
const fn seg(access: u64, flags: u64) -> u64 {
    0xffff | (access << 40) | (0xf << 48) | (flags << 52)
}

/// The GDT: null, unused, kernel CS/DS, user CS32/DS/CS64, unused, then the 16-byte TSS
/// descriptor at 0x40.
pub fn gdt(tss_base: u64, tss_limit: u32) -> [u64; 10] {
    let tss_lo = (tss_limit as u64 & 0xffff)
        | ((tss_base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, type 9: available 64-bit TSS
        | (((tss_limit as u64 >> 16) & 0xf) << 48)
        | (((tss_base >> 24) & 0xff) << 56);
    [
        0,
        0,
        seg(0x9b, 0xa), // 0x10 kernel code: present, DPL0, code exec/read, L=1, G=1
        seg(0x93, 0xc), // 0x18 kernel data: present, DPL0, data r/w, D=1, G=1
        seg(0xfb, 0xc), // 0x20 user code 32: DPL3
        seg(0xf3, 0xc), // 0x28 user data: DPL3
        seg(0xfb, 0xa), // 0x30 user code 64: DPL3, L=1
        0,
        tss_lo,
        tss_base >> 32,
    ]
}

/// A 64-bit TSS: RSP0 and IST1 point at the ring-0 stack; the I/O bitmap offset is past the
/// limit, so every port is denied at CPL3 (where IOPL is honoured).
pub fn tss(rsp0: u64) -> [u8; 104] {
    let mut t = [0u8; 104];
    t[4..12].copy_from_slice(&rsp0.to_le_bytes());
    t[36..44].copy_from_slice(&rsp0.to_le_bytes()); // IST1
    t[102..104].copy_from_slice(&104u16.to_le_bytes());
    t
}

/// An interrupt gate to `handler` in the kernel code segment.
pub fn idt_gate(handler: u64, dpl: u8) -> [u64; 2] {
    let lo = (handler & 0xffff)
        | ((KERNEL_CS as u64) << 16)
        | ((0x8e | ((dpl as u64 & 3) << 5)) << 40) // present, interrupt gate
        | (((handler >> 16) & 0xffff) << 48);
    [lo, handler >> 32]
}

/// STAR: `syscall` loads CS/SS from KERNEL_CS, `sysret` computes 0x33/0x2b from USER32_CS.
pub fn star() -> u64 {
    ((USER32_CS as u64) << 48) | ((KERNEL_CS as u64) << 32)
}

/// RFLAGS bits `syscall` clears: TF, IF, DF, IOPL, NT, AC (as Linux does).
pub const SFMASK: u64 = 0x47700;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_user_code_is_long_mode_dpl3() {
        let g = gdt(0, 103);
        let cs = g[(USER_CS >> 3) as usize];
        assert_eq!((cs >> 45) & 3, 3, "DPL");
        assert_eq!((cs >> 53) & 1, 1, "L bit");
        assert_eq!((cs >> 47) & 1, 1, "present");
        let kcs = g[(KERNEL_CS >> 3) as usize];
        assert_eq!((kcs >> 45) & 3, 0);
    }

    #[test]
    fn gdt_tss_descriptor_encodes_base() {
        let base = 0x7f12_3456_7800u64;
        let g = gdt(base, 103);
        let lo = g[8];
        let got = ((lo >> 16) & 0xff_ffff) | (((lo >> 56) & 0xff) << 24) | (g[9] << 32);
        assert_eq!(got, base);
        assert_eq!((lo >> 40) & 0xff, 0x89);
    }

    #[test]
    fn star_gives_linux_user_selectors() {
        let s = star();
        assert_eq!(((s >> 48) + 16) | 3, USER_CS as u64);
        assert_eq!(((s >> 48) + 8) | 3, USER_DS as u64);
        assert_eq!((s >> 32) & 0xffff, KERNEL_CS as u64);
    }

    #[test]
    fn idt_gate_roundtrips_handler() {
        let h = 0x7fab_cdef_1234u64;
        let [lo, hi] = idt_gate(h, 3);
        assert_eq!((lo & 0xffff) | (((lo >> 48) & 0xffff) << 16) | (hi << 32), h);
        assert_eq!((lo >> 45) & 3, 3);
        assert_eq!((lo >> 16) & 0xffff, KERNEL_CS as u64);
    }

    #[test]
    fn tss_holds_rsp0_and_no_io_bitmap() {
        let t = tss(0x1234_5000);
        assert_eq!(u64::from_le_bytes(t[4..12].try_into().unwrap()), 0x1234_5000);
        assert_eq!(u16::from_le_bytes([t[102], t[103]]), 104);
    }
}
