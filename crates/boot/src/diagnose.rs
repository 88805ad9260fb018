//! How a boot ended, in words: the outcome of a VM that ran (power-off, reboot, panic, triple
//! fault, silence, timeout), each with the exit status `trapbox boot` gives it. Refusals before
//! the VM runs are `LoadError`s and `BootError`s (exit status [`REFUSED`]).

#![forbid(unsafe_code)]

use std::fmt;

/// Exit status of a kernel refused before it ran (bad image, limits, PVM).
pub const REFUSED: i32 = 3;

/// Which way a reset reached the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetPath {
    /// Command 0xfe to the i8042 (Linux's `reboot=k`).
    I8042,
    /// A triple fault after the kernel said "reboot: Restarting system" (`reboot=t`).
    TripleFault,
    /// KVM's system-event exit.
    SystemEvent,
}

/// Registers of a vCPU that triple-faulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// vCPU index (APIC ID).
    pub vcpu: u8,
    /// RIP, RSP, RAX, RFLAGS after the shutdown exit, if KVM kept them.
    pub regs: Option<[u64; 4]>,
    /// CR0, CR2, CR3, CR4, EFER after the exit, if kept.
    pub sregs: Option<[u64; 5]>,
    /// RIP at the last exit trapbox saw before the fault (serial output, typically).
    pub last_exit_rip: Option<u64>,
}

impl FaultReport {
    /// True when the registers read after the exit are the reset state: AMD SVM KVM
    /// re-initialises a vCPU on shutdown (the VMCB is undefined after it), so the state at the
    /// fault is gone; Intel VMX and PVM keep it.
    pub fn state_was_reset(&self) -> bool {
        matches!(self.regs, Some([0xfff0, ..]))
    }
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vCPU {}", self.vcpu)?;
        match (self.regs, self.sregs) {
            (Some([rip, rsp, rax, rflags]), Some([cr0, cr2, cr3, cr4, efer])) if !self.state_was_reset() => write!(
                f,
                ": RIP={rip:#x} RSP={rsp:#x} RAX={rax:#x} RFLAGS={rflags:#x} CR0={cr0:#x} CR2={cr2:#x} CR3={cr3:#x} CR4={cr4:#x} EFER={efer:#x}"
            )?,
            _ => write!(f, ": registers at the fault are not available (KVM re-initialised the vCPU, as AMD SVM does)")?,
        }
        if let Some(rip) = self.last_exit_rip {
            write!(f, "; RIP at the last exit before it: {rip:#x}")?;
        }
        Ok(())
    }
}

/// How a boot ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The kernel powered off ("reboot: Power down", printed when it has a power-off method).
    PowerOff,
    /// The kernel halted every CPU ("reboot: System halted"). This is how `poweroff` ends in
    /// this VM: with no ACPI Linux has no power-off method and turns the request into a halt.
    Halted,
    /// The guest reset the machine (a reboot).
    Reset(ResetPath),
    /// The kernel panicked; the "Kernel panic - not syncing: ..." line.
    Panic(String),
    /// A triple fault that no "Restarting system" announced: a crash.
    TripleFault(FaultReport),
    /// Nothing on the console within this many seconds.
    Silent(f64),
    /// The --timeout ran out.
    TimedOut(f64),
    /// The user ended it (Ctrl-A x).
    Interrupted,
}

impl Outcome {
    /// The exit status `trapbox boot` gives this outcome: 0 power-off/halt/reboot, 4 panic,
    /// 5 triple fault, 6 no console output, 124 timeout, 130 ended by the user. (3 is a kernel
    /// refused before it ran, 127 a failure of trapbox or KVM.)
    pub fn exit_status(&self) -> i32 {
        match self {
            Outcome::PowerOff | Outcome::Halted | Outcome::Reset(_) => 0,
            Outcome::Panic(_) => 4,
            Outcome::TripleFault(_) => 5,
            Outcome::Silent(_) => 6,
            Outcome::TimedOut(_) => 124,
            Outcome::Interrupted => 130,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::PowerOff => write!(f, "guest powered off"),
            Outcome::Halted => write!(f, "guest halted (\"reboot: System halted\": poweroff or halt, this VM has no ACPI)"),
            Outcome::Reset(ResetPath::I8042) => write!(f, "guest rebooted (i8042 reset)"),
            Outcome::Reset(ResetPath::TripleFault) => write!(f, "guest rebooted (triple fault after \"Restarting system\")"),
            Outcome::Reset(ResetPath::SystemEvent) => write!(f, "guest rebooted (KVM system event)"),
            Outcome::Panic(line) => write!(f, "kernel panicked: {line}"),
            Outcome::TripleFault(r) => write!(f, "triple fault: {r}"),
            Outcome::Silent(s) => write!(
                f,
                "no console output within {s} s: the kernel wrote nothing to COM1 (0x3f8); check that the command line has console=ttyS0 (trapbox adds it unless --no-default-cmdline), and add earlyprintk=serial to see the earliest messages"
            ),
            Outcome::TimedOut(s) => write!(f, "timed out after {s} s"),
            Outcome::Interrupted => write!(f, "ended by the user"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_exit_status_and_words() {
        assert_eq!(Outcome::PowerOff.exit_status(), 0);
        assert_eq!(Outcome::Reset(ResetPath::I8042).exit_status(), 0);
        let p = Outcome::Panic("Kernel panic - not syncing: VFS".into());
        assert_eq!(p.exit_status(), 4);
        assert_eq!(p.to_string(), "kernel panicked: Kernel panic - not syncing: VFS");
        assert!(Outcome::Silent(2.0).to_string().contains("console=ttyS0"));
        assert_eq!(Outcome::Silent(2.0).exit_status(), 6);
    }

    #[test]
    fn fault_report_says_when_state_was_reset() {
        let mut r = FaultReport {
            vcpu: 0,
            regs: Some([0x10_0123, 0x8ff0, 0, 0x10002]),
            sregs: Some([0x8005_0033, 0, 0x9000, 0x620, 0xd01]),
            last_exit_rip: Some(0x10_0100),
        };
        let s = r.to_string();
        assert!(s.contains("RIP=0x100123") && s.contains("CR3=0x9000") && s.contains("last exit before it: 0x100100"));
        r.regs = Some([0xfff0, 0, 0, 2]);
        assert!(r.state_was_reset());
        assert!(r.to_string().contains("not available"));
    }
}
