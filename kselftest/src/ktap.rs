//! KTAP version 1 output (Documentation/dev-tools/ktap.rst). The
//! machine-readable line per test is `contract::Record::line`.

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
}
