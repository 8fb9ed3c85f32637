//! `cargo xtask qemu-debs list|remove SUITE`: the suite trees `--qemu-deb`
//! made in the cache (one per Debian suite, kept between runs), with the
//! QEMU each holds and its size, and their removal.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::shipped::{self, mounts_under};

#[derive(clap::Args, Debug)]
pub struct QemuDebs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// List the suite trees: suite, the qemu-system-x86 installed, size.
    List,
    /// Remove one suite's tree (the next --qemu-deb of it makes it again).
    Remove {
        /// The suite (as `list` names it).
        suite: String,
    },
}

impl QemuDebs {
    pub fn run(self) -> Result<i32> {
        let dir = shipped::trees_dir()?;
        match self.action {
            Action::List => {
                let mut suites: Vec<String> = std::fs::read_dir(&dir)
                    .with_context(|| format!("listing {}", dir.display()))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("root").is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                suites.sort();
                if suites.is_empty() {
                    println!("no suite trees in {}", dir.display());
                }
                for s in suites {
                    let root = dir.join(&s).join("root");
                    println!(
                        "{s}\tqemu-system-x86 {}\t{}\t{}",
                        installed(&root).unwrap_or_else(|| "not installed".into()),
                        size(&dir.join(&s)).unwrap_or_else(|| "?".into()),
                        root.display()
                    );
                }
                Ok(0)
            }
            Action::Remove { suite } => {
                let tree = dir.join(&suite);
                if suite.contains('/') || suite.starts_with('.') || !tree.is_dir() {
                    bail!(
                        "no suite tree {suite} in {} (`cargo xtask qemu-debs list`)",
                        dir.display()
                    );
                }
                // Runs mount only in their own namespaces; a mount seen here
                // is someone else's, and removal must not reach through it.
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                    .context("reading /proc/self/mountinfo")?;
                let held = mounts_under(&tree, &mountinfo);
                if !held.is_empty() {
                    bail!(
                        "{} has mounts in it ({}): unmount them first",
                        tree.display(),
                        held.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                std::fs::remove_dir_all(&tree)
                    .with_context(|| format!("removing {}", tree.display()))?;
                println!("removed {}", tree.display());
                Ok(0)
            }
        }
    }
}

/// The tree's installed qemu-system-x86, read from its dpkg status.
fn installed(root: &Path) -> Option<String> {
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).ok()?;
    crate::deb::installed(&status)
        .versions
        .get(crate::deb::PACKAGE)
        .cloned()
}

/// `du -sh` of the tree, staying on its filesystem.
fn size(dir: &Path) -> Option<String> {
    let out = Command::new("du").args(["-shx"]).arg(dir).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
}
