//! End to end, for real: build (or reuse from ~/.cache/uring-idle) Debian's
//! QEMU 10.2.2 with its fix reverted as the baseline and our patch on top,
//! and a guest kernel from Debian's linux-source, then: (1) AHCI, virtio-blk,
//! NVMe, an LSI HBA and USB storage, baseline against patched, with the
//! host trace; signals to the xtask during a fake QEMU's boot; (2) Debian
//! 12's QEMU 7.2; (3) Debian's prebuilt kernel with its modules, beside a CPU hog; (4) our fix,
//! a null and a harmful patch as variants, then a null and a harmful
//! guest-kernel patch; (5) --compare-binaries; (6) the
//! batch reproducer; (7) kselftest-install under run_kselftest.sh; (8) two
//! runs at once (a null patch must not verify under the other's load; user
//! networking); (9) the bare-metal probe guest: the full 499 ms stall under
//! TCG with a forwarded port, the fix and a null patch, the deadline wake
//! without networking, the report's batch reproducer, a CPU exception
//! raised on purpose (a failed boot quoting the probe's `Bail out!`), the
//! ide and virtio-scsi rows, the flush workload and the neighbour
//! workload; (10) a matrix cell against the same patch-and-test by hand;
//! (11) `scan` on the fixed and reverted builds and on 7.2. One #[test], so no
//! guest runs share the two cores except where (8) means them to.
//!
//! Slow (a cold cache means a QEMU and a kernel build): it runs when
//! `URING_IDLE_E2E=1` is set, as `cargo xtask ci` (and so CI) does.

mod common;

use std::path::Path;
use std::process::Command;

use contract::Guest;
use xtask::findings::Finding;
use xtask::report::{QemuState, Report};
use xtask::samples::Row;
use xtask::verdict::Kind;

/// Whether the slow guest tests were asked for; says how to run them if not.
fn wanted() -> bool {
    if std::env::var_os("URING_IDLE_E2E").is_some_and(|v| v == "1") {
        return true;
    }
    // Written to the stream itself: libtest would swallow an eprintln!.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "e2e skipped: the end-to-end guest tests run under `cargo xtask ci`, or with URING_IDLE_E2E=1 cargo test -p xtask --test e2e"
    );
    false
}

/// Runs the xtask with `--json`, expects `verdict` and its exit code;
/// returns the report and the printed text.
fn run(args: &[&str], json: &Path, verdict: Kind) -> (Report, String) {
    // Progress (stderr) goes straight to the log, so a cold CI run shows its
    // builds moving; the report (stdout) is kept for the assertions.
    let o = Command::new(common::XTASK)
        .args(args)
        .arg("--json")
        .arg(json)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let text = common::out(&o);
    assert_eq!(o.status.code(), Some(verdict.exit_code()), "{text}");
    let doc = Report::read(json).unwrap();
    assert_eq!(doc.verdict, verdict, "{text}");
    (doc, text)
}

fn row<'a>(doc: &'a Report, controller: &str, mode: &str) -> &'a Row {
    doc.row(controller, mode)
        .unwrap_or_else(|| panic!("no {controller}/{mode} row in {doc:#?}"))
}

fn p50s(r: &Row) -> (f64, f64) {
    (
        r.baseline.p50_us,
        r.patched.as_ref().expect("a patched side").p50_us,
    )
}

#[test]
fn patch_and_test_verifies_the_fix_and_qemu_7_2_is_unaffected() {
    if !wanted() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // 1. Debian 10.2.2, baseline = fix reverted, patched = baseline + patches/.
    let json = dir.path().join("report.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "linux",
            "--qemu-src",
            "debian=1:10.2.2+ds-1",
            "--baseline",
            "revert-fix",
            // Four rounds: virtio-blk's and NVMe's per-round p50 wander
            // between 0.15 and 0.45 ms under TCG, and the 2x check below is on
            // the pooled p50.
            "--rounds",
            "4",
            // Besides AHCI and the two controls: a SCSI HBA and a USB
            // controller, both measured to stall at the tick and be cured.
            "--controllers",
            "ahci,virtio_blk,nvme,lsi,usb_storage",
        ],
        &json,
        Kind::Verified,
    );
    assert_eq!(doc.qemu.version.as_deref(), Some("10.2.2"));
    assert_eq!(doc.qemu.state, QemuState::Fixed);
    assert_eq!(doc.qemu.baseline.as_deref(), Some("revert-fix"));
    let kernel = doc.kernel.as_ref().unwrap();
    assert!(kernel.release.starts_with("6.1."), "{doc:#?}");
    let ahci = row(&doc, "ahci", "poll");
    let (ab, ap) = p50s(ahci);
    // Same run, same machine: the ratio cancels host speed. Measured 19x-29x
    // here (HZ=100 guest under TCG: the baseline waits tick - think = 8 ms,
    // patched 0.2-0.6 ms); 5x leaves room for a slower or noisier host and is
    // still far above the round-to-round spread of either variant.
    assert!(
        ab >= 5.0 * ap,
        "AHCI poll p50 {ab} us -> {ap} us: less than 5x\n{text}"
    );
    let (vb, vp) = p50s(row(&doc, "virtio_blk", "poll"));
    // The fix must not touch virtio-blk's path (its ioeventfd runs in the
    // AioContext's thread): within 2x either way.
    assert!(
        vp <= 2.0 * vb && vb <= 2.0 * vp,
        "virtio-blk poll p50 {vb} us -> {vp} us\n{text}"
    );
    // Findings as measured (--controllers all, TCG): every vCPU-thread
    // path stalls at 8 ms and is cured (lsi 25-27x, usb-storage 9-10x);
    // the notifying paths are unchanged.
    let finding = |c: &str| {
        doc.finding(c)
            .unwrap_or_else(|| panic!("no finding for {c}"))
            .finding
    };
    for c in ["ahci", "lsi", "usb_storage"] {
        assert_eq!(finding(c), Finding::Affected, "{c}\n{text}");
    }
    for c in ["virtio_blk", "nvme"] {
        assert_eq!(finding(c), Finding::NotAffected, "{c}\n{text}");
    }
    let (lb, lp) = p50s(row(&doc, "lsi", "poll"));
    let (ub, up) = p50s(row(&doc, "usb_storage", "poll"));
    // The same tick-bound stall as AHCI; patched, USB's own emulation cost
    // (~0.8 ms) keeps its ratio lower: 3x leaves room for that and a slower host.
    assert!(
        lb >= 5.0 * lp && ub >= 3.0 * up,
        "lsi {lb}->{lp}, usb {ub}->{up}\n{text}"
    );
    // The cause, from QEMU's own trace: the stalled SQE waits in QEMU.
    // Measured: AHCI 6.9-7.2 ms queued baseline, 0.10 ms patched; the
    // controls 0.02-0.04 ms in both. 10x is far inside the first, and the
    // controls' "alike" allows their 0.02-0.04 ms jitter (3x or 50 us).
    let host = |c: &str, side_patched: bool| {
        let r = row(&doc, c, "poll");
        let s = if side_patched {
            &r.host_patched
        } else {
            &r.host_baseline
        };
        s.as_ref()
            .unwrap_or_else(|| panic!("no host figures for {c}\n{text}"))
            .p50_us
    };
    assert!(
        host("ahci", false) >= 10.0 * host("ahci", true),
        "AHCI queued in QEMU {} us -> {} us\n{text}",
        host("ahci", false),
        host("ahci", true)
    );
    for c in ["virtio_blk", "nvme"] {
        let (b, p) = (host(c, false), host(c, true));
        assert!(
            b <= 3.0 * p + 50.0 && p <= 3.0 * b + 50.0,
            "{c} queued {b} -> {p} us"
        );
    }
    assert!(
        text.contains("queued in QEMU before completion (host trace)"),
        "{text}"
    );
    for r in &doc.guest_runs {
        let h = r.host.as_ref().expect("every run traced");
        assert!(h.disks.iter().all(|d| d.matched), "{h:?}");
        assert!(r.trace_log.as_ref().unwrap().is_file());
        // The integrity check (32 writes, a flush, 32 reads back) runs in
        // the first round only.
        let writes = if r.round == 1 { 65 } else { 0 };
        assert!(
            h.disks.iter().all(|d| d.write_phase == writes),
            "{} {h:?}",
            r.label
        );
        let b = r.boot.as_ref().expect("our /init reports its boot");
        assert!(
            b.kernel_s > 0.0 && b.qemu_firmware_decompress_s > 0.0,
            "{b:?}"
        );
    }
    // Every sample of every round made it into the report.
    let params = doc.params.as_ref().unwrap();
    let rounds = u64::from(params.rounds);
    assert_eq!(ahci.baseline.n, u64::from(params.iterations) * rounds);
    assert_eq!(doc.guest_runs.len() as u64, 2 * rounds);
    assert!(text.contains("FIX VERIFIED ("), "{text}");
    // The guest's /init is a static executable built against the guest
    // kernel's exported uapi headers.
    let file = Command::new("file").arg(&kernel.selftest).output().unwrap();
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(file.contains("statically linked"), "{file}");
    let uapi = kernel.uapi.as_ref().unwrap();
    assert!(
        uapi.join("linux/io_uring.h").is_file() && uapi.ends_with("include"),
        "{doc:#?}"
    );

    // The binaries of this run, measured again below as prebuilt binaries.
    let built = (
        doc.baseline_binary.clone().unwrap(),
        doc.variant("patched").unwrap().binary.clone(),
    );

    // Signals: the xtask's children die with it, however it dies.
    signals_leave_no_child_behind(dir.path());

    // The positive control of the suite-tree path (--qemu-deb runs there
    // what the host cannot): this run's fix-reverted build, started in
    // sid's tree, loses its wakeups there as on the host.
    let json = dir.path().join("control-in-tree.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "probe",
            "--iterations",
            "3",
            "--controllers",
            "ahci,nvme",
            "--qemu-binary",
            built.0.to_str().unwrap(),
            "--suite-tree",
            "unstable",
        ],
        &json,
        Kind::StallPresent,
    );
    let ahci = probe_row(&doc.devices, "ahci");
    assert!(
        ahci.baseline.p50_us > 100_000.0 && ahci.host_baseline.is_some(),
        "{text}"
    );

    // 2. The same guest under Debian 12's QEMU 7.2: no aio_add_sqe(), no stall.
    // (Also the run after the killed ones above: it must succeed.)
    let json = dir.path().join("qemu72.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--qemu-binary",
            "/usr/bin/qemu-system-x86_64",
            "--rounds",
            "1",
        ],
        &json,
        Kind::Unaffected,
    );
    let ahci72 = row(&doc, "ahci", "poll").baseline.p50_us;
    // QEMU 7.2 has no fdmon_io_uring events: measured without host evidence, and says why.
    assert!(
        doc.no_host_evidence
            .as_deref()
            .is_some_and(|w| w.contains("fdmon_io_uring_add_sqe")),
        "{doc:#?}"
    );
    // Healthy AHCI on 7.2 is well below the unfixed 10.2.2 baseline.
    assert!(
        ahci72 * 2.0 < ab,
        "QEMU 7.2 AHCI p50 {ahci72} us vs unfixed 10.2.2 {ab} us\n{text}"
    );

    // 3. A distro kernel: Debian's prebuilt linux-image with its modules.
    // /init must load ahci, sd_mod, nvme and virtio from the initramfs to
    // find the disks at all. HZ=250 there: the baseline waits tick - think =
    // 4 - 2 = 2 ms (measured 1.99 ms) against ~0.3-0.45 ms patched.
    // Measured beside a CPU hog: this case once said NOT VERIFIED with
    // ordinary work on the machine (AHCI 1.99 -> 0.85 ms against controls
    // inflated to 0.54-0.70 ms). QEMU's queue time decides it now, and
    // QEMU runs at a priority the hog cannot delay.
    let json = dir.path().join("distro.json");
    let hog = xtask::bench::Hogs::start(1);
    let (doc, _) = run(
        &[
            "patch-and-test",
            "--guest",
            "linux",
            "--kernel",
            "debian",
            "--rounds",
            "2",
            "--iterations",
            "50",
            "--mode",
            "poll",
        ],
        &json,
        Kind::Verified,
    );
    drop(hog);
    // The hog is one core of two: every boot saw it (one hog measured
    // 48-50%, quiet boots under 1.5%, the threshold 10%).
    for r in &doc.guest_runs {
        assert!(
            r.host_busy.is_some_and(|b| b >= xtask::rules::BUSY_HOST),
            "{}: {:?}",
            r.label,
            r.host_busy
        );
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(r.qemu_nice, Some(xtask::guest::QEMU_NICE), "{}", r.label);
        }
    }
    assert!(
        doc.notes
            .iter()
            .any(|n| n.starts_with("measured on a busy host")),
        "{:?}",
        doc.notes
    );
    let kernel = doc.kernel.as_ref().unwrap();
    let modules: Vec<String> = kernel
        .modules
        .iter()
        .map(|m| m.display().to_string())
        .collect();
    for m in [
        "/ahci.ko",
        "/sd_mod.ko",
        "/nvme.ko",
        "/virtio_blk.ko",
        "/virtio_pci.ko",
        "/libata.ko",
    ] {
        assert!(
            modules.iter().any(|p| p.contains(m)),
            "{m} not packed: {modules:?}"
        );
    }
    assert!(kernel.release.ends_with("-amd64"), "{doc:#?}");

    // 4. Review any patch: our fix, a null patch (a comment in
    // util/aio-posix.c) and a harmful one (our fix plus 1 ms held on every
    // virtio-blk completion), built from one baseline and measured in one run.
    let fix =
        patch_path("patches/qemu/0001-aio-posix-wake-the-AioContext-after-queuing-an-io_ur.patch");
    let null = patch_path(
        "xtask/tests/fixtures/patches/0001-aio-posix-reword-a-comment-changes-no-code.patch",
    );
    let harm = patch_path("xtask/tests/fixtures/patches/0002-virtio-blk-hold-every-read-write-completion-for-1-ms.patch");
    let json = dir.path().join("variants.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "linux",
            "--rounds",
            "3",
            "--variant",
            &format!("fix={fix}"),
            "--variant",
            &format!("null={null}"),
            "--variant",
            &format!("harmful={fix}+{harm}"),
            "--junit",
            dir.path().join("variants.xml").to_str().unwrap(),
            "--kcidb",
            dir.path().join("variants.kcidb.json").to_str().unwrap(),
        ],
        &json,
        Kind::Regression,
    );
    // The same run as CI systems read it: JUnit by junitparser, KCIDB by
    // KernelCI's schema package; one suite per variant, a failure where
    // the harm is, none for the fix.
    let suites: Vec<common::Suite> =
        serde_json::from_str(&common::py(common::JUNIT, &dir.path().join("variants.xml"))).unwrap();
    let by = |n: &str| {
        suites
            .iter()
            .find(|s| s.name.ends_with(&format!(": {n}")))
            .unwrap()
    };
    assert_eq!(suites.len(), 3, "{suites:?}");
    assert_eq!(by("fix").failures + by("fix").errors, 0, "{suites:?}");
    assert!(by("harmful").failures >= 2, "{suites:?}");
    let k: serde_json::Value = serde_json::from_str(&common::py(
        common::KCIDB,
        &dir.path().join("variants.kcidb.json"),
    ))
    .unwrap();
    assert_eq!(k["builds"], 4, "{k}");
    let verdict = |n: &str| {
        doc.variant(n)
            .unwrap_or_else(|| panic!("no variant {n}"))
            .verdict
            .kind
    };
    assert_eq!(verdict("fix"), Kind::Verified, "{text}");
    assert_eq!(verdict("null"), Kind::NotVerified, "{text}");
    assert_eq!(verdict("harmful"), Kind::Regression, "{text}");
    // The null patch's AHCI ratio, against the 2x a cure needs: measured
    // 1.0x (7.99 -> 8.00 ms), so a false positive needs the noise to double.
    let null_rows = &doc.variant("null").unwrap().devices;
    let null_ratio = null_rows
        .iter()
        .find(|r| r.controller == "ahci" && r.mode == "poll")
        .and_then(|r| r.p50_ratio)
        .unwrap();
    assert!(
        null_ratio < 1.5,
        "null patch AHCI ratio {null_ratio}\n{text}"
    );
    // The harm is named: virtio-blk, the control it slowed (measured 0.15
    // -> 1.21 ms); AHCI is still cured by the fix underneath it.
    let harmful = doc.variant("harmful").unwrap();
    assert!(
        harmful.verdict.line.contains("virtio_blk"),
        "{}",
        harmful.verdict.line
    );
    assert!(harmful
        .controllers
        .iter()
        .any(|c| c.controller == "ahci" && c.finding == Finding::Affected));
    assert_eq!(harmful.patches.len(), 2);
    assert!(harmful.patches.iter().all(|p| p.sha256.len() == 64));

    // 4b. Kernel patches: a null one (a comment in io_uring/io_uring.c) and
    // a harmful one (udelay(1000) in virtio-blk's completion), each built
    // incrementally from the unpatched guest kernel and measured on the
    // baseline QEMU and on the fixed one.
    let kpatch = |f: &str| patch_path(&format!("xtask/tests/fixtures/patches/kernel/{f}"));
    let knull = kpatch("0001-io_uring-reword-a-comment-changes-no-code.patch");
    let kharm = kpatch("0002-virtio_blk-hold-every-completion-for-1-ms.patch");
    let json = dir.path().join("kernel-variants.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "linux",
            "--kernel-variant",
            &format!("knull={knull}"),
            "--kernel-variant",
            &format!("kharm={kharm}"),
        ],
        &json,
        Kind::Regression,
    );
    let v = |n: &str| {
        doc.variant(n)
            .unwrap_or_else(|| panic!("no variant {n}\n{text}"))
    };
    use xtask::report::Changes;
    for (name, changes, against, kind) in [
        ("patched", Changes::Qemu, "baseline", Kind::Verified),
        ("knull", Changes::Kernel, "baseline", Kind::NotVerified),
        ("kharm", Changes::Kernel, "baseline", Kind::Regression),
        ("patched+knull", Changes::Both, "patched", Kind::NotVerified),
        ("patched+kharm", Changes::Both, "patched", Kind::Regression),
    ] {
        let x = v(name);
        assert_eq!(
            (x.changes, x.against.as_str(), x.verdict.kind),
            (changes, against, kind),
            "{name}: {}",
            x.verdict.line
        );
    }
    // The null kernel patch leaves the stall and the cure where they were
    // (AHCI measured 7.99 -> 8.00 ms on the unfixed QEMU).
    let ahci = |n: &str| {
        v(n).devices
            .iter()
            .find(|r| r.controller == "ahci" && r.mode == "poll")
            .and_then(|r| r.p50_ratio)
            .unwrap()
    };
    assert!(ahci("knull") < 1.5 && ahci("knull") > 0.67, "{text}");
    // The harm is virtio-blk's alone: a regression there and nowhere else,
    // on either QEMU.
    for n in ["kharm", "patched+kharm"] {
        for c in &v(n).controllers {
            let want = c.controller == "virtio_blk";
            assert_eq!(
                c.finding == Finding::Regression,
                want,
                "{n} {}: {}",
                c.controller,
                c.reason
            );
        }
        assert!(v(n).kernel_patches.iter().all(|p| p.sha256.len() == 64));
        // Built incrementally: its own file, the one the null variant
        // restored, and the three kbuild compiles at every link
        // (init/version-timestamp, the boot and decompressor's version):
        // measured 5 (4 for the null patch), against ~500 for the kernel.
        if let Some(k) = v(n).kernel.as_ref().and_then(|k| k.objects_compiled) {
            assert!(k <= 5, "{n}: {k} objects compiled");
        }
    }
    // The probe has no kernel: no boot of it here, none per kernel variant.
    assert!(doc.guest_runs.iter().all(|r| r.guest == Guest::Linux));

    // 6. The report's own reproducer, reduced to 16 MiB (8 batches of 16 x
    // 128 KiB per mode and round) on AHCI and a control. Under TCG an
    // unfixed batch waits at most one guest tick, and a batch with spun
    // 1 ms sleeps lasts about two ticks: measured totals 1.01-1.05x, so the
    // verdict on totals is not asserted here (NOT VERIFIED on this machine,
    // and the phase could differ elsewhere). What the measurements do
    // support: every read of the unfixed batches waited in QEMU (measured
    // 1.5-1.7 ms against 0.06 ms patched, hence 10x), and the fix never
    // makes the total longer (0.9x leaves room for the 1-5% round spread).
    let json = dir.path().join("batch.json");
    let o = Command::new(common::XTASK)
        .args([
            "patch-and-test",
            "--guest",
            "linux",
            "--workload",
            "batch",
            "--total-mb",
            "16",
            "--controllers",
            "ahci,virtio_blk",
            "--json",
        ])
        .arg(&json)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let text = common::out(&o);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{text}");
    assert!(
        text.contains("report (KVM, idle): 25.76 s before the fix"),
        "{text}"
    );
    let doc = Report::read(&json).unwrap();
    for mode in ["sleep", "poll"] {
        let r = row(&doc, "ahci", mode);
        assert_eq!(r.baseline.n, 2 * 8, "two rounds of 8 batches");
        let (b, p) = (&r.baseline_round_total_ms, &r.patched_round_total_ms);
        let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            mean(b) >= 0.9 * mean(p),
            "AHCI {mode} totals {b:?} vs {p:?}"
        );
        let (hb, hp) = (
            r.host_baseline.as_ref().unwrap().p50_us,
            r.host_patched.as_ref().unwrap().p50_us,
        );
        assert!(
            hb >= 10.0 * hp,
            "AHCI {mode} queued in QEMU {hb} -> {hp} us\n{text}"
        );
    }

    // 5. The same two binaries as part 1, prebuilt, against each other.
    let json = dir.path().join("binaries.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--compare-binaries",
            built.0.to_str().unwrap(),
            built.1.to_str().unwrap(),
        ],
        &json,
        Kind::Verified,
    );
    assert_eq!(doc.qemu.state, QemuState::Binaries, "{text}");
    assert_eq!(doc.finding("ahci").unwrap().finding, Finding::Affected);

    // 7. As a kselftest collection, run by the kernel's own runner (copied
    // from the cached linux-source that part 1 fetched).
    let install = dir.path().join("kselftest");
    let o = Command::new(common::XTASK)
        .args(["kselftest-install"])
        .arg(&install)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::out(&o));
    let list = std::fs::read_to_string(install.join("kselftest-list.txt")).unwrap();
    assert!(
        list.lines()
            .any(|l| l == "uring_idle:io_uring_idle_latency"),
        "{list}"
    );
    for f in ["io_uring_idle_latency", "settings", "config"] {
        assert!(install.join("uring_idle").join(f).is_file(), "{f}");
    }
    let scratch = dir.path().join("kselftest-scratch.img");
    std::fs::File::create(&scratch)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let o = Command::new(install.join("run_kselftest.sh"))
        .args(["-c", "uring_idle"])
        .env("URING_IDLE_TARGETS", &scratch)
        .output()
        .unwrap();
    let text = common::out(&o);
    assert!(o.status.success(), "{text}");
    // The runner's own KTAP: one test, ours, passed, with our KTAP nested.
    assert!(
        text.contains("ok 1 selftests: uring_idle: io_uring_idle_latency"),
        "{text}"
    );
    assert!(
        text.contains("# ok 1 file_kselftest_scratch_img_sleep"),
        "{text}"
    );

    // 8. Two runs at once, sharing the cache: the null patch as a variant in
    // one, the default run with user networking in the other. Builds may
    // overlap; guest runs take turns with everything else of ours
    // (cache::MeasureLock), so neither measures under the other's load.
    // Both finish, the null patch never verifies, the fix still does, and
    // no boot of one overlaps a boot of the other.
    let (ja, jb) = (
        dir.path().join("par-null.json"),
        dir.path().join("par-user.json"),
    );
    let spawn = |args: &[&str], json: &Path| {
        Command::new(common::XTASK)
            .args(args)
            .arg("--json")
            .arg(json)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let a = spawn(
        &[
            "patch-and-test",
            "--guest",
            "linux",
            "--rounds",
            "1",
            "--variant",
            &format!("null={null}"),
        ],
        &ja,
    );
    let b = spawn(
        &[
            "patch-and-test",
            "--guest",
            "linux",
            "--rounds",
            "1",
            "--netdev",
            "user",
        ],
        &jb,
    );
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ta, tb) = (common::out(&a), common::out(&b));
    assert_eq!(a.status.code(), Some(Kind::NotVerified.exit_code()), "{ta}");
    assert_eq!(b.status.code(), Some(0), "{tb}");
    let (da, db) = (Report::read(&ja).unwrap(), Report::read(&jb).unwrap());
    assert_eq!(
        da.variant("null").unwrap().verdict.kind,
        Kind::NotVerified,
        "{ta}"
    );
    assert_eq!(db.verdict, Kind::Verified, "{tb}");
    let span = |d: &Report| {
        let first = d
            .guest_runs
            .iter()
            .map(|r| r.started_unix_s)
            .fold(f64::MAX, f64::min);
        let last = d
            .guest_runs
            .iter()
            .map(|r| r.started_unix_s + r.wall_s)
            .fold(0.0, f64::max);
        (first, last)
    };
    let ((a0, a1), (b0, b1)) = (span(&da), span(&db));
    assert!(
        a1 <= b0 || b1 <= a0,
        "guest runs overlapped: {a0}-{a1} and {b0}-{b1}"
    );
    // User networking was really attached, and the stall is still there.
    assert_eq!(db.params.as_ref().unwrap().netdev, "user");
    let console = std::fs::read_to_string(&db.guest_runs[0].console_log).unwrap();
    // The console log's first line is the QEMU command, shell-quoted.
    let qemu_args =
        shell_words::split(console.lines().next().unwrap().trim_start_matches("# ")).unwrap();
    assert!(
        qemu_args
            .windows(2)
            .any(|w| w[0] == "-netdev" && w[1] == "user,id=net0"),
        "{console}"
    );
    assert!(row(&db, "ahci", "poll").baseline.p50_us >= 5000.0, "{tb}");

    probe_guest_shows_the_full_stall(dir.path(), &fix, &null, &built.0);
    a_probe_exception_is_a_failed_boot(&built.0);
    probe_rows_and_workloads(dir.path(), &built.0);
    a_qemu_that_never_starts_the_guest_is_a_regression_in_seconds(dir.path(), &built.0);
    a_matrix_cell_is_exactly_its_patch_and_test(dir.path());
    scan_finds_the_ground_truth(dir.path(), &built.0, &built.1);
    shipped_debian_binaries_run_on_the_host_or_in_their_suite_tree();
}

/// `scan` on the run's own builds and the host's QEMU 7.2: the fixed 10.2.2
/// clean in every cell; the reverted one losing wakeups with aio=io_uring
/// on the candidate rows the probe drives, in both cache modes, and clean
/// with native and threads and on the controls; 7.2 clean (measured by
/// hand: 5.0 s for the fixed build's 45 cells warm).
fn scan_finds_the_ground_truth(dir: &Path, reverted: &Path, fixed: &Path) {
    let scan = |bin: &Path, name: &str, code: i32| -> serde_json::Value {
        let json = dir.join(format!("scan-{name}.json"));
        let o = Command::new(common::XTASK)
            .args(["scan", "--qemu-binary"])
            .arg(bin)
            .arg("--json")
            .arg(&json)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        let text = common::out(&o);
        assert_eq!(o.status.code(), Some(code), "{name}: {text}");
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
    };
    let findings = |doc: &serde_json::Value| -> Vec<(String, String, String, String)> {
        doc["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["controller"].as_str().unwrap().to_string(),
                    c["config"]["aio"].as_str().unwrap().to_string(),
                    c["config"]["cache"].as_str().unwrap().to_string(),
                    c["finding"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    for (bin, name) in [
        (fixed, "fixed"),
        (Path::new("/usr/bin/qemu-system-x86_64"), "qemu72"),
    ] {
        let doc = scan(bin, name, 0);
        for (row, aio, cache, f) in findings(&doc) {
            assert!(
                f == "clean" || f == "not_applicable",
                "{name}: {row} aio={aio} cache={cache}: {f}"
            );
        }
    }
    let doc = scan(reverted, "reverted", 1);
    for (row, aio, cache, f) in findings(&doc) {
        if f == "not_applicable" {
            continue;
        }
        let candidate =
            contract::controllers::by_name(&row).unwrap().role == contract::Role::Candidate;
        let want = if candidate && aio == "io_uring" {
            "lost_wakeup"
        } else {
            "clean"
        };
        assert_eq!(f, want, "reverted: {row} aio={aio} cache={cache}");
    }
    assert!(doc["what_to_change"][0]
        .as_str()
        .unwrap()
        .contains("<driver io='threads' cache='none'/>"));
}

/// (10) A matrix cell against the same patch-and-test by hand: the same
/// flags, the same verdict, the same figures. The probe's unfixed AHCI read
/// is slirp's 499 ms cap less the think time in every run (measured
/// 497.4-497.7 ms over 5 runs), so one figure can be compared to 1%.
fn a_matrix_cell_is_exactly_its_patch_and_test(dir: &Path) {
    let cfg = dir.join("matrix.toml");
    std::fs::write(
        &cfg,
        "qemu = [\"debian=1:10.2.2+ds-1\"]\nbaseline = [\"revert-fix\"]\nguest = [\"probe\"]\ncontrollers = [\"ahci,nvme\"]\nextra = [\"--iterations\", \"5\"]\n",
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let o = Command::new(common::XTASK)
        .args(["matrix", "plan", "--config", cfg_s])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = plan["include"][0]["id"].as_str().unwrap().to_string();
    let out = dir.join("cells");
    let o = Command::new(common::XTASK)
        .args(["matrix", "run", "--config", cfg_s, "--cell", &id, "--out"])
        .arg(&out)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let cell = Report::read(&out.join(&id).join("report.json")).unwrap();
    let json = dir.join("by-hand.json");
    let (by_hand, text) = run(
        &[
            "patch-and-test",
            "--qemu-src",
            "debian=1:10.2.2+ds-1",
            "--baseline",
            "revert-fix",
            "--guest",
            "probe",
            "--controllers",
            "ahci,nvme",
            "--workload",
            "latency",
            "--iterations",
            "5",
        ],
        &json,
        Kind::Verified,
    );
    assert_eq!(cell.verdict, by_hand.verdict, "{text}");
    assert_eq!(
        serde_json::to_value(&cell.params).unwrap(),
        serde_json::to_value(&by_hand.params).unwrap()
    );
    assert_eq!(cell.baseline_binary, by_hand.baseline_binary);
    let a = probe_row(&cell.devices, "ahci").baseline.p50_us;
    let b = probe_row(&by_hand.devices, "ahci").baseline.p50_us;
    assert!((a - b).abs() < 0.01 * b, "cell {a} us, by hand {b} us");
    // Its folder has what the CI artifact needs.
    for f in ["cell.json", "junit.xml", "kcidb.json", "run.log"] {
        assert!(out.join(&id).join(f).is_file(), "{f}");
    }
    assert!(
        std::fs::read_dir(out.join(&id).join("run"))
            .unwrap()
            .count()
            >= 2
    );
}

fn probe_row<'a>(rows: &'a [Row], controller: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.guest == Guest::Probe && r.controller == controller && r.mode == "poll")
        .unwrap_or_else(|| panic!("no probe {controller} row in {rows:#?}"))
}

/// Part 9: the bare-metal probe guest arms no timer, so QEMU's main loop
/// sleeps as long as its own timers let it, as under KVM: with the default
/// forwarded port libslirp caps that sleep at 499 ms, the report's figure.
fn probe_guest_shows_the_full_stall(dir: &Path, fix: &str, null: &str, baseline: &Path) {
    let json = dir.join("probe.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "probe",
            "--variant",
            &format!("fix={fix}"),
            "--variant",
            &format!("null={null}"),
        ],
        &json,
        Kind::NotVerified,
    );
    let fixed = doc.variant("fix").unwrap();
    assert_eq!(fixed.verdict.kind, Kind::Verified, "{text}");
    // The null patch changes no code: 499 ms in both, never a cure.
    let nulled = doc.variant("null").unwrap();
    assert_eq!(nulled.verdict.kind, Kind::NotVerified, "{text}");
    assert!(
        probe_row(&nulled.devices, "ahci").p50_ratio.unwrap() < 1.5,
        "{text}"
    );
    let ahci = probe_row(&fixed.devices, "ahci");
    let (b, p) = p50s(ahci);
    // Slirp's cap is 499 ms; the prototype measured 499.56 ms p50. The
    // window allows for a late main-loop wake on a loaded host, not for a
    // guest timer (a tick would end the wait within 10 ms).
    assert!(
        (400_000.0..=520_000.0).contains(&b),
        "AHCI baseline p50 {b} us\n{text}"
    );
    // Nothing but QEMU's own timers woke the main loop: the wait is slirp's
    // 499 ms cap less the 2 ms think time (the sleep began at the previous
    // completion), to within 1% (measured 497.5 ms). A guest timer would
    // have ended it early, at a time of its own.
    assert!(
        (b - 497_000.0).abs() < 4_990.0,
        "AHCI baseline p50 {b} us is not slirp's cap less the think time\n{text}"
    );
    assert!(p < 5_000.0, "AHCI patched p50 {p} us\n{text}");
    for c in ["virtio_blk", "nvme"] {
        let (cb, cp) = p50s(probe_row(&fixed.devices, c));
        assert!(cb < 5_000.0 && cp < 5_000.0, "{c}: {cb} -> {cp} us\n{text}");
    }
    // QEMU's own trace agrees with the guest: the request sat queued in
    // QEMU for all but the guest's own overheads (0.2 ms in the prototype).
    let host = ahci.host_baseline.as_ref().expect("traced").p50_us;
    assert!(
        (b - host).abs() < 2_000.0,
        "guest {b} us, queued in QEMU {host} us\n{text}"
    );
    assert!(doc
        .guest_runs
        .iter()
        .all(|r| r.guest == Guest::Probe && r.netdev == "hostfwd"));

    // Without networking nothing bounds QEMU's sleep: an unfixed request
    // completes only after the probe's own wake at its deadline (1 s here).
    let json = dir.join("probe-none.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "probe",
            "--netdev",
            "none",
            "--deadline-ms",
            "1000",
            "--iterations",
            "3",
            "--controllers",
            "ahci,virtio_blk",
            "--qemu-binary",
            baseline.to_str().unwrap(),
        ],
        &json,
        Kind::StallPresent,
    );
    let b = probe_row(&doc.devices, "ahci").baseline.p50_us;
    assert!(
        (1_000_000.0..1_100_000.0).contains(&b),
        "AHCI {b} us\n{text}"
    );
    assert!(
        text.contains("without networking an unfixed request never completes until something else wakes QEMU: 3 of 3 waited the full 1 s"),
        "{text}"
    );
    assert!(
        probe_row(&doc.devices, "virtio_blk").baseline.p50_us < 5_000.0,
        "{text}"
    );

    // The report's reproducer on the probe: 8 MiB = 4 batches of 16 x 128 KiB
    // NCQ reads. Unfixed, each batch waits for the main loop (~0.5 s); the
    // verdict on totals applies here, unlike under the Linux guest's tick.
    let json = dir.join("probe-batch.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "probe",
            "--workload",
            "batch",
            "--total-mb",
            "8",
            "--controllers",
            "ahci,virtio_blk",
        ],
        &json,
        Kind::Verified,
    );
    let r = probe_row(&doc.devices, "ahci");
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let (tb, tp) = (
        mean(&r.baseline_round_total_ms),
        mean(&r.patched_round_total_ms),
    );
    assert!(
        tb >= 10.0 * tp && tb >= 1_600.0,
        "AHCI totals {tb} -> {tp} ms\n{text}"
    );
}

/// The probe's newer rows and workloads, a few seconds a boot: the ide and
/// virtio-scsi rows on the reverted and the fixed builds; the flush
/// workload on AHCI; the neighbour workload's stall hidden by a busy
/// control disk.
fn probe_rows_and_workloads(dir: &Path, baseline: &Path) {
    // Slirp's 499 ms cap less the think time (measured 497.5-499.2 ms on
    // every candidate row); the window allows a late wake on a loaded host.
    let full = 400_000.0..=520_000.0;
    let json = dir.join("probe-rows.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "probe",
            // virtio_blk too: a control is judged against another
            // control's queue time, so a lone control's noise (0.27 ms
            // -> 0.03 ms, measured on a busy host) would read as a cure.
            "--controllers",
            "ide,virtio_blk,virtio_scsi,virtio_scsi_noioeventfd,megasas",
        ],
        &json,
        Kind::Verified,
    );
    let finding = |c: &str| {
        doc.finding_of(Guest::Probe, c)
            .unwrap_or_else(|| panic!("no probe finding for {c}\n{text}"))
            .finding
    };
    // megasas: an emulated SCSI HBA (MFI frames posted to its inbound
    // queue port, handled in the vCPU thread), measured 497.7 -> 0.16 ms.
    for c in ["ide", "virtio_scsi_noioeventfd", "megasas"] {
        assert_eq!(finding(c), Finding::Affected, "{c}\n{text}");
        let (b, p) = p50s(probe_row(&doc.devices, c));
        assert!(
            full.contains(&b) && p < 5_000.0,
            "{c}: {b} -> {p} us\n{text}"
        );
    }
    assert_eq!(finding("virtio_scsi"), Finding::NotAffected, "{text}");

    // The flush workload: each flush after a write of its own (QEMU skips
    // a flush with nothing to flush). Reverted, the flush's fsync SQE waits
    // for the main loop like a read (measured 498.0 ms, 497.8 ms of it
    // queued in QEMU); fixed, 0.31 ms.
    let json = dir.join("probe-flush.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "probe",
            "--workload",
            "flush",
            "--controllers",
            "ahci,virtio_scsi",
        ],
        &json,
        Kind::Verified,
    );
    let ahci = probe_row(&doc.devices, "ahci");
    assert_eq!(ahci.workload, contract::Workload::Flush, "{text}");
    let (b, p) = p50s(ahci);
    assert!(
        full.contains(&b) && p < 5_000.0,
        "AHCI flush {b} -> {p} us\n{text}"
    );
    // The trace paired the flushes, not the reads: the fsync sat queued.
    let host = ahci.host_baseline.as_ref().expect("traced").p50_us;
    assert!(
        (b - host).abs() < 2_000.0,
        "flush {b} us, queued {host} us\n{text}"
    );
    assert!(text.contains("ahci (flush)"), "{text}");

    // The neighbour workload, on the reverted build: AHCI alone waits for
    // the main loop; beside virtio-blk kept at one read in flight, each of
    // whose kicks wakes the main loop, it does not (measured 498.5 ms
    // alone, 0.15 ms beside it at 17154 reads/s). One run holds both
    // figures, so their ratio is free of boot-to-boot drift; 100x is far
    // below the measured 3300x and far above anything noise makes of a
    // ~0.5 s stall against a sub-ms read.
    let json = dir.join("probe-neighbour.json");
    let (doc, text) = run(
        &[
            "patch-and-test",
            "--guest",
            "probe",
            "--workload",
            "neighbour",
            "--controllers",
            "ahci,virtio_blk",
            "--qemu-binary",
            baseline.to_str().unwrap(),
        ],
        &json,
        Kind::StallPresent,
    );
    let of = |w: contract::Workload| {
        doc.devices
            .iter()
            .find(|r| r.controller == "ahci" && r.workload == w)
            .unwrap_or_else(|| panic!("no ahci {w} row\n{text}"))
    };
    let alone = of(contract::Workload::Latency).baseline.p50_us;
    let beside = of(contract::Workload::Neighbour);
    assert!(full.contains(&alone), "AHCI alone {alone} us\n{text}");
    assert!(
        alone >= 100.0 * beside.baseline.p50_us,
        "AHCI alone {alone} us, beside the neighbour {} us\n{text}",
        beside.baseline.p50_us
    );
    assert_eq!(beside.neighbour.as_deref(), Some("virtio_blk"), "{text}");
    assert!(
        beside.neighbour_baseline_reads_per_s.unwrap() > 100.0,
        "{text}"
    );
    assert!(
        text.contains("beside it the neighbour virtio_blk kept one read in flight"),
        "{text}"
    );
}

/// A CPU exception in the probe, raised on purpose (`--probe-fault pf`:
/// a write to an unmapped address): the boot fails with the probe's
/// `Bail out!` line quoted and its console log named, and the run ends as
/// a failed baseline does (exit 2). One probe boot: seconds.
fn a_probe_exception_is_a_failed_boot(baseline: &Path) {
    let o = Command::new(common::XTASK)
        .args([
            "patch-and-test",
            "--guest",
            "probe",
            "--controllers",
            "ahci",
            "--qemu-binary",
            baseline.to_str().unwrap(),
            "--probe-fault",
            "pf",
        ])
        .output()
        .unwrap();
    let text = common::out(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("the guest bailed out: cpu exception 14 (#PF)"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("cpu exception 14 (#PF)") && l.contains("console log /")),
        "{text}"
    );
}

/// A path in this workspace, as the user would type it.
fn patch_path(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
        .display()
        .to_string()
}

/// A QEMU that hangs before the guest runs (as one stuck opening its
/// drives): the real binary answers every question asked of it, then a
/// boot sleeps without a console byte.
const HANGS_AT_START: &str = r#"#!/bin/sh
case "$*" in
  *--version*|*help*|*" -S "*) exec "$REAL_QEMU" "$@" ;;
esac
exec sleep 1000
"#;

/// Issue 30's reviewer case: a variant whose QEMU never starts the guest
/// once cost the probe's whole hang guard (1,249 s) and ended the run with
/// no verdict. Now the first console byte is bounded (10 s under TCG) and
/// the variant is a REGRESSION that says why, in seconds.
fn a_qemu_that_never_starts_the_guest_is_a_regression_in_seconds(dir: &Path, baseline: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("hangs-at-start");
    std::fs::write(&fake, HANGS_AT_START).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let json = dir.join("hangs.json");
    let started = std::time::Instant::now();
    let o = Command::new(common::XTASK)
        .args([
            "patch-and-test",
            "--guest",
            "probe",
            "--no-trace",
            "--compare-binaries",
        ])
        .arg(baseline)
        .arg(&fake)
        .arg("--json")
        .arg(&json)
        .env("REAL_QEMU", baseline)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    let text = common::out(&o);
    assert_eq!(
        o.status.code(),
        Some(Kind::Regression.exit_code()),
        "{text}"
    );
    let doc = Report::read(&json).unwrap();
    let v = &doc.variants[0].verdict;
    assert_eq!(v.kind, Kind::Regression, "{}", v.line);
    assert!(
        v.line
            .contains("QEMU never started the guest: it printed nothing in 10 s"),
        "{}",
        v.line
    );
    // The baseline's boot (~8 s unfixed) and the bound (10 s), with room
    // for a loaded host; the hang guard it replaces was 1,249 s.
    assert!(took < 90.0, "took {took:.0} s\n{text}");
}

/// A fake QEMU: passes the binary checks, then boots nothing and never
/// exits, after writing its pid where the test can find it.
const FAKE_QEMU: &str = r#"#!/bin/sh
case "$*" in
  *--version*) echo "QEMU emulator version 10.2.2 (fake)"; exit 0 ;;
  *"-machine help"*) echo "q35   Standard PC (Q35 + ICH9, 2009)"; exit 0 ;;
  *"-device help"*) for d in isa-debug-exit ide-hd virtio-blk-pci nvme; do echo "name \"$d\", bus x"; done; exit 0 ;;
  *"-trace help"*) exit 0 ;;
  *" -S "*) exit 0 ;;
esac
echo "fake guest console"
echo $$ > "$FAKE_QEMU_PIDFILE"
exec sleep 1000
"#;

/// Whether `pid` is gone (or a zombie nobody reaped yet: not running).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn signals_leave_no_child_behind(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    let fake = dir.join("fake-qemu");
    std::fs::write(&fake, FAKE_QEMU).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (sig, want) in [
        (libc::SIGINT, Some(130)),
        (libc::SIGTERM, Some(143)),
        (libc::SIGKILL, None),
    ] {
        let pidfile = dir.join(format!("fake-{sig}.pid"));
        let mut xt = Command::new(common::XTASK)
            .args([
                "patch-and-test",
                "--guest",
                "linux",
                "--accel",
                "tcg",
                "--rounds",
                "1",
                "--iterations",
                "1",
            ])
            .args(["--controllers", "ahci,nvme", "--qemu-binary"])
            .arg(&fake)
            .env("FAKE_QEMU_PIDFILE", &pidfile)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let qemu: i32 = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the fake QEMU never started"
            );
            assert!(
                xt.try_wait().unwrap().is_none(),
                "the xtask ended before starting QEMU"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        // To the xtask alone, as timeout(1), CI runners and supervisors do.
        unsafe { libc::kill(xt.id() as i32, sig) };
        let status = xt.wait().unwrap();
        match want {
            Some(code) => assert_eq!(status.code(), Some(code), "signal {sig}: {status:?}"),
            None => assert_eq!(status.signal(), Some(libc::SIGKILL)),
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !gone(qemu) {
            assert!(
                std::time::Instant::now() < deadline,
                "signal {sig}: QEMU {qemu} outlived the xtask"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Debian's shipped binaries, no compile (`--qemu-deb`): oldstable's QEMU
/// 7.2 runs on this Debian 12 host (its Depends are met), unstable's 11.1.3
/// needs libc6 >= 2.43 and runs in sid's minbase tree. Neither has the
/// stall (7.2 predates aio_add_sqe(); 11.x has the fix). Measured here:
/// 16 s and 8 s for oldstable cold and warm, ~40 s and 7 s for unstable;
/// see docs/distro.md. Part of the one #[test]: its guests must not
/// share the two cores with the other cases' (a busy host once made the
/// harmful variant's second mode inconclusive).
fn shipped_debian_binaries_run_on_the_host_or_in_their_suite_tree() {
    let dir = tempfile::tempdir().unwrap();
    for (suite, ran_on, version) in [
        ("oldstable", "host", "7.2."),
        ("unstable", "suite tree", "11."),
    ] {
        let json = dir.path().join(format!("{suite}.json"));
        let (doc, text) = run(
            &["patch-and-test", "--guest", "probe", "--qemu-deb", suite],
            &json,
            Kind::Unaffected,
        );
        let pkg = doc.qemu.package.as_ref().expect("the package is named");
        assert_eq!(pkg.suite.as_deref(), Some(suite), "{text}");
        assert_eq!(pkg.ran_on, ran_on, "{text}");
        assert_eq!(pkg.sha256.len(), 64);
        assert!(pkg.release_date.is_some(), "{text}");
        assert!(
            doc.qemu
                .version
                .as_deref()
                .unwrap_or("")
                .starts_with(version),
            "{text}"
        );
        let said = if ran_on == "host" {
            "ran on the host"
        } else {
            "ran in its suite's tree"
        };
        assert!(text.contains(said), "{text}");
    }
    // A suite the archive lacks: what it has, exit 2.
    let o = Command::new(common::XTASK)
        .args([
            "patch-and-test",
            "--guest",
            "probe",
            "--qemu-deb",
            "experimental",
        ])
        .output()
        .unwrap();
    let text = common::out(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("has no qemu-system-x86 for suite experimental; it offers: ")
            && text.contains("(oldstable)"),
        "{text}"
    );
}
