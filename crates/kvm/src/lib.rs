//! The KVM engine: one VM with a vCPU per guest thread running guest code at CPL3 in 64-bit
//! mode, and the trap paths that bring every syscall and exception back to trapbox. The only
//! crate that opens /dev/kvm for the ELF engine; `trapbox-vm` puts it and the in-process
//! engine behind one `Machine`. It sits on `trapbox-abi` (the x86-64 structures, re-exported
//! as [`arch`]), `trapbox-trap` (registers, exits, [`Engine`]) and `trapbox-host`.
//!
//! Owns all KVM objects and the system region: trapbox's own memory that the guest CPU needs
//! (GDT, TSS, IDT, ring-0 stubs, ring-0 stack, page tables). The system region is mapped in
//! the guest's page tables at its host address with the user bit clear — except the
//! trampoline page (PVM's syscall entry and the start-up CPUID probe: read/execute) and the
//! doorbell page (no memory behind it) — so the guest cannot read or write any of it
//! (invariant 2).
//!
//! Files: `kvm` objects here, `vcpu.rs` (KVM_RUN, registers), `memory.rs` (slots and
//! guest-physical space), `paging.rs` (page tables), `entry/` (the two trap paths), `exit.rs`
//! (exit decoding).

pub use trapbox_abi::arch;
pub use trapbox_abi::arch::regs;
pub mod entry;
pub mod exit;
pub mod memory;
pub mod paging;
mod probe;
pub mod vcpu;

pub use trapbox_trap::{Engine, TrapPath};

use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use kvm_ioctls::{Cap, Kvm};
use thiserror::Error;

pub use exit::{Exit, RawExit};
pub use memory::{GuestMemory, MemoryError, MemoryMirror, NoMirror};
pub use paging::PteFlags;

use exit::Doorbell;
use memory::PhysAllocator;
use paging::{PageTables, TablePool, PAGE_SIZE};

/// Errors of the KVM engine.
#[derive(Debug, Error)]
pub enum KvmError {
    /// A KVM machine was asked for with the in-process trap path.
    #[error("the in-process trap path has no KVM machine")]
    NotAKvmPath,
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0} (the sandbox needs KVM: load kvm_intel/kvm_amd or kvm_pvm and run as a user who can open /dev/kvm; `--backend inproc` runs without it, but is not a sandbox)")]
    NoKvm(kvm_ioctls::Error),
    /// /dev/kvm opened but is not KVM (another device bound over it, as in some containers).
    #[error("/dev/kvm does not answer as KVM (trapbox's sandbox needs KVM; `--backend inproc` runs without it, but is not a sandbox)")]
    NotKvm,
    /// A KVM ioctl failed.
    #[error("{0}: {1}")]
    Ioctl(&'static str, kvm_ioctls::Error),
    /// KVM lacks a capability trapbox needs.
    #[error("KVM lacks capability {0}")]
    MissingCap(&'static str),
    /// KVM refused an MSR.
    #[error("KVM refused MSR {0:#x}")]
    MsrRejected(u32),
    /// Host memory for the system region could not be reserved.
    #[error("cannot reserve the system region: {0}")]
    SysRegion(std::io::Error),
    /// Guest memory management failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// No XCR0 can be given to the guest.
    #[error(transparent)]
    Xcr(#[from] arch::cpuid::XcrError),
    /// The start-up probe did not end at its doorbell.
    #[error("the start-up CPU probe ended with {0:?} instead of its doorbell")]
    Probe(RawExit),
    /// KVM did not give the guest the XCR0 trapbox asked for.
    #[error("asked KVM for XSAVE state {:#x}, guest code runs with {:#x}", .asked, .got)]
    Xcr0Ignored {
        /// The XCR0 asked for.
        asked: u64,
        /// The XCR0 `xgetbv` read at CPL3.
        got: u64,
    },
    /// What the guest's CPU would tell a program is not true of it.
    #[error("the guest's CPU view is inconsistent on this host: {0}")]
    InconsistentView(arch::cpuview::Inconsistency),
    /// The probe's code could not be assembled.
    #[error("cannot assemble the start-up CPU probe: {0}")]
    Assemble(iced_x86::IcedError),
}

/// Size of the system region (most of it is the page-table pool, reserved lazily).
const SYS_SIZE: u64 = 256 << 20;
/// Guest-physical base of the system region.
const SYS_GPA: u64 = 1 << 20;
/// Guest-physical page with no slot: stores to it are the PVM syscall doorbell.
const DOORBELL_GPA: u64 = SYS_GPA + SYS_SIZE + PAGE_SIZE;
/// Guest-physical page of the zap slot (see GuestMemory::flush).
const ZAP_GPA: u64 = DOORBELL_GPA + 2 * PAGE_SIZE;
/// Guest memory's guest-physical addresses start here.
const GUEST_GPA_START: u64 = 1 << 30;

/// Offsets inside the system region.
mod layout {
    pub const GDT: u64 = 0x0000;
    pub const TSS: u64 = 0x0800;
    pub const IDT: u64 = 0x1000;
    pub const STUBS: u64 = 0x2000;
    pub const HW_SYSCALL: u64 = 0x2400;
    pub const TRAMPOLINE: u64 = 0x3000;
    pub const DOORBELL: u64 = 0x4000;
    pub const ZAP: u64 = 0xa000;
    /// The start-up probe's code and output: user-visible only while it runs.
    pub const PROBE: u64 = 0xb000;
    pub const PROBE_OUT: u64 = 0xc000;
    /// Each vCPU's TSS and ring-0 stack, [`CPU_SLOT`] bytes per vCPU id: the CPU pushes an
    /// exception's frame on the ring-0 stack and trapbox edits it there while the thread is
    /// out, so two vCPUs must never share one (a thread held at an exception would resume
    /// through the other's frame). The stubs need one frame (six words) at a time.
    pub const CPUS: u64 = 0x10000;
    pub const CPU_SLOT: u64 = 256;
    /// vCPU ids KVM accepts stay below this (KVM_MAX_VCPU_IDS on x86).
    pub const CPU_SLOTS: u64 = 4096;
    pub const TABLES: u64 = CPUS + CPU_SLOT * CPU_SLOTS;
}

/// The interrupt frame an exception stub leaves on the ring-0 stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionFrame {
    /// Error code (vectors that push one), else 0.
    pub error_code: u64,
    /// Where the exception happened.
    pub rip: u64,
    /// Code segment at the exception (CPL in its low bits).
    pub cs: u64,
    /// RFLAGS at the exception.
    pub rflags: u64,
    /// Stack pointer at the exception.
    pub rsp: u64,
}

/// One VM, the system region and the guest memory, and the vCPU of the thread that holds it
/// ([`KvmMachine::enter`]; the others run theirs outside).
pub struct KvmMachine {
    _kvm: Kvm,
    /// Guest memory (slots, guest-physical space, page tables).
    pub mem: GuestMemory,
    /// The vCPU of the thread that holds the machine now (see [`KvmMachine::enter`]).
    vcpu: Option<vcpu::KvmVcpu>,
    path: TrapPath,
    sys: *mut u8,
    doorbell: Doorbell,
    exits: u64,
    /// The CPU as guest user code sees it (measured at start-up).
    view: arch::cpuview::CpuView,
    /// The zap slot: id, host address, guest-physical address (see GuestMemory::flush).
    zap: (u32, u64, u64),
    /// The CPUID view given to KVM.
    cpuid: kvm_bindings::CpuId,
    /// The ring-0 environment every vCPU starts with.
    setup: vcpu::CpuSetup,
    /// Where trapbox's KVM descriptors are numbered from.
    fd_base: i32,
    /// Whether the guest TSC must equal the host's (the vDSO is shared on hardware KVM).
    zero_tsc: bool,
    /// The FPU state a new program starts with (execve).
    initial_fpu: kvm_bindings::kvm_xsave,
}

/// Where the guest is stopped when trapbox resumes it with a whole new user context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeFrom {
    /// At a syscall exit.
    Syscall,
    /// At an exception exit with this vector.
    Exception(u8),
    /// Interrupted in user code (a kick): the registers are the user's.
    Running,
}

impl KvmMachine {
    /// Creates the VM for trap path `path`. Its file descriptors are moved to numbers at or
    /// above `fd_base`, so the guest's own descriptors number from 3 as they would natively.
    pub fn new(path: TrapPath, fd_base: i32) -> Result<KvmMachine, KvmError> {
        if path == TrapPath::InProcess {
            return Err(KvmError::NotAKvmPath);
        }
        let kvm = Kvm::new().map_err(KvmError::NoKvm)?;
        if kvm.get_api_version() != 12 {
            return Err(KvmError::NotKvm);
        }
        // SAFETY: the rehomed fd is a fresh duplicate of /dev/kvm that nothing else owns.
        let kvm = unsafe { Kvm::from_raw_fd(rehome(kvm.as_raw_fd(), fd_base)?) };
        for (cap, name) in [(Cap::SyncRegs, "KVM_CAP_SYNC_REGS"), (Cap::UserMemory, "KVM_CAP_USER_MEMORY")] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap(name));
            }
        }
        let vm = eintr_retry(|| kvm.create_vm()).map_err(|e| KvmError::Ioctl("KVM_CREATE_VM", e))?;
        // SAFETY: the rehomed fd is a fresh duplicate of the VM fd that nothing else owns.
        let vm = unsafe { kvm.create_vmfd_from_rawfd(rehome(vm.as_raw_fd(), fd_base)?) }
            .map_err(|e| KvmError::Ioctl("KVM_GET_VCPU_MMAP_SIZE", e))?;
        let supported = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| KvmError::Ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
        // One XCR0 for the CPUID table, KVM_SET_XCRS and every layout trapbox computes: the
        // host's state components (see arch::cpuid), checked below against what the guest's
        // CPU really does.
        let host = arch::cpuview::CpuView::host();
        let xcr0 = if host.osxsave() {
            let kvm_xcr0 = arch::cpuid::kvm_xcr0(&supported);
            Some(arch::cpuid::guest_xcr0(host.layout(), kvm_xcr0, path == TrapPath::Pvm)?)
        } else {
            None
        };
        let cpuid = arch::cpuid::guest_cpuid(&supported, host.layout(), xcr0.unwrap_or(arch::xsave::LEGACY));
        let phys_end = 1u64 << arch::cpuid::phys_bits(&cpuid).min(46);

        // SAFETY: a fresh private anonymous mapping; nothing else refers to it. NORESERVE
        // keeps the mostly unused page-table pool from counting against memory.
        let sys = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SYS_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if sys == libc::MAP_FAILED {
            return Err(KvmError::SysRegion(std::io::Error::last_os_error()));
        }
        let sys = sys.cast::<u8>();
        let base = sys as u64;
        // The doorbell page must never hold host memory the guest could reach by accident:
        // PROT_NONE on the host, and its guest page points at a guest-physical hole.
        // SAFETY: the page lies inside the region just mapped.
        unsafe { libc::mprotect(sys.add(layout::DOORBELL as usize).cast(), PAGE_SIZE as usize, libc::PROT_NONE) };

        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: SYS_GPA,
            memory_size: SYS_SIZE,
            userspace_addr: base,
        };
        // SAFETY: the system region stays mapped for the life of the KvmMachine (unmapped in
        // Drop after the VM fd is gone).
        unsafe { vm.set_user_memory_region(region) }.map_err(|e| KvmError::Ioctl("KVM_SET_USER_MEMORY_REGION", e))?;

        let pool_pages = ((SYS_SIZE - layout::TABLES) / PAGE_SIZE) as usize;
        // SAFETY: the pool is the tail of the system region: page aligned, zeroed (fresh
        // anonymous memory), and used only by the page tables.
        let pool = unsafe { TablePool::new(sys.add(layout::TABLES as usize), SYS_GPA + layout::TABLES, pool_pages) };
        let mut tables = PageTables::new(pool).map_err(MemoryError::from)?;

        // System pages in the guest's view, each at its host address.
        let sup_rw = PteFlags { write: true, exec: false, user: false };
        let sup_x = PteFlags { write: false, exec: true, user: false };
        let user_x = PteFlags { write: false, exec: true, user: true };
        let gpa_of = |off: u64| SYS_GPA + off;
        let map = |t: &mut PageTables, off: u64, len: u64, f: PteFlags| t.map(base + off, gpa_of(off), len, f);
        map(&mut tables, layout::GDT, 0x1000, sup_rw).map_err(MemoryError::from)?;
        map(&mut tables, layout::IDT, 0x1000, sup_rw).map_err(MemoryError::from)?;
        map(&mut tables, layout::STUBS, 0x1000, sup_x).map_err(MemoryError::from)?;
        map(&mut tables, layout::CPUS, layout::CPU_SLOT * layout::CPU_SLOTS, sup_rw).map_err(MemoryError::from)?;
        // The trampoline page (PVM's syscall entry) and the doorbell are user-visible on both
        // paths; on hardware KVM the doorbell only ever sees the start-up probe.
        map(&mut tables, layout::TRAMPOLINE, 0x1000, user_x).map_err(MemoryError::from)?;
        let user_rw = PteFlags { write: true, exec: false, user: true };
        tables.map(base + layout::DOORBELL, DOORBELL_GPA, PAGE_SIZE, user_rw).map_err(MemoryError::from)?;
        let lstar = match path {
            TrapPath::Pvm => base + layout::TRAMPOLINE,
            TrapPath::Hardware => base + layout::HW_SYSCALL,
            TrapPath::InProcess => unreachable!("refused above"),
        };

        let write = |off: u64, bytes: &[u8]| {
            assert!(off as usize + bytes.len() <= layout::TABLES as usize, "system structures overlap the pool");
            // SAFETY: the range lies inside the first 64 KiB of the system region (asserted
            // above), which is mapped read/write and owned by this KvmMachine.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), sys.add(off as usize), bytes.len()) }
        };
        let gdt = arch::gdt(base + layout::TSS, 103);
        write(layout::GDT, &gdt.map(u64::to_le_bytes).concat());
        let stubs = entry::exception_stubs();
        write(layout::STUBS, &stubs);
        let mut idt = Vec::with_capacity(arch::IDT_ENTRIES * 16);
        for v in 0..arch::IDT_ENTRIES as u64 {
            // int3 (and into) must be allowed from CPL3 to raise #BP rather than #GP.
            let dpl = if v == 3 || v == 4 { 3 } else { 0 };
            for q in arch::idt_gate(base + layout::STUBS + v * 16, dpl) {
                idt.extend_from_slice(&q.to_le_bytes());
            }
        }
        write(layout::IDT, &idt);
        write(layout::HW_SYSCALL, &entry::hw::syscall_stub());
        let tramp = entry::pvm::trampoline(base + layout::DOORBELL);
        write(layout::TRAMPOLINE, &tramp);

        let setup = vcpu::CpuSetup {
            gdt: (base + layout::GDT, (gdt.len() * 8 - 1) as u16),
            idt: (base + layout::IDT, (arch::IDT_ENTRIES * 16 - 1) as u16),
            tss: 0,
            ring0_stack: (0, 0),
            cr3: tables.root(),
            lstar,
            xcr0,
            // Where the CPU has UMIP (CPUID.7.0:ECX bit 2).
            umip: arch::cpuview::host_cpuid(7, 0)[2] & (1 << 2) != 0,
        };
        let vcpu_fd = eintr_retry(|| vm.create_vcpu(0)).map_err(|e| KvmError::Ioctl("KVM_CREATE_VCPU", e))?;
        // SAFETY: the rehomed fd is a fresh duplicate of the vCPU fd that nothing else owns.
        let vcpu_fd = unsafe { vm.create_vcpu_from_rawfd(rehome(vcpu_fd.as_raw_fd(), fd_base)?) }
            .map_err(|e| KvmError::Ioctl("mmap kvm_run", e))?;
        let mut vcpu = vcpu::KvmVcpu::new(vcpu_fd, &cpuid, &ring0_slot(sys, base, &setup, 0))?;
        // The creating thread runs the first vCPU.
        vcpu.claim_kicks();
        let initial_fpu = vcpu.get_xsave()?;
        let probed = probe_view(&mut vcpu, &mut tables, base, host.xcr0() | xcr0.unwrap_or(0), xcr0.is_some())?;
        // The last slot id is the zap slot; guest slots use the others.
        let max_slots = kvm.get_nr_memslots();
        let zap = ((max_slots - 1) as u32, base + layout::ZAP, ZAP_GPA);
        let zap_region = kvm_bindings::kvm_userspace_memory_region {
            slot: zap.0,
            flags: 0,
            guest_phys_addr: zap.2,
            memory_size: PAGE_SIZE,
            userspace_addr: zap.1,
        };
        // SAFETY: the zap page lies in the system region, mapped for the KvmMachine's lifetime;
        // no guest page table points at it.
        unsafe { vm.set_user_memory_region(zap_region) }
            .map_err(|e| KvmError::Ioctl("KVM_SET_USER_MEMORY_REGION", e))?;
        let mut mem = GuestMemory::new(vm, tables, PhysAllocator::new(GUEST_GPA_START, phys_end), max_slots - 1);
        // The probe's pages leave the guest's view; the flush before the first run makes KVM
        // forget them (PVM's shadow tables included).
        mem.unmap(base + layout::PROBE, 2 * PAGE_SIZE)?;
        let view = check_view(probed, xcr0)?;
        Ok(KvmMachine {
            _kvm: kvm,
            mem,
            vcpu: Some(vcpu),
            path,
            sys,
            doorbell: Doorbell { gpa: DOORBELL_GPA, trampoline: base + layout::TRAMPOLINE, store_len: 9 },
            exits: 0,
            view,
            zap,
            cpuid,
            setup,
            fd_base,
            zero_tsc: false,
            initial_fpu,
        })
    }

    /// Gives a forked copy of trapbox a VM of its own: KVM objects belong to the process that
    /// created them, so the child creates a new VM, registers the same memory slots (its guest
    /// memory is the host's copy-on-write copy at the same addresses, page tables included)
    /// and a vCPU resuming from `state`. Returns the new descriptors trapbox owns.
    pub fn rebuild_after_fork(&mut self, mut state: vcpu::CpuState) -> Result<Vec<RawFd>, KvmError> {
        // On hardware KVM the parent stopped at the syscall stub's `out`, which KVM completes
        // (steps over) on the parent's next KVM_RUN. A new vCPU knows of no such pending I/O:
        // resume it past the `out`, at the stub's `sysretq`.
        let stub = self.sys as u64 + layout::HW_SYSCALL;
        if self.path == TrapPath::Hardware && state.regs.rip == stub {
            state.regs.rip = stub + entry::hw::OUT_LEN;
        }
        // The parent's /dev/kvm descriptor came along: a child whose guest dropped the rights
        // to open /dev/kvm (setuid to nobody) still makes its VM, as a natively forked child
        // of such a process still runs.
        let kvm_fd = rehome(self._kvm.as_raw_fd(), self.fd_base)?;
        // SAFETY: the rehomed fd is a fresh duplicate of /dev/kvm that nothing else owns.
        let kvm = unsafe { Kvm::from_raw_fd(kvm_fd) };
        let vm = eintr_retry(|| kvm.create_vm()).map_err(|e| KvmError::Ioctl("KVM_CREATE_VM", e))?;
        let vm_fd = rehome(vm.as_raw_fd(), self.fd_base)?;
        // SAFETY: the rehomed fd is a fresh duplicate of the VM fd that nothing else owns.
        let vm =
            unsafe { kvm.create_vmfd_from_rawfd(vm_fd) }.map_err(|e| KvmError::Ioctl("KVM_GET_VCPU_MMAP_SIZE", e))?;
        for (slot, gpa, hva, len) in
            [(0, SYS_GPA, self.sys as u64, SYS_SIZE), (self.zap.0, self.zap.2, self.zap.1, PAGE_SIZE)]
        {
            let region = kvm_bindings::kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: gpa,
                memory_size: len,
                userspace_addr: hva,
            };
            // SAFETY: as in Machine::new: the system region lives as long as the KvmMachine.
            eintr_retry(|| unsafe { vm.set_user_memory_region(region) })
                .map_err(|e| KvmError::Ioctl("KVM_SET_USER_MEMORY_REGION", e))?;
        }
        let vcpu_fd = eintr_retry(|| vm.create_vcpu(0)).map_err(|e| KvmError::Ioctl("KVM_CREATE_VCPU", e))?;
        let cpu_fd = rehome(vcpu_fd.as_raw_fd(), self.fd_base)?;
        // SAFETY: the rehomed fd is a fresh duplicate of the vCPU fd that nothing else owns.
        let vcpu_fd = unsafe { vm.create_vcpu_from_rawfd(cpu_fd) }.map_err(|e| KvmError::Ioctl("mmap kvm_run", e))?;
        drop(std::mem::replace(&mut self._kvm, kvm));
        self.mem.rebind(vm)?;
        let mut vcpu =
            vcpu::KvmVcpu::new(vcpu_fd, &self.cpuid, &ring0_slot(self.sys, self.sys as u64, &self.setup, 0))?;
        if self.zero_tsc {
            vcpu.zero_tsc_offset()?;
        }
        vcpu.restore_state(&state)?;
        vcpu.claim_kicks();
        self.vcpu = Some(vcpu);
        Ok(vec![kvm_fd, vm_fd, cpu_fd])
    }

    /// Whether the vCPU stopped at an instruction of user code (CPL3), rather than in one of
    /// trapbox's stubs or between an instruction and the exception it raised: KVM can return
    /// from a run interrupted by a signal with the exception of the instruction just executed
    /// (an `int3`, a single step) queued but not yet delivered, the registers already past the
    /// instruction. Writing the registers there would drop the exception (KVM_SET_REGS clears
    /// it), and the guest would go on as if the instruction had not trapped.
    pub fn at_user_instruction(&self) -> Result<bool, KvmError> {
        let s = self.cpu().fd().get_sregs().map_err(|e| KvmError::Ioctl("KVM_GET_SREGS", e))?;
        if s.cs.selector & 3 != 3 {
            return Ok(false);
        }
        // PVM's syscall trampoline runs at CPL3 too, but it is trapbox's code: a guest there
        // has made its syscall, whose trap comes next.
        let rip = self.cpu().fd().get_regs().map_err(|e| KvmError::Ioctl("KVM_GET_REGS", e))?.rip;
        let (lo, hi) = self.system_region();
        if (lo..hi).contains(&rip) {
            return Ok(false);
        }
        let e = self.cpu().fd().get_vcpu_events().map_err(|e| KvmError::Ioctl("KVM_GET_VCPU_EVENTS", e))?;
        Ok(e.exception.injected == 0 && e.exception.pending == 0 && e.interrupt.injected == 0 && e.nmi.injected == 0)
    }

    /// The running vCPU's state, for [`KvmMachine::rebuild_after_fork`].
    pub fn save_cpu_state(&mut self) -> Result<vcpu::CpuState, KvmError> {
        self.cpu_mut().save_state()
    }

    /// Gives the guest the FPU state a freshly started program has.
    pub fn reset_fpu(&mut self) -> Result<(), KvmError> {
        self.cpu().set_xsave(&self.initial_fpu)
    }

    /// The guest's x87/SSE/AVX state (XSAVE standard form, as KVM gives it).
    pub fn fpu(&self) -> Result<kvm_bindings::kvm_xsave, KvmError> {
        self.cpu().get_xsave()
    }

    /// Replaces the guest's x87/SSE/AVX state.
    pub fn set_fpu(&mut self, x: &kvm_bindings::kvm_xsave) -> Result<(), KvmError> {
        self.cpu().set_xsave(x)
    }

    /// Resumes the guest with every user register as given — including RCX and R11, which a
    /// plain syscall return overwrites (execve's new image, a signal handler's entry,
    /// rt_sigreturn's restored context). On PVM the registers are set directly. On hardware
    /// KVM the vCPU is in a ring-0 stub: a syscall exit whose RCX/R11 already hold the return
    /// point leaves through `sysretq` as usual, anything else through an `iretq` frame on the
    /// ring-0 stack.
    pub fn resume_user(&mut self, from: ResumeFrom, r: &kvm_bindings::kvm_regs) {
        let rflags = (r.rflags & 0x3c_7fd7) | 0x2;
        match (self.path, from) {
            (_, ResumeFrom::Exception(v)) => {
                let k = self.cpu_mut().regs_mut();
                let (rsp0, rip0) = (k.rsp, k.rip);
                *k = kvm_bindings::kvm_regs { rsp: rsp0, rip: rip0, rflags: k.rflags, ..*r };
                self.set_exception_return(v, r.rip, r.rsp, rflags);
            }
            (TrapPath::Pvm, ResumeFrom::Syscall) | (_, ResumeFrom::Running) => {
                *self.cpu_mut().regs_mut() = kvm_bindings::kvm_regs { rflags, ..*r };
            }
            (TrapPath::Hardware, ResumeFrom::Syscall)
                if r.rcx == r.rip && r.r11 & 0x3c_7fd7 == r.rflags & 0x3c_7fd7 =>
            {
                let k = self.cpu_mut().regs_mut();
                let rip0 = k.rip;
                *k = kvm_bindings::kvm_regs { rip: rip0, rflags: k.rflags, ..*r };
            }
            (TrapPath::InProcess, _) => unreachable!("a KvmMachine has a KVM trap path"),
            (TrapPath::Hardware, ResumeFrom::Syscall) => {
                let top = self.cpu().ring0_stack().1;
                let frame = [r.rip, arch::USER_CS as u64, rflags, r.rsp, arch::USER_DS as u64];
                let p = self.frame_ptr(top - 40, 5);
                for (i, w) in frame.iter().enumerate() {
                    // SAFETY: frame_ptr keeps the five words inside the ring-0 stack.
                    unsafe { p.add(i).write(*w) };
                }
                // The vector-0 stub is `out; iretq`: enter it at its iretq.
                let iretq = self.sys as u64 + layout::STUBS + entry::IRETQ_IN_STUB0;
                let k = self.cpu_mut().regs_mut();
                let rf = k.rflags;
                *k = kvm_bindings::kvm_regs { rip: iretq, rsp: p as u64, rflags: rf, ..*r };
            }
        }
    }

    /// The current vCPU. Holding the machine without a vCPU entered is a trapbox bug.
    fn cpu(&self) -> &vcpu::KvmVcpu {
        self.vcpu.as_ref().expect("a thread's vCPU is entered while the machine is in use")
    }

    fn cpu_mut(&mut self) -> &mut vcpu::KvmVcpu {
        self.vcpu.as_mut().expect("a thread's vCPU is entered while the machine is in use")
    }

    /// Takes the current vCPU out: its thread runs it without holding the machine.
    pub fn leave(&mut self) -> Option<vcpu::KvmVcpu> {
        self.vcpu.take()
    }

    /// Makes `v` the current vCPU (its thread holds the machine now).
    pub fn enter(&mut self, v: vcpu::KvmVcpu) {
        self.vcpu = Some(v);
    }

    /// A vCPU for a new guest thread, starting from `state`.
    pub fn new_vcpu(&mut self, id: u64, state: &vcpu::CpuState) -> Result<vcpu::KvmVcpu, KvmError> {
        let fd = eintr_retry(|| self.mem.vm().create_vcpu(id)).map_err(|e| KvmError::Ioctl("KVM_CREATE_VCPU", e))?;
        let n = rehome(fd.as_raw_fd(), self.fd_base)?;
        // SAFETY: the rehomed fd is a fresh duplicate of the vCPU fd that nothing else owns.
        let fd = unsafe { self.mem.vm().create_vcpu_from_rawfd(n) }.map_err(|e| KvmError::Ioctl("mmap kvm_run", e))?;
        let mut v = vcpu::KvmVcpu::new(fd, &self.cpuid, &ring0_slot(self.sys, self.sys as u64, &self.setup, id))?;
        if self.zero_tsc {
            v.zero_tsc_offset()?;
        }
        v.restore_state(state)?;
        Ok(v)
    }

    /// What a thread needs to run its vCPU without holding the machine: decoding exits.
    pub fn runner(&self) -> KvmRunner {
        KvmRunner { path: self.path, doorbell: self.doorbell }
    }

    /// Makes pending page-table changes visible to every vCPU before any runs again.
    pub fn prepare_run(&mut self) -> Result<(), KvmError> {
        self.mem.flush(self.zap)?;
        Ok(())
    }

    /// Page-table removals and rights reductions take effect on every vCPU before the call
    /// that made them returns (needed once a second vCPU exists).
    pub fn flush_eagerly(&mut self) {
        self.mem.flush_eagerly(self.zap);
    }

    /// Counts exits taken by vCPUs that ran outside the machine.
    pub fn add_exits(&mut self, n: u64) {
        self.exits += n;
    }

    /// The trap path in use.
    pub fn trap_path(&self) -> TrapPath {
        self.path
    }

    /// What `cpuid(leaf, subleaf)` gives guest user code: the measured answer for the leaves
    /// the start-up probe asked (on PVM some come from the CPU, not the table), otherwise the
    /// table trapbox gave KVM. Record and replay answer patched `cpuid` instructions with it.
    pub fn cpuid(&self, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        if let Some(r) = self.view.cpuid(leaf, subleaf) {
            return Some(r);
        }
        let e = self.cpuid.as_slice().iter().find(|e| {
            e.function == leaf && (e.flags & kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0 || e.index == subleaf)
        })?;
        Some([e.eax, e.ebx, e.ecx, e.edx])
    }

    /// The CPU as guest user code sees it: XCR0, the XSAVE layout, the feature leaves.
    pub fn cpu_view(&self) -> &arch::cpuview::CpuView {
        &self.view
    }

    /// Makes the host's vDSO (`[vvar]`, `[vvar_vclock]`, `[vdso]`) readable to the guest at its
    /// host address — read-only, the code executable — and returns the vDSO's base for
    /// AT_SYSINFO_EHDR. Time calls then run in the guest without an exit. On PVM guest user code
    /// reads the host TSC natively; on hardware KVM the guest TSC offset is set to zero first.
    /// None when the host has no vDSO or the TSC cannot be shared.
    pub fn share_vdso(&mut self) -> Result<Option<u64>, KvmError> {
        if self.path == TrapPath::Hardware {
            if self.cpu().zero_tsc_offset().is_err() {
                return Ok(None);
            }
            self.zero_tsc = true;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut base = None;
        for line in maps.lines() {
            let name = line.split_whitespace().last().unwrap_or("");
            if !matches!(name, "[vvar]" | "[vvar_vclock]" | "[vdso]") {
                continue;
            }
            let Some((a, b)) = line.split_whitespace().next().and_then(|r| r.split_once('-')) else { continue };
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
            let exec = name == "[vdso]";
            self.mem.map(a, b - a, Some(PteFlags { write: false, exec, user: true }))?;
            if exec {
                base = Some(a);
            }
        }
        Ok(base)
    }

    /// Whether guest XSAVE/AVX state is enabled through KVM.
    pub fn osxsave(&self) -> bool {
        self.cpu().osxsave()
    }

    /// Host address range of the system region (never guest memory).
    pub fn system_region(&self) -> (u64, u64) {
        (self.sys as u64, self.sys as u64 + SYS_SIZE)
    }

    /// Runs the guest to its next exit and decodes it.
    pub fn run(&mut self) -> Result<Exit, KvmError> {
        self.mem.flush(self.zap)?;
        let raw = self.cpu_mut().run()?;
        self.exits += 1;
        let rip = self.cpu_mut().regs().rip;
        Ok(exit::classify(raw, self.path, &self.doorbell, rip))
    }

    /// Maps the user page at `va` (outside any guest mapping) to guest-physical memory with no
    /// slot, so that every store to it exits with KVM_EXIT_MMIO — the cheapest exit from CPL3.
    /// For measuring that floor; the run loop reports such exits as stray MMIO.
    pub fn map_unbacked_page(&mut self, va: u64) -> Result<(), KvmError> {
        let user_rw = PteFlags { write: true, exec: false, user: true };
        self.mem.tables().map(va, DOORBELL_GPA + PAGE_SIZE, PAGE_SIZE, user_rw).map_err(MemoryError::from)?;
        Ok(())
    }

    /// Runs once and returns the raw exit, without decoding (for measuring exit costs).
    pub fn run_raw(&mut self) -> Result<RawExit, KvmError> {
        let raw = self.cpu_mut().run()?;
        self.exits += 1;
        Ok(raw)
    }

    /// Number of VM exits so far.
    pub fn exits(&self) -> u64 {
        self.exits
    }

    /// General registers as of the last exit.
    pub fn regs(&mut self) -> &kvm_bindings::kvm_regs {
        self.cpu_mut().regs()
    }

    /// General registers, written back on the next run.
    pub fn regs_mut(&mut self) -> &mut kvm_bindings::kvm_regs {
        self.cpu_mut().regs_mut()
    }

    /// Sets the instruction pointer, flags and stack pointer the guest starts with.
    pub fn set_entry(&mut self, rip: u64, rsp: u64) {
        let r = self.cpu_mut().regs_mut();
        *r = Default::default();
        r.rip = rip;
        r.rsp = rsp;
        r.rflags = 0x202;
    }

    /// Completes a syscall exit: the guest resumes at `rip` with `rflags`, RAX = `ret`, and
    /// RCX/R11 holding the return point as `syscall` left them.
    pub fn finish_syscall(&mut self, ret: u64, rip: u64, rflags: u64) {
        let path = self.path;
        let r = self.cpu_mut().regs_mut();
        r.rax = ret;
        r.rcx = rip;
        r.r11 = rflags;
        if path == TrapPath::Pvm {
            // What sysret would do: the trampoline never returns by itself. RF, VM and the
            // reserved bits are cleared, bit 1 set, as sysret does.
            r.rip = rip;
            r.rflags = (rflags & 0x3c_7fd7) | 0x2;
        }
    }

    /// The frame of the exception being handled (valid right after an `Exit::Exception`).
    pub fn exception_frame(&mut self, vector: u8) -> ExceptionFrame {
        let rsp = self.cpu_mut().regs().rsp;
        let with_code = arch::has_error_code(vector);
        let q = self.frame_words(rsp, if with_code { 6 } else { 5 });
        let (e, f) = if with_code { (q[0], &q[1..]) } else { (0, &q[..5]) };
        ExceptionFrame { error_code: e, rip: f[0], cs: f[1], rflags: f[2], rsp: f[3] }
    }

    /// Rewrites where the guest resumes after the exception being handled.
    pub fn set_exception_return(&mut self, vector: u8, rip: u64, rsp: u64, rflags: u64) {
        let rsp0 = self.cpu_mut().regs().rsp;
        let skip = usize::from(arch::has_error_code(vector));
        let p = self.frame_ptr(rsp0, 5 + skip as u64);
        // SAFETY: frame_ptr checked that the frame's words lie inside the ring-0 stack.
        unsafe {
            p.add(skip).write(rip);
            p.add(skip + 2).write((rflags & 0x3c_7fd7) | 0x2);
            p.add(skip + 3).write(rsp);
        }
    }

    /// Where a frame of `words` u64s starts: at `rsp` when it fits in the current vCPU's
    /// ring-0 stack (it always does, since only the stubs run there), else at the top of it.
    fn frame_ptr(&self, rsp: u64, words: u64) -> *mut u64 {
        let (lo, hi) = self.cpu().ring0_stack();
        let rsp = if rsp >= lo && rsp + words * 8 <= hi { rsp } else { hi - words * 8 };
        rsp as *mut u64
    }

    fn frame_words(&self, rsp: u64, words: u64) -> [u64; 6] {
        let p = self.frame_ptr(rsp, words);
        let mut q = [0u64; 6];
        for (i, w) in q.iter_mut().take(words as usize).enumerate() {
            // SAFETY: frame_ptr keeps the frame's words inside the ring-0 stack of the system
            // region, which is mapped for the KvmMachine's lifetime.
            *w = unsafe { p.add(i).read() };
        }
        q
    }

    /// CR2 (the faulting address of the last #PF).
    pub fn cr2(&self) -> Result<u64, KvmError> {
        self.cpu().cr2()
    }

    /// The guest's FS base.
    pub fn fs_base(&self) -> Result<u64, KvmError> {
        self.cpu().get_msr(arch::msr::FS_BASE)
    }

    /// Sets the guest's FS base (TLS).
    pub fn set_fs_base(&self, base: u64) -> Result<(), KvmError> {
        self.cpu().set_msr(arch::msr::FS_BASE, base)
    }

    /// The guest's GS base.
    pub fn gs_base(&self) -> Result<u64, KvmError> {
        self.cpu().get_msr(arch::msr::GS_BASE)
    }

    /// Sets the guest's GS base.
    pub fn set_gs_base(&self, base: u64) -> Result<(), KvmError> {
        self.cpu().set_msr(arch::msr::GS_BASE, base)
    }

    /// Sets the guest's FS and GS bases in one call.
    pub fn set_bases(&self, fs: u64, gs: u64) -> Result<(), KvmError> {
        self.cpu().set_msrs(&[(arch::msr::FS_BASE, fs), (arch::msr::GS_BASE, gs)])
    }
}

/// Runs a vCPU and decodes its exits (what [`KvmMachine::run`] does, for a vCPU its thread holds).
#[derive(Clone, Copy, Debug)]
pub struct KvmRunner {
    path: TrapPath,
    doorbell: Doorbell,
}

impl KvmRunner {
    /// Runs `vcpu` to its next exit.
    pub fn run(&self, vcpu: &mut vcpu::KvmVcpu) -> Result<Exit, KvmError> {
        let raw = vcpu.run()?;
        let rip = vcpu.regs().rip;
        Ok(exit::classify(raw, self.path, &self.doorbell, rip))
    }
}

/// Runs the start-up probe (see `probe.rs`) at CPL3 on `vcpu` and returns what it saw: XCR0
/// (`xgetbv` only where the guest has CR4.OSXSAVE) and the leaves that describe the state
/// components in `components`. The probe's two pages are mapped user-visible here; the caller
/// unmaps them before the guest runs.
/// The ring-0 environment of vCPU `id`: `setup` with the vCPU's own TSS and ring-0 stack in
/// its slot of the system region (mapped at `base`, held by trapbox at `sys`), the TSS
/// written there.
fn ring0_slot(sys: *mut u8, base: u64, setup: &vcpu::CpuSetup, id: u64) -> vcpu::CpuSetup {
    let off = layout::CPUS + (id % layout::CPU_SLOTS) * layout::CPU_SLOT;
    let top = base + off + layout::CPU_SLOT;
    let tss = arch::tss(top);
    assert!(tss.len() as u64 + 64 <= layout::CPU_SLOT, "a slot holds the TSS and a frame");
    // SAFETY: the slot lies in the per-vCPU area of the system region (id is reduced to a
    // slot index), which is mapped read/write for the KvmMachine's lifetime; no vCPU has
    // this id's slot while it is being set up.
    unsafe { std::ptr::copy_nonoverlapping(tss.as_ptr(), sys.add(off as usize), tss.len()) };
    vcpu::CpuSetup { tss: base + off, ring0_stack: (base + off + tss.len() as u64, top), ..*setup }
}

fn probe_view(
    vcpu: &mut vcpu::KvmVcpu,
    tables: &mut PageTables,
    base: u64,
    components: u64,
    xgetbv: bool,
) -> Result<arch::cpuview::CpuView, KvmError> {
    let leaves = arch::cpuview::probe_list(components);
    let (code_at, out_at) = (base + layout::PROBE, base + layout::PROBE_OUT);
    let code = probe::code(code_at, out_at, base + layout::DOORBELL, &leaves, xgetbv).map_err(KvmError::Assemble)?;
    let out_len = probe::out_len(leaves.len());
    assert!(code.len() as u64 <= PAGE_SIZE && out_len as u64 <= PAGE_SIZE, "the probe fits its pages");
    // SAFETY: both pages lie inside the system region, mapped read/write and owned by the
    // KvmMachine being built; nothing else uses them.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), code_at as *mut u8, code.len()) };
    let gpa = |va: u64| SYS_GPA + (va - base);
    let user_x = PteFlags { write: false, exec: true, user: true };
    let user_rw = PteFlags { write: true, exec: false, user: true };
    tables.map(code_at, gpa(code_at), PAGE_SIZE, user_x).map_err(MemoryError::from)?;
    tables.map(out_at, gpa(out_at), PAGE_SIZE, user_rw).map_err(MemoryError::from)?;
    {
        let r = vcpu.regs_mut();
        *r = Default::default();
        r.rip = code_at;
        r.rflags = 0x2;
    }
    let exit = vcpu.run()?;
    *vcpu.regs_mut() = Default::default();
    if !matches!(exit, RawExit::MmioWrite { gpa } if gpa & !0xfff == DOORBELL_GPA) {
        return Err(KvmError::Probe(exit));
    }
    let mut out = vec![0u8; out_len];
    // SAFETY: out_len bytes of the probe's output page (asserted to fit), which the guest
    // wrote before its exit and nothing writes now.
    unsafe { std::ptr::copy_nonoverlapping(out_at as *const u8, out.as_mut_ptr(), out_len) };
    Ok(probe::view(&out, &leaves, xgetbv))
}

/// The probed view, if the guest's CPU does what trapbox asked of it and what it tells a
/// program is true.
fn check_view(view: arch::cpuview::CpuView, xcr0: Option<u64>) -> Result<arch::cpuview::CpuView, KvmError> {
    let asked = xcr0.unwrap_or(arch::xsave::LEGACY);
    if view.xcr0() != asked {
        return Err(KvmError::Xcr0Ignored { asked, got: view.xcr0() });
    }
    if let Some(first) = view.inconsistencies().into_iter().next() {
        return Err(KvmError::InconsistentView(first));
    }
    Ok(view)
}

/// Retries a KVM ioctl that a signal interrupted: trapbox's handlers (and the guest's, which
/// trapbox forwards) have no SA_RESTART, and a forked child receives its parent's signals while
/// it builds its VM.
pub(crate) fn eintr_retry<T>(mut f: impl FnMut() -> Result<T, kvm_ioctls::Error>) -> Result<T, kvm_ioctls::Error> {
    loop {
        match f() {
            Err(e) if e.errno() == libc::EINTR => continue,
            r => return r,
        }
    }
}

/// Duplicates `fd` to the lowest free number at or above `base` (close-on-exec); the caller
/// drops the original.
fn rehome(fd: RawFd, base: i32) -> Result<RawFd, KvmError> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base) };
    if n < 0 {
        return Err(KvmError::Ioctl("F_DUPFD_CLOEXEC", kvm_ioctls::Error::last()));
    }
    Ok(n)
}

impl Drop for KvmMachine {
    fn drop(&mut self) {
        // The VM and vCPU fds close after this body; the system region must outlive KVM's use
        // of it, and KVM stops using it once the vCPU is no longer running, which holds here.
        // SAFETY: the region was mapped in Machine::new with this size and is not used again.
        unsafe { libc::munmap(self.sys.cast(), SYS_SIZE as usize) };
    }
}
