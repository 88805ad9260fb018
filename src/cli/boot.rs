//! `trapbox boot --kernel bzImage [--initrd FILE] [--cmdline '...'] [--memory SIZE] [--cpus N]`.
//!
//! Exit status: 0 the guest powered off, halted or rebooted; 3 the kernel was refused before it
//! ran (the reason on one line: image, limits, or a KVM too slow for kernels); 4 kernel panic;
//! 5 triple fault; 6 no console output in time; 124 --timeout; 130 ended with Ctrl-A x;
//! 127 a failure of trapbox or KVM.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use trapbox::boot::{self, diagnose, host, BootConfig, ConsoleInput, Error, Outcome};

/// Arguments of `trapbox boot`.
#[derive(clap::Args, Debug)]
pub struct BootArgs {
    /// The kernel: a bzImage with a 64-bit entry (boot protocol 2.12+).
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// An initramfs (or initrd) image.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel parameters, appended to the default command line (console=ttyS0 reboot=k
    /// panic=-1 pci=off and the i8042 options).
    #[arg(long, value_name = "ARGS")]
    pub cmdline: Option<String>,
    /// Use --cmdline alone, without the defaults.
    #[arg(long)]
    pub no_default_cmdline: bool,
    /// Guest RAM (e.g. 256M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = crate::args::parse_size, default_value = "256M")]
    pub memory: u64,
    /// vCPUs (SMP through an MP table; up to 32).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u8,
    /// Print the time from VM creation to the first console byte and to init's first output,
    /// and the VM exits.
    #[arg(long)]
    pub time: bool,
    /// End the VM after SECS seconds (exit status 124).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Give up if the console shows nothing for SECS seconds from the start (exit status 6);
    /// 0 waits for ever.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub silence_timeout: f64,
    /// Run even on PVM, where a real kernel would take hours (fine for tiny test kernels).
    #[arg(long)]
    pub allow_slow: bool,
    /// Print the load plan and the ports the guest touched that have no device.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Runs `trapbox boot`; returns its exit status.
pub fn boot(a: BootArgs) -> Result<i32> {
    let kernel = std::fs::read(&a.kernel).with_context(|| format!("boot: {}", a.kernel.display()))?;
    let initrd = match &a.initrd {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("boot: {}", p.display()))?),
        None => None,
    };
    let mut cmdline = if a.no_default_cmdline { String::new() } else { boot::default_cmdline() };
    if let Some(extra) = &a.cmdline {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(extra.trim());
    }
    let secs = |s: f64| Duration::try_from_secs_f64(s).context("boot: a time in seconds must be positive and finite");
    let cfg = BootConfig {
        cmdline,
        mem_size: a.memory,
        cpus: a.cpus,
        silence_timeout: if a.silence_timeout > 0.0 { Some(secs(a.silence_timeout)?) } else { None },
        timeout: a.timeout.map(secs).transpose()?,
        allow_slow: a.allow_slow,
        ..BootConfig::default()
    };

    // An interactive terminal gets raw mode (keys, Ctrl-C included, go to the guest) and the
    // Ctrl-A x escape; anything else is passed through as it comes.
    let raw = host::RawTerminal::enable(0);
    let input = ConsoleInput::Fd { fd: 0, escape: raw.is_some() };
    if raw.is_some() {
        eprint!("trapbox: boot: the guest's console is on this terminal; Ctrl-A x ends the VM\r\n");
    }
    let result = boot::boot(&kernel, initrd.as_deref(), &cfg, Box::new(std::io::stdout()), input);
    drop(raw);
    let _ = std::io::stdout().flush();

    let report = match result {
        Ok(r) => r,
        Err(Error::Load(boot::loader::LoadError::Image(e))) => {
            eprintln!("trapbox: boot: {}: {e}", a.kernel.display());
            return Ok(diagnose::REFUSED);
        }
        Err(e) if e.is_refusal() => {
            eprintln!("trapbox: boot: {e}");
            return Ok(diagnose::REFUSED);
        }
        Err(e) => return Err(anyhow::Error::new(e).context("boot")),
    };
    // Console output may have left the cursor mid-line.
    let sep = if report.last_lines.is_empty() { "" } else { "\n" };
    eprintln!("{sep}trapbox: boot: {}", report.outcome);
    if let Outcome::Panic(_) | Outcome::TripleFault(_) = report.outcome {
        for l in report.last_lines.iter().rev().take(3).rev() {
            eprintln!("trapbox: boot:   console: {l}");
        }
    }
    let ms = |d: Option<Duration>| d.map_or("none".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
    if a.time {
        let init = match report.init_output {
            Some(_) => ms(report.init_output),
            None => "not seen (no \"Run ... as init process\" line: `quiet` or loglevel<7 hides it)".to_string(),
        };
        eprintln!(
            "trapbox: boot: time from VM creation: first console byte {}, init's first output {}, end {}",
            ms(report.first_output),
            init,
            ms(Some(report.elapsed))
        );
        let e = report.exits;
        let all = report.kvm_exits.map_or(String::new(), |n| format!("; {n} in all (KVM debugfs)"));
        eprintln!(
            "trapbox: boot: VM exits: {} to trapbox (port I/O {}, MMIO {}, other {}){all}",
            e.total(),
            e.io,
            e.mmio,
            e.other
        );
    }
    if a.verbose {
        let p = &report.plan;
        eprintln!(
            "trapbox: boot: kernel at {:#x} (entry {:#x}, up to {:#x}), initrd {}, {} vCPU(s), {} MiB, cmdline {:?}",
            p.kernel_addr,
            p.entry(),
            p.kernel_end,
            p.initrd.map_or("none".into(), |(a, s)| format!("at {a:#x}, {s} bytes")),
            p.cpus,
            p.mem_size >> 20,
            p.cmdline
        );
        if !report.absent_ports.is_empty() {
            let ports: Vec<String> = report.absent_ports.iter().map(|(p, n)| format!("{p:#x}×{n}")).collect();
            eprintln!("trapbox: boot: ports with no device: {}", ports.join(" "));
        }
    }
    Ok(report.outcome.exit_status())
}
