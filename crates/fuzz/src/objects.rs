//! The objects loaded in the guest: the program and, in a dynamic program, every object on the
//! dynamic linker's list (`r_debug`'s link maps, found through the program's `DT_DEBUG`),
//! read from guest memory the way a debugger reads them, so it holds on either engine. The
//! guest is hostile: every read may fail, and the list is walked a bounded number of steps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use goblin::elf::program_header::PT_DYNAMIC;
use goblin::elf::Elf;
use trapbox_trap::{Guest, GuestAddr};

/// Link maps walked at most (a guest can make the list a cycle).
const MAX_OBJECTS: usize = 512;
/// DT_DEBUG: the dynamic entry the dynamic linker points at its `r_debug`.
const DT_DEBUG: u64 = 21;

/// Finds the objects; remembers each program's dynamic section.
#[derive(Default)]
pub struct Objects {
    /// Each program's dynamic section (link-time address and size), read once: a campaign
    /// of crashing inputs looks at every execution.
    dynamic: HashMap<PathBuf, Option<(u64, u64)>>,
}

impl Objects {
    /// The objects loaded now, as (path, load bias): the program (`program`, moved by
    /// `bias`) first, then those on the dynamic linker's list that are files (not the vDSO).
    pub fn list(&mut self, g: &mut dyn Guest, program: &Path, bias: u64) -> Vec<(PathBuf, u64)> {
        let mut out = vec![(program.to_path_buf(), bias)];
        out.extend(self.link_maps(g, program, bias).unwrap_or_default());
        out
    }

    /// The dynamic linker's list; None for a static program or one whose list cannot be read.
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
        let r_debug = (0..(size / 16).min(1024)).find_map(|i| {
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
