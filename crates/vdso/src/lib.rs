//! trapbox's own vDSO for recorded and replayed runs: an ELF image whose time calls
//! (`clock_gettime`, `gettimeofday`, `time`) run in the guest without an exit and leave their
//! results in a buffer of guest memory, so that a recording can store them and a replay can
//! hand them back.
//!
//! Why: the host's vDSO reads the clock from memory the kernel updates, which no trap sees, so
//! a recording used to run without any vDSO and paid a VM exit for every time call (Python
//! makes hundreds at start-up). Here each call is one entry of the buffer instead:
//!
//! - **Record**: the entry's slot is reserved, the host's own vDSO function (shared with the
//!   guest, not advertised to it) fills it, and the result is copied out from the slot.
//! - **Replay**: the slot holds the recorded result, which is copied out the same way. A call
//!   of another kind or clock than recorded, or one past the loaded entries, falls back to the
//!   real syscall, which the replayer reports as a divergence.
//!
//! The recorder drains the buffer at each recorded event ([`TimeBuffer::drain`]) and the
//! replayer loads the entries the guest consumes before the next one ([`TimeBuffer::load`]).
//! A replayer that needs to know when the guest has made the calls loaded so far (a thread
//! preempted in a loop that reads the clock: its registers repeat, the count does not) asks
//! for a breakpoint there ([`TimeBuffer::break_at`]): the replayed call that uses that many
//! entries executes an `int3` inside the image ([`break_sites`]) before it returns.
//! When the buffer is full the call falls back to the syscall, an ordinary recorded event.
//! Copying out from the slot in both modes means a bad user pointer faults at the same
//! instruction in a recording and in its replay.
//!
//! The buffer is a memory file mapped twice: at the guest's address, and once more where only
//! trapbox reaches it ([`TimeAlias`]). The recorder and replayer read and write it through
//! that second mapping, with plain loads and stores: no syscall at every event, and nothing
//! the guest does to its own mapping (unmapping it, remapping something else there) can make
//! those accesses fault.

use iced_x86::code_asm::*;

use trapbox_host as host;

/// Bytes of the image: ELF headers, dynamic symbols and code in one read-execute page.
pub const IMAGE_SIZE: u64 = 0x1000;
/// Bytes of the buffer that follows the image (read-write).
const BUFFER_SIZE: u64 = 0x10000;
/// Bytes of the whole mapping.
pub const SIZE: u64 = IMAGE_SIZE + BUFFER_SIZE;
/// Offset of the code inside the image.
const CODE_OFFSET: u64 = 0x800;
/// Buffer header: entries used, entries allowed, mode, then the host functions (record), then
/// the count of used entries at which a replayed call stops at a breakpoint (0: none).
const HDR_USED: u64 = 0;
const HDR_CAP: u64 = 8;
const HDR_MODE: u64 = 16;
const HDR_REAL: u64 = 24;
const HDR_BREAK: u64 = 48;
const HDR_SIZE: u64 = 64;
/// Bytes of one entry: kind, argument (the clock), result, two value words.
const ENTRY_SIZE: u64 = 40;
/// Entries the buffer holds.
pub const CAPACITY: u64 = (BUFFER_SIZE - HDR_SIZE) / ENTRY_SIZE;
const MODE_RECORD: u64 = 1;
const MODE_REPLAY: u64 = 2;

/// Which time call an entry answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeKind {
    /// `clock_gettime(clock, ts)`: the argument is the clock, the values the timespec.
    ClockGettime = 1,
    /// `gettimeofday(tv, NULL)`: the values are the timeval.
    Gettimeofday = 2,
    /// `time(t)`: the result is the time.
    Time = 3,
}

impl TimeKind {
    const ALL: [TimeKind; 3] = [TimeKind::ClockGettime, TimeKind::Gettimeofday, TimeKind::Time];

    /// The vDSO symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            TimeKind::ClockGettime => "__vdso_clock_gettime",
            TimeKind::Gettimeofday => "__vdso_gettimeofday",
            TimeKind::Time => "__vdso_time",
        }
    }

    fn syscall_nr(self) -> i32 {
        match self {
            TimeKind::ClockGettime => libc::SYS_clock_gettime as i32,
            TimeKind::Gettimeofday => libc::SYS_gettimeofday as i32,
            TimeKind::Time => libc::SYS_time as i32,
        }
    }

    /// From its number in a trace.
    pub fn from_u8(v: u8) -> Option<TimeKind> {
        TimeKind::ALL.into_iter().find(|k| *k as u8 == v)
    }
}

/// One time call's result as the buffer holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeCall {
    /// Which call.
    pub kind: TimeKind,
    /// Its clock (clock_gettime) or 0.
    pub arg: u64,
    /// Its return value.
    pub ret: i64,
    /// The timespec or timeval it produced.
    pub value: [u64; 2],
}

/// Whether trapbox's vDSO records (calling the host's vDSO) or replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeMode {
    /// Time calls are answered by the host's vDSO, at these addresses in the guest, in
    /// [`TimeKind`] order.
    Record([u64; 3]),
    /// Time calls are answered from entries a replayer loads.
    Replay,
}

/// Errors setting trapbox's vDSO up.
#[derive(Debug, thiserror::Error)]
pub enum VdsoError {
    /// The address is taken.
    #[error("cannot place trapbox's vDSO at {0:#x}: the address is in use")]
    AddressInUse(u64),
    /// mmap failed.
    #[error("cannot map trapbox's vDSO: {0}")]
    Map(std::io::Error),
    /// The code could not be assembled.
    #[error("cannot assemble trapbox's vDSO: {0}")]
    Assemble(String),
}

/// The host functions trapbox's vDSO calls in record mode: `[vdso]`'s time functions in
/// trapbox's own address space (which the guest shares once `Machine::share_vdso` ran). None
/// when the host's vDSO lacks one of them.
pub fn host_functions(vdso_base: u64) -> Option<[u64; 3]> {
    let (lo, hi) = host_range()?;
    if lo != vdso_base {
        return None;
    }
    // SAFETY: [lo, hi) is the host's vDSO mapping, readable for the life of the process.
    let bytes = unsafe { std::slice::from_raw_parts(lo as *const u8, (hi - lo) as usize) };
    let elf = goblin::elf::Elf::parse(bytes).ok()?;
    let mut out = [0u64; 3];
    for (i, kind) in TimeKind::ALL.iter().enumerate() {
        let sym = elf
            .dynsyms
            .iter()
            .find(|s| s.st_value != 0 && s.is_function() && elf.dynstrtab.get_at(s.st_name) == Some(kind.symbol()))?;
        // The vDSO is linked at 0 (or at its first segment's address).
        let first = elf.program_headers.iter().find(|p| p.p_type == goblin::elf::program_header::PT_LOAD)?;
        out[i] = lo + sym.st_value - first.p_vaddr;
    }
    Some(out)
}

/// The host vDSO's code range in trapbox's address space, from /proc/self/maps.
pub fn host_range() -> Option<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.split_whitespace().last() == Some("[vdso]"))?;
    let (a, b) = line.split_whitespace().next()?.split_once('-')?;
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
}

/// Maps trapbox's vDSO and its buffer at `base` (free arena space), fills the image and sets
/// the buffer up for `mode`, the buffer being `alias`'s file. Returns the image's base
/// (AT_SYSINFO_EHDR); the process model's `install` makes it guest memory.
///
/// # Safety
///
/// `[base, base + SIZE)` must be free arena space (placeholders) the caller owns: it is
/// replaced.
pub unsafe fn map(base: u64, mode: TimeMode, alias: &TimeAlias) -> Result<u64, VdsoError> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
    // SAFETY: [base, base+SIZE) is free arena space (placeholders), replaced here.
    unsafe { host::mmap(base, SIZE, libc::PROT_NONE, flags, -1, 0) }
        .map_err(|e| VdsoError::Map(std::io::Error::from_raw_os_error(e)))?;
    let fill = || -> Result<(), VdsoError> {
        let image = image(base)?;
        let map_err = |e| VdsoError::Map(std::io::Error::from_raw_os_error(e));
        // SAFETY: [base, base+SIZE) is the private mapping made above, not yet guest memory;
        // its buffer part becomes a shared mapping of the alias's file.
        unsafe {
            host::mprotect(base, IMAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE).map_err(map_err)?;
            std::ptr::copy_nonoverlapping(image.as_ptr(), base as *mut u8, image.len());
            alias.map_file_at(base + IMAGE_SIZE).map_err(map_err)?;
        }
        let (cap, m, real) = match mode {
            TimeMode::Record(real) => (CAPACITY, MODE_RECORD, real),
            TimeMode::Replay => (0, MODE_REPLAY, [0; 3]),
        };
        alias.clear();
        let hdr = alias.at;
        hdr.set(HDR_CAP, cap);
        hdr.set(HDR_MODE, m);
        for (i, f) in real.iter().enumerate() {
            hdr.set(HDR_REAL + 8 * i as u64, *f);
        }
        Ok(())
    };
    fill().inspect_err(|_| {
        // SAFETY: the mapping made above, which nothing else refers to yet.
        unsafe { host::park(base, SIZE) };
    })?;
    Ok(base)
}

/// trapbox's own mapping of the guest's time buffer: the buffer's memory file mapped a second
/// time, at an address the guest is never given. One per process, made with its first vDSO
/// and reused by each exec's; a forked child gets its own (see [`TimeAlias::after_fork`]).
/// The mapping is never unmapped (64 KiB per process), so a [`TimeBuffer`] a handler kept
/// can never point at nothing.
#[derive(Debug)]
pub struct TimeAlias {
    file: std::fs::File,
    at: TimeBuffer,
}

impl TimeAlias {
    /// A new buffer file, mapped once for trapbox.
    pub fn new() -> std::io::Result<TimeAlias> {
        let file = buffer_file()?;
        // SAFETY: no MAP_FIXED: the kernel picks free space for a mapping of trapbox's own.
        let at = unsafe { map_buffer(&file, 0, 0) }.map_err(std::io::Error::from_raw_os_error)?;
        Ok(TimeAlias { file, at: TimeBuffer { header: at } })
    }

    /// Maps the buffer file at `addr` too (the guest's view), replacing what is there.
    ///
    /// # Safety
    ///
    /// `[addr, addr + BUFFER_SIZE)` must be memory of trapbox's that nothing else uses.
    unsafe fn map_file_at(&self, addr: u64) -> Result<u64, i32> {
        // SAFETY: the caller owns the range.
        unsafe { map_view(&self.file, addr, libc::MAP_FIXED) }
    }

    /// Zeroes the buffer.
    fn clear(&self) {
        // SAFETY: the alias mapping is BUFFER_SIZE bytes, trapbox's for the process's life.
        unsafe { std::ptr::write_bytes(self.at.header as *mut u8, 0, BUFFER_SIZE as usize) };
    }

    /// The buffer as the recorder and replayer reach it.
    pub fn buffer(&self) -> TimeBuffer {
        self.at
    }

    /// In a forked child: the guest's view of the buffer (at `view`, if it has one) did not
    /// come along (MADV_DONTFORK) and the alias still shares the parent's file. Both get a
    /// file of the child's own, with the parent's contents, at the same addresses. A `view`
    /// the guest has since replaced with a mapping of its own is left alone.
    pub fn after_fork(&mut self, view: Option<u64>) -> std::io::Result<()> {
        let file = buffer_file()?;
        // SAFETY: the alias mapping is BUFFER_SIZE bytes, trapbox's for the process's life.
        let now = unsafe { std::slice::from_raw_parts(self.at.header as *const u8, BUFFER_SIZE as usize) };
        std::os::unix::fs::FileExt::write_all_at(&file, now, 0)?;
        // SAFETY: replaces trapbox's own alias mapping with the same size and rights.
        unsafe { map_buffer(&file, self.at.header, libc::MAP_FIXED) }.map_err(std::io::Error::from_raw_os_error)?;
        self.file = file;
        if let Some(v) = view {
            // SAFETY: MAP_FIXED_NOREPLACE takes the range only if nothing is mapped there,
            // which is what MADV_DONTFORK left of the view; a guest mapping there stays (the
            // failure to map over it is the answer wanted).
            match unsafe { map_view(&self.file, v, libc::MAP_FIXED_NOREPLACE) } {
                // Kernels before 4.17 take the flag for a hint: undo a mapping put elsewhere.
                // SAFETY: the fresh mapping just made, which nothing refers to.
                Ok(got) if got != v => drop(unsafe { host::munmap(got, BUFFER_SIZE) }),
                _ => {}
            }
        }
        Ok(())
    }
}

/// An empty memory file the size of the buffer, in trapbox's private descriptor range.
fn buffer_file() -> std::io::Result<std::fs::File> {
    let file = host::memory_file("trapbox-time-buffer", &[])?;
    file.set_len(BUFFER_SIZE)?;
    host::fds::privatize(file)
}

/// Maps the buffer file `file` read-write and shared at `addr`, with `flags` (a MAP_FIXED
/// kind, or 0 for anywhere).
///
/// # Safety
///
/// With MAP_FIXED, whatever is at `[addr, addr + BUFFER_SIZE)` is replaced: the caller owns it.
unsafe fn map_buffer(file: &std::fs::File, addr: u64, flags: i32) -> Result<u64, i32> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    // SAFETY: as the caller says.
    unsafe { host::mmap(addr, BUFFER_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | flags, fd, 0) }
}

/// [`map_buffer`] for the guest's view of the buffer, which a forked child does not inherit
/// (MADV_DONTFORK): it must not share its parent's, and maps its own.
///
/// # Safety
///
/// As for [`map_buffer`].
unsafe fn map_view(file: &std::fs::File, addr: u64, flags: i32) -> Result<u64, i32> {
    // SAFETY: as the caller says.
    let got = unsafe { map_buffer(file, addr, flags) }?;
    // SAFETY: advice on the mapping just made.
    unsafe { libc::madvise(got as *mut libc::c_void, BUFFER_SIZE as usize, libc::MADV_DONTFORK) };
    Ok(got)
}

/// The time buffer through trapbox's alias of it ([`TimeAlias`]): plain loads and stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBuffer {
    header: u64,
}

impl TimeBuffer {
    fn get(&self, off: u64) -> u64 {
        // SAFETY: an alias mapping is BUFFER_SIZE bytes and stays mapped for the process's
        // life (a fork's child maps its own at the same address); `off` is inside it.
        unsafe { std::ptr::read_volatile((self.header + off) as *const u64) }
    }

    fn set(&self, off: u64, v: u64) {
        // SAFETY: as in `get`.
        unsafe { std::ptr::write_volatile((self.header + off) as *mut u64, v) }
    }

    /// Entries used since the last drain or load.
    pub fn used(&self) -> u64 {
        self.get(HDR_USED)
    }

    /// Takes the calls made since the last drain and empties the buffer (record).
    pub fn drain(&self) -> Vec<TimeCall> {
        let n = self.used();
        if n == 0 {
            return Vec::new();
        }
        if n > CAPACITY {
            // Not a count trapbox's code can produce: the guest wrote the header itself, and
            // no call went through the buffer (each found it full and made the syscall).
            self.set(HDR_USED, 0);
            return Vec::new();
        }
        let calls = (0..n)
            .map(|i| {
                let e = HDR_SIZE + i * ENTRY_SIZE;
                TimeCall {
                    // A slot the guest overwrote is stored as what a replay will read back.
                    kind: TimeKind::from_u8(self.get(e) as u8).unwrap_or(TimeKind::ClockGettime),
                    arg: self.get(e + 8),
                    ret: self.get(e + 16) as i64,
                    value: [self.get(e + 24), self.get(e + 32)],
                }
            })
            .collect();
        self.set(HDR_USED, 0);
        calls
    }

    /// Loads the calls the guest will make before the next event (replay).
    pub fn load(&self, calls: &[TimeCall]) {
        let n = (calls.len() as u64).min(CAPACITY);
        for (i, c) in calls[..n as usize].iter().enumerate() {
            let e = HDR_SIZE + i as u64 * ENTRY_SIZE;
            for (k, v) in [c.kind as u64, c.arg, c.ret as u64, c.value[0], c.value[1]].into_iter().enumerate() {
                self.set(e + 8 * k as u64, v);
            }
        }
        self.set(HDR_USED, 0);
        self.set(HDR_CAP, n);
        self.set(HDR_BREAK, 0);
    }

    /// Replay: the call that brings the entries used to `used` (from the last load) stops at
    /// a breakpoint in the image (see [`break_sites`]); 0 for none.
    pub fn break_at(&self, used: u64) {
        self.set(HDR_BREAK, used);
    }
}

/// ELF's SysV symbol hash.
fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(c as u32);
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// The image for `base`: a shared object that exports the time functions, versioned
/// LINUX_2.6 as the kernel's are (glibc, musl and Go look them up by name and version), with
/// no relocations. Its bytes depend only on `base`, so a replay maps the same image.
pub fn image(base: u64) -> Result<Vec<u8>, VdsoError> {
    const SONAME: &str = "linux-vdso.so.1";
    const VERSION: &str = "LINUX_2.6";
    let mut strtab = vec![0u8];
    let mut add_str = |s: &str| {
        let off = strtab.len() as u32;
        strtab.extend_from_slice(s.as_bytes());
        strtab.push(0);
        off
    };
    let soname = add_str(SONAME);
    let version = add_str(VERSION);
    let names: Vec<u32> = TimeKind::ALL.iter().map(|k| add_str(k.symbol())).collect();
    let (code, _) = code(base + CODE_OFFSET, base + IMAGE_SIZE)?;
    let nsyms = 1 + TimeKind::ALL.len();

    let mut img = vec![0u8; IMAGE_SIZE as usize];
    let put = |img: &mut Vec<u8>, at: usize, bytes: &[u8]| img[at..at + bytes.len()].copy_from_slice(bytes);
    // Tables after the ELF and program headers, each 8-aligned.
    let sym_off = 64 + 2 * 56;
    let str_off = sym_off + 24 * nsyms;
    let hash_off = (str_off + strtab.len() + 7) & !7;
    let versym_off = hash_off + 4 * (2 + 1 + nsyms);
    let verdef_off = (versym_off + 2 * nsyms + 7) & !7;
    let dyn_off = verdef_off + 2 * 28;
    let dynamic: [(u64, u64); 10] = [
        (4, hash_off as u64),             // DT_HASH
        (5, str_off as u64),              // DT_STRTAB
        (6, sym_off as u64),              // DT_SYMTAB
        (10, strtab.len() as u64),        // DT_STRSZ
        (11, 24),                         // DT_SYMENT
        (14, soname as u64),              // DT_SONAME
        (0x6fff_fff0, versym_off as u64), // DT_VERSYM
        (0x6fff_fffc, verdef_off as u64), // DT_VERDEF
        (0x6fff_fffd, 2),                 // DT_VERDEFNUM
        (0, 0),                           // DT_NULL
    ];
    let dyn_size = dynamic.len() * 16;
    assert!(dyn_off + dyn_size <= CODE_OFFSET as usize && CODE_OFFSET as usize + code.len() <= img.len());

    // ELF header: 64-bit, little-endian, ET_DYN, x86-64, two program headers.
    let mut eh = Vec::with_capacity(64);
    eh.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    eh.extend_from_slice(&3u16.to_le_bytes());
    eh.extend_from_slice(&62u16.to_le_bytes());
    eh.extend_from_slice(&1u32.to_le_bytes());
    eh.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    eh.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    eh.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    eh.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [64u16, 56, 2, 64, 0, 0] {
        eh.extend_from_slice(&v.to_le_bytes());
    }
    put(&mut img, 0, &eh);
    // PT_LOAD of the whole image (read + execute), PT_DYNAMIC.
    let phdr = |ty: u32, flags: u32, off: u64, size: u64, align: u64| {
        let mut p = Vec::with_capacity(56);
        p.extend_from_slice(&ty.to_le_bytes());
        p.extend_from_slice(&flags.to_le_bytes());
        for v in [off, off, off, size, size, align] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p
    };
    put(&mut img, 64, &phdr(1, 5, 0, IMAGE_SIZE, 0x1000));
    put(&mut img, 64 + 56, &phdr(2, 4, dyn_off as u64, dyn_size as u64, 8));
    // Symbols: the null symbol, then one global function per time call.
    let entries = code_entries();
    for (i, name) in names.iter().enumerate() {
        let mut s = Vec::with_capacity(24);
        s.extend_from_slice(&name.to_le_bytes());
        s.push(0x12); // STB_GLOBAL, STT_FUNC
        s.push(0);
        // Any defined section index: loaders only check that it is not SHN_UNDEF or SHN_ABS.
        s.extend_from_slice(&1u16.to_le_bytes());
        s.extend_from_slice(&(CODE_OFFSET + entries[i].0).to_le_bytes());
        s.extend_from_slice(&entries[i].1.to_le_bytes());
        put(&mut img, sym_off + 24 * (i + 1), &s);
    }
    put(&mut img, str_off, &strtab);
    // One hash bucket chaining every symbol.
    let mut hash = vec![1u32, nsyms as u32, (nsyms - 1) as u32, 0];
    hash.extend((1..nsyms as u32).map(|i| i - 1));
    put(&mut img, hash_off, &hash.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    // Every function has version 2 (LINUX_2.6); version 1 is the object itself.
    let versym: Vec<u8> = (0..nsyms).flat_map(|i| (if i == 0 { 0u16 } else { 2 }).to_le_bytes()).collect();
    put(&mut img, versym_off, &versym);
    for (i, (flags, name, text)) in [(1u16, soname, SONAME), (0, version, VERSION)].into_iter().enumerate() {
        let mut d = Vec::with_capacity(28);
        for v in [1u16, flags, i as u16 + 1, 1] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        let next = if i == 0 { 28u32 } else { 0 };
        for v in [elf_hash(text.as_bytes()), 20, next, name, 0] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        put(&mut img, verdef_off + 28 * i, &d);
    }
    let dyn_bytes: Vec<u8> = dynamic.iter().flat_map(|(t, v)| [t.to_le_bytes(), v.to_le_bytes()]).flatten().collect();
    put(&mut img, dyn_off, &dyn_bytes);
    put(&mut img, CODE_OFFSET as usize, &code);
    Ok(img)
}

/// Each function's (offset in the code, length), in [`TimeKind`] order: every function is
/// padded to the same length, so the symbol table needs no assembler labels.
fn code_entries() -> [(u64, u64); 3] {
    [(0, FN_SIZE), (FN_SIZE, FN_SIZE), (2 * FN_SIZE, FN_SIZE)]
}

/// Room for one function's code.
const FN_SIZE: u64 = 0x100;

fn asm_err(e: IcedError) -> VdsoError {
    VdsoError::Assemble(e.to_string())
}

/// The three functions at `ip`, each in its own FN_SIZE slot, over the buffer at `buf`, and
/// the address of each one's `int3` (see [`TimeBuffer::break_at`]).
fn code(ip: u64, buf: u64) -> Result<(Vec<u8>, [u64; 3]), VdsoError> {
    let mut out = Vec::new();
    let mut breaks = [0; 3];
    for (i, kind) in TimeKind::ALL.into_iter().enumerate() {
        let (f, brk) = function(kind, i, ip + i as u64 * FN_SIZE, buf).map_err(asm_err)?;
        if f.len() as u64 > FN_SIZE {
            return Err(VdsoError::Assemble(format!("{} takes {} bytes", kind.symbol(), f.len())));
        }
        out.extend_from_slice(&f);
        out.resize((i + 1) * FN_SIZE as usize, 0xcc);
        breaks[i] = brk;
    }
    Ok((out, breaks))
}

/// Where the `int3`s that [`TimeBuffer::break_at`] asks for are, in trapbox's vDSO at `base`
/// (a breakpoint trap reports the address after one).
pub fn break_sites(base: u64) -> Result<[u64; 3], VdsoError> {
    Ok(code(base + CODE_OFFSET, base + IMAGE_SIZE)?.1)
}

/// One time function. Register use: rbx the clock (clock_gettime only), r12 the user's
/// pointer, r13 the slot, r11 the buffer header until the host call.
fn function(kind: TimeKind, index: usize, ip: u64, buf: u64) -> Result<(Vec<u8>, u64), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut brk = a.create_label();
    let mut slow = a.create_label();
    let mut slow_popped = a.create_label();
    let mut replay = a.create_label();
    let mut copy = a.create_label();
    let mut out = a.create_label();
    let mut unreserve = a.create_label();
    let user = match kind {
        TimeKind::ClockGettime => rsi,
        TimeKind::Gettimeofday | TimeKind::Time => rdi,
    };
    if kind == TimeKind::Gettimeofday {
        // A time zone request goes to the kernel (rare; it is recorded as a syscall).
        a.test(rsi, rsi)?;
        a.jnz(slow_popped)?;
    }
    a.push(rbx)?;
    a.push(r12)?;
    a.push(r13)?;
    a.mov(rbx, rdi)?;
    a.mov(r12, user)?;
    // Reserve the next slot, or take the syscall when none is left.
    a.mov(r11, buf)?;
    a.mov(rax, qword_ptr(r11 + HDR_USED as i32))?;
    a.cmp(rax, qword_ptr(r11 + HDR_CAP as i32))?;
    a.jae(slow)?;
    a.lea(rcx, qword_ptr(rax + 1))?;
    a.mov(qword_ptr(r11 + HDR_USED as i32), rcx)?;
    a.imul_3(rax, rax, ENTRY_SIZE as i32)?;
    a.lea(r13, qword_ptr(r11 + rax + HDR_SIZE as i32))?;
    a.cmp(qword_ptr(r11 + HDR_MODE as i32), MODE_RECORD as i32)?;
    a.jne(replay)?;

    // Record: the host's function answers into the slot.
    a.mov(qword_ptr(r13), kind as i32)?;
    match kind {
        TimeKind::ClockGettime => {
            a.mov(qword_ptr(r13 + 8), rbx)?;
            a.mov(rdi, rbx)?;
            a.lea(rsi, qword_ptr(r13 + 24))?;
        }
        TimeKind::Gettimeofday => {
            a.mov(qword_ptr(r13 + 8), 0)?;
            a.lea(rdi, qword_ptr(r13 + 24))?;
            a.xor(esi, esi)?;
        }
        TimeKind::Time => {
            a.mov(qword_ptr(r13 + 8), 0)?;
            a.xor(edi, edi)?;
        }
    }
    // Three pushes after the return address: the stack is 16-byte aligned for the call.
    a.call(qword_ptr(r11 + (HDR_REAL as i32 + 8 * index as i32)))?;
    if kind != TimeKind::Time {
        // An int result: the upper half of rax is not part of it.
        a.movsxd(rax, eax)?;
    }
    a.mov(qword_ptr(r13 + 16), rax)?;
    a.jmp(copy)?;

    // Replay: the slot must answer this call.
    a.set_label(&mut replay)?;
    a.cmp(qword_ptr(r13), kind as i32)?;
    a.jne(unreserve)?;
    if kind == TimeKind::ClockGettime {
        a.cmp(qword_ptr(r13 + 8), rbx)?;
        a.jne(unreserve)?;
    }
    a.mov(rax, qword_ptr(r13 + 16))?;
    // The call the replayer asked to see (`TimeBuffer::break_at`): a breakpoint trap here.
    a.mov(rcx, qword_ptr(r11 + HDR_BREAK as i32))?;
    a.test(rcx, rcx)?;
    a.jz(copy)?;
    a.cmp(rcx, qword_ptr(r11 + HDR_USED as i32))?;
    a.jne(copy)?;
    a.set_label(&mut brk)?;
    a.int3()?;

    // Copy the result out from the slot (a bad pointer faults here in both modes).
    a.set_label(&mut copy)?;
    a.test(r12, r12)?;
    a.jz(out)?;
    if kind == TimeKind::Time {
        a.mov(qword_ptr(r12), rax)?;
    } else {
        a.test(rax, rax)?;
        a.jnz(out)?;
        a.mov(rcx, qword_ptr(r13 + 24))?;
        a.mov(qword_ptr(r12), rcx)?;
        a.mov(rcx, qword_ptr(r13 + 32))?;
        a.mov(qword_ptr(r12 + 8), rcx)?;
    }
    a.set_label(&mut out)?;
    // The scratch registers leave with the same values whichever way the call went: the
    // host's function leaves its own in record, and a replay stops a thread where its
    // registers match the recording's (a preemption, a signal in user code).
    for r in [ecx, edx, esi, edi, r8d, r9d, r10d, r11d] {
        a.xor(r, r)?;
    }
    a.pop(r13)?;
    a.pop(r12)?;
    a.pop(rbx)?;
    a.ret()?;

    // Not the recorded call: give the slot back and let the kernel (the replayer) see it.
    a.set_label(&mut unreserve)?;
    a.mov(r11, buf)?;
    a.sub(qword_ptr(r11 + HDR_USED as i32), 1)?;
    a.set_label(&mut slow)?;
    a.pop(r13)?;
    a.pop(r12)?;
    a.pop(rbx)?;
    a.set_label(&mut slow_popped)?;
    a.mov(eax, kind.syscall_nr())?;
    a.syscall()?;
    a.ret()?;
    let done = a.assemble_options(ip, iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let at = done.label_ip(&brk)?;
    Ok((done.inner.code_buffer, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapbox_reaches_the_guests_time_buffer_through_its_alias() {
        let alias = TimeAlias::new().unwrap();
        // SAFETY: a fresh reservation the test owns, then the view mapped over it.
        let view =
            unsafe { host::mmap(0, BUFFER_SIZE, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) }
                .unwrap();
        // SAFETY: the range was just reserved and nothing else uses it.
        assert_eq!(unsafe { alias.map_file_at(view) }, Ok(view));
        let word = |off: u64| view + off;
        // SAFETY: the view is BUFFER_SIZE bytes of readable and writable memory.
        let (get, put) = unsafe {
            (
                |a: u64| std::ptr::read_volatile(a as *const u64),
                |a: u64, v: u64| std::ptr::write_volatile(a as *mut u64, v),
            )
        };
        // A call as trapbox's vDSO records it, through the guest's view: the entry, then the count.
        let call = TimeCall { kind: TimeKind::ClockGettime, arg: 1, ret: 0, value: [7, 8] };
        for (k, v) in [1, 1, 0, 7, 8].into_iter().enumerate() {
            put(word(HDR_SIZE + 8 * k as u64), v);
        }
        put(word(HDR_USED), 1);
        let buf = alias.buffer();
        assert_eq!(buf.used(), 1);
        assert_eq!(buf.drain(), vec![call]);
        assert_eq!(get(word(HDR_USED)), 0, "drained in the guest's view too");
        // What a replay loads, the guest's view holds.
        let next = TimeCall { kind: TimeKind::Time, arg: 0, ret: 42, value: [0, 0] };
        buf.load(&[next]);
        assert_eq!((get(word(HDR_CAP)), get(word(HDR_USED))), (1, 0));
        assert_eq!(get(word(HDR_SIZE)), TimeKind::Time as u64);
        assert_eq!(get(word(HDR_SIZE + 16)), 42);
        // SAFETY: unmaps the test's view.
        unsafe { host::munmap(view, BUFFER_SIZE) }.unwrap();
        // The guest unmapping its view leaves trapbox's accesses valid.
        assert_eq!(buf.used(), 0);
    }

    #[test]
    fn image_is_a_shared_object_exporting_the_versioned_time_functions() {
        let img = image(0x7f00_0000_0000).unwrap();
        let elf = goblin::elf::Elf::parse(&img).unwrap();
        assert_eq!(elf.header.e_type, goblin::elf::header::ET_DYN);
        let names: Vec<(&str, u64)> =
            elf.dynsyms.iter().filter_map(|s| Some((elf.dynstrtab.get_at(s.st_name)?, s.st_value))).collect();
        for (i, k) in TimeKind::ALL.iter().enumerate() {
            assert!(names.contains(&(k.symbol(), CODE_OFFSET + i as u64 * FN_SIZE)), "{names:?}");
        }
        assert_eq!(elf.soname, Some("linux-vdso.so.1"));
        // The version definitions, walked as musl's and Go's vDSO readers walk them.
        let info = &elf.dynamic.as_ref().expect("dynamic").info;
        assert_eq!(info.verdefnum, 2);
        let (mut at, mut vers) = (info.verdef as usize, Vec::new());
        loop {
            let u16_at = |o: usize| u16::from_le_bytes([img[o], img[o + 1]]);
            let u32_at = |o: usize| u32::from_le_bytes(img[o..o + 4].try_into().unwrap());
            let name = u32_at(at + u32_at(at + 12) as usize);
            vers.push((u16_at(at + 4), elf.dynstrtab.get_at(name as usize)));
            match u32_at(at + 16) {
                0 => break,
                next => at += next as usize,
            }
        }
        assert_eq!(vers, vec![(1, Some("linux-vdso.so.1")), (2, Some("LINUX_2.6"))]);
        let versym = info.versym as usize;
        for i in 1..=3 {
            assert_eq!(u16::from_le_bytes([img[versym + 2 * i], img[versym + 2 * i + 1]]), 2);
        }
        // The image depends on its address only.
        assert_eq!(img, image(0x7f00_0000_0000).unwrap());
        assert_ne!(img, image(0x7e00_0000_0000).unwrap());
    }

    #[test]
    fn elf_hash_matches_known_values() {
        assert_eq!(elf_hash(b""), 0);
        assert_eq!(elf_hash(b"printf"), 0x077905a6);
    }

    #[test]
    fn each_function_fits_its_slot_and_ends_the_slow_path_with_syscall_ret() {
        let (c, breaks) = code(0x1000, 0x1000 - CODE_OFFSET + IMAGE_SIZE).unwrap();
        assert_eq!(c.len() as u64, 3 * FN_SIZE);
        for k in 0..3 {
            let f = &c[k * FN_SIZE as usize..(k + 1) * FN_SIZE as usize];
            assert!(f.windows(3).any(|w| w == [0x0f, 0x05, 0xc3]), "function {k} has no syscall; ret");
            // The replay's breakpoint is an int3 inside the function, not its padding.
            let at = (breaks[k] - 0x1000) as usize;
            assert_eq!(c[at], 0xcc, "function {k}'s break site");
            assert!(at < k * FN_SIZE as usize + f.iter().rposition(|&b| b != 0xcc).unwrap(), "function {k}: {at:#x}");
        }
        assert_eq!(break_sites(0x1000 - CODE_OFFSET).unwrap(), breaks);
    }
}
