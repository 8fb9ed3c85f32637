//! Where the QEMU tree comes from: a directory the user names, or a Debian
//! source package fetched into the cache.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::fetch::{Apt, DEFAULT_QEMU_VERSION};
use crate::tree::QemuTree;
use crate::ui;

#[derive(clap::Args, Debug, Clone)]
pub struct QemuSource {
    /// A QEMU source tree (git checkout or unpacked source package). Never modified.
    #[arg(long, value_name = "DIR", conflicts_with = "qemu_src")]
    pub qemu_tree: Option<PathBuf>,
    /// Fetch Debian's QEMU source package into the cache: `debian` or `debian=VERSION`.
    #[arg(long, value_name = "debian[=VER]", default_value_t = format!("debian={DEFAULT_QEMU_VERSION}"))]
    pub qemu_src: String,
}

/// The Debian version named by `--qemu-src`.
pub fn parse_qemu_src(s: &str) -> Result<String> {
    match s.split_once('=') {
        None if s == "debian" => Ok(DEFAULT_QEMU_VERSION.into()),
        Some(("debian", v)) if !v.trim().is_empty() => Ok(v.trim().into()),
        _ => bail!("--qemu-src takes `debian` or `debian=VERSION` (e.g. debian={DEFAULT_QEMU_VERSION}), not {s:?}"),
    }
}

impl QemuSource {
    pub fn resolve(&self) -> Result<QemuTree> {
        if let Some(dir) = &self.qemu_tree {
            return QemuTree::open(dir);
        }
        let version = parse_qemu_src(&self.qemu_src)?;
        ui::stage(&format!("QEMU source: Debian qemu {version}"));
        let tree = Apt::new()?.source_tree("qemu", &version)?;
        QemuTree::open(&tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_src_forms() {
        assert_eq!(parse_qemu_src("debian").unwrap(), DEFAULT_QEMU_VERSION);
        assert_eq!(
            parse_qemu_src("debian=1:10.2.1+ds-1").unwrap(),
            "1:10.2.1+ds-1"
        );
        for bad in ["ubuntu", "debian=", "10.2.2"] {
            assert!(
                format!("{:#}", parse_qemu_src(bad).unwrap_err()).contains("debian=VERSION"),
                "{bad}"
            );
        }
    }
}
