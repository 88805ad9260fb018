//! The gdb side: a `gdbstub` target that runs on a thread of its own, serving gdb's
//! connection, and turns each of gdb's requests into a message to the guest thread that
//! serves the stop, where its [`Debugger`](crate::Debugger) handler answers it (or passes a
//! question about another thread's registers to that thread). The guest's state is only ever
//! touched by the guest's own threads, inside traps; this side holds none of it. gdb numbers
//! threads by their guest thread ids.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::num::NonZeroUsize;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::common::Tid;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::auxv::{Auxv, AuxvOps};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::reverse_exec::{
    ReplayLogPosition, ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::catch_syscalls::{CatchSyscallPosition, CatchSyscalls, CatchSyscallsOps, SyscallNumbers};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};

use crate::arch::{GdbRegs, X86_64Linux};
use crate::threads::{Go, Hub};

/// A request from gdb, answered by the guest thread that serves the stop.
pub(crate) enum Request {
    /// A thread's registers (its guest thread id).
    ReadRegs(i32, Sender<GdbRegs>),
    WriteRegs(i32, Box<GdbRegs>, Sender<bool>),
    ReadMem(u64, usize, Sender<Vec<u8>>),
    WriteMem(u64, Vec<u8>, Sender<bool>),
    AddBreak(u64, Sender<bool>),
    RemoveBreak(u64, Sender<bool>),
    /// A write watchpoint on `len` bytes at the address (false: not placed).
    AddWatch(u64, u64, Sender<bool>),
    RemoveWatch(u64, Sender<bool>),
    Auxv(Sender<Vec<u8>>),
    /// `catch syscall`: stop at the entry and return of these calls (None: every call), or
    /// of none.
    CatchSyscalls(Option<Option<Vec<u64>>>),
    /// Resume: what gdb asked of each thread it named (a step, a signal to pass on); every
    /// other thread continues, or stays stopped if gdb locked the scheduler (as it does to
    /// step one thread off a breakpoint).
    Resume(BTreeMap<i32, Go>, bool),
    /// A `monitor` command; the answer is its output.
    Monitor(String, Sender<String>),
    /// Go back: to the previous instruction (`step`) or breakpoint hit (a replay only).
    Reverse {
        step: bool,
    },
}

/// Why the guest stopped, or how it ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stop {
    Break,
    Step,
    Signal(u8),
    Exited(u8),
    Killed(u8),
    SyscallEntry(u64),
    SyscallReturn(u64),
    /// A write watchpoint's bytes changed (its address).
    Watch(u64),
    /// Going back reached the start of the replay.
    ReplayBegin,
}

/// gdb's view of the guest: requests out, stops (and the thread that made each) in.
pub(crate) struct Proxy {
    pub requests: Sender<Request>,
    pub stops: Receiver<(i32, Stop)>,
    /// The guest's threads, and a way to interrupt them.
    pub hub: Arc<Hub>,
    /// Set before the kick, so that the guest tells gdb's stop from its other kicks.
    pub interrupted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The guest is a replay: gdb may go back.
    pub reversible: bool,
    /// What gdb asks of each thread at the resume it is making, and whether the threads it
    /// does not name stay stopped.
    pub gos: BTreeMap<i32, Go>,
    pub locked: bool,
}

/// The guest went away (the run ended, or its thread is gone).
#[derive(Debug)]
pub(crate) struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the guest is gone")
    }
}

impl Proxy {
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Request) -> Result<T, Gone> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.requests.send(make(tx)).map_err(|_| Gone)?;
        rx.recv().map_err(|_| Gone)
    }
}

/// A request the guest could not answer (it is gone): gdb gets an error reply.
fn lost<T>(_: Gone) -> TargetError<T> {
    TargetError::NonFatal
}

impl Target for Proxy {
    type Arch = X86_64Linux;
    type Error = Gone;

    fn base_ops(&mut self) -> BaseOps<'_, X86_64Linux, Gone> {
        BaseOps::MultiThread(self)
    }
    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
    fn support_auxv(&mut self) -> Option<AuxvOps<'_, Self>> {
        Some(self)
    }
    fn support_catch_syscalls(&mut self) -> Option<CatchSyscallsOps<'_, Self>> {
        Some(self)
    }
    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
    // gdb's own breakpoints are trapbox's (software, through the Process capability).
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

/// A guest thread id as gdb names it.
fn tid_of(t: Tid) -> i32 {
    t.get() as i32
}

fn gdb_tid(t: i32) -> Tid {
    NonZeroUsize::new(t.max(1) as usize).expect("at least 1")
}

impl MultiThreadBase for Proxy {
    fn read_registers(&mut self, regs: &mut GdbRegs, tid: Tid) -> TargetResult<(), Self> {
        *regs = self.ask(|tx| Request::ReadRegs(tid_of(tid), tx)).map_err(lost)?;
        Ok(())
    }
    fn write_registers(&mut self, regs: &GdbRegs, tid: Tid) -> TargetResult<(), Self> {
        match self.ask(|tx| Request::WriteRegs(tid_of(tid), Box::new(regs.clone()), tx)) {
            Ok(true) => Ok(()),
            _ => Err(TargetError::NonFatal),
        }
    }
    // The threads share one address space.
    fn read_addrs(&mut self, start: u64, data: &mut [u8], _tid: Tid) -> TargetResult<usize, Self> {
        let got = self.ask(|tx| Request::ReadMem(start, data.len(), tx)).map_err(lost)?;
        data[..got.len()].copy_from_slice(&got);
        Ok(got.len())
    }
    fn write_addrs(&mut self, start: u64, data: &[u8], _tid: Tid) -> TargetResult<(), Self> {
        match self.ask(|tx| Request::WriteMem(start, data.to_vec(), tx)) {
            Ok(true) => Ok(()),
            _ => Err(TargetError::NonFatal),
        }
    }
    fn list_active_threads(&mut self, thread_is_active: &mut dyn FnMut(Tid)) -> Result<(), Gone> {
        // Before the guest's first thread has come to its first stop (or a replay's run again
        // to its start), there is none yet: gdb waits for it.
        let mut tids = self.hub.tids();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while tids.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            tids = self.hub.tids();
        }
        for t in tids {
            thread_is_active(gdb_tid(t));
        }
        Ok(())
    }
    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for Proxy {
    fn resume(&mut self) -> Result<(), Gone> {
        let gos = std::mem::take(&mut self.gos);
        self.requests.send(Request::Resume(gos, std::mem::take(&mut self.locked))).map_err(|_| Gone)
    }
    fn clear_resume_actions(&mut self) -> Result<(), Gone> {
        self.gos.clear();
        self.locked = false;
        Ok(())
    }
    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
    fn set_resume_action_continue(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), Gone> {
        self.gos.insert(tid_of(tid), Go { step: false, signal: signal.map(|s| s.0) });
        Ok(())
    }
    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, Tid, Self>> {
        if self.reversible {
            Some(self)
        } else {
            None
        }
    }
    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, Tid, Self>> {
        if self.reversible {
            Some(self)
        } else {
            None
        }
    }
}

impl ReverseCont<Tid> for Proxy {
    fn reverse_cont(&mut self) -> Result<(), Gone> {
        self.requests.send(Request::Reverse { step: false }).map_err(|_| Gone)
    }
}

impl ReverseStep<Tid> for Proxy {
    fn reverse_step(&mut self, _tid: Tid) -> Result<(), Gone> {
        self.requests.send(Request::Reverse { step: true }).map_err(|_| Gone)
    }
}

impl MultiThreadSchedulerLocking for Proxy {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Gone> {
        self.locked = true;
        Ok(())
    }
}

impl MultiThreadSingleStep for Proxy {
    fn set_resume_action_step(&mut self, tid: Tid, signal: Option<Signal>) -> Result<(), Gone> {
        self.gos.insert(tid_of(tid), Go { step: true, signal: signal.map(|s| s.0) });
        Ok(())
    }
}

impl Breakpoints for Proxy {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

/// Watchpoints, answered by single-stepping and comparing (see `Debugger::watch_hit`): writes
/// only, as a comparison cannot see a read.
impl HwWatchpoint for Proxy {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        if kind != WatchKind::Write {
            return Ok(false);
        }
        self.ask(|tx| Request::AddWatch(addr, len, tx)).map_err(lost)
    }
    fn remove_hw_watchpoint(&mut self, addr: u64, _len: u64, _kind: WatchKind) -> TargetResult<bool, Self> {
        self.ask(|tx| Request::RemoveWatch(addr, tx)).map_err(lost)
    }
}

impl SwBreakpoint for Proxy {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.ask(|tx| Request::AddBreak(addr, tx)).map_err(lost)
    }
    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.ask(|tx| Request::RemoveBreak(addr, tx)).map_err(lost)
    }
}

/// `monitor when`, `monitor checkpoint`, `monitor restart N` (see `Debugger::monitor`).
impl MonitorCmd for Proxy {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Gone> {
        let cmd = String::from_utf8_lossy(cmd).into_owned();
        let answer = self.ask(|tx| Request::Monitor(cmd, tx))?;
        gdbstub::outputln!(out, "{answer}");
        Ok(())
    }
}

impl Auxv for Proxy {
    fn get_auxv(&self, offset: u64, length: usize, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let all = self.ask(Request::Auxv).map_err(lost)?;
        let from = (offset as usize).min(all.len());
        let n = length.min(all.len() - from).min(buf.len());
        buf[..n].copy_from_slice(&all[from..from + n]);
        Ok(n)
    }
}

impl CatchSyscalls for Proxy {
    fn enable_catch_syscalls(&mut self, filter: Option<SyscallNumbers<'_, u64>>) -> TargetResult<(), Self> {
        let which = filter.map(|f| f.collect());
        self.requests.send(Request::CatchSyscalls(Some(which))).map_err(|_| TargetError::NonFatal)
    }
    fn disable_catch_syscalls(&mut self) -> TargetResult<(), Self> {
        self.requests.send(Request::CatchSyscalls(None)).map_err(|_| TargetError::NonFatal)
    }
}

/// Stop `s` of thread `tid` as gdb hears it: every stop names its thread, a step's as a
/// SIGTRAP of that thread.
fn stop_reason(tid: i32, s: Stop) -> MultiThreadStopReason<u64> {
    let tid = gdb_tid(tid);
    match s {
        Stop::ReplayBegin => MultiThreadStopReason::ReplayLog { tid: Some(tid), pos: ReplayLogPosition::Begin },
        Stop::SyscallEntry(n) => {
            MultiThreadStopReason::CatchSyscall { tid: Some(tid), number: n, position: CatchSyscallPosition::Entry }
        }
        Stop::SyscallReturn(n) => {
            MultiThreadStopReason::CatchSyscall { tid: Some(tid), number: n, position: CatchSyscallPosition::Return }
        }
        Stop::Break => MultiThreadStopReason::SwBreak(tid),
        Stop::Watch(addr) => MultiThreadStopReason::Watch { tid, kind: WatchKind::Write, addr },
        Stop::Step => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP },
        Stop::Signal(n) => MultiThreadStopReason::SignalWithThread { tid, signal: Signal(n) },
        Stop::Exited(c) => MultiThreadStopReason::Exited(c),
        Stop::Killed(n) => MultiThreadStopReason::Terminated(Signal(n)),
    }
}

/// gdbstub's loop while the guest runs: a stop from the guest's thread, or a byte from gdb
/// (its Ctrl-C), whichever comes first.
enum Loop {}

impl BlockingEventLoop for Loop {
    type Target = Proxy;
    type Connection = TcpStream;
    type StopReason = MultiThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut Proxy,
        conn: &mut TcpStream,
    ) -> Result<Event<Self::StopReason>, WaitForStopReasonError<Gone, std::io::Error>> {
        loop {
            match target.stops.recv_timeout(Duration::from_millis(20)) {
                Ok((tid, s)) => return Ok(Event::TargetStopped(stop_reason(tid, s))),
                Err(RecvTimeoutError::Disconnected) => return Err(WaitForStopReasonError::Target(Gone)),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
                let b = conn.read().map_err(WaitForStopReasonError::Connection)?;
                return Ok(Event::IncomingData(b));
            }
        }
    }

    fn on_interrupt(target: &mut Proxy) -> Result<Option<Self::StopReason>, Gone> {
        // The first thread to reach its next instruction stops and reports SIGINT like any
        // stop; the others stop with it.
        target.interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
        target.hub.kick_all();
        Ok(None)
    }
}

/// Serves gdb on `conn` until it detaches, kills, or the guest ends.
pub(crate) fn serve(proxy: &mut Proxy, conn: TcpStream) -> Result<DisconnectReason, String> {
    let _ = conn.set_nodelay(true);
    GdbStub::new(conn).run_blocking::<Loop>(proxy).map_err(|e| e.to_string())
}
