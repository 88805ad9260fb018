//! The library API: custom handlers see decoded traps and compose with Passthrough.

mod common;

use std::sync::Mutex;

use common::{guest, Form};
use trapbox::{Action, Deny, Guest, Observe, Outcome, Passthrough, Sandbox, Trap, TrapHandler};

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
