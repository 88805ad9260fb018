//! System binaries run natively and under `trapbox run`, compared byte for byte.

#[macro_use]
mod common;

use common::{assert_same_as_native, tempdir};
use std::path::PathBuf;

/// A deterministic text file of about 2 MiB.
fn data_file(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("data.txt");
    let mut s = String::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..40_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{:016x} line {i} {}\n", x, "abcdefghijklmnopqrstuvwxyz".repeat((x % 3) as usize)));
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn echo() {
    let d = tempdir("echo");
    assert_same_as_native(&["/bin/echo", "hello", "from", "the box"], b"", &d);
}

fn cat_file_and_stdin() {
    let d = tempdir("cat");
    let f = data_file(&d);
    assert_same_as_native(&["/bin/cat".into(), f.to_string_lossy().into_owned()], b"", &d);
    assert_same_as_native(&["/bin/cat", "-"], b"from stdin\nsecond line\n", &d);
}

fn ls_la() {
    // `ls -la` lists `..` with its link count: a directory of this test's own, not the shared
    // temporary directory where other tests make and remove directories meanwhile.
    let d = tempdir("ls").join("listed");
    std::fs::create_dir(&d).unwrap();
    data_file(&d);
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/x"), b"x").unwrap();
    assert_same_as_native(&["/bin/ls", "-la", "--time-style=+", "."], b"", &d);
    assert_same_as_native(&["/bin/ls", "-R", "/usr/share/doc/coreutils"], b"", &d);
}

fn sha256sum_file_and_stdin() {
    let d = tempdir("sha");
    let f = data_file(&d);
    assert_same_as_native(&["/usr/bin/sha256sum".into(), f.to_string_lossy().into_owned()], b"", &d);
    assert_same_as_native(&["/usr/bin/sha256sum"], b"hash me\n", &d);
}

fn sort_file_and_stdin() {
    let d = tempdir("sort");
    let f = data_file(&d);
    assert_same_as_native(&["/usr/bin/sort".into(), f.to_string_lossy().into_owned()], b"", &d);
    assert_same_as_native(&["/usr/bin/sort", "-r"], b"b\na\nc\n", &d);
}

fn gzip_c_file_and_stdin() {
    let d = tempdir("gzip");
    let f = data_file(&d);
    assert_same_as_native(&["/bin/gzip".into(), "-c".into(), "-n".into(), f.to_string_lossy().into_owned()], b"", &d);
    assert_same_as_native(&["/bin/gzip", "-c", "-n"], b"compress me please, compress me please\n", &d);
}

fn python3_imports_json_and_hashlib() {
    let d = tempdir("py");
    let prog = "import json, hashlib, sys\n\
                doc = json.dumps({'k': list(range(100)), 'stdin': sys.stdin.read()}, sort_keys=True)\n\
                print(hashlib.sha256(doc.encode()).hexdigest())";
    assert_same_as_native(&["/usr/bin/python3", "-c", prog], b"piped into python\n", &d);
}

fn missing_file_error_matches() {
    let d = tempdir("catmissing");
    assert_same_as_native(&["/bin/cat", "does-not-exist"], b"", &d);
}

// Every test above runs on both engines.
each_backend!(
    echo,
    cat_file_and_stdin,
    ls_la,
    sha256sum_file_and_stdin,
    sort_file_and_stdin,
    gzip_c_file_and_stdin,
    python3_imports_json_and_hashlib,
    missing_file_error_matches,
);
