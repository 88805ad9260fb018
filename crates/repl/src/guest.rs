//! The REPL's guest program: a static ELF executable made here, small enough to snapshot
//! whole. Its entry is an `int3` (the prompt: every line starts from the breakpoint the
//! guest is parked at), its code area is read-and-execute pages the REPL patches each line
//! into (always at the area's start, followed by an `int3` that brings the guest back), and
//! it has a page of scratch memory besides the stack the loader gives it.

/// Where the program is linked (non-PIE, so every address is the same in every session).
pub const BASE: u64 = 0x40_0000;
/// The entry: `int3` then a jump back to it.
pub const ENTRY: u64 = BASE + 0x100;
/// The code area, filled with `int3`.
pub const CODE: u64 = BASE + 0x1000;
/// Bytes of the code area: the largest block one line or `.begin` … `.end` may assemble to.
pub const CODE_SIZE: u64 = 0x10000;
/// Scratch memory, read and write, zero at the start.
pub const SCRATCH: u64 = 0x60_0000;
/// Bytes of scratch memory.
pub const SCRATCH_SIZE: u64 = 0x10000;

/// The program's bytes.
pub fn image() -> Vec<u8> {
    let file_size = (CODE - BASE + CODE_SIZE) as usize;
    let mut f = vec![0u8; file_size];
    let put = |f: &mut Vec<u8>, at: usize, bytes: &[u8]| f[at..at + bytes.len()].copy_from_slice(bytes);
    // ELF header.
    put(&mut f, 0, b"\x7fELF\x02\x01\x01");
    put(&mut f, 16, &2u16.to_le_bytes()); // ET_EXEC
    put(&mut f, 18, &62u16.to_le_bytes()); // EM_X86_64
    put(&mut f, 20, &1u32.to_le_bytes());
    put(&mut f, 24, &ENTRY.to_le_bytes());
    put(&mut f, 32, &64u64.to_le_bytes()); // program headers right after
    put(&mut f, 52, &64u16.to_le_bytes());
    put(&mut f, 54, &56u16.to_le_bytes());
    put(&mut f, 56, &3u16.to_le_bytes());
    // PT_LOAD: (file offset, address, file size, memory size, flags).
    let (r, w, x) = (4u32, 2u32, 1u32);
    let segments = [
        (0u64, BASE, 0x1000u64, 0x1000u64, r | x),
        (CODE - BASE, CODE, CODE_SIZE, CODE_SIZE, r | x),
        (0, SCRATCH, 0, SCRATCH_SIZE, r | w),
    ];
    for (i, (off, addr, filesz, memsz, flags)) in segments.into_iter().enumerate() {
        let ph = 64 + 56 * i;
        put(&mut f, ph, &1u32.to_le_bytes());
        put(&mut f, ph + 4, &flags.to_le_bytes());
        put(&mut f, ph + 8, &off.to_le_bytes());
        put(&mut f, ph + 16, &addr.to_le_bytes());
        put(&mut f, ph + 24, &addr.to_le_bytes());
        put(&mut f, ph + 32, &filesz.to_le_bytes());
        put(&mut f, ph + 40, &memsz.to_le_bytes());
        put(&mut f, ph + 48, &0x1000u64.to_le_bytes());
    }
    // The entry: int3; jmp back to it.
    put(&mut f, (ENTRY - BASE) as usize, &[0xcc, 0xeb, 0xfd]);
    f[(CODE - BASE) as usize..].fill(0xcc);
    f
}
