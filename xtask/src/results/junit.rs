//! JUnit XML (`--junit FILE`): one testsuite per variant (a run is one
//! cell; `matrix merge` adds a suite per cell), one testcase per guest,
//! controller and mode from `cases`, `<failure>` for a regression or a
//! stall a QEMU patch should have cured, `<error>` for an undecided
//! finding, `<skipped>` for a controller not measured; properties name
//! the QEMU, the accelerator and what the variant changes.

use anyhow::Result;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::cases::{self, Case, NamedReport, Status};
use crate::report::Report;

/// Counts of a suite, as the testsuite element states them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
}

impl Counts {
    fn of(cases: &[&Case]) -> Counts {
        let n = |s: Status| cases.iter().filter(|c| c.status == s).count();
        Counts {
            tests: cases.len(),
            failures: n(Status::Fail),
            errors: n(Status::Error),
            skipped: n(Status::Skip),
        }
    }

    fn add(&mut self, o: Counts) {
        self.tests += o.tests;
        self.failures += o.failures;
        self.errors += o.errors;
        self.skipped += o.skipped;
    }

    fn attrs(self, e: &mut BytesStart) {
        for (k, v) in [
            ("tests", self.tests),
            ("failures", self.failures),
            ("errors", self.errors),
            ("skipped", self.skipped),
        ] {
            e.push_attribute((k, v.to_string().as_str()));
        }
    }
}

fn props(doc: &Report, variant: &str) -> Vec<(&'static str, String)> {
    let v = doc.variant(variant);
    let mut p = vec![
        ("qemu_version", doc.qemu.version.clone().unwrap_or_default()),
        (
            "qemu_debian_version",
            doc.qemu.debian_version.clone().unwrap_or_default(),
        ),
        ("qemu_state", doc.qemu.state.to_string()),
        (
            "accel",
            doc.accel.map(|a| a.name().to_string()).unwrap_or_default(),
        ),
        (
            "kernel",
            doc.kernel
                .as_ref()
                .map(|k| k.release.clone())
                .unwrap_or_default(),
        ),
        ("variant", variant.to_string()),
    ];
    if let Some(v) = v {
        p.push(("changes", v.changes.name().to_string()));
        p.push(("against", v.against.clone()));
        p.push(("verdict", v.verdict.line.clone()));
    } else {
        p.push(("verdict", doc.verdict_line.clone()));
    }
    p
}

/// One testsuite: a variant of one cell, with its cases.
struct Suite<'a> {
    title: String,
    report: &'a Report,
    variant: String,
    cases: Vec<Case>,
}

/// A suite per cell and variant.
fn suites<'a>(cells: &[NamedReport<'a>]) -> Vec<Suite<'a>> {
    cells.iter().flat_map(cell_suites).collect()
}

/// A cell's suites: one per variant, in the order their cases come.
fn cell_suites<'a>(cell: &NamedReport<'a>) -> Vec<Suite<'a>> {
    let all = cases::of(cell.report);
    let mut names: Vec<String> = Vec::new();
    for c in &all {
        if !names.contains(&c.variant) {
            names.push(c.variant.clone());
        }
    }
    let qemu = cell.report.qemu.version.as_deref().unwrap_or("QEMU");
    names
        .into_iter()
        .map(|n| Suite {
            title: match cell.name {
                Some(cell) => format!("{cell}: {n}"),
                None => format!("uring-idle {qemu}: {n}"),
            },
            report: cell.report,
            cases: all.iter().filter(|c| c.variant == n).cloned().collect(),
            variant: n,
        })
        .collect()
}

impl Suite<'_> {
    fn counts(&self) -> Counts {
        Counts::of(&self.cases.iter().collect::<Vec<_>>())
    }
}

/// The XML document of `cells`.
pub fn write(cells: &[NamedReport]) -> Result<String> {
    let suites = suites(cells);
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let mut total = Counts::default();
    for s in &suites {
        total.add(s.counts());
    }
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "uring-idle"));
    total.attrs(&mut root);
    w.write_event(Event::Start(root))?;
    for s in &suites {
        write_suite(&mut w, s)?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    Ok(String::from_utf8(w.into_inner())? + "\n")
}

/// A testsuite element: its counts, properties and cases.
fn write_suite(w: &mut Writer<Vec<u8>>, suite: &Suite) -> Result<()> {
    let mut s = BytesStart::new("testsuite");
    s.push_attribute(("name", suite.title.as_str()));
    suite.counts().attrs(&mut s);
    w.write_event(Event::Start(s))?;
    w.write_event(Event::Start(BytesStart::new("properties")))?;
    for (k, v) in props(suite.report, &suite.variant) {
        let mut p = BytesStart::new("property");
        p.push_attribute(("name", k));
        p.push_attribute(("value", v.as_str()));
        w.write_event(Event::Empty(p))?;
    }
    w.write_event(Event::End(BytesEnd::new("properties")))?;
    for c in &suite.cases {
        write_case(w, c)?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    Ok(())
}

/// The element a case's status adds, and its `type`: none for a pass.
fn outcome(c: &Case) -> Option<(&'static str, Option<&'static str>)> {
    match c.status {
        Status::Pass => None,
        Status::Fail if c.message.starts_with("regression") => {
            Some(("failure", Some("regression")))
        }
        Status::Fail => Some(("failure", Some("stall"))),
        Status::Error => Some(("error", Some("inconclusive"))),
        Status::Skip => Some(("skipped", None)),
    }
}

/// A testcase element: its outcome, and its message and logs as output.
fn write_case(w: &mut Writer<Vec<u8>>, c: &Case) -> Result<()> {
    let mut t = BytesStart::new("testcase");
    let guest = c
        .guest
        .map(|g| g.to_string())
        .unwrap_or_else(|| "any".into());
    t.push_attribute(("classname", format!("io_uring_idle.stall.{guest}").as_str()));
    let name = c.name();
    t.push_attribute(("name", name.as_str()));
    w.write_event(Event::Start(t))?;
    if let Some((tag, kind)) = outcome(c) {
        let mut e = BytesStart::new(tag);
        e.push_attribute(("message", c.message.as_str()));
        if let Some(kind) = kind {
            e.push_attribute(("type", kind));
        }
        w.write_event(Event::Empty(e))?;
    }
    let mut out = format!("{}\n", c.message);
    for l in &c.logs {
        out.push_str(&format!("{}\n", l.display()));
    }
    w.write_event(Event::Start(BytesStart::new("system-out")))?;
    w.write_event(Event::Text(BytesText::new(&out)))?;
    w.write_event(Event::End(BytesEnd::new("system-out")))?;
    w.write_event(Event::End(BytesEnd::new("testcase")))?;
    Ok(())
}
