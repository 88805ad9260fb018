//! strace's way of writing a syscall: arguments decoded by their kind in the ABI table,
//! strings quoted and cut at `-s`, flags by name, structs by field, output arguments only on
//! success, and the ` = result` column at 40.

use trapbox_abi::ioctl::{self, IoctlArg, IoctlHandling, Shape};
use trapbox_abi::{ArgKind, Dir, FlagSet, Ret, Struct, SyscallDesc, Sysno as S};
use trapbox_trap::{Guest, GuestAddr, Syscall};

use super::names;

/// How much to show.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// `-s N`: longest string shown before `...`.
    pub strsize: usize,
    /// `-y`: show the path behind each fd.
    pub fd_paths: bool,
}

impl Default for Style {
    fn default() -> Self {
        Style { strsize: 32, fd_paths: false }
    }
}

/// Hex as C's `%#x` prints it: `0` for zero, `0x...` otherwise.
pub fn chex(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// `NULL` or the address in hex.
pub fn addr(v: u64) -> String {
    if v == 0 {
        "NULL".into()
    } else {
        format!("{v:#x}")
    }
}

/// strace's C-style quoting: `\n`-style escapes, `\"`, `\\`, octal for the rest (three
/// digits when a digit follows), or `\xNN` for every byte when `hex` is set.
pub fn quote(bytes: &[u8], hex: bool) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for (i, &c) in bytes.iter().enumerate() {
        if hex {
            s.push_str(&format!("\\x{c:02x}"));
            continue;
        }
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            0x0b => s.push_str("\\v"),
            0x0c => s.push_str("\\f"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                s.push('\\');
                let next_digit = bytes.get(i + 1).is_some_and(|n| n.is_ascii_digit());
                if next_digit {
                    s.push_str(&format!("{:03o}", c));
                } else {
                    s.push_str(&format!("{c:o}"));
                }
            }
        }
    }
    s.push('"');
    s
}

/// A buffer of `len` bytes at `a`, cut at the string size.
fn buffer(g: &dyn Guest, a: u64, len: u64, st: &Style, hex: bool) -> String {
    if a == 0 {
        return "NULL".into();
    }
    let shown = (len as usize).min(st.strsize);
    let mut b = vec![0u8; shown];
    if g.read(GuestAddr(a), &mut b).is_err() {
        return addr(a);
    }
    let mut s = quote(&b, hex);
    if len as usize > shown {
        s.push_str("...");
    }
    s
}

/// A NUL-terminated string at `a`; `limit` cuts it (paths are shown whole).
fn cstring(g: &dyn Guest, a: u64, limit: Option<usize>) -> String {
    if a == 0 {
        return "NULL".into();
    }
    match g.read_cstr(GuestAddr(a), 4096) {
        Ok(b) => match limit {
            Some(l) if b.len() > l => format!("{}...", quote(&b[..l], false)),
            _ => quote(&b, false),
        },
        Err(_) => addr(a),
    }
}

fn read_n<const N: usize>(g: &dyn Guest, a: u64) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    g.read(GuestAddr(a), &mut b).ok()?;
    Some(b)
}

/// Fields of a struct read whole from the guest: the offsets are within its fixed size.
fn u64_at(b: &[u8], o: usize) -> u64 {
    trapbox_abi::le::u64_at(b, o).expect("field inside the struct")
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    trapbox_abi::le::u32_at(b, o).expect("field inside the struct")
}

/// A descriptor, with `-y` its path: `3</etc/passwd>`.
pub fn fd(v: u64, st: &Style) -> String {
    let n = v as i32;
    if st.fd_paths && n >= 0 {
        if let Ok(p) = std::fs::read_link(format!("/proc/self/fd/{n}")) {
            return format!("{n}<{}>", p.display());
        }
    }
    n.to_string()
}

fn makedev(rdev: u64) -> String {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    format!("makedev({}, {})", chex(major), chex(minor))
}

/// `struct stat` as strace shows it without -v.
fn stat(b: &[u8]) -> String {
    let mode = u32_at(b, 24) as u64;
    let ty = mode & 0o170000;
    if ty == 0o020000 || ty == 0o060000 {
        format!("{{st_mode={}, st_rdev={}, ...}}", names::st_mode(mode), makedev(u64_at(b, 40)))
    } else {
        format!("{{st_mode={}, st_size={}, ...}}", names::st_mode(mode), u64_at(b, 48) as i64)
    }
}

fn statx(b: &[u8]) -> String {
    let mode = u16::from_le_bytes([b[28], b[29]]) as u64;
    format!(
        "{{stx_mask={}, stx_attributes=0, stx_mode={}, stx_size={}, ...}}",
        names::flags(FlagSet::StatxMask, u32_at(b, 0) as u64),
        names::st_mode(mode),
        u64_at(b, 40)
    )
}

fn rlim(v: u64) -> String {
    if v == u64::MAX {
        "RLIM64_INFINITY".into()
    } else if v > 1024 && v.is_multiple_of(1024) {
        format!("{}*1024", v / 1024)
    } else {
        v.to_string()
    }
}

/// A signal set: `[INT TERM]`, or `~[...]` when most signals are in it.
pub fn sigset(mask: u64) -> String {
    let name = |s: i32| names::signal_name(s).trim_start_matches("SIG").to_string();
    let (inv, m) = if mask.count_ones() > 32 { ("~", !mask) } else { ("", mask) };
    let list: Vec<String> = (1..=64).filter(|s| m & (1u64 << (s - 1)) != 0).map(name).collect();
    format!("{inv}[{}]", list.join(" "))
}

fn sigaction(b: &[u8]) -> String {
    let handler = match u64_at(b, 0) {
        0 => "SIG_DFL".to_string(),
        1 => "SIG_IGN".to_string(),
        h => format!("{h:#x}"),
    };
    let flags = u64_at(b, 8);
    let mut s = format!(
        "{{sa_handler={handler}, sa_mask={}, sa_flags={}",
        sigset(u64_at(b, 24)),
        names::flags(FlagSet::SigAction, flags)
    );
    if flags & 0x0400_0000 != 0 {
        s.push_str(&format!(", sa_restorer={:#x}", u64_at(b, 16)));
    }
    s.push('}');
    s
}

fn utsname(b: &[u8]) -> String {
    let field = |i: usize| {
        let f = &b[i * 65..i * 65 + 65];
        let end = f.iter().position(|c| *c == 0).unwrap_or(65);
        quote(&f[..end], false)
    };
    format!("{{sysname={}, nodename={}, ...}}", field(0), field(1))
}

fn sockaddr(g: &dyn Guest, a: u64, len: u64) -> String {
    let len = len.min(128) as usize;
    let mut b = vec![0u8; len];
    if a == 0 {
        return "NULL".into();
    }
    if len < 2 || g.read(GuestAddr(a), &mut b).is_err() {
        return addr(a);
    }
    let fam = u16::from_le_bytes([b[0], b[1]]) as u64;
    let fam_s = names::flags(FlagSet::AddressFamily, fam);
    match fam {
        1 => {
            let p = &b[2..];
            let end = p.iter().position(|c| *c == 0).unwrap_or(p.len());
            format!("{{sa_family={fam_s}, sun_path={}}}", quote(&p[..end], false))
        }
        2 if len >= 8 => format!(
            "{{sa_family={fam_s}, sin_port=htons({}), sin_addr=inet_addr(\"{}.{}.{}.{}\")}}",
            u16::from_be_bytes([b[2], b[3]]),
            b[4],
            b[5],
            b[6],
            b[7]
        ),
        _ => format!("{{sa_family={fam_s}, ...}}"),
    }
}

fn struct_value(g: &dyn Guest, s: Struct, a: u64) -> String {
    if a == 0 {
        return "NULL".into();
    }
    let mut b = vec![0u8; s.size()];
    if g.read(GuestAddr(a), &mut b).is_err() {
        return addr(a);
    }
    match s {
        Struct::Stat => stat(&b),
        Struct::Statx => statx(&b),
        Struct::Timespec => format!("{{tv_sec={}, tv_nsec={}}}", u64_at(&b, 0) as i64, u64_at(&b, 8) as i64),
        Struct::Timespec2 => format!(
            "[{{tv_sec={}, tv_nsec={}}}, {{tv_sec={}, tv_nsec={}}}]",
            u64_at(&b, 0) as i64,
            u64_at(&b, 8) as i64,
            u64_at(&b, 16) as i64,
            u64_at(&b, 24) as i64
        ),
        Struct::Timeval => format!("{{tv_sec={}, tv_usec={}}}", u64_at(&b, 0) as i64, u64_at(&b, 8) as i64),
        Struct::Rlimit => format!("{{rlim_cur={}, rlim_max={}}}", rlim(u64_at(&b, 0)), rlim(u64_at(&b, 8))),
        Struct::Utsname => utsname(&b),
        Struct::Sigaction => sigaction(&b),
        Struct::Sigset => sigset(u64_at(&b, 0)),
        Struct::Int => format!("[{}]", u32_at(&b, 0) as i32),
        Struct::Int2 => format!("[{}, {}]", u32_at(&b, 0) as i32, u32_at(&b, 4) as i32),
        Struct::U64 => format!("[{}]", u64_at(&b, 0)),
        Struct::StackT => format!(
            "{{ss_sp={}, ss_flags={}, ss_size={}}}",
            addr(u64_at(&b, 0)),
            if u32_at(&b, 8) & 2 != 0 { "SS_DISABLE".to_string() } else { u32_at(&b, 8).to_string() },
            u64_at(&b, 16)
        ),
        _ => addr(a),
    }
}

fn iovecs(g: &dyn Guest, a: u64, count: u64, data_len: Option<u64>, st: &Style) -> String {
    if a == 0 {
        return "NULL".into();
    }
    let mut out = Vec::new();
    let mut left = data_len;
    for i in 0..count.min(1024) {
        let Some(b) = read_n::<16>(g, a + i * 16) else { return addr(a) };
        let (base, len) = (u64_at(&b, 0), u64_at(&b, 8));
        let show = left.map_or(len, |l| l.min(len));
        if let Some(l) = left.as_mut() {
            *l -= show;
        }
        if out.len() >= st.strsize {
            out.push("...".to_string());
            break;
        }
        out.push(format!("{{iov_base={}, iov_len={len}}}", buffer(g, base, show, st, false)));
    }
    format!("[{}]", out.join(", "))
}

fn getdents(g: &dyn Guest, a: u64, ret: i64) -> String {
    let mut n = 0;
    let mut off = 0u64;
    while (off as i64) < ret {
        let Some(h) = read_n::<19>(g, a + off) else { break };
        let reclen = u16::from_le_bytes([h[16], h[17]]) as u64;
        if reclen == 0 {
            break;
        }
        n += 1;
        off += reclen;
    }
    format!("{} /* {n} entries */", addr(a))
}

const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x100000;
const CLONE_CHILD_CLEARTID: u64 = 0x200000;
const CLONE_CHILD_SETTID: u64 = 0x1000000;

/// One argument before the call: its text, or None when it is an output shown afterwards.
pub fn input(g: &dyn Guest, desc: &SyscallDesc, call: &Syscall, i: usize, st: &Style) -> Option<String> {
    let v = call.args[i];
    let kind = desc.args[i].kind;
    // Per-syscall shapes strace has that the argument kind alone does not say.
    match (desc.sysno, i) {
        (S::openat, 3) | (S::open, 2) if call.args[if desc.sysno == S::open { 1 } else { 2 }] & 0o20100100 == 0 => {
            return Some(String::new());
        }
        (S::mmap, 4) => return Some((v as i32).to_string()),
        (S::mmap, 5) => return Some(chex(v)),
        (S::fcntl, 1) => return Some(names::fcntl_cmd(v)),
        (S::fcntl, 2) => {
            return Some(match call.args[1] as i32 {
                libc::F_GETFD | libc::F_GETFL | libc::F_GETOWN | 11 /* F_GETSIG */ | libc::F_GETPIPE_SZ | libc::F_GET_SEALS => {
                    String::new()
                }
                libc::F_SETFD => {
                    if v & 1 != 0 {
                        "FD_CLOEXEC".into()
                    } else {
                        "0".into()
                    }
                }
                libc::F_SETFL => names::flags(FlagSet::Open, v),
                _ => (v as i64).to_string(),
            });
        }
        (S::ioctl, 1) => return Some(names::ioctl_request(v & 0xffff_ffff)),
        (S::ioctl, 2) => return ioctl_input(g, call, v),
        (S::rseq, 1) | (S::rseq, 3) => return Some(chex(v)),
        (S::prlimit64, 0) => return Some((v as i32).to_string()),
        // strace's order: child_stack, flags, parent_tid (if set), tls (if set), child_tidptr.
        (S::clone, 0) => {
            let stack = if call.args[1] == 0 { "NULL".to_string() } else { chex(call.args[1]) };
            return Some(format!("child_stack={stack}, flags={}", names::flags(FlagSet::Clone, v)));
        }
        (S::clone, 1) | (S::clone, 3) => return Some(String::new()),
        (S::clone, 2) if call.args[0] & CLONE_PARENT_SETTID != 0 => return None,
        (S::clone, 2) => return Some(String::new()),
        (S::clone, 4) => {
            let mut parts = Vec::new();
            if call.args[0] & CLONE_SETTLS != 0 {
                parts.push(format!("tls={}", chex(v)));
            }
            if call.args[0] & (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID) != 0 {
                parts.push(format!("child_tidptr={}", chex(call.args[3])));
            }
            return Some(parts.join(", "));
        }
        (S::getrandom, 0) | (S::getdents64, 1) | (S::getdents, 1) => return None,
        _ => {}
    }
    Some(match kind {
        ArgKind::Int => (v as i32).to_string(),
        ArgKind::UInt => v.to_string(),
        ArgKind::Hex => chex(v),
        ArgKind::Addr => addr(v),
        ArgKind::Fd => fd(v, st),
        ArgKind::DirFd if v as i32 == -100 => "AT_FDCWD".into(),
        ArgKind::DirFd => fd(v, st),
        ArgKind::Pid => (v as i32).to_string(),
        ArgKind::Signal => names::signal_name(v as i32),
        ArgKind::Mode => names::mode(v),
        ArgKind::Flags(set) => names::syscall_flags(desc.name, set, v),
        ArgKind::Path => cstring(g, v, None),
        ArgKind::CStr => cstring(g, v, Some(st.strsize)),
        ArgKind::InBuf(len) => buffer(g, v, len_value(len, call), st, false),
        ArgKind::In(s) => struct_value(g, s, v),
        ArgKind::Iovec { count, dir: trapbox_abi::Dir::In } => iovecs(g, v, call.args[count], None, st),
        ArgKind::SockAddrIn { len } => sockaddr(g, v, call.args[len]),
        ArgKind::PollFds { count } => pollfds(g, v, call.args[count], "events", false),
        ArgKind::OutBuf { .. }
        | ArgKind::Out(_)
        | ArgKind::InOut(_)
        | ArgKind::Iovec { .. }
        | ArgKind::SockAddrOut { .. }
        | ArgKind::SockLenPtr
        | ArgKind::FdSet { .. } => return None,
        _ => addr(v),
    })
}

fn len_value(len: trapbox_abi::Len, call: &Syscall) -> u64 {
    match len {
        trapbox_abi::Len::Arg(i) => call.args[i],
        trapbox_abi::Len::Fixed(n) => n as u64,
        trapbox_abi::Len::ArgTimes(i, n) => call.args[i].saturating_mul(n as u64),
        trapbox_abi::Len::ArgPlus(i, n) => call.args[i].saturating_add(n as u64),
    }
}

/// One output argument after the call returned `ret`.
pub fn output(g: &dyn Guest, desc: &SyscallDesc, call: &Syscall, i: usize, ret: i64, st: &Style) -> String {
    let v = call.args[i];
    let ok = ret >= 0;
    if !ok {
        return addr(v);
    }
    match (desc.sysno, i) {
        (S::getrandom, 0) => return buffer(g, v, ret as u64, st, true),
        (S::clone, 2) => {
            return read_n::<4>(g, v)
                .map(|b| format!("parent_tid=[{}]", i32::from_le_bytes(b)))
                .unwrap_or_else(|| format!("parent_tid={}", addr(v)))
        }
        (S::getdents64, 1) | (S::getdents, 1) => return getdents(g, v, ret),
        (S::ioctl, 2) => {
            return match ioctl::lookup(call.args[1]).map(|i| i.handling) {
                Some(IoctlHandling::Pass { arg: IoctlArg::Mem(shape, Dir::Out), .. }) => ioctl_value(g, shape, v),
                _ => addr(v),
            }
        }
        _ => {}
    }
    match desc.args[i].kind {
        ArgKind::OutBuf { len, ret_is_len } => {
            let n = if ret_is_len { ret as u64 } else { len_value(len, call) };
            buffer(g, v, n, st, false)
        }
        ArgKind::Out(s) | ArgKind::InOut(s) => struct_value(g, s, v),
        ArgKind::Iovec { count, .. } => iovecs(g, v, call.args[count], Some(ret as u64), st),
        ArgKind::SockAddrOut { len } => {
            let l = read_n::<4>(g, call.args[len]).map(u32::from_le_bytes).unwrap_or(0);
            sockaddr(g, v, l as u64)
        }
        ArgKind::SockLenPtr => {
            read_n::<4>(g, v).map(|b| format!("[{}]", u32::from_le_bytes(b))).unwrap_or_else(|| addr(v))
        }
        _ => addr(v),
    }
}

/// ioctl's third argument before the call: what the request reads (`[1]`, `{ws_row=30,
/// ...}`), a value, or None for what it writes (shown after).
fn ioctl_input(g: &dyn Guest, call: &Syscall, v: u64) -> Option<String> {
    let Some(i) = ioctl::lookup(call.args[1]) else { return Some(addr(v)) };
    Some(match i.handling {
        IoctlHandling::Pass { arg: IoctlArg::Mem(_, Dir::Out), .. } => return None,
        IoctlHandling::Pass { arg: IoctlArg::Mem(shape, Dir::In), .. } => ioctl_value(g, shape, v),
        IoctlHandling::Pass { arg: IoctlArg::Owner, .. } => ioctl_value(g, Shape::Int, v),
        IoctlHandling::Pass { arg: IoctlArg::Signal, .. } => names::signal_name(v as i32).to_string(),
        // Open flags (TIOCGPTPEER), shown as strace does.
        IoctlHandling::Pass { new_fd: true, .. } => chex(v),
        IoctlHandling::Pass { arg: IoctlArg::Value, .. } => match (i.name, v) {
            ("TCFLSH", 0..=2) => ["TCIFLUSH", "TCOFLUSH", "TCIOFLUSH"][v as usize].to_string(),
            ("TCXONC", 0..=3) => ["TCOOFF", "TCOON", "TCIOFF", "TCION"][v as usize].to_string(),
            _ => (v as i64).to_string(),
        },
        IoctlHandling::Refuse(_) => addr(v),
    })
}

/// Memory an ioctl reads or writes, by its shape.
fn ioctl_value(g: &dyn Guest, shape: Shape, a: u64) -> String {
    let mut b = vec![0u8; shape.size() as usize];
    if a == 0 || g.read(GuestAddr(a), &mut b).is_err() {
        return addr(a);
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    match shape {
        Shape::Int => format!("[{}]", u32_at(&b, 0) as i32),
        Shape::Long => format!("[{}]", u64_at(&b, 0) as i64),
        Shape::Winsize => {
            format!("{{ws_row={}, ws_col={}, ws_xpixel={}, ws_ypixel={}}}", u16_at(0), u16_at(2), u16_at(4), u16_at(6))
        }
        Shape::Termio => names::termios_flags([u16_at(0), u16_at(2), u16_at(4), u16_at(6)]),
        Shape::Termios | Shape::Termios2 => names::termios_flags([0, 4, 8, 12].map(|o| u32_at(&b, o) as u64)),
    }
}

/// A pollfd array: `[{fd=3, events=POLLIN}]`, or with `returned` the entries whose `revents`
/// are set, as strace appends them to the result.
fn pollfds(g: &dyn Guest, a: u64, n: u64, field: &str, returned: bool) -> String {
    if a == 0 {
        return "NULL".into();
    }
    let mut items = Vec::new();
    for k in 0..n.min(1024) {
        let Some(b) = read_n::<8>(g, a + k * 8) else { return addr(a) };
        let off = if returned { 6 } else { 4 };
        let ev = u16::from_le_bytes([b[off], b[off + 1]]) as u64;
        if returned && ev == 0 {
            continue;
        }
        items.push(format!("{{fd={}, {field}={}}}", u32_at(&b, 0) as i32, names::poll_events(ev)));
    }
    format!("[{}]", items.join(", "))
}

/// What strace appends after some results: poll's returned events, ` (Timeout)`.
pub fn result_suffix(g: &dyn Guest, desc: &SyscallDesc, call: &Syscall, ret: i64) -> String {
    match desc.sysno {
        S::poll | S::ppoll if ret == 0 => " (Timeout)".into(),
        S::poll | S::ppoll if ret > 0 => format!(" ({})", pollfds(g, call.args[0], call.args[1], "revents", true)),
        _ => String::new(),
    }
}

/// The result column: `3`, `0x7f...`, `-1 ENOENT (No such file or directory)`, `?`.
pub fn result(desc: Option<&SyscallDesc>, ret: i64, st: &Style) -> String {
    if (-4095..0).contains(&ret) {
        return names::error_return((-ret) as i32);
    }
    match desc.map(|d| d.ret) {
        Some(Ret::Addr) => format!("{:#x}", ret as u64),
        Some(Ret::Fd) => fd(ret as u64, st),
        _ => ret.to_string(),
    }
}

/// Joins a call and its result at strace's column 40.
/// A call's text given as a `String` becomes the line (no copy of it).
pub fn line(call: impl Into<String>, result: &str) -> String {
    // strace's column 40, padded by hand: a formatter pads one character at a time.
    const SPACES: &str = "                                        ";
    let mut l = call.into();
    let width = l.chars().count();
    l.reserve(40usize.saturating_sub(width) + 3 + result.len());
    if l.len() < 40 {
        l.push_str(&SPACES[width..]);
    } else {
        l.push(' ');
    }
    l.push_str("= ");
    l.push_str(result);
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_puts_the_result_at_column_40_like_strace() {
        assert_eq!(line("getppid()", "1"), format!("getppid(){}= 1", " ".repeat(31)));
        let long = format!("write(1, \"{}\", 40)", "x".repeat(40));
        assert_eq!(line(&long, "40"), format!("{long} = 40"));
        let l = line("é()", "0");
        assert_eq!(l.chars().position(|c| c == '='), Some(40), "padded by characters: {l}");
    }

    #[test]
    fn quote_escapes_like_strace() {
        assert_eq!(quote(b"hello, world\n", false), r#""hello, world\n""#);
        assert_eq!(quote(b"a\"b\\c", false), r#""a\"b\\c""#);
        assert_eq!(quote(b"\x00\x01x", false), r#""\0\1x""#);
        assert_eq!(quote(b"\x001", false), r#""\0001""#);
        assert_eq!(quote(b"\xff\x7f", false), r#""\377\177""#);
        assert_eq!(quote(b"\xa7s", true), r#""\xa7\x73""#);
    }

    #[test]
    fn line_aligns_result_at_column_40() {
        assert_eq!(line("brk(NULL)", "0x1000"), format!("brk(NULL){}= 0x1000", " ".repeat(31)));
        let long = "x".repeat(45);
        assert_eq!(line(&long, "0"), format!("{long} = 0"));
    }

    #[test]
    fn rlim_and_sigset_forms() {
        assert_eq!(rlim(8 << 20), "8192*1024");
        assert_eq!(rlim(u64::MAX), "RLIM64_INFINITY");
        assert_eq!(rlim(100), "100");
        assert_eq!(sigset(0), "[]");
        assert_eq!(sigset((1 << 1) | (1 << 14)), "[INT TERM]");
    }

    #[test]
    fn makedev_splits_major_minor() {
        assert_eq!(makedev(0x103), "makedev(0x1, 0x3)");
        assert_eq!(makedev(0x8800), "makedev(0x88, 0)");
    }
}
