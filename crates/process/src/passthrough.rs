//! Forwarding a syscall to the host, staged by the ABI table's walk (invariants 3 and 4).
//!
//! [`stage`] runs the one walk over the call's arguments (`abi::walk`): pointer-bearing values
//! are copied into trapbox's memory and checked there, flat buffers are checked to be guest
//! memory with the right rights, and every descriptor the call names — in a register, a
//! pollfd array, an fd_set, an SCM_RIGHTS message, a sigevent — is checked against trapbox's
//! own. The result, a [`Staged`] call, runs on the host without the process lock held; then
//! [`Staged::finish`] writes what the kernel put in the copies back to guest memory and vets
//! the descriptors the call brought in. NULL pointers go through unchanged: the kernel treats
//! them as "none" or fails with EFAULT, and trapbox never maps page zero.

use crate::abi::walk::{self, FdAt, Memory, Plan, Policy, Stop};
use crate::abi::{ioctl, Dir, Ret, SyscallDesc, Sysno as S};
use crate::fds::{leads_into_trapbox, FdGuard};
use crate::mem::{Access, AddressSpace};
use crate::signals;
use trapbox_trap::GuestAddr;

/// Why a check failed: the errno for the guest.
pub type Errno = i32;

impl Memory for AddressSpace {
    fn read(&self, addr: u64, out: &mut [u8]) -> bool {
        AddressSpace::read(self, GuestAddr(addr), out).is_ok()
    }
    fn allows(&self, addr: u64, len: u64, dir: Dir) -> bool {
        let access = match dir {
            Dir::In => Access::Read,
            Dir::Out => Access::Write,
        };
        self.check(addr, len, access).is_ok()
    }
    fn covers(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len).is_some_and(|end| AddressSpace::covers(self, addr, end))
    }
}

/// The signals no signal set the kernel gets for the guest may hold (see
/// [`signals::host_owned`]).
pub fn policy() -> Policy {
    Policy { reserved_signals: signals::host_owned_mask() }
}

/// What staging concluded.
#[derive(Debug)]
pub enum Checked {
    /// Ready for the host.
    Ok(Box<Staged>),
    /// Refuse with this errno.
    Refuse(Errno),
    /// An argument kind the walk cannot vouch for (trapbox says so once).
    Unsupported(&'static str),
    /// Something the box refuses (an ioctl request, an fcntl command, a socket option): fail
    /// with `errno`, and tell the user (see [`super::refusals`]).
    Refused {
        /// What.
        what: walk::Refused,
        /// The guest's errno.
        errno: Errno,
        /// Why.
        why: &'static str,
    },
}

/// POLLNVAL: what poll reports for a descriptor that is not open.
const POLLNVAL: u16 = 0x20;

/// A checked call: the registers the host kernel gets and the copies they point at.
#[derive(Debug)]
pub struct Staged {
    desc: &'static SyscallDesc,
    plan: Plan,
    regs: [u64; 6],
    /// Pollfd entries naming trapbox's descriptors: polled as -1, reported POLLNVAL.
    nval: Vec<(usize, usize)>,
    /// For an open: the kernel's name of the file opened.
    resolved: Option<String>,
}

/// Stages a syscall the ABI table marks `Host`. `is_guest_thread` says whether a thread id a
/// sigevent names is one of the guest's.
pub fn stage(
    desc: &'static SyscallDesc,
    args: &[u64; 6],
    mem: &AddressSpace,
    fds: &FdGuard,
    is_guest_thread: &dyn Fn(i32) -> bool,
) -> Checked {
    let mut staged = Box::new(Staged { desc, plan: Plan::default(), regs: [0; 6], nval: Vec::new(), resolved: None });
    let plan = &mut staged.plan;
    match walk::plan_into(plan, desc, args, mem, &policy()) {
        Ok(()) => {}
        Err(Stop::Errno(e)) => return Checked::Refuse(e),
        Err(Stop::Unsupported(arg)) => return Checked::Unsupported(arg),
        Err(Stop::Refused { what, errno, why }) => return Checked::Refused { what, errno, why },
    };
    let mut nval = Vec::new();
    for at in &plan.fds {
        match *at {
            FdAt::Named(fd) if fds.is_reserved(fd) => return Checked::Refuse(libc::EBADF),
            FdAt::Polled { copy, entry } => {
                let b = &plan.copies[copy].bytes[entry * 8..entry * 8 + 4];
                if fds.is_reserved(i32::from_le_bytes(b.try_into().expect("4 bytes")).into()) {
                    nval.push((copy, entry));
                }
            }
            FdAt::Named(_) => {}
        }
    }
    let me = super::mem::own_pid();
    for &pid in &plan.pids {
        // A thread of this process that is not the guest's is trapbox's own (a helper): the
        // guest cannot name it, as if it did not exist.
        if pid > 0
            && pid != me
            && !is_guest_thread(pid)
            && std::path::Path::new(&format!("/proc/self/task/{pid}")).exists()
        {
            return Checked::Refuse(libc::ESRCH);
        }
    }
    for u in &plan.signals {
        let bad_sig = !(1..=signals::NSIG as i32).contains(&u.sig) || signals::host_owned(u.sig);
        if bad_sig || u.tid.is_some_and(|t| !is_guest_thread(t)) {
            return Checked::Refuse(libc::EINVAL);
        }
    }
    let mut regs_in = *args;
    if !nval.is_empty() {
        for &(copy, entry) in &nval {
            plan.copies[copy].bytes[entry * 8..entry * 8 + 4].copy_from_slice(&(-1i32).to_le_bytes());
        }
        // A closed descriptor makes poll return at once: so does one of trapbox's.
        match desc.sysno {
            S::poll => regs_in[2] = 0,
            _ => {
                let zero = plan.copies.len();
                plan.copies.push(walk::Copy { guest: 0, bytes: vec![0; 16], back: walk::Back::Nothing });
                plan.args[2] = Some(walk::Value::Copy(zero));
            }
        }
    }
    staged.regs = plan.registers(&regs_in);
    staged.nval = nval;
    Checked::Ok(staged)
}

impl Staged {
    /// See [`S::never_waits`].
    pub fn never_waits(&self) -> bool {
        self.desc.sysno.never_waits()
    }

    /// The syscall number.
    pub fn nr(&self) -> u64 {
        self.desc.nr
    }

    /// Whether the call returns a new descriptor.
    pub fn returns_fd(&self) -> bool {
        self.desc.ret == Ret::Fd || (self.desc.nr == libc::SYS_ioctl as u64 && ioctl::returns_fd(&self.regs))
    }

    /// The syscall's name.
    pub fn name(&self) -> &'static str {
        self.desc.name
    }

    /// The syscall, typed.
    pub fn sysno(&self) -> S {
        self.desc.sysno
    }

    /// Argument `i` as the guest gave it.
    pub fn arg(&self, i: usize) -> u64 {
        match self.plan.args[i] {
            Some(walk::Value::Raw(v)) => v,
            _ => self.regs[i],
        }
    }

    /// For an open: the kernel's name of the file it opened.
    pub fn resolved(&self) -> Option<&str> {
        self.resolved.as_deref()
    }

    /// The path the call names, as the kernel got it (the copy), made absolute against its
    /// directory descriptor when relative.
    pub fn guest_path(&self) -> Option<String> {
        let (dirfd, at) = match self.desc.sysno {
            S::open | S::creat | S::readlink => (libc::AT_FDCWD, 0),
            S::openat | S::openat2 | S::readlinkat => (self.regs[0] as i32, 1),
            _ => return None,
        };
        let walk::Value::Copy(c) = self.plan.args[at]? else { return None };
        let bytes = &self.plan.copies[c].bytes;
        let path = String::from_utf8_lossy(&bytes[..bytes.len().saturating_sub(1)]).into_owned();
        if path.starts_with('/') {
            return Some(path);
        }
        let base = if dirfd == libc::AT_FDCWD {
            std::env::current_dir().ok()?
        } else {
            std::fs::read_link(format!("/proc/self/fd/{dirfd}")).ok()?
        };
        Some(format!("{}/{path}", base.display()))
    }

    /// Makes the host call (without the process lock: it may block).
    pub fn run(&mut self) -> i64 {
        match self.desc.sysno {
            S::open | S::openat | S::openat2 | S::creat => self.open_vetted(),
            _ => raw_syscall(self.desc.nr, &self.regs),
        }
    }

    /// An open, made so that the descriptor it returns is vetted before its number exists:
    /// another guest thread may use any number at any moment, so a descriptor leading into
    /// trapbox must never be open under a number at all. The file is first opened with O_PATH
    /// (a descriptor that can be neither read, written nor mapped), checked by what it is
    /// ([`leads_into_trapbox`]), and only then reopened with the guest's flags through its
    /// `/proc/self/fd` link, which reaches exactly that file. A creating open first tries to
    /// create the file exclusively and without following a final symlink: a new file is the
    /// guest's own.
    fn open_vetted(&mut self) -> i64 {
        let r = self.regs;
        // (dirfd, path, flags, mode) of each form; openat2's flags and mode live in `how`.
        let how = |off: usize| match self.plan.args[2] {
            Some(walk::Value::Copy(c)) => {
                let b = &self.plan.copies[c].bytes;
                u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
            }
            _ => 0,
        };
        let (dirfd, path, flags, mode) = match self.desc.sysno {
            S::open => (libc::AT_FDCWD as i64 as u64, r[0], r[1], r[2]),
            S::creat => {
                (libc::AT_FDCWD as i64 as u64, r[0], (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64, r[1])
            }
            S::openat => (r[0], r[1], r[2], r[3]),
            _ => (r[0], r[1], how(0), how(8)),
        };
        let flags = flags as i32;
        let open = |flags: i32| -> i64 {
            match self.desc.sysno {
                S::openat2 => {
                    let mut h = [0u64; 3];
                    h[0] = flags as u32 as u64;
                    h[1] = mode;
                    h[2] = how(16);
                    raw_syscall(libc::SYS_openat2 as u64, &[dirfd, path, h.as_ptr() as u64, 24, 0, 0])
                }
                _ => raw_syscall(libc::SYS_openat as u64, &[dirfd, path, flags as u32 as u64, mode, 0, 0]),
            }
        };
        // O_TMPFILE makes a new unnamed file: the guest's own.
        if flags & libc::O_TMPFILE == libc::O_TMPFILE {
            return open(flags);
        }
        let create = flags & libc::O_CREAT != 0;
        if create {
            if flags & libc::O_EXCL != 0 {
                // Never follows a final symlink and never opens what exists.
                return open(flags);
            }
            match open(flags | libc::O_EXCL | libc::O_NOFOLLOW) {
                r if r != -(libc::EEXIST as i64) => return r,
                _ => {}
            }
        }
        let probe = libc::O_PATH | libc::O_CLOEXEC | (flags & (libc::O_NOFOLLOW | libc::O_DIRECTORY));
        let p = open(probe);
        if p < 0 {
            // A dangling symlink to create through: opened as asked; `finish` still vets it.
            return if create && p == -(libc::ENOENT as i64) { open(flags) } else { p };
        }
        let close = |fd: i64| {
            // SAFETY: a descriptor this function opened and nobody else holds.
            unsafe { libc::close(fd as i32) };
        };
        if leads_into_trapbox(p) {
            close(p);
            return -(libc::EACCES as i64);
        }
        self.resolved = std::fs::read_link(format!("/proc/self/fd/{p}")).ok().map(|t| t.to_string_lossy().into_owned());
        if flags & libc::O_PATH != 0 {
            return p;
        }
        if self.resolved.as_deref().is_some_and(own_proc_file) {
            // A /proc file of the guest's own that trapbox writes (`selfview`): the probe's
            // number is all the guest gets here; `Process::finish_host` puts the file under
            // it. (trapbox is not dumpable, so the kernel would refuse a user who is not root
            // the file itself.)
            let cloexec = if flags & libc::O_CLOEXEC != 0 { libc::FD_CLOEXEC } else { 0 };
            // SAFETY: F_SETFD on the probe this function opened.
            unsafe { libc::fcntl(p as i32, libc::F_SETFD, cloexec) };
            return p;
        }
        let link = std::ffi::CString::new(format!("/proc/self/fd/{p}")).expect("no NUL in a number");
        let reopen = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW);
        let fd = raw_syscall(
            libc::SYS_openat as u64,
            &[libc::AT_FDCWD as i64 as u64, link.as_ptr() as u64, reopen as u32 as u64, mode, 0, 0],
        );
        if fd < 0 {
            close(p);
            return fd;
        }
        // The guest gets the number the probe took (the lowest free one, as natively): the
        // file replaces the probe under it in one dup3.
        let cloexec = (flags & libc::O_CLOEXEC) as u64;
        let r = raw_syscall(libc::SYS_dup3 as u64, &[fd as u64, p as u64, cloexec, 0, 0, 0]);
        close(fd);
        if r < 0 {
            close(p);
            return r;
        }
        p
    }

    /// Completes the call that returned `ret`: received descriptors that lead into trapbox
    /// are closed (their number becomes -1 in the guest's copy of the message), what the
    /// kernel wrote in the copies goes to guest memory, descriptors trapbox stood in for read
    /// POLLNVAL. Returns the guest's result: EFAULT if guest memory for the results is gone.
    pub fn finish(mut self: Box<Self>, mut ret: i64, mem: &AddressSpace) -> i64 {
        ret = vet_new_fd(self.returns_fd(), ret);
        for &c in &self.plan.received {
            for off in walk::scm_rights_at(&self.plan.copies[c].bytes) {
                let b = &mut self.plan.copies[c].bytes[off..off + 4];
                let fd = i32::from_le_bytes((&*b).try_into().expect("4 bytes"));
                if ret >= 0 && leads_into_trapbox(fd.into()) {
                    // SAFETY: `fd` arrived with this call; the guest has not seen its number.
                    unsafe { libc::close(fd) };
                    b.copy_from_slice(&(-1i32).to_le_bytes());
                }
            }
        }
        if ret >= 0 {
            for &(copy, entry) in &self.nval {
                let at = entry * 8 + 6;
                self.plan.copies[copy].bytes[at..at + 2].copy_from_slice(&POLLNVAL.to_le_bytes());
            }
            ret += self.nval.len() as i64;
        }
        for (addr, bytes) in self.plan.copy_back(ret) {
            if mem.write(GuestAddr(addr), &bytes).is_err() {
                return -(libc::EFAULT as i64);
            }
        }
        ret
    }
}

/// Whether `path` (the kernel's name of an open file) is one of the /proc files of this
/// process that trapbox writes for the guest (`selfview`).
fn own_proc_file(path: &str) -> bool {
    let me = super::mem::own_pid();
    let ours = |t: i32| std::path::Path::new(&format!("/proc/self/task/{t}")).exists();
    matches!(crate::selfview::parse(path, me, &ours), Some(crate::selfview::ProcPath::File(_)))
}

/// A call that returned a new descriptor: one that leads into trapbox is closed again and the
/// call fails with EACCES.
fn vet_new_fd(returns_fd: bool, ret: i64) -> i64 {
    if returns_fd && ret >= 0 && leads_into_trapbox(ret) {
        // SAFETY: `ret` is the descriptor the guest's call just created; nothing else holds it.
        unsafe { libc::close(ret as i32) };
        return -(libc::EACCES as i64);
    }
    ret
}

/// A raw host syscall, returning `-errno` on failure like the kernel ABI.
pub fn raw_syscall(nr: u64, a: &[u64; 6]) -> i64 {
    // The instruction itself, not libc's variadic wrapper: the kernel's result is the
    // guest's as it stands (-errno included), with no detour through errno, and a host call
    // is a seventh cheaper.
    let ret: i64;
    // SAFETY: callers have checked every pointer argument against guest memory (or pass
    // trapbox-owned buffers); the call acts on trapbox's process exactly as it would on the
    // guest's, since they are one process. No call made here creates a thread or process on
    // this stack (clone, fork and vfork are emulated). `syscall` clobbers RCX and R11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    ret
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::lookup_name;

    fn staged(name: &str, args: [u64; 6], fds: &FdGuard) -> Result<(), Errno> {
        let mem = AddressSpace::new();
        match stage(lookup_name(name).unwrap(), &args, &mem, fds, &|_| true) {
            Checked::Ok(_) => Ok(()),
            Checked::Refuse(e) => Err(e),
            Checked::Unsupported(_) => Err(libc::ENOSYS),
            Checked::Refused { errno, .. } => Err(errno),
        }
    }

    #[test]
    fn stage_refuses_reserved_fds() {
        let mut fds = FdGuard::default();
        fds.reserve(900);
        assert_eq!(staged("close", [900, 0, 0, 0, 0, 0], &fds), Err(libc::EBADF));
        assert_eq!(staged("close", [3, 0, 0, 0, 0, 0], &fds), Ok(()));
        assert_eq!(staged("dup2", [1, 900, 0, 0, 0, 0], &fds), Err(libc::EBADF));
    }

    #[test]
    fn stage_refuses_pointers_outside_guest() {
        let fds = FdGuard::default();
        assert_eq!(staged("read", [0, 0x1000, 10, 0, 0, 0], &fds), Err(libc::EFAULT));
        // NULL goes through: the kernel reports EFAULT itself.
        assert_eq!(staged("read", [0, 0, 10, 0, 0, 0], &fds), Ok(()));
        assert_eq!(staged("openat", [0, 0x2000, 0, 0, 0, 0], &fds), Err(libc::EFAULT));
    }

    #[test]
    fn stage_unknown_ioctl_is_enotty() {
        assert_eq!(staged("ioctl", [1, 0xdead, 0, 0, 0, 0], &FdGuard::default()), Err(libc::ENOTTY));
    }

    #[test]
    fn policy_reserves_trapbox_signals() {
        let p = policy();
        assert_ne!(p.reserved_signals & signals::bit(libc::SIGSEGV), 0);
        assert_ne!(p.reserved_signals & signals::bit(33), 0);
        assert_eq!(p.reserved_signals & signals::bit(libc::SIGUSR1), 0);
    }
}
