//! `cargo xtask ci`: everything the project checks, in the order that fails
//! fastest: dependencies, formatting, lints, then the tests (the end-to-end
//! guest runs among them).

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{deps, ui};

#[derive(clap::Args, Debug)]
pub struct Ci {
    /// Never install missing Debian packages; only name them.
    #[arg(long)]
    pub no_install: bool,
}

impl Ci {
    pub fn run(self) -> Result<i32> {
        let all: Vec<(&str, &str)> = deps::PIPELINE.iter().chain(deps::TESTS).copied().collect();
        deps::ensure(&all, !self.no_install)?;
        let sh = Shell::new()?;
        sh.change_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        ui::stage("cargo fmt --check");
        cmd!(sh, "cargo fmt --all --check")
            .run()
            .context("formatting differs: run `cargo fmt --all`")?;
        ui::stage("cargo clippy -D warnings");
        cmd!(
            sh,
            "cargo clippy --workspace --all-targets --locked -- -D warnings"
        )
        .run()
        .context("clippy found problems")?;
        ui::stage("cargo test --workspace");
        cmd!(sh, "cargo test --workspace --locked")
            .run()
            .context("tests failed")?;
        Ok(0)
    }
}
