//! Exits from guest code, as the run loop sees them whichever engine ran the guest.

/// A KVM exit, copied out of `kvm_run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawExit {
    /// `out` to a port.
    IoOut {
        /// The port.
        port: u16,
    },
    /// `in` from a port.
    IoIn {
        /// The port.
        port: u16,
    },
    /// A store to guest-physical memory with no slot.
    MmioWrite {
        /// Guest-physical address.
        gpa: u64,
    },
    /// A load from guest-physical memory with no slot.
    MmioRead {
        /// Guest-physical address.
        gpa: u64,
    },
    /// `hlt` at CPL0.
    Hlt,
    /// Triple fault.
    Shutdown,
    /// KVM_RUN returned EINTR (a kick: timeout, SIGINT/SIGTERM).
    Interrupted,
    /// KVM could not emulate something.
    InternalError {
        /// KVM's suberror code.
        suberror: u32,
    },
    /// VM entry failed.
    FailEntry {
        /// Hardware reason.
        reason: u64,
    },
    /// A debug exit (guest debugging enabled).
    Debug {
        /// Exception vector (1 = #DB, 3 = #BP).
        exception: u32,
        /// Guest RIP.
        pc: u64,
    },
    /// KVM_RUN failed with EFAULT: the host could not provide the page behind a guest
    /// access (a file mapping past the end of its file).
    HostMemoryFault,
    /// Any other exit reason, by KVM number.
    Other(u32),
}

/// What an exit from guest code means, on either engine (the KVM engine decodes its exits
/// into these; the in-process engine's signals are the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The guest made a syscall; its registers are in the sync regs.
    Syscall,
    /// The guest raised exception `vector`; the interrupt frame is on the ring-0 stack.
    Exception(u8),
    /// The run was interrupted from the host side.
    Interrupted,
    /// The guest touched guest-physical memory with no slot outside the doorbell protocol
    /// (a load from the doorbell page, a store from anywhere but the trampoline).
    StrayMmio {
        /// Guest-physical address.
        gpa: u64,
    },
    /// A guest access found no host memory behind its page (see RawExit::HostMemoryFault);
    /// the guest is at the faulting instruction.
    HostMemoryFault,
    /// Anything else: the run ends with a report (invariant 6: nothing is dropped silently).
    Unexpected(RawExit),
}
