//! The x86-64 signal frame, as the kernel builds it for a handler and reads it back in
//! `rt_sigreturn`: `struct rt_sigframe` (return address, `ucontext`, `siginfo`) with the
//! FPU/vector state in XSAVE form below it.
//!
//! Pure byte layout: the caller decides where the frame goes and writes it to guest memory.
//! Handlers read and change registers through `uc_mcontext` (glibc's `ucontext_t` has the same
//! prefix), so the offsets here are ABI.

use crate::Regs;

/// Size of `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;
/// Size of the kernel's `struct ucontext` (flags, link, stack, sigcontext, sigmask).
const UCONTEXT_SIZE: usize = 8 + 8 + 24 + SIGCONTEXT_SIZE + 8;
const SIGCONTEXT_SIZE: usize = 256;
/// `pretcode` + ucontext + siginfo.
pub const FRAME_SIZE: usize = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
/// Offsets inside the frame.
const UC: usize = 8;
const UC_STACK: usize = UC + 16;
const MCONTEXT: usize = UC + 40;
const SIGMASK: usize = MCONTEXT + SIGCONTEXT_SIZE;
const INFO: usize = UC + UCONTEXT_SIZE;
/// Offsets inside sigcontext.
const SC_CSGSFS: usize = 18 * 8;
const SC_ERR: usize = 19 * 8;
const SC_TRAPNO: usize = 20 * 8;
const SC_OLDMASK: usize = 21 * 8;
const SC_CR2: usize = 22 * 8;
const SC_FPSTATE: usize = 23 * 8;

/// uc_flags: the FPU state is in XSAVE form; SS is saved (and restored strictly).
const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
/// Markers of an XSAVE-form FPU area (`struct _fpx_sw_bytes` and the trailing word).
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Where `_fpx_sw_bytes` sits inside the legacy FXSAVE area.
const SW_BYTES: usize = 464;

/// RFLAGS bits user code may set through a signal frame (the kernel's FIX_EFLAGS).
const USER_FLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x20_0000;

/// Where in a ucontext the interrupted RIP is (`gregs`'s entry 16), for code that reads it
/// from a frame in place.
pub const UC_RIP: usize = MCONTEXT - UC + 16 * 8;

/// The register order of `struct sigcontext` (r8 first; RIP and RFLAGS last).
pub fn gregs(r: &Regs) -> [u64; 18] {
    [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp,
        r.rip, r.rflags,
    ]
}

/// The registers of a `struct sigcontext` register array ([`gregs`]'s inverse).
pub fn from_gregs(g: &[u64; 18]) -> Regs {
    Regs {
        r8: g[0],
        r9: g[1],
        r10: g[2],
        r11: g[3],
        r12: g[4],
        r13: g[5],
        r14: g[6],
        r15: g[7],
        rdi: g[8],
        rsi: g[9],
        rbp: g[10],
        rbx: g[11],
        rdx: g[12],
        rax: g[13],
        rcx: g[14],
        rsp: g[15],
        rip: g[16],
        rflags: g[17],
    }
}

/// The FPU/vector state saved with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FpuImage {
    /// The XSAVE standard-form bytes (the first `xstate_size` bytes of KVM's area), or the
    /// 512-byte FXSAVE area when the guest has no XSAVE.
    pub bytes: Vec<u8>,
    /// XCR0 bits the image holds (0: FXSAVE form).
    pub xfeatures: u64,
}

/// What a frame needs besides the interrupted registers.
pub struct FrameInput<'a> {
    /// The siginfo to pass.
    pub info: &'a [u8; SIGINFO_SIZE],
    /// Mask to restore at sigreturn.
    pub saved_mask: u64,
    /// `stack_t` as sigaltstack reports it at delivery.
    pub altstack: [u8; 24],
    /// Fault details: (error code, trap number, CR2).
    pub fault: Option<(u64, u64, u64)>,
    /// FPU state at delivery.
    pub fpu: &'a FpuImage,
    /// Where the handler returns (sa_restorer).
    pub restorer: u64,
}

/// A frame laid out below `sp`: write `bytes` at `addr`, enter the handler with `regs`.
pub struct Frame {
    /// Lowest address of the frame (FPU area included).
    pub addr: u64,
    /// The bytes from `addr` up.
    pub bytes: Vec<u8>,
    /// The stack pointer the handler starts with (pointing at the return address).
    pub sp: u64,
}

/// Bytes below the interrupted RSP that the frame leaves alone (the ABI's red zone); the top
/// of an alternate stack needs none.
pub const RED_ZONE: u64 = 128;

/// Lays out the frame for delivering `input` to a handler on the stack whose free space
/// ends at `sp` (the interrupted RSP less [`RED_ZONE`], or the top of the alternate stack).
/// `interrupted` is saved in `uc_mcontext`.
pub fn build(sp: u64, interrupted: &Regs, input: &FrameInput<'_>) -> Option<Frame> {
    // The FPU area (64-byte aligned), then the frame proper, aligned so that the handler
    // starts as if called: (RSP + 8) a multiple of 16.
    let fpu_len = fpu_area_len(input.fpu);
    let fp = sp.checked_sub(fpu_len as u64)? & !63;
    let frame = (fp.checked_sub(FRAME_SIZE as u64)? & !15).checked_sub(8)?;
    let mut b = vec![0u8; (fp - frame) as usize + fpu_len];
    let put = |b: &mut Vec<u8>, off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut b, 0, input.restorer);
    let uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | if input.fpu.xfeatures != 0 { UC_FP_XSTATE } else { 0 };
    put(&mut b, UC, uc_flags);
    b[UC_STACK..UC_STACK + 24].copy_from_slice(&input.altstack);
    for (i, v) in gregs(interrupted).iter().enumerate() {
        put(&mut b, MCONTEXT + i * 8, *v);
    }
    // cs, gs, fs, ss as the kernel stores them.
    let segs = (super::USER_CS as u64) | (super::USER_DS as u64) << 48;
    put(&mut b, MCONTEXT + SC_CSGSFS, segs);
    if let Some((err, trapno, cr2)) = input.fault {
        put(&mut b, MCONTEXT + SC_ERR, err);
        put(&mut b, MCONTEXT + SC_TRAPNO, trapno);
        put(&mut b, MCONTEXT + SC_CR2, cr2);
    }
    put(&mut b, MCONTEXT + SC_OLDMASK, input.saved_mask);
    put(&mut b, MCONTEXT + SC_FPSTATE, fp);
    put(&mut b, SIGMASK, input.saved_mask);
    b[INFO..INFO + SIGINFO_SIZE].copy_from_slice(input.info);
    let f = (fp - frame) as usize;
    let n = input.fpu.bytes.len();
    b[f..f + n].copy_from_slice(&input.fpu.bytes);
    if input.fpu.xfeatures != 0 && n >= 512 {
        let sw = f + SW_BYTES;
        b[sw..sw + 4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        b[sw + 4..sw + 8].copy_from_slice(&((n + 4) as u32).to_le_bytes());
        b[sw + 8..sw + 16].copy_from_slice(&input.fpu.xfeatures.to_le_bytes());
        b[sw + 16..sw + 20].copy_from_slice(&(n as u32).to_le_bytes());
        b[f + n..f + n + 4].copy_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
    }
    Some(Frame { addr: frame, bytes: b, sp: frame })
}

/// Bytes of a frame's FPU area: the image and, in XSAVE form, the trailing magic word.
fn fpu_area_len(fpu: &FpuImage) -> usize {
    fpu.bytes.len() + if fpu.xfeatures != 0 { 4 } else { 0 }
}

/// The most stack a frame whose FPU image has `fpu_bytes` bytes (XSAVE form) can take below
/// the top of an alternate stack: AT_MINSIGSTKSZ.
pub fn max_len(fpu_bytes: usize) -> u64 {
    // The FPU area's 64-byte alignment, the frame's 16-byte one and the return address's 8.
    (fpu_bytes + 4 + 63 + FRAME_SIZE + 15 + 8) as u64
}

/// Where the siginfo and ucontext of a frame at `sp` are (the handler's RSI and RDX).
pub fn handler_args(sp: u64) -> (u64, u64) {
    (sp + INFO as u64, sp + UC as u64)
}

/// What `rt_sigreturn` restores.
#[derive(Debug, PartialEq, Eq)]
pub struct Restored {
    /// The registers to resume with.
    pub regs: Regs,
    /// The signal mask.
    pub mask: u64,
    /// Where the FPU area is, and its length, if the frame has one.
    pub fpstate: Option<u64>,
    /// The frame names segments a return to user code cannot load (the kernel's iret would
    /// fault: SIGSEGV): a code segment other than the 64-bit user one, or, when the frame asks
    /// for its SS to be restored strictly, a stack segment other than the user one.
    pub bad_segments: bool,
}

/// The registers a frame's ucontext saved (what the signal interrupted), in `struct
/// sigcontext` order: R8 … R15, RDI, RSI, RBP, RBX, RDX, RAX, RCX, RSP, RIP, RFLAGS.
pub fn saved_gregs(uc: &[u8; UCONTEXT_SIZE_PUB]) -> [u64; 18] {
    std::array::from_fn(|i| uc_word(uc, MCONTEXT - UC + i * 8))
}

/// The fault details a ucontext holds: error code, trap number, CR2.
pub fn fault_words(uc: &[u8; UCONTEXT_SIZE_PUB]) -> (u64, u64, u64) {
    let w = |off: usize| uc_word(uc, MCONTEXT - UC + off);
    (w(SC_ERR), w(SC_TRAPNO), w(SC_CR2))
}

/// The signal mask a ucontext saved (what the thread had when the signal came).
pub fn saved_mask(uc: &[u8; UCONTEXT_SIZE_PUB]) -> u64 {
    uc_word(uc, SIGMASK - UC)
}

/// Where a ucontext's FPU area is, if it has one.
pub fn fpstate(uc: &[u8; UCONTEXT_SIZE_PUB]) -> Option<u64> {
    Some(uc_word(uc, MCONTEXT - UC + SC_FPSTATE)).filter(|fp| *fp != 0)
}

/// The word at `off` in a ucontext.
fn uc_word(uc: &[u8; UCONTEXT_SIZE_PUB], off: usize) -> u64 {
    u64::from_le_bytes(uc[off..off + 8].try_into().expect("8 bytes"))
}

/// Reads back a frame: `uc` holds the ucontext's bytes (what the handler's RDX pointed at,
/// now `RSP` at `rt_sigreturn`). Flags the user may not set are taken from `current`.
pub fn restore(uc: &[u8; UCONTEXT_SIZE_PUB], current_flags: u64) -> Restored {
    let w = |off: usize| uc_word(uc, off);
    let mut regs = from_gregs(&saved_gregs(uc));
    regs.rflags = (current_flags & !USER_FLAGS) | (regs.rflags & USER_FLAGS);
    let fp = w(MCONTEXT - UC + SC_FPSTATE);
    let segs = w(MCONTEXT - UC + SC_CSGSFS);
    let (cs, ss) = ((segs & 0xffff) as u16 | 3, ((segs >> 48) & 0xffff) as u16 | 3);
    let strict_ss = w(0) & UC_STRICT_RESTORE_SS != 0;
    let bad_segments = cs != super::USER_CS || (strict_ss && ss != super::USER_DS);
    Restored { regs, mask: w(SIGMASK - UC), fpstate: (fp != 0).then_some(fp), bad_segments }
}

/// Size of the ucontext that [`restore`] reads.
pub const UCONTEXT_SIZE_PUB: usize = UCONTEXT_SIZE;

/// Checks an FPU area read back from a frame (`magic` words included) and returns the XSAVE
/// bytes to load, or None if the frame's FPU area is malformed.
pub fn fpu_from_frame(area: &[u8], xfeatures: u64) -> Option<&[u8]> {
    if xfeatures == 0 {
        return area.get(..512);
    }
    let sw = area.get(SW_BYTES..SW_BYTES + 20)?;
    let magic1 = u32::from_le_bytes(sw[0..4].try_into().ok()?);
    let size = u32::from_le_bytes(sw[16..20].try_into().ok()?) as usize;
    if magic1 != FP_XSTATE_MAGIC1 || size != area.len().checked_sub(4)? {
        // Without the markers the kernel falls back to the legacy area: do the same.
        return area.get(..512);
    }
    let magic2 = u32::from_le_bytes(area.get(size..size + 4)?.try_into().ok()?);
    if magic2 != FP_XSTATE_MAGIC2 {
        return area.get(..512);
    }
    area.get(..size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uc_rip_is_where_saved_gregs_finds_rip() {
        let mut uc = [0u8; UCONTEXT_SIZE_PUB];
        uc[UC_RIP..UC_RIP + 8].copy_from_slice(&0x40_1234u64.to_le_bytes());
        assert_eq!(from_gregs(&saved_gregs(&uc)).rip, 0x40_1234);
    }

    fn regs() -> Regs {
        Regs {
            rax: 1,
            rbx: 2,
            rcx: 3,
            rdx: 4,
            rsi: 5,
            rdi: 6,
            rbp: 7,
            rsp: 0x7fff_0000,
            r8: 8,
            r9: 9,
            r10: 10,
            r11: 11,
            r12: 12,
            r13: 13,
            r14: 14,
            r15: 15,
            rip: 0x401000,
            rflags: 0x246,
        }
    }

    #[test]
    fn frame_is_aligned_and_round_trips() {
        let fpu = FpuImage { bytes: vec![0xab; 832], xfeatures: 7 };
        let info = [0x11u8; SIGINFO_SIZE];
        let input = FrameInput {
            info: &info,
            saved_mask: 0x200,
            altstack: [0; 24],
            fault: None,
            fpu: &fpu,
            restorer: 0x400500,
        };
        let r = regs();
        let f = build(r.rsp - RED_ZONE, &r, &input).unwrap();
        assert_eq!((f.sp + 8) % 16, 0, "handler entry alignment");
        assert!(f.addr + f.bytes.len() as u64 <= r.rsp - 128, "red zone kept");
        assert_eq!(&f.bytes[0..8], &0x400500u64.to_le_bytes());
        let (info_at, uc_at) = handler_args(f.sp);
        let off = (info_at - f.addr) as usize;
        assert_eq!(&f.bytes[off..off + SIGINFO_SIZE], &info[..]);
        let uc_off = (uc_at - f.addr) as usize;
        let uc: [u8; UCONTEXT_SIZE_PUB] = f.bytes[uc_off..uc_off + UCONTEXT_SIZE_PUB].try_into().unwrap();
        let back = restore(&uc, 0x202);
        assert_eq!(back.regs, r);
        assert_eq!(back.mask, 0x200);
        let fp = back.fpstate.unwrap();
        assert_eq!(fp % 64, 0);
        let fo = (fp - f.addr) as usize;
        let area = &f.bytes[fo..fo + 836];
        assert_eq!(fpu_from_frame(area, 7).unwrap().len(), 832);
    }

    #[test]
    fn max_len_holds_any_frame() {
        // Every misalignment of the stack top: the frame never takes more than max_len.
        let fpu = FpuImage { bytes: vec![0; 2432], xfeatures: 0xe7 };
        let info = [0u8; SIGINFO_SIZE];
        let input = FrameInput { info: &info, saved_mask: 0, altstack: [0; 24], fault: None, fpu: &fpu, restorer: 1 };
        for top in 0x10000u64..0x10040 {
            let f = build(top, &regs(), &input).unwrap();
            assert!(top - f.addr <= max_len(2432), "top {top:#x}: {} > {}", top - f.addr, max_len(2432));
        }
    }

    #[test]
    fn restore_keeps_privileged_flags() {
        let fpu = FpuImage { bytes: vec![0; 512], xfeatures: 0 };
        let info = [0u8; SIGINFO_SIZE];
        let mut r = regs();
        // IOPL and VM must not come from a frame.
        r.rflags = 0x3000 | 0x2_0000 | 0x1;
        let input = FrameInput {
            info: &info,
            saved_mask: 0,
            altstack: [0; 24],
            fault: Some((4, 14, 0x10)),
            fpu: &fpu,
            restorer: 1,
        };
        let f = build(r.rsp, &r, &input).unwrap();
        let (_, uc_at) = handler_args(f.sp);
        let uc_off = (uc_at - f.addr) as usize;
        let uc: [u8; UCONTEXT_SIZE_PUB] = f.bytes[uc_off..uc_off + UCONTEXT_SIZE_PUB].try_into().unwrap();
        assert_eq!(restore(&uc, 0x202).regs.rflags, 0x203);
        assert!(!restore(&uc, 0x202).bad_segments);
        // A handler that points the saved CS at the kernel's code segment gets SIGSEGV.
        let mut bad = uc;
        bad[MCONTEXT - UC + SC_CSGSFS..MCONTEXT - UC + SC_CSGSFS + 2].copy_from_slice(&0x8u16.to_le_bytes());
        assert!(restore(&bad, 0x202).bad_segments);
        let mut bad = uc;
        bad[MCONTEXT - UC + SC_CSGSFS + 6..MCONTEXT - UC + SC_CSGSFS + 8].copy_from_slice(&0x10u16.to_le_bytes());
        assert!(restore(&bad, 0x202).bad_segments);
    }

    #[test]
    fn frame_below_zero_is_refused() {
        let fpu = FpuImage { bytes: vec![0; 512], xfeatures: 0 };
        let info = [0u8; SIGINFO_SIZE];
        let input = FrameInput { info: &info, saved_mask: 0, altstack: [0; 24], fault: None, fpu: &fpu, restorer: 1 };
        assert!(build(100, &regs(), &input).is_none());
    }
}
