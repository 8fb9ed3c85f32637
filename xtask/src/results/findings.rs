//! A finding per controller, baseline against patched: which rule fired
//! for each of its modes, as a typed value with the figures it rests on
//! (`Reason`), and the same in words (its `Display`, the one place a
//! finding becomes text).

use std::fmt;

use contract::{controllers, Guest, Role, Workload};
use serde::{Deserialize, Serialize};

use crate::report::ControllerFinding;
use crate::rules::{
    rounds_separate, HOST_STALL_FACTOR, MEDIAN_REGRESSION_FACTOR, MIN_RATIO, REGRESSION_FACTOR,
    REGRESSION_SLACK_US, STALL_FACTOR,
};
use crate::samples::Row;
use crate::units::{ms, ratio_text};

/// What was measured of one controller, baseline against patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// The baseline stalls and the patch cures it, in every mode.
    Affected,
    /// Baseline and patched alike, and not slow against the controls.
    NotAffected,
    /// The patch made it slower, in every round.
    Regression,
    /// It stalls in both builds, and QEMU's trace shows the stall in both:
    /// the patch does not cure it (a null patch, or a fix that misses it).
    Uncured,
    /// Anything else: the reason says what.
    Inconclusive,
}

impl Finding {
    pub fn name(self) -> &'static str {
        match self {
            Finding::Affected => "affected",
            Finding::NotAffected => "not affected",
            Finding::Regression => "regression",
            Finding::Uncured => "stalls, uncured",
            Finding::Inconclusive => "inconclusive",
        }
    }
}

/// One mode of a controller, as a finding quotes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModeFigures {
    pub controller: String,
    pub mode: String,
    pub baseline_p50_us: f64,
    pub patched_p50_us: f64,
    pub ratio: Option<f64>,
}

impl ModeFigures {
    fn of(r: &Row) -> ModeFigures {
        ModeFigures {
            controller: r.label(),
            mode: r.mode.clone(),
            baseline_p50_us: r.baseline.p50_us,
            patched_p50_us: r.patched.as_ref().map(|p| p.p50_us).unwrap_or(0.0),
            ratio: r.p50_ratio,
        }
    }
}

/// One mode's time queued in QEMU (host trace, p50), baseline and patched,
/// beside the slowest control's.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueFigures {
    pub baseline_p50_us: Option<f64>,
    pub patched_p50_us: Option<f64>,
    pub controls_us: f64,
}

/// Which rule decided a controller's finding, with the modes it read.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// A mode got slower in every round: a regression.
    Slower(Vec<ModeFigures>),
    /// A mode got slower, but not in every round (or, in one round, in its
    /// median only).
    SlowerNotEveryRound(Vec<ModeFigures>),
    /// Stalled and cured in every mode.
    Cured(Vec<ModeFigures>),
    /// Cured in some modes only.
    CuredInOneMode(Vec<ModeFigures>),
    /// Queued in QEMU like a stall in both builds.
    StallsUncured(Vec<(ModeFigures, QueueFigures)>),
    /// Slow, or faster patched, in the guest, but not queued in QEMU.
    NotTheStall(Vec<(ModeFigures, QueueFigures)>),
    /// A control slow in both builds (with the fastest control's p50).
    EmulationCost(Vec<(ModeFigures, f64)>),
    /// A candidate slow in both builds (with the fastest control's p50).
    SlowInBoth(Vec<(ModeFigures, f64)>),
    /// Nothing moved.
    Unchanged(Vec<ModeFigures>),
}

impl Reason {
    pub fn finding(&self) -> Finding {
        match self {
            Reason::Slower(_) => Finding::Regression,
            Reason::SlowerNotEveryRound(_) | Reason::CuredInOneMode(_) | Reason::SlowInBoth(_) => {
                Finding::Inconclusive
            }
            Reason::Cured(_) => Finding::Affected,
            Reason::StallsUncured(_) => Finding::Uncured,
            Reason::NotTheStall(_) | Reason::EmulationCost(_) | Reason::Unchanged(_) => {
                Finding::NotAffected
            }
        }
    }
}

impl fmt::Display for ModeFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} p50 {} -> {} ({}, {})",
            self.controller,
            ms(self.baseline_p50_us),
            ms(self.patched_p50_us),
            ratio_text(self.ratio),
            self.mode
        )
    }
}

impl fmt::Display for QueueFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |v: Option<f64>| v.map(ms).unwrap_or_else(|| "-".into());
        write!(
            f,
            "queued in QEMU {} -> {} (controls {}, host trace)",
            side(self.baseline_p50_us),
            side(self.patched_p50_us),
            ms(self.controls_us)
        )
    }
}

fn joined<T>(items: &[T], each: impl Fn(&T) -> String) -> String {
    items.iter().map(each).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let modes = |v: &[ModeFigures]| joined(v, ModeFigures::to_string);
        let queued = |v: &[(ModeFigures, QueueFigures)]| joined(v, |(m, q)| format!("{m}: {q}"));
        let beside =
            |v: &[(ModeFigures, f64)]| joined(v, |(m, c)| format!("{m} (controls {})", ms(*c)));
        match self {
            Reason::Slower(v) | Reason::Cured(v) | Reason::Unchanged(v) => f.write_str(&modes(v)),
            Reason::SlowerNotEveryRound(v) => write!(
                f,
                "{} got slower, but not in every round (or, in one round, in its median only): rerun with more --rounds",
                modes(v)
            ),
            Reason::CuredInOneMode(v) => write!(
                f,
                "cured in one mode only: {}; needs >= {MIN_RATIO}x with every baseline round slower than every patched round in every mode",
                modes(v)
            ),
            Reason::StallsUncured(v) => write!(
                f,
                "stalls in both builds: {}: the patch does not cure it",
                queued(v)
            ),
            Reason::NotTheStall(v) => write!(
                f,
                "not the stall: {}: the guest's wait was not spent queued in QEMU",
                queued(v)
            ),
            Reason::EmulationCost(v) => {
                write!(f, "slow in both builds, as emulation cost: {}", beside(v))
            }
            Reason::SlowInBoth(v) => write!(
                f,
                "slow in both builds: {}: a stall the patch does not cure, or slow emulation",
                beside(v)
            ),
        }
    }
}

/// The cause, from the host trace: how much of the guest's wait the request
/// spent queued in QEMU before its completion, baseline and patched.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub controller: String,
    pub guest_p50_us: f64,
    pub queued_p50_us: f64,
    pub patched_queued_p50_us: f64,
}

impl Cause {
    fn of(r: &Row) -> Option<Cause> {
        let (hb, hp) = (r.host_baseline.as_ref()?, r.host_patched.as_ref()?);
        Some(Cause {
            controller: r.label(),
            guest_p50_us: r.baseline.p50_us,
            queued_p50_us: hb.p50_us,
            patched_queued_p50_us: hp.p50_us,
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} in the guest, {} of it queued in QEMU before completion (host trace); patched: {}",
            self.controller,
            ms(self.guest_p50_us),
            ms(self.queued_p50_us),
            ms(self.patched_queued_p50_us)
        )
    }
}

/// One controller's finding, with the figures of its slowest baseline mode.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// The guest whose rows decided it.
    pub guest: Guest,
    pub controller: String,
    /// The workload of its rows: a controller has a finding per workload.
    pub workload: Workload,
    pub role: Option<Role>,
    pub reason: Reason,
    /// The mode shown (the slowest in the baseline) and its figures.
    pub shown: ModeFigures,
    pub host_baseline_p50_us: Option<f64>,
    pub host_patched_p50_us: Option<f64>,
    pub cause: Option<Cause>,
    pub mechanism: &'static str,
}

impl Judgement {
    pub fn finding(&self) -> Finding {
        self.reason.finding()
    }

    /// Its controller, and its workload where that is not the default.
    pub fn label(&self) -> String {
        crate::samples::labelled(&self.controller, self.workload)
    }

    /// The finding as the report's JSON and tables carry it, in words.
    pub fn record(&self) -> ControllerFinding {
        ControllerFinding {
            guest: self.guest,
            controller: self.controller.clone(),
            workload: self.workload,
            role: self.role,
            finding: self.finding(),
            reason: self.reason.to_string(),
            mode: self.shown.mode.clone(),
            baseline_p50_us: self.shown.baseline_p50_us,
            patched_p50_us: self.shown.patched_p50_us,
            p50_ratio: self.shown.ratio,
            mechanism: self.mechanism.to_string(),
            host_baseline_p50_us: self.host_baseline_p50_us,
            host_patched_p50_us: self.host_patched_p50_us,
            cause: self.cause.as_ref().map(Cause::to_string),
        }
    }
}

/// The fastest control's baseline p50 in `mode`, other than `except`.
fn control_reference(rows: &[Row], mode: &str, except: &str) -> Option<f64> {
    rows.iter()
        .filter(|r| r.role == Some(Role::Control) && r.mode == mode && r.controller != except)
        .map(|r| r.baseline.p50_us)
        .reduce(f64::min)
}

/// What the host trace says of one row's queue time in QEMU.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Queued {
    /// Queued over HOST_STALL_FACTOR x the controls in the baseline, and
    /// cut at least MIN_RATIO by the patch in every round.
    StallCured,
    /// Queued like a stall, not cured.
    Stall,
    /// Not queued longer than a control's: whatever the guest waited for,
    /// it was not the stall.
    No,
}

/// The host-side queue time of `r` against the other controls' (same
/// guest, mode), when both builds were traced and a control was.
fn queued(all: &[Row], r: &Row) -> Option<(Queued, QueueFigures)> {
    let (hb, hp) = (r.host_baseline.as_ref()?, r.host_patched.as_ref()?);
    let controls = all
        .iter()
        .filter(|o| {
            o.role == Some(Role::Control) && o.mode == r.mode && o.controller != r.controller
        })
        .filter_map(|o| o.host_baseline.as_ref().map(|h| h.p50_us))
        .reduce(f64::max)?;
    let q = if hb.p50_us <= HOST_STALL_FACTOR * controls {
        Queued::No
    } else if hb.p50_us >= MIN_RATIO * hp.p50_us
        && rounds_separate(&r.host_baseline_round_p50_us, &r.host_patched_round_p50_us)
    {
        Queued::StallCured
    } else {
        Queued::Stall
    };
    let figures = QueueFigures {
        baseline_p50_us: Some(hb.p50_us),
        patched_p50_us: Some(hp.p50_us),
        controls_us: controls,
    };
    Some((q, figures))
}

/// What one mode of a controller showed.
enum ModeCall {
    Regressed(ModeFigures),
    Undecided(ModeFigures),
    Improved(ModeFigures),
    Elsewhere(ModeFigures, QueueFigures),
    Uncured(ModeFigures, QueueFigures),
    SlowInBoth(ModeFigures, f64),
}

/// The rules applied to one mode's row (`None`: nothing to say of it).
fn call_mode(all: &[Row], r: &Row) -> Option<ModeCall> {
    let p = r.patched.as_ref()?;
    let ratio = r.p50_ratio.unwrap_or(0.0);
    let reference = control_reference(all, &r.mode, &r.controller);
    let host = queued(all, r);
    // A stall shows in every baseline boot; a control whose p50 jumped in
    // one boot is noise, not a stall the patch cured. With a trace the
    // queue time says it directly, and load cannot fake it.
    let stalls = match &host {
        Some((q, _)) => *q == Queued::StallCured,
        None => reference.is_none_or(|x| {
            r.baseline_round_p50_us
                .iter()
                .all(|&b| b > STALL_FACTOR * x)
        }),
    };
    let guest_slow = reference.is_some_and(|x| r.baseline.p50_us > STALL_FACTOR * x);
    // Every request slower: the fast tail moved (decides in one round).
    let tail_slower = p.p10_us > r.baseline.p50_us * REGRESSION_FACTOR + REGRESSION_SLACK_US;
    // Some requests slower: only the median moved. Boot noise does that
    // too, so it takes rounds that separate.
    let median_slower =
        p.p50_us > r.baseline.p50_us * MEDIAN_REGRESSION_FACTOR + REGRESSION_SLACK_US;
    // One round each orders trivially, so only more rounds can disagree.
    let one_round = r.baseline_round_p50_us.len() < 2 || r.patched_round_p50_us.len() < 2;
    let separate = rounds_separate(&r.patched_round_p50_us, &r.baseline_round_p50_us);
    let m = ModeFigures::of(r);
    Some(
        if (tail_slower && (one_round || separate)) || (median_slower && !one_round && separate) {
            ModeCall::Regressed(m)
        } else if tail_slower || median_slower {
            ModeCall::Undecided(m)
        } else if ratio >= MIN_RATIO
            && rounds_separate(&r.baseline_round_p50_us, &r.patched_round_p50_us)
            && stalls
        {
            ModeCall::Improved(m)
        } else {
            match (host, reference) {
                // The guest waited, or waited less patched, but not in
                // QEMU's queue: emulation cost or a loaded boot.
                (Some((Queued::No, q)), _) if guest_slow || ratio >= MIN_RATIO => {
                    ModeCall::Elsewhere(m, q)
                }
                // Queued in QEMU like a stall in both builds: the stall,
                // still there, not emulation cost.
                (Some((Queued::Stall, q)), _) if guest_slow => ModeCall::Uncured(m, q),
                (_, Some(x)) if guest_slow => ModeCall::SlowInBoth(m, x),
                _ => return None,
            }
        },
    )
}

/// The finding for one controller from its rows (one per mode).
fn judge(all: &[Row], mine: &[&Row]) -> Reason {
    let (mut improved, mut regressed, mut undecided) = (vec![], vec![], vec![]);
    let (mut elsewhere, mut uncured, mut slow_in_both) = (vec![], vec![], vec![]);
    for call in mine.iter().filter_map(|r| call_mode(all, r)) {
        match call {
            ModeCall::Regressed(m) => regressed.push(m),
            ModeCall::Undecided(m) => undecided.push(m),
            ModeCall::Improved(m) => improved.push(m),
            ModeCall::Elsewhere(m, q) => elsewhere.push((m, q)),
            ModeCall::Uncured(m, q) => uncured.push((m, q)),
            ModeCall::SlowInBoth(m, x) => slow_in_both.push((m, x)),
        }
    }
    let judged = mine.iter().filter(|r| r.patched.is_some()).count();
    if !regressed.is_empty() {
        Reason::Slower(regressed)
    } else if !undecided.is_empty() {
        Reason::SlowerNotEveryRound(undecided)
    } else if judged > 0 && improved.len() == judged {
        Reason::Cured(improved)
    } else if !improved.is_empty() {
        Reason::CuredInOneMode(improved)
    } else if !uncured.is_empty() && slow_in_both.is_empty() {
        Reason::StallsUncured(uncured)
    } else if !elsewhere.is_empty() && slow_in_both.is_empty() && uncured.is_empty() {
        Reason::NotTheStall(elsewhere)
    } else if !slow_in_both.is_empty() && mine.iter().any(|r| r.role == Some(Role::Control)) {
        // Numbers alone cannot tell an uncured stall from slow emulation;
        // for a path the code says never queues from the vCPU thread (the
        // SD card reads synchronously), slow in both builds is its cost.
        Reason::EmulationCost(slow_in_both)
    } else if !slow_in_both.is_empty() {
        Reason::SlowInBoth(slow_in_both)
    } else {
        Reason::Unchanged(mine.iter().map(|r| ModeFigures::of(r)).collect())
    }
}

/// A finding per controller and workload, in table order (the neighbour
/// workload's candidate has one alone and one beside the neighbour).
pub fn findings(rows: &[Row]) -> Vec<Judgement> {
    let mut keys: Vec<(&str, Workload)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.controller.as_str(), r.workload)) {
            keys.push((r.controller.as_str(), r.workload));
        }
    }
    keys.into_iter()
        .map(|(name, workload)| {
            let mine: Vec<&Row> = rows
                .iter()
                .filter(|r| r.controller == name && r.workload == workload)
                .collect();
            let reason = judge(rows, &mine);
            let shown = mine
                .iter()
                .copied()
                .max_by(|a, b| a.baseline.p50_us.total_cmp(&b.baseline.p50_us))
                .expect("at least one row per controller");
            let c = controllers::by_name(name).ok();
            Judgement {
                guest: shown.guest,
                controller: name.to_string(),
                workload,
                role: c.map(|c| c.role),
                reason,
                shown: ModeFigures::of(shown),
                host_baseline_p50_us: shown.host_baseline.as_ref().map(|s| s.p50_us),
                host_patched_p50_us: shown.host_patched.as_ref().map(|s| s.p50_us),
                cause: Cause::of(shown),
                mechanism: c.map(|c| c.mechanism).unwrap_or_default(),
            }
        })
        .collect()
}
