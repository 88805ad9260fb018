//! The trace file: a header, then chunks of events, each zstd-compressed with a CRC-32 of its
//! compressed bytes. Written as the run goes, so a run killed at any point leaves a trace
//! whose complete chunks replay. docs/TRACE_FORMAT.md describes the layout.

use std::io::{Read, Write};

use super::event::{Decoder, Event, StartEvent};

/// File magic.
pub const MAGIC: &[u8; 8] = b"TRAPBOXR";
/// Format version written. Version 10 tells a fault's end from a signal's (the Faulted
/// end), version 9 adds the signals the program started with ignored to
/// Start, version 8 adds the engine that recorded to Start, version 7 adds the CPU view to Start, version 6 the Preempt event, version 5 the Switch event
/// (threads); version 4 lets the recorded process exec (a Start event after a
/// successful execve), version 3 added trapbox's vDSO (its base in Start, TimeCalls events),
/// version 2 the Signal event; older traces are read as they are.
pub const VERSION: u16 = 10;
/// The oldest version read.
const OLDEST: u16 = 1;
/// Chunk magic.
const CHUNK: &[u8; 4] = b"TBCK";
/// Chunk header size: magic, first event index, events, raw length, compressed length, CRC.
const CHUNK_HEADER: usize = 4 + 8 + 4 + 4 + 4 + 4;
/// Largest chunk accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_CHUNK: u32 = 256 << 20;

/// Problems reading a trace.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Not a trapbox trace.
    #[error("not a trapbox trace (bad magic)")]
    NotATrace,
    /// A version this trapbox cannot read.
    #[error("trace format version {0} is not supported (this trapbox reads versions {OLDEST} to {VERSION})")]
    Version(u16),
    /// A chunk's checksum does not match.
    #[error("chunk {index} (at byte {offset}) is corrupt: checksum mismatch")]
    Checksum {
        /// Chunk number, from 0.
        index: u64,
        /// Byte offset in the file.
        offset: u64,
    },
    /// A chunk cannot be decoded.
    #[error("chunk {index} (at byte {offset}) is corrupt: {why}")]
    Corrupt {
        /// Chunk number.
        index: u64,
        /// Byte offset.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Clone for TraceError {
    fn clone(&self) -> Self {
        match self {
            TraceError::NotATrace => TraceError::NotATrace,
            TraceError::Version(v) => TraceError::Version(*v),
            TraceError::Checksum { index, offset } => TraceError::Checksum { index: *index, offset: *offset },
            TraceError::Corrupt { index, offset, why } => {
                TraceError::Corrupt { index: *index, offset: *offset, why: why.clone() }
            }
            // An I/O error is not Clone: its kind and message are kept.
            TraceError::Io(e) => TraceError::Io(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// Compresses and writes one chunk.
fn write_chunk<W: Write>(out: &mut W, first_event: u64, events: u32, raw: &[u8]) -> std::io::Result<u64> {
    // Recording must keep up with the guest. Level 1 keeps the trace a few times smaller than
    // the raw events; a large chunk (a stored library, a big read) takes one of zstd's fast
    // levels, about twice the speed for a fifth less compression, so that it is compressed
    // while the guest runs rather than after it ended.
    let level = if raw.len() > 1 << 20 { -3 } else { 1 };
    let comp = zstd::bulk::compress(raw, level)?;
    let crc = crc32fast::hash(&comp);
    let mut h = Vec::with_capacity(CHUNK_HEADER);
    h.extend_from_slice(CHUNK);
    h.extend_from_slice(&first_event.to_le_bytes());
    h.extend_from_slice(&events.to_le_bytes());
    h.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    h.extend_from_slice(&(comp.len() as u32).to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&h)?;
    out.write_all(&comp)?;
    out.flush()?;
    Ok((h.len() + comp.len()) as u64)
}

/// A chunk on its way to the writer thread.
struct Pending {
    first_event: u64,
    events: u32,
    raw: Vec<u8>,
    /// A file whose contents end the chunk as a File event, read by the writer thread (the
    /// event count includes it).
    file: Option<(u32, std::fs::File)>,
    /// A Start event that begins the chunk, whose program CRC the writer thread computes from
    /// this file first (the event count includes it).
    start: Option<(StartEvent, std::path::PathBuf)>,
    /// A file for the writer thread to close (see [`TraceWriter::close_later`]).
    close: Option<std::fs::File>,
}

/// Creates the file `path` for a trace, empty. An earlier file there (a regular file with no
/// other name) is unlinked rather than truncated and returned still open: closing it frees
/// its blocks, which takes milliseconds for a trace of some megabytes (tens for tens of
/// megabytes), so the recorder has its writer thread close it while the guest runs. The old
/// file's descriptor is in trapbox's private range: a sandbox built meanwhile does not take it
/// for one the guest inherited.
pub fn create_replacing(path: &std::path::Path) -> std::io::Result<(std::fs::File, Option<std::fs::File>)> {
    use std::os::unix::fs::MetadataExt;
    let old = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.nlink() == 1 && m.len() > 0 => std::fs::File::open(path)
            .and_then(trapbox_host::fds::privatize)
            .ok()
            .filter(|_| std::fs::remove_file(path).is_ok()),
        _ => None,
    };
    Ok((std::fs::File::create(path)?, old))
}

/// Appends a File event for `file` to `raw`, reading the file here, off the guest's thread.
fn append_file_event(raw: &mut Vec<u8>, id: u32, mut file: std::fs::File) {
    use std::io::Read;
    raw.push(super::event::FILE_TAG);
    raw.extend_from_slice(&id.to_le_bytes());
    let len_at = raw.len();
    raw.extend_from_slice(&0u32.to_le_bytes());
    let start = raw.len();
    // A file that shrank or cannot be read any more is stored as far as it was read; its
    // length field says how much that was.
    let _ = file.read_to_end(raw);
    let n = (raw.len() - start) as u32;
    raw[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
}

/// Starts a helper thread of the recorder's or the replayer's and returns once it runs, on a
/// CPU apart from the calling (guest's) thread's ([`split_cpus`](trapbox_host::split_cpus)),
/// with every signal blocked (they are the guest's) and its first allocation made. The thread's
/// own mappings (its stack, the signal stack the standard library gives it, and an allocator
/// arena unless [`keep_allocations_off_mmap`](trapbox_host::keep_allocations_off_mmap)
/// made all threads share the brk heap) are then
/// made at a fixed point of the start-up, not whenever the new thread gets a CPU: a recording
/// and its replay lay trapbox's memory out alike, so the guest addresses the recording got are
/// free in the replay. (A mapping made while the guest ran could take an address the guest's
/// next mmap got in the other run: a flaky "replay diverged at mmap ... = -EEXIST".)
pub(crate) fn spawn_helper_thread<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let cpus = trapbox_host::split_cpus();
    let builder = std::thread::Builder::new().name(name.into());
    let thread = trapbox_host::spawn_helper(builder, move || {
        if let Some(cpus) = cpus {
            trapbox_host::set_thread_cpus(&cpus);
        }
        // The first allocation sets up the thread's allocator state (its arena, if any).
        drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
        let _ = ready_tx.send(());
        body()
    })?;
    let _ = ready_rx.recv();
    Ok(thread)
}

/// Writes events, handing a chunk to a compressing thread when it is large or old enough, so
/// compression overlaps the guest's run. Chunks reach the file in order; one still queued when
/// trapbox is killed is lost, the complete ones before it replay.
pub struct TraceWriter<W: Write + Send + 'static> {
    tx: Option<std::sync::mpsc::SyncSender<Pending>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<(W, u64)>>>,
    buf: Vec<u8>,
    events_in_buf: u32,
    next_event: u64,
    /// Set by the writer's thread when it has waited [`FLUSH_AFTER`] for a chunk: the events
    /// held here are then old enough to hand over. (A flag, not a clock read per event: the
    /// read was a twentieth of a recorded call's cost.)
    due: std::sync::Arc<std::sync::atomic::AtomicBool>,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// How long events wait in the writer's buffer at most (while the guest makes calls).
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

impl<W: Write + Send + 'static> TraceWriter<W> {
    /// Starts a trace on `out` (writes the header).
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.flush()?;
        let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(10));
        let counter = bytes.clone();
        let due = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let due_set = due.clone();
        // A few chunks of slack: the guest runs on while the thread compresses.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(4);
        let thread = spawn_helper_thread("trapbox-trace-writer", move || {
            // The recorder's first scan would otherwise wait for the decoder's tables to be built.
            super::nondet::warm_up();
            let mut written = 10u64;
            loop {
                let mut p = match rx.recv_timeout(FLUSH_AFTER) {
                    Ok(p) => p,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        due_set.store(true, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                if let Some(f) = p.close.take() {
                    drop(f);
                    continue;
                }
                if let Some((mut start, program)) = p.start.take() {
                    start.program_crc = super::file_crc(&program).unwrap_or((0, 0));
                    let mut raw = Vec::with_capacity(p.raw.len() + 4096);
                    Event::Start(start).encode(&mut raw);
                    raw.extend_from_slice(&p.raw);
                    p.raw = raw;
                }
                if let Some((id, file)) = p.file.take() {
                    append_file_event(&mut p.raw, id, file);
                }
                written += write_chunk(&mut out, p.first_event, p.events, &p.raw)?;
                counter.store(written, std::sync::atomic::Ordering::Relaxed);
            }
            Ok((out, written))
        })?;
        Ok(TraceWriter {
            tx: Some(tx),
            thread: Some(thread),
            buf: Vec::new(),
            events_in_buf: 0,
            next_event: 0,
            due,
            bytes,
        })
    }

    /// Appends an event; hands a chunk over every 256 KiB of events or [`FLUSH_AFTER`],
    /// whichever first.
    pub fn push(&mut self, e: &Event) -> std::io::Result<()> {
        e.encode(&mut self.buf);
        self.events_in_buf += 1;
        if self.buf.len() >= 256 << 10 || self.due.load(std::sync::atomic::Ordering::Relaxed) {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends a File event holding the contents of `file`, which the compressing thread
    /// reads, so the guest does not wait for a large file to be copied.
    pub fn push_file(&mut self, id: u32, file: std::fs::File) -> std::io::Result<()> {
        self.events_in_buf += 1;
        self.hand_over(Some((id, file)), None)
    }

    /// Appends `start` (the first event, or an exec's new image) and hands it over at once,
    /// with the CRC of `program` computed on the compressing thread (a large program is not
    /// read while the guest waits).
    pub fn push_start(&mut self, start: StartEvent, program: std::path::PathBuf) -> std::io::Result<()> {
        // The start opens a chunk of its own (the thread puts it before the chunk's events).
        self.flush()?;
        self.events_in_buf += 1;
        self.hand_over(None, Some((start, program)))
    }

    /// Has the writer thread close `file` (an old trace [`create_replacing`] unlinked), so
    /// that the guest does not wait while its blocks are freed.
    pub fn close_later(&mut self, file: std::fs::File) -> std::io::Result<()> {
        self.send(Pending {
            first_event: self.next_event,
            events: 0,
            raw: Vec::new(),
            file: None,
            start: None,
            close: Some(file),
        })
    }

    /// Hands the pending events over as one chunk.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.events_in_buf == 0 {
            return Ok(());
        }
        self.hand_over(None, None)
    }

    fn hand_over(
        &mut self,
        file: Option<(u32, std::fs::File)>,
        start: Option<(StartEvent, std::path::PathBuf)>,
    ) -> std::io::Result<()> {
        let p = Pending {
            first_event: self.next_event,
            events: self.events_in_buf,
            raw: std::mem::take(&mut self.buf),
            file,
            start,
            close: None,
        };
        self.next_event += self.events_in_buf as u64;
        self.events_in_buf = 0;
        self.due.store(false, std::sync::atomic::Ordering::Relaxed);
        self.send(p)
    }

    fn send(&mut self, p: Pending) -> std::io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| std::io::Error::other("trace writer finished"))?;
        if tx.send(p).is_err() {
            // The thread stopped: its error is the one to report.
            return Err(self.join().err().unwrap_or_else(|| std::io::Error::other("trace writer stopped")));
        }
        Ok(())
    }

    fn join_all(&mut self) -> std::io::Result<(W, u64)> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| std::io::Error::other("trace writer panicked"))?,
            None => Err(std::io::Error::other("trace writer finished")),
        }
    }

    fn join(&mut self) -> std::io::Result<W> {
        self.join_all().map(|(w, _)| w)
    }

    /// Flushes, waits for every chunk to be on disk and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush()?;
        self.join()
    }

    /// Like [`TraceWriter::finish`], returning the trace's size in bytes instead.
    pub fn finish_counting(mut self) -> std::io::Result<u64> {
        self.flush()?;
        self.join_all().map(|(_, n)| n)
    }

    /// Events pushed so far.
    pub fn events(&self) -> u64 {
        self.next_event + self.events_in_buf as u64
    }

    /// Bytes on disk so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<W: Write + Send + 'static> Drop for TraceWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
        let _ = self.join();
    }
}

/// How a trace ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The file ends at a chunk boundary.
    Clean,
    /// The file ends inside a chunk (the recording was cut short): the complete prefix is
    /// usable.
    Truncated {
        /// Bytes of the incomplete chunk present.
        bytes: u64,
    },
}

/// Reads events chunk by chunk, verifying each chunk's checksum.
pub struct TraceReader<R: Read> {
    input: R,
    chunk: Vec<u8>,
    pos: usize,
    left_in_chunk: u32,
    chunk_index: u64,
    offset: u64,
    next_event: u64,
    tail: Option<Tail>,
    version: u16,
}

impl<R: Read> TraceReader<R> {
    /// The trace's format version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Opens a trace (checks the header).
    pub fn new(mut input: R) -> Result<Self, TraceError> {
        let mut h = [0u8; 10];
        input.read_exact(&mut h).map_err(|_| TraceError::NotATrace)?;
        if &h[..8] != MAGIC {
            return Err(TraceError::NotATrace);
        }
        let v = u16::from_le_bytes([h[8], h[9]]);
        if !(OLDEST..=VERSION).contains(&v) {
            return Err(TraceError::Version(v));
        }
        Ok(TraceReader {
            input,
            chunk: Vec::new(),
            pos: 0,
            left_in_chunk: 0,
            chunk_index: 0,
            offset: 10,
            next_event: 0,
            tail: None,
            version: v,
        })
    }

    /// Where the trace ended, once the reader reached its end.
    pub fn tail(&self) -> Option<&Tail> {
        self.tail.as_ref()
    }

    /// Index of the next event.
    pub fn position(&self) -> u64 {
        self.next_event
    }

    fn read_full(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.input.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }

    fn load_chunk(&mut self) -> Result<bool, TraceError> {
        let mut h = [0u8; CHUNK_HEADER];
        let got = self.read_full(&mut h)?;
        if got == 0 {
            self.tail = Some(Tail::Clean);
            return Ok(false);
        }
        if got < CHUNK_HEADER {
            self.tail = Some(Tail::Truncated { bytes: got as u64 });
            return Ok(false);
        }
        let (index, offset) = (self.chunk_index, self.offset);
        let corrupt = |why: &str| TraceError::Corrupt { index, offset, why: why.into() };
        if &h[..4] != CHUNK {
            return Err(corrupt("bad chunk magic"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let first = u64::from_le_bytes(h[4..12].try_into().expect("8 bytes"));
        let (events, raw_len, comp_len, crc) = (u32_at(12), u32_at(16), u32_at(20), u32_at(24));
        if first != self.next_event {
            return Err(corrupt("events out of sequence"));
        }
        if raw_len > MAX_CHUNK || comp_len > MAX_CHUNK {
            return Err(corrupt("chunk length out of range"));
        }
        let mut comp = vec![0u8; comp_len as usize];
        let got = self.read_full(&mut comp)?;
        if got < comp.len() {
            self.tail = Some(Tail::Truncated { bytes: (CHUNK_HEADER + got) as u64 });
            return Ok(false);
        }
        if crc32fast::hash(&comp) != crc {
            return Err(TraceError::Checksum { index, offset });
        }
        let raw = zstd::bulk::decompress(&comp, raw_len as usize).map_err(|e| corrupt(&format!("zstd: {e}")))?;
        if raw.len() != raw_len as usize {
            return Err(corrupt("wrong decompressed length"));
        }
        self.chunk = raw;
        self.pos = 0;
        self.left_in_chunk = events;
        self.chunk_index += 1;
        self.offset += (CHUNK_HEADER + comp.len()) as u64;
        Ok(true)
    }

    /// The next event, or None at the end of the trace (see [`TraceReader::tail`]).
    pub fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        while self.left_in_chunk == 0 {
            if self.tail.is_some() || !self.load_chunk()? {
                return Ok(None);
            }
        }
        let (index, offset) = (self.chunk_index - 1, self.offset);
        let mut d = Decoder::new(&self.chunk[self.pos..]).at_version(self.version);
        let e = Event::decode(&mut d).map_err(|why| TraceError::Corrupt { index, offset, why })?;
        self.pos += d.consumed();
        self.left_in_chunk -= 1;
        self.next_event += 1;
        Ok(Some(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::event::SyscallEvent;

    fn sample(n: u64) -> Event {
        Event::Syscall(SyscallEvent { nr: n, args: [n; 6], ret: -2, writes: vec![(0x1000, vec![1, 2, 3])], file: None })
    }

    fn write(n: u64) -> Vec<u8> {
        let mut w = TraceWriter::new(Vec::new()).unwrap();
        for i in 0..n {
            w.push(&sample(i)).unwrap();
            if i % 3 == 2 {
                w.flush().unwrap();
            }
        }
        w.finish().unwrap()
    }

    #[test]
    fn an_old_trace_is_replaced_by_an_empty_file_and_closed_by_the_writer() {
        let dir = std::env::temp_dir().join(format!("trapbox-replace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.trace");
        std::fs::write(&path, b"old trace").unwrap();
        let (new, old) = create_replacing(&path).unwrap();
        let mut old = old.expect("the old file, still open");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let mut was = String::new();
        old.read_to_string(&mut was).unwrap();
        assert_eq!(was, "old trace");
        let mut w = TraceWriter::new(new).unwrap();
        w.close_later(old).unwrap();
        w.push(&sample(1)).unwrap();
        w.finish().unwrap();
        let mut r = TraceReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(r.next_event().unwrap(), Some(sample(1)));
        assert_eq!(r.next_event().unwrap(), None);
        // A name that is a symbolic link is written through, as File::create does.
        let target = dir.join("target.trace");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.join("link.trace");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let (_, old) = create_replacing(&link).unwrap();
        assert!(old.is_none());
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::metadata(&target).unwrap().len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roundtrip_and_clean_tail() {
        let bytes = write(10);
        let mut r = TraceReader::new(&bytes[..]).unwrap();
        for i in 0..10 {
            assert_eq!(r.next_event().unwrap(), Some(sample(i)));
        }
        assert_eq!(r.next_event().unwrap(), None);
        assert_eq!(r.tail(), Some(&Tail::Clean));
    }

    #[test]
    fn truncated_trace_gives_complete_prefix() {
        let bytes = write(10);
        let cut = &bytes[..bytes.len() - 5];
        let mut r = TraceReader::new(cut).unwrap();
        let mut n = 0;
        while r.next_event().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 9, "the last chunk (event 9) is incomplete");
        assert!(matches!(r.tail(), Some(Tail::Truncated { .. })));
    }

    #[test]
    fn corrupt_chunk_is_named() {
        let mut bytes = write(10);
        // Flip a byte inside the second chunk's payload.
        let first_len = CHUNK_HEADER + u32::from_le_bytes(bytes[10 + 20..10 + 24].try_into().unwrap()) as usize;
        let at = 10 + first_len + CHUNK_HEADER + 2;
        bytes[at] ^= 0xff;
        let mut r = TraceReader::new(&bytes[..]).unwrap();
        for _ in 0..3 {
            r.next_event().unwrap();
        }
        match r.next_event() {
            Err(TraceError::Checksum { index: 1, .. }) => {}
            other => panic!("want checksum error for chunk 1, got {other:?}"),
        }
    }

    #[test]
    fn bad_magic_and_version() {
        assert!(matches!(TraceReader::new(&b"ELF......."[..]), Err(TraceError::NotATrace)));
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&(VERSION + 1).to_le_bytes());
        assert!(matches!(TraceReader::new(&v[..]), Err(TraceError::Version(v)) if v == VERSION + 1));
    }
}
