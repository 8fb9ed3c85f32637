//! Sources from Debian's archive, through a private apt configuration under
//! the cache (own sources list, lists and package cache), so the machine's
//! apt state is never touched. The mirror is read from the machine's own
//! apt sources.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cache, ui};

/// The QEMU source package verified by default: the first release with
/// upstream's fix (the baseline is made by removing it).
pub const DEFAULT_QEMU_VERSION: &str = "1:10.2.2+ds-1";
/// Debian 12's kernel source package.
pub const DEFAULT_KERNEL_PACKAGE: &str = "linux-source-6.1";

/// Every suite the private lists carry, sources and binaries, so any QEMU
/// or kernel source the archive offers can be named by version. Binary
/// candidates stay the machine's own suite's (`APT::Default-Release`), so
/// `--kernel debian` and the default kernel source do not move.
pub const SUITES: &[&str] = &[
    "oldstable",
    "stable",
    "stable-backports",
    "testing",
    "unstable",
    "experimental",
];

/// The private sources list for `mirror`, the machine's `suite` first.
pub fn sources_list(mirror: &str, suite: &str) -> String {
    let mut out = format!("deb {mirror} {suite} main\n");
    for s in SUITES {
        out.push_str(&format!(
            "deb {mirror} {s} main\ndeb-src {mirror} {s} main\n"
        ));
    }
    out
}

/// `(version, suite)` pairs from `apt-cache madison` lines of Sources
/// (`qemu | 1:10.2.2+ds-1 | http://deb.debian.org/debian unstable/main Sources`).
pub fn madison_sources(text: &str) -> Vec<(String, String)> {
    madison(text, "Sources", None)
}

/// `(version, suite)` pairs, each once, of the `apt-cache madison` lines
/// from the index `kind` (`Sources`, or `Packages` for binaries), of `pkg`
/// when given.
pub fn madison(text: &str, kind: &str, pkg: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for l in text.lines() {
        let cols: Vec<&str> = l.split('|').map(str::trim).collect();
        if cols.len() < 3 || !cols[2].ends_with(kind) || pkg.is_some_and(|p| cols[0] != p) {
            continue;
        }
        let suite = cols[2]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_default();
        let pair = (cols[1].to_string(), suite.to_string());
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    out
}

/// The first main-archive mirror and suite in the machine's apt sources,
/// from deb822 `.sources` files or one-line `sources.list` entries.
pub fn machine_mirror(sources_d: &[(PathBuf, String)]) -> Option<(String, String)> {
    for (path, text) in sources_d {
        let is_deb822 = path.extension().is_some_and(|e| e == "sources");
        if is_deb822 {
            for stanza in text.split("\n\n") {
                let field = |k: &str| {
                    stanza
                        .lines()
                        .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
                        .map(|v| v.trim().to_string())
                };
                let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
                    continue;
                };
                let types = field("Types").unwrap_or_default();
                let uri = uris.split_whitespace().next().unwrap_or_default();
                let suite = suites.split_whitespace().next().unwrap_or_default();
                if types.split_whitespace().any(|t| t == "deb")
                    && !suite.contains("security")
                    && !uri.is_empty()
                {
                    return Some((uri.to_string(), suite.to_string()));
                }
            }
        } else {
            for l in text.lines().map(str::trim) {
                let words: Vec<&str> = l
                    .split_whitespace()
                    .filter(|w| !w.starts_with('['))
                    .collect();
                if words.len() >= 3 && words[0] == "deb" && !words[2].contains("security") {
                    return Some((words[1].to_string(), words[2].to_string()));
                }
            }
        }
    }
    None
}

/// Names a Debian mirror (its URI, as apt takes it) where the machine's
/// own apt sources are not Debian's, e.g. on an Ubuntu host: Debian's
/// suite names and source packages exist only in Debian's archive.
pub const MIRROR_VAR: &str = "URING_IDLE_DEBIAN_MIRROR";

/// The suite binary candidates come from on a machine that is not Debian:
/// the tool's defaults (`linux-source-6.1`, `--kernel debian`) are
/// oldstable's (Debian 12's).
pub const FALLBACK_SUITE: &str = "oldstable";

/// Debian's suite and codename words, for a machine whose lists hold no
/// Release file yet (apt was never updated): a suite is Debian's when its
/// first word is one of these.
const DEBIAN_SUITES: &[&str] = &[
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "sid",
    "experimental",
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
];

/// The files apt keeps a Release of `uri`'s `suite` in under
/// /var/lib/apt/lists (`InRelease`, or `Release` for an unsigned one).
pub fn release_files(uri: &str, suite: &str) -> [String; 2] {
    let host_path = uri
        .split_once("://")
        .map_or(uri, |(_, rest)| rest)
        .trim_end_matches('/')
        .replace('/', "_");
    ["InRelease", "Release"].map(|f| format!("{host_path}_dists_{suite}_{f}"))
}

/// The `Origin:` of a Release file.
pub fn release_origin(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("Origin:"))
        .map(str::trim)
}

/// Whether the machine's archive `uri` `suite` is Debian's: its Release
/// file says so, or, with none on the machine, its suite is a Debian name.
fn is_debian(uri: &str, suite: &str, release: &dyn Fn(&str) -> Option<String>) -> bool {
    match release_files(uri, suite).iter().find_map(|f| release(f)) {
        Some(text) => release_origin(&text) == Some("Debian"),
        None => {
            let word = suite.split('-').next().unwrap_or_default();
            DEBIAN_SUITES.contains(&word)
        }
    }
}

/// The Debian mirror and the suite binary candidates come from: the
/// machine's own when its apt sources are Debian's; a mirror the user
/// names (`MIRROR_VAR`) otherwise, or always when named. Never a host
/// written into the project.
pub fn debian_mirror(
    sources: &[(PathBuf, String)],
    release: &dyn Fn(&str) -> Option<String>,
    named: Option<&str>,
) -> Result<(String, String)> {
    let machine = machine_mirror(sources);
    let debian = machine
        .as_ref()
        .filter(|(uri, suite)| is_debian(uri, suite, release));
    if let Some(uri) = named.map(str::trim).filter(|u| !u.is_empty()) {
        let suite = debian.map_or(FALLBACK_SUITE.to_string(), |(_, s)| s.clone());
        return Ok((uri.to_string(), suite));
    }
    match (debian, &machine) {
        (Some(m), _) => Ok(m.clone()),
        (None, Some((uri, suite))) => bail!(
            "this machine's apt sources are not Debian's ({uri} {suite}{}), and Debian's suites and source packages are only in Debian's archive: name a Debian mirror with {MIRROR_VAR}=URI (the URI apt would take, ending in /debian), or pass --qemu-tree DIR and --kernel-tree DIR instead of fetching",
            release_files(uri, suite)
                .iter()
                .find_map(|f| release(f))
                .and_then(|t| release_origin(&t).map(|o| format!(", Origin: {o}")))
                .unwrap_or_default()
        ),
        (None, None) => bail!(
            "no apt sources found in /etc/apt/sources.list or /etc/apt/sources.list.d: name a Debian mirror with {MIRROR_VAR}=URI, or pass --qemu-tree DIR and --kernel-tree DIR instead of fetching"
        ),
    }
}

fn read_machine_sources() -> Vec<(PathBuf, String)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

/// apt with every state path under `cache/apt`.
pub struct Apt {
    dir: PathBuf,
    /// The machine's own suite: binary candidates come from it.
    suite: String,
    /// The Debian mirror the private lists come from.
    pub mirror: String,
}

impl Apt {
    pub fn new() -> Result<Apt> {
        for tool in ["apt-get", "apt-cache", "dpkg-source", "dpkg-deb"] {
            if crate::deps::which(tool).is_none() {
                bail!("{tool} is missing: fetching Debian sources needs apt and dpkg-dev (run `cargo xtask deps --install`)");
            }
        }
        let dir = cache::dir("apt")?;
        let lists = Path::new("/var/lib/apt/lists");
        let (mirror, suite) = debian_mirror(
            &read_machine_sources(),
            &|f| std::fs::read_to_string(lists.join(f)).ok(),
            std::env::var(MIRROR_VAR).ok().as_deref(),
        )?;
        for d in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        if !dir.join("status").is_file() {
            std::fs::write(dir.join("status"), "")?;
        }
        let list = sources_list(&mirror, &suite);
        let path = dir.join("sources.list");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(&list) {
            std::fs::write(&path, &list)?;
            let _ = std::fs::remove_file(dir.join("lists/.updated"));
        }
        Ok(Apt { dir, suite, mirror })
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        let d = &self.dir;
        for opt in [
            format!("Dir::Etc::SourceList={}", d.join("sources.list").display()),
            format!(
                "Dir::Etc::SourceParts={}",
                d.join("sources.list.d").display()
            ),
            format!("Dir::State::Lists={}", d.join("lists").display()),
            format!("Dir::Cache={}", d.join("cache").display()),
            // An empty dpkg status: what this machine has installed must not
            // pick versions (an installed security update is not in our list).
            format!("Dir::State::status={}", d.join("status").display()),
            "Debug::NoLocking=1".into(),
            format!("APT::Default-Release={}", self.suite),
            "APT::Sandbox::User=root".into(),
        ] {
            c.arg("-o").arg(opt);
        }
        c
    }

    /// Refreshes the private package lists once a day. Locked: apt runs
    /// with its own locking off, and the kernel's and QEMU's sources are
    /// fetched at once (as are two runs'); the second waits for the first
    /// refresh and finds the lists fresh.
    pub fn update(&self) -> Result<()> {
        let stamp = self.dir.join("lists/.updated");
        let fresh = || {
            std::fs::metadata(&stamp)
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default().as_secs() < 86_400)
                .unwrap_or(false)
        };
        if fresh() {
            return Ok(());
        }
        // Not in lists/: apt-get update deletes what it does not know there.
        let _lock = cache::Lock::acquire(&self.dir.join("update"))?;
        if fresh() {
            return Ok(());
        }
        ui::info("refreshing the private apt lists");
        let mut c = self.command("apt-get");
        c.arg("update");
        ui::run_logged(
            c,
            &self.dir.join("apt.log"),
            "apt-get update (private lists)",
            |_| {},
        )?;
        std::fs::write(&stamp, "")?;
        Ok(())
    }

    /// What `apt-cache ARGS` prints on the private lists (nothing if it
    /// cannot run: the callers then say the archive offers nothing).
    fn apt_cache(&self, args: &[&str]) -> String {
        let mut c = self.command("apt-cache");
        c.args(args);
        c.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Versions of a binary package the lists know (amd64), each with its
    /// suite.
    pub fn binary_suites(&self, pkg: &str) -> Vec<(String, String)> {
        crate::inputs::deb::madison_binaries(&self.apt_cache(&["madison", pkg]), pkg)
    }

    /// The private lists' Release file of `suite` (its `Date:` names the
    /// archive's state).
    pub fn release(&self, suite: &str) -> Option<String> {
        release_files(&self.mirror, suite)
            .iter()
            .find_map(|f| std::fs::read_to_string(self.dir.join("lists").join(f)).ok())
    }

    /// Versions of a source package the lists know, each with its suite.
    pub fn source_suites(&self, pkg: &str) -> Vec<(String, String)> {
        madison_sources(&self.apt_cache(&["madison", pkg]))
    }

    /// Versions of a source package the lists know.
    pub fn source_versions(&self, pkg: &str) -> Vec<String> {
        let out = self.apt_cache(&["showsrc", pkg]);
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Version: "))
            .map(str::to_string)
            .collect();
        v.dedup();
        v
    }

    /// Whether the mirror has the files of `pkg=version` (its .dsc answers
    /// HTTP 200): `None` when that cannot be told (no curl, no answer).
    pub fn downloadable(&self, pkg: &str, version: &str) -> Option<bool> {
        let mut c = self.command("apt-get");
        c.args(["source", "--print-uris", &format!("{pkg}={version}")]);
        let out = c.output().ok()?;
        let uri = dsc_uri(&String::from_utf8_lossy(&out.stdout))?;
        let code = Command::new("curl")
            .args([
                "-sI",
                "--max-time",
                "15",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &uri,
            ])
            .output()
            .ok()?;
        match String::from_utf8_lossy(&code.stdout).trim() {
            "200" => Some(true),
            "404" | "410" => Some(false),
            _ => None,
        }
    }

    /// Downloads and unpacks a source package (Debian patches applied by
    /// dpkg-source), once; returns the tree.
    pub fn source_tree(&self, pkg: &str, version: &str) -> Result<PathBuf> {
        let base = cache::dir("sources")?.join(format!("{pkg}_{}", version.replace(':', "%3a")));
        let tree = base.join("tree");
        if cache::is_filled(&base) {
            return Ok(tree);
        }
        self.update()?;
        let known = self.source_versions(pkg);
        if !known.iter().any(|v| v == version) {
            let offered: Vec<String> = self
                .source_suites(pkg)
                .into_iter()
                .map(|(v, suite)| {
                    let dl = match self.downloadable(pkg, &v) {
                        Some(true) => "downloads",
                        Some(false) => "not on the mirror",
                        None => "not checked",
                    };
                    format!("{v} ({suite}, {dl})")
                })
                .collect();
            bail!(
                "Debian has no source package {pkg}={version}; versions the archive offers: {}",
                if offered.is_empty() {
                    "none".into()
                } else {
                    offered.join(", ")
                }
            );
        }
        if self.downloadable(pkg, version) == Some(false) {
            let others: Vec<(String, Option<bool>)> = known
                .iter()
                .filter(|v| *v != version)
                .map(|v| (v.clone(), self.downloadable(pkg, v)))
                .collect();
            bail!(not_on_mirror(pkg, version, &others));
        }
        cache::refill(&base, |base| {
            ui::info(&format!("downloading source package {pkg}={version}"));
            let log = base.join("fetch.log");
            let mut c = self.command("apt-get");
            c.args(["source", "--download-only", &format!("{pkg}={version}")])
                .current_dir(base);
            ui::run_logged(c, &log, &format!("downloading {pkg}={version}"), |_| {})?;
            let dsc = std::fs::read_dir(base)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "dsc"))
                .with_context(|| format!("apt-get source left no .dsc in {}", base.display()))?;
            ui::info("unpacking with dpkg-source (Debian patches applied)");
            let mut c = Command::new("dpkg-source");
            c.arg("-x").arg(&dsc).arg(&tree);
            ui::run_logged(c, &log, "dpkg-source -x", |_| {})?;
            Ok(())
        })?;
        Ok(tree)
    }

    /// The candidate version of a binary package in the private lists.
    pub fn binary_version(&self, pkg: &str) -> Result<String> {
        // apt-cache rebuilds its package cache on every call (0.7 s of each
        // warm run): the answer is remembered until the lists change.
        let memo = self.dir.join("lists/.binary-versions");
        let stamp = self.dir.join("lists/.updated");
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let current = matches!((mtime(&memo), mtime(&stamp)), (Some(m), Some(s)) if m >= s);
        let known = if current {
            std::fs::read_to_string(&memo).unwrap_or_default()
        } else {
            String::new()
        };
        if let Some(v) = known
            .lines()
            .find_map(|l| l.strip_prefix(pkg)?.strip_prefix(' '))
        {
            return Ok(v.to_string());
        }
        let v = self.ask_binary_version(pkg)?;
        // Whole or not at all: another run may read it meanwhile.
        let tmp = memo.with_extension(format!("{}", std::process::id()));
        if std::fs::write(&tmp, format!("{known}{pkg} {v}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &memo);
        }
        Ok(v)
    }

    fn ask_binary_version(&self, pkg: &str) -> Result<String> {
        let mut c = self.command("apt-cache");
        c.args(["show", "--no-all-versions", pkg]);
        let out = c.output().context("running apt-cache show")?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(str::to_string)
            .with_context(|| format!("Debian's lists have no package {pkg}; pass --kernel-tree DIR or --kernel IMAGE instead"))
    }

    /// The versioned image package a metapackage depends on
    /// (`linux-image-amd64` -> `linux-image-6.1.0-50-amd64`).
    pub fn image_package(&self, meta: &str) -> Result<String> {
        let mut c = self.command("apt-cache");
        c.args(["show", "--no-all-versions", meta]);
        let out = c.output().context("running apt-cache show")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter_map(|l| l.strip_prefix("Depends: "))
            .flat_map(|d| d.split(','))
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .find(|d| d.starts_with("linux-image-") && d != &meta)
            .map(str::to_string)
            .with_context(|| format!("Debian's lists have no {meta} depending on a kernel image"))
    }

    /// Downloads `pkg` at `version` (from whichever suite has it).
    pub fn download_deb_at(&self, pkg: &str, version: &str) -> Result<PathBuf> {
        self.download(pkg, &format!("{pkg}={version}"))
    }

    /// Downloads a binary package's .deb into the private cache.
    pub fn download_deb(&self, pkg: &str) -> Result<PathBuf> {
        self.download(pkg, pkg)
    }

    /// `apt-get download SPEC` into the private cache; `pkg`'s .deb.
    fn download(&self, pkg: &str, spec: &str) -> Result<PathBuf> {
        self.update()?;
        let dir = cache::dir("debs")?;
        let mut c = self.command("apt-get");
        c.args(["download", spec]).current_dir(&dir);
        ui::run_logged(
            c,
            &dir.join("download.log"),
            &format!("apt-get download {spec}"),
            |_| {},
        )?;
        newest_deb(&dir, pkg)
    }
}

/// The `.dsc` URI in `apt-get source --print-uris` output.
pub fn dsc_uri(print_uris: &str) -> Option<String> {
    print_uris
        .lines()
        .filter_map(|l| l.strip_prefix('\'')?.split_once('\''))
        .map(|(uri, _)| uri)
        .find(|uri| uri.ends_with(".dsc"))
        .map(str::to_string)
}

/// The error for a version the index lists but the mirror lacks, naming
/// the versions whose files are there.
pub fn not_on_mirror(pkg: &str, version: &str, others: &[(String, Option<bool>)]) -> String {
    let ok: Vec<&str> = others
        .iter()
        .filter(|(_, d)| *d == Some(true))
        .map(|(v, _)| v.as_str())
        .collect();
    format!(
        "the archive index lists {pkg}={version} but its files are not on the mirror (HTTP 404); versions that download: {}",
        if ok.is_empty() { "none found".to_string() } else { ok.join(", ") }
    )
}

fn newest_deb(dir: &Path, pkg: &str) -> Result<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
        .with_context(|| format!("apt-get download {pkg} left no .deb in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from `apt-get source --print-uris qemu=1:11.1.3+ds-1`.
    const PRINT_URIS: &str = "Reading package lists...\nNeed to get 39.3 MB of source archives.\n\
'http://deb.debian.org/debian/pool/main/q/qemu/qemu_11.1.3%2bds-1.dsc' qemu_11.1.3+ds-1.dsc 9743 SHA256:f956bb\n\
'http://deb.debian.org/debian/pool/main/q/qemu/qemu_11.1.3%2bds.orig.tar.xz' qemu_11.1.3+ds.orig.tar.xz 39239656 SHA256:502fe3\n";

    #[test]
    fn a_listed_version_missing_from_the_mirror_names_those_that_download() {
        assert_eq!(
            dsc_uri(PRINT_URIS).as_deref(),
            Some("http://deb.debian.org/debian/pool/main/q/qemu/qemu_11.1.3%2bds-1.dsc")
        );
        assert_eq!(dsc_uri("Reading package lists...\n"), None);
        // As measured: 11.1.3 and 11.1.2 answer 404, 10.2.2 downloads.
        let e = not_on_mirror(
            "qemu",
            "1:11.1.3+ds-1",
            &[
                ("1:10.2.2+ds-1".into(), Some(true)),
                ("1:11.1.2+ds-3".into(), Some(false)),
            ],
        );
        assert_eq!(
            e,
            "the archive index lists qemu=1:11.1.3+ds-1 but its files are not on the mirror (HTTP 404); versions that download: 1:10.2.2+ds-1"
        );
        assert!(not_on_mirror("qemu", "x", &[("y".into(), None)]).ends_with("none found"));
    }

    /// Release files by name, as /var/lib/apt/lists would hold them.
    fn lists<'a>(files: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string())
        }
    }

    #[test]
    fn the_mirror_is_debians_or_one_the_user_names() {
        let debian = vec![(
            PathBuf::from("/etc/apt/sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n".to_string(),
        )];
        let debian_release = [(
            "mirror.example_debian_dists_bookworm_InRelease",
            "Origin: Debian\nLabel: Debian\nSuite: oldstable\nCodename: bookworm\n",
        )];
        let ubuntu = vec![(
            PathBuf::from("/etc/apt/sources.list.d/ubuntu.sources"),
            "Types: deb\nURIs: http://archive.example/ubuntu/\nSuites: noble noble-updates\nComponents: main universe\n".to_string(),
        )];
        let ubuntu_release = [(
            "archive.example_ubuntu_dists_noble_InRelease",
            "Origin: Ubuntu\nLabel: Ubuntu\nSuite: noble\n",
        )];
        // A Debian machine: its own mirror and suite.
        assert_eq!(
            debian_mirror(&debian, &lists(&debian_release), None).unwrap(),
            ("http://mirror.example/debian".into(), "bookworm".into())
        );
        // Without a Release file yet, the suite's name tells.
        assert_eq!(
            debian_mirror(&debian, &lists(&[]), None).unwrap().1,
            "bookworm"
        );
        // An Ubuntu machine: Debian's suites are not there; the error says
        // what was found and names the variable.
        let e = debian_mirror(&ubuntu, &lists(&ubuntu_release), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not Debian's (http://archive.example/ubuntu/ noble, Origin: Ubuntu)")
                && e.contains(MIRROR_VAR),
            "{e}"
        );
        assert!(debian_mirror(&ubuntu, &lists(&[]), None).is_err());
        // A named mirror: taken, with the machine's suite only where the
        // machine is Debian, else the tool's defaults' suite.
        assert_eq!(
            debian_mirror(
                &ubuntu,
                &lists(&ubuntu_release),
                Some("http://named.example/debian")
            )
            .unwrap(),
            ("http://named.example/debian".into(), FALLBACK_SUITE.into())
        );
        assert_eq!(
            debian_mirror(
                &debian,
                &lists(&debian_release),
                Some("http://named.example/debian")
            )
            .unwrap(),
            ("http://named.example/debian".into(), "bookworm".into())
        );
        // A Release file naming another origin wins over a Debian-like name.
        let impostor = [(
            "mirror.example_debian_dists_bookworm_InRelease",
            "Origin: Someone\n",
        )];
        assert!(debian_mirror(&debian, &lists(&impostor), None).is_err());
        assert!(debian_mirror(&[], &lists(&[]), None)
            .unwrap_err()
            .to_string()
            .contains(MIRROR_VAR));
    }

    #[test]
    fn release_files_are_named_as_apt_keeps_them() {
        assert_eq!(
            release_files("http://deb.example/debian/", "bookworm"),
            [
                "deb.example_debian_dists_bookworm_InRelease",
                "deb.example_debian_dists_bookworm_Release"
            ]
        );
    }

    #[test]
    fn mirror_from_deb822_skips_security() {
        let sec = "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let main = "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        let files = vec![
            (PathBuf::from("/x/a.sources"), sec.to_string()),
            (PathBuf::from("/x/b.sources"), main.to_string()),
        ];
        assert_eq!(
            machine_mirror(&files),
            Some(("http://mirror.example/debian".into(), "bookworm".into()))
        );
    }

    #[test]
    fn mirror_from_one_line_format() {
        let list = "# x\ndeb [arch=amd64] http://m.example/debian bookworm main\n";
        let files = vec![(PathBuf::from("/etc/apt/sources.list"), list.to_string())];
        assert_eq!(
            machine_mirror(&files),
            Some(("http://m.example/debian".into(), "bookworm".into()))
        );
        assert_eq!(machine_mirror(&[]), None);
    }

    #[test]
    fn the_private_lists_carry_every_suite_and_madison_names_them() {
        let l = sources_list("http://deb.debian.org/debian", "bookworm");
        assert!(l.starts_with("deb http://deb.debian.org/debian bookworm main\n"));
        for s in SUITES {
            assert!(
                l.contains(&format!("deb-src http://deb.debian.org/debian {s} main\n")),
                "{s}"
            );
            assert!(
                l.contains(&format!("deb http://deb.debian.org/debian {s} main\n")),
                "{s}"
            );
        }
        // As apt-cache madison prints it (this machine's lists, trimmed).
        let m = "      qemu | 1:7.2+dfsg-7+deb12u18 | http://deb.debian.org/debian oldstable/main Sources
      qemu | 1:10.0.13+ds-0+deb13u1 | http://deb.debian.org/debian stable/main Sources
      qemu | 1:10.2.2+ds-1 | http://deb.debian.org/debian unstable/main Sources
qemu-system-x86 | 1:7.2+dfsg-7+deb12u18 | http://deb.debian.org/debian oldstable/main amd64 Packages
";
        assert_eq!(
            madison_sources(m),
            [
                ("1:7.2+dfsg-7+deb12u18".to_string(), "oldstable".to_string()),
                ("1:10.0.13+ds-0+deb13u1".into(), "stable".into()),
                ("1:10.2.2+ds-1".into(), "unstable".into()),
            ]
        );
    }
}
