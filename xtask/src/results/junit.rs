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

/// The XML document of `cells`.
pub fn write(cells: &[NamedReport]) -> Result<String> {
    let mut suites: Vec<(String, &Report, String, Vec<Case>)> = Vec::new();
    for cell in cells {
        let all = cases::of(cell.report);
        let mut names: Vec<String> = all.iter().map(|c| c.variant.clone()).collect();
        names.dedup();
        let mut seen = Vec::new();
        for n in names {
            if seen.contains(&n) {
                continue;
            }
            seen.push(n.clone());
            let mine: Vec<Case> = all.iter().filter(|c| c.variant == n).cloned().collect();
            let title = match cell.name {
                Some(cell) => format!("{cell}: {n}"),
                None => format!(
                    "uring-idle {}: {n}",
                    cell.report
                        .qemu
                        .version
                        .clone()
                        .unwrap_or_else(|| "QEMU".into())
                ),
            };
            suites.push((title, cell.report, n, mine));
        }
    }
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let mut total = Counts::default();
    for (_, _, _, cases) in &suites {
        total.add(Counts::of(&cases.iter().collect::<Vec<_>>()));
    }
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "uring-idle"));
    total.attrs(&mut root);
    w.write_event(Event::Start(root))?;
    for (title, doc, variant, cases) in &suites {
        let mut s = BytesStart::new("testsuite");
        s.push_attribute(("name", title.as_str()));
        Counts::of(&cases.iter().collect::<Vec<_>>()).attrs(&mut s);
        w.write_event(Event::Start(s))?;
        w.write_event(Event::Start(BytesStart::new("properties")))?;
        for (k, v) in props(doc, variant) {
            let mut p = BytesStart::new("property");
            p.push_attribute(("name", k));
            p.push_attribute(("value", v.as_str()));
            w.write_event(Event::Empty(p))?;
        }
        w.write_event(Event::End(BytesEnd::new("properties")))?;
        for c in cases {
            let mut t = BytesStart::new("testcase");
            let guest = c
                .guest
                .map(|g| g.to_string())
                .unwrap_or_else(|| "any".into());
            t.push_attribute(("classname", format!("io_uring_idle.stall.{guest}").as_str()));
            let name = if c.mode.is_empty() {
                c.controller.clone()
            } else {
                format!("{}.{}", c.controller, c.mode)
            };
            t.push_attribute(("name", name.as_str()));
            w.write_event(Event::Start(t))?;
            let (tag, kind) = match c.status {
                Status::Pass => ("", ""),
                Status::Fail if c.message.starts_with("regression") => ("failure", "regression"),
                Status::Fail => ("failure", "stall"),
                Status::Error => ("error", "inconclusive"),
                Status::Skip => ("skipped", ""),
            };
            if !tag.is_empty() {
                let mut e = BytesStart::new(tag);
                e.push_attribute(("message", c.message.as_str()));
                if !kind.is_empty() {
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
        }
        w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    Ok(String::from_utf8(w.into_inner())? + "\n")
}
