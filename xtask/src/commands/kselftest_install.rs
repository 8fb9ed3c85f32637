//! `cargo xtask kselftest-install DIR`: our selftest as a kselftest
//! collection, so a kernel CI that already runs `run_kselftest.sh` in its
//! guests runs ours too: `DIR/uring_idle/` with the static binary,
//! `settings` and `config`, and the `uring_idle:io_uring_idle_latency` entry
//! in `DIR/kselftest-list.txt`. The runner passes no arguments; the test
//! takes its targets from `URING_IDLE_TARGETS`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::patch::PatchSet;
use crate::{selftest, ui};

pub const COLLECTION: &str = "uring_idle";

#[derive(clap::Args, Debug)]
pub struct KselftestInstall {
    /// The kselftest install directory (where run_kselftest.sh and kselftest-list.txt live or will).
    pub dir: PathBuf,
    /// Copy run_kselftest.sh and kselftest/ from this kernel tree when DIR has no runner
    /// (default: the Debian linux-source in the cache, if there is one).
    #[arg(long, value_name = "DIR")]
    pub kernel_tree: Option<PathBuf>,
    /// A guest kernel patch (repeatable, in order; needs --kernel-tree): the selftest is built on
    /// that tree's uapi headers with the patches applied, as a kernel variant's guest runs it.
    #[arg(long = "kernel-patch", value_name = "FILE", requires = "kernel_tree")]
    pub kernel_patch: Vec<PathBuf>,
}

/// The kernel tree to take the runner from: the one named, or the cached one.
fn runner_tree(named: Option<&Path>) -> Option<PathBuf> {
    named
        .map(Path::to_path_buf)
        .or_else(|| crate::kernel::cached_tree_with("tools/testing/selftests/run_kselftest.sh"))
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

impl KselftestInstall {
    pub fn run(self) -> Result<i32> {
        if self.dir.exists() && !self.dir.is_dir() {
            bail!("{} is not a directory", self.dir.display());
        }
        let uapi = match (&self.kernel_tree, self.kernel_patch.is_empty()) {
            (Some(tree), false) => {
                let tree = crate::kernel::check_tree(tree)?;
                let set = PatchSet::from_files("kernel-patched", &self.kernel_patch)?;
                Some(crate::kernel_variant::uapi_of(&tree, &set)?)
            }
            _ => None,
        };
        ui::stage(&format!(
            "selftest (static, uapi from {})",
            uapi.as_ref()
                .map(|u| format!("the patched kernel tree, {}", u.display()))
                .unwrap_or_else(|| "the system headers".into())
        ));
        let st = selftest::build(uapi.as_deref())?;
        let ours = crate::workspace().join("kselftest");
        let col = self.dir.join(COLLECTION);
        std::fs::create_dir_all(&col).with_context(|| format!("creating {}", col.display()))?;
        copy(&st.binary, &col.join(selftest::BIN), 0o755)?;
        for f in ["settings", "config"] {
            copy(&ours.join(f), &col.join(f), 0o644)?;
        }
        let list = self.dir.join("kselftest-list.txt");
        let entry = format!("{COLLECTION}:{}", selftest::BIN);
        let mut text = std::fs::read_to_string(&list).unwrap_or_default();
        if !text.lines().any(|l| l.trim() == entry) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&entry);
            text.push('\n');
            std::fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
        }
        let runner = self.dir.join("run_kselftest.sh");
        if !runner.is_file() {
            match runner_tree(self.kernel_tree.as_deref()) {
                Some(tree) => {
                    let st = tree.join("tools/testing/selftests");
                    if !st.join("run_kselftest.sh").is_file() {
                        bail!("{} has no tools/testing/selftests/run_kselftest.sh: pass a Linux source tree", tree.display());
                    }
                    copy(&st.join("run_kselftest.sh"), &runner, 0o755)?;
                    std::fs::create_dir_all(self.dir.join("kselftest"))?;
                    for f in std::fs::read_dir(st.join("kselftest"))?.flatten() {
                        copy(&f.path(), &self.dir.join("kselftest").join(f.file_name()), 0o755)?;
                    }
                    ui::info(&format!("runner copied from {}", tree.display()));
                }
                None => ui::warn(&format!(
                    "{} has no run_kselftest.sh and no kernel tree was found to copy one from (--kernel-tree DIR)",
                    self.dir.display()
                )),
            }
        }
        println!("installed {entry} into {}", self.dir.display());
        println!(
            "run it: URING_IDLE_TARGETS=/path/to/scratch.img {} -c {COLLECTION}",
            runner.display()
        );
        Ok(0)
    }
}
