//! A scan's findings as users and CI systems read them: the JSON document,
//! JUnit XML (a testcase per cell) and KCIDB (a test per cell).

use std::path::PathBuf;

use serde::Serialize;

use crate::scan_findings::{Cell, Finding};

/// The JSON document of a scan.
#[derive(Serialize)]
pub struct ScanReport<'a> {
    pub qemu: String,
    pub qemu_version: String,
    pub deadline_ms: u64,
    pub requests: u32,
    pub cells: &'a [Cell],
    pub what_to_change: Vec<String>,
    pub exit_code: i32,
    pub run_dirs: Vec<PathBuf>,
}

impl Finding {
    /// The JUnit element a finding adds: a failure for what makes the scan
    /// exit 1, an error for a cell that could not be measured, skipped for
    /// one known before booting; none for clean.
    fn junit(&self) -> Option<&'static str> {
        match self {
            Finding::Clean { .. } => None,
            f if f.is_bad() => Some("failure"),
            Finding::NotApplicable { .. } => Some("skipped"),
            _ => Some("error"),
        }
    }
}

/// JUnit XML of a scan: one testsuite, a testcase per cell, named
/// `io_uring_idle.scan.CONFIG` / `CONTROLLER.WORKLOAD`.
pub fn junit(doc: &ScanReport) -> anyhow::Result<String> {
    use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let n = |k: &str| {
        doc.cells
            .iter()
            .filter(|c| c.finding.junit() == Some(k))
            .count()
    };
    let mut suite = BytesStart::new("testsuite");
    suite.push_attribute((
        "name",
        format!("uring-idle scan QEMU {}", doc.qemu_version).as_str(),
    ));
    for (k, v) in [
        ("tests", doc.cells.len()),
        ("failures", n("failure")),
        ("errors", n("error")),
        ("skipped", n("skipped")),
    ] {
        suite.push_attribute((k, v.to_string().as_str()));
    }
    w.write_event(Event::Start(suite))?;
    for c in doc.cells {
        let mut t = BytesStart::new("testcase");
        t.push_attribute((
            "classname",
            format!("io_uring_idle.scan.{}", c.config.slug()).as_str(),
        ));
        t.push_attribute(("name", format!("{}.{}", c.controller, c.workload).as_str()));
        match c.finding.junit() {
            None => w.write_event(Event::Empty(t))?,
            Some(tag) => {
                w.write_event(Event::Start(t))?;
                let mut e = BytesStart::new(tag);
                e.push_attribute(("message", c.line.as_str()));
                if tag != "skipped" {
                    e.push_attribute(("type", c.finding.name()));
                }
                w.write_event(Event::Empty(e))?;
                let files: Vec<String> = [&c.console, &c.stderr]
                    .into_iter()
                    .flatten()
                    .map(|p| p.display().to_string())
                    .chain(c.command.clone())
                    .collect();
                if !files.is_empty() {
                    w.write_event(Event::Start(BytesStart::new("system-out")))?;
                    w.write_event(Event::Text(BytesText::new(&files.join("\n"))))?;
                    w.write_event(Event::End(BytesEnd::new("system-out")))?;
                }
                w.write_event(Event::End(BytesEnd::new("testcase")))?;
            }
        }
    }
    w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    Ok(String::from_utf8(w.into_inner())? + "\n")
}

/// The KCIDB document of a scan (schema v5.3, as `kcidb` writes for
/// `patch-and-test`): a checkout and a build for the scanned binary, a test
/// per cell (`io_uring_idle.scan.CONFIG.CONTROLLER.WORKLOAD`): clean PASS;
/// lost, hung or crashed FAIL; refused or unmeasured ERROR; not applicable
/// SKIP; a lost wakeup's wait as its number.
pub fn kcidb(doc: &ScanReport) -> anyhow::Result<String> {
    use crate::kcidb::{file_url, resource, ORIGIN};
    use serde_json::json;
    let id = crate::cache::key([doc.qemu.as_bytes(), doc.qemu_version.as_bytes()]);
    let checkout = format!("{ORIGIN}:{id}:qemu");
    let build = format!("{ORIGIN}:{id}:build:scanned");
    let tests: Vec<serde_json::Value> = doc
        .cells
        .iter()
        .map(|c| {
            let status = match &c.finding {
                Finding::Clean { .. } => "PASS",
                f if f.is_bad() => "FAIL",
                Finding::NotApplicable { .. } => "SKIP",
                _ => "ERROR",
            };
            let path = format!(
                "io_uring_idle.scan.{}.{}.{}",
                c.config.slug(),
                c.controller,
                c.workload
            );
            let mut t = json!({
                "id": format!("{ORIGIN}:{id}:{path}"), "build_id": build, "origin": ORIGIN,
                "path": path, "status": status, "comment": c.line,
                "misc": { "finding": c.finding.name(), "config": c.config, "command": c.command },
            });
            if let Finding::LostWakeup { waited_ms, .. } = &c.finding {
                t["number"] = json!({ "value": waited_ms, "unit": "ms" });
            }
            if let Some(log) = &c.console {
                t["log_url"] = json!(file_url(log));
                let files: Vec<serde_json::Value> = [&c.console, &c.stderr]
                    .into_iter()
                    .flatten()
                    .map(|p| resource(p))
                    .collect();
                t["output_files"] = json!(files);
            }
            t
        })
        .collect();
    let v = json!({
        "version": { "major": 5, "minor": 3 },
        "checkouts": [{
            "id": checkout, "origin": ORIGIN, "tree_name": "qemu",
            "git_commit_name": format!("QEMU {}", doc.qemu_version), "patchset_hash": "", "valid": true,
            "comment": doc.qemu,
        }],
        "builds": [{
            "id": build, "checkout_id": checkout, "origin": ORIGIN, "architecture": "x86_64",
            "status": "PASS", "comment": "the scanned QEMU",
            "output_files": [resource(std::path::Path::new(&doc.qemu))],
        }],
        "tests": tests,
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}
