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
//!        │                                      Process::syscall_staged: checks, emulation, host call)
//!        ▼
//! apply: RAX/RIP/RFLAGS through sync regs (syscall) or the interrupt frame (exception)
//!        ─► guest resumes
//! ```

mod cpu;
mod guest;
pub mod harden;
mod host;
mod threads;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::fds::{self, FdGuard};
use crate::loader::{self, LoadError};
use crate::{signals, vdso, Process, ThreadState};
use trapbox_trap::{signal_name, CpuView, Outcome, Regs, Start, Trap, TrapHandler};
use trapbox_vm::{self as vm, Engine, Machine, TrapPath, VmError};

use cpu::{Next, Pending};
use guest::{Cpu, KvmGuest};
use host::{Watchdog, HOST_SIGNAL};
use threads::{Core, Shared, ThreadCtx};

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
    /// The address space for guest memory could not be reserved.
    #[error("cannot reserve the guest's part of the address space: {0}")]
    Arena(std::io::Error),
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
    /// What the box refused the guest in the whole run (its forked processes too), most
    /// frequent first.
    pub refusals: Vec<crate::refusals::Refused>,
    /// Syscall sites the in-process engine rewrote and still had rewritten at the end (of
    /// the first process).
    pub rewritten_sites: usize,
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

/// Which vDSO the guest gets (AT_SYSINFO_EHDR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VdsoMode {
    /// None: every time call is a syscall.
    None,
    /// The host's, shared read-only: time calls run without an exit (the default).
    Host,
    /// trapbox's own, whose time calls go to the host's vDSO and leave their results in a
    /// buffer for a recorder to drain ([`vdso`]). Falls back to no vDSO when the host's cannot
    /// be shared.
    Record,
    /// trapbox's own at the placement's recorded address, answering time calls from entries
    /// a replayer loads. No vDSO when the placement has none (a recording made without it).
    Replay,
}

/// Builds a [`Sandbox`].
#[derive(Clone, Debug)]
pub struct SandboxBuilder {
    program: PathBuf,
    argv: Vec<OsString>,
    envp: Vec<OsString>,
    timeout: Option<Duration>,
    memory_limit: Option<u64>,
    engine: Option<Engine>,
    placement: loader::Placement,
    vdso: VdsoMode,
    quiet: bool,
    /// The signals the guest starts with ignored; None: those trapbox itself was started
    /// with ignored (as a program inherits them across exec).
    ignored_signals: Option<u64>,
    /// Whether the in-process engine rewrites hot syscall sites.
    rewrite_syscalls: bool,
}

impl SandboxBuilder {
    /// Whether the guest gets the host's vDSO (default: yes), so time calls need no exit.
    pub fn vdso(mut self, on: bool) -> Self {
        self.vdso = if on { VdsoMode::Host } else { VdsoMode::None };
        self
    }

    /// Which vDSO the guest gets (see [`VdsoMode`]).
    pub fn vdso_mode(mut self, mode: VdsoMode) -> Self {
        self.vdso = mode;
        self
    }

    /// Imposes where the loader puts the images and the stack, and the stack's contents (a
    /// replay reproduces the recorded layout this way).
    pub fn placement(mut self, p: loader::Placement) -> Self {
        self.placement = p;
        self
    }

    /// Arguments, including `argv[0]`.
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

    /// No warnings on stderr (what the box refuses is still counted in the [`Report`]).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Forces a KVM trap path instead of detecting it.
    pub fn trap_path(mut self, p: TrapPath) -> Self {
        self.engine = Some(Engine::Kvm(p));
        self
    }

    /// Chooses the engine: KVM (the default, with the detected trap path) or trapbox's own
    /// process ([`Engine::InProcess`], not a sandbox).
    pub fn engine(mut self, e: Engine) -> Self {
        self.engine = Some(e);
        self
    }

    /// Whether the in-process engine rewrites hot syscall sites to reach trapbox without a
    /// signal (default: yes; see `trapbox_vm::inproc::rewrite`). A debugger, which shows the
    /// program's code and steps through it, and snapshots, which put code pages back, want
    /// the code as the program has it: off.
    pub fn rewrite_syscalls(mut self, on: bool) -> Self {
        self.rewrite_syscalls = on;
        self
    }

    /// Creates the VM and loads the program.
    pub fn build(self) -> Result<Sandbox, SandboxError> {
        // Until the guest's descriptors are told from trapbox's (FdGuard, below).
        let stock = fds::stocktaking();
        let inherited = fds::open_fds();
        let base = fds::private_fd_base();
        let engine = self.engine.unwrap_or_else(|| Engine::Kvm(TrapPath::detect()));
        let mut machine = Machine::new(engine, base)?;
        if engine == Engine::InProcess {
            trapbox_vm::inproc::rewrite::set_enabled(self.rewrite_syscalls);
        }
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on stderr only creates a new descriptor.
        let diag_fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, base) };
        if diag_fd < 0 {
            return Err(SandboxError::Diag(std::io::Error::last_os_error()));
        }
        // SAFETY: diag_fd is a fresh descriptor owned by nothing else.
        let diag = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(diag_fd) };
        let mut process = Process::new(FdGuard::from_difference(&inherited, base), diag);
        process.quiet = self.quiet;
        drop(stock);
        process.use_arena(crate::arena::Arena::reserve().map_err(SandboxError::Arena)?);
        // Before the guest runs (and before the KVM fds' numbers are lent to anything), with
        // everything trapbox needs already open.
        crate::snapshot::prepare_write_tracking();
        for (what, errno) in harden::harden().failed {
            let e = std::io::Error::from_raw_os_error(errno);
            process.warn_once(what, format_args!("defense in depth: {what} failed ({e}); running without it"));
        }
        process.unhardened_status = harden::status_before().to_vec();
        process.signals = match self.ignored_signals {
            Some(mask) => signals::with_ignored(mask),
            None => signals::inherited(),
        };
        process.memory_limit = self.memory_limit;
        let argv = if self.argv.is_empty() { vec![self.program.clone().into_os_string()] } else { self.argv };
        let host_vdso = match self.vdso {
            VdsoMode::Host | VdsoMode::Record => machine.share_vdso()?,
            VdsoMode::None | VdsoMode::Replay => None,
        };
        process.own_vdso = match self.vdso {
            VdsoMode::Record => host_vdso.and_then(vdso::host_functions).map(vdso::TimeMode::Record),
            // A recording made without trapbox's vDSO replays without it.
            VdsoMode::Replay => self.placement.vdso.map(|_| vdso::TimeMode::Replay),
            VdsoMode::None | VdsoMode::Host => None,
        };
        // A recorded guest never gets the host's vDSO itself: its time calls would go unseen.
        // (It is still shared: trapbox's own calls into it when recording.)
        process.vdso = host_vdso.filter(|_| self.vdso == VdsoMode::Host);
        let loaded = process.load_image(&mut machine, &self.program, &argv, &self.envp, &self.placement)?;
        machine.set_entry(loaded.entry, loaded.sp);
        let vcpu = machine.leave();
        let start = process.image.clone().unwrap_or_default();
        let path = machine.trap_path();
        let cpu_view = machine.cpu_view().clone();
        let mask = process.signals.mask;
        Ok(Sandbox {
            core: Arc::new(Core::new(Shared::new(machine, process))),
            main: ThreadCtx { vcpu, state: ThreadState::new_thread(mask, 0), exits: 0, kick: Default::default() },
            path,
            cpu_view,
            timeout: self.timeout,
            exe: loaded.exe.path.clone(),
            start,
            started: false,
            ended: false,
            pending: None,
        })
    }
}

/// One program loaded in one VM.
pub struct Sandbox {
    core: Arc<Core>,
    /// The first thread's own part.
    main: ThreadCtx,
    path: TrapPath,
    cpu_view: CpuView,
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
        let mut cpu = Cpu::lock(&self.core, &mut self.main);
        let Shared { machine, process, .. } = cpu.s();
        process.end(machine);
    }
}

/// Runs the process from the thread `ctx` (its first thread, or the only thread of a forked
/// child) until it ends: handles that thread's traps, the time limit and trapbox's own
/// signals, and a fork that leaves this thread in a new process. Every other thread has
/// stopped when it returns.
fn drive<H: TrapHandler + ?Sized>(
    core: &Arc<Core>,
    ctx: &mut ThreadCtx,
    handler: &mut H,
    pending: &mut Option<Pending>,
    crash_rip: &mut Option<u64>,
    redeliver: Option<Pending>,
) -> Result<Outcome, SandboxError> {
    let deadline = *core.deadline.lock().unwrap_or_else(|e| e.into_inner());
    let mut watchdog = Watchdog::start(deadline);
    let _kicks = ctx.kick.claim();
    let mut redeliver = redeliver;
    let mut generation = core.lock().process.generation;
    let outcome = loop {
        if let Some(p) = redeliver.take() {
            let mut cpu = Cpu::lock(core, ctx);
            let next = match p {
                Pending::Syscall => cpu::on_syscall(&mut cpu, handler, pending),
                Pending::Exception(v) => cpu::on_exception(&mut cpu, handler, v, crash_rip, pending)?,
            };
            if let Next::End(o) = next {
                break o;
            }
            continue;
        }
        if core.group.ending() {
            break core.group.outcome().unwrap_or(Outcome::Killed { signal: libc::SIGKILL, fault: None });
        }
        let host_sig = HOST_SIGNAL.swap(0, Ordering::SeqCst);
        let trap = if watchdog.fired() {
            Some(Trap::Timeout)
        } else if host_sig != 0 {
            Some(Trap::HostSignal(host_sig))
        } else {
            None
        };
        let next = match trap {
            Some(t) => cpu::deliver_async(&mut Cpu::lock(core, ctx), handler, t),
            None => cpu::step(core, ctx, handler, crash_rip, pending)?,
        };
        match next {
            Next::Continue => {}
            Next::End(o) => break o,
            Next::ThreadExit(code) => {
                // The first thread left with `exit`: the process lives while others do.
                handler.on_thread_exit(&mut KvmGuest::current(&mut Cpu::lock(core, ctx)));
                let last = core.group.wait_for_others();
                break core.group.outcome().unwrap_or(Outcome::Exited(if core.group.others() == 0 {
                    last
                } else {
                    code
                }));
            }
        }
        let g = core.lock().process.generation;
        if g != generation {
            // A forked child has none of its parent's other threads: the watchdog's and
            // the group's handles name threads that do not exist here.
            generation = g;
            std::mem::replace(&mut watchdog, Watchdog::start(deadline)).forget();
            core.forked_child();
        }
    };
    // Every other thread stops before the end is reported, and the host threads waiting for
    // a new guest thread end.
    core.group.end(outcome.clone());
    core.group.wait_for_others();
    core.lock().end_idle();
    drop(watchdog);
    Ok(outcome)
}

/// A guest thread other than the first forked: in the child process it is the only thread, so
/// it runs the process from here on, as the first thread does in [`Sandbox::run`], and ends
/// the process with its guest.
fn own_forked_process<H: TrapHandler + ?Sized>(core: &Arc<Core>, ctx: &mut ThreadCtx, handler: &mut H) -> ! {
    host::set_main_thread();
    core.forked_child();
    // SAFETY: pthread_self has no preconditions.
    core.group.set_main(unsafe { libc::pthread_self() });
    let (mut pending, mut crash_rip) = (None, None);
    let outcome = match drive(core, ctx, handler, &mut pending, &mut crash_rip, None) {
        Ok(o) => o,
        Err(e) => {
            let mut cpu = Cpu::lock(core, ctx);
            let _ = std::io::Write::write_all(&mut cpu.s().process.diag, format!("trapbox: {e}\n").as_bytes());
            Outcome::Killed { signal: libc::SIGKILL, fault: None }
        }
    };
    let mut cpu = Cpu::lock(core, ctx);
    let mut g = KvmGuest::new(&mut cpu, Regs::default());
    handler.on_end(&mut g, &outcome);
    drop(cpu);
    end_forked_child(&outcome)
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

impl Sandbox {
    /// A builder that reproduces a recorded start (a replay's): program, argv, environment,
    /// the images, stack and trapbox's vDSO at their recorded addresses with the recorded
    /// stack image, and a vDSO that replays time calls (none if `image` placed none).
    pub fn replaying(image: Start) -> SandboxBuilder {
        let mut b = Sandbox::builder(image.program)
            .args(image.argv)
            .env(image.envp)
            .placement(image.placement)
            .vdso_mode(VdsoMode::Replay);
        b.ignored_signals = image.ignored_signals;
        b
    }

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
            engine: None,
            placement: loader::Placement::default(),
            vdso: VdsoMode::Host,
            ignored_signals: None,
            quiet: false,
            rewrite_syscalls: true,
        }
    }

    /// The trap path in use.
    pub fn trap_path(&self) -> TrapPath {
        self.path
    }

    /// The CPU as the guest's user code sees it (measured when the VM was made).
    pub fn cpu_view(&self) -> &CpuView {
        &self.cpu_view
    }

    /// The program's path.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Runs the guest to its end (or until a handler stops it), handing every trap to
    /// `handler` — and, for each thread the guest creates, to the handler's
    /// [`TrapHandler::new_thread`]. After an [`Outcome::Stopped`] the sandbox can be run again,
    /// with the same handler or another: the trap that was stopped at is delivered again
    /// first, then the guest continues. `on_start` is called on the first run only.
    pub fn run<H: TrapHandler>(&mut self, mut handler: H) -> Result<Report, SandboxError> {
        if self.ended {
            return Err(SandboxError::Ended);
        }
        host::install_handlers();
        HOST_SIGNAL.store(0, Ordering::SeqCst);
        if let Some(v) = self.main.vcpu.as_mut() {
            v.claim_kicks();
        }
        // SAFETY: pthread_self has no preconditions.
        self.core.group.set_main(unsafe { libc::pthread_self() });
        let core = self.core.clone();
        // Kicks reach this thread from the moment a handler can get a kicker (on_start), not
        // only once the loop runs: a kick in between makes the first entry a preemption.
        let _kicks = self.main.kick.claim();
        {
            let mut cpu = Cpu::lock(&core, &mut self.main);
            signals::mirror_all(&cpu.s().process.signals);
            if !std::mem::replace(&mut self.started, true) {
                let mut g = KvmGuest::current(&mut cpu);
                handler.on_start(&mut g, &self.start);
            }
        }
        let deadline = self.timeout.map(|t| Instant::now() + t);
        *core.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
        let mut crash_rip = None;
        let redeliver = self.pending.take();
        let outcome = drive(&core, &mut self.main, &mut handler, &mut self.pending, &mut crash_rip, redeliver)?;
        let outcome = match outcome {
            Outcome::Killed { signal: libc::SIGKILL, fault: None }
                if self.timeout.is_some() && HOST_SIGNAL.load(Ordering::SeqCst) == 0 =>
            {
                Outcome::TimedOut
            }
            o => o,
        };
        self.ended = outcome != Outcome::Stopped;
        if !self.ended {
            core.group.reset_after_fork();
        }
        let mut cpu = Cpu::lock(&core, &mut self.main);
        let forked = cpu.s().process.forked;
        let exits = cpu.s().machine.exits();
        let syscalls = core.syscalls.load(Ordering::SeqCst);
        let crash_site =
            crash_rip.filter(|_| matches!(outcome, Outcome::Killed { .. })).map(|rip| cpu::site(&cpu, rip));
        let refusals = cpu.s().process.refusals.as_ref().map(|r| r.summary()).unwrap_or_default();
        let mut g = KvmGuest::new(&mut cpu, Regs::default());
        handler.on_end(&mut g, &outcome);
        drop(cpu);
        if forked {
            end_forked_child(&outcome);
        }
        let rewritten_sites = trapbox_vm::inproc::rewrite::rewritten();
        Ok(Report { outcome, exits, syscalls, trap_path: self.path, crash_site, refusals, rewritten_sites })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trapbox_trap::Fault;

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
            refusals: Vec::new(),
            rewritten_sites: 0,
        };
        let l = r.crash_line().unwrap();
        assert!(l.starts_with("guest killed by SIGSEGV: page fault: write at 0x0"), "{l}");
        assert!(l.ends_with("rip 0x401000 <main>"), "{l}");
    }
}
