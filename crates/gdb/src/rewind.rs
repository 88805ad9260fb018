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
//!   instructions since the last events, not all since the stop before. Where the stop is a
//!   function's entry reached by a direct call (or through a PLT entry), a survey with
//!   `int3`s on that call and the entry finds the call's last arrival instead, without single
//!   steps (see [`Back`]);
//! - `reverse-continue`: a first replay, with gdb's breakpoints placed from the start,
//!   notes every arrival at one of them up to this stop; a second stops at the last. With
//!   write watchpoints set, that first replay also compares the watched bytes after every
//!   call and at every stop, at full speed ([`Pass::Coarse`]); if the last change is later
//!   than the last arrival, a second replay single-steps over the stretch between the two
//!   calls where it came, only ([`Pass::Fine`]), noting the step that wrote (and arrivals on
//!   the way); the third goes to the step before it — the writing instruction not yet run,
//!   the value as it was before the write.
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
    /// address and length) up to the end of the log; then go to the last — or, for a step
    /// back, to the instruction before this stop (see [`Back`]).
    Survey(BTreeSet<u64>, Vec<(u64, u64)>, Option<Back>, Pass),
}

/// A step back from a stop a continue reached at `to` (a function's entry, typically), by
/// breakpoints rather than single steps: `call` is the instruction that most likely led there
/// (see [`call_into`]). A survey with `int3`s on both notes every arrival and, for each at
/// `call`, where one step from it landed. If the last arrival before this stop is one at
/// `call` whose step landed at `to`, it is the position wanted: the next instruction run was
/// the arrival at `to` that is this stop (any other arrival at `to` in between would be an
/// arrival noted later). The survey's run then goes back there itself (see [`Undo`]).
/// Otherwise `fallback` (counting single steps) goes there instead.
///
/// Why: counting steps costs one trap per instruction since the last event, and a trap from
/// guest user code is a VM exit on PVM (~40 µs); gdb steps back off every breakpoint it
/// passes in reverse (the dynamic linker's among them), so this was most of a
/// reverse-continue's time.
#[derive(Clone, Debug)]
pub(crate) struct Back {
    pub call: u64,
    pub to: u64,
    pub fallback: Box<Plan>,
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
    /// Where.
    pub addr: u64,
    /// Where one step from it landed (noted in a step back's survey).
    pub next: Option<u64>,
    pub resumed_at: usize,
    pub nth: u64,
    pub stop: Option<usize>,
    /// Steps into that resume when it came (counted only when watchpoints are surveyed).
    pub step: u64,
}

/// A change of a surveyed watchpoint's bytes: in the resume made at stop `resumed_at`, by its
/// `step`-th step (a fine pass), or seen after its `step`-th call (a coarse pass, [`Pass`]):
/// then made after the first call that brought the replay's event index to `from` (None: the
/// resume's start), and by its `to`-th call (None: by the stop that ended the resume).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Change {
    pub resumed_at: usize,
    pub step: u64,
    pub addr: u64,
    pub from: Option<u64>,
    pub to: Option<u64>,
}

/// How a survey with watchpoints finds the last write before a stop. Single steps from the
/// start cost a trap per instruction run (a VM exit on PVM), so it goes in two passes:
///
/// - `Coarse`: no single steps; the watched bytes are compared after every call the replay
///   answers and at every stop. The last change lies in one stretch between two of those.
/// - `Fine`: single steps over that stretch only — in the resume made at stop `resumed_at`,
///   from the first call that brings the event index to `from` (None: the resume's start) to
///   its `to`-th call (None: the resume's end) — noting which step wrote. A run there later
///   stops at that first call (a resume's `anchor`, which is why the stretch starts there and
///   not at the call before the change: calls the replay performs itself leave the index as
///   it was) and steps from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    Coarse,
    Fine { resumed_at: usize, from: Option<u64>, to: Option<u64> },
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
    /// A step back's survey.
    pub back: Option<Back>,
    /// A step back's survey: the state at the latest arrival at the call.
    pub undo: Option<Undo>,
    /// With watchpoints: which pass this is. In a coarse pass `steps` counts the calls of the
    /// running resume (the hits' `step` too).
    pub pass: Pass,
    /// A fine pass: within its stretch, single-stepping.
    pub stepping: bool,
    /// A fine pass: its stretch has begun (and may have ended).
    pub begun: bool,
    /// A fine pass: the hits noted before its stretch (all earlier than any write in it).
    pub pre_hits: usize,
    /// A coarse pass: the event index after the running resume's last call (None: none yet).
    pub last_event: Option<u64>,
    /// Calls returned in the running resume.
    pub calls: u64,
}

/// What a step back's survey saw at an arrival at the call (hit `hit`): the registers, and
/// the stack slot below the stack pointer, which a `call` writes (a jump writes nothing, and
/// its bytes put back change nothing). The one instruction between that arrival and this stop
/// changed only those, so putting them back is the position itself, without running the
/// replay again.
#[derive(Clone, Debug)]
pub(crate) struct Undo {
    pub hit: usize,
    pub regs: trapbox_trap::Regs,
    pub slot: Option<(u64, [u8; 8])>,
}

impl Survey {
    pub fn new(addrs: BTreeSet<u64>, watches: &[(u64, u64)], back: Option<Back>, pass: Pass) -> Survey {
        let watches = watches.iter().map(|&(a, l)| (a, l, None)).collect();
        Survey {
            addrs,
            hits: Vec::new(),
            nth: 0,
            watches,
            changes: Vec::new(),
            steps: 0,
            back,
            undo: None,
            pass,
            stepping: false,
            begun: false,
            pre_hits: 0,
            last_event: None,
            calls: 0,
        }
    }

    /// A resume made at stop `at` begins: counts start over; a fine pass whose stretch starts
    /// with this resume steps from here. `read` gives a watched range's bytes.
    pub fn resumed(&mut self, at: usize, read: &mut dyn FnMut(u64, u64) -> Option<Vec<u8>>) {
        self.nth = 0;
        self.steps = 0;
        self.last_event = None;
        self.calls = 0;
        self.stepping = false;
        self.begun = false;
        if matches!(self.pass, Pass::Fine { resumed_at, from: None, .. } if resumed_at == at) {
            self.begin_stretch(read);
        }
    }

    /// A fine pass's stretch begins: its writes are counted from the bytes as they are here.
    fn begin_stretch(&mut self, read: &mut dyn FnMut(u64, u64) -> Option<Vec<u8>>) {
        self.stepping = true;
        self.begun = true;
        self.pre_hits = self.hits.len();
        self.changed(read);
    }

    /// The first watched range whose bytes differ from when last seen (all taken as they are
    /// now); `read` gives a range's bytes, None where unreadable.
    pub fn changed(&mut self, read: &mut dyn FnMut(u64, u64) -> Option<Vec<u8>>) -> Option<u64> {
        let mut first = None;
        for (addr, len, seen) in self.watches.iter_mut() {
            let now = read(*addr, *len);
            if let (Some(before), Some(after)) = (&*seen, &now) {
                if before != after {
                    first = first.or(Some(*addr));
                }
            }
            if now.is_some() {
                *seen = now;
            }
        }
        first
    }

    /// A call of the resume made at stop `resumed_at` returned, the replay's event index now
    /// `event`: a coarse pass compares; a fine pass starts or ends its stretch. Whether single
    /// steps go on after it.
    pub fn after_call(
        &mut self,
        resumed_at: usize,
        event: Option<u64>,
        read: &mut dyn FnMut(u64, u64) -> Option<Vec<u8>>,
    ) -> bool {
        match self.pass {
            Pass::Coarse if !self.watches.is_empty() => {
                self.steps += 1;
                if let Some(addr) = self.changed(read) {
                    let (step, from) = (self.steps, self.last_event);
                    self.changes.push(Change { resumed_at, step, addr, from, to: Some(step) });
                }
                self.last_event = event;
            }
            Pass::Fine { resumed_at: r, from, to } if r == resumed_at => {
                self.calls += 1;
                if self.stepping && to.is_some_and(|k| self.calls >= k) {
                    self.stepping = false;
                } else if !self.begun && from.is_some_and(|e| event.is_some_and(|now| now >= e)) {
                    self.begin_stretch(read);
                }
            }
            _ => {}
        }
        self.stepping
    }

    /// The resume made at stop `resumed_at` ended (at a stop): a coarse pass compares, a
    /// change since its last call lying in that resume.
    pub fn resume_ended(&mut self, resumed_at: usize, read: &mut dyn FnMut(u64, u64) -> Option<Vec<u8>>) {
        if self.pass != Pass::Coarse || self.watches.is_empty() {
            return;
        }
        self.steps += 1;
        if let Some(addr) = self.changed(read) {
            let (step, from) = (self.steps, self.last_event);
            self.changes.push(Change { resumed_at, step, addr, from, to: None });
        }
    }

    /// The end of a coarse pass at stop `idx` (the one gone back from): the stretch of the
    /// last change, if it came after the last arrival before this stop (else the arrival is
    /// the answer).
    pub fn coarse_end(&self, idx: usize) -> Option<Change> {
        let last = *self.changes.last()?;
        let hit_later = self
            .hits
            .iter()
            .filter(|h| h.stop != Some(idx))
            .any(|h| (h.resumed_at, h.step) >= (last.resumed_at, last.step));
        (!hit_later).then_some(last)
    }

    /// Whether single steps are counted now: a fine pass within its stretch (a step back's
    /// survey never steps).
    pub fn steps(&self) -> bool {
        !self.watches.is_empty() && self.stepping
    }

    /// A step from the arrival at `from` landed at `rip`.
    pub fn landed(&mut self, from: u64, rip: u64) {
        if let Some(h) = self.hits.last_mut().filter(|h| h.addr == from && h.next.is_none()) {
            h.next = Some(rip);
        }
    }
}

/// The call that brought a thread to `to` with `ret` on top of its stack: a direct `call` of
/// `to` ending at `ret`, or, where that call went to a stub that jumps on (a PLT entry: an
/// optional `endbr64`, then a direct jump or one through memory), that stub's jump. None when
/// the bytes say neither (an indirect call, a jump from elsewhere, `to` not a function's
/// entry): the caller then counts steps.
///
/// Only a direct call whose target is exactly `to` (or leads to it) is taken, so that the
/// `int3` later put at the answer is at an instruction's start: a guess inside another
/// instruction would change the program.
pub(crate) fn call_into(to: u64, ret: u64, read: &mut dyn FnMut(u64, usize) -> Vec<u8>) -> Option<u64> {
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic, OpKind};
    const CALL_LEN: u64 = 5;
    let at = ret.checked_sub(CALL_LEN)?;
    let bytes = read(at, CALL_LEN as usize);
    let call = Decoder::with_ip(64, &bytes, at, DecoderOptions::NONE).decode();
    if call.is_invalid() || call.len() as u64 != CALL_LEN || call.mnemonic() != Mnemonic::Call {
        return None;
    }
    if call.op0_kind() != OpKind::NearBranch64 {
        return None;
    }
    let target = call.near_branch_target();
    if target == to {
        return Some(at);
    }
    // A stub: at most an endbr64 before its jump.
    let stub = read(target, 32);
    let mut d = Decoder::with_ip(64, &stub, target, DecoderOptions::NONE);
    for _ in 0..2 {
        let i = d.decode();
        if i.is_invalid() {
            return None;
        }
        if i.mnemonic() == Mnemonic::Endbr64 {
            continue;
        }
        if i.flow_control() == FlowControl::UnconditionalBranch && i.op0_kind() == OpKind::NearBranch64 {
            return (i.near_branch_target() == to).then_some(i.ip());
        }
        if i.flow_control() == FlowControl::IndirectBranch && i.is_ip_rel_memory_operand() {
            let slot = read(i.ip_rel_memory_address(), 8);
            let dest = u64::from_le_bytes(slot.try_into().ok()?);
            return (dest == to).then_some(i.ip());
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory of `(address, bytes)` runs; a read past them comes back short.
    fn reader(runs: Vec<(u64, Vec<u8>)>) -> impl FnMut(u64, usize) -> Vec<u8> {
        move |a, n| {
            for (start, bytes) in &runs {
                if a >= *start && a < start + bytes.len() as u64 {
                    let from = (a - start) as usize;
                    return bytes[from..(from + n).min(bytes.len())].to_vec();
                }
            }
            Vec::new()
        }
    }

    fn call_rel32(at: u64, to: u64) -> Vec<u8> {
        let mut b = vec![0xe8];
        b.extend(((to as i64 - (at as i64 + 5)) as i32).to_le_bytes());
        b
    }

    /// Watched bytes as a replay would show them: one 4-byte range whose value the test sets.
    fn bytes(v: u32) -> impl FnMut(u64, u64) -> Option<Vec<u8>> {
        move |_, _| Some(v.to_le_bytes().to_vec())
    }

    fn hit(resumed_at: usize, step: u64, stop: Option<usize>) -> Hit {
        Hit { addr: 0x10, next: None, resumed_at, nth: 1, stop, step }
    }

    #[test]
    fn a_coarse_pass_finds_the_stretch_of_the_last_write() {
        let mut s = Survey::new([0x10].into(), &[(0x500, 4)], None, Pass::Coarse);
        s.changed(&mut bytes(0));
        s.resumed(0, &mut bytes(0));
        s.after_call(0, Some(3), &mut bytes(0));
        // An arrival between the first and the second call, then the write before the second.
        s.hits.push(hit(0, s.steps, None));
        s.after_call(0, Some(4), &mut bytes(7));
        s.after_call(0, Some(4), &mut bytes(7));
        s.resume_ended(0, &mut bytes(7));
        s.hits.push(hit(0, s.steps, Some(1)));
        let c = s.coarse_end(1).expect("the write came after the arrival before it");
        assert_eq!((c.resumed_at, c.step, c.from, c.to), (0, 2, Some(3), Some(2)));
        // An arrival after the write is the answer instead; the stop gone back from is not one.
        s.hits.insert(1, hit(0, 2, None));
        assert!(s.coarse_end(1).is_none());
        // A write by the stop that ended a resume: after its last call, up to the resume's end.
        let mut t = Survey::new([].into(), &[(0x500, 4)], None, Pass::Coarse);
        t.changed(&mut bytes(0));
        t.resumed(0, &mut bytes(0));
        t.after_call(0, Some(9), &mut bytes(0));
        t.resume_ended(0, &mut bytes(5));
        let c = t.coarse_end(1).expect("a write");
        assert_eq!((c.step, c.from, c.to), (2, Some(9), None));
    }

    #[test]
    fn a_fine_pass_steps_over_its_stretch_only() {
        let pass = Pass::Fine { resumed_at: 2, from: Some(4), to: Some(3) };
        let mut s = Survey::new([].into(), &[(0x500, 4)], None, pass);
        s.resumed(0, &mut bytes(0));
        assert!(!s.after_call(0, Some(4), &mut bytes(0)), "another resume");
        s.resumed(2, &mut bytes(0));
        assert!(!s.steps());
        assert!(!s.after_call(2, Some(3), &mut bytes(0)), "the event index not reached yet");
        assert!(s.after_call(2, Some(4), &mut bytes(0)), "the first call that reaches it");
        assert!(s.steps());
        assert!(!s.after_call(2, Some(4), &mut bytes(0)), "the third call ends it");
        assert!(!s.after_call(2, Some(5), &mut bytes(0)), "once");
        // From the resume's start, to its end.
        let mut t = Survey::new([].into(), &[(0x500, 4)], None, Pass::Fine { resumed_at: 1, from: None, to: None });
        t.resumed(1, &mut bytes(0));
        assert!(t.steps() && t.after_call(1, Some(8), &mut bytes(0)));
        t.resumed(2, &mut bytes(0));
        assert!(!t.steps());
    }

    #[test]
    fn a_direct_call_of_the_function() {
        let mut read = reader(vec![(0x1000, call_rel32(0x1000, 0x2000))]);
        assert_eq!(call_into(0x2000, 0x1005, &mut read), Some(0x1000));
        // Not the function the thread is at: no guess.
        assert_eq!(call_into(0x2100, 0x1005, &mut read), None);
    }

    #[test]
    fn a_call_through_a_plt_entry() {
        // call 0x3000; 0x3000: endbr64; bnd jmp [rip + 0x100] → slot 0x310b holds 0x2000.
        let mut stub = vec![0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25];
        stub.extend(0x100i32.to_le_bytes());
        let slot = 0x3000 + stub.len() as u64 + 0x100;
        let runs = vec![(0x1000, call_rel32(0x1000, 0x3000)), (0x3000, stub), (slot, 0x2000u64.to_le_bytes().to_vec())];
        assert_eq!(call_into(0x2000, 0x1005, &mut reader(runs.clone())), Some(0x3004));
        assert_eq!(call_into(0x2200, 0x1005, &mut reader(runs)), None, "the slot names another function");
        // A stub that jumps directly.
        let mut jmp = vec![0xe9];
        jmp.extend(((0x2000i64 - 0x3005) as i32).to_le_bytes());
        let runs = vec![(0x1000, call_rel32(0x1000, 0x3000)), (0x3000, jmp)];
        assert_eq!(call_into(0x2000, 0x1005, &mut reader(runs)), Some(0x3000));
    }

    #[test]
    fn no_call_no_guess() {
        // mov eax, 1 ending at the "return address"; an indirect call (target unknown).
        let mut read = reader(vec![(0x1000, vec![0xb8, 1, 0, 0, 0]), (0x4000, vec![0x90, 0x90, 0x90, 0xff, 0xd0])]);
        assert_eq!(call_into(0x2000, 0x1005, &mut read), None);
        assert_eq!(call_into(0x2000, 0x4005, &mut read), None);
        // Unreadable.
        assert_eq!(call_into(0x2000, 0x9005, &mut read), None);
        assert_eq!(call_into(0x2000, 3, &mut read), None);
    }
}
