//! cargo xtask: check a QEMU tree for the io_uring submission-stall fix,
//! build, boot, measure and report. Modules by role, in the order data
//! flows: inputs (`source`, `fetch`, `tree`, `patch`), builds (`qemu`,
//! `kernel`, `selftest`, `initramfs`, `probe_image`), guest runs (`guest`; `guests` holds what differs per guest kind), parsed results
//! (`ktap`, `trace`), output (`report`, `plot`); `pipeline` wires them; `cache`, `ui` and
//! `deps` serve all. The binary (`main.rs`) only parses flags and dispatches.

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

pub mod actionlint;
pub mod bench;
pub mod build_qemu;
pub mod cache;
pub mod cases;
pub mod check;
pub mod children;
pub mod ci;
pub mod deps;
pub mod fetch;
pub mod guest;
pub mod guests;
pub mod initramfs;
pub mod junit;
pub mod kcidb;
pub mod kernel;
pub mod kernel_variant;
pub mod kselftest_install;
pub mod ktap;
pub mod load;
pub mod matrix;
pub mod patch;
pub mod pipeline;
pub mod plot;
pub mod probe_image;
pub mod qemu;
pub mod report;
pub mod selftest;
pub mod source;
pub mod trace;
pub mod tree;
pub mod ui;
pub mod venv;
