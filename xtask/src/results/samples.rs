//! Collecting: each boot's samples into series per (guest, controller,
//! mode) and variant (`Samples`), and the series into rows, baseline
//! against a variant (`Row`): what findings, tables and the plot read.

use std::collections::BTreeMap;

use contract::{controllers, Guest, Mode, Record, Role, Stats, Workload};
use serde::{Deserialize, Serialize};

/// Which series a sample belongs to: each controller has its own disk, so
/// two disks never pool under one name, and kernel names (`sda`, `sdb`)
/// that change with probing order between boots do not split a series;
/// the two guests' figures of one controller never pool either.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub guest: Guest,
    /// The controller-table row (or a disk no row describes).
    pub controller: String,
    pub mode: Mode,
    /// What the guest did on it: `latency`, unless a record says otherwise.
    pub workload: Workload,
}

/// Samples of one controller's disk in one mode, per variant, per round.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    pub device: String,
    /// Guest latencies (µs) by variant name, one list per round.
    pub runs: BTreeMap<String, Vec<Vec<u32>>>,
    /// Time each measured request sat queued in QEMU (host trace), µs.
    pub host: BTreeMap<String, Vec<Vec<u32>>>,
    /// Batch workload: each round's total time, ms, by variant.
    pub totals: BTreeMap<String, Vec<f64>>,
    /// Neighbour workload: the neighbour's row, and its reads per second
    /// in each round, by variant.
    pub neighbour: Option<String>,
    pub neighbour_rates: BTreeMap<String, Vec<f64>>,
}

/// Every series of a campaign.
pub type Samples = BTreeMap<SeriesKey, Collected>;

/// Adds a run of `variant`'s latency records, measured by `guest`
/// (integrity records carry no samples, and name no wait mode).
pub fn collect(into: &mut Samples, records: &[Record], variant: &str, guest: Guest) {
    for r in records.iter().filter(|r| !r.samples_us.is_empty()) {
        let Ok(mode) = r.mode.parse::<Mode>() else {
            continue;
        };
        let c = into
            .entry(SeriesKey {
                guest,
                controller: r.controller.clone(),
                mode,
                workload: r.workload,
            })
            .or_default();
        c.device = r.device.clone();
        if let Some(n) = &r.neighbour {
            c.neighbour_rates
                .entry(variant.to_string())
                .or_default()
                .push(n.reads_per_s);
            c.neighbour = Some(n.controller.clone());
        }
        c.runs
            .entry(variant.to_string())
            .or_default()
            .push(r.samples_us.clone());
        if let Some(b) = &r.batch {
            c.totals
                .entry(variant.to_string())
                .or_default()
                .push(b.total_ms);
        }
    }
}

/// Adds one run's host-side queue times of `controller`'s measured
/// requests (reads, or the flush workload's flushes) in `mode` (from
/// `trace::by_disk`).
pub fn collect_host(
    into: &mut Samples,
    guest: Guest,
    (controller, mode, workload): (&str, Mode, Workload),
    queued_us: &[u32],
    variant: &str,
) {
    into.entry(SeriesKey {
        guest,
        controller: controller.to_string(),
        mode,
        workload,
    })
    .or_default()
    .host
    .entry(variant.to_string())
    .or_default()
    .push(queued_us.to_vec());
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// The guest that measured it.
    #[serde(default = "linux")]
    pub guest: Guest,
    /// The controller-table row.
    pub controller: String,
    /// The device as the guest named it last (controller and kernel name).
    pub device: String,
    /// What the table predicts (absent for disks no row describes).
    pub role: Option<Role>,
    pub mode: String,
    /// The workload that measured it, when not `latency`.
    #[serde(default, skip_serializing_if = "Workload::is_latency")]
    pub workload: Workload,
    pub baseline: Stats,
    pub patched: Option<Stats>,
    /// Baseline p50 over patched p50.
    pub p50_ratio: Option<f64>,
    /// p50 of each round, to show the spread.
    pub baseline_round_p50_us: Vec<f64>,
    #[serde(default)]
    pub patched_round_p50_us: Vec<f64>,
    /// Time the measured requests sat queued in QEMU, from add_sqe to
    /// cqe_handler (host trace), when traced.
    #[serde(default)]
    pub host_baseline: Option<Stats>,
    #[serde(default)]
    pub host_patched: Option<Stats>,
    /// p50 of each round's host queue times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_baseline_round_p50_us: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_patched_round_p50_us: Vec<f64>,
    /// Batch workload: each round's total time, ms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_round_total_ms: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patched_round_total_ms: Vec<f64>,
    /// Neighbour workload: the neighbour's row and its reads per second,
    /// pooled over the rounds, per side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbour: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbour_baseline_reads_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbour_patched_reads_per_s: Option<f64>,
}

impl Row {
    /// The row's name in tables, findings and notes: its controller, and
    /// its workload where that is not the default.
    pub fn label(&self) -> String {
        labelled(&self.controller, self.workload)
    }

    /// The device as the tables name it: with its workload, likewise.
    pub fn device_label(&self) -> String {
        labelled(&self.device, self.workload)
    }
}

/// `name`, and `workload` after it where that is not the default.
pub fn labelled(name: &str, workload: Workload) -> String {
    match workload.tag() {
        Some(w) => format!("{name} ({w})"),
        None => name.to_string(),
    }
}

/// Reports written before the probe guest existed are the Linux guest's.
fn linux() -> Guest {
    Guest::Linux
}

/// The rows one guest measured: findings and verdicts are decided per
/// guest (a control is a yardstick only beside disks of the same guest).
pub fn of_guest(rows: &[Row], guest: Guest) -> Vec<Row> {
    rows.iter().filter(|r| r.guest == guest).cloned().collect()
}

/// Where a guest's rows go: the probe's full-size figures first.
pub fn guest_rank(g: Guest) -> usize {
    contract::GuestSet::Both
        .guests()
        .iter()
        .position(|x| *x == g)
        .unwrap_or(usize::MAX)
}

/// The mean of rounds' figures, when there are any.
fn mean(v: Option<&Vec<f64>>) -> Option<f64> {
    v.filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

/// Rows of `base` against `other` (a variant), or of `base` alone.
pub fn rows(collected: &Samples, base: &str, other: Option<&str>) -> Vec<Row> {
    /// One variant's rounds, borrowed (none for a variant not measured).
    fn side<'a>(m: &'a BTreeMap<String, Vec<Vec<u32>>>, v: Option<&str>) -> &'a [Vec<u32>] {
        v.and_then(|v| m.get(v)).map(Vec::as_slice).unwrap_or(&[])
    }
    let mut rows: Vec<Row> = collected
        .iter()
        .filter(|(_, c)| c.runs.contains_key(base))
        .map(|(key, c)| {
            let (b, p) = (side(&c.runs, Some(base)), side(&c.runs, other));
            let (hb, hp) = (side(&c.host, Some(base)), side(&c.host, other));
            let p50s = |runs: &[Vec<u32>]| {
                runs.iter()
                    .map(|r| Stats::from_us(r).p50_us)
                    .collect::<Vec<_>>()
            };
            let pooled =
                |runs: &[Vec<u32>]| (!runs.is_empty()).then(|| Stats::from_us(&runs.concat()));
            let baseline = Stats::from_us(&b.concat());
            let patched = pooled(p);
            let p50_ratio = patched
                .as_ref()
                .filter(|p| p.p50_us > 0.0)
                .map(|p| baseline.p50_us / p.p50_us);
            Row {
                guest: key.guest,
                controller: key.controller.clone(),
                device: c.device.clone(),
                role: controllers::by_name(&key.controller).ok().map(|c| c.role),
                mode: key.mode.name().to_string(),
                workload: key.workload,
                baseline,
                patched,
                p50_ratio,
                baseline_round_p50_us: p50s(b),
                patched_round_p50_us: p50s(p),
                host_baseline: pooled(hb),
                host_patched: pooled(hp),
                host_baseline_round_p50_us: p50s(hb),
                host_patched_round_p50_us: p50s(hp),
                baseline_round_total_ms: c.totals.get(base).cloned().unwrap_or_default(),
                patched_round_total_ms: other
                    .and_then(|o| c.totals.get(o).cloned())
                    .unwrap_or_default(),
                neighbour: c.neighbour.clone(),
                neighbour_baseline_reads_per_s: mean(c.neighbour_rates.get(base)),
                neighbour_patched_reads_per_s: mean(other.and_then(|o| c.neighbour_rates.get(o))),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (
            guest_rank(a.guest),
            controllers::rank(&a.controller),
            &a.mode,
            a.workload,
        )
            .cmp(&(
                guest_rank(b.guest),
                controllers::rank(&b.controller),
                &b.mode,
                b.workload,
            ))
    });
    rows
}

/// Rows built from synthetic records, for the results' unit tests.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// The Linux guest's records, as every test here measures.
    pub fn collect(into: &mut Samples, records: &[Record], variant: &str) {
        super::collect(into, records, variant, Guest::Linux)
    }

    pub fn rec(controller: &str, mode: &str, samples: Vec<u32>) -> Record {
        let device = format!("{controller}_x");
        Record {
            samples_us: samples,
            ..Record::new(&device, &device, controller, "/dev/x", mode)
        }
    }

    /// Rows from rounds of poll-mode runs; each round lists, per controller,
    /// the latency (µs) of all 50 baseline and all 50 patched samples.
    pub fn build(rounds: &[&[(&str, u32, u32)]]) -> Vec<Row> {
        let mut c = BTreeMap::new();
        for round in rounds {
            let side = |pick: fn(&(&str, u32, u32)) -> u32| -> Vec<Record> {
                round
                    .iter()
                    .map(|t| rec(t.0, "poll", vec![pick(t); 50]))
                    .collect()
            };
            collect(&mut c, &side(|t| t.1), "baseline");
            collect(&mut c, &side(|t| t.2), "patched");
        }
        rows(&c, "baseline", Some("patched"))
    }

    /// Per controller: guest baseline, guest patched, queued baseline,
    /// queued patched (µs).
    pub type Traced<'a> = (&'a str, u32, u32, u32, u32);

    /// Like `build`, with host queue times.
    pub fn build_traced(rounds: &[&[Traced]]) -> Vec<Row> {
        let mut c = BTreeMap::new();
        for round in rounds {
            for (variant, guest, host) in [("baseline", 1, 3), ("patched", 2, 4)] {
                let pick = |t: &Traced, i: usize| match i {
                    1 => t.1,
                    2 => t.2,
                    3 => t.3,
                    _ => t.4,
                };
                let recs: Vec<Record> = round
                    .iter()
                    .map(|t| rec(t.0, "poll", vec![pick(t, guest); 50]))
                    .collect();
                collect(&mut c, &recs, variant);
                for t in *round {
                    collect_host(
                        &mut c,
                        Guest::Linux,
                        (t.0, Mode::Poll, Workload::Latency),
                        &[pick(t, host); 50],
                        variant,
                    );
                }
            }
        }
        rows(&c, "baseline", Some("patched"))
    }

    /// Two identical rounds of AHCI and virtio-blk.
    pub fn runs(
        ahci_base: u32,
        ahci_patched: u32,
        virtio_base: u32,
        virtio_patched: u32,
    ) -> Vec<Row> {
        let round: &[(&str, u32, u32)] = &[
            ("ahci", ahci_base, ahci_patched),
            ("virtio_blk", virtio_base, virtio_patched),
        ];
        build(&[round, round])
    }
}
