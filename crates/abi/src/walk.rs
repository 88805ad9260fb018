//! The one walk over a syscall's arguments by their kinds in the ABI table.
//!
//! For a call about to go to the host kernel, [`plan`] finds everything the kernel will touch
//! and decides, argument by argument, how it reaches the kernel:
//!
//! - **copied** into trapbox's own memory: everything trapbox must interpret to vouch for the
//!   call — paths and strings, pointer tables (iovec arrays, msghdrs and the sockaddrs and
//!   control data they name), value-result lengths (`socklen_t *`), descriptor sets, signal
//!   sets, sigevents, socket options. Each is read from guest memory once, checked, and the
//!   kernel gets the copy; what the kernel writes back goes to the guest afterwards
//!   ([`Plan::copy_back`]). A second guest thread changing the original meanwhile changes
//!   nothing the kernel sees (the double-fetch class of issue 20), and a length the kernel
//!   reads is the length trapbox checked (a length of 0 is no exemption: the kernel's own
//!   value-result length lives in trapbox's copy).
//! - **direct**: flat data the kernel reads or writes in place (a `read` buffer, the buffers
//!   an iovec names, a `struct stat`). They are checked to lie in guest memory with the right
//!   rights; they hold no pointer and no length the kernel reads, and guest memory lives where
//!   trapbox never allocates, so whatever the guest does to them meanwhile can only give it
//!   EFAULT or its own bytes.
//!
//! The same walk tells the recorder which guest bytes a call wrote ([`Plan::written`]); the
//! sizes cannot drift between checking, copying and recording because there is one walk.

use super::ioctl::{self, IoctlArg, IoctlHandling};
use super::{ArgKind, Dir, Len, Struct, SyscallDesc};

/// Longest path (and other string) the kernel reads, with its NUL.
pub const PATH_MAX: usize = 4096;
/// Most iovecs in one call.
pub const IOV_MAX: u64 = 1024;
/// Most bytes trapbox copies for one value the guest sizes (an address, control data, a
/// socket option); the kernel's own limits are lower.
pub const COPY_MAX: u64 = 64 << 10;
/// Most entries in a pollfd array (the kernel refuses more than RLIMIT_NOFILE).
pub const POLL_MAX: u64 = 1 << 20;
/// Bytes of `struct msghdr`, and of `struct mmsghdr` (a msghdr and its `msg_len`).
const MSGHDR: usize = 56;
const MMSGHDR: usize = 64;

/// Guest memory as the walk sees it.
pub trait Memory {
    /// Reads `out.len()` bytes at `addr`; false if any of them is not readable guest memory.
    fn read(&self, addr: u64, out: &mut [u8]) -> bool;
    /// Whether the kernel may access `[addr, addr+len)` in direction `dir` (read it for
    /// [`Dir::In`], write it for [`Dir::Out`]) as the guest's memory.
    fn allows(&self, addr: u64, len: u64, dir: Dir) -> bool;
    /// Whether all of `[addr, addr+len)` is guest memory, whatever its rights (the ranges
    /// madvise, mlock or msync act on without reading them).
    fn covers(&self, addr: u64, len: u64) -> bool;
}

/// Why a call does not go to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Fail it with this errno (what the kernel would say for the guest's view).
    Errno(i32),
    /// An argument the walk cannot vouch for; the call is refused with ENOSYS and a warning.
    Unsupported(&'static str),
    /// The box itself refuses what the call asks (not the kernel): failed with `errno`, and
    /// the user is told (see `process::refusals`).
    Refused {
        /// What is refused.
        what: Refused,
        /// The guest's errno.
        errno: i32,
        /// Why, for the user.
        why: &'static str,
    },
}

/// What the box refuses inside a call it otherwise passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// An ioctl request, by number, and its name if the box knows it.
    Ioctl(u32, Option<&'static str>),
    /// An fcntl command.
    Fcntl(i32),
    /// A socket option: level and name.
    SockOpt(i32, i32),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Ioctl(_, Some(name)) => write!(f, "ioctl {name}"),
            Refused::Ioctl(r, None) => write!(f, "ioctl {r:#x}"),
            Refused::Fcntl(cmd) => write!(f, "fcntl command {cmd}"),
            Refused::SockOpt(level, name) => write!(f, "socket option {name} at level {level}"),
        }
    }
}

/// Why a request the box does not know is refused.
const UNKNOWN: &str = "trapbox does not know what its argument holds";

/// What the caller decides about signals and threads a call names (the walk knows only
/// the ABI).
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    /// Signals that are trapbox's own: removed from every signal set the kernel gets (a
    /// guest mask, wait set or signalfd never holds them).
    pub reserved_signals: u64,
}

/// A register value for the kernel: the guest's, or the address of one of the plan's copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// Passed unchanged.
    Raw(u64),
    /// The address of copy N.
    Copy(usize),
}

/// What of a copy goes back to the guest after the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Back {
    /// Nothing: the kernel only read it.
    Nothing,
    /// All of it.
    All,
    /// These (offset, length) fields.
    Fields(&'static [(usize, usize)]),
    /// These fields of each `stride`-byte entry (an mmsghdr array).
    EachFields {
        /// Entry size.
        stride: usize,
        /// (offset, length) within an entry.
        fields: &'static [(usize, usize)],
    },
    /// The first `min(cap, n)` units of `unit` bytes, where `n` is the `width`-byte length at
    /// `offset` of copy `copy` after the call (a value-result length the kernel updated).
    Prefix {
        /// The copy holding the length.
        copy: usize,
        /// Its offset.
        offset: usize,
        /// 4 or 8 bytes.
        width: u8,
        /// The guest's capacity, in units.
        cap: u64,
        /// Bytes per unit of the length (1 but for SO_GET_FILTER's 8-byte instructions).
        unit: u8,
    },
    /// The 2-byte field at `offset` of each `stride`-byte entry (pollfd revents).
    Strided {
        /// Entry size.
        stride: usize,
        /// Field offset.
        offset: usize,
    },
}

/// A value copied between guest and trapbox memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// The guest address it stands for.
    pub guest: u64,
    /// Its bytes: the guest's (as read once), or zeros for a buffer only the kernel fills.
    pub bytes: Vec<u8>,
    /// What goes back.
    pub back: Back,
}

/// How much of a direct output buffer the kernel wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// All of it, when the call succeeded.
    All,
    /// The first `ret` bytes (`read`, `getrandom`).
    Ret,
    /// `ret` bytes across the direct buffers of iovec group N, in order.
    Spread(usize),
}

/// Guest memory the kernel uses in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Direct {
    /// Start.
    pub addr: u64,
    /// Length.
    pub len: u64,
    /// Whether the kernel reads or writes it.
    pub dir: Dir,
    /// For output: how much it wrote.
    pub written: Written,
}

/// Where a descriptor appears in a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdAt {
    /// An argument register (or a sigevent's netlink socket, an SCM_RIGHTS entry): a
    /// descriptor of trapbox's there is EBADF.
    Named(i64),
    /// Entry N of the pollfd array in copy C: a descriptor of trapbox's there is polled as a
    /// closed one (POLLNVAL).
    Polled {
        /// The copy.
        copy: usize,
        /// The entry.
        entry: usize,
    },
}

/// A signal a call asks the kernel to send later (a sigevent), and to which thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalUse {
    /// The signal.
    pub sig: i32,
    /// SIGEV_THREAD_ID's thread.
    pub tid: Option<i32>,
}

/// Everything one call makes the kernel touch, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The argument registers.
    pub args: [Option<Value>; 6],
    /// Values copied into trapbox's memory.
    pub copies: Vec<Copy>,
    /// Pointers inside copies that must point at other copies: (copy, offset, target).
    pub fixups: Vec<(usize, usize, usize)>,
    /// Guest buffers used in place.
    pub direct: Vec<Direct>,
    /// Descriptors named.
    pub fds: Vec<FdAt>,
    /// Signals a sigevent names.
    pub signals: Vec<SignalUse>,
    /// Process and thread ids the call names (the caller refuses trapbox's own threads).
    pub pids: Vec<i32>,
    /// Copies holding control data the kernel fills (recvmsg): their SCM_RIGHTS descriptors
    /// are new in the guest after the call.
    pub received: Vec<usize>,
    groups: usize,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn len_of(len: Len, a: &[u64; 6]) -> u64 {
    match len {
        Len::Arg(i) => a[i],
        Len::Fixed(n) => n as u64,
        Len::ArgTimes(i, n) => a[i].saturating_mul(n as u64),
        Len::ArgPlus(i, n) => a[i].saturating_add(n as u64),
    }
}

/// Reads `len` bytes at `addr` once, or fails with EFAULT.
fn fetch(mem: &dyn Memory, addr: u64, len: u64) -> Result<Vec<u8>, Stop> {
    let len = usize::try_from(len).map_err(|_| Stop::Errno(libc::EFAULT))?;
    let mut b = vec![0u8; len];
    if len > 0 && !mem.read(addr, &mut b) {
        return Err(Stop::Errno(libc::EFAULT));
    }
    Ok(b)
}

/// A NUL-terminated string at `addr`, NUL included: read page by page (the string may end
/// just before an unmapped page), at most PATH_MAX bytes.
fn fetch_str(mem: &dyn Memory, addr: u64) -> Result<Vec<u8>, Stop> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < PATH_MAX {
        let chunk = ((at | 0xfff) + 1 - at).min((PATH_MAX - out.len()) as u64) as usize;
        let mut b = vec![0u8; chunk];
        if !mem.read(at, &mut b) {
            return Err(Stop::Errno(libc::EFAULT));
        }
        if let Some(n) = b.iter().position(|c| *c == 0) {
            out.extend_from_slice(&b[..=n]);
            return Ok(out);
        }
        out.extend_from_slice(&b);
        at += chunk as u64;
    }
    Err(Stop::Errno(libc::ENAMETOOLONG))
}

impl Plan {
    fn copy(&mut self, guest: u64, bytes: Vec<u8>, back: Back) -> usize {
        self.copies.push(Copy { guest, bytes, back });
        self.copies.len() - 1
    }

    fn direct(&mut self, mem: &dyn Memory, addr: u64, len: u64, dir: Dir, written: Written) -> Result<(), Stop> {
        // NULL goes through unchanged: the kernel treats it as "none" or fails with EFAULT
        // itself, and guest memory never includes page zero.
        if addr == 0 || len == 0 {
            return Ok(());
        }
        if !mem.allows(addr, len, dir) {
            return Err(Stop::Errno(libc::EFAULT));
        }
        self.direct.push(Direct { addr, len, dir, written });
        Ok(())
    }

    /// An iovec array of `count` entries at `addr`: copied (the kernel reads its pointers
    /// and lengths), the buffers it names direct. Returns the copy.
    fn iovecs(&mut self, mem: &dyn Memory, addr: u64, count: u64, dir: Dir) -> Result<usize, Stop> {
        if count > IOV_MAX {
            return Err(Stop::Errno(libc::EINVAL));
        }
        let bytes = fetch(mem, addr, count * 16)?;
        let group = self.groups;
        self.groups += 1;
        for i in 0..count as usize {
            let (base, len) = (u64_at(&bytes, i * 16), u64_at(&bytes, i * 16 + 8));
            // The kernel sums the lengths as ssize_t and refuses more.
            if len > isize::MAX as u64 {
                return Err(Stop::Errno(libc::EINVAL));
            }
            self.direct(mem, base, len, dir, Written::Spread(group))?;
        }
        Ok(self.copy(addr, bytes, Back::Nothing))
    }

    /// A msghdr at `base` of copy `m` (its guest bytes already there), for sendmsg (`In`) or
    /// recvmsg (`Out`): the sockaddr, iovec array and control data it names are copied or
    /// checked and its pointers fixed up to the copies.
    fn msghdr(&mut self, mem: &dyn Memory, m: usize, base: usize, dir: Dir) -> Result<(), Stop> {
        let h = self.copies[m].bytes[base..base + MSGHDR].to_vec();
        let (name, namelen) = (u64_at(&h, 0), u64::from(u32_at(&h, 8)));
        let (iov, iovlen) = (u64_at(&h, 16), u64_at(&h, 24));
        let (control, controllen) = (u64_at(&h, 32), u64_at(&h, 40));
        if name != 0 {
            let c = match dir {
                Dir::In => {
                    if namelen > COPY_MAX {
                        return Err(Stop::Errno(libc::EINVAL));
                    }
                    let bytes = fetch(mem, name, namelen)?;
                    self.copy(name, bytes, Back::Nothing)
                }
                Dir::Out => {
                    if !mem.allows(name, namelen, Dir::Out) {
                        return Err(Stop::Errno(libc::EFAULT));
                    }
                    let cap = namelen.min(COPY_MAX);
                    self.copies[m].bytes[base + 8..base + 12].copy_from_slice(&(cap as u32).to_le_bytes());
                    let back = Back::Prefix { copy: m, offset: base + 8, width: 4, cap: namelen, unit: 1 };
                    self.copy(name, vec![0; cap as usize], back)
                }
            };
            self.fixups.push((m, base, c));
        }
        if iov != 0 {
            if iovlen > IOV_MAX {
                return Err(Stop::Errno(libc::EMSGSIZE));
            }
            let c = self.iovecs(mem, iov, iovlen, dir)?;
            self.fixups.push((m, base + 16, c));
        }
        if control != 0 && controllen > 0 {
            let c = match dir {
                Dir::In => {
                    if controllen > COPY_MAX {
                        return Err(Stop::Errno(libc::ENOBUFS));
                    }
                    let bytes = fetch(mem, control, controllen)?;
                    for fd in scm_rights(&bytes) {
                        self.fds.push(FdAt::Named(fd.into()));
                    }
                    self.copy(control, bytes, Back::Nothing)
                }
                Dir::Out => {
                    if !mem.allows(control, controllen, Dir::Out) {
                        return Err(Stop::Errno(libc::EFAULT));
                    }
                    let cap = controllen.min(COPY_MAX);
                    self.copies[m].bytes[base + 40..base + 48].copy_from_slice(&cap.to_le_bytes());
                    let back = Back::Prefix { copy: m, offset: base + 40, width: 8, cap: controllen, unit: 1 };
                    let c = self.copy(control, vec![0; cap as usize], back);
                    self.received.push(c);
                    c
                }
            };
            self.fixups.push((m, base + 32, c));
        }
        Ok(())
    }

    /// The copy standing for the `socklen_t` at `ptr`, made once however many arguments name
    /// it (the kernel reads it before the sockaddr it sizes and writes it after).
    fn socklen(&mut self, mem: &dyn Memory, ptr: u64) -> Result<usize, Stop> {
        if let Some(i) = self.copies.iter().position(|c| c.guest == ptr && c.bytes.len() == 4) {
            return Ok(i);
        }
        if !mem.allows(ptr, 4, Dir::Out) {
            return Err(Stop::Errno(libc::EFAULT));
        }
        let bytes = fetch(mem, ptr, 4)?;
        Ok(self.copy(ptr, bytes, Back::All))
    }

    /// A buffer the kernel fills up to the value-result length at `len_ptr`.
    /// A buffer the kernel fills, sized by the `socklen_t` at `len_ptr` in units of `unit`
    /// bytes, which the kernel updates.
    fn value_result(&mut self, mem: &dyn Memory, addr: u64, len_ptr: u64, unit: u8) -> Result<usize, Stop> {
        if len_ptr == 0 {
            return Err(Stop::Errno(libc::EFAULT));
        }
        let l = self.socklen(mem, len_ptr)?;
        let cap = u32_at(&self.copies[l].bytes, 0);
        if (cap as i32) < 0 {
            return Err(Stop::Errno(libc::EINVAL));
        }
        let (cap, bytes) = (u64::from(cap), u64::from(unit));
        if !mem.allows(addr, cap * bytes, Dir::Out) {
            return Err(Stop::Errno(libc::EFAULT));
        }
        // The kernel writes no more than the copy it is told about.
        let given = cap.min(COPY_MAX / bytes);
        self.copies[l].bytes.copy_from_slice(&(given as u32).to_le_bytes());
        let back = Back::Prefix { copy: l, offset: 0, width: 4, cap, unit };
        Ok(self.copy(addr, vec![0; (given * bytes) as usize], back))
    }

    /// A classic BPF program for a socket (`struct sock_fprog`: a 16-bit instruction count and
    /// a pointer to the 8-byte instructions), copied with the instructions it points at.
    fn sock_fprog(&mut self, mem: &dyn Memory, addr: u64, optlen: u64) -> Result<usize, Stop> {
        const BPF_MAXINSNS: u64 = 4096;
        if optlen != 16 {
            return Err(Stop::Errno(libc::EINVAL));
        }
        let prog = fetch(mem, addr, 16)?;
        let (len, filter) = (u64::from(u16::from_le_bytes([prog[0], prog[1]])), u64_at(&prog, 8));
        let c = self.copy(addr, prog, Back::Nothing);
        if len == 0 || len > BPF_MAXINSNS {
            return Err(Stop::Errno(libc::EINVAL));
        }
        let k = self.copy(filter, fetch(mem, filter, len * 8)?, Back::Nothing);
        self.fixups.push((c, 8, k));
        Ok(c)
    }

    /// A sigset the kernel reads as a mask or a set to wait for: copied without trapbox's own
    /// signals.
    fn sigset(&mut self, mem: &dyn Memory, addr: u64, policy: &Policy) -> Result<usize, Stop> {
        let mut bytes = fetch(mem, addr, 8)?;
        let set = u64_at(&bytes, 0) & !policy.reserved_signals;
        bytes.copy_from_slice(&set.to_le_bytes());
        Ok(self.copy(addr, bytes, Back::Nothing))
    }

    /// A struct sigevent (timer_create, mq_notify): the signal it names and, for
    /// SIGEV_THREAD (mq_notify), the netlink socket in `sigev_signo` and the 32-byte cookie
    /// at `sival_ptr` the kernel copies.
    fn sigevent(&mut self, mem: &dyn Memory, addr: u64) -> Result<usize, Stop> {
        const SIGEV_SIGNAL: i32 = 0;
        const SIGEV_THREAD: i32 = 2;
        const SIGEV_THREAD_ID: i32 = 4;
        let bytes = fetch(mem, addr, Struct::Sigevent.size() as u64)?;
        let (value, signo, notify) = (u64_at(&bytes, 0), u32_at(&bytes, 8) as i32, u32_at(&bytes, 12) as i32);
        let c = self.copy(addr, bytes, Back::Nothing);
        match notify & !SIGEV_THREAD_ID {
            SIGEV_SIGNAL => {
                let tid = (notify & SIGEV_THREAD_ID != 0).then(|| u32_at(&self.copies[c].bytes, 16) as i32);
                self.signals.push(SignalUse { sig: signo, tid });
            }
            SIGEV_THREAD => {
                self.fds.push(FdAt::Named(signo.into()));
                if value != 0 {
                    let cookie = fetch(mem, value, 32)?;
                    let k = self.copy(value, cookie, Back::Nothing);
                    self.fixups.push((c, 0, k));
                }
            }
            _ => {}
        }
        Ok(c)
    }
}

/// Offsets of the descriptors in the SCM_RIGHTS messages of control data `c`.
pub fn scm_rights_at(c: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0usize;
    // struct cmsghdr: cmsg_len (u64), cmsg_level (i32), cmsg_type (i32), data.
    while at + 16 <= c.len() {
        let len = u64_at(c, at);
        if len < 16 || len > (c.len() - at) as u64 {
            break;
        }
        let len = len as usize;
        if u32_at(c, at + 8) as i32 == libc::SOL_SOCKET && u32_at(c, at + 12) as i32 == libc::SCM_RIGHTS {
            out.extend((at + 16..at + len).step_by(4).filter(|o| o + 4 <= at + len));
        }
        at += (len + 7) & !7;
    }
    out
}

/// The descriptors in the SCM_RIGHTS messages of control data `c`.
pub fn scm_rights(c: &[u8]) -> Vec<i32> {
    scm_rights_at(c).into_iter().map(|o| u32_at(c, o) as i32).collect()
}

/// fcntl commands the libc crate does not name, and F_SETOWN_EX's owner kind for a thread.
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;
const F_OWNER_TID: u32 = 0;

/// `fcntl` commands trapbox forwards, with the flat memory the third argument points to
/// (F_SETSIG and F_SETOWN_EX are walked apart: they name a signal and a thread).
fn fcntl_arg(cmd: u64) -> Option<Option<(u64, Dir)>> {
    Some(match cmd as i32 {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC | libc::F_GETFD | libc::F_SETFD | libc::F_GETFL | libc::F_SETFL => None,
        libc::F_GETLK | libc::F_OFD_GETLK => Some((32, Dir::Out)),
        libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW => Some((32, Dir::In)),
        libc::F_GETOWN | libc::F_SETOWN | libc::F_GETPIPE_SZ | libc::F_SETPIPE_SZ => None,
        libc::F_ADD_SEALS | libc::F_GET_SEALS | libc::F_GETLEASE | libc::F_SETLEASE => None,
        // F_NOTIFY's signal is SIGIO or what F_SETSIG chose (checked there), sent to the
        // process.
        F_GETSIG | libc::F_NOTIFY => None,
        F_GETOWN_EX => Some((8, Dir::Out)),
        _ => return None,
    })
}

/// A socket option whose value is not known to be flat: refused with ENOPROTOOPT.
fn sockopt_refused(level: i32, name: i32) -> Stop {
    Stop::Refused {
        what: Refused::SockOpt(level, name),
        errno: libc::ENOPROTOOPT,
        why: "its value may hold pointers or descriptors trapbox does not check",
    }
}

/// Socket options whose value is flat (no pointer, no descriptor): `(level, optname)`. Other
/// options (BPF filters hold a pointer and descriptors, netfilter's replace tables hold
/// pointers the kernel writes through) are refused with ENOPROTOOPT.
pub fn sockopt_is_flat(level: i32, name: i32) -> bool {
    const SOL_TCP: i32 = 6;
    const SOL_UDP: i32 = 17;
    const SOL_IPV6: i32 = 41;
    const SOL_NETLINK: i32 = 270;
    const SOL_ALG: i32 = 279;
    const SOL_PACKET: i32 = 263;
    match level {
        // Everything but the BPF attachments (SO_ATTACH_FILTER 26, SO_ATTACH_BPF 50,
        // SO_ATTACH_REUSEPORT_CBPF/EBPF 51/52), TCP's and the peer's security context
        // queries that return descriptors or pointer-holding structs (SO_PEERPIDFD 77).
        libc::SOL_SOCKET => !matches!(name, 26 | 50 | 51 | 52 | 77),
        // IP and IPv6: all flat but the netfilter tables (IPT/IP6T/ARPT/EBT, 64 and up).
        libc::IPPROTO_IP | SOL_IPV6 => name < 64,
        // TCP: all flat but TCP_ZEROCOPY_RECEIVE (35), whose struct names guest addresses.
        SOL_TCP => name != 35,
        SOL_UDP | SOL_NETLINK | SOL_ALG => true,
        // Packet sockets: all flat but PACKET_FANOUT_DATA (22: a BPF program or descriptor).
        SOL_PACKET => name != 22,
        _ => false,
    }
}

/// Socket options that carry a classic BPF program (`struct sock_fprog`).
const SO_ATTACH_FILTER: i32 = 26;
const SO_ATTACH_REUSEPORT_CBPF: i32 = 51;

/// Walks a call's arguments (see the module comment). `a` are the guest's registers.
pub fn plan(desc: &SyscallDesc, a: &[u64; 6], mem: &dyn Memory, policy: &Policy) -> Result<Plan, Stop> {
    let mut p = Plan::default();
    plan_into(&mut p, desc, a, mem, policy)?;
    Ok(p)
}

/// [`plan`] into `p`, an empty plan where its caller keeps it (passthrough's, boxed with the
/// rest of the staged call: a plan is a few hundred bytes, and each move of it was a copy).
pub fn plan_into(
    p: &mut Plan,
    desc: &SyscallDesc,
    a: &[u64; 6],
    mem: &dyn Memory,
    policy: &Policy,
) -> Result<(), Stop> {
    debug_assert!(*p == Plan::default(), "a plan starts empty");
    let errno = |e: i32| Err(Stop::Errno(e));
    for (i, arg) in desc.args.iter().enumerate() {
        let v = a[i];
        let mut value = Value::Raw(v);
        match arg.kind {
            ArgKind::Fd => p.fds.push(FdAt::Named(v as i32 as i64)),
            ArgKind::Pid => p.pids.push(v as i32),
            ArgKind::DirFd if v as i32 != libc::AT_FDCWD => p.fds.push(FdAt::Named(v as i32 as i64)),
            ArgKind::Path | ArgKind::CStr if v != 0 => {
                let s = fetch_str(mem, v)?;
                value = Value::Copy(p.copy(v, s, Back::Nothing));
            }
            ArgKind::InBuf(len) => p.direct(mem, v, len_of(len, a), Dir::In, Written::All)?,
            ArgKind::OutBuf { len, ret_is_len } => {
                let w = if ret_is_len { Written::Ret } else { Written::All };
                p.direct(mem, v, len_of(len, a), Dir::Out, w)?
            }
            ArgKind::In(Struct::Sigset) if v != 0 => value = Value::Copy(p.sigset(mem, v, policy)?),
            ArgKind::In(Struct::Sigevent) if v != 0 => value = Value::Copy(p.sigevent(mem, v)?),
            ArgKind::In(s) => p.direct(mem, v, s.size() as u64, Dir::In, Written::All)?,
            ArgKind::Out(s) | ArgKind::InOut(s) => p.direct(mem, v, s.size() as u64, Dir::Out, Written::All)?,
            ArgKind::Iovec { count, dir } if v != 0 => value = Value::Copy(p.iovecs(mem, v, a[count], dir)?),
            ArgKind::Msghdr(dir) if v != 0 => {
                if !mem.allows(v, MSGHDR as u64, dir) {
                    return errno(libc::EFAULT);
                }
                let back = if dir == Dir::Out { Back::Fields(&[(8, 4), (40, 8), (48, 4)]) } else { Back::Nothing };
                let m = p.copy(v, fetch(mem, v, MSGHDR as u64)?, back);
                p.msghdr(mem, m, 0, dir)?;
                value = Value::Copy(m);
            }
            ArgKind::Mmsghdr { count, dir } if v != 0 => {
                // At most UIO_MAXIOV messages; the kernel clamps vlen to that itself.
                let n = a[count].min(IOV_MAX);
                if !mem.allows(v, n * MMSGHDR as u64, Dir::Out) {
                    return errno(libc::EFAULT);
                }
                // What the kernel writes per entry: msg_len, and for recvmmsg the msghdr's lengths
                // and flags.
                const OUT: &[(usize, usize)] = &[(8, 4), (40, 8), (48, 4), (56, 4)];
                const IN: &[(usize, usize)] = &[(56, 4)];
                let fields = if dir == Dir::Out { OUT } else { IN };
                let m = p.copy(v, fetch(mem, v, n * MMSGHDR as u64)?, Back::EachFields { stride: MMSGHDR, fields });
                for k in 0..n as usize {
                    p.msghdr(mem, m, k * MMSGHDR, dir)?;
                }
                value = Value::Copy(m);
            }
            ArgKind::PollFds { count } if v != 0 => {
                let n = a[count];
                if n > POLL_MAX {
                    return errno(libc::EINVAL);
                }
                if !mem.allows(v, n * 8, Dir::Out) {
                    return errno(libc::EFAULT);
                }
                let c = p.copy(v, fetch(mem, v, n * 8)?, Back::Strided { stride: 8, offset: 6 });
                p.fds.extend((0..n as usize).map(|entry| FdAt::Polled { copy: c, entry }));
                value = Value::Copy(c);
            }
            ArgKind::FdSet { nfds } if v != 0 => {
                let nfds = a[nfds] as i32;
                if nfds < 0 {
                    return errno(libc::EINVAL);
                }
                let bytes = (nfds as u64).min(1 << 20).div_ceil(64) * 8;
                if !mem.allows(v, bytes, Dir::Out) {
                    return errno(libc::EFAULT);
                }
                let set = fetch(mem, v, bytes)?;
                for (w, word) in set.chunks_exact(8).enumerate() {
                    let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                    p.fds.extend((0..64).filter(|b| word & (1 << b) != 0).map(|b| FdAt::Named((w * 64 + b) as i64)));
                }
                value = Value::Copy(p.copy(v, set, Back::All));
            }
            ArgKind::SockLenPtr if v != 0 => value = Value::Copy(p.socklen(mem, v)?),
            ArgKind::SockAddrIn { len } if v != 0 => {
                let n = a[len] & 0xffff_ffff;
                if n > COPY_MAX {
                    return errno(libc::EINVAL);
                }
                value = Value::Copy(p.copy(v, fetch(mem, v, n)?, Back::Nothing));
            }
            ArgKind::SockAddrOut { len } if v != 0 => value = Value::Copy(p.value_result(mem, v, a[len], 1)?),
            ArgKind::SockOptOut { len } if v != 0 => {
                let unit = match (a[1] as i32, a[2] as i32) {
                    // SO_GET_FILTER: the attached classic BPF program, its length counted in
                    // 8-byte instructions.
                    (libc::SOL_SOCKET, SO_ATTACH_FILTER) => 8,
                    (level, name) if sockopt_is_flat(level, name) => 1,
                    (level, name) => return Err(sockopt_refused(level, name)),
                };
                value = Value::Copy(p.value_result(mem, v, a[len], unit)?);
            }
            ArgKind::SockOptIn { len } => {
                let n = a[len] & 0xffff_ffff;
                if matches!((a[1] as i32, a[2] as i32), (libc::SOL_SOCKET, SO_ATTACH_FILTER | SO_ATTACH_REUSEPORT_CBPF))
                {
                    value = Value::Copy(p.sock_fprog(mem, v, n)?);
                } else if !sockopt_is_flat(a[1] as i32, a[2] as i32) {
                    return Err(sockopt_refused(a[1] as i32, a[2] as i32));
                } else if v != 0 {
                    if n > COPY_MAX {
                        return errno(libc::EINVAL);
                    }
                    value = Value::Copy(p.copy(v, fetch(mem, v, n)?, Back::Nothing));
                }
            }
            ArgKind::SigsetPack if v != 0 => {
                // pselect6's {const sigset_t *ss; size_t ss_len}: both read once.
                let mut pack = fetch(mem, v, 16)?;
                let (set, size) = (u64_at(&pack, 0), u64_at(&pack, 8));
                if set != 0 && size != 8 {
                    return errno(libc::EINVAL);
                }
                let c = p.copy(v, std::mem::take(&mut pack), Back::Nothing);
                if set != 0 {
                    let s = p.sigset(mem, set, policy)?;
                    p.fixups.push((c, 0, s));
                }
                value = Value::Copy(c);
            }
            ArgKind::OpenHow { size } if v != 0 => {
                let n = a[size];
                if n < Struct::OpenHow.size() as u64 {
                    return errno(libc::EINVAL);
                }
                if n > 4096 {
                    return errno(libc::E2BIG);
                }
                value = Value::Copy(p.copy(v, fetch(mem, v, n)?, Back::Nothing));
            }
            ArgKind::FutexWaiters { count } => {
                // The kernel refuses more than 128; the words it compares must be the guest's.
                const ENTRY: u64 = 24;
                let n = a[count];
                if n > 128 {
                    return errno(libc::EINVAL);
                }
                let b = fetch(mem, v, n * ENTRY)?;
                for i in 0..n as usize {
                    let word = u64_at(&b, i * ENTRY as usize + 8);
                    if !word.is_multiple_of(4) {
                        return errno(libc::EINVAL);
                    }
                    if !mem.allows(word, 4, Dir::In) {
                        return errno(libc::EFAULT);
                    }
                }
                value = Value::Copy(p.copy(v, b, Back::Nothing));
            }
            ArgKind::ShmctlBuf => {
                // struct shmid_ds is 112 bytes; shminfo and shm_info are smaller.
                const SHMID_DS: u64 = 112;
                match a[1] as i32 & !0x100 {
                    libc::IPC_SET => p.direct(mem, v, SHMID_DS, Dir::In, Written::All)?,
                    libc::IPC_STAT | libc::IPC_INFO | 13 | 14 | 15 => {
                        p.direct(mem, v, SHMID_DS, Dir::Out, Written::All)?
                    }
                    _ => {}
                }
            }
            ArgKind::GuestRange { len } => {
                let n = a[len].checked_add(0xfff).ok_or(Stop::Errno(libc::ENOMEM))? & !0xfff;
                if v & 0xfff != 0 {
                    return errno(libc::EINVAL);
                }
                if n > 0 && !mem.covers(v, n) {
                    return errno(libc::ENOMEM);
                }
            }
            ArgKind::IoctlArg => match ioctl::lookup(a[1]).map(|i| (i.name, i.handling)) {
                Some((_, IoctlHandling::Pass { arg: IoctlArg::Mem(shape, dir), .. })) => {
                    p.direct(mem, v, shape.size(), dir, Written::All)?
                }
                Some((_, IoctlHandling::Pass { arg: IoctlArg::Value, .. })) => {}
                // A signal the kernel sends for the guest: checked by the caller.
                Some((_, IoctlHandling::Pass { arg: IoctlArg::Signal, .. })) => {
                    p.signals.push(SignalUse { sig: v as i32, tid: None })
                }
                // The process that gets SIGIO: copied, and named for the caller's check (a
                // racing thread cannot change it after).
                Some((_, IoctlHandling::Pass { arg: IoctlArg::Owner, .. })) => {
                    let owner = fetch(mem, v, 4)?;
                    p.pids.push((u32_at(&owner, 0) as i32).abs());
                    value = Value::Copy(p.copy(v, owner, Back::Nothing));
                }
                Some((name, IoctlHandling::Refuse(why))) => {
                    return Err(Stop::Refused {
                        what: Refused::Ioctl(a[1] as u32, Some(name)),
                        errno: libc::EPERM,
                        why,
                    })
                }
                None => {
                    return Err(Stop::Refused {
                        what: Refused::Ioctl(a[1] as u32, None),
                        errno: libc::ENOTTY,
                        why: UNKNOWN,
                    })
                }
            },
            // The signal F_SETSIG makes the kernel send for I/O readiness is named for the
            // caller's check (0: SIGIO); F_SETOWN_EX's owner is copied, and a thread it names
            // is named for the caller's check too (a racing thread cannot change it after).
            ArgKind::FcntlArg if a[1] as i32 == F_SETSIG && v != 0 => {
                p.signals.push(SignalUse { sig: v as i32, tid: None })
            }
            ArgKind::FcntlArg if a[1] as i32 == F_SETSIG => {}
            ArgKind::FcntlArg if a[1] as i32 == F_SETOWN_EX => {
                let owner = fetch(mem, v, 8)?;
                if u32_at(&owner, 0) == F_OWNER_TID {
                    p.pids.push(u32_at(&owner, 4) as i32);
                }
                value = Value::Copy(p.copy(v, owner, Back::Nothing));
            }
            ArgKind::FcntlArg if matches!(a[1] as i32, libc::F_SETOWN) && v != 0 => {
                // The process (or negated group) that gets SIGIO, named for the caller's check.
                p.pids.push((v as i32).abs())
            }
            ArgKind::FcntlArg => match fcntl_arg(a[1]) {
                Some(Some((n, dir))) => p.direct(mem, v, n, dir, Written::All)?,
                Some(None) => {}
                None => {
                    return Err(Stop::Refused { what: Refused::Fcntl(a[1] as i32), errno: libc::EINVAL, why: UNKNOWN })
                }
            },
            ArgKind::StrArray | ArgKind::Special if v != 0 => return Err(Stop::Unsupported(arg.name)),
            _ => {}
        }
        p.args[i] = Some(value);
    }
    Ok(())
}

impl Plan {
    /// The registers the kernel gets, once the copies are where they will stay.
    pub fn registers(&mut self, guest: &[u64; 6]) -> [u64; 6] {
        let addrs: Vec<u64> = self.copies.iter().map(|c| c.bytes.as_ptr() as u64).collect();
        for &(c, off, target) in &self.fixups {
            self.copies[c].bytes[off..off + 8].copy_from_slice(&addrs[target].to_le_bytes());
        }
        std::array::from_fn(|i| match self.args[i] {
            Some(Value::Copy(c)) => addrs[c],
            Some(Value::Raw(v)) => v,
            None => guest[i],
        })
    }

    /// What goes back to guest memory after the call returned `ret` (only on success):
    /// (guest address, bytes).
    pub fn copy_back(&self, ret: i64) -> Vec<(u64, Vec<u8>)> {
        if ret < 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in &self.copies {
            let b = &c.bytes;
            match c.back {
                Back::Nothing => {}
                Back::All => out.push((c.guest, b.clone())),
                Back::Fields(fields) => {
                    for &(off, len) in fields {
                        out.push((c.guest + off as u64, b[off..off + len].to_vec()));
                    }
                }
                Back::EachFields { stride, fields } => {
                    for base in (0..b.len()).step_by(stride) {
                        for &(off, len) in fields {
                            let at = base + off;
                            out.push((c.guest + at as u64, b[at..at + len].to_vec()));
                        }
                    }
                }
                Back::Prefix { copy, offset, width, cap, unit } => {
                    let src = &self.copies[copy].bytes;
                    let n = if width == 4 { u64::from(u32_at(src, offset)) } else { u64_at(src, offset) };
                    let n = n.min(cap).saturating_mul(u64::from(unit)).min(b.len() as u64) as usize;
                    out.push((c.guest, b[..n].to_vec()));
                }
                Back::Strided { stride, offset } => {
                    for base in (0..b.len()).step_by(stride) {
                        out.push((c.guest + (base + offset) as u64, b[base + offset..base + offset + 2].to_vec()));
                    }
                }
            }
        }
        out
    }

    /// The guest ranges a call that returned `ret` wrote: direct output buffers (as much as
    /// the kernel reports writing) and what [`Plan::copy_back`] writes. For a plan made after
    /// the call (the recorder's), copies' lengths are the ones the kernel left in guest memory.
    pub fn written(&self, ret: i64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self.copy_back(ret).into_iter().map(|(a, b)| (a, b.len() as u64)).collect();
        out.extend(self.used(Dir::Out, ret));
        out
    }

    /// The direct guest buffers in direction `dir`, as far as a call that returned `ret` used
    /// them: iovec buffers hold the first `ret` bytes in order, `read`-like buffers `ret`.
    pub fn used(&self, dir: Dir, ret: i64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut left: Vec<u64> = vec![ret.max(0) as u64; self.groups];
        for d in self.direct.iter().filter(|d| d.dir == dir) {
            let n = match d.written {
                // A fixed output the kernel may fill even when the call fails (nanosleep's
                // remaining time on EINTR).
                Written::All => d.len,
                _ if ret < 0 => 0,
                Written::Ret => d.len.min(ret as u64),
                Written::Spread(g) => {
                    let n = d.len.min(left[g]);
                    left[g] -= n;
                    n
                }
            };
            if n > 0 {
                out.push((d.addr, n));
            }
        }
        out
    }

    /// Descriptors in the control data the kernel filled (SCM_RIGHTS of a recvmsg).
    pub fn received_fds(&self, ret: i64) -> Vec<i32> {
        if ret < 0 {
            return Vec::new();
        }
        self.received.iter().flat_map(|&c| scm_rights(&self.copies[c].bytes)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup_name;
    use std::collections::BTreeMap;

    /// Guest memory for tests: byte-addressed, every listed byte readable and writable.
    #[derive(Default)]
    struct Fake(BTreeMap<u64, u8>);

    impl Fake {
        fn put(&mut self, addr: u64, bytes: &[u8]) {
            for (i, b) in bytes.iter().enumerate() {
                self.0.insert(addr + i as u64, *b);
            }
        }
        fn zeros(&mut self, addr: u64, len: u64) {
            self.put(addr, &vec![0; len as usize]);
        }
    }

    impl Memory for Fake {
        fn read(&self, addr: u64, out: &mut [u8]) -> bool {
            for (i, o) in out.iter_mut().enumerate() {
                match self.0.get(&(addr + i as u64)) {
                    Some(b) => *o = *b,
                    None => return false,
                }
            }
            true
        }
        fn allows(&self, addr: u64, len: u64, _: Dir) -> bool {
            (addr..addr + len).all(|a| self.0.contains_key(&a))
        }
        fn covers(&self, addr: u64, len: u64) -> bool {
            self.allows(addr, len, Dir::In)
        }
    }

    fn le64(v: &[u64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn plan_of(name: &str, a: [u64; 6], mem: &Fake) -> Result<Plan, Stop> {
        plan(lookup_name(name).unwrap(), &a, mem, &Policy { reserved_signals: 1 << 40 })
    }

    #[test]
    fn iovecs_are_copied_and_their_buffers_checked() {
        let mut m = Fake::default();
        m.zeros(0x1000, 64);
        m.put(0x2000, &le64(&[0x1000, 16, 0x1020, 8]));
        let p = plan_of("writev", [1, 0x2000, 2, 0, 0, 0], &m).unwrap();
        assert_eq!(p.copies.len(), 1);
        assert_eq!(p.copies[0].bytes, le64(&[0x1000, 16, 0x1020, 8]));
        assert_eq!(p.args[1], Some(Value::Copy(0)));
        assert_eq!(p.direct.len(), 2);
        // An iovec naming memory that is not the guest's: EFAULT before the kernel sees it.
        m.put(0x2000, &le64(&[0xdead_0000, 16]));
        assert_eq!(plan_of("writev", [1, 0x2000, 1, 0, 0, 0], &m), Err(Stop::Errno(libc::EFAULT)));
        assert_eq!(plan_of("writev", [1, 0x2000, 5000, 0, 0, 0], &m), Err(Stop::Errno(libc::EINVAL)));
    }

    #[test]
    fn the_kernel_gets_the_copy_not_the_guests_iovecs() {
        let mut m = Fake::default();
        m.zeros(0x1000, 64);
        m.put(0x2000, &le64(&[0x1000, 16]));
        let mut p = plan_of("readv", [0, 0x2000, 1, 0, 0, 0], &m).unwrap();
        let regs = p.registers(&[0, 0x2000, 1, 0, 0, 0]);
        assert_ne!(regs[1], 0x2000);
        assert_eq!(regs[1], p.copies[0].bytes.as_ptr() as u64);
        // A racing thread changing the guest's array afterwards changes nothing the kernel
        // reads: the plan holds its own bytes.
        m.put(0x2000, &le64(&[0xdead_0000, 1 << 20]));
        assert_eq!(u64_at(&p.copies[0].bytes, 0), 0x1000);
        // readv wrote 20 bytes across the buffers: all of the first, none of a second.
        assert_eq!(p.written(12), vec![(0x1000, 12)]);
    }

    #[test]
    fn recvfrom_length_is_read_once_and_bounds_the_copy() {
        let mut m = Fake::default();
        m.zeros(0x1000, 256); // data buffer
        m.zeros(0x3000, 16); // sockaddr buffer: 16 bytes of guest memory
        m.put(0x4000, &0u32.to_le_bytes()); // *addrlen = 0 at call time
        let mut p = plan_of("recvfrom", [3, 0x1000, 256, 0, 0x3000, 0x4000], &m).unwrap();
        let regs = p.registers(&[3, 0x1000, 256, 0, 0x3000, 0x4000]);
        // The kernel's addrlen and sockaddr are trapbox's copies: 0 bytes of room.
        assert_ne!(regs[4], 0x3000);
        assert_ne!(regs[5], 0x4000);
        let sa = p.copies.iter().find(|c| c.guest == 0x3000).unwrap();
        assert_eq!(sa.bytes.len(), 0);
        // Raising *addrlen after the check reaches nothing.
        m.put(0x4000, &4096u32.to_le_bytes());
        assert_eq!(p.copies.iter().find(|c| c.guest == 0x4000).unwrap().bytes, 0u32.to_le_bytes());
        // A capacity larger than the guest's buffer is caught at the check.
        m.put(0x4000, &4096u32.to_le_bytes());
        assert_eq!(plan_of("recvfrom", [3, 0x1000, 256, 0, 0x3000, 0x4000], &m), Err(Stop::Errno(libc::EFAULT)));
    }

    #[test]
    fn value_result_copy_back_writes_what_the_kernel_reported() {
        let mut m = Fake::default();
        m.zeros(0x3000, 128);
        m.put(0x4000, &128u32.to_le_bytes());
        let mut p = plan_of("accept4", [3, 0x3000, 0x4000, 0, 0, 0], &m).unwrap();
        p.registers(&[3, 0x3000, 0x4000, 0, 0, 0]);
        // The kernel wrote a 16-byte address and set the length.
        let l = p.copies.iter().position(|c| c.guest == 0x4000).unwrap();
        p.copies[l].bytes.copy_from_slice(&16u32.to_le_bytes());
        let back = p.copy_back(5);
        assert!(back.contains(&(0x4000, 16u32.to_le_bytes().to_vec())));
        assert!(back.iter().any(|(a, b)| *a == 0x3000 && b.len() == 16));
        assert!(p.copy_back(-1).is_empty());
    }

    #[test]
    fn a_socket_filter_is_copied_with_its_instructions() {
        let mut m = Fake::default();
        m.put(0x1000, &[7u8; 3 * 8]); // three instructions
        let mut prog = 3u64.to_le_bytes().to_vec();
        prog.extend_from_slice(&0x1000u64.to_le_bytes());
        m.put(0x2000, &prog);
        let args = [3, libc::SOL_SOCKET as u64, 26, 0x2000, 16, 0];
        let mut p = plan_of("setsockopt", args, &m).unwrap();
        let regs = p.registers(&args);
        let hdr = p.copies.iter().find(|c| c.guest == 0x2000).unwrap();
        assert_eq!(regs[3], hdr.bytes.as_ptr() as u64);
        let insns = p.copies.iter().find(|c| c.guest == 0x1000).unwrap();
        assert_eq!(insns.bytes, vec![7u8; 24]);
        assert_eq!(u64_at(&hdr.bytes, 8), insns.bytes.as_ptr() as u64, "the copy points at the copied program");
        // The kernel insists on the struct's size; a program it could not read is EFAULT.
        assert_eq!(plan_of("setsockopt", [3, 1, 26, 0x2000, 8, 0], &m).err(), Some(Stop::Errno(libc::EINVAL)));
        let mut far = 3u64.to_le_bytes().to_vec();
        far.extend_from_slice(&0x9000u64.to_le_bytes());
        m.put(0x3000, &far);
        assert_eq!(plan_of("setsockopt", [3, 1, 26, 0x3000, 16, 0], &m).err(), Some(Stop::Errno(libc::EFAULT)));
    }

    #[test]
    fn so_get_filter_counts_its_length_in_instructions() {
        let mut m = Fake::default();
        m.zeros(0x1000, 4 * 8);
        m.put(0x2000, &4u32.to_le_bytes());
        let args = [3, libc::SOL_SOCKET as u64, 26, 0x1000, 0x2000, 0];
        let mut p = plan_of("getsockopt", args, &m).unwrap();
        p.registers(&args);
        let buf = p.copies.iter().position(|c| c.guest == 0x1000).unwrap();
        assert_eq!(p.copies[buf].bytes.len(), 32, "room for four 8-byte instructions");
        // The kernel attached program has two instructions.
        let l = p.copies.iter().position(|c| c.guest == 0x2000).unwrap();
        p.copies[l].bytes.copy_from_slice(&2u32.to_le_bytes());
        let back = p.copy_back(0);
        assert!(back.iter().any(|(a, b)| *a == 0x1000 && b.len() == 16), "{back:?}");
        // Four instructions are 32 bytes the guest must own.
        m.zeros(0x5000, 16);
        m.put(0x6000, &4u32.to_le_bytes());
        assert_eq!(plan_of("getsockopt", [3, 1, 26, 0x5000, 0x6000, 0], &m).err(), Some(Stop::Errno(libc::EFAULT)));
    }

    #[test]
    fn fcntl_names_its_signal_and_owner_thread() {
        let mut m = Fake::default();
        let p = plan_of("fcntl", [3, F_SETSIG as u64, 36, 0, 0, 0], &m).unwrap();
        assert_eq!(p.signals, vec![SignalUse { sig: 36, tid: None }]);
        assert!(plan_of("fcntl", [3, F_SETSIG as u64, 0, 0, 0, 0], &m).unwrap().signals.is_empty());
        // F_SETOWN_EX with F_OWNER_TID 4242: copied, and the thread named.
        m.put(0x1000, &[0, 0, 0, 0, 0x92, 0x10, 0, 0]);
        let mut p = plan_of("fcntl", [3, 15, 0x1000, 0, 0, 0], &m).unwrap();
        assert_eq!(p.pids, vec![4242]);
        let regs = p.registers(&[3, 15, 0x1000, 0, 0, 0]);
        assert_ne!(regs[2], 0x1000, "the kernel reads trapbox's copy");
        // F_OWNER_PID names a process, not a thread.
        m.put(0x1000, &[1, 0, 0, 0, 0x92, 0x10, 0, 0]);
        assert!(plan_of("fcntl", [3, 15, 0x1000, 0, 0, 0], &m).unwrap().pids.is_empty());
    }

    #[test]
    fn msghdr_pointers_point_at_copies() {
        let mut m = Fake::default();
        m.zeros(0x1000, 64); // data
        m.put(0x2000, &le64(&[0x1000, 64])); // one iovec
        m.zeros(0x3000, 32); // name
        m.zeros(0x5000, 64); // control
        let mut hdr = le64(&[0x3000, 32, 0x2000, 1, 0x5000, 64]);
        hdr.extend_from_slice(&[0; 8]);
        m.put(0x6000, &hdr);
        let mut p = plan_of("recvmsg", [3, 0x6000, 0, 0, 0, 0], &m).unwrap();
        let regs = p.registers(&[3, 0x6000, 0, 0, 0, 0]);
        let h = p.copies.iter().find(|c| c.guest == 0x6000).unwrap();
        assert_eq!(regs[1], h.bytes.as_ptr() as u64);
        for (off, guest) in [(0, 0x3000), (16, 0x2000), (32, 0x5000)] {
            let target = p.copies.iter().find(|c| c.guest == guest).unwrap();
            assert_eq!(u64_at(&h.bytes, off), target.bytes.as_ptr() as u64, "field at {off}");
        }
        assert_eq!(p.received.len(), 1);
        // Only the length and flag fields go back into the guest's msghdr.
        let back = p.copy_back(0);
        let to_hdr: Vec<u64> = back.iter().map(|(a, _)| *a).filter(|a| (0x6000..0x6038).contains(a)).collect();
        assert_eq!(to_hdr, vec![0x6008, 0x6028, 0x6030]);
    }

    #[test]
    fn sendmsg_refuses_trapbox_descriptors_by_listing_them() {
        let mut m = Fake::default();
        // One SCM_RIGHTS message carrying descriptors 5 and 900.
        let mut ctl = Vec::new();
        ctl.extend_from_slice(&24u64.to_le_bytes());
        ctl.extend_from_slice(&(libc::SOL_SOCKET as u32).to_le_bytes());
        ctl.extend_from_slice(&(libc::SCM_RIGHTS as u32).to_le_bytes());
        ctl.extend_from_slice(&5u32.to_le_bytes());
        ctl.extend_from_slice(&900u32.to_le_bytes());
        m.put(0x5000, &ctl);
        let mut hdr = le64(&[0, 0, 0, 0, 0x5000, 24]);
        hdr.extend_from_slice(&[0; 8]);
        m.put(0x6000, &hdr);
        let p = plan_of("sendmsg", [3, 0x6000, 0, 0, 0, 0], &m).unwrap();
        assert!(p.fds.contains(&FdAt::Named(5)) && p.fds.contains(&FdAt::Named(900)));
    }

    #[test]
    fn signal_sets_lose_trapbox_signals() {
        let mut m = Fake::default();
        m.put(0x1000, &u64::MAX.to_le_bytes());
        let p = plan_of("ppoll", [0, 0, 0, 0x1000, 8, 0], &m).unwrap();
        let c = p.copies.iter().find(|c| c.guest == 0x1000).unwrap();
        assert_eq!(u64_at(&c.bytes, 0), !(1u64 << 40));
    }

    #[test]
    fn sigevent_names_its_signal_and_cookie() {
        let mut m = Fake::default();
        let mut ev = vec![0u8; 64];
        ev[0..8].copy_from_slice(&0x7000u64.to_le_bytes());
        ev[8..12].copy_from_slice(&9u32.to_le_bytes()); // the netlink socket, for SIGEV_THREAD
        ev[12..16].copy_from_slice(&2u32.to_le_bytes()); // SIGEV_THREAD
        m.put(0x1000, &ev);
        // The cookie lies outside guest memory: EFAULT, never a read of trapbox memory.
        assert_eq!(plan_of("mq_notify", [3, 0x1000, 0, 0, 0, 0], &m), Err(Stop::Errno(libc::EFAULT)));
        m.zeros(0x7000, 32);
        let mut p = plan_of("mq_notify", [3, 0x1000, 0, 0, 0, 0], &m).unwrap();
        assert!(p.fds.contains(&FdAt::Named(9)));
        p.registers(&[3, 0x1000, 0, 0, 0, 0]);
        let c = p.copies.iter().find(|c| c.guest == 0x1000).unwrap();
        let cookie = p.copies.iter().find(|c| c.guest == 0x7000).unwrap();
        assert_eq!(u64_at(&c.bytes, 0), cookie.bytes.as_ptr() as u64);
        // SIGEV_SIGNAL with a thread id: named for the caller's check.
        ev[8..12].copy_from_slice(&33u32.to_le_bytes());
        ev[12..16].copy_from_slice(&4u32.to_le_bytes());
        ev[16..20].copy_from_slice(&4242u32.to_le_bytes());
        m.put(0x1000, &ev);
        let p = plan_of("timer_create", [1, 0x1000, 0x7000, 0, 0, 0], &m).unwrap();
        assert_eq!(p.signals, vec![SignalUse { sig: 33, tid: Some(4242) }]);
    }

    #[test]
    fn socket_options_with_pointers_are_refused() {
        let mut m = Fake::default();
        m.zeros(0x1000, 16);
        // SO_ATTACH_BPF names an eBPF program by descriptor (the bpf call is refused anyway);
        // SO_PEERPIDFD makes a descriptor.
        for name in [50, 77] {
            assert_eq!(
                plan_of("setsockopt", [3, libc::SOL_SOCKET as u64, name, 0x1000, 16, 0], &m),
                Err(sockopt_refused(libc::SOL_SOCKET, name as i32))
            );
        }
        assert!(
            plan_of("setsockopt", [3, libc::SOL_SOCKET as u64, libc::SO_REUSEADDR as u64, 0x1000, 4, 0], &m).is_ok()
        );
        // IPT_SO_SET_REPLACE.
        assert!(!sockopt_is_flat(libc::IPPROTO_IP, 64));
    }

    #[test]
    fn fd_sets_name_each_descriptor() {
        let mut m = Fake::default();
        let mut set = vec![0u8; 128];
        set[0] = 0b1001; // 0 and 3
        set[112] = 1 << 4; // 900
        m.put(0x1000, &set);
        let p = plan_of("select", [901, 0x1000, 0, 0, 0, 0], &m).unwrap();
        assert_eq!(p.fds, vec![FdAt::Named(0), FdAt::Named(3), FdAt::Named(900)]);
    }

    #[test]
    fn paths_are_copied_with_their_nul() {
        // The string crosses into the next page, and memory ends with that page (guest memory
        // is mapped in pages, so the walk may read the whole page the NUL is in).
        let mut m = Fake::default();
        m.put(0x1ffc, b"/tm");
        m.zeros(0x2000, 0x1000);
        m.put(0x1fff, b"p\0");
        let p = plan_of("chdir", [0x1ffc, 0, 0, 0, 0, 0], &m).unwrap();
        assert_eq!(p.copies[0].bytes, b"/tmp\0");
        assert_eq!(plan_of("chdir", [0x9000, 0, 0, 0, 0, 0], &m), Err(Stop::Errno(libc::EFAULT)));
    }

    #[test]
    fn written_clips_by_the_result() {
        let mut m = Fake::default();
        m.zeros(0x1000, 100);
        let p = plan_of("read", [0, 0x1000, 100, 0, 0, 0], &m).unwrap();
        assert_eq!(p.written(40), vec![(0x1000, 40)]);
        assert_eq!(p.written(-4), vec![]);
        // nanosleep writes the remaining time even when interrupted.
        m.zeros(0x2000, 32);
        let p = plan_of("nanosleep", [0x2000, 0x2010, 0, 0, 0, 0], &m).unwrap();
        assert_eq!(p.written(-(libc::EINTR as i64)), vec![(0x2010, 16)]);
    }
}
