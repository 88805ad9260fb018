//! `--gdb [HOST:]PORT` on run, trace and replay: the tool's handler runs inside the debugger.

use std::net::TcpListener;

use anyhow::{Context, Result};
use trapbox::TrapHandler;

/// gdb's port, bound before the program is loaded (gdb may connect as soon as it is said).
pub struct Listener {
    listener: TcpListener,
    addr: String,
}

/// Binds `at` (`PORT` is on 127.0.0.1; `0` picks a free port).
pub fn listen(at: &str) -> Result<Listener> {
    let addr = if at.contains(':') { at.to_string() } else { format!("127.0.0.1:{at}") };
    let listener = TcpListener::bind(&addr).with_context(|| format!("cannot listen on {addr} for gdb"))?;
    Ok(Listener { listener, addr })
}

impl Listener {
    /// Waits for gdb, then runs `sandbox` with `inner` inside the debugger.
    pub fn run<H: TrapHandler>(
        self,
        program: &std::path::Path,
        sandbox: &mut trapbox::Sandbox,
        inner: H,
    ) -> Result<trapbox::Report> {
        let port = self.listener.local_addr()?.port();
        eprintln!("trapbox: waiting for gdb on {}: gdb {} -ex 'target remote :{port}'", self.addr, program.display());
        let (conn, _) = self.listener.accept().context("gdb's connection")?;
        let (debugger, stub) = trapbox::gdb::attach(conn, inner);
        let report = sandbox.run(debugger)?;
        match stub.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("trapbox: gdb connection: {e}"),
            Err(_) => eprintln!("trapbox: gdb connection: its thread panicked"),
        }
        Ok(report)
    }
}
