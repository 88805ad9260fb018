//! The vCPU: long-mode set-up, `KVM_RUN`, and register access through `kvm_run` sync regs.
//!
//! General registers travel in `kvm_run` on every exit (KVM_SYNC_X86_REGS), so the syscall
//! fast path needs no GET/SET_REGS ioctl. Segment and control registers are read and written
//! with ioctls only when needed (FS base, CR2 of a page fault, the CR3 toggle that flushes the
//! guest TLB).

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_segment, kvm_xcrs, Msrs};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};

use super::arch::{self, msr};
use super::exit::RawExit;
use super::KvmError;

/// Static description of the ring-0 environment the vCPU starts with.
#[derive(Clone, Copy, Debug)]
pub struct CpuSetup {
    /// GDT guest-virtual address and limit.
    pub gdt: (u64, u16),
    /// IDT guest-virtual address and limit.
    pub idt: (u64, u16),
    /// TSS guest-virtual address (the vCPU's own).
    pub tss: u64,
    /// The vCPU's own ring-0 stack: lowest and one past the highest address.
    pub ring0_stack: (u64, u64),
    /// Page-table root (guest-physical).
    pub cr3: u64,
    /// LSTAR: where `syscall` goes.
    pub lstar: u64,
    /// XCR0 the guest runs with (CR4.OSXSAVE set), or None where the host has no XSAVE.
    pub xcr0: Option<u64>,
    /// CR4.UMIP: sgdt, sidt, sldt, smsw and str fault at CPL3 (emulated as Linux does), so
    /// the guest never reads where trapbox's GDT and IDT are.
    pub umip: bool,
}

/// A vCPU in 64-bit mode with the guest at CPL3.
pub struct KvmVcpu {
    fd: VcpuFd,
    osxsave: bool,
    /// This vCPU's task register (its own TSS): kept across a restored state.
    tr: kvm_segment,
    ring0_stack: (u64, u64),
    /// The general registers were changed since the last exit (KVM loads them at entry).
    regs_dirty: bool,
}

/// A flat 4 GiB code or data segment (`long`: a 64-bit code segment) at privilege `dpl`.
pub fn segment(selector: u16, type_: u8, dpl: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn null_segment() -> kvm_segment {
    kvm_segment { unusable: 1, ..Default::default() }
}

impl KvmVcpu {
    /// Configures `fd`: CPUID, long mode at CPL3, XCR0, syscall MSRs, sync regs.
    pub fn new(fd: VcpuFd, cpuid: &kvm_bindings::CpuId, setup: &CpuSetup) -> Result<KvmVcpu, KvmError> {
        fd.set_cpuid2(cpuid).map_err(|e| KvmError::Ioctl("KVM_SET_CPUID2", e))?;
        let mut s = fd.get_sregs().map_err(|e| KvmError::Ioctl("KVM_GET_SREGS", e))?;
        s.cr0 = arch::CR0;
        s.cr3 = setup.cr3;
        s.cr4 = arch::CR4_BASE | arch::CR4_OSXSAVE | if setup.umip { arch::CR4_UMIP } else { 0 };
        s.efer = arch::EFER;
        s.gdt.base = setup.gdt.0;
        s.gdt.limit = setup.gdt.1;
        s.idt.base = setup.idt.0;
        s.idt.limit = setup.idt.1;
        s.tr = kvm_segment {
            base: setup.tss,
            limit: 103,
            selector: arch::TSS_SEL,
            type_: 11, // busy 64-bit TSS
            present: 1,
            s: 0,
            ..Default::default()
        };
        s.ldt = kvm_segment { type_: 2, present: 1, unusable: 1, ..Default::default() };
        s.cs = segment(arch::USER_CS, 11, 3, true);
        s.ss = segment(arch::USER_DS, 3, 3, false);
        s.ds = null_segment();
        s.es = null_segment();
        s.fs = null_segment();
        s.gs = null_segment();
        if setup.xcr0.is_none() {
            s.cr4 &= !arch::CR4_OSXSAVE;
        }
        if fd.set_sregs(&s).is_err() && s.cr4 & arch::CR4_UMIP != 0 {
            // A KVM that does not offer UMIP to guests refuses the bit: the guest runs
            // without it (its sgdt then reads trapbox's GDT address, as on a CPU without UMIP).
            s.cr4 &= !arch::CR4_UMIP;
        }
        fd.set_sregs(&s).map_err(|e| KvmError::Ioctl("KVM_SET_SREGS", e))?;
        if let Some(xcr0) = setup.xcr0 {
            let mut x = kvm_xcrs { nr_xcrs: 1, ..Default::default() };
            x.xcrs[0].xcr = 0;
            x.xcrs[0].value = xcr0;
            // KVM refuses an XCR0 its CPUID table does not list: the table and this value
            // come from the same choice (Machine::new), so a refusal is a trapbox bug worth
            // stopping for rather than a guest that saves less state than it was told of.
            fd.set_xcrs(&x).map_err(|e| KvmError::Ioctl("KVM_SET_XCRS", e))?;
        }
        let entries = [
            (msr::STAR, arch::star()),
            (msr::LSTAR, setup.lstar),
            (msr::CSTAR, setup.lstar),
            (msr::SFMASK, arch::SFMASK),
            (msr::SYSENTER_CS, 0),
            (msr::KERNEL_GS_BASE, 0),
            (msr::FS_BASE, 0),
        ]
        .map(|(index, data)| kvm_msr_entry { index, data, ..Default::default() });
        let msrs = Msrs::from_entries(&entries).expect("seven MSRs fit");
        let n = fd.set_msrs(&msrs).map_err(|e| KvmError::Ioctl("KVM_SET_MSRS", e))?;
        if n != entries.len() {
            return Err(KvmError::MsrRejected(entries[n].index));
        }
        Ok(KvmVcpu { fd, osxsave: setup.xcr0.is_some(), tr: s.tr, ring0_stack: setup.ring0_stack, regs_dirty: false })
    }

    /// Makes kicks on the calling host thread reach this vCPU (call on the thread that runs it).
    pub fn claim_kicks(&mut self) {
        let p: *mut u8 = &mut self.fd.get_kvm_run().immediate_exit;
        trapbox_host::kick::claim(p);
    }

    /// The state a copy of this vCPU needs: general registers, FS/GS bases, FPU/vector state.
    pub fn save_state(&mut self) -> Result<CpuState, KvmError> {
        Ok(CpuState {
            sregs: Some(self.fd.get_sregs().map_err(|e| KvmError::Ioctl("KVM_GET_SREGS", e))?),
            regs: *self.regs(),
            fs_base: self.get_msr(msr::FS_BASE)?,
            gs_base: self.get_msr(msr::GS_BASE)?,
            xsave: self.get_xsave()?,
        })
    }

    /// Loads `state` (from [`KvmVcpu::save_state`], possibly of another vCPU).
    pub fn restore_state(&mut self, state: &CpuState) -> Result<(), KvmError> {
        if let Some(s) = &state.sregs {
            // The state is another vCPU's (a new thread's parent, a forked process): this one
            // keeps its own TSS and ring-0 stack.
            let s = kvm_bindings::kvm_sregs { tr: self.tr, ..*s };
            self.fd.set_sregs(&s).map_err(|e| KvmError::Ioctl("KVM_SET_SREGS", e))?;
        }
        *self.regs_mut() = state.regs;
        self.set_msr(msr::FS_BASE, state.fs_base)?;
        self.set_msr(msr::GS_BASE, state.gs_base)?;
        self.set_xsave(&state.xsave)
    }

    /// The FPU/SSE/AVX state in the XSAVE layout (standard form).
    pub fn get_xsave(&self) -> Result<kvm_bindings::kvm_xsave, KvmError> {
        self.fd.get_xsave().map_err(|e| KvmError::Ioctl("KVM_GET_XSAVE", e))
    }

    /// Replaces the FPU/SSE/AVX state.
    pub fn set_xsave(&self, x: &kvm_bindings::kvm_xsave) -> Result<(), KvmError> {
        // SAFETY: `x` is a whole kvm_xsave (4 KiB region); KVM reads only that structure.
        unsafe { self.fd.set_xsave(x) }.map_err(|e| KvmError::Ioctl("KVM_SET_XSAVE", e))
    }

    /// This vCPU's ring-0 stack (where its exception frames are).
    pub fn ring0_stack(&self) -> (u64, u64) {
        self.ring0_stack
    }

    /// Whether the guest runs with CR4.OSXSAVE (XCR0 as [`CpuSetup::xcr0`]).
    pub fn osxsave(&self) -> bool {
        self.osxsave
    }

    /// Runs until the next exit.
    pub fn run(&mut self) -> Result<RawExit, KvmError> {
        {
            // Which state KVM copies in and out is set outright at every entry, never OR-ed
            // into what the run page holds: whoever else could write that page (nothing
            // should; the guest can never map a vCPU's) cannot make KVM load segment or
            // control registers from it.
            let run = self.fd.get_kvm_run();
            run.kvm_valid_regs = SyncReg::Register as u64;
            run.kvm_dirty_regs = if std::mem::take(&mut self.regs_dirty) { SyncReg::Register as u64 } else { 0 };
        }
        let exit = match self.fd.run() {
            Ok(VcpuExit::IoOut(port, _)) => RawExit::IoOut { port },
            Ok(VcpuExit::IoIn(port, data)) => {
                data.fill(0xff);
                RawExit::IoIn { port }
            }
            Ok(VcpuExit::MmioWrite(gpa, _)) => RawExit::MmioWrite { gpa },
            Ok(VcpuExit::MmioRead(gpa, data)) => {
                data.fill(0xff);
                RawExit::MmioRead { gpa }
            }
            Ok(VcpuExit::Hlt) => RawExit::Hlt,
            Ok(VcpuExit::Shutdown) => RawExit::Shutdown,
            Ok(VcpuExit::Intr) => RawExit::Interrupted,
            Ok(VcpuExit::InternalError) => {
                // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the live
                // member of the union.
                let suberror = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                RawExit::InternalError { suberror }
            }
            Ok(VcpuExit::FailEntry(reason, _)) => RawExit::FailEntry { reason },
            Ok(VcpuExit::Debug(d)) => RawExit::Debug { exception: d.exception, pc: d.pc },
            Ok(_) => RawExit::Other(self.fd.get_kvm_run().exit_reason),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => RawExit::Interrupted,
            Err(e) if e.errno() == libc::EFAULT => RawExit::HostMemoryFault,
            Err(e) => return Err(KvmError::Ioctl("KVM_RUN", e)),
        };
        if exit == RawExit::Interrupted {
            self.fd.set_kvm_immediate_exit(0);
        }
        Ok(exit)
    }

    /// General registers as of the last exit.
    pub fn regs(&mut self) -> &kvm_regs {
        &self.fd.sync_regs_mut().regs
    }

    /// General registers, to be written back on the next run.
    pub fn regs_mut(&mut self) -> &mut kvm_regs {
        self.regs_dirty = true;
        &mut self.fd.sync_regs_mut().regs
    }

    /// Makes the guest's TSC equal the host's (KVM_SET_DEVICE_ATTR, KVM_VCPU_TSC_OFFSET = 0),
    /// so host time data (the vDSO's) is valid in the guest.
    pub fn zero_tsc_offset(&self) -> Result<(), KvmError> {
        let offset: u64 = 0;
        let attr = kvm_bindings::kvm_device_attr {
            group: kvm_bindings::KVM_VCPU_TSC_CTRL,
            attr: kvm_bindings::KVM_VCPU_TSC_OFFSET as u64,
            addr: &offset as *const u64 as u64,
            flags: 0,
        };
        // KVM_SET_DEVICE_ATTR = _IOW(KVMIO, 0xe1, struct kvm_device_attr); kvm-ioctls offers it
        // for vCPUs on aarch64 only.
        const KVM_SET_DEVICE_ATTR: libc::c_ulong = 0x4018_aee1;
        // SAFETY: the ioctl reads `attr` (a valid kvm_device_attr) and, through attr.addr, the
        // u64 `offset`, both alive for the call; it touches no other memory of ours.
        let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&self.fd), KVM_SET_DEVICE_ATTR, &attr) };
        if r != 0 {
            return Err(KvmError::Ioctl("KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)", kvm_ioctls::Error::last()));
        }
        Ok(())
    }

    /// Reads an MSR.
    pub fn get_msr(&self, index: u32) -> Result<u64, KvmError> {
        let mut m = Msrs::from_entries(&[kvm_msr_entry { index, ..Default::default() }]).expect("one MSR fits");
        self.fd.get_msrs(&mut m).map_err(|e| KvmError::Ioctl("KVM_GET_MSRS", e))?;
        Ok(m.as_slice()[0].data)
    }

    /// Writes an MSR.
    pub fn set_msr(&self, index: u32, data: u64) -> Result<(), KvmError> {
        self.set_msrs(&[(index, data)])
    }

    /// Sets several MSRs (index, value) in one KVM_SET_MSRS: on PVM each vCPU ioctl loads the
    /// vCPU again, host MSRs read included, so one call costs less than one per MSR.
    pub fn set_msrs(&self, msrs: &[(u32, u64)]) -> Result<(), KvmError> {
        let entries: Vec<kvm_msr_entry> =
            msrs.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
        let m = Msrs::from_entries(&entries).map_err(|_| KvmError::MsrRejected(msrs.first().map_or(0, |m| m.0)))?;
        match self.fd.set_msrs(&m) {
            Ok(n) if n == msrs.len() => Ok(()),
            // KVM stops at the first MSR it refuses: `n` were set.
            Ok(n) => Err(KvmError::MsrRejected(msrs.get(n).map_or(0, |m| m.0))),
            Err(e) => Err(KvmError::Ioctl("KVM_SET_MSRS", e)),
        }
    }

    /// CR2: the address of the last page fault.
    pub fn cr2(&self) -> Result<u64, KvmError> {
        Ok(self.fd.get_sregs().map_err(|e| KvmError::Ioctl("KVM_GET_SREGS", e))?.cr2)
    }

    /// The underlying vCPU fd (for capabilities not wrapped here).
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        let mine: *mut u8 = &mut self.fd.get_kvm_run().immediate_exit;
        trapbox_host::kick::release(mine);
    }
}

pub use trapbox_abi::arch::cpustate::CpuState;
