//! The engine benchmark: per-syscall cost, CPU-bound work, start-up and a large `cat`, each
//! measured side by side in one run — native, `strace -f`, the cheapest exit from CPL3 (the
//! floor for any syscall that leaves the guest), and `trapbox run` — printed as a table.
//!
//! `cargo bench --bench engine` (add `-- --quick` for fewer repetitions).

#![allow(missing_docs)]

mod common;

use std::time::Duration;

use common::*;

use common::floor::exit_floor;
use trapbox::vm::TrapPath;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 7 };
    let trapbox = env!("CARGO_BIN_EXE_trapbox");
    let has_strace = has_strace();
    let path = TrapPath::detect();
    let getppid = build_guest("getppid_loop");
    let cpuloop = build_guest("cpuloop");
    let g = getppid.to_str().unwrap();
    let c = cpuloop.to_str().unwrap();

    println!("trapbox engine benchmark — KVM kind: {}", path.name());
    println!("(medians of {reps} interleaved runs; ratios are what to compare across machines)\n");

    // Per-syscall cost: difference between N and 0 iterations, divided by N.
    let n: u64 = if quick { 20_000 } else { 50_000 };
    let ns = n.to_string();
    let mut variants: Vec<(&str, Vec<&str>)> = vec![("native", vec![])];
    if has_strace {
        variants.push(("strace -f", vec!["strace", "-f", "-o", "/dev/null"]));
    }
    variants.push(("trapbox run", vec![trapbox, "run", "--"]));
    let mut cmds = Vec::new();
    for (_, p) in &variants {
        cmds.push(with(p, &[g, &ns]));
        cmds.push(with(p, &[g, "0"]));
    }
    let t = side_by_side(&cmds, reps);
    let per_call: Vec<Duration> =
        (0..variants.len()).map(|i| t[2 * i].saturating_sub(t[2 * i + 1]) / n as u32).collect();
    let floor = exit_floor(if quick { 2000 } else { 10_000 });
    let tb = *per_call.last().unwrap();
    println!("## per syscall (getppid loop, {n} calls)\n");
    println!("| variant | per syscall | vs trapbox |");
    println!("|---|---|---|");
    for ((name, _), d) in variants.iter().zip(&per_call) {
        println!("| {name} | {} | {:.2}× |", us(*d), d.as_secs_f64() / tb.as_secs_f64());
    }
    println!("| cheapest CPL3 exit (floor) | {} | {:.2}× |", us(floor), floor.as_secs_f64() / tb.as_secs_f64());
    println!("\ntrapbox per syscall / floor = {:.2}× (target ≤ 1.5×)", tb.as_secs_f64() / floor.as_secs_f64());
    if has_strace {
        println!(
            "strace -f / trapbox = {:.1}× faster (target ≥ 3× on PVM)",
            per_call[1].as_secs_f64() / tb.as_secs_f64()
        );
    }

    // CPU-bound, start-up, cat.
    let big = data_file(256);
    let b = big.to_str().unwrap();
    let workloads: Vec<(&str, Vec<&str>)> = vec![
        ("CPU-bound loop (cpuloop 300M)", vec![c, "300000000"]),
        ("/bin/true start-up", vec!["/bin/true"]),
        ("cat 256 MiB > /dev/null", vec!["/bin/cat", b]),
    ];
    println!("\n## programs\n");
    println!("| workload | native | {}trapbox run | trapbox/native |", if has_strace { "strace -f | " } else { "" });
    println!("|---|---|{}---|---|", if has_strace { "---|" } else { "" });
    for (name, argv) in &workloads {
        let mut cmds = vec![argv.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        if has_strace {
            cmds.push(with(&variants[1].1, argv));
        }
        cmds.push(with(variants.last().map(|v| &v.1).unwrap(), argv));
        let t = side_by_side(&cmds, reps);
        let (nat, tbx) = (t[0], *t.last().unwrap());
        let st = if has_strace { format!("{} | ", ms(t[1])) } else { String::new() };
        println!("| {name} | {} | {st}{} | {:.3}× |", ms(nat), ms(tbx), tbx.as_secs_f64() / nat.as_secs_f64());
        if name.starts_with("/bin/true") {
            println!(
                "| ↳ start-up overhead | | {}{} | (target ≤ 20 ms) |",
                if has_strace { " | " } else { "" },
                ms(tbx.saturating_sub(nat))
            );
        }
    }
}
