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

/// Fails unless /dev/kvm can be opened.
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!("trapbox's tests need KVM and /dev/kvm cannot be opened ({e}): run them on a machine with KVM (hardware or kvm_pvm) as a user in the kvm group");
    }
}

static BUILD: Mutex<()> = Mutex::new(());

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

fn run_cmd(mut cmd: Command, stdin: &[u8], cwd: &Path) -> Run {
    cmd.current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut sin = child.stdin.take().expect("piped");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    let status = out.status.code().unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
    Run { stdout: out.stdout, stderr: out.stderr, status }
}

/// Runs `argv` natively.
pub fn native<S: AsRef<OsStr>>(argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    let mut c = Command::new(argv[0].as_ref());
    c.args(&argv[1..]);
    run_cmd(c, stdin, cwd)
}

/// Runs `trapbox <tool_args...>`.
pub fn trapbox<S: AsRef<OsStr>>(tool_args: &[S], stdin: &[u8], cwd: &Path) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trapbox"));
    c.args(tool_args);
    run_cmd(c, stdin, cwd)
}

/// Runs `trapbox run -- argv...`.
pub fn boxed<S: AsRef<OsStr>>(argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    require_kvm();
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

/// The guest program `name` built in `form` with extra gcc `flags` (e.g. `-include` of a
/// header beside it), cached as NAME-TAG-FORM. `guest` has no flags; this is for variants of
/// one source.
pub fn guest_with_flags(name: &str, form: Form, tag: &str, flags: &[&str]) -> PathBuf {
    build_guest(name, form, &format!("{name}-{tag}-{}", form.suffix()), flags)
}
