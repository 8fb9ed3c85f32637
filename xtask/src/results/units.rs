//! How figures are written, one definition for every table, finding,
//! verdict and note.

use contract::Stats;

/// A latency in µs as milliseconds: one decimal from 100 ms, else two.
pub fn ms(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// A p50 ratio, or `-` when there is none.
pub fn ratio_text(r: Option<f64>) -> String {
    r.map(|x| format!("{x:.1}x")).unwrap_or_else(|| "-".into())
}

/// A p50, or `-` when the series was not measured (no host trace).
pub fn p50_or_dash(s: Option<&Stats>) -> String {
    s.map(|s| ms(s.p50_us)).unwrap_or_else(|| "-".into())
}

/// A batch total in ms as seconds.
pub fn secs_text(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_keep_three_significant_figures_up_to_a_second() {
        assert_eq!(ms(497_712.0), "497.7 ms");
        assert_eq!(ms(8_004.0), "8.00 ms");
        assert_eq!(ms(90.0), "0.09 ms");
        assert_eq!(ratio_text(Some(3456.44)), "3456.4x");
        assert_eq!(ratio_text(None), "-");
        assert_eq!(secs_text(1_234.0), "1.23 s");
        assert_eq!(mean(&[]), 0.0);
    }
}
