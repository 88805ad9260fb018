//! The Linux x86 boot protocol's setup header (Documentation/arch/x86/boot.rst), read from a
//! bzImage file, and the checks that say precisely why an image cannot be booted through the
//! 64-bit entry.

#![forbid(unsafe_code)]

use thiserror::Error;

use trapbox_abi::le::{u16_at, u32_at, u64_at};

/// loadflags bit 0: the protected-mode kernel is loaded at 0x100000 (a bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// xloadflags bit 0: the kernel has the legacy 64-bit entry point at 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// xloadflags bit 1: kernel, boot_params, cmdline and ramdisk may be above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// Oldest protocol with xloadflags, so with a declared 64-bit entry.
pub const MIN_PROTOCOL_64BIT: u16 = 0x020c;

/// Why an image cannot be booted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BootError {
    /// No 0xAA55 boot-sector signature at 0x1FE.
    #[error("not a Linux kernel image: no boot sector signature 0xAA55 at offset 0x1fe")]
    NoBootSector,
    /// No "HdrS" setup-header magic at 0x202.
    #[error("not a Linux kernel image: no \"HdrS\" setup header magic at offset 0x202")]
    NoHeader,
    /// The file ends before the part of the header its version requires.
    #[error("image truncated: {0} bytes is too short for its setup header")]
    HeaderTruncated(usize),
    /// The protocol predates the 64-bit entry.
    #[error("boot protocol {}.{:02} is too old: the 64-bit entry needs {}.{:02} or newer", .0 >> 8, .0 & 0xff, MIN_PROTOCOL_64BIT >> 8, MIN_PROTOCOL_64BIT & 0xff)]
    ProtocolTooOld(u16),
    /// loadflags says the kernel is not a bzImage (zImage, loaded low).
    #[error("not a bzImage: loadflags bit 0 (LOADED_HIGH) is clear, this is an old zImage")]
    NotLoadedHigh,
    /// No 64-bit entry point.
    #[error("the kernel has no 64-bit entry point (xloadflags bit 0, XLF_KERNEL_64, is clear): it was built without CONFIG_X86_64")]
    No64BitEntry,
    /// The file is shorter than the setup and protected-mode code the header declares.
    #[error("image truncated: the header declares {declared} bytes (setup + kernel), the file has {actual}")]
    ImageTruncated {
        /// Bytes declared.
        declared: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The command line exceeds cmdline_size.
    #[error("kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Length given.
        len: usize,
        /// cmdline_size.
        max: u32,
    },
    /// The initrd would end above initrd_addr_max.
    #[error("initrd of {size} bytes at {addr:#x} ends above this kernel's initrd_addr_max {max:#x}")]
    InitrdTooHigh {
        /// Its size.
        size: u64,
        /// Where it would be loaded.
        addr: u64,
        /// initrd_addr_max.
        max: u64,
    },
}

/// The setup header fields trapbox uses, with the file length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BzImage {
    /// Setup sectors (512 bytes each) after the boot sector.
    pub setup_sects: u8,
    /// Protocol version (0x020f is 2.15).
    pub version: u16,
    /// The kernel's version string, if the header points at one.
    pub kernel_version: Option<String>,
    /// loadflags.
    pub loadflags: u8,
    /// Size of the protected-mode code in 16-byte paragraphs.
    pub syssize: u32,
    /// Highest address the initrd may end at (protocol 2.03+; 0x37ffffff before).
    pub initrd_addr_max: u32,
    /// Physical alignment required for a relocatable kernel (2.05+).
    pub kernel_alignment: u32,
    /// Whether the kernel is relocatable (2.05+).
    pub relocatable: bool,
    /// xloadflags (2.12+).
    pub xloadflags: u16,
    /// Longest command line, without the NUL (2.06+; 255 before).
    pub cmdline_size: u32,
    /// Preferred load address (2.10+).
    pub pref_address: u64,
    /// Memory the kernel needs from its load address while it decompresses (2.10+).
    pub init_size: u32,
    /// Length of the file.
    pub file_len: u64,
}

impl BzImage {
    /// Reads the setup header of `file` (the whole image, or at least its first pages plus
    /// `file_len` for the length checks).
    pub fn parse(file: &[u8], file_len: u64) -> Result<BzImage, BootError> {
        if u16_at(file, 0x1fe) != Some(0xaa55) {
            return Err(BootError::NoBootSector);
        }
        if file.get(0x202..0x206) != Some(b"HdrS") {
            return Err(BootError::NoHeader);
        }
        let short = || BootError::HeaderTruncated(file.len());
        let version = u16_at(file, 0x206).ok_or_else(short)?;
        // The header grows with the protocol: require the fields this version has.
        let needed = match version {
            v if v >= 0x020a => 0x264,
            v if v >= 0x0206 => 0x23c,
            _ => 0x230,
        };
        if file.len() < needed {
            return Err(short());
        }
        let get32 = |o: usize| u32_at(file, o).expect("length checked above");
        let setup_sects = match file[0x1f1] {
            0 => 4,
            n => n,
        };
        let kv_ptr = u16_at(file, 0x20e).unwrap_or(0) as usize;
        let kernel_version = (kv_ptr != 0)
            .then(|| {
                file.get(kv_ptr + 0x200..)
                    .map(|s| s.iter().take(256).take_while(|c| **c != 0).copied().collect::<Vec<u8>>())
            })
            .flatten()
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(&s).into_owned());
        Ok(BzImage {
            setup_sects,
            version,
            kernel_version,
            loadflags: file[0x211],
            syssize: get32(0x1f4),
            initrd_addr_max: if version >= 0x0203 { get32(0x22c) } else { 0x37ff_ffff },
            kernel_alignment: if version >= 0x0205 { get32(0x230) } else { 0 },
            relocatable: version >= 0x0205 && file.get(0x234).is_some_and(|b| *b != 0),
            xloadflags: if version >= 0x020c { u16_at(file, 0x236).unwrap_or(0) } else { 0 },
            cmdline_size: if version >= 0x0206 { get32(0x238) } else { 255 },
            pref_address: if version >= 0x020a { u64_at(file, 0x258).unwrap_or(0) } else { 0x10_0000 },
            init_size: if version >= 0x020a { get32(0x260) } else { 0 },
            file_len,
        })
    }

    /// Offset in the file where the protected-mode kernel starts.
    pub fn kernel_offset(&self) -> u64 {
        (self.setup_sects as u64 + 1) * 512
    }

    /// Checks that the image can be booted through the 64-bit entry.
    pub fn check_bootable(&self) -> Result<(), BootError> {
        if self.version < MIN_PROTOCOL_64BIT {
            return Err(BootError::ProtocolTooOld(self.version));
        }
        if self.loadflags & LOADED_HIGH == 0 {
            return Err(BootError::NotLoadedHigh);
        }
        if self.xloadflags & XLF_KERNEL_64 == 0 {
            return Err(BootError::No64BitEntry);
        }
        let declared = self.kernel_offset() + self.syssize as u64 * 16;
        if declared > self.file_len {
            return Err(BootError::ImageTruncated { declared, actual: self.file_len });
        }
        Ok(())
    }

    /// Checks a command line (without its NUL) against cmdline_size.
    pub fn check_cmdline(&self, cmdline: &str) -> Result<(), BootError> {
        if cmdline.len() > self.cmdline_size as usize {
            return Err(BootError::CmdlineTooLong { len: cmdline.len(), max: self.cmdline_size });
        }
        Ok(())
    }

    /// Checks that an initrd of `size` bytes loaded at `addr` ends below initrd_addr_max.
    pub fn check_initrd(&self, addr: u64, size: u64) -> Result<(), BootError> {
        let max =
            if self.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0 { u64::MAX } else { self.initrd_addr_max as u64 };
        if addr.saturating_add(size).saturating_sub(1) > max {
            return Err(BootError::InitrdTooHigh { size, addr, max });
        }
        Ok(())
    }

    /// The header in plain words, one `name: value` per line (for `trapbox inspect`).
    pub fn describe(&self) -> Vec<(String, String)> {
        let flag = |b: bool| if b { "yes" } else { "no" };
        let mut lf = Vec::new();
        for (bit, name) in [(0, "LOADED_HIGH (bzImage)"), (5, "QUIET_FLAG"), (6, "KEEP_SEGMENTS"), (7, "CAN_USE_HEAP")]
        {
            if self.loadflags & (1 << bit) != 0 {
                lf.push(name);
            }
        }
        let mut xl = Vec::new();
        for (bit, name) in [
            (0, "XLF_KERNEL_64 (64-bit entry)"),
            (1, "XLF_CAN_BE_LOADED_ABOVE_4G"),
            (2, "XLF_EFI_HANDOVER_32"),
            (3, "XLF_EFI_HANDOVER_64"),
            (4, "XLF_EFI_KEXEC"),
            (5, "XLF_5LEVEL"),
            (6, "XLF_5LEVEL_ENABLED"),
            (7, "XLF_MEM_ENCRYPTION"),
        ] {
            if self.xloadflags & (1 << bit) != 0 {
                xl.push(name);
            }
        }
        let or_none = |v: Vec<&str>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        vec![
            ("boot protocol".into(), format!("{}.{:02}", self.version >> 8, self.version & 0xff)),
            ("kernel version".into(), self.kernel_version.clone().unwrap_or_else(|| "(not given)".into())),
            ("loadflags".into(), format!("{:#04x}: {}", self.loadflags, or_none(lf))),
            ("xloadflags".into(), format!("{:#06x}: {}", self.xloadflags, or_none(xl))),
            ("relocatable".into(), format!("{} (alignment {:#x})", flag(self.relocatable), self.kernel_alignment)),
            ("preferred load address".into(), format!("{:#x}", self.pref_address)),
            ("init_size".into(), format!("{:#x} ({} KiB)", self.init_size, self.init_size / 1024)),
            ("cmdline_size".into(), self.cmdline_size.to_string()),
            ("initrd_addr_max".into(), format!("{:#x}", self.initrd_addr_max)),
            (
                "setup".into(),
                format!(
                    "{} sectors; kernel at file offset {:#x}, {} bytes",
                    self.setup_sects,
                    self.kernel_offset(),
                    self.syssize as u64 * 16
                ),
            ),
        ]
    }
}

/// Builds a minimal image with a valid setup header, for tests of this module and of callers.
pub fn synthetic(version: u16, xloadflags: u16, payload: usize) -> Vec<u8> {
    let setup_sects = 4u8;
    let mut f = vec![0u8; (setup_sects as usize + 1) * 512 + payload];
    f[0x1f1] = setup_sects;
    f[0x1f4..0x1f8].copy_from_slice(&(payload.div_ceil(16) as u32).to_le_bytes());
    f[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    // The version string sits in the setup area; the header points at it minus 0x200.
    let kv = b"6.1.0-trapbox-test (synthetic)\0";
    f[0x300..0x300 + kv.len()].copy_from_slice(kv);
    f[0x20e..0x210].copy_from_slice(&(0x100u16).to_le_bytes());
    f[0x211] = LOADED_HIGH | 0x80;
    f[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    f[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    f[0x234] = 1;
    f[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
    f[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes());
    f[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    f[0x260..0x264].copy_from_slice(&0x40_0000u32.to_le_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> Vec<u8> {
        synthetic(0x020f, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G, 4096)
    }

    #[test]
    fn parse_reads_the_fields() {
        let f = img();
        let b = BzImage::parse(&f, f.len() as u64).unwrap();
        assert_eq!(b.version, 0x020f);
        assert_eq!(b.kernel_version.as_deref(), Some("6.1.0-trapbox-test (synthetic)"));
        assert_eq!((b.cmdline_size, b.pref_address, b.init_size), (2048, 0x100_0000, 0x40_0000));
        assert!(b.relocatable);
        assert_eq!(b.kernel_offset(), 5 * 512);
        assert_eq!(b.check_bootable(), Ok(()));
        let d = b.describe();
        assert!(d.iter().any(|(k, v)| k == "boot protocol" && v == "2.15"));
        assert!(d.iter().any(|(k, v)| k == "xloadflags" && v.contains("XLF_KERNEL_64")));
    }

    #[test]
    fn check_bootable_names_each_problem() {
        let mut f = img();
        f[0x1fe] = 0;
        assert_eq!(BzImage::parse(&f, f.len() as u64), Err(BootError::NoBootSector));
        let mut f = img();
        f[0x202] = b'X';
        assert_eq!(BzImage::parse(&f, f.len() as u64), Err(BootError::NoHeader));
        let old = synthetic(0x020a, 0, 4096);
        assert_eq!(
            BzImage::parse(&old, old.len() as u64).unwrap().check_bootable(),
            Err(BootError::ProtocolTooOld(0x020a))
        );
        let no64 = synthetic(0x020f, 0, 4096);
        assert_eq!(BzImage::parse(&no64, no64.len() as u64).unwrap().check_bootable(), Err(BootError::No64BitEntry));
        let mut z = img();
        z[0x211] = 0;
        assert_eq!(BzImage::parse(&z, z.len() as u64).unwrap().check_bootable(), Err(BootError::NotLoadedHigh));
        let f = img();
        let cut = &f[..f.len() - 100];
        assert!(matches!(
            BzImage::parse(cut, cut.len() as u64).unwrap().check_bootable(),
            Err(BootError::ImageTruncated { .. })
        ));
        assert_eq!(BzImage::parse(&f[..0x220], 0x220), Err(BootError::HeaderTruncated(0x220)));
    }

    #[test]
    fn cmdline_and_initrd_limits() {
        let f = synthetic(0x020f, XLF_KERNEL_64, 4096);
        let b = BzImage::parse(&f, f.len() as u64).unwrap();
        assert_eq!(b.check_cmdline(&"x".repeat(2048)), Ok(()));
        assert_eq!(b.check_cmdline(&"x".repeat(2049)), Err(BootError::CmdlineTooLong { len: 2049, max: 2048 }));
        assert_eq!(b.check_initrd(0x100_0000, 0x1000), Ok(()));
        assert!(matches!(b.check_initrd(0x7fff_f000, 0x2000), Err(BootError::InitrdTooHigh { .. })));
        let above = synthetic(0x020f, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G, 4096);
        let b = BzImage::parse(&above, above.len() as u64).unwrap();
        assert_eq!(b.check_initrd(0x1_0000_0000, 0x1000), Ok(()));
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        let base = img();
        for n in [0, 0x1ff, 0x206, 0x230, 0x263, 0x264] {
            let _ = BzImage::parse(&base[..n.min(base.len())], n as u64);
        }
        for i in 0x1f0..0x270 {
            let mut f = base.clone();
            f[i] ^= 0xff;
            let _ = BzImage::parse(&f, f.len() as u64).map(|b| b.check_bootable());
        }
    }
}
