//! VM exits, decoded. A raw KVM exit is copied out of `kvm_run` into [`RawExit`] (no borrow of
//! the vCPU survives), then [`classify`] — a pure function, tested with made-up exits — says
//! what it means for the trap path in use.

use super::entry::{hw::SYSCALL_PORT, EXCEPTION_PORT_BASE};
use trapbox_trap::TrapPath;

pub use trapbox_trap::{Exit, RawExit};

/// Where the doorbell protocol lives, for [`classify`].
#[derive(Clone, Copy, Debug)]
pub struct Doorbell {
    /// Guest-physical address of the doorbell page.
    pub gpa: u64,
    /// Guest-virtual address of the trampoline's store instruction.
    pub trampoline: u64,
    /// Length of the store instruction.
    pub store_len: u64,
}

/// Decodes a raw exit for trap path `path`. `rip` is the guest RIP at the exit.
pub fn classify(raw: RawExit, path: TrapPath, doorbell: &Doorbell, rip: u64) -> Exit {
    match raw {
        RawExit::IoOut { port } if path == TrapPath::Hardware && port == SYSCALL_PORT => Exit::Syscall,
        RawExit::IoOut { port } if (EXCEPTION_PORT_BASE..EXCEPTION_PORT_BASE + 32).contains(&port) => {
            Exit::Exception((port - EXCEPTION_PORT_BASE) as u8)
        }
        RawExit::MmioWrite { gpa }
            if path == TrapPath::Pvm
                && gpa & !0xfff == doorbell.gpa
                && (rip == doorbell.trampoline || rip == doorbell.trampoline + doorbell.store_len) =>
        {
            Exit::Syscall
        }
        RawExit::MmioWrite { gpa } | RawExit::MmioRead { gpa } => Exit::StrayMmio { gpa },
        RawExit::Interrupted => Exit::Interrupted,
        RawExit::HostMemoryFault => Exit::HostMemoryFault,
        other => Exit::Unexpected(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: Doorbell = Doorbell { gpa: 0x4000_0000, trampoline: 0x7000_3000, store_len: 9 };

    #[test]
    fn classify_pvm_doorbell_store_is_syscall() {
        let raw = RawExit::MmioWrite { gpa: 0x4000_0000 };
        assert_eq!(classify(raw, TrapPath::Pvm, &DB, 0x7000_3009), Exit::Syscall);
        assert_eq!(classify(raw, TrapPath::Pvm, &DB, 0x7000_3000), Exit::Syscall);
    }

    #[test]
    fn classify_doorbell_store_elsewhere_is_stray() {
        let raw = RawExit::MmioWrite { gpa: 0x4000_0000 };
        assert_eq!(classify(raw, TrapPath::Pvm, &DB, 0x40_1000), Exit::StrayMmio { gpa: 0x4000_0000 });
        let read = RawExit::MmioRead { gpa: 0x4000_0008 };
        assert_eq!(classify(read, TrapPath::Pvm, &DB, 0x7000_3000), Exit::StrayMmio { gpa: 0x4000_0008 });
    }

    #[test]
    fn classify_hw_syscall_port() {
        let raw = RawExit::IoOut { port: SYSCALL_PORT };
        assert_eq!(classify(raw, TrapPath::Hardware, &DB, 0), Exit::Syscall);
        // The syscall port means nothing on PVM.
        assert_eq!(classify(raw, TrapPath::Pvm, &DB, 0), Exit::Unexpected(raw));
    }

    #[test]
    fn classify_exception_ports() {
        assert_eq!(classify(RawExit::IoOut { port: 0x8e }, TrapPath::Pvm, &DB, 0), Exit::Exception(14));
        assert_eq!(classify(RawExit::IoOut { port: 0x80 }, TrapPath::Hardware, &DB, 0), Exit::Exception(0));
        let beyond = RawExit::IoOut { port: 0xa0 };
        assert_eq!(classify(beyond, TrapPath::Pvm, &DB, 0), Exit::Unexpected(beyond));
    }

    #[test]
    fn classify_passes_unknown_exits_through() {
        assert_eq!(classify(RawExit::Other(99), TrapPath::Pvm, &DB, 0), Exit::Unexpected(RawExit::Other(99)));
        assert_eq!(classify(RawExit::Shutdown, TrapPath::Pvm, &DB, 0), Exit::Unexpected(RawExit::Shutdown));
        assert_eq!(classify(RawExit::Interrupted, TrapPath::Hardware, &DB, 0), Exit::Interrupted);
    }
}
