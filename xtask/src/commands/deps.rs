//! `cargo xtask deps`: report, and with `--install` install, the Debian
//! packages the pipeline and the tests need (`crate::deps` lists them).

use anyhow::{bail, Result};

use crate::deps::{install, install_command, missing, PIPELINE, SUITE_TREES, TESTS};

#[derive(clap::Args, Debug)]
pub struct Deps {
    /// Install what is missing (as root, with apt-get); otherwise only report it.
    #[arg(long)]
    pub install: bool,
}

impl Deps {
    pub fn run(self) -> Result<i32> {
        let all: Vec<(&str, &str)> = PIPELINE
            .iter()
            .chain(SUITE_TREES)
            .chain(TESTS)
            .copied()
            .collect();
        let miss = missing(&all)?;
        if miss.is_empty() {
            println!("all {} Debian packages present", all.len());
            return Ok(0);
        }
        if self.install {
            install(&miss)?;
            let still = missing(&all)?;
            if !still.is_empty() {
                bail!("still missing after apt-get install: {}", still.join(" "));
            }
            println!("installed {}", miss.join(" "));
            Ok(0)
        } else {
            println!("missing: {}", miss.join(" "));
            println!("{}", install_command(&miss));
            Ok(1)
        }
    }
}
