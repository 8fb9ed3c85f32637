//! Reads the selftest's KTAP from a guest console log. Kernel messages may
//! sit between (or inside) our lines; what matters is that the header, the
//! plan, every result and its machine-readable record are there and agree.
//! Anything missing or malformed is an error naming the log file. Whether
//! a run so read counts (`check_run`) is checked against what was asked.

use std::path::Path;

use anyhow::{bail, Context, Result};
use contract::Controller;

use crate::outcome::Skipped;

pub use contract::{Record, JSON_PREFIX};

#[derive(Clone, Debug, PartialEq)]
pub struct TestResult {
    pub ok: bool,
    pub number: usize,
    pub name: String,
    pub skip: bool,
    /// The directive's text after `SKIP`, or a failure's note.
    pub note: String,
}

#[derive(Clone, Debug)]
pub struct Parsed {
    pub kernel_release: Option<String>,
    pub uapi: Option<String>,
    pub plan: usize,
    pub results: Vec<TestResult>,
    pub records: Vec<Record>,
}

/// A console whose KTAP has a `Bail out!` line: the guest gave up (the
/// probe's CPU exception, a selftest that cannot go on). Typed, so the
/// campaign makes it a failed boot that quotes the line
/// (`failure::Failure::BailedOut`, whose words these are).
#[derive(Clone, Debug, PartialEq)]
pub struct BailedOut {
    /// The line after `Bail out!`.
    pub reason: String,
    /// `console log PATH`.
    pub log: String,
}

impl std::fmt::Display for BailedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            crate::failure::bailed_out(&self.reason),
            self.log
        )
    }
}

impl std::error::Error for BailedOut {}

fn result_line(l: &str) -> Option<TestResult> {
    let (ok, rest) = if let Some(r) = l.strip_prefix("ok ") {
        (true, r)
    } else {
        (false, l.strip_prefix("not ok ")?)
    };
    let (head, directive) = rest.split_once(" # ").unwrap_or((rest, ""));
    let (num, name) = head.split_once(' ').unwrap_or((head, ""));
    let skip = directive.starts_with("SKIP");
    Some(TestResult {
        ok,
        number: num.parse().ok()?,
        name: name.trim().to_string(),
        skip,
        note: directive.trim_start_matches("SKIP").trim().to_string(),
    })
}

/// Parses console text; `log` names the file in errors.
pub fn parse(text: &str, log: &Path) -> Result<Parsed> {
    let where_ = || format!("console log {}", log.display());
    // Serial consoles end lines with CR LF.
    let mut lines = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| !l.contains("KTAP version 1"));
    if lines.next().is_none() {
        let last: Vec<&str> = text
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "no KTAP output: the selftest never started in the guest ({}); last lines:\n{}",
            where_(),
            last.join("\n")
        );
    }
    let p = read(lines, &where_)?;
    check(&p, &where_)?;
    Ok(p)
}

/// The lines after the KTAP header: results, records, the plan and the
/// guest's notes, each as it comes.
fn read<'a>(lines: impl Iterator<Item = &'a str>, where_: &dyn Fn() -> String) -> Result<Parsed> {
    let mut p = Parsed {
        kernel_release: None,
        uapi: None,
        plan: 0,
        results: vec![],
        records: vec![],
    };
    let mut plan = None;
    for l in lines {
        if let Some(at) = l.find("Bail out!") {
            return Err(BailedOut {
                reason: l[at + "Bail out!".len()..].trim().to_string(),
                log: where_(),
            }
            .into());
        }
        if let Some(rec) = Record::find_in(l) {
            let rec = rec.with_context(|| {
                format!(
                    "malformed machine-readable line in {}: {}",
                    where_(),
                    truncate(l, 160)
                )
            })?;
            p.records.push(rec);
        } else if let Some(r) = result_line(l) {
            p.results.push(r);
        } else if let Some(n) = l.strip_prefix("1..") {
            let n = n.split_whitespace().next().unwrap_or("");
            plan = Some(
                n.parse::<usize>()
                    .with_context(|| format!("malformed KTAP plan {l:?} in {}", where_()))?,
            );
        } else if let Some(k) = l.strip_prefix("# kernel: ") {
            p.kernel_release = Some(k.trim().to_string());
        } else if let Some(u) = l.strip_prefix("# uapi: ") {
            p.uapi = Some(u.trim().to_string());
        }
    }
    let Some(plan) = plan else {
        bail!("KTAP output has no plan line (1..N) in {}", where_())
    };
    p.plan = plan;
    Ok(p)
}

/// The cross-checks: as many results as planned, numbered in order, a
/// record for every test run, as many samples as each record says.
fn check(p: &Parsed, where_: &dyn Fn() -> String) -> Result<()> {
    if p.results.len() != p.plan {
        bail!(
            "the KTAP plan announces {} tests but {} results were printed (did the guest die mid-run?) in {}",
            p.plan,
            p.results.len(),
            where_()
        );
    }
    for (i, r) in p.results.iter().enumerate() {
        if r.number != i + 1 {
            bail!(
                "KTAP test numbers out of order: expected {}, found {} ({}) in {}",
                i + 1,
                r.number,
                r.name,
                where_()
            );
        }
        if !r.skip && !p.records.iter().any(|rec| rec.test == r.name) {
            bail!(
                "test {} has no machine-readable record in {}",
                r.name,
                where_()
            );
        }
    }
    for rec in &p.records {
        if let Some(s) = &rec.stats {
            if s.n as usize != rec.samples_us.len() {
                bail!(
                    "record {} says n={} but carries {} samples ({})",
                    rec.test,
                    s.n,
                    rec.samples_us.len(),
                    where_()
                );
            }
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        format!("{}...", &s[..s.floor_char_boundary(n)])
    }
}

pub fn parse_file(path: &Path) -> Result<Parsed> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading console log {}", path.display()))?;
    parse(&text, path)
}

/// What one good guest run says besides its samples.
#[derive(Debug, PartialEq)]
pub struct RunCheck {
    pub kernel_release: Option<String>,
    /// Requested controllers whose disk never appeared, with the guest's reason.
    pub skipped: Vec<Skipped>,
}

/// Checks one guest run before its samples count: not skipped as a whole,
/// every write read back intact, for every requested controller either
/// results or the guest's reason for skipping it. Says why not.
pub fn check_run(
    parsed: &Parsed,
    code: i32,
    wanted: &[&Controller],
) -> std::result::Result<RunCheck, String> {
    if code == contract::exit::KSFT_SKIP {
        return Err(
            "the selftest skipped every test in the guest (no io_uring in the guest kernel?)"
                .into(),
        );
    }
    if let Some(bad) = parsed
        .records
        .iter()
        .find(|r| r.mode == "integrity" && !r.ok)
    {
        return Err(format!(
            "data integrity check failed on {}: {}",
            bad.device,
            bad.reason.clone().unwrap_or_default()
        ));
    }
    let mut skipped = Vec::new();
    for c in wanted {
        if parsed.records.iter().any(|r| r.controller == c.name) {
            continue;
        }
        let prefix = format!("{}_", c.name);
        match parsed
            .results
            .iter()
            .find(|r| r.skip && r.name.starts_with(&prefix))
        {
            Some(r) => skipped.push(Skipped {
                controller: c.name.to_string(),
                reason: r.note.clone(),
                guest: None,
            }),
            None => return Err(format!("the guest found no {} disk ({})", c.name, c.title)),
        }
    }
    Ok(RunCheck {
        kernel_release: parsed.kernel_release.clone(),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(records: Vec<Record>) -> Parsed {
        Parsed {
            kernel_release: Some("6.1.176".into()),
            uapi: None,
            plan: records.len(),
            results: vec![],
            records,
        }
    }

    fn rec(controller: &str, mode: &str, ok: bool) -> Record {
        let device = format!("{controller}_sda");
        Record::new(&device, &device, controller, "/dev/sda", mode)
            .failed((!ok).then(|| "data mismatch at offset 4096".into()))
    }

    fn rows(names: &[&str]) -> Vec<&'static Controller> {
        names
            .iter()
            .map(|n| contract::controllers::by_name(n).unwrap())
            .collect()
    }

    #[test]
    fn a_run_counts_only_when_complete_and_intact() {
        let want = rows(&["ahci", "nvme"]);
        let good = parsed(vec![rec("ahci", "poll", true), rec("nvme", "poll", true)]);
        let ok = check_run(&good, 0, &want).unwrap();
        assert_eq!(ok.kernel_release.as_deref(), Some("6.1.176"));
        assert!(ok.skipped.is_empty());
        assert_eq!(
            check_run(&good, 4, &want).unwrap_err(),
            "the selftest skipped every test in the guest (no io_uring in the guest kernel?)"
        );
        let mut missing = parsed(vec![rec("ahci", "poll", true)]);
        let e = check_run(&missing, 0, &want).unwrap_err();
        assert!(e.starts_with("the guest found no nvme disk ("), "{e}");
        // A controller the guest skipped, with its reason, is not an error.
        missing.results.push(TestResult {
            ok: true,
            number: 2,
            name: "nvme_poll".into(),
            skip: true,
            note: "no disk appeared within 10000 ms".into(),
        });
        let s = check_run(&missing, 0, &want).unwrap();
        assert_eq!(
            s.skipped,
            [Skipped {
                controller: "nvme".into(),
                reason: "no disk appeared within 10000 ms".into(),
                guest: None,
            }]
        );
        let bad = parsed(vec![
            rec("ahci", "integrity", false),
            rec("nvme", "poll", true),
        ]);
        assert_eq!(
            check_run(&bad, 1, &want).unwrap_err(),
            "data integrity check failed on ahci_sda: data mismatch at offset 4096"
        );
    }
}
