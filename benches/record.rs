//! The record/replay benchmark, on both engines: `trapbox run`, `trapbox record` and
//! `trapbox replay` side by side on a syscall-heavy loop, python3 with imports, sha256sum of a large file, two threads
//! handing a token back and forth through a futex, two threads doing it by spinning (each
//! hand-over a preemption when recording), and two threads computing without syscalls (which
//! a recording runs one after the other), with the trace size per syscall.
//!
//! `cargo bench --bench record` (add `-- --quick` for fewer repetitions).

#![allow(missing_docs)]

mod common;

use common::*;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 11 };
    let tb = env!("CARGO_BIN_EXE_trapbox");
    let getppid = build_guest("getppid_loop");
    let pingpong = build_guest("futex_pingpong");
    let spin = build_guest("spin_handoff");
    let compute = build_guest("cpu_threads");
    let data = data_file(64);
    let tmp = std::env::temp_dir().join(format!("trapbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let py = "import json, hashlib; print(hashlib.sha256(json.dumps(list(range(1000))).encode()).hexdigest())";
    let workloads: Vec<(&str, Vec<&str>)> = vec![
        ("getppid × 20000", vec![getppid.to_str().expect("utf-8"), "20000"]),
        ("python3 -c (json, hashlib)", vec!["/usr/bin/python3", "-c", py]),
        ("sha256sum 64 MiB", vec!["/usr/bin/sha256sum", data.to_str().expect("utf-8")]),
        ("futex ping-pong × 2000, 2 threads", vec![pingpong.to_str().expect("utf-8"), "2000"]),
        ("spin hand-off × 100, 2 threads", vec![spin.to_str().expect("utf-8"), "100"]),
        ("xorshift 2 × 2·10⁸, 2 threads, no syscalls", vec![compute.to_str().expect("utf-8"), "2", "200000000"]),
    ];
    println!("trapbox record/replay benchmark — KVM kind: {}", trapbox::vm::TrapPath::detect().name());
    println!("(times: medians of {reps} interleaved rounds; ratios: medians of the rounds' own ratios)\n");
    println!(
        "| workload | engine | run | record | replay | record/run | replay/record | trace bytes | bytes/syscall |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, (name, argv, engine)) in
        workloads.iter().enumerate().flat_map(|(i, (n, a))| ["kvm", "inproc"].map(|e| (i, (n, a, e))))
    {
        let trace = tmp.join(format!("{i}-{engine}.trace"));
        let t = trace.to_str().expect("utf-8");
        let run = with(&[tb, "run", "--backend", engine, "--"], argv);
        let rec = with(&[tb, "record", "--backend", engine, "-o", t, "--"], argv);
        let rep = with(&[tb, "replay", t], &[]);
        // Record once first so replay has a trace from the first round on.
        side_by_side(std::slice::from_ref(&rec), 1);
        let samples = rounds(&[run, rec, rep], reps);
        let times: Vec<_> = samples.iter().map(|v| median(v)).collect();
        let size = std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0);
        let out = std::process::Command::new(tb).args(["inspect", t]).output().expect("inspect");
        let text = String::from_utf8_lossy(&out.stdout);
        let syscalls: u64 = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("events: ")
                    .and_then(|r| r.split('(').nth(1))
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(1);
        println!(
            "| {name} | {engine} | {} | {} | {} | {:.2}× | {:.2}× | {size} | {:.1} |",
            ms(times[0]),
            ms(times[1]),
            ms(times[2]),
            paired_ratio(&samples[1], &samples[0]),
            paired_ratio(&samples[2], &samples[1]),
            size as f64 / syscalls.max(1) as f64
        );
    }
    per_syscall(tb, &getppid, &tmp, reps);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// What recording adds to one syscall, start-up aside: getppid × N less the same program making
/// none, run and recorded, per engine (the table's getppid row is mostly start-up, which a
/// recording makes longer: the re-exec without address randomisation, the trace file).
fn per_syscall(tb: &str, getppid: &std::path::Path, tmp: &std::path::Path, reps: usize) {
    let g = getppid.to_str().expect("utf-8");
    println!("\n## per syscall (getppid, start-up aside)\n");
    println!("| engine | run | record | record/run |");
    println!("|---|---|---|---|");
    for (engine, n) in [("kvm", 5_000u32), ("inproc", 500_000)] {
        let t = tmp.join(format!("per-{engine}.trace"));
        let t = t.to_str().expect("utf-8");
        let ns = n.to_string();
        let run = |count: &str| with(&[tb, "run", "--backend", engine, "--"], &[g, count]);
        let rec = |count: &str| with(&[tb, "record", "--backend", engine, "-o", t, "--"], &[g, count]);
        let times = side_by_side(&[run(&ns), run("0"), rec(&ns), rec("0")], reps);
        let per = |a: usize| times[a].saturating_sub(times[a + 1]) / n;
        let (r, c) = (per(0), per(2));
        println!("| {engine} | {} | {} | {:.2}× |", us(r), us(c), c.as_secs_f64() / r.as_secs_f64().max(1e-12));
    }
}
