//! `scan` against a fake QEMU that answers each configuration its own way:
//! `aio=native` refused, an iothread crashes it, `cache=writeback` never
//! prints, `aio=threads` loses the wakeup of every request (each completes
//! only after the probe's wake, at both deadlines), the default is clean.
//! Every cell gets its finding within seconds and no process outlives the
//! scan. Its own test binary: it points the cache and the measure lock at
//! a temporary folder through the environment.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use clap::Parser;
use contract::config::{Aio, Cache, Iothread};
use contract::Config;
use xtask::scan::{Scan, Target};
use xtask::scan_findings::{exit_code, Finding};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    scan: Scan,
}

/// The probe's console for virtio_blk: `woken` of 3 reads waited the
/// deadline (read from the parameters on the command line).
const REPORT: &str = r##"
d=$(echo "$*" | sed -n 's/.*uring_idle\.deadline_ms=\([0-9]*\).*/\1/p')
[ -n "$d" ] || d=$(echo "$*" | sed -n 's/.*deadline_ms=\([0-9]*\).*/\1/p')
if [ "$WOKEN" = 3 ]; then s=$((d * 1000 + 300)); else s=90; fi
echo 'KTAP version 1'
echo '# kernel: uring-idle-probe 0.1.0'
echo '1..2'
echo '# virtio_blk_probe: pci 00:04.0 controller=virtio_blk size=268435456 bytes'
echo "# uring-idle-json: {\"test\":\"virtio_blk_probe_poll\",\"device\":\"virtio_blk_probe\",\"controller\":\"virtio_blk\",\"path\":\"pci 00:04.0\",\"mode\":\"poll\",\"ok\":true,\"samples_us\":[$s,$s,$s],\"woken\":$WOKEN}"
echo 'ok 1 virtio_blk_probe_poll'
echo '# uring-idle-json: {"test":"virtio_blk_probe_integrity","device":"virtio_blk_probe","controller":"virtio_blk","path":"pci 00:04.0","mode":"integrity","ok":true}'
echo 'ok 2 virtio_blk_probe_integrity'
echo '# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0'
exit 65
"##;

/// How the fake answers each boot in the first test.
const BY_CONFIG: &str = r#"*aio=native*) echo 'qemu-system-x86_64: aio=native was specified, but is not supported in this build' >&2; exit 1 ;;
*iothread,id=*) kill -SEGV $$ ;;
*cache=writeback*) sleep 1000 & echo $! >> "$(dirname "$0")/pids"; wait ;;
*aio=threads*) WOKEN=3 ;;
*) WOKEN=0 ;;"#;

fn fake_qemu(dir: &std::path::Path, cases: &str) -> std::path::PathBuf {
    let path = dir.join("qemu-system-x86_64");
    let pids = dir.join("pids");
    let script = format!(
        r#"#!/bin/sh
ulimit -c 0
case "$*" in
--version) echo 'QEMU emulator version 10.2.1'; exit 0 ;;
"-machine help") printf 'q35   Standard PC\n'; exit 0 ;;
"-machine none -device help") printf 'name "virtio-blk-pci", bus PCI\nname "nvme", bus PCI\nname "isa-debug-exit", bus ISA\n'; exit 0 ;;
"-machine none -trace help") exit 0 ;;
"-machine none -netdev help") exit 0 ;;
esac
echo $$ >> {pids}
case "$*" in
{cases}
esac
{report}
"#,
        pids = pids.display(),
        report = REPORT
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The tests point the cache and the lock at their own folder through the
/// process's environment: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A fresh folder under the temporary folder the process started with
/// (each test then points TMPDIR into its own).
fn tempdir() -> tempfile::TempDir {
    static BASE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    tempfile::tempdir_in(BASE.get_or_init(std::env::temp_dir)).unwrap()
}

#[test]
fn every_cell_gets_its_finding_in_seconds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = tempdir();
    std::env::set_var("XDG_CACHE_HOME", t.path().join("cache"));
    std::env::set_var("TMPDIR", t.path());
    let qemu = fake_qemu(t.path(), BY_CONFIG);
    let mut scan = Cli::parse_from([
        "scan",
        "--controllers",
        "virtio_blk",
        "--accel",
        "tcg",
        "--cache",
        "none,writeback",
        "--deadline-ms",
        "50",
    ])
    .scan;
    scan.first_output = Some(Duration::from_millis(500));
    let target = Target {
        binary: qemu,
        version: "10.2.1".into(),
        bios: t.path().join("probe.bin"),
    };
    let start = Instant::now();
    let (cells, _) = scan.cells(&target).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let find = |aio, cache, iothread| {
        let k = Config {
            aio,
            cache,
            iothread,
        };
        let c = cells.iter().find(|c| c.config == k).unwrap();
        (
            c.finding.clone(),
            c.console.is_some() && c.command.is_some(),
        )
    };
    use Iothread::{Off, On};
    let (clean, _) = find(Aio::IoUring, Cache::None, Off);
    assert_eq!(clean.name(), "clean", "{clean:?}");
    let (refused, files) = find(Aio::Native, Cache::None, Off);
    assert!(
        matches!(&refused, Finding::Refused { why } if why.contains("aio=native was specified")),
        "{refused:?}"
    );
    assert!(files);
    let (crashed, _) = find(Aio::IoUring, Cache::None, On);
    assert_eq!(crashed, Finding::Crashed { signal: 11 });
    let (silent, files) = find(Aio::IoUring, Cache::Writeback, Off);
    assert_eq!(silent.name(), "hung at start", "{silent:?}");
    assert!(files);
    let (lost, files) = find(Aio::Threads, Cache::None, Off);
    assert!(
        matches!(lost, Finding::LostWakeup { woken: 3, waited_ms, retried_ms, queued_ms: None, .. }
            if (waited_ms - 50.3).abs() < 0.01 && (retried_ms - 100.3).abs() < 0.01),
        "{lost:?}"
    );
    assert!(files);
    let (na, _) = find(Aio::Native, Cache::Writeback, Off);
    assert_eq!(na.name(), "not applicable");
    // 3 aio x 2 cache x 2 iothread.
    assert_eq!(cells.len(), 12);
    assert_eq!(exit_code(&cells), 1);
    let pids = std::fs::read_to_string(t.path().join("pids")).unwrap();
    for pid in pids.split_whitespace() {
        assert!(
            common::ended(pid),
            "process {pid} of the fake QEMU is still running"
        );
    }
}

/// A boot carrying two cells that crashes: each cell is booted alone
/// again, so the healthy one is still measured and the crash is the other's.
#[test]
fn a_crash_in_a_shared_boot_is_pinned_on_its_own_cell() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = tempdir();
    std::env::set_var("XDG_CACHE_HOME", t.path().join("cache"));
    std::env::set_var("TMPDIR", t.path());
    let qemu = fake_qemu(t.path(), "*nvme,serial*) kill -SEGV $$ ;;\n*) WOKEN=0 ;;");
    let mut scan = Cli::parse_from([
        "scan",
        "--controllers",
        "virtio_blk,nvme",
        "--accel",
        "tcg",
        "--aio",
        "threads",
        "--cache",
        "none",
        "--iothread",
        "off",
    ])
    .scan;
    scan.first_output = Some(Duration::from_millis(500));
    let target = Target {
        binary: qemu,
        version: "10.2.1".into(),
        bios: t.path().join("probe.bin"),
    };
    let (cells, _) = scan.cells(&target).unwrap();
    let f: Vec<(&str, &str)> = cells
        .iter()
        .map(|c| (c.controller.as_str(), c.finding.name()))
        .collect();
    assert_eq!(f, [("virtio_blk", "clean"), ("nvme", "crashed")]);
}
