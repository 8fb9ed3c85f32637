//! Header discovery and its error text, as build.rs uses them.

#[path = "../build/uapi.rs"]
mod uapi;

use std::fs;
use std::path::Path;

fn fake_uapi(root: &Path) {
    fs::create_dir_all(root.join("linux")).unwrap();
    fs::write(root.join("linux/io_uring.h"), "/* fake */\n").unwrap();
}

#[test]
fn env_dir_wins_over_system() {
    let env = tempfile::tempdir().unwrap();
    let sys = tempfile::tempdir().unwrap();
    fake_uapi(env.path());
    fake_uapi(sys.path());
    let got = uapi::locate(Some(env.path().to_str().unwrap()), sys.path()).unwrap();
    assert_eq!(got.dir, env.path());
    assert!(got.from_env);
    assert_eq!(got.header, env.path().join("linux/io_uring.h"));
}

#[test]
fn unset_or_empty_env_uses_system() {
    let sys = tempfile::tempdir().unwrap();
    fake_uapi(sys.path());
    for env in [None, Some(""), Some("  ")] {
        let got = uapi::locate(env, sys.path()).unwrap();
        assert_eq!(got.dir, sys.path());
        assert!(!got.from_env);
    }
}

#[test]
fn env_dir_without_header_names_variable_and_path() {
    let env = tempfile::tempdir().unwrap();
    let err = uapi::locate(
        Some(env.path().to_str().unwrap()),
        Path::new("/nonexistent"),
    )
    .unwrap_err();
    assert!(err.contains("URING_SYS_UAPI="), "{err}");
    assert!(
        err.contains(&env.path().join("linux/io_uring.h").display().to_string()),
        "{err}"
    );
    assert!(err.contains("headers_install"), "{err}");
}

#[test]
fn install_hdr_path_instead_of_its_include_dir_gets_a_hint() {
    // `make headers_install INSTALL_HDR_PATH=X` writes X/include/linux/...
    let root = tempfile::tempdir().unwrap();
    fake_uapi(&root.path().join("include"));
    let err = uapi::locate(
        Some(root.path().to_str().unwrap()),
        Path::new("/nonexistent"),
    )
    .unwrap_err();
    assert!(err.contains("point URING_SYS_UAPI there"), "{err}");
    assert!(
        err.contains(&root.path().join("include").display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_env_dir_says_it_does_not_exist() {
    let err = uapi::locate(Some("/no/such/uapi"), Path::new("/nonexistent")).unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn missing_system_header_names_the_debian_package() {
    let sys = tempfile::tempdir().unwrap();
    let err = uapi::locate(None, sys.path()).unwrap_err();
    assert!(err.contains("linux-libc-dev"), "{err}");
}

#[test]
fn libclang_message_names_the_package() {
    let msg = uapi::libclang_missing("libclang.so not found");
    assert!(msg.contains("apt-get install libclang-dev"), "{msg}");
    assert!(msg.contains("libclang.so not found"), "{msg}");
}

#[test]
fn system_headers_are_found_on_this_machine() {
    // linux-libc-dev is a dependency of libc6-dev, so a build machine has it.
    let got = uapi::locate(None, Path::new(uapi::SYSTEM_DIR)).unwrap();
    assert_eq!(got.dir, Path::new("/usr/include"));
}
