//! Where the QEMU tree comes from: a directory the user names, or a Debian
//! source package fetched into the cache; and which Debian kernel source
//! `--kernel-src` names (`builds::kernel` fetches and builds it).

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

/// A Debian kernel source: the `linux-source-SERIES` package, at a version
/// or at the lists' candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSrc {
    pub package: String,
    pub version: Option<String>,
}

/// `debian=6.12` or `debian=6.12.117-1`.
pub fn parse_kernel_src(s: &str) -> std::result::Result<KernelSrc, String> {
    let bad = || {
        format!("--kernel-src takes debian=SERIES or debian=VERSION (e.g. debian=6.12 or debian=6.12.117-1), not {s:?}")
    };
    let v = s.strip_prefix("debian=").ok_or_else(bad)?.trim();
    let parts: Vec<&str> = v.split(['.', '-']).collect();
    if parts.len() < 2
        || !parts[..2]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    let series = format!("{}.{}", parts[0], parts[1]);
    Ok(KernelSrc {
        package: format!("linux-source-{series}"),
        version: (v != series).then(|| v.to_string()),
    })
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

    #[test]
    fn kernel_src_names_a_series_or_a_version() {
        assert_eq!(
            parse_kernel_src("debian=6.12"),
            Ok(KernelSrc {
                package: "linux-source-6.12".into(),
                version: None
            })
        );
        assert_eq!(
            parse_kernel_src("debian=6.12.117-1"),
            Ok(KernelSrc {
                package: "linux-source-6.12".into(),
                version: Some("6.12.117-1".into())
            })
        );
        for bad in ["6.12", "debian=", "debian=six", "fedora=6.12", "debian=6"] {
            assert!(
                parse_kernel_src(bad).unwrap_err().contains("debian=SERIES"),
                "{bad}"
            );
        }
    }
}
