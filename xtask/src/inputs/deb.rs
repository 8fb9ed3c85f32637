//! A shipped QEMU package (`--qemu-deb SUITE|VERSION|FILE.deb`): which
//! `qemu-system-x86` the words name in Debian's archive, the `.deb`'s
//! identity (SHA-256), its dependencies against the host's dpkg status, and
//! its files unpacked (`dpkg-deb -x`) into the cache, keyed by that hash.
//! Pure parsing is kept apart from the commands, so it is tested on text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::fetch::SUITES;
use crate::{cache, ui};

/// The binary package with `qemu-system-x86_64`.
pub const PACKAGE: &str = "qemu-system-x86";
/// Where the binary sits in the package (and in a suite's tree).
pub const BINARY: &str = "usr/bin/qemu-system-x86_64";

/// What `--qemu-deb` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DebSpec {
    /// A suite's candidate (`oldstable`, `unstable`, ...).
    Suite(String),
    /// A version as the archive lists it (`1:7.2+dfsg-7+deb12u18+b3`).
    Version(String),
    /// A maintainer's own package, before upload.
    File(PathBuf),
}

impl DebSpec {
    pub fn parse(s: &str) -> DebSpec {
        if s.ends_with(".deb") || s.contains('/') {
            DebSpec::File(PathBuf::from(s))
        } else if SUITES.contains(&s) {
            DebSpec::Suite(s.to_string())
        } else {
            DebSpec::Version(s.to_string())
        }
    }
}

/// `(version, suite)` of `pkg`'s amd64 binaries in `apt-cache madison`
/// lines (`qemu-system-x86 | 1:7.2+dfsg-7+deb12u18+b3 |
/// http://deb.debian.org/debian oldstable/main amd64 Packages`).
pub fn madison_binaries(text: &str, pkg: &str) -> Vec<(String, String)> {
    crate::fetch::madison(text, "Packages", Some(pkg))
}

/// The `(version, suite)` a suite or version names among what the archive
/// offers; otherwise an error listing the offer (the run exits 2).
pub fn pick(spec: &DebSpec, offered: &[(String, String)]) -> Result<(String, String)> {
    let found = match spec {
        DebSpec::Suite(s) => offered.iter().find(|(_, suite)| suite == s),
        DebSpec::Version(v) => offered.iter().find(|(version, _)| version == v),
        DebSpec::File(f) => bail!("{} is a file, not a name in the archive", f.display()),
    };
    if let Some(p) = found {
        return Ok(p.clone());
    }
    let what = match spec {
        DebSpec::Suite(s) => format!("suite {s}"),
        DebSpec::Version(v) => format!("version {v}"),
        DebSpec::File(_) => unreachable!(),
    };
    bail!(
        "Debian's archive has no {PACKAGE} for {what}; it offers: {}",
        if offered.is_empty() {
            "none".to_string()
        } else {
            offered
                .iter()
                .map(|(v, s)| format!("{v} ({s})"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )
}

/// One dependency: a package, and optionally a relation and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub rel: Option<(String, String)>,
}

/// A `Depends:` field: each entry a list of alternatives.
pub fn parse_depends(field: &str) -> Vec<Vec<Dep>> {
    field
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            entry
                .split('|')
                .map(|alt| {
                    let alt = alt.trim();
                    let (name, rel) = match alt.split_once('(') {
                        Some((n, r)) => {
                            let r = r.trim_end_matches(')').trim();
                            let op_len = r.find(|c: char| !"<>=".contains(c)).unwrap_or(r.len());
                            let rel = (r[..op_len].to_string(), r[op_len..].trim().to_string());
                            (n.trim(), Some(rel))
                        }
                        None => (alt, None),
                    };
                    // `libfoo:any`: any architecture's will do.
                    let name = name.split(':').next().unwrap_or(name).to_string();
                    Dep { name, rel }
                })
                .collect()
        })
        .collect()
}

/// What the host has installed: package -> version, and the virtual names
/// installed packages provide, from a dpkg status file.
#[derive(Debug, Default)]
pub struct Installed {
    pub versions: BTreeMap<String, String>,
    pub provided: Vec<String>,
}

pub fn installed(status: &str) -> Installed {
    let mut out = Installed::default();
    for stanza in status.split("\n\n") {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        if field("Status") != Some("install ok installed") {
            continue;
        }
        out.versions.insert(name.to_string(), version.to_string());
        for p in field("Provides").map(parse_depends).unwrap_or_default() {
            out.provided.extend(p.into_iter().map(|d| d.name));
        }
    }
    out
}

/// The dependency entries the host does not satisfy, as written; `cmp`
/// answers `dpkg --compare-versions A OP B`.
pub fn unsatisfied(
    depends: &[Vec<Dep>],
    host: &Installed,
    cmp: &dyn Fn(&str, &str, &str) -> bool,
) -> Vec<String> {
    let ok = |d: &Dep| match (&d.rel, host.versions.get(&d.name)) {
        (None, Some(_)) => true,
        (None, None) => host.provided.contains(&d.name),
        (Some((op, want)), Some(have)) => cmp(have, op, want),
        (Some(_), None) => false,
    };
    depends
        .iter()
        .filter(|alts| !alts.iter().any(ok))
        .map(|alts| {
            alts.iter()
                .map(|d| match &d.rel {
                    Some((op, v)) => format!("{} ({op} {v})", d.name),
                    None => d.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

/// `dpkg --compare-versions A OP B`.
pub fn dpkg_compare(a: &str, op: &str, b: &str) -> bool {
    let op = match op {
        "<<" => "lt",
        "<=" => "le",
        "=" => "eq",
        ">=" => "ge",
        ">>" => "gt",
        _ => return false,
    };
    Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .status()
        .is_ok_and(|s| s.success())
}

/// A field of a `.deb`'s control file (`dpkg-deb -f`).
pub fn control_field(deb: &Path, field: &str) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .with_context(|| format!("running dpkg-deb -f {}", deb.display()))?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -f {} {field}: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A file's SHA-256, hex.
pub fn sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(cache::hex(&h.finalize()))
}

/// The `Date:` of a Release file.
pub fn release_date(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Date:"))
        .map(|d| d.trim().to_string())
}

/// The source version a binary package was built from: its `Source:`
/// field's parenthesised version, else its own version (a binNMU's `+bN`
/// is not the source's).
pub fn source_version(source_field: &str, version: &str) -> String {
    if let Some((_, v)) = source_field.split_once('(') {
        return v.trim_end_matches(')').trim().to_string();
    }
    match version.rsplit_once("+b") {
        Some((v, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => v.to_string(),
        _ => version.to_string(),
    }
}

/// The `.deb`s' files, unpacked once into one folder of the cache, keyed
/// by the first one's hash (the package measured).
pub fn unpack(debs: &[PathBuf], sha: &str) -> Result<PathBuf> {
    let base = cache::dir("qemu-debs")?.join(sha);
    let root = base.join("root");
    if cache::is_filled(&base) {
        return Ok(root);
    }
    cache::refill(&base, |_| {
        for deb in debs {
            ui::info(&format!("unpacking {} (dpkg-deb -x)", deb.display()));
            let st = Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb)
                .arg(&root)
                .status()
                .context("running dpkg-deb -x")?;
            if !st.success() {
                bail!("dpkg-deb -x {} failed", deb.display());
            }
        }
        Ok(())
    })?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `apt-cache madison qemu-system-x86` printed it on the private
    /// lists (2026-12-07).
    const MADISON: &str = "qemu-system-x86 | 1:11.1.3+ds-2~bpo13+1 | http://deb.debian.org/debian stable-backports/main amd64 Packages
qemu-system-x86 | 1:11.1.3+ds-1 | http://deb.debian.org/debian unstable/main amd64 Packages
qemu-system-x86 | 1:11.1.2+ds-3 | http://deb.debian.org/debian testing/main amd64 Packages
qemu-system-x86 | 1:10.0.13+ds-0+deb13u1 | http://deb.debian.org/debian stable/main amd64 Packages
qemu-system-x86 | 1:7.2+dfsg-7+deb12u18+b3 | http://deb.debian.org/debian oldstable/main amd64 Packages
      qemu | 1:10.2.2+ds-1 | http://deb.debian.org/debian unstable/main Sources
";

    #[test]
    fn the_words_name_a_suite_a_version_or_a_file() {
        assert_eq!(
            DebSpec::parse("unstable"),
            DebSpec::Suite("unstable".into())
        );
        assert_eq!(
            DebSpec::parse("1:7.2+dfsg-7+deb12u18+b3"),
            DebSpec::Version("1:7.2+dfsg-7+deb12u18+b3".into())
        );
        assert_eq!(
            DebSpec::parse("qemu-system-x86_9.0_amd64.deb"),
            DebSpec::File("qemu-system-x86_9.0_amd64.deb".into())
        );
        assert_eq!(DebSpec::parse("./x"), DebSpec::File("./x".into()));
    }

    #[test]
    fn a_suite_or_version_resolves_and_bad_input_lists_the_archive() {
        let offered = madison_binaries(MADISON, PACKAGE);
        assert_eq!(offered.len(), 5);
        assert_eq!(
            pick(&DebSpec::Suite("oldstable".into()), &offered).unwrap(),
            ("1:7.2+dfsg-7+deb12u18+b3".into(), "oldstable".into())
        );
        assert_eq!(
            pick(&DebSpec::Version("1:11.1.3+ds-1".into()), &offered).unwrap(),
            ("1:11.1.3+ds-1".into(), "unstable".into())
        );
        let e = pick(&DebSpec::Suite("experimental".into()), &offered)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Debian's archive has no qemu-system-x86 for suite experimental; it offers: \
             1:11.1.3+ds-2~bpo13+1 (stable-backports), 1:11.1.3+ds-1 (unstable), \
             1:11.1.2+ds-3 (testing), 1:10.0.13+ds-0+deb13u1 (stable), \
             1:7.2+dfsg-7+deb12u18+b3 (oldstable)"
        );
        let e = pick(&DebSpec::Version("9.9".into()), &[]).unwrap_err();
        assert!(
            e.to_string().ends_with("version 9.9; it offers: none"),
            "{e}"
        );
    }

    #[test]
    fn dependencies_are_checked_against_the_hosts_dpkg_status() {
        let deps = parse_depends(
            "libc6 (>= 2.43), libaio1t64 (>= 0.3.93) | libaio1 (>= 0.3.93), libglib2.0-0t64:any (>= 2.75.3), seabios",
        );
        assert_eq!(deps.len(), 4);
        assert_eq!(
            deps[0][0],
            Dep {
                name: "libc6".into(),
                rel: Some((">=".into(), "2.43".into()))
            }
        );
        assert_eq!(deps[2][0].name, "libglib2.0-0t64");
        let status = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u13\n\n\
Package: libaio1\nStatus: install ok installed\nVersion: 0.3.113-4\n\n\
Package: libglib2.0-0\nStatus: install ok installed\nVersion: 2.74.6-2\nProvides: libglib2.0-0t64\n\n\
Package: seabios\nStatus: deinstall ok config-files\nVersion: 1.16.2-1\n";
        let host = installed(status);
        assert_eq!(host.versions.len(), 3);
        assert_eq!(
            unsatisfied(&deps, &host, &dpkg_compare),
            ["libc6 (>= 2.43)", "libglib2.0-0t64 (>= 2.75.3)", "seabios"]
        );
        // dpkg's order, not the strings': 0.3.113 is after 0.3.93.
        assert!(dpkg_compare("0.3.113-4", ">=", "0.3.93"));
        assert!(dpkg_compare("1:7.2+dfsg-7", ">>", "10.0"));
        assert!(!dpkg_compare("2.36-9", ">=", "2.43"));
        let easy = parse_depends("libc6 (>= 2.34), libaio1t64 | libaio1, libglib2.0-0t64");
        assert!(unsatisfied(&easy, &host, &dpkg_compare).is_empty());
    }

    #[test]
    fn the_source_version_drops_a_binnmu() {
        assert_eq!(
            source_version("qemu (1:7.2+dfsg-7+deb12u18)", "1:7.2+dfsg-7+deb12u18+b3"),
            "1:7.2+dfsg-7+deb12u18"
        );
        assert_eq!(source_version("", "1:7.2+dfsg-7+b3"), "1:7.2+dfsg-7");
        assert_eq!(source_version("qemu", "1:11.1.3+ds-1"), "1:11.1.3+ds-1");
    }

    #[test]
    fn a_release_file_gives_its_date() {
        let r = "Origin: Debian\nSuite: unstable\nDate: Mon, 07 Dec 2026 08:12:03 UTC\nValid-Until: Mon, 14 Dec 2026 08:12:03 UTC\n";
        assert_eq!(
            release_date(r).as_deref(),
            Some("Mon, 07 Dec 2026 08:12:03 UTC")
        );
        assert_eq!(release_date(""), None);
    }
}
