//! The machine-readable report (`--json`): one typed document that the
//! run writes and `bench`, `matrix merge`, the CI formats and the tests
//! read back. Findings and verdicts are in it as the words they were
//! rendered to (`findings::Judgement::record`, `verdict::Verdict::record`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use contract::{Guest, Role};
use serde::{Deserialize, Serialize};

use crate::findings::Finding;
use crate::guest::Accel;
pub use crate::outcome::{GuestRun, HostDisk, HostRun, Skipped};
use crate::patch::State;
use crate::samples::Row;
use crate::summary::{Summary, VariantOutcome};
pub use crate::variants::Changes;
use crate::verdict::{GuestVerdict, Kind, Verdict};

/// Reports written before the probe guest existed are the Linux guest's.
fn linux() -> Guest {
    Guest::Linux
}

/// A verdict as the report carries it: its kind and its line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub kind: Kind,
    pub line: String,
}

/// One controller's finding, with the figures of its slowest baseline mode.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControllerFinding {
    /// The guest whose rows decided it.
    #[serde(default = "linux")]
    pub guest: Guest,
    pub controller: String,
    /// The workload whose rows decided it, when not `latency`.
    #[serde(default, skip_serializing_if = "contract::Workload::is_latency")]
    pub workload: contract::Workload,
    pub role: Option<Role>,
    pub finding: Finding,
    /// Why, in a sentence.
    pub reason: String,
    pub mode: String,
    pub baseline_p50_us: f64,
    pub patched_p50_us: f64,
    pub p50_ratio: Option<f64>,
    pub mechanism: String,
    /// Time queued in QEMU (host trace, p50) of the same mode, when traced.
    #[serde(default)]
    pub host_baseline_p50_us: Option<f64>,
    #[serde(default)]
    pub host_patched_p50_us: Option<f64>,
    /// The sentence that states the cause, when traced.
    #[serde(default)]
    pub cause: Option<String>,
}

impl std::fmt::Display for QemuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What was measured of QEMU: a tree (by what `check` found in it) or
/// prebuilt binaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QemuState {
    Vulnerable,
    Fixed,
    Unaffected,
    /// The fix and the tree disagree (never measured: `check` says why).
    Conflict,
    /// One prebuilt binary, measured alone.
    #[default]
    Binary,
    /// Two prebuilt binaries, the first as the baseline.
    Binaries,
}

impl QemuState {
    pub fn name(self) -> &'static str {
        match self {
            QemuState::Vulnerable => "vulnerable",
            QemuState::Fixed => "fixed",
            QemuState::Unaffected => "unaffected",
            QemuState::Conflict => "conflict",
            QemuState::Binary => "binary",
            QemuState::Binaries => "binaries",
        }
    }

    pub fn of_tree(s: &State) -> QemuState {
        match s {
            State::Unaffected => QemuState::Unaffected,
            State::Fixed => QemuState::Fixed,
            State::Vulnerable => QemuState::Vulnerable,
            State::Conflict { .. } => QemuState::Conflict,
        }
    }
}

/// The QEMU that was measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QemuInfo {
    pub version: Option<String>,
    pub debian_version: Option<String>,
    pub tree: Option<PathBuf>,
    /// A prebuilt binary measured alone (`--qemu-binary`), or the baseline
    /// of `--compare-binaries`.
    pub binary: Option<PathBuf>,
    /// The other binary of `--compare-binaries`.
    #[serde(default)]
    pub compared_with: Option<PathBuf>,
    /// `vulnerable`, `fixed`, `unaffected`, `binary` or `binaries`.
    pub state: QemuState,
    /// How the baseline was made (`as-is`, `revert-fix`).
    pub baseline: Option<String>,
    /// A shipped package measured (`--qemu-deb`): absent otherwise, so
    /// reports of other runs read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageInfo>,
    /// The package of `compared_with` (`--compare-debs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_package: Option<PackageInfo>,
}

/// A shipped QEMU package: which one, from which archive state, and where
/// it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    /// The suite that lists it; none for a `.deb` no suite lists.
    pub suite: Option<String>,
    pub sha256: String,
    /// The suite's Release date.
    pub release_date: Option<String>,
    /// `host`, or `suite tree`.
    pub ran_on: String,
    /// The suite tree's root, when it ran in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<PathBuf>,
}

/// The guest side: kernel, selftest and initramfs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelInfo {
    pub release: String,
    pub source: String,
    pub image: PathBuf,
    pub uapi: Option<PathBuf>,
    pub modules: Vec<PathBuf>,
    pub selftest: PathBuf,
    pub initramfs: PathBuf,
}

/// The parameters the run measured with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParamsInfo {
    /// `--iterations` and `--rounds` as given, else the Linux guest's
    /// defaults; what each guest measured with is in `guests`.
    pub iterations: u32,
    pub rounds: u32,
    pub think_us: u64,
    pub think: String,
    pub mode: String,
    /// `--guest`: linux, probe or both.
    #[serde(default)]
    pub guest: String,
    /// The network (`none`, `user`, `hostfwd`) when every guest had the same,
    /// else each guest's as `GUEST=NETDEV`, comma-separated.
    #[serde(default)]
    pub netdev: String,
    pub controllers: Vec<String>,
    /// The disks' configuration (`--aio`, `--cache`, `--iothread`), left
    /// out when it is the default (`aio=io_uring,cache=none`, no iothread).
    #[serde(default, skip_serializing_if = "contract::Config::is_default")]
    pub config: contract::Config,
    /// What each guest measured with.
    #[serde(default)]
    pub guests: Vec<GuestParams>,
}

/// One guest's share of the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuestParams {
    pub guest: Guest,
    pub netdev: String,
    pub iterations: u32,
    pub warmup: u32,
    pub rounds: u32,
    pub mode: String,
    pub controllers: Vec<String>,
}

/// A patch file a variant was built with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PatchFile {
    pub path: PathBuf,
    pub sha256: String,
}

/// One variant against the baseline (or, for a pair, against its QEMU
/// variant alone: `against`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantReport {
    pub name: String,
    pub binary: PathBuf,
    /// What it changes.
    #[serde(default)]
    pub changes: Changes,
    /// The variant it is compared against.
    #[serde(default = "baseline_name")]
    pub against: String,
    /// QEMU patches; empty for a prebuilt binary (`--compare-binaries`).
    pub patches: Vec<PatchFile>,
    /// Guest kernel patches, for a kernel variant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_patches: Vec<PatchFile>,
    /// The kernel variant's image, release and build figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelVariantInfo>,
    pub verdict: VerdictRecord,
    /// Each guest's own verdict (the run's joins them).
    #[serde(default)]
    pub guests: Vec<GuestVerdict>,
    pub controllers: Vec<ControllerFinding>,
    pub devices: Vec<Row>,
}

fn baseline_name() -> String {
    crate::patch::BASELINE.into()
}

/// What a variant is built from, as the report names it: a variant's
/// report less its results.
#[derive(Clone, Debug)]
pub struct VariantBuild {
    pub name: String,
    pub binary: PathBuf,
    pub changes: Changes,
    pub against: String,
    pub patches: Vec<PatchFile>,
    pub kernel_patches: Vec<PatchFile>,
    pub kernel: Option<KernelVariantInfo>,
}

impl VariantReport {
    /// A variant's build with its decision.
    pub fn of(b: VariantBuild, o: &VariantOutcome) -> VariantReport {
        VariantReport {
            name: b.name,
            binary: b.binary,
            changes: b.changes,
            against: b.against,
            patches: b.patches,
            kernel_patches: b.kernel_patches,
            kernel: b.kernel,
            verdict: o.decision.verdict.record(),
            guests: o.decision.guests.clone(),
            controllers: o.decision.findings.iter().map(|j| j.record()).collect(),
            devices: o.rows.clone(),
        }
    }

    /// What it was built from.
    pub fn build(&self) -> VariantBuild {
        VariantBuild {
            name: self.name.clone(),
            binary: self.binary.clone(),
            changes: self.changes,
            against: self.against.clone(),
            patches: self.patches.clone(),
            kernel_patches: self.kernel_patches.clone(),
            kernel: self.kernel.clone(),
        }
    }
}

/// What a report says of a run besides its results: what was measured,
/// with what, and how long each stage took.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    pub qemu: QemuInfo,
    pub kernel: Option<KernelInfo>,
    pub probe_image: Option<PathBuf>,
    /// The binary measured as the baseline (or alone).
    pub baseline_binary: Option<PathBuf>,
    /// Every variant but the baseline, in order.
    pub variants: Vec<VariantBuild>,
    pub params: Option<ParamsInfo>,
    pub timings_s: BTreeMap<String, f64>,
}

/// A campaign's results, for the report.
pub struct Results<'a> {
    pub summary: &'a Summary,
    pub accel: Accel,
    pub runs: Vec<GuestRun>,
    pub no_host_evidence: Option<String>,
}

/// A kernel variant's build, for the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelVariantInfo {
    pub image: PathBuf,
    pub release: String,
    /// Objects its incremental build compiled; none when it was cached.
    pub objects_compiled: Option<u64>,
    /// Whether it changes the uapi headers (and so got its own selftest).
    pub uapi_changed: bool,
    pub build_s: f64,
}

/// The machine-readable report (`--json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub verdict: Kind,
    pub verdict_line: String,
    pub exit_code: i32,
    pub accel: Option<Accel>,
    pub expected: Option<String>,
    pub qemu: QemuInfo,
    pub kernel: Option<KernelInfo>,
    /// The probe guest's -bios image, when it ran.
    #[serde(default)]
    pub probe_image: Option<PathBuf>,
    pub controllers: Vec<ControllerFinding>,
    /// Requested controllers that were not measured.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Why the report has no host-side (trace) figures, if it has none.
    #[serde(default)]
    pub no_host_evidence: Option<String>,
    /// Findings of single tests, in words: a test stopped at its time
    /// budget, requests that completed only after the probe's deadline wake.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Each variant against the baseline (one for an ordinary run, whose
    /// figures are also the top-level `controllers` and `devices`).
    #[serde(default)]
    pub variants: Vec<VariantReport>,
    /// The binary measured as the baseline (or alone).
    #[serde(default)]
    pub baseline_binary: Option<PathBuf>,
    pub devices: Vec<Row>,
    pub guest_runs: Vec<GuestRun>,
    pub params: Option<ParamsInfo>,
    /// Seconds per stage, and `total`.
    pub timings_s: BTreeMap<String, f64>,
}

impl Report {
    /// The document of a run: what it measured (`p`), its verdict, and its
    /// results (none when nothing was booted).
    pub fn assemble(p: Provenance, verdict: &Verdict, r: Option<Results>) -> Report {
        let (variants, devices, controllers, runs, skipped, notes, expected, accel, no_host) =
            match r {
                Some(r) => (
                    p.variants
                        .into_iter()
                        .zip(&r.summary.variants)
                        .map(|(b, o)| VariantReport::of(b, o))
                        .collect(),
                    r.summary.rows.clone(),
                    r.summary.finding_records(),
                    r.runs,
                    r.summary.skipped.clone(),
                    r.summary.notes.clone(),
                    Some(r.summary.expected.clone()),
                    Some(r.accel),
                    r.no_host_evidence,
                ),
                None => Default::default(),
            };
        Report {
            verdict: verdict.kind,
            verdict_line: verdict.line(),
            exit_code: verdict.kind.exit_code(),
            accel,
            expected,
            qemu: p.qemu,
            kernel: p.kernel,
            probe_image: p.probe_image,
            controllers,
            skipped,
            no_host_evidence: no_host,
            notes,
            variants,
            baseline_binary: p.baseline_binary,
            devices,
            guest_runs: runs,
            params: p.params,
            timings_s: p.timings_s,
        }
    }

    pub fn read(path: &std::path::Path) -> anyhow::Result<Report> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading report {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing report {}", path.display()))
    }

    /// The Linux guest's row of `controller` in `mode`.
    pub fn row(&self, controller: &str, mode: &str) -> Option<&Row> {
        self.row_of(Guest::Linux, controller, mode)
    }

    pub fn row_of(&self, guest: Guest, controller: &str, mode: &str) -> Option<&Row> {
        self.devices
            .iter()
            .find(|r| r.guest == guest && r.controller == controller && r.mode == mode)
    }

    /// The Linux guest's finding of `controller`.
    pub fn finding(&self, controller: &str) -> Option<&ControllerFinding> {
        self.finding_of(Guest::Linux, controller)
    }

    pub fn finding_of(&self, guest: Guest, controller: &str) -> Option<&ControllerFinding> {
        self.controllers
            .iter()
            .find(|c| c.guest == guest && c.controller == controller)
    }

    pub fn variant(&self, name: &str) -> Option<&VariantReport> {
        self.variants.iter().find(|v| v.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::findings;
    use crate::samples::testing::runs;

    #[test]
    fn report_reads_back_typed() {
        let r = runs(8000, 500, 300, 320);
        let rep = Report {
            verdict: Kind::Verified,
            verdict_line: "x".into(),
            exit_code: 0,
            accel: Some(Accel::Tcg),
            expected: None,
            qemu: QemuInfo::default(),
            kernel: None,
            probe_image: None,
            controllers: findings(&r).iter().map(|j| j.record()).collect(),
            skipped: vec![],
            no_host_evidence: None,
            notes: vec![],
            variants: vec![],
            baseline_binary: None,
            devices: r,
            guest_runs: vec![],
            params: None,
            timings_s: BTreeMap::new(),
        };
        let back: Report = serde_json::from_str(&serde_json::to_string(&rep).unwrap()).unwrap();
        assert_eq!(back.row("ahci", "poll").unwrap().baseline.p50_us, 8000.0);
        assert_eq!(back.finding("ahci").unwrap().finding, Finding::Affected);
    }
}
