//! Machine-dependent instructions made to trap: `rdtsc`, `rdtscp` and `cpuid` in the guest's
//! executable mappings are found by disassembly (iced-x86, linear sweep) and their first byte
//! replaced by `int3`, so each execution becomes a breakpoint trap that the recorder answers
//! (and records) and the replayer answers from the trace.
//!
//! Why not CR4.TSD and CPUID faulting: on PVM, CR4.TSD is ignored for guest user code, the
//! host's per-task TSC control (PR_SET_TSC) does not reach it, and the CPU offers no CPUID
//! faulting (measured). Patching works on both kinds of KVM. A linear sweep assumes executable
//! segments hold code only (true of modern toolchains' separate-code layouts); instructions
//! generated at run time (JIT) are not seen.

use std::collections::HashMap;

use iced_x86::{Decoder, DecoderOptions, Mnemonic};

use super::event::Insn;
use crate::trap::{Guest, GuestAddr};

/// A patched instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// Address of the instruction.
    pub addr: u64,
    /// Which instruction it was.
    pub insn: Insn,
    /// Its length.
    pub len: u64,
}

/// The patched sites and what has been scanned.
#[derive(Debug, Default)]
pub struct Patcher {
    sites: HashMap<u64, Site>,
    scanned: Vec<(u64, u64)>,
    failed: usize,
}

/// Finds the machine-dependent instructions in `code`, which sits at `ip`.
pub fn find_sites(code: &[u8], ip: u64) -> Vec<Site> {
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    for i in &mut d {
        let insn = match i.mnemonic() {
            Mnemonic::Rdtsc => Insn::Rdtsc,
            Mnemonic::Rdtscp => Insn::Rdtscp,
            Mnemonic::Cpuid => Insn::Cpuid,
            _ => continue,
        };
        out.push(Site { addr: i.ip(), insn, len: i.len() as u64 });
    }
    out
}

impl Patcher {
    /// Scans every executable mapping not scanned yet and patches what it finds.
    pub fn scan(&mut self, g: &mut dyn Guest) {
        let exec: Vec<(u64, u64)> =
            g.mappings().into_iter().filter(|(_, _, p)| p & libc::PROT_EXEC != 0).map(|(s, e, _)| (s, e)).collect();
        for (s, e) in exec {
            if self.scanned.iter().any(|&(a, b)| a <= s && e <= b) {
                continue;
            }
            self.scan_range(g, s, e);
            self.scanned.push((s, e));
        }
    }

    /// Forgets scans of `[start, end)` (the mapping there changed).
    pub fn forget(&mut self, start: u64, end: u64) {
        self.scanned.retain(|&(a, b)| b <= start || a >= end);
        self.sites.retain(|a, _| *a < start || *a >= end);
    }

    fn scan_range(&mut self, g: &mut dyn Guest, start: u64, end: u64) {
        let mut code = vec![0u8; (end - start) as usize];
        if g.read(GuestAddr(start), &mut code).is_err() {
            // Partly unreadable (a file mapping past its end): scan page by page.
            for (i, page) in code.chunks_mut(4096).enumerate() {
                if g.read(GuestAddr(start + i as u64 * 4096), page).is_err() {
                    page.fill(0);
                }
            }
        }
        for site in find_sites(&code, start) {
            if self.sites.contains_key(&site.addr) {
                continue;
            }
            match g.patch_code(GuestAddr(site.addr), &[0xcc]) {
                Ok(()) => {
                    self.sites.insert(site.addr, site);
                }
                Err(_) => self.failed += 1,
            }
        }
    }

    /// The site behind a breakpoint trap reported at `rip` (the address after the `int3`).
    pub fn site_at_breakpoint(&self, rip: u64) -> Option<Site> {
        self.sites.get(&rip.wrapping_sub(1)).copied()
    }

    /// Number of patched sites.
    pub fn sites(&self) -> usize {
        self.sites.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_sites_decodes_rdtsc_rdtscp_cpuid() {
        // nop; rdtsc; mov eax, 1; cpuid; rdtscp; ret
        let code = [0x90, 0x0f, 0x31, 0xb8, 1, 0, 0, 0, 0x0f, 0xa2, 0x0f, 0x01, 0xf9, 0xc3];
        let s = find_sites(&code, 0x1000);
        assert_eq!(
            s,
            vec![
                Site { addr: 0x1001, insn: Insn::Rdtsc, len: 2 },
                Site { addr: 0x1008, insn: Insn::Cpuid, len: 2 },
                Site { addr: 0x100a, insn: Insn::Rdtscp, len: 3 },
            ]
        );
    }

    #[test]
    fn find_sites_ignores_bytes_inside_other_instructions() {
        // mov eax, 0x310f (the rdtsc bytes as an immediate)
        let code = [0xb8, 0x0f, 0x31, 0, 0];
        assert!(find_sites(&code, 0).is_empty());
    }
}
