//! Synthetic QEMU-shaped trees in each state the tools must recognise, and
//! helpers to run the xtask binary against them with a private cache.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// aio-posix.c around aio_add_sqe() as QEMU 10.2.0/10.2.1 have it.
pub const VULNERABLE_AIO: &str = r#"/* Fixture shaped like QEMU's util/aio-posix.c */
#include "qemu/osdep.h"

void aio_context_setup(AioContext *ctx)
{
    ctx->epollfd = -1;
}

#ifdef CONFIG_LINUX_IO_URING
void aio_add_sqe(void (*prep_sqe)(struct io_uring_sqe *sqe, void *opaque),
                 void *opaque, CqeHandler *cqe_handler)
{
    AioContext *ctx = qemu_get_current_aio_context();
    ctx->fdmon_ops->add_sqe(ctx, prep_sqe, opaque, cqe_handler);
}
#endif /* CONFIG_LINUX_IO_URING */
"#;

/// The same with a fix in other words than ours (as upstream or a distro
/// backport might phrase it).
pub fn fixed_other_wording() -> String {
    VULNERABLE_AIO.replace(
        "cqe_handler);\n}",
        "cqe_handler);\n\n    /* Kick the event loop so the queued request is submitted promptly. */\n    aio_notify(ctx);\n}",
    )
}

/// aio_add_sqe() exists, unfixed, but reshaped so our hunk cannot apply.
pub fn conflicting() -> String {
    VULNERABLE_AIO.replace(
        "    ctx->fdmon_ops->add_sqe(ctx, prep_sqe, opaque, cqe_handler);\n}",
        "    trace_aio_add_sqe(ctx, opaque);\n    ctx->fdmon_ops->queue_sqe(ctx, prep_sqe, opaque, cqe_handler);\n}",
    )
}

pub const PRE_10_2_AIO: &str = "/* QEMU 10.1 */\nvoid aio_context_setup(AioContext *ctx)\n{\n}\n";

/// configure writes a build.ninja whose "QEMU binary" is a copy of
/// util/aio-posix.c: a build that takes a second and shows exactly which
/// source the binary was made from.
const FAKE_CONFIGURE: &str = r#"#!/bin/sh
src=$(cd "$(dirname "$0")" && pwd)
if [ -n "$FIXTURE_CONFIGURE_SLEEP" ]; then sleep "$FIXTURE_CONFIGURE_SLEEP"; fi
printf 'rule copy\n  command = cp $in $out\nbuild qemu-system-x86_64: copy %s/util/aio-posix.c\n' "$src" > build.ninja
"#;

pub fn qemu_tree(root: &Path, version: &str, aio: &str) -> PathBuf {
    fs::create_dir_all(root.join("util")).unwrap();
    fs::create_dir_all(root.join("include/block")).unwrap();
    // Where the device configuration uring-idle builds with goes.
    fs::create_dir_all(root.join("configs/devices/x86_64-softmmu")).unwrap();
    fs::write(root.join("VERSION"), format!("{version}\n")).unwrap();
    fs::write(root.join("include/block/aio.h"), "/* aio.h */\n").unwrap();
    fs::write(root.join("util/aio-posix.c"), aio).unwrap();
    fs::write(root.join("configure"), FAKE_CONFIGURE).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("configure"), fs::Permissions::from_mode(0o755)).unwrap();
    root.to_path_buf()
}

pub fn debianize(root: &Path, version: &str) {
    fs::create_dir_all(root.join("debian")).unwrap();
    fs::write(
        root.join("debian/changelog"),
        format!("qemu (1:{version}) unstable; urgency=medium\n\n  * x\n"),
    )
    .unwrap();
}

pub fn xtask(args: &[&str], cache: &Path) -> Output {
    Command::new(XTASK)
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap()
}

pub fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file's path, mode and bytes, hashed: "the tree is unchanged".
pub fn tree_hash(root: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let mut h = Sha256::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        h.update(
            e.path()
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_encoded_bytes(),
        );
        let m = e.metadata().unwrap();
        h.update(m.permissions().mode().to_le_bytes());
        if e.file_type().is_file() {
            h.update(fs::read(e.path()).unwrap());
        }
    }
    format!("{:x}", h.finalize())
}

/// The python of the private venv with the CI formats' validators.
pub fn python() -> PathBuf {
    xtask::venv::with("validators", xtask::venv::VALIDATORS).expect("the validators' venv (PyPI)")
}

/// Runs `script` with `arg` under that python; its stdout.
pub fn py(script: &str, arg: &Path) -> String {
    let o = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}\n{out}");
    out.into_owned()
}

/// Per suite: name, tests, failures, errors, skipped and properties, as
/// junitparser reads them from the cases themselves (not our attributes).
pub const JUNIT: &str = r#"
import sys, json
from junitparser import JUnitXml
xml = JUnitXml.fromfile(sys.argv[1])
out = []
for s in xml:
    kinds = [type(r).__name__ for case in s for r in case.result]
    out.append({"name": s.name, "tests": sum(1 for _ in s),
                "failures": kinds.count("Failure"), "errors": kinds.count("Error"),
                "skipped": kinds.count("Skipped"),
                "props": {p.name: p.value for p in s.properties()}})
print(json.dumps(out))
"#;

/// Validates a KCIDB file with KernelCI's schema (v5.3); prints the counts.
pub const KCIDB: &str = r#"
import sys, json, kcidb_io
data = json.load(open(sys.argv[1]))
kcidb_io.schema.V5_3.validate(data)
print(json.dumps({k: len(data.get(k, [])) for k in ("checkouts", "builds", "tests")}))
"#;

#[derive(serde::Deserialize, Debug)]
pub struct Suite {
    pub name: String,
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
    pub props: std::collections::BTreeMap<String, String>,
}

/// A unified diff of `file` (a path in the tree) from `old` to `new`, made
/// by diff(1) with git's a/ and b/ labels, written to DIR/NAME.patch.
pub fn diff_patch(dir: &Path, name: &str, file: &str, old: &str, new: &str) -> PathBuf {
    let (a, b) = (
        dir.join(format!("{name}.old")),
        dir.join(format!("{name}.new")),
    );
    fs::write(&a, old).unwrap();
    fs::write(&b, new).unwrap();
    let o = Command::new("diff")
        .args([
            "-u",
            "--label",
            &format!("a/{file}"),
            "--label",
            &format!("b/{file}"),
        ])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let p = dir.join(format!("{name}.patch"));
    fs::write(&p, &o.stdout).unwrap();
    p
}

/// Whether a process has ended (gone, or a zombie its new parent has not
/// reaped yet), within a second.
pub fn ended(pid: &str) -> bool {
    (0..20).any(|_| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
        let done = state.is_none_or(|s| s.starts_with('Z'));
        if !done {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        done
    })
}
