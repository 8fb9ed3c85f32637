//! cargo xtask: check a QEMU tree for the io_uring submission-stall fix,
//! build, boot, measure and report. `main` only parses flags and dispatches.

use clap::{Parser, Subcommand};

use xtask::commands::deps;
use xtask::{bench, build_qemu, check, ci, kselftest_install, matrix, pipeline, qemu_debs, scan};

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Verify QEMU's fix for the io_uring submission stall, per disk controller"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The main job: build, boot the guest with one disk per chosen controller, measure baseline and patched QEMU, report.
    PatchAndTest(Box<pipeline::PatchAndTest>),
    /// Report whether a QEMU tree is unaffected (exit 0), fixed (0), vulnerable (1) or conflicting (2).
    Check(check::Check),
    /// Build (or find in the cache) the baseline and patched QEMU binaries and print their paths.
    BuildQemu(build_qemu::BuildQemu),
    /// Run every check the project has: formatting, clippy, unit, integration and end-to-end tests.
    Ci(ci::Ci),
    /// Time warm pipeline runs, guest boots and an incremental QEMU rebuild; print min/median/max.
    Bench(bench::Bench),
    /// Check, and with --install install, the Debian packages the pipeline and tests need.
    Deps(deps::Deps),
    /// Install the selftest as a kselftest collection (uring_idle) for run_kselftest.sh.
    KselftestInstall(kselftest_install::KselftestInstall),
    /// Plan, run (a cell, a shard or all) and merge a matrix of patch-and-test cells.
    Matrix(matrix::Matrix),
    /// Does this QEMU lose a wakeup in any configuration? The probe over every controller x aio x cache x iothread cell; no baseline needed.
    Scan(Box<scan::Scan>),
    /// List or remove the Debian suite trees `--qemu-deb` keeps in the cache.
    QemuDebs(qemu_debs::QemuDebs),
}

fn main() -> std::process::ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    xtask::children::install();
    // The verdict rules are printed from the constants that apply them.
    let matches = Cli::command()
        .mut_subcommand("patch-and-test", |c| c.after_help(xtask::rules::rules()))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.cmd {
        Cmd::PatchAndTest(p) => p.run(),
        Cmd::Check(c) => c.run(),
        Cmd::Deps(d) => d.run(),
        Cmd::Ci(c) => c.run(),
        Cmd::Bench(b) => b.run(),
        Cmd::BuildQemu(b) => b.run(),
        Cmd::KselftestInstall(k) => k.run(),
        Cmd::Matrix(m) => m.run(),
        Cmd::Scan(s) => s.run(),
        Cmd::QemuDebs(q) => q.run(),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            // Usage, input and build errors: 2, as patch-and-test documents.
            std::process::ExitCode::from(2)
        }
    }
}
