//! The verdict: a typed value (its kind, accelerator and the grounds it
//! rests on: findings, batch totals, each guest's or variant's own
//! verdict), composed when guests or variants are joined, and put into
//! words once (`Verdict::line`).

use contract::{Guest, Role};
use serde::{Deserialize, Serialize};

use crate::findings::{findings, Finding, Judgement};
use crate::guest::Accel;
use crate::report::{Skipped, VerdictRecord};
use crate::rules::{
    rounds_separate, BATCH_REGRESSION_FACTOR, MIN_BATCH_RATIO, MIN_RATIO, STALL_FACTOR,
};
use crate::samples::{of_guest, Row};
use crate::units::{mean, ms, ratio_text, secs_text};

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

    /// The kind whose head `line` begins with.
    pub fn of_line(line: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| line.starts_with(k.head()))
    }
}

/// One controller's batch totals, as a batch verdict quotes them.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchFigures {
    pub controller: String,
    pub mode: String,
    pub baseline_total_ms: f64,
    pub patched_total_ms: f64,
    /// Each read's time queued in QEMU (p50), baseline and patched.
    pub queued_us: Option<(f64, f64)>,
}

impl BatchFigures {
    fn of(r: &Row) -> BatchFigures {
        BatchFigures {
            controller: r.controller.clone(),
            mode: r.mode.clone(),
            baseline_total_ms: mean(&r.baseline_round_total_ms),
            patched_total_ms: mean(&r.patched_round_total_ms),
            queued_us: match (&r.host_baseline, &r.host_patched) {
                (Some(b), Some(p)) => Some((b.p50_us, p.p50_us)),
                _ => None,
            },
        }
    }
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
    /// A kernel variant's guest found no disk of these controllers.
    DisksLost(Vec<Skipped>),
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
    fn new(kind: Kind, accel: Accel, grounds: Grounds) -> Verdict {
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

    /// A kernel variant whose guest lost disks regressed, whatever its
    /// figures say.
    pub fn disks_lost(lost: Vec<Skipped>, accel: Accel) -> Verdict {
        Verdict::new(Kind::Regression, accel, Grounds::DisksLost(lost))
    }

    /// The same verdict, marked as measured on a busy host or not.
    pub fn under_load(self, busy: bool) -> Verdict {
        Verdict { busy, ..self }
    }

    /// How the line begins: the kind's head, or what joins variants.
    fn head(&self) -> &'static str {
        match self.grounds {
            Grounds::Variants(_) => "VARIANTS",
            _ => self.kind.head(),
        }
    }

    /// The verdict in words, after its head and accelerator.
    fn body(&self) -> String {
        let reasons = |v: &[Judgement], sep: &str| -> String {
            v.iter()
                .map(|c| c.reason.to_string())
                .collect::<Vec<_>>()
                .join(sep)
        };
        let batch = |v: &[BatchFigures]| -> String {
            v.iter().map(batch_phrase).collect::<Vec<_>>().join(", ")
        };
        let figures = |v: &[(String, f64)]| -> String {
            v.iter()
                .map(|(n, p50)| format!("{n} p50 {}", ms(*p50)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.grounds {
            Grounds::Regressed(v) => reasons(v, "; "),
            Grounds::Unclear(v) => v
                .iter()
                .map(|c| format!("{}: {}", c.controller, c.reason))
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
            Grounds::DisksLost(v) => v
                .iter()
                .map(|s| format!("{}: no disk with this kernel ({})", s.controller, s.reason))
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
                    c.controller,
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

fn batch_phrase(b: &BatchFigures) -> String {
    let host = match b.queued_us {
        Some((hb, hp)) => format!(
            "; each read queued in QEMU {} -> {} (host trace)",
            ms(hb),
            ms(hp)
        ),
        None => String::new(),
    };
    format!(
        "{} total {} -> {} ({:.2}x, {}{host})",
        b.controller,
        secs_text(b.baseline_total_ms),
        secs_text(b.patched_total_ms),
        b.baseline_total_ms / b.patched_total_ms,
        b.mode
    )
}

/// Baseline against patched: a finding per controller, then the verdict.
pub fn verdict_pair(rows: &[Row], accel: Accel) -> Verdict {
    let f = findings(rows);
    let named = |k: Finding| -> Vec<Judgement> {
        f.iter().filter(|c| c.finding() == k).cloned().collect()
    };
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
        .map(|c| c.controller)
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

/// Batch workload, baseline against patched, on total times: a candidate
/// is cured when its total drops by MIN_BATCH_RATIO with every baseline
/// round slower than every patched round; anything whose total grows by
/// BATCH_REGRESSION_FACTOR with the rounds separated is a regression.
pub fn verdict_batch(rows: &[Row], accel: Accel) -> Verdict {
    let judged: Vec<&Row> = rows
        .iter()
        .filter(|r| !r.baseline_round_total_ms.is_empty() && !r.patched_round_total_ms.is_empty())
        .collect();
    let regressed: Vec<BatchFigures> = judged
        .iter()
        .filter(|r| {
            r.baseline_round_total_ms.len() >= 2
                && mean(&r.patched_round_total_ms)
                    > BATCH_REGRESSION_FACTOR * mean(&r.baseline_round_total_ms)
                && rounds_separate(&r.patched_round_total_ms, &r.baseline_round_total_ms)
        })
        .map(|r| BatchFigures::of(r))
        .collect();
    if !regressed.is_empty() {
        return Verdict::new(Kind::Regression, accel, Grounds::BatchRegressed(regressed));
    }
    let candidates: Vec<&Row> = judged
        .iter()
        .copied()
        .filter(|r| r.role == Some(Role::Candidate))
        .collect();
    let cured = |r: &Row| {
        mean(&r.baseline_round_total_ms) >= MIN_BATCH_RATIO * mean(&r.patched_round_total_ms)
            && rounds_separate(&r.baseline_round_total_ms, &r.patched_round_total_ms)
    };
    let figures: Vec<BatchFigures> = candidates.iter().map(|r| BatchFigures::of(r)).collect();
    if !candidates.is_empty() && candidates.iter().all(|r| cured(r)) {
        Verdict::new(Kind::Verified, accel, Grounds::BatchCured(figures))
    } else {
        Verdict::new(Kind::NotVerified, accel, Grounds::BatchNotCured(figures))
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
            Some(contract::Workload::Latency) => verdict_pair(&mine, accel),
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
