//! The text tables of a run: a row per device and mode, a line per
//! controller's finding, the batch totals, the variants side by side.

use comfy_table::{presets::ASCII_MARKDOWN, Table};

use crate::report::ControllerFinding;
use crate::samples::{rows, Row, Samples};
use crate::units::{mean, ms, p50_or_dash, ratio_text, secs_text};

/// The per-device table; with host traces, the time the same requests sat
/// queued in QEMU (p50) beside the guest's latency.
pub fn table(rows: &[Row]) -> String {
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    let paired = rows.iter().any(|r| r.patched.is_some());
    let host = rows.iter().any(|r| r.host_baseline.is_some());
    let mut header: Vec<&str> = if paired {
        vec![
            "guest",
            "device",
            "mode",
            "n",
            "baseline p50",
            "p99",
            "max",
            "patched p50",
            "p99",
            "max",
            "p50 ratio",
        ]
    } else {
        vec!["guest", "device", "mode", "n", "p50", "p90", "p99", "max"]
    };
    if host {
        header.push("queued in QEMU p50");
        if paired {
            header.push("patched queued p50");
        }
    }
    t.set_header(header);
    for r in rows {
        let b = &r.baseline;
        let mut cells = match &r.patched {
            Some(p) => vec![
                r.guest.to_string(),
                r.device_label(),
                r.mode.clone(),
                format!("{}+{}", b.n, p.n),
                ms(b.p50_us),
                ms(b.p99_us),
                ms(b.max_us),
                ms(p.p50_us),
                ms(p.p99_us),
                ms(p.max_us),
                ratio_text(r.p50_ratio),
            ],
            None => vec![
                r.guest.to_string(),
                r.device_label(),
                r.mode.clone(),
                b.n.to_string(),
                ms(b.p50_us),
                ms(b.p90_us),
                ms(b.p99_us),
                ms(b.max_us),
            ],
        };
        if host {
            cells.push(p50_or_dash(r.host_baseline.as_ref()));
            if paired {
                cells.push(p50_or_dash(r.host_patched.as_ref()));
            }
        }
        t.add_row(cells);
    }
    t.to_string()
}

/// The summary table: one line per controller.
pub fn findings_table(f: &[ControllerFinding]) -> String {
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    t.set_header([
        "guest",
        "controller",
        "finding",
        "baseline p50",
        "patched p50",
        "ratio",
        "queued in QEMU",
        "mode",
        "mechanism",
    ]);
    for c in f {
        let queued = match (c.host_baseline_p50_us, c.host_patched_p50_us) {
            (Some(b), Some(p)) => format!("{} -> {}", ms(b), ms(p)),
            _ => "-".into(),
        };
        t.add_row([
            c.guest.to_string(),
            crate::samples::labelled(&c.controller, c.workload),
            c.finding.name().to_string(),
            ms(c.baseline_p50_us),
            ms(c.patched_p50_us),
            ratio_text(c.p50_ratio),
            queued,
            c.mode.clone(),
            c.mechanism.clone(),
        ]);
    }
    t.to_string()
}

/// Batch workload, per device and mode: total time per round (mean),
/// per-batch p50, and the ratio of totals.
pub fn batch_table(rows: &[Row]) -> String {
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    t.set_header([
        "guest",
        "device",
        "mode",
        "batches",
        "baseline total",
        "batch p50",
        "patched total",
        "batch p50",
        "total ratio",
    ]);
    for r in rows {
        let (b, p) = (&r.baseline_round_total_ms, &r.patched_round_total_ms);
        t.add_row([
            r.guest.to_string(),
            r.device.clone(),
            r.mode.clone(),
            format!("{}", r.baseline.n),
            secs_text(mean(b)),
            ms(r.baseline.p50_us),
            if p.is_empty() {
                "-".into()
            } else {
                secs_text(mean(p))
            },
            r.patched
                .as_ref()
                .map(|s| ms(s.p50_us))
                .unwrap_or_else(|| "-".into()),
            if p.is_empty() {
                "-".into()
            } else {
                format!("{:.2}x", mean(b) / mean(p))
            },
        ]);
    }
    t.to_string()
}

/// Every variant beside the baseline: per device and mode, the baseline
/// p50 and each variant's p50 with its ratio.
pub fn variants_table(collected: &Samples, base: &str, names: &[&str]) -> String {
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    let mut header = vec![
        "guest".to_string(),
        "device".into(),
        "mode".into(),
        format!("{base} p50"),
    ];
    header.extend(names.iter().map(|n| format!("{n} p50 (ratio)")));
    t.set_header(header);
    let per: Vec<Vec<Row>> = names
        .iter()
        .map(|n| rows(collected, base, Some(n)))
        .collect();
    for (i, r) in per[0].iter().enumerate() {
        let mut cells = vec![
            r.guest.to_string(),
            r.device.clone(),
            r.mode.clone(),
            ms(r.baseline.p50_us),
        ];
        for v in &per {
            cells.push(
                match v
                    .get(i)
                    .and_then(|x| x.patched.as_ref().map(|p| (p, x.p50_ratio)))
                {
                    Some((p, ratio)) => format!("{} ({})", ms(p.p50_us), ratio_text(ratio)),
                    None => "-".into(),
                },
            );
        }
        t.add_row(cells);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::samples::testing::{collect, rec, runs};

    #[test]
    fn table_has_a_row_per_device_and_mode() {
        let t = table(&runs(8000, 500, 300, 320));
        assert!(
            t.contains("baseline p50") && t.contains("| ahci_x") && t.contains("16.0x"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 4, "{t}");
    }

    #[test]
    fn variants_sit_side_by_side() {
        let mut c = BTreeMap::new();
        for (variant, ahci) in [("baseline", 8000), ("fix", 400), ("null", 8000)] {
            collect(&mut c, &[rec("ahci", "poll", vec![ahci; 10])], variant);
        }
        let t = variants_table(&c, "baseline", &["fix", "null"]);
        assert!(
            t.contains("fix p50 (ratio)")
                && t.contains("0.40 ms (20.0x)")
                && t.contains("8.00 ms (1.0x)"),
            "{t}"
        );
    }
}
