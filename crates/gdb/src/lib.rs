//! `trapbox run --gdb`, `replay --gdb`, `trace --stop-on … --gdb`: a GDB remote stub on the
//! trap API. The [`Debugger`] is a [`TrapHandler`] wrapped around the tool's own (the
//! passthrough, the replayer, the tracer) on every guest thread, which keeps answering
//! syscalls and its own breakpoints; at every stop (the program's first instruction, a
//! breakpoint, a single step, a fault, Ctrl-C) the thread that stopped tells the gdb side
//! why, then answers gdb's requests — registers, memory, breakpoints — from inside its trap,
//! until gdb resumes the guest. The gdb side ([`stub`]) runs `gdbstub` on a thread of its
//! own and never touches the guest; the two talk over channels. Breakpoints are `int3`s
//! placed with the `Process` capability; memory reads show the program's own bytes under
//! them.
//!
//! Threads stop together ([`threads`]): one gdb thread per guest thread, the one that
//! stopped serving gdb while the others are held at their traps and answer for their own
//! registers. What gdb set (breakpoints, watchpoints, the log of a replay) is shared by
//! every thread's handler ([`Core`], taken by the thread that serves, never across a call
//! that may block); what a thread is doing (a step, a breakpoint it steps over) is its own.
//!
//! Write watchpoints are answered in software, on any engine: a continue with one set runs
//! the guest a step at a time (the trap flag) and compares the watched bytes after each step
//! and after each syscall (the kernel writes for the guest too); reads cannot be seen so, and
//! are refused.
//!
//! On a replay, gdb can go back ([`rewind`]: the replay run again from its start), and
//! `monitor checkpoint` / `restart N` name positions to go to — as long as every stop so far
//! was the first thread's (a position on another thread is not one a run again reaches by
//! the first thread's steps).

pub mod arch;
mod rewind;
mod stub;
mod threads;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use trapbox_abi::arch::cpuview::CpuView;
use trapbox_trap::{siginfo_bytes, Action, Guest, GuestAddr, Outcome, Regs, Start, Trap, TrapHandler};

use arch::GdbRegs;
pub use rewind::Plan;
use rewind::{Hit, Logged, Survey, Then};
use stub::{Proxy, Request, Stop};
use threads::{Go, Hub, Msg, ThreadReq};

pub use gdbstub::stub::DisconnectReason;

const SIGINT: u8 = 2;
const SIGTRAP: u8 = 5;

/// gdb's signal numbers (the remote protocol's, not Linux's) for Linux signals 1–31.
const GDB_SIGNALS: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 10, 8, 9, 30, 11, 31, 13, 14, 15, 0, 20, 19, 17, 18, 21, 22, 16, 24, 25, 26, 27, 28, 23, 32,
    12,
];

/// Linux signal `sig` as gdb numbers it (a Linux-only signal as gdb's "unknown").
fn to_gdb(sig: i32) -> u8 {
    GDB_SIGNALS.get(sig as usize).copied().filter(|g| *g != 0).unwrap_or(143)
}

/// gdb's signal number `g` as Linux numbers it.
fn from_gdb(g: u8) -> Option<i32> {
    GDB_SIGNALS.iter().position(|x| *x == g && g != 0).map(|i| i as i32)
}
const TF: u64 = 1 << 8;

/// The debugging handler of one guest thread, around `inner` (the tool's handler for it).
pub struct Debugger<H> {
    inner: H,
    me: Thread,
    core: Arc<Mutex<Core>>,
    hub: Arc<Hub>,
    /// gdb's breakpoints as [`TrapHandler::patched_byte`] tells them, updated at every
    /// resume (a copy, so that it never waits for the thread that serves gdb).
    shared_breaks: Arc<Mutex<BTreeMap<u64, u8>>>,
    /// The guest's first thread: the one whose positions a replay can go back to.
    lead: bool,
}

/// What one thread is doing for gdb.
struct Thread {
    tid: i32,
    /// Questions about this thread while it is parked, and the end of the stop.
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    /// A breakpoint being stepped over: its address, and whether to continue after.
    step_over: Option<(u64, bool)>,
    /// gdb asked for a single step.
    stepping: bool,
    /// The signal and fault of the last stop, for gdb passing the signal on.
    stopped_by: Option<(i32, i32, u64)>,
    /// The syscall stopped at, while gdb looks at its entry (`orig_rax`).
    in_syscall: Option<u64>,
    /// A continue with watchpoints set: the thread runs a step at a time, compared after each.
    watching: bool,
    /// A continue in a survey run with watchpoints: a step at a time, each counted and the
    /// surveyed bytes compared after it.
    surveying: bool,
    /// The watched bytes as this thread last saw them.
    seen: BTreeMap<u64, Vec<u8>>,
    /// The registers this thread's running single step began with.
    step_from: Option<Regs>,
}

impl Thread {
    /// Parks this thread while another serves gdb, or gdb left it stopped, answering for its
    /// own registers (see [`threads`]).
    fn park(&self, hub: &Hub, g: &mut dyn Guest) {
        let in_syscall = self.in_syscall;
        hub.park(self.tid, g, &self.rx, &mut |g, req| answer(g, req, in_syscall));
    }

    /// Claims the stop for this thread, parked meanwhile as [`Thread::park`].
    fn claim(&self, hub: &Hub, g: &mut dyn Guest) {
        let in_syscall = self.in_syscall;
        hub.claim(self.tid, g, &self.rx, &mut |g, req| answer(g, req, in_syscall));
    }

    fn new() -> Thread {
        let (tx, rx) = mpsc::channel();
        Thread {
            tid: 0,
            rx,
            tx,
            step_over: None,
            stepping: false,
            stopped_by: None,
            in_syscall: None,
            watching: false,
            surveying: false,
            seen: BTreeMap::new(),
            step_from: None,
        }
    }
}

/// What gdb set, shared by every thread's handler.
struct Core {
    requests: Receiver<Request>,
    stops: Sender<(i32, Stop)>,
    /// gdb's breakpoints: address → the program's byte under the `int3`.
    breaks: BTreeMap<u64, u8>,
    /// The `int3` at the first instruction that gives gdb its first stop.
    entry: Option<(u64, u8)>,
    auxv: Vec<u8>,
    /// gdb's last word was `kill`.
    killed: Arc<AtomicBool>,
    /// gdb asked for the running guest to stop (the kick is gdb's, not the inner handler's).
    interrupted: Arc<AtomicBool>,
    /// `catch syscall`: None when off; Some(None) for every call, Some(Some(numbers)) for those.
    catch: Option<Option<Vec<u64>>>,
    /// The guest is a replay that can be run again from its start ([`rewind`]).
    reversible: bool,
    /// Every request that changed something, with the stop it was made at.
    log: Vec<(usize, Logged)>,
    /// Stops so far in this run.
    stop_index: usize,
    /// The stop the running resume was made at.
    resumed_at: usize,
    /// Logged requests still to replay in this run, and what then.
    script: VecDeque<(usize, Logged)>,
    then: Then,
    /// A Ctrl-C stop is in the log: no position after it can be reached again.
    irreproducible: bool,
    /// A stop of a thread other than the first, or a change to one, is in the log: going back
    /// is refused.
    threaded: bool,
    /// Where the next run goes, when this one ends to go back.
    restart: Option<Plan>,
    /// `int3`s of the debugger's own (survey, `until`): address → the program's byte.
    internal: BTreeMap<u64, u8>,
    survey: Option<Survey>,
    /// The running resume's `until`: addresses, the arrival to stop at, arrivals so far.
    until: Option<(BTreeSet<u64>, u64, u64)>,
    /// Steps counted since the stop a logged continue was made at, and that continue's
    /// `until` with the arrivals seen so far.
    counting: Option<u64>,
    count_until: Option<(BTreeSet<u64>, u64, u64)>,
    /// gdb's write watchpoints: address → its bytes as they were when the guest last
    /// resumed (or last changed).
    watches: BTreeMap<u64, Vec<u8>>,
    /// The replay's event index at each stop of this run (the inner handler's).
    stop_events: Vec<Option<u64>>,
    /// The running resume ends at the first syscall after which the event index is this.
    anchor: Option<u64>,
    /// Arrivals counted for `until` before the anchor was reached (a count goes on from them).
    anchor_seen: u64,
    /// `monitor checkpoint`: positions (the requests that lead there from the start).
    checkpoints: Vec<Vec<(usize, Logged)>>,
    /// `monitor restart N`: where the next resume goes instead.
    going_to: Option<Plan>,
    /// gdb's breakpoints, watchpoints and `catch syscall` as they were when it asked to go
    /// back: made again at the position gone to, before gdb is told it stopped there (gdb
    /// does not insert them again; the log up to there has them as they were then).
    standing: Option<Standing>,
    /// What the last resume asked of the threads other than the one that served it, and
    /// whether those it did not name stay stopped.
    gos: BTreeMap<i32, Go>,
    locked: bool,
    /// The thread that served it stays stopped too.
    held_me: bool,
}

impl Core {
    /// A core with nothing set and no connection.
    fn empty() -> Core {
        Core {
            requests: mpsc::channel().1,
            stops: mpsc::channel().0,
            breaks: BTreeMap::new(),
            entry: None,
            auxv: Vec::new(),
            killed: Arc::default(),
            interrupted: Arc::default(),
            catch: None,
            reversible: false,
            log: Vec::new(),
            stop_index: 0,
            resumed_at: 0,
            script: VecDeque::new(),
            then: Then::Live,
            irreproducible: false,
            threaded: false,
            restart: None,
            internal: BTreeMap::new(),
            survey: None,
            until: None,
            counting: None,
            count_until: None,
            watches: BTreeMap::new(),
            stop_events: Vec::new(),
            anchor: None,
            anchor_seen: 0,
            checkpoints: Vec::new(),
            going_to: None,
            standing: None,
            gos: BTreeMap::new(),
            locked: false,
            held_me: false,
        }
    }
}

/// Starts the gdb side on `conn`; returns the handler for the guest's first thread (around
/// `inner`; it makes the other threads' handlers) and the gdb side's thread, which ends when
/// gdb detaches, kills or the guest ends.
/// `reversible`: the guest is a replay the caller runs again from its start whenever a run
/// ends with [`Debugger::take_restart`] saying where to go ([`Debugger::rebind`]).
pub fn attach<H>(
    conn: TcpStream,
    inner: H,
    reversible: bool,
) -> (Debugger<H>, std::thread::JoinHandle<Result<DisconnectReason, String>>) {
    let (req_tx, req_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let hub = Arc::new(Hub::default());
    let killed = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut proxy = Proxy {
        requests: req_tx,
        stops: stop_rx,
        hub: hub.clone(),
        interrupted: interrupted.clone(),
        reversible,
        gos: BTreeMap::new(),
        locked: false,
    };
    let (kick, kill) = (hub.clone(), killed.clone());
    let thread = std::thread::Builder::new()
        .name("trapbox-gdb".into())
        .spawn(move || {
            let end = stub::serve(&mut proxy, conn);
            // gdb is gone: the guest learns it at its next stop, made now (a kill ends it;
            // a detach takes the breakpoints out and lets it run on). The flag is set before
            // the channels close, which is how a stopped guest learns it.
            if matches!(end, Ok(DisconnectReason::Kill)) {
                kill.store(true, Ordering::SeqCst);
            }
            drop(proxy);
            kick.kick_all();
            end
        })
        .expect("a thread for the gdb connection");
    let carried = Carried {
        requests: req_rx,
        stops: stop_tx,
        hub,
        shared_breaks: Arc::default(),
        killed,
        interrupted,
        reversible,
        irreproducible: false,
        checkpoints: Vec::new(),
        standing: None,
    };
    let d = Debugger::assemble(inner, carried, Vec::new(), VecDeque::new(), Then::Live, None);
    (d, thread)
}

/// What a debugger keeps from one run of a replay to the next: gdb's connection, and what
/// holds for the whole session.
struct Carried {
    requests: Receiver<Request>,
    stops: Sender<(i32, Stop)>,
    hub: Arc<Hub>,
    shared_breaks: Arc<Mutex<BTreeMap<u64, u8>>>,
    killed: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
    reversible: bool,
    irreproducible: bool,
    checkpoints: Vec<Vec<(usize, Logged)>>,
    standing: Option<Standing>,
}

/// What gdb has set at a stop (see `Core::standing`).
#[derive(Clone, Debug)]
struct Standing {
    breaks: BTreeSet<u64>,
    watches: Vec<(u64, u64)>,
    catch: Option<Option<Vec<u64>>>,
}

impl<H> Debugger<H> {
    /// A debugger for a run starting now: `carried` from the session, the rest fresh.
    fn assemble(
        inner: H,
        c: Carried,
        log: Vec<(usize, Logged)>,
        script: VecDeque<(usize, Logged)>,
        then: Then,
        survey: Option<Survey>,
    ) -> Debugger<H> {
        c.hub.reset();
        let core = Core {
            requests: c.requests,
            stops: c.stops,
            killed: c.killed,
            interrupted: c.interrupted,
            reversible: c.reversible,
            log,
            script,
            then,
            irreproducible: c.irreproducible,
            survey,
            checkpoints: c.checkpoints,
            standing: c.standing,
            ..Core::empty()
        };
        Debugger {
            inner,
            me: Thread::new(),
            core: Arc::new(Mutex::new(core)),
            hub: c.hub,
            shared_breaks: c.shared_breaks,
            lead: true,
        }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the next run of the replay must go, if this one ended to go back.
    pub fn take_restart(&mut self) -> Option<Plan> {
        self.core().restart.take()
    }

    /// The same debugger (gdb's connection, its log) around `inner`, for a new run of the
    /// replay from its start, going where `plan` says. The run's threads are all gone.
    pub fn rebind<H2>(self, inner: H2, plan: Option<Plan>) -> Debugger<H2> {
        // The run's threads are gone; a handler of theirs that the engine still keeps holds
        // a core without a connection from here on.
        let mut held = self.core.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *held;
        let (log, script, then, survey) = match plan {
            Some(p) => {
                let survey = match &p.then {
                    Then::Survey(addrs, watches, back, pass) => {
                        Some(Survey::new(addrs.clone(), watches, back.clone(), *pass))
                    }
                    _ => None,
                };
                (Vec::new(), p.script.into(), p.then, survey)
            }
            None => (std::mem::take(&mut c.log), VecDeque::new(), Then::Live, None),
        };
        let carried = Carried {
            requests: std::mem::replace(&mut c.requests, mpsc::channel().1),
            stops: std::mem::replace(&mut c.stops, mpsc::channel().0),
            hub: self.hub.clone(),
            shared_breaks: self.shared_breaks.clone(),
            killed: c.killed.clone(),
            interrupted: c.interrupted.clone(),
            reversible: c.reversible,
            irreproducible: c.irreproducible,
            checkpoints: std::mem::take(&mut c.checkpoints),
            standing: c.standing.take(),
        };
        drop(held);
        Debugger::assemble(inner, carried, log, script, then, survey)
    }

    /// This thread's view of the debugger, with the shared part held ([`At::relock`]).
    fn at<'a>(&'a mut self, g: &mut dyn Guest) -> At<'a, H> {
        let mut at = At {
            inner: &mut self.inner,
            me: &mut self.me,
            hub: &self.hub,
            shared_breaks: &self.shared_breaks,
            core: &self.core,
            guard: None,
            lead: self.lead,
        };
        at.relock(g);
        at
    }
}

/// A parked thread answers a question about its own state.
fn answer(g: &mut dyn Guest, req: ThreadReq, in_syscall: Option<u64>) {
    match req {
        ThreadReq::ReadRegs(tx) => {
            let _ = tx.send(regs_of(g, in_syscall));
        }
        ThreadReq::WriteRegs(r, tx) => {
            let _ = tx.send(set_regs(g, &r));
        }
    }
}

/// One thread's handler at one trap: its own state, the shared [`Core`] (while held), and
/// the inner handler.
struct At<'a, H: ?Sized> {
    inner: &'a mut H,
    me: &'a mut Thread,
    hub: &'a Hub,
    shared_breaks: &'a Mutex<BTreeMap<u64, u8>>,
    core: &'a Mutex<Core>,
    guard: Option<MutexGuard<'a, Core>>,
    lead: bool,
}

impl<H: ?Sized> Deref for At<'_, H> {
    type Target = Core;
    fn deref(&self) -> &Core {
        self.guard.as_ref().expect("the core is held between traps of the inner handler")
    }
}

impl<H: ?Sized> DerefMut for At<'_, H> {
    fn deref_mut(&mut self) -> &mut Core {
        self.guard.as_mut().expect("the core is held between traps of the inner handler")
    }
}

impl<H: ?Sized> At<'_, H> {
    /// Takes the shared core, never by blocking while the guest's shared state is held
    /// (the thread that holds the core may be serving gdb, and needs that state to let
    /// parked threads answer): parked while another thread serves gdb, briefly let go else.
    fn relock(&mut self, g: &mut dyn Guest) {
        loop {
            match self.core.try_lock() {
                Ok(guard) => {
                    self.guard = Some(guard);
                    return;
                }
                Err(TryLockError::Poisoned(p)) => {
                    self.guard = Some(p.into_inner());
                    return;
                }
                Err(TryLockError::WouldBlock) => {}
            }
            if self.hub.stopped_by_other(self.me.tid) {
                self.me.park(self.hub, g);
            } else {
                threads::wait(g, &mut || {
                    std::thread::sleep(Duration::from_micros(100));
                    true
                });
            }
        }
    }
}

/// `len` bytes of guest memory at `addr` (a watched range), or None where any of them is
/// unreadable.
fn guest_bytes(g: &mut dyn Guest, addr: u64, len: u64) -> Option<Vec<u8>> {
    let mut b = vec![0u8; len as usize];
    g.read(GuestAddr(addr), &mut b).ok().map(|_| b)
}

/// Sets or clears the thread's trap flag (single-stepping).
fn trap_flag(g: &mut dyn Guest, on: bool) {
    let mut r = g.regs();
    if on {
        r.rflags |= TF;
    } else {
        r.rflags &= !TF;
    }
    g.set_regs(&r);
}

fn patch(g: &mut dyn Guest, addr: u64, byte: u8) -> bool {
    g.process().is_some_and(|p| p.patch_code(GuestAddr(addr), &[byte]).is_ok())
}

impl<H: TrapHandler + ?Sized> At<'_, H> {
    /// Stops every thread, with this one serving gdb ([`At::serve`]); the others go on as gdb
    /// said when it resumes this one.
    fn stop(&mut self, g: &mut dyn Guest, why: Option<Stop>) -> Action {
        let me = self.me.tid;
        if !self.hub.try_claim(me) {
            // Another thread serves gdb: this one's stop comes after that one's.
            self.guard = None;
            self.me.claim(self.hub, g);
            self.relock(g);
        }
        if self.hub.detached.load(Ordering::SeqCst) {
            self.hub.release(me, &BTreeMap::new(), false, false);
            return self.detach(g);
        }
        // What an earlier resume asked of this thread is overtaken by this stop.
        self.hub.take_go(me);
        if !self.lead {
            self.threaded = true;
        }
        self.hub.stop_others(me, g);
        let action = self.serve(g, why);
        let gos = std::mem::take(&mut self.gos);
        let held_me = std::mem::take(&mut self.held_me);
        self.hub.release(me, &gos, std::mem::take(&mut self.locked), held_me);
        action
    }

    /// Tells gdb why the guest stopped and answers its requests until it resumes the guest.
    /// The first stop (`why` None) is not told: gdb takes a target it connects to as stopped.
    fn serve(&mut self, g: &mut dyn Guest, why: Option<Stop>) -> Action {
        let idx = self.stop_index;
        let me = self.me.tid;
        self.stop_index += 1;
        self.me.watching = false;
        self.me.surveying = false;
        self.anchor = None;
        let event = self.inner.event_index();
        self.stop_events.push(event);
        let rip = g.regs().rip;
        if idx == 0 {
            let addrs: Vec<u64> = self.survey.as_ref().map(|s| s.addrs.iter().copied().collect()).unwrap_or_default();
            for a in addrs {
                self.add_internal(g, a);
            }
            if let Some(s) = self.survey.as_mut() {
                // The watched bytes as the replay starts (nothing seen yet: no change).
                s.changed(&mut |a, n| guest_bytes(g, a, n));
            }
        }
        let resumed_at = self.resumed_at;
        if let Some(s) = self.survey.as_mut().filter(|_| idx > 0) {
            // A coarse pass compares at the end of every resume too: a write since its last
            // call lies in that resume (before an arrival that is this stop).
            s.resume_ended(resumed_at, &mut |a, n| guest_bytes(g, a, n));
        }
        if let Some(s) = self.survey.as_mut() {
            if matches!(why, Some(Stop::Step | Stop::Break)) && s.addrs.contains(&rip) {
                s.nth += 1;
                s.hits.push(Hit { addr: rip, next: None, resumed_at, nth: s.nth, stop: Some(idx), step: s.steps });
            }
        }
        if let Some(n) = self.counting {
            return self.count(g, why, n);
        }
        // Going back: the logged requests of this stop, answered without telling gdb.
        while self.script.front().is_some_and(|(at, _)| *at == idx) {
            let (_, req) = self.script.pop_front().expect("looked at");
            self.log.push((idx, req.clone()));
            if let Some(action) = self.apply(g, req) {
                return action;
            }
        }
        let why = match std::mem::replace(&mut self.then, Then::Live) {
            Then::Live => why,
            Then::Report(s) => Some(s),
            Then::Steps(0, stop) => Some(stop),
            Then::Steps(n, stop) => {
                self.then = Then::Steps(n - 1, stop);
                self.log.push((idx, Logged::Resume { step: true, signal: None, until: None, anchor: None }));
                return self.resume(g, true, None);
            }
            Then::Count(until) => {
                self.counting = Some(0);
                let seen = std::mem::take(&mut self.anchor_seen);
                self.count_until = until.map(|(a, m)| (a, m, seen));
                return self.resume(g, true, None);
            }
            Then::Survey(..) => match self.end_survey(g, idx) {
                Some(action) => return action,
                // Gone back to the instruction before here, in this run.
                None => Some(Stop::Step),
            },
        };
        if why.is_some() {
            self.make_standing(g, idx);
        }
        if self.hub.detached.load(Ordering::SeqCst) || why.is_some_and(|w| self.stops.send((me, w)).is_err()) {
            return self.detach(g);
        }
        loop {
            // gdb's next request, waited for with the guest's shared state let go: parked
            // threads take it to answer for their registers.
            let mut next = None;
            let rx = &self.guard.as_ref().expect("held while serving").requests;
            threads::wait(g, &mut || match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(r) => {
                    next = Some(r);
                    true
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            });
            let Some(req) = next else { return self.detach(g) };
            match req {
                Request::ReadRegs(tid, tx) if tid == me => {
                    let _ = tx.send(regs_of(g, self.me.in_syscall));
                }
                Request::ReadRegs(tid, tx) => self.hub.ask(tid, ThreadReq::ReadRegs(tx)),
                Request::WriteRegs(tid, r, tx) if tid == me => {
                    self.log.push((idx, Logged::WriteRegs(r.clone())));
                    let _ = tx.send(set_regs(g, &r));
                }
                Request::WriteRegs(tid, r, tx) => {
                    // Not a change a run again from the start can make.
                    self.threaded = true;
                    self.hub.ask(tid, ThreadReq::WriteRegs(r, tx));
                }
                Request::ReadMem(addr, len, tx) => {
                    let _ = tx.send(self.read(g, addr, len));
                }
                Request::WriteMem(addr, data, tx) => {
                    self.log.push((idx, Logged::WriteMem(addr, data.clone())));
                    let _ = tx.send(self.write(g, addr, &data));
                }
                Request::AddBreak(addr, tx) => {
                    self.log.push((idx, Logged::AddBreak(addr)));
                    let _ = tx.send(self.add_break(g, addr));
                }
                Request::RemoveBreak(addr, tx) => {
                    self.log.push((idx, Logged::RemoveBreak(addr)));
                    let _ = tx.send(self.remove_break(g, addr));
                }
                Request::AddWatch(addr, len, tx) => {
                    self.log.push((idx, Logged::AddWatch(addr, len)));
                    let _ = tx.send(self.add_watch(g, addr, len));
                }
                Request::RemoveWatch(addr, tx) => {
                    self.log.push((idx, Logged::RemoveWatch(addr)));
                    let _ = tx.send(self.watches.remove(&addr).is_some());
                }
                Request::Auxv(tx) => {
                    let _ = tx.send(self.auxv.clone());
                }
                Request::CatchSyscalls(which) => {
                    self.log.push((idx, Logged::Catch(which.clone())));
                    self.catch = which;
                }
                Request::Monitor(cmd, tx) => {
                    let _ = tx.send(self.monitor(idx, cmd.trim()));
                }
                Request::Resume(..) | Request::Reverse { .. } if self.going_to.is_some() => {
                    // `monitor restart N`: the run ends, and the next goes to the checkpoint.
                    self.standing = Some(self.standing_now());
                    self.restart = self.going_to.take();
                    return Action::Stop;
                }
                Request::Resume(mut gos, locked) => {
                    let mine = gos.remove(&me);
                    self.gos = gos;
                    self.locked = locked;
                    let Some(Go { step, signal }) = mine.or((!locked).then(Go::default)) else {
                        // gdb runs another thread only: this one stays stopped (parked when
                        // its trap ends) until a resume names it.
                        self.threaded = true;
                        self.held_me = true;
                        self.publish();
                        return Action::Resume;
                    };
                    self.log.push((idx, Logged::Resume { step, signal, until: None, anchor: None }));
                    self.publish();
                    return self.resume(g, step, signal);
                }
                Request::Reverse { step } => match self.go_back(g, idx, step) {
                    Some(action) => return action,
                    None => {
                        let stop = if idx == 0 { Stop::ReplayBegin } else { Stop::Signal(SIGTRAP) };
                        if self.stops.send((me, stop)).is_err() {
                            return self.detach(g);
                        }
                    }
                },
            }
        }
    }

    /// A `monitor` command at stop `idx`: rr's `when`, `checkpoint` and `restart N`, on
    /// positions — a checkpoint is the requests that lead to it from the start, and going to
    /// one runs the replay again from its start (nothing is kept in memory).
    fn monitor(&mut self, idx: usize, cmd: &str) -> String {
        let event = self.stop_events.get(idx).copied().flatten();
        let mut words = cmd.split_whitespace();
        match (words.next(), words.next()) {
            (Some("when"), None) => match event {
                Some(e) => format!("Current event: {e} (stop {idx} of this run)"),
                None => format!("Current event: unknown (not a replay); stop {idx}"),
            },
            (Some("checkpoint"), None) if self.reversible => {
                let position = rewind::upto(&self.log, idx);
                self.checkpoints.push(position);
                let at = event.map(|e| format!(" at event {e}")).unwrap_or_default();
                format!("Checkpoint {}{at}", self.checkpoints.len())
            }
            (Some("checkpoint" | "restart"), _) if !self.reversible => {
                "checkpoints need a replay: trapbox replay --gdb PORT TRACE".into()
            }
            (Some("restart"), Some(n)) => {
                match n.parse::<usize>().ok().filter(|n| (1..=self.checkpoints.len()).contains(n)) {
                    Some(n) => {
                        let plan = Plan { script: self.checkpoints[n - 1].clone(), then: Then::Report(Stop::Step) };
                        self.going_to = Some(plan);
                        format!("Going to checkpoint {n}: the next continue or step stops there")
                    }
                    None => format!("no checkpoint {n} ({} taken)", self.checkpoints.len()),
                }
            }
            _ => "trapbox monitor commands: when | checkpoint | restart N".into(),
        }
    }

    /// In a process the guest just forked (this handler is the parent's, copied): gdb follows
    /// the parent, as its default `follow-fork-mode parent` does, so the child's copy of the
    /// breakpoints goes and it runs on without the debugger (it has no connection to gdb).
    fn leave_forked_child(&mut self, g: &mut dyn Guest, action: Action) -> Action {
        eprintln!("trapbox: gdb follows the parent; the forked child {} runs without the debugger", g.tid());
        self.hub.detached.store(true, Ordering::SeqCst);
        let own = std::mem::take(&mut self.breaks).into_iter().chain(std::mem::take(&mut self.internal));
        for (addr, b) in own.chain(self.entry.take()) {
            patch(g, addr, b);
        }
        self.watches.clear();
        self.catch = None;
        trap_flag(g, false);
        action
    }

    /// gdb went away: its breakpoints go, and the program runs on — or ends, if gdb's last
    /// word was `kill`.
    fn detach(&mut self, g: &mut dyn Guest) -> Action {
        if self.killed.load(Ordering::SeqCst) {
            return Action::Kill { signal: libc::SIGKILL, fault: None };
        }
        self.hub.detached.store(true, Ordering::SeqCst);
        let internal = std::mem::take(&mut self.internal);
        for (addr, b) in std::mem::take(&mut self.breaks).into_iter().chain(internal) {
            patch(g, addr, b);
        }
        self.watches.clear();
        self.catch = None;
        self.publish();
        trap_flag(g, false);
        Action::Resume
    }

    fn resume(&mut self, g: &mut dyn Guest, step: bool, signal: Option<u8>) -> Action {
        let mut survey_steps = false;
        if self.lead {
            // Positions (and a survey's counts) are the first thread's.
            self.resumed_at = self.stop_index.saturating_sub(1);
            let at = self.resumed_at;
            if let Some(s) = self.survey.as_mut() {
                s.resumed(at, &mut |a, n| guest_bytes(g, a, n));
                survey_steps = s.steps();
            }
        }
        if let (Some(sig), Some((signo, code, addr))) = (signal.and_then(from_gdb), self.me.stopped_by.take()) {
            if sig == signo {
                // gdb passes the fault's signal on: the guest's handler runs, or it dies.
                if let Some(p) = g.process() {
                    return p.raise_signal(signo, &siginfo_bytes(signo, code, addr));
                }
            }
        }
        let mut r = g.regs();
        if !self.watches.is_empty() {
            // Changes are counted from here; a continue goes a step at a time.
            self.rebase_watches(g);
            if !step {
                self.me.watching = true;
                r.rflags |= TF;
            }
        }
        if survey_steps && !step {
            self.me.surveying = true;
            r.rflags |= TF;
        }
        if let Some(orig) = self.breaks.get(&r.rip).or(self.internal.get(&r.rip)).copied() {
            // Off the breakpoint first: the program's byte back for one step.
            patch(g, r.rip, orig);
            self.me.step_over = Some((r.rip, !step));
            r.rflags |= TF;
        }
        if step {
            self.me.stepping = true;
            r.rflags |= TF;
        }
        g.set_regs(&r);
        Action::Resume
    }

    /// The breakpoints as the other threads' handlers see them: updated before the guest
    /// runs again.
    fn publish(&self) {
        *self.shared_breaks.lock().unwrap_or_else(|e| e.into_inner()) = self.breaks.clone();
    }

    /// A write watchpoint on `len` bytes at `addr`: readable memory, at most a page.
    fn add_watch(&mut self, g: &mut dyn Guest, addr: u64, len: u64) -> bool {
        let Some(bytes) = guest_bytes(g, addr, len.clamp(1, 4096)) else { return false };
        self.watches.insert(addr, bytes);
        true
    }

    /// A step of a survey run that compares watchpoints: counted, and a surveyed range that
    /// changed noted with the step that changed it.
    fn survey_step(&mut self, g: &mut dyn Guest) {
        let resumed_at = self.resumed_at;
        let lead = self.lead;
        let Some(s) = self.survey.as_mut().filter(|s| s.steps() && lead) else { return };
        s.steps += 1;
        if let Some(addr) = s.changed(&mut |a, n| guest_bytes(g, a, n)) {
            s.changes.push(rewind::Change { resumed_at, step: s.steps, addr, from: None, to: None });
        }
    }

    /// A call returned in a survey run with watchpoints: a coarse pass compares the watched
    /// bytes, a fine pass starts or ends its single steps here (see [`rewind::Pass`]).
    fn survey_after_call(&mut self, g: &mut dyn Guest) {
        if !self.lead || self.survey.as_ref().is_none_or(|s| s.watches.is_empty()) {
            return;
        }
        let (resumed_at, event) = (self.resumed_at, self.inner.event_index());
        let Some(s) = self.survey.as_mut() else { return };
        let stepping = s.after_call(resumed_at, event, &mut |a, n| guest_bytes(g, a, n));
        if stepping != self.me.surveying {
            self.me.surveying = stepping;
            trap_flag(g, stepping);
        }
    }

    /// A stop right after a syscall the inner handler answered with `v`: the result in RAX,
    /// the trap flag off.
    fn stop_after_call(&mut self, g: &mut dyn Guest, v: i64, why: Stop) -> Action {
        let mut r = g.regs();
        r.rax = v as u64;
        r.rflags &= !TF;
        g.set_regs(&r);
        self.me.stopped_by = None;
        self.stop(g, Some(why))
    }

    /// Every watchpoint's bytes as they are now, as this thread compares them, and the next
    /// step starting where the thread is.
    fn rebase_watches(&mut self, g: &mut dyn Guest) {
        self.me.seen.clear();
        let lens: Vec<(u64, usize)> = self.watches.iter().map(|(a, b)| (*a, b.len())).collect();
        for (addr, len) in lens {
            if let Some(bytes) = guest_bytes(g, addr, len as u64) {
                self.me.seen.insert(addr, bytes);
            }
        }
        self.me.step_from = Some(g.regs());
    }

    /// The first watchpoint whose bytes changed since this thread last looked at them (all
    /// of them taken as they are now): the software answer to a write watchpoint, asked
    /// after every single step of a continue (`by_call` false) and after every syscall, which
    /// may write for the guest. Other threads run meanwhile: a change is this thread's only
    /// if the instruction it stepped writes to the watched bytes (the thread that wrote sees
    /// it at its own step); a call is taken as writing them.
    fn watch_hit(&mut self, g: &mut dyn Guest, by_call: bool) -> Option<u64> {
        let mut hit = None;
        let from = self.me.step_from.take();
        let lens: Vec<(u64, usize)> = self.watches.iter().map(|(a, b)| (*a, b.len())).collect();
        for (addr, len) in lens {
            let Some(now) = guest_bytes(g, addr, len as u64) else { continue };
            let before = self.me.seen.insert(addr, now.clone());
            let mine = by_call
                || from.as_ref().is_none_or(|r| {
                    // The program's bytes, not a breakpoint's int3 put back after the step.
                    let code = self.read(g, r.rip, 15);
                    writes_to(g, &code, r, addr, len as u64)
                });
            if before.is_some_and(|b| b != now) && mine {
                hit = hit.or(Some(addr));
            }
        }
        self.me.step_from = Some(g.regs());
        hit
    }

    fn add_break(&mut self, g: &mut dyn Guest, addr: u64) -> bool {
        if self.breaks.contains_key(&addr) {
            return true;
        }
        let Some(orig) = self.original(g, addr) else { return false };
        if !patch(g, addr, 0xcc) {
            return false;
        }
        self.breaks.insert(addr, orig);
        true
    }

    /// Removes gdb's breakpoint at `addr`; one that is not there (gdb's view of a position
    /// gone back to, where it had not been placed yet) is removed already.
    /// After a step off `addr`: its `int3` again, if a breakpoint (gdb's or the debugger's
    /// own) is still there.
    fn reinsert(&self, g: &mut dyn Guest, addr: u64) {
        if self.breaks.contains_key(&addr) || self.internal.contains_key(&addr) {
            patch(g, addr, 0xcc);
        }
    }

    fn remove_break(&mut self, g: &mut dyn Guest, addr: u64) -> bool {
        match self.breaks.remove(&addr) {
            // An internal int3 there stays.
            Some(b) => self.internal.contains_key(&addr) || patch(g, addr, b),
            None => true,
        }
    }

    /// The program's byte at `addr`, under whatever `int3` the debugger put there.
    fn original(&self, g: &mut dyn Guest, addr: u64) -> Option<u8> {
        if let Some(b) = self.breaks.get(&addr).or(self.internal.get(&addr)) {
            return Some(*b);
        }
        let mut b = [0u8; 1];
        g.read(GuestAddr(addr), &mut b).ok().map(|_| b[0])
    }

    fn add_internal(&mut self, g: &mut dyn Guest, addr: u64) {
        if self.internal.contains_key(&addr) {
            return;
        }
        if let Some(orig) = self.original(g, addr) {
            if patch(g, addr, 0xcc) {
                self.internal.insert(addr, orig);
            }
        }
    }

    fn remove_internals(&mut self, g: &mut dyn Guest) {
        for (addr, b) in std::mem::take(&mut self.internal) {
            if !self.breaks.contains_key(&addr) {
                patch(g, addr, b);
            }
        }
    }

    /// A logged request, answered again; a resume gives the action.
    fn apply(&mut self, g: &mut dyn Guest, req: Logged) -> Option<Action> {
        match req {
            Logged::AddBreak(a) => {
                self.add_break(g, a);
            }
            Logged::RemoveBreak(a) => {
                self.remove_break(g, a);
            }
            Logged::WriteRegs(r) => {
                set_regs(g, &r);
            }
            Logged::WriteMem(a, d) => {
                self.write(g, a, &d);
            }
            Logged::Catch(c) => self.catch = c,
            Logged::AddWatch(a, len) => {
                self.add_watch(g, a, len);
            }
            Logged::RemoveWatch(a) => {
                self.watches.remove(&a);
            }
            Logged::Resume { step, signal, until, anchor } => {
                self.anchor = anchor;
                if let Some((addrs, m)) = until {
                    for a in &addrs {
                        self.add_internal(g, *a);
                    }
                    self.until = Some((addrs, m, 0));
                }
                self.publish();
                return Some(self.resume(g, step, signal));
            }
        }
        None
    }

    /// gdb asks to go back from stop `idx`: where the next run goes (this one ends), or None
    /// when it cannot (the start reached, or a position that cannot be reproduced).
    fn go_back(&mut self, g: &mut dyn Guest, idx: usize, step: bool) -> Option<Action> {
        if !self.reversible || idx == 0 {
            return None;
        }
        if self.irreproducible {
            eprintln!("trapbox: gdb: cannot go back across a Ctrl-C stop (where it landed cannot be reproduced)");
            return None;
        }
        if self.threaded {
            eprintln!("trapbox: gdb: cannot go back across a stop of a thread other than the first");
            return None;
        }
        let plan = if step {
            match rewind::resume_at(&self.log, idx - 1) {
                Some(Logged::Resume { step: true, .. }) => {
                    Plan { script: rewind::before(&self.log, idx - 1), then: Then::Report(Stop::Step) }
                }
                Some(Logged::Resume { step: false, signal: None, until, .. }) => {
                    let mut script = rewind::upto(&self.log, idx - 1);
                    // Steps from the last events before here, not from the stop before.
                    let events = |i: usize| self.stop_events.get(i).copied().flatten();
                    if let (Some(from), Some(to)) = (events(idx - 1), events(idx)) {
                        if to >= from + 2 {
                            let anchor = Some(to - 1);
                            let resume = Logged::Resume { step: false, signal: None, until: until.clone(), anchor };
                            script.push((idx - 1, resume));
                        }
                    }
                    let counted = Plan { script, then: Then::Count(until.clone()) };
                    let to = g.regs().rip;
                    let mut ret = [0u8; 8];
                    let call = match g.read(GuestAddr(g.regs().rsp), &mut ret) {
                        Ok(()) => {
                            let mut read = |a: u64, n: usize| self.read(g, a, n);
                            rewind::call_into(to, u64::from_le_bytes(ret), &mut read)
                        }
                        Err(_) => None,
                    };
                    match call {
                        Some(call) => {
                            let back = rewind::Back { call, to, fallback: Box::new(counted) };
                            let addrs = [call, to].into_iter().collect();
                            let then = Then::Survey(addrs, Vec::new(), Some(back), rewind::Pass::Coarse);
                            Plan { script: self.log.clone(), then }
                        }
                        None => counted,
                    }
                }
                _ => {
                    eprintln!("trapbox: gdb: cannot step back across a continue that passed a signal on");
                    return None;
                }
            }
        } else {
            let watches = self.watches.iter().map(|(a, b)| (*a, b.len() as u64)).collect();
            let breaks = self.breaks.keys().copied().collect();
            Plan { script: self.log.clone(), then: Then::Survey(breaks, watches, None, rewind::Pass::Coarse) }
        };
        self.standing = Some(self.standing_now());
        self.restart = Some(plan);
        Some(Action::Stop)
    }

    /// What gdb has set now.
    fn standing_now(&self) -> Standing {
        Standing {
            breaks: self.breaks.keys().copied().collect(),
            watches: self.watches.iter().map(|(a, b)| (*a, b.len() as u64)).collect(),
            catch: self.catch.clone(),
        }
    }

    /// At the position gone back to (stop `idx`), before gdb hears of it: gdb's breakpoints,
    /// watchpoints and `catch syscall` as they were when it asked, logged here like requests
    /// of gdb's own (so that a later run to this position has them too).
    fn make_standing(&mut self, g: &mut dyn Guest, idx: usize) {
        let Some(st) = self.standing.take() else { return };
        let mut changes = Vec::new();
        for a in self.breaks.keys().filter(|a| !st.breaks.contains(a)) {
            changes.push(Logged::RemoveBreak(*a));
        }
        for a in st.breaks.iter().filter(|a| !self.breaks.contains_key(a)) {
            changes.push(Logged::AddBreak(*a));
        }
        for a in self.watches.keys().filter(|a| !st.watches.iter().any(|(w, _)| w == *a)) {
            changes.push(Logged::RemoveWatch(*a));
        }
        for (a, len) in st.watches.iter().filter(|(a, len)| self.watches.get(a).is_none_or(|b| b.len() as u64 != *len))
        {
            changes.push(Logged::AddWatch(*a, *len));
        }
        if self.catch != st.catch {
            changes.push(Logged::Catch(st.catch));
        }
        for req in changes {
            self.log.push((idx, req.clone()));
            self.apply(g, req);
        }
        self.publish();
    }

    /// Counting steps from the stop a logged continue was made at, to the stop it reached:
    /// that one is reached again when a step arrives at one of the breakpoints, changes a
    /// watched value, or faults.
    fn count(&mut self, g: &mut dyn Guest, why: Option<Stop>, n: u64) -> Action {
        let rip = g.regs().rip;
        let (n, arrived) = match why {
            Some(Stop::Step) => {
                let at_until = match self.count_until.as_mut() {
                    Some((addrs, m, seen)) if addrs.contains(&rip) => {
                        *seen += 1;
                        *seen == *m
                    }
                    _ => false,
                };
                // A continue that a watchpoint stopped: reached again at the step that
                // changes the watched bytes (a replay that goes back has one thread, so a
                // change is this step's, a syscall's write included).
                let watched = !self.watches.is_empty() && self.watch_hit(g, true).is_some();
                (n + 1, at_until || watched || self.breaks.contains_key(&rip))
            }
            _ => (n, true),
        };
        if !arrived {
            self.counting = Some(n);
            return self.resume(g, true, None);
        }
        self.counting = None;
        let then = if n == 0 { Then::Report(Stop::Step) } else { Then::Steps(n - 1, Stop::Step) };
        self.restart = Some(Plan { script: self.log.clone(), then });
        Action::Stop
    }

    /// One of the debugger's own `int3`s: an arrival for `until` or the survey, passed
    /// without stopping unless it is the one `until` waits for.
    fn internal_hit(&mut self, g: &mut dyn Guest, at: u64) -> Action {
        let mut r = g.regs();
        r.rip = at;
        g.set_regs(&r);
        let lead = self.lead;
        if let Some((addrs, m, n)) = self.until.as_mut().filter(|_| lead) {
            if addrs.contains(&at) {
                *n += 1;
                if *n == *m {
                    self.until = None;
                    self.remove_internals(g);
                    self.me.stopped_by = None;
                    return self.stop(g, Some(Stop::Break));
                }
            }
        }
        let resumed_at = self.resumed_at;
        let at_call = self.survey.as_ref().and_then(|s| s.back.as_ref()).is_some_and(|b| b.call == at);
        let slot = match at_call {
            true => {
                let mut bytes = [0u8; 8];
                let sp = r.rsp.wrapping_sub(8);
                g.read(GuestAddr(sp), &mut bytes).ok().map(|_| (sp, bytes))
            }
            false => None,
        };
        if let Some(s) = self.survey.as_mut().filter(|_| lead) {
            if s.addrs.contains(&at) {
                s.nth += 1;
                s.hits.push(Hit { addr: at, next: None, resumed_at, nth: s.nth, stop: None, step: s.steps });
                if at_call {
                    s.undo = Some(rewind::Undo { hit: s.hits.len() - 1, regs: r, slot });
                }
            }
        }
        // On: the program's byte back for one step, the int3 again after it.
        if let Some(orig) = self.internal.get(&at).copied() {
            patch(g, at, orig);
        }
        r.rflags |= TF;
        g.set_regs(&r);
        self.me.step_over = Some((at, true));
        Action::Resume
    }

    /// The end of a survey run: go to the last arrival before this stop, or to the start
    /// (the action that ends this run for that); None when a step back went there in this run.
    fn end_survey(&mut self, g: &mut dyn Guest, idx: usize) -> Option<Action> {
        let mut s = self.survey.take().expect("a survey run");
        if let Some(back) = s.back.take() {
            return match self.step_back(g, &mut s, back, idx) {
                Some(plan) => {
                    self.restart = Some(plan);
                    Some(Action::Stop)
                }
                None => None,
            };
        }
        let fine = match s.pass {
            _ if s.watches.is_empty() => None,
            rewind::Pass::Coarse => {
                if let Some(c) = s.coarse_end(idx) {
                    // The last write came after the last arrival: single steps over its
                    // stretch find the instruction.
                    let watches: Vec<(u64, u64)> = s.watches.iter().map(|(a, l, _)| (*a, *l)).collect();
                    let pass = rewind::Pass::Fine { resumed_at: c.resumed_at, from: c.from, to: c.to };
                    let then = Then::Survey(s.addrs.clone(), watches, None, pass);
                    self.restart = Some(Plan { script: self.log.clone(), then });
                    return Some(Action::Stop);
                }
                None
            }
            rewind::Pass::Fine { from, .. } => Some(from),
        };
        if let Some(from) = fine {
            // Positions are (the stop a resume was made at, steps into it — into the stretch,
            // for its resume); the last write before here is reached at the step before it.
            // Arrivals before the stretch came before any write in it.
            let here = (self.resumed_at, s.steps);
            let last_hit = s.hits[s.pre_hits.min(s.hits.len())..]
                .iter()
                .filter(|h| (h.resumed_at, h.step) < here)
                .max_by_key(|h| (h.resumed_at, h.step));
            let last_change =
                s.changes.iter().filter(|c| (c.resumed_at, c.step - 1) < here).max_by_key(|c| (c.resumed_at, c.step));
            if let Some(c) =
                last_change.filter(|c| last_hit.is_none_or(|h| (h.resumed_at, h.step) < (c.resumed_at, c.step - 1)))
            {
                let plan = match rewind::resume_at(&self.log, c.resumed_at) {
                    Some(Logged::Resume { signal: None, until, .. }) => {
                        let mut script = rewind::upto(&self.log, c.resumed_at);
                        if let Some(a) = from {
                            // To the stretch's first call, a stop of its own; the steps from it.
                            let resume =
                                Logged::Resume { step: false, signal: None, until: until.clone(), anchor: Some(a) };
                            script.push((c.resumed_at, resume));
                        }
                        let then = match c.step - 1 {
                            0 => Then::Report(Stop::Watch(c.addr)),
                            n => Then::Steps(n, Stop::Watch(c.addr)),
                        };
                        Plan { script, then }
                    }
                    _ => {
                        eprintln!("trapbox: gdb: cannot go back into a continue that passed a signal on");
                        return Some(Action::Stop);
                    }
                };
                self.restart = Some(plan);
                return Some(Action::Stop);
            }
        }
        let last = s.hits.iter().rev().find(|h| h.stop != Some(idx)).copied();
        let plan = match last {
            None => Plan { script: Vec::new(), then: Then::Report(Stop::ReplayBegin) },
            Some(Hit { stop: Some(at), .. }) => {
                Plan { script: rewind::before(&self.log, at), then: Then::Report(Stop::Break) }
            }
            Some(Hit { resumed_at, nth, stop: None, .. }) => {
                let mut script = rewind::upto(&self.log, resumed_at);
                match rewind::resume_at(&self.log, resumed_at) {
                    Some(Logged::Resume { step, signal, .. }) => script.push((
                        resumed_at,
                        Logged::Resume {
                            step: *step,
                            signal: *signal,
                            until: Some((s.addrs.clone(), nth)),
                            anchor: None,
                        },
                    )),
                    _ => return Some(Action::Stop),
                }
                Plan { script, then: Then::Report(Stop::Break) }
            }
        };
        self.restart = Some(plan);
        Some(Action::Stop)
    }

    /// Where a step back's survey says the instruction before stop `idx` is (see
    /// [`rewind::Back`]): the last arrival before it, if that was at the call and its step
    /// landed at this stop, in the resume that reached it; else the counting plan. None: this
    /// run went there (its state at that arrival put back, [`rewind::Undo`]), and the log is
    /// the one a run to it would have.
    fn step_back(&mut self, g: &mut dyn Guest, s: &mut Survey, back: rewind::Back, idx: usize) -> Option<Plan> {
        let last = s.hits.iter().enumerate().rev().find(|(_, h)| h.stop != Some(idx));
        let found = last.filter(|(_, h)| {
            h.stop.is_none() && h.addr == back.call && h.next == Some(back.to) && h.resumed_at == self.resumed_at
        });
        let resume = rewind::resume_at(&self.log, self.resumed_at).cloned();
        let (Some((i, h)), Some(Logged::Resume { step: false, signal, .. })) = (found, resume) else {
            return Some(*back.fallback);
        };
        let until = Some((s.addrs.clone(), h.nth));
        let run_there = (h.resumed_at, Logged::Resume { step: false, signal, until, anchor: None });
        let mut script = rewind::upto(&self.log, h.resumed_at);
        script.push(run_there);
        match s.undo.take().filter(|u| u.hit == i) {
            Some(u) => {
                g.set_regs(&u.regs);
                if let Some((at, bytes)) = u.slot {
                    self.write(g, at, &bytes);
                }
                self.remove_internals(g);
                // This stop's own requests stay, made at the position gone to.
                script.extend(self.log.iter().filter(|(at, _)| *at == idx).cloned());
                self.log = script;
                None
            }
            None => Some(Plan { script, then: Then::Report(Stop::Step) }),
        }
    }

    /// Guest memory as the program has it: the `int3`s under gdb's breakpoints read as the
    /// program's bytes. As much as is readable from `addr`.
    fn read(&self, g: &mut dyn Guest, addr: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (a, bytes) in g.read_runs(GuestAddr(addr), len as u64) {
            if a != addr + out.len() as u64 {
                break;
            }
            out.extend(bytes);
        }
        for (i, b) in out.iter_mut().enumerate() {
            if *b == 0xcc {
                if let Some(orig) = self.inner.patched_byte(addr + i as u64) {
                    *b = orig;
                }
            }
        }
        let own = self.breaks.iter().chain(self.internal.iter()).chain(self.entry.as_ref().map(|(a, b)| (a, b)));
        for (bp, orig) in own {
            if let Some(i) = bp.checked_sub(addr).filter(|i| (*i as usize) < out.len()) {
                out[i as usize] = *orig;
            }
        }
        out
    }

    /// Writes guest memory, code included; a breakpoint's byte becomes the new one, its
    /// `int3` stays.
    fn write(&mut self, g: &mut dyn Guest, addr: u64, data: &[u8]) -> bool {
        let mut data = data.to_vec();
        for (bp, orig) in self.breaks.iter_mut() {
            if let Some(i) = bp.checked_sub(addr).filter(|i| (*i as usize) < data.len()) {
                *orig = data[i as usize];
                data[i as usize] = 0xcc;
            }
        }
        g.write(GuestAddr(addr), &data).is_ok()
            || g.process().is_some_and(|p| p.patch_code(GuestAddr(addr), &data).is_ok())
    }
}

/// Where the AVX upper halves are in a standard-form XSAVE image, if the CPU view enables
/// AVX and the image holds them.
fn avx_offset(view: &CpuView, x: &[u8]) -> Option<usize> {
    if view.xcr0() >> 2 & 1 == 0 {
        return None;
    }
    let o = view.layout().offset(2)?;
    (x.len() >= o + 256).then_some(o)
}

/// The auxiliary vector the loader put on the initial stack, after the environment.
fn auxv_of(g: &mut dyn Guest, start: &Start) -> Vec<u8> {
    let mut at = start.envp_addr + 8 * (start.env_count as u64 + 1);
    let mut out = Vec::new();
    for _ in 0..64 {
        let mut pair = [0u8; 16];
        if g.read(GuestAddr(at), &mut pair).is_err() {
            break;
        }
        out.extend_from_slice(&pair);
        if pair[..8] == [0; 8] {
            break;
        }
        at += 16;
    }
    out
}

impl<H: TrapHandler + ?Sized> At<'_, H> {
    /// The inner handler's answer to `trap`, asked without the core held: it may block (a
    /// join, a read), and the thread that stops next must be able to serve gdb meanwhile.
    fn inner_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        if matches!(trap, Trap::Syscall(c) if c.creates_process()) {
            // A fork keeps the core held: the child's copy of it must not be held by a
            // thread that does not exist there. (No stop is on: the core would be the
            // serving thread's.)
            return self.inner.on_trap(g, trap);
        }
        self.guard = None;
        let call = match trap {
            Trap::Syscall(c) => Some(c.nr),
            _ => None,
        };
        self.hub.in_call(self.me.tid, g.regs(), call);
        let action = self.inner.on_trap(g, trap);
        self.hub.busy(self.me.tid);
        self.relock(g);
        action
    }

    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        match trap {
            Trap::Syscall(call) => {
                let caught = self.catch.as_ref().is_some_and(|w| w.as_ref().is_none_or(|w| w.contains(&call.nr)));
                if caught {
                    // `catch syscall`: a stop before the call and one after it, as ptrace gives.
                    self.me.in_syscall = Some(call.nr);
                    self.me.stopped_by = None;
                    let held = self.stop(g, Some(Stop::SyscallEntry(call.nr)));
                    if !matches!(held, Action::Resume) || self.hub.detached.load(Ordering::SeqCst) {
                        self.me.in_syscall = None;
                        return held;
                    }
                    if self.hub.stopped_by_other(self.me.tid) {
                        // gdb resumed other threads only (a locked scheduler): this one stays
                        // before its call, parked, until a resume names it.
                        self.guard = None;
                        self.me.park(self.hub, g);
                        self.relock(g);
                    }
                    self.me.in_syscall = None;
                }
                let action = self.inner_trap(g, trap);
                if call.creates_process() && matches!(action, Action::Return(0)) {
                    return self.leave_forked_child(g, action);
                }
                let action = match (caught, action) {
                    (true, Action::Return(v)) => {
                        let mut r = g.regs();
                        r.rax = v as u64;
                        g.set_regs(&r);
                        let after = self.stop(g, Some(Stop::SyscallReturn(call.nr)));
                        if !matches!(after, Action::Resume) {
                            return after;
                        }
                        Action::Return(v)
                    }
                    (_, a) => a,
                };
                // A stop the inner handler asks for (a trace's stop condition, the end of a
                // replay's trace) is a stop in gdb: the call answered, the guest held there.
                let action = match action {
                    Action::ReturnAndStop(v) => {
                        let mut r = g.regs();
                        r.rax = v as u64;
                        g.set_regs(&r);
                        self.me.stopped_by = None;
                        return self.stop(g, Some(Stop::Signal(SIGTRAP)));
                    }
                    a => a,
                };
                let over = self.me.step_over.take();
                if let Some((addr, _)) = over {
                    self.reinsert(g, addr);
                }
                if let (Some(e), Action::Return(v)) = (self.anchor, &action) {
                    if self.inner.event_index().is_some_and(|p| p >= e) {
                        // The anchor: a stop of its own, right after this call, where the
                        // single steps of a step back start. (A survey's step that was this
                        // call is counted first: the call may be the write looked for.)
                        if self.me.surveying {
                            self.survey_step(g);
                        }
                        self.anchor_seen = self.until.take().map_or(0, |(_, _, n)| n);
                        self.remove_internals(g);
                        return self.stop_after_call(g, *v, Stop::Step);
                    }
                }
                if over.is_some() || self.me.stepping || self.me.watching || self.me.surveying {
                    // The instruction stepped was this `syscall`.
                    self.survey_step(g);
                }
                if matches!(action, Action::Return(_)) {
                    self.survey_after_call(g);
                }
                if self.me.watching {
                    // The call may have written a watched byte (a read into it): a stop right
                    // after it, with its result.
                    if let (Action::Return(v), Some(at)) = (&action, self.watch_hit(g, true)) {
                        return self.stop_after_call(g, *v, Stop::Watch(at));
                    }
                }
                if self.me.watching || self.me.surveying {
                    // The steps go on.
                    trap_flag(g, true);
                    return action;
                }
                if over.is_none() && !self.me.stepping {
                    return action;
                }
                // The step (or the step off a breakpoint) ended with this `syscall`: the trap
                // flag goes, and a step stops here, at the return address, not one instruction
                // later where the flag would stop it. A continue goes on with the inner
                // handler's own answer.
                trap_flag(g, false);
                if !std::mem::take(&mut self.me.stepping) {
                    return action;
                }
                let Action::Return(v) = action else { return action };
                self.stop_after_call(g, v, Stop::Step)
            }
            Trap::Breakpoint { rip } => {
                let at = rip - 1;
                let ours = match self.entry {
                    Some((e, b)) if e == at => {
                        patch(g, at, b);
                        self.entry = None;
                        Some(None)
                    }
                    _ if self.breaks.contains_key(&at) => Some(Some(Stop::Break)),
                    _ if self.internal.contains_key(&at) => return self.internal_hit(g, at),
                    // The inner handler's own (a replay's patches): its business.
                    _ if self.inner.patched_byte(at).is_some() => return self.inner_trap(g, trap),
                    // A breakpoint gdb took out while this thread was on its way to it: the
                    // program's byte is back, and the thread goes on from it.
                    _ if !int3_at(g, at) => {
                        let mut r = g.regs();
                        r.rip = at;
                        g.set_regs(&r);
                        return Action::Resume;
                    }
                    _ => None,
                };
                match ours {
                    Some(why) => {
                        let mut r = g.regs();
                        r.rip = at;
                        g.set_regs(&r);
                        self.me.stopped_by = None;
                        self.stop(g, why)
                    }
                    // The program's own int3: a SIGTRAP stop after it, as on Linux.
                    None => {
                        self.me.stopped_by = Some((libc::SIGTRAP, 0x80, 0));
                        self.stop(g, Some(Stop::Signal(SIGTRAP)))
                    }
                }
            }
            Trap::SingleStep { .. }
                if self.me.stepping
                    && self.me.step_over.is_none()
                    && self.hub.peek_go(self.me.tid).is_some_and(|go| !go.step) =>
            {
                // A step gdb gave up while this thread was parked on its way here: it was
                // resumed with a continue, which its trap's end applies.
                self.me.stepping = false;
                trap_flag(g, false);
                Action::Resume
            }
            Trap::SingleStep { .. } => {
                trap_flag(g, false);
                if self.me.stepping || self.me.watching || self.me.surveying || self.me.step_over.is_some() {
                    self.survey_step(g);
                }
                if let Some((addr, cont)) = self.me.step_over.take() {
                    self.reinsert(g, addr);
                    let lead = self.lead;
                    if let Some(s) = self.survey.as_mut().filter(|_| lead) {
                        s.landed(addr, g.regs().rip);
                    }
                    if cont && !self.me.stepping && !self.me.watching && !self.me.surveying {
                        return Action::Resume;
                    }
                }
                if self.me.watching {
                    if let Some(at) = self.watch_hit(g, false) {
                        self.me.stopped_by = None;
                        return self.stop(g, Some(Stop::Watch(at)));
                    }
                }
                if self.me.watching || (self.me.surveying && !self.me.stepping) {
                    // A continue a step at a time goes on.
                    trap_flag(g, true);
                    return Action::Resume;
                }
                self.me.stopped_by = None;
                if std::mem::take(&mut self.me.stepping) {
                    self.stop(g, Some(Stop::Step))
                } else {
                    // Not gdb's step: the inner handler's (a replay steps over its points).
                    self.inner_trap(g, trap)
                }
            }
            Trap::Fault(f) => {
                let si = f.siginfo();
                self.me.stopped_by = Some((si.signo, si.code, si.addr));
                self.stop(g, Some(Stop::Signal(to_gdb(si.signo))))
            }
            Trap::Preempt if self.interrupted.swap(false, Ordering::SeqCst) || self.killed.load(Ordering::SeqCst) => {
                self.me.stopped_by = None;
                self.irreproducible = true;
                self.stop(g, Some(Stop::Signal(SIGINT)))
            }
            Trap::Preempt | Trap::HostSignal(_) | Trap::Timeout => self.inner_trap(g, trap),
        }
    }

    fn on_end(&mut self, outcome: &Outcome) {
        if self.counting.take().is_some() {
            // The continue ended the program: step back to the stop it was made at.
            self.restart = Some(Plan { script: self.log.clone(), then: Then::Report(Stop::Step) });
            return;
        }
        if self.restart.is_some() || !self.script.is_empty() {
            return;
        }
        let stop = match outcome {
            Outcome::Exited(c) => Stop::Exited(*c as u8),
            Outcome::Killed { signal, .. } => Stop::Killed(to_gdb(*signal)),
            Outcome::TimedOut => Stop::Killed(to_gdb(libc::SIGKILL)),
            Outcome::Stopped => return,
        };
        let _ = self.stops.send((self.me.tid, stop));
    }
}

/// Whether the instruction `code` a thread was at with registers `r` writes memory in
/// `addr..addr + len` (what cannot be read or decoded counts as writing there).
fn writes_to(g: &mut dyn Guest, code: &[u8], r: &Regs, addr: u64, len: u64) -> bool {
    use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};
    if code.is_empty() {
        return true;
    }
    let insn = Decoder::with_ip(64, code, r.rip, DecoderOptions::NONE).decode();
    if insn.is_invalid() {
        return true;
    }
    let (fs, gs) = g.process().map(|p| p.segment_bases()).unwrap_or((0, 0));
    let value = |reg: Register, _: usize, _: usize| -> Option<u64> {
        let full = reg.full_register();
        let v = match full {
            Register::RAX => r.rax,
            Register::RBX => r.rbx,
            Register::RCX => r.rcx,
            Register::RDX => r.rdx,
            Register::RSI => r.rsi,
            Register::RDI => r.rdi,
            Register::RBP => r.rbp,
            Register::RSP => r.rsp,
            Register::R8 => r.r8,
            Register::R9 => r.r9,
            Register::R10 => r.r10,
            Register::R11 => r.r11,
            Register::R12 => r.r12,
            Register::R13 => r.r13,
            Register::R14 => r.r14,
            Register::R15 => r.r15,
            Register::RIP => r.rip,
            Register::FS => fs,
            Register::GS => gs,
            Register::ES | Register::CS | Register::SS | Register::DS => 0,
            // A vector index (a scatter) or anything else: unknown.
            _ => return None,
        };
        // A 32-bit address register: its low half.
        Some(if reg.is_gpr32() { v & 0xffff_ffff } else { v })
    };
    let mut f = InstructionInfoFactory::new();
    let info = f.info(&insn);
    info.used_memory().iter().any(|m| {
        let writes =
            matches!(m.access(), OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite);
        if !writes {
            return false;
        }
        let size = m.memory_size().size().max(1) as u64;
        match m.virtual_address(0, value) {
            Some(va) => va < addr.saturating_add(len) && addr < va.saturating_add(size),
            None => true,
        }
    })
}

/// Whether an `int3` is at `addr` (or its byte cannot be read).
fn int3_at(g: &mut dyn Guest, addr: u64) -> bool {
    let mut b = [0u8; 1];
    g.read(GuestAddr(addr), &mut b).is_err() || b[0] == 0xcc
}

/// The general registers `r` as gdb has them (`orig_rax`: the syscall stopped in, or -1).
fn gdb_regs(r: &Regs, orig_rax: u64) -> GdbRegs {
    GdbRegs {
        gpr: [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
            r.r15,
        ],
        rip: r.rip,
        eflags: r.rflags as u32,
        seg: [0x33, 0x2b, 0, 0, 0, 0],
        orig_rax,
        ..GdbRegs::default()
    }
}

/// The trapping thread's registers as gdb has them: the general ones, the segment bases,
/// x87, SSE and the AVX upper halves.
fn regs_of(g: &mut dyn Guest, in_syscall: Option<u64>) -> GdbRegs {
    let mut out = gdb_regs(&g.regs(), in_syscall.unwrap_or(u64::MAX));
    let Some(p) = g.process() else { return out };
    (out.fs_base, out.gs_base) = p.segment_bases();
    let view = p.cpu_view();
    let Some(x) = p.xsave() else { return out };
    let u16_ = |o: usize| u16::from_le_bytes([x[o], x[o + 1]]) as u32;
    let u32_ = |o: usize| u32::from_le_bytes(x[o..o + 4].try_into().unwrap());
    // The FXSAVE area's abridged tag (a bit per register) as the full tag word gdb
    // shows: empty (3) or valid (0).
    let abridged = x[4];
    let ftag = (0..8).fold(0u32, |t, i| t | if abridged >> i & 1 == 0 { 3 << (2 * i) } else { 0 });
    out.fpu = [u16_(0), u16_(2), ftag, u16_(12), u32_(8), u16_(20), u32_(16), u16_(6) & 0x7ff];
    for i in 0..8 {
        out.st[i].copy_from_slice(&x[32 + 16 * i..42 + 16 * i]);
    }
    for i in 0..16 {
        out.xmm[i].copy_from_slice(&x[160 + 16 * i..176 + 16 * i]);
    }
    out.mxcsr = u32_(24);
    if let Some(o) = avx_offset(&view, &x) {
        for i in 0..16 {
            out.ymmh[i].copy_from_slice(&x[o + 16 * i..o + 16 * (i + 1)]);
        }
    }
    out
}

/// Writes the trapping thread's registers from gdb's; false if the engine refuses the FPU part.
fn set_regs(g: &mut dyn Guest, n: &GdbRegs) -> bool {
    let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15] = n.gpr;
    let old = g.regs();
    let rflags = (old.rflags & !0xffff_ffff) | n.eflags as u64;
    let r = Regs { rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip: n.rip, rflags };
    g.set_regs(&r);
    let Some(p) = g.process() else { return true };
    let view = p.cpu_view();
    let Some(mut x) = p.xsave() else { return true };
    x[0..2].copy_from_slice(&(n.fpu[0] as u16).to_le_bytes());
    x[2..4].copy_from_slice(&(n.fpu[1] as u16).to_le_bytes());
    for i in 0..8 {
        x[32 + 16 * i..42 + 16 * i].copy_from_slice(&n.st[i]);
    }
    for i in 0..16 {
        x[160 + 16 * i..176 + 16 * i].copy_from_slice(&n.xmm[i]);
    }
    x[24..28].copy_from_slice(&n.mxcsr.to_le_bytes());
    if let Some(o) = avx_offset(&view, &x) {
        for i in 0..16 {
            x[o + 16 * i..o + 16 * (i + 1)].copy_from_slice(&n.ymmh[i]);
        }
    }
    p.set_xsave(&x)
}

impl<H: TrapHandler> Debugger<H> {
    /// A trap after gdb went away: the debugger's own leftovers on this thread (a step it
    /// began, a breakpoint taken out while the thread was on its way to it) end here; the
    /// rest is the inner handler's.
    fn after_detach(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        let me = &mut self.me;
        match trap {
            Trap::SingleStep { .. } if me.stepping || me.watching || me.surveying || me.step_over.is_some() => {
                (me.stepping, me.watching, me.surveying, me.step_over) = (false, false, false, None);
                trap_flag(g, false);
                Action::Resume
            }
            Trap::Breakpoint { rip } if !int3_at(g, rip - 1) => {
                let mut r = g.regs();
                r.rip = rip - 1;
                g.set_regs(&r);
                Action::Resume
            }
            _ => self.inner.on_trap(g, trap),
        }
    }

    /// At a trap's start: parked first if another thread serves gdb. A single step of this
    /// thread's that gdb gave up meanwhile (it resumed the thread with a continue) is moot:
    /// the trap is taken in (Some), and the thread goes on as that resume said.
    fn arrive(&mut self, g: &mut dyn Guest, trap: &Trap) -> Option<Action> {
        self.hub.busy(self.me.tid);
        if let Trap::Breakpoint { rip } = trap {
            if self.shared_breaks.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&(rip - 1)) {
                // At one of gdb's breakpoints, not yet told: wherever this thread parks
                // before it tells, gdb sees it there, as it sees a thread that stopped at one.
                let mut r = g.regs();
                r.rip = rip - 1;
                g.set_regs(&r);
            }
        }
        if !self.hub.stopped_by_other(self.me.tid) {
            return None;
        }
        self.me.park(&self.hub, g);
        let moot = matches!(trap, Trap::SingleStep { .. }) && self.me.stepping && self.me.step_over.is_none();
        if moot && self.hub.peek_go(self.me.tid).is_some_and(|go| !go.step) {
            self.me.stepping = false;
            trap_flag(g, false);
            self.depart(g);
            return Some(Action::Resume);
        }
        None
    }

    /// At a trap's end: parked if another thread serves gdb; then on as the last resume
    /// asked of this thread (a step, or a continue that may step off a breakpoint or
    /// compare watchpoints; a step it was making is given up), back in user code as the
    /// stops see it.
    fn depart(&mut self, g: &mut dyn Guest) {
        if self.hub.stopped_by_other(self.me.tid) {
            self.me.park(&self.hub, g);
        }
        if let Some(go) = self.hub.take_go(self.me.tid) {
            if !go.step && self.me.stepping {
                self.me.stepping = false;
                trap_flag(g, false);
            }
            let mut at = self.at(g);
            at.resume(g, go.step, None);
        }
        self.hub.running(self.me.tid);
    }
}

impl<H: TrapHandler> TrapHandler for Debugger<H> {
    fn on_start(&mut self, g: &mut dyn Guest, start: &Start) {
        self.inner.on_start(g, start);
        self.me.tid = g.tid();
        self.hub.join(self.me.tid, g.process().map(|p| p.kicker()), self.me.tx.clone());
        let mut at = self.at(g);
        at.auxv = auxv_of(g, start);
        // The first stop is at the first instruction: an int3 there, taken out at the stop.
        let rip = g.regs().rip;
        let mut b = [0u8; 1];
        if g.read(GuestAddr(rip), &mut b).is_ok() && patch(g, rip, 0xcc) {
            at.entry = Some((rip, b[0]));
        }
        drop(at);
        self.hub.running(self.me.tid);
    }

    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        if self.hub.detached.load(Ordering::SeqCst) {
            return self.after_detach(g, trap);
        }
        if let Some(action) = self.arrive(g, trap) {
            return action;
        }
        let action = self.at(g).on_trap(g, trap);
        if !self.hub.detached.load(Ordering::SeqCst) && matches!(action, Action::Resume | Action::Return(_)) {
            self.depart(g);
        }
        action
    }

    fn on_end(&mut self, g: &mut dyn Guest, outcome: &Outcome) {
        self.inner.on_end(g, outcome);
        // The run's end is told once, by the first thread's handler.
        if self.lead {
            self.at(g).on_end(outcome);
        }
    }

    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        let inner = self.inner.new_thread()?;
        Some(Box::new(Debugger {
            inner,
            me: Thread::new(),
            core: self.core.clone(),
            hub: self.hub.clone(),
            shared_breaks: self.shared_breaks.clone(),
            lead: false,
        }))
    }

    fn on_thread_start(&mut self, g: &mut dyn Guest) {
        self.inner.on_thread_start(g);
        self.me.tid = g.tid();
        self.hub.join(self.me.tid, g.process().map(|p| p.kicker()), self.me.tx.clone());
        if self.hub.detached.load(Ordering::SeqCst) {
            return;
        }
        // The new thread's registers are its parent's at the clone: a trap flag there was the
        // debugger's (a step, a watch), not this thread's. With watchpoints set, it runs a
        // step at a time and compares, as every thread does.
        trap_flag(g, false);
        let mut at = self.at(g);
        if !at.watches.is_empty() {
            at.resume(g, false, None);
        }
        drop(at);
        // Made during a stop (by the thread a clone parked): stopped before it runs.
        self.depart(g);
    }

    fn on_thread_exit(&mut self, g: &mut dyn Guest) {
        self.hub.leave(self.me.tid);
        self.inner.on_thread_exit(g)
    }

    fn on_signal(&mut self, g: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        self.inner.on_signal(g, sig, siginfo)
    }

    fn patched_byte(&self, addr: u64) -> Option<u8> {
        let ours = self.shared_breaks.lock().unwrap_or_else(|e| e.into_inner()).get(&addr).copied();
        ours.or_else(|| self.inner.patched_byte(addr))
    }
}
