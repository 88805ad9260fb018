//! `trapbox fuzz`.

use std::path::PathBuf;
use std::time::Duration;

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
    /// The random seed (repeats a campaign's choices).
    #[arg(long)]
    seed: Option<u64>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// Stop at the first distinct crash.
    #[arg(long)]
    until_crash: bool,
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
    let input = std::path::absolute(f.out.join(".cur_input")).context("cannot name the input file")?;
    let mut command = f.command.clone();
    let (harness, link) = match &f.entry {
        Some(_) if file_arg => bail!("--entry calls a function with the input: drop @@ (or --entry for file mode)"),
        Some(entry) => trapbox::fuzz::harness(&program, entry)?,
        None => {
            for a in command.iter_mut().skip(1).filter(|a| *a == "@@") {
                *a = input.to_string_lossy().into_owned();
            }
            trapbox::fuzz::file_mode(&program, &input, !file_arg)?
        }
    };
    let opts = trapbox::fuzz::Options {
        inputs: f.inputs.clone(),
        out: f.out.clone(),
        time: f.time.map(Duration::from_secs_f64),
        runs: f.runs,
        timeout: Duration::from_millis(f.timeout),
        dict: f.dict.clone(),
        max_len: f.max_len,
        seed: f.seed,
        quiet: f.quiet,
        until_crash: f.until_crash,
    };
    let mut builder = trapbox::Sandbox::builder(&program).args(command).quiet(true);
    builder = builder.engine(f.backend.unwrap_or(BackendArg::Kvm).engine());
    let mut sandbox = builder.build()?;
    // LibAFL on its own thread; the guest on this one (the engine's thread).
    let fuzzer = std::thread::Builder::new()
        .name("trapbox-fuzzer".into())
        .spawn(move || trapbox::fuzz::engine::run(&opts, link))
        .context("cannot start the fuzzer's thread")?;
    let mut harness = harness;
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
            let point = if f.entry.is_some() { "main" } else { "its first use of the input" };
            bail!("the program ended before reaching {point}, where the snapshot is taken ({how})");
        }
        Err(e) => return Err(e.into()),
    };
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    println!(
        "trapbox fuzz: {} executions in {:.1} s ({:.0}/s); corpus {}; blocks {}/{}; reset {:.1} µs, {:.1} pages; {} distinct crashes and hangs",
        s.executions,
        secs,
        s.executions as f64 / secs,
        s.corpus,
        s.covered,
        s.blocks,
        s.reset_per_execution.as_secs_f64() * 1e6,
        s.dirty_pages_per_reset,
        s.crashes.len()
    );
    for (path, line) in &s.crashes {
        println!("  {}: {line}", path.display());
    }
    Ok(if s.crashes.is_empty() { 0 } else { 1 })
}
