//! The engine a guest runs on, chosen once at start-up: [`Machine`], [`Vcpu`] and [`Runner`]
//! are plain enums over the KVM engine (`trapbox-kvm`: a VM, the sandbox) and the in-process
//! engine (`trapbox-inproc`: trapbox's own process, not a sandbox). Both give the run loop the
//! same exits, registers and state; what only one of them has is said where it is asked for.
//! Above this crate nothing names either engine's own types.

mod machine;

pub use machine::{auto_engine, Machine, Runner, Vcpu};
pub use trapbox_inproc as inproc;
pub use trapbox_kvm::{
    arch, entry, exit, memory, paging, regs, vcpu, ExceptionFrame, GuestMemory, KvmError, KvmMachine, KvmRunner,
    MemoryError, MemoryMirror, NoMirror, PteFlags, ResumeFrom,
};
pub use trapbox_trap::{Engine, Exit, RawExit, TrapPath};

/// Errors of the engine layer: the chosen engine's own.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The KVM engine's.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The in-process engine's.
    #[error(transparent)]
    InProc(#[from] trapbox_inproc::InProcError),
}
