//! The guest kernel: built from a kernel tree (tinyconfig plus
//! `kselftest/config`, every option verified after olddefconfig), or a
//! prebuilt image with its modules. Also exports the tree's uapi headers so
//! the selftest is built against the kernel it runs on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use contract::Controller;

use crate::fetch::{Apt, DEFAULT_KERNEL_PACKAGE};
use crate::{cache, ui};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelSource {
    /// A Linux source tree to build the guest kernel from (default: Debian's linux-source-6.1). Never modified.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kernel", "kernel_src"])]
    pub kernel_tree: Option<PathBuf>,
    /// Debian's kernel source of another series, fetched from any suite the archive has:
    /// `debian=6.12` (linux-source-6.12, its newest version) or `debian=6.12.117-1`.
    #[arg(long, value_name = "debian=SERIES|VERSION", conflicts_with = "kernel", value_parser = parse_kernel_src)]
    pub kernel_src: Option<KernelSrc>,
    /// A prebuilt kernel image (bzImage) instead of building one, or `debian` for Debian's
    /// linux-image-amd64 with its modules, fetched into the cache.
    #[arg(long, value_name = "IMAGE|debian")]
    pub kernel: Option<PathBuf>,
    /// With --kernel: its modules directory (/lib/modules/RELEASE); the drivers the guest needs are packed into the initramfs.
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules: Option<PathBuf>,
}

/// A Debian kernel source: the `linux-source-SERIES` package, at a version
/// or at the lists' candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSrc {
    pub package: String,
    pub version: Option<String>,
}

/// `debian=6.12` or `debian=6.12.117-1`.
pub fn parse_kernel_src(s: &str) -> std::result::Result<KernelSrc, String> {
    let bad = || {
        format!("--kernel-src takes debian=SERIES or debian=VERSION (e.g. debian=6.12 or debian=6.12.117-1), not {s:?}")
    };
    let v = s.strip_prefix("debian=").ok_or_else(bad)?.trim();
    let parts: Vec<&str> = v.split(['.', '-']).collect();
    if parts.len() < 2
        || !parts[..2]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    let series = format!("{}.{}", parts[0], parts[1]);
    Ok(KernelSrc {
        package: format!("linux-source-{series}"),
        version: (v != series).then(|| v.to_string()),
    })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Kernel {
    pub image: PathBuf,
    /// Exported uapi headers (`.../include`), when built from a tree.
    pub uapi: Option<PathBuf>,
    /// Modules to pack, in load order, when the kernel is modular.
    #[serde(default)]
    pub modules: Vec<PathBuf>,
    pub release: String,
    /// Where it came from, for the report.
    pub source: String,
    pub build_s: f64,
}

/// The options the guest needs, from the selftest's `config` file.
pub fn fragment_path() -> PathBuf {
    crate::workspace().join("kselftest/config")
}

/// The options the guest kernel leaves out for speed (see the file).
pub fn trim_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-kernel.config")
}

/// The options a guest kernel built for `ctrls` gets: the lines of
/// `needs` (kselftest/config, which lists every controller's options too)
/// that belong to no controller, then the options of the default
/// controllers and of `ctrls`, in table order, each once. Another
/// controller's drivers are compiled only when a run asks for it (every
/// row's drivers and ACPI: 1007 objects; the defaults' alone: 699), and a
/// subset of the defaults shares the default kernel.
pub fn needs_for(needs: &str, ctrls: &[&Controller]) -> String {
    let per_controller: std::collections::HashSet<&str> = contract::CONTROLLERS
        .iter()
        .flat_map(|c| c.kconfig.iter().copied())
        .collect();
    let mut out: String = needs
        .lines()
        .filter(|l| !per_controller.contains(l.trim()))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut added = Vec::new();
    let wanted = |c: &Controller| {
        contract::controllers::DEFAULT.contains(&c.name) || ctrls.iter().any(|w| w.name == c.name)
    };
    for c in contract::CONTROLLERS.iter().filter(|c| wanted(c)) {
        out.push_str(&format!("# {}\n", c.name));
        for opt in c.kconfig {
            if !added.contains(opt) {
                added.push(*opt);
                out.push_str(&format!("{opt}\n"));
            }
        }
    }
    out
}

/// Lines of a fragment that olddefconfig did not keep: a `CONFIG_X=y` that is
/// not in the `.config`, or a `# CONFIG_X is not set` that something turned
/// back on (a `select`).
pub fn missing_options(fragment: &str, dotconfig: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = dotconfig.lines().map(str::trim).collect();
    // The options set to anything (`CONFIG_X=y`, `=m`, `="..."`).
    let set: std::collections::HashSet<&str> = have
        .iter()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .collect();
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| match unset_option(l) {
            Some(name) => set.contains(name),
            None => l.starts_with("CONFIG_") && !have.contains(l),
        })
        .map(str::to_string)
        .collect()
}

/// `CONFIG_X` of a `# CONFIG_X is not set` line.
fn unset_option(line: &str) -> Option<&str> {
    line.strip_prefix("# ")?
        .strip_suffix(" is not set")
        .filter(|name| name.starts_with("CONFIG_"))
}

pub fn check_tree(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        bail!(
            "kernel tree {} is not a directory; pass --kernel-tree DIR with a Linux source tree",
            path.display()
        );
    }
    let root = path.canonicalize()?;
    if !(root.join("Kconfig").is_file()
        && root.join("Makefile").is_file()
        && root.join("arch/x86").is_dir()
        && root.join("kernel").is_dir())
    {
        let hint = if root.join("VERSION").is_file() && root.join("util/aio-posix.c").is_file() {
            " (it looks like a QEMU tree: pass that with --qemu-tree)"
        } else {
            ""
        };
        bail!("{} is not a Linux source tree with arch/x86: expected Kconfig, Makefile, kernel/ and arch/x86/{hint}", root.display());
    }
    Ok(root)
}

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

/// Where the guest kernel comes from, fetched: a prebuilt one with the
/// modules it needs, or a source tree still to configure.
pub enum KernelInput {
    Prebuilt(Kernel),
    Tree {
        tree: PathBuf,
        source: String,
        /// Controllers whose drivers it must have.
        ctrls: Vec<&'static Controller>,
    },
}

impl KernelInput {
    /// A source tree configured, its headers exported; a prebuilt kernel
    /// as it is.
    pub fn plan(self) -> Result<KernelPlan> {
        match self {
            KernelInput::Prebuilt(k) => Ok(KernelPlan::Ready(k)),
            KernelInput::Tree {
                tree,
                source,
                ctrls,
            } => prepare(&tree, &source, &ctrls),
        }
    }
}

impl KernelSource {
    /// Fetches (or checks) what the guest kernel comes from; a prebuilt
    /// one gets the modules `ctrls` need. Downloads and unpacking only,
    /// so it can run beside QEMU's source fetch.
    pub fn fetch(&self, ctrls: &[&'static Controller]) -> Result<KernelInput> {
        if let Some(image) = &self.kernel {
            if image.as_os_str() == "debian" && !image.exists() {
                if self.modules.is_some() {
                    bail!("--kernel debian brings its own modules: drop --modules");
                }
                let (image, modules) = debian_image()?;
                return prebuilt(&image, Some(&modules), ctrls).map(KernelInput::Prebuilt);
            }
            return prebuilt(image, self.modules.as_deref(), ctrls).map(KernelInput::Prebuilt);
        }
        let (tree, source) = match &self.kernel_tree {
            Some(t) => {
                let root = check_tree(t)?;
                let s = format!("tree {}", root.display());
                (root, s)
            }
            None => match &self.kernel_src {
                Some(k) => debian_tree(&k.package, k.version.as_deref())?,
                None => debian_tree(DEFAULT_KERNEL_PACKAGE, None)?,
            },
        };
        Ok(KernelInput::Tree {
            tree,
            source,
            ctrls: ctrls.to_vec(),
        })
    }
}

/// A Linux tree already unpacked in the cache (Debian's linux-source) that
/// holds `rel`, without asking apt: for tools taken from the kernel's own
/// tree (kunit.py, run_kselftest.sh).
pub fn cached_tree_with(rel: &str) -> Option<PathBuf> {
    let sources = cache::root().ok()?.join("sources");
    std::fs::read_dir(sources)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("linux-source-"))
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .find(|p| p.join(rel).is_file())
}

/// A Debian kernel source package (`linux-source-X.Y`, at `version` or
/// its candidate), fetched and unpacked into the cache.
fn debian_tree(package: &str, version: Option<&str>) -> Result<(PathBuf, String)> {
    ui::stage(&format!("kernel source: Debian {package}"));
    let apt = Apt::new()?;
    apt.update()?;
    let version = match version {
        Some(v) => v.to_string(),
        None => apt.binary_version(package)?,
    };
    let base = cache::dir("sources")?.join(format!("{package}_{version}"));
    let tree = base.join(package);
    let source = format!("Debian {package} {version}");
    if cache::is_filled(&base) {
        return Ok((tree, source));
    }
    cache::ensure_free("the kernel source", cache::KERNEL_SOURCE_BYTES)?;
    cache::refill(&base, |base| {
        ui::info(&format!("downloading {package} {version}"));
        let deb = apt.download_deb_at(package, &version)?;
        let log = base.join("unpack.log");
        let mut c = Command::new("dpkg-deb");
        c.arg("-x").arg(&deb).arg(base.join("deb"));
        ui::run_logged(c, &log, "dpkg-deb -x", |_| {})?;
        let tarball = base.join(format!("deb/usr/src/{package}.tar.xz"));
        ui::info("unpacking the kernel source");
        let mut c = Command::new("tar");
        c.arg("-xf").arg(&tarball).arg("-C").arg(base);
        ui::run_logged(c, &log, "tar -x of the kernel source", |_| {})?;
        let _ = std::fs::remove_dir_all(base.join("deb"));
        let _ = std::fs::remove_file(&deb);
        check_tree(&tree).map(|_| ())
    })?;
    Ok((tree, source))
}

/// Debian's current prebuilt kernel (the package `linux-image-amd64` points
/// at) unpacked into the cache, with modules.dep made by depmod (the .deb
/// ships none: its postinst makes it). Returns the image and modules dir.
fn debian_image() -> Result<(PathBuf, PathBuf)> {
    ui::stage("guest kernel: Debian's prebuilt linux-image-amd64");
    let apt = Apt::new()?;
    apt.update()?;
    let pkg = apt.image_package("linux-image-amd64")?;
    let base = cache::dir("sources")?.join(&pkg);
    let root = base.join("root");
    let release = pkg.trim_start_matches("linux-image-").to_string();
    let (image, modules) = (
        root.join(format!("boot/vmlinuz-{release}")),
        root.join(format!("lib/modules/{release}")),
    );
    if cache::is_filled(&base) {
        return Ok((image, modules));
    }
    cache::refill(&base, |base| {
        ui::info(&format!("downloading {pkg}"));
        let deb = apt.download_deb(&pkg)?;
        let log = base.join("unpack.log");
        let mut c = Command::new("dpkg-deb");
        c.arg("-x").arg(&deb).arg(&root);
        ui::run_logged(c, &log, "dpkg-deb -x", |_| {})?;
        let _ = std::fs::remove_file(&deb);
        let mut c = Command::new("depmod");
        c.arg("-b").arg(&root).arg(&release);
        ui::run_logged(c, &log, "depmod (install kmod)", |_| {})?;
        if !image.is_file() || !modules.join("modules.dep").is_file() {
            bail!(
                "{pkg} did not unpack to {} and {}",
                image.display(),
                modules.display()
            );
        }
        Ok(())
    })?;
    Ok((image, modules))
}

/// `make` in the build directory, one job per core: the configuration
/// steps too (headers_install 12.3 s with one job, 6.8 s with two, measured
/// on linux-source-6.1, and it is on the cold path before the compile).
pub(crate) fn make(tree: &Path, build: &Path) -> Command {
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(tree)
        .arg(format!("O={}", build.display()))
        .arg(format!("-j{jobs}"));
    c
}

/// The configuration a guest kernel for `ctrls` gets: the needs (for
/// those controllers), then the trims; and the files they came from.
pub(crate) fn fragment_for(ctrls: &[&Controller]) -> Result<(String, String, String)> {
    let fragment_file = fragment_path();
    let needs = std::fs::read_to_string(&fragment_file)
        .with_context(|| format!("reading {}", fragment_file.display()))?;
    let trim_file = trim_path();
    let trim = std::fs::read_to_string(&trim_file)
        .with_context(|| format!("reading {}", trim_file.display()))?;
    // Needs first, then the trims: a trim never switches off a need, and
    // `configure` would name it if one did.
    let fragment = format!("{}\n{trim}", needs_for(&needs, ctrls));
    Ok((fragment, needs, trim))
}

/// tinyconfig plus `fragment` in `build`, then olddefconfig, checking that
/// every line of the fragment held.
pub(crate) fn configure(tree: &Path, build: &Path, fragment: &str, log: &Path) -> Result<()> {
    let (fragment_file, trim_file) = (fragment_path(), trim_path());
    ui::info(&format!(
        "configuring: tinyconfig + {} + {}",
        fragment_file.display(),
        trim_file.display()
    ));
    let mut c = make(tree, build);
    c.arg("tinyconfig");
    ui::run_logged(c, log, "make tinyconfig", |_| {})?;
    let dotconfig = build.join(".config");
    let mut cfg =
        std::fs::read_to_string(&dotconfig).context("reading .config after tinyconfig")?;
    cfg.push_str(fragment);
    std::fs::write(&dotconfig, cfg)?;
    let mut c = make(tree, build);
    c.arg("olddefconfig");
    ui::run_logged(c, log, "make olddefconfig", |_| {})?;
    let final_cfg = std::fs::read_to_string(&dotconfig)?;
    let missing = missing_options(fragment, &final_cfg);
    if !missing.is_empty() {
        bail!(
            "olddefconfig did not keep these lines (unmet dependencies, a select, or this kernel lacks them):\n  {}\nsee {}, {} and {}",
            missing.join("\n  "),
            fragment_file.display(),
            trim_file.display(),
            dotconfig.display()
        );
    }
    Ok(())
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

/// The version string a bzImage carries (boot protocol: a pointer at 0x20e,
/// relative to 0x200), e.g. `6.1.0-42-amd64 (debian-kernel@...) #1 SMP ...`.
pub fn bzimage_version(image: &[u8]) -> Option<String> {
    if image.len() < 0x210 || &image[0x202..0x206] != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([image[0x20e], image[0x20f]]) as usize + 0x200;
    let end = image.get(ptr..)?.iter().position(|&b| b == 0)? + ptr;
    Some(String::from_utf8_lossy(&image[ptr..end]).into_owned())
}

/// Modules the disks of `ctrls` need, by module name, each once, in table
/// order.
pub fn guest_modules(ctrls: &[&Controller]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for m in ctrls.iter().flat_map(|c| c.modules) {
        if !v.contains(m) {
            v.push(m);
        }
    }
    v
}

/// Load order for `wanted` from a modules.dep: each module's dependencies
/// (deepest first) before it, each once. Paths are relative to the dir.
pub fn module_order(modules_dep: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let mut deps = std::collections::HashMap::new();
    let name_of = |path: &str| -> String {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    for line in modules_dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            name_of(module),
            (
                module.to_string(),
                rest.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
        );
    }
    let mut order: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for w in wanted {
        let Some((path, its_deps)) = deps.get(&w.replace('-', "_")) else {
            missing.push(*w);
            continue;
        };
        // modules.dep lists dependencies so that loading them last-to-first works.
        for d in its_deps.iter().rev().chain(std::iter::once(path)) {
            if !order.contains(d) {
                order.push(d.clone());
            }
        }
    }
    if !missing.is_empty() {
        // Not in modules.dep means built in (or absent): only an error when
        // the image does not have them built in, which the guest reports.
        ui::info(&format!(
            "not modules in this kernel (built in?): {}",
            missing.join(", ")
        ));
    }
    Ok(order)
}

fn prebuilt(image: &Path, modules: Option<&Path>, ctrls: &[&Controller]) -> Result<Kernel> {
    let bytes = std::fs::read(image)
        .with_context(|| format!("reading kernel image {}", image.display()))?;
    let version = bzimage_version(&bytes).with_context(|| {
        format!(
            "{} is not an x86 bzImage (no HdrS boot header); pass a kernel image built for x86_64",
            image.display()
        )
    })?;
    let release = version
        .split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_string();
    let mut list = Vec::new();
    if let Some(dir) = modules {
        let dep = dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep).with_context(|| {
            format!("{} has no modules.dep: pass the kernel's /lib/modules/RELEASE directory (run depmod there first)", dir.display())
        })?;
        if dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy() != release)
        {
            ui::warn(&format!(
                "modules directory {} does not match the image's release {release}",
                dir.display()
            ));
        }
        list = module_order(&text, &guest_modules(ctrls))?
            .into_iter()
            .map(|rel| dir.join(rel))
            .collect();
    }
    Ok(Kernel {
        image: image.canonicalize()?,
        uapi: None,
        modules: list,
        release,
        source: format!("image {}", image.display()),
        build_s: 0.0,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn kernel_src_names_a_series_or_a_version() {
        assert_eq!(
            super::parse_kernel_src("debian=6.12"),
            Ok(super::KernelSrc {
                package: "linux-source-6.12".into(),
                version: None
            })
        );
        assert_eq!(
            super::parse_kernel_src("debian=6.12.117-1"),
            Ok(super::KernelSrc {
                package: "linux-source-6.12".into(),
                version: Some("6.12.117-1".into())
            })
        );
        for bad in ["6.12", "debian=", "debian=six", "fedora=6.12", "debian=6"] {
            assert!(
                super::parse_kernel_src(bad)
                    .unwrap_err()
                    .contains("debian=SERIES"),
                "{bad}"
            );
        }
    }

    use super::*;
    use contract::CONTROLLERS;

    #[test]
    fn dropped_options_are_named() {
        let frag = "# c\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n";
        assert_eq!(
            missing_options(frag, "CONFIG_A=y\n# CONFIG_B is not set\n"),
            ["CONFIG_B=y"]
        );
        assert!(missing_options(frag, "CONFIG_A=y\nCONFIG_B=y\n").is_empty());
        // A switched-off option that a select turned back on is named too;
        // absent or "is not set" both count as off.
        assert_eq!(
            missing_options(frag, "CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=m\n"),
            ["# CONFIG_C is not set"]
        );
        assert!(
            missing_options(frag, "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n").is_empty()
        );
    }

    #[test]
    fn trims_never_switch_off_a_need() {
        let needs = std::fs::read_to_string(fragment_path()).unwrap();
        let trim = std::fs::read_to_string(trim_path()).unwrap();
        for name in trim.lines().filter_map(unset_option) {
            assert!(!needs.contains(&format!("{name}=")), "{name} is needed");
        }
    }

    #[test]
    fn the_fragment_asks_for_what_the_guest_needs() {
        let f = std::fs::read_to_string(fragment_path()).unwrap();
        let table = CONTROLLERS.iter().flat_map(|c| c.kconfig.iter().copied());
        for opt in table.chain(["CONFIG_IO_URING=y", "CONFIG_HZ_100=y", "CONFIG_DEVTMPFS=y"]) {
            assert!(f.lines().any(|l| l == opt), "kselftest/config lacks {opt}");
        }
    }

    fn by_names(names: &[&str]) -> Vec<&'static Controller> {
        names
            .iter()
            .map(|n| contract::controllers::by_name(n).unwrap())
            .collect()
    }

    #[test]
    fn a_kernel_gets_the_drivers_of_its_controllers_and_the_defaults() {
        let needs = std::fs::read_to_string(fragment_path()).unwrap();
        let has = |f: &str, opt: &str| f.lines().any(|l| l == opt);
        let default = needs_for(&needs, &by_names(&["ahci", "virtio_blk", "nvme"]));
        for opt in [
            "CONFIG_IO_URING=y",
            "CONFIG_SATA_AHCI=y",
            "CONFIG_VIRTIO_BLK=y",
            "CONFIG_BLK_DEV_NVME=y",
        ] {
            assert!(has(&default, opt), "{opt}\n{default}");
        }
        // ACPI only with the two rows whose legacy interrupts need it.
        for opt in [
            "CONFIG_USB=y",
            "CONFIG_MMC_SDHCI=y",
            "CONFIG_MEGARAID_SAS=y",
            "CONFIG_ATA_PIIX=y",
            "CONFIG_ACPI=y",
        ] {
            assert!(!has(&default, opt), "{opt}\n{default}");
        }
        // A subset of the defaults shares the default kernel; order and
        // repeats do not matter.
        assert_eq!(needs_for(&needs, &by_names(&["nvme", "ahci"])), default);
        assert_eq!(needs_for(&needs, &[]), default);
        let more = needs_for(&needs, &by_names(&["usb_storage", "megasas", "nvme"]));
        assert_eq!(
            more,
            needs_for(&needs, &by_names(&["megasas", "usb_storage"]))
        );
        for opt in [
            "CONFIG_USB_STORAGE=y",
            "CONFIG_MEGARAID_SAS=y",
            "CONFIG_SATA_AHCI=y",
        ] {
            assert!(has(&more, opt), "{opt}\n{more}");
        }
        assert!(!has(&more, "CONFIG_MMC=y") && !has(&more, "CONFIG_ACPI=y"));
        assert!(has(
            &needs_for(&needs, &by_names(&["sdhci"])),
            "CONFIG_ACPI=y"
        ));
        // Every option once, whichever rows share it.
        let all = needs_for(&needs, &CONTROLLERS.iter().collect::<Vec<_>>());
        for opt in CONTROLLERS.iter().flat_map(|c| c.kconfig) {
            assert_eq!(all.lines().filter(|l| l == opt).count(), 1, "{opt}");
        }
    }

    #[test]
    fn modules_come_from_the_table_once_each() {
        let ctrls: Vec<&Controller> = ["ahci", "virtio_blk", "nvme"]
            .iter()
            .map(|n| contract::controllers::by_name(n).unwrap())
            .collect();
        assert_eq!(
            guest_modules(&ctrls),
            ["ahci", "sd_mod", "virtio_pci", "virtio_blk", "nvme"]
        );
    }

    #[test]
    fn module_order_puts_dependencies_first_once() {
        let dep = "kernel/drivers/ata/ahci.ko.xz: kernel/drivers/ata/libahci.ko.xz kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz\n\
                   kernel/drivers/ata/libahci.ko.xz: kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz\n\
                   kernel/drivers/scsi/sd_mod.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz\n\
                   kernel/drivers/nvme/host/nvme.ko.xz: kernel/drivers/nvme/host/nvme-core.ko.xz\n";
        let o = module_order(dep, &["ahci", "sd_mod", "nvme", "virtio_blk"]).unwrap();
        assert_eq!(
            o,
            [
                "kernel/drivers/scsi/scsi_mod.ko.xz",
                "kernel/drivers/ata/libata.ko.xz",
                "kernel/drivers/ata/libahci.ko.xz",
                "kernel/drivers/ata/ahci.ko.xz",
                "kernel/drivers/scsi/sd_mod.ko.xz",
                "kernel/drivers/nvme/host/nvme-core.ko.xz",
                "kernel/drivers/nvme/host/nvme.ko.xz",
            ]
        );
    }

    #[test]
    fn bzimage_version_string() {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        img[0x300..0x310].copy_from_slice(b"6.1.0-9 (x) #1\0\0");
        assert_eq!(bzimage_version(&img).as_deref(), Some("6.1.0-9 (x) #1"));
        assert_eq!(bzimage_version(b"not a kernel"), None);
    }

    #[test]
    fn tree_checks_name_the_other_tree_type() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("VERSION"), "10.2.2").unwrap();
        std::fs::create_dir_all(t.path().join("util")).unwrap();
        std::fs::write(t.path().join("util/aio-posix.c"), "").unwrap();
        let e = check_tree(t.path()).unwrap_err().to_string();
        assert!(e.contains("looks like a QEMU tree"), "{e}");
        assert!(check_tree(&t.path().join("nope"))
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
    }
}
