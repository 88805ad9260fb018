//! A crash found in harness mode as a trace `trapbox replay` reproduces standalone: the
//! program run from its start under the recorder, and at `main` the same call of the entry
//! on the crash's input that the fuzzer made, recorded as a Call event so that a replay makes
//! it at the same point.

use std::io::Write;

use trapbox_tools::record::Recorder;
use trapbox_trap::{Action, Guest, Outcome, Passthrough, Start, Trap, TrapHandler};

use crate::harness::{call_frame, load_bias, place_int3, take_int3};
use crate::{FuzzError, Target};

/// The recorder, calling the entry once at `main`.
pub struct CallRecording<W: Write + Send + 'static> {
    rec: Recorder<Passthrough, W>,
    /// Link-time `main` and entry.
    main: u64,
    entry: u64,
    pie: bool,
    lowest: u64,
    input: Vec<u8>,
    /// `main`'s run-time address and the byte its `int3` replaced, while it is in.
    armed: Option<(u64, u8)>,
    /// The call was made (or could not be: `main` was not found).
    done: bool,
    /// Why the call could not be made, if it could not.
    pub failure: Option<String>,
}

impl<W: Write + Send + 'static> CallRecording<W> {
    /// `rec` recording `program`, which will call `entry` on `input` at its `main`.
    pub fn new(
        rec: Recorder<Passthrough, W>,
        program: &std::path::Path,
        entry: &str,
        input: Vec<u8>,
    ) -> Result<Self, FuzzError> {
        let t = Target::read(program)?;
        let (main, entry) = (t.require(program, "main")?, t.require(program, entry)?);
        Ok(CallRecording {
            rec,
            main,
            entry,
            pie: t.pie,
            lowest: t.lowest,
            input,
            armed: None,
            done: false,
            failure: None,
        })
    }

    /// The recorder (its errors and counts), once the run is over.
    pub fn into_recorder(self) -> Recorder<Passthrough, W> {
        self.rec
    }

    /// At the first trap: `main` gets its `int3` (as the fuzzer's harness puts it there).
    fn arm(&mut self, g: &mut dyn Guest) {
        let at = self.main.wrapping_add(load_bias(g, self.pie, self.lowest));
        match place_int3(g, at) {
            Ok(byte) => self.armed = Some((at, byte)),
            Err(e) => {
                self.done = true;
                self.failure = Some(format!("main: {e}"));
            }
        }
    }

    /// At `main`: its byte back, then the call, recorded.
    fn call(&mut self, g: &mut dyn Guest, at: u64, byte: u8) -> Action {
        self.done = true;
        self.armed = None;
        if let Err(e) = take_int3(g, at, byte) {
            self.failure = Some(format!("main: {e}"));
            return Action::Exit(1);
        }
        let r = g.regs();
        let entry = self.entry.wrapping_add(load_bias(g, self.pie, self.lowest));
        let (writes, regs) = call_frame(&r, at, entry, &self.input);
        match self.rec.call(g, writes, &regs) {
            Ok(()) => Action::Resume,
            Err(e) => {
                self.failure = Some(format!("the stack cannot hold the input: {e}"));
                Action::Exit(1)
            }
        }
    }
}

impl<W: Write + Send + 'static> TrapHandler for CallRecording<W> {
    fn on_trap(&mut self, g: &mut dyn Guest, trap: &Trap) -> Action {
        if !self.done && self.armed.is_none() {
            self.arm(g);
        }
        match (trap, self.armed) {
            (Trap::Breakpoint { rip }, Some((at, byte))) if rip.wrapping_sub(1) == at => self.call(g, at, byte),
            _ => self.rec.on_trap(g, trap),
        }
    }
    fn on_start(&mut self, g: &mut dyn Guest, start: &Start) {
        self.rec.on_start(g, start)
    }
    fn on_end(&mut self, g: &mut dyn Guest, outcome: &Outcome) {
        self.rec.on_end(g, outcome)
    }
    fn on_signal(&mut self, g: &mut dyn Guest, sig: i32, siginfo: &[u8; 128]) {
        self.rec.on_signal(g, sig, siginfo)
    }
    fn new_thread(&mut self) -> Option<Box<dyn TrapHandler + Send>> {
        self.rec.new_thread()
    }
    fn patched_byte(&self, addr: u64) -> Option<u8> {
        match self.armed {
            Some((at, byte)) if at == addr => Some(byte),
            _ => self.rec.patched_byte(addr),
        }
    }
    fn on_thread_start(&mut self, g: &mut dyn Guest) {
        self.rec.on_thread_start(g)
    }
    fn on_thread_exit(&mut self, g: &mut dyn Guest) {
        self.rec.on_thread_exit(g)
    }
}
