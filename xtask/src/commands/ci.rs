//! `cargo xtask ci`: everything the project checks, in the order that fails
//! fastest: dependencies, formatting, lints, the layering, then the tests
//! (the end-to-end guest runs among them).

use anyhow::{bail, Context, Result};
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
        sh.change_dir(crate::workspace());
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
        // The probe's bare-metal binary builds only with its `image` feature
        // (a plain workspace build has no linker script for it).
        cmd!(
            sh,
            "cargo clippy -p probe --release --features image --bin probe --locked -- -D warnings"
        )
        .run()
        .context("clippy found problems in the probe guest's image")?;
        ui::stage("layering: no module imports a later stage");
        crate::layers::check(crate::workspace())?;
        ui::stage("actionlint (the GitHub Actions workflows, offline)");
        crate::actionlint::check()?;
        ui::stage("cargo test --workspace");
        let totals = test_streaming(&sh)?;
        // One closing line that counts every test binary, since cargo's own
        // last line is only the last binary's.
        println!(
            "\ntests: {} passed, {} failed, {} skipped",
            totals.passed, totals.failed, totals.ignored
        );
        if !totals.ok {
            bail!("tests failed");
        }
        Ok(0)
    }
}

#[derive(Debug, Default, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    ok: bool,
}

/// Adds one `test result: ok. 14 passed; 0 failed; 1 ignored; ...` line.
fn add_result(t: &mut Totals, line: &str) {
    let Some(rest) = line.strip_prefix("test result: ") else {
        return;
    };
    for part in rest.split(';') {
        let mut w = part.split_whitespace().rev();
        let (Some(kind), Some(n)) = (w.next(), w.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match kind {
            "passed" => t.passed += n,
            "failed" => t.failed += n,
            "ignored" => t.ignored += n,
            _ => {}
        }
    }
}

/// Runs the workspace tests with their output passed through as it comes,
/// counting the results.
fn test_streaming(sh: &Shell) -> Result<Totals> {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new("cargo");
    cmd.args(["test", "--workspace", "--locked"])
        // The end-to-end guest tests are skipped unless asked for.
        .env("URING_IDLE_E2E", "1")
        .current_dir(sh.current_dir())
        .stdout(std::process::Stdio::piped());
    let (mut child, _registered) =
        crate::children::spawn(&mut cmd).context("starting cargo test")?;
    let mut t = Totals::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        add_result(&mut t, &line);
    }
    t.ok = child.wait().context("waiting for cargo test")?.success() && t.failed == 0;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_of_every_binary_add_up() {
        let mut t = Totals::default();
        add_result(&mut t, "test result: ok. 14 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        add_result(&mut t, "test result: FAILED. 6 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s");
        add_result(&mut t, "running 3 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (20, 2, 1));
    }
}
