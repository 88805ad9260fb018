//! A replay stopped at an event resumes from exactly there (the way a debugger will attach to
//! a replay). In a test binary of its own: recording and replaying in one process need the
//! same free address space both times, which parallel tests would disturb.

mod common;

use std::io::BufReader;

use common::{guest, tempdir, Form};
use trapbox::tools::record::{Recorder, ReplayStop, Replayer, TraceReader};
use trapbox::{Outcome, Passthrough, Sandbox, SandboxError};

/// Points fd 1 at /dev/null while alive, so the guest's output does not clutter the test's.
struct Quiet(i32);

impl Quiet {
    fn new() -> Quiet {
        // SAFETY: dup/open/dup2 only manipulate descriptors of this test process.
        unsafe {
            let saved = libc::dup(1);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            libc::dup2(null, 1);
            libc::close(null);
            Quiet(saved)
        }
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        // SAFETY: restores the descriptor saved in new().
        unsafe {
            libc::dup2(self.0, 1);
            libc::close(self.0);
        }
    }
}

#[test]
fn replay_pauses_at_an_event_and_resumes_from_it() {
    common::require_kvm();
    trapbox::process::host::keep_allocations_off_mmap();
    let d = tempdir("resume");
    let input = d.join("in.txt");
    std::fs::write(&input, "resume me\n").unwrap();
    let exe = guest("nondet", Form::Static);
    let trace = d.join("r.trace");
    let quiet = Quiet::new();
    {
        let mut rec = Recorder::new(Passthrough, std::fs::File::create(&trace).unwrap()).unwrap();
        let mut sb = Sandbox::builder(&exe).args([exe.as_os_str(), input.as_os_str()]).vdso(false).build().unwrap();
        assert_eq!(sb.run(&mut rec).unwrap().outcome, Outcome::Exited(0));
    }
    let mut events = 0u64;
    let mut r = TraceReader::new(BufReader::new(std::fs::File::open(&trace).unwrap())).unwrap();
    while r.next_event().unwrap().is_some() {
        events += 1;
    }
    assert!(events > 12, "{events} events");

    let (start, replayer) = Replayer::open(BufReader::new(std::fs::File::open(&trace).unwrap())).unwrap();
    let mut replayer = replayer.stop_at(9);
    let mut sb = trapbox::Sandbox::replaying(start.image()).build().unwrap();
    let first = sb.run(&mut replayer).unwrap();
    assert_eq!(first.outcome, Outcome::Stopped);
    assert!(matches!(replayer.stopped(), Some(ReplayStop::StoppedAt(9))), "{:?}", replayer.stopped());
    assert_eq!(replayer.position(), 9);

    replayer.resume(None);
    let rest = sb.run(&mut replayer).unwrap();
    drop(quiet);
    assert_eq!(rest.outcome, Outcome::Exited(0), "{:?}", replayer.stopped());
    assert!(replayer.stopped().is_none(), "{:?}", replayer.stopped());
    assert_eq!(replayer.position(), events, "every event was replayed");
    assert!(matches!(sb.run(&mut replayer), Err(SandboxError::Ended)));
}
