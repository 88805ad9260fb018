//! Choosing the engine: `--backend auto` falls back to the in-process engine where KVM cannot
//! be had, the jobs work there, and a trace names the engine that recorded it.

mod common;

use common::{guest, tempdir, Form, Run};

/// `trapbox ARGS` exactly as given (no engine added by the test support).
fn plain(args: &[&str], dir: &std::path::Path) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trapbox"));
    c.args(args);
    common::run_cmd(c, b"", dir)
}
use std::process::Command;

/// Runs `trapbox ARGS` in a private mount namespace where /dev/kvm is /dev/null (as in a
/// container without KVM), claiming hardware KVM so that only the missing device can make
/// `auto` leave KVM.
fn without_kvm(args: &[&str], dir: &std::path::Path) -> Run {
    common::require_sud();
    let mut script = String::from("mount --bind /dev/null /dev/kvm && exec \"$0\"");
    for i in 1..=args.len() {
        script.push_str(&format!(" \"${i}\""));
    }
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script, env!("CARGO_BIN_EXE_trapbox")]);
    c.args(args).env("TRAPBOX_TRAP_PATH", "hw");
    let r = common::run_cmd(c, b"", dir);
    assert!(
        !r.stderr_str().contains("unshare:") && !r.stderr_str().contains("mount:"),
        "cannot hide /dev/kvm (needs root and util-linux): {}",
        r.stderr_str()
    );
    r
}

#[test]
fn auto_falls_back_to_in_process_without_dev_kvm() {
    let d = tempdir("no-kvm");
    let hello = guest("hello", Form::Dynamic);
    let hello = hello.to_str().unwrap();
    let t = without_kvm(&["trace", "-v", "-o", "t.txt", "--", hello], &d);
    assert_eq!(t.status, 0, "{}", t.stderr_str());
    assert!(t.stderr_str().contains("trap path: in-process"), "-v names the engine: {}", t.stderr_str());
    let lines = std::fs::read_to_string(d.join("t.txt")).unwrap();
    assert!(lines.contains("write(1, ") && lines.ends_with("+++ exited with 0 +++\n"), "{lines}");
    let native = common::native(&[hello], b"", &d);
    assert_eq!(t.stdout, native.stdout);

    let r = without_kvm(&["record", "-v", "-o", "h.trace", "--", hello], &d);
    assert_eq!(r.status, 0, "{}", r.stderr_str());
    assert!(r.stderr_str().contains("trap path: in-process"), "{}", r.stderr_str());
    let p = without_kvm(&["replay", "-v", "h.trace"], &d);
    assert_eq!((p.status, &p.stdout), (0, &native.stdout), "{}", p.stderr_str());
    assert!(
        p.stderr_str().contains("trap path: in-process"),
        "replay takes the recording's engine: {}",
        p.stderr_str()
    );

    // `run` is the sandbox: it does not quietly become something that is not one.
    let k = without_kvm(&["run", "--", hello], &d);
    assert_ne!(k.status, 0);
    let err = k.stderr_str();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("trapbox: ") && err.contains("/dev/kvm"), "{err}");
}

#[test]
fn a_trace_names_its_engine_and_replays_on_either() {
    common::require_kvm();
    common::require_sud();
    let d = tempdir("engines");
    let prog = guest("random_clock", Form::Static);
    let prog = prog.to_str().unwrap();
    for (rec, other) in [("inproc", "kvm"), ("kvm", "inproc")] {
        let trace = format!("{rec}.trace");
        let r = plain(&["record", "--backend", rec, "-o", &trace, "--", prog], &d);
        assert_eq!(r.status, 0, "{}", r.stderr_str());
        let same = plain(&["replay", "-v", &trace], &d);
        let inproc = same.stderr_str().contains("trap path: in-process");
        assert_eq!(inproc, rec == "inproc", "replay takes the recording's engine: {}", same.stderr_str());
        assert_eq!((same.status, &same.stdout), (0, &r.stdout), "{rec} replayed: {}", same.stderr_str());
        // On the other engine: the same run, or — where that engine gives programs another
        // CPU (PVM hides features the host has) — refused up front in one line.
        let moved = plain(&["replay", "--backend", other, &trace], &d);
        let refused = moved.stderr_str().contains("cannot replay on this CPU");
        if refused {
            assert!(moved.status != 0 && moved.stdout.is_empty(), "{}", moved.stderr_str());
            assert_eq!(moved.stderr_str().lines().count(), 1, "one line: {}", moved.stderr_str());
        } else {
            assert_eq!((moved.status, &moved.stdout), (0, &r.stdout), "{rec} on {other}: {}", moved.stderr_str());
        }
        let i = plain(&["inspect", &trace], &d);
        assert!(i.stdout_str().contains(&format!("engine: {rec}")), "{}", i.stdout_str());
    }
}

#[test]
fn a_guest_cannot_switch_off_the_in_process_interception() {
    common::require_kvm();
    common::require_sud();
    // tests/guests/disarm.c: SUD off and on with a selector of its own, SIGSYS and the fault
    // signals blocked, caught and ignored, a tiny alternate stack, seccomp, its own GS.
    for form in [Form::Static, Form::Dynamic] {
        let d = tempdir("disarm");
        let prog = guest("disarm", form);
        let prog = prog.to_str().unwrap();
        let kvm = plain(&["run", "--backend", "kvm", "-q", "--", prog], &d);
        let inproc = plain(&["trace", "--backend", "inproc", "-q", "-o", "t.txt", "--", prog], &d);
        assert_eq!(inproc.status, 0, "{form:?}: {}", inproc.stderr_str());
        assert_eq!(inproc.stdout_str(), kvm.stdout_str(), "{form:?}: the engines answer alike");
        let out = inproc.stdout_str();
        assert!(
            out.contains("SIGSYS handler ran for a syscall: 0\n") && out.ends_with("after all attempts: 0\n"),
            "{out}"
        );
        let lines = std::fs::read_to_string(d.join("t.txt")).unwrap();
        // Every syscall after every attempt was still a trap.
        assert_eq!(lines.lines().filter(|l| l.starts_with("getppid()")).count(), 3, "{lines}");
        assert!(lines.contains("write(1, \"after all attempts: 0\\n\", 22) = 22"), "{lines}");
        assert!(lines.ends_with("+++ exited with 0 +++\n"), "{lines}");
    }
}

#[test]
fn both_engines_print_the_same_strace_lines() {
    common::require_kvm();
    common::require_sud();
    // What differs between two runs of the same program on any engine (a pid, random bytes)
    // is masked; everything else, addresses included, is trapbox's choice and the same.
    let mask = |t: &str| -> String {
        t.lines()
            .map(|l| match l.split_once('(') {
                Some(("set_tid_address" | "getrandom" | "getpid" | "gettid", _)) => l.split('(').next().unwrap(),
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let d = tempdir("same-lines");
    let fio = d.join("fio");
    std::fs::create_dir(&fio).unwrap();
    for form in [Form::Static, Form::StaticPie, Form::Dynamic] {
        for (name, args) in
            [("hello", vec![]), ("fileio", vec![fio.to_str().unwrap()]), ("malloc", vec![]), ("poll", vec![])]
        {
            let prog = guest(name, form);
            let mut texts = Vec::new();
            for engine in ["kvm", "inproc"] {
                let out = format!("{engine}.txt");
                let mut argv = vec!["trace", "--backend", engine, "-o", &out, "--", prog.to_str().unwrap()];
                argv.extend(args.iter().copied());
                let r = plain(&argv, &d);
                assert_eq!(r.status, 0, "{name} {form:?} on {engine}: {}", r.stderr_str());
                texts.push(mask(&std::fs::read_to_string(d.join(&out)).unwrap()));
            }
            assert_eq!(texts[0], texts[1], "{name} {form:?}: kvm and inproc lines differ");
        }
    }
}

/// The number in `trapbox: ... N syscall sites rewritten` (from `-v`).
fn sites_rewritten(stderr: &str) -> usize {
    let line = stderr.lines().find(|l| l.ends_with("syscall sites rewritten")).unwrap_or_else(|| panic!("{stderr}"));
    let n = line.rsplit(", ").next().and_then(|p| p.split(' ').next()).and_then(|n| n.parse().ok());
    n.unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn hot_syscall_sites_are_rewritten_and_keep_every_register() {
    common::require_sud();
    let d = tempdir("rewrite");
    for form in [Form::Static, Form::Dynamic] {
        let prog = guest("rewrite_check", form);
        let r = plain(&["run", "-v", "--backend", "inproc", "--", prog.to_str().unwrap()], &d);
        assert_eq!(r.status, 0, "{form:?}: {}", r.stderr_str());
        assert!(
            r.stdout_str().starts_with("ok: 0 bad, with signals"),
            "{form:?}: {}{}",
            r.stdout_str(),
            r.stderr_str()
        );
        assert!(sites_rewritten(&r.stderr_str()) >= 1, "{form:?}: {}", r.stderr_str());
        let kept = plain(&["run", "-v", "--backend", "inproc", "--no-rewrite", "--", prog.to_str().unwrap()], &d);
        assert!(kept.stdout_str().starts_with("ok: 0 bad"), "{}", kept.stderr_str());
        assert_eq!(sites_rewritten(&kept.stderr_str()), 0, "{}", kept.stderr_str());
        // Traced, the same (the tracer sees every call, rewritten or not).
        let traced = plain(&["trace", "-v", "-c", "--backend", "inproc", "--", prog.to_str().unwrap()], &d);
        assert!(traced.stdout_str().starts_with("ok: "), "{}", traced.stderr_str());
        assert!(sites_rewritten(&traced.stderr_str()) >= 1, "{}", traced.stderr_str());
    }
}

#[test]
fn a_program_that_takes_gs_gets_its_syscall_sites_back() {
    common::require_sud();
    let d = tempdir("rewrite-gs");
    let prog = guest("rewrite_gs", Form::Dynamic);
    let r = plain(&["run", "-v", "--backend", "inproc", "--", prog.to_str().unwrap()], &d);
    assert_eq!(r.status, 0, "{}", r.stderr_str());
    assert_eq!(r.stdout_str(), "ok: 0 wrong, gs:[40] is the program's, area kept\n", "{}", r.stderr_str());
    assert_eq!(sites_rewritten(&r.stderr_str()), 0, "{}", r.stderr_str());
}
