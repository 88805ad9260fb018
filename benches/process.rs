//! The process benchmark (issue #6): threads, futexes, fork+exec+wait, a parallel build and
//! CPU-bound parallel scaling, each measured side by side in one run — native and
//! `trapbox run` — and printed as a table with ratios and the targets.
//!
//! `cargo bench --bench process` (add `-- --quick` for fewer repetitions).
//!
//! A row whose command fails (today: trapbox refuses clone/fork) prints `failed: <reason>`
//! and the benchmark goes on with the other rows.

#![allow(missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// Per-iteration cost: (time with `n` iterations − time with 0) / n, so start-up cancels.
fn per_iter(full: &Result<Duration, String>, empty: &Result<Duration, String>, n: u32) -> Result<Duration, String> {
    match (full, empty) {
        (Ok(f), Ok(e)) => Ok(f.saturating_sub(*e) / n),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    }
}

fn show(r: &Result<Duration, String>, fmt: fn(Duration) -> String) -> String {
    match r {
        Ok(d) => fmt(*d),
        Err(e) => format!("failed: {e}"),
    }
}

fn ratio(b: &Result<Duration, String>, n: &Result<Duration, String>) -> String {
    match (b, n) {
        (Ok(b), Ok(n)) if !n.is_zero() => format!("{:.2}×", b.as_secs_f64() / n.as_secs_f64()),
        _ => "—".into(),
    }
}

/// A small C project (six modules and a main) with a Makefile, in target/bench-guests.
fn c_project() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-guests/cproject");
    std::fs::create_dir_all(&dir).expect("project dir");
    let mods = ["m_alpha", "m_beta", "m_gamma", "m_delta", "m_epsilon", "m_zeta"];
    for (i, m) in mods.iter().enumerate() {
        let mut src = String::from("#include <stdint.h>\n#include <string.h>\n#include <stdio.h>\n");
        // Enough code per file that cc1 does real work (a few tens of ms natively).
        for f in 0..40 {
            src.push_str(&format!(
                "static uint64_t {m}_h{f}(const char *s) {{ uint64_t h = {i}u * 100 + {f}u; while (*s) h = h * 31 + (uint8_t)*s++; \
                 char buf[64]; snprintf(buf, sizeof buf, \"%llu\", (unsigned long long)h); return h ^ strlen(buf); }}\n"
            ));
        }
        src.push_str(&format!("uint64_t {m}(const char *s) {{ uint64_t r = 0;"));
        for f in 0..40 {
            src.push_str(&format!(" r += {m}_h{f}(s);"));
        }
        src.push_str(" return r; }\n");
        std::fs::write(dir.join(format!("{m}.c")), src).expect("write module");
    }
    let mut main = String::from("#include <stdint.h>\n#include <stdio.h>\n");
    for m in &mods {
        main.push_str(&format!("uint64_t {m}(const char *s);\n"));
    }
    main.push_str("int main(void) { uint64_t r = 0;");
    for m in &mods {
        main.push_str(&format!(" r += {m}(\"trapbox\");"));
    }
    main.push_str(" printf(\"%llu\\n\", (unsigned long long)r); return 0; }\n");
    std::fs::write(dir.join("main.c"), main).expect("write main");
    let objs: Vec<String> = mods.iter().chain(&["main"]).map(|m| format!("{m}.o")).collect();
    let makefile =
        format!("OBJS = {}\nprog: $(OBJS)\n\tgcc -o $@ $(OBJS)\n%.o: %.c\n\tgcc -O2 -c $< -o $@\n", objs.join(" "));
    std::fs::write(dir.join("Makefile"), makefile).expect("write Makefile");
    dir
}

struct Row {
    name: String,
    native: Result<Duration, String>,
    boxed: Result<Duration, String>,
    unit: fn(Duration) -> String,
    target: &'static str,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 5 };
    let trapbox = env!("CARGO_BIN_EXE_trapbox");
    let tb = |argv: &[&str]| with(&[trapbox, "run", "--"], argv);
    let nat = |argv: &[&str]| with(&[], argv);

    let thread_create = build_guest("thread_create");
    let futex = build_guest("futex_pingpong");
    let fork_exec = build_guest("fork_exec_loop");
    let cpu = build_guest("cpu_threads");
    let (tc, fx, fe, cp) =
        (thread_create.to_str().unwrap(), futex.to_str().unwrap(), fork_exec.to_str().unwrap(), cpu.to_str().unwrap());

    println!("trapbox process benchmark — {} CPUs", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("(medians of {reps} interleaved runs; per-operation costs are (N runs − 0 runs) / N)\n");

    let mut rows: Vec<Row> = Vec::new();

    // Per-operation rows: the program with N operations and with 0, natively and boxed.
    let per_op: [(&str, &str, u32, &'static str); 3] = [
        ("thread create+join (per thread)", tc, if quick { 100 } else { 300 }, ""),
        ("futex ping-pong (per round trip)", fx, if quick { 300 } else { 1000 }, ""),
        ("fork+exec+wait of /bin/true (per iteration)", fe, if quick { 10 } else { 30 }, "≤ 2× native"),
    ];
    for (name, exe, n, target) in per_op {
        let ns = n.to_string();
        let cmds = vec![nat(&[exe, &ns]), nat(&[exe, "0"]), tb(&[exe, &ns]), tb(&[exe, "0"])];
        let t = side_by_side_try(&cmds, reps);
        rows.push(Row {
            name: format!("{name}, N={n}"),
            native: per_iter(&t[0], &t[1], n),
            boxed: per_iter(&t[2], &t[3], n),
            unit: us,
            target,
        });
    }

    // A parallel build: make -B (rebuild everything) -j2 of seven files and a link.
    let project = c_project();
    let pdir = project.to_str().unwrap();
    let build = ["make", "-B", "-s", "-j2", "-C", pdir];
    let t = side_by_side_try(&[nat(&build), tb(&build)], reps);
    rows.push(Row {
        name: "make -B -j2 (7 C files + link)".into(),
        native: t[0].clone(),
        boxed: t[1].clone(),
        unit: ms,
        target: "≤ 2× native",
    });

    // Parallel scaling: the same total work (2 × N iterations) on one thread and on two.
    let n: u64 = if quick { 100_000_000 } else { 300_000_000 };
    let (one, each) = ((2 * n).to_string(), n.to_string());
    let cmds = vec![nat(&[cp, "1", &one]), nat(&[cp, "2", &each]), tb(&[cp, "1", &one]), tb(&[cp, "2", &each])];
    let t = side_by_side_try(&cmds, reps);
    rows.push(Row {
        name: format!("cpu_threads, 1 thread × {} iterations", 2 * n),
        native: t[0].clone(),
        boxed: t[2].clone(),
        unit: ms,
        target: "",
    });
    rows.push(Row {
        name: format!("cpu_threads, 2 threads × {n} iterations"),
        native: t[1].clone(),
        boxed: t[3].clone(),
        unit: ms,
        target: "",
    });

    println!("| workload | native | trapbox run | trapbox/native | target |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.name,
            show(&r.native, r.unit),
            show(&r.boxed, r.unit),
            ratio(&r.boxed, &r.native),
            r.target
        );
    }

    // Speedup of two threads over one on the same total work: time(1 thread, 2N) /
    // time(2 threads, N each). 2.0 is perfect scaling on two idle cores.
    let speedup = |one: &Result<Duration, String>, two: &Result<Duration, String>| match (one, two) {
        (Ok(a), Ok(b)) => format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()),
        (Err(e), _) | (_, Err(e)) => format!("failed: {e}"),
    };
    println!("\n## parallel scaling: time(1 thread, 2N iterations) / time(2 threads, N each)\n");
    println!("| variant | 2-thread speedup | target |");
    println!("|---|---|---|");
    println!("| native | {} | |", speedup(&t[0], &t[1]));
    println!("| trapbox run | {} | ≥ 1.8× |", speedup(&t[2], &t[3]));
}
