//! Threads, processes and signals in the box (issue #6): guest programs and real software
//! that create threads, fork, exec, wait and handle signals, run natively and under
//! `trapbox run`, compared byte for byte (stdout, stderr without trapbox's own lines, exit
//! status); the adversarial guests run from a forked child and from a second thread, which
//! must leave them exactly as contained as when run directly; and `trapbox trace -f`
//! against `strace -f`.
//!
//! Every run here is bounded twice: `trapbox run --timeout 60` turns a guest hang into exit
//! status 124, and the harness kills the whole process group after a hard deadline, so a
//! trapbox hang — or a guest process left behind holding stdout open — fails the test with a
//! message instead of stalling CI.

#[macro_use]
mod common;

use common::{guest, guest_with_flags, require_kvm, tempdir, Form, Run};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The guest's own time limit inside trapbox (exit status 124 when it is hit).
const BOX_TIMEOUT: &str = "60";
/// The harness's hard limit for one command: above BOX_TIMEOUT, so trapbox's own timeout
/// normally reports first.
const HARD_LIMIT: Duration = Duration::from_secs(90);
/// After the main process exits, how long its stdout/stderr may stay open (held by a child
/// it left running) before that counts as a leaked process.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Runs `cmd` in its own process group with a hard deadline. Panics (after killing the
/// group) if the command outlives `HARD_LIMIT` or leaves processes holding its output open.
fn run_bounded(mut cmd: Command, stdin: &[u8], cwd: &Path, env: &[(&str, &str)]) -> Run {
    cmd.current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let pgid = child.id() as i32;
    let mut sin = child.stdin.take().expect("piped");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    };
    let out_rx = reader(Box::new(child.stdout.take().expect("piped")));
    let err_rx = reader(Box::new(child.stderr.take().expect("piped")));
    let kill_group = || {
        // SAFETY: signals the process group this function created for the command.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > HARD_LIMIT {
            kill_group();
            let _ = child.wait();
            panic!("{shown} still running after {HARD_LIMIT:?}: killed (a hang in trapbox or the guest)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let drained = Instant::now() + DRAIN_LIMIT;
    let take =
        |rx: std::sync::mpsc::Receiver<Vec<u8>>| rx.recv_timeout(drained.saturating_duration_since(Instant::now()));
    let (out, err) = (take(out_rx), take(err_rx));
    writer.join().expect("stdin writer");
    let (Ok(stdout), Ok(stderr)) = (out, err) else {
        kill_group();
        panic!("{shown} exited but something it started still holds its stdout/stderr open after {DRAIN_LIMIT:?}");
    };
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Run { stdout, stderr, status: code }
}

fn argv_cmd<S: AsRef<OsStr>>(argv: &[S]) -> Command {
    let mut c = Command::new(argv[0].as_ref());
    c.args(&argv[1..]);
    c
}

/// `argv` run natively.
fn native<S: AsRef<OsStr>>(argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    run_bounded(argv_cmd(argv), stdin, cwd, &[])
}

/// `trapbox run --timeout 60 -- argv...`.
fn boxed<S: AsRef<OsStr>>(argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    boxed_with(&["--timeout", BOX_TIMEOUT], argv, stdin, cwd)
}

/// `trapbox run RUN_OPTS -- argv...`.
fn boxed_with<S: AsRef<OsStr>>(run_opts: &[&str], argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    require_kvm();
    let mut args: Vec<&OsStr> = vec![OsStr::new("run")];
    args.extend(run_opts.iter().map(OsStr::new));
    args.push(OsStr::new("--"));
    args.extend(argv.iter().map(|a| a.as_ref()));
    run_bounded(common::trapbox_command(&args), stdin, cwd, &[])
}

fn shown<S: AsRef<OsStr>>(argv: &[S]) -> Vec<String> {
    argv.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect()
}

/// Asserts that a box run matches a native one: stdout, stderr without trapbox's lines, status.
fn assert_same(what: &str, b: &Run, n: &Run) {
    assert_eq!(b.stdout_str(), n.stdout_str(), "stdout differs for {what}\ntrapbox stderr:\n{}", b.stderr_str());
    assert_eq!(b.guest_stderr(), n.guest_stderr(), "stderr differs for {what}");
    assert_eq!(b.status, n.status, "exit status differs for {what}\ntrapbox stderr:\n{}", b.stderr_str());
}

/// Runs `argv` natively and in the box (same directory, one after the other) and compares.
fn same_as_native<S: AsRef<OsStr>>(argv: &[S], stdin: &[u8], cwd: &Path) -> Run {
    let n = native(argv, stdin, cwd);
    let b = boxed(argv, stdin, cwd);
    assert_same(&format!("{:?}", shown(argv)), &b, &n);
    b
}

/// The guests print their checks as booleans; natively every one must hold, or the guest
/// (not trapbox) is wrong and the comparison would prove nothing.
fn assert_all_yes(name: &str, r: &Run) {
    let out = r.stdout_str();
    for l in out.lines() {
        let failed = l.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == "no");
        assert!(!failed, "{name} fails natively: {l:?}\n{out}");
    }
}

/// Runs a guest natively and in the box: the native run must succeed with every check
/// holding (and say `expect` somewhere), the box run must match it.
fn guest_same(name: &str, form: Form, args: &[&str], expect: &str) -> Run {
    let dir = tempdir(name);
    let exe = guest(name, form);
    let mut argv = vec![exe.to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let n = native(&argv, b"", &dir);
    assert_all_yes(name, &n);
    assert!(n.stdout_str().contains(expect), "{name} natively did not print {expect:?}:\n{}", n.stdout_str());
    let b = boxed(&argv, b"", &dir);
    assert_same(&format!("{name} ({form:?}) {args:?}"), &b, &n);
    b
}

/// One test per link form: each guest checks a different part of #6 in all three forms
/// (static has no ld.so, static-pie relocates itself, dynamic goes through ld.so and
/// libc.so's signal trampolines and thread start-up).
macro_rules! forms {
    ($name:ident, $args:expr, $expect:expr, $status:expr) => {
        mod $name {
            use super::*;
            fn check(form: Form) {
                let r = guest_same(stringify!($name), form, $args, $expect);
                assert_eq!(r.status, $status);
            }
            each_form_each_backend!(check);
        }
    };
}

// Threads: mutex, condvar, barriers, TLS, gettid, memory unmapped by one thread and probed
// by another (EFAULT, not a stale page).
forms!(pthread_stress, &[], "joined 8, sum of results 28\n", 0);
// execve ends the other threads (one blocked in a host call, one spinning) first.
forms!(thread_exec, &[], "after exec\n", 0);
// fork from a second thread: the child's exit status and exec reach the parent.
forms!(thread_fork, &[], "thread: exec'd child exited 0\n", 0);
// The first thread leaves with pthread_exit; the second ends the process with exit(7).
forms!(thread_outlives_main, &[], "worker: main is gone, the process is not\n", 7);
forms!(thread_create, &["40"], "created and joined 40 threads, sum 780\n", 0);
forms!(futex_pingpong, &["200"], "ping-pong 200 rounds, partner saw 200\n", 0);
// Two threads taking exceptions at the same time: each resumes from its own (on KVM, each
// vCPU has its own ring-0 stack for the exception frames).
forms!(threads_trap, &["3000"], "2 threads, 3000 traps each, 0 lost\n", 0);
// Two threads doing pure CPU work: same checksum as natively.
forms!(cpu_threads, &["2", "2000000"], "threads 2 iterations 2000000 checksum ", 0);
// Processes: fork, exec (through /proc/self/exe and argv[0]), wait4/waitid, pipes, pgid/sid,
// vfork, ENOENT from execve.
forms!(fork_chain, &[], "\ndone\n", 0);
// Signals.
forms!(sig_segv, &[], "recovered 4\n", 0);
forms!(sig_alarm, &[], "ignored SIGALRM: nanosleep 0, ticks 6\n", 0);
forms!(sig_chld, &[], "child 4: si_pid ok yes, CLD_KILLED, si_status 15, reaped ok\n", 0);
forms!(sig_altstack, &[], "sigaltstack says SS_ONSTACK: yes\n", 0);
forms!(sig_pipe, &[], "handler: ran 1 time(s), write -1 EPIPE\n", 0);
forms!(sig_ucontext, &[], "without SA_RESTART: read returned -1 EINTR\n", 0);
forms!(sig_kill, &[], "delivered: TERM USR2 USR1\n", 0);

/// A signal aimed at one thread (pthread_kill, rt_tgsigqueueinfo) runs its handler on that
/// thread, whether it is blocked in a host call, sleeping or running user code. (It used to
/// end, one run in 20 to 80, with the guest killed by SIGSEGV: a second signal delivered at the
/// sleeping thread's rt_sigreturn "restarted" the rt_sigreturn; tests/guests/
/// sig_after_sigreturn.c now shows that case every time.)
fn sig_thread_runs_each_handler_on_its_thread() {
    for form in [Form::Static, Form::StaticPie, Form::Dynamic] {
        let r = guest_same("sig_thread", form, &[], "rt_tgsigqueueinfo to the thread spinning: ran on it\n");
        assert_eq!(r.status, 0);
    }
}

/// A fork-then-exec chain five processes deep; each level execs /proc/self/exe (which in
/// the box must be the guest's program, not trapbox) and passes its child's status up.
fn fork_exec_chain_five_deep() {
    for form in [Form::Static, Form::Dynamic] {
        let r = guest_same("fork_chain", form, &["chain", "5"], "depth 5: child exited 14\n");
        assert_eq!(r.status, 15, "the exit status must come up through all five levels");
        assert_eq!(r.stdout_str().matches("depth ").count(), 11, "{}", r.stdout_str());
    }
}

/// A dynamic program forks and execs a static one (no interpreter, other load path), and
/// a static one execs a dynamic one; the launcher reports exactly how the child ended.
fn exec_switches_between_static_and_dynamic() {
    let dir = tempdir("exec-forms");
    for (launcher, target) in [(Form::Dynamic, Form::Static), (Form::Static, Form::Dynamic)] {
        let argv = [guest("launch", launcher), guest("exitcode", target), "9".into()];
        let r = same_as_native(&argv, b"", &dir);
        assert_eq!(r.stdout_str(), "launch: exited 9\n");
        assert_eq!(r.guest_stderr(), "exiting with 9\n");
        assert_eq!(r.status, 9);
        let argv = [guest("launch", launcher), guest("hello", target)];
        assert_eq!(same_as_native(&argv, b"", &dir).stdout_str(), "hello, world\nlaunch: exited 0\n");
    }
}

/// fexecve of a close-on-exec descriptor (the usual way to open it): the program is found
/// although the exec closes the descriptor naming it, also when no path leads to the file.
fn fexecve_of_a_close_on_exec_descriptor() {
    let dir = tempdir("fexecve");
    let prog = dir.join("prog");
    for target in [Form::Dynamic, Form::Static] {
        std::fs::copy(guest("hello", target), &prog).unwrap();
        let argv = [guest("exec_then", Form::Static).into_os_string(), format!("@{}", prog.display()).into()];
        for r in [native(&argv, b"", &dir), boxed(&argv, b"", &dir)] {
            assert!(
                r.stdout_str().ends_with("\nhello, world\n") && r.status == 0,
                "{}{}",
                r.stdout_str(),
                r.stderr_str()
            );
        }
        // Deleted: only descriptor 5 (inherited) leads to it.
        let script = format!(
            "exec 5<{}; rm {0}; exec {} @/dev/fd/5",
            prog.display(),
            guest("exec_then", Form::Dynamic).display()
        );
        let argv = ["/bin/sh", "-c", &script];
        for run in [native::<&str>, boxed::<&str>] {
            std::fs::copy(guest("hello", target), &prog).unwrap();
            let r = run(&argv, b"", &dir);
            assert!(
                r.stdout_str().ends_with("\nhello, world\n") && r.status == 0,
                "{}{}",
                r.stdout_str(),
                r.stderr_str()
            );
            assert!(!prog.exists());
        }
    }
}

// ---- real software ----

/// The path of `name` in PATH, or a failure saying how to install it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found in PATH: install it (apt-get install {package}; .ci/run does)"))
}

fn bash() -> String {
    tool("bash", "bash").to_string_lossy().into_owned()
}

fn bash_pipeline() {
    let dir = tempdir("bash-pipe");
    let r = same_as_native(&[bash().as_str(), "-c", "ls / | sort | head -3"], b"", &dir);
    assert_eq!(r.stdout_str().lines().count(), 3);
}

fn bash_command_substitution() {
    let dir = tempdir("bash-subst");
    let r = same_as_native(&[bash().as_str(), "-c", "echo $(echo hi)"], b"", &dir);
    assert_eq!(r.stdout_str(), "hi\n");
}

fn bash_xargs() {
    let dir = tempdir("bash-xargs");
    let r = same_as_native(&[bash().as_str(), "-c", "seq 1 5 | xargs -n2 echo"], b"", &dir);
    assert_eq!(r.stdout_str(), "1 2\n3 4\n5\n");
}

/// Exit statuses and signals through bash: `$?` of a child killed by a signal, a subshell's
/// exit code, and a trap handler for a signal bash sends itself.
fn bash_statuses_and_traps() {
    let dir = tempdir("bash-trap");
    let script = "sh -c 'kill -TERM $$'; echo \"killed: $?\"; (exit 7); echo \"subshell: $?\"; \
                  trap 'echo got USR1' USR1; kill -USR1 $$; echo after; exit 3";
    let r = same_as_native(&[bash().as_str(), "-c", script], b"", &dir);
    assert_eq!(r.stdout_str(), "killed: 143\nsubshell: 7\ngot USR1\nafter\n");
    assert_eq!(r.status, 3);
}

const MAKEFILE: &str = "\
all: a.txt b.txt c.txt
\t@echo all done

a.txt:
\t@echo making a
\techo alpha > a.txt

b.txt: a.txt
\t@echo making b from a
\tcat a.txt a.txt > b.txt

c.txt:
\t@echo making c
\tprintf 'gamma\\n' > c.txt && test -s c.txt
";

/// `make` in a fresh directory natively and another in the box; stdout, status and the
/// files made must match. With -j2 the recipe order varies run to run, so lines are
/// compared as sorted sets (and `all done` must still come last).
fn make_same(jobs: &[&str]) {
    let make = tool("make", "make");
    let mut runs = Vec::new();
    for side in ["native", "box"] {
        let dir = tempdir(&format!("make-{side}"));
        std::fs::write(dir.join("Makefile"), MAKEFILE).unwrap();
        let mut argv = vec![make.to_string_lossy().into_owned()];
        argv.extend(jobs.iter().map(|s| s.to_string()));
        let r = if side == "native" { native(&argv, b"", &dir) } else { boxed(&argv, b"", &dir) };
        let files: Vec<String> = ["a.txt", "b.txt", "c.txt"]
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
            .collect();
        runs.push((r, files));
    }
    let ((n, nf), (b, bf)) = (&runs[0], &runs[1]);
    assert_eq!(n.status, 0, "make failed natively: {}", n.stderr_str());
    assert_eq!(b.status, 0, "make failed in the box:\n{}", b.stderr_str());
    assert_eq!(bf, nf, "the files made differ");
    assert_eq!(nf[1], "alpha\nalpha\n");
    let sorted = |r: &Run| {
        let mut l: Vec<String> = r.stdout_str().lines().map(String::from).collect();
        l.sort();
        l
    };
    if jobs.is_empty() {
        assert_eq!(b.stdout_str(), n.stdout_str());
    } else {
        assert_eq!(sorted(b), sorted(n), "box stdout:\n{}", b.stdout_str());
    }
    assert!(b.stdout_str().ends_with("all done\n"), "{}", b.stdout_str());
    assert_eq!(b.guest_stderr(), n.guest_stderr());
}

fn make_builds_a_small_makefile() {
    make_same(&[]);
}

fn make_j2_builds_a_small_makefile() {
    make_same(&["-j2"]);
}

/// The whole compiler driver in the box: gcc forks cc1, as and collect2/ld, then bash runs
/// the result.
fn gcc_compiles_and_runs_hello_inside_the_box() {
    tool("gcc", "gcc");
    let src = "#include <stdio.h>\nint main(void) { printf(\"built in the box: %d\\n\", 6 * 7); return 0; }\n";
    let mut outs = Vec::new();
    for side in ["native", "box"] {
        let dir = tempdir(&format!("gcc-{side}"));
        std::fs::write(dir.join("hello.c"), src).unwrap();
        let argv = [bash(), "-c".into(), "gcc -O2 hello.c -o hello && ./hello".into()];
        outs.push(if side == "native" { native(&argv, b"", &dir) } else { boxed(&argv, b"", &dir) });
    }
    assert_eq!(outs[0].stdout_str(), "built in the box: 42\n", "{}", outs[0].stderr_str());
    assert_same("gcc inside bash", &outs[1], &outs[0]);
}

fn python3() -> &'static str {
    // The system interpreter (a pyenv shim earlier in PATH would be a shell script).
    let p = "/usr/bin/python3";
    assert!(Path::new(p).exists(), "{p} not found: install python3 (apt-get install python3; .ci/run does)");
    p
}

fn python3_threading() {
    let dir = tempdir("py-threads");
    let prog = "import threading\n\
                parts = [0] * 4\n\
                def work(i):\n    parts[i] = sum(range(i * 50000, (i + 1) * 50000))\n\
                ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n\
                [t.start() for t in ts]\n[t.join() for t in ts]\n\
                print(sum(parts), threading.active_count())";
    let r = same_as_native(&[python3(), "-c", prog], b"", &dir);
    assert_eq!(r.stdout_str(), "19999900000 1\n");
}

fn python3_multiprocessing_pool() {
    let dir = tempdir("py-pool");
    // The fork start method explicitly (Python 3.14 changes the default to forkserver).
    let prog = "import multiprocessing as mp\n\
                def sq(x):\n    return x * x\n\
                if __name__ == '__main__':\n    \
                    with mp.get_context('fork').Pool(2) as p:\n        print(p.map(sq, [1, 2, 3, 4, 5]))";
    let r = same_as_native(&[python3(), "-c", prog], b"", &dir);
    assert_eq!(r.stdout_str(), "[1, 4, 9, 16, 25]\n");
}

/// V8 starts worker threads (platform, GC) before running a line of JavaScript.
fn node_runs_a_script() {
    let node = tool("node", "nodejs");
    let dir = tempdir("node");
    let r =
        same_as_native(&[node.to_string_lossy().as_ref(), "-e", "console.log([1,2,3].map(x=>x*2).join())"], b"", &dir);
    assert_eq!(r.stdout_str(), "2,4,6\n");
}

/// git init/add/commit/log with fixed identities and dates: the commit id depends only on
/// content, so it must be the same natively and in the box.
fn git_init_add_commit_log() {
    tool("git", "git");
    let script = "export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
                  GIT_AUTHOR_NAME=Box GIT_AUTHOR_EMAIL=box@example.com GIT_COMMITTER_NAME=Box \
                  GIT_COMMITTER_EMAIL=box@example.com GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' \
                  GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'; \
                  git -c init.defaultBranch=main init -q && echo one > a.txt && git add a.txt && \
                  git commit -q -m 'first commit' && echo two >> a.txt && git commit -q -am second && \
                  git log --format='%H %s'";
    let mut outs = Vec::new();
    for side in ["native", "box"] {
        let dir = tempdir(&format!("git-{side}"));
        let argv = [bash(), "-c".into(), script.into()];
        outs.push(if side == "native" { native(&argv, b"", &dir) } else { boxed(&argv, b"", &dir) });
    }
    let n = &outs[0];
    assert_eq!(n.status, 0, "git failed natively: {}", n.stderr_str());
    let subjects: Vec<&str> = n
        .stdout
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(&l[41..]).unwrap())
        .collect();
    assert_eq!(subjects, ["second", "first commit"]);
    assert_same("git", &outs[1], n);
}

// ---- adversarial guests from a forked child and from a second thread ----

/// (guest, args): each adversarial guest with a deterministic, contained verdict.
const ADVERSARIAL: &[(&str, &[&str])] = &[
    ("adv_trapbox_mem", &[]),
    ("adv_map_fixed", &[]),
    ("adv_proc_mem", &[]),
    ("adv_fds", &[]),
    ("adv_procfd", &[]),
    ("adv_badptr", &[]),
    ("adv_fork", &[]),
    ("adv_stack", &[]),
    ("adv_priv", &["hlt"]),
    ("adv_priv", &["wrmsr"]),
    ("adv_priv", &["movcr3"]),
    ("adv_priv", &["sysenter"]),
    ("adv_priv", &["ud2"]),
    ("adv_priv", &["int3"]),
];

fn launch_line(status: i32) -> String {
    if status > 128 {
        let name = match status - 128 {
            4 => "ILL",
            5 => "TRAP",
            7 => "BUS",
            8 => "FPE",
            9 => "KILL",
            11 => "SEGV",
            n => panic!("unexpected signal {n}"),
        };
        format!("launch: killed by SIG{name}\n")
    } else {
        format!("launch: exited {status}\n")
    }
}

/// The verdict a guest gets run directly in the box (what tests/adversarial.rs checks in
/// detail) must be the same when it runs in a forked child: same output, same status.
#[test]
fn adversarial_guests_from_a_forked_child() {
    let dir = tempdir("adv-child");
    let launch = guest("launch", Form::Dynamic);
    for (name, args) in ADVERSARIAL {
        let exe = guest(name, Form::Dynamic);
        let mut argv = vec![exe.to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let direct = boxed(&argv, b"", &dir);
        // Contained: either the guest finished its checks or a fault killed it.
        assert!(direct.status == 0 || direct.status > 128, "{name} {args:?} directly: {}", direct.stderr_str());
        argv.insert(0, launch.to_string_lossy().into_owned());
        let child = boxed(&argv, b"", &dir);
        let want = format!("{}{}", direct.stdout_str(), launch_line(direct.status));
        assert_eq!(
            child.stdout_str(),
            want,
            "{name} {args:?} from a forked child\ntrapbox stderr:\n{}",
            child.stderr_str()
        );
        assert_eq!(child.status, direct.status, "{name} {args:?}: {}", child.stderr_str());
    }
}

/// The same guests with their main running on a second thread (adv_in_thread.h): a
/// second vCPU must be as contained as the first.
#[test]
fn adversarial_guests_from_a_second_thread() {
    let dir = tempdir("adv-thread");
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/adv_in_thread.h");
    let flags = ["-include", header.to_str().expect("utf-8 path")];
    for (name, args) in ADVERSARIAL {
        let exe = guest(name, Form::Dynamic);
        let threaded = guest_with_flags(name, Form::Dynamic, "in-thread", &flags);
        let mut argv = vec![exe.to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let direct = boxed(&argv, b"", &dir);
        argv[0] = threaded.to_string_lossy().into_owned();
        let natively = native(&argv, b"", &dir);
        assert!(!natively.stdout_str().contains("adv_in_thread:"), "{}", natively.stdout_str());
        let t = boxed(&argv, b"", &dir);
        assert_eq!(
            t.stdout_str(),
            direct.stdout_str(),
            "{name} {args:?} on a second thread\ntrapbox stderr:\n{}",
            t.stderr_str()
        );
        assert_eq!(t.status, direct.status, "{name} {args:?}: {}", t.stderr_str());
    }
}

/// A guest spinning without syscalls in a forked child or on a second thread still ends
/// at the timeout: the watchdog must reach every process and vCPU of the guest.
fn timeout_reaches_children_and_threads() {
    let dir = tempdir("adv-loop");
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/adv_in_thread.h");
    let looping = guest("adv_loop", Form::Static);
    let threaded = guest_with_flags("adv_loop", Form::Static, "in-thread", &["-include", header.to_str().unwrap()]);
    let launch = guest("launch", Form::Static);
    for argv in [vec![launch.clone(), looping.clone()], vec![threaded.clone()]] {
        let r = boxed_with(&["--timeout", "2"], &argv, b"", &dir);
        assert_eq!(r.status, 124, "{argv:?}: {}", r.stderr_str());
        assert_eq!(r.stdout_str(), "looping\n");
        assert!(r.stderr_str().contains("timed out after 2 s"), "{}", r.stderr_str());
    }
}

// ---- trace -f ----

/// Per process (in order of first appearance): its pid as printed, the set of syscall
/// names, and how it ended. Parses strace's `-f` format on stderr: lines of the first
/// process carry no prefix until a second process exists, then every line is
/// `[pid N] ...`; `<unfinished ...>` / `<... NAME resumed>` split calls; strace's own
/// `strace: Process N attached` may land inside another line.
#[derive(Debug, Default)]
struct Proc {
    names: BTreeSet<String>,
    exits: Vec<String>,
}

/// A parsed `-f` trace: pids in order of appearance (None: unprefixed lines), each
/// process's calls, and the pids that clone/fork/vfork returned.
type Parsed = (Vec<Option<u32>>, BTreeMap<Option<u32>, Proc>, Vec<u32>);

fn parse_f(text: &str) -> Parsed {
    let text = strip_attached(text);
    let mut order = Vec::new();
    let mut procs: BTreeMap<Option<u32>, Proc> = BTreeMap::new();
    let mut children = Vec::new();
    for line in text.lines() {
        let (pid, rest) = match line.strip_prefix("[pid ") {
            Some(r) => {
                let end = r.find(']').unwrap_or(0);
                (r[..end].trim().parse::<u32>().ok(), r[end + 1..].trim_start())
            }
            None => (None, line),
        };
        if rest.is_empty() || rest.starts_with("---") || rest.starts_with("strace:") || rest.starts_with("trapbox:") {
            continue;
        }
        if !order.contains(&pid) {
            order.push(pid);
        }
        let p = procs.entry(pid).or_default();
        if rest.starts_with("+++") {
            p.exits.push(rest.to_string());
            continue;
        }
        let name = match rest.strip_prefix("<... ") {
            Some(r) => r.split(' ').next().unwrap_or(""),
            None => rest.split('(').next().unwrap_or(""),
        };
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            p.names.insert(name.to_string());
            if matches!(name, "clone" | "clone3" | "fork" | "vfork") && !rest.contains("unfinished") {
                if let Some(n) = rest.rsplit("= ").next().and_then(|v| v.trim().parse::<u32>().ok()) {
                    children.push(n);
                }
            }
        }
    }
    (order, procs, children)
}

fn strip_attached(text: &str) -> String {
    let mut s = text.to_string();
    while let Some(a) = s.find("strace: Process ") {
        let Some(len) = s[a..].find(" attached\n") else { break };
        s.replace_range(a..a + len + " attached\n".len(), "");
    }
    s
}

/// The process tree of a trace: the leader's set of names (unprefixed lines plus
/// `[pid LEADER]` ones), then each child's, keyed by the order the children appeared;
/// asserts that every prefixed pid other than the leader's is one a clone/fork returned.
fn tree(who: &str, text: &str) -> Vec<(BTreeSet<String>, Vec<String>)> {
    let (order, mut procs, children) = parse_f(text);
    let leader_pid = order.iter().flatten().copied().find(|p| !children.contains(p));
    let mut out = Vec::new();
    let mut lead = procs.remove(&None).unwrap_or_default();
    if let Some(l) = leader_pid {
        let more = procs.remove(&Some(l)).unwrap_or_default();
        lead.names.extend(more.names);
        lead.exits.extend(more.exits);
    }
    out.push((lead.names, lead.exits));
    for pid in order.iter().flatten() {
        if let Some(p) = procs.remove(&Some(*pid)) {
            assert!(children.contains(pid), "{who}: [pid {pid}] is not a pid any clone/fork returned ({children:?})");
            out.push((p.names, p.exits));
        }
    }
    for (names, _) in &mut out {
        // Documented difference (tests/trace.rs): glibc's rseq registration.
        names.remove("rseq");
    }
    out
}

/// `trapbox trace -f` follows a forked child like `strace -f`: the child's lines carry
/// `[pid N]` with N the pid fork returned to the parent, and each process makes the same
/// set of syscalls as under strace (compared per process; addresses, pids and order of
/// interleaving are not).
fn trace_f_follows_children_like_strace() {
    require_kvm();
    let dir = tempdir("trace-f");
    let script = "/bin/true; echo x";
    let s = native(&["strace", "-f", bash().as_str(), "-c", script], b"", &dir);
    assert_eq!(s.stdout_str(), "x\n", "strace -f failed (install strace): {}", s.stderr_str());
    let c = common::trapbox_command(&["trace", "-f", "--", bash().as_str(), "-c", script]);
    let t = run_bounded(c, b"", &dir, &[]);
    assert_eq!(t.stdout_str(), "x\n", "trapbox stderr:\n{}", t.stderr_str());
    assert_eq!(t.status, 0);
    let st = tree("strace", &s.stderr_str());
    let tt = tree("trapbox", &t.stderr_str());
    assert_eq!(st.len(), 2, "strace saw {} processes", st.len());
    assert_eq!(tt.len(), st.len(), "processes traced differ\ntrapbox:\n{}", t.stderr_str());
    for (i, ((sn, se), (tn, te))) in st.iter().zip(&tt).enumerate() {
        let who = if i == 0 { "bash" } else { "the forked child" };
        assert_eq!(
            tn,
            sn,
            "{who}: syscalls differ\nonly in trapbox: {:?}\nonly in strace: {:?}",
            tn.difference(sn).collect::<Vec<_>>(),
            sn.difference(tn).collect::<Vec<_>>()
        );
        assert_eq!(te, se, "{who}: exit lines differ");
    }
    assert!(tt[0].0.contains("wait4") && tt[1].0.contains("execve"), "{tt:?}");
}

// Every test above runs on both engines.
each_backend!(
    sig_thread_runs_each_handler_on_its_thread,
    fork_exec_chain_five_deep,
    exec_switches_between_static_and_dynamic,
    fexecve_of_a_close_on_exec_descriptor,
    bash_pipeline,
    bash_command_substitution,
    bash_xargs,
    bash_statuses_and_traps,
    make_builds_a_small_makefile,
    make_j2_builds_a_small_makefile,
    gcc_compiles_and_runs_hello_inside_the_box,
    python3_threading,
    python3_multiprocessing_pool,
    node_runs_a_script,
    git_init_add_commit_log,
    timeout_reaches_children_and_threads,
    trace_f_follows_children_like_strace,
);
