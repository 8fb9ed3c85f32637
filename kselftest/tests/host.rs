//! Runs the selftest binary on the host against files and checks its KTAP,
//! its figures and its exit codes.

use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use contract::{Record, JSON_PREFIX};

const BIN: &str = env!("CARGO_BIN_EXE_io_uring_idle_latency");

/// A scratch file on the target dir's filesystem (disk-backed, O_DIRECT).
fn scratch(name: &str, size: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kselftest-host");
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let f = fs::File::create(&p).unwrap();
    f.set_len(size).unwrap();
    p
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Asserts the exit code, showing stderr when it is not the one expected.
fn exits(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Ktap {
    plan: usize,
    results: Vec<(bool, usize, String, String)>,
    records: Vec<Record>,
}

/// A strict little reader for what the selftest prints.
fn parse(stdout: &[u8]) -> Ktap {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("KTAP version 1"), "{text}");
    let mut plan = None;
    let mut results = Vec::new();
    let mut records = Vec::new();
    for l in lines {
        if let Some(n) = l.strip_prefix("1..") {
            plan = Some(n.parse().unwrap());
        } else if let Some(j) = l.strip_prefix(JSON_PREFIX) {
            records.push(serde_json::from_str(j).unwrap());
        } else if l.starts_with("ok ") || l.starts_with("not ok ") {
            let ok = l.starts_with("ok ");
            let rest = l.trim_start_matches("not ").trim_start_matches("ok ");
            let (head, note) = rest.split_once(" # ").unwrap_or((rest, ""));
            let (num, name) = head.split_once(' ').unwrap();
            results.push((ok, num.parse().unwrap(), name.to_string(), note.to_string()));
        } else {
            assert!(l.starts_with('#'), "unexpected line {l:?} in\n{text}");
        }
    }
    Ktap {
        plan: plan.expect("no plan"),
        results,
        records,
    }
}

#[test]
fn passing_run_prints_plan_results_and_consistent_figures() {
    let f = scratch("pass.img", 16 << 20);
    let out = run(&[
        "--file",
        f.to_str().unwrap(),
        "--iterations",
        "40",
        "--think-us",
        "100",
        "--mode",
        "both",
        "--write",
    ]);
    exits(&out, 0);
    let k = parse(&out.stdout);
    assert_eq!(k.plan, 3);
    let names: Vec<_> = k.results.iter().map(|r| (r.0, r.1, r.2.as_str())).collect();
    assert_eq!(
        names,
        [
            (true, 1, "file_pass_img_sleep"),
            (true, 2, "file_pass_img_poll"),
            (true, 3, "file_pass_img_integrity")
        ]
    );
    assert_eq!(k.records.len(), 3);
    for r in &k.records[..2] {
        let s = r.stats.as_ref().unwrap();
        assert_eq!((s.n, r.samples_us.len()), (40, 40));
        assert!(
            s.min_us <= s.p50_us
                && s.p50_us <= s.p90_us
                && s.p90_us <= s.p99_us
                && s.p99_us <= s.max_us,
            "{s:?}"
        );
        assert!(
            s.min_us > 0.0 && s.mean_us >= s.min_us && s.mean_us <= s.max_us,
            "{s:?}"
        );
        // The loop sleeps 40 x 100 µs, so it cannot take less than 4 ms.
        assert!(s.total_ms >= 4.0, "{s:?}");
        // Samples are whole µs (truncated), the summary is rounded to 0.1 µs:
        // the largest sample is within 1 µs of max (4999 ns: 4 µs vs 5.0 µs).
        let top = f64::from(*r.samples_us.iter().max().unwrap());
        assert!((s.max_us - top).abs() <= 1.0, "{top} vs {s:?}");
        assert_eq!(r.controller, "file");
    }
    assert_eq!(k.records[2].mode, "integrity");
    assert!(k.records[2].ok);
}

#[test]
fn p99_over_the_limit_is_not_ok_and_exit_1() {
    let f = scratch("fail.img", 1 << 20);
    // No read completes in a nanosecond, so every test must fail.
    let out = run(&[
        "--file",
        f.to_str().unwrap(),
        "--iterations",
        "10",
        "--think-us",
        "0",
        "--max-p99-ms",
        "0.000001",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let k = parse(&out.stdout);
    assert_eq!(k.results.len(), 1);
    assert!(!k.results[0].0);
    assert!(
        k.results[0].3.contains("exceeds the 0.000001 ms limit"),
        "{}",
        k.results[0].3
    );
    assert!(!k.records[0].ok);
    assert!(String::from_utf8_lossy(&out.stdout).contains("# Totals: pass:0 fail:1"));
}

/// Installs a seccomp filter in the child that fails io_uring_setup(2)
/// with `errno`, as a kernel without io_uring (ENOSYS) or with
/// kernel.io_uring_disabled=2 (EPERM) would.
fn without_io_uring(cmd: &mut Command, errno: u32) {
    const IO_URING_SETUP: u32 = 425;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let filter = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 4,
        }, // ld arch
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 3,
            k: AUDIT_ARCH_X86_64,
        },
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        }, // ld nr
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: IO_URING_SETUP,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x0005_0000 | errno,
        }, // ret ERRNO
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }, // ret ALLOW
    ];
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut _,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const _ as libc::c_ulong,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn no_io_uring_is_a_skip_with_the_reason_and_exit_4() {
    let f = scratch("skip.img", 1 << 20);
    for (errno, why) in [
        (libc::ENOSYS as u32, "CONFIG_IO_URING"),
        (libc::EPERM as u32, "io_uring_disabled"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["--file", f.to_str().unwrap(), "--mode", "both"]);
        without_io_uring(&mut cmd, errno);
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(4),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let k = parse(&out.stdout);
        assert_eq!(k.plan, 2);
        assert_eq!(k.results.len(), 2);
        for r in &k.results {
            assert!(
                r.0 && r.3.starts_with("SKIP ") && r.3.contains(why),
                "{r:?}"
            );
        }
    }
}

#[test]
fn corrupted_read_back_fails_the_integrity_check() {
    use kselftest::devices::{from_path, open};
    use kselftest::workload::{new_ring, pattern_offsets, verify_pattern, write_pattern};
    let f = scratch("corrupt.img", 4 << 20);
    let target = from_path(&f, Path::new("/sys")).unwrap();
    let dev = open(&target, true).unwrap();
    let Ok(mut ring) = new_ring() else {
        panic!("io_uring unavailable on this host")
    };
    let offsets = pattern_offsets(99, 32, dev.blocks());
    write_pattern(&mut ring, &dev, 99, &offsets).unwrap();
    verify_pattern(&mut ring, &dev, 99, &offsets).unwrap();
    // Flip one byte of the fourth block behind the selftest's back.
    let victim = offsets[3] + 100;
    let side = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f)
        .unwrap();
    let mut b = [0u8; 1];
    side.read_exact_at(&mut b, victim).unwrap();
    side.write_all_at(&[b[0] ^ 0xff], victim).unwrap();
    side.sync_all().unwrap();
    let err = format!(
        "{:#}",
        verify_pattern(&mut ring, &dev, 99, &offsets).unwrap_err()
    );
    assert!(err.contains("data mismatch in 1 of 32 blocks"), "{err}");
    assert!(err.contains(&format!("offset {victim}")), "{err}");
    // Data from another run (another seed) never passes either.
    assert!(verify_pattern(&mut ring, &dev, 98, &offsets).is_err());
}

#[test]
fn json_mode_prints_only_records() {
    let f = scratch("json.img", 1 << 20);
    let out = run(&[
        "--file",
        f.to_str().unwrap(),
        "--iterations",
        "5",
        "--think-us",
        "0",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let recs: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].stats.as_ref().unwrap().n, 5);
}

#[test]
fn bad_inputs_get_one_clear_message_and_exit_1() {
    let small = scratch("small.img", 100);
    let file = scratch("file.img", 1 << 20);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--file".into(), "/no/such/file".into()],
            "does it exist?",
        ),
        (
            vec!["--device".into(), "/dev/null".into()],
            "not a block device or a regular file",
        ),
        (
            vec!["--file".into(), dir.display().to_string()],
            "not a block device or a regular file",
        ),
        (
            vec!["--file".into(), small.display().to_string()],
            "smaller than one 4096-byte I/O",
        ),
        (
            vec!["--device".into(), file.display().to_string()],
            "use --file",
        ),
        (
            vec!["--iterations".into(), "5".into()],
            "nothing to measure",
        ),
        (vec!["--bogus".into()], "unknown argument"),
        (
            vec![
                "--file".into(),
                file.display().to_string(),
                "--mode".into(),
                "spin".into(),
            ],
            "sleep, poll or both",
        ),
        (
            vec![
                "--file".into(),
                file.display().to_string(),
                "--iterations".into(),
                "x".into(),
            ],
            "not a whole number",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: KTAP printed for bad input"
        );
    }
}

#[test]
fn help_exits_0_and_names_every_flag() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--device",
        "--file",
        "--iterations",
        "--think-us",
        "--mode",
        "--max-p99-ms",
        "--json",
        "--write",
    ] {
        assert!(text.contains(flag), "{flag}");
    }
}

#[test]
fn batch_workload_reads_everything_in_batches_and_its_figures_add_up() {
    let f = scratch("batch.img", 8 << 20);
    let out = run(&[
        "--file",
        f.to_str().unwrap(),
        "--workload",
        "batch",
        "--total-mb",
        "8",
        "--chunk-kb",
        "64",
        "--batch",
        "4",
        "--submit-sleep-us",
        "500",
        "--completion-sleep-us",
        "200",
        "--think",
        "spin",
        "--mode",
        "both",
    ]);
    exits(&out, 0);
    let k = parse(&out.stdout);
    assert_eq!(k.plan, 2);
    let names: Vec<&str> = k.results.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        names,
        ["file_batch_img_batch_sleep", "file_batch_img_batch_poll"]
    );
    for r in &k.records {
        let b = r.batch.as_ref().expect("batch figures");
        // 8 MiB in 64 KiB reads, 4 per batch: 32 batches of 256 KiB.
        assert_eq!((b.batches, b.bytes, r.samples_us.len()), (32, 8 << 20, 32));
        assert_eq!(b.sleeps, "spin");
        // Spun sleeps are exact: every batch holds at least 0.5 ms before
        // its submit and 4 x 0.2 ms after its completions.
        assert!(
            r.samples_us.iter().all(|&us| us >= 1300),
            "{:?}",
            r.samples_us
        );
        assert!(b.total_ms >= 32.0 * 1.3, "{b:?}");
        // The batches are the whole run; MB/s is bytes over that time.
        let sum_ms: f64 = r.samples_us.iter().map(|&us| f64::from(us) / 1000.0).sum();
        assert!(
            (b.total_ms - sum_ms).abs() < 0.05 * b.total_ms,
            "{b:?} vs {sum_ms}"
        );
        let want = 8.0 / (b.total_ms / 1000.0);
        assert!((b.mb_per_s - want).abs() < 0.01 * want, "{b:?}");
    }
}

#[test]
fn batch_on_a_file_smaller_than_the_total_is_refused_before_any_ktap() {
    let f = scratch("small-batch.img", 4 << 20);
    let out = run(&[
        "--file",
        f.to_str().unwrap(),
        "--workload",
        "batch",
        "--total-mb",
        "16",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("smaller than the 16 MiB the batch workload reads")
            && err.contains("--total-mb 4"),
        "{err}"
    );
}

#[test]
fn under_run_kselftest_sh_targets_come_from_the_environment() {
    // No arguments and no targets: a kselftest skip, with what to set.
    let out = Command::new(BIN)
        .env_remove("URING_IDLE_TARGETS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("KTAP version 1\n1..0 # SKIP") && text.contains("URING_IDLE_TARGETS"),
        "{text}"
    );
    // With targets: measured as if given with --file.
    let f = scratch("env-target.img", 4 << 20);
    let out = Command::new(BIN)
        .env("URING_IDLE_TARGETS", &f)
        .output()
        .unwrap();
    exits(&out, 0);
    let k = parse(&out.stdout);
    assert_eq!(
        (k.plan, k.results[0].2.as_str()),
        (1, "file_env_target_img_sleep")
    );
}

#[test]
fn a_time_budget_stops_a_test_early_and_says_so() {
    // 1000 I/Os 2 ms apart would take 2 s; the budget is 40 ms.
    let f = scratch("budget.img", 4 << 20);
    let out = run(&[
        "--file",
        f.to_str().unwrap(),
        "--iterations",
        "1000",
        "--think-us",
        "2000",
        "--think",
        "spin",
        "--budget-ms",
        "40",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let k = parse(&out.stdout);
    let r = &k.records[0];
    // At least the minimum kept, far fewer than asked; the record says why.
    let n = r.samples_us.len();
    assert!((10..100).contains(&n), "{n}");
    assert_eq!(r.stats.as_ref().unwrap().n as usize, n);
    let why = r.stopped_early.as_deref().unwrap();
    assert!(
        why.contains(&format!("stopped after {n} of 1000 I/Os")) && why.contains("40 ms"),
        "{why}"
    );
}
