//! The batch workload's verdict: baseline against patched on each
//! controller's total time over its rounds, and the figures a batch
//! verdict quotes. `Verdict::line` puts the verdict into words; the phrase
//! of one controller's figures is here.

use contract::Role;

use crate::guest::Accel;
use crate::rules::{rounds_separate, BATCH_REGRESSION_FACTOR, MIN_BATCH_RATIO};
use crate::samples::Row;
use crate::units::{mean, ms, secs_text};
use crate::verdict::{Grounds, Kind, Verdict};

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

    /// These figures as a verdict line quotes them.
    pub fn phrase(&self) -> String {
        let host = match self.queued_us {
            Some((hb, hp)) => format!(
                "; each read queued in QEMU {} -> {} (host trace)",
                ms(hb),
                ms(hp)
            ),
            None => String::new(),
        };
        format!(
            "{} total {} -> {} ({:.2}x, {}{host})",
            self.controller,
            secs_text(self.baseline_total_ms),
            secs_text(self.patched_total_ms),
            self.baseline_total_ms / self.patched_total_ms,
            self.mode
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::testing::build;

    /// Poll rows of AHCI (a candidate) and virtio-blk (a control), each
    /// with the round totals given (ms): baseline, patched.
    fn batch_rows(ahci: (&[f64], &[f64]), virtio: (&[f64], &[f64])) -> Vec<Row> {
        let mut rows = build(&[&[("ahci", 500, 500), ("virtio_blk", 100, 100)]]);
        for r in &mut rows {
            let (b, p) = if r.controller == "ahci" { ahci } else { virtio };
            r.baseline_round_total_ms = b.to_vec();
            r.patched_round_total_ms = p.to_vec();
        }
        rows
    }

    #[test]
    fn a_candidate_whose_total_drops_in_every_round_is_cured() {
        let rows = batch_rows(
            (&[2000.0, 2020.0], &[100.0, 100.0]),
            (&[100.0, 101.0], &[99.0, 100.0]),
        );
        let v = verdict_batch(&rows, Accel::Tcg);
        assert_eq!(v.kind, Kind::Verified);
        assert_eq!(
            v.line(),
            "FIX VERIFIED (tcg, batch): ahci total 2.01 s -> 0.10 s (20.10x, poll)"
        );
    }

    #[test]
    fn a_drop_under_the_margin_or_no_candidate_is_not_verified() {
        let rows = batch_rows(
            (&[2000.0, 2000.0], &[1900.0, 1900.0]),
            (&[100.0, 100.0], &[100.0, 100.0]),
        );
        let v = verdict_batch(&rows, Accel::Kvm);
        assert_eq!(v.kind, Kind::NotVerified);
        assert_eq!(
            v.line(),
            "NOT VERIFIED (kvm, batch): ahci total 2.00 s -> 1.90 s (1.05x, poll); a cure needs a total at least 1.1x shorter with every baseline round slower than every patched round"
        );
        // AHCI without totals is not judged: only a control is left.
        let rows = batch_rows((&[], &[]), (&[100.0, 100.0], &[100.0, 100.0]));
        let v = verdict_batch(&rows, Accel::Tcg);
        assert_eq!(v.kind, Kind::NotVerified);
        assert!(
            v.line()
                .contains(": no candidate controller measured; a cure needs"),
            "{}",
            v.line()
        );
    }

    #[test]
    fn a_total_that_grows_in_two_separated_rounds_is_a_regression() {
        let rows = batch_rows(
            (&[2000.0, 2000.0], &[100.0, 100.0]),
            (&[100.0, 100.0], &[200.0, 210.0]),
        );
        let v = verdict_batch(&rows, Accel::Tcg);
        assert_eq!(v.kind, Kind::Regression);
        assert_eq!(
            v.line(),
            "REGRESSION (tcg, batch): virtio_blk total 0.10 s -> 0.20 s (0.49x, poll)"
        );
        // One round is not enough to call one.
        let rows = batch_rows((&[2000.0], &[100.0]), (&[100.0], &[200.0]));
        assert_eq!(verdict_batch(&rows, Accel::Tcg).kind, Kind::Verified);
    }

    #[test]
    fn the_phrase_quotes_the_queue_time_when_traced() {
        let b = BatchFigures {
            controller: "ahci".into(),
            mode: "poll".into(),
            baseline_total_ms: 2000.0,
            patched_total_ms: 80.0,
            queued_us: Some((482_500.0, 770.0)),
        };
        assert_eq!(
            b.phrase(),
            "ahci total 2.00 s -> 0.08 s (25.00x, poll; each read queued in QEMU 482.5 ms -> 0.77 ms (host trace))"
        );
    }
}
