//! Terminals, calls that block, and the other calls real programs make: pseudo-terminals
//! (script, openpty, pty.fork, forkpty), every blocking call letting the other threads run,
//! F_NOTIFY, a lowered RLIMIT_NOFILE before posix_spawn, and no refusal without a word.

mod common;

use common::{assert_same_as_native, boxed, guest, native, tempdir, trapbox, Form};

const FORMS: [Form; 3] = [Form::Static, Form::StaticPie, Form::Dynamic];

/// For each blocking call, one thread blocks in it while another unblocks it 100 ms later
/// (the guest judges each: returned as it should within a second, or STUCK). Natively and in
/// the box alike, in the three link forms.
#[test]
fn every_blocking_call_lets_the_other_threads_run() {
    common::require_kvm();
    let d = tempdir("block-unblock");
    for form in FORMS {
        let argv = [guest("block_unblock", form)];
        let r = assert_same_as_native(&argv, b"", &d);
        let out = r.stdout_str();
        assert_eq!(r.status, 0, "{form:?}:\n{out}{}", r.stderr_str());
        assert!(out.lines().count() >= 32 && out.lines().all(|l| l.ends_with(": unblocked")), "{form:?}:\n{out}");
        for call in ["select-forever", "pselect6", "futex_waitv", "msgrcv", "connect", "open-fifo", "wait4"] {
            assert!(out.contains(&format!("{call}: unblocked\n")), "{form:?}: {call} missing:\n{out}");
        }
    }
}

/// The one blocking call the box still refuses (io_submit's iocbs hold pointers it does not
/// check yet) is refused with a warning, not silently.
#[test]
fn the_refused_aio_submission_is_said() {
    common::require_kvm();
    let d = tempdir("block-aio");
    let r =
        boxed(&[guest("block_unblock", Form::Static).to_string_lossy().into_owned(), "io_getevents".into()], b"", &d);
    assert!(r.stdout_str().starts_with("io_getevents: STUCK (failed after "), "{}", r.stdout_str());
    assert!(
        r.stderr_str().contains("trapbox: warning: io_submit: argument `iocbpp` cannot be checked yet"),
        "{}",
        r.stderr_str()
    );
}

/// A TLS handshake between two threads of one Python program: the client's socket is
/// non-blocking and it waits in select() (the call that used to hold every thread).
#[test]
fn a_tls_handshake_between_two_threads_completes() {
    common::require_kvm();
    let d = tempdir("tls-threads");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(&d)
        .output()
        .expect("openssl (installed by .ci/run)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let script = r#"
import socket, ssl, threading, select
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
def serve():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("cert.pem", "key.pem")
    conn, _ = srv.accept()
    with ctx.wrap_socket(conn, server_side=True) as s:
        s.sendall(s.recv(100).upper())
t = threading.Thread(target=serve); t.start()
ctx = ssl.create_default_context(cafile="cert.pem")
raw = socket.create_connection(("127.0.0.1", port)); raw.setblocking(False)
c = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
while True:
    try:
        c.do_handshake(); break
    except ssl.SSLWantReadError:
        select.select([c], [], [], 10)
    except ssl.SSLWantWriteError:
        select.select([], [c], [], 10)
c.setblocking(True); c.sendall(b"hello over tls"); print(c.recv(100).decode(), c.version() is not None)
t.join()
"#;
    let r = assert_same_as_native(&["/usr/bin/python3", "-c", script], b"", &d);
    assert_eq!(r.stdout_str(), "HELLO OVER TLS True\n");
}

/// `script` makes a pseudo-terminal, runs the command on it and copies its output.
#[test]
fn script_runs_a_command_on_a_pseudo_terminal() {
    common::require_kvm();
    let d = tempdir("script");
    let argv = ["/usr/bin/script", "-qc", "echo hi from the pty; tty", "/dev/null"];
    let (n, b) = (native(&argv, b"", &d), boxed(&argv, b"", &d));
    let norm = |s: String| s.replace('\r', "").split("/dev/pts/").next().unwrap_or("").to_string();
    assert_eq!(b.status, 0, "{}", b.stderr_str());
    assert_eq!(norm(b.stdout_str()), norm(n.stdout_str()));
    assert!(b.stdout_str().contains("hi from the pty\r\n/dev/pts/"), "{}", b.stdout_str());
    assert!(!b.stderr_str().contains("refused"), "{}", b.stderr_str());
}

/// Python's os.openpty() and pty.fork(): bytes through the pair both ways, and a child on the
/// pty whose output the parent reads until the end.
#[test]
fn python_openpty_and_pty_fork_work() {
    common::require_kvm();
    let d = tempdir("py-pty");
    let script = r#"
import os, pty, termios, tty
m, s = os.openpty()
print(os.ttyname(s).startswith("/dev/pts/"), termios.tcgetattr(s)[3] & termios.ECHO != 0)
tty.setraw(s)
os.write(m, b"typed\n"); print(os.read(s, 100))
os.write(s, b"written"); print(os.read(m, 100))
pid, fd = pty.fork()
if pid == 0:
    print("child on a tty:", os.isatty(0), os.isatty(1)); os._exit(3)
out = b""
while True:
    try:
        chunk = os.read(fd, 100)
    except OSError:
        break
    if not chunk: break
    out += chunk
print(out.replace(b"\r", b""), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;
    let r = assert_same_as_native(&["/usr/bin/python3", "-c", script], b"", &d);
    assert!(r.stdout_str().ends_with("b'child on a tty: True True\\n' 3\n"), "{}", r.stdout_str());
}

/// A C program using forkpty runs `sh -c 'stty size; tty'` on a 30x120 pty, in the three
/// link forms.
#[test]
fn forkpty_runs_a_shell_on_a_sized_pty() {
    common::require_kvm();
    let d = tempdir("forkpty");
    for form in FORMS {
        let r = assert_same_as_native(&[guest("forkpty", form)], b"", &d);
        assert_eq!(r.stdout_str(), "30 120\n/dev/pts/N\nchild: exit 0\n", "{form:?}");
    }
}

/// TIOCSTI would type into a terminal outside the box: refused (EPERM), said once with the
/// reason, counted by -v, and silenced by --quiet. An unknown request is refused with
/// ENOTTY and said too.
#[test]
fn typing_into_a_terminal_is_refused_with_a_word() {
    common::require_kvm();
    let d = tempdir("tiocsti");
    let script = r#"
import fcntl, os, termios
m, s = os.openpty()
for req in (termios.TIOCSTI, termios.TIOCSTI, 0x5499):
    try:
        fcntl.ioctl(s, req, b"x"); print("passed")
    except OSError as e:
        print(e.errno)
"#;
    let run = |flags: &[&str]| {
        let mut a: Vec<&str> = vec!["run"];
        a.extend_from_slice(flags);
        a.extend_from_slice(&["--", "/usr/bin/python3", "-c", script]);
        trapbox(&a, b"", &d)
    };
    let r = run(&[]);
    assert_eq!(r.stdout_str(), "1\n1\n25\n", "{}", r.stderr_str());
    let err = r.stderr_str();
    let tiocsti = "trapbox: refused ioctl TIOCSTI on fd 4 (it would type into a terminal outside the box)\n";
    assert_eq!(err.matches(tiocsti).count(), 1, "{err}");
    assert!(
        err.contains("trapbox: refused ioctl 0x5499 on fd 4 (trapbox does not know what its argument holds)"),
        "{err}"
    );
    let v = run(&["-v"]);
    assert!(v.stderr_str().contains("trapbox: refused: ioctl TIOCSTI ×2, ioctl 0x5499 ×1\n"), "{}", v.stderr_str());
    let q = run(&["--quiet"]);
    assert_eq!(q.stdout_str(), "1\n1\n25\n");
    assert!(!q.stderr_str().contains("refused"), "{}", q.stderr_str());
    // Nothing refused, -v says so.
    let none = trapbox(&["run", "-v", "--", "/bin/true"], b"", &d);
    assert!(none.stderr_str().contains("trapbox: refused: nothing\n"), "{}", none.stderr_str());
}

/// fcntl(F_NOTIFY) on a directory, with F_SETSIG's signal, delivers it for each file
/// created there, carrying the directory's descriptor.
#[test]
fn directory_notification_delivers_its_signal() {
    common::require_kvm();
    for form in FORMS {
        let (dn, db) = (tempdir("dnotify-native"), tempdir("dnotify-box"));
        let g = guest("dnotify", form);
        let n = native(&[g.as_os_str(), dn.as_os_str()], b"", &dn);
        let b = boxed(&[g.as_os_str(), db.as_os_str()], b"", &db);
        assert_eq!(b.stdout_str(), n.stdout_str(), "{form:?}: {}", b.stderr_str());
        assert_eq!(b.stdout_str(), "notifications: 2, from the directory's descriptor: yes\n");
        assert_eq!(b.status, 0);
    }
}

/// A program that lowers RLIMIT_NOFILE and then posix_spawns a child keeps the child's
/// output.
#[test]
fn a_lowered_descriptor_limit_keeps_a_spawned_childs_output() {
    common::require_kvm();
    let d = tempdir("spawn-nofile");
    for form in FORMS {
        let r = assert_same_as_native(&[guest("spawn_nofile", form)], b"", &d);
        assert_eq!(r.stdout_str(), "child says hi\nchild status 0\n", "{form:?}");
    }
}

/// The pseudo-terminal ioctls are traced as strace shows them.
#[test]
fn pty_ioctls_are_traced_as_strace_does() {
    common::require_kvm();
    let d = tempdir("trace-pty");
    let g = guest("pty_ioctls", Form::Static);
    let s = native(&["strace".as_ref(), "-e".as_ref(), "trace=ioctl".as_ref(), g.as_os_str()], b"", &d);
    let t = trapbox(&["trace".as_ref(), "-e".as_ref(), "trace=ioctl".as_ref(), g.as_os_str()], b"", &d);
    assert_eq!(t.status, 0, "{}", t.stderr_str());
    let lines = |r: &common::Run| -> Vec<String> {
        r.stderr_str()
            .lines()
            .filter(|l| l.starts_with("ioctl("))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let (want, got) = (lines(&s), lines(&t));
    assert!(want.len() >= 8, "{}", s.stderr_str());
    assert_eq!(got, want);
}

/// An interactive shell in the box on a terminal (`script` gives trapbox one): the window size
/// reaches it, and job control works (a background job listed, killed, waited for).
#[test]
fn an_interactive_shell_keeps_its_terminal_and_job_control() {
    common::require_kvm();
    let d = tempdir("bash-i");
    let input = b"stty size\nsleep 30 &\njobs\nkill %1\nwait\necho done-$?\nexit\n";
    let shell = |prefix: &str| {
        let cmd = format!("stty rows 33 cols 99; {prefix}/bin/bash --norc -i");
        native(&["/usr/bin/script", "-qc", &cmd, "/dev/null"], input, &d)
    };
    let tb = format!("{} run -- ", env!("CARGO_BIN_EXE_trapbox"));
    let (n, b) = (shell(""), shell(&tb));
    for r in [&n, &b] {
        let out = r.stdout_str().replace('\r', "");
        assert_eq!(r.status, 0, "{out}");
        // (Lines may start with the terminal's escapes: bash's bracketed-paste mode.)
        for want in ["33 99", "[1]+  Running                 sleep 30 &", "done-0"] {
            assert!(out.lines().any(|l| l.ends_with(want)), "{want:?} missing from:\n{out}");
        }
    }
}
