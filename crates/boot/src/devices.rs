//! The port-I/O bus of the boot VM: the only devices that exit to trapbox. PIC, IOAPIC, LAPICs
//! and PIT are KVM's in-kernel models and never reach here.
//!
//! | ports | device |
//! |---|---|
//! | 0x3f8–0x3ff | COM1, vm-superio's 16550 ([`super::serial`]) |
//! | 0x60, 0x64 | i8042 with no keyboard or mouse: vm-superio's device gives the reset line (command 0xfe, `reboot=k`); [`I8042`] answers the controller commands Linux's probe sends (read/write the command byte, self-tests), which vm-superio's model does not, and whose timeouts cost a second of boot |
//! | 0x70, 0x71 | CMOS RTC ([`super::cmos`]) |
//! | 0x80 | POST code: the last value is kept for reports |
//! | anything else | absent: reads give all ones, writes are dropped, each port is counted |

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use super::cmos::{self, Cmos};
use super::serial::{Uart, COM1};

/// i8042 data port.
const I8042_DATA: u16 = 0x60;
/// i8042 command/status port.
const I8042_CMD: u16 = 0x64;
/// POST diagnostic port.
const POST: u16 = 0x80;

/// An i8042 keyboard controller with nothing plugged in: vm-superio's `I8042Device` for the
/// reset line, plus the controller's own command byte and output buffer.
pub struct I8042 {
    dev: I8042Device<ResetLine>,
    /// The controller command byte ("CTR"): keyboard interrupt on, system flag, translation.
    ctr: u8,
    out: Option<u8>,
    ctr_next: bool,
}

impl I8042 {
    fn new(reset: ResetLine) -> I8042 {
        I8042 { dev: I8042Device::new(reset), ctr: 0x45, out: None, ctr_next: false }
    }

    fn read(&mut self, port: u16) -> u8 {
        match port {
            // Status: output buffer full when a reply waits; the system flag (POST passed).
            I8042_CMD => u8::from(self.out.is_some()) | 0x04,
            _ => self.out.take().unwrap_or(0),
        }
    }

    fn write(&mut self, port: u16, v: u8) {
        match (port, v) {
            (I8042_DATA, _) if self.ctr_next => {
                self.ctr_next = false;
                self.ctr = v;
            }
            (I8042_CMD, 0x20) => self.out = Some(self.ctr), // read CTR
            (I8042_CMD, 0x60) => self.ctr_next = true,      // write CTR: the next data byte
            (I8042_CMD, 0xaa) => self.out = Some(0x55),     // controller self-test passed
            (I8042_CMD, 0xa9 | 0xab) => self.out = Some(0), // port tests passed
            // Everything else, the reset command among it, goes to vm-superio's device.
            (_, _) => {
                let _ = self.dev.write((port - I8042_DATA) as u8, v);
            }
        }
    }
}

/// The i8042's CPU reset line: sets a flag the vCPU loop reads right after the write.
pub struct ResetLine(Arc<AtomicBool>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// What a port write did beyond the device's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusEvent {
    /// The guest pulsed the i8042 reset line.
    Reset,
}

/// The devices behind port I/O.
pub struct IoBus {
    /// COM1.
    pub uart: Uart,
    i8042: I8042,
    cmos: Cmos,
    reset: Arc<AtomicBool>,
    /// Last POST code written to 0x80.
    pub post_code: Option<u8>,
    /// Accesses to ports with no device, by port.
    pub absent: BTreeMap<u16, u64>,
}

impl IoBus {
    /// A bus with `uart` on COM1.
    pub fn new(uart: Uart) -> IoBus {
        let reset = Arc::new(AtomicBool::new(false));
        IoBus {
            uart,
            i8042: I8042::new(ResetLine(reset.clone())),
            cmos: Cmos::default(),
            reset,
            post_code: None,
            absent: BTreeMap::new(),
        }
    }

    /// A port read of `data.len()` bytes.
    pub fn read(&mut self, port: u16, data: &mut [u8]) {
        match port {
            COM1..=0x3ff if data.len() == 1 => data[0] = self.uart.read((port - COM1) as u8),
            I8042_DATA | I8042_CMD if data.len() == 1 => data[0] = self.i8042.read(port),
            cmos::INDEX | cmos::DATA if data.len() == 1 => data[0] = self.cmos.read(port),
            _ => {
                *self.absent.entry(port).or_default() += 1;
                data.fill(0xff);
            }
        }
    }

    /// A port write.
    pub fn write(&mut self, port: u16, data: &[u8]) -> Option<BusEvent> {
        match (port, data) {
            (COM1..=0x3ff, [v]) => {
                // Output errors are the sink's business (see ConsoleOut); an interrupt that
                // cannot be raised leaves the guest's driver to poll, as it does for the console.
                let _ = self.uart.write((port - COM1) as u8, *v);
            }
            (cmos::INDEX | cmos::DATA, [v]) => self.cmos.write(port, *v),
            (I8042_DATA | I8042_CMD, [v]) => {
                self.i8042.write(port, *v);
                if self.reset.swap(false, Ordering::SeqCst) {
                    return Some(BusEvent::Reset);
                }
            }
            (POST, [v]) => self.post_code = Some(*v),
            _ => *self.absent.entry(port).or_default() += 1,
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::serial::{uart, ConsoleOut};
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    fn bus() -> IoBus {
        let out = ConsoleOut::new(Box::new(Vec::new()), std::time::Instant::now());
        IoBus::new(uart(EventFd::new(libc::EFD_NONBLOCK).unwrap(), out))
    }

    #[test]
    fn io_bus_dispatches_serial_reset_and_absent_ports() {
        let mut b = bus();
        for c in b"hi\n" {
            assert_eq!(b.write(0x3f8, &[*c]), None);
        }
        assert_eq!(b.uart.writer().watch.bytes, 3);
        let mut lsr = [0];
        b.read(0x3fd, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter holding register empty");
        // Linux's i8042 probe: read the command byte, write it back; then the reset.
        let mut st = [0];
        b.read(0x64, &mut st);
        assert_eq!(st[0] & 1, 0, "nothing to read yet");
        assert_eq!(b.write(0x64, &[0x20]), None);
        b.read(0x64, &mut st);
        assert_eq!(st[0] & 1, 1, "the command byte waits in the output buffer");
        let mut ctr = [0];
        b.read(0x60, &mut ctr);
        assert_eq!(ctr[0], 0x45);
        b.write(0x64, &[0x60]);
        b.write(0x60, &[0x44]);
        b.write(0x64, &[0x20]);
        b.read(0x60, &mut ctr);
        assert_eq!(ctr[0], 0x44);
        assert_eq!(b.write(0x64, &[0xaa]), None);
        b.read(0x60, &mut ctr);
        assert_eq!(ctr[0], 0x55);
        assert_eq!(b.write(0x64, &[0xfe]), Some(BusEvent::Reset));
        let mut sec = [0];
        b.write(0x70, &[0x0a]);
        b.read(0x71, &mut sec);
        assert_eq!(sec[0] & 0x80, 0, "RTC never busy");
        let mut d = [0; 2];
        b.read(0xcfc, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        b.write(0x80, &[0x42]);
        assert_eq!(b.post_code, Some(0x42));
        assert_eq!(b.absent.get(&0xcfc), Some(&1));
    }
}
