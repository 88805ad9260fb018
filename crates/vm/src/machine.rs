//! The machine a guest runs on, chosen once at start-up: a KVM virtual machine, or trapbox's
//! own process ([`inproc`]).

use kvm_bindings::{kvm_regs, kvm_xsave};

use trapbox_abi::arch::cpustate::CpuState;
use trapbox_abi::arch::cpuview::CpuView;
use trapbox_inproc as inproc;
use trapbox_kvm::vcpu::KvmVcpu;
use trapbox_kvm::{ExceptionFrame, KvmMachine, KvmRunner, MemoryMirror, NoMirror, ResumeFrom};
use trapbox_trap::{Engine, Exit, TrapPath};

use super::VmError;

/// The engine to use when the user leaves the choice to trapbox (`--backend auto`):
/// hardware KVM where there is one; the in-process engine where `/dev/kvm` is missing or
/// cannot be opened, or is PVM (whose exits cost more than a ptrace stop) — if the kernel
/// has Syscall User Dispatch, else KVM all the same.
pub fn auto_engine() -> Engine {
    let path = TrapPath::detect();
    // Opened and answering KVM's API version: a /dev/kvm that is another device (bound over
    // in a container) or refuses this user is no KVM.
    let kvm_usable = kvm_ioctls::Kvm::new().is_ok_and(|k| k.get_api_version() == 12);
    if kvm_usable && path == TrapPath::Hardware || inproc::available().is_err() {
        Engine::Kvm(path)
    } else {
        Engine::InProcess
    }
}

/// The guest's machine.
pub enum Machine {
    /// See [`Engine::Kvm`].
    Kvm(Box<KvmMachine>),
    /// See [`Engine::InProcess`].
    InProc(Box<inproc::Machine>),
}

/// One guest thread's CPU, run by its host thread outside the machine.
pub enum Vcpu {
    /// A KVM vCPU.
    Kvm(KvmVcpu),
    /// An in-process CPU.
    InProc(Box<inproc::Cpu>),
}

/// Runs a thread's [`Vcpu`] to its next exit.
#[derive(Clone, Copy, Debug)]
pub enum Runner {
    /// KVM's exit decoding.
    Kvm(KvmRunner),
    /// The in-process engine's.
    InProc,
}

impl Runner {
    /// Runs `vcpu` to its next exit.
    pub fn run(&self, vcpu: &mut Vcpu) -> Result<Exit, VmError> {
        match (self, vcpu) {
            (Runner::Kvm(r), Vcpu::Kvm(v)) => r.run(v).map_err(VmError::from),
            (Runner::InProc, Vcpu::InProc(c)) => c.run().map_err(VmError::from),
            _ => unreachable!("a machine's CPUs are all of its engine"),
        }
    }
}

impl Vcpu {
    /// The KVM vCPU's descriptor, which trapbox owns (the in-process CPU has none).
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Vcpu::Kvm(v) => Some(std::os::fd::AsRawFd::as_raw_fd(v.fd())),
            Vcpu::InProc(_) => None,
        }
    }

    /// Makes kicks on the calling host thread reach this CPU.
    pub fn claim_kicks(&mut self) {
        match self {
            Vcpu::Kvm(v) => v.claim_kicks(),
            Vcpu::InProc(c) => c.claim_kicks(),
        }
    }

    /// The state a copy of this CPU needs.
    pub fn save_state(&mut self) -> Result<CpuState, VmError> {
        match self {
            Vcpu::Kvm(v) => v.save_state().map_err(VmError::from),
            Vcpu::InProc(c) => Ok(c.save_state()),
        }
    }

    /// Loads `state`.
    pub fn restore_state(&mut self, state: &CpuState) -> Result<(), VmError> {
        match self {
            Vcpu::Kvm(v) => v.restore_state(state).map_err(VmError::from),
            Vcpu::InProc(c) => {
                c.restore_state(state);
                Ok(())
            }
        }
    }
}

/// Calls `$e` with the engine's machine as `$m`, for methods both have alike.
macro_rules! either {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            Machine::Kvm($m) => $e,
            Machine::InProc($m) => $e,
        }
    };
}

impl Machine {
    /// Makes the machine for `engine`.
    pub fn new(engine: Engine, fd_base: i32) -> Result<Machine, VmError> {
        Ok(match engine {
            Engine::Kvm(path) => Machine::Kvm(Box::new(KvmMachine::new(path, fd_base)?)),
            Engine::InProcess => Machine::InProc(Box::new(inproc::Machine::new()?)),
        })
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        match self {
            Machine::Kvm(m) => Engine::Kvm(m.trap_path()),
            Machine::InProc(_) => Engine::InProcess,
        }
    }

    /// The trap path in use.
    pub fn trap_path(&self) -> TrapPath {
        match self {
            Machine::Kvm(m) => m.trap_path(),
            Machine::InProc(_) => TrapPath::InProcess,
        }
    }

    /// What the process layer keeps in step with its address-space map.
    pub fn mem(&mut self) -> &mut dyn MemoryMirror {
        match self {
            Machine::Kvm(m) => &mut m.mem,
            // The in-process engine has no copy of the address space: nothing to mirror (a
            // zero-sized value, so leaking it allocates nothing).
            Machine::InProc(_) => Box::leak(Box::new(NoMirror)),
        }
    }

    /// In a forked copy of trapbox: the machine for the child (KVM objects belong to the
    /// process that made them; SUD is not inherited). Returns descriptors trapbox now owns.
    pub fn rebuild_after_fork(&mut self, state: CpuState) -> Result<Vec<std::os::fd::RawFd>, VmError> {
        match self {
            Machine::Kvm(m) => m.rebuild_after_fork(state).map_err(VmError::from),
            Machine::InProc(m) => {
                m.rebuild_after_fork();
                Ok(Vec::new())
            }
        }
    }

    /// Whether the current CPU stopped at an instruction of the guest's own (see
    /// [`KvmMachine::at_user_instruction`]); an in-process guest is only ever stopped there.
    pub fn at_user_instruction(&self) -> Result<bool, VmError> {
        match self {
            Machine::Kvm(m) => m.at_user_instruction().map_err(VmError::from),
            Machine::InProc(_) => Ok(true),
        }
    }

    /// The current CPU's state, for another CPU to start from.
    pub fn save_cpu_state(&mut self) -> Result<CpuState, VmError> {
        match self {
            Machine::Kvm(m) => m.save_cpu_state().map_err(VmError::from),
            Machine::InProc(m) => Ok(m.cpu_mut().save_state()),
        }
    }

    /// Gives the guest a freshly started program's FPU state.
    pub fn reset_fpu(&mut self) -> Result<(), VmError> {
        match self {
            Machine::Kvm(m) => m.reset_fpu().map_err(VmError::from),
            Machine::InProc(m) => {
                m.cpu_mut().reset_fpu();
                Ok(())
            }
        }
    }

    /// The guest's x87/SSE/AVX state (XSAVE standard form).
    pub fn fpu(&self) -> Result<kvm_xsave, VmError> {
        match self {
            Machine::Kvm(m) => m.fpu().map_err(VmError::from),
            Machine::InProc(m) => Ok(m.cpu().xsave()),
        }
    }

    /// Replaces the guest's x87/SSE/AVX state.
    pub fn set_fpu(&mut self, x: &kvm_xsave) -> Result<(), VmError> {
        match self {
            Machine::Kvm(m) => m.set_fpu(x).map_err(VmError::from),
            Machine::InProc(m) => m.cpu_mut().set_xsave(x).map_err(VmError::from),
        }
    }

    /// Resumes the guest with every user register as given (RCX and R11 included).
    pub fn resume_user(&mut self, from: ResumeFrom, r: &kvm_regs) {
        match self {
            Machine::Kvm(m) => m.resume_user(from, r),
            Machine::InProc(m) => *m.cpu_mut().regs_mut() = kvm_regs { rflags: (r.rflags & 0x3c_7fd7) | 0x2, ..*r },
        }
    }

    /// Takes the current CPU out: its thread runs it without holding the machine.
    pub fn leave(&mut self) -> Option<Vcpu> {
        match self {
            Machine::Kvm(m) => m.leave().map(Vcpu::Kvm),
            Machine::InProc(m) => m.leave().map(Vcpu::InProc),
        }
    }

    /// Makes `v` the current CPU.
    pub fn enter(&mut self, v: Vcpu) {
        match (self, v) {
            (Machine::Kvm(m), Vcpu::Kvm(v)) => m.enter(v),
            (Machine::InProc(m), Vcpu::InProc(c)) => m.enter(c),
            _ => unreachable!("a machine's CPUs are all of its engine"),
        }
    }

    /// A CPU for a new guest thread, starting from `state`.
    pub fn new_vcpu(&mut self, id: u64, state: &CpuState) -> Result<Vcpu, VmError> {
        match self {
            Machine::Kvm(m) => m.new_vcpu(id, state).map(Vcpu::Kvm).map_err(VmError::from),
            Machine::InProc(m) => m.new_cpu(state).map(Vcpu::InProc).map_err(VmError::from),
        }
    }

    /// What a thread needs to run its CPU without holding the machine.
    pub fn runner(&self) -> Runner {
        match self {
            Machine::Kvm(m) => Runner::Kvm(m.runner()),
            Machine::InProc(_) => Runner::InProc,
        }
    }

    /// Makes pending page-table changes visible before any CPU runs again.
    pub fn prepare_run(&mut self) -> Result<(), VmError> {
        match self {
            Machine::Kvm(m) => m.prepare_run().map_err(VmError::from),
            Machine::InProc(_) => Ok(()),
        }
    }

    /// From now on rights removed reach every CPU before the call that removed them returns.
    pub fn flush_eagerly(&mut self) {
        if let Machine::Kvm(m) = self {
            m.flush_eagerly();
        }
    }

    /// Counts exits taken by CPUs that ran outside the machine.
    pub fn add_exits(&mut self, n: u64) {
        either!(self, m => m.add_exits(n))
    }

    /// Exits (traps of the guest) so far.
    pub fn exits(&self) -> u64 {
        either!(self, m => m.exits())
    }

    /// What `cpuid(leaf, subleaf)` gives guest user code.
    pub fn cpuid(&self, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        match self {
            Machine::Kvm(m) => m.cpuid(leaf, subleaf),
            Machine::InProc(m) => Some(
                m.cpu_view()
                    .cpuid(leaf, subleaf)
                    .unwrap_or_else(|| trapbox_abi::arch::cpuview::host_cpuid(leaf, subleaf)),
            ),
        }
    }

    /// The CPU as guest user code sees it.
    pub fn cpu_view(&self) -> &CpuView {
        either!(self, m => m.cpu_view())
    }

    /// The host's vDSO, shared with the guest (see [`KvmMachine::share_vdso`]).
    pub fn share_vdso(&mut self) -> Result<Option<u64>, VmError> {
        match self {
            Machine::Kvm(m) => m.share_vdso().map_err(VmError::from),
            Machine::InProc(m) => Ok(m.share_vdso()),
        }
    }

    /// AT_HWCAP for the guest: CPUID leaf 1 EDX as the guest sees it.
    pub fn hwcap(&self) -> u64 {
        self.cpu_view().cpuid(1, 0).map_or(0, |r| u64::from(r[3]))
    }

    /// Whether the guest runs with XSAVE state enabled.
    pub fn osxsave(&self) -> bool {
        match self {
            Machine::Kvm(m) => m.osxsave(),
            Machine::InProc(m) => m.cpu_view().osxsave(),
        }
    }

    /// Runs the current CPU to its next exit.
    pub fn run(&mut self) -> Result<Exit, VmError> {
        match self {
            Machine::Kvm(m) => m.run().map_err(VmError::from),
            Machine::InProc(m) => m.run().map_err(VmError::from),
        }
    }

    /// A syscall site of the current CPU that just became hot, for rewriting (the
    /// in-process engine's; see [`inproc::rewrite`]).
    pub fn take_hot_site(&mut self) -> Option<u64> {
        match self {
            Machine::Kvm(_) => None,
            Machine::InProc(m) => m.cpu_mut().take_hot_site(),
        }
    }

    /// General registers as of the last exit.
    pub fn regs(&mut self) -> &kvm_regs {
        match self {
            Machine::Kvm(m) => m.regs(),
            Machine::InProc(m) => m.cpu().regs(),
        }
    }

    /// General registers, loaded at the next run.
    pub fn regs_mut(&mut self) -> &mut kvm_regs {
        match self {
            Machine::Kvm(m) => m.regs_mut(),
            Machine::InProc(m) => m.cpu_mut().regs_mut(),
        }
    }

    /// Sets where a program starts.
    pub fn set_entry(&mut self, rip: u64, rsp: u64) {
        match self {
            Machine::Kvm(m) => m.set_entry(rip, rsp),
            Machine::InProc(m) => *m.cpu_mut().regs_mut() = kvm_regs { rip, rsp, rflags: 0x202, ..Default::default() },
        }
    }

    /// Completes a syscall exit: RAX = `ret`, resuming at `rip` with `rflags`, RCX/R11 as
    /// `syscall` left them.
    pub fn finish_syscall(&mut self, ret: u64, rip: u64, rflags: u64) {
        match self {
            Machine::Kvm(m) => m.finish_syscall(ret, rip, rflags),
            Machine::InProc(m) => {
                let r = m.cpu_mut().regs_mut();
                r.rax = ret;
                r.rcx = rip;
                r.r11 = rflags;
                r.rip = rip;
                r.rflags = (rflags & 0x3c_7fd7) | 0x2;
            }
        }
    }

    /// The frame of the exception being handled.
    pub fn exception_frame(&mut self, vector: u8) -> ExceptionFrame {
        match self {
            Machine::Kvm(m) => m.exception_frame(vector),
            Machine::InProc(m) => {
                let (error_code, _, _) = m.cpu().fault();
                let r = m.cpu().regs();
                ExceptionFrame {
                    error_code,
                    rip: r.rip,
                    cs: u64::from(trapbox_abi::arch::USER_CS),
                    rflags: r.rflags,
                    rsp: r.rsp,
                }
            }
        }
    }

    /// Rewrites where the guest resumes after the exception being handled.
    pub fn set_exception_return(&mut self, vector: u8, rip: u64, rsp: u64, rflags: u64) {
        match self {
            Machine::Kvm(m) => m.set_exception_return(vector, rip, rsp, rflags),
            Machine::InProc(m) => {
                let r = m.cpu_mut().regs_mut();
                r.rip = rip;
                r.rsp = rsp;
                r.rflags = (rflags & 0x3c_7fd7) | 0x2;
            }
        }
    }

    /// The faulting address of the last page fault.
    pub fn cr2(&self) -> Result<u64, VmError> {
        match self {
            Machine::Kvm(m) => m.cr2().map_err(VmError::from),
            Machine::InProc(m) => Ok(m.cpu().fault().2),
        }
    }

    /// The guest's FS base.
    pub fn fs_base(&self) -> Result<u64, VmError> {
        match self {
            Machine::Kvm(m) => m.fs_base().map_err(VmError::from),
            Machine::InProc(m) => Ok(m.cpu().fs_base()),
        }
    }

    /// Sets the guest's FS base.
    pub fn set_fs_base(&mut self, base: u64) -> Result<(), VmError> {
        match self {
            Machine::Kvm(m) => m.set_fs_base(base).map_err(VmError::from),
            Machine::InProc(m) => {
                m.cpu_mut().set_fs_base(base);
                Ok(())
            }
        }
    }

    /// The guest's GS base.
    pub fn gs_base(&self) -> Result<u64, VmError> {
        match self {
            Machine::Kvm(m) => m.gs_base().map_err(VmError::from),
            Machine::InProc(m) => Ok(m.cpu().gs_base()),
        }
    }

    /// Sets the guest's GS base.
    pub fn set_gs_base(&mut self, base: u64) -> Result<(), VmError> {
        match self {
            Machine::Kvm(m) => m.set_gs_base(base).map_err(VmError::from),
            Machine::InProc(m) => {
                m.cpu_mut().set_gs_base(base);
                Ok(())
            }
        }
    }

    /// Sets the guest's FS and GS bases (on KVM in one call).
    pub fn set_bases(&mut self, fs: u64, gs: u64) -> Result<(), VmError> {
        match self {
            Machine::Kvm(m) => m.set_bases(fs, gs).map_err(VmError::from),
            Machine::InProc(m) => {
                m.cpu_mut().set_fs_base(fs);
                m.cpu_mut().set_gs_base(gs);
                Ok(())
            }
        }
    }
}
