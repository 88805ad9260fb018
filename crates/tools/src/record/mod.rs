//! `trapbox record` / `trapbox replay`: a [`Recorder`] handler that wraps another (normally
//! Passthrough) and writes everything nondeterministic to a trace as the run goes, and a
//! [`Replayer`] handler that runs the same program again and answers every syscall and every
//! machine-dependent instruction from the trace, touching the host only to reproduce the
//! guest's writes to stdout and stderr.
//!
//! Which guest bytes the kernel wrote comes from the ABI table's walk over argument kinds
//! ([`output_ranges`]), the same walk passthrough stages calls by, not from guessing through
//! pointers.

pub mod console;
pub mod event;
pub mod file;
pub mod nondet;
mod point;
mod shared_maps;
mod turns;

use std::io::{Read, Write};
use std::sync::Arc;

use console::{Console, Transfer};
use event::describe_call;
pub use event::{ConsoleEvent, EndEvent, Event, FileEvent, Insn, InsnEvent, SignalEvent, StartEvent, SyscallEvent};
pub use file::{Tail, TraceError, TraceReader, TraceWriter};
use nondet::Patcher;
use point::{Hit, Point};
use shared_maps::SharedMaps;
use turns::Shared;

use trapbox_abi::arch::sigframe;
use trapbox_abi::{self as abi, Dir, SyscallDesc, Sysno as S};
use trapbox_host as host;
use trapbox_trap::{Action, Guest, GuestAddr, MemError, Outcome, Start, Syscall, Trap, TrapHandler};
use trapbox_vdso::{self as vdso, TimeBuffer};

/// Guest memory as the ABI walk reads it after a call: the recorder vouches for nothing, it
/// only needs the values the kernel left there.
pub(crate) struct AfterCall<'a>(pub(crate) &'a dyn Guest);

impl abi::walk::Memory for AfterCall<'_> {
    fn read(&self, addr: u64, out: &mut [u8]) -> bool {
        self.0.read(GuestAddr(addr), out).is_ok()
    }
    fn allows(&self, _: u64, _: u64, _: Dir) -> bool {
        true
    }
    fn covers(&self, _: u64, _: u64) -> bool {
        true
    }
}

/// The guest ranges a syscall that returned `ret` may have written: the ABI walk's own
/// account ([`abi::walk::Plan::written`]), the one passthrough stages the call by, plus the
/// outputs of the calls trapbox emulates.
pub fn output_ranges(g: &dyn Guest, desc: &SyscallDesc, a: &[u64; 6], ret: i64) -> Vec<(u64, u64)> {
    let ok = ret >= 0;
    let mut out = match abi::walk::plan(desc, a, &AfterCall(g), &abi::walk::Policy::default()) {
        Ok(plan) => plan.written(ret),
        Err(_) => Vec::new(),
    };
    match desc.sysno {
        S::mincore if ok => out.push((a[2], a[1].div_ceil(4096))),
        S::prctl if ok && a[0] as i32 == libc::PR_GET_NAME => out.push((a[1], 16)),
        S::prctl if ok && matches!(a[0] as i32, libc::PR_GET_PDEATHSIG | libc::PR_GET_CHILD_SUBREAPER) => {
            out.push((a[1], 4))
        }
        _ => {}
    }
    out.retain(|(addr, len)| *addr != 0 && *len > 0);
    out
}

/// Overwrites guest code through the engine's process model; an engine without one has no
/// code to patch.
fn patch_code(g: &mut dyn Guest, addr: GuestAddr, bytes: &[u8]) -> Result<(), MemError> {
    g.process().map_or(Err(MemError::Fault(addr.0)), |p| p.patch_code(addr, bytes))
}

/// Queues a recorded signal for the guest; an engine without a process model has no signals
/// to deliver, and the replay then diverges where the recorded handler ran.
fn queue_signal(g: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
    if let Some(p) = g.process() {
        p.queue_signal(sig, siginfo);
    }
}

fn is_exec(call: &Syscall) -> bool {
    call.nr == libc::SYS_execve as u64 || call.nr == libc::SYS_execveat as u64
}

/// A syscall's result once `action` is applied.
fn result_of(action: &Action, g: &dyn Guest) -> i64 {
    match action {
        Action::Return(r) => *r,
        Action::Resume => g.regs().rax as i64,
        _ => 0,
    }
}

/// Reads `[addr, addr+len)` for the trace, skipping unreadable pages.
fn snapshot(g: &dyn Guest, addr: u64, len: u64, into: &mut Vec<(u64, Vec<u8>)>) {
    into.extend(g.read_runs(GuestAddr(addr), len.min(1 << 30)));
}

/// Memory calls after which executable mappings may have changed.
fn maps_changed(sysno: Option<S>) -> bool {
    matches!(sysno, Some(S::mmap | S::munmap | S::mprotect | S::mremap))
}

fn rescan(p: &mut Patcher, g: &mut dyn Guest, call: &Syscall, ret: i64) {
    let sysno = call.sysno();
    if !maps_changed(sysno) || ret < 0 {
        return;
    }
    let a = call.args;
    match sysno {
        Some(S::mmap) => p.forget(ret as u64, (ret as u64).saturating_add(a[1])),
        Some(S::munmap) => p.forget(a[0], a[0].saturating_add(a[1])),
        Some(S::mremap) => p.moved(a[0], a[1], ret as u64, a[2]),
        // Same code, other rights: its patches stay (a new scan sees through them).
        _ => p.unscan(a[0], a[0].saturating_add(a[1])),
    }
    p.scan(g);
}

/// CRC-32 and length of a file (the program, so a replay can refuse a changed binary).
pub fn file_crc(path: &std::path::Path) -> std::io::Result<(u32, u64)> {
    // The trace writer's thread computes it while the guest runs: its descriptor stays out of
    // an execve's close-on-exec sweep by holding the stock lock, not by moving to the private
    // range, whose few numbers a replay's stored files may all hold.
    let _stock = trapbox_host::fds::stocktaking();
    let mut f = std::fs::File::open(path)?;
    // In pieces: a program of many megabytes is not copied into memory of its own.
    let (mut h, mut buf, mut len) = (crc32fast::Hasher::new(), vec![0u8; 1 << 18], 0u64);
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok((h.finalize(), len)),
            Ok(n) => {
                h.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    std::os::unix::ffi::OsStrExt::as_bytes(s).to_vec()
}

/// Answers a patched instruction at `site` with machine values; the registers it sets.
fn emulate(g: &mut dyn Guest, site: nondet::Site) -> [u64; 4] {
    let r = g.regs();
    match site.insn {
        Insn::Rdtsc => {
            let t = host::tsc();
            [t & 0xffff_ffff, r.rbx, r.rcx, t >> 32]
        }
        Insn::Rdtscp => {
            let (t, aux) = host::tscp();
            [t & 0xffff_ffff, r.rbx, aux as u64, t >> 32]
        }
        Insn::Cpuid => {
            let (leaf, sub) = (r.rax as u32, r.rcx as u32);
            let mut v = g.process().and_then(|p| p.cpuid(leaf, sub)).unwrap_or([0; 4]);
            match leaf {
                // The fixed view advertises no hardware random numbers: they could not be
                // replayed.
                1 => v[2] &= !(1 << 30),
                7 if sub == 0 => v[1] &= !(1 << 18),
                _ => {}
            }
            v.map(u64::from)
        }
        Insn::Rdrand | Insn::Rdseed => {
            let size = site.dest.map_or(8, |d| d.size);
            // A CPU without the instruction: the guest sees a failed attempt (carry clear).
            let (v, ok) = host::hardware_random(site.insn == Insn::Rdseed, size).unwrap_or((0, false));
            [v, ok as u64, 0, 0]
        }
    }
}

/// Sets what the instruction at `site` produced and moves past it.
fn apply_insn(g: &mut dyn Guest, site: nondet::Site, regs: [u64; 4]) {
    let mut r = g.regs();
    match (site.insn, site.dest) {
        (Insn::Rdrand | Insn::Rdseed, Some(d)) => {
            let reg = r.gpr_mut(d.reg);
            // A 32-bit result clears the upper half, a 16-bit one leaves it.
            *reg = match d.size {
                2 => (*reg & !0xffff) | (regs[0] & 0xffff),
                4 => regs[0] & 0xffff_ffff,
                _ => regs[0],
            };
            // CF says whether a number was returned; OF, SF, ZF, AF and PF are cleared.
            const CLEARED: u64 = 1 | 1 << 2 | 1 << 4 | 1 << 6 | 1 << 7 | 1 << 11;
            r.rflags = (r.rflags & !CLEARED) | (regs[1] & 1);
        }
        _ => (r.rax, r.rbx, r.rcx, r.rdx) = (regs[0], regs[1], regs[2], regs[3]),
    }
    r.rip = site.addr + site.len;
    g.set_regs(&r);
}

/// Largest file whose whole contents a recording stores once (bigger ones: what was mapped).
const FILE_LIMIT: u64 = 64 << 20;

/// Records a run.
pub struct Recorder<H, W: Write + Send + 'static> {
    inner: H,
    /// What the handlers of all the guest's threads share.
    shared: Arc<Shared<Recording<W>>>,
    /// This handler's thread (0 for the first).
    me: u32,
    /// A point this thread was kicked at, looked for again (see [`turns`]).
    probe: Option<Point>,
}

/// How many times a recorded thread may come back to a point it was kicked at, with other
/// registers, before that point is given up (a spin's loop comes back the same at once; an
/// inner loop of a few turns is passed over).
const PROBE_PASSES: u32 = 16;

/// A recording's state, one for all of the guest's threads.
struct Recording<W: Write + Send + 'static> {
    /// None once the run ended and the trace is complete on disk.
    out: Option<TraceWriter<W>>,
    events: u64,
    bytes: u64,
    patcher: Patcher,
    error: Option<std::io::Error>,
    /// Files stored so far: (device, inode, size, mtime) -> id.
    files: std::collections::HashMap<(u64, u64, u64, i64), u32>,
    /// trapbox's vDSO buffer, when the guest has it.
    time: Option<TimeBuffer>,
    /// trapbox's vDSO code, when the guest has it.
    vdso: Option<(u64, u64)>,
    /// What reaches the console, from this process and its children.
    console: Console,
    /// Writable shared memory, watched for what other processes write there.
    shared_maps: SharedMaps,
    /// The host's vDSO code, which trapbox's vDSO calls when recording: a syscall made there
    /// (a clock the host's vDSO cannot read) is part of a time call, not an event.
    host_vdso: Option<(u64, u64)>,
}

/// What a syscall is to the recorder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKind {
    /// Made by trapbox's vDSO inside a time call: part of that call, not an event.
    InTimeCall,
    /// A forked child's: only its console output is kept (`transfer` if it moves bytes to the
    /// console without the guest's memory).
    Unrecorded { transfer: Option<Transfer> },
    /// execve or execveat.
    Exec,
    /// Any other; `forks` for fork, vfork and clone.
    Other { forks: bool, transfer: Option<Transfer> },
}

impl<H: TrapHandler, W: Write + Send + 'static> Recorder<H, W> {
    /// Records `inner`'s run into `out`. Make it before building the sandbox, as a replay
    /// opens its trace before building its own: the writer thread it starts then takes the
    /// same place in memory as the replay's reader thread, and the guest's mappings find the
    /// same free space in both runs.
    pub fn new(inner: H, out: W) -> std::io::Result<Self> {
        let recording = Recording {
            out: Some(TraceWriter::new(out)?),
            events: 0,
            bytes: 0,
            patcher: Patcher::default(),
            error: None,
            files: Default::default(),
            time: None,
            vdso: None,
            console: Console::default(),
            shared_maps: SharedMaps::default(),
            host_vdso: None,
        };
        Ok(Recorder { inner, shared: Arc::new(Shared::new(recording)), me: 0, probe: None })
    }

    /// Has the trace writer's thread close `file`, the old trace that
    /// [`file::create_replacing`] unlinked to make room for this one: freeing its blocks
    /// then overlaps the run instead of delaying its start.
    pub fn close_later(&mut self, file: std::fs::File) {
        let st = &mut *self.shared.lock();
        if let (None, Some(out)) = (&st.error, st.out.as_mut()) {
            if let Err(err) = out.close_later(file) {
                st.error = Some(err);
            }
        }
    }

    /// The first error writing the trace, if any (the guest keeps running regardless).
    pub fn error(&self) -> Option<String> {
        self.shared.lock().error.as_ref().map(|e| e.to_string())
    }

    /// Events and bytes written.
    pub fn stats(&self) -> (u64, u64) {
        let st = self.shared.lock();
        match &st.out {
            Some(o) => (o.events(), o.bytes()),
            None => (st.events, st.bytes),
        }
    }

    /// Makes the thread `g` call a function of the program: `writes` into its memory, then
    /// `regs`. Recorded as a Call event at the registers it has now, so that a replay makes the
    /// same call at the same point (a tool that drives the program, like the fuzzer's harness).
    pub fn call(
        &mut self,
        g: &mut dyn Guest,
        writes: Vec<(u64, Vec<u8>)>,
        regs: &trapbox_trap::Regs,
    ) -> Result<(), MemError> {
        for (addr, data) in &writes {
            g.write(GuestAddr(*addr), data)?;
        }
        let at = sigframe::gregs(&g.regs());
        let st = &mut *self.shared.lock();
        // Time calls made before it are its past (as for a preemption).
        st.drain_time_calls();
        st.push(&Event::Call(Box::new(event::CallEvent { at, writes, regs: sigframe::gregs(regs) })));
        g.set_regs(regs);
        Ok(())
    }

    /// Machine-dependent instructions patched into breakpoints.
    pub fn patched_sites(&self) -> usize {
        self.shared.lock().patcher.sites()
    }

    /// Waits for the turn (a Switch event if it was another thread's); false if the process
    /// ended first.
    fn take_turn(&self, g: &mut dyn Guest) -> bool {
        match self.shared.take_turn(g, self.me) {
            Some(true) => {
                self.shared.lock().push(&Event::Switch(self.me));
                true
            }
            Some(false) => true,
            None => false,
        }
    }

    fn syscall(&mut self, g: &mut dyn Guest, trap: &Trap, call: &Syscall) -> Action {
        let kind = self.shared.lock().enter(g, call);
        // A call the replay answers from the trace may block (a futex wait, a read from a
        // pipe): the other threads take turns meanwhile. Those it performs itself keep the
        // turn, so that they happen in the recorded order against the other threads', and so
        // do exec and thread and process creation, and calls that never wait (over sooner
        // than a hand-over).
        let lets_go = matches!(kind, CallKind::Other { forks: false, .. })
            && !replay_reexecutes(call.sysno())
            && !call.sysno().is_some_and(S::never_waits)
            && self.shared.let_go(self.me, None);
        let action = self.inner.on_trap(g, trap);
        if lets_go && !self.take_turn(g) {
            // The process is ending: this call is not part of the recording.
            return action;
        }
        if self.shared.lock().leave(g, call, kind, &action) {
            self.shared.forked(self.me);
        }
        action
    }

    /// A thread waits for this one's turn and had it kicked out of user code (see
    /// [`turns`]): if a replay could stop it here, it is watched for coming back here with
    /// the same registers.
    fn preempted(&mut self, g: &mut dyn Guest) -> Action {
        if self.probe.is_none() && self.shared.waiter(self.me).is_some() {
            let here = sigframe::gregs(&g.regs());
            if self.shared.lock().stoppable(here[16]) {
                self.probe = Point::again(g, here);
            }
        }
        Action::Resume
    }

    /// The traps of a probe under way: its single step, its breakpoint (found: the thread
    /// spins, and gives up its turn there), a kick meanwhile. Any other trap ends it.
    fn probing(&mut self, g: &mut dyn Guest, trap: &Trap) -> Option<Action> {
        let p = self.probe.as_mut()?;
        match trap {
            Trap::SingleStep { .. } if p.is_step() => p.stepped(g),
            Trap::Breakpoint { rip } if p.is_hit(*rip) => match p.hit(g, PROBE_PASSES) {
                Hit::Found => {
                    self.probe = None;
                    self.give_up_turn(g);
                }
                Hit::Passed => {}
                Hit::NotFound(_) => {
                    self.probe = None;
                    self.shared.no_spin(self.me);
                }
            },
            // Kicked again before coming back to the point: the thread went on elsewhere (out
            // of the loop it was in, maybe into another: a spin waiting for a thread that
            // waits for this one's turn, which only a probe here can find). A miss; the probe
            // starts over where the thread is now.
            Trap::Preempt if !p.is_step() => {
                if let Some(p) = self.probe.take() {
                    p.disarm(g);
                }
                self.shared.no_spin(self.me);
                return None;
            }
            Trap::Preempt => {}
            _ => {
                if let Some(p) = self.probe.take() {
                    p.disarm(g);
                }
                return None;
            }
        }
        Some(Action::Resume)
    }

    /// The thread spins: it gives its turn to a thread that waits for it, here.
    fn give_up_turn(&mut self, g: &mut dyn Guest) {
        let Some(to) = self.shared.waiter(self.me) else { return };
        let mut st = self.shared.lock();
        st.drain_time_calls();
        st.push(&Event::Preempt(sigframe::gregs(&g.regs())));
        drop(st);
        self.shared.let_go(self.me, Some(to));
        self.take_turn(g);
    }
}

impl<W: Write + Send + 'static> Recording<W> {
    /// Records the time calls the guest made since the previous event (before that event).
    fn drain_time_calls(&mut self) {
        if let Some(t) = self.time {
            let calls = t.drain();
            if !calls.is_empty() {
                self.push(&Event::TimeCalls(calls));
            }
        }
    }

    /// Whether a replay can stop a thread before the instruction at `rip` with a breakpoint:
    /// the program's own code (not trapbox's vDSO, which records and replays on different
    /// paths) and not an instruction patched for an event. (Instructions that cannot be
    /// stepped, a `syscall` among them, [`Point::again`] refuses.)
    fn stoppable(&self, rip: u64) -> bool {
        let in_vdso = |r: Option<(u64, u64)>| r.is_some_and(|(lo, hi)| (lo..hi).contains(&rip));
        !in_vdso(self.vdso) && !in_vdso(self.host_vdso) && self.patcher.site_at_breakpoint(rip + 1).is_none()
    }

    /// The File event id for the file behind guest descriptor `fd`, storing its contents the
    /// first time (replay maps anonymous memory and fills it from them, so it works after the
    /// file changed or vanished). None for files too big to store whole.
    ///
    /// The writer's thread reads the file later, off the guest's thread; for a `shared`
    /// mapping its contents go into the event now instead: the guest's writes through the
    /// mapping reach the file at once (in-process they are plain stores), and the replay must
    /// start from the bytes as they were mapped.
    fn file_id(&mut self, fd: u64, shared: bool) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        // A new open file description: reading it does not move the guest's file offset. It
        // goes to the writer's thread, so into the private range.
        let path = format!("/proc/self/fd/{}", fd as i32);
        let file = trapbox_host::fds::private_of_guest_file(|| std::fs::File::open(path)).ok()?;
        let m = file.metadata().ok()?;
        if !m.is_file() || m.len() > FILE_LIMIT {
            return None;
        }
        let key = (m.dev(), m.ino(), m.len(), m.mtime_nsec() ^ m.mtime());
        if let Some(id) = self.files.get(&key) {
            return Some(*id);
        }
        let now = match shared {
            true => {
                let mut data = Vec::new();
                (&file).read_to_end(&mut data).ok()?;
                Some(data)
            }
            false => None,
        };
        let id = self.files.len() as u32;
        self.files.insert(key, id);
        match now {
            Some(data) => self.push(&Event::File(FileEvent { id, data })),
            None => {
                if let (None, Some(out)) = (&self.error, self.out.as_mut()) {
                    if let Err(err) = out.push_file(id, file) {
                        self.error = Some(err);
                    }
                }
            }
        }
        Some(id)
    }

    /// Console events for what the children wrote since the last ones.
    fn push_children_console(&mut self) {
        for e in self.console.from_children() {
            self.push(&Event::Console(e));
        }
    }

    fn push(&mut self, e: &Event) {
        if let (None, Some(out)) = (&self.error, self.out.as_mut()) {
            if let Err(err) = out.push(e) {
                self.error = Some(err);
            }
        }
    }

    /// A program image begins (the first, or an exec's): its machine-dependent instructions
    /// are patched, its vDSO buffer drained from now on, and a Start event records it.
    fn begin_image(&mut self, g: &mut dyn Guest, start: &Start) {
        self.patcher = Patcher::default();
        self.patcher.scan(g);
        let pl = &start.placement;
        self.time = g.process().and_then(|p| p.time_buffer());
        self.host_vdso = pl.vdso.and_then(|_| vdso::host_range());
        self.vdso = pl.vdso.map(|b| (b, b + vdso::IMAGE_SIZE));
        let (sp, stack) = pl.stack_image.clone().unwrap_or_default();
        // A path a replay can open from anywhere: absolute, and a descriptor's name resolved.
        let program = if start.program.starts_with("/proc/self/fd") {
            std::fs::canonicalize(&start.program).unwrap_or_else(|_| start.program.clone())
        } else {
            std::path::absolute(&start.program).unwrap_or_else(|_| start.program.clone())
        };
        let ev = StartEvent {
            program: os_bytes(program.as_os_str()),
            argv: start.argv.iter().map(|a| os_bytes(a)).collect(),
            envp: start.envp.iter().map(|e| os_bytes(e)).collect(),
            program_crc: (0, 0),
            exe_base: pl.exe_base,
            interp_base: pl.interp_base,
            stack_base: pl.stack_base.unwrap_or(0),
            sp,
            stack,
            vdso: pl.vdso,
            cpu: g.process().map(|p| Box::new(p.cpu_view())),
            engine: g.process().map(|p| p.engine()),
            ignored: start.ignored_signals,
        };
        // A start goes to disk at once (a trace cut short anywhere still replays a prefix),
        // its program CRC computed by the writer's thread.
        if let (None, Some(out)) = (&self.error, self.out.as_mut()) {
            if let Err(err) = out.push_start(ev, program) {
                self.error = Some(err);
            }
        }
    }

    /// Before a syscall goes to the inner handler: what it is, with what precedes its event
    /// recorded (the time calls made before it, read before the call can unmap them).
    fn enter(&mut self, g: &dyn Guest, call: &Syscall) -> CallKind {
        if self.host_vdso.is_some_and(|(lo, hi)| (lo..hi).contains(&g.regs().rip)) {
            return CallKind::InTimeCall;
        }
        let transfer = self.console.transfer(g, call);
        if self.out.is_none() {
            return CallKind::Unrecorded { transfer };
        }
        self.drain_time_calls();
        if is_exec(call) {
            self.push_children_console();
            return CallKind::Exec;
        }
        let forks = matches!(call.sysno(), Some(S::fork | S::vfork | S::clone));
        if forks {
            self.console.before_fork();
        }
        CallKind::Other { forks, transfer }
    }

    /// After the inner handler answered a syscall with `action`: its event. True in a forked
    /// child, which has only the forking thread.
    fn leave(&mut self, g: &mut dyn Guest, call: &Syscall, kind: CallKind, action: &Action) -> bool {
        match kind {
            CallKind::InTimeCall => {}
            CallKind::Unrecorded { transfer } => {
                // A forked child, unrecorded: only its console output is kept (in the log the
                // recorded process reads).
                let ret = result_of(action, g);
                let moved = transfer.and_then(|t| self.console.transferred(t, ret));
                if let Some(e) = self.console.written(g, call, ret).or(moved) {
                    self.console.append(&e);
                }
                if is_exec(call) && matches!(action, Action::Resume) {
                    // The new image has a vDSO of its own.
                    self.time = g.process().and_then(|p| p.time_buffer());
                }
                if let Some(t) = self.time {
                    t.drain();
                }
            }
            CallKind::Exec => {
                // A successful exec resumes the new image; its registers are not a result.
                let ret = if matches!(action, Action::Resume) { 0 } else { result_of(action, g) };
                self.push(&Event::Syscall(SyscallEvent {
                    nr: call.nr,
                    args: call.args,
                    ret,
                    writes: vec![],
                    file: None,
                }));
                if matches!(action, Action::Resume) {
                    self.shared_maps.exec();
                    // Replay brings the new program in as the first: from its path, checked
                    // against the recorded CRC, at the recorded addresses with the recorded stack.
                    if let Some(start) = g.process().and_then(|p| p.image()) {
                        self.begin_image(g, &start);
                    }
                }
            }
            CallKind::Other { forks, transfer } => {
                let ret = result_of(action, g);
                if ret == 0 && forks {
                    // This is the new child process: a recording covers the first process
                    // only (the parent's view of its children — pids, wait statuses, pipe
                    // data — is recorded there, and their console output). The writer's
                    // thread does not exist here, so the writer is left alone, not finished.
                    if let Some(w) = self.out.take() {
                        std::mem::forget(w);
                    }
                    self.console.became_child();
                    return true;
                }
                self.shared_maps.follow(g, call, ret);
                if forks && ret > 0 {
                    if let Some(warning) = self.shared_maps.forked(call) {
                        eprintln!("{warning}");
                    }
                }
                // What children wrote to the console meanwhile comes before this call's result
                // (a shell's wait4 returns after its child's output).
                self.push_children_console();
                // What others wrote to shared memory since the last event: a replay writes it
                // here (calls a replay performs itself take no writes; it waits for the next).
                let mut writes = if replay_reexecutes(call.sysno()) { Vec::new() } else { self.shared_maps.changes(g) };
                if let Some(d) = call.desc() {
                    for (addr, len) in output_ranges(g, d, &call.args, ret) {
                        snapshot(g, addr, len, &mut writes);
                    }
                }
                let mut file = None;
                if call.sysno() == Some(S::mmap) && ret >= 0 && call.args[3] as i32 & libc::MAP_ANONYMOUS == 0 {
                    let shared = call.args[3] as i32 & libc::MAP_TYPE != libc::MAP_PRIVATE;
                    match self.file_id(call.args[4], shared) {
                        Some(id) => file = Some((id, call.args[5])),
                        // Too big to store whole: store what was mapped.
                        None => snapshot(g, ret as u64, call.args[1], &mut writes),
                    }
                }
                self.push(&Event::Syscall(SyscallEvent { nr: call.nr, args: call.args, ret, writes, file }));
                if let Some(fd) = self.console.written_to(call, ret) {
                    self.push(&Event::ConsoleWrite(fd));
                }
                if let Some(e) = transfer.and_then(|t| self.console.transferred(t, ret)) {
                    self.push(&Event::Console(e));
                }
                rescan(&mut self.patcher, g, call, ret);
            }
        }
        false
    }
}

impl<H: TrapHandler, W: Write + Send + 'static> TrapHandler for Recorder<H, W> {
    fn on_start(&mut self, g: &mut dyn Guest, start: &Start) {
        self.inner.on_start(g, start);
        self.shared.preemptible(self.me, g.process().map(|p| p.kicker()));
        let st = &mut *self.shared.lock();
        st.console = Console::new();
        st.begin_image(g, start);
    }

    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        if let Some(action) = self.probing(g, trap) {
            return action;
        }
        match trap {
            Trap::Syscall(call) => self.syscall(g, trap, call),
            Trap::Breakpoint { rip } => {
                let mut st = self.shared.lock();
                match st.patcher.site_at_breakpoint(*rip) {
                    Some(site) => {
                        let regs = emulate(g, site);
                        apply_insn(g, site, regs);
                        st.drain_time_calls();
                        st.push(&Event::Insn(InsnEvent { insn: site.insn, rip: site.addr, regs }));
                        Action::Resume
                    }
                    None => {
                        drop(st);
                        self.inner.on_trap(g, trap)
                    }
                }
            }
            Trap::Preempt => self.preempted(g),
            _ => self.inner.on_trap(g, trap),
        }
    }

    fn on_signal(&mut self, g: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        self.inner.on_signal(g, sig, siginfo);
        // A thread that could not take its turn back (the process is ending) records nothing.
        if !self.shared.holds(self.me) {
            return;
        }
        // Delivered right after the event recorded last, or while user code ran after it; the
        // handler's third argument points at the frame's ucontext, which says where.
        let mut uc = [0u8; sigframe::UCONTEXT_SIZE_PUB];
        let interrupted = g.read(GuestAddr(g.regs().rdx), &mut uc).ok().map(|_| sigframe::saved_gregs(&uc));
        self.shared.lock().push(&Event::Signal(SignalEvent { sig, info: siginfo.to_vec(), interrupted }));
    }

    fn on_end(&mut self, g: &mut dyn Guest, outcome: &Outcome) {
        self.inner.on_end(g, outcome);
        let end = match outcome {
            Outcome::Exited(c) => Some(EndEvent::Exited(*c)),
            Outcome::Killed { signal, fault: Some(f) } => Some(EndEvent::Faulted { signal: *signal, rip: f.rip }),
            Outcome::Killed { signal, fault: None } => Some(EndEvent::Killed(*signal)),
            Outcome::TimedOut => Some(EndEvent::Killed(libc::SIGKILL)),
            Outcome::Stopped => None,
        };
        let st = &mut *self.shared.lock();
        if let Some(e) = end {
            st.push_children_console();
            st.push(&Event::End(e));
        }
        if let Some(out) = st.out.take() {
            st.events = out.events();
            match out.finish_counting() {
                Ok(n) => st.bytes = n,
                Err(e) if st.error.is_none() => st.error = Some(e),
                Err(_) => {}
            }
        }
    }

    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        let inner = self.inner.new_thread()?;
        let me = self.shared.new_thread();
        Some(Box::new(Recorder { inner, shared: self.shared.clone(), me, probe: None }))
    }

    fn on_thread_start(&mut self, g: &mut dyn Guest) {
        self.inner.on_thread_start(g);
        self.shared.preemptible(self.me, g.process().map(|p| p.kicker()));
        self.take_turn(g);
    }

    fn on_thread_exit(&mut self, g: &mut dyn Guest) {
        self.inner.on_thread_exit(g);
        self.shared.left(self.me, None);
    }
}

impl StartEvent {
    /// The program path.
    pub fn program_path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
            self.program.clone(),
        ))
    }

    /// Where the recorded image was: images, stack (with the recorded stack image) and
    /// trapbox's vDSO.
    pub fn placement(&self) -> trapbox_trap::Placement {
        trapbox_trap::Placement {
            exe_base: self.exe_base,
            interp_base: self.interp_base,
            stack_base: Some(self.stack_base),
            stack_image: Some((self.sp, self.stack.clone())),
            vdso: self.vdso,
        }
    }

    /// Whether the program file is still the recorded one (CRC-32 and length); Err says how
    /// it differs.
    pub fn check_program(&self) -> Result<(), String> {
        let program = self.program_path();
        let now = file_crc(&program).map_err(|e| format!("the recorded program {}: {e}", program.display()))?;
        if now != self.program_crc {
            return Err(format!(
                "{}: the program changed since it was recorded (CRC-32/length {:08x}/{} then, {:08x}/{} now)",
                program.display(),
                self.program_crc.0,
                self.program_crc.1,
                now.0,
                now.1
            ));
        }
        Ok(())
    }

    /// Whether this CPU can replay what was recorded (see
    /// [`trapbox_trap::CpuView::replay_mismatch`]); traces before format version 7 name no CPU
    /// view and are not checked.
    pub fn check_cpu(&self, here: &trapbox_trap::CpuView) -> Result<(), trapbox_trap::ViewMismatch> {
        match self.cpu.as_ref().and_then(|rec| here.replay_mismatch(rec)) {
            Some(m) => Err(m),
            None => Ok(()),
        }
    }

    /// The image as [`Process::exec_image`](trapbox_trap::Process::exec_image) and a replaying sandbox take it.
    pub fn image(&self) -> Start {
        use std::os::unix::ffi::OsStringExt;
        let os = |v: &Vec<u8>| std::ffi::OsString::from_vec(v.clone());
        Start {
            program: self.program_path(),
            argv: self.argv.iter().map(os).collect(),
            envp: self.envp.iter().map(os).collect(),
            env_count: self.envp.len(),
            envp_addr: self.sp + 8 * (self.argv.len() as u64 + 2),
            placement: self.placement(),
            ignored_signals: self.ignored,
        }
    }
}

/// Why a replay stopped early.
#[derive(Clone, Debug)]
pub enum ReplayStop {
    /// The guest did something other than what the trace says.
    Diverged {
        /// Index of the trace event.
        index: u64,
        /// What the trace has there.
        expected: String,
        /// What the guest did.
        actual: String,
    },
    /// The trace ends before the run does (a recording cut short).
    TraceEnds {
        /// Events replayed.
        events: u64,
        /// Whether the file ends inside a chunk.
        truncated: bool,
    },
    /// The trace is damaged.
    Corrupt(TraceError),
    /// [`Replayer::stop_at`] was reached.
    StoppedAt(u64),
}

impl std::fmt::Display for ReplayStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayStop::Diverged { index, expected, actual } => {
                write!(f, "replay diverged at event {index}: the trace has {expected}, the program made {actual}")
            }
            ReplayStop::TraceEnds { events, truncated } => write!(
                f,
                "the trace ends after event {} {}: it was cut short (the recording was killed?); replayed its complete prefix of {events} events",
                events.saturating_sub(1),
                if *truncated { "inside a chunk" } else { "without the end of the run" }
            ),
            ReplayStop::Corrupt(e) => write!(f, "{e}"),
            ReplayStop::StoppedAt(i) => write!(f, "stopped before event {i} as asked"),
        }
    }
}

/// What the read-ahead thread hands the replayer.
#[derive(Clone)]
enum Item {
    Event(Event),
    /// A File event's contents, made ready to map (shared by the runs of a [`DecodedTrace`]).
    File(u32, Arc<Stored>),
    /// The trace ended (with how).
    End(Option<Tail>),
    Err(TraceError),
}

/// What the read-ahead thread's source gives it: an item, or a stored file's bytes, which
/// the thread puts in a memory file once the events before it are handed on.
enum Source {
    Ready(Item),
    Unstored(u32, Vec<u8>),
}

/// A trace decoded once, for a session that replays it many times (a debugger going back
/// runs the replay again from its start): every event after the start, stored files already
/// in memory files. Runs from it skip reading, checking and decompressing the trace, and
/// filling the memory files, which were a third of a replay's work on python3.
#[derive(Clone)]
pub struct DecodedTrace(Arc<Decoded>);

struct Decoded {
    start: StartEvent,
    legacy_console: bool,
    /// Every item after the start event, its end included.
    items: Vec<Item>,
}

impl DecodedTrace {
    /// Reads a whole trace. A damaged one is an error (its runs then read it as it is).
    pub fn read<R: Read + Send + 'static>(input: R) -> Result<DecodedTrace, TraceError> {
        let mut reader = TraceReader::new(input)?;
        let legacy_console = reader.version() < 3;
        let Some(Event::Start(start)) = reader.next_event()? else { return Err(no_start()) };
        let mut items = Vec::new();
        while let Some(e) = reader.next_event()? {
            items.push(match e {
                Event::File(f) => Item::File(f.id, Arc::new(Stored::new(f.data))),
                e => Item::Event(e),
            });
        }
        items.push(Item::End(reader.tail().cloned()));
        Ok(DecodedTrace(Arc::new(Decoded { start, legacy_console, items })))
    }
}

/// What the read-ahead thread hands on: an event, or a stored file ready to map.
enum Ahead {
    Event(Event),
    File(u32, Arc<Stored>),
}

/// A file the recording mapped, as the replay maps it.
enum Stored {
    /// A memory file holding its bytes: mapping it costs no copy, and pages are faulted in
    /// from it as the guest touches them, as from the original file.
    Memory(std::fs::File),
    /// Its bytes, copied into the mapping, where memory files are unavailable.
    Bytes(Vec<u8>),
}

impl Stored {
    /// Up to `len` of its bytes from offset `off` (fewer past its end).
    fn bytes(&self, off: u64, len: u64) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Stored::Bytes(b) => {
                let from = (off as usize).min(b.len());
                let to = from.saturating_add(len as usize).min(b.len());
                std::borrow::Cow::Borrowed(&b[from..to])
            }
            Stored::Memory(f) => {
                use std::os::unix::fs::FileExt;
                let size = f.metadata().map_or(0, |m| m.len());
                let mut b = vec![0u8; size.saturating_sub(off).min(len) as usize];
                if f.read_exact_at(&mut b, off).is_err() {
                    b.clear();
                }
                std::borrow::Cow::Owned(b)
            }
        }
    }

    /// Puts `data` in a memory file (in trapbox's private descriptor range), or keeps it as
    /// bytes if that fails. The read-ahead thread does it, so the replay does not stop at
    /// an mmap to copy a library into memory.
    fn new(data: Vec<u8>) -> Stored {
        use std::sync::atomic::Ordering::SeqCst;
        // At most three quarters of the private range: a vCPU per guest thread, and the other
        // descriptors trapbox opens, still find numbers there.
        if MEMORY_FILES.fetch_add(1, SeqCst) >= trapbox_host::fds::PRIVATE_RANGE * 3 / 4 {
            MEMORY_FILES.fetch_sub(1, SeqCst);
            return Stored::Bytes(data);
        }
        // Filled once private, so the stock lock is not held while megabytes are copied.
        let made = trapbox_host::fds::private(|| host::memory_file("trapbox-replay-file", &[]));
        match made.and_then(|mut f| f.write_all(&data).map(|_| f)) {
            Ok(f) => Stored::Memory(f),
            Err(_) => {
                MEMORY_FILES.fetch_sub(1, SeqCst);
                Stored::Bytes(data)
            }
        }
    }
}

/// Memory files that stored files hold now (a test process may run several replays).
static MEMORY_FILES: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

impl Drop for Stored {
    fn drop(&mut self) {
        if let Stored::Memory(_) = self {
            MEMORY_FILES.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Decodes the trace on its own thread, a few thousand events ahead of the replay, so
/// decompression overlaps the guest's run. The thread starts when the trace is opened, before
/// the sandbox is built, as the recorder's writer thread starts before the recorded sandbox
/// is: trapbox's own mappings are laid out alike in both runs and the recorded guest
/// addresses stay free.
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<Vec<Item>>,
    /// Dropped with the replayer, which lets the thread end: it stays until then, even with
    /// the whole trace read, because its exit would unmap its signal stack and leave a hole
    /// the recording's memory did not have (the writer thread lives to the end of the run).
    _keep: std::sync::mpsc::Sender<()>,
    batch: std::collections::VecDeque<Item>,
    position: u64,
    tail: Option<Tail>,
    done: bool,
}

impl ReadAhead {
    /// Reads ahead from the trace itself.
    fn start<R: Read + Send + 'static>(mut reader: TraceReader<R>) -> ReadAhead {
        let position = reader.position();
        ReadAhead::spawn(position, move || match reader.next_event() {
            Ok(Some(Event::File(f))) => Source::Unstored(f.id, f.data),
            Ok(Some(e)) => Source::Ready(Item::Event(e)),
            Ok(None) => Source::Ready(Item::End(reader.tail().cloned())),
            Err(e) => Source::Ready(Item::Err(e)),
        })
    }

    /// Hands on the items of a trace decoded before, from the one after its start event.
    fn decoded(trace: &DecodedTrace) -> ReadAhead {
        let t = trace.0.clone();
        let mut items = (0..t.items.len()).map(move |i| t.items[i].clone());
        ReadAhead::spawn(1, move || Source::Ready(items.next().unwrap_or(Item::End(None))))
    }

    /// The thread, handing on what `next` gives, from event `position` on.
    fn spawn(position: u64, mut next: impl FnMut() -> Source + Send + 'static) -> ReadAhead {
        // Batches of events: one hand-over per batch, not per event. A stored file ends its
        // batch, so the queue holds more of them than it would hold full ones.
        const BATCH: usize = 256;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Item>>(64);
        let (keep, kept) = std::sync::mpsc::channel::<()>();
        file::spawn_helper_thread("trapbox-trace-reader", move || {
            let mut batch = Vec::with_capacity(BATCH);
            let hand_over = |batch: &mut Vec<Item>| tx.send(std::mem::take(batch)).is_ok();
            loop {
                // Whether the batch goes now, whatever its size.
                let (item, now) = match next() {
                    Source::Unstored(id, data) => {
                        // Filling a memory file with a library takes milliseconds: the events
                        // before it go to the replay first, which may be waiting for them
                        // (at the start it always is), and the file goes on its own as soon as
                        // it is ready, as its mmap may be next.
                        if !batch.is_empty() && !hand_over(&mut batch) {
                            break;
                        }
                        (Item::File(id, Arc::new(Stored::new(data))), true)
                    }
                    Source::Ready(item) => {
                        let now = !matches!(item, Item::Event(_));
                        (item, now)
                    }
                };
                let last = matches!(item, Item::End(_) | Item::Err(_));
                batch.push(item);
                if (now || batch.len() >= BATCH) && (!hand_over(&mut batch) || last) {
                    break;
                }
            }
            let _ = kept.recv();
        })
        .expect("spawning the trace reader thread");
        ReadAhead { rx, _keep: keep, batch: Default::default(), position, tail: None, done: false }
    }

    fn next(&mut self) -> Result<Option<Ahead>, TraceError> {
        if self.done {
            return Ok(None);
        }
        if self.batch.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.batch.extend(b),
                Err(_) => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
        match self.batch.pop_front().ok_or(()) {
            Ok(Item::Event(e)) => {
                self.position += 1;
                Ok(Some(Ahead::Event(e)))
            }
            Ok(Item::File(id, f)) => {
                self.position += 1;
                Ok(Some(Ahead::File(id, f)))
            }
            Ok(Item::End(tail)) => {
                self.done = true;
                self.tail = tail;
                Ok(None)
            }
            Ok(Item::Err(e)) => {
                self.done = true;
                Err(e)
            }
            Err(_) => {
                self.done = true;
                Ok(None)
            }
        }
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn tail(&self) -> Option<&Tail> {
        self.tail.as_ref()
    }
}

/// Replays a trace.
pub struct Replayer {
    /// What the handlers of all the guest's threads share.
    shared: Arc<Shared<Replay>>,
    /// This handler's thread (0 for the first).
    me: u32,
}

/// A replay's state, one for all of the guest's threads.
struct Replay {
    reader: ReadAhead,
    /// The next event read ahead of time, or the end or error met there (kept for `next`).
    peeked: Option<Result<Option<Event>, TraceError>>,
    patcher: Patcher,
    stop_at: Option<u64>,
    stop: Option<ReplayStop>,
    /// The files the recording mapped, by id.
    files: std::collections::HashMap<u32, Arc<Stored>>,
    /// trapbox's vDSO buffer, when the recording had it.
    time: Option<TimeBuffer>,
    /// Time calls loaded into it for the guest to make before the next event.
    time_loaded: u64,
    /// Where trapbox's vDSO stops at a time call the replay waits for (see
    /// [`vdso::TimeBuffer::break_at`]).
    time_breaks: Option<[u64; 3]>,
    /// Whether the trace predates Console events (version < 3).
    legacy_console: bool,
    /// Recorded signals that interrupted user code, waiting for the guest to get there.
    armed: Option<Armed>,
}

/// A point where the recording stopped user code (a signal interrupted it, or the thread was
/// preempted): when the guest gets there, the same happens there.
#[derive(Debug)]
struct Armed {
    point: Point,
    /// The signals delivered there; none for a preemption.
    signals: Vec<(i32, [u8; 128])>,
    /// The thread was preempted there.
    preempt: bool,
    /// The recording tool made the thread call a function there.
    call: Option<event::CallEvent>,
}

impl Armed {
    /// Whether the thread must get there before its next event (it is no signal's point).
    fn before_next_event(&self) -> bool {
        self.preempt || self.call.is_some()
    }
}

/// How many times a replay steps over an armed point reached with other registers before it
/// calls it a divergence (each pass costs two exits; a loop counting in a register is not
/// found again in any useful time).
const MAX_PASSES: u32 = 1000;

/// What reaching an armed point means.
enum Reached {
    /// Go on (signals delivered, or another pass).
    Resume,
    /// The thread was preempted here: the turn goes on as the trace says.
    Preempted,
}

fn describe_trap(trap: &Trap) -> String {
    match trap {
        Trap::Syscall(call) => describe_call(call.nr, &call.args),
        Trap::Breakpoint { rip } => format!("a breakpoint at {rip:#x}"),
        other => format!("{other:?}"),
    }
}

/// Writes console output on trapbox's stdout (1) or stderr (2).
fn write_console(fd: u8, data: &[u8]) {
    let _ = match fd {
        1 => std::io::stdout().lock().write_all(data).and_then(|_| std::io::stdout().flush()),
        _ => std::io::stderr().lock().write_all(data),
    };
}

/// A recorded clone that created a thread: the replay creates it too (its handler waits for
/// the trace to switch to it). The guest sees the recorded thread id, in the result and where
/// the clone stores it, as gettid's answers from the trace will say.
fn clone_thread(g: &mut dyn Guest, call: &Syscall, ev: &SyscallEvent) -> Result<Action, String> {
    match g.passthrough(call) {
        Action::Return(tid) if tid > 0 => {}
        other => return Err(format!("{} failing ({other:?})", describe_call(call.nr, &call.args))),
    }
    let (flags, parent_tid, child_tid) = (call.args[0], call.args[2], call.args[3]);
    let tid = (ev.ret as u32).to_le_bytes();
    if flags & libc::CLONE_PARENT_SETTID as u64 != 0 {
        let _ = g.write(GuestAddr(parent_tid), &tid);
    }
    if flags & libc::CLONE_CHILD_SETTID as u64 != 0 {
        let _ = g.write(GuestAddr(child_tid), &tid);
    }
    Ok(Action::Return(ev.ret))
}

/// Syscalls a replay performs for real: they only change the guest's own state (memory, TLS,
/// signal dispositions), and the replayed run needs that state.
fn replay_reexecutes(sysno: Option<S>) -> bool {
    matches!(
        sysno,
        Some(
            S::mmap
                | S::munmap
                | S::mprotect
                | S::mremap
                | S::brk
                | S::madvise
                | S::arch_prctl
                | S::set_tid_address
                | S::set_robust_list
                | S::rseq
                | S::rt_sigaction
                | S::rt_sigprocmask
                | S::sigaltstack
                | S::rt_sigreturn
                | S::exit
                | S::exit_group
        )
    )
}

/// A trace that does not begin as every trace does.
fn no_start() -> TraceError {
    TraceError::Corrupt { index: 0, offset: 10, why: "the trace does not begin with a start event".into() }
}

impl Replayer {
    /// Opens a trace: its start event (to build the sandbox from) and the replayer, whose
    /// read-ahead thread starts now (see [`Recorder::new`] on why before the sandbox).
    pub fn open<R: Read + Send + 'static>(input: R) -> Result<(StartEvent, Self), TraceError> {
        let mut reader = TraceReader::new(input)?;
        let legacy_console = reader.version() < 3;
        match reader.next_event()? {
            Some(Event::Start(s)) => Ok((s, Replayer::with(ReadAhead::start(reader), legacy_console))),
            _ => Err(no_start()),
        }
    }

    /// A replayer of a trace read before (see [`DecodedTrace`]), and its start event.
    pub fn open_decoded(trace: &DecodedTrace) -> (StartEvent, Self) {
        (trace.0.start.clone(), Replayer::with(ReadAhead::decoded(trace), trace.0.legacy_console))
    }

    fn with(reader: ReadAhead, legacy_console: bool) -> Replayer {
        let replay = Replay {
            reader,
            peeked: None,
            patcher: Patcher::default(),
            stop_at: None,
            stop: None,
            files: Default::default(),
            time: None,
            time_loaded: 0,
            time_breaks: None,
            legacy_console,
            armed: None,
        };
        Replayer { shared: Arc::new(Shared::new(replay)), me: 0 }
    }

    /// Stops the replay (Action::Stop) just before event `index` (for a debugger to take over).
    pub fn stop_at(self, index: u64) -> Self {
        self.shared.lock().stop_at = Some(index);
        self
    }

    /// Why the replay stopped early, if it did.
    pub fn stopped(&self) -> Option<ReplayStop> {
        self.shared.lock().stop.clone()
    }

    /// After a stop at [`Replayer::stop_at`]: forgets the stop so that running the sandbox
    /// again (it delivers the stopped syscall first) replays on from that event, optionally up
    /// to the next stop index. (A replay stopped while the guest had several threads cannot
    /// go on: stopping ended them.)
    pub fn resume(&mut self, next_stop: Option<u64>) {
        let st = &mut *self.shared.lock();
        st.stop = None;
        st.stop_at = next_stop;
    }

    /// Index of the next event.
    pub fn position(&mut self) -> u64 {
        self.shared.lock().position()
    }

    /// The trace switches to thread `to`: this thread lets go of its turn for it and waits
    /// for its own next turn.
    fn pass_turn(&self, g: &mut dyn Guest, trap: &Trap, to: u32) -> Result<(), Action> {
        if !self.shared.is_live(to) {
            let st = &mut *self.shared.lock();
            let index = st.position();
            return Err(st.diverged(
                index,
                format!("a switch to guest thread {to}"),
                format!("no thread {to} (thread {} at {})", self.me, describe_trap(trap)),
            ));
        }
        self.shared.let_go(self.me, Some(to));
        self.await_turn(g).map_err(|stop| {
            // None: the process is ending under this thread.
            stop.unwrap_or(match trap {
                Trap::Syscall(_) => Action::Return(-(libc::EINTR as i64)),
                _ => Action::Kill { signal: libc::SIGKILL, fault: None },
            })
        })
    }

    /// The thread reached the point the recording preempted it at: the turn goes where the
    /// trace says next.
    fn preempted(&self, mut st: std::sync::MutexGuard<'_, Replay>, g: &mut dyn Guest, trap: &Trap) -> Action {
        if let Some(stop) = st.check_time_calls() {
            return stop;
        }
        st.load_time_calls();
        match st.peek() {
            Some(&Event::Switch(to)) if to != self.me => {
                drop(st);
                match self.pass_turn(g, trap, to) {
                    Ok(()) => Action::Resume,
                    Err(a) => a,
                }
            }
            _ => {
                st.arm_preempt(g);
                Action::Resume
            }
        }
    }

    /// Waits until the trace switches to this thread, and takes its turn. Err(None) if the
    /// process ends first, Err(Some(stop)) if the trace does not switch here.
    fn await_turn(&self, g: &mut dyn Guest) -> Result<(), Option<Action>> {
        if self.shared.take_turn(g, self.me).is_none() {
            return Err(None);
        }
        let st = &mut *self.shared.lock();
        let index = st.position();
        match st.expect() {
            Ok(Event::Switch(t)) if t == self.me => {
                st.load_time_calls();
                st.arm_preempt(g);
                Ok(())
            }
            Ok(other) => Err(Some(st.diverged(index, other.describe(), format!("guest thread {} running", self.me)))),
            Err(a) => Err(Some(a)),
        }
    }
}

impl Replay {
    /// Index of the next event.
    pub fn position(&mut self) -> u64 {
        self.reader.position() - u64::from(matches!(self.peeked, Some(Ok(Some(_)))))
    }

    /// The next event that is not file contents (those are kept for the mmaps that follow).
    fn read_event(&mut self) -> Result<Option<Event>, TraceError> {
        loop {
            match self.reader.next()? {
                Some(Ahead::File(id, f)) => {
                    self.files.insert(id, f);
                }
                // A child's console output is written out as the replay passes it.
                Some(Ahead::Event(Event::Console(c))) => write_console(c.fd, &c.data),
                Some(Ahead::Event(e)) => return Ok(Some(e)),
                None => return Ok(None),
            }
        }
    }

    fn next(&mut self) -> Result<Option<Event>, TraceError> {
        match self.peeked.take() {
            Some(r) => r,
            None => self.read_event(),
        }
    }

    /// The next event, without taking it; None at the end of the trace or at a damaged chunk,
    /// which the following `next` reports.
    fn peek(&mut self) -> Option<&Event> {
        if self.peeked.is_none() {
            self.peeked = Some(self.read_event());
        }
        match &self.peeked {
            Some(Ok(Some(e))) => Some(e),
            _ => None,
        }
    }

    fn halt(&mut self, why: ReplayStop) -> Action {
        self.stop = Some(why);
        Action::Stop
    }

    /// The next event, or an Action::Stop with the reason there is none.
    fn expect(&mut self) -> Result<Event, Action> {
        let index = self.position();
        if self.stop_at == Some(index) {
            return Err(self.halt(ReplayStop::StoppedAt(index)));
        }
        match self.next() {
            Ok(Some(e)) => Ok(e),
            Ok(None) => {
                let truncated = matches!(self.reader.tail(), Some(Tail::Truncated { .. }));
                Err(self.halt(ReplayStop::TraceEnds { events: index, truncated }))
            }
            Err(e) => Err(self.halt(ReplayStop::Corrupt(e))),
        }
    }

    fn diverged(&mut self, index: u64, expected: String, actual: String) -> Action {
        self.halt(ReplayStop::Diverged { index, expected, actual })
    }

    /// At an event: the guest must have made every time call loaded before it (fewer is a
    /// divergence; more, or another kind, reached the kernel as a syscall and diverges there).
    fn check_time_calls(&mut self) -> Option<Action> {
        let t = self.time?;
        // With nothing loaded the guest's calls all went to the kernel: nothing to check.
        if self.time_loaded == 0 {
            return None;
        }
        let used = t.used();
        if used == self.time_loaded {
            return None;
        }
        let index = self.position();
        let (loaded, e) = (self.time_loaded, self.peek().map(Event::describe).unwrap_or_default());
        Some(self.diverged(
            index,
            format!("{loaded} time calls in the vDSO before {e}"),
            format!("{used} time calls before it"),
        ))
    }

    /// After an event: loads the time calls the guest makes before the next one.
    fn load_time_calls(&mut self) {
        let Some(t) = self.time else { return };
        let calls = match self.peek() {
            Some(Event::TimeCalls(_)) => match self.next() {
                Ok(Some(Event::TimeCalls(c))) => c,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        // Most events have no time calls before them. With none loaded last time either, the
        // buffer is still empty (as `vdso::map` or the last load left it: nothing allowed,
        // nothing used), and the guest's memory is left alone.
        if calls.is_empty() && self.time_loaded == 0 {
            return;
        }
        t.load(&calls);
        self.time_loaded = calls.len().min(vdso::CAPACITY as usize) as u64;
    }

    fn replay_syscall(&mut self, g: &mut dyn Guest, call: &Syscall) -> Action {
        let index = self.position();
        let ev = match self.expect() {
            Ok(Event::Syscall(e)) => e,
            Ok(other) => return self.diverged(index, other.describe(), describe_call(call.nr, &call.args)),
            Err(a) => return a,
        };
        let n = call.desc().map_or(6, |d| d.args.len());
        if ev.nr != call.nr || ev.args[..n] != call.args[..n] {
            return self.diverged(index, describe_call(ev.nr, &ev.args), describe_call(call.nr, &call.args));
        }
        let sysno = call.sysno();
        // Traces before version 3 have no Console events: their writes to descriptors 1 and 2
        // are made again instead.
        let to_console = self.legacy_console
            && matches!(sysno, Some(S::write | S::writev | S::pwrite64 | S::pwritev | S::pwritev2))
            && matches!(call.args[0], 1 | 2);
        let action = if is_exec(call) && ev.ret == 0 {
            match self.exec(g, call) {
                Ok(a) => a,
                Err(actual) => return self.diverged(index, describe_call(ev.nr, &ev.args), actual),
            }
        } else if call.creates_thread() && ev.ret > 0 {
            match clone_thread(g, call, &ev) {
                Ok(a) => a,
                Err(actual) => return self.diverged(index, describe_call(ev.nr, &ev.args), actual),
            }
        } else if replay_reexecutes(sysno) {
            match self.reexecute(g, call, &ev) {
                Ok(a) => a,
                Err(actual) => {
                    return self.diverged(index, format!("{} = {:#x}", describe_call(ev.nr, &ev.args), ev.ret), actual)
                }
            }
        } else {
            if to_console {
                // The user sees the same output; the guest sees the recorded result.
                let _ = g.passthrough(call);
            }
            for (addr, data) in &ev.writes {
                let _ = g.write(GuestAddr(*addr), data);
            }
            Action::Return(ev.ret)
        };
        rescan(&mut self.patcher, g, call, ev.ret);
        if let Some(Event::ConsoleWrite(fd)) = self.peek() {
            // The same bytes are in the guest's buffer now as in the recording.
            let fd = *fd;
            let _ = self.next();
            if let Some(data) = console::bytes_written(g, call, ev.ret) {
                write_console(fd, &data);
            }
        }
        self.queue_signals(g);
        // A syscall after which the recording ended (a signal the guest sent itself, or one
        // from outside). After a Faulted end the guest runs on to its fault instead.
        if let Some(Event::End(EndEvent::Killed(sig))) = self.peek() {
            let sig = *sig;
            if matches!(action, Action::Return(_)) {
                let _ = self.next();
                return Action::Kill { signal: sig, fault: None };
            }
        }
        if matches!(action, Action::Exit(_)) && matches!(self.peek(), Some(Event::End(_))) {
            let _ = self.next();
        }
        action
    }

    /// Signals the recording delivered after the event just replayed arrive again: as it
    /// returns when that is where they came, else where they interrupted user code after it
    /// (see [`Armed`]).
    fn queue_signals(&mut self, g: &mut dyn Guest) {
        while let Some(Event::Signal(_)) = self.peek() {
            let Ok(Some(Event::Signal(sg))) = self.next() else { break };
            let mut info = [0u8; 128];
            info.copy_from_slice(&sg.info);
            if let Some(a) = self.armed.as_mut() {
                // Later signals come after the first: at the same point.
                a.signals.push((sg.sig, info));
                continue;
            }
            // Where the event returns to, or (a syscall about to be restarted) its `syscall`
            // instruction just before.
            let rip = g.regs().rip;
            let at_return = |c: &[u64; 18]| c[16] == rip || c[16] == rip.wrapping_sub(2);
            match sg.interrupted.filter(|c| !at_return(c)).and_then(|c| self.arm(g, c)) {
                Some(mut armed) => {
                    armed.signals.push((sg.sig, info));
                    self.armed = Some(armed);
                }
                None => queue_signal(g, sg.sig, &info),
            }
        }
    }

    /// A breakpoint at the instruction `context` (signal-frame order) was interrupted at;
    /// None where none can go (not the guest's code, or a patched instruction), and the
    /// signal is delivered as the event returns.
    fn arm(&self, g: &mut dyn Guest, context: [u64; 18]) -> Option<Armed> {
        if self.patcher.site_at_breakpoint(context[16] + 1).is_some() {
            return None;
        }
        Some(Armed { point: Point::arm(g, context)?, signals: Vec::new(), preempt: false, call: None })
    }

    /// When the trace's next event is a preemption of this thread: armed at its point. (Not
    /// armed, the next event is a divergence.)
    ///
    /// The recording wrote the preemption right after the time calls before it
    /// (`give_up_turn`). A loop that reads the clock comes back to the point with the same
    /// registers after fewer of them, so while calls are still to come the breakpoint waits:
    /// the vDSO stops at the last one ([`vdso::TimeBuffer::break_at`]) and it goes in then.
    fn arm_preempt(&mut self, g: &mut dyn Guest) {
        let (context, call) = match self.peek() {
            Some(&Event::Preempt(context)) => (context, None),
            // A call the recording tool made there is found the same way.
            Some(Event::Call(c)) => (c.at, Some((**c).clone())),
            _ => return,
        };
        if self.armed.is_some() {
            return;
        }
        let to_come = match self.time {
            Some(t) if self.time_breaks.is_some() && t.used() < self.time_loaded => Some(t),
            _ => None,
        };
        let point = match to_come {
            Some(t) if self.patcher.site_at_breakpoint(context[16] + 1).is_none() => {
                t.break_at(self.time_loaded);
                Some(Point::pending(context))
            }
            _ => self.arm(g, context).map(|a| a.point),
        };
        if let Some(point) = point {
            let _ = self.next();
            self.armed = Some(Armed { point, signals: Vec::new(), preempt: call.is_none(), call });
        }
    }

    /// Takes the breakpoint out and delivers its signals as the guest resumes.
    fn fire(&mut self, g: &mut dyn Guest) {
        if let Some(a) = self.armed.take() {
            if let Some(t) = self.time {
                t.break_at(0);
            }
            a.point.disarm(g);
            for (sig, info) in &a.signals {
                queue_signal(g, *sig, info);
            }
        }
    }

    /// The guest hit the breakpoint of [`Armed`]: with the recorded registers, the recorded
    /// signals are delivered or the thread is preempted there; with others it goes on (see
    /// [`Point`]) for up to [`MAX_PASSES`] hits, and beyond that the point is taken as not
    /// found: a divergence.
    fn reached_armed(&mut self, g: &mut dyn Guest) -> Result<Reached, Action> {
        let Some(a) = self.armed.as_mut() else { return Ok(Reached::Resume) };
        match a.point.hit(g, MAX_PASSES) {
            Hit::Found => {
                let preempt = a.preempt;
                let call = a.call.take();
                self.fire(g);
                if let Some(c) = call {
                    for (addr, data) in &c.writes {
                        let _ = g.write(GuestAddr(*addr), data);
                    }
                    g.set_regs(&sigframe::from_gregs(&c.regs));
                    self.arm_preempt(g);
                }
                Ok(if preempt { Reached::Preempted } else { Reached::Resume })
            }
            Hit::Passed => Ok(Reached::Resume),
            Hit::NotFound(differ) => {
                let (hits, addr) = (a.point.passes + 1, a.point.addr());
                let what = self.armed_what();
                self.fire(g);
                let index = self.position();
                Err(self.diverged(
                    index,
                    what,
                    format!(
                        "{addr:#x} reached {hits} times, never with the recorded registers (the last with {differ})"
                    ),
                ))
            }
        }
    }

    /// What the armed point is, as a divergence names it.
    fn armed_what(&self) -> String {
        match &self.armed {
            Some(a) if a.preempt => format!("a preemption of the running thread at {:#x}", a.point.addr()),
            Some(Armed { call: Some(c), .. }) => Event::Call(Box::new(c.clone())).describe(),
            Some(a) => format!(
                "signal {} interrupting {:#x}",
                trapbox_trap::signal_name(a.signals.first().map_or(0, |s| s.0)),
                a.point.addr()
            ),
            None => String::new(),
        }
    }

    /// A recorded exec that succeeded: the new program is loaded from its recorded path, as
    /// the first was, where the Start that follows says. Err describes how it differs from the recording.
    fn exec(&mut self, g: &mut dyn Guest, call: &Syscall) -> Result<Action, String> {
        // Without a Start, the exec failed past its point of no return: it fails the same way
        // again.
        if !matches!(self.peek(), Some(Event::Start(_))) {
            return Ok(g.passthrough(call));
        }
        let Ok(Some(Event::Start(start))) = self.next() else { return Ok(g.passthrough(call)) };
        start.check_program().map_err(|why| format!("an exec of {why}"))?;
        // The recorded program, not the path the guest names: that may be relative to a
        // directory the replay never entered, or name a descriptor it never opened.
        let Some(p) = g.process() else { return Err("an exec, on an engine that runs no process model".into()) };
        let action = p.exec_image(&start.image());
        if !matches!(action, Action::Resume) {
            return Err(format!("an exec of {} that failed", start.program_path().display()));
        }
        self.begin_image(g);
        Ok(action)
    }

    /// A program image begins (the first, or an exec's): its machine-dependent instructions
    /// are patched, and its vDSO buffer, if it has one, is empty.
    fn begin_image(&mut self, g: &mut dyn Guest) {
        self.patcher = Patcher::default();
        self.patcher.scan(g);
        self.time = g.process().and_then(|p| p.time_buffer());
        self.time_loaded = 0;
        self.time_breaks =
            g.process().and_then(|p| p.image()).and_then(|s| s.placement.vdso).and_then(|b| vdso::break_sites(b).ok());
    }

    /// Whether a breakpoint trap is trapbox's vDSO stopping at the call a pending point waits
    /// for (see [`Replay::arm_preempt`]).
    fn is_time_break(&self, rip: u64) -> bool {
        self.time.is_some_and(|t| t.used() == self.time_loaded)
            && self.time_breaks.is_some_and(|b| b.contains(&rip.wrapping_sub(1)))
    }

    /// Stored file `id`, which the trace must have.
    fn stored(&self, id: u32) -> Result<&Arc<Stored>, String> {
        self.files.get(&id).ok_or_else(|| format!("mmap of file {id}, which the trace never stored"))
    }

    /// A descriptor, at the lowest free number, for the memory file holding stored file `id`;
    /// None if it has none (the mapping is then filled by copying). For a `shared` mapping,
    /// a memory file other runs hold too (a [`DecodedTrace`]'s) is first copied for this run:
    /// the guest's writes through the mapping would reach them, and each run must start from
    /// the recorded bytes. Later mappings in this run share the copy, as the guest's mappings
    /// of one file share its pages.
    fn memory_file(&mut self, id: u32, shared: bool) -> Result<Option<std::fs::File>, String> {
        let held = self.stored(id)?;
        if shared && matches!(**held, Stored::Memory(_)) && Arc::strong_count(held) > 1 {
            let copy = Arc::new(Stored::new(held.bytes(0, u64::MAX).into_owned()));
            self.files.insert(id, copy);
        }
        Ok(match &**self.stored(id)? {
            // try_clone takes the lowest free number (from 3): a guest descriptor's number,
            // which the mmap's checks accept, closed again before the guest runs.
            Stored::Memory(f) => f.try_clone().ok(),
            Stored::Bytes(_) => None,
        })
    }

    /// Performs a memory or state syscall for real, at the recorded addresses; Err describes
    /// a result that differs from the trace.
    fn reexecute(&mut self, g: &mut dyn Guest, call: &Syscall, ev: &SyscallEvent) -> Result<Action, String> {
        let sysno = call.sysno();
        let a = call.args;
        let mut forced = *call;
        let fixed_bits = libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE;
        let mut fill = false;
        // A stored file is mapped from a memory file holding its bytes, under a descriptor
        // number the guest cannot see (it is closed before the guest runs again).
        let mut lent_fd = None;
        match sysno {
            Some(S::mmap | S::mremap) if ev.ret < 0 => return Ok(Action::Return(ev.ret)),
            Some(S::mmap) => {
                let flags = a[3] as i32;
                let fixed = if flags & libc::MAP_FIXED != 0 && flags & libc::MAP_FIXED_NOREPLACE == 0 {
                    libc::MAP_FIXED
                } else {
                    libc::MAP_FIXED_NOREPLACE
                };
                forced.args[0] = ev.ret as u64;
                let stored = match ev.file {
                    Some((id, _)) if flags & libc::MAP_ANONYMOUS == 0 => {
                        self.memory_file(id, flags & libc::MAP_TYPE != libc::MAP_PRIVATE)?
                    }
                    _ => None,
                };
                if let (Some(fd), Some((_, off))) = (stored, ev.file) {
                    forced.args[3] = ((flags & !fixed_bits) | fixed) as u64;
                    forced.args[4] = std::os::fd::AsRawFd::as_raw_fd(&fd) as u64;
                    forced.args[5] = off;
                    lent_fd = Some(fd);
                } else if flags & libc::MAP_ANONYMOUS == 0 {
                    // The file's bytes come from the trace: map anonymous memory there.
                    forced.args[2] = a[2] | libc::PROT_WRITE as u64;
                    forced.args[3] = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed) as u64;
                    forced.args[4] = u64::MAX;
                    forced.args[5] = 0;
                    fill = true;
                } else {
                    forced.args[3] = ((flags & !fixed_bits) | fixed) as u64;
                }
            }
            Some(S::mremap) if ev.ret as u64 != a[0] => {
                forced.args[3] = a[3] | (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
                forced.args[4] = ev.ret as u64;
            }
            _ => {}
        }
        let action = g.passthrough(&forced);
        drop(lent_fd);
        let got = match action {
            Action::Return(r) => r,
            ref other => return Ok(other.clone()),
        };
        if fill {
            if let Some((id, off)) = ev.file {
                let data = self.stored(id)?.bytes(off, a[1]);
                g.write(GuestAddr(ev.ret as u64), &data)
                    .map_err(|_| "mmap: cannot fill the mapping from the trace".to_string())?;
            }
            for (addr, data) in &ev.writes {
                g.write(GuestAddr(*addr), data).map_err(|_| format!("mmap: cannot fill {addr:#x} from the trace"))?;
            }
            if a[2] as i32 & libc::PROT_WRITE == 0 {
                let mp = S::mprotect as u64;
                g.passthrough(&Syscall { nr: mp, args: [ev.ret as u64, a[1], a[2], 0, 0, 0] });
            }
        }
        // Results that name the host (a pid) are the recorded ones; memory results must match.
        if sysno != Some(S::set_tid_address) && got != ev.ret {
            return Err(format!("{} = {got:#x}", describe_call(call.nr, &call.args)));
        }
        Ok(Action::Return(ev.ret))
    }
}

impl TrapHandler for Replayer {
    fn event_index(&self) -> Option<u64> {
        Some(self.shared.lock().position())
    }
    fn patched_byte(&self, addr: u64) -> Option<u8> {
        let st = self.shared.lock();
        st.patcher
            .original(addr)
            .or_else(|| st.armed.as_ref().and_then(|a| a.point.original(addr)))
            // The time breaks are int3s of trapbox's vDSO image itself.
            .or_else(|| st.time_breaks.filter(|b| b.contains(&addr)).map(|_| 0xcc))
    }

    fn on_end(&mut self, _g: &mut dyn Guest, outcome: &Outcome) {
        // A recording that ended with a fault ends the replay at the same one, or it diverged
        // (a fault the program handles on the way is no end, so only the last one counts).
        let st = &mut *self.shared.lock();
        if st.stop.is_some() {
            return;
        }
        if let (Some(&Event::End(EndEvent::Faulted { signal, rip })), Outcome::Killed { signal: s, fault }) =
            (st.peek(), outcome)
        {
            let at = fault.as_ref().map(|f| f.rip);
            if at != Some(rip) || *s != signal {
                let index = st.position();
                let got = match at {
                    Some(a) => format!("signal {s} from a fault at {a:#x}"),
                    None => format!("signal {s}"),
                };
                st.diverged(index, format!("signal {signal} from a fault at {rip:#x}"), got);
            }
        }
    }

    fn on_start(&mut self, g: &mut dyn Guest, _start: &Start) {
        let st = &mut *self.shared.lock();
        st.begin_image(g);
        st.load_time_calls();
    }

    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        if !matches!(trap, Trap::Syscall(_) | Trap::Breakpoint { .. } | Trap::SingleStep { .. }) {
            return trapbox_trap::Passthrough.on_trap(g, trap);
        }
        let mut st = self.shared.lock();
        if st.stop.is_some() {
            // Another thread stopped the replay.
            return Action::Stop;
        }
        match (trap, st.armed.as_ref()) {
            (Trap::Breakpoint { rip }, Some(a)) if a.point.is_pending() && st.is_time_break(*rip) => {
                // The guest made the time calls the preemption came after: now the point.
                if let Some(t) = st.time {
                    t.break_at(0);
                }
                if let Some(a) = st.armed.as_mut() {
                    a.point.place(g);
                }
                return Action::Resume;
            }
            _ => {}
        }
        match (trap, st.armed.as_mut()) {
            (Trap::Breakpoint { rip }, Some(a)) if a.point.is_hit(*rip) => {
                return match st.reached_armed(g) {
                    Ok(Reached::Resume) => Action::Resume,
                    Ok(Reached::Preempted) => self.preempted(st, g, trap),
                    Err(stop) => stop,
                };
            }
            (Trap::SingleStep { .. }, Some(a)) if a.point.is_step() => {
                a.point.stepped(g);
                return Action::Resume;
            }
            _ => {}
        }
        let at_event = match trap {
            Trap::Syscall(_) => true,
            Trap::Breakpoint { rip } => st.patcher.site_at_breakpoint(*rip).is_some(),
            _ => false,
        };
        if at_event && st.armed.as_ref().is_some_and(Armed::before_next_event) {
            // The thread got to an event before the point the recording preempted it at.
            let what = st.armed_what();
            st.fire(g);
            let index = st.position();
            return st.diverged(index, what, describe_trap(trap));
        }
        if at_event && st.armed.is_some() {
            // The guest never got where the signals came in the recording: they are delivered
            // now, and the handler's first event will not be this one (a divergence).
            st.fire(g);
        }
        if !at_event {
            drop(st);
            return trapbox_trap::Passthrough.on_trap(g, trap);
        }
        if let Some(stop) = st.check_time_calls() {
            return stop;
        }
        if let Some(&Event::Switch(to)) = st.peek() {
            if to != self.me {
                // Here the recorded thread let go of its turn, and thread `to` took it.
                drop(st);
                if let Err(a) = self.pass_turn(g, trap, to) {
                    return a;
                }
                st = self.shared.lock();
            }
        }
        let action = st.replay_event(g, trap);
        if !matches!(action, Action::Stop) {
            st.load_time_calls();
            st.arm_preempt(g);
        }
        action
    }

    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        let me = self.shared.new_thread();
        Some(Box::new(Replayer { shared: self.shared.clone(), me }))
    }

    fn on_thread_start(&mut self, g: &mut dyn Guest) {
        // A divergence found here stops the replay at this thread's first trap.
        let _ = self.await_turn(g);
    }

    fn on_thread_exit(&mut self, _g: &mut dyn Guest) {
        // The thread that took the turn after this one left, as recorded. (Only the holder
        // reads the trace; a thread that leaves because the process ends does not.)
        let next = if self.shared.holds(self.me) {
            match self.shared.lock().peek() {
                Some(&Event::Switch(t)) => Some(t),
                _ => None,
            }
        } else {
            None
        };
        self.shared.left(self.me, next);
    }
}

impl Replay {
    /// Replays the event behind a syscall or a patched instruction's breakpoint.
    fn replay_event(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        match trap {
            Trap::Syscall(call) => self.replay_syscall(g, call),
            Trap::Breakpoint { rip } => match self.patcher.site_at_breakpoint(*rip) {
                Some(site) => {
                    let index = self.position();
                    match self.expect() {
                        Ok(Event::Insn(i)) if i.insn == site.insn && i.rip == site.addr => {
                            apply_insn(g, site, i.regs);
                            self.queue_signals(g);
                            Action::Resume
                        }
                        Ok(other) => {
                            let actual = format!("{:?} at {:#x}", site.insn, site.addr).to_lowercase();
                            self.diverged(index, other.describe(), actual)
                        }
                        Err(a) => a,
                    }
                }
                None => trapbox_trap::Passthrough.on_trap(g, trap),
            },
            _ => trapbox_trap::Passthrough.on_trap(g, trap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trapbox_trap::script::{drive, HostAnswer, ScriptedGuest, SharedBuffer};

    #[test]
    fn a_scripted_recording_replays_without_the_host() {
        const MEM: u64 = 0x20_0000;
        let (rand, ts, input) = (MEM, MEM + 0x40, MEM + 0x80);
        let calls = [
            (libc::SYS_getrandom, [rand, 8, 0, 0, 0, 0]),
            (libc::SYS_clock_gettime, [libc::CLOCK_REALTIME as u64, ts, 0, 0, 0, 0]),
            (libc::SYS_read, [0, input, 64, 0, 0, 0]),
            (libc::SYS_getpid, [0; 6]),
            (libc::SYS_exit_group, [7, 0, 0, 0, 0, 0]),
        ];
        let answers = vec![
            HostAnswer { ret: 8, writes: vec![(rand, vec![1, 2, 3, 4, 5, 6, 7, 8])] },
            HostAnswer {
                ret: 0,
                writes: vec![(ts, [1_700_000_000u64.to_le_bytes(), 123_456_789u64.to_le_bytes()].concat())],
            },
            HostAnswer { ret: 6, writes: vec![(input, b"typed\n".to_vec())] },
            HostAnswer { ret: 4242, writes: vec![] },
        ];
        let start = Start { program: "/bin/true".into(), argv: vec!["true".into()], ..Default::default() };
        let trace = SharedBuffer::default();
        let mut rec = Recorder::new(trapbox_trap::Passthrough, trace.clone()).unwrap();
        let mut live = ScriptedGuest::new(MEM, 0x1000, answers);
        assert_eq!(drive(&mut rec, &mut live, &start, &calls), Outcome::Exited(7));
        assert_eq!(rec.error(), None);
        drop(rec);
        assert_eq!(live.forwarded.len(), 4);

        // The replay's guest has the same memory, zeroed, and a host with nothing to say: every
        // answer and every byte the kernel wrote comes from the trace.
        let bytes = trace.bytes();
        let (first, mut rep) = Replayer::open(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(first.program, b"/bin/true");
        let mut replayed = ScriptedGuest::new(MEM, 0x1000, Vec::new());
        let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = answers.clone();
        let mut observed = trapbox_trap::Observe::new(&mut rep, move |_: &dyn Guest, _: &Trap, a: &Action| {
            seen.lock().unwrap().push(a.clone());
        });
        assert_eq!(drive(&mut observed, &mut replayed, &start, &calls), Outcome::Exited(7));
        assert!(replayed.forwarded.is_empty(), "nothing reached the host: {:?}", replayed.forwarded);
        assert_eq!(
            *answers.lock().unwrap(),
            vec![Action::Return(8), Action::Return(0), Action::Return(6), Action::Return(4242), Action::Exit(7)]
        );
        assert_eq!(replayed.bytes(rand, 8), live.bytes(rand, 8));
        assert_eq!(replayed.bytes(ts, 16), live.bytes(ts, 16));
        assert_eq!(replayed.bytes(input, 6), b"typed\n");
        assert!(rep.stopped().is_none());
    }

    #[test]
    fn a_scripted_replay_that_meets_another_call_diverges() {
        const MEM: u64 = 0x20_0000;
        let start = Start { program: "/bin/true".into(), ..Default::default() };
        let trace = SharedBuffer::default();
        let mut rec = Recorder::new(trapbox_trap::Passthrough, trace.clone()).unwrap();
        let mut live = ScriptedGuest::new(MEM, 0x100, vec![HostAnswer { ret: 1, writes: vec![] }]);
        drive(&mut rec, &mut live, &start, &[(libc::SYS_getppid, [0; 6]), (libc::SYS_exit_group, [0; 6])]);
        drop(rec);
        let (_, mut rep) = Replayer::open(std::io::Cursor::new(trace.bytes())).unwrap();
        let mut replayed = ScriptedGuest::new(MEM, 0x100, Vec::new());
        let outcome = drive(&mut rep, &mut replayed, &start, &[(libc::SYS_getuid, [0; 6])]);
        assert_ne!(outcome, Outcome::Exited(0));
        let stop = rep.stopped().expect("a divergence stops the replay");
        assert!(stop.to_string().contains("getppid") && stop.to_string().contains("getuid"), "{stop}");
        assert!(replayed.forwarded.is_empty());
    }

    #[test]
    fn a_stored_file_gives_the_same_bytes_from_memory_or_from_its_copy() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let memory = Stored::new(data.clone());
        assert!(matches!(memory, Stored::Memory(_)), "memory files are available here");
        let bytes = Stored::Bytes(data.clone());
        for (off, len) in [(0, 10_000), (4096, 100), (9_990, 100), (20_000, 5), (0, 0)] {
            let want = &data[(off as usize).min(data.len())..((off + len) as usize).min(data.len())];
            assert_eq!(&*memory.bytes(off, len), want, "memory file at {off}+{len}");
            assert_eq!(&*bytes.bytes(off, len), want, "bytes at {off}+{len}");
        }
    }
}
