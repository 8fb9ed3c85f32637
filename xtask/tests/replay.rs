//! Behaviour unchanged, proven on real runs: each folder under
//! `fixtures/runs/` is one `patch-and-test` run recorded before the stages
//! were split (its flags, console logs, QEMU traces, the printed report,
//! `--json`, `--junit` and `--kcidb`). Replayed through today's campaign
//! (its boots answered from the recording), results and report, every
//! byte a user or a CI system reads must come out as it was recorded.
//! What records the run itself (times, paths, process ids, host load,
//! nice, the builds) is replayed from the recorded JSON; everything the
//! run decided (parsed records, trace pairing, samples, findings,
//! verdicts, notes, skips, tables) is computed again.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use contract::{controllers, Guest};
use pretty_assertions::assert_eq;
use xtask::accel::Accel;
use xtask::campaign::{self, Booted, Boots, CampaignPlan, VariantBoot};
use xtask::cases::NamedReport;
use xtask::event::Sink;
use xtask::guest::{Boot, BootReport, Run};
use xtask::guests::{GuestImage, GuestPlan};
use xtask::pipeline::PatchAndTest;
use xtask::report::{Changes, GuestRun, Provenance, Report, Results};
use xtask::summary::{self, VariantSpec};

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    p: PatchAndTest,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

/// The recorded flags, less those naming files on the recording machine
/// (patches, binaries): they choose what was built, which the replay
/// takes from the recorded JSON.
fn flags(dir: &Path) -> Result<PatchAndTest> {
    let text = std::fs::read_to_string(dir.join("args"))?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut kept = vec!["patch-and-test"];
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "--variant" | "--kernel-variant" | "--qemu-binary" => i += 2,
            "--compare-binaries" => i += 3,
            w => {
                kept.push(w);
                i += 1;
            }
        }
    }
    Ok(Flags::try_parse_from(kept)?.p)
}

/// Each guest's plan as the run had it: its rows as the recording names
/// them (the probe's reach grows; a recording keeps what it measured).
fn plans(p: &PatchAndTest, doc: &Report) -> Result<Vec<GuestPlan>> {
    let params = doc.params.as_ref().context("no params")?;
    let mut plans = p.guest_plans()?;
    for plan in &mut plans {
        let g = params
            .guests
            .iter()
            .find(|g| g.guest == plan.guest)
            .context("a plan's guest is not recorded")?;
        let rows: Vec<_> = g
            .controllers
            .iter()
            .map(|c| controllers::by_name(c).map_err(|e| anyhow!("{e}")))
            .collect::<Result<_>>()?;
        let requested: Vec<_> = plan
            .controllers
            .iter()
            .chain(&plan.cannot)
            .copied()
            .collect();
        plan.cannot = requested
            .iter()
            .filter(|c| !rows.contains(c))
            .copied()
            .collect();
        plan.cannot.sort_by_key(|c| controllers::rank(c.name));
        plan.controllers = rows;
    }
    Ok(plans)
}

/// Boots answered from the recording: the console log and trace each
/// boot left, with what QEMU's process told of itself.
struct Recorded {
    dir: PathBuf,
    scratch: tempfile::TempDir,
    runs: BTreeMap<String, GuestRun>,
}

impl Boots for Recorded {
    fn boot(&mut self, b: &Boot, label: &str, _sink: Sink) -> Result<Booted> {
        let r = self
            .runs
            .get(label)
            .with_context(|| format!("the recording has no boot {label}"))?;
        assert_eq!(b.netdev.name(), r.netdev, "{label}'s network");
        let trace_log = match &r.trace_log {
            Some(_) => {
                let gz = self.dir.join(format!("trace-{label}.log.gz"));
                let mut text = String::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&gz)?)
                    .read_to_string(&mut text)
                    .with_context(|| format!("reading {}", gz.display()))?;
                let plain = self.scratch.path().join(format!("trace-{label}.log"));
                std::fs::write(&plain, text)?;
                Some(plain)
            }
            None => None,
        };
        let secs = std::time::Duration::from_secs_f64;
        let run = Run {
            code: r.guest_exit,
            console: self.dir.join(format!("console-{label}.log")),
            stderr: self.scratch.path().join("no-stderr"),
            elapsed: secs(r.wall_s),
            to_ktap: r.boot_to_ktap_s.map(secs),
            boot: r.boot.clone().map(|b: BootReport| b),
            trace_log,
            fds: r.host.as_ref().map(|h| h.fds.clone()).unwrap_or_default(),
            host_busy: r.host_busy,
            qemu_nice: r.qemu_nice,
        };
        Ok(Booted {
            run: Ok(run),
            accel: r.accel,
            started_unix_s: r.started_unix_s,
        })
    }

    fn decided(&self) -> Option<Accel> {
        self.runs.values().next().map(|r| r.accel)
    }
}

/// What one replay gives back: the printed report, and the three files.
struct Replayed {
    text: String,
    json: String,
    junit: String,
    kcidb: String,
}

fn replay(dir: &Path) -> Result<Replayed> {
    let recorded = Report::read(&dir.join("report.json"))?;
    let p = flags(dir)?;
    let plans = plans(&p, &recorded)?;
    // The baseline (or the binary alone) is the variant no report names.
    let base = recorded
        .guest_runs
        .iter()
        .map(|r| r.variant.clone())
        .find(|v| recorded.variant(v).is_none())
        .context("no baseline boot")?;
    let dummy = PathBuf::from("/replayed");
    let mut specs = vec![VariantSpec {
        name: base.clone(),
        against: base.clone(),
        kernel: false,
    }];
    specs.extend(recorded.variants.iter().map(|v| VariantSpec {
        name: v.name.clone(),
        against: v.against.clone(),
        kernel: v.changes != Changes::Qemu,
    }));
    let variants: Vec<VariantBoot> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| VariantBoot {
            name: s.name.clone(),
            binary: dummy.clone(),
            images: plans
                .iter()
                .filter(|g| !s.kernel || g.guest == Guest::Linux)
                .map(|g| {
                    let image = match g.guest {
                        Guest::Probe => GuestImage::Probe {
                            bios: dummy.clone(),
                        },
                        _ => GuestImage::Linux {
                            kernel: dummy.clone(),
                            initrd: dummy.clone(),
                        },
                    };
                    (g.guest, image)
                })
                .collect(),
            kernel_variant: s.kernel,
            required: i == 0,
            config: contract::Config::default(),
        })
        .collect();
    // The rows every binary offered: the requested less those a binary
    // lacked (recorded: asking the binaries is not replayed).
    let unoffered: Vec<_> = recorded
        .skipped
        .iter()
        .filter(|s| s.guest.is_none())
        .cloned()
        .collect();
    let offered = p
        .controllers
        .iter()
        .copied()
        .filter(|c| !unoffered.iter().any(|s| s.controller == c.name))
        .collect();
    let plan = CampaignPlan {
        guests: &plans,
        variants,
        controllers: offered,
        accel: xtask::guest::AccelChoice::Tcg,
        no_trace: false,
        keep_runs: 1,
        first_output: xtask::accel::FIRST_OUTPUT,
    };
    let mut rec = Recorded {
        dir: dir.to_path_buf(),
        scratch: tempfile::tempdir()?,
        runs: recorded
            .guest_runs
            .iter()
            .map(|r| (r.label.clone(), r.clone()))
            .collect(),
    };
    let traced = match &recorded.no_host_evidence {
        Some(why) => Err(why.clone()),
        None => Ok(()),
    };
    let run_dir = rec.scratch.path().to_path_buf();
    let camp = campaign::run_with(&plan, &mut rec, run_dir, traced, &mut |_| {})?;
    let mut gathered = summary::gather(&camp.boots);
    // Where the recording's logs were.
    for r in &mut gathered.runs {
        let was = &rec.runs[&r.label];
        r.console_log = was.console_log.clone();
        r.trace_log = was.trace_log.clone();
    }
    let s = summary::of_campaign(&camp, &gathered, &plans, p.workload, &specs, unoffered);
    let provenance = Provenance {
        qemu: recorded.qemu.clone(),
        kernel: recorded.kernel.clone(),
        probe_image: recorded.probe_image.clone(),
        baseline_binary: recorded.baseline_binary.clone(),
        variants: recorded.variants.iter().map(|v| v.build()).collect(),
        params: recorded.params.clone(),
        timings_s: recorded.timings_s.clone(),
    };
    let results = Results {
        summary: &s,
        accel: camp.accel,
        runs: gathered.runs.clone(),
        no_host_evidence: camp.no_host_evidence.clone(),
    };
    let doc = Report::assemble(provenance, &s.verdict, Some(results));
    let named = [NamedReport {
        name: None,
        report: &doc,
    }];
    Ok(Replayed {
        text: s.text.clone(),
        json: serde_json::to_string_pretty(&doc)?,
        junit: xtask::junit::write(&named)?,
        kcidb: xtask::kcidb::text(&named)?,
    })
}

/// The printed report as recorded, less its last two lines (the plot's
/// and the run folder's paths).
fn recorded_text(dir: &Path) -> Result<String> {
    let out = std::fs::read_to_string(dir.join("stdout.txt"))?;
    let cut = out
        .find("\nplot (")
        .context("the recorded output has no plot line")?;
    Ok(out[..cut + 1].to_string())
}

/// The rows the probe drove when these runs were recorded. Its reach grew
/// since (ide, virtio-scsi): a skip names the rows it drives today, the
/// one change by design in what a recorded run prints.
const PROBE_ROWS_RECORDED: &str =
    "ahci, virtio_blk, virtio_blk_noioeventfd, virtio_blk_iothread, nvme";

/// A recorded file, with the probe's rows as the table has them today.
fn recorded(dir: &Path, file: &str) -> String {
    let text = match file {
        "stdout.txt" => recorded_text(dir).unwrap(),
        f => std::fs::read_to_string(dir.join(f)).unwrap(),
    };
    let today = controllers::driven_by(Guest::Probe).join(", ");
    text.replace(
        &format!("(it drives {PROBE_ROWS_RECORDED})"),
        &format!("(it drives {today})"),
    )
}

#[test]
fn every_recorded_run_replays_byte_for_byte() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 7, "{names:?}");
    for dir in names {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let got = replay(&dir).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let read = |f: &str| recorded(&dir, f);
        assert_eq!(got.text, read("stdout.txt"), "{name}: printed report");
        assert_eq!(got.json, read("report.json"), "{name}: --json");
        assert_eq!(got.junit, read("junit.xml"), "{name}: --junit");
        assert_eq!(got.kcidb, read("kcidb.json"), "{name}: --kcidb");
    }
}
