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
    /// Edge counters the compiler put in the program, if it was built with them.
    pub counters: Option<Counters>,
}

/// Edge counters a compiler put in a program, which coverage reads after each execution
/// instead of setting a breakpoint on every block (link-time addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counters {
    /// AFL++'s (`afl-cc`, `afl-clang-fast`, `afl-gcc-fast`): a byte per edge in the map
    /// `__afl_area_ptr` points at, edges numbered from 1 to `__afl_final_loc` at start-up.
    Afl {
        /// `__afl_area_ptr`.
        area_ptr: u64,
        /// `__afl_final_loc`.
        final_loc: u64,
    },
    /// SanitizerCoverage's inline 8-bit counters (`-fsanitize-coverage=inline-8bit-counters`):
    /// the `__sancov_cntrs` section, a byte per edge.
    Sancov {
        /// The section's address.
        start: u64,
        /// Its length.
        len: u64,
    },
}

impl Counters {
    /// What the coverage's slots are, in words.
    pub fn name(&self) -> &'static str {
        match self {
            Counters::Afl { .. } => "edges (AFL++ counters)",
            Counters::Sancov { .. } => "edges (SanitizerCoverage counters)",
        }
    }
}

/// The program's edge counters: AFL++'s map symbols, or SanitizerCoverage's section.
fn counters(elf: &Elf<'_>) -> Option<Counters> {
    let symbol = |want: &str| {
        [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)].into_iter().find_map(|(syms, strs)| {
            syms.iter().find(|s| s.st_value != 0 && strs.get_at(s.st_name) == Some(want)).map(|s| s.st_value)
        })
    };
    if let (Some(area_ptr), Some(final_loc)) = (symbol("__afl_area_ptr"), symbol("__afl_final_loc")) {
        return Some(Counters::Afl { area_ptr, final_loc });
    }
    let sh = elf.section_headers.iter().find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some("__sancov_cntrs"))?;
    (sh.sh_size > 0).then_some(Counters::Sancov { start: sh.sh_addr, len: sh.sh_size })
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
        let counters = counters(&elf);
        Ok(Target { blocks: leaders, funcs, pie: elf.header.e_type == goblin::elf::header::ET_DYN, lowest, counters })
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
