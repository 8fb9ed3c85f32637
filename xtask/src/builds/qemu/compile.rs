//! The builds: which binaries are cached, the work copy synced and
//! configured (`prepare`, single-threaded), then ninja for the baseline and
//! each patch set as an incremental rebuild (`Prepared::compile`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::configure::{build_dir_key, configure, flags_key, sync_tree, write_devices_mak};
use super::{BaselineMode, Binary, Built};
use crate::patch::{self, PatchSet};
use crate::tree::{QemuTree, AIO_POSIX};
use crate::{cache, ui};

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

/// What `prepare` left for `compile`: the cached binaries' places and,
/// when any is missing, a configured build directory.
pub struct Prepared {
    /// Held until the compile when there is one; none when all is cached,
    /// so another run's build of this tree need not wait for our kernel.
    _lock: Option<cache::Lock>,
    base_dir: PathBuf,
    variant_dirs: Vec<PathBuf>,
    sets: Vec<PatchSet>,
    todo: Option<Todo>,
}

struct Todo {
    src: PathBuf,
    build: PathBuf,
    log: PathBuf,
    baseline: bool,
    missing: Vec<usize>,
}

/// The single-threaded half of a build: the work copy synced, the
/// baseline's source in place, configure run. Cheap next to the compile,
/// so a caller can run it while something else keeps the cores busy.
pub fn prepare(tree: &QemuTree, baseline: BaselineMode, sets: &[PatchSet]) -> Result<Prepared> {
    let work = cache::dir("qemu")?.join(cache::path_key(&tree.root));
    let lock = cache::Lock::acquire(&work)?;
    let flags_key = flags_key();
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
    let mut todo = None;
    if base_cached.is_some() && missing.is_empty() {
        ui::info(&format!("QEMU binaries cached in {}", bins.display()));
    } else {
        let src = work.join("src");
        let build = work.join(format!("build-{}", build_dir_key()));
        let log = work.join("build.log");
        let _ = std::fs::remove_file(&log);
        ui::info(&format!(
            "syncing {} into the work copy {}",
            tree.root.display(),
            src.display()
        ));
        sync_tree(&tree.root, &src)?;
        write_devices_mak(&src)?;
        if baseline == BaselineMode::RevertFix {
            let f = src.join(AIO_POSIX);
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            std::fs::write(&f, patch::revert_fix(&text)?)
                .with_context(|| format!("writing {}", f.display()))?;
            ui::info("baseline: removed the fix from aio_add_sqe() (revert-fix)");
        }
        if !build.join("build.ninja").is_file() {
            remove_other_build_dirs(&work, &build);
            cache::ensure_free("the QEMU build", cache::QEMU_BUILD_BYTES)?;
            configure(&src, &build, &log)?;
        }
        todo = Some(Todo {
            src,
            build,
            log,
            baseline: base_cached.is_none(),
            missing,
        });
    }
    Ok(Prepared {
        _lock: todo.is_some().then_some(lock),
        base_dir,
        variant_dirs,
        sets: sets.to_vec(),
        todo,
    })
}

impl Prepared {
    /// The compile: the baseline if it is missing, then each missing
    /// variant as an incremental rebuild.
    pub fn compile(self) -> Result<Built> {
        let (base_dir, variant_dirs, sets) = (&self.base_dir, &self.variant_dirs, &self.sets);
        if let Some(Todo {
            src,
            build,
            log,
            baseline,
            missing,
        }) = &self.todo
        {
            if *baseline {
                let t = Instant::now();
                ninja(build, log, "QEMU baseline")?;
                let b = keep(base_dir, build, t.elapsed().as_secs_f64())?;
                ui::info(&format!("built the baseline in {:.1} s", b.build_s));
            }
            for &i in missing {
                let set = &sets[i];
                set.apply(src)?;
                let t = Instant::now();
                ninja(build, log, &format!("QEMU {} (incremental)", set.name))?;
                let b = keep(&variant_dirs[i], build, t.elapsed().as_secs_f64())?;
                ui::info(&format!("built {} in {:.1} s", set.name, b.build_s));
                set.unapply(src)?;
            }
        }
        let baseline_bin = cached(base_dir).context("the baseline binary went missing")?;
        let variants = sets
            .iter()
            .zip(variant_dirs)
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
}

/// Build directories of other configure flags (an earlier uring-idle): one
/// is 200-330 MB and nothing builds in it again.
fn remove_other_build_dirs(work: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p != keep && p.is_dir() && name.to_string_lossy().starts_with("build-") {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// Seconds ninja takes to rebuild QEMU after `util/aio-posix.c` changed: the
/// patched build's cost. Needs a work copy that `build_pair` made.
pub fn time_incremental_rebuild(tree: &QemuTree) -> Result<f64> {
    let _building = cache::MeasureLock::builds()?;
    let work = cache::dir("qemu")?.join(cache::path_key(&tree.root));
    let _lock = cache::Lock::acquire(&work)?;
    let build = work.join(format!("build-{}", build_dir_key()));
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

fn copy_binary(build: &Path, to: &Path) -> Result<()> {
    let from = build.join("qemu-system-x86_64");
    std::fs::copy(&from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}
