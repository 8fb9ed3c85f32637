//! The guest kernel: built from a kernel tree (tinyconfig plus
//! `kselftest/config`, every option verified after olddefconfig), or a
//! prebuilt image with its modules. Also exports the tree's uapi headers so
//! the selftest is built against the kernel it runs on.
//!
//! Where it comes from (`source`), the options it gets (`config`), its
//! build (`build`), and a prebuilt one with its modules (`prebuilt`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

mod build;
mod config;
mod prebuilt;
mod source;

pub use crate::source::{parse_kernel_src, KernelSrc};
pub(crate) use build::recorded;
pub use build::{prepare, Compile, KernelPlan};
pub(crate) use config::{configure, fragment_for};
pub use config::{fragment_path, missing_options, needs_for, trim_path};
pub use prebuilt::{guest_modules, module_order};
pub use source::{cached_tree_with, check_tree, KernelInput, KernelSource};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Kernel {
    pub image: PathBuf,
    /// Exported uapi headers (`.../include`), when built from a tree.
    pub uapi: Option<PathBuf>,
    /// Modules to pack, in load order, when the kernel is modular.
    #[serde(default)]
    pub modules: Vec<PathBuf>,
    pub release: String,
    /// Where it came from, for the report.
    pub source: String,
    pub build_s: f64,
}

/// `make` in the build directory, one job per core: the configuration
/// steps too (headers_install 12.3 s with one job, 6.8 s with two, measured
/// on linux-source-6.1, and it is on the cold path before the compile).
pub(crate) fn make(tree: &Path, build: &Path) -> Command {
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(tree)
        .arg(format!("O={}", build.display()))
        .arg(format!("-j{jobs}"));
    c
}

/// The version string a bzImage carries (boot protocol: a pointer at 0x20e,
/// relative to 0x200), e.g. `6.1.0-42-amd64 (debian-kernel@...) #1 SMP ...`.
pub fn bzimage_version(image: &[u8]) -> Option<String> {
    if image.len() < 0x210 || &image[0x202..0x206] != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([image[0x20e], image[0x20f]]) as usize + 0x200;
    let end = image.get(ptr..)?.iter().position(|&b| b == 0)? + ptr;
    Some(String::from_utf8_lossy(&image[ptr..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzimage_version_string() {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        img[0x300..0x310].copy_from_slice(b"6.1.0-9 (x) #1\0\0");
        assert_eq!(bzimage_version(&img).as_deref(), Some("6.1.0-9 (x) #1"));
        assert_eq!(bzimage_version(b"not a kernel"), None);
    }
}
