//! The hostile-guest benchmark (issue 20): what staging pointer-bearing arguments costs, and a
//! long soak of the escape suite's races and fuzzer.
//!
//! `cargo bench --bench hostile` prints, side by side in one run, the cost of one round of
//! writev, readv, sendmsg and recvmsg (tests/guests/iov_loop.c) natively, under `strace -f`,
//! under `trapbox run`, and under another trapbox binary named by the environment variable
//! TRAPBOX_BEFORE (a build from before the walk copied these calls' iovecs and msghdrs), with
//! getppid as the reference for a call with nothing to copy.
//!
//! `-- --soak` adds the soak: each racing attack of the escape suite with 10⁵ tries, from a
//! second thread, and the syscall fuzzer with 10⁵ calls for each of three seeds, all under
//! `trapbox run`; it prints each one's time, exit status and the escapes it found (none is
//! the only passing answer). `-- --quick` makes fewer repetitions.

#![allow(missing_docs)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let soak = std::env::args().any(|a| a == "--soak");
    let reps = if quick { 3 } else { 7 };
    let trapbox = env!("CARGO_BIN_EXE_trapbox");
    let before = std::env::var("TRAPBOX_BEFORE").ok();
    let iov = build_guest("iov_loop");
    let getppid = build_guest("getppid_loop");
    let (iov, getppid) = (iov.to_str().unwrap(), getppid.to_str().unwrap());

    let mut variants: Vec<(String, Vec<&str>)> = vec![("native".into(), vec![])];
    if has_strace() {
        variants.push(("strace -f".into(), vec!["strace", "-f", "-o", "/dev/null"]));
    }
    variants.push(("trapbox run".into(), vec![trapbox, "run", "--"]));
    if let Some(b) = &before {
        variants.push((format!("before ({b})"), vec![b.as_str(), "run", "--"]));
    }
    let n: u32 = if quick { 10_000 } else { 30_000 };
    let ns = n.to_string();
    println!("trapbox hostile-guest benchmark: the cost of copying pointer-bearing arguments");
    println!("(per round: (time of {n} rounds - time of 0) / {n}, medians of {reps} interleaved runs)\n");
    print!("| call |");
    for (name, _) in &variants {
        print!(" {name} |");
    }
    println!(" trapbox / native |{}", if before.is_some() { " trapbox / before |" } else { "" });
    println!("|---|{}---|{}", "---|".repeat(variants.len()), if before.is_some() { "---|" } else { "" });
    let calls: [(&str, Vec<&str>); 5] = [
        ("getppid (nothing to copy)", vec![getppid]),
        ("writev, 2 iovecs", vec![iov, "writev"]),
        ("readv, 2 iovecs", vec![iov, "readv"]),
        ("sendmsg + read", vec![iov, "sendmsg"]),
        ("send + recvmsg", vec![iov, "recvmsg"]),
    ];
    let tb = variants.iter().position(|(n, _)| n == "trapbox run").unwrap();
    for (name, argv) in &calls {
        let mut cmds = Vec::new();
        for (_, prefix) in &variants {
            let mut full = argv.clone();
            full.push(&ns);
            let mut empty = argv.clone();
            empty.push("0");
            cmds.push(with(prefix, &full));
            cmds.push(with(prefix, &empty));
        }
        let t = side_by_side(&cmds, reps);
        let per: Vec<Duration> = (0..variants.len()).map(|i| t[2 * i].saturating_sub(t[2 * i + 1]) / n).collect();
        print!("| {name} |");
        for d in &per {
            print!(" {} |", us(*d));
        }
        print!(" {:.1}× |", per[tb].as_secs_f64() / per[0].as_secs_f64());
        if before.is_some() {
            print!(" {:.3}× |", per[tb].as_secs_f64() / per.last().unwrap().as_secs_f64());
        }
        println!();
    }
    if soak {
        soak_run(trapbox);
    }
}

/// Runs each race and the fuzzer long, in the box, and reports what they found.
fn soak_run(trapbox: &str) {
    const TRIES: &str = "100000";
    println!("\n## soak: {TRIES} tries of each race, from a second thread; {TRIES} fuzzed calls per seed\n");
    println!("| program | time | exit status | escapes |");
    println!("|---|---|---|---|");
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    for p in ["esc_double_fetch", "esc_proc_mem", "esc_fd_smuggle"] {
        let exe = build_guest(p).to_string_lossy().into_owned();
        runs.push((format!("{p} thread {TRIES}"), vec![exe, "thread".into(), TRIES.into()]));
    }
    let fuzz = build_guest("esc_fuzz").to_string_lossy().into_owned();
    for seed in ["1", "2", "3"] {
        runs.push((format!("esc_fuzz {seed} {TRIES}"), vec![fuzz.clone(), seed.into(), TRIES.into()]));
    }
    let mut total = 0;
    for (name, argv) in runs {
        let dir = std::env::temp_dir().join(format!("trapbox-soak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("soak directory");
        let t = Instant::now();
        let out = Command::new(trapbox).arg("run").arg("--").args(&argv).current_dir(&dir).output().expect("trapbox");
        let took = t.elapsed();
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let escapes = stdout.lines().filter(|l| l.starts_with("ESCAPED")).count();
        total += escapes;
        let status = out.status.code().map_or_else(|| format!("{:?}", out.status), |c| c.to_string());
        println!("| {name} | {} | {status} | {escapes} |", ms(took));
        for l in stdout.lines().filter(|l| l.starts_with("ESCAPED")).take(3) {
            println!("|   {l} | | | |");
        }
    }
    println!("\nescapes in the soak: {total}");
}
