//! `cargo xtask check` and `build-qemu` on synthetic trees: each state is
//! classified with its exit code, bad inputs get clear errors, and the
//! user's tree is byte-for-byte unchanged after a run, even a killed one.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn check(tree: &Path) -> (i32, String) {
    let cache = tempfile::tempdir().unwrap();
    let o = xtask(
        &["check", "--qemu-tree", tree.to_str().unwrap()],
        cache.path(),
    );
    (o.status.code().unwrap(), out(&o))
}

#[test]
fn each_state_is_classified_with_its_exit_code() {
    let t = tempfile::tempdir().unwrap();
    let pre = qemu_tree(&t.path().join("pre"), "10.1.0", PRE_10_2_AIO);
    let vuln = qemu_tree(&t.path().join("vuln"), "10.2.1", VULNERABLE_AIO);
    debianize(&vuln, "10.2.1+ds-1");
    let other = qemu_tree(&t.path().join("other"), "10.2.2", &fixed_other_wording());
    let conflict = qemu_tree(&t.path().join("conflict"), "10.2.1", &conflicting());

    let (code, text) = check(&pre);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("unaffected: QEMU 10.1.0"), "{text}");

    let (code, text) = check(&vuln);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.starts_with("vulnerable: QEMU 10.2.1 (Debian 1:10.2.1+ds-1)"),
        "{text}"
    );

    let (code, text) = check(&other);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("fixed: "), "{text}");

    let (code, text) = check(&conflict);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.starts_with("conflict: ")
            && text.contains("hunk `@@ -")
            && text.contains("util/aio-posix.c"),
        "{text}"
    );
}

#[test]
fn our_patch_applied_with_git_am_to_the_vulnerable_tree_classifies_as_fixed() {
    let t = tempfile::tempdir().unwrap();
    let tree = qemu_tree(&t.path().join("q"), "10.2.1", VULNERABLE_AIO);
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(&tree)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", out(&o));
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "base"]);
    let patches = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patches");
    let series = fs::read_to_string(patches.join("series")).unwrap();
    for p in series.lines().filter(|l| !l.trim().is_empty()) {
        git(&["am", "-q", patches.join("qemu").join(p).to_str().unwrap()]);
    }
    let (code, text) = check(&tree);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("fixed: "), "{text}");
}

#[test]
fn bad_inputs_get_clear_errors_and_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("file");
    fs::write(&file, "x").unwrap();
    let kernelish = t.path().join("linux");
    fs::create_dir_all(kernelish.join("kernel")).unwrap();
    fs::write(kernelish.join("Makefile"), "").unwrap();
    fs::write(kernelish.join("Kconfig"), "").unwrap();
    let unreadable = qemu_tree(&t.path().join("unreadable"), "10.2.1", VULNERABLE_AIO);
    let aio = unreadable.join("util/aio-posix.c");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&aio, fs::Permissions::from_mode(0o000)).unwrap();
    // root reads a mode-000 file anyway; replace it with a directory then.
    if fs::read(&aio).is_ok() {
        fs::remove_file(&aio).unwrap();
        fs::create_dir(&aio).unwrap();
    }
    let cases = vec![
        (t.path().join("missing"), "does not exist"),
        (file, "is not a directory"),
        (t.path().to_path_buf(), "is not a QEMU source tree"),
        (kernelish, "looks like a Linux kernel tree"),
        (unreadable, "util/aio-posix.c"),
    ];
    for (path, want) in cases {
        let (code, text) = check(&path);
        assert_eq!(code, 2, "{}: {text}", path.display());
        assert!(
            text.contains(want) && text.starts_with("error: "),
            "{}: {text}",
            path.display()
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let o = xtask(&["check", "--qemu-src", "ubuntu"], cache.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("debian=VERSION"), "{}", out(&o));
}

fn build_qemu(tree: &Path, cache: &Path, baseline: &str) -> std::process::Output {
    xtask(
        &[
            "build-qemu",
            "--no-install",
            "--qemu-tree",
            tree.to_str().unwrap(),
            "--baseline",
            baseline,
        ],
        cache,
    )
}

/// The "binaries" of the fixture build are copies of the source they came from.
fn binaries(stdout: &str) -> (String, String) {
    let get = |k: &str| {
        let p = stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .to_string();
        fs::read_to_string(p).unwrap()
    };
    (get("baseline:"), get("patched:"))
}

#[test]
fn revert_fix_baseline_and_patched_build_leave_the_fixed_tree_untouched() {
    let t = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tree = qemu_tree(&t.path().join("fixed"), "10.2.2", &fixed_other_wording());
    let before = tree_hash(&tree);
    let o = build_qemu(&tree, cache.path(), "auto");
    assert!(o.status.success(), "{}", out(&o));
    let (base, patched) = binaries(&String::from_utf8_lossy(&o.stdout));
    // The baseline is the tree without its fix: byte-identical to the pre-fix source.
    assert_eq!(base, VULNERABLE_AIO);
    // The patched build is that baseline plus our patch.
    assert!(
        patched.contains("    aio_notify(ctx);\n}") && patched.contains("wake the loop now"),
        "{patched}"
    );
    assert_eq!(tree_hash(&tree), before, "the user's tree changed");
    // A second run finds both binaries in the cache.
    let o = build_qemu(&tree, cache.path(), "auto");
    assert!(
        o.status.success() && out(&o).contains("cached"),
        "{}",
        out(&o)
    );
    // as-is on a fixed tree would compare fixed with fixed: refused.
    let o = build_qemu(&tree, cache.path(), "as-is");
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("use --baseline revert-fix"), "{}", out(&o));
}

#[test]
fn vulnerable_tree_builds_as_is_then_patched_and_stays_untouched() {
    let t = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tree = qemu_tree(&t.path().join("vuln"), "10.2.1", VULNERABLE_AIO);
    let before = tree_hash(&tree);
    let o = build_qemu(&tree, cache.path(), "auto");
    assert!(o.status.success(), "{}", out(&o));
    let (base, patched) = binaries(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(base, VULNERABLE_AIO);
    assert!(patched.contains("aio_notify(ctx);"));
    assert_eq!(tree_hash(&tree), before);
    // Editing the tree invalidates the cached binaries and is picked up.
    fs::write(
        tree.join("util/aio-posix.c"),
        VULNERABLE_AIO.replace("epollfd = -1", "epollfd = -2"),
    )
    .unwrap();
    let o = build_qemu(&tree, cache.path(), "auto");
    assert!(o.status.success(), "{}", out(&o));
    let (base, _) = binaries(&String::from_utf8_lossy(&o.stdout));
    assert!(base.contains("epollfd = -2"));
}

#[test]
fn a_killed_run_leaves_the_tree_unchanged_and_the_next_run_recovers() {
    let t = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tree = qemu_tree(&t.path().join("fixed"), "10.2.2", &fixed_other_wording());
    let before = tree_hash(&tree);
    // configure sleeps, so the kill lands after the work copy was reverted.
    let mut child = Command::new(XTASK)
        .args([
            "build-qemu",
            "--no-install",
            "--qemu-tree",
            tree.to_str().unwrap(),
        ])
        .env("XDG_CACHE_HOME", cache.path())
        .env("FIXTURE_CONFIGURE_SLEEP", "30")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let work_src = || {
        walkdir::WalkDir::new(cache.path())
            .into_iter()
            .filter_map(|e| e.ok())
            .find(|e| e.path().ends_with("src/util/aio-posix.c"))
            .map(|e| e.path().to_path_buf())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while work_src()
        .and_then(|p| fs::read_to_string(p).ok())
        .is_none_or(|s| s.contains("aio_notify"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the work copy was never reverted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        tree_hash(&tree),
        before,
        "the user's tree changed after a killed run"
    );
    let o = build_qemu(&tree, cache.path(), "auto");
    assert!(o.status.success(), "{}", out(&o));
    let (base, patched) = binaries(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(base, VULNERABLE_AIO);
    assert!(patched.contains("aio_notify(ctx);"));
    assert_eq!(tree_hash(&tree), before);
}

/// A unified diff of `util/aio-posix.c` from `old` to `new`.
fn diff_patch(dir: &Path, name: &str, old: &str, new: &str) -> std::path::PathBuf {
    common::diff_patch(dir, name, "util/aio-posix.c", old, new)
}

/// Each `NAME: path` line of build-qemu's output, read as the fixture
/// "binary" (a copy of the source it was built from).
fn built(stdout: &str) -> std::collections::BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, p)| (k.to_string(), fs::read_to_string(p.trim()).unwrap()))
        .collect()
}

#[test]
fn variants_build_from_one_baseline_each_with_its_patches_and_the_tree_stays_untouched() {
    let t = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tree = qemu_tree(&t.path().join("vuln"), "10.2.1", VULNERABLE_AIO);
    let before = tree_hash(&tree);
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../patches/qemu/0001-aio-posix-wake-the-AioContext-after-queuing-an-io_ur.patch");
    let epoll = diff_patch(
        t.path(),
        "epoll",
        VULNERABLE_AIO,
        &VULNERABLE_AIO.replace("epollfd = -1", "epollfd = -3"),
    );
    let run = |extra: &[String]| {
        let mut a: Vec<String> = ["build-qemu", "--no-install", "--qemu-tree"]
            .map(String::from)
            .to_vec();
        a.push(tree.display().to_string());
        a.extend(extra.iter().cloned());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        xtask(&a, cache.path())
    };
    let variants = [
        "--variant".to_string(),
        format!("fix={}", ours.display()),
        "--variant".into(),
        format!("both={}+{}", ours.display(), epoll.display()),
        "--variant".into(),
        format!("epoll={}", epoll.display()),
    ];
    let o = run(&variants);
    assert!(o.status.success(), "{}", out(&o));
    let b = built(&String::from_utf8_lossy(&o.stdout));
    // A relative patch path is read from where the user stands, not from
    // the work copy the patch is applied in.
    let rel = Command::new(common::XTASK)
        .args(["build-qemu", "--no-install", "--qemu-tree"])
        .arg(&tree)
        .args(["--variant", "rel=epoll.patch"])
        .current_dir(t.path())
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    assert!(rel.status.success(), "{}", out(&rel));
    assert!(built(&String::from_utf8_lossy(&rel.stdout))["rel"].contains("epollfd = -3"));
    assert_eq!(b["baseline"], VULNERABLE_AIO);
    assert!(b["fix"].contains("aio_notify(ctx);") && b["fix"].contains("epollfd = -1"));
    assert!(b["both"].contains("aio_notify(ctx);") && b["both"].contains("epollfd = -3"));
    // Built after `both`: nothing of it may leak into this one.
    assert!(!b["epoll"].contains("aio_notify") && b["epoll"].contains("epollfd = -3"));
    assert_eq!(tree_hash(&tree), before, "the user's tree changed");
    // Cached by patch contents: a second run builds nothing.
    let o = run(&variants);
    assert!(
        o.status.success() && out(&o).contains("cached"),
        "{}",
        out(&o)
    );
    // The default patched build still comes from the same baseline.
    let o = run(&[]);
    let b = built(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(b["baseline"], VULNERABLE_AIO);
    assert!(b["patched"].contains("aio_notify(ctx);"));
    assert_eq!(tree_hash(&tree), before);
}

#[test]
fn bad_patches_and_variant_names_are_named_with_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tree = qemu_tree(&t.path().join("vuln"), "10.2.1", VULNERABLE_AIO);
    let before = tree_hash(&tree);
    let tree_s = tree.display().to_string();
    let notes = t.path().join("notes.txt");
    fs::write(&notes, "just some text\n").unwrap();
    let stale = diff_patch(
        t.path(),
        "stale",
        &VULNERABLE_AIO.replace("epollfd = -1", "epollfd = -7"),
        &VULNERABLE_AIO.replace("epollfd = -1", "epollfd = -8"),
    );
    let ok = diff_patch(
        t.path(),
        "ok",
        VULNERABLE_AIO,
        &VULNERABLE_AIO.replace("epollfd = -1", "epollfd = -3"),
    );
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--patch".into(), "/nonexistent/fix.patch".into()],
            vec!["/nonexistent/fix.patch: no such file".into()],
        ),
        (
            vec!["--patch".into(), notes.display().to_string()],
            vec![format!("{} is not a patch", notes.display())],
        ),
        (
            vec!["--variant".into(), format!("old={}", stale.display())],
            vec![
                "variant old".into(),
                "stale.patch".into(),
                "hunk `@@ -3,7 +3,7 @@".into(),
            ],
        ),
        (
            vec![
                "--variant".into(),
                format!("a={}", ok.display()),
                "--variant".into(),
                format!("a={}", ok.display()),
            ],
            vec!["variant name a is used twice".into()],
        ),
        (
            vec!["--variant".into(), format!("baseline={}", ok.display())],
            vec!["not `baseline`".into()],
        ),
        (
            vec!["--series".into(), t.path().display().to_string()],
            vec!["needs a `series` file".into()],
        ),
    ];
    for (args, want) in cases {
        let mut a = vec!["build-qemu", "--no-install", "--qemu-tree", &tree_s];
        a.extend(args.iter().map(String::as_str));
        let o = xtask(&a, cache.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", out(&o));
        for w in want {
            assert!(out(&o).contains(&w), "{args:?}: want {w:?} in {}", out(&o));
        }
        assert_eq!(tree_hash(&tree), before, "{args:?} changed the tree");
    }
}

#[test]
fn a_tree_without_the_device_config_folder_says_so() {
    let t = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let tree = qemu_tree(&t.path().join("old"), "10.2.1", VULNERABLE_AIO);
    fs::remove_dir_all(tree.join("configs")).unwrap();
    let o = build_qemu(&tree, cache.path(), "auto");
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("has no configs/devices/x86_64-softmmu: a QEMU tree from 10.2 on has it"),
        "{}",
        out(&o)
    );
}
