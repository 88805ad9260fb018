//! The hardware-KVM tier: trapbox's engine tests run inside a QEMU TCG guest (`-cpu max`,
//! AMD SVM with nested paging) on Debian's kvm_amd, so the hardware trap path (syscall →
//! CPL0 stub → `out` → `sysretq`) is exercised on every test run, not only on users' machines.
//! See tier/hw-kvm/run.sh; it needs qemu-system-x86, busybox-static, cpio (.ci/run installs
//! them) and fetches Debian's kernel package at test time.

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
