//! A sandbox: one program in one VM, and the run loop — the whole trap path in one place.
//!
//! ```text
//! guest `syscall` ──► LSTAR (PVM: user trampoline stores to the doorbell → MMIO exit;
//!                            hardware: CPL0 stub `out` → I/O exit)
//! guest exception ──► IDT → CPL0 stub `out 0x80+vector` → I/O exit
//!        │
//!        ▼
//! Machine::run ─► vm::exit::classify ─► Exit::{Syscall, Exception, Interrupted, ...}
//!        │
//!        ▼  (this file)
//! Trap::{Syscall, Fault, Breakpoint, Timeout, HostSignal}
//!        │
//!        ▼
//! TrapHandler::on_trap(&mut KvmGuest, &Trap) ─► Action (Passthrough forwards through
//!        │                                      Process::syscall: checks, emulation, host call)
//!        ▼
//! apply: RAX/RIP/RFLAGS through sync regs (syscall) or the interrupt frame (exception)
//!        ─► guest resumes
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::process::fds::{self, FdGuard};
use crate::process::loader::{self, LoadError};
use crate::process::sigdeliver::Interrupted;
use crate::process::symbols::Symbols;
use crate::process::{signals, Process};
use crate::trap::{
    signal_name, Action, Fault, Guest, GuestAddr, MemError, Outcome, Regs, Start, Syscall, Trap, TrapHandler,
};
use crate::vm::{self, Exit, Machine, ResumeFrom, TrapPath, VmError};

/// Errors that stop a sandbox from being built or from running.
#[derive(Debug, Error)]
pub enum SandboxError {
    /// The VM could not be created or run.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The program could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// trapbox could not duplicate its stderr for its own messages.
    #[error("cannot set up trapbox's diagnostic stream: {0}")]
    Diag(std::io::Error),
    /// KVM reported an exit trapbox does not handle (invariant 6: never dropped silently).
    #[error("unexpected VM exit {exit:?} at rip {rip:#x}")]
    UnexpectedExit {
        /// The exit.
        exit: vm::RawExit,
        /// Guest RIP.
        rip: u64,
    },
    /// The guest already exited or was killed; there is nothing to run.
    #[error("the guest has already ended")]
    Ended,
    /// trapbox's own ring-0 code faulted (a trapbox bug, reported instead of hidden).
    #[error("exception {vector} in trapbox's ring-0 code at {rip:#x}")]
    RingZeroFault {
        /// Vector.
        vector: u8,
        /// Where.
        rip: u64,
    },
}

/// How a run ended, with the counts that explain its cost.
#[derive(Clone, Debug)]
pub struct Report {
    /// The guest's end.
    pub outcome: Outcome,
    /// VM exits taken.
    pub exits: u64,
    /// Syscall traps.
    pub syscalls: u64,
    /// The trap path used.
    pub trap_path: TrapPath,
    /// For a crash: `rip 0x401136 <main+0x16>`.
    pub crash_site: Option<String>,
}

impl Report {
    /// One line for a guest killed by a signal, as trapbox prints it on stderr.
    pub fn crash_line(&self) -> Option<String> {
        let Outcome::Killed { signal, fault } = &self.outcome else { return None };
        let name = signal_name(*signal);
        let mut line = format!("guest killed by {name}");
        if let Some(f) = fault {
            line.push_str(&format!(": {}", f.describe()));
        }
        if let Some(site) = &self.crash_site {
            line.push_str(&format!(", {site}"));
        }
        Some(line)
    }
}

/// Builds a [`Sandbox`].
#[derive(Clone, Debug)]
pub struct SandboxBuilder {
    program: PathBuf,
    argv: Vec<OsString>,
    envp: Vec<OsString>,
    timeout: Option<Duration>,
    memory_limit: Option<u64>,
    trap_path: Option<TrapPath>,
    placement: loader::Placement,
    vdso: bool,
}

impl SandboxBuilder {
    /// Whether the guest gets the host's vDSO (default: yes), so time calls need no exit. Off
    /// for record/replay: the vDSO reads time from memory the kernel updates, which neither a
    /// trap nor a trace can capture.
    pub fn vdso(mut self, on: bool) -> Self {
        self.vdso = on;
        self
    }

    /// Imposes where the loader puts the images and the stack, and the stack's contents (a
    /// replay reproduces the recorded layout this way).
    pub fn placement(mut self, p: loader::Placement) -> Self {
        self.placement = p;
        self
    }

    /// Arguments, including argv[0].
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.argv = args.into_iter().map(Into::into).collect();
        self
    }

    /// Environment (`KEY=VALUE`); the default is trapbox's own.
    pub fn env<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, env: I) -> Self {
        self.envp = env.into_iter().map(Into::into).collect();
        self
    }

    /// Ends the guest (Outcome::TimedOut) when it runs longer than `t`.
    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }

    /// Caps accessible guest memory: mmap, brk and mprotect beyond it fail with ENOMEM.
    pub fn memory_limit(mut self, bytes: Option<u64>) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Forces a trap path instead of detecting it.
    pub fn trap_path(mut self, p: TrapPath) -> Self {
        self.trap_path = Some(p);
        self
    }

    /// Creates the VM and loads the program.
    pub fn build(self) -> Result<Sandbox, SandboxError> {
        let inherited = fds::open_fds();
        let base = fds::private_fd_base();
        let path = self.trap_path.unwrap_or_else(TrapPath::detect);
        let mut machine = Machine::new(path, base)?;
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on stderr only creates a new descriptor.
        let diag_fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, base) };
        if diag_fd < 0 {
            return Err(SandboxError::Diag(std::io::Error::last_os_error()));
        }
        // SAFETY: diag_fd is a fresh descriptor owned by nothing else.
        let diag = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(diag_fd) };
        let mut process = Process::new(FdGuard::from_difference(&inherited, base), diag);
        process.signals = signals::inherited();
        process.memory_limit = self.memory_limit;
        let argv = if self.argv.is_empty() { vec![self.program.clone().into_os_string()] } else { self.argv };
        let vdso = if self.vdso { machine.share_vdso()? } else { None };
        process.vdso = vdso;
        let facts = loader::MachineFacts { hwcap: machine.hwcap(), vdso };
        let loaded = loader::load(
            &mut machine.mem,
            &mut process.aspace,
            &self.program,
            &argv,
            &self.envp,
            facts,
            &self.placement,
        )?;
        process.exe = std::fs::canonicalize(&loaded.exe.path).unwrap_or_else(|_| loaded.exe.path.clone());
        process.brk = loaded.brk_start;
        process.brk_start = loaded.brk_start;
        process.brk_limit = loaded.brk_limit;
        let mut images = vec![&loaded.exe];
        images.extend(loaded.interp.as_ref());
        process.symbols = Symbols::load(&images);
        machine.set_entry(loaded.entry, loaded.sp);
        let start = Start {
            program: loaded.exec_path.clone(),
            argv: loaded.argv.clone(),
            envp: self.envp.clone(),
            env_count: self.envp.len(),
            envp_addr: loaded.envp_addr,
            placement: loaded.placement.clone(),
        };
        Ok(Sandbox {
            machine,
            process,
            timeout: self.timeout,
            exe: loaded.exe.path.clone(),
            start,
            started: false,
            ended: false,
            pending: None,
        })
    }
}

/// A trap a handler stopped at (Action::Stop) and has not answered: the next run delivers it
/// again before the guest continues.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Syscall,
    Exception(u8),
}

/// One program loaded in one VM.
pub struct Sandbox {
    machine: Machine,
    process: Process,
    timeout: Option<Duration>,
    exe: PathBuf,
    start: Start,
    started: bool,
    ended: bool,
    pending: Option<Pending>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Guest memory is part of trapbox's own address space: give it back, so that another
        // sandbox (another ET_EXEC image at the same fixed address) can be built afterwards.
        self.process.release(&mut self.machine);
    }
}

/// Set by trapbox's SIGINT/SIGTERM/SIGHUP handler.
static HOST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_host_signal(sig: libc::c_int) {
    HOST_SIGNAL.store(sig, Ordering::SeqCst);
    vm::vcpu::kick_from_signal_handler();
}

extern "C" fn on_kick(_: libc::c_int) {
    vm::vcpu::kick_from_signal_handler();
}

fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 2
}

fn kick_vcpu() {
    vm::vcpu::kick_from_signal_handler();
}

fn install_handlers() {
    signals::set_host_hooks(on_host_signal, kick_vcpu);
    for (sig, h) in [
        (libc::SIGINT, on_host_signal as extern "C" fn(libc::c_int)),
        (libc::SIGTERM, on_host_signal),
        (libc::SIGHUP, on_host_signal),
        (kick_signal(), on_kick),
    ] {
        // SAFETY: the handlers only store to atomics (async-signal-safe); no SA_RESTART, so a
        // blocking host call made for the guest returns EINTR and the loop notices.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = h as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Ends the guest from another thread when the time limit passes.
struct Watchdog {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(timeout: Option<Duration>) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = timeout.map(|t| {
            // SAFETY: pthread_self has no preconditions.
            let target = unsafe { libc::pthread_self() };
            let (done, fired) = (done.clone(), fired.clone());
            std::thread::spawn(move || {
                block_host_signals();
                let deadline = std::time::Instant::now() + t;
                while !done.load(Ordering::SeqCst) {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        fired.store(true, Ordering::SeqCst);
                        // Keep kicking until the run loop notices: a kick that lands between
                        // two KVM_RUNs is absorbed by immediate_exit, but be certain.
                        while !done.load(Ordering::SeqCst) {
                            // SAFETY: target is the run loop's thread, alive until `done`.
                            unsafe { libc::pthread_kill(target, kick_signal()) };
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        return;
                    }
                    std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
                }
            })
        });
        Watchdog { done, fired, thread }
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn block_host_signals() {
    signals::block_all_in_helper_thread();
}

/// The guest as handlers see it, backed by the KVM machine.
struct KvmGuest<'a> {
    m: &'a mut Machine,
    p: &'a mut Process,
    regs: Regs,
    dirty: bool,
    /// The passthrough replaced the user context (execve, a child's new stack, a signal
    /// handler's entry): resume with every register as given, RCX and R11 included.
    replaced: bool,
    /// What the guest was doing at this trap (for a signal frame).
    why: Interrupted,
}

impl<'a> KvmGuest<'a> {
    fn new(m: &'a mut Machine, p: &'a mut Process, regs: Regs) -> Self {
        KvmGuest { m, p, regs, dirty: false, replaced: false, why: Interrupted::Running }
    }
}

impl Guest for KvmGuest<'_> {
    fn regs(&self) -> Regs {
        self.regs
    }
    fn set_regs(&mut self, regs: &Regs) {
        self.regs = *regs;
        self.dirty = true;
    }
    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.p.aspace.read(addr, buf)
    }
    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), MemError> {
        self.p.aspace.write(addr, data)
    }
    fn read_cstr(&self, addr: GuestAddr, max: usize) -> Result<Vec<u8>, MemError> {
        self.p.aspace.read_cstr(addr, max)
    }
    fn passthrough(&mut self, call: &Syscall) -> Action {
        let before = self.regs;
        let action = self.p.syscall(self.m, call, &mut self.regs);
        if self.regs != before {
            self.dirty = true;
            self.replaced = true;
        }
        action
    }
    fn symbolize(&self, addr: u64) -> Option<String> {
        self.p.symbols.lookup(addr)
    }
    fn exits(&self) -> u64 {
        self.m.exits()
    }
    fn read_runs(&self, addr: GuestAddr, len: u64) -> Vec<(u64, Vec<u8>)> {
        self.p.aspace.read_runs(addr.0, len)
    }
    fn mappings(&self) -> Vec<(u64, u64, i32)> {
        self.p.aspace.regions().map(|(s, r)| (s, r.end, r.prot)).collect()
    }
    fn patch_code(&mut self, addr: GuestAddr, bytes: &[u8]) -> Result<(), MemError> {
        self.p.patch_code(&mut self.m.mem, addr.0, bytes)
    }
    fn cpuid(&self, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        self.m.cpuid(leaf, subleaf)
    }
    fn raise_signal(&mut self, sig: i32, siginfo: &[u8; 128]) -> Action {
        self.p.force_signal(sig, *siginfo);
        match self.p.deliver_signals(self.m, &mut self.regs, self.why) {
            Some(Action::Resume) => {
                self.dirty = true;
                self.replaced = true;
                Action::Resume
            }
            Some(a) => a,
            None => Action::Kill { signal: sig, fault: None },
        }
    }
}

fn user_regs(k: &kvm_bindings::kvm_regs) -> Regs {
    Regs {
        rax: k.rax,
        rbx: k.rbx,
        rcx: k.rcx,
        rdx: k.rdx,
        rsi: k.rsi,
        rdi: k.rdi,
        rbp: k.rbp,
        rsp: k.rsp,
        r8: k.r8,
        r9: k.r9,
        r10: k.r10,
        r11: k.r11,
        r12: k.r12,
        r13: k.r13,
        r14: k.r14,
        r15: k.r15,
        rip: k.rip,
        rflags: k.rflags,
    }
}

fn kvm_regs_of(r: &Regs) -> kvm_bindings::kvm_regs {
    let mut k = kvm_bindings::kvm_regs { rsp: r.rsp, rip: r.rip, rflags: r.rflags, ..Default::default() };
    store_gprs(&mut k, r);
    k
}

fn store_gprs(k: &mut kvm_bindings::kvm_regs, r: &Regs) {
    k.rax = r.rax;
    k.rbx = r.rbx;
    k.rcx = r.rcx;
    k.rdx = r.rdx;
    k.rsi = r.rsi;
    k.rdi = r.rdi;
    k.rbp = r.rbp;
    k.r8 = r.r8;
    k.r9 = r.r9;
    k.r10 = r.r10;
    k.r11 = r.r11;
    k.r12 = r.r12;
    k.r13 = r.r13;
    k.r14 = r.r14;
    k.r15 = r.r15;
}

/// Ends a forked copy of trapbox the way its guest ended, so the guest's parent sees the same
/// status from wait4 as it would natively: an exit code, or death by the same signal.
fn end_forked_child(outcome: &Outcome) -> ! {
    let signal = match outcome {
        Outcome::Exited(c) => {
            // SAFETY: _exit ends the process; the handler has flushed what it writes (on_end).
            unsafe { libc::_exit(*c & 0xff) }
        }
        Outcome::Killed { signal, .. } => *signal,
        Outcome::TimedOut => libc::SIGKILL,
        Outcome::Stopped => {
            // SAFETY: as above.
            unsafe { libc::_exit(125) }
        }
    };
    // SAFETY: the process ends here: no core file of trapbox's memory, the default action for
    // the signal, unblocked, then raised; _exit covers a signal whose default is to ignore.
    unsafe {
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
        libc::_exit(128 + signal)
    }
}

/// What the run loop does after a handler decided.
enum Next {
    Continue,
    End(Outcome),
}

fn end_of(action: &Action) -> Option<Outcome> {
    match action {
        Action::Exit(c) => Some(Outcome::Exited(*c)),
        Action::Kill { signal, fault } => Some(Outcome::Killed { signal: *signal, fault: fault.clone() }),
        Action::Stop | Action::ReturnAndStop(_) => Some(Outcome::Stopped),
        Action::Return(_) | Action::Resume => None,
    }
}

impl Sandbox {
    /// Starts describing a sandbox for `program` (found on $PATH if it has no slash).
    pub fn builder(program: impl AsRef<Path>) -> SandboxBuilder {
        SandboxBuilder {
            program: program.as_ref().to_path_buf(),
            argv: Vec::new(),
            envp: std::env::vars_os()
                .map(|(k, v)| {
                    let mut s = k;
                    s.push("=");
                    s.push(v);
                    s
                })
                .collect(),
            timeout: None,
            memory_limit: None,
            trap_path: None,
            placement: loader::Placement::default(),
            vdso: true,
        }
    }

    /// The trap path in use.
    pub fn trap_path(&self) -> TrapPath {
        self.machine.trap_path()
    }

    /// The program's path.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Runs the guest to its end (or until a handler stops it), handing every trap to
    /// `handler`. After an [`Outcome::Stopped`] the sandbox can be run again, with the same
    /// handler or another: the trap that was stopped at is delivered again first, then the
    /// guest continues. `on_start` is called on the first run only.
    pub fn run<H: TrapHandler>(&mut self, mut handler: H) -> Result<Report, SandboxError> {
        if self.ended {
            return Err(SandboxError::Ended);
        }
        install_handlers();
        signals::mirror_all(&self.process.signals);
        HOST_SIGNAL.store(0, Ordering::SeqCst);
        if !std::mem::replace(&mut self.started, true) {
            let regs = user_regs(self.machine.regs());
            let mut g = KvmGuest::new(&mut self.machine, &mut self.process, regs);
            handler.on_start(&mut g, &self.start);
        }
        let deadline = self.timeout.map(|t| std::time::Instant::now() + t);
        let mut watchdog = Watchdog::start(self.timeout);
        let mut generation = self.process.generation;
        let mut syscalls = 0u64;
        let mut crash_site = None;
        let mut redeliver = self.pending.take();
        let outcome = loop {
            if let Some(p) = redeliver.take() {
                let next = match p {
                    Pending::Syscall => self.on_syscall(&mut handler),
                    Pending::Exception(v) => self.on_exception(&mut handler, v, &mut crash_site)?,
                };
                if let Next::End(o) = next {
                    break o;
                }
                continue;
            }
            let host_sig = HOST_SIGNAL.swap(0, Ordering::SeqCst);
            let pending = if watchdog.fired() {
                Some(Trap::Timeout)
            } else if host_sig != 0 {
                Some(Trap::HostSignal(host_sig))
            } else {
                None
            };
            let next = match pending {
                Some(trap) => self.deliver_async(&mut handler, trap),
                None => match self.machine.run()? {
                    Exit::Syscall => {
                        syscalls += 1;
                        self.on_syscall(&mut handler)
                    }
                    Exit::Exception(v) => self.on_exception(&mut handler, v, &mut crash_site)?,
                    Exit::StrayMmio { gpa } => {
                        let rip = self.machine.regs().rip;
                        let f = Fault { vector: 14, error_code: 4, addr: Some(gpa), rip };
                        crash_site = Some(self.site(rip));
                        self.dispatch_fault(&mut handler, f)
                    }
                    Exit::Interrupted => self.on_interrupted(),
                    Exit::HostMemoryFault => self.on_host_memory_fault(&mut handler, &mut crash_site),
                    Exit::Unexpected(exit) => {
                        let rip = self.machine.regs().rip;
                        return Err(SandboxError::UnexpectedExit { exit, rip });
                    }
                },
            };
            if let Next::End(o) = next {
                break o;
            }
            if self.process.generation != generation {
                // A forked child has none of its parent's other threads: the watchdog's
                // handle names a thread that does not exist here. Start this process's own.
                generation = self.process.generation;
                std::mem::forget(std::mem::replace(
                    &mut watchdog,
                    Watchdog::start(deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()))),
                ));
            }
        };
        drop(watchdog);
        let outcome = match outcome {
            Outcome::Killed { signal: libc::SIGKILL, fault: None }
                if self.timeout.is_some() && HOST_SIGNAL.load(Ordering::SeqCst) == 0 =>
            {
                Outcome::TimedOut
            }
            o => o,
        };
        self.ended = outcome != Outcome::Stopped;
        let mut g = KvmGuest::new(&mut self.machine, &mut self.process, Regs::default());
        handler.on_end(&mut g, &outcome);
        if self.process.forked {
            end_forked_child(&outcome);
        }
        Ok(Report { outcome, exits: self.machine.exits(), syscalls, trap_path: self.machine.trap_path(), crash_site })
    }

    fn site(&self, rip: u64) -> String {
        match self.process.symbols.lookup(rip) {
            Some(s) => format!("rip {rip:#x} <{s}>"),
            None => format!("rip {rip:#x}"),
        }
    }

    /// A trap that did not come from the guest (timeout, trapbox's own signal).
    fn deliver_async<H: TrapHandler>(&mut self, handler: &mut H, trap: Trap) -> Next {
        let regs = user_regs(self.machine.regs());
        let mut g = KvmGuest::new(&mut self.machine, &mut self.process, regs);
        let action = handler.on_trap(&mut g, &trap);
        match end_of(&action) {
            Some(o) => Next::End(o),
            None => Next::Continue,
        }
    }

    fn on_syscall<H: TrapHandler>(&mut self, handler: &mut H) -> Next {
        // At a syscall, RCX holds the return address and R11 the flags: that is the user's
        // RIP/RFLAGS as a handler should see them.
        let mut regs = user_regs(self.machine.regs());
        regs.rip = regs.rcx;
        regs.rflags = regs.r11;
        let call = Syscall::from_regs(&regs);
        let mut g = KvmGuest::new(&mut self.machine, &mut self.process, regs);
        let action = handler.on_trap(&mut g, &Trap::Syscall(call));
        let (mut regs, dirty, mut replaced) = (g.regs, g.dirty, g.replaced);
        if HOST_SIGNAL.load(Ordering::SeqCst) != 0 && matches!(action, Action::Return(r) if r == -(libc::EINTR as i64))
        {
            // The host call was interrupted by trapbox's own signal: let the loop end the run
            // instead of showing the guest an EINTR it did not cause. The guest re-executes
            // nothing: the loop ends before resuming it.
            return Next::Continue;
        }
        match action {
            Action::Return(v) | Action::ReturnAndStop(v) => regs.rax = v as u64,
            Action::Resume => {}
            Action::Stop => {
                self.pending = Some(Pending::Syscall);
                return Next::End(Outcome::Stopped);
            }
            a => return Next::End(end_of(&a).expect("non-resuming action")),
        }
        if self.process.signals_waiting() {
            let why = Interrupted::Syscall { nr: call.nr, result: regs.rax as i64 };
            match self.process.deliver_signals(&mut self.machine, &mut regs, why) {
                Some(Action::Resume) => replaced = true,
                Some(a) => return Next::End(end_of(&a).unwrap_or(Outcome::Stopped)),
                None => {}
            }
        }
        if replaced {
            self.machine.resume_user(ResumeFrom::Syscall, &kvm_regs_of(&regs));
        } else {
            if dirty {
                store_gprs(self.machine.regs_mut(), &regs);
            }
            self.machine.finish_syscall(regs.rax, regs.rip, regs.rflags);
        }
        match action {
            Action::ReturnAndStop(_) => Next::End(Outcome::Stopped),
            _ => Next::Continue,
        }
    }

    /// A guest access whose page has no host memory behind it: a SIGBUS fault at the address
    /// the instruction used (decoded, since KVM does not say).
    fn on_host_memory_fault<H: TrapHandler>(&mut self, handler: &mut H, site: &mut Option<String>) -> Next {
        let regs = user_regs(self.machine.regs());
        let mut code = [0u8; 15];
        let n = self.process.aspace.read_runs(regs.rip, 15).first().map(|(_, b)| b.len()).unwrap_or(0);
        let _ = self.process.aspace.read(GuestAddr(regs.rip), &mut code[..n]);
        let fs = self.machine.fs_base().unwrap_or(0);
        let gs = self.machine.gs_base().unwrap_or(0);
        let addr = crate::process::insn::memory_operand_address(&code[..n], regs.rip, &regs, fs, gs);
        let f = Fault { vector: Fault::HOST_BUS_ERROR, error_code: 0, addr, rip: regs.rip };
        *site = Some(self.site(regs.rip));
        let mut g = KvmGuest::new(&mut self.machine, &mut self.process, regs);
        g.why = Interrupted::Fault(0, 0, addr.unwrap_or(0));
        let action = handler.on_trap(&mut g, &Trap::Fault(f));
        let (regs, replaced) = (g.regs, g.replaced);
        match action {
            Action::Resume if replaced => {
                self.machine.resume_user(ResumeFrom::Running, &kvm_regs_of(&regs));
                *site = None;
                Next::Continue
            }
            a => Next::End(end_of(&a).unwrap_or(Outcome::Killed { signal: libc::SIGBUS, fault: None })),
        }
    }

    /// A kick brought the vCPU out of user code: run the handlers of signals that arrived.
    fn on_interrupted(&mut self) -> Next {
        if !self.process.signals_waiting() || !self.machine.in_user_mode().unwrap_or(false) {
            return Next::Continue;
        }
        let mut regs = user_regs(self.machine.regs());
        match self.process.deliver_signals(&mut self.machine, &mut regs, Interrupted::Running) {
            Some(Action::Resume) => {
                self.machine.resume_user(ResumeFrom::Running, &kvm_regs_of(&regs));
                Next::Continue
            }
            Some(a) => Next::End(end_of(&a).unwrap_or(Outcome::Stopped)),
            None => Next::Continue,
        }
    }

    fn on_exception<H: TrapHandler>(
        &mut self,
        handler: &mut H,
        vector: u8,
        site: &mut Option<String>,
    ) -> Result<Next, SandboxError> {
        let frame = self.machine.exception_frame(vector);
        if frame.cs & 3 != 3 {
            return Err(SandboxError::RingZeroFault { vector, rip: frame.rip });
        }
        let mut regs = user_regs(self.machine.regs());
        regs.rip = frame.rip;
        regs.rsp = frame.rsp;
        regs.rflags = frame.rflags;
        let trap = match vector {
            3 => Trap::Breakpoint { rip: frame.rip },
            1 => Trap::SingleStep { rip: frame.rip },
            _ => {
                let addr = if vector == 14 { Some(self.machine.cr2()?) } else { None };
                let mut error_code = frame.error_code;
                if let Some(a) = addr.filter(|_| error_code & 1 == 0) {
                    // A PROT_NONE page has no entry, but it is mapped: Linux reports a
                    // protection fault (SEGV_ACCERR) there, and so does the error code here.
                    if self.process.aspace.region_at(a).is_some() {
                        error_code |= 1;
                    }
                }
                let f = Fault { vector, error_code, addr, rip: frame.rip };
                self.explain_legacy_syscall(&f);
                Trap::Fault(f)
            }
        };
        *site = Some(self.site(frame.rip));
        let cr2 = if let Trap::Fault(Fault { addr: Some(a), .. }) = &trap { *a } else { 0 };
        let mut g = KvmGuest::new(&mut self.machine, &mut self.process, regs);
        g.why = Interrupted::Fault(frame.error_code, vector as u64, cr2);
        let action = handler.on_trap(&mut g, &trap);
        let (regs, dirty, replaced) = (g.regs, g.dirty, g.replaced);
        if replaced && action == Action::Resume {
            self.machine.resume_user(ResumeFrom::Exception(vector), &kvm_regs_of(&regs));
            *site = None;
            return Ok(Next::Continue);
        }
        if action == Action::Stop {
            self.pending = Some(Pending::Exception(vector));
            return Ok(Next::End(Outcome::Stopped));
        }
        if let Some(o) = end_of(&action).filter(|_| !matches!(action, Action::ReturnAndStop(_))) {
            return Ok(Next::End(o));
        }
        if dirty {
            let k = self.machine.regs_mut();
            store_gprs(k, &regs);
        }
        if let Action::Return(v) | Action::ReturnAndStop(v) = action {
            self.machine.regs_mut().rax = v as u64;
        }
        self.machine.set_exception_return(vector, regs.rip, regs.rsp, regs.rflags);
        *site = None;
        Ok(if matches!(action, Action::ReturnAndStop(_)) { Next::End(Outcome::Stopped) } else { Next::Continue })
    }

    fn dispatch_fault<H: TrapHandler>(&mut self, handler: &mut H, f: Fault) -> Next {
        let regs = user_regs(self.machine.regs());
        let mut g = KvmGuest::new(&mut self.machine, &mut self.process, regs);
        let action = handler.on_trap(&mut g, &Trap::Fault(f));
        match end_of(&action) {
            Some(o) => Next::End(o),
            // A stray access to the doorbell page cannot be resumed meaningfully.
            None => Next::End(Outcome::Killed { signal: libc::SIGSEGV, fault: None }),
        }
    }

    /// `int 0x80` and `sysenter` are the 32-bit syscall ABI: say so instead of leaving the
    /// user with a bare SIGSEGV/SIGILL.
    fn explain_legacy_syscall(&mut self, f: &Fault) {
        let mut insn = [0u8; 2];
        if self.process.aspace.read(GuestAddr(f.rip), &mut insn).is_err() {
            return;
        }
        let what = match insn {
            [0xcd, 0x80] => "int 0x80",
            [0x0f, 0x34] => "sysenter",
            _ => return,
        };
        self.process.warn_once(
            "legacy-syscall",
            format_args!("{what} at {:#x}: the 32-bit syscall ABI is not supported (only `syscall`)", f.rip),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_name_known_and_unknown() {
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(40), "signal 40");
    }

    #[test]
    fn crash_line_mentions_signal_fault_and_site() {
        let r = Report {
            outcome: Outcome::Killed {
                signal: 11,
                fault: Some(Fault { vector: 14, error_code: 6, addr: Some(0), rip: 0x401000 }),
            },
            exits: 1,
            syscalls: 0,
            trap_path: TrapPath::Pvm,
            crash_site: Some("rip 0x401000 <main>".into()),
        };
        let l = r.crash_line().unwrap();
        assert!(l.starts_with("guest killed by SIGSEGV: page fault: write at 0x0"), "{l}");
        assert!(l.ends_with("rip 0x401000 <main>"), "{l}");
    }
}
