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
    // Two runs at once must not fill the same entry: the second waits, and
    // finds it filled.
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let _lock = Lock::acquire(&parent.join(format!(".fill-{name}")))?;
    if is_filled(dir) {
        return Ok(());
    }
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

/// What each cold build needs in the cache, measured here: the QEMU work
/// copy (394 MB) and build directory (333 MB); the unpacked kernel source
/// (1.5 GB) and its build directory (170 MB). Rounded up.
pub const QEMU_BUILD_BYTES: u64 = 900 << 20;
pub const KERNEL_SOURCE_BYTES: u64 = 1700 << 20;
pub const KERNEL_BUILD_BYTES: u64 = 250 << 20;

fn gib(b: u64) -> String {
    format!("{:.1} GB", b as f64 / (1u64 << 30) as f64)
}

/// The error for `free` bytes where `what` needs `need`, or none.
pub fn space_error(what: &str, need: u64, free: u64, root: &Path) -> Option<String> {
    (free < need).then(|| {
        format!(
            "not enough free space for {what}: it needs about {} in {} and that filesystem has {} free; \
             free {} there, or set XDG_CACHE_HOME to a cache on a larger filesystem",
            gib(need),
            root.display(),
            gib(free),
            gib(need - free)
        )
    })
}

/// Fails before a cold build that would run out of space in the cache.
pub fn ensure_free(what: &str, need: u64) -> Result<()> {
    let root = root()?;
    std::fs::create_dir_all(&root)?;
    let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())?;
    // SAFETY: statvfs fills the struct we pass.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Ok(()); // cannot tell: let the build say
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    match space_error(what, need, free, &root) {
        Some(e) => anyhow::bail!(e),
        None => Ok(()),
    }
}

/// Keeps the newest `keep` entries of `dir` (by modification time) and
/// deletes the rest; returns how many went.
pub fn prune(dir: &Path, keep: usize) -> Result<usize> {
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut gone = 0;
    for (_, p) in entries.into_iter().skip(keep) {
        if std::fs::remove_dir_all(&p).is_ok() {
            gone += 1;
        }
    }
    Ok(gone)
}

/// An exclusive lock on a cache directory (flock), held until dropped, so
/// two runs never build in the same directory at once.
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    pub fn acquire(dir: &Path) -> Result<Lock> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(".lock");
        let f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        flock(&f, &path, true, || {
            format!(
                "waiting for {} (another uring-idle run, or another step of this one, holds it)",
                dir.display()
            )
        })?;
        Ok(Lock { _file: f })
    }
}

/// flock(2) `f`, exclusive or shared: at once if free, else after saying
/// why we wait (`waiting`) and blocking.
fn flock(
    f: &std::fs::File,
    path: &Path,
    exclusive: bool,
    waiting: impl FnOnce() -> String,
) -> Result<()> {
    if try_flock(f, exclusive) {
        return Ok(());
    }
    crate::ui::info(&waiting());
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on an fd we own, blocking this time.
    if unsafe { libc::flock(f.as_raw_fd(), flock_mode(exclusive)) } != 0 {
        anyhow::bail!(
            "locking {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Takes the lock if nobody holds it in a conflicting mode.
fn try_flock(f: &std::fs::File, exclusive: bool) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on an fd we own.
    unsafe { libc::flock(f.as_raw_fd(), flock_mode(exclusive) | libc::LOCK_NB) == 0 }
}

fn flock_mode(exclusive: bool) -> libc::c_int {
    if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    }
}

/// The machine-wide lock that keeps measurements quiet: a run's guest
/// runs hold it exclusively, its builds hold it shared. So two runs' builds
/// may overlap, but no guest of one run boots beside the other's guests or
/// builds (one QEMU or compiler per core on this project's 2-core machine).
/// Measured without it: a null patch in one run was called a REGRESSION
/// (virtio-blk 0.19 -> 1.88 ms) while the other run booted beside it. In the
/// temp dir, not the cache, so runs with different caches take turns too.
pub struct MeasureLock {
    _file: std::fs::File,
}

impl MeasureLock {
    fn path() -> PathBuf {
        std::env::temp_dir().join("uring-idle-measure.lock")
    }

    /// For a run's guest runs: nothing else of ours runs meanwhile.
    pub fn guests() -> Result<MeasureLock> {
        Self::acquire_at(&Self::path(), true)
    }

    /// For a run's builds: beside other builds, never beside guest runs.
    pub fn builds() -> Result<MeasureLock> {
        Self::acquire_at(&Self::path(), false)
    }

    pub fn acquire_at(path: &Path, exclusive: bool) -> Result<MeasureLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(path)
            .or_else(|_| std::fs::File::open(path))
            .with_context(|| format!("opening {}", path.display()))?;
        flock(&f, path, exclusive, || {
            format!(
                "waiting for another uring-idle run's {} to finish ({}): measuring beside them would skew the figures",
                if exclusive { "guests or builds" } else { "guests" },
                path.display()
            )
        })?;
        Ok(MeasureLock { _file: f })
    }

    /// Whether a lock of this kind would have to wait now (for tests).
    pub fn would_wait(path: &Path, exclusive: bool) -> bool {
        // A lock taken here is released when `f` closes.
        std::fs::File::open(path).is_ok_and(|f| !try_flock(&f, exclusive))
    }
}

/// Mirrors `from` into the work copy `to`, leaving out `exclude` (rsync
/// patterns): only changed files are written, so make and ninja rebuild
/// only what changed. Never with the source's mtimes (`--no-times`): a
/// file a variant patched and `unapply` restored has the tree's content
/// but a fresh mtime, and giving it back the tree's old mtime left the
/// variant's object newer than its source, so the next build kept it.
/// Measured: a null QEMU patch built after the harmful variant carried the
/// harmful virtio-blk code (its binary exactly the harm's 64 bytes larger;
/// virtio-blk 0.2 -> 1.9 ms). A file rsync writes gets the current time.
/// `--checksum`, because the work copy's files carry their own mtimes, so
/// size and mtime cannot tell whether they match the tree's (0.8 s instead
/// of 0.4 s on a synced QEMU tree, and only when building).
pub fn mirror_tree(from: &Path, to: &Path, exclude: &[&str], what: &str) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let sh = xshell::Shell::new()?;
    let (from_s, to_s) = (format!("{}/", from.display()), format!("{}/", to.display()));
    let excludes: Vec<String> = exclude.iter().map(|e| format!("--exclude={e}")).collect();
    xshell::cmd!(
        sh,
        "rsync -a --no-times --delete --checksum {excludes...} {from_s} {to_s}"
    )
    .quiet()
    .run()
    .with_context(|| {
        format!(
            "rsync of {what} into its work copy (is rsync installed? `cargo xtask deps --install`)"
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_share_the_measure_lock_and_guests_take_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.lock");
        let build = MeasureLock::acquire_at(&p, false).unwrap();
        assert!(!MeasureLock::would_wait(&p, false), "builds overlap");
        assert!(MeasureLock::would_wait(&p, true), "guests wait for builds");
        drop(build);
        let guests = MeasureLock::acquire_at(&p, true).unwrap();
        assert!(MeasureLock::would_wait(&p, false), "builds wait for guests");
        assert!(MeasureLock::would_wait(&p, true), "guests wait for guests");
        drop(guests);
        assert!(!MeasureLock::would_wait(&p, true));
    }

    #[test]
    fn space_errors_say_how_much_and_where() {
        let e = space_error(
            "the QEMU build",
            900 << 20,
            300 << 20,
            Path::new("/c/uring-idle"),
        )
        .unwrap();
        assert!(
            e.contains("needs about 0.9 GB in /c/uring-idle")
                && e.contains("has 0.3 GB free")
                && e.contains("free 0.6 GB")
                && e.contains("XDG_CACHE_HOME"),
            "{e}"
        );
        assert!(space_error("x", 1, 2, Path::new("/")).is_none());
    }

    #[test]
    fn prune_keeps_the_newest() {
        let t = tempfile::tempdir().unwrap();
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            let d = t.path().join(n);
            std::fs::create_dir(&d).unwrap();
            let when =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            std::fs::File::open(&d)
                .unwrap()
                .set_times(std::fs::FileTimes::new().set_modified(when))
                .unwrap();
        }
        assert_eq!(prune(t.path(), 2).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["c", "d"]);
    }

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
