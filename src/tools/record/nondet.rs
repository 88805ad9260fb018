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

/// Whether `page` contains the opcode bytes of rdtsc (0F 31), cpuid (0F A2) or rdtscp
/// (0F 01 F9).
fn has_candidate(page: &[u8]) -> bool {
    page.windows(2).any(|w| w[0] == 0x0f && matches!(w[1], 0x31 | 0xa2 | 0x01))
}

/// Finds the machine-dependent instructions in `code`, which sits at `ip`, decoding only the
/// pages whose bytes could hold one, each preceded by a page of lead-in so that the linear
/// sweep is back on instruction boundaries when it reaches them (x86 decoding resynchronises
/// within a few instructions). Sites found in a lead-in are left to their own page's pass.
pub fn find_sites(code: &[u8], ip: u64) -> Vec<Site> {
    const PAGE: usize = 4096;
    let mut out = Vec::new();
    for (i, page) in code.chunks(PAGE).enumerate() {
        if !has_candidate(page) {
            continue;
        }
        let (start, end) = (i.saturating_sub(1) * PAGE, ((i + 1) * PAGE).min(code.len()));
        let page_lo = ip + (i * PAGE) as u64;
        out.extend(sweep(&code[start..end], ip + start as u64).into_iter().filter(|s| s.addr >= page_lo));
    }
    out
}

/// A plain linear sweep of `code` at `ip`.
fn sweep(code: &[u8], ip: u64) -> Vec<Site> {
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
        // A file mapping past its end has unreadable pages: scan the readable runs.
        let found: Vec<Site> =
            g.read_runs(GuestAddr(start), end - start).iter().flat_map(|(a, code)| find_sites(code, *a)).collect();
        for site in found {
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
    fn find_sites_with_prefilter_equals_full_sweep() {
        // Generated code: many pages of `add eax, imm32`, with cpuid and rdtsc in page 5.
        let mut code = Vec::new();
        while code.len() < 5 * 4096 + 100 {
            code.extend_from_slice(&[0x05, 0x11, 0x22, 0x33, 0x44]);
        }
        code.extend_from_slice(&[0x0f, 0xa2, 0x0f, 0x31]);
        while code.len() < 8 * 4096 {
            code.extend_from_slice(&[0x05, 0x11, 0x22, 0x33, 0x44]);
        }
        assert_eq!(find_sites(&code, 0x10000), sweep(&code, 0x10000));
        assert_eq!(find_sites(&code, 0x10000).len(), 2);
    }

    #[test]
    fn find_sites_ignores_bytes_inside_other_instructions() {
        // mov eax, 0x310f (the rdtsc bytes as an immediate)
        let code = [0xb8, 0x0f, 0x31, 0, 0];
        assert!(find_sites(&code, 0).is_empty());
    }
}
