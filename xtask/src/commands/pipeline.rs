//! `cargo xtask patch-and-test`: inputs -> artifacts -> guest campaign ->
//! report. Each stage is a function with a typed result; the work itself
//! lives in the modules each stage calls.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use contract::config::{Aio, Cache, Iothread};
use contract::params::Fault;
use contract::{
    controllers, Config, Controller, Guest, GuestSet, ModeSet, Params, Think, Workload,
};

use crate::at_once::Request;
use crate::campaign::{self, Campaign, CampaignPlan};
use crate::cases::NamedReport;
use crate::guest::{self, AccelChoice, Netdev};
use crate::guests::{self, GuestPlan};
use crate::kernel::KernelSource;
use crate::kernel_variant::KernelPatchChoice;
use crate::outputs;
use crate::patch::{PatchChoice, BINARY, PATCHED};
use crate::provenance;
use crate::qemu::BaselineMode;
use crate::report::{self, KernelInfo, ParamsInfo, QemuInfo, Report, Skipped};
use crate::source::QemuSource;
use crate::summary::{self, Gathered, VariantSpec};
use crate::timings::Timings;
use crate::variants::{self, Artifacts, Variant};
use crate::verdict::Verdict;
use crate::{cache, deps, shipped, ui};

/// clap's parser for the contract's named enums (Think, ModeSet, Workload).
fn parse_named<T: std::str::FromStr<Err = contract::Error>>(
    s: &str,
) -> std::result::Result<T, String> {
    s.parse().map_err(|e: contract::Error| e.to_string())
}

#[derive(clap::Args, Debug)]
pub struct PatchAndTest {
    #[command(flatten)]
    pub source: QemuSource,
    /// Measure this QEMU binary alone (no tree, no patch): reports UNAFFECTED or STALL PRESENT.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["qemu_tree", "baseline", "patch", "series", "variant", "kernel_patch", "kernel_series", "kernel_variant"])]
    pub qemu_binary: Option<PathBuf>,
    /// Measure two prebuilt QEMU binaries against each other, A as the baseline
    /// (e.g. a distro package before and after an update).
    #[arg(long, num_args = 2, value_names = ["A", "B"],
          conflicts_with_all = ["qemu_tree", "qemu_binary", "baseline", "patch", "series", "variant"])]
    pub compare_binaries: Vec<PathBuf>,
    /// Measure Debian's shipped qemu-system-x86 alone, no compile: a suite
    /// (oldstable, stable, stable-backports, testing, unstable), a version
    /// as the archive lists it, or a FILE.deb. It runs on the host when the
    /// host satisfies its dependencies, else in its suite's minbase tree in
    /// the cache (`cargo xtask qemu-debs list`).
    #[arg(long, value_name = "SUITE|VERSION|FILE.deb", conflicts_with_all = ["qemu_tree", "qemu_binary", "compare_binaries", "baseline", "patch", "series", "variant", "kernel_patch", "kernel_series", "kernel_variant"])]
    pub qemu_deb: Option<String>,
    /// Measure two shipped packages against each other, A as the baseline
    /// (a distro update before and after); each as --qemu-deb takes it.
    #[arg(long, num_args = 2, value_names = ["A", "B"],
          conflicts_with_all = ["qemu_tree", "qemu_binary", "compare_binaries", "qemu_deb", "baseline", "patch", "series", "variant"])]
    pub compare_debs: Vec<String>,
    /// Run the --qemu-binary inside a Debian suite's minbase tree, as
    /// --qemu-deb runs a package the host cannot (the suite's
    /// qemu-system-x86 installed there for its libraries and data): e.g. a
    /// fix-reverted build, showing that path can find a stall.
    #[arg(long, value_name = "SUITE", requires = "qemu_binary")]
    pub suite_tree: Option<String>,
    #[command(flatten)]
    pub patches: PatchChoice,
    #[command(flatten)]
    pub kernel: KernelSource,
    #[command(flatten)]
    pub kernel_patches: KernelPatchChoice,
    /// How the baseline is made: auto = as-is for a vulnerable tree, revert-fix for a fixed one.
    #[arg(long, value_enum, default_value_t = BaselineMode::Auto)]
    pub baseline: BaselineMode,
    /// Accelerator: auto tries KVM and falls back to TCG when the guest prints nothing.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Disk controllers to attach, one disk each: comma-separated names, or
    /// `all`. The default is the fast, telling set: AHCI, which stalls
    /// without the fix, and two controls that never do (virtio-blk via
    /// ioeventfd, NVMe via a bottom half), so one boot shows stall, cure and
    /// yardstick in seconds.
    #[arg(long, value_name = "LIST", default_value = contract::controllers::DEFAULT.join(","), value_parser = controllers::parse_list)]
    pub controllers: ::std::vec::Vec<&'static Controller>,
    /// Which guests measure: linux (a guest kernel with the selftest as
    /// /init: the stall through a real guest's io_uring; under TCG its tick
    /// bounds it to ~8 ms), probe (a bare-metal guest that arms no timer:
    /// the full-size stall, 499 ms with its default --netdev hostfwd, under
    /// TCG as under KVM; drives ahci, ide, nvme and the virtio_blk and
    /// virtio_scsi rows), or both.
    #[arg(long, default_value = "both", value_parser = parse_named::<GuestSet>)]
    pub guest: GuestSet,
    /// The disks' AIO backend, as QEMU's `-drive aio=` spells it: io_uring
    /// (the bug's path), native (linux-aio; needs --cache none) or threads.
    #[arg(long, default_value = "io_uring", value_parser = parse_named::<Aio>)]
    pub aio: Aio,
    /// The disks' host cache mode (`-drive cache=`): none (O_DIRECT) or writeback.
    #[arg(long, default_value = "none", value_parser = parse_named::<Cache>)]
    pub cache: Cache,
    /// Run the disks of rows that take one (virtio_blk, virtio_scsi) in an
    /// iothread: off or on.
    #[arg(long, default_value = "off", value_parser = parse_named::<Iothread>)]
    pub iothread: Iothread,
    /// What the guest does on each disk: latency (one 4 KiB read in flight,
    /// --iterations of them), batch (the report's reproducer: --total-mb
    /// in 128 KiB reads, 16 per batch, 1 ms before each submit and after
    /// each completion; its total time decides), flush (probe: a write,
    /// then a timed cache flush) or neighbour (probe: latency reads alone,
    /// then beside a control disk kept busy with reads).
    #[arg(long, default_value = "latency", value_parser = parse_named::<Workload>)]
    pub workload: Workload,
    /// Batch workload: MiB read per disk and mode (the report read 128).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub total_mb: u32,
    /// Time budget per device and mode, seconds: a latency test stops once
    /// it has run this long with at least 10 samples (under KVM an unfixed
    /// request can take ~0.5 s; at 100 I/Os that is most of a minute).
    #[arg(long, value_name = "S", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub budget_s: u64,
    /// Probe guest: a request not complete after this long (ms) gets a wake:
    /// the probe arms a PIT one-shot, which wakes QEMU's main loop, and
    /// records that the request completed only after it (without
    /// networking nothing else ever wakes the loop).
    #[arg(long, value_name = "MS", default_value_t = Params::default().deadline_ms, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub deadline_ms: u64,
    /// Measured I/Os per device, mode and guest run [default: 100 for the
    /// linux guest, 10 for the probe, whose unfixed AHCI read costs ~0.5 s]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub iterations: Option<u32>,
    /// Baseline/patched pairs, alternated to cancel drift [default: 2 for
    /// the linux guest, 1 for the probe, whose 499 ms against 0.1 ms one
    /// round decides]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: Option<u32>,
    /// Guest wait mode: sleep in io_uring_enter, poll the CQ ring, or both
    /// (the Linux guest; the probe takes no interrupts and only polls).
    #[arg(long, default_value = "both", value_parser = parse_named::<ModeSet>)]
    pub mode: ModeSet,
    /// Idle time before each I/O in the guest, µs: the stall needs an idle main loop.
    #[arg(long, default_value_t = 2000)]
    pub think_us: u64,
    /// How the Linux guest spends the think time (the probe always spins,
    /// it arms no timer): spin (busy-wait) or sleep. Under
    /// TCG a sleeping guest wakes on a tick, just as QEMU's main loop does, so
    /// whether the stall shows is a race; spinning starts each I/O exactly the
    /// think time after the previous completion, which came on a tick, so an
    /// unfixed request waits the same (tick - think) every time.
    #[arg(long, default_value = "spin", value_parser = parse_named::<Think>)]
    pub think: Think,
    /// Write the machine-readable report here (a copy is always kept in the run's folder).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the findings as JUnit XML here: a testsuite per variant, a testcase per guest,
    /// controller and mode (failure: a regression, or a stall a QEMU patch should have cured).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write KernelCI's KCIDB JSON (schema v5.3, origin uring_idle) here: checkouts, builds
    /// and a test per controller and mode, for `kcidb-submit`.
    #[arg(long, value_name = "FILE")]
    pub kcidb: Option<PathBuf>,
    /// Write the latency CDFs (SVG) here; default: beside --json, else in the run's folder.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Run folders (console logs, traces, report) kept in the cache; older ones are deleted.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub keep_runs: u32,
    /// Do not trace QEMU's io_uring events (the host-side queue times).
    #[arg(long)]
    pub no_trace: bool,
    /// Network beside the disks, which sets how long QEMU's main loop may
    /// sleep: `hostfwd` is user networking (libslirp, a virtio-net NIC)
    /// with a TCP port forwarded from a free loopback port, as the report's
    /// ssh-reachable guests had: slirp caps each sleep at 499 ms; `user`
    /// without a forwarded port caps it at 1000 ms; `none` leaves it
    /// unbounded [default: hostfwd for the probe, none for the linux guest,
    /// whose tick ends a stall first under TCG, so its figures do not change]
    #[arg(long, value_enum)]
    pub netdev: Option<Netdev>,
    /// Never install missing Debian packages; only name them.
    #[arg(long)]
    pub no_install: bool,
    /// Probe guest, for tests: a CPU exception to raise on purpose before
    /// the first disk (ud, pf, de or df), which the run reports as a failed
    /// boot quoting the probe's `Bail out!` line.
    #[arg(long, hide = true, default_value = "none", value_parser = parse_named::<Fault>)]
    pub probe_fault: Fault,
}

impl PatchAndTest {
    /// The configuration every disk runs in (`--aio`, `--cache`, `--iothread`).
    pub fn config(&self) -> Config {
        Config {
            aio: self.aio,
            cache: self.cache,
            iothread: self.iothread,
        }
    }
}

/// The requested rows every variant's QEMU offers; the others are
/// skipped, named, and with none left the run stops.
fn offered_rows(
    wanted: &[&'static Controller],
    variants: &[Variant],
) -> Result<(Vec<&'static Controller>, Vec<Skipped>)> {
    let bins: Vec<&Path> = variants.iter().map(|v| v.binary.as_path()).collect();
    let (controllers, skipped) = campaign::offered(wanted, &bins)?;
    for s in &skipped {
        ui::warn(&format!("skipping {}: {}", s.controller, s.reason));
    }
    if controllers.is_empty() {
        bail!(
            "none of the requested controllers can be attached:\n{}",
            crate::notes::skipped_lines(&skipped)
        );
    }
    Ok((controllers, skipped))
}

impl PatchAndTest {
    pub fn run(self) -> Result<i32> {
        let mut t = Timings::default();
        self.check_json_dir()?;
        let plans = self.guest_plans()?;
        self.check_config()?;
        let kernel_sets = self.kernel_patches.sets()?;
        if !kernel_sets.is_empty() && !plans.iter().any(|p| p.guest == Guest::Linux) {
            bail!("kernel patches concern the Linux guest (the probe has no kernel): use --guest linux or both");
        }
        // Named before anything is built: a pair is named QEMU+KERNEL, and
        // a kernel variant must not take a QEMU build's name.
        let qemu_names: Vec<String> = self
            .patches
            .sets()
            .map(|v| v.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        if let Some(k) = kernel_sets
            .iter()
            .find(|k| qemu_names.contains(&k.name) || [PATCHED, BINARY].contains(&k.name.as_str()))
        {
            bail!(
                "kernel variant {} has the name of a QEMU build: give it another (--kernel-variant NAME=...)",
                k.name
            );
        }
        let s = Instant::now();
        deps::ensure(deps::PIPELINE, !self.no_install)?;
        guest::firmware_present()?;
        t.add("deps", s);

        // Fetching, unpacking and building wait for another run's guests,
        // never run beside them; released before this run's own guests.
        let building = cache::MeasureLock::builds()?;
        let s = Instant::now();
        let shipped = self.shipped()?;
        let binaries: Vec<PathBuf> = match (&self.qemu_binary, &self.suite_tree) {
            (Some(b), Some(suite)) => vec![shipped::binary_in_tree(b, suite, !self.no_install)?],
            _ => shipped.iter().map(|p| p.binary.clone()).collect(),
        };
        if !binaries.is_empty() {
            t.add("qemu_deb", s);
        }
        let (input, built) = self.request(&plans, &binaries).builds_at_once(&mut t)?;
        let info = provenance::with_packages(provenance::qemu_info(&input), &shipped);
        let Some(built) = built else {
            let tree = input.unaffected().context("nothing was built")?;
            let v = Verdict::never_stalled(tree.describe());
            println!("{}", v.line());
            let p = self.provenance(info, &plans, t);
            let doc = Report::assemble(p, &v, None);
            self.write_json(&doc)?;
            return Ok(v.kind.exit_code());
        };
        let art = variants::artifacts(&self.request(&plans, &binaries), &input, built, &mut t)?;
        let (controllers, skipped) = offered_rows(&self.controllers, &art.variants)?;
        drop(building);
        let s = Instant::now();
        let camp = self.campaign(&art, &plans, controllers)?;
        t.add("guest_runs", s);

        self.report(info, &art, skipped, &plans, camp, t)
    }

    /// The shipped packages `--qemu-deb` or `--compare-debs` name, ready
    /// to boot (none without those flags).
    fn shipped(&self) -> Result<Vec<shipped::Shipped>> {
        self.qemu_deb
            .iter()
            .chain(&self.compare_debs)
            .map(|w| shipped::prepare(w, !self.no_install))
            .collect()
    }

    /// What the run's flags ask to be built; `shipped` the binaries of
    /// `--qemu-deb` (one) or `--compare-debs` (two).
    fn request<'a>(&'a self, plans: &[GuestPlan], shipped: &'a [PathBuf]) -> Request<'a> {
        let (qemu_binary, compare_binaries) = match shipped {
            [one] => (Some(one.as_path()), &[][..]),
            [_, _] => (None, shipped),
            _ => (self.qemu_binary.as_deref(), &self.compare_binaries[..]),
        };
        Request {
            source: &self.source,
            qemu_binary,
            compare_binaries,
            patches: &self.patches,
            baseline: self.baseline,
            kernel: &self.kernel,
            kernel_patches: &self.kernel_patches,
            linux: plans.iter().any(|p| p.guest == Guest::Linux),
            probe: plans.iter().any(|p| p.guest == Guest::Probe),
            linux_controllers: plans
                .iter()
                .find(|p| p.guest == Guest::Linux)
                .map(|p| p.controllers.clone())
                .unwrap_or_default(),
            networked: plans.iter().any(|p| p.netdev != Netdev::None),
        }
    }

    /// Each guest's share of the run (`guests::plans`).
    pub fn guest_plans(&self) -> Result<Vec<GuestPlan>> {
        guests::plans(&guests::Asked {
            guests: self.guest,
            controllers: &self.controllers,
            netdev: self.netdev,
            iterations: self.iterations,
            rounds: self.rounds,
            params: Params {
                think_us: self.think_us,
                think: self.think,
                modes: self.mode,
                workload: self.workload,
                total_mb: self.total_mb,
                budget_ms: self.budget_s * 1000,
                deadline_ms: self.deadline_ms,
                fault: self.probe_fault,
                ..Params::default()
            },
        })
    }

    /// Report: tables, findings, the verdict, the JSON, the plot and the
    /// run folder's copy.
    fn report(
        &self,
        info: QemuInfo,
        art: &Artifacts,
        unoffered: Vec<Skipped>,
        plans: &[GuestPlan],
        (camp, gathered): (Campaign, Gathered),
        t: Timings,
    ) -> Result<i32> {
        let specs: Vec<VariantSpec> = art
            .variants
            .iter()
            .map(|v| VariantSpec {
                name: v.name.clone(),
                against: v.against.clone(),
                kernel: v.kernel.is_some(),
            })
            .collect();
        let s = summary::of_campaign(&camp, &gathered, plans, self.workload, &specs, unoffered);
        // Named where it is not the default: the default's report reads as
        // it always did.
        if !self.config().is_default() {
            println!("configuration of every disk: {}", self.config().name());
        }
        for pkg in info.package.iter().chain(&info.compared_package) {
            println!("{}", provenance::package_line(pkg));
        }
        print!("{}", s.text);
        let mut p = self.provenance(info, plans, t);
        p.baseline_binary = Some(art.variants[0].binary.clone());
        p.variants = art.variants[1..]
            .iter()
            .map(provenance::variant_build)
            .collect::<Result<_>>()?;
        p.kernel = art.linux.as_ref().map(|l| KernelInfo {
            // The built kernel's, unless a boot of it said otherwise.
            release: camp
                .kernel_release
                .clone()
                .unwrap_or_else(|| l.kernel.release.clone()),
            source: l.kernel.source.clone(),
            image: l.kernel.image.clone(),
            uapi: l.kernel.uapi.clone(),
            modules: l.kernel.modules.clone(),
            selftest: l.selftest.clone(),
            initramfs: l.initrd.clone(),
        });
        p.probe_image = art.probe.clone();
        let results = report::Results {
            summary: &s,
            accel: camp.accel,
            runs: gathered.runs.clone(),
            no_host_evidence: camp.no_host_evidence.clone(),
        };
        let doc = Report::assemble(p, &s.verdict, Some(results));
        self.write_json(&doc)?;
        let plot = match (&self.plot, &self.json) {
            (Some(p), _) => p.clone(),
            (None, Some(j)) => j.with_extension("svg"),
            (None, None) => camp.run_dir.join("latency.svg"),
        };
        let names: Vec<&str> = art.variants.iter().map(|v| v.name.as_str()).collect();
        let panels = crate::plot::render(&plot, &gathered.samples, &names, &self.config())?;
        println!("plot ({panels} panels): {}", plot.display());
        outputs::write_json(&camp.run_dir.join("report.json"), &doc)?;
        println!(
            "run files (console logs, QEMU traces, report.json): {}",
            camp.run_dir.display()
        );
        Ok(s.verdict.kind.exit_code())
    }

    /// The axes name a configuration the asked rows can run in.
    fn check_config(&self) -> Result<()> {
        let config = self.config();
        // The drive's options alone (an iothread is checked below: rows
        // that take none run without one).
        let drive = Config {
            iothread: Iothread::Off,
            ..config
        };
        if let Some(why) = self
            .controllers
            .iter()
            .find_map(|c| drive.not_applicable(c))
        {
            bail!(
                "--aio {} --cache {}: {why}",
                config.aio.name(),
                config.cache.name()
            );
        }
        if config.iothread == Iothread::On && !self.controllers.iter().any(|c| c.iothread) {
            bail!(
                "--iothread on: none of the asked controllers takes an iothread (virtio_blk and virtio_scsi do)"
            );
        }
        Ok(())
    }

    fn check_json_dir(&self) -> Result<()> {
        for j in self
            .json
            .iter()
            .chain(&self.plot)
            .chain(&self.junit)
            .chain(&self.kcidb)
        {
            let parent = j
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                bail!(
                    "{}: directory {} does not exist",
                    j.display(),
                    parent.display()
                );
            }
        }
        Ok(())
    }

    /// Guest runs (`campaign::run`), and what the report reads of them.
    /// A failed boot of the baseline ends the run (exit 2): nothing
    /// compares without it.
    fn campaign(
        &self,
        art: &Artifacts,
        plans: &[GuestPlan],
        controllers: Vec<&'static Controller>,
    ) -> Result<(Campaign, Gathered)> {
        let variants = crate::boots::of_variants(art, plans, self.config())?;
        let plan = CampaignPlan {
            guests: plans,
            variants,
            controllers,
            accel: self.accel,
            no_trace: self.no_trace,
            keep_runs: self.keep_runs,
            first_output: crate::accel::FIRST_OUTPUT,
        };
        let camp = campaign::run(&plan, &mut |b| {
            for n in crate::notes::of_record(b) {
                ui::info(&n);
            }
        })?;
        let base = &art.variants[0].name;
        if let Some(f) = camp
            .boots
            .iter()
            .find_map(|b| b.failure().filter(|_| b.variant == *base))
        {
            return Err(f.clone().into());
        }
        let gathered = summary::gather(&camp.boots);
        Ok((camp, gathered))
    }

    /// What the report says of the run besides its results.
    fn provenance(&self, qemu: QemuInfo, plans: &[GuestPlan], t: Timings) -> report::Provenance {
        // One name when every guest had the same network.
        let netdevs: Vec<String> = if plans
            .iter()
            .all(|p| Some(p.netdev) == plans.first().map(|f| f.netdev))
        {
            plans
                .first()
                .map(|p| p.netdev.name().to_string())
                .into_iter()
                .collect()
        } else {
            plans
                .iter()
                .map(|p| format!("{}={}", p.guest, p.netdev.name()))
                .collect()
        };
        report::Provenance {
            qemu,
            params: Some(ParamsInfo {
                iterations: self
                    .iterations
                    .unwrap_or(guests::sample_plan(Guest::Linux).iterations),
                rounds: self
                    .rounds
                    .unwrap_or(guests::sample_plan(Guest::Linux).rounds),
                think_us: self.think_us,
                think: self.think.name().into(),
                mode: self.mode.name().into(),
                guest: self.guest.name().into(),
                netdev: netdevs.join(","),
                guests: plans
                    .iter()
                    .map(|p| report::GuestParams {
                        guest: p.guest,
                        netdev: p.netdev.name().into(),
                        iterations: p.params.iterations,
                        warmup: p.params.warmup,
                        rounds: p.rounds,
                        mode: p.params.modes.name().into(),
                        controllers: p.controllers.iter().map(|c| c.name.to_string()).collect(),
                    })
                    .collect(),
                controllers: self
                    .controllers
                    .iter()
                    .map(|c| c.name.to_string())
                    .collect(),
                config: self.config(),
            }),
            timings_s: t.finish(),
            ..Default::default()
        }
    }

    /// The report's files: `--json`, `--junit`, `--kcidb`.
    fn write_json(&self, doc: &Report) -> Result<()> {
        if let Some(p) = &self.json {
            outputs::write_json(p, doc)?;
        }
        let ci = outputs::CiFiles {
            junit: self.junit.clone(),
            kcidb: self.kcidb.clone(),
        };
        ci.write(&[NamedReport {
            name: None,
            report: doc,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> PatchAndTest {
        #[derive(clap::Parser)]
        struct W {
            #[command(flatten)]
            p: PatchAndTest,
        }
        let mut all = vec!["x"];
        all.extend(args);
        <W as clap::Parser>::try_parse_from(all).unwrap().p
    }

    fn plan_of(p: &PatchAndTest, g: Guest) -> GuestPlan {
        p.guest_plans()
            .unwrap()
            .into_iter()
            .find(|x| x.guest == g)
            .unwrap()
    }

    #[test]
    fn the_deadline_follows_the_time_budget() {
        let linux = |args: &[&str]| {
            let p = options(args);
            plan_of(&p, Guest::Linux).deadline(3).as_secs_f64()
        };
        // Default: 3 disks, 2 modes, 100 I/Os at 2 ms think. Each test is
        // bounded by its 20 s budget plus 6 stalled I/Os (5 warm-up and the
        // one in flight: 23.6 s), not by 100 stalled I/Os (60.2 s); each
        // disk's write phase 65 x 0.6 s (32 writes, a flush, 32 reads).
        let d = linux(&[]);
        assert!((d - (90.0 + 6.0 * 23.612 + 3.0 * 39.0)).abs() < 0.01, "{d}");
        // A short run is bounded by its I/Os (5 warm-up and 10 measured),
        // not by the budget.
        let d = linux(&["--iterations", "10"]);
        assert!((d - (90.0 + 6.0 * 9.03 + 3.0 * 39.0)).abs() < 0.01, "{d}");
        assert!(linux(&["--budget-s", "60"]) > linux(&[]));
        // The probe: one mode, 1 warm-up and 10 measured reads, each at most
        // its 5 s deadline and the wake (5.012 s with the think time). The
        // budget (20 s) cannot cut them: a test keeps 10 samples past it.
        let p = options(&[]);
        let d = plan_of(&p, Guest::Probe).deadline(3).as_secs_f64();
        assert!(
            (d - (90.0 + 3.0 * 11.0 * 5.012 + 3.0 * 65.0 * 5.01)).abs() < 0.01,
            "{d}"
        );
        // The batch workload: 64 batches of 16 x 128 KiB, each at a stall
        // and its 17 ms of sleeps.
        let p = options(&["--workload", "batch"]);
        let d = plan_of(&p, Guest::Linux).deadline(1).as_secs_f64();
        assert!(
            (d - (90.0 + 2.0 * 64.0 * 0.617 + 65.0 * 0.6)).abs() < 0.01,
            "{d}"
        );
    }

    #[test]
    fn each_guest_gets_the_rows_it_can_drive() {
        let p = options(&[]);
        let plans = p.guest_plans().unwrap();
        // The probe first: its figure leads.
        assert_eq!(
            plans.iter().map(|x| x.guest).collect::<Vec<_>>(),
            [Guest::Probe, Guest::Linux]
        );
        let probe = &plans[0];
        assert_eq!(
            (
                probe.params.iterations,
                probe.params.warmup,
                probe.rounds,
                probe.netdev
            ),
            (10, 1, 1, Netdev::Hostfwd)
        );
        assert_eq!(probe.params.modes, ModeSet::Poll);
        let linux = &plans[1];
        assert_eq!(
            (
                linux.params.iterations,
                linux.params.warmup,
                linux.rounds,
                linux.netdev
            ),
            (100, 5, 2, Netdev::None)
        );
        // A boot's params: its disks, and the write check in round 1 only.
        let b = probe.params(&probe.controllers, 2);
        assert_eq!(b.controllers, ["ahci", "virtio_blk", "nvme"]);
        assert!(!b.write_check && probe.params(&[], 1).write_check);
        // Given flags reach both guests.
        let p = options(&["--iterations", "20", "--netdev", "user"]);
        assert!(p
            .guest_plans()
            .unwrap()
            .iter()
            .all(|x| x.params.iterations == 20 && x.netdev == Netdev::User));
        // A row the probe cannot drive: the Linux guest's alone with both,
        // a usage error naming the probe's rows with --guest probe.
        let p = options(&["--controllers", "ahci,lsi"]);
        let names = |g| {
            plan_of(&p, g)
                .controllers
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Guest::Probe), ["ahci"]);
        assert_eq!(names(Guest::Linux), ["ahci", "lsi"]);
        let e = options(&["--guest", "probe", "--controllers", "ahci,lsi"])
            .guest_plans()
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot drive lsi")
                && e.contains(
                    "ahci, ide, virtio_blk, virtio_blk_noioeventfd, \
                     virtio_scsi, virtio_scsi_noioeventfd, megasas, megasas_gen2, nvme"
                ),
            "{e}"
        );
        // The whole table with --guest probe: every row the probe drives,
        // the others left to the Linux guest (said, not refused).
        let p = options(&["--guest", "probe", "--controllers", "all"]);
        let plans = p.guest_plans().unwrap();
        assert_eq!(plans.len(), 1);
        assert_eq!(
            plans[0]
                .controllers
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>(),
            controllers::driven_by(Guest::Probe)
        );
        assert!(plans[0].cannot.iter().any(|c| c.name == "lsi"));
        // A workload the Linux selftest cannot run: the probe's alone with
        // both guests, a usage error with --guest linux.
        let p = options(&["--workload", "flush"]);
        let plans = p.guest_plans().unwrap();
        assert_eq!(
            plans.iter().map(|x| x.guest).collect::<Vec<_>>(),
            [Guest::Probe]
        );
        let e = options(&["--guest", "linux", "--workload", "neighbour"])
            .guest_plans()
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot run the neighbour workload"), "{e}");
        // With both and no row for the probe, only the Linux guest runs.
        let p = options(&["--controllers", "lsi"]);
        assert_eq!(p.guest_plans().unwrap().len(), 1);
    }
}
