//! `trapbox repl`: pipe-mode sessions compared with their expected output, on both engines,
//! and one interactive session through a pseudo-terminal (history with the up arrow).

#[macro_use]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const FLAGS_IF: &str = "cf:0 pf:0 af:0 zf:0 sf:0 tf:0 if:1 df:0 of:0";

/// Runs a pipe-mode session; asserts it ended cleanly; returns its stdout.
fn session(input: &str) -> String {
    if backend() == Backend::Kvm {
        require_kvm();
    }
    let dir = tempdir("repl");
    let r = trapbox(&["repl"], input.as_bytes(), &dir);
    assert_eq!(r.status, 0, "repl failed:\n{}\n{}", r.stdout_str(), r.stderr_str());
    assert_eq!(r.stderr_str(), "", "repl said on stderr:\n{}", r.stderr_str());
    r.stdout_str()
}

fn arithmetic_and_flags() {
    let out = session("mov rax, 5\nadd rax, -5\nsub rbx, 1\n");
    let want = format!(
        "= mov rax, 5\nrax=0x5\n{FLAGS_IF}\n\
         = add rax, -5\nrax=0x0\ncf:1 pf:1 af:1 zf:1 sf:0 tf:0 if:1 df:0 of:0\n\
         = sub rbx, 1\nrbx=0xffffffffffffffff\ncf:1 pf:1 af:1 zf:0 sf:1 tf:0 if:1 df:0 of:0\n"
    );
    assert_eq!(out, want);
}

fn a_syscall_goes_through_the_trap_path_and_is_shown() {
    let out = session(
        ".write 0x600000 68690a\n.begin\nmov eax, 1\nmov edi, 1\nmov esi, 0x600000\nmov edx, 3\nsyscall\n.end\n",
    );
    let want = "wrote 3 bytes at 0x600000\n\
                = mov eax, 1\n= mov edi, 1\n= mov esi, 0x600000\n= mov edx, 3\n= syscall\n\
                hi\n\
                write(1, \"hi\\n\", 3)                     = 3\n";
    assert!(out.starts_with(want), "{out}");
    let rest = &out[want.len()..];
    // syscall leaves the return address in RCX and RFLAGS in R11.
    assert!(rest.starts_with("rax=0x3 rcx=0x401016 rdx=0x3 rsi=0x600000 rdi=0x1 r11=0x2"), "{rest}");
}

fn a_fault_is_reported_and_the_session_goes_on() {
    let out = session("mov rax, [0]\nmov rbx, 1\n");
    let want = format!(
        "= mov rax, [0]\n{FLAGS_IF}\nfault: SIGSEGV (page fault: read at 0x0 (not mapped)) at rip 0x401000\n\
         = mov rbx, 1\nrbx=0x1\n{FLAGS_IF}\n"
    );
    assert_eq!(out, want);
}

fn a_loop_in_a_block() {
    let out = session(".begin\nmov ecx, 5\nxor eax, eax\nagain: add eax, ecx\ndec ecx\njnz again\n.end\n");
    let want = "= mov ecx, 5\n= xor eax, eax\n= add eax, ecx\n= dec ecx\n= jne 0x401007\n\
                rax=0xf\ncf:0 pf:1 af:0 zf:1 sf:0 tf:0 if:1 df:0 of:0\n";
    assert_eq!(out, want);
}

fn write_and_read_round_trip() {
    let out = session(".write 0x600020 deadbeef\n.read 0x600020 4\nmov eax, [0x600020]\n");
    let want = format!(
        "wrote 4 bytes at 0x600020\n0x600020: de ad be ef{:38}....\n\
         = mov eax, [0x600020]\nrax=0xefbeadde\n{FLAGS_IF}\n",
        ""
    );
    assert_eq!(out, want);
}

fn undo_restores_registers_vector_state_and_memory() {
    let out = session(
        "mov rax, 7\nvpcmpeqd ymm1, ymm1, ymm1\nmov byte ptr [0x600010], 0x41\n.read 0x600010 1\n\
         .undo\n.read 0x600010 1\n.undo\n.allregs\n.undo\n.regs\n",
    );
    let blocks: Vec<&str> = out.split("undone\n").collect();
    assert_eq!(blocks.len(), 4, "{out}");
    assert!(blocks[0].contains("0x600010: 41 "), "{out}");
    assert!(blocks[1].contains("0x600010: 00 "), "the byte is back:\n{out}");
    // ymm1 (or zmm1 where AVX-512 is on) is zero again after the second undo.
    let v1 = blocks[2].lines().find(|l| l.starts_with("ymm1=") || l.starts_with("zmm1=")).expect("vector registers");
    assert!(!v1.contains('f'), "{v1}");
    assert!(blocks[2].contains("\nrax=0x7\n"), "{out}");
    assert!(blocks[3].contains("\nrax=0x0\n") || blocks[3].starts_with("rax=0x0"), "rax is back:\n{out}");
}

fn avx_registers_are_shown() {
    let out = session("vpcmpeqd ymm1, ymm1, ymm1\nmov eax, -1\nvmovd xmm2, eax\nfldpi\n.allregs\n");
    let reg = |n: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("ymm{n}=")) || l.starts_with(&format!("zmm{n}=")))
            .unwrap_or_else(|| panic!("no ymm{n}/zmm{n} in:\n{out}"))
            .to_string()
    };
    let ones = "ffffffffffffffff_ffffffffffffffff_ffffffffffffffff_ffffffffffffffff";
    assert!(reg("1").ends_with(ones), "{}", reg("1"));
    assert!(reg("2").ends_with("_0000000000000000_00000000ffffffff"), "{}", reg("2"));
    assert!(out.contains("\nst0=3.14159265358979"), "{out}");
    assert!(out.contains("\nmxcsr=") || out.contains(" mxcsr=0x00001f80"), "{out}");
}

fn bad_input_changes_nothing() {
    let out = session(".regs\nfrobnicate rax\nmov rax,\n.regs\n");
    let (first, rest) = out.split_once("error: no such instruction: `frobnicate rax'\n").expect(&out);
    let (err, second) = rest.split_once('\n').expect(&out);
    assert!(err.starts_with("error: "), "{out}");
    assert_eq!(first, second, "registers changed:\n{out}");
}

fn exit_exec_and_fork_are_explained_and_the_session_goes_on() {
    let out = session(".begin\nmov eax, 60\nmov edi, 3\nsyscall\nmov rbx, 1\n.end\nmov eax, 57\nsyscall\nmov rcx, 2\n");
    assert!(out.contains("exit(3)                                 = -1 EPERM (Operation not permitted)\n"), "{out}");
    assert!(out.contains("note: exit(3) would end the guest process; refused with EPERM, and the line stops there\n"));
    // The rest of the block did not run: rbx is not 1.
    assert!(!out.contains("rbx=0x1"), "{out}");
    assert!(out.contains("fork()                                  = -1 EPERM (Operation not permitted)\n"), "{out}");
    assert!(out.contains("note: the REPL's guest stays one thread in one process"), "{out}");
    assert!(out.ends_with(&format!("= mov rcx, 2\nrcx=0x2\n{FLAGS_IF}\n")), "{out}");
}

fn a_line_that_never_ends_is_stopped() {
    let out = session(".timeout 0.2\njmp .\nmov rax, 1\n");
    assert!(out.contains("stopped: still running after 200ms (rip 0x401000; .timeout SECS)\n"), "{out}");
    assert!(out.ends_with(&format!("= mov rax, 1\nrax=0x1\n{FLAGS_IF}\n")), "{out}");
}

fn save_then_load_runs_the_same_lines() {
    let dir = tempdir("repl-save");
    let file = dir.join("s.asm");
    let f = file.display();
    let first = session(&format!("mov rax, 3\n.begin\nshl rax, 2\nadd rax, 1\n.end\n.save {f}\n"));
    assert!(first.contains("saved 2 lines"), "{first}");
    let second = session(&format!(".load {f}\n"));
    assert!(second.contains("rax=0xd\n"), "{second}");
}

each_backend!(
    arithmetic_and_flags,
    a_syscall_goes_through_the_trap_path_and_is_shown,
    a_fault_is_reported_and_the_session_goes_on,
    a_loop_in_a_block,
    write_and_read_round_trip,
    undo_restores_registers_vector_state_and_memory,
    avx_registers_are_shown,
    bad_input_changes_nothing,
    exit_exec_and_fork_are_explained_and_the_session_goes_on,
    a_line_that_never_ends_is_stopped,
    save_then_load_runs_the_same_lines,
);

/// An interactive session through a pseudo-terminal (`script` gives the REPL one): a line,
/// the up arrow and Enter run it again from the history, `.quit` ends.
#[test]
fn interactive_history_and_quit() {
    require_kvm();
    let cmd = format!("{} repl", env!("CARGO_BIN_EXE_trapbox"));
    let mut child = common::spawn_grouped(
        Command::new("script")
            .args(["-qefc", &cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut input = child.stdin.take().expect("piped");
    // Each key sequence after the prompt is there: the editor reads keys, not lines.
    let keys: [&[u8]; 4] = [b"mov rax, 5\r", b"add rax, rax\r", b"\x1b[A\r", b".quit\r"];
    for k in keys {
        std::thread::sleep(Duration::from_millis(700));
        input.write_all(k).unwrap();
        input.flush().unwrap();
    }
    let out = common::wait_within(child, "script(1) running trapbox repl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The echo of what ran (address and disassembly) appears once per run: `add` ran twice.
    assert_eq!(text.matches("0x401000: mov rax, 5").count(), 1, "{text}");
    assert_eq!(text.matches("0x401000: add rax, rax").count(), 2, "{text}");
    // 5 + 5 = 10, then 20; on a terminal the changed register is highlighted.
    assert!(text.contains("rax: 0x0000000000000014"), "{text}");
}
