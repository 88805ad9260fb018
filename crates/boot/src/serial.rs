//! The guest's console: a 16550 UART at COM1 (0x3f8, IRQ 4) from rust-vmm's vm-superio, whose
//! transmitted bytes go to trapbox's output and through a [`ConsoleWatch`] that reads the
//! kernel's lines as they pass (first byte, init start, panic, halt), and whose receive
//! FIFO is fed from trapbox's input.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// COM1's I/O base.
pub const COM1: u16 = 0x3f8;
/// COM1's interrupt line (ISA IRQ 4, IOAPIC pin 4).
pub const COM1_IRQ: u32 = 4;

/// Raises the UART's interrupt line: an eventfd KVM injects as GSI 4 (irqfd), so no vCPU exit
/// or ioctl is needed to deliver it.
pub struct IrqLine(pub EventFd);

impl Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), std::io::Error> {
        self.0.write(1)
    }
}

/// The UART model.
pub type Uart = Serial<IrqLine, NoEvents, ConsoleOut>;

/// Where the guest's console output goes: the user's sink, and the watcher.
pub struct ConsoleOut {
    sink: Box<dyn Write + Send>,
    /// What the console has shown so far.
    pub watch: ConsoleWatch,
}

impl ConsoleOut {
    /// Output to `sink`, times measured from `start` (VM creation).
    pub fn new(sink: Box<dyn Write + Send>, start: Instant) -> ConsoleOut {
        ConsoleOut { sink, watch: ConsoleWatch::new(start) }
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for b in buf {
            self.watch.push(*b);
        }
        // A closed output (say a pipe whose reader left) must not stop the guest: the watcher
        // still sees every byte, and the outcome is still reported.
        let _ = self.sink.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.sink.flush();
        Ok(())
    }
}

/// Lines kept for the end-of-run report.
const KEPT_LINES: usize = 40;

/// Reads the console stream line by line for the events that end or time a boot.
#[derive(Debug)]
pub struct ConsoleWatch {
    start: Instant,
    /// Time from VM creation to the first byte.
    pub first_byte: Option<Duration>,
    /// Time from VM creation to the first byte after the kernel's "Run /init as init process"
    /// line: init's first output (or the kernel's next message if one comes first).
    pub init_output: Option<Duration>,
    /// The kernel's "Run ... as init process" line has been seen.
    pub init_started: bool,
    /// The "Kernel panic - not syncing" line, and when it came.
    pub panic: Option<(String, Instant)>,
    /// The panic's "---[ end Kernel panic" line has been seen.
    pub panic_ended: bool,
    /// "reboot: Power down": the kernel's last words on a power-off.
    pub power_down: bool,
    /// "reboot: System halted": the last words of a halt, and of a power-off without ACPI.
    pub halted: bool,
    /// "reboot: Restarting system": the reset that follows is a reboot, not a crash.
    pub restarting: bool,
    /// Bytes seen.
    pub bytes: u64,
    line: Vec<u8>,
    /// The last lines, for reports.
    pub last_lines: VecDeque<String>,
}

impl ConsoleWatch {
    /// A watcher timing from `start`.
    pub fn new(start: Instant) -> ConsoleWatch {
        ConsoleWatch {
            start,
            first_byte: None,
            init_output: None,
            init_started: false,
            panic: None,
            panic_ended: false,
            power_down: false,
            halted: false,
            restarting: false,
            bytes: 0,
            line: Vec::new(),
            last_lines: VecDeque::new(),
        }
    }

    /// One byte of console output.
    pub fn push(&mut self, b: u8) {
        self.bytes += 1;
        let now = self.start.elapsed();
        self.first_byte.get_or_insert(now);
        if self.init_started && self.init_output.is_none() {
            self.init_output = Some(now);
        }
        match b {
            b'\n' => {
                let line = String::from_utf8_lossy(&self.line).trim_end_matches('\r').to_string();
                self.line.clear();
                self.on_line(line);
            }
            _ if self.line.len() < 4096 => self.line.push(b),
            _ => {}
        }
    }

    fn on_line(&mut self, line: String) {
        if let Some(i) = line.find("Kernel panic - not syncing") {
            if self.panic.is_none() {
                self.panic = Some((line[i..].to_string(), Instant::now()));
            }
        }
        if line.contains("---[ end Kernel panic") {
            self.panic_ended = true;
        }
        if line.contains("reboot: Power down") {
            self.power_down = true;
        }
        if line.contains("reboot: System halted") {
            self.halted = true;
        }
        if line.contains("reboot: Restarting system") {
            self.restarting = true;
        }
        // Linux's kernel_init: pr_info("Run %s as init process\n", ...).
        if line.contains("Run ") && line.ends_with(" as init process") {
            self.init_started = true;
        }
        if self.last_lines.len() == KEPT_LINES {
            self.last_lines.pop_front();
        }
        self.last_lines.push_back(line);
    }
}

/// A UART on COM1 raising `irq`, writing to `out`.
pub fn uart(irq: EventFd, out: ConsoleOut) -> Uart {
    Serial::new(IrqLine(irq), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(w: &mut ConsoleWatch, s: &str) {
        s.bytes().for_each(|b| w.push(b));
    }

    #[test]
    fn console_watch_sees_panic_init_and_power_down() {
        let mut w = ConsoleWatch::new(Instant::now());
        assert!(w.first_byte.is_none());
        feed(&mut w, "[    0.1] Linux version 6.1\r\n[    0.9] Run /init as init process\r\n");
        assert!(w.first_byte.is_some() && w.init_started && w.init_output.is_none());
        feed(&mut w, "h");
        assert!(w.init_output.is_some());
        feed(&mut w, "ello\n[    1.2] Kernel panic - not syncing: Attempted to kill init!\n");
        assert_eq!(w.panic.as_ref().map(|p| p.0.as_str()), Some("Kernel panic - not syncing: Attempted to kill init!"));
        feed(&mut w, "---[ end Kernel panic - not syncing: Attempted to kill init! ]---\n");
        assert!(w.panic_ended);
        feed(&mut w, "[    2.0] reboot: Power down\n");
        assert!(w.power_down && !w.halted && !w.restarting);
        assert_eq!(w.last_lines.back().map(String::as_str), Some("[    2.0] reboot: Power down"));
    }

    #[test]
    fn console_out_writes_through_and_watches() {
        let mut out = ConsoleOut::new(Box::new(Vec::new()), Instant::now());
        out.write_all(b"reboot: Restarting system\n").unwrap();
        assert!(out.watch.restarting);
        assert_eq!(out.watch.bytes, 26);
    }
}
