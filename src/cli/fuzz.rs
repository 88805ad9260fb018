//! `trapbox fuzz`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::args::BackendArg;

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Seed inputs: a directory of files (default: one one-byte input).
    #[arg(short = 'i', value_name = "SEEDS")]
    inputs: Option<PathBuf>,
    /// Where distinct crashes (OUT/crashes) and hangs (OUT/hangs) are saved.
    #[arg(short = 'o', value_name = "OUT")]
    out: PathBuf,
    /// Harness mode: call this function, `int f(const uint8_t *data, size_t size)`, once per
    /// input, from a snapshot taken at `main` (the program needs both symbols). Without it,
    /// file mode: `@@` in the arguments is the input's path, and without `@@` the input is
    /// stdin; the snapshot is at the program's first call that mentions it.
    #[arg(long, value_name = "SYMBOL")]
    entry: Option<String>,
    /// File mode: take the snapshot when the program first gets to SYMBOL (a function) or ADDR
    /// (0x..., a link-time address of the program), instead of at its first mention of the
    /// input: each execution restores it and goes on from there with the new input in place.
    /// The program must not have read its input before that point.
    #[arg(long, value_name = "SYMBOL|ADDR", conflicts_with = "entry")]
    snapshot_at: Option<String>,
    /// Stop after SECS seconds.
    #[arg(long, value_name = "SECS")]
    time: Option<f64>,
    /// Stop after N executions.
    #[arg(long, value_name = "N")]
    runs: Option<u64>,
    /// One execution's time limit, in milliseconds; a longer one is a hang.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    timeout: u64,
    /// An AFL-format dictionary of tokens for the mutations.
    #[arg(long, value_name = "FILE")]
    dict: Option<PathBuf>,
    /// Longest input, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    max_len: usize,
    /// Whose basic blocks are the coverage: main (the program file, the default), all (every
    /// object loaded at the snapshot, libraries and the dynamic linker too), or a list such as
    /// main,libc (a library by the start of its file name). A program built with edge counters
    /// (AFL++'s afl-cc, SanitizerCoverage's inline-8bit-counters) is covered by its edges
    /// instead, when the coverage is main.
    #[arg(long, value_name = "all|main|LIB,...", default_value = "main")]
    cover: trapbox::fuzz::Cover,
    /// The random seed (repeats a campaign's choices).
    #[arg(long)]
    seed: Option<u64>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// Stop at the first distinct crash.
    #[arg(long)]
    until_crash: bool,
    /// Run N jobs side by side, each a trapbox of its own (its own VM) with a seed of its own
    /// (random, or --seed plus its number); each saves what it finds under OUT with its number,
    /// writes the inputs it keeps to OUT/queue/jobK, and every 2 s runs the other jobs' new
    /// ones. With --until-crash, the first crash found stops them all.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// Serve other machines' fuzzers ([HOST:]PORT; port 0 picks one): every input one keeps
    /// reaches the others (OUT/queue/net), and the inputs this machine's jobs keep reach them.
    #[arg(long, value_name = "[HOST:]PORT", conflicts_with = "connect")]
    broker: Option<String>,
    /// Join the fuzzers of a broker (another machine's `--broker`), exchanging kept inputs
    /// with them.
    #[arg(long, value_name = "HOST:PORT")]
    connect: Option<String>,
    /// This process is job K of a --jobs run (set by the first job for the others).
    #[arg(long, hide = true)]
    job: Option<u32>,
    /// The engine (default: kvm: the target runs untrusted input).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    command: Vec<String>,
}

pub fn fuzz(f: FuzzArgs) -> Result<i32> {
    if f.time.is_none() && f.runs.is_none() {
        bail!("say how long to fuzz: --time SECS or --runs N");
    }
    let program = PathBuf::from(&f.command[0]);
    std::fs::create_dir_all(&f.out).with_context(|| format!("cannot make {}", f.out.display()))?;
    let file_arg = f.command.iter().skip(1).any(|a| a == "@@");
    // The file each input is written to (file mode), absolute: the program may change directory.
    let name = f.job.map(|j| format!(".cur_input.{j}")).unwrap_or_else(|| ".cur_input".into());
    let input = std::path::absolute(f.out.join(name)).context("cannot name the input file")?;
    let stop = Arc::new(AtomicBool::new(false));
    // Job 0 starts the others; they are told their number (and start none).
    let job = f.job.or((f.jobs > 1).then_some(0));
    let others = if job == Some(0) { Some(Jobs::start(&f, stop.clone())?) } else { None };
    // Other machines: the first job's process bridges this machine's queues with them.
    let bridge = match (&f.broker, &f.connect) {
        _ if f.job.is_some() => None,
        (Some(at), _) => {
            let b = trapbox::fuzz::net::Bridge::broker(&f.out, at)?;
            if let Some(a) = b.listening {
                eprintln!("trapbox fuzz: broker on {a}: other machines join with --connect HOST:{}", a.port());
            }
            Some(b)
        }
        (None, Some(to)) => Some(trapbox::fuzz::net::Bridge::connect(&f.out, to, Duration::from_secs(30))?),
        (None, None) => None,
    };
    let command = with_input(&f.command, &input);
    let (harness, link) = match &f.entry {
        Some(_) if file_arg => bail!("--entry calls a function with the input: drop @@ (or --entry for file mode)"),
        Some(entry) => trapbox::fuzz::harness(&program, entry)?,
        None => trapbox::fuzz::file_mode(&program, &input, !file_arg, f.snapshot_at.as_deref())?,
    };
    let opts = trapbox::fuzz::Options {
        inputs: f.inputs.clone(),
        out: f.out.clone(),
        time: f.time.map(Duration::from_secs_f64),
        runs: f.runs,
        timeout: Duration::from_millis(f.timeout),
        dict: f.dict.clone(),
        max_len: f.max_len,
        // Each job its own seed: job K fuzzes with seed + K.
        seed: f.seed.map(|s| s + u64::from(job.unwrap_or(0))),
        quiet: f.quiet,
        until_crash: f.until_crash,
        stop: Some(stop.clone()),
        job,
        exchange: job.is_some() || f.broker.is_some() || f.connect.is_some(),
    };
    // The engine's thread and the guest's take turns: both on one CPU (job K on the K-th),
    // a hand-over costs no wake-up of another CPU and a restore's write-protection no TLB
    // shootdown (on this 2-CPU PVM machine: reset 40 → 27–33 µs, 14 → 19–22 k exec/s on a
    // small harness).
    trapbox::process::host::pin_to_cpu(job.unwrap_or(0) as usize);
    // LibAFL on its own thread, started before the sandbox (whose hardening forbids the
    // thread its own descriptor table); the guest on this one (the engine's thread).
    let fuzzer = trapbox::fuzz::engine::spawn(opts, link)?;
    // Snapshots put code pages back: the code stays as the program has it.
    let mut builder = trapbox::Sandbox::builder(&program).args(command).quiet(true).rewrite_syscalls(false);
    builder = builder.engine(f.backend.unwrap_or(BackendArg::Kvm).engine());
    let mut sandbox = builder.build()?;
    let mut harness = harness.cover(f.cover.clone());
    let report = sandbox.run(&mut harness);
    // The handler's ends of the link go first: a fuzzer still waiting for the snapshot (the
    // program ended before it) then hears that it never comes.
    let failure = harness.failure.take();
    drop(harness);
    let summary = fuzzer.join().map_err(|_| anyhow::anyhow!("the fuzzer's thread panicked"))?;
    if let Some(why) = failure {
        bail!("{why}");
    }
    let report = report?;
    let s = match summary {
        Ok(s) => s,
        Err(trapbox::fuzz::FuzzError::NeverReachedSnapshot) => {
            let how = report.crash_line().unwrap_or_else(|| format!("{:?}", report.outcome));
            let point = match (&f.entry, &f.snapshot_at) {
                (Some(_), _) => "main".to_string(),
                (None, Some(at)) => at.clone(),
                (None, None) => "its first use of the input".to_string(),
            };
            bail!("the program ended before reaching {point}, where the snapshot is taken ({how})");
        }
        Err(e) => return Err(e.into()),
    };
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    println!(
        "trapbox fuzz: {} executions in {:.1} s ({:.0}/s); corpus {}; {} {}/{}; reset {:.1} µs, {:.1} pages{}; {} distinct crashes and hangs",
        s.executions,
        secs,
        s.executions as f64 / secs,
        s.corpus,
        s.slots,
        s.covered,
        s.blocks,
        s.reset_per_execution.as_secs_f64() * 1e6,
        s.dirty_pages_per_reset,
        if s.writes_tracked { " (written pages tracked)" } else { " (pages compared)" },
        s.crashes.len()
    );
    if let Some((taken, kept)) = s.imported {
        println!("  took {taken} inputs from the other jobs, kept {kept} for new coverage");
    }
    if let Some(b) = bridge {
        let (sent, received) = b.counts();
        println!("  network: sent {sent} inputs to other machines, received {received}");
    }
    for (path, line) in &s.crashes {
        let traced = if is_crash(path) { format!("; {}", trace_crash(&f, path, !file_arg)) } else { String::new() };
        println!("  {}: {line}{traced}", path.display());
    }
    let mut found = !s.crashes.is_empty();
    if let Some(jobs) = others {
        let (mut execs, mut saved) = (s.executions, s.crashes.len());
        for out in jobs.finish(f.until_crash && (found || stop.load(Ordering::SeqCst))) {
            print!("{out}");
            execs += summary_executions(&out).unwrap_or(0);
            saved += summary_saved(&out).unwrap_or(0);
        }
        found |= saved > 0;
        println!(
            "trapbox fuzz: {} jobs: {execs} executions in {secs:.1} s ({:.0}/s); {saved} distinct crashes and hangs",
            f.jobs,
            execs as f64 / secs
        );
    }
    Ok(if found { 1 } else { 0 })
}

/// `command` with each `@@` argument (AFL's convention) replaced by `input`'s path.
fn with_input(command: &[String], input: &Path) -> Vec<String> {
    let path = input.to_string_lossy();
    let args = command.iter().skip(1).map(|a| if a == "@@" { path.to_string() } else { a.clone() });
    command.iter().take(1).cloned().chain(args).collect()
}

/// Whether `saved` is a crash (not a hang): it is under OUT/crashes.
fn is_crash(saved: &Path) -> bool {
    saved.parent().and_then(Path::file_name).is_some_and(|d| d == "crashes")
}

/// Records the program's run from its start on the crashing input `saved` into `saved.trace`,
/// which `trapbox replay` reproduces standalone; says how it went in a few words, which also
/// go to the crash's summary file. In file mode the program reads the input as it did when
/// fuzzed (its `@@` path or stdin); in harness mode it is called at `main` on the input, as
/// the fuzzer called it, and the trace holds that call.
///
/// The recording is a `trapbox record` of its own: a fresh process whose guest starts as the
/// program would natively, whose output is not mixed with this one's, and whose failure cannot
/// end the campaign's summary.
fn trace_crash(f: &FuzzArgs, saved: &Path, stdin: bool) -> String {
    let trace = saved.with_extension("trace");
    let said = match record_crash(f, saved, &trace, stdin) {
        Ok(()) => format!("trace {} (trapbox replay reproduces it)", trace.display()),
        Err(why) => {
            let _ = std::fs::remove_file(&trace);
            format!("no trace: {why:#}")
        }
    };
    let summary = saved.with_extension("txt");
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(&summary) {
        let _ = writeln!(file, "{said}");
    }
    said
}

fn record_crash(f: &FuzzArgs, saved: &Path, trace: &Path, stdin: bool) -> Result<()> {
    let input = std::path::absolute(saved)?;
    let command = with_input(&f.command, &input);
    // Ten times the fuzzing limit: the run from the start does more than one execution did.
    let limit = (f.timeout as f64 / 1000.0 * 10.0).max(10.0);
    let mut cmd = std::process::Command::new(std::env::current_exe().context("cannot find trapbox's own path")?);
    cmd.args(["record", "-q", "-o"]).arg(trace).args(["--timeout", &limit.to_string()]);
    // The campaign's engine (KVM unless told otherwise).
    let backend = clap::ValueEnum::to_possible_value(&f.backend.unwrap_or(BackendArg::Kvm));
    cmd.args(["--backend", backend.as_ref().map_or("kvm", |v| v.get_name())]);
    if let Some(entry) = &f.entry {
        cmd.args(["--harness-entry", entry]).arg("--harness-input").arg(&input);
    }
    cmd.arg("--").args(&command);
    let stdin =
        if stdin && f.entry.is_none() { std::fs::File::open(&input)?.into() } else { std::process::Stdio::null() };
    let status = cmd
        .stdin(stdin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("cannot start the recording")?;
    // The saved name carries the signal it crashed with: `...-sig-S-...`.
    let signal: Option<i32> = saved.file_name().and_then(|n| n.to_str()).and_then(|n| {
        let rest = n.split("-sig-").nth(1)?;
        rest.split('-').next()?.parse().ok()
    });
    match (status.code(), signal) {
        (Some(code), Some(sig)) if code == 128 + sig => Ok(()),
        (Some(124), _) => bail!("the run from the start did not end within {limit} s"),
        (Some(code), Some(sig)) if code > 128 && code < 128 + 65 => {
            bail!("the run from the start crashed with signal {} instead of {sig}", code - 128)
        }
        (Some(code), _) => bail!("the run from the start did not crash (exit status {code})"),
        (None, _) => bail!("the recording was killed"),
    }
}

/// The distinct crashes and hangs a job's summary line counts.
fn summary_saved(out: &str) -> Option<usize> {
    let line = out.lines().next()?;
    line.strip_suffix(" distinct crashes and hangs")?.rsplit("; ").next()?.parse().ok()
}

/// The executions a job's summary line counts.
fn summary_executions(out: &str) -> Option<u64> {
    out.lines().next()?.strip_prefix("trapbox fuzz: ")?.split_whitespace().next()?.parse().ok()
}

/// The other jobs of a `--jobs N` run: trapbox processes of their own, started with this
/// one's arguments (job 0's) and `--job K`, from which each derives its files and seed.
struct Jobs {
    children: Arc<std::sync::Mutex<Vec<std::process::Child>>>,
    watcher: std::thread::JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Jobs {
    fn start(f: &FuzzArgs, stop: Arc<AtomicBool>) -> Result<Jobs> {
        // `trapbox fuzz ARGS...` (the command has no options before its tool's name).
        let own: Vec<String> = std::env::args().skip(2).collect();
        let mut children = Vec::new();
        for k in 1..f.jobs {
            let args = ["fuzz".to_string(), "--job".into(), k.to_string()].into_iter().chain(own.iter().cloned());
            let child = std::process::Command::new(std::env::current_exe().context("cannot find trapbox's own path")?)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start job {k}"))?;
            children.push(child);
        }
        let children = Arc::new(std::sync::Mutex::new(children));
        let (watched, until_crash, stopping) = (children.clone(), f.until_crash, stop.clone());
        // A job that found a crash (exit status 1) stops the others when --until-crash asks.
        let watcher = std::thread::spawn(move || loop {
            let mut all_done = true;
            for c in watched.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
                match c.try_wait() {
                    Ok(Some(st)) if st.code() == Some(1) && until_crash => stopping.store(true, Ordering::SeqCst),
                    Ok(Some(_)) => {}
                    _ => all_done = false,
                }
            }
            if all_done || stopping.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
        Ok(Jobs { children, watcher, stop })
    }

    /// Waits for the jobs (ending them first if `stop`: they stop as on Ctrl-C, with their
    /// summary), and gives what each printed.
    fn finish(self, stop: bool) -> Vec<String> {
        if stop {
            self.stop.store(true, Ordering::SeqCst);
        }
        let _ = self.watcher.join();
        let children = std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        children
            .into_iter()
            .map(|c| {
                if stop {
                    // SAFETY: kill(2) on a child this process started and has not reaped.
                    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                }
                c.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
            })
            .collect()
    }
}
