//! Defense in depth: what trapbox does to its own process so that a check it missed cannot
//! become a way out.
//!
//! - **Not dumpable** (PR_SET_DUMPABLE 0): no core file of trapbox's memory, and another
//!   process of the user (a guest's forked child is one) cannot ptrace it or open its memory.
//!   The guest's own PR_SET_DUMPABLE is only its view (`process::GuestView`).
//! - **no_new_privs**: nothing trapbox executes gains privileges (and seccomp needs it).
//! - **Without CAP_SYS_PTRACE** (effective, permitted, inheritable, bounding and ambient sets
//!   of the thread that runs the guest, which its threads inherit): as root, that capability
//!   alone would reopen another process's memory and `process_vm_*` whatever the dumpable flag
//!   says. The guest has no use for it (ptrace is refused).
//! - **A seccomp filter built from the ABI table** ([`filter`]), on every thread: an allow
//!   list of the calls the table forwards to the host or emulates (trapbox makes both kinds
//!   itself: for the guest, and for its own work, which needs nothing else). What the table
//!   refuses because it reaches outside the box (ptrace, mount, module loading, kexec, bpf,
//!   io_uring, namespaces, ...) fails with EPERM even if trapbox itself were tricked into
//!   making it, and numbers the table does not know fail with ENOSYS. The two it refuses to
//!   the guest but uses itself, process_vm_readv and process_vm_writev (how trapbox reads
//!   guest memory without faulting), stay allowed; without ptrace rights they reach only
//!   trapbox's own process.
//!
//! All of it is installed once per process, when the first sandbox is built; a forked child
//! inherits it.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::abi::{Handling, TABLE};

static DONE: AtomicBool = AtomicBool::new(false);

/// The lines of /proc/self/status that hardening changes, as they were before it.
static BEFORE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// The fields of /proc/self/status that hardening changes.
const CHANGED: [&str; 8] =
    ["NoNewPrivs:", "Seccomp:", "Seccomp_filters:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"];

/// The lines of /proc/self/status that hardening changed, as they read before it (the guest's
/// view of its own status shows these: what it is allowed is what the process was allowed).
pub fn status_before() -> &'static [String] {
    BEFORE.get().map_or(&[], Vec::as_slice)
}

// linux/capability.h; the libc crate does not define capability numbers.
const CAP_SYS_PTRACE: u32 = 19;

/// What could not be put in place (each part is tried; trapbox runs without what failed).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Hardened {
    /// Parts that failed, with the errno.
    pub failed: Vec<(&'static str, i32)>,
}

/// Hardens the calling process (see the module comment), once.
pub fn harden() -> Hardened {
    let mut h = Hardened::default();
    if DONE.swap(true, Ordering::SeqCst) {
        return h;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let _ =
        BEFORE.set(status.lines().filter(|l| CHANGED.iter().any(|c| l.starts_with(c))).map(str::to_string).collect());
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        h.failed.push(("PR_SET_DUMPABLE", errno()));
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        h.failed.push(("PR_SET_NO_NEW_PRIVS", errno()));
    }
    if let Err(e) = drop_capability(CAP_SYS_PTRACE) {
        h.failed.push(("dropping CAP_SYS_PTRACE", e));
    }
    if let Err(e) = install_filter(&filter()) {
        h.failed.push(("seccomp", e));
    }
    h
}

/// Drops capability `cap` from the calling thread's every set.
fn drop_capability(cap: u32) -> Result<(), i32> {
    const V3: u32 = 0x2008_0522;
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // struct __user_cap_header_struct, and two __user_cap_data_struct (64 capabilities).
    let mut header = [V3, 0u32];
    let mut data = [0u32; 6];
    // SAFETY: capget writes the two data structs for the header's version.
    if unsafe { libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
    for set in 0..3 {
        data[word * 3 + set] &= !bit;
    }
    // SAFETY: capset reads the header and data just filled.
    if unsafe { libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()) } != 0 {
        return Err(errno());
    }
    // The bounding set needs CAP_SETPCAP, which an unprivileged user lacks (and then has
    // nothing to drop); the ambient set is lowered either way.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_LOWER as libc::c_ulong, cap as libc::c_ulong, 0, 0);
    }
    Ok(())
}

/// One classic-BPF instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: 0, jf: 0, k }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

// BPF opcodes and seccomp values (linux/filter.h, linux/seccomp.h, linux/audit.h).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JGT_K: u16 = 0x25;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_BIT: u32 = 0x4000_0000;

/// Whether the filter lets trapbox's process make syscall `nr`: the calls the ABI table
/// forwards to the host or emulates (trapbox makes those itself, for the guest and for its own
/// work), and the two it refuses to the guest but uses itself (see the module comment).
pub fn allowed(nr: u32) -> bool {
    crate::abi::lookup(u64::from(nr)).is_some_and(|d| match d.handling {
        Handling::Host | Handling::Emulated => true,
        Handling::Refused(_) => matches!(d.name, "process_vm_readv" | "process_vm_writev"),
    })
}

/// The numbers below the table's last that are not allowed, as inclusive ranges.
fn denied_ranges() -> Vec<(u32, u32)> {
    let last = TABLE.iter().map(|d| d.nr as u32).max().unwrap_or(0);
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for nr in 0..=last {
        if allowed(nr) {
            continue;
        }
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == nr => *hi = nr,
            _ => ranges.push((nr, nr)),
        }
    }
    ranges
}

/// The filter: other architectures, x32 numbers and numbers past the table get ENOSYS; the
/// table's refused calls and the gaps in its numbering EPERM; everything else is allowed. An
/// allow list, written as the ranges it leaves out (fewer comparisons on every call).
pub fn filter() -> Vec<Insn> {
    let ranges = denied_ranges();
    let last = TABLE.iter().map(|d| d.nr as u32).max().unwrap_or(0);
    let mut p = Vec::with_capacity(2 * ranges.len() + 10);
    // [0] arch check.
    p.push(stmt(LD_W_ABS, 4));
    p.push(jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0));
    p.push(stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32));
    // [3] the number; x32 and unknown numbers.
    p.push(stmt(LD_W_ABS, 0));
    p.push(jump(JGE_K, X32_BIT, 0, 1));
    p.push(stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32));
    p.push(jump(JGE_K, last + 1, 0, 1));
    p.push(stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32));
    // [8] two comparisons per denied range: at or above its start and not above its end
    // jumps to the EPERM return after them all.
    let n = ranges.len();
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let after = 2 * (n - i - 1); // the comparisons of the ranges after this one
        p.push(jump(JGE_K, lo, 0, 1));
        let to_eperm = u8::try_from(after + 1).expect("the table's refusals fit one jump (tested)");
        p.push(jump(JGT_K, hi, 0, to_eperm)); // past them and the ALLOW
    }
    p.push(stmt(RET_K, RET_ALLOW));
    p.push(stmt(RET_K, RET_ERRNO | libc::EPERM as u32));
    p
}

/// Installs `prog` on every thread of the process.
fn install_filter(prog: &[Insn]) -> Result<(), i32> {
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const Insn,
    }
    let f = Fprog { len: prog.len() as u16, filter: prog.as_ptr() };
    // SAFETY: seccomp reads the program (len instructions at `filter`, alive for the call).
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &f as *const Fprog)
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter on a syscall number, as the kernel would.
    fn run(prog: &[Insn], arch: u32, nr: u32) -> u32 {
        let mut pc = 0;
        let mut acc = 0u32;
        loop {
            let i = prog[pc];
            match i.code {
                LD_W_ABS => acc = if i.k == 4 { arch } else { nr },
                JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
                JGT_K => pc += if acc > i.k { i.jt } else { i.jf } as usize,
                RET_K => return i.k,
                c => panic!("unknown opcode {c:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn filter_refuses_what_reaches_outside_and_allows_the_rest() {
        let p = filter();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let enosys = RET_ERRNO | libc::ENOSYS as u32;
        for nr in [libc::SYS_ptrace, libc::SYS_mount, libc::SYS_init_module, libc::SYS_bpf, libc::SYS_kexec_load] {
            assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr as u32), eperm, "{nr}");
        }
        // What trapbox needs: KVM's ioctls, memory, threads, its own memory reads.
        for nr in [libc::SYS_ioctl, libc::SYS_mmap, libc::SYS_clone3, libc::SYS_process_vm_readv, libc::SYS_read] {
            assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr as u32), RET_ALLOW, "{nr}");
        }
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 5000), enosys);
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, X32_BIT | 1), enosys);
        assert_eq!(run(&p, 0x4000_0003, 1), enosys, "i386");
        assert!(p.len() < 4096);
        // Every number of the table decides as `allowed` says, the gaps (335..424) refused.
        for nr in 0..=libc::SYS_mseal as u32 {
            let want = if allowed(nr) { RET_ALLOW } else { eperm };
            assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr), want, "{nr}");
        }
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 400), eperm);
        assert!(!allowed(libc::SYS_ptrace as u32) && allowed(libc::SYS_process_vm_readv as u32));
    }
}
