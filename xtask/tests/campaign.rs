//! The campaign stage against fake QEMUs that each fail a boot in their own
//! way: the campaign goes on past every failure, returns within seconds
//! with one failed outcome per boot, and leaves no process behind. Its own
//! test binary: it points the cache and the measure lock at a temporary
//! folder through the environment.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use contract::{controllers, GuestSet, Params};
use xtask::accel::{Accel, AccelChoice};
use xtask::campaign::{self, BootOutcome, CampaignPlan, VariantBoot};
use xtask::failure::Failure;
use xtask::guests::{self, GuestImage};

/// A fake QEMU running `script` in sh; it notes its pid (and its
/// children's) in `pids`.
fn fake(dir: &Path, name: &str, script: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let pids = dir.join("pids");
    let text = format!(
        "#!/bin/sh\nulimit -c 0\necho $$ >> {}\n{script}\n",
        pids.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn every_failed_boot_is_an_outcome_and_the_campaign_goes_on() {
    let t = tempfile::tempdir().unwrap();
    // A private cache and measure lock: this test neither waits for a
    // real run's guests nor prunes its run folders.
    std::env::set_var("XDG_CACHE_HOME", t.path().join("cache"));
    std::env::set_var("TMPDIR", t.path());
    let kinds = [
        (
            "refuses",
            "echo 'qemu-system-x86_64: aio=native was specified, but is not supported' >&2; exit 1",
        ),
        ("crashes", "echo 'falling over' >&2; kill -SEGV $$"),
        (
            "silent",
            "sleep 1000 & echo $! >> \"$(dirname \"$0\")/pids\"; wait",
        ),
        ("powers-off", "echo 'Linux version 6.1'; exit 0"),
        // Reports a pass, but its console has no KTAP to read.
        ("no-ktap", "echo 'hello'; exit 65"),
    ];
    let variants = kinds
        .iter()
        .map(|(name, script)| VariantBoot {
            name: name.to_string(),
            binary: fake(t.path(), name, script),
            images: vec![(
                contract::Guest::Probe,
                GuestImage::Probe {
                    bios: t.path().join("probe.bin"),
                },
            )],
            kernel_variant: false,
            required: false,
            config: contract::Config::default(),
        })
        .collect();
    let plans = guests::plans(&guests::Asked {
        guests: "probe".parse::<GuestSet>().unwrap(),
        controllers: &[controllers::by_name("ahci").unwrap()],
        netdev: None,
        iterations: None,
        rounds: None,
        params: Params::default(),
    })
    .unwrap();
    let plan = CampaignPlan {
        guests: &plans,
        variants,
        controllers: vec![controllers::by_name("ahci").unwrap()],
        accel: AccelChoice::Tcg,
        no_trace: true,
        keep_runs: 2,
        first_output: Duration::from_millis(500),
    };
    let start = Instant::now();
    let mut seen = Vec::new();
    let camp = campaign::run(&plan, &mut |b| seen.push(b.label.clone())).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(camp.accel, Accel::Tcg);
    assert!(camp.run_dir.starts_with(t.path().join("cache")));
    assert_eq!(camp.no_host_evidence.as_deref(), Some("--no-trace"));
    // One boot per variant (the probe's one round), each failed its way.
    let labels: Vec<String> = kinds.iter().map(|(n, _)| format!("probe-{n}-r1")).collect();
    assert_eq!(seen, labels);
    let failures: Vec<_> = camp
        .boots
        .iter()
        .map(|b| match &b.outcome {
            BootOutcome::Failed(f) => f,
            BootOutcome::Measured(_) => panic!("{} measured", b.label),
        })
        .collect();
    assert_eq!(failures.len(), kinds.len());
    assert_eq!(failures[0].kind, Failure::Refused { status: 1 });
    assert!(failures[0].evidence.stderr_tail.contains("aio=native"));
    assert_eq!(failures[1].kind, Failure::Crashed { signal: 11 });
    assert_eq!(
        failures[2].kind,
        Failure::Silent {
            waited: Duration::from_millis(500)
        }
    );
    assert!(matches!(&failures[3].kind, Failure::BadExit { why } if why.contains("powered off")));
    assert!(
        matches!(&failures[4].kind, Failure::Invalid { why } if why.starts_with("no KTAP output")),
        "{}",
        failures[4]
    );
    for (f, (name, _)) in failures.iter().zip(&kinds) {
        assert!(
            f.evidence
                .command_line
                .starts_with(&t.path().join(name).display().to_string()),
            "{f}"
        );
        assert_eq!(f.accel, Accel::Tcg);
    }
    let pids = std::fs::read_to_string(t.path().join("pids")).unwrap();
    assert_eq!(pids.split_whitespace().count(), kinds.len() + 1);
    for pid in pids.split_whitespace() {
        assert!(
            common::ended(pid),
            "process {pid} of a fake QEMU is still running"
        );
    }
}
