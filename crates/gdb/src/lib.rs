//! `trapbox run --gdb`, `replay --gdb`, `trace --stop-on … --gdb`: a GDB remote stub on the
//! trap API. The [`Debugger`] is a [`TrapHandler`] wrapped around the tool's own (the
//! passthrough, the replayer, the tracer), which keeps answering syscalls and its own
//! breakpoints; at every stop (the program's first instruction, a breakpoint, a single
//! step, a fault, Ctrl-C) it tells the gdb side why, then answers gdb's requests — registers,
//! memory, breakpoints — from inside the trap, until gdb resumes the guest. The gdb side
//! ([`stub`]) runs `gdbstub` on a thread of its own and never touches the guest; the two
//! talk over channels. Breakpoints are `int3`s placed with the `Process` capability; memory
//! reads show the program's own bytes under them.
//!
//! Write watchpoints are answered in software, on any engine: a continue with one set runs
//! the guest a step at a time (the trap flag) and compares the watched bytes after each step
//! and after each syscall (the kernel writes for the guest too); reads cannot be seen so, and
//! are refused.
//!
//! On a replay, gdb can go back ([`rewind`]: the replay run again from its start), and
//! `monitor checkpoint` / `restart N` name positions to go to. Not yet: threads other than
//! the first (they run with the
//! inner handler's thread handler and pass gdb's breakpoints without stopping: [`Follower`]).

pub mod arch;
mod rewind;
mod stub;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use trapbox_abi::arch::cpuview::CpuView;
use trapbox_trap::{siginfo_bytes, Action, Guest, GuestAddr, Kicker, Outcome, Regs, Start, Trap, TrapHandler};

use arch::GdbRegs;
pub use rewind::Plan;
use rewind::{Hit, Logged, Survey, Then};
use stub::{Proxy, Request, Stop};

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

/// The debugging handler for the guest's first thread, around `inner`.
pub struct Debugger<H> {
    inner: H,
    requests: Receiver<Request>,
    stops: Sender<Stop>,
    kicker: Arc<Mutex<Option<Kicker>>>,
    /// gdb's breakpoints: address → the program's byte under the `int3`.
    breaks: BTreeMap<u64, u8>,
    /// The same, for the other threads' handlers ([`Follower`]).
    shared_breaks: Arc<Mutex<BTreeMap<u64, u8>>>,
    /// The `int3` at the first instruction that gives gdb its first stop.
    entry: Option<(u64, u8)>,
    /// A breakpoint being stepped over: its address, and whether to continue after.
    step_over: Option<(u64, bool)>,
    /// gdb asked for a single step.
    stepping: bool,
    auxv: Vec<u8>,
    /// The signal and fault of the last stop, for gdb passing the signal on.
    stopped_by: Option<(i32, i32, u64)>,
    /// gdb is gone: the program runs on undisturbed.
    detached: bool,
    /// gdb's last word was `kill`.
    killed: Arc<AtomicBool>,
    /// gdb asked for the running guest to stop (the kick is gdb's, not the inner handler's).
    interrupted: Arc<AtomicBool>,
    /// `catch syscall`: None when off; Some(None) for every call, Some(Some(numbers)) for those.
    catch: Option<Option<Vec<u64>>>,
    /// The syscall stopped at, while gdb looks at its entry (`orig_rax`).
    in_syscall: Option<u64>,
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
    /// A continue with watchpoints set: the guest runs a step at a time, compared after each.
    watching: bool,
    /// A continue in a survey run with watchpoints: a step at a time, each counted and the
    /// surveyed bytes compared after it.
    surveying: bool,
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
}

/// Starts the gdb side on `conn`; returns the handler for the guest (around `inner`) and the
/// gdb side's thread, which ends when gdb detaches, kills or the guest ends.
/// `reversible`: the guest is a replay the caller runs again from its start whenever a run
/// ends with [`Debugger::take_restart`] saying where to go ([`Debugger::rebind`]).
pub fn attach<H>(
    conn: TcpStream,
    inner: H,
    reversible: bool,
) -> (Debugger<H>, std::thread::JoinHandle<Result<DisconnectReason, String>>) {
    let (req_tx, req_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let kicker = Arc::new(Mutex::new(None));
    let killed = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut proxy = Proxy {
        requests: req_tx,
        stops: stop_rx,
        kicker: kicker.clone(),
        interrupted: interrupted.clone(),
        reversible,
    };
    let (kick, kill) = (kicker.clone(), killed.clone());
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
            if let Some(k) = kick.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                k.kick();
            }
            end
        })
        .expect("a thread for the gdb connection");
    let carried = Carried {
        requests: req_rx,
        stops: stop_tx,
        kicker,
        shared_breaks: Arc::default(),
        killed,
        interrupted,
        reversible,
        detached: false,
        irreproducible: false,
        checkpoints: Vec::new(),
    };
    let d = Debugger::assemble(inner, carried, Vec::new(), VecDeque::new(), Then::Live, None);
    (d, thread)
}

/// What a debugger keeps from one run of a replay to the next: gdb's connection, and what
/// holds for the whole session.
struct Carried {
    requests: Receiver<Request>,
    stops: Sender<Stop>,
    kicker: Arc<Mutex<Option<Kicker>>>,
    shared_breaks: Arc<Mutex<BTreeMap<u64, u8>>>,
    killed: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
    reversible: bool,
    detached: bool,
    irreproducible: bool,
    checkpoints: Vec<Vec<(usize, Logged)>>,
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
        Debugger {
            inner,
            requests: c.requests,
            stops: c.stops,
            kicker: c.kicker,
            breaks: BTreeMap::new(),
            shared_breaks: c.shared_breaks,
            entry: None,
            step_over: None,
            stepping: false,
            auxv: Vec::new(),
            stopped_by: None,
            detached: c.detached,
            killed: c.killed,
            interrupted: c.interrupted,
            catch: None,
            in_syscall: None,
            reversible: c.reversible,
            log,
            stop_index: 0,
            resumed_at: 0,
            script,
            then,
            irreproducible: c.irreproducible,
            restart: None,
            internal: BTreeMap::new(),
            survey,
            until: None,
            counting: None,
            count_until: None,
            watches: BTreeMap::new(),
            watching: false,
            surveying: false,
            stop_events: Vec::new(),
            anchor: None,
            anchor_seen: 0,
            checkpoints: c.checkpoints,
            going_to: None,
        }
    }

    /// Where the next run of the replay must go, if this one ended to go back.
    pub fn take_restart(&mut self) -> Option<Plan> {
        self.restart.take()
    }

    /// The same debugger (gdb's connection, its log) around `inner`, for a new run of the
    /// replay from its start, going where `plan` says.
    pub fn rebind<H2>(self, inner: H2, plan: Option<Plan>) -> Debugger<H2> {
        let (log, script, then, survey) = match plan {
            Some(p) => {
                let survey = match &p.then {
                    Then::Survey(addrs, watches) => Some(Survey::new(addrs.clone(), watches)),
                    _ => None,
                };
                (Vec::new(), p.script.into(), p.then, survey)
            }
            None => (self.log, VecDeque::new(), Then::Live, None),
        };
        let carried = Carried {
            requests: self.requests,
            stops: self.stops,
            kicker: self.kicker,
            shared_breaks: self.shared_breaks,
            killed: self.killed,
            interrupted: self.interrupted,
            reversible: self.reversible,
            detached: self.detached,
            irreproducible: self.irreproducible,
            checkpoints: self.checkpoints,
        };
        Debugger::assemble(inner, carried, log, script, then, survey)
    }
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

impl<H: TrapHandler> Debugger<H> {
    /// Tells gdb why the guest stopped and answers its requests until it resumes the guest.
    /// The first stop (`why` None) is not told: gdb takes a target it connects to as stopped.
    fn stop(&mut self, g: &mut dyn Guest, why: Option<Stop>) -> Action {
        let idx = self.stop_index;
        self.stop_index += 1;
        self.watching = false;
        self.surveying = false;
        self.anchor = None;
        self.stop_events.push(self.inner.event_index());
        let rip = g.regs().rip;
        if idx == 0 {
            let addrs: Vec<u64> = self.survey.as_ref().map(|s| s.addrs.iter().copied().collect()).unwrap_or_default();
            for a in addrs {
                self.add_internal(g, a);
            }
            if let Some(s) = self.survey.as_mut() {
                for (addr, len, seen) in s.watches.iter_mut() {
                    let mut bytes = vec![0u8; *len as usize];
                    *seen = g.read(GuestAddr(*addr), &mut bytes).ok().map(|_| bytes);
                }
            }
        }
        if let Some(s) = self.survey.as_mut() {
            if matches!(why, Some(Stop::Step | Stop::Break)) && s.addrs.contains(&rip) {
                s.nth += 1;
                s.hits.push(Hit { resumed_at: self.resumed_at, nth: s.nth, stop: Some(idx), step: s.steps });
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
            Then::Survey(..) => return self.end_survey(idx),
        };
        if self.detached || why.is_some_and(|w| self.stops.send(w).is_err()) {
            return self.detach(g);
        }
        loop {
            let Ok(req) = self.requests.recv() else { return self.detach(g) };
            match req {
                Request::ReadRegs(tx) => {
                    let _ = tx.send(self.regs_of(g));
                }
                Request::WriteRegs(r, tx) => {
                    self.log.push((idx, Logged::WriteRegs(r.clone())));
                    let _ = tx.send(self.set_regs(g, &r));
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
                Request::Resume { .. } | Request::Reverse { .. } if self.going_to.is_some() => {
                    // `monitor restart N`: the run ends, and the next goes to the checkpoint.
                    self.restart = self.going_to.take();
                    return Action::Stop;
                }
                Request::Resume { step, signal } => {
                    self.log.push((idx, Logged::Resume { step, signal, until: None, anchor: None }));
                    self.publish();
                    return self.resume(g, step, signal);
                }
                Request::Reverse { step } => match self.go_back(idx, step) {
                    Some(action) => return action,
                    None => {
                        if self.stops.send(if idx == 0 { Stop::ReplayBegin } else { Stop::Signal(SIGTRAP) }).is_err() {
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
                self.checkpoints.push(rewind::upto(&self.log, idx));
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
        self.detached = true;
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
        self.detached = true;
        for (addr, b) in std::mem::take(&mut self.breaks) {
            patch(g, addr, b);
        }
        self.publish();
        trap_flag(g, false);
        Action::Resume
    }

    fn resume(&mut self, g: &mut dyn Guest, step: bool, signal: Option<u8>) -> Action {
        self.resumed_at = self.stop_index.saturating_sub(1);
        let mut survey_steps = false;
        if let Some(s) = self.survey.as_mut() {
            s.nth = 0;
            s.steps = 0;
            survey_steps = s.steps();
        }
        if let (Some(sig), Some((signo, code, addr))) = (signal.and_then(from_gdb), self.stopped_by.take()) {
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
                self.watching = true;
                r.rflags |= TF;
            }
        }
        if survey_steps && !step {
            self.surveying = true;
            r.rflags |= TF;
        }
        if let Some(orig) = self.breaks.get(&r.rip).or(self.internal.get(&r.rip)).copied() {
            // Off the breakpoint first: the program's byte back for one step.
            patch(g, r.rip, orig);
            self.step_over = Some((r.rip, !step));
            r.rflags |= TF;
        }
        if step {
            self.stepping = true;
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
        let mut bytes = vec![0u8; len.clamp(1, 4096) as usize];
        if g.read(GuestAddr(addr), &mut bytes).is_err() {
            return false;
        }
        self.watches.insert(addr, bytes);
        true
    }

    /// A step of a survey run that compares watchpoints: counted, and each surveyed range that
    /// changed noted with the step that changed it.
    fn survey_step(&mut self, g: &mut dyn Guest) {
        let resumed_at = self.resumed_at;
        let Some(s) = self.survey.as_mut().filter(|s| s.steps()) else { return };
        s.steps += 1;
        for (addr, len, seen) in s.watches.iter_mut() {
            let mut now = vec![0u8; *len as usize];
            let now = g.read(GuestAddr(*addr), &mut now).ok().map(|_| now);
            match (&*seen, &now) {
                (Some(before), Some(after)) if before != after => {
                    s.changes.push(rewind::Change { resumed_at, step: s.steps, addr: *addr });
                }
                _ => {}
            }
            if now.is_some() {
                *seen = now;
            }
        }
    }

    /// A stop right after a syscall the inner handler answered with `v`: the result in RAX,
    /// the trap flag off.
    fn stop_after_call(&mut self, g: &mut dyn Guest, v: i64, why: Stop) -> Action {
        let mut r = g.regs();
        r.rax = v as u64;
        r.rflags &= !TF;
        g.set_regs(&r);
        self.stopped_by = None;
        self.stop(g, Some(why))
    }

    /// Every watchpoint's bytes as they are now.
    fn rebase_watches(&mut self, g: &mut dyn Guest) {
        for (addr, bytes) in self.watches.iter_mut() {
            let _ = g.read(GuestAddr(*addr), bytes);
        }
    }

    /// The first watchpoint whose bytes changed since it was last looked at (all of them
    /// taken as they are now): the software answer to a write watchpoint, asked after every
    /// single step of a continue and after every syscall, which may write for the guest.
    fn watch_hit(&mut self, g: &mut dyn Guest) -> Option<u64> {
        let mut hit = None;
        for (addr, bytes) in self.watches.iter_mut() {
            let mut now = vec![0u8; bytes.len()];
            if g.read(GuestAddr(*addr), &mut now).is_ok() && now != *bytes {
                *bytes = now;
                hit = hit.or(Some(*addr));
            }
        }
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
                self.set_regs(g, &r);
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
    fn go_back(&mut self, idx: usize, step: bool) -> Option<Action> {
        if !self.reversible || idx == 0 {
            return None;
        }
        if self.irreproducible {
            eprintln!("trapbox: gdb: cannot go back across a Ctrl-C stop (where it landed cannot be reproduced)");
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
                    Plan { script, then: Then::Count(until.clone()) }
                }
                _ => {
                    eprintln!("trapbox: gdb: cannot step back across a continue that passed a signal on");
                    return None;
                }
            }
        } else {
            let watches = self.watches.iter().map(|(a, b)| (*a, b.len() as u64)).collect();
            Plan { script: self.log.clone(), then: Then::Survey(self.breaks.keys().copied().collect(), watches) }
        };
        self.restart = Some(plan);
        Some(Action::Stop)
    }

    /// Counting steps from the stop a logged continue was made at, to the stop it reached:
    /// that one is reached again when a step arrives at one of the breakpoints, or faults.
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
                (n + 1, at_until || self.breaks.contains_key(&rip))
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
        if let Some((addrs, m, n)) = self.until.as_mut() {
            if addrs.contains(&at) {
                *n += 1;
                if *n == *m {
                    self.until = None;
                    self.remove_internals(g);
                    self.stopped_by = None;
                    return self.stop(g, Some(Stop::Break));
                }
            }
        }
        if let Some(s) = self.survey.as_mut() {
            if s.addrs.contains(&at) {
                s.nth += 1;
                s.hits.push(Hit { resumed_at: self.resumed_at, nth: s.nth, stop: None, step: s.steps });
            }
        }
        // On: the program's byte back for one step, the int3 again after it.
        if let Some(orig) = self.internal.get(&at).copied() {
            patch(g, at, orig);
        }
        r.rflags |= TF;
        g.set_regs(&r);
        self.step_over = Some((at, true));
        Action::Resume
    }

    /// The end of a survey run: go to the last arrival before this stop, or to the start.
    fn end_survey(&mut self, idx: usize) -> Action {
        let s = self.survey.take().expect("a survey run");
        if s.steps() {
            // Positions are (the stop a resume was made at, steps into it); the last write
            // before here is reached at the step before it.
            let here = (self.resumed_at, s.steps);
            let last_hit =
                s.hits.iter().filter(|h| (h.resumed_at, h.step) < here).max_by_key(|h| (h.resumed_at, h.step));
            let last_change =
                s.changes.iter().filter(|c| (c.resumed_at, c.step - 1) < here).max_by_key(|c| (c.resumed_at, c.step));
            if let Some(c) =
                last_change.filter(|c| last_hit.is_none_or(|h| (h.resumed_at, h.step) < (c.resumed_at, c.step - 1)))
            {
                let plan = match rewind::resume_at(&self.log, c.resumed_at) {
                    Some(Logged::Resume { signal: None, .. }) => {
                        let then = match c.step - 1 {
                            0 => Then::Report(Stop::Watch(c.addr)),
                            n => Then::Steps(n, Stop::Watch(c.addr)),
                        };
                        Plan { script: rewind::upto(&self.log, c.resumed_at), then }
                    }
                    _ => {
                        eprintln!("trapbox: gdb: cannot go back into a continue that passed a signal on");
                        return Action::Stop;
                    }
                };
                self.restart = Some(plan);
                return Action::Stop;
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
                    _ => return Action::Stop,
                }
                Plan { script, then: Then::Report(Stop::Break) }
            }
        };
        self.restart = Some(plan);
        Action::Stop
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

    fn regs_of(&self, g: &mut dyn Guest) -> GdbRegs {
        let r = g.regs();
        let mut out = GdbRegs {
            gpr: [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
                r.r15,
            ],
            rip: r.rip,
            eflags: r.rflags as u32,
            seg: [0x33, 0x2b, 0, 0, 0, 0],
            orig_rax: self.in_syscall.unwrap_or(u64::MAX),
            ..GdbRegs::default()
        };
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

    fn set_regs(&self, g: &mut dyn Guest, n: &GdbRegs) -> bool {
        let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15] = n.gpr;
        let old = g.regs();
        let rflags = (old.rflags & !0xffff_ffff) | n.eflags as u64;
        let r =
            Regs { rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip: n.rip, rflags };
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

impl<H: TrapHandler> TrapHandler for Debugger<H> {
    fn on_start(&mut self, g: &mut dyn Guest, start: &Start) {
        self.inner.on_start(g, start);
        self.auxv = auxv_of(g, start);
        // The first stop is at the first instruction: an int3 there, taken out at the stop.
        let rip = g.regs().rip;
        let mut b = [0u8; 1];
        if g.read(GuestAddr(rip), &mut b).is_ok() && patch(g, rip, 0xcc) {
            self.entry = Some((rip, b[0]));
        }
        *self.kicker.lock().unwrap_or_else(|e| e.into_inner()) = g.process().map(|p| p.kicker());
    }

    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        if self.detached {
            return self.inner.on_trap(g, trap);
        }
        match trap {
            Trap::Syscall(call) => {
                let caught = self.catch.as_ref().is_some_and(|w| w.as_ref().is_none_or(|w| w.contains(&call.nr)));
                if caught {
                    // `catch syscall`: a stop before the call and one after it, as ptrace gives.
                    self.in_syscall = Some(call.nr);
                    self.stopped_by = None;
                    let held = self.stop(g, Some(Stop::SyscallEntry(call.nr)));
                    self.in_syscall = None;
                    if !matches!(held, Action::Resume) || self.detached {
                        return held;
                    }
                }
                let action = self.inner.on_trap(g, trap);
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
                        self.stopped_by = None;
                        return self.stop(g, Some(Stop::Signal(SIGTRAP)));
                    }
                    a => a,
                };
                let over = self.step_over.take();
                if let Some((addr, _)) = over {
                    self.reinsert(g, addr);
                }
                if let (Some(e), Action::Return(v)) = (self.anchor, &action) {
                    if self.inner.event_index().is_some_and(|p| p >= e) {
                        // The anchor: a stop of its own, right after this call, where the
                        // single steps of a step back start.
                        self.anchor_seen = self.until.take().map_or(0, |(_, _, n)| n);
                        self.remove_internals(g);
                        return self.stop_after_call(g, *v, Stop::Step);
                    }
                }
                if over.is_some() || self.stepping || self.watching || self.surveying {
                    // The instruction stepped was this `syscall`.
                    self.survey_step(g);
                }
                if self.watching {
                    // The call may have written a watched byte (a read into it): a stop right
                    // after it, with its result.
                    if let (Action::Return(v), Some(at)) = (&action, self.watch_hit(g)) {
                        return self.stop_after_call(g, *v, Stop::Watch(at));
                    }
                }
                if self.watching || self.surveying {
                    // The steps go on.
                    trap_flag(g, true);
                    return action;
                }
                if over.is_none() && !self.stepping {
                    return action;
                }
                // The step (or the step off a breakpoint) ended with this `syscall`: the trap
                // flag goes, and a step stops here, at the return address, not one instruction
                // later where the flag would stop it. A continue goes on with the inner
                // handler's own answer.
                trap_flag(g, false);
                if !std::mem::take(&mut self.stepping) {
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
                    _ if self.inner.patched_byte(at).is_some() => return self.inner.on_trap(g, trap),
                    _ => None,
                };
                match ours {
                    Some(why) => {
                        let mut r = g.regs();
                        r.rip = at;
                        g.set_regs(&r);
                        self.stopped_by = None;
                        self.stop(g, why)
                    }
                    // The program's own int3: a SIGTRAP stop after it, as on Linux.
                    None => {
                        self.stopped_by = Some((libc::SIGTRAP, 0x80, 0));
                        self.stop(g, Some(Stop::Signal(SIGTRAP)))
                    }
                }
            }
            Trap::SingleStep { .. } => {
                trap_flag(g, false);
                if self.stepping || self.watching || self.surveying || self.step_over.is_some() {
                    self.survey_step(g);
                }
                if let Some((addr, cont)) = self.step_over.take() {
                    self.reinsert(g, addr);
                    if cont && !self.stepping && !self.watching && !self.surveying {
                        return Action::Resume;
                    }
                }
                if self.watching {
                    if let Some(at) = self.watch_hit(g) {
                        self.stopped_by = None;
                        return self.stop(g, Some(Stop::Watch(at)));
                    }
                }
                if self.watching || (self.surveying && !self.stepping) {
                    // A continue a step at a time goes on.
                    trap_flag(g, true);
                    return Action::Resume;
                }
                self.stopped_by = None;
                if std::mem::take(&mut self.stepping) {
                    self.stop(g, Some(Stop::Step))
                } else {
                    // Not gdb's step: the inner handler's (a replay steps over its points).
                    self.inner.on_trap(g, trap)
                }
            }
            Trap::Fault(f) => {
                let si = f.siginfo();
                self.stopped_by = Some((si.signo, si.code, si.addr));
                self.stop(g, Some(Stop::Signal(to_gdb(si.signo))))
            }
            Trap::Preempt if self.interrupted.swap(false, Ordering::SeqCst) || self.killed.load(Ordering::SeqCst) => {
                self.stopped_by = None;
                self.irreproducible = true;
                self.stop(g, Some(Stop::Signal(SIGINT)))
            }
            Trap::Preempt | Trap::HostSignal(_) | Trap::Timeout => self.inner.on_trap(g, trap),
        }
    }

    fn on_end(&mut self, g: &mut dyn Guest, outcome: &Outcome) {
        self.inner.on_end(g, outcome);
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
        let _ = self.stops.send(stop);
    }

    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        let inner = self.inner.new_thread()?;
        Some(Box::new(Follower { inner, breaks: self.shared_breaks.clone(), over: None }))
    }

    fn on_signal(&mut self, g: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        self.inner.on_signal(g, sig, siginfo)
    }

    fn patched_byte(&self, addr: u64) -> Option<u8> {
        self.breaks.get(&addr).copied().or_else(|| self.inner.patched_byte(addr))
    }
}

/// The handler of a thread other than the first: gdb follows only the first, so another
/// thread that reaches one of gdb's breakpoints passes it without stopping (the program's
/// byte put back for one step, then the `int3` again) instead of dying of its SIGTRAP.
/// While that byte is back, the first thread could pass the same address unseen.
struct Follower {
    inner: Box<dyn TrapHandler + Send>,
    breaks: Arc<Mutex<BTreeMap<u64, u8>>>,
    /// The breakpoint being stepped over.
    over: Option<u64>,
}

impl TrapHandler for Follower {
    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        match trap {
            Trap::Breakpoint { rip } => {
                let at = rip - 1;
                let orig = self.breaks.lock().unwrap_or_else(|e| e.into_inner()).get(&at).copied();
                let Some(orig) = orig else { return self.inner.on_trap(g, trap) };
                patch(g, at, orig);
                let mut r = g.regs();
                r.rip = at;
                r.rflags |= TF;
                g.set_regs(&r);
                self.over = Some(at);
                Action::Resume
            }
            Trap::SingleStep { .. } if self.over.is_some() => {
                let at = self.over.take().unwrap_or_default();
                if self.breaks.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&at) {
                    patch(g, at, 0xcc);
                }
                trap_flag(g, false);
                Action::Resume
            }
            _ => self.inner.on_trap(g, trap),
        }
    }
    fn on_thread_start(&mut self, g: &mut dyn Guest) {
        self.inner.on_thread_start(g)
    }
    fn on_thread_exit(&mut self, g: &mut dyn Guest) {
        self.inner.on_thread_exit(g)
    }
    fn on_signal(&mut self, g: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        self.inner.on_signal(g, sig, siginfo)
    }
    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        let inner = self.inner.new_thread()?;
        Some(Box::new(Follower { inner, breaks: self.breaks.clone(), over: None }))
    }
    fn patched_byte(&self, addr: u64) -> Option<u8> {
        let orig = self.breaks.lock().unwrap_or_else(|e| e.into_inner()).get(&addr).copied();
        orig.or_else(|| self.inner.patched_byte(addr))
    }
}
