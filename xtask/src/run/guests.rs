//! The two guest kinds, each in one place: how QEMU boots it, which
//! controllers it can drive, its sample plan and its default network, and
//! what it is expected to show. Everything else (the boot itself, KTAP,
//! records, trace pairing, findings, verdict) is the same for both: they
//! speak one contract (`contract::Params` in, KTAP with `Record`s out, the
//! verdict through isa-debug-exit).
//!
//! - `linux`: a built (or distro) kernel with the static selftest as
//!   `/init`. Under TCG its timer tick is a QEMU timer that wakes the main
//!   loop, so an unfixed request waits at most a tick (8 ms at HZ=100).
//! - `probe`: the bare-metal `probe/` crate as QEMU's `-bios`. It arms no
//!   timer, so only QEMU's own timers wake the main loop, as under KVM: an
//!   unfixed AHCI request waits the full main-loop sleep (499 ms with a
//!   forwarded port, ~1000 ms with plain user networking, for ever with
//!   none, until the probe's own deadline wake).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use contract::{controllers, Controller, Guest, GuestSet, Params, Think, Workload};

use crate::guest::{Accel, Netdev};
use crate::qemu_args;
use crate::ui;

/// What QEMU boots.
#[derive(Clone, Debug)]
pub enum GuestImage {
    Linux { kernel: PathBuf, initrd: PathBuf },
    Probe { bios: PathBuf },
}

/// Firmware and option ROMs of the Linux guest: the +ds QEMU build ships
/// none; Debian's qemu-system-data has qboot (SeaBIOS costs ~30 s of TCG
/// boot time).
pub const DATA_DIR: &str = "/usr/share/qemu";
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

impl GuestImage {
    pub fn guest(&self) -> Guest {
        match self {
            GuestImage::Linux { .. } => Guest::Linux,
            GuestImage::Probe { .. } => Guest::Probe,
        }
    }

    /// How QEMU starts this guest and hands it `params`.
    pub fn boot_args(&self, params: &Params, accel: Accel) -> Vec<OsString> {
        match self {
            // loglevel=6 keeps NOTICE (the banner) and quiets INFO chatter
            // that would interleave with KTAP; panic=-1 turns a dead init
            // into an exit.
            GuestImage::Linux { kernel, initrd } => vec![
                "-bios".into(),
                QBOOT.into(),
                "-L".into(),
                DATA_DIR.into(),
                "-kernel".into(),
                kernel.into(),
                "-initrd".into(),
                initrd.into(),
                "-append".into(),
                format!(
                    "console=ttyS0 loglevel=6 panic=-1{} {}",
                    qemu_args::clock_args(accel),
                    params.to_cmdline().join(" ")
                )
                .into(),
            ],
            // No firmware at all: the image is the reset vector. Its words
            // are the same `uring_idle.KEY=VALUE` as the kernel command
            // line's; a comma in an option value is doubled for QEMU.
            GuestImage::Probe { bios } => {
                let mut params = params.clone();
                if accel == Accel::Tcg {
                    params.tsc_khz = qemu_args::host_tsc_khz().unwrap_or(0);
                }
                let mut fw_cfg =
                    OsString::from(format!("name={},string=", contract::params::FW_CFG_FILE));
                fw_cfg.push(params.to_cmdline().join(" ").replace(',', ",,"));
                let mut a = vec!["-bios".into(), bios.into(), "-fw_cfg".into(), fw_cfg];
                // Under KVM the PIT is the host kernel's (kvm-pit) unless the
                // irqchip is split: the probe's deadline wake must be a timer
                // of QEMU's own main loop, as it is under TCG. (QEMU applies
                // this to its KVM accelerator; untested here: this host's
                // nested kvm-pvm boots no probe.)
                if accel == Accel::Kvm {
                    a.extend(["-machine".into(), "kernel-irqchip=split".into()]);
                }
                a
            }
        }
    }
}

/// The network a guest kind gets when `--netdev` is not given. The probe's
/// is the report's setting (an ssh-reachable guest: a forwarded port caps
/// QEMU's main-loop sleep at 499 ms); the Linux guest's stays none, which
/// under TCG shows the same tick-bounded figures (measured) and boots no NIC.
pub fn default_netdev(guest: Guest) -> Netdev {
    match guest {
        Guest::Linux => Netdev::None,
        Guest::Probe => Netdev::Hostfwd,
    }
}

/// Samples per device and mode, and rounds, when not given. The Linux guest
/// stalls at most a tick under TCG, so 100 reads cost under a second. The
/// probe's unfixed AHCI read costs the full ~0.5 s main-loop sleep: 10
/// measured reads (`BUDGET_MIN_SAMPLES`, enough for a p50) after one
/// discarded warm-up read (the first request after the probe stopped its
/// timers waits only the rest of a main-loop cycle) take ~5.5 s, once: a
/// 499 ms stall against a 0.1 ms cure is a ~5000x gap that one round decides
/// (every baseline sample sat within 0.1% of slirp's cap in the prototype).
pub struct SamplePlan {
    pub iterations: u32,
    pub warmup: u32,
    pub rounds: u32,
}

pub fn sample_plan(guest: Guest) -> SamplePlan {
    match guest {
        Guest::Linux => SamplePlan {
            iterations: 100,
            warmup: Params::default().warmup,
            rounds: 2,
        },
        Guest::Probe => SamplePlan {
            iterations: contract::BUDGET_MIN_SAMPLES as u32,
            warmup: 1,
            rounds: 1,
        },
    }
}

/// The longest one unfixed request can wait in this guest, µs, for the
/// host's hang guard. The Linux guest's is a KVM-sized stall (0.6 s: the
/// reported ~0.5 s and some; under TCG a tick); the probe wakes QEMU itself
/// at its deadline, and the wake lands within a few ms.
pub fn stall_bound_us(guest: Guest, params: &Params) -> u64 {
    match guest {
        Guest::Linux => 600_000,
        Guest::Probe => params.deadline_ms * 1000 + 10_000,
    }
}

/// Which wait modes a guest measures of those asked: the probe takes no
/// interrupts, so it only polls.
pub fn modes(guest: Guest, asked: contract::ModeSet) -> contract::ModeSet {
    match guest {
        Guest::Linux => asked,
        Guest::Probe => contract::ModeSet::Poll,
    }
}

/// One guest kind's share of a run: the kind's defaults under the user's
/// flags.
pub struct GuestPlan {
    pub guest: Guest,
    /// The requested rows this guest drives.
    pub controllers: Vec<&'static Controller>,
    /// The requested rows it cannot drive (the other guest measures them).
    pub cannot: Vec<&'static Controller>,
    pub netdev: Netdev,
    /// What every boot of this guest is asked, but its disks and whether it
    /// runs the write check.
    pub params: Params,
    pub rounds: u32,
}

/// What the user asked of every guest: `None` where the guest kind decides.
pub struct Asked<'a> {
    pub guests: GuestSet,
    pub controllers: &'a [&'static Controller],
    pub netdev: Option<Netdev>,
    pub iterations: Option<u32>,
    pub rounds: Option<u32>,
    /// The rest of the flags, as the guests are asked them.
    pub params: Params,
}

/// Each guest's share: the rows it can drive, its network and sample plan.
/// `--guest probe` with a row the probe cannot drive is a usage error
/// naming the rows it can, unless the whole table was asked (`--controllers
/// all`): then the guest runs every row it drives and says which it leaves
/// out. With both guests such a row is the Linux guest's alone, and the
/// output says so.
pub fn plans(asked: &Asked) -> Result<Vec<GuestPlan>> {
    let whole_table = asked.controllers.len() == controllers::CONTROLLERS.len();
    let mut plans = Vec::new();
    for &g in asked.guests.guests() {
        let w = asked.params.workload;
        if !w.runs_on(g) {
            let why = format!("the {g} guest cannot run the {w} workload (the probe runs it)");
            if asked.guests.guests().len() == 1 {
                bail!("--guest {g}: {why}; use --guest probe or both");
            }
            ui::info(&format!("{why}: only the probe guest measures it"));
            continue;
        }
        let (drives, cannot): (Vec<&'static Controller>, Vec<&'static Controller>) =
            asked.controllers.iter().partition(|c| c.drives(g));
        if !cannot.is_empty() {
            let names: Vec<&str> = cannot.iter().map(|c| c.name).collect();
            let why = format!(
                "the {g} guest cannot drive {} (it drives {})",
                names.join(", "),
                controllers::driven_by(g).join(", ")
            );
            if asked.guests.guests().len() == 1 {
                if !whole_table {
                    bail!("--guest {g}: {why}; use --guest linux or both for the others");
                }
                ui::info(&format!(
                    "--controllers all: {why}; --guest linux or both measures the others"
                ));
            } else {
                ui::info(&format!("{why}: only the other guest measures them"));
            }
        }
        if drives.is_empty() {
            continue;
        }
        let plan = sample_plan(g);
        plans.push(GuestPlan {
            guest: g,
            controllers: drives,
            cannot,
            netdev: asked.netdev.unwrap_or(default_netdev(g)),
            params: Params {
                iterations: asked.iterations.unwrap_or(plan.iterations),
                warmup: plan.warmup,
                modes: modes(g, asked.params.modes),
                ..asked.params.clone()
            },
            rounds: asked.rounds.unwrap_or(plan.rounds),
        });
    }
    Ok(plans)
}

impl GuestPlan {
    /// What the guest of `round` is asked to do, one disk per controller.
    /// The integrity check runs in the first round only: data correctness
    /// does not change between boots of a binary.
    pub fn params(&self, ctrls: &[&Controller], round: u32) -> Params {
        Params {
            write_check: round == 1,
            controllers: ctrls.iter().map(|c| c.name.to_string()).collect(),
            ..self.params.clone()
        }
    }

    /// A hang guard for one boot, consistent with the time budget: 90 s to
    /// boot, then per test its warm-up and its measured I/Os at the guest's
    /// longest unfixed stall each (`stall_bound_us`: 0.6 s for the Linux
    /// guest, the deadline wake for the probe), the measured ones cut at the
    /// budget plus the one in flight (but never below the samples a test
    /// keeps past it), and per disk its write phase (the writes, a flush,
    /// the reads back) at that stall each.
    pub fn deadline(&self, disks: usize) -> Duration {
        let p = &self.params;
        let stall_us = stall_bound_us(self.guest, p);
        let per_io = p.think_us + stall_us;
        let min_kept = per_io * contract::BUDGET_MIN_SAMPLES as u64;
        let measured =
            (per_io * u64::from(p.iterations)).min((p.budget_ms * 1000 + per_io).max(min_kept));
        let reads = per_io * u64::from(p.warmup) + measured;
        let per_test = match p.workload {
            Workload::Latency => reads,
            // Each flush follows a write, which can stall as long.
            Workload::Flush => 2 * reads,
            // Alone, then beside the neighbour.
            Workload::Neighbour => 2 * reads,
            // Every batch at a stall, and its sleeps: 1 before the submit,
            // 1 after each completion.
            Workload::Batch => {
                let batches = (u64::from(p.total_mb) * 1024)
                    .div_ceil(u64::from(p.chunk_kb) * u64::from(p.batch));
                let sleeps = p.submit_sleep_us + u64::from(p.batch) * p.completion_sleep_us;
                batches * (stall_us + sleeps)
            }
        };
        let tests = (disks * p.modes.modes().len()) as u64;
        let write_phase = 2 * u64::from(p.write_blocks) + 1;
        Duration::from_secs(90)
            + Duration::from_micros(per_test * tests + disks as u64 * write_phase * stall_us)
    }

    /// What this guest should show under `accel`.
    pub fn expected(&self, accel: Accel) -> String {
        expected(
            self.guest,
            accel,
            self.netdev,
            self.params.think,
            self.params.think_us,
        )
    }
}

/// What this guest should show under `accel` with `netdev`, measured.
pub fn expected(guest: Guest, accel: Accel, netdev: Netdev, think: Think, think_us: u64) -> String {
    match (guest, accel) {
        (Guest::Linux, Accel::Tcg) => {
            let tail = match think {
                Think::Spin => {
                    // The next I/O starts `think` after a completion that came
                    // on a tick, so it waits for the rest of the tick period.
                    let wait = |tick_us: u64| (tick_us - think_us % tick_us) as f64 / 1000.0;
                    format!(
                        "the guest spins {:.1} ms after each completion, which came on a tick, so an unfixed request \
                         waits the rest of the tick: ~{:.1} ms with the HZ=100 guest kernel (~{:.1} ms with a HZ=250 \
                         distro kernel)",
                        think_us as f64 / 1000.0,
                        wait(10_000),
                        wait(4_000)
                    )
                }
                Think::Sleep => "the guest sleeps between I/Os and wakes on a tick, just as the main loop does, so \
                                 how long an unfixed request waits varies from boot to boot (0 to one tick period)"
                    .to_string(),
            };
            format!(
                "expected of the linux guest under TCG: every guest timer tick wakes QEMU's main loop, which then \
                 submits a stuck SQE; {tail}; fixed, well under 1 ms like the controls"
            )
        }
        (Guest::Linux, Accel::Kvm) => "expected of the linux guest under KVM: guest timers live in the host kernel and QEMU's \
                       main loop sleeps until its own timers, so unfixed requests on affected controllers stall up to \
                       ~500 ms (the reported 50-80x)"
            .to_string(),
        (Guest::Probe, a) => format!(
            "expected of the probe guest (no guest timer armed; {}): QEMU's main loop sleeps until its own timers, so an \
             unfixed AHCI request waits {}; fixed ~0.1 ms; the controls well under 1 ms in both",
            match a {
                Accel::Tcg => "under TCG as under KVM",
                Accel::Kvm => "KVM",
            },
            match netdev {
                Netdev::Hostfwd => format!(
                    "the rest of the 499 ms sleep that slirp allows with a TCP socket open (the report's 499 ms), \
                     which began at the previous completion: ~{:.0} ms after a {:.1} ms think time",
                    499.0 - think_us as f64 / 1000.0,
                    think_us as f64 / 1000.0
                ),
                Netdev::User => "the rest of the 1000 ms sleep that slirp allows without a TCP socket".to_string(),
                Netdev::None => "for ever: nothing bounds the sleep, so each waits for the probe's own wake at its deadline"
                    .to_string(),
            }
        ),
    }
}

/// What the batch workload's total should be for this guest, against the
/// report's 25.76 s.
pub fn batch_expected(guest: Guest, accel: Accel) -> &'static str {
    match (guest, accel) {
        (Guest::Linux, Accel::Tcg) => {
            "expected of the linux guest under TCG: an unfixed batch waits for the next guest tick (<= 10 ms) before \
             its reads are submitted, and with the 1 ms sleeps spun a batch lasts about two ticks, so it lands near \
             the next one: a few ms per batch, a few % of the total. The host trace shows the wait per read; the \
             probe guest (or KVM) shows the report's total"
        }
        (Guest::Linux, Accel::Kvm) => {
            "expected of the linux guest under KVM: each unfixed batch waits for QEMU's main loop, up to ~500 ms (the \
             report: 25.76 s for 64 batches); fixed, the total is the sleeps and the transfers"
        }
        (Guest::Probe, _) => {
            "expected of the probe guest: each unfixed batch waits for QEMU's main loop, ~0.5 s with a forwarded port \
             (measured 32.00 s for 64 batches, against the report's 25.76 s); fixed, the total is the spun sleeps and \
             the transfers (measured 1.12 s)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_gets_its_params_through_fw_cfg_with_commas_doubled() {
        let p = Params {
            controllers: vec!["ahci".into(), "nvme".into()],
            ..Params::default()
        };
        let a: Vec<String> = GuestImage::Probe {
            bios: "/c/probe.bin".into(),
        }
        .boot_args(&p, Accel::Tcg)
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
        assert_eq!(a[..3], ["-bios", "/c/probe.bin", "-fw_cfg"]);
        assert!(
            a[3].starts_with("name=opt/uring-idle/params,string=uring_idle.iterations=")
                && a[3].contains("uring_idle.controllers=ahci,,nvme ")
                && !a.iter().any(|x| x == "-kernel"),
            "{a:?}"
        );
        // Under KVM the irqchip is split, so the PIT (its wake) is QEMU's.
        let kvm = GuestImage::Probe {
            bios: "/c/probe.bin".into(),
        }
        .boot_args(&p, Accel::Kvm);
        assert_eq!(kvm[4..], ["-machine", "kernel-irqchip=split"]);
        assert!(!a.iter().any(|x| x.contains("irqchip")));
        // QEMU's ",," is one comma: the probe reads back the same params.
        let words = a[3].split_once("string=").unwrap().1.replace(",,", ",");
        // Under TCG the host's TSC rate goes along; the rest is as asked.
        let back = Params::from_cmdline(&words).unwrap();
        assert_eq!(back.tsc_khz, qemu_args::host_tsc_khz().unwrap_or(0));
        assert_eq!(Params { tsc_khz: 0, ..back }, p);
    }

    #[test]
    fn each_kind_has_its_plan_and_network() {
        assert_eq!(default_netdev(Guest::Probe), Netdev::Hostfwd);
        assert_eq!(default_netdev(Guest::Linux), Netdev::None);
        let p = sample_plan(Guest::Probe);
        assert_eq!((p.iterations, p.warmup, p.rounds), (10, 1, 1));
        assert_eq!(sample_plan(Guest::Linux).iterations, 100);
        assert_eq!(
            modes(Guest::Probe, contract::ModeSet::Both),
            contract::ModeSet::Poll
        );
        let params = Params::default();
        assert_eq!(stall_bound_us(Guest::Probe, &params), 5_010_000);
    }
}
