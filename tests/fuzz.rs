//! `trapbox fuzz` in harness mode on a target with planted bugs (tests/guests/fuzz_target.c):
//! the crash is found from a seed that does not reach it, reproduces with `trapbox run`, and
//! its trace with `trapbox replay`;
//! resets restore memory exactly; a hang and a refused call are reported. Both engines.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};

use common::{guest, tempdir, trapbox, Form};

/// `trapbox fuzz` in harness mode on `exe` with seeds `seeds` and `extra` options: the run,
/// and OUT.
fn fuzz(exe: &Path, seeds: &[&[u8]], extra: &[&str]) -> (common::Run, PathBuf) {
    fuzz_with(exe, seeds, extra, &[])
}

/// [`fuzz`] with environment variables for trapbox.
fn fuzz_with(exe: &Path, seeds: &[&[u8]], extra: &[&str], env: &[(&str, &str)]) -> (common::Run, PathBuf) {
    let mut opts = vec!["--entry", "LLVMFuzzerTestOneInput"];
    opts.extend_from_slice(extra);
    fuzz_command(&[exe.to_string_lossy().as_ref()], seeds, &opts, env)
}

/// `trapbox fuzz` with `extra` options on the command `command` (program and arguments).
fn fuzz_command(command: &[&str], seeds: &[&[u8]], extra: &[&str], env: &[(&str, &str)]) -> (common::Run, PathBuf) {
    let dir = tempdir("fuzz");
    let (inputs, out) = (dir.join("seeds"), dir.join("out"));
    std::fs::create_dir_all(&inputs).unwrap();
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(inputs.join(format!("seed{i}")), s).unwrap();
    }
    let mut args: Vec<String> = ["fuzz", "-q", "--seed", "7", "-i"].iter().map(|s| s.to_string()).collect();
    args.push(inputs.to_string_lossy().into_owned());
    args.push("-o".into());
    args.push(out.to_string_lossy().into_owned());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.extend(command.iter().map(|s| s.to_string()));
    let mut cmd = common::trapbox_command(&args);
    cmd.envs(env.iter().copied());
    (common::run_cmd(cmd, b"", &dir), out)
}

/// The saved inputs and summaries under OUT/`kind`.
fn saved(out: &Path, kind: &str) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(out.join(kind)).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_none() {
            let line = std::fs::read_to_string(p.with_extension("txt")).unwrap_or_default();
            found.push((p, line));
        }
    }
    found
}

/// A dictionary whose tokens are the single bytes of `letters`: from the one-byte seed "C",
/// a token replacing it gives each of them in a few executions.
fn letters(dir: &Path, letters: &str) -> String {
    let dict = dir.join("letters.dict");
    std::fs::write(&dict, letters.chars().map(|c| format!("\"{c}\"\n")).collect::<String>()).unwrap();
    dict.to_string_lossy().into_owned()
}

/// A dictionary of pieces of the crashing input: the fuzzer still has to put them together in
/// order, led there by coverage (a few hundred executions instead of ~170,000 without, which on
/// PVM's KVM, at ~750 executions a second, would be minutes per test).
fn pieces(dir: &Path) -> String {
    let dict = dir.join("pieces.dict");
    std::fs::write(&dict, "first=\"FU\"\nrest=\"ZZ!\"\n").unwrap();
    dict.to_string_lossy().into_owned()
}

fn finds_the_planted_crash(form: Form) {
    if common::backend() == common::Backend::Kvm {
        common::require_kvm();
    }
    let exe = guest("fuzz_target", form);
    let dict = pieces(&tempdir("fuzz-dict"));
    let limits = ["--runs", "200000", "--until-crash", "--timeout", "2000", "--dict", &dict];
    let (run, out) = fuzz(&exe, &[b"A"], &limits);
    check_crash(&exe, &run, &out, "LLVMFuzzerTestOneInput");
    // Its trace: the program from its start, called at main on the input as the fuzzer did.
    check_trace(&out);
}

each_form_each_backend!(finds_the_planted_crash);

/// Without a dictionary: coverage alone leads from "A" through the five comparisons (in-process,
/// where an execution costs ~0.13 ms).
#[test]
fn coverage_alone_finds_the_planted_crash() {
    common::with_backend(common::Backend::InProc, || {
        let exe = guest("fuzz_target", Form::Dynamic);
        let (run, out) = fuzz(&exe, &[b"A"], &["--runs", "1000000", "--until-crash"]);
        check_crash(&exe, &run, &out, "LLVMFuzzerTestOneInput");
    })
}

/// A program built with edge counters (AFL++'s `afl-cc`, clang's SanitizerCoverage inline 8-bit
/// counters) is covered by them: its edges are the slots, read after each execution, and no
/// block gets a breakpoint; the edges lead to the crash (the pieces of it in a dictionary, as for
/// blocks).
#[test]
fn a_program_with_edge_counters_is_covered_by_them() {
    common::with_backend(common::Backend::InProc, || {
        let builds = [
            ("afl-cc", "install afl++", "afl", &[][..], "edges (AFL++ counters)"),
            (
                "clang",
                "install clang",
                "sancov",
                // No sanitizer runtime: its crash report would differ from run to run.
                &["-fsanitize-coverage=inline-8bit-counters", "-fno-sanitize-link-runtime", "support/sancov_init.c"][..],
                "edges (SanitizerCoverage counters)",
            ),
        ];
        for (compiler, install, tag, flags, slots) in builds {
            let exe = common::guest_built_by(compiler, install, "fuzz_target", tag, flags);
            let dict = pieces(&tempdir("fuzz-dict"));
            let (run, out) = fuzz(&exe, &[b"A"], &["--runs", "1000000", "--until-crash", "--dict", &dict]);
            check_crash(&exe, &run, &out, "LLVMFuzzerTestOneInput");
            let summary = run.stdout_str();
            assert!(summary.contains(&format!("; {slots} ")), "{tag}: {summary}");
        }
        // The same program built without counters is covered by its blocks.
        let plain = guest("fuzz_target", Form::Dynamic);
        let (run, _) = fuzz(&plain, &[b"A"], &["--runs", "10"]);
        assert!(run.stdout_str().contains("; blocks "), "{}", run.stdout_str());
    })
}

/// With edge counters the counts count, in AFL's buckets: inputs that take the same edges as
/// the seed, only more often ("AA", "AAA", ... against "A"), are new coverage and kept; with
/// block breakpoints, which see a block once, they are not. (Another job's queue hands them
/// over deterministically: they run right after the seed, before any mutation.) And the counts
/// lead to a crash that needs 32 'A's.
#[test]
fn edge_counts_are_coverage_in_buckets() {
    common::with_backend(common::Backend::InProc, || {
        let afl = common::guest_built_by("afl-cc", "install afl++", "fuzz_counts", "afl", &[]);
        let plain = guest("fuzz_counts", Form::Dynamic);
        for (exe, kept) in [(&afl, 4), (&plain, 0)] {
            let dir = tempdir("fuzz-counts");
            let (inputs, out) = (dir.join("seeds"), dir.join("out"));
            std::fs::create_dir_all(&inputs).unwrap();
            std::fs::create_dir_all(out.join("queue/job1")).unwrap();
            std::fs::write(inputs.join("a"), b"A").unwrap();
            // Counts 2, 3, 5 and 9: the buckets 2, 3, 4-7 and 8-15.
            for (k, n) in [2, 3, 5, 9].into_iter().enumerate() {
                std::fs::write(out.join(format!("queue/job1/id-{k:06}")), vec![b'A'; n]).unwrap();
            }
            let (i, o, e) = (inputs.to_string_lossy(), out.to_string_lossy(), exe.to_string_lossy());
            let entry = "LLVMFuzzerTestOneInput";
            let args = ["fuzz", "-q", "--job", "0", "--runs", "2", "-i", &i, "-o", &o, "--entry", entry, "--", &e];
            let run = trapbox(&args, b"", &dir);
            let want = format!("took 4 inputs from the other jobs, kept {kept} for new coverage");
            assert!(run.stdout_str().contains(&want), "{}: {}\n{}", e, run.stdout_str(), run.stderr_str());
        }
        let (run, out) = fuzz(&afl, &[b"A"], &["--runs", "300000", "--until-crash"]);
        assert_eq!(run.status, 1, "no crash found:\n{}\n{}", run.stdout_str(), run.stderr_str());
        let crashes = saved(&out, "crashes");
        assert_eq!(crashes.len(), 1, "{crashes:?}");
        let input = std::fs::read(&crashes[0].0).unwrap();
        assert!(input.iter().filter(|&&b| b == b'A').count() >= 32, "{input:?}");
    })
}

/// One crash was saved, is the planted one (in function `func`), and reproduces natively and in
/// the box.
fn check_crash(exe: &Path, run: &common::Run, out: &Path, func: &str) {
    assert_eq!(run.status, 1, "no crash found:\n{}\n{}", run.stdout_str(), run.stderr_str());
    let crashes = saved(out, "crashes");
    assert_eq!(crashes.len(), 1, "{crashes:?}\n{}", run.stdout_str());
    let (input, line) = &crashes[0];
    assert!(std::fs::read(input).unwrap().starts_with(b"FUZZ!"), "{input:?}");
    assert!(line.starts_with("SIGSEGV: page fault: write at 0x0"), "{line}");
    assert!(line.contains(func), "{line}");
    // The saved input crashes the program on its own, natively and in the box alike.
    let dir = tempdir("fuzz-repro");
    let argv = [exe.to_string_lossy().into_owned(), input.to_string_lossy().into_owned()];
    let boxed = common::assert_same_as_native(&argv, b"", &dir);
    assert_eq!(boxed.status, 128 + libc::SIGSEGV);
}

/// The one crash under OUT has a trace beside it, named in its summary, that `trapbox replay`
/// reproduces standalone: the saved input moved away, the replay still crashes the same way,
/// at the same instruction.
fn check_trace(out: &Path) {
    let (input, line) = saved(out, "crashes").remove(0);
    let trace = input.with_extension("trace");
    assert!(line.contains(&format!("trace {}", trace.display())), "{line}");
    let dir = tempdir("fuzz-replay");
    std::fs::rename(&input, dir.join("moved")).unwrap();
    let t = trace.to_string_lossy().into_owned();
    let replay = trapbox(&["replay", &t], b"", &dir);
    assert_eq!(replay.status, 128 + libc::SIGSEGV, "{}", replay.stderr_str());
    let rip = input.to_string_lossy().rsplit("-rip-").next().unwrap().to_string();
    let events = trapbox(&["inspect", "--events", &t], b"", &dir).stdout_str();
    let end = format!("killed by signal {}, a fault at 0x{rip}", libc::SIGSEGV);
    assert!(events.lines().last().is_some_and(|l| l.contains(&end)), "{events}");
    let line = replay.stderr_str();
    assert!(line.contains("SIGSEGV: page fault: write at 0x0") && line.contains(&format!("rip 0x{rip}")), "{line}");
}

/// Crashes are told apart by their stacks: two aborts from two functions die at one
/// instruction (in libc) but are two crashes; a second input down the same path is none.
mod buckets {
    use super::*;

    fn crashes_are_bucketed_by_stack(form: Form) {
        if common::backend() == common::Backend::Kvm {
            common::require_kvm();
        }
        let exe = guest("fuzz_stacks", form);
        let dict = letters(&tempdir("fuzz-dict"), "AB");
        let (run, out) = fuzz(&exe, &[b"C"], &["--runs", "2000", "--timeout", "200", "--dict", &dict]);
        let mut crashes = saved(&out, "crashes");
        crashes.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(crashes.len(), 2, "{crashes:#?}\n{}", run.stderr_str());
        let at = |c: &(PathBuf, String)| c.0.to_string_lossy().rsplit("-rip-").next().unwrap().to_string();
        assert_eq!(at(&crashes[0]), at(&crashes[1]), "one faulting instruction: {crashes:#?}");
        let stacks: Vec<&str> = crashes
            .iter()
            .map(|(_, line)| {
                assert!(line.starts_with("SIGABRT: the program raised SIGABRT"), "{line}");
                let stack = line.lines().next().unwrap().split("; stack ").nth(1).unwrap_or_default();
                // The five innermost frames: libc's abort, the check that called it, the entry.
                assert_eq!(stack.split(" < ").count(), 5, "{line}");
                assert!(
                    stack.ends_with(" < LLVMFuzzerTestOneInput+0x1c") || stack.contains("< LLVMFuzzerTestOneInput+"),
                    "{line}"
                );
                stack
            })
            .collect();
        assert_ne!(stacks[0], stacks[1]);
    }

    each_form_each_backend!(crashes_are_bucketed_by_stack);
}

/// `--cover` takes the blocks of the objects it names: libc's join the program's (and are
/// reached: the program calls into libc on every input), `all` adds the dynamic linker's too,
/// and a name no loaded object has is one clear line.
fn cover_names_the_objects(runs: &str) {
    if common::backend() == common::Backend::Kvm {
        common::require_kvm();
    }
    let exe = guest("fuzz_file", Form::Dynamic);
    let e = exe.to_string_lossy().into_owned();
    let blocks = |cover: &str| {
        let (run, _) = fuzz_command(&[&e, "@@"], &[b"A"], &["--runs", runs, "--cover", cover], &[]);
        assert_eq!(run.status, 0, "{}", run.stderr_str());
        let summary = run.stdout_str();
        let figures = summary.split("; blocks ").nth(1).and_then(|s| s.split(';').next()).map(str::to_string);
        let figures = figures.unwrap_or_else(|| panic!("{summary}"));
        let (hit, all) = figures.split_once('/').unwrap();
        (hit.parse::<usize>().unwrap(), all.parse::<usize>().unwrap())
    };
    let (main_hit, main_all) = blocks("main");
    let (libc_hit, libc_all) = blocks("main,libc");
    let (all_hit, all_all) = blocks("all");
    assert!(
        libc_all > main_all * 100 && libc_hit > main_hit,
        "main {main_hit}/{main_all}, main,libc {libc_hit}/{libc_all}"
    );
    assert!(all_all > libc_all && all_hit >= libc_hit, "main,libc {libc_hit}/{libc_all}, all {all_hit}/{all_all}");
    let (run, _) = fuzz_command(&[&e, "@@"], &[b"A"], &["--runs", "10", "--cover", "libnothere"], &[]);
    assert_eq!(run.status, 127);
    let err = run.stderr_str();
    assert!(
        err.contains("--cover libnothere: no object loaded at the snapshot is named so (loaded: libc.so.6"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn cover_names_the_objects_kvm() {
    cover_names_the_objects("200")
}

#[test]
fn cover_names_the_objects_inproc() {
    common::with_backend(common::Backend::InProc, || cover_names_the_objects("2000"))
}

/// Jobs exchange inputs through OUT/queue: a job runs what another job kept (here the
/// crashing input, placed in job 1's queue by hand), and writes what it keeps to its own.
/// Without the exchange, 3,000 executions from "A" without a dictionary do not find it.
#[test]
fn a_job_runs_the_inputs_another_job_kept() {
    common::with_backend(common::Backend::InProc, || {
        let exe = guest("fuzz_target", Form::Dynamic);
        let dir = tempdir("fuzz-exchange");
        let (inputs, out) = (dir.join("seeds"), dir.join("out"));
        std::fs::create_dir_all(&inputs).unwrap();
        std::fs::create_dir_all(out.join("queue/job1")).unwrap();
        std::fs::write(inputs.join("a"), b"A").unwrap();
        std::fs::write(out.join("queue/job1/id-000000"), b"FUZZ!").unwrap();
        let (i, o, e) = (inputs.to_string_lossy(), out.to_string_lossy(), exe.to_string_lossy());
        let entry = "LLVMFuzzerTestOneInput";
        let args = ["fuzz", "-q", "--job", "0", "--runs", "3000", "-i", &i, "-o", &o, "--entry", entry, "--", &e];
        let run = trapbox(&args, b"", &dir);
        assert_eq!(run.status, 1, "{}\n{}", run.stdout_str(), run.stderr_str());
        assert!(run.stdout_str().contains("took 1 inputs from the other jobs"), "{}", run.stdout_str());
        let crashes = saved(&out, "crashes");
        assert_eq!(crashes.len(), 1, "{crashes:?}");
        assert_eq!(std::fs::read(&crashes[0].0).unwrap(), b"FUZZ!");
        assert_eq!(std::fs::read(out.join("queue/job0/id-000000")).unwrap(), b"A", "the seed is in job 0's queue");
    })
}

/// Machines exchange inputs over TCP: the fuzzer with `--connect` sends what its queues hold
/// (here the crashing input, placed there by hand) to the one with `--broker`, whose job runs
/// it and finds the crash. Without it, "A" without a dictionary does not lead there.
#[test]
fn machines_exchange_inputs_through_a_broker() {
    common::with_backend(common::Backend::InProc, || {
        let exe = guest("fuzz_target", Form::Dynamic);
        let dir = tempdir("fuzz-net");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let at = format!("127.0.0.1:{port}");
        let (e, entry) = (exe.to_string_lossy().into_owned(), "LLVMFuzzerTestOneInput");
        let side = |name: &str| {
            let (seeds, out) = (dir.join(name).join("seeds"), dir.join(name).join("out"));
            std::fs::create_dir_all(&seeds).unwrap();
            std::fs::write(seeds.join("a"), b"A").unwrap();
            (seeds.to_string_lossy().into_owned(), out)
        };
        let (a_seeds, a_out) = side("broker");
        let (b_seeds, b_out) = side("other");
        std::fs::create_dir_all(b_out.join("queue/job7")).unwrap();
        std::fs::write(b_out.join("queue/job7/id-000000"), b"FUZZ!").unwrap();
        let a_o = a_out.to_string_lossy().into_owned();
        let broker = common::spawn_grouped(
            common::trapbox_command(&[
                "fuzz",
                "-q",
                "--broker",
                &at,
                "--time",
                "30",
                "--until-crash",
                "-i",
                &a_seeds,
                "-o",
                &a_o,
                "--entry",
                entry,
                "--",
                &e,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
        );
        let b_o = b_out.to_string_lossy().into_owned();
        let args =
            ["fuzz", "-q", "--connect", &at, "--time", "6", "-i", &b_seeds, "-o", &b_o, "--entry", entry, "--", &e];
        let other = trapbox(&args, b"", &dir);
        // "  network: sent N inputs to other machines, received M"
        let counts = |out: &str| -> (u64, u64) {
            let line = out.lines().find(|l| l.starts_with("  network: sent ")).unwrap_or_else(|| panic!("{out}"));
            let n: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
            (n[0], n[1])
        };
        assert!(counts(&other.stdout_str()).0 >= 1, "{}\n{}", other.stdout_str(), other.stderr_str());
        let a = common::wait_within(broker, "the broker");
        let (a_stdout, a_stderr) = (String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&a.stderr));
        assert_eq!(a.status.code(), Some(1), "{a_stdout}\n{a_stderr}");
        assert!(counts(&a_stdout).1 >= 1, "{a_stdout}");
        let crashes = saved(&a_out, "crashes");
        assert_eq!(crashes.len(), 1, "{crashes:?}");
        assert_eq!(std::fs::read(&crashes[0].0).unwrap(), b"FUZZ!");
    })
}

/// A `--connect` to something that is not a trapbox fuzzer is one line and a failure.
#[test]
fn connect_to_a_stranger_is_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut c, _)) = listener.accept() {
            let _ = c.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        }
    });
    let exe = guest("fuzz_target", Form::Dynamic);
    let dir = tempdir("fuzz-stranger");
    std::fs::create_dir_all(dir.join("seeds")).unwrap();
    std::fs::write(dir.join("seeds/a"), b"A").unwrap();
    let (i, o, e) = (dir.join("seeds"), dir.join("out"), exe);
    let args = [
        "fuzz".as_ref(),
        "--connect".as_ref(),
        at.as_ref(),
        "--runs".as_ref(),
        "10".as_ref(),
        "-i".as_ref(),
        i.as_os_str(),
        "-o".as_ref(),
        o.as_os_str(),
        "--entry".as_ref(),
        "LLVMFuzzerTestOneInput".as_ref(),
        "--".as_ref(),
        e.as_os_str(),
    ];
    let run = trapbox::<&std::ffi::OsStr>(&args, b"", &dir);
    let _ = server.join();
    assert_ne!(run.status, 0);
    let err = run.stderr_str();
    assert!(err.contains("the peer is not a trapbox fuzzer"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Without -q and with stderr not a terminal, a plain status line every five seconds; and
/// OUT/stats.json with the campaign's figures, the last ones at the end.
#[test]
fn progress_is_shown_and_written_to_stats_json() {
    common::with_backend(common::Backend::InProc, || {
        let exe = guest("fuzz_stacks", Form::Dynamic);
        let dir = tempdir("fuzz-progress");
        let (inputs, out) = (dir.join("seeds"), dir.join("out"));
        std::fs::create_dir_all(&inputs).unwrap();
        std::fs::write(inputs.join("c"), b"C").unwrap();
        let dict = letters(&dir, "AB");
        let (i, o, e) = (inputs.to_string_lossy(), out.to_string_lossy(), exe.to_string_lossy());
        let entry = "LLVMFuzzerTestOneInput";
        let args = ["fuzz", "--time", "6", "--dict", &dict, "-i", &i, "-o", &o, "--entry", entry, "--", &e];
        let run = trapbox(&args, b"", &dir);
        assert_eq!(run.status, 1, "{}", run.stderr_str());
        let err = run.stderr_str();
        // Every 5 s, between two rounds of mutations (a hang on the way can delay one).
        let shown = |l: &&str| l.starts_with("trapbox fuzz: ") && l.contains(" s: ") && l.contains(" execs (");
        let status = err.lines().find(shown).unwrap_or_else(|| panic!("{err}"));
        for part in [" execs (", "/s), corpus ", ", blocks ", " crashes, ", " hangs, last new block "] {
            assert!(status.contains(part), "{status}");
        }
        let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
        let summary = run.stdout_str();
        let execs: u64 =
            summary.strip_prefix("trapbox fuzz: ").and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
        assert_eq!(stats["execs"], execs, "{stats}\n{summary}");
        assert_eq!(stats["unique_crashes"], 2, "{stats}");
        assert!(stats["elapsed_s"].as_f64().unwrap() >= 6.0, "{stats}");
        for key in
            ["execs_per_sec", "corpus_count", "covered_blocks", "total_blocks", "unique_hangs", "last_new_block_s"]
        {
            assert!(stats[key].is_number(), "{key}: {stats}");
        }
    })
}

/// On a terminal (script(1) gives it one) the status line is rewritten in place each second.
#[test]
fn on_a_terminal_the_status_line_is_rewritten_in_place() {
    common::with_backend(common::Backend::InProc, || {
        let exe = guest("fuzz_stacks", Form::Dynamic);
        let dir = tempdir("fuzz-tty");
        let out = dir.join("out");
        let cmd = format!(
            "{} fuzz --backend inproc --time 3 -o {} --entry LLVMFuzzerTestOneInput -- {}",
            env!("CARGO_BIN_EXE_trapbox"),
            out.display(),
            exe.display()
        );
        let child = common::spawn_grouped(
            std::process::Command::new("script")
                .args(["-qefc", &cmd, "/dev/null"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped()),
        );
        let done = common::wait_within(child, "script(1) running trapbox fuzz");
        let text = String::from_utf8_lossy(&done.stdout);
        assert!(text.contains("\r\x1b[Ktrapbox fuzz: 1 s: "), "{text:?}");
        assert!(text.contains("\r\x1b[Ktrapbox fuzz: 2 s: "), "{text:?}");
    })
}

mod resets {
    use super::*;

    /// Every call sees its global counter at 1, a fresh heap and the page an input starting
    /// with "D" dropped (else it aborts, a crash).
    fn restore_memory_exactly() {
        restore_memory_exactly_with(&[])
    }

    fn restore_memory_exactly_with(env: &[(&str, &str)]) {
        if common::backend() == common::Backend::Kvm {
            common::require_kvm();
        }
        let exe = guest("fuzz_target", Form::Dynamic);
        let (run, out) = fuzz_with(&exe, &[b"A", b"BB", b"D"], &["--runs", "3000"], env);
        let aborts: Vec<_> = saved(&out, "crashes").into_iter().filter(|c| c.1.starts_with("SIGABRT")).collect();
        assert!(aborts.is_empty(), "a reset left state behind: {aborts:?}\n{}", run.stderr_str());
        let summary = run.stdout_str();
        let n: u64 = summary
            .strip_prefix("trapbox fuzz: ")
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no summary line: {summary}\n{}", run.stderr_str()));
        assert!(n >= 3000, "{summary}");
        // Where this kernel tracks writes (and the run was not told not to), resets use it: a
        // hardened trapbox cannot open a userfaultfd late, so it opens one before.
        let want =
            if kernel_tracks_writes() && env.is_empty() { "(written pages tracked)" } else { "(pages compared)" };
        assert!(summary.contains(want), "want {want}: {summary}");
    }

    /// Whether this kernel has userfaultfd's asynchronous write-protection (Linux 6.7+), as
    /// trapbox asks for it.
    fn kernel_tracks_writes() -> bool {
        // SAFETY: userfaultfd takes flags; the descriptor is closed below.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) } as i32;
        if fd < 0 {
            return false;
        }
        // struct uffdio_api { api, features, ioctls }: UFFD_API, WP_ASYNC | WP_UNPOPULATED.
        let mut api: [u64; 3] = [0xaa, (1 << 15) | (1 << 13), 0];
        // SAFETY: UFFDIO_API with a uffdio_api-sized buffer, alive for the call.
        let ok = unsafe { libc::ioctl(fd, 0xc018_aa3f, api.as_mut_ptr()) } == 0;
        // SAFETY: the descriptor opened above.
        unsafe { libc::close(fd) };
        ok
    }

    #[test]
    fn kvm() {
        restore_memory_exactly()
    }

    #[test]
    fn inproc() {
        common::with_backend(common::Backend::InProc, restore_memory_exactly)
    }

    /// Where the kernel cannot track written pages, restores compare every page.
    #[test]
    fn by_comparing_pages() {
        restore_memory_exactly_with(&[("TRAPBOX_NO_WRITE_TRACKING", "1")])
    }
}

#[test]
fn a_hang_is_saved_once() {
    common::require_kvm();
    let exe = guest("fuzz_stacks", Form::Dynamic);
    let dict = letters(&tempdir("fuzz-dict"), "H");
    let (run, out) = fuzz(&exe, &[b"C"], &["--runs", "60", "--timeout", "200", "--dict", &dict]);
    let hangs = saved(&out, "hangs");
    assert_eq!(hangs.len(), 1, "{hangs:?}\n{}", run.stderr_str());
    assert!(std::fs::read(&hangs[0].0).unwrap().starts_with(b"H"));
    assert!(hangs[0].1.contains("still running after 200ms"), "{}", hangs[0].1);
}

#[test]
fn a_call_after_the_snapshot_with_effects_is_refused_and_named() {
    common::require_kvm();
    let exe = guest("fuzz_target", Form::Dynamic);
    let (run, _) = fuzz(&exe, &[b"OPEN"], &["--runs", "3"]);
    let err = run.stderr_str();
    assert!(err.contains("the target called openat after the snapshot: refused (ENOSYS)"), "{err}");
    assert_eq!(err.matches("called openat").count(), 1, "named once: {err}");
}

#[test]
fn bad_input_gets_one_line() {
    let exe = guest("fuzz_target", Form::Dynamic);
    let dir = tempdir("fuzz-bad");
    let out = dir.join("out").to_string_lossy().into_owned();
    let e = exe.to_string_lossy().into_owned();
    let no_limit = trapbox(&["fuzz", "-o", &out, "--entry", "LLVMFuzzerTestOneInput", "--", &e], b"", &dir);
    assert_eq!(no_limit.status, 127);
    assert!(no_limit.stderr_str().contains("--time SECS or --runs N"), "{}", no_limit.stderr_str());
    let no_symbol = trapbox(&["fuzz", "-o", &out, "--runs", "1", "--entry", "nope", "--", &e], b"", &dir);
    assert_eq!(no_symbol.status, 127);
    assert!(no_symbol.stderr_str().contains("has no function symbol nope"), "{}", no_symbol.stderr_str());
    assert_eq!(no_symbol.stderr_str().lines().count(), 1, "{}", no_symbol.stderr_str());
    // Seeds: a missing directory, an empty one, and a seed that crashes the program.
    let (missing, empty, crashing) = (dir.join("missing"), dir.join("empty"), dir.join("crashing"));
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&crashing).unwrap();
    std::fs::write(crashing.join("fuzz"), b"FUZZ!").unwrap();
    let cases = [
        (&missing, "No such file or directory"),
        (&empty, "no seed inputs in it"),
        (&crashing, "already fails: SIGSEGV"),
    ];
    for (seeds, says) in cases {
        let i = seeds.to_string_lossy();
        let run = trapbox(
            &["fuzz", "-i", &i, "-o", &out, "--runs", "5", "--entry", "LLVMFuzzerTestOneInput", "--", &e],
            b"",
            &dir,
        );
        assert_eq!(run.status, 127, "{}", run.stderr_str());
        assert!(run.stderr_str().contains(says), "{}", run.stderr_str());
        assert_eq!(run.stderr_str().lines().count(), 1, "{}", run.stderr_str());
    }
}

/// File mode: the program opens its input by the path `@@` becomes (after a `stat` of it: the
/// snapshot is at that first mention), or reads its stdin.
mod file_mode {
    use super::*;

    fn finds_the_crash(stdin: bool) {
        if common::backend() == common::Backend::Kvm {
            common::require_kvm();
        }
        let exe = guest("fuzz_file", Form::Dynamic);
        let e = exe.to_string_lossy().into_owned();
        let command: Vec<&str> = if stdin { vec![&e] } else { vec![&e, "@@"] };
        let dict_path = pieces(&tempdir("fuzz-dict"));
        let opts = ["--runs", "1000000", "--until-crash", "--dict", &dict_path];
        let (run, out) = fuzz_command(&command, &[b"A"], &opts, &[]);
        check_crash(&exe, &run, &out, "parse");
        check_trace(&out);
    }

    #[test]
    fn path_kvm() {
        finds_the_crash(false)
    }

    #[test]
    fn stdin_kvm() {
        finds_the_crash(true)
    }

    #[test]
    fn path_inproc() {
        common::with_backend(common::Backend::InProc, || finds_the_crash(false))
    }

    #[test]
    fn stdin_inproc() {
        common::with_backend(common::Backend::InProc, || finds_the_crash(true))
    }

    /// `--snapshot-at main`: the snapshot before the program's own start (its stat, open and
    /// read of the input each execution, and the descriptor it opens before them): the crash
    /// is found, resets leave nothing behind (the program crashes otherwise), and a point the
    /// program never reaches, or no such symbol, is one line.
    #[test]
    fn snapshot_at_a_symbol() {
        common::with_backend(common::Backend::InProc, || {
            let exe = guest("fuzz_file", Form::Dynamic);
            let e = exe.to_string_lossy().into_owned();
            let dict_path = pieces(&tempdir("fuzz-dict"));
            let opts = ["--runs", "100000", "--until-crash", "--dict", &dict_path, "--snapshot-at", "main"];
            let (run, out) = fuzz_command(&[&e, "@@"], &[b"A"], &opts, &[]);
            check_crash(&exe, &run, &out, "parse");
            // fuzz_target without an argument returns from main without calling its entry.
            let target = guest("fuzz_target", Form::Dynamic).to_string_lossy().into_owned();
            let entry = ["--runs", "5", "--snapshot-at", "LLVMFuzzerTestOneInput"];
            let (never, _) = fuzz_command(&[&target], &[b"A"], &entry, &[]);
            assert_eq!(never.status, 127, "{}", never.stderr_str());
            let err = never.stderr_str();
            assert!(err.contains("ended before reaching LLVMFuzzerTestOneInput"), "{err}");
            let (none, _) = fuzz_command(&[&e, "@@"], &[b"A"], &["--runs", "5", "--snapshot-at", "nope"], &[]);
            assert!(none.stderr_str().contains("has no function symbol nope"), "{}", none.stderr_str());
            assert_eq!(none.stderr_str().lines().count(), 1, "{}", none.stderr_str());
        })
    }

    /// A program that never names its input ends before the snapshot: one line says so.
    #[test]
    fn a_program_that_ignores_its_input_is_refused_with_a_line() {
        common::require_kvm();
        let exe = guest("hello", Form::Static);
        let (run, _) = fuzz_command(&[exe.to_string_lossy().as_ref(), "@@"], &[b"A"], &["--runs", "10"], &[]);
        assert_eq!(run.status, 127, "{}", run.stderr_str());
        assert!(run.stderr_str().contains("before reaching its first use of the input"), "{}", run.stderr_str());
    }
}

/// `--jobs 2`: two trapboxes fuzz side by side; the first crash stops both, and the total
/// line counts both jobs' executions.
#[test]
fn two_jobs_find_the_crash() {
    common::with_backend(common::Backend::InProc, || {
        let exe = guest("fuzz_target", Form::Dynamic);
        let dict = pieces(&tempdir("fuzz-dict"));
        let opts = ["--jobs", "2", "--runs", "200000", "--until-crash", "--dict", &dict];
        let (run, out) = fuzz(&exe, &[b"A"], &opts);
        assert_eq!(run.status, 1, "{}\n{}", run.stdout_str(), run.stderr_str());
        let total = run.stdout_str().lines().find(|l| l.starts_with("trapbox fuzz: 2 jobs: ")).map(str::to_string);
        assert!(total.is_some(), "{}", run.stdout_str());
        let crashes = saved(&out, "crashes");
        assert!(!crashes.is_empty() && crashes.len() <= 2, "{crashes:?}");
        for (input, line) in &crashes {
            assert!(std::fs::read(input).unwrap().starts_with(b"FUZZ!"), "{input:?}");
            assert!(line.starts_with("SIGSEGV"), "{line}");
            let name = input.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("job0-") || name.starts_with("job1-"), "{name}");
        }
    })
}
