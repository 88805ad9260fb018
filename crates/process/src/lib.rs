//! The Linux process model on either engine, and the run loop: a guest program's image,
//! address space, descriptors and signal state, what happens to each of its syscalls, and
//! [`sandbox::Sandbox`], which joins an engine (`trapbox-vm`), this model and a
//! [`TrapHandler`](trapbox_trap::TrapHandler). It implements the trap API's
//! [`Guest`](trapbox_trap::Guest) and [`Process`](trapbox_trap::Process) for handlers; it knows
//! no tool.
//!
//! [`Process::syscall_staged`] is the passthrough: it looks the call up in the one ABI table
//! ([`abi`]), refuses what the table refuses, runs trapbox's emulation for what must not reach
//! the host as is (memory, signals, identity of threads, exit), and forwards the rest after
//! checking every pointer and descriptor ([`passthrough`]).

pub mod arena;
pub mod elf;
pub mod exec;
pub mod fork;
pub mod insn;
pub mod limits;
pub mod loader;
pub mod mem;
mod mm;
pub mod passthrough;
pub mod refusals;
pub mod sandbox;
pub mod selfview;
pub mod sigdeliver;
pub use trapbox_abi::arch::sigframe;
pub mod signals;
pub mod snapshot;
pub mod symbols;
pub mod vdso;

pub use trapbox_abi as abi;
pub use trapbox_host as host;
pub use trapbox_host::fds;

use std::collections::HashSet;
use std::fmt::Arguments;
use std::io::Write;

use abi::{Handling, Refusal};
use fds::FdGuard;
use mem::{Access, AddressSpace};
use passthrough::{stage, Checked, Staged};
use signals::{SigAction, SignalState};

use trapbox_abi::Sysno as S;
use trapbox_trap::{Action, GuestAddr, Regs, Syscall};
use trapbox_vm::Machine;

/// What each guest thread has of its own (the rest of [`Process`] is shared). The thread that
/// holds the process swaps its state in ([`Process::swap_thread`]), so the syscall code reads
/// "the current thread's" fields without knowing about threads.
#[derive(Clone, Debug)]
pub struct ThreadState {
    /// Blocked signals.
    pub mask: u64,
    /// sigaltstack's stack_t.
    pub altstack: [u8; 24],
    saved_mask: Option<u64>,
    clear_child_tid: u64,
    robust_list: (u64, u64),
}

impl ThreadState {
    /// A new thread's state: the creator's mask, no alternate stack.
    pub fn new_thread(mask: u64, clear_child_tid: u64) -> ThreadState {
        let d = SignalState::default();
        ThreadState { mask, altstack: d.altstack, saved_mask: None, clear_child_tid, robust_list: (0, 0) }
    }
}

/// How far [`Process::syscall_staged`] got.
#[derive(Debug)]
pub enum Handled {
    /// Finished: apply this action.
    Done(Action),
    /// Checked and staged: run it ([`Staged::run`], without holding the process), then
    /// [`Process::finish_host`] with its result, which is the guest's.
    Host(Box<Staged>),
    /// An emulated call that waits in the host kernel (futex): make host syscall `nr` with
    /// `args` (see [`run_host`]) without holding the process; its result is the guest's.
    Wait {
        /// Syscall number.
        nr: u64,
        /// Arguments (already checked).
        args: [u64; 6],
    },
    /// rt_sigsuspend/pause: wait until [`Process::signal_ends_wait`] says so with this mask in
    /// force, then return EINTR (the handler's frame restores the caller's mask).
    WaitSignal(u64),
}

impl From<Action> for Handled {
    fn from(a: Action) -> Handled {
        Handled::Done(a)
    }
}

/// Makes a checked host syscall for the guest that creates no descriptor (see
/// [`Handled::Wait`]).
pub fn run_host(nr: u64, args: &[u64; 6]) -> i64 {
    passthrough::raw_syscall(nr, args)
}

/// A guest process.
pub struct Process {
    /// Guest memory regions.
    pub aspace: AddressSpace,
    /// Where guest memory may live (see [`arena`]); reserved when the sandbox is built.
    pub arena: Option<arena::Arena>,
    /// System V segments attached: address -> length.
    shm: std::collections::BTreeMap<u64, u64>,
    /// The guest's resource limits (its own view; see [`limits`]).
    pub limits: limits::Limits,
    /// Per-process settings that are the guest's own view (see [`GuestView`]).
    pub view: GuestView,
    /// The lines of /proc/self/status trapbox's hardening changed, as they were before it
    /// (see [`selfview::Facts::unhardened`]).
    pub unhardened_status: Vec<String>,
    /// trapbox's descriptors, out of the guest's reach.
    pub fds: FdGuard,
    /// Emulated signal state.
    pub signals: SignalState,
    /// Current program break.
    pub brk: u64,
    /// Where the heap starts.
    pub brk_start: u64,
    /// How far it may grow.
    pub brk_limit: u64,
    /// The in-process engine's syscall stub pages, held in the arena (see
    /// [`Process::rewrite_syscall_site`]).
    stub_pages: Vec<u64>,
    /// `--memory-limit`: most bytes of accessible guest memory.
    pub memory_limit: Option<u64>,
    /// Function symbols of the loaded images.
    pub symbols: symbols::Symbols,
    /// Where trapbox's own messages go (a private duplicate of stderr).
    pub diag: std::fs::File,
    /// The guest program's absolute path (what `/proc/self/exe` names for the guest).
    pub exe: std::path::PathBuf,
    /// AT_SYSINFO_EHDR: the host's vDSO shared with the guest, for every image loaded when
    /// the process has no vDSO of trapbox's own.
    pub vdso: Option<u64>,
    /// trapbox's own vDSO ([`vdso`]): each image loaded (the first, and each exec's) gets a
    /// fresh one in this mode, so a recorded or replayed program's time calls stay recorded
    /// across exec.
    pub own_vdso: Option<vdso::TimeMode>,
    /// trapbox's mapping of that vDSO's time buffer, made with the first image's.
    pub time_alias: Option<vdso::TimeAlias>,
    /// How the current image was started: program, arguments, environment and placement
    /// (the first image's, then each exec's).
    pub image: Option<trapbox_trap::Start>,
    /// Whether this process is a forked copy of trapbox running a guest's child: it ends
    /// with its guest instead of returning to whoever started the sandbox.
    pub forked: bool,
    /// The host thread ids of the guest's threads other than the first.
    pub thread_ids: Vec<i32>,
    /// The kicks sent for signals pending for other threads (thread, signal) and when (see
    /// [`Process::kick_waiting_threads`]).
    kicks: std::sync::Mutex<Vec<((i32, i32), std::time::Instant)>>,
    /// How many forks led to this process (0 for the first one).
    pub generation: u32,
    /// A vfork child's end of the pipe its parent waits on; closed at exec or exit.
    vfork_done: Option<std::os::fd::OwnedFd>,
    /// The mask a handler's frame must restore when it differs from the current one
    /// (rt_sigsuspend's caller mask).
    saved_mask: Option<u64>,
    /// Signals whose handlers were just entered (see [`Process::take_delivered`]).
    delivered: Vec<signals::Queued>,
    /// set_tid_address pointer.
    clear_child_tid: u64,
    /// set_robust_list head and length.
    robust_list: (u64, u64),
    warned: HashSet<String>,
    /// What the box refused the guest, across the run's process tree (see [`refusals`]).
    pub refusals: Option<refusals::Refusals>,
    /// No warnings on stderr (`--quiet`); refusals are still counted.
    pub quiet: bool,
    /// Snapshots taken of this process (see [`snapshot`]).
    snapshots: Option<snapshot::Store>,
}

/// Per-process kernel state the guest sets that is the guest's own view: trapbox's process
/// keeps its own (non-dumpable, no_new_privs, no memory-write-execute restriction on its own
/// code patching) and the guest is held to its settings by trapbox.
#[derive(Clone, Debug)]
pub struct GuestView {
    /// PR_SET_DUMPABLE.
    pub dumpable: u64,
    /// PR_SET_NO_NEW_PRIVS.
    pub no_new_privs: bool,
    /// PR_SET_MDWE flags (1: refuse mappings that are writable and executable or gain exec).
    pub mdwe: u64,
    /// mlockall(MCL_FUTURE): new guest mappings are locked.
    pub lock_future: bool,
    /// Ranges mseal made immutable: start -> end.
    pub sealed: std::collections::BTreeMap<u64, u64>,
}

impl Default for GuestView {
    fn default() -> GuestView {
        GuestView { dumpable: 1, no_new_privs: false, mdwe: 0, lock_future: false, sealed: Default::default() }
    }
}

impl GuestView {
    /// Whether `[start, end)` meets a sealed range.
    pub fn sealed(&self, start: u64, end: u64) -> bool {
        self.sealed.range(..end).any(|(&s, &e)| s < end && e > start)
    }
}

/// si_code of a signal sent by kill and by tkill/tgkill.
const SI_USER: i32 = 0;
const SI_TKILL: i32 = -6;

fn neg(e: i32) -> i64 {
    -(e as i64)
}

/// Runs syscall `sysno` on the host after the caller's checks.
fn forward(sysno: S, a: &[u64; 6]) -> Result<i64, i32> {
    match passthrough::raw_syscall(sysno as u64, a) {
        r if r < 0 => Err(-r as i32),
        r => Ok(r),
    }
}

impl Process {
    /// A process with an empty address space.
    pub fn new(fds: FdGuard, diag: std::fs::File) -> Process {
        Process {
            aspace: AddressSpace::new(),
            arena: None,
            shm: Default::default(),
            limits: limits::Limits::inherited(),
            view: GuestView::default(),
            unhardened_status: Vec::new(),
            fds,
            signals: SignalState::default(),
            brk: 0,
            brk_start: 0,
            brk_limit: 0,
            stub_pages: Vec::new(),
            memory_limit: None,
            symbols: symbols::Symbols::default(),
            diag,
            exe: std::path::PathBuf::new(),
            vdso: None,
            own_vdso: None,
            time_alias: None,
            image: None,
            forked: false,
            generation: 0,
            thread_ids: Vec::new(),
            kicks: std::sync::Mutex::new(Vec::new()),
            vfork_done: None,
            saved_mask: None,
            delivered: Vec::new(),
            clear_child_tid: 0,
            robust_list: (0, 0),
            warned: HashSet::new(),
            refusals: refusals::Refusals::new(),
            quiet: false,
            snapshots: None,
        }
    }

    /// Overwrites guest code at `addr`, read-only pages included (through `/proc/self/mem`,
    /// so the mapping keeps its rights; see `mem::write_code`), and KVM drops what it may have
    /// cached for it.
    pub fn patch_code(
        &mut self,
        mem: &mut dyn trapbox_vm::MemoryMirror,
        addr: u64,
        bytes: &[u8],
    ) -> Result<(), trapbox_trap::MemError> {
        let fault = trapbox_trap::MemError::Fault(addr);
        let end = addr.checked_add(bytes.len() as u64).ok_or(fault)?;
        let (p0, p1) = (addr & !0xfff, (end + 0xfff) & !0xfff);
        let pieces = self.aspace.overlapping(p0, p1);
        if !self.aspace.covers(p0, p1) || pieces.iter().any(|(_, _, p)| *p == libc::PROT_NONE) {
            return Err(fault);
        }
        let r = mem::write_code(&pieces, addr, bytes);
        mem.code_changed(addr, bytes.len() as u64);
        r.map_err(|_| fault)
    }

    /// Loads `program` into this process's empty address space: trapbox's own vDSO first when
    /// the process has one, then the program's images and stack as `placement` says; the
    /// result becomes the current image.
    pub fn load_image(
        &mut self,
        m: &mut trapbox_vm::Machine,
        program: &std::path::Path,
        argv: &[std::ffi::OsString],
        envp: &[std::ffi::OsString],
        placement: &loader::Placement,
    ) -> Result<loader::Loaded, loader::LoadError> {
        let mut placement = placement.clone();
        placement.vdso = match self.own_vdso {
            // A replayed image has the vDSO its recording had, where it had it.
            Some(vdso::TimeMode::Replay) if placement.vdso.is_none() => None,
            Some(mode) => {
                let alias = match &mut self.time_alias {
                    Some(a) => a,
                    None => self
                        .time_alias
                        .insert(vdso::TimeAlias::new().map_err(|e| vdso::InstallError::from(vdso::VdsoError::Map(e)))?),
                };
                Some(vdso::install(m.mem(), &mut self.aspace, placement.vdso, mode, alias)?)
            }
            None => None,
        };
        let fpu_bytes = if m.osxsave() { m.cpu_view().frame_xsave_size() as usize } else { 512 };
        let facts = loader::MachineFacts {
            hwcap: m.hwcap(),
            minsigstksz: sigframe::max_len(fpu_bytes),
            vdso: placement.vdso.or(self.vdso),
        };
        let loaded = loader::load(m.mem(), &mut self.aspace, program, argv, envp, facts, &placement)?;
        self.adopt_image(&loaded, envp);
        Ok(loaded)
    }

    /// Takes on what the loader made: the image, the program's path, the heap, the symbols.
    fn adopt_image(&mut self, loaded: &loader::Loaded, envp: &[std::ffi::OsString]) {
        set_comm(&loaded.exec_path);
        self.image = Some(trapbox_trap::Start {
            program: loaded.exec_path.clone(),
            argv: loaded.argv.clone(),
            envp: envp.to_vec(),
            env_count: envp.len(),
            envp_addr: loaded.envp_addr,
            placement: loaded.placement.clone(),
            ignored_signals: Some(self.signals.ignored()),
        });
        self.exe = std::fs::canonicalize(&loaded.exe.path).unwrap_or_else(|_| loaded.exe.path.clone());
        self.brk = loaded.brk_start;
        self.brk_start = loaded.brk_start;
        self.brk_limit = loaded.brk_limit;
        let mut images = vec![&loaded.exe];
        images.extend(loaded.interp.as_ref());
        self.symbols = symbols::Symbols::load(&images);
    }

    /// Rewrites a hot syscall site of the in-process engine (see
    /// `trapbox_vm::inproc::rewrite`); its stub page, if it needs a new one, is placed in the
    /// arena as guest memory would be, and held out of the guest's reach. A site that cannot
    /// be rewritten stays with Syscall User Dispatch.
    pub fn rewrite_syscall_site(&mut self, site: u64) {
        // A rel32 jump's reach, less the page itself.
        const PAGE: u64 = 4096;
        const REACH: u64 = (1 << 31) - 2 * PAGE;
        let (aspace, pages) = (&mut self.aspace, &mut self.stub_pages);
        let mut place = |near: u64| -> Option<u64> {
            // 1 GiB below the code: out of the way of guest mappings, which grow down from the
            // arena's top (a page taken among them would move every later one, and the guest's
            // addresses must not depend on the engine), and within reach of code up to 1 GiB
            // above and below it, so that one page serves a whole library.
            let hint = near.saturating_sub(1 << 30) & !(PAGE - 1);
            let at = aspace.find_free(PAGE, PAGE, hint, hint + (64 << 20))?;
            if at.abs_diff(near) > REACH {
                return None;
            }
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
            // SAFETY: a free page of the arena (a placeholder), which MAP_FIXED replaces; it
            // is held below, so no guest mapping goes there.
            unsafe { host::mmap(at, PAGE, libc::PROT_READ | libc::PROT_EXEC, flags, -1, 0) }.ok()?;
            aspace.hold(at, at + PAGE);
            pages.push(at);
            Some(at)
        };
        let _ = trapbox_vm::inproc::rewrite::rewrite(site, &mut place);
    }

    /// Takes `a` as the place for all guest memory from now on.
    pub fn use_arena(&mut self, a: arena::Arena) {
        self.aspace.set_arena(a.start, a.end, &a.held);
        self.arena = Some(a);
    }

    /// Gives up all guest memory (the image is replaced, or the guest is gone): every region
    /// becomes a placeholder of the arena again, and the brk room is no longer held.
    pub fn release(&mut self, m: &mut Machine) {
        let regions: Vec<(u64, u64)> = self.aspace.regions().map(|(s, r)| (s, r.end)).collect();
        for (s, e) in regions {
            let _ = self.aspace.remove(m.mem(), s, e - s);
            // SAFETY: [s, e) was guest memory, in the arena, and the guest no longer uses it.
            unsafe { arena::park(s, e - s) };
        }
        self.aspace.set_brk_room(0, 0);
        self.brk_limit = (self.brk + 0xfff) & !0xfff;
        self.shm.clear();
        trapbox_vm::inproc::rewrite::forget();
        for page in std::mem::take(&mut self.stub_pages) {
            self.aspace.unhold(page);
            // SAFETY: a stub page of the image just given up: no site jumps there any more.
            unsafe { arena::park(page, 4096) };
        }
        // What execve resets: seals and locks go with the memory, a new image is dumpable.
        self.view.sealed.clear();
        self.view.lock_future = false;
        self.view.dumpable = 1;
    }

    /// The sandbox is gone: guest memory and the arena go back to the host, so that another
    /// sandbox can be built in this process.
    pub fn end(&mut self, m: &mut Machine) {
        self.release(m);
        if let Some(a) = self.arena.take() {
            a.release();
        }
    }

    /// The current thread's clear_child_tid address (set_tid_address, CLONE_CHILD_CLEARTID).
    pub fn clear_child_tid(&self) -> u64 {
        self.clear_child_tid
    }

    /// Exchanges the current thread's own state with `t` (see [`ThreadState`]).
    pub fn swap_thread(&mut self, t: &mut ThreadState) {
        std::mem::swap(&mut self.signals.mask, &mut t.mask);
        std::mem::swap(&mut self.signals.altstack, &mut t.altstack);
        std::mem::swap(&mut self.saved_mask, &mut t.saved_mask);
        std::mem::swap(&mut self.clear_child_tid, &mut t.clear_child_tid);
        std::mem::swap(&mut self.robust_list, &mut t.robust_list);
    }

    /// Whether signal delivery has work: a deliverable signal, one caught on the host, or a
    /// mask to restore after rt_sigsuspend.
    pub fn signals_waiting(&self) -> bool {
        self.kick_waiting_threads();
        self.signals.deliverable(self.signals.mask) || signals::host_signals_waiting() || self.saved_mask.is_some()
    }

    /// Prints a `trapbox: warning: ...` line once per key.
    pub fn warn_once(&mut self, key: &str, msg: Arguments<'_>) {
        if self.warned.insert(key.to_string()) && !self.quiet {
            let _ = writeln!(self.diag, "trapbox: warning: {msg}");
        }
    }

    /// The box refuses `what` (`syscall ptrace`, `ioctl TIOCSTI`): counted, and the run's
    /// first of its kind is told on stderr with `detail` (`on fd 0`) and `why`.
    pub fn refuse(&mut self, what: &str, detail: &str, why: &str) {
        match &self.refusals {
            Some(r) => r.refuse(&mut self.diag, what, detail, why, self.quiet),
            // No shared table: told once per process instead.
            None if self.warned.insert(what.to_string()) && !self.quiet => {
                let _ = writeln!(self.diag, "{}", refusals::warning(what, detail, why));
            }
            None => {}
        }
    }

    /// Handles one guest syscall up to the host call, which the caller makes (it may block, so
    /// a multi-threaded caller makes it without holding the process). `regs` are the trapping
    /// thread's registers: calls that replace the user context (execve, a child's new stack)
    /// change them and return [`Action::Resume`] or [`Action::Return`].
    pub fn syscall_staged(&mut self, m: &mut Machine, call: &Syscall, regs: &mut Regs) -> Handled {
        self.note_call(call);
        self.syscall_inner(m, call, regs)
    }

    /// Whether a signal has come that ends rt_sigsuspend/pause waiting with `mask` in force.
    pub fn signal_ends_wait(&mut self, mask: u64) -> bool {
        self.take_host_signals();
        self.signals.deliverable(mask)
    }

    fn syscall_inner(&mut self, m: &mut Machine, call: &Syscall, regs: &mut Regs) -> Handled {
        let Some(desc) = call.desc() else {
            self.warn_once(
                &format!("nosys-{}", call.nr),
                format_args!("unknown syscall {:#x}: returning ENOSYS", call.nr),
            );
            return Action::Return(neg(libc::ENOSYS)).into();
        };
        match desc.handling {
            Handling::Refused(why) => {
                let (errno, what) = match why {
                    Refusal::Escapes => (libc::EPERM, "it would reach outside the box"),
                    Refusal::Obsolete => (libc::ENOSYS, "it is obsolete"),
                };
                self.refuse(&format!("syscall {}", desc.name), "", what);
                Action::Return(neg(errno)).into()
            }
            Handling::Emulated => match desc.sysno {
                // The calls that may block wait without holding the process.
                S::futex => match self.futex(&call.args) {
                    Ok(()) => Handled::Wait { nr: desc.nr, args: call.args },
                    Err(e) => Action::Return(neg(e)).into(),
                },
                S::pause => self.sigsuspend(None),
                S::rt_sigsuspend => {
                    if call.args[1] != 8 {
                        return Action::Return(neg(libc::EINVAL)).into();
                    }
                    match self.read_struct::<8>(call.args[0]) {
                        Ok(b) => self.sigsuspend(Some(u64::from_le_bytes(b))),
                        Err(e) => Action::Return(neg(e)).into(),
                    }
                }
                sysno => self.emulate(m, sysno, &call.args, regs).into(),
            },
            Handling::Host => {
                if matches!(desc.sysno, S::dup2 | S::dup3) && call.args[1] >= self.limits.soft(libc::RLIMIT_NOFILE) {
                    return Action::Return(neg(libc::EBADF)).into();
                }
                let threads = |t: i32| self.is_guest_thread(t);
                match stage(desc, &call.args, &self.aspace, &self.fds, &threads) {
                    Checked::Ok(staged) => match self.own_exe_link(desc.sysno, &call.args) {
                        Some(r) => Action::Return(r).into(),
                        None => Handled::Host(staged),
                    },
                    Checked::Refuse(e) => Action::Return(neg(e)).into(),
                    Checked::Refused { what, errno, why } => {
                        // ioctl, fcntl, setsockopt and getsockopt all name a descriptor first.
                        self.refuse(&what.to_string(), &format!("on fd {}", call.args[0] as i32), why);
                        Action::Return(neg(errno)).into()
                    }
                    Checked::Unsupported(arg) => {
                        self.warn_once(
                            desc.name,
                            format_args!("{}: argument `{arg}` cannot be checked yet; returning ENOSYS", desc.name),
                        );
                        Action::Return(neg(libc::ENOSYS)).into()
                    }
                }
            }
        }
    }

    /// Completes a staged host call that returned `ret` (see [`Staged::finish`]); the result
    /// is the guest's.
    pub fn finish_host(&mut self, staged: Box<Staged>, ret: i64) -> i64 {
        let fd_result = staged.returns_fd();
        let view = self.self_view(&staged, ret);
        let ret = staged.finish(ret, &self.aspace);
        let ret = match view {
            Some(v) => self.apply_view(v, ret, fd_result),
            None => ret,
        };
        // The guest's RLIMIT_NOFILE, which the host does not hold it to (see `limits`): a
        // descriptor at or above it means there was no free one below.
        if fd_result && ret >= 0 && ret as u64 >= self.limits.soft(libc::RLIMIT_NOFILE) {
            // SAFETY: the descriptor this call just made for the guest, not yet returned.
            unsafe { libc::close(ret as i32) };
            return neg(libc::EMFILE);
        }
        ret
    }

    /// What of the guest's /proc view (`selfview`) a staged call that returned `ret` touches.
    fn self_view(&self, staged: &Staged, ret: i64) -> Option<SelfView> {
        if ret < 0 {
            return None;
        }
        let me = mem::own_pid();
        let ours = |t: i32| self.is_guest_thread(t);
        let reserved = |n: i32| self.fds.is_reserved(n.into());
        match staged.sysno() {
            S::open | S::openat | S::openat2 | S::creat => {
                if let Some(p) = staged.guest_path() {
                    if self.names_own_exe(p.as_bytes()) {
                        return Some(SelfView::Exe);
                    }
                    match selfview::parse(&p, me, &ours) {
                        Some(selfview::ProcPath::Fd(n)) if reserved(n) => return Some(SelfView::Gone),
                        Some(selfview::ProcPath::Task(_)) => return Some(SelfView::Gone),
                        _ => {}
                    }
                }
                match staged.resolved().and_then(|r| selfview::parse(r, me, &ours)) {
                    Some(selfview::ProcPath::File(f)) => Some(SelfView::File(f)),
                    _ => None,
                }
            }
            S::readlink | S::readlinkat => match staged.guest_path().and_then(|p| selfview::parse(&p, me, &ours)) {
                Some(selfview::ProcPath::Fd(n)) if reserved(n) => Some(SelfView::Gone),
                Some(selfview::ProcPath::Task(_)) => Some(SelfView::Gone),
                _ => None,
            },
            S::getdents64 => {
                let dir = std::fs::read_link(format!("/proc/self/fd/{}", staged.arg(0) as i32)).ok()?;
                match selfview::parse(&dir.to_string_lossy(), me, &ours)? {
                    selfview::ProcPath::FdDir => Some(SelfView::List(staged.arg(1), ListOf::Fds)),
                    selfview::ProcPath::TaskDir => Some(SelfView::List(staged.arg(1), ListOf::Threads)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Applies `v` to the result `ret` of the call (see [`Process::self_view`]).
    fn apply_view(&mut self, v: SelfView, ret: i64, fd_result: bool) -> i64 {
        if ret < 0 {
            return ret;
        }
        match v {
            SelfView::Gone => {
                if fd_result {
                    // SAFETY: the descriptor this call just made for the guest, not returned.
                    unsafe { libc::close(ret as i32) };
                }
                neg(libc::ENOENT)
            }
            SelfView::File(f) => {
                let content = self.proc_content(f);
                let fd = ret as i32;
                let mem = match host::memory_file("trapbox-proc", &content) {
                    Ok(m) => m,
                    Err(_) => return ret,
                };
                // Read from its start (writing it left the offset at its end).
                // SAFETY: lseek on the memory file just made.
                unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&mem), 0, libc::SEEK_SET) };
                // The guest's descriptor becomes the file trapbox wrote, under the same number
                // and close-on-exec flag.
                // SAFETY: F_GETFD on the guest's new descriptor.
                let cloexec = unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0;
                let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
                // SAFETY: dup3 replaces the guest's new descriptor with the memory file.
                unsafe { libc::dup3(std::os::fd::AsRawFd::as_raw_fd(&mem), fd, flags) };
                ret
            }
            SelfView::Exe => {
                let fd = ret as i32;
                // SAFETY: F_GETFL/F_GETFD on the guest's new descriptor.
                let (fl, fdfl) = unsafe { (libc::fcntl(fd, libc::F_GETFL), libc::fcntl(fd, libc::F_GETFD)) };
                let mut o = std::fs::OpenOptions::new();
                o.read(fl & libc::O_ACCMODE != libc::O_WRONLY).write(fl & libc::O_ACCMODE != libc::O_RDONLY);
                if let Ok(f) = o.open(&self.exe) {
                    let flags = if fdfl & libc::FD_CLOEXEC != 0 { libc::O_CLOEXEC } else { 0 };
                    // SAFETY: dup3 replaces the guest's new descriptor with the guest's program.
                    unsafe { libc::dup3(std::os::fd::AsRawFd::as_raw_fd(&f), fd, flags) };
                }
                ret
            }
            SelfView::List(buf, of) => {
                let mut b = vec![0u8; ret as usize];
                if self.aspace.read(GuestAddr(buf), &mut b).is_err() {
                    return ret;
                }
                let hide = |name: &str| match name.parse::<i32>() {
                    Ok(n) => match of {
                        ListOf::Fds => self.fds.is_reserved(n.into()),
                        // SAFETY: getpid has no preconditions.
                        ListOf::Threads => n != unsafe { libc::getpid() } && !self.is_guest_thread(n),
                    },
                    Err(_) => false,
                };
                let n = selfview::filter_dirents64(&mut b, &hide);
                if self.aspace.write(GuestAddr(buf), &b).is_err() {
                    return neg(libc::EFAULT);
                }
                n as i64
            }
        }
    }

    /// The bytes of one of the guest's own /proc files (see `selfview`).
    fn proc_content(&self, f: selfview::ProcFile) -> Vec<u8> {
        let Some(img) = &self.image else { return Vec::new() };
        let joined = |v: &[std::ffi::OsString]| {
            v.iter()
                .flat_map(|a| std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()).iter().copied().chain([0]))
                .collect()
        };
        let (sp, stack) = img.placement.stack_image.clone().unwrap_or_default();
        let word = |i: usize| stack.get(i * 8..i * 8 + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8")));
        // The initial stack: argc, argv, NULL, envp, NULL, auxv.
        let argc = word(0) as usize;
        let envc = img.env_count;
        let aux_at = 1 + argc + 1 + envc + 1;
        let facts = || {
            let strings = |first: usize, n: usize| {
                if n == 0 {
                    return (0, 0);
                }
                let (a, last) = (word(first), word(first + n - 1));
                let end = stack
                    .get((last - sp) as usize..)
                    .and_then(|s| s.iter().position(|b| *b == 0))
                    .map_or(last, |z| last + z as u64 + 1);
                (a, end)
            };
            let code = self.symbols_range();
            selfview::Facts {
                code,
                stack_start: img.placement.stack_base.map_or(0, |b| b + loader::STACK_SIZE),
                args: strings(1, argc),
                env: strings(1 + argc + 1, envc),
                threads: 1 + self.thread_ids.len() as u64,
                unhardened: self.unhardened_status.clone(),
                no_new_privs: self.view.no_new_privs,
            }
        };
        match f {
            selfview::ProcFile::Cmdline => joined(&img.argv),
            selfview::ProcFile::Environ => joined(&img.envp),
            selfview::ProcFile::Auxv => {
                let mut out = Vec::new();
                let mut i = aux_at;
                loop {
                    let (k, v) = (word(i), word(i + 1));
                    out.extend_from_slice(&k.to_le_bytes());
                    out.extend_from_slice(&v.to_le_bytes());
                    if k == 0 || (i + 2) * 8 > stack.len() {
                        break;
                    }
                    i += 2;
                }
                out
            }
            selfview::ProcFile::Maps => {
                let host = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
                let regions: Vec<(u64, u64)> = self.aspace.regions().map(|(s, r)| (s, r.end)).collect();
                let stack = img.placement.stack_base.map(|b| (b, b + loader::STACK_SIZE));
                let heap =
                    (self.brk > self.brk_start).then_some((self.brk_start & !0xfff, (self.brk + 0xfff) & !0xfff));
                selfview::maps(&host, &regions, stack, heap).into_bytes()
            }
            selfview::ProcFile::Stat => {
                let host = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
                selfview::stat(host.trim_end(), &facts()).into_bytes()
            }
            selfview::ProcFile::Status => {
                let host = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                selfview::status(&host, &facts()).into_bytes()
            }
        }
    }

    /// The main image's code: the lowest and highest address of its executable regions.
    fn symbols_range(&self) -> (u64, u64) {
        let exe = self.image.as_ref().and_then(|i| i.placement.exe_base);
        let mut lo = u64::MAX;
        let mut hi = 0;
        for (s, r) in self.aspace.regions() {
            if r.prot & libc::PROT_EXEC != 0 && exe.is_none_or(|b| s >= b && s < b + (1 << 32)) {
                lo = lo.min(s);
                hi = hi.max(r.end);
                break;
            }
        }
        if lo == u64::MAX {
            (0, 0)
        } else {
            (lo, hi)
        }
    }

    /// readlink of `/proc/self/exe` (and its aliases) names the guest's program, not trapbox:
    /// the guest's process identity is its own even though it shares trapbox's pid.
    fn own_exe_link(&self, sysno: S, a: &[u64; 6]) -> Option<i64> {
        let (path, buf, size) = match sysno {
            S::readlink => (a[0], a[1], a[2]),
            S::readlinkat => (a[1], a[2], a[3]),
            _ => return None,
        };
        let p = self.aspace.read_cstr(GuestAddr(path), 4096).ok()?;
        if !self.names_own_exe(&p) {
            return None;
        }
        let target = std::os::unix::ffi::OsStrExt::as_bytes(self.exe.as_os_str());
        let n = target.len().min(size as usize);
        Some(match self.aspace.write(GuestAddr(buf), &target[..n]) {
            Ok(()) => n as i64,
            Err(_) => neg(libc::EFAULT),
        })
    }

    /// Whether `path` is `/proc/self/exe` or an alias of it — any of the guest's threads, by
    /// pid, tid or task — the guest's program, not trapbox.
    pub(crate) fn names_own_exe(&self, p: &[u8]) -> bool {
        let me = std::process::id() as i32;
        let ours = |s: &[u8]| {
            s == b"self"
                || s == b"thread-self"
                || std::str::from_utf8(s)
                    .ok()
                    .and_then(|t| t.parse::<i32>().ok())
                    .is_some_and(|t| t == me || self.is_guest_thread(t))
        };
        let Some(rest) = p.strip_prefix(b"/proc/").and_then(|r| r.strip_suffix(b"/exe")) else { return false };
        let parts: Vec<&[u8]> = rest.split(|b| *b == b'/').collect();
        let is_exe = match parts.as_slice() {
            [who] => ours(who),
            [who, b"task", t] => ours(who) && ours(t),
            _ => false,
        };
        is_exe && !self.exe.as_os_str().is_empty()
    }

    fn read_struct<const N: usize>(&self, addr: u64) -> Result<[u8; N], i32> {
        let mut b = [0u8; N];
        self.aspace.read(GuestAddr(addr), &mut b).map_err(|_| libc::EFAULT)?;
        Ok(b)
    }

    fn write_out(&self, addr: u64, data: &[u8]) -> Result<(), i32> {
        if addr == 0 {
            return Ok(());
        }
        self.aspace.write(GuestAddr(addr), data).map_err(|_| libc::EFAULT)
    }

    fn check(&self, addr: u64, len: u64, acc: Access) -> Result<(), i32> {
        if addr == 0 {
            return Ok(());
        }
        self.aspace.check(addr, len, acc).map_err(|_| libc::EFAULT)
    }

    /// The syscalls trapbox implements itself.
    fn emulate(&mut self, m: &mut Machine, sysno: S, a: &[u64; 6], regs: &mut Regs) -> Action {
        let ret = |r: Result<i64, i32>| Action::Return(r.unwrap_or_else(neg));
        match sysno {
            S::fork | S::vfork | S::clone => self.sys_clone(m, regs, fork::CloneArgs::decode(sysno, a)),
            // glibc falls back to clone when clone3 is missing; one entry point is enough.
            S::clone3 => Action::Return(neg(libc::ENOSYS)),
            S::execve | S::execveat => self.sys_execve(m, regs, sysno, a),
            S::mmap => Action::Return(self.sys_mmap(m.mem(), a)),
            S::munmap => Action::Return(self.sys_munmap(m.mem(), a[0], a[1])),
            S::mprotect => Action::Return(self.sys_mprotect(m.mem(), a[0], a[1], a[2] as i32)),
            S::mremap => Action::Return(self.sys_mremap(m.mem(), a)),
            S::brk => Action::Return(self.sys_brk(m.mem(), a[0])),
            S::shmat => Action::Return(self.sys_shmat(m.mem(), a[0] as i32, a[1], a[2] as i32)),
            S::shmdt => Action::Return(self.sys_shmdt(m.mem(), a[0])),
            S::exit | S::exit_group => Action::Exit(a[0] as i32),
            S::arch_prctl => ret(self.arch_prctl(m, a[0] as i32, a[1])),
            S::set_tid_address => {
                self.clear_child_tid = a[0];
                // SAFETY: gettid has no preconditions.
                Action::Return(unsafe { libc::gettid() } as i64)
            }
            S::set_robust_list => {
                if a[1] != 24 {
                    return Action::Return(neg(libc::EINVAL));
                }
                self.robust_list = (a[0], a[1]);
                Action::Return(0)
            }
            S::get_robust_list => ret(self.get_robust_list(a)),
            // No rseq area is registered on the host: the kernel would write to it behind the
            // guest's back from trapbox's thread. glibc runs without rseq on ENOSYS.
            S::rseq => Action::Return(neg(libc::ENOSYS)),
            S::rt_sigaction => ret(self.rt_sigaction(a)),
            S::rt_sigprocmask => ret(self.rt_sigprocmask(a)),
            S::sigaltstack => ret(self.sigaltstack(a, regs.rsp)),
            S::rt_sigpending => {
                if a[1] != 8 {
                    return Action::Return(neg(libc::EINVAL));
                }
                self.take_host_signals();
                let set = (self.signals.pending_mask() | signals::host_pending()) & self.signals.mask;
                ret(self.write_out(a[0], &set.to_le_bytes()).map(|_| 0))
            }
            S::rt_sigreturn => self.sys_rt_sigreturn(m, regs),
            S::kill => self.send(SignalTarget::Process(a[0] as i32), a[1] as i32, None),
            S::tgkill => self.send(SignalTarget::Thread(a[0] as i32, a[1] as i32), a[2] as i32, None),
            // SAFETY: getpid has no preconditions.
            S::tkill => self.send(SignalTarget::Thread(unsafe { libc::getpid() }, a[0] as i32), a[1] as i32, None),
            S::rt_sigqueueinfo | S::rt_tgsigqueueinfo | S::pidfd_send_signal => {
                let (target, sig, info_at) = match sysno {
                    S::rt_sigqueueinfo => (SignalTarget::Process(a[0] as i32), a[1], a[2]),
                    S::rt_tgsigqueueinfo => (SignalTarget::Thread(a[0] as i32, a[1] as i32), a[2], a[3]),
                    _ => {
                        if self.fds.is_reserved(a[0] as i32 as i64) {
                            return Action::Return(neg(libc::EBADF));
                        }
                        if a[3] != 0 {
                            return Action::Return(neg(libc::EINVAL));
                        }
                        (SignalTarget::Pidfd(a[0] as i32), a[1], a[2])
                    }
                };
                // The siginfo is read once, here; NULL (pidfd_send_signal) means "as kill".
                let info = if info_at == 0 && sysno == S::pidfd_send_signal {
                    None
                } else {
                    match self.read_struct::<128>(info_at) {
                        Ok(i) => Some(i),
                        Err(e) => return Action::Return(neg(e)),
                    }
                };
                self.send(target, sig as i32, info)
            }
            S::prctl => ret(self.prctl(a)),
            S::getrlimit => ret(self.prlimit(0, a[0], 0, a[1])),
            S::setrlimit => ret(self.prlimit(0, a[0], a[1], 0)),
            S::prlimit64 => ret(self.prlimit(a[0] as i32, a[1], a[2], a[3])),
            S::mlockall => ret(self.mlockall(a[0])),
            S::munlockall => ret(self.munlockall()),
            S::mseal => ret(self.mseal(a[0], a[1], a[2])),
            S::close_range => ret(self.close_range(a)),
            S::mincore => ret(self.mincore(a)),
            _ => {
                let name = sysno.name();
                self.warn_once(name, format_args!("{name} is not supported yet; returning ENOSYS"));
                Action::Return(neg(libc::ENOSYS))
            }
        }
    }

    fn arch_prctl(&mut self, m: &mut Machine, code: i32, addr: u64) -> Result<i64, i32> {
        const SET_GS: i32 = 0x1001;
        const SET_FS: i32 = 0x1002;
        const GET_FS: i32 = 0x1003;
        const GET_GS: i32 = 0x1004;
        let vm_err = |_| libc::EIO;
        match code {
            SET_FS | SET_GS if addr >= mem::USER_END => Err(libc::EPERM),
            SET_FS => m.set_fs_base(addr).map(|_| 0).map_err(vm_err),
            SET_GS => m.set_gs_base(addr).map(|_| 0).map_err(vm_err),
            GET_FS => {
                let v = m.fs_base().map_err(vm_err)?;
                self.write_out(addr, &v.to_le_bytes()).map(|_| 0)
            }
            GET_GS => {
                let v = m.gs_base().map_err(vm_err)?;
                self.write_out(addr, &v.to_le_bytes()).map(|_| 0)
            }
            _ => match xcomp(code, addr, m.cpu_view().user_features())? {
                XcompAnswer::Done => Ok(0),
                XcompAnswer::Write(v) => self.write_out(addr, &v.to_le_bytes()).map(|_| 0),
            },
        }
    }

    fn get_robust_list(&self, a: &[u64; 6]) -> Result<i64, i32> {
        if a[0] != 0 && !self.is_guest_thread(a[0] as i32) {
            return Err(libc::ESRCH);
        }
        self.check(a[1], 8, Access::Write)?;
        self.check(a[2], 8, Access::Write)?;
        self.write_out(a[1], &self.robust_list.0.to_le_bytes())?;
        self.write_out(a[2], &self.robust_list.1.to_le_bytes())?;
        Ok(0)
    }

    fn rt_sigaction(&mut self, a: &[u64; 6]) -> Result<i64, i32> {
        if a[3] != 8 {
            return Err(libc::EINVAL);
        }
        let new = if a[1] != 0 { Some(SigAction::from_bytes(&self.read_struct::<32>(a[1])?)) } else { None };
        self.check(a[2], 32, Access::Write)?;
        let old = self.signals.set_action(a[0] as i32, new)?;
        if let Some(n) = new {
            signals::mirror_disposition(a[0] as i32, &n);
        }
        self.write_out(a[2], &old.to_bytes())?;
        Ok(0)
    }

    fn rt_sigprocmask(&mut self, a: &[u64; 6]) -> Result<i64, i32> {
        if a[3] != 8 {
            return Err(libc::EINVAL);
        }
        let set = if a[1] != 0 { Some(u64::from_le_bytes(self.read_struct::<8>(a[1])?)) } else { None };
        self.check(a[2], 8, Access::Write)?;
        let old = self.signals.set_mask(a[0] as i32, set)?;
        signals::mirror_mask(self.signals.mask);
        self.write_out(a[2], &old.to_le_bytes())?;
        Ok(0)
    }

    fn sigaltstack(&mut self, a: &[u64; 6], sp: u64) -> Result<i64, i32> {
        let new = if a[0] != 0 { Some(self.read_struct::<24>(a[0])?) } else { None };
        self.check(a[1], 24, Access::Write)?;
        let mut old = self.signals.altstack;
        let on_it = self.signals.altstack_range().is_some_and(|(base, size)| sp > base && sp <= base + size);
        if on_it {
            old[8..12].copy_from_slice(&(libc::SS_ONSTACK as u32).to_le_bytes());
        }
        if let Some(n) = new {
            if on_it {
                return Err(libc::EPERM);
            }
            let flags = i32::from_le_bytes(n[8..12].try_into().expect("4 bytes"));
            let size = u64::from_le_bytes(n[16..24].try_into().expect("8 bytes"));
            if flags & !(libc::SS_DISABLE | libc::SS_ONSTACK) != 0 {
                return Err(libc::EINVAL);
            }
            if flags & libc::SS_DISABLE == 0 && size < libc::MINSIGSTKSZ as u64 {
                return Err(libc::ENOMEM);
            }
            self.signals.altstack = n;
        }
        self.write_out(a[1], &old)?;
        Ok(0)
    }

    /// Every way the guest sends a signal — kill, tkill, tgkill, rt_sigqueueinfo,
    /// rt_tgsigqueueinfo, pidfd_send_signal — goes through here (`send`).
    ///
    /// Signals go to the host, whose dispositions and mask mirror the guest's (`signals`): a
    /// signal to the guest itself then behaves exactly like one from outside. But a signal
    /// whose host side stays trapbox's (its fault signals, its kick and preemption signals,
    /// glibc's own 32 and 33) never reaches a thread of this process on the host: sent to the
    /// guest itself, it is raised in the emulation, with the siginfo the guest gave (queued
    /// siginfo is the guest's to forge, as natively; it is never taken for a fault of
    /// trapbox's). The guest cannot name trapbox's own threads, nor every process at once.
    fn send(&mut self, target: SignalTarget, sig: i32, info: Option<[u8; 128]>) -> Action {
        // SAFETY: getpid and getuid have no preconditions.
        let (me, uid) = unsafe { (libc::getpid(), libc::getuid()) };
        if !(0..=signals::NSIG as i32).contains(&sig) {
            return Action::Return(neg(libc::EINVAL));
        }
        let (pid, tid) = match target {
            SignalTarget::Process(p) => (p, None),
            SignalTarget::Thread(p, t) => (p, Some(t)),
            SignalTarget::Pidfd(fd) => match pidfd_pid(fd) {
                Some(p) => (p, None),
                None => return Action::Return(neg(libc::EBADF)),
            },
        };
        if pid == -1 {
            // Every process the user may signal: far outside the box.
            return Action::Return(neg(libc::EPERM));
        }
        if let Some(t) = tid {
            if pid == me && !self.is_guest_thread(t) {
                return Action::Return(neg(libc::ESRCH));
            }
        }
        if let (Some(i), false) = (info, matches!(target, SignalTarget::Pidfd(_))) {
            // As the kernel: a queued siginfo claiming to come from the kernel (si_code >= 0)
            // or from tkill may only be sent to the sending thread itself (the process, for
            // rt_sigqueueinfo from its first thread).
            let code = i32::from_le_bytes(i[8..12].try_into().expect("4 bytes"));
            // SAFETY: gettid has no preconditions.
            if (code >= 0 || code == SI_TKILL) && unsafe { libc::gettid() } != tid.unwrap_or(pid) {
                return Action::Return(neg(libc::EPERM));
            }
        }
        if pid == me && sig != 0 && signals::host_owned(sig) {
            let code = if tid.is_some() { SI_TKILL } else { SI_USER };
            let mut info = info.unwrap_or_else(|| signals::user_siginfo(sig, code, me, uid));
            info[0..4].copy_from_slice(&sig.to_le_bytes());
            // Another thread it is for is kicked to take it when this syscall's trap asks
            // `signals_waiting`.
            self.signals.raise_to(tid, sig, info);
            return Action::Return(0);
        }
        let info_ptr = info.as_ref().map_or(0, |i| i.as_ptr() as u64);
        let r = match (target, info) {
            (SignalTarget::Pidfd(fd), _) => passthrough::raw_syscall(
                libc::SYS_pidfd_send_signal as u64,
                &[fd as u64, sig as u64, info_ptr, 0, 0, 0],
            ),
            (_, Some(_)) if tid.is_some() => passthrough::raw_syscall(
                libc::SYS_rt_tgsigqueueinfo as u64,
                &[pid as u64, tid.unwrap_or(0) as u64, sig as u64, info_ptr, 0, 0],
            ),
            (_, Some(_)) => {
                passthrough::raw_syscall(libc::SYS_rt_sigqueueinfo as u64, &[pid as u64, sig as u64, info_ptr, 0, 0, 0])
            }
            (_, None) => match tid {
                Some(t) => {
                    passthrough::raw_syscall(libc::SYS_tgkill as u64, &[pid as u64, t as u64, sig as u64, 0, 0, 0])
                }
                None => passthrough::raw_syscall(libc::SYS_kill as u64, &[pid as u64, sig as u64, 0, 0, 0, 0]),
            },
        };
        Action::Return(r)
    }

    /// Moves the signals caught on the host into the guest's pending signals, each for the
    /// guest thread it arrived on; another thread that got one is kicked to take it.
    pub fn take_host_signals(&mut self) {
        // SAFETY: getpid has no preconditions.
        let (me, ids) = (unsafe { libc::getpid() }, &self.thread_ids);
        signals::take_host_signals(&mut self.signals, &|t| t == me || ids.contains(&t));
        self.kick_waiting_threads();
    }

    /// Kicks every other thread a signal is pending for alone: one can arrive just before its
    /// thread blocks in a host call, too late to interrupt it, and only a kick brings it out
    /// to take it. Asked at every trap while the signal waits, but a thread is kicked once for
    /// a signal and again only if it has not taken it a millisecond later: a thread that
    /// traps every microsecond would otherwise kick the other out of guest code faster than
    /// it can run, and a program that keeps signalling a thread would stop it for good.
    fn kick_waiting_threads(&self) {
        let waiting = self.signals.waiting_elsewhere();
        if waiting.is_empty() {
            return;
        }
        const AGAIN: std::time::Duration = std::time::Duration::from_millis(1);
        let now = std::time::Instant::now();
        let mut kicks = self.kicks.lock().unwrap_or_else(|e| e.into_inner());
        kicks.retain(|(w, at)| waiting.contains(w) && now.duration_since(*at) < AGAIN);
        for w in waiting {
            if !kicks.iter().any(|(k, _)| *k == w) {
                signals::kick_guest_thread(w.0);
                kicks.push((w, now));
            }
        }
    }

    /// Whether `tid` names one of the guest's threads.
    fn is_guest_thread(&self, tid: i32) -> bool {
        tid == mem::own_pid() || self.thread_ids.contains(&tid)
    }

    /// futex's pointer checks; the call itself is made by the caller (it may block).
    fn futex(&mut self, a: &[u64; 6]) -> Result<(), i32> {
        let cmd = a[1] & 0x7f;
        if a[0] & 3 != 0 {
            return Err(libc::EINVAL);
        }
        self.aspace.check(a[0], 4, Access::Read).map_err(|_| libc::EFAULT)?;
        // Which commands read a timeout in arg 4 and which use arg 5 as a second futex word.
        let timeout = matches!(cmd, 0 | 6 | 9 | 11 | 13);
        let uaddr2 = matches!(cmd, 3 | 4 | 5 | 11 | 12);
        if timeout {
            self.check(a[3], 16, Access::Read)?;
        }
        if uaddr2 {
            self.aspace.check(a[4], 4, Access::Write).map_err(|_| libc::EFAULT)?;
        }
        Ok(())
    }

    /// prctl: the options that set per-process state trapbox relies on are the guest's own
    /// view ([`GuestView`]); per-thread ones and harmless ones go to the host; the rest are
    /// refused with EINVAL and a warning.
    fn prctl(&mut self, a: &[u64; 6]) -> Result<i64, i32> {
        const PR_SET_MDWE: i32 = 65;
        const PR_GET_MDWE: i32 = 66;
        let opt = a[0] as i32;
        match opt {
            libc::PR_GET_DUMPABLE => return Ok(self.view.dumpable as i64),
            libc::PR_SET_DUMPABLE => {
                if a[1] > 1 {
                    return Err(libc::EINVAL);
                }
                self.view.dumpable = a[1];
                return Ok(0);
            }
            libc::PR_GET_NO_NEW_PRIVS => return Ok(self.view.no_new_privs as i64),
            libc::PR_SET_NO_NEW_PRIVS => {
                if a[1] != 1 || a[2] | a[3] | a[4] != 0 {
                    return Err(libc::EINVAL);
                }
                self.view.no_new_privs = true;
                return Ok(0);
            }
            PR_GET_MDWE => return Ok(self.view.mdwe as i64),
            PR_SET_MDWE => {
                // Only REFUSE_EXEC_GAIN (1) and NO_INHERIT (2, with 1) exist; once set, it
                // cannot be cleared.
                if a[1] & !3 != 0 || a[1] == 2 || a[2] | a[3] | a[4] != 0 {
                    return Err(libc::EINVAL);
                }
                if self.view.mdwe != 0 && a[1] != self.view.mdwe {
                    return Err(libc::EPERM);
                }
                self.view.mdwe = a[1];
                return Ok(0);
            }
            libc::PR_SET_NAME => {
                self.aspace.read_cstr(GuestAddr(a[1]), 4096).map_err(|_| libc::EFAULT)?;
            }
            libc::PR_GET_NAME => self.aspace.check(a[1], 16, Access::Write).map_err(|_| libc::EFAULT)?,
            libc::PR_GET_PDEATHSIG | libc::PR_GET_CHILD_SUBREAPER | libc::PR_GET_TSC => {
                self.aspace.check(a[1], 4, Access::Write).map_err(|_| libc::EFAULT)?
            }
            libc::PR_SET_PDEATHSIG
            | libc::PR_CAPBSET_READ
            | libc::PR_GET_SECUREBITS
            | libc::PR_SET_THP_DISABLE
            | libc::PR_GET_THP_DISABLE
            | libc::PR_GET_TIMERSLACK
            | libc::PR_SET_TIMERSLACK
            | libc::PR_SET_CHILD_SUBREAPER
            | libc::PR_MCE_KILL_GET
            | libc::PR_GET_KEEPCAPS => {}
            // Naming anonymous memory: only the guest's own.
            libc::PR_SET_VMA => {
                let end = a[2].saturating_add(a[3]);
                if !self.aspace.covers(a[2] & !0xfff, end) {
                    return Err(libc::EINVAL);
                }
            }
            _ => {
                self.warn_once(
                    &format!("prctl-{opt}"),
                    format_args!("prctl option {opt} is not supported; returning EINVAL"),
                );
                return Err(libc::EINVAL);
            }
        }
        forward(S::prctl, a)
    }

    /// getrlimit, setrlimit and prlimit64 of the guest itself: its own view ([`limits`]).
    /// `new`/`old` are guest pointers to rlimits (0: none). Other processes' limits may be read
    /// but not set (they are trapbox processes too).
    fn prlimit(&mut self, pid: i32, res: u64, new: u64, old: u64) -> Result<i64, i32> {
        // SAFETY: getpid and geteuid have no preconditions.
        let (me, euid) = unsafe { (libc::getpid(), libc::geteuid()) };
        if pid != 0 && pid != me && !self.is_guest_thread(pid) {
            if new != 0 {
                self.warn_once("prlimit-other", format_args!("prlimit64 of another process refused"));
                return Err(libc::EPERM);
            }
            return forward(S::prlimit64, &[pid as u64, res, 0, old, 0, 0]);
        }
        let cur = self.limits.get(res)?;
        let set = if new != 0 { Some(self.read_struct::<16>(new)?) } else { None };
        self.check(old, 16, Access::Write)?;
        if let Some(b) = set {
            let soft = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let hard = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
            if self.limits.set(res, soft, hard, euid == 0)? {
                forward(S::prlimit64, &[0, res, b.as_ptr() as u64, 0, 0, 0])?;
            }
        }
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&cur.0.to_le_bytes());
        out[8..].copy_from_slice(&cur.1.to_le_bytes());
        self.write_out(old, &out)?;
        Ok(0)
    }

    /// mlockall: the guest's memory only (trapbox's own stays unlocked), MCL_FUTURE as a flag
    /// for its later mappings.
    fn mlockall(&mut self, flags: u64) -> Result<i64, i32> {
        let known = (libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) as u64;
        if flags == 0 || flags & !known != 0 || flags == libc::MCL_ONFAULT as u64 {
            return Err(libc::EINVAL);
        }
        if flags & libc::MCL_CURRENT as u64 != 0 {
            let onfault = flags & libc::MCL_ONFAULT as u64 != 0;
            for (s, r) in self.aspace.regions().collect::<Vec<_>>() {
                if r.prot == libc::PROT_NONE {
                    continue;
                }
                let f = if onfault { 1 } else { 0 }; // MLOCK_ONFAULT
                let n = passthrough::raw_syscall(libc::SYS_mlock2 as u64, &[s, r.end - s, f, 0, 0, 0]);
                if n < 0 {
                    return Err(-n as i32);
                }
            }
        }
        self.view.lock_future = flags & libc::MCL_FUTURE as u64 != 0;
        Ok(0)
    }

    fn munlockall(&mut self) -> Result<i64, i32> {
        for (s, r) in self.aspace.regions().collect::<Vec<_>>() {
            let _ = passthrough::raw_syscall(libc::SYS_munlock as u64, &[s, r.end - s, 0, 0, 0, 0]);
        }
        self.view.lock_future = false;
        Ok(0)
    }

    /// mseal: the range can no longer be unmapped, moved or have its rights changed — which
    /// trapbox's memory calls enforce, since a seal on the host would also keep trapbox from
    /// making the range a placeholder when the guest is gone.
    fn mseal(&mut self, start: u64, len: u64, flags: u64) -> Result<i64, i32> {
        if flags != 0 || start & 0xfff != 0 {
            return Err(libc::EINVAL);
        }
        let end = start.checked_add(len.checked_add(0xfff).ok_or(libc::EINVAL)? & !0xfff).ok_or(libc::EINVAL)?;
        if !self.aspace.covers(start, end) {
            return Err(libc::ENOMEM);
        }
        if end > start {
            self.view.sealed.insert(start, end);
        }
        Ok(0)
    }

    /// close_range around trapbox's descriptors.
    fn close_range(&mut self, a: &[u64; 6]) -> Result<i64, i32> {
        let (first, last, flags) = (a[0] as u32, a[1] as u32, a[2]);
        if first > last {
            return Err(libc::EINVAL);
        }
        let mut start = first as u64;
        let ours =
            self.fds.reserved().into_iter().map(|f| f as u64).filter(|f| *f >= first as u64 && *f <= last as u64);
        for f in ours.chain(std::iter::once(last as u64 + 1)) {
            if f > start {
                forward(S::close_range, &[start, f - 1, flags, 0, 0, 0])?;
            }
            start = f + 1;
        }
        Ok(0)
    }

    fn mincore(&mut self, a: &[u64; 6]) -> Result<i64, i32> {
        if a[0] & 0xfff != 0 {
            return Err(libc::EINVAL);
        }
        let len = a[1].checked_add(0xfff).ok_or(libc::ENOMEM)? & !0xfff;
        if !self.aspace.covers(a[0], a[0].saturating_add(len)) {
            return Err(libc::ENOMEM);
        }
        self.aspace.check(a[2], len / 4096, Access::Write).map_err(|_| libc::EFAULT)?;
        forward(S::mincore, a)
    }
}

/// Names the calling host thread after `program` (its file name, as execve names a process's
/// threads): /proc shows the guest's name for its threads, not trapbox's.
pub fn set_comm(program: &std::path::Path) {
    let name = program.file_name().map(std::os::unix::ffi::OsStrExt::as_bytes).unwrap_or(b"");
    let mut comm = [0u8; 16];
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
}

/// How a call's result is made the guest's view of itself (see `selfview`).
#[derive(Clone, Copy, Debug)]
enum SelfView {
    /// The entry does not exist for the guest (trapbox's descriptor, trapbox's thread).
    Gone,
    /// The descriptor opened is to hold this file of trapbox's writing.
    File(selfview::ProcFile),
    /// getdents64 into this guest buffer listed a directory of these.
    List(u64, ListOf),
    /// The descriptor opened is to be the guest's program (`/proc/self/exe` and its aliases).
    Exe,
}

/// Which entries a /proc directory listing has.
#[derive(Clone, Copy, Debug)]
enum ListOf {
    /// Descriptors (`fd`, `fdinfo`).
    Fds,
    /// Threads (`task`).
    Threads,
}

/// Whom a guest's signal is for.
#[derive(Clone, Copy, Debug)]
enum SignalTarget {
    /// A process (or, for pid <= 0, a process group).
    Process(i32),
    /// A thread of a process.
    Thread(i32, i32),
    /// The process a pidfd names.
    Pidfd(i32),
}

/// The pid a pidfd refers to (its fdinfo's `Pid:` line), if `fd` is one.
fn pidfd_pid(fd: i32) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
}

/// What an extended-state `arch_prctl` answers.
#[derive(Debug, PartialEq, Eq)]
enum XcompAnswer {
    /// Success, nothing written.
    Done,
    /// Success, this mask written to the guest's `u64`.
    Write(u64),
}

/// The extended-state permission calls (ARCH_GET_XCOMP_SUPP, ARCH_{GET,REQ}_XCOMP_PERM and
/// their KVM-guest twins), for a guest offered `user` (the CPU view's user features). AMX is
/// never among them: its tile data is saved only for processes that asked for it, which
/// would need the guest's own permission state and 8 KiB more in every XSAVE image, so the
/// request is refused as by a kernel that does not support it. Everything else is EINVAL —
/// the ARCH_SHSTK_* calls included, as from a kernel without user shadow stacks: CET is not
/// offered.
fn xcomp(code: i32, arg: u64, user: u64) -> Result<XcompAnswer, i32> {
    const GET_XCOMP_SUPP: i32 = 0x1021;
    const GET_XCOMP_PERM: i32 = 0x1022;
    const REQ_XCOMP_PERM: i32 = 0x1023;
    const GET_XCOMP_GUEST_PERM: i32 = 0x1024;
    const REQ_XCOMP_GUEST_PERM: i32 = 0x1025;
    match code {
        GET_XCOMP_SUPP | GET_XCOMP_PERM | GET_XCOMP_GUEST_PERM => Ok(XcompAnswer::Write(user)),
        REQ_XCOMP_PERM | REQ_XCOMP_GUEST_PERM if arg >= 64 => Err(libc::EINVAL),
        REQ_XCOMP_PERM | REQ_XCOMP_GUEST_PERM if user & (1 << arg) != 0 => Ok(XcompAnswer::Done),
        REQ_XCOMP_PERM | REQ_XCOMP_GUEST_PERM => Err(libc::EOPNOTSUPP),
        _ => Err(libc::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xcomp_refuses_amx_and_shadow_stacks() {
        // A Sapphire Rapids view: the user features never include AMX.
        let user = 0x2e7;
        assert_eq!(xcomp(0x1021, 0, user), Ok(XcompAnswer::Write(0x2e7)));
        assert_eq!(xcomp(0x1022, 0, user), Ok(XcompAnswer::Write(0x2e7)));
        // ARCH_REQ_XCOMP_PERM for XTILEDATA (18): refused as unsupported.
        assert_eq!(xcomp(0x1023, 18, user), Err(libc::EOPNOTSUPP));
        assert_eq!(xcomp(0x1025, 18, user), Err(libc::EOPNOTSUPP));
        // Already-permitted state is granted; a bit beyond XCR0's is invalid.
        assert_eq!(xcomp(0x1023, 5, user), Ok(XcompAnswer::Done));
        assert_eq!(xcomp(0x1023, 64, user), Err(libc::EINVAL));
        // ARCH_SHSTK_ENABLE .. ARCH_SHSTK_STATUS: a kernel without user shadow stacks.
        for code in 0x5001..=0x5005 {
            assert_eq!(xcomp(code, 1, user), Err(libc::EINVAL));
        }
    }
}
