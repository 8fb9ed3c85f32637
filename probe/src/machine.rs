//! The probe's life on the machine, from the entry code's call to the
//! isa-debug-exit write: timers off, TSC calibrated, parameters from
//! fw_cfg, controllers found and brought up, the run, the verdict.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use contract::exit::KSFT_FAIL;
use contract::params::Fault;
use contract::{controllers, BootPhases, Guest, Params, ProbeDriver};

use crate::disk::Disk;
use crate::fwcfg::{FwCfg, PARAMS_FILE};
use crate::hw::exit;
use crate::hw::{rdtsc, Clock, Mmio, PortIo, Tsc};
use crate::pci::{self, BarWindow, IoWindow, PortCam};
use crate::run::{self, Env, Target};
use crate::serial::{console, Serial};
use crate::timers::{self, PitWake};
use crate::traps;

/// TSC calibration length.
pub const CALIBRATION_MS: u64 = 50;
/// The wake-up one-shot's length.
pub const WAKE_US: u64 = 1000;

/// Guest RAM from fw_cfg (0 if fw_cfg is absent): the allocator's limit.
pub fn ram_size() -> u64 {
    let mut ports = PortIo;
    let mut fw = FwCfg { ports: &mut ports };
    if fw.present() {
        fw.ram_size()
    } else {
        0
    }
}

fn bail(out: &mut Serial, why: &str) -> ! {
    let _ = writeln!(out, "{}", contract::ktap::header());
    let _ = writeln!(out, "{}", contract::ktap::bail_out(why));
    exit(KSFT_FAIL)
}

/// Brings up one requested row: `Err` if its function is missing (a skip),
/// else a target whose disk may still have failed (a `not ok`).
fn bring_up<'c>(
    row: &str,
    clock: &'c dyn Clock,
    window: &mut BarWindow,
    io_window: &mut IoWindow,
) -> Result<Target<'c>, String> {
    let c = controllers::by_name(row).map_err(|e| e.0)?;
    let driver = c.probe.ok_or_else(|| {
        format!(
            "the probe guest has no driver for {row} (it drives {})",
            controllers::driven_by(Guest::Probe).join(", ")
        )
    })?;
    let mut cam = PortCam;
    let bdf = pci::find(&cam, c.slot, driver)?;
    let name = format!("{row}_probe");
    let path = match driver {
        ProbeDriver::Ahci => format!("pci {bdf} port 0"),
        ProbeDriver::Nvme => format!("pci {bdf} nsid 1"),
        ProbeDriver::VirtioBlk => format!("pci {bdf}"),
        ProbeDriver::Ide => format!("pci {bdf} primary device 0"),
        ProbeDriver::VirtioScsi => format!("pci {bdf} target 0 lun 0"),
        ProbeDriver::Megasas => format!("pci {bdf} logical drive 0"),
    };
    // IDE has I/O BARs only.
    if driver == ProbeDriver::Ide {
        let disk = crate::ide::open(&mut cam, bdf, io_window, PortIo, clock)
            .map(|d| Box::new(d) as Box<dyn Disk + 'c>);
        return Ok(Target {
            name,
            controller: row.into(),
            path,
            disk: disk.map_err(|e| format!("{row} at {bdf}: {e}")),
        });
    }
    let disk =
        pci::enable(&mut cam, bdf, window).and_then(|bars| -> Result<Box<dyn Disk + 'c>, String> {
            let bar =
                |i: usize| bars[i].ok_or_else(|| format!("{bdf}: BAR{i} is not a memory BAR"));
            Ok(match driver {
                ProbeDriver::Ahci => {
                    let abar = bar(5)?;
                    Box::new(crate::ahci::Ahci::new(
                        Mmio {
                            base: abar.addr as usize,
                        },
                        clock,
                    )?)
                }
                ProbeDriver::Nvme => {
                    let b = bar(0)?;
                    Box::new(crate::nvme::Nvme::new(
                        Mmio {
                            base: b.addr as usize,
                        },
                        clock,
                    )?)
                }
                ProbeDriver::VirtioBlk => Box::new(crate::virtio::VirtioBlk::open(bdf)?),
                ProbeDriver::VirtioScsi => Box::new(crate::virtio_scsi::open(bdf, clock)?),
                ProbeDriver::Megasas => {
                    // The register BAR differs between the two models.
                    let ids = pci::Ids::read(&cam, bdf).ok_or_else(|| format!("{bdf}: gone"))?;
                    let i = crate::megasas::mmio_bar(ids.device)
                        .ok_or_else(|| format!("{bdf}: not a MegaRAID SAS model ({ids})"))?;
                    Box::new(crate::megasas::Megasas::new(
                        Mmio {
                            base: bar(i)?.addr as usize,
                        },
                        clock,
                    )?)
                }
                ProbeDriver::Ide => unreachable!("brought up above"),
            })
        });
    Ok(Target {
        name,
        controller: row.into(),
        path,
        disk: disk.map_err(|e| format!("{row} at {bdf}: {e}")),
    })
}

/// Everything after the entry code; `entry_tsc`: the TSC when Rust began.
pub fn main(entry_tsc: u64) -> ! {
    let mut ports = PortIo;
    // Timers first: nothing may stay armed in QEMU's main loop.
    let pit_stopped = timers::stop_pit(&mut ports, 1 << 32);
    timers::stop_rtc(&mut ports);
    let mut out = console();
    out.init();

    let mut fw = FwCfg { ports: &mut ports };
    if !fw.present() {
        bail(&mut out, "no fw_cfg device (QEMU's signature is missing)");
    }
    let (p, explicit) = match fw.file(PARAMS_FILE) {
        Some(bytes) => match Params::from_cmdline(&String::from_utf8_lossy(&bytes)) {
            Ok(p) => (p, true),
            Err(e) => bail(&mut out, &format!("fw_cfg {PARAMS_FILE}: {e}")),
        },
        None => (Params::default(), false),
    };
    // Under TCG the TSC is the host's and the host says its rate: a 50 ms
    // calibration against the PIT read it 0.056% high here (999.0 ms in
    // QEMU's trace came out as 998.5 ms). Otherwise calibrate.
    let (khz, how) = match p.tsc_khz {
        0 => (
            timers::calibrate_tsc(&mut ports, CALIBRATION_MS),
            alloc::format!("PIT channel 2, {CALIBRATION_MS} ms"),
        ),
        k => (k, "the host's rate, from the parameters".into()),
    };
    let tsc = Tsc { khz };
    let kernel_ms = tsc.ticks_to_ns(entry_tsc) as f64 / 1e6;
    // No list: every row the probe drives whose function is there.
    let rows: Vec<String> = if p.controllers.is_empty() {
        controllers::driven_by(Guest::Probe)
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        p.controllers.clone()
    };

    if p.fault != Fault::None {
        let _ = writeln!(out, "{}", contract::ktap::header());
        let _ = writeln!(
            out,
            "{}",
            contract::ktap::diag(&format!(
                "fault={}: raising it on purpose, before the first disk",
                p.fault
            ))
        );
        traps::raise(p.fault);
    }

    let disks_start = tsc.now_ns();
    let mut window = BarWindow::new();
    let mut io_window = IoWindow::new();
    let mut targets = Vec::new();
    let mut missing = Vec::new();
    for row in &rows {
        match bring_up(row, &tsc, &mut window, &mut io_window) {
            Ok(t) => targets.push(t),
            Err(why) if !p.controllers.is_empty() => missing.push((row.clone(), why)),
            Err(_) => {}
        }
    }
    let disks_ms = (tsc.now_ns() - disks_start) as f64 / 1e6;

    let mut diags = vec![format!("tsc: {khz} kHz ({how})")];
    if !explicit {
        diags.push(format!("no fw_cfg file {PARAMS_FILE}: default parameters"));
    }
    if !pit_stopped {
        diags.push("warning: PIT channel 0's one-shot never ran out: it may still be armed".into());
    }
    let boot = BootPhases {
        kernel_ms: contract::record::round_to(kernel_ms, 100.0),
        mounts_ms: 0.0,
        modules_ms: 0.0,
        disks_ms: contract::record::round_to(disks_ms, 100.0),
        header_ms: 0.0,
        clocksource: "tsc".into(),
    };
    let mut wake_ports = PortIo;
    let mut wake = PitWake {
        ports: &mut wake_ports,
        armed: false,
        us: WAKE_US,
    };
    let mut env = Env {
        clock: &tsc,
        wake: &mut wake,
        nonce: rdtsc(),
    };
    let code = run::run(
        &mut targets,
        &missing,
        &p,
        Some(boot),
        &diags,
        &mut env,
        &mut out,
    );
    exit(code)
}
