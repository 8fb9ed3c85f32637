//! A matrix file (`cargo xtask matrix`'s input): its axes, each a list of
//! values checked by the parsers `patch-and-test` uses, and the cells they
//! multiply into, each with a stable id and the flags it runs with. A probe
//! cell has no kernel: the probe guest does not multiply by it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The committed default matrix.
pub fn default_config() -> PathBuf {
    crate::workspace().join("matrix/default.toml")
}

/// A matrix file: each axis a list; cells are their product.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// QEMU sources: `debian=VERSION` or `tree:PATH`; or `deb:SUITE`
    /// (also a version or FILE.deb), Debian's shipped binary as
    /// `--qemu-deb` takes it: nothing built, no baseline.
    pub qemu: Vec<String>,
    /// How each baseline is made: auto, as-is, revert-fix.
    #[serde(default = "auto")]
    pub baseline: Vec<String>,
    /// Guest kernels: `build` (Debian's linux-source-6.1, built),
    /// `debian=SERIES|VERSION` (another Debian linux-source, built),
    /// `debian` (Debian's prebuilt image) or `tree:PATH`.
    #[serde(default = "build")]
    pub kernel: Vec<String>,
    /// linux, probe.
    pub guest: Vec<String>,
    /// Controller lists, as `--controllers` takes them.
    #[serde(default = "default_controllers")]
    pub controllers: Vec<String>,
    /// latency, batch.
    #[serde(default = "latency")]
    pub workload: Vec<String>,
    /// Flags every cell's patch-and-test gets besides its axes (e.g.
    /// `["--rounds", "3"]`).
    #[serde(default)]
    pub extra: Vec<String>,
}

fn auto() -> Vec<String> {
    vec!["auto".into()]
}
fn build() -> Vec<String> {
    vec!["build".into()]
}
fn default_controllers() -> Vec<String> {
    vec![contract::controllers::DEFAULT.join(",")]
}
fn latency() -> Vec<String> {
    vec!["latency".into()]
}

/// One combination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub id: String,
    pub qemu: String,
    pub baseline: String,
    /// None for the probe guest, which has no kernel.
    pub kernel: Option<String>,
    pub guest: String,
    pub controllers: String,
    pub workload: String,
    #[serde(default)]
    pub extra: Vec<String>,
}

/// `x` as an id part: lowercase letters, digits and `-`.
fn slug(x: &str) -> String {
    let s: String = x
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn check_axis(name: &str, values: &[String], ok: impl Fn(&str) -> Result<()>) -> Result<()> {
    if values.is_empty() {
        bail!("matrix axis `{name}` is empty: give it at least one value");
    }
    for v in values {
        ok(v).with_context(|| format!("matrix axis `{name}`: value {v:?}"))?;
    }
    Ok(())
}

impl Config {
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading matrix file {}", path.display()))?;
        let c: Config = toml::from_str(&text)
            .with_context(|| format!("matrix file {} is not a valid matrix", path.display()))?;
        c.check()?;
        Ok(c)
    }

    /// The cells, each id once: two values that slug alike (`qemu_9.2`,
    /// `qemu-9.2`) would share a folder and a `--cell`.
    pub fn unique_cells(&self) -> Result<Vec<Cell>> {
        let cells = self.cells();
        for (i, c) in cells.iter().enumerate() {
            if let Some(o) = cells[..i].iter().find(|o| o.id == c.id) {
                bail!(
                    "two cells of this matrix get the id {}: {:?} and {:?}; make the axis values differ in more than case and punctuation",
                    c.id,
                    (&o.qemu, &o.kernel),
                    (&c.qemu, &c.kernel)
                );
            }
        }
        Ok(cells)
    }

    /// Every value of every axis, checked by the parser patch-and-test uses.
    fn check(&self) -> Result<()> {
        check_axis("qemu", &self.qemu, |v| {
            if v.starts_with("tree:") || v.strip_prefix("deb:").is_some_and(|d| !d.is_empty()) {
                Ok(())
            } else {
                crate::source::parse_qemu_src(v).map(|_| ())
            }
        })?;
        check_axis("baseline", &self.baseline, |v| {
            <crate::baseline::BaselineMode as clap::ValueEnum>::from_str(v, false)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e} (auto, as-is or revert-fix)"))
        })?;
        check_axis("kernel", &self.kernel, |v| match v {
            "build" | "debian" => Ok(()),
            t if t.starts_with("tree:") => Ok(()),
            t if t.starts_with("debian=") => crate::source::parse_kernel_src(t)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!(e)),
            _ => bail!("a kernel is `build`, `debian=SERIES`, `debian` or `tree:PATH`"),
        })?;
        check_axis("guest", &self.guest, |v| match v {
            "linux" | "probe" => Ok(()),
            _ => bail!("a guest is `linux` or `probe`"),
        })?;
        check_axis("controllers", &self.controllers, |v| {
            contract::controllers::parse_list(v)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!(e))
        })?;
        check_axis("workload", &self.workload, |v| {
            v.parse::<contract::Workload>()
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e}"))
        })?;
        Ok(())
    }

    /// The cells, in axis order; a probe cell once per QEMU, not per kernel.
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        for setup in self.setups() {
            for c in &self.controllers {
                for w in &self.workload {
                    out.push(self.cell(setup, c, w));
                }
            }
        }
        out
    }

    /// Every (QEMU, baseline, guest, kernel), in axis order: a Linux guest
    /// per kernel, a probe guest once, with none.
    fn setups(&self) -> Vec<Setup<'_>> {
        let mut out = Vec::new();
        for q in &self.qemu {
            for b in &self.baseline {
                for g in &self.guest {
                    out.extend(self.kernels_for(g).into_iter().map(|k| (q, b, g, k)));
                }
            }
        }
        out
    }

    fn kernels_for(&self, guest: &str) -> Vec<Option<&String>> {
        if guest == "linux" {
            self.kernel.iter().map(Some).collect()
        } else {
            vec![None]
        }
    }

    /// One cell, its id the slugs of its axis values joined by dots.
    fn cell(&self, (q, b, g, k): Setup, controllers: &str, workload: &str) -> Cell {
        let mut id = vec![slug(q), slug(b), slug(g)];
        id.extend(k.map(|k| slug(k)));
        id.push(slug(controllers));
        id.push(slug(workload));
        Cell {
            id: id.join("."),
            qemu: q.clone(),
            baseline: b.clone(),
            kernel: k.cloned(),
            guest: g.clone(),
            controllers: controllers.to_string(),
            workload: workload.to_string(),
            extra: self.extra.clone(),
        }
    }
}

/// A cell's QEMU, baseline, guest and kernel (none for the probe).
type Setup<'a> = (&'a String, &'a String, &'a String, Option<&'a String>);

impl Cell {
    /// The patch-and-test flags of this cell.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(d) = self.qemu.strip_prefix("deb:") {
            // A shipped binary is measured alone: it has no baseline.
            a.extend(["--qemu-deb".into(), d.to_string()]);
        } else {
            match self.qemu.strip_prefix("tree:") {
                Some(p) => a.extend(["--qemu-tree".into(), p.to_string()]),
                None => a.extend(["--qemu-src".into(), self.qemu.clone()]),
            }
            a.extend(["--baseline".into(), self.baseline.clone()]);
        }
        match self.kernel.as_deref() {
            Some("debian") => a.extend(["--kernel".into(), "debian".into()]),
            Some(t) if t.starts_with("tree:") => {
                a.extend(["--kernel-tree".into(), t["tree:".len()..].to_string()])
            }
            Some(t) if t.starts_with("debian=") => a.extend(["--kernel-src".into(), t.to_string()]),
            _ => {}
        }
        a.extend(["--guest".into(), self.guest.clone()]);
        a.extend(["--controllers".into(), self.controllers.clone()]);
        a.extend(["--workload".into(), self.workload.clone()]);
        a.extend(self.extra.iter().cloned());
        a
    }
}

/// `I/N`: the I-th of N shards, 1-based.
pub fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("--shard takes I/N with 1 <= I <= N (e.g. 2/4), not {s:?}");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn config(text: &str) -> Result<Config> {
        let c: Config = toml::from_str(text)?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn cells_multiply_the_axes_and_the_probe_skips_the_kernel_axis() {
        let c = config(
            r#"qemu = ["debian=1:7.2+dfsg-7", "debian=1:10.2.2+ds-1"]
baseline = ["revert-fix"]
kernel = ["build", "debian"]
guest = ["linux", "probe"]"#,
        )
        .unwrap();
        let cells = c.cells();
        // 2 QEMUs x (2 kernels for linux + 1 probe).
        assert_eq!(cells.len(), 6, "{cells:#?}");
        let ids: BTreeSet<&str> = cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), 6);
        assert!(
            ids.contains("debian-1-10-2-2-ds-1.revert-fix.probe.ahci-virtio-blk-nvme.latency"),
            "{ids:?}"
        );
        let linux = cells
            .iter()
            .find(|c| c.guest == "linux" && c.kernel.as_deref() == Some("debian"))
            .unwrap();
        assert_eq!(
            linux.args(),
            [
                "--qemu-src",
                "debian=1:7.2+dfsg-7",
                "--baseline",
                "revert-fix",
                "--kernel",
                "debian",
                "--guest",
                "linux",
                "--controllers",
                "ahci,virtio_blk,nvme",
                "--workload",
                "latency"
            ]
        );
        // Stable: the same file plans the same ids.
        assert_eq!(c.cells(), cells);
    }

    #[test]
    fn a_shipped_binary_cell_takes_qemu_deb_and_no_baseline() {
        let c = config("qemu = [\"deb:unstable\"]\nguest = [\"probe\"]").unwrap();
        let cells = c.cells();
        assert_eq!(cells.len(), 1);
        assert_eq!(
            cells[0].id,
            "deb-unstable.auto.probe.ahci-virtio-blk-nvme.latency"
        );
        assert_eq!(
            cells[0].args(),
            [
                "--qemu-deb",
                "unstable",
                "--guest",
                "probe",
                "--controllers",
                "ahci,virtio_blk,nvme",
                "--workload",
                "latency"
            ]
        );
        assert!(config("qemu = [\"deb:\"]\nguest = [\"probe\"]").is_err());
    }

    #[test]
    fn bad_axis_values_and_shards_are_named() {
        for (text, says) in [
            (
                r#"qemu = ["debian=1"]
guest = ["windows"]"#,
                "matrix axis `guest`: value \"windows\"",
            ),
            (
                r#"qemu = ["fedora"]
guest = ["linux"]"#,
                "matrix axis `qemu`: value \"fedora\"",
            ),
            (
                r#"qemu = ["debian"]
guest = ["linux"]
baseline = ["undo"]"#,
                "matrix axis `baseline`",
            ),
            (
                r#"qemu = ["debian"]
guest = ["linux"]
controllers = ["ahci,floppy"]"#,
                "matrix axis `controllers`",
            ),
            (
                r#"qemu = []
guest = ["linux"]"#,
                "matrix axis `qemu` is empty",
            ),
        ] {
            let e = format!("{:#}", config(text).unwrap_err());
            assert!(e.contains(says), "{e}");
        }
        assert!(toml::from_str::<Config>(
            "qemu = [\"debian\"]\nguest = [\"linux\"]\nkernels = [\"x\"]"
        )
        .is_err());
        let twins =
            config("qemu = [\"tree:/src/qemu_9.2\", \"tree:/src/qemu-9.2\"]\nguest = [\"probe\"]")
                .unwrap();
        let e = format!("{:#}", twins.unique_cells().unwrap_err());
        assert!(e.contains("two cells of this matrix get the id"), "{e}");
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        for bad in ["3/2", "0/2", "1", "a/b", "1/0"] {
            assert!(parse_shard(bad).unwrap_err().contains("I/N"), "{bad}");
        }
    }
}
