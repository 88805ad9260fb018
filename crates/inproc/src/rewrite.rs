//! Rewriting hot syscall sites so that they reach trapbox without a signal.
//!
//! Syscall User Dispatch turns every guest `syscall` into a SIGSYS: a signal frame written and
//! read back each time. A site seen [`HOT`] times is rewritten to jump to the fast exit
//! (`entry.rs`) instead. `syscall` is two bytes and a jump to anywhere useful is five, and page
//! 0 is not ours to map (`mmap_min_addr`), so a rewrite takes three pieces:
//!
//! - the site becomes `jmp rel8` to dead padding at most 127 bytes after it: alignment NOPs or
//!   int3s that follow a return or an unconditional jump, found by decoding forward from the
//!   site (a known instruction boundary), so no instruction is split and nothing runs there;
//! - the padding gets `jmp rel32` to the site's stub;
//! - the stub, in a page trapbox keeps within ±2 GiB and out of the guest's reach (the
//!   process layer places it: [`StubPages`]), saves RCX and R11 in the thread's block (through
//!   GS, which trapbox owns on the threads of a process with rewrites), sets RCX to the address
//!   after the site as `syscall` does, and jumps to the fast exit.
//!
//! No thread ever sees a half-written site: the stub and the padding are written first (no
//! thread runs them yet), then the site goes `int3`, its second byte, its first byte — a
//! thread that reaches the transient `int3` is put back at the site (`transient_int3`).
//! A signal that lands on the way (padding, stub, the fast exit until the guest is out) puts
//! the thread back at the site with its registers as they were (`locate`).
//!
//! SUD stays the net for every site that cannot be rewritten (no padding in reach, code that
//! cannot be written), for JIT code and for everything before a site is hot. A guest that
//! loads GS itself through `arch_prctl` gets every site back first ([`withdraw`]); one that
//! writes it with `wrgsbase` (no libc does) is not seen, and must run without rewriting.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic};

use crate::entry;

/// SUD exits at a site before it is rewritten: a rewrite costs about as much as ten SIGSYS
/// crossings (its writes through /proc/self/mem, the page copy), so a site is rewritten once it
/// has shown it will repay that.
pub const HOT: u32 = 16;
/// Bytes of a stub.
const SLOT: u64 = 48;
const PAGE: u64 = 4096;
/// Where the stub's absolute address of the fast exit sits.
const SLOT_TARGET: u64 = 32;
/// From this offset in a stub on, RCX and R11 are the stub's (saved in the block).
pub(super) const STUB_SAVED: u64 = 18;

/// Whether rewriting is on for this process (read at every SUD exit, so an atomic).
static ENABLED: AtomicBool = AtomicBool::new(false);

static TABLE: Mutex<Table> = Mutex::new(Table::new());

/// Where the process layer keeps stub pages: a new page, readable and executable, within
/// ±2 GiB of `near` and out of the guest's reach; None where there is none.
pub type StubPages<'a> = dyn FnMut(u64) -> Option<u64> + 'a;

struct Site {
    live: bool,
}

/// Every rewrite of the process, and the counts that lead to them.
pub struct Table {
    /// SUD exits at each site not (yet) rewritten.
    counts: BTreeMap<u64, u32>,
    sites: BTreeMap<u64, Site>,
    /// Padding jump → its site.
    pads: BTreeMap<u64, u64>,
    /// Stub → its site.
    stubs: BTreeMap<u64, u64>,
    /// Stub pages and how many of their slots are used.
    pages: Vec<(u64, u64)>,
    /// Sites that cannot be rewritten (not asked about again).
    refused: BTreeSet<u64>,
}

impl Table {
    const fn new() -> Table {
        Table {
            counts: BTreeMap::new(),
            sites: BTreeMap::new(),
            pads: BTreeMap::new(),
            stubs: BTreeMap::new(),
            pages: Vec::new(),
            refused: BTreeSet::new(),
        }
    }
}

fn table() -> std::sync::MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a site was not rewritten.
#[derive(Debug, thiserror::Error)]
pub enum NotRewritten {
    /// Rewriting is off (never on, or withdrawn).
    #[error("rewriting is off")]
    Off,
    /// The bytes there are not a `syscall`.
    #[error("no syscall instruction there")]
    NotASyscall,
    /// No dead padding within a short jump after the site.
    #[error("no padding within 127 bytes")]
    NoPadding,
    /// No stub page within reach of the padding.
    #[error("no stub page within 2 GiB")]
    NoStubPage,
    /// The code could not be read or written.
    #[error("cannot patch the code: {0}")]
    Write(std::io::Error),
}

/// Turns rewriting on or off for this process (before its guest runs).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

/// Whether rewriting is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Sites rewritten and live.
pub fn rewritten() -> usize {
    table().sites.values().filter(|s| s.live).count()
}

/// Counts a SUD exit at `site`; true when that makes it hot (once per site).
pub(super) fn seen(site: u64) -> bool {
    let mut t = table();
    if t.sites.contains_key(&site) || t.refused.contains(&site) {
        return false;
    }
    let n = t.counts.entry(site).or_insert(0);
    *n += 1;
    *n == HOT
}

/// Where a rewrite's code is, for a thread stopped inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// At the padding's jump of `site`.
    Pad(u64),
    /// In the stub of `site`, this many bytes in.
    Stub(u64, u64),
}

/// What `rip` is in, if in a rewrite's padding jump or stub.
pub(super) fn locate(rip: u64) -> Option<Place> {
    let t = table();
    if let Some(&site) = t.pads.get(&rip) {
        return Some(Place::Pad(site));
    }
    let (&stub, &site) = t.stubs.range(..=rip).next_back()?;
    (rip - stub < SLOT).then_some(Place::Stub(site, rip - stub))
}

/// Whether an `int3` at `at` was a rewrite's transient one, gone by now (the write being
/// finished when the table is free).
pub(super) fn transient_int3(at: u64) -> bool {
    let t = table();
    if !t.sites.contains_key(&at) {
        return false;
    }
    let mut b = [0u8; 1];
    trapbox_host::read_own_memory(at, &mut b).is_ok_and(|n| n == 1 && b[0] != 0xcc)
}

/// Rewrites the syscall at `site` (see the module comment).
pub fn rewrite(site: u64, stub_pages: &mut StubPages<'_>) -> Result<(), NotRewritten> {
    if !enabled() {
        return Err(NotRewritten::Off);
    }
    let mut t = table();
    let r = rewrite_locked(&mut t, site, stub_pages);
    if r.is_err() {
        t.refused.insert(site);
    }
    r
}

fn rewrite_locked(t: &mut Table, site: u64, stub_pages: &mut StubPages<'_>) -> Result<(), NotRewritten> {
    let mut code = [0u8; 2 + 160];
    let n = read_code(site, &mut code);
    if n < 2 || code[..2] != [0x0f, 0x05] {
        return Err(NotRewritten::NotASyscall);
    }
    let pad = find_padding(site, &code[2..n]).ok_or(NotRewritten::NoPadding)?;
    let stub = take_slot(t, pad, stub_pages).ok_or(NotRewritten::NoStubPage)?;
    let fast = entry::fast_exit().start;
    let write = |at: u64, bytes: &[u8]| {
        // SAFETY: the stub slot is trapbox's, unused; the padding is dead code; the site is
        // written one byte at a time through a transient int3 (module comment).
        unsafe { trapbox_host::write_own_memory(at, bytes) }.map_err(NotRewritten::Write)
    };
    write(stub, &stub_code(site, stub, fast))?;
    write(pad, &jmp_rel32(pad, stub).ok_or(NotRewritten::NoStubPage)?)?;
    let rel8 = (pad - (site + 2)) as u8;
    t.sites.insert(site, Site { live: true });
    t.pads.insert(pad, site);
    t.stubs.insert(stub, site);
    let r = write(site, &[0xcc]).and_then(|()| write(site + 1, &[rel8])).and_then(|()| write(site, &[0xeb]));
    if let Err(e) = r {
        let _ = write(site, &[0xcc]).and_then(|()| write(site + 1, &[0x05])).and_then(|()| write(site, &[0x0f]));
        if let Some(s) = t.sites.get_mut(&site) {
            s.live = false;
        }
        return Err(e);
    }
    Ok(())
}

/// Reads the code from `site` on, as far as it is readable (up to `buf`'s length).
fn read_code(site: u64, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        let at = site + got as u64;
        let in_page = ((PAGE - at % PAGE) as usize).min(buf.len() - got);
        match trapbox_host::read_own_memory(at, &mut buf[got..got + in_page]) {
            Ok(n) if n > 0 => got += n,
            _ => break,
        }
    }
    got
}

/// The start of a run of at least five bytes of padding (NOPs, int3) that follows a return or
/// an unconditional jump, within a short jump from the end of the `syscall` at `site`
/// (`after`: the bytes from there on).
fn find_padding(site: u64, after: &[u8]) -> Option<u64> {
    let from = site + 2;
    let mut dec = Decoder::with_ip(64, after, from, DecoderOptions::NONE);
    let mut dead = false;
    let mut run: Option<u64> = None;
    while dec.can_decode() {
        let insn = dec.decode();
        if insn.is_invalid() {
            return None;
        }
        let padding = matches!(insn.mnemonic(), Mnemonic::Nop | Mnemonic::Int3);
        if padding && (dead || run.is_some()) {
            let start = *run.get_or_insert(insn.ip());
            if start - from > 127 {
                return None;
            }
            if insn.next_ip() - start >= 5 {
                return Some(start);
            }
            continue;
        }
        run = None;
        if insn.ip() - from > 127 {
            return None;
        }
        dead = matches!(insn.flow_control(), FlowControl::Return | FlowControl::UnconditionalBranch)
            || insn.mnemonic() == Mnemonic::Ud2;
    }
    None
}

/// A free stub slot within a near jump of `pad`'s.
fn take_slot(t: &mut Table, pad: u64, stub_pages: &mut StubPages<'_>) -> Option<u64> {
    let reach = |slot: u64| jmp_rel32(pad, slot).is_some();
    let per_page = PAGE / SLOT;
    let found = t.pages.iter_mut().find(|(p, used)| *used < per_page && reach(p + *used * SLOT) && reach(p + PAGE));
    let (page, used) = match found {
        Some(e) => e,
        None => {
            let p = stub_pages(pad)?;
            if !reach(p) || !reach(p + PAGE) {
                return None;
            }
            t.pages.push((p, 0));
            t.pages.last_mut()?
        }
    };
    let slot = *page + *used * SLOT;
    *used += 1;
    Some(slot)
}

/// `jmp rel32` at `from` to `to`, if in reach.
fn jmp_rel32(from: u64, to: u64) -> Option<[u8; 5]> {
    let rel = i32::try_from((to as i64).wrapping_sub(from as i64 + 5)).ok()?;
    let mut b = [0xe9, 0, 0, 0, 0];
    b[1..].copy_from_slice(&rel.to_le_bytes());
    Some(b)
}

/// The stub of `site` at `at`: save RCX and R11 in the block (GS), set RCX as `syscall` would,
/// jump to the fast exit at `fast` through the slot's own copy of its address.
fn stub_code(site: u64, at: u64, fast: u64) -> [u8; SLOT as usize] {
    let mut b = [0xccu8; SLOT as usize];
    let gs_store = |reg_rex: u8, modrm: u8, disp: usize| {
        let mut s = [0x65, reg_rex, 0x89, modrm, 0x25, 0, 0, 0, 0];
        s[5..].copy_from_slice(&(disp as u32).to_le_bytes());
        s
    };
    // mov gs:[site_rcx], rcx; mov gs:[site_r11], r11
    b[0..9].copy_from_slice(&gs_store(0x48, 0x0c, entry::OFF_SITE_RCX));
    b[9..18].copy_from_slice(&gs_store(0x4c, 0x1c, entry::OFF_SITE_R11));
    // lea rcx, [rip + (site + 2 - (at + 25))]
    let rel = ((site + 2) as i64 - (at + 25) as i64) as i32;
    b[18..21].copy_from_slice(&[0x48, 0x8d, 0x0d]);
    b[21..25].copy_from_slice(&rel.to_le_bytes());
    // jmp [rip + (SLOT_TARGET - 31)]
    b[25..27].copy_from_slice(&[0xff, 0x25]);
    b[27..31].copy_from_slice(&((SLOT_TARGET - 31) as u32).to_le_bytes());
    b[SLOT_TARGET as usize..SLOT_TARGET as usize + 8].copy_from_slice(&fast.to_le_bytes());
    b
}

/// Puts every rewritten site back to `syscall` and turns rewriting off for good (the guest is
/// taking GS): SUD handles them all again. The stubs stay, for threads on their way through.
pub fn withdraw() {
    set_enabled(false);
    let mut t = table();
    for (&site, s) in t.sites.iter_mut().filter(|(_, s)| s.live) {
        // SAFETY: the site's own two bytes, through a transient int3 (module comment).
        let r = unsafe {
            trapbox_host::write_own_memory(site, &[0xcc])
                .and_then(|()| trapbox_host::write_own_memory(site + 1, &[0x05]))
                .and_then(|()| trapbox_host::write_own_memory(site, &[0x0f]))
        };
        s.live = r.is_err();
    }
}

/// The table held while the process forks, so that no other thread holds it then: a child
/// would find it locked for ever. Dropped after the fork, in the parent and in the child.
pub struct ForkGuard(#[allow(dead_code)] std::sync::MutexGuard<'static, Table>);

/// Holds the table across a fork (see [`ForkGuard`]).
pub fn hold_across_fork() -> ForkGuard {
    ForkGuard(table())
}

/// Forgets every site and stub page: the guest's image was replaced (exec), and the stub pages
/// with it.
pub fn forget() {
    *table() = Table::new();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_decodes_as_written() {
        let (site, at, fast) = (0x5555_0000_1234u64, 0x5555_4000_0030u64, 0x7fff_1234_5678u64);
        let code = stub_code(site, at, fast);
        let mut dec = Decoder::with_ip(64, &code[..31], at, DecoderOptions::NONE);
        let i: Vec<iced_x86::Instruction> = (0..4).map(|_| dec.decode()).collect();
        use iced_x86::Register::{GS, R11, RCX, RIP};
        // mov gs:[site_rcx], rcx; mov gs:[site_r11], r11
        let slots = [(entry::OFF_SITE_RCX as u64, RCX), (entry::OFF_SITE_R11 as u64, R11)];
        for (insn, (disp, reg)) in i[..2].iter().zip(slots) {
            assert_eq!(insn.mnemonic(), Mnemonic::Mov);
            assert_eq!((insn.segment_prefix(), insn.memory_displacement64(), insn.op1_register()), (GS, disp, reg));
        }
        // lea rcx, [rip → site + 2]; jmp [rip → the slot's target]
        assert_eq!((i[2].mnemonic(), i[2].op0_register(), i[2].memory_base()), (Mnemonic::Lea, RCX, RIP));
        assert_eq!(i[2].ip_rel_memory_address(), site + 2);
        assert_eq!((i[3].mnemonic(), i[3].memory_base()), (Mnemonic::Jmp, RIP));
        assert_eq!(i[3].ip_rel_memory_address(), at + SLOT_TARGET);
        assert_eq!(i[3].next_ip(), at + 31);
        assert_eq!(u64::from_le_bytes(code[32..40].try_into().unwrap()), fast);
        assert_eq!(STUB_SAVED, 18);
    }

    #[test]
    fn padding_is_found_only_after_a_return_or_jump() {
        let site = 0x1000;
        // ret; nop dword [rax+0]; nop  (5 bytes of padding after the ret)
        let after = [0xc3, 0x0f, 0x1f, 0x40, 0x00, 0x90, 0x55];
        assert_eq!(find_padding(site, &after), Some(site + 3));
        // The same NOPs after an add are executed: not padding.
        let live = [0x01, 0xc0, 0x0f, 0x1f, 0x40, 0x00, 0x90, 0x55];
        assert_eq!(find_padding(site, &live), None);
        // Four bytes of padding are not enough for a jump.
        let short = [0xc3, 0x0f, 0x1f, 0x40, 0x00, 0x55];
        assert_eq!(find_padding(site, &short), None);
        // int3 padding after a jmp.
        let int3 = [0xeb, 0x10, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc];
        assert_eq!(find_padding(site, &int3), Some(site + 4));
    }

    #[test]
    fn padding_beyond_a_short_jump_is_not_used() {
        let site = 0x1000;
        // Executed code (add eax, eax) for 130 bytes, then a return and padding.
        let mut after = vec![0x01, 0xc0];
        while after.len() < 130 {
            after.extend([0x01, 0xc0]);
        }
        after.extend([0xc3, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90]);
        assert_eq!(find_padding(site, &after), None);
    }

    #[test]
    fn jumps_out_of_reach_are_refused() {
        assert_eq!(jmp_rel32(0x1000, 0x1005), Some([0xe9, 0, 0, 0, 0]));
        assert!(jmp_rel32(0x1000, 0x1000 + (1 << 32)).is_none());
    }
}
