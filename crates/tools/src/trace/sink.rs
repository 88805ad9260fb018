//! Where the tracer's lines go: buffered, so a traced syscall does not cost a `write` of its
//! own. The buffer is written out when it fills, at the end of the run (and when the tracer
//! goes away, a panic included), and at the points where holding lines back would show the
//! user something false or nothing at all: before a process is forked (its copy of the
//! buffer would print the lines twice), before the program reads from a terminal (the lines
//! that led to the prompt), and — when the lines share the program's stdout/stderr — before
//! the program writes there, so both keep their order. A terminal gets every line at once.

use std::io::Write;

/// Bytes held back at most.
const CAPACITY: usize = 64 * 1024;

/// The buffered output.
pub struct Sink {
    w: Box<dyn Write + Send>,
    buf: Vec<u8>,
    mode: Flush,
}

/// When the lines reach their destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Each line at once (a terminal).
    EachLine,
    /// Held back; the lines share the program's stdout/stderr (default trace output on
    /// stderr), so the program's writes there flush first.
    SharedWithProgram,
    /// Held back (a file of its own, `-o`).
    Buffered,
}

impl Sink {
    /// A sink writing to `w`.
    pub fn new(w: Box<dyn Write + Send>, mode: Flush) -> Sink {
        Sink { w, buf: Vec::with_capacity(CAPACITY), mode }
    }

    /// Adds one line (with its newline).
    pub fn line(&mut self, text: &str) {
        self.line_parts(&[text]);
    }

    /// Adds a line given in pieces (a thread's prefix, the text, the newline), copied straight
    /// into the buffer.
    pub fn line_parts(&mut self, parts: &[&str]) {
        for p in parts {
            self.buf.extend_from_slice(p.as_bytes());
        }
        if self.mode == Flush::EachLine || self.buf.len() >= CAPACITY {
            self.flush();
        }
    }

    /// Adds text that ends the output (the `-c` table) and writes everything.
    pub fn finish(&mut self, text: &str) {
        self.buf.extend_from_slice(text.as_bytes());
        self.flush();
    }

    /// Writes out what is held back. A closed trace file must not take the guest down with
    /// it: errors are dropped.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.w.write_all(&self.buf);
            self.buf.clear();
        }
        let _ = self.w.flush();
    }

    /// Whether the program writing to `fd` must see the lines out first.
    pub fn shares(&self, fd: u64) -> bool {
        self.mode == Flush::SharedWithProgram && (fd == 1 || fd == 2)
    }

    /// Whether anything is held back.
    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Counted(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Counted {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            g.0.extend_from_slice(b);
            g.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_held_back_until_flushed_or_dropped() {
        let c = Counted::default();
        let mut s = Sink::new(Box::new(c.clone()), Flush::Buffered);
        for i in 0..100 {
            s.line(&format!("line {i}\n"));
        }
        assert_eq!(c.0.lock().unwrap().1, 0, "no write per line");
        s.flush();
        assert_eq!(c.0.lock().unwrap().1, 1, "one write for all of them");
        s.line("last\n");
        drop(s);
        let g = c.0.lock().unwrap();
        assert!(g.0.ends_with(b"line 99\nlast\n"));
        assert_eq!(g.1, 2);
    }

    #[test]
    fn a_terminal_gets_each_line_and_a_full_buffer_is_written() {
        let c = Counted::default();
        let mut s = Sink::new(Box::new(c.clone()), Flush::EachLine);
        s.line("a\n");
        s.line("b\n");
        assert_eq!(c.0.lock().unwrap().1, 2);
        let c = Counted::default();
        let mut s = Sink::new(Box::new(c.clone()), Flush::Buffered);
        let long = "x".repeat(1000) + "\n";
        for _ in 0..(CAPACITY / long.len() + 1) {
            s.line(&long);
        }
        assert_eq!(c.0.lock().unwrap().1, 1);
        assert!(!s.shares(1) && Sink::new(Box::new(c), Flush::SharedWithProgram).shares(2));
    }
}
