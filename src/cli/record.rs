//! `trapbox record`, `trapbox replay`, and `inspect` of a trace.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use trapbox::tools::record::{DecodedTrace, EndEvent, Event, Recorder, ReplayStop, Replayer, Tail, TraceReader};

use crate::args::{RecordArgs, ReplayArgs};

/// Runs the program under the recorder.
pub fn record(r: RecordArgs) -> Result<i32> {
    let (f, replaced) = trapbox::tools::record::file::create_replacing(&r.output)
        .with_context(|| format!("-o {}", r.output.display()))?;
    let f = trapbox::process::fds::privatize(f)?;
    let mut rec = Recorder::new(trapbox::Passthrough, f).with_context(|| format!("{}", r.output.display()))?;
    if let Some(old) = replaced {
        rec.close_later(old);
    }
    let mut sandbox = crate::build(&r.run, trapbox::VdsoMode::Record, Some(crate::args::BackendArg::Auto), false)?;
    let (report, rec) = match (&r.harness_entry, &r.harness_input) {
        (Some(entry), Some(input)) => {
            let bytes = std::fs::read(input).with_context(|| format!("{}", input.display()))?;
            let program = std::path::Path::new(&r.run.command[0]);
            let mut calling = trapbox::fuzz::CallRecording::new(rec, program, entry, bytes)?;
            let report = sandbox.run(&mut calling)?;
            if let Some(why) = calling.failure.take() {
                bail!("{why}");
            }
            (report, calling.into_recorder())
        }
        _ => (sandbox.run(&mut rec)?, rec),
    };
    if let Some(e) = rec.error() {
        eprintln!("trapbox: writing {} failed: {e} (the trace is incomplete)", r.output.display());
    }
    if r.run.verbose {
        let (events, bytes) = rec.stats();
        eprintln!(
            "trapbox: recorded {events} events, {bytes} bytes ({:.1} bytes per syscall), {} machine-dependent instructions patched",
            bytes as f64 / report.syscalls.max(1) as f64,
            rec.patched_sites()
        );
    }
    Ok(crate::finish(&r.run, &report))
}

/// Replays a trace.
pub fn replay(r: ReplayArgs) -> Result<i32> {
    let gdb = r.gdb.as_deref().map(crate::gdb::listen).transpose()?;
    let (report, replayer) = match gdb {
        // Under gdb the replay may be run again from its start (gdb going back).
        Some(l) => {
            let (program, first) = open_replay(&r, None)?;
            let mut first = Some(first);
            // Read whole once gdb first goes back, for every run after (a damaged trace is
            // read as it is each time).
            let mut decoded: Option<Option<DecodedTrace>> = None;
            l.run_replay(&program, || match first.take() {
                Some(run) => Ok(run),
                None => {
                    let d = decoded.get_or_insert_with(|| {
                        let f = std::fs::File::open(&r.trace).ok()?;
                        let f = trapbox::process::fds::privatize(f).ok()?;
                        DecodedTrace::read(std::io::BufReader::new(f)).ok()
                    });
                    open_replay(&r, d.as_ref()).map(|(_, run)| run)
                }
            })?
        }
        None => {
            let (_, (mut sandbox, mut replayer)) = open_replay(&r, None)?;
            (sandbox.run(&mut replayer)?, replayer)
        }
    };
    if let Some(stop) = replayer.stopped() {
        eprintln!("trapbox: {stop}");
        return Ok(match stop {
            ReplayStop::Diverged { .. } | ReplayStop::Corrupt(_) => 127,
            ReplayStop::TraceEnds { .. } | ReplayStop::StoppedAt(_) => 125,
        });
    }
    if let Some(line) = report.crash_line() {
        eprintln!("trapbox: {line}");
    }
    Ok(report.outcome.exit_status())
}

/// Opens the trace (or takes it `decoded` already) and builds the sandbox that replays it:
/// the recorded program's path, the sandbox and its replayer.
fn open_replay(
    r: &ReplayArgs,
    decoded: Option<&DecodedTrace>,
) -> Result<(std::path::PathBuf, (trapbox::Sandbox, Replayer))> {
    let (start, mut replayer) = match decoded {
        Some(d) => Replayer::open_decoded(d),
        None => {
            let f = std::fs::File::open(&r.trace).with_context(|| format!("{}", r.trace.display()))?;
            let f = trapbox::process::fds::privatize(f)?;
            Replayer::open(std::io::BufReader::new(f)).with_context(|| format!("{}", r.trace.display()))?
        }
    };
    if let Some(n) = r.stop_at {
        replayer = replayer.stop_at(n);
    }
    if let Err(why) = start.check_program() {
        bail!("{why}");
    }
    // The engine that recorded, unless told otherwise (traces before format 8 name none: KVM).
    let engine = match (r.backend, start.engine) {
        (Some(b), _) => b.engine(),
        (None, Some(e)) => e,
        (None, None) => trapbox::vm::Engine::Kvm(trapbox::vm::TrapPath::detect()),
    };
    let sandbox =
        trapbox::Sandbox::replaying(start.image()).engine(engine).rewrite_syscalls(r.gdb.is_none()).build()?;
    if let Err(why) = start.check_cpu(sandbox.cpu_view()) {
        bail!("{}: cannot replay on this CPU: {why}", r.trace.display());
    }
    if r.verbose {
        eprintln!("trapbox: trap path: {}", sandbox.trap_path().name());
    }
    Ok((start.program_path(), (sandbox, replayer)))
}

/// Whether `head` starts like a trace.
pub fn is_trace(head: &[u8]) -> bool {
    head.starts_with(trapbox::tools::record::file::MAGIC)
}

/// `trapbox inspect --events TRACE`: each event on a line, with its index (as a divergence
/// names it) and the guest thread it belongs to; exit status 1 at a damaged chunk.
pub fn list_events(path: &Path) -> Result<i32> {
    use std::io::Write;
    let f = std::fs::File::open(path)?;
    let mut r = TraceReader::new(std::io::BufReader::new(f))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut index, mut thread) = (0u64, 0u32);
    loop {
        let e = match r.next_event() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                writeln!(out, "damaged: {e}")?;
                return Ok(1);
            }
        };
        if let Event::Switch(t) = e {
            thread = t;
        }
        let detail = match &e {
            Event::Syscall(s) => {
                let bytes: usize = s.writes.iter().map(|w| w.1.len()).sum();
                format!(" = {}{}", s.ret, if bytes > 0 { format!(" ({bytes} bytes written)") } else { String::new() })
            }
            Event::TimeCalls(c) => {
                let names: Vec<&str> = c.iter().map(|t| t.kind.symbol().trim_start_matches("__vdso_")).collect();
                format!(": {}", names.join(", "))
            }
            Event::Start(s) => format!(": {}", String::from_utf8_lossy(&s.program)),
            _ => String::new(),
        };
        writeln!(out, "{index:>8}  thread {thread}  {}{detail}", e.describe())?;
        index += 1;
    }
    if let Some(Tail::Truncated { .. }) = r.tail() {
        writeln!(out, "(the trace was cut short here)")?;
    }
    Ok(0)
}

/// `inspect` for a trace: program, events, per-syscall counts, size.
pub fn inspect_trace(path: &Path) -> Result<i32> {
    let size = std::fs::metadata(path)?.len();
    let f = std::fs::File::open(path)?;
    let mut r = TraceReader::new(std::io::BufReader::new(f))?;
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    let (mut events, mut insns, mut written, mut time_calls) = (0u64, 0u64, 0u64, 0u64);
    let (mut console, mut console_writes) = (0u64, 0u64);
    let (mut switches, mut threads, mut preempts) = (0u64, 1u32, 0u64);
    let mut in_vdso: BTreeMap<String, u64> = BTreeMap::new();
    let mut end = None;
    println!("{}:", path.display());
    println!("  kind: trapbox trace (format version {})", r.version());
    let status = loop {
        match r.next_event() {
            Ok(Some(e)) => {
                events += 1;
                match e {
                    Event::Start(s) => {
                        let argv: Vec<String> =
                            s.argv.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                        if events == 1 {
                            println!("  program: {}", String::from_utf8_lossy(&s.program));
                            println!("  argv: {argv:?}");
                            if let Some(e) = s.engine {
                                println!("  engine: {}", e.name());
                            }
                        } else {
                            println!("  exec (event {}): {} {argv:?}", events - 1, String::from_utf8_lossy(&s.program));
                        }
                    }
                    Event::Syscall(s) => {
                        let name = trapbox::process::abi::lookup(s.nr)
                            .map(|d| d.name.to_string())
                            .unwrap_or_else(|| format!("syscall_{:#x}", s.nr));
                        *calls.entry(name).or_default() += 1;
                        written += s.writes.iter().map(|w| w.1.len() as u64).sum::<u64>();
                    }
                    Event::Insn(_) => insns += 1,
                    Event::End(e) => end = Some(e),
                    Event::File(f) => written += f.data.len() as u64,
                    Event::Signal(sg) => {
                        *calls.entry(format!("signal {}", trapbox::trap::signal_name(sg.sig))).or_default() += 1
                    }
                    Event::Console(c) => console += c.data.len() as u64,
                    Event::ConsoleWrite(_) => console_writes += 1,
                    Event::Preempt(_) => preempts += 1,
                    Event::Call(c) => {
                        println!("  call (event {}): {:#x}, made at {:#x}", events - 1, c.regs[16], c.at[16])
                    }
                    Event::Switch(t) => {
                        switches += 1;
                        threads = threads.max(t + 1);
                    }
                    Event::TimeCalls(c) => {
                        time_calls += c.len() as u64;
                        for call in c {
                            let name = call.kind.symbol().trim_start_matches("__vdso_");
                            *in_vdso.entry(format!("{name} (in the vDSO)")).or_default() += 1;
                        }
                    }
                }
            }
            Ok(None) => break 0,
            Err(e) => {
                println!("  damaged: {e}");
                break 1;
            }
        }
    };
    let syscalls: u64 = calls.values().sum();
    println!(
        "  events: {events} ({syscalls} syscalls, {insns} machine-dependent instructions, {time_calls} time calls answered in the vDSO)"
    );
    println!(
        "  size: {size} bytes ({:.1} per syscall; {written} bytes of guest memory recorded)",
        size as f64 / syscalls.max(1) as f64
    );
    println!(
        "  console output: {console_writes} writes by the program, {console} bytes stored whole (its children's, \
         and what sendfile, splice or copy_file_range moved)"
    );
    if switches > 0 {
        println!(
            "  threads: {threads} ({switches} switches from one to another, {preempts} of them at a preemption of a spinning thread)"
        );
    }
    match (end, r.tail()) {
        (Some(EndEvent::Exited(c)), _) => println!("  end: exited with {c}"),
        (Some(EndEvent::Killed(s)), _) => println!("  end: killed by signal {s}"),
        (Some(EndEvent::Faulted { signal, rip }), _) => {
            println!("  end: killed by signal {signal}, a fault at {rip:#x}")
        }
        (None, Some(Tail::Truncated { .. })) => {
            println!("  end: none recorded — the trace was cut short; its complete prefix replays")
        }
        (None, _) => println!("  end: none recorded"),
    }
    println!("  syscalls:");
    let mut rows: Vec<(&String, &u64)> = calls.iter().chain(in_vdso.iter()).collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (name, n) in rows {
        println!("  {n:>8}  {name}");
    }
    Ok(status)
}
