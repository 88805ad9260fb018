//! The REPL benchmark: time per line, from sending it to reading its flags line (assembly,
//! run in the guest, display), median over 200 lines in pipe mode, on both engines, beside
//! GNU `as` alone on the same lines (the floor every line pays).
//!
//! `cargo bench --bench repl` (add `-- --quick` for 50 lines).

#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lines(n: usize) -> Vec<String> {
    let ops =
        ["add rax, 1", "imul rbx, rax, 3", "xor rcx, rbx", "vpaddd ymm1, ymm1, ymm2", "mov qword ptr [0x600000], rax"];
    (0..n).map(|i| ops[i % ops.len()].to_string()).collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Sends each line and waits for its flags line.
fn repl(tb: &str, engine: &str, lines: &[String]) -> Duration {
    let mut child = Command::new(tb)
        .args(["repl", "--backend", engine])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("trapbox repl starts");
    let mut input = child.stdin.take().expect("piped");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut times = Vec::new();
    for l in lines {
        let t = Instant::now();
        writeln!(input, "{l}").expect("repl reads");
        input.flush().expect("flush");
        let mut s = String::new();
        loop {
            s.clear();
            if out.read_line(&mut s).expect("repl writes") == 0 {
                panic!("the REPL ended early");
            }
            if s.starts_with("cf:") {
                break;
            }
        }
        times.push(t.elapsed());
    }
    drop(input);
    let _ = child.wait();
    median(times)
}

/// GNU `as` alone on each line, as the REPL runs it.
fn assembler(lines: &[String]) -> Duration {
    let obj = std::env::temp_dir().join(format!("trapbox-bench-repl-{}.o", std::process::id()));
    let mut times = Vec::new();
    for l in lines {
        let t = Instant::now();
        let mut c =
            Command::new("as").args(["--64", "-o"]).arg(&obj).arg("-").stdin(Stdio::piped()).spawn().expect("as runs");
        let mut i = c.stdin.take().expect("piped");
        writeln!(i, ".intel_syntax noprefix\n{l}").expect("as reads");
        drop(i);
        assert!(c.wait().expect("as ends").success());
        times.push(t.elapsed());
    }
    let _ = std::fs::remove_file(obj);
    median(times)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 50 } else { 200 };
    let tb = env!("CARGO_BIN_EXE_trapbox");
    let ls = lines(n);
    println!("trapbox repl benchmark — {n} lines, pipe mode, median time from sending a line to its flags line");
    println!("KVM kind: {}\n", trapbox::vm::TrapPath::detect().name());
    let asm = assembler(&ls);
    let kvm = repl(tb, "kvm", &ls);
    let inproc = repl(tb, "inproc", &ls);
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!("| | per line | ÷ as alone |");
    println!("|---|---|---|");
    println!("| GNU as alone | {} | 1.00× |", ms(asm));
    for (name, d) in [("trapbox repl (kvm)", kvm), ("trapbox repl (inproc)", inproc)] {
        println!("| {name} | {} | {:.2}× |", ms(d), d.as_secs_f64() / asm.as_secs_f64());
    }
    println!("\ntarget: under 20 ms per line");
}
