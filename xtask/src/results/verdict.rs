//! The verdict: a typed value (its kind, accelerator and the grounds it
//! rests on: findings, batch totals (`batch`), each guest's or variant's own
//! verdict), composed when guests or variants are joined, and put into
//! words once (`Verdict::line`).

use contract::{Guest, Role};
use serde::{Deserialize, Serialize};

use crate::batch::{verdict_batch, BatchFigures};
use crate::failure::BootFailure;
use crate::findings::{findings, Finding, Judgement};
use crate::guest::Accel;
use crate::report::{Skipped, VerdictRecord};
use crate::rules::{MIN_BATCH_RATIO, MIN_RATIO, STALL_FACTOR};
use crate::samples::{of_guest, Row};
use crate::units::{ms, ratio_text};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Verified,
    NotVerified,
    Regression,
    Unaffected,
    StallPresent,
    Skipped,
}

impl Kind {
    /// How a verdict line of this kind begins.
    pub fn head(self) -> &'static str {
        match self {
            Kind::Verified => "FIX VERIFIED",
            Kind::NotVerified => "NOT VERIFIED",
            Kind::Regression => "REGRESSION",
            Kind::Unaffected => "UNAFFECTED",
            Kind::StallPresent => "STALL PRESENT",
            Kind::Skipped => "SKIPPED",
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Verified | Kind::Unaffected => 0,
            Kind::NotVerified | Kind::Regression | Kind::StallPresent => 1,
            Kind::Skipped => 4,
        }
    }

    /// Every kind, for readers that match a line's head.
    pub const ALL: [Kind; 6] = [
        Kind::Verified,
        Kind::NotVerified,
        Kind::Regression,
        Kind::Unaffected,
        Kind::StallPresent,
        Kind::Skipped,
    ];

    /// The kind a run's non-zero exit status stands for (the first kind
    /// with it; 0 is no verdict to tell apart).
    pub fn of_exit_code(code: i32) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| code != 0 && k.exit_code() == code)
    }

    /// The kind whose head `line` begins with.
    pub fn of_line(line: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| line.starts_with(k.head()))
    }
}

/// What a line that joins variants begins with.
pub const VARIANTS_HEAD: &str = "VARIANTS";

/// Whether a printed line is a verdict line (a kind's, or the variants').
pub fn is_verdict_line(line: &str) -> bool {
    Kind::of_line(line).is_some() || line.starts_with(VARIANTS_HEAD)
}

/// What a verdict rests on.
#[derive(Clone, Debug, PartialEq)]
pub enum Grounds {
    /// Baseline against patched: the controllers that regressed.
    Regressed(Vec<Judgement>),
    /// Inconclusive controllers (and stalls left uncured beside a cure).
    Unclear(Vec<Judgement>),
    /// No controller stalled and was cured: every finding.
    NothingCured(Vec<Judgement>),
    /// The cured controllers, and the ones that did not change.
    Cured {
        cured: Vec<Judgement>,
        unchanged: Vec<String>,
    },
    /// Batch totals that grew.
    BatchRegressed(Vec<BatchFigures>),
    /// The candidates' batch totals, every one cured.
    BatchCured(Vec<BatchFigures>),
    /// The candidates' batch totals, not all cured.
    BatchNotCured(Vec<BatchFigures>),
    /// One binary without a candidate and a control to hold it to.
    NoYardstick,
    /// One binary: each controller's slowest p50; every candidate healthy.
    Healthy(Vec<(String, f64)>),
    /// One binary: a candidate `times` slower than the slowest control.
    Stalls {
        figures: Vec<(String, f64)>,
        candidate: String,
        times: f64,
    },
    /// Each guest's own verdict, the full-size figure first.
    Guests(Vec<(Guest, Verdict)>),
    /// Each variant's verdict.
    Variants(Vec<(String, Verdict)>),
    /// A variant whose boots gave no results, or a kernel variant whose
    /// guest found no disk of some controllers.
    Broken {
        disks_lost: Vec<Skipped>,
        failed_boots: Vec<BootFailure>,
    },
    /// The QEMU tree never had `aio_add_sqe()`: nothing was measured.
    NeverStalled { qemu: String },
}

/// A verdict, as a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub kind: Kind,
    /// None when nothing was booted.
    pub accel: Option<Accel>,
    pub grounds: Grounds,
    /// Measured on a busy host: a verdict that did not verify says so.
    pub busy: bool,
}

impl Verdict {
    pub(crate) fn new(kind: Kind, accel: Accel, grounds: Grounds) -> Verdict {
        Verdict {
            kind,
            accel: Some(accel),
            grounds,
            busy: false,
        }
    }

    /// The verdict for a QEMU tree that never had the stall.
    pub fn never_stalled(qemu: String) -> Verdict {
        Verdict {
            kind: Kind::Skipped,
            accel: None,
            grounds: Grounds::NeverStalled { qemu },
            busy: false,
        }
    }

    /// A variant whose boots failed, or a kernel variant whose guest lost
    /// disks, regressed, whatever its figures say.
    pub fn broken(
        disks_lost: Vec<Skipped>,
        failed_boots: Vec<BootFailure>,
        accel: Accel,
    ) -> Verdict {
        let grounds = Grounds::Broken {
            disks_lost,
            failed_boots,
        };
        Verdict::new(Kind::Regression, accel, grounds)
    }

    /// The same verdict, marked as measured on a busy host or not.
    pub fn under_load(self, busy: bool) -> Verdict {
        Verdict { busy, ..self }
    }

    /// How the line begins: the kind's head, or what joins variants.
    fn head(&self) -> &'static str {
        match self.grounds {
            Grounds::Variants(_) => VARIANTS_HEAD,
            _ => self.kind.head(),
        }
    }

    /// The verdict in words, after its head and accelerator.
    fn body(&self) -> String {
        match &self.grounds {
            Grounds::Regressed(v) => reasons(v, "; "),
            Grounds::Unclear(v) => v
                .iter()
                .map(|c| format!("{}: {}", c.label(), c.reason))
                .collect::<Vec<_>>()
                .join("; "),
            Grounds::NothingCured(v) => format!(
                "no controller stalled in the baseline and was cured: {}; a cure needs >= {MIN_RATIO}x with every baseline round slower than every patched round",
                reasons(v, ", ")
            ),
            Grounds::Cured { cured, unchanged } => cured_body(cured, unchanged),
            Grounds::BatchRegressed(v) | Grounds::BatchCured(v) => batch(v),
            Grounds::BatchNotCured(v) => format!(
                "{}; a cure needs a total at least {MIN_BATCH_RATIO}x shorter with every baseline round slower than every patched round",
                if v.is_empty() { "no candidate controller measured".to_string() } else { batch(v) }
            ),
            Grounds::NoYardstick => "a candidate controller and a control are both needed".into(),
            Grounds::Healthy(f) => format!(
                "{}: every candidate is as healthy as the controls",
                figures(f)
            ),
            Grounds::Stalls {
                figures: f,
                candidate,
                times,
            } => format!(
                "{}: {candidate} is {times:.1}x slower than the controls",
                figures(f)
            ),
            Grounds::Guests(v) => v
                .iter()
                .map(|(g, own)| {
                    if own.kind == self.kind {
                        format!("{g} guest: {}", own.body())
                    } else {
                        format!("{g} guest: {}: {}", own.head(), own.body())
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            Grounds::Variants(v) => v
                .iter()
                .map(|(name, own)| format!("{name}: {}", own.head()))
                .collect::<Vec<_>>()
                .join("; "),
            Grounds::Broken {
                disks_lost,
                failed_boots,
            } => disks_lost
                .iter()
                .map(|s| format!("{}: no disk with this kernel ({})", s.controller, s.reason))
                .chain(failed_lines(failed_boots))
                .collect::<Vec<_>>()
                .join("; "),
            Grounds::NeverStalled { qemu } => format!(
                "QEMU {qemu} has no aio_add_sqe() and never had the stall: nothing to verify"
            ),
        }
    }

    /// The verdict line: `HEAD (ACCEL): why`, and on a busy host what load
    /// may have done.
    pub fn line(&self) -> String {
        let batch = matches!(
            self.grounds,
            Grounds::BatchRegressed(_) | Grounds::BatchCured(_) | Grounds::BatchNotCured(_)
        );
        let mut line = match self.accel {
            Some(a) => format!(
                "{} ({}{}): {}",
                self.head(),
                a.name(),
                if batch { ", batch" } else { "" },
                self.body()
            ),
            None => format!("{}: {}", self.head(), self.body()),
        };
        // A regression is only asked to be ruled out: beside two CPU hogs,
        // with QEMU at `guest::QEMU_NICE`, load made none in 40 runs here,
        // while the harmful patch was one in each.
        let why = match self.kind {
            _ if !self.busy => None,
            Kind::NotVerified => {
                Some("load is a likely cause, rerun with nothing else running on the machine")
            }
            Kind::Regression => {
                Some("rerun with nothing else running on the machine to rule load out")
            }
            _ => None,
        };
        if let Some(why) = why {
            line.push_str(&format!(
                "; the host was busy during the run (see above): {why}"
            ));
        }
        line
    }

    /// The verdict as the report's JSON carries it.
    pub fn record(&self) -> VerdictRecord {
        VerdictRecord {
            kind: self.kind,
            line: self.line(),
        }
    }
}

/// The findings' reasons, joined by `sep`.
fn reasons(v: &[Judgement], sep: &str) -> String {
    v.iter()
        .map(|c| c.reason.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// Each controller's batch figures, as `BatchFigures::phrase` words them.
fn batch(v: &[BatchFigures]) -> String {
    v.iter()
        .map(BatchFigures::phrase)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each controller's slowest p50, one binary alone.
fn figures(v: &[(String, f64)]) -> String {
    v.iter()
        .map(|(n, p50)| format!("{n} p50 {}", ms(*p50)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Failed boots for a verdict: each kind of failure once, with the boots
/// that had it.
fn failed_lines(failed: &[BootFailure]) -> Vec<String> {
    let mut by_what: Vec<(String, Vec<&str>)> = Vec::new();
    for f in failed {
        let what = f.what();
        match by_what.iter_mut().find(|(w, _)| *w == what) {
            Some((_, labels)) => labels.push(&f.label),
            None => by_what.push((what, vec![&f.label])),
        }
    }
    by_what
        .into_iter()
        .map(|(what, labels)| format!("{what} ({})", labels.join(", ")))
        .collect()
}

/// The cures of a verified fix: every mode of a few controllers, one
/// figure each of many; the unchanged ones; the cause of the first.
fn cured_body(cured: &[Judgement], unchanged: &[String]) -> String {
    let cures: Vec<String> = if cured.len() <= 2 {
        cured.iter().map(|c| c.reason.to_string()).collect()
    } else {
        let each: Vec<String> = cured
            .iter()
            .map(|c| {
                format!(
                    "{} {} -> {} ({})",
                    c.label(),
                    ms(c.shown.baseline_p50_us),
                    ms(c.shown.patched_p50_us),
                    ratio_text(c.shown.ratio)
                )
            })
            .collect();
        vec![format!(
            "{} controllers stall without the fix and are cured in every mode: {}",
            cured.len(),
            each.join(", ")
        )]
    };
    let cause = cured
        .iter()
        .find_map(|c| c.cause.as_ref())
        .map(|c| format!(". Cause: {c}"))
        .unwrap_or_default();
    format!(
        "{}{}{cause}",
        cures.join(", "),
        if unchanged.is_empty() {
            String::new()
        } else {
            format!("; {} unchanged within noise", unchanged.join(" and "))
        }
    )
}

/// Baseline against patched: a finding per controller, then the verdict.
pub fn verdict_pair(rows: &[Row], accel: Accel) -> Verdict {
    let f = findings(rows);
    let named =
        |k: Finding| -> Vec<Judgement> { f.iter().filter(|c| c.finding() == k).cloned().collect() };
    let regressions = named(Finding::Regression);
    if !regressions.is_empty() {
        return Verdict::new(Kind::Regression, accel, Grounds::Regressed(regressions));
    }
    // A stall the patch leaves, beside one it cures, is not a verified fix.
    let cured = named(Finding::Affected);
    let mut unclear = named(Finding::Inconclusive);
    if !cured.is_empty() {
        unclear.extend(named(Finding::Uncured));
    }
    if !unclear.is_empty() {
        return Verdict::new(Kind::NotVerified, accel, Grounds::Unclear(unclear));
    }
    if cured.is_empty() {
        return Verdict::new(Kind::NotVerified, accel, Grounds::NothingCured(f));
    }
    let unchanged = named(Finding::NotAffected)
        .into_iter()
        .map(|c| c.label())
        .collect();
    Verdict::new(Kind::Verified, accel, Grounds::Cured { cured, unchanged })
}

/// One binary alone: the yardstick a candidate's p50 is held to, the
/// slowest control's (a stall must stand out even from that), and whether
/// `r` stalls against it. One definition for the verdict and the CI cases.
pub fn single_reference(rows: &[Row]) -> Option<f64> {
    rows.iter()
        .filter(|r| r.role == Some(Role::Control))
        .map(|r| r.baseline.p50_us)
        .reduce(f64::max)
}

pub fn stalls_alone(r: &Row, reference: Option<f64>) -> bool {
    r.role == Some(Role::Candidate)
        && reference.is_some_and(|x| r.baseline.p50_us > STALL_FACTOR * x)
}

/// One binary, no patch: does any candidate stall against the controls?
pub fn verdict_single(rows: &[Row], accel: Accel) -> Verdict {
    let worst = |role: Role| {
        rows.iter()
            .filter(|r| r.role == Some(role))
            .max_by(|x, y| x.baseline.p50_us.total_cmp(&y.baseline.p50_us))
    };
    let (Some(candidate), Some(control)) = (worst(Role::Candidate), worst(Role::Control)) else {
        return Verdict::new(Kind::NotVerified, accel, Grounds::NoYardstick);
    };
    let mut names: Vec<&str> = rows.iter().map(|r| r.controller.as_str()).collect();
    names.dedup();
    let figures: Vec<(String, f64)> = names
        .iter()
        .map(|n| {
            let p50 = rows
                .iter()
                .filter(|r| r.controller == *n)
                .map(|r| r.baseline.p50_us)
                .fold(0.0, f64::max);
            (n.to_string(), p50)
        })
        .collect();
    if !stalls_alone(candidate, single_reference(rows)) {
        Verdict::new(Kind::Unaffected, accel, Grounds::Healthy(figures))
    } else {
        let grounds = Grounds::Stalls {
            figures,
            candidate: candidate.controller.clone(),
            times: candidate.baseline.p50_us / control.baseline.p50_us,
        };
        Verdict::new(Kind::StallPresent, accel, grounds)
    }
}

/// The verdict over several variants: a regression anywhere is one; the
/// run verifies only when every variant does.
pub fn overall(verdicts: Vec<(String, Verdict)>, accel: Accel) -> Verdict {
    let kind = if verdicts.iter().any(|(_, v)| v.kind == Kind::Regression) {
        Kind::Regression
    } else if verdicts.iter().all(|(_, v)| v.kind == Kind::Verified) {
        Kind::Verified
    } else {
        Kind::NotVerified
    };
    Verdict::new(kind, accel, Grounds::Variants(verdicts))
}

/// The verdict over both guests, the full-size figure (the probe's) first:
/// a regression in either is one; the run verifies only when each guest
/// does. Each guest's verdict is kept whole.
pub fn across_guests(mut verdicts: Vec<(Guest, Verdict)>, accel: Accel) -> Verdict {
    if verdicts.len() == 1 {
        return verdicts.remove(0).1;
    }
    let first = verdicts.first().map(|(_, v)| v.kind);
    let kind = if verdicts.iter().all(|(_, v)| Some(v.kind) == first) {
        first.unwrap_or(Kind::NotVerified)
    } else if verdicts.iter().any(|(_, v)| v.kind == Kind::Regression) {
        Kind::Regression
    } else if verdicts.iter().any(|(_, v)| v.kind == Kind::StallPresent) {
        // One binary: a stall any guest shows is present.
        Kind::StallPresent
    } else {
        Kind::NotVerified
    };
    Verdict::new(kind, accel, Grounds::Guests(verdicts))
}

/// What `decide` found: the findings, the joined verdict, and each
/// guest's own verdict.
#[derive(Clone, Debug)]
pub struct Decision {
    pub findings: Vec<Judgement>,
    pub verdict: Verdict,
    pub guests: Vec<GuestVerdict>,
}

/// One guest's verdict on a variant, before the guests are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestVerdict {
    pub guest: Guest,
    pub kind: Kind,
}

/// Findings and the verdict of one variant's rows, decided per guest (a
/// control is a yardstick beside disks of its own guest), the verdicts
/// joined in `guests`' order (the probe's full-size figure first).
/// `paired`: the workload of a baseline against a variant; `None` for one
/// binary alone, which has no findings.
pub fn decide(
    rows: &[Row],
    guests: &[Guest],
    paired: Option<contract::Workload>,
    accel: Accel,
) -> Decision {
    let mut found = Vec::new();
    let mut verdicts = Vec::new();
    for &g in guests {
        let mine = of_guest(rows, g);
        if mine.is_empty() {
            continue;
        }
        let v = match paired {
            None => verdict_single(&mine, accel),
            // A flush, or a read beside the neighbour, is judged as a read.
            Some(
                contract::Workload::Latency
                | contract::Workload::Flush
                | contract::Workload::Neighbour,
            ) => verdict_pair(&mine, accel),
            Some(contract::Workload::Batch) => verdict_batch(&mine, accel),
        };
        if paired.is_some() {
            found.extend(findings(&mine));
        }
        verdicts.push((g, v));
    }
    if verdicts.is_empty() {
        // No guest measured anything: the rules themselves say why.
        let v = match paired {
            None => verdict_single(rows, accel),
            Some(_) => verdict_pair(rows, accel),
        };
        return Decision {
            findings: found,
            verdict: v,
            guests: vec![],
        };
    }
    let guests = verdicts
        .iter()
        .map(|(guest, v)| GuestVerdict {
            guest: *guest,
            kind: v.kind,
        })
        .collect();
    Decision {
        findings: found,
        verdict: across_guests(verdicts, accel),
        guests,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::findings::findings;
    use crate::samples::testing::{build, build_traced, collect, rec, runs, Traced};
    use crate::samples::{rows, Samples};

    #[test]
    fn the_queue_time_decides_where_load_inflated_the_controls() {
        // The loaded Debian-kernel run that once said NOT VERIFIED: AHCI
        // 1.99 -> 0.85 ms, the controls 0.54-0.70 ms in both builds, so the
        // guest's figures alone put AHCI under 4x a control; QEMU's trace
        // had AHCI queued 1.00 -> 0.13 ms, the controls 0.04 ms.
        let round: &[Traced] = &[
            ("ahci", 1990, 850, 1000, 130),
            ("virtio_blk", 540, 600, 40, 40),
            ("nvme", 700, 650, 40, 40),
        ];
        let r = build_traced(&[round, round]);
        let f = findings(&r);
        assert_eq!(f[0].finding(), Finding::Affected, "{f:#?}");
        let v = verdict_pair(&r, Accel::Tcg);
        assert_eq!(v.kind, Kind::Verified, "{}", v.line());
        // Without the trace the same guest figures stay unproven.
        let plain: &[(&str, u32, u32)] = &[
            ("ahci", 1990, 850),
            ("virtio_blk", 540, 600),
            ("nvme", 700, 650),
        ];
        let untraced = build(&[plain, plain]);
        assert_ne!(findings(&untraced)[0].finding(), Finding::Affected);
        // A null patch leaves the queue time where it was: never a cure,
        // even if the guest's figures had halved by chance.
        let null: &[Traced] = &[
            ("ahci", 1990, 850, 1000, 990),
            ("virtio_blk", 540, 600, 40, 40),
            ("nvme", 700, 650, 40, 40),
        ];
        let v = verdict_pair(&build_traced(&[null, null]), Accel::Tcg);
        assert_eq!(v.kind, Kind::NotVerified, "{}", v.line());
        // A null patch on a QEMU that stalls by 8 ms: the trace says the
        // stall is there in both builds, which is a finding, not a doubt.
        let stalled: &[Traced] = &[
            ("ahci", 7990, 7990, 7540, 7480),
            ("virtio_blk", 250, 260, 10, 10),
            ("nvme", 250, 260, 10, 20),
        ];
        let r = build_traced(&[stalled, stalled]);
        let f = findings(&r);
        assert_eq!(f[0].finding(), Finding::Uncured, "{f:#?}");
        assert!(
            f[0].reason
                .to_string()
                .contains("queued in QEMU 7.54 ms -> 7.48 ms"),
            "{}",
            f[0].reason
        );
        assert_eq!(verdict_pair(&r, Accel::Tcg).kind, Kind::NotVerified);
    }

    #[test]
    fn a_control_slow_in_a_loaded_boot_but_not_queued_is_not_a_stall() {
        // Probe guest beside two CPU hogs (QEMU at nice 0): NVMe's baseline
        // boot waited the host's 2 ms scheduling slice on every read, while
        // its queue time stayed a control's; the guest alone called it
        // "affected" (2.00 -> 0.04 ms, over 4x virtio-blk's 0.19 ms).
        let round: &[Traced] = &[
            ("ahci", 497_650, 90, 497_338, 35),
            ("virtio_blk", 190, 40, 26, 8),
            ("nvme", 2000, 40, 29, 8),
        ];
        let r = build_traced(&[round]);
        let f = findings(&r);
        let nvme = f.iter().find(|c| c.controller == "nvme").unwrap();
        assert_eq!(nvme.finding(), Finding::NotAffected, "{nvme:#?}");
        assert!(
            nvme.reason.to_string().contains("not spent queued in QEMU"),
            "{}",
            nvme.reason
        );
        assert_eq!(f[0].finding(), Finding::Affected);
        let v = verdict_pair(&r, Accel::Tcg);
        assert_eq!(v.kind, Kind::Verified, "{}", v.line());
        assert!(
            v.line().contains("nvme unchanged within noise"),
            "{}",
            v.line()
        );
        // A cure that shows in the guest but whose queue time did not fall
        // in every round is not one.
        let r2: &[Traced] = &[
            ("ahci", 497_650, 90, 497_338, 497_500),
            ("virtio_blk", 190, 40, 26, 8),
            ("nvme", 200, 40, 29, 8),
        ];
        let v = verdict_pair(&build_traced(&[round, r2]), Accel::Tcg);
        assert_eq!(v.kind, Kind::NotVerified, "{}", v.line());
    }

    #[test]
    fn fix_verified_when_the_candidate_drops_and_controls_hold() {
        let r = runs(8000, 500, 300, 320);
        assert_eq!(r[0].controller, "ahci");
        assert_eq!(r[0].baseline.n, 100);
        let v = verdict_pair(&r, Accel::Tcg);
        assert_eq!(v.kind, Kind::Verified, "{}", v.line());
        assert!(
            v.line()
                .starts_with("FIX VERIFIED (tcg): ahci p50 8.00 ms -> 0.50 ms (16.0x, poll)"),
            "{}",
            v.line()
        );
        assert!(
            v.line().ends_with("virtio_blk unchanged within noise"),
            "{}",
            v.line()
        );
        let f = findings(&r);
        assert_eq!(
            f.iter()
                .map(|c| (c.controller.as_str(), c.finding()))
                .collect::<Vec<_>>(),
            [
                ("ahci", Finding::Affected),
                ("virtio_blk", Finding::NotAffected)
            ]
        );
    }

    #[test]
    fn small_improvement_is_not_verified_and_regression_is_flagged() {
        let v = verdict_pair(&runs(800, 600, 300, 300), Accel::Tcg);
        assert_eq!(v.kind, Kind::NotVerified, "{}", v.line());
        let v = verdict_pair(&runs(8000, 500, 300, 1300), Accel::Kvm);
        assert_eq!(v.kind, Kind::Regression);
        assert!(
            v.line().contains("virtio_blk p50 0.30 ms -> 1.30 ms"),
            "{}",
            v.line()
        );
        // The wander measured between boots is not a regression.
        let v = verdict_pair(&runs(8000, 500, 120, 290), Accel::Tcg);
        assert_eq!(v.kind, Kind::Verified, "{}", v.line());
    }

    #[test]
    fn a_patch_that_changes_nothing_never_verifies() {
        // The null patch: the candidate stalls in both builds.
        let v = verdict_pair(&runs(8000, 7990, 300, 310), Accel::Tcg);
        assert_eq!(v.kind, Kind::NotVerified, "{}", v.line());
        assert!(v.line().contains("slow in both builds"), "{}", v.line());
        // And with no controls to compare against, nothing was cured.
        let v = verdict_pair(
            &build(&[&[("ahci", 8000, 7990)], &[("ahci", 8000, 8010)]]),
            Accel::Tcg,
        );
        assert_eq!(v.kind, Kind::NotVerified, "{}", v.line());
        assert!(v.line().contains("no controller stalled"), "{}", v.line());
    }

    #[test]
    fn a_control_that_jumped_in_one_baseline_boot_is_noise_not_a_cure() {
        // Measured: NVMe poll baseline rounds 0.56 and 3.14 ms, patched 0.33
        // and 0.29 ms: pooled 6x and separated, but only one boot was slow.
        let r = build(&[
            &[
                ("ahci", 7987, 600),
                ("virtio_blk", 328, 144),
                ("nvme", 561, 333),
            ],
            &[
                ("ahci", 7983, 483),
                ("virtio_blk", 252, 270),
                ("nvme", 3139, 287),
            ],
        ]);
        let f = findings(&r);
        assert_eq!(f[0].finding(), Finding::Affected, "{f:?}");
        assert_eq!(f[2].finding(), Finding::NotAffected, "{f:?}");
        assert_eq!(verdict_pair(&r, Accel::Tcg).kind, Kind::Verified);
    }

    #[test]
    fn slow_in_both_builds_is_the_tables_call() {
        // Measured: the SD card (a control: synchronous reads) at 1.3-2 ms in
        // both builds against 0.11 ms controls; a candidate alike would be an
        // uncured stall, or slow emulation: undecidable.
        let r = build(&[
            &[
                ("ahci", 8000, 300),
                ("sdhci", 1340, 1990),
                ("nvme", 110, 200),
                ("lsi", 8000, 7990),
            ],
            &[
                ("ahci", 8000, 300),
                ("sdhci", 1400, 1900),
                ("nvme", 120, 190),
                ("lsi", 8000, 7980),
            ],
        ]);
        let f = findings(&r);
        let of = |n: &str| f.iter().find(|c| c.controller == n).unwrap().finding();
        assert_eq!(of("sdhci"), Finding::NotAffected, "{f:?}");
        assert_eq!(of("lsi"), Finding::Inconclusive, "{f:?}");
        assert_eq!(verdict_pair(&r, Accel::Tcg).kind, Kind::NotVerified);
    }

    #[test]
    fn noise_on_a_healthy_control_is_not_a_regression() {
        // Pooled patched p50 is 2x baseline, but the rounds interleave.
        let r = build(&[
            &[("ahci", 8000, 300), ("nvme", 150, 450)],
            &[("ahci", 8000, 300), ("nvme", 460, 470)],
        ]);
        assert_eq!(verdict_pair(&r, Accel::Tcg).kind, Kind::Verified);
    }

    #[test]
    fn one_round_calls_a_slowdown_every_request_pays_but_not_a_noisy_median() {
        // The harmful patch's shape, as measured in one round: virtio-blk
        // 0.83 -> 1.59 ms p50, the patched fast tail at 1.50 ms.
        let spread = |lo: u32, hi: u32| {
            (0..100)
                .map(|i| lo + (hi - lo) * i / 99)
                .collect::<Vec<_>>()
        };
        let pair = |virtio_base: Vec<u32>, virtio_patched: Vec<u32>| {
            let mut c = BTreeMap::new();
            collect(
                &mut c,
                &[
                    rec("ahci", "poll", vec![8000; 100]),
                    rec("virtio_blk", "poll", virtio_base),
                ],
                "baseline",
            );
            collect(
                &mut c,
                &[
                    rec("ahci", "poll", vec![500; 100]),
                    rec("virtio_blk", "poll", virtio_patched),
                ],
                "patched",
            );
            verdict_pair(&rows(&c, "baseline", Some("patched")), Accel::Tcg)
        };
        let v = pair(spread(510, 1150), spread(1460, 1720));
        assert_eq!(v.kind, Kind::Regression, "{}", v.line());
        assert!(v.line().contains("virtio_blk"), "{}", v.line());
        // The noisiest boot measured for a fixed build: virtio-blk 0.29 ->
        // 0.90 ms p50, with its fast tail at 0.70 ms: not a regression.
        let v = pair(spread(160, 420), spread(550, 1250));
        assert_eq!(v.kind, Kind::Verified, "{}", v.line());
        // Without the slowdown, one round verifies a clear improvement.
        let r = build(&[&[("ahci", 2000, 300), ("nvme", 200, 210)]]);
        assert_eq!(verdict_pair(&r, Accel::Tcg).kind, Kind::Verified);
    }

    #[test]
    fn a_slowdown_only_some_requests_pay_is_never_verified() {
        // 60% of the requests 5 ms slower: the median moves, the fast tail
        // does not. One round: inconclusive; two separating rounds: a
        // regression.
        let half = |fast: u32, slow: u32| {
            let mut v = vec![fast; 40];
            v.extend(vec![slow; 60]);
            v
        };
        let mut c = BTreeMap::new();
        let base = |c: &mut Samples| {
            collect(
                c,
                &[
                    rec("ahci", "poll", vec![8000; 100]),
                    rec("virtio_blk", "poll", vec![200; 100]),
                ],
                "baseline",
            )
        };
        let patched = |c: &mut Samples| {
            collect(
                c,
                &[
                    rec("ahci", "poll", vec![300; 100]),
                    rec("virtio_blk", "poll", half(250, 5000)),
                ],
                "patched",
            )
        };
        base(&mut c);
        patched(&mut c);
        let v = verdict_pair(&rows(&c, "baseline", Some("patched")), Accel::Tcg);
        assert_eq!(v.kind, Kind::NotVerified, "{}", v.line());
        base(&mut c);
        patched(&mut c);
        let v = verdict_pair(&rows(&c, "baseline", Some("patched")), Accel::Tcg);
        assert_eq!(v.kind, Kind::Regression, "{}", v.line());
    }

    #[test]
    fn a_slowdown_that_not_every_round_shows_is_inconclusive() {
        let r = build(&[
            &[("ahci", 8000, 300), ("nvme", 200, 900)],
            &[("ahci", 8000, 300), ("nvme", 1000, 900)],
        ]);
        let v = verdict_pair(&r, Accel::Tcg);
        assert_eq!(v.kind, Kind::NotVerified, "{}", v.line());
        assert!(v.line().contains("not in every round"), "{}", v.line());
    }

    #[test]
    fn rounds_must_separate() {
        // Pooled ratio is large, but one patched round is as slow as baseline.
        let mut c = BTreeMap::new();
        collect(&mut c, &[rec("ahci", "poll", vec![8000; 50])], "baseline");
        collect(&mut c, &[rec("ahci", "poll", vec![8000; 50])], "baseline");
        collect(&mut c, &[rec("ahci", "poll", vec![100; 90])], "patched");
        collect(&mut c, &[rec("ahci", "poll", vec![9000; 10])], "patched");
        assert_eq!(
            verdict_pair(&rows(&c, "baseline", Some("patched")), Accel::Tcg).kind,
            Kind::NotVerified
        );
    }

    #[test]
    fn single_binary_health() {
        let mut c = BTreeMap::new();
        collect(
            &mut c,
            &[
                rec("ahci", "poll", vec![400; 10]),
                rec("virtio_blk", "poll", vec![180; 10]),
                rec("nvme", "poll", vec![180; 10]),
            ],
            "binary",
        );
        let v = verdict_single(&rows(&c, "binary", None), Accel::Tcg);
        assert_eq!(v.kind, Kind::Unaffected, "{}", v.line());
        let mut c = BTreeMap::new();
        collect(
            &mut c,
            &[
                rec("ahci", "poll", vec![8000; 10]),
                rec("virtio_blk", "poll", vec![400; 10]),
            ],
            "binary",
        );
        let v = verdict_single(&rows(&c, "binary", None), Accel::Tcg);
        assert_eq!(v.kind, Kind::StallPresent, "{}", v.line());
        // Exact quantiles: 8000/400 prints as 20.0x.
        assert!(v.line().contains("ahci is 20.0x slower"), "{}", v.line());
    }

    #[test]
    fn an_unverified_verdict_on_a_busy_host_says_load_may_be_why() {
        // AHCI cured, virtio-blk unchanged: verified; nothing cured: not.
        let fixed = verdict_pair(&runs(8000, 500, 300, 320), Accel::Tcg);
        let same = verdict_pair(&runs(300, 300, 300, 320), Accel::Tcg);
        assert_eq!((fixed.kind, same.kind), (Kind::Verified, Kind::NotVerified));
        let nv = same.clone().under_load(true);
        assert!(nv.line().contains("load is a likely cause") && nv.kind == Kind::NotVerified);
        assert_eq!(nv.line(), format!("{}; the host was busy during the run (see above): load is a likely cause, rerun with nothing else running on the machine", same.line()));
        // A verified fix needs no excuse; a quiet host adds nothing.
        assert_eq!(fixed.clone().under_load(true).line(), fixed.line());
        let harm = verdict_pair(&runs(300, 300, 300, 2000), Accel::Tcg);
        assert_eq!(harm.kind, Kind::Regression, "{}", harm.line());
        assert_eq!(harm.clone().under_load(false).line(), harm.line());
        let r = harm.under_load(true);
        assert!(
            r.line().ends_with("to rule load out") && r.kind == Kind::Regression,
            "{}",
            r.line()
        );
    }

    /// A verdict's line less its `HEAD (ACCEL): `.
    fn body(v: &Verdict) -> String {
        v.line().split_once("): ").unwrap().1.to_string()
    }

    #[test]
    fn both_guests_verify_only_together_the_probe_first() {
        let probe = verdict_pair(&runs(497_500, 90, 90, 100), Accel::Tcg);
        let linux = verdict_pair(&runs(7990, 210, 200, 210), Accel::Tcg);
        assert_eq!((probe.kind, linux.kind), (Kind::Verified, Kind::Verified));
        let both = across_guests(
            vec![(Guest::Probe, probe.clone()), (Guest::Linux, linux.clone())],
            Accel::Tcg,
        );
        assert_eq!(both.kind, Kind::Verified);
        assert_eq!(
            both.line(),
            format!(
                "FIX VERIFIED (tcg): probe guest: {}; linux guest: {}",
                body(&probe),
                body(&linux)
            )
        );
        assert!(
            both.line()
                .starts_with("FIX VERIFIED (tcg): probe guest: ahci p50 497.5 ms -> 0.09 ms"),
            "{}",
            both.line()
        );
        // A guest whose verdict differs from the run's keeps its own head;
        // one regression is one.
        let unclear = verdict_pair(&runs(300, 300, 300, 320), Accel::Tcg);
        assert_eq!(unclear.kind, Kind::NotVerified);
        let mixed = across_guests(
            vec![
                (Guest::Probe, probe.clone()),
                (Guest::Linux, unclear.clone()),
            ],
            Accel::Tcg,
        );
        assert_eq!(mixed.kind, Kind::NotVerified);
        assert_eq!(
            mixed.line(),
            format!(
                "NOT VERIFIED (tcg): probe guest: FIX VERIFIED: {}; linux guest: {}",
                body(&probe),
                body(&unclear)
            )
        );
        let harm = verdict_pair(&runs(300, 300, 300, 2000), Accel::Tcg);
        assert_eq!(
            across_guests(
                vec![(Guest::Probe, probe.clone()), (Guest::Linux, harm)],
                Accel::Tcg
            )
            .kind,
            Kind::Regression
        );
        // One guest: its own verdict, unchanged.
        assert_eq!(
            across_guests(vec![(Guest::Probe, probe.clone())], Accel::Tcg),
            probe
        );
    }

    #[test]
    fn several_variants_verify_only_together() {
        let fix = verdict_pair(&runs(8000, 500, 300, 320), Accel::Tcg);
        let null = verdict_pair(&runs(8000, 8000, 300, 320), Accel::Tcg);
        let all = vec![("fix".to_string(), fix.clone()), ("null".to_string(), null)];
        let o = overall(all.clone(), Accel::Tcg);
        assert_eq!(o.kind, Kind::NotVerified);
        assert_eq!(
            o.line(),
            "VARIANTS (tcg): fix: FIX VERIFIED; null: NOT VERIFIED"
        );
        let harm = verdict_pair(&runs(8000, 500, 300, 2000), Accel::Tcg);
        let with_harm = vec![all[0].clone(), ("harm".into(), harm)];
        assert_eq!(overall(with_harm, Accel::Tcg).kind, Kind::Regression);
        assert_eq!(overall(all[..1].to_vec(), Accel::Tcg).kind, Kind::Verified);
    }

    #[test]
    fn heads_and_exit_codes_come_from_the_kind() {
        for k in Kind::ALL {
            assert_eq!(Kind::of_line(&format!("{} (tcg): x", k.head())), Some(k));
        }
        assert_eq!(Kind::of_line("VARIANTS (tcg): x"), None);
        assert_eq!(
            Verdict::never_stalled("7.2.22".into()).line(),
            "SKIPPED: QEMU 7.2.22 has no aio_add_sqe() and never had the stall: nothing to verify"
        );
        assert_eq!(Kind::Skipped.exit_code(), 4);
    }

    #[test]
    fn a_variants_failed_boots_are_named_once_per_kind() {
        use std::path::Path;
        let f = |label: &str, why: &str| BootFailure {
            label: label.into(),
            accel: Accel::Tcg,
            kind: crate::failure::Failure::BadExit { why: why.into() },
            printed: true,
            evidence: crate::failure::Evidence::read(Path::new("/none"), Path::new("/none")),
        };
        let failed = vec![
            f("patched-r1", "the guest powered off"),
            f("patched-r2", "the guest powered off"),
            f("probe-patched-r1", "QEMU crashed"),
        ];
        assert_eq!(
            failed_lines(&failed),
            [
                "the guest powered off (patched-r1, patched-r2)",
                "QEMU crashed (probe-patched-r1)"
            ]
        );
        let lost = Skipped {
            controller: "nvme".into(),
            reason: "no disk appeared".into(),
            guest: Some(Guest::Linux),
        };
        let v = Verdict::broken(vec![lost], failed, Accel::Tcg);
        assert_eq!(v.kind, Kind::Regression);
        assert_eq!(
            v.line(),
            "REGRESSION (tcg): nvme: no disk with this kernel (no disk appeared); the guest powered off (patched-r1, patched-r2); QEMU crashed (probe-patched-r1)"
        );
    }
}
