//! The gdb side: a `gdbstub` target that runs on a thread of its own, serving gdb's
//! connection, and turns each of gdb's requests into a message to the guest's thread, where
//! the [`Debugger`](crate::Debugger) handler answers it at a stop. The guest's state is only
//! ever touched by the guest's own thread, inside a trap; this side holds none of it.

use std::net::TcpStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::auxv::{Auxv, AuxvOps};
use gdbstub::target::ext::base::reverse_exec::{
    ReplayLogPosition, ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps,
};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::catch_syscalls::{CatchSyscallPosition, CatchSyscalls, CatchSyscallsOps, SyscallNumbers};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};

use crate::arch::{GdbRegs, X86_64Linux};

/// A request from gdb, answered by the guest's thread at a stop.
pub(crate) enum Request {
    ReadRegs(Sender<GdbRegs>),
    WriteRegs(Box<GdbRegs>, Sender<bool>),
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
    /// Continue (or single-step), delivering `signal` if gdb passes one.
    Resume {
        step: bool,
        signal: Option<u8>,
    },
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

/// gdb's view of the guest: requests out, stops in.
pub(crate) struct Proxy {
    pub requests: Sender<Request>,
    pub stops: Receiver<Stop>,
    /// A way to interrupt the running guest: its kicker, given at the first stop.
    pub kicker: std::sync::Arc<std::sync::Mutex<Option<trapbox_trap::Kicker>>>,
    /// Set before the kick, so that the guest tells gdb's stop from its other kicks.
    pub interrupted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The guest is a replay: gdb may go back.
    pub reversible: bool,
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
        BaseOps::SingleThread(self)
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

impl SingleThreadBase for Proxy {
    fn read_registers(&mut self, regs: &mut GdbRegs) -> TargetResult<(), Self> {
        *regs = self.ask(Request::ReadRegs).map_err(lost)?;
        Ok(())
    }
    fn write_registers(&mut self, regs: &GdbRegs) -> TargetResult<(), Self> {
        match self.ask(|tx| Request::WriteRegs(Box::new(regs.clone()), tx)) {
            Ok(true) => Ok(()),
            _ => Err(TargetError::NonFatal),
        }
    }
    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let got = self.ask(|tx| Request::ReadMem(start, data.len(), tx)).map_err(lost)?;
        data[..got.len()].copy_from_slice(&got);
        Ok(got.len())
    }
    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        match self.ask(|tx| Request::WriteMem(start, data.to_vec(), tx)) {
            Ok(true) => Ok(()),
            _ => Err(TargetError::NonFatal),
        }
    }
    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for Proxy {
    fn resume(&mut self, signal: Option<Signal>) -> Result<(), Gone> {
        self.requests.send(Request::Resume { step: false, signal: signal.map(|s| s.0) }).map_err(|_| Gone)
    }
    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, (), Self>> {
        if self.reversible {
            Some(self)
        } else {
            None
        }
    }
    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, (), Self>> {
        if self.reversible {
            Some(self)
        } else {
            None
        }
    }
}

impl ReverseCont<()> for Proxy {
    fn reverse_cont(&mut self) -> Result<(), Gone> {
        self.requests.send(Request::Reverse { step: false }).map_err(|_| Gone)
    }
}

impl ReverseStep<()> for Proxy {
    fn reverse_step(&mut self, _tid: ()) -> Result<(), Gone> {
        self.requests.send(Request::Reverse { step: true }).map_err(|_| Gone)
    }
}

impl SingleThreadSingleStep for Proxy {
    fn step(&mut self, signal: Option<Signal>) -> Result<(), Gone> {
        self.requests.send(Request::Resume { step: true, signal: signal.map(|s| s.0) }).map_err(|_| Gone)
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

fn stop_reason(s: Stop) -> SingleThreadStopReason<u64> {
    match s {
        Stop::ReplayBegin => SingleThreadStopReason::ReplayLog { tid: None, pos: ReplayLogPosition::Begin },
        Stop::SyscallEntry(n) => {
            SingleThreadStopReason::CatchSyscall { tid: None, number: n, position: CatchSyscallPosition::Entry }
        }
        Stop::SyscallReturn(n) => {
            SingleThreadStopReason::CatchSyscall { tid: None, number: n, position: CatchSyscallPosition::Return }
        }
        Stop::Break => SingleThreadStopReason::SwBreak(()),
        Stop::Watch(addr) => SingleThreadStopReason::Watch { tid: (), kind: WatchKind::Write, addr },
        Stop::Step => SingleThreadStopReason::DoneStep,
        Stop::Signal(n) => SingleThreadStopReason::Signal(Signal(n)),
        Stop::Exited(c) => SingleThreadStopReason::Exited(c),
        Stop::Killed(n) => SingleThreadStopReason::Terminated(Signal(n)),
    }
}

/// gdbstub's loop while the guest runs: a stop from the guest's thread, or a byte from gdb
/// (its Ctrl-C), whichever comes first.
enum Loop {}

impl BlockingEventLoop for Loop {
    type Target = Proxy;
    type Connection = TcpStream;
    type StopReason = SingleThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut Proxy,
        conn: &mut TcpStream,
    ) -> Result<Event<Self::StopReason>, WaitForStopReasonError<Gone, std::io::Error>> {
        loop {
            match target.stops.recv_timeout(Duration::from_millis(20)) {
                Ok(s) => return Ok(Event::TargetStopped(stop_reason(s))),
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
        // The guest stops at its next instruction and reports SIGINT like any stop.
        target.interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(k) = target.kicker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            k.kick();
        }
        Ok(None)
    }
}

/// Serves gdb on `conn` until it detaches, kills, or the guest ends.
pub(crate) fn serve(proxy: &mut Proxy, conn: TcpStream) -> Result<DisconnectReason, String> {
    let _ = conn.set_nodelay(true);
    GdbStub::new(conn).run_blocking::<Loop>(proxy).map_err(|e| e.to_string())
}
