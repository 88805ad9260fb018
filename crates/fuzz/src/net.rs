//! Fuzzing on several machines: `--broker [HOST:]PORT` on one, `--connect HOST:PORT` on the
//! others. A bridge between this machine's queues ([`crate::exchange`]) and a TCP connection:
//! the inputs the local jobs keep (OUT/queue/jobK/) go out, and the inputs other machines
//! kept come in as files of OUT/queue/net/, which the local jobs run as they run each
//! other's. The broker passes what one machine sends to every other. Each input crosses
//! once: a bridge remembers what it sent and received (by content) and sends neither again.
//!
//! The wire: each side first sends [`HELLO`]; then every input is a frame, its length (4
//! bytes, little-endian, at most [`MAX_INPUT`]) and its bytes. A peer that says something
//! else is dropped with a line. The bridge's sockets live in trapbox's private descriptor
//! range, out of the guest's numbers (which a reset lists and closes).
//!
//! This is trapbox's own exchange, not LibAFL's LLMP broker: the queues are already how the
//! jobs of one machine meet, and a bridge keeps the one format on both sides.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What each side says first.
pub const HELLO: &[u8; 16] = b"trapbox-fuzz 1\n\0";
/// Longest input a frame may carry (as the local exchange takes).
pub const MAX_INPUT: u32 = crate::exchange::MAX_INPUT as u32;
/// How often the local queues are looked at for inputs to send.
const EVERY: Duration = Duration::from_secs(1);
/// How long a peer may take to greet, or to take a frame, before it is dropped.
const PATIENCE: Duration = Duration::from_secs(10);
/// Most peers a broker serves at once (each holds a descriptor of the private range).
const MAX_PEERS: usize = 64;

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The broker's address cannot be listened on.
    #[error("--broker {0}: {1}")]
    Listen(String, std::io::Error),
    /// The broker cannot be reached.
    #[error("--connect {0}: {1}")]
    Connect(String, std::io::Error),
    /// The peer is not a trapbox fuzzer.
    #[error("--connect {0}: the peer is not a trapbox fuzzer (it did not greet as one)")]
    NotAPeer(String),
    /// OUT/queue/net cannot be made.
    #[error("cannot make {0}: {1}")]
    Queue(PathBuf, std::io::Error),
}

/// A peer's connection: read by its own thread, written under `writing` (a frame at a time).
struct Peer {
    id: u64,
    stream: TcpStream,
    writing: Mutex<()>,
}

/// What the bridge's threads share.
struct Shared {
    /// OUT/queue.
    queue: PathBuf,
    peers: Mutex<Vec<Arc<Peer>>>,
    /// Inputs sent or received, by content.
    seen: Mutex<HashSet<u64>>,
    /// Inputs sent (to each peer counted once) and received.
    sent: AtomicU64,
    received: AtomicU64,
    /// Names for the received inputs' files.
    next: AtomicU64,
    /// The campaign ended: the threads stop.
    done: AtomicBool,
    /// This side passes what one peer sends to the others.
    relay: bool,
    /// Connections accepted and still greeting.
    greeting: std::sync::atomic::AtomicUsize,
}

/// This machine's end of the network exchange; the threads stop when it is dropped.
pub struct Bridge {
    shared: Arc<Shared>,
    /// Where a broker listens (its port chosen by the system for port 0).
    pub listening: Option<std::net::SocketAddr>,
}

impl Bridge {
    /// Listens on `addr` (`PORT` or `HOST:PORT`; every address for a bare port) and serves
    /// every fuzzer that connects, with this machine's queues under `out`.
    pub fn broker(out: &Path, addr: &str) -> Result<Bridge, NetError> {
        let at = if addr.contains(':') { addr.to_string() } else { format!("0.0.0.0:{addr}") };
        let listen = || -> std::io::Result<TcpListener> {
            let l = TcpListener::from(private(|| TcpListener::bind(&at).map(OwnedFd::from))?);
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let listener = listen().map_err(|e| NetError::Listen(addr.into(), e))?;
        let local = listener.local_addr().map_err(|e| NetError::Listen(addr.into(), e))?;
        let shared = Shared::new(out, true)?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("trapbox-fuzz-broker".into())
            .spawn(move || accept_loop(&s, listener))
            .map_err(|e| NetError::Listen(addr.into(), e))?;
        watch(&shared);
        Ok(Bridge { shared, listening: Some(local) })
    }

    /// Connects to the broker at `addr` (trying for up to `patience`, as the broker may start
    /// later) and exchanges this machine's queues under `out` with it.
    pub fn connect(out: &Path, addr: &str, patience: Duration) -> Result<Bridge, NetError> {
        let deadline = Instant::now() + patience;
        // Each of the name's addresses in turn (a name may give IPv6 first and the broker
        // listen on IPv4). No guest runs yet: the socket may take a low number until it moves.
        let connect_any = || -> std::io::Result<TcpStream> {
            let mut last = std::io::Error::other("the name has no address");
            for a in addr.to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                    Ok(s) => return private(|| Ok(OwnedFd::from(s))).map(TcpStream::from),
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        let mut stream = loop {
            match connect_any() {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(NetError::Connect(addr.into(), e)),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        greet(&mut stream).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => NetError::NotAPeer(addr.into()),
            _ => NetError::Connect(addr.into(), e),
        })?;
        let shared = Shared::new(out, false)?;
        shared.add(stream, addr.to_string());
        watch(&shared);
        Ok(Bridge { shared, listening: None })
    }

    /// Inputs sent to peers and received from them so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.sent.load(Ordering::SeqCst), self.shared.received.load(Ordering::SeqCst))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.done.store(true, Ordering::SeqCst);
        for p in self.shared.peers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // Not under the writing lock: a write stuck on a peer ends with it.
            let _ = p.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A socket `make` opens, moved into trapbox's private descriptor range.
fn private(make: impl FnOnce() -> std::io::Result<OwnedFd>) -> std::io::Result<OwnedFd> {
    trapbox_host::fds::private(|| make().map(std::fs::File::from)).map(OwnedFd::from)
}

/// Sends [`HELLO`] and checks the peer's, which must come whole within [`PATIENCE`]; from
/// then on a write that waits that long drops the peer.
fn greet(s: &mut TcpStream) -> std::io::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    s.set_write_timeout(Some(PATIENCE))?;
    s.write_all(HELLO)?;
    let mut theirs = [0u8; 16];
    let mut got = 0;
    while got < theirs.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no greeting"));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut theirs[got..])? {
            0 => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "closed before greeting")),
            n => got += n,
        }
    }
    s.set_read_timeout(None)?;
    if &theirs != HELLO {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a trapbox fuzzer"));
    }
    Ok(())
}

fn digest(input: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    h.finish()
}

impl Shared {
    fn new(out: &Path, relay: bool) -> Result<Arc<Shared>, NetError> {
        let queue = out.join("queue");
        let net = queue.join("net");
        crate::host::files(|| std::fs::create_dir_all(&net)).map_err(|e| NetError::Queue(net, e))?;
        Ok(Arc::new(Shared {
            queue,
            peers: Mutex::default(),
            seen: Mutex::default(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            next: AtomicU64::new(0),
            done: AtomicBool::new(false),
            relay,
            greeting: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// A greeted peer: its inputs are read on a thread of their own.
    fn add(self: &Arc<Shared>, stream: TcpStream, name: String) {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let peer = Arc::new(Peer { id: IDS.fetch_add(1, Ordering::SeqCst), stream, writing: Mutex::new(()) });
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).push(peer.clone());
        let s = self.clone();
        let _ = std::thread::Builder::new().name("trapbox-fuzz-peer".into()).spawn(move || s.read_peer(&peer, &name));
    }

    /// Inputs from one peer until it goes: each kept as a file of OUT/queue/net (once), and
    /// on a broker passed to the other peers.
    fn read_peer(&self, from: &Peer, name: &str) {
        let mut r = &from.stream;
        loop {
            let mut len = [0u8; 4];
            if r.read_exact(&mut len).is_err() {
                break;
            }
            let len = u32::from_le_bytes(len);
            if len > MAX_INPUT {
                eprintln!("trapbox fuzz: {name}: an input of {len} bytes (more than {MAX_INPUT}); dropping the peer");
                break;
            }
            let mut input = vec![0u8; len as usize];
            if r.read_exact(&mut input).is_err() {
                break;
            }
            if !self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(digest(&input)) {
                continue;
            }
            self.received.fetch_add(1, Ordering::SeqCst);
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            let _ = crate::exchange::put(&self.queue.join("net"), n, &input);
            if self.relay {
                self.send(&input, Some(from.id));
            }
        }
        if !self.done.load(Ordering::SeqCst) {
            eprintln!("trapbox fuzz: {name} left the exchange");
        }
        self.drop_peer(from.id);
    }

    /// Forgets peer `id` and ends its connection.
    fn drop_peer(&self, id: u64) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = peers.iter().find(|p| p.id == id) {
            let _ = p.stream.shutdown(std::net::Shutdown::Both);
        }
        peers.retain(|p| p.id != id);
    }

    /// Sends `input` to every peer but `except`. A peer that does not take a frame within
    /// [`PATIENCE`] (its writes time out) is dropped: a frame cut short leaves the stream
    /// out of step.
    fn send(&self, input: &[u8], except: Option<u64>) {
        let peers: Vec<Arc<Peer>> = self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for p in peers.iter().filter(|p| Some(p.id) != except) {
            let _frame = p.writing.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = &p.stream;
            let len = (input.len() as u32).to_le_bytes();
            if out.write_all(&len).and_then(|_| out.write_all(input)).is_ok() {
                self.sent.fetch_add(1, Ordering::SeqCst);
            } else {
                self.drop_peer(p.id);
            }
        }
    }
}

/// The broker's accepting loop: each connection greeted on a thread of its own, joining if it
/// is a trapbox fuzzer and there is room.
fn accept_loop(s: &Arc<Shared>, listener: TcpListener) {
    while !s.done.load(Ordering::SeqCst) {
        match private(|| listener.accept().map(|(c, _)| OwnedFd::from(c))) {
            Ok(fd) => {
                let mut c = TcpStream::from(fd);
                let name = c.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "a peer".into());
                // Peers and connections still greeting: each holds a private descriptor.
                let busy = s.peers.lock().unwrap_or_else(|e| e.into_inner()).len() + s.greeting.load(Ordering::SeqCst);
                if busy >= MAX_PEERS {
                    eprintln!("trapbox fuzz: {name}: the broker serves {MAX_PEERS} peers already; dropped");
                    continue;
                }
                let _ = c.set_nonblocking(false);
                s.greeting.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                let _ = std::thread::Builder::new().name("trapbox-fuzz-greet".into()).spawn(move || {
                    let greeted = greet(&mut c);
                    s.greeting.fetch_sub(1, Ordering::SeqCst);
                    match greeted {
                        Ok(()) => s.add(c, name),
                        Err(_) => eprintln!("trapbox fuzz: {name} is not a trapbox fuzzer; dropped"),
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Sends the local jobs' kept inputs as they appear (every [`EVERY`]): each file of
/// OUT/queue/jobK/ once.
fn watch(s: &Arc<Shared>) {
    let s = s.clone();
    let _ = std::thread::Builder::new().name("trapbox-fuzz-watch".into()).spawn(move || {
        let mut done_files: HashSet<PathBuf> = HashSet::new();
        while !s.done.load(Ordering::SeqCst) {
            for input in crate::host::files(|| local_inputs(&s.queue, &mut done_files)) {
                if s.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(digest(&input)) {
                    s.send(&input, None);
                }
            }
            std::thread::sleep(EVERY);
        }
    });
}

/// The local jobs' queue files not looked at yet (not the network's own).
fn local_inputs(queue: &Path, done: &mut HashSet<PathBuf>) -> Vec<Vec<u8>> {
    let job = |d: &Path| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("job"));
    crate::exchange::new_inputs(queue, job, done)
}
