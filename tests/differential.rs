//! The engine's test programs, each built static, static-pie and dynamic, run natively and
//! under `trapbox run`: stdout, stderr and exit status must match.

#[macro_use]
mod common;

use common::{assert_same_as_native, guest, tempdir, Form};

/// Generates one test per link form for a guest.
macro_rules! differential {
    ($name:ident, $args:expr, $stdin:expr) => {
        differential!($name, $args, $stdin, |_: &common::Run| ());
    };
    ($name:ident, $args:expr, $stdin:expr, $also:expr) => {
        mod $name {
            use super::*;
            fn check(form: Form) {
                let dir = tempdir(stringify!($name));
                let exe = guest(stringify!($name), form);
                let args: Vec<String> = $args(&dir);
                let mut argv = vec![exe.to_string_lossy().into_owned()];
                argv.extend(args);
                let run = assert_same_as_native(&argv, $stdin, &dir);
                $also(&run);
            }
            each_form_each_backend!(check);
        }
    };
}

/// For guests that check themselves: the box must not only match the host but pass.
fn passes(run: &common::Run) {
    assert_eq!(run.status, 0, "the guest's own checks failed:\n{}", run.stdout_str());
    assert!(!run.stdout_str().contains("FAIL"), "{}", run.stdout_str());
}

fn none(_: &std::path::Path) -> Vec<String> {
    Vec::new()
}

differential!(hello, none, b"");
differential!(args, |_: &std::path::Path| vec!["one".into(), "two words".into(), "".into()], b"");
differential!(fileio, |d: &std::path::Path| vec![d.to_string_lossy().into_owned()], b"");
differential!(malloc, none, b"");
differential!(mprotect, none, b"");
differential!(tls, none, b"");
differential!(random_clock, none, b"");
differential!(bigstr, none, b"");
differential!(cpuloop, |_: &std::path::Path| vec!["20000000".into()], b"");
differential!(getppid_loop, |_: &std::path::Path| vec!["2000".into()], b"");
differential!(stdin_echo, none, b"line one\nline two\n\x00binary\xff\n");
differential!(exitcode, |_: &std::path::Path| vec!["42".into()], b"");
differential!(regs, none, b"");
differential!(cpu, none, b"");
// Issue 19: the CPU view is true of the CPU (XSAVE sizes, advertised features), and the
// widest vector state survives lazy binding, signals, fork and thread creation.
differential!(cpu_view, none, b"", passes);
differential!(vec_state, none, b"", passes);
differential!(selfexe, none, b"");
// A signal deliverable only at a handler's rt_sigreturn after an EINTR the kernel never
// restarts: rt_sigreturn must not be "restarted" in its place.
differential!(sig_after_sigreturn, none, b"");
// An FPU state the kernel refuses, left in a signal frame: SIGSEGV at rt_sigreturn.
differential!(bad_fpu_frame, none, b"");
differential!(remap_churn, none, b"");
differential!(adv_stack, none, b"");
