//! KernelCI's KCIDB JSON, schema v5.3 (`--kcidb FILE`): a checkout per QEMU
//! source and patch set (the baseline's without patches; each variant's
//! patch files with their SHA-256), a build per QEMU binary, and a test per
//! case of `cases` (dotted path `io_uring_idle.stall.CONTROLLER.MODE`, its
//! status, the p50 as its number, console logs and traces as output files,
//! the accelerator, guest and kernel in its environment). Origin
//! `uring_idle` (KCIDB origins are `[a-z0-9_]`). Submitting it needs
//! KernelCI credentials (`kcidb-submit`); this only writes the file.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cases::{self, NamedReport, Status};
use crate::report::Report;

pub const ORIGIN: &str = "uring_idle";

/// A file as a KCIDB resource (a file:// URL; names carry no directory).
fn resource(p: &Path) -> Value {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    json!({ "name": name, "url": file_url(p) })
}

fn file_url(p: &Path) -> String {
    let s = p.display().to_string();
    let enc: String = s
        .chars()
        .map(|c| match c {
            ' ' => "%20".to_string(),
            '#' => "%23".to_string(),
            '?' => "%3F".to_string(),
            '%' => "%25".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!("file://{enc}")
}

/// KCIDB's patchset hash: SHA-256 over each patch's newline-terminated
/// SHA-256, in order of application.
pub fn patchset_hash(hashes: &[String]) -> String {
    let mut h = Sha256::new();
    for x in hashes {
        h.update(format!("{x}\n"));
    }
    crate::cache::hex(&h.finalize())
}

/// An id for one run: its run folder (every boot's logs are in it).
fn run_id(doc: &Report, cell: Option<&str>) -> String {
    let dir = doc
        .guest_runs
        .first()
        .and_then(|r| r.console_log.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let key = crate::cache::key([dir.as_os_str().as_encoded_bytes()]);
    match cell {
        Some(c) => format!("{c}:{key}"),
        None => key,
    }
}

/// The KCIDB file of `cells`: the document as pretty JSON, newline-ended.
pub fn text(cells: &[NamedReport]) -> Result<String> {
    let doc = document(cells)?;
    Ok(serde_json::to_string_pretty(&doc).context("serialising the KCIDB document")? + "\n")
}

/// The KCIDB document of `cells`.
pub fn document(cells: &[NamedReport]) -> Result<Value> {
    let (mut checkouts, mut builds, mut tests) = (vec![], vec![], vec![]);
    for c in cells {
        let (cell, doc) = (c.name, c.report);
        let run = run_id(doc, cell);
        let version = doc.qemu.version.clone().unwrap_or_else(|| "unknown".into());
        let commit_name = match &doc.qemu.debian_version {
            Some(d) => format!("QEMU {version} (Debian {d})"),
            None => format!("QEMU {version}"),
        };
        let base_checkout = format!("{ORIGIN}:{run}:qemu");
        checkouts.push(json!({
            "id": base_checkout, "origin": ORIGIN, "tree_name": "qemu",
            "git_commit_name": commit_name, "patchset_hash": "", "valid": true,
            "comment": format!("{} ({})", doc.qemu.tree.as_ref().or(doc.qemu.binary.as_ref()).map(|p| p.display().to_string()).unwrap_or_default(), doc.qemu.state),
            "misc": { "state": doc.qemu.state, "debian_version": doc.qemu.debian_version },
        }));
        let base_build = format!("{ORIGIN}:{run}:build:baseline");
        let mut build_of = vec![("baseline".to_string(), base_build.clone())];
        if let Some(b) = &doc.baseline_binary {
            builds.push(json!({
                "id": base_build, "checkout_id": base_checkout, "origin": ORIGIN,
                "architecture": "x86_64", "status": "PASS",
                "comment": "the baseline QEMU", "output_files": [resource(b)],
            }));
        }
        for v in doc.variants.iter().filter(|v| v.kernel.is_none()) {
            let hashes: Vec<String> = v.patches.iter().map(|p| p.sha256.clone()).collect();
            let checkout = if v.patches.is_empty() {
                base_checkout.clone()
            } else {
                let id = format!("{ORIGIN}:{run}:qemu:{}", v.name);
                checkouts.push(json!({
                    "id": id, "origin": ORIGIN, "tree_name": "qemu",
                    "git_commit_name": commit_name, "valid": true,
                    "patchset_files": v.patches.iter().map(|p| resource(&p.path)).collect::<Vec<_>>(),
                    "patchset_hash": patchset_hash(&hashes),
                    "comment": format!("variant {}", v.name),
                    "misc": { "patch_sha256": hashes },
                }));
                id
            };
            let id = format!("{ORIGIN}:{run}:build:{}", v.name);
            builds.push(json!({
                "id": id, "checkout_id": checkout, "origin": ORIGIN,
                "architecture": "x86_64", "status": "PASS",
                "comment": format!("QEMU variant {}", v.name), "output_files": [resource(&v.binary)],
            }));
            build_of.push((v.name.clone(), id));
        }
        if doc.baseline_binary.is_none() && doc.variants.is_empty() {
            // One prebuilt binary measured alone.
            if let Some(b) = &doc.qemu.binary {
                builds.push(json!({
                    "id": base_build, "checkout_id": base_checkout, "origin": ORIGIN,
                    "architecture": "x86_64", "status": "PASS", "output_files": [resource(b)],
                }));
            }
        }
        let accel = doc.accel.map(|a| a.name().to_string()).unwrap_or_default();
        let kernel = doc
            .kernel
            .as_ref()
            .map(|k| k.release.clone())
            .unwrap_or_default();
        for c in cases::of(doc) {
            let v = doc.variant(&c.variant);
            // A kernel variant ran on the QEMU build it is compared with.
            let qemu = match v {
                Some(v) if v.kernel.is_some() => v
                    .against
                    .split('+')
                    .next()
                    .unwrap_or("baseline")
                    .to_string(),
                Some(v) => v.name.clone(),
                None => "baseline".into(),
            };
            let build = build_of
                .iter()
                .find(|(n, _)| *n == qemu)
                .map(|(_, id)| id.clone())
                .unwrap_or_else(|| base_build.clone());
            let guest = c.guest.map(|g| g.to_string()).unwrap_or_default();
            let id = format!(
                "{ORIGIN}:{run}:{}:{guest}:{}:{}",
                c.variant, c.controller, c.mode
            );
            let mut t = json!({
                "id": id, "build_id": build, "origin": ORIGIN, "path": c.path(),
                "status": c.status.kcidb(), "comment": c.message,
                "environment": {
                    "comment": format!("{accel}, {guest} guest{}", if kernel.is_empty() || guest != "linux" { String::new() } else { format!(", kernel {kernel}") }),
                    "misc": { "accel": accel, "guest": guest, "kernel": kernel },
                },
                "misc": {
                    "variant": c.variant,
                    "changes": c.changes.map(|x| x.name()),
                    "against": v.map(|v| v.against.clone()),
                    "baseline_p50_ms": c.baseline_p50_us.map(|x| x / 1000.0),
                    "kernel_patch_sha256": v.map(|v| v.kernel_patches.iter().map(|p| p.sha256.clone()).collect::<Vec<_>>()),
                },
            });
            if let Some(p50) = c.p50_us {
                t["number"] = json!({ "value": p50 / 1000.0, "unit": "ms" });
            }
            if let Some(first) = c.logs.first() {
                t["log_url"] = json!(file_url(first));
                t["output_files"] = json!(c.logs.iter().map(|l| resource(l)).collect::<Vec<_>>());
            }
            if c.status == Status::Skip {
                t.as_object_mut().map(|o| o.remove("number"));
            }
            tests.push(t);
        }
    }
    Ok(json!({
        "version": { "major": 5, "minor": 3 },
        "checkouts": checkouts, "builds": builds, "tests": tests,
    }))
}
