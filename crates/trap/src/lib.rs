//! The trap API: what happened ([`Trap`]), what to do about it ([`Action`]), and who decides
//! ([`TrapHandler`]).
//!
//! Nothing here names an engine's type: an engine implements [`Guest`] (registers, checked
//! guest memory, host passthrough), and handlers see only that trait, so the KVM engine and
//! the in-process engine run the same handlers. What only some engines can do is a typed
//! capability a handler asks for ([`Guest::process`] gives the Linux process model the
//! recorder needs), never a method answering a placeholder. Handlers compose by wrapping: a
//! tracer or a policy wraps [`Passthrough`] instead of copying it (see [`Observe`] and
//! [`Deny`]).
//!
//! This crate sits on `trapbox-abi` alone (and the time buffer's type); the engines, the
//! process model and the tools sit on it. [`script`] is an engine made of a list of traps,
//! for tests of handlers that need no VM.

#![forbid(unsafe_code)]

mod engine;
mod exit;
mod fault;
pub mod script;

/// The CPU a guest's user code sees (pure data: no KVM type).
pub use engine::{Engine, TrapPath};
pub use exit::{Exit, RawExit};
pub use fault::{siginfo_bytes, signal_name, Fault, FaultKind, SigInfo, SIGNAL_NAMES};
pub use trapbox_abi::arch::cpuview::{CpuView, ViewMismatch};
pub use trapbox_abi::{GuestAddr, Regs, Syscall};
pub use trapbox_vdso::TimeBuffer;

/// What happened in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trap {
    /// The guest executed `syscall`.
    Syscall(Syscall),
    /// The guest raised a CPU exception other than a breakpoint or single-step.
    Fault(Fault),
    /// The guest executed `int3`; `rip` is the address after it, as the CPU reports.
    Breakpoint {
        /// Address after the `int3`.
        rip: u64,
    },
    /// A single-step trap (#DB) after the instruction before `rip`.
    SingleStep {
        /// Address of the next instruction.
        rip: u64,
    },
    /// The run's time limit passed while the guest was running.
    Timeout,
    /// trapbox itself received a signal (SIGINT, SIGTERM, SIGHUP) while the guest ran.
    HostSignal(i32),
    /// The guest thread was brought out of user code because a handler asked for it
    /// ([`Kicker::kick`]); the registers are those of the instruction it was about to run.
    Preempt,
}

/// Brings one guest thread out of user code: its handler gets [`Trap::Preempt`] there. For
/// handlers that share the guest's time between its threads (a recording, which lets one run
/// at a time, takes the turn from a thread that spins). Obtained from [`Guest::kicker`]; a
/// kick after the thread is gone does nothing.
#[derive(Clone)]
pub struct Kicker(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl Kicker {
    /// A kicker that calls `kick`, which returns whether the thread was still there.
    pub fn new(kick: impl Fn() -> bool + Send + Sync + 'static) -> Kicker {
        Kicker(std::sync::Arc::new(kick))
    }

    /// Asks for the thread's [`Trap::Preempt`] (soon, not at once: it arrives when the thread
    /// next runs user code, and the asker cannot know where). False if the thread is gone.
    pub fn kick(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Kicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kicker")
    }
}

/// What to do about a trap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume after the syscall with this return value (negative: -errno).
    Return(i64),
    /// Resume with the (possibly changed) registers.
    Resume,
    /// End the guest as if it called `exit_group(code)`.
    Exit(i32),
    /// End the guest as if killed by `signal` (with the fault that caused it, if any).
    Kill {
        /// Signal number.
        signal: i32,
        /// The fault behind it.
        fault: Option<Fault>,
    },
    /// Stop the run before answering the trap; a later run delivers the same trap again first
    /// (a replay paused at an event, a debugger attaching).
    Stop,
    /// Answer the syscall with this return value, then stop the run before the guest goes on;
    /// a later run continues after the syscall (a stop condition on a call's result).
    ReturnAndStop(i64),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest called exit or exit_group.
    Exited(i32),
    /// The guest was killed by a signal.
    Killed {
        /// Signal number.
        signal: i32,
        /// The fault behind it, for the crash report.
        fault: Option<Fault>,
    },
    /// A handler stopped the run.
    Stopped,
    /// The time limit passed.
    TimedOut,
}

impl Outcome {
    /// Exit status as a shell reports it: the code, or 128 + signal; 124 for a timeout (as
    /// `timeout(1)` does); 125 for a stop condition.
    pub fn exit_status(&self) -> i32 {
        match self {
            Outcome::Exited(c) => *c & 0xff,
            Outcome::Killed { signal, .. } => 128 + signal,
            Outcome::Stopped => 125,
            Outcome::TimedOut => 124,
        }
    }
}

/// Errors when a handler touches guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// Part of the range is not guest memory with the needed rights.
    #[error("guest address {0:#x} is not mapped with the needed rights")]
    Fault(u64),
}

/// The guest as a handler sees it. Implemented by each backend.
pub trait Guest {
    /// Registers of the trapping thread.
    fn regs(&self) -> Regs;
    /// Replaces the registers; they take effect when the guest resumes.
    fn set_regs(&mut self, regs: &Regs);
    /// Reads guest memory, checked against the guest's mappings.
    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), MemError>;
    /// Writes guest memory, checked against the guest's mappings (must be writable).
    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), MemError>;
    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    fn read_cstr(&self, addr: GuestAddr, max: usize) -> Result<Vec<u8>, MemError>;
    /// Performs the syscall on the guest's behalf: pointers checked, memory calls mirrored
    /// into the guest's page tables, trapbox's own resources out of reach. This is what
    /// [`Passthrough`] does; other handlers call it to forward.
    fn passthrough(&mut self, call: &Syscall) -> Action;
    /// The nearest symbol for a code address (`main+0x10`), if the guest's ELF has symbols.
    fn symbolize(&self, addr: u64) -> Option<String>;
    /// VM exits (or the backend's equivalent) so far.
    fn exits(&self) -> u64;

    /// The id of the guest thread that trapped (its tid as gettid returns it; the process id
    /// for the first thread).
    fn tid(&self) -> i32;

    /// Reads what is readable of `[addr, addr+len)`, skipping pages that cannot be read: the
    /// readable runs as (address, bytes). The default reads all or nothing.
    fn read_runs(&self, addr: GuestAddr, len: u64) -> Vec<(u64, Vec<u8>)> {
        let mut b = vec![0u8; len as usize];
        match self.read(addr, &mut b) {
            Ok(()) => vec![(addr.0, b)],
            Err(_) => Vec::new(),
        }
    }

    /// The Linux process model, where the engine runs one (both of trapbox's engines do; a
    /// scripted test engine need not): what record and replay need beyond registers and
    /// memory.
    fn process(&mut self) -> Option<&mut dyn Process> {
        None
    }

    /// Snapshots of the process, where the engine can take them (both KVM and in-process
    /// can; the scripted engine cannot).
    fn snapshots(&mut self) -> Option<&mut dyn Snapshots> {
        None
    }
}

/// A snapshot taken by [`Snapshots::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(pub u32);

/// What one [`Snapshots::restore`] put back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Pages written since (or otherwise changed) that were copied back or dropped.
    pub dirty_pages: u64,
    /// Mappings made, removed or re-protected since that were undone.
    pub remapped: u64,
    /// The pages written were known from the kernel's write tracking (else every page was
    /// compared with the snapshot's copy).
    pub tracked: bool,
}

/// Why a snapshot could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A snapshot is of a process with one thread.
    #[error("the process has {0} threads: a snapshot needs a single-threaded process")]
    Threads(usize),
    /// The id names no snapshot (never taken, or discarded).
    #[error("there is no snapshot {0:?}")]
    Unknown(SnapshotId),
    /// A mapping the snapshot had cannot be made again, or given its rights back (sealed
    /// since).
    #[error("the mapping at {0:#x} cannot be made as the snapshot had it again (removed or sealed since)")]
    Unrestorable(u64),
    /// The host refused what a snapshot needs (reading the page map, copying memory).
    #[error("{what}: {source}")]
    Host {
        /// What trapbox was doing.
        what: &'static str,
        /// The host's (or the engine's) error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Snapshots of a single-threaded guest process: its memory, mappings, program break,
/// descriptors, registers and vector state, restored by pages written since. For a fuzzer's
/// resets, a debugger's checkpoints, a REPL's undo. A restore happens at a trap: the guest
/// resumes ([`Action::Resume`]) where the snapshot was taken.
///
/// Not restored: the contents of files (a write to a file after the snapshot stays), the
/// offsets of descriptors open at the snapshot, signal dispositions, and shared mappings' other
/// processes.
pub trait Snapshots {
    /// Takes a snapshot of the process as it is at this trap.
    fn take(&mut self) -> Result<SnapshotId, SnapshotError>;

    /// Puts the process back as it was when `id` was taken. Cheapest when `id` is the
    /// snapshot last taken or restored: only the pages written since are visited.
    fn restore(&mut self, id: SnapshotId) -> Result<Restored, SnapshotError>;

    /// Forgets snapshot `id` and frees its copy of memory.
    fn discard(&mut self, id: SnapshotId);
}

/// The Linux process model as an engine runs it: the program's image and mappings, signals,
/// exec, the CPU view, and the turns its threads take. A capability: handlers ask for it
/// with [`Guest::process`] and decide what they can do without it.
pub trait Process {
    /// The engine running the guest.
    fn engine(&self) -> Engine;

    /// The CPU as the guest's user code sees it (XCR0, XSAVE layout, feature leaves).
    fn cpu_view(&self) -> CpuView;

    /// What `cpuid(leaf, subleaf)` gives the guest's user code.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> Option<[u32; 4]>;

    /// The guest's mappings: start, end, PROT_* bits.
    fn mappings(&self) -> Vec<(u64, u64, i32)>;

    /// Overwrites guest code (read-only pages included) and makes sure the guest executes the
    /// new bytes. Used to turn instructions the CPU cannot trap into breakpoints.
    fn patch_code(&mut self, addr: GuestAddr, bytes: &[u8]) -> Result<(), MemError>;

    /// Raises signal `sig` (with `siginfo`, 128 bytes) in the guest as the kernel does for a
    /// fault of the guest's own instruction: the guest's handler runs ([`Action::Resume`],
    /// with the registers entering it) or the default action applies (usually
    /// [`Action::Kill`]).
    fn raise_signal(&mut self, sig: i32, siginfo: &[u8; 128]) -> Action;

    /// Queues signal `sig` with `siginfo` for the guest as if it had just arrived: it is
    /// delivered (or takes its default action) before the guest resumes from this trap. A
    /// replay re-creates recorded signals this way.
    fn queue_signal(&mut self, sig: i32, siginfo: &[u8; 128]);

    /// How the program now running was started: the first image's [`Start`], or after an
    /// exec the new image's; None before the first image is loaded.
    fn image(&self) -> Option<Start>;

    /// The time buffer of trapbox's vDSO in the image now running, when it has one (record
    /// and replay), reached through trapbox's own mapping of it.
    fn time_buffer(&self) -> Option<TimeBuffer>;

    /// Replaces the program, as a successful execve would, with the image `start` describes:
    /// its program file, at its placement, with its stack image (a replay reproducing a
    /// recorded exec). [`Action::Resume`] enters the new image; a program that cannot be
    /// loaded kills the process, as past execve's point of no return.
    fn exec_image(&mut self, start: &Start) -> Action;

    /// Waits, with the guest's shared state let go so that the other guest threads go on
    /// handling their traps, until `ready` returns true. `ready` may block for a few
    /// milliseconds per call; it is called again until it says so. Returns false, without
    /// waiting any longer, once the process is ending (another thread ended it). Handlers that
    /// make guest threads take turns (record and replay) wait for their turn this way.
    fn wait_for(&mut self, ready: &mut dyn FnMut() -> bool) -> bool;

    /// A way for other threads to preempt this guest thread (see [`Kicker`]).
    fn kicker(&self) -> Kicker;

    /// The trapping thread's x87/SSE/AVX/AVX-512 state as an XSAVE image in standard form
    /// (the layout [`CpuView`] describes), or None if the engine cannot read it now.
    fn xsave(&self) -> Option<Vec<u8>>;

    /// The trapping thread's FS and GS bases (its TLS pointer and the rarely used GS).
    fn segment_bases(&self) -> (u64, u64);

    /// Replaces the trapping thread's x87/SSE/AVX state with an image [`Process::xsave`]
    /// gave (or one edited from it); false if the engine refuses it (a malformed header).
    fn set_xsave(&mut self, image: &[u8]) -> bool;
}

/// Where the loader puts things: chosen freely on a normal run, imposed on a replay so the
/// guest sees exactly the recorded layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Lowest address of the main image (position-independent images only).
    pub exe_base: Option<u64>,
    /// Lowest address of the interpreter's image.
    pub interp_base: Option<u64>,
    /// Lowest address of the stack mapping.
    pub stack_base: Option<u64>,
    /// The initial stack pointer and the bytes of `[sp, stack top)` (argv, envp, auxv with
    /// AT_RANDOM and AT_HWCAP as recorded).
    pub stack_image: Option<(u64, Vec<u8>)>,
    /// Base of trapbox's own vDSO (`process::vdso`), for recorded and replayed runs.
    pub vdso: Option<u64>,
}

/// What the guest was started with (what `execve` would have been given) and where the
/// loader put it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Start {
    /// The program as executed (a script for `#!` files).
    pub program: std::path::PathBuf,
    /// Its arguments as the guest sees them.
    pub argv: Vec<std::ffi::OsString>,
    /// Its environment.
    pub envp: Vec<std::ffi::OsString>,
    /// Number of environment entries.
    pub env_count: usize,
    /// Guest address of the envp array.
    pub envp_addr: u64,
    /// Where everything was placed (what a replay must reproduce).
    pub placement: Placement,
    /// The signals the program started with ignored (bit `n - 1` for signal `n`: inherited
    /// across exec, as natively), when known. A replay starts with the same, wherever it is
    /// launched from: a program that asks whether SIGINT is ignored takes another path
    /// otherwise.
    pub ignored_signals: Option<u64>,
}

/// Decides what each trap means. One required method; the rest are hooks with defaults.
pub trait TrapHandler {
    /// Handles one trap.
    fn on_trap(&mut self, guest: &mut dyn Guest, trap: &Trap) -> Action;

    /// Called once before the guest's first instruction.
    fn on_start(&mut self, _guest: &mut dyn Guest, _start: &Start) {}

    /// Called once when the run ends.
    fn on_end(&mut self, _guest: &mut dyn Guest, _outcome: &Outcome) {}

    /// A signal was just delivered to a guest handler (its frame is on the guest's stack):
    /// right after the trap this handler answered last, or, for a signal that came while the
    /// guest ran user code, as soon as it was delivered (before the next trap). `siginfo` is
    /// what the handler gets.
    fn on_signal(&mut self, _guest: &mut dyn Guest, _sig: i32, _siginfo: &[u8; 128]) {}

    /// A handler for a new guest thread, which traps on its own vCPU and host thread. `None`
    /// (the default) means this handler cannot follow threads: the guest's clone then fails
    /// with EAGAIN, as when a process may not create more threads.
    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        None
    }

    /// The program's own byte at `addr` where this handler put an `int3` of its own there
    /// (the recorder's and replayer's patches), so that a debugger shows the program's code
    /// and tells the handler's breakpoints from the program's. None elsewhere.
    fn patched_byte(&self, _addr: u64) -> Option<u8> {
        None
    }

    /// How far a run that repeats itself has got, where the handler knows: a count that only
    /// grows and is the same at the same point of every run (a replay's event index). A
    /// debugger anchors positions on it, to single-step only from the last event before one
    /// instead of from the start. None elsewhere.
    fn event_index(&self) -> Option<u64> {
        None
    }

    /// Called on a new thread's handler (from [`TrapHandler::new_thread`]) on its own host
    /// thread, before the thread's first instruction; registers it sets are the ones the
    /// thread starts with.
    fn on_thread_start(&mut self, _guest: &mut dyn Guest) {}

    /// Called when a thread has left: after its `exit` and what the kernel does then (the
    /// clear_child_tid word cleared and woken), or when the process ends under it. The first
    /// thread gets it too when it leaves with `exit` while others go on.
    fn on_thread_exit(&mut self, _guest: &mut dyn Guest) {}
}

impl<H: TrapHandler + ?Sized> TrapHandler for &mut H {
    fn on_trap(&mut self, guest: &mut dyn Guest, trap: &Trap) -> Action {
        (**self).on_trap(guest, trap)
    }
    fn on_start(&mut self, guest: &mut dyn Guest, start: &Start) {
        (**self).on_start(guest, start)
    }
    fn on_end(&mut self, guest: &mut dyn Guest, outcome: &Outcome) {
        (**self).on_end(guest, outcome)
    }
    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        (**self).new_thread()
    }
    fn on_signal(&mut self, guest: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        (**self).on_signal(guest, sig, siginfo)
    }
    fn on_thread_start(&mut self, guest: &mut dyn Guest) {
        (**self).on_thread_start(guest)
    }
    fn on_thread_exit(&mut self, guest: &mut dyn Guest) {
        (**self).on_thread_exit(guest)
    }
    fn patched_byte(&self, addr: u64) -> Option<u8> {
        (**self).patched_byte(addr)
    }
    fn event_index(&self) -> Option<u64> {
        (**self).event_index()
    }
}

impl<H: TrapHandler + ?Sized> TrapHandler for Box<H> {
    fn on_trap(&mut self, guest: &mut dyn Guest, trap: &Trap) -> Action {
        (**self).on_trap(guest, trap)
    }
    fn on_start(&mut self, guest: &mut dyn Guest, start: &Start) {
        (**self).on_start(guest, start)
    }
    fn on_end(&mut self, guest: &mut dyn Guest, outcome: &Outcome) {
        (**self).on_end(guest, outcome)
    }
    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        (**self).new_thread()
    }
    fn on_signal(&mut self, guest: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        (**self).on_signal(guest, sig, siginfo)
    }
    fn on_thread_start(&mut self, guest: &mut dyn Guest) {
        (**self).on_thread_start(guest)
    }
    fn on_thread_exit(&mut self, guest: &mut dyn Guest) {
        (**self).on_thread_exit(guest)
    }
    fn patched_byte(&self, addr: u64) -> Option<u8> {
        (**self).patched_byte(addr)
    }
    fn event_index(&self) -> Option<u64> {
        (**self).event_index()
    }
}

/// The default handler: the program behaves as it would natively. Syscalls go to the host
/// through [`Guest::passthrough`]; faults end the guest with the signal the kernel would send.
#[derive(Clone, Copy, Debug, Default)]
pub struct Passthrough;

impl TrapHandler for Passthrough {
    fn on_trap(&mut self, guest: &mut dyn Guest, trap: &Trap) -> Action {
        match trap {
            Trap::Syscall(call) => guest.passthrough(call),
            Trap::Fault(f) => {
                let si = f.siginfo();
                match raise(guest, si.signo, &fault::siginfo_bytes(si.signo, si.code, si.addr)) {
                    Action::Kill { signal, .. } => Action::Kill { signal, fault: Some(f.clone()) },
                    a => a,
                }
            }
            // int3 reports SI_KERNEL, a single step TRAP_TRACE.
            Trap::Breakpoint { .. } => raise(guest, libc::SIGTRAP, &fault::siginfo_bytes(libc::SIGTRAP, 0x80, 0)),
            Trap::SingleStep { .. } => raise(guest, libc::SIGTRAP, &fault::siginfo_bytes(libc::SIGTRAP, 2, 0)),
            Trap::Timeout => Action::Kill { signal: libc::SIGKILL, fault: None },
            Trap::HostSignal(sig) => Action::Kill { signal: *sig, fault: None },
            // Nothing happened that the guest could see.
            Trap::Preempt => Action::Resume,
        }
    }
    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        Some(Box::new(Passthrough))
    }
}

/// Raises a signal for the guest's own instruction where the engine runs a process model;
/// elsewhere the signal's default action for a fault: the guest dies of it.
fn raise(guest: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) -> Action {
    match guest.process() {
        Some(p) => p.raise_signal(sig, siginfo),
        None => Action::Kill { signal: sig, fault: None },
    }
}

/// Wraps a handler and shows every trap and the action chosen to a closure.
pub struct Observe<H, F> {
    inner: H,
    f: F,
}

impl<H: TrapHandler, F: FnMut(&dyn Guest, &Trap, &Action)> Observe<H, F> {
    /// Observes `inner` with `f`.
    pub fn new(inner: H, f: F) -> Self {
        Observe { inner, f }
    }

    /// The wrapped handler.
    pub fn into_inner(self) -> H {
        self.inner
    }
}

impl<H: TrapHandler, F: FnMut(&dyn Guest, &Trap, &Action)> TrapHandler for Observe<H, F> {
    fn on_trap(&mut self, guest: &mut dyn Guest, trap: &Trap) -> Action {
        let action = self.inner.on_trap(guest, trap);
        (self.f)(guest, trap, &action);
        action
    }
    fn on_start(&mut self, guest: &mut dyn Guest, start: &Start) {
        self.inner.on_start(guest, start)
    }
    fn on_end(&mut self, guest: &mut dyn Guest, outcome: &Outcome) {
        self.inner.on_end(guest, outcome)
    }
    fn on_signal(&mut self, guest: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        self.inner.on_signal(guest, sig, siginfo)
    }
    fn on_thread_start(&mut self, guest: &mut dyn Guest) {
        self.inner.on_thread_start(guest)
    }
    fn on_thread_exit(&mut self, guest: &mut dyn Guest) {
        self.inner.on_thread_exit(guest)
    }
    fn patched_byte(&self, addr: u64) -> Option<u8> {
        self.inner.patched_byte(addr)
    }
}

/// Wraps a handler and refuses the syscalls a policy names, with the errno it gives, before
/// they reach the inner handler.
pub struct Deny<H, P> {
    inner: H,
    policy: P,
}

impl<H: TrapHandler, P: FnMut(&Syscall) -> Option<i32>> Deny<H, P> {
    /// Refuses with `-errno` every syscall for which `policy` returns `Some(errno)`.
    pub fn new(inner: H, policy: P) -> Self {
        Deny { inner, policy }
    }
}

impl<H: TrapHandler, P: FnMut(&Syscall) -> Option<i32>> TrapHandler for Deny<H, P> {
    fn on_trap(&mut self, guest: &mut dyn Guest, trap: &Trap) -> Action {
        if let Trap::Syscall(call) = trap {
            if let Some(errno) = (self.policy)(call) {
                return Action::Return(-(errno as i64));
            }
        }
        self.inner.on_trap(guest, trap)
    }
    fn on_start(&mut self, guest: &mut dyn Guest, start: &Start) {
        self.inner.on_start(guest, start)
    }
    fn on_end(&mut self, guest: &mut dyn Guest, outcome: &Outcome) {
        self.inner.on_end(guest, outcome)
    }
    fn on_signal(&mut self, guest: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        self.inner.on_signal(guest, sig, siginfo)
    }
    fn on_thread_start(&mut self, guest: &mut dyn Guest) {
        self.inner.on_thread_start(guest)
    }
    fn on_thread_exit(&mut self, guest: &mut dyn Guest) {
        self.inner.on_thread_exit(guest)
    }
    fn patched_byte(&self, addr: u64) -> Option<u8> {
        self.inner.patched_byte(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted guest: no KVM, records passthrough calls.
    #[derive(Default)]
    struct FakeGuest {
        regs: Regs,
        forwarded: Vec<u64>,
    }

    impl Guest for FakeGuest {
        fn regs(&self) -> Regs {
            self.regs
        }
        fn set_regs(&mut self, regs: &Regs) {
            self.regs = *regs;
        }
        fn read(&self, a: GuestAddr, _: &mut [u8]) -> Result<(), MemError> {
            Err(MemError::Fault(a.0))
        }
        fn write(&mut self, a: GuestAddr, _: &[u8]) -> Result<(), MemError> {
            Err(MemError::Fault(a.0))
        }
        fn read_cstr(&self, a: GuestAddr, _: usize) -> Result<Vec<u8>, MemError> {
            Err(MemError::Fault(a.0))
        }
        fn passthrough(&mut self, call: &Syscall) -> Action {
            self.forwarded.push(call.nr);
            Action::Return(7)
        }
        fn symbolize(&self, _: u64) -> Option<String> {
            None
        }
        fn tid(&self) -> i32 {
            1
        }
        fn exits(&self) -> u64 {
            0
        }
    }

    fn call(nr: u64) -> Trap {
        Trap::Syscall(Syscall { nr, args: [0; 6] })
    }

    #[test]
    fn passthrough_forwards_syscalls() {
        let mut g = FakeGuest::default();
        assert_eq!(Passthrough.on_trap(&mut g, &call(39)), Action::Return(7));
        assert_eq!(g.forwarded, vec![39]);
    }

    #[test]
    fn passthrough_kills_on_fault_with_kernel_signal() {
        let mut g = FakeGuest::default();
        let f = Fault { vector: 14, error_code: 4 | 2, addr: Some(0x10), rip: 0x401000 };
        match Passthrough.on_trap(&mut g, &Trap::Fault(f)) {
            Action::Kill { signal, .. } => assert_eq!(signal, libc::SIGSEGV),
            a => panic!("unexpected {a:?}"),
        }
    }

    #[test]
    fn deny_refuses_before_inner_sees_it() {
        let mut g = FakeGuest::default();
        let mut h = Deny::new(Passthrough, |c: &Syscall| (c.nr == 2).then_some(libc::EPERM));
        assert_eq!(h.on_trap(&mut g, &call(2)), Action::Return(-(libc::EPERM as i64)));
        assert_eq!(h.on_trap(&mut g, &call(3)), Action::Return(7));
        assert_eq!(g.forwarded, vec![3]);
    }

    #[test]
    fn observe_sees_trap_and_action() {
        let mut g = FakeGuest::default();
        let mut seen = Vec::new();
        {
            let mut h =
                Observe::new(Passthrough, |_: &dyn Guest, t: &Trap, a: &Action| seen.push((t.clone(), a.clone())));
            h.on_trap(&mut g, &call(1));
        }
        assert_eq!(seen, vec![(call(1), Action::Return(7))]);
    }

    #[test]
    fn outcome_exit_status_like_a_shell() {
        assert_eq!(Outcome::Exited(3).exit_status(), 3);
        assert_eq!(Outcome::Exited(256).exit_status(), 0);
        assert_eq!(Outcome::Killed { signal: 11, fault: None }.exit_status(), 139);
        assert_eq!(Outcome::TimedOut.exit_status(), 124);
    }

    #[test]
    fn syscall_name_unknown_is_hex() {
        assert_eq!(Syscall { nr: 0x1ff, args: [0; 6] }.name(), "syscall_0x1ff");
        assert_eq!(Syscall { nr: 0, args: [0; 6] }.name(), "read");
    }
}
