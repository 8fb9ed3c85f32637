//! Notes for the reader beside the tables: requests that completed only
//! after the probe's deadline wake, tests stopped at their time budget, a
//! busy host, controllers that were not measured, the report's own figure.

use contract::Record;

use crate::report::{GuestRun, Skipped};
use crate::rules::BUSY_HOST;

/// A measured boot's notes (`of_boot`); a failed boot has none.
pub fn of_record(b: &crate::campaign::BootRecord) -> Vec<String> {
    match &b.outcome {
        crate::campaign::BootOutcome::Measured(m) => {
            of_boot(&b.label, &m.records, &b.params, b.netdev)
        }
        crate::campaign::BootOutcome::Failed(_) => Vec::new(),
    }
}

/// What one boot's records say besides their samples, a line each:
/// tests stopped at their time budget, requests woken by the probe.
pub fn of_boot(
    label: &str,
    records: &[Record],
    params: &contract::Params,
    netdev: crate::guest::Netdev,
) -> Vec<String> {
    let mut out = Vec::new();
    for r in records {
        let mut said = Vec::new();
        if let Some(why) = &r.stopped_early {
            said.push(why.clone());
        }
        if r.woken > 0 {
            said.push(woken_phrase(r, params, netdev));
        }
        if let Some(n) = &r.neighbour {
            said.push(format!(
                "beside it the neighbour {} kept one read in flight: {} reads, {:.0} reads/s",
                n.controller, n.reads, n.reads_per_s
            ));
        }
        let device = crate::samples::labelled(&r.device, r.workload);
        for why in said {
            out.push(format!("{label} {device} {}: {why}", r.mode));
        }
    }
    out
}

/// The finding a record's deadline wakes make, in words: without a wake an
/// unfixed request never completes when nothing bounds QEMU's sleep.
pub fn woken_phrase(r: &Record, p: &contract::Params, netdev: crate::guest::Netdev) -> String {
    let secs = p.deadline_ms as f64 / 1000.0;
    if let Some(b) = &r.batch {
        // A batch's samples are batches; its wakes count completion waits.
        return format!(
            "{} completion waits of {} batches passed the {secs} s deadline and ended only after the probe woke QEMU's main loop itself",
            r.woken, b.batches
        );
    }
    let n = r.samples_us.len();
    match netdev {
        crate::guest::Netdev::None => format!(
            "without networking an unfixed request never completes until something else wakes QEMU: {} of {n} waited the full {secs} s and completed only after the probe woke QEMU's main loop itself",
            r.woken
        ),
        _ => format!(
            "{} of {n} {} waited the full {secs} s and completed only after the probe woke QEMU's main loop itself",
            r.woken,
            if r.workload == contract::Workload::Flush {
                "flushes"
            } else {
                "requests"
            }
        ),
    }
}

/// The note a run measured on a busy host gets, naming its busy boots.
pub fn busy_host(runs: &[GuestRun]) -> Option<String> {
    let busy: Vec<(&str, f64)> = runs
        .iter()
        .filter_map(|r| {
            r.host_busy
                .filter(|&b| b >= BUSY_HOST)
                .map(|b| (r.label.as_str(), b))
        })
        .collect();
    let worst = busy.iter().map(|&(_, b)| b).reduce(f64::max)?;
    let labels: Vec<&str> = busy.iter().map(|&(l, _)| l).collect();
    // Without the priority, the load's scheduling slices show in the guest.
    let unraised = runs
        .iter()
        .filter_map(|r| r.qemu_nice)
        .find(|&n| n > crate::guest::QEMU_NICE)
        .map(|n| {
            format!(
                "; QEMU ran at nice {n}, not {} (raising it needs root or CAP_SYS_NICE), so it waited for the load's time slices",
                crate::guest::QEMU_NICE
            )
        })
        .unwrap_or_default();
    Some(format!(
        "measured on a busy host: other processes used up to {:.0}% of the machine's CPU during {} of {} boots ({}); \
         under load guest latencies and the controls' spread grow{unraised}",
        worst * 100.0,
        busy.len(),
        runs.len(),
        labels.join(", ")
    ))
}

/// One line per skipped controller, for the printed report.
pub fn skipped_lines(s: &[Skipped]) -> String {
    s.iter()
        .map(|s| match s.guest {
            Some(g) => format!("skipped {} ({g} guest): {}", s.controller, s.reason),
            None => format!("skipped {}: {}", s.controller, s.reason),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The report's headline figure, for comparison with the batch workload.
pub const REPORT_BATCH_FIGURE: &str =
    "report (KVM, idle): 25.76 s before the fix for 128 MB (about 0.4 s per batch of 16)";

#[cfg(test)]
mod tests {
    use contract::Guest;

    use super::*;
    use crate::guest::Accel;

    #[test]
    fn a_busy_host_is_named_with_its_busy_boots() {
        let run = |label: &str, busy: Option<f64>| GuestRun {
            guest: Guest::Linux,
            netdev: "none".into(),
            label: label.into(),
            variant: "baseline".into(),
            round: 1,
            accel: Accel::Tcg,
            started_unix_s: 0.0,
            wall_s: 5.0,
            boot_to_ktap_s: Some(1.0),
            guest_exit: 0,
            console_log: "c.log".into(),
            trace_log: None,
            host: None,
            boot: None,
            host_busy: busy,
            qemu_nice: Some(crate::guest::QEMU_NICE),
        };
        // Quiet boots (measured 0-1.4%) say nothing.
        assert!(busy_host(&[run("a", Some(0.014)), run("b", None)]).is_none());
        let note = busy_host(&[
            run("a", Some(0.0)),
            run("b", Some(0.48)),
            run("c", Some(0.72)),
        ])
        .unwrap();
        assert!(
            note.contains("up to 72%") && note.contains("2 of 3 boots (b, c)"),
            "{note}"
        );
    }
}
