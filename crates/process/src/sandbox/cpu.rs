//! One thread's trap path: run the vCPU, decode the exit, hand the trap to the handler, apply
//! its action, deliver signals — the same for the first thread and for every other.

use std::sync::Arc;

use crate::sigdeliver::Interrupted;
use crate::signals;
use trapbox_trap::{Action, Fault, GuestAddr, Outcome, Regs, Syscall, Trap, TrapHandler};
use trapbox_vm::regs::{kvm_regs_of, store_gprs, user_regs};
use trapbox_vm::{Exit, ResumeFrom, TrapPath};

use super::guest::{Cpu, KvmGuest};
use super::host::{self, HOST_SIGNAL};
use super::threads::{Core, Job, Shared, ThreadCtx};
use super::SandboxError;
use trapbox_vm::Vcpu;

/// What a thread does after a trap.
pub(super) enum Next {
    /// Resume the guest.
    Continue,
    /// The process ends.
    End(Outcome),
    /// This thread called `exit` (the others go on).
    ThreadExit(i32),
}

/// A trap a handler stopped at (Action::Stop) and has not answered: the next run delivers it
/// again before the guest continues.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pending {
    Syscall,
    Exception(u8),
}

/// The outcome an action ends the process with, if it does.
pub(super) fn end_of(action: &Action) -> Option<Outcome> {
    match action {
        Action::Exit(c) => Some(Outcome::Exited(*c)),
        Action::Kill { signal, fault } => Some(Outcome::Killed { signal: *signal, fault: fault.clone() }),
        Action::Stop | Action::ReturnAndStop(_) => Some(Outcome::Stopped),
        Action::Return(_) | Action::Resume => None,
    }
}

/// Where the crash happened, with its symbol. Only a crash report asks: the symbols are read
/// then, not at every exception a handler may resume from.
pub(super) fn site(cpu: &Cpu<'_>, rip: u64) -> String {
    match cpu.sr().process.symbols.lookup(rip) {
        Some(s) => format!("rip {rip:#x} <{s}>"),
        None => format!("rip {rip:#x}"),
    }
}

/// Runs the thread's vCPU to its next exit and handles it.
pub(super) fn step<H: TrapHandler + ?Sized>(
    core: &Arc<Core>,
    ctx: &mut ThreadCtx,
    handler: &mut H,
    crash_rip: &mut Option<u64>,
    pending: &mut Option<Pending>,
) -> Result<Next, SandboxError> {
    let exit = core.runner.run(ctx.vcpu.as_mut().expect("a thread runs its own vCPU"))?;
    ctx.exits += 1;
    if exit == Exit::Syscall {
        core.syscalls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let mut cpu = Cpu::lock(core, ctx);
    match exit {
        Exit::Syscall => Ok(on_syscall(&mut cpu, handler, pending)),
        Exit::Exception(v) => on_exception(&mut cpu, handler, v, crash_rip, pending),
        Exit::StrayMmio { gpa } => {
            let rip = cpu.s().machine.regs().rip;
            let f = Fault { vector: 14, error_code: 4, addr: Some(gpa), rip };
            *crash_rip = Some(rip);
            let regs = user_regs(cpu.s().machine.regs());
            let mut g = KvmGuest::new(&mut cpu, regs);
            let action = handler.on_trap(&mut g, &Trap::Fault(f));
            // A stray access to the doorbell page cannot be resumed meaningfully.
            Ok(Next::End(end_of(&action).unwrap_or(Outcome::Killed { signal: libc::SIGSEGV, fault: None })))
        }
        Exit::Interrupted => Ok(on_interrupted(&mut cpu, handler)),
        Exit::HostMemoryFault => Ok(on_host_memory_fault(&mut cpu, handler, crash_rip)),
        Exit::Unexpected(exit) => {
            let rip = cpu.s().machine.regs().rip;
            Err(SandboxError::UnexpectedExit { exit, rip })
        }
    }
}

/// A trap that did not come from the guest (timeout, trapbox's own signal).
pub(super) fn deliver_async<H: TrapHandler + ?Sized>(cpu: &mut Cpu<'_>, handler: &mut H, trap: Trap) -> Next {
    let mut g = KvmGuest::current(cpu);
    let action = handler.on_trap(&mut g, &trap);
    match end_of(&action) {
        Some(o) => Next::End(o),
        None => Next::Continue,
    }
}

pub(super) fn on_syscall<H: TrapHandler + ?Sized>(
    cpu: &mut Cpu<'_>,
    handler: &mut H,
    pending: &mut Option<Pending>,
) -> Next {
    // At a syscall, RCX holds the return address and R11 the flags: that is the user's
    // RIP/RFLAGS as a handler should see them.
    let mut regs = user_regs(cpu.s().machine.regs());
    regs.rip = regs.rcx;
    regs.rflags = regs.r11;
    let call = Syscall::from_regs(&regs);
    let mut g = KvmGuest::new(cpu, regs);
    if call.creates_thread() {
        g.thread_handler = handler.new_thread();
    }
    let action = handler.on_trap(&mut g, &Trap::Syscall(call));
    let (mut regs, dirty, mut replaced) = (g.regs, g.dirty, g.replaced);
    let interrupted = matches!(action, Action::Return(r) if r == -(libc::EINTR as i64));
    if interrupted && (HOST_SIGNAL.load(std::sync::atomic::Ordering::SeqCst) != 0 || cpu.core.group.ending()) {
        // The host call was interrupted by trapbox's own signal: let the loop end the run
        // instead of showing the guest an EINTR it did not cause. The guest re-executes
        // nothing: the loop ends before resuming it.
        return Next::Continue;
    }
    match action {
        Action::Return(v) | Action::ReturnAndStop(v) => regs.rax = v as u64,
        Action::Resume => {}
        Action::Stop => {
            *pending = Some(Pending::Syscall);
            return Next::End(Outcome::Stopped);
        }
        Action::Exit(code) if call.nr == libc::SYS_exit as u64 => return Next::ThreadExit(code),
        a => return Next::End(end_of(&a).unwrap_or(Outcome::Stopped)),
    }
    let s = cpu.s();
    if s.process.signals_waiting() {
        // A call that replaced the whole context (rt_sigreturn, execve) has no result of its
        // own to restart: RAX is the restored context's (as the kernel's orig_ax = -1 says
        // after a sigreturn). Taken for one, an EINTR restored from a frame made a second
        // handler's frame "restart" the rt_sigreturn itself at the interrupted call's site.
        let why =
            if replaced { Interrupted::Running } else { Interrupted::Syscall { nr: call.nr, result: regs.rax as i64 } };
        match s.process.deliver_signals(&mut s.machine, &mut regs, why) {
            Some(Action::Resume) => replaced = true,
            Some(a) => return Next::End(end_of(&a).unwrap_or(Outcome::Stopped)),
            None => {}
        }
    }
    notify_signals(cpu, handler, &regs);
    let s = cpu.s();
    if let Some(site) = s.machine.take_hot_site() {
        s.process.rewrite_syscall_site(site);
    }
    let m = &mut s.machine;
    if replaced {
        m.resume_user(ResumeFrom::Syscall, &kvm_regs_of(&regs));
    } else {
        if dirty {
            store_gprs(m.regs_mut(), &regs);
        }
        m.finish_syscall(regs.rax, regs.rip, regs.rflags);
    }
    match action {
        Action::ReturnAndStop(_) => Next::End(Outcome::Stopped),
        _ => Next::Continue,
    }
}

/// Tells the handler about the signals whose handlers were just entered.
fn notify_signals<H: TrapHandler + ?Sized>(cpu: &mut Cpu<'_>, handler: &mut H, regs: &Regs) {
    let delivered = cpu.s().process.take_delivered();
    if delivered.is_empty() {
        return;
    }
    let mut g = KvmGuest::new(cpu, *regs);
    for (sig, info) in delivered {
        handler.on_signal(&mut g, sig, &info);
    }
}

/// The address of the memory operand of the guest instruction at `regs.rip`, decoded.
fn operand_address(s: &Shared, regs: &Regs) -> Option<u64> {
    let runs = s.process.aspace.read_runs(regs.rip, 15);
    let code = runs.first().filter(|(a, _)| *a == regs.rip).map(|(_, b)| b.clone()).unwrap_or_default();
    let fs = s.machine.fs_base().unwrap_or(0);
    let gs = s.machine.gs_base().unwrap_or(0);
    crate::insn::memory_operand_address(&code, regs.rip, regs, fs, gs)
}

/// A guest access whose page has no host memory behind it: a SIGBUS fault at the address
/// the instruction used (decoded, since KVM does not say).
fn on_host_memory_fault<H: TrapHandler + ?Sized>(
    cpu: &mut Cpu<'_>,
    handler: &mut H,
    crash_rip: &mut Option<u64>,
) -> Next {
    let s = cpu.s();
    let regs = user_regs(s.machine.regs());
    let addr = operand_address(s, &regs);
    let f = Fault { vector: Fault::HOST_BUS_ERROR, error_code: 0, addr, rip: regs.rip };
    *crash_rip = Some(regs.rip);
    let mut g = KvmGuest::new(cpu, regs);
    g.why = Interrupted::Fault(0, 0, addr.unwrap_or(0));
    let action = handler.on_trap(&mut g, &Trap::Fault(f));
    let (regs, replaced) = (g.regs, g.replaced);
    let _ = cpu.s().process.take_delivered();
    match action {
        Action::Resume if replaced => {
            cpu.s().machine.resume_user(ResumeFrom::Running, &kvm_regs_of(&regs));
            *crash_rip = None;
            Next::Continue
        }
        a => Next::End(end_of(&a).unwrap_or(Outcome::Killed { signal: libc::SIGBUS, fault: None })),
    }
}

/// A kick brought the vCPU out of user code: run the handlers of signals that arrived, or
/// else, if a handler asked for it, deliver [`Trap::Preempt`].
fn on_interrupted<H: TrapHandler + ?Sized>(cpu: &mut Cpu<'_>, handler: &mut H) -> Next {
    let preempt = host::take_preempt();
    let s = cpu.s();
    if !s.machine.at_user_instruction().unwrap_or(false) || trap_may_be_on_its_way(s) {
        // Not at an instruction of the guest's (in a stub, or with an exception on its way):
        // neither a preemption asked now (the asker asks again if it still wants one) nor a
        // signal (its handler runs at the next exit) is delivered here.
        return Next::Continue;
    }
    if !s.process.signals_waiting() {
        return if preempt { on_preempt(cpu, handler) } else { Next::Continue };
    }
    let mut regs = user_regs(s.machine.regs());
    match s.process.deliver_signals(&mut s.machine, &mut regs, Interrupted::Running) {
        Some(Action::Resume) => {
            s.machine.resume_user(ResumeFrom::Running, &kvm_regs_of(&regs));
            // The handler hears of it now, before the signal handler's first trap: a recorder
            // puts it after the last event, where a replay can deliver it again.
            notify_signals(cpu, handler, &regs);
            Next::Continue
        }
        Some(a) => Next::End(end_of(&a).unwrap_or(Outcome::Stopped)),
        None => Next::Continue,
    }
}

/// Whether the guest, interrupted in user code, may have just run an instruction whose trap
/// is still on its way: an `int3`, `int n`, `int1` or `into` right before RIP, or the trap
/// flag set (a single step's #DB). KVM on hardware shows such an exception as an event
/// ([`trapbox_vm::Machine::at_user_instruction`]); PVM does not, and writing the registers
/// there (a signal frame, a preemption's) drops it. Erring on the side of "maybe" only
/// delays a preemption or a signal to the next exit, which the trap itself brings at once.
fn trap_may_be_on_its_way(s: &mut Shared) -> bool {
    let regs = s.machine.regs();
    if regs.rflags & (1 << 8) != 0 {
        return true;
    }
    let mut before = [0u8; 2];
    let Some(at) = regs.rip.checked_sub(2) else { return false };
    if s.process.aspace.read(GuestAddr(at), &mut before).is_err() {
        // Not readable as a whole (the start of a mapping): only the last byte can tell.
        let mut last = [0u8; 1];
        return s.process.aspace.read(GuestAddr(at + 1), &mut last).is_ok() && matches!(last[0], 0xcc | 0xce | 0xf1);
    }
    matches!(before[1], 0xcc | 0xce | 0xf1) || before[0] == 0xcd
}

/// A handler asked for this thread's [`Trap::Preempt`], and the thread is in user code.
fn on_preempt<H: TrapHandler + ?Sized>(cpu: &mut Cpu<'_>, handler: &mut H) -> Next {
    let regs = user_regs(cpu.s().machine.regs());
    let mut g = KvmGuest::new(cpu, regs);
    let action = handler.on_trap(&mut g, &Trap::Preempt);
    let (regs, dirty) = (g.regs, g.dirty || g.replaced);
    match action {
        Action::Resume => {
            if dirty {
                cpu.s().machine.resume_user(ResumeFrom::Running, &kvm_regs_of(&regs));
            }
            Next::Continue
        }
        a => Next::End(end_of(&a).unwrap_or(Outcome::Stopped)),
    }
}

pub(super) fn on_exception<H: TrapHandler + ?Sized>(
    cpu: &mut Cpu<'_>,
    handler: &mut H,
    vector: u8,
    crash_rip: &mut Option<u64>,
    pending: &mut Option<Pending>,
) -> Result<Next, SandboxError> {
    let s = cpu.s();
    let frame = s.machine.exception_frame(vector);
    if frame.cs & 3 != 3 {
        return Err(SandboxError::RingZeroFault { vector, rip: frame.rip });
    }
    let mut regs = user_regs(s.machine.regs());
    regs.rip = frame.rip;
    regs.rsp = frame.rsp;
    regs.rflags = frame.rflags;
    // What the guest is told happened (the machine's own vector still says how to resume).
    let (mut reported, mut reported_code) = (vector, frame.error_code);
    if vector == 6
        && s.machine.trap_path() == TrapPath::Pvm
        && operand_address(s, &regs).is_some_and(|a| !crate::insn::is_canonical(a))
    {
        // PVM hands an access to a non-canonical address to KVM's instruction emulator, which
        // cannot decode VEX instructions and injects #UD: the CPU's answer is #GP(0), which
        // Linux turns into SIGSEGV.
        (reported, reported_code) = (13, 0);
    }
    if vector == 6
        && s.machine.trap_path() == TrapPath::Pvm
        && legacy_syscall_at(&s.process, regs.rip) == Some("sysenter")
        && intel(s)
    {
        // `sysenter` in 64-bit mode: Intel CPUs execute it, and with SYSENTER_CS zero (as
        // trapbox leaves it) it raises #GP(0), SIGSEGV natively; AMD's raise #UD. PVM injects
        // #UD on both.
        (reported, reported_code) = (13, 0);
    }
    if reported == 13 && emulate_umip(cpu, &mut regs) {
        cpu.s().machine.resume_user(ResumeFrom::Exception(vector), &kvm_regs_of(&regs));
        return Ok(Next::Continue);
    }
    let s = cpu.s();
    let trap = match reported {
        3 => Trap::Breakpoint { rip: frame.rip },
        1 => Trap::SingleStep { rip: frame.rip },
        _ => {
            let addr = if reported == 14 { Some(s.machine.cr2()?) } else { None };
            let mut error_code = reported_code;
            if let Some(a) = addr.filter(|_| error_code & 1 == 0) {
                // A PROT_NONE page has no entry, but it is mapped: Linux reports a
                // protection fault (SEGV_ACCERR) there, and so does the error code here.
                if s.process.aspace.region_at(a).is_some() {
                    error_code |= 1;
                }
            }
            let f = Fault { vector: reported, error_code, addr, rip: frame.rip };
            explain_legacy_syscall(cpu, &f);
            Trap::Fault(f)
        }
    };
    *crash_rip = Some(frame.rip);
    let cr2 = if let Trap::Fault(Fault { addr: Some(a), .. }) = &trap { *a } else { 0 };
    let mut g = KvmGuest::new(cpu, regs);
    g.why = Interrupted::Fault(reported_code, reported as u64, cr2);
    let action = handler.on_trap(&mut g, &trap);
    let (mut regs, dirty, mut replaced) = (g.regs, g.dirty, g.replaced);
    // A fault's signal was raised by the handler itself (Guest::raise_signal): nothing to tell.
    let _ = cpu.s().process.take_delivered();
    if action == Action::Resume && cpu.s().process.signals_waiting() {
        // Signals that arrived meanwhile, or that the handler queued (a replay re-creating
        // one recorded after this trap), run their handlers before the guest goes on.
        let s = cpu.s();
        match s.process.deliver_signals(&mut s.machine, &mut regs, Interrupted::Running) {
            Some(Action::Resume) => {
                replaced = true;
                notify_signals(cpu, handler, &regs);
            }
            Some(a) => return Ok(Next::End(end_of(&a).unwrap_or(Outcome::Stopped))),
            None => {}
        }
    }
    let m = &mut cpu.s().machine;
    if replaced && action == Action::Resume {
        m.resume_user(ResumeFrom::Exception(vector), &kvm_regs_of(&regs));
        *crash_rip = None;
        return Ok(Next::Continue);
    }
    if action == Action::Stop {
        *pending = Some(Pending::Exception(vector));
        return Ok(Next::End(Outcome::Stopped));
    }
    if let Some(o) = end_of(&action).filter(|_| !matches!(action, Action::ReturnAndStop(_))) {
        return Ok(Next::End(o));
    }
    if dirty {
        store_gprs(m.regs_mut(), &regs);
    }
    if let Action::Return(v) | Action::ReturnAndStop(v) = action {
        m.regs_mut().rax = v as u64;
    }
    m.set_exception_return(vector, regs.rip, regs.rsp, regs.rflags);
    *crash_rip = None;
    Ok(if matches!(action, Action::ReturnAndStop(_)) { Next::End(Outcome::Stopped) } else { Next::Continue })
}

/// A #GP from an instruction UMIP keeps from user code (sgdt, sidt, sldt, smsw, str):
/// emulated as Linux does (`insn::umip`), the guest going on after it. False if the fault is
/// anything else, or the result cannot be stored (the guest then gets its SIGSEGV).
fn emulate_umip(cpu: &mut Cpu<'_>, regs: &mut Regs) -> bool {
    let s = cpu.s();
    let mut code = [0u8; 15];
    let n = s.process.aspace.read_runs(regs.rip, 15).first().map_or(0, |(_, b)| b.len());
    if n == 0 || s.process.aspace.read(GuestAddr(regs.rip), &mut code[..n]).is_err() {
        return false;
    }
    let (fs, gs) = (s.machine.fs_base().unwrap_or(0), s.machine.gs_base().unwrap_or(0));
    let Some(u) = crate::insn::umip(&code[..n], regs.rip, regs, fs, gs) else { return false };
    if let Some((addr, bytes)) = &u.store {
        if s.process.aspace.write(GuestAddr(*addr), bytes).is_err() {
            return false;
        }
    }
    if let Some((reg, value, size)) = u.reg {
        let r = regs.gpr_mut(reg);
        *r = match size {
            2 => (*r & !0xffff) | (value & 0xffff),
            4 => value & 0xffff_ffff,
            _ => value,
        };
    }
    regs.rip += u.len;
    true
}

/// The 32-bit syscall instruction at `rip` (`int 0x80`, `sysenter`), if the guest's code
/// there is one.
fn legacy_syscall_at(p: &crate::Process, rip: u64) -> Option<&'static str> {
    let mut insn = [0u8; 2];
    p.aspace.read(GuestAddr(rip), &mut insn).ok()?;
    match insn {
        [0xcd, 0x80] => Some("int 0x80"),
        [0x0f, 0x34] => Some("sysenter"),
        _ => None,
    }
}

/// Whether the guest's CPU is an Intel one (CPUID leaf 0's vendor, as the guest sees it).
fn intel(s: &mut Shared) -> bool {
    s.machine.cpuid(0, 0).is_some_and(|[_, ebx, ecx, edx]| [ebx, edx, ecx] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e])
}

/// `int 0x80` and `sysenter` are the 32-bit syscall ABI: say so instead of leaving the user
/// with a bare SIGSEGV/SIGILL.
fn explain_legacy_syscall(cpu: &mut Cpu<'_>, f: &Fault) {
    let p = &mut cpu.s().process;
    let Some(what) = legacy_syscall_at(p, f.rip) else { return };
    p.warn_once(
        "legacy-syscall",
        format_args!("{what} at {:#x}: the 32-bit syscall ABI is not supported (only `syscall`)", f.rip),
    );
}

/// A host thread for guest threads other than the first: runs the guest thread of `job`,
/// then, as long as the process goes on, the next one the guest creates (see [`Job`]).
pub(super) fn host_thread(core: Arc<Core>, mut job: Box<Job>) {
    // A fresh vCPU's segment registers (user mode), for the guest threads after the first.
    let mut fresh = None;
    let mut own: Option<Vcpu> = None;
    loop {
        let Job { mut state, thread, handler, vcpu, started, go } = *job;
        let vcpu = match vcpu {
            Some(mut v) => {
                fresh = v.save_state().ok().and_then(|s| s.sregs);
                Some(v)
            }
            // A KVM vCPU reused for another thread needs a fresh vCPU's segment registers; the
            // in-process engine's CPU has none.
            None => own.take().filter(|v| fresh.is_some() || matches!(v, Vcpu::InProc(_))).and_then(|mut v| {
                state.sregs = fresh;
                v.restore_state(&state).ok().map(|_| v)
            }),
        };
        // SAFETY: gettid and pthread_self have no preconditions.
        let me = unsafe { (libc::gettid(), libc::pthread_self()) };
        let Some(mut vcpu) = vcpu else {
            let _ = started.send(None);
            return;
        };
        if started.send(Some(me)).is_err() || go.recv() != Ok(true) {
            return;
        }
        vcpu.claim_kicks();
        let ctx = ThreadCtx { vcpu: Some(vcpu), state: thread, exits: 0, kick: Default::default() };
        let (jobs, next) = std::sync::mpsc::channel();
        own = thread_main(&core, ctx, handler, me.0, jobs);
        match next.recv() {
            Ok(j) => job = j,
            // The run is over (or the thread did not leave with `exit`).
            Err(_) => return,
        }
    }
}

/// A guest thread other than the first: runs until it exits or the process ends. A thread
/// that left with `exit` while the process goes on waits for its next job on `jobs`, and
/// keeps its vCPU (returned).
fn thread_main(
    core: &Arc<Core>,
    mut ctx: ThreadCtx,
    mut handler: Box<dyn trapbox_trap::TrapHandler + Send>,
    tid: i32,
    jobs: std::sync::mpsc::Sender<Box<Job>>,
) -> Option<Vcpu> {
    signals::mirror_mask(ctx.state.mask);
    // Released before this host thread may end (as the run ends), and before it runs another
    // guest thread.
    let _kicks = ctx.kick.claim();
    let mut crash_rip = None;
    let mut pending = None;
    let generation = {
        let shared = core.lock();
        // The guest's thread is named after its program, as a new thread of it would be.
        if let Some(img) = &shared.process.image {
            crate::set_comm(&img.program);
        }
        shared.process.generation
    };
    {
        // The handler may change the new thread's registers before it runs (a debugger takes
        // out a trap flag it inherited from its parent's step).
        let mut cpu = Cpu::lock(core, &mut ctx);
        let mut g = KvmGuest::current(&mut cpu);
        handler.on_thread_start(&mut g);
        let (regs, dirty) = (g.regs, g.dirty);
        if dirty {
            cpu.s().machine.resume_user(ResumeFrom::Running, &kvm_regs_of(&regs));
        }
    }
    let code = loop {
        if core.group.ending() {
            break None;
        }
        match step(core, &mut ctx, &mut *handler, &mut crash_rip, &mut pending) {
            Ok(Next::Continue) => {
                if core.lock().process.generation != generation {
                    // This thread forked: it is the only thread of the new process.
                    super::own_forked_process(core, &mut ctx, &mut *handler);
                }
            }
            Ok(Next::ThreadExit(c)) => break Some(c),
            Ok(Next::End(o)) => {
                core.group.end(o);
                break None;
            }
            Err(e) => {
                let mut cpu = Cpu::lock(core, &mut ctx);
                let _ = std::io::Write::write_all(
                    &mut cpu.s().process.diag,
                    format!("trapbox: thread {tid}: {e}\n").as_bytes(),
                );
                drop(cpu);
                core.group.end(Outcome::Killed { signal: libc::SIGKILL, fault: None });
                break None;
            }
        }
    };
    {
        let mut cpu = Cpu::lock(core, &mut ctx);
        let p = &mut cpu.s().process;
        let ctid = p.clear_child_tid();
        p.thread_ids.retain(|t| *t != tid);
        p.signals.thread_left(tid);
        if ctid != 0 && p.aspace.write(GuestAddr(ctid), &0u32.to_le_bytes()).is_ok() {
            // What the kernel does at thread exit (CLONE_CHILD_CLEARTID): pthread_join waits
            // on this word. Guest futexes are host futexes at the same addresses.
            crate::run_host(libc::SYS_futex as u64, &[ctid, libc::FUTEX_WAKE as u64, 1, 0, 0, 0]);
        }
        core.group.leave(tid, code);
        // Waiting for the next thread before the handler hears of this one's end: a recorded
        // run's handler lets the other threads go on then, and a clone after that finds this
        // host thread waiting in every run alike.
        if code.is_some() && !core.group.ending() {
            cpu.s().wait_idle(jobs);
        }
        handler.on_thread_exit(&mut KvmGuest::current(&mut cpu));
    }
    ctx.vcpu.take()
}
