//! Reads the selftest's KTAP from a guest console log. Kernel messages may
//! sit between (or inside) our lines; what matters is that the header, the
//! plan, every result and its machine-readable record are there and agree.
//! Anything missing or malformed is an error naming the log file.

use std::path::Path;

use anyhow::{bail, Context, Result};

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
