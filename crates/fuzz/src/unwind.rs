//! The stack of a crash, for telling crashes apart: the faulting instruction and the return
//! addresses above it, found by CFI unwinding (the `.eh_frame` tables every x86-64 ELF file
//! carries, read by `framehop`), so a program built without frame pointers unwinds too.
//!
//! The modules are the program file and, in a dynamic program, every object on the dynamic
//! linker's list (`r_debug`'s link maps, found through the program's `DT_DEBUG`) — read from
//! guest memory the way a debugger does, so it holds on either engine. The guest is hostile:
//! every read may fail, the list is walked a bounded number of steps, and a stack that
//! cannot be unwound just has fewer frames.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};
use goblin::elf::program_header::{PT_DYNAMIC, PT_LOAD};
use goblin::elf::Elf;
use trapbox_trap::{Guest, GuestAddr, Regs};

/// Frames that make a crash's identity: the faulting instruction and four callers.
pub const FRAMES: usize = 5;
/// Link maps walked at most (a guest can make the list a cycle).
const MAX_OBJECTS: usize = 512;
/// DT_DEBUG: the dynamic entry the dynamic linker points at its `r_debug`.
const DT_DEBUG: u64 = 21;

/// One frame: the code address, and where it is (`object+offset`, or a symbol).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The instruction (the faulting one, then each caller's return address).
    pub addr: u64,
    /// Its object's file name and the offset in it, the same wherever the object was loaded.
    pub place: Option<(String, u64)>,
}

/// A crash's stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stack {
    /// Innermost first.
    pub frames: Vec<Frame>,
}

impl Stack {
    /// A hash of the frames' places (FNV-1a): equal for the same path to the same fault.
    pub fn hash(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u32::from(*b);
                h = h.wrapping_mul(0x0100_0193);
            }
        };
        for f in &self.frames {
            match &f.place {
                Some((object, offset)) => {
                    eat(object.as_bytes());
                    eat(&offset.to_le_bytes());
                }
                None => eat(&f.addr.to_le_bytes()),
            }
        }
        h
    }
}

/// The unwinder, with the modules it has read.
pub struct Unwind {
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: CacheX86_64,
    /// Modules added: start -> (end, file name).
    modules: HashMap<u64, (u64, String)>,
    /// Objects seen (path, bias), read or not.
    seen: HashSet<(PathBuf, u64)>,
    /// Each program's dynamic section (link-time address and size), read once: a campaign of
    /// crashing inputs unwinds at every execution.
    dynamic: HashMap<PathBuf, Option<(u64, u64)>>,
}

impl Default for Unwind {
    fn default() -> Self {
        Unwind {
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            modules: HashMap::new(),
            seen: HashSet::new(),
            dynamic: HashMap::new(),
        }
    }
}

impl Unwind {
    /// The stack of the thread `g` at registers `r` (the faulting instruction's).
    pub fn stack(&mut self, g: &mut dyn Guest, r: &Regs, program: (&Path, u64)) -> Stack {
        self.learn(g, program);
        let mut read = |addr: u64| {
            let mut b = [0u8; 8];
            g.read(GuestAddr(addr), &mut b).map(|_| u64::from_le_bytes(b)).map_err(|_| ())
        };
        let regs = UnwindRegsX86_64::new(r.rip, r.rsp, r.rbp);
        let mut frames = Vec::new();
        let mut it = self.unwinder.iter_frames(r.rip, regs, &mut self.cache, &mut read);
        while frames.len() < FRAMES {
            let Ok(Some(f)) = it.next() else { break };
            frames.push(f.address());
        }
        let frames = frames
            .into_iter()
            .map(|addr| {
                let place = self
                    .modules
                    .iter()
                    .find(|(start, (end, _))| (**start..*end).contains(&addr))
                    .map(|(start, (_, name))| (name.clone(), addr - start));
                Frame { addr, place }
            })
            .collect();
        Stack { frames }
    }

    /// Adds the objects loaded now that are not known yet: the program (its path and load
    /// bias), and those on the dynamic linker's list.
    fn learn(&mut self, g: &mut dyn Guest, (program, bias): (&Path, u64)) {
        let mut objects = vec![(program.to_path_buf(), bias)];
        if let Some(list) = self.link_maps(g, program, bias) {
            objects.extend(list);
        }
        for (path, bias) in objects {
            if !self.seen.insert((path.clone(), bias)) {
                continue;
            }
            if let Some(m) = module(&path, bias) {
                let range = m.avma_range();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                self.modules.insert(range.start, (range.end, name));
                self.unwinder.add_module(m);
            }
        }
    }

    /// The dynamic linker's objects (path, load bias), from the program's `DT_DEBUG`; None for
    /// a static program or one whose list cannot be read.
    fn link_maps(&mut self, g: &mut dyn Guest, program: &Path, bias: u64) -> Option<Vec<(PathBuf, u64)>> {
        let (vaddr, size) = (*self.dynamic.entry(program.to_path_buf()).or_insert_with(|| {
            let bytes = std::fs::read(program).ok()?;
            let elf = Elf::parse(&bytes).ok()?;
            elf.program_headers.iter().find(|p| p.p_type == PT_DYNAMIC).map(|d| (d.p_vaddr, d.p_memsz))
        }))?;
        let read = |g: &mut dyn Guest, at: u64| {
            let mut b = [0u8; 8];
            g.read(GuestAddr(at), &mut b).ok().map(|_| u64::from_le_bytes(b))
        };
        // The dynamic section in guest memory (the linker wrote DT_DEBUG's value there).
        let table = bias.wrapping_add(vaddr);
        let entries = (size / 16).min(1024);
        let r_debug = (0..entries).find_map(|i| {
            let tag = read(g, table + i * 16)?;
            (tag == DT_DEBUG).then(|| read(g, table + i * 16 + 8)).flatten()
        })?;
        // r_debug: { int r_version; struct link_map *r_map; ... }; link_map: { l_addr,
        // l_name, l_ld, l_next, l_prev }.
        let mut map = read(g, r_debug.checked_add(8)?)?;
        let mut out = Vec::new();
        for _ in 0..MAX_OBJECTS {
            if map == 0 {
                break;
            }
            let l_addr = read(g, map)?;
            let name = read(g, map.checked_add(8)?)?;
            if let Ok(path) = g.read_cstr(GuestAddr(name), 4096) {
                // The program itself has an empty name; the vDSO's is no file.
                let path = PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(path));
                if path.is_absolute() && path.is_file() {
                    out.push((path, l_addr));
                }
            }
            map = read(g, map.checked_add(24)?)?;
        }
        Some(out)
    }
}

/// The unwind tables of the ELF file at `path` loaded at `bias`.
fn module(path: &Path, bias: u64) -> Option<Module<Vec<u8>>> {
    let bytes = std::fs::read(path).ok()?;
    let elf = Elf::parse(&bytes).ok()?;
    let loads = elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD);
    let lo = loads.clone().map(|p| p.p_vaddr).min()?;
    let hi = loads.map(|p| p.p_vaddr + p.p_memsz).max()?;
    let section = |name: &str| {
        let s = elf.section_headers.iter().find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(name))?;
        let range = s.sh_addr..s.sh_addr + s.sh_size;
        let data = bytes.get(s.sh_offset as usize..(s.sh_offset + s.sh_size) as usize).map(<[u8]>::to_vec);
        Some((range, data))
    };
    let (text_svma, text) = section(".text").map_or((None, None), |(r, d)| (Some(r), d));
    let (eh_frame_svma, eh_frame) = section(".eh_frame").map_or((None, None), |(r, d)| (Some(r), d));
    let (eh_frame_hdr_svma, eh_frame_hdr) = section(".eh_frame_hdr").map_or((None, None), |(r, d)| (Some(r), d));
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma,
        text,
        got_svma: section(".got").map(|(r, _)| r),
        eh_frame_svma,
        eh_frame,
        eh_frame_hdr_svma,
        eh_frame_hdr,
        ..Default::default()
    };
    let name = path.to_string_lossy().into_owned();
    Some(Module::new(name, bias.wrapping_add(lo)..bias.wrapping_add(hi), bias, info))
}
