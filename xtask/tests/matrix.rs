//! `matrix merge` over cell folders made from recorded reports (and one cell
//! that never reported), checked by KCIDB's and JUnit's own tools; and each
//! bad input to `matrix` with its one message and exit 2.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{py, Suite, JUNIT, KCIDB};

fn xtask(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(common::XTASK).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn cell(dir: &Path, id: &str, guest: &str, kernel: Option<&str>, report: Option<&str>) {
    let d = dir.join(id);
    fs::create_dir_all(&d).unwrap();
    let c = serde_json::json!({
        "id": id, "qemu": "debian=1:10.2.2+ds-1", "baseline": "revert-fix", "kernel": kernel,
        "guest": guest, "controllers": "ahci,virtio_blk,nvme", "workload": "latency",
    });
    fs::write(d.join("cell.json"), c.to_string()).unwrap();
    if let Some(r) = report {
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/reports")
                .join(r),
            d.join("report.json"),
        )
        .unwrap();
    } else {
        fs::write(d.join("run.log"), "error: the QEMU build failed\n").unwrap();
    }
}

#[test]
fn merge_makes_one_table_and_valid_junit_and_kcidb_from_any_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("shard1"), tmp.path().join("shard2"));
    cell(
        &a,
        "q1022.linux.build",
        "linux",
        Some("build"),
        Some("kernel-variants.json"),
    );
    cell(
        &b,
        "q1022.linux.probe-and-linux",
        "linux",
        Some("build"),
        Some("fix-null-harmful.json"),
    );
    cell(&b, "q1022.probe.broken", "probe", None, None);
    let out = |f: &str| tmp.path().join(f).display().to_string();
    let (code, stdout, err) = xtask(&[
        "matrix",
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
        &out("merged.json"),
        "--junit",
        &out("merged.xml"),
        "--kcidb",
        &out("merged.kcidb.json"),
    ]);
    // Both recorded runs hold a REGRESSION (their harmful variants) and one
    // cell never reported: the merge fails the job.
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| q1022"))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let broken = lines.iter().find(|l| l.contains("broken")).unwrap();
    assert!(
        broken.contains("ERROR (no report: see") && broken.contains("run.log"),
        "{broken}"
    );
    let linux = lines
        .iter()
        .find(|l| l.contains("q1022.linux.build"))
        .unwrap();
    assert!(
        linux.contains("affected 28.8x") && linux.contains("REGRESSION"),
        "{linux}"
    );
    // JUnit: a suite per variant per reporting cell, named by the cell.
    let suites: Vec<Suite> =
        serde_json::from_str(&py(JUNIT, &tmp.path().join("merged.xml"))).unwrap();
    assert_eq!(suites.len(), 5 + 3, "{suites:#?}");
    assert!(
        suites.iter().all(|s| s.name.starts_with("q1022.")),
        "{suites:#?}"
    );
    assert!(suites
        .iter()
        .any(|s| s.name == "q1022.linux.build: kharm" && s.failures == 2));
    // KCIDB: valid, the two cells' checkouts and tests kept apart.
    let k: serde_json::Value =
        serde_json::from_str(&py(KCIDB, &tmp.path().join("merged.kcidb.json"))).unwrap();
    assert!(k["tests"].as_u64().unwrap() > 40, "{k}");
    let merged: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(tmp.path().join("merged.json")).unwrap()).unwrap();
    assert_eq!(merged.as_array().unwrap().len(), 3);
}

#[test]
fn bad_matrix_inputs_get_one_message_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let bad = tmp.path().join("bad");
    fs::create_dir_all(bad.join("c")).unwrap();
    fs::write(
        bad.join("c/cell.json"),
        serde_json::json!({"id": "c", "qemu": "debian", "baseline": "auto", "kernel": null, "guest": "probe", "controllers": "ahci", "workload": "latency"}).to_string(),
    )
    .unwrap();
    fs::write(
        bad.join("c/report.json"),
        r#"{"verdict": "verified", "old_field": 1}"#,
    )
    .unwrap();
    let cfg = tmp.path().join("m.toml");
    fs::write(
        &cfg,
        "qemu = [\"debian\"]\nguest = [\"linux\", \"windows\"]\n",
    )
    .unwrap();
    for (args, says) in [
        (
            vec!["matrix", "merge", empty.to_str().unwrap()],
            "no matrix cell reports",
        ),
        (
            vec!["matrix", "merge", bad.to_str().unwrap()],
            "incompatible uring-idle version",
        ),
        (
            vec!["matrix", "merge", "/no/such/dir"],
            "is not a directory",
        ),
        (
            vec!["matrix", "run", "--cell", "nope"],
            "no cell nope in this matrix",
        ),
        (vec!["matrix", "run", "--shard", "3/2"], "I/N"),
        (vec!["matrix", "run"], "--cell ID, --shard I/N or --all"),
        (
            vec!["matrix", "plan", "--config", cfg.to_str().unwrap()],
            "matrix axis `guest`: value \"windows\"",
        ),
    ] {
        let (code, _, err) = xtask(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // The committed matrix plans, one object per cell with a stable id.
    let (code, stdout, err) = xtask(&["matrix", "plan"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let cells = plan["include"].as_array().unwrap();
    assert_eq!(cells.len(), 9, "{plan}");
    assert!(cells.iter().all(|c| c["id"].as_str().is_some()));
}
