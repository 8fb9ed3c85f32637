//! Building QEMU twice from one work copy: the baseline, then the baseline
//! plus `patches/` as an incremental rebuild in the same build directory.
//! Both binaries are kept, keyed by everything that went into them, so
//! reruns and rounds never rebuild.
//!
//! What configure gets and its run (`configure`), the work copy and the
//! builds (`compile`), and what a binary offers (`binary`: the one place
//! that runs a QEMU binary to ask it something).

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::patch::{PatchSet, State};
use crate::tree::QemuTree;

mod binary;
mod compile;
mod configure;

pub use binary::{
    device_types, netdev_backends, parse_device_help, probe, require_user_networking, QemuBinary,
};
pub use compile::{prepare, time_incremental_rebuild, Prepared};
pub use configure::{flags_key, rejected_flag, required_meson, CONFIGURE_FLAGS, DEVICES_MAK};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineMode {
    /// `as-is` for a vulnerable tree, `revert-fix` for a fixed one.
    Auto,
    /// The tree exactly as given.
    AsIs,
    /// The tree with the fix statement (and its comment) removed from aio_add_sqe().
    RevertFix,
}

impl BaselineMode {
    pub fn name(self) -> &'static str {
        match self {
            BaselineMode::Auto => "auto",
            BaselineMode::AsIs => "as-is",
            BaselineMode::RevertFix => "revert-fix",
        }
    }

    /// What `auto` means for a tree in `state`; errors for combinations that
    /// cannot give a pre-fix baseline.
    pub fn resolve(self, state: &State) -> Result<BaselineMode> {
        Ok(match (self, state) {
            (_, State::Unaffected) => {
                bail!("the tree has no aio_add_sqe(): there is nothing to patch")
            }
            (_, State::Conflict { detail }) => {
                bail!("the patch does not apply to this tree: {detail}")
            }
            (BaselineMode::Auto | BaselineMode::AsIs, State::Vulnerable) => BaselineMode::AsIs,
            (BaselineMode::RevertFix, State::Vulnerable) => {
                bail!("--baseline revert-fix needs a tree with the fix, and this one is vulnerable: use --baseline as-is (or auto)")
            }
            (BaselineMode::Auto | BaselineMode::RevertFix, State::Fixed) => BaselineMode::RevertFix,
            (BaselineMode::AsIs, State::Fixed) => {
                bail!("--baseline as-is on a tree that already has the fix would compare fixed with fixed: use --baseline revert-fix (or auto)")
            }
        })
    }
}

/// One built QEMU binary, as cached with `built.json` beside it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Binary {
    pub path: PathBuf,
    /// Seconds its build took when it was built (0 for the cached).
    pub build_s: f64,
    /// Its size when it was built: a cache entry of another size is damaged.
    #[serde(default)]
    pub bytes: u64,
}

/// The baseline and one binary per patch set, in the order asked.
#[derive(Clone, Debug)]
pub struct Built {
    pub baseline: Binary,
    pub variants: Vec<(PatchSet, Binary)>,
}

/// Builds (or finds) the baseline binary for `tree` and one binary per
/// patch set, each an incremental rebuild from the baseline's build
/// directory. The baseline is keyed by the tree, the baseline mode and the
/// configure flags; each variant also by its patches' contents.
pub fn build(tree: &QemuTree, baseline: BaselineMode, sets: &[PatchSet]) -> Result<Built> {
    prepare(tree, baseline, sets)?.compile()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_resolution() {
        use BaselineMode::*;
        assert_eq!(Auto.resolve(&State::Vulnerable).unwrap(), AsIs);
        assert_eq!(Auto.resolve(&State::Fixed).unwrap(), RevertFix);
        assert_eq!(RevertFix.resolve(&State::Fixed).unwrap(), RevertFix);
        assert!(format!("{:#}", AsIs.resolve(&State::Fixed).unwrap_err())
            .contains("use --baseline revert-fix"));
        assert!(
            format!("{:#}", RevertFix.resolve(&State::Vulnerable).unwrap_err())
                .contains("use --baseline as-is")
        );
        assert!(Auto.resolve(&State::Unaffected).is_err());
        assert!(Auto
            .resolve(&State::Conflict {
                detail: "hunk".into()
            })
            .unwrap_err()
            .to_string()
            .contains("hunk"));
    }
}
