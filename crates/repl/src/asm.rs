//! Assembling what the user types: GNU `as` run as a subprocess.
//!
//! Why GNU `as`: no pure-Rust crate assembles *text* — iced-x86's `code_asm` is a Rust API,
//! not a parser — and what people type at a REPL is the whole language: every mnemonic,
//! AVX-512 with masking and broadcast, x87, labels and local jumps in a block, both Intel and
//! AT&T syntax. `as` has all of it, is installed wherever gcc is, and costs a few
//! milliseconds per line; keystone would add a GPL C++ build.
//!
//! `as` writes a relocatable object; its `.text` is the code. Relocations left in it (a jump
//! to an absolute address, a reference to the block's own start) are applied here for the
//! address the code will run at; a reference to a symbol nothing defines is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use goblin::elf::{reloc, section_header::SHN_ABS, section_header::SHN_UNDEF, Elf};

/// The assembler's syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// Intel syntax, no register prefixes (`mov rax, [rbx+8]`).
    Intel,
    /// AT&T syntax (`movq 8(%rbx), %rax`).
    Att,
}

/// Why a line did not assemble.
#[derive(Debug, thiserror::Error)]
pub enum AsmError {
    /// GNU `as` is not installed or did not run.
    #[error("cannot run GNU as ({0}); install binutils")]
    Missing(std::io::Error),
    /// The assembler's own message, one line per error.
    #[error("{0}")]
    Rejected(Message),
    /// The object `as` wrote could not be read back.
    #[error("cannot read the assembled object: {0}")]
    Object(goblin::error::Error),
    /// A relocation the REPL cannot apply (a symbol nothing defines, an unusual kind).
    #[error("`{symbol}` is not defined here (only the line's or block's own labels are)")]
    Undefined {
        /// The symbol's name.
        symbol: SymbolName,
    },
    /// Writing the source or reading the object failed.
    #[error("assembler scratch file: {0}")]
    Io(std::io::Error),
}

/// The assembler's error lines, without its `{standard input}:N:` prefixes.
#[derive(Debug)]
pub struct Message(pub Vec<u8>);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(String::from_utf8_lossy(&self.0).trim_end())
    }
}

/// A symbol's name as the object spells it.
#[derive(Debug)]
pub struct SymbolName(pub Vec<u8>);

impl std::fmt::Display for SymbolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A GNU `as` session: its syntax and a private scratch directory for the objects.
pub struct Assembler {
    syntax: Syntax,
    object: PathBuf,
}

impl Assembler {
    /// An assembler writing its objects in `dir` (the session's own directory).
    pub fn new(syntax: Syntax, dir: &Path) -> Result<Assembler, AsmError> {
        Command::new("as").arg("--version").stdout(Stdio::null()).status().map_err(AsmError::Missing)?;
        Ok(Assembler { syntax, object: dir.join("line.o") })
    }

    /// Assembles `source` (one line, or a block with labels) to run at `at`.
    pub fn assemble(&self, source: &str, at: u64) -> Result<Vec<u8>, AsmError> {
        let mut text = String::from(match self.syntax {
            Syntax::Intel => ".intel_syntax noprefix\n",
            Syntax::Att => ".att_syntax prefix\n",
        });
        text.push_str(source);
        text.push('\n');
        let _ = std::fs::remove_file(&self.object);
        let mut child = Command::new("as")
            .args(["--64", "-o"])
            .arg(&self.object)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(AsmError::Missing)?;
        child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).map_err(AsmError::Io)?;
        let out = child.wait_with_output().map_err(AsmError::Io)?;
        if !out.status.success() {
            return Err(AsmError::Rejected(message(&out.stderr, source.contains('\n'))));
        }
        let object = std::fs::read(&self.object).map_err(AsmError::Io)?;
        code_of(&object, at)
    }
}

/// The error lines of `as`'s output, each without the `{standard input}:N: ` prefix; the
/// line number counts the syntax directive, so it is made the user's own.
fn message(stderr: &[u8], block: bool) -> Message {
    let mut out = Vec::new();
    for line in stderr.split(|b| *b == b'\n') {
        let Some(rest) = line.strip_prefix(b"{standard input}:") else { continue };
        let Some(colon) = rest.iter().position(|b| *b == b':') else { continue };
        let n: Option<usize> = std::str::from_utf8(&rest[..colon]).ok().and_then(|s| s.parse().ok());
        let Some(n) = n else { continue };
        let what = rest[colon + 1..].trim_ascii_start();
        let what = what.strip_prefix(b"Error: ").or_else(|| what.strip_prefix(b"Warning: ")).unwrap_or(what);
        // The directive that sets the syntax is line 1; a one-line input needs no number.
        if block {
            out.extend_from_slice(format!("line {}: ", n.saturating_sub(1)).as_bytes());
        }
        out.extend_from_slice(what);
        out.push(b'\n');
    }
    if out.is_empty() {
        out.extend_from_slice(stderr);
    }
    Message(out)
}

/// The `.text` of an object, its relocations applied for code placed at `at`.
fn code_of(object: &[u8], at: u64) -> Result<Vec<u8>, AsmError> {
    let elf = Elf::parse(object).map_err(AsmError::Object)?;
    let Some((index, text)) =
        elf.section_headers.iter().enumerate().find(|(_, s)| elf.shdr_strtab.get_at(s.sh_name) == Some(".text"))
    else {
        return Ok(Vec::new());
    };
    let start = text.sh_offset as usize;
    let mut code = object.get(start..start + text.sh_size as usize).unwrap_or_default().to_vec();
    for (target, relocs) in &elf.shdr_relocs {
        if elf.section_headers.get(*target).map(|s| s.sh_info as usize) != Some(index) {
            continue;
        }
        for r in relocs.iter() {
            let sym = elf.syms.get(r.r_sym).unwrap_or_default();
            let name = || SymbolName(elf.strtab.get_at(sym.st_name).unwrap_or("?").as_bytes().to_vec());
            // The block's own sections resolve to the code's address; absolute symbols to
            // themselves; anything undefined has no address here.
            let base = match sym.st_shndx as u32 {
                SHN_UNDEF if r.r_sym != 0 => return Err(AsmError::Undefined { symbol: name() }),
                SHN_ABS => sym.st_value,
                s if s as usize == index => at.wrapping_add(sym.st_value),
                0 => 0,
                _ => return Err(AsmError::Undefined { symbol: name() }),
            };
            let value = base.wrapping_add(r.r_addend.unwrap_or(0) as u64);
            let place = at.wrapping_add(r.r_offset);
            let off = r.r_offset as usize;
            let (bytes, len): ([u8; 8], usize) = match r.r_type {
                reloc::R_X86_64_PC32 | reloc::R_X86_64_PLT32 => {
                    ((value.wrapping_sub(place) as u32 as u64).to_le_bytes(), 4)
                }
                reloc::R_X86_64_32 | reloc::R_X86_64_32S => ((value as u32 as u64).to_le_bytes(), 4),
                reloc::R_X86_64_64 => (value.to_le_bytes(), 8),
                reloc::R_X86_64_PC64 => (value.wrapping_sub(place).to_le_bytes(), 8),
                _ => return Err(AsmError::Undefined { symbol: name() }),
            };
            let Some(dst) = code.get_mut(off..off + len) else { return Err(AsmError::Undefined { symbol: name() }) };
            dst.copy_from_slice(&bytes[..len]);
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Assembles in a directory of its own (tests run in parallel; a session has one each).
    fn asm(syntax: Syntax, src: &str) -> Result<Vec<u8>, AsmError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("trapbox-asm-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Assembler::new(syntax, &dir).unwrap().assemble(src, 0x401000)
    }

    #[test]
    fn intel_and_att_give_the_same_bytes() {
        assert_eq!(asm(Syntax::Intel, "add rax, 1").unwrap(), [0x48, 0x83, 0xc0, 0x01]);
        assert_eq!(asm(Syntax::Att, "addq $1, %rax").unwrap(), [0x48, 0x83, 0xc0, 0x01]);
    }

    #[test]
    fn avx512_x87_and_labels_assemble() {
        assert_eq!(asm(Syntax::Intel, "vpaddd zmm1{k1}, zmm2, zmm3").unwrap().first(), Some(&0x62));
        assert_eq!(asm(Syntax::Intel, "fldpi").unwrap(), [0xd9, 0xeb]);
        let lp = asm(Syntax::Intel, "mov ecx, 3\nagain: dec ecx\njnz again").unwrap();
        assert_eq!(&lp[lp.len() - 2..], &[0x75, 0xfc]);
    }

    #[test]
    fn an_absolute_jump_is_relocated_for_where_the_code_runs() {
        // jmp rel32 from 0x401000: 0x401005 + rel = 0x402000.
        let code = asm(Syntax::Intel, "jmp 0x402000").unwrap();
        assert_eq!(code[0], 0xe9);
        assert_eq!(i32::from_le_bytes(code[1..5].try_into().unwrap()), 0x402000 - 0x401005);
    }

    #[test]
    fn bad_input_gets_the_assemblers_message_and_undefined_symbols_are_named() {
        let e = asm(Syntax::Intel, "frobnicate rax").unwrap_err().to_string();
        assert!(e.contains("no such instruction"), "{e}");
        let e = asm(Syntax::Intel, "call printf").unwrap_err().to_string();
        assert!(e.contains("`printf` is not defined"), "{e}");
    }
}
