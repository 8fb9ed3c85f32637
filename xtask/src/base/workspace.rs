//! The checkout this xtask was built from, and cargo builds of it kept in
//! the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::cache;

/// The workspace's root: the checkout this xtask was built from.
pub fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `cargo build --release --locked` of this workspace with `args`, in a
/// target directory of the cache under `name`, keyed by `key` and by the
/// checkout: cargo's artifact hashes leave out the absolute path, so two
/// checkouts sharing one target directory would take each other's (older)
/// builds of a path dependency as fresh. Returns the command and that
/// directory (made).
pub fn cargo_build_cached(name: &str, key: &[String], args: &[&str]) -> Result<(Command, PathBuf)> {
    let workspace = workspace();
    let root = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let mut parts = key.to_vec();
    parts.push(root.display().to_string());
    let target_dir = cache::dir(name)?.join(cache::key(parts));
    std::fs::create_dir_all(&target_dir)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["build", "--release", "--locked"])
        .args(args)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
    Ok((c, target_dir))
}
