//! The two crossings between trapbox and guest code in one process, in assembly because no
//! Rust or libc code may run while FS holds the guest's TLS.
//!
//! **Into the guest** (`trapbox_inproc_enter`): with every signal blocked, trapbox saves its
//! callee-saved registers and stack pointer in the thread's [`Block`], loads the guest's FS
//! base, sets the Syscall User Dispatch selector to BLOCK and issues `rt_sigreturn` on a frame
//! it built (the guest's registers, FPU state, signal mask and trapbox's alternate stack): one
//! instruction switches every register and unblocks signals atomically. That `syscall` is the
//! only address SUD lets through ([`allowed_range`]).
//!
//! **Out of the guest** (`trapbox_inproc_stub`): every signal handler trapbox installs is this
//! stub while the engine is on ([`wrap`]). The kernel delivers on trapbox's alternate stack,
//! whose base holds the thread's `Block`; the stub finds it through the frame's `uc_stack`
//! (what the kernel saved of the thread's alternate stack, which the guest cannot change:
//! sigaltstack is emulated). If the block says the guest was running, the stub sets the
//! selector to ALLOW, records the signal, its siginfo and ucontext, saves the guest's FS base
//! and restores trapbox's, and returns from `trapbox_inproc_enter` on trapbox's stack: the
//! kernel's frame stays on the alternate stack for [`super::Cpu`] to read (every signal is
//! still blocked: the stub runs with a full mask and never returns through the frame; the run
//! loop puts the mask back). In any other case (trapbox's own code was interrupted, or the
//! thread runs no guest) the stub jumps to trapbox's handler for the signal, as if it had been
//! installed directly.
//!
//! **The crossings without a signal** (where the CPU has XSAVE and user FSGSBASE) make no
//! system call at all: the guest runs with the thread's own signal mask (which never blocks
//! the trap signals or trapbox's own), and one store to `in_guest` is each crossing's commit
//! point. Before the commit a signal runs trapbox's handler in trapbox's context; after it the
//! stub brings the thread out as from guest code, and the labels in the assembly tell
//! [`super::Cpu`] how far the crossing had come:
//!
//! - *In* (`trapbox_inproc_resume`): sets `in_guest`, then checks the kick byte (a kick whose
//!   handler ran before the commit returns at once), loads the guest's XSAVE image and FS
//!   base, and the tail loads the general registers, RFLAGS (`popfq`, from 16 bytes written
//!   just below the guest's red zone) and jumps to RIP. A signal anywhere after the commit
//!   finds the guest not yet run: [`super::Cpu`] keeps the registers it had ([`resume_tail`]).
//! - *Out* (`trapbox_inproc_fast`), reached from a rewritten syscall site (`rewrite.rs`) with GS
//!   holding the thread's block (trapbox owns GS on such threads): it stores the general
//!   registers in the block, then RFLAGS (through trapbox's stack) and the XSAVE image, gives
//!   trapbox's code the state the ABI promises it (DF, AC, TF clear, default MXCSR and x87
//!   control word), saves the guest's FS base and loads trapbox's, and clears `in_guest`. A
//!   signal before that puts the thread back at its site with the registers it had there
//!   ([`FastExit`]); the site's syscall runs when it resumes.
//!
//! The stub saves the guest's FS base only where FS still holds it: in the resume's tail and
//! in the fast exit past its `fs` label the block already has it.
//!
//! The one `syscall` a crossing makes with the selector at BLOCK, the entry's `rt_sigreturn`,
//! is the range Syscall User Dispatch always lets through ([`allowed_range`]).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// Marks a [`Block`] at the base of an alternate stack (an alternate stack of another kind,
/// the Rust runtime's, lacks it).
pub const MAGIC: u64 = 0x7472_6170_626f_7831;

/// Syscall User Dispatch selector values.
pub const ALLOW: u8 = 0;
/// See [`ALLOW`].
pub const BLOCK: u8 = 1;

/// What the crossings share with Rust, at the base of a thread's alternate stack. The
/// assembly takes its offsets from the fields.
#[repr(C)]
pub struct Block {
    /// [`MAGIC`].
    pub magic: u64,
    /// 1 while guest code runs (set by the entry just before `rt_sigreturn`, cleared by the
    /// stub).
    pub in_guest: u64,
    /// The SUD selector byte the kernel reads at every syscall.
    pub selector: u8,
    /// Set by a kick (trapbox's signal handlers, the watchdog): the next entry returns at once.
    pub kick: u8,
    _pad: [u8; 6],
    /// trapbox's FS base on this thread.
    pub trapbox_fs: u64,
    /// The guest's FS base (loaded at entry, saved by the stub).
    pub guest_fs: u64,
    /// trapbox's stack pointer inside `trapbox_inproc_enter`.
    pub saved_rsp: u64,
    /// The signal that brought the guest out, its siginfo and its ucontext.
    pub sig: u64,
    /// See [`Block::sig`].
    pub info: u64,
    /// See [`Block::sig`].
    pub uc: u64,
    /// RCX and R11 at a rewritten site before its stub changed them (for a roll-back).
    pub site_rcx: u64,
    /// See [`Block::site_rcx`].
    pub site_r11: u64,
    /// The XSAVE components the crossings without a signal save and load.
    pub xfeatures: u64,
    _reserved: u64,
    /// The guest's registers across a crossing without a signal.
    pub gprs: kvm_bindings::kvm_regs,
}

/// Where a thread's XSAVE image lies for the crossings without a signal: this far from the
/// block, 64-byte aligned, at most 4 KiB (above the entry frame, far below where the kernel
/// delivers on the alternate stack).
pub const XSAVE_AREA: usize = 32 * 1024;

const OFF_IN_GUEST: usize = std::mem::offset_of!(Block, in_guest);
const OFF_SELECTOR: usize = std::mem::offset_of!(Block, selector);
const OFF_TRAPBOX_FS: usize = std::mem::offset_of!(Block, trapbox_fs);
const OFF_GUEST_FS: usize = std::mem::offset_of!(Block, guest_fs);
const OFF_SAVED_RSP: usize = std::mem::offset_of!(Block, saved_rsp);
const OFF_SIG: usize = std::mem::offset_of!(Block, sig);
const OFF_INFO: usize = std::mem::offset_of!(Block, info);
const OFF_UC: usize = std::mem::offset_of!(Block, uc);
pub(super) const OFF_SITE_RCX: usize = std::mem::offset_of!(Block, site_rcx);
pub(super) const OFF_SITE_R11: usize = std::mem::offset_of!(Block, site_r11);
const OFF_KICK: usize = std::mem::offset_of!(Block, kick);
const OFF_XFEATURES: usize = std::mem::offset_of!(Block, xfeatures);
const OFF_GPRS: usize = std::mem::offset_of!(Block, gprs);
/// Offsets of the guest's registers in the block.
const G_RAX: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rax);
const G_RBX: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rbx);
const G_RCX: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rcx);
const G_RDX: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rdx);
const G_RSI: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rsi);
const G_RDI: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rdi);
const G_RSP: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rsp);
const G_RBP: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rbp);
const G_R8: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, r8);
const G_R9: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, r9);
const G_R10: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, r10);
const G_R11: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, r11);
const G_R12: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, r12);
const G_R13: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, r13);
const G_R14: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, r14);
const G_R15: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, r15);
const G_RIP: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rip);
const G_RFLAGS: usize = OFF_GPRS + std::mem::offset_of!(kvm_bindings::kvm_regs, rflags);

/// The MXCSR and x87 control word the ABI promises trapbox's code (the fast exit loads them:
/// the guest may have changed its own).
#[no_mangle]
static TRAPBOX_INPROC_MXCSR: u32 = 0x1f80;
/// See [`TRAPBOX_INPROC_MXCSR`].
#[no_mangle]
static TRAPBOX_INPROC_FCW: u16 = 0x37f;

/// Whether the CPU and kernel let user code use `rdfsbase`/`wrfsbase` (AT_HWCAP2 bit 1);
/// without them the crossings switch FS with `arch_prctl`.
#[no_mangle]
static TRAPBOX_INPROC_FSGSBASE: AtomicU8 = AtomicU8::new(0);

/// Whether the crossings may use `rdfsbase`/`wrfsbase` (known once [`activate`] ran).
pub fn fsgsbase() -> bool {
    TRAPBOX_INPROC_FSGSBASE.load(Ordering::SeqCst) != 0
}

/// trapbox's handler for each signal, which the stub calls in trapbox's context.
static HANDLERS: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];

static ACTIVE: AtomicBool = AtomicBool::new(false);

std::arch::global_asm!(
    // Both entries save trapbox's callee-saved registers and stack pointer in the block (RDI);
    // both exits (the stub, the fast exit) put them back from the block (`base`) and return
    // from the entry with `out` (see [`Out`]).
    ".macro trapbox_inproc_save_trapbox",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi + {saved_rsp}], rsp",
    ".endm",
    ".macro trapbox_inproc_back_to_trapbox base, out",
    "mov rsp, [\\base + {saved_rsp}]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "mov eax, \\out",
    "ret",
    ".endm",
    "",
    ".pushsection .text.trapbox_inproc, \"ax\", @progbits",
    ".globl trapbox_inproc_enter",
    ".type trapbox_inproc_enter, @function",
    "trapbox_inproc_enter:",
    "trapbox_inproc_save_trapbox",
    "mov r12, rdi",
    "mov r13, rsi",
    "cmp byte ptr [rip + TRAPBOX_INPROC_FSGSBASE], 0",
    "je 1f",
    "mov rax, [r12 + {guest_fs}]",
    "wrfsbase rax",
    "jmp 2f",
    "1:",
    "mov edi, 0x1002",
    "mov rsi, [r12 + {guest_fs}]",
    "mov eax, 158",
    "syscall",
    "2:",
    "mov qword ptr [r12 + {in_guest}], 1",
    "mov byte ptr [r12 + {selector}], {block}",
    "mov rsp, r13",
    "mov eax, 15",
    ".globl trapbox_inproc_sigreturn",
    "trapbox_inproc_sigreturn:",
    "syscall",
    "ud2",
    ".size trapbox_inproc_enter, . - trapbox_inproc_enter",
    "",
    // In without a signal, and without touching the signal mask: the guest runs with the
    // thread's own. The caller wrote the guest's registers and XSAVE image into the block.
    // Setting `in_guest` is the commit: before it a signal runs trapbox's handler in trapbox's
    // context; after it, until the guest's first instruction, the stub brings the thread out
    // and the guest is found not to have run (the tail).
    ".globl trapbox_inproc_resume",
    ".type trapbox_inproc_resume, @function",
    "trapbox_inproc_resume:",
    "trapbox_inproc_save_trapbox",
    "mov r12, rdi",
    "mov qword ptr [r12 + {in_guest}], 1",
    ".globl trapbox_inproc_resume_tail",
    "trapbox_inproc_resume_tail:",
    // A kick that came before the commit (its handler set the byte in trapbox's context).
    "cmp byte ptr [r12 + {kick}], 0",
    "je 7f",
    "mov qword ptr [r12 + {in_guest}], 0",
    "trapbox_inproc_back_to_trapbox r12, 2",
    "7:",
    "mov eax, [r12 + {xfeatures}]",
    "mov edx, [r12 + {xfeatures} + 4]",
    "xrstor64 [r12 + {xsave_area}]",
    "mov rax, [r12 + {guest_fs}]",
    "wrfsbase rax",
    "mov byte ptr [r12 + {selector}], {block}",
    "mov rsp, [r12 + {g_rsp}]",
    "lea rsp, [rsp - 144]",
    "mov rax, [r12 + {g_rflags}]",
    "mov [rsp], rax",
    "mov rax, [r12 + {g_rip}]",
    "mov [rsp + 8], rax",
    "mov rax, [r12 + {g_rax}]",
    "mov rbx, [r12 + {g_rbx}]",
    "mov rcx, [r12 + {g_rcx}]",
    "mov rdx, [r12 + {g_rdx}]",
    "mov rsi, [r12 + {g_rsi}]",
    "mov rdi, [r12 + {g_rdi}]",
    "mov rbp, [r12 + {g_rbp}]",
    "mov r8, [r12 + {g_r8}]",
    "mov r9, [r12 + {g_r9}]",
    "mov r10, [r12 + {g_r10}]",
    "mov r11, [r12 + {g_r11}]",
    "mov r13, [r12 + {g_r13}]",
    "mov r14, [r12 + {g_r14}]",
    "mov r15, [r12 + {g_r15}]",
    "mov r12, [r12 + {g_r12}]",
    "popfq",
    "lea rsp, [rsp + 136]",
    "jmp qword ptr [rsp - 136]",
    ".globl trapbox_inproc_resume_end",
    "trapbox_inproc_resume_end:",
    "ud2",
    ".size trapbox_inproc_resume, . - trapbox_inproc_resume",
    "",
    // Out without a signal, from a rewritten site's stub: GS is the block, RCX the address
    // after the site (as `syscall` sets it), the site's RCX and R11 saved in the block. The
    // signal mask stays the guest's, so a signal may come at any instruction until
    // `in_guest` is cleared (the commit); the labels below tell [`super::Way`] what the block
    // holds by then, to put the thread back at its site.
    ".globl trapbox_inproc_fast",
    ".type trapbox_inproc_fast, @function",
    "trapbox_inproc_fast:",
    "mov gs:[{g_rax}], rax",
    "mov gs:[{g_rbx}], rbx",
    "mov gs:[{g_rcx}], rcx",
    "mov gs:[{g_rdx}], rdx",
    "mov gs:[{g_rsi}], rsi",
    "mov gs:[{g_rdi}], rdi",
    "mov gs:[{g_rsp}], rsp",
    "mov gs:[{g_rbp}], rbp",
    "mov gs:[{g_r8}], r8",
    "mov gs:[{g_r9}], r9",
    "mov gs:[{g_r10}], r10",
    "mov gs:[{g_r12}], r12",
    "mov gs:[{g_r13}], r13",
    "mov gs:[{g_r14}], r14",
    "mov gs:[{g_r15}], r15",
    "mov gs:[{g_rip}], rcx",
    // Every general register is in the block; from here they change. RFLAGS is read through
    // trapbox's stack (the guest's may have no room below its red zone); `syscall` would have
    // put it in R11 too.
    ".globl trapbox_inproc_fast_stored",
    "trapbox_inproc_fast_stored:",
    "mov rsp, gs:[{saved_rsp}]",
    "pushfq",
    "pop rax",
    "mov gs:[{g_rflags}], rax",
    "mov gs:[{g_r11}], rax",
    "rdgsbase rcx",
    "mov eax, [rcx + {xfeatures}]",
    "mov edx, [rcx + {xfeatures} + 4]",
    "xsave64 [rcx + {xsave_area}]",
    // RFLAGS and the XSAVE image are in the block too; from here trapbox's code gets the
    // state the ABI promises it: DF, AC and TF clear, the default MXCSR and x87 control word,
    // clean upper vector halves (SSE code runs without transition stalls).
    ".globl trapbox_inproc_fast_kept",
    "trapbox_inproc_fast_kept:",
    "push 2",
    "popfq",
    "ldmxcsr [rip + TRAPBOX_INPROC_MXCSR]",
    "fldcw [rip + TRAPBOX_INPROC_FCW]",
    "test byte ptr [rcx + {xfeatures}], 4",
    "jz 8f",
    "vzeroupper",
    "8:",
    "rdfsbase r11",
    "mov [rcx + {guest_fs}], r11",
    // The guest's FS base is in the block; FS may be trapbox's from here (the stub keeps the
    // saved one).
    ".globl trapbox_inproc_fast_fs",
    "trapbox_inproc_fast_fs:",
    "mov r11, [rcx + {trapbox_fs}]",
    "wrfsbase r11",
    "mov byte ptr [rcx + {selector}], {allow}",
    "mov qword ptr [rcx + {in_guest}], 0",
    ".globl trapbox_inproc_fast_end",
    "trapbox_inproc_fast_end:",
    "trapbox_inproc_back_to_trapbox rcx, 1",
    ".size trapbox_inproc_fast, . - trapbox_inproc_fast",
    "",
    ".globl trapbox_inproc_stub",
    ".type trapbox_inproc_stub, @function",
    "trapbox_inproc_stub:",
    // uc_stack.ss_flags & SS_DISABLE: no alternate stack, so no block.
    "test dword ptr [rdx + 24], 2",
    "jnz 3f",
    "mov rax, [rdx + 16]",
    "test rax, rax",
    "jz 3f",
    "movabs rcx, {magic}",
    "cmp [rax], rcx",
    "jne 3f",
    "cmp qword ptr [rax + {in_guest}], 0",
    "je 3f",
    // The guest was running: out of it.
    "mov qword ptr [rax + {in_guest}], 0",
    "mov byte ptr [rax + {selector}], {allow}",
    "mov [rax + {sig}], rdi",
    "mov [rax + {info}], rsi",
    "mov [rax + {uc}], rdx",
    "cmp byte ptr [rip + TRAPBOX_INPROC_FSGSBASE], 0",
    "je 4f",
    // Interrupted inside a crossing where FS may already (still) be trapbox's: the block
    // holds the guest's FS base (the resume's tail, the fast exit from its `fs` label on).
    "mov rcx, [rdx + {uc_rip}]",
    "lea r8, [rip + trapbox_inproc_resume_tail]",
    "cmp rcx, r8",
    "jb 9f",
    "lea r8, [rip + trapbox_inproc_resume_end]",
    "cmp rcx, r8",
    "jb 10f",
    "9:",
    "lea r8, [rip + trapbox_inproc_fast_fs]",
    "cmp rcx, r8",
    "jb 11f",
    "lea r8, [rip + trapbox_inproc_fast_end]",
    "cmp rcx, r8",
    "jb 10f",
    "11:",
    "rdfsbase rcx",
    "mov [rax + {guest_fs}], rcx",
    "10:",
    "mov rcx, [rax + {trapbox_fs}]",
    "wrfsbase rcx",
    "jmp 5f",
    "4:",
    "mov r12, rax",
    "mov edi, 0x1002",
    "mov rsi, [rax + {trapbox_fs}]",
    "mov eax, 158",
    "syscall",
    "mov rax, r12",
    "5:",
    "trapbox_inproc_back_to_trapbox rax, 0",
    // trapbox's own context: its handler, entered as the kernel would have entered it.
    "3:",
    "lea rax, [rip + {handlers}]",
    "mov rax, [rax + rdi * 8]",
    "test rax, rax",
    "jz 6f",
    "jmp rax",
    "6:",
    "ret",
    ".size trapbox_inproc_stub, . - trapbox_inproc_stub",
    ".popsection",
    saved_rsp = const OFF_SAVED_RSP,
    xfeatures = const OFF_XFEATURES,
    xsave_area = const XSAVE_AREA,
    kick = const OFF_KICK,
    uc_rip = const trapbox_abi::arch::sigframe::UC_RIP,
    g_rax = const G_RAX,
    g_rbx = const G_RBX,
    g_rcx = const G_RCX,
    g_rdx = const G_RDX,
    g_rsi = const G_RSI,
    g_rdi = const G_RDI,
    g_rsp = const G_RSP,
    g_rbp = const G_RBP,
    g_r8 = const G_R8,
    g_r9 = const G_R9,
    g_r10 = const G_R10,
    g_r11 = const G_R11,
    g_r12 = const G_R12,
    g_r13 = const G_R13,
    g_r14 = const G_R14,
    g_r15 = const G_R15,
    g_rip = const G_RIP,
    g_rflags = const G_RFLAGS,
    guest_fs = const OFF_GUEST_FS,
    trapbox_fs = const OFF_TRAPBOX_FS,
    in_guest = const OFF_IN_GUEST,
    selector = const OFF_SELECTOR,
    sig = const OFF_SIG,
    info = const OFF_INFO,
    uc = const OFF_UC,
    magic = const MAGIC,
    block = const BLOCK,
    allow = const ALLOW,
    handlers = sym HANDLERS,
);

extern "C" {
    fn trapbox_inproc_enter(block: *mut Block, frame: u64) -> u64;
    fn trapbox_inproc_resume(block: *mut Block) -> u64;
    fn trapbox_inproc_stub(sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void);
    static trapbox_inproc_sigreturn: u8;
    static trapbox_inproc_resume_tail: u8;
    static trapbox_inproc_resume_end: u8;
    static trapbox_inproc_fast: u8;
    static trapbox_inproc_fast_stored: u8;
    static trapbox_inproc_fast_kept: u8;
    static trapbox_inproc_fast_end: u8;
}

/// How the guest came out of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// Through the stub: a signal, whose frame the block names.
    Signal,
    /// Through the fast exit: a syscall at a rewritten site, the registers in the block.
    Syscall,
    /// Not in: the resume found the kick byte set (it is still set).
    Kicked,
}

fn out_of(r: u64) -> Out {
    match r {
        1 => Out::Syscall,
        2 => Out::Kicked,
        _ => Out::Signal,
    }
}

/// Runs the guest from the `rt_sigreturn` frame whose ucontext is at `frame` until a signal
/// or a rewritten site brings it out (see the module comment).
///
/// # Safety
///
/// Every signal is blocked; `block` is the calling thread's armed block (its alternate stack,
/// SUD on with its selector); `frame` holds a complete frame for the kernel's rt_sigreturn
/// whose `uc_stack` names that alternate stack and whose mask unblocks no signal trapbox does
/// not handle through the stub.
pub unsafe fn enter(block: *mut Block, frame: u64) -> Out {
    // SAFETY: as the caller guarantees; the assembly returns only through the stub or the
    // fast exit, with trapbox's stack pointer, callee-saved registers and FS base restored.
    out_of(unsafe { trapbox_inproc_enter(block, frame) })
}

/// Runs the guest from the registers and XSAVE image in `block` without a signal frame and
/// with the calling thread's signal mask (see the module comment).
///
/// # Safety
///
/// `block` is the calling thread's armed block (its alternate stack, SUD on with its
/// selector); the CPU has user FSGSBASE; the block's XSAVE area holds an image XRSTOR accepts
/// for its `xfeatures`; RFLAGS has neither TF nor AC (the tail's own instructions would trap);
/// the thread's signal mask leaves every signal trapbox handles through the stub unblocked,
/// and the signals that bring guest code out too (a blocked fault signal kills).
pub unsafe fn resume(block: *mut Block) -> Out {
    // SAFETY: as the caller guarantees; the assembly returns through the stub, the fast exit
    // or the kicked path, with trapbox's stack pointer, callee-saved registers and FS base.
    out_of(unsafe { trapbox_inproc_resume(block) })
}

fn addr(sym: &u8) -> u64 {
    sym as *const u8 as u64
}

/// The code range SUD always lets through: the entry's `rt_sigreturn` (the kernel compares
/// the address after the instruction), the one `syscall` a crossing makes with the selector
/// at BLOCK.
pub fn allowed_range() -> (u64, u64) {
    // SAFETY: only the symbol's address is taken.
    (unsafe { addr(&trapbox_inproc_sigreturn) }, 3)
}

/// The address execution stops at when the kernel refused the entry frame.
pub fn sigreturn_end() -> u64 {
    // SAFETY: only the symbol's address is taken.
    unsafe { addr(&trapbox_inproc_sigreturn) + 2 }
}

/// The resume's tail, where a signal finds the guest about to run: `[start, end)`.
pub fn resume_tail() -> (u64, u64) {
    // SAFETY: only the symbols' addresses are taken.
    unsafe { (addr(&trapbox_inproc_resume_tail), addr(&trapbox_inproc_resume_end)) }
}

/// The fast exit's stretches, for putting a thread that a signal caught in it back at its
/// site (see the labels in the assembly).
#[derive(Clone, Copy, Debug)]
pub struct FastExit {
    /// Its first instruction: from here RCX and R11 are the stub's.
    pub start: u64,
    /// From here every general register is in the block (and may have changed since).
    pub stored: u64,
    /// From here RFLAGS and the XSAVE image are in the block too (and changed since).
    pub kept: u64,
    /// trapbox's own from here: the guest is out.
    pub end: u64,
}

/// See [`FastExit`].
pub fn fast_exit() -> FastExit {
    // SAFETY: only the symbols' addresses are taken.
    unsafe {
        FastExit {
            start: addr(&trapbox_inproc_fast),
            stored: addr(&trapbox_inproc_fast_stored),
            kept: addr(&trapbox_inproc_fast_kept),
            end: addr(&trapbox_inproc_fast_end),
        }
    }
}

fn stub_address() -> usize {
    trapbox_inproc_stub as *const () as usize
}

/// trapbox's handler for `sig` when it is installed as [`wrap`] said, else `handler` itself.
pub fn handler_of(sig: i32, handler: usize) -> usize {
    if handler == stub_address() {
        self::handler(sig)
    } else {
        handler
    }
}

/// What to install for `sig` when trapbox means `handler` with `flags`: with the engine on, a
/// function handler is recorded and the stub goes in its place (on the alternate stack, with
/// siginfo, which the stub needs); SIG_DFL and SIG_IGN pass through.
pub fn wrap(sig: i32, handler: usize, flags: i32) -> (usize, i32) {
    if !ACTIVE.load(Ordering::SeqCst) || handler <= 1 || handler == stub_address() {
        return (handler, flags);
    }
    let Some(slot) = usize::try_from(sig).ok().and_then(|s| HANDLERS.get(s)) else { return (handler, flags) };
    slot.store(handler, Ordering::SeqCst);
    (stub_address(), flags | libc::SA_SIGINFO | libc::SA_ONSTACK)
}

/// The handler `sig` has for trapbox's context, to call for a signal that arrived while the
/// guest ran (see [`super::Cpu::run`]).
pub fn handler(sig: i32) -> usize {
    usize::try_from(sig).ok().and_then(|s| HANDLERS.get(s)).map_or(0, |h| h.load(Ordering::SeqCst))
}

/// Turns the engine on for this process: from now on trapbox's signal handlers stand behind
/// the stub, those already installed included.
pub fn activate() {
    // SAFETY: getauxval has no preconditions.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    TRAPBOX_INPROC_FSGSBASE.store(u8::from(hwcap2 & 2 != 0), Ordering::SeqCst);
    if ACTIVE.swap(true, Ordering::SeqCst) {
        return;
    }
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // The kernel's struct sigaction: handler, flags, restorer, mask.
        let mut k = [0u64; 4];
        // SAFETY: rt_sigaction writes the current disposition into `k` (8-byte mask).
        let r = unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, std::ptr::null::<u64>(), k.as_mut_ptr(), 8) };
        if r != 0 || k[0] <= 1 {
            continue;
        }
        let (h, f) = wrap(sig, k[0] as usize, k[1] as i32);
        let act = [h as u64, u64::from(f as u32) | (k[1] & !0xffff_ffff), k[2], !0];
        // SAFETY: installs the stub, which runs the recorded handler in trapbox's context;
        // the restorer is the one the handler had.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, act.as_ptr(), std::ptr::null_mut::<u64>(), 8) };
    }
}

/// Whether the engine is on in this process.
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_fits_below_the_xsave_area() {
        assert!(std::mem::size_of::<Block>() <= XSAVE_AREA);
        assert_eq!(XSAVE_AREA % 64, 0, "XSAVE needs a 64-byte aligned area");
    }
}
