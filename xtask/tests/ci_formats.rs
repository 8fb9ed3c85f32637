//! The CI formats of seven recorded `patch-and-test` runs
//! (`tests/fixtures/runs/*`), regenerated from each run's report by the
//! code `--junit` and `--kcidb` use, must equal the recorded files byte for
//! byte; and the report document itself must read and write back
//! unchanged (the typed `Report` loses nothing). A change in any of these
//! files is a change CI systems and readers see: make it on purpose.

use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;

use xtask::cases::NamedReport;
use xtask::report::Report;

fn runs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("report.json").is_file())
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 7, "recorded runs under {}", dir.display());
    runs
}

fn recorded(run: &Path, file: &str) -> String {
    std::fs::read_to_string(run.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", run.join(file).display()))
}

fn report(run: &Path) -> Report {
    Report::read(&run.join("report.json")).unwrap()
}

#[test]
fn reports_read_and_write_back_unchanged() {
    for run in runs() {
        let doc = report(&run);
        assert_eq!(
            serde_json::to_string_pretty(&doc).unwrap(),
            recorded(&run, "report.json"),
            "{}",
            run.display()
        );
    }
}

#[test]
fn junit_of_recorded_reports_is_unchanged() {
    for run in runs() {
        let doc = report(&run);
        let cells = [NamedReport {
            name: None,
            report: &doc,
        }];
        assert_eq!(
            xtask::junit::write(&cells).unwrap(),
            recorded(&run, "junit.xml"),
            "{}",
            run.display()
        );
    }
}

#[test]
fn kcidb_of_recorded_reports_is_unchanged() {
    for run in runs() {
        let doc = report(&run);
        let cells = [NamedReport {
            name: None,
            report: &doc,
        }];
        assert_eq!(
            xtask::kcidb::text(&cells).unwrap(),
            recorded(&run, "kcidb.json"),
            "{}",
            run.display()
        );
    }
}
