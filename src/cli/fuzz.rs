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
    /// input, from a snapshot taken at `main` (the program needs both symbols).
    #[arg(long, value_name = "SYMBOL")]
    entry: String,
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
    if f.command.iter().any(|a| a == "@@") {
        bail!("file mode (@@) is not built yet: use harness mode (--entry SYMBOL)");
    }
    let program = PathBuf::from(&f.command[0]);
    let (harness, link) = trapbox::fuzz::harness(&program, &f.entry)?;
    std::fs::create_dir_all(&f.out).with_context(|| format!("cannot make {}", f.out.display()))?;
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
    let mut builder = trapbox::Sandbox::builder(&program).args(f.command.iter().cloned()).quiet(true);
    builder = builder.engine(f.backend.unwrap_or(BackendArg::Kvm).engine());
    let mut sandbox = builder.build()?;
    // LibAFL on its own thread; the guest on this one (the engine's thread).
    let fuzzer = std::thread::Builder::new()
        .name("trapbox-fuzzer".into())
        .spawn(move || trapbox::fuzz::engine::run(&opts, link))
        .context("cannot start the fuzzer's thread")?;
    let mut harness = harness;
    let report = sandbox.run(&mut harness);
    let summary = fuzzer.join().map_err(|_| anyhow::anyhow!("the fuzzer's thread panicked"))?;
    if let Some(why) = harness.failure.take() {
        bail!("{why}");
    }
    let report = report?;
    let s = match summary {
        Ok(s) => s,
        Err(trapbox::fuzz::FuzzError::NeverReachedMain) => {
            let how = report.crash_line().unwrap_or_else(|| format!("{:?}", report.outcome));
            bail!("the program ended before reaching main, where the snapshot is taken ({how})");
        }
        Err(e) => return Err(e.into()),
    };
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    println!(
        "trapbox fuzz: {} executions in {:.1} s ({:.0}/s); corpus {}; blocks {}/{}; {:.1} pages reset per execution; {} distinct crashes and hangs",
        s.executions,
        secs,
        s.executions as f64 / secs,
        s.corpus,
        s.covered,
        s.blocks,
        s.dirty_pages_per_reset,
        s.crashes.len()
    );
    for (path, line) in &s.crashes {
        println!("  {}: {line}", path.display());
    }
    Ok(if s.crashes.is_empty() { 0 } else { 1 })
}
