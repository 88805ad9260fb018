//! Command-line arguments.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Run unmodified Linux x86-64 programs in a KVM box and own every trap they make.
#[derive(Parser, Debug)]
#[command(name = "trapbox", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a program in the box; it behaves as natively, every syscall goes through trapbox.
    Run(RunCmd),
    /// Run a program in the box and print its syscalls the way strace does.
    Trace(TraceArgs),
    /// Run a program like `run` and record everything nondeterministic to a trace.
    Record(RecordArgs),
    /// Re-run a recorded program, answering every syscall from the trace.
    Replay(ReplayArgs),
    /// Boot a Linux kernel (bzImage) in KVM with a serial console on this terminal.
    Boot(crate::boot::BootArgs),
    /// An x86-64 assembly REPL: each line is assembled, run at CPL3 in the box, and the
    /// registers it changed are shown (`.help` lists the commands).
    Repl(crate::repl::ReplArgs),
    /// Snapshot fuzzing of an unmodified program on LibAFL: harness mode calls a
    /// libFuzzer-style function once per input, resetting the guest to a snapshot in between.
    Fuzz(crate::fuzz::FuzzArgs),
    /// Say what a file is and whether trapbox can run it (or summarise a trace); with
    /// `--cpu`, show the CPU the box gives programs beside the host's.
    Inspect {
        /// The file.
        #[arg(required_unless_present = "cpu")]
        file: Option<PathBuf>,
        /// For a trace: list its events one per line (index, guest thread, event), as a
        /// replay's divergence names them by index.
        #[arg(long)]
        events: bool,
        /// Show the CPU view the guest gets (XSAVE state and layout, features) beside the
        /// host's, and whether each is consistent.
        #[arg(long, conflicts_with_all = ["file", "events"])]
        cpu: bool,
        /// With --cpu: the trap path whose VM to measure (default: detected).
        #[arg(long, value_enum, requires = "cpu")]
        trap_path: Option<PathArg>,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunCmd {
    /// Wait for gdb on [HOST:]PORT before the program's first instruction, and let it debug
    /// the program (`gdb PROGRAM -ex 'target remote :PORT'`).
    #[arg(long, value_name = "[HOST:]PORT")]
    pub gdb: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// End the guest after SECS seconds (exit status 124).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Cap the guest's accessible memory (e.g. 512M, 2G); allocations beyond fail with ENOMEM.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<u64>,
    /// Force a trap path instead of detecting the kind of KVM.
    #[arg(long, value_enum)]
    pub trap_path: Option<PathArg>,
    /// Where the program runs: `kvm` (a VM: the sandbox), `inproc` (in trapbox's own process,
    /// syscalls caught by Syscall User Dispatch: faster where VM exits are dear, but NOT a
    /// sandbox: the program can write trapbox's memory), or `auto` (hardware KVM if there is
    /// one, else in-process). Default: `kvm` for run, `auto` for trace and record.
    #[arg(long, value_enum, value_name = "BACKEND", conflicts_with = "trap_path")]
    pub backend: Option<BackendArg>,
    /// In-process: leave the program's syscall sites as they are (by default a site that is
    /// hot is rewritten to reach trapbox without a signal). For a program that reads its own
    /// code or loads GS with `wrgsbase` itself.
    #[arg(long)]
    pub no_rewrite: bool,
    /// Print the trap path at start, and at the end the exit count and what the box refused
    /// the program (syscalls, ioctl requests, fcntl commands, socket options).
    #[arg(short, long)]
    pub verbose: bool,
    /// No warnings on stderr (what the box refuses is still counted for -v).
    #[arg(short, long)]
    pub quiet: bool,
    /// PROGRAM ARGS...
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Wait for gdb on [HOST:]PORT before the program's first instruction; a --stop-on match
    /// is a stop in gdb (SIGTRAP) after the call, and the program can go on from there.
    #[arg(long, value_name = "[HOST:]PORT")]
    pub gdb: Option<String>,
    /// Which syscalls: `trace=NAME,...`, classes `%file %process %network %signal %ipc %desc
    /// %memory %creds %stat %clock`, `!` to negate (`trace=` may be left out).
    #[arg(short = 'e', value_name = "EXPR")]
    pub expr: Option<String>,
    /// Write the trace to FILE instead of stderr.
    #[arg(short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Longest string shown before `...`.
    #[arg(short = 's', value_name = "N", default_value_t = 32)]
    pub strsize: usize,
    /// Print a summary table (time, calls, errors per syscall) instead of the lines.
    #[arg(short = 'c')]
    pub summary: bool,
    /// Print the lines and the summary table.
    #[arg(short = 'C')]
    pub summary_too: bool,
    /// Show the time spent in each syscall.
    #[arg(short = 'T')]
    pub timing: bool,
    /// Show the path behind each descriptor.
    #[arg(short = 'y')]
    pub fd_paths: bool,
    /// Only syscalls that succeeded.
    #[arg(short = 'z')]
    pub only_ok: bool,
    /// Only syscalls that failed.
    #[arg(short = 'Z')]
    pub only_failed: bool,
    /// Follow child processes (prefixes lines with [pid N] once processes exist in the box).
    #[arg(short = 'f')]
    pub follow: bool,
    /// One JSON object per syscall (name, nr, args, raw_args, ret, errno, duration_us).
    #[arg(long)]
    pub json: bool,
    /// Stop at the first syscall matching EXPR (`mmap:len>=0x80000`, `openat:path=~/etc/`):
    /// print it, its result and the registers, and exit with status 125.
    #[arg(long, value_name = "EXPR")]
    pub stop_on: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Where to write the trace.
    #[arg(short = 'o', value_name = "TRACE", required = true)]
    pub output: PathBuf,
    /// At `main`, call this function on the bytes of --harness-input as `trapbox fuzz
    /// --entry` does (how the fuzzer records a crash's trace).
    #[arg(long, hide = true, value_name = "SYMBOL", requires = "harness_input")]
    pub harness_entry: Option<String>,
    /// The input for --harness-entry.
    #[arg(long, hide = true, value_name = "FILE", requires = "harness_entry")]
    pub harness_input: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The trace written by `trapbox record`.
    pub trace: PathBuf,
    /// Stop just before trace event N (exit status 125).
    #[arg(long, value_name = "N")]
    pub stop_at: Option<u64>,
    /// Wait for gdb on [HOST:]PORT before the replayed program's first instruction and let it
    /// debug the replay (forward only, for now); the end of the trace is reported to gdb as
    /// the end of the replay history.
    #[arg(long, value_name = "[HOST:]PORT")]
    pub gdb: Option<String>,
    /// Print the trap path and the exit count.
    #[arg(short, long)]
    pub verbose: bool,
    /// Where the replay runs (see `run --backend`); default: the backend that recorded it.
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub backend: Option<BackendArg>,
}

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A KVM virtual machine (the sandbox).
    Kvm,
    /// trapbox's own process, syscalls caught by Syscall User Dispatch (not a sandbox).
    Inproc,
    /// Hardware KVM where there is one; in-process where /dev/kvm is missing, unusable or PVM.
    Auto,
}

impl BackendArg {
    /// The engine this choice names on this host.
    pub fn engine(self) -> trapbox::vm::Engine {
        match self {
            BackendArg::Kvm => trapbox::vm::Engine::Kvm(trapbox::vm::TrapPath::detect()),
            BackendArg::Inproc => trapbox::vm::Engine::InProcess,
            BackendArg::Auto => trapbox::vm::auto_engine(),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PathArg {
    /// Hardware KVM: syscall enters a ring-0 stub.
    Hw,
    /// PVM: syscall stays at CPL3 and rings a doorbell.
    Pvm,
}

impl From<PathArg> for trapbox::vm::TrapPath {
    fn from(p: PathArg) -> Self {
        match p {
            PathArg::Hw => trapbox::vm::TrapPath::Hardware,
            PathArg::Pvm => trapbox::vm::TrapPath::Pvm,
        }
    }
}

/// Parses `512M`, `2G`, `1048576`, `64k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'k' => 1u64 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return Err(format!("unknown size suffix in {s:?} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("not a size: {s:?}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size too large: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_units() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("lots").is_err());
    }
}
