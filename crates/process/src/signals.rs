//! The guest's signal state, emulated: dispositions, mask, alternate stack and pending signals
//! are kept here, and a guest handler is never installed in trapbox (invariant 4).
//!
//! The host side mirrors the guest's choices so that signals from outside behave as natively:
//! a signal the guest leaves at its default keeps the host default (the process dies of it, as
//! the guest would), an ignored one is ignored on the host, and one with a guest handler gets
//! trapbox's forwarder, which queues it ([`take_host_signals`]) and kicks the vCPU; the
//! sandbox then runs the guest's handler on a signal frame (`sigframe`). The guest's mask is
//! the host thread's mask too, so a blocked signal stays pending on the host.

/// Highest signal number.
pub const NSIG: usize = 64;

/// Kernel `struct sigaction` for x86-64 rt_sigaction (handler, flags, restorer, mask).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// SIG_DFL (0), SIG_IGN (1) or a handler address.
    pub handler: u64,
    /// SA_* flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// sa_mask.
    pub mask: u64,
}

impl SigAction {
    /// Decodes the kernel layout.
    pub fn from_bytes(b: &[u8; 32]) -> SigAction {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        SigAction { handler: w(0), flags: w(1), restorer: w(2), mask: w(3) }
    }

    /// Encodes the kernel layout.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in [self.handler, self.flags, self.restorer, self.mask].into_iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// What a signal does by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Terminate (possibly with a core dump).
    Terminate,
    /// Ignore.
    Ignore,
    /// Stop the process (not emulated: treated as ignore with a warning).
    Stop,
}

/// The default action of `sig` (signal(7)).
pub fn default_action(sig: i32) -> DefaultAction {
    match sig {
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH | libc::SIGCONT => DefaultAction::Ignore,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => DefaultAction::Stop,
        _ => DefaultAction::Terminate,
    }
}

/// What a signal that reaches the guest comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing happens (ignored).
    Nothing,
    /// The guest dies of the signal.
    Kill(i32),
    /// The guest's handler runs.
    Handler(SigAction),
}

/// A signal waiting to be delivered, with its siginfo.
pub type Queued = (i32, [u8; 128]);

/// Dispositions, mask, alternate stack and pending signals.
#[derive(Clone, Debug)]
pub struct SignalState {
    actions: [SigAction; NSIG + 1],
    /// Blocked signals (bit N-1 for signal N).
    pub mask: u64,
    /// sigaltstack's stack_t, raw.
    pub altstack: [u8; 24],
    /// Signals raised but not delivered yet, in arrival order, each for the process (None)
    /// or for one guest thread (a standard signal at most once for each).
    pending: Vec<(Option<i32>, Queued)>,
}

/// The calling thread's id: a guest thread is a host thread, so the thread at a trap is the
/// guest thread the signal state is being asked about.
fn this_thread() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Whether a pending entry for `target` is the calling thread's to take.
fn mine(target: Option<i32>) -> bool {
    target.is_none_or(|t| t == this_thread())
}

impl Default for SignalState {
    fn default() -> Self {
        let mut altstack = [0u8; 24];
        altstack[8..12].copy_from_slice(&(libc::SS_DISABLE as u32).to_le_bytes());
        SignalState { actions: [SigAction::default(); NSIG + 1], mask: 0, altstack, pending: Vec::new() }
    }
}

/// The mask bit of `sig`.
pub fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// SA_* flags trapbox acts on.
pub mod sa {
    /// Pass siginfo and ucontext (always done: the frame is the same either way).
    pub const SIGINFO: u64 = 4;
    /// Run the handler on the alternate stack.
    pub const ONSTACK: u64 = 0x0800_0000;
    /// Restart interrupted syscalls.
    pub const RESTART: u64 = 0x1000_0000;
    /// Do not block the signal during its handler.
    pub const NODEFER: u64 = 0x4000_0000;
    /// Back to SIG_DFL once delivered.
    pub const RESETHAND: u64 = 0x8000_0000;
    /// sa_restorer is valid (x86-64 requires it).
    pub const RESTORER: u64 = 0x0400_0000;
}

/// Signals an instruction raises (the kernel delivers them before others).
fn is_synchronous(sig: i32) -> bool {
    matches!(sig, libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGTRAP | libc::SIGFPE | libc::SIGSYS)
}

/// A siginfo for a signal sent by a process (kill, tgkill): si_code, sender pid and uid.
pub fn user_siginfo(sig: i32, code: i32, pid: i32, uid: u32) -> [u8; 128] {
    // si_pid and si_uid are the union's first eight bytes, where a fault's si_addr goes.
    trapbox_trap::siginfo_bytes(sig, code, u64::from(pid as u32) | u64::from(uid) << 32)
}

impl SignalState {
    /// The signals ignored now (bit `n - 1` for signal `n`).
    pub fn ignored(&self) -> u64 {
        (1..=NSIG as i32).filter(|s| self.action(*s).is_some_and(|a| a.handler == 1)).fold(0, |m, s| m | bit(s))
    }

    /// The disposition of `sig`.
    pub fn action(&self, sig: i32) -> Option<SigAction> {
        self.actions.get(usize::try_from(sig).ok()?).copied()
    }

    /// rt_sigaction's core: validates and swaps the disposition.
    pub fn set_action(&mut self, sig: i32, new: Option<SigAction>) -> Result<SigAction, i32> {
        if !(1..=NSIG as i32).contains(&sig) {
            return Err(libc::EINVAL);
        }
        if new.is_some() && (sig == libc::SIGKILL || sig == libc::SIGSTOP) {
            return Err(libc::EINVAL);
        }
        let old = self.actions[sig as usize];
        if let Some(n) = new {
            self.actions[sig as usize] = n;
        }
        Ok(old)
    }

    /// What execve does to signal state: handlers go back to the default (ignored signals
    /// stay ignored), the alternate stack is dropped, the mask is kept.
    pub fn reset_for_exec(&mut self) {
        for a in self.actions.iter_mut() {
            let ignored = a.handler == 1;
            *a = SigAction { handler: u64::from(ignored), ..SigAction::default() };
        }
        *self = SignalState { actions: self.actions, mask: self.mask, ..SignalState::default() };
    }

    /// rt_sigprocmask's core.
    pub fn set_mask(&mut self, how: i32, set: Option<u64>) -> Result<u64, i32> {
        let old = self.mask;
        if let Some(s) = set {
            self.mask = match how {
                libc::SIG_BLOCK => old | s,
                libc::SIG_UNBLOCK => old & !s,
                libc::SIG_SETMASK => s,
                _ => return Err(libc::EINVAL),
            } & !(bit(libc::SIGKILL) | bit(libc::SIGSTOP));
        }
        Ok(old)
    }

    /// Queues `sig` (a standard signal already pending is not queued twice). An ignored
    /// signal is dropped at once, as the kernel does.
    pub fn raise(&mut self, sig: i32, info: [u8; 128]) {
        self.raise_to(None, sig, info)
    }

    /// Queues `sig` for guest thread `thread` (tgkill, a signal the host delivered to that
    /// thread), or for the process with None: only that thread takes it.
    pub fn raise_to(&mut self, thread: Option<i32>, sig: i32, info: [u8; 128]) {
        if !(1..=NSIG as i32).contains(&sig) || self.disposition(sig) == Delivery::Nothing {
            return;
        }
        if sig < 32 && self.pending.iter().any(|(t, (s, _))| *s == sig && *t == thread) {
            return;
        }
        self.pending.push((thread, (sig, info)));
    }

    /// Queues `sig` for the calling thread ahead of everything pending (a fault its own
    /// instruction raised).
    pub fn raise_first(&mut self, sig: i32, info: [u8; 128]) {
        let me = Some(this_thread());
        self.pending.retain(|(t, (s, _))| !(*s == sig && *t == me));
        self.pending.insert(0, (me, (sig, info)));
    }

    /// Signals pending for the calling thread (its own and the process's) as a mask.
    pub fn pending_mask(&self) -> u64 {
        self.pending.iter().filter(|(t, _)| mine(*t)).fold(0, |m, (_, (s, _))| m | bit(*s))
    }

    /// The other threads with a signal pending for them alone, with the signal (they are
    /// kicked until they take it: one may have arrived just before its thread blocked in a
    /// host call).
    pub fn waiting_elsewhere(&self) -> Vec<(i32, i32)> {
        // Asked at every trap: most of the time nothing is pending, and gettid is not needed.
        if self.pending.iter().all(|(t, _)| t.is_none()) {
            return Vec::new();
        }
        let me = this_thread();
        let mut out: Vec<(i32, i32)> =
            self.pending.iter().filter_map(|(t, (s, _))| t.filter(|t| *t != me).map(|t| (t, *s))).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Thread `tid` left: the signals pending for it alone go with it.
    pub fn thread_left(&mut self, tid: i32) {
        self.pending.retain(|(t, _)| *t != Some(tid));
    }

    /// In a forked child: nothing is pending (fork(2)).
    pub fn forked(&mut self) {
        self.pending.clear();
    }

    /// Whether a signal pending for the calling thread is deliverable under `mask`.
    pub fn deliverable(&self, mask: u64) -> bool {
        self.pending.iter().any(|(t, (s, _))| mine(*t) && (*s == libc::SIGKILL || mask & bit(*s) == 0))
    }

    /// Takes the next signal deliverable under the current mask (lowest number first among
    /// standard signals, as the kernel picks them).
    pub fn take_deliverable(&mut self) -> Option<Queued> {
        let i = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, (t, (s, _)))| mine(*t) && (*s == libc::SIGKILL || self.mask & bit(*s) == 0))
            // Synchronous signals (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE) first, as the
            // kernel's dequeue does; then the thread's own before the process's, then the
            // lowest number.
            .min_by_key(|(_, (t, (s, _)))| (!is_synchronous(*s), t.is_none(), *s))
            .map(|(i, _)| i)?;
        Some(self.pending.remove(i).1)
    }

    /// What the guest's disposition makes of `sig`, regardless of the mask.
    pub fn disposition(&self, sig: i32) -> Delivery {
        if sig == libc::SIGKILL {
            return Delivery::Kill(sig);
        }
        let Some(a) = self.action(sig) else { return Delivery::Nothing };
        match a.handler {
            0 => match default_action(sig) {
                DefaultAction::Terminate => Delivery::Kill(sig),
                DefaultAction::Ignore | DefaultAction::Stop => Delivery::Nothing,
            },
            1 => Delivery::Nothing,
            _ => Delivery::Handler(a),
        }
    }

    /// After a handler was entered for `sig`: block what its sa_mask says (and `sig` itself
    /// unless SA_NODEFER), and forget the handler if SA_RESETHAND.
    pub fn enter_handler(&mut self, sig: i32, a: &SigAction) {
        self.mask |= a.mask;
        if a.flags & sa::NODEFER == 0 {
            self.mask |= bit(sig);
        }
        self.mask &= !(bit(libc::SIGKILL) | bit(libc::SIGSTOP));
        if a.flags & sa::RESETHAND != 0 {
            self.actions[sig as usize] = SigAction::default();
        }
    }

    /// The alternate stack as (base, size) when one is set up.
    pub fn altstack_range(&self) -> Option<(u64, u64)> {
        let sp = u64::from_le_bytes(self.altstack[0..8].try_into().expect("8"));
        let flags = i32::from_le_bytes(self.altstack[8..12].try_into().expect("4"));
        let size = u64::from_le_bytes(self.altstack[16..24].try_into().expect("8"));
        (flags & libc::SS_DISABLE == 0 && size > 0).then_some((sp, size))
    }
}

// ---- The host side ---------------------------------------------------------------------

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

/// Signals the forwarder caught for the guest, each with the siginfo of its last arrival.
struct HostQueue {
    pending: [AtomicBool; NSIG + 1],
    info: [UnsafeCell<[u8; 128]>; NSIG + 1],
    /// The host thread each arrived on: the thread the kernel chose (for a process-directed
    /// signal, one that does not block it, the host masks being the guest's) or the one it was
    /// sent to (tgkill, SIGPIPE, a thread's timer).
    thread: [AtomicI32; NSIG + 1],
}

// SAFETY: a slot's info is written only by the forwarder while its `pending` flag is clear
// and read only by `take_host_signals` after seeing the flag set (SeqCst on both sides).
unsafe impl Sync for HostQueue {}

static HOST_QUEUE: HostQueue = HostQueue {
    pending: [const { AtomicBool::new(false) }; NSIG + 1],
    info: [const { UnsafeCell::new([0; 128]) }; NSIG + 1],
    thread: [const { AtomicI32::new(0) }; NSIG + 1],
};

/// What trapbox runs for a signal whose guest disposition is to terminate (ending the run
/// cleanly); set by the sandbox.
static CLEAN_END_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// What the forwarder calls after queueing, to make the vCPU exit (set by the sandbox).
static KICK: AtomicUsize = AtomicUsize::new(0);

/// Registers the sandbox's handler for SIGINT/SIGTERM/SIGHUP and its vCPU kick.
pub fn set_host_hooks(clean_end: extern "C" fn(libc::c_int), kick: fn()) {
    CLEAN_END_HANDLER.store(clean_end as usize, Ordering::SeqCst);
    KICK.store(kick as usize, Ordering::SeqCst);
}

/// Queues `sig` for the guest as the forwarder does (for trapbox's own handlers of signals
/// that turned out to be sent to the guest).
pub extern "C" fn forward_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    forward(sig, info, ctx)
}

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let Some(slot) = usize::try_from(sig).ok().filter(|s| *s <= NSIG) else { return };
    if !HOST_QUEUE.pending[slot].load(Ordering::SeqCst) {
        if !info.is_null() {
            // SAFETY: the kernel passes a valid siginfo_t (128 bytes); the slot is not being
            // read (its flag is clear) and only this handler writes it.
            unsafe {
                std::ptr::copy_nonoverlapping(info.cast::<u8>(), (*HOST_QUEUE.info[slot].get()).as_mut_ptr(), 128)
            };
        }
        // SAFETY: gettid is async-signal-safe and has no preconditions.
        HOST_QUEUE.thread[slot].store(unsafe { libc::gettid() }, Ordering::SeqCst);
        HOST_QUEUE.pending[slot].store(true, Ordering::SeqCst);
    }
    let k = KICK.load(Ordering::SeqCst);
    if k != 0 {
        // SAFETY: KICK holds a `fn()` stored by set_host_hooks; it is async-signal-safe.
        let kick: fn() = unsafe { std::mem::transmute::<usize, fn()>(k) };
        kick();
    }
}

/// The handlers that were in place for trapbox's fault signals before [`catch_sent_faults`]
/// (the Rust runtime's stack-overflow handler): genuine faults go on to them.
static PREVIOUS_FAULT: [AtomicUsize; NSIG + 1] = [const { AtomicUsize::new(0) }; NSIG + 1];
/// Their flags (SA_SIGINFO or not).
static PREVIOUS_FLAGS: [AtomicUsize; NSIG + 1] = [const { AtomicUsize::new(0) }; NSIG + 1];

/// The fault signals trapbox keeps for itself on the host.
const FAULT_SIGNALS: [i32; 6] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP, libc::SIGSYS];

extern "C" fn on_fault_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t.
    let code = if info.is_null() { 0 } else { unsafe { (*info).si_code } };
    if code <= 0 {
        // Sent by a process (kill, sigqueue, tgkill: SI_USER, SI_QUEUE, SI_TKILL ...), not a
        // fault of trapbox's: it is the guest's, with whatever siginfo the sender made up.
        forward(sig, info, ctx);
        return;
    }
    let slot = sig as usize;
    let prev = PREVIOUS_FAULT[slot].load(Ordering::SeqCst);
    if prev > 1 && PREVIOUS_FLAGS[slot].load(Ordering::SeqCst) & libc::SA_SIGINFO as usize != 0 {
        // SAFETY: `prev` is the SA_SIGINFO handler that was installed for this signal.
        let h: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(prev) };
        h(sig, info, ctx);
        return;
    }
    // No handler to go on to: the default action, when the faulting instruction runs again.
    // SAFETY: resetting a disposition is async-signal-safe.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Makes trapbox's fault signals that another process sends (to the guest's pid, which is
/// trapbox's) reach the guest as its signals, while trapbox's own faults still end it; and
/// glibc's own 32 and 33 (which trapbox never uses: it neither cancels threads nor changes
/// credentials), whose default would end trapbox and whose glibc handlers would act on
/// trapbox's threads, likewise.
pub fn catch_sent_signals() {
    const SA_RESTORER: u64 = 0x0400_0000;
    catch_sent_faults();
    // glibc installs its own handler for 33 (its set*id broadcast) when the process creates
    // its first thread, replacing whatever was there: one thread first, so that it is done
    // before the forwarder goes in (trapbox never calls set*id itself; the guest's threads'
    // credentials change on their own host threads).
    let _ = std::thread::spawn(|| {}).join();
    // glibc's sigaction refuses 32 and 33: the kernel's, with the restorer glibc gave the
    // fault handlers just installed (x86-64 needs one).
    let mut k = [0u64; 4];
    // SAFETY: rt_sigaction reads no new action and writes the kernel sigaction (handler,
    // flags, restorer, 8-byte mask) into `k`.
    unsafe { libc::syscall(libc::SYS_rt_sigaction, libc::SIGSEGV, std::ptr::null::<u64>(), k.as_mut_ptr(), 8) };
    let restorer = k[2];
    for sig in [32, 33] {
        let (h, f) = trapbox_vm::inproc::wrap(sig, forward as *const () as usize, libc::SA_SIGINFO);
        let act = [h as u64, (f as u64 | SA_RESTORER), restorer, !0];
        // SAFETY: installs `forward` (async-signal-safe) with glibc's restorer, every signal
        // blocked while it runs (see block_all_while_handling).
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, act.as_ptr(), std::ptr::null_mut::<u64>(), 8) };
    }
}

fn catch_sent_faults() {
    for sig in FAULT_SIGNALS {
        // SAFETY: sigaction with zeroed structs; the handler only forwards (async-signal-safe)
        // or calls the handler that was there.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            let old_handler = trapbox_vm::inproc::handler_of(sig, old.sa_sigaction);
            if old_handler == on_fault_signal as *const () as usize {
                continue;
            }
            PREVIOUS_FAULT[sig as usize].store(old_handler, Ordering::SeqCst);
            PREVIOUS_FLAGS[sig as usize].store(old.sa_flags as usize, Ordering::SeqCst);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault_signal as *const () as usize;
            // On the alternate stack, where a genuine stack overflow must be handled.
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            block_all_while_handling(&mut sa.sa_mask);
            install(sig, &mut sa);
        }
    }
}

/// Moves the signals the forwarder caught into `state`, each for the guest thread it arrived
/// on (`is_guest_thread` tells those from trapbox's own).
pub fn take_host_signals(state: &mut SignalState, is_guest_thread: &dyn Fn(i32) -> bool) {
    for sig in 1..=NSIG {
        if HOST_QUEUE.pending[sig].load(Ordering::SeqCst) {
            // SAFETY: the flag is set, so the forwarder no longer writes this slot until we
            // clear it below.
            let info = unsafe { *HOST_QUEUE.info[sig].get() };
            let thread = HOST_QUEUE.thread[sig].load(Ordering::SeqCst);
            HOST_QUEUE.pending[sig].store(false, Ordering::SeqCst);
            // Delivered where the host delivered it; one that reached a thread of trapbox's
            // own goes to whichever guest thread takes it first.
            state.raise_to(Some(thread).filter(|t| is_guest_thread(*t)), sig as i32, info);
        }
    }
}

/// Set by trapbox's own signal handlers (a run ending, a kick): blocking waits for the guest
/// give up so that the run loop can act.
static TRAPBOX_WOKEN: AtomicBool = AtomicBool::new(false);

/// Notes that trapbox's own signal arrived (async-signal-safe).
pub fn note_trapbox_wakeup() {
    TRAPBOX_WOKEN.store(true, Ordering::SeqCst);
}

/// Whether trapbox's own signal arrived since the last call (which clears it).
pub fn trapbox_woken() -> bool {
    TRAPBOX_WOKEN.swap(false, Ordering::SeqCst)
}

/// Whether the forwarder has caught anything not yet taken.
pub fn host_signals_waiting() -> bool {
    HOST_QUEUE.pending.iter().any(|p| p.load(Ordering::SeqCst))
}

/// The signal trapbox sends its own threads to bring them out of guest mode or a host call.
pub fn kick_signal() -> i32 {
    sigrtmin() + 2
}

/// SIGRTMIN, asked of libc once: it is consulted at every trap (`host_owned`).
pub fn sigrtmin() -> i32 {
    static RTMIN: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *RTMIN.get_or_init(|| libc::SIGRTMIN())
}

/// Brings guest thread `tid` of this process out of guest mode or a blocking host call (which
/// returns EINTR, and is restarted if the guest's handler asks for it), so that it takes a
/// signal raised for it in the emulation.
pub fn kick_guest_thread(tid: i32) {
    // SAFETY: getpid has no preconditions; tgkill to a thread of this process with trapbox's
    // kick signal, whose handler only brings the thread out.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, kick_signal()) };
}

/// Signals whose host disposition and mask stay trapbox's: its own faults, the vCPU kick and
/// preemption, and the two that cannot be caught.
pub fn host_owned(sig: i32) -> bool {
    (1..=NSIG as i32).contains(&sig) && host_owned_mask() & bit(sig) != 0
}

/// [`host_owned`]'s signals as one set (bit `sig - 1`), worked out once: every checked
/// syscall that takes a signal set consults it.
pub fn host_owned_mask() -> u64 {
    static MASK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MASK.get_or_init(|| {
        [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
        ]
        .into_iter()
        .chain([kick_signal(), sigrtmin() + 3])
        // glibc's own (thread cancellation, set*id across threads) in trapbox's process.
        .chain([32, 33])
        .fold(0, |m, s| m | bit(s))
    })
}

/// Fills a handler's mask: every signal is blocked while one of trapbox's handlers runs, 32
/// and 33 too (glibc's sigfillset leaves them out). A handler may run on a thread's alternate
/// stack, which Rust sizes for one signal frame: with AVX-512 state two frames (a fault
/// signal sent by another process, then 32 on top of it) do not fit, and the kernel kills
/// the process for a frame it cannot write.
pub fn block_all_while_handling(mask: &mut libc::sigset_t) {
    // SAFETY: sigset_t is at least 8 bytes (the kernel's 64-signal mask comes first).
    unsafe { std::ptr::write_unaligned((mask as *mut libc::sigset_t).cast::<u64>(), !0u64) };
}

/// Installs one of trapbox's host dispositions for `sig`. With the in-process engine on, a
/// handler stands behind the engine's entry stub (`vm::inproc`), which runs it when trapbox's
/// own code is interrupted and brings guest code to a stop otherwise.
pub fn install(sig: i32, sa: &mut libc::sigaction) {
    let (h, f) = trapbox_vm::inproc::wrap(sig, sa.sa_sigaction, sa.sa_flags);
    sa.sa_sigaction = h;
    sa.sa_flags = f;
    // SAFETY: `sa` is a complete sigaction; the handlers trapbox installs are async-signal-safe.
    unsafe { libc::sigaction(sig, sa, std::ptr::null_mut()) };
}

/// Makes the host disposition of `sig` follow the guest's `a`.
pub fn mirror_disposition(sig: i32, a: &SigAction) {
    if host_owned(sig) {
        return;
    }
    // SAFETY: sigaction with a zeroed struct filled below; the installed functions only
    // touch atomics and the queue (async-signal-safe).
    unsafe {
        let mut h: libc::sigaction = std::mem::zeroed();
        block_all_while_handling(&mut h.sa_mask);
        let terminates = default_action(sig) == DefaultAction::Terminate;
        match a.handler {
            // A signal that would end the guest ends the run through trapbox, so that the end
            // is reported and handlers (a trace, a recording) finish their output.
            0 if terminates && CLEAN_END_HANDLER.load(Ordering::SeqCst) != 0 => {
                h.sa_sigaction = CLEAN_END_HANDLER.load(Ordering::SeqCst);
            }
            0 => h.sa_sigaction = libc::SIG_DFL,
            1 => h.sa_sigaction = libc::SIG_IGN,
            _ => {
                h.sa_sigaction = forward as *const () as usize;
                // No SA_RESTART: a blocking host call made for the guest must come back with
                // EINTR so that trapbox can run the handler and decide about restarting.
                h.sa_flags = libc::SA_SIGINFO;
            }
        }
        if sig == libc::SIGCHLD {
            h.sa_flags |= (a.flags & (libc::SA_NOCLDSTOP | libc::SA_NOCLDWAIT) as u64) as i32;
        }
        install(sig, &mut h);
    }
}

/// The host signal mask that mirrors guest mask `mask`: the guest's without the host-owned
/// signals, in the kernel's 64-signal word that starts a `sigset_t` (as in
/// [`block_all_while_handling`]).
fn host_mask(mask: u64) -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is the empty set; it is at least 8 bytes, the first of which
    // hold signals 1 to 64.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        std::ptr::write_unaligned((&mut set as *mut libc::sigset_t).cast::<u64>(), mask & !host_owned_mask());
        set
    }
}

/// Sets every host disposition from `state` (at start, and after execve reset the handlers).
pub fn mirror_all(state: &SignalState) {
    for sig in 1..=NSIG as i32 {
        if let Some(a) = state.action(sig) {
            mirror_disposition(sig, &a);
        }
    }
    mirror_mask(state.mask);
}

/// The guest's signal state at start: what the host ignored stays ignored (inherited across
/// exec, as natively); the rest is at its default.
pub fn inherited() -> SignalState {
    with_ignored(host_ignored())
}

/// The signals this process ignores (bit `n - 1` for signal `n`), as a program it started
/// would inherit them.
pub fn host_ignored() -> u64 {
    let mut mask = 0;
    for sig in 1..=NSIG as i32 {
        // The Rust runtime ignores SIGPIPE in trapbox itself before main; that is not
        // something the guest inherited.
        if host_owned(sig) || sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGPIPE {
            continue;
        }
        // SAFETY: querying a disposition writes only the local struct.
        let ignored = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
        };
        if ignored {
            mask |= bit(sig);
        }
    }
    mask
}

/// A start with the signals of `mask` ignored and the rest at their default (a replay
/// starts with what the recording started with, wherever it is launched from).
pub fn with_ignored(mask: u64) -> SignalState {
    let mut s = SignalState::default();
    for sig in (1..=NSIG as i32).filter(|s| mask & bit(*s) != 0) {
        let _ = s.set_action(sig, Some(SigAction { handler: 1, ..SigAction::default() }));
    }
    s
}

/// Makes the calling host thread block what the guest blocks.
pub fn mirror_mask(mask: u64) {
    let set = host_mask(mask);
    // SAFETY: sets this thread's mask from a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
}

/// Sleeps until a signal arrives on the host with the guest mask `mask` in force (what
/// sigsuspend/pause wait for), unless the forwarder already caught one.
pub fn wait_for_signal(mask: u64) {
    // SAFETY: sigset manipulation on local sets; sigsuspend restores the previous mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        if !host_signals_waiting() && !TRAPBOX_WOKEN.load(Ordering::SeqCst) {
            let during = host_mask(mask);
            libc::sigsuspend(&during);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

pub use trapbox_host::spawn_helper;

/// Signals pending on the host for this thread or process (blocked ones wait there).
pub fn host_pending() -> u64 {
    // SAFETY: sigpending writes the local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set);
        (1..=NSIG as i32).filter(|s| libc::sigismember(&set, *s) == 1).fold(0, |m, s| m | bit(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_action_rejects_kill_and_range() {
        let mut s = SignalState::default();
        assert_eq!(s.set_action(0, None), Err(libc::EINVAL));
        assert_eq!(s.set_action(65, None), Err(libc::EINVAL));
        assert_eq!(s.set_action(libc::SIGKILL, Some(SigAction::default())), Err(libc::EINVAL));
        let h = SigAction { handler: 0x401000, flags: 4, restorer: 0, mask: 0 };
        assert_eq!(s.set_action(libc::SIGINT, Some(h)), Ok(SigAction::default()));
        assert_eq!(s.action(libc::SIGINT), Some(h));
    }

    #[test]
    fn a_signal_for_another_thread_waits_for_it() {
        let mut s = SignalState::default();
        let handler = SigAction { handler: 0x1000, ..SigAction::default() };
        for sig in [libc::SIGUSR1, libc::SIGUSR2] {
            s.set_action(sig, Some(handler)).unwrap();
        }
        let info = [0u8; 128];
        let other = this_thread() + 1;
        s.raise_to(Some(other), libc::SIGUSR1, info);
        assert!(!s.deliverable(0) && s.pending_mask() == 0, "another thread's signal is not this one's");
        assert!(s.take_deliverable().is_none());
        // The process's and this thread's own: this thread's first, then the process's.
        s.raise(libc::SIGUSR1, info);
        s.raise_to(Some(this_thread()), libc::SIGUSR2, info);
        assert_eq!(s.pending_mask(), bit(libc::SIGUSR1) | bit(libc::SIGUSR2));
        assert_eq!(s.take_deliverable().map(|q| q.0), Some(libc::SIGUSR2));
        assert_eq!(s.take_deliverable().map(|q| q.0), Some(libc::SIGUSR1));
        assert!(s.take_deliverable().is_none(), "the other thread's SIGUSR1 stays for it");
    }

    #[test]
    fn disposition_pending_and_mask() {
        let mut s = SignalState::default();
        assert_eq!(s.disposition(libc::SIGABRT), Delivery::Kill(libc::SIGABRT));
        assert_eq!(s.disposition(libc::SIGCHLD), Delivery::Nothing);
        s.set_action(libc::SIGTERM, Some(SigAction { handler: 1, ..Default::default() })).unwrap();
        s.raise(libc::SIGTERM, [0; 128]);
        assert_eq!(s.pending_mask(), 0, "ignored signals are dropped");
        let h = SigAction { handler: 0x401000, flags: sa::RESTORER, restorer: 0x401100, mask: bit(libc::SIGUSR2) };
        s.set_action(libc::SIGUSR1, Some(h)).unwrap();
        s.set_mask(libc::SIG_BLOCK, Some(bit(libc::SIGUSR1))).unwrap();
        s.raise(libc::SIGUSR1, [1; 128]);
        s.raise(libc::SIGUSR1, [2; 128]);
        assert_eq!(s.pending_mask(), bit(libc::SIGUSR1), "a standard signal is pending once");
        assert!(s.take_deliverable().is_none(), "blocked");
        s.set_mask(libc::SIG_UNBLOCK, Some(bit(libc::SIGUSR1))).unwrap();
        let (sig, info) = s.take_deliverable().unwrap();
        assert_eq!((sig, info[0]), (libc::SIGUSR1, 1));
        assert_eq!(s.disposition(sig), Delivery::Handler(h));
        s.enter_handler(sig, &h);
        assert_eq!(s.mask, bit(libc::SIGUSR1) | bit(libc::SIGUSR2));
        s.set_mask(libc::SIG_BLOCK, Some(bit(libc::SIGKILL))).unwrap();
        assert_eq!(s.disposition(libc::SIGKILL), Delivery::Kill(libc::SIGKILL));
    }

    /// The calling thread's mask: whether `sig` is blocked.
    fn blocked_here(sig: i32) -> bool {
        // SAFETY: reads this thread's mask into a local set.
        unsafe {
            let mut cur: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
            libc::sigismember(&cur, sig) == 1
        }
    }

    #[test]
    fn a_helper_thread_is_born_with_every_signal_blocked_and_its_creator_keeps_its_mask() {
        std::thread::spawn(|| {
            mirror_mask(0);
            let h = spawn_helper(std::thread::Builder::new(), || {
                [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD, libc::SIGUSR1].map(blocked_here)
            })
            .unwrap();
            assert_eq!(h.join().unwrap(), [true; 4], "the helper could take a guest's signal");
            assert!(!blocked_here(libc::SIGTERM), "the creator's mask was not put back");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_mirrored_mask_blocks_what_the_guest_blocks_but_never_trapbox_s_own_signals() {
        std::thread::spawn(|| {
            let guest = bit(libc::SIGUSR1) | bit(libc::SIGTERM) | bit(libc::SIGSEGV) | bit(kick_signal()) | bit(33);
            mirror_mask(guest);
            assert!(blocked_here(libc::SIGUSR1) && blocked_here(libc::SIGTERM));
            for sig in [libc::SIGSEGV, kick_signal(), 33, libc::SIGUSR2] {
                assert!(!blocked_here(sig), "signal {sig} is blocked");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn sigaction_bytes_roundtrip() {
        let a = SigAction { handler: 1, flags: 2, restorer: 3, mask: 4 };
        assert_eq!(SigAction::from_bytes(&a.to_bytes()), a);
    }
}
