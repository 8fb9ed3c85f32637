//! The fix as a patch series (`patches/`), and what it does to a tree:
//! classify, check, apply to a work copy, and remove an existing fix to
//! make a baseline. The user's tree is only ever read.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::tree::{self, QemuTree, AIO_POSIX};

/// `patches/` of this workspace.
pub fn patches_dir() -> PathBuf {
    crate::workspace().join("patches")
}

/// The QEMU patches in `patches/series` order.
pub fn series() -> Result<Vec<PathBuf>> {
    series_in(&patches_dir())
}

/// The patches a `series` file in `dir` lists, in order; each name is
/// looked up in `dir`, then in `dir/qemu` (the layout of `patches/`).
pub fn series_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let series = dir.join("series");
    let text = std::fs::read_to_string(&series).with_context(|| {
        format!(
            "reading {}: a series directory needs a `series` file listing its patches in order",
            series.display()
        )
    })?;
    let list: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let direct = dir.join(l);
            if direct.is_file() {
                direct
            } else {
                dir.join("qemu").join(l)
            }
        })
        .collect();
    if list.is_empty() {
        bail!("{} lists no patches", series.display());
    }
    for p in &list {
        if !p.is_file() {
            bail!(
                "{} names {}, which does not exist",
                series.display(),
                p.display()
            );
        }
    }
    Ok(list)
}

/// A named list of patch files applied in order to the baseline: our
/// `patches/`, a reviewer's `--patch`/`--series`, or one `--variant`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchSet {
    pub name: String,
    pub files: Vec<PathBuf>,
}

/// The text of a patch file, or why it is not one.
fn read_patch(path: &Path) -> Result<String> {
    if !path.is_file() {
        bail!("patch {}: no such file", path.display());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("patch {}: cannot read it as text", path.display()))?;
    let diff = text.lines().any(|l| l.starts_with("diff --git "))
        || (text.lines().any(|l| l.starts_with("--- "))
            && text.lines().any(|l| l.starts_with("+++ ")));
    if !diff || !text.lines().any(|l| l.starts_with("@@ ")) {
        bail!(
            "{} is not a patch: no diff with hunks in it (expected `git format-patch` or `diff -u` output)",
            path.display()
        );
    }
    Ok(text)
}

fn parse_variant_arg(s: &str) -> std::result::Result<PatchSet, String> {
    PatchSet::parse_variant(s).map_err(|e| format!("{e:#}"))
}

/// Which patches the patched build(s) get: `patches/` unless told otherwise.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PatchChoice {
    /// A patch file for the patched build instead of patches/ (repeatable, applied in order).
    #[arg(long = "patch", value_name = "FILE", conflicts_with_all = ["series", "variant"])]
    pub patch: Vec<PathBuf>,
    /// A directory with a `series` file listing its patches (like patches/), instead of patches/.
    #[arg(long, value_name = "DIR", conflicts_with = "variant")]
    pub series: Option<PathBuf>,
    /// NAME=PATCH[+PATCH...]: a patched variant, built incrementally from the same baseline and
    /// measured in the same run (repeatable; replaces the single patched build).
    #[arg(long = "variant", value_name = "NAME=PATCH[+PATCH...]", value_parser = parse_variant_arg)]
    pub variant: Vec<PatchSet>,
}

/// The baseline's name: the build a variant is measured against.
pub const BASELINE: &str = "baseline";
/// A patch set given without a name (`--patch`, `--series`, `patches/`).
pub const PATCHED: &str = "patched";
/// A QEMU binary measured alone (`--qemu-binary`).
pub const BINARY: &str = "binary";

impl PatchChoice {
    /// The patch sets to build, in order; names are unique.
    pub fn sets(&self) -> Result<Vec<PatchSet>> {
        match choose(
            &self.variant,
            self.series.as_deref(),
            &self.patch,
            PATCHED,
            "variant",
        )? {
            Some(sets) => Ok(sets),
            None => Ok(vec![PatchSet::ours()?]),
        }
    }
}

/// The patch sets one side's flags name, in order: its `--...variant`s,
/// else its series directory's patches or its patch files as one set
/// called `single`; `None` when none was given. Names must be unique;
/// `what` (`variant`, `kernel variant`) names the option in the error.
pub fn choose(
    variants: &[PatchSet],
    series: Option<&Path>,
    files: &[PathBuf],
    single: &str,
    what: &str,
) -> Result<Option<Vec<PatchSet>>> {
    let sets = if !variants.is_empty() {
        variants.to_vec()
    } else if let Some(dir) = series {
        vec![PatchSet::from_series_dir(single, dir)?]
    } else if !files.is_empty() {
        vec![PatchSet::from_files(single, files)?]
    } else {
        return Ok(None);
    };
    for (i, s) in sets.iter().enumerate() {
        if sets[..i].iter().any(|o| o.name == s.name) {
            bail!(
                "{what} name {} is used twice: give each --{} its own name",
                s.name,
                what.replace(' ', "-")
            );
        }
    }
    Ok(Some(sets))
}

impl PatchSet {
    /// This workspace's fix, `patches/`.
    pub fn ours() -> Result<PatchSet> {
        Ok(PatchSet {
            name: PATCHED.into(),
            files: series()?,
        })
    }

    /// Patch files given by name; each must exist and be a patch.
    pub fn from_files(name: &str, files: &[PathBuf]) -> Result<PatchSet> {
        if files.is_empty() {
            bail!("variant {name}: no patch files");
        }
        let mut abs = Vec::new();
        for f in files {
            read_patch(f)?;
            // git apply runs in the work copy: a relative path must not
            // be read from there.
            abs.push(
                f.canonicalize()
                    .with_context(|| format!("patch {}: cannot resolve its path", f.display()))?,
            );
        }
        Ok(PatchSet {
            name: name.into(),
            files: abs,
        })
    }

    /// The patches a series directory lists (`--series DIR`).
    pub fn from_series_dir(name: &str, dir: &Path) -> Result<PatchSet> {
        PatchSet::from_files(name, &series_in(dir)?)
    }

    /// `NAME=PATCH[+PATCH...]`, as `--variant` takes it.
    pub fn parse_variant(s: &str) -> Result<PatchSet> {
        PatchSet::parse_variant_of("--variant", s)
    }

    /// `NAME=PATCH[+PATCH...]` as the option `flag` takes it.
    pub fn parse_variant_of(flag: &str, s: &str) -> Result<PatchSet> {
        let Some((name, list)) = s.split_once('=') else {
            bail!("{flag} takes NAME=PATCH[+PATCH...], not {s:?}");
        };
        let name = name.trim();
        let ok_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok_name || name == BASELINE {
            bail!("{flag} {s:?}: the name must be letters, digits, - or _, and not `baseline`");
        }
        let files: Vec<PathBuf> = list
            .split('+')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            .collect();
        PatchSet::from_files(name, &files)
    }

    /// The key of the patches' contents, for caching builds.
    pub fn key(&self) -> Result<String> {
        let mut parts = Vec::new();
        for p in &self.files {
            parts.push(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
        }
        Ok(crate::cache::key(parts))
    }

    /// Each file with the SHA-256 of its contents, for the report.
    pub fn hashes(&self) -> Result<Vec<(PathBuf, String)>> {
        use sha2::{Digest, Sha256};
        self.files
            .iter()
            .map(|p| {
                let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                Ok((p.clone(), crate::cache::hex(&Sha256::digest(&bytes))))
            })
            .collect()
    }

    /// Applies the patches in order to a work directory (never the user's
    /// tree); a patch that does not apply is named with its failing hunk.
    pub fn apply(&self, work: &Path) -> Result<()> {
        for patch in &self.files {
            let text = read_patch(patch)?;
            if let Some(err) = git_apply(work, patch)? {
                bail!(
                    "variant {}: {}",
                    self.name,
                    describe_failure(patch, &text, &err)
                );
            }
        }
        Ok(())
    }

    /// Takes the patches back out, last first, so the work copy is the
    /// baseline again (with fresh mtimes, so the next build recompiles).
    pub fn unapply(&self, work: &Path) -> Result<()> {
        for patch in self.files.iter().rev() {
            let sh = git_shell(work)?;
            cmd!(sh, "git apply -R {patch}")
                .env_remove("GIT_DIR")
                .env_remove("GIT_WORK_TREE")
                .quiet()
                .run()
                .with_context(|| format!("reverting {} in {}", patch.display(), work.display()))?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// No `aio_add_sqe()`: QEMU before 10.2, never had the bug.
    Unaffected,
    /// The notify is in `aio_add_sqe()`.
    Fixed,
    /// `aio_add_sqe()` without the notify, and our patch applies.
    Vulnerable,
    /// `aio_add_sqe()` without the notify, and our patch does not apply.
    Conflict { detail: String },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Unaffected => "unaffected",
            State::Fixed => "fixed",
            State::Vulnerable => "vulnerable",
            State::Conflict { .. } => "conflict",
        }
    }

    /// Exit code of `cargo xtask check`.
    pub fn exit_code(&self) -> i32 {
        match self {
            State::Unaffected | State::Fixed => 0,
            State::Vulnerable => 1,
            State::Conflict { .. } => 2,
        }
    }
}

/// One line on where a tree stands, as `check` prints it.
pub fn summary(tree: &QemuTree, state: &State) -> String {
    let what = match state {
        State::Unaffected => "no aio_add_sqe() (QEMU before 10.2): never had the stall".to_string(),
        State::Fixed => "aio_add_sqe() notifies the AioContext: the fix is present".to_string(),
        State::Vulnerable => {
            "aio_add_sqe() without aio_notify(): needs the fix, and patches/ applies".to_string()
        }
        State::Conflict { detail } => {
            format!("aio_add_sqe() without aio_notify(), and the patch does not apply: {detail}")
        }
    };
    format!(
        "{}: QEMU {} at {}: {what}",
        state.name(),
        tree.describe(),
        tree.root.display()
    )
}

/// Where the tree stands. Reads `util/aio-posix.c`; the patch check runs on
/// copies of the files the series touches, in a scratch directory.
pub fn classify(tree: &QemuTree) -> Result<State> {
    let src = tree.read_aio_posix()?;
    let Some(body) = tree::aio_add_sqe_body(&src) else {
        return Ok(State::Unaffected);
    };
    if tree::notify_in_body(&src, body).is_some() {
        return Ok(State::Fixed);
    }
    Ok(match check(&tree.root)? {
        None => State::Vulnerable,
        Some(detail) => State::Conflict { detail },
    })
}

/// Files a unified diff touches, as `git apply` (-p1) reads them: both
/// sides of each `---`/`+++` pair less their first path component (`a/`,
/// `b/`, or a `diff -u` label's directory), `/dev/null` left out, and
/// both names of a rename.
pub fn touched_files(patch: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in patch.lines() {
        let path = if let Some(p) = l.strip_prefix("+++ ").or_else(|| l.strip_prefix("--- ")) {
            // A label may carry a tab and a timestamp after the name.
            let p = p.split('\t').next().unwrap_or_default().trim();
            if p == "/dev/null" {
                continue;
            }
            match p.split_once('/') {
                Some((_, rest)) if !rest.is_empty() => rest.to_string(),
                _ => continue,
            }
        } else if let Some(p) = l
            .strip_prefix("rename from ")
            .or_else(|| l.strip_prefix("rename to "))
        {
            p.trim().to_string()
        } else {
            continue;
        };
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Hunk headers per file: `(file, old_start, header line)`.
pub fn hunks(patch: &str) -> Vec<(String, u64, String)> {
    let mut file = String::new();
    let mut out = Vec::new();
    for l in patch.lines() {
        if let Some(f) = l.strip_prefix("+++ b/") {
            file = f.to_string();
        } else if let Some(rest) = l.strip_prefix("@@ -") {
            let start = rest
                .split([',', ' '])
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            out.push((file.clone(), start, l.to_string()));
        }
    }
    out
}

fn git_shell(dir: &Path) -> Result<Shell> {
    let sh = Shell::new().context("creating a shell")?;
    sh.change_dir(dir);
    // Never let git find a repository above the scratch or work directory.
    sh.set_var("GIT_CEILING_DIRECTORIES", dir.parent().unwrap_or(dir));
    Ok(sh)
}

/// Applies one patch in `dir`; `Some(stderr)` when git refused it.
fn git_apply(dir: &Path, patch: &Path) -> Result<Option<String>> {
    let sh = git_shell(dir)?;
    let out = cmd!(sh, "git apply --verbose {patch}")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .quiet()
        .ignore_status()
        .output()
        .context("running git apply")?;
    Ok((!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// Whether the series applies to the tree at `root`, checked on scratch
/// copies of the touched files. `Some(detail)` names the failing hunk.
pub fn check(root: &Path) -> Result<Option<String>> {
    let scratch = tempfile::Builder::new()
        .prefix("uring-idle-check")
        .tempdir()
        .context("creating a scratch directory")?;
    for patch in series()? {
        let text = std::fs::read_to_string(&patch)
            .with_context(|| format!("reading {}", patch.display()))?;
        for f in touched_files(&text) {
            let (from, to) = (root.join(&f), scratch.path().join(&f));
            if to.exists() {
                continue;
            }
            std::fs::create_dir_all(to.parent().unwrap())?;
            if from.is_file() {
                std::fs::copy(&from, &to).with_context(|| format!("reading {}", from.display()))?;
            }
        }
        if let Some(err) = git_apply(scratch.path(), &patch)? {
            return Ok(Some(describe_failure(&patch, &text, &err)));
        }
    }
    Ok(None)
}

/// Turns git apply's complaint into a sentence naming the hunk.
fn describe_failure(patch: &Path, text: &str, stderr: &str) -> String {
    let name = patch
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `error: patch failed: util/aio-posix.c:814`
    let failed = stderr
        .lines()
        .find_map(|l| l.strip_prefix("error: patch failed: "))
        .and_then(|r| {
            let (f, line) = r.rsplit_once(':')?;
            Some((f.to_string(), line.trim().parse::<u64>().ok()?))
        });
    match failed {
        Some((file, line)) => {
            let hunk = hunks(text)
                .into_iter()
                .find(|(f, start, _)| *f == file && *start == line);
            match hunk {
                Some((_, _, header)) => format!("{name}: hunk `{header}` does not apply to {file}"),
                None => format!("{name}: a hunk at {file}:{line} does not apply"),
            }
        }
        None => {
            let first = stderr
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or(stderr.trim());
            format!("{name}: does not apply ({first})")
        }
    }
}

/// The pre-fix text: `src` with the notify statement in `aio_add_sqe()`
/// removed, together with the comment block right above it and the blank
/// line that opens that block. Fails when there is no fix to remove.
pub fn revert_fix(src: &str) -> Result<String> {
    let body =
        tree::aio_add_sqe_body(src).context("no aio_add_sqe() definition: nothing to revert")?;
    let stmt = tree::notify_in_body(src, body.clone())
        .context("aio_add_sqe() has no aio_notify(): nothing to revert")?;
    // Whole lines: from the start of the statement's line to its newline.
    let mut start = src[..stmt.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = src[stmt.end..]
        .find('\n')
        .map(|i| stmt.end + i + 1)
        .unwrap_or(src.len());
    if !src[start..stmt.start].trim().is_empty() || !src[stmt.end..end].trim().is_empty() {
        bail!("{AIO_POSIX}: the aio_notify() in aio_add_sqe() shares its line with other code; remove it by hand");
    }
    // Walk up over the comment block that explains it.
    let lines_above = |s: usize| {
        src[..s.saturating_sub(1)]
            .rfind('\n')
            .map(|i| i + 1)
            .unwrap_or(0)
    };
    let mut in_comment = false;
    while start > body.start + 1 {
        let prev = lines_above(start);
        let l = src[prev..start].trim();
        let comment =
            l.starts_with("/*") || l.starts_with('*') || l.starts_with("//") || l.ends_with("*/");
        if comment {
            in_comment = true;
            start = prev;
        } else if l.is_empty() && in_comment {
            start = prev;
            break;
        } else {
            break;
        }
    }
    Ok(format!("{}{}", &src[..start], &src[end..]))
}

#[cfg(test)]
mod tests {

    #[test]
    fn touched_files_read_every_kind_of_diff_as_git_apply_does() {
        let git = "diff --git a/io_uring/x.c b/io_uring/x.c\n--- a/io_uring/x.c\n+++ b/io_uring/x.c\n@@ -1 +1 @@\n";
        assert_eq!(super::touched_files(git), ["io_uring/x.c"]);
        let plain = "--- linux.orig/include/uapi/linux/io_uring.h\t2026-12-04 10:00:00\n+++ linux/include/uapi/linux/io_uring.h\t2026-12-04 10:01:00\n@@ -1 +1 @@\n";
        assert_eq!(
            super::touched_files(plain),
            ["include/uapi/linux/io_uring.h"]
        );
        let new_and_gone = "--- /dev/null\n+++ b/new.c\n@@ -0,0 +1 @@\n--- a/old.c\n+++ /dev/null\n@@ -1 +0,0 @@\n";
        assert_eq!(super::touched_files(new_and_gone), ["new.c", "old.c"]);
        let rename = "diff --git a/include/uapi/a.h b/include/uapi/b.h\nsimilarity index 100%\nrename from include/uapi/a.h\nrename to include/uapi/b.h\n";
        assert_eq!(
            super::touched_files(rename),
            ["include/uapi/a.h", "include/uapi/b.h"]
        );
        // The mail's separator and diffstat are not files.
        assert!(super::touched_files("---\n io_uring/x.c | 2 +-\n").is_empty());
    }

    use super::*;

    #[test]
    fn series_lists_our_patch_and_it_touches_only_aio_posix() {
        let s = series().unwrap();
        assert_eq!(s.len(), 1);
        let text = std::fs::read_to_string(&s[0]).unwrap();
        assert_eq!(touched_files(&text), [AIO_POSIX]);
        assert!(text.contains("Subject: [PATCH] aio-posix: "));
        // One statement added, nothing removed.
        let added: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .map(|l| l[1..].trim())
            .collect();
        let code: Vec<_> = added
            .iter()
            .filter(|l| !l.is_empty() && !l.starts_with("/*") && !l.starts_with('*'))
            .collect();
        assert_eq!(code, [&"aio_notify(ctx);"]);
        let diff = &text[text.find("diff --git").unwrap()..text.rfind("\n-- \n").unwrap()];
        assert!(
            !diff
                .lines()
                .any(|l| l.starts_with('-') && !l.starts_with("---")),
            "{diff}"
        );
    }

    #[test]
    fn hunk_headers_are_found() {
        let h = hunks("+++ b/util/aio-posix.c\n@@ -814,5 +814,12 @@ void f()\n");
        assert_eq!(
            h,
            [(
                "util/aio-posix.c".to_string(),
                814,
                "@@ -814,5 +814,12 @@ void f()".to_string()
            )]
        );
    }

    #[test]
    fn failure_text_names_the_hunk() {
        let text = "+++ b/util/aio-posix.c\n@@ -814,5 +814,12 @@ void aio_add_sqe(x)\n";
        let d = describe_failure(Path::new("0001-x.patch"), text, "error: patch failed: util/aio-posix.c:814\nerror: util/aio-posix.c: patch does not apply\n");
        assert_eq!(d, "0001-x.patch: hunk `@@ -814,5 +814,12 @@ void aio_add_sqe(x)` does not apply to util/aio-posix.c");
        let d = describe_failure(
            Path::new("p"),
            text,
            "error: util/aio-posix.c: No such file or directory\n",
        );
        assert!(d.contains("No such file"), "{d}");
    }

    #[test]
    fn revert_refuses_without_a_fix() {
        let pre = "void aio_add_sqe(int a)\n{\n    x();\n}\n";
        assert!(format!("{:#}", revert_fix(pre).unwrap_err()).contains("nothing to revert"));
        assert!(revert_fix("int y;\n").is_err());
    }

    #[test]
    fn revert_removes_statement_comment_and_its_blank_line_only() {
        let pre = "void aio_add_sqe(int a)\n{\n    x();\n    y();\n}\n";
        let fixed = "void aio_add_sqe(int a)\n{\n    x();\n    y();\n\n    /*\n     * why\n     */\n    aio_notify(ctx);\n}\n";
        assert_eq!(revert_fix(fixed).unwrap(), pre);
        let bare = "void aio_add_sqe(int a)\n{\n    x();\n    y();\n    aio_notify(ctx);\n}\n";
        assert_eq!(revert_fix(bare).unwrap(), pre);
        let line_comment = "void aio_add_sqe(int a)\n{\n    x();\n    y();\n    // wake the loop\n    aio_notify(ctx);\n}\n";
        assert_eq!(revert_fix(line_comment).unwrap(), pre);
    }
}
