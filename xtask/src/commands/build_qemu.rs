//! `cargo xtask build-qemu`: only the QEMU half, for reviewers who want the
//! baseline and patched binaries to run by hand.

use anyhow::Result;

use crate::patch::PatchChoice;
use crate::qemu::{self, BaselineMode};
use crate::source::QemuSource;
use crate::{deps, patch, ui};

#[derive(clap::Args, Debug)]
pub struct BuildQemu {
    #[command(flatten)]
    pub source: QemuSource,
    /// How the baseline is made from the tree.
    #[arg(long, value_enum, default_value_t = BaselineMode::Auto)]
    pub baseline: BaselineMode,
    #[command(flatten)]
    pub patches: PatchChoice,
    /// Never install missing Debian packages; only name them.
    #[arg(long)]
    pub no_install: bool,
}

impl BuildQemu {
    pub fn run(self) -> Result<i32> {
        deps::ensure(deps::PIPELINE, !self.no_install)?;
        let tree = self.source.resolve()?;
        let state = patch::classify(&tree)?;
        let baseline = self.baseline.resolve(&state)?;
        ui::stage(&format!(
            "building QEMU {} ({}, baseline {})",
            tree.describe(),
            state.name(),
            baseline.name()
        ));
        let sets = self.patches.sets()?;
        let _building = crate::cache::MeasureLock::builds()?;
        let built = qemu::build(&tree, baseline, &sets)?;
        println!("baseline: {}", built.baseline.path.display());
        for (set, bin) in &built.variants {
            println!("{}: {}", set.name, bin.path.display());
        }
        Ok(0)
    }
}
