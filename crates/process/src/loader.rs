//! The loader: puts an ELF program (and its interpreter) into the guest's address space the
//! way Linux's execve does, and builds the initial stack (argv, envp, auxv).
//!
//! Segments are mapped from the file (MAP_PRIVATE) over the image's whole span, like the
//! kernel's ELF loader, all in the guest arena (`process::arena`): a PIE main image at two
//! thirds of the arena (as Linux puts it at two thirds of the address space), the interpreter
//! and the stack where the arena's top-down placement puts them, ET_EXEC images at their fixed
//! addresses if those are free. Right after the main image, room is held for the brk heap.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::elf::{self, ElfError, ElfInfo, PT_PHDR};
use super::host;
use super::mem::AddressSpace;
use trapbox_vm::{MemoryError, MemoryMirror};

/// Size of the guest's main stack.
pub const STACK_SIZE: u64 = 8 << 20;
/// Address space held for the brk heap after the main image.
pub const BRK_RESERVE: u64 = 1 << 30;

/// Why a program could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The program was not found on PATH.
    #[error("{0}: command not found")]
    NotFound(String),
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path names a directory.
    #[error("{0}: is a directory")]
    Directory(PathBuf),
    /// The file is not a runnable ELF.
    #[error("{path}: {source}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ElfError,
    },
    /// A script's interpreter could not be used.
    #[error("{script}: bad interpreter {interp}: {why}")]
    BadInterpreter {
        /// The script.
        script: PathBuf,
        /// Its `#!` line's interpreter.
        interp: String,
        /// Why it cannot be used.
        why: String,
    },
    /// The image's fixed addresses are taken (by trapbox itself).
    #[error("{path}: its fixed load address {addr:#x} is in use by trapbox")]
    AddressInUse {
        /// The file.
        path: PathBuf,
        /// The address.
        addr: u64,
    },
    /// A host mapping failed.
    #[error("{path}: cannot map {what}: {source}")]
    Map {
        /// The file.
        path: PathBuf,
        /// What was being mapped.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// Registering guest memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// trapbox's own vDSO could not be set up.
    #[error(transparent)]
    Vdso(#[from] super::vdso::InstallError),
}

/// An ELF image placed in memory.
#[derive(Clone, Debug)]
pub struct Image {
    /// File it came from.
    pub path: PathBuf,
    /// Load bias (0 for ET_EXEC).
    pub bias: u64,
    /// Parsed headers.
    pub info: ElfInfo,
}

impl Image {
    /// The relocated entry point.
    pub fn entry(&self) -> u64 {
        self.bias.wrapping_add(self.info.entry)
    }

    /// Address of the program headers in memory (AT_PHDR).
    pub fn phdr_addr(&self) -> u64 {
        if let Some(p) = self.info.phdrs.iter().find(|p| p.p_type == PT_PHDR) {
            return self.bias + p.vaddr;
        }
        self.info
            .loads()
            .find(|p| p.offset <= self.info.phoff && self.info.phoff < p.offset + p.filesz)
            .map(|p| self.bias + p.vaddr + (self.info.phoff - p.offset))
            .unwrap_or(0)
    }

    /// Whether `addr` lies in this image's span.
    pub fn contains(&self, addr: u64) -> bool {
        let (lo, hi) = self.info.span();
        addr >= self.bias + lo && addr < self.bias + hi
    }
}

pub use trapbox_trap::Placement;

/// What the loader produced.
#[derive(Debug)]
pub struct Loaded {
    /// The main program.
    pub exe: Image,
    /// Its interpreter (ld.so), if dynamic.
    pub interp: Option<Image>,
    /// Where the guest starts.
    pub entry: u64,
    /// Initial stack pointer.
    pub sp: u64,
    /// Start of the brk heap.
    pub brk_start: u64,
    /// End of the address space reserved for brk.
    pub brk_limit: u64,
    /// argv as the program sees it (after `#!` expansion).
    pub argv: Vec<OsString>,
    /// The path that was executed (the script for a `#!` file), as execve would name it.
    pub exec_path: PathBuf,
    /// Where the envp array starts on the initial stack.
    pub envp_addr: u64,
    /// Where everything went (with the stack image), for a recorder.
    pub placement: Placement,
}

/// Finds `program` the way a shell does: a path with a slash as is, else on $PATH.
pub fn resolve(program: &Path) -> Result<PathBuf, LoadError> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(program);
        if cand.is_file() {
            return Ok(cand);
        }
    }
    Err(LoadError::NotFound(program.display().to_string()))
}

/// Opens a program file: the file, its first bytes (headers), its length.
fn read_file(path: &Path) -> Result<(File, Vec<u8>, u64), LoadError> {
    let open_err = |source| LoadError::Open { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.is_dir() {
        return Err(LoadError::Directory(path.to_path_buf()));
    }
    let file = File::open(path).map_err(open_err)?;
    // Headers live at the start, nearly always in the first page: read that, then what the
    // headers say lies past it. A PT_INTERP or phdr table past 1 MiB is not worth supporting.
    let cap = meta.len().min(1 << 20) as usize;
    let read = |len: usize| -> Result<Vec<u8>, LoadError> {
        let mut head = vec![0u8; len];
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).map_err(open_err)?;
        head.truncate(n);
        Ok(head)
    };
    let mut head = read(cap.min(4096))?;
    // Each read can show more of the table (a PT_INTERP past it): until nothing more is named.
    loop {
        let want = elf::header_span(&head).min(cap);
        if want <= head.len() {
            break;
        }
        let more = read(want)?;
        let grew = more.len() > head.len();
        head = more;
        if !grew {
            break;
        }
    }
    Ok((file, head, meta.len()))
}

/// Parses a `#!` line: interpreter and optional single argument.
pub fn parse_shebang(head: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next()?;
    let line = &line[..line.len().min(255)];
    let trimmed: Vec<u8> = line.iter().copied().skip_while(|b| *b == b' ' || *b == b'\t').collect();
    let mut parts = trimmed.splitn(2, |b| *b == b' ' || *b == b'\t');
    let interp = parts.next().filter(|i| !i.is_empty())?.to_vec();
    let arg = parts
        .next()
        .map(|a| a.iter().copied().skip_while(|b| *b == b' ' || *b == b'\t').collect::<Vec<u8>>())
        .map(|a| a.strip_suffix(b"\r").map(<[u8]>::to_vec).unwrap_or(a))
        .map(|mut a| {
            while a.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
                a.pop();
            }
            a
        })
        .filter(|a| !a.is_empty());
    Some((interp, arg))
}

/// Checks that a file can be run, without loading it (`inspect`).
pub fn probe(path: &Path) -> Result<ElfInfo, LoadError> {
    let (_, head, len) = read_file(path)?;
    elf::parse_head(&head, len).map_err(|source| LoadError::Elf { path: path.to_path_buf(), source })
}

fn map_err<'a>(path: &'a Path, what: &'static str) -> impl Fn(i32) -> LoadError + 'a {
    move |e| LoadError::Map { path: path.to_path_buf(), what, source: std::io::Error::from_raw_os_error(e) }
}

/// Maps one ELF image at `at` (a PIE's recorded placement) or where the arena has room. A
/// position-independent image also gets `tail` free bytes right after it (the brk heap's
/// room).
fn map_image(
    mem: &mut dyn MemoryMirror,
    aspace: &mut AddressSpace,
    path: &Path,
    file: &File,
    info: ElfInfo,
    tail: u64,
    at: Option<u64>,
) -> Result<Image, LoadError> {
    let (lo, hi) = info.span();
    let span = hi - lo;
    let in_use = |addr| LoadError::AddressInUse { path: path.to_path_buf(), addr };
    let base = match (info.pie, at) {
        (true, Some(at)) if at.checked_add(span + tail).is_some_and(|e| aspace.is_free(at, e)) => at,
        (true, Some(at)) => return Err(in_use(at)),
        (true, None) => {
            let align = info.max_align().max(4096);
            let preferred = (aspace.arena().1 / 3 * 2) & !(align - 1);
            let hint = if tail > 0 { preferred } else { 0 };
            aspace.find_free(span + tail, align, hint, u64::MAX).ok_or_else(|| in_use(preferred))?
        }
        (false, _) if aspace.is_free(lo, hi) => lo,
        (false, _) => return Err(in_use(lo)),
    };
    let bias = base - lo;
    aspace.insert(mem, base, span, libc::PROT_NONE)?;
    let fd = file.as_raw_fd();
    for p in info.loads() {
        let start = (bias + p.vaddr) & !0xfff;
        let page_off = (bias + p.vaddr) & 0xfff;
        let file_end = bias + p.vaddr + p.filesz;
        let mem_end = (bias + p.vaddr + p.memsz + 0xfff) & !0xfff;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        if p.filesz > 0 {
            let len = (page_off + p.filesz + 0xfff) & !0xfff;
            let flags = libc::MAP_PRIVATE | libc::MAP_FIXED;
            // SAFETY: inside the image reservation made above, which is guest memory.
            unsafe { host::mmap(start, len, rw, flags, fd, p.offset - page_off) }.map_err(map_err(path, "segment"))?;
            // Zero the rest of the last file page when the segment continues as bss.
            let page_end = (file_end + 0xfff) & !0xfff;
            if p.memsz > p.filesz && page_end > file_end {
                // SAFETY: [file_end, page_end) is inside the private writable mapping just made.
                unsafe { std::ptr::write_bytes(file_end as *mut u8, 0, (page_end - file_end) as usize) };
            }
        }
        let anon_start = (file_end + 0xfff) & !0xfff;
        if mem_end > anon_start {
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
            // SAFETY: inside the image reservation, which is guest memory.
            unsafe { host::mmap(anon_start, mem_end - anon_start, rw, flags, -1, 0) }.map_err(map_err(path, "bss"))?;
        }
        let prot = p.prot();
        // SAFETY: the segment's pages, just mapped, are guest memory.
        unsafe { host::mprotect(start, mem_end - start, prot) }.map_err(map_err(path, "segment"))?;
        aspace.protect(mem, start, mem_end - start, prot)?;
    }
    Ok(Image { path: path.to_path_buf(), bias, info })
}

/// What the machine tells the program through its auxiliary vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineFacts {
    /// AT_HWCAP as the guest's CPUID has it.
    pub hwcap: u64,
    /// AT_MINSIGSTKSZ: the most stack a signal frame takes (its XSAVE image included).
    pub minsigstksz: u64,
    /// AT_SYSINFO_EHDR: the vDSO shared with the guest, if any.
    pub vdso: Option<u64>,
}

/// Loads `program` with `argv` and `envp` into guest memory and builds its stack.
pub fn load(
    mem: &mut dyn MemoryMirror,
    aspace: &mut AddressSpace,
    program: &Path,
    argv: &[OsString],
    envp: &[OsString],
    facts: MachineFacts,
    placement: &Placement,
) -> Result<Loaded, LoadError> {
    let path = resolve(program)?;
    let (mut file, mut head, mut len) = read_file(&path)?;
    let mut argv = argv.to_vec();
    let mut exe_path = path.clone();
    if let Some((interp, arg)) = parse_shebang(&head) {
        let interp_path = PathBuf::from(OsString::from_vec(interp.clone()));
        let bad = |why: String| LoadError::BadInterpreter {
            script: path.clone(),
            interp: interp_path.display().to_string(),
            why,
        };
        let (f, h, l) = read_file(&interp_path).map_err(|e| bad(e.to_string()))?;
        if h.starts_with(b"#!") {
            return Err(bad("it is a script too".into()));
        }
        elf::parse_head(&h, l).map_err(|e| bad(e.to_string()))?;
        let mut new_argv = vec![OsString::from_vec(interp)];
        new_argv.extend(arg.map(OsString::from_vec));
        new_argv.push(path.clone().into_os_string());
        new_argv.extend(argv.iter().skip(1).cloned());
        argv = new_argv;
        exe_path = interp_path;
        file = f;
        head = h;
        len = l;
    }
    let info = elf::parse_head(&head, len).map_err(|source| LoadError::Elf { path: exe_path.clone(), source })?;
    let interp_name = info.interp.clone();
    let exe = map_image(mem, aspace, &exe_path, &file, info, BRK_RESERVE, placement.exe_base)?;

    let interp = match interp_name {
        Some(name) => {
            let ip = PathBuf::from(&name);
            let (ifile, ihead, ilen) = read_file(&ip)?;
            let iinfo = elf::parse_head(&ihead, ilen).map_err(|source| LoadError::Elf { path: ip.clone(), source })?;
            if iinfo.interp.is_some() {
                return Err(LoadError::Elf { path: ip, source: ElfError::Corrupt("interpreter has an interpreter") });
            }
            Some(map_image(mem, aspace, &ip, &ifile, iinfo, 0, placement.interp_base)?)
        }
        None => None,
    };

    // The brk heap follows the main image, in room held now so nothing else lands there.
    let (_, hi) = exe.info.span();
    let brk_start = exe.bias + hi;
    let mut brk_limit = brk_start;
    if exe.info.pie {
        brk_limit = brk_start + BRK_RESERVE;
    } else {
        for size in [BRK_RESERVE, 64 << 20, 1 << 20] {
            if brk_start.checked_add(size).is_some_and(|e| aspace.is_free(brk_start, e)) {
                brk_limit = brk_start + size;
                break;
            }
        }
    }
    aspace.set_brk_room((brk_start + 0xfff) & !0xfff, brk_limit);

    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let stack = match placement.stack_base {
        Some(at) if at.checked_add(STACK_SIZE).is_some_and(|e| aspace.is_free(at, e)) => at,
        Some(at) => return Err(LoadError::AddressInUse { path: exe_path.clone(), addr: at }),
        // At the arena's top, as Linux puts the stack at the top of the address space.
        None => {
            let top = aspace.arena().1.saturating_sub(STACK_SIZE);
            aspace
                .find_free(STACK_SIZE, 4096, top, u64::MAX)
                .ok_or(LoadError::AddressInUse { path: exe_path.clone(), addr: top })?
        }
    };
    // SAFETY: [stack, stack+STACK_SIZE) is free arena space (placeholders), replaced here.
    unsafe { host::mmap(stack, STACK_SIZE, rw, flags, -1, 0) }.map_err(map_err(&exe_path, "stack"))?;
    aspace.insert(mem, stack, STACK_SIZE, rw)?;
    let top = stack + STACK_SIZE;

    let mut random = [0u8; 16];
    getrandom(&mut random);
    let execfn = path.as_os_str().as_bytes().to_vec();
    let entry = interp.as_ref().map(Image::entry).unwrap_or_else(|| exe.entry());
    let aux = auxv(&exe, interp.as_ref(), facts);
    let spec = StackSpec {
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        envp: envp.iter().map(|e| e.as_bytes().to_vec()).collect(),
        execfn,
        platform: b"x86_64".to_vec(),
        random,
        aux,
    };
    let (bytes, sp) = match &placement.stack_image {
        Some((sp, bytes)) if *sp >= stack && sp + bytes.len() as u64 == top => (bytes.clone(), *sp),
        Some(_) => {
            return Err(LoadError::Elf {
                path: exe_path,
                source: ElfError::Corrupt("recorded stack image does not fit the stack"),
            })
        }
        None => build_stack(top, &spec),
    };
    // SAFETY: [sp, top) lies in the stack mapping just made (build_stack uses far less than
    // STACK_SIZE for any argv/envp the host's execve accepted; a recorded image was checked
    // above), which is writable.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), sp as *mut u8, bytes.len()) };
    // A recorded stack image says what the program was given (a script's interpreter is
    // already in its argv).
    let argv = match placement.stack_image {
        Some(_) => stack_argv(sp, &bytes).ok_or(LoadError::Elf {
            path: exe_path.clone(),
            source: ElfError::Corrupt("recorded stack image has no valid argv"),
        })?,
        None => argv,
    };
    let envp_addr = sp + 8 * (argv.len() as u64 + 2);
    let image_base = |i: &Image| i.bias + i.info.span().0;
    let placement = Placement {
        exe_base: exe.info.pie.then(|| image_base(&exe)),
        interp_base: interp.as_ref().map(image_base),
        stack_base: Some(stack),
        stack_image: Some((sp, bytes)),
        vdso: placement.vdso,
    };
    Ok(Loaded { exe, interp, entry, sp, brk_start, brk_limit, argv, exec_path: path, envp_addr, placement })
}

/// The argv a stack image holds: argc at `sp`, then pointers to strings inside the image.
fn stack_argv(sp: u64, image: &[u8]) -> Option<Vec<OsString>> {
    let word = |i: usize| image.get(i * 8..i * 8 + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    let argc = usize::try_from(word(0)?).ok()?;
    if argc > image.len() / 8 {
        return None;
    }
    (1..=argc)
        .map(|i| {
            let at = usize::try_from(word(i)?.checked_sub(sp)?).ok()?;
            let s = image.get(at..)?;
            let len = s.iter().position(|&b| b == 0)?;
            Some(OsString::from_vec(s[..len].to_vec()))
        })
        .collect()
}

fn getrandom(buf: &mut [u8]) {
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n, buf.len() as isize, "getrandom for AT_RANDOM failed");
}

/// auxv keys.
#[allow(missing_docs)]
pub mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const PLATFORM: u64 = 15;
    pub const HWCAP: u64 = 16;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const HWCAP2: u64 = 26;
    pub const EXECFN: u64 = 31;
    pub const MINSIGSTKSZ: u64 = 51;
    pub const SYSINFO_EHDR: u64 = 33;
}

/// Values patched in by `build_stack` (pointers to strings it places).
const PLACEHOLDER: u64 = u64::MAX;

fn auxv(exe: &Image, interp: Option<&Image>, facts: MachineFacts) -> Vec<(u64, u64)> {
    // SAFETY: the id getters and getauxval have no preconditions.
    let (uid, euid, gid, egid, hwcap2) = unsafe {
        (
            libc::getuid() as u64,
            libc::geteuid() as u64,
            libc::getgid() as u64,
            libc::getegid() as u64,
            libc::getauxval(at::HWCAP2),
        )
    };
    // HWCAP2_FSGSBASE (bit 1) is hidden: the guest runs without CR4.FSGSBASE.
    let mut v = vec![
        (at::HWCAP, facts.hwcap),
        (at::PAGESZ, 4096),
        (at::CLKTCK, 100),
        (at::PHDR, exe.phdr_addr()),
        (at::PHENT, 56),
        (at::PHNUM, exe.info.phdrs.len() as u64),
        (at::BASE, interp.map(|i| i.bias).unwrap_or(0)),
        (at::FLAGS, 0),
        (at::ENTRY, exe.entry()),
        (at::UID, uid),
        (at::EUID, euid),
        (at::GID, gid),
        (at::EGID, egid),
        (at::SECURE, 0),
        (at::RANDOM, PLACEHOLDER),
        (at::HWCAP2, hwcap2 & !2),
        (at::EXECFN, PLACEHOLDER),
        (at::PLATFORM, PLACEHOLDER),
    ];
    v.push((at::MINSIGSTKSZ, facts.minsigstksz));
    if let Some(base) = facts.vdso {
        v.push((at::SYSINFO_EHDR, base));
    }
    v
}

/// Everything the initial stack holds.
pub struct StackSpec {
    /// Arguments.
    pub argv: Vec<Vec<u8>>,
    /// Environment.
    pub envp: Vec<Vec<u8>>,
    /// AT_EXECFN string.
    pub execfn: Vec<u8>,
    /// AT_PLATFORM string.
    pub platform: Vec<u8>,
    /// AT_RANDOM bytes.
    pub random: [u8; 16],
    /// auxv pairs; AT_RANDOM, AT_EXECFN and AT_PLATFORM values are filled in here.
    pub aux: Vec<(u64, u64)>,
}

/// Lays out the initial stack below `top`: strings at the top, then (16-byte aligned) argc,
/// argv, envp and auxv. Returns the bytes for `[sp, top)` and `sp`.
pub fn build_stack(top: u64, spec: &StackSpec) -> (Vec<u8>, u64) {
    let mut strings: Vec<u8> = Vec::new();
    // Strings grow downwards from top - 8; record offsets from the final string-area start.
    let mut put = |s: &[u8], nul: bool| -> usize {
        let at = strings.len();
        strings.extend_from_slice(s);
        if nul {
            strings.push(0);
        }
        at
    };
    let argv_off: Vec<usize> = spec.argv.iter().map(|a| put(a, true)).collect();
    let envp_off: Vec<usize> = spec.envp.iter().map(|e| put(e, true)).collect();
    let execfn_off = put(&spec.execfn, true);
    let platform_off = put(&spec.platform, true);
    let random_off = put(&spec.random, false);
    let str_base = (top - 8 - strings.len() as u64) & !0xf;
    let addr = |off: usize| str_base + off as u64;

    let mut words: Vec<u64> = Vec::new();
    words.push(spec.argv.len() as u64);
    words.extend(argv_off.iter().map(|o| addr(*o)));
    words.push(0);
    words.extend(envp_off.iter().map(|o| addr(*o)));
    words.push(0);
    for &(k, v) in &spec.aux {
        let v = match (k, v) {
            (at::RANDOM, PLACEHOLDER) => addr(random_off),
            (at::EXECFN, PLACEHOLDER) => addr(execfn_off),
            (at::PLATFORM, PLACEHOLDER) => addr(platform_off),
            _ => v,
        };
        words.push(k);
        words.push(v);
    }
    words.push(at::NULL);
    words.push(0);
    let sp = (str_base - words.len() as u64 * 8) & !0xf;
    let mut bytes = vec![0u8; (top - sp) as usize];
    for (i, w) in words.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let s = (str_base - sp) as usize;
    bytes[s..s + strings.len()].copy_from_slice(&strings);
    (bytes, sp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(bytes: &[u8], sp: u64, addr: u64) -> u64 {
        let o = (addr - sp) as usize;
        u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap())
    }

    fn cstr(bytes: &[u8], sp: u64, addr: u64) -> Vec<u8> {
        let o = (addr - sp) as usize;
        bytes[o..].iter().take_while(|b| **b != 0).copied().collect()
    }

    #[test]
    fn build_stack_layout_is_what_libc_expects() {
        let spec = StackSpec {
            argv: vec![b"/bin/prog".to_vec(), b"arg1".to_vec()],
            envp: vec![b"A=1".to_vec()],
            execfn: b"/bin/prog".to_vec(),
            platform: b"x86_64".to_vec(),
            random: [7; 16],
            aux: vec![(at::PAGESZ, 4096), (at::RANDOM, PLACEHOLDER), (at::EXECFN, PLACEHOLDER)],
        };
        let top = 0x7fff_0000_0000;
        let (b, sp) = build_stack(top, &spec);
        assert_eq!(sp % 16, 0);
        assert_eq!(sp + b.len() as u64, top);
        assert_eq!(word(&b, sp, sp), 2);
        assert_eq!(cstr(&b, sp, word(&b, sp, sp + 8)), b"/bin/prog");
        assert_eq!(cstr(&b, sp, word(&b, sp, sp + 16)), b"arg1");
        assert_eq!(word(&b, sp, sp + 24), 0);
        assert_eq!(cstr(&b, sp, word(&b, sp, sp + 32)), b"A=1");
        assert_eq!(word(&b, sp, sp + 40), 0);
        assert_eq!(word(&b, sp, sp + 48), at::PAGESZ);
        assert_eq!(word(&b, sp, sp + 56), 4096);
        assert_eq!(word(&b, sp, sp + 64), at::RANDOM);
        let r = word(&b, sp, sp + 72);
        assert_eq!(&b[(r - sp) as usize..(r - sp) as usize + 16], &[7; 16]);
        assert_eq!(cstr(&b, sp, word(&b, sp, sp + 88)), b"/bin/prog");
        assert_eq!(word(&b, sp, sp + 96), at::NULL);
    }

    #[test]
    fn parse_shebang_forms() {
        assert_eq!(parse_shebang(b"#!/bin/sh\n"), Some((b"/bin/sh".to_vec(), None)));
        assert_eq!(
            parse_shebang(b"#! /usr/bin/env python3 \n"),
            Some((b"/usr/bin/env".to_vec(), Some(b"python3".to_vec())))
        );
        assert_eq!(parse_shebang(b"#!/bin/bash -e -x\n"), Some((b"/bin/bash".to_vec(), Some(b"-e -x".to_vec()))));
        assert_eq!(parse_shebang(b"#!\n"), None);
        assert_eq!(parse_shebang(b"\x7fELF"), None);
    }

    #[test]
    fn resolve_searches_path_and_reports_missing() {
        assert!(resolve(Path::new("sh")).unwrap().is_absolute());
        assert!(matches!(resolve(Path::new("no-such-program-trapbox")), Err(LoadError::NotFound(_))));
        assert_eq!(resolve(Path::new("./x")).unwrap(), PathBuf::from("./x"));
    }

    /// Headers are read as far as they reach, not a fixed amount: a program header table past
    /// the first page, and a PT_INTERP named only there and lying further still.
    #[test]
    fn headers_past_the_first_page_are_read() {
        let mut f = vec![0u8; 0x3000];
        let tiny = crate::elf::tests::tiny_elf();
        f[..64].copy_from_slice(&tiny[..64]);
        let (phoff, interp_at) = (0x1400usize, 0x2800usize);
        f[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        f[phoff..phoff + 56].copy_from_slice(&tiny[64..120]);
        f[phoff + 32..phoff + 40].copy_from_slice(&0x3000u64.to_le_bytes()); // filesz: the file
        f[phoff + 40..phoff + 48].copy_from_slice(&0x3000u64.to_le_bytes());
        let name = b"/lib64/ld-linux-x86-64.so.2\0";
        let i = phoff + 56;
        f[i..i + 4].copy_from_slice(&crate::elf::PT_INTERP.to_le_bytes());
        f[i + 8..i + 16].copy_from_slice(&(interp_at as u64).to_le_bytes());
        f[i + 32..i + 40].copy_from_slice(&(name.len() as u64).to_le_bytes());
        f[interp_at..interp_at + name.len()].copy_from_slice(name);
        let path = std::env::temp_dir().join(format!("trapbox-far-headers-{}", std::process::id()));
        std::fs::write(&path, &f).unwrap();
        let (_, head, len) = read_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(len, 0x3000);
        assert_eq!(head.len(), interp_at + name.len(), "read to the PT_INTERP's end and no further");
        let info = elf::parse_head(&head, len).unwrap();
        assert_eq!(info.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        // A usual program: its headers fit the first page, which is all that is read.
        let (_, head, len) = read_file(Path::new("/bin/true")).unwrap();
        assert!(head.len() <= 4096 && len > 4096, "{} of {len}", head.len());
        assert!(elf::parse_head(&head, len).unwrap().interp.is_some());
    }
}
