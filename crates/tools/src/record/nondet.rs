//! Machine-dependent instructions made to trap: `rdtsc`, `rdtscp`, `cpuid`, `rdrand` and
//! `rdseed` in the guest's
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
use trapbox_trap::{Guest, GuestAddr};

/// A patched instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// Address of the instruction.
    pub addr: u64,
    /// Which instruction it was.
    pub insn: Insn,
    /// Its length.
    pub len: u64,
    /// The register rdrand or rdseed writes.
    pub dest: Option<Dest>,
}

/// A general register an instruction writes: its number (RAX 0 … R15 15, in encoding order)
/// and its size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Number in encoding order.
    pub reg: u8,
    /// 2, 4 or 8.
    pub size: u8,
}

/// The machine-dependent instruction `i` is, with the length of its opcode bytes (what
/// follows the prefixes) and the register it writes.
fn classify(i: &iced_x86::Instruction) -> Option<(Insn, u64, Option<Dest>)> {
    let dest = || {
        let r = i.op0_register();
        let full = r.full_register();
        full.is_gpr64().then(|| Dest { reg: full.number() as u8, size: r.size() as u8 })
    };
    Some(match i.mnemonic() {
        Mnemonic::Rdtsc => (Insn::Rdtsc, 2, None),
        Mnemonic::Rdtscp => (Insn::Rdtscp, 3, None),
        Mnemonic::Cpuid => (Insn::Cpuid, 2, None),
        Mnemonic::Rdrand => (Insn::Rdrand, 3, Some(dest()?)),
        Mnemonic::Rdseed => (Insn::Rdseed, 3, Some(dest()?)),
        _ => return None,
    })
}

/// Builds the decoder's tables (built on first use, about a millisecond) ahead of the first
/// scan, from a thread that has nothing else to do yet.
pub fn warm_up() {
    let _ = Decoder::new(64, &[0x0f, 0xa2], DecoderOptions::NONE).decode();
}

/// The patched sites (each with the byte its `int3` replaced) and what has been scanned.
#[derive(Debug, Default)]
pub struct Patcher {
    sites: HashMap<u64, (Site, u8)>,
    scanned: Vec<(u64, u64)>,
    failed: usize,
}

/// Offsets in `code` of the opcode bytes of rdtsc (0F 31), cpuid (0F A2), rdtscp (0F 01 F9)
/// and rdrand/rdseed (0F C7, shared with cmpxchg8b/16b): where one of them could be.
fn candidates(code: &[u8]) -> Vec<usize> {
    // One substring search per opcode (SIMD, keyed on its rarer byte) beats looking at every
    // 0x0F, which is common in x86 code.
    let mut at: Vec<usize> = [&b"\x0f\x31"[..], b"\x0f\xa2", b"\x0f\x01\xf9", b"\x0f\xc7"]
        .into_iter()
        .flat_map(|op| memchr::memmem::find_iter(code, op))
        .collect();
    at.sort_unstable();
    at
}

/// The machine-dependent instruction whose opcode is at `code[at]`, if a linear sweep that
/// starts `lead` bytes earlier decodes one there (prefixes included).
fn site_at(code: &[u8], ip: u64, at: usize, lead: usize) -> Option<Site> {
    let start = at.saturating_sub(lead);
    let end = (at + 16).min(code.len());
    let base = ip + start as u64;
    let target = ip + at as u64;
    let mut d = Decoder::with_ip(64, &code[start..end], base, DecoderOptions::NONE);
    for i in &mut d {
        if i.ip() > target {
            return None;
        }
        if i.next_ip() <= target {
            continue;
        }
        let (insn, opcode_len, dest) = classify(&i)?;
        // The candidate must be this instruction's opcode (its last bytes, after prefixes).
        return (i.next_ip() - target == opcode_len).then(|| Site { addr: i.ip(), insn, len: i.len() as u64, dest });
    }
    None
}

/// Finds the machine-dependent instructions in `code`, which sits at `ip`. Only the
/// candidates' neighbourhoods are decoded: x86 decoding resynchronises within a few
/// instructions, so sweeps that start 64 and 256 bytes earlier almost always agree on the
/// instruction at the candidate, and when they do it is taken; when they do not, a sweep
/// with a page of lead-in decides, as a whole-mapping sweep would in practice.
pub fn find_sites(code: &[u8], ip: u64) -> Vec<Site> {
    find_sites_in(code, ip, 0..code.len())
}

/// [`find_sites`] for the candidates in `code[within]`; the rest of `code` is context.
fn find_sites_in(code: &[u8], ip: u64, within: std::ops::Range<usize>) -> Vec<Site> {
    let mut out: Vec<Site> = Vec::new();
    let from = within.start;
    for at in candidates(&code[..within.end.min(code.len())]).into_iter().filter(|&at| at >= from) {
        let short = site_at(code, ip, at, 64);
        let site = if short == site_at(code, ip, at, 256) { short } else { site_at(code, ip, at, 4096) };
        if let Some(s) = site {
            if out.last() != Some(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// A plain linear sweep of `code` at `ip` (what [`find_sites`] approximates).
#[cfg(test)]
fn sweep(code: &[u8], ip: u64) -> Vec<Site> {
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    for i in &mut d {
        if let Some((insn, _, dest)) = classify(&i) {
            out.push(Site { addr: i.ip(), insn, len: i.len() as u64, dest });
        }
    }
    out
}

impl Patcher {
    /// The program's byte under the `int3` at `addr`, if this patcher put one there.
    pub fn original(&self, addr: u64) -> Option<u8> {
        self.sites.get(&addr).map(|(_, b)| *b)
    }

    /// Scans every executable mapping not scanned yet and patches what it finds.
    pub fn scan(&mut self, g: &mut dyn Guest) {
        let exec: Vec<(u64, u64)> = g
            .process()
            .map(|p| p.mappings())
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, _, p)| p & libc::PROT_EXEC != 0)
            .map(|(s, e, _)| (s, e))
            .collect();
        for (s, e) in exec {
            if self.scanned.iter().any(|&(a, b)| a <= s && e <= b) {
                continue;
            }
            self.scan_range(g, s, e);
            self.scanned.push((s, e));
        }
    }

    /// Forgets `[start, end)`: the mapping there was replaced or removed, and with it the
    /// code and its patches.
    pub fn forget(&mut self, start: u64, end: u64) {
        self.unscan(start, end);
        self.sites.retain(|a, _| *a < start || *a >= end);
    }

    /// `[start, end)` must be scanned again (its rights changed) but holds the same code,
    /// patches included.
    pub fn unscan(&mut self, start: u64, end: u64) {
        self.scanned.retain(|&(a, b)| b <= start || a >= end);
    }

    /// The code of `[from, from+old_len)` now lives at `to`, cut to `new_len` (mremap): its
    /// patches went with it.
    pub fn moved(&mut self, from: u64, old_len: u64, to: u64, new_len: u64) {
        let kept = old_len.min(new_len);
        let moving: Vec<(u64, (Site, u8))> = self
            .sites
            .iter()
            .filter(|(a, _)| (from..from.saturating_add(old_len)).contains(*a))
            .map(|(a, v)| (*a, *v))
            .collect();
        self.forget(from, from.saturating_add(old_len));
        self.forget(to, to.saturating_add(new_len));
        for (a, (mut site, byte)) in moving {
            if a - from < kept {
                site.addr = a - from + to;
                self.sites.insert(site.addr, (site, byte));
            }
        }
    }

    fn scan_range(&mut self, g: &mut dyn Guest, start: u64, end: u64) {
        // Window by window through one buffer: no copy of a whole library is made. Each
        // window is read with a page of context before it (for the decoding) and the longest
        // instruction's length after it.
        const WINDOW: u64 = 1 << 18;
        const BEFORE: u64 = 4096;
        let mut buf = Vec::new();
        let mut found: Vec<(Site, u8)> = Vec::new();
        let mut w = start;
        while w < end {
            let (lo, hi) = (w.saturating_sub(BEFORE).max(start), (w + WINDOW + 16).min(end));
            let within = (w - lo) as usize..(w.saturating_add(WINDOW).min(end) - lo) as usize;
            buf.resize((hi - lo) as usize, 0);
            if g.read(GuestAddr(lo), &mut buf).is_ok() {
                self.unpatch(&mut buf, lo);
                found.extend(find_sites_in(&buf, lo, within).into_iter().map(|st| (st, buf[(st.addr - lo) as usize])));
            } else {
                // A file mapping past its end has unreadable pages: scan the readable runs.
                for (a, mut code) in g.read_runs(GuestAddr(lo), hi - lo) {
                    self.unpatch(&mut code, a);
                    let from = w.saturating_sub(a) as usize;
                    let to = (w + WINDOW).saturating_sub(a).min(code.len() as u64) as usize;
                    if from < to {
                        let sites = find_sites_in(&code, a, from..to);
                        found.extend(sites.into_iter().map(|st| (st, code[(st.addr - a) as usize])));
                    }
                }
            }
            w = w.saturating_add(WINDOW);
        }
        for (site, byte) in found {
            if self.sites.contains_key(&site.addr) {
                continue;
            }
            match super::patch_code(g, GuestAddr(site.addr), &[0xcc]) {
                Ok(()) => {
                    self.sites.insert(site.addr, (site, byte));
                }
                Err(_) => self.failed += 1,
            }
        }
    }

    /// Puts the bytes this patcher replaced back into `code` (read from `at`), so a scan
    /// sees the code as it was.
    fn unpatch(&self, code: &mut [u8], at: u64) {
        for (addr, (_, byte)) in &self.sites {
            if let Some(b) = addr.checked_sub(at).and_then(|i| code.get_mut(usize::try_from(i).ok()?)) {
                if *b == 0xcc {
                    *b = *byte;
                }
            }
        }
    }

    /// The site behind a breakpoint trap reported at `rip` (the address after the `int3`).
    pub fn site_at_breakpoint(&self, rip: u64) -> Option<Site> {
        self.sites.get(&rip.wrapping_sub(1)).map(|(s, _)| *s)
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
                Site { addr: 0x1001, insn: Insn::Rdtsc, len: 2, dest: None },
                Site { addr: 0x1008, insn: Insn::Cpuid, len: 2, dest: None },
                Site { addr: 0x100a, insn: Insn::Rdtscp, len: 3, dest: None },
            ]
        );
    }

    #[test]
    fn find_sites_decodes_rdrand_and_rdseed_with_their_register() {
        // rdrand eax; rdseed r9; rdrand r11w (66 41 0f c7 f3); cmpxchg16b [rdi] (not one)
        let code = [0x0f, 0xc7, 0xf0, 0x49, 0x0f, 0xc7, 0xf9, 0x66, 0x41, 0x0f, 0xc7, 0xf3, 0x48, 0x0f, 0xc7, 0x0f];
        let s = find_sites(&code, 0x2000);
        let d = |reg, size| Some(Dest { reg, size });
        assert_eq!(
            s,
            vec![
                Site { addr: 0x2000, insn: Insn::Rdrand, len: 3, dest: d(0, 4) },
                Site { addr: 0x2003, insn: Insn::Rdseed, len: 4, dest: d(9, 8) },
                Site { addr: 0x2007, insn: Insn::Rdrand, len: 5, dest: d(11, 2) },
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

    #[test]
    fn find_sites_equals_full_sweep_on_system_libraries() {
        // Real code, where candidates sit among every kind of instruction: the windowed
        // decoding must find exactly what a sweep of each whole executable segment finds.
        let mut checked = 0;
        for path in ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libcrypto.so.3", "/usr/bin/python3"] {
            let Ok(bytes) = std::fs::read(path) else { continue };
            let elf = goblin::elf::Elf::parse(&bytes).unwrap();
            for ph in elf
                .program_headers
                .iter()
                .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD && p.is_executable())
            {
                let code = &bytes[ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize];
                let found = find_sites(code, ph.p_vaddr);
                assert_eq!(found, sweep(code, ph.p_vaddr), "{path}");
                checked += found.len();
            }
        }
        // libc alone has cpuid and rdtsc sites (its CPU feature set-up and its hp-timing).
        assert!(checked > 0, "no system library to check against");
    }
}
