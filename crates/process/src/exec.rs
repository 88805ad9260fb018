//! `execve` / `execveat` inside the box: the new program replaces the old one in the same VM,
//! so it is trapped like the first — exec is no way out of the box.
//!
//! As in the kernel, everything that can fail for a reason the caller should hear about (no
//! such file, not executable, not a format trapbox runs, bad pointers) is checked before the
//! point of no return; after it, the old image is gone, and a load that still fails kills the
//! process.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::{loader, neg, Process};
use trapbox_abi::Sysno;
use trapbox_trap::{Action, GuestAddr, Regs};
use trapbox_vm::Machine;

/// Longest argv or envp accepted (the kernel's limit is about a quarter of the stack rlimit).
const MAX_STRINGS: usize = 1 << 17;
/// Most bytes of all argument and environment strings together.
const MAX_STRING_BYTES: usize = 2 << 20;

/// An execve that passed every check: what to load.
#[derive(Debug)]
pub struct ExecPlan {
    path: PathBuf,
    argv: Vec<OsString>,
    envp: Vec<OsString>,
    placement: loader::Placement,
    /// The program's file, when only a descriptor the exec closes names it.
    _held: Option<std::fs::File>,
}

impl ExecPlan {
    /// An exec of the image `start` describes, placed where it says: a replay reproducing a
    /// recorded exec (the stack image holds argv and environment as the program got them).
    pub fn of_image(start: &trapbox_trap::Start) -> ExecPlan {
        ExecPlan {
            path: start.program.clone(),
            argv: start.argv.clone(),
            envp: start.envp.clone(),
            placement: start.placement.clone(),
            _held: None,
        }
    }
}

impl Process {
    /// execve(path, argv, envp) and execveat(dirfd, path, argv, envp, flags).
    pub(super) fn sys_execve(&mut self, m: &mut Machine, regs: &mut Regs, sysno: Sysno, a: &[u64; 6]) -> Action {
        match self.exec_prepare(sysno, a) {
            Ok(plan) => self.exec_commit(m, regs, plan),
            Err(e) => Action::Return(neg(e)),
        }
    }

    /// Everything execve checks before the point of no return (the errno it fails with).
    pub fn exec_prepare(&self, sysno: Sysno, a: &[u64; 6]) -> Result<ExecPlan, i32> {
        let (dirfd, path, argv, envp, flags) = match sysno {
            Sysno::execveat => (a[0] as i32, a[1], a[2], a[3], a[4] as i32),
            _ => (libc::AT_FDCWD, a[0], a[1], a[2], 0),
        };
        let (path, held) = pin(self.exec_target(dirfd, path, flags)?)?;
        let argv = self.read_strings(argv)?;
        let envp = self.read_strings(envp)?;
        Ok(ExecPlan { path, argv, envp, placement: loader::Placement::default(), _held: held })
    }

    /// The point of no return: the old image goes, the new program is loaded; `regs` become
    /// its entry state. The caller made sure no other thread runs.
    pub fn exec_commit(&mut self, m: &mut Machine, regs: &mut Regs, plan: ExecPlan) -> Action {
        let ExecPlan { path, argv, envp, placement, _held } = plan;
        self.release(m);
        self.signals.reset_for_exec();
        super::signals::mirror_all(&self.signals);
        self.close_on_exec();
        let loaded = match self.load_image(m, &path, &argv, &envp, &placement) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::io::Write::write_all(&mut self.diag, format!("trapbox: execve: {e}\n").as_bytes());
                return Action::Kill { signal: libc::SIGSEGV, fault: None };
            }
        };
        self.clear_child_tid = 0;
        self.robust_list = (0, 0);
        // Closing the vfork pipe lets a vfork parent go on.
        self.vfork_done = None;
        if m.set_fs_base(0).and_then(|_| m.set_gs_base(0)).and_then(|_| m.reset_fpu()).is_err() {
            return Action::Kill { signal: libc::SIGSEGV, fault: None };
        }
        set_comm(&path);
        *regs = Regs { rip: loaded.entry, rsp: loaded.sp, rflags: 0x202, ..Regs::default() };
        Action::Resume
    }

    /// The file execve would run, or the errno it would fail with.
    fn exec_target(&self, dirfd: i32, path: u64, flags: i32) -> Result<PathBuf, i32> {
        let p = self.aspace.read_cstr(GuestAddr(path), 4096).map_err(|_| libc::EFAULT)?;
        if flags & !(libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW) != 0 {
            return Err(libc::EINVAL);
        }
        let full: PathBuf = if self.names_own_exe(&p) {
            self.exe.clone()
        } else if p.is_empty() {
            if flags & libc::AT_EMPTY_PATH == 0 {
                return Err(libc::ENOENT);
            }
            if self.fds.is_reserved(dirfd as i64) {
                return Err(libc::EBADF);
            }
            format!("/proc/self/fd/{dirfd}").into()
        } else if p[0] == b'/' || dirfd == libc::AT_FDCWD {
            // A relative name is relative to the working directory, never looked up on $PATH.
            let os = OsString::from_vec(p);
            if os.as_bytes().contains(&b'/') {
                os.into()
            } else {
                PathBuf::from(".").join(os)
            }
        } else {
            if self.fds.is_reserved(dirfd as i64) {
                return Err(libc::EBADF);
            }
            PathBuf::from(format!("/proc/self/fd/{dirfd}")).join(OsString::from_vec(p))
        };
        let c = std::ffi::CString::new(full.as_os_str().as_bytes()).map_err(|_| libc::ENOENT)?;
        // SAFETY: c is a NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EACCES));
        }
        let meta = std::fs::metadata(&full).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
        if !meta.is_file() {
            return Err(libc::EACCES);
        }
        runnable(&full)?;
        Ok(full)
    }

    /// A NULL-terminated array of string pointers, as execve takes argv and envp.
    fn read_strings(&self, array: u64) -> Result<Vec<OsString>, i32> {
        let mut out = Vec::new();
        let mut bytes = 0;
        if array == 0 {
            return Ok(out);
        }
        for i in 0.. {
            if i >= MAX_STRINGS {
                return Err(libc::E2BIG);
            }
            let ptr = self.aspace.read_u64(array + 8 * i as u64).map_err(|_| libc::EFAULT)?;
            if ptr == 0 {
                break;
            }
            let s = self.aspace.read_cstr(GuestAddr(ptr), MAX_STRING_BYTES).map_err(|_| libc::EFAULT)?;
            bytes += s.len() + 1;
            if bytes > MAX_STRING_BYTES {
                return Err(libc::E2BIG);
            }
            out.push(OsString::from_vec(s));
        }
        Ok(out)
    }

    /// Closes the guest's close-on-exec descriptors (trapbox's own are left alone).
    fn close_on_exec(&mut self) {
        // A helper thread's descriptor not yet in the private range is not the guest's.
        let _stock = super::fds::stocktaking();
        for fd in super::fds::open_fds() {
            if self.fds.is_reserved(fd as i64) {
                continue;
            }
            // SAFETY: F_GETFD only reads descriptor flags.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if fl >= 0 && fl & libc::FD_CLOEXEC != 0 {
                // SAFETY: a guest descriptor marked close-on-exec, which execve closes.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// ENOEXEC unless `path` is an ELF trapbox runs or a `#!` script whose interpreter is one.
fn runnable(path: &std::path::Path) -> Result<(), i32> {
    let head = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EACCES))?;
        let mut b = vec![0u8; 256];
        let n = f.read(&mut b).map_err(|_| libc::EIO)?;
        b.truncate(n);
        b
    };
    if let Some((interp, _)) = loader::parse_shebang(&head) {
        let ip = PathBuf::from(OsString::from_vec(interp));
        return loader::probe(&ip).map(|_| ()).map_err(|_| libc::ENOENT);
    }
    loader::probe(path).map(|_| ()).map_err(|_| libc::ENOEXEC)
}

/// A program named through a descriptor (fexecve's `/proc/self/fd/N`) must outlive the
/// closing of close-on-exec descriptors: it is named by its own path when that leads to the
/// same file, else held open by trapbox (a memory file, a deleted one) and named through
/// trapbox's own descriptor.
fn pin(path: PathBuf) -> Result<(PathBuf, Option<std::fs::File>), i32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    if !(path.starts_with("/proc/self/fd") || path.starts_with("/dev/fd")) {
        return Ok((path, None));
    }
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EACCES);
    let file = std::fs::File::open(&path).map_err(errno)?;
    let meta = file.metadata().map_err(errno)?;
    if let Ok(real) = std::fs::canonicalize(&path) {
        if std::fs::metadata(&real).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino())) {
            return Ok((real, None));
        }
    }
    let held = super::fds::privatize(file).map_err(errno)?;
    Ok((PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd())), Some(held)))
}

/// Names this host process after the new program, as the kernel renames an exec'ing task
/// (what `ps` and /proc/PID/comm show).
fn set_comm(path: &std::path::Path) {
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
    let mut comm = [0u8; 16];
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from `comm`.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
}
