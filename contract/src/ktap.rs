//! KTAP version 1 output (Documentation/dev-tools/ktap.rst), as both
//! guests write it: the lines, and the tally that numbers the results and
//! turns them into the kselftest exit code. The machine-readable line per
//! test is `Record::line`, written just before the test's result.

use core::fmt::Write;

use crate::exit::{KSFT_FAIL, KSFT_PASS, KSFT_SKIP};
#[allow(unused_imports)]
use crate::prelude::*;
use crate::Record;

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

/// Writes `text` as diagnostic lines (`diag`), as both guests do for
/// their parameters and notes. A console that cannot take the line has
/// nothing better to do with the error, so it is dropped.
pub fn write_diag(out: &mut dyn Write, text: &str) {
    let _ = writeln!(out, "{}", diag(text));
}

pub fn bail_out(reason: &str) -> String {
    format!("Bail out! {}", one_line(reason))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// `ok 1 name # figures`, `not ok 2 name # reason`, `ok 3 name # SKIP reason`.
pub fn result(outcome: Outcome, number: usize, name: &str, note: &str) -> String {
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

/// The results so far: numbers each, counts each outcome.
#[derive(Debug, Default)]
pub struct Tally {
    pub number: usize,
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Tally {
    /// A measured test: outcome and note from its record (a failed record
    /// carries its reason); `figures` is the note of a pass.
    pub fn report(&mut self, out: &mut dyn Write, r: &Record, figures: &str) {
        let (outcome, note) = match &r.reason {
            Some(why) if !r.ok => (Outcome::Fail, why.as_str()),
            _ => (Outcome::Pass, figures),
        };
        self.emit(out, outcome, &r.test, note, Some(r));
    }

    /// One numbered result, after its record's line if it has one.
    pub fn emit(
        &mut self,
        out: &mut dyn Write,
        outcome: Outcome,
        name: &str,
        note: &str,
        record: Option<&Record>,
    ) {
        self.number += 1;
        match outcome {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Skip => self.skip += 1,
        }
        if let Some(r) = record {
            let _ = writeln!(out, "{}", r.line());
        }
        let _ = writeln!(out, "{}", result(outcome, self.number, name, note));
    }

    /// Every test of a device that could not be measured at all (its
    /// driver or its open failed): each mode's, and the integrity check's
    /// when there is one, fails with `why`.
    pub fn fail_device(
        &mut self,
        out: &mut dyn Write,
        record: &dyn Fn(&str) -> Record,
        modes: &[&str],
        write_check: bool,
        why: &str,
    ) {
        for m in modes
            .iter()
            .copied()
            .chain(write_check.then_some("integrity"))
        {
            self.report(out, &record(m).failed(Some(why.into())), "");
        }
    }

    /// A skipped test per mode for each requested controller that has no
    /// disk, named `{controller}_{mode}`, with the reason.
    pub fn skip_missing(
        &mut self,
        out: &mut dyn Write,
        missing: &[(String, String)],
        modes: &[&str],
    ) {
        for (controller, why) in missing {
            for m in modes {
                self.emit(out, Outcome::Skip, &format!("{controller}_{m}"), why, None);
            }
        }
    }

    /// The totals line, and the kselftest exit code: a failure fails, all
    /// skipped skips.
    pub fn finish(&self, out: &mut dyn Write) -> i32 {
        let _ = writeln!(
            out,
            "# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:0",
            self.pass, self.fail, self.skip
        );
        if self.fail > 0 {
            KSFT_FAIL
        } else if self.skip > 0 && self.pass == 0 {
            KSFT_SKIP
        } else {
            KSFT_PASS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_follow_ktap() {
        assert_eq!(
            result(Outcome::Pass, 1, "ahci_sda_poll", "p50 1 us"),
            "ok 1 ahci_sda_poll # p50 1 us"
        );
        assert_eq!(result(Outcome::Pass, 1, "x", ""), "ok 1 x");
        assert_eq!(
            result(Outcome::Fail, 2, "x", "p99 too\nhigh"),
            "not ok 2 x # p99 too high"
        );
        assert_eq!(
            result(Outcome::Skip, 3, "x", "no io_uring"),
            "ok 3 x # SKIP no io_uring"
        );
        assert_eq!(bail_out("boom\nbang"), "Bail out! boom bang");
        assert_eq!(diag("a\nb"), "# a\n# b");
        let mut out = String::new();
        write_diag(&mut out, "kernel: 6.1\nuapi: 6.1");
        write_diag(&mut out, "");
        assert_eq!(out, "# kernel: 6.1\n# uapi: 6.1\n\n");
    }

    #[test]
    fn the_tally_numbers_counts_and_decides() {
        let mut out = String::new();
        let mut t = Tally::default();
        t.emit(&mut out, Outcome::Pass, "a_poll", "n=1", None);
        t.skip_missing(&mut out, &[("nvme".into(), "no disk".into())], &["poll"]);
        assert_eq!(t.finish(&mut out), KSFT_PASS);
        assert_eq!(
            out,
            "ok 1 a_poll # n=1\nok 2 nvme_poll # SKIP no disk\n# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\n"
        );
        // A device that could not be opened fails each of its tests.
        let mut gone = Tally::default();
        let mut text = String::new();
        let rec = |m: &str| Record::new("nvme_probe", "nvme_probe", "nvme", "pci 00:03.0", m);
        gone.fail_device(&mut text, &rec, &["poll"], true, "no BAR0");
        assert_eq!((gone.number, gone.fail), (2, 2));
        assert!(
            text.contains("not ok 1 nvme_probe_poll # no BAR0\n")
                && text.contains("not ok 2 nvme_probe_integrity # no BAR0"),
            "{text}"
        );
        let mut skipped = Tally::default();
        skipped.emit(&mut out, Outcome::Skip, "x", "why", None);
        assert_eq!(skipped.finish(&mut out), KSFT_SKIP);
        skipped.emit(&mut out, Outcome::Fail, "y", "bad", None);
        assert_eq!(skipped.finish(&mut out), KSFT_FAIL);
    }
}
