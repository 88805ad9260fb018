//! trapbox's own host signals: the clean end on SIGINT/SIGTERM/SIGHUP (and on any signal the
//! guest leaves at a terminating default), the vCPU kick, a handler's preemption of a guest
//! thread, and the watchdog of `--timeout`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::signals;

/// The last terminating signal that reached trapbox (0: none).
pub(super) static HOST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The host thread that runs the guest's first thread (the one that reacts to HOST_SIGNAL).
static MAIN_THREAD: AtomicU64 = AtomicU64::new(0);

pub(super) extern "C" fn on_host_signal(sig: libc::c_int) {
    HOST_SIGNAL.store(sig, Ordering::SeqCst);
    signals::note_trapbox_wakeup();
    trapbox_host::kick::from_signal_handler();
    let main = MAIN_THREAD.load(Ordering::SeqCst);
    if main != 0 {
        // SAFETY: pthread_kill is async-signal-safe; `main` is the run loop's thread, alive
        // while handlers are installed for it.
        unsafe { libc::pthread_kill(main as libc::pthread_t, kick_signal()) };
    }
}

extern "C" fn on_kick(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if from_elsewhere(info) {
        // The kick signal's number sent by another process (a guest's child, say): the guest's.
        signals::forward_signal(sig, info, ctx);
        return;
    }
    signals::note_trapbox_wakeup();
    trapbox_host::kick::from_signal_handler();
}

/// Whether a signal came from another process rather than from trapbox's own threads (which
/// send their kicks and preemptions with tgkill, from this process).
fn from_elsewhere(info: *mut libc::siginfo_t) -> bool {
    if info.is_null() {
        return false;
    }
    // SAFETY: the kernel passes a valid siginfo_t; si_pid is meaningful for SI_USER/SI_TKILL
    // /SI_QUEUE, the only codes a process can send.
    let (code, pid) = unsafe { ((*info).si_code, (*info).si_pid()) };
    // SAFETY: getpid has no preconditions.
    code <= 0 && pid != unsafe { libc::getpid() }
}

/// The signal trapbox sends its own threads to bring them out of guest mode or a host call.
pub(super) fn kick_signal() -> i32 {
    signals::kick_signal()
}

/// The signal that asks a guest thread's host thread for a [`trapbox_trap::Trap::Preempt`].
fn preempt_signal() -> i32 {
    signals::sigrtmin() + 3
}

thread_local! {
    /// A preemption was asked of this host thread's guest thread and not yet delivered.
    static PREEMPT_ASKED: Cell<bool> = const { Cell::new(false) };
}

extern "C" fn on_preempt(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if from_elsewhere(info) {
        signals::forward_signal(sig, info, ctx);
        return;
    }
    PREEMPT_ASKED.with(|p| p.set(true));
    trapbox_host::kick::from_signal_handler();
}

/// Whether a preemption was asked of the calling thread since the last call (which clears it).
pub(super) fn take_preempt() -> bool {
    PREEMPT_ASKED.with(|p| p.replace(false))
}

/// The host thread that runs one guest thread, for [`trapbox_trap::Kicker`]s: set while it
/// runs, cleared (under the same lock a kick takes) before the host thread may end, so that a
/// kick never reaches a thread that is gone.
#[derive(Clone, Default)]
pub(super) struct KickTarget(Arc<Mutex<Option<libc::pthread_t>>>);

impl KickTarget {
    fn set(&self, t: Option<libc::pthread_t>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// The calling thread runs the guest thread until the guard is dropped.
    pub fn claim(&self) -> KickClaim {
        // SAFETY: pthread_self has no preconditions.
        self.set(Some(unsafe { libc::pthread_self() }));
        KickClaim(self.clone())
    }

    /// A kicker for handlers.
    pub fn kicker(&self) -> trapbox_trap::Kicker {
        let target = self.0.clone();
        trapbox_trap::Kicker::new(move || {
            let t = target.lock().unwrap_or_else(|e| e.into_inner());
            match *t {
                // SAFETY: `t` is alive: it clears the target, under this lock, before it ends.
                Some(t) => unsafe { libc::pthread_kill(t, preempt_signal()) == 0 },
                None => false,
            }
        })
    }
}

fn kick_vcpu() {
    trapbox_host::kick::from_signal_handler();
}

/// Makes the calling thread the one that reacts to a clean end (the run's first thread, or a
/// thread that forked and is the only one of the new process).
pub(super) fn set_main_thread() {
    // SAFETY: pthread_self has no preconditions.
    MAIN_THREAD.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
}

/// Installs trapbox's handlers; the calling thread is the one that reacts to a clean end.
pub(super) fn install_handlers() {
    set_main_thread();
    signals::set_host_hooks(on_host_signal, kick_vcpu);
    signals::catch_sent_signals();
    type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
    for (sig, h, info) in [
        (libc::SIGINT, on_host_signal as *const () as usize, false),
        (libc::SIGTERM, on_host_signal as *const () as usize, false),
        (libc::SIGHUP, on_host_signal as *const () as usize, false),
        (kick_signal(), on_kick as Handler as *const () as usize, true),
        (preempt_signal(), on_preempt as Handler as *const () as usize, true),
    ] {
        // SAFETY: the handlers only store to atomics and thread-local cells and send signals
        // (async-signal-safe). No SA_RESTART, so a blocking host call made for the guest
        // returns EINTR and the loop notices; except for a preemption, which wants only
        // the guest's user code stopped: a host call it meets restarts.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = h;
            signals::block_all_while_handling(&mut sa.sa_mask);
            if info {
                sa.sa_flags = libc::SA_SIGINFO;
            }
            if sig == preempt_signal() {
                sa.sa_flags |= libc::SA_RESTART;
            }
            signals::install(sig, &mut sa);
        }
    }
}

/// Sends the kick signal to host thread `t`.
pub(super) fn kick_thread(t: libc::pthread_t) {
    // SAFETY: `t` is a registered guest thread's host thread, alive until it deregisters
    // (which happens under the same lock the caller holds while iterating).
    unsafe { libc::pthread_kill(t, kick_signal()) };
}

/// While it lives, kicks of a [`KickTarget`] reach the thread that claimed it.
pub(super) struct KickClaim(KickTarget);

impl Drop for KickClaim {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

/// Ends the guest from another thread when the time limit passes.
pub(super) struct Watchdog {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching until `deadline` (nothing to watch without one).
    pub(super) fn start(deadline: Option<Instant>) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = deadline.map(|deadline| {
            // SAFETY: pthread_self has no preconditions.
            let target = unsafe { libc::pthread_self() };
            let (done, fired) = (done.clone(), fired.clone());
            signals::spawn_helper(std::thread::Builder::new().name("trapbox-watchdog".into()), move || {
                while !done.load(Ordering::SeqCst) {
                    let now = Instant::now();
                    if now >= deadline {
                        fired.store(true, Ordering::SeqCst);
                        // Keep kicking until the run loop notices: a kick that lands between
                        // two KVM_RUNs is absorbed by immediate_exit, but be certain.
                        while !done.load(Ordering::SeqCst) {
                            kick_thread(target);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        return;
                    }
                    std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
                }
            })
            .expect("spawning the watchdog thread")
        });
        Watchdog { done, fired, thread }
    }

    /// Whether the time is up.
    pub(super) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// In a forked child: the watchdog thread does not exist here, so there is nothing to
    /// stop or join.
    pub(super) fn forget(mut self) {
        if let Some(t) = self.thread.take() {
            std::mem::forget(t);
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
