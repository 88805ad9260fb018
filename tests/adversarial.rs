//! Adversarial guests: each must leave trapbox intact and get the error a kernel would give
//! for the guest's view of the machine.

mod common;

use common::{assert_same_as_native, boxed, guest, native, tempdir, trapbox, Form};
use std::time::{Duration, Instant};

fn run_guest(name: &str, args: &[&str]) -> common::Run {
    let exe = guest(name, Form::Dynamic);
    let mut argv = vec![exe.to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|s| s.to_string()));
    boxed(&argv, b"", &tempdir(name))
}

/// Where trapbox's own image is when it runs without address randomization (a PIE at the
/// kernel's ELF_ET_DYN_BASE).
const TRAPBOX_NO_ASLR: &str = "0x555555554000";

/// Runs guest `name` in a trapbox started without address randomization, telling the guest
/// where trapbox's image is: the box shows the guest only its own mappings, so an attack needs
/// the address from outside.
fn attack_trapbox_image(name: &str) -> common::Run {
    common::require_kvm();
    let exe = guest(name, Form::Dynamic);
    let out = common::output(
        std::process::Command::new("setarch")
            .args(["x86_64", "-R", env!("CARGO_BIN_EXE_trapbox"), "run", "--"])
            .arg(&exe)
            .env("ADV_TRAPBOX_AT", TRAPBOX_NO_ASLR)
            .current_dir(tempdir(name))
            .stdin(std::process::Stdio::null()),
    );
    let status = out.status.code().unwrap_or(-1);
    common::Run { stdout: out.stdout, stderr: out.stderr, status }
}

#[test]
fn the_guest_sees_no_trapbox_mapping() {
    // Natively there is none; in the box /proc/self/maps is the guest's own.
    let r = run_guest("adv_trapbox_mem", &[]);
    assert_eq!(r.stdout_str(), "no trapbox mapping\n", "{}", r.stderr_str());
}

#[test]
fn syscalls_into_trapbox_memory_get_efault() {
    let r = attack_trapbox_image("adv_trapbox_mem");
    let out = r.stdout_str();
    assert!(out.contains("found trapbox mapping"), "the guest did not find trapbox's mapping:\n{out}");
    assert!(out.contains("read into trapbox memory: EFAULT"), "{out}");
    assert!(out.contains("write from trapbox memory: EFAULT"), "{out}");
    assert!(out.contains("readv into trapbox memory: EFAULT"), "{out}");
    assert!(out.ends_with("still alive\n"), "{out}");
    assert_eq!(r.status, 0, "{}", r.stderr_str());
}

#[test]
fn map_fixed_over_trapbox_fails_and_trapbox_survives() {
    let r = attack_trapbox_image("adv_map_fixed");
    let out = r.stdout_str();
    assert!(out.contains("found trapbox mapping"), "{out}");
    assert!(out.contains("mmap fixed over trapbox: ENOMEM"), "{out}");
    // trapbox's memory looks unmapped to the guest: munmap of it is a no-op, mprotect and
    // madvise fail as on unmapped memory.
    assert!(out.contains("munmap trapbox: ok"), "{out}");
    assert!(out.contains("mprotect trapbox: ENOMEM"), "{out}");
    assert!(out.contains("madvise trapbox: ENOMEM"), "{out}");
    assert!(out.ends_with("still alive\n"), "{out}");
    assert_eq!(r.status, 0, "{}", r.stderr_str());
}

#[test]
fn proc_self_mem_cannot_be_opened() {
    let r = run_guest("adv_proc_mem", &[]);
    let out = r.stdout_str();
    for line in [
        "open /proc/self/mem: EACCES",
        "open /proc/<pid>/mem: EACCES",
        "open /proc/thread-self/mem: EACCES",
        "open mem via openat(/proc/self): EACCES",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("pwrite own variable"), "{out}");
    assert_eq!(r.status, 0);
}

#[test]
fn trapbox_fds_are_invisible_and_survive_close_and_dup2() {
    let d = tempdir("fds");
    let exe = guest("adv_fds", Form::Dynamic);
    // The guest sees exactly what it would natively: no extra open descriptors, and closing
    // everything (trapbox's KVM fds included, if it could name them) changes nothing for trapbox.
    assert_same_as_native(&[exe], b"", &d);
}

#[test]
fn non_canonical_accesses_are_sigsegv_like_natively() {
    // PVM's emulator turns an AVX access to a non-canonical address into #UD; trapbox must
    // still deliver the #GP's SIGSEGV (SI_KERNEL), as the CPU does natively.
    let d = tempdir("noncanonical");
    for form in [Form::Static, Form::Dynamic] {
        assert_same_as_native(&[guest("adv_noncanonical", form)], b"", &d);
    }
}

#[test]
fn bad_pointers_get_efault_like_natively() {
    let d = tempdir("badptr");
    for form in [Form::Static, Form::Dynamic] {
        assert_same_as_native(&[guest("adv_badptr", form)], b"", &d);
    }
}

#[test]
fn privileged_instructions_fault_like_natively() {
    let d = tempdir("priv");
    let exe = guest("adv_priv", Form::Static);
    for insn in [
        "hlt", "cli", "sti", "wrmsr", "rdmsr", "out", "in", "lgdt", "lidt", "invlpg", "movcr3", "ud2", "int3",
        "sysenter",
    ] {
        let r = assert_same_as_native(&[exe.to_string_lossy().as_ref(), insn], b"", &d);
        assert!(r.status > 128, "{insn} did not kill the guest");
        assert!(
            r.stderr_str().contains("trapbox: guest killed by SIG"),
            "{insn}: no crash report in {:?}",
            r.stderr_str()
        );
    }
}

#[test]
fn int80_is_refused_clearly() {
    let r = run_guest("adv_priv", &["int80"]);
    assert!(r.status > 128, "int 0x80 must not succeed in the box");
    assert!(
        r.stderr_str().contains("int 0x80") && r.stderr_str().contains("32-bit syscall ABI is not supported"),
        "{}",
        r.stderr_str()
    );
    assert!(!r.stdout_str().contains("survived"));
}

#[test]
fn infinite_loop_ends_at_timeout() {
    let exe = guest("adv_loop", Form::Static);
    let t = Instant::now();
    let r = trapbox(
        &["run".as_ref(), "--timeout".as_ref(), "1".as_ref(), "--".as_ref(), exe.as_os_str()],
        b"",
        &tempdir("loop"),
    );
    let took = t.elapsed();
    assert_eq!(r.status, 124, "{}", r.stderr_str());
    assert_eq!(r.stdout_str(), "looping\n");
    assert!(r.stderr_str().contains("timed out after 1 s"), "{}", r.stderr_str());
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn sigterm_and_sigint_end_the_guest_cleanly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let exe = guest("adv_loop", Form::Static);
    for (sig, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut child = common::spawn_grouped(
            Command::new(env!("CARGO_BIN_EXE_trapbox"))
                .args(["run", "--"])
                .arg(&exe)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut buf = [0u8; 8];
        child.stdout.as_mut().unwrap().read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"looping\n");
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = common::wait_within(child, "trapbox run adv_loop");
        assert_eq!(out.status.code(), Some(status), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn repeated_forks_are_boxed_and_reaped() {
    // Each child is a boxed copy of the guest (tests/processes.rs runs the adversarial suite
    // inside such children); here: five forks in a row, each waited for, leave nothing behind.
    let r = run_guest("adv_fork", &[]);
    assert_eq!(r.stdout_str(), "forked 5\n");
    assert_eq!(r.status, 0, "{}", r.stderr_str());
}

#[test]
fn stack_overflow_reports_crash_with_symbol() {
    let r = run_guest("adv_stack", &[]);
    assert_eq!(r.status, 139);
    let err = r.stderr_str();
    assert!(err.contains("guest killed by SIGSEGV: page fault") && err.contains("<recurse"), "{err}");
}

#[test]
fn memory_limit_makes_allocations_fail_with_enomem() {
    let exe = guest("memhog", Form::Static);
    let d = tempdir("memhog");
    let free = native(&[exe.to_string_lossy().as_ref(), "64"], b"", &d);
    assert_eq!(free.stdout_str(), "mmap: 64 MiB ok\nsbrk: 64 MiB ok\n");
    let r = trapbox(&["run", "--memory-limit", "48M", "--", exe.to_string_lossy().as_ref(), "64"], b"", &d);
    let out = r.stdout_str();
    // The stack and the image count too, so the limit bites somewhat before 48 MiB of mmap.
    let mib: u64 = out
        .strip_prefix("mmap: failed at ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no mmap failure in {out:?}"));
    assert!((30..48).contains(&mib), "{out}");
    assert!(out.contains("MiB: ENOMEM\nsbrk: failed at 0 MiB: ENOMEM\n"), "{out}");
    assert_eq!(r.status, 0);
}

#[test]
fn descriptors_listed_in_proc_self_fd_cannot_be_used() {
    let d = tempdir("procfd");
    // trapbox's descriptors show up in the listing, but every use of them fails with EBADF,
    // so the counts equal the native ones.
    let r = assert_same_as_native(&[guest("adv_procfd", Form::Dynamic)], b"", &d);
    assert!(r.stdout_str().contains("errors other than EBADF 0"), "{}", r.stdout_str());
}
