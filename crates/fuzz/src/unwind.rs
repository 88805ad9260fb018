//! The stack of a crash, for telling crashes apart: the faulting instruction and the return
//! addresses above it, found by CFI unwinding (the `.eh_frame` tables every x86-64 ELF file
//! carries, read by `framehop`), so a program built without frame pointers unwinds too.
//!
//! The modules are the objects loaded ([`Objects`]). The guest is hostile: every read may
//! fail, and a stack that cannot be unwound just has fewer frames.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::Elf;
use trapbox_trap::{Guest, GuestAddr, Regs};

use crate::objects::Objects;

/// Frames that make a crash's identity: the faulting instruction and four callers.
pub const FRAMES: usize = 5;

/// One frame: the code address, and where it is (`object+offset`, or a symbol).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The instruction (the faulting one, then each caller's return address).
    pub addr: u64,
    /// Its object's file name and the offset in it, the same wherever the object was loaded.
    pub place: Option<(String, u64)>,
    /// The function around it, from its object's symbol table (`symbol+0xoff`).
    pub symbol: Option<String>,
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

/// Function symbols: link-time start, size, name; sorted by start.
type Funcs = Vec<(u64, u64, String)>;

/// An object the unwinder knows.
struct Loaded {
    end: u64,
    /// Its file name.
    name: String,
    bias: u64,
    funcs: Funcs,
}

impl Loaded {
    /// `addr`'s function, as `name+0xoff`.
    fn symbol(&self, addr: u64) -> Option<String> {
        let at = addr.wrapping_sub(self.bias);
        let i = self.funcs.partition_point(|f| f.0 <= at).checked_sub(1)?;
        let (start, size, name) = &self.funcs[i];
        (size == &0 || at < start + size).then(|| format!("{name}+{:#x}", at - start))
    }
}

/// The unwinder, with the modules it has read.
pub struct Unwind {
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: CacheX86_64,
    /// Modules added, by start address.
    modules: HashMap<u64, Loaded>,
    /// Objects seen (path, bias), read or not.
    seen: HashSet<(PathBuf, u64)>,
    objects: Objects,
}

impl Default for Unwind {
    fn default() -> Self {
        Unwind {
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            modules: HashMap::new(),
            seen: HashSet::new(),
            objects: Objects::default(),
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
                let module = self.modules.iter().find(|(start, m)| (**start..m.end).contains(&addr));
                let place = module.map(|(start, m)| (m.name.clone(), addr - start));
                let symbol = module.and_then(|(_, m)| m.symbol(addr));
                Frame { addr, place, symbol }
            })
            .collect();
        Stack { frames }
    }

    /// Adds the objects loaded now that are not known yet: the program (its path and load
    /// bias), and those on the dynamic linker's list.
    fn learn(&mut self, g: &mut dyn Guest, (program, bias): (&Path, u64)) {
        for (path, bias) in self.objects.list(g, program, bias) {
            if !self.seen.insert((path.clone(), bias)) {
                continue;
            }
            if let Some((m, funcs)) = module(&path, bias) {
                let range = m.avma_range();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                self.modules.insert(range.start, Loaded { end: range.end, name, bias, funcs });
                self.unwinder.add_module(m);
            }
        }
    }
}

/// The unwind tables of the ELF file at `path` loaded at `bias`, and its function symbols.
fn module(path: &Path, bias: u64) -> Option<(Module<Vec<u8>>, Funcs)> {
    let bytes = std::fs::read(path).ok()?;
    let elf = Elf::parse(&bytes).ok()?;
    let mut funcs: Funcs = Vec::new();
    for (syms, strs) in [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)] {
        for s in syms.iter().filter(|s| s.st_type() == goblin::elf::sym::STT_FUNC && s.st_value != 0) {
            if let Some(name) = strs.get_at(s.st_name) {
                funcs.push((s.st_value, s.st_size, name.to_string()));
            }
        }
    }
    funcs.sort();
    funcs.dedup_by_key(|f| f.0);
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
    Some((Module::new(name, bias.wrapping_add(lo)..bias.wrapping_add(hi), bias, info), funcs))
}
