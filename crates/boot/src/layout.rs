//! Where everything lives in the boot VM's guest-physical memory. Guest RAM starts at
//! guest-physical 0 (a PC's layout, unlike the ELF engine's private allocation) because the
//! kernel expects one: real-mode trampolines for secondary CPUs below 1 MiB, the MP table in the
//! last KiB of base memory, the kernel at 1 MiB.
//!
//! ```text
//! 0x0000_0500  GDT (null, _, __BOOT_CS 0x10, __BOOT_DS 0x18, user, TSS 0x40)
//! 0x0000_0600  TSS (VMX needs a usable TR to enter long mode; never used)
//! 0x0000_7000  zero page (struct boot_params)
//! 0x0000_8ff0  initial stack pointer (the kernel sets its own; the test image uses none)
//! 0x0000_9000  PML4, 0xa000 PDPT, 0xb000..0xf000 four page directories: 4 GiB identity, 2 MiB pages
//! 0x0002_0000  command line (up to 64 KiB)
//! 0x0009_fc00  MP floating pointer + MP configuration table (top KiB of base memory)
//! 0x0010_0000  the kernel (bzImage protected-mode part), init_size bytes from here
//! top of RAM below the MMIO gap: initrd, page aligned, below initrd_addr_max
//! 0xc000_0000 .. 4 GiB: no RAM (IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000, KVM's TSS pages)
//! 4 GiB ..     the rest of RAM when --memory exceeds 3 GiB
//! ```

#![forbid(unsafe_code)]

/// GDT.
pub const GDT: u64 = 0x500;
/// TSS named by the GDT's descriptor at selector 0x40.
pub const TSS: u64 = 0x600;
/// struct boot_params, the "zero page"; %rsi at the 64-bit entry.
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial RSP.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Page-map level 4.
pub const PML4: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPT: u64 = 0xa000;
/// First of four page directories (one per GiB).
pub const PD: u64 = 0xb000;
/// Command line.
pub const CMDLINE: u64 = 0x2_0000;
/// Room for the command line, NUL included.
pub const CMDLINE_MAX: u64 = 0x1_0000;
/// Base memory ends here: the MP table lives in its top KiB (where Linux looks for it).
pub const EBDA: u64 = 0x9_fc00;
/// The kernel's load address (code32_start of every bzImage: 1 MiB).
pub const KERNEL: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole; RAM beyond it continues at 4 GiB.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole.
pub const MMIO_GAP_END: u64 = 1 << 32;
/// KVM's three-page TSS area for VMX real-mode emulation, inside the hole.
pub const KVM_TSS: u64 = 0xfffb_d000;
/// IOAPIC registers (in-kernel irqchip).
pub const IOAPIC: u32 = 0xfec0_0000;
/// Local APIC registers.
pub const LAPIC: u32 = 0xfee0_0000;

/// Guest RAM ranges (start, length) for `size` bytes of memory: below the hole, then above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    let low = size.min(MMIO_GAP_START);
    let mut r = vec![(0, low)];
    if size > low {
        r.push((MMIO_GAP_END, size - low));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_ranges_split_at_the_hole() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(ram_ranges(4 << 30), vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
    }

    #[test]
    fn fixed_structures_do_not_overlap() {
        let spans = [
            (GDT, 80),
            (TSS, 104),
            (ZERO_PAGE, 4096),
            (PML4, 4096),
            (PDPT, 4096),
            (PD, 4 * 4096),
            (CMDLINE, CMDLINE_MAX),
            (EBDA, 1024),
        ];
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{a:x?} overlaps {b:x?}");
            }
        }
        const { assert!(BOOT_STACK < PML4 && BOOT_STACK > ZERO_PAGE + 4096) };
        const { assert!(EBDA + 1024 <= 0xa_0000 && KERNEL >= 0xa_0000) };
    }
}
