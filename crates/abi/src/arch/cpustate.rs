//! A guest thread's CPU state as both engines save and load it, in the x86 structures
//! `kvm-bindings` defines (KVM's ioctls take them; the in-process engine keeps the same).

use kvm_bindings::{kvm_regs, kvm_sregs, kvm_xsave};

/// A guest thread's CPU state, to start another CPU (a thread, a forked child) from it, on
/// either engine.
pub struct CpuState {
    /// Segment and control registers: where the vCPU stands (a forked child resumes in the
    /// same ring-0 stub as its parent on hardware KVM). None: a fresh vCPU's, at CPL3.
    pub sregs: Option<kvm_sregs>,
    /// General registers, RIP and RFLAGS.
    pub regs: kvm_regs,
    /// FS base (TLS).
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// x87/SSE/AVX state.
    pub xsave: kvm_xsave,
}
