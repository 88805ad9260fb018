//! The library API: custom handlers see decoded traps and compose with Passthrough.

mod common;

use std::sync::Mutex;

use common::{guest, Form};
use trapbox::{Action, Deny, Guest, Kicker, Observe, Outcome, Passthrough, Sandbox, Trap, TrapHandler};

/// One sandbox at a time per test process: the kick signal and host-signal state are global.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn observe_counts_syscalls_by_name() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_kvm();
    let exe = guest("getppid_loop", Form::Static);
    let mut getppid = 0;
    let mut exit_group = 0;
    let handler = Observe::new(Passthrough, |_: &dyn Guest, t: &Trap, _: &Action| {
        if let Trap::Syscall(c) = t {
            match c.name().as_ref() {
                "getppid" => getppid += 1,
                "exit_group" => exit_group += 1,
                _ => {}
            }
        }
    });
    let report = Sandbox::builder(&exe).args([exe.to_str().unwrap(), "123"]).build().unwrap().run(handler).unwrap();
    assert_eq!(report.outcome, Outcome::Exited(0));
    assert_eq!((getppid, exit_group), (123, 1));
    assert!(report.exits >= 124, "{} exits", report.exits);
}

#[test]
fn deny_policy_refuses_before_the_host_sees_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_kvm();
    let exe = guest("exitcode", Form::Static);
    // Refusing write makes the guest's stderr message vanish; exit still works.
    let handler = Deny::new(Passthrough, |c: &trapbox::Syscall| (c.name() == "write").then_some(libc::EPERM));
    let report = Sandbox::builder(&exe).args([exe.to_str().unwrap(), "9"]).build().unwrap().run(handler).unwrap();
    assert_eq!(report.outcome, Outcome::Exited(9));
}

/// Records faults, then lets Passthrough decide.
struct FaultLog(Vec<trapbox::Fault>);

impl TrapHandler for FaultLog {
    fn on_trap(&mut self, g: &mut dyn Guest, t: &Trap) -> Action {
        if let Trap::Fault(f) = t {
            self.0.push(f.clone());
        }
        Passthrough.on_trap(g, t)
    }
}

#[test]
fn write_to_read_only_page_is_a_page_fault_trap() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_kvm();
    let exe = guest("mprotect", Form::Static);
    let mut log = FaultLog(Vec::new());
    let report = Sandbox::builder(&exe).build().unwrap().run(&mut log).unwrap();
    assert!(matches!(report.outcome, Outcome::Killed { signal: libc::SIGSEGV, .. }), "{:?}", report.outcome);
    assert_eq!(log.0.len(), 1);
    let f = &log.0[0];
    assert_eq!(f.vector, 14);
    assert_eq!(f.error_code & 0b111, 0b111, "present, write, user");
    assert!(f.addr.is_some_and(|a| a > 0x1000));
}

/// Resumes after breakpoints: the guest continues past its int3.
struct ResumeBreakpoints(u32);

impl TrapHandler for ResumeBreakpoints {
    fn on_trap(&mut self, g: &mut dyn Guest, t: &Trap) -> Action {
        match t {
            Trap::Breakpoint { .. } => {
                self.0 += 1;
                Action::Resume
            }
            _ => Passthrough.on_trap(g, t),
        }
    }
}

#[test]
fn registers_survive_a_breakpoint_trap() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_kvm();
    for form in [Form::Static, Form::Dynamic] {
        let exe = guest("regs", form);
        let mut h = ResumeBreakpoints(0);
        let report = Sandbox::builder(&exe).args([exe.to_str().unwrap(), "int3"]).build().unwrap().run(&mut h).unwrap();
        // Exit code 0 means every register matched after the resumed int3.
        assert_eq!(report.outcome, Outcome::Exited(0));
        assert_eq!(h.0, 1);
    }
}

/// Changes the result of getppid and checks the guest saw it through its exit code.
struct FakeResult;

impl TrapHandler for FakeResult {
    fn on_trap(&mut self, g: &mut dyn Guest, t: &Trap) -> Action {
        match t {
            Trap::Syscall(c) if c.name() == "exit_group" => {
                // The guest exits with its argument: make it the number of the syscall plus
                // its first argument as decoded, proving the registers were read right.
                Action::Exit(c.args[0] as i32 + 100)
            }
            _ => Passthrough.on_trap(g, t),
        }
    }
}

#[test]
fn handler_sees_decoded_arguments_and_decides_the_end() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_kvm();
    let exe = guest("exitcode", Form::Dynamic);
    let report = Sandbox::builder(&exe).args([exe.to_str().unwrap(), "5"]).build().unwrap().run(FakeResult).unwrap();
    assert_eq!(report.outcome, Outcome::Exited(105));
}

/// A handler preempts the guest with a [`Kicker`] from another host thread: each kick is a
/// `Trap::Preempt` in the guest's user code (its start-up code for a kick that comes early,
/// then main's loop), invisible to the guest, and a kick after the run reaches nothing. The
/// guest loops far longer than the test: the handler ends it once three preemptions landed
/// in main, so how fast kicks land on a loaded machine changes only how long it takes.
#[test]
fn a_kicker_preempts_the_guest_in_user_code() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Kicked {
        rips: Vec<String>,
        kicker: Option<std::thread::JoinHandle<u32>>,
        stop: Arc<AtomicBool>,
    }
    impl TrapHandler for Kicked {
        fn on_start(&mut self, g: &mut dyn Guest, _: &trapbox::trap::Start) {
            let k: Kicker = g.process().expect("the engine runs a process model").kicker();
            let stop = self.stop.clone();
            // Kicks until the thread is gone (the run ended), then says how many landed.
            self.kicker = Some(std::thread::spawn(move || {
                let mut n = 0;
                while k.kick() {
                    n += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                assert!(stop.load(Ordering::SeqCst), "a kick failed while the guest thread ran");
                n
            }));
        }
        fn on_trap(&mut self, g: &mut dyn Guest, t: &Trap) -> Action {
            if let Trap::Preempt = t {
                self.rips.push(g.symbolize(g.regs().rip).unwrap_or_else(|| format!("{:#x}", g.regs().rip)));
                if self.rips.iter().filter(|s| s.starts_with("main+")).count() == 3 {
                    self.stop.store(true, Ordering::SeqCst);
                    return Action::Exit(0);
                }
                return Action::Resume;
            }
            Passthrough.on_trap(g, t)
        }
    }

    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::require_kvm();
    let exe = guest("cpuloop", Form::Static);
    let mut h = Kicked { rips: Vec::new(), kicker: None, stop: Arc::new(AtomicBool::new(false)) };
    let report = Sandbox::builder(&exe)
        .args([exe.to_str().unwrap(), "100000000000000"])
        .timeout(Some(std::time::Duration::from_secs(60)))
        .build()
        .unwrap()
        .run(&mut h)
        .unwrap();
    assert_eq!(report.outcome, Outcome::Exited(0), "preempted at {:?}", h.rips);
    let kicks = h.kicker.take().expect("started").join().expect("the kicking thread ended");
    assert!(h.rips.len() as u32 <= kicks, "{} preemptions of {kicks} kicks", h.rips.len());
    assert!(h.rips.iter().all(|s| !s.starts_with("0x")), "{:?}", h.rips);
    assert_eq!(h.rips.iter().filter(|s| s.starts_with("main+")).count(), 3, "{:?}", h.rips);
}
