//! Which engine runs a guest: plain data every layer can name (a trace stores it, a handler
//! asks for it). Choosing and building one is the `vm` crate's business.

use std::path::Path;

/// Which engine runs guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A KVM virtual machine (the sandbox), with the trap path of the host's KVM.
    Kvm(TrapPath),
    /// trapbox's own process, Syscall User Dispatch catching the syscalls (not a sandbox).
    InProcess,
}

impl Engine {
    /// The name `--backend` and traces use.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Kvm(_) => "kvm",
            Engine::InProcess => "inproc",
        }
    }
}

/// Which trap path the vCPU uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapPath {
    /// `syscall` switches to CPL0 (VMX/SVM KVM).
    Hardware,
    /// `syscall` does not change privilege (PVM's software hypervisor).
    Pvm,
    /// No VM: the in-process engine's Syscall User Dispatch (the vm crate's `inproc`).
    InProcess,
}

impl TrapPath {
    /// Detects the kind of KVM: PVM announces itself as the `kvm_pvm` module. An explicit
    /// `TRAPBOX_TRAP_PATH=hw|pvm` wins (for tests of the detection's consumers).
    pub fn detect() -> TrapPath {
        match std::env::var("TRAPBOX_TRAP_PATH").as_deref() {
            Ok("hw") => return TrapPath::Hardware,
            Ok("pvm") => return TrapPath::Pvm,
            _ => {}
        }
        if Path::new("/sys/module/kvm_pvm").exists() {
            TrapPath::Pvm
        } else {
            TrapPath::Hardware
        }
    }

    /// Name for logs and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            TrapPath::Hardware => "hardware KVM (syscall → CPL0 stub → out)",
            TrapPath::Pvm => "PVM (syscall → CPL3 trampoline → MMIO doorbell)",
            TrapPath::InProcess => {
                "in-process, no VM (syscall → Syscall User Dispatch → SIGSYS; hot sites rewritten to jump to trapbox)"
            }
        }
    }
}
