//! Shared benchmark helpers: building guests, timing commands side by side.

#![allow(dead_code)]

pub mod floor;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Builds tests/guests/NAME.c statically into target/bench-guests.
pub fn build_guest(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests").join(format!("{name}.c"));
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-guests");
    std::fs::create_dir_all(&out).expect("target dir");
    let exe = out.join(name);
    let st = Command::new("gcc").args(["-O2", "-static", "-o"]).arg(&exe).arg(&src).status().expect("gcc");
    assert!(st.success());
    exe
}

/// A file of `mib` MiB of deterministic bytes in target/bench-guests.
pub fn data_file(mib: u32) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-guests/data-{mib}.bin"));
    if !p.exists() {
        let data: Vec<u8> = (0..(mib << 20) / 4).flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes()).collect();
        std::fs::write(&p, data).expect("write data file");
    }
    p
}

/// Whether strace is installed.
pub fn has_strace() -> bool {
    Command::new("strace").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Runs `argv` once: its time, or why it failed (its exit status and last line on stderr).
/// Without the `LD_LIBRARY_PATH` cargo sets for benchmarks (its build directories first): every
/// dynamic program's loader, trapbox's and the guest's, would search them first, which cost
/// trapbox's `/bin/true` start-up 1.3 ms (measured); nothing timed here needs it.
pub fn time_try(argv: &[String]) -> Result<Duration, String> {
    let t = Instant::now();
    let out = Command::new(&argv[0])
        .env_remove("LD_LIBRARY_PATH")
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    let d = t.elapsed();
    if out.status.success() {
        Ok(d)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        Err(format!("{} ({last})", out.status))
    }
}

/// Runs each command `reps` times, interleaved so that machine noise hits all alike, every
/// other round in reverse order so that none always runs right after the same other; each
/// command's times, round by round. A command that fails is dropped from later rounds and
/// reported as an error.
pub fn rounds_try(cmds: &[Vec<String>], reps: usize) -> Vec<Result<Vec<Duration>, String>> {
    let mut samples: Vec<Result<Vec<Duration>, String>> = vec![Ok(Vec::new()); cmds.len()];
    for round in 0..reps {
        let order: Vec<usize> =
            if round % 2 == 0 { (0..cmds.len()).collect() } else { (0..cmds.len()).rev().collect() };
        for i in order {
            if let Ok(v) = &mut samples[i] {
                match time_try(&cmds[i]) {
                    Ok(d) => v.push(d),
                    Err(e) => samples[i] = Err(e),
                }
            }
        }
    }
    samples
}

/// [`rounds_try`] for commands that must all succeed: a failure ends the benchmark, saying
/// why.
pub fn rounds(cmds: &[Vec<String>], reps: usize) -> Vec<Vec<Duration>> {
    rounds_try(cmds, reps)
        .into_iter()
        .zip(cmds)
        .map(|(r, argv)| r.unwrap_or_else(|e| panic!("{argv:?} failed: {e}")))
        .collect()
}

/// The median of `v` (not empty).
pub fn median<T: PartialOrd + Copy>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

/// The median over rounds of `a`'s time over `b`'s in the same round: steadier than the ratio
/// of two medians when the machine's speed drifts during the benchmark.
pub fn paired_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x.as_secs_f64() / y.as_secs_f64()).collect();
    median(&r)
}

/// [`rounds_try`], each command's median.
pub fn side_by_side_try(cmds: &[Vec<String>], reps: usize) -> Vec<Result<Duration, String>> {
    rounds_try(cmds, reps).into_iter().map(|s| s.map(|v| median(&v))).collect()
}

/// [`rounds`], each command's median.
pub fn side_by_side(cmds: &[Vec<String>], reps: usize) -> Vec<Duration> {
    rounds(cmds, reps).iter().map(|v| median(v)).collect()
}

/// `prefix` followed by `rest`.
pub fn with(prefix: &[&str], rest: &[&str]) -> Vec<String> {
    prefix.iter().chain(rest).map(|s| s.to_string()).collect()
}

/// Microseconds.
pub fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

/// Milliseconds.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
