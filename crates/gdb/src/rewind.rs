//! Going back in a replay, without a performance counter: a replay is deterministic, and so
//! is everything gdb asked of it, so a position is "the start, then gdb's requests up to
//! here". Every request that changes the guest or the debugger (breakpoints, register and
//! memory writes, `catch syscall`, resumes) is logged with the stop it was made at; going
//! back replays the trace from its start, answering the logged requests at the same stops
//! without telling gdb, up to the position wanted:
//!
//! - `reverse-stepi` after a step: the stop before it;
//! - `reverse-stepi` after a continue: the stop before it, then as many single steps, less
//!   one, as the continue took to reach this stop (a first replay counts them). The steps
//!   start at an anchor, not at the stop before, when the replay's trace has events between
//!   the two: the continue is run to the syscall that brought the event index to the one
//!   before this stop's (a stop of its own), and stepped from there — so a step back costs the
//!   instructions since the last events, not all since the stop before;
//! - `reverse-continue`: a first replay, with gdb's breakpoints placed from the start,
//!   notes every arrival at one of them up to this stop; a second stops at the last. With
//!   write watchpoints set, that first replay also runs a step at a time from the start and
//!   notes every change of the watched bytes (the resume and the step it came in); if the
//!   last change is later than the last arrival, the second replay goes to the step before
//!   it — the writing instruction not yet run, the value as it was before the write.
//!
//! A Ctrl-C stop cannot be reproduced (the kick lands anywhere), so going back across one
//! is refused. Each step back costs a replay from the start: fine for short replays;
//! checkpoints would bound it.

use std::collections::BTreeSet;

use crate::arch::GdbRegs;
use crate::stub::Stop;

/// A request gdb made that changed something.
#[derive(Clone, Debug)]
pub(crate) enum Logged {
    AddBreak(u64),
    RemoveBreak(u64),
    WriteRegs(Box<GdbRegs>),
    WriteMem(u64, Vec<u8>),
    Catch(Option<Option<Vec<u64>>>),
    AddWatch(u64, u64),
    RemoveWatch(u64),
    /// A resume; `until` stops it at the m-th arrival at one of these addresses (a position
    /// `reverse-continue` found); `anchor` stops it (before `until`) at the first syscall after
    /// which the replay's event index has reached this one (where a step back across a
    /// continue starts its single steps: see [`Then::Count`]).
    Resume {
        step: bool,
        signal: Option<u8>,
        until: Option<(BTreeSet<u64>, u64)>,
        anchor: Option<u64>,
    },
}

/// What a run does once the logged requests are replayed.
#[derive(Clone, Debug)]
pub(crate) enum Then {
    /// Tell gdb nothing new (the first run: gdb takes the target as stopped).
    Live,
    /// Tell gdb this stop.
    Report(Stop),
    /// Single-step this many times, then tell gdb this stop.
    Steps(u64, Stop),
    /// Single-step, counting, until the stop the logged continue reached (with its `until`,
    /// the m-th arrival at those addresses); then go back to one step less.
    Count(Option<(BTreeSet<u64>, u64)>),
    /// Note the arrivals at these addresses (and the changes of these watched ranges,
    /// address and length) up to the end of the log; then go to the last.
    Survey(BTreeSet<u64>, Vec<(u64, u64)>),
}

/// Where a new run of the replay goes.
#[derive(Clone, Debug)]
pub struct Plan {
    pub(crate) script: Vec<(usize, Logged)>,
    pub(crate) then: Then,
}

/// The logged requests made before the resume at stop `at` (that resume left out).
pub(crate) fn upto(log: &[(usize, Logged)], at: usize) -> Vec<(usize, Logged)> {
    log.iter().filter(|(s, l)| *s < at || (*s == at && !matches!(l, Logged::Resume { .. }))).cloned().collect()
}

/// The resume made at stop `at`.
pub(crate) fn resume_at(log: &[(usize, Logged)], at: usize) -> Option<&Logged> {
    log.iter().rev().find(|(s, l)| *s == at && matches!(l, Logged::Resume { .. })).map(|(_, l)| l)
}

/// The logged requests made before stop `at` was reached: the position of that stop.
pub(crate) fn before(log: &[(usize, Logged)], at: usize) -> Vec<(usize, Logged)> {
    log.iter().filter(|(s, _)| *s < at).cloned().collect()
}

/// An arrival at a surveyed address: the stop whose resume led there, its rank among that
/// resume's arrivals, and the stop it was, if it was one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    pub resumed_at: usize,
    pub nth: u64,
    pub stop: Option<usize>,
    /// Steps into that resume when it came (counted only when watchpoints are surveyed).
    pub step: u64,
}

/// A change of a surveyed watchpoint's bytes: in the resume made at stop `resumed_at`, by its
/// `step`-th step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Change {
    pub resumed_at: usize,
    pub step: u64,
    pub addr: u64,
}

/// A survey run's notes.
#[derive(Debug)]
pub(crate) struct Survey {
    pub addrs: BTreeSet<u64>,
    pub hits: Vec<Hit>,
    /// Arrivals in the running resume so far.
    pub nth: u64,
    /// Watched ranges: address → bytes as last seen (None: not readable yet).
    pub watches: Vec<(u64, u64, Option<Vec<u8>>)>,
    pub changes: Vec<Change>,
    /// Steps in the running resume so far.
    pub steps: u64,
}

impl Survey {
    pub fn new(addrs: BTreeSet<u64>, watches: &[(u64, u64)]) -> Survey {
        let watches = watches.iter().map(|&(a, l)| (a, l, None)).collect();
        Survey { addrs, hits: Vec::new(), nth: 0, watches, changes: Vec::new(), steps: 0 }
    }

    /// Whether the survey steps (it has watchpoints to compare).
    pub fn steps(&self) -> bool {
        !self.watches.is_empty()
    }
}
