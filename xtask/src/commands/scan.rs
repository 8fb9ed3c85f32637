//! `cargo xtask scan`: does this QEMU lose a wakeup in any configuration?
//! Flags and the order of stages: the binary (installed, or built from a
//! tree as it is), the probe's image, the cells (controller x
//! configuration x workload; those the table rules out are `not
//! applicable` before any boot), the campaign's boots with no network and a
//! short deadline, a cell alone again where its whole boot crashed or hung,
//! the doubled deadline for cells that needed the wake, then the findings
//! (`scan_findings`) and their outputs. No baseline and no statistics.
//!
//! Not expected to be reached by a scan: the resubmit bug fixed in 10.0.7
//! and 10.1.3 ("block/io_uring: avoid potentially getting stuck after
//! resubmit at the end of ioq_submit()"), which needs short reads or
//! -EAGAIN from the host; local image files rarely give either.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use contract::config::{Aio, Cache, Iothread};
use contract::{controllers, Config, Controller, Guest, ModeSet, Params, Workload};

use crate::campaign::{self, BootRecord, CampaignPlan, VariantBoot};
use crate::failure::Failure;
use crate::guest::{self, AccelChoice, Netdev};
use crate::guests::{GuestImage, GuestPlan};
use crate::patch::{self, PATCHED};
use crate::qemu::{self, BaselineMode};
use crate::scan_findings::{self as sf, Cell, Finding, Tried};
use crate::scan_report;
use crate::source::QemuSource;
use crate::{deps, outputs, ui};

/// A comma-separated list of one axis's values.
fn list<T: std::str::FromStr<Err = contract::Error>>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().map_err(|e: contract::Error| e.to_string()))
        .collect()
}

/// `--controllers` for the scan: the probe's rows unless told.
fn rows(s: &str) -> Result<Vec<&'static Controller>, String> {
    if s.trim() == "all" {
        return Ok(controllers::CONTROLLERS
            .iter()
            .filter(|c| c.drives(Guest::Probe))
            .collect());
    }
    let v = controllers::parse_list(s).map_err(|e| e.to_string())?;
    if let Some(c) = v.iter().find(|c| !c.drives(Guest::Probe)) {
        return Err(format!(
            "the scan's probe guest cannot drive {} (it drives {})",
            c.name,
            controllers::driven_by(Guest::Probe).join(", ")
        ));
    }
    Ok(v)
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Findings per cell: clean, lost wakeup, hung, hung at start, crashed, refused, \
not applicable. Exit 0 when every measured cell is clean, 1 when any is lost, hung or crashed, \
2 for bad input or when nothing could be measured.\n\nNot expected to be reached by a scan: the \
resubmit bug fixed in QEMU 10.0.7 and 10.1.3 (a request resubmitted after a short read or -EAGAIN \
from the host, which local image files rarely give)."
)]
pub struct Scan {
    #[command(flatten)]
    pub source: QemuSource,
    /// Scan this installed QEMU binary: nothing is built.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["qemu_tree", "patch", "series"])]
    pub qemu_binary: Option<PathBuf>,
    /// Scan Debian's shipped qemu-system-x86: a suite name, a version as the
    /// archive lists it, or a `.deb` file; on the host when its dependencies
    /// are met, else in the suite's own tree (as `patch-and-test --qemu-deb`).
    #[arg(long, value_name = "SUITE|VERSION|FILE.deb", conflicts_with_all = ["qemu_tree", "qemu_binary", "patch", "series"])]
    pub qemu_deb: Option<String>,
    /// Scan the tree's build with this patch applied (repeatable, in order).
    #[arg(long = "patch", value_name = "FILE", conflicts_with = "series")]
    pub patch: Vec<PathBuf>,
    /// Scan the tree's build with this series directory's patches applied.
    #[arg(long, value_name = "DIR")]
    pub series: Option<PathBuf>,
    /// Controllers to scan: comma-separated names, or `all` (the rows the
    /// probe guest drives).
    #[arg(long, value_name = "LIST", default_value = "all", value_parser = rows)]
    pub controllers: ::std::vec::Vec<&'static Controller>,
    /// AIO backends to scan (comma-separated): io_uring, native, threads.
    #[arg(long, value_name = "LIST", default_value = "io_uring,native,threads", value_parser = list::<Aio>)]
    pub aio: ::std::vec::Vec<Aio>,
    /// Cache modes to scan: none, writeback.
    #[arg(long, value_name = "LIST", default_value = "none,writeback", value_parser = list::<Cache>)]
    pub cache: ::std::vec::Vec<Cache>,
    /// Iothread settings to scan: off, on (rows that take one).
    #[arg(long, value_name = "LIST", default_value = "off,on", value_parser = list::<Iothread>)]
    pub iothread: ::std::vec::Vec<Iothread>,
    /// The probe's deadline per request, ms, before it wakes QEMU's main
    /// loop itself; doubled for a retry.
    #[arg(long, value_name = "MS", default_value_t = sf::DEADLINE_MS)]
    pub deadline_ms: u64,
    /// Measured requests per cell.
    #[arg(long, value_name = "N", default_value_t = sf::REQUESTS)]
    pub requests: u32,
    /// Accelerator: auto tries KVM and falls back to TCG when the guest prints nothing.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Write the findings as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write JUnit XML here (a testcase per cell).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a KCIDB (v5.3) document here (a test per cell).
    #[arg(long, value_name = "FILE")]
    pub kcidb: Option<PathBuf>,
    /// Run folders kept in the cache, this scan's included.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(4..=100_000))]
    pub keep_runs: u32,
    /// Never install missing Debian packages; only name them.
    #[arg(long)]
    pub no_install: bool,
    /// Seconds the measured boots took, for the closing line.
    #[arg(skip)]
    boot_s: std::cell::Cell<f64>,
    /// The bound on a boot's first console byte; `accel::FIRST_OUTPUT`
    /// unless a test sets it.
    #[arg(skip)]
    pub first_output: Option<std::time::Duration>,
}

/// The scanned binary, its QEMU version, and the probe's image.
pub struct Target {
    pub binary: PathBuf,
    pub version: String,
    pub bios: PathBuf,
}

/// What the boots of one try gave, by (configuration, row), with the
/// boot's files.
type Tries = BTreeMap<(Config, &'static str), (Tried, Files)>;

/// A boot's console log (its first line the QEMU command), QEMU's stderr,
/// the command line, and for a refusal QEMU's first word on stderr.
#[derive(Clone, Debug, Default)]
struct Files {
    console: Option<PathBuf>,
    stderr: Option<PathBuf>,
    command: Option<String>,
    refusal: Option<String>,
}

impl Files {
    fn of(b: &BootRecord) -> Files {
        let (console, stderr) = match &b.outcome {
            campaign::BootOutcome::Failed(f) => {
                (f.evidence.console.clone(), f.evidence.stderr.clone())
            }
            campaign::BootOutcome::Measured(m) => {
                let console = m.run.console_log.clone();
                // Beside the console log, as `guest::boot` names it.
                let stderr = console.with_file_name(format!("qemu-{}.stderr", b.label));
                (console, stderr)
            }
        };
        let ev = crate::failure::Evidence::read(&console, &stderr);
        Files {
            refusal: ev
                .stderr_tail
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string),
            command: Some(ev.command_line),
            console: Some(console),
            stderr: Some(stderr),
        }
    }

    /// Onto a cell whose finding is not clean.
    fn onto(&self, cell: &mut Cell) {
        cell.console = self.console.clone();
        cell.stderr = self.stderr.clone();
        cell.command = self.command.clone();
        if let (Finding::Refused { why }, Some(r)) = (&mut cell.finding, &self.refusal) {
            *why = r.clone();
            cell.line = cell.finding.line();
        }
    }
}

impl Scan {
    pub fn run(self) -> Result<i32> {
        let started = Instant::now();
        let configs = self.configs();
        if configs.is_empty() || self.controllers.is_empty() {
            bail!("nothing to scan: the axes or controllers left no cell");
        }
        if self.requests == 0 || self.deadline_ms == 0 {
            bail!("--requests and --deadline-ms must be at least 1");
        }
        deps::ensure(deps::PIPELINE, !self.no_install)?;
        guest::firmware_present()?;
        let target = self.target()?;
        let (cells, run_dirs) = self.cells(&target)?;
        self.report(&target, &configs, &cells, run_dirs, started)
    }

    /// Every cell's finding, and the run folders of the boots.
    pub fn cells(&self, target: &Target) -> Result<(Vec<Cell>, Vec<PathBuf>)> {
        let configs = self.configs();
        let (offered, lacking) = campaign::offered(&self.controllers, &[target.binary.as_path()])?;

        // Every cell, the ones the table or the binary rules out decided now.
        let mut cells: Vec<Cell> = Vec::new();
        let mut todo: Vec<(Config, &'static Controller)> = Vec::new();
        for k in &configs {
            for c in &self.controllers {
                let why = k.not_applicable(c).map(str::to_string).or_else(|| {
                    lacking
                        .iter()
                        .find(|s| s.controller == c.name)
                        .map(|s| s.reason.clone())
                });
                match why {
                    Some(why) => cells.push(Cell::new(
                        c,
                        *k,
                        Workload::Latency,
                        Finding::NotApplicable { why },
                    )),
                    None if offered.contains(c) => todo.push((*k, c)),
                    None => {}
                }
            }
        }
        ui::stage(&format!(
            "scanning {} cells of QEMU {} ({} not applicable)",
            todo.len(),
            target.version,
            cells.len()
        ));
        let mut run_dirs = Vec::new();
        let mut first = self.measure(
            target,
            &todo,
            self.deadline_ms,
            self.requests,
            &mut run_dirs,
        )?;
        // A boot that crashed or hung took its other cells with it: each
        // alone again, so every cell gets its own finding.
        let shared: Vec<(Config, &'static Controller)> = todo
            .iter()
            .copied()
            .filter(|(k, c)| {
                let alone = todo.iter().filter(|(k2, _)| k2 == k).count() == 1;
                !alone
                    && matches!(
                        first.get(&(*k, c.name)),
                        Some((
                            Tried::Failed(
                                Failure::Crashed { .. }
                                    | Failure::Silent { .. }
                                    | Failure::Unfinished { .. }
                            ),
                            _
                        ))
                    )
            })
            .collect();
        for one in &shared {
            let again = self.measure(
                target,
                &[*one],
                self.deadline_ms,
                self.requests,
                &mut run_dirs,
            )?;
            first.extend(again);
        }
        // Cells that needed the wake: again at the doubled deadline.
        let suspects: Vec<(Config, &'static Controller)> = todo
            .iter()
            .copied()
            .filter(|(k, c)| {
                first
                    .get(&(*k, c.name))
                    .is_some_and(|(t, _)| sf::first(t).is_none())
            })
            .collect();
        let retried = if suspects.is_empty() {
            Tries::new()
        } else {
            ui::stage(&format!(
                "{} cells needed the wake: again with a {} ms deadline",
                suspects.len(),
                2 * self.deadline_ms
            ));
            let n = self.requests.min(sf::RETRY_REQUESTS);
            self.measure(target, &suspects, 2 * self.deadline_ms, n, &mut run_dirs)?
        };
        for (k, c) in &todo {
            let Some((t, files)) = first.get(&(*k, c.name)) else {
                continue;
            };
            let finding = match (sf::first(t), retried.get(&(*k, c.name))) {
                (Some(f), _) => f,
                (None, Some((again, _))) => sf::retried(t, again),
                (None, None) => Finding::Unmeasured {
                    why: "the retry did not run".into(),
                },
            };
            let mut cell = Cell::new(c, *k, Workload::Latency, finding);
            if !matches!(cell.finding, Finding::Clean { .. }) {
                files.onto(&mut cell);
            }
            cells.push(cell);
        }
        cells.sort_by_key(|c| {
            (
                controllers::rank(&c.controller),
                configs.iter().position(|k| *k == c.config),
            )
        });
        Ok((cells, run_dirs))
    }

    /// Every combination the axes' filters leave, the default first.
    fn configs(&self) -> Vec<Config> {
        Config::all()
            .into_iter()
            .filter(|k| {
                self.aio.contains(&k.aio)
                    && self.cache.contains(&k.cache)
                    && self.iothread.contains(&k.iothread)
            })
            .collect()
    }

    /// The binary to scan: installed, or the tree built as it is (with
    /// `--patch`/`--series` applied: the patched build), and the probe.
    fn target(&self) -> Result<Target> {
        let (binary, version) = match (&self.qemu_binary, &self.qemu_deb) {
            (_, Some(w)) => {
                let sh = crate::shipped::prepare(w, !self.no_install)?;
                let place = match &sh.place {
                    crate::shipped::Place::Host => "on the host".to_string(),
                    crate::shipped::Place::Tree(t) => {
                        format!("in its suite's tree {}", t.display())
                    }
                };
                ui::stage(&format!(
                    "Debian's qemu-system-x86 {} ({}, sha256 {}), run {place}",
                    sh.version,
                    sh.suite.as_deref().unwrap_or("in no suite"),
                    sh.sha256
                ));
                let v = qemu::probe(&sh.binary)
                    .with_context(|| format!("--qemu-deb {w}: {}", sh.binary.display()))?;
                (sh.binary, v)
            }
            (Some(b), None) => {
                if !b.is_file() {
                    bail!("--qemu-binary {}: no such file", b.display());
                }
                let v = qemu::probe(b).with_context(|| format!("--qemu-binary {}", b.display()))?;
                (b.clone(), v)
            }
            (None, None) => {
                let sets =
                    patch::choose(&[], self.series.as_deref(), &self.patch, PATCHED, "variant")?
                        .unwrap_or_default();
                let tree = self.source.resolve()?;
                ui::stage(&format!("building QEMU {} as it is", tree.describe()));
                let _building = crate::cache::MeasureLock::builds()?;
                let built = qemu::build(&tree, BaselineMode::AsIs, &sets)?;
                let bin = match built.variants.last() {
                    Some((_, b)) => b.path.clone(),
                    None => built.baseline.path.clone(),
                };
                let v = qemu::probe(&bin)?;
                (bin, v)
            }
        };
        ui::stage(&format!("scanning {} (QEMU {version})", binary.display()));
        let img = crate::probe_image::build()?;
        Ok(Target {
            binary,
            version,
            bios: img.image,
        })
    }

    /// Boots `cells` at `deadline_ms`: one campaign per set of rows, a
    /// boot per configuration carrying each of its rows as a disk.
    fn measure(
        &self,
        target: &Target,
        cells: &[(Config, &'static Controller)],
        deadline_ms: u64,
        requests: u32,
        run_dirs: &mut Vec<PathBuf>,
    ) -> Result<Tries> {
        // Configurations grouped by the rows they boot.
        let mut groups: Vec<(Vec<&'static Controller>, Vec<Config>)> = Vec::new();
        let mut configs: Vec<Config> = cells.iter().map(|(k, _)| *k).collect();
        configs.dedup();
        for k in configs {
            let mut rows: Vec<&'static Controller> = cells
                .iter()
                .filter(|(k2, _)| *k2 == k)
                .map(|(_, c)| *c)
                .collect();
            rows.sort_by_key(|c| controllers::rank(c.name));
            rows.dedup();
            match groups.iter_mut().find(|(r, _)| *r == rows) {
                Some((_, ks)) => ks.push(k),
                None => groups.push((rows, vec![k])),
            }
        }
        let mut out = Tries::new();
        for (rows, ks) in groups {
            let plan = [GuestPlan {
                guest: Guest::Probe,
                controllers: rows.clone(),
                cannot: vec![],
                netdev: Netdev::None,
                params: params(deadline_ms, requests),
                rounds: 1,
            }];
            let variants = ks
                .iter()
                .map(|k| VariantBoot {
                    name: k.slug(),
                    binary: target.binary.clone(),
                    images: vec![(
                        Guest::Probe,
                        GuestImage::Probe {
                            bios: target.bios.clone(),
                        },
                    )],
                    kernel_variant: false,
                    required: false,
                    config: *k,
                })
                .collect();
            let camp = campaign::run(
                &CampaignPlan {
                    guests: &plan,
                    variants,
                    controllers: rows.clone(),
                    accel: self.accel,
                    no_trace: false,
                    keep_runs: self.keep_runs,
                    first_output: self.first_output.unwrap_or(crate::accel::FIRST_OUTPUT),
                },
                &mut |_| {},
            )?;
            run_dirs.push(camp.run_dir.clone());
            for b in camp.boots {
                if let campaign::BootOutcome::Measured(m) = &b.outcome {
                    self.boot_s.set(self.boot_s.get() + m.run.wall_s);
                }
                let Some(k) = ks.iter().find(|k| k.slug() == b.variant) else {
                    continue;
                };
                for c in &rows {
                    if cells.contains(&(*k, *c)) {
                        let t = sf::tried(&b, c.name, deadline_ms);
                        out.insert((*k, c.name), (t, Files::of(&b)));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// What the probe is asked: a warm-up read and `requests` measured ones
/// per disk, polled, with the short deadline; a one-block write phase
/// (write, flush, read back) rather than 32 blocks, each of which a lost
/// wakeup would hold for the whole deadline.
fn params(deadline_ms: u64, requests: u32) -> Params {
    Params {
        iterations: requests,
        warmup: 1,
        modes: ModeSet::Poll,
        workload: Workload::Latency,
        deadline_ms,
        write_blocks: 1,
        // The scan judges by the wake, not by a latency bound.
        max_p99_ms: 1e9,
        ..Params::default()
    }
}

impl Scan {
    fn report(
        &self,
        target: &Target,
        configs: &[Config],
        cells: &[Cell],
        run_dirs: Vec<PathBuf>,
        started: Instant,
    ) -> Result<i32> {
        println!();
        print!("{}", sf::table(cells, configs));
        for c in cells.iter().filter(|c| {
            !matches!(
                c.finding,
                Finding::Clean { .. } | Finding::NotApplicable { .. }
            )
        }) {
            println!("{} {}: {}", c.controller, c.config.name(), c.line);
            if let Some(log) = &c.console {
                println!("  console log {}", log.display());
            }
        }
        let advice = sf::what_to_change(cells);
        if !advice.is_empty() {
            println!("what to change:");
            for a in &advice {
                println!("  {a}");
            }
        }
        let code = sf::exit_code(cells);
        let head = match code {
            0 => "CLEAN: every measured cell completed every request with no wake",
            1 => "FOUND: a cell lost a wakeup, hung or crashed",
            _ => "NOTHING MEASURED",
        };
        println!(
            "{head} (QEMU {}, {} cells, {:.1} s, {:.1} s of it in boots)",
            target.version,
            cells.len(),
            started.elapsed().as_secs_f64(),
            self.boot_s.get()
        );
        let doc = scan_report::ScanReport {
            qemu: target.binary.display().to_string(),
            qemu_version: target.version.clone(),
            deadline_ms: self.deadline_ms,
            requests: self.requests,
            cells,
            what_to_change: advice,
            exit_code: code,
            run_dirs,
        };
        if let Some(j) = &self.json {
            outputs::write_json(j, &doc)?;
        }
        if let Some(j) = &self.junit {
            outputs::write(j, scan_report::junit(&doc)?)?;
        }
        if let Some(k) = &self.kcidb {
            outputs::write(k, scan_report::kcidb(&doc)?)?;
        }
        Ok(code)
    }
}
