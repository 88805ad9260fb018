//! `trapbox boot` with the tiny kernel image trapbox builds itself (crates/boot/src/testimage.rs):
//! load → run → serial → exit on this machine's KVM (PVM included: the image runs a few hundred
//! ring-0 instructions), and one test per diagnostic with a misbehaving or corrupted image.
//! The real kernel is booted in the hardware-KVM tier (tests/hw_kvm_tier.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trapbox::boot::testimage::{self, Corruption, Variant};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trapbox-boot-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p
}

/// Runs `trapbox boot ARGS` with no stdin.
fn boot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trapbox"))
        .arg("boot")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run trapbox")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn image(dir: &Path, v: Variant) -> String {
    write(dir, &format!("{v:?}.img"), &testimage::build(v)).display().to_string()
}

#[test]
fn test_image_boots_prints_cmdline_and_initrd_and_resets() {
    let d = tmpdir("ok");
    let k = image(&d, Variant::Ok);
    let initrd = write(&d, "initrd", b"first line of the initrd\nsecond line\n").display().to_string();
    let o = boot(&["--kernel", &k, "--initrd", &initrd, "--cmdline", "hello=world", "--allow-slow", "--time"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], testimage::BANNER, "{out}");
    // The command line reached the guest through the zero page: the defaults, then ours.
    assert!(lines[1].starts_with("cmdline: console=ttyS0 reboot=k"), "{out}");
    assert!(lines[1].ends_with(" hello=world"), "{out}");
    assert_eq!(lines[2], "initrd: first line of the initrd", "{out}");
    assert_eq!(lines[4], testimage::INIT_LINE, "{out}");
    assert!(err.contains("trapbox: boot: guest rebooted (i8042 reset)"), "{err}");
    // --time found the first byte and init's first output, and counted the exits (one per
    // character written to the UART at least).
    let time = err.lines().find(|l| l.contains("time from VM creation")).expect("--time line");
    assert!(time.contains("first console byte ") && !time.contains("init's first output not seen"), "{err}");
    let exits = err.lines().find(|l| l.contains("VM exits:")).expect("exit line");
    let n: u64 =
        exits.split("VM exits: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).unwrap();
    assert!(n as usize >= out.len(), "{exits} for {} bytes of output", out.len());
}

#[test]
fn test_image_without_initrd_or_defaults_sees_exactly_our_cmdline() {
    let d = tmpdir("nodef");
    let k = image(&d, Variant::Ok);
    let o = boot(&["--kernel", &k, "--no-default-cmdline", "--cmdline", "only this", "--allow-slow", "--cpus", "2"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.lines().any(|l| l == "cmdline: only this"), "{out}");
    assert!(!out.contains("initrd:"), "{out}");
}

#[test]
fn panic_line_is_reported_with_status_4() {
    let d = tmpdir("panic");
    let o = boot(&["--kernel", &image(&d, Variant::Panic), "--allow-slow"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}\n{err}");
    assert!(err.contains(&format!("trapbox: boot: kernel panicked: {}", testimage::PANIC_LINE)), "{err}");
}

#[test]
fn triple_fault_is_reported_with_registers_and_status_5() {
    let d = tmpdir("triple");
    let o = boot(&["--kernel", &image(&d, Variant::TripleFault), "--allow-slow"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out}\n{err}");
    assert!(out.contains("about to triple fault"), "{out}");
    let line = err.lines().find(|l| l.starts_with("trapbox: boot: triple fault: vCPU 0")).expect("triple fault line");
    // Either the registers at the fault (Intel, PVM) or the honest note that KVM reset them
    // (AMD); the RIP of the last exit before the fault is always there.
    assert!(line.contains("RIP=0x10") || line.contains("not available"), "{line}");
    assert!(line.contains("RIP at the last exit before it: 0x10"), "{line}");
}

#[test]
fn silence_is_reported_with_a_console_hint_and_status_6() {
    let d = tmpdir("silent");
    let o = boot(&["--kernel", &image(&d, Variant::Silent), "--allow-slow", "--silence-timeout", "1"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no console output within 1 s") && err.contains("console=ttyS0"), "{err}");
}

#[test]
fn timeout_ends_a_silent_guest_with_124() {
    let d = tmpdir("timeout");
    let o =
        boot(&["--kernel", &image(&d, Variant::Silent), "--allow-slow", "--silence-timeout", "0", "--timeout", "1"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(124), "{out}\n{err}");
    assert!(err.contains("timed out after 1 s"), "{err}");
}

/// Each header corruption is refused before a VM exists, in one line, with status 3.
#[test]
fn corrupted_images_are_refused_with_the_reason() {
    let d = tmpdir("corrupt");
    let initrd = write(&d, "initrd", &[0u8; 8192]).display().to_string();
    let cases: &[(Corruption, bool, &str)] = &[
        (Corruption::NoBootSector, false, "no boot sector signature 0xAA55 at offset 0x1fe"),
        (Corruption::NoHeaderMagic, false, "no \"HdrS\" setup header magic at offset 0x202"),
        (Corruption::OldProtocol, false, "boot protocol 2.10 is too old: the 64-bit entry needs 2.12 or newer"),
        (Corruption::NotLoadedHigh, false, "not a bzImage: loadflags bit 0 (LOADED_HIGH) is clear"),
        (Corruption::No64BitEntry, false, "no 64-bit entry point (xloadflags bit 0, XLF_KERNEL_64, is clear)"),
        (Corruption::Truncated, false, "image truncated: the header declares"),
        (Corruption::LowInitrdAddrMax, true, "above this kernel's initrd_addr_max 0xffffff"),
        (Corruption::ShortCmdlineSize, false, "this kernel accepts at most 16"),
    ];
    for (c, with_initrd, want) in cases {
        let k = write(&d, &format!("{c:?}.img"), &testimage::corrupt(testimage::build(Variant::Ok), *c));
        let k = k.display().to_string();
        let mut args = vec!["--kernel", k.as_str(), "--allow-slow"];
        if *with_initrd {
            args.extend(["--initrd", initrd.as_str()]);
        }
        let o = boot(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(3), "{c:?}: {out}\n{err}");
        assert!(out.is_empty(), "{c:?} ran: {out}");
        assert_eq!(err.lines().count(), 1, "{c:?}: one line: {err}");
        assert!(err.starts_with("trapbox: boot: ") && err.contains(want), "{c:?}: want {want:?} in {err}");
    }
}

#[test]
fn limits_are_refused_with_the_reason() {
    let d = tmpdir("limits");
    let k = image(&d, Variant::Ok);
    let big = write(&d, "big-initrd", &vec![0u8; 48 << 20]).display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--initrd", &big, "--memory", "64M"], "initrd of 50331648 bytes is too large"),
        (vec!["--memory", "16M"], "guest memory of 16 MiB is too small"),
        (vec!["--cmdline", "x".repeat(3000).leak()], "kernel command line is 3"),
        (vec!["--cmdline", "caf\u{e9}"], "printable ASCII only"),
        (vec!["--cpus", "0"], "between 1 and 32 vCPUs"),
        (vec!["--cpus", "33"], "between 1 and 32 vCPUs"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["--kernel", k.as_str(), "--allow-slow"];
        args.extend(extra.iter().copied());
        let o = boot(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(3), "{extra:?}: {out}\n{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{extra:?}: want {want:?} in {err}");
    }
}

#[test]
fn missing_kernel_and_non_kernels_get_one_line() {
    let d = tmpdir("bad");
    let o = boot(&["--kernel", "/nonexistent/bzImage"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(127));
    assert!(err.starts_with("trapbox: boot: /nonexistent/bzImage: No such file"), "{err}");
    let elf = boot(&["--kernel", env!("CARGO_BIN_EXE_trapbox")]);
    let (_, err) = text(&elf);
    assert_eq!(elf.status.code(), Some(3), "{err}");
    assert!(err.contains("not a Linux kernel image"), "{err}");
    let empty = write(&d, "empty", b"").display().to_string();
    let o = boot(&["--kernel", &empty]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).1.contains("no boot sector signature"));
}

/// On PVM a kernel is refused up front, in one line, unless --allow-slow; on hardware KVM
/// the same image boots. Which one applies is decided from the machine, as trapbox does.
#[test]
fn pvm_refuses_kernels_without_allow_slow() {
    let d = tmpdir("pvm");
    let k = image(&d, Variant::Ok);
    let o = boot(&["--kernel", &k]);
    let (out, err) = text(&o);
    if Path::new("/sys/module/kvm_pvm").exists() {
        assert_eq!(o.status.code(), Some(3), "{out}\n{err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("this KVM is PVM") && err.contains("--allow-slow"), "{err}");
    } else {
        assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
        assert!(out.starts_with(testimage::BANNER), "{out}");
    }
}

#[test]
fn inspect_still_explains_the_test_image() {
    let d = tmpdir("inspect");
    let k = image(&d, Variant::Ok);
    let o = Command::new(env!("CARGO_BIN_EXE_trapbox")).args(["inspect", &k]).output().expect("run trapbox");
    let (out, _) = text(&o);
    assert!(out.contains("boot protocol: 2.15") && out.contains("XLF_KERNEL_64"), "{out}");
    assert!(out.contains("bootable: yes"), "{out}");
}
