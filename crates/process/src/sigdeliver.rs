//! Running the guest's signal handlers: pushing signal frames, `rt_sigreturn`, and the calls
//! that wait for signals (`rt_sigsuspend`, `pause`).

use super::sigframe::{self, FpuImage, FrameInput};
use super::signals::{self, bit, sa, Delivery};
use super::Process;
use trapbox_trap::{Action, GuestAddr, Regs};
use trapbox_vm::arch::xsave::{set_xsave_bytes, xsave_bytes};
use trapbox_vm::Machine;

/// What the guest was doing when the signal came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// Returning from syscall `nr` with `result` (in the registers' RAX already).
    Syscall {
        /// The syscall.
        nr: u64,
        /// Its result.
        result: i64,
    },
    /// A fault: error code, vector, CR2.
    Fault(u64, u64, u64),
    /// Running user code.
    Running,
}

/// Syscalls the kernel never restarts after a handler, SA_RESTART or not (signal(7)).
fn never_restarted(nr: u64) -> bool {
    matches!(
        super::abi::lookup(nr).map(|d| d.name),
        Some(
            "pause"
                | "rt_sigsuspend"
                | "rt_sigtimedwait"
                | "nanosleep"
                | "clock_nanosleep"
                | "poll"
                | "ppoll"
                | "select"
                | "pselect6"
                | "epoll_wait"
                | "epoll_pwait"
                | "epoll_pwait2"
                | "io_getevents"
                | "msgrcv"
                | "msgsnd"
                | "semop"
                | "semtimedop"
        )
    )
}

/// RFLAGS bits a handler starts with cleared: trap, direction, resume.
const HANDLER_CLEARS: u64 = 0x100 | 0x400 | 0x1_0000;

impl Process {
    /// Delivers every pending signal the mask lets through: a handler gets a frame (nested
    /// ones for several signals, as the kernel does), a default action may end the process.
    /// Returns None when nothing changed, Resume when `regs` now enter a handler.
    pub fn deliver_signals(&mut self, m: &mut Machine, regs: &mut Regs, mut why: Interrupted) -> Option<Action> {
        self.take_host_signals();
        let mut changed = false;
        while let Some((sig, info)) = self.signals.take_deliverable() {
            let a = match self.signals.disposition(sig) {
                Delivery::Nothing => continue,
                Delivery::Kill(s) => return Some(Action::Kill { signal: s, fault: None }),
                Delivery::Handler(a) => a,
            };
            let mut saved = *regs;
            if let Interrupted::Syscall { nr, result } = why {
                if result == -(libc::EINTR as i64) && a.flags & sa::RESTART != 0 && !never_restarted(nr) {
                    saved.rax = nr;
                    saved.rip -= 2;
                    saved.rcx = saved.rip;
                }
            }
            let fault = match why {
                Interrupted::Fault(e, t, c) => Some((e, t, c)),
                _ => None,
            };
            let saved_mask = self.saved_mask.take().unwrap_or(self.signals.mask);
            if !self.push_frame(m, regs, &saved, sig, &info, &a, saved_mask, fault) {
                // As the kernel does when the frame cannot be written: SIGSEGV, by default.
                return Some(Action::Kill { signal: libc::SIGSEGV, fault: None });
            }
            self.signals.enter_handler(sig, &a);
            self.delivered.push((sig, info));
            changed = true;
            why = Interrupted::Running;
        }
        if let Some(m) = self.saved_mask.take() {
            self.signals.mask = m;
        }
        signals::mirror_mask(self.signals.mask);
        changed.then_some(Action::Resume)
    }

    /// The signals whose handlers were entered since the last call (for a handler's
    /// `on_signal`).
    pub fn take_delivered(&mut self) -> Vec<signals::Queued> {
        std::mem::take(&mut self.delivered)
    }

    /// A signal the guest's own execution raised (a fault, int3): the kernel forces it —
    /// blocked or ignored, it takes the default action — and it comes before anything pending.
    pub fn force_signal(&mut self, sig: i32, info: [u8; 128]) {
        let blocked = self.signals.mask & bit(sig) != 0;
        if blocked || self.signals.disposition(sig) == Delivery::Nothing {
            let _ = self.signals.set_action(sig, Some(signals::SigAction::default()));
            self.signals.mask &= !bit(sig);
        }
        self.signals.raise_first(sig, info);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_frame(
        &mut self,
        m: &mut Machine,
        regs: &mut Regs,
        saved: &Regs,
        sig: i32,
        info: &[u8; 128],
        a: &signals::SigAction,
        saved_mask: u64,
        fault: Option<(u64, u64, u64)>,
    ) -> bool {
        if a.flags & sa::RESTORER == 0 {
            return false;
        }
        let mut sp = saved.rsp.wrapping_sub(sigframe::RED_ZONE);
        let mut altstack = self.signals.altstack;
        if let Some((base, size)) = self.signals.altstack_range() {
            let on_it = saved.rsp > base && saved.rsp <= base + size;
            if on_it {
                altstack[8..12].copy_from_slice(&(libc::SS_ONSTACK as u32).to_le_bytes());
            } else if a.flags & sa::ONSTACK != 0 {
                sp = base + size;
            }
        }
        let Ok(x) = m.fpu() else { return false };
        let fpu = fpu_image(m, &x);
        let input = FrameInput { info, saved_mask, altstack, fault, fpu: &fpu, restorer: a.restorer };
        let Some(frame) = sigframe::build(sp, saved, &input) else { return false };
        if self.aspace.write(GuestAddr(frame.addr), &frame.bytes).is_err() {
            return false;
        }
        if m.reset_fpu().is_err() {
            return false;
        }
        let (info_at, uc_at) = sigframe::handler_args(frame.sp);
        *regs = Regs {
            rip: a.handler,
            rsp: frame.sp,
            rdi: sig as u64,
            rsi: info_at,
            rdx: uc_at,
            rax: 0,
            rflags: saved.rflags & !HANDLER_CLEARS,
            ..*saved
        };
        true
    }

    /// rt_sigreturn: back to the context saved in the frame at RSP.
    pub(super) fn sys_rt_sigreturn(&mut self, m: &mut Machine, regs: &mut Regs) -> Action {
        let segv = Action::Kill { signal: libc::SIGSEGV, fault: None };
        let mut uc = [0u8; sigframe::UCONTEXT_SIZE_PUB];
        if self.aspace.read(GuestAddr(regs.rsp), &mut uc).is_err() {
            return segv;
        }
        let r = sigframe::restore(&uc, regs.rflags);
        if r.bad_segments {
            return segv;
        }
        if let Some(fp) = r.fpstate {
            let Ok(mut x) = m.fpu() else { return segv };
            let cur = fpu_image(m, &x);
            let len = cur.bytes.len() + if cur.xfeatures != 0 { 4 } else { 0 };
            let mut area = vec![0u8; len];
            if self.aspace.read(GuestAddr(fp), &mut area).is_err() {
                return segv;
            }
            let Some(bytes) = sigframe::fpu_from_frame(&area, cur.xfeatures) else { return segv };
            let mut all = xsave_bytes(&x);
            all[..bytes.len()].copy_from_slice(bytes);
            if bytes.len() == 512 && cur.xfeatures != 0 {
                // A legacy-only area: the extended state goes back to its initial form.
                all[512..520].copy_from_slice(&3u64.to_le_bytes());
            }
            set_xsave_bytes(&mut x, &all);
            if m.set_fpu(&x).is_err() {
                return segv;
            }
        }
        self.signals.mask = r.mask & !(bit(libc::SIGKILL) | bit(libc::SIGSTOP));
        signals::mirror_mask(self.signals.mask);
        *regs = r.regs;
        Action::Resume
    }

    /// rt_sigsuspend(mask) and pause(): `mask` is in force until a signal is delivered; the
    /// handler's frame restores the mask from before. The wait itself is the caller's.
    pub(super) fn sigsuspend(&mut self, mask: Option<u64>) -> super::Handled {
        let old = self.signals.mask;
        let during = mask.unwrap_or(old) & !(bit(libc::SIGKILL) | bit(libc::SIGSTOP));
        self.signals.mask = during;
        self.saved_mask = Some(old);
        super::Handled::WaitSignal(during)
    }
}

/// The guest's FPU state as a frame holds it: the XSAVE standard form of the components a
/// frame carries ([`trapbox_vm::arch::cpuview::CpuView::frame_features`]), or the FXSAVE area
/// when the guest runs without XSAVE.
fn fpu_image(m: &Machine, x: &kvm_bindings::kvm_xsave) -> FpuImage {
    let mut all = xsave_bytes(x);
    if !m.osxsave() {
        return FpuImage { bytes: all[..512].to_vec(), xfeatures: 0 };
    }
    let view = m.cpu_view();
    let features = view.frame_features();
    let size = (view.frame_xsave_size() as usize).min(all.len());
    // XSTATE_BV names only components the frame holds.
    let bv = u64::from_le_bytes(all[512..520].try_into().expect("8 bytes")) & features;
    all[512..520].copy_from_slice(&bv.to_le_bytes());
    FpuImage { bytes: all[..size].to_vec(), xfeatures: features }
}
