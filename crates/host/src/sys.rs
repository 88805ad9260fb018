//! Thin wrappers over the host's memory-mapping syscalls, returning `-errno` style results.
//!
//! These change trapbox's own address space, which the guest shares 1:1; callers in
//! `process` decide *where* they may act (only on guest ranges, or on free space), which is
//! why each is `unsafe`.

/// Result of a raw host call: the value, or the errno.
pub type HostResult = Result<u64, i32>;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// `mmap`.
///
/// # Safety
/// With MAP_FIXED, `[addr, addr+len)` must hold nothing trapbox relies on (guest memory or
/// free space). Without it the kernel picks free space and any `addr` is a hint.
pub unsafe fn mmap(addr: u64, len: u64, prot: i32, flags: i32, fd: i32, off: u64) -> HostResult {
    // SAFETY: forwarded to the caller's contract above.
    let p = unsafe { libc::mmap(addr as *mut libc::c_void, len as usize, prot, flags, fd, off as libc::off_t) };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p as u64)
    }
}

/// `munmap`.
///
/// # Safety
/// The range must be guest memory (or trapbox memory no longer referenced).
pub unsafe fn munmap(addr: u64, len: u64) -> HostResult {
    // SAFETY: forwarded to the caller's contract above.
    match unsafe { libc::munmap(addr as *mut libc::c_void, len as usize) } {
        0 => Ok(0),
        _ => Err(errno()),
    }
}

/// `mprotect`.
///
/// # Safety
/// The range must be guest memory.
pub unsafe fn mprotect(addr: u64, len: u64, prot: i32) -> HostResult {
    // SAFETY: forwarded to the caller's contract above.
    match unsafe { libc::mprotect(addr as *mut libc::c_void, len as usize, prot) } {
        0 => Ok(0),
        _ => Err(errno()),
    }
}

/// `mremap`.
///
/// # Safety
/// The old range must be guest memory; with MREMAP_FIXED the new range must be guest memory
/// or free space.
pub unsafe fn mremap(old: u64, old_len: u64, new_len: u64, flags: i32, new: u64) -> HostResult {
    // SAFETY: forwarded to the caller's contract above.
    let p = unsafe {
        libc::mremap(old as *mut libc::c_void, old_len as usize, new_len as usize, flags, new as *mut libc::c_void)
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p as u64)
    }
}

/// Reserves `[addr, addr+len)` as inaccessible memory only if all of it is free, leaving a
/// placeholder there. Fails with EEXIST when anything is mapped in the range.
pub fn reserve_exact(addr: u64, len: u64) -> HostResult {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let got = unsafe { mmap(addr, len, libc::PROT_NONE, flags, -1, 0) }?;
    if got != addr {
        // Kernels before 4.17 treat the flag as a hint; undo a mapping placed elsewhere.
        // SAFETY: `got` is the fresh mapping just made.
        let _ = unsafe { munmap(got, len) };
        return Err(libc::EEXIST);
    }
    Ok(got)
}

/// A memory file (memfd) named `name` holding `data`, close-on-exec and mappable for
/// execution.
pub fn memory_file(name: &str, data: &[u8]) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    const MFD_EXEC: u32 = 0x10;
    let name = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    // Executable mappings need MFD_EXEC where memory files default to no-exec; kernels that
    // predate the flag refuse it and allow exec anyway.
    // SAFETY: memfd_create only creates a descriptor.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | MFD_EXEC) };
    if fd < 0 {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor owned by nothing else.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data)?;
    Ok(f)
}

/// The host CPU's time-stamp counter (what `rdtsc` would give the guest).
pub fn tsc() -> u64 {
    // SAFETY: rdtsc has no memory effects; every x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A hardware random number (`rdrand`, or `rdseed` when `seed`) of `size` bytes (2, 4 or 8),
/// with the carry flag it sets: None where the CPU has neither instruction.
pub fn hardware_random(seed: bool, size: u8) -> Option<(u64, bool)> {
    use core::arch::x86_64::{
        _rdrand16_step, _rdrand32_step, _rdrand64_step, _rdseed16_step, _rdseed32_step, _rdseed64_step,
    };
    let has = if seed {
        std::arch::is_x86_feature_detected!("rdseed")
    } else {
        std::arch::is_x86_feature_detected!("rdrand")
    };
    if !has {
        return None;
    }
    // SAFETY: the CPU has the instruction (checked above); each writes only the local.
    unsafe {
        #[target_feature(enable = "rdrand,rdseed")]
        unsafe fn step(seed: bool, size: u8) -> (u64, bool) {
            let (mut a, mut b, mut c) = (0u16, 0u32, 0u64);
            let ok = match (seed, size) {
                (false, 2) => _rdrand16_step(&mut a),
                (false, 4) => _rdrand32_step(&mut b),
                (false, _) => _rdrand64_step(&mut c),
                (true, 2) => _rdseed16_step(&mut a),
                (true, 4) => _rdseed32_step(&mut b),
                (true, _) => _rdseed64_step(&mut c),
            };
            (a as u64 | b as u64 | c, ok == 1)
        }
        Some(step(seed, size))
    }
}

/// The host's TSC and TSC_AUX (what `rdtscp` would give the guest).
pub fn tscp() -> (u64, u32) {
    let mut aux = 0u32;
    // SAFETY: rdtscp writes only `aux`; the CPUs KVM runs on have it.
    let t = unsafe { core::arch::x86_64::__rdtscp(&mut aux) };
    (t, aux)
}

/// Re-executes trapbox with address-space randomisation off, once: recording and replaying
/// then lay trapbox's own memory out the same way, so the guest addresses a recording chose
/// are free when it is replayed. Returns only if trapbox already runs without randomisation
/// (or the re-exec failed).
pub fn reexec_without_aslr() -> std::io::Result<()> {
    const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;
    // SAFETY: personality(0xffffffff) only queries.
    let cur = unsafe { libc::personality(0xffff_ffff) };
    if cur < 0 || cur as libc::c_ulong & ADDR_NO_RANDOMIZE != 0 {
        return Ok(());
    }
    // SAFETY: sets a flag that takes effect at the next execve.
    unsafe { libc::personality(cur as libc::c_ulong | ADDR_NO_RANDOMIZE) };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("/proc/self/exe").args(std::env::args_os().skip(1)).exec();
    Err(err)
}

/// Makes all of trapbox's own allocations come from its brk heap, whatever their size and
/// whichever thread makes them, instead of fresh mmaps: during record and replay the guest's
/// mappings then meet the same free address space on both sides, whatever trapbox allocates
/// for itself along the way, and whenever its helper threads do (a 48 MiB file decoded by
/// the replay's read-ahead thread used to be mapped wherever there was room at that moment,
/// which could be where the guest's next mapping had been recorded).
pub fn keep_allocations_off_mmap() {
    // SAFETY: mallopt only tunes glibc's allocator.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) };
    // No allocation is served by mmap, not even one above the threshold's 32 MiB ceiling.
    // SAFETY: as above.
    unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) };
    // One arena: other threads' arenas are heaps of their own, mmap'd when a thread first
    // allocates and again whenever one fills up.
    // SAFETY: as above.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    // Freed heap memory stays for the next trace chunk instead of going back to the kernel
    // and being faulted in again.
    // SAFETY: as above.
    unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20) };
}

/// The CPU mask trapbox started with, kept when [`split_cpus`] narrowed the guest thread's.
static ORIGINAL_CPUS: std::sync::Mutex<Option<libc::cpu_set_t>> = std::sync::Mutex::new(None);

fn thread_cpus() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a cpu_set_t of the size given.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(set)
}

/// The CPUs in `set`, in order.
fn cpus_of(set: &libc::cpu_set_t) -> Vec<usize> {
    // SAFETY: CPU_ISSET only reads the set, at indexes below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, set) }).collect()
}

/// Restricts the calling thread to the CPUs of `set`.
pub fn set_thread_cpus(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

/// Gives a helper thread of the recorder or replayer a CPU of its own: the last of the CPUs
/// trapbox may use is the helper's (returned, for it to take), the others stay the calling
/// (guest's) thread's. None, and nothing changed, with fewer than two CPUs.
///
/// Why: the guest's thread wakes the helper at every chunk, and the scheduler often runs the
/// woken thread on the waker's CPU, where every millisecond it compresses or decodes is a
/// millisecond the guest waits. Measured on a 2-CPU PVM machine, python3 recording, record/run
/// in paired runs: 1.19–1.25x left to the scheduler, 1.44x with both on one CPU, 1.09–1.11x
/// with the guest on CPU 0 and the helper on CPU 1, 1.28x the other way round (this machine
/// runs KVM exits about 9% slower on its CPU 1, `trapbox run` included).
pub fn split_cpus() -> Option<libc::cpu_set_t> {
    let all = thread_cpus()?;
    let cpus = cpus_of(&all);
    let (&last, _) = cpus.split_last().filter(|(_, rest)| !rest.is_empty())?;
    let mut mine = all;
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut helper: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_CLR and CPU_SET only write the sets, at an index below CPU_SETSIZE.
    unsafe {
        libc::CPU_CLR(last, &mut mine);
        libc::CPU_SET(last, &mut helper);
    }
    ORIGINAL_CPUS.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(all);
    set_thread_cpus(&mine);
    Some(helper)
}

/// Restricts the calling thread, and the threads it starts afterwards, to one of its CPUs:
/// the `k`-th, counting round. Which: the CPU, or None (and nothing changed) when its CPUs
/// cannot be read.
///
/// For threads that take turns and never run at once (the fuzzer's engine and its guest): on
/// one CPU, a hand-over is a switch there rather than a wake-up sent to another CPU, and a
/// change to the page tables (a snapshot restore write-protecting pages) flushes one TLB
/// instead of interrupting the other CPU — both exits on a VM.
pub fn pin_to_cpu(k: usize) -> Option<usize> {
    let cpus = cpus_of(&thread_cpus()?);
    let cpu = *cpus.get(k % cpus.len().max(1))?;
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET only writes the set, at an index below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    set_thread_cpus(&one);
    Some(cpu)
}

/// In a forked child: the CPUs trapbox started with again, as the child's guest runs beside
/// its parent's.
pub fn restore_cpus() {
    if let Some(all) = *ORIGINAL_CPUS.lock().unwrap_or_else(|e| e.into_inner()) {
        set_thread_cpus(&all);
    }
}

/// Makes `[addr, addr+len)` a placeholder again: inaccessible, reserved, holding no memory.
/// The replacement is one mmap(MAP_FIXED), so the range is never free in between.
///
/// # Safety
///
/// The range must lie in the guest arena and hold nothing anyone uses (guest memory the guest gave
/// up, or a placeholder).
pub unsafe fn park(addr: u64, len: u64) {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED;
    // SAFETY: as the caller says.
    let _ = unsafe { mmap(addr, len, libc::PROT_NONE, flags, -1, 0) };
}

/// trapbox's own `/proc/self/mem`, opened once per process (one opened before a fork names
/// the parent's memory).
fn own_memory<T>(f: impl FnOnce(&std::fs::File) -> std::io::Result<T>) -> std::io::Result<T> {
    static PROC_MEM: std::sync::Mutex<Option<(libc::pid_t, std::fs::File)>> = std::sync::Mutex::new(None);
    let mut slot = PROC_MEM.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if slot.as_ref().is_none_or(|(p, _)| *p != pid) {
        let file = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/mem")?;
        *slot = Some((pid, super::fds::privatize(file)?));
    }
    let (_, file) = slot.as_ref().ok_or_else(|| std::io::Error::other("no /proc/self/mem"))?;
    f(file)
}

/// Writes `data` at `addr` in trapbox's own address space through `/proc/self/mem`, which may
/// write read-only pages (a private mapping takes its own copy of the page, as under a
/// debugger's breakpoint) without touching the mapping's rights. The kernel does the access:
/// a page that is not mapped is an error, not a signal. Refused where the kernel forbids it
/// (`proc_mem.force_override=never`).
///
/// # Safety
///
/// `[addr, addr + len)` must hold nothing trapbox's code relies on that the write would break
/// (the caller decides where code may be patched).
pub unsafe fn write_own_memory(addr: u64, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    own_memory(|f| f.write_all_at(data, addr))
}

/// Reads what lies at `addr` in trapbox's own address space into `buf`, the kernel doing the
/// access (an unmapped or unreadable page is an error, not a signal); how many bytes it read.
pub fn read_own_memory(addr: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    own_memory(|f| f.read_at(buf, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_to_cpu_keeps_one_of_the_threads_cpus_counting_round() {
        std::thread::spawn(|| {
            let all = cpus_of(&thread_cpus().unwrap());
            let k = all.len() + 1;
            assert_eq!(pin_to_cpu(k), Some(all[k % all.len()]));
            assert_eq!(cpus_of(&thread_cpus().unwrap()), [all[k % all.len()]]);
            // A thread started now inherits it.
            let child = std::thread::spawn(|| cpus_of(&thread_cpus().unwrap())).join().unwrap();
            assert_eq!(child, [all[k % all.len()]]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn split_cpus_gives_the_helper_the_last_cpu_and_the_caller_the_others() {
        // On a thread of its own: the split narrows the calling thread's CPUs.
        std::thread::spawn(|| {
            let all = cpus_of(&thread_cpus().unwrap());
            match split_cpus() {
                None => assert!(all.len() < 2, "{all:?}"),
                Some(helper) => {
                    let mine = cpus_of(&thread_cpus().unwrap());
                    assert_eq!(cpus_of(&helper), [*all.last().unwrap()]);
                    assert_eq!(mine, all[..all.len() - 1], "{mine:?} {all:?}");
                }
            }
        })
        .join()
        .unwrap();
    }
}
