//! The report as test cases, for the CI formats (`junit`, `kcidb`): one
//! case per variant, guest, controller and mode, with a status decided from
//! the findings of that mode's rows (the same rules, `findings::findings`),
//! and one skipped case per controller that was not measured. One
//! definition, so JUnit and KCIDB always agree with the report.

use std::path::PathBuf;

use contract::Guest;

use crate::findings::{findings, Finding};
use crate::patch::{BASELINE, BINARY};
use crate::report::{Changes, Report, VariantReport};
use crate::samples::{guest_rank, Row};
use crate::verdict::{single_reference, stalls_alone};

/// One run's report, named (a matrix cell's id; `None` for a single run):
/// what both formats are written from.
pub struct NamedReport<'a> {
    pub name: Option<&'a str>,
    pub report: &'a Report,
}

/// A case's outcome, in the vocabulary both formats share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// A regression, or a stall the QEMU patch should have cured.
    Fail,
    /// Measured, but the rules could not decide (inconclusive).
    Error,
    /// Not measured (the QEMU lacks the device, or the guest cannot drive it).
    Skip,
}

impl Status {
    pub fn kcidb(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Skip => "SKIP",
        }
    }
}

/// One test case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The variant measured (`binary` for a QEMU measured alone).
    pub variant: String,
    pub changes: Option<Changes>,
    pub guest: Option<Guest>,
    pub controller: String,
    /// Empty for a skipped controller.
    pub mode: String,
    pub status: Status,
    pub message: String,
    /// The figure the case is about: the variant's p50 (the baseline's when
    /// a binary is measured alone), µs.
    pub p50_us: Option<f64>,
    pub baseline_p50_us: Option<f64>,
    /// Console logs and QEMU traces of the boots that measured it.
    pub logs: Vec<PathBuf>,
    /// The disks' configuration, when not the default: named in the case.
    pub config: Option<contract::Config>,
}

impl Case {
    /// The case's name within its suite: `ahci.poll`, with the
    /// configuration first where it is not the default
    /// (`threads-none.ahci.poll`).
    pub fn name(&self) -> String {
        let mut parts: Vec<String> = self.config.iter().map(|c| c.slug()).collect();
        parts.push(self.controller.clone());
        if !self.mode.is_empty() {
            parts.push(self.mode.clone());
        }
        parts.join(".")
    }

    /// The dotted test path, e.g. `io_uring_idle.stall.ahci.poll`.
    pub fn path(&self) -> String {
        format!("io_uring_idle.stall.{}", self.name())
    }
}

/// The status of one finding in a variant that changes `changes`.
fn status_of(f: Finding, changes: Changes) -> Status {
    match f {
        Finding::Affected | Finding::NotAffected => Status::Pass,
        Finding::Regression => Status::Fail,
        // A QEMU patch is there to cure the stall; a kernel patch on a
        // QEMU that stalls leaves it as it was, which is no fault of its.
        Finding::Uncured if changes == Changes::Qemu => Status::Fail,
        Finding::Uncured => Status::Pass,
        Finding::Inconclusive => Status::Error,
    }
}

fn logs_of(doc: &Report, variants: &[&str], guest: Guest) -> Vec<PathBuf> {
    doc.guest_runs
        .iter()
        .filter(|r| r.guest == guest && variants.contains(&r.variant.as_str()))
        .flat_map(|r| std::iter::once(r.console_log.clone()).chain(r.trace_log.clone()))
        .collect()
}

/// Every case of the report, variants in order, then skipped controllers.
pub fn of(doc: &Report) -> Vec<Case> {
    let mut out = Vec::new();
    if doc.variants.is_empty() {
        out.extend(binary_cases(doc));
    }
    for v in &doc.variants {
        out.extend(variant_cases(doc, v));
    }
    out.extend(skipped_cases(doc));
    let config = doc
        .params
        .as_ref()
        .map(|p| p.config)
        .filter(|c| !c.is_default());
    for c in &mut out {
        c.config = config;
    }
    out
}

/// One binary measured alone: a case per row, where a candidate slow
/// against the controls of its guest is the stall, present.
fn binary_cases(doc: &Report) -> Vec<Case> {
    doc.devices
        .iter()
        .map(|r| {
            let guest_rows: Vec<Row> = doc
                .devices
                .iter()
                .filter(|c| c.guest == r.guest)
                .cloned()
                .collect();
            let stalls = stalls_alone(r, single_reference(&guest_rows));
            Case {
                variant: BINARY.into(),
                changes: None,
                guest: Some(r.guest),
                controller: r.controller.clone(),
                mode: r.mode.clone(),
                status: if stalls { Status::Fail } else { Status::Pass },
                message: format!(
                    "p50 {:.2} ms{}",
                    r.baseline.p50_us / 1000.0,
                    if stalls { ": the stall is present" } else { "" }
                ),
                p50_us: Some(r.baseline.p50_us),
                baseline_p50_us: Some(r.baseline.p50_us),
                logs: logs_of(doc, &[BINARY, BASELINE], r.guest),
                config: None,
            }
        })
        .collect()
}

/// The (guest, mode) pairs a variant measured, guests in their order.
fn guest_modes(v: &VariantReport) -> Vec<(Guest, String)> {
    let mut keys: Vec<(Guest, String)> = v
        .devices
        .iter()
        .map(|r| (r.guest, r.mode.clone()))
        .collect();
    keys.sort_by_key(|(g, m)| (guest_rank(*g), m.clone()));
    keys.dedup();
    keys
}

/// A variant's cases: per guest and mode it measured.
fn variant_cases(doc: &Report, v: &VariantReport) -> Vec<Case> {
    guest_modes(v)
        .into_iter()
        .flat_map(|(guest, mode)| mode_cases(doc, v, guest, &mode))
        .collect()
}

/// A case per finding of a variant's rows of one guest and mode, against
/// its reference.
fn mode_cases(doc: &Report, v: &VariantReport, guest: Guest, mode: &str) -> Vec<Case> {
    let rows: Vec<Row> = v
        .devices
        .iter()
        .filter(|r| r.guest == guest && r.mode == mode && r.patched.is_some())
        .cloned()
        .collect();
    findings(&rows)
        .into_iter()
        .map(|f| {
            let row = rows.iter().find(|r| r.controller == f.controller);
            Case {
                variant: v.name.clone(),
                changes: Some(v.changes),
                guest: Some(guest),
                controller: f.controller.clone(),
                mode: mode.to_string(),
                status: status_of(f.finding(), v.changes),
                message: format!("{}: {}", f.finding().name(), f.reason),
                p50_us: row.and_then(|r| r.patched.as_ref()).map(|p| p.p50_us),
                baseline_p50_us: row.map(|r| r.baseline.p50_us),
                logs: logs_of(doc, &[v.name.as_str(), v.against.as_str()], guest),
                config: None,
            }
        })
        .collect()
}

/// A skipped case per controller not measured, under the first variant
/// (or `binary`).
fn skipped_cases(doc: &Report) -> Vec<Case> {
    let variant = doc
        .variants
        .first()
        .map(|v| v.name.clone())
        .unwrap_or_else(|| BINARY.into());
    doc.skipped
        .iter()
        .map(|s| Case {
            variant: variant.clone(),
            changes: None,
            guest: s.guest,
            controller: s.controller.clone(),
            mode: String::new(),
            status: Status::Skip,
            message: s.reason.clone(),
            p50_us: None,
            baseline_p50_us: None,
            logs: vec![],
            config: None,
        })
        .collect()
}
