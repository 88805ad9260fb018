//! The guest's view of itself in /proc.
//!
//! The guest's pid and threads are trapbox's, so /proc/self is trapbox's process: its command
//! line, its maps (trapbox's own code and the arena's placeholders), its descriptors (the KVM
//! ones), its helper threads. What the guest reads there about itself is made the guest's:
//!
//! - `cmdline`, `environ`, `auxv` and `maps` of the guest's own process (by pid, `self`,
//!   `thread-self` or any of its threads) are files trapbox writes from what it knows of the
//!   guest (its argv, environment and auxiliary vector as loaded, its mappings as the address
//!   space holds them, named as the host names them);
//! - `stat` and `status` are the host's, with the fields that describe trapbox rather than the
//!   guest (its code, stack and argument ranges, its thread count) replaced;
//! - listings of the `fd`, `fdinfo` and `task` directories leave out trapbox's descriptors
//!   and threads, and those entries themselves do not exist for the guest;
//! - the comm name of the guest's threads is the program's (set on the host, where it is
//!   per thread).

/// A /proc file of the guest's own process that trapbox writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcFile {
    /// `cmdline`.
    Cmdline,
    /// `environ`.
    Environ,
    /// `auxv`.
    Auxv,
    /// `maps`.
    Maps,
    /// `stat`.
    Stat,
    /// `status`.
    Status,
}

/// What a /proc path (the kernel's name of an opened file, or a path the guest gave) says
/// about the process `me` (whose threads `ours` recognizes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcPath {
    /// One of the files trapbox writes.
    File(ProcFile),
    /// The entry for descriptor N (`fd/N`, `fdinfo/N`).
    Fd(i32),
    /// The entry for thread N (`task/N`, or `/proc/N` for a thread).
    Task(i32),
    /// The `fd` or `fdinfo` directory.
    FdDir,
    /// The `task` directory.
    TaskDir,
}

/// Parses `/proc/<who>[/task/<tid>]/<rest>` for the guest's own process.
pub fn parse(path: &str, me: i32, ours: &dyn Fn(i32) -> bool) -> Option<ProcPath> {
    let mut parts = path.strip_prefix("/proc/")?.split('/').filter(|p| !p.is_empty()).peekable();
    let who = |s: &str| match s {
        "self" | "thread-self" => Some(me),
        n => n.parse::<i32>().ok().filter(|&t| t == me || ours(t)),
    };
    let first = parts.next()?;
    let pid = who(first)?;
    let mut rest: Vec<&str> = parts.collect();
    if rest.first() == Some(&"task") {
        match rest.get(1) {
            None => return Some(ProcPath::TaskDir),
            Some(t) => {
                let tid = t.parse::<i32>().ok()?;
                if tid != me && !ours(tid) {
                    return Some(ProcPath::Task(tid));
                }
                rest.drain(..2);
            }
        }
    }
    let _ = pid;
    Some(match rest.as_slice() {
        ["cmdline"] => ProcPath::File(ProcFile::Cmdline),
        ["environ"] => ProcPath::File(ProcFile::Environ),
        ["auxv"] => ProcPath::File(ProcFile::Auxv),
        ["maps"] => ProcPath::File(ProcFile::Maps),
        ["stat"] => ProcPath::File(ProcFile::Stat),
        ["status"] => ProcPath::File(ProcFile::Status),
        ["fd" | "fdinfo"] => ProcPath::FdDir,
        ["fd" | "fdinfo", n] => ProcPath::Fd(n.parse().ok()?),
        _ => return None,
    })
}

/// `/proc/<any>/task/<tid>` naming a thread of this process that is not the guest's.
pub fn foreign_task(path: &str, ours: &dyn Fn(i32) -> bool) -> bool {
    let Some(rest) = path.strip_prefix("/proc/") else { return false };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let tid = match parts.as_slice() {
        [_, "task", t, ..] | [t, ..] => t.parse::<i32>().ok(),
        _ => None,
    };
    tid.is_some_and(|t| std::path::Path::new(&format!("/proc/self/task/{t}")).exists() && !ours(t))
}

/// The guest's `maps`: the host's lines for the guest's regions, clipped to them (the arena's
/// placeholders and trapbox's own mappings left out), the stack and the brk heap named as
/// Linux names them, and the host vDSO pages the guest shares.
pub fn maps(host: &str, regions: &[(u64, u64)], stack: Option<(u64, u64)>, heap: Option<(u64, u64)>) -> String {
    let mut out = String::new();
    for line in host.lines() {
        let mut f = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(off), Some(dev), Some(ino)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let name = f.next().unwrap_or("").trim_start();
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
        if matches!(name, "[vdso]" | "[vvar]" | "[vvar_vclock]") {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let offset = u64::from_str_radix(off, 16).unwrap_or(0);
        for &(s, e) in regions.iter().filter(|&&(s, e)| s < b && e > a) {
            let (s, e) = (s.max(a), e.min(b));
            let within = |r: Option<(u64, u64)>| r.is_some_and(|(rs, re)| s >= rs && e <= re);
            let named = if within(stack) {
                "[stack]"
            } else if within(heap) && name.is_empty() {
                "[heap]"
            } else {
                name
            };
            let off = if ino == "0" { 0 } else { offset + (s - a) };
            let head = format!("{s:08x}-{e:08x} {perms} {off:08x} {dev} {ino}");
            if named.is_empty() {
                out.push_str(&format!("{head} \n"));
            } else {
                out.push_str(&format!("{head:<73}{named}\n"));
            }
        }
    }
    out
}

/// Replaces space-separated field `n` (1-based, counted after the parenthesized comm) of a
/// /proc stat line.
fn set_stat_field(fields: &mut [String], n: usize, v: u64) {
    // fields[0] is the pid, fields[1] the comm; the rest follow in order.
    if let Some(f) = fields.get_mut(n - 1) {
        *f = v.to_string();
    }
}

/// What the guest's stat and status say instead of trapbox's.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The main image's code range.
    pub code: (u64, u64),
    /// The initial stack pointer's page... the stack's start as Linux reports it.
    pub stack_start: u64,
    /// argv and envp string ranges.
    pub args: (u64, u64),
    /// envp strings.
    pub env: (u64, u64),
    /// The guest's threads.
    pub threads: u64,
    /// Lines of the status as they read before trapbox hardened itself (`NoNewPrivs:`,
    /// `Seccomp:`, the capability sets), which describe the guest's rights.
    pub unhardened: Vec<String>,
    /// Whether the guest set no_new_privs.
    pub no_new_privs: bool,
}

/// The guest's `stat` line from the host's.
pub fn stat(host: &str, f: &Facts) -> String {
    let Some(close) = host.rfind(')') else { return host.to_string() };
    let (head, tail) = host.split_at(close + 1);
    let mut fields: Vec<String> = vec![String::new(), String::new()];
    fields.extend(tail.split_whitespace().map(str::to_string));
    set_stat_field(&mut fields, 20, f.threads);
    set_stat_field(&mut fields, 26, f.code.0);
    set_stat_field(&mut fields, 27, f.code.1);
    set_stat_field(&mut fields, 28, f.stack_start);
    set_stat_field(&mut fields, 48, f.args.0);
    set_stat_field(&mut fields, 49, f.args.1);
    set_stat_field(&mut fields, 50, f.env.0);
    set_stat_field(&mut fields, 51, f.env.1);
    format!("{head} {}\n", fields[2..].join(" "))
}

/// The guest's `status` from the host's: its thread count, and its rights as they were
/// before trapbox hardened itself.
pub fn status(host: &str, f: &Facts) -> String {
    let mut out = String::new();
    for line in host.lines() {
        let field = line.split_once(':').map_or(line, |(k, _)| k);
        let before = f.unhardened.iter().find(|l| l.split_once(':').is_some_and(|(k, _)| k == field));
        if line.starts_with("Threads:") {
            out.push_str(&format!("Threads:\t{}\n", f.threads));
        } else if line.starts_with("NoNewPrivs:") {
            let was = before.is_some_and(|l| l.trim_end().ends_with('1'));
            out.push_str(&format!("NoNewPrivs:\t{}\n", (was || f.no_new_privs) as u8));
        } else if let Some(b) = before {
            out.push_str(b);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Removes from `buf` (the linux_dirent64 records getdents64 returned) the entries `hide`
/// says to hide; returns the new length.
pub fn filter_dirents64(buf: &mut Vec<u8>, hide: &dyn Fn(&str) -> bool) -> usize {
    let mut out = Vec::with_capacity(buf.len());
    let mut at = 0;
    while at + 19 <= buf.len() {
        let reclen = u16::from_le_bytes([buf[at + 16], buf[at + 17]]) as usize;
        if reclen < 19 || at + reclen > buf.len() {
            break;
        }
        let name = &buf[at + 19..at + reclen];
        let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
        if !hide(&String::from_utf8_lossy(name)) {
            out.extend_from_slice(&buf[at..at + reclen]);
        }
        at += reclen;
    }
    *buf = out;
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_knows_every_name_of_the_guest() {
        let ours = |t: i32| t == 101;
        assert_eq!(parse("/proc/self/cmdline", 100, &ours), Some(ProcPath::File(ProcFile::Cmdline)));
        assert_eq!(parse("/proc/100/maps", 100, &ours), Some(ProcPath::File(ProcFile::Maps)));
        assert_eq!(parse("/proc/101/task/101/auxv", 100, &ours), Some(ProcPath::File(ProcFile::Auxv)));
        assert_eq!(parse("/proc/thread-self/fd/7", 100, &ours), Some(ProcPath::Fd(7)));
        assert_eq!(parse("/proc/self/fdinfo", 100, &ours), Some(ProcPath::FdDir));
        assert_eq!(parse("/proc/self/task", 100, &ours), Some(ProcPath::TaskDir));
        assert_eq!(parse("/proc/self/task/555/stat", 100, &ours), Some(ProcPath::Task(555)));
        // Another process's files are its own.
        assert_eq!(parse("/proc/42/cmdline", 100, &ours), None);
    }

    #[test]
    fn maps_keeps_only_the_guests_regions() {
        let host = "00001000-2aaaaaaaa000 ---p 00000000 00:00 0 \n\
                    2aaaaaaaa000-2aaaaaaac000 r--p 00000000 fe:00 247030                     /usr/bin/cat\n\
                    3ffffe000000-3ffffe800000 rw-p 00000000 00:00 0 \n\
                    555555554000-555555556000 r-xp 00000000 fe:00 1                          /x/trapbox\n\
                    7ffff7fc1000-7ffff7fc3000 r-xp 00000000 00:00 0                          [vdso]\n";
        let regions = [(0x2aaa_aaaa_a000, 0x2aaa_aaaa_c000), (0x3fff_fe00_0000, 0x3fff_fe80_0000)];
        let m = maps(host, &regions, Some((0x3fff_fe00_0000, 0x3fff_fe80_0000)), None);
        assert!(m.contains("/usr/bin/cat") && m.contains("[stack]") && m.contains("[vdso]"), "{m}");
        assert!(!m.contains("trapbox") && !m.contains("00001000-"), "{m}");
    }

    #[test]
    fn stat_and_status_describe_the_guest() {
        let host = "100 (my prog) S 1 100 100 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 3 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29";
        let f = Facts {
            code: (0x1000, 0x2000),
            stack_start: 0x3000,
            args: (1, 2),
            env: (3, 4),
            threads: 1,
            ..Default::default()
        };
        let s = stat(host, &f);
        let fields: Vec<&str> = s.rsplit_once(')').unwrap().1.split_whitespace().collect();
        assert_eq!(fields[20 - 3], "1", "{s}");
        assert_eq!(fields[26 - 3], "4096", "{s}");
        assert_eq!(fields[48 - 3], "1", "{s}");
        assert!(s.starts_with("100 (my prog) S"));
        assert_eq!(status("Name:\tx\nThreads:\t3\n", &f), "Name:\tx\nThreads:\t1\n");
        // What the guest is allowed reads as before trapbox hardened itself, but for the
        // guest's own no_new_privs.
        let hardened = "CapEff:\t000001fffef7ffff\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        let f = Facts {
            unhardened: vec!["CapEff:\t000001ffffffffff".into(), "NoNewPrivs:\t0".into(), "Seccomp:\t0".into()],
            ..f
        };
        assert_eq!(status(hardened, &f), "CapEff:\t000001ffffffffff\nNoNewPrivs:\t0\nSeccomp:\t0\n");
        let f = Facts { no_new_privs: true, ..f };
        assert_eq!(status(hardened, &f), "CapEff:\t000001ffffffffff\nNoNewPrivs:\t1\nSeccomp:\t0\n");
    }

    #[test]
    fn dirents_are_filtered() {
        let rec = |name: &str| {
            let reclen = (19 + name.len() + 1).next_multiple_of(8);
            let mut r = vec![0u8; reclen];
            r[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
            r[19..19 + name.len()].copy_from_slice(name.as_bytes());
            r
        };
        let mut buf = [rec("."), rec("3"), rec("900"), rec("4")].concat();
        let n = filter_dirents64(&mut buf, &|n| n == "900");
        assert_eq!(n, buf.len());
        assert_eq!(buf, [rec("."), rec("3"), rec("4")].concat());
    }
}
