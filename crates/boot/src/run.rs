//! One boot from start to end: plan and refuse, create the VM, load, run one thread per vCPU,
//! feed the console, watch for the end, stop every vCPU, report.
//!
//! ```text
//! plan (loader::plan)          every limit checked before KVM is touched → LoadError (refusal)
//! PVM? (vm::TrapPath::detect)  refused unless allow_slow → Error::SlowKvm
//! BootVm::new + loader::load   RAM, irqchip, PIT, vCPUs; kernel, zero page, cmdline, initrd, MP table
//! scoped threads               vCPU i: KVM_RUN → port I/O to IoBus (serial, i8042) → events
//!                              input:  stdin → UART receive FIFO (Ctrl-A x ends the VM)
//! supervise (this thread)      events + ConsoleWatch → Outcome (reset, power-off line, panic
//!                              line, triple fault, silence, timeout)
//! stop                         flag + kick signal until every vCPU thread has left KVM_RUN
//! ```

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_ioctls::{VcpuExit, VcpuFd};
use thiserror::Error;
use vmm_sys_util::eventfd::EventFd;

use super::devices::{BusEvent, IoBus};
use super::diagnose::{FaultReport, Outcome, ResetPath};
use super::host::{self, ThreadId};
use super::loader::{self, LoadError, Plan};
use super::serial::{self, ConsoleOut, COM1_IRQ};
use super::vm::{BootVm, VmError};
use super::{mptable, BootError};
use trapbox_vm::TrapPath;

/// What to boot with.
#[derive(Clone, Debug)]
pub struct BootConfig {
    /// The kernel command line, complete.
    pub cmdline: String,
    /// RAM in bytes.
    pub mem_size: u64,
    /// vCPUs (1..=mptable::MAX_CPUS).
    pub cpus: u8,
    /// End the boot if the console stays silent this long from VM creation.
    pub silence_timeout: Option<Duration>,
    /// End the boot after this long.
    pub timeout: Option<Duration>,
    /// Run even on PVM, whose emulated ring 0 makes a real kernel take hours.
    pub allow_slow: bool,
    /// After a panic line, how long to wait for the rest of the panic report.
    pub panic_grace: Duration,
}

impl Default for BootConfig {
    fn default() -> BootConfig {
        BootConfig {
            cmdline: default_cmdline(),
            mem_size: 256 << 20,
            cpus: 1,
            silence_timeout: Some(Duration::from_secs(30)),
            timeout: None,
            allow_slow: false,
            panic_grace: Duration::from_secs(2),
        }
    }
}

/// The command line trapbox starts from: the console on COM1; reboot through the i8042 (the VM
/// has no ACPI); reboot at once on a panic; no PCI bus to probe; an i8042 with no keyboard or
/// mouse behind it, found without PnP (there is no ACPI to list it).
pub fn default_cmdline() -> String {
    "console=ttyS0 reboot=k panic=-1 pci=off i8042.nokbd i8042.noaux i8042.nomux i8042.nopnp".to_string()
}

/// Where the guest's console input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleInput {
    /// No input.
    None,
    /// A descriptor (stdin); with `escape`, Ctrl-A x ends the VM and Ctrl-A Ctrl-A sends one
    /// Ctrl-A (as in QEMU), for a terminal in raw mode.
    Fd {
        /// The descriptor.
        fd: RawFd,
        /// Whether Ctrl-A is an escape.
        escape: bool,
    },
}

/// VM exits that reached trapbox, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Port I/O (serial, i8042, absent ports).
    pub io: u64,
    /// MMIO to addresses with no device.
    pub mmio: u64,
    /// Anything else (signals, shutdown, ...).
    pub other: u64,
}

impl ExitCounts {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.io + self.mmio + self.other
    }
}

/// What a boot did.
#[derive(Debug)]
pub struct BootReport {
    /// How it ended.
    pub outcome: Outcome,
    /// The addresses it used.
    pub plan: Plan,
    /// VM creation → first console byte.
    pub first_output: Option<Duration>,
    /// VM creation → first byte after "Run /init as init process" (init's first output).
    pub init_output: Option<Duration>,
    /// VM creation → end.
    pub elapsed: Duration,
    /// Exits handled by trapbox.
    pub exits: ExitCounts,
    /// Every exit of this VM, KVM's in-kernel ones included, when debugfs shows them
    /// (/sys/kernel/debug/kvm/PID-FD/exits).
    pub kvm_exits: Option<u64>,
    /// The console's last lines.
    pub last_lines: Vec<String>,
    /// Accesses to ports without a device.
    pub absent_ports: BTreeMap<u16, u64>,
}

/// Why a vCPU stopped running.
#[derive(Debug, Error)]
pub enum VcpuStop {
    /// KVM_RUN failed.
    #[error("KVM_RUN failed: {0}")]
    Run(kvm_ioctls::Error),
    /// The CPU state was refused at entry.
    #[error("KVM could not enter the guest (hardware entry failure reason {0:#x})")]
    FailEntry(u64),
    /// KVM's emulator gave up.
    #[error("KVM internal error (its instruction emulator could not go on)")]
    InternalError,
    /// An exit this VM has no use for.
    #[error("unexpected KVM exit reason {0}")]
    Unexpected(u32),
}

/// Why a boot could not run or went wrong on trapbox's side.
#[derive(Debug, Error)]
pub enum Error {
    /// Loading refused or failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The vCPU count is out of range.
    #[error("--cpus {0}: between 1 and {max} vCPUs are supported (the MP table's room)", max = mptable::MAX_CPUS)]
    Cpus(u8),
    /// This KVM is PVM.
    #[error("this KVM is PVM (kvm_pvm), which emulates guest ring-0 code at ~700 ns an instruction: a Linux kernel would take hours to boot here, so trapbox does not start it. Boot on hardware KVM (Intel VMX / AMD SVM), or pass --allow-slow to run anyway (fine for tiny test kernels)")]
    SlowKvm,
    /// The VM could not be set up.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The serial interrupt could not be wired.
    #[error("cannot wire the serial interrupt: {0}")]
    Irq(std::io::Error),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// A vCPU failed.
    #[error("vCPU {0}: {1}")]
    Vcpu(u8, VcpuStop),
}

impl Error {
    /// Whether the kernel was refused before it ran (its image, the limits it sets, or the kind
    /// of KVM), as opposed to a failure of trapbox or KVM.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Cpus(_)
                | Error::SlowKvm
                | Error::Load(
                    LoadError::Image(_)
                        | LoadError::MemoryTooSmall { .. }
                        | LoadError::InitrdTooLarge { .. }
                        | LoadError::Cmdline(..)
                )
        )
    }
}

impl From<BootError> for Error {
    fn from(e: BootError) -> Error {
        Error::Load(e.into())
    }
}

/// What a vCPU thread tells the supervisor.
enum Event {
    Reset,
    Shutdown(FaultReport),
    KvmSystem(u32),
    Failed(u8, VcpuStop),
    UserQuit,
}

struct Shared {
    bus: Mutex<IoBus>,
    stop: AtomicBool,
    io: AtomicU64,
    mmio: AtomicU64,
    other: AtomicU64,
    threads: Mutex<Vec<Option<ThreadId>>>,
}

impl Shared {
    fn bus(&self) -> MutexGuard<'_, IoBus> {
        // A vCPU thread that panicked while holding the bus leaves it usable for reporting.
        self.bus.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Boots `kernel` (a whole bzImage file) with `initrd`, the console going to `out` and coming
/// from `input`.
pub fn boot(
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cfg: &BootConfig,
    out: Box<dyn Write + Send>,
    input: ConsoleInput,
) -> Result<BootReport, Error> {
    if cfg.cpus == 0 || cfg.cpus > mptable::MAX_CPUS {
        return Err(Error::Cpus(cfg.cpus));
    }
    let plan = loader::plan(kernel, initrd.map(|i| i.len() as u64), &cfg.cmdline, cfg.mem_size, cfg.cpus)?;
    if TrapPath::detect() == TrapPath::Pvm && !cfg.allow_slow {
        return Err(Error::SlowKvm);
    }
    host::install_kick_handler().map_err(Error::Thread)?;

    let start = Instant::now();
    let mut vm = BootVm::new(cfg.mem_size, cfg.cpus)?;
    loader::load(&mut vm, &plan, kernel, initrd)?;
    let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::Irq)?;
    vm.vm.register_irqfd(&irq, COM1_IRQ).map_err(|e| Error::Irq(std::io::Error::from_raw_os_error(e.errno())))?;
    let shared = Shared {
        bus: Mutex::new(IoBus::new(serial::uart(irq, ConsoleOut::new(out, start)))),
        stop: AtomicBool::new(false),
        io: AtomicU64::new(0),
        mmio: AtomicU64::new(0),
        other: AtomicU64::new(0),
        threads: Mutex::new(vec![None; cfg.cpus as usize]),
    };
    let vm_fd = vm.vm.as_raw_fd();
    let (tx, rx) = mpsc::channel();

    let outcome = std::thread::scope(|s| -> Result<Outcome, Error> {
        let mut handles = Vec::new();
        for (id, vcpu) in vm.vcpus.iter_mut().enumerate() {
            let (tx, shared) = (tx.clone(), &shared);
            let h = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn_scoped(s, move || vcpu_loop(id as u8, vcpu, shared, tx))
                .map_err(Error::Thread)?;
            handles.push(h);
        }
        if let ConsoleInput::Fd { fd, escape } = input {
            let (tx, shared) = (tx.clone(), &shared);
            std::thread::Builder::new()
                .name("console-in".into())
                .spawn_scoped(s, move || input_loop(fd, escape, shared, tx))
                .map_err(Error::Thread)?;
        }
        let outcome = supervise(&shared, &rx, cfg, start);
        shared.stop.store(true, Ordering::SeqCst);
        // A vCPU may be inside KVM_RUN (halted, or running guest code): kick it until it has
        // seen the flag. Each thread recorded its id before its first KVM_RUN.
        while !handles.iter().all(|h| h.is_finished()) {
            for t in shared.threads.lock().unwrap_or_else(|p| p.into_inner()).iter().flatten() {
                host::kick(*t);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        outcome
    })?;
    let elapsed = start.elapsed();
    let kvm_exits = debugfs_stat(vm_fd, "exits");
    let bus = shared.bus();
    let w = &bus.uart.writer().watch;
    Ok(BootReport {
        outcome,
        plan,
        first_output: w.first_byte,
        init_output: w.init_output,
        elapsed,
        exits: ExitCounts {
            io: shared.io.load(Ordering::Relaxed),
            mmio: shared.mmio.load(Ordering::Relaxed),
            other: shared.other.load(Ordering::Relaxed),
        },
        kvm_exits,
        last_lines: w.last_lines.iter().cloned().collect(),
        absent_ports: bus.absent.clone(),
    })
}

fn vcpu_loop(id: u8, vcpu: &mut VcpuFd, sh: &Shared, tx: Sender<Event>) {
    sh.threads.lock().unwrap_or_else(|p| p.into_inner())[id as usize] = Some(ThreadId::current());
    let mut last_rip = None;
    while !sh.stop.load(Ordering::SeqCst) {
        let (event, counted) = match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                sh.io.fetch_add(1, Ordering::Relaxed);
                (sh.bus().write(port, data).map(|BusEvent::Reset| Event::Reset), true)
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                sh.io.fetch_add(1, Ordering::Relaxed);
                sh.bus().read(port, data);
                (None, true)
            }
            Ok(VcpuExit::MmioRead(_, data)) => {
                sh.mmio.fetch_add(1, Ordering::Relaxed);
                data.fill(0xff);
                (None, true)
            }
            Ok(VcpuExit::MmioWrite(..)) => {
                sh.mmio.fetch_add(1, Ordering::Relaxed);
                (None, true)
            }
            // With KVM's local APIC a halt stays in the kernel; if one comes out, resume.
            Ok(VcpuExit::Hlt) | Ok(VcpuExit::Intr) => (None, false),
            Ok(VcpuExit::Shutdown) => (Some(Event::Shutdown(fault_report(id, vcpu, last_rip))), false),
            Ok(VcpuExit::SystemEvent(kind, _)) => (Some(Event::KvmSystem(kind)), false),
            Ok(VcpuExit::FailEntry(reason, _)) => (Some(Event::Failed(id, VcpuStop::FailEntry(reason))), false),
            Ok(VcpuExit::InternalError) => (Some(Event::Failed(id, VcpuStop::InternalError)), false),
            Ok(_) => {
                let reason = vcpu.get_kvm_run().exit_reason;
                (Some(Event::Failed(id, VcpuStop::Unexpected(reason))), false)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                (None, false)
            }
            Err(e) => (Some(Event::Failed(id, VcpuStop::Run(e))), false),
        };
        if !counted {
            sh.other.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(ev) = event {
            let _ = tx.send(ev);
            return;
        }
        last_rip = Some(vcpu.sync_regs().regs.rip);
    }
}

fn fault_report(id: u8, vcpu: &VcpuFd, last_exit_rip: Option<u64>) -> FaultReport {
    let regs = vcpu.get_regs().ok().map(|r| [r.rip, r.rsp, r.rax, r.rflags]);
    let sregs = vcpu.get_sregs().ok().map(|s| [s.cr0, s.cr2, s.cr3, s.cr4, s.efer]);
    FaultReport { vcpu: id, regs, sregs, last_exit_rip }
}

fn supervise(sh: &Shared, rx: &mpsc::Receiver<Event>, cfg: &BootConfig, start: Instant) -> Result<Outcome, Error> {
    loop {
        let ev = match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => unreachable!("this thread's scope holds a sender"),
        };
        let bus = sh.bus();
        let w = &bus.uart.writer().watch;
        let panic = w.panic.as_ref().map(|p| Outcome::Panic(p.0.clone()));
        match ev {
            Some(Event::Reset) => return Ok(panic.unwrap_or(Outcome::Reset(ResetPath::I8042))),
            Some(Event::Shutdown(report)) => {
                return Ok(panic.unwrap_or(if w.restarting {
                    Outcome::Reset(ResetPath::TripleFault)
                } else {
                    Outcome::TripleFault(report)
                }))
            }
            Some(Event::KvmSystem(kind)) => {
                return Ok(panic.unwrap_or(if kind == kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN {
                    Outcome::PowerOff
                } else {
                    Outcome::Reset(ResetPath::SystemEvent)
                }))
            }
            Some(Event::Failed(id, why)) => return Err(Error::Vcpu(id, why)),
            Some(Event::UserQuit) => return Ok(Outcome::Interrupted),
            None => {}
        }
        if let Some((line, at)) = &w.panic {
            if w.panic_ended || at.elapsed() >= cfg.panic_grace {
                return Ok(Outcome::Panic(line.clone()));
            }
        }
        if w.power_down {
            return Ok(Outcome::PowerOff);
        }
        if w.halted {
            return Ok(Outcome::Halted);
        }
        let now = start.elapsed();
        if let Some(t) = cfg.silence_timeout {
            if w.first_byte.is_none() && now >= t {
                return Ok(Outcome::Silent(t.as_secs_f64()));
            }
        }
        if let Some(t) = cfg.timeout {
            if now >= t {
                return Ok(Outcome::TimedOut(t.as_secs_f64()));
            }
        }
    }
}

/// Console input with the escape applied: the bytes for the guest, and whether the user asked
/// to end the VM. `pending_escape` carries a Ctrl-A across reads.
pub fn apply_escape(input: &[u8], pending_escape: &mut bool) -> (Vec<u8>, bool) {
    const CTRL_A: u8 = 0x01;
    let mut out = Vec::with_capacity(input.len());
    for &b in input {
        if *pending_escape {
            *pending_escape = false;
            match b {
                b'x' | b'X' => return (out, true),
                CTRL_A => out.push(CTRL_A),
                _ => out.extend([CTRL_A, b]),
            }
        } else if b == CTRL_A {
            *pending_escape = true;
        } else {
            out.push(b);
        }
    }
    (out, false)
}

fn input_loop(fd: RawFd, escape: bool, sh: &Shared, tx: Sender<Event>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut ctrl_a = false;
    let mut eof = false;
    while !sh.stop.load(Ordering::SeqCst) {
        if !pending.is_empty() {
            // The UART's receive FIFO is small; what does not fit waits for the guest to read.
            if let Ok(n) = sh.bus().uart.enqueue_raw_bytes(&pending) {
                pending.drain(..n);
            }
        }
        if eof || pending.len() >= 4096 {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match host::poll_readable(fd, if pending.is_empty() { 50 } else { 10 }) {
            Ok(true) => {
                let mut buf = [0u8; 256];
                match host::read_fd(fd, &mut buf) {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => {
                        let (bytes, quit) =
                            if escape { apply_escape(&buf[..n], &mut ctrl_a) } else { (buf[..n].to_vec(), false) };
                        pending.extend(bytes);
                        if quit {
                            let _ = tx.send(Event::UserQuit);
                            return;
                        }
                    }
                }
            }
            Ok(false) => {}
            Err(_) => eof = true,
        }
    }
}

/// A counter of this process's VM `vm_fd` in KVM's debugfs, if mounted and readable.
fn debugfs_stat(vm_fd: RawFd, name: &str) -> Option<u64> {
    let path = format!("/sys/kernel/debug/kvm/{}-{}/{}", std::process::id(), vm_fd, name);
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_escape_quits_and_passes_ctrl_a() {
        let mut p = false;
        assert_eq!(apply_escape(b"ls\r", &mut p), (b"ls\r".to_vec(), false));
        assert_eq!(apply_escape(b"a\x01", &mut p), (b"a".to_vec(), false));
        assert!(p);
        assert_eq!(apply_escape(b"x", &mut p), (vec![], true));
        let mut p = false;
        assert_eq!(apply_escape(b"\x01\x01b\x01c", &mut p), (b"\x01b\x01c".to_vec(), false));
    }

    #[test]
    fn default_cmdline_has_the_console_and_an_acpi_free_reboot() {
        let c = default_cmdline();
        assert!(c.contains("console=ttyS0") && c.contains("reboot=k"));
    }
}
