//! What the guest reports: one JSON record per test, on a KTAP diagnostic
//! line, with summary statistics and every sample so the host can pool runs.

#[allow(unused_imports)]
use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Workload;

/// Prefix of the machine-readable diagnostic line.
pub const JSON_PREFIX: &str = "# uring-idle-json: ";

/// Figures in microseconds; `total_ms` is the measured loop's wall time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: u64,
    pub min_us: f64,
    pub mean_us: f64,
    /// The fast tail: a slowdown that every request pays moves it, noise
    /// that slows some requests of a boot hardly does.
    #[serde(default)]
    pub p10_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub total_ms: f64,
}

/// `x` (never negative here) rounded to the nearest `1/scale`; `core` has
/// no `f64::round` outside `std`.
pub fn round_to(x: f64, scale: f64) -> f64 {
    ((x * scale + 0.5) as u64) as f64 / scale
}

fn tenth(x: f64) -> f64 {
    round_to(x, 10.0)
}

/// Exact nearest-rank quantiles of `samples` in the samples' own unit: the
/// value at rank `ceil(q * n)` (at least 1) of the sorted samples. Runs
/// hold at most a few thousand samples, so sorting a copy is cheap, and it
/// needs nothing beyond `alloc` (the probe guest computes them too).
pub fn quantiles(samples: &[u64], qs: &[f64]) -> Vec<u64> {
    if samples.is_empty() {
        return vec![0; qs.len()];
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    qs.iter()
        .map(|&q| {
            let exact = q.clamp(0.0, 1.0) * n as f64;
            let mut rank = exact as usize;
            if (rank as f64) < exact {
                rank += 1;
            }
            sorted[rank.clamp(1, n) - 1]
        })
        .collect()
}

impl Stats {
    /// Statistics of latencies in nanoseconds, reported in µs.
    pub fn from_ns(samples: &[u64], wall_ns: u64) -> Stats {
        let us = |ns: u64| tenth(ns as f64 / 1000.0);
        let q = quantiles(samples, &[0.5, 0.9, 0.99, 0.1]);
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Stats {
            n: samples.len() as u64,
            min_us: us(samples.iter().copied().min().unwrap_or(0)),
            mean_us: if samples.is_empty() {
                0.0
            } else {
                us((sum / samples.len() as u128) as u64)
            },
            p10_us: us(q[3]),
            p50_us: us(q[0]),
            p90_us: us(q[1]),
            p99_us: us(q[2]),
            max_us: us(samples.iter().copied().max().unwrap_or(0)),
            total_ms: round_to(wall_ns as f64 / 1_000_000.0, 100.0),
        }
    }

    /// Statistics of samples already in whole µs (the records' samples).
    pub fn from_us(samples: &[u32]) -> Stats {
        let ns: Vec<u64> = samples.iter().map(|&s| u64::from(s) * 1000).collect();
        Stats::from_ns(&ns, 0)
    }
}

/// What a batch-workload test adds: the run as a whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchFigures {
    /// Wall time of all batches, sleeps included.
    pub total_ms: f64,
    pub mb_per_s: f64,
    pub bytes: u64,
    pub batches: u32,
    /// How the 1 ms sleeps were spent: `spin` or `sleep` (nanosleep).
    pub sleeps: String,
    /// What one nanosleep of the requested length took here (median), µs:
    /// without high-resolution timers it rounds up to the tick.
    pub nanosleep_us: f64,
}

/// The machine-readable record of one test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The KTAP test name: `{device}_{mode}`.
    pub test: String,
    /// The device's stable name: controller and kernel name, e.g. `ahci_sda`.
    pub device: String,
    /// The controller-table row the disk belongs to (`file` and `other` on a host).
    pub controller: String,
    /// The device node or file measured.
    pub path: String,
    /// `sleep`, `poll` or `integrity`.
    pub mode: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// Every measured latency in µs (for the batch workload: each batch's
    /// time, sleeps included), so a host tool can pool runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples_us: Vec<u32>,
    /// Batch workload only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchFigures>,
    /// Why the test took fewer samples than asked, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// Probe guest: how many measured requests had not completed by the
    /// deadline (`Params::deadline_ms`) and completed only after the probe
    /// woke QEMU's main loop itself. Their samples hold the full wait.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub woken: u32,
    /// The workload that produced it; records written before workloads
    /// were named are `latency`'s.
    #[serde(default, skip_serializing_if = "Workload::is_latency")]
    pub workload: Workload,
    /// Neighbour workload: the neighbour disk's reads while this test ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbour: Option<Neighbour>,
}

/// What the neighbour disk did while a candidate was measured beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Its controller-table row.
    pub controller: String,
    /// Reads it completed during the candidate's measured loop.
    pub reads: u64,
    /// Its completion rate, reads per second.
    pub reads_per_s: f64,
    /// Every read it was given during the test, warm-up and the last one
    /// drained included: what the host trace sees on its disk.
    #[serde(default)]
    pub issued: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Record {
    /// The record of test `{stem}_{mode}` on `device`, passed until told
    /// otherwise (`failed`), with no figures yet.
    pub fn new(stem: &str, device: &str, controller: &str, path: &str, mode: &str) -> Record {
        Record {
            test: format!("{stem}_{mode}"),
            device: device.into(),
            controller: controller.into(),
            path: path.into(),
            mode: mode.into(),
            ok: true,
            reason: None,
            stats: None,
            samples_us: vec![],
            batch: None,
            stopped_early: None,
            woken: 0,
            workload: Workload::Latency,
            neighbour: None,
        }
    }

    /// Failed with `why`, if there is a why; passed otherwise.
    pub fn failed(self, why: Option<String>) -> Record {
        Record {
            ok: why.is_none(),
            reason: why,
            ..self
        }
    }

    /// A measured test's record and the note of its KTAP result, from
    /// `base` (its names, `ok`): the statistics of `ns` (latencies, or batch
    /// times, in ns), every sample in µs, and not `ok` when a single
    /// request's p99 passed `max_p99_ms` (a batch holds 17 ms of sleeps by
    /// design: the limit is for single requests).
    pub fn measured(
        base: Record,
        ns: &[u64],
        wall_ns: u64,
        batch: Option<BatchFigures>,
        max_p99_ms: f64,
    ) -> (Record, String) {
        let stats = Stats::from_ns(ns, wall_ns);
        let mut figures = format!(
            "n={} p50_us={} p90_us={} p99_us={} max_us={} total_ms={}",
            stats.n, stats.p50_us, stats.p90_us, stats.p99_us, stats.max_us, stats.total_ms
        );
        if let Some(b) = &batch {
            figures.push_str(&format!(" mb_per_s={}", b.mb_per_s));
        }
        let over = batch.is_none() && stats.p99_us > max_p99_ms * 1000.0;
        let record = Record {
            ok: !over,
            reason: over.then(|| {
                format!(
                    "p99 {} ms exceeds the {max_p99_ms} ms limit; {figures}",
                    stats.p99_us / 1000.0
                )
            }),
            samples_us: ns
                .iter()
                .map(|&ns| (ns / 1000).min(u64::from(u32::MAX)) as u32)
                .collect(),
            stats: Some(stats),
            batch,
            ..base
        };
        (record, figures)
    }

    pub fn line(&self) -> String {
        crate::json_line(JSON_PREFIX, self)
    }

    /// The record on a console line, wherever the prefix starts (kernel
    /// messages may precede it on the same line).
    pub fn find_in(line: &str) -> Option<core::result::Result<Record, serde_json::Error>> {
        crate::find_json(JSON_PREFIX, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        // 1..=1000 µs: nearest rank gives p50 = 500, p90 = 900, p99 = 990.
        let ns: Vec<u64> = (1..=1000).map(|u| u * 1000).collect();
        let s = Stats::from_ns(&ns, 2_500_000_000);
        assert_eq!(s.n, 1000);
        assert_eq!((s.min_us, s.max_us), (1.0, 1000.0));
        assert!((s.mean_us - 500.5).abs() < 0.01, "{}", s.mean_us);
        assert_eq!(
            (s.p50_us, s.p90_us, s.p99_us, s.p10_us),
            (500.0, 900.0, 990.0, 100.0)
        );
        assert_eq!(s.total_ms, 2500.0);
    }

    #[test]
    fn one_outlier_moves_max_not_median() {
        let mut ns = vec![300_000u64; 99];
        ns.push(500_000_000);
        let s = Stats::from_ns(&ns, 0);
        assert!((s.p50_us - 300.0).abs() < 1.0);
        assert!((s.max_us - 500_000.0).abs() < 1.0);
    }

    #[test]
    fn quantiles_never_exceed_the_largest_sample() {
        let s = Stats::from_ns(&[2_200, 3_100, 30_700], 0);
        assert!(s.p99_us <= s.max_us && s.p50_us >= s.min_us, "{s:?}");
        assert_eq!(s.p99_us, 30.7);
    }

    #[test]
    fn empty_is_all_zero() {
        let s = Stats::from_ns(&[], 0);
        assert_eq!((s.n, s.p50_us, s.max_us), (0, 0.0, 0.0));
        assert_eq!(Stats::from_us(&[]).n, 0);
    }

    #[test]
    fn microsecond_samples_give_the_same_figures() {
        let s: Vec<u32> = (1..=100).collect();
        let m = Stats::from_us(&s);
        assert_eq!(
            (m.n, m.p50_us, m.p99_us, m.max_us, m.mean_us),
            (100, 50.0, 99.0, 100.0, 50.5)
        );
    }

    #[test]
    fn a_measured_record_fails_its_p99_limit_but_a_batch_does_not() {
        let base = Record::new(
            "ahci_probe",
            "ahci_probe",
            "ahci",
            "pci 00:1f.2 port 0",
            "poll",
        );
        assert_eq!(base.test, "ahci_probe_poll");
        let ns = [497_500_000u64; 10];
        let (r, figures) = Record::measured(base.clone(), &ns, 5_000_000_000, None, 50.0);
        assert!(!r.ok && r.samples_us == [497_500; 10]);
        assert_eq!(r.stats.as_ref().unwrap().p50_us, 497_500.0);
        assert!(figures.starts_with("n=10 p50_us=497500 "), "{figures}");
        assert!(r
            .reason
            .unwrap()
            .starts_with("p99 497.5 ms exceeds the 50 ms limit; n=10"));
        let batch = BatchFigures {
            total_ms: 5000.0,
            mb_per_s: 0.4,
            bytes: 2 << 20,
            batches: 10,
            sleeps: "spin".into(),
            nanosleep_us: 0.0,
        };
        let (b, figures) = Record::measured(base, &ns, 5_000_000_000, Some(batch), 50.0);
        assert!(b.ok && b.reason.is_none() && figures.ends_with(" mb_per_s=0.4"));
    }

    #[test]
    fn record_round_trips_through_its_line() {
        let r = Record {
            test: "nvme_nvme0n1_sleep".into(),
            device: "nvme_nvme0n1".into(),
            controller: "nvme".into(),
            path: "/dev/nvme0n1".into(),
            mode: "sleep".into(),
            ok: true,
            reason: None,
            stats: Some(Stats::from_ns(&[1000, 2000], 5000)),
            samples_us: vec![1, 2],
            batch: None,
            stopped_early: None,
            woken: 0,
            workload: Workload::Latency,
            neighbour: None,
        };
        let line = r.line();
        assert!(line.starts_with(JSON_PREFIX) && !line.contains('\n'));
        // The default workload is left out, so old lines read the same.
        assert!(!line.contains("workload") && !line.contains("neighbour"));
        let noisy = format!("[    1.2] ata1: x{line}");
        assert_eq!(Record::find_in(&noisy).unwrap().unwrap(), r);
        assert!(Record::find_in("# kernel: 6.1").is_none());
        // Another workload is named, and its neighbour's figures kept.
        let n = Record {
            workload: Workload::Neighbour,
            neighbour: Some(Neighbour {
                controller: "virtio_blk".into(),
                reads: 12_000,
                reads_per_s: 4000.0,
                issued: 12_010,
            }),
            ..r
        };
        let line = n.line();
        assert!(line.contains(r#""workload":"neighbour""#), "{line}");
        assert_eq!(Record::find_in(&line).unwrap().unwrap(), n);
    }
}
