//! `trapbox fuzz`: snapshot fuzzing of an unmodified program in trapbox's guest, on LibAFL,
//! in harness mode (a function called per input) or file mode (`@@` or stdin).
//!
//! The guest runs on its thread under a [`harness::Harness`] (a [`trapbox_trap::TrapHandler`]
//! that takes a snapshot, resets to it before each input, and collects one-shot block
//! coverage); LibAFL runs on another ([`engine`]), handing inputs over a channel. It stands
//! on the trap API only: the snapshot is the engine's [`trapbox_trap::Snapshots`] capability,
//! breakpoints are [`trapbox_trap::Process::patch_code`].

pub mod crash_trace;
pub mod engine;
pub mod exchange;
pub mod harness;
pub(crate) mod host;
pub mod net;
pub mod objects;
pub mod progress;
pub mod target;
pub mod unwind;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crash_trace::CallRecording;
pub use harness::{Cover, Harness, Link, Mode};
pub use target::{Target, TargetError};

/// What a campaign is told.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seed inputs (a directory), if any.
    pub inputs: Option<PathBuf>,
    /// Where crashes and hangs go (OUT/crashes, OUT/hangs).
    pub out: PathBuf,
    /// Stop after this long.
    pub time: Option<Duration>,
    /// Stop after this many executions.
    pub runs: Option<u64>,
    /// One execution's time limit.
    pub timeout: Duration,
    /// An AFL-format dictionary.
    pub dict: Option<PathBuf>,
    /// Longest input.
    pub max_len: usize,
    /// The random seed (a fixed one repeats a campaign's choices).
    pub seed: Option<u64>,
    /// No progress lines.
    pub quiet: bool,
    /// Stop at the first distinct crash.
    pub until_crash: bool,
    /// Set from outside to end the campaign (another job found the crash).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// This job's number among `--jobs`: its saved files' names start with it.
    pub job: Option<u32>,
    /// Run the inputs other jobs (or machines, through OUT/queue/net) keep, and write out
    /// the ones this job keeps ([`exchange`]).
    pub exchange: bool,
}

/// What a campaign did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Executions run.
    pub executions: u64,
    /// How long the loop ran.
    pub elapsed: Duration,
    /// Inputs kept for new coverage.
    pub corpus: usize,
    /// Crashes and hangs saved: the input's path and one line.
    pub crashes: Vec<(PathBuf, String)>,
    /// Coverage slots (basic blocks, or the program's counted edges).
    pub blocks: usize,
    /// What the slots are, in words ("blocks", "edges (AFL++ counters)", ...).
    pub slots: &'static str,
    /// Blocks reached.
    pub covered: usize,
    /// Pages a reset put back, on average.
    pub dirty_pages_per_reset: f64,
    /// How long a reset took, on average.
    pub reset_per_execution: Duration,
    /// Resets knew the written pages from the kernel's tracking (else they compared pages).
    pub writes_tracked: bool,
    /// Distinct crashes and hangs.
    pub solutions: usize,
    /// A job of `--jobs`: inputs taken from the other jobs, and of them kept.
    pub imported: Option<(u64, u64)>,
}

/// Why a campaign failed.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// The program file.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The program ended (or failed) before the snapshot point: `main` (harness mode) or its
    /// first use of the input (file mode).
    #[error("the program ended before the snapshot point (main, or its first use of the input)")]
    NeverReachedSnapshot,
    /// The dictionary cannot be read.
    #[error("cannot read the dictionary {path}: {source}")]
    Dict {
        /// The file.
        path: PathBuf,
        /// LibAFL's reason.
        source: libafl::Error,
    },
    /// `--snapshot-at 0x...` is not a hex address.
    #[error("--snapshot-at {0}: not a hex address (0x...) or a symbol")]
    BadAddress(String),
    /// The seed directory or a seed cannot be read.
    #[error("-i {0}: {1}")]
    Seeds(PathBuf, std::io::Error),
    /// The seed directory has no files.
    #[error("-i {0}: no seed inputs in it")]
    NoSeeds(PathBuf),
    /// A seed crashes or hangs the program.
    #[error("the seed {seed} already fails: {line} (take it out of the seeds: the campaign needs inputs that run)")]
    BadSeed {
        /// The seed.
        seed: PathBuf,
        /// How it failed.
        line: String,
    },
    /// The exchange directory cannot be written.
    #[error("cannot write OUT/queue: {0}")]
    Exchange(#[from] std::io::Error),
    /// LibAFL failed.
    #[error("fuzzer: {0}")]
    Libafl(#[from] libafl::Error),
    /// The fuzzer's thread could not be started with a descriptor table of its own.
    #[error("cannot start the fuzzer's thread with its own descriptor table: {0}")]
    OwnTable(std::io::Error),
}

/// Harness mode for `program`: the handler to run it under, and the fuzzer's end of the link.
pub fn harness(program: &Path, entry: &str) -> Result<(Harness, Link), FuzzError> {
    let t = Target::read(program)?;
    let main = t.require(program, "main")?;
    let entry = t.require(program, entry)?;
    let (h, link) = Harness::new(Mode::Call { main, entry }, t.blocks, t.pie, t.lowest);
    Ok((h.counters(t.counters), link))
}

/// File mode for `program`: inputs written to `input`, which the program opens by that path
/// (its `@@` argument), or reads as its stdin; the snapshot at its first mention of the input,
/// or at `at` (a function symbol, or a link-time address in hex) when given.
pub fn file_mode(program: &Path, input: &Path, stdin: bool, at: Option<&str>) -> Result<(Harness, Link), FuzzError> {
    let t = Target::read(program)?;
    let at = match at {
        None => None,
        Some(a) => match a.strip_prefix("0x").map(|h| u64::from_str_radix(h, 16)) {
            Some(Ok(addr)) => Some(addr),
            Some(Err(_)) => return Err(FuzzError::BadAddress(a.into())),
            None => Some(t.require(program, a)?),
        },
    };
    let (h, link) = Harness::new(Mode::File { input: input.into(), stdin, at }, t.blocks, t.pie, t.lowest);
    Ok((h.counters(t.counters), link))
}
