//! The recorded process's writable shared memory, which other processes may write.
//!
//! A recording covers the first process only: a child it forks runs unrecorded, and a replay
//! does not run it at all. Whatever the two exchange through syscalls (pipe data, wait
//! statuses) is in the parent's events; what they exchange through memory both map shared (a
//! `MAP_SHARED` mapping made before the fork, System V shared memory) is not, nor what another
//! program writes into a shared file mapping. A process-shared semaphore that a child posts,
//! for one, would be found taken in the replay.
//!
//! So the recorder watches that memory: it keeps a copy of each writable shared mapping, and at
//! each syscall event it records the bytes that changed since as part of the event's writes (a
//! replay writes them at the same point). A change is seen at the next event, not when it is
//! made: a process that reads shared memory in a loop without syscalls may still see another
//! sequence of values in replay. Copies cost memory and a comparison at each event, so at most
//! [`BUDGET`] bytes are watched; a fork while more is mapped is reported once.

use trapbox_abi::clone::{flag, CloneArgs};
use trapbox_abi::Sysno as S;
use trapbox_trap::{Guest, GuestAddr, Syscall};

/// The most shared memory watched, in bytes, across all mappings.
pub const BUDGET: u64 = 1 << 20;

/// Changes are recorded in blocks of this many bytes.
const BLOCK: usize = 64;

#[derive(Debug)]
struct SharedMap {
    start: u64,
    end: u64,
    /// The contents at the last event, when watched.
    copy: Option<Vec<u8>>,
}

/// The recorded process's writable shared mappings.
#[derive(Debug, Default)]
pub(super) struct SharedMaps {
    maps: Vec<SharedMap>,
    /// Whether the process was told already (once per recording).
    warned: bool,
}

impl SharedMaps {
    /// Follows `call`, which returned `ret`, for the mappings it made or removed.
    pub fn follow(&mut self, g: &dyn Guest, call: &Syscall, ret: i64) {
        if ret < 0 {
            return;
        }
        let a = call.args;
        match call.sysno() {
            Some(S::mmap) => {
                let shared = matches!(a[3] as i32 & 0xf, libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE);
                if shared && a[2] as i32 & libc::PROT_WRITE != 0 {
                    self.add(g, ret as u64, a[1]);
                }
            }
            Some(S::munmap) => self.remove(a[0], a[0].saturating_add(a[1])),
            Some(S::shmat) if a[2] as i32 & libc::SHM_RDONLY == 0 => {
                // The segment's size is the kernel's; without it, the segment is not watched.
                let len = segment_size(a[0]).unwrap_or(u64::MAX);
                self.add(g, ret as u64, len);
            }
            // Detaching names the segment's start only.
            Some(S::shmdt) => {
                if let Some(m) = self.maps.iter().find(|m| m.start == a[0]) {
                    let end = m.end;
                    self.remove(a[0], end);
                }
            }
            _ => {}
        }
    }

    fn watched(&self) -> u64 {
        self.maps.iter().filter(|m| m.copy.is_some()).map(|m| m.end - m.start).sum()
    }

    fn add(&mut self, g: &dyn Guest, start: u64, len: u64) {
        let copy = (len <= BUDGET.saturating_sub(self.watched())).then(|| {
            let mut b = vec![0u8; len as usize];
            // Unreadable (PROT_WRITE without PROT_READ is not): compared as zeroes.
            let _ = g.read(GuestAddr(start), &mut b);
            b
        });
        // A watched mapping ends where its copy does, another where its last page does.
        let end = match copy {
            Some(_) => start + len,
            None => start.saturating_add(len).saturating_add(4095) & !4095,
        };
        self.maps.push(SharedMap { start, end, copy });
    }

    fn remove(&mut self, start: u64, end: u64) {
        let mut kept = Vec::with_capacity(self.maps.len());
        for m in self.maps.drain(..) {
            if m.end <= start || m.start >= end {
                kept.push(m);
                continue;
            }
            let part = |lo: u64, hi: u64| SharedMap {
                start: lo,
                end: hi,
                copy: m.copy.as_ref().map(|c| c[(lo - m.start) as usize..(hi - m.start) as usize].to_vec()),
            };
            if m.start < start {
                kept.push(part(m.start, start));
            }
            if m.end > end {
                kept.push(part(end, m.end));
            }
        }
        self.maps = kept;
    }

    /// After an exec: the new image has no mappings of the old.
    pub fn exec(&mut self) {
        self.maps.clear();
    }

    /// The watched bytes that changed since the last call, as (address, bytes) runs for an
    /// event's writes; the copies are brought up to date.
    pub fn changes(&mut self, g: &dyn Guest) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for m in &mut self.maps {
            let Some(copy) = m.copy.as_mut() else { continue };
            let mut now = vec![0u8; copy.len()];
            if g.read(GuestAddr(m.start), &mut now).is_err() {
                continue;
            }
            let mut run: Option<usize> = None;
            for (i, (a, b)) in now.chunks(BLOCK).zip(copy.chunks(BLOCK)).enumerate() {
                match (a != b, run) {
                    (true, None) => run = Some(i * BLOCK),
                    (false, Some(from)) => {
                        out.push((m.start + from as u64, now[from..i * BLOCK].to_vec()));
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(from) = run {
                out.push((m.start + from as u64, now[from..].to_vec()));
            }
            *copy = now;
        }
        out
    }

    /// At a fork that made a child process (not a thread; not a vfork, whose child execs at
    /// once): the warning to give, the first time shared memory is mapped that is not watched.
    pub fn forked(&mut self, call: &Syscall) -> Option<String> {
        let flags = CloneArgs::decode(call.sysno().unwrap_or(trapbox_abi::Sysno::clone), &call.args).flags;
        if self.warned || flags & (flag::VFORK | flag::THREAD) != 0 {
            return None;
        }
        let m = self.maps.iter().find(|m| m.copy.is_none())?;
        self.warned = true;
        Some(format!(
            "trapbox: warning: the recorded process forked a child while it had writable shared memory that the \
             recording does not watch ({:#x}..{:#x}: more than {} KiB in all, or a System V segment of unknown size); \
             children are not recorded, so what a child writes there is not in the trace, and a replay may diverge \
             where the process reads it",
            m.start,
            m.end,
            BUDGET / 1024
        ))
    }
}

/// The size of System V shared memory segment `id`, from /proc/sysvipc/shm.
fn segment_size(id: u64) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").ok()?;
    let mut lines = table.lines();
    let head: Vec<&str> = lines.next()?.split_whitespace().collect();
    let (id_col, size_col) = (head.iter().position(|c| *c == "shmid")?, head.iter().position(|c| *c == "size")?);
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find_map(|cols| (cols.get(id_col)?.parse::<u64>().ok()? == id).then(|| cols.get(size_col)?.parse().ok())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trapbox_trap::{Action, MemError, Regs};

    /// Guest memory as a flat buffer from address 0x10000.
    struct Flat(Vec<u8>);

    impl Guest for Flat {
        fn tid(&self) -> i32 {
            1
        }
        fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), MemError> {
            let at = (addr.0 - 0x10000) as usize;
            buf.copy_from_slice(self.0.get(at..at + buf.len()).ok_or(MemError::Fault(addr.0))?);
            Ok(())
        }
        fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), MemError> {
            let at = (addr.0 - 0x10000) as usize;
            self.0[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn read_cstr(&self, a: GuestAddr, _: usize) -> Result<Vec<u8>, MemError> {
            Err(MemError::Fault(a.0))
        }
        fn regs(&self) -> Regs {
            Regs::default()
        }
        fn set_regs(&mut self, _: &Regs) {}
        fn passthrough(&mut self, _: &Syscall) -> Action {
            Action::Return(-libc::ENOSYS as i64)
        }
        fn symbolize(&self, _: u64) -> Option<String> {
            None
        }
        fn exits(&self) -> u64 {
            0
        }
    }

    fn call(name: &str, args: [u64; 6]) -> Syscall {
        let nr = trapbox_abi::lookup_name(name).expect("a known syscall").nr;
        Syscall { nr, args }
    }

    const RW: u64 = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    const SHARED: u64 = libc::MAP_SHARED as u64;
    const ANON: u64 = libc::MAP_ANONYMOUS as u64;
    const FORK: [u64; 6] = [libc::SIGCHLD as u64, 0, 0, 0, 0, 0];

    #[test]
    fn changes_to_watched_shared_memory_are_found_once_in_blocks() {
        let mut g = Flat(vec![0u8; 0x4000]);
        let mut m = SharedMaps::default();
        m.follow(&g, &call("mmap", [0, 0x1000, RW, libc::MAP_PRIVATE as u64 | ANON, u64::MAX, 0]), 0x10000);
        m.follow(&g, &call("mmap", [0, 0x1000, libc::PROT_READ as u64, SHARED, 5, 0]), 0x11000);
        m.follow(&g, &call("mmap", [0, 0x2000, RW, SHARED | ANON, u64::MAX, 0]), 0x12000);
        assert!(m.changes(&g).is_empty());
        g.write(GuestAddr(0x10000), b"private").unwrap();
        g.write(GuestAddr(0x11000), b"read-only").unwrap();
        g.write(GuestAddr(0x12000 + 70), b"x").unwrap();
        g.write(GuestAddr(0x12000 + 0x1fff), b"y").unwrap();
        let c = m.changes(&g);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!((c[0].0, c[0].1.len(), c[0].1[6]), (0x12040, 64, b'x'));
        assert_eq!((c[1].0, c[1].1.len(), c[1].1[63]), (0x13fc0, 64, b'y'));
        assert!(m.changes(&g).is_empty(), "the copy is up to date");
        assert_eq!(m.forked(&call("clone", FORK)), None, "all watched: nothing to say");
        m.follow(&g, &call("munmap", [0x12000, 0x1000, 0, 0, 0, 0]), 0);
        g.write(GuestAddr(0x12000), b"gone").unwrap();
        g.write(GuestAddr(0x13000), b"kept").unwrap();
        let c = m.changes(&g);
        assert_eq!(c.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0x13000], "the unmapped half is not watched");
    }

    #[test]
    fn a_fork_with_unwatched_shared_memory_is_reported_once() {
        let g = Flat(vec![0u8; 0x1000]);
        let mut m = SharedMaps::default();
        m.follow(&g, &call("mmap", [0, BUDGET + 1, RW, SHARED | ANON, u64::MAX, 0]), 0x7000_0000);
        m.follow(&g, &call("mmap", [0, 0x20, RW, SHARED, 5, 0]), -12);
        let vfork = [(libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0];
        assert_eq!(m.forked(&call("clone", vfork)), None, "a vfork's child execs");
        let thread = [(libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64, 0, 0, 0, 0, 0];
        assert_eq!(m.forked(&call("clone", thread)), None, "a thread is recorded");
        let w = m.forked(&call("clone", FORK)).expect("reported");
        assert!(w.contains("(0x70000000..0x70101000: more than 1024 KiB"), "{w}");
        assert_eq!(m.forked(&call("fork", [0; 6])), None, "once");
        m.exec();
        assert!(m.maps.is_empty());
    }
}
