//! Building QEMU twice from one work copy: the baseline, then the baseline
//! plus `patches/` as an incremental rebuild in the same build directory.
//! Both binaries are kept, keyed by everything that went into them, so
//! reruns and rounds never rebuild.
//!
//! What configure gets and its run (`configure`), the work copy and the
//! builds (`compile`), and what a binary offers (`binary`: the one place
//! that runs a QEMU binary to ask it something).

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::patch::PatchSet;
use crate::tree::QemuTree;

mod binary;
mod compile;
mod configure;

pub use crate::baseline::BaselineMode;
pub use binary::{
    device_types, netdev_backends, parse_device_help, probe, require_user_networking, QemuBinary,
};
pub use compile::{prepare, time_incremental_rebuild, Prepared};
pub use configure::{flags_key, rejected_flag, required_meson, CONFIGURE_FLAGS, DEVICES_MAK};

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
