//! The port-I/O bus of the boot VM: the only devices that exit to trapbox. PIC, IOAPIC, LAPICs
//! and PIT are KVM's in-kernel models and never reach here.
//!
//! | ports | device |
//! |---|---|
//! | 0x3f8–0x3ff | COM1, vm-superio's 16550 ([`super::serial`]) |
//! | 0x60, 0x64 | i8042, vm-superio's: command 0xfe on 0x64 resets the machine (`reboot=k`) |
//! | 0x80 | POST code: the last value is kept for reports |
//! | anything else | absent: reads give all ones, writes are dropped, each port is counted |

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use super::serial::{Uart, COM1};

/// i8042 data port.
const I8042_DATA: u16 = 0x60;
/// i8042 command/status port.
const I8042_CMD: u16 = 0x64;
/// POST diagnostic port.
const POST: u16 = 0x80;

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
    i8042: I8042Device<ResetLine>,
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
            i8042: I8042Device::new(ResetLine(reset.clone())),
            reset,
            post_code: None,
            absent: BTreeMap::new(),
        }
    }

    /// A port read of `data.len()` bytes.
    pub fn read(&mut self, port: u16, data: &mut [u8]) {
        match port {
            COM1..=0x3ff if data.len() == 1 => data[0] = self.uart.read((port - COM1) as u8),
            I8042_DATA | I8042_CMD if data.len() == 1 => data[0] = self.i8042.read((port - I8042_DATA) as u8),
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
            (I8042_DATA | I8042_CMD, [v]) => {
                let _ = self.i8042.write((port - I8042_DATA) as u8, *v);
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
        assert_eq!(b.write(0x64, &[0xfe]), Some(BusEvent::Reset));
        assert_eq!(b.write(0x64, &[0xaa]), None);
        let mut d = [0; 2];
        b.read(0xcfc, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        b.write(0x80, &[0x42]);
        assert_eq!(b.post_code, Some(0x42));
        assert_eq!(b.absent.get(&0xcfc), Some(&1));
    }
}
