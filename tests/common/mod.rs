//! Shared test support: guest programs compiled by the system gcc, the trapbox binary, native
//! runs to compare with. Nothing is skipped: a missing prerequisite fails the test with a line
//! that says how to get it.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// How a guest is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `gcc -static`.
    Static,
    /// `gcc -static-pie -fPIE`.
    StaticPie,
    /// `gcc` (dynamic, through ld.so).
    Dynamic,
}

impl Form {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Form::Static => &["-static"],
            Form::StaticPie => &["-static-pie", "-fPIE"],
            Form::Dynamic => &[],
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Form::Static => "static",
            Form::StaticPie => "static-pie",
            Form::Dynamic => "dynamic",
        }
    }
}

/// Fails unless this thread's engine can run: /dev/kvm can be opened, or (in-process) the
/// kernel has Syscall User Dispatch.
pub fn require_kvm() {
    if backend() == Backend::InProc {
        require_sud();
        return;
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!("trapbox's tests need KVM and /dev/kvm cannot be opened ({e}): run them on a machine with KVM (hardware or kvm_pvm) as a user in the kvm group");
    }
}

static BUILD: Mutex<()> = Mutex::new(());

/// The engine a test's `trapbox run/trace/record/replay` commands use ([`each_backend!`] sets
/// it for the test's thread; `--backend` given by the test itself wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A KVM VM.
    Kvm,
    /// trapbox's own process (Syscall User Dispatch).
    InProc,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kvm => "kvm",
            Backend::InProc => "inproc",
        }
    }
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Kvm) };
}

/// Runs `f` with this thread's trapbox commands on `b`.
pub fn with_backend<R>(b: Backend, f: impl FnOnce() -> R) -> R {
    BACKEND.with(|c| c.set(b));
    if b == Backend::InProc {
        require_sud();
    }
    f()
}

/// The engine this thread's trapbox commands use.
pub fn backend() -> Backend {
    BACKEND.with(|c| c.get())
}

/// Fails unless the kernel has Syscall User Dispatch (the in-process engine needs it).
pub fn require_sud() {
    // SAFETY: PR_SET_SYSCALL_USER_DISPATCH with PR_SYS_DISPATCH_OFF on a thread where it is
    // off changes nothing; only its acceptance is asked.
    let r = unsafe { libc::prctl(59, 0, 0, 0, 0) };
    if r != 0 {
        panic!("the in-process engine's tests need Syscall User Dispatch (Linux 5.11 or later): this kernel refuses PR_SET_SYSCALL_USER_DISPATCH");
    }
}

/// One `#[test]` per engine for each named function (`kvm::NAME`, `inproc::NAME`): the two
/// engines must behave alike, so the suite runs on both.
#[allow(unused_macros)]
macro_rules! each_backend {
    ($($f:ident),* $(,)?) => {
        mod kvm {
            $(
                #[test]
                fn $f() {
                    crate::common::with_backend(crate::common::Backend::Kvm, super::$f)
                }
            )*
        }
        mod inproc {
            $(
                #[test]
                fn $f() {
                    crate::common::with_backend(crate::common::Backend::InProc, super::$f)
                }
            )*
        }
    };
}

/// [`each_form!`] on both engines: `static_`, `static_pie`, `dynamic` on KVM and
/// `inproc_static`, `inproc_static_pie`, `inproc_dynamic` in-process.
#[allow(unused_macros)]
macro_rules! each_form_each_backend {
    ($check:ident) => {
        each_form!($check);
        #[test]
        fn inproc_static() {
            crate::common::with_backend(crate::common::Backend::InProc, || $check(Form::Static))
        }
        #[test]
        fn inproc_static_pie() {
            crate::common::with_backend(crate::common::Backend::InProc, || $check(Form::StaticPie))
        }
        #[test]
        fn inproc_dynamic() {
            crate::common::with_backend(crate::common::Backend::InProc, || $check(Form::Dynamic))
        }
    };
}

/// One `#[test]` per link form (`static_`, `static_pie`, `dynamic`), each calling
/// `$check(form)`: static has no ld.so, static-pie relocates itself, dynamic goes through ld.so.
#[allow(unused_macros)]
macro_rules! each_form {
    ($check:ident) => {
        #[test]
        fn static_() {
            $check(Form::Static)
        }
        #[test]
        fn static_pie() {
            $check(Form::StaticPie)
        }
        #[test]
        fn dynamic() {
            $check(Form::Dynamic)
        }
    };
}

/// The guest program `name` (tests/guests/NAME.c) built in `form`.
pub fn guest(name: &str, form: Form) -> PathBuf {
    build_guest(name, form, &format!("{name}-{}", form.suffix()), &[])
}

/// Builds tests/guests/NAME.c in `form` with extra gcc `flags` into the cache as `cached`,
/// unless that is newer than the source and every header beside it.
fn build_guest(name: &str, form: Form, cached: &str, flags: &[&str]) -> PathBuf {
    build_with("gcc", "install gcc and libc6-dev", name, form.flags(), cached, flags)
}

/// The guest program `name` built statically against musl (`musl-gcc -static`).
#[allow(dead_code)]
pub fn musl_guest(name: &str) -> PathBuf {
    build_with("musl-gcc", "install musl-tools", name, &["-static"], &format!("{name}-musl-static"), &[])
}

/// [`build_guest`] with `compiler` (`install` says how to get it) and its form flags.
fn build_with(compiler: &str, install: &str, name: &str, form: &[&str], cached: &str, flags: &[&str]) -> PathBuf {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests");
    let src = guests.join(format!("{name}.c"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests");
    let out = dir.join(cached);
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
    let inputs = std::fs::read_dir(&guests)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "h"))
        .chain(std::iter::once(src.clone()));
    let fresh = built.is_some_and(|b| {
        inputs.into_iter().all(|p| std::fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|t| t <= b))
    });
    if !fresh {
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!(".{cached}.tmp"));
        let st = Command::new(compiler)
            .current_dir(&guests)
            .args(["-O2", "-Wall", "-Wextra", "-Werror"])
            .args(form)
            .args(flags)
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("{compiler} not found ({e}): {install} (.ci/run does)"));
        assert!(st.success(), "{compiler} {flags:?} failed on {}", src.display());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Exit status as a shell shows it (128 + signal when killed).
    pub status: i32,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// stderr without trapbox's own `trapbox: ...` lines.
    pub fn guest_stderr(&self) -> String {
        self.stderr_str().lines().filter(|l| !l.starts_with("trapbox: ")).map(|l| format!("{l}\n")).collect()
    }
}

/// How long one command of a test may run before it is killed and the test fails with what
/// its processes were doing: a hang must be a failure that says where, never a CI run that
/// never ends. `TRAPBOX_TEST_DEADLINE` (seconds) overrides it.
fn deadline() -> std::time::Duration {
    let secs = std::env::var("TRAPBOX_TEST_DEADLINE").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    std::time::Duration::from_secs(secs)
}

pub fn run_cmd(mut cmd: Command, stdin: &[u8], cwd: &Path) -> Run {
    cmd.current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn_grouped(&mut cmd);
    let mut sin = child.stdin.take().expect("piped");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let out = wait_within(child, &format!("{cmd:?}"));
    writer.join().expect("stdin writer");
    let status = out.status.code().unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
    Run { stdout: out.stdout, stderr: out.stderr, status }
}

/// Starts `cmd` in a process group of its own, so that [`wait_within`] can show and kill
/// every process of a hang (forked guests too) and the pipes they hold close.
pub fn spawn_grouped(cmd: &mut Command) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0).spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// `cmd`'s output (stdin empty unless set), within the [`deadline`].
pub fn output(cmd: &mut Command) -> std::process::Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn_grouped(cmd);
    wait_within(child, &format!("{cmd:?}"))
}

/// Waits for `child` (started by [`spawn_grouped`]) and collects its output; past the
/// [`deadline`], fails the test with what each of its processes was doing, then kills them.
pub fn wait_within(child: std::process::Child, what: &str) -> std::process::Output {
    let pgid = child.id() as i32;
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let limit = deadline();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(limit) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            return None;
        }
        let report = hang_report(pgid);
        // The whole group: a forked guest holding the pipes would keep the wait below open.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
        Some(report)
    });
    let out = child.wait_with_output().expect("wait");
    let _ = done.send(());
    if let Some(report) = watchdog.join().expect("watchdog") {
        panic!(
            "{what} still ran after {limit:?} and was killed; its processes were:\n{report}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Each thread of each process in group `pgid`: its name, state, the syscall it is in, where
/// the kernel has it waiting, and its kernel stack (root can read it).
pub fn hang_report(pgid: i32) -> String {
    let mut r = String::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return r };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state ppid pgrp ...
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
        if after.split_whitespace().nth(2).and_then(|g| g.parse::<i32>().ok()) != Some(pgid) {
            continue;
        }
        let tasks = std::fs::read_dir(p.path().join("task")).into_iter().flatten().flatten();
        for t in tasks {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            let tstat = read("stat");
            let state = tstat.rsplit_once(')').and_then(|(_, a)| a.split_whitespace().next()).unwrap_or("?");
            r += &format!(
                "pid {pid} tid {} {} state {state} syscall [{}] wchan {}\n{}",
                t.file_name().to_string_lossy(),
                read("comm").trim(),
                read("syscall").trim(),
                read("wchan").trim(),
                read("stack")
            );
        }
    }
    r
}

/// Runs `argv` natively.
pub fn native<S: AsRef<OsStr>>(argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    let mut c = Command::new(argv[0].as_ref());
    c.args(&argv[1..]);
    run_cmd(c, stdin, cwd)
}

/// Runs `trapbox <tool_args...>`.
pub fn trapbox<S: AsRef<OsStr>>(tool_args: &[S], stdin: &[u8], cwd: &Path) -> Run {
    run_cmd(trapbox_command(tool_args), stdin, cwd)
}

/// The command `trapbox <tool_args...>` on this thread's engine ([`backend`]): `--backend`
/// goes after the tool's name for run, trace, record, replay, repl and fuzz unless the test gave one.
pub fn trapbox_command<S: AsRef<OsStr>>(tool_args: &[S]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trapbox"));
    let args: Vec<&OsStr> = tool_args.iter().map(|a| a.as_ref()).collect();
    let tool = args.first().and_then(|a| a.to_str()).unwrap_or("");
    let given = args.iter().take_while(|a| **a != "--").any(|a| *a == "--backend");
    if matches!(tool, "run" | "trace" | "record" | "replay" | "repl" | "fuzz") && !given {
        c.arg(tool).args(["--backend", backend().name()]).args(&args[1..]);
    } else {
        c.args(&args);
    }
    c
}

/// Runs `trapbox run -- argv...`.
pub fn boxed<S: AsRef<OsStr>>(argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    if backend() == Backend::Kvm {
        require_kvm();
    }
    let mut args: Vec<&OsStr> = vec![OsStr::new("run"), OsStr::new("--")];
    args.extend(argv.iter().map(|a| a.as_ref()));
    trapbox(&args, stdin, cwd)
}

/// Runs `argv` natively and in the box and asserts identical stdout, guest stderr and status.
pub fn assert_same_as_native<S: AsRef<OsStr>>(argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    let n = native(argv, stdin, cwd);
    let b = boxed(argv, stdin, cwd);
    let shown: Vec<String> = argv.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    assert_eq!(b.stdout_str(), n.stdout_str(), "stdout differs for {shown:?}\ntrapbox stderr:\n{}", b.stderr_str());
    assert_eq!(b.guest_stderr(), n.guest_stderr(), "stderr differs for {shown:?}");
    assert_eq!(b.status, n.status, "exit status differs for {shown:?}\ntrapbox stderr:\n{}", b.stderr_str());
    b
}

/// A fresh temporary directory under the target dir.
pub fn tempdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("t-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The guest program `name` built by `compiler` (`install`: how to get it) with `flags`,
/// dynamically linked, cached as NAME-TAG.
#[allow(dead_code)]
pub fn guest_built_by(compiler: &str, install: &str, name: &str, tag: &str, flags: &[&str]) -> PathBuf {
    build_with(compiler, install, name, &[], &format!("{name}-{tag}"), flags)
}

/// The guest program `name` built in `form` with extra gcc `flags` (e.g. `-include` of a
/// header beside it), cached as NAME-TAG-FORM. `guest` has no flags; this is for variants of
/// one source.
pub fn guest_with_flags(name: &str, form: Form, tag: &str, flags: &[&str]) -> PathBuf {
    build_guest(name, form, &format!("{name}-{tag}-{}", form.suffix()), flags)
}
