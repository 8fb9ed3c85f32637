//! PID 1 in a guest: mount the pseudo filesystems, load the modules shipped
//! in the initramfs, wait for the disks, run, report the result to the host
//! and power off. Nothing here may return or panic: every error becomes a
//! KTAP `Bail out!` and a power-off with a failing status.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use contract::exit::{self, DEBUG_EXIT_PORT};
use contract::{BootPhases, Params, MODULE_LIST};

use crate::devices::{self, Target};
use crate::run::{self, boottime_ms};
use crate::KSFT_FAIL;
use contract::ktap;

pub fn main() -> ! {
    std::panic::set_hook(Box::new(|info| {
        println!("{}", ktap::bail_out(&format!("selftest panicked: {info}")));
        power_off(KSFT_FAIL)
    }));
    let kernel_ms = boottime_ms();
    let code = match setup(kernel_ms) {
        Ok((params, found, boot)) => {
            let code = run::run(
                &found.targets,
                &found.missing,
                &params,
                Some(boot),
                &mut run::Console::new(std::io::stdout()),
            );
            // The clock can change under a run: the kernel replaces
            // tsc-early once it has refined the TSC, and drops to jiffies if
            // it cannot trust the TSC then. Samples read across that are void.
            match clocksource() {
                Ok(_) => code,
                Err(e) => {
                    println!(
                        "{}",
                        ktap::bail_out(&format!("{e:#} (it changed during the run)"))
                    );
                    KSFT_FAIL
                }
            }
        }
        Err(e) => {
            println!("{}", ktap::header());
            println!("{}", ktap::bail_out(&format!("{e:#}")));
            KSFT_FAIL
        }
    };
    power_off(code)
}

fn setup(kernel_ms: f64) -> Result<(Params, Found, BootPhases)> {
    for (src, dir, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        mount(src, dir, fstype)?;
    }
    let cmdline = fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let params = Params::from_cmdline(&cmdline).context("kernel command line")?;
    let clocksource = clocksource()?;
    let mounted = boottime_ms();
    if Path::new(MODULE_LIST).exists() {
        load_modules(Path::new(MODULE_LIST))?;
    }
    let loaded = boottime_ms();
    let targets = wait_for_disks(&params)?;
    let boot = BootPhases {
        kernel_ms,
        mounts_ms: mounted - kernel_ms,
        modules_ms: loaded - mounted,
        disks_ms: boottime_ms() - loaded,
        header_ms: 0.0,
        clocksource,
    };
    Ok((params, targets, boot))
}

/// The clock every latency is read from. A kernel that found no fine
/// clocksource (no HPET, ACPI PM timer or usable TSC) counts in jiffies:
/// every fast read would measure 0 and every stalled one a whole tick.
fn clocksource() -> Result<String> {
    const CURRENT: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    let name = fs::read_to_string(CURRENT)
        .with_context(|| format!("reading {CURRENT}"))?
        .trim()
        .to_string();
    // x86 falls back to refined-jiffies, others to jiffies: tick-stepped both.
    if name.contains("jiffies") {
        bail!("the guest kernel's clock is jiffies (one step per timer tick): latencies cannot be measured; build it with a fine clocksource (CONFIG_ACPI for the HPET and the ACPI PM timer, or a TSC it trusts)");
    }
    Ok(name)
}

fn mount(src: &str, dir: &str, fstype: &str) -> Result<()> {
    let _ = fs::create_dir_all(dir);
    let c = |s: &str| CString::new(s).expect("no NUL in a constant");
    let (s, d, t) = (c(src), c(dir), c(fstype));
    // SAFETY: valid NUL-terminated strings; no mount data.
    let r = unsafe { libc::mount(s.as_ptr(), d.as_ptr(), t.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        // devtmpfs may already be mounted by CONFIG_DEVTMPFS_MOUNT.
        if e.raw_os_error() != Some(libc::EBUSY) {
            bail!("mount {fstype} on {dir}: {e}");
        }
    }
    Ok(())
}

/// Loads each listed module with finit_module(2); compressed modules are
/// handed to the kernel to decompress.
fn load_modules(list: &Path) -> Result<()> {
    const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;
    let text = fs::read_to_string(list).with_context(|| format!("reading {}", list.display()))?;
    for path in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let file = fs::File::open(path).with_context(|| format!("opening module {path}"))?;
        let compressed = [".xz", ".zst", ".gz"].iter().any(|s| path.ends_with(s));
        let flags = if compressed {
            MODULE_INIT_COMPRESSED_FILE
        } else {
            0
        };
        let params = CString::default();
        use std::os::unix::io::AsRawFd;
        // SAFETY: a valid fd and an empty parameter string.
        let r = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                file.as_raw_fd(),
                params.as_ptr(),
                flags,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                bail!("finit_module {path}: {e}");
            }
        }
    }
    Ok(())
}

/// The disks to measure, and the requested controllers whose disk never
/// appeared, each with the reason (reported as skipped tests).
struct Found {
    targets: Vec<Target>,
    missing: Vec<(String, String)>,
}

/// Disk probing is asynchronous (SCSI scan, USB enumeration, NVMe reset
/// work): wait until every requested controller has its disk. One that
/// never shows up is skipped with the reason, the rest are measured. With
/// no controllers requested, any disk will do.
fn wait_for_disks(p: &Params) -> Result<Found> {
    let deadline = Instant::now() + Duration::from_millis(p.settle_ms);
    let by_slot = !p.controllers.is_empty();
    loop {
        let found = devices::discover(Path::new("/sys"), Path::new("/dev"), by_slot)?;
        let missing: Vec<&str> = p
            .controllers
            .iter()
            .filter(|c| !found.iter().any(|t| &t.controller == *c))
            .map(String::as_str)
            .collect();
        if by_slot && missing.is_empty() {
            return Ok(Found {
                targets: devices::in_table_order(found, &p.controllers),
                missing: vec![],
            });
        }
        if !by_slot && !found.is_empty() {
            return Ok(Found {
                targets: found,
                missing: vec![],
            });
        }
        let targets = devices::in_table_order(found.clone(), &p.controllers);
        if Instant::now() >= deadline && !targets.is_empty() {
            let why = format!(
                "no disk appeared within {} ms: the guest kernel cannot drive this controller (driver not built in, or its module not loaded)",
                p.settle_ms
            );
            return Ok(Found {
                targets,
                missing: missing
                    .iter()
                    .map(|m| (m.to_string(), why.clone()))
                    .collect(),
            });
        }
        if Instant::now() >= deadline {
            let names: Vec<_> = found.iter().map(|t| t.name.as_str()).collect();
            bail!(
                "no disk after {} ms for {}; found {}; is the driver for each controller built in or shipped as a module?",
                p.settle_ms,
                if missing.is_empty() { "any controller".to_string() } else { missing.join(", ") },
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Flushes, reports `code` through isa-debug-exit when QEMU has one, and
/// otherwise powers off.
pub fn power_off(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    // SAFETY: plain system calls; port I/O only after ioperm granted it.
    unsafe {
        libc::sync();
        #[cfg(target_arch = "x86_64")]
        if libc::ioperm(libc::c_ulong::from(DEBUG_EXIT_PORT), 1, 1) == 0 {
            std::arch::asm!("out dx, al", in("dx") DEBUG_EXIT_PORT, in("al") exit::encode(code), options(nomem, nostack));
        }
        libc::reboot(libc::RB_POWER_OFF);
        loop {
            libc::pause();
        }
    }
}
