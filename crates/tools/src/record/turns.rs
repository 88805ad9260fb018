//! Guest threads of a recorded or replayed run take turns: one runs guest code at a time, so
//! that their interleaving is a sequence the trace can hold and a replay can follow.
//!
//! Recording, a thread lets go of its turn when it enters a syscall that may block (anything a
//! replay does not perform itself) and takes a turn again before that syscall's result is
//! recorded; a thread that takes the turn from another writes a `Switch` event first. Calls a
//! replay performs (memory, signal state, thread creation, exit) keep the turn, so they happen
//! in the same order in both runs. Replaying, a thread at a trap whose next event is another
//! thread's `Switch` lets go, and a waiting thread takes the turn when the trace switches to
//! it; between two switches only the holder runs, exactly as recorded.
//!
//! A thread that waits for another by spinning on memory, with no syscall, would keep the
//! turn for good. A recording preempts it: a thread that has waited for its turn for
//! [`QUANTUM`] has the holder kicked out of user code every [`SAMPLE`] (a [`Kicker`]). The
//! holder looks for the instruction it was kicked at again (a [`super::point::Point`]): coming
//! back to it with the same registers, it is in a loop that changes only memory, such as a
//! spin, and gives its turn up there (a Preempt event); a replay stops it at the same point.
//! (rr finds such points by counting retired branches; PVM has no such counter.) A thread
//! whose registers never repeat (one counting its turns in a register, or computing) is never
//! preempted: its waiters wait until it makes a syscall, and are told so after [`PATIENCE`].
//! Each sample of such a holder that finds no spin doubles the time to the next (up to
//! [`MAX_SAMPLE`]), so that a thread computing for seconds while others wait is not slowed
//! down by probes that cannot succeed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use trapbox_trap::{Guest, Kicker};

/// How long a thread waits for its turn before trapbox says why it may never come.
const PATIENCE: Duration = Duration::from_secs(5);

/// How long a recorded thread waits for its turn before the holder is looked at.
const QUANTUM: Duration = Duration::from_millis(2);

/// How often the holder is then kicked, for a sample of its registers, while its samples
/// find it spinning or have not been tried.
const SAMPLE: Duration = Duration::from_millis(1);

/// The longest time between two samples of a holder whose samples found no spin.
const MAX_SAMPLE: Duration = Duration::from_millis(128);

/// Whose turn it is among a run's guest threads (numbered from 0, in the order they were
/// created; the same numbers in the recording and its replay).
#[derive(Debug)]
pub(super) struct Turns {
    /// The thread whose turn it is; None while the last holder let go of it.
    holder: Option<u32>,
    /// The thread the last holder let go for (a replay following a Switch), if only one may
    /// take it.
    to: Option<u32>,
    /// The thread whose events the trace holds last.
    last: u32,
    /// The number the next thread gets.
    next: u32,
    /// Threads started and not yet left.
    live: BTreeSet<u32>,
    /// Threads waiting for the turn.
    waiting: BTreeSet<u32>,
    /// How to preempt each thread (recording only).
    kickers: BTreeMap<u32, Kicker>,
    /// When the holder is kicked next (one time for all its waiters).
    next_kick: Option<Instant>,
    /// How many of the holder's samples in a row found no spin.
    misses: u32,
    /// In a forked child, which is not recorded: its threads run freely, taking no turns.
    unrecorded: bool,
}

impl Default for Turns {
    fn default() -> Self {
        Turns::only(0)
    }
}

impl Turns {
    /// A process with one thread, `me`, which holds the turn (a new one, or a fork's child).
    pub fn only(me: u32) -> Turns {
        Turns {
            holder: Some(me),
            to: None,
            last: me,
            next: me + 1,
            live: BTreeSet::from([me]),
            waiting: BTreeSet::new(),
            kickers: BTreeMap::new(),
            next_kick: None,
            misses: 0,
            unrecorded: false,
        }
    }

    /// Whether the process has more than one thread (one alone never lets go).
    pub fn many(&self) -> bool {
        self.live.len() > 1
    }

    /// The number of a new thread, which waits for its first turn.
    pub fn new_thread(&mut self) -> u32 {
        let n = self.next;
        self.next += 1;
        self.live.insert(n);
        n
    }

    /// Whether `t` is a thread that exists.
    pub fn is_live(&self, t: u32) -> bool {
        self.live.contains(&t)
    }

    /// Whether `me` holds the turn.
    pub fn holds(&self, me: u32) -> bool {
        self.holder == Some(me)
    }

    /// `me` lets go of the turn (if it holds it), for thread `to` or for any.
    pub fn let_go(&mut self, me: u32, to: Option<u32>) {
        if self.holder == Some(me) {
            self.holder = None;
            self.to = to;
        }
    }

    /// Whether `me` may take the turn.
    pub fn may_take(&self, me: u32) -> bool {
        self.holder.is_none() && self.to.is_none_or(|t| t == me)
    }

    /// `me` takes the turn; true if it takes it from another thread (a switch).
    pub fn take(&mut self, me: u32) -> bool {
        self.holder = Some(me);
        self.to = None;
        self.next_kick = None;
        self.misses = 0;
        std::mem::replace(&mut self.last, me) != me
    }

    /// `me` left: the turn is free, for thread `to` or for any, if it held it.
    pub fn left(&mut self, me: u32, to: Option<u32>) {
        self.live.remove(&me);
        self.kickers.remove(&me);
        self.let_go(me, to);
    }

    /// The time from one sample of the holder to the next: [`SAMPLE`], doubled for each
    /// sample in a row that found no spin, up to [`MAX_SAMPLE`].
    fn sample_interval(&self) -> Duration {
        SAMPLE.saturating_mul(1 << self.misses.min(16)).min(MAX_SAMPLE)
    }

    /// Whether the holder is due for a kick at `now`; if so, the next one is scheduled.
    fn kick_due(&mut self, now: Instant) -> bool {
        if self.next_kick.is_some_and(|at| at > now) {
            return false;
        }
        self.next_kick = Some(now + self.sample_interval());
        true
    }

    /// The lowest-numbered thread waiting for the turn, other than `me`.
    pub fn first_waiting(&self, me: u32) -> Option<u32> {
        self.waiting.iter().copied().find(|&t| t != me)
    }
}

/// State the handlers of all of a run's threads share, and the turns. The turns have a lock
/// of their own, taken alone: a thread waits for its turn without holding the state, and the
/// holder may keep the state across a call that lets go of the guest's lock.
pub(super) struct Shared<T> {
    state: Mutex<T>,
    turns: Mutex<Turns>,
    changed: Condvar,
}

impl<T> Shared<T> {
    pub fn new(state: T) -> Self {
        Shared { state: Mutex::new(state), turns: Mutex::new(Turns::default()), changed: Condvar::new() }
    }

    /// The state. A thread that panicked holding it left it as consistent as any event in
    /// progress leaves it; going on is better than taking the run down.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn turns(&self) -> MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the threads waiting for a turn.
    fn notify(&self) {
        self.changed.notify_all();
    }

    /// Whether `me` holds the turn.
    pub fn holds(&self, me: u32) -> bool {
        self.turns().holds(me)
    }

    /// Whether thread `t` exists.
    pub fn is_live(&self, t: u32) -> bool {
        self.turns().is_live(t)
    }

    /// The number of a new thread.
    pub fn new_thread(&self) -> u32 {
        self.turns().new_thread()
    }

    /// `me` left, letting go of its turn for thread `to` or for any.
    pub fn left(&self, me: u32, to: Option<u32>) {
        self.turns().left(me, to);
        self.notify();
    }

    /// In a forked child only `me`, the forking thread, exists. The child is not recorded, so
    /// its threads (the ones it makes later) take no turns: they run as they would natively.
    pub fn forked(&self, me: u32) {
        let mut t = self.turns();
        *t = Turns::only(me);
        t.unrecorded = true;
    }

    /// Threads waiting for `me`'s turn may preempt `me` with `kicker` (a recording's).
    pub fn preemptible(&self, me: u32, kicker: Option<Kicker>) {
        let mut t = self.turns();
        match kicker {
            Some(k) => t.kickers.insert(me, k),
            None => t.kickers.remove(&me),
        };
    }

    /// The thread waiting for the turn that `me`, the holder, should give it to; None when
    /// none waits.
    pub fn waiter(&self, me: u32) -> Option<u32> {
        let t = self.turns();
        t.first_waiting(me).filter(|_| t.holds(me))
    }

    /// `me`, the holder, was sampled and found not to spin: the next sample comes later.
    pub fn no_spin(&self, me: u32) {
        let mut t = self.turns();
        if t.holds(me) {
            t.misses = t.misses.saturating_add(1);
            if let Some(at) = t.next_kick {
                t.next_kick = Some(at.max(Instant::now() + t.sample_interval()));
            }
        }
    }

    /// `me` lets go of the turn, for thread `to` or for any, and wakes the waiting threads;
    /// only when other threads exist. Whether it did.
    pub fn let_go(&self, me: u32, to: Option<u32>) -> bool {
        let mut t = self.turns();
        if !t.many() || !t.holds(me) || t.unrecorded {
            return false;
        }
        t.let_go(me, to);
        drop(t);
        self.notify();
        true
    }

    /// Waits, with the guest's own lock let go, until `me` may take the turn, and takes it:
    /// Some(true) if it took it from another thread; None if the process ends first (see
    /// [`Process::wait_for`](trapbox_trap::Process::wait_for)).
    pub fn take_turn(&self, g: &mut dyn Guest, me: u32) -> Option<bool> {
        if self.turns().unrecorded {
            return Some(false);
        }
        let mut switched = false;
        // Read the first time the turn is not free (at most calls it is: no clock read).
        let mut first_miss: Option<Instant> = None;
        let mut warned = false;
        self.turns().waiting.insert(me);
        let mut ready = || {
            let mut t = self.turns();
            if t.holds(me) {
                return true;
            }
            if t.may_take(me) {
                switched = t.take(me);
                return true;
            }
            let since = *first_miss.get_or_insert_with(Instant::now);
            // Recording only (a replay's holder has no kicker): a replay's turns follow the
            // trace, and waiting for one is never a recording's hang.
            if !warned && since.elapsed() >= PATIENCE {
                warned = true;
                if let Some(h) = t.holder.filter(|h| t.kickers.contains_key(h)) {
                    eprintln!(
                        "trapbox: guest thread {me} has waited {} s for its turn while thread {h} runs without a syscall: \
                         the threads of a recording take turns at syscalls, and only a thread that spins with registers \
                         that repeat is preempted (one that computes, or counts in a register, keeps its turn)",
                        PATIENCE.as_secs()
                    );
                }
            }
            // A holder running user code for a while may be spinning: it is sampled (see the
            // module's comment). Under the lock, so that it cannot leave meanwhile.
            let kicker = t.holder.and_then(|h| t.kickers.get(&h)).cloned();
            let waited = since.elapsed();
            let wait = match kicker {
                Some(k) if waited >= QUANTUM => {
                    let now = Instant::now();
                    if t.kick_due(now) {
                        k.kick();
                    }
                    t.next_kick.map_or(SAMPLE, |at| at.saturating_duration_since(now)).max(SAMPLE)
                }
                Some(_) => QUANTUM - waited,
                // Short, so that the guest's end of the process is seen soon.
                None => Duration::from_millis(10),
            };
            let _ = self.changed.wait_timeout(t, wait);
            false
        };
        // Without a process model the guest has one thread, whose turn it always is.
        let took = match g.process() {
            Some(p) => p.wait_for(&mut ready),
            None => ready(),
        };
        self.turns().waiting.remove(&me);
        took.then_some(switched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_is_a_turn_taken_from_another_thread() {
        let mut t = Turns::default();
        assert!(t.holds(0) && !t.many());
        let one = t.new_thread();
        assert_eq!(one, 1);
        assert!(t.many() && t.is_live(1) && !t.may_take(1));
        t.let_go(1, None);
        assert!(t.holds(0), "only the holder lets go");
        t.let_go(0, None);
        assert!(t.may_take(0) && t.may_take(1));
        assert!(!t.take(0), "taking back one's own turn is no switch");
        t.let_go(0, Some(1));
        assert!(!t.may_take(0), "let go for thread 1, which alone may take it");
        assert!(t.take(1), "thread 1 takes over from thread 0");
        t.left(1, None);
        assert!(t.may_take(0) && !t.is_live(1) && !t.many());
        assert!(t.take(0));
    }

    #[test]
    fn the_holder_gives_a_preempted_turn_to_a_waiting_thread_and_a_gone_thread_is_not_kicked() {
        let mut t = Turns::default();
        let (one, two) = (t.new_thread(), t.new_thread());
        t.waiting.extend([two, one]);
        assert_eq!(t.first_waiting(0), Some(one));
        assert_eq!(t.first_waiting(one), Some(two), "not to itself");
        t.kickers.insert(two, Kicker::new(|| true));
        t.left(two, None);
        assert!(!t.kickers.contains_key(&two), "a thread that left is not kicked");
    }
}
