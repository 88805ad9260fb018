//! The two crossings between trapbox and guest code in one process, in assembly because no
//! Rust or libc code may run while FS holds the guest's TLS.
//!
//! **Into the guest** (`trapbox_inproc_enter`): with every signal blocked, trapbox saves its
//! callee-saved registers and stack pointer in the thread's [`Block`], loads the guest's FS
//! base, sets the Syscall User Dispatch selector to BLOCK and issues `rt_sigreturn` on a frame
//! it built (the guest's registers, FPU state, signal mask and trapbox's alternate stack): one
//! instruction switches every register and unblocks signals atomically. That `syscall` is the
//! only address SUD lets through ([`SIGRETURN_RANGE`]).
//!
//! **Out of the guest** (`trapbox_inproc_stub`): every signal handler trapbox installs is this
//! stub while the engine is on ([`wrap`]). The kernel delivers on trapbox's alternate stack,
//! whose base holds the thread's `Block`; the stub finds it through the frame's `uc_stack`
//! (what the kernel saved of the thread's alternate stack, which the guest cannot change:
//! sigaltstack is emulated). If the block says the guest was running, the stub sets the
//! selector to ALLOW, records the signal, its siginfo and ucontext, saves the guest's FS base
//! and restores trapbox's, and returns from `trapbox_inproc_enter` on trapbox's stack: the
//! kernel's frame stays on the alternate stack for [`super::Cpu`] to read (every signal is
//! still blocked: the stub runs with a full mask and never returns through the frame). In
//! any other case (trapbox's own code was interrupted, or the thread runs no guest) the stub
//! jumps to trapbox's handler for the signal, as if it had been installed directly.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// Marks a [`Block`] at the base of an alternate stack (an alternate stack of another kind,
/// the Rust runtime's, lacks it).
pub const MAGIC: u64 = 0x7472_6170_626f_7831;

/// Syscall User Dispatch selector values.
pub const ALLOW: u8 = 0;
/// See [`ALLOW`].
pub const BLOCK: u8 = 1;

/// What the crossings share with Rust, at the base of a thread's alternate stack. The
/// offsets are the assembly's (checked by a test).
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
}

const OFF_IN_GUEST: usize = 8;
const OFF_SELECTOR: usize = 16;
const OFF_TRAPBOX_FS: usize = 24;
const OFF_GUEST_FS: usize = 32;
const OFF_SAVED_RSP: usize = 40;
const OFF_SIG: usize = 48;
const OFF_INFO: usize = 56;
const OFF_UC: usize = 64;

/// Whether the CPU and kernel let user code use `rdfsbase`/`wrfsbase` (AT_HWCAP2 bit 1);
/// without them the crossings switch FS with `arch_prctl`.
#[no_mangle]
static TRAPBOX_INPROC_FSGSBASE: AtomicU8 = AtomicU8::new(0);

/// trapbox's handler for each signal, which the stub calls in trapbox's context.
static HANDLERS: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];

static ACTIVE: AtomicBool = AtomicBool::new(false);

std::arch::global_asm!(
    ".pushsection .text.trapbox_inproc, \"ax\", @progbits",
    ".globl trapbox_inproc_enter",
    ".type trapbox_inproc_enter, @function",
    "trapbox_inproc_enter:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi + {saved_rsp}], rsp",
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
    "rdfsbase rcx",
    "mov [rax + {guest_fs}], rcx",
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
    "mov rsp, [rax + {saved_rsp}]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "xor eax, eax",
    "ret",
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
    fn trapbox_inproc_stub(sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void);
    static trapbox_inproc_sigreturn: u8;
}

/// Runs the guest from the `rt_sigreturn` frame whose ucontext is at `frame` until a signal
/// brings it out (see the module comment).
///
/// # Safety
///
/// Every signal is blocked; `block` is the calling thread's armed block (its alternate stack,
/// SUD on with its selector); `frame` holds a complete frame for the kernel's rt_sigreturn
/// whose `uc_stack` names that alternate stack and whose mask unblocks no signal trapbox does
/// not handle through the stub.
pub unsafe fn enter(block: *mut Block, frame: u64) {
    // SAFETY: as the caller guarantees; the assembly returns only through the stub, with
    // trapbox's stack pointer, callee-saved registers and FS base restored.
    unsafe { trapbox_inproc_enter(block, frame) };
}

/// The code range SUD always lets through: the entry's `rt_sigreturn` (the kernel compares the
/// address after the `syscall`).
pub fn sigreturn_range() -> (u64, u64) {
    let at = std::ptr::addr_of!(trapbox_inproc_sigreturn) as u64;
    (at, 3)
}

/// The address execution stops at when the kernel refused the entry frame.
pub fn sigreturn_end() -> u64 {
    sigreturn_range().0 + 2
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
    fn block_offsets_match_the_assembly() {
        assert_eq!(std::mem::offset_of!(Block, in_guest), OFF_IN_GUEST);
        assert_eq!(std::mem::offset_of!(Block, selector), OFF_SELECTOR);
        assert_eq!(std::mem::offset_of!(Block, trapbox_fs), OFF_TRAPBOX_FS);
        assert_eq!(std::mem::offset_of!(Block, guest_fs), OFF_GUEST_FS);
        assert_eq!(std::mem::offset_of!(Block, saved_rsp), OFF_SAVED_RSP);
        assert_eq!(std::mem::offset_of!(Block, sig), OFF_SIG);
        assert_eq!(std::mem::offset_of!(Block, info), OFF_INFO);
        assert_eq!(std::mem::offset_of!(Block, uc), OFF_UC);
    }
}
