//! KTAP version 1 output (Documentation/dev-tools/ktap.rst), plus one
//! machine-readable line per test so tools never scrape prose.

use serde::{Deserialize, Serialize};

use crate::stats::Stats;

/// Prefix of the machine-readable diagnostic line.
pub const JSON_PREFIX: &str = "# uring-idle-json: ";

pub fn header() -> String {
    "KTAP version 1".into()
}

pub fn plan(n: usize) -> String {
    format!("1..{n}")
}

/// A diagnostic line; embedded newlines become separate lines.
pub fn diag(text: &str) -> String {
    text.lines()
        .map(|l| format!("# {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn bail_out(reason: &str) -> String {
    format!("Bail out! {}", one_line(reason))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// `ok 1 name # figures`, `not ok 2 name # reason`, `ok 3 name # SKIP reason`.
pub fn result(outcome: &Outcome, number: usize, name: &str, note: &str) -> String {
    let note = one_line(note);
    match outcome {
        Outcome::Pass => format!(
            "ok {number} {name}{}",
            if note.is_empty() {
                String::new()
            } else {
                format!(" # {note}")
            }
        ),
        Outcome::Fail => format!("not ok {number} {name} # {note}"),
        Outcome::Skip => format!("ok {number} {name} # SKIP {note}"),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The machine-readable record of one test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub test: String,
    pub device: String,
    pub path: String,
    pub transport: String,
    /// `sleep`, `poll` or `integrity`.
    pub mode: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// Every measured latency in µs, so a host tool can pool runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples_us: Vec<u32>,
}

impl Record {
    pub fn line(&self) -> String {
        format!(
            "{JSON_PREFIX}{}",
            serde_json::to_string(self).expect("a Record always serializes")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_follow_ktap() {
        assert_eq!(
            result(&Outcome::Pass, 1, "ahci_sda_poll", "p50 1 us"),
            "ok 1 ahci_sda_poll # p50 1 us"
        );
        assert_eq!(result(&Outcome::Pass, 1, "x", ""), "ok 1 x");
        assert_eq!(
            result(&Outcome::Fail, 2, "x", "p99 too\nhigh"),
            "not ok 2 x # p99 too high"
        );
        assert_eq!(
            result(&Outcome::Skip, 3, "x", "no io_uring"),
            "ok 3 x # SKIP no io_uring"
        );
        assert_eq!(bail_out("boom\nbang"), "Bail out! boom bang");
        assert_eq!(diag("a\nb"), "# a\n# b");
    }

    #[test]
    fn record_round_trips_through_its_line() {
        let r = Record {
            test: "nvme_nvme0n1_sleep".into(),
            device: "nvme0n1".into(),
            path: "/dev/nvme0n1".into(),
            transport: "nvme".into(),
            mode: "sleep".into(),
            ok: true,
            reason: None,
            stats: Some(Stats::from_ns(&[1000, 2000], 5000)),
            samples_us: vec![1, 2],
        };
        let line = r.line();
        assert!(line.starts_with(JSON_PREFIX) && !line.contains('\n'));
        let back: Record = serde_json::from_str(line.strip_prefix(JSON_PREFIX).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
