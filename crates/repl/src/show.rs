//! How registers are shown: the ones a line changed, the flags line, and the full file
//! (`.regs`, `.allregs`) with the x87, SSE, AVX and AVX-512 state the CPU view enables.

use trapbox_abi::arch::cpuview::CpuView;
use trapbox_trap::Regs;

/// General registers in display order.
pub const GPRS: [&str; 16] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/// Register `name`'s value (GPRs, `rip`, `rflags`).
pub fn get(r: &Regs, name: &str) -> Option<u64> {
    Some(match name {
        "rax" => r.rax,
        "rbx" => r.rbx,
        "rcx" => r.rcx,
        "rdx" => r.rdx,
        "rsi" => r.rsi,
        "rdi" => r.rdi,
        "rbp" => r.rbp,
        "rsp" => r.rsp,
        "r8" => r.r8,
        "r9" => r.r9,
        "r10" => r.r10,
        "r11" => r.r11,
        "r12" => r.r12,
        "r13" => r.r13,
        "r14" => r.r14,
        "r15" => r.r15,
        "rip" => r.rip,
        "rflags" => r.rflags,
        _ => return None,
    })
}

/// The general registers that differ between `before` and `after` (RIP always moves and
/// RFLAGS has its own line).
pub fn changed(before: &Regs, after: &Regs) -> Vec<(&'static str, u64)> {
    GPRS.iter().filter_map(|n| Some((*n, get(after, n)?))).filter(|(n, v)| get(before, n) != Some(*v)).collect()
}

const FLAGS: [(&str, u32); 9] =
    [("cf", 0), ("pf", 2), ("af", 4), ("zf", 6), ("sf", 7), ("tf", 8), ("if", 9), ("df", 10), ("of", 11)];

/// `cf:0 pf:1 …` (plain) or `[cf:0, pf:1, …]` (terminal).
pub fn flags(rflags: u64, plain: bool) -> String {
    let items: Vec<String> = FLAGS.iter().map(|(n, b)| format!("{n}:{}", rflags >> b & 1)).collect();
    if plain {
        items.join(" ")
    } else {
        format!("[{}]", items.join(", "))
    }
}

/// The changed registers: `rax=0x1 rcx=0x2` (plain, one line; empty when none changed), or
/// every general register three to a line with the changed ones in bold (terminal).
pub fn after_line(before: &Regs, after: &Regs, plain: bool) -> String {
    let changed = changed(before, after);
    if plain {
        return changed.iter().map(|(n, v)| format!("{n}={v:#x}")).collect::<Vec<_>>().join(" ");
    }
    let mut out = String::new();
    let names: Vec<&str> = GPRS.iter().copied().chain(["rip"]).collect();
    for (i, n) in names.iter().enumerate() {
        let v = get(after, n).unwrap_or(0);
        let hot = changed.iter().any(|(c, _)| c == n);
        let cell = format!("{n:>3}: {v:#018x}");
        if hot {
            out.push_str(&format!("\x1b[1;33m{cell}\x1b[0m"));
        } else {
            out.push_str(&cell);
        }
        out.push_str(if i % 3 == 2 || i + 1 == names.len() { "\n" } else { "  " });
    }
    out.trim_end().to_string()
}

/// Every general register, RIP and RFLAGS, `name=0x…` one per line.
pub fn all_gprs(r: &Regs) -> String {
    GPRS.iter()
        .chain(["rip", "rflags"].iter())
        .map(|n| format!("{n}={:#x}", get(r, n).unwrap_or(0)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The x87, SSE, AVX and AVX-512 registers from a standard-form XSAVE image, as far as the
/// CPU view enables them. A component whose XSTATE_BV bit is clear is in its initial state
/// (zeros), whatever its bytes in the image say.
pub fn vector_regs(x: &[u8], view: &CpuView) -> String {
    let le16 = |o: usize| x.get(o..o + 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let le32 = |o: usize| x.get(o..o + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()));
    let bytes = |o: usize, n: usize| x.get(o..o + n).map(<[u8]>::to_vec).unwrap_or_else(|| vec![0; n]);
    let bv = x.get(512..520).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let on = |bit: u32| view.xcr0() >> bit & 1 != 0;
    let live = |bit: u32| bv >> bit & 1 != 0;
    let comp = |bit: u32| view.layout().offset(bit);
    let mut out = Vec::new();
    out.push(format!("fcw={:#06x} fsw={:#06x} mxcsr={:#010x}", le16(0), le16(2), le32(24)));
    for i in 0..8 {
        let st = if live(0) { bytes(32 + 16 * i, 10) } else { vec![0; 10] };
        out.push(format!("st{i}={} ({})", x87_value(&st), hex_be(&st)));
    }
    for i in 0..16 {
        let xmm = if live(1) { bytes(160 + 16 * i, 16) } else { vec![0; 16] };
        let mut v = xmm.clone();
        let mut name = "xmm";
        if on(2) {
            if let Some(o) = comp(2) {
                let hi = if live(2) { bytes(o + 16 * i, 16) } else { vec![0; 16] };
                v.extend(hi);
                name = "ymm";
            }
        }
        if on(6) {
            if let Some(o) = comp(6) {
                let hi = if live(6) { bytes(o + 32 * i, 32) } else { vec![0; 32] };
                v.extend(hi);
                name = "zmm";
            }
        }
        out.push(format!("{name}{i}={}", hex_be(&v)));
    }
    if on(7) {
        if let Some(o) = comp(7) {
            for i in 0..16 {
                let v = if live(7) { bytes(o + 64 * i, 64) } else { vec![0; 64] };
                out.push(format!("zmm{}={}", 16 + i, hex_be(&v)));
            }
        }
    }
    if on(5) {
        if let Some(o) = comp(5) {
            let ks: Vec<String> = (0..8)
                .map(|i| {
                    let v = if live(5) { bytes(o + 8 * i, 8) } else { vec![0; 8] };
                    format!("k{i}={:#x}", u64::from_le_bytes(v.try_into().unwrap()))
                })
                .collect();
            out.push(ks.join(" "));
        }
    }
    out.join("\n")
}

/// Little-endian bytes as one hex number, most significant first, in 64-bit groups.
pub fn hex_be(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for (i, chunk) in b.chunks(8).rev().enumerate() {
        if i > 0 {
            s.push('_');
        }
        for byte in chunk.iter().rev() {
            s.push_str(&format!("{byte:02x}"));
        }
    }
    s
}

/// An 80-bit x87 value as a decimal (through f64: what a person wants to read).
fn x87_value(b: &[u8]) -> String {
    let mant = u64::from_le_bytes(b[..8].try_into().unwrap());
    let se = u16::from_le_bytes([b[8], b[9]]);
    let sign = if se & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = (se & 0x7fff) as i32;
    if exp == 0 && mant == 0 {
        return if sign < 0.0 { "-0".into() } else { "0".into() };
    }
    if exp == 0x7fff {
        return if mant << 1 == 0 { format!("{}inf", if sign < 0.0 { "-" } else { "" }) } else { "nan".into() };
    }
    let v = sign * (mant as f64 / (1u64 << 63) as f64) * 2f64.powi(exp - 16383);
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_line_names_each_bit() {
        assert_eq!(flags(0x246, true), "cf:0 pf:1 af:0 zf:1 sf:0 tf:0 if:1 df:0 of:0");
        assert!(flags(0x1, false).starts_with("[cf:1, pf:0"));
    }

    #[test]
    fn only_changed_general_registers_are_listed() {
        let a = Regs::default();
        let b = Regs { rax: 5, rip: 9, rflags: 0x246, ..a };
        assert_eq!(after_line(&a, &b, true), "rax=0x5");
    }

    #[test]
    fn x87_pi_reads_as_pi() {
        // fldpi: 0x4000_c90fdaa22168c235
        let mut b = 0xc90f_daa2_2168_c235u64.to_le_bytes().to_vec();
        b.extend(0x4000u16.to_le_bytes());
        assert!(x87_value(&b).starts_with("3.14159265358979"));
        assert_eq!(hex_be(&b), "0x4000_c90fdaa22168c235");
    }
}
