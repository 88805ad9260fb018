//! The `trapbox` command.

use anyhow::Result;
use clap::Parser;

mod args;
mod inspect;

fn main() {
    let cli = args::Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("trapbox: {e:#}");
            std::process::exit(127);
        }
    }
}

fn run(cli: args::Cli) -> Result<i32> {
    match cli.command {
        args::Command::Run(r) => run_program(r),
        args::Command::Inspect { file } => inspect::inspect(&file),
    }
}

fn run_program(r: args::RunArgs) -> Result<i32> {
    let program = r.command.first().expect("clap requires PROGRAM").clone();
    let mut builder = trapbox::Sandbox::builder(&program)
        .args(r.command.iter().cloned())
        .timeout(r.timeout.map(std::time::Duration::from_secs_f64))
        .memory_limit(r.memory_limit);
    if let Some(p) = r.trap_path {
        builder = builder.trap_path(p.into());
    }
    let mut sandbox = builder
        .build()
        .map_err(|e| anyhow::anyhow!("{}: {e}", program.to_string_lossy()).context("").context(""))
        .map_err(|e| anyhow::anyhow!("{}", e.root_cause()))?;
    if r.verbose {
        eprintln!("trapbox: trap path: {}", sandbox.trap_path().name());
    }
    let report = sandbox.run(trapbox::Passthrough)?;
    if let Some(line) = report.crash_line() {
        eprintln!("trapbox: {line}");
    }
    if report.outcome == trapbox::Outcome::TimedOut {
        eprintln!("trapbox: guest timed out after {} s", r.timeout.unwrap_or_default());
    }
    if r.verbose {
        eprintln!("trapbox: {} VM exits, {} syscalls", report.exits, report.syscalls);
    }
    Ok(report.outcome.exit_status())
}
