//! `cargo xtask patch-and-test`: inputs -> builds -> guest runs -> parsed
//! results -> report. Each stage is another module; this one only wires
//! them in order and times them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::guest::{self, Accel, AccelChoice, AccelPicker, Boot, Exit};
use crate::kernel::KernelSource;
use crate::patch::{self, State};
use crate::qemu::{self, BaselineMode};
use crate::report::{self, Kind, Verdict};
use crate::source::QemuSource;
use crate::{cache, deps, initramfs, ktap, selftest, ui};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeChoice {
    Sleep,
    Poll,
    Both,
}

impl ModeChoice {
    /// The selftest's `uring_idle.mode` value.
    fn name(self) -> &'static str {
        match self {
            ModeChoice::Sleep => "sleep",
            ModeChoice::Poll => "poll",
            ModeChoice::Both => "both",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ThinkChoice {
    /// Busy-wait: each I/O starts at a random phase of the guest's timer tick.
    Spin,
    /// nanosleep: without high-resolution timers each I/O starts right after a tick.
    Sleep,
}

impl ThinkChoice {
    /// The selftest's `uring_idle.think` value.
    fn name(self) -> &'static str {
        match self {
            ThinkChoice::Spin => "spin",
            ThinkChoice::Sleep => "sleep",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct PatchAndTest {
    #[command(flatten)]
    pub source: QemuSource,
    /// Measure this QEMU binary alone (no tree, no patch): reports UNAFFECTED or STALL PRESENT.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["qemu_tree", "baseline"])]
    pub qemu_binary: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelSource,
    /// How the baseline is made: auto = as-is for a vulnerable tree, revert-fix for a fixed one.
    #[arg(long, value_enum, default_value_t = BaselineMode::Auto)]
    pub baseline: BaselineMode,
    /// Accelerator: auto tries KVM and falls back to TCG when the guest prints nothing.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Measured I/Os per device, mode and guest run.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub iterations: u32,
    /// Baseline/patched pairs, alternated to cancel drift.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Guest wait mode: sleep in io_uring_enter, poll the CQ ring, or both.
    #[arg(long, value_enum, default_value_t = ModeChoice::Both)]
    pub mode: ModeChoice,
    /// Idle time before each I/O in the guest, µs: the stall needs an idle main loop.
    #[arg(long, default_value_t = 2000)]
    pub think_us: u64,
    /// How the guest spends the think time. Under TCG a sleeping guest wakes on
    /// a tick, just as QEMU's main loop does, and whether the stall shows then
    /// depends on a race; spinning samples the stall over the whole tick.
    #[arg(long, value_enum, default_value_t = ThinkChoice::Spin)]
    pub think: ThinkChoice,
    /// Write the machine-readable report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Never install missing Debian packages; only name them.
    #[arg(long)]
    pub no_install: bool,
}

struct Timings(Vec<(String, f64)>);

/// What the JSON report is made of, besides the parameters and timings.
struct Doc<'a> {
    verdict: &'a Verdict,
    accel: Option<Accel>,
    qemu: serde_json::Value,
    kernel: serde_json::Value,
    rows: &'a [report::Row],
    guest_runs: &'a [serde_json::Value],
}

impl Timings {
    fn add(&mut self, stage: &str, since: Instant) {
        self.0.push((
            stage.to_string(),
            (since.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        ));
    }
}

impl PatchAndTest {
    pub fn run(self) -> Result<i32> {
        let total = Instant::now();
        let mut t = Timings(vec![]);
        if let Some(j) = &self.json {
            let parent = j
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                bail!(
                    "--json {}: directory {} does not exist",
                    j.display(),
                    parent.display()
                );
            }
        }
        let s = Instant::now();
        deps::ensure(deps::PIPELINE, !self.no_install)?;
        guest::firmware_present()?;
        t.add("deps", s);

        // Inputs: which QEMU, and what the baseline is.
        let s = Instant::now();
        // None when measuring a given --qemu-binary: no tree, no patch.
        let source = match &self.qemu_binary {
            Some(b) => {
                if !b.is_file() {
                    bail!("--qemu-binary {}: no such file", b.display());
                }
                None
            }
            None => {
                let tree = self.source.resolve()?;
                let state = patch::classify(&tree)?;
                ui::stage(&patch::summary(&tree, &state));
                if state == State::Unaffected {
                    let v = Verdict {
                        kind: Kind::Skipped,
                        line: format!("SKIPPED: QEMU {} has no aio_add_sqe() and never had the stall: nothing to verify", tree.describe()),
                    };
                    println!("{}", v.line);
                    let doc = Doc {
                        verdict: &v,
                        accel: None,
                        qemu: json!({"version": tree.version, "state": state.name()}),
                        kernel: json!(null),
                        rows: &[],
                        guest_runs: &[],
                    };
                    self.write_json(doc, &t, total)?;
                    return Ok(v.kind.exit_code());
                }
                let baseline = self.baseline.resolve(&state)?;
                Some((tree, state, baseline))
            }
        };
        t.add("qemu_source", s);

        // Builds: guest kernel, selftest against its uapi, initramfs, QEMU.
        let s = Instant::now();
        ui::stage("guest kernel");
        let kernel = self.kernel.resolve()?;
        t.add("kernel", s);
        let s = Instant::now();
        ui::stage(&format!(
            "selftest (static, uapi from {})",
            kernel
                .uapi
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the system headers".into())
        ));
        let st = selftest::build(kernel.uapi.as_deref())?;
        ui::info(&format!(
            "selftest {} ({:.1} s)",
            st.binary.display(),
            st.build_s
        ));
        t.add("selftest", s);
        let s = Instant::now();
        let initrd = initramfs::pack(&st.binary, &kernel.modules)?;
        ui::info(&format!("initramfs {}", initrd.display()));
        t.add("initramfs", s);
        let s = Instant::now();
        let binaries: Vec<(&str, PathBuf)> = match &source {
            Some((tree, _, baseline)) => {
                ui::stage(&format!(
                    "QEMU {} (baseline {}, then patched)",
                    tree.describe(),
                    baseline.name()
                ));
                let built = qemu::build_pair(tree, *baseline)?;
                vec![("baseline", built.baseline), ("patched", built.patched)]
            }
            None => vec![("binary", self.qemu_binary.clone().expect("checked above"))],
        };
        t.add("qemu_build", s);

        // Guest runs, alternating variants round by round.
        let modes = self.mode.name();
        let tests_per_run = 3 * (if self.mode == ModeChoice::Both { 2 } else { 1 });
        // A hang guard, not a performance bound: boot, then every I/O at its
        // think time plus a full KVM-sized stall.
        let deadline = Duration::from_secs(90)
            + Duration::from_micros(
                (self.think_us + 600_000) * u64::from(self.iterations) * tests_per_run as u64,
            );
        let run_dir = cache::dir("runs")?.join(format!("{}-{}", std::process::id(), total_stamp()));
        let s = Instant::now();
        let mut picker = AccelPicker::new(self.accel)?;
        let mut collected = BTreeMap::new();
        let mut kernel_release = kernel.release.clone();
        let mut guest_runs = Vec::new();
        for round in 1..=self.rounds {
            for (variant, qemu_bin) in &binaries {
                let label = format!("{variant}-r{round}");
                ui::stage(&format!(
                    "guest run {label} ({})",
                    picker.decided().map(Accel::name).unwrap_or("probing kvm")
                ));
                let boot = Boot {
                    qemu: qemu_bin.clone(),
                    kernel: kernel.image.clone(),
                    initrd: initrd.clone(),
                    params: vec![
                        "uring_idle.expect=3".into(),
                        format!("uring_idle.mode={modes}"),
                        format!("uring_idle.iterations={}", self.iterations),
                        format!("uring_idle.think_us={}", self.think_us),
                        format!("uring_idle.think={}", self.think.name()),
                        "uring_idle.write=1".into(),
                    ],
                    dir: run_dir.clone(),
                    deadline,
                };
                let (run, accel) = picker.boot(&boot, &label)?;
                let Exit::Reported(code) = run.exit else {
                    unreachable!("picker returns reported runs")
                };
                let parsed = ktap::parse_file(&run.console)?;
                if code == 4 {
                    bail!("the selftest skipped every test in the guest (no io_uring in the guest kernel?); console log {}", run.console.display());
                }
                if let Some(bad) = parsed
                    .records
                    .iter()
                    .find(|r| r.mode == "integrity" && !r.ok)
                {
                    bail!(
                        "data integrity check failed in {label} on {}: {}; console log {}",
                        bad.device,
                        bad.reason.clone().unwrap_or_default(),
                        run.console.display()
                    );
                }
                let transports: std::collections::BTreeSet<&str> = parsed
                    .records
                    .iter()
                    .map(|r| r.transport.as_str())
                    .collect();
                for want in ["ahci", "virtio_blk", "nvme"] {
                    if !transports.contains(want) {
                        bail!(
                            "the guest found no {want} disk ({label}); console log {}",
                            run.console.display()
                        );
                    }
                }
                if let Some(k) = &parsed.kernel_release {
                    kernel_release = k.clone();
                }
                report::collect(&mut collected, &parsed.records, *variant == "patched");
                ui::info(&format!(
                    "{label}: {:.1} s wall, KTAP after {:.1} s, guest status {code}",
                    run.elapsed.as_secs_f64(),
                    run.to_ktap.map(|d| d.as_secs_f64()).unwrap_or(0.0)
                ));
                guest_runs.push(json!({
                    "label": label, "accel": accel.name(), "wall_s": run.elapsed.as_secs_f64(),
                    "boot_to_ktap_s": run.to_ktap.map(|d| d.as_secs_f64()), "guest_exit": code,
                    "console_log": run.console,
                }));
            }
        }
        let accel = picker.decided().unwrap_or(Accel::Tcg);
        t.add("guest_runs", s);

        // Report.
        let rows = report::rows(&collected);
        let verdict = if binaries.len() == 2 {
            report::verdict_pair(&rows, accel)
        } else {
            report::verdict_single(&rows, accel)
        };
        println!();
        println!("{}", report::table(&rows));
        println!();
        println!("{}", report::expected(accel));
        println!("{}", verdict.line);
        let qemu_json = match &source {
            Some((tree, state, b)) => json!({
                "version": tree.version, "debian_version": tree.debian_version, "tree": tree.root,
                "state": state.name(), "baseline": b.name(),
            }),
            None => json!({"binary": self.qemu_binary, "state": "binary", "baseline": null}),
        };
        let kernel_json = json!({
            "release": kernel_release, "source": kernel.source, "image": kernel.image, "uapi": kernel.uapi,
            "modules": kernel.modules, "selftest": st.binary, "initramfs": initrd,
        });
        let doc = Doc {
            verdict: &verdict,
            accel: Some(accel),
            qemu: qemu_json,
            kernel: kernel_json,
            rows: &rows,
            guest_runs: &guest_runs,
        };
        self.write_json(doc, &t, total)?;
        Ok(verdict.kind.exit_code())
    }

    fn write_json(&self, d: Doc, t: &Timings, total: Instant) -> Result<()> {
        let Some(path) = &self.json else {
            return Ok(());
        };
        let devices: Vec<serde_json::Value> = d
            .rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "transport": r.transport, "mode": r.mode,
                    "baseline": r.baseline, "patched": r.patched, "p50_ratio": r.ratio(),
                    "baseline_round_p50_us": r.baseline_round_p50_us, "patched_round_p50_us": r.patched_round_p50_us,
                })
            })
            .collect();
        let mut timings: serde_json::Map<String, serde_json::Value> =
            t.0.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        timings.insert(
            "total".into(),
            json!((total.elapsed().as_secs_f64() * 100.0).round() / 100.0),
        );
        let doc = json!({
            "verdict": d.verdict.kind, "verdict_line": d.verdict.line, "exit_code": d.verdict.kind.exit_code(),
            "accel": d.accel.map(Accel::name), "expected": d.accel.map(report::expected),
            "qemu": d.qemu, "kernel": d.kernel, "devices": devices, "guest_runs": d.guest_runs,
            "params": {
                "iterations": self.iterations, "rounds": self.rounds, "think_us": self.think_us,
                "think": self.think.name(),
            },
            "timings_s": timings,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

fn total_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
