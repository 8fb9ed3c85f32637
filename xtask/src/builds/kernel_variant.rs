//! Kernel variants: the guest kernel tree's work copy with each patch set
//! applied in turn and built in one build directory of its own, so every
//! variant is an incremental rebuild of the unpatched kernel there. The
//! user's tree is only read (rsync into the work copy); each image is
//! cached by the tree, the configuration and its patches' contents. The
//! uapi headers (and so the selftest built on them) are exported again
//! only for a set that touches them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use contract::Controller;

use crate::kernel::{configure, fragment_for, make, Kernel};
use crate::patch::{self, PatchSet};
use crate::{cache, ui};

fn parse_kernel_variant(s: &str) -> std::result::Result<PatchSet, String> {
    PatchSet::parse_variant_of("--kernel-variant", s).map_err(|e| format!("{e:#}"))
}

/// Patches for the guest kernel: each set is a kernel variant, measured by
/// the Linux guest against the unpatched kernel on the same QEMU.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelPatchChoice {
    /// A patch for the guest kernel tree (repeatable, applied in order): the kernel variant
    /// `kernel-patched`, measured against the unpatched kernel on each QEMU build.
    #[arg(long = "kernel-patch", value_name = "FILE",
          conflicts_with_all = ["kernel_series", "kernel_variant", "kernel"])]
    pub kernel_patch: Vec<PathBuf>,
    /// A directory with a `series` file listing kernel patches: the kernel variant `kernel-patched`.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kernel_variant", "kernel"])]
    pub kernel_series: Option<PathBuf>,
    /// NAME=PATCH[+PATCH...]: a kernel variant, an incremental rebuild of the guest kernel,
    /// measured in the same run (repeatable).
    #[arg(long = "kernel-variant", value_name = "NAME=PATCH[+PATCH...]",
          value_parser = parse_kernel_variant, conflicts_with = "kernel")]
    pub kernel_variant: Vec<PatchSet>,
}

impl KernelPatchChoice {
    /// The kernel patch sets, in order (none when no kernel patch was given).
    pub fn sets(&self) -> Result<Vec<PatchSet>> {
        Ok(patch::choose(
            &self.kernel_variant,
            self.kernel_series.as_deref(),
            &self.kernel_patch,
            "kernel-patched",
            "kernel variant",
        )?
        .unwrap_or_default())
    }
}

/// One kernel variant, built or found in the cache.
#[derive(Clone, Debug)]
pub struct KernelVariant {
    pub set: PatchSet,
    pub kernel: Kernel,
    /// Objects its incremental build compiled (none when cached).
    pub objects: Option<u64>,
    /// Whether the set changes the uapi headers: then `kernel.uapi` is its
    /// own export and the selftest is rebuilt on it.
    pub uapi_changed: bool,
}

/// Whether a patch's files include uapi headers (`include/uapi/...` or
/// `arch/ARCH/include/uapi/...`), which the selftest is built against.
pub fn touches_uapi(files: &[String]) -> bool {
    files.iter().any(|f| {
        f.starts_with("include/uapi/")
            || f.strip_prefix("arch/")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(_, rest)| rest.starts_with("include/uapi/"))
    })
}

/// Every file the set's patches touch.
fn touched(set: &PatchSet) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in &set.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        out.extend(patch::touched_files(&text));
    }
    Ok(out)
}

fn cached(out: &Path) -> Option<Kernel> {
    crate::kernel::recorded(out)
        .filter(|(_, whole)| *whole)
        .map(|(k, _)| k)
}

/// The tree mirrored into the work copy (`cache::mirror_tree`).
fn sync_tree(from: &Path, to: &Path) -> Result<()> {
    cache::mirror_tree(from, to, &["/.git"], "the kernel tree")
}

/// `make bzImage` in `build` from `src`, counting the objects compiled.
fn compile(src: &Path, build: &Path, log: &Path, what: &str) -> Result<u64> {
    let mut progress = ui::Progress::new(&format!("{what}: objects compiled"));
    let mut objects = 0u64;
    let mut c = make(src, build);
    c.arg("bzImage");
    ui::run_logged(c, log, &format!("{what} (make bzImage)"), |l| {
        if l.trim_start().starts_with("CC ") {
            objects += 1;
            progress.tick(objects, None);
        }
    })?;
    progress.finish();
    Ok(objects)
}

/// `make headers_install` of `src` (built in `build`) into `headers`,
/// through a part directory so a stopped export is never taken for one.
fn export_headers(src: &Path, build: &Path, headers: &Path, log: &Path) -> Result<()> {
    let part = headers.with_extension("part");
    let _ = std::fs::remove_dir_all(&part);
    std::fs::create_dir_all(build)?;
    let mut c = make(src, build);
    c.arg(format!("INSTALL_HDR_PATH={}", part.display()))
        .arg("headers_install");
    ui::run_logged(
        c,
        log,
        "make headers_install (the patches change the uapi)",
        |_| {},
    )?;
    let _ = std::fs::remove_dir_all(headers);
    std::fs::rename(&part, headers).context("moving the exported headers into place")?;
    Ok(())
}

/// The uapi headers (`.../include`) of `tree` with `set` applied, for a
/// selftest built outside a guest run (`kselftest-install`): exported from
/// the work copy, cached by the tree and the patches' contents.
pub fn uapi_of(tree: &Path, set: &PatchSet) -> Result<PathBuf> {
    let work = cache::dir("kernel")?.join(cache::path_key(tree));
    let _lock = cache::Lock::acquire(&work)?;
    let fingerprint = cache::tree_identity(tree, &[".git"])?;
    let headers = work.join(format!("headers-{fingerprint}-k{}", set.key()?));
    if headers.join("include/linux/io_uring.h").is_file() {
        return Ok(headers.join("include"));
    }
    let (src, log) = (work.join("src"), work.join("variants.log"));
    ui::info(&format!(
        "kernel patches: syncing {} into the work copy {}",
        tree.display(),
        src.display()
    ));
    cache::ensure_free("the kernel work copy", cache::KERNEL_SOURCE_BYTES)?;
    sync_tree(tree, &src)?;
    set.apply(&src)?;
    let exported = export_headers(&src, &work.join("hbuild"), &headers, &log);
    set.unapply(&src)?;
    exported?;
    Ok(headers.join("include"))
}

/// Builds (or finds) each set's kernel for `ctrls` from `tree`; `base_uapi`
/// is the unpatched tree's header export, which a set that leaves the uapi
/// alone shares.
pub fn build(
    tree: &Path,
    source: &str,
    ctrls: &[&Controller],
    base_uapi: &Path,
    sets: &[PatchSet],
) -> Result<Vec<KernelVariant>> {
    let (fragment, needs, trim) = fragment_for(ctrls)?;
    let frag_key = cache::key(["tinyconfig", fragment.as_str()]);
    let build_key = cache::key(["tinyconfig", needs.as_str(), trim.as_str()]);
    let work = cache::dir("kernel")?.join(cache::path_key(tree));
    let _lock = cache::Lock::acquire(&work)?;
    let fingerprint = cache::tree_identity(tree, &[".git"])?;
    let mut found = Vec::new();
    let mut synced = false;
    for set in sets {
        let key = set.key()?;
        let out = work.join(format!("out-{fingerprint}-{frag_key}-k{key}"));
        let uapi_changed = touches_uapi(&touched(set)?);
        if let Some(kernel) = cached(&out) {
            ui::info(&format!(
                "kernel variant {}: {} cached in {}",
                set.name,
                kernel.release,
                out.display()
            ));
            found.push(KernelVariant {
                set: set.clone(),
                kernel,
                objects: None,
                uapi_changed,
            });
            continue;
        }
        let src = work.join("src");
        let vbuild = work.join(format!("vbuild-{build_key}"));
        let log = work.join("variants.log");
        if !synced {
            ui::info(&format!(
                "kernel variants: syncing {} into the work copy {}",
                tree.display(),
                src.display()
            ));
            cache::ensure_free("the kernel work copy", cache::KERNEL_SOURCE_BYTES)?;
            sync_tree(tree, &src)?;
            let fresh = !vbuild.join(".config").is_file();
            std::fs::create_dir_all(&vbuild)?;
            configure(&src, &vbuild, &fragment, &log)?;
            if fresh {
                // Once per tree and configuration: the unpatched kernel in
                // this directory, so each variant compiles only its changes.
                ui::info("kernel variants: building the unpatched kernel in their build directory first (once)");
                compile(&src, &vbuild, &log, "kernel variants' base")?;
            }
            synced = true;
        }
        let start = Instant::now();
        set.apply(&src)?;
        let built = (|| -> Result<(u64, PathBuf, String)> {
            let objects = compile(&src, &vbuild, &log, &format!("kernel variant {}", set.name))?;
            let uapi = if uapi_changed {
                let headers = work.join(format!("headers-{fingerprint}-k{key}"));
                export_headers(&src, &vbuild, &headers, &log)?;
                headers.join("include")
            } else {
                base_uapi.to_path_buf()
            };
            let release = make(&src, &vbuild)
                .args(["-s", "kernelrelease"])
                .output()
                .context("make kernelrelease")?;
            Ok((
                objects,
                uapi,
                String::from_utf8_lossy(&release.stdout).trim().to_string(),
            ))
        })();
        // The work copy goes back to the tree's content whatever happened
        // (fresh mtimes: the next build compiles those files again).
        set.unapply(&src)?;
        let (objects, uapi, release) = built?;
        std::fs::create_dir_all(&out)?;
        let image = out.join("bzImage");
        std::fs::copy(vbuild.join("arch/x86/boot/bzImage"), &image)
            .context("copying the variant's bzImage")?;
        let kernel = Kernel {
            image,
            uapi: Some(uapi),
            modules: vec![],
            release,
            source: format!("{source} + kernel variant {}", set.name),
            build_s: start.elapsed().as_secs_f64(),
        };
        std::fs::write(
            out.join("kernel.json"),
            serde_json::to_string_pretty(&kernel)?,
        )?;
        ui::info(&format!(
            "built kernel variant {} in {:.0} s: {objects} objects compiled{}",
            set.name,
            kernel.build_s,
            if uapi_changed {
                "; it changes the uapi headers, so they are exported again and the selftest is rebuilt on them"
            } else {
                "; the uapi headers are unchanged, so the selftest is shared"
            }
        ));
        found.push(KernelVariant {
            set: set.clone(),
            kernel,
            objects: Some(objects),
            uapi_changed,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uapi_paths_are_recognised() {
        assert!(touches_uapi(&["include/uapi/linux/io_uring.h".into()]));
        assert!(touches_uapi(&["arch/x86/include/uapi/asm/unistd.h".into()]));
        assert!(!touches_uapi(&[
            "io_uring/io_uring.c".into(),
            "include/linux/io_uring.h".into()
        ]));
        assert!(!touches_uapi(&["arch/x86/kernel/setup.c".into()]));
    }
}
