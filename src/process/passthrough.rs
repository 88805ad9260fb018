//! Forwarding a syscall to the host, checked against the ABI table (invariants 3 and 4).
//!
//! Before the host kernel sees a syscall, every pointer argument is checked against the guest's
//! mappings — address, length and direction, nested pointers included (iovecs, msghdr) — and
//! every descriptor argument against trapbox's own. A failed check returns the errno the kernel
//! would have given for the guest's view of memory (EFAULT) or descriptors (EBADF). NULL
//! pointers go through unchanged: the kernel treats them as "none" or fails with EFAULT, and
//! trapbox never maps page zero.

use crate::process::abi::{ArgKind, Dir, Len, Ret, SyscallDesc};
use crate::process::fds::{leads_into_trapbox, FdGuard};
use crate::process::mem::{Access, AddressSpace};
use crate::trap::GuestAddr;

/// Longest path the kernel accepts.
const PATH_MAX: usize = 4096;
/// Most iovecs the kernel accepts.
const IOV_MAX: u64 = 1024;

fn dir_access(d: Dir) -> Access {
    match d {
        Dir::In => Access::Read,
        Dir::Out => Access::Write,
    }
}

fn len_of(len: Len, args: &[u64; 6]) -> u64 {
    match len {
        Len::Arg(i) => args[i],
        Len::Fixed(n) => n as u64,
        Len::ArgTimes(i, n) => args[i].saturating_mul(n as u64),
    }
}

/// Why a check failed: the errno for the guest.
pub type Errno = i32;

fn check(mem: &AddressSpace, addr: u64, len: u64, access: Access) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    mem.check(addr, len, access).map_err(|_| libc::EFAULT)
}

fn check_iovecs(mem: &AddressSpace, addr: u64, count: u64, access: Access) -> Result<(), Errno> {
    if count > IOV_MAX {
        return Err(libc::EINVAL);
    }
    if count == 0 {
        return Ok(());
    }
    mem.check(addr, count * 16, Access::Read).map_err(|_| libc::EFAULT)?;
    for i in 0..count {
        let base = mem.read_u64(addr + i * 16).map_err(|_| libc::EFAULT)?;
        let len = mem.read_u64(addr + i * 16 + 8).map_err(|_| libc::EFAULT)?;
        if len > 0 {
            mem.check(base, len, access).map_err(|_| libc::EFAULT)?;
        }
    }
    Ok(())
}

fn check_msghdr(mem: &AddressSpace, addr: u64, dir: Dir) -> Result<(), Errno> {
    let acc = dir_access(dir);
    // recvmsg writes back msg_namelen, msg_controllen and msg_flags.
    mem.check(addr, 56, if dir == Dir::Out { Access::Write } else { Access::Read }).map_err(|_| libc::EFAULT)?;
    let rd = |o: u64| mem.read_u64(addr + o).map_err(|_| libc::EFAULT);
    let (name, namelen) = (rd(0)?, rd(8)? & 0xffff_ffff);
    let (iov, iovlen) = (rd(16)?, rd(24)?);
    let (control, controllen) = (rd(32)?, rd(40)?);
    check(mem, name, namelen, acc)?;
    check_iovecs(mem, iov, iovlen, acc)?;
    check(mem, control, controllen, acc)
}

/// `ioctl` requests trapbox forwards, with what the third argument points to. Anything else
/// is refused with ENOTTY (what the kernel says for a request a device does not know).
fn ioctl_arg(request: u64) -> Option<Option<(u64, Access)>> {
    const TERMIOS: u64 = 36; // the kernel's struct termios
    Some(match request {
        0x5401 => Some((TERMIOS, Access::Write)),         // TCGETS
        0x5402..=0x5404 => Some((TERMIOS, Access::Read)), // TCSETS, TCSETSW, TCSETSF
        0x5409..=0x540b => None,                          // TCSBRK, TCXONC, TCFLSH (values)
        0x540f => Some((4, Access::Write)),               // TIOCGPGRP
        0x5410 => Some((4, Access::Read)),                // TIOCSPGRP
        0x5413 => Some((8, Access::Write)),               // TIOCGWINSZ
        0x5414 => Some((8, Access::Read)),                // TIOCSWINSZ
        0x541b => Some((4, Access::Write)),               // FIONREAD
        0x5421 | 0x5452 => Some((4, Access::Read)),       // FIONBIO, FIOASYNC
        0x5450 | 0x5451 => None,                          // FIONCLEX, FIOCLEX
        0x5429 => Some((4, Access::Write)),               // TIOCGSID
        0x80086601 => Some((8, Access::Write)),           // FS_IOC_GETFLAGS
        _ => return None,
    })
}

/// `fcntl` commands trapbox forwards, with the size the third argument points to.
fn fcntl_arg(cmd: u64) -> Option<Option<(u64, Access)>> {
    Some(match cmd as i32 {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC | libc::F_GETFD | libc::F_SETFD | libc::F_GETFL | libc::F_SETFL => None,
        libc::F_GETLK | libc::F_OFD_GETLK => Some((32, Access::Write)),
        libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW => Some((32, Access::Read)),
        libc::F_GETOWN | libc::F_SETOWN | libc::F_GETPIPE_SZ | libc::F_SETPIPE_SZ => None,
        libc::F_ADD_SEALS | libc::F_GET_SEALS | libc::F_GETLEASE | libc::F_SETLEASE => None,
        16 => Some((8, Access::Write)), // F_GETOWN_EX
        15 => Some((8, Access::Read)),  // F_SETOWN_EX
        // F_SETSIG and F_NOTIFY would make the kernel signal trapbox.
        _ => return None,
    })
}

/// What the checker concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// All arguments are safe to hand to the host kernel.
    Ok,
    /// Refuse with this errno.
    Refuse(Errno),
    /// An argument kind the generic checker cannot vouch for (trapbox says so once).
    Unsupported(&'static str),
}

/// Checks every argument of a syscall the ABI table marks `Host`.
pub fn check_args(desc: &SyscallDesc, args: &[u64; 6], mem: &AddressSpace, fds: &FdGuard) -> Checked {
    match check_args_inner(desc, args, mem, fds) {
        Ok(()) => Checked::Ok,
        Err(Err(e)) => Checked::Refuse(e),
        Err(Ok(why)) => Checked::Unsupported(why),
    }
}

fn check_args_inner(
    desc: &SyscallDesc,
    args: &[u64; 6],
    mem: &AddressSpace,
    fds: &FdGuard,
) -> Result<(), Result<&'static str, Errno>> {
    let refuse = |e: Errno| Err(Err(e));
    for (i, a) in desc.args.iter().enumerate() {
        let v = args[i];
        let r = match a.kind {
            ArgKind::Fd | ArgKind::DirFd if fds.is_reserved(v as i32 as i64) => Err(libc::EBADF),
            ArgKind::Path | ArgKind::CStr if v != 0 => match mem.read_cstr(GuestAddr(v), PATH_MAX) {
                Ok(_) => Ok(()),
                Err(_) if mem.check(v, 1, Access::Read).is_ok() => Err(libc::ENAMETOOLONG),
                Err(_) => Err(libc::EFAULT),
            },
            ArgKind::InBuf(len) => check(mem, v, len_of(len, args), Access::Read),
            ArgKind::OutBuf { len, .. } => check(mem, v, len_of(len, args), Access::Write),
            ArgKind::In(s) => check(mem, v, s.size() as u64, Access::Read),
            ArgKind::Out(s) | ArgKind::InOut(s) => check(mem, v, s.size() as u64, Access::Write),
            ArgKind::Iovec { count, dir } if v != 0 => check_iovecs(mem, v, args[count], dir_access(dir)),
            ArgKind::Msghdr(dir) if v != 0 => check_msghdr(mem, v, dir),
            ArgKind::PollFds { count } => check(mem, v, args[count].saturating_mul(8), Access::Write),
            ArgKind::FdSet { nfds } => check(mem, v, args[nfds].min(1 << 20).div_ceil(64) * 8, Access::Write),
            ArgKind::SockLenPtr => check(mem, v, 4, Access::Write),
            ArgKind::SockAddrIn { len } => check(mem, v, args[len] & 0xffff_ffff, Access::Read),
            ArgKind::SockAddrOut { len } if v != 0 => {
                let lp = args[len];
                let mut b = [0u8; 4];
                if lp == 0 || mem.read(GuestAddr(lp), &mut b).is_err() {
                    Err(libc::EFAULT)
                } else {
                    check(mem, v, u32::from_le_bytes(b) as u64, Access::Write)
                }
            }
            ArgKind::GuestRange { len } => {
                let n = (args[len] + 0xfff) & !0xfff;
                if v & 0xfff != 0 {
                    Err(libc::EINVAL)
                } else if n > 0 && !mem.covers(v, v.saturating_add(n)) {
                    Err(libc::ENOMEM)
                } else {
                    Ok(())
                }
            }
            ArgKind::IoctlArg => match ioctl_arg(args[1] & 0xffff_ffff) {
                Some(Some((n, acc))) => check(mem, v, n, acc),
                Some(None) => Ok(()),
                None => Err(libc::ENOTTY),
            },
            ArgKind::FcntlArg => match fcntl_arg(args[1]) {
                Some(Some((n, acc))) => check(mem, v, n, acc),
                Some(None) => Ok(()),
                None => Err(libc::EINVAL),
            },
            ArgKind::StrArray | ArgKind::Special if v != 0 => return Err(Ok(a.name)),
            _ => Ok(()),
        };
        if let Err(e) = r {
            return refuse(e);
        }
    }
    Ok(())
}

/// Runs a checked syscall on the host. A new descriptor that leads into trapbox is closed
/// again and the call fails with EACCES.
pub fn host_syscall(desc: &SyscallDesc, args: &[u64; 6]) -> i64 {
    let ret = raw_syscall(desc.nr, args);
    if desc.ret == Ret::Fd && ret >= 0 && leads_into_trapbox(ret) {
        // SAFETY: `ret` is the descriptor the guest's call just created; nothing else holds it.
        unsafe { libc::close(ret as i32) };
        return -(libc::EACCES as i64);
    }
    ret
}

/// A raw host syscall, returning `-errno` on failure like the kernel ABI.
pub fn raw_syscall(nr: u64, a: &[u64; 6]) -> i64 {
    // SAFETY: callers have checked every pointer argument against guest memory (or pass
    // trapbox-owned buffers); the call acts on trapbox's process exactly as it would on the
    // guest's, since they are one process.
    let r = unsafe { libc::syscall(nr as libc::c_long, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r == -1 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as i64)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::abi::lookup_name;

    #[test]
    fn check_args_refuses_reserved_fds() {
        let mut fds = FdGuard::default();
        fds.reserve(900);
        let mem = AddressSpace::new();
        let close = lookup_name("close").unwrap();
        assert_eq!(check_args(close, &[900, 0, 0, 0, 0, 0], &mem, &fds), Checked::Refuse(libc::EBADF));
        assert_eq!(check_args(close, &[3, 0, 0, 0, 0, 0], &mem, &fds), Checked::Ok);
        let dup2 = lookup_name("dup2").unwrap();
        assert_eq!(check_args(dup2, &[1, 900, 0, 0, 0, 0], &mem, &fds), Checked::Refuse(libc::EBADF));
    }

    #[test]
    fn check_args_refuses_pointers_outside_guest() {
        let fds = FdGuard::default();
        let mem = AddressSpace::new();
        let read = lookup_name("read").unwrap();
        assert_eq!(check_args(read, &[0, 0x1000, 10, 0, 0, 0], &mem, &fds), Checked::Refuse(libc::EFAULT));
        // NULL goes through: the kernel reports EFAULT itself.
        assert_eq!(check_args(read, &[0, 0, 10, 0, 0, 0], &mem, &fds), Checked::Ok);
        let openat = lookup_name("openat").unwrap();
        assert_eq!(check_args(openat, &[0, 0x2000, 0, 0, 0, 0], &mem, &fds), Checked::Refuse(libc::EFAULT));
    }

    #[test]
    fn check_args_unknown_ioctl_is_enotty() {
        let fds = FdGuard::default();
        let mem = AddressSpace::new();
        let ioctl = lookup_name("ioctl").unwrap();
        assert_eq!(check_args(ioctl, &[1, 0xdead, 0, 0, 0, 0], &mem, &fds), Checked::Refuse(libc::ENOTTY));
    }
}
