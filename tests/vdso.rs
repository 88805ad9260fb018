//! The guest gets the host's vDSO: time calls run in the guest without a syscall, and read
//! the host's clock correctly (on hardware KVM that needs the guest TSC offset at zero).

mod common;

use common::{guest, tempdir, trapbox, Form};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// Checks clock_now's output: its realtime and time() seconds lie in `[before, after]` (give
/// or take a second) and its 1000 monotonic reads took at most a second.
fn assert_host_time(stdout: &str, before: i64, after: i64) {
    let v: Vec<i64> = stdout.split_whitespace().map(|x| x.parse().expect("numbers")).collect();
    assert_eq!(v.len(), 3, "{stdout}");
    for t in &v[..2] {
        assert!((before - 1..=after + 1).contains(t), "guest clock {t} vs host {before}..{after}");
    }
    assert!(v[2] <= 1, "1000 monotonic reads took {} s", v[2]);
}

#[test]
fn vdso_time_matches_the_host_and_needs_no_syscall() {
    common::require_kvm();
    let d = tempdir("vdso");
    for form in [Form::Static, Form::Dynamic] {
        let exe = guest("clock_now", form);
        let before = now();
        let r = trapbox(
            &[
                "trace".as_ref(),
                "-e".as_ref(),
                "clock_gettime,time,gettimeofday".as_ref(),
                "--".as_ref(),
                exe.as_os_str(),
            ],
            b"",
            &d,
        );
        let after = now();
        assert_eq!(r.status, 0, "{}", r.stderr_str());
        assert_host_time(&r.stdout_str(), before, after);
        let err = r.stderr_str();
        let calls: Vec<&str> = err.lines().filter(|l| !l.starts_with("+++") && !l.starts_with("trapbox")).collect();
        assert!(calls.is_empty(), "time calls left the guest: {calls:?}");
    }
}

#[test]
fn record_and_replay_answer_time_calls_in_trapboxs_vdso() {
    // Recording gives the guest trapbox's own vDSO: its time calls read the host's clock (the
    // values agree with the host's) without leaving the guest, and the trace holds them.
    common::require_kvm();
    let d = tempdir("vdso-rr");
    let trace = d.join("t.trace");
    for form in [Form::Static, Form::Dynamic] {
        let exe = guest("clock_now", form);
        let before = now();
        let r =
            trapbox(&["record".as_ref(), "-o".as_ref(), trace.as_os_str(), "--".as_ref(), exe.as_os_str()], b"", &d);
        let after = now();
        assert_eq!(r.status, 0, "{}", r.stderr_str());
        assert_host_time(&r.stdout_str(), before, after);
        let i = trapbox(&["inspect".as_ref(), trace.as_os_str()], b"", &d);
        let out = i.stdout_str();
        let count = |name: &str| -> u64 {
            let line = out.lines().find(|l| l.trim_end().ends_with(name));
            line.and_then(|l| l.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0)
        };
        assert!(count(" clock_gettime (in the vDSO)") >= 1000, "{out}");
        assert_eq!(count(" clock_gettime"), 0, "clock_gettime left the guest:\n{out}");
        let rep = trapbox(&["replay".as_ref(), trace.as_os_str()], b"", &d);
        assert_eq!(rep.stdout, r.stdout, "{}", rep.stderr_str());
    }
}
