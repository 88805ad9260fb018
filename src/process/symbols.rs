//! Function symbols of the loaded images, for crash reports (`main+0x12`).

use super::loader::Image;

/// Sorted function symbols of one image.
#[derive(Debug, Default)]
pub struct Symbols {
    /// (relocated start, size, name), sorted by start.
    funcs: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// Reads `.symtab` and `.dynsym` of the images. A file that goblin cannot parse simply
    /// contributes no symbols.
    pub fn load(images: &[&Image]) -> Symbols {
        let mut funcs = Vec::new();
        for img in images {
            let Ok(bytes) = std::fs::read(&img.path) else { continue };
            // goblin is a well-tested parser, but a crash report must never become a crash.
            let parsed = std::panic::catch_unwind(|| {
                let elf = goblin::elf::Elf::parse(&bytes).ok()?;
                let mut out = Vec::new();
                for (syms, strs) in [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)] {
                    for s in syms.iter() {
                        if s.st_type() == goblin::elf::sym::STT_FUNC && s.st_value != 0 {
                            if let Some(name) = strs.get_at(s.st_name) {
                                out.push((s.st_value, s.st_size, name.to_string()));
                            }
                        }
                    }
                }
                Some(out)
            });
            if let Ok(Some(list)) = parsed {
                funcs.extend(list.into_iter().map(|(a, sz, n)| (img.bias.wrapping_add(a), sz, n)));
            }
        }
        funcs.sort();
        funcs.dedup_by(|a, b| a.0 == b.0);
        Symbols { funcs }
    }

    /// `name+0xoff` for the function containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<String> {
        let i = self.funcs.partition_point(|(a, _, _)| *a <= addr).checked_sub(1)?;
        let (start, size, name) = &self.funcs[i];
        let off = addr - start;
        if *size != 0 && off >= *size {
            return None;
        }
        Some(if off == 0 { name.clone() } else { format!("{name}+{off:#x}") })
    }
}
