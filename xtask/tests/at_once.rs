//! `children::at_once`, which runs the kernel's compile beside the selftest
//! and QEMU's configure: the first step to fail stops the other's child at
//! once and its own error is the one reported. Its own test binary: a
//! cancel refuses new children process-wide, which would break other tests
//! spawning children beside it.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use xtask::children::at_once;
use xtask::ui::run_logged;

/// A step whose child would run for 60 s unless stopped; it writes its pid
/// to `pid` first.
fn long_step(log: &std::path::Path, pid: &std::path::Path) -> anyhow::Result<&'static str> {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("echo $$ > {}; exec sleep 60", pid.display()));
    run_logged(c, log, "long step", |_| {})?;
    Ok("long")
}

/// The long step's process is gone (not merely refused before it started).
fn gone(pid: &std::path::Path) {
    let pid = std::fs::read_to_string(pid).expect("the long step started and wrote its pid");
    let proc = std::path::Path::new("/proc").join(pid.trim());
    assert!(!proc.exists(), "{} still exists", proc.display());
}

// Every check below runs in one test, in order: they share the process's
// cancel flag.
#[test]
fn the_first_failure_stops_the_other_step_and_is_the_error_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (pid1, pid2) = (dir.path().join("pid1"), dir.path().join("pid2"));

    // Both succeed: both results, in order.
    let (a, b) = at_once(|| Ok(1), || Ok("two")).unwrap();
    assert_eq!((a, b), (1, "two"));

    // This thread's step fails while the other's child sleeps: the sleep is
    // killed, so the call returns in far less than its 60 s (the margin
    // allows a slow host 20 s to kill and reap one process), and the error
    // is ours, not the killed step's.
    let t = Instant::now();
    let e = at_once(
        || -> anyhow::Result<()> {
            std::thread::sleep(Duration::from_millis(1000));
            bail!("here failed first")
        },
        || long_step(&log, &pid1),
    )
    .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(format!("{e}"), "here failed first");
    gone(&pid1);

    // The other way round: the thread's step fails, this one's child dies.
    let t = Instant::now();
    let e = at_once(
        || long_step(&log, &pid2),
        || -> anyhow::Result<()> {
            std::thread::sleep(Duration::from_millis(1000));
            bail!("there failed first")
        },
    )
    .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(format!("{e}"), "there failed first");
    gone(&pid2);

    // After a failure, children start again (the next run's steps).
    at_once(
        || run_logged(Command::new("true"), &log, "after", |_| {}),
        || Ok(()),
    )
    .unwrap();
}
