//! `trapbox inspect FILE`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use trapbox::process::elf::{self, ElfError};
use trapbox::process::loader;

/// Prints what `file` is and whether trapbox can run it; exit status 0 if it can. With
/// `events`, `file` must be a trace, whose events are listed.
pub fn inspect(file: &Path, events: bool) -> Result<i32> {
    // A report piped into `head` ends quietly when the reader goes, as other filters do (no
    // guest runs here, so the signal is trapbox's own to take).
    // SAFETY: restoring a signal's default disposition has no memory effects.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let meta = std::fs::metadata(file).with_context(|| format!("{}", file.display()))?;
    if meta.is_dir() {
        bail!("{}: is a directory", file.display());
    }
    let head = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
    if crate::record::is_trace(&head) {
        return if events { crate::record::list_events(file) } else { crate::record::inspect_trace(file) };
    }
    if events {
        bail!("{}: not a trapbox trace (--events lists a trace's events)", file.display());
    }
    println!("{}:", file.display());
    if let Some((interp, arg)) = loader::parse_shebang(&head) {
        let interp = String::from_utf8_lossy(&interp).into_owned();
        println!("  kind: script");
        println!(
            "  interpreter: {interp}{}",
            arg.map(|a| format!(" {}", String::from_utf8_lossy(&a))).unwrap_or_default()
        );
        return Ok(match loader::probe(Path::new(&interp)) {
            Ok(_) => {
                println!("  runnable: yes (through its interpreter)");
                0
            }
            Err(e) => {
                println!("  runnable: no: interpreter {e}");
                1
            }
        });
    }
    match elf::parse(&head) {
        Ok(info) => {
            println!("  kind: ELF 64-bit LSB x86-64 {}", if info.pie { "ET_DYN" } else { "ET_EXEC" });
            println!("  linkage: {}", info.linkage());
            if let Some(i) = &info.interp {
                println!("  interpreter: {i}");
            }
            let (lo, hi) = info.span();
            println!("  segments: {} PT_LOAD, span {:#x}..{:#x}", info.loads().count(), lo, hi);
            println!("  entry: {:#x}", info.entry);
            match &info.interp {
                Some(i) => match loader::probe(Path::new(i)) {
                    Ok(_) => println!("  runnable: yes"),
                    Err(e) => {
                        println!("  runnable: no: interpreter {e}");
                        return Ok(1);
                    }
                },
                None => println!("  runnable: yes"),
            }
            Ok(0)
        }
        Err(ElfError::BzImage) => {
            println!("  kind: Linux kernel image (bzImage)");
            match trapbox::boot::BzImage::parse(&head, head.len() as u64) {
                Ok(b) => {
                    for (k, v) in b.describe() {
                        println!("  {k}: {v}");
                    }
                    match b.check_bootable() {
                        Ok(()) => {
                            println!("  bootable: yes, through the 64-bit entry (`trapbox boot --kernel FILE`)")
                        }
                        Err(e) => println!("  bootable: no: {e}"),
                    }
                }
                Err(e) => println!("  bootable: no: {e}"),
            }
            Ok(1)
        }
        Err(e) => {
            let kind = match &e {
                ElfError::MachO => "Mach-O",
                ElfError::BzImage => "Linux kernel image (bzImage)",
                ElfError::NotElf(what) => what,
                ElfError::Elf32
                | ElfError::BigEndian
                | ElfError::Machine(_)
                | ElfError::Type(_)
                | ElfError::Corrupt(_) => "ELF",
            };
            println!("  kind: {kind}");
            println!("  runnable: no: {e}");
            Ok(1)
        }
    }
}
