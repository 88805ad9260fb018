//! The tracer benchmark: a syscall-heavy loop and two real programs under native, `strace -f`,
//! `strace -f --seccomp-bpf -e trace=write`, `trapbox run` and `trapbox trace`, side by side.
//!
//! `cargo bench --bench trace` (add `-- --quick` for fewer repetitions).

#![allow(missing_docs)]

mod common;

use common::*;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 7 };
    let tb = env!("CARGO_BIN_EXE_trapbox");
    assert!(has_strace(), "the trace benchmark compares with strace: apt-get install strace");
    let getppid = build_guest("getppid_loop");
    let g = getppid.to_str().expect("utf-8 path");
    let data = data_file(64);
    let d = data.to_str().expect("utf-8 path");
    println!("trapbox trace benchmark — KVM kind: {}", trapbox::vm::TrapPath::detect().name());
    println!("(medians of {reps} interleaved runs)\n");
    let variants: Vec<(&str, Vec<&str>)> = vec![
        ("native", vec![]),
        ("strace -f", vec!["strace", "-f", "-o", "/dev/null"]),
        (
            "strace -f --seccomp-bpf -e trace=write",
            vec!["strace", "-f", "--seccomp-bpf", "-e", "trace=write", "-o", "/dev/null"],
        ),
        ("trapbox run", vec![tb, "run", "--"]),
        ("trapbox trace", vec![tb, "trace", "-o", "/dev/null", "--"]),
    ];
    let n: u64 = if quick { 20_000 } else { 50_000 };
    let ns = n.to_string();
    let mut cmds = Vec::new();
    for (_, p) in &variants {
        cmds.push(with(p, &[g, &ns]));
        cmds.push(with(p, &[g, "0"]));
    }
    let t = side_by_side(&cmds, reps);
    let per: Vec<_> = (0..variants.len()).map(|i| t[2 * i].saturating_sub(t[2 * i + 1]) / n as u32).collect();
    println!("## syscall-heavy loop (getppid × {n})\n");
    println!("| variant | per syscall |");
    println!("|---|---|");
    for ((name, _), p) in variants.iter().zip(&per) {
        println!("| {name} | {} |", us(*p));
    }
    println!(
        "\nstrace -f / trapbox trace = {:.1}× (target ≥ 3×); trapbox trace / trapbox run = {:.2}× (target ≤ 1.2×)",
        per[1].as_secs_f64() / per[4].as_secs_f64(),
        per[4].as_secs_f64() / per[3].as_secs_f64()
    );
    let py = "import json, hashlib; print(hashlib.sha256(json.dumps(list(range(1000))).encode()).hexdigest())";
    let programs: Vec<(&str, Vec<&str>)> = vec![
        ("python3 -c (json, hashlib)", vec!["/usr/bin/python3", "-c", py]),
        ("sha256sum 64 MiB", vec!["/usr/bin/sha256sum", d]),
    ];
    println!("\n## programs\n");
    println!("| workload | {} |", variants.iter().map(|v| v.0).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(variants.len()));
    for (name, argv) in &programs {
        let cmds: Vec<Vec<String>> = variants.iter().map(|(_, p)| with(p, argv)).collect();
        let t = side_by_side(&cmds, reps);
        println!("| {name} | {} |", t.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(" | "));
        println!(
            "| ↳ ratios | | strace/trace {:.1}× | | | trace/run {:.2}× |",
            t[1].as_secs_f64() / t[4].as_secs_f64(),
            t[4].as_secs_f64() / t[3].as_secs_f64()
        );
    }
}
