//! clone requests: the flags trapbox looks at and one decoding of fork, vfork and clone.

/// clone flags trapbox looks at (linux/sched.h).
pub mod flag {
    /// Share memory.
    pub const VM: u64 = 0x100;
    /// Share the working directory and umask.
    pub const FS: u64 = 0x200;
    /// Share the descriptor table.
    pub const FILES: u64 = 0x400;
    /// Share signal handlers.
    pub const SIGHAND: u64 = 0x800;
    /// Return a pidfd.
    pub const PIDFD: u64 = 0x1000;
    /// The parent waits until the child execs or exits.
    pub const VFORK: u64 = 0x4000;
    /// Same thread group: a thread.
    pub const THREAD: u64 = 0x10000;
    /// Set the child's FS base.
    pub const SETTLS: u64 = 0x80000;
    /// Store the child's id at parent_tid.
    pub const PARENT_SETTID: u64 = 0x100000;
    /// Clear child_tid and wake it when the child exits.
    pub const CHILD_CLEARTID: u64 = 0x200000;
    /// Store the child's id at child_tid in the child.
    pub const CHILD_SETTID: u64 = 0x1000000;
    /// New namespaces (mount, cgroup, uts, ipc, user, pid, net) and CLONE_PTRACE: nothing a
    /// boxed program may ask for.
    pub const ESCAPING: u64 = 0x7e02_0000 | 0x2000;
}

use crate::Sysno;

/// A `clone` request, decoded once from whichever of fork/vfork/clone made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloneArgs {
    /// CLONE_* flags with the exit signal in the low byte.
    pub flags: u64,
    /// The child's stack pointer (0: the parent's).
    pub stack: u64,
    /// Where CLONE_PARENT_SETTID stores the child's id.
    pub parent_tid: u64,
    /// Where CLONE_CHILD_SETTID stores, and CLONE_CHILD_CLEARTID clears, the child's id.
    pub child_tid: u64,
    /// CLONE_SETTLS: the child's FS base.
    pub tls: u64,
}

impl CloneArgs {
    /// Decodes `fork()`, `vfork()` or `clone(flags, stack, parent_tid, child_tid, tls)`.
    pub fn decode(sysno: Sysno, a: &[u64; 6]) -> CloneArgs {
        match sysno {
            Sysno::fork => CloneArgs { flags: libc::SIGCHLD as u64, stack: 0, parent_tid: 0, child_tid: 0, tls: 0 },
            Sysno::vfork => CloneArgs {
                flags: flag::VM | flag::VFORK | libc::SIGCHLD as u64,
                stack: 0,
                parent_tid: 0,
                child_tid: 0,
                tls: 0,
            },
            _ => CloneArgs { flags: a[0], stack: a[1], parent_tid: a[2], child_tid: a[3], tls: a[4] },
        }
    }

    /// Whether this makes a thread (shares memory and stays in the process).
    pub fn is_thread(&self) -> bool {
        self.flags & flag::THREAD != 0
    }
}
