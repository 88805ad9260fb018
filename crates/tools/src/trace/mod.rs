//! `trapbox trace`: a handler that wraps another (normally [`Passthrough`](crate::Passthrough))
//! and writes each syscall the way strace does, decoding with the one ABI table.
//!
//! Lines are written when the call returns (inputs are read before the call, outputs after),
//! to stderr or `-o FILE`, one at a time as the guest runs. `--json` writes one JSON object
//! per syscall instead. A [`StopCondition`] ends the run at the first matching syscall, after
//! printing it with its result and the guest's registers.

pub mod filter;
pub mod format;
pub mod names;
pub mod sink;
pub mod stop;
pub mod summary;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use filter::{Filter, FilterError};
pub use format::Style;
pub use stop::{StopCondition, StopError};
pub use summary::Summary;

pub use sink::Flush;
use sink::Sink;
use trapbox_abi::{SyscallDesc, Sysno};
use trapbox_trap::{Action, Guest, Outcome, Regs, Start, Syscall, Trap, TrapHandler};

/// `-c` / `-C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SummaryMode {
    /// Lines only.
    #[default]
    Off,
    /// The table only (`-c`).
    Only,
    /// Lines and the table (`-C`).
    Also,
}

/// What to trace and how to show it.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// `-e trace=`.
    pub filter: Filter,
    /// `-s`, `-y`.
    pub style: Style,
    /// `-T`: time spent in each syscall.
    pub timing: bool,
    /// `-z`: only successful calls.
    pub only_ok: bool,
    /// `-Z`: only failed calls.
    pub only_failed: bool,
    /// `-c` / `-C`.
    pub summary: SummaryMode,
    /// `--json`.
    pub json: bool,
    /// `--stop-on`.
    pub stop: Option<StopCondition>,
    /// Print the program's start as strace does (its `execve` line); a tool that runs a
    /// program of its own (the REPL) leaves it out.
    pub start_line: bool,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            filter: Filter::all(),
            style: Style::default(),
            timing: false,
            only_ok: false,
            only_failed: false,
            summary: SummaryMode::Off,
            json: false,
            stop: None,
            start_line: true,
        }
    }
}

/// Where a stop condition matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopReport {
    /// The matching call as traced.
    pub line: String,
    /// Its return value.
    pub ret: i64,
    /// Registers after the call.
    pub regs: Regs,
}

/// Where the lines go: one sink for every thread of the guest (a forked child carries on with
/// its copy, flushed before the fork).
type Output = Arc<Mutex<Sink>>;

/// The tracing handler. Following threads and child processes (`-f`): a thread gets a copy
/// sharing the output and the `-c` table; a forked child carries on with its own copy of
/// this one. Once a guest has more than one thread or process, every line starts with
/// `[pid N] `, N being the thread's id, as strace prints it.
pub struct Tracer<H> {
    inner: H,
    opts: TraceOptions,
    out: Output,
    summary: Arc<Mutex<Summary>>,
    stopped: Option<StopReport>,
    /// Prefix lines with `[pid N] `.
    prefix: bool,
    /// This copy runs in a forked child: the first process prints the `-c` table.
    child_process: bool,
}

/// Whether the guest's descriptor `fd` is a terminal (the guest's descriptors are trapbox's
/// process's, on either engine).
fn is_terminal(fd: u64) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|p| {
        p.starts_with("/dev/pts")
            || p.to_string_lossy().starts_with("/dev/tty")
            || p == std::path::Path::new("/dev/console")
    })
}

fn is_error(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

impl<H: TrapHandler> Tracer<H> {
    /// Traces `inner`'s run to `out`.
    pub fn new(inner: H, opts: TraceOptions, out: Box<dyn Write + Send>, flush: Flush) -> Self {
        Tracer {
            inner,
            opts,
            out: Arc::new(Mutex::new(Sink::new(out, flush))),
            summary: Arc::default(),
            stopped: None,
            prefix: false,
            child_process: false,
        }
    }

    /// Where the stop condition matched, if it did.
    pub fn stop_report(&self) -> Option<&StopReport> {
        self.stopped.as_ref()
    }

    fn lines_on(&self) -> bool {
        self.opts.summary != SummaryMode::Only
    }

    fn emit(&mut self, s: &str) {
        self.emit_as(s, None)
    }

    /// Writes one line, prefixed with `[pid N]` (N: `tid`, or this thread's) once the guest has
    /// several threads or processes.
    fn emit_as(&mut self, s: &str, tid: Option<&dyn Fn() -> i32>) {
        let prefix = self.prefix.then(|| {
            // Asked only when lines carry it (each ask is a syscall on some engines).
            let t = tid.map(|f| f()).filter(|t| *t > 0).map_or_else(this_tid, |t| t as u32);
            format!("[pid {t:>5}] ")
        });
        self.out.lock().unwrap_or_else(|e| e.into_inner()).line_parts(&[prefix.as_deref().unwrap_or(""), s, "\n"]);
    }

    /// Writes out held-back lines before a call that needs them out: a fork (the child's copy
    /// of the buffer would print them again), a read from a terminal, a write of the program's
    /// to the stream the lines share.
    fn flush_before(&self, call: &Syscall) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if !out.pending() {
            return;
        }
        let nr = call.nr as i64;
        let fd = call.args[0];
        let forks = matches!(nr, libc::SYS_clone | libc::SYS_clone3 | libc::SYS_fork | libc::SYS_vfork);
        let writes = matches!(
            nr,
            libc::SYS_write | libc::SYS_writev | libc::SYS_pwrite64 | libc::SYS_pwritev | libc::SYS_pwritev2
        );
        let reads =
            matches!(nr, libc::SYS_read | libc::SYS_readv | libc::SYS_pread64 | libc::SYS_preadv | libc::SYS_preadv2);
        if forks || (writes && out.shares(fd)) || (reads && is_terminal(fd)) {
            out.flush();
        }
    }

    fn call_text(
        &self,
        g: &dyn Guest,
        desc: Option<&SyscallDesc>,
        call: &Syscall,
        inputs: &[Option<String>],
        ret: Option<i64>,
    ) -> (String, Vec<String>) {
        let Some(d) = desc else {
            let args: Vec<String> = call.args.iter().map(|a| format::chex(*a)).collect();
            return (format!("syscall_{:#x}({})", call.nr, args.join(", ")), args);
        };
        let mut args = Vec::with_capacity(d.args.len());
        for (i, inp) in inputs.iter().enumerate() {
            let s = match inp {
                Some(s) => s.clone(),
                None => match ret {
                    Some(r) => format::output(g, d, call, i, r, &self.opts.style),
                    None => format::addr(call.args[i]),
                },
            };
            args.push(s);
        }
        let mut text = String::with_capacity(64);
        text.push_str(d.name);
        text.push('(');
        // An input printed as "" means "not shown" (openat's mode without O_CREAT).
        for (k, a) in args.iter().filter(|a| !a.is_empty()).enumerate() {
            if k > 0 {
                text.push_str(", ");
            }
            text.push_str(a);
        }
        text.push(')');
        (text, args)
    }

    fn json_line(
        &self,
        d: Option<&SyscallDesc>,
        call: &Syscall,
        args: &[String],
        ret: Option<i64>,
        took: Duration,
    ) -> String {
        let errno = ret.filter(|r| is_error(*r)).and_then(|r| names::errno_name((-r) as i32));
        serde_json::json!({
            "name": call.name(),
            "nr": call.nr,
            "args": args,
            "raw_args": &call.args[..d.map_or(6, |d| d.args.len())],
            "ret": ret,
            "errno": errno,
            "duration_us": took.as_secs_f64() * 1e6,
        })
        .to_string()
    }

    fn on_syscall(&mut self, g: &mut dyn Guest, trap: &Trap, call: &Syscall) -> Action {
        let desc = call.desc();
        let traced = self.opts.filter.traces(call.nr);
        let need_text = (traced && (self.lines_on() || self.opts.json)) || self.opts.stop.is_some();
        let inputs: Vec<Option<String>> = match (need_text, desc) {
            (true, Some(d)) => (0..d.args.len()).map(|i| format::input(g, d, call, i, &self.opts.style)).collect(),
            _ => Vec::new(),
        };
        self.flush_before(call);
        // Timed only for what shows the time (two clock reads per call otherwise spent).
        let summed = traced && self.opts.summary != SummaryMode::Off;
        let t0 = (summed || self.opts.timing || self.opts.json).then(Instant::now);
        let action = self.inner.on_trap(g, trap);
        let took = t0.map(|t| t.elapsed()).unwrap_or_default();
        let ret = match &action {
            Action::Return(r) => Some(*r),
            Action::Resume => Some(g.regs().rax as i64),
            Action::Kill { fault: None, .. } => Some(0),
            _ => None,
        };
        let name = call.name();
        let sysno = call.sysno();
        if matches!(sysno, Some(Sysno::clone | Sysno::fork | Sysno::vfork)) && ret == Some(0) {
            // The new process's return from fork: strace shows only the parent's line.
            self.prefix = true;
            self.child_process = true;
            return action;
        }
        if summed {
            self.summary.lock().unwrap_or_else(|e| e.into_inner()).add(&name, ret.is_some_and(is_error), took);
        }
        let failed = ret.is_some_and(is_error);
        let filtered = (self.opts.only_ok && (failed || ret.is_none())) || (self.opts.only_failed && !failed);
        let mut text = None;
        if need_text {
            let (c, args) = self.call_text(g, desc, call, &inputs, ret);
            let result = match (ret, desc) {
                (Some(r), Some(d)) => format::result(desc, r, &self.opts.style) + &format::result_suffix(g, d, call, r),
                (Some(r), None) => format::result(desc, r, &self.opts.style),
                (None, _) => "?".into(),
            };
            let mut l = format::line(c, &result);
            if self.opts.timing && ret.is_some() {
                l.push_str(&format!(" <{:.6}>", took.as_secs_f64()));
            }
            if traced && !filtered {
                if self.opts.json {
                    let j = self.json_line(desc, call, &args, ret, took);
                    self.emit(&j);
                } else if self.lines_on() {
                    self.emit_as(&l, Some(&|| g.tid()));
                }
            }
            text = Some(l);
        }
        // A child process or thread now exists: lines carry the thread id from here on.
        if matches!(sysno, Some(Sysno::clone | Sysno::clone3 | Sysno::fork | Sysno::vfork))
            && ret.is_some_and(|r| r > 0)
        {
            self.prefix = true;
        }
        if let Action::Kill { signal, fault: None } = &action {
            if self.lines_on() && !self.opts.json {
                let s = names::signal_name(*signal);
                self.emit(&format!(
                    "--- {s} {{si_signo={s}, si_code=SI_TKILL, si_pid={}, si_uid={}}} ---",
                    std::process::id(),
                    uid()
                ));
            }
        }
        if let (Some(stop), Some(r)) = (&self.opts.stop, ret) {
            if matches!(action, Action::Return(_) | Action::Resume) && stop.matches(g, call, r) {
                let line = text.unwrap_or_default();
                let mut regs = g.regs();
                // The registers as the guest will see them on return: RAX holds the result.
                regs.rax = r as u64;
                let msg = format!("trapbox: stopped at `{}`: {line}\n{}", stop.text(), format_regs(&regs));
                self.emit(&msg);
                self.stopped = Some(StopReport { line, ret: r, regs });
                // The call ran: answer it, then stop before the guest goes on.
                return Action::ReturnAndStop(r);
            }
        }
        action
    }
}

/// The real uid, as the owner of /proc/self (tools stay free of unsafe code).
fn uid() -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc is mounted"))
}

/// Registers as the stop report prints them.
pub fn format_regs(r: &Regs) -> String {
    let pairs = [
        ("rax", r.rax),
        ("rbx", r.rbx),
        ("rcx", r.rcx),
        ("rdx", r.rdx),
        ("rsi", r.rsi),
        ("rdi", r.rdi),
        ("rbp", r.rbp),
        ("rsp", r.rsp),
        ("r8", r.r8),
        ("r9", r.r9),
        ("r10", r.r10),
        ("r11", r.r11),
        ("r12", r.r12),
        ("r13", r.r13),
        ("r14", r.r14),
        ("r15", r.r15),
        ("rip", r.rip),
        ("rflags", r.rflags),
    ];
    pairs
        .chunks(4)
        .map(|c| c.iter().map(|(n, v)| format!("{n:>6}={v:#018x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn execve_line(start: &Start, style: &Style) -> String {
    let q = |s: &std::ffi::OsStr| {
        let b = std::os::unix::ffi::OsStrExt::as_bytes(s);
        if b.len() > style.strsize {
            format!("{}...", format::quote(&b[..style.strsize], false))
        } else {
            format::quote(b, false)
        }
    };
    let argv: Vec<String> = start.argv.iter().map(|a| q(a)).collect();
    let call = format!(
        "execve({}, [{}], {} /* {} vars */)",
        format::quote(std::os::unix::ffi::OsStrExt::as_bytes(start.program.as_os_str()), false),
        argv.join(", "),
        format::addr(start.envp_addr),
        start.env_count
    );
    format::line(call, "0")
}

impl<H: TrapHandler> TrapHandler for Tracer<H> {
    fn on_start(&mut self, g: &mut dyn Guest, start: &Start) {
        self.inner.on_start(g, start);
        let execve = trapbox_abi::Sysno::execve as u64;
        if self.opts.filter.traces(execve) {
            if self.opts.summary != SummaryMode::Off {
                self.summary.lock().unwrap_or_else(|e| e.into_inner()).add("execve", false, Duration::ZERO);
            }
            if self.lines_on() && !self.opts.json && self.opts.start_line {
                let mut l = execve_line(start, &self.opts.style);
                if self.opts.timing {
                    l.push_str(" <0.000000>");
                }
                self.emit(&l);
            }
        }
    }

    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        if let Trap::Syscall(call) = trap {
            return self.on_syscall(g, trap, call);
        }
        let action = self.inner.on_trap(g, trap);
        if self.lines_on() && !self.opts.json {
            match (trap, &action) {
                (Trap::Fault(f), Action::Kill { .. }) => {
                    let si = f.siginfo();
                    let s = names::signal_name(si.signo);
                    let a = format::addr(si.addr);
                    self.emit(&format!(
                        "--- {s} {{si_signo={s}, si_code={}, si_addr={a}}} ---",
                        names::si_code(si.signo, si.code)
                    ));
                }
                (Trap::Breakpoint { .. }, Action::Kill { .. }) => {
                    self.emit("--- SIGTRAP {si_signo=SIGTRAP, si_code=SI_KERNEL} ---");
                }
                _ => {}
            }
        }
        action
    }

    fn on_end(&mut self, g: &mut dyn Guest, outcome: &Outcome) {
        self.inner.on_end(g, outcome);
        if self.lines_on() {
            let end = match outcome {
                Outcome::Exited(c) => Some(format!("+++ exited with {} +++", c & 0xff)),
                Outcome::Killed { signal, .. } => Some(format!("+++ killed by {} +++", names::signal_name(*signal))),
                Outcome::TimedOut => Some("+++ killed by SIGKILL +++".to_string()),
                Outcome::Stopped => None,
            };
            if let Some(e) = end {
                if self.opts.json {
                    let j = serde_json::json!({ "end": e.trim_matches(|c| c == '+' || c == ' ') }).to_string();
                    self.emit(&j);
                } else {
                    self.emit(&e);
                }
            }
        }
        if self.opts.summary != SummaryMode::Off && !self.child_process {
            let t = self.summary.lock().unwrap_or_else(|e| e.into_inner()).render();
            self.out.lock().unwrap_or_else(|e| e.into_inner()).finish(&t);
        } else {
            self.out.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }

    fn on_signal(&mut self, g: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        self.inner.on_signal(g, sig, siginfo);
        if self.lines_on() && !self.opts.json {
            let line = signal_line(sig, siginfo);
            self.emit_as(&line, Some(&|| g.tid()));
        }
    }

    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        let inner = self.inner.new_thread()?;
        Some(Box::new(Tracer {
            inner,
            opts: self.opts.clone(),
            out: self.out.clone(),
            summary: self.summary.clone(),
            stopped: None,
            prefix: true,
            child_process: self.child_process,
        }))
    }
    fn patched_byte(&self, addr: u64) -> Option<u8> {
        self.inner.patched_byte(addr)
    }
    fn event_index(&self) -> Option<u64> {
        self.inner.event_index()
    }
}

/// strace's line for a delivered signal: `--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED,
/// si_pid=4242, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---`.
fn signal_line(sig: i32, info: &[u8; 128]) -> String {
    let i32_at = |o: usize| i32::from_le_bytes(info[o..o + 4].try_into().expect("4 bytes"));
    let i64_at = |o: usize| i64::from_le_bytes(info[o..o + 8].try_into().expect("8 bytes"));
    let name = names::signal_name(sig);
    let code = i32_at(8);
    let mut fields = format!("si_signo={name}, si_code={}", names::si_code(sig, code));
    let sent_by_process = code <= 0;
    if sig == libc::SIGCHLD && code > 0 {
        let status = i32_at(24);
        let status = if code == 1 { status.to_string() } else { names::signal_name(status) };
        fields.push_str(&format!(
            ", si_pid={}, si_uid={}, si_status={status}, si_utime={}, si_stime={}",
            i32_at(16),
            i32_at(20) as u32,
            i64_at(32),
            i64_at(40)
        ));
    } else if sent_by_process {
        fields.push_str(&format!(", si_pid={}, si_uid={}", i32_at(16), i32_at(20) as u32));
    } else if matches!(sig, libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP) {
        fields.push_str(&format!(", si_addr={}", format::addr(i64_at(16) as u64)));
    }
    format!("--- {name} {{{fields}}} ---")
}

/// The calling thread's id (the guest thread's, since each runs on its own host thread).
fn this_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or_else(std::process::id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execve_line_matches_strace_shape() {
        let s = Start {
            program: "/bin/ls".into(),
            argv: vec!["ls".into(), "-la".into()],
            env_count: 35,
            envp_addr: 0x7ffe_1000,
            ..Default::default()
        };
        assert_eq!(
            execve_line(&s, &Style::default()),
            "execve(\"/bin/ls\", [\"ls\", \"-la\"], 0x7ffe1000 /* 35 vars */) = 0"
        );
    }

    #[test]
    fn a_scripted_run_traces_as_strace_prints_it() {
        use trapbox_trap::script::{drive, HostAnswer, ScriptedGuest, SharedBuffer};
        use trapbox_trap::GuestAddr;
        const MEM: u64 = 0x10_0000;
        let (path, buf) = (MEM, MEM + 0x100);
        let answers = vec![
            HostAnswer { ret: 3, writes: vec![] },
            HostAnswer { ret: 5, writes: vec![(buf, b"host\n".to_vec())] },
            HostAnswer { ret: -(libc::ENOENT as i64), writes: vec![] },
            HostAnswer { ret: 3, writes: vec![] },
            HostAnswer { ret: 0, writes: vec![] },
        ];
        let mut g = ScriptedGuest::new(MEM, 0x1000, answers);
        g.write(GuestAddr(path), b"/etc/hostname\0").unwrap();
        g.write(GuestAddr(MEM + 0x200), b"hi\n/nowhere\0").unwrap();
        let out = SharedBuffer::default();
        let mut t =
            Tracer::new(trapbox_trap::Passthrough, TraceOptions::default(), Box::new(out.clone()), Flush::Buffered);
        let at = libc::AT_FDCWD as u64;
        let calls = [
            (libc::SYS_openat, [at, path, libc::O_RDONLY as u64, 0, 0, 0]),
            (libc::SYS_read, [3, buf, 64, 0, 0, 0]),
            (libc::SYS_openat, [at, MEM + 0x203, (libc::O_WRONLY | libc::O_CREAT) as u64, 0o644, 0, 0]),
            (libc::SYS_write, [1, MEM + 0x200, 3, 0, 0, 0]),
            (libc::SYS_close, [3, 0, 0, 0, 0, 0]),
            (libc::SYS_exit_group, [0; 6]),
        ];
        let start = Start {
            program: "/bin/cat".into(),
            argv: vec!["cat".into()],
            env_count: 2,
            envp_addr: 0x7ffe_1000,
            ..Default::default()
        };
        assert_eq!(drive(&mut t, &mut g, &start, &calls), Outcome::Exited(0));
        assert!(
            out.0.lock().unwrap().is_empty() || out.0.lock().unwrap().ends_with(b"+++\n"),
            "lines held back until the end"
        );
        drop(t);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            concat!(
                "execve(\"/bin/cat\", [\"cat\"], 0x7ffe1000 /* 2 vars */) = 0\n",
                "openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY) = 3\n",
                "read(3, \"host\\n\", 64)                   = 5\n",
                "openat(AT_FDCWD, \"/nowhere\", O_WRONLY|O_CREAT, 0644) = -1 ENOENT (No such file or directory)\n",
                "write(1, \"hi\\n\", 3)                     = 3\n",
                "close(3)                                = 0\n",
                "exit_group(0)                           = ?\n",
                "+++ exited with 0 +++\n",
            )
        );
        assert_eq!(g.forwarded.len(), 5, "exit_group ends the run, the rest reached the host");
    }

    #[test]
    fn format_regs_has_all_registers() {
        let r = Regs { rip: 0x401000, ..Default::default() };
        let t = format_regs(&r);
        assert!(t.contains("rip=0x0000000000401000"));
        assert_eq!(t.lines().count(), 5);
    }
}
