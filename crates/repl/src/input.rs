//! Where lines come from: a line editor with history and completion on a terminal
//! (rustyline), plain lines otherwise (pipe mode).

use std::io::BufRead;

use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use crate::show::GPRS;

/// A source of input lines.
pub trait LineSource {
    /// The next line, or None at the end of input. `prompt` is shown where there is a
    /// terminal.
    fn line(&mut self, prompt: &str) -> Option<String>;
}

/// Lines read from a pipe or file, no prompt, no editing.
pub struct Plain<R>(pub R);

impl<R: BufRead> LineSource for Plain<R> {
    fn line(&mut self, _prompt: &str) -> Option<String> {
        let mut s = String::new();
        match self.0.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
        }
    }
}

/// The REPL's commands, for `.help` and completion.
pub const COMMANDS: [(&str, &str); 17] = [
    (".help", "this list"),
    (".regs", "general registers, RIP and RFLAGS"),
    (".allregs", "all registers: general, FS/GS base, x87, SSE/AVX/AVX-512 as the CPU view has them"),
    (".read", "ADDR [LEN]: hex dump of guest memory (LEN defaults to 64)"),
    (".write", "ADDR HEXBYTES: write guest memory (undoable)"),
    (".map", "the guest's mappings"),
    (".mmap", "LEN [rwx]: map scratch memory (read-write by default)"),
    (".stack", "[N]: N quadwords from RSP (8 by default)"),
    (".begin", "start a block (labels, loops); .end runs it"),
    (".end", "assemble and run the block"),
    (".undo", "step back one line or block: registers, vector state and memory"),
    (".reset", "back to the start: registers, vector state and memory as they were"),
    (".save", "FILE: write the lines that ran"),
    (".load", "FILE: run a saved session's lines"),
    (".timeout", "SECS: how long a line may run before it is stopped (1 by default)"),
    (".quit", "end the session"),
    (".exit", "end the session"),
];

/// Completion of commands and register names.
struct Complete;

impl Completer for Complete {
    type Candidate = String;
    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let start =
            line[..pos].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')).map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let regs = GPRS.iter().chain(["rip", "rflags"].iter()).copied();
        let found: Vec<String> = if word.starts_with('.') && start == 0 {
            COMMANDS.iter().map(|(c, _)| *c).filter(|c| c.starts_with(word)).map(str::to_string).collect()
        } else {
            regs.filter(|r| r.starts_with(word)).map(str::to_string).collect()
        };
        Ok((start, found))
    }
}
impl Hinter for Complete {
    type Hint = String;
}
impl Highlighter for Complete {}
impl Validator for Complete {}
impl Helper for Complete {}

/// A terminal: rustyline, with history (the up arrow) and completion.
pub struct Terminal(Editor<Complete, DefaultHistory>);

impl Terminal {
    /// A line editor on the terminal.
    pub fn new() -> rustyline::Result<Terminal> {
        let mut e = Editor::new()?;
        e.set_helper(Some(Complete));
        Ok(Terminal(e))
    }
}

impl LineSource for Terminal {
    fn line(&mut self, prompt: &str) -> Option<String> {
        loop {
            match self.0.readline(prompt) {
                Ok(l) => {
                    if !l.trim().is_empty() {
                        let _ = self.0.add_history_entry(l.as_str());
                    }
                    return Some(l);
                }
                // Ctrl-C at the prompt drops the line being typed, as shells do.
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => return None,
            }
        }
    }
}
