//! `cargo xtask check`: one line on where a QEMU tree stands, and an exit
//! code a distro's CI can branch on.

use anyhow::Result;

use crate::patch;
use crate::source::QemuSource;

#[derive(clap::Args, Debug)]
pub struct Check {
    #[command(flatten)]
    pub source: QemuSource,
}

impl Check {
    pub fn run(self) -> Result<i32> {
        let tree = self.source.resolve()?;
        let state = patch::classify(&tree)?;
        println!("{}", patch::summary(&tree, &state));
        Ok(state.exit_code())
    }
}
