//! `trapbox repl`: an x86-64 assembly REPL. Each line is assembled (GNU `as`, Intel or AT&T
//! syntax), placed in the code area of a small guest program of the REPL's own
//! ([`guest`]), and run at CPL3 by trapbox's engine; the registers it changed are shown when
//! the guest comes back. The session is a [`TrapHandler`](trapbox_trap::TrapHandler) on the
//! trap API and the `Process` capability (placing code, the vector state, the kicker that
//! stops a line that runs too long), so it runs on either engine; syscalls the lines make go
//! through the trap path and the tracer prints them in strace's form.

pub mod asm;
pub mod guest;
pub mod input;
mod session;
pub mod show;

pub use asm::Syntax;
pub use session::{Options, Session};

/// Writes the REPL's guest program into `dir` and returns its path.
pub fn program(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("trapbox-repl-guest");
    std::fs::write(&path, guest::image())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}
