//! All-stop across the guest's threads, as gdb expects of a Linux target: when one thread
//! stops for gdb, every other thread stops too before gdb hears of it, and they all go on
//! together when gdb resumes.
//!
//! The thread that stops *claims* the stop ([`Hub::claim`]) and serves gdb; only one thread
//! holds a claim at a time. The others are kicked out of user code and *park* at their next
//! trap, where each answers gdb's questions about its own registers (its [`Msg`] channel)
//! until the resume releases it with what gdb asked of it ([`Go`]). A thread that waits inside
//! a trap (a blocking call: a join, a read) cannot be brought out of it; it counts as stopped
//! there, its registers as they were when the call began (read-only), and parks when the call
//! returns if the stop is still on. When gdb locks the scheduler (it does to step one thread
//! off a breakpoint), the threads it does not name stay parked through the resume (`held`).
//!
//! Every wait here lets the guest's shared state go (`Process::wait_for`), so that the
//! thread holding the claim and the parked threads take turns at it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use trapbox_trap::{Guest, Kicker, Regs};

use crate::arch::GdbRegs;

/// Waits until `ready` says so, with the guest's shared state let go where the engine has
/// one; false once the run is ending.
pub(crate) fn wait(g: &mut dyn Guest, ready: &mut dyn FnMut() -> bool) -> bool {
    match g.process() {
        Some(p) => p.wait_for(ready),
        None => loop {
            if ready() {
                return true;
            }
        },
    }
}

/// What gdb asked of one thread at a resume.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Go {
    pub step: bool,
    pub signal: Option<u8>,
}

/// A question for a parked thread, about its own state.
pub(crate) enum ThreadReq {
    ReadRegs(Sender<GdbRegs>),
    WriteRegs(Box<GdbRegs>, Sender<bool>),
}

/// What a parked thread gets: a question, or the end of the stop.
pub(crate) enum Msg {
    Req(ThreadReq),
    Go,
}

/// Where a thread is, as a stop sees it.
enum Place {
    /// In user code, or on its way to a trap: it must be kicked.
    Running,
    /// In its handler, on the way to park (every way through a trap parks while a stop is
    /// on, except a call of the inner handler's).
    Busy,
    /// Inside the inner handler's answer to a trap, which may block (a join, a read): its
    /// registers when the call began, and the syscall it is in, if it is in one.
    InCall(Regs, Option<u64>),
    /// Parked: it answers questions on its channel.
    Parked,
}

struct Slot {
    kicker: Option<Kicker>,
    place: Place,
    tx: Sender<Msg>,
    /// What the last resume asked of it, while it had not parked to hear it.
    go: Option<Go>,
}

#[derive(Default)]
struct State {
    /// The thread serving gdb.
    server: Option<i32>,
    /// Threads the last resume left stopped (gdb locked the scheduler to run others).
    held: std::collections::BTreeSet<i32>,
    threads: BTreeMap<i32, Slot>,
}

/// The guest's threads, as the debugger knows them.
#[derive(Default)]
pub(crate) struct Hub {
    state: Mutex<State>,
    changed: Condvar,
    /// gdb is gone: nothing stops any more.
    pub detached: AtomicBool,
}

impl State {
    /// Whether thread `tid` must stay stopped: another thread holds a stop, or gdb left
    /// `tid` stopped.
    fn stops(&self, tid: i32) -> bool {
        self.server.is_some_and(|s| s != tid) || self.held.contains(&tid)
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets every thread (a replay starting again).
    pub fn reset(&self) {
        *self.lock() = State::default();
    }

    /// Thread `tid` runs under the debugger.
    pub fn join(&self, tid: i32, kicker: Option<Kicker>, tx: Sender<Msg>) {
        self.lock().threads.insert(tid, Slot { kicker, place: Place::Busy, tx, go: None });
        self.changed.notify_all();
    }

    /// Thread `tid` is gone.
    pub fn leave(&self, tid: i32) {
        let mut s = self.lock();
        s.threads.remove(&tid);
        if s.server == Some(tid) {
            s.server = None;
        }
        self.changed.notify_all();
    }

    /// The threads gdb can name.
    pub fn tids(&self) -> Vec<i32> {
        self.lock().threads.keys().copied().collect()
    }

    /// Kicks every thread (gdb's Ctrl-C: the first to arrive stops).
    pub fn kick_all(&self) {
        for slot in self.lock().threads.values() {
            if let Some(k) = &slot.kicker {
                k.kick();
            }
        }
    }

    /// Another thread than `tid` holds a stop, or gdb left `tid` stopped.
    pub fn stopped_by_other(&self, tid: i32) -> bool {
        self.lock().stops(tid)
    }

    /// Makes `tid` the thread that serves gdb, unless another already is.
    pub fn try_claim(&self, tid: i32) -> bool {
        let mut s = self.lock();
        match s.server {
            Some(other) if other != tid => false,
            _ => {
                s.server = Some(tid);
                true
            }
        }
    }

    /// Where thread `me` is now (as a stop sees it).
    fn set(&self, me: i32, place: Place) {
        if let Some(slot) = self.lock().threads.get_mut(&me) {
            slot.place = place;
        }
        self.changed.notify_all();
    }

    /// Thread `me` is in its handler.
    pub fn busy(&self, me: i32) {
        self.set(me, Place::Busy)
    }

    /// Thread `me` is in the inner handler's answer to a trap, with registers `regs` (in
    /// syscall `call`).
    pub fn in_call(&self, me: i32, regs: Regs, call: Option<u64>) {
        self.set(me, Place::InCall(regs, call))
    }

    /// Thread `me` is back in user code.
    pub fn running(&self, me: i32) {
        self.set(me, Place::Running)
    }

    /// What the last resume asked of `me`, left for [`Hub::take_go`].
    pub fn peek_go(&self, me: i32) -> Option<Go> {
        self.lock().threads.get(&me).and_then(|s| s.go)
    }

    /// What the last resume asked of `me`, if it has not heard it yet.
    pub fn take_go(&self, me: i32) -> Option<Go> {
        self.lock().threads.get_mut(&me).and_then(|s| s.go.take())
    }

    /// Claims the stop for `me`, parking (and answering questions) while another thread
    /// holds one.
    pub fn claim(
        &self,
        me: i32,
        g: &mut dyn Guest,
        rx: &Receiver<Msg>,
        answer: &mut dyn FnMut(&mut dyn Guest, ThreadReq),
    ) {
        while !self.try_claim(me) {
            // The stop this thread wanted comes after the one on now; what gdb asks of it
            // at that one's resume is moot.
            self.park(me, g, rx, answer);
            self.take_go(me);
            if self.detached.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Brings every other thread to a stop: kicked out of user code until each is parked or
    /// inside a call of the inner handler. A thread that does not stop within a few seconds
    /// is named on stderr.
    pub fn stop_others(&self, me: i32, g: &mut dyn Guest) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut next_kick = Instant::now();
        wait(g, &mut || {
            let s = self.lock();
            let running: Vec<i32> = s
                .threads
                .iter()
                .filter(|(t, slot)| **t != me && matches!(slot.place, Place::Running | Place::Busy))
                .map(|(t, _)| *t)
                .collect();
            if running.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                eprintln!("trapbox: gdb: thread {running:?} did not stop; it runs on while gdb looks");
                return true;
            }
            if Instant::now() >= next_kick {
                // A kick that lands where it cannot take the thread out is asked again.
                for t in &running {
                    if let Some(k) = &s.threads[t].kicker {
                        k.kick();
                    }
                }
                next_kick = Instant::now() + Duration::from_millis(20);
            }
            let _ = self.changed.wait_timeout(s, Duration::from_millis(2));
            false
        });
    }

    /// Parks `me` while another thread holds a stop, answering questions about its state
    /// with `answer`; returns when the stop ends (or the run does).
    pub fn park(
        &self,
        me: i32,
        g: &mut dyn Guest,
        rx: &Receiver<Msg>,
        answer: &mut dyn FnMut(&mut dyn Guest, ThreadReq),
    ) {
        {
            let mut s = self.lock();
            if !s.stops(me) {
                return;
            }
            if let Some(slot) = s.threads.get_mut(&me) {
                slot.place = Place::Parked;
            }
        }
        self.changed.notify_all();
        loop {
            let mut msg = None;
            let alive = wait(g, &mut || match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(m) => {
                    msg = Some(m);
                    true
                }
                Err(RecvTimeoutError::Timeout) => self.detached.load(Ordering::SeqCst),
                Err(RecvTimeoutError::Disconnected) => true,
            });
            match msg {
                Some(Msg::Req(r)) if alive => answer(g, r),
                Some(Msg::Req(_)) => {}
                Some(Msg::Go) | None => break,
            }
            if !alive {
                break;
            }
        }
        self.busy(me);
    }

    /// Passes a question to thread `tid` (not the serving one): a parked thread answers it
    /// itself, on the question's channel, when the server next lets the shared state go; one
    /// inside a call is answered here from the registers it had there.
    pub fn ask(&self, tid: i32, req: ThreadReq) {
        let s = self.lock();
        let Some(slot) = s.threads.get(&tid) else { return };
        match (&slot.place, req) {
            (Place::Parked, req) => {
                let _ = slot.tx.send(Msg::Req(req));
            }
            (Place::InCall(r, call), ThreadReq::ReadRegs(tx)) => {
                let _ = tx.send(crate::gdb_regs(r, call.unwrap_or(u64::MAX)));
            }
            // Registers under a call still running cannot be changed, nor those of a thread
            // that did not stop.
            (_, ThreadReq::WriteRegs(_, tx)) => {
                let _ = tx.send(false);
            }
            (Place::Running | Place::Busy, ThreadReq::ReadRegs(_)) => {}
        }
    }

    /// Ends the stop `me` served: every other thread goes on as `gos` says; one it does not
    /// name continues, or stays stopped if gdb locked the scheduler. `me` stays stopped if
    /// gdb did not name it under a locked scheduler (`held_me`).
    pub fn release(&self, me: i32, gos: &BTreeMap<i32, Go>, locked: bool, held_me: bool) {
        let mut s = self.lock();
        if s.server == Some(me) {
            s.server = None;
        }
        s.held.clear();
        let mut held = std::collections::BTreeSet::new();
        for (tid, slot) in s.threads.iter_mut() {
            if *tid == me {
                // Its own action it took itself ([`crate::At::serve`]).
                continue;
            }
            let go = match gos.get(tid) {
                Some(go) => *go,
                None if locked => {
                    held.insert(*tid);
                    continue;
                }
                None => Go::default(),
            };
            slot.go = Some(go);
            if matches!(slot.place, Place::Parked) {
                slot.place = Place::Running;
                let _ = slot.tx.send(Msg::Go);
            }
        }
        if held_me {
            held.insert(me);
        }
        s.held = held;
        drop(s);
        self.changed.notify_all();
    }
}
