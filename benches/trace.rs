//! The tracer benchmark, both engines side by side: native, `strace -f` (unpinned, and pinned
//! with tracer and program on one CPU and on two, to show its spread), `trapbox trace` on KVM
//! and in-process (with and without its rewriting of hot syscall sites), and `trapbox run` on
//! both; per `getppid`, and on python3, sha256sum of a
//! large file, `/bin/true` start-up and `make -j2`. The exit floor (the cheapest VM exit from
//! CPL3) bounds what any KVM trap path can do.
//!
//! `cargo bench --bench trace` (add `-- --quick` for fewer repetitions).

#![allow(missing_docs)]

mod common;

use common::*;
use std::time::Duration;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 7 };
    let tb = env!("CARGO_BIN_EXE_trapbox");
    assert!(has_strace(), "the trace benchmark compares with strace: apt-get install strace");
    let getppid = build_guest("getppid_loop");
    let g = getppid.to_str().expect("utf-8 path");
    let data = data_file(64);
    let d = data.to_str().expect("utf-8 path");
    let make_dir = make_project();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!("trapbox trace benchmark — CPU: {cpu}; KVM kind: {}", trapbox::vm::TrapPath::detect().name());
    println!("(medians of {reps} interleaved runs; trace output to /dev/null)\n");
    let strace = ["strace", "-f", "-o", "/dev/null"];
    let variants: Vec<(&str, Vec<&str>)> = vec![
        ("native", vec![]),
        ("strace -f", strace.to_vec()),
        ("strace -f, 1 CPU", [&["taskset", "-c", "0"][..], &strace[..]].concat()),
        ("strace -f, 2 CPUs", [&["taskset", "-c", "0"][..], &strace[..], &["taskset", "-c", "1"][..]].concat()),
        ("trace kvm", vec![tb, "trace", "--backend", "kvm", "-o", "/dev/null", "--"]),
        ("trace inproc", vec![tb, "trace", "--backend", "inproc", "-o", "/dev/null", "--"]),
        ("run kvm", vec![tb, "run", "--backend", "kvm", "--"]),
        ("run inproc", vec![tb, "run", "--backend", "inproc", "--"]),
        // Every syscall through SUD's signal: what rewriting the hot sites saves.
        (
            "trace inproc --no-rewrite",
            vec![tb, "trace", "--backend", "inproc", "--no-rewrite", "-o", "/dev/null", "--"],
        ),
        ("run inproc --no-rewrite", vec![tb, "run", "--backend", "inproc", "--no-rewrite", "--"]),
    ];
    let col = |name: &str| variants.iter().position(|v| v.0 == name).expect("variant");
    let n: u64 = if quick { 20_000 } else { 50_000 };
    let ns = n.to_string();
    let mut cmds = Vec::new();
    for (_, p) in &variants {
        cmds.push(with(p, &[g, &ns]));
        cmds.push(with(p, &[g, "0"]));
    }
    let t = side_by_side(&cmds, reps);
    let per: Vec<_> = (0..variants.len()).map(|i| t[2 * i].saturating_sub(t[2 * i + 1]) / n as u32).collect();
    let floor = common::floor::exit_floor(if quick { 2000 } else { 10_000 });
    println!("## per syscall (getppid × {n}, minus the same program making none)\n");
    println!("| variant | per syscall | strace -f ÷ variant |");
    println!("|---|---|---|");
    for ((name, _), p) in variants.iter().zip(&per) {
        println!("| {name} | {} | {:.1}× |", us(*p), per[col("strace -f")].as_secs_f64() / p.as_secs_f64().max(1e-9));
    }
    println!("| exit floor (one VM exit from CPL3) | {} | |", us(floor));
    let strace_cols = [col("strace -f"), col("strace -f, 1 CPU"), col("strace -f, 2 CPUs")];
    let (lo, hi) = strace_cols
        .iter()
        .map(|&c| per[c])
        .fold((per[strace_cols[0]], per[strace_cols[0]]), |(a, b), x| (a.min(x), b.max(x)));
    println!(
        "\nstrace's spread by placement: {}–{}; trace inproc is {:.1}×–{:.1}× faster than strace -f (target ≥ 5×), trace kvm {:.1}×–{:.1}×",
        us(lo),
        us(hi),
        lo.as_secs_f64() / per[col("trace inproc")].as_secs_f64(),
        hi.as_secs_f64() / per[col("trace inproc")].as_secs_f64(),
        lo.as_secs_f64() / per[col("trace kvm")].as_secs_f64(),
        hi.as_secs_f64() / per[col("trace kvm")].as_secs_f64(),
    );
    let py = "import json, hashlib; print(hashlib.sha256(json.dumps(list(range(1000))).encode()).hexdigest())";
    let mk = make_dir.to_str().expect("utf-8 path");
    let programs: Vec<(&str, Vec<&str>)> = vec![
        ("python3 -c (json, hashlib)", vec!["/usr/bin/python3", "-c", py]),
        ("sha256sum 64 MiB", vec!["/usr/bin/sha256sum", d]),
        ("/bin/true (start-up)", vec!["/bin/true"]),
        ("make -j2 (8 targets)", vec!["/usr/bin/make", "-s", "-B", "-j2", "-C", mk]),
    ];
    println!("\n## programs\n");
    println!("| workload | {} |", variants.iter().map(|v| v.0).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(variants.len()));
    for (name, argv) in &programs {
        let cmds: Vec<Vec<String>> = variants.iter().map(|(_, p)| with(p, argv)).collect();
        // A start-up takes milliseconds, within the noise of one run: many more runs.
        let reps = if argv[0] == "/bin/true" { reps * 7 } else { reps };
        let t = side_by_side(&cmds, reps);
        println!("| {name} | {} |", t.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(" | "));
        let r = |a: &str, b: &str| t[col(a)].as_secs_f64() / t[col(b)].as_secs_f64();
        println!(
            "| ↳ ratios | | strace ÷ trace inproc {:.1}× | strace ÷ trace kvm {:.1}× | | trace inproc ÷ native {:.2}× | trace kvm ÷ native {:.2}× | trace inproc − native {:.1} ms | | | |",
            r("strace -f", "trace inproc"),
            r("strace -f", "trace kvm"),
            r("trace inproc", "native"),
            r("trace kvm", "native"),
            (t[col("trace inproc")].as_secs_f64() - t[col("native")].as_secs_f64()) * 1000.0
        );
    }
    startup_alone(tb, reps * 10);
}

/// `/bin/true`'s start-up under the in-process engine beside native, interleaved with each
/// other only (the programs table runs it among the KVM and strace variants, where its median
/// comes out higher than when timed on its own): the figure for the start-up target.
fn startup_alone(tb: &str, reps: usize) {
    let cmds = [
        vec!["/bin/true".to_string()],
        with(&[tb, "trace", "--backend", "inproc", "-o", "/dev/null", "--"], &["/bin/true"]),
        with(&[tb, "run", "--backend", "inproc", "--"], &["/bin/true"]),
    ];
    let t = side_by_side(&cmds, reps);
    println!("\n## /bin/true start-up, in-process engine alone ({reps} interleaved runs)\n");
    println!("| native | trace inproc | run inproc | trace inproc − native | run inproc − native |");
    println!("|---|---|---|---|---|");
    let less = |a: Duration, b: Duration| (a.as_secs_f64() - b.as_secs_f64()) * 1000.0;
    println!(
        "| {} | {} | {} | {:.1} ms | {:.1} ms |",
        ms(t[0]),
        ms(t[1]),
        ms(t[2]),
        less(t[1], t[0]),
        less(t[2], t[0])
    );
}

/// A directory with a Makefile of eight independent targets, each a copy and a count: a
/// process-creation workload for `make -j2`.
fn make_project() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trapbox-bench-make-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut mk = String::from("all:");
    for i in 0..8 {
        mk.push_str(&format!(" out{i}"));
        std::fs::write(dir.join(format!("in{i}")), "some text\n".repeat(100)).expect("write input");
    }
    mk.push('\n');
    for i in 0..8 {
        mk.push_str(&format!("out{i}: in{i}\n\tcp in{i} out{i} && wc -l out{i} > /dev/null\n"));
    }
    std::fs::write(dir.join("Makefile"), mk).expect("write Makefile");
    dir
}
