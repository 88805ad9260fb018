//! `trapbox repl`.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use trapbox::repl::{input, Options, Session, Syntax};
use trapbox::tools::trace::{Flush, TraceOptions, Tracer};

use crate::args::BackendArg;

#[derive(clap::Args, Debug)]
pub struct ReplArgs {
    /// AT&T syntax instead of Intel's.
    #[arg(long)]
    att: bool,
    /// Instruction width: 64 (the only one: guests run in 64-bit mode).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(64..=64))]
    bits: u32,
    /// The engine that runs the lines (default: kvm, the sandbox).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
}

pub fn repl(r: ReplArgs) -> Result<i32> {
    let _ = r.bits;
    let dir = std::env::temp_dir().join(format!("trapbox-repl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let result = session(&r, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn session(r: &ReplArgs, dir: &std::path::Path) -> Result<i32> {
    let program = trapbox::repl::program(dir).context("cannot write the REPL's guest program")?;
    // The session shows and undoes the guest's code: it stays as written.
    let mut builder =
        trapbox::Sandbox::builder(&program).args(["trapbox-repl-guest"]).quiet(true).rewrite_syscalls(false);
    if let Some(b) = r.backend {
        builder = builder.engine(b.engine());
    }
    let mut sandbox = builder.build()?;
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let source: Box<dyn input::LineSource> = if terminal {
        eprintln!(
            "trapbox repl: x86-64, {} syntax; .help lists the commands, .quit ends",
            if r.att { "AT&T" } else { "Intel" }
        );
        Box::new(input::Terminal::new().context("cannot start the line editor")?)
    } else {
        Box::new(input::Plain(std::io::stdin().lock()))
    };
    let opts = Options { syntax: if r.att { Syntax::Att } else { Syntax::Intel }, plain: !terminal };
    let session = Session::new(opts, source, Box::new(std::io::stdout()), dir)?;
    // The tracer prints the syscalls the lines make, in strace's form, where the registers go.
    let mut traced = Tracer::new(
        session,
        TraceOptions { start_line: false, ..TraceOptions::default() },
        Box::new(std::io::stdout()),
        Flush::EachLine,
    );
    let report = sandbox.run(&mut traced)?;
    match report.outcome {
        trapbox::Outcome::Stopped => Ok(0),
        o => {
            eprintln!("trapbox repl: the guest ended ({o:?})");
            Ok(1)
        }
    }
}
