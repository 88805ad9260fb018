//! The in-process engine: guest code runs natively in trapbox's own process, on the host
//! thread of its guest thread, at its own addresses; Syscall User Dispatch (Linux ≥ 5.11)
//! turns each of its syscalls into a SIGSYS, and its faults arrive as the kernel's signals.
//! Each becomes the same [`Exit`] the KVM engine decodes, so the run loop above does not know
//! which engine ran the guest.
//!
//! **Not a sandbox.** The guest shares trapbox's address space: its mappings are checked and
//! kept in the guest arena like the KVM engine's, but a wild store or a jump into trapbox's
//! code is not stopped by anything. It is for tracing and recording programs one trusts.
//!
//! How a guest thread runs ([`Cpu::run`], crossings in `entry.rs`): its registers, FS/GS bases
//! and XSAVE state live in the [`Cpu`]; entering loads them itself (or, where the CPU lacks
//! user FSGSBASE or XSAVE, or RFLAGS has TF or AC, builds an `rt_sigreturn` frame and returns
//! into the guest through the kernel); leaving is either the fast exit from a rewritten
//! syscall site ([`rewrite`]), which leaves the state in the thread's block, or a signal caught
//! on trapbox's alternate stack, whose frame holds the guest's registers and XSAVE state as the
//! kernel saved them. SUD, the alternate stack and FS are per host thread, and SUD is not inherited
//! by clone or fork, so a [`Cpu`] arms its thread on its first run and a forked child
//! re-arms ([`Machine::rebuild_after_fork`]).
//!
//! The crate knows nothing of KVM: it sits on `trapbox-abi` (the x86 structures, signal
//! frames, the CPU view), `trapbox-trap` (exits, registers) and `trapbox-host` (kicks, writes
//! to its own memory); `trapbox-vm` puts it beside the KVM engine.

mod entry;
pub mod rewrite;

use kvm_bindings::{kvm_regs, kvm_xsave};

use trapbox_abi::arch::cpustate::CpuState;
use trapbox_abi::arch::cpuview::CpuView;
use trapbox_abi::arch::regs::{kvm_regs_of, user_regs};
use trapbox_abi::arch::sigframe::{self, FpuImage, FrameInput};
use trapbox_abi::arch::xsave::{set_xsave_bytes, xsave_bytes};
use trapbox_trap::Exit;

pub use entry::{active, handler_of, wrap};

thread_local! {
    /// The region of the CPU this host thread is armed for (its alternate stack, its SUD
    /// selector), if any.
    static ARMED: std::cell::Cell<*mut u8> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

/// Bytes of a thread's region: the [`entry::Block`], the entry frame, and the alternate
/// stack the kernel delivers on (from the top down).
const REGION: usize = 256 * 1024;
/// Where the entry frame's free space ends (the frame is built below it).
const ENTRY_TOP: u64 = 32 * 1024;

/// `PR_SET_SYSCALL_USER_DISPATCH` and its modes.
const PR_SET_SYSCALL_USER_DISPATCH: i32 = 59;
const PR_SYS_DISPATCH_OFF: u64 = 0;
const PR_SYS_DISPATCH_ON: u64 = 1;
/// Bits (signal − 1) of the signals that bring guest code out with a trap: SIGSYS and the
/// fault signals.
const TRAP_SIGNALS: u64 = 1 << (libc::SIGSYS - 1)
    | 1 << (libc::SIGSEGV - 1)
    | 1 << (libc::SIGBUS - 1)
    | 1 << (libc::SIGILL - 1)
    | 1 << (libc::SIGFPE - 1)
    | 1 << (libc::SIGTRAP - 1);
/// RFLAGS' trap and alignment-check flags: with either set, the resume's own instructions
/// after `popfq` would trap, so the entry goes through a signal frame.
const TF: u64 = 1 << 8;
const AC: u64 = 1 << 18;
/// si_code of a SIGSYS from SUD.
const SYS_USER_DISPATCH: i32 = 2;
/// si_arch of a 64-bit syscall.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Errors of the in-process engine.
#[derive(Debug, thiserror::Error)]
pub enum InProcError {
    /// The engine cannot run on this host.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// A thread could not be armed for guest code.
    #[error("cannot prepare a thread for in-process guest code ({0}): {1}")]
    Arm(&'static str, std::io::Error),
    /// A CPU's region (its block, entry frame and alternate stack) could not be mapped.
    #[error("cannot map an in-process CPU's region: {0}")]
    Region(std::io::Error),
}

/// Why the in-process engine cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The kernel lacks Syscall User Dispatch.
    #[error("the kernel has no Syscall User Dispatch (Linux 5.11 or later with CONFIG_GENERIC_ENTRY): {0}")]
    NoSud(std::io::Error),
}

/// Whether this kernel lets a thread dispatch its syscalls to a signal handler.
pub fn available() -> Result<(), Unavailable> {
    // SAFETY: turning SUD off on the calling thread (where it is not on) changes nothing; the
    // call only tells whether the kernel knows the option.
    let r = unsafe { libc::prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(Unavailable::NoSud(std::io::Error::last_os_error()))
    }
}

/// The in-process engine's machine: the CPU view is the host's, there is no second copy of
/// the page tables, and the thread that holds it has its [`Cpu`] entered.
pub struct Machine {
    view: CpuView,
    /// Boxed: it moves in and out at every trap (twice around a host call), as a pointer.
    vcpu: Option<Box<Cpu>>,
    exits: u64,
}

impl Machine {
    /// Turns the engine on in this process and makes the first thread's CPU (claimed by the
    /// calling thread).
    pub fn new() -> Result<Machine, InProcError> {
        available()?;
        entry::activate();
        let view = CpuView::host();
        let mut cpu = Cpu::new(&view)?;
        cpu.claim_kicks();
        Ok(Machine { view, vcpu: Some(Box::new(cpu)), exits: 0 })
    }

    /// The CPU view: the host's own.
    pub fn cpu_view(&self) -> &CpuView {
        &self.view
    }

    /// The current thread's CPU.
    pub fn cpu(&self) -> &Cpu {
        self.vcpu.as_ref().expect("a thread's CPU is entered while the machine is in use")
    }

    /// See [`Machine::cpu`].
    pub fn cpu_mut(&mut self) -> &mut Cpu {
        self.vcpu.as_mut().expect("a thread's CPU is entered while the machine is in use")
    }

    /// Takes the current CPU out: its thread runs it without holding the machine.
    pub fn leave(&mut self) -> Option<Box<Cpu>> {
        self.vcpu.take()
    }

    /// Makes `c` the current CPU.
    pub fn enter(&mut self, c: Box<Cpu>) {
        self.vcpu = Some(c);
    }

    /// A CPU for a new guest thread, starting from `state` (armed on its thread's first run).
    pub fn new_cpu(&self, state: &CpuState) -> Result<Box<Cpu>, InProcError> {
        let mut c = Box::new(Cpu::new(&self.view)?);
        c.restore_state(state);
        Ok(c)
    }

    /// In a forked child: the forking thread's CPU, whose SUD the fork did not carry over,
    /// arms again on its next run.
    pub fn rebuild_after_fork(&mut self) {
        if let Some(c) = self.vcpu.as_mut() {
            c.armed = false;
        }
    }

    /// Runs the current CPU to its next exit.
    pub fn run(&mut self) -> Result<Exit, InProcError> {
        self.exits += 1;
        self.cpu_mut().run()
    }

    /// Exits (traps) so far.
    pub fn exits(&self) -> u64 {
        self.exits
    }

    /// Counts traps of CPUs that ran outside the machine.
    pub fn add_exits(&mut self, n: u64) {
        self.exits += n;
    }

    /// The host's vDSO base, which the guest shares as it is (it is mapped in this process).
    pub fn share_vdso(&self) -> Option<u64> {
        // SAFETY: getauxval has no preconditions.
        let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
        (base != 0).then_some(base)
    }
}

/// One guest thread's CPU: its registers and state, and the host thread region (block,
/// entry frame, alternate stack) it runs with.
pub struct Cpu {
    region: *mut u8,
    regs: kvm_regs,
    /// The guest's x87/SSE/AVX state as a signal frame holds it (XSAVE standard form of the
    /// frame's components, or the FXSAVE area): what the kernel saved at the last exit and
    /// loads at the next entry, kept in that form so a trap copies it once each way.
    fpu: FpuImage,
    gs_base: u64,
    /// SUD and the alternate stack are armed on the thread whose [`ARMED`] names this CPU's
    /// region (false: on none yet, or the fork that made this process did not carry them).
    armed: bool,
    /// The alternate stack the thread had before it was armed (the Rust runtime's), put
    /// back when the CPU is dropped on it.
    previous_altstack: Option<libc::stack_t>,
    /// The last exit's fault details: error code, trap number, CR2.
    fault: (u64, u64, u64),
    /// The crossings without a signal can run here (user FSGSBASE and XSAVE).
    fast: bool,
    /// trapbox holds GS on this thread (the block's address, for rewritten sites); the guest's
    /// own GS base is `gs_base`, zero.
    owns_gs: bool,
    /// The next entry goes through a signal frame (the last fast one faulted in its tail).
    slow_next: bool,
    /// The current XSAVE image is the one in the block's area (the fast exit saved it there,
    /// or the resume loaded it from there), not `fpu`: it is copied only when something else
    /// needs it, not at every crossing.
    fpu_in_area: bool,
    /// A syscall site that just became hot, for the process layer to rewrite.
    hot: Option<u64>,
}

// SAFETY: the region is owned by the Cpu alone; a Cpu moves to the host thread that runs it
// and is armed there before use.
unsafe impl Send for Cpu {}

impl Cpu {
    fn new(view: &CpuView) -> Result<Cpu, InProcError> {
        // SAFETY: a fresh private anonymous mapping that only this Cpu uses.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(InProcError::Region(std::io::Error::last_os_error()));
        }
        let (fpu_len, fpu_features) =
            if view.osxsave() { (view.frame_xsave_size() as usize, view.frame_features()) } else { (512, 0) };
        if fpu_len > std::mem::size_of::<kvm_xsave>() {
            return Err(InProcError::Arm(
                "a signal frame's XSAVE image is larger than 4 KiB",
                std::io::Error::from_raw_os_error(libc::E2BIG),
            ));
        }
        let mut c = Cpu {
            region: p.cast(),
            regs: kvm_regs { rflags: 0x202, ..Default::default() },
            fpu: FpuImage { bytes: vec![0; fpu_len], xfeatures: fpu_features },
            gs_base: 0,
            armed: false,
            previous_altstack: None,
            fault: (0, 0, 0),
            fast: view.osxsave() && entry::fsgsbase(),
            owns_gs: false,
            slow_next: false,
            fpu_in_area: false,
            hot: None,
        };
        c.reset_fpu();
        let b = c.block();
        b.magic = entry::MAGIC;
        b.selector = entry::ALLOW;
        // PKRU stays trapbox's across the crossings without a signal, as it is across a
        // signal handler's.
        b.xfeatures = fpu_features & !(1 << 9);
        Ok(c)
    }

    fn block(&mut self) -> &mut entry::Block {
        // SAFETY: the region starts with the block, is page aligned, and lives as long as self.
        unsafe { &mut *self.region.cast::<entry::Block>() }
    }

    fn block_ref(&self) -> &entry::Block {
        // SAFETY: as in `block`.
        unsafe { &*self.region.cast::<entry::Block>() }
    }

    /// Makes kicks on the calling host thread reach this CPU.
    pub fn claim_kicks(&mut self) {
        let p: *mut u8 = &mut self.block().kick;
        trapbox_host::kick::claim(p);
    }

    /// Arms the calling host thread: the alternate stack, trapbox's FS base, SUD.
    fn arm(&mut self) -> Result<(), InProcError> {
        let region = self.region;
        if self.armed {
            // SUD and the alternate stack belong to the thread that armed them, which cannot be
            // disarmed from here.
            return Err(InProcError::Arm(
                "the CPU is armed on another thread",
                std::io::Error::from_raw_os_error(libc::EBUSY),
            ));
        }
        let st = libc::stack_t { ss_sp: region.cast(), ss_flags: 0, ss_size: REGION };
        let mut previous = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: 0, ss_size: 0 };
        // SAFETY: the region is REGION bytes of this Cpu's memory, alive while it is armed;
        // the previous setting is written into a local.
        if unsafe { libc::sigaltstack(&st, &mut previous) } != 0 {
            return Err(InProcError::Arm("sigaltstack", std::io::Error::last_os_error()));
        }
        self.previous_altstack = Some(previous);
        let mut fs = 0u64;
        // SAFETY: ARCH_GET_FS writes the FS base into `fs`.
        unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1003, &mut fs as *mut u64) };
        self.block().trapbox_fs = fs;
        let (at, len) = entry::allowed_range();
        let selector: *mut u8 = &mut self.block().selector;
        // SAFETY: the selector byte lives in the region for as long as SUD is on for this
        // thread (the Cpu turns it off when dropped on it).
        let r = unsafe { libc::prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, at, len, selector as u64) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            self.restore_altstack();
            return Err(InProcError::Arm("PR_SET_SYSCALL_USER_DISPATCH", e));
        }
        self.owns_gs = self.fast && self.gs_base == 0 && rewrite::enabled();
        if self.owns_gs {
            // SAFETY: ARCH_SET_GS changes only the GS base of this thread; the block lives as
            // long as the thread is armed with it.
            unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1001, region as u64) };
        } else {
            self.load_gs();
        }
        ARMED.with(|a| a.set(region));
        self.armed = true;
        Ok(())
    }

    /// Puts back the thread's alternate stack from before [`Cpu::arm`].
    fn restore_altstack(&mut self) {
        if let Some(p) = self.previous_altstack.take() {
            let p = if p.ss_flags & libc::SS_DISABLE != 0 {
                libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 }
            } else {
                libc::stack_t { ss_flags: 0, ..p }
            };
            // SAFETY: the setting this thread had, whose memory its owner (the Rust runtime)
            // keeps until the thread ends.
            unsafe { libc::sigaltstack(&p, std::ptr::null_mut()) };
        }
    }

    fn load_gs(&self) {
        // trapbox's own code never uses GS: the guest's stays loaded.
        // SAFETY: ARCH_SET_GS changes only the GS base of this thread.
        unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1001, self.gs_base) };
    }

    fn on_this_thread(&self) -> bool {
        self.armed && ARMED.with(|a| a.get()) == self.region
    }

    /// Runs the guest until the next trap, signal or kick.
    ///
    /// The calling thread's signal mask never blocks a signal that brings guest code out
    /// (trapbox's own mask mirrors the guest's without them: `signals::host_owned` in the
    /// process layer); the crossings without a signal run the guest with that mask as it is.
    pub fn run(&mut self) -> Result<Exit, InProcError> {
        if !self.on_this_thread() {
            self.arm()?;
        }
        if self.fast && !self.slow_next && self.regs.rflags & (TF | AC) == 0 {
            self.load_block();
            let block: *mut entry::Block = self.block();
            // SAFETY: the block is this thread's, armed above, and holds the guest's registers
            // and an XSAVE image from a frame or a checked set_xsave; the CPU has FSGSBASE
            // and XSAVE (`fast`); RFLAGS has neither TF nor AC; the thread's mask leaves the
            // trap signals and trapbox's own unblocked (this function's invariant).
            let out = unsafe { entry::resume(block) };
            return Ok(match out {
                entry::Out::Syscall => self.take_fast_exit(),
                entry::Out::Kicked => {
                    self.block().kick = 0;
                    Exit::Interrupted
                }
                entry::Out::Signal => {
                    let exit = self.take_exit();
                    self.block().kick = 0;
                    // The stub came back with every signal blocked (its handler mask); the
                    // thread's own mask is the one the frame saved.
                    set_mask(&sigframe::saved_mask(&self.frame_ucontext()), std::ptr::null_mut());
                    exit
                }
            });
        }
        self.slow_next = false;
        // Every signal blocked, glibc's own 32 and 33 included (which its sigfillset leaves
        // out): the kernel's call, not libc's.
        let mut old = 0u64;
        set_mask(&!0u64, &mut old);
        if std::mem::replace(&mut self.block().kick, 0) != 0 {
            set_mask(&old, std::ptr::null_mut());
            return Ok(Exit::Interrupted);
        }
        // The signals that bring guest code out are never blocked while it runs (a blocked
        // SIGSYS or fault signal would make the kernel kill the process).
        let mask = old & !TRAP_SIGNALS;
        let Some(frame) = self.entry_frame(mask) else {
            set_mask(&old, std::ptr::null_mut());
            return Ok(Exit::Exception(13));
        };
        let block: *mut entry::Block = self.block();
        // SAFETY: every signal is blocked; the block is this thread's, armed above; the frame
        // was just written below ENTRY_TOP in the region and names the region as the
        // alternate stack; its mask is the thread's own (which leaves trapbox's stub-handled
        // signals unblocked).
        let out = unsafe { entry::enter(block, frame) };
        // A guest entered through a frame may still reach a rewritten site and leave through
        // the fast exit; never through the resume's kicked path.
        let exit = match out {
            entry::Out::Syscall => self.take_fast_exit(),
            entry::Out::Signal | entry::Out::Kicked => self.take_exit(),
        };
        self.block().kick = 0;
        set_mask(&old, std::ptr::null_mut());
        Ok(exit)
    }

    /// Writes what the resume loads into the block: registers and XSAVE image.
    fn load_block(&mut self) {
        let regs = self.regs;
        let b = self.block();
        b.gprs = regs;
        if !std::mem::replace(&mut self.fpu_in_area, true) {
            // SAFETY: the XSAVE area lies in the region past the block, 4 KiB long (the image
            // is at most that: Cpu::new), and nothing else uses it while the guest is out.
            unsafe {
                let len = self.fpu.bytes.len();
                std::ptr::copy_nonoverlapping(self.fpu.bytes.as_ptr(), self.region.add(entry::XSAVE_AREA), len);
            }
        }
    }

    /// The ucontext of the frame the stub left on the alternate stack.
    fn frame_ucontext(&self) -> [u8; sigframe::UCONTEXT_SIZE_PUB] {
        let mut uc = [0u8; sigframe::UCONTEXT_SIZE_PUB];
        // SAFETY: the kernel wrote the ucontext of the frame it delivered on the alternate
        // stack; nothing has been delivered since (every signal is blocked).
        unsafe { std::ptr::copy_nonoverlapping(self.block_ref().uc as *const u8, uc.as_mut_ptr(), uc.len()) };
        uc
    }

    /// A syscall at a rewritten site: the fast exit left the registers, FS base and XSAVE
    /// image in the block, as `syscall` leaves them (RCX the address after it, R11 RFLAGS).
    fn take_fast_exit(&mut self) -> Exit {
        self.regs = self.block().gprs;
        self.fpu_in_area = true;
        self.fault = (0, 0, 0);
        Exit::Syscall
    }

    /// The XSAVE image's bytes, wherever they are current.
    fn fpu_bytes(&self) -> &[u8] {
        if self.fpu_in_area {
            // SAFETY: the area holds an image of `fpu`'s length (load_block, the fast exit's
            // XSAVE), in the region, which lives as long as self.
            unsafe { std::slice::from_raw_parts(self.region.add(entry::XSAVE_AREA), self.fpu.bytes.len()) }
        } else {
            &self.fpu.bytes
        }
    }

    /// Makes `fpu` the current XSAVE image.
    fn sync_fpu(&mut self) {
        if std::mem::take(&mut self.fpu_in_area) {
            let len = self.fpu.bytes.len();
            // SAFETY: the area holds the current image, `len` bytes (see fpu_bytes), in the
            // region, apart from `fpu`'s own buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(self.region.add(entry::XSAVE_AREA), self.fpu.bytes.as_mut_ptr(), len)
            };
        }
    }

    /// Writes the entry frame into the region; the address of its ucontext.
    fn entry_frame(&mut self, mask: u64) -> Option<u64> {
        self.sync_fpu();
        let regs = user_regs(&self.regs);
        let mut altstack = [0u8; 24];
        altstack[0..8].copy_from_slice(&(self.region as u64).to_le_bytes());
        altstack[16..24].copy_from_slice(&(REGION as u64).to_le_bytes());
        let info = [0u8; sigframe::SIGINFO_SIZE];
        let input = FrameInput { info: &info, saved_mask: mask, altstack, fault: None, fpu: &self.fpu, restorer: 0 };
        let top = self.region as u64 + ENTRY_TOP;
        let frame = sigframe::build(top, &regs, &input)?;
        let floor = self.region as u64 + std::mem::size_of::<entry::Block>() as u64;
        if frame.addr < floor {
            return None;
        }
        // SAFETY: [frame.addr, top) lies in the region above the block (checked), which
        // nothing else uses while every signal is blocked.
        unsafe { std::ptr::copy_nonoverlapping(frame.bytes.as_ptr(), frame.addr as *mut u8, frame.bytes.len()) };
        // rt_sigreturn finds the ucontext at RSP (the handler's `ret` popped the return
        // address).
        Some(frame.sp + 8)
    }

    /// Reads what brought the guest out from the kernel's frame on the alternate stack.
    fn take_exit(&mut self) -> Exit {
        let b = self.block();
        let (sig, info_at, uc_at) = (b.sig as i32, b.info, b.uc);
        let uc = self.frame_ucontext();
        let mut info = [0u8; sigframe::SIGINFO_SIZE];
        // SAFETY: the kernel wrote the siginfo of the frame it delivered on the alternate
        // stack; nothing has been delivered since (every signal is blocked).
        unsafe { std::ptr::copy_nonoverlapping(info_at as *const u8, info.as_mut_ptr(), info.len()) };
        let g = sigframe::saved_gregs(&uc);
        let code = i32::from_le_bytes(info[8..12].try_into().expect("4 bytes"));
        let fault_signal =
            matches!(sig, libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP) && code > 0;
        let (tail_start, tail_end) = entry::resume_tail();
        if (tail_start..tail_end).contains(&g[16]) {
            // The resume's tail: the guest has not run an instruction and its state is still
            // the Cpu's. A fault there (the 16 bytes below the red zone) sends the next entry
            // through a frame.
            if fault_signal {
                self.slow_next = true;
            } else {
                self.run_trapbox_handler(sig, info_at, uc_at);
            }
            return Exit::Interrupted;
        }
        if g[16] == entry::sigreturn_end() {
            // The kernel refused the entry frame before loading the guest's registers (XSAVE
            // images are checked when set, so this is trapbox's own frame gone wrong): the
            // guest gets the SIGSEGV Linux gives a bad rt_sigreturn, its FPU state reset.
            self.reset_fpu();
            self.fault = (0, 13, 0);
            return Exit::Exception(13);
        }
        self.regs = kvm_regs_of(&sigframe::from_gregs(&g));
        let (err, trapno, cr2) = sigframe::fault_words(&uc);
        self.fault = (err, trapno, cr2);
        if let Some(fp) = sigframe::fpstate(&uc) {
            let bytes = &mut self.fpu.bytes;
            // SAFETY: the kernel wrote at least the frame's XSAVE image (this many bytes, the
            // layout trapbox's CPU view measured) at `fp`, on the alternate stack.
            unsafe { std::ptr::copy_nonoverlapping(fp as *const u8, bytes.as_mut_ptr(), bytes.len()) };
            self.fpu_in_area = false;
        }
        // First, as the most frequent exit: a SIGSYS from SUD comes from a `syscall` the
        // guest ran, never from the way to the fast exit (which has none SUD stops).
        if sig == libc::SIGSYS && code == SYS_USER_DISPATCH {
            let arch = u32::from_le_bytes(info[28..32].try_into().expect("4 bytes"));
            if arch == AUDIT_ARCH_X86_64 {
                if self.owns_gs && rewrite::seen(self.regs.rip - 2) {
                    self.hot = Some(self.regs.rip - 2);
                }
                return Exit::Syscall;
            }
            // `int 0x80`: the 32-bit ABI, which the KVM engine meets as a #GP at the
            // instruction; the same here.
            self.regs.rip = self.regs.rip.wrapping_sub(2);
            self.fault = (0, 13, 0);
            return Exit::Exception(13);
        }
        if let Some(site) = self.roll_back_to_site() {
            if fault_signal {
                // The way to the fast exit faulted: GS is not the block (the guest wrote it
                // itself). The site's syscall is taken as SUD would have taken it.
                self.regs.rip = site + 2;
                self.regs.rcx = site + 2;
                self.regs.r11 = self.regs.rflags;
                return Exit::Syscall;
            }
            self.run_trapbox_handler(sig, info_at, uc_at);
            return Exit::Interrupted;
        }
        if sig == libc::SIGTRAP && trapno == 3 && rewrite::transient_int3(self.regs.rip.wrapping_sub(1)) {
            // A site caught while it was being rewritten or put back: it runs again.
            self.regs.rip -= 1;
            return Exit::Interrupted;
        }
        if fault_signal {
            if sig == libc::SIGBUS && trapno == 14 {
                return Exit::HostMemoryFault;
            }
            return Exit::Exception(trapno as u8);
        }
        self.run_trapbox_handler(sig, info_at, uc_at);
        Exit::Interrupted
    }

    /// Runs trapbox's handler for a signal that brought the guest out: it would have run had
    /// trapbox's code been interrupted; it runs now, in trapbox's context, and the guest
    /// stops as after a kick.
    fn run_trapbox_handler(&self, sig: i32, info_at: u64, uc_at: u64) {
        let h = entry::handler(sig);
        if h > 1 {
            // SAFETY: `h` is the SA_SIGINFO-compatible handler trapbox installed for `sig`
            // (recorded by `wrap`); it gets the kernel's siginfo and ucontext, still intact
            // on the alternate stack, with every signal blocked as its mask asked.
            let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
            f(sig, info_at as *mut libc::siginfo_t, uc_at as *mut libc::c_void);
        }
    }

    /// If the guest stopped on its way from a rewritten site to the fast exit (the padding's
    /// jump, the stub, the fast exit before the guest was out), puts it back at the site with
    /// the registers it had there (those the way changed are in the block); the site.
    fn roll_back_to_site(&mut self) -> Option<u64> {
        let b = self.block_ref();
        let (site_rcx, site_r11, saved) = (b.site_rcx, b.site_r11, b.gprs);
        let way = Way::of(self.regs.rip, self.regs.rcx, saved.rip, entry::fast_exit(), rewrite::locate)?;
        way.roll_back(&mut self.regs, site_rcx, site_r11, &saved);
        if way.state_kept {
            // The fast exit saved the guest's XSAVE image before it changed the control words:
            // the area is current, not the frame.
            self.fpu_in_area = true;
        }
        Some(way.site)
    }

    /// A syscall site that just became hot (once per site), for the process layer to rewrite.
    pub fn take_hot_site(&mut self) -> Option<u64> {
        self.hot.take()
    }

    /// General registers as of the last exit.
    pub fn regs(&self) -> &kvm_regs {
        &self.regs
    }

    /// General registers, loaded at the next entry.
    pub fn regs_mut(&mut self) -> &mut kvm_regs {
        &mut self.regs
    }

    /// The last fault's error code, trap number and CR2.
    pub fn fault(&self) -> (u64, u64, u64) {
        self.fault
    }

    /// The guest's FS base.
    pub fn fs_base(&self) -> u64 {
        self.block_ref().guest_fs
    }

    /// Sets the guest's FS base.
    pub fn set_fs_base(&mut self, v: u64) {
        self.block().guest_fs = v;
    }

    /// The guest's GS base.
    pub fn gs_base(&self) -> u64 {
        if !self.on_this_thread() || self.owns_gs {
            return self.gs_base;
        }
        // Guest code may set GS itself (wrgsbase); trapbox's code never touches it.
        let mut gs = self.gs_base;
        // SAFETY: ARCH_GET_GS writes this thread's GS base into `gs`.
        unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1004, &mut gs as *mut u64) };
        gs
    }

    /// Sets the guest's GS base (loaded at once when this thread runs the CPU). A guest that
    /// takes GS from trapbox gets every rewritten site back first (`rewrite::withdraw`).
    pub fn set_gs_base(&mut self, v: u64) {
        self.gs_base = v;
        if self.owns_gs && v != 0 {
            rewrite::withdraw();
            self.owns_gs = false;
        }
        if self.on_this_thread() && !self.owns_gs {
            self.load_gs();
        }
    }

    /// The XSAVE state (standard form).
    pub fn xsave(&self) -> kvm_xsave {
        let mut x = kvm_xsave::default();
        set_xsave_bytes(&mut x, self.fpu_bytes());
        x
    }

    /// Replaces the XSAVE state, if the kernel would load it: MXCSR without reserved bits, an
    /// XSAVE header in standard form naming only the frame's components (what KVM_SET_XSAVE
    /// checks; an image the kernel refuses at the entry would stop the guest at trapbox's
    /// `rt_sigreturn` instead of where it was).
    pub fn set_xsave(&mut self, x: &kvm_xsave) -> Result<(), InProcError> {
        let b = xsave_bytes(x);
        let word = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let mxcsr = u32::from_le_bytes(b[24..28].try_into().expect("4 bytes"));
        let header_ok = self.fpu.xfeatures == 0
            || (word(512) & !self.fpu.xfeatures == 0 && word(520) == 0 && b[528..576].iter().all(|&v| v == 0));
        if mxcsr & !0xffff != 0 || !header_ok {
            return Err(InProcError::Arm(
                "an XSAVE image the kernel would refuse",
                std::io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        let n = self.fpu.bytes.len();
        self.fpu.bytes.copy_from_slice(&b[..n]);
        self.fpu_in_area = false;
        Ok(())
    }

    /// The state of a program that has just started: x87 control word 0x37f, MXCSR 0x1f80,
    /// every XSAVE component at its initial configuration.
    pub fn reset_fpu(&mut self) {
        self.fpu_in_area = false;
        let b = &mut self.fpu.bytes;
        b.fill(0);
        b[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        b[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        b[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
    }

    /// The state another CPU can start from.
    pub fn save_state(&mut self) -> CpuState {
        CpuState { sregs: None, regs: self.regs, fs_base: self.fs_base(), gs_base: self.gs_base(), xsave: self.xsave() }
    }

    /// Loads `state`.
    pub fn restore_state(&mut self, state: &CpuState) {
        self.regs = state.regs;
        self.set_fs_base(state.fs_base);
        self.set_gs_base(state.gs_base);
        // A state saved from a CPU: its image was loadable.
        let _ = self.set_xsave(&state.xsave);
    }
}

/// Sets the calling thread's signal mask (and reads the previous one into `old`, unless null):
/// the kernel's call, so that glibc's own 32 and 33 are covered too.
fn set_mask(new: &u64, old: *mut u64) {
    // SAFETY: rt_sigprocmask reads an 8-byte set and writes the previous one into `old` (or
    // nowhere, when null).
    unsafe { libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, new as *const u64, old, 8) };
}

/// Where a thread stood on its way from a rewritten site to the fast exit.
#[derive(Debug, PartialEq, Eq)]
struct Way {
    site: u64,
    /// The stub has saved RCX and R11 in the block and changed them.
    rcx_r11_saved: bool,
    /// The fast exit has stored every general register in the block (and changed some).
    regs_stored: bool,
    /// ... and RFLAGS and the XSAVE image too (and changed them).
    state_kept: bool,
}

impl Way {
    /// Where `rip` is on the way (`rcx`: the register, which holds the address after the site
    /// from the stub on; `saved_rip`: the block's, which the fast exit sets from RCX before it
    /// changes it).
    fn of(
        rip: u64,
        rcx: u64,
        saved_rip: u64,
        fast: entry::FastExit,
        locate: impl Fn(u64) -> Option<rewrite::Place>,
    ) -> Option<Way> {
        let on_way =
            |site: u64, rcx_r11_saved: bool| Way { site, rcx_r11_saved, regs_stored: false, state_kept: false };
        if (fast.start..fast.stored).contains(&rip) {
            return Some(on_way(rcx.wrapping_sub(2), true));
        }
        if (fast.stored..fast.end).contains(&rip) {
            let state_kept = rip >= fast.kept;
            return Some(Way { regs_stored: true, state_kept, ..on_way(saved_rip.wrapping_sub(2), true) });
        }
        Some(match locate(rip)? {
            rewrite::Place::Pad(site) => on_way(site, false),
            rewrite::Place::Stub(site, off) => on_way(site, off >= rewrite::STUB_SAVED),
        })
    }

    /// Puts `regs` back as they were at the site, before its syscall.
    fn roll_back(&self, regs: &mut kvm_regs, site_rcx: u64, site_r11: u64, saved: &kvm_regs) {
        if self.regs_stored {
            let rflags = if self.state_kept { saved.rflags } else { regs.rflags };
            *regs = kvm_regs { rflags, ..*saved };
        }
        if self.rcx_r11_saved {
            regs.rcx = site_rcx;
            regs.r11 = site_r11;
        }
        regs.rip = self.site;
    }
}

impl Drop for Cpu {
    fn drop(&mut self) {
        if self.armed && !self.on_this_thread() {
            // Armed on another host thread that may still deliver signals on the region:
            // it stays mapped.
            return;
        }
        if self.armed {
            ARMED.with(|a| a.set(std::ptr::null_mut()));
            // SAFETY: this thread's own SUD, this Cpu's, is turned off before the region goes.
            unsafe { libc::prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0) };
            self.restore_altstack();
        }
        let kick: *mut u8 = &mut self.block().kick;
        trapbox_host::kick::release(kick);
        // SAFETY: the region was mapped in Cpu::new with REGION bytes and nothing refers to it
        // any more.
        unsafe { libc::munmap(self.region.cast(), REGION) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: entry::FastExit = entry::FastExit { start: 0x7000, stored: 0x7050, kept: 0x7070, end: 0x7090 };
    const SITE: u64 = 0x40_1000;

    fn locate(rip: u64) -> Option<rewrite::Place> {
        match rip {
            0x40_1040 => Some(rewrite::Place::Pad(SITE)),
            0x10_0000..0x10_0030 => Some(rewrite::Place::Stub(SITE, rip - 0x10_0000)),
            _ => None,
        }
    }

    /// The guest's registers at the site.
    fn at_site() -> kvm_regs {
        kvm_regs {
            rax: 39,
            rcx: 0xc0,
            r11: 0x11,
            rdi: 1,
            rsi: 2,
            rdx: 3,
            r10: 4,
            rip: SITE,
            rflags: 0x246,
            ..Default::default()
        }
    }

    /// The registers of a thread stopped at `rip` after the way `changed` them, rolled back
    /// (the block holds what the fast exit stored: the site's registers, RCX the address after
    /// it, R11 and RFLAGS the flags).
    fn rolled_back(rip: u64, changed: impl Fn(&mut kvm_regs)) -> Option<kvm_regs> {
        let mut regs = at_site();
        changed(&mut regs);
        regs.rip = rip;
        let stored = kvm_regs { rcx: SITE + 2, r11: 0x246, rflags: 0x246, rip: SITE + 2, ..at_site() };
        let way = Way::of(rip, regs.rcx, stored.rip, FAST, locate)?;
        assert_eq!(way.site, SITE);
        way.roll_back(&mut regs, 0xc0, 0x11, &stored);
        Some(regs)
    }

    #[test]
    fn a_thread_stopped_on_the_way_to_the_fast_exit_is_put_back_at_its_site() {
        let stub_changed = |r: &mut kvm_regs| (r.rcx, r.r11) = (SITE + 2, 0x246);
        // Past `stored`: the fast exit moved to trapbox's stack and used RAX, RCX, RDX, R11;
        // past `kept` it cleared RFLAGS too.
        let exit_changed = |r: &mut kvm_regs| {
            stub_changed(r);
            (r.rax, r.rcx, r.rdx, r.r11, r.rsp) = (0x246, 0x7f00_0000, 0x2e7, 0x7f00_1000, 0x7ffe_0000);
        };
        let flags_cleared = |r: &mut kvm_regs| {
            exit_changed(r);
            r.rflags = 2;
        };
        // The padding's jump, the stub before and after it saved RCX and R11, the fast exit
        // while it stores the registers, after, and after it changed the flags: every register
        // as at the site.
        assert_eq!(rolled_back(0x40_1040, |_| {}), Some(at_site()));
        assert_eq!(rolled_back(0x10_0009, |_| {}), Some(at_site()));
        assert_eq!(rolled_back(0x10_0019, stub_changed), Some(at_site()));
        assert_eq!(rolled_back(0x7010, stub_changed), Some(at_site()));
        assert_eq!(rolled_back(0x7060, exit_changed), Some(at_site()));
        assert_eq!(rolled_back(0x7080, flags_cleared), Some(at_site()));
        // Past the commit (the guest is out) and elsewhere: not on the way.
        assert_eq!(rolled_back(0x7090, flags_cleared), None);
        assert_eq!(rolled_back(0x40_2000, |_| {}), None);
    }
}
