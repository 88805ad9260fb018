//! The neutral register set ([`Regs`]) and the x86 structure the engines keep registers in
//! (`kvm_regs`: KVM's ioctls and sync regs take it, the in-process engine keeps the same),
//! converted in one place.

use crate::Regs;

/// The neutral registers of KVM's register set.
pub fn user_regs(k: &kvm_bindings::kvm_regs) -> Regs {
    Regs {
        rax: k.rax,
        rbx: k.rbx,
        rcx: k.rcx,
        rdx: k.rdx,
        rsi: k.rsi,
        rdi: k.rdi,
        rbp: k.rbp,
        rsp: k.rsp,
        r8: k.r8,
        r9: k.r9,
        r10: k.r10,
        r11: k.r11,
        r12: k.r12,
        r13: k.r13,
        r14: k.r14,
        r15: k.r15,
        rip: k.rip,
        rflags: k.rflags,
    }
}

/// KVM's register set holding `r`.
pub fn kvm_regs_of(r: &Regs) -> kvm_bindings::kvm_regs {
    let mut k = kvm_bindings::kvm_regs { rsp: r.rsp, rip: r.rip, rflags: r.rflags, ..Default::default() };
    store_gprs(&mut k, r);
    k
}

/// Stores `r`'s general registers (not RSP, RIP, RFLAGS) into `k`.
pub fn store_gprs(k: &mut kvm_bindings::kvm_regs, r: &Regs) {
    k.rax = r.rax;
    k.rbx = r.rbx;
    k.rcx = r.rcx;
    k.rdx = r.rdx;
    k.rsi = r.rsi;
    k.rdi = r.rdi;
    k.rbp = r.rbp;
    k.r8 = r.r8;
    k.r9 = r.r9;
    k.r10 = r.r10;
    k.r11 = r.r11;
    k.r12 = r.r12;
    k.r13 = r.r13;
    k.r14 = r.r14;
    k.r15 = r.r15;
}
