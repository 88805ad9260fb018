//! The fuzzing benchmark, side by side on one machine in one run: AFL++ (Debian's afl++) with
//! its forkserver, in persistent mode and with `-n` (no instrumentation), against
//! `trapbox fuzz` in harness mode on the unmodified binary, on both engines.
//!
//! Two targets: the planted-bug parser of the tests (tests/guests/fuzz_target.c: "FUZZ!"
//! through five nested comparisons) and a small branchy one of the benchmark's own (the first
//! bytes steer through a few branches, nothing crashes). For each: executions per second over
//! a fixed time, and for the parser the time to its crash (median of the runs; a run that did
//! not find it within the cap counts as the cap). trapbox's own line gives the reset cost:
//! mean time and pages per reset.
//!
//! `cargo bench --bench fuzz` (10 s per throughput run, 5 runs to the crash capped at 120 s);
//! `-- --quick` (3 s, 1 run capped at 30 s). Needs afl++ (`apt-get install afl++`) for the
//! AFL++ rows; without it they say so.

#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A small target with a few branches on its first bytes and nothing to find: throughput only.
const BRANCHY: &str = r#"
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
volatile int sink;
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n > 0 && d[0] == 'a') sink += 1;
    else if (n > 0 && d[0] == 'b') sink += 2;
    if (n > 1 && d[1] > 0x80) sink += 3;
    if (n > 2 && (d[2] & 7) == 3) sink += 4;
    return 0;
}
"#;

/// A driver that runs the harness on the file argv[1] (the forkserver's and `-n`'s way), or in
/// AFL++'s persistent loop with shared-memory input when built with `-DPERSISTENT`.
const DRIVER: &str = r#"
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
#ifdef PERSISTENT
__AFL_FUZZ_INIT();
int main(void) {
    __AFL_INIT();
    unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
    while (__AFL_LOOP(100000))
        LLVMFuzzerTestOneInput(buf, __AFL_FUZZ_TESTCASE_LEN);
    return 0;
}
#else
int main(int argc, char **argv) {
    static uint8_t buf[1 << 16];
    if (argc < 2) return 0;
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 2;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}
#endif
"#;

struct Target {
    name: &'static str,
    /// Plain gcc, the harness's own main (trapbox's target).
    plain: PathBuf,
    /// gcc with the file driver (AFL++ `-n`).
    plain_driver: PathBuf,
    /// afl-clang-fast with the file driver (forkserver), and persistent.
    afl_fork: Option<PathBuf>,
    afl_persistent: Option<PathBuf>,
}

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-fuzz");
    std::fs::create_dir_all(&d).expect("target dir");
    d
}

fn cc(compiler: &str, out: &Path, srcs: &[&Path], defs: &[&str]) -> bool {
    Command::new(compiler)
        .args(["-O2", "-w", "-o"])
        .arg(out)
        .args(defs)
        .args(srcs)
        .env("AFL_QUIET", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `src` compiled alone to an object by `compiler`, its own `main` renamed away (the drivers
/// bring theirs).
fn object(compiler: &str, src: &Path, tag: &str) -> Option<PathBuf> {
    let out = dir().join(format!("{tag}.o"));
    let ok = Command::new(compiler)
        .args(["-O2", "-w", "-c", "-Dmain=target_own_main", "-o"])
        .arg(&out)
        .arg(src)
        .env("AFL_QUIET", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(out)
}

fn build(name: &'static str, src: &Path, has_main: bool, afl: bool) -> Target {
    let d = dir();
    let driver = d.join("driver.c");
    std::fs::write(&driver, DRIVER).expect("write driver");
    let plain_obj = object("gcc", src, &format!("{name}-plain"));
    // afl-clang-fast: Debian's afl-gcc-fast plugin refuses Debian's gcc ("incompatible
    // versions") on these machines.
    let afl_obj = if afl { object("afl-clang-fast", src, &format!("{name}-afl")) } else { None };
    let src_plain = plain_obj.as_deref().unwrap_or(src);
    let src_afl = afl_obj.as_deref().unwrap_or(src);
    let plain = d.join(format!("{name}-plain"));
    if has_main {
        assert!(cc("gcc", &plain, &[src], &[]), "gcc {}", src.display());
    } else {
        // A main that does nothing: the harness is called from the snapshot at main.
        let m = d.join("empty_main.c");
        std::fs::write(&m, "int main(void) { return 0; }\n").expect("write main");
        assert!(cc("gcc", &plain, &[src, &m], &[]), "gcc {}", src.display());
    }
    let plain_driver = d.join(format!("{name}-driver"));
    assert!(cc("gcc", &plain_driver, &[src_plain, &driver], &[]), "gcc driver");
    let (mut afl_fork, mut afl_persistent) = (None, None);
    if afl {
        let f = d.join(format!("{name}-afl"));
        if afl_obj.is_some() && cc("afl-clang-fast", &f, &[src_afl, &driver], &[]) {
            afl_fork = Some(f);
        }
        let p = d.join(format!("{name}-afl-persistent"));
        if afl_obj.is_some() && cc("afl-clang-fast", &p, &[src_afl, &driver], &["-DPERSISTENT"]) {
            afl_persistent = Some(p);
        }
    }
    Target { name, plain, plain_driver, afl_fork, afl_persistent }
}

fn seeds() -> PathBuf {
    let s = dir().join("seeds");
    std::fs::create_dir_all(&s).expect("seeds dir");
    std::fs::write(s.join("a"), "A").expect("seed");
    s
}

/// What one fuzzing run gave: executions, seconds, and whether it found a crash.
struct Outcome {
    execs: u64,
    secs: f64,
    crashed: bool,
}

/// afl-fuzz for `secs` (or until the first crash): reads its fuzzer_stats.
fn afl(mode: &str, exe: &Path, secs: u64, until_crash: bool) -> Result<Outcome, String> {
    let out = dir().join(format!("afl-out-{mode}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut c = Command::new("afl-fuzz");
    c.args(["-i"]).arg(seeds()).arg("-o").arg(&out).args(["-V", &secs.to_string()]);
    if mode == "-n" {
        c.arg("-n");
    }
    c.arg("--").arg(exe);
    if mode != "persistent" {
        c.arg("@@");
    }
    for (k, v) in [
        ("AFL_NO_UI", "1"),
        ("AFL_SKIP_CPUFREQ", "1"),
        ("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1"),
        ("AFL_NO_AFFINITY", "1"),
        ("AFL_SKIP_CRASHES", "1"),
    ] {
        c.env(k, v);
    }
    if until_crash {
        c.env("AFL_BENCH_UNTIL_CRASH", "1");
    }
    let t = Instant::now();
    let st = c.stdout(Stdio::null()).stderr(Stdio::null()).status().map_err(|e| format!("afl-fuzz: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    // plot_data's last line, by its header's names (AFL++ 4.04c writes it directly in OUT on a
    // short run, without fuzzer_stats; newer ones under OUT/default).
    let plot = ["plot_data", "default/plot_data"]
        .iter()
        .find_map(|p| std::fs::read_to_string(out.join(p)).ok())
        .ok_or_else(|| format!("afl-fuzz {mode} wrote no plot_data (status {st})"))?;
    let header: Vec<&str> =
        plot.lines().next().unwrap_or("").trim_start_matches('#').split(',').map(str::trim).collect();
    let last: Vec<&str> = plot.lines().rfind(|l| !l.starts_with('#')).unwrap_or("").split(',').map(str::trim).collect();
    let field = |k: &str| header.iter().position(|h| *h == k).and_then(|i| last.get(i)).map(|v| v.to_string());
    let execs = field("total_execs").and_then(|v| v.parse().ok()).unwrap_or(0);
    let crashed = field("saved_crashes").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) > 0;
    let _ = std::fs::remove_dir_all(&out);
    if execs == 0 {
        return Err(if mode == "persistent" {
            "ran nothing: a seed crashed (persistent mode keeps the target's state from call to call; this one checks that each call starts fresh)".into()
        } else {
            format!("ran nothing (status {st})")
        });
    }
    Ok(Outcome { execs, secs, crashed })
}

/// trapbox fuzz for `secs` (or until the first crash); also its reset figures.
fn trapbox(engine: &str, jobs: u32, exe: &Path, secs: u64, until_crash: bool) -> Result<(Outcome, String), String> {
    let out = dir().join(format!("tb-out-{engine}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut c = Command::new(env!("CARGO_BIN_EXE_trapbox"));
    c.args(["fuzz", "-q", "--backend", engine, "--entry", "LLVMFuzzerTestOneInput", "-i"])
        .arg(seeds())
        .arg("-o")
        .arg(&out)
        .args(["--time", &secs.to_string(), "--jobs", &jobs.to_string()]);
    if until_crash {
        c.arg("--until-crash");
    }
    c.arg("--").arg(exe);
    let t = Instant::now();
    let o = c.stderr(Stdio::null()).output().map_err(|e| format!("trapbox: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text.lines().next().ok_or("trapbox fuzz printed nothing")?.to_string();
    // With several jobs, the total line counts them all.
    let total = text.lines().find(|l| l.contains(" jobs: ")).map(|l| l.split(" jobs: ").nth(1).unwrap_or(""));
    let execs = total
        .or_else(|| line.strip_prefix("trapbox fuzz: "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no summary: {line}"))?;
    let reset = line.split("; ").find(|p| p.starts_with("reset ")).unwrap_or("").to_string();
    let _ = std::fs::remove_dir_all(&out);
    Ok((Outcome { execs, secs, crashed: o.status.code() == Some(1) }, reset))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, runs, cap) = if quick { (3, 1, 30) } else { (10, 5, 120) };
    let has_afl = Command::new("afl-fuzz").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    let parser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/fuzz_target.c");
    let branchy = dir().join("branchy.c");
    std::fs::write(&branchy, BRANCHY).expect("write target");
    let targets = [build("parser", &parser, true, has_afl), build("branchy", &branchy, false, has_afl)];
    println!("trapbox fuzz benchmark — {secs} s per throughput run; time to the parser's crash: median of {runs}, capped at {cap} s");
    println!("KVM kind: {}", trapbox::vm::TrapPath::detect().name());
    if !has_afl {
        println!("afl++ is not installed (apt-get install afl++): its rows are missing");
    }
    for t in &targets {
        println!("\n## {} ({})\n", t.name, if t.name == "parser" { "planted crash" } else { "throughput only" });
        println!("| fuzzer | exec/s | time to crash | reset |");
        println!("|---|---|---|---|");
        type Row<'a> = (&'a str, Box<dyn Fn(u64, bool) -> Result<(Outcome, String), String> + 'a>);
        let mut rows: Vec<Row> = Vec::new();
        if let Some(f) = &t.afl_fork {
            rows.push((
                "AFL++ forkserver (afl-clang-fast)",
                Box::new(move |s, u| afl("fork", f, s, u).map(|o| (o, "fork".into()))),
            ));
        }
        if let Some(p) = &t.afl_persistent {
            rows.push((
                "AFL++ persistent + shmem",
                Box::new(move |s, u| afl("persistent", p, s, u).map(|o| (o, "-".into()))),
            ));
        }
        if has_afl {
            let d = &t.plain_driver;
            rows.push((
                "AFL++ -n (plain gcc, no coverage)",
                Box::new(move |s, u| afl("-n", d, s, u).map(|o| (o, "fork".into()))),
            ));
        }
        let p = &t.plain;
        rows.push(("trapbox fuzz (kvm), plain gcc", Box::new(move |s, u| trapbox("kvm", 1, p, s, u))));
        rows.push(("trapbox fuzz (inproc), plain gcc", Box::new(move |s, u| trapbox("inproc", 1, p, s, u))));
        rows.push(("trapbox fuzz (inproc) --jobs 2", Box::new(move |s, u| trapbox("inproc", 2, p, s, u))));
        for (name, run) in &rows {
            let (rate, reset) = match run(secs, false) {
                Ok((o, reset)) => (format!("{:.0}", o.execs as f64 / o.secs), reset),
                Err(e) => (format!("failed: {e}"), String::new()),
            };
            let crash = if t.name != "parser" {
                "-".to_string()
            } else {
                let times: Vec<f64> = (0..runs)
                    .map(|_| match run(cap, true) {
                        Ok((o, _)) if o.crashed => o.secs,
                        _ => cap as f64,
                    })
                    .collect();
                let m = median(times);
                if m >= cap as f64 {
                    format!("> {cap} s")
                } else {
                    format!("{m:.1} s")
                }
            };
            println!("| {name} | {rate} | {crash} | {reset} |");
        }
    }
    println!("\ntargets on these machines: harness mode ≥ 10,000 exec/s; reset ≤ 25 µs + 1 µs per dirty page");
}
