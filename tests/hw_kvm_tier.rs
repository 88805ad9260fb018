//! The hardware-KVM tier: trapbox's engine tests run inside a QEMU TCG guest (`-cpu max`,
//! AMD SVM with nested paging) on Debian's kvm_amd, so the hardware trap path (syscall →
//! CPL0 stub → `out` → `sysretq`) is exercised on every test run, not only on users' machines.
//! See tier/hw-kvm/run.sh; it needs qemu-system-x86, busybox-static, cpio (.ci/run installs
//! them) and fetches Debian's kernel and gdb-minimal packages at test time. Inside the guest the
//! tier also boots that kernel with `trapbox boot` (1 and 2 vCPUs, and a panic without initrd),
//! and debugs with gdb through `trapbox run --gdb` and `trapbox replay --gdb`.

use std::process::Command;

#[test]
fn engine_tests_pass_on_hardware_kvm() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/tier/hw-kvm/run.sh"))
        .arg(env!("CARGO_BIN_EXE_trapbox"))
        .output()
        .expect("bash runs tier/hw-kvm/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "hardware-KVM tier failed (exit {:?}):\n{stdout}\n{stderr}", out.status.code());
    assert!(stdout.contains("trap path: hardware KVM"), "the tier did not take the hardware trap path:\n{stdout}");
    assert!(stdout.lines().any(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
}

/// `trapbox boot` with Debian's real kernel on this machine's own KVM. On PVM (the development
/// and CI machines) it must be refused at once, in one line saying why, instead of appearing to
/// hang in the kernel's emulated ring 0; on hardware KVM it boots until the kernel panics for
/// want of a root file system (no initrd given), and that panic is the diagnosis. The kernel
/// comes from tier/hw-kvm/kernel.sh, like the tier's; without it the test fails saying how to
/// get it. (The full boot with an initramfs runs inside the tier, on kvm_amd.)
#[test]
fn real_kernel_is_refused_on_pvm_and_diagnosed_on_hardware() {
    let root = env!("CARGO_MANIFEST_DIR");
    let k = Command::new("bash")
        .arg(format!("{root}/tier/hw-kvm/kernel.sh"))
        .arg(format!("{root}/target/hw-kvm-cache"))
        .output()
        .expect("bash runs tier/hw-kvm/kernel.sh");
    assert!(
        k.status.success(),
        "Debian's kernel is needed (tier/hw-kvm/kernel.sh fetches linux-image-amd64 with apt-get download; run apt-get update first): {}",
        String::from_utf8_lossy(&k.stderr)
    );
    let kdir = String::from_utf8_lossy(&k.stdout).trim().to_string();
    let vmlinuz = std::fs::read_dir(format!("{kdir}/boot"))
        .expect("kernel package unpacked")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .expect("the kernel package holds boot/vmlinuz-*");
    let start = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_trapbox"))
        .args(["boot", "--kernel"])
        .arg(&vmlinuz)
        .args(["--timeout", "120"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run trapbox boot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("this KVM is PVM") && stderr.contains("hours"), "{stderr}");
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the refusal must come at once");
    } else {
        assert_eq!(out.status.code(), Some(4), "{stderr}");
        assert!(
            stderr.contains("kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs"),
            "{stderr}"
        );
    }
}
