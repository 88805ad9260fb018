//! `trapbox record` / `trapbox replay`: replays reproduce recorded output byte for byte, need
//! no host input, and stop clearly on divergence, truncation and corruption.

#[macro_use]
mod common;

use common::{guest, native, tempdir, trapbox, Form};
use std::path::{Path, PathBuf};
use trapbox::tools::record::{Event, TraceReader, TraceWriter};

fn record(dir: &Path, trace: &Path, argv: &[String], stdin: &[u8]) -> common::Run {
    let mut a = vec!["record".to_string(), "-o".into(), trace.to_string_lossy().into_owned(), "--".into()];
    a.extend(argv.iter().cloned());
    trapbox(&a, stdin, dir)
}

fn replay(dir: &Path, trace: &Path) -> common::Run {
    trapbox(&["replay".as_ref(), trace.as_os_str()], b"this stdin is ignored\n", dir)
}

/// Replays `trace` `times` times from `dir`: each must exit 0 and print `stdout` byte for byte
/// (`what` names the case in a failure). Returns the replays for further checks.
fn replays_as_recorded(dir: &Path, trace: &Path, stdout: &[u8], times: usize, what: &str) -> Vec<common::Run> {
    (0..times)
        .map(|i| {
            let rep = replay(dir, trace);
            assert_eq!(rep.status, 0, "{what}: replay {i}: {}", rep.stderr_str());
            assert!(
                rep.stdout == stdout,
                "{what}: replay {i} differs from the recording\nrecorded:\n{}\nreplayed:\n{}\n{}",
                String::from_utf8_lossy(stdout),
                rep.stdout_str(),
                rep.stderr_str()
            );
            rep
        })
        .collect()
}

fn setup(tag: &str, form: Form) -> (PathBuf, PathBuf, Vec<String>) {
    common::require_kvm();
    let d = tempdir(tag);
    let input = d.join("input.txt");
    std::fs::write(&input, "recorded file contents\n").unwrap();
    let argv = vec![guest("nondet", form).to_string_lossy().into_owned(), input.to_string_lossy().into_owned()];
    let trace = d.join("run.trace");
    (d, trace, argv)
}

fn replay_reproduces_nondeterministic_output_without_its_inputs() {
    for form in [Form::Static, Form::Dynamic] {
        let (d, trace, argv) = setup("rr-nondet", form);
        // The output really is nondeterministic.
        let a = native(&argv, b"x\n", &d);
        let b = native(&argv, b"x\n", &d);
        assert_ne!(a.stdout, b.stdout, "two native runs printed the same");
        let rec = record(&d, &trace, &argv, b"typed on stdin\n");
        assert_eq!(rec.status, 0, "{}", rec.stderr_str());
        let out = rec.stdout_str();
        assert!(out.contains("file recorded file contents\n") && out.ends_with("stdin typed on stdin\n"), "{out}");
        // Replay needs neither the input file nor stdin.
        std::fs::remove_file(d.join("input.txt")).unwrap();
        replays_as_recorded(&d, &trace, &rec.stdout, 3, &format!("{form:?}"));
    }
}

fn replay_reproduces_python_and_system_binaries() {
    common::require_kvm();
    let d = tempdir("rr-sys");
    std::fs::write(d.join("data.txt"), "b\nc\na\n".repeat(1000)).unwrap();
    let runs: Vec<Vec<String>> = vec![
        vec!["/usr/bin/python3".into(), "-c".into(), "import os, time, json, hashlib; print(os.urandom(8).hex(), time.time(), hashlib.sha256(json.dumps([1,2]).encode()).hexdigest())".into()],
        vec!["/usr/bin/sort".into(), "data.txt".into()],
        vec!["/usr/bin/sha256sum".into(), "data.txt".into()],
    ];
    for (i, argv) in runs.iter().enumerate() {
        let trace = d.join(format!("{i}.trace"));
        let rec = record(&d, &trace, argv, b"");
        assert_eq!(rec.status, 0, "{argv:?}: {}", rec.stderr_str());
        std::fs::write(d.join("data.txt"), "changed after recording\n").unwrap();
        let rep = replay(&d, &trace);
        assert_eq!(rep.stdout, rec.stdout, "{argv:?}\n{}", rep.stderr_str());
        assert_eq!(rep.status, 0);
        std::fs::write(d.join("data.txt"), "b\nc\na\n".repeat(1000)).unwrap();
    }
}

fn crash_and_exit_status_replay() {
    common::require_kvm();
    let d = tempdir("rr-crash");
    let trace = d.join("c.trace");
    let rec = record(&d, &trace, &[guest("mprotect", Form::Static).to_string_lossy().into_owned()], b"");
    assert_eq!(rec.status, 139);
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 139, "{}", rep.stderr_str());
    assert_eq!(rep.stdout, rec.stdout);
    // A replay runs on to the recorded fault and says the same of it, past a fault the program
    // handled on the way.
    let prog = guest("fault_twice", Form::Dynamic).to_string_lossy().into_owned();
    let rec = record(&d, &trace, std::slice::from_ref(&prog), b"");
    assert_eq!((rec.status, rec.stdout_str().as_str()), (139, "handled the first fault\n"), "{}", rec.stderr_str());
    let crash = rec.stderr_str().lines().find(|l| l.contains("killed by SIGSEGV")).map(str::to_string);
    let crash = crash.unwrap_or_else(|| panic!("no crash line: {}", rec.stderr_str()));
    assert!(crash.contains("write at 0x10"), "{crash}");
    let rep = replay(&d, &trace);
    assert_eq!((rep.status, rep.stdout.as_slice()), (139, rec.stdout.as_slice()), "{}", rep.stderr_str());
    assert!(rep.stderr_str().contains(&crash), "{}\nwant {crash}", rep.stderr_str());
    // A fault elsewhere than the recorded one is a divergence.
    rewrite_trace(&trace, "faulted end", |e| match e {
        Event::End(trapbox::tools::record::EndEvent::Faulted { rip, .. }) => {
            *rip += 1;
            true
        }
        _ => false,
    });
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127, "{}", rep.stderr_str());
    assert!(
        rep.stderr_str().contains("diverged") && rep.stderr_str().contains("from a fault at"),
        "{}",
        rep.stderr_str()
    );
    let rec = record(&d, &trace, &[guest("exitcode", Form::Dynamic).to_string_lossy().into_owned(), "42".into()], b"");
    assert_eq!(rec.status, 42);
    let rep = replay(&d, &trace);
    assert_eq!((rep.status, rep.guest_stderr()), (42, "exiting with 42\n".to_string()));
}

/// Rewrites a trace through `edit`, which changes one event and says so; panics if none was.
fn rewrite_trace(trace: &Path, what: &str, mut edit: impl FnMut(&mut Event) -> bool) {
    let bytes = std::fs::read(trace).unwrap();
    let mut r = TraceReader::new(&bytes[..]).unwrap();
    let mut w = TraceWriter::new(Vec::new()).unwrap();
    let mut done = false;
    while let Some(mut e) = r.next_event().unwrap() {
        done = done || edit(&mut e);
        w.push(&e).unwrap();
    }
    assert!(done, "no {what} in the trace");
    std::fs::write(trace, w.finish().unwrap()).unwrap();
}

/// Rewrites a trace, changing the result of the first `read` from stdin to `new_len` bytes.
fn edit_first_stdin_read(trace: &Path, new_len: i64) {
    let mut done = false;
    rewrite_trace(trace, "read from stdin", |e| match e {
        Event::Syscall(s) if !done && s.nr == 0 && s.args[0] == 0 => {
            s.ret = new_len;
            done = true;
            true
        }
        _ => false,
    });
}

/// Issue 19: a trace names the CPU view it was recorded with; a replay on a CPU that lacks a
/// feature the program was told of, or saves other state, is refused before the program runs,
/// in one line that names what is missing.
fn replay_on_another_cpu_view_is_refused_up_front() {
    use trapbox::trap::CpuView;
    use trapbox::vm::arch::cpuview::Leaf;
    let (d, trace, argv) = setup("rr-cpu", Form::Static);
    let rec = record(&d, &trace, &argv, b"input\n");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    let recorded = {
        let bytes = std::fs::read(&trace).unwrap();
        let mut r = TraceReader::new(&bytes[..]).unwrap();
        match r.next_event().unwrap() {
            Some(Event::Start(s)) => s.cpu.expect("a new trace names its CPU view"),
            e => panic!("first event {e:?}"),
        }
    };
    assert_eq!(recorded.inconsistencies(), vec![], "{recorded:?}");
    // The same trace replays here.
    assert_eq!(replay(&d, &trace).status, 0);

    // A recording made on a CPU with AMX tiles (CPUID.7:EDX bit 24).
    let with = |edit: &dyn Fn(&mut Vec<Leaf>) -> u64| {
        let mut leaves = recorded.leaves().to_vec();
        let xcr0 = edit(&mut leaves);
        CpuView::new(xcr0, leaves)
    };
    let amx = with(&|l| {
        l.iter_mut().filter(|l| (l.leaf, l.sub) == (7, 0)).for_each(|l| l.regs[3] |= 1 << 24);
        recorded.xcr0()
    });
    rewrite_trace(&trace, "Start", |e| match e {
        Event::Start(s) => {
            s.cpu = Some(Box::new(amx.clone()));
            true
        }
        _ => false,
    });
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127, "{}", rep.stderr_str());
    assert_eq!(rep.stdout_str(), "", "nothing of the program ran");
    let err = rep.stderr_str();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot replay on this CPU") && err.contains("amx_tile"), "{err}");

    // A recording whose CPU saved one more component (PKRU) than this one.
    let pkru = with(&|l| {
        l.push(Leaf { leaf: 0xd, sub: 9, regs: [8, 4096, 0, 0] });
        recorded.xcr0() | 1 << 9
    });
    rewrite_trace(&trace, "Start", |e| match e {
        Event::Start(s) => {
            s.cpu = Some(Box::new(pkru.clone()));
            true
        }
        _ => false,
    });
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127, "{}", rep.stderr_str());
    assert!(rep.stderr_str().contains("PKRU"), "{}", rep.stderr_str());
}

fn edited_trace_diverges_with_a_clear_report() {
    let (d, trace, argv) = setup("rr-diverge", Form::Static);
    let rec = record(&d, &trace, &argv, b"input\n");
    assert_eq!(rec.status, 0);
    // The guest prints what it read; claiming it read 2 bytes changes the next write.
    edit_first_stdin_read(&trace, 2);
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127, "{}", rep.stderr_str());
    let err = rep.stderr_str();
    assert!(err.contains("replay diverged at event "), "{err}");
    assert!(err.contains("the trace has write(0x1, ") && err.contains("the program made write(0x1, "), "{err}");
}

fn changed_binary_is_refused() {
    common::require_kvm();
    let d = tempdir("rr-binary");
    let exe = d.join("prog");
    std::fs::copy(guest("hello", Form::Static), &exe).unwrap();
    let trace = d.join("t.trace");
    assert_eq!(record(&d, &trace, &[exe.to_string_lossy().into_owned()], b"").status, 0);
    std::fs::copy(guest("exitcode", Form::Static), &exe).unwrap();
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127);
    assert!(rep.stderr_str().contains("the program changed since it was recorded"), "{}", rep.stderr_str());
}

fn truncated_trace_replays_its_prefix() {
    common::require_kvm();
    let d = tempdir("rr-trunc");
    let trace = d.join("t.trace");
    // Long enough to span many chunks (one every 50 ms).
    let rec =
        record(&d, &trace, &[guest("getppid_loop", Form::Dynamic).to_string_lossy().into_owned(), "20000".into()], b"");
    assert_eq!(rec.status, 0);
    let full = std::fs::read(&trace).unwrap();
    std::fs::write(&trace, &full[..full.len() * 2 / 3]).unwrap();
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 125, "{}", rep.stderr_str());
    assert!(
        rep.stderr_str().contains("it was cut short") && rep.stderr_str().contains("replayed its complete prefix"),
        "{}",
        rep.stderr_str()
    );
    assert!(rec.stdout.starts_with(&rep.stdout), "the prefix's output is a prefix of the recorded output");
}

fn recording_killed_with_sigkill_leaves_a_replayable_prefix() {
    use std::process::Stdio;
    common::require_kvm();
    let d = tempdir("rr-kill");
    let trace = d.join("k.trace");
    let mut child = common::trapbox_command(&["record", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(guest("getppid_loop", Form::Static))
        .arg("100000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let size = std::fs::metadata(&trace).unwrap().len();
    assert!(size > 1000, "the recording streamed nothing in 1.5 s ({size} bytes)");
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 125, "{}", rep.stderr_str());
    assert!(rep.stderr_str().contains("the trace ends after event"), "{}", rep.stderr_str());
}

fn corrupt_chunk_is_named() {
    let (d, trace, argv) = setup("rr-corrupt", Form::Dynamic);
    assert_eq!(record(&d, &trace, &argv, b"in\n").status, 0);
    let mut bytes = std::fs::read(&trace).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&trace, &bytes).unwrap();
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127, "{}", rep.stderr_str());
    let err = rep.stderr_str();
    assert!(err.contains("chunk ") && err.contains(" is corrupt"), "{err}");
}

fn inspect_summarises_a_trace() {
    let (d, trace, argv) = setup("rr-inspect", Form::Static);
    assert_eq!(record(&d, &trace, &argv, b"in\n").status, 0);
    let r = trapbox(&["inspect".as_ref(), trace.as_os_str()], b"", &d);
    let out = r.stdout_str();
    assert_eq!(r.status, 0, "{out}");
    assert!(out.contains("kind: trapbox trace (format version 10)"), "{out}");
    assert!(out.contains(&format!("engine: {}", common::backend().name())), "{out}");
    assert!(out.contains(&format!("program: {}", argv[0])), "{out}");
    assert!(out.contains("end: exited with 0"), "{out}");
    let getrandom = out.lines().find(|l| l.trim_end().ends_with(" getrandom")).expect("per-syscall count");
    assert!(getrandom.trim_start().starts_with('1') || getrandom.trim_start().starts_with('2'), "{getrandom}");
    assert!(out.contains("machine-dependent instructions"));
    assert!(out.contains(" bytes ("), "{out}");

    // Every event on a line, numbered as divergences number them.
    let events: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("events: "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("event count");
    let r = trapbox(&["inspect".as_ref(), "--events".as_ref(), trace.as_os_str()], b"", &d);
    assert_eq!(r.status, 0, "{}", r.stderr_str());
    let lines: Vec<String> = r.stdout_str().lines().map(str::to_string).collect();
    assert_eq!(lines.len() as u64, events, "{}", r.stdout_str());
    assert_eq!(lines[0].split_whitespace().take(3).collect::<Vec<_>>(), ["0", "thread", "0"], "{}", lines[0]);
    assert!(lines[0].ends_with(&format!("the start of a run: {}", argv[0])), "{}", lines[0]);
    let read = lines.iter().find(|l| l.contains("  read(0x0, ")).expect("the stdin read");
    assert!(read.ends_with(" = 3 (3 bytes written)"), "{read}");
    assert!(lines.last().unwrap().ends_with("the end of the run (exit 0)"), "{}", r.stdout_str());
    let r = trapbox(&["inspect", "--events", &argv[0]], b"", &d);
    assert_eq!(r.status, 127, "trapbox's own errors exit 127");
    assert!(r.stderr_str().contains("not a trapbox trace (--events lists a trace's events)"), "{}", r.stderr_str());
}

/// A shell that forks and reaps its children in a SIGCHLD handler: the recording follows the
/// shell (the children's pids, wait statuses and pipe data are its syscall results), and the
/// signals delivered to its handler come back at the same points on replay.
fn forking_shell_with_sigchld_handler_replays() {
    let dir = tempdir("rr-shell");
    let trace = dir.join("shell.trace");
    let script =
        "/bin/true; echo \"true: $?\"; /bin/false; echo \"false: $?\"; echo \"lines: $(printf 'a\\nb\\n' | wc -l)\"";
    let argv: Vec<String> = ["bash", "-c", script].iter().map(|s| s.to_string()).collect();
    let rec = record(&dir, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert_eq!(rec.stdout_str(), "true: 0\nfalse: 1\nlines: 2\n");
    let info = common::trapbox(&["inspect", &trace.to_string_lossy()], b"", &dir);
    assert!(info.stdout_str().contains("signal SIGCHLD"), "no SIGCHLD recorded:\n{}", info.stdout_str());
    replays_as_recorded(&dir, &trace, &rec.stdout, 2, "bash");
}

/// The number after `label` in `text` (`trapbox: 623 VM exits` → 623 for "VM exits").
fn count_before(text: &str, label: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let at = l.find(label)?;
            l[..at].split(|c: char| !c.is_ascii_digit()).rev().find(|w| !w.is_empty())?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no \"{label}\" in:\n{text}"))
}

fn time_calls_run_in_the_vdso_and_replay() {
    common::require_kvm();
    // glibc in its three link forms, and musl, whose vDSO reader is another implementation.
    let builds = [
        ("static", guest("vdso_time", Form::Static)),
        ("static-pie", guest("vdso_time", Form::StaticPie)),
        ("dynamic", guest("vdso_time", Form::Dynamic)),
        ("musl", common::musl_guest("vdso_time")),
    ];
    for (form, exe) in builds {
        let d = tempdir("rr-vdso");
        let exe = exe.to_string_lossy().into_owned();
        for mode in ["kernel-too", "vdso-only"] {
            let argv = vec![exe.clone(), "3000".into(), mode.into()];
            assert_ne!(native(&argv, b"", &d).stdout, native(&argv, b"", &d).stdout, "not nondeterministic natively");
            let trace = d.join(format!("{mode}.trace"));
            let mut a =
                vec!["record".to_string(), "-v".into(), "-o".into(), trace.to_string_lossy().into_owned(), "--".into()];
            a.extend(argv.iter().cloned());
            let rec = trapbox(&a, b"", &d);
            assert_eq!(rec.status, 0, "{form} {mode}: {}", rec.stderr_str());
            assert!(
                rec.stdout_str().starts_with("calls failed 0, monotonic went back 0 times\n"),
                "{}",
                rec.stdout_str()
            );
            // Over 15,000 time calls; only those the kernel answers (a time zone, the CPU-time
            // and invalid clocks: under 600) and those past a full buffer (vdso-only: one in
            // 1,636) leave the guest.
            let exits = count_before(&rec.stderr_str(), "VM exits");
            assert!(exits < 1200, "{form} {mode}: {exits} exits: the time calls are not answered in the vDSO");
            let info = trapbox(&["inspect", &trace.to_string_lossy()], b"", &d).stdout_str();
            let in_vdso = count_before(&info, "time calls answered in the vDSO");
            assert!(in_vdso >= 14_000, "{form} {mode}: {in_vdso} time calls in the trace\n{info}");
            replays_as_recorded(&d, &trace, &rec.stdout, 2, &format!("{form} {mode}"));
        }
    }
}

/// Rewrites a trace, changing the number of time calls in its first batch of more than one.
fn edit_first_time_batch(trace: &Path, more: bool) {
    let mut done = false;
    rewrite_trace(trace, "batch of time calls", |e| match e {
        Event::TimeCalls(c) if !done && c.len() > 1 => {
            if more {
                c.push(c[0]);
            } else {
                c.pop();
            }
            done = true;
            true
        }
        _ => false,
    });
}

fn edited_time_calls_diverge_with_a_clear_report() {
    common::require_kvm();
    let d = tempdir("rr-vdso-diverge");
    let argv = vec![guest("vdso_time", Form::Static).to_string_lossy().into_owned(), "100".into()];
    let trace = d.join("t.trace");
    for (more, says) in [(true, "time calls in the vDSO before"), (false, "the program made clock_gettime(")] {
        assert_eq!(record(&d, &trace, &argv, b"").status, 0);
        edit_first_time_batch(&trace, more);
        let rep = replay(&d, &trace);
        assert_eq!(rep.status, 127, "{}", rep.stderr_str());
        let err = rep.stderr_str();
        assert!(err.contains("replay diverged at event ") && err.contains(says), "{err}");
    }
}

fn guest_attacks_on_its_vdso_record_and_replay_alike() {
    common::require_kvm();
    let d = tempdir("rr-adv-vdso");
    let trace = d.join("t.trace");
    for (attack, status, last) in [
        ("scribble", 0, "survived\n"),
        ("unmap", 139, "pid is positive: 1\n"),
        ("code", 0, "clock_gettime now returns -1\n"),
    ] {
        let argv = vec![guest("adv_vdso", Form::Static).to_string_lossy().into_owned(), attack.into()];
        let rec = record(&d, &trace, &argv, b"");
        assert_eq!(rec.status, status, "{attack}: {}", rec.stderr_str());
        assert!(rec.stdout_str().ends_with(last), "{attack}: {}", rec.stdout_str());
        let rep = replay(&d, &trace);
        assert_eq!((rep.status, rep.stdout_str()), (status, rec.stdout_str()), "{attack}: {}", rep.stderr_str());
    }
}

fn output_of_children_and_other_descriptors_replays() {
    // The recorded shell's children write to stdout and stderr themselves (ls, head, echo
    // binaries), the shell writes through a descriptor it duplicated, and some output goes into
    // a pipe the shell reads: replay reproduces stdout and stderr byte for byte, each on its own.
    let dir = tempdir("rr-children-out");
    let trace = dir.join("out.trace");
    let script = "echo start; ls / | head -3; /bin/echo to-stderr >&2; x=$(/bin/echo sub); echo \"got $x\"; \
                  exec 7>&1; echo 'via fd 7' >&7; (/bin/echo in-subshell; /bin/echo err-in-subshell >&2); echo end";
    let argv: Vec<String> = ["bash", "-c", script].iter().map(|s| s.to_string()).collect();
    let rec = record(&dir, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    let out = rec.stdout_str();
    assert!(out.starts_with("start\n") && out.contains("got sub\nvia fd 7\nin-subshell\nend\n"), "{out}");
    assert_eq!(out.lines().count(), 8, "{out}");
    assert_eq!(rec.guest_stderr(), "to-stderr\nerr-in-subshell\n");
    let info = trapbox(&["inspect", &trace.to_string_lossy()], b"", &dir).stdout_str();
    // The shell's own writes (echo builtins, 5 lines) are replayed from its memory; the
    // children's output is in the trace.
    let own = "start\ngot sub\nvia fd 7\nend\n".len();
    let children = rec.stdout.len() + rec.guest_stderr().len() - own;
    assert!(
        info.contains(&format!("console output: 4 writes by the program, {children} bytes stored whole")),
        "{info}"
    );
    for rep in replays_as_recorded(&dir, &trace, &rec.stdout, 2, "bash") {
        assert_eq!(rep.guest_stderr(), rec.guest_stderr());
    }
}

fn rdrand_and_rdseed_are_trapped_and_replayed() {
    // The recorded CPUID view hides both, but a program may use them without asking: they are
    // patched like rdtsc, answered by the host's instruction and recorded, with the register
    // size (a 16-bit read keeps the register's upper bits) and the carry flag.
    common::require_kvm();
    let d = tempdir("rr-rdrand");
    for form in [Form::Static, Form::Dynamic] {
        let argv = vec![guest("rdrand", form).to_string_lossy().into_owned()];
        assert_ne!(native(&argv, b"", &d).stdout, native(&argv, b"", &d).stdout, "not random natively");
        let trace = d.join("r.trace");
        let rec = record(&d, &trace, &argv, b"");
        assert_eq!(rec.status, 0, "{}", rec.stderr_str());
        let out = rec.stdout_str();
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(out.lines().all(|l| l.contains("rdrand16 112233445566") && l.matches(" cf 1").count() == 4), "{out}");
        replays_as_recorded(&d, &trace, &rec.stdout, 2, &format!("{form:?}"));
    }
}

fn recorded_process_execs_across_link_forms_and_scripts() {
    common::require_kvm();
    let d = tempdir("rr-exec");
    std::fs::write(d.join("input.txt"), "read after three execs\n").unwrap();
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let script = d.join("script.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho script pid $$\nexec {} input.txt\n", s(guest("nondet", Form::Static))),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // static → dynamic → static-pie → a #! script run by the dynamic /bin/sh → static.
    let argv = vec![
        s(guest("exec_then", Form::Static)),
        s(guest("exec_then", Form::Dynamic)),
        s(guest("exec_then", Form::StaticPie)),
        s(script),
    ];
    assert_ne!(native(&argv, b"", &d).stdout, native(&argv, b"", &d).stdout, "not nondeterministic natively");
    let trace = d.join("exec.trace");
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    let out = rec.stdout_str();
    assert_eq!(out.matches("exec_then pid").count(), 3, "{out}");
    assert!(out.contains("script pid ") && out.contains("file read after three execs\n"), "{out}");
    let info = trapbox(&["inspect", &trace.to_string_lossy()], b"", &d).stdout_str();
    assert_eq!(info.matches("  exec (event ").count(), 4, "{info}");
    // The exec'd images read the clock in trapbox's vDSO too (the first image makes one call).
    assert!(count_before(&info, "time calls answered in the vDSO") >= 3, "{info}");
    std::fs::remove_file(d.join("input.txt")).unwrap();
    replays_as_recorded(&d, &trace, &rec.stdout, 2, "exec_then");

    // Thousands of time calls after an exec stay in the guest and replay.
    let argv =
        [s(guest("exec_then", Form::Static)), s(guest("vdso_time", Form::Dynamic)), "3000".into(), "vdso-only".into()];
    let trace = d.join("vdso.trace");
    let mut a = vec!["record".to_string(), "-v".into(), "-o".into(), s(trace.clone()), "--".into()];
    a.extend(argv.iter().cloned());
    let rec = trapbox(&a, b"", &d);
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    let exits = count_before(&rec.stderr_str(), "VM exits");
    assert!(exits < 1200, "{exits} exits: the exec'd program's time calls are not answered in the vDSO");
    let info = trapbox(&["inspect", &trace.to_string_lossy()], b"", &d).stdout_str();
    assert!(count_before(&info, "time calls answered in the vDSO") >= 14_000, "{info}");
    let rep = replay(&d, &trace);
    assert_eq!((rep.status, rep.stdout_str()), (0, rec.stdout_str()), "{}", rep.stderr_str());
}

fn exec_of_a_changed_or_missing_program_is_refused_and_failed_execs_replay() {
    common::require_kvm();
    let d = tempdir("rr-exec-changed");
    let prog = d.join("prog");
    std::fs::copy(guest("hello", Form::Static), &prog).unwrap();
    let argv =
        vec![guest("exec_then", Form::Dynamic).to_string_lossy().into_owned(), prog.to_string_lossy().into_owned()];
    let trace = d.join("t.trace");
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert_eq!(replay(&d, &trace).stdout, rec.stdout);
    std::fs::copy(guest("exitcode", Form::Static), &prog).unwrap();
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127, "{}", rep.stderr_str());
    let err = rep.stderr_str();
    assert!(
        err.contains("replay diverged at event ") && err.contains("the program changed since it was recorded"),
        "{err}"
    );
    std::fs::remove_file(&prog).unwrap();
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127, "{}", rep.stderr_str());
    assert!(
        rep.stderr_str().contains(&format!("an exec of the recorded program {}", prog.display())),
        "{}",
        rep.stderr_str()
    );

    // A failed exec is an ordinary recorded result.
    let argv = vec![
        guest("exec_then", Form::Static).to_string_lossy().into_owned(),
        d.join("missing").to_string_lossy().into_owned(),
    ];
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 127, "{}", rec.stderr_str());
    assert!(rec.stdout_str().ends_with("exec_then: execv: No such file or directory\n"), "{}", rec.stdout_str());
    std::fs::write(d.join("missing"), "#!/bin/sh\necho now it exists\n").unwrap();
    let rep = replay(&d, &trace);
    assert_eq!((rep.status, rep.stdout_str()), (127, rec.stdout_str()), "{}", rep.stderr_str());
}

fn execs_by_relative_path_and_by_descriptor_replay_from_another_directory() {
    common::require_kvm();
    let d = tempdir("rr-exec-paths");
    let sub = d.join("sub");
    std::fs::create_dir_all(sub.join("deeper")).unwrap();
    std::fs::copy(guest("exec_then", Form::Dynamic), sub.join("deeper/prog")).unwrap();
    std::fs::copy(guest("exec_then", Form::Static), sub.join("first")).unwrap();
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    // Started by a relative path; then a shell changes directory and execs a relative path,
    // which execs a program through a descriptor (fexecve: /proc/self/fd/N).
    let argv = vec![
        "sub/first".to_string(),
        "/bin/sh".into(),
        "-c".into(),
        format!("cd sub/deeper && exec ./prog @{}", s(guest("nondet", Form::Static))),
    ];
    let trace = d.join("t.trace");
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert_eq!(rec.stdout_str().matches("exec_then pid").count(), 2, "{}", rec.stdout_str());
    assert!(rec.stdout_str().contains("\nrdtsc "), "{}", rec.stdout_str());
    // Replayed from another directory: no path is taken relative to where the replay runs.
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    replays_as_recorded(&elsewhere, &trace, &rec.stdout, 2, "from another directory");
}

/// Code whose mapping changes keeps its trapped instructions: mprotect of a patched text page,
/// generated code made executable, then moved by mremap.
fn patched_code_survives_mprotect_and_mremap() {
    common::require_kvm();
    let d = tempdir("rr-code-moves");
    for form in [Form::Static, Form::Dynamic] {
        let argv = vec![guest("code_moves", form).to_string_lossy().into_owned()];
        assert_ne!(native(&argv, b"", &d).stdout, native(&argv, b"", &d).stdout, "not nondeterministic natively");
        let trace = d.join("t.trace");
        let rec = record(&d, &trace, &argv, b"");
        assert_eq!(rec.status, 0, "{}", rec.stderr_str());
        assert_eq!(rec.stdout_str().matches("tsc ").count(), 8, "{}", rec.stdout_str());
        assert!(rec.stdout_str().ends_with("done\n"), "{}", rec.stdout_str());
        replays_as_recorded(&d, &trace, &rec.stdout, 2, &format!("{form:?}"));
    }
}

/// A signal that interrupted user code (no syscall in flight) is replayed at the instruction it
/// interrupted, with the registers it interrupted; where those cannot be found again within
/// the passes a replay steps over (a late turn of a counting loop), the replay reports a
/// divergence instead of delivering it elsewhere.
fn signals_interrupting_user_code_replay_there_or_diverge() {
    common::require_kvm();
    let d = tempdir("rr-sig-spin");
    for form in [Form::Static, Form::Dynamic] {
        let exe = guest("sig_spin", form).to_string_lossy().into_owned();
        let wait = vec![exe.clone(), "wait".into()];
        assert_ne!(native(&wait, b"", &d).stdout, native(&wait, b"", &d).stdout, "not nondeterministic natively");
        let trace = d.join("wait.trace");
        let rec = record(&d, &trace, &wait, b"");
        assert_eq!(rec.status, 0, "{}", rec.stderr_str());
        assert!(rec.stdout_str().starts_with("interrupted at main+"), "{}", rec.stdout_str());
        // The handler sees the interrupted instruction the recording's handler saw.
        replays_as_recorded(&d, &trace, &rec.stdout, 2, &format!("{form:?}"));
        let count = vec![exe, "count".into()];
        let trace = d.join("count.trace");
        let rec = record(&d, &trace, &count, b"");
        assert_eq!(rec.status, 0, "{}", rec.stderr_str());
        assert!(rec.stdout_str().contains(" after some turns "), "{}", rec.stdout_str());
        let rep = replay(&d, &trace);
        assert_eq!(rep.status, 127, "{}\n{}", rep.stdout_str(), rep.stderr_str());
        let err = rep.stderr_str();
        assert!(
            err.contains("replay diverged at event ")
                && err.contains("the trace has signal SIGALRM interrupting 0x")
                && err.contains(" reached 1001 times, never with the recorded registers (the last with "),
            "{err}"
        );
        assert!(rep.stdout.is_empty(), "{}", rep.stdout_str());
    }
}

/// A large stored file (48 MiB) is handled by the recorder's writer and the replayer's reader
/// threads while the guest maps more memory: their buffers must not take the addresses the
/// guest's mappings got in the recording. (They were mapped wherever there was room when the
/// thread got to the file, and replays failed most times, before or during the run.)
fn a_large_stored_file_replays_with_the_recorded_layout() {
    common::require_kvm();
    let d = tempdir("rr-bigmap");
    let data = d.join("data.bin");
    let argv = vec![guest("bigmap", Form::Dynamic).to_string_lossy().into_owned(), data.to_string_lossy().into_owned()];
    let trace = d.join("t.trace");
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert!(rec.stdout_str().starts_with("bigmap "), "{}", rec.stdout_str());
    assert!(!data.exists(), "the guest deleted its file");
    replays_as_recorded(&d, &trace, &rec.stdout, 4, "a 48 MiB stored file");
}

/// A replay keeps each stored file it mapped in a memory file of its own, in trapbox's private
/// descriptor range, up to three quarters of that range: an exec after more stored files than
/// that must still check its program (it failed with EMFILE when the range had 32 numbers and
/// the files could take them all).
fn exec_after_many_stored_files_replays() {
    common::require_kvm();
    let d = tempdir("rr-many-files");
    let script = "import mmap, os\n\
                  maps = []\n\
                  for i in range(200):\n\
                  \x20   with open(f'f{i}', 'wb') as f: f.write(bytes([i]) * 4096)\n\
                  \x20   with open(f'f{i}', 'rb') as f: maps.append(mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ))\n\
                  print(sum(m[0] for m in maps), flush=True)\n\
                  os.execv('/bin/echo', ['echo', 'exec after 200 mapped files'])\n";
    let argv: Vec<String> = vec!["/usr/bin/python3".into(), "-c".into(), script.into()];
    let trace = d.join("many.trace");
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert_eq!(rec.stdout_str(), "19900\nexec after 200 mapped files\n");
    replays_as_recorded(&d, &trace, &rec.stdout, 2, "exec after many stored files");
}

/// Threads take turns in a recording (at syscalls), and a replay follows the recorded turns:
/// output that depends on the interleaving, on getrandom, rdtsc, the clock and /dev/urandom
/// replays byte for byte, in each link form, across two waves of threads (the second runs on
/// the host threads and vCPUs the first left).
fn threads_interleave_and_replay_as_recorded() {
    common::require_kvm();
    for form in [Form::Static, Form::Dynamic] {
        let d = tempdir("rr-threads");
        let argv = vec![guest("threads_nondet", form).to_string_lossy().into_owned()];
        let a = native(&argv, b"", &d);
        let b = native(&argv, b"", &d);
        assert_ne!(a.stdout, b.stdout, "two native runs printed the same");
        let trace = d.join("threads.trace");
        let rec = record(&d, &trace, &argv, b"");
        assert_eq!(rec.status, 0, "{form:?}: {}", rec.stderr_str());
        let out = rec.stdout_str();
        assert!(out.contains("wave 1: 800 entries") && out.contains("wave 2: 800 entries"), "{out}");
        assert!(out.ends_with("done\n"), "{out}");
        replays_as_recorded(&d, &trace, &rec.stdout, 3, &format!("threads, {form:?}"));
        let inspect = trapbox(&["inspect".as_ref(), trace.as_os_str()], b"", &d);
        assert!(inspect.stdout_str().contains("threads: 9 ("), "{}", inspect.stdout_str());
    }
}

/// Two threads that hand a token back and forth by spinning on memory (no syscall while they
/// wait) record, the holder preempted at each spin, and replay as recorded: each replayed
/// thread stops where its registers match the recorded preemption point. trapbox's vDSO calls
/// in between (clock_gettime) leave the same scratch registers in both runs. A spin that reads
/// the clock on each turn has the same registers on every turn: the replayed thread stops only
/// after as many clock reads as were recorded before the preemption.
fn spinning_threads_are_preempted_and_replay_as_recorded() {
    common::require_kvm();
    for (form, spin) in
        [(Form::Static, "pause"), (Form::Dynamic, "pause"), (Form::Static, "clock"), (Form::Dynamic, "clock")]
    {
        let d = tempdir("rr-spin-handoff");
        let argv = vec![guest("spin_handoff", form).to_string_lossy().into_owned(), "30".into(), spin.into()];
        assert_ne!(native(&argv, b"", &d).stdout, native(&argv, b"", &d).stdout, "not nondeterministic natively");
        let trace = d.join("spin.trace");
        let rec = record(&d, &trace, &argv, b"");
        assert_eq!(rec.status, 0, "{form:?} {spin}: {}", rec.stderr_str());
        assert!(rec.stdout_str().starts_with("spin hand-off 30 rounds, partner saw 30, hash "), "{}", rec.stdout_str());
        replays_as_recorded(&d, &trace, &rec.stdout, 3, &format!("spin hand-off, {form:?}, {spin}"));
        let inspect = trapbox(&["inspect".as_ref(), trace.as_os_str()], b"", &d).stdout_str();
        // Each of the 60 waits ends with the spinning holder preempted (a wait that found the
        // token already passed needs none, and its thread's syscall may switch instead).
        let preempts: u32 = inspect
            .split(" switches from one to another, ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no preemption count in {inspect}"));
        assert!(preempts >= 30, "{preempts} preemptions: {inspect}");
    }
}

/// Python's threading (a lock, a queue, thread start and join) records and replays.
fn python_threads_record_and_replay() {
    common::require_kvm();
    let d = tempdir("rr-pythreads");
    let script = "import threading, queue, random, time, os\n\
                  q, res, lock = queue.Queue(), [], threading.Lock()\n\
                  def work(n):\n\
                  \x20   for i in range(50):\n\
                  \x20       v = random.random() + time.time() % 1\n\
                  \x20       with lock: res.append((n, v))\n\
                  \x20   q.put(n)\n\
                  ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]\n\
                  for t in ts: t.start()\n\
                  for t in ts: t.join()\n\
                  print(sorted(q.get() for _ in ts), [r[0] for r in res][:60])\n\
                  print('%.9f' % sum(r[1] for r in res), os.urandom(8).hex())\n";
    let argv: Vec<String> = vec!["/usr/bin/python3".into(), "-c".into(), script.into()];
    let trace = d.join("py.trace");
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert!(rec.stdout_str().starts_with("[0, 1, 2, 3] ["), "{}", rec.stdout_str());
    replays_as_recorded(&d, &trace, &rec.stdout, 2, "python threads");
}

/// A trace that switches to a thread the replay does not have diverges with a clear report.
fn a_switch_to_a_missing_thread_diverges() {
    common::require_kvm();
    let d = tempdir("rr-bad-switch");
    let argv = vec![guest("threads_nondet", Form::Static).to_string_lossy().into_owned(), "20".into()];
    let trace = d.join("t.trace");
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    let mut done = false;
    rewrite_trace(&trace, "switch to thread 2", |e| match e {
        Event::Switch(2) if !done => {
            *e = Event::Switch(77);
            done = true;
            true
        }
        _ => false,
    });
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 127, "{}", rep.stderr_str());
    let err = rep.stderr_str();
    assert!(
        err.contains("replay diverged at event ") && err.contains("the trace has a switch to guest thread 77"),
        "{err}"
    );
}

/// A thread that spins counting its turns (its registers never repeat) is never preempted: it
/// keeps the turn, and the others wait. trapbox says so, and the time limit still ends the
/// recording.
fn a_spinning_thread_in_a_recording_is_reported_and_the_time_limit_ends_it() {
    common::require_kvm();
    let d = tempdir("rr-spin");
    let trace = d.join("spin.trace");
    let exe = guest("thread_exec", Form::Static).to_string_lossy().into_owned();
    let args: Vec<String> = ["record", "--timeout", "7", "-o", &trace.to_string_lossy(), "--", &exe]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rec = trapbox(&args, b"", &d);
    assert_eq!(rec.status, 124, "{}", rec.stderr_str());
    let err = rec.stderr_str();
    assert!(
        err.contains("has waited 5 s for its turn while thread ") && err.contains("runs without a syscall"),
        "{err}"
    );
    assert!(err.contains("timed out"), "{err}");
}

/// Runs `trapbox ARGS` in `dir` with stdout going to the regular file `out`: (exit status,
/// stdout, stderr).
fn trapbox_into_file(args: &[String], dir: &Path, out: &Path) -> (i32, Vec<u8>, String) {
    let file = std::fs::File::create(out).unwrap();
    let mut cmd = common::trapbox_command(args);
    cmd.current_dir(dir).stdin(std::process::Stdio::null()).stdout(file).stderr(std::process::Stdio::piped());
    let r = common::wait_within(common::spawn_grouped(&mut cmd), "trapbox");
    (r.status.code().unwrap_or(-1), std::fs::read(out).unwrap(), String::from_utf8_lossy(&r.stderr).into_owned())
}

fn bytes_moved_to_the_console_by_sendfile_copy_file_range_and_splice_replay() {
    // Into a regular file (copy_file_range and sendfile reach it) and into a pipe (splice and
    // sendfile do): the recording keeps what these calls moved, though it never was in the
    // guest's memory, and the replay shows it without the (deleted) source file.
    common::require_kvm();
    let d = tempdir("rr-transfer");
    let trace = d.join("t.trace");
    for form in [Form::Static, Form::Dynamic] {
        let exe = guest("console_transfer", form).to_string_lossy().into_owned();
        let rec_args: Vec<String> =
            ["record", "-o", &trace.to_string_lossy(), "--", &exe].iter().map(|s| s.to_string()).collect();
        let (status, recorded, err) = trapbox_into_file(&rec_args, &d, &d.join("rec.out"));
        assert_eq!(status, 0, "{err}");
        let text = String::from_utf8_lossy(&recorded).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (line, label) in lines.iter().zip(["sendfile: ", "copy_file_range: ", "splice: "]) {
            let hex = line.strip_prefix(label).unwrap_or_else(|| panic!("{label}: {text}"));
            assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
        }
        let info = trapbox(&["inspect", &trace.to_string_lossy()], b"", &d).stdout_str();
        assert!(info.contains("48 bytes stored whole"), "{info}");
        for i in 0..2 {
            let rep_args: Vec<String> = vec!["replay".into(), trace.to_string_lossy().into_owned()];
            let (status, replayed, err) = trapbox_into_file(&rep_args, &d, &d.join("rep.out"));
            assert_eq!(status, 0, "{err}");
            assert_eq!(String::from_utf8_lossy(&replayed), text, "{form:?} replay {i} into a file");
        }
        // Into a pipe: splice reaches it instead of copy_file_range.
        let rec = record(&d, &trace, std::slice::from_ref(&exe), b"");
        assert_eq!(rec.status, 0, "{}", rec.stderr_str());
        assert_ne!(rec.stdout, recorded, "new random bytes");
        replays_as_recorded(&d, &trace, &rec.stdout, 2, &format!("{form:?} into a pipe"));
    }
    // From a pipe, the bytes cannot be read again: the recording says so, and the replay
    // shows the rest.
    let exe = guest("console_transfer", Form::Static).to_string_lossy().into_owned();
    let rec = record(&d, &trace, &[exe, "pipe".into()], b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert!(
        rec.stderr_str().contains("16 bytes went to the console from a source that cannot be read again"),
        "{}",
        rec.stderr_str()
    );
    let out = rec.stdout_str();
    let piped = out.lines().find_map(|l| l.strip_prefix("from a pipe: ")).expect("the pipe's line").to_string();
    let rep = replay(&d, &trace);
    assert_eq!(rep.status, 0, "{}", rep.stderr_str());
    assert_eq!(rep.stdout_str(), out.replace(&piped, ""));
}

fn a_forked_child_that_closes_every_descriptor_records() {
    // close_range(3, ~0U) in a child (as Python's subprocess does before exec) must skip the
    // sandbox's descriptors, the recorder's own among them.
    common::require_kvm();
    let d = tempdir("rr-close-range");
    let trace = d.join("t.trace");
    let exe = guest("fork_close_range", Form::Dynamic).to_string_lossy().into_owned();
    let rec = record(&d, &trace, &[exe], b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert_eq!(rec.stdout_str(), "child after close_range\nchild exec'd\nchild exited 0\n", "{}", rec.stderr_str());
    assert!(!rec.stderr_str().contains("trapbox: warning"), "{}", rec.stderr_str());
    replays_as_recorded(&d, &trace, &rec.stdout, 2, "fork_close_range");
}

fn memory_a_child_shares_with_the_recorded_process_replays() {
    // The child is not recorded and does not run in replay: what it wrote to shared memory
    // comes from the trace, at the events where the recording saw it.
    common::require_kvm();
    let d = tempdir("rr-shared");
    let trace = d.join("t.trace");
    for form in [Form::Static, Form::Dynamic] {
        let exe = guest("shared_child", form).to_string_lossy().into_owned();
        let rec = record(&d, &trace, &[exe, "20".into()], b"");
        assert_eq!(rec.status, 0, "{}", rec.stderr_str());
        let out = rec.stdout_str();
        assert!(out.starts_with("round 0: ") && out.ends_with("child exited 0\n"), "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("round ")).count(), 20, "{out}");
        assert!(!out.contains("round 1: 00 00 00 00 00 00 00 00"), "{out}");
        replays_as_recorded(&d, &trace, &rec.stdout, 2, &format!("shared_child {form:?}"));
    }
    // Python's multiprocessing: a value in memory the worker process shares, read after the
    // join. (Not a Pool: its locks are semaphores whose fast path polls shared memory in user
    // code, which a replay sees only at the recorded process's events — docs/ARCHITECTURE.md,
    // "Known gaps" — so its threads may take another path in replay.)
    let script = "import multiprocessing as m, os\n\
                  def f(v): v.value = 42\n\
                  v = m.RawValue('i', 0)\n\
                  p = m.Process(target=f, args=(v,)); p.start(); p.join()\n\
                  print(v.value, p.exitcode, os.urandom(4).hex())";
    let argv: Vec<String> = vec!["/usr/bin/python3".into(), "-c".into(), script.into()];
    let rec = record(&d, &trace, &argv, b"");
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert!(rec.stdout_str().starts_with("42 0 "), "{}", rec.stdout_str());
    replays_as_recorded(&d, &trace, &rec.stdout, 2, "multiprocessing");
}

fn threads_of_an_unrecorded_child_run_freely() {
    // The recorded shell's children are not recorded, so their threads take no turns: one that
    // waits in a syscall for another (a futex ping-pong) does not hold the other up, and one
    // that spins (counting, never preempted) does not hold up the thread that execs.
    common::require_kvm();
    let d = tempdir("rr-child-threads");
    let trace = d.join("t.trace");
    let pingpong = guest("futex_pingpong", Form::Dynamic).to_string_lossy().into_owned();
    let spinner = guest("thread_exec", Form::Static).to_string_lossy().into_owned();
    let script = format!("{pingpong} 200 | cat; {spinner} | cat; echo parent done");
    let args: Vec<String> = ["record", "--timeout", "30", "-o", &trace.to_string_lossy(), "--", "bash", "-c", &script]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rec = trapbox(&args, b"", &d);
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert_eq!(
        rec.stdout_str(),
        "ping-pong 200 rounds, partner saw 200\nthreads running: exec\nafter exec\nparent done\n"
    );
    assert!(!rec.stderr_str().contains("for its turn"), "{}", rec.stderr_str());
    replays_as_recorded(&d, &trace, &rec.stdout, 2, "bash with threaded children");
}

// Every test above runs on both engines.
each_backend!(
    replay_reproduces_nondeterministic_output_without_its_inputs,
    replay_reproduces_python_and_system_binaries,
    crash_and_exit_status_replay,
    replay_on_another_cpu_view_is_refused_up_front,
    edited_trace_diverges_with_a_clear_report,
    changed_binary_is_refused,
    truncated_trace_replays_its_prefix,
    recording_killed_with_sigkill_leaves_a_replayable_prefix,
    corrupt_chunk_is_named,
    inspect_summarises_a_trace,
    forking_shell_with_sigchld_handler_replays,
    time_calls_run_in_the_vdso_and_replay,
    edited_time_calls_diverge_with_a_clear_report,
    guest_attacks_on_its_vdso_record_and_replay_alike,
    output_of_children_and_other_descriptors_replays,
    rdrand_and_rdseed_are_trapped_and_replayed,
    recorded_process_execs_across_link_forms_and_scripts,
    exec_of_a_changed_or_missing_program_is_refused_and_failed_execs_replay,
    execs_by_relative_path_and_by_descriptor_replay_from_another_directory,
    patched_code_survives_mprotect_and_mremap,
    signals_interrupting_user_code_replay_there_or_diverge,
    a_large_stored_file_replays_with_the_recorded_layout,
    exec_after_many_stored_files_replays,
    threads_interleave_and_replay_as_recorded,
    spinning_threads_are_preempted_and_replay_as_recorded,
    python_threads_record_and_replay,
    a_switch_to_a_missing_thread_diverges,
    a_spinning_thread_in_a_recording_is_reported_and_the_time_limit_ends_it,
    bytes_moved_to_the_console_by_sendfile_copy_file_range_and_splice_replay,
    a_forked_child_that_closes_every_descriptor_records,
    memory_a_child_shares_with_the_recorded_process_replays,
    threads_of_an_unrecorded_child_run_freely,
    a_replay_starts_with_the_recorded_ignored_signals,
);

/// A replay starts with the signals the recording started with ignored, wherever it is
/// launched from: recorded with SIGINT at its default, replayed from a shell that ignores
/// SIGINT (a background job's), and the other way round — same path, same output.
fn a_replay_starts_with_the_recorded_ignored_signals() {
    common::require_kvm();
    let d = tempdir("sigign");
    let prog = guest("sigint_disposition", Form::Dynamic).to_string_lossy().into_owned();
    let tb = env!("CARGO_BIN_EXE_trapbox");
    let backend = common::backend().name();
    for (record_ignoring, want) in [(false, "SIGINT default, parent 1\n"), (true, "SIGINT ignored\n")] {
        let trace = d.join(format!("t-{record_ignoring}.trace"));
        let t = trace.display();
        let rec = if record_ignoring { "trap '' INT; " } else { "trap - INT; " };
        let r = common::run_cmd(
            {
                let mut c = std::process::Command::new("sh");
                c.arg("-c").arg(format!("{rec}exec {tb} record --backend {backend} -o {t} -- {prog}"));
                c
            },
            b"",
            &d,
        );
        assert_eq!((r.status, r.stdout_str().as_str()), (0, want), "{}", r.stderr_str());
        let rep = if record_ignoring { "trap - INT; " } else { "trap '' INT; " };
        let r = common::run_cmd(
            {
                let mut c = std::process::Command::new("sh");
                c.arg("-c").arg(format!("{rep}exec {tb} replay {t}"));
                c
            },
            b"",
            &d,
        );
        assert_eq!(
            (r.status, r.stdout_str().as_str()),
            (0, want),
            "replayed from the other disposition: {}",
            r.stderr_str()
        );
    }
}
