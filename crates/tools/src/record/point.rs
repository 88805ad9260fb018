//! A point in a thread's run, named by its registers: the instruction at RIP, reached with the
//! recorded general registers. Without an instruction counter this is how a recording names
//! where it stopped user code (a signal that interrupted it, a preemption) and how a replay
//! finds the same place: a breakpoint at RIP, and at each hit the registers compared; a hit
//! with other registers (another turn of a loop, another way through) steps the instruction
//! (the trap flag) and puts the breakpoint back.
//!
//! The breakpoint is in the guest's memory, so any thread running that code would hit it:
//! it is set only while one guest thread runs (the turn's holder). Memory is not compared: a
//! loop that counts in memory only, with the same registers on every turn, stops on its
//! first turn.

use trapbox_abi::arch::sigframe;
use trapbox_trap::{Guest, GuestAddr};

/// The trap flag of RFLAGS.
const TF: u64 = 1 << 8;

/// Register names in signal-frame order.
const GREG_NAMES: [&str; 18] = [
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx", "rax", "rcx", "rsp",
    "rip", "rflags",
];

/// A point being looked for.
#[derive(Debug)]
pub(super) struct Point {
    /// The registers, in signal-frame order; `context[16]` is the address.
    context: [u64; 18],
    /// The byte the breakpoint replaced (once set).
    byte: Option<u8>,
    /// Hits with other registers so far.
    pub passes: u32,
    /// Stepping over the instruction: the breakpoint is out until the single-step trap.
    stepping: bool,
}

/// What a breakpoint hit at the point means.
pub(super) enum Hit {
    /// The registers match: the thread is at the point (the breakpoint is out).
    Found,
    /// Other registers: the instruction is being stepped over, the search goes on.
    Passed,
    /// Other registers, the search is over (`max_passes`, or an instruction that cannot be
    /// stepped): which differ (the breakpoint is out).
    NotFound(String),
}

impl Point {
    /// A breakpoint at `context`'s instruction; None where none can go.
    pub fn arm(g: &mut dyn Guest, context: [u64; 18]) -> Option<Point> {
        let mut p = Point::pending(context);
        p.place(g).then_some(p)
    }

    /// A point whose breakpoint goes in later ([`Point::place`]); until then no trap is its.
    pub fn pending(context: [u64; 18]) -> Point {
        Point { context, byte: None, passes: 0, stepping: false }
    }

    /// Whether the breakpoint of a [`Point::pending`] is still to be placed.
    pub fn is_pending(&self) -> bool {
        self.byte.is_none() && !self.stepping
    }

    /// Places a pending point's breakpoint; false where none can go.
    pub fn place(&mut self, g: &mut dyn Guest) -> bool {
        self.set(g)
    }

    /// The thread is at `context` now: looks for the next time it comes back with the same
    /// registers, after stepping the instruction here.
    pub fn again(g: &mut dyn Guest, context: [u64; 18]) -> Option<Point> {
        let mut p = Point::pending(context);
        p.step(g).then_some(p)
    }

    /// The program's byte under this point's `int3`, if it is set at `addr`.
    pub fn original(&self, addr: u64) -> Option<u8> {
        self.byte.filter(|_| addr == self.addr())
    }

    /// The point's address.
    pub fn addr(&self) -> u64 {
        self.context[16]
    }

    /// Whether a breakpoint trap (RIP after the int3) is this point's.
    pub fn is_hit(&self, rip: u64) -> bool {
        self.byte.is_some() && rip.wrapping_sub(1) == self.addr()
    }

    /// Whether a single-step trap is this point's.
    pub fn is_step(&self) -> bool {
        self.stepping
    }

    fn set(&mut self, g: &mut dyn Guest) -> bool {
        let mut byte = [0u8; 1];
        if g.read(GuestAddr(self.addr()), &mut byte).is_err()
            || super::patch_code(g, GuestAddr(self.addr()), &[0xcc]).is_err()
        {
            return false;
        }
        self.byte = Some(byte[0]);
        true
    }

    fn unset(&mut self, g: &mut dyn Guest) {
        if let Some(b) = self.byte.take() {
            let _ = super::patch_code(g, GuestAddr(self.addr()), &[b]);
        }
    }

    /// Runs the instruction at the point alone (the thread is there, the breakpoint out);
    /// false for one that cannot be: a syscall (its event would come between), pushf (it would
    /// save the trap flag), a breakpoint of the guest's own.
    fn step(&mut self, g: &mut dyn Guest) -> bool {
        let mut insn = [0u8; 2];
        if g.read(GuestAddr(self.addr()), &mut insn).is_err() || insn == [0x0f, 0x05] || matches!(insn[0], 0x9c | 0xcc)
        {
            return false;
        }
        let mut regs = g.regs();
        regs.rflags |= TF;
        g.set_regs(&regs);
        self.stepping = true;
        true
    }

    /// The guest hit the breakpoint: back to the instruction, and the registers compared
    /// (RFLAGS left out: a loop's first turn has the flags of the code before it).
    pub fn hit(&mut self, g: &mut dyn Guest, max_passes: u32) -> Hit {
        let mut regs = g.regs();
        regs.rip = regs.rip.wrapping_sub(1);
        g.set_regs(&regs);
        self.unset(g);
        let now = sigframe::gregs(&regs);
        let differ: Vec<String> = (0..17)
            .filter(|&i| now[i] != self.context[i])
            .map(|i| format!("{} {:#x} (recorded {:#x})", GREG_NAMES[i], now[i], self.context[i]))
            .collect();
        if differ.is_empty() {
            return Hit::Found;
        }
        if self.passes < max_passes && self.step(g) {
            self.passes += 1;
            return Hit::Passed;
        }
        Hit::NotFound(differ.join(", "))
    }

    /// The single-step trap after the instruction: the breakpoint goes back.
    pub fn stepped(&mut self, g: &mut dyn Guest) {
        let mut regs = g.regs();
        regs.rflags &= !TF;
        g.set_regs(&regs);
        self.stepping = false;
        self.set(g);
    }

    /// The search ends: the breakpoint out, the trap flag cleared.
    pub fn disarm(mut self, g: &mut dyn Guest) {
        self.unset(g);
        if self.stepping {
            let mut regs = g.regs();
            regs.rflags &= !TF;
            g.set_regs(&regs);
        }
    }
}
