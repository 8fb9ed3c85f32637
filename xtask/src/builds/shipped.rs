//! A shipped QEMU (`--qemu-deb`), made runnable without compiling
//! anything: Debian's `qemu-system-x86` unpacked from its `.deb` and run on
//! the host when the host satisfies the package's dependencies, otherwise
//! installed in its suite's own minbase tree in the cache (debootstrap,
//! made once and kept) and run there through a small launcher: a private
//! mount namespace (`unshare --mount`), bind mounts of what the boot opens,
//! and `chroot`. Nothing is installed on the host, and the host's apt
//! state is not touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::deb::{self, DebSpec, BINARY, PACKAGE};
use crate::fetch::Apt;
use crate::{cache, deps, qemu, ui};

/// Where a shipped QEMU ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The unpacked binary, on the host's own libraries.
    Host,
    /// Its suite's minbase tree (the tree's root).
    Tree(PathBuf),
}

impl Place {
    pub fn name(&self) -> &'static str {
        match self {
            Place::Host => "host",
            Place::Tree(_) => "suite tree",
        }
    }
}

/// A shipped QEMU ready to boot.
#[derive(Clone, Debug)]
pub struct Shipped {
    /// What the runs start: the unpacked binary, or a tree's launcher.
    pub binary: PathBuf,
    /// The package's version, as the archive lists it.
    pub version: String,
    /// The suite that lists it (none for a `.deb` no suite lists).
    pub suite: Option<String>,
    pub sha256: String,
    /// The suite's Release date (the archive's state the package is from).
    pub release_date: Option<String>,
    pub place: Place,
}

/// The suite trees' folder in the cache.
pub fn trees_dir() -> Result<PathBuf> {
    cache::dir("suite-trees")
}

/// Finds, downloads and unpacks the package `words` names, and decides
/// where it runs.
pub fn prepare(words: &str, allow_install: bool) -> Result<Shipped> {
    let spec = DebSpec::parse(words);
    let (deb, version, suite, apt) = match &spec {
        DebSpec::File(f) => {
            if !f.is_file() {
                bail!("--qemu-deb {}: no such file", f.display());
            }
            let version = deb::control_field(f, "Version")?;
            let apt = Apt::new().ok();
            let suite = apt.as_ref().and_then(|a| {
                // The suite's name (oldstable) rather than the machine's
                // codename line (bookworm) that lists the same version.
                a.binary_suites(PACKAGE)
                    .into_iter()
                    .filter(|(v, _)| *v == version)
                    .min_by_key(|(_, s)| !crate::fetch::SUITES.contains(&s.as_str()))
                    .map(|(_, s)| s)
            });
            (f.clone(), version, suite, apt)
        }
        _ => {
            let apt = Apt::new()?;
            apt.update()?;
            let (version, suite) = deb::pick(&spec, &apt.binary_suites(PACKAGE))?;
            let deb = downloaded(&apt, PACKAGE, &version)?;
            (deb, version, Some(suite), Some(apt))
        }
    };
    let sha256 = deb::sha256(&deb)?;
    let release_date = match (&apt, &suite) {
        (Some(a), Some(s)) => a.release(s).as_deref().and_then(deb::release_date),
        _ => None,
    };
    ui::stage(&format!(
        "--qemu-deb {words}: {PACKAGE} {version}{} (sha256 {})",
        suite
            .as_deref()
            .map(|s| format!(" from {s}"))
            .unwrap_or_default(),
        &sha256[..16]
    ));
    let shipped = |binary, place| Shipped {
        binary,
        version: version.clone(),
        suite: suite.clone(),
        sha256: sha256.clone(),
        release_date: release_date.clone(),
        place,
    };
    let missing = host_misses(&deb)?;
    let companions = match (&apt, missing.is_empty()) {
        (Some(a), true) => companions(a, &deb)
            .map_err(|e| ui::info(&format!("{e:#}")))
            .ok(),
        _ => None,
    };
    if let Some(companions) = companions {
        let mut debs = vec![deb.clone()];
        debs.extend(companions);
        let root = deb::unpack(&debs, &sha256)?;
        link_host_firmware(&root)?;
        let binary = root.join(BINARY);
        // `--version` runs it on the host's libraries; what it offers is
        // checked with every other binary's (`at_once::Request::inputs`).
        match qemu::QemuBinary::of(&binary).version().map(str::to_string) {
            Ok(v) => {
                ui::info(&format!(
                    "the host satisfies its dependencies: QEMU {v} runs on the host"
                ));
                return Ok(shipped(binary, Place::Host));
            }
            Err(e) => ui::info(&format!(
                "the host seems to satisfy its dependencies, but the binary does not run here ({e:#}): using its suite's tree"
            )),
        }
    } else if !missing.is_empty() {
        ui::info(&format!(
            "the host lacks {}: using its suite's tree",
            missing.join(", ")
        ));
    }
    let Some(suite) = suite.clone() else {
        bail!("{}: the host cannot run it and no suite lists version {version}, so there is no suite tree to run it in", deb.display());
    };
    let apt = apt.context("a suite tree needs Debian's archive (the private apt configuration)")?;
    need_root(&format!("{PACKAGE} {version}"))?;
    deps::ensure(deps::SUITE_TREES, allow_install)?;
    let tree = suite_tree(&suite, &apt.mirror)?;
    install_in_tree(
        &tree,
        &suite,
        &version,
        matches!(spec, DebSpec::File(_)).then_some(deb.as_path()),
    )?;
    let launcher = launcher(&tree)?;
    let v = qemu::QemuBinary::of(&launcher)
        .version()
        .context("the suite tree's QEMU")?;
    ui::info(&format!("QEMU {v} runs in {}", tree.display()));
    Ok(shipped(launcher, Place::Tree(tree)))
}

/// The `.deb` of `pkg` at `version`, from the cache or downloaded into it
/// (apt-get names it `pkg_version_arch.deb`, the epoch's colon escaped).
fn downloaded(apt: &Apt, pkg: &str, version: &str) -> Result<PathBuf> {
    let prefix = format!("{pkg}_{}_", version.replace(':', "%3a"));
    let dir = cache::dir("debs")?;
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    apt.download_deb_at(pkg, version)?;
    find().with_context(|| {
        format!(
            "apt-get download left no {prefix}*.deb in {}",
            dir.display()
        )
    })
}

/// The packages the binary's own files need beside it, unpacked in the
/// same folder: QEMU looks for its modules (qemu-system-common, at the
/// exact version the package names) and its data (qemu-system-data, of the
/// same source version) relative to where the binary is.
fn companions(apt: &Apt, deb: &Path) -> Result<Vec<PathBuf>> {
    let depends = deb::parse_depends(&deb::control_field(deb, "Depends")?);
    let common = depends
        .iter()
        .flatten()
        .find(|d| d.name == "qemu-system-common")
        .and_then(|d| {
            d.rel
                .as_ref()
                .filter(|(op, _)| op == "=")
                .map(|(_, v)| v.clone())
        })
        .context("the package names no exact qemu-system-common")?;
    let source = deb::source_version(
        &deb::control_field(deb, "Source").unwrap_or_default(),
        &deb::control_field(deb, "Version")?,
    );
    Ok(vec![
        downloaded(apt, "qemu-system-common", &common)?,
        downloaded(apt, "qemu-system-data", &source)?,
    ])
}

/// Firmware the package takes from other packages (`seabios`,
/// `ipxe-qemu`: the host has them, its Depends were checked), linked into
/// the unpacked folder where the binary looks for them.
pub const HOST_FIRMWARE: &[&str] = &["usr/share/seabios", "usr/lib/ipxe"];

fn link_host_firmware(root: &Path) -> Result<()> {
    for d in HOST_FIRMWARE {
        let (inside, host) = (root.join(d), Path::new("/").join(d));
        if host.is_dir() && std::fs::symlink_metadata(&inside).is_err() {
            if let Some(parent) = inside.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::os::unix::fs::symlink(&host, &inside)
                .with_context(|| format!("linking {}", inside.display()))?;
        }
    }
    Ok(())
}

/// The package's dependencies the host does not satisfy.
fn host_misses(deb: &Path) -> Result<Vec<String>> {
    let depends = deb::parse_depends(&deb::control_field(deb, "Depends")?);
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap_or_default();
    Ok(deb::unsatisfied(
        &depends,
        &deb::installed(&status),
        &deb::dpkg_compare,
    ))
}

/// The suite debootstrap makes a tree of: backports live on their base
/// suite's tree, with the backports line added.
pub fn base_suite(suite: &str) -> &str {
    suite.strip_suffix("-backports").unwrap_or(suite)
}

/// apt inside a tree: the archive here is a frozen snapshot, past its
/// Release files' Valid-Until.
const TREE_APT_CONF: &str =
    "Acquire::Check-Valid-Until \"false\";\nAPT::Install-Recommends \"false\";\n";

/// A suite tree is made, entered and mounted in as root (debootstrap,
/// unshare --mount, chroot).
fn need_root(what: &str) -> Result<()> {
    if !deps::is_root() {
        bail!("{what} runs in a Debian suite's tree, which needs root (debootstrap, unshare --mount, chroot): run as root, or on a host whose packages satisfy it");
    }
    Ok(())
}

/// `suite`'s minbase tree, made once and kept (a backports suite has its
/// own, so its QEMU and its base suite's never replace each other).
pub fn suite_tree(suite: &str, mirror: &str) -> Result<PathBuf> {
    let base = trees_dir()?.join(suite);
    let root = base.join("root");
    if cache::is_filled(&base) {
        return Ok(root);
    }
    cache::refill(&base, |base| {
        ui::info(&format!(
            "making {}'s minbase tree (debootstrap, once)",
            base_suite(suite)
        ));
        let mut c = Command::new("debootstrap");
        c.args(["--variant=minbase", base_suite(suite)])
            .arg(&root)
            .arg(mirror);
        ui::run_logged(c, &base.join("debootstrap.log"), "debootstrap", |_| {})?;
        std::fs::write(root.join("etc/apt/apt.conf.d/99uring-idle"), TREE_APT_CONF)?;
        Ok(())
    })?;
    Ok(root)
}

/// What a tree must do so `version` is its installed QEMU.
#[derive(Debug, PartialEq, Eq)]
pub enum TreeStep {
    /// Already there: the tree is reused as it is.
    Reuse,
    /// Install (or move to) that version.
    Install,
}

pub fn tree_step(installed: Option<&str>, want: &str) -> TreeStep {
    if installed == Some(want) {
        TreeStep::Reuse
    } else {
        TreeStep::Install
    }
}

/// Installs `version` (or the maintainer's `file`) in the tree, unless it
/// is there already.
fn install_in_tree(root: &Path, suite: &str, version: &str, file: Option<&Path>) -> Result<()> {
    let _lock = cache::Lock::acquire(&root.with_file_name("install"))?;
    let installed = Command::new("chroot")
        .arg(root)
        .args(["dpkg-query", "-W", "-f=${Version}", PACKAGE])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if tree_step(installed.as_deref(), version) == TreeStep::Reuse {
        ui::info(&format!("{PACKAGE} {version} is in the tree already"));
        return Ok(());
    }
    if suite != base_suite(suite) {
        let sources = root.join("etc/apt/sources.list");
        let text = std::fs::read_to_string(&sources).unwrap_or_default();
        if !text.contains(suite) {
            let line = text
                .lines()
                .find(|l| l.starts_with("deb "))
                .context("the tree has no sources line")?
                .replacen(
                    &format!(" {} ", base_suite(suite)),
                    &format!(" {suite} "),
                    1,
                );
            std::fs::write(&sources, format!("{text}{line}\n"))?;
        }
    }
    let target = match file {
        Some(f) => {
            let inside = root
                .join("tmp")
                .join(f.file_name().context("a .deb's name")?);
            std::fs::copy(f, &inside).with_context(|| format!("copying {}", f.display()))?;
            format!(
                "/tmp/{}",
                inside.file_name().unwrap_or_default().to_string_lossy()
            )
        }
        None => format!("{PACKAGE}={version}"),
    };
    ui::info(&format!("installing {target} in {}", root.display()));
    let script = format!(
        "set -e; mount -t proc proc {r}/proc; mount --rbind /dev {r}/dev; \
         chroot {r} apt-get update -q; \
         chroot {r} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t {suite} {target}",
        r = shell_quote(root)
    );
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    ui::run_logged(
        c,
        &root.with_file_name("install.log"),
        &format!("apt-get install {target} (in the tree)"),
        |_| {},
    )?;
    Ok(())
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The launcher: a private mount namespace (nothing is left mounted if
/// the run is interrupted, and nothing outside it sees a mount), `/dev`,
/// `/sys` and a fresh `/proc`, then `binds` (the cache: run folders, guest
/// images, firmware the tool built; /tmp) at their own paths, then chroot
/// and `binary` (a path inside the tree). exec all along: the PID is QEMU's.
pub fn launcher_script(root: &Path, binds: &[&Path], binary: &Path) -> String {
    launcher_script_with(root, binds, binary, None)
}

/// `launcher_script`, with `libs` (a folder under a bound path) searched
/// first for shared libraries.
pub fn launcher_script_with(
    root: &Path,
    binds: &[&Path],
    binary: &Path,
    libs: Option<&Path>,
) -> String {
    let quoted: Vec<String> = binds.iter().map(|b| shell_quote(b)).collect();
    let libs = libs
        .map(|l| format!("export LD_LIBRARY_PATH={}\n", shell_quote(l)))
        .unwrap_or_default();
    format!(
        "#!/bin/sh\n\
# QEMU in a Debian suite's tree (cargo xtask patch-and-test --qemu-deb).\n\
{libs}exec unshare --mount --propagation private -- sh -c '\n\
set -e\n\
r=\"$0\"; b=\"$1\"; n=\"$2\"; shift 2\n\
mount --rbind /dev \"$r/dev\"\n\
mount -t proc proc \"$r/proc\"\n\
mount --rbind /sys \"$r/sys\"\n\
while [ \"$n\" -gt 0 ]; do d=\"$1\"; shift; n=$((n - 1)); mkdir -p \"$r$d\"; mount --bind \"$d\" \"$r$d\"; done\n\
exec chroot \"$r\" \"$b\" \"$@\"' {r} {b} {n} {binds} \"$@\"\n",
        r = shell_quote(root),
        b = shell_quote(binary),
        n = binds.len(),
        binds = quoted.join(" "),
    )
}

/// Writes a launcher of `binary` (a path inside the tree) at `path`,
/// binding the cache, /tmp and `extra`.
fn write_launcher(
    path: &Path,
    root: &Path,
    binary: &Path,
    extra: Option<&Path>,
    libs: Option<&Path>,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let cache_root = cache::root()?;
    let mut binds: Vec<&Path> = vec![&cache_root, Path::new("/tmp")];
    binds.extend(extra);
    let text = launcher_script_with(root, &binds, binary, libs);
    if std::fs::read_to_string(path).ok().as_deref() != Some(&text) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension(format!("{}", std::process::id()));
        std::fs::write(&tmp, &text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}

/// The tree's own QEMU's launcher, beside the tree.
fn launcher(root: &Path) -> Result<PathBuf> {
    let path = root.with_file_name("qemu-system-x86_64");
    write_launcher(&path, root, &Path::new("/").join(BINARY), None, None)?;
    Ok(path)
}

/// Another QEMU binary (a build of this tool's, say) run in `suite`'s
/// tree, with the suite's qemu-system-x86 installed there for its
/// libraries and data: the suite-tree path shown able to find a stall.
/// Its folder is bound in at its own path.
pub fn binary_in_tree(binary: &Path, suite: &str, allow_install: bool) -> Result<PathBuf> {
    let binary = binary
        .canonicalize()
        .with_context(|| format!("--qemu-binary {}", binary.display()))?;
    let apt = Apt::new()?;
    apt.update()?;
    let (version, suite) = deb::pick(
        &DebSpec::Suite(suite.to_string()),
        &apt.binary_suites(PACKAGE),
    )?;
    need_root(&binary.display().to_string())?;
    deps::ensure(deps::SUITE_TREES, allow_install)?;
    let tree = suite_tree(&suite, &apt.mirror)?;
    install_in_tree(&tree, &suite, &version, None)?;
    let dir = binary.parent().context("the binary's folder")?;
    let path = tree
        .with_file_name("launchers")
        .join(cache::key([binary.as_os_str().as_encoded_bytes()]))
        .join("qemu-system-x86_64");
    // A build of this tool's is linked on the host: a library the suite
    // names otherwise (sid's libaio is libaio.so.1t64, the host's build
    // wants libaio.so.1) comes from the host, copied beside the launcher
    // (under the cache, which the launcher binds).
    let libs = path.with_file_name("lib");
    let copied = host_libraries_for(&binary, &tree, &libs)?;
    write_launcher(
        &path,
        &tree,
        &binary,
        Some(dir),
        copied.then_some(libs.as_path()),
    )?;
    let v = qemu::QemuBinary::of(&path)
        .version()
        .with_context(|| format!("{} in {suite}'s tree", binary.display()))?;
    ui::stage(&format!(
        "--suite-tree {suite}: {} (QEMU {v}) runs in {}",
        binary.display(),
        tree.display()
    ));
    Ok(path)
}

/// The shared libraries `binary` needs, from `ldd` on the host: (soname,
/// the host's file).
pub fn needed_libraries(ldd: &str) -> Vec<(String, PathBuf)> {
    ldd.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(" => ")?;
            let file = rest.split_whitespace().next()?;
            file.starts_with('/')
                .then(|| (name.to_string(), PathBuf::from(file)))
        })
        .collect()
}

/// Copies into `dir` the host's copy of each library `binary` needs that
/// `tree` has under no name; whether any was.
fn host_libraries_for(binary: &Path, tree: &Path, dir: &Path) -> Result<bool> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd on {}", binary.display()))?;
    let lib_dirs = [
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu",
        "lib64",
        "usr/lib",
    ];
    let mut copied = false;
    for (name, host) in needed_libraries(&String::from_utf8_lossy(&out.stdout)) {
        if lib_dirs.iter().any(|d| tree.join(d).join(&name).exists()) {
            continue;
        }
        std::fs::create_dir_all(dir)?;
        std::fs::copy(&host, dir.join(&name))
            .with_context(|| format!("copying {} for {}", host.display(), binary.display()))?;
        copied = true;
    }
    Ok(copied)
}

/// Mount points under `dir` in this namespace (none is expected: trees
/// are only ever mounted in a run's private namespace): removing a tree
/// must never follow one out.
pub fn mounts_under(dir: &Path, mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_holding_the_version_is_reused() {
        assert_eq!(
            tree_step(Some("1:11.1.3+ds-1"), "1:11.1.3+ds-1"),
            TreeStep::Reuse
        );
        assert_eq!(
            tree_step(Some("1:11.1.2+ds-3"), "1:11.1.3+ds-1"),
            TreeStep::Install
        );
        assert_eq!(tree_step(None, "1:11.1.3+ds-1"), TreeStep::Install);
        assert_eq!(base_suite("stable-backports"), "stable");
        assert_eq!(base_suite("unstable"), "unstable");
    }

    #[test]
    fn a_foreign_binarys_libraries_come_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibaio.so.1 => /lib/x86_64-linux-gnu/libaio.so.1 (0x00007f)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\tlibgone.so.3 => not found\n";
        assert_eq!(
            needed_libraries(ldd),
            [
                (
                    "libaio.so.1".to_string(),
                    PathBuf::from("/lib/x86_64-linux-gnu/libaio.so.1")
                ),
                (
                    "libz.so.1".to_string(),
                    PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1")
                ),
            ]
        );
        let s = launcher_script_with(
            Path::new("/c/suite-trees/unstable/root"),
            &[Path::new("/c")],
            Path::new("/q/qemu-system-x86_64"),
            Some(Path::new("/c/suite-trees/unstable/launchers/k/lib")),
        );
        assert!(
            s.contains(
                "\nexport LD_LIBRARY_PATH='/c/suite-trees/unstable/launchers/k/lib'\nexec unshare"
            ),
            "{s}"
        );
    }

    #[test]
    fn the_launcher_binds_the_cache_and_execs_qemu_in_the_tree() {
        let s = launcher_script(
            Path::new("/c/suite-trees/unstable/root"),
            &[Path::new("/c"), Path::new("/tmp")],
            Path::new("/usr/bin/qemu-system-x86_64"),
        );
        assert!(
            s.contains("exec unshare --mount --propagation private"),
            "{s}"
        );
        assert!(
            s.ends_with("' '/c/suite-trees/unstable/root' '/usr/bin/qemu-system-x86_64' 2 '/c' '/tmp' \"$@\"\n"),
            "{s}"
        );
        // Run: each bind then chroot, every argument passed on (a fake
        // tree would need root; the script's argument handling is shown by
        // sh with mount and chroot echoing).
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in ["mount", "chroot", "unshare", "mkdir"] {
            let body = if tool == "unshare" {
                "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done; shift; exec \"$@\"\n"
                    .to_string()
            } else {
                format!("#!/bin/sh\necho {tool} \"$@\"\n")
            };
            let p = bin.join(tool);
            std::fs::write(&p, body).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = std::process::Command::new("sh")
            .args(["-c", &s, "launcher", "-machine", "q35", "a b"])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("mount --bind /c /c/suite-trees/unstable/root/c\n")
                && text.contains("mount --bind /tmp /c/suite-trees/unstable/root/tmp\n")
                && text.ends_with("chroot /c/suite-trees/unstable/root /usr/bin/qemu-system-x86_64 -machine q35 a b\n"),
            "{text}"
        );
    }

    #[test]
    fn mounts_under_a_tree_are_found() {
        let mi = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                  40 22 8:1 /home/u/.cache /c/suite-trees/unstable/root/c rw - ext4 /dev/sda1 rw\n";
        assert_eq!(
            mounts_under(Path::new("/c/suite-trees"), mi),
            [PathBuf::from("/c/suite-trees/unstable/root/c")]
        );
        assert!(mounts_under(Path::new("/elsewhere"), mi).is_empty());
    }
}
