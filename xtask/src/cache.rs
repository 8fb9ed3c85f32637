//! The cache directory (`$XDG_CACHE_HOME/uring-idle`, else
//! `~/.cache/uring-idle`) and the keys that name what lives in it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub fn root() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(
            std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?,
        )
        .join(".cache"),
    };
    Ok(base.join("uring-idle"))
}

/// `root/sub`, created.
pub fn dir(sub: &str) -> Result<PathBuf> {
    let d = root()?.join(sub);
    std::fs::create_dir_all(&d)
        .with_context(|| format!("creating cache directory {}", d.display()))?;
    Ok(d)
}

/// A short, stable key from any number of parts.
pub fn key<I, S>(parts: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.as_ref().len() as u64).to_le_bytes());
        h.update(p.as_ref());
    }
    hex(&h.finalize()[..8])
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory's name for humans, followed by a key of its full path.
pub fn path_key(path: &Path) -> String {
    let name: String = path
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .unwrap_or_else(|| "root".into());
    format!("{name}-{}", key([path.as_os_str().as_encoded_bytes()]))
}

/// Marks a cache directory whose filling finished.
const FILLED: &str = ".complete";

/// Whether `dir` was filled completely by `refill`.
pub fn is_filled(dir: &Path) -> bool {
    dir.join(FILLED).is_file()
}

/// Empties `dir`, runs `fill` on it, and marks it filled only when `fill`
/// succeeded, so an interrupted download or unpack is redone next time.
pub fn refill(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fill(dir)?;
    std::fs::write(dir.join(FILLED), "")
        .with_context(|| format!("marking {} filled", dir.display()))?;
    Ok(())
}

/// Identity of a tree: trees this tool fetched and unpacked (`refill`ed
/// directories in the cache) never change, so their path is enough; any
/// other tree is fingerprinted.
pub fn tree_identity(root: &Path, exclude_top: &[&str]) -> Result<String> {
    if let (Ok(cache), Some(parent)) = (root_dir_sources(), root.parent()) {
        if root.starts_with(&cache) && is_filled(parent) {
            return Ok(key([root.as_os_str().as_encoded_bytes()]));
        }
    }
    tree_fingerprint(root, exclude_top)
}

fn root_dir_sources() -> Result<PathBuf> {
    Ok(root()?.join("sources"))
}

/// Identity of a source tree's contents: every file's path, size and
/// modification time (what make and ninja trust too), `.git` and in-tree
/// build directories excluded.
pub fn tree_fingerprint(root: &Path, exclude_top: &[&str]) -> Result<String> {
    let mut h = Sha256::new();
    let walker = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || !exclude_top.iter().any(|x| e.file_name() == *x));
    for entry in walker {
        let entry = entry.with_context(|| format!("walking {}", root.display()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        let meta = entry
            .metadata()
            .with_context(|| format!("stat {}", entry.path().display()))?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(meta.len().to_le_bytes());
        h.update(mtime.to_le_bytes());
    }
    Ok(hex(&h.finalize()[..8]))
}

/// An exclusive lock on a cache directory (flock), held until dropped, so
/// two runs never build in the same directory at once.
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    pub fn acquire(dir: &Path) -> Result<Lock> {
        use std::os::unix::io::AsRawFd;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(".lock");
        let f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            crate::ui::info(&format!(
                "waiting for another uring-idle run to release {}",
                dir.display()
            ));
            // SAFETY: as above, blocking this time.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                anyhow::bail!(
                    "locking {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(Lock { _file: f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_separate_parts() {
        assert_eq!(key(["a", "b"]), key(["a", "b"]));
        assert_ne!(key(["ab", ""]), key(["a", "b"]));
        assert_eq!(key(["x"]).len(), 16);
    }

    #[test]
    fn refill_marks_only_a_finished_fill_and_starts_from_empty() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("src");
        let e = refill(&d, |d| {
            std::fs::write(d.join("half"), "x")?;
            anyhow::bail!("download interrupted")
        });
        assert!(e.is_err() && !is_filled(&d));
        refill(&d, |d| Ok(std::fs::write(d.join("whole"), "x")?)).unwrap();
        assert!(is_filled(&d) && d.join("whole").is_file());
        assert!(
            !d.join("half").exists(),
            "a refill starts from an empty directory"
        );
    }

    #[test]
    fn fingerprint_follows_content_changes_and_ignores_excluded_dirs() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("util")).unwrap();
        std::fs::create_dir_all(t.path().join("build")).unwrap();
        std::fs::write(t.path().join("util/a.c"), "x").unwrap();
        let a = tree_fingerprint(t.path(), &["build"]).unwrap();
        std::fs::write(t.path().join("build/junk.o"), "y").unwrap();
        assert_eq!(a, tree_fingerprint(t.path(), &["build"]).unwrap());
        std::fs::write(t.path().join("util/a.c"), "xx").unwrap();
        assert_ne!(a, tree_fingerprint(t.path(), &["build"]).unwrap());
    }
}
