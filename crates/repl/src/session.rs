//! The session: a [`TrapHandler`] that parks the guest at a breakpoint, reads a line,
//! assembles it into the guest's code area, runs it, and shows what it changed when the
//! `int3` after it brings the guest back. Syscalls the line makes go through the trap path
//! (the tracer around this handler prints them); faults, a line that runs too long and
//! Ctrl-C end the line, and the session goes on.
//!
//! Undo keeps, for every line that ran, the registers and vector state before it and the
//! pages of writable memory it changed, so `.undo` puts back exactly what the line changed.
//! The changed pages are found against a shadow copy of the guest's writable memory, kept
//! current after each line (one read of each mapping into a reused buffer and a compare: a
//! fresh copy per line was most of a line's time). Memory mapped by a line stays mapped.

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, IntelFormatter};
use trapbox_abi::Sysno;
use trapbox_trap::{Action, Guest, GuestAddr, Regs, Syscall, Trap, TrapHandler};

use crate::asm::{Assembler, Syntax};
use crate::guest;
use crate::input::{LineSource, COMMANDS};
use crate::show;

const PAGE: u64 = 4096;

/// What a session needs.
pub struct Options {
    /// The assembler's syntax (and the echo's).
    pub syntax: Syntax,
    /// Plain output: `name=0x…` and `zf:1` pairs, no colour (pipe mode).
    pub plain: bool,
}

/// Guest state to go back to: registers, vector state and writable memory.
struct Snapshot {
    regs: Regs,
    xsave: Option<Vec<u8>>,
    /// Pages as (address, bytes): every writable page (a full copy) or the pages a line
    /// changed (an undo record).
    pages: Vec<(u64, Vec<u8>)>,
}

/// The line now running.
struct Running {
    before: Snapshot,
    source: String,
    code_len: u64,
    /// Why the line ended early, said after the registers.
    note: Option<String>,
    /// Stops the watchdog.
    cancel: mpsc::Sender<()>,
}

/// The REPL handler.
pub struct Session {
    opts: Options,
    asm: Assembler,
    input: Box<dyn LineSource>,
    out: Box<dyn Write>,
    /// Lines queued by `.load`, run before more input is read.
    queued: std::collections::VecDeque<String>,
    /// The lines and blocks that ran, for `.save`.
    history: Vec<String>,
    undo: Vec<Snapshot>,
    initial: Option<Snapshot>,
    /// The guest's writable pages as they were after the last line.
    shadow: std::collections::BTreeMap<u64, Vec<u8>>,
    /// Reused for reading a mapping.
    buf: Vec<u8>,
    running: Option<Running>,
    timeout: Duration,
}

/// What a command or line asks of the guest.
enum Next {
    /// Read another line.
    Prompt,
    /// Run code now in the code area.
    Run,
    /// End the session.
    Quit,
}

impl Session {
    /// A session reading from `input` and writing to `out`, its assembler's files in `dir`.
    pub fn new(
        opts: Options,
        input: Box<dyn LineSource>,
        out: Box<dyn Write>,
        dir: &std::path::Path,
    ) -> Result<Session, crate::asm::AsmError> {
        Ok(Session {
            asm: Assembler::new(opts.syntax, dir)?,
            opts,
            input,
            out,
            queued: Default::default(),
            history: Vec::new(),
            undo: Vec::new(),
            initial: None,
            shadow: Default::default(),
            buf: Vec::new(),
            running: None,
            timeout: Duration::from_secs(1),
        })
    }

    fn say(&mut self, s: &str) {
        let _ = writeln!(self.out, "{s}");
    }

    /// Brings the shadow copy up to date with the guest's writable memory; returns the
    /// pages that changed as they were before (pages new to the shadow have no "before").
    fn sync(&mut self, g: &mut dyn Guest) -> Vec<(u64, Vec<u8>)> {
        let maps = g.process().map(|p| p.mappings()).unwrap_or_default();
        let mut changed = Vec::new();
        for (s, e, prot) in maps {
            if prot & libc::PROT_WRITE == 0 {
                continue;
            }
            self.buf.resize((e - s) as usize, 0);
            let runs = if g.read(GuestAddr(s), &mut self.buf).is_ok() {
                vec![(s, std::mem::take(&mut self.buf))]
            } else {
                g.read_runs(GuestAddr(s), e - s)
            };
            for (addr, bytes) in &runs {
                for (i, page) in bytes.chunks(PAGE as usize).enumerate() {
                    let at = addr + i as u64 * PAGE;
                    match self.shadow.get_mut(&at) {
                        Some(old) if old.as_slice() == page => {}
                        Some(old) => changed.push((at, std::mem::replace(old, page.to_vec()))),
                        None => {
                            self.shadow.insert(at, page.to_vec());
                        }
                    }
                }
            }
            if let Some((_, b)) = runs.into_iter().next().filter(|(a, _)| *a == s) {
                self.buf = b;
            }
        }
        changed
    }

    /// Registers and vector state now (the pages come from [`Self::sync`]).
    fn snapshot(g: &mut dyn Guest) -> Snapshot {
        let xsave = g.process().and_then(|p| p.xsave());
        Snapshot { regs: g.regs(), xsave, pages: Vec::new() }
    }

    /// Puts `s` back: registers, vector state and its pages (the shadow follows).
    fn restore(&mut self, g: &mut dyn Guest, s: &Snapshot) {
        for (addr, bytes) in &s.pages {
            if g.write(GuestAddr(*addr), bytes).is_ok() {
                self.shadow.insert(*addr, bytes.clone());
            }
        }
        if let (Some(x), Some(p)) = (&s.xsave, g.process()) {
            p.set_xsave(x);
        }
        g.set_regs(&s.regs);
    }

    /// Assembles `source`, places it and an `int3` at the code area and points RIP there.
    fn place(&mut self, g: &mut dyn Guest, source: &str) -> Next {
        let code = match self.asm.assemble(source, guest::CODE) {
            Ok(c) => c,
            Err(e) => {
                self.say(&format!("error: {e}"));
                return Next::Prompt;
            }
        };
        if code.is_empty() {
            return Next::Prompt;
        }
        if code.len() as u64 >= guest::CODE_SIZE {
            self.say(&format!("error: {} bytes of code: the code area holds {}", code.len(), guest::CODE_SIZE - 1));
            return Next::Prompt;
        }
        self.echo(&code);
        let mut bytes = code.clone();
        bytes.push(0xcc);
        let patched = g.process().map(|p| p.patch_code(GuestAddr(guest::CODE), &bytes));
        if !matches!(patched, Some(Ok(()))) {
            self.say("error: this engine cannot place code in the guest");
            return Next::Prompt;
        }
        let before = Self::snapshot(g);
        let mut r = g.regs();
        r.rip = guest::CODE;
        g.set_regs(&r);
        let (cancel, stop) = mpsc::channel();
        if let Some(k) = g.process().map(|p| p.kicker()) {
            let limit = self.timeout;
            std::thread::spawn(move || {
                if stop.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
                    k.kick();
                }
            });
        }
        self.running =
            Some(Running { before, source: source.to_string(), code_len: code.len() as u64, note: None, cancel });
        Next::Run
    }

    /// Prints the instructions about to run, as the disassembler reads them.
    fn echo(&mut self, code: &[u8]) {
        let mut d = Decoder::with_ip(64, code, guest::CODE, DecoderOptions::NONE);
        let mut intel = IntelFormatter::new();
        intel.options_mut().set_hex_prefix("0x");
        intel.options_mut().set_hex_suffix("");
        intel.options_mut().set_space_after_operand_separator(true);
        intel.options_mut().set_uppercase_hex(false);
        intel.options_mut().set_signed_immediate_operands(true);
        intel.options_mut().set_branch_leading_zeros(false);
        intel.options_mut().set_show_branch_size(false);
        let mut gas = GasFormatter::new();
        gas.options_mut().set_space_after_operand_separator(true);
        gas.options_mut().set_uppercase_hex(false);
        gas.options_mut().set_branch_leading_zeros(false);
        let mut lines = Vec::new();
        for ins in &mut d {
            let mut s = String::new();
            match self.opts.syntax {
                Syntax::Intel => intel.format(&ins, &mut s),
                Syntax::Att => gas.format(&ins, &mut s),
            }
            lines.push(if self.opts.plain { format!("= {s}") } else { format!("\x1b[2m{:#x}: {s}\x1b[0m", ins.ip()) });
        }
        for l in lines {
            self.say(&l);
        }
    }

    /// The line ended (its `int3`, a fault, the watchdog, Ctrl-C): show what it changed and
    /// keep what undoes it.
    fn finish(&mut self, g: &mut dyn Guest, why: Option<String>) {
        let Some(run) = self.running.take() else { return };
        let _ = run.cancel.send(());
        let after = g.regs();
        self.say_after(&run.before.regs, &after);
        for note in [run.note, why].into_iter().flatten() {
            self.say(&note);
        }
        let changed = self.sync(g);
        self.undo.push(Snapshot { regs: run.before.regs, xsave: run.before.xsave, pages: changed });
        self.history.push(run.source);
        let _ = run.code_len;
    }

    fn say_after(&mut self, before: &Regs, after: &Regs) {
        let regs = show::after_line(before, after, self.opts.plain);
        if !regs.is_empty() {
            self.say(&regs);
        }
        let flags = show::flags(after.rflags, self.opts.plain);
        self.say(&flags);
    }

    /// Reads lines until one runs code or ends the session.
    fn prompt(&mut self, g: &mut dyn Guest) -> Action {
        loop {
            let _ = self.out.flush();
            let line = match self.queued.pop_front() {
                Some(l) => Some(l),
                None => self.input.line("> "),
            };
            let Some(line) = line else { return Action::Stop };
            let next = self.line(g, line.trim());
            let _ = self.out.flush();
            match next {
                Next::Prompt => continue,
                Next::Run => return Action::Resume,
                Next::Quit => return Action::Stop,
            }
        }
    }

    /// One line of input: a command, or code.
    fn line(&mut self, g: &mut dyn Guest, line: &str) -> Next {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            return Next::Prompt;
        }
        if !line.starts_with('.') {
            return self.place(g, line);
        }
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        match cmd {
            ".help" => {
                let mut text =
                    String::from("Type an instruction (or several, separated by ';') to run it in the guest.\n");
                for (c, what) in COMMANDS {
                    text.push_str(&format!("  {c:<9} {what}\n"));
                }
                text.push_str(&format!(
                    "Code runs at {:#x}; scratch memory is at {:#x} ({} KiB). A line may not exit, exec or fork: \
                     such calls fail with EPERM and are explained.",
                    guest::CODE,
                    guest::SCRATCH,
                    guest::SCRATCH_SIZE / 1024
                ));
                self.say(&text);
            }
            ".quit" | ".exit" => return Next::Quit,
            ".regs" => {
                let s = show::all_gprs(&g.regs());
                self.say(&s);
                let f = show::flags(g.regs().rflags, self.opts.plain);
                self.say(&f);
            }
            ".allregs" => self.all_regs(g),
            ".read" => self.read(g, &args),
            ".write" => self.write(g, &args),
            ".map" => {
                let maps = g.process().map(|p| p.mappings()).unwrap_or_default();
                for (s, e, prot) in maps {
                    let r = |b: i32, c: char| if prot & b != 0 { c } else { '-' };
                    let line = format!(
                        "{s:#x}-{e:#x} {}{}{}",
                        r(libc::PROT_READ, 'r'),
                        r(libc::PROT_WRITE, 'w'),
                        r(libc::PROT_EXEC, 'x')
                    );
                    self.say(&line);
                }
            }
            ".mmap" => self.mmap(g, &args),
            ".stack" => {
                let n = args.first().and_then(|a| parse_num(a)).unwrap_or(8).min(512);
                let rsp = g.regs().rsp;
                for i in 0..n {
                    let mut b = [0u8; 8];
                    let a = rsp.wrapping_add(8 * i);
                    let text = match g.read(GuestAddr(a), &mut b) {
                        Ok(()) => format!("{a:#x} rsp+{:#x}: {:#018x}", 8 * i, u64::from_le_bytes(b)),
                        Err(_) => format!("{a:#x} rsp+{:#x}: (not mapped)", 8 * i),
                    };
                    self.say(&text);
                }
            }
            ".begin" => {
                let mut block = Vec::new();
                loop {
                    let l = match self.queued.pop_front() {
                        Some(l) => Some(l),
                        None => self.input.line("... "),
                    };
                    match l {
                        None => return Next::Quit,
                        Some(l) if l.trim() == ".end" => break,
                        Some(l) => block.push(l),
                    }
                }
                return self.place(g, &block.join("\n"));
            }
            ".end" => self.say("error: .end without .begin"),
            ".undo" => match self.undo.pop() {
                Some(s) => {
                    let now = g.regs();
                    self.restore(g, &s);
                    self.history.pop();
                    self.say("undone");
                    self.say_after(&now, &s.regs);
                }
                None => self.say("nothing to undo"),
            },
            ".reset" => {
                if let Some(s) = self.initial.take() {
                    let now = g.regs();
                    // Undo records are newest last: put each back, then the start's registers
                    // and full copy (pages a line mapped have no record).
                    while let Some(u) = self.undo.pop() {
                        self.restore(g, &u);
                    }
                    self.restore(g, &s);
                    let regs = s.regs;
                    self.initial = Some(s);
                    self.history.clear();
                    self.say("reset");
                    self.say_after(&now, &regs);
                }
            }
            ".save" => match args.first() {
                Some(path) => {
                    let text: String = self
                        .history
                        .iter()
                        .map(|h| if h.contains('\n') { format!(".begin\n{h}\n.end\n") } else { format!("{h}\n") })
                        .collect();
                    match std::fs::write(path, text) {
                        Ok(()) => self.say(&format!("saved {} lines to {path}", self.history.len())),
                        Err(e) => self.say(&format!("error: cannot write {path}: {e}")),
                    }
                }
                None => self.say("error: .save FILE"),
            },
            ".load" => match args.first() {
                Some(path) => match std::fs::read_to_string(path) {
                    Ok(text) => {
                        for l in text.lines().rev() {
                            self.queued.push_front(l.to_string());
                        }
                    }
                    Err(e) => self.say(&format!("error: cannot read {path}: {e}")),
                },
                None => self.say("error: .load FILE"),
            },
            ".timeout" => match args.first().and_then(|a| a.parse::<f64>().ok()).filter(|s| *s > 0.0 && *s < 1e6) {
                Some(s) => self.timeout = Duration::from_secs_f64(s),
                None => self.say("error: .timeout SECS"),
            },
            _ => self.say(&format!("error: unknown command {cmd} (.help lists them)")),
        }
        Next::Prompt
    }

    fn all_regs(&mut self, g: &mut dyn Guest) {
        let r = g.regs();
        let mut text = show::all_gprs(&r);
        text.push('\n');
        text.push_str(&show::flags(r.rflags, self.opts.plain));
        if let Some((fs, gs)) = g.process().map(|p| p.segment_bases()) {
            text.push_str(&format!("\nfs_base={fs:#x}\ngs_base={gs:#x}"));
        }
        let vector = g.process().and_then(|p| Some((p.xsave()?, p.cpu_view())));
        if let Some((x, view)) = vector {
            text.push('\n');
            text.push_str(&show::vector_regs(&x, &view));
        }
        self.say(&text);
    }

    fn read(&mut self, g: &mut dyn Guest, args: &[&str]) {
        let Some(addr) = args.first().and_then(|a| self.value(g, a)) else {
            return self.say("error: .read ADDR [LEN]");
        };
        let len = args.get(1).and_then(|a| parse_num(a)).unwrap_or(64).min(1 << 16);
        let mut b = vec![0u8; len as usize];
        if g.read(GuestAddr(addr), &mut b).is_err() {
            return self.say(&format!("error: {addr:#x}+{len:#x} is not readable guest memory"));
        }
        for (i, row) in b.chunks(16).enumerate() {
            let hex: Vec<String> = row.iter().map(|x| format!("{x:02x}")).collect();
            let text: String = row.iter().map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '.' }).collect();
            let line = format!("{:#x}: {:<47}  {text}", addr + 16 * i as u64, hex.join(" "));
            self.say(&line);
        }
    }

    fn write(&mut self, g: &mut dyn Guest, args: &[&str]) {
        let Some(addr) = args.first().and_then(|a| self.value(g, a)) else {
            return self.say("error: .write ADDR HEXBYTES");
        };
        let hex: String = args[1..].concat();
        let bytes: Option<Vec<u8>> = (hex.len().is_multiple_of(2) && !hex.is_empty())
            .then(|| (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect())
            .flatten();
        let Some(bytes) = bytes else { return self.say("error: .write ADDR HEXBYTES (an even number of hex digits)") };
        if g.write(GuestAddr(addr), &bytes).is_err() {
            return self.say(&format!("error: {addr:#x}+{:#x} is not writable guest memory", bytes.len()));
        }
        let pages = self.sync(g);
        self.undo.push(Snapshot { regs: g.regs(), xsave: None, pages });
        self.history.push(format!(".write {addr:#x} {hex}"));
        self.say(&format!("wrote {} bytes at {addr:#x}", bytes.len()));
    }

    fn mmap(&mut self, g: &mut dyn Guest, args: &[&str]) {
        let Some(len) = args.first().and_then(|a| parse_num(a)).filter(|l| *l > 0) else {
            return self.say("error: .mmap LEN [rwx]");
        };
        let prot = match args.get(1) {
            None => libc::PROT_READ | libc::PROT_WRITE,
            Some(p) if p.chars().all(|c| "rwx-".contains(c)) => {
                (if p.contains('r') { libc::PROT_READ } else { 0 })
                    | (if p.contains('w') { libc::PROT_WRITE } else { 0 })
                    | (if p.contains('x') { libc::PROT_EXEC } else { 0 })
            }
            Some(_) => return self.say("error: .mmap LEN [rwx]"),
        };
        let call = Syscall {
            nr: Sysno::mmap as u64,
            args: [0, len, prot as u64, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64, u64::MAX, 0],
        };
        match g.passthrough(&call) {
            Action::Return(r) if r >= 0 => self.say(&format!("mapped {len:#x} bytes at {r:#x}")),
            Action::Return(r) => {
                self.say(&format!("error: mmap failed: {}", std::io::Error::from_raw_os_error(-r as i32)))
            }
            _ => self.say("error: mmap failed"),
        }
    }

    /// A number, or a register's value (`.read rsp 32`).
    fn value(&self, g: &dyn Guest, s: &str) -> Option<u64> {
        parse_num(s).or_else(|| show::get(&g.regs(), s))
    }

    /// A syscall the line made that a REPL's guest must not make: said, and refused.
    fn refuse(&mut self, call: &Syscall) -> Option<Action> {
        let why = match call.sysno()? {
            Sysno::exit | Sysno::exit_group => {
                format!(
                    "note: exit({}) would end the guest process; refused with EPERM, and the line stops there",
                    call.args[0] as i32
                )
            }
            Sysno::execve | Sysno::execveat => {
                "note: execve would replace the REPL's guest program; refused with EPERM".to_string()
            }
            Sysno::fork | Sysno::vfork | Sysno::clone | Sysno::clone3 => {
                "note: the REPL's guest stays one thread in one process; fork/clone refused with EPERM".to_string()
            }
            _ => return None,
        };
        if let Some(r) = self.running.as_mut() {
            r.note = Some(why);
        }
        Some(Action::Return(-(libc::EPERM as i64)))
    }
}

/// `0x10`, `16`, `-1`.
fn parse_num(s: &str) -> Option<u64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16).ok()?,
        None => s.replace('_', "").parse().ok()?,
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

impl TrapHandler for Session {
    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        match trap {
            Trap::Breakpoint { rip } if self.running.is_none() => {
                if self.initial.is_none() {
                    // The guest's first instruction: clean registers (the stack stays).
                    let r = g.regs();
                    let clean = Regs { rsp: r.rsp, rip: rip - 1, rflags: 0x202, ..Regs::default() };
                    g.set_regs(&clean);
                    self.sync(g);
                    let mut start = Self::snapshot(g);
                    start.pages = self.shadow.iter().map(|(a, p)| (*a, p.clone())).collect();
                    self.initial = Some(start);
                }
                self.prompt(g)
            }
            Trap::Breakpoint { rip } => {
                let end = guest::CODE + self.running.as_ref().map_or(0, |r| r.code_len);
                let mut r = g.regs();
                r.rip = rip - 1;
                g.set_regs(&r);
                let why = (rip - 1 != end).then(|| format!("note: int3 at {:#x} ended the line", rip - 1));
                self.finish(g, why);
                self.prompt(g)
            }
            Trap::Syscall(call) => match self.refuse(call) {
                Some(a) => {
                    if matches!(call.sysno(), Some(Sysno::exit | Sysno::exit_group)) {
                        // The line ends at its exit: on to the int3 after its code.
                        let mut r = g.regs();
                        r.rip = guest::CODE + self.running.as_ref().map_or(0, |r| r.code_len);
                        g.set_regs(&r);
                    }
                    a
                }
                None => g.passthrough(call),
            },
            Trap::Fault(f) => {
                let si = f.siginfo();
                let why =
                    format!("fault: {} ({}) at rip {:#x}", trapbox_trap::signal_name(si.signo), f.describe(), f.rip);
                self.finish(g, Some(why));
                self.prompt(g)
            }
            Trap::SingleStep { .. } => {
                self.finish(g, Some("note: single-step trap (TF set) ended the line".into()));
                self.prompt(g)
            }
            Trap::Preempt => {
                let why =
                    format!("stopped: still running after {:?} (rip {:#x}; .timeout SECS)", self.timeout, g.regs().rip);
                self.finish(g, Some(why));
                self.prompt(g)
            }
            Trap::HostSignal(libc::SIGINT) if self.running.is_some() => {
                let why = format!("interrupted at rip {:#x}", g.regs().rip);
                self.finish(g, Some(why));
                self.prompt(g)
            }
            Trap::HostSignal(sig) => Action::Kill { signal: *sig, fault: None },
            Trap::Timeout => Action::Kill { signal: libc::SIGKILL, fault: None },
        }
    }
}
