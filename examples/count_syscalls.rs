//! Counts the syscalls a program makes, by name, while it runs normally in the box.
//!
//! `cargo run --example count_syscalls -- /bin/ls -la`

use std::collections::BTreeMap;

use trapbox::{Guest, Observe, Passthrough, Sandbox, Trap};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(program) = argv.first() else {
        eprintln!("usage: count_syscalls PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let handler = Observe::new(Passthrough, |_: &dyn Guest, trap: &Trap, _: &trapbox::Action| {
        if let Trap::Syscall(call) = trap {
            *counts.entry(call.name().into_owned()).or_default() += 1;
        }
    });
    let report = Sandbox::builder(program).args(&argv).build()?.run(handler)?;
    eprintln!("{:>8}  syscall", "calls");
    for (name, n) in &counts {
        eprintln!("{n:>8}  {name}");
    }
    eprintln!("{:>8}  total ({} VM exits)", counts.values().sum::<u64>(), report.exits);
    std::process::exit(report.outcome.exit_status());
}
