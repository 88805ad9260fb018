//! `trapbox inspect --cpu`: the CPU view the guest gets, beside the host's.

use anyhow::Result;
use trapbox::trap::CpuView;
use trapbox::vm::arch::xsave;
use trapbox::vm::{KvmMachine, TrapPath};

/// Prints the host's CPU view (what trapbox's own process sees) and the guest's (what a
/// program in the box sees, measured in a VM made for it), their state components, XSAVE
/// layouts and features, and anything inconsistent. Exit status 1 if the guest's view is
/// inconsistent (a VM could not be made then: the reason is the error).
pub fn inspect_cpu(path: Option<TrapPath>) -> Result<i32> {
    let host = CpuView::host();
    let path = path.unwrap_or_else(TrapPath::detect);
    let machine = KvmMachine::new(path, trapbox::process::fds::private_fd_base())?;
    let guest = machine.cpu_view();
    println!("CPU: {}", brand());
    println!("kind of KVM: {}", path.name());
    println!("{:<24}{:<40}guest (the box)", "", "host (trapbox's process)");
    let row = |what: &str, h: String, g: String| println!("{what:<24}{h:<40}{g}");
    row("XCR0", format!("{:#x}", host.xcr0()), format!("{:#x}", guest.xcr0()));
    row("state saved", xsave::names(host.xcr0()), xsave::names(guest.xcr0()));
    let size = |v: &CpuView| v.cpuid(0xd, 0).map_or(0, |r| r[1]);
    row("XSAVE area (CPUID)", format!("{} bytes", size(&host)), format!("{} bytes", size(guest)));
    row(
        "XSAVE writes",
        format!("{} bytes", host.layout().standard_size(host.xcr0())),
        format!("{} bytes", guest.layout().standard_size(guest.xcr0())),
    );
    row(
        "signal frame XSAVE",
        format!("{} bytes", host.frame_xsave_size()),
        format!("{} bytes", guest.frame_xsave_size()),
    );
    println!("components (offset+size in the standard form):");
    for c in guest.layout().components() {
        let h = host.layout().components().iter().find(|h| h.bit == c.bit);
        let at = |o: u32, s: u32| format!("{o}+{s}");
        row(
            &format!("  {:>2} {}", c.bit, xsave::names(1 << c.bit)),
            h.map_or_else(|| "-".into(), |h| at(h.offset, h.size)),
            at(c.offset, c.size),
        );
    }
    for h in host.layout().components().iter().filter(|h| guest.xcr0() & (1 << h.bit) == 0) {
        row(&format!("  {:>2} {}", h.bit, xsave::names(1 << h.bit)), format!("{}+{}", h.offset, h.size), "-".into());
    }
    let (hf, gf) = (host.features(), guest.features());
    let both: Vec<&str> = gf.iter().copied().filter(|f| hf.contains(f)).collect();
    let host_only: Vec<&str> = hf.iter().copied().filter(|f| !gf.contains(f)).collect();
    let guest_only: Vec<&str> = gf.iter().copied().filter(|f| !hf.contains(f)).collect();
    println!("features in both: {}", list(&both));
    println!("features hidden from the guest: {}", list(&host_only));
    println!("features only the guest is told of: {}", list(&guest_only));
    let mut status = 0;
    for (who, v) in [("host", &host), ("guest", guest)] {
        let bad = v.inconsistencies();
        if bad.is_empty() {
            println!("{who} view: consistent");
        } else {
            status = 1;
            for b in bad {
                println!("{who} view: inconsistent: {b}");
            }
        }
    }
    Ok(status)
}

/// One line on the guest's CPU view, for `-v`.
pub fn summary(v: &CpuView) -> String {
    format!(
        "CPU view: XSAVE state {} (XCR0 {:#x}, {}-byte area){}",
        xsave::names(v.xcr0()),
        v.xcr0(),
        v.layout().standard_size(v.xcr0()),
        if v.features().contains(&"avx512f") { ", AVX-512" } else { "" }
    )
}

fn list(v: &[&str]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

/// The CPU's brand string and family/model, as /proc/cpuinfo has them.
fn brand() -> String {
    use trapbox::vm::arch::cpuview::host_cpuid;
    let mut b = Vec::new();
    if host_cpuid(0x8000_0000, 0)[0] >= 0x8000_0004 {
        for leaf in 0x8000_0002..=0x8000_0004 {
            host_cpuid(leaf, 0).iter().for_each(|r| b.extend_from_slice(&r.to_le_bytes()));
        }
    }
    let name = String::from_utf8_lossy(&b).trim_matches(char::from(0)).trim().to_string();
    let sig = host_cpuid(1, 0)[0];
    let (base_family, base_model) = ((sig >> 8) & 0xf, (sig >> 4) & 0xf);
    let family = if base_family == 0xf { base_family + ((sig >> 20) & 0xff) } else { base_family };
    let model = if base_family >= 6 { base_model | (((sig >> 16) & 0xf) << 4) } else { base_model };
    format!("{name} (family {family} model {model})")
}
