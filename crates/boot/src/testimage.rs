//! A tiny kernel image built by trapbox itself, for tests that must run anywhere — including
//! on PVM, where a real kernel's ring-0 code is far too slow: a setup header that follows the
//! boot protocol (magic, version 2.15, LOADED_HIGH, XLF_KERNEL_64, syssize) and a 64-bit entry
//! of a few hundred instructions that:
//!
//! 1. prints a banner on COM1 with `out`,
//! 2. prints the command line it finds through the zero page (`cmd_line_ptr`, %rsi + 0x228),
//!    and the first line of the initrd (`ramdisk_image`/`ramdisk_size`) — proof that the boot
//!    protocol was followed, not only that code ran,
//! 3. prints the kernel's "Run /init as init process" line and an "init" line, so `--time`'s
//!    detection is covered too,
//! 4. resets through the i8042 (`out 0x64, 0xfe`).
//!
//! [`Variant`]s misbehave on purpose (panic line, triple fault, silence), and [`corrupt`] makes
//! the header damage each of `trapbox boot`'s refusals names.

#![forbid(unsafe_code)]

use super::bzimage::{synthetic, LOADED_HIGH, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64};

/// The banner the image prints first.
pub const BANNER: &str = "trapbox test image: 64-bit entry reached";
/// The line its pretend init prints.
pub const INIT_LINE: &str = "hello from the test image's init";
/// The panic line of [`Variant::Panic`].
pub const PANIC_LINE: &str = "Kernel panic - not syncing: trapbox test image panics on purpose";

/// What the image does after its banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Prints the command line, the initrd's first line, a pretend init's output, then resets.
    Ok,
    /// Prints a kernel panic line and halts with interrupts off.
    Panic,
    /// Loads an empty IDT and executes `ud2`: #UD → #GP → #DF → triple fault.
    TripleFault,
    /// Prints nothing and halts with interrupts off.
    Silent,
}

/// Builds the image.
pub fn build(variant: Variant) -> Vec<u8> {
    let code = entry_code(variant);
    // The protected-mode part: 0x200 bytes where the 32-bit entry would be (ud2s: this image
    // has only the 64-bit entry), then the 64-bit entry.
    let mut payload = [0x0f, 0x0b].repeat(0x100);
    payload.extend_from_slice(&code);
    // syssize counts 16-byte paragraphs: pad so the file holds exactly what it declares.
    payload.resize(payload.len().next_multiple_of(16), 0xcc);
    let mut img = synthetic(0x020f, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G, payload.len());
    img[0x211] |= LOADED_HIGH;
    img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    let off = img.len() - payload.len();
    img[off..].copy_from_slice(&payload);
    img
}

/// A header corruption, each matching one refusal of `trapbox boot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// No 0xAA55 at 0x1fe.
    NoBootSector,
    /// No "HdrS" at 0x202.
    NoHeaderMagic,
    /// Protocol 2.10, older than the 64-bit entry (2.12).
    OldProtocol,
    /// loadflags bit 0 clear: a zImage.
    NotLoadedHigh,
    /// xloadflags without XLF_KERNEL_64.
    No64BitEntry,
    /// The file ends before syssize says.
    Truncated,
    /// initrd_addr_max below the kernel's end (and not loadable above 4 GiB).
    LowInitrdAddrMax,
    /// cmdline_size of 16.
    ShortCmdlineSize,
}

/// `image` with `c` applied.
pub fn corrupt(mut image: Vec<u8>, c: Corruption) -> Vec<u8> {
    match c {
        Corruption::NoBootSector => image[0x1fe] = 0,
        Corruption::NoHeaderMagic => image[0x202] = b'X',
        Corruption::OldProtocol => image[0x206..0x208].copy_from_slice(&0x020au16.to_le_bytes()),
        Corruption::NotLoadedHigh => image[0x211] &= !LOADED_HIGH,
        Corruption::No64BitEntry => image[0x236..0x238].copy_from_slice(&0u16.to_le_bytes()),
        Corruption::Truncated => image.truncate(image.len() - 64),
        Corruption::LowInitrdAddrMax => {
            image[0x22c..0x230].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
            image[0x236..0x238].copy_from_slice(&XLF_KERNEL_64.to_le_bytes());
        }
        Corruption::ShortCmdlineSize => image[0x238..0x23c].copy_from_slice(&16u32.to_le_bytes()),
    }
    image
}

/// Zero-page offsets (struct boot_params) the image reads.
mod zp {
    pub const RAMDISK_IMAGE: i32 = 0x218;
    pub const RAMDISK_SIZE: i32 = 0x21c;
    pub const CMD_LINE_PTR: i32 = 0x228;
}

fn entry_code(variant: Variant) -> Vec<u8> {
    let mut a = Asm::default();
    if variant == Variant::Silent {
        a.halt_forever();
        return a.finish();
    }
    let banner = a.label();
    let newline = a.label();
    a.mov_edx_imm32(0x3f8);
    a.lea_rbx_rip(banner);
    a.print_rbx();
    match variant {
        Variant::Ok => {
            let (cmd, initrd, init, no_initrd, done, short) =
                (a.label(), a.label(), a.label(), a.label(), a.label(), a.label());
            a.lea_rbx_rip(cmd);
            a.print_rbx();
            a.mov_ebx_rsi(zp::CMD_LINE_PTR);
            a.print_rbx();
            a.lea_rbx_rip(newline);
            a.print_rbx();
            // The initrd's first line, 64 bytes at most.
            a.mov_ecx_rsi(zp::RAMDISK_SIZE);
            a.test_ecx_ecx();
            a.jz(no_initrd);
            a.cmp_ecx_imm8(64);
            a.jbe(short);
            a.mov_ecx_imm32(64);
            a.bind(short);
            a.lea_rbx_rip(initrd);
            a.print_rbx();
            a.mov_ebx_rsi(zp::RAMDISK_IMAGE);
            let top = a.label();
            a.bind(top);
            a.mov_al_at_rbx();
            a.cmp_al_imm8(b'\n');
            a.jz(done);
            a.out_dx_al();
            a.inc_rbx();
            a.dec_ecx();
            a.jnz(top);
            a.bind(done);
            a.lea_rbx_rip(newline);
            a.print_rbx();
            a.bind(no_initrd);
            a.lea_rbx_rip(init);
            a.print_rbx();
            a.mov_al_imm8(0xfe);
            a.out_imm8_al(0x64);
            a.halt_forever();
            a.data(cmd, b"cmdline: \0");
            a.data(initrd, b"initrd: \0");
            a.data(init, format!("Run /init as init process\n{INIT_LINE}\n\0").as_bytes());
        }
        Variant::Panic => {
            let msg = a.label();
            a.lea_rbx_rip(msg);
            a.print_rbx();
            a.halt_forever();
            a.data(msg, format!("{PANIC_LINE}\n\0").as_bytes());
        }
        Variant::TripleFault => {
            let (msg, idt) = (a.label(), a.label());
            a.lea_rbx_rip(msg);
            a.print_rbx();
            a.lidt_rip(idt);
            a.ud2();
            a.halt_forever();
            a.data(msg, b"about to triple fault\n\0");
            a.data(idt, &[0; 10]); // limit 0, base 0: no vector can be delivered
        }
        Variant::Silent => unreachable!("handled above"),
    }
    a.data(banner, format!("{BANNER}\n\0").as_bytes());
    a.data(newline, b"\n\0");
    a.finish()
}

/// A label in [`Asm`] code.
#[derive(Clone, Copy, Debug)]
struct Label(usize);

/// The few x86-64 instructions the test image needs, encoded by hand (each method names its
/// instruction; the unit test decodes the result with iced-x86 to check every encoding).
/// Jumps and RIP-relative operands are rel32, fixed up in `finish`.
#[derive(Default)]
struct Asm {
    code: Vec<u8>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.code.len());
    }
    fn emit(&mut self, b: &[u8]) {
        self.code.extend_from_slice(b);
    }
    fn rel32(&mut self, prefix: &[u8], l: Label) {
        self.emit(prefix);
        self.fixups.push((self.code.len(), l));
        self.emit(&[0; 4]);
    }
    /// `mov edx, imm32`
    fn mov_edx_imm32(&mut self, v: u32) {
        self.emit(&[0xba]);
        self.emit(&v.to_le_bytes());
    }
    /// `mov ecx, imm32`
    fn mov_ecx_imm32(&mut self, v: u32) {
        self.emit(&[0xb9]);
        self.emit(&v.to_le_bytes());
    }
    /// `mov al, imm8`
    fn mov_al_imm8(&mut self, v: u8) {
        self.emit(&[0xb0, v]);
    }
    /// `lea rbx, [rip + l]`
    fn lea_rbx_rip(&mut self, l: Label) {
        self.rel32(&[0x48, 0x8d, 0x1d], l);
    }
    /// `lidt [rip + l]`
    fn lidt_rip(&mut self, l: Label) {
        self.rel32(&[0x0f, 0x01, 0x1d], l);
    }
    /// `mov ebx, [rsi + disp32]` (zero-extends into rbx)
    fn mov_ebx_rsi(&mut self, disp: i32) {
        self.emit(&[0x8b, 0x9e]);
        self.emit(&disp.to_le_bytes());
    }
    /// `mov ecx, [rsi + disp32]`
    fn mov_ecx_rsi(&mut self, disp: i32) {
        self.emit(&[0x8b, 0x8e]);
        self.emit(&disp.to_le_bytes());
    }
    /// `mov al, [rbx]`
    fn mov_al_at_rbx(&mut self) {
        self.emit(&[0x8a, 0x03]);
    }
    /// `test ecx, ecx`
    fn test_ecx_ecx(&mut self) {
        self.emit(&[0x85, 0xc9]);
    }
    /// `cmp ecx, imm8`
    fn cmp_ecx_imm8(&mut self, v: i8) {
        self.emit(&[0x83, 0xf9, v as u8]);
    }
    /// `cmp al, imm8`
    fn cmp_al_imm8(&mut self, v: u8) {
        self.emit(&[0x3c, v]);
    }
    /// `inc rbx`
    fn inc_rbx(&mut self) {
        self.emit(&[0x48, 0xff, 0xc3]);
    }
    /// `dec ecx`
    fn dec_ecx(&mut self) {
        self.emit(&[0xff, 0xc9]);
    }
    /// `out dx, al`
    fn out_dx_al(&mut self) {
        self.emit(&[0xee]);
    }
    /// `out imm8, al`
    fn out_imm8_al(&mut self, port: u8) {
        self.emit(&[0xe6, port]);
    }
    /// `jz rel32`
    fn jz(&mut self, l: Label) {
        self.rel32(&[0x0f, 0x84], l);
    }
    /// `jnz rel32`
    fn jnz(&mut self, l: Label) {
        self.rel32(&[0x0f, 0x85], l);
    }
    /// `jbe rel32`
    fn jbe(&mut self, l: Label) {
        self.rel32(&[0x0f, 0x86], l);
    }
    /// `jmp rel32`
    fn jmp(&mut self, l: Label) {
        self.rel32(&[0xe9], l);
    }
    /// `ud2`
    fn ud2(&mut self) {
        self.emit(&[0x0f, 0x0b]);
    }
    /// `cli; hlt; jmp` back to the `hlt` (an NMI would wake it).
    fn halt_forever(&mut self) {
        self.emit(&[0xfa]);
        let h = self.label();
        self.bind(h);
        self.emit(&[0xf4]);
        self.jmp(h);
    }
    /// Prints the NUL-terminated string at rbx to port dx:
    /// `top: mov al,[rbx]; test al,al; jz end; out dx,al; inc rbx; jmp top; end:`
    fn print_rbx(&mut self) {
        let (top, end) = (self.label(), self.label());
        self.bind(top);
        self.mov_al_at_rbx();
        self.emit(&[0x84, 0xc0]); // test al, al
        self.jz(end);
        self.out_dx_al();
        self.inc_rbx();
        self.jmp(top);
        self.bind(end);
    }
    /// Bytes at label `l`.
    fn data(&mut self, l: Label, bytes: &[u8]) {
        self.bind(l);
        self.emit(bytes);
    }
    fn finish(mut self) -> Vec<u8> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let target = self.labels[l.0].expect("every label used is bound");
            let rel = target as i64 - (at as i64 + 4);
            self.code[at..at + 4].copy_from_slice(&(rel as i32).to_le_bytes());
        }
        self.code
    }
}

#[cfg(test)]
mod tests {
    use super::super::bzimage::{BootError, BzImage};
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

    /// (mnemonic, first operand register, memory base, displacement or immediate) per instruction.
    fn decode(code: &[u8]) -> Vec<(Mnemonic, Register, Register, u64)> {
        let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
        let mut out = Vec::new();
        while d.can_decode() {
            let i = d.decode();
            let value = (0..i.op_count())
                .find_map(|n| match i.op_kind(n) {
                    OpKind::Memory => Some(i.memory_displacement64()),
                    OpKind::NearBranch64 => Some(i.near_branch64()),
                    OpKind::Immediate8 | OpKind::Immediate32 | OpKind::Immediate8to32 => i.immediate(n).into(),
                    _ => None,
                })
                .unwrap_or(0);
            out.push((i.mnemonic(), i.op0_register(), i.memory_base(), value));
        }
        out
    }

    #[test]
    fn asm_encodings_decode_as_named() {
        use Mnemonic::*;
        use Register::{None as N, AL, EBX, ECX, EDX, RBX, RIP, RSI};
        let mut a = Asm::default();
        let l = a.label();
        a.bind(l);
        a.mov_edx_imm32(0x3f8);
        a.mov_ebx_rsi(0x228);
        a.mov_ecx_rsi(0x21c);
        a.mov_al_at_rbx();
        a.test_ecx_ecx();
        a.cmp_ecx_imm8(64);
        a.cmp_al_imm8(10);
        a.inc_rbx();
        a.dec_ecx();
        a.out_dx_al();
        a.out_imm8_al(0x64);
        a.mov_al_imm8(0xfe);
        a.mov_ecx_imm32(64);
        a.ud2();
        a.lea_rbx_rip(l);
        a.lidt_rip(l);
        a.jbe(l);
        a.jz(l);
        a.jnz(l);
        a.jmp(l);
        let want = vec![
            (Mov, EDX, N, 0x3f8),
            (Mov, EBX, RSI, 0x228),
            (Mov, ECX, RSI, 0x21c),
            (Mov, AL, RBX, 0),
            (Test, ECX, N, 0),
            (Cmp, ECX, N, 64),
            (Cmp, AL, N, 10),
            (Inc, RBX, N, 0),
            (Dec, ECX, N, 0),
            (Out, Register::DX, N, 0),
            (Out, N, N, 0x64),
            (Mov, AL, N, 0xfe),
            (Mov, ECX, N, 64),
            (Ud2, N, N, 0),
            (Lea, RBX, RIP, 0),
            (Lidt, N, RIP, 0),
            (Jbe, N, N, 0),
            (Je, N, N, 0),
            (Jne, N, N, 0),
            (Jmp, N, N, 0),
        ];
        assert_eq!(decode(&a.finish()), want);
    }

    #[test]
    fn build_has_a_conformant_header_and_64bit_entry() {
        for v in [Variant::Ok, Variant::Panic, Variant::TripleFault, Variant::Silent] {
            let img = build(v);
            let b = BzImage::parse(&img, img.len() as u64).unwrap();
            assert_eq!(b.check_bootable(), Ok(()), "{v:?}");
            // The 64-bit entry (kernel start + 0x200) begins with `mov edx, 0x3f8` or `cli`.
            let entry = b.kernel_offset() as usize + 0x200;
            assert!(img[entry] == 0xba || img[entry] == 0xfa, "{v:?}");
        }
        let ok = build(Variant::Ok);
        assert!(ok.windows(BANNER.len()).any(|w| w == BANNER.as_bytes()));
    }

    #[test]
    fn corrupt_gives_each_refusal() {
        let img = || build(Variant::Ok);
        let check = |c| {
            let i = corrupt(img(), c);
            BzImage::parse(&i, i.len() as u64).and_then(|b| b.check_bootable())
        };
        assert_eq!(check(Corruption::NoBootSector), Err(BootError::NoBootSector));
        assert_eq!(check(Corruption::NoHeaderMagic), Err(BootError::NoHeader));
        assert_eq!(check(Corruption::OldProtocol), Err(BootError::ProtocolTooOld(0x020a)));
        assert_eq!(check(Corruption::NotLoadedHigh), Err(BootError::NotLoadedHigh));
        assert_eq!(check(Corruption::No64BitEntry), Err(BootError::No64BitEntry));
        assert!(matches!(check(Corruption::Truncated), Err(BootError::ImageTruncated { .. })));
        assert_eq!(check(Corruption::LowInitrdAddrMax), Ok(()));
        assert_eq!(check(Corruption::ShortCmdlineSize), Ok(()));
    }
}
