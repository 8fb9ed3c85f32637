//! Private Python venvs in the cache, one per pinned package set: QEMU's
//! meson when the system's is too old, the KCIDB and JUnit validators the
//! tests use. Keyed by the pins, filled once, never the system's Python.

use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{cache, ui};

/// Validators of the CI formats, pinned: KernelCI's own schema package and
/// a JUnit parser.
pub const VALIDATORS: &[&str] = &["kcidb-io==141", "junitparser==5.0.3"];

/// The python of a venv named `name` with `pins` installed from PyPI.
pub fn with(name: &str, pins: &[&str]) -> Result<PathBuf> {
    let venv = cache::dir("venv")?.join(format!("{name}-{}", cache::key(pins)));
    let py = venv.join("bin/python3");
    if py.is_file() && cache::is_filled(&venv) {
        return Ok(py);
    }
    ui::info(&format!(
        "installing {} into {}",
        pins.join(" "),
        venv.display()
    ));
    cache::refill(&venv, |venv| {
        let sh = Shell::new()?;
        cmd!(sh, "python3 -m venv {venv}")
            .quiet()
            .run()
            .context("python3 -m venv (install python3-venv)")?;
        let py = venv.join("bin/python3");
        cmd!(sh, "{py} -m pip install --quiet {pins...}")
            .quiet()
            .run()
            .with_context(|| format!("pip install {} into a private venv", pins.join(" ")))?;
        Ok(())
    })?;
    Ok(py)
}
