//! The debugger benchmark: gdb (Debian's, batch mode) against `trapbox replay --gdb`, each
//! session timed whole from trapbox's start to gdb's exit, beside a plain replay of the same
//! trace. Going back costs a replay from the start per step (two for a reverse-continue; three
//! with a watchpoint, the second single-stepping only the stretch between two calls where the
//! last write came): the rows show what that is on a small static C program and on python3,
//! whole sessions and, beside them, the going-back command alone.
//!
//! `cargo bench --bench gdb` (add `-- --quick` to skip python3). Sessions are capped at 120 s.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CAP: Duration = Duration::from_secs(120);

fn tb() -> &'static str {
    env!("CARGO_BIN_EXE_trapbox")
}

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-gdb");
    std::fs::create_dir_all(&d).expect("target dir");
    d
}

/// Records `argv` on `engine` into a trace.
fn record(engine: &str, name: &str, argv: &[&str]) -> PathBuf {
    let trace = dir().join(format!("{name}-{engine}.trace"));
    let ok = Command::new(tb())
        .args(["record", "-q", "--backend", engine, "-o"])
        .arg(&trace)
        .arg("--")
        .args(argv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "recording {argv:?} on {engine}");
    trace
}

/// A plain replay's time.
fn replay(trace: &Path) -> Duration {
    let t = Instant::now();
    let ok = Command::new(tb()).arg("replay").arg(trace).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "replay of {}", trace.display());
    t.elapsed()
}

/// A gdb session on the replay of `trace` running `commands`: its time and, when it goes back,
/// the time of its first `reverse-…` command alone (gdb prints the clock before and after
/// it); None past the cap or if gdb did not print `expect`.
fn session(program: &Path, trace: &Path, commands: &[&str], expect: &str) -> Option<(Duration, Option<f64>)> {
    let t = Instant::now();
    let mut tbox = Command::new(tb())
        .args(["replay", "--gdb", "127.0.0.1:0"])
        .arg(trace)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("trapbox replay --gdb");
    let mut err = BufReader::new(tbox.stderr.take().expect("piped"));
    let mut first = String::new();
    err.read_line(&mut first).expect("trapbox says where it waits");
    let port = first.split("target remote :").nth(1).and_then(|p| p.trim().trim_end_matches('\'').parse::<u16>().ok());
    let script = dir().join("commands.gdb");
    let back = commands.iter().position(|c| c.starts_with("reverse-"));
    let timed = commands.iter().enumerate().flat_map(|(i, c)| {
        let clock = || "shell date +%s.%N".to_string();
        let around = Some(i) == back;
        around.then(clock).into_iter().chain(std::iter::once(c.to_string())).chain(around.then(clock))
    });
    let text: String =
        std::iter::once(format!("target remote :{}", port.expect("a port"))).chain(timed).map(|c| c + "\n").collect();
    std::fs::write(&script, text).expect("gdb's command file");
    let mut gdb = Command::new("gdb")
        .args(["-q", "-batch", "-nx"])
        .arg(program)
        .arg("-x")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gdb");
    let out = std::thread::spawn({
        let mut so = gdb.stdout.take().expect("piped");
        move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut so, &mut s);
            s
        }
    });
    let done = loop {
        if gdb.try_wait().ok().flatten().is_some() {
            break true;
        }
        if t.elapsed() > CAP {
            let _ = gdb.kill();
            let _ = tbox.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = gdb.wait();
    let _ = tbox.wait();
    let text = out.join().unwrap_or_default();
    let clocks: Vec<f64> = text.lines().filter_map(|l| l.trim().parse::<f64>().ok()).collect();
    let going_back = match clocks[..] {
        [before, after] => Some(after - before),
        _ => None,
    };
    (done && text.contains(expect)).then(|| (t.elapsed(), going_back))
}

fn show(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
        None => format!("> {} s (or failed)", CAP.as_secs()),
    }
}

/// The rows for one program: a plain replay, then sessions that differ by what they ask: the
/// whole session, and the going-back command in it alone.
fn program_rows(name: &str, program: &Path, trace: &Path, sessions: &[(&str, Vec<&str>, &str)]) {
    println!("\n### {name}\n");
    println!("| what | session | the reverse-… command alone |");
    println!("|---|---|---|");
    println!("| plain replay | {} | |", show(Some(replay(trace))));
    for (what, commands, expect) in sessions {
        let t = session(program, trace, commands, expect);
        let back = t.and_then(|t| t.1).map(|b| format!("{b:.2} s")).unwrap_or_default();
        println!("| {what} | {} | {back} |", show(t.map(|t| t.0)));
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/gdb_pipe.c");
    let small = dir().join("gdb_pipe");
    let ok = Command::new("gcc").args(["-O0", "-g", "-static", "-o"]).arg(&small).arg(&src).status();
    assert!(ok.is_ok_and(|s| s.success()), "gcc {}", src.display());
    println!("trapbox gdb benchmark — whole gdb sessions on replays, from trapbox's start to gdb's exit");
    println!("KVM kind: {}", trapbox::vm::TrapPath::detect().name());
    let s = small.to_string_lossy().into_owned();
    let end = "exited normally";
    let forward = vec!["break 17", "continue", "delete", "continue"];
    let back_break = vec!["break 17", "continue", "break 14", "reverse-continue", "delete", "continue"];
    let stepi = vec!["break 17", "continue", "reverse-stepi", "delete", "continue"];
    let back_watch = vec!["break 17", "continue", "watch counter", "reverse-continue", "delete", "continue"];
    let small_sessions = [
        ("forward: continue to a breakpoint at the end", forward.clone(), end),
        ("… then reverse-continue to a breakpoint near the start", back_break.clone(), end),
        ("… then reverse-stepi (across the continue)", stepi.clone(), end),
        ("… then reverse-continue to a watchpoint (the last write)", back_watch.clone(), "Old value = 6"),
    ];
    for engine in ["inproc", "kvm"] {
        let trace = record(engine, "small", &[&s]);
        program_rows(&format!("static C program (gdb_pipe), {engine}"), &small, &trace, &small_sessions);
    }
    if quick {
        return;
    }
    let py = "/usr/bin/python3";
    let code = "import json,hashlib; print(hashlib.sha256(json.dumps(list(range(1000))).encode()).hexdigest())";
    let late = vec!["break Py_FinalizeEx", "continue", "delete", "continue"];
    let back = vec![
        "break Py_FinalizeEx",
        "continue",
        "break PyImport_ImportModule",
        "reverse-continue",
        "delete",
        "continue",
    ];
    let py_stepi = vec!["break Py_FinalizeEx", "continue", "reverse-stepi", "delete", "continue"];
    // `_PyRuntime.initialized` (no debug information: by its offset), set once in start-up.
    let py_watch = vec![
        "break Py_FinalizeEx",
        "continue",
        "watch *(int *)((char *)&_PyRuntime + 16)",
        "reverse-continue",
        "delete",
        "continue",
    ];
    let py_sessions = [
        ("forward: continue to Py_FinalizeEx (near the end)", late, end),
        ("… then reverse-continue to PyImport_ImportModule", back, end),
        ("… then reverse-stepi (across the continue)", py_stepi, end),
        (
            "… then reverse-continue to a watchpoint (`_PyRuntime.initialized`, set in start-up)",
            py_watch,
            "Old value = 1",
        ),
    ];
    for engine in ["inproc", "kvm"] {
        let trace = record(engine, "python3", &[py, "-c", code]);
        program_rows(&format!("python3 -c (json, hashlib), {engine}"), Path::new(py), &trace, &py_sessions);
    }
}
