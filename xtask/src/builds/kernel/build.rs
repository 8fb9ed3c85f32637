//! A guest kernel built from a tree, cached by the tree and its
//! configuration: configured and its uapi headers exported first (`prepare`),
//! compiled later (`Compile::run`), so the selftest and QEMU's configure can
//! go on meanwhile.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use contract::Controller;

use super::config::{configure, fragment_for};
use super::{bzimage_version, make, Kernel};
use crate::{cache, ui};

/// A guest kernel that is ready, or one configured, with its uapi headers
/// exported, whose compile is still to run: the selftest and QEMU's
/// configure can go on meanwhile.
pub enum KernelPlan {
    Ready(Kernel),
    Compile(Box<Compile>),
}

/// A configured kernel build directory, locked until the compile is done.
pub struct Compile {
    _lock: cache::Lock,
    tree: PathBuf,
    source: String,
    build: PathBuf,
    out: PathBuf,
    log: PathBuf,
    /// The exported headers' `include` directory.
    uapi: PathBuf,
    count_file: PathBuf,
    /// The build directory was empty: a full build, whose object count
    /// the next full build of this configuration can expect.
    full: bool,
    start: Instant,
}

impl KernelPlan {
    /// The exported uapi headers (`.../include`), when built from a tree.
    pub fn uapi(&self) -> Option<&Path> {
        match self {
            KernelPlan::Ready(k) => k.uapi.as_deref(),
            KernelPlan::Compile(c) => Some(&c.uapi),
        }
    }

    pub fn finish(self) -> Result<Kernel> {
        match self {
            KernelPlan::Ready(k) => Ok(k),
            KernelPlan::Compile(c) => c.run(),
        }
    }
}

/// The cached kernel of this tree, fragment and controllers, or its build
/// directory configured and the tree's headers exported (once per tree:
/// they do not depend on the configuration), for `Compile::run` to build
/// bzImage.
pub fn prepare(tree: &Path, source: &str, ctrls: &[&Controller]) -> Result<KernelPlan> {
    let (fragment, needs, trim) = fragment_for(ctrls)?;
    let frag_key = cache::key(["tinyconfig", fragment.as_str()]);
    // One build directory for every controller set: kbuild recompiles only
    // what a changed option touches, so adding a controller's drivers to a
    // built kernel compiles those drivers and links again.
    let build_key = cache::key(["tinyconfig", needs.as_str(), trim.as_str()]);
    let work = cache::dir("kernel")?.join(cache::path_key(tree));
    let lock = cache::Lock::acquire(&work)?;
    let fingerprint = cache::tree_identity(tree, &[".git"])?;
    let out = work.join(format!("out-{fingerprint}-{frag_key}"));
    match recorded(&out) {
        Some((k, true)) => {
            ui::info(&format!(
                "guest kernel {} cached in {}",
                k.release,
                out.display()
            ));
            return Ok(KernelPlan::Ready(k));
        }
        Some((k, false)) => ui::warn(&format!(
            "cached guest kernel {} is missing or damaged: rebuilding it",
            k.image.display()
        )),
        None => {}
    }
    let build = work.join(format!("build-{build_key}"));
    let full = !build.join(".config").is_file();
    if full {
        // A build directory of other needs or trims is not reused: make
        // room for this one (the kernels built in it stay in their out-*).
        for old in std::fs::read_dir(&work)?.flatten() {
            let name = old.file_name();
            if name.to_string_lossy().starts_with("build-") && old.path() != build {
                std::fs::remove_dir_all(old.path())
                    .with_context(|| format!("removing {}", old.path().display()))?;
            }
        }
        cache::ensure_free("the guest kernel build", cache::KERNEL_BUILD_BYTES)?;
    }
    std::fs::create_dir_all(&build)?;
    std::fs::create_dir_all(&out)?;
    let log = work.join("build.log");
    let _ = std::fs::remove_file(&log);
    let start = Instant::now();

    configure(tree, &build, &fragment, &log)?;

    // The uapi headers do not depend on the configuration: one export per
    // tree, so every controller set's kernel shares it, and the selftest
    // built against it (keyed by its path) too.
    let headers = work.join(format!("headers-{fingerprint}"));
    if !headers.join("include/linux/io_uring.h").is_file() {
        let part = work.join(format!("headers-{fingerprint}.part"));
        let _ = std::fs::remove_dir_all(&part);
        let mut c = make(tree, &build);
        c.arg(format!("INSTALL_HDR_PATH={}", part.display()))
            .arg("headers_install");
        ui::run_logged(c, &log, "make headers_install", |_| {})?;
        let _ = std::fs::remove_dir_all(&headers);
        std::fs::rename(&part, &headers).context("moving the exported headers into place")?;
    }
    Ok(KernelPlan::Compile(Box::new(Compile {
        _lock: lock,
        tree: tree.to_path_buf(),
        source: source.to_string(),
        build,
        out,
        log,
        uapi: headers.join("include"),
        count_file: work.join(format!("objects-{frag_key}")),
        full,
        start,
    })))
}

impl Compile {
    /// `make bzImage`, then the image and its facts into the cache.
    fn run(self) -> Result<Kernel> {
        let Compile {
            tree,
            source,
            build,
            out,
            log,
            uapi,
            count_file,
            full,
            start,
            ..
        } = &self;
        let (tree, build) = (tree.as_path(), build.as_path());
        // The previous full build of this configuration tells how many
        // objects to expect, for the estimate; a build that adds to another
        // set's compiles only what changed, which nothing tells in advance.
        let expected: Option<u64> = std::fs::read_to_string(count_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|_| *full);
        let mut progress = ui::Progress::new("kernel objects compiled");
        let mut objects = 0u64;
        let mut c = make(tree, build);
        c.arg("bzImage");
        ui::run_logged(c, log.as_path(), "kernel build (make bzImage)", |l| {
            if l.trim_start().starts_with("CC ") {
                objects += 1;
                progress.tick(objects, expected);
            }
        })?;
        progress.finish();
        // Only a full build says how many a full build compiles.
        if *full && objects > 0 {
            let _ = std::fs::write(count_file, objects.to_string());
        }
        let release_out = make(tree, build)
            .args(["-s", "kernelrelease"])
            .output()
            .context("make kernelrelease")?;
        let release = String::from_utf8_lossy(&release_out.stdout)
            .trim()
            .to_string();
        let image = out.join("bzImage");
        std::fs::copy(build.join("arch/x86/boot/bzImage"), &image).context("copying bzImage")?;
        let k = Kernel {
            image,
            uapi: Some(uapi.clone()),
            modules: vec![],
            release,
            source: source.to_string(),
            build_s: start.elapsed().as_secs_f64(),
        };
        std::fs::write(out.join("kernel.json"), serde_json::to_string_pretty(&k)?)?;
        ui::info(&format!(
            "built guest kernel {} in {:.0} s",
            k.release, k.build_s
        ));
        Ok(k)
    }
}

/// The kernel a build recorded in `out` (its `kernel.json`), and whether
/// its image is whole (an x86 boot header): a missing or damaged one is
/// rebuilt rather than booted into a confusing failure.
pub(crate) fn recorded(out: &Path) -> Option<(Kernel, bool)> {
    let k: Kernel =
        serde_json::from_str(&std::fs::read_to_string(out.join("kernel.json")).ok()?).ok()?;
    let whole = std::fs::read(&k.image)
        .ok()
        .and_then(|b| bzimage_version(&b))
        .is_some();
    Some((k, whole))
}
