//! ELF headers, parsed defensively: every offset and size is checked before use, so a
//! truncated or hostile file gives a one-line [`ElfError`], never a panic. Also recognises
//! the other formats a user may hand trapbox (Mach-O, bzImage, scripts) to say what they are.

use thiserror::Error;

use trapbox_abi::le::{u16_at, u32_at, u64_at};

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_INTERP`.
pub const PT_INTERP: u32 = 3;
/// `PT_PHDR`.
pub const PT_PHDR: u32 = 6;
/// `PT_GNU_STACK`.
pub const PT_GNU_STACK: u32 = 0x6474_e551;

const EM_X86_64: u16 = 62;
const PHDR_SIZE: usize = 56;
const MAX_PHNUM: usize = 512;

/// Why a file cannot be run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file, with what it seems to be instead.
    #[error("not an ELF executable ({0})")]
    NotElf(&'static str),
    /// A Mach-O file.
    #[error("Mach-O executable: trapbox runs Linux ELF programs only")]
    MachO,
    /// A Linux kernel image.
    #[error("Linux kernel image (bzImage): run it with `trapbox boot`")]
    BzImage,
    /// A 32-bit ELF.
    #[error("32-bit ELF: trapbox runs x86-64 programs only")]
    Elf32,
    /// Big-endian ELF.
    #[error("big-endian ELF: trapbox runs x86-64 programs only")]
    BigEndian,
    /// Another architecture.
    #[error("ELF for {0}: trapbox runs x86-64 programs only")]
    Machine(&'static str),
    /// Not an executable or shared object.
    #[error("ELF type {0} is not an executable (need ET_EXEC or ET_DYN)")]
    Type(&'static str),
    /// Truncated or inconsistent headers.
    #[error("corrupt ELF: {0}")]
    Corrupt(&'static str),
}

/// One program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Phdr {
    /// PROT_* bits for the segment's PF_* flags.
    pub fn prot(&self) -> i32 {
        let mut p = 0;
        if self.flags & 4 != 0 {
            p |= libc::PROT_READ;
        }
        if self.flags & 2 != 0 {
            p |= libc::PROT_WRITE;
        }
        if self.flags & 1 != 0 {
            p |= libc::PROT_EXEC;
        }
        p
    }
}

/// The parts of an ELF file the loader needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// ET_DYN (position independent) rather than ET_EXEC.
    pub pie: bool,
    /// Entry point (unrelocated).
    pub entry: u64,
    /// Program header table offset in the file.
    pub phoff: u64,
    /// Program headers.
    pub phdrs: Vec<Phdr>,
    /// PT_INTERP path, if any.
    pub interp: Option<String>,
}

impl ElfInfo {
    /// The PT_LOAD segments.
    pub fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.phdrs.iter().filter(|p| p.p_type == PT_LOAD)
    }

    /// Lowest page and highest page end of the PT_LOAD segments (unrelocated).
    pub fn span(&self) -> (u64, u64) {
        let lo = self.loads().map(|p| p.vaddr & !0xfff).min().unwrap_or(0);
        let hi = self.loads().map(|p| (p.vaddr + p.memsz + 0xfff) & !0xfff).max().unwrap_or(0);
        (lo, hi)
    }

    /// Largest PT_LOAD alignment (at least a page).
    pub fn max_align(&self) -> u64 {
        self.loads().map(|p| p.align).filter(|a| a.is_power_of_two()).max().unwrap_or(0x1000).clamp(0x1000, 1 << 30)
    }

    /// Kind, for `inspect`: static, static-pie or dynamic.
    pub fn linkage(&self) -> &'static str {
        match (&self.interp, self.pie) {
            (Some(_), _) => "dynamic",
            (None, true) => "static-pie",
            (None, false) => "static",
        }
    }
}

fn machine_name(m: u16) -> &'static str {
    match m {
        3 => "i386",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "s390",
        40 => "ARM (32-bit)",
        183 => "ARM64 (aarch64)",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "another architecture",
    }
}

/// Says what a file that is not ELF looks like, from its first bytes.
pub fn identify_other(head: &[u8]) -> ElfError {
    let magic = u32_at(head, 0).unwrap_or(0);
    if matches!(magic, 0xfeed_face | 0xfeed_facf | 0xcefa_edfe | 0xcffa_edfe | 0xbeba_feca) {
        return ElfError::MachO;
    }
    if u16_at(head, 0x1fe) == Some(0xaa55) && head.get(0x202..0x206) == Some(b"HdrS") {
        return ElfError::BzImage;
    }
    if head.starts_with(b"#!") {
        return ElfError::NotElf("a script");
    }
    if head.is_empty() {
        return ElfError::NotElf("empty file");
    }
    if head.iter().take(512).all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        return ElfError::NotElf("a text file");
    }
    ElfError::NotElf("unknown format")
}

/// How many bytes from the file's start [`parse_head`] reads, as far as `first` (the file's
/// first bytes) tells: the ELF header, the program header table and the PT_INTERP path.
/// Loading reads that much and no more (a 7 MB python3 needs under 4 KiB). Anything the
/// headers do not describe sanely gives what `first` has: [`parse_head`] then says what is
/// wrong.
pub fn header_span(first: &[u8]) -> usize {
    if !first.starts_with(b"\x7fELF") {
        return first.len();
    }
    let (Some(phoff), Some(phnum)) = (u64_at(first, 32), u16_at(first, 56)) else { return first.len() };
    let table_end = (phoff as usize).saturating_add((phnum as usize).min(MAX_PHNUM) * PHDR_SIZE);
    let mut span = table_end.max(64);
    for i in 0..(phnum as usize).min(MAX_PHNUM) {
        let o = (phoff as usize).saturating_add(i * PHDR_SIZE);
        if u32_at(first, o) == Some(PT_INTERP) {
            let (Some(off), Some(len)) = (u64_at(first, o + 8), u64_at(first, o + 32)) else { break };
            span = span.max((off.saturating_add(len.min(4096))).min(usize::MAX as u64) as usize);
        }
    }
    span
}

/// Parses and validates the headers of an x86-64 ELF executable held in `file`.
pub fn parse(file: &[u8]) -> Result<ElfInfo, ElfError> {
    parse_head(file, file.len() as u64)
}

/// Like [`parse`], from the first bytes of a file of `file_len` bytes: headers must lie in
/// `file`, segments within `file_len`.
pub fn parse_head(file: &[u8], file_len: u64) -> Result<ElfInfo, ElfError> {
    if file.get(0..4) != Some(b"\x7fELF") {
        return Err(identify_other(file));
    }
    let ident = file.get(..16).ok_or(ElfError::Corrupt("file ends inside the ELF identification"))?;
    match ident[4] {
        1 => return Err(ElfError::Elf32),
        2 => {}
        _ => return Err(ElfError::Corrupt("bad ELF class")),
    }
    if ident[5] == 2 {
        return Err(ElfError::BigEndian);
    }
    if file.len() < 64 {
        return Err(ElfError::Corrupt("file ends inside the ELF header"));
    }
    let e_type = u16_at(file, 16).expect("header length checked");
    let machine = u16_at(file, 18).expect("header length checked");
    if machine != EM_X86_64 {
        return Err(ElfError::Machine(machine_name(machine)));
    }
    let pie = match e_type {
        2 => false,
        3 => true,
        1 => return Err(ElfError::Type("ET_REL (an object file)")),
        4 => return Err(ElfError::Type("ET_CORE (a core dump)")),
        _ => return Err(ElfError::Type("unknown")),
    };
    let entry = u64_at(file, 24).expect("header length checked");
    let phoff = u64_at(file, 32).expect("header length checked");
    let phentsize = u16_at(file, 54).expect("header length checked") as usize;
    let phnum = u16_at(file, 56).expect("header length checked") as usize;
    if phentsize != PHDR_SIZE {
        return Err(ElfError::Corrupt("program header size is not 56"));
    }
    if phnum == 0 || phnum > MAX_PHNUM {
        return Err(ElfError::Corrupt("program header count out of range"));
    }
    let table_end = phoff
        .checked_add((phnum * PHDR_SIZE) as u64)
        .filter(|e| *e <= file.len() as u64)
        .ok_or(ElfError::Corrupt("program headers lie past the end of the file"))?;
    let _ = table_end;
    let mut phdrs = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let o = phoff as usize + i * PHDR_SIZE;
        let p = Phdr {
            p_type: u32_at(file, o).expect("table bounds checked"),
            flags: u32_at(file, o + 4).expect("table bounds checked"),
            offset: u64_at(file, o + 8).expect("table bounds checked"),
            vaddr: u64_at(file, o + 16).expect("table bounds checked"),
            filesz: u64_at(file, o + 32).expect("table bounds checked"),
            memsz: u64_at(file, o + 40).expect("table bounds checked"),
            align: u64_at(file, o + 48).expect("table bounds checked"),
        };
        phdrs.push(p);
    }
    let mut interp = None;
    let mut last_end = 0u64;
    let mut loads = 0;
    for p in &phdrs {
        match p.p_type {
            PT_LOAD => {
                loads += 1;
                if p.filesz > p.memsz {
                    return Err(ElfError::Corrupt("segment file size exceeds its memory size"));
                }
                if p.offset.checked_add(p.filesz).is_none_or(|e| e > file_len) {
                    return Err(ElfError::Corrupt("segment lies past the end of the file (truncated?)"));
                }
                if p.vaddr.checked_add(p.memsz).is_none_or(|e| e > super::mem::USER_END) {
                    return Err(ElfError::Corrupt("segment lies outside the user address space"));
                }
                if p.vaddr % 0x1000 != p.offset % 0x1000 {
                    return Err(ElfError::Corrupt("segment address and file offset disagree modulo the page size"));
                }
                if p.vaddr < last_end & !0xfff {
                    return Err(ElfError::Corrupt("PT_LOAD segments are not in ascending order"));
                }
                last_end = p.vaddr + p.memsz;
            }
            PT_INTERP => {
                let bytes = p
                    .offset
                    .checked_add(p.filesz)
                    .filter(|e| *e <= file.len() as u64 && p.filesz > 1 && p.filesz < 4096)
                    .map(|e| &file[p.offset as usize..e as usize])
                    .ok_or(ElfError::Corrupt("bad PT_INTERP"))?;
                let path = bytes.split(|b| *b == 0).next().unwrap_or_default();
                if path.is_empty() || bytes.last() != Some(&0) {
                    return Err(ElfError::Corrupt("PT_INTERP is not a NUL-terminated path"));
                }
                interp = Some(String::from_utf8_lossy(path).into_owned());
            }
            _ => {}
        }
    }
    if loads == 0 {
        return Err(ElfError::Corrupt("no PT_LOAD segment"));
    }
    let info = ElfInfo { pie, entry, phoff, phdrs, interp };
    let (lo, hi) = info.span();
    if !pie && lo < 0x1_0000 {
        return Err(ElfError::Corrupt("fixed-address segment below 64 KiB (mmap_min_addr)"));
    }
    if hi - lo > 1 << 40 {
        return Err(ElfError::Corrupt("segments span more than 1 TiB"));
    }
    Ok(info)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid static ET_EXEC with one PT_LOAD.
    pub(crate) fn tiny_elf() -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56 + 16];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&62u16.to_le_bytes());
        f[24..32].copy_from_slice(&0x40_0078u64.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let p = 64;
        f[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[p + 4..p + 8].copy_from_slice(&5u32.to_le_bytes());
        f[p + 16..p + 24].copy_from_slice(&0x40_0000u64.to_le_bytes());
        let n = f.len() as u64;
        f[p + 32..p + 40].copy_from_slice(&n.to_le_bytes());
        f[p + 40..p + 48].copy_from_slice(&n.to_le_bytes());
        f[p + 48..p + 56].copy_from_slice(&0x1000u64.to_le_bytes());
        f
    }

    #[test]
    fn parse_tiny_static() {
        let info = parse(&tiny_elf()).unwrap();
        assert!(!info.pie);
        assert_eq!(info.linkage(), "static");
        assert_eq!(info.span(), (0x40_0000, 0x40_1000));
    }

    #[test]
    fn parse_rejects_other_formats() {
        assert_eq!(parse(b"#!/bin/sh\necho hi\n"), Err(ElfError::NotElf("a script")));
        assert_eq!(parse(&0xfeed_facfu32.to_le_bytes()), Err(ElfError::MachO));
        assert_eq!(parse(b""), Err(ElfError::NotElf("empty file")));
        let mut bz = vec![0u8; 0x300];
        bz[0x1fe] = 0x55;
        bz[0x1ff] = 0xaa;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(parse(&bz), Err(ElfError::BzImage));
    }

    #[test]
    fn parse_rejects_arm64_and_32bit() {
        let mut f = tiny_elf();
        f[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(parse(&f), Err(ElfError::Machine("ARM64 (aarch64)")));
        let mut g = tiny_elf();
        g[4] = 1;
        assert_eq!(parse(&g), Err(ElfError::Elf32));
    }

    #[test]
    fn parse_rejects_truncation_everywhere() {
        let f = tiny_elf();
        for n in 0..f.len() {
            assert!(parse(&f[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn parse_rejects_hostile_headers() {
        let mut f = tiny_elf();
        f[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // phoff overflow
        assert!(matches!(parse(&f), Err(ElfError::Corrupt(_))));
        let mut g = tiny_elf();
        g[64 + 40..64 + 48].copy_from_slice(&u64::MAX.to_le_bytes()); // memsz overflow
        assert!(matches!(parse(&g), Err(ElfError::Corrupt(_))));
        let mut h = tiny_elf();
        h[56..58].copy_from_slice(&0xffffu16.to_le_bytes()); // phnum
        assert!(matches!(parse(&h), Err(ElfError::Corrupt(_))));
        let mut k = tiny_elf();
        k[64 + 16..64 + 24].copy_from_slice(&0u64.to_le_bytes()); // vaddr 0 fixed
        assert!(matches!(parse(&k), Err(ElfError::Corrupt(_))));
    }

    #[test]
    fn parse_never_panics_on_byte_flips() {
        let base = tiny_elf();
        for i in 0..base.len() {
            for v in [0u8, 0xff, 0x80, 1] {
                let mut f = base.clone();
                f[i] = v;
                let _ = parse(&f);
                let _ = header_span(&f);
            }
        }
    }
}
