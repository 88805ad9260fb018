//! The guest as handlers see it ([`Guest`]), backed by the KVM machine, for the thread that
//! trapped. It holds the shared lock ([`Cpu`]) and lets go of it around host calls that may
//! block, so other guest threads keep running (a futex wait must not stop the thread that
//! would wake it).

use std::sync::{mpsc, Arc, MutexGuard};

use crate::exec::ExecPlan;
use crate::fork::{flag, CloneArgs};
use crate::sigdeliver::Interrupted;
use crate::snapshot::CpuSnapshot;
use crate::{run_host, signals, Handled, ThreadState};
use trapbox_abi::Sysno;
use trapbox_trap::{
    Action, Guest, GuestAddr, MemError, Regs, Restored, SnapshotError, SnapshotId, Start, Syscall, TrapHandler,
};

use super::cpu;
use super::threads::{Core, Job, Shared, ThreadCtx};

/// A thread holding the shared state, with its own vCPU and state entered.
pub(super) struct Cpu<'a> {
    /// The shared core.
    pub core: &'a Arc<Core>,
    guard: Option<MutexGuard<'a, Shared>>,
    /// The thread's own part.
    pub ctx: &'a mut ThreadCtx,
}

impl<'a> Cpu<'a> {
    /// Takes the lock for `ctx`'s thread.
    pub fn lock(core: &'a Arc<Core>, ctx: &'a mut ThreadCtx) -> Cpu<'a> {
        let mut g = core.lock();
        g.enter(ctx);
        Cpu { core, guard: Some(g), ctx }
    }

    /// The shared state.
    pub fn s(&mut self) -> &mut Shared {
        self.guard.as_mut().expect("a Cpu holds the lock outside `unlocked`")
    }

    /// The shared state, read-only.
    pub fn sr(&self) -> &Shared {
        self.guard.as_ref().expect("a Cpu holds the lock outside `unlocked`")
    }

    /// Runs `f` without the lock: a host call that may block.
    pub fn unlocked<R>(&mut self, f: impl FnOnce() -> R) -> R {
        if let Some(mut g) = self.guard.take() {
            g.leave(self.ctx);
        }
        let r = f();
        let mut g = self.core.lock();
        g.enter(self.ctx);
        self.guard = Some(g);
        r
    }
}

impl Drop for Cpu<'_> {
    fn drop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.leave(self.ctx);
            self.core.release(g);
        }
    }
}

/// The guest for one trap of one thread.
pub(super) struct KvmGuest<'c, 'a> {
    pub cpu: &'c mut Cpu<'a>,
    pub regs: Regs,
    pub dirty: bool,
    /// The passthrough replaced the user context (execve, a child's new stack, a signal
    /// handler's entry): resume with every register as given, RCX and R11 included.
    pub replaced: bool,
    /// What the guest was doing at this trap (for a signal frame).
    pub why: Interrupted,
    /// The handler a new thread would get (asked for before a thread-creating clone).
    pub thread_handler: Option<Box<dyn TrapHandler + Send>>,
}

impl<'c, 'a> KvmGuest<'c, 'a> {
    /// Makes a blocking host call for the guest without the lock, again as long as it is only
    /// interrupted by trapbox's own kicks: an EINTR that no guest signal caused (a kick to take
    /// a signal the thread cannot take yet, a preemption ending a call the kernel does not
    /// restart) is never the guest's to see. A guest signal, or the run ending, ends it.
    fn until_not_kicked(&mut self, mut call: impl FnMut() -> i64) -> i64 {
        // The reference, not a clone of the Arc: two atomic operations per host call saved.
        let core: &Arc<Core> = self.cpu.core;
        loop {
            let ret = self.cpu.unlocked(&mut call);
            if ret != -(libc::EINTR as i64) || self.cpu.s().process.signals_waiting() || run_ending(core) {
                return ret;
            }
        }
    }

    pub fn new(cpu: &'c mut Cpu<'a>, regs: Regs) -> Self {
        KvmGuest { cpu, regs, dirty: false, replaced: false, why: Interrupted::Running, thread_handler: None }
    }

    /// The guest with the registers its vCPU holds now (for a hook outside any trap).
    pub fn current(cpu: &'c mut Cpu<'a>) -> Self {
        let regs = trapbox_vm::regs::user_regs(cpu.s().machine.regs());
        KvmGuest::new(cpu, regs)
    }

    /// clone(CLONE_THREAD): a vCPU starting where the parent returns from clone (RAX = 0, on
    /// the new stack, with the new TLS), on a host thread of its own, with its own handler.
    fn spawn_thread(&mut self, args: CloneArgs) -> Action {
        let f = args.flags;
        let neg = |e: i32| Action::Return(-(e as i64));
        if f & (flag::SIGHAND | flag::VM) != (flag::SIGHAND | flag::VM) {
            return neg(libc::EINVAL);
        }
        if f & flag::ESCAPING != 0 {
            return neg(libc::EPERM);
        }
        let Some(handler) = self.thread_handler.take() else {
            self.cpu.s().process.warn_once(
                "threads-handler",
                format_args!("clone: this trap handler cannot follow threads; returning EAGAIN"),
            );
            return neg(libc::EAGAIN);
        };
        let mut child = self.regs;
        child.rax = 0;
        child.rcx = child.rip;
        child.r11 = child.rflags;
        if args.stack != 0 {
            child.rsp = args.stack;
        }
        let s = self.cpu.s();
        let state = s.machine.save_cpu_state().map(|mut state| {
            // The thread starts in user mode at the return point, whatever stub the parent is in.
            state.sregs = None;
            state.regs = trapbox_vm::regs::kvm_regs_of(&child);
            if f & flag::SETTLS != 0 {
                state.fs_base = args.tls;
            }
            state
        });
        let state = match state {
            Ok(st) => st,
            Err(e) => {
                s.process.warn_once("thread-vcpu", format_args!("clone: cannot read the vCPU's state: {e}"));
                return neg(libc::EAGAIN);
            }
        };
        // From now on another vCPU may run while this one changes memory.
        s.machine.flush_eagerly();
        let ctid = if f & flag::CHILD_CLEARTID != 0 { args.child_tid } else { 0 };
        let (tx, rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let job = Box::new(Job {
            state,
            thread: ThreadState::new_thread(s.process.signals.mask, ctid),
            handler,
            vcpu: None,
            started: tx,
            go: go_rx,
        });
        if let Err(mut job) = s.hand_to_idle(job) {
            let id = self.cpu.core.next_vcpu.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let s = self.cpu.s();
            match s.machine.new_vcpu(id, &job.state) {
                Ok(v) => {
                    if let Some(fd) = v.fd() {
                        s.process.fds.reserve(fd);
                    }
                    job.vcpu = Some(v);
                }
                Err(e) => {
                    s.process.warn_once("thread-vcpu", format_args!("clone: cannot create a vCPU: {e}"));
                    return neg(libc::EAGAIN);
                }
            }
            let core = self.cpu.core.clone();
            let spawned =
                std::thread::Builder::new().name("trapbox-guest".into()).spawn(move || cpu::host_thread(core, job));
            if spawned.is_err() {
                return neg(libc::EAGAIN);
            }
        }
        let Ok(Some((tid, pthread))) = rx.recv() else {
            return neg(libc::EAGAIN);
        };
        let s = self.cpu.s();
        let id = tid.to_le_bytes();
        if f & flag::PARENT_SETTID != 0 {
            let _ = s.process.aspace.write(GuestAddr(args.parent_tid), &id);
        }
        if f & flag::CHILD_SETTID != 0 {
            let _ = s.process.aspace.write(GuestAddr(args.child_tid), &id);
        }
        s.process.thread_ids.push(tid);
        self.cpu.core.group.register(tid, pthread);
        let _ = go_tx.send(true);
        Action::Return(tid as i64)
    }
}

impl KvmGuest<'_, '_> {
    /// execve in a process with other threads: the checks first, then [`Self::exec_plan`].
    fn exec_with_threads(&mut self, call: &Syscall) -> Action {
        let sysno = if call.nr == libc::SYS_execveat as u64 { Sysno::execveat } else { Sysno::execve };
        match self.cpu.s().process.exec_prepare(sysno, &call.args) {
            Ok(plan) => self.exec_plan(plan),
            Err(e) => Action::Return(-(e as i64)),
        }
    }

    /// The point of no return of an exec: the other threads end, then the new image replaces
    /// the old.
    fn exec_plan(&mut self, plan: ExecPlan) -> Action {
        let group = &self.cpu.core.group;
        if group.others() > 0 {
            if !group.is_main() {
                self.cpu.s().process.warn_once(
                    "exec-thread",
                    format_args!("execve from a thread other than the first is not supported; returning EAGAIN"),
                );
                return Action::Return(-(libc::EAGAIN as i64));
            }
            group.stop_others_for_exec();
            let core = self.cpu.core.clone();
            self.cpu.unlocked(|| core.group.wait_for_others());
            core.group.resume_after_exec();
        }
        let Shared { machine, process, .. } = self.cpu.s();
        let action = process.exec_commit(machine, &mut self.regs, plan);
        self.dirty = true;
        self.replaced = true;
        action
    }
}

impl Guest for KvmGuest<'_, '_> {
    fn regs(&self) -> Regs {
        self.regs
    }
    fn set_regs(&mut self, regs: &Regs) {
        self.regs = *regs;
        self.dirty = true;
    }
    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.cpu.sr().process.aspace.read(addr, buf)
    }
    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), MemError> {
        self.cpu.s().process.aspace.write(addr, data)
    }
    fn read_cstr(&self, addr: GuestAddr, max: usize) -> Result<Vec<u8>, MemError> {
        self.cpu.sr().process.aspace.read_cstr(addr, max)
    }
    fn passthrough(&mut self, call: &Syscall) -> Action {
        if call.creates_thread() {
            return self.spawn_thread(CloneArgs::decode(trapbox_abi::Sysno::clone, &call.args));
        }
        let is_exec = call.nr == libc::SYS_execve as u64 || call.nr == libc::SYS_execveat as u64;
        if is_exec && self.cpu.core.group.others() > 0 {
            return self.exec_with_threads(call);
        }
        let before = self.regs;
        let handled = {
            let _group = call.creates_process().then(|| self.cpu.core.group.hold_for_fork());
            let Shared { machine, process, .. } = self.cpu.s();
            process.syscall_staged(machine, call, &mut self.regs)
        };
        let action = match handled {
            Handled::Done(a) => a,
            Handled::Host(mut staged) => {
                let ret = if staged.never_waits() { staged.run() } else { self.until_not_kicked(|| staged.run()) };
                Action::Return(self.cpu.s().process.finish_host(staged, ret))
            }
            Handled::Wait { nr, args } => Action::Return(self.until_not_kicked(|| run_host(nr, &args))),
            Handled::WaitSignal(mask) => {
                // Only a signal ends the wait, or the run ending: a kick of trapbox's own that
                // brings neither (one meant for an earlier call) waits on.
                let core = self.cpu.core.clone();
                while !self.cpu.s().process.signal_ends_wait(mask) {
                    if signals::trapbox_woken() && run_ending(&core) {
                        break;
                    }
                    self.cpu.unlocked(|| signals::wait_for_signal(mask));
                }
                Action::Return(-(libc::EINTR as i64))
            }
        };
        if self.regs != before {
            self.dirty = true;
            self.replaced = true;
        }
        action
    }
    fn symbolize(&self, addr: u64) -> Option<String> {
        self.cpu.sr().process.symbols.lookup(addr)
    }
    fn exits(&self) -> u64 {
        self.cpu.sr().machine.exits()
    }
    fn read_runs(&self, addr: GuestAddr, len: u64) -> Vec<(u64, Vec<u8>)> {
        self.cpu.sr().process.aspace.read_runs(addr.0, len)
    }
    fn tid(&self) -> i32 {
        // SAFETY: gettid has no preconditions; each guest thread runs on its own host thread.
        unsafe { libc::gettid() }
    }
    fn process(&mut self) -> Option<&mut dyn trapbox_trap::Process> {
        Some(self)
    }
    fn snapshots(&mut self) -> Option<&mut dyn trapbox_trap::Snapshots> {
        Some(self)
    }
}

/// Both engines take snapshots: memory by the process model ([`crate::snapshot`]), the CPU
/// state here.
impl trapbox_trap::Snapshots for KvmGuest<'_, '_> {
    fn take(&mut self) -> Result<SnapshotId, SnapshotError> {
        let regs = self.regs;
        let Shared { machine, process, .. } = self.cpu.s();
        let fpu = machine.fpu().map_err(|e| vm_error("cannot read the vector state", e))?;
        let cpu = CpuSnapshot {
            regs,
            xsave: trapbox_vm::arch::xsave::xsave_bytes(&fpu),
            fs_base: machine.fs_base().unwrap_or(0),
            gs_base: machine.gs_base().unwrap_or(0),
        };
        process.take_snapshot(cpu)
    }
    fn restore(&mut self, id: SnapshotId) -> Result<Restored, SnapshotError> {
        let Shared { machine, process, .. } = self.cpu.s();
        let (done, cpu) = process.restore_snapshot(machine.mem(), id)?;
        // The snapshot's image is a whole XSAVE area (taken as one): nothing of the current
        // one needs reading first. On KVM each vCPU call costs a vCPU load, so the bases go
        // in one call too.
        let mut fpu = kvm_bindings::kvm_xsave::default();
        trapbox_vm::arch::xsave::set_xsave_bytes(&mut fpu, &cpu.xsave);
        machine.set_fpu(&fpu).map_err(|e| vm_error("cannot set the vector state", e))?;
        // The mappings' changes reach the vCPUs when this thread lets go of the shared state
        // before it runs again (`Shared::leave`), as after any memory syscall.
        machine.set_bases(cpu.fs_base, cpu.gs_base).map_err(|e| vm_error("cannot set the FS and GS bases", e))?;
        self.regs = cpu.regs;
        self.dirty = true;
        self.replaced = true;
        Ok(done)
    }
    fn discard(&mut self, id: SnapshotId) {
        self.cpu.s().process.discard_snapshot(id);
    }
}

fn vm_error(what: &'static str, e: trapbox_vm::VmError) -> SnapshotError {
    SnapshotError::Host { what, source: Box::new(e) }
}

/// Both engines run the whole Linux process model.
impl trapbox_trap::Process for KvmGuest<'_, '_> {
    fn mappings(&self) -> Vec<(u64, u64, i32)> {
        self.cpu.sr().process.aspace.listing()
    }
    fn patch_code(&mut self, addr: GuestAddr, bytes: &[u8]) -> Result<(), MemError> {
        let Shared { machine, process, .. } = self.cpu.s();
        process.patch_code(machine.mem(), addr.0, bytes)
    }
    fn cpuid(&self, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        self.cpu.sr().machine.cpuid(leaf, subleaf)
    }
    fn engine(&self) -> trapbox_trap::Engine {
        self.cpu.sr().machine.engine()
    }
    fn cpu_view(&self) -> trapbox_trap::CpuView {
        self.cpu.sr().machine.cpu_view().clone()
    }
    fn image(&self) -> Option<Start> {
        self.cpu.sr().process.image.clone()
    }
    fn time_buffer(&self) -> Option<crate::vdso::TimeBuffer> {
        let p = &self.cpu.sr().process;
        p.image.as_ref()?.placement.vdso?;
        p.time_alias.as_ref().map(|a| a.buffer())
    }
    fn exec_image(&mut self, start: &Start) -> Action {
        self.exec_plan(ExecPlan::of_image(start))
    }
    fn queue_signal(&mut self, sig: i32, siginfo: &[u8; 128]) {
        self.cpu.s().process.signals.raise(sig, *siginfo);
    }
    fn wait_for(&mut self, ready: &mut dyn FnMut() -> bool) -> bool {
        let core = self.cpu.core.clone();
        self.cpu.unlocked(|| loop {
            if run_ending(&core) {
                return false;
            }
            if ready() {
                return true;
            }
        })
    }
    fn kicker(&self) -> trapbox_trap::Kicker {
        self.cpu.ctx.kick.kicker()
    }
    fn xsave(&self) -> Option<Vec<u8>> {
        let x = self.cpu.sr().machine.fpu().ok()?;
        Some(trapbox_vm::arch::xsave::xsave_bytes(&x))
    }
    fn segment_bases(&self) -> (u64, u64) {
        let m = &self.cpu.sr().machine;
        (m.fs_base().unwrap_or(0), m.gs_base().unwrap_or(0))
    }
    fn set_xsave(&mut self, image: &[u8]) -> bool {
        let machine = &mut self.cpu.s().machine;
        let Ok(mut x) = machine.fpu() else { return false };
        let mut all = trapbox_vm::arch::xsave::xsave_bytes(&x);
        if image.len() > all.len() {
            return false;
        }
        all[..image.len()].copy_from_slice(image);
        trapbox_vm::arch::xsave::set_xsave_bytes(&mut x, &all);
        machine.set_fpu(&x).is_ok()
    }
    fn raise_signal(&mut self, sig: i32, siginfo: &[u8; 128]) -> Action {
        let why = self.why;
        let Shared { machine, process, .. } = self.cpu.s();
        process.force_signal(sig, *siginfo);
        match process.deliver_signals(machine, &mut self.regs, why) {
            Some(Action::Resume) => {
                self.dirty = true;
                self.replaced = true;
                Action::Resume
            }
            Some(a) => a,
            None => Action::Kill { signal: sig, fault: None },
        }
    }
}

/// Whether the run is ending (the guest exits, trapbox got a signal, the time limit passed): a
/// thread waiting for the guest gives up so that the first thread's loop, which may be this
/// one, can act.
fn run_ending(core: &super::Core) -> bool {
    let deadline = *core.deadline.lock().unwrap_or_else(|e| e.into_inner());
    core.group.ending()
        || super::host::HOST_SIGNAL.load(std::sync::atomic::Ordering::SeqCst) != 0
        || deadline.is_some_and(|d| std::time::Instant::now() >= d)
}
