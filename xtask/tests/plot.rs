//! The latency plot, rendered from a recorded guest run (the console and
//! QEMU trace fixtures), checked as SVG: one titled panel per device and mode.

use std::collections::BTreeMap;
use std::path::Path;

use contract::{Guest, Mode, Workload};
use xtask::{ktap, plot, samples, trace};

const CONSOLE: &str = include_str!("fixtures/console-pass.log");
const TRACE: &str = include_str!("fixtures/trace-baseline.log");

#[test]
fn a_recorded_run_plots_one_panel_per_device_and_mode() {
    let parsed = ktap::parse(CONSOLE, Path::new("console-pass.log")).unwrap();
    let mut samples = samples::Samples::new();
    samples::collect(&mut samples, &parsed.records, "baseline", Guest::Linux);
    // The same records again as a second variant, scaled down, as a fix would.
    let mut faster = parsed.records.clone();
    for r in &mut faster {
        r.samples_us.iter_mut().for_each(|s| *s = (*s / 20).max(1));
    }
    samples::collect(&mut samples, &faster, "patched", Guest::Linux);
    // Host-side queue times from the recorded trace, for the AHCI disk.
    let paired = trace::pair(TRACE.lines().filter_map(trace::parse_line));
    let fds: BTreeMap<i32, String> = [(16, "ahci".to_string())].into();
    let plans = [(
        "ahci".to_string(),
        trace::DiskPlan::uniform(&[Mode::Poll], 10, 10),
    )]
    .into();
    let disks = trace::by_disk(&paired, &fds, &plans);
    samples::collect_host(
        &mut samples,
        Guest::Linux,
        ("ahci", Mode::Poll, Workload::Latency),
        &disks["ahci"].measured[&(Mode::Poll, Workload::Latency)],
        "baseline",
    );

    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("latency.svg");
    let panels = plot::render(
        &svg,
        &samples,
        &["baseline", "patched"],
        &contract::Config::default(),
    )
    .unwrap();
    assert_eq!(panels, 6, "3 devices x 2 modes");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    let titles: Vec<&&str> = texts
        .iter()
        .filter(|t| t.ends_with("latency CDF"))
        .collect();
    assert_eq!(titles.len(), 6, "{titles:?}");
    for t in [
        "ahci_sda (poll, linux guest): latency CDF",
        "virtio_blk_vda (sleep, linux guest): latency CDF",
        "nvme_nvme0n1 (poll, linux guest): latency CDF",
    ] {
        assert!(texts.contains(&t), "{t} missing from {titles:?}");
    }
    // Every variant in the legend, and the host series where it was traced.
    for l in ["baseline", "patched", "baseline: queued in QEMU"] {
        assert!(texts.contains(&l), "legend {l} missing");
    }
    // A configuration that is not the default is named in every panel.
    let threads = contract::Config {
        aio: contract::config::Aio::Threads,
        ..contract::Config::default()
    };
    plot::render(&svg, &samples, &["baseline", "patched"], &threads).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(
        text.matches("(poll, linux guest, aio=threads,cache=none): latency CDF")
            .count(),
        3,
        "{text}"
    );
}
