//! Summary statistics of one set of latency samples.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Figures in microseconds; `total_ms` is the measured loop's wall time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub total_ms: f64,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

impl Stats {
    /// Quantiles come from an HDR histogram with 3 significant digits, so
    /// they are within 0.1% of the exact order statistic.
    pub fn from_ns(samples: &[u64], wall_ns: u64) -> Stats {
        let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
        for &s in samples {
            h.record(s.max(1))
                .expect("auto-resizing histogram accepts any u64");
        }
        let lo = samples.iter().copied().min().unwrap_or(0);
        let hi = samples.iter().copied().max().unwrap_or(0);
        // A quantile is a bucket's highest equivalent value, which can lie a
        // hair above the largest sample: keep it within what was observed.
        let q = |p: f64| {
            if samples.is_empty() {
                0.0
            } else {
                us(h.value_at_quantile(p).clamp(lo, hi))
            }
        };
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Stats {
            n: samples.len() as u64,
            min_us: us(lo),
            mean_us: if samples.is_empty() {
                0.0
            } else {
                us((sum / samples.len() as u128) as u64)
            },
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            max_us: us(hi),
            total_ms: (wall_ns as f64 / 10_000.0).round() / 100.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        // 1..=1000 µs: p50 = 500, p90 = 900, p99 = 990 within 0.1%.
        let ns: Vec<u64> = (1..=1000).map(|u| u * 1000).collect();
        let s = Stats::from_ns(&ns, 2_500_000_000);
        assert_eq!(s.n, 1000);
        assert_eq!((s.min_us, s.max_us), (1.0, 1000.0));
        assert!((s.mean_us - 500.5).abs() < 0.01, "{}", s.mean_us);
        for (got, want) in [(s.p50_us, 500.0), (s.p90_us, 900.0), (s.p99_us, 990.0)] {
            assert!((got - want).abs() <= want * 0.001 + 0.1, "{got} vs {want}");
        }
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
        // 30_700 ns lies in an HDR bucket whose top is above it.
        let s = Stats::from_ns(&[2_200, 3_100, 30_700], 0);
        assert!(s.p99_us <= s.max_us && s.p50_us >= s.min_us, "{s:?}");
        assert_eq!(s.p99_us, 30.7);
    }

    #[test]
    fn empty_is_all_zero() {
        let s = Stats::from_ns(&[], 0);
        assert_eq!((s.n, s.p50_us, s.max_us), (0, 0.0, 0.0));
    }
}
