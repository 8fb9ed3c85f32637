//! The CI formats of two recorded reports (our fix, a null and a harmful
//! QEMU patch with both guests; a null and a harmful kernel patch), checked
//! by other people's tools: KCIDB's own schema package (`kcidb-io`) and a
//! JUnit parser (`junitparser`), both from PyPI in the tool's private venv
//! (pinned in `xtask::venv::VALIDATORS`); their counts against the report.

mod common;

use std::path::Path;

use common::{py, Suite, JUNIT, KCIDB};

use xtask::cases::{self, Status};
use xtask::report::Report;

fn fixture(name: &str) -> Report {
    Report::read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/reports/{name}")),
    )
    .unwrap()
}

#[test]
fn junit_and_kcidb_of_recorded_runs_pass_their_own_validators_and_match_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, suites) in [("fix-null-harmful.json", 3), ("kernel-variants.json", 5)] {
        let doc = fixture(name);
        let cases = cases::of(&doc);
        // JUnit, read back by junitparser.
        let xml = tmp.path().join(format!("{name}.xml"));
        std::fs::write(
            &xml,
            xtask::junit::write(&[xtask::cases::NamedReport {
                name: None,
                report: &doc,
            }])
            .unwrap(),
        )
        .unwrap();
        let read: Vec<Suite> = serde_json::from_str(&py(JUNIT, &xml)).unwrap();
        assert_eq!(read.len(), suites, "{read:#?}");
        for (v, s) in doc.variants.iter().zip(&read) {
            let mine: Vec<_> = cases.iter().filter(|c| c.variant == v.name).collect();
            let n = |st: Status| mine.iter().filter(|c| c.status == st).count();
            assert!(s.name.ends_with(&format!(": {}", v.name)), "{}", s.name);
            // One case per controller and mode the variant measured.
            assert_eq!(
                s.tests,
                v.devices.len()
                    + if v.name == doc.variants[0].name {
                        doc.skipped.len()
                    } else {
                        0
                    }
            );
            assert_eq!(
                (s.failures, s.errors, s.skipped),
                (n(Status::Fail), n(Status::Error), n(Status::Skip)),
                "{}",
                s.name
            );
            assert_eq!(s.props["accel"], "tcg");
            assert_eq!(s.props["changes"], v.changes.name());
            // A verdict that is a regression has failures; a verified fix none.
            match v.verdict.kind {
                xtask::verdict::Kind::Regression => assert!(s.failures > 0, "{}", s.name),
                xtask::verdict::Kind::Verified => {
                    assert_eq!(s.failures + s.errors, 0, "{}", s.name)
                }
                _ => {}
            }
        }
        // KCIDB, validated by KernelCI's schema package.
        let k = tmp.path().join(format!("{name}.kcidb.json"));
        let doc_k = xtask::kcidb::document(&[xtask::cases::NamedReport {
            name: None,
            report: &doc,
        }])
        .unwrap();
        std::fs::write(&k, serde_json::to_string(&doc_k).unwrap()).unwrap();
        let counts: serde_json::Value = serde_json::from_str(&py(KCIDB, &k)).unwrap();
        assert_eq!(counts["tests"], cases.len(), "{counts}");
        let qemu_variants = doc.variants.iter().filter(|v| v.kernel.is_none()).count();
        assert_eq!(counts["builds"], 1 + qemu_variants, "{counts}");
        for t in doc_k["tests"].as_array().unwrap() {
            assert!(
                t["path"]
                    .as_str()
                    .unwrap()
                    .starts_with("io_uring_idle.stall."),
                "{t}"
            );
            assert!(t["id"].as_str().unwrap().starts_with("uring_idle:"), "{t}");
        }
    }
    // The particular verdicts, as KCIDB statuses: the harmful patch fails
    // on virtio_blk only; the null QEMU patch leaves AHCI stalled (FAIL: a
    // QEMU patch should cure it); the null kernel patch leaves it too, which
    // is no fault of a kernel patch (PASS).
    let all = |name: &str, variant: &str, controller: &str, want: Status| {
        let got: Vec<Status> = cases::of(&fixture(name))
            .into_iter()
            .filter(|c| c.variant == variant && c.controller == controller)
            .map(|c| c.status)
            .collect();
        assert!(
            !got.is_empty() && got.iter().all(|s| *s == want),
            "{name} {variant} {controller}: {got:?}"
        );
    };
    let both = "fix-null-harmful.json";
    all(both, "harmful", "virtio_blk", Status::Fail);
    all(both, "harmful", "nvme", Status::Pass);
    all(both, "null", "ahci", Status::Fail);
    all(both, "fix", "ahci", Status::Pass);
    let kernel = "kernel-variants.json";
    all(kernel, "knull", "ahci", Status::Pass);
    all(kernel, "kharm", "virtio_blk", Status::Fail);
    all(kernel, "patched+kharm", "virtio_blk", Status::Fail);
}
