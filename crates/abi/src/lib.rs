//! The x86-64 Linux user ABI as trapbox decodes it, at the bottom of the workspace: the
//! syscall table, its argument walker, the user register file, signal frames, XSAVE images,
//! CPUID views and clone requests. Pure data and decoding: it knows no engine, no process
//! model and no tool (the crates above it do), and holds no state.
//!
//! The crate root is the syscall table: for every syscall trapbox knows, its number, its
//! name, what each argument is and how the box treats it. This is design invariant 5: the
//! passthrough validates pointers with it (through [`walk`]), the tracer decodes with it, the
//! recorder learns from it which guest bytes the kernel wrote. Nothing else in trapbox holds
//! syscall numbers.

pub mod arch;
pub mod clone;
pub mod ioctl;
pub mod le;
mod regs;
pub mod walk;
pub mod x86_64;

pub use regs::{GuestAddr, Regs, Syscall};
pub use x86_64::{Sysno, TABLE};

/// What one argument register holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// A signed integer (shown in decimal).
    Int,
    /// An unsigned integer or size (shown in decimal).
    UInt,
    /// A number best shown in hex (addresses the kernel never dereferences, cookies).
    Hex,
    /// An address the kernel does not dereference (mmap hint, brk, munmap start).
    Addr,
    /// A file descriptor.
    Fd,
    /// A directory fd for the *at calls (`AT_FDCWD` is -100).
    DirFd,
    /// A process or thread id.
    Pid,
    /// A signal number.
    Signal,
    /// A file mode (`0644`, `S_IFREG|0644`).
    Mode,
    /// A flag set; the enum says which names apply.
    Flags(FlagSet),
    /// A NUL-terminated path the kernel reads.
    Path,
    /// Another NUL-terminated string the kernel reads (xattr name, hostname, ...).
    CStr,
    /// A buffer the kernel reads `len` bytes from.
    InBuf(Len),
    /// A buffer the kernel writes up to `len` bytes to; it reports in its return value how
    /// many it wrote when `ret_is_len` is set (read, readlink, getrandom, ...).
    OutBuf {
        /// Size of the buffer.
        len: Len,
        /// The return value is the number of bytes written.
        ret_is_len: bool,
    },
    /// A fixed-size struct the kernel reads. NULL is allowed when `nullable`.
    In(Struct),
    /// A fixed-size struct the kernel writes.
    Out(Struct),
    /// A fixed-size struct the kernel reads and writes back.
    InOut(Struct),
    /// An array of `struct iovec`, counted by argument `count`; the kernel reads (`Dir::In`)
    /// or writes (`Dir::Out`) the buffers they point to.
    Iovec {
        /// Index of the argument that holds the number of iovecs.
        count: usize,
        /// Direction of the data in the buffers.
        dir: Dir,
    },
    /// A `struct msghdr` (sendmsg: `Dir::In`, recvmsg: `Dir::Out`).
    Msghdr(Dir),
    /// An array of `struct mmsghdr`, counted by argument `count` (sendmmsg: `Dir::In`,
    /// recvmmsg: `Dir::Out`); the kernel writes each entry's `msg_len`.
    Mmsghdr {
        /// Index of the argument that holds the number of entries.
        count: usize,
        /// Direction of the data.
        dir: Dir,
    },
    /// A NULL-terminated array of string pointers (argv, envp).
    StrArray,
    /// An array of `struct pollfd`, counted by argument `count` (read and written).
    PollFds {
        /// Index of the argument that holds the number of entries.
        count: usize,
    },
    /// An `fd_set` (read and written), sized by argument `nfds`.
    FdSet {
        /// Index of the argument that holds nfds.
        nfds: usize,
    },
    /// A `socklen_t *` giving the size of the sockaddr in argument `addr`, read and written.
    SockLenPtr,
    /// A sockaddr the kernel reads, of the length in argument `len`.
    SockAddrIn {
        /// Index of the argument that holds the length.
        len: usize,
    },
    /// A sockaddr the kernel writes; its capacity is `*arg[len]` (a socklen_t pointer).
    SockAddrOut {
        /// Index of the argument that holds the `socklen_t *`.
        len: usize,
    },
    /// A socket option's value the kernel reads (setsockopt), of the length in argument `len`;
    /// only options whose value is flat are passed (`walk::sockopt_is_flat`).
    SockOptIn {
        /// Index of the argument that holds the length.
        len: usize,
    },
    /// A socket option's value the kernel writes (getsockopt); its capacity is `*arg[len]`
    /// (a socklen_t pointer).
    SockOptOut {
        /// Index of the argument that holds the `socklen_t *`.
        len: usize,
    },
    /// pselect6's sixth argument: a pointer to `{const sigset_t *ss; size_t ss_len}`.
    SigsetPack,
    /// openat2's `struct open_how`, of the size in argument `size` (extensible: the kernel
    /// reads all of it).
    OpenHow {
        /// Index of the argument that holds the size.
        size: usize,
    },
    /// shmctl's third argument: a `struct shmid_ds` (or the info structs, no larger) that the
    /// command (argument 1) reads or writes.
    ShmctlBuf,
    /// futex_waitv's array of `struct futex_waitv` (24 bytes each: value, address of a
    /// 32-bit futex word, flags), counted by argument `count`; the kernel reads the words.
    FutexWaiters {
        /// Index of the argument that holds the number of entries.
        count: usize,
    },
    /// The third argument of ioctl: meaning depends on the request (argument 1).
    IoctlArg,
    /// The third argument of fcntl: meaning depends on the command (argument 1).
    FcntlArg,
    /// A pointer whose meaning depends on other arguments and which the passthrough handles
    /// in the syscall's own emulation (futex, prctl, arch_prctl, ...).
    Special,
    /// Start of an address range of `len` (argument N) bytes that the kernel operates on
    /// without copying (madvise, msync, mlock, mincore): the whole range must be the guest's.
    GuestRange {
        /// Index of the argument that holds the length.
        len: usize,
    },
    /// Unused register.
    Ignored,
}

/// Direction of data through a pointer, seen from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The kernel reads guest memory.
    In,
    /// The kernel writes guest memory.
    Out,
}

/// Where a buffer's length comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// The value of argument N.
    Arg(usize),
    /// A fixed number of bytes.
    Fixed(usize),
    /// The value of argument N times a fixed element size.
    ArgTimes(usize, usize),
    /// The value of argument N plus a fixed header size (msgsnd's `long mtype` before the text).
    ArgPlus(usize, usize),
}

/// Named fixed-size structs the kernel reads or writes. `size()` is the x86-64 layout size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Struct {
    /// `struct stat` (144 bytes).
    Stat,
    /// `struct statx` (256 bytes).
    Statx,
    /// `struct statfs` (120 bytes).
    Statfs,
    /// `struct timespec` (16 bytes).
    Timespec,
    /// Two `struct timespec` (utimensat; 32 bytes).
    Timespec2,
    /// `struct timeval` (16 bytes).
    Timeval,
    /// `struct timezone` (8 bytes).
    Timezone,
    /// `struct itimerval` (32 bytes).
    Itimerval,
    /// `struct itimerspec` (32 bytes).
    Itimerspec,
    /// `struct rlimit` (16 bytes).
    Rlimit,
    /// `struct rusage` (144 bytes).
    Rusage,
    /// `struct utsname` (390 bytes).
    Utsname,
    /// `struct sysinfo` (112 bytes).
    Sysinfo,
    /// `struct tms` (32 bytes).
    Tms,
    /// Kernel `struct sigaction` for rt_sigaction (32 bytes with an 8-byte mask).
    Sigaction,
    /// `sigset_t` as the kernel sees it (8 bytes).
    Sigset,
    /// `stack_t` (24 bytes).
    StackT,
    /// `siginfo_t` (128 bytes).
    Siginfo,
    /// `int` (4 bytes): pipe fds, status words, socket options of int size.
    Int,
    /// Two `int`s (pipe, socketpair; 8 bytes).
    Int2,
    /// `unsigned long` / `u64` (8 bytes).
    U64,
    /// `struct epoll_event` (12 bytes, packed).
    EpollEvent,
    /// `struct robust_list_head` (24 bytes).
    RobustListHead,
    /// `struct rseq` (32 bytes).
    Rseq,
    /// `cpu_set_t` as used by glibc (128 bytes).
    CpuSet,
    /// `struct sched_param` (4 bytes).
    SchedParam,
    /// `struct open_how` (24 bytes).
    OpenHow,
    /// `struct linux_dirent64` records: use OutBuf instead; listed for completeness of decoding.
    Clone3Args,
    /// `struct __user_cap_header_struct` (8 bytes).
    CapHeader,
    /// `struct __user_cap_data_struct` x2 (24 bytes).
    CapData,
    /// `struct sigevent` (64 bytes): timer_create, mq_notify.
    Sigevent,
}

impl Struct {
    /// The struct's size in bytes on x86-64.
    pub const fn size(self) -> usize {
        match self {
            Struct::Stat => 144,
            Struct::Statx => 256,
            Struct::Statfs => 120,
            Struct::Timespec => 16,
            Struct::Timespec2 => 32,
            Struct::Timeval => 16,
            Struct::Timezone => 8,
            Struct::Itimerval => 32,
            Struct::Itimerspec => 32,
            Struct::Rlimit => 16,
            Struct::Rusage => 144,
            Struct::Utsname => 390,
            Struct::Sysinfo => 112,
            Struct::Tms => 32,
            Struct::Sigaction => 32,
            Struct::Sigset => 8,
            Struct::StackT => 24,
            Struct::Siginfo => 128,
            Struct::Int => 4,
            Struct::Int2 => 8,
            Struct::U64 => 8,
            Struct::EpollEvent => 12,
            Struct::RobustListHead => 24,
            Struct::Rseq => 32,
            Struct::CpuSet => 128,
            Struct::SchedParam => 4,
            Struct::OpenHow => 24,
            Struct::Clone3Args => 88,
            Struct::CapHeader => 8,
            Struct::CapData => 24,
            Struct::Sigevent => 64,
        }
    }
}

/// Which symbolic names a flags argument takes (the tracer's decoding tables key on this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagSet {
    /// `O_*` open flags.
    Open,
    /// `AT_*` flags of the *at calls.
    At,
    /// `PROT_*`.
    Prot,
    /// `MAP_*`.
    Map,
    /// `MREMAP_*`.
    Mremap,
    /// `MADV_*` (a value, not a set).
    Madvise,
    /// `CLONE_*`.
    Clone,
    /// `SA_*`.
    SigAction,
    /// `SIG_BLOCK` / `SIG_UNBLOCK` / `SIG_SETMASK` (a value).
    SigHow,
    /// `SEEK_*` (a value).
    Whence,
    /// `F_OK` / `R_OK` / `W_OK` / `X_OK`.
    Access,
    /// `FUTEX_*` operation (a value with flag bits).
    FutexOp,
    /// `ARCH_*` code of arch_prctl (a value).
    ArchPrctl,
    /// `PR_*` option of prctl (a value).
    Prctl,
    /// `CLOCK_*` id (a value).
    ClockId,
    /// `RLIMIT_*` resource (a value).
    Rlimit,
    /// `AF_*` address family (a value).
    AddressFamily,
    /// `SOCK_*` type with `SOCK_NONBLOCK|SOCK_CLOEXEC`.
    SockType,
    /// `MSG_*` flags.
    Msg,
    /// `GRND_*` flags of getrandom.
    Getrandom,
    /// `EPOLL_CTL_*` op (a value).
    EpollCtl,
    /// `EFD_*`, `TFD_*`, `IN_*`, `MFD_*` and similar small flag sets shown in hex.
    Misc,
    /// `WNOHANG` and friends of wait4/waitid.
    Wait,
    /// `RENAME_*` flags of renameat2.
    Rename,
    /// `SCHED_*` policy (a value).
    SchedPolicy,
    /// `ITIMER_*` which (a value).
    Itimer,
    /// `P_*` id type of waitid (a value).
    IdType,
    /// `FALLOC_FL_*`.
    Falloc,
    /// `POSIX_FADV_*` advice (a value).
    Fadvise,
    /// `LOCK_*` of flock.
    Flock,
    /// `STATX_*` mask.
    StatxMask,
    /// `CLOSE_RANGE_*` flags.
    CloseRange,
    /// `MS_*` of msync.
    Msync,
    /// `MLOCK_*` / `MCL_*`.
    Mlock,
}

/// What the syscall returns, for display and for the recorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// An integer or -errno.
    Int,
    /// A new file descriptor or -errno.
    Fd,
    /// An address (mmap, brk, mremap, shmat) shown in hex, or -errno.
    Addr,
    /// Never returns (exit, exit_group, rt_sigreturn).
    NoReturn,
}

/// How the box treats a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Check every pointer argument against guest memory, then run it on the host unchanged.
    Host,
    /// trapbox implements it itself (memory management, process identity, signals, exit, ...):
    /// running it on the host would change trapbox instead of the guest.
    Emulated,
    /// Refused with an errno and a one-line warning, with the reason given.
    Refused(Refusal),
}

/// Why a syscall is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The call would reach outside the box (ptrace, process_vm_writev, kexec, modules, ...).
    Escapes,
    /// The call is obsolete or unimplemented on x86-64 Linux too.
    Obsolete,
}

bitflags_lite! {
    /// strace's syscall classes (`-e trace=%file` and friends).
    pub struct Class: u16 {
        /// Takes a file name.
        const FILE = 1 << 0;
        /// Process management.
        const PROCESS = 1 << 1;
        /// Networking.
        const NETWORK = 1 << 2;
        /// Signal related.
        const SIGNAL = 1 << 3;
        /// System V IPC.
        const IPC = 1 << 4;
        /// File descriptor related.
        const DESC = 1 << 5;
        /// Memory mapping.
        const MEMORY = 1 << 6;
        /// User/group credentials.
        const CREDS = 1 << 7;
        /// stat variants.
        const STAT = 1 << 8;
        /// Clocks and time.
        const CLOCK = 1 << 9;
    }
}

/// One syscall's entry in the ABI table.
#[derive(Clone, Copy, Debug)]
pub struct SyscallDesc {
    /// Syscall number on x86-64.
    pub nr: u64,
    /// The same number, typed: what dispatch matches on.
    pub sysno: Sysno,
    /// Name as strace prints it.
    pub name: &'static str,
    /// Arguments, in register order (rdi, rsi, rdx, r10, r8, r9); only the used ones.
    pub args: &'static [Arg],
    /// What it returns.
    pub ret: Ret,
    /// strace classes.
    pub class: Class,
    /// How the box treats it.
    pub handling: Handling,
}

/// One argument of a syscall.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    /// Name from the man page (`pathname`, `buf`, `count`, ...).
    pub name: &'static str,
    /// What it holds.
    pub kind: ArgKind,
}

/// Looks a syscall up by number.
pub fn lookup(nr: u64) -> Option<&'static SyscallDesc> {
    // The table is sorted by number and dense from 0, so index first and fall back to search.
    match TABLE.get(nr as usize) {
        Some(d) if d.nr == nr => Some(d),
        _ => TABLE.iter().find(|d| d.nr == nr),
    }
}

impl Sysno {
    /// Its entry in the table (every `Sysno` has one: both are made from the same rows).
    pub fn desc(self) -> &'static SyscallDesc {
        lookup(self as u64).expect("every Sysno is a row of the table")
    }

    /// The name strace prints.
    pub fn name(self) -> &'static str {
        self.desc().name
    }

    /// Whether the call returns at once whatever the system's state: it reads the caller's
    /// own attributes or the clock and never waits on anything (a descriptor, a lock, another
    /// process, the scheduler). A call that may wait lets the other guest threads' traps be
    /// handled meanwhile; one of these is over sooner than handing the box over and back.
    pub fn never_waits(self) -> bool {
        use Sysno as S;
        matches!(
            self,
            S::getpid
                | S::getppid
                | S::gettid
                | S::getuid
                | S::geteuid
                | S::getgid
                | S::getegid
                | S::getresuid
                | S::getresgid
                | S::getgroups
                | S::getpgrp
                | S::getpgid
                | S::getsid
                | S::umask
                | S::uname
                | S::getcpu
                | S::getpriority
                | S::getrusage
                | S::times
                | S::sysinfo
                | S::getrlimit
                | S::capget
                | S::sched_getaffinity
                | S::sched_getparam
                | S::sched_getscheduler
                | S::sched_get_priority_max
                | S::sched_get_priority_min
                | S::sched_rr_get_interval
                | S::clock_getres
                | S::clock_gettime
                | S::gettimeofday
                | S::time
        )
    }
}

/// Looks a syscall up by name.
pub fn lookup_name(name: &str) -> Option<&'static SyscallDesc> {
    TABLE.iter().find(|d| d.name == name)
}

/// A minimal bitflags: a transparent newtype with named constants and set operations,
/// enough for syscall classes without another dependency.
macro_rules! bitflags_lite {
    (
        $(#[$outer:meta])*
        pub struct $name:ident: $t:ty {
            $( $(#[$inner:meta])* const $flag:ident = $value:expr; )*
        }
    ) => {
        $(#[$outer])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
        pub struct $name(pub $t);
        impl $name {
            $( $(#[$inner])* pub const $flag: $name = $name($value); )*
            /// No class.
            pub const NONE: $name = $name(0);
            /// Whether every bit of `other` is set in `self`.
            pub const fn contains(self, other: $name) -> bool { self.0 & other.0 == other.0 }
            /// Whether any bit of `other` is set in `self`.
            pub const fn intersects(self, other: $name) -> bool { self.0 & other.0 != 0 }
            /// The union of two sets (usable in consts).
            pub const fn union(self, other: $name) -> $name { $name(self.0 | other.0) }
        }
        impl core::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name { $name(self.0 | rhs.0) }
        }
    };
}
use bitflags_lite;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in TABLE.windows(2) {
            assert!(w[0].nr < w[1].nr, "{} ({}) before {} ({})", w[0].name, w[0].nr, w[1].name, w[1].nr);
        }
    }

    #[test]
    fn lookup_finds_common_calls() {
        assert_eq!(lookup(0).map(|d| d.name), Some("read"));
        assert_eq!(lookup(1).map(|d| d.name), Some("write"));
        assert_eq!(lookup(257).map(|d| d.name), Some("openat"));
        assert_eq!(lookup(231).map(|d| d.name), Some("exit_group"));
        assert_eq!(lookup_name("getrandom").map(|d| d.nr), Some(318));
        assert!(lookup(100_000).is_none());
    }

    #[test]
    fn argument_indices_are_in_range() {
        for d in TABLE {
            assert!(d.args.len() <= 6, "{}", d.name);
            for a in d.args {
                let idx = match a.kind {
                    ArgKind::InBuf(Len::Arg(i) | Len::ArgTimes(i, _) | Len::ArgPlus(i, _)) => Some(i),
                    ArgKind::OutBuf { len: Len::Arg(i) | Len::ArgTimes(i, _) | Len::ArgPlus(i, _), .. } => Some(i),
                    ArgKind::Iovec { count, .. }
                    | ArgKind::PollFds { count }
                    | ArgKind::Mmsghdr { count, .. }
                    | ArgKind::FutexWaiters { count } => Some(count),
                    ArgKind::SockOptIn { len } | ArgKind::SockOptOut { len } => Some(len),
                    ArgKind::FdSet { nfds } => Some(nfds),
                    ArgKind::SockAddrIn { len } | ArgKind::SockAddrOut { len } => Some(len),
                    ArgKind::GuestRange { len } => Some(len),
                    _ => None,
                };
                if let Some(i) = idx {
                    assert!(i < d.args.len(), "{}: {} refers to arg {}", d.name, a.name, i);
                }
            }
        }
    }
}
