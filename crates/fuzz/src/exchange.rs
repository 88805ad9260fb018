//! Corpus exchange between the jobs of `--jobs N` (AFL's sync directories, in spirit): each
//! job writes every input it keeps to OUT/queue/jobK/, and at its start and every two seconds
//! runs the other jobs' inputs it has not seen, keeping those that reach blocks it has not.
//! Files are written beside their final name and renamed, so a reader never sees half of one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a job looks at the others' queues.
const EVERY: Duration = Duration::from_secs(2);
/// Longest input taken from another job (a queue file is not trusted to be an input).
pub(crate) const MAX_INPUT: u64 = 1 << 20;

/// One job's end of the exchange.
pub struct Exchange {
    /// OUT/queue.
    root: PathBuf,
    /// OUT/queue/jobK.
    own: PathBuf,
    /// Inputs of this job's corpus written so far.
    pub written: usize,
    /// Other jobs' files already run.
    seen: HashSet<PathBuf>,
    /// When the queues were last read (None: never).
    last: Option<Instant>,
    /// Inputs taken from other jobs, and of them kept.
    pub imported: (u64, u64),
}

impl Exchange {
    /// Job `job`'s end, under `out`.
    pub fn new(out: &Path, job: u32) -> std::io::Result<Exchange> {
        let root = out.join("queue");
        let own = root.join(format!("job{job}"));
        crate::host::files(|| std::fs::create_dir_all(&own))?;
        Ok(Exchange { root, own, written: 0, seen: HashSet::new(), last: None, imported: (0, 0) })
    }

    /// Writes an input this job kept.
    pub fn publish(&mut self, input: &[u8]) -> std::io::Result<()> {
        put(&self.own, self.written as u64, input)?;
        self.written += 1;
        Ok(())
    }

    /// Whether it is time to read the other queues.
    pub fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= EVERY)
    }

    /// The other jobs' inputs not seen yet, in their order.
    pub fn collect(&mut self) -> Vec<Vec<u8>> {
        self.last = Some(Instant::now());
        crate::host::files(|| self.read_new())
    }

    fn read_new(&mut self) -> Vec<Vec<u8>> {
        let own = self.own.clone();
        new_inputs(&self.root, |d| *d != own, &mut self.seen)
    }
}

/// Writes input number `n` of the queue `dir` (`id-NNNNNN`), beside its final name first and
/// then renamed, so that a reader never sees half of it.
pub(crate) fn put(dir: &Path, n: u64, input: &[u8]) -> std::io::Result<()> {
    let name = format!("id-{n:06}");
    let tmp = dir.join(format!(".{name}.tmp"));
    crate::host::files(|| {
        std::fs::write(&tmp, input)?;
        std::fs::rename(&tmp, dir.join(name))
    })
}

/// The inputs in the queues under `root` that `which` picks (by directory) and that are not
/// in `seen` yet, each queue's in its order; every file looked at goes into `seen`. A file
/// being written (its name starts with a dot), one that is not a regular file or one longer
/// than [`MAX_INPUT`] is not an input.
pub(crate) fn new_inputs(root: &Path, which: impl Fn(&Path) -> bool, seen: &mut HashSet<PathBuf>) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else { return found };
    for dir in dirs.flatten().map(|e| e.path()).filter(|p| p.is_dir() && which(p)) {
        let Ok(files) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = files
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
            .collect();
        files.sort();
        for f in files {
            if !seen.insert(f.clone()) {
                continue;
            }
            let small = std::fs::metadata(&f).is_ok_and(|m| m.is_file() && m.len() <= MAX_INPUT);
            if let Some(bytes) = small.then(|| std::fs::read(&f).ok()).flatten() {
                found.push(bytes);
            }
        }
    }
    found
}
