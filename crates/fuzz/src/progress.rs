//! How a campaign is going, as it goes: a status line on stderr (rewritten in place on a
//! terminal, every second; a plain line every five seconds otherwise), and OUT/stats.json
//! (or OUT/stats.jobK.json), rewritten whole each second for tools to read.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The figures shown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    /// Executions so far.
    pub execs: u64,
    /// Inputs in the corpus.
    pub corpus: usize,
    /// Blocks reached, and all blocks.
    pub covered: usize,
    /// Coverage slots.
    pub blocks: usize,
    /// Reset time and dirty pages per execution, on average.
    pub reset_us: f64,
    /// Pages per reset.
    pub pages: f64,
}

/// The reporter.
pub struct Progress {
    started: Instant,
    last_shown: Instant,
    last_written: Instant,
    /// When coverage last grew.
    last_new: Instant,
    covered: usize,
    tty: bool,
    quiet: bool,
    stats: PathBuf,
    /// The status line is on screen (a message must clear it first).
    showing: bool,
    /// Distinct crashes and hangs saved.
    crashes: usize,
    hangs: usize,
}

impl Progress {
    /// Reporting to stderr unless `quiet`, and to `stats` always.
    pub fn new(stats: PathBuf, quiet: bool) -> Progress {
        let now = Instant::now();
        Progress {
            started: now,
            last_shown: now,
            last_written: now,
            last_new: now,
            covered: 0,
            tty: std::io::stderr().is_terminal(),
            quiet,
            stats,
            showing: false,
            crashes: 0,
            hangs: 0,
        }
    }

    /// Since the campaign started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Called often; shows and writes when it is time.
    pub fn tick(&mut self, f: &Figures) {
        if f.covered > self.covered {
            self.covered = f.covered;
            self.last_new = Instant::now();
        }
        if self.last_written.elapsed() >= Duration::from_secs(1) {
            self.last_written = Instant::now();
            let _ = self.write(f);
        }
        let every = if self.tty { Duration::from_secs(1) } else { Duration::from_secs(5) };
        if !self.quiet && self.last_shown.elapsed() >= every {
            self.last_shown = Instant::now();
            let line = self.line(f);
            if self.tty {
                eprint!("\r\x1b[K{line}");
                self.showing = true;
            } else {
                eprintln!("{line}");
            }
        }
    }

    /// A distinct crash (or hang) was saved.
    pub fn saved(&mut self, crash: bool) {
        if crash {
            self.crashes += 1;
        } else {
            self.hangs += 1;
        }
    }

    /// Distinct crashes saved so far.
    pub fn crashes(&self) -> usize {
        self.crashes
    }

    /// Before a message of its own on stderr: the status line goes (on a terminal).
    pub fn clear(&mut self) {
        if self.showing {
            eprint!("\r\x1b[K");
            self.showing = false;
        }
    }

    /// At the end: the last figures written, the status line cleared.
    pub fn finish(&mut self, f: &Figures) {
        self.clear();
        let _ = self.write(f);
    }

    fn line(&self, f: &Figures) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        format!(
            "trapbox fuzz: {:.0} s: {} execs ({:.0}/s), corpus {}, blocks {}/{}, {} crashes, {} hangs, last new block {:.0} s ago",
            secs,
            f.execs,
            f.execs as f64 / secs,
            f.corpus,
            f.covered,
            f.blocks,
            self.crashes,
            self.hangs,
            self.last_new.elapsed().as_secs_f64()
        )
    }

    /// OUT/stats.json, replaced whole (written beside it, then renamed).
    fn write(&self, f: &Figures) -> std::io::Result<()> {
        let secs = self.started.elapsed().as_secs_f64();
        let stats = serde_json::json!({
            "execs": f.execs,
            "execs_per_sec": (f.execs as f64 / secs.max(1e-9) * 10.0).round() / 10.0,
            "corpus_count": f.corpus,
            "covered_blocks": f.covered,
            "total_blocks": f.blocks,
            "unique_crashes": self.crashes,
            "unique_hangs": self.hangs,
            "elapsed_s": (secs * 10.0).round() / 10.0,
            "last_new_block_s": (self.last_new.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "reset_us": (f.reset_us * 10.0).round() / 10.0,
            "dirty_pages_per_reset": (f.pages * 10.0).round() / 10.0,
        });
        let tmp = self.stats.with_extension("json.tmp");
        crate::host::files(|| {
            let mut file = std::fs::File::create(&tmp)?;
            writeln!(file, "{stats:#}")?;
            drop(file);
            std::fs::rename(&tmp, &self.stats)
        })
    }
}
