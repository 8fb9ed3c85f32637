//! Building QEMU twice from one work copy: the baseline, then the baseline
//! plus `patches/` as an incremental rebuild in the same build directory.
//! Both binaries are kept, keyed by everything that went into them, so
//! reruns and rounds never rebuild.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::patch::{self, PatchSet, State};
use crate::tree::{QemuTree, AIO_POSIX};
use crate::{cache, ui};

pub const CONFIGURE_FLAGS: &[&str] = &[
    "--target-list=x86_64-softmmu",
    "--enable-linux-io-uring",
    "--enable-kvm",
    "--disable-docs",
    "--disable-tools",
    "--disable-user",
    "--disable-install-blobs",
];

/// Meson for QEMU trees that need a newer one than the system's.
const MESON_PIP: &[&str] = &["meson==1.9.0", "pycotap==1.3.1"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineMode {
    /// `as-is` for a vulnerable tree, `revert-fix` for a fixed one.
    Auto,
    /// The tree exactly as given.
    AsIs,
    /// The tree with the fix statement (and its comment) removed from aio_add_sqe().
    RevertFix,
}

impl BaselineMode {
    pub fn name(self) -> &'static str {
        match self {
            BaselineMode::Auto => "auto",
            BaselineMode::AsIs => "as-is",
            BaselineMode::RevertFix => "revert-fix",
        }
    }

    /// What `auto` means for a tree in `state`; errors for combinations that
    /// cannot give a pre-fix baseline.
    pub fn resolve(self, state: &State) -> Result<BaselineMode> {
        Ok(match (self, state) {
            (_, State::Unaffected) => {
                bail!("the tree has no aio_add_sqe(): there is nothing to patch")
            }
            (_, State::Conflict { detail }) => {
                bail!("the patch does not apply to this tree: {detail}")
            }
            (BaselineMode::Auto | BaselineMode::AsIs, State::Vulnerable) => BaselineMode::AsIs,
            (BaselineMode::RevertFix, State::Vulnerable) => {
                bail!("--baseline revert-fix needs a tree with the fix, and this one is vulnerable: use --baseline as-is (or auto)")
            }
            (BaselineMode::Auto | BaselineMode::RevertFix, State::Fixed) => BaselineMode::RevertFix,
            (BaselineMode::AsIs, State::Fixed) => {
                bail!("--baseline as-is on a tree that already has the fix would compare fixed with fixed: use --baseline revert-fix (or auto)")
            }
        })
    }
}

/// One built QEMU binary, as cached with `built.json` beside it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Binary {
    pub path: PathBuf,
    /// Seconds its build took when it was built (0 for the cached).
    pub build_s: f64,
    /// Its size when it was built: a cache entry of another size is damaged.
    #[serde(default)]
    pub bytes: u64,
}

/// The baseline and one binary per patch set, in the order asked.
#[derive(Clone, Debug)]
pub struct Built {
    pub baseline: Binary,
    pub variants: Vec<(PatchSet, Binary)>,
}

/// The binary cached in `dir`, if it is whole: a missing or truncated one
/// is rebuilt, with a warning, rather than booted into a confusing failure.
fn cached(dir: &Path) -> Option<Binary> {
    let b: Binary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("built.json")).ok()?).ok()?;
    let len = std::fs::metadata(&b.path).map(|m| m.len()).unwrap_or(0);
    if len == 0 || (b.bytes != 0 && len != b.bytes) {
        ui::warn(&format!(
            "cached QEMU binary {} is {} ({len} bytes, built as {}): rebuilding it",
            b.path.display(),
            if len == 0 {
                "missing or empty"
            } else {
                "damaged"
            },
            b.bytes
        ));
        return None;
    }
    Some(b)
}

fn keep(dir: &Path, build: &Path, build_s: f64) -> Result<Binary> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("qemu-system-x86_64");
    copy_binary(build, &path)?;
    let bytes = std::fs::metadata(&path)?.len();
    let b = Binary {
        path,
        build_s,
        bytes,
    };
    std::fs::write(dir.join("built.json"), serde_json::to_string_pretty(&b)?)?;
    Ok(b)
}

/// Builds (or finds) the baseline binary for `tree` and one binary per
/// patch set, each an incremental rebuild from the baseline's build
/// directory. The baseline is keyed by the tree, the baseline mode and the
/// configure flags; each variant also by its patches' contents.
pub fn build(tree: &QemuTree, baseline: BaselineMode, sets: &[PatchSet]) -> Result<Built> {
    let work = cache::dir("qemu")?.join(cache::path_key(&tree.root));
    let _lock = cache::Lock::acquire(&work)?;
    let flags_key = cache::key(CONFIGURE_FLAGS);
    let fingerprint = cache::tree_identity(&tree.root, &[".git", "build"])?;
    let bins = work
        .join("bin")
        .join(format!("{fingerprint}-{}-{flags_key}", baseline.name()));
    let base_dir = bins.join("baseline");
    let mut variant_dirs = Vec::new();
    for s in sets {
        variant_dirs.push(bins.join(format!("variant-{}", s.key()?)));
    }
    let base_cached = cached(&base_dir);
    let missing: Vec<usize> = (0..sets.len())
        .filter(|&i| cached(&variant_dirs[i]).is_none())
        .collect();
    if base_cached.is_some() && missing.is_empty() {
        ui::info(&format!("QEMU binaries cached in {}", bins.display()));
    } else {
        let src = work.join("src");
        let build = work.join(format!("build-{flags_key}"));
        let log = work.join("build.log");
        let _ = std::fs::remove_file(&log);
        ui::info(&format!(
            "syncing {} into the work copy {}",
            tree.root.display(),
            src.display()
        ));
        sync_tree(&tree.root, &src)?;
        if baseline == BaselineMode::RevertFix {
            let f = src.join(AIO_POSIX);
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            std::fs::write(&f, patch::revert_fix(&text)?)
                .with_context(|| format!("writing {}", f.display()))?;
            ui::info("baseline: removed the fix from aio_add_sqe() (revert-fix)");
        }
        if !build.join("build.ninja").is_file() {
            cache::ensure_free("the QEMU build", cache::QEMU_BUILD_BYTES)?;
            configure(&src, &build, &log)?;
        }
        if base_cached.is_none() {
            let t = Instant::now();
            ninja(&build, &log, "QEMU baseline")?;
            let b = keep(&base_dir, &build, t.elapsed().as_secs_f64())?;
            ui::info(&format!("built the baseline in {:.1} s", b.build_s));
        }
        for &i in &missing {
            let set = &sets[i];
            set.apply(&src)?;
            let t = Instant::now();
            ninja(&build, &log, &format!("QEMU {} (incremental)", set.name))?;
            let b = keep(&variant_dirs[i], &build, t.elapsed().as_secs_f64())?;
            ui::info(&format!("built {} in {:.1} s", set.name, b.build_s));
            set.unapply(&src)?;
        }
    }
    let baseline_bin = cached(&base_dir).context("the baseline binary went missing")?;
    let variants = sets
        .iter()
        .zip(&variant_dirs)
        .map(|(s, d)| {
            cached(d)
                .map(|b| (s.clone(), b))
                .with_context(|| format!("the {} binary went missing", s.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Built {
        baseline: baseline_bin,
        variants,
    })
}

/// Seconds ninja takes to rebuild QEMU after `util/aio-posix.c` changed: the
/// patched build's cost. Needs a work copy that `build_pair` made.
pub fn time_incremental_rebuild(tree: &QemuTree) -> Result<f64> {
    let work = cache::dir("qemu")?.join(cache::path_key(&tree.root));
    let _lock = cache::Lock::acquire(&work)?;
    let build = work.join(format!("build-{}", cache::key(CONFIGURE_FLAGS)));
    if !build.join("build.ninja").is_file() {
        bail!(
            "no QEMU build directory for {} yet: run patch-and-test or build-qemu first",
            tree.root.display()
        );
    }
    let f = work.join("src").join(AIO_POSIX);
    let now = std::fs::FileTimes::new().set_modified(std::time::SystemTime::now());
    std::fs::File::options()
        .write(true)
        .open(&f)
        .and_then(|h| h.set_times(now))
        .with_context(|| format!("touching {}", f.display()))?;
    let t = Instant::now();
    ninja(&build, &work.join("bench.log"), "QEMU incremental rebuild")?;
    Ok(t.elapsed().as_secs_f64())
}

/// Mirrors the user's tree into the work copy: only changed files are
/// copied, so ninja rebuilds only what changed. rsync gives a copied file
/// its source's mtime, which can be older than the object built from the
/// variant that was there before: every file it changes is touched, so
/// ninja never keeps an object of other sources. `--checksum`, because the
/// work copy's patched files carry fresh mtimes, and a same-size edit of
/// the user's in the same second would pass rsync's size-and-mtime check
/// (0.8 s instead of 0.4 s on a synced QEMU tree, and only when building).
fn sync_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let sh = Shell::new()?;
    let (from_s, to_s) = (format!("{}/", from.display()), format!("{}/", to.display()));
    let changed = cmd!(
        sh,
        "rsync -a --delete --checksum --itemize-changes --exclude=/.git --exclude=/build {from_s} {to_s}"
    )
    .quiet()
    .read()
    .context("rsync of the QEMU tree into the work copy (is rsync installed? `cargo xtask deps --install`)")?;
    let now = std::fs::FileTimes::new().set_modified(std::time::SystemTime::now());
    for rel in rsync_changed_files(&changed) {
        let f = to.join(rel);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_times(now))
            .with_context(|| format!("touching {}", f.display()))?;
    }
    Ok(())
}

/// Regular files rsync's `--itemize-changes` says it wrote (`>f...`).
pub fn rsync_changed_files(itemized: &str) -> Vec<&str> {
    itemized
        .lines()
        .filter(|l| l.starts_with(">f"))
        .filter_map(|l| l.split_once(' ').map(|(_, p)| p))
        .collect()
}

/// `meson_version: '>=1.5.0'` from the tree's meson.build.
pub fn required_meson(meson_build: &str) -> Option<(u32, u32)> {
    let at = meson_build.find("meson_version")?;
    let rest = &meson_build[at..];
    let ver = rest
        .split(['\'', '"'])
        .nth(1)?
        .trim_start_matches(">=")
        .trim();
    let mut it = ver.split('.').map(|x| x.parse::<u32>().ok());
    Some((it.next()??, it.next().flatten().unwrap_or(0)))
}

fn system_meson() -> Option<(u32, u32)> {
    let out = Command::new("python3")
        .args(["-c", "import mesonbuild.coredata as c; print(c.version)"])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout);
    let mut it = v.trim().split('.').map(|x| x.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// The python QEMU's configure should use: the system's when its meson is
/// new enough, else a private venv with meson from PyPI.
fn python_for(src: &Path) -> Result<PathBuf> {
    let Some(need) = std::fs::read_to_string(src.join("meson.build"))
        .ok()
        .and_then(|t| required_meson(&t))
    else {
        // No stated requirement: configure brings its own checks.
        return Ok(PathBuf::from("python3"));
    };
    if system_meson().is_some_and(|have| have >= need) {
        return Ok(PathBuf::from("python3"));
    }
    let venv = cache::dir("venv")?.join(format!("meson-{}", cache::key(MESON_PIP)));
    let py = venv.join("bin/python3");
    if py.is_file() && cache::is_filled(&venv) {
        return Ok(py);
    }
    ui::info(&format!(
        "no system meson >= {}.{}: installing {} into {}",
        need.0,
        need.1,
        MESON_PIP.join(" "),
        venv.display()
    ));
    cache::refill(&venv, |venv| {
        let sh = Shell::new()?;
        cmd!(sh, "python3 -m venv {venv}")
            .quiet()
            .run()
            .context("python3 -m venv (install python3-venv)")?;
        cmd!(sh, "{py} -m pip install --quiet {MESON_PIP...}")
            .quiet()
            .run()
            .context("pip install meson into the private venv")?;
        Ok(())
    })?;
    Ok(py)
}

fn configure(src: &Path, build: &Path, log: &Path) -> Result<()> {
    let python = python_for(src)?;
    std::fs::create_dir_all(build)?;
    ui::info(&format!("configuring QEMU in {}", build.display()));
    let mut c = Command::new(src.join("configure"));
    c.arg(format!("--python={}", python.display()))
        .args(CONFIGURE_FLAGS)
        .current_dir(build);
    let r = ui::run_logged(c, log, "QEMU configure", |_| {});
    if r.is_err() {
        // A half-configured directory must not look configured next time.
        let _ = std::fs::remove_file(build.join("build.ninja"));
    }
    r.map(|_| ())
}

fn ninja(build: &Path, log: &Path, what: &str) -> Result<Duration> {
    let mut progress = ui::Progress::new(what);
    let mut c = Command::new("ninja");
    c.arg("-C").arg(build).arg("qemu-system-x86_64");
    let r = ui::run_logged(c, log, what, |l| {
        if let Some((n, m)) = ui::ninja_progress(l) {
            progress.update(n, m);
        }
    });
    progress.finish();
    r
}

/// The device types `-device help` lists: lines like
/// `name "lsi53c895a", bus PCI, alias "lsi"`.
pub fn parse_device_help(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("name \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// What a prebuilt QEMU binary is, checked before it is measured.
pub fn probe(binary: &Path) -> Result<String> {
    let run = |args: &[&str]| -> Result<(bool, String)> {
        let out = Command::new(binary)
            .args(args)
            .output()
            .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    };
    let (ok, text) = run(&["--version"])?;
    let version = text
        .lines()
        .find_map(|l| l.split("QEMU emulator version ").nth(1))
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_string());
    let Some(version) = version.filter(|_| ok) else {
        bail!(
            "{} is not a QEMU system emulator: `--version` said {:?}; pass a qemu-system-x86_64 binary",
            binary.display(),
            text.lines().next().unwrap_or("nothing")
        );
    };
    let (_, machines) = run(&["-machine", "help"])?;
    if !machines
        .lines()
        .any(|l| l.split_whitespace().next() == Some("q35"))
    {
        bail!(
            "{} (QEMU {version}) has no q35 machine: pass a qemu-system-x86_64 built with it",
            binary.display()
        );
    }
    if !device_types(binary)?.contains("isa-debug-exit") {
        bail!(
            "{} (QEMU {version}) has no isa-debug-exit device, which carries the guest's verdict",
            binary.display()
        );
    }
    // aio=io_uring on a real file: a build without liburing refuses it at
    // once; one with it starts (paused) and is stopped here.
    let mut c = Command::new(binary);
    c.args([
        "-machine",
        "none",
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-S",
        "-drive",
        "file=/dev/null,if=none,format=raw,readonly=on,aio=io_uring",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    crate::children::prepare(&mut c);
    let mut child = c.spawn().context("starting QEMU to check aio=io_uring")?;
    let _registered = crate::children::register(child.id());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            if !status.success() {
                bail!(
                    "{} (QEMU {version}) refuses aio=io_uring: {}; it needs a build with liburing (--enable-linux-io-uring)",
                    binary.display(),
                    err.trim()
                );
            }
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(version)
}

/// The device types a QEMU binary offers.
pub fn device_types(binary: &Path) -> Result<std::collections::BTreeSet<String>> {
    let out = Command::new(binary)
        .args(["-machine", "none", "-device", "help"])
        .output()
        .with_context(|| format!("running {} -device help", binary.display()))?;
    if !out.status.success() {
        bail!(
            "{} -device help failed ({}): {}",
            binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_device_help(&String::from_utf8_lossy(&out.stdout)))
}

fn copy_binary(build: &Path, to: &Path) -> Result<()> {
    let from = build.join("qemu-system-x86_64");
    std::fs::copy(&from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_itemized_output_names_the_written_files() {
        let out = ">f.st...... util/aio-posix.c\n.d..t...... util/\n>f+++++++++ hw/new.c\n*deleting   old.c\ncd+++++++++ dir/\n";
        assert_eq!(rsync_changed_files(out), ["util/aio-posix.c", "hw/new.c"]);
    }

    #[test]
    fn device_help_is_read_by_name() {
        let t = "Storage devices:\nname \"lsi53c895a\", bus PCI, alias \"lsi\"\nname \"scsi-hd\", bus SCSI, desc \"virtual SCSI disk\"\n\nUSB devices:\nname \"qemu-xhci\", bus PCI\n";
        let d = parse_device_help(t);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            ["lsi53c895a", "qemu-xhci", "scsi-hd"]
        );
    }

    #[test]
    fn meson_requirement_is_read_from_meson_build() {
        let mb = "project('qemu', ['c'], meson_version: '>=1.5.0',\n  default_options: [])";
        assert_eq!(required_meson(mb), Some((1, 5)));
        assert_eq!(required_meson("project('x')"), None);
    }

    #[test]
    fn baseline_resolution() {
        use BaselineMode::*;
        assert_eq!(Auto.resolve(&State::Vulnerable).unwrap(), AsIs);
        assert_eq!(Auto.resolve(&State::Fixed).unwrap(), RevertFix);
        assert_eq!(RevertFix.resolve(&State::Fixed).unwrap(), RevertFix);
        assert!(format!("{:#}", AsIs.resolve(&State::Fixed).unwrap_err())
            .contains("use --baseline revert-fix"));
        assert!(
            format!("{:#}", RevertFix.resolve(&State::Vulnerable).unwrap_err())
                .contains("use --baseline as-is")
        );
        assert!(Auto.resolve(&State::Unaffected).is_err());
        assert!(Auto
            .resolve(&State::Conflict {
                detail: "hunk".into()
            })
            .unwrap_err()
            .to_string()
            .contains("hunk"));
    }
}
