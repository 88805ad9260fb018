//! A minimal MC146818 CMOS RTC at ports 0x70/0x71, read-only: the host's UTC time in BCD,
//! update-in-progress always clear, the valid-time bit set. rust-vmm has no x86 RTC
//! (vm-superio's is the PL031 for ARM), and without one Linux's CMOS driver polls the absent
//! chip's "update in progress" bit — all ones from an empty port — about 40,000 times (as many
//! exits, seconds of boot) before it gives up.

#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Index port.
pub const INDEX: u16 = 0x70;
/// Data port.
pub const DATA: u16 = 0x71;

/// The CMOS: the selected register and 128 bytes of NVRAM (zero; nothing reads it here).
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
}

impl Default for Cmos {
    fn default() -> Cmos {
        Cmos { index: 0, nvram: [0; 128] }
    }
}

impl Cmos {
    /// A write to 0x70 (bit 7 is the NMI mask, not part of the index) or 0x71.
    pub fn write(&mut self, port: u16, v: u8) {
        match port {
            INDEX => self.index = v & 0x7f,
            // Time and status writes (setting the clock) are ignored: the guest's clock is the
            // host's.
            _ if self.index >= 0x0e => self.nvram[self.index as usize] = v,
            _ => {}
        }
    }

    /// A read of 0x70 or 0x71.
    pub fn read(&self, port: u16) -> u8 {
        if port == INDEX {
            return self.index;
        }
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        register(self.index, secs).unwrap_or(self.nvram[self.index as usize])
    }
}

/// Register `index` at Unix time `secs`, for the clock and status registers.
fn register(index: u8, secs: u64) -> Option<u8> {
    let bcd = |v: u64| (((v / 10) << 4) | (v % 10)) as u8;
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    Some(match index {
        0x00 => bcd(secs % 60),
        0x02 => bcd(secs / 60 % 60),
        0x04 => bcd(secs / 3600 % 24),
        0x06 => bcd((days + 4) % 7 + 1), // 1970-01-01 was a Thursday; Sunday is 1
        0x07 => bcd(d),
        0x08 => bcd(m),
        0x09 => bcd(y % 100),
        0x32 => bcd(y / 100),
        0x0a => 0x26, // 32.768 kHz time base, 1024 Hz rate, no update in progress
        0x0b => 0x02, // 24-hour, BCD, no interrupts
        0x0c => 0x00, // no interrupt flags
        0x0d => 0x80, // valid RAM and time
        _ => return None,
    })
}

/// Year, month, day of the proleptic Gregorian calendar for a count of days since 1970-01-01
/// (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as u64, m as u64, d as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_gives_bcd_time_and_a_ready_status() {
        // 2026-11-24 03:14:15 UTC, a Tuesday.
        let t = 1_795_490_055;
        assert_eq!(civil_from_days(t as i64 / 86_400), (2026, 11, 24));
        assert_eq!(register(0x00, t), Some(0x15));
        assert_eq!(register(0x02, t), Some(0x14));
        assert_eq!(register(0x04, t), Some(0x03));
        assert_eq!(register(0x07, t), Some(0x24));
        assert_eq!(register(0x08, t), Some(0x11));
        assert_eq!(register(0x09, t), Some(0x26));
        assert_eq!(register(0x32, t), Some(0x20));
        assert_eq!(register(0x06, t), Some(0x03));
        assert_eq!(register(0x0a, t).map(|a| a & 0x80), Some(0), "update in progress must be clear");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn cmos_index_masks_nmi_and_keeps_nvram() {
        let mut c = Cmos::default();
        c.write(INDEX, 0x80 | 0x20);
        assert_eq!(c.read(INDEX), 0x20);
        c.write(DATA, 0x5a);
        assert_eq!(c.read(DATA), 0x5a);
        c.write(INDEX, 0x0d);
        assert_eq!(c.read(DATA), 0x80);
    }
}
