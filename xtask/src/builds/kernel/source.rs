//! Where the guest kernel comes from: a tree given, Debian's kernel source
//! of a series fetched into the cache, or a prebuilt image.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use contract::Controller;

use super::build::{prepare, KernelPlan};
use super::prebuilt::{debian_image, prebuilt};
use super::Kernel;
use crate::fetch::{Apt, DEFAULT_KERNEL_PACKAGE};
use crate::source::{parse_kernel_src, KernelSrc};
use crate::{cache, ui};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelSource {
    /// A Linux source tree to build the guest kernel from (default: Debian's linux-source-6.1). Never modified.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kernel", "kernel_src"])]
    pub kernel_tree: Option<PathBuf>,
    /// Debian's kernel source of another series, fetched from any suite the archive has:
    /// `debian=6.12` (linux-source-6.12, its newest version) or `debian=6.12.117-1`.
    #[arg(long, value_name = "debian=SERIES|VERSION", conflicts_with = "kernel", value_parser = parse_kernel_src)]
    pub kernel_src: Option<KernelSrc>,
    /// A prebuilt kernel image (bzImage) instead of building one, or `debian` for Debian's
    /// linux-image-amd64 with its modules, fetched into the cache.
    #[arg(long, value_name = "IMAGE|debian")]
    pub kernel: Option<PathBuf>,
    /// With --kernel: its modules directory (/lib/modules/RELEASE); the drivers the guest needs are packed into the initramfs.
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules: Option<PathBuf>,
}

pub fn check_tree(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        bail!(
            "kernel tree {} is not a directory; pass --kernel-tree DIR with a Linux source tree",
            path.display()
        );
    }
    let root = path.canonicalize()?;
    if !(root.join("Kconfig").is_file()
        && root.join("Makefile").is_file()
        && root.join("arch/x86").is_dir()
        && root.join("kernel").is_dir())
    {
        let hint = if root.join("VERSION").is_file() && root.join("util/aio-posix.c").is_file() {
            " (it looks like a QEMU tree: pass that with --qemu-tree)"
        } else {
            ""
        };
        bail!("{} is not a Linux source tree with arch/x86: expected Kconfig, Makefile, kernel/ and arch/x86/{hint}", root.display());
    }
    Ok(root)
}

/// Where the guest kernel comes from, fetched: a prebuilt one with the
/// modules it needs, or a source tree still to configure.
pub enum KernelInput {
    Prebuilt(Kernel),
    Tree {
        tree: PathBuf,
        source: String,
        /// Controllers whose drivers it must have.
        ctrls: Vec<&'static Controller>,
    },
}

impl KernelInput {
    /// A source tree configured, its headers exported; a prebuilt kernel
    /// as it is.
    pub fn plan(self) -> Result<KernelPlan> {
        match self {
            KernelInput::Prebuilt(k) => Ok(KernelPlan::Ready(k)),
            KernelInput::Tree {
                tree,
                source,
                ctrls,
            } => prepare(&tree, &source, &ctrls),
        }
    }
}

impl KernelSource {
    /// Fetches (or checks) what the guest kernel comes from; a prebuilt
    /// one gets the modules `ctrls` need. Downloads and unpacking only,
    /// so it can run beside QEMU's source fetch.
    pub fn fetch(&self, ctrls: &[&'static Controller]) -> Result<KernelInput> {
        if let Some(image) = &self.kernel {
            if image.as_os_str() == "debian" && !image.exists() {
                if self.modules.is_some() {
                    bail!("--kernel debian brings its own modules: drop --modules");
                }
                let (image, modules) = debian_image()?;
                return prebuilt(&image, Some(&modules), ctrls).map(KernelInput::Prebuilt);
            }
            return prebuilt(image, self.modules.as_deref(), ctrls).map(KernelInput::Prebuilt);
        }
        let (tree, source) = match &self.kernel_tree {
            Some(t) => {
                let root = check_tree(t)?;
                let s = format!("tree {}", root.display());
                (root, s)
            }
            None => match &self.kernel_src {
                Some(k) => debian_tree(&k.package, k.version.as_deref())?,
                None => debian_tree(DEFAULT_KERNEL_PACKAGE, None)?,
            },
        };
        Ok(KernelInput::Tree {
            tree,
            source,
            ctrls: ctrls.to_vec(),
        })
    }
}

/// A Linux tree already unpacked in the cache (Debian's linux-source) that
/// holds `rel`, without asking apt: for tools taken from the kernel's own
/// tree (kunit.py, run_kselftest.sh).
pub fn cached_tree_with(rel: &str) -> Option<PathBuf> {
    let sources = cache::root().ok()?.join("sources");
    std::fs::read_dir(sources)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("linux-source-"))
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .find(|p| p.join(rel).is_file())
}

/// A Debian kernel source package (`linux-source-X.Y`, at `version` or
/// its candidate), fetched and unpacked into the cache.
fn debian_tree(package: &str, version: Option<&str>) -> Result<(PathBuf, String)> {
    ui::stage(&format!("kernel source: Debian {package}"));
    let apt = Apt::new()?;
    apt.update()?;
    let version = match version {
        Some(v) => v.to_string(),
        None => apt.binary_version(package)?,
    };
    let base = cache::dir("sources")?.join(format!("{package}_{version}"));
    let tree = base.join(package);
    let source = format!("Debian {package} {version}");
    if cache::is_filled(&base) {
        return Ok((tree, source));
    }
    cache::ensure_free("the kernel source", cache::KERNEL_SOURCE_BYTES)?;
    cache::refill(&base, |base| {
        ui::info(&format!("downloading {package} {version}"));
        let deb = apt.download_deb_at(package, &version)?;
        let log = base.join("unpack.log");
        let mut c = Command::new("dpkg-deb");
        c.arg("-x").arg(&deb).arg(base.join("deb"));
        ui::run_logged(c, &log, "dpkg-deb -x", |_| {})?;
        let tarball = base.join(format!("deb/usr/src/{package}.tar.xz"));
        ui::info("unpacking the kernel source");
        let mut c = Command::new("tar");
        c.arg("-xf").arg(&tarball).arg("-C").arg(base);
        ui::run_logged(c, &log, "tar -x of the kernel source", |_| {})?;
        let _ = std::fs::remove_dir_all(base.join("deb"));
        let _ = std::fs::remove_file(&deb);
        check_tree(&tree).map(|_| ())
    })?;
    Ok((tree, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_checks_name_the_other_tree_type() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("VERSION"), "10.2.2").unwrap();
        std::fs::create_dir_all(t.path().join("util")).unwrap();
        std::fs::write(t.path().join("util/aio-posix.c"), "").unwrap();
        let e = check_tree(t.path()).unwrap_err().to_string();
        assert!(e.contains("looks like a QEMU tree"), "{e}");
        assert!(check_tree(&t.path().join("nope"))
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
    }
}
