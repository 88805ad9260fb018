//! The trap handler that runs the executions, in one of two modes.
//!
//! **Harness mode**: a libFuzzer-style function (`int f(const uint8_t *data, size_t size)`)
//! called once per input from a snapshot taken at `main`.
//!
//! The program starts as it would natively and runs until `main`, where an `int3` waits:
//! libc and the program's constructors have run. There the snapshot is taken and every basic
//! block of the program gets a one-shot breakpoint. Each execution restores the snapshot,
//! places the input on the stack below `main`'s frame, and calls the function with `main`'s
//! address as its return address: the `int3` still there ends the execution. A block's
//! breakpoint, hit, gives its byte back and counts once; a fault, an `abort`, an `exit`, or
//! the time limit ends the execution too. The fuzzer (on its own thread) hands inputs over
//! and gets [`Report`]s back.
//!
//! **File mode** (AFL's `@@`, or stdin): the program runs until its first syscall that
//! mentions the input — a path argument naming the input file (`stat`, `access`, `open`, …,
//! found by the ABI table's path arguments), or for stdin a read or `fstat` of descriptor 0 —
//! and the snapshot is taken there, before that call. Each execution writes the input to the
//! file (stdin: descriptor 0 is made a fresh descriptor of it), restores, performs the pending
//! call, and lets the program run to its exit, a crash or the time limit. After the snapshot
//! the program may also read files (opened read-only; the reset closes what it opened).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use trapbox_abi::Sysno;
use trapbox_trap::{Action, Guest, GuestAddr, Kicker, Regs, SnapshotId, Syscall, Trap, TrapHandler};

/// How one execution ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The function returned.
    Returned,
    /// The program called exit or exit_group (not a crash: AFL's view).
    Exited(i32),
    /// A fault or a fatal signal the program raised itself (abort).
    Crashed {
        /// The signal it means.
        signal: i32,
        /// The instruction that faulted (for raise: the syscall's).
        rip: u64,
        /// The address it touched, for a page fault.
        addr: Option<u64>,
        /// One line saying what happened.
        what: String,
        /// A hash of the stack's frames ([`crate::unwind::Stack::hash`]).
        stack: u32,
        /// The frames, innermost first, as `symbol+off` or `object+off`, joined by " < ".
        frames: String,
    },
    /// The time limit passed.
    TimedOut,
}

/// What the handler tells the fuzzer after an execution.
#[derive(Debug)]
pub struct Report {
    /// How it ended.
    pub end: End,
    /// Slots (indexes into [`Setup::blocks`]) first hit by this execution.
    pub new_blocks: Vec<u32>,
    /// With the program's edge counters: each edge's count in this execution (empty with
    /// block breakpoints, which say only a block's first hit).
    pub counts: Vec<u8>,
    /// Pages the reset before it put back.
    pub dirty_pages: u64,
    /// How long that reset took.
    pub reset: std::time::Duration,
    /// Whether that reset knew the written pages from the kernel (else it compared).
    pub tracked: bool,
    /// Syscalls refused during it, by name (each reported once per campaign).
    pub refused: Vec<&'static str>,
}

/// What the fuzzer learns once the snapshot is taken.
pub struct Setup {
    /// Number of coverage slots.
    pub blocks: usize,
    /// What the slots are: "blocks", or the edges of the program's own counters.
    pub slots: &'static str,
    /// Breaks a spinning execution (the fuzzer's time limit).
    pub kicker: Option<Kicker>,
}

/// Where the harness is.
enum Phase {
    /// Running towards `main`.
    Starting,
    /// At the snapshot, between executions or in one.
    Fuzzing { snapshot: SnapshotId },
}

/// How inputs reach the program.
#[derive(Clone, Debug)]
pub enum Mode {
    /// A function called from `main` (link-time addresses of both).
    Call {
        /// `main`.
        main: u64,
        /// The function.
        entry: u64,
    },
    /// A file the program opens (`@@`), or its stdin.
    File {
        /// The file the input is written to before each execution.
        input: std::path::PathBuf,
        /// The program reads its stdin (a fresh descriptor of `input` each time) instead.
        stdin: bool,
        /// Where the snapshot is taken (link-time address): the first time the program gets
        /// there, instead of at its first mention of the input.
        at: Option<u64>,
    },
}

/// Which objects' blocks are the coverage map's slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cover {
    /// The program file (the default).
    Program,
    /// Every object loaded at the snapshot: the program, the dynamic linker, the libraries.
    All,
    /// These: `main` for the program, any other by the start of its file name (`libc` is
    /// `libc.so.6`).
    Only(Vec<String>),
}

impl Cover {
    fn takes_program(&self) -> bool {
        match self {
            Cover::Program | Cover::All => true,
            Cover::Only(names) => names.iter().any(|n| n == "main"),
        }
    }

    fn takes_object(&self, file_name: &str) -> bool {
        match self {
            Cover::Program => false,
            Cover::All => true,
            Cover::Only(names) => names.iter().any(|n| n != "main" && file_name.starts_with(n.as_str())),
        }
    }
}

impl std::str::FromStr for Cover {
    type Err = String;
    fn from_str(s: &str) -> Result<Cover, String> {
        match s {
            "main" => Ok(Cover::Program),
            "all" => Ok(Cover::All),
            _ => {
                let names: Vec<String> =
                    s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect();
                if names.is_empty() {
                    return Err("name objects to cover: all, main, or names such as main,libc".into());
                }
                Ok(Cover::Only(names))
            }
        }
    }
}

/// The handler.
pub struct Harness {
    mode: Mode,
    cover: Cover,
    /// File mode: the call the snapshot was taken before.
    pending: Option<Syscall>,
    /// Block leaders, link-time.
    blocks: Vec<u64>,
    pie: bool,
    lowest: u64,
    /// Harness mode's runtime addresses once known: main and the function.
    rt: Option<(u64, u64)>,
    /// File mode's --snapshot-at point (run-time address, the byte its `int3` replaced) while
    /// the program runs towards it.
    point: Option<(u64, u8)>,
    /// Runtime block address -> (slot, original byte) while its breakpoint is in.
    armed: HashMap<u64, (u32, u8)>,
    phase: Phase,
    jobs: Receiver<Vec<u8>>,
    reports: Sender<Report>,
    setup: Option<Sender<Setup>>,
    timed_out: Arc<AtomicBool>,
    hit: Vec<u32>,
    dirty: u64,
    tracked: bool,
    reset: std::time::Duration,
    refused_once: BTreeSet<&'static str>,
    refused: Vec<&'static str>,
    unwind: crate::unwind::Unwind,
    /// The program's edge counters (link-time), used instead of block breakpoints when it
    /// has them and the coverage is the program's.
    counters: Option<crate::target::Counters>,
    /// Once fuzzing with them: the map.
    edges: Option<Edges>,
    /// Why the campaign could not start, if it could not.
    pub failure: Option<String>,
}

/// The program's own edge counters, read after each execution: an edge is a slot, first hit
/// when its counter is first seen non-zero (the map is zero in the snapshot).
struct Edges {
    /// Run-time address of the map.
    map: u64,
    /// This execution's counters.
    now: Vec<u8>,
    /// Edges seen in any execution so far.
    seen: Vec<bool>,
}

impl Edges {
    /// Adds the edges this execution hit for the first time to `hit`; the execution's counts.
    fn collect(&mut self, g: &mut dyn Guest, hit: &mut Vec<u32>) -> Vec<u8> {
        if g.read(GuestAddr(self.map), &mut self.now).is_err() {
            return Vec::new();
        }
        for (i, (&c, seen)) in self.now.iter().zip(self.seen.iter_mut()).enumerate() {
            if c != 0 && !*seen {
                *seen = true;
                hit.push(i as u32);
            }
        }
        self.now.clone()
    }
}

/// The channel ends the fuzzer keeps.
pub struct Link {
    /// Inputs to run.
    pub jobs: Sender<Vec<u8>>,
    /// Reports of runs.
    pub reports: Receiver<Report>,
    /// The set-up, once.
    pub setup: Receiver<Setup>,
    /// Set before the kick that ends an execution past its time.
    pub timed_out: Arc<AtomicBool>,
}

impl Harness {
    /// A handler giving inputs as `mode` says, with coverage on `blocks` (link-time
    /// addresses); `pie` and `lowest` say how the program's addresses move when loaded.
    pub fn new(mode: Mode, blocks: Vec<u64>, pie: bool, lowest: u64) -> (Harness, Link) {
        let (jobs_tx, jobs) = std::sync::mpsc::channel();
        let (reports, reports_rx) = std::sync::mpsc::channel();
        let (setup_tx, setup) = std::sync::mpsc::channel();
        let timed_out = Arc::new(AtomicBool::new(false));
        let main = match mode {
            Mode::Call { main, .. } => Some(main),
            Mode::File { .. } => None,
        };
        let blocks = blocks.into_iter().filter(|b| Some(*b) != main).collect();
        let h = Harness {
            mode,
            cover: Cover::Program,
            pending: None,
            blocks,
            pie,
            lowest,
            rt: None,
            point: None,
            armed: HashMap::new(),
            phase: Phase::Starting,
            jobs,
            reports,
            setup: Some(setup_tx),
            timed_out: timed_out.clone(),
            hit: Vec::new(),
            dirty: 0,
            tracked: false,
            reset: std::time::Duration::ZERO,
            refused_once: BTreeSet::new(),
            refused: Vec::new(),
            unwind: Default::default(),
            counters: None,
            edges: None,
            failure: None,
        };
        (h, Link { jobs: jobs_tx, reports: reports_rx, setup, timed_out })
    }

    /// Coverage on the blocks of the objects `cover` names (default: the program's).
    pub fn cover(mut self, cover: Cover) -> Harness {
        self.cover = cover;
        self
    }

    /// The program's edge counters, which are the coverage instead of its blocks when the
    /// coverage is the program's alone.
    pub fn counters(mut self, counters: Option<crate::target::Counters>) -> Harness {
        self.counters = counters;
        self
    }

    /// The program's edge counters at run time, zeroed for the snapshot; None where it has
    /// none (or the coverage is not the program's alone), or they are not set up.
    fn edges(&self, g: &mut dyn Guest) -> Option<Edges> {
        use crate::target::Counters;
        if self.cover != Cover::Program {
            return None;
        }
        let bias = self.bias(g);
        let (map, len) = match self.counters? {
            Counters::Afl { area_ptr, final_loc } => {
                let mut p = [0u8; 8];
                let mut n = [0u8; 4];
                g.read(GuestAddr(area_ptr.wrapping_add(bias)), &mut p).ok()?;
                g.read(GuestAddr(final_loc.wrapping_add(bias)), &mut n).ok()?;
                // Edges are numbered from 1 to the last one.
                (u64::from_le_bytes(p), u32::from_le_bytes(n) as usize + 1)
            }
            Counters::Sancov { start, len } => (start.wrapping_add(bias), len as usize),
        };
        if !(2..=1 << 24).contains(&len) {
            return None;
        }
        g.write(GuestAddr(map), &vec![0u8; len]).ok()?;
        Some(Edges { map, now: vec![0; len], seen: vec![false; len] })
    }

    /// The load bias, known from the first trap on.
    fn bias(&self, g: &mut dyn Guest) -> u64 {
        load_bias(g, self.pie, self.lowest)
    }

    /// Ends the campaign with `why`.
    fn fail(&mut self, why: String) -> Action {
        self.failure = Some(why);
        self.setup = None;
        Action::Exit(1)
    }

    /// The first trap: `main` gets its `int3`.
    fn arm_main(&mut self, g: &mut dyn Guest, main: u64, entry: u64) -> Result<(), String> {
        let bias = self.bias(g);
        let (main, entry) = (main.wrapping_add(bias), entry.wrapping_add(bias));
        let p = g.process().ok_or("the engine does not run the process model")?;
        p.patch_code(GuestAddr(main), &[0xcc]).map_err(|e| format!("cannot set a breakpoint at main: {e}"))?;
        self.rt = Some((main, entry));
        Ok(())
    }

    /// The first trap, with --snapshot-at: the point gets its `int3`.
    fn arm_point(&mut self, g: &mut dyn Guest, at: u64) -> Result<(), String> {
        let at = at.wrapping_add(self.bias(g));
        let byte = place_int3(g, at).map_err(|e| format!("the snapshot point: {e}"))?;
        self.point = Some((at, byte));
        Ok(())
    }

    /// At the --snapshot-at point: its byte back, the thread back on it, then the snapshot.
    fn at_point(&mut self, g: &mut dyn Guest, at: u64, byte: u8) -> Action {
        self.point = None;
        if let Err(e) = take_int3(g, at, byte) {
            return self.fail(e);
        }
        match self.start_fuzzing(g) {
            Ok(snapshot) => self.next(g, snapshot, None),
            Err(e) => self.fail(e),
        }
    }

    /// At `main`: the snapshot, with the program's edge counters zeroed or every block's
    /// breakpoint in.
    fn start_fuzzing(&mut self, g: &mut dyn Guest) -> Result<SnapshotId, String> {
        self.edges = self.edges(g);
        let (slots, name) = match &self.edges {
            Some(e) => (e.seen.len(), self.counters.map_or("edges", |c| c.name())),
            None => (self.arm_blocks(g)?, "blocks"),
        };
        let p = g.process().ok_or("the engine does not run the process model")?;
        let kicker = Some(p.kicker());
        let snaps = g.snapshots().ok_or("the engine cannot take snapshots")?;
        let id = snaps.take().map_err(|e| format!("cannot take the snapshot at main: {e}"))?;
        if let Some(tx) = self.setup.take() {
            let _ = tx.send(Setup { blocks: slots, slots: name, kicker });
        }
        Ok(id)
    }

    /// Every covered block's one-shot breakpoint; how many blocks are covered.
    fn arm_blocks(&mut self, g: &mut dyn Guest) -> Result<usize, String> {
        let blocks = self.covered_blocks(g)?;
        for (slot, at) in blocks.iter().copied().enumerate() {
            if Some(at) == self.rt.map(|r| r.0) {
                continue;
            }
            let mut byte = [0u8];
            if g.read(GuestAddr(at), &mut byte).is_err() {
                continue;
            }
            self.armed.insert(at, (slot as u32, byte[0]));
        }
        let p = g.process().ok_or("the engine does not run the process model")?;
        for at in self.armed.keys() {
            p.patch_code(GuestAddr(*at), &[0xcc]).map_err(|e| format!("cannot set a breakpoint at {at:#x}: {e}"))?;
        }
        Ok(blocks.len())
    }

    /// The run-time addresses of the blocks `--cover` names: the program's, and those of the
    /// objects loaded now that it names.
    fn covered_blocks(&mut self, g: &mut dyn Guest) -> Result<Vec<u64>, String> {
        let bias = self.bias(g);
        let mut blocks = Vec::new();
        if self.cover.takes_program() {
            blocks.extend(self.blocks.iter().map(|b| b.wrapping_add(bias)));
        }
        if self.cover == Cover::Program {
            return Ok(blocks);
        }
        let program = g.process().and_then(|p| p.image()).map(|s| s.program).ok_or("no program image")?;
        let loaded = crate::objects::Objects::default().list(g, &program, bias);
        let names: Vec<String> =
            loaded.iter().skip(1).filter_map(|(p, _)| Some(p.file_name()?.to_string_lossy().into_owned())).collect();
        if let Cover::Only(wanted) = &self.cover {
            for w in wanted.iter().filter(|w| *w != "main") {
                if !names.iter().any(|n| n.starts_with(w.as_str())) {
                    return Err(format!(
                        "--cover {w}: no object loaded at the snapshot is named so (loaded: {})",
                        names.join(", ")
                    ));
                }
            }
        }
        for ((path, object_bias), name) in loaded.iter().skip(1).zip(&names) {
            if !self.cover.takes_object(name) {
                continue;
            }
            let t = crate::Target::read(path).map_err(|e| e.to_string())?;
            blocks.extend(t.blocks.iter().map(|b| b.wrapping_add(*object_bias)));
        }
        Ok(blocks)
    }

    /// Reports the execution that ended (if one ran), then starts the next: restore, place the
    /// input, call the function. No next input ends the run.
    fn next(&mut self, g: &mut dyn Guest, snapshot: SnapshotId, ended: Option<End>) -> Action {
        if let Some(end) = ended {
            let counts = self.edges.as_mut().map(|e| e.collect(g, &mut self.hit)).unwrap_or_default();
            let report = Report {
                end,
                new_blocks: std::mem::take(&mut self.hit),
                counts,
                dirty_pages: self.dirty,
                reset: self.reset,
                tracked: self.tracked,
                refused: std::mem::take(&mut self.refused),
            };
            if self.reports.send(report).is_err() {
                return Action::Exit(0);
            }
            let Some(snaps) = g.snapshots() else { return Action::Exit(1) };
            let t = std::time::Instant::now();
            let restored = snaps.restore(snapshot);
            self.reset = t.elapsed();
            match restored {
                Ok(r) => (self.dirty, self.tracked) = (r.dirty_pages, r.tracked),
                Err(e) => return self.fail(format!("cannot restore the snapshot: {e}")),
            }
        }
        let Ok(input) = self.jobs.recv() else {
            return Action::Exit(0);
        };
        self.timed_out.store(false, Ordering::SeqCst);
        self.phase = Phase::Fuzzing { snapshot };
        match self.mode.clone() {
            Mode::Call { .. } => self.call(g, &input),
            Mode::File { input: path, stdin, .. } => self.perform_pending(g, &input, &path, stdin),
        }
    }

    /// File mode: the input in its file (and on stdin), then the call the snapshot stopped.
    fn perform_pending(&mut self, g: &mut dyn Guest, input: &[u8], path: &std::path::Path, stdin: bool) -> Action {
        if let Err(e) = std::fs::write(path, input) {
            return self.fail(format!("cannot write the input to {}: {e}", path.display()));
        }
        if stdin {
            if let Err(e) = crate::host::stdin_from(path) {
                return self.fail(format!("cannot give the input to stdin: {e}"));
            }
        }
        // A snapshot at a point (--snapshot-at) has no call pending: the program goes on there.
        let Some(call) = self.pending else { return Action::Resume };
        match g.passthrough(&call) {
            Action::Return(v) => {
                let mut r = g.regs();
                r.rax = v as u64;
                g.set_regs(&r);
                Action::Resume
            }
            other => other,
        }
    }

    /// Harness mode: the input on the stack, and a call of the function returning to `main`.
    fn call(&mut self, g: &mut dyn Guest, input: &[u8]) -> Action {
        let (main, entry) = self.rt.expect("set at the first trap");
        let (writes, regs) = call_frame(&g.regs(), main, entry, input);
        if writes.iter().any(|(at, data)| g.write(GuestAddr(*at), data).is_err()) {
            return self.fail(format!("the stack cannot hold a {}-byte input", input.len()));
        }
        g.set_regs(&regs);
        Action::Resume
    }

    /// A crash with `signal` at the thread's registers: its stack found, then the execution ends.
    fn crashed(&mut self, g: &mut dyn Guest, signal: i32, rip: u64, addr: Option<u64>, what: String) -> Action {
        let mut r = g.regs();
        r.rip = rip;
        let program = g.process().and_then(|p| p.image()).map(|s| s.program);
        let bias = self.bias(g);
        let stack = match &program {
            Some(path) => self.unwind.stack(g, &r, (path, bias)),
            None => Default::default(),
        };
        let frames: Vec<String> = stack
            .frames
            .iter()
            .map(|f| match (g.symbolize(f.addr).or_else(|| f.symbol.clone()), &f.place) {
                (Some(s), _) => s,
                (None, Some((object, off))) => format!("{object}+{off:#x}"),
                (None, None) => format!("{:#x}", f.addr),
            })
            .collect();
        let end = End::Crashed { signal, rip, addr, what, stack: stack.hash(), frames: frames.join(" < ") };
        self.ended(g, end)
    }

    fn ended(&mut self, g: &mut dyn Guest, end: End) -> Action {
        match self.phase {
            Phase::Fuzzing { snapshot } => self.next(g, snapshot, Some(end)),
            Phase::Starting => Action::Exit(1),
        }
    }

    /// File mode: whether `call` is the program's first mention of its input.
    fn mentions_input(&self, g: &mut dyn Guest, call: &Syscall) -> bool {
        let Mode::File { input, stdin, at: None } = &self.mode else { return false };
        let Some(desc) = call.desc() else { return false };
        if *stdin {
            let reads_fd0 = matches!(
                desc.sysno,
                Sysno::read | Sysno::readv | Sysno::pread64 | Sysno::preadv | Sysno::fstat | Sysno::lseek
            );
            return reads_fd0 && call.args[0] == 0;
        }
        let want = input.as_os_str().as_encoded_bytes();
        desc.args.iter().enumerate().any(|(i, a)| {
            matches!(a.kind, trapbox_abi::ArgKind::Path)
                && g.read_cstr(GuestAddr(call.args[i]), 4096).is_ok_and(|p| p == want)
        })
    }

    fn on_syscall(&mut self, g: &mut dyn Guest, call: &Syscall) -> Action {
        if matches!(self.phase, Phase::Starting) {
            if let Mode::Call { main, entry } = self.mode {
                if self.rt.is_none() {
                    if let Err(e) = self.arm_main(g, main, entry) {
                        return self.fail(e);
                    }
                }
            } else if let Mode::File { at: Some(at), .. } = self.mode {
                if self.point.is_none() {
                    if let Err(e) = self.arm_point(g, at) {
                        return self.fail(e);
                    }
                }
            } else if self.mentions_input(g, call) {
                self.pending = Some(*call);
                return match self.start_fuzzing(g) {
                    Ok(snapshot) => self.next(g, snapshot, None),
                    Err(e) => self.fail(e),
                };
            }
            return g.passthrough(call);
        }
        let a = call.args;
        let file_mode = matches!(self.mode, Mode::File { .. });
        match call.sysno() {
            Some(Sysno::exit | Sysno::exit_group) => self.ended(g, End::Exited(a[0] as i32)),
            Some(Sysno::kill | Sysno::tkill | Sysno::tgkill) => {
                let sig = if call.sysno() == Some(Sysno::tgkill) { a[2] } else { a[1] } as i32;
                if sig == 0 {
                    return Action::Return(0);
                }
                let what = format!("the program raised {}", trapbox_trap::signal_name(sig));
                let rip = g.regs().rip;
                self.crashed(g, sig, rip, None, what)
            }
            // Output is swallowed: the next execution must not see it, nor the terminal.
            Some(Sysno::write) if a[0] == 1 || a[0] == 2 => Action::Return(a[2] as i64),
            // File mode: reading files, the input among them, leaves nothing behind that the
            // reset does not undo (descriptors opened since are closed).
            Some(Sysno::open) if file_mode && read_only(a[1]) => g.passthrough(call),
            Some(Sysno::openat) if file_mode && read_only(a[2]) => g.passthrough(call),
            Some(
                Sysno::read
                | Sysno::pread64
                | Sysno::readv
                | Sysno::lseek
                | Sysno::fstat
                | Sysno::stat
                | Sysno::lstat
                | Sysno::newfstatat
                | Sysno::statx
                | Sysno::access
                | Sysno::faccessat
                | Sysno::faccessat2
                | Sysno::close
                | Sysno::getdents64,
            ) if file_mode => g.passthrough(call),
            // isatty() on the output.
            Some(Sysno::ioctl) if a[1] == libc::TCGETS => g.passthrough(call),
            Some(
                Sysno::brk
                | Sysno::mmap
                | Sysno::munmap
                | Sysno::mprotect
                | Sysno::mremap
                | Sysno::madvise
                | Sysno::clock_gettime
                | Sysno::gettimeofday
                | Sysno::time
                | Sysno::getpid
                | Sysno::gettid
                | Sysno::getuid
                | Sysno::geteuid
                | Sysno::getgid
                | Sysno::getegid
                | Sysno::getrandom
                | Sysno::rt_sigprocmask
                | Sysno::sched_yield
                | Sysno::futex,
            ) => g.passthrough(call),
            _ => {
                let name = call.sysno().map(|s| s.name()).unwrap_or("unknown");
                if self.refused_once.insert(name) {
                    self.refused.push(name);
                }
                Action::Return(-(libc::ENOSYS as i64))
            }
        }
    }
}

/// An `int3` placed at `at`: the byte it replaced.
pub(crate) fn place_int3(g: &mut dyn Guest, at: u64) -> Result<u8, String> {
    let mut byte = [0u8];
    g.read(GuestAddr(at), &mut byte).map_err(|_| format!("{at:#x} is not the program's code"))?;
    let p = g.process().ok_or("the engine does not run the process model")?;
    p.patch_code(GuestAddr(at), &[0xcc]).map_err(|e| format!("cannot set a breakpoint at {at:#x}: {e}"))?;
    Ok(byte[0])
}

/// At the `int3` [`place_int3`] put at `at`: the program's `byte` back, and the thread back on
/// it, to run what was there.
pub(crate) fn take_int3(g: &mut dyn Guest, at: u64, byte: u8) -> Result<(), String> {
    if let Some(p) = g.process() {
        p.patch_code(GuestAddr(at), &[byte]).map_err(|e| format!("cannot remove the breakpoint at {at:#x}: {e}"))?;
    }
    let mut r = g.regs();
    r.rip = at;
    g.set_regs(&r);
    Ok(())
}

/// How far the program was moved from its link-time addresses (known from the first trap on):
/// `lowest` is its lowest link-time address, `pie` whether it moves at all.
pub(crate) fn load_bias(g: &mut dyn Guest, pie: bool, lowest: u64) -> u64 {
    if !pie {
        return 0;
    }
    let base = g.process().and_then(|p| p.image()).and_then(|s| s.placement.exe_base).unwrap_or(0);
    base.wrapping_sub(lowest & !0xfff)
}

/// The call of the function at `entry` on `input`, made at `main`'s first instruction with
/// registers `r`: the input goes below main's frame and its red zone, the call's frame below
/// that, returning to `main` (where an `int3` ends an execution). The memory to write, and the
/// registers to go on with.
pub(crate) fn call_frame(r: &Regs, main: u64, entry: u64, input: &[u8]) -> (Vec<(u64, Vec<u8>)>, Regs) {
    let buf = (r.rsp - 256 - input.len() as u64) & !15;
    let sp = (buf - 64) & !15;
    let mut regs = *r;
    regs.rsp = sp - 8;
    regs.rip = entry;
    regs.rdi = buf;
    regs.rsi = input.len() as u64;
    regs.rax = 0;
    (vec![(buf, input.to_vec()), (sp - 8, main.to_le_bytes().to_vec())], regs)
}

/// Whether open flags `flags` only read.
fn read_only(flags: u64) -> bool {
    let f = flags as i32;
    f & libc::O_ACCMODE == libc::O_RDONLY && f & (libc::O_CREAT | libc::O_TRUNC) == 0
}

impl TrapHandler for Harness {
    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        match trap {
            Trap::Syscall(call) => self.on_syscall(g, call),
            Trap::Breakpoint { rip } => {
                let at = rip - 1;
                if let Some((point, byte)) = self.point.filter(|p| p.0 == at) {
                    return self.at_point(g, point, byte);
                }
                let main = self.rt.map(|r| r.0);
                if Some(at) == main {
                    return match self.phase {
                        Phase::Starting => match self.start_fuzzing(g) {
                            Ok(snapshot) => self.next(g, snapshot, None),
                            Err(e) => self.fail(e),
                        },
                        Phase::Fuzzing { .. } => self.ended(g, End::Returned),
                    };
                }
                if let Some((slot, byte)) = self.armed.remove(&at) {
                    if let Some(p) = g.process() {
                        if let Err(e) = p.patch_code(GuestAddr(at), &[byte]) {
                            return self.fail(format!("cannot remove the breakpoint at {at:#x}: {e}"));
                        }
                    }
                    self.hit.push(slot);
                    let mut r = g.regs();
                    r.rip = at;
                    g.set_regs(&r);
                    return Action::Resume;
                }
                let what = format!("int3 at {at:#x}");
                self.crashed(g, libc::SIGTRAP, at, None, what)
            }
            Trap::Fault(f) => {
                let info = f.siginfo();
                let what = match g.symbolize(f.rip) {
                    Some(s) => format!("{} in {s}", f.describe()),
                    None => f.describe(),
                };
                self.crashed(g, info.signo, f.rip, f.addr, what)
            }
            Trap::Preempt if self.timed_out.load(Ordering::SeqCst) => self.ended(g, End::TimedOut),
            Trap::Preempt | Trap::SingleStep { .. } => Action::Resume,
            Trap::Timeout | Trap::HostSignal(_) => Action::Exit(0),
        }
    }
}
