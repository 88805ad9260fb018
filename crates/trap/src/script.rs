//! A scripted guest for the tools' unit tests: no engine, no program, no host. Its memory is a
//! few byte ranges, its "host" answers each forwarded syscall from a list given in advance
//! (the result and the bytes the kernel would have written), and [`drive`] hands a list of
//! syscalls to a handler as an engine would. A tracer's lines, a recorder's trace and a
//! replayer's answers can then be checked against exact expectations, on any machine.

use std::collections::{BTreeMap, VecDeque};

use super::{Action, Guest, GuestAddr, MemError, Outcome, Regs, Start, Syscall, Trap, TrapHandler};

/// What the scripted host does for one forwarded syscall.
#[derive(Clone, Debug, Default)]
pub struct HostAnswer {
    /// The result.
    pub ret: i64,
    /// Bytes written into guest memory, as the kernel would.
    pub writes: Vec<(u64, Vec<u8>)>,
}

/// The scripted guest.
#[derive(Debug, Default)]
pub struct ScriptedGuest {
    regs: Regs,
    /// Guest memory: start → bytes; ranges never overlap.
    mem: BTreeMap<u64, Vec<u8>>,
    host: VecDeque<HostAnswer>,
    /// The syscalls that reached the host, in order.
    pub forwarded: Vec<Syscall>,
}

impl ScriptedGuest {
    /// A guest with `len` zero bytes of memory at `at`, whose host gives `answers` in order.
    pub fn new(at: u64, len: usize, answers: Vec<HostAnswer>) -> ScriptedGuest {
        let mut mem = BTreeMap::new();
        mem.insert(at, vec![0; len]);
        ScriptedGuest { regs: Regs::default(), mem, host: answers.into(), forwarded: Vec::new() }
    }

    fn range(&self, addr: u64, len: usize) -> Option<(u64, usize)> {
        let (start, bytes) = self.mem.range(..=addr).next_back()?;
        let off = (addr - start) as usize;
        (off + len <= bytes.len()).then_some((*start, off))
    }

    /// The guest's bytes at `addr` (panics outside its memory: a test bug).
    pub fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.read(GuestAddr(addr), &mut b).expect("inside the scripted memory");
        b
    }
}

impl Guest for ScriptedGuest {
    /// The scripted program has one thread, which is its process.
    fn tid(&self) -> i32 {
        1
    }
    fn regs(&self) -> Regs {
        self.regs
    }
    fn set_regs(&mut self, regs: &Regs) {
        self.regs = *regs;
    }
    fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let (start, off) = self.range(addr.0, buf.len()).ok_or(MemError::Fault(addr.0))?;
        buf.copy_from_slice(&self.mem[&start][off..off + buf.len()]);
        Ok(())
    }
    fn write(&mut self, addr: GuestAddr, data: &[u8]) -> Result<(), MemError> {
        let (start, off) = self.range(addr.0, data.len()).ok_or(MemError::Fault(addr.0))?;
        let bytes = self.mem.get_mut(&start).expect("found above");
        bytes[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn read_cstr(&self, addr: GuestAddr, max: usize) -> Result<Vec<u8>, MemError> {
        let (start, off) = self.range(addr.0, 1).ok_or(MemError::Fault(addr.0))?;
        let bytes = &self.mem[&start][off..];
        let s: Vec<u8> = bytes.iter().take(max).take_while(|b| **b != 0).copied().collect();
        Ok(s)
    }
    fn passthrough(&mut self, call: &Syscall) -> Action {
        if call.nr == libc::SYS_exit_group as u64 || call.nr == libc::SYS_exit as u64 {
            return Action::Exit(call.args[0] as i32);
        }
        self.forwarded.push(*call);
        let a = self.host.pop_front().unwrap_or_else(|| panic!("the script has no host answer for {}", call.name()));
        for (addr, bytes) in &a.writes {
            self.write(GuestAddr(*addr), bytes).expect("scripted writes fall inside the scripted memory");
        }
        Action::Return(a.ret)
    }
    fn symbolize(&self, _: u64) -> Option<String> {
        None
    }
    fn exits(&self) -> u64 {
        0
    }
    fn read_runs(&self, addr: GuestAddr, len: u64) -> Vec<(u64, Vec<u8>)> {
        match self.range(addr.0, len as usize) {
            Some(_) => {
                let mut b = vec![0; len as usize];
                let _ = self.read(addr, &mut b);
                vec![(addr.0, b)]
            }
            None => Vec::new(),
        }
    }
}

/// Hands `calls` (number and arguments) to `handler` one by one as an engine would — RAX set
/// to each answer — then ends the run as the last call (or the script) ends it.
pub fn drive(
    handler: &mut dyn TrapHandler,
    g: &mut ScriptedGuest,
    start: &Start,
    calls: &[(i64, [u64; 6])],
) -> Outcome {
    handler.on_start(g, start);
    let mut outcome = Outcome::Exited(0);
    for (nr, args) in calls {
        let regs = Regs {
            rax: *nr as u64,
            rdi: args[0],
            rsi: args[1],
            rdx: args[2],
            r10: args[3],
            r8: args[4],
            r9: args[5],
            rip: 0x40_1000,
            rflags: 0x202,
            ..g.regs
        };
        g.regs = regs;
        let call = Syscall::from_regs(&regs);
        match handler.on_trap(g, &Trap::Syscall(call)) {
            Action::Return(v) | Action::ReturnAndStop(v) => g.regs.rax = v as u64,
            Action::Resume => {}
            Action::Exit(c) => {
                outcome = Outcome::Exited(c);
                break;
            }
            Action::Kill { signal, fault } => {
                outcome = Outcome::Killed { signal, fault };
                break;
            }
            Action::Stop => {
                outcome = Outcome::Stopped;
                break;
            }
        }
    }
    handler.on_end(g, &outcome);
    outcome
}

/// A writer whose bytes stay readable after it is handed away (a tracer's output, a trace).
#[derive(Clone, Debug, Default)]
pub struct SharedBuffer(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// What was written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::io::Write for SharedBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
