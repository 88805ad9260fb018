//! The events of a trace and their byte encoding (little-endian, length-prefixed byte
//! strings; see docs/TRACE_FORMAT.md).

use trapbox_abi as abi;
use trapbox_abi::arch::cpuview::Leaf;
use trapbox_trap::{CpuView, Engine};
pub use trapbox_vdso::{TimeCall, TimeKind};

/// Everything that happened that the guest could not compute by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// How the guest started (always the first event).
    Start(StartEvent),
    /// A syscall, its result and the guest memory the kernel wrote.
    Syscall(SyscallEvent),
    /// An instruction whose result depends on the machine (rdtsc, rdtscp, cpuid).
    Insn(InsnEvent),
    /// How the guest ended.
    End(EndEvent),
    /// The contents of a file the guest mapped (stored once; mmap events refer to it).
    File(FileEvent),
    /// A signal delivered to a guest handler right after the preceding syscall returned.
    Signal(SignalEvent),
    /// Time calls answered in the guest by trapbox's vDSO since the previous event.
    TimeCalls(Vec<TimeCall>),
    /// Bytes that reached the recording's stdout or stderr and are not in the guest's memory:
    /// a child process's output, placed where the recorded process learnt of it, or what a
    /// sendfile, copy_file_range or splice of the recorded process moved, after its Syscall
    /// event. A replay writes them out there.
    Console(ConsoleEvent),
    /// The preceding Syscall event (a write of the recorded process) reached stdout (1) or
    /// stderr (2): a replay writes the same bytes, from the guest's buffer, there.
    ConsoleWrite(u8),
    /// Guest thread N (numbered from 0 in the order threads were created) takes the turn:
    /// the events that follow, up to the next Switch, are its own (format version 5 on).
    Switch(u32),
    /// The thread running was preempted before the instruction these registers (in signal-frame
    /// order, as in [`SignalEvent::interrupted`]) describe, a point it reached again and again
    /// while spinning; a Switch to the thread that takes the turn follows (format version 6 on).
    Preempt([u64; 18]),
    /// The tool that recorded stopped the running thread at a point and made it call a
    /// function of the program from there (format version 10 on): `trapbox fuzz`'s harness,
    /// calling its entry with a crash's input. A replay stops at the same point and does the
    /// same.
    Call(Box<CallEvent>),
}

/// A call the recording tool made the guest make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    /// Where the thread was stopped: its registers in signal-frame order (see
    /// [`SignalEvent::interrupted`]).
    pub at: [u64; 18],
    /// The guest memory written there (the call's arguments and return address).
    pub writes: Vec<(u64, Vec<u8>)>,
    /// The registers the thread went on with (the call's), in the same order.
    pub regs: [u64; 18],
}

/// Bytes a child wrote to the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleEvent {
    /// 1 or 2.
    pub fd: u8,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A signal delivered to the guest's handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalEvent {
    /// The signal.
    pub sig: i32,
    /// Its siginfo, as the handler received it.
    pub info: Vec<u8>,
    /// The user context it interrupted (R8 … R15, RDI, RSI, RBP, RBX, RDX, RAX, RCX, RSP,
    /// RIP, RFLAGS, as the signal frame saves them), format version 4 on: where a replay
    /// must deliver it.
    pub interrupted: Option<[u64; 18]>,
}

/// A mapped file's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEvent {
    /// Number that mmap events use to refer to it.
    pub id: u32,
    /// The file's bytes.
    pub data: Vec<u8>,
}

/// The initial state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartEvent {
    /// The program as executed.
    pub program: Vec<u8>,
    /// argv.
    pub argv: Vec<Vec<u8>>,
    /// envp.
    pub envp: Vec<Vec<u8>>,
    /// CRC-32 and length of the program file (a changed binary is refused before replay).
    pub program_crc: (u32, u64),
    /// Lowest address of a position-independent main image.
    pub exe_base: Option<u64>,
    /// Lowest address of the interpreter's image.
    pub interp_base: Option<u64>,
    /// Lowest address of the stack mapping.
    pub stack_base: u64,
    /// Initial stack pointer.
    pub sp: u64,
    /// The bytes of `[sp, stack top)`: argv, envp, auxv with AT_RANDOM.
    pub stack: Vec<u8>,
    /// Base of trapbox's vDSO, when the guest had it (format version 3 on).
    pub vdso: Option<u64>,
    /// The CPU the guest's user code saw (format version 7 on): a replay needs the same
    /// XSAVE state and layout, and every feature the program was told of.
    pub cpu: Option<Box<CpuView>>,
    /// The engine that ran the recording (format version 8 on): a replay runs on it unless
    /// told otherwise.
    pub engine: Option<Engine>,
    /// The signals the program started with ignored (version 9 on).
    pub ignored: Option<u64>,
}

/// One syscall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallEvent {
    /// Number.
    pub nr: u64,
    /// Argument registers.
    pub args: [u64; 6],
    /// Result (-errno on failure).
    pub ret: i64,
    /// Guest memory after the call where the kernel may have written: (address, bytes).
    pub writes: Vec<(u64, Vec<u8>)>,
    /// For a file mmap: the recorded file (a File event's id) and the offset mapped.
    pub file: Option<(u32, u64)>,
}

/// Which machine-dependent instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// `rdtsc`.
    Rdtsc,
    /// `rdtscp`.
    Rdtscp,
    /// `cpuid`.
    Cpuid,
    /// `rdrand REG`.
    Rdrand,
    /// `rdseed REG`.
    Rdseed,
}

/// One emulated instruction and the registers it produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsnEvent {
    /// Which.
    pub insn: Insn,
    /// Its address.
    pub rip: u64,
    /// RAX, RBX, RCX, RDX after it; for rdrand and rdseed, the value and the carry flag.
    pub regs: [u64; 4],
}

/// The end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndEvent {
    /// exit or exit_group with this status.
    Exited(i32),
    /// Killed by this signal, sent to it (by itself or another process) or a time limit:
    /// where the preceding event left it.
    Killed(i32),
    /// Killed by the signal of a fault at this instruction (format version 10 on): a replay
    /// runs on from the last event to the same fault.
    Faulted {
        /// The signal.
        signal: i32,
        /// The faulting instruction.
        rip: u64,
    },
}

/// Tag of the File event (the trace writer encodes those itself, see `file::push_file`).
pub const FILE_TAG: u8 = 5;

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    b.extend_from_slice(&(v.len() as u32).to_le_bytes());
    b.extend_from_slice(v);
}

/// Guest memory written: a count, then each address and its bytes.
fn put_writes(b: &mut Vec<u8>, writes: &[(u64, Vec<u8>)]) {
    b.extend_from_slice(&(writes.len() as u32).to_le_bytes());
    for (a, d) in writes {
        put_u64(b, *a);
        put_bytes(b, d);
    }
}

fn put_opt(b: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(x) => {
            b.push(1);
            put_u64(b, x);
        }
        None => b.push(0),
    }
}

/// Reads fields back, failing with a description instead of panicking on bad input.
pub struct Decoder<'a> {
    b: &'a [u8],
    at: usize,
    version: u16,
}

impl<'a> Decoder<'a> {
    /// Decodes from `b`, written in the current format version.
    pub fn new(b: &'a [u8]) -> Self {
        Decoder { b, at: 0, version: super::file::VERSION }
    }

    /// Decodes events of an older format version.
    pub fn at_version(mut self, version: u16) -> Self {
        self.version = version;
        self
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> usize {
        self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len()).ok_or("event ends early")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// N u64 in a row (argument or register sets).
    fn u64s<const N: usize>(&mut self) -> Result<[u64; N], String> {
        let mut v = [0u64; N];
        for x in &mut v {
            *x = self.u64()?;
        }
        Ok(v)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    /// What [`put_writes`] encoded.
    fn writes(&mut self) -> Result<Vec<(u64, Vec<u8>)>, String> {
        self.list(|d| Ok((d.u64()?, d.bytes()?)))
    }

    fn opt(&mut self) -> Result<Option<u64>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            t => Err(format!("bad option tag {t}")),
        }
    }

    fn cpu_view(&mut self) -> Result<Option<Box<CpuView>>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => {
                let xcr0 = self.u64()?;
                let leaves = self.list(|d| {
                    let (leaf, sub) = (d.u32()?, d.u32()?);
                    Ok(Leaf { leaf, sub, regs: [d.u32()?, d.u32()?, d.u32()?, d.u32()?] })
                })?;
                Ok(Some(Box::new(CpuView::new(xcr0, leaves))))
            }
            t => Err(format!("bad CPU view tag {t}")),
        }
    }

    fn engine(&mut self) -> Result<Option<Engine>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Engine::Kvm(trapbox_trap::TrapPath::detect()))),
            2 => Ok(Some(Engine::InProcess)),
            t => Err(format!("bad engine tag {t}")),
        }
    }

    fn list<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
        let n = self.u32()? as usize;
        if n > self.b.len() {
            return Err("list longer than its chunk".into());
        }
        (0..n).map(|_| f(self)).collect()
    }
}

impl Event {
    /// Appends the encoding of `self` to `b`.
    pub fn encode(&self, b: &mut Vec<u8>) {
        match self {
            Event::Start(s) => {
                b.push(1);
                put_bytes(b, &s.program);
                b.extend_from_slice(&(s.argv.len() as u32).to_le_bytes());
                s.argv.iter().for_each(|a| put_bytes(b, a));
                b.extend_from_slice(&(s.envp.len() as u32).to_le_bytes());
                s.envp.iter().for_each(|e| put_bytes(b, e));
                b.extend_from_slice(&s.program_crc.0.to_le_bytes());
                put_u64(b, s.program_crc.1);
                put_opt(b, s.exe_base);
                put_opt(b, s.interp_base);
                put_u64(b, s.stack_base);
                put_u64(b, s.sp);
                put_bytes(b, &s.stack);
                put_opt(b, s.vdso);
                match &s.cpu {
                    None => b.push(0),
                    Some(v) => {
                        b.push(1);
                        put_u64(b, v.xcr0());
                        b.extend_from_slice(&(v.leaves().len() as u32).to_le_bytes());
                        for l in v.leaves() {
                            b.extend_from_slice(&l.leaf.to_le_bytes());
                            b.extend_from_slice(&l.sub.to_le_bytes());
                            l.regs.iter().for_each(|r| b.extend_from_slice(&r.to_le_bytes()));
                        }
                    }
                }
                b.push(match s.engine {
                    None => 0,
                    Some(Engine::Kvm(_)) => 1,
                    Some(Engine::InProcess) => 2,
                });
                put_opt(b, s.ignored);
            }
            Event::Syscall(s) => {
                b.push(2);
                put_u64(b, s.nr);
                s.args.iter().for_each(|a| put_u64(b, *a));
                put_u64(b, s.ret as u64);
                put_writes(b, &s.writes);
                put_opt(b, s.file.map(|(id, _)| id as u64));
                if let Some((_, off)) = s.file {
                    put_u64(b, off);
                }
            }
            Event::File(f) => {
                b.push(FILE_TAG);
                b.extend_from_slice(&f.id.to_le_bytes());
                put_bytes(b, &f.data);
            }
            Event::Insn(i) => {
                b.push(3);
                b.push(match i.insn {
                    Insn::Rdtsc => 1,
                    Insn::Rdtscp => 2,
                    Insn::Cpuid => 3,
                    Insn::Rdrand => 4,
                    Insn::Rdseed => 5,
                });
                put_u64(b, i.rip);
                i.regs.iter().for_each(|r| put_u64(b, *r));
            }
            Event::Signal(sg) => {
                b.push(6);
                b.extend_from_slice(&sg.sig.to_le_bytes());
                put_bytes(b, &sg.info);
                match &sg.interrupted {
                    Some(regs) => {
                        b.push(1);
                        regs.iter().for_each(|r| put_u64(b, *r));
                    }
                    None => b.push(0),
                }
            }
            Event::TimeCalls(calls) => {
                b.push(7);
                b.extend_from_slice(&(calls.len() as u32).to_le_bytes());
                for c in calls {
                    b.push(c.kind as u8);
                    put_u64(b, c.arg);
                    put_u64(b, c.ret as u64);
                    put_u64(b, c.value[0]);
                    put_u64(b, c.value[1]);
                }
            }
            Event::ConsoleWrite(fd) => {
                b.push(9);
                b.push(*fd);
            }
            Event::Switch(t) => {
                b.push(10);
                b.extend_from_slice(&t.to_le_bytes());
            }
            Event::Preempt(regs) => {
                b.push(11);
                regs.iter().for_each(|r| put_u64(b, *r));
            }
            Event::Call(c) => {
                b.push(12);
                c.at.iter().for_each(|r| put_u64(b, *r));
                put_writes(b, &c.writes);
                c.regs.iter().for_each(|r| put_u64(b, *r));
            }
            Event::Console(c) => {
                b.push(8);
                b.push(c.fd);
                put_bytes(b, &c.data);
            }
            Event::End(e) => {
                b.push(4);
                let (k, v) = match e {
                    EndEvent::Exited(c) => (0, *c),
                    EndEvent::Killed(s) => (1, *s),
                    EndEvent::Faulted { signal, .. } => (2, *signal),
                };
                b.push(k);
                b.extend_from_slice(&v.to_le_bytes());
                if let EndEvent::Faulted { rip, .. } = e {
                    put_u64(b, *rip);
                }
            }
        }
    }

    /// Decodes one event.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Event, String> {
        Ok(match d.u8()? {
            1 => Event::Start(StartEvent {
                program: d.bytes()?,
                argv: d.list(|d| d.bytes())?,
                envp: d.list(|d| d.bytes())?,
                program_crc: (d.u32()?, d.u64()?),
                exe_base: d.opt()?,
                interp_base: d.opt()?,
                stack_base: d.u64()?,
                sp: d.u64()?,
                stack: d.bytes()?,
                vdso: if d.version >= 3 { d.opt()? } else { None },
                cpu: if d.version >= 7 { d.cpu_view()? } else { None },
                engine: if d.version >= 8 { d.engine()? } else { None },
                ignored: if d.version >= 9 { d.opt()? } else { None },
            }),
            7 => Event::TimeCalls(d.list(|d| {
                let k = d.u8()?;
                let kind = TimeKind::from_u8(k).ok_or_else(|| format!("bad time call kind {k}"))?;
                Ok(TimeCall { kind, arg: d.u64()?, ret: d.u64()? as i64, value: [d.u64()?, d.u64()?] })
            })?),
            2 => {
                let nr = d.u64()?;
                let args = d.u64s()?;
                let ret = d.u64()? as i64;
                let writes = d.writes()?;
                let file = match d.opt()? {
                    Some(id) => Some((u32::try_from(id).map_err(|_| "file id out of range")?, d.u64()?)),
                    None => None,
                };
                Event::Syscall(SyscallEvent { nr, args, ret, writes, file })
            }
            FILE_TAG => Event::File(FileEvent { id: d.u32()?, data: d.bytes()? }),
            8 => {
                let fd = d.u8()?;
                if !matches!(fd, 1 | 2) {
                    return Err(format!("bad console descriptor {fd}"));
                }
                Event::Console(ConsoleEvent { fd, data: d.bytes()? })
            }
            10 => Event::Switch(d.u32()?),
            11 => Event::Preempt(d.u64s()?),
            12 => {
                let at = d.u64s()?;
                let writes = d.writes()?;
                Event::Call(Box::new(CallEvent { at, writes, regs: d.u64s()? }))
            }
            9 => match d.u8()? {
                fd @ (1 | 2) => Event::ConsoleWrite(fd),
                fd => return Err(format!("bad console descriptor {fd}")),
            },
            6 => {
                let sig = i32::from_le_bytes(d.take(4)?.try_into().expect("4 bytes"));
                let info = d.bytes()?;
                if !(1..=64).contains(&sig) || info.len() != 128 {
                    return Err(format!("bad signal event (signal {sig}, {} siginfo bytes)", info.len()));
                }
                let interrupted = match if d.version >= 4 { d.u8()? } else { 0 } {
                    0 => None,
                    1 => Some(d.u64s()?),
                    t => return Err(format!("bad option tag {t}")),
                };
                Event::Signal(SignalEvent { sig, info, interrupted })
            }
            3 => {
                let insn = match d.u8()? {
                    1 => Insn::Rdtsc,
                    2 => Insn::Rdtscp,
                    3 => Insn::Cpuid,
                    4 => Insn::Rdrand,
                    5 => Insn::Rdseed,
                    t => return Err(format!("bad instruction kind {t}")),
                };
                let rip = d.u64()?;
                Event::Insn(InsnEvent { insn, rip, regs: d.u64s()? })
            }
            4 => {
                let k = d.u8()?;
                let v = i32::from_le_bytes(d.take(4)?.try_into().expect("4 bytes"));
                match k {
                    0 => Event::End(EndEvent::Exited(v)),
                    1 => Event::End(EndEvent::Killed(v)),
                    2 => Event::End(EndEvent::Faulted { signal: v, rip: d.u64()? }),
                    t => return Err(format!("bad end kind {t}")),
                }
            }
            t => return Err(format!("bad event tag {t}")),
        })
    }
}

/// A syscall as `name(arg, ...)`, its arguments in hex.
pub fn describe_call(nr: u64, args: &[u64; 6]) -> String {
    let name = abi::lookup(nr).map(|d| d.name.to_string()).unwrap_or_else(|| format!("syscall_{nr:#x}"));
    let n = abi::lookup(nr).map_or(6, |d| d.args.len());
    let a: Vec<String> = args[..n].iter().map(|v| format!("{v:#x}")).collect();
    format!("{name}({})", a.join(", "))
}

impl Event {
    /// The event in a few words, as divergences and `inspect --events` name it.
    pub fn describe(&self) -> String {
        match self {
            Event::Start(_) => "the start of a run".into(),
            Event::Syscall(s) => describe_call(s.nr, &s.args),
            Event::Insn(i) => format!("{:?} at {:#x}", i.insn, i.rip).to_lowercase(),
            Event::End(EndEvent::Exited(c)) => format!("the end of the run (exit {c})"),
            Event::End(EndEvent::Killed(s)) => format!("the end of the run (killed by signal {s})"),
            Event::End(EndEvent::Faulted { signal, rip }) => {
                format!("the end of the run (killed by signal {signal}, a fault at {rip:#x})")
            }
            Event::File(f) => format!("stored file {}", f.id),
            Event::Signal(sg) => format!("signal {} delivered to a handler", trapbox_trap::signal_name(sg.sig)),
            Event::TimeCalls(c) => format!("{} time calls in the vDSO", c.len()),
            Event::Console(c) => format!("{} bytes of console output", c.data.len()),
            Event::ConsoleWrite(fd) => format!("a write to descriptor {fd}"),
            Event::Switch(t) => format!("a switch to guest thread {t}"),
            Event::Preempt(c) => format!("a preemption of the running thread at {:#x}", c[16]),
            Event::Call(c) => format!("a call of {:#x} made at {:#x}", c.regs[16], c.at[16]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip_all_kinds() {
        let events = vec![
            Event::Start(StartEvent {
                program: b"/bin/x".to_vec(),
                argv: vec![b"x".to_vec(), b"-a".to_vec()],
                envp: vec![b"A=1".to_vec()],
                program_crc: (7, 99),
                exe_base: Some(0x5000),
                interp_base: None,
                stack_base: 0x7000,
                sp: 0x7ff0,
                stack: vec![9; 16],
                vdso: Some(0x7fff_0000),
                cpu: Some(Box::new(CpuView::new(
                    0xe7,
                    vec![
                        Leaf { leaf: 0xd, sub: 0, regs: [0xe7, 2432, 2432, 0] },
                        Leaf { leaf: 1, sub: 0, regs: [1, 2, 3, 4] },
                    ],
                ))),
                engine: Some(Engine::InProcess),
                ignored: Some(1 << (libc::SIGINT - 1)),
            }),
            Event::Syscall(SyscallEvent {
                nr: 0,
                args: [1, 2, 3, 4, 5, 6],
                ret: -2,
                writes: vec![(0x10, b"ab".to_vec())],
                file: None,
            }),
            Event::Syscall(SyscallEvent { nr: 9, args: [0; 6], ret: 0x1000, writes: vec![], file: Some((3, 0x2000)) }),
            Event::File(FileEvent { id: 3, data: b"contents".to_vec() }),
            Event::Insn(InsnEvent { insn: Insn::Rdtscp, rip: 0x401000, regs: [1, 2, 3, 4] }),
            Event::Insn(InsnEvent { insn: Insn::Rdseed, rip: 0x401010, regs: [0xdead, 1, 0, 0] }),
            Event::Signal(SignalEvent { sig: 17, info: vec![7; 128], interrupted: None }),
            Event::Signal(SignalEvent {
                sig: 14,
                info: vec![9; 128],
                interrupted: Some(std::array::from_fn(|i| i as u64 * 3)),
            }),
            Event::TimeCalls(vec![
                TimeCall { kind: TimeKind::ClockGettime, arg: 1, ret: 0, value: [5, 6] },
                TimeCall { kind: TimeKind::Time, arg: 0, ret: 1_700_000_000, value: [0, 0] },
            ]),
            Event::Console(ConsoleEvent { fd: 2, data: b"from a child\n".to_vec() }),
            Event::ConsoleWrite(1),
            Event::Switch(3),
            Event::Preempt(std::array::from_fn(|i| i as u64 * 5 + 1)),
            Event::Call(Box::new(CallEvent {
                at: std::array::from_fn(|i| i as u64 + 40),
                writes: vec![(0x7000, b"input".to_vec()), (0x6ff8, vec![1; 8])],
                regs: std::array::from_fn(|i| i as u64 * 7),
            })),
            Event::End(EndEvent::Killed(11)),
            Event::End(EndEvent::Faulted { signal: 11, rip: 0x401234 }),
        ];
        let mut b = Vec::new();
        events.iter().for_each(|e| e.encode(&mut b));
        let mut d = Decoder::new(&b);
        for e in &events {
            assert_eq!(&Event::decode(&mut d).unwrap(), e);
        }
        assert_eq!(d.consumed(), b.len());
    }

    #[test]
    fn version_2_start_has_no_vdso_field() {
        let mut b = Vec::new();
        let start = StartEvent { program: b"/bin/x".to_vec(), stack_base: 1, sp: 2, ..Default::default() };
        Event::Start(start.clone()).encode(&mut b);
        // The trailing "no vDSO", "no CPU view", "no engine" and "no ignored signals" tags,
        // which version 2 did not have.
        b.truncate(b.len() - 4);
        let mut d = Decoder::new(&b).at_version(2);
        assert_eq!(Event::decode(&mut d).unwrap(), Event::Start(start));
        assert_eq!(d.consumed(), b.len());
    }

    #[test]
    fn version_6_start_has_no_cpu_view() {
        let mut b = Vec::new();
        let start = StartEvent { program: b"/bin/x".to_vec(), vdso: Some(9), ..Default::default() };
        Event::Start(start.clone()).encode(&mut b);
        b.truncate(b.len() - 3); // the "no CPU view", "no engine" and "no ignored signals" tags
        let mut d = Decoder::new(&b).at_version(6);
        assert_eq!(Event::decode(&mut d).unwrap(), Event::Start(start));
        assert_eq!(d.consumed(), b.len());
    }

    #[test]
    fn version_7_start_has_no_engine() {
        let mut b = Vec::new();
        let start = StartEvent { program: b"/bin/x".to_vec(), ..Default::default() };
        Event::Start(start.clone()).encode(&mut b);
        b.truncate(b.len() - 2); // the "no engine" and "no ignored signals" tags
        let mut d = Decoder::new(&b).at_version(7);
        assert_eq!(Event::decode(&mut d).unwrap(), Event::Start(start));
        assert_eq!(d.consumed(), b.len());
    }

    #[test]
    fn version_8_start_has_no_ignored_signals() {
        let mut b = Vec::new();
        let start = StartEvent { program: b"/bin/x".to_vec(), engine: Some(Engine::InProcess), ..Default::default() };
        Event::Start(start.clone()).encode(&mut b);
        b.pop(); // the "no ignored signals" tag
        let mut d = Decoder::new(&b).at_version(8);
        assert_eq!(Event::decode(&mut d).unwrap(), Event::Start(start));
        assert_eq!(d.consumed(), b.len());
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        for bad in [&[9u8][..], &[2, 1, 2], &[3, 7], &[1, 255, 255, 255, 255], &[7, 1, 0, 0, 0, 9]] {
            assert!(Event::decode(&mut Decoder::new(bad)).is_err());
        }
    }
}
