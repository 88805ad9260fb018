//! The escape suite: tests/guests/esc_*.c (tests/guests/ESCAPES.md says what each tries), one
//! program per class of attack on the box. Each runs from the main thread, from a second
//! thread, and from a forked child, and prints one line per attack. Natively nothing of
//! trapbox exists, so every line reads the same natively and in a sound box: the test compares
//! the two runs line by line, and a line starting `ESCAPED` (a way out) fails it whatever the
//! native run said. Where the box does not yet behave as natively (none of it a way out), the
//! differing lines are named below with the reason.

mod common;

use common::{boxed, guest, native, tempdir, trapbox, Form};
use std::time::{Duration, Instant};

/// Where each program's attacks run.
const PLACES: [&str; 3] = ["main", "thread", "fork"];

/// Runs `name` in `place` natively and boxed, and checks the boxed run: no escape, the end
/// reached (`survived`, status 0), and every line as natively but those starting with one of
/// `differs` (which must then differ, so that the list cannot outlive the gap it names).
fn check(name: &str, form: Form, place: &str, differs: &[&str]) {
    common::require_kvm();
    let exe = guest(name, form);
    let argv = [exe.to_string_lossy().into_owned(), place.to_string()];
    let d = tempdir(name);
    let n = native(&argv, b"", &d);
    let b = boxed(&argv, b"", &d);
    let (nout, bout) = (n.stdout_str(), b.stdout_str());
    let shown = format!("{name} {place} ({form:?})");
    assert_eq!(n.status, 0, "{shown}: the native run failed:\n{nout}");
    let escapes: Vec<&str> = bout.lines().filter(|l| l.starts_with("ESCAPED")).collect();
    assert!(escapes.is_empty(), "{shown}: the guest got out of the box:\n{}", escapes.join("\n"));
    assert_eq!(b.status, 0, "{shown}: status {}\n{bout}\ntrapbox stderr:\n{}", b.status, b.stderr_str());
    assert!(bout.ends_with("survived\n"), "{shown}: the attacks did not all run:\n{bout}\n{}", b.stderr_str());
    let (nl, bl): (Vec<&str>, Vec<&str>) = (nout.lines().collect(), bout.lines().collect());
    assert_eq!(nl.len(), bl.len(), "{shown}: native and boxed runs printed different lines:\n{nout}\n---\n{bout}");
    for (a, b) in nl.iter().zip(&bl) {
        match differs.iter().find(|p| a.starts_with(*p)) {
            Some(p) => assert_ne!(a, b, "{shown}: `{p}` is listed as differing but is now as natively: drop it"),
            None => assert_eq!(a, b, "{shown}: differs from the native run"),
        }
    }
}

/// Each place with the dynamic build, the static-pie build in a second thread and the static
/// one in a forked child.
fn check_all(name: &str, differs: &[&str]) {
    for place in PLACES {
        check(name, Form::Dynamic, place, differs);
    }
    check(name, Form::StaticPie, "thread", differs);
    check(name, Form::Static, "fork", differs);
}

#[test]
fn memory_files_of_any_process_lead_nowhere() {
    check_all("esc_proc_mem", &[]);
}

#[test]
fn trapbox_descriptors_and_the_kvm_device_cannot_be_had() {
    check_all("esc_fd_smuggle", &[]);
}

#[test]
fn system_v_segments_attach_only_in_guest_memory() {
    check_all("esc_sysv_shm", &[]);
}

#[test]
fn a_racing_thread_cannot_change_what_the_kernel_reads() {
    check_all("esc_double_fetch", &[]);
}

#[test]
fn pointers_inside_structs_are_checked_and_copied() {
    check_all("esc_struct_ptrs", &[]);
}

#[test]
fn signals_reach_only_the_guest() {
    check_all("esc_signals", &[]);
}

#[test]
fn resource_limits_bind_the_guest_not_trapbox() {
    check_all("esc_limits", &[]);
}

#[test]
fn process_state_changes_stay_in_the_guest() {
    check_all("esc_proc_state", &[]);
}

#[test]
fn the_guest_sees_itself_not_trapbox() {
    check_all("esc_self_view", &[]);
}

/// With RLIMIT_SIGPENDING at 0 the guest cannot stop `--timeout` from ending a spin that
/// makes no syscall: the watchdog's signal is trapbox's own.
#[test]
fn a_guest_cannot_outlast_its_time_limit() {
    common::require_kvm();
    let exe = guest("esc_limits", Form::Dynamic);
    let d = tempdir("esc_limits_timeout");
    let start = Instant::now();
    let exe = exe.to_string_lossy().into_owned();
    let r = trapbox(&["run", "--timeout", "1", "--", exe.as_str(), "main", "8"], b"", &d);
    let took = start.elapsed();
    assert_eq!(r.status, 124, "{}\n{}", r.stdout_str(), r.stderr_str());
    assert!(took < Duration::from_secs(6), "the 8-second spin was not cut at 1 s ({took:?})");
    assert!(!r.stdout_str().contains("ESCAPED"), "{}", r.stdout_str());
}

/// Random syscalls with hostile arguments (trapbox's addresses, descriptors at the limit,
/// non-canonical pointers): the guest keeps running, trapbox too, and no KVM descriptor or
/// change to trapbox's memory shows up.
#[test]
fn fuzzed_syscalls_get_nowhere() {
    common::require_kvm();
    for form in [Form::Dynamic, Form::Static] {
        let exe = guest("esc_fuzz", form).to_string_lossy().into_owned();
        for seed in ["1", "2", "3"] {
            let d = tempdir("esc_fuzz");
            let r = boxed(&[exe.as_str(), seed, "5000"], b"", &d);
            let out = r.stdout_str();
            assert!(!out.contains("ESCAPED"), "seed {seed} ({form:?}):\n{out}");
            assert_eq!(r.status, 0, "seed {seed} ({form:?}): {out}\n{}", r.stderr_str());
            assert!(out.ends_with("fuzzed 5000 calls\n"), "seed {seed} ({form:?}):\n{out}");
        }
    }
}
