//! CPU exceptions and the signals Linux turns them into.

/// Names of signals 1..=31 (index 0 unused).
pub const SIGNAL_NAMES: [&str; 32] = [
    "0",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The conventional name of a signal (`SIGSEGV`), `signal N` for the others.
pub fn signal_name(sig: i32) -> String {
    match sig {
        1..=31 => SIGNAL_NAMES[sig as usize].to_string(),
        _ => format!("signal {sig}"),
    }
}

/// A CPU exception raised by guest code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Exception vector.
    pub vector: u8,
    /// Error code pushed by the CPU (0 when the vector has none).
    pub error_code: u64,
    /// Faulting address: CR2 for a page fault, the touched address for a stray access.
    pub addr: Option<u64>,
    /// Instruction that faulted.
    pub rip: u64,
}

/// Exception names, by vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// #DE.
    DivideError,
    /// #DB.
    Debug,
    /// #BP.
    Breakpoint,
    /// #OF.
    Overflow,
    /// #BR.
    BoundRange,
    /// #UD.
    InvalidOpcode,
    /// #NM.
    DeviceNotAvailable,
    /// #DF.
    DoubleFault,
    /// #TS, #NP, #SS.
    Segment,
    /// #GP.
    GeneralProtection,
    /// #PF.
    PageFault,
    /// #MF.
    X87,
    /// #AC.
    AlignmentCheck,
    /// #MC.
    MachineCheck,
    /// #XM.
    Simd,
    /// No CPU vector: the page exists for the guest but its host backing does not (a file
    /// mapping past the end of the file).
    BusError,
    /// Anything else.
    Other,
}

/// A `siginfo_t` (128 bytes) with signo, code and the fault address.
pub fn siginfo_bytes(signo: i32, code: i32, addr: u64) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[0..4].copy_from_slice(&signo.to_le_bytes());
    b[8..12].copy_from_slice(&code.to_le_bytes());
    b[16..24].copy_from_slice(&addr.to_le_bytes());
    b
}

/// What `siginfo_t` would say for a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// `si_code`.
    pub code: i32,
    /// `si_addr`.
    pub addr: u64,
}

const SEGV_MAPERR: i32 = 1;
const SEGV_ACCERR: i32 = 2;
const ILL_ILLOPN: i32 = 2;
const FPE_INTDIV: i32 = 1;
const BUS_ADRALN: i32 = 1;
const BUS_ADRERR: i32 = 2;
const TRAP_BRKPT: i32 = 1;
const SI_KERNEL: i32 = 0x80;

impl Fault {
    /// The pseudo-vector of a [`FaultKind::BusError`] (no CPU exception has it).
    pub const HOST_BUS_ERROR: u8 = 0xff;

    /// The exception's name.
    pub fn kind(&self) -> FaultKind {
        match self.vector {
            0 => FaultKind::DivideError,
            1 => FaultKind::Debug,
            3 => FaultKind::Breakpoint,
            4 => FaultKind::Overflow,
            5 => FaultKind::BoundRange,
            6 => FaultKind::InvalidOpcode,
            7 => FaultKind::DeviceNotAvailable,
            8 => FaultKind::DoubleFault,
            10..=12 => FaultKind::Segment,
            13 => FaultKind::GeneralProtection,
            14 => FaultKind::PageFault,
            16 => FaultKind::X87,
            17 => FaultKind::AlignmentCheck,
            18 => FaultKind::MachineCheck,
            19 => FaultKind::Simd,
            Fault::HOST_BUS_ERROR => FaultKind::BusError,
            _ => FaultKind::Other,
        }
    }

    /// The signal Linux sends for this fault at user level, with si_code and si_addr.
    pub fn siginfo(&self) -> SigInfo {
        let (signo, code, addr) = match self.kind() {
            FaultKind::PageFault => {
                let code = if self.error_code & 1 != 0 { SEGV_ACCERR } else { SEGV_MAPERR };
                (libc::SIGSEGV, code, self.addr.unwrap_or(0))
            }
            FaultKind::GeneralProtection | FaultKind::Segment | FaultKind::DoubleFault => (libc::SIGSEGV, SI_KERNEL, 0),
            FaultKind::InvalidOpcode => (libc::SIGILL, ILL_ILLOPN, self.rip),
            FaultKind::DivideError => (libc::SIGFPE, FPE_INTDIV, self.rip),
            FaultKind::X87 | FaultKind::Simd => (libc::SIGFPE, 0, self.rip),
            FaultKind::AlignmentCheck => (libc::SIGBUS, BUS_ADRALN, self.rip),
            FaultKind::BusError => (libc::SIGBUS, BUS_ADRERR, self.addr.unwrap_or(0)),
            FaultKind::Debug | FaultKind::Breakpoint => (libc::SIGTRAP, TRAP_BRKPT, self.rip),
            FaultKind::Overflow | FaultKind::BoundRange => (libc::SIGSEGV, SI_KERNEL, 0),
            FaultKind::DeviceNotAvailable | FaultKind::MachineCheck | FaultKind::Other => (libc::SIGBUS, 0, 0),
        };
        SigInfo { signo, code, addr }
    }

    /// One line for a crash report: what and where (without the symbol).
    pub fn describe(&self) -> String {
        match self.kind() {
            FaultKind::PageFault => {
                let a = self.addr.unwrap_or(0);
                let access = if self.error_code & 0x10 != 0 {
                    "execute"
                } else if self.error_code & 2 != 0 {
                    "write"
                } else {
                    "read"
                };
                let why = if self.error_code & 1 != 0 { "protection violation" } else { "not mapped" };
                format!("page fault: {access} at {a:#x} ({why})")
            }
            FaultKind::GeneralProtection if self.error_code & 2 != 0 => {
                format!("general protection fault: interrupt vector {:#x} is not available", self.error_code >> 3)
            }
            FaultKind::GeneralProtection => "general protection fault (privileged instruction or bad operand)".into(),
            FaultKind::InvalidOpcode => "invalid opcode".into(),
            FaultKind::DivideError => "divide error".into(),
            FaultKind::Breakpoint => "breakpoint".into(),
            FaultKind::BusError => {
                format!(
                    "bus error at {:#x} (no memory behind it: past the end of a mapped file?)",
                    self.addr.unwrap_or(0)
                )
            }
            k => format!("{k:?} exception (vector {})", self.vector),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siginfo_page_fault_maperr_vs_accerr() {
        let mut f = Fault { vector: 14, error_code: 4, addr: Some(0x10), rip: 1 };
        assert_eq!(f.siginfo(), SigInfo { signo: libc::SIGSEGV, code: SEGV_MAPERR, addr: 0x10 });
        f.error_code = 7;
        assert_eq!(f.siginfo().code, SEGV_ACCERR);
        assert!(f.describe().contains("write at 0x10"));
    }

    #[test]
    fn siginfo_gp_ud_de() {
        let gp = Fault { vector: 13, error_code: 0, addr: None, rip: 5 };
        assert_eq!(gp.siginfo().signo, libc::SIGSEGV);
        let ud = Fault { vector: 6, error_code: 0, addr: None, rip: 5 };
        assert_eq!(ud.siginfo(), SigInfo { signo: libc::SIGILL, code: ILL_ILLOPN, addr: 5 });
        let de = Fault { vector: 0, error_code: 0, addr: None, rip: 5 };
        assert_eq!(de.siginfo().signo, libc::SIGFPE);
    }

    #[test]
    fn describe_int80_names_the_vector() {
        let f = Fault { vector: 13, error_code: (0x80 << 3) | 2, addr: None, rip: 0 };
        assert!(f.describe().contains("vector 0x80"), "{}", f.describe());
    }
}
