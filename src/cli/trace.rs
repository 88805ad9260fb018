//! `trapbox trace`.

use std::io::Write;

use anyhow::{Context, Result};
use trapbox::tools::trace::{Filter, Flush, StopCondition, Style, SummaryMode, TraceOptions, Tracer};

use crate::args::TraceArgs;

/// Runs the program under the tracer.
pub fn trace(t: TraceArgs) -> Result<i32> {
    let filter = match &t.expr {
        Some(e) => {
            let body = e.strip_prefix("trace=").unwrap_or(e);
            Filter::parse(body).map_err(|err| anyhow::anyhow!("-e {e}: {err}"))?
        }
        None => Filter::all(),
    };
    let stop =
        t.stop_on.as_deref().map(StopCondition::parse).transpose().map_err(|e| anyhow::anyhow!("--stop-on: {e}"))?;
    let summary = match (t.summary, t.summary_too) {
        (_, true) => SummaryMode::Also,
        (true, false) => SummaryMode::Only,
        _ => SummaryMode::Off,
    };
    let opts = TraceOptions {
        filter,
        style: Style { strsize: t.strsize, fd_paths: t.fd_paths },
        timing: t.timing,
        only_ok: t.only_ok,
        only_failed: t.only_failed,
        summary,
        json: t.json,
        stop,
        start_line: true,
    };
    use std::io::IsTerminal;
    let (out, flush): (Box<dyn Write + Send>, Flush) = match &t.output {
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("-o {}", p.display()))?;
            let mode = if f.is_terminal() { Flush::EachLine } else { Flush::Buffered };
            (Box::new(trapbox::process::fds::privatize(f)?), mode)
        }
        None if std::io::stderr().is_terminal() => (Box::new(std::io::stderr()), Flush::EachLine),
        None => (Box::new(std::io::stderr()), Flush::SharedWithProgram),
    };
    let gdb = t.gdb.as_deref().map(crate::gdb::listen).transpose()?;
    let mut sandbox =
        crate::build(&t.run, trapbox::VdsoMode::Host, Some(crate::args::BackendArg::Auto), gdb.is_some())?;
    let mut tracer = Tracer::new(trapbox::Passthrough, opts, out, flush);
    let report = match gdb {
        Some(l) => l.run(std::path::Path::new(&t.run.command[0]), &mut sandbox, &mut tracer)?,
        None => sandbox.run(&mut tracer)?,
    };
    Ok(crate::finish(&t.run, &report))
}
