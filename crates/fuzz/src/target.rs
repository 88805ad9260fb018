//! What the fuzzer learns from the program file before it runs: its basic blocks (the
//! coverage map's slots) and the symbols it calls or stops at.
//!
//! Blocks are found by disassembling every executable section linearly (iced-x86) and taking
//! as leaders each function's start, each direct branch's and call's target, and the
//! instruction after each branch. A linear sweep can misread data placed among code; a
//! breakpoint there is never hit, and costs only a slot.

use std::path::Path;

use goblin::elf::{program_header::PT_LOAD, section_header::SHF_EXECINSTR, sym::STT_FUNC, Elf};
use iced_x86::{Decoder, DecoderOptions, FlowControl};

/// Why the program file cannot be fuzzed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not an ELF file goblin can parse.
    #[error("{0} is not an ELF executable trapbox can read")]
    NotElf(std::path::PathBuf),
    /// A symbol the fuzzer needs is not in its symbol table.
    #[error("{path} has no function symbol {name} (built with -s, or not defined)")]
    NoSymbol {
        /// The file.
        path: std::path::PathBuf,
        /// The symbol.
        name: String,
    },
}

/// The program as linked: its blocks and symbols, at link-time addresses (add the load bias
/// for a position-independent executable).
pub struct Target {
    /// Block leaders, sorted, unique.
    pub blocks: Vec<u64>,
    /// Function symbols: name and link-time address.
    funcs: Vec<(String, u64)>,
    /// Whether the file is position-independent (ET_DYN): its addresses move by a bias.
    pub pie: bool,
    /// The lowest PT_LOAD address: where a PIE's bias is counted from.
    pub lowest: u64,
}

impl Target {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Target, TargetError> {
        let bytes = std::fs::read(path).map_err(|source| TargetError::Read { path: path.into(), source })?;
        let elf = Elf::parse(&bytes).map_err(|_| TargetError::NotElf(path.into()))?;
        let mut funcs: Vec<(String, u64)> = Vec::new();
        for (syms, strs) in [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)] {
            for s in syms.iter().filter(|s| s.st_type() == STT_FUNC && s.st_value != 0) {
                if let Some(name) = strs.get_at(s.st_name) {
                    funcs.push((name.to_string(), s.st_value));
                }
            }
        }
        let mut leaders: Vec<u64> = funcs.iter().map(|f| f.1).collect();
        for sh in elf.section_headers.iter().filter(|s| s.sh_flags & SHF_EXECINSTR as u64 != 0) {
            let (off, size) = (sh.sh_offset as usize, sh.sh_size as usize);
            let Some(code) = bytes.get(off..off.saturating_add(size)) else { continue };
            let (start, end) = (sh.sh_addr, sh.sh_addr + sh.sh_size);
            let mut dec = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
            for insn in &mut dec {
                match insn.flow_control() {
                    FlowControl::Next => continue,
                    FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call => {
                        let t = insn.near_branch_target();
                        if t >= start && t < end {
                            leaders.push(t);
                        }
                    }
                    _ => {}
                }
                if insn.next_ip() < end {
                    leaders.push(insn.next_ip());
                }
            }
        }
        // Only leaders inside executable sections are blocks (a symbol of another kind of
        // section, mislabelled, is not).
        let exec: Vec<(u64, u64)> = elf
            .section_headers
            .iter()
            .filter(|s| s.sh_flags & SHF_EXECINSTR as u64 != 0)
            .map(|s| (s.sh_addr, s.sh_addr + s.sh_size))
            .collect();
        leaders.retain(|a| exec.iter().any(|(s, e)| s <= a && a < e));
        leaders.sort_unstable();
        leaders.dedup();
        let lowest = elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD).map(|p| p.p_vaddr).min().unwrap_or(0);
        Ok(Target { blocks: leaders, funcs, pie: elf.header.e_type == goblin::elf::header::ET_DYN, lowest })
    }

    /// The link-time address of function `name`.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.funcs.iter().find(|f| f.0 == name).map(|f| f.1)
    }

    /// [`Target::symbol`], or the error naming `path`.
    pub fn require(&self, path: &Path, name: &str) -> Result<u64, TargetError> {
        self.symbol(name).ok_or_else(|| TargetError::NoSymbol { path: path.into(), name: name.into() })
    }
}
