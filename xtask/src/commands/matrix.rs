//! `cargo xtask matrix`: the same question over many combinations, as jobs a
//! CI engine runs. `plan` expands a matrix file's axes into cells (read and
//! multiplied by `matrix_config`; printed as JSON in GitHub Actions'
//! `fromJSON` form, each with a stable id); `run` runs cells
//! (one, a shard, or all in turn on one machine) each as exactly a
//! `patch-and-test` with that cell's flags, writing its report, JUnit and
//! KCIDB into its own folder; `merge` reads any set of cell folders into one
//! table (Markdown), one JSON, and the JUnit and KCIDB of every cell.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use comfy_table::{presets::ASCII_MARKDOWN, Table};

use crate::cases::NamedReport;
pub use crate::matrix_config::{default_config, parse_shard, Cell, Config};
use crate::outputs;
use crate::report::Report;
use crate::ui;
use crate::verdict::Kind;

#[derive(clap::Args, Debug)]
pub struct Matrix {
    #[command(subcommand)]
    pub cmd: MatrixCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum MatrixCmd {
    /// Print the cells as JSON ({"include": [...]}, GitHub Actions' fromJSON form).
    Plan {
        /// The matrix file [default: matrix/default.toml].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run cells, each as `patch-and-test` with its flags, one after another.
    Run {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The cell with this id (from `matrix plan`).
        #[arg(long, value_name = "ID", conflicts_with_all = ["shard", "all"])]
        cell: Option<String>,
        /// Every N-th cell from the I-th (GitLab `parallel`, Buildkite and
        /// other engines run the same matrix this way).
        #[arg(long, value_name = "I/N", value_parser = parse_shard, conflicts_with = "all")]
        shard: Option<(usize, usize)>,
        /// Every cell, in turn.
        #[arg(long)]
        all: bool,
        /// Where each cell's folder goes.
        #[arg(long, value_name = "DIR", default_value = "matrix-out")]
        out: PathBuf,
    },
    /// Read cell folders (from any machines) into one table, JSON, JUnit and KCIDB.
    Merge {
        /// Folders holding cell folders (searched recursively for cell.json).
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The merged table (Markdown) here instead of standard output.
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        kcidb: Option<PathBuf>,
    },
}

/// What a cell folder holds: the cell, and its report or why there is none.
pub struct CellResult {
    pub cell: Cell,
    pub dir: PathBuf,
    pub report: std::result::Result<Report, String>,
}

/// Every cell folder under `dirs`.
pub fn collect(dirs: &[PathBuf]) -> Result<Vec<CellResult>> {
    let mut out = Vec::new();
    for d in dirs {
        if !d.is_dir() {
            bail!("{} is not a directory of matrix cell folders", d.display());
        }
        for e in walkdir::WalkDir::new(d).sort_by_file_name() {
            let e = e?;
            if e.file_name() == "cell.json" {
                out.push(read_cell(e.path(), d)?);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "no matrix cell reports (cell.json) under {}: pass the folders `matrix run --out` wrote",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(out)
}

/// The cell folder of `cell_json` (found under `root`): the cell, and its
/// report or why there is none.
fn read_cell(cell_json: &Path, root: &Path) -> Result<CellResult> {
    let dir = cell_json.parent().unwrap_or(root).to_path_buf();
    let text = std::fs::read_to_string(cell_json)
        .with_context(|| format!("reading {}", cell_json.display()))?;
    let cell: Cell = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a matrix cell of this version",
            cell_json.display()
        )
    })?;
    let rpath = dir.join("report.json");
    let report = if rpath.is_file() {
        Ok(Report::read(&rpath).map_err(|e| {
            anyhow::anyhow!(
                "{e:#}: a report from an incompatible uring-idle version (rerun the cell)"
            )
        })?)
    } else {
        Err(format!("no report: see {}", dir.join("run.log").display()))
    };
    Ok(CellResult { cell, dir, report })
}

/// The merged table: a row per cell, a column per controller's finding.
pub fn table(results: &[CellResult]) -> String {
    let ctrls = controllers_of(results);
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    let mut header = vec![
        "cell".to_string(),
        "QEMU".into(),
        "kernel".into(),
        "guest".into(),
        "verdict".into(),
    ];
    header.extend(ctrls.iter().cloned());
    t.set_header(header);
    for r in results {
        let mut row = vec![r.cell.id.clone()];
        match &r.report {
            Ok(doc) => row.extend(report_row(r, doc, &ctrls)),
            Err(why) => {
                row.extend([
                    r.cell.qemu.clone(),
                    r.cell.kernel.clone().unwrap_or("-".into()),
                    r.cell.guest.clone(),
                    format!("ERROR ({why})"),
                ]);
                row.extend(ctrls.iter().map(|_| "-".to_string()));
            }
        }
        t.add_row(row);
    }
    t.to_string()
}

/// Every controller any report found something for, in table order.
fn controllers_of(results: &[CellResult]) -> Vec<String> {
    let ctrls: BTreeSet<(usize, String)> = results
        .iter()
        .filter_map(|r| r.report.as_ref().ok())
        .flat_map(|doc| &doc.controllers)
        .map(|c| {
            (
                contract::controllers::rank(&c.controller),
                c.controller.clone(),
            )
        })
        .collect();
    ctrls.into_iter().map(|(_, c)| c).collect()
}

/// A reported cell's columns after its id: QEMU, kernel, guest, verdict,
/// and the finding of each of `ctrls` for the cell's guest.
fn report_row(r: &CellResult, doc: &Report, ctrls: &[String]) -> Vec<String> {
    let qemu = match (&doc.qemu.version, &doc.qemu.debian_version) {
        (Some(v), Some(d)) => format!("{v} (Debian {d})"),
        (Some(v), None) => v.clone(),
        _ => r.cell.qemu.clone(),
    };
    let kernel = match (&r.cell.kernel, &doc.kernel) {
        (None, _) => "-".into(),
        (_, Some(k)) => k.release.clone(),
        (Some(k), None) => k.clone(),
    };
    // A QEMU without aio_add_sqe() cannot have the stall.
    let unaffected = doc.verdict == Kind::Skipped;
    let verdict = if unaffected {
        format!("{} (no aio_add_sqe)", Kind::Unaffected.head())
    } else {
        doc.verdict.head().to_string()
    };
    let mut row = vec![qemu, kernel, r.cell.guest.clone(), verdict];
    for c in ctrls {
        let finding = doc
            .controllers
            .iter()
            .find(|f| f.guest.to_string() == r.cell.guest && &f.controller == c);
        row.push(match finding {
            Some(f) => match f.p50_ratio {
                Some(x) => format!("{} {x:.1}x", f.finding.name()),
                None => f.finding.name().to_string(),
            },
            None if unaffected => "unaffected".into(),
            None => "-".into(),
        });
    }
    row
}

impl Matrix {
    pub fn run(self) -> Result<i32> {
        match self.cmd {
            MatrixCmd::Plan { config } => plan(config),
            MatrixCmd::Run {
                config,
                cell,
                shard,
                all,
                out,
            } => run(config, cell.as_deref(), shard, all, &out),
            MatrixCmd::Merge {
                dirs,
                markdown,
                json,
                junit,
                kcidb,
            } => merge(
                &dirs,
                markdown.as_deref(),
                json.as_deref(),
                outputs::CiFiles { junit, kcidb },
            ),
        }
    }
}

/// The matrix file given, or the committed default.
fn read_config(config: Option<PathBuf>) -> Result<Config> {
    Config::read(&config.unwrap_or_else(default_config))
}

/// `matrix plan`: the cells as GitHub Actions' `fromJSON` takes them.
fn plan(config: Option<PathBuf>) -> Result<i32> {
    let c = read_config(config)?;
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({ "include": c.unique_cells()? }))?
    );
    Ok(0)
}

/// `matrix run`: the picked cells one after another, each into its folder
/// under `out`; 2 when any did not produce a report.
fn run(
    config: Option<PathBuf>,
    cell: Option<&str>,
    shard: Option<(usize, usize)>,
    all: bool,
    out: &Path,
) -> Result<i32> {
    let cells = read_config(config)?.unique_cells()?;
    let picked = pick(&cells, cell, shard, all)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut failed = Vec::new();
    for (k, cell) in picked.iter().enumerate() {
        ui::stage(&format!(
            "matrix cell {}/{}: {}",
            k + 1,
            picked.len(),
            cell.id
        ));
        if !run_cell(cell, &out.join(&cell.id))? {
            failed.push(cell.id.clone());
        }
    }
    if !failed.is_empty() {
        ui::warn(&format!(
            "cells that did not finish (see their run.log): {}",
            failed.join(", ")
        ));
        return Ok(2);
    }
    Ok(0)
}

/// The cells `--cell`, `--shard` or `--all` name.
fn pick<'a>(
    cells: &'a [Cell],
    cell: Option<&str>,
    shard: Option<(usize, usize)>,
    all: bool,
) -> Result<Vec<&'a Cell>> {
    Ok(match (cell, shard, all) {
        (Some(id), _, _) => {
            vec![cells.iter().find(|c| c.id == id).with_context(|| {
                format!(
                    "no cell {id} in this matrix; `cargo xtask matrix plan` lists: {}",
                    cells
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?]
        }
        (None, Some((i, n)), _) => cells
            .iter()
            .enumerate()
            .filter(|(k, _)| k % n == i - 1)
            .map(|(_, c)| c)
            .collect(),
        (None, None, true) => cells.iter().collect(),
        (None, None, false) => bail!("matrix run needs --cell ID, --shard I/N or --all"),
    })
}

/// `matrix merge`: the cell folders under `dirs` as one table (to
/// `markdown` or standard output), JSON and CI files; 1 when a cell has a
/// regression or no report.
fn merge(
    dirs: &[PathBuf],
    markdown: Option<&Path>,
    json: Option<&Path>,
    ci: outputs::CiFiles,
) -> Result<i32> {
    let results = collect(dirs)?;
    let text = table(&results);
    match markdown {
        Some(p) => outputs::write(p, &text)?,
        None => println!("{text}"),
    }
    if let Some(p) = json {
        outputs::write_json(p, &merged_json(&results))?;
    }
    let cells: Vec<NamedReport> = results
        .iter()
        .filter_map(|r| {
            r.report.as_ref().ok().map(|d| NamedReport {
                name: Some(r.cell.id.as_str()),
                report: d,
            })
        })
        .collect();
    ci.write(&cells)?;
    // A regression anywhere, or a cell without a report, fails the merge
    // (the CI job that runs it).
    let bad = results.iter().any(|r| {
        r.report
            .as_ref()
            .map_or(true, |d| d.verdict == Kind::Regression)
    });
    Ok(if bad { 1 } else { 0 })
}

/// The merged cells in brief: each cell's verdict and findings, or why it
/// has no report.
fn merged_json(results: &[CellResult]) -> Vec<serde_json::Value> {
    results
        .iter()
        .map(|r| match &r.report {
            Ok(d) => serde_json::json!({ "cell": r.cell, "verdict": d.verdict, "verdict_line": d.verdict_line, "controllers": d.controllers, "variants": d.variants.iter().map(|v| serde_json::json!({"name": v.name, "changes": v.changes, "against": v.against, "verdict": v.verdict})).collect::<Vec<_>>() }),
            Err(e) => serde_json::json!({ "cell": r.cell, "error": e }),
        })
        .collect()
}

/// One cell as `patch-and-test` (this very binary), its output in `dir`;
/// false when it did not produce a report.
fn run_cell(cell: &Cell, dir: &Path) -> Result<bool> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("cell.json"), serde_json::to_string_pretty(cell)?)?;
    // A failed rerun must not leave the last run's files for CI to take.
    for f in ["report.json", "junit.xml", "kcidb.json", "plot.svg"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let mut c = Command::new(exe);
    c.arg("patch-and-test").args(cell.args());
    for (flag, file) in [
        ("--json", "report.json"),
        ("--junit", "junit.xml"),
        ("--kcidb", "kcidb.json"),
        ("--plot", "plot.svg"),
    ] {
        c.arg(flag).arg(dir.join(file));
    }
    ui::info(&format!("patch-and-test {}", cell.args().join(" ")));
    let r = ui::run_logged(c, &dir.join("run.log"), &format!("cell {}", cell.id), |l| {
        if l.starts_with("==> ") || crate::verdict::is_verdict_line(l) {
            ui::info(l);
        }
    });
    let reported = dir.join("report.json").is_file();
    // The boots' console logs and traces beside the report, for the
    // cell's artifact (the run folder itself stays in the cache).
    if let Ok(doc) = Report::read(&dir.join("report.json")) {
        let logs = dir.join("run");
        std::fs::create_dir_all(&logs)?;
        for g in &doc.guest_runs {
            for f in std::iter::once(&g.console_log).chain(g.trace_log.as_ref()) {
                if let Some(name) = f.file_name() {
                    let _ = std::fs::copy(f, logs.join(name));
                }
            }
        }
    }
    if let Err(e) = r {
        if !reported {
            ui::warn(&format!("cell {}: {e:#}", cell.id));
        }
    }
    Ok(reported)
}
