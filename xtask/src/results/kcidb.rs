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

use crate::cases::{self, Case, NamedReport, Status};
use crate::patch::BASELINE;
use crate::report::{Report, VariantReport};

pub const ORIGIN: &str = "uring_idle";

/// A file as a KCIDB resource (a file:// URL; names carry no directory).
pub fn resource(p: &Path) -> Value {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    json!({ "name": name, "url": file_url(p) })
}

pub fn file_url(p: &Path) -> String {
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
        let run = Run {
            doc: c.report,
            id: run_id(c.report, c.name),
        };
        checkouts.extend(run.checkouts());
        builds.extend(run.builds());
        tests.extend(run.tests());
    }
    Ok(json!({
        "version": { "major": 5, "minor": 3 },
        "checkouts": checkouts, "builds": builds, "tests": tests,
    }))
}

/// One run's report and the id its objects are named under.
struct Run<'a> {
    doc: &'a Report,
    id: String,
}

impl Run<'_> {
    /// The checkout of the QEMU source (`None`), or of a variant's patches.
    fn checkout_id(&self, variant: Option<&str>) -> String {
        match variant {
            Some(v) => format!("{ORIGIN}:{}:qemu:{v}", self.id),
            None => format!("{ORIGIN}:{}:qemu", self.id),
        }
    }

    /// The build of the QEMU named `qemu` (`baseline` or a QEMU variant).
    fn build_id(&self, qemu: &str) -> String {
        format!("{ORIGIN}:{}:build:{qemu}", self.id)
    }

    /// The variants that built a QEMU of their own (not kernel variants).
    fn qemu_variants(&self) -> impl Iterator<Item = &VariantReport> {
        self.doc.variants.iter().filter(|v| v.kernel.is_none())
    }

    /// `QEMU VERSION (Debian DEBIAN_VERSION)`, the checkouts' commit name.
    fn commit_name(&self) -> String {
        let q = &self.doc.qemu;
        let version = q.version.as_deref().unwrap_or("unknown");
        match &q.debian_version {
            Some(d) => format!("QEMU {version} (Debian {d})"),
            None => format!("QEMU {version}"),
        }
    }

    /// The QEMU source without patches, then one checkout per QEMU variant
    /// with patches (a variant without patches builds the source as is).
    fn checkouts(&self) -> Vec<Value> {
        let q = &self.doc.qemu;
        let commit_name = self.commit_name();
        let source = q.tree.as_ref().or(q.binary.as_ref());
        let mut out = vec![json!({
            "id": self.checkout_id(None), "origin": ORIGIN, "tree_name": "qemu",
            "git_commit_name": commit_name, "patchset_hash": "", "valid": true,
            "comment": format!("{} ({})", source.map(|p| p.display().to_string()).unwrap_or_default(), q.state),
            "misc": { "state": q.state, "debian_version": q.debian_version },
        })];
        for v in self.qemu_variants().filter(|v| !v.patches.is_empty()) {
            let hashes: Vec<String> = v.patches.iter().map(|p| p.sha256.clone()).collect();
            out.push(json!({
                "id": self.checkout_id(Some(&v.name)), "origin": ORIGIN, "tree_name": "qemu",
                "git_commit_name": commit_name, "valid": true,
                "patchset_files": v.patches.iter().map(|p| resource(&p.path)).collect::<Vec<_>>(),
                "patchset_hash": patchset_hash(&hashes),
                "comment": format!("variant {}", v.name),
                "misc": { "patch_sha256": hashes },
            }));
        }
        out
    }

    /// One build per QEMU binary: the baseline, each QEMU variant, or the
    /// one prebuilt binary measured alone.
    fn builds(&self) -> Vec<Value> {
        let doc = self.doc;
        let mut out = Vec::new();
        if let Some(b) = &doc.baseline_binary {
            out.push(json!({
                "id": self.build_id(BASELINE), "checkout_id": self.checkout_id(None), "origin": ORIGIN,
                "architecture": "x86_64", "status": "PASS",
                "comment": "the baseline QEMU", "output_files": [resource(b)],
            }));
        }
        for v in self.qemu_variants() {
            let checkout = self.checkout_id((!v.patches.is_empty()).then_some(v.name.as_str()));
            out.push(json!({
                "id": self.build_id(&v.name), "checkout_id": checkout, "origin": ORIGIN,
                "architecture": "x86_64", "status": "PASS",
                "comment": format!("QEMU variant {}", v.name), "output_files": [resource(&v.binary)],
            }));
        }
        if doc.baseline_binary.is_none() && doc.variants.is_empty() {
            if let Some(b) = &doc.qemu.binary {
                out.push(json!({
                    "id": self.build_id(BASELINE), "checkout_id": self.checkout_id(None), "origin": ORIGIN,
                    "architecture": "x86_64", "status": "PASS", "output_files": [resource(b)],
                }));
            }
        }
        out
    }

    /// The build a case ran on: a kernel variant's is the QEMU it is
    /// compared with; the baseline's where no QEMU variant has that name.
    fn build_of(&self, v: Option<&VariantReport>) -> String {
        let qemu = match v {
            Some(v) if v.kernel.is_some() => v.against.split('+').next().unwrap_or(BASELINE),
            Some(v) => v.name.as_str(),
            None => BASELINE,
        };
        if self.qemu_variants().any(|v| v.name == qemu) {
            self.build_id(qemu)
        } else {
            self.build_id(BASELINE)
        }
    }

    /// A test per case.
    fn tests(&self) -> Vec<Value> {
        cases::of(self.doc).iter().map(|c| self.test(c)).collect()
    }

    /// A case as a KCIDB test: status, its p50 as the number (none when
    /// skipped), its logs as output files, the environment it ran in.
    fn test(&self, c: &Case) -> Value {
        let doc = self.doc;
        let v = doc.variant(&c.variant);
        let accel = doc.accel.map(|a| a.name().to_string()).unwrap_or_default();
        let kernel = doc
            .kernel
            .as_ref()
            .map(|k| k.release.clone())
            .unwrap_or_default();
        let guest = c.guest.map(|g| g.to_string()).unwrap_or_default();
        let id = format!(
            "{ORIGIN}:{}:{}:{guest}:{}:{}",
            self.id, c.variant, c.controller, c.mode
        );
        let kernel_named = if kernel.is_empty() || guest != "linux" {
            String::new()
        } else {
            format!(", kernel {kernel}")
        };
        let mut t = json!({
            "id": id, "build_id": self.build_of(v), "origin": ORIGIN, "path": c.path(),
            "status": c.status.kcidb(), "comment": c.message,
            "environment": {
                "comment": format!("{accel}, {guest} guest{kernel_named}"),
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
        if let Some(p50) = c.p50_us.filter(|_| c.status != Status::Skip) {
            t["number"] = json!({ "value": p50 / 1000.0, "unit": "ms" });
        }
        if let Some(first) = c.logs.first() {
            t["log_url"] = json!(file_url(first));
            t["output_files"] = json!(c.logs.iter().map(|l| resource(l)).collect::<Vec<_>>());
        }
        t
    }
}
