//! The Intel MultiProcessor Specification 1.4 table: how a kernel without ACPI learns the
//! processors (one local APIC each), the IOAPIC and how ISA interrupts reach it. Linux looks for
//! the floating pointer in the last KiB of base memory, where `layout::EBDA` puts it.

#![forbid(unsafe_code)]

use super::layout;

/// Most vCPUs whose entries fit in the KiB at `layout::EBDA`.
pub const MAX_CPUS: u8 = 32;
/// ISA interrupt lines routed through the IOAPIC.
const IRQS: u8 = 24;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

/// Builds the floating pointer and the configuration table for `cpus` processors, to be
/// written at `layout::EBDA`.
pub fn build(cpus: u8) -> Vec<u8> {
    assert!((1..=MAX_CPUS).contains(&cpus), "cpus checked by the caller");
    let ioapic_id = cpus; // after the local APIC IDs 0..cpus
    let mut entries = Vec::new();
    let mut count = 0u16;
    for id in 0..cpus {
        let mut e = vec![0u8; 20];
        e[0] = 0; // processor
        e[1] = id;
        e[2] = APIC_VERSION;
        e[3] = 1 | if id == 0 { 2 } else { 0 }; // enabled, bootstrap processor
        e[4..8].copy_from_slice(&0x600u32.to_le_bytes()); // family 6 signature
        e[8..12].copy_from_slice(&0x201u32.to_le_bytes()); // FPU, APIC
        entries.extend(e);
        count += 1;
    }
    entries.extend([1, 0, b'I', b'S', b'A', b' ', b' ', b' ']); // bus 0: ISA
    count += 1;
    entries.extend([2, ioapic_id, IOAPIC_VERSION, 1]); // IOAPIC, enabled
    entries.extend(layout::IOAPIC.to_le_bytes());
    count += 1;
    for irq in 0..IRQS {
        // I/O interrupt: INT, polarity/trigger as the bus says, ISA bus, line irq → pin irq.
        entries.extend([3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupts: ExtINT on LINT0, NMI on LINT1 of every processor.
    entries.extend([4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend([4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = layout::EBDA + 16;
    let mut table = vec![0u8; 44];
    table[0..4].copy_from_slice(b"PCMP");
    table[4..6].copy_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table[6] = 4; // spec 1.4
    table[8..16].copy_from_slice(b"TRAPBOX ");
    table[16..28].copy_from_slice(b"BOOT VM     ");
    table[34..36].copy_from_slice(&count.to_le_bytes());
    table[36..40].copy_from_slice(&layout::LAPIC.to_le_bytes());
    table.extend(entries);
    table[7] = checksum(&table);

    let mut fp = vec![0u8; 16];
    fp[0..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&(table_addr as u32).to_le_bytes());
    fp[8] = 1; // length in 16-byte units
    fp[9] = 4;
    fp[10] = checksum(&fp);
    fp.extend(table);
    assert!(fp.len() <= 1024, "MP table fits the KiB below 640 KiB");
    fp
}

/// The byte that makes `b` sum to zero (with the checksum byte itself still zero in `b`).
fn checksum(b: &[u8]) -> u8 {
    0u8.wrapping_sub(b.iter().fold(0u8, |s, x| s.wrapping_add(*x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    #[test]
    fn build_checksums_and_counts() {
        for cpus in [1, 2, MAX_CPUS] {
            let t = build(cpus);
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0);
            let table = &t[16..];
            assert_eq!(&table[0..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(sum(table), 0);
            let count = u16::from_le_bytes([table[34], table[35]]);
            assert_eq!(count, cpus as u16 + 1 + 1 + 24 + 2);
            // Exactly one bootstrap processor, the first.
            let bsp: Vec<u8> = (0..cpus as usize).map(|i| table[44 + i * 20 + 3]).collect();
            assert_eq!(bsp[0], 3);
            assert!(bsp[1..].iter().all(|f| *f == 1));
        }
    }
}
