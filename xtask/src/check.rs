//! `cargo xtask check`: one line on where a QEMU tree stands, and an exit
//! code a distro's CI can branch on.

use anyhow::Result;

use crate::patch::{self, State};
use crate::source::QemuSource;

#[derive(clap::Args, Debug)]
pub struct Check {
    #[command(flatten)]
    pub source: QemuSource,
}

/// The one-line report.
pub fn line(tree: &crate::tree::QemuTree, state: &State) -> String {
    let what = match state {
        State::Unaffected => "no aio_add_sqe() (QEMU before 10.2): never had the stall".to_string(),
        State::Fixed => "aio_add_sqe() notifies the AioContext: the fix is present".to_string(),
        State::Vulnerable => {
            "aio_add_sqe() without aio_notify(): needs the fix, and patches/ applies".to_string()
        }
        State::Conflict { detail } => {
            format!("aio_add_sqe() without aio_notify(), and the patch does not apply: {detail}")
        }
    };
    format!(
        "{}: QEMU {} at {}: {what}",
        state.name(),
        tree.describe(),
        tree.root.display()
    )
}

impl Check {
    pub fn run(self) -> Result<i32> {
        let tree = self.source.resolve()?;
        let state = patch::classify(&tree)?;
        println!("{}", line(&tree, &state));
        Ok(state.exit_code())
    }
}
