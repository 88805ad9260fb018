//! The guest's resource limits: its own view, so that no limit it sets constrains trapbox.
//!
//! The guest's threads are trapbox's threads, so a limit set on the host would hold trapbox to
//! it too: RLIMIT_SIGPENDING 0 stops trapbox's kicks (a `--timeout` then never fires),
//! RLIMIT_NOFILE too low leaves no number for a new thread's vCPU, RLIMIT_AS too low refuses
//! trapbox's own mappings, RLIMIT_FSIZE would cut a trace short with SIGXFSZ. So every limit
//! is the guest's own value here, inherited from trapbox's at the start, and:
//!
//! - limits whose host effect is what the guest means and cannot hurt trapbox (CPU time, core
//!   size, nice and real-time priority, real-time CPU time, message queues, file locks) are
//!   also set on the host, which enforces them;
//! - RLIMIT_NOFILE, RLIMIT_AS and RLIMIT_DATA are enforced by trapbox (a new descriptor at or
//!   above the limit is closed again with EMFILE; mappings and the heap are refused beyond
//!   them);
//! - the rest (STACK, NPROC, SIGPENDING, FSIZE, MEMLOCK) are the guest's to read and set, not
//!   enforced (docs/ARCHITECTURE.md, threat model).

/// Number of RLIMIT_* resources.
pub const COUNT: usize = 16;

/// `RLIM_INFINITY`.
pub const INFINITY: u64 = u64::MAX;

/// The guest's limits: (soft, hard) per resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    table: [(u64, u64); COUNT],
}

/// Resources set on the host too (see the module comment).
fn forwarded(res: usize) -> bool {
    matches!(
        res as u32,
        libc::RLIMIT_CPU
            | libc::RLIMIT_CORE
            | libc::RLIMIT_NICE
            | libc::RLIMIT_RTPRIO
            | libc::RLIMIT_RTTIME
            | libc::RLIMIT_MSGQUEUE
            | libc::RLIMIT_LOCKS
    )
}

impl Limits {
    /// trapbox's own limits now: what the guest starts with, as a child would.
    pub fn inherited() -> Limits {
        let mut table = [(INFINITY, INFINITY); COUNT];
        for (res, slot) in table.iter_mut().enumerate() {
            let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit writes the local rlimit.
            if unsafe { libc::getrlimit(res as _, &mut r) } == 0 {
                *slot = (r.rlim_cur, r.rlim_max);
            }
        }
        Limits { table }
    }

    /// The guest's (soft, hard) for `res`; EINVAL for an unknown resource.
    pub fn get(&self, res: u64) -> Result<(u64, u64), i32> {
        self.table.get(res as usize).copied().ok_or(libc::EINVAL)
    }

    /// Sets the guest's limit for `res`, as setrlimit would: the soft limit may not exceed
    /// the hard one, and the hard one rises only for a privileged guest (`may_raise`).
    /// Returns whether the host should be told too.
    pub fn set(&mut self, res: u64, soft: u64, hard: u64, may_raise: bool) -> Result<bool, i32> {
        let slot = self.table.get_mut(res as usize).ok_or(libc::EINVAL)?;
        if soft > hard {
            return Err(libc::EINVAL);
        }
        if hard > slot.1 && !may_raise {
            return Err(libc::EPERM);
        }
        if res as u32 == libc::RLIMIT_NOFILE && hard > nr_open() {
            return Err(libc::EPERM);
        }
        *slot = (soft, hard);
        Ok(forwarded(res as usize))
    }

    /// The soft limit of `res`.
    pub fn soft(&self, res: u32) -> u64 {
        self.table[res as usize].0
    }
}

/// The kernel's ceiling for RLIMIT_NOFILE (`fs.nr_open`).
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guests_limits_are_its_own() {
        let mut l = Limits::inherited();
        let host_before = Limits::inherited();
        let res = libc::RLIMIT_SIGPENDING as u64;
        assert_eq!(l.set(res, 0, 0, false), Ok(false));
        assert_eq!(l.get(res), Ok((0, 0)));
        // Nothing reached the host.
        assert_eq!(Limits::inherited(), host_before);
        // The hard limit does not rise again unprivileged; soft above hard is invalid.
        assert_eq!(l.set(res, 0, 10, false), Err(libc::EPERM));
        assert_eq!(l.set(libc::RLIMIT_NOFILE as u64, 10, 5, true), Err(libc::EINVAL));
        assert_eq!(l.get(99), Err(libc::EINVAL));
        // CPU time is also the host's to enforce.
        let (s, h) = l.get(libc::RLIMIT_CPU as u64).unwrap();
        assert_eq!(l.set(libc::RLIMIT_CPU as u64, s, h, false), Ok(true));
    }
}
