//! What reached the recording's stdout and stderr, for a replay to write out again.
//!
//! A write counts when its descriptor leads to the same file (device and inode) as trapbox's
//! stdout or stderr when the recording began, whatever the descriptor's number: a shell that
//! moved its output to another descriptor, or redirected it to a file, is followed. A write of
//! the recorded process gets a ConsoleWrite event after its Syscall event (a replay has the
//! same bytes in the guest's memory and writes them from there). Its
//! children are not recorded (their syscalls are not in the trace), but their console output
//! is: each child appends records to a log shared with the whole process tree (an anonymous
//! file opened for appending, so records from several children never overlap), and the
//! recorded process turns what is new there into Console events at each of its own events.
//! A child's output that lands after the recorded process's last event is not in the trace.
//!
//! sendfile, copy_file_range and splice move bytes to the console without passing them
//! through the guest's memory (coreutils `cat` copies a file to a stdout redirected to a file
//! with copy_file_range). The call runs as it would natively; when its source can be read
//! again at the same offset (a file), the recorder reads what it moved from there afterwards
//! and keeps it in a Console event after the call's own (a child appends it to the log like
//! its writes). From a pipe the bytes are gone: that is said once, as a warning.

use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};

use super::event::ConsoleEvent;
use trapbox_abi::Sysno as S;
use trapbox_host::{self as host, fds};
use trapbox_trap::{Guest, GuestAddr, Syscall};

/// Where console output is gathered.
pub struct Console {
    /// (device, inode) of stdout and stderr at the start.
    files: [Option<(u64, u64)>; 2],
    /// The log children append to (made at the recorded process's first fork).
    log: Option<std::fs::File>,
    /// How far the recorded process has read the log.
    read_at: u64,
    /// Whether this is a forked child (which appends to the log instead of recording).
    in_child: bool,
    /// Whether the recording was told that a transfer from a pipe is missing.
    warned_pipe: bool,
}

/// A transfer call (sendfile, copy_file_range, splice) to a console stream, seen before the
/// call: where its source was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The console stream (1 or 2).
    stream: u8,
    /// The source descriptor.
    from: i32,
    /// Its offset before the call; None when it has none (a pipe, a socket).
    at: Option<u64>,
}

fn identity(fd: i64) -> Option<(u64, u64)> {
    let m = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
    Some((m.dev(), m.ino()))
}

impl Console {
    /// Learns what stdout and stderr are now.
    pub fn new() -> Console {
        Console { files: [identity(1), identity(2)], log: None, read_at: 0, in_child: false, warned_pipe: false }
    }

    /// Before a fork: makes sure the log exists, so the child inherits it.
    pub fn before_fork(&mut self) {
        if self.log.is_none() && !self.in_child {
            // Opened again through /proc for O_APPEND: appends from several processes then
            // land one after another.
            self.log = host::memory_file("trapbox-children-console", &[])
                .and_then(|f| {
                    std::fs::OpenOptions::new()
                        .append(true)
                        .read(true)
                        .open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f)))
                })
                .and_then(fds::privatize)
                .ok();
        }
    }

    /// In the new child: from now on, console output goes to the log.
    pub fn became_child(&mut self) {
        self.in_child = true;
    }

    /// Which console stream (1 or 2) descriptor `fd` writes to, if any.
    fn stream(&self, fd: i64) -> Option<u8> {
        if self.files == [None, None] {
            return None;
        }
        let id = Some(identity(fd)?);
        // Descriptor 1 or 2 still on its own file keeps its number (both may be one terminal).
        if matches!(fd, 1 | 2) && self.files[fd as usize - 1] == id {
            return Some(fd as u8);
        }
        self.files.iter().position(|f| *f == id).map(|i| i as u8 + 1)
    }

    /// The console stream (1 or 2) write-like `call`, which returned `ret`, wrote to.
    pub fn written_to(&self, call: &Syscall, ret: i64) -> Option<u8> {
        if ret <= 0 || !matches!(call.sysno(), Some(S::write | S::pwrite64 | S::writev | S::pwritev | S::pwritev2)) {
            return None;
        }
        self.stream(call.args[0] as i64)
    }

    /// What write-like `call`, which returned `ret`, put on the console.
    pub fn written(&self, g: &dyn Guest, call: &Syscall, ret: i64) -> Option<ConsoleEvent> {
        let fd = self.written_to(call, ret)?;
        Some(ConsoleEvent { fd, data: bytes_written(g, call, ret)? })
    }

    /// Before `call`: if it is a transfer to a console stream, where its source is now.
    pub fn transfer(&self, g: &dyn Guest, call: &Syscall) -> Option<Transfer> {
        let a = call.args;
        // (source, pointer to its offset or 0, destination)
        let (from, off, to) = match call.sysno() {
            Some(S::sendfile) => (a[1], a[2], a[0]),
            Some(S::copy_file_range | S::splice) => (a[0], a[1], a[2]),
            _ => return None,
        };
        // Descriptors are ints: the kernel reads the low 32 bits.
        let stream = self.stream(to as i32 as i64)?;
        let from = from as i32;
        let at = if off != 0 {
            let mut b = [0u8; 8];
            g.read(GuestAddr(off), &mut b).ok().map(|_| u64::from_le_bytes(b))
        } else {
            // The descriptor's own offset, as the kernel shows it; none for a pipe or socket
            // (whose "pos" stays 0, so the file type says).
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{from}")).ok()?;
            let seekable = std::fs::metadata(format!("/proc/self/fd/{from}")).is_ok_and(|m| m.is_file());
            info.lines().find_map(|l| l.strip_prefix("pos:")).and_then(|v| v.trim().parse().ok()).filter(|_| seekable)
        };
        Some(Transfer { stream, from, at })
    }

    /// After transfer `t` moved `ret` bytes: those bytes, read again from its source. None
    /// (with a warning, the first time) when the source cannot be read again.
    pub fn transferred(&mut self, t: Transfer, ret: i64) -> Option<ConsoleEvent> {
        let n = usize::try_from(ret).ok().filter(|&n| n > 0)?;
        let data = t.at.and_then(|at| {
            // A description of its own (in trapbox's descriptor range): reading it moves no
            // offset of the guest's.
            let path = format!("/proc/self/fd/{}", t.from);
            let file = fds::private_of_guest_file(|| std::fs::File::open(path)).ok()?;
            let mut data = vec![0u8; n];
            file.read_exact_at(&mut data, at).ok()?;
            Some(data)
        });
        if data.is_none() && !self.warned_pipe {
            self.warned_pipe = true;
            eprintln!(
                "trapbox: warning: {n} bytes went to the console from a source that cannot be read again (a pipe, \
                 with splice or sendfile); they are not in the trace, and a replay does not show them"
            );
        }
        Some(ConsoleEvent { fd: t.stream, data: data? })
    }

    /// In a child: appends `e` to the log (one write: fd, length, bytes).
    pub fn append(&self, e: &ConsoleEvent) {
        let Some(mut log) = self.log.as_ref() else { return };
        let mut rec = Vec::with_capacity(5 + e.data.len());
        rec.push(e.fd);
        rec.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        rec.extend_from_slice(&e.data);
        let _ = log.write_all(&rec);
    }

    /// Whether this is a forked child.
    pub fn in_child(&self) -> bool {
        self.in_child
    }

    /// In the recorded process: the complete records children appended since the last call.
    pub fn from_children(&mut self) -> Vec<ConsoleEvent> {
        let Some(log) = self.log.as_ref() else { return Vec::new() };
        let mut out = Vec::new();
        let mut head = [0u8; 5];
        loop {
            if log.read_exact_at(&mut head, self.read_at).is_err() {
                break;
            }
            let n = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
            let mut data = vec![0u8; n];
            // A record still being appended is taken at the next event.
            if log.read_exact_at(&mut data, self.read_at + 5).is_err() {
                break;
            }
            self.read_at += 5 + n as u64;
            if matches!(head[0], 1 | 2) {
                out.push(ConsoleEvent { fd: head[0], data });
            }
        }
        out
    }
}

/// The bytes write-like `call` (write, pwrite64, writev, pwritev, pwritev2) wrote when it
/// returned `ret`, read from the guest's buffers.
pub fn bytes_written(g: &dyn Guest, call: &Syscall, ret: i64) -> Option<Vec<u8>> {
    let a = call.args;
    let n = u64::try_from(ret).ok()?;
    let mut data = Vec::with_capacity(n.min(1 << 26) as usize);
    if matches!(call.sysno(), Some(S::write | S::pwrite64)) {
        data.resize(n as usize, 0);
        g.read(GuestAddr(a[1]), &mut data).ok()?;
        return Some(data);
    }
    let desc = call.desc()?;
    let plan = trapbox_abi::walk::plan(desc, &a, &super::AfterCall(g), &Default::default()).ok()?;
    for (base, len) in plan.used(trapbox_abi::Dir::In, ret) {
        let at = data.len();
        data.resize(at + len as usize, 0);
        g.read(GuestAddr(base), &mut data[at..]).ok()?;
    }
    Some(data)
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}
