//! cargo xtask: check a QEMU tree for the io_uring submission-stall fix,
//! build, boot, measure and report. Folders by stage, in the order data
//! flows: `base` (cache, children, ui and its events, venv, the Debian
//! packages, the workspace) serves all; `inputs` (sources, patches),
//! `builds` (QEMU, kernel and its variants, selftest, initramfs, probe
//! image), `run` (the campaign: guest boots, their load, KTAP and trace),
//! `results` (findings, verdicts, tables, plot, JUnit, KCIDB) and `commands` (`pipeline` wires the stages; the other
//! subcommands). A module imports only its own stage or earlier ones
//! (`cargo xtask ci` checks: `layers`). The binary (`main.rs`) only parses
//! flags and dispatches.

// Grouped by stage, in the order data flows; every module is also named
// at the top (`crate::report`), so a path never says which folder it is in.
pub mod base;
pub mod builds;
pub mod commands;
pub mod inputs;
pub mod results;
pub mod run;

pub use base::packages as deps;
pub use base::workspace::{cargo_build_cached, workspace};
pub use base::{cache, children, event, packages, timings, ui, venv};
pub use builds::{
    at_once, initramfs, kernel, kernel_variant, probe_image, qemu, selftest, shipped, variants,
};
pub use commands::{
    actionlint, bench, build_qemu, check, ci, kselftest_install, layers, matrix, pipeline,
    qemu_debs, scan,
};
pub use inputs::{baseline, deb, fetch, matrix_config, patch, source, tree};
pub use results::{
    batch, cases, findings, junit, kcidb, notes, outputs, plot, provenance, report, rules, samples,
    scan_findings, scan_report, summary, tables, units, verdict,
};
pub use run::{
    accel, boots, campaign, failure, guest, guests, ktap, load, outcome, qemu_args, trace,
};
