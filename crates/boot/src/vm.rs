//! The boot VM: guest RAM at guest-physical 0, KVM's in-kernel interrupt controllers (PIC,
//! IOAPIC, one LAPIC per vCPU) and PIT, and vCPUs. The bootstrap vCPU starts in the state the
//! Linux 64-bit boot protocol requires (long mode, paging on with an identity map, the boot
//! GDT's __BOOT_CS/__BOOT_DS loaded, interrupts off, %rsi = zero page); the others wait for the
//! kernel's INIT/SIPI like a PC's application processors.
//!
//! This is a separate VM from the ELF engine's `vm::Machine`: that one maps guest virtual =
//! host virtual at CPL3, this one is a plain PC. It reuses `vm::arch`'s GDT encoding, whose
//! kernel selectors are exactly the boot protocol's (0x10 code, 0x18 data), and its control
//! register constants.
//!
//! Unsafe code: the 2 MiB-aligned host mapping behind guest RAM, its vm-memory view, and
//! registering it with KVM (below).

use kvm_bindings::{kvm_pit_config, kvm_segment, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, SyncReg, VcpuFd, VmFd};
use thiserror::Error;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap, MmapRegion,
};

use super::layout;
use trapbox_vm::arch;

/// Errors creating or setting up the boot VM.
#[derive(Debug, Error)]
pub enum VmError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0} (load kvm_intel/kvm_amd and make /dev/kvm accessible)")]
    NoKvm(kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("{0} failed: {1}")]
    Ioctl(&'static str, kvm_ioctls::Error),
    /// Guest RAM could not be mapped.
    #[error("cannot map {size} bytes of guest memory: {source}")]
    Memory {
        /// Bytes asked for.
        size: u64,
        /// Why.
        source: std::io::Error,
    },
    /// Writing a boot structure into guest RAM failed (RAM too small for the fixed layout).
    #[error("cannot write {what} at guest-physical {addr:#x}: guest memory too small")]
    Write {
        /// Which structure.
        what: &'static str,
        /// Where.
        addr: u64,
    },
}

/// One boot VM. Field order is drop order: the vCPU and VM descriptors close before guest RAM
/// is unmapped, so KVM never holds a slot whose host memory is gone.
pub struct BootVm {
    /// The vCPUs, index = APIC ID; vCPU 0 is the bootstrap processor.
    pub vcpus: Vec<VcpuFd>,
    /// The VM.
    pub vm: VmFd,
    _kvm: Kvm,
    /// Guest RAM, guest-physical 0 up (split around the 32-bit MMIO hole): views of `_ram`.
    pub mem: GuestMemoryMmap,
    _ram: Vec<HostRam>,
}

/// An anonymous host mapping for guest RAM, 2 MiB aligned, unmapped on drop.
///
/// Why not vm-memory's own `from_ranges`: KVM maps guest memory with 2 MiB pages only where the
/// guest-physical and host-virtual addresses agree modulo 2 MiB, and mmap gives no alignment.
/// With 4 KiB mappings a kernel boot takes ~28,900 nested page faults (KVM's pf_taken, measured
/// in the tier) against QEMU's ~600, which aligns its RAM and asks for transparent huge pages.
struct HostRam {
    ptr: *mut u8,
    len: usize,
}

impl HostRam {
    const ALIGN: usize = 2 << 20;
    const PROT: i32 = libc::PROT_READ | libc::PROT_WRITE;
    const FLAGS: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

    fn new(len: usize) -> std::io::Result<HostRam> {
        let over = len + Self::ALIGN;
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing.
        let raw = unsafe { libc::mmap(std::ptr::null_mut(), over, Self::PROT, Self::FLAGS, -1, 0) };
        if raw == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(Self::ALIGN);
        // Give back the slack before and after the aligned range.
        // SAFETY: both ranges lie inside the mapping just made and nothing refers to them.
        unsafe {
            if aligned > start {
                libc::munmap(raw, aligned - start);
            }
            let tail = start + over - (aligned + len);
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
            // Advice only: a host without transparent huge pages keeps 4 KiB pages.
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        Ok(HostRam { ptr: aligned as *mut u8, len })
    }
}

impl Drop for HostRam {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the views of it (BootVm::mem) and KVM's slots are
        // gone by now (BootVm's field order).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

impl BootVm {
    /// Creates a VM with `mem_size` bytes of RAM and `cpus` vCPUs, the in-kernel irqchip and PIT.
    pub fn new(mem_size: u64, cpus: u8) -> Result<BootVm, VmError> {
        let kvm = Kvm::new().map_err(VmError::NoKvm)?;
        let vm = kvm.create_vm().map_err(|e| VmError::Ioctl("KVM_CREATE_VM", e))?;
        // Only VMX uses these pages (to emulate real mode); SVM and PVM refuse or ignore it, and
        // the kernel never enters real mode on the bootstrap CPU here, so a refusal is harmless.
        let _ = vm.set_tss_address(layout::KVM_TSS as usize);
        vm.create_irq_chip().map_err(|e| VmError::Ioctl("KVM_CREATE_IRQCHIP", e))?;
        // The dummy speaker makes port 0x61 (which Linux reads while calibrating) an in-kernel
        // device too.
        let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        vm.create_pit2(pit).map_err(|e| VmError::Ioctl("KVM_CREATE_PIT2", e))?;

        let memory_err = |source| VmError::Memory { size: mem_size, source };
        let mut ram = Vec::new();
        let mut regions = Vec::new();
        for (start, len) in layout::ram_ranges(mem_size) {
            let host = HostRam::new(len as usize).map_err(memory_err)?;
            // SAFETY: `host` is a live mapping of exactly this size with these protections and
            // flags; it outlives the view, because BootVm drops `mem` before `_ram`.
            let view = unsafe { MmapRegion::build_raw(host.ptr, host.len, HostRam::PROT, HostRam::FLAGS) }
                .map_err(|e| memory_err(std::io::Error::other(e)))?;
            ram.push(host);
            let region = GuestRegionMmap::new(view, GuestAddress(start))
                .ok_or_else(|| memory_err(std::io::Error::other("guest range overflows")))?;
            regions.push(region);
        }
        let mem = GuestMemoryMmap::from_regions(regions).map_err(|e| memory_err(std::io::Error::other(e)))?;
        for (slot, region) in mem.iter().enumerate() {
            let r = kvm_bindings::kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the host range is a mapping owned by `mem`, which this BootVm owns and
            // drops only after the VM and vCPU descriptors (field order above), so the slot
            // never outlives its memory. Slots are numbered by region and do not overlap.
            unsafe { vm.set_user_memory_region(r) }.map_err(|e| VmError::Ioctl("KVM_SET_USER_MEMORY_REGION", e))?;
        }

        let supported =
            kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| VmError::Ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
        let mut vcpus = Vec::with_capacity(cpus as usize);
        for id in 0..cpus {
            let mut vcpu = vm.create_vcpu(id as u64).map_err(|e| VmError::Ioctl("KVM_CREATE_VCPU", e))?;
            vcpu.set_cpuid2(&vcpu_cpuid(&supported, id, cpus)).map_err(|e| VmError::Ioctl("KVM_SET_CPUID2", e))?;
            set_lint(&vcpu)?;
            // Registers travel in kvm_run at every exit: the last RIP seen is free, which a
            // triple-fault report needs on AMD, where KVM resets the vCPU on shutdown.
            vcpu.set_sync_valid_reg(SyncReg::Register);
            vcpus.push(vcpu);
        }
        Ok(BootVm { vcpus, vm, _kvm: kvm, mem, _ram: ram })
    }

    /// Writes the GDT, TSS and identity page tables, and puts the bootstrap vCPU at the 64-bit
    /// entry `rip` with %rsi = the zero page.
    pub fn enter_long_mode(&mut self, rip: u64) -> Result<(), VmError> {
        let write = |what: &'static str, addr: u64, bytes: &[u8]| {
            self.mem.write_slice(bytes, GuestAddress(addr)).map_err(|_| VmError::Write { what, addr })
        };
        let gdt = arch::gdt(layout::TSS, 103);
        write("GDT", layout::GDT, &gdt.map(u64::to_le_bytes).concat())?;
        write("TSS", layout::TSS, &[0u8; 104])?;
        for (addr, page) in identity_tables() {
            write("page tables", addr, &page)?;
        }

        let vcpu = &self.vcpus[0];
        let mut s = vcpu.get_sregs().map_err(|e| VmError::Ioctl("KVM_GET_SREGS", e))?;
        let seg = |selector: u16, type_: u8, long: bool| trapbox_vm::vcpu::segment(selector, type_, 0, long);
        s.cs = seg(arch::KERNEL_CS, 11, true);
        let data = seg(arch::KERNEL_DS, 3, false);
        (s.ds, s.es, s.fs, s.gs, s.ss) = (data, data, data, data, data);
        s.tr = kvm_segment {
            base: layout::TSS,
            limit: 103,
            selector: arch::TSS_SEL,
            type_: 11,
            present: 1,
            ..Default::default()
        };
        s.ldt = kvm_segment { type_: 2, present: 1, unusable: 1, ..Default::default() };
        s.gdt.base = layout::GDT;
        s.gdt.limit = (gdt.len() * 8 - 1) as u16;
        // No IDT: the boot protocol enters with interrupts off, and the kernel loads its own.
        s.idt.base = 0;
        s.idt.limit = 0;
        s.cr0 = arch::CR0;
        s.cr3 = layout::PML4;
        s.cr4 = arch::CR4_BASE;
        s.efer = arch::EFER;
        vcpu.set_sregs(&s).map_err(|e| VmError::Ioctl("KVM_SET_SREGS", e))?;
        let r = kvm_bindings::kvm_regs {
            rip,
            rsi: layout::ZERO_PAGE,
            rsp: layout::BOOT_STACK,
            rbp: layout::BOOT_STACK,
            rflags: 0x2,
            ..Default::default()
        };
        vcpu.set_regs(&r).map_err(|e| VmError::Ioctl("KVM_SET_REGS", e))?;
        Ok(())
    }
}

/// The CPUID a vCPU gets: KVM's supported list with this vCPU's APIC ID, the processor count
/// and the hypervisor bit (Linux then trusts KVM's paravirtual clock instead of calibrating).
fn vcpu_cpuid(supported: &CpuId, id: u8, cpus: u8) -> CpuId {
    let mut c = supported.clone();
    for e in c.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | ((id as u32) << 24) | ((cpus as u32) << 16);
                e.ecx |= 1 << 31;
                if cpus > 1 {
                    e.edx |= 1 << 28; // HTT: the logical count above is valid
                }
            }
            0xb | 0x1f => e.edx = id as u32,
            _ => {}
        }
    }
    c
}

/// Local APIC LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as a PC's firmware leaves
/// them; KVM resets both masked.
fn set_lint(vcpu: &VcpuFd) -> Result<(), VmError> {
    let mut l = vcpu.get_lapic().map_err(|e| VmError::Ioctl("KVM_GET_LAPIC", e))?;
    let mut set = |off: usize, mode: u32| {
        let b: [u8; 4] = std::array::from_fn(|i| l.regs[off + i] as u8);
        let v = (u32::from_le_bytes(b) & !0x0001_0700) | (mode << 8);
        for (i, x) in v.to_le_bytes().into_iter().enumerate() {
            l.regs[off + i] = x as _;
        }
    };
    set(0x350, 0x7); // LVT LINT0: delivery mode ExtINT, unmasked
    set(0x360, 0x4); // LVT LINT1: NMI
    vcpu.set_lapic(&l).map_err(|e| VmError::Ioctl("KVM_SET_LAPIC", e))
}

/// Page tables identity-mapping the first 4 GiB with 2 MiB pages (what the boot protocol needs
/// mapped: the kernel's init_size, the zero page, the command line; the initrd too).
pub fn identity_tables() -> Vec<(u64, Vec<u8>)> {
    const P_RW: u64 = 0x3; // present, writable
    const PS: u64 = 0x80; // 2 MiB leaf
    let mut pml4 = vec![0u8; 4096];
    pml4[..8].copy_from_slice(&(layout::PDPT | P_RW).to_le_bytes());
    let mut pdpt = vec![0u8; 4096];
    let mut out = Vec::new();
    for g in 0..4u64 {
        let pd_addr = layout::PD + g * 4096;
        pdpt[g as usize * 8..g as usize * 8 + 8].copy_from_slice(&(pd_addr | P_RW).to_le_bytes());
        let mut pd = vec![0u8; 4096];
        for i in 0..512u64 {
            let phys = (g << 30) | (i << 21);
            pd[i as usize * 8..i as usize * 8 + 8].copy_from_slice(&(phys | P_RW | PS).to_le_bytes());
        }
        out.push((pd_addr, pd));
    }
    out.push((layout::PML4, pml4));
    out.push((layout::PDPT, pdpt));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tables: &[(u64, Vec<u8>)], table: u64, idx: u64) -> u64 {
        let page = &tables.iter().find(|(a, _)| *a == table).expect("table present").1;
        u64::from_le_bytes(page[idx as usize * 8..idx as usize * 8 + 8].try_into().unwrap())
    }

    #[test]
    fn identity_tables_translate_to_themselves() {
        let t = identity_tables();
        for va in [0u64, 0x10_0000, 0x7000, 0x3fff_ffff, 0xbfff_f000, 0xffff_ffff] {
            let pdpte = entry(&t, entry(&t, layout::PML4, 0) & !0xfff, (va >> 30) & 511);
            let pde = entry(&t, pdpte & !0xfff, (va >> 21) & 511);
            assert_eq!(pde & 0x83, 0x83, "present, writable, 2 MiB at {va:#x}");
            assert_eq!((pde & !0x1f_ffff & 0x000f_ffff_ffff_f000) | (va & 0x1f_ffff), va);
        }
    }

    #[test]
    fn vcpu_cpuid_names_the_apic_id() {
        let base = CpuId::from_entries(&[kvm_bindings::kvm_cpuid_entry2 {
            function: 1,
            ebx: 0x0000_0800,
            ..Default::default()
        }])
        .unwrap();
        let c = vcpu_cpuid(&base, 3, 4);
        let l1 = c.as_slice()[0];
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!(l1.ebx & 0xffff, 0x0800);
        assert_ne!(l1.ecx & (1 << 31), 0);
    }
}
