//! `trapbox run --gdb`: Debian's gdb, in batch mode, against a live run on both engines.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// What a debugging session left: gdb's output, the program's stdout, trapbox's stderr and
/// exit status.
struct Session {
    gdb: String,
    stdout: String,
    stderr: String,
    status: i32,
}

/// Runs `program` under `trapbox run --gdb` and gdb with `commands`; `during`, if given,
/// runs while gdb does (to interrupt it).
fn debug(program: &Path, commands: &[&str], during: Option<&dyn Fn(u32)>) -> Session {
    debug_args(program, &[], commands, during)
}

/// [`debug`] with the program's arguments.
fn debug_args(program: &Path, args: &[&str], commands: &[&str], during: Option<&dyn Fn(u32)>) -> Session {
    let mut tool: Vec<std::ffi::OsString> = ["run", "--gdb", "127.0.0.1:0", "--"].map(Into::into).to_vec();
    tool.push(program.into());
    tool.extend(args.iter().map(Into::into));
    debug_with(&tool, program, None, commands, during)
}

/// `trapbox TOOL...` (ending in `--gdb 127.0.0.1:0` and what the tool takes), with gdb on
/// `program`'s symbols.
fn debug_with(
    tool: &[std::ffi::OsString],
    program: &Path,
    last: Option<&Path>,
    commands: &[&str],
    during: Option<&dyn Fn(u32)>,
) -> Session {
    if backend() == Backend::Kvm {
        require_kvm();
    }
    let mut args: Vec<std::ffi::OsString> = tool.to_vec();
    args.extend(last.map(|p| p.as_os_str().to_owned()));
    let mut tb = trapbox_command(&args);
    let mut tb = common::spawn_grouped(tb.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()));
    let mut err = BufReader::new(tb.stderr.take().expect("piped"));
    let mut first = String::new();
    err.read_line(&mut first).expect("trapbox says where it waits");
    let port = first
        .split("target remote :")
        .nth(1)
        .and_then(|p| p.trim().trim_end_matches('\'').parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    // A command file, so that commands may span lines (`while` … `end`).
    let script = tempdir("gdb").join("commands.gdb");
    let text: String = std::iter::once(format!("target remote :{port}"))
        .chain(commands.iter().map(|c| c.to_string()))
        .map(|c| c + "\n")
        .collect();
    std::fs::write(&script, text).expect("gdb's command file");
    let mut gdb = Command::new("gdb");
    gdb.args(["-q", "-batch", "-nx"]).arg(program).arg("-x").arg(&script);
    let child = common::spawn_grouped(gdb.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()));
    if let Some(f) = during {
        f(child.id());
    }
    let out = common::wait_within(child, "gdb");
    // trapbox's stderr after its first line is small (what it says at the end): the pipe holds
    // it while the wait reads stdout.
    let tb = common::wait_within(tb, "trapbox under gdb");
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    let status = tb.status.code().unwrap_or(-1);
    Session {
        gdb: String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        stdout: String::from_utf8_lossy(&tb.stdout).into_owned(),
        stderr: first + &rest,
        status,
    }
}

/// `trapbox replay --gdb` on `trace` (a recording of `program`), with gdb running `commands`.
fn replayed(program: &Path, trace: &Path, commands: &[&str]) -> Session {
    let tool = ["replay", "--gdb", "127.0.0.1:0"].map(std::ffi::OsString::from);
    debug_with(&tool, program, Some(trace), commands, None)
}

fn target(form: Form) -> std::path::PathBuf {
    guest_with_flags("gdb_target", form, "debug", &["-O0", "-g"])
}

fn breakpoint_print_backtrace_finish_next(form: Form) {
    let s = debug(
        &target(form),
        &["break square", "continue", "print x", "bt", "finish", "next", "print counter", "delete", "continue"],
        None,
    );
    let g = &s.gdb;
    assert!(g.contains("Breakpoint 1, square (x=1) at"), "{g}");
    assert!(g.contains("$1 = 1\n"), "{g}");
    assert!(g.contains("#1  ") && g.contains(" in main () at "), "backtrace through main:\n{g}");
    assert!(g.contains("Value returned is $2 = 1\n"), "{g}");
    assert!(g.contains("$3 = 1\n"), "counter after the first pass:\n{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "total 14 counter 6\n");
    assert_eq!(s.status, 0, "{}", s.stderr);
}

fn breakpoints_step_and_exit() {
    breakpoint_print_backtrace_finish_next(Form::Dynamic);
}

fn shared_libraries_and_a_breakpoint_in_libc() {
    let s = debug(
        &target(Form::Dynamic),
        &[
            "break main",
            "continue",
            "info sharedlibrary",
            "break printf",
            "continue",
            "bt 1",
            "p $fs_base != 0",
            "kill",
        ],
        None,
    );
    let g = &s.gdb;
    assert!(g.contains("libc.so.6"), "info sharedlibrary lists libc:\n{g}");
    assert!(g.contains("Breakpoint 2, ") && g.contains("printf"), "stopped in libc's printf:\n{g}");
    assert!(g.contains("#0  ") && g.contains("printf"), "{g}");
    assert!(g.contains("$1 = 1\n"), "FS base (the TLS pointer) is set:\n{g}");
    assert_eq!(s.status, 137, "gdb's kill ends the program: {}", s.stderr);
}

fn stepi_and_registers() {
    let s = debug(
        &target(Form::Static),
        &[
            "break square",
            "continue",
            "p $pc == (long)&square + 0 || $pc > (long)&square",
            "stepi",
            "p $rip == $pc",
            "info registers rip",
            "p $orig_rax",
            "continue",
        ],
        None,
    );
    let g = &s.gdb;
    assert!(g.contains("$1 = 1\n") && g.contains("$2 = 1\n"), "{g}");
    assert!(g.contains("rip            0x"), "{g}");
    assert!(g.contains("$3 = -1\n"), "orig_rax outside a syscall:\n{g}");
    assert_eq!(s.stdout, "total 14 counter 6\n");
}

/// Each fault stops in gdb; `continue` passes the signal on to the program's handler, which
/// recovers (three SIGSEGVs, one SIGBUS), and the program ends normally.
fn faults_are_signal_stops_and_continue_passes_them() {
    let prog = guest("sig_segv", Form::Static);
    let s = debug(&prog, &["continue", "continue", "continue", "continue", "continue"], None);
    let g = &s.gdb;
    assert_eq!(g.matches("Program received signal SIGSEGV").count(), 3, "{g}");
    assert_eq!(g.matches("Program received signal SIGBUS").count(), 1, "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert!(s.stdout.contains("recovered 4"), "{}", s.stdout);
}

fn ctrl_c_interrupts_a_spinning_guest() {
    let prog = guest_with_flags("gdb_spin", Form::Static, "debug", &["-O0", "-g"]);
    let interrupt = |gdb_pid: u32| {
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: kill(2) on gdb's own pid, which this test started.
        unsafe { libc::kill(gdb_pid as i32, libc::SIGINT) };
    };
    let s = debug(&prog, &["continue", "print spins > 0", "kill"], Some(&interrupt));
    let g = &s.gdb;
    assert!(g.contains("Program received signal SIGINT"), "{g}");
    assert!(g.contains("$1 = 1\n"), "{g}");
    assert_eq!(s.status, 137, "{}", s.stderr);
}

/// Ctrl-C stops every thread of a program whose threads all spin (no syscalls): gdb lists
/// them, each in the loop, and `kill` ends the program.
fn ctrl_c_stops_every_spinning_thread() {
    let prog = guest_with_flags("cpu_threads", Form::Static, "debug", &["-O0", "-g"]);
    let interrupt = |gdb_pid: u32| {
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: kill(2) on gdb's own pid, which this test started.
        unsafe { libc::kill(gdb_pid as i32, libc::SIGINT) };
    };
    let s = debug_args(&prog, &["2", "4000000000"], &["continue", "info threads", "kill"], Some(&interrupt));
    let g = &s.gdb;
    assert!(g.contains("received signal SIGINT"), "{g}");
    let spinning = g.lines().filter(|l| l.contains("Thread ") && l.contains("spin (arg=")).count();
    assert_eq!(spinning, 2, "both workers stopped in their loop:\n{g}");
    assert_eq!(s.status, 137, "{}", s.stderr);
}

/// A single step over `syscall` ends right after it, with the call's result in RAX.
fn stepi_over_a_syscall() {
    let prog = target(Form::Static);
    let s = debug(
        &prog,
        &[
            "break write",
            "continue",
            "while *(unsigned short *)$pc != 0x050f\nstepi\nend",
            "set $at = $pc",
            "stepi",
            "p $pc - $at",
            "p $rax",
            "kill",
        ],
        None,
    );
    let g = &s.gdb;
    assert!(g.contains("$1 = 2\n"), "stopped right after the syscall:\n{g}");
    assert!(g.contains("$2 = 19\n"), "write's result (\"total 14 counter 6\\n\"):\n{g}");
}

/// A replay under gdb: the same breakpoints and values as the live run, the program's output
/// replayed, and the end reached normally.
fn a_replay_under_gdb() {
    let (prog, trace) = recorded(Form::Dynamic);
    let s = replayed(
        &prog,
        &trace,
        &["break square", "continue", "continue", "print x", "print counter", "delete", "continue"],
    );
    let g = &s.gdb;
    assert!(g.contains("Breakpoint 1, square (x=1)"), "{g}");
    assert!(g.contains("Breakpoint 1, square (x=2)"), "{g}");
    assert!(g.contains("$1 = 2\n") && g.contains("$2 = 3\n"), "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "total 14 counter 6\n");
}

/// A replay of a threaded program under gdb: its threads stop together as on a live run,
/// and going back from a stop of a thread other than the first is refused with a line.
fn a_threaded_replay_stops_together() {
    let (prog, trace) = recorded_guest("gdb_threads", Form::Dynamic);
    let s = replayed(
        &prog,
        &trace,
        &["break work", "continue", "info threads", "reverse-continue", "continue", "print id", "delete", "continue"],
    );
    let g = &s.gdb;
    // The refused reverse-continue is a stop where the thread was (gdb tells it as the
    // breakpoint again).
    assert!(g.contains("hit Breakpoint 1, work (id=1)") && g.contains("hit Breakpoint 1, work (id=2)"), "{g}");
    let listed = g
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c == '*' || c.is_ascii_digit()) && l.contains("Thread "))
        .count();
    assert_eq!(listed, 3, "three threads in info threads:\n{g}");
    assert!(s.stderr.contains("cannot go back across a stop of a thread other than the first"), "{}", s.stderr);
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "work 1 work 2 total 30\n", "{}", s.stderr);
}

/// A write watchpoint in a threaded program stops the thread that writes, where it writes:
/// every thread runs a step at a time, the ones made after the watchpoint was set included.
fn watchpoints_see_every_thread() {
    let prog = guest_with_flags("gdb_threads", Form::Dynamic, "debug", &["-O0", "-g"]);
    let commands = ["break main", "continue", "watch done[2]", "continue", "bt 1", "delete", "continue"];
    let s = debug_args(&prog, &["100"], &commands, None);
    let g = &s.gdb;
    assert!(g.contains("Old value = 0\nNew value = 20\n"), "{g}");
    assert!(g.contains("#0  work (id=2) at "), "the writing thread, in work:\n{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "work 1 work 2 total 30\n", "{}", s.stderr);
}

/// A detach while every thread steps for a watchpoint: the steps end with gdb, and the
/// program runs on to its end (a thread's left-over step is not the program's SIGTRAP).
fn detach_with_a_watchpoint_lets_every_thread_run_on() {
    let prog = guest_with_flags("gdb_threads", Form::Dynamic, "debug", &["-O0", "-g"]);
    let s = debug_args(&prog, &["100"], &["break main", "continue", "watch done[1]", "continue", "detach"], None);
    assert!(s.gdb.contains("New value = 10\n"), "{}", s.gdb);
    assert_eq!(s.stdout, "work 1 work 2 total 30\n", "{}", s.stderr);
    assert_eq!(s.status, 0, "{}", s.stderr);
}

/// `trace --stop-on … --gdb`: the matching call is a stop in gdb, the traced lines before it
/// are out, and the program goes on to its end from there.
fn a_trace_stop_is_a_gdb_stop() {
    let prog = target(Form::Static);
    let tool = ["trace", "--stop-on", "write", "--gdb", "127.0.0.1:0", "--"].map(std::ffi::OsString::from);
    let s = debug_with(&tool, &prog, Some(&prog), &["continue", "p $rax", "bt 2", "continue"], None);
    let g = &s.gdb;
    assert!(g.contains("Program received signal SIGTRAP"), "{g}");
    assert!(g.contains("$1 = 19\n"), "the call's result is in RAX at the stop:\n{g}");
    assert!(g.contains("#0  0x") && g.contains(" in write ()"), "stopped in write:\n{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert!(s.stderr.contains("write(1, \"total 14 counter 6\\n\", 19)"), "{}", s.stderr);
}

/// `catch syscall write`: a stop at the call's entry (`orig_rax` names it) and at its return
/// (RAX has the result), then on to the end.
fn catch_syscall_stops_at_entry_and_return() {
    let s = debug(
        &target(Form::Static),
        &["catch syscall write", "continue", "p $orig_rax", "continue", "p $rax", "continue"],
        None,
    );
    let g = &s.gdb;
    assert!(g.contains("Catchpoint 1 (call to syscall write)"), "{g}");
    assert!(g.contains("$1 = 1\n"), "orig_rax at the entry is write's number:\n{g}");
    assert!(g.contains("Catchpoint 1 (returned from syscall write)"), "{g}");
    assert!(g.contains("$2 = 19\n"), "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "total 14 counter 6\n");
}

/// Every thread stops at gdb's breakpoints, not only the first: each of 100 threads made one
/// after another reaches `body`, and after `delete` the program runs to its end.
fn other_threads_stop_at_breakpoints() {
    let prog = guest_with_flags("thread_create", Form::Dynamic, "debug", &["-O0", "-g"]);
    let s = debug(
        &prog,
        &["break body", "continue", "print (long) arg", "continue", "print (long) arg", "delete", "continue"],
        None,
    );
    let g = &s.gdb;
    assert!(g.contains("hit Breakpoint 1, body (arg=0x0)"), "{g}");
    assert!(g.contains("$1 = 0\n") && g.contains("$2 = 1\n"), "the first two threads, in order:\n{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "created and joined 100 threads, sum 4950\n", "{}", s.stderr);
}

/// All-stop with one gdb thread per guest thread: a worker stops at a breakpoint while the
/// main thread waits in `pthread_join` and the other worker runs or waits; `info threads`
/// lists all three, `thread apply all bt` unwinds each (the waiting main thread through
/// libc into `main`), `next` with the scheduler locked steps the stopped worker alone, and
/// the other worker then stops at the same breakpoint.
fn threads_stop_together() {
    let prog = guest_with_flags("gdb_threads", Form::Dynamic, "debug", &["-O0", "-g"]);
    let s = debug(
        &prog,
        &[
            "break work",
            "continue",
            "info threads",
            "thread apply all bt",
            "print id",
            "set scheduler-locking step",
            "next",
            "print v",
            "continue",
            "print id",
            "delete",
            "continue",
        ],
        None,
    );
    let g = &s.gdb;
    let hits: Vec<&str> = g.lines().filter(|l| l.contains("hit Breakpoint 1, work (id=")).collect();
    assert_eq!(hits.len(), 2, "each worker stops once:\n{g}");
    let ids: Vec<bool> = ["work (id=1)", "work (id=2)"].iter().map(|w| hits.iter().any(|h| h.contains(w))).collect();
    assert_eq!(ids, [true, true], "both workers:\n{g}");
    // gdb lists three threads: the stopped one marked current.
    let listed = g
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c == '*' || c.is_ascii_digit()) && l.contains("Thread "))
        .count();
    assert_eq!(listed, 3, "three threads in info threads:\n{g}");
    assert!(g.contains(" in main (argc="), "the main thread unwinds to main:\n{g}");
    assert!(g.matches(" in worker (").count() >= 1 || g.matches("worker (arg=").count() >= 1, "a worker frame:\n{g}");
    assert!(g.contains("$2 = 10\n") || g.contains("$2 = 20\n"), "next steps the stopped worker to v:\n{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "work 1 work 2 total 30\n", "{}", s.stderr);
}

/// The values gdb printed (its `$N = …` lines), in order.
fn printed(gdb: &str) -> Vec<&str> {
    gdb.lines().filter(|l| l.starts_with('$')).collect()
}

/// Records the debug target on this thread's engine; returns the program and the trace.
fn recorded(form: Form) -> (std::path::PathBuf, std::path::PathBuf) {
    recorded_guest("gdb_target", form)
}

/// Guest `name` built for debugging, and a trace of its run.
fn recorded_guest(name: &str, form: Form) -> (std::path::PathBuf, std::path::PathBuf) {
    if backend() == Backend::Kvm {
        require_kvm();
    }
    let prog = guest_with_flags(name, form, "debug", &["-O0", "-g"]);
    let dir = tempdir("gdb-rec");
    let trace = dir.join("t.trace");
    let rec = trapbox(
        &[std::ffi::OsStr::new("record"), "-o".as_ref(), trace.as_os_str(), "--".as_ref(), prog.as_os_str()],
        b"",
        &dir,
    );
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    (prog, trace)
}

/// reverse-continue on a replay goes back to the previous breakpoint hit, with the memory
/// of then (the global counter), and to the start, where forward execution takes up again.
fn reverse_continue_rewinds_memory_and_registers() {
    reverse_continue_in(Form::Static)
}

/// The same on a dynamic PIE: gdb's own breakpoint in the dynamic linker (its shared-library
/// events) is passed going back too, a step back over it costing the steps since the last
/// events only.
fn reverse_continue_through_the_dynamic_linker() {
    reverse_continue_in(Form::Dynamic)
}

fn reverse_continue_in(form: Form) {
    let (prog, trace) = recorded(form);
    // `print (int)counter` at the start: gone back to before the dynamic linker ran, gdb (13)
    // shows a dynamic program's variables without their debug types, though it did at the
    // same point on the way forward (its symbol state after the libraries it knew went).
    let s = replayed(
        &prog,
        &trace,
        &[
            "break square",
            "continue",
            "continue",
            "continue",
            "print x",
            "print counter",
            "reverse-continue",
            "print x",
            "print counter",
            "reverse-continue",
            "print x",
            "reverse-continue",
            "print (int)counter",
            "continue",
            "print x",
            "delete",
            "continue",
        ],
    );
    let g = &s.gdb;
    let values = printed(g);
    assert_eq!(
        values,
        ["$1 = 3", "$2 = 6", "$3 = 2", "$4 = 3", "$5 = 1", "$6 = 0", "$7 = 1"],
        "x and counter going back, then forward again:\n{g}"
    );
    assert!(g.contains("No more reverse-execution history."), "the start is reported:\n{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "total 14 counter 6\n");
}

/// reverse-stepi after steps and after a continue (one instruction before a breakpoint),
/// reverse-next and reverse-finish, with a local's value as it was.
fn reverse_stepping() {
    let (prog, trace) = recorded(Form::Static);
    let s = replayed(
        &prog,
        &trace,
        &[
            "break square",
            "continue",
            "set $at_break = $pc",
            "stepi",
            "stepi",
            "reverse-stepi",
            "reverse-stepi",
            "p $pc == $at_break",
            "reverse-stepi",
            "p $pc < $at_break",
            "stepi",
            "p $pc == $at_break",
            "next",
            "print y",
            "reverse-next",
            "print y",
            "reverse-finish",
            "kill",
        ],
    );
    let g = &s.gdb;
    let values = printed(g);
    assert_eq!(values, ["$1 = 1", "$2 = 1", "$3 = 1", "$4 = 1", "$5 = 0"], "{g}");
    assert!(g.contains(" in main () at ") || g.contains("main ()"), "reverse-finish returns to main:\n{g}");
}

/// reverse-stepi from a function's entry a continue reached (its second arrival): the call
/// that led there, in the caller, with the stack as it was before the call — found by
/// breakpoints on the call and the entry, not by counting steps — and forward again.
fn reverse_stepi_off_a_function_entry() {
    let (prog, trace) = recorded(Form::Static);
    let s = replayed(
        &prog,
        &trace,
        &[
            "break *square",
            "continue",
            "continue",
            "set $entry = $pc",
            "set $sp_in = $sp",
            "delete",
            "reverse-stepi",
            "x/i $pc",
            "set $call = $pc",
            "set $rdi_at = $rdi",
            "set $flags_at = $eflags",
            "p $sp == $sp_in + 8",
            "p i",
            "p counter",
            "stepi",
            "p $pc == $entry",
            "p $sp == $sp_in",
            "reverse-stepi",
            "reverse-stepi",
            "p $pc < $call",
            "stepi",
            "p $pc == $call",
            "p i",
            "p $rdi == $rdi_at && $eflags == $flags_at && $sp == $sp_in + 8",
            "continue",
        ],
    );
    let g = &s.gdb;
    let values = printed(g);
    assert_eq!(
        values,
        ["$1 = 1", "$2 = 2", "$3 = 3", "$4 = 1", "$5 = 1", "$6 = 1", "$7 = 1", "$8 = 2", "$9 = 1"],
        "{g}"
    );
    let call = g.lines().find(|l| l.starts_with("=> ")).unwrap_or_default();
    assert!(call.contains("call") && call.contains("<square>"), "at the call of square: {call}\n{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "total 14 counter 6\n");
    // The first arrival: the stack slot the call writes holds, before it, what was there
    // before (not the return address the call put there). (What: memory below the stack
    // pointer, which the program does not own; the engine's own entry may leave scratch there,
    // as a signal frame would, so it differs with how the position was reached.)
    let s = replayed(
        &prog,
        &trace,
        &[
            "break *square",
            "continue",
            "delete",
            "reverse-stepi",
            "set $call = $pc",
            "p *(long *)($sp - 8) != (long)$pc + 5",
            "reverse-stepi",
            "stepi",
            "p $pc == $call",
            "kill",
        ],
    );
    let g = &s.gdb;
    let values = printed(g);
    assert_eq!(values, ["$1 = 1", "$2 = 1"], "{g}");
}

/// A replay run again from its start (gdb going back, the trace read once for every run
/// after the first) maps a file the program mapped shared as the recording found it, not as
/// the run before left it: the counter the program adds 1 to reads 1 in every run.
fn going_back_finds_shared_files_as_recorded() {
    if backend() == Backend::Kvm {
        require_kvm();
    }
    let prog = guest_with_flags("gdb_shared_file", Form::Static, "debug", &["-O0", "-g"]);
    let dir = tempdir("gdb-shared");
    let trace = dir.join("t.trace");
    let file = dir.join("counter");
    let args = [
        std::ffi::OsStr::new("record"),
        "-o".as_ref(),
        trace.as_os_str(),
        "--".as_ref(),
        prog.as_os_str(),
        file.as_os_str(),
    ];
    let rec = trapbox(&args, b"", &dir);
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert_eq!(rec.stdout_str(), "value 1\n");
    let commands = [
        "break 23",
        "continue",
        "print *counter",
        "reverse-continue",
        "continue",
        "print *counter",
        "reverse-continue",
        "continue",
        "print *counter",
        "delete",
        "continue",
    ];
    let s = replayed(&prog, &trace, &commands);
    let g = &s.gdb;
    let values = printed(g);
    assert_eq!(values, ["$1 = 1", "$2 = 1", "$3 = 1"], "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "value 1\n");
}

/// A write watchpoint, answered by stepping and comparing: each write to a global the
/// program makes (old and new value, the line after the write), and a buffer the kernel
/// fills (a read from a pipe: the stop right after the call, with its result); on a live run
/// and on a replay alike.
fn watchpoints_stop_at_writes() {
    let (prog, trace) = recorded_guest("gdb_pipe", Form::Static);
    let commands = [
        "break main",
        "continue",
        "watch counter",
        "continue",
        "continue",
        "continue",
        "print counter",
        "delete",
        "watch buf",
        "continue",
        "print $rax",
        "print buf",
        "delete",
        "continue",
    ];
    let live = ["run", "--gdb", "127.0.0.1:0", "--"].map(std::ffi::OsString::from);
    let replay = ["replay", "--gdb", "127.0.0.1:0"].map(std::ffi::OsString::from);
    for (tool, last) in [(&live[..], &prog), (&replay[..], &trace)] {
        let s = debug_with(tool, &prog, Some(last), &commands, None);
        let g = &s.gdb;
        for (old, new) in [(0, 1), (1, 3), (3, 6)] {
            assert!(g.contains(&format!("Old value = {old}\nNew value = {new}\n")), "{g}");
        }
        assert!(g.contains("$1 = 6\n"), "{g}");
        assert!(g.contains("$2 = 4\n"), "read's result at the stop:\n{g}");
        assert!(g.contains("$3 = \"wxyz\\000\\000\\000\"\n") && g.contains(" in read ()"), "{g}");
        assert!(g.contains("exited normally]"), "{g}");
        assert_eq!(s.stdout, "wxyz 6\n");
    }
}

/// reverse-continue to a write watchpoint on a replay: back over each write the program made,
/// every stop at the writing instruction with the value as it was before it, then the start
/// of the replay, and forward again to the first write; a buffer the kernel filled goes back
/// to before the call that filled it.
fn reverse_continue_to_watchpoints() {
    let (prog, trace) = recorded_guest("gdb_pipe", Form::Static);
    let commands = [
        "break 17",
        "continue",
        "watch buf",
        "reverse-continue",
        "print buf",
        "delete",
        "watch counter",
        "reverse-continue",
        "print counter",
        "reverse-continue",
        "print counter",
        "reverse-continue",
        "print counter",
        "reverse-continue",
        "continue",
        "print counter",
        // A step back from a stop a watchpoint made: before the write, and forward over it.
        "reverse-stepi",
        "print counter",
        "stepi",
        "print counter",
        "delete",
        "continue",
    ];
    let s = replayed(&prog, &trace, &commands);
    let g = &s.gdb;
    let zeros = "\"\\000\\000\\000\\000\\000\\000\\000\"";
    assert!(g.contains(&format!("Old value = \"wxyz\\000\\000\\000\"\nNew value = {zeros}\n")), "{g}");
    assert!(g.contains(" in read ()") && g.contains(&format!("$1 = {zeros}\n")), "{g}");
    for (old, new) in [(6, 3), (3, 1), (1, 0)] {
        assert!(g.contains(&format!("Old value = {old}\nNew value = {new}\n")), "{g}");
    }
    let values = printed(g).get(1..).unwrap_or_default().to_vec();
    assert_eq!(values, ["$2 = 3", "$3 = 1", "$4 = 0", "$5 = 1", "$6 = 0", "$7 = 1"], "{g}");
    assert!(g.contains("No more reverse-execution history."), "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "wxyz 6\n");
}

/// reverse-continue with a watchpoint and a breakpoint over a run with calls between the
/// writes (found without single steps from the start: the calls bound the stretch stepped):
/// a write comes after the arrival at the function that makes it, between the same two
/// calls, and that arrival after the write before; each stop shows the memory of then.
fn reverse_continue_to_a_watchpoint_between_calls() {
    let (prog, trace) = recorded_guest("gdb_watch_calls", Form::Static);
    let commands = [
        "break 26",
        "continue",
        "watch value",
        "break mark",
        "reverse-continue",
        "print value",
        "reverse-continue",
        "print value",
        "print i",
        "reverse-continue",
        "print value",
        "delete",
        "watch slot",
        "continue",
        "reverse-continue",
        "print slot",
        "delete",
        "continue",
    ];
    let s = replayed(&prog, &trace, &commands);
    let g = &s.gdb;
    assert!(g.contains("Old value = 20\nNew value = 15\n"), "{g}");
    assert!(g.contains("Breakpoint 3, mark (i=20)"), "the arrival at mark before the write:\n{g}");
    assert!(g.contains("Old value = 15\nNew value = 10\n"), "{g}");
    // Forward to the kernel's write into `slot`, and back before it.
    let zeros = "\"\\000\\000\\000\"";
    assert!(g.contains(&format!("Old value = {zeros}\nNew value = \"abc\"\n")), "{g}");
    assert!(g.contains(&format!("Old value = \"abc\"\nNew value = {zeros}\n")) && g.contains(" in read ()"), "{g}");
    assert_eq!(printed(g), ["$1 = 15", "$2 = 15", "$3 = 20", "$4 = 10", "$5 = \"\\000\\000\\000\""], "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "20 abc\n");
}

/// A reverse-continue to a watchpoint that passes a library load on the way: gdb stops at
/// the dynamic linker's event of it and goes on back by itself, without setting its
/// watchpoint again; the watchpoint still finds the write before the load.
fn reverse_continue_to_a_watchpoint_across_a_library_load() {
    let (prog, trace) = recorded_guest("gdb_dlopen_watch", Form::Dynamic);
    let commands = ["break 11", "continue", "watch value", "reverse-continue", "print value", "delete", "continue"];
    let s = replayed(&prog, &trace, &commands);
    let g = &s.gdb;
    assert!(g.contains("Old value = 7\nNew value = 0\n"), "{g}");
    assert_eq!(printed(g), ["$1 = 0"], "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "7 loaded\n");
}

/// `monitor when` names the replay's event, `monitor checkpoint` keeps the position and
/// `monitor restart N` takes the next continue back to it, memory as it was; a live run has
/// no checkpoints, and says so.
fn monitor_when_checkpoint_restart() {
    let (prog, trace) = recorded_guest("gdb_pipe", Form::Static);
    let commands = [
        "break 14",
        "continue",
        "continue",
        "print counter",
        "monitor when",
        "monitor checkpoint",
        "continue",
        "print counter",
        "monitor restart 1",
        "continue",
        "print counter",
        "monitor when",
        "monitor restart 7",
        "delete",
        "continue",
    ];
    let replay = ["replay", "--gdb", "127.0.0.1:0"].map(std::ffi::OsString::from);
    let s = debug_with(&replay, &prog, Some(&trace), &commands, None);
    let g = &s.gdb;
    let values = printed(g);
    assert_eq!(values, ["$1 = 1", "$2 = 3", "$3 = 1"], "{g}");
    let events: Vec<&str> = g.lines().filter_map(|l| l.strip_prefix("Current event: ")).collect();
    assert_eq!(events.len(), 2, "{g}");
    let event = events[0].split(' ').next().unwrap();
    assert_eq!(events[1].split(' ').next(), Some(event), "back at the checkpoint's event:\n{g}");
    assert!(g.contains(&format!("Checkpoint 1 at event {event}\n")), "{g}");
    assert!(g.contains("no checkpoint 7 (1 taken)"), "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    let live = ["run", "--gdb", "127.0.0.1:0", "--"].map(std::ffi::OsString::from);
    let s = debug_with(&live, &prog, Some(&prog), &["monitor checkpoint", "continue"], None);
    assert!(s.gdb.contains("checkpoints need a replay"), "{}", s.gdb);
}

/// A fork under gdb: gdb follows the parent (its breakpoint hit once, the parent's) and says
/// so; the child runs on without the debugger and ends normally.
fn a_forked_child_runs_without_the_debugger() {
    let prog = guest_with_flags("gdb_fork", Form::Static, "debug", &["-O0", "-g"]);
    let s = debug(&prog, &["break work", "continue", "print x", "continue"], None);
    let g = &s.gdb;
    assert!(g.contains("Breakpoint 1, work (x=3)"), "the parent's call:\n{g}");
    assert!(!g.contains("x=2"), "{g}");
    assert!(g.contains("exited normally]"), "{g}");
    assert_eq!(s.stdout, "child 4\nparent 6\n");
    assert!(s.stderr.contains("gdb follows the parent; the forked child"), "{}", s.stderr);
}

each_backend!(
    reverse_continue_through_the_dynamic_linker,
    a_forked_child_runs_without_the_debugger,
    monitor_when_checkpoint_restart,
    reverse_continue_to_watchpoints,
    reverse_continue_to_a_watchpoint_between_calls,
    reverse_continue_to_a_watchpoint_across_a_library_load,
    watchpoints_stop_at_writes,
    reverse_continue_rewinds_memory_and_registers,
    reverse_stepping,
    reverse_stepi_off_a_function_entry,
    going_back_finds_shared_files_as_recorded,
    other_threads_stop_at_breakpoints,
    threads_stop_together,
    a_threaded_replay_stops_together,
    watchpoints_see_every_thread,
    detach_with_a_watchpoint_lets_every_thread_run_on,
    catch_syscall_stops_at_entry_and_return,
    a_replay_under_gdb,
    a_trace_stop_is_a_gdb_stop,
    stepi_over_a_syscall,
    breakpoints_step_and_exit,
    shared_libraries_and_a_breakpoint_in_libc,
    stepi_and_registers,
    faults_are_signal_stops_and_continue_passes_them,
    ctrl_c_interrupts_a_spinning_guest,
    ctrl_c_stops_every_spinning_thread,
);

each_form!(breakpoint_print_backtrace_finish_next);
