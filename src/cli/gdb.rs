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
    Ok(Listener { listener: private(listener)?, addr })
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
        let (debugger, stub) = trapbox::gdb::attach(conn, inner, false);
        let report = sandbox.run(debugger)?;
        match stub.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("trapbox: gdb connection: {e}"),
            Err(_) => eprintln!("trapbox: gdb connection: its thread panicked"),
        }
        Ok(report)
    }

    /// Waits for gdb, then runs a replay inside the debugger; when gdb goes back, the replay
    /// is run again from its start (`next` makes a fresh sandbox and replayer each time).
    pub fn run_replay<R: TrapHandler>(
        self,
        program: &std::path::Path,
        mut next: impl FnMut() -> Result<(trapbox::Sandbox, R)>,
    ) -> Result<(trapbox::Report, R)> {
        let conn = self.accept(program)?;
        let (mut dbg, stub) = trapbox::gdb::attach(conn, (), true);
        let mut plan = None;
        loop {
            let (mut sandbox, mut replayer) = next()?;
            let mut d = dbg.rebind(&mut replayer, plan.take());
            let report = sandbox.run(&mut d)?;
            let restart = d.take_restart();
            dbg = d.rebind((), None);
            match restart {
                Some(p) => plan = Some(p),
                None => {
                    drop(dbg);
                    finish(stub);
                    return Ok((report, replayer));
                }
            }
        }
    }

    fn accept(self, program: &std::path::Path) -> Result<std::net::TcpStream> {
        let port = self.listener.local_addr()?.port();
        eprintln!("trapbox: waiting for gdb on {}: gdb {} -ex 'target remote :{port}'", self.addr, program.display());
        let conn = self.listener.accept().context("gdb's connection")?.0;
        private(conn)
    }
}

/// A socket of trapbox's own, moved to its private descriptor range: out of the guest's
/// reach, and not taking a number the guest's program expects to get.
fn private<S: From<std::os::fd::OwnedFd> + Into<std::os::fd::OwnedFd>>(s: S) -> Result<S> {
    let file = std::fs::File::from(s.into());
    let file = trapbox::process::fds::privatize(file).context("gdb's socket")?;
    Ok(S::from(std::os::fd::OwnedFd::from(file)))
}

fn finish(stub: std::thread::JoinHandle<Result<trapbox::gdb::DisconnectReason, String>>) {
    match stub.join() {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("trapbox: gdb connection: {e}"),
        Err(_) => eprintln!("trapbox: gdb connection: its thread panicked"),
    }
}
