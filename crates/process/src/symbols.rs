//! Function symbols of the loaded images, for crash reports (`main+0x12`).

use std::path::PathBuf;
use std::sync::OnceLock;

use super::loader::Image;

/// Function symbols of the loaded images, read when first asked for: a run that does not
/// crash never reads them (a large program's symbol table costs milliseconds per start and
/// per exec).
#[derive(Debug, Default)]
pub struct Symbols {
    /// The images: path and load bias.
    images: Vec<(PathBuf, u64)>,
    /// The images' address ranges: a size-less symbol (`_fini`) does not claim what lies
    /// beyond its image.
    spans: Vec<(u64, u64)>,
    /// (relocated start, size, name), sorted by start.
    funcs: OnceLock<Vec<(u64, u64, String)>>,
}

impl Symbols {
    /// The symbols of `images`, to be read on the first lookup.
    pub fn load(images: &[&Image]) -> Symbols {
        let spans = images
            .iter()
            .map(|i| {
                let (lo, hi) = i.info.span();
                (i.bias.wrapping_add(lo), i.bias.wrapping_add(hi))
            })
            .collect();
        Symbols { images: images.iter().map(|i| (i.path.clone(), i.bias)).collect(), spans, funcs: OnceLock::new() }
    }

    /// Reads `.symtab` and `.dynsym` of the images. A file that goblin cannot parse simply
    /// contributes no symbols.
    fn read(images: &[(PathBuf, u64)]) -> Vec<(u64, u64, String)> {
        let mut funcs = Vec::new();
        for (path, bias) in images {
            let Ok(bytes) = std::fs::read(path) else { continue };
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
                funcs.extend(list.into_iter().map(|(a, sz, n)| (bias.wrapping_add(a), sz, n)));
            }
        }
        funcs.sort();
        funcs.dedup_by(|a, b| a.0 == b.0);
        funcs
    }

    /// `name+0xoff` for the function containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<String> {
        if !self.spans.iter().any(|(lo, hi)| (*lo..*hi).contains(&addr)) {
            return None;
        }
        let funcs = self.funcs.get_or_init(|| Self::read(&self.images));
        let i = funcs.partition_point(|(a, _, _)| *a <= addr).checked_sub(1)?;
        let (start, size, name) = &funcs[i];
        let off = addr - start;
        if *size != 0 && off >= *size {
            return None;
        }
        Some(if off == 0 { name.clone() } else { format!("{name}+{off:#x}") })
    }
}
