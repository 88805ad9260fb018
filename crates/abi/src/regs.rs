//! The user-mode register file and the two values read from it: a guest address and a
//! syscall (number and arguments). Every layer above speaks these.

use crate::SyscallDesc;

/// A guest virtual address (equal to the host address of the same byte: invariant 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestAddr(pub u64);

/// General-purpose registers, RIP and RFLAGS of the trapping thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

impl Regs {
    /// General register number `n` in encoding order (RAX 0, RCX 1, RDX 2, RBX 3, RSP 4, RBP 5,
    /// RSI 6, RDI 7, R8 8 … R15 15; numbers above 15 wrap).
    pub fn gpr_mut(&mut self, n: u8) -> &mut u64 {
        match n & 15 {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            _ => &mut self.r15,
        }
    }

    /// The value of general register number `n` (see [`Regs::gpr_mut`]).
    pub fn gpr(&self, n: u8) -> u64 {
        let mut copy = *self;
        *copy.gpr_mut(n)
    }
}

/// A syscall as the guest made it: number and the six argument registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// Syscall number (RAX).
    pub nr: u64,
    /// RDI, RSI, RDX, R10, R8, R9.
    pub args: [u64; 6],
}

impl Syscall {
    /// Decodes the syscall in `regs` (at a syscall trap, RIP is the return address).
    pub fn from_regs(r: &Regs) -> Syscall {
        Syscall { nr: r.rax, args: [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] }
    }

    /// The ABI table's entry, if trapbox knows this syscall.
    pub fn desc(&self) -> Option<&'static SyscallDesc> {
        crate::lookup(self.nr)
    }

    /// The typed number, if trapbox knows this syscall.
    pub fn sysno(&self) -> Option<crate::Sysno> {
        self.desc().map(|d| d.sysno)
    }

    /// Whether this is a clone that creates a thread (CLONE_THREAD).
    pub fn creates_thread(&self) -> bool {
        self.nr == libc::SYS_clone as u64 && self.args[0] & libc::CLONE_THREAD as u64 != 0
    }

    /// Whether this is a fork, a vfork, or a clone that makes a process (no CLONE_THREAD).
    pub fn creates_process(&self) -> bool {
        let nr = self.nr as i64;
        nr == libc::SYS_fork
            || nr == libc::SYS_vfork
            || (nr == libc::SYS_clone && self.args[0] & libc::CLONE_THREAD as u64 == 0)
    }

    /// Name as strace prints it (`syscall_0x1ab` when unknown).
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        match self.desc() {
            Some(d) => d.name.into(),
            None => format!("syscall_{:#x}", self.nr).into(),
        }
    }
}
