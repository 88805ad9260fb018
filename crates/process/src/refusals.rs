//! What the box refused the guest, told to the user: a syscall, an ioctl request, an fcntl
//! command or a socket option that trapbox does not pass (because it would reach outside the
//! box, or because trapbox does not know its shape), as opposed to what the kernel refused.
//!
//! A refusal is never silent: the first of each kind in a run prints one warning line
//! (`trapbox: refused ioctl TIOCSTI on fd 0 (it would type into a terminal outside the box)`)
//! and every one is counted, for `-v`'s summary at the end. The run is a process tree (a
//! forked guest is a forked trapbox), so the table lives in memory shared across it, made
//! before the first fork: one warning per kind for the whole run, and the first process's
//! summary counts its children's refusals too. The guest never reaches the table: it is
//! trapbox's own memory, outside every guest mapping.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Kinds of refusal the table holds; more are counted under the last slot's key.
const SLOTS: usize = 128;
/// Bytes of a kind's name (`ioctl TIOCSTI`), cut beyond.
const NAME: usize = 48;

/// One kind of refusal: its key (a hash of its name, 0 while free), how many, its name.
#[repr(C)]
struct Slot {
    key: AtomicU64,
    count: AtomicU64,
    /// Set once the name is written (by the process that claimed the slot).
    named: AtomicU64,
    name: [u8; NAME],
}

/// The table of a run's refusals (see the module's comment).
#[derive(Debug)]
pub struct Refusals {
    slots: *mut Slot,
}

// SAFETY: the slots are shared memory updated only through atomics (the name bytes are
// written once, by the process that claimed the slot, before `named` is set with Release).
unsafe impl Send for Refusals {}
// SAFETY: as for Send.
unsafe impl Sync for Refusals {}

/// One kind of refusal and how many times it happened in the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// What was refused: `ioctl TIOCSTI`, `syscall ptrace`, `fcntl 0x409`.
    pub what: String,
    /// How many times.
    pub count: u64,
}

impl Refusals {
    /// A new table, shared with the processes this one forks. None if the memory cannot be
    /// had (refusals are then only warned of, once per process).
    pub fn new() -> Option<Refusals> {
        let bytes = SLOTS * std::mem::size_of::<Slot>();
        // SAFETY: a fresh anonymous shared mapping of trapbox's own; zeroed, which is the
        // table's empty state.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then(|| Refusals { slots: p.cast() })
    }

    fn slot(&self, i: usize) -> &Slot {
        // SAFETY: i < SLOTS, inside the mapping, which lives as long as the process.
        unsafe { &*self.slots.add(i) }
    }

    /// Counts one refusal of `what`; true if it is the run's first of that kind (the caller
    /// warns).
    pub fn count(&self, what: &str) -> bool {
        let key = fnv(what.as_bytes()).max(1);
        for i in 0..SLOTS {
            let s = self.slot(i);
            let first = match s.key.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let n = what.len().min(NAME);
                    let name = std::ptr::addr_of!(s.name) as *mut u8;
                    // SAFETY: this process claimed the slot; nobody else writes its name, and
                    // readers wait for `named`.
                    unsafe { std::ptr::copy_nonoverlapping(what.as_ptr(), name, n) };
                    s.named.store(n as u64 + 1, Ordering::Release);
                    true
                }
                Err(k) if k == key => false,
                Err(_) if i + 1 == SLOTS => false,
                Err(_) => continue,
            };
            s.count.fetch_add(1, Ordering::Relaxed);
            return first;
        }
        false
    }

    /// Every kind refused so far in the run, most frequent first.
    pub fn summary(&self) -> Vec<Refused> {
        let mut out: Vec<Refused> = (0..SLOTS)
            .map(|i| self.slot(i))
            .filter(|s| s.key.load(Ordering::Acquire) != 0)
            .filter_map(|s| {
                let n = s.named.load(Ordering::Acquire).checked_sub(1)? as usize;
                let what = String::from_utf8_lossy(&s.name[..n]).into_owned();
                Some(Refused { what, count: s.count.load(Ordering::Relaxed) })
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.what.cmp(&b.what)));
        out
    }

    /// Counts a refusal of `what` and, the first time in the run and unless `quiet`, writes
    /// its [`warning`] to `diag`.
    pub fn refuse(&self, diag: &mut impl std::io::Write, what: &str, detail: &str, why: &str, quiet: bool) {
        if self.count(what) && !quiet {
            let _ = writeln!(diag, "{}", warning(what, detail, why));
        }
    }
}

/// The line a refusal is told in: `trapbox: refused WHAT DETAIL (WHY)`.
pub fn warning(what: &str, detail: &str, why: &str) -> String {
    let mut line = format!("trapbox: refused {what}");
    if !detail.is_empty() {
        let _ = write!(line, " {detail}");
    }
    let _ = write!(line, " ({why})");
    line
}

/// The summary `-v` prints: `trapbox: refused: ioctl TIOCSTI ×2, fcntl 0x409 ×1`, or None
/// when nothing was refused.
pub fn summary_line(r: &[Refused]) -> Option<String> {
    if r.is_empty() {
        return None;
    }
    let parts: Vec<String> = r.iter().map(|r| format!("{} ×{}", r.what, r.count)).collect();
    Some(format!("trapbox: refused: {}", parts.join(", ")))
}

/// FNV-1a, 64 bits: a key for a name.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ c as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_of_a_kind_warns_once_for_the_whole_process_tree() {
        let r = Refusals::new().unwrap();
        let mut out = Vec::new();
        r.refuse(&mut out, "ioctl TIOCSTI", "on fd 0", "it would type into a terminal outside the box", false);
        r.refuse(&mut out, "ioctl TIOCSTI", "on fd 1", "it would type into a terminal outside the box", false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "trapbox: refused ioctl TIOCSTI on fd 0 (it would type into a terminal outside the box)\n"
        );
        // A forked child shares the table: its refusal of the same kind says nothing more.
        // SAFETY: the child only touches the shared table and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let first = r.count("ioctl TIOCSTI");
            r.count("fcntl 0x409");
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(if first { 1 } else { 0 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(status, 0, "the child found TIOCSTI already counted");
        let s = r.summary();
        assert_eq!(
            s,
            vec![Refused { what: "ioctl TIOCSTI".into(), count: 3 }, Refused { what: "fcntl 0x409".into(), count: 1 }]
        );
        assert_eq!(summary_line(&s).unwrap(), "trapbox: refused: ioctl TIOCSTI ×3, fcntl 0x409 ×1");
        assert_eq!(summary_line(&[]), None);
    }

    #[test]
    fn quiet_counts_without_a_word() {
        let r = Refusals::new().unwrap();
        let mut out = Vec::new();
        r.refuse(&mut out, "syscall ptrace", "", "it would reach outside the box", true);
        assert!(out.is_empty());
        assert_eq!(
            warning("syscall ptrace", "", "it would reach outside the box"),
            "trapbox: refused syscall ptrace (it would reach outside the box)"
        );
        assert_eq!(r.summary()[0].count, 1);
    }
}
