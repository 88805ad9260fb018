//! Guest threads: a vCPU and a host thread each, around one shared machine and process.
//!
//! The machine (page tables, memory slots) and the process (address space, descriptors,
//! signal dispositions) are shared by all threads behind one lock ([`Core::lock`]). A thread
//! holds it only while it handles a trap — never while its vCPU runs guest code, and never
//! across a host syscall that may block (the passthrough lets go around the call, see
//! `guest.rs`). While a thread holds the lock its own vCPU and its own state (signal mask,
//! alternate stack, clear_child_tid: [`ThreadState`]) are swapped in, so the trap code works on
//! "the current thread" without knowing there are others. Once a second thread exists,
//! removing memory or rights reaches every vCPU before the call that did it returns.
//!
//! A process ends as a group: exit_group, a fatal signal or the time limit record the outcome
//! and kick every thread out of guest mode and out of blocking host calls.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::{Process, ThreadState};
use trapbox_trap::Outcome;
use trapbox_vm::Vcpu;
use trapbox_vm::{Machine, Runner};

use super::host;

/// What all threads share.
pub(super) struct Shared {
    /// The VM without a vCPU (each thread brings its own, see [`Shared::enter`]).
    pub machine: Machine,
    /// The guest process.
    pub process: Process,
    /// Host threads whose guest thread left, each with its vCPU, waiting to run the next
    /// guest thread the process creates (see [`Job`]).
    idle: Vec<Idle>,
}

/// A host thread waiting for a guest thread to run.
struct Idle {
    /// The process it belongs to (a forked child has none of its parent's threads).
    pid: i32,
    jobs: std::sync::mpsc::Sender<Box<Job>>,
}

/// A new guest thread for a host thread to run: its start state, its own state and handler.
///
/// A guest thread's host thread and vCPU outlive it: when it leaves with `exit`, they wait
/// for the next thread the guest creates. Besides sparing a vCPU's creation, this keeps
/// trapbox's own memory still while the guest runs: a host thread that ended would unmap its
/// stacks and its vCPU's shared page at a moment no run reproduces, and a recorded run's
/// replay would find its next mapping's recorded address taken, or free, differently.
pub(super) struct Job {
    /// Registers and FS base the thread starts with (segment registers: a fresh vCPU's).
    pub state: trapbox_vm::vcpu::CpuState,
    /// Its signal mask and clear_child_tid address.
    pub thread: ThreadState,
    /// Its trap handler.
    pub handler: Box<dyn trapbox_trap::TrapHandler + Send>,
    /// A new vCPU for a new host thread; None for a waiting host thread, which reuses its own.
    pub vcpu: Option<Vcpu>,
    /// Where the host thread says it runs the guest thread (its tid and pthread), or that it
    /// cannot (None).
    pub started: std::sync::mpsc::Sender<Option<(i32, libc::pthread_t)>>,
    /// The creator's go-ahead, once it has registered the thread.
    pub go: std::sync::mpsc::Receiver<bool>,
}

impl Shared {
    pub fn new(machine: Machine, process: Process) -> Shared {
        Shared { machine, process, idle: Vec::new() }
    }

    /// Hands `job` to a waiting host thread of this process; gives it back if there is none.
    pub fn hand_to_idle(&mut self, mut job: Box<Job>) -> Result<(), Box<Job>> {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        while let Some(idle) = self.idle.pop() {
            if idle.pid != pid {
                continue;
            }
            match idle.jobs.send(job) {
                Ok(()) => return Ok(()),
                Err(e) => job = e.0,
            }
        }
        Err(job)
    }

    /// The calling host thread waits for a job on `jobs`.
    pub fn wait_idle(&mut self, jobs: std::sync::mpsc::Sender<Box<Job>>) {
        // SAFETY: getpid has no preconditions.
        self.idle.push(Idle { pid: unsafe { libc::getpid() }, jobs });
    }

    /// Lets the waiting host threads end (the run is over).
    pub fn end_idle(&mut self) {
        self.idle.clear();
    }

    /// In a forked child: the waiting host threads were the parent's and do not exist here.
    /// Their channels are left as they are, never dropped: fork may have copied a channel's
    /// lock held by its thread (one entering its wait), and dropping the last sender takes it.
    pub fn forget_idle(&mut self) {
        for idle in self.idle.drain(..) {
            std::mem::forget(idle);
        }
    }
}

// SAFETY: the machine's raw pointer to the system region and the process's state are only
// used by the thread that holds the lock around `Shared`; the vCPU a thread runs outside the
// lock is its own.
unsafe impl Send for Shared {}

/// A thread's own part, outside the lock while the thread runs guest code.
pub(super) struct ThreadCtx {
    /// Its vCPU (in the machine while the thread holds the lock).
    pub vcpu: Option<Vcpu>,
    /// Its state (in the process while the thread holds the lock).
    pub state: ThreadState,
    /// Exits taken since it last held the lock.
    pub exits: u64,
    /// The host thread that runs it, for handlers' kicks.
    pub kick: super::host::KickTarget,
}

// SAFETY: a ThreadCtx moves to the host thread that runs it and is used there only.
unsafe impl Send for ThreadCtx {}

impl Shared {
    /// Makes `ctx`'s thread the current one.
    pub fn enter(&mut self, ctx: &mut ThreadCtx) {
        if let Some(v) = ctx.vcpu.take() {
            self.machine.enter(v);
        }
        self.machine.add_exits(std::mem::take(&mut ctx.exits));
        self.process.swap_thread(&mut ctx.state);
    }

    /// Gives `ctx`'s thread its vCPU and state back. Page-table changes made meanwhile reach
    /// every vCPU first.
    pub fn leave(&mut self, ctx: &mut ThreadCtx) {
        if let Err(e) = self.machine.prepare_run() {
            self.process.warn_once("flush", format_args!("cannot flush guest translations: {e}"));
        }
        ctx.vcpu = self.machine.leave();
        self.process.swap_thread(&mut ctx.state);
    }
}

/// The shared state, how to run a vCPU, and the thread group.
pub(super) struct Core {
    shared: Mutex<Shared>,
    /// Threads blocked in [`Core::lock`] (see [`Core::release`]).
    waiting: AtomicU32,
    /// Bumped by each thread that got the lock after blocking for it.
    served: AtomicU64,
    /// Decodes exits of a vCPU run outside the lock.
    pub runner: Runner,
    /// The thread group.
    pub group: Group,
    /// The next vCPU id.
    pub next_vcpu: AtomicU64,
    /// Syscall traps, all threads together.
    pub syscalls: AtomicU64,
    /// When `--timeout` ends the run (set by each run).
    pub deadline: Mutex<Option<std::time::Instant>>,
}

impl Core {
    pub fn new(shared: Shared) -> Core {
        let runner = shared.machine.runner();
        Core {
            shared: Mutex::new(shared),
            waiting: AtomicU32::new(0),
            served: AtomicU64::new(0),
            runner,
            group: Group::default(),
            next_vcpu: AtomicU64::new(1),
            syscalls: AtomicU64::new(0),
            deadline: Mutex::new(None),
        }
    }

    /// In a forked child, whose only thread is the one that forked: the parent's other
    /// threads, running or waiting, are not here.
    pub fn forked_child(&self) {
        self.group.reset_after_fork();
        self.waiting.store(0, Ordering::SeqCst);
        self.lock().forget_idle();
    }

    /// Takes the lock. A thread that panicked while holding it left the state as consistent as
    /// any trap in progress leaves it; going on is better than taking trapbox down.
    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        match self.shared.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(e)) => return e.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.served.fetch_add(1, Ordering::SeqCst);
        g
    }

    /// Lets go of the lock on the way back to guest code. The mutex is not fair: a thread
    /// whose guest traps every microsecond (the in-process engine's rewritten syscalls) takes
    /// it again before a waiter the unlock woke has been scheduled, and the waiter can starve
    /// for good. So when a thread waits, it gets in first; the wait is bounded, for a waiter
    /// that was itself stopped on the way.
    pub fn release(&self, g: MutexGuard<'_, Shared>) {
        let waited = self.waiting.load(Ordering::SeqCst) != 0;
        let served = self.served.load(Ordering::SeqCst);
        drop(g);
        if waited {
            let until = Instant::now() + Duration::from_micros(200);
            while self.served.load(Ordering::SeqCst) == served && Instant::now() < until {
                std::thread::yield_now();
            }
        }
    }
}

#[derive(Default)]
struct GroupState {
    outcome: Option<Outcome>,
    /// Threads other than the first: host tid and pthread handle.
    threads: Vec<(i32, libc::pthread_t)>,
    /// Status of the last thread that left with `exit` (the process's, if it was the last).
    last_exit: i32,
    /// The first thread's host thread.
    main: Option<libc::pthread_t>,
}

/// The group's lock, held across a fork ([`Group::hold_for_fork`]).
pub(super) struct ForkHold<'a>(#[allow(dead_code)] MutexGuard<'a, GroupState>);

/// The guest's thread group.
#[derive(Default)]
pub(super) struct Group {
    ending: AtomicBool,
    state: Mutex<GroupState>,
    changed: Condvar,
}

impl Group {
    fn state(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the process is ending.
    pub fn ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst)
    }

    /// Ends the process with `o` (the first outcome wins) and kicks every other thread.
    pub fn end(&self, o: Outcome) {
        let st = &mut *self.state();
        st.outcome.get_or_insert(o);
        self.ending.store(true, Ordering::SeqCst);
        for (_, t) in &st.threads {
            host::kick_thread(*t);
        }
        // SAFETY: pthread_self has no preconditions.
        if let Some(m) = st.main.filter(|m| *m != unsafe { libc::pthread_self() }) {
            host::kick_thread(m);
        }
        self.changed.notify_all();
    }

    /// Names the first thread's host thread (kicked when another thread ends the process).
    pub fn set_main(&self, t: libc::pthread_t) {
        self.state().main = Some(t);
    }

    /// The outcome, once ending.
    pub fn outcome(&self) -> Option<Outcome> {
        self.state().outcome.clone()
    }

    /// A new thread joins.
    pub fn register(&self, tid: i32, t: libc::pthread_t) {
        self.state().threads.push((tid, t));
    }

    /// A thread left, with `exit(code)` or because the group ended.
    pub fn leave(&self, tid: i32, code: Option<i32>) {
        let mut st = self.state();
        st.threads.retain(|(t, _)| *t != tid);
        if let Some(c) = code {
            st.last_exit = c;
        }
        self.changed.notify_all();
    }

    /// How many threads besides the first are alive.
    pub fn others(&self) -> usize {
        self.state().threads.len()
    }

    /// The first thread waits for the others to end: all of them (after its own `exit`), or
    /// each one kicked out once the group is ending. Returns the status of the last `exit`.
    pub fn wait_for_others(&self) -> i32 {
        let mut st = self.state();
        while !st.threads.is_empty() {
            if self.ending() {
                for (_, t) in &st.threads {
                    host::kick_thread(*t);
                }
            }
            st = self.changed.wait_timeout(st, Duration::from_millis(20)).unwrap_or_else(|e| e.into_inner()).0;
        }
        st.last_exit
    }

    /// Whether the caller is the first thread's host thread.
    pub fn is_main(&self) -> bool {
        // SAFETY: pthread_self has no preconditions.
        self.state().main.is_none_or(|m| m == unsafe { libc::pthread_self() })
    }

    /// execve from the first thread: every other thread ends (silently, as the kernel's
    /// de_thread does), and the process goes on.
    pub fn stop_others_for_exec(&self) {
        self.ending.store(true, Ordering::SeqCst);
        for (_, t) in &self.state().threads {
            host::kick_thread(*t);
        }
    }

    /// After [`Group::stop_others_for_exec`] and [`Group::wait_for_others`].
    pub fn resume_after_exec(&self) {
        if self.state().outcome.is_none() {
            self.ending.store(false, Ordering::SeqCst);
        }
    }

    /// Holds the group's lock across a fork. fork copies every lock as it is at that instant,
    /// and other threads take this one outside the shared lock (ending, waiting): held by the
    /// forking thread, the child's copy is one its only thread can take.
    pub fn hold_for_fork(&self) -> ForkHold<'_> {
        ForkHold(self.state())
    }

    /// In a forked child only the forking thread exists.
    pub fn reset_after_fork(&self) {
        let main = self.state().main;
        *self.state() = GroupState { main, ..GroupState::default() };
        self.ending.store(false, Ordering::SeqCst);
    }
}
