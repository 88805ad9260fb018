//! `fork`, `vfork` and `clone` without CLONE_VM: a child process in a box of its own.
//!
//! Guest memory is trapbox's own memory at the same addresses (invariant 1), so the host's
//! `fork` already gives the child a copy-on-write copy of everything the guest had — its
//! mappings, page tables and the system region included — and the guest's shared mappings stay
//! shared, as they would natively. What does not survive a fork is KVM: a VM belongs to the
//! process that created it. The child therefore creates a new VM over the same memory and a
//! vCPU resuming from the parent's state at the `clone` ([`Machine::rebuild_after_fork`]).
//! The child's pid, its parent, its process group and its exit status are the host's: a
//! guest's `wait4` waits for the trapbox process that runs its child.

use std::os::fd::{FromRawFd, OwnedFd};

use super::{neg, Process};
use trapbox_trap::{Action, GuestAddr, Regs};
use trapbox_vm::Machine;

pub use trapbox_abi::clone::{flag, CloneArgs};

impl Process {
    /// fork/vfork/clone: a thread is created by the sandbox (it needs a vCPU and a handler of
    /// its own); everything else is a new process, made here.
    pub(super) fn sys_clone(&mut self, m: &mut Machine, regs: &mut Regs, args: CloneArgs) -> Action {
        let f = args.flags;
        if f & flag::ESCAPING != 0 {
            self.warn_once("clone-ns", format_args!("clone with namespace or ptrace flags {f:#x} refused"));
            return Action::Return(neg(libc::EPERM));
        }
        if args.is_thread() {
            // A thread needs a vCPU, a host thread and a handler of its own: the sandbox makes
            // it and intercepts such a clone before it gets here.
            self.warn_once("threads", format_args!("clone: this backend cannot create threads; returning EAGAIN"));
            return Action::Return(neg(libc::EAGAIN));
        }
        // A child that shares memory without being a thread (other than vfork's brief sharing
        // until exec) would need two processes driving one VM.
        if f & flag::VM != 0 && f & flag::VFORK == 0 || f & (flag::FILES | flag::SIGHAND | flag::FS | flag::PIDFD) != 0
        {
            self.warn_once(
                "clone-shared",
                format_args!("clone flags {f:#x}: a child process sharing memory, files or handlers is not supported"),
            );
            return Action::Return(neg(libc::EINVAL));
        }
        self.fork(m, regs, args)
    }

    fn fork(&mut self, m: &mut Machine, regs: &mut Regs, args: CloneArgs) -> Action {
        let f = args.flags;
        let state = match m.save_cpu_state() {
            Ok(s) => s,
            Err(e) => {
                self.warn_once("fork-state", format_args!("fork: cannot read the vCPU state: {e}"));
                return Action::Return(neg(libc::EAGAIN));
            }
        };
        // vfork's parent sleeps until the child execs or exits: the child holds the write end
        // of a pipe, closed by either (close-on-exec does not apply: trapbox never execs).
        let vfork = if f & flag::VFORK != 0 {
            let mut p = [0i32; 2];
            // SAFETY: p is a valid two-int array.
            if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Action::Return(neg(libc::EAGAIN));
            }
            // SAFETY: both descriptors were just created and are owned here only.
            Some(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
        } else {
            None
        };
        // Locks other threads take outside the process lock (the in-process engine's rewrite
        // table at guest threads' exits, the descriptor bookkeeping in the trace writer's
        // thread): held here, no other thread is inside them when the child is made, which
        // would find them locked for ever.
        let descriptors = super::fds::hold_across_fork();
        let rewrites = trapbox_vm::inproc::rewrite::hold_across_fork();
        // SAFETY: fork in a process whose other threads (watchdog, trace compressor) hold no
        // lock the child needs: the child only makes syscalls, allocates, and starts its own
        // threads afresh.
        let pid = unsafe { libc::fork() };
        drop(rewrites);
        drop(descriptors);
        if pid < 0 {
            return Action::Return(neg(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN)));
        }
        if pid > 0 {
            if f & flag::PARENT_SETTID != 0 {
                let _ = self.aspace.write(GuestAddr(args.parent_tid), &pid.to_le_bytes());
            }
            if let Some((r, w)) = vfork {
                drop(w);
                wait_for_eof(&r);
            }
            return Action::Return(pid as i64);
        }

        // The child.
        super::mem::forget_own_pid();
        super::host::restore_cpus();
        if let Some(alias) = self.time_alias.as_mut() {
            // The guest's view of its vDSO time buffer was not inherited (MADV_DONTFORK), so
            // that the child's time calls do not land in its parent's buffer: it gets its own,
            // before the VM's rebuild maps anything that could take the view's place.
            let view = self.image.as_ref().and_then(|i| i.placement.vdso).map(|b| b + super::vdso::IMAGE_SIZE);
            if let Err(e) = alias.after_fork(view) {
                self.child_fails(format_args!("cannot give the child its own time buffer: {e}"));
            }
        }
        match m.rebuild_after_fork(state) {
            Ok(new_fds) => self.fds.replace_closed(new_fds),
            Err(e) => self.child_fails(format_args!("cannot rebuild the VM in the child: {e}")),
        }
        self.vfork_done = vfork.map(|(_, w)| w);
        // The parent's snapshots: its page map, not this process's.
        self.snapshots = None;
        self.forked = true;
        self.generation += 1;
        // Only the forking thread exists in the child, and nothing is pending for it.
        self.thread_ids.clear();
        self.signals.forked();
        self.kicks.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
        self.clear_child_tid = if f & flag::CHILD_CLEARTID != 0 { args.child_tid } else { 0 };
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        if f & flag::CHILD_SETTID != 0 {
            let _ = self.aspace.write(GuestAddr(args.child_tid), &me.to_le_bytes());
        }
        if f & flag::PARENT_SETTID != 0 {
            let _ = self.aspace.write(GuestAddr(args.parent_tid), &me.to_le_bytes());
        }
        if f & flag::SETTLS != 0 && m.set_fs_base(args.tls).is_err() {
            return Action::Kill { signal: libc::SIGSEGV, fault: None };
        }
        if args.stack != 0 {
            regs.rsp = args.stack;
        }
        Action::Return(0)
    }
}

impl Process {
    /// A forked child that cannot be set up: says why and ends at once, before its guest ran.
    fn child_fails(&mut self, why: std::fmt::Arguments<'_>) -> ! {
        let _ = std::io::Write::write_all(&mut self.diag, format!("trapbox: fork: {why}\n").as_bytes());
        // SAFETY: _exit ends this (child) process at once; nothing of it is shared.
        unsafe { libc::_exit(127) }
    }
}

/// Blocks until every writer of `r` is gone.
fn wait_for_eof(r: &OwnedFd) {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 16];
    loop {
        // SAFETY: reads into a local buffer from a pipe this function borrows.
        let n = unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
        if n == 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
            return;
        }
    }
}
