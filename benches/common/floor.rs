//! The exit floor: the cheapest VM exit from CPL3 on this host's KVM, which no KVM trap path
//! can beat.

use std::time::{Duration, Instant};

use trapbox::vm::{GuestMemory, KvmMachine as Machine, PteFlags, RawExit, TrapPath};

/// The floor: a CPL3 loop whose every iteration is one MMIO store, i.e. one exit, with the
/// registers carried in kvm_run sync regs. trapbox's syscall path cannot be cheaper.
pub fn exit_floor(iters: u32) -> Duration {
    let mut m = Machine::new(TrapPath::detect(), 900).expect("KVM");
    let page = unsafe_page();
    let mmio = unsafe_page();
    // mov [mmio], al ; jmp back
    let mut code = vec![0xa2];
    code.extend_from_slice(&mmio.to_le_bytes());
    code.extend_from_slice(&[0xeb, 0xf5]);
    write_page(page, &code);
    map_code(&mut m.mem, page);
    m.map_unbacked_page(mmio).unwrap();
    m.set_entry(page, 0);
    for _ in 0..100 {
        m.run_raw().unwrap();
    }
    let t = Instant::now();
    for _ in 0..iters {
        match m.run_raw().unwrap() {
            RawExit::MmioWrite { .. } => {}
            e => panic!("unexpected exit {e:?}"),
        }
    }
    t.elapsed() / iters
}

fn unsafe_page() -> u64 {
    // SAFETY: a fresh anonymous page, leaked for the benchmark's lifetime.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as u64
}

fn write_page(page: u64, bytes: &[u8]) {
    // SAFETY: `page` is a writable page made by unsafe_page and bytes fit in it.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), page as *mut u8, bytes.len()) };
}

fn map_code(mem: &mut GuestMemory, page: u64) {
    mem.map(page, 4096, Some(PteFlags { write: false, exec: true, user: true })).unwrap();
}
