//! Loading a bzImage by the Linux x86 boot protocol, over rust-vmm's linux-loader: the
//! protected-mode kernel at 1 MiB (`BzImage::load`), the command line (`Cmdline`,
//! `load_cmdline`), the zero page with its e820 map (`boot_params`, `LinuxBootConfigurator`),
//! the initrd at the top of low RAM, and the MP table.
//!
//! [`plan`] decides every address and checks every limit before a VM exists, so a kernel that
//! cannot boot is refused with the reason (bad header, command line longer than cmdline_size,
//! initrd above initrd_addr_max, memory too small) instead of a VM that stops silently.

#![forbid(unsafe_code)]

use std::io::Cursor;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{load_cmdline, Cmdline, KernelLoader};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress};

use super::bzimage::{BootError, BzImage};
use super::vm::{BootVm, VmError};
use super::{layout, mptable};

/// e820 type of usable RAM.
const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
const E820_RESERVED: u32 = 2;
/// type_of_loader: "undefined" boot loader (boot.rst).
const LOADER_OTHER: u8 = 0xff;

/// Why a kernel, initrd or command line cannot be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The image itself (header checks).
    #[error(transparent)]
    Image(#[from] BootError),
    /// Guest memory cannot hold the kernel while it decompresses.
    #[error("guest memory of {have} MiB is too small: this kernel needs guest-physical memory up to {need:#x} ({} MiB) while it decompresses (init_size); use a larger --memory", need.div_ceil(1 << 20))]
    MemoryTooSmall {
        /// Bytes of low RAM needed.
        need: u64,
        /// MiB of RAM given.
        have: u64,
    },
    /// The initrd does not fit in guest memory after the kernel.
    #[error("initrd of {size} bytes is too large: {room} bytes of guest memory are free after the kernel (use a larger --memory)")]
    InitrdTooLarge {
        /// Its size.
        size: u64,
        /// Free bytes between the kernel and the top of low RAM.
        room: u64,
    },
    /// The command line is not one the kernel's parser takes.
    #[error("kernel command line {0:?} is not valid: {1} (printable ASCII only)")]
    Cmdline(String, linux_loader::cmdline::Error),
    /// linux-loader refused the image.
    #[error("loading the kernel failed: {0}")]
    Kernel(linux_loader::loader::Error),
    /// Writing the zero page or command line failed.
    #[error("writing the boot parameters failed: {0}")]
    Params(String),
    /// The VM failed.
    #[error(transparent)]
    Vm(#[from] VmError),
}

/// Every address and size of one boot, decided before the VM exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The setup header.
    pub header: BzImage,
    /// The final command line.
    pub cmdline: String,
    /// RAM in bytes.
    pub mem_size: u64,
    /// Where the kernel is loaded (its 64-bit entry is 0x200 further).
    pub kernel_addr: u64,
    /// End of the memory the kernel may use while decompressing.
    pub kernel_end: u64,
    /// Initrd address and size.
    pub initrd: Option<(u64, u64)>,
    /// vCPUs.
    pub cpus: u8,
}

impl Plan {
    /// The 64-bit entry point.
    pub fn entry(&self) -> u64 {
        self.kernel_addr + 0x200
    }
}

/// Checks `kernel` (the whole file), an initrd of `initrd_len` bytes and `cmdline` against each
/// other and `mem_size`, and places them.
pub fn plan(kernel: &[u8], initrd_len: Option<u64>, cmdline: &str, mem_size: u64, cpus: u8) -> Result<Plan, LoadError> {
    let header = BzImage::parse(kernel, kernel.len() as u64)?;
    header.check_bootable()?;
    header.check_cmdline(cmdline)?;
    if cmdline.len() as u64 >= layout::CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong { len: cmdline.len(), max: layout::CMDLINE_MAX as u32 - 1 }.into());
    }
    // Cmdline::try_from does not check the characters itself; the kernel's parser wants
    // printable ASCII.
    if !cmdline.chars().all(|c| matches!(c, ' '..='~')) {
        return Err(LoadError::Cmdline(cmdline.to_string(), linux_loader::cmdline::Error::InvalidAscii));
    }
    Cmdline::try_from(cmdline, cmdline.len() + 1).map_err(|e| LoadError::Cmdline(cmdline.to_string(), e))?;

    // A relocatable kernel loaded below its preferred address decompresses there instead, so
    // it needs init_size bytes from the higher of the two.
    let image_end = layout::KERNEL + (kernel.len() as u64).saturating_sub(header.kernel_offset());
    let base = if header.relocatable { header.pref_address.max(layout::KERNEL) } else { layout::KERNEL };
    let kernel_end = image_end.max(base + header.init_size as u64).next_multiple_of(4096);
    let low_end = mem_size.min(layout::MMIO_GAP_START);
    if kernel_end > low_end {
        return Err(LoadError::MemoryTooSmall { need: kernel_end, have: mem_size >> 20 });
    }
    let initrd = match initrd_len {
        None | Some(0) => None,
        Some(size) => {
            // The top of low RAM (where boot loaders put it), but not past what the kernel
            // can reach: initrd_addr_max is the last byte's highest allowed address.
            let limit = if header.xloadflags & super::bzimage::XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
                low_end
            } else {
                low_end.min(header.initrd_addr_max as u64 + 1)
            };
            let room = low_end - kernel_end;
            if size > room {
                return Err(LoadError::InitrdTooLarge { size, room });
            }
            let addr = limit.saturating_sub(size) & !0xfff;
            if addr < kernel_end {
                // It fits in RAM, only not below initrd_addr_max: say so with where it would go.
                header.check_initrd(kernel_end, size)?;
            }
            header.check_initrd(addr, size)?;
            Some((addr, size))
        }
    };
    Ok(Plan { header, cmdline: cmdline.to_string(), mem_size, kernel_addr: layout::KERNEL, kernel_end, initrd, cpus })
}

/// Writes the kernel, initrd, command line, zero page and MP table into `vm`'s memory and
/// points the bootstrap vCPU at the 64-bit entry.
pub fn load(vm: &mut BootVm, plan: &Plan, kernel: &[u8], initrd: Option<&[u8]>) -> Result<(), LoadError> {
    let res = linux_loader::loader::bzimage::BzImage::load(
        &vm.mem,
        Some(GuestAddress(plan.kernel_addr)),
        &mut Cursor::new(kernel),
        Some(GuestAddress(layout::KERNEL)),
    )
    .map_err(LoadError::Kernel)?;
    let hdr = res.setup_header.ok_or_else(|| LoadError::Params("no setup header from the loader".into()))?;
    let mut params = boot_params { hdr, ..Default::default() };
    params.hdr.type_of_loader = LOADER_OTHER;
    params.hdr.code32_start = plan.kernel_addr as u32;

    let cmdline = Cmdline::try_from(&plan.cmdline, plan.cmdline.len() + 1)
        .map_err(|e| LoadError::Cmdline(plan.cmdline.clone(), e))?;
    load_cmdline(&vm.mem, GuestAddress(layout::CMDLINE), &cmdline).map_err(|e| LoadError::Params(e.to_string()))?;
    params.hdr.cmd_line_ptr = layout::CMDLINE as u32;
    params.hdr.cmdline_size = plan.cmdline.len() as u32 + 1;

    if let (Some((addr, size)), Some(bytes)) = (plan.initrd, initrd) {
        vm.mem
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|_| LoadError::Params(format!("initrd does not fit at {addr:#x}")))?;
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    let e820 = e820_map(plan.mem_size);
    for (i, (addr, size, kind)) in e820.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry { addr: *addr, size: *size, r#type: *kind };
    }
    params.e820_entries = e820.len() as u8;
    LinuxBootConfigurator::write_bootparams(&BootParams::new(&params, GuestAddress(layout::ZERO_PAGE)), &vm.mem)
        .map_err(|e| LoadError::Params(e.to_string()))?;

    vm.mem
        .write_slice(&mptable::build(plan.cpus), GuestAddress(layout::EBDA))
        .map_err(|_| VmError::Write { what: "MP table", addr: layout::EBDA })?;
    vm.enter_long_mode(plan.entry())?;
    Ok(())
}

/// The e820 map for `mem_size` bytes: base memory below the MP table, the MP table and BIOS
/// area reserved, RAM from 1 MiB to the hole, and RAM above 4 GiB.
pub fn e820_map(mem_size: u64) -> Vec<(u64, u64, u32)> {
    let mut m = vec![(0, layout::EBDA, E820_RAM), (layout::EBDA, 0x10_0000 - layout::EBDA, E820_RESERVED)];
    for (start, len) in layout::ram_ranges(mem_size) {
        let end = start + len;
        let start = start.max(layout::KERNEL);
        if end > start {
            m.push((start, end - start, E820_RAM));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::super::bzimage::{synthetic, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64};
    use super::*;

    #[test]
    fn e820_map_covers_ram_around_the_hole() {
        assert_eq!(
            e820_map(256 << 20),
            vec![(0, 0x9fc00, 1), (0x9fc00, 0x60400, 2), (0x10_0000, (256 << 20) - 0x10_0000, 1)]
        );
        let big = e820_map(5 << 30);
        assert_eq!(big[2], (0x10_0000, (3 << 30) - 0x10_0000, 1));
        assert_eq!(big[3], (4 << 30, 2 << 30, 1));
    }

    #[test]
    fn plan_places_initrd_at_the_top_below_initrd_addr_max() {
        let k = synthetic(0x020f, XLF_KERNEL_64, 4096);
        let p = plan(&k, Some(10_000), "console=ttyS0", 256 << 20, 1).unwrap();
        let (addr, size) = p.initrd.unwrap();
        assert_eq!(addr % 4096, 0);
        assert!(addr + size <= 256 << 20 && addr >= p.kernel_end);
        assert_eq!(p.entry(), 0x10_0200);
        // Relocatable with pref_address 16 MiB and init_size 4 MiB.
        assert_eq!(p.kernel_end, 0x140_0000);
    }

    #[test]
    fn plan_refuses_what_does_not_fit() {
        let k = synthetic(0x020f, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G, 4096);
        assert!(matches!(plan(&k, None, "", 16 << 20, 1), Err(LoadError::MemoryTooSmall { .. })));
        assert!(matches!(plan(&k, Some(300 << 20), "", 256 << 20, 1), Err(LoadError::InitrdTooLarge { .. })));
        let mut low = k.clone();
        low[0x22c..0x230].copy_from_slice(&0x0140_0fffu32.to_le_bytes());
        low[0x236] = XLF_KERNEL_64 as u8;
        let r = plan(&low, Some(1 << 20), "", 256 << 20, 1);
        assert!(matches!(r, Err(LoadError::Image(BootError::InitrdTooHigh { .. }))), "{r:?}");
        assert!(matches!(
            plan(&k, None, &"x".repeat(3000), 256 << 20, 1),
            Err(LoadError::Image(BootError::CmdlineTooLong { len: 3000, max: 2048 }))
        ));
        assert!(matches!(plan(&k, None, "caf\u{e9}", 256 << 20, 1), Err(LoadError::Cmdline(..))));
    }
}
