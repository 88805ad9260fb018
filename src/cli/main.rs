//! The `trapbox` command.

use anyhow::Result;
use clap::Parser;

mod args;
mod boot;
mod cpu;
mod fuzz;
mod gdb;
mod inspect;
mod record;
mod repl;
mod trace;

fn main() {
    let cli = args::Cli::parse();
    if matches!(cli.command, args::Command::Record(_) | args::Command::Replay(_)) {
        if let Err(e) = trapbox::process::host::reexec_without_aslr() {
            eprintln!("trapbox: cannot turn off address-space randomisation for record/replay: {e}");
            std::process::exit(127);
        }
        trapbox::process::host::keep_allocations_off_mmap();
    }
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("trapbox: {}", one_line(&e));
            std::process::exit(127);
        }
    }
}

/// An error and its causes on one line, each reason once: a library error whose message
/// already says its cause (`{path}: {source}`) is not followed by that cause again.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !line.contains(&c) {
            line.push_str(": ");
            line.push_str(&c);
        }
    }
    line
}

fn run(cli: args::Cli) -> Result<i32> {
    match cli.command {
        args::Command::Run(r) => run_program(r),
        args::Command::Trace(t) => trace::trace(t),
        args::Command::Record(r) => record::record(r),
        args::Command::Replay(r) => record::replay(r),
        args::Command::Boot(b) => boot::boot(b),
        args::Command::Repl(r) => repl::repl(r),
        args::Command::Fuzz(f) => fuzz::fuzz(f),
        args::Command::Inspect { cpu: true, trap_path, .. } => cpu::inspect_cpu(trap_path.map(Into::into)),
        args::Command::Inspect { file, events, .. } => {
            inspect::inspect(&file.expect("clap requires FILE without --cpu"), events)
        }
    }
}

/// Builds the sandbox `run`, `trace` and `record` share (`vdso`: which vDSO the guest gets;
/// `debugged`: gdb will look at the program's code, which stays as the program has it).
pub fn build(
    r: &args::RunArgs,
    vdso: trapbox::VdsoMode,
    default_backend: Option<args::BackendArg>,
    debugged: bool,
) -> Result<trapbox::Sandbox> {
    let program = r.command.first().expect("clap requires PROGRAM").clone();
    let mut builder = trapbox::Sandbox::builder(&program)
        .vdso_mode(vdso)
        .args(r.command.iter().cloned())
        .timeout(r.timeout.map(std::time::Duration::from_secs_f64))
        .memory_limit(r.memory_limit)
        .quiet(r.quiet)
        .rewrite_syscalls(!debugged && !r.no_rewrite);
    if let Some(p) = r.trap_path {
        builder = builder.trap_path(p.into());
    }
    // A KVM trap path named explicitly means KVM, whatever the tool's default engine.
    if let Some(b) = r.backend.or(default_backend.filter(|_| r.trap_path.is_none())) {
        builder = builder.engine(b.engine());
    }
    let sandbox = builder.build()?;
    if r.verbose {
        eprintln!("trapbox: trap path: {}", sandbox.trap_path().name());
        eprintln!("trapbox: {}", cpu::summary(sandbox.cpu_view()));
    }
    Ok(sandbox)
}

/// Prints what `run` and `trace` print after the guest ended; returns its exit status.
pub fn finish(r: &args::RunArgs, report: &trapbox::Report) -> i32 {
    if let Some(line) = report.crash_line() {
        eprintln!("trapbox: {line}");
    }
    if report.outcome == trapbox::Outcome::TimedOut {
        eprintln!("trapbox: guest timed out after {} s", r.timeout.unwrap_or_default());
    }
    if r.verbose {
        let rewritten = if report.trap_path == trapbox::vm::TrapPath::InProcess {
            format!(", {} syscall sites rewritten", report.rewritten_sites)
        } else {
            String::new()
        };
        eprintln!("trapbox: {} VM exits, {} syscalls{rewritten}", report.exits, report.syscalls);
        let none = "trapbox: refused: nothing".to_string();
        eprintln!("{}", trapbox::process::refusals::summary_line(&report.refusals).unwrap_or(none));
    }
    report.outcome.exit_status()
}

fn run_program(cmd: args::RunCmd) -> Result<i32> {
    let r = &cmd.run;
    let gdb = cmd.gdb.as_deref().map(gdb::listen).transpose()?;
    let mut sandbox = build(r, trapbox::VdsoMode::Host, None, gdb.is_some())?;
    let report = match gdb {
        Some(l) => l.run(std::path::Path::new(&r.command[0]), &mut sandbox, trapbox::Passthrough)?,
        None => sandbox.run(trapbox::Passthrough)?,
    };
    Ok(finish(r, &report))
}
