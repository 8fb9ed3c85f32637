//! The console-log parser against a recorded guest run and damaged copies.

use xtask::ktap;

use std::path::Path;

const PASS: &str = include_str!("fixtures/console-pass.log");
const LOG: &str = "/var/log/console-x.log";

fn err(text: &str) -> String {
    format!("{:#}", ktap::parse(text, Path::new(LOG)).unwrap_err())
}

#[test]
fn recorded_run_parses_with_kernel_lines_around_it() {
    let p = ktap::parse(PASS, Path::new(LOG)).unwrap();
    assert_eq!(p.plan, 9);
    assert_eq!(p.results.len(), 9);
    assert!(p.results.iter().all(|r| r.ok && !r.skip));
    assert_eq!(p.kernel_release.as_deref(), Some("6.1.176"));
    assert!(p.uapi.as_deref().unwrap().contains("opcodes"));
    let ahci: Vec<_> = p
        .records
        .iter()
        .filter(|r| r.controller == "ahci")
        .collect();
    assert_eq!(ahci.len(), 3);
    let poll = ahci.iter().find(|r| r.mode == "poll").unwrap();
    assert_eq!(poll.test, "ahci_sda_poll");
    assert_eq!(poll.stats.as_ref().unwrap().n, 100);
    assert_eq!(poll.samples_us.len(), 100);
    let controllers: std::collections::BTreeSet<_> =
        p.records.iter().map(|r| r.controller.as_str()).collect();
    assert_eq!(
        controllers.into_iter().collect::<Vec<_>>(),
        ["ahci", "nvme", "virtio_blk"]
    );
}

#[test]
fn interleaved_kernel_messages_are_tolerated() {
    let noisy = PASS.replace(
        "ok 4 ahci_sda_sleep",
        "[    5.123456] random: crng init done\nok 4 ahci_sda_sleep",
    );
    assert_eq!(
        ktap::parse(&noisy, Path::new(LOG)).unwrap().results.len(),
        9
    );
}

#[test]
fn no_ktap_at_all_names_the_log_and_shows_the_tail() {
    let e = err("Linux version 6.1\nKernel panic - not syncing: No working init found\n");
    assert!(
        e.contains("never started") && e.contains(LOG) && e.contains("Kernel panic"),
        "{e}"
    );
}

#[test]
fn a_guest_that_died_mid_run_is_an_error_not_a_pass() {
    let cut = &PASS[..PASS.find("ok 5 ").unwrap()];
    let e = err(cut);
    assert!(
        e.contains("announces 9 tests but 4 results") && e.contains(LOG),
        "{e}"
    );
}

#[test]
fn missing_plan_malformed_json_bail_out_and_missing_records() {
    let no_plan: String = PASS
        .lines()
        .filter(|l| !l.starts_with("1.."))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(err(&no_plan).contains("no plan line"));
    let bad_json = PASS.replacen("{\"test\":\"nvme_nvme0n1_sleep\"", "{\"test\":nvme", 1);
    assert!(err(&bad_json).contains("malformed machine-readable line"));
    let bail = PASS.replace(
        "ok 8 nvme_nvme0n1_poll",
        "Bail out! expected 3 disks, found 2",
    );
    let e = err(&bail);
    assert!(
        e.contains("bailed out: expected 3 disks, found 2") && e.contains(LOG),
        "{e}"
    );
    // Typed, so the campaign makes it a failed boot that quotes the line.
    let e = ktap::parse(&bail, Path::new(LOG)).unwrap_err();
    let b = e.downcast_ref::<ktap::BailedOut>().unwrap();
    assert_eq!(
        (b.reason.as_str(), b.log.as_str()),
        (
            "expected 3 disks, found 2 # n=100 p50_us=170.8 p90_us=236.9 p99_us=357.6 max_us=361.2 total_ms=217.26",
            "console log /var/log/console-x.log"
        )
    );
    let no_record: String = PASS
        .lines()
        .filter(|l| !l.contains("\"test\":\"ahci_sda_poll\""))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(err(&no_record).contains("ahci_sda_poll has no machine-readable record"));
    let bad_plan = PASS.replace("\n1..9\n", "\n1..x\n");
    assert!(err(&bad_plan).contains("malformed KTAP plan"));
}

#[test]
fn sample_count_must_match_n() {
    let tampered = PASS.replacen("\"n\":100", "\"n\":99", 1);
    assert!(err(&tampered).contains("says n=99 but carries 100 samples"));
}

/// kunit.py from the kernel tree the pipeline uses (the cached Debian
/// linux-source), if one is cached.
fn kunit_py() -> Option<std::path::PathBuf> {
    const KUNIT: &str = "tools/testing/kunit/kunit.py";
    xtask::kernel::cached_tree_with(KUNIT).map(|t| t.join(KUNIT))
}

fn kunit_parse(kunit: &Path, log: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("console.log");
    std::fs::write(&file, log).unwrap();
    let o = std::process::Command::new("python3")
        .arg(kunit)
        .arg("parse")
        .arg(&file)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn the_kernels_own_ktap_parser_reads_our_console() {
    let Some(kunit) = kunit_py() else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "kunit.py test skipped: no linux-source in the cache yet (cargo xtask patch-and-test fetches it)"
        );
        return;
    };
    // A passing run: the plan and every result, with kernel lines around them.
    let (code, out) = kunit_parse(&kunit, PASS);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Ran 9 tests: passed: 9"), "{out}");
    for name in [
        "ahci_sda_sleep",
        "ahci_sda_poll",
        "virtio_blk_vda_integrity",
        "nvme_nvme0n1_poll",
    ] {
        assert!(out.contains(&format!("[PASSED] {name}")), "{name}: {out}");
    }
    // A failing one: kunit.py names the failure and exits non-zero.
    let failing = PASS.replace(
        "\nok 5 virtio_blk_vda_poll",
        "\nnot ok 5 virtio_blk_vda_poll",
    );
    assert_ne!(failing, PASS);
    let (code, out) = kunit_parse(&kunit, &failing);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("[FAILED] virtio_blk_vda_poll") && out.contains("passed: 8, failed: 1"),
        "{out}"
    );
}
