//! The ioctl requests the box knows: for each, what its third argument is, so that the walk
//! copies it (checking, recording and tracing follow from the shape), and the few the box
//! refuses because they act outside it. A request not here is refused with ENOTTY, what the
//! kernel says for a request a device does not know, and the user is told once.
//!
//! The terminal family is here whole (termios, window size, process groups, the
//! pseudo-terminal master's TIOCGPTN / TIOCSPTLCK / TIOCGPTPEER), so that programs that make
//! a pseudo-terminal (`script`, `openpty`, `forkpty`, expect-style tools) work in the box.

use super::Dir;

/// What an ioctl's third argument is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoctlArg {
    /// A value, or unused.
    Value,
    /// A pointer to flat memory of this shape, which the kernel reads or writes.
    Mem(Shape, Dir),
    /// A signal number (TIOCSIG: sent to the terminal's foreground process group), checked
    /// like every signal the guest names.
    Signal,
    /// A pointer to an `int` naming the process (or negated group) that gets SIGIO / SIGURG
    /// for the descriptor (FIOSETOWN, SIOCSPGRP), checked like every process the guest names.
    Owner,
}

/// The flat shapes ioctl arguments have, as the tracer shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An `int` (`[3]`).
    Int,
    /// A `long` / `loff_t` (8 bytes).
    Long,
    /// `struct winsize` (8 bytes).
    Winsize,
    /// The kernel's `struct termios` (36 bytes).
    Termios,
    /// `struct termio` (18 bytes).
    Termio,
    /// `struct termios2` (44 bytes).
    Termios2,
}

impl Shape {
    /// Bytes the kernel reads or writes.
    pub const fn size(self) -> u64 {
        match self {
            Shape::Int => 4,
            Shape::Long | Shape::Winsize => 8,
            Shape::Termios => 36,
            Shape::Termio => 18,
            Shape::Termios2 => 44,
        }
    }
}

/// One request the box knows.
#[derive(Clone, Copy, Debug)]
pub struct Ioctl {
    /// The request number (the low 32 bits of the argument).
    pub request: u32,
    /// Its name.
    pub name: &'static str,
    /// What it does with the guest, or why it is refused.
    pub handling: IoctlHandling,
}

/// Whether the box passes a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoctlHandling {
    /// Passed to the host with its argument copied.
    Pass {
        /// What the argument is.
        arg: IoctlArg,
        /// It returns a descriptor (vetted like every descriptor a call makes).
        new_fd: bool,
    },
    /// Refused with EPERM, for this reason.
    Refuse(&'static str),
}

const fn pass(request: u32, name: &'static str, arg: IoctlArg) -> Ioctl {
    Ioctl { request, name, handling: IoctlHandling::Pass { arg, new_fd: false } }
}

const fn mem(request: u32, name: &'static str, shape: Shape, dir: Dir) -> Ioctl {
    pass(request, name, IoctlArg::Mem(shape, dir))
}

const fn refuse(request: u32, name: &'static str, why: &'static str) -> Ioctl {
    Ioctl { request, name, handling: IoctlHandling::Refuse(why) }
}

use Dir::{In, Out};
use IoctlArg::Value;
use Shape::{Int, Long, Termio, Termios, Termios2, Winsize};

/// The requests, sorted by number.
pub const IOCTLS: &[Ioctl] = &[
    mem(0x5401, "TCGETS", Termios, Out),
    mem(0x5402, "TCSETS", Termios, In),
    mem(0x5403, "TCSETSW", Termios, In),
    mem(0x5404, "TCSETSF", Termios, In),
    mem(0x5405, "TCGETA", Termio, Out),
    mem(0x5406, "TCSETA", Termio, In),
    mem(0x5407, "TCSETAW", Termio, In),
    mem(0x5408, "TCSETAF", Termio, In),
    pass(0x5409, "TCSBRK", Value),
    pass(0x540a, "TCXONC", Value),
    pass(0x540b, "TCFLSH", Value),
    pass(0x540c, "TIOCEXCL", Value),
    pass(0x540d, "TIOCNXCL", Value),
    pass(0x540e, "TIOCSCTTY", Value),
    mem(0x540f, "TIOCGPGRP", Int, Out),
    mem(0x5410, "TIOCSPGRP", Int, In),
    mem(0x5411, "TIOCOUTQ", Int, Out),
    refuse(0x5412, "TIOCSTI", "it would type into a terminal outside the box"),
    mem(0x5413, "TIOCGWINSZ", Winsize, Out),
    mem(0x5414, "TIOCSWINSZ", Winsize, In),
    mem(0x5415, "TIOCMGET", Int, Out),
    mem(0x5416, "TIOCMBIS", Int, In),
    mem(0x5417, "TIOCMBIC", Int, In),
    mem(0x5418, "TIOCMSET", Int, In),
    mem(0x5419, "TIOCGSOFTCAR", Int, Out),
    mem(0x541a, "TIOCSSOFTCAR", Int, In),
    mem(0x541b, "FIONREAD", Int, Out),
    refuse(0x541c, "TIOCLINUX", "it would act on the console outside the box"),
    refuse(0x541d, "TIOCCONS", "it would redirect the console outside the box"),
    mem(0x5420, "TIOCPKT", Int, In),
    mem(0x5421, "FIONBIO", Int, In),
    pass(0x5422, "TIOCNOTTY", Value),
    mem(0x5424, "TIOCGETD", Int, Out),
    pass(0x5425, "TCSBRKP", Value),
    pass(0x5427, "TIOCSBRK", Value),
    pass(0x5428, "TIOCCBRK", Value),
    mem(0x5429, "TIOCGSID", Int, Out),
    pass(0x5441, "TIOCGPTPEER", Value).new_fd(),
    pass(0x5450, "FIONCLEX", Value),
    pass(0x5451, "FIOCLEX", Value),
    mem(0x5452, "FIOASYNC", Int, In),
    mem(0x5460, "FIOQSIZE", Long, Out),
    pass(0x8901, "FIOSETOWN", IoctlArg::Owner),
    pass(0x8902, "SIOCSPGRP", IoctlArg::Owner),
    mem(0x8903, "FIOGETOWN", Int, Out),
    mem(0x8904, "SIOCGPGRP", Int, Out),
    mem(0x8905, "SIOCATMARK", Int, Out),
    mem(0x4004_5431, "TIOCSPTLCK", Int, In),
    pass(0x4004_5436, "TIOCSIG", IoctlArg::Signal),
    mem(0x402c_542b, "TCSETS2", Termios2, In),
    mem(0x402c_542c, "TCSETSW2", Termios2, In),
    mem(0x402c_542d, "TCSETSF2", Termios2, In),
    mem(0x8004_5430, "TIOCGPTN", Int, Out),
    mem(0x8004_5432, "TIOCGDEV", Int, Out),
    mem(0x8004_5438, "TIOCGPKT", Int, Out),
    mem(0x8004_5439, "TIOCGPTLCK", Int, Out),
    mem(0x8004_5440, "TIOCGEXCL", Int, Out),
    mem(0x8008_6601, "FS_IOC_GETFLAGS", Long, Out),
    mem(0x802c_542a, "TCGETS2", Termios2, Out),
];

impl Ioctl {
    const fn new_fd(self) -> Ioctl {
        match self.handling {
            IoctlHandling::Pass { arg, .. } => Ioctl { handling: IoctlHandling::Pass { arg, new_fd: true }, ..self },
            IoctlHandling::Refuse(_) => self,
        }
    }
}

/// The request `request` (the ioctl's second argument), if the box knows it.
pub fn lookup(request: u64) -> Option<&'static Ioctl> {
    let r = request as u32;
    IOCTLS.binary_search_by_key(&r, |i| i.request).ok().map(|i| &IOCTLS[i])
}

/// Whether an ioctl call (`args`) returns a new descriptor.
pub fn returns_fd(args: &[u64; 6]) -> bool {
    lookup(args[1]).is_some_and(|i| matches!(i.handling, IoctlHandling::Pass { new_fd: true, .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_unique() {
        for w in IOCTLS.windows(2) {
            assert!(w[0].request < w[1].request, "{} before {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn the_pseudo_terminal_requests_are_known_and_typing_into_a_terminal_is_refused() {
        assert_eq!(lookup(0x8004_5430).map(|i| i.name), Some("TIOCGPTN"));
        assert_eq!(lookup(0x4004_5431).map(|i| i.name), Some("TIOCSPTLCK"));
        assert!(returns_fd(&[3, 0x5441, 2, 0, 0, 0]), "TIOCGPTPEER makes a descriptor");
        assert!(!returns_fd(&[3, 0x5401, 0, 0, 0, 0]));
        assert!(matches!(lookup(0x5412).unwrap().handling, IoctlHandling::Refuse(_)));
        // The upper half of the register is not part of the request.
        assert_eq!(lookup(0xffff_ffff_0000_5413).map(|i| i.name), Some("TIOCGWINSZ"));
        assert!(lookup(0x5499).is_none());
    }
}
