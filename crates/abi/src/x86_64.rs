//! The x86-64 Linux syscall table: every syscall number from 0 to 334 and from 424 to 462,
//! with the name strace prints, its arguments in register order, what it returns, its strace
//! classes and how the box treats it.
//!
//! The table is sorted by number and dense from 0 to 334, so `TABLE[nr]` is the entry for
//! `nr` in that range; 335..=423 do not exist on x86-64 and are left out.

use super::*;

// ---- Compact constructors for the table -------------------------------------------------

/// Builds the table and the typed numbers from one list of rows, so that a syscall's number
/// is written once: `sc!(nr, name, [args...], RetVariant, class, handling)` becomes the
/// table entry and the variant `Sysno::name = nr`.
macro_rules! syscall_table {
    ($(sc!($nr:literal, $name:ident, [$($arg:expr),* $(,)?], $ret:ident, $class:expr, $handling:expr)),* $(,)?) => {
        /// A syscall trapbox knows, by its x86-64 number: what trapbox's code dispatches on
        /// (never the name string). Variants carry strace's names.
        #[allow(non_camel_case_types, missing_docs)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Sysno {
            $($name = $nr),*
        }

        /// Every x86-64 Linux syscall, sorted by number; dense from 0 to 334, then 424 to 462.
        pub static TABLE: &[SyscallDesc] = &[
            $(SyscallDesc {
                nr: $nr,
                sysno: Sysno::$name,
                name: stringify!($name),
                args: &[$($arg),*],
                ret: Ret::$ret,
                class: $class,
                handling: $handling,
            }),*
        ];
    };
}

/// A class set from strace class names: `c!(FILE | DESC)`, `c!()` for none.
macro_rules! c {
    () => {
        Class::NONE
    };
    ($($class:ident)|+) => {
        Class(0 $(| Class::$class.0)+)
    };
}

const HOST: Handling = Handling::Host;
const EMUL: Handling = Handling::Emulated;
const ESCAPES: Handling = Handling::Refused(Refusal::Escapes);
const OBSOLETE: Handling = Handling::Refused(Refusal::Obsolete);

const fn arg(name: &'static str, kind: ArgKind) -> Arg {
    Arg { name, kind }
}
const fn int(name: &'static str) -> Arg {
    arg(name, ArgKind::Int)
}
const fn uint(name: &'static str) -> Arg {
    arg(name, ArgKind::UInt)
}
const fn hex(name: &'static str) -> Arg {
    arg(name, ArgKind::Hex)
}
const fn addr(name: &'static str) -> Arg {
    arg(name, ArgKind::Addr)
}
const fn fd(name: &'static str) -> Arg {
    arg(name, ArgKind::Fd)
}
const fn dirfd(name: &'static str) -> Arg {
    arg(name, ArgKind::DirFd)
}
const fn pid(name: &'static str) -> Arg {
    arg(name, ArgKind::Pid)
}
const fn sig(name: &'static str) -> Arg {
    arg(name, ArgKind::Signal)
}
const fn mode(name: &'static str) -> Arg {
    arg(name, ArgKind::Mode)
}
const fn flags(name: &'static str, set: FlagSet) -> Arg {
    arg(name, ArgKind::Flags(set))
}
/// A small flag set shown in hex (`FlagSet::Misc`).
const fn misc(name: &'static str) -> Arg {
    flags(name, FlagSet::Misc)
}
const fn path(name: &'static str) -> Arg {
    arg(name, ArgKind::Path)
}
const fn cstr(name: &'static str) -> Arg {
    arg(name, ArgKind::CStr)
}
const fn strs(name: &'static str) -> Arg {
    arg(name, ArgKind::StrArray)
}
const fn special(name: &'static str) -> Arg {
    arg(name, ArgKind::Special)
}
const fn ignored(name: &'static str) -> Arg {
    arg(name, ArgKind::Ignored)
}
/// A buffer the kernel reads, sized by argument `len`.
const fn inbuf(name: &'static str, len: usize) -> Arg {
    arg(name, ArgKind::InBuf(Len::Arg(len)))
}
/// A buffer the kernel reads, of a fixed size.
const fn inbuf_fixed(name: &'static str, size: usize) -> Arg {
    arg(name, ArgKind::InBuf(Len::Fixed(size)))
}
/// A buffer the kernel writes, sized by argument `len`.
const fn outbuf(name: &'static str, len: usize, ret_is_len: bool) -> Arg {
    arg(name, ArgKind::OutBuf { len: Len::Arg(len), ret_is_len })
}
/// A buffer the kernel writes, of `argument count` elements of `size` bytes.
const fn outbuf_n(name: &'static str, count: usize, size: usize) -> Arg {
    arg(name, ArgKind::OutBuf { len: Len::ArgTimes(count, size), ret_is_len: false })
}
/// A buffer the kernel writes, of a fixed size.
const fn outbuf_fixed(name: &'static str, size: usize) -> Arg {
    arg(name, ArgKind::OutBuf { len: Len::Fixed(size), ret_is_len: false })
}
const fn inp(name: &'static str, s: Struct) -> Arg {
    arg(name, ArgKind::In(s))
}
const fn out(name: &'static str, s: Struct) -> Arg {
    arg(name, ArgKind::Out(s))
}
const fn inout(name: &'static str, s: Struct) -> Arg {
    arg(name, ArgKind::InOut(s))
}
const fn iov(name: &'static str, count: usize, dir: Dir) -> Arg {
    arg(name, ArgKind::Iovec { count, dir })
}
const fn fdset(name: &'static str) -> Arg {
    arg(name, ArgKind::FdSet { nfds: 0 })
}
const fn sa_in(name: &'static str, len: usize) -> Arg {
    arg(name, ArgKind::SockAddrIn { len })
}
const fn sa_out(name: &'static str, len: usize) -> Arg {
    arg(name, ArgKind::SockAddrOut { len })
}
const fn socklen(name: &'static str) -> Arg {
    arg(name, ArgKind::SockLenPtr)
}
/// Start of a guest address range whose length is argument `len`.
const fn range(name: &'static str, len: usize) -> Arg {
    arg(name, ArgKind::GuestRange { len })
}

// Sizes of x86-64 structs that `Struct` does not name.
/// `struct utimbuf`: two `time_t`.
const UTIMBUF: usize = 16;
/// Two `struct timeval` (utimes, futimesat).
const TIMEVAL2: usize = 32;
/// `struct ustat`.
const USTAT: usize = 32;
/// `struct sembuf`.
const SEMBUF: usize = 6;
/// `struct io_event`.
const IO_EVENT: usize = 32;
/// `struct mq_attr`.
const MQ_ATTR: usize = 64;
/// `struct cachestat_range`.
const CACHESTAT_RANGE: usize = 16;
/// `struct cachestat`.
const CACHESTAT: usize = 40;
/// `struct epoll_event` (packed on x86-64).
const EPOLL_EVENT: usize = 12;

use ArgKind::{FcntlArg, IoctlArg, Msghdr, PollFds};
use Dir::{In, Out};
use FlagSet as F;
use Struct as S;

#[rustfmt::skip]
syscall_table! {
    sc!(0, read, [fd("fd"), outbuf("buf", 2, true), uint("count")], Int, c!(DESC), HOST),
    sc!(1, write, [fd("fd"), inbuf("buf", 2), uint("count")], Int, c!(DESC), HOST),
    sc!(2, open, [path("pathname"), flags("flags", F::Open), mode("mode")], Fd, c!(FILE | DESC), HOST),
    sc!(3, close, [fd("fd")], Int, c!(DESC), HOST),
    sc!(4, stat, [path("pathname"), out("statbuf", S::Stat)], Int, c!(FILE | STAT), HOST),
    sc!(5, fstat, [fd("fd"), out("statbuf", S::Stat)], Int, c!(DESC | STAT), HOST),
    sc!(6, lstat, [path("pathname"), out("statbuf", S::Stat)], Int, c!(FILE | STAT), HOST),
    sc!(7, poll, [arg("fds", PollFds { count: 1 }), uint("nfds"), int("timeout")], Int, c!(DESC), HOST),
    sc!(8, lseek, [fd("fd"), int("offset"), flags("whence", F::Whence)], Int, c!(DESC), HOST),
    sc!(9, mmap, [addr("addr"), uint("length"), flags("prot", F::Prot), flags("flags", F::Map), fd("fd"), hex("offset")], Addr, c!(MEMORY | DESC), EMUL),
    sc!(10, mprotect, [addr("addr"), uint("len"), flags("prot", F::Prot)], Int, c!(MEMORY), EMUL),
    sc!(11, munmap, [addr("addr"), uint("length")], Int, c!(MEMORY), EMUL),
    sc!(12, brk, [addr("addr")], Addr, c!(MEMORY), EMUL),
    sc!(13, rt_sigaction, [sig("signum"), inp("act", S::Sigaction), out("oldact", S::Sigaction), uint("sigsetsize")], Int, c!(SIGNAL), EMUL),
    sc!(14, rt_sigprocmask, [flags("how", F::SigHow), inp("set", S::Sigset), out("oldset", S::Sigset), uint("sigsetsize")], Int, c!(SIGNAL), EMUL),
    sc!(15, rt_sigreturn, [], NoReturn, c!(SIGNAL), EMUL),
    sc!(16, ioctl, [fd("fd"), hex("request"), arg("arg", IoctlArg)], Int, c!(DESC), HOST),
    sc!(17, pread64, [fd("fd"), outbuf("buf", 2, true), uint("count"), int("offset")], Int, c!(DESC), HOST),
    sc!(18, pwrite64, [fd("fd"), inbuf("buf", 2), uint("count"), int("offset")], Int, c!(DESC), HOST),
    sc!(19, readv, [fd("fd"), iov("iov", 2, Out), int("iovcnt")], Int, c!(DESC), HOST),
    sc!(20, writev, [fd("fd"), iov("iov", 2, In), int("iovcnt")], Int, c!(DESC), HOST),
    sc!(21, access, [path("pathname"), flags("mode", F::Access)], Int, c!(FILE), HOST),
    sc!(22, pipe, [out("pipefd", S::Int2)], Int, c!(DESC), HOST),
    sc!(23, select, [int("nfds"), fdset("readfds"), fdset("writefds"), fdset("exceptfds"), inout("timeout", S::Timeval)], Int, c!(DESC), HOST),
    sc!(24, sched_yield, [], Int, c!(), HOST),
    sc!(25, mremap, [addr("old_address"), uint("old_size"), uint("new_size"), flags("flags", F::Mremap), addr("new_address")], Addr, c!(MEMORY), EMUL),
    sc!(26, msync, [range("addr", 1), uint("length"), flags("flags", F::Msync)], Int, c!(MEMORY), HOST),
    sc!(27, mincore, [range("addr", 1), uint("length"), special("vec")], Int, c!(MEMORY), EMUL),
    sc!(28, madvise, [range("addr", 1), uint("length"), flags("advice", F::Madvise)], Int, c!(MEMORY), HOST),
    sc!(29, shmget, [hex("key"), uint("size"), misc("shmflg")], Int, c!(IPC), HOST),
    sc!(30, shmat, [int("shmid"), addr("shmaddr"), misc("shmflg")], Addr, c!(IPC | MEMORY), EMUL),
    sc!(31, shmctl, [int("shmid"), int("cmd"), arg("buf", ArgKind::ShmctlBuf)], Int, c!(IPC), HOST),
    sc!(32, dup, [fd("oldfd")], Fd, c!(DESC), HOST),
    sc!(33, dup2, [fd("oldfd"), fd("newfd")], Fd, c!(DESC), HOST),
    sc!(34, pause, [], Int, c!(SIGNAL), EMUL),
    sc!(35, nanosleep, [inp("req", S::Timespec), out("rem", S::Timespec)], Int, c!(), HOST),
    sc!(36, getitimer, [flags("which", F::Itimer), out("curr_value", S::Itimerval)], Int, c!(), HOST),
    sc!(37, alarm, [uint("seconds")], Int, c!(), HOST),
    sc!(38, setitimer, [flags("which", F::Itimer), inp("new_value", S::Itimerval), out("old_value", S::Itimerval)], Int, c!(), HOST),
    sc!(39, getpid, [], Int, c!(), HOST),
    sc!(40, sendfile, [fd("out_fd"), fd("in_fd"), inout("offset", S::U64), uint("count")], Int, c!(DESC | NETWORK), HOST),
    sc!(41, socket, [flags("domain", F::AddressFamily), flags("type", F::SockType), int("protocol")], Fd, c!(NETWORK), HOST),
    sc!(42, connect, [fd("sockfd"), sa_in("addr", 2), uint("addrlen")], Int, c!(NETWORK), HOST),
    sc!(43, accept, [fd("sockfd"), sa_out("addr", 2), socklen("addrlen")], Fd, c!(NETWORK), HOST),
    sc!(44, sendto, [fd("sockfd"), inbuf("buf", 2), uint("len"), flags("flags", F::Msg), sa_in("dest_addr", 5), uint("addrlen")], Int, c!(NETWORK), HOST),
    sc!(45, recvfrom, [fd("sockfd"), outbuf("buf", 2, true), uint("len"), flags("flags", F::Msg), sa_out("src_addr", 5), socklen("addrlen")], Int, c!(NETWORK), HOST),
    sc!(46, sendmsg, [fd("sockfd"), arg("msg", Msghdr(In)), flags("flags", F::Msg)], Int, c!(NETWORK), HOST),
    sc!(47, recvmsg, [fd("sockfd"), arg("msg", Msghdr(Out)), flags("flags", F::Msg)], Int, c!(NETWORK), HOST),
    sc!(48, shutdown, [fd("sockfd"), int("how")], Int, c!(NETWORK), HOST),
    sc!(49, bind, [fd("sockfd"), sa_in("addr", 2), uint("addrlen")], Int, c!(NETWORK), HOST),
    sc!(50, listen, [fd("sockfd"), int("backlog")], Int, c!(NETWORK), HOST),
    sc!(51, getsockname, [fd("sockfd"), sa_out("addr", 2), socklen("addrlen")], Int, c!(NETWORK), HOST),
    sc!(52, getpeername, [fd("sockfd"), sa_out("addr", 2), socklen("addrlen")], Int, c!(NETWORK), HOST),
    sc!(53, socketpair, [flags("domain", F::AddressFamily), flags("type", F::SockType), int("protocol"), out("sv", S::Int2)], Int, c!(NETWORK), HOST),
    sc!(54, setsockopt, [fd("sockfd"), int("level"), int("optname"), arg("optval", ArgKind::SockOptIn { len: 4 }), uint("optlen")], Int, c!(NETWORK), HOST),
    sc!(55, getsockopt, [fd("sockfd"), int("level"), int("optname"), arg("optval", ArgKind::SockOptOut { len: 4 }), socklen("optlen")], Int, c!(NETWORK), HOST),
    sc!(56, clone, [flags("flags", F::Clone), hex("stack"), special("parent_tid"), special("child_tid"), hex("tls")], Int, c!(PROCESS), EMUL),
    sc!(57, fork, [], Int, c!(PROCESS), EMUL),
    sc!(58, vfork, [], Int, c!(PROCESS), EMUL),
    sc!(59, execve, [path("pathname"), strs("argv"), strs("envp")], Int, c!(FILE | PROCESS), EMUL),
    sc!(60, exit, [int("status")], NoReturn, c!(PROCESS), EMUL),
    sc!(61, wait4, [pid("pid"), out("wstatus", S::Int), flags("options", F::Wait), out("rusage", S::Rusage)], Int, c!(PROCESS), HOST),
    sc!(62, kill, [pid("pid"), sig("sig")], Int, c!(SIGNAL | PROCESS), EMUL),
    sc!(63, uname, [out("buf", S::Utsname)], Int, c!(), HOST),
    sc!(64, semget, [hex("key"), int("nsems"), misc("semflg")], Int, c!(IPC), HOST),
    sc!(65, semop, [int("semid"), arg("sops", ArgKind::InBuf(Len::ArgTimes(2, SEMBUF))), uint("nsops")], Int, c!(IPC), HOST),
    sc!(66, semctl, [int("semid"), int("semnum"), int("cmd"), special("arg")], Int, c!(IPC), HOST),
    sc!(67, shmdt, [addr("shmaddr")], Int, c!(IPC | MEMORY), EMUL),
    sc!(68, msgget, [hex("key"), misc("msgflg")], Int, c!(IPC), HOST),
    sc!(69, msgsnd, [int("msqid"), arg("msgp", ArgKind::InBuf(Len::ArgPlus(2, 8))), uint("msgsz"), misc("msgflg")], Int, c!(IPC), HOST),
    sc!(70, msgrcv, [int("msqid"), arg("msgp", ArgKind::OutBuf { len: Len::ArgPlus(2, 8), ret_is_len: false }), uint("msgsz"), int("msgtyp"), misc("msgflg")], Int, c!(IPC), HOST),
    sc!(71, msgctl, [int("msqid"), int("cmd"), special("buf")], Int, c!(IPC), HOST),
    sc!(72, fcntl, [fd("fd"), int("cmd"), arg("arg", FcntlArg)], Int, c!(DESC), HOST),
    sc!(73, flock, [fd("fd"), flags("operation", F::Flock)], Int, c!(DESC), HOST),
    sc!(74, fsync, [fd("fd")], Int, c!(DESC), HOST),
    sc!(75, fdatasync, [fd("fd")], Int, c!(DESC), HOST),
    sc!(76, truncate, [path("path"), int("length")], Int, c!(FILE), HOST),
    sc!(77, ftruncate, [fd("fd"), int("length")], Int, c!(DESC), HOST),
    sc!(78, getdents, [fd("fd"), outbuf("dirp", 2, true), uint("count")], Int, c!(DESC), HOST),
    sc!(79, getcwd, [outbuf("buf", 1, true), uint("size")], Int, c!(FILE), HOST),
    sc!(80, chdir, [path("path")], Int, c!(FILE), HOST),
    sc!(81, fchdir, [fd("fd")], Int, c!(DESC), HOST),
    sc!(82, rename, [path("oldpath"), path("newpath")], Int, c!(FILE), HOST),
    sc!(83, mkdir, [path("pathname"), mode("mode")], Int, c!(FILE), HOST),
    sc!(84, rmdir, [path("pathname")], Int, c!(FILE), HOST),
    sc!(85, creat, [path("pathname"), mode("mode")], Fd, c!(FILE | DESC), HOST),
    sc!(86, link, [path("oldpath"), path("newpath")], Int, c!(FILE), HOST),
    sc!(87, unlink, [path("pathname")], Int, c!(FILE), HOST),
    sc!(88, symlink, [path("target"), path("linkpath")], Int, c!(FILE), HOST),
    sc!(89, readlink, [path("pathname"), outbuf("buf", 2, true), uint("bufsiz")], Int, c!(FILE), HOST),
    sc!(90, chmod, [path("pathname"), mode("mode")], Int, c!(FILE), HOST),
    sc!(91, fchmod, [fd("fd"), mode("mode")], Int, c!(DESC), HOST),
    sc!(92, chown, [path("pathname"), int("owner"), int("group")], Int, c!(FILE), HOST),
    sc!(93, fchown, [fd("fd"), int("owner"), int("group")], Int, c!(DESC), HOST),
    sc!(94, lchown, [path("pathname"), int("owner"), int("group")], Int, c!(FILE), HOST),
    sc!(95, umask, [mode("mask")], Int, c!(), HOST),
    sc!(96, gettimeofday, [out("tv", S::Timeval), out("tz", S::Timezone)], Int, c!(CLOCK), HOST),
    sc!(97, getrlimit, [flags("resource", F::Rlimit), out("rlim", S::Rlimit)], Int, c!(), EMUL),
    sc!(98, getrusage, [int("who"), out("usage", S::Rusage)], Int, c!(), HOST),
    sc!(99, sysinfo, [out("info", S::Sysinfo)], Int, c!(), HOST),
    sc!(100, times, [out("buf", S::Tms)], Int, c!(), HOST),
    sc!(101, ptrace, [int("request"), pid("pid"), hex("addr"), hex("data")], Int, c!(), ESCAPES),
    sc!(102, getuid, [], Int, c!(CREDS), HOST),
    sc!(103, syslog, [int("type"), outbuf("bufp", 2, true), int("len")], Int, c!(), ESCAPES),
    sc!(104, getgid, [], Int, c!(CREDS), HOST),
    sc!(105, setuid, [int("uid")], Int, c!(CREDS), HOST),
    sc!(106, setgid, [int("gid")], Int, c!(CREDS), HOST),
    sc!(107, geteuid, [], Int, c!(CREDS), HOST),
    sc!(108, getegid, [], Int, c!(CREDS), HOST),
    sc!(109, setpgid, [pid("pid"), pid("pgid")], Int, c!(), HOST),
    sc!(110, getppid, [], Int, c!(), HOST),
    sc!(111, getpgrp, [], Int, c!(), HOST),
    sc!(112, setsid, [], Int, c!(), HOST),
    sc!(113, setreuid, [int("ruid"), int("euid")], Int, c!(CREDS), HOST),
    sc!(114, setregid, [int("rgid"), int("egid")], Int, c!(CREDS), HOST),
    sc!(115, getgroups, [int("size"), outbuf_n("list", 0, 4)], Int, c!(CREDS), HOST),
    sc!(116, setgroups, [int("size"), arg("list", ArgKind::InBuf(Len::ArgTimes(0, 4)))], Int, c!(CREDS), HOST),
    sc!(117, setresuid, [int("ruid"), int("euid"), int("suid")], Int, c!(CREDS), HOST),
    sc!(118, getresuid, [out("ruid", S::Int), out("euid", S::Int), out("suid", S::Int)], Int, c!(CREDS), HOST),
    sc!(119, setresgid, [int("rgid"), int("egid"), int("sgid")], Int, c!(CREDS), HOST),
    sc!(120, getresgid, [out("rgid", S::Int), out("egid", S::Int), out("sgid", S::Int)], Int, c!(CREDS), HOST),
    sc!(121, getpgid, [pid("pid")], Int, c!(), HOST),
    sc!(122, setfsuid, [int("fsuid")], Int, c!(CREDS), HOST),
    sc!(123, setfsgid, [int("fsgid")], Int, c!(CREDS), HOST),
    sc!(124, getsid, [pid("pid")], Int, c!(), HOST),
    sc!(125, capget, [inout("hdrp", S::CapHeader), out("datap", S::CapData)], Int, c!(CREDS), HOST),
    sc!(126, capset, [inp("hdrp", S::CapHeader), inp("datap", S::CapData)], Int, c!(CREDS), HOST),
    sc!(127, rt_sigpending, [out("set", S::Sigset), uint("sigsetsize")], Int, c!(SIGNAL), EMUL),
    sc!(128, rt_sigtimedwait, [inp("set", S::Sigset), out("info", S::Siginfo), inp("timeout", S::Timespec), uint("sigsetsize")], Int, c!(SIGNAL), HOST),
    sc!(129, rt_sigqueueinfo, [pid("tgid"), sig("sig"), inp("info", S::Siginfo)], Int, c!(SIGNAL | PROCESS), EMUL),
    sc!(130, rt_sigsuspend, [inp("mask", S::Sigset), uint("sigsetsize")], Int, c!(SIGNAL), EMUL),
    sc!(131, sigaltstack, [inp("ss", S::StackT), out("old_ss", S::StackT)], Int, c!(SIGNAL), EMUL),
    sc!(132, utime, [path("filename"), inbuf_fixed("times", UTIMBUF)], Int, c!(FILE), HOST),
    sc!(133, mknod, [path("pathname"), mode("mode"), hex("dev")], Int, c!(FILE), HOST),
    sc!(134, uselib, [path("library")], Int, c!(FILE), ESCAPES),
    sc!(135, personality, [hex("persona")], Int, c!(), ESCAPES),
    sc!(136, ustat, [hex("dev"), outbuf_fixed("ubuf", USTAT)], Int, c!(), OBSOLETE),
    sc!(137, statfs, [path("path"), out("buf", S::Statfs)], Int, c!(FILE), HOST),
    sc!(138, fstatfs, [fd("fd"), out("buf", S::Statfs)], Int, c!(DESC), HOST),
    sc!(139, sysfs, [int("option"), hex("arg1"), hex("arg2")], Int, c!(), OBSOLETE),
    sc!(140, getpriority, [int("which"), pid("who")], Int, c!(), HOST),
    sc!(141, setpriority, [int("which"), pid("who"), int("prio")], Int, c!(), HOST),
    sc!(142, sched_setparam, [pid("pid"), inp("param", S::SchedParam)], Int, c!(), HOST),
    sc!(143, sched_getparam, [pid("pid"), out("param", S::SchedParam)], Int, c!(), HOST),
    sc!(144, sched_setscheduler, [pid("pid"), flags("policy", F::SchedPolicy), inp("param", S::SchedParam)], Int, c!(), HOST),
    sc!(145, sched_getscheduler, [pid("pid")], Int, c!(), HOST),
    sc!(146, sched_get_priority_max, [flags("policy", F::SchedPolicy)], Int, c!(), HOST),
    sc!(147, sched_get_priority_min, [flags("policy", F::SchedPolicy)], Int, c!(), HOST),
    sc!(148, sched_rr_get_interval, [pid("pid"), out("tp", S::Timespec)], Int, c!(), HOST),
    sc!(149, mlock, [range("addr", 1), uint("len")], Int, c!(MEMORY), HOST),
    sc!(150, munlock, [range("addr", 1), uint("len")], Int, c!(MEMORY), HOST),
    sc!(151, mlockall, [flags("flags", F::Mlock)], Int, c!(MEMORY), EMUL),
    sc!(152, munlockall, [], Int, c!(MEMORY), EMUL),
    sc!(153, vhangup, [], Int, c!(), ESCAPES),
    sc!(154, modify_ldt, [int("func"), special("ptr"), uint("bytecount")], Int, c!(), ESCAPES),
    sc!(155, pivot_root, [path("new_root"), path("put_old")], Int, c!(FILE), ESCAPES),
    sc!(156, _sysctl, [special("args")], Int, c!(), OBSOLETE),
    sc!(157, prctl, [flags("option", F::Prctl), special("arg2"), special("arg3"), special("arg4"), special("arg5")], Int, c!(), EMUL),
    sc!(158, arch_prctl, [flags("code", F::ArchPrctl), special("addr")], Int, c!(PROCESS), EMUL),
    sc!(159, adjtimex, [special("buf")], Int, c!(CLOCK), ESCAPES),
    sc!(160, setrlimit, [flags("resource", F::Rlimit), inp("rlim", S::Rlimit)], Int, c!(), EMUL),
    sc!(161, chroot, [path("path")], Int, c!(FILE), ESCAPES),
    sc!(162, sync, [], Int, c!(), HOST),
    sc!(163, acct, [path("filename")], Int, c!(FILE), ESCAPES),
    sc!(164, settimeofday, [inp("tv", S::Timeval), inp("tz", S::Timezone)], Int, c!(CLOCK), ESCAPES),
    sc!(165, mount, [path("source"), path("target"), cstr("filesystemtype"), misc("mountflags"), special("data")], Int, c!(FILE), ESCAPES),
    sc!(166, umount2, [path("target"), misc("flags")], Int, c!(FILE), ESCAPES),
    sc!(167, swapon, [path("path"), misc("swapflags")], Int, c!(FILE), ESCAPES),
    sc!(168, swapoff, [path("path")], Int, c!(FILE), ESCAPES),
    sc!(169, reboot, [hex("magic"), hex("magic2"), hex("cmd"), special("arg")], Int, c!(), ESCAPES),
    sc!(170, sethostname, [inbuf("name", 1), uint("len")], Int, c!(), ESCAPES),
    sc!(171, setdomainname, [inbuf("name", 1), uint("len")], Int, c!(), ESCAPES),
    sc!(172, iopl, [int("level")], Int, c!(), ESCAPES),
    sc!(173, ioperm, [hex("from"), uint("num"), int("turn_on")], Int, c!(), ESCAPES),
    sc!(174, create_module, [cstr("name"), uint("size")], Int, c!(), ESCAPES),
    sc!(175, init_module, [inbuf("module_image", 1), uint("len"), cstr("param_values")], Int, c!(), ESCAPES),
    sc!(176, delete_module, [cstr("name"), misc("flags")], Int, c!(), ESCAPES),
    sc!(177, get_kernel_syms, [special("table")], Int, c!(), ESCAPES),
    sc!(178, query_module, [cstr("name"), int("which"), special("buf"), uint("bufsize"), special("ret")], Int, c!(), ESCAPES),
    sc!(179, quotactl, [int("cmd"), path("special"), int("id"), special("addr")], Int, c!(FILE), ESCAPES),
    sc!(180, nfsservctl, [int("cmd"), special("argp"), special("resp")], Int, c!(), ESCAPES),
    sc!(181, getpmsg, [], Int, c!(NETWORK), OBSOLETE),
    sc!(182, putpmsg, [], Int, c!(NETWORK), OBSOLETE),
    sc!(183, afs_syscall, [], Int, c!(), OBSOLETE),
    sc!(184, tuxcall, [], Int, c!(), OBSOLETE),
    sc!(185, security, [], Int, c!(), OBSOLETE),
    sc!(186, gettid, [], Int, c!(), HOST),
    sc!(187, readahead, [fd("fd"), int("offset"), uint("count")], Int, c!(DESC), HOST),
    sc!(188, setxattr, [path("path"), cstr("name"), inbuf("value", 3), uint("size"), misc("flags")], Int, c!(FILE), HOST),
    sc!(189, lsetxattr, [path("path"), cstr("name"), inbuf("value", 3), uint("size"), misc("flags")], Int, c!(FILE), HOST),
    sc!(190, fsetxattr, [fd("fd"), cstr("name"), inbuf("value", 3), uint("size"), misc("flags")], Int, c!(DESC), HOST),
    sc!(191, getxattr, [path("path"), cstr("name"), outbuf("value", 3, true), uint("size")], Int, c!(FILE), HOST),
    sc!(192, lgetxattr, [path("path"), cstr("name"), outbuf("value", 3, true), uint("size")], Int, c!(FILE), HOST),
    sc!(193, fgetxattr, [fd("fd"), cstr("name"), outbuf("value", 3, true), uint("size")], Int, c!(DESC), HOST),
    sc!(194, listxattr, [path("path"), outbuf("list", 2, true), uint("size")], Int, c!(FILE), HOST),
    sc!(195, llistxattr, [path("path"), outbuf("list", 2, true), uint("size")], Int, c!(FILE), HOST),
    sc!(196, flistxattr, [fd("fd"), outbuf("list", 2, true), uint("size")], Int, c!(DESC), HOST),
    sc!(197, removexattr, [path("path"), cstr("name")], Int, c!(FILE), HOST),
    sc!(198, lremovexattr, [path("path"), cstr("name")], Int, c!(FILE), HOST),
    sc!(199, fremovexattr, [fd("fd"), cstr("name")], Int, c!(DESC), HOST),
    sc!(200, tkill, [pid("tid"), sig("sig")], Int, c!(SIGNAL | PROCESS), EMUL),
    sc!(201, time, [out("tloc", S::U64)], Int, c!(CLOCK), HOST),
    sc!(202, futex, [special("uaddr"), flags("futex_op", F::FutexOp), int("val"), special("timeout"), special("uaddr2"), int("val3")], Int, c!(), EMUL),
    sc!(203, sched_setaffinity, [pid("pid"), uint("cpusetsize"), inbuf("mask", 1)], Int, c!(), HOST),
    sc!(204, sched_getaffinity, [pid("pid"), uint("cpusetsize"), outbuf("mask", 1, true)], Int, c!(), HOST),
    sc!(205, set_thread_area, [special("u_info")], Int, c!(), OBSOLETE),
    sc!(206, io_setup, [uint("nr_events"), out("ctx_idp", S::U64)], Int, c!(MEMORY), HOST),
    sc!(207, io_destroy, [hex("ctx_id")], Int, c!(MEMORY), HOST),
    sc!(208, io_getevents, [hex("ctx_id"), int("min_nr"), int("nr"), outbuf_n("events", 2, IO_EVENT), inp("timeout", S::Timespec)], Int, c!(), HOST),
    sc!(209, io_submit, [hex("ctx_id"), int("nr"), special("iocbpp")], Int, c!(), HOST),
    sc!(210, io_cancel, [hex("ctx_id"), special("iocb"), outbuf_fixed("result", IO_EVENT)], Int, c!(), HOST),
    sc!(211, get_thread_area, [special("u_info")], Int, c!(), OBSOLETE),
    sc!(212, lookup_dcookie, [hex("cookie"), outbuf("buffer", 2, true), uint("len")], Int, c!(), ESCAPES),
    sc!(213, epoll_create, [int("size")], Fd, c!(DESC), HOST),
    sc!(214, epoll_ctl_old, [], Int, c!(DESC), OBSOLETE),
    sc!(215, epoll_wait_old, [], Int, c!(DESC), OBSOLETE),
    sc!(216, remap_file_pages, [addr("addr"), uint("size"), flags("prot", F::Prot), uint("pgoff"), flags("flags", F::Map)], Int, c!(MEMORY), ESCAPES),
    sc!(217, getdents64, [fd("fd"), outbuf("dirp", 2, true), uint("count")], Int, c!(DESC), HOST),
    sc!(218, set_tid_address, [special("tidptr")], Int, c!(), EMUL),
    sc!(219, restart_syscall, [], Int, c!(), HOST),
    sc!(220, semtimedop, [int("semid"), arg("sops", ArgKind::InBuf(Len::ArgTimes(2, SEMBUF))), uint("nsops"), inp("timeout", S::Timespec)], Int, c!(IPC), HOST),
    sc!(221, fadvise64, [fd("fd"), int("offset"), uint("len"), flags("advice", F::Fadvise)], Int, c!(DESC), HOST),
    sc!(222, timer_create, [flags("clockid", F::ClockId), inp("sevp", S::Sigevent), out("timerid", S::Int)], Int, c!(), HOST),
    sc!(223, timer_settime, [int("timerid"), misc("flags"), inp("new_value", S::Itimerspec), out("old_value", S::Itimerspec)], Int, c!(), HOST),
    sc!(224, timer_gettime, [int("timerid"), out("curr_value", S::Itimerspec)], Int, c!(), HOST),
    sc!(225, timer_getoverrun, [int("timerid")], Int, c!(), HOST),
    sc!(226, timer_delete, [int("timerid")], Int, c!(), HOST),
    sc!(227, clock_settime, [flags("clockid", F::ClockId), inp("tp", S::Timespec)], Int, c!(CLOCK), ESCAPES),
    sc!(228, clock_gettime, [flags("clockid", F::ClockId), out("tp", S::Timespec)], Int, c!(CLOCK), HOST),
    sc!(229, clock_getres, [flags("clockid", F::ClockId), out("res", S::Timespec)], Int, c!(CLOCK), HOST),
    sc!(230, clock_nanosleep, [flags("clockid", F::ClockId), misc("flags"), inp("request", S::Timespec), out("remain", S::Timespec)], Int, c!(), HOST),
    sc!(231, exit_group, [int("status")], NoReturn, c!(PROCESS), EMUL),
    sc!(232, epoll_wait, [fd("epfd"), outbuf_n("events", 2, EPOLL_EVENT), int("maxevents"), int("timeout")], Int, c!(DESC), HOST),
    sc!(233, epoll_ctl, [fd("epfd"), flags("op", F::EpollCtl), fd("fd"), inp("event", S::EpollEvent)], Int, c!(DESC), HOST),
    sc!(234, tgkill, [pid("tgid"), pid("tid"), sig("sig")], Int, c!(SIGNAL | PROCESS), EMUL),
    sc!(235, utimes, [path("filename"), inbuf_fixed("times", TIMEVAL2)], Int, c!(FILE), HOST),
    sc!(236, vserver, [], Int, c!(), OBSOLETE),
    sc!(237, mbind, [range("addr", 1), uint("len"), int("mode"), special("nodemask"), uint("maxnode"), misc("flags")], Int, c!(MEMORY), ESCAPES),
    sc!(238, set_mempolicy, [int("mode"), special("nodemask"), uint("maxnode")], Int, c!(MEMORY), ESCAPES),
    sc!(239, get_mempolicy, [out("mode", S::Int), special("nodemask"), uint("maxnode"), hex("addr"), misc("flags")], Int, c!(MEMORY), HOST),
    sc!(240, mq_open, [cstr("name"), flags("oflag", F::Open), mode("mode"), inbuf_fixed("attr", MQ_ATTR)], Fd, c!(DESC), HOST),
    sc!(241, mq_unlink, [cstr("name")], Int, c!(), HOST),
    sc!(242, mq_timedsend, [fd("mqdes"), inbuf("msg_ptr", 2), uint("msg_len"), uint("msg_prio"), inp("abs_timeout", S::Timespec)], Int, c!(DESC), HOST),
    sc!(243, mq_timedreceive, [fd("mqdes"), outbuf("msg_ptr", 2, true), uint("msg_len"), out("msg_prio", S::Int), inp("abs_timeout", S::Timespec)], Int, c!(DESC), HOST),
    sc!(244, mq_notify, [fd("mqdes"), inp("sevp", S::Sigevent)], Int, c!(DESC), HOST),
    sc!(245, mq_getsetattr, [fd("mqdes"), inbuf_fixed("newattr", MQ_ATTR), outbuf_fixed("oldattr", MQ_ATTR)], Int, c!(DESC), HOST),
    sc!(246, kexec_load, [hex("entry"), uint("nr_segments"), special("segments"), misc("flags")], Int, c!(), ESCAPES),
    sc!(247, waitid, [flags("idtype", F::IdType), int("id"), out("infop", S::Siginfo), flags("options", F::Wait), out("rusage", S::Rusage)], Int, c!(PROCESS), HOST),
    sc!(248, add_key, [cstr("type"), cstr("description"), inbuf("payload", 3), uint("plen"), int("keyring")], Int, c!(), ESCAPES),
    sc!(249, request_key, [cstr("type"), cstr("description"), cstr("callout_info"), int("dest_keyring")], Int, c!(), ESCAPES),
    sc!(250, keyctl, [int("operation"), special("arg2"), special("arg3"), special("arg4"), special("arg5")], Int, c!(), ESCAPES),
    sc!(251, ioprio_set, [int("which"), pid("who"), int("ioprio")], Int, c!(), HOST),
    sc!(252, ioprio_get, [int("which"), pid("who")], Int, c!(), HOST),
    sc!(253, inotify_init, [], Fd, c!(DESC), HOST),
    sc!(254, inotify_add_watch, [fd("fd"), path("pathname"), misc("mask")], Int, c!(FILE | DESC), HOST),
    sc!(255, inotify_rm_watch, [fd("fd"), int("wd")], Int, c!(DESC), HOST),
    sc!(256, migrate_pages, [pid("pid"), uint("maxnode"), special("old_nodes"), special("new_nodes")], Int, c!(MEMORY), ESCAPES),
    sc!(257, openat, [dirfd("dirfd"), path("pathname"), flags("flags", F::Open), mode("mode")], Fd, c!(FILE | DESC), HOST),
    sc!(258, mkdirat, [dirfd("dirfd"), path("pathname"), mode("mode")], Int, c!(FILE | DESC), HOST),
    sc!(259, mknodat, [dirfd("dirfd"), path("pathname"), mode("mode"), hex("dev")], Int, c!(FILE | DESC), HOST),
    sc!(260, fchownat, [dirfd("dirfd"), path("pathname"), int("owner"), int("group"), flags("flags", F::At)], Int, c!(FILE | DESC), HOST),
    sc!(261, futimesat, [dirfd("dirfd"), path("pathname"), inbuf_fixed("times", TIMEVAL2)], Int, c!(FILE | DESC), HOST),
    sc!(262, newfstatat, [dirfd("dirfd"), path("pathname"), out("statbuf", S::Stat), flags("flags", F::At)], Int, c!(FILE | DESC | STAT), HOST),
    sc!(263, unlinkat, [dirfd("dirfd"), path("pathname"), flags("flags", F::At)], Int, c!(FILE | DESC), HOST),
    sc!(264, renameat, [dirfd("olddirfd"), path("oldpath"), dirfd("newdirfd"), path("newpath")], Int, c!(FILE | DESC), HOST),
    sc!(265, linkat, [dirfd("olddirfd"), path("oldpath"), dirfd("newdirfd"), path("newpath"), flags("flags", F::At)], Int, c!(FILE | DESC), HOST),
    sc!(266, symlinkat, [path("target"), dirfd("newdirfd"), path("linkpath")], Int, c!(FILE | DESC), HOST),
    sc!(267, readlinkat, [dirfd("dirfd"), path("pathname"), outbuf("buf", 3, true), uint("bufsiz")], Int, c!(FILE | DESC), HOST),
    sc!(268, fchmodat, [dirfd("dirfd"), path("pathname"), mode("mode")], Int, c!(FILE | DESC), HOST),
    sc!(269, faccessat, [dirfd("dirfd"), path("pathname"), flags("mode", F::Access)], Int, c!(FILE | DESC), HOST),
    sc!(270, pselect6, [int("nfds"), fdset("readfds"), fdset("writefds"), fdset("exceptfds"), inout("timeout", S::Timespec), arg("sigmask", ArgKind::SigsetPack)], Int, c!(DESC), HOST),
    sc!(271, ppoll, [arg("fds", PollFds { count: 1 }), uint("nfds"), inout("tmo_p", S::Timespec), inp("sigmask", S::Sigset), uint("sigsetsize")], Int, c!(DESC), HOST),
    sc!(272, unshare, [flags("flags", F::Clone)], Int, c!(PROCESS), ESCAPES),
    sc!(273, set_robust_list, [inp("head", S::RobustListHead), uint("len")], Int, c!(), EMUL),
    sc!(274, get_robust_list, [pid("pid"), out("head_ptr", S::U64), out("len_ptr", S::U64)], Int, c!(), EMUL),
    sc!(275, splice, [fd("fd_in"), inout("off_in", S::U64), fd("fd_out"), inout("off_out", S::U64), uint("len"), misc("flags")], Int, c!(DESC), HOST),
    sc!(276, tee, [fd("fd_in"), fd("fd_out"), uint("len"), misc("flags")], Int, c!(DESC), HOST),
    sc!(277, sync_file_range, [fd("fd"), int("offset"), int("nbytes"), misc("flags")], Int, c!(DESC), HOST),
    sc!(278, vmsplice, [fd("fd"), iov("iov", 2, In), uint("nr_segs"), misc("flags")], Int, c!(DESC), HOST),
    sc!(279, move_pages, [pid("pid"), uint("count"), special("pages"), special("nodes"), special("status"), misc("flags")], Int, c!(MEMORY), ESCAPES),
    sc!(280, utimensat, [dirfd("dirfd"), path("pathname"), inp("times", S::Timespec2), flags("flags", F::At)], Int, c!(FILE | DESC), HOST),
    sc!(281, epoll_pwait, [fd("epfd"), outbuf_n("events", 2, EPOLL_EVENT), int("maxevents"), int("timeout"), inp("sigmask", S::Sigset), uint("sigsetsize")], Int, c!(DESC), HOST),
    sc!(282, signalfd, [fd("fd"), inp("mask", S::Sigset), uint("sizemask")], Fd, c!(DESC | SIGNAL), HOST),
    sc!(283, timerfd_create, [flags("clockid", F::ClockId), misc("flags")], Fd, c!(DESC), HOST),
    sc!(284, eventfd, [uint("initval")], Fd, c!(DESC), HOST),
    sc!(285, fallocate, [fd("fd"), flags("mode", F::Falloc), int("offset"), int("len")], Int, c!(DESC), HOST),
    sc!(286, timerfd_settime, [fd("fd"), misc("flags"), inp("new_value", S::Itimerspec), out("old_value", S::Itimerspec)], Int, c!(DESC), HOST),
    sc!(287, timerfd_gettime, [fd("fd"), out("curr_value", S::Itimerspec)], Int, c!(DESC), HOST),
    sc!(288, accept4, [fd("sockfd"), sa_out("addr", 2), socklen("addrlen"), flags("flags", F::SockType)], Fd, c!(NETWORK), HOST),
    sc!(289, signalfd4, [fd("fd"), inp("mask", S::Sigset), uint("sizemask"), misc("flags")], Fd, c!(DESC | SIGNAL), HOST),
    sc!(290, eventfd2, [uint("initval"), misc("flags")], Fd, c!(DESC), HOST),
    sc!(291, epoll_create1, [misc("flags")], Fd, c!(DESC), HOST),
    sc!(292, dup3, [fd("oldfd"), fd("newfd"), flags("flags", F::Open)], Fd, c!(DESC), HOST),
    sc!(293, pipe2, [out("pipefd", S::Int2), flags("flags", F::Open)], Int, c!(DESC), HOST),
    sc!(294, inotify_init1, [misc("flags")], Fd, c!(DESC), HOST),
    sc!(295, preadv, [fd("fd"), iov("iov", 2, Out), int("iovcnt"), int("offset")], Int, c!(DESC), HOST),
    sc!(296, pwritev, [fd("fd"), iov("iov", 2, In), int("iovcnt"), int("offset")], Int, c!(DESC), HOST),
    sc!(297, rt_tgsigqueueinfo, [pid("tgid"), pid("tid"), sig("sig"), inp("info", S::Siginfo)], Int, c!(SIGNAL | PROCESS), EMUL),
    sc!(298, perf_event_open, [special("attr"), pid("pid"), int("cpu"), fd("group_fd"), misc("flags")], Fd, c!(DESC), ESCAPES),
    sc!(299, recvmmsg, [fd("sockfd"), arg("msgvec", ArgKind::Mmsghdr { count: 2, dir: Out }), uint("vlen"), flags("flags", F::Msg), inout("timeout", S::Timespec)], Int, c!(NETWORK), HOST),
    // fanotify hands the reader descriptors in its events, which trapbox cannot vet.
    sc!(300, fanotify_init, [misc("flags"), flags("event_f_flags", F::Open)], Fd, c!(DESC), ESCAPES),
    sc!(301, fanotify_mark, [fd("fanotify_fd"), misc("flags"), hex("mask"), dirfd("dirfd"), path("pathname")], Int, c!(FILE | DESC), HOST),
    sc!(302, prlimit64, [pid("pid"), flags("resource", F::Rlimit), inp("new_limit", S::Rlimit), out("old_limit", S::Rlimit)], Int, c!(), EMUL),
    sc!(303, name_to_handle_at, [dirfd("dirfd"), path("pathname"), special("handle"), out("mount_id", S::Int), flags("flags", F::At)], Int, c!(FILE | DESC), HOST),
    sc!(304, open_by_handle_at, [fd("mount_fd"), special("handle"), flags("flags", F::Open)], Fd, c!(DESC), HOST),
    sc!(305, clock_adjtime, [flags("clk_id", F::ClockId), special("buf")], Int, c!(CLOCK), ESCAPES),
    sc!(306, syncfs, [fd("fd")], Int, c!(DESC), HOST),
    sc!(307, sendmmsg, [fd("sockfd"), arg("msgvec", ArgKind::Mmsghdr { count: 2, dir: In }), uint("vlen"), flags("flags", F::Msg)], Int, c!(NETWORK), HOST),
    sc!(308, setns, [fd("fd"), flags("nstype", F::Clone)], Int, c!(PROCESS | DESC), ESCAPES),
    sc!(309, getcpu, [out("cpu", S::Int), out("node", S::Int), hex("tcache")], Int, c!(), HOST),
    sc!(310, process_vm_readv, [pid("pid"), iov("local_iov", 2, Out), uint("liovcnt"), special("remote_iov"), uint("riovcnt"), misc("flags")], Int, c!(), ESCAPES),
    sc!(311, process_vm_writev, [pid("pid"), iov("local_iov", 2, In), uint("liovcnt"), special("remote_iov"), uint("riovcnt"), misc("flags")], Int, c!(), ESCAPES),
    sc!(312, kcmp, [pid("pid1"), pid("pid2"), int("type"), hex("idx1"), hex("idx2")], Int, c!(), HOST),
    sc!(313, finit_module, [fd("fd"), cstr("param_values"), misc("flags")], Int, c!(DESC), ESCAPES),
    sc!(314, sched_setattr, [pid("pid"), special("attr"), misc("flags")], Int, c!(), HOST),
    sc!(315, sched_getattr, [pid("pid"), outbuf("attr", 2, false), uint("size"), misc("flags")], Int, c!(), HOST),
    sc!(316, renameat2, [dirfd("olddirfd"), path("oldpath"), dirfd("newdirfd"), path("newpath"), flags("flags", F::Rename)], Int, c!(FILE | DESC), HOST),
    sc!(317, seccomp, [int("operation"), misc("flags"), special("args")], Int, c!(), ESCAPES),
    sc!(318, getrandom, [outbuf("buf", 1, true), uint("buflen"), flags("flags", F::Getrandom)], Int, c!(), HOST),
    sc!(319, memfd_create, [cstr("name"), misc("flags")], Fd, c!(DESC), HOST),
    sc!(320, kexec_file_load, [fd("kernel_fd"), fd("initrd_fd"), uint("cmdline_len"), inbuf("cmdline", 2), misc("flags")], Int, c!(DESC), ESCAPES),
    sc!(321, bpf, [int("cmd"), special("attr"), uint("size")], Int, c!(DESC), ESCAPES),
    sc!(322, execveat, [dirfd("dirfd"), path("pathname"), strs("argv"), strs("envp"), flags("flags", F::At)], Int, c!(FILE | DESC | PROCESS), EMUL),
    sc!(323, userfaultfd, [flags("flags", F::Open)], Fd, c!(DESC), ESCAPES),
    sc!(324, membarrier, [int("cmd"), misc("flags"), int("cpu_id")], Int, c!(), HOST),
    sc!(325, mlock2, [range("addr", 1), uint("len"), flags("flags", F::Mlock)], Int, c!(MEMORY), HOST),
    sc!(326, copy_file_range, [fd("fd_in"), inout("off_in", S::U64), fd("fd_out"), inout("off_out", S::U64), uint("len"), misc("flags")], Int, c!(DESC), HOST),
    sc!(327, preadv2, [fd("fd"), iov("iov", 2, Out), int("iovcnt"), int("offset"), ignored("offset_high"), misc("flags")], Int, c!(DESC), HOST),
    sc!(328, pwritev2, [fd("fd"), iov("iov", 2, In), int("iovcnt"), int("offset"), ignored("offset_high"), misc("flags")], Int, c!(DESC), HOST),
    sc!(329, pkey_mprotect, [range("addr", 1), uint("len"), flags("prot", F::Prot), int("pkey")], Int, c!(MEMORY), HOST),
    sc!(330, pkey_alloc, [misc("flags"), misc("access_rights")], Int, c!(), HOST),
    sc!(331, pkey_free, [int("pkey")], Int, c!(), HOST),
    sc!(332, statx, [dirfd("dirfd"), path("pathname"), flags("flags", F::At), flags("mask", F::StatxMask), out("statxbuf", S::Statx)], Int, c!(FILE | DESC | STAT), HOST),
    sc!(333, io_pgetevents, [hex("ctx_id"), int("min_nr"), int("nr"), outbuf_n("events", 2, IO_EVENT), inp("timeout", S::Timespec), special("usig")], Int, c!(), HOST),
    sc!(334, rseq, [inp("rseq", S::Rseq), uint("rseq_len"), misc("flags"), hex("sig")], Int, c!(), EMUL),
    sc!(424, pidfd_send_signal, [fd("pidfd"), sig("sig"), inp("info", S::Siginfo), misc("flags")], Int, c!(DESC | SIGNAL), EMUL),
    sc!(425, io_uring_setup, [uint("entries"), special("p")], Fd, c!(DESC), ESCAPES),
    sc!(426, io_uring_enter, [fd("fd"), uint("to_submit"), uint("min_complete"), misc("flags"), special("sig"), uint("sz")], Int, c!(DESC | SIGNAL), ESCAPES),
    sc!(427, io_uring_register, [fd("fd"), uint("opcode"), special("arg"), uint("nr_args")], Int, c!(DESC | MEMORY), ESCAPES),
    sc!(428, open_tree, [dirfd("dirfd"), path("path"), misc("flags")], Fd, c!(FILE | DESC), ESCAPES),
    sc!(429, move_mount, [dirfd("from_dirfd"), path("from_path"), dirfd("to_dirfd"), path("to_path"), misc("flags")], Int, c!(FILE | DESC), ESCAPES),
    sc!(430, fsopen, [cstr("fsname"), misc("flags")], Fd, c!(DESC), ESCAPES),
    sc!(431, fsconfig, [fd("fd"), int("cmd"), cstr("key"), special("value"), int("aux")], Int, c!(FILE | DESC), ESCAPES),
    sc!(432, fsmount, [fd("fd"), misc("flags"), misc("attr_flags")], Fd, c!(DESC), ESCAPES),
    sc!(433, fspick, [dirfd("dirfd"), path("path"), misc("flags")], Fd, c!(FILE | DESC), ESCAPES),
    sc!(434, pidfd_open, [pid("pid"), misc("flags")], Fd, c!(DESC), HOST),
    sc!(435, clone3, [inp("cl_args", S::Clone3Args), uint("size")], Int, c!(PROCESS), EMUL),
    sc!(436, close_range, [uint("first"), uint("last"), flags("flags", F::CloseRange)], Int, c!(DESC), EMUL),
    sc!(437, openat2, [dirfd("dirfd"), path("pathname"), arg("how", ArgKind::OpenHow { size: 3 }), uint("size")], Fd, c!(FILE | DESC), HOST),
    sc!(438, pidfd_getfd, [fd("pidfd"), int("targetfd"), misc("flags")], Fd, c!(DESC), ESCAPES),
    sc!(439, faccessat2, [dirfd("dirfd"), path("pathname"), flags("mode", F::Access), flags("flags", F::At)], Int, c!(FILE | DESC), HOST),
    sc!(440, process_madvise, [fd("pidfd"), special("iovec"), uint("vlen"), flags("advice", F::Madvise), misc("flags")], Int, c!(DESC), ESCAPES),
    sc!(441, epoll_pwait2, [fd("epfd"), outbuf_n("events", 2, EPOLL_EVENT), int("maxevents"), inp("timeout", S::Timespec), inp("sigmask", S::Sigset), uint("sigsetsize")], Int, c!(DESC), HOST),
    sc!(442, mount_setattr, [dirfd("dirfd"), path("path"), flags("flags", F::At), inbuf("attr", 4), uint("size")], Int, c!(FILE | DESC), ESCAPES),
    sc!(443, quotactl_fd, [fd("fd"), uint("cmd"), int("id"), special("addr")], Int, c!(DESC), ESCAPES),
    sc!(444, landlock_create_ruleset, [inbuf("attr", 1), uint("size"), misc("flags")], Fd, c!(DESC), ESCAPES),
    sc!(445, landlock_add_rule, [fd("ruleset_fd"), int("rule_type"), special("rule_attr"), misc("flags")], Int, c!(DESC), ESCAPES),
    sc!(446, landlock_restrict_self, [fd("ruleset_fd"), misc("flags")], Int, c!(DESC), ESCAPES),
    sc!(447, memfd_secret, [misc("flags")], Fd, c!(DESC), ESCAPES),
    sc!(448, process_mrelease, [fd("pidfd"), misc("flags")], Int, c!(DESC), ESCAPES),
    sc!(449, futex_waitv, [arg("waiters", ArgKind::FutexWaiters { count: 1 }), uint("nr_futexes"), misc("flags"), inp("timeout", S::Timespec), flags("clockid", F::ClockId)], Int, c!(), HOST),
    sc!(450, set_mempolicy_home_node, [range("start", 1), uint("len"), int("home_node"), misc("flags")], Int, c!(MEMORY), ESCAPES),
    sc!(451, cachestat, [fd("fd"), inbuf_fixed("cstat_range", CACHESTAT_RANGE), outbuf_fixed("cstat", CACHESTAT), misc("flags")], Int, c!(DESC), HOST),
    sc!(452, fchmodat2, [dirfd("dirfd"), path("pathname"), mode("mode"), flags("flags", F::At)], Int, c!(FILE | DESC), HOST),
    sc!(453, map_shadow_stack, [addr("addr"), uint("size"), misc("flags")], Addr, c!(MEMORY), ESCAPES),
    sc!(454, futex_wake, [special("uaddr"), hex("mask"), int("nr"), misc("flags")], Int, c!(), HOST),
    sc!(455, futex_wait, [special("uaddr"), hex("val"), hex("mask"), misc("flags"), inp("timeout", S::Timespec), flags("clockid", F::ClockId)], Int, c!(), HOST),
    sc!(456, futex_requeue, [special("waiters"), misc("flags"), int("nr_wake"), int("nr_requeue")], Int, c!(), HOST),
    sc!(457, statmount, [special("req"), outbuf("buf", 2, false), uint("bufsize"), misc("flags")], Int, c!(), HOST),
    sc!(458, listmount, [special("req"), outbuf_n("mnt_ids", 2, 8), uint("nr_mnt_ids"), misc("flags")], Int, c!(), HOST),
    sc!(459, lsm_get_self_attr, [uint("attr"), special("ctx"), special("size"), misc("flags")], Int, c!(), HOST),
    sc!(460, lsm_set_self_attr, [uint("attr"), inbuf("ctx", 2), uint("size"), misc("flags")], Int, c!(), HOST),
    sc!(461, lsm_list_modules, [special("ids"), special("size"), misc("flags")], Int, c!(), HOST),
    sc!(462, mseal, [range("start", 1), uint("len"), misc("flags")], Int, c!(MEMORY), EMUL),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_numbers_match_known_names() {
        let known = [
            (0, "read"),
            (1, "write"),
            (2, "open"),
            (3, "close"),
            (4, "stat"),
            (5, "fstat"),
            (6, "lstat"),
            (9, "mmap"),
            (12, "brk"),
            (13, "rt_sigaction"),
            (17, "pread64"),
            (39, "getpid"),
            (59, "execve"),
            (60, "exit"),
            (158, "arch_prctl"),
            (202, "futex"),
            (217, "getdents64"),
            (221, "fadvise64"),
            (228, "clock_gettime"),
            (231, "exit_group"),
            (257, "openat"),
            (262, "newfstatat"),
            (302, "prlimit64"),
            (318, "getrandom"),
            (332, "statx"),
            (334, "rseq"),
            (435, "clone3"),
            (436, "close_range"),
            (439, "faccessat2"),
            (462, "mseal"),
        ];
        for (nr, name) in known {
            let d = TABLE.iter().find(|d| d.nr == nr).unwrap_or_else(|| panic!("{nr} missing"));
            assert_eq!(d.name, name, "syscall {nr}");
        }
    }

    #[test]
    fn table_is_dense_up_to_334_then_424_to_462() {
        assert_eq!(TABLE.len(), 335 + (462 - 424 + 1));
        for (i, d) in TABLE.iter().enumerate() {
            let want = if i <= 334 { i as u64 } else { i as u64 - 335 + 424 };
            assert_eq!(d.nr, want, "{}", d.name);
        }
    }

    #[test]
    fn table_has_no_duplicate_names() {
        let mut names: Vec<&str> = TABLE.iter().map(|d| d.name).collect();
        names.sort_unstable();
        for w in names.windows(2) {
            assert_ne!(w[0], w[1], "duplicate name");
        }
    }

    #[test]
    fn memory_calls_are_emulated() {
        for name in ["mmap", "munmap", "mprotect", "mremap", "brk"] {
            let d = TABLE.iter().find(|d| d.name == name).unwrap();
            assert_eq!(d.handling, Handling::Emulated, "{name}");
            assert!(d.class.contains(Class::MEMORY), "{name}");
        }
    }

    #[test]
    fn process_creation_is_emulated() {
        for name in ["clone", "clone3", "fork", "vfork", "execve", "execveat"] {
            let d = TABLE.iter().find(|d| d.name == name).unwrap();
            assert_eq!(d.handling, Handling::Emulated, "{name}");
        }
    }

    #[test]
    fn new_fd_calls_return_fd() {
        for name in ["open", "openat", "openat2", "dup", "socket", "accept4", "eventfd2", "memfd_create"] {
            let d = TABLE.iter().find(|d| d.name == name).unwrap();
            assert_eq!(d.ret, Ret::Fd, "{name}");
        }
    }

    #[test]
    fn arguments_have_names_and_no_trailing_ignored() {
        for d in TABLE {
            for a in d.args {
                assert!(!a.name.is_empty(), "{}", d.name);
            }
            if let Some(last) = d.args.last() {
                assert_ne!(last.kind, ArgKind::Ignored, "{}", d.name);
            }
        }
    }
}
