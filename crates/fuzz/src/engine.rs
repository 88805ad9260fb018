//! The fuzzing loop, on LibAFL: an executor that hands each input to the [`Harness`]
//! (running in the guest's thread) and reads its [`Report`] back, a one-slot-per-block
//! coverage map, havoc mutations (with a dictionary's tokens), and an objective that keeps
//! each distinct crash once and writes it to the output directory.
//!
//! [`Harness`]: crate::harness::Harness

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libafl::corpus::{Corpus, InMemoryCorpus};
use libafl::events::SimpleEventManager;
use libafl::executors::{Executor, ExitKind, HasObservers};
use libafl::feedbacks::{CrashFeedback, Feedback, MaxMapFeedback, StateInitializer, TimeoutFeedback};
use libafl::fuzzer::HasObjective;
use libafl::inputs::{BytesInput, HasTargetBytes};
use libafl::monitors::SimpleMonitor;
use libafl::mutators::havoc_mutations::havoc_mutations;
use libafl::mutators::scheduled::{tokens_mutations, HavocScheduledMutator};
use libafl::mutators::token_mutations::Tokens;
use libafl::observers::StdMapObserver;
use libafl::observers::{CanTrack, ExplicitTracking};
use libafl::schedulers::{IndexesLenTimeMinimizerScheduler, QueueScheduler};
use libafl::stages::mutational::StdMutationalStage;
use libafl::state::{HasCorpus, HasExecutions, HasMaxSize, HasSolutions, StdState};
use libafl::{feedback_and_fast, feedback_not, feedback_or_fast, Evaluator, Fuzzer, HasMetadata, StdFuzzer};
use libafl_bolts::rands::StdRand;
use libafl_bolts::tuples::{tuple_list, Merge, RefIndexable};
use libafl_bolts::{current_nanos, Named};

use crate::exchange::Exchange;
use crate::harness::{End, Link, Report};
use crate::host::files;
use crate::progress::{Figures, Progress};
use crate::{FuzzError, Options, Summary};

/// The coverage map: a slot per block or edge. Its indices are tracked, for the minimising
/// scheduler (each slot's smallest and fastest input is favoured).
type CovObs = ExplicitTracking<StdMapObserver<'static, u8, false>, true, false>;

/// A crash or hang the last execution ended with, for the objective.
#[derive(Clone, Debug)]
struct Found {
    /// Bucket: signal, faulting instruction and stack hash (all 0 for a hang).
    key: (i32, u64, u32),
    /// One line for the summary file.
    line: String,
    /// "crashes" or "hangs".
    dir: &'static str,
}

/// Runs inputs in the guest.
struct VmExecutor {
    link: Link,
    kicker: Option<trapbox_trap::Kicker>,
    timeout: Duration,
    observers: (CovObs, ()),
    found: Rc<RefCell<Option<Found>>>,
    covered: usize,
    dirty_pages: u64,
    reset: Duration,
    runs: u64,
    /// A reset knew the written pages from the kernel's tracking.
    tracked: bool,
    /// How the last execution went wrong, if it did.
    last: Option<Found>,
    /// Coverage slots (for the progress figures).
    blocks: usize,
    progress: Rc<RefCell<Progress>>,
    /// The campaign ends at this time (--time), or when this is set (another job found the
    /// crash, or trapbox was told to stop): checked before every execution, so a round of
    /// mutations with hangs in it does not run past it.
    deadline: Option<Instant>,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl VmExecutor {
    /// The progress figures now.
    fn figures(&self, execs: u64, corpus: usize) -> Figures {
        let runs = self.runs.max(1) as f64;
        Figures {
            execs,
            corpus,
            covered: self.covered,
            blocks: self.blocks,
            reset_us: self.reset.as_secs_f64() * 1e6 / runs,
            pages: self.dirty_pages as f64 / runs,
        }
    }
}

impl HasObservers for VmExecutor {
    type Observers = (CovObs, ());
    fn observers(&self) -> RefIndexable<&Self::Observers, Self::Observers> {
        RefIndexable::from(&self.observers)
    }
    fn observers_mut(&mut self) -> RefIndexable<&mut Self::Observers, Self::Observers> {
        RefIndexable::from(&mut self.observers)
    }
}

impl VmExecutor {
    /// One execution: the input to the guest, its report back (kicking it past the limit).
    fn run(&mut self, input: &[u8]) -> Result<Report, libafl::Error> {
        let gone = || libafl::Error::shutting_down();
        self.link.jobs.send(input.to_vec()).map_err(|_| gone())?;
        match self.link.reports.recv_timeout(self.timeout) {
            Ok(r) => Ok(r),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.link.timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                if let Some(k) = &self.kicker {
                    k.kick();
                }
                self.link.reports.recv().map_err(|_| gone())
            }
        }
    }
}

impl<EM, S: HasExecutions + HasCorpus<BytesInput>, Z> Executor<EM, BytesInput, S, Z> for VmExecutor {
    fn run_target(
        &mut self,
        _fuzzer: &mut Z,
        state: &mut S,
        _mgr: &mut EM,
        input: &BytesInput,
    ) -> Result<ExitKind, libafl::Error> {
        let stopped = self.stop.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst));
        if stopped || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(libafl::Error::shutting_down());
        }
        let figures = self.figures(*state.executions(), state.corpus().count());
        self.progress.borrow_mut().tick(&figures);
        *state.executions_mut() += 1;
        let report = self.run(&input.target_bytes())?;
        self.runs += 1;
        self.dirty_pages += report.dirty_pages;
        self.reset += report.reset;
        self.tracked |= report.tracked;
        for name in &report.refused {
            eprintln!("trapbox fuzz: the target called {name} after the snapshot: refused (ENOSYS); its effects could not be undone");
        }
        let map = self.observers.0.as_mut();
        if report.counts.is_empty() {
            // Blocks: each reported once, when first hit (its breakpoint is gone after).
            for slot in &report.new_blocks {
                if let Some(b) = map.get_mut(*slot as usize) {
                    *b = 1;
                }
            }
        } else {
            // The program's edge counters, whole, in AFL's buckets: a count that reaches a
            // new bucket is new coverage, as in AFL.
            for (b, &c) in map.iter_mut().zip(&report.counts) {
                *b = bucket(c);
            }
        }
        self.covered += report.new_blocks.len();
        let (kind, found) = match report.end {
            End::Returned | End::Exited(_) => (ExitKind::Ok, None),
            End::Crashed { signal, rip, addr, what, stack, frames } => {
                let at = addr.map(|a| format!(", address {a:#x}")).unwrap_or_default();
                let line = format!("{}: {what} (rip {rip:#x}{at}); stack {frames}", trapbox_trap::signal_name(signal));
                (ExitKind::Crash, Some(Found { key: (signal, rip, stack), line, dir: "crashes" }))
            }
            End::TimedOut => {
                let line = format!("still running after {:?}", self.timeout);
                (ExitKind::Timeout, Some(Found { key: (0, 0, 0), line, dir: "hangs" }))
            }
        };
        self.last.clone_from(&found);
        *self.found.borrow_mut() = found;
        Ok(kind)
    }
}

/// The objective: a crash or hang not seen before (by signal, faulting instruction and the
/// hash of its stack's frames; every hang is one bucket). Each is written to OUT/crashes (or OUT/hangs) as the input and a
/// one-line summary beside it.
struct Distinct {
    found: Rc<RefCell<Option<Found>>>,
    seen: HashSet<(i32, u64, u32)>,
    out: PathBuf,
    name: Cow<'static, str>,
    /// Saved so far (the crashes among them are counted by `progress`).
    saved: Vec<(PathBuf, String)>,
    /// The job's number, which names its files.
    job: Option<u32>,
    /// The status line, cleared before a message.
    progress: Rc<RefCell<Progress>>,
    /// The seeds are running: a failure ends the campaign instead of being saved.
    seeding: bool,
}

impl Named for Distinct {
    fn name(&self) -> &Cow<'static, str> {
        &self.name
    }
}

impl<S> StateInitializer<S> for Distinct {}

impl<EM, OT, S> Feedback<EM, BytesInput, OT, S> for Distinct {
    fn is_interesting(
        &mut self,
        _state: &mut S,
        _mgr: &mut EM,
        input: &BytesInput,
        _observers: &OT,
        _exit: &ExitKind,
    ) -> Result<bool, libafl::Error> {
        let Some(f) = self.found.borrow_mut().take() else { return Ok(false) };
        if self.seeding {
            return Ok(false);
        }
        if !self.seen.insert(f.key) {
            return Ok(false);
        }
        let dir = self.out.join(f.dir);
        let job = self.job.map(|j| format!("job{j}-")).unwrap_or_default();
        let (n, (signal, rip, stack)) = (self.seen.len() - 1, f.key);
        let id = format!("{job}id-{n:06}-sig-{signal}-stack-{stack:08x}-rip-{rip:x}");
        let path = dir.join(&id);
        files(|| {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, &*input.target_bytes())?;
            std::fs::write(dir.join(format!("{id}.txt")), format!("{}\n", f.line))
        })?;
        let kind = if f.dir == "crashes" { "crash" } else { "hang" };
        let mut progress = self.progress.borrow_mut();
        progress.clear();
        progress.saved(f.dir == "crashes");
        drop(progress);
        eprintln!("trapbox fuzz: new {kind}: {} -> {}", f.line, path.display());
        self.saved.push((path, f.line));
        Ok(true)
    }
}

/// The seed files: those in `dir`, in name order (none without a directory). A missing or
/// empty directory is an error: a campaign told to start from seeds must have some.
fn seeds(dir: Option<&std::path::Path>) -> Result<Vec<PathBuf>, FuzzError> {
    let Some(dir) = dir else { return Ok(Vec::new()) };
    let mut found: Vec<PathBuf> = files(|| {
        let entries = std::fs::read_dir(dir).map_err(|e| FuzzError::Seeds(dir.into(), e))?;
        Ok::<_, FuzzError>(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
    })?;
    found.sort();
    if found.is_empty() {
        return Err(FuzzError::NoSeeds(dir.into()));
    }
    Ok(found)
}

/// The exchange with the other jobs: this job's new corpus inputs written out, and when it is
/// time, the others' new ones run (kept if they reach new blocks).
fn swap<S, F, EM>(
    x: &mut Exchange,
    fuzzer: &mut F,
    state: &mut S,
    executor: &mut VmExecutor,
    mgr: &mut EM,
) -> Result<(), libafl::Error>
where
    S: HasCorpus<BytesInput>,
    F: Evaluator<VmExecutor, EM, BytesInput, S>,
{
    let ids: Vec<_> = state.corpus().ids().skip(x.written).collect();
    for id in ids {
        let input = state.corpus().cloned_input_for_id(id)?;
        x.publish(&input.target_bytes())?;
    }
    if x.due() {
        for bytes in x.collect() {
            let (_, kept) = fuzzer.evaluate_input(state, executor, mgr, &BytesInput::new(bytes))?;
            x.imported.0 += 1;
            x.imported.1 += u64::from(kept.is_some());
        }
    }
    Ok(())
}

/// Starts [`run`] on a thread of its own beside the guest's, with a descriptor table of its own
/// (see [`crate::host`]). Call it before the sandbox is built: the sandbox's hardening forbids
/// `unshare` to every thread of the process from then on.
pub fn spawn(opts: Options, link: Link) -> Result<std::thread::JoinHandle<Result<Summary, FuzzError>>, FuzzError> {
    let (ready, table) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("trapbox-fuzzer".into())
        .spawn(move || {
            let own = crate::host::own_table();
            let failed = own.is_err();
            let _ = ready.send(own);
            if failed {
                // What failed went to `spawn`'s caller; this result is never looked at.
                return Err(FuzzError::OwnTable(std::io::Error::other("no descriptor table of its own")));
            }
            run(&opts, link)
        })
        .map_err(FuzzError::OwnTable)?;
    match table.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => Err(FuzzError::OwnTable(e)),
        Err(_) => Err(FuzzError::OwnTable(std::io::Error::other("the fuzzer's thread ended at once"))),
    }
}

/// The loop, on the calling thread, until the time or run limit; `link` reaches the guest.
/// The thread must not share the guest's descriptor table ([`spawn`] sees to it).
pub fn run(opts: &Options, link: Link) -> Result<Summary, FuzzError> {
    let setup = link.setup.recv().map_err(|_| FuzzError::NeverReachedSnapshot)?;
    let observer: CovObs = StdMapObserver::owned("coverage", vec![0u8; setup.blocks.max(1)]).track_indices();
    let mut feedback = feedback_and_fast!(
        feedback_not!(feedback_or_fast!(CrashFeedback::new(), TimeoutFeedback::new())),
        MaxMapFeedback::new(&observer)
    );
    let found = Rc::new(RefCell::new(None));
    let stats = match opts.job {
        Some(j) => opts.out.join(format!("stats.job{j}.json")),
        None => opts.out.join("stats.json"),
    };
    let progress = Rc::new(RefCell::new(Progress::new(stats, opts.quiet)));
    let mut objective = Distinct {
        progress: progress.clone(),
        seeding: true,
        found: found.clone(),
        seen: HashSet::new(),
        out: opts.out.clone(),
        name: "distinct".into(),
        saved: vec![],
        job: opts.job,
    };
    let rand = StdRand::with_seed(opts.seed.unwrap_or_else(current_nanos));
    let mut state = StdState::new(rand, InMemoryCorpus::new(), InMemoryCorpus::new(), &mut feedback, &mut objective)?;
    state.set_max_size(opts.max_len);
    if let Some(dict) = &opts.dict {
        let tokens =
            files(|| Tokens::from_file(dict)).map_err(|source| FuzzError::Dict { path: dict.clone(), source })?;
        state.add_metadata(tokens);
    }
    let scheduler: IndexesLenTimeMinimizerScheduler<_, BytesInput, _> =
        IndexesLenTimeMinimizerScheduler::new(&observer, QueueScheduler::new());
    let mut fuzzer = StdFuzzer::new(scheduler, feedback, objective);
    // The progress shown is trapbox's own ([`Progress`]), with the figures it adds.
    let mut mgr = SimpleEventManager::new(SimpleMonitor::new(|_: &str| {}));
    let mut executor = VmExecutor {
        link,
        kicker: setup.kicker,
        timeout: opts.timeout,
        observers: tuple_list!(observer),
        found,
        covered: 0,
        dirty_pages: 0,
        reset: Duration::ZERO,
        runs: 0,
        tracked: false,
        last: None,
        blocks: setup.blocks,
        progress: progress.clone(),
        deadline: opts.time.map(|t| Instant::now() + t),
        stop: opts.stop.clone(),
    };
    let started = Instant::now();
    // Every seed is kept, and must run: a seed that crashes or hangs ends the campaign (the
    // fuzzer would only rediscover it, and a seed meant to run cleanly that does not means the
    // set-up is wrong).
    for seed in seeds(opts.inputs.as_deref())? {
        let bytes = files(|| std::fs::read(&seed)).map_err(|e| FuzzError::Seeds(seed.clone(), e))?;
        match fuzzer.add_input(&mut state, &mut executor, &mut mgr, BytesInput::new(bytes)) {
            Ok(_) => {}
            // The time is up before the seeds are all run.
            Err(libafl::Error::ShuttingDown) => break,
            Err(e) => return Err(e.into()),
        }
        if let Some(f) = executor.last.take() {
            return Err(FuzzError::BadSeed { seed, line: f.line });
        }
    }
    if state.corpus().count() == 0 {
        // No seeds: start from one empty-ish input.
        match fuzzer.add_input(&mut state, &mut executor, &mut mgr, BytesInput::new(vec![b'\n'])) {
            Ok(_) | Err(libafl::Error::ShuttingDown) => {}
            Err(e) => return Err(e.into()),
        }
    }
    fuzzer.objective_mut().seeding = false;
    let mut exchange = if opts.exchange { Some(Exchange::new(&opts.out, opts.job.unwrap_or(0))?) } else { None };
    let mutator = HavocScheduledMutator::new(havoc_mutations().merge(tokens_mutations()));
    let mut stages = tuple_list!(StdMutationalStage::new(mutator));
    // The time limit and a stop end the loop through the executor (it refuses the next
    // execution); the run limit and --until-crash here.
    let runs_done = |s: &StdState<_, _, _, _>| opts.runs.is_some_and(|n| *s.executions() >= n);
    let found_one = || opts.until_crash && progress.borrow().crashes() > 0;
    while !runs_done(&state) && !found_one() {
        let step = match exchange.as_mut() {
            Some(x) => swap(x, &mut fuzzer, &mut state, &mut executor, &mut mgr),
            None => Ok(()),
        };
        let step = step.and_then(|()| fuzzer.fuzz_one(&mut stages, &mut executor, &mut state, &mut mgr).map(drop));
        match step {
            Ok(()) => {}
            Err(libafl::Error::ShuttingDown) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = started.elapsed();
    progress.borrow_mut().finish(&executor.figures(*state.executions(), state.corpus().count()));
    let objective = fuzzer.objective_mut();
    Ok(Summary {
        writes_tracked: executor.tracked,
        imported: exchange.map(|x| x.imported),
        executions: *state.executions(),
        elapsed,
        corpus: state.corpus().count(),
        crashes: std::mem::take(&mut objective.saved),
        blocks: setup.blocks,
        slots: setup.slots,
        covered: executor.covered,
        dirty_pages_per_reset: executor.dirty_pages as f64 / executor.runs.max(1) as f64,
        reset_per_execution: Duration::from_secs_f64(executor.reset.as_secs_f64() / executor.runs.max(1) as f64),
        solutions: state.solutions().count(),
    })
}

/// AFL's bucket of an edge's hit count: 1, 2, 3, 4–7, 8–15, 16–31, 32–127, 128+.
fn bucket(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn counts_fall_in_afl_buckets() {
        let buckets: Vec<u8> = [0u8, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 127, 128, 255].map(bucket).to_vec();
        assert_eq!(buckets, [0, 1, 2, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128]);
    }
}
