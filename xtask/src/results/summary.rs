//! What a run says once its guests are done: every variant decided against
//! the one it is compared with, the verdict over them, and the text a user
//! reads (tables, skips, notes, what each guest should show, the verdict
//! line), all from the campaign's samples. `patch-and-test` prints it and
//! puts it into the report; the replay tests feed it recorded boots.

use contract::{Guest, Workload};

use crate::campaign::{BootOutcome, BootRecord, Campaign};
use crate::failure::BootFailure;
use crate::findings::Judgement;
use crate::guest::Accel;
use crate::guests::{batch_expected, GuestPlan};
use crate::notes::{self, busy_host, skipped_lines, REPORT_BATCH_FIGURE};
use crate::report::{ControllerFinding, GuestRun, Skipped};
use crate::samples::{collect, collect_host, rows, Row, Samples};
use crate::tables::{batch_table, findings_table, table, variants_table};
use crate::verdict::{decide, overall, Decision, Verdict};

/// What the results read of a campaign's boots: every measured boot's
/// samples (guest and host side), its JSON record and notes, and the boots
/// that gave no results.
#[derive(Default)]
pub struct Gathered {
    pub samples: Samples,
    pub runs: Vec<GuestRun>,
    pub notes: Vec<String>,
    /// Failed boots, with the variant each belonged to.
    pub failed: Vec<(String, BootFailure)>,
}

/// Reads the boots in the order they ran.
pub fn gather(boots: &[BootRecord]) -> Gathered {
    let mut g = Gathered::default();
    for b in boots {
        g.notes.extend(notes::of_record(b));
        let m = match &b.outcome {
            BootOutcome::Measured(m) => m,
            BootOutcome::Failed(f) => {
                g.failed.push((b.variant.clone(), f.clone()));
                continue;
            }
        };
        collect(&mut g.samples, &m.records, &b.variant, b.guest);
        for h in &m.host {
            collect_host(
                &mut g.samples,
                b.guest,
                (&h.controller, h.mode, h.workload),
                &h.queued_us,
                &b.variant,
            );
        }
        g.runs.push(m.run.clone());
    }
    g
}

/// A variant as the results see it: its name, what it is compared with,
/// and whether it is a kernel variant (measured by the Linux guest alone).
#[derive(Clone, Debug)]
pub struct VariantSpec {
    pub name: String,
    pub against: String,
    pub kernel: bool,
}

/// What a campaign measured, for the results.
pub struct Measured<'a> {
    pub plans: &'a [GuestPlan],
    pub workload: Workload,
    /// The first is the baseline (or the binary measured alone).
    pub variants: &'a [VariantSpec],
    pub accel: Accel,
    pub gathered: &'a Gathered,
    /// Controllers not measured (no device in a binary, no driver in a
    /// guest, no disk in the guest), in the order they were found.
    pub skipped: Vec<Skipped>,
    /// Controllers a kernel variant's guest found no disk of, by variant.
    pub broken: &'a [(String, Skipped)],
    pub no_host_evidence: Option<&'a str>,
}

/// One variant decided against the variant it is compared with.
#[derive(Clone, Debug)]
pub struct VariantOutcome {
    pub name: String,
    pub rows: Vec<Row>,
    pub decision: Decision,
}

/// Everything a run says.
#[derive(Clone, Debug)]
pub struct Summary {
    pub variants: Vec<VariantOutcome>,
    /// The rows and findings the report leads with: the only variant's, the
    /// first variant's, or the binary's alone.
    pub rows: Vec<Row>,
    pub findings: Vec<Judgement>,
    /// The verdict over every variant and guest, marked busy when it was.
    pub verdict: Verdict,
    pub notes: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// What each guest should show, a line each.
    pub expected: String,
    /// The printed report, from the blank line after the guests' output
    /// to the verdict line.
    pub text: String,
}

impl Summary {
    pub fn finding_records(&self) -> Vec<ControllerFinding> {
        self.findings.iter().map(Judgement::record).collect()
    }
}

/// One variant's rows and decision; a variant whose boots failed, or a
/// kernel variant whose guest lost a disk, is a regression whatever its
/// figures say.
fn variant_outcome(m: &Measured, v: &VariantSpec, guests: &[Guest]) -> VariantOutcome {
    let mut rows = rows(&m.gathered.samples, &v.against, Some(&v.name));
    // A kernel variant is the Linux guest's alone.
    let guests: Vec<Guest> = if v.kernel {
        rows.retain(|r| r.guest == Guest::Linux);
        vec![Guest::Linux]
    } else {
        guests.to_vec()
    };
    let mut decision = decide(&rows, &guests, Some(m.workload), m.accel);
    let lost: Vec<Skipped> = m
        .broken
        .iter()
        .filter(|(n, _)| *n == v.name)
        .map(|(_, s)| s.clone())
        .collect();
    let failed: Vec<BootFailure> = m
        .gathered
        .failed
        .iter()
        .filter(|(n, _)| *n == v.name)
        .map(|(_, f)| f.clone())
        .collect();
    if !lost.is_empty() || !failed.is_empty() {
        decision.verdict = Verdict::broken(lost, failed, m.accel);
    }
    VariantOutcome {
        name: v.name.clone(),
        rows,
        decision,
    }
}

/// What a campaign says: its boots gathered, `unoffered` (the rows some
/// binary lacked) and the campaign's own skips first.
pub fn of_campaign(
    camp: &Campaign,
    gathered: &Gathered,
    plans: &[GuestPlan],
    workload: Workload,
    variants: &[VariantSpec],
    unoffered: Vec<Skipped>,
) -> Summary {
    let mut skipped = unoffered;
    skipped.extend(camp.skipped.iter().cloned());
    summarize(&Measured {
        plans,
        workload,
        variants,
        accel: camp.accel,
        gathered,
        skipped,
        broken: &camp.broken,
        no_host_evidence: camp.no_host_evidence.as_deref(),
    })
}

/// Decides every variant and writes the report's text.
pub fn summarize(m: &Measured) -> Summary {
    let base = m.variants[0].name.as_str();
    let guests: Vec<Guest> = m.plans.iter().map(|p| p.guest).collect();
    let per_variant: Vec<VariantOutcome> = m.variants[1..]
        .iter()
        .map(|v| variant_outcome(m, v, &guests))
        .collect();
    let (rows, findings, verdict) = match per_variant.as_slice() {
        [] => {
            let rows = rows(&m.gathered.samples, base, None);
            let d = decide(&rows, &guests, None, m.accel);
            (rows, d.findings, d.verdict)
        }
        [only] => (
            only.rows.clone(),
            only.decision.findings.clone(),
            only.decision.verdict.clone(),
        ),
        many => (
            many[0].rows.clone(),
            many[0].decision.findings.clone(),
            overall(
                many.iter()
                    .map(|v| (v.name.clone(), v.decision.verdict.clone()))
                    .collect(),
                m.accel,
            ),
        ),
    };
    let mut notes = m.gathered.notes.clone();
    let busy = busy_host(&m.gathered.runs);
    notes.extend(busy.clone());
    let verdict = verdict.under_load(busy.is_some());
    let expected = m
        .plans
        .iter()
        .map(|p| p.expected(m.accel))
        .collect::<Vec<_>>()
        .join("\n");
    let mut s = Summary {
        variants: per_variant,
        rows,
        findings,
        verdict,
        notes,
        skipped: m.skipped.clone(),
        expected,
        text: String::new(),
    };
    s.text = text(m, &s);
    s
}

/// The printed report: tables, skips, notes, expectations, verdict.
fn text(m: &Measured, s: &Summary) -> String {
    let mut out: Vec<String> = vec![String::new()];
    if s.variants.len() > 1 {
        let names: Vec<&str> = s.variants.iter().map(|v| v.name.as_str()).collect();
        out.push(variants_table(
            &m.gathered.samples,
            &m.variants[0].name,
            &names,
        ));
        for v in &s.variants {
            let records: Vec<ControllerFinding> =
                v.decision.findings.iter().map(Judgement::record).collect();
            out.push(String::new());
            out.push(format!("{}:", v.name));
            out.push(findings_table(&records));
            out.push(v.decision.verdict.line());
        }
    } else if m.workload == Workload::Batch {
        out.push(batch_table(&s.rows));
        out.push(String::new());
        out.push(REPORT_BATCH_FIGURE.to_string());
        out.extend(
            m.plans
                .iter()
                .map(|p| batch_expected(p.guest, m.accel).to_string()),
        );
    } else {
        out.push(table(&s.rows));
        if s.variants.len() == 1 {
            out.push(String::new());
            out.push(findings_table(&s.finding_records()));
        }
    }
    if !s.skipped.is_empty() {
        out.push(skipped_lines(&s.skipped));
    }
    if let Some(why) = m.no_host_evidence {
        out.push(format!("no host-side evidence: {why}"));
    }
    out.extend(s.notes.iter().cloned());
    out.push(String::new());
    out.push(s.expected.clone());
    out.push(s.verdict.line());
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectation_follows_the_think_time() {
        use crate::guest::Netdev;
        use contract::Think;
        let expected = |a, t, us| crate::guests::expected(Guest::Linux, a, Netdev::None, t, us);
        let e = expected(Accel::Tcg, Think::Spin, 2000);
        assert!(
            e.contains("~8.0 ms with the HZ=100") && e.contains("~2.0 ms with a HZ=250"),
            "{e}"
        );
        let e = expected(Accel::Tcg, Think::Spin, 3000);
        assert!(
            e.contains("~7.0 ms with the HZ=100") && e.contains("~1.0 ms with a HZ=250"),
            "{e}"
        );
        assert!(expected(Accel::Tcg, Think::Sleep, 2000).contains("varies"));
        // The probe's figure follows its network, under TCG as under KVM.
        let probe = |n| crate::guests::expected(Guest::Probe, Accel::Tcg, n, Think::Spin, 2000);
        assert!(
            probe(Netdev::Hostfwd).contains("499 ms")
                && probe(Netdev::Hostfwd).contains("~497 ms after a 2.0 ms think")
        );
        assert!(probe(Netdev::User).contains("1000 ms"));
        assert!(probe(Netdev::None).contains("for ever"));
    }
}
