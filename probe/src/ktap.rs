//! KTAP version 1 lines, exactly as the Linux selftest writes them
//! (kselftest/src/ktap.rs).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub fn header() -> &'static str {
    "KTAP version 1"
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
        Outcome::Pass if note.is_empty() => format!("ok {number} {name}"),
        Outcome::Pass => format!("ok {number} {name} # {note}"),
        Outcome::Fail => format!("not ok {number} {name} # {note}"),
        Outcome::Skip => format!("ok {number} {name} # SKIP {note}"),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_the_selftest() {
        assert_eq!(
            result(&Outcome::Pass, 1, "ahci_probe_poll", "p50 1 us"),
            "ok 1 ahci_probe_poll # p50 1 us"
        );
        assert_eq!(result(&Outcome::Pass, 2, "x", ""), "ok 2 x");
        assert_eq!(
            result(&Outcome::Fail, 3, "x", "bad\nthing"),
            "not ok 3 x # bad thing"
        );
        assert_eq!(result(&Outcome::Skip, 4, "x", "why"), "ok 4 x # SKIP why");
        assert_eq!(diag("a\nb"), "# a\n# b");
        assert_eq!(bail_out("no\n fw_cfg"), "Bail out! no fw_cfg");
        assert_eq!(plan(7), "1..7");
    }
}
