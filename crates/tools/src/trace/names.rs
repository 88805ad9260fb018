//! The symbolic names `trapbox trace` prints: errno names and messages, signal names, flag
//! and value sets of syscall arguments, file modes, `si_code`s, ioctl requests and fcntl
//! commands, each rendered the way strace 6.1 renders it, byte for byte.
//!
//! Every table and every fallback format here was checked against strace 6.1 on x86-64 by
//! running the calls under `strace` (blocked with a seccomp filter so nothing happens) and
//! comparing the printed argument with what these functions return. Where strace prints one
//! [`FlagSet`] differently depending on the syscall (statx's `AT_STATX_SYNC_AS_STAT`, pipe2's
//! flags without an access mode, unshare's and setns's namespace sets, accept4's `SOCK_*`,
//! mlock2's `MLOCK_ONFAULT`, the many small sets behind [`FlagSet::Misc`]),
//! [`syscall_flags`] applies the syscall-specific rendering; [`flags`] is the generic one.

use trapbox_abi::FlagSet;

/// A strace "xlat": values and their names, in strace's order (order matters for flag sets,
/// where composite entries such as `O_SYNC` must come before their parts).
type Xlat = &'static [(u64, &'static str)];

/// C's `%#x`: `0` for zero, `0x...` otherwise.
fn hex(v: u64) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

/// Low 32 bits: strace reads `int` and `unsigned int` arguments as 32-bit values.
fn low32(v: u64) -> u64 {
    v & 0xffff_ffff
}

fn lookup(table: Xlat, v: u64) -> Option<&'static str> {
    table.iter().find(|&&(x, _)| x == v).map(|&(_, n)| n)
}

/// strace's `printxval`: the name, or `0x7 /* SEEK_??? */`.
fn xval(table: Xlat, v: u64, unknown: &str) -> String {
    match lookup(table, v) {
        Some(n) => n.to_string(),
        None => format!("{} /* {unknown} */", hex(v)),
    }
}

/// strace's `printflags`: names in table order joined by `|`, leftover bits in hex after them,
/// or `0x8 /* MS_??? */` when no name matched (without the comment when `unknown` is None).
/// Zero prints the table's zero-valued name if it has one, else `0`.
fn flag_names(table: Xlat, v: u64, unknown: Option<&str>) -> String {
    if v == 0 {
        return lookup(table, 0).unwrap_or("0").to_string();
    }
    let mut out = String::new();
    let mut rest = v;
    for &(bit, name) in table {
        if bit != 0 && rest & bit == bit {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
            rest &= !bit;
            if rest == 0 {
                break;
            }
        }
    }
    if rest != 0 {
        if out.is_empty() {
            out = match unknown {
                Some(u) => format!("{} /* {u} */", hex(rest)),
                None => hex(rest),
            };
        } else {
            out.push('|');
            out.push_str(&hex(rest));
        }
    }
    out
}

/// Appends `|part` (or just `part` to an empty string).
fn push_or(out: &mut String, part: &str) {
    if !out.is_empty() {
        out.push('|');
    }
    out.push_str(part);
}

// ---- errno ---------------------------------------------------------------------------------

/// errno name for a positive errno (`ENOENT`), None if strace has no name for it (then it
/// prints `= -1 (errno N)`; see [`error_return`]).
pub fn errno_name(e: i32) -> Option<&'static str> {
    ERRNOS.iter().find(|&&(n, _, _)| n == e).map(|&(_, name, _)| name)
}

/// The message strace prints in parentheses after the errno name: glibc's `strerror` text
/// ("No such file or directory"), strace's own for the kernel-internal restart codes ("To be
/// restarted if SA_RESTART is set"), and `Unknown error N` for everything else (strace prints
/// that text for the kernel-internal codes it names but glibc does not, such as
/// `ENOIOCTLCMD (Unknown error 515)`). For errnos without a name strace prints no message at
/// all but `(errno N)`; [`error_return`] renders that case.
pub fn errno_message(e: i32) -> String {
    match ERRNOS.iter().find(|&&(n, _, _)| n == e) {
        Some(&(_, _, msg)) => msg.to_string(),
        None => format!("Unknown error {e}"),
    }
}

/// What strace prints after `= ` for a syscall that failed with errno `e`:
/// `-1 ENOENT (No such file or directory)`, `? ERESTARTSYS (To be restarted if SA_RESTART is
/// set)` for the four restart codes (strace shows `?` as their return value), and
/// `-1 (errno 134)` for errnos without a name.
pub fn error_return(e: i32) -> String {
    match errno_name(e) {
        Some(name) => {
            let ret = if matches!(e, 512..=514 | 516) { "?" } else { "-1" };
            format!("{ret} {name} ({})", errno_message(e))
        }
        None => format!("-1 (errno {e})"),
    }
}

// ---- signals -------------------------------------------------------------------------------

use trapbox_trap::SIGNAL_NAMES as SIGNALS;

/// Signal name as strace prints it: `SIGSEGV`; 32 is `SIGRTMIN` and 33..=64 are `SIGRT_1` ..
/// `SIGRT_32` (strace numbers real-time signals from the kernel's SIGRTMIN, 32, not glibc's
/// 34); anything else, 0 included, is printed in decimal.
pub fn signal_name(sig: i32) -> String {
    match sig {
        1..=31 => SIGNALS[sig as usize].to_string(),
        32 => "SIGRTMIN".to_string(),
        33..=64 => format!("SIGRT_{}", sig - 32),
        _ => sig.to_string(),
    }
}

// ---- flag and value sets -------------------------------------------------------------------

const OPEN_ACCMODE: [&str; 4] = ["O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"];
const OPEN_FLAGS: Xlat = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o4000000, "__O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
    (0o20200000, "O_TMPFILE"),
    (0o20000000, "__O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o20000, "FASYNC"),
];
const UFFD_FLAGS: Xlat = &[(1, "UFFD_USER_MODE_ONLY"), (0o4000, "O_NONBLOCK"), (0o2000000, "O_CLOEXEC")];
const AT_FLAGS: Xlat = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_REMOVEDIR"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x8000, "AT_RECURSIVE"),
];
const FACCESSAT_FLAGS: Xlat = &[(0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_EACCESS"), (0x1000, "AT_EMPTY_PATH")];
const NAME_TO_HANDLE_AT_FLAGS: Xlat = &[(0x400, "AT_SYMLINK_FOLLOW"), (0x1000, "AT_EMPTY_PATH")];
const MOUNT_SETATTR_FLAGS: Xlat =
    &[(0x100, "AT_SYMLINK_NOFOLLOW"), (0x800, "AT_NO_AUTOMOUNT"), (0x1000, "AT_EMPTY_PATH"), (0x8000, "AT_RECURSIVE")];
const STATX_SYNC: Xlat = &[(0x2000, "AT_STATX_FORCE_SYNC"), (0x4000, "AT_STATX_DONT_SYNC")];
const PROT: Xlat = &[
    (0, "PROT_NONE"),
    (0x1, "PROT_READ"),
    (0x2, "PROT_WRITE"),
    (0x4, "PROT_EXEC"),
    (0x8, "PROT_SEM"),
    (0x0100_0000, "PROT_GROWSDOWN"),
    (0x0200_0000, "PROT_GROWSUP"),
];
const MAP_TYPES: Xlat = &[(0, "MAP_FILE"), (1, "MAP_SHARED"), (2, "MAP_PRIVATE"), (3, "MAP_SHARED_VALIDATE")];
const MAP_FLAGS: Xlat = &[
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x40, "MAP_32BIT"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
    (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
];
const MREMAP: Xlat = &[(1, "MREMAP_MAYMOVE"), (2, "MREMAP_FIXED"), (4, "MREMAP_DONTUNMAP")];
const MADVISE: Xlat = &[
    (0, "MADV_NORMAL"),
    (1, "MADV_RANDOM"),
    (2, "MADV_SEQUENTIAL"),
    (3, "MADV_WILLNEED"),
    (4, "MADV_DONTNEED"),
    (8, "MADV_FREE"),
    (9, "MADV_REMOVE"),
    (10, "MADV_DONTFORK"),
    (11, "MADV_DOFORK"),
    (12, "MADV_MERGEABLE"),
    (13, "MADV_UNMERGEABLE"),
    (14, "MADV_HUGEPAGE"),
    (15, "MADV_NOHUGEPAGE"),
    (16, "MADV_DONTDUMP"),
    (17, "MADV_DODUMP"),
    (18, "MADV_WIPEONFORK"),
    (19, "MADV_KEEPONFORK"),
    (20, "MADV_COLD"),
    (21, "MADV_PAGEOUT"),
    (22, "MADV_POPULATE_READ"),
    (23, "MADV_POPULATE_WRITE"),
    (24, "MADV_DONTNEED_LOCKED"),
    (25, "MADV_COLLAPSE"),
    (100, "MADV_HWPOISON"),
    (101, "MADV_SOFT_OFFLINE"),
];
const CLONE_FLAGS: Xlat = &[
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"),
    (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
];
const UNSHARE_FLAGS: Xlat = &[
    (0x80, "CLONE_NEWTIME"),
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
];
const SETNS_TYPES: Xlat = &[
    (0x80, "CLONE_NEWTIME"),
    (0x20000, "CLONE_NEWNS"),
    (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
];
const SA_FLAGS: Xlat = &[
    (0x0400_0000, "SA_RESTORER"),
    (0x0800_0000, "SA_ONSTACK"),
    (0x1000_0000, "SA_RESTART"),
    (0x2000_0000, "SA_INTERRUPT"),
    (0x4000_0000, "SA_NODEFER"),
    (0x8000_0000, "SA_RESETHAND"),
    (4, "SA_SIGINFO"),
    (1, "SA_NOCLDSTOP"),
    (2, "SA_NOCLDWAIT"),
];
const SIG_HOW: Xlat = &[(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK")];
const WHENCE: Xlat = &[(0, "SEEK_SET"), (1, "SEEK_CUR"), (2, "SEEK_END"), (3, "SEEK_DATA"), (4, "SEEK_HOLE")];
const ACCESS: Xlat = &[(0, "F_OK"), (4, "R_OK"), (2, "W_OK"), (1, "X_OK")];
const FUTEX_OPS: Xlat = &[
    (0, "FUTEX_WAIT"),
    (1, "FUTEX_WAKE"),
    (2, "FUTEX_FD"),
    (3, "FUTEX_REQUEUE"),
    (4, "FUTEX_CMP_REQUEUE"),
    (5, "FUTEX_WAKE_OP"),
    (6, "FUTEX_LOCK_PI"),
    (7, "FUTEX_UNLOCK_PI"),
    (8, "FUTEX_TRYLOCK_PI"),
    (9, "FUTEX_WAIT_BITSET"),
    (10, "FUTEX_WAKE_BITSET"),
    (11, "FUTEX_WAIT_REQUEUE_PI"),
    (12, "FUTEX_CMP_REQUEUE_PI"),
    (13, "FUTEX_LOCK_PI2"),
    (0x80, "FUTEX_WAIT_PRIVATE"),
    (0x81, "FUTEX_WAKE_PRIVATE"),
    (0x82, "FUTEX_FD|FUTEX_PRIVATE_FLAG"),
    (0x83, "FUTEX_REQUEUE_PRIVATE"),
    (0x84, "FUTEX_CMP_REQUEUE_PRIVATE"),
    (0x85, "FUTEX_WAKE_OP_PRIVATE"),
    (0x86, "FUTEX_LOCK_PI_PRIVATE"),
    (0x87, "FUTEX_UNLOCK_PI_PRIVATE"),
    (0x88, "FUTEX_TRYLOCK_PI_PRIVATE"),
    (0x89, "FUTEX_WAIT_BITSET_PRIVATE"),
    (0x8a, "FUTEX_WAKE_BITSET_PRIVATE"),
    (0x8b, "FUTEX_WAIT_REQUEUE_PI_PRIVATE"),
    (0x8c, "FUTEX_CMP_REQUEUE_PI_PRIVATE"),
    (0x8d, "FUTEX_LOCK_PI2_PRIVATE"),
    (0x100, "FUTEX_WAIT|FUTEX_CLOCK_REALTIME"),
    (0x180, "FUTEX_WAIT_PRIVATE|FUTEX_CLOCK_REALTIME"),
    (0x109, "FUTEX_WAIT_BITSET|FUTEX_CLOCK_REALTIME"),
    (0x189, "FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME"),
    (0x10b, "FUTEX_WAIT_REQUEUE_PI|FUTEX_CLOCK_REALTIME"),
    (0x18b, "FUTEX_WAIT_REQUEUE_PI_PRIVATE|FUTEX_CLOCK_REALTIME"),
];
const ARCH_PRCTL: Xlat = &[
    (0x1001, "ARCH_SET_GS"),
    (0x1002, "ARCH_SET_FS"),
    (0x1003, "ARCH_GET_FS"),
    (0x1004, "ARCH_GET_GS"),
    (0x1011, "ARCH_GET_CPUID"),
    (0x1012, "ARCH_SET_CPUID"),
    (0x1021, "ARCH_GET_XCOMP_SUPP"),
    (0x1022, "ARCH_GET_XCOMP_PERM"),
    (0x1023, "ARCH_REQ_XCOMP_PERM"),
    (0x1024, "ARCH_GET_XCOMP_GUEST_PERM"),
    (0x1025, "ARCH_REQ_XCOMP_GUEST_PERM"),
    (0x2001, "ARCH_MAP_VDSO_X32"),
    (0x2002, "ARCH_MAP_VDSO_32"),
    (0x2003, "ARCH_MAP_VDSO_64"),
];
const PRCTL: Xlat = &[
    (1, "PR_SET_PDEATHSIG"),
    (2, "PR_GET_PDEATHSIG"),
    (3, "PR_GET_DUMPABLE"),
    (4, "PR_SET_DUMPABLE"),
    (5, "PR_GET_UNALIGN"),
    (6, "PR_SET_UNALIGN"),
    (7, "PR_GET_KEEPCAPS"),
    (8, "PR_SET_KEEPCAPS"),
    (9, "PR_GET_FPEMU"),
    (10, "PR_SET_FPEMU"),
    (11, "PR_GET_FPEXC"),
    (12, "PR_SET_FPEXC"),
    (13, "PR_GET_TIMING"),
    (14, "PR_SET_TIMING"),
    (15, "PR_SET_NAME"),
    (16, "PR_GET_NAME"),
    (19, "PR_GET_ENDIAN"),
    (20, "PR_SET_ENDIAN"),
    (21, "PR_GET_SECCOMP"),
    (22, "PR_SET_SECCOMP"),
    (23, "PR_CAPBSET_READ"),
    (24, "PR_CAPBSET_DROP"),
    (25, "PR_GET_TSC"),
    (26, "PR_SET_TSC"),
    (27, "PR_GET_SECUREBITS"),
    (28, "PR_SET_SECUREBITS"),
    (29, "PR_SET_TIMERSLACK"),
    (30, "PR_GET_TIMERSLACK"),
    (31, "PR_TASK_PERF_EVENTS_DISABLE"),
    (32, "PR_TASK_PERF_EVENTS_ENABLE"),
    (33, "PR_MCE_KILL"),
    (34, "PR_MCE_KILL_GET"),
    (35, "PR_SET_MM"),
    (36, "PR_SET_CHILD_SUBREAPER"),
    (37, "PR_GET_CHILD_SUBREAPER"),
    (38, "PR_SET_NO_NEW_PRIVS"),
    (39, "PR_GET_NO_NEW_PRIVS"),
    (40, "PR_GET_TID_ADDRESS"),
    (41, "PR_SET_THP_DISABLE"),
    (42, "PR_GET_THP_DISABLE"),
    (43, "PR_MPX_ENABLE_MANAGEMENT"),
    (44, "PR_MPX_DISABLE_MANAGEMENT"),
    (45, "PR_SET_FP_MODE"),
    (46, "PR_GET_FP_MODE"),
    (47, "PR_CAP_AMBIENT"),
    (50, "PR_SVE_SET_VL"),
    (51, "PR_SVE_GET_VL"),
    (52, "PR_GET_SPECULATION_CTRL"),
    (53, "PR_SET_SPECULATION_CTRL"),
    (54, "PR_PAC_RESET_KEYS"),
    (55, "PR_SET_TAGGED_ADDR_CTRL"),
    (56, "PR_GET_TAGGED_ADDR_CTRL"),
    (57, "PR_SET_IO_FLUSHER"),
    (58, "PR_GET_IO_FLUSHER"),
    (59, "PR_SET_SYSCALL_USER_DISPATCH"),
    (60, "PR_PAC_SET_ENABLED_KEYS"),
    (61, "PR_PAC_GET_ENABLED_KEYS"),
    (62, "PR_SCHED_CORE"),
    (63, "PR_SME_SET_VL"),
    (64, "PR_SME_GET_VL"),
    (0x5356_4d41, "PR_SET_VMA"),
    (0x5961_6d61, "PR_SET_PTRACER"),
];
const CLOCKS: Xlat = &[
    (0, "CLOCK_REALTIME"),
    (1, "CLOCK_MONOTONIC"),
    (2, "CLOCK_PROCESS_CPUTIME_ID"),
    (3, "CLOCK_THREAD_CPUTIME_ID"),
    (4, "CLOCK_MONOTONIC_RAW"),
    (5, "CLOCK_REALTIME_COARSE"),
    (6, "CLOCK_MONOTONIC_COARSE"),
    (7, "CLOCK_BOOTTIME"),
    (8, "CLOCK_REALTIME_ALARM"),
    (9, "CLOCK_BOOTTIME_ALARM"),
    (10, "CLOCK_SGI_CYCLE"),
    (11, "CLOCK_TAI"),
];
const RLIMITS: Xlat = &[
    (0, "RLIMIT_CPU"),
    (1, "RLIMIT_FSIZE"),
    (2, "RLIMIT_DATA"),
    (3, "RLIMIT_STACK"),
    (4, "RLIMIT_CORE"),
    (5, "RLIMIT_RSS"),
    (6, "RLIMIT_NPROC"),
    (7, "RLIMIT_NOFILE"),
    (8, "RLIMIT_MEMLOCK"),
    (9, "RLIMIT_AS"),
    (10, "RLIMIT_LOCKS"),
    (11, "RLIMIT_SIGPENDING"),
    (12, "RLIMIT_MSGQUEUE"),
    (13, "RLIMIT_NICE"),
    (14, "RLIMIT_RTPRIO"),
    (15, "RLIMIT_RTTIME"),
];
const ADDRESS_FAMILIES: Xlat = &[
    (0, "AF_UNSPEC"),
    (1, "AF_UNIX"),
    (2, "AF_INET"),
    (3, "AF_AX25"),
    (4, "AF_IPX"),
    (5, "AF_APPLETALK"),
    (6, "AF_NETROM"),
    (7, "AF_BRIDGE"),
    (8, "AF_ATMPVC"),
    (9, "AF_X25"),
    (10, "AF_INET6"),
    (11, "AF_ROSE"),
    (12, "AF_DECnet"),
    (13, "AF_NETBEUI"),
    (14, "AF_SECURITY"),
    (15, "AF_KEY"),
    (16, "AF_NETLINK"),
    (17, "AF_PACKET"),
    (18, "AF_ASH"),
    (19, "AF_ECONET"),
    (20, "AF_ATMSVC"),
    (21, "AF_RDS"),
    (22, "AF_SNA"),
    (23, "AF_IRDA"),
    (24, "AF_PPPOX"),
    (25, "AF_WANPIPE"),
    (26, "AF_LLC"),
    (27, "AF_IB"),
    (28, "AF_MPLS"),
    (29, "AF_CAN"),
    (30, "AF_TIPC"),
    (31, "AF_BLUETOOTH"),
    (32, "AF_IUCV"),
    (33, "AF_RXRPC"),
    (34, "AF_ISDN"),
    (35, "AF_PHONET"),
    (36, "AF_IEEE802154"),
    (37, "AF_CAIF"),
    (38, "AF_ALG"),
    (39, "AF_NFC"),
    (40, "AF_VSOCK"),
    (41, "AF_KCM"),
    (42, "AF_QIPCRTR"),
    (43, "AF_SMC"),
    (44, "AF_XDP"),
    (45, "AF_MCTP"),
];
const SOCK_TYPES: Xlat = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"),
    (10, "SOCK_PACKET"),
];
const SOCK_TYPE_FLAGS: Xlat = &[(0o2000000, "SOCK_CLOEXEC"), (0o4000, "SOCK_NONBLOCK")];
const MSG_FLAGS: Xlat = &[
    (0x1, "MSG_OOB"),
    (0x2, "MSG_PEEK"),
    (0x4, "MSG_DONTROUTE"),
    (0x8, "MSG_CTRUNC"),
    (0x10, "MSG_PROBE"),
    (0x20, "MSG_TRUNC"),
    (0x40, "MSG_DONTWAIT"),
    (0x80, "MSG_EOR"),
    (0x100, "MSG_WAITALL"),
    (0x200, "MSG_FIN"),
    (0x400, "MSG_SYN"),
    (0x800, "MSG_CONFIRM"),
    (0x1000, "MSG_RST"),
    (0x2000, "MSG_ERRQUEUE"),
    (0x4000, "MSG_NOSIGNAL"),
    (0x8000, "MSG_MORE"),
    (0x10000, "MSG_WAITFORONE"),
    (0x20000, "MSG_SENDPAGE_NOTLAST"),
    (0x40000, "MSG_BATCH"),
    (0x80000, "MSG_NO_SHARED_FRAGS"),
    (0x400_0000, "MSG_ZEROCOPY"),
    (0x2000_0000, "MSG_FASTOPEN"),
    (0x4000_0000, "MSG_CMSG_CLOEXEC"),
    (0x8000_0000, "MSG_CMSG_COMPAT"),
];
const GETRANDOM: Xlat = &[(1, "GRND_NONBLOCK"), (2, "GRND_RANDOM"), (4, "GRND_INSECURE")];
const EPOLL_CTL: Xlat = &[(1, "EPOLL_CTL_ADD"), (2, "EPOLL_CTL_DEL"), (3, "EPOLL_CTL_MOD")];
const WAIT_OPTIONS: Xlat = &[
    (1, "WNOHANG"),
    (4, "WEXITED"),
    (2, "WSTOPPED"),
    (8, "WCONTINUED"),
    (0x0100_0000, "WNOWAIT"),
    (0x8000_0000, "__WCLONE"),
    (0x4000_0000, "__WALL"),
    (0x2000_0000, "__WNOTHREAD"),
];
const RENAME: Xlat = &[(1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT")];
const SCHED_POLICIES: Xlat = &[
    (0, "SCHED_OTHER"),
    (1, "SCHED_FIFO"),
    (2, "SCHED_RR"),
    (3, "SCHED_BATCH"),
    (4, "SCHED_ISO"),
    (5, "SCHED_IDLE"),
    (6, "SCHED_DEADLINE"),
];
const ITIMERS: Xlat = &[(0, "ITIMER_REAL"), (1, "ITIMER_VIRTUAL"), (2, "ITIMER_PROF")];
const ID_TYPES: Xlat = &[(0, "P_ALL"), (1, "P_PID"), (2, "P_PGID"), (3, "P_PIDFD")];
const FALLOC: Xlat = &[
    (0x1, "FALLOC_FL_KEEP_SIZE"),
    (0x2, "FALLOC_FL_PUNCH_HOLE"),
    (0x4, "FALLOC_FL_NO_HIDE_STALE"),
    (0x8, "FALLOC_FL_COLLAPSE_RANGE"),
    (0x10, "FALLOC_FL_ZERO_RANGE"),
    (0x20, "FALLOC_FL_INSERT_RANGE"),
    (0x40, "FALLOC_FL_UNSHARE_RANGE"),
];
const FADVISE: Xlat = &[
    (0, "POSIX_FADV_NORMAL"),
    (1, "POSIX_FADV_RANDOM"),
    (2, "POSIX_FADV_SEQUENTIAL"),
    (3, "POSIX_FADV_WILLNEED"),
    (4, "POSIX_FADV_DONTNEED"),
    (5, "POSIX_FADV_NOREUSE"),
];
const FLOCK: Xlat = &[
    (1, "LOCK_SH"),
    (2, "LOCK_EX"),
    (4, "LOCK_NB"),
    (8, "LOCK_UN"),
    (0x20, "LOCK_MAND"),
    (0xc0, "LOCK_RW"),
    (0x40, "LOCK_READ"),
    (0x80, "LOCK_WRITE"),
];
const STATX_MASK: Xlat = &[
    (0xfff, "STATX_ALL"),
    (0x7ff, "STATX_BASIC_STATS"),
    (0x1, "STATX_TYPE"),
    (0x2, "STATX_MODE"),
    (0x4, "STATX_NLINK"),
    (0x8, "STATX_UID"),
    (0x10, "STATX_GID"),
    (0x20, "STATX_ATIME"),
    (0x40, "STATX_MTIME"),
    (0x80, "STATX_CTIME"),
    (0x100, "STATX_INO"),
    (0x200, "STATX_SIZE"),
    (0x400, "STATX_BLOCKS"),
    (0x800, "STATX_BTIME"),
    (0x1000, "STATX_MNT_ID"),
    (0x2000, "STATX_DIOALIGN"),
];
const CLOSE_RANGE: Xlat = &[(2, "CLOSE_RANGE_UNSHARE"), (4, "CLOSE_RANGE_CLOEXEC")];
const MSYNC: Xlat = &[(4, "MS_SYNC"), (1, "MS_ASYNC"), (2, "MS_INVALIDATE")];
const MLOCKALL: Xlat = &[(1, "MCL_CURRENT"), (2, "MCL_FUTURE"), (4, "MCL_ONFAULT")];
const MLOCK2: Xlat = &[(1, "MLOCK_ONFAULT")];

/// strace's rendering of the value `v` of an argument of flag set `set` (the raw register:
/// the function truncates to 32 bits where strace reads an `int`).
///
/// Value sets print their name or `0x7 /* SEEK_??? */` (`0 /* ARCH_??? */` for zero); flag
/// sets print names joined by `|` with leftover bits appended in hex (`O_RDONLY|0x4`), or
/// `0x8 /* MS_??? */` when no name matches, and `0` for no flags unless the set names zero
/// (`O_RDONLY`, `PROT_NONE`, `F_OK`, `MAP_FILE`). Sets whose rendering depends on the syscall
/// are rendered here the way their most common user shows them (see [`syscall_flags`]):
/// `At` as newfstatat/unlinkat/utimensat do, `Open` as open/openat do, `Clone` as clone does,
/// `SockType` as socket does, `Mlock` as mlockall does, `Misc` in plain hex.
pub fn flags(set: FlagSet, v: u64) -> String {
    match set {
        FlagSet::Open => open_flags(v),
        FlagSet::At => flag_names(AT_FLAGS, low32(v), Some("AT_???")),
        FlagSet::Prot => flag_names(PROT, v, Some("PROT_???")),
        FlagSet::Map => map_flags(v),
        FlagSet::Mremap => flag_names(MREMAP, v, Some("MREMAP_???")),
        FlagSet::Madvise => xval(MADVISE, low32(v), "MADV_???"),
        FlagSet::Clone => clone_flags(v),
        FlagSet::SigAction => flag_names(SA_FLAGS, v, Some("SA_???")),
        FlagSet::SigHow => xval(SIG_HOW, low32(v), "SIG_???"),
        FlagSet::Whence => xval(WHENCE, low32(v), "SEEK_???"),
        FlagSet::Access => flag_names(ACCESS, low32(v), Some("?_OK")),
        FlagSet::FutexOp => xval(FUTEX_OPS, low32(v), "FUTEX_???"),
        FlagSet::ArchPrctl => xval(ARCH_PRCTL, low32(v), "ARCH_???"),
        FlagSet::Prctl => xval(PRCTL, low32(v), "PR_???"),
        FlagSet::ClockId => xval(CLOCKS, low32(v), "CLOCK_???"),
        FlagSet::Rlimit => xval(RLIMITS, low32(v), "RLIMIT_???"),
        FlagSet::AddressFamily => xval(ADDRESS_FAMILIES, low32(v), "AF_???"),
        FlagSet::SockType => sock_type(v),
        FlagSet::Msg => flag_names(MSG_FLAGS, low32(v), Some("MSG_???")),
        FlagSet::Getrandom => flag_names(GETRANDOM, low32(v), Some("GRND_???")),
        FlagSet::EpollCtl => xval(EPOLL_CTL, low32(v), "EPOLL_CTL_???"),
        FlagSet::Misc => hex(v),
        FlagSet::Wait => flag_names(WAIT_OPTIONS, low32(v), Some("W???")),
        FlagSet::Rename => flag_names(RENAME, low32(v), Some("RENAME_??")),
        FlagSet::SchedPolicy => xval(SCHED_POLICIES, low32(v), "SCHED_???"),
        FlagSet::Itimer => xval(ITIMERS, low32(v), "ITIMER_???"),
        FlagSet::IdType => xval(ID_TYPES, low32(v), "P_???"),
        FlagSet::Falloc => flag_names(FALLOC, low32(v), Some("FALLOC_FL_???")),
        FlagSet::Fadvise => xval(FADVISE, low32(v), "POSIX_FADV_???"),
        FlagSet::Flock => flag_names(FLOCK, low32(v), Some("LOCK_???")),
        FlagSet::StatxMask => flag_names(STATX_MASK, low32(v), Some("STATX_???")),
        FlagSet::CloseRange => flag_names(CLOSE_RANGE, low32(v), Some("CLOSE_RANGE_???")),
        FlagSet::Msync => flag_names(MSYNC, low32(v), Some("MS_???")),
        FlagSet::Mlock => flag_names(MLOCKALL, low32(v), Some("MCL_???")),
    }
}

/// open/openat/mq_open flags: the access mode always first (`O_RDONLY`, `O_ACCMODE` for 3),
/// then the other flags, then leftover bits in hex.
fn open_flags(v: u64) -> String {
    let v = low32(v);
    let mut out = OPEN_ACCMODE[(v & 3) as usize].to_string();
    let rest = v & !3;
    if rest != 0 {
        out.push('|');
        out.push_str(&flag_names(OPEN_FLAGS, rest, None));
    }
    out
}

/// mmap flags: the mapping type (`MAP_PRIVATE`, `MAP_FILE` for 0, `0x4 /* MAP_??? */`), the
/// other flags, leftover bits in hex, then the huge page size as `21<<MAP_HUGE_SHIFT`.
fn map_flags(v: u64) -> String {
    let v = low32(v);
    let mut out = xval(MAP_TYPES, v & 0xf, "MAP_???");
    let huge = (v >> 26) & 0x3f;
    let rest = v & !0xf & !(0x3f << 26);
    if rest != 0 {
        out.push('|');
        out.push_str(&flag_names(MAP_FLAGS, rest, None));
    }
    if huge != 0 {
        out.push_str(&format!("|{huge}<<MAP_HUGE_SHIFT"));
    }
    out
}

/// clone flags: `CLONE_*` names (with `0x400000 /* CLONE_??? */` or leftover hex as strace
/// prints them), then the exit signal in the low byte (`|SIGCHLD`); `0` when both are zero.
fn clone_flags(v: u64) -> String {
    let sig = v & 0xff;
    let rest = v & !0xff;
    let mut out = String::new();
    if rest != 0 {
        out = flag_names(CLONE_FLAGS, rest, Some("CLONE_???"));
    }
    if sig != 0 {
        push_or(&mut out, &signal_name(sig as i32));
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

/// socket/socketpair type: the known type name, then `SOCK_CLOEXEC|SOCK_NONBLOCK` and
/// leftovers; an unknown type is folded into the flags (`0x7 /* SOCK_??? */`).
fn sock_type(v: u64) -> String {
    let v = low32(v);
    match lookup(SOCK_TYPES, v & 0xf) {
        Some(name) => {
            let rest = v & !0xf;
            if rest == 0 {
                name.to_string()
            } else {
                format!("{name}|{}", flag_names(SOCK_TYPE_FLAGS, rest, Some("SOCK_???")))
            }
        }
        None => flag_names(SOCK_TYPE_FLAGS, v, Some("SOCK_???")),
    }
}

/// statx flags: the sync type first (`AT_STATX_SYNC_AS_STAT` when neither sync bit is set),
/// then the `AT_*` flags.
fn statx_flags(v: u64) -> String {
    let v = low32(v);
    let sync = v & 0x6000;
    let mut out = if sync == 0 { "AT_STATX_SYNC_AS_STAT".to_string() } else { flag_names(STATX_SYNC, sync, None) };
    let rest = v & !0x6000;
    if rest != 0 {
        out.push('|');
        out.push_str(&flag_names(AT_FLAGS, rest, None));
    }
    out
}

/// Small flag sets of [`FlagSet::Misc`] arguments that strace names, by syscall.
fn misc_table(syscall: &str) -> Option<(Xlat, &'static str)> {
    const EFD: Xlat = &[(1, "EFD_SEMAPHORE"), (0o2000000, "EFD_CLOEXEC"), (0o4000, "EFD_NONBLOCK")];
    const EPOLL: Xlat = &[(0o2000000, "EPOLL_CLOEXEC")];
    const IN_INIT: Xlat = &[(0o4000, "IN_NONBLOCK"), (0o2000000, "IN_CLOEXEC")];
    const TFD: Xlat = &[
        (1, "TFD_TIMER_ABSTIME"),
        (2, "TFD_TIMER_CANCEL_ON_SET"),
        (0o2000000, "TFD_CLOEXEC"),
        (0o4000, "TFD_NONBLOCK"),
    ];
    const SFD: Xlat = &[(0o2000000, "SFD_CLOEXEC"), (0o4000, "SFD_NONBLOCK")];
    const TIMER: Xlat = &[(1, "TIMER_ABSTIME")];
    const PIDFD: Xlat = &[(0o4000, "PIDFD_NONBLOCK")];
    const SPLICE: Xlat = &[(1, "SPLICE_F_MOVE"), (2, "SPLICE_F_NONBLOCK"), (4, "SPLICE_F_MORE"), (8, "SPLICE_F_GIFT")];
    const XATTR: Xlat = &[(1, "XATTR_CREATE"), (2, "XATTR_REPLACE")];
    const UMOUNT: Xlat = &[(1, "MNT_FORCE"), (2, "MNT_DETACH"), (4, "MNT_EXPIRE"), (8, "UMOUNT_NOFOLLOW")];
    const SYNC_FILE_RANGE: Xlat =
        &[(1, "SYNC_FILE_RANGE_WAIT_BEFORE"), (2, "SYNC_FILE_RANGE_WRITE"), (4, "SYNC_FILE_RANGE_WAIT_AFTER")];
    const RWF: Xlat = &[(1, "RWF_HIPRI"), (2, "RWF_DSYNC"), (4, "RWF_SYNC"), (8, "RWF_NOWAIT"), (0x10, "RWF_APPEND")];
    const IN_MASK: Xlat = &[
        (0x1, "IN_ACCESS"),
        (0x2, "IN_MODIFY"),
        (0x4, "IN_ATTRIB"),
        (0x8, "IN_CLOSE_WRITE"),
        (0x10, "IN_CLOSE_NOWRITE"),
        (0x20, "IN_OPEN"),
        (0x40, "IN_MOVED_FROM"),
        (0x80, "IN_MOVED_TO"),
        (0x100, "IN_CREATE"),
        (0x200, "IN_DELETE"),
        (0x400, "IN_DELETE_SELF"),
        (0x800, "IN_MOVE_SELF"),
        (0x2000, "IN_UNMOUNT"),
        (0x4000, "IN_Q_OVERFLOW"),
        (0x8000, "IN_IGNORED"),
        (0x100_0000, "IN_ONLYDIR"),
        (0x200_0000, "IN_DONT_FOLLOW"),
        (0x400_0000, "IN_EXCL_UNLINK"),
        (0x1000_0000, "IN_MASK_CREATE"),
        (0x2000_0000, "IN_MASK_ADD"),
        (0x4000_0000, "IN_ISDIR"),
        (0x8000_0000, "IN_ONESHOT"),
    ];
    Some(match syscall {
        "eventfd2" => (EFD, "EFD_???"),
        "epoll_create1" => (EPOLL, "EPOLL_???"),
        "inotify_init1" => (IN_INIT, "IN_???"),
        "timerfd_create" | "timerfd_settime" => (TFD, "TFD_???"),
        "signalfd4" => (SFD, "SFD_???"),
        "clock_nanosleep" | "timer_settime" => (TIMER, "TIMER_???"),
        "pidfd_open" => (PIDFD, "PIDFD_???"),
        "splice" | "tee" | "vmsplice" => (SPLICE, "SPLICE_F_???"),
        "setxattr" | "lsetxattr" | "fsetxattr" => (XATTR, "XATTR_???"),
        "umount2" => (UMOUNT, "MNT_???"),
        "sync_file_range" => (SYNC_FILE_RANGE, "SYNC_FILE_RANGE_???"),
        "preadv2" | "pwritev2" => (RWF, "RWF_???"),
        "inotify_add_watch" => (IN_MASK, "IN_???"),
        _ => return None,
    })
}

/// memfd_create flags: `MFD_*` names, leftover hex, then the huge page size as
/// `21<<MFD_HUGE_SHIFT`.
fn memfd_flags(v: u64) -> String {
    const MFD: Xlat = &[(1, "MFD_CLOEXEC"), (2, "MFD_ALLOW_SEALING"), (4, "MFD_HUGETLB")];
    let v = low32(v);
    let huge = (v >> 26) & 0x3f;
    let rest = v & !(0x3f << 26);
    let mut out = String::new();
    if rest != 0 || huge == 0 {
        out = flag_names(MFD, rest, Some("MFD_???"));
    }
    if huge != 0 {
        push_or(&mut out, &format!("{huge}<<MFD_HUGE_SHIFT"));
    }
    out
}

/// Like [`flags`], but with the rendering strace uses for that argument of syscall `syscall`
/// where it differs from the generic one:
///
/// - statx `flags` (`FlagSet::At`): `AT_STATX_SYNC_AS_STAT|AT_SYMLINK_NOFOLLOW` (0 is
///   `AT_STATX_SYNC_AS_STAT`, not `0`);
/// - faccessat2, name_to_handle_at and mount_setattr `flags`: their own `AT_*` subsets
///   (`AT_EACCESS` is 0x200 for faccessat2);
/// - pipe2 and dup3 `flags` (`FlagSet::Open`): no access mode (`0`, `O_CLOEXEC`,
///   `0x1 /* O_??? */`); userfaultfd: `UFFD_USER_MODE_ONLY|O_NONBLOCK|O_CLOEXEC`;
/// - unshare (`CLONE_NEWTIME` first, no exit signal) and setns (`CLONE_NEW*` only);
/// - accept4 `flags` (`FlagSet::SockType`): `SOCK_CLOEXEC|SOCK_NONBLOCK` without a type;
/// - mlock2 `flags` (`FlagSet::Mlock`): `MLOCK_ONFAULT` (mlockall keeps `MCL_*`);
/// - `FlagSet::Misc` of eventfd2, epoll_create1, inotify_init1, inotify_add_watch,
///   memfd_create, timerfd_create, timerfd_settime, signalfd4, clock_nanosleep, timer_settime,
///   pidfd_open, splice, tee, vmsplice, *setxattr, umount2, sync_file_range, preadv2,
///   pwritev2 (their `*_` names) and copy_file_range (decimal).
///
/// fchmodat2 (452) is not known to strace 6.1 at all; its arguments print raw.
pub fn syscall_flags(syscall: &str, set: FlagSet, v: u64) -> String {
    match (syscall, set) {
        ("statx", FlagSet::At) => statx_flags(v),
        ("faccessat2", FlagSet::At) => flag_names(FACCESSAT_FLAGS, low32(v), Some("AT_???")),
        ("name_to_handle_at", FlagSet::At) => flag_names(NAME_TO_HANDLE_AT_FLAGS, low32(v), Some("AT_???")),
        ("mount_setattr", FlagSet::At) => flag_names(MOUNT_SETATTR_FLAGS, low32(v), Some("AT_???")),
        ("pipe2" | "dup3", FlagSet::Open) => flag_names(OPEN_FLAGS, low32(v), Some("O_???")),
        ("userfaultfd", FlagSet::Open) => flag_names(UFFD_FLAGS, low32(v), Some("UFFD_???")),
        ("unshare", FlagSet::Clone) => flag_names(UNSHARE_FLAGS, v, Some("CLONE_???")),
        ("setns", FlagSet::Clone) => flag_names(SETNS_TYPES, low32(v), Some("CLONE_NEW???")),
        ("accept4", FlagSet::SockType) => flag_names(SOCK_TYPE_FLAGS, low32(v), Some("SOCK_???")),
        ("mlock2", FlagSet::Mlock) => flag_names(MLOCK2, low32(v), Some("MLOCK_???")),
        ("memfd_create", FlagSet::Misc) => memfd_flags(v),
        ("copy_file_range", FlagSet::Misc) => low32(v).to_string(),
        (name, FlagSet::Misc) => match misc_table(name) {
            Some((table, unknown)) => flag_names(table, low32(v), Some(unknown)),
            None => hex(v),
        },
        _ => flags(set, v),
    }
}

// ---- modes ---------------------------------------------------------------------------------

/// C's `%#03o`: `000`, `001`, `0644`, `01777`.
fn octal(v: u64) -> String {
    let s = if v == 0 { "0".to_string() } else { format!("0{v:o}") };
    format!("{s:0>3}")
}

/// Permission bits as strace prints a mode argument (openat's 4th, chmod's, mkdir's,
/// umask's): `0644`, `000`, `01777`, `04755`. strace reads the argument as a 16-bit
/// `umode_t`, so bits above 0xffff are dropped, and file type bits print in octal too
/// (`0100644`).
pub fn mode(m: u64) -> String {
    octal(m & 0xffff)
}

/// `st_mode` as strace prints it inside a stat struct (and mknod's mode): `S_IFREG|0644`,
/// `S_IFDIR|0755`, `S_IFCHR|0620`; set-id and sticky bits by name (`S_IFDIR|S_ISVTX|0777`
/// for /tmp, `S_IFREG|S_ISUID|0755`); no type gives the bare `0644`, an unknown type the
/// whole value in octal (`0170000`).
pub fn st_mode(m: u64) -> String {
    const TYPES: Xlat = &[
        (0o140000, "S_IFSOCK"),
        (0o120000, "S_IFLNK"),
        (0o100000, "S_IFREG"),
        (0o060000, "S_IFBLK"),
        (0o040000, "S_IFDIR"),
        (0o020000, "S_IFCHR"),
        (0o010000, "S_IFIFO"),
    ];
    let m = m & 0xffff;
    let mut out = String::new();
    if m & 0o170000 != 0 {
        match lookup(TYPES, m & 0o170000) {
            Some(t) => {
                out.push_str(t);
                out.push('|');
            }
            None => return octal(m),
        }
    }
    for (bit, name) in [(0o4000, "S_ISUID|"), (0o2000, "S_ISGID|"), (0o1000, "S_ISVTX|")] {
        if m & bit != 0 {
            out.push_str(name);
        }
    }
    out.push_str(&octal(m & 0o777));
    out
}

// ---- siginfo -------------------------------------------------------------------------------

/// si_code name for signal `signo` as strace prints it in
/// `--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x10} ---`: the generic codes
/// (`SI_USER`, `SI_KERNEL`, `SI_QUEUE`, `SI_TKILL`, ...) for every signal, the signal's own
/// codes (`SEGV_MAPERR`, `ILL_ILLOPN`, `FPE_INTDIV`, `BUS_ADRALN`, `TRAP_BRKPT`, `CLD_EXITED`,
/// `POLL_IN`, `SYS_SECCOMP`) for positive ones, and the code as 32-bit hex otherwise
/// (`0x1`, `0xfffffff6`).
pub fn si_code(signo: i32, code: i32) -> String {
    const GENERIC: &[(i32, &str)] = &[
        (0, "SI_USER"),
        (0x80, "SI_KERNEL"),
        (-1, "SI_QUEUE"),
        (-2, "SI_TIMER"),
        (-3, "SI_MESGQ"),
        (-4, "SI_ASYNCIO"),
        (-5, "SI_SIGIO"),
        (-6, "SI_TKILL"),
        (-7, "SI_DETHREAD"),
        (-60, "SI_ASYNCNL"),
    ];
    const ILL: &[&str] = &[
        "ILL_ILLOPC",
        "ILL_ILLOPN",
        "ILL_ILLADR",
        "ILL_ILLTRP",
        "ILL_PRVOPC",
        "ILL_PRVREG",
        "ILL_COPROC",
        "ILL_BADSTK",
        "ILL_BADIADDR",
    ];
    const FPE: &[&str] = &[
        "FPE_INTDIV",
        "FPE_INTOVF",
        "FPE_FLTDIV",
        "FPE_FLTOVF",
        "FPE_FLTUND",
        "FPE_FLTRES",
        "FPE_FLTINV",
        "FPE_FLTSUB",
        "",
        "",
        "",
        "",
        "",
        "FPE_FLTUNK",
        "FPE_CONDTRAP",
    ];
    const SEGV: &[&str] = &[
        "SEGV_MAPERR",
        "SEGV_ACCERR",
        "SEGV_BNDERR",
        "SEGV_PKUERR",
        "SEGV_ACCADI",
        "SEGV_ADIDERR",
        "SEGV_ADIPERR",
        "SEGV_MTEAERR",
        "SEGV_MTESERR",
    ];
    const BUS: &[&str] = &["BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"];
    const TRAP: &[&str] = &["TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT", "TRAP_UNK", "TRAP_PERF"];
    const CLD: &[&str] = &["CLD_EXITED", "CLD_KILLED", "CLD_DUMPED", "CLD_TRAPPED", "CLD_STOPPED", "CLD_CONTINUED"];
    const POLL: &[&str] = &["POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP"];
    const SYS: &[&str] = &["SYS_SECCOMP", "SYS_USER_DISPATCH"];

    if let Some(&(_, name)) = GENERIC.iter().find(|&&(c, _)| c == code) {
        return name.to_string();
    }
    let table: &[&str] = match signo {
        4 => ILL,
        5 => TRAP,
        7 => BUS,
        8 => FPE,
        11 => SEGV,
        17 => CLD,
        29 => POLL,
        31 => SYS,
        _ => &[],
    };
    match usize::try_from(code).ok().and_then(|c| c.checked_sub(1)).and_then(|i| table.get(i)) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => hex(u64::from(code as u32)),
    }
}

// ---- ioctl and fcntl -----------------------------------------------------------------------

/// ioctl request name as strace prints it (`TCGETS`, `TIOCGWINSZ`, `FIONREAD`, and for numbers
/// strace knows under several names the whole `SNDCTL_TMR_START or TCSETS`), for the tty,
/// file, block device and socket ioctls; None if not in the table (see [`ioctl_request`]).
/// strace reads the request as 32 bits.
pub fn ioctl_name(req: u64) -> Option<&'static str> {
    let req = low32(req) as u32;
    IOCTLS.binary_search_by_key(&req, |&(n, _)| n).ok().map(|i| IOCTLS[i].1)
}

/// The ioctl request as strace prints it: its name, or the decoded `_IOC(_IOC_READ, 0x54,
/// 0x99, 0x4)` form strace falls back to. (strace also has special forms for a few driver
/// families, such as the sound mixer's `MIXER_WRITE(59)`; those print as `_IOC(...)` here.)
pub fn ioctl_request(req: u64) -> String {
    if let Some(name) = ioctl_name(req) {
        return name.to_string();
    }
    let req = low32(req);
    let dir = match (req >> 30) & 3 {
        0 => "_IOC_NONE",
        1 => "_IOC_WRITE",
        2 => "_IOC_READ",
        _ => "_IOC_READ|_IOC_WRITE",
    };
    format!("_IOC({dir}, {}, {}, {})", hex((req >> 8) & 0xff), hex(req & 0xff), hex((req >> 16) & 0x3fff))
}

const FCNTL_CMDS: Xlat = &[
    (0, "F_DUPFD"),
    (1, "F_GETFD"),
    (2, "F_SETFD"),
    (3, "F_GETFL"),
    (4, "F_SETFL"),
    (5, "F_GETLK"),
    (6, "F_SETLK"),
    (7, "F_SETLKW"),
    (8, "F_SETOWN"),
    (9, "F_GETOWN"),
    (10, "F_SETSIG"),
    (11, "F_GETSIG"),
    (12, "F_GETLK64"),
    (13, "F_SETLK64"),
    (14, "F_SETLKW64"),
    (15, "F_SETOWN_EX"),
    (16, "F_GETOWN_EX"),
    (17, "F_GETOWNER_UIDS"),
    (36, "F_OFD_GETLK"),
    (37, "F_OFD_SETLK"),
    (38, "F_OFD_SETLKW"),
    (1024, "F_SETLEASE"),
    (1025, "F_GETLEASE"),
    (1026, "F_NOTIFY"),
    (1029, "F_CANCELLK"),
    (1030, "F_DUPFD_CLOEXEC"),
    (1031, "F_SETPIPE_SZ"),
    (1032, "F_GETPIPE_SZ"),
    (1033, "F_ADD_SEALS"),
    (1034, "F_GET_SEALS"),
];

/// fcntl command name (`F_GETFD`, `F_SETFL`, `F_DUPFD_CLOEXEC`, ...), or strace's
/// `0x12 /* F_??? */` for an unknown one (read as 32 bits).
pub fn fcntl_cmd(cmd: u64) -> String {
    xval(FCNTL_CMDS, low32(cmd), "F_???")
}

// ---- tables ------------------------------------------------------------------------------

/// `(errno, name, message)` as strace 6.1 prints them after `= -1 `.
const ERRNOS: &[(i32, &str, &str)] = &[
    (1, "EPERM", "Operation not permitted"),
    (2, "ENOENT", "No such file or directory"),
    (3, "ESRCH", "No such process"),
    (4, "EINTR", "Interrupted system call"),
    (5, "EIO", "Input/output error"),
    (6, "ENXIO", "No such device or address"),
    (7, "E2BIG", "Argument list too long"),
    (8, "ENOEXEC", "Exec format error"),
    (9, "EBADF", "Bad file descriptor"),
    (10, "ECHILD", "No child processes"),
    (11, "EAGAIN", "Resource temporarily unavailable"),
    (12, "ENOMEM", "Cannot allocate memory"),
    (13, "EACCES", "Permission denied"),
    (14, "EFAULT", "Bad address"),
    (15, "ENOTBLK", "Block device required"),
    (16, "EBUSY", "Device or resource busy"),
    (17, "EEXIST", "File exists"),
    (18, "EXDEV", "Invalid cross-device link"),
    (19, "ENODEV", "No such device"),
    (20, "ENOTDIR", "Not a directory"),
    (21, "EISDIR", "Is a directory"),
    (22, "EINVAL", "Invalid argument"),
    (23, "ENFILE", "Too many open files in system"),
    (24, "EMFILE", "Too many open files"),
    (25, "ENOTTY", "Inappropriate ioctl for device"),
    (26, "ETXTBSY", "Text file busy"),
    (27, "EFBIG", "File too large"),
    (28, "ENOSPC", "No space left on device"),
    (29, "ESPIPE", "Illegal seek"),
    (30, "EROFS", "Read-only file system"),
    (31, "EMLINK", "Too many links"),
    (32, "EPIPE", "Broken pipe"),
    (33, "EDOM", "Numerical argument out of domain"),
    (34, "ERANGE", "Numerical result out of range"),
    (35, "EDEADLK", "Resource deadlock avoided"),
    (36, "ENAMETOOLONG", "File name too long"),
    (37, "ENOLCK", "No locks available"),
    (38, "ENOSYS", "Function not implemented"),
    (39, "ENOTEMPTY", "Directory not empty"),
    (40, "ELOOP", "Too many levels of symbolic links"),
    (42, "ENOMSG", "No message of desired type"),
    (43, "EIDRM", "Identifier removed"),
    (44, "ECHRNG", "Channel number out of range"),
    (45, "EL2NSYNC", "Level 2 not synchronized"),
    (46, "EL3HLT", "Level 3 halted"),
    (47, "EL3RST", "Level 3 reset"),
    (48, "ELNRNG", "Link number out of range"),
    (49, "EUNATCH", "Protocol driver not attached"),
    (50, "ENOCSI", "No CSI structure available"),
    (51, "EL2HLT", "Level 2 halted"),
    (52, "EBADE", "Invalid exchange"),
    (53, "EBADR", "Invalid request descriptor"),
    (54, "EXFULL", "Exchange full"),
    (55, "ENOANO", "No anode"),
    (56, "EBADRQC", "Invalid request code"),
    (57, "EBADSLT", "Invalid slot"),
    (59, "EBFONT", "Bad font file format"),
    (60, "ENOSTR", "Device not a stream"),
    (61, "ENODATA", "No data available"),
    (62, "ETIME", "Timer expired"),
    (63, "ENOSR", "Out of streams resources"),
    (64, "ENONET", "Machine is not on the network"),
    (65, "ENOPKG", "Package not installed"),
    (66, "EREMOTE", "Object is remote"),
    (67, "ENOLINK", "Link has been severed"),
    (68, "EADV", "Advertise error"),
    (69, "ESRMNT", "Srmount error"),
    (70, "ECOMM", "Communication error on send"),
    (71, "EPROTO", "Protocol error"),
    (72, "EMULTIHOP", "Multihop attempted"),
    (73, "EDOTDOT", "RFS specific error"),
    (74, "EBADMSG", "Bad message"),
    (75, "EOVERFLOW", "Value too large for defined data type"),
    (76, "ENOTUNIQ", "Name not unique on network"),
    (77, "EBADFD", "File descriptor in bad state"),
    (78, "EREMCHG", "Remote address changed"),
    (79, "ELIBACC", "Can not access a needed shared library"),
    (80, "ELIBBAD", "Accessing a corrupted shared library"),
    (81, "ELIBSCN", ".lib section in a.out corrupted"),
    (82, "ELIBMAX", "Attempting to link in too many shared libraries"),
    (83, "ELIBEXEC", "Cannot exec a shared library directly"),
    (84, "EILSEQ", "Invalid or incomplete multibyte or wide character"),
    (85, "ERESTART", "Interrupted system call should be restarted"),
    (86, "ESTRPIPE", "Streams pipe error"),
    (87, "EUSERS", "Too many users"),
    (88, "ENOTSOCK", "Socket operation on non-socket"),
    (89, "EDESTADDRREQ", "Destination address required"),
    (90, "EMSGSIZE", "Message too long"),
    (91, "EPROTOTYPE", "Protocol wrong type for socket"),
    (92, "ENOPROTOOPT", "Protocol not available"),
    (93, "EPROTONOSUPPORT", "Protocol not supported"),
    (94, "ESOCKTNOSUPPORT", "Socket type not supported"),
    (95, "EOPNOTSUPP", "Operation not supported"),
    (96, "EPFNOSUPPORT", "Protocol family not supported"),
    (97, "EAFNOSUPPORT", "Address family not supported by protocol"),
    (98, "EADDRINUSE", "Address already in use"),
    (99, "EADDRNOTAVAIL", "Cannot assign requested address"),
    (100, "ENETDOWN", "Network is down"),
    (101, "ENETUNREACH", "Network is unreachable"),
    (102, "ENETRESET", "Network dropped connection on reset"),
    (103, "ECONNABORTED", "Software caused connection abort"),
    (104, "ECONNRESET", "Connection reset by peer"),
    (105, "ENOBUFS", "No buffer space available"),
    (106, "EISCONN", "Transport endpoint is already connected"),
    (107, "ENOTCONN", "Transport endpoint is not connected"),
    (108, "ESHUTDOWN", "Cannot send after transport endpoint shutdown"),
    (109, "ETOOMANYREFS", "Too many references: cannot splice"),
    (110, "ETIMEDOUT", "Connection timed out"),
    (111, "ECONNREFUSED", "Connection refused"),
    (112, "EHOSTDOWN", "Host is down"),
    (113, "EHOSTUNREACH", "No route to host"),
    (114, "EALREADY", "Operation already in progress"),
    (115, "EINPROGRESS", "Operation now in progress"),
    (116, "ESTALE", "Stale file handle"),
    (117, "EUCLEAN", "Structure needs cleaning"),
    (118, "ENOTNAM", "Not a XENIX named type file"),
    (119, "ENAVAIL", "No XENIX semaphores available"),
    (120, "EISNAM", "Is a named type file"),
    (121, "EREMOTEIO", "Remote I/O error"),
    (122, "EDQUOT", "Disk quota exceeded"),
    (123, "ENOMEDIUM", "No medium found"),
    (124, "EMEDIUMTYPE", "Wrong medium type"),
    (125, "ECANCELED", "Operation canceled"),
    (126, "ENOKEY", "Required key not available"),
    (127, "EKEYEXPIRED", "Key has expired"),
    (128, "EKEYREVOKED", "Key has been revoked"),
    (129, "EKEYREJECTED", "Key was rejected by service"),
    (130, "EOWNERDEAD", "Owner died"),
    (131, "ENOTRECOVERABLE", "State not recoverable"),
    (132, "ERFKILL", "Operation not possible due to RF-kill"),
    (133, "EHWPOISON", "Memory page has hardware error"),
    (512, "ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    (513, "ERESTARTNOINTR", "To be restarted"),
    (514, "ERESTARTNOHAND", "To be restarted if no handler"),
    (515, "ENOIOCTLCMD", "Unknown error 515"),
    (516, "ERESTART_RESTARTBLOCK", "Interrupted by signal"),
    (517, "EPROBE_DEFER", "Unknown error 517"),
    (518, "EOPENSTALE", "Unknown error 518"),
    (521, "EBADHANDLE", "Unknown error 521"),
    (522, "ENOTSYNC", "Unknown error 522"),
    (523, "EBADCOOKIE", "Unknown error 523"),
    (524, "ENOTSUPP", "Unknown error 524"),
    (525, "ETOOSMALL", "Unknown error 525"),
    (526, "ESERVERFAULT", "Unknown error 526"),
    (527, "EBADTYPE", "Unknown error 527"),
    (528, "EJUKEBOX", "Unknown error 528"),
    (529, "EIOCBQUEUED", "Unknown error 529"),
    (530, "ERECALLCONFLICT", "Unknown error 530"),
];

/// ioctl requests strace 6.1 names, sorted by number (names joined by " or " where strace
/// knows several for one number).
const IOCTLS: &[(u32, &str)] = &[
    (0x1, "FIBMAP"),
    (0x2, "FIGETBSZ"),
    (0x125d, "BLKROSET"),
    (0x125e, "BLKROGET"),
    (0x125f, "BLKRRPART"),
    (0x1260, "BLKGETSIZE"),
    (0x1261, "BLKFLSBUF"),
    (0x1262, "BLKRASET"),
    (0x1263, "BLKRAGET"),
    (0x1264, "BLKFRASET"),
    (0x1265, "BLKFRAGET"),
    (0x1266, "BLKSECTSET"),
    (0x1267, "BLKSECTGET"),
    (0x1268, "BLKSSZGET"),
    (0x1274, "BLKTRACESTART"),
    (0x1275, "BLKTRACESTOP"),
    (0x1276, "BLKTRACETEARDOWN"),
    (0x1277, "BLKDISCARD"),
    (0x1278, "BLKIOMIN"),
    (0x1279, "BLKIOOPT"),
    (0x127a, "BLKALIGNOFF"),
    (0x127b, "BLKPBSZGET"),
    (0x127c, "BLKDISCARDZEROES"),
    (0x127d, "BLKSECDISCARD"),
    (0x127e, "BLKROTATIONAL"),
    (0x127f, "BLKZEROOUT"),
    (0x5401, "TCGETS"),
    (0x5402, "SNDCTL_TMR_START or TCSETS"),
    (0x5403, "SNDCTL_TMR_STOP or TCSETSW"),
    (0x5404, "SNDCTL_TMR_CONTINUE or TCSETSF"),
    (0x5405, "TCGETA"),
    (0x5406, "TCSETA"),
    (0x5407, "TCSETAW"),
    (0x5408, "TCSETAF"),
    (0x5409, "TCSBRK"),
    (0x540a, "TCXONC"),
    (0x540b, "TCFLSH"),
    (0x540c, "TIOCEXCL"),
    (0x540d, "TIOCNXCL"),
    (0x540e, "TIOCSCTTY"),
    (0x540f, "TIOCGPGRP"),
    (0x5410, "TIOCSPGRP"),
    (0x5411, "TIOCOUTQ"),
    (0x5412, "TIOCSTI"),
    (0x5413, "TIOCGWINSZ"),
    (0x5414, "TIOCSWINSZ"),
    (0x5415, "TIOCMGET"),
    (0x5416, "TIOCMBIS"),
    (0x5417, "TIOCMBIC"),
    (0x5418, "TIOCMSET"),
    (0x5419, "TIOCGSOFTCAR"),
    (0x541a, "TIOCSSOFTCAR"),
    (0x541b, "FIONREAD"),
    (0x541c, "TIOCLINUX"),
    (0x541d, "TIOCCONS"),
    (0x541e, "TIOCGSERIAL"),
    (0x541f, "TIOCSSERIAL"),
    (0x5420, "TIOCPKT"),
    (0x5421, "FIONBIO"),
    (0x5422, "TIOCNOTTY"),
    (0x5423, "TIOCSETD"),
    (0x5424, "TIOCGETD"),
    (0x5425, "TCSBRKP"),
    (0x5427, "TIOCSBRK"),
    (0x5428, "TIOCCBRK"),
    (0x5429, "TIOCGSID"),
    (0x542e, "TIOCGRS485"),
    (0x542f, "TIOCSRS485"),
    (0x5432, "TCGETX"),
    (0x5433, "TCSETX"),
    (0x5434, "TCSETXF"),
    (0x5435, "TCSETXW"),
    (0x5437, "TIOCVHANGUP"),
    (0x5441, "TIOCGPTPEER"),
    (0x5450, "FIONCLEX"),
    (0x5451, "FIOCLEX"),
    (0x5452, "FIOASYNC"),
    (0x5453, "TIOCSERCONFIG"),
    (0x5454, "TIOCSERGWILD"),
    (0x5455, "TIOCSERSWILD"),
    (0x5456, "TIOCGLCKTRMIOS"),
    (0x5457, "TIOCSLCKTRMIOS"),
    (0x5458, "TIOCSERGSTRUCT"),
    (0x5459, "TIOCSERGETLSR"),
    (0x545a, "TIOCSERGETMULTI"),
    (0x545b, "TIOCSERSETMULTI"),
    (0x545c, "TIOCMIWAIT"),
    (0x545d, "TIOCGICOUNT"),
    (0x5460, "FIOQSIZE"),
    (0x8901, "FIOSETOWN"),
    (0x8902, "SIOCSPGRP"),
    (0x8903, "FIOGETOWN"),
    (0x8904, "SIOCGPGRP"),
    (0x8905, "SIOCATMARK"),
    (0x8906, "SIOCGSTAMP_OLD"),
    (0x8907, "SIOCGSTAMPNS_OLD"),
    (0x890b, "SIOCADDRT"),
    (0x890c, "SIOCDELRT"),
    (0x890d, "SIOCRTMSG"),
    (0x8910, "SIOCGIFNAME"),
    (0x8911, "SIOCSIFLINK"),
    (0x8912, "SIOCGIFCONF"),
    (0x8913, "SIOCGIFFLAGS"),
    (0x8914, "SIOCSIFFLAGS"),
    (0x8915, "SIOCGIFADDR"),
    (0x8916, "SIOCSIFADDR"),
    (0x8917, "SIOCGIFDSTADDR"),
    (0x8918, "SIOCSIFDSTADDR"),
    (0x8919, "SIOCGIFBRDADDR"),
    (0x891a, "SIOCSIFBRDADDR"),
    (0x891b, "SIOCGIFNETMASK"),
    (0x891c, "SIOCSIFNETMASK"),
    (0x891d, "SIOCGIFMETRIC"),
    (0x891e, "SIOCSIFMETRIC"),
    (0x891f, "SIOCGIFMEM"),
    (0x8920, "SIOCSIFMEM"),
    (0x8921, "SIOCGIFMTU"),
    (0x8922, "SIOCSIFMTU"),
    (0x8923, "SIOCSIFNAME"),
    (0x8924, "SIOCSIFHWADDR"),
    (0x8925, "SIOCGIFENCAP"),
    (0x8926, "SIOCSIFENCAP"),
    (0x8927, "SIOCGIFHWADDR"),
    (0x8929, "SIOCGIFSLAVE"),
    (0x8930, "SIOCSIFSLAVE"),
    (0x8931, "SIOCADDMULTI"),
    (0x8932, "SIOCDELMULTI"),
    (0x8933, "SIOCGIFINDEX"),
    (0x8934, "SIOCSIFPFLAGS"),
    (0x8935, "SIOCGIFPFLAGS"),
    (0x8936, "SIOCDIFADDR"),
    (0x8937, "SIOCSIFHWBROADCAST"),
    (0x8938, "SIOCGIFCOUNT"),
    (0x8940, "SIOCGIFBR"),
    (0x8941, "SIOCSIFBR"),
    (0x8942, "SIOCGIFTXQLEN"),
    (0x8943, "SIOCSIFTXQLEN"),
    (0x8946, "SIOCETHTOOL"),
    (0x8947, "SIOCGMIIPHY"),
    (0x8948, "SIOCGMIIREG"),
    (0x8949, "SIOCSMIIREG"),
    (0x894a, "SIOCWANDEV"),
    (0x894b, "SIOCOUTQNSD"),
    (0x894c, "SIOCGSKNS"),
    (0x8953, "SIOCDARP"),
    (0x8954, "SIOCGARP"),
    (0x8955, "SIOCSARP"),
    (0x8960, "SIOCDRARP"),
    (0x8961, "SIOCGRARP"),
    (0x8962, "SIOCSRARP"),
    (0x8970, "SIOCGIFMAP"),
    (0x8971, "SIOCSIFMAP"),
    (0x8980, "SIOCADDDLCI"),
    (0x8981, "SIOCDELDLCI"),
    (0x8982, "SIOCGIFVLAN"),
    (0x8983, "SIOCSIFVLAN"),
    (0x8990, "SIOCBONDENSLAVE"),
    (0x8991, "SIOCBONDRELEASE"),
    (0x8992, "SIOCBONDSETHWADDR"),
    (0x8993, "SIOCBONDSLAVEINFOQUERY"),
    (0x8994, "SIOCBONDINFOQUERY"),
    (0x8995, "SIOCBONDCHANGEACTIVE"),
    (0x89a0, "SIOCBRADDBR"),
    (0x89a1, "SIOCBRDELBR"),
    (0x89a2, "SIOCBRADDIF"),
    (0x89a3, "SIOCBRDELIF"),
    (0x89b0, "SIOCSHWTSTAMP"),
    (0x89b1, "SIOCGHWTSTAMP"),
    (0x89e0, "SIOCPROTOPRIVATE"),
    (0x89f0, "SIOCDEVPRIVATE"),
    (0x40045431, "TIOCSPTLCK"),
    (0x40045436, "TIOCSIG"),
    (0x40046602, "FS_IOC32_SETFLAGS"),
    (0x40047602, "FS_IOC32_SETVERSION"),
    (0x40049409, "BTRFS_IOC_CLONE or FICLONE"),
    (0x40081271, "BLKBSZSET"),
    (0x40086602, "FS_IOC_SETFLAGS"),
    (0x40087602, "FS_IOC_SETVERSION"),
    (0x401c5820, "FS_IOC_FSSETXATTR"),
    (0x4020940d, "BTRFS_IOC_CLONE_RANGE or FICLONERANGE"),
    (0x402c542b, "TCSETS2"),
    (0x402c542c, "TCSETSW2"),
    (0x402c542d, "TCSETSF2"),
    (0x41009432, "FS_IOC_SETFSLABEL"),
    (0x80045430, "TIOCGPTN"),
    (0x80045432, "TIOCGDEV"),
    (0x80045438, "TIOCGPKT"),
    (0x80045439, "TIOCGPTLCK"),
    (0x80045440, "TIOCGEXCL"),
    (0x80046601, "FS_IOC32_GETFLAGS"),
    (0x80047601, "FS_IOC32_GETVERSION"),
    (0x80081270, "BLKBSZGET"),
    (0x80081272, "BLKGETSIZE64"),
    (0x80081280, "BLKGETDISKSEQ"),
    (0x80086601, "FS_IOC_GETFLAGS"),
    (0x80087601, "FS_IOC_GETVERSION"),
    (0x80108906, "SIOCGSTAMP_NEW"),
    (0x80108907, "SIOCGSTAMPNS_NEW"),
    (0x801c581f, "FS_IOC_FSGETXATTR"),
    (0x80285442, "TIOCGISO7816"),
    (0x802c542a, "TCGETS2"),
    (0x81009431, "FS_IOC_GETFSLABEL"),
    (0xc0045877, "FIFREEZE"),
    (0xc0045878, "FITHAW"),
    (0xc0185879, "FITRIM"),
    (0xc0189436, "BTRFS_IOC_FILE_EXTENT_SAME or FIDEDUPERANGE"),
    (0xc020660b, "FS_IOC_FIEMAP"),
    (0xc0285443, "TIOCSISO7816"),
    (0xc0481273, "BLKTRACESETUP"),
];

/// Bits by name, then unknown bits in octal, joined by `|` (termios flags).
fn octal_bits(v: u64, names: &[(u64, &str)]) -> Vec<String> {
    let mut parts: Vec<String> = names.iter().filter(|(b, _)| v & b != 0).map(|(_, n)| n.to_string()).collect();
    let rest = names.iter().fold(v, |r, (b, _)| r & !b);
    if rest != 0 {
        parts.push(format!("{rest:#o}"));
    }
    parts
}

/// A termios's four flag words as strace shows them without -v:
/// `{c_iflag=ICRNL|IXON, c_oflag=NL0|CR0|TAB0|BS0|VT0|FF0|OPOST|ONLCR,
/// c_cflag=B38400|CS8|CREAD, c_lflag=ISIG|ICANON|ECHO|..., ...}`.
pub fn termios_flags([i, o, c, l]: [u64; 4]) -> String {
    const IFLAG: [(u64, &str); 15] = [
        (0o1, "IGNBRK"),
        (0o2, "BRKINT"),
        (0o4, "IGNPAR"),
        (0o10, "PARMRK"),
        (0o20, "INPCK"),
        (0o40, "ISTRIP"),
        (0o100, "INLCR"),
        (0o200, "IGNCR"),
        (0o400, "ICRNL"),
        (0o1000, "IUCLC"),
        (0o2000, "IXON"),
        (0o4000, "IXANY"),
        (0o10000, "IXOFF"),
        (0o20000, "IMAXBEL"),
        (0o40000, "IUTF8"),
    ];
    const OFLAG: [(u64, &str); 8] = [
        (0o1, "OPOST"),
        (0o2, "OLCUC"),
        (0o4, "ONLCR"),
        (0o10, "OCRNL"),
        (0o20, "ONOCR"),
        (0o40, "ONLRET"),
        (0o100, "OFILL"),
        (0o200, "OFDEL"),
    ];
    const CFLAG: [(u64, &str); 8] = [
        (0o100, "CSTOPB"),
        (0o200, "CREAD"),
        (0o400, "PARENB"),
        (0o1000, "PARODD"),
        (0o2000, "HUPCL"),
        (0o4000, "CLOCAL"),
        (0o10000000000, "CMSPAR"),
        (0o20000000000, "CRTSCTS"),
    ];
    // strace's order, not the bits' (IEXTEN comes before ECHOCTL).
    const LFLAG: [(u64, &str); 16] = [
        (0o1, "ISIG"),
        (0o2, "ICANON"),
        (0o4, "XCASE"),
        (0o10, "ECHO"),
        (0o20, "ECHOE"),
        (0o40, "ECHOK"),
        (0o100, "ECHONL"),
        (0o200, "NOFLSH"),
        (0o100000, "IEXTEN"),
        (0o1000, "ECHOCTL"),
        (0o2000, "ECHOPRT"),
        (0o4000, "ECHOKE"),
        (0o10000, "FLUSHO"),
        (0o40000, "PENDIN"),
        (0o400, "TOSTOP"),
        (0o200000, "EXTPROC"),
    ];
    const BAUD: [&str; 16] = [
        "B0", "B50", "B75", "B110", "B134", "B150", "B200", "B300", "B600", "B1200", "B1800", "B2400", "B4800",
        "B9600", "B19200", "B38400",
    ];
    const BAUD_EX: [&str; 15] = [
        "B57600", "B115200", "B230400", "B460800", "B500000", "B576000", "B921600", "B1000000", "B1152000", "B1500000",
        "B2000000", "B2500000", "B3000000", "B3500000", "B4000000",
    ];
    let join = |p: Vec<String>| if p.is_empty() { "0".to_string() } else { p.join("|") };
    // The output delays are fields: each is named even when 0 (NL0, CR0, ...).
    let mut op = vec![
        format!("NL{}", (o >> 8) & 1),
        format!("CR{}", (o >> 9) & 3),
        format!("TAB{}", (o >> 11) & 3),
        format!("BS{}", (o >> 13) & 1),
        format!("VT{}", (o >> 14) & 1),
        format!("FF{}", (o >> 15) & 1),
    ];
    op.extend(octal_bits(o & 0o377, &OFLAG));
    let baud = c & 0o10017;
    let baud = match baud {
        b if b < 16 => BAUD[b as usize].to_string(),
        b if (0o10001..=0o10017).contains(&b) => BAUD_EX[(b - 0o10001) as usize].to_string(),
        b => format!("{b:#o}"),
    };
    let mut cp = vec![baud];
    if c & 0o2003600000 != 0 {
        cp.push(format!("{:#o}<<IBSHIFT", (c >> 16) & 0o10017));
    }
    cp.push(format!("CS{}", 5 + ((c >> 4) & 3)));
    cp.extend(octal_bits(c & !(0o10017 | 0o60 | 0o2003600000), &CFLAG));
    format!(
        "{{c_iflag={}, c_oflag={}, c_cflag={}, c_lflag={}, ...}}",
        join(octal_bits(i, &IFLAG)),
        op.join("|"),
        cp.join("|"),
        join(octal_bits(l, &LFLAG))
    )
}

// The strace lines in the comments below are what strace 6.1 printed on x86-64 for the same
// values (calls made with raw syscall(2) and failed with EPERM by a seccomp filter, so the
// result column is always the same).
/// poll(2) event bits as strace prints them: `POLLIN|POLLPRI`; `0` for none; unknown bits in
/// hex after the names.
pub fn poll_events(v: u64) -> String {
    const NAMES: [(u64, &str); 12] = [
        (0x1, "POLLIN"),
        (0x2, "POLLPRI"),
        (0x4, "POLLOUT"),
        (0x8, "POLLERR"),
        (0x10, "POLLHUP"),
        (0x20, "POLLNVAL"),
        (0x40, "POLLRDNORM"),
        (0x80, "POLLRDBAND"),
        (0x100, "POLLWRNORM"),
        (0x200, "POLLWRBAND"),
        (0x400, "POLLMSG"),
        (0x2000, "POLLRDHUP"),
    ];
    if v == 0 {
        return "0".into();
    }
    let mut parts: Vec<String> = NAMES.iter().filter(|(b, _)| v & b != 0).map(|(_, n)| n.to_string()).collect();
    let rest = NAMES.iter().fold(v, |r, (b, _)| r & !b);
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_name_common() {
        // openat(AT_FDCWD, "/nonexistent", O_RDONLY) = -1 ENOENT (No such file or directory)
        assert_eq!(errno_name(2), Some("ENOENT"));
        assert_eq!(errno_name(11), Some("EAGAIN"));
        assert_eq!(errno_name(38), Some("ENOSYS"));
        assert_eq!(errno_name(133), Some("EHWPOISON"));
        assert_eq!(errno_name(512), Some("ERESTARTSYS"));
        assert_eq!(errno_name(516), Some("ERESTART_RESTARTBLOCK"));
        assert_eq!(errno_name(530), Some("ERECALLCONFLICT"));
    }

    #[test]
    fn errno_name_unknown() {
        // getppid() = -1 (errno 41)      getppid() = -1 (errno 134)
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(41), None);
        assert_eq!(errno_name(58), None);
        assert_eq!(errno_name(134), None);
        assert_eq!(errno_name(519), None);
    }

    #[test]
    fn errno_message_texts() {
        // getppid() = -1 EPERM (Operation not permitted)
        assert_eq!(errno_message(1), "Operation not permitted");
        assert_eq!(errno_message(2), "No such file or directory");
        assert_eq!(errno_message(11), "Resource temporarily unavailable");
        assert_eq!(errno_message(25), "Inappropriate ioctl for device");
        assert_eq!(errno_message(109), "Too many references: cannot splice");
        // getppid() = ? ERESTARTSYS (To be restarted if SA_RESTART is set)
        assert_eq!(errno_message(512), "To be restarted if SA_RESTART is set");
        assert_eq!(errno_message(513), "To be restarted");
        assert_eq!(errno_message(514), "To be restarted if no handler");
        assert_eq!(errno_message(516), "Interrupted by signal");
        // getppid() = -1 ENOIOCTLCMD (Unknown error 515)
        assert_eq!(errno_message(515), "Unknown error 515");
    }

    #[test]
    fn poll_events_names() {
        // poll([{fd=3, events=POLLIN|POLLPRI}, {fd=4, events=POLLOUT}], 2, 100) = 2 (...)
        assert_eq!(poll_events(0x3), "POLLIN|POLLPRI");
        assert_eq!(poll_events(0x4), "POLLOUT");
        assert_eq!(poll_events(0), "0");
        assert_eq!(poll_events(0x8001), "POLLIN|0x8000");
    }

    #[test]
    fn error_return_formats() {
        assert_eq!(error_return(2), "-1 ENOENT (No such file or directory)");
        assert_eq!(error_return(512), "? ERESTARTSYS (To be restarted if SA_RESTART is set)");
        assert_eq!(error_return(516), "? ERESTART_RESTARTBLOCK (Interrupted by signal)");
        assert_eq!(error_return(515), "-1 ENOIOCTLCMD (Unknown error 515)");
        assert_eq!(error_return(134), "-1 (errno 134)");
        assert_eq!(error_return(4095), "-1 (errno 4095)");
    }

    #[test]
    fn signal_name_standard_and_realtime() {
        // kill(12345678, SIGRTMIN)  kill(12345678, SIGRT_1)  kill(12345678, SIGRT_32)
        // kill(12345678, 65)  kill(12345678, 0)
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(16), "SIGSTKFLT");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(32), "SIGRTMIN");
        assert_eq!(signal_name(33), "SIGRT_1");
        // raise(SIGRTMIN+2) with glibc's SIGRTMIN of 34: tgkill(32015, 32015, SIGRT_4) = 0
        assert_eq!(signal_name(36), "SIGRT_4");
        assert_eq!(signal_name(64), "SIGRT_32");
        assert_eq!(signal_name(65), "65");
        assert_eq!(signal_name(0), "0");
        assert_eq!(signal_name(-1), "-1");
    }

    #[test]
    fn flags_open() {
        // openat(AT_FDCWD, "/x", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 000)
        assert_eq!(flags(FlagSet::Open, 0x80241), "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC");
        // openat(AT_FDCWD, "/x", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY)
        assert_eq!(flags(FlagSet::Open, 0x90800), "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY");
        assert_eq!(flags(FlagSet::Open, 0), "O_RDONLY");
        assert_eq!(flags(FlagSet::Open, 3), "O_ACCMODE");
        // openat(AT_FDCWD, "/x", O_RDONLY|O_LARGEFILE|O_CLOEXEC)
        assert_eq!(flags(FlagSet::Open, 0x88000), "O_RDONLY|O_LARGEFILE|O_CLOEXEC");
        // openat(AT_FDCWD, "/x", O_RDONLY|O_PATH)
        assert_eq!(flags(FlagSet::Open, 0x200000), "O_RDONLY|O_PATH");
        // openat(AT_FDCWD, "/x", O_RDONLY|0x800004)
        assert_eq!(flags(FlagSet::Open, 0x800004), "O_RDONLY|0x800004");
        // strace reads an int: openat(AT_FDCWD, "/x", O_RDONLY) for 0x100000000
        assert_eq!(flags(FlagSet::Open, 0x1_0000_0000), "O_RDONLY");
    }

    #[test]
    fn flags_open_composites() {
        // openat(AT_FDCWD, "/x", O_RDWR|O_TMPFILE, 000): O_TMPFILE hides O_DIRECTORY
        assert_eq!(flags(FlagSet::Open, 0x410002), "O_RDWR|O_TMPFILE");
        assert_eq!(flags(FlagSet::Open, 0x400000), "O_RDONLY|__O_TMPFILE");
        // openat(AT_FDCWD, "/x", O_RDONLY|O_SYNC): O_SYNC hides O_DSYNC
        assert_eq!(flags(FlagSet::Open, 0x101000), "O_RDONLY|O_SYNC");
        assert_eq!(flags(FlagSet::Open, 0x1000), "O_RDONLY|O_DSYNC");
        assert_eq!(flags(FlagSet::Open, 0x100000), "O_RDONLY|__O_SYNC");
        assert_eq!(flags(FlagSet::Open, 0x2000), "O_RDONLY|FASYNC");
    }

    #[test]
    fn flags_at() {
        // newfstatat(AT_FDCWD, "", NULL, 0)
        assert_eq!(flags(FlagSet::At, 0), "0");
        // newfstatat(AT_FDCWD, "", NULL, AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH)
        assert_eq!(flags(FlagSet::At, 0x1100), "AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH");
        // unlinkat(AT_FDCWD, "/x", AT_REMOVEDIR)
        assert_eq!(flags(FlagSet::At, 0x200), "AT_REMOVEDIR");
        // newfstatat(AT_FDCWD, "", NULL, 0x1 /* AT_??? */)
        assert_eq!(flags(FlagSet::At, 1), "0x1 /* AT_??? */");
        assert_eq!(flags(FlagSet::At, 0x8000), "AT_RECURSIVE");
    }

    #[test]
    fn syscall_flags_statx_and_friends() {
        // statx(AT_FDCWD, "/x", AT_STATX_SYNC_AS_STAT, 0, NULL)
        assert_eq!(syscall_flags("statx", FlagSet::At, 0), "AT_STATX_SYNC_AS_STAT");
        // statx(AT_FDCWD, "/x", AT_STATX_SYNC_AS_STAT|AT_SYMLINK_NOFOLLOW, 0, NULL)
        assert_eq!(syscall_flags("statx", FlagSet::At, 0x100), "AT_STATX_SYNC_AS_STAT|AT_SYMLINK_NOFOLLOW");
        assert_eq!(syscall_flags("statx", FlagSet::At, 0x2100), "AT_STATX_FORCE_SYNC|AT_SYMLINK_NOFOLLOW");
        // faccessat2(AT_FDCWD, "/x", F_OK, AT_EACCESS)
        assert_eq!(syscall_flags("faccessat2", FlagSet::At, 0x200), "AT_EACCESS");
        // pipe2(NULL, O_CLOEXEC)   pipe2(NULL, 0)
        assert_eq!(syscall_flags("pipe2", FlagSet::Open, 0x80000), "O_CLOEXEC");
        assert_eq!(syscall_flags("pipe2", FlagSet::Open, 0), "0");
        assert_eq!(syscall_flags("dup3", FlagSet::Open, 1), "0x1 /* O_??? */");
        // unshare(CLONE_FILES|CLONE_NEWNS)   setns(-1, CLONE_NEWNET)
        assert_eq!(syscall_flags("unshare", FlagSet::Clone, 0x20400), "CLONE_FILES|CLONE_NEWNS");
        assert_eq!(syscall_flags("setns", FlagSet::Clone, 0x4000_0000), "CLONE_NEWNET");
        // accept4(-1, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK)
        assert_eq!(syscall_flags("accept4", FlagSet::SockType, 0x80800), "SOCK_CLOEXEC|SOCK_NONBLOCK");
        // mlock2(NULL, 0, MLOCK_ONFAULT)
        assert_eq!(syscall_flags("mlock2", FlagSet::Mlock, 1), "MLOCK_ONFAULT");
        // eventfd2(0, EFD_CLOEXEC|EFD_NONBLOCK)   memfd_create("x", MFD_CLOEXEC|MFD_HUGETLB)
        assert_eq!(syscall_flags("eventfd2", FlagSet::Misc, 0x80800), "EFD_CLOEXEC|EFD_NONBLOCK");
        assert_eq!(syscall_flags("memfd_create", FlagSet::Misc, 5), "MFD_CLOEXEC|MFD_HUGETLB");
        assert_eq!(syscall_flags("rseq", FlagSet::Misc, 0), "0");
        // Sets without a syscall-specific rendering fall through to flags().
        assert_eq!(syscall_flags("openat", FlagSet::Open, 0), "O_RDONLY");
    }

    #[test]
    fn flags_prot() {
        // mprotect(NULL, 0, PROT_NONE)   mprotect(NULL, 0, PROT_READ|PROT_WRITE)
        assert_eq!(flags(FlagSet::Prot, 0), "PROT_NONE");
        assert_eq!(flags(FlagSet::Prot, 3), "PROT_READ|PROT_WRITE");
        assert_eq!(flags(FlagSet::Prot, 5), "PROT_READ|PROT_EXEC");
        // mprotect(NULL, 0, 0x10 /* PROT_??? */)
        assert_eq!(flags(FlagSet::Prot, 0x10), "0x10 /* PROT_??? */");
        assert_eq!(flags(FlagSet::Prot, 0x100_0007), "PROT_READ|PROT_WRITE|PROT_EXEC|PROT_GROWSDOWN");
        // prot is an unsigned long to strace: PROT_READ|0x100000000
        assert_eq!(flags(FlagSet::Prot, 0x1_0000_0001), "PROT_READ|0x100000000");
    }

    #[test]
    fn flags_map() {
        // mmap(NULL, 0, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
        assert_eq!(flags(FlagSet::Map, 0x22), "MAP_PRIVATE|MAP_ANONYMOUS");
        // mmap(NULL, 0, PROT_NONE, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, -1, 0)
        assert_eq!(flags(FlagSet::Map, 0x812), "MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE");
        assert_eq!(flags(FlagSet::Map, 1), "MAP_SHARED");
        assert_eq!(flags(FlagSet::Map, 3), "MAP_SHARED_VALIDATE");
        assert_eq!(flags(FlagSet::Map, 0x20022), "MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK");
        // mmap(NULL, 0, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|22<<MAP_HUGE_SHIFT, -1, 0)
        assert_eq!(flags(FlagSet::Map, 0x5804_0022), "MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|22<<MAP_HUGE_SHIFT");
        // mmap(NULL, 0, PROT_NONE, 0x4 /* MAP_??? */|MAP_ANONYMOUS, -1, 0)
        assert_eq!(flags(FlagSet::Map, 0x24), "0x4 /* MAP_??? */|MAP_ANONYMOUS");
        assert_eq!(flags(FlagSet::Map, 0), "MAP_FILE");
        assert_eq!(flags(FlagSet::Map, 0x10), "MAP_FILE|MAP_FIXED");
        assert_eq!(flags(FlagSet::Map, 0x100032), "MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE");
    }

    #[test]
    fn flags_mremap_and_madvise() {
        // mremap(NULL, 0, 0, 0)   mremap(NULL, 0, 0, MREMAP_MAYMOVE|MREMAP_FIXED, NULL)
        assert_eq!(flags(FlagSet::Mremap, 0), "0");
        assert_eq!(flags(FlagSet::Mremap, 1), "MREMAP_MAYMOVE");
        assert_eq!(flags(FlagSet::Mremap, 3), "MREMAP_MAYMOVE|MREMAP_FIXED");
        assert_eq!(flags(FlagSet::Mremap, 8), "0x8 /* MREMAP_??? */");
        // madvise(NULL, 0, MADV_DONTNEED)   madvise(NULL, 0, 0x1a /* MADV_??? */)
        assert_eq!(flags(FlagSet::Madvise, 4), "MADV_DONTNEED");
        assert_eq!(flags(FlagSet::Madvise, 14), "MADV_HUGEPAGE");
        assert_eq!(flags(FlagSet::Madvise, 0x1a), "0x1a /* MADV_??? */");
    }

    #[test]
    fn flags_clone() {
        // clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, ...)
        assert_eq!(flags(FlagSet::Clone, 0x120_0011), "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD");
        assert_eq!(
            flags(FlagSet::Clone, 0x3d_0f00),
            "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|\
             CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID"
        );
        // clone(child_stack=NULL, flags=0x400000 /* CLONE_??? */|SIGCHLD)
        assert_eq!(flags(FlagSet::Clone, 0x40_0011), "0x400000 /* CLONE_??? */|SIGCHLD");
        // clone(child_stack=NULL, flags=0)
        assert_eq!(flags(FlagSet::Clone, 0), "0");
        assert_eq!(flags(FlagSet::Clone, 0x4111), "CLONE_VM|CLONE_VFORK|SIGCHLD");
    }

    #[test]
    fn flags_sigaction() {
        // rt_sigaction(SIGUSR1, {sa_handler=0x1000, sa_mask=[], sa_flags=SA_RESTORER|SA_RESTART, ...
        assert_eq!(flags(FlagSet::SigAction, 0x1400_0000), "SA_RESTORER|SA_RESTART");
        assert_eq!(flags(FlagSet::SigAction, 0x1400_0004), "SA_RESTORER|SA_RESTART|SA_SIGINFO");
        assert_eq!(flags(FlagSet::SigAction, 0x0400_0004), "SA_RESTORER|SA_SIGINFO");
        assert_eq!(flags(FlagSet::SigAction, 0), "0");
        assert_eq!(flags(FlagSet::SigAction, 8), "0x8 /* SA_??? */");
    }

    #[test]
    fn flags_sighow_whence_access() {
        // rt_sigprocmask(SIG_BLOCK, NULL, NULL, 8)   rt_sigprocmask(0x3 /* SIG_??? */, NULL, NULL, 8)
        assert_eq!(flags(FlagSet::SigHow, 0), "SIG_BLOCK");
        assert_eq!(flags(FlagSet::SigHow, 2), "SIG_SETMASK");
        assert_eq!(flags(FlagSet::SigHow, 3), "0x3 /* SIG_??? */");
        // lseek(-1, 0, SEEK_CUR)   lseek(-1, 0, SEEK_DATA)   lseek(-1, 0, 0x7 /* SEEK_??? */)
        assert_eq!(flags(FlagSet::Whence, 1), "SEEK_CUR");
        assert_eq!(flags(FlagSet::Whence, 3), "SEEK_DATA");
        assert_eq!(flags(FlagSet::Whence, 7), "0x7 /* SEEK_??? */");
        // access("/x", F_OK)   access("/x", R_OK|W_OK)   access("/x", 0x8 /* ?_OK */)
        assert_eq!(flags(FlagSet::Access, 0), "F_OK");
        assert_eq!(flags(FlagSet::Access, 6), "R_OK|W_OK");
        assert_eq!(flags(FlagSet::Access, 7), "R_OK|W_OK|X_OK");
        assert_eq!(flags(FlagSet::Access, 8), "0x8 /* ?_OK */");
    }

    #[test]
    fn flags_futex() {
        // futex(NULL, FUTEX_WAIT_PRIVATE, 0, NULL)   futex(NULL, FUTEX_WAKE_PRIVATE, 0)
        assert_eq!(flags(FlagSet::FutexOp, 0x80), "FUTEX_WAIT_PRIVATE");
        assert_eq!(flags(FlagSet::FutexOp, 0x81), "FUTEX_WAKE_PRIVATE");
        // futex(NULL, FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME, 0, NULL, 0)
        assert_eq!(flags(FlagSet::FutexOp, 0x189), "FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME");
        // futex(NULL, 0xe /* FUTEX_??? */, 0, NULL, NULL, 0)
        assert_eq!(flags(FlagSet::FutexOp, 0xe), "0xe /* FUTEX_??? */");
        assert_eq!(flags(FlagSet::FutexOp, 0x200), "0x200 /* FUTEX_??? */");
    }

    #[test]
    fn flags_arch_prctl() {
        // arch_prctl(ARCH_SET_FS, 0)   arch_prctl(ARCH_GET_CPUID)
        assert_eq!(flags(FlagSet::ArchPrctl, 0x1002), "ARCH_SET_FS");
        assert_eq!(flags(FlagSet::ArchPrctl, 0x1011), "ARCH_GET_CPUID");
        assert_eq!(flags(FlagSet::ArchPrctl, 0x2003), "ARCH_MAP_VDSO_64");
        // arch_prctl(0x3001 /* ARCH_??? */, 0): ARCH_CET_STATUS and ARCH_SHSTK_* are unknown
        assert_eq!(flags(FlagSet::ArchPrctl, 0x3001), "0x3001 /* ARCH_??? */");
        assert_eq!(flags(FlagSet::ArchPrctl, 0x5001), "0x5001 /* ARCH_??? */");
        // arch_prctl(0 /* ARCH_??? */, 0)
        assert_eq!(flags(FlagSet::ArchPrctl, 0), "0 /* ARCH_??? */");
    }

    #[test]
    fn flags_prctl_clock_rlimit() {
        // prctl(PR_SET_NAME, NULL)   prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, ...)   prctl(0 /* PR_??? */, ...)
        assert_eq!(flags(FlagSet::Prctl, 15), "PR_SET_NAME");
        assert_eq!(flags(FlagSet::Prctl, 0x5356_4d41), "PR_SET_VMA");
        assert_eq!(flags(FlagSet::Prctl, 0), "0 /* PR_??? */");
        // clock_gettime(CLOCK_MONOTONIC, NULL)   clock_gettime(0xc /* CLOCK_??? */, NULL)
        assert_eq!(flags(FlagSet::ClockId, 0), "CLOCK_REALTIME");
        assert_eq!(flags(FlagSet::ClockId, 1), "CLOCK_MONOTONIC");
        assert_eq!(flags(FlagSet::ClockId, 7), "CLOCK_BOOTTIME");
        assert_eq!(flags(FlagSet::ClockId, 11), "CLOCK_TAI");
        assert_eq!(flags(FlagSet::ClockId, 12), "0xc /* CLOCK_??? */");
        // getrlimit(RLIMIT_NOFILE, NULL)   getrlimit(RLIMIT_STACK, NULL)
        assert_eq!(flags(FlagSet::Rlimit, 7), "RLIMIT_NOFILE");
        assert_eq!(flags(FlagSet::Rlimit, 3), "RLIMIT_STACK");
    }

    #[test]
    fn flags_getrandom() {
        // getrandom(NULL, 0, 0)   getrandom(NULL, 0, GRND_NONBLOCK|GRND_RANDOM)
        assert_eq!(flags(FlagSet::Getrandom, 0), "0");
        assert_eq!(flags(FlagSet::Getrandom, 1), "GRND_NONBLOCK");
        assert_eq!(flags(FlagSet::Getrandom, 3), "GRND_NONBLOCK|GRND_RANDOM");
        // getrandom(NULL, 0, 0x8 /* GRND_??? */)
        assert_eq!(flags(FlagSet::Getrandom, 8), "0x8 /* GRND_??? */");
        assert_eq!(flags(FlagSet::Getrandom, 9), "GRND_NONBLOCK|0x8");
    }

    #[test]
    fn flags_sockets() {
        // socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0)
        assert_eq!(flags(FlagSet::AddressFamily, 1), "AF_UNIX");
        assert_eq!(flags(FlagSet::AddressFamily, 10), "AF_INET6");
        assert_eq!(flags(FlagSet::SockType, 0x80001), "SOCK_STREAM|SOCK_CLOEXEC");
        // socket(AF_UNIX, SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK, 0)
        assert_eq!(flags(FlagSet::SockType, 0x80802), "SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK");
        assert_eq!(flags(FlagSet::SockType, 7), "0x7 /* SOCK_??? */");
        // sendto(-1, NULL, 0, MSG_NOSIGNAL, NULL, 0)
        assert_eq!(flags(FlagSet::Msg, 0x4000), "MSG_NOSIGNAL");
        assert_eq!(flags(FlagSet::Msg, 0x4000_0040), "MSG_DONTWAIT|MSG_CMSG_CLOEXEC");
        assert_eq!(flags(FlagSet::Msg, 0), "0");
        // epoll_ctl(-1, EPOLL_CTL_ADD, -1, NULL)   epoll_ctl(-1, 0 /* EPOLL_CTL_??? */, -1, NULL)
        assert_eq!(flags(FlagSet::EpollCtl, 1), "EPOLL_CTL_ADD");
        assert_eq!(flags(FlagSet::EpollCtl, 0), "0 /* EPOLL_CTL_??? */");
    }

    #[test]
    fn flags_process_and_file_sets() {
        // wait4(-1, NULL, __WALL, NULL)   wait4(-1, NULL, 0, NULL)
        assert_eq!(flags(FlagSet::Wait, 0x4000_0000), "__WALL");
        assert_eq!(flags(FlagSet::Wait, 0), "0");
        assert_eq!(flags(FlagSet::Wait, 6), "WEXITED|WSTOPPED");
        assert_eq!(flags(FlagSet::Wait, 0x10), "0x10 /* W??? */");
        // renameat2(AT_FDCWD, "/x", AT_FDCWD, "/y", RENAME_NOREPLACE)
        assert_eq!(flags(FlagSet::Rename, 1), "RENAME_NOREPLACE");
        assert_eq!(flags(FlagSet::Rename, 8), "0x8 /* RENAME_?? */");
        // flock(-1, LOCK_EX|LOCK_NB)
        assert_eq!(flags(FlagSet::Flock, 6), "LOCK_EX|LOCK_NB");
        // statx(AT_FDCWD, "/x", AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, NULL)
        assert_eq!(flags(FlagSet::StatxMask, 0x7ff), "STATX_BASIC_STATS");
        assert_eq!(flags(FlagSet::StatxMask, 0xfff), "STATX_ALL");
        assert_eq!(flags(FlagSet::StatxMask, 0x17ff), "STATX_BASIC_STATS|STATX_MNT_ID");
        // close_range(0, 0, CLOSE_RANGE_CLOEXEC)   msync(NULL, 0, MS_SYNC)   mlockall(MCL_CURRENT|MCL_FUTURE)
        assert_eq!(flags(FlagSet::CloseRange, 4), "CLOSE_RANGE_CLOEXEC");
        assert_eq!(flags(FlagSet::Msync, 4), "MS_SYNC");
        assert_eq!(flags(FlagSet::Msync, 5), "MS_SYNC|MS_ASYNC");
        assert_eq!(flags(FlagSet::Mlock, 3), "MCL_CURRENT|MCL_FUTURE");
        // sched_get_priority_max(SCHED_DEADLINE)   getitimer(ITIMER_REAL, NULL)   waitid(P_PIDFD, ...)
        assert_eq!(flags(FlagSet::SchedPolicy, 6), "SCHED_DEADLINE");
        assert_eq!(flags(FlagSet::Itimer, 0), "ITIMER_REAL");
        assert_eq!(flags(FlagSet::IdType, 3), "P_PIDFD");
        // fallocate(-1, FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE, 0, 0)   fadvise64(-1, 0, 0, POSIX_FADV_DONTNEED)
        assert_eq!(flags(FlagSet::Falloc, 3), "FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE");
        assert_eq!(flags(FlagSet::Fadvise, 4), "POSIX_FADV_DONTNEED");
        assert_eq!(flags(FlagSet::Misc, 0), "0");
        assert_eq!(flags(FlagSet::Misc, 0x80000), "0x80000");
    }

    #[test]
    fn mode_permission_bits() {
        // openat(AT_FDCWD, "/x", O_RDONLY|O_CREAT, 0644)   chmod("/x", 01777)
        // mkdir("/x", 000)   fchmod(-1, 04755)
        assert_eq!(mode(0o644), "0644");
        assert_eq!(mode(0o1777), "01777");
        assert_eq!(mode(0), "000");
        assert_eq!(mode(1), "001");
        assert_eq!(mode(0o4755), "04755");
        assert_eq!(mode(0o100644), "0100644");
        // strace reads a 16-bit umode_t: fchmod(-1, 0177777) for 0xffffffff
        assert_eq!(mode(0xffff_ffff), "0177777");
    }

    #[test]
    fn st_mode_types() {
        // newfstatat(AT_FDCWD, "/etc/passwd", {st_mode=S_IFREG|0644, ...}, AT_SYMLINK_NOFOLLOW) = 0
        assert_eq!(st_mode(0o100644), "S_IFREG|0644");
        // newfstatat(AT_FDCWD, "/", {st_mode=S_IFDIR|0755, st_size=4096, ...}, ...)
        assert_eq!(st_mode(0o40755), "S_IFDIR|0755");
        // mknodat(AT_FDCWD, "/x", S_IFCHR|0620, makedev(0, 0))   mknodat(AT_FDCWD, "/x", S_IFIFO|0600)
        assert_eq!(st_mode(0o20620), "S_IFCHR|0620");
        assert_eq!(st_mode(0o10600), "S_IFIFO|0600");
        // mknodat(AT_FDCWD, "/x", S_IFSOCK|0777)   {st_mode=S_IFLNK|0777, st_size=11, ...}
        assert_eq!(st_mode(0o140777), "S_IFSOCK|0777");
        assert_eq!(st_mode(0o120777), "S_IFLNK|0777");
        assert_eq!(st_mode(0o60660), "S_IFBLK|0660");
        // {st_mode=S_IFDIR|S_ISVTX|0777, ...} for /tmp; {st_mode=S_IFREG|S_ISUID|0755, ...} for passwd
        assert_eq!(st_mode(0o41777), "S_IFDIR|S_ISVTX|0777");
        assert_eq!(st_mode(0o104755), "S_IFREG|S_ISUID|0755");
        assert_eq!(st_mode(0o644), "0644");
        assert_eq!(st_mode(0o170000), "0170000");
    }

    #[test]
    fn si_code_names() {
        // --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x10} ---
        assert_eq!(si_code(11, 1), "SEGV_MAPERR");
        assert_eq!(si_code(11, 2), "SEGV_ACCERR");
        // --- SIGUSR1 {si_signo=SIGUSR1, si_code=SI_USER, si_pid=32016, si_uid=0} ---
        assert_eq!(si_code(10, 0), "SI_USER");
        // --- SIGRT_4 {si_signo=SIGRT_4, si_code=SI_TKILL, si_pid=32015, si_uid=0} ---
        assert_eq!(si_code(36, -6), "SI_TKILL");
        // --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_KILLED, si_pid=32014, ...} ---
        assert_eq!(si_code(17, 2), "CLD_KILLED");
        assert_eq!(si_code(11, 0x80), "SI_KERNEL");
        assert_eq!(si_code(4, 2), "ILL_ILLOPN");
        assert_eq!(si_code(8, 1), "FPE_INTDIV");
        assert_eq!(si_code(8, 14), "FPE_FLTUNK");
        assert_eq!(si_code(7, 1), "BUS_ADRALN");
        assert_eq!(si_code(5, 1), "TRAP_BRKPT");
        assert_eq!(si_code(31, 1), "SYS_SECCOMP");
        assert_eq!(si_code(14, -1), "SI_QUEUE");
        // rt_sigqueueinfo(..., {si_signo=SIGHUP, si_code=0x1, ...}) and si_code=0xfffffff6
        assert_eq!(si_code(1, 1), "0x1");
        assert_eq!(si_code(11, -10), "0xfffffff6");
        assert_eq!(si_code(8, 9), "0x9");
    }

    #[test]
    fn ioctl_names() {
        // ioctl(4, TCGETS, {c_iflag=ICRNL|IXON, ...}) = 0   ioctl(4, TIOCGWINSZ, {ws_row=0, ...}) = 0
        assert_eq!(ioctl_name(0x5401), Some("TCGETS"));
        assert_eq!(ioctl_name(0x5413), Some("TIOCGWINSZ"));
        // ioctl(3, FIONREAD, [0]) = 0   ioctl(3, TIOCGPTN, [0]) = 0
        assert_eq!(ioctl_name(0x541b), Some("FIONREAD"));
        assert_eq!(ioctl_name(0x8004_5430), Some("TIOCGPTN"));
        // ioctl(4, SNDCTL_TMR_START or TCSETS, {c_iflag=ICRNL|IXON, ...}) = 0 (a real pty)
        assert_eq!(ioctl_name(0x5402), Some("SNDCTL_TMR_START or TCSETS"));
        assert_eq!(ioctl_name(0x5451), Some("FIOCLEX"));
        assert_eq!(ioctl_name(0x5499), None);
        // ioctl(-1, _IOC(_IOC_READ|_IOC_WRITE, 0x54, 0x99, 0x4), 0)
        assert_eq!(ioctl_request(0xc004_5499), "_IOC(_IOC_READ|_IOC_WRITE, 0x54, 0x99, 0x4)");
        assert_eq!(ioctl_request(0x5400), "_IOC(_IOC_NONE, 0x54, 0, 0)");
        assert_eq!(ioctl_request(0x5413), "TIOCGWINSZ");
    }

    #[test]
    fn termios_flags_read_as_strace_prints_them() {
        // ioctl(4, TCGETS, {c_iflag=ICRNL|IXON, c_oflag=NL0|CR0|TAB0|BS0|VT0|FF0|OPOST|ONLCR,
        // c_cflag=B38400|CS8|CREAD, c_lflag=ISIG|ICANON|ECHO|ECHOE|ECHOK|IEXTEN|ECHOCTL|ECHOKE, ...}) = 0
        assert_eq!(
            termios_flags([0o2400, 0o5, 0o277, 0o105073]),
            "{c_iflag=ICRNL|IXON, c_oflag=NL0|CR0|TAB0|BS0|VT0|FF0|OPOST|ONLCR, c_cflag=B38400|CS8|CREAD, \
             c_lflag=ISIG|ICANON|ECHO|ECHOE|ECHOK|IEXTEN|ECHOCTL|ECHOKE, ...}"
        );
        assert_eq!(
            termios_flags([0, 0, 0o10002 | 0o60, 0]),
            "{c_iflag=0, c_oflag=NL0|CR0|TAB0|BS0|VT0|FF0, c_cflag=B115200|CS8, c_lflag=0, ...}"
        );
    }

    #[test]
    fn ioctl_table_is_sorted() {
        assert!(IOCTLS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn fcntl_cmd_names() {
        // fcntl(5, F_GETFD) = 0x1 (flags FD_CLOEXEC)   fcntl(5, F_DUPFD_CLOEXEC, 10) = 11
        assert_eq!(fcntl_cmd(1), "F_GETFD");
        assert_eq!(fcntl_cmd(1030), "F_DUPFD_CLOEXEC");
        // fcntl(5, F_SETFL, O_RDONLY|O_NONBLOCK) = 0
        assert_eq!(fcntl_cmd(4), "F_SETFL");
        assert_eq!(fcntl_cmd(0), "F_DUPFD");
        // fcntl(-1, 0x12 /* F_??? */, 0)
        assert_eq!(fcntl_cmd(0x12), "0x12 /* F_??? */");
    }
}
