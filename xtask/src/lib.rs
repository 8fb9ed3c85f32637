//! cargo xtask: check a QEMU tree for the io_uring submission-stall fix,
//! build, boot, measure and report. Folders by stage, in the order data
//! flows: `inputs` (sources, patches), `builds` (QEMU, kernel and its
//! variants, selftest, initramfs, probe image), `run` (guest boots, their
//! load, KTAP and trace), `results` (findings, plot, JUnit, KCIDB) and
//! `commands` (`pipeline` wires the stages; the other subcommands);
//! `cache`, `children`, `deps`, `ui` and `venv` serve all. The binary
//! (`main.rs`) only parses flags and dispatches.

/// The workspace's root: the checkout this xtask was built from.
pub fn workspace() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `cargo build --release --locked` of this workspace with `args`, in a
/// target directory of the cache under `name`, keyed by `key` and by the
/// checkout: cargo's artifact hashes leave out the absolute path, so two
/// checkouts sharing one target directory would take each other's (older)
/// builds of a path dependency as fresh. Returns the command and that
/// directory (made).
pub fn cargo_build_cached(
    name: &str,
    key: &[String],
    args: &[&str],
) -> anyhow::Result<(std::process::Command, std::path::PathBuf)> {
    let workspace = workspace();
    let root = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let mut parts = key.to_vec();
    parts.push(root.display().to_string());
    let target_dir = cache::dir(name)?.join(cache::key(parts));
    std::fs::create_dir_all(&target_dir)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = std::process::Command::new(cargo);
    c.args(["build", "--release", "--locked"])
        .args(args)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
    Ok((c, target_dir))
}

// Grouped by stage, in the order data flows; every module is also named
// at the top (`crate::report`), so a path never says which folder it is in.
pub mod builds;
pub mod commands;
pub mod inputs;
pub mod results;
pub mod run;

pub mod cache;
pub mod children;
pub mod deps;
pub mod event;
pub mod ui;
pub mod venv;

pub use builds::{initramfs, kernel, kernel_variant, probe_image, qemu, selftest};
pub use commands::{actionlint, bench, build_qemu, check, ci, kselftest_install, matrix, pipeline};
pub use inputs::{fetch, patch, source, tree};
pub use results::{cases, junit, kcidb, plot, report};
pub use run::{accel, campaign, failure, guest, guests, ktap, load, outcome, qemu_args, trace};
