//! A campaign: every boot of a plan (each guest in turn, round by round,
//! every variant in each round), each parsed, checked and paired with its
//! host trace, and returned as a typed outcome: measured, or failed with
//! its evidence. A failed boot never ends the campaign, unless its variant
//! is `required` (the baseline: nothing compares without it); only the
//! host's own steps (the lock, the run folder, starting QEMU, reading a
//! trace) are errors. What the boots mean (samples, notes, verdicts) is the
//! caller's to say: `patch-and-test` calls it, and so can other commands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use contract::{controllers, Controller, Guest, Mode, Params, Record};

use crate::accel::{Accel, AccelChoice, AccelPicker};
use crate::event::Sink;
use crate::failure::{BootFailure, Evidence, Failure};
use crate::guest::{Boot, Netdev, Run};
use crate::guests::{GuestImage, GuestPlan};
use crate::outcome::{GuestRun, HostDisk, HostRun, Skipped};
use crate::{cache, ktap, qemu, trace, ui};

/// One build the campaign boots: a QEMU binary and what it boots of each
/// guest.
pub struct VariantBoot {
    pub name: String,
    pub binary: PathBuf,
    /// What QEMU boots of each guest; a guest without one is not booted in
    /// this variant (the probe has no kernel, so a kernel variant is the
    /// Linux guest's alone).
    pub images: Vec<(Guest, GuestImage)>,
    /// Boots a kernel variant: a disk its guest cannot find is this
    /// variant's regression, not a skip for every variant.
    pub kernel_variant: bool,
    /// A failed boot of it ends the campaign.
    pub required: bool,
    /// The configuration its disks run in: one per variant, so a scan can
    /// boot one binary in several (a variant per configuration).
    pub config: contract::Config,
}

impl VariantBoot {
    fn image(&self, guest: Guest) -> Option<&GuestImage> {
        self.images
            .iter()
            .find(|(g, _)| *g == guest)
            .map(|(_, i)| i)
    }
}

/// What to boot and how.
pub struct CampaignPlan<'a> {
    /// Each guest's rows, parameters and rounds, in boot order.
    pub guests: &'a [GuestPlan],
    /// The order of each round's boots.
    pub variants: Vec<VariantBoot>,
    /// The requested controllers every variant's QEMU offers.
    pub controllers: Vec<&'static Controller>,
    pub accel: AccelChoice,
    /// Do not trace QEMU's io_uring events (`--no-trace`).
    pub no_trace: bool,
    /// Run folders kept in the cache, this one included.
    pub keep_runs: u32,
    /// The bound on a boot's first console byte (`accel::FIRST_OUTPUT`).
    pub first_output: Duration,
}

/// What the boots of a campaign gave.
pub struct Campaign {
    /// The accelerator the boots ran under (TCG when none booted).
    pub accel: Accel,
    /// Where this campaign's logs and traces are.
    pub run_dir: PathBuf,
    /// Why there are no host-side figures, if there are none.
    pub no_host_evidence: Option<String>,
    /// The unpatched kernel's release, as the Linux guest printed it.
    pub kernel_release: Option<String>,
    /// Rows a guest has no driver for, and controllers a guest could not
    /// drive (dropped from its later boots).
    pub skipped: Vec<Skipped>,
    /// Controllers a kernel variant's guest found no disk of, by variant.
    pub broken: Vec<(String, Skipped)>,
    /// Every boot, in the order they ran.
    pub boots: Vec<BootRecord>,
}

/// One boot of the campaign.
pub struct BootRecord {
    pub guest: Guest,
    pub variant: String,
    pub round: u32,
    pub label: String,
    /// What the guest was asked.
    pub params: Params,
    pub netdev: Netdev,
    pub outcome: BootOutcome,
}

pub enum BootOutcome {
    Measured(Box<Measured>),
    Failed(BootFailure),
}

/// A boot whose results count.
pub struct Measured {
    /// The boot's record, its host trace's summary included.
    pub run: GuestRun,
    /// The guest's records, one per test.
    pub records: Vec<Record>,
    /// Requested controllers the guest did not measure, with its reasons.
    pub skipped: Vec<Skipped>,
    /// The guest kernel's release, when it printed one.
    pub kernel_release: Option<String>,
    /// Each measured read's time queued in QEMU, from the trace.
    pub host: Vec<HostSamples>,
}

/// One disk's measured requests (reads, or flushes) in one mode and
/// workload, as QEMU's trace timed them.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSamples {
    pub controller: String,
    pub mode: Mode,
    pub workload: contract::Workload,
    pub queued_us: Vec<u32>,
}

impl BootRecord {
    pub fn failure(&self) -> Option<&BootFailure> {
        match &self.outcome {
            BootOutcome::Failed(f) => Some(f),
            BootOutcome::Measured(_) => None,
        }
    }
}

/// A boot's name: the Linux guest's labels stay as they were before there
/// was a second guest.
pub fn label(guest: Guest, variant: &str, round: u32) -> String {
    match guest {
        Guest::Linux => format!("{variant}-r{round}"),
        _ => format!("{guest}-{variant}-r{round}"),
    }
}

/// What starts QEMU for the campaign: the accelerator picker on a real
/// run; recorded boots when a test replays a run.
pub trait Boots {
    /// Boots `b` once: the run or how it failed, the accelerator it ran
    /// under, and when it started (Unix time, seconds).
    fn boot(&mut self, b: &Boot, label: &str, sink: Sink) -> Result<Booted>;
    /// The accelerator chosen, once a boot has decided it.
    fn decided(&self) -> Option<Accel>;
}

/// One boot as `Boots` gives it back.
pub struct Booted {
    pub run: std::result::Result<Run, BootFailure>,
    pub accel: Accel,
    pub started_unix_s: f64,
}

impl Boots for AccelPicker {
    fn boot(&mut self, b: &Boot, label: &str, sink: Sink) -> Result<Booted> {
        let started_unix_s = unix_now_s();
        let (run, accel) = AccelPicker::boot(self, b, label, sink)?;
        Ok(Booted {
            run,
            accel,
            started_unix_s,
        })
    }

    fn decided(&self) -> Option<Accel> {
        AccelPicker::decided(self)
    }
}

/// Splits the requested controllers into those every binary offers and
/// those some binary lacks a device type for.
pub fn offered(
    wanted: &[&'static Controller],
    binaries: &[&Path],
) -> Result<(Vec<&'static Controller>, Vec<Skipped>)> {
    let mut have = Vec::new();
    for b in binaries {
        have.push((b, qemu::device_types(b)?));
    }
    let (mut ok, mut skipped) = (Vec::new(), Vec::new());
    for c in wanted {
        let lacks: Vec<String> = have
            .iter()
            .flat_map(|(b, types)| {
                c.device_types()
                    .into_iter()
                    .filter(|t| !types.contains(*t))
                    .map(move |t| format!("{} has no {t} device", b.display()))
            })
            .collect();
        if lacks.is_empty() {
            ok.push(*c);
        } else {
            skipped.push(Skipped {
                guest: None,
                controller: c.name.to_string(),
                reason: format!("{} (-device help)", lacks.join("; ")),
            });
        }
    }
    Ok((ok, skipped))
}

/// Boots the plan. `on_boot` sees each boot as it ends (the caller's live
/// notes).
pub fn run(plan: &CampaignPlan, on_boot: &mut dyn FnMut(&BootRecord)) -> Result<Campaign> {
    // Held until every boot of this campaign is done; taken before the
    // pruning, so no other run's guests are booting from a folder it
    // deletes.
    let _quiet = cache::MeasureLock::guests()?;
    let runs = cache::dir("runs")?;
    // This run's folder is one of the kept ones.
    cache::prune(&runs, plan.keep_runs as usize - 1)?;
    let run_dir = runs.join(format!("{}-{}", std::process::id(), unix_now()));
    let traced = host_evidence(plan.no_trace, &plan.variants);
    if let Err(why) = &traced {
        ui::info(&format!("no host-side trace: {why}"));
    }
    let mut picker = AccelPicker::new(plan.accel)?.with_first_output(plan.first_output);
    run_with(plan, &mut picker, run_dir, traced, on_boot)
}

/// The campaign's boots through `boots`, into `run_dir`; `traced` says
/// whether QEMU's trace is read, or why not.
pub fn run_with(
    plan: &CampaignPlan,
    boots: &mut dyn Boots,
    run_dir: PathBuf,
    traced: std::result::Result<(), String>,
    on_boot: &mut dyn FnMut(&BootRecord),
) -> Result<Campaign> {
    let mut c = Booter {
        picker: boots,
        display: ui::GuestDisplay::default(),
        run_dir: run_dir.clone(),
        traced: traced.is_ok(),
        book: Book::default(),
        kernel_release: None,
        boots: Vec::new(),
    };
    for gp in plan.guests {
        if !c.guest(plan, gp, on_boot)? {
            break;
        }
    }
    Ok(Campaign {
        accel: c.picker.decided().unwrap_or(Accel::Tcg),
        run_dir,
        no_host_evidence: traced.err(),
        kernel_release: c.kernel_release,
        skipped: c.book.skipped,
        broken: c.book.broken,
        boots: c.boots,
    })
}

/// Whether every variant is traced, or why not.
fn host_evidence(no_trace: bool, variants: &[VariantBoot]) -> std::result::Result<(), String> {
    if no_trace {
        return Err("--no-trace".into());
    }
    variants
        .iter()
        .try_for_each(|v| trace::binary_supports(&v.binary))
}

/// The campaign as it goes.
struct Booter<'b> {
    picker: &'b mut dyn Boots,
    display: ui::GuestDisplay,
    run_dir: PathBuf,
    traced: bool,
    book: Book,
    kernel_release: Option<String>,
    boots: Vec<BootRecord>,
}

/// Which boot: its guest, variant, round and name.
struct Slot<'a> {
    gp: &'a GuestPlan,
    v: &'a VariantBoot,
    round: u32,
    label: String,
}

impl Booter<'_> {
    /// Every boot of one guest; false when a required variant failed.
    fn guest(
        &mut self,
        plan: &CampaignPlan,
        gp: &GuestPlan,
        on_boot: &mut dyn FnMut(&BootRecord),
    ) -> Result<bool> {
        self.book.no_driver(gp, plan.guests.len() > 1);
        // The rows every variant's QEMU offers.
        let mut active: Vec<&'static Controller> = gp
            .controllers
            .iter()
            .copied()
            .filter(|c| plan.controllers.contains(c))
            .collect();
        if active.is_empty() {
            return Ok(true);
        }
        let deadline = gp.deadline(active.len());
        for round in 1..=gp.rounds {
            for v in &plan.variants {
                let Some(image) = v.image(gp.guest) else {
                    continue;
                };
                let label = label(gp.guest, &v.name, round);
                let slot = Slot {
                    gp,
                    v,
                    round,
                    label,
                };
                let record = self.boot(&slot, image, &active, deadline)?;
                if let BootOutcome::Measured(m) = &record.outcome {
                    self.measured(gp.guest, v, m, &mut active);
                }
                on_boot(&record);
                let stop = v.required && record.failure().is_some();
                self.boots.push(record);
                if stop {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// What a measured boot tells the boots after it: the rows its guest
    /// skipped, and (unpatched, Linux) the kernel's release.
    fn measured(
        &mut self,
        guest: Guest,
        v: &VariantBoot,
        m: &Measured,
        active: &mut Vec<&'static Controller>,
    ) {
        self.book.absorb(guest, v, &m.skipped, active);
        // The report's kernel is the unpatched one.
        if guest == Guest::Linux && !v.kernel_variant && m.kernel_release.is_some() {
            self.kernel_release = m.kernel_release.clone();
        }
    }

    /// One boot, measured or failed.
    fn boot(
        &mut self,
        s: &Slot,
        image: &GuestImage,
        active: &[&'static Controller],
        deadline: Duration,
    ) -> Result<BootRecord> {
        let boot = Boot {
            qemu: s.v.binary.clone(),
            image: image.clone(),
            params: s.gp.params(active, s.round),
            dir: self.run_dir.clone(),
            deadline,
            trace: self.traced,
            netdev: s.gp.netdev,
            config: s.v.config,
        };
        let display = &mut self.display;
        let Booted {
            run,
            accel,
            started_unix_s: started,
        } = self
            .picker
            .boot(&boot, &s.label, &mut |e| display.event(e))?;
        let outcome = match run {
            Ok(run) => measure(s, run, accel, started, active)?,
            Err(f) => BootOutcome::Failed(f),
        };
        if let BootOutcome::Failed(f) = &outcome {
            ui::warn(&format!(
                "{} ({}): {}; console log {}",
                s.label,
                accel.name(),
                f.what(),
                f.evidence.console.display()
            ));
        }
        Ok(BootRecord {
            guest: s.gp.guest,
            variant: s.v.name.clone(),
            round: s.round,
            label: s.label.clone(),
            params: boot.params,
            netdev: s.gp.netdev,
            outcome,
        })
    }
}

/// A boot that reported: its KTAP read and checked, its trace paired. A
/// console that does not read or check is a failed boot (`Invalid`).
fn measure(
    s: &Slot,
    run: Run,
    accel: Accel,
    started: f64,
    active: &[&Controller],
) -> Result<BootOutcome> {
    let invalid = |why: String| {
        BootOutcome::Failed(BootFailure {
            label: s.label.clone(),
            accel,
            kind: Failure::Invalid { why },
            printed: true,
            evidence: Evidence::read(&run.console, &run.stderr),
        })
    };
    let parsed = match ktap::parse_file(&run.console) {
        Ok(p) => p,
        // One line, as a verdict quotes it: the console's last lines,
        // which the parser's message ends with, are in the evidence.
        Err(e) => {
            if let Some(b) = e.downcast_ref::<ktap::BailedOut>() {
                return Ok(BootOutcome::Failed(BootFailure {
                    label: s.label.clone(),
                    accel,
                    kind: Failure::BailedOut {
                        reason: b.reason.clone(),
                    },
                    printed: true,
                    evidence: Evidence::read(&run.console, &run.stderr),
                }));
            }
            let why = format!("{e:#}");
            let first = why.lines().next().unwrap_or_default();
            return Ok(invalid(first.trim_end_matches("; last lines:").to_string()));
        }
    };
    let checked = match ktap::check_run(&parsed, run.code, active) {
        Ok(c) => c,
        Err(why) => return Ok(invalid(why)),
    };
    let (host, host_samples) = match &run.trace_log {
        Some(log) => {
            let (h, samples) = host_samples(s.gp, &parsed.records, log, &run.fds)?;
            (Some(h), samples)
        }
        None => (None, Vec::new()),
    };
    let skipped = checked
        .skipped
        .into_iter()
        .map(|k| Skipped {
            guest: Some(s.gp.guest),
            ..k
        })
        .collect();
    Ok(BootOutcome::Measured(Box::new(Measured {
        run: GuestRun {
            guest: s.gp.guest,
            netdev: s.gp.netdev.name().into(),
            label: s.label.clone(),
            variant: s.v.name.clone(),
            round: s.round,
            accel,
            started_unix_s: started,
            wall_s: run.elapsed.as_secs_f64(),
            boot_to_ktap_s: run.to_ktap.map(|d| d.as_secs_f64()),
            guest_exit: run.code,
            console_log: run.console,
            boot: run.boot,
            host_busy: run.host_busy,
            qemu_nice: run.qemu_nice,
            trace_log: run.trace_log,
            host,
        },
        records: parsed.records,
        skipped,
        kernel_release: checked.kernel_release,
        host: host_samples,
    })))
}

/// The skipped controllers of the campaign so far.
#[derive(Default)]
struct Book {
    skipped: Vec<Skipped>,
    broken: Vec<(String, Skipped)>,
}

impl Book {
    /// The rows `gp`'s guest has no driver for; `others`: whether another
    /// guest of the run measured them.
    fn no_driver(&mut self, gp: &GuestPlan, others: bool) {
        let g = gp.guest;
        let then = if others {
            "the other guest measured it"
        } else {
            "--guest linux or both measures it"
        };
        self.skipped.extend(gp.cannot.iter().map(|c| Skipped {
            controller: c.name.to_string(),
            reason: format!(
                "the {g} guest has no driver for it (it drives {}); {then}",
                controllers::driven_by(g).join(", ")
            ),
            guest: Some(g),
        }));
    }

    /// The controllers a measured boot of `v` skipped. A controller the
    /// guest cannot drive is dropped from `active`, the later boots, which
    /// would only wait for it again; under a kernel variant it is that
    /// variant's regression instead.
    fn absorb(
        &mut self,
        g: Guest,
        v: &VariantBoot,
        skipped: &[Skipped],
        active: &mut Vec<&'static Controller>,
    ) {
        for s in skipped {
            if v.kernel_variant {
                // A disk the unpatched kernel drives and this kernel
                // variant does not: the patch broke it, which is its
                // finding, not a skip for all.
                ui::warn(&format!(
                    "kernel variant {}: no {} disk ({}): a regression of the patch",
                    v.name, s.controller, s.reason
                ));
                self.broken.push((v.name.clone(), s.clone()));
                continue;
            }
            ui::warn(&format!(
                "skipping {} ({g} guest): {}",
                s.controller, s.reason
            ));
            active.retain(|c| c.name != s.controller);
            self.skipped.push(s.clone());
        }
    }
}

/// The host-side queue times of one traced run, and its summary.
fn host_samples(
    gp: &GuestPlan,
    records: &[Record],
    log: &Path,
    fds: &BTreeMap<i32, String>,
) -> Result<(HostRun, Vec<HostSamples>)> {
    let paired = trace::read_log(log)?;
    let p = &gp.params;
    let plans = trace::DiskPlan::from_records(records, p.warmup, u64::from(p.chunk_kb) * 1024);
    let disks = trace::by_disk(&paired, fds, &plans);
    let mut samples = Vec::new();
    let mut out = Vec::new();
    for (controller, ph) in &disks {
        samples.extend(
            ph.measured
                .iter()
                .map(|(&(mode, workload), queued)| HostSamples {
                    controller: controller.clone(),
                    mode,
                    workload,
                    queued_us: queued.clone(),
                }),
        );
        out.push(HostDisk {
            controller: controller.clone(),
            boot_requests: ph.boot.len(),
            measured: ph.measured.values().map(Vec::len).sum(),
            write_phase: ph.write_phase,
            matched: ph.matched,
        });
    }
    Ok((
        HostRun {
            unfinished: paired.unfinished,
            fds: fds.clone(),
            disks: out,
        },
        samples,
    ))
}

fn unix_now() -> u64 {
    unix_now_s() as u64
}

/// Unix time in seconds, with the fraction.
fn unix_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::GuestSet;

    fn rows(names: &[&str]) -> Vec<&'static Controller> {
        names
            .iter()
            .map(|n| controllers::by_name(n).unwrap())
            .collect()
    }

    #[test]
    fn labels_name_the_guest_except_the_linux_guests() {
        assert_eq!(label(Guest::Linux, "baseline", 2), "baseline-r2");
        assert_eq!(label(Guest::Probe, "fix+k", 1), "probe-fix+k-r1");
    }

    fn plan_of(guests: &str, ctrls: &[&str]) -> Vec<GuestPlan> {
        crate::guests::plans(&crate::guests::Asked {
            guests: guests.parse::<GuestSet>().unwrap(),
            controllers: &rows(ctrls),
            netdev: None,
            iterations: None,
            rounds: None,
            params: Params::default(),
        })
        .unwrap()
    }

    fn variant(name: &str, kernel_variant: bool) -> VariantBoot {
        VariantBoot {
            name: name.into(),
            binary: "/q".into(),
            images: vec![(
                Guest::Linux,
                GuestImage::Linux {
                    kernel: "k".into(),
                    initrd: "i".into(),
                },
            )],
            kernel_variant,
            required: false,
            config: contract::Config::default(),
        }
    }

    #[test]
    fn skipped_rows_are_kept_as_before() {
        // A row the probe has no driver for: the Linux guest's alone.
        let plans = plan_of("both", &["ahci", "lsi"]);
        let probe = plans.iter().find(|p| p.guest == Guest::Probe).unwrap();
        let mut book = Book::default();
        book.no_driver(probe, true);
        assert_eq!(
            book.skipped,
            [Skipped {
                controller: "lsi".into(),
                reason: "the probe guest has no driver for it (it drives ahci, ide, virtio_blk, \
                         virtio_blk_noioeventfd, virtio_scsi, virtio_scsi_noioeventfd, \
                         megasas, megasas_gen2, nvme); the other guest measured it"
                    .into(),
                guest: Some(Guest::Probe),
            }]
        );
        // A disk the guest could not find: dropped from the later boots of
        // the guest; under a kernel variant, that variant's regression.
        let gone = [Skipped {
            controller: "nvme".into(),
            reason: "no disk appeared within 10000 ms".into(),
            guest: Some(Guest::Linux),
        }];
        let mut active = rows(&["ahci", "nvme"]);
        book.absorb(Guest::Linux, &variant("k1", true), &gone, &mut active);
        assert_eq!((active.len(), book.skipped.len()), (2, 1));
        assert_eq!(book.broken, [("k1".to_string(), gone[0].clone())]);
        book.absorb(
            Guest::Linux,
            &variant("baseline", false),
            &gone,
            &mut active,
        );
        assert_eq!(active, rows(&["ahci"]));
        assert_eq!(book.skipped[1], gone[0]);
        // A variant boots the guests it has an image for.
        let v = variant("k1", true);
        assert!(v.image(Guest::Linux).is_some() && v.image(Guest::Probe).is_none());
    }

    /// A boot that reported, with `console` as its console log.
    fn reported(dir: &Path, console: &str, code: i32) -> Run {
        let log = dir.join("console-baseline-r1.log");
        std::fs::write(&log, console).unwrap();
        let stderr = dir.join("qemu-baseline-r1.stderr");
        std::fs::write(&stderr, "qemu: note\n").unwrap();
        Run {
            code,
            console: log,
            stderr,
            elapsed: Duration::from_secs(2),
            to_ktap: Some(Duration::from_secs(1)),
            boot: None,
            trace_log: None,
            fds: BTreeMap::new(),
            host_busy: None,
            qemu_nice: None,
        }
    }

    #[test]
    fn a_report_that_does_not_count_is_a_failed_boot() {
        let t = tempfile::tempdir().unwrap();
        let plans = plan_of("linux", &["ahci"]);
        let v = variant("baseline", false);
        let slot = Slot {
            gp: &plans[0],
            v: &v,
            round: 1,
            label: "baseline-r1".into(),
        };
        let measured = |console: &str, code: i32, active: &[&Controller]| {
            let run = reported(t.path(), console, code);
            measure(&slot, run, Accel::Tcg, 0.0, active).unwrap()
        };
        let invalid = |o: BootOutcome| match o {
            BootOutcome::Failed(f) => {
                assert_eq!((f.label.as_str(), f.accel), ("baseline-r1", Accel::Tcg));
                assert_eq!(f.evidence.command_line, "/q -machine q35");
                assert_eq!(f.evidence.stderr_tail, "qemu: note");
                let Failure::Invalid { why } = f.kind else {
                    panic!("{f}")
                };
                why
            }
            BootOutcome::Measured(_) => panic!("measured"),
        };
        let why = invalid(measured("# /q -machine q35\nPanic\n", 0, &[]));
        assert!(
            why.starts_with(
                "no KTAP output: the selftest never started in the guest (console log "
            ) && why.ends_with("console-baseline-r1.log)"),
            "{why}"
        );
        let ktap = "# /q -machine q35\nKTAP version 1\n1..0\n";
        let why = invalid(measured(ktap, contract::exit::KSFT_SKIP, &[]));
        assert!(why.contains("skipped every test"), "{why}");
        let why = invalid(measured(ktap, 0, &rows(&["ahci"])));
        assert!(why.starts_with("the guest found no ahci disk"), "{why}");
        let BootOutcome::Measured(m) = measured(ktap, 0, &[]) else {
            panic!("not measured")
        };
        assert_eq!(
            (m.run.label.as_str(), m.run.guest, m.run.netdev.as_str()),
            ("baseline-r1", Guest::Linux, "none")
        );
        assert!(m.records.is_empty() && m.host.is_empty() && m.run.host.is_none());
    }
}
