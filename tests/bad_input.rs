//! Bad input: one line on stderr saying what and why, a non-zero exit, no panic.

mod common;

use common::{guest, tempdir, trapbox, Form};
use std::path::Path;

fn run_file(path: &Path) -> common::Run {
    common::require_kvm();
    trapbox(&["run".as_ref(), "--".as_ref(), path.as_os_str()], b"", path.parent().unwrap())
}

fn assert_one_line_error(r: &common::Run, needle: &str) {
    let err = r.stderr_str();
    assert_ne!(r.status, 0, "must fail");
    assert_eq!(err.lines().count(), 1, "want exactly one line, got {err:?}");
    assert!(err.starts_with("trapbox: ") && err.contains(needle), "want {needle:?} in {err:?}");
    assert_eq!(err.matches(needle).count(), 1, "the reason once: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

fn elf_with_machine(m: u16) -> Vec<u8> {
    let mut f = std::fs::read("/bin/true").unwrap();
    f[18..20].copy_from_slice(&m.to_le_bytes());
    f
}

#[test]
fn text_file_is_not_elf() {
    let d = tempdir("text");
    let p = d.join("notes.txt");
    std::fs::write(&p, "just some text\n").unwrap();
    assert_one_line_error(&run_file(&p), "not an ELF executable (a text file)");
}

#[test]
fn arm64_elf_is_refused() {
    let d = tempdir("arm");
    let p = d.join("arm64");
    std::fs::write(&p, elf_with_machine(183)).unwrap();
    assert_one_line_error(&run_file(&p), "ELF for ARM64 (aarch64)");
}

#[test]
fn truncated_elf_is_refused() {
    let d = tempdir("trunc");
    let p = d.join("truncated");
    let f = std::fs::read("/bin/true").unwrap();
    for n in [3, 40, 100, 1000, f.len() / 2] {
        std::fs::write(&p, &f[..n]).unwrap();
        let r = run_file(&p);
        assert_ne!(r.status, 0);
        assert_eq!(r.stderr_str().lines().count(), 1, "{n} bytes: {:?}", r.stderr_str());
    }
    std::fs::write(&p, &f[..f.len() / 2]).unwrap();
    assert_one_line_error(&run_file(&p), "corrupt ELF");
}

#[test]
fn macho_is_refused() {
    let d = tempdir("macho");
    let p = d.join("a.out");
    let mut f = vec![0xcf, 0xfa, 0xed, 0xfe, 0x07, 0, 0, 0x01];
    f.resize(4096, 0);
    std::fs::write(&p, f).unwrap();
    assert_one_line_error(&run_file(&p), "Mach-O executable");
}

#[test]
fn directory_is_refused() {
    let d = tempdir("dir");
    assert_one_line_error(&run_file(&d), "is a directory");
}

#[test]
fn missing_file_is_refused() {
    let d = tempdir("missing");
    assert_one_line_error(&run_file(&d.join("nope")), "No such file or directory");
    let r = trapbox(&["run", "--", "no-such-command-anywhere"], b"", &d);
    assert_one_line_error(&r, "command not found");
}

#[test]
fn script_with_missing_interpreter_is_refused() {
    let d = tempdir("script");
    let p = d.join("s.sh");
    std::fs::write(&p, "#!/nonexistent/interp -x\necho hi\n").unwrap();
    assert_one_line_error(&run_file(&p), "bad interpreter /nonexistent/interp");
}

#[test]
fn script_with_interpreter_runs() {
    let d = tempdir("script-ok");
    let p = d.join("s.sh");
    std::fs::write(&p, "#!/bin/sh\necho from a script \"$0\" \"$1\"\n").unwrap();
    let r = trapbox(&["run".as_ref(), "--".as_ref(), p.as_os_str(), "arg".as_ref()], b"", &d);
    assert_eq!(r.stdout_str(), format!("from a script {} arg\n", p.display()), "{}", r.stderr_str());
    assert_eq!(r.status, 0);
}

#[test]
fn inspect_describes_each_kind() {
    let d = tempdir("inspect");
    for (form, linkage) in [(Form::Static, "static"), (Form::StaticPie, "static-pie"), (Form::Dynamic, "dynamic")] {
        let r = trapbox(&["inspect".as_ref(), guest("hello", form).as_os_str()], b"", &d);
        let out = r.stdout_str();
        assert!(out.contains(&format!("linkage: {linkage}\n")), "{out}");
        assert!(out.contains("runnable: yes"), "{out}");
        assert_eq!(r.status, 0);
    }
    let r = trapbox(&["inspect", "/bin/ls"], b"", &d);
    assert!(r.stdout_str().contains("interpreter: /lib64/ld-linux-x86-64.so.2"), "{}", r.stdout_str());
    let p = d.join("arm64");
    std::fs::write(&p, elf_with_machine(183)).unwrap();
    let r = trapbox(&["inspect".as_ref(), p.as_os_str()], b"", &d);
    assert!(r.stdout_str().contains("runnable: no: ELF for ARM64"), "{}", r.stdout_str());
    assert_eq!(r.status, 1);
    let k = d.join("bzImage");
    let bz = trapbox::boot::bzimage::synthetic(0x020f, 1 | 2, 8192);
    std::fs::write(&k, &bz).unwrap();
    let r = trapbox(&["inspect".as_ref(), k.as_os_str()], b"", &d);
    let out = r.stdout_str();
    for want in [
        "kind: Linux kernel image (bzImage)",
        "boot protocol: 2.15",
        "kernel version: 6.1.0-trapbox-test (synthetic)",
        "XLF_KERNEL_64 (64-bit entry)",
        "relocatable: yes (alignment 0x200000)",
        "preferred load address: 0x1000000",
        "cmdline_size: 2048",
        "initrd_addr_max: 0x7fffffff",
        "bootable: yes, through the 64-bit entry",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // A kernel without a 64-bit entry is explained, not just refused.
    std::fs::write(&k, trapbox::boot::bzimage::synthetic(0x020f, 0, 8192)).unwrap();
    let r = trapbox(&["inspect".as_ref(), k.as_os_str()], b"", &d);
    assert!(
        r.stdout_str().contains("bootable: no: the kernel has no 64-bit entry point (xloadflags bit 0"),
        "{}",
        r.stdout_str()
    );
    // `run` on a kernel says to use boot.
    let r = trapbox(&["run".as_ref(), "--".as_ref(), k.as_os_str()], b"", &d);
    assert!(r.stderr_str().contains("Linux kernel image (bzImage)"), "{}", r.stderr_str());
    let r = trapbox(&["inspect", "/nonexistent"], b"", &d);
    assert_one_line_error(&r, "No such file");
}

/// Issue 19: `inspect --cpu` shows the guest's CPU view beside the host's, and both views are
/// consistent.
#[test]
fn inspect_cpu_shows_both_views() {
    common::require_kvm();
    let d = tempdir("inspect-cpu");
    let r = trapbox(&["inspect", "--cpu"], b"", &d);
    let out = r.stdout_str();
    assert_eq!(r.status, 0, "{out}{}", r.stderr_str());
    assert!(out.contains("host view: consistent\n") && out.contains("guest view: consistent\n"), "{out}");
    let xcr0 = out.lines().find(|l| l.starts_with("XCR0")).expect("an XCR0 row");
    let v: Vec<u64> =
        xcr0.split_whitespace().skip(1).map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap()).collect();
    assert_eq!(v.len(), 2, "{xcr0}");
    // The guest saves no state the host does not; on PVM (guest code runs with the host's
    // XCR0) exactly the host's.
    assert_eq!(v[1] & !v[0], 0, "{xcr0}");
    if out.contains("kind of KVM: PVM") {
        assert_eq!(v[1], v[0], "{xcr0}");
    }
    let r = trapbox(&["inspect", "--cpu", "/bin/ls"], b"", &d);
    assert_ne!(r.status, 0);
}
