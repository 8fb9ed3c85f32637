//! Where the io_uring uapi header comes from. Shared by `build/main.rs` and the
//! tests (through `#[path]`), so discovery and its error text are unit-tested.

use std::path::{Path, PathBuf};

/// Environment variable naming a directory of exported uapi headers
/// (the `usr/include` written by `make headers_install`).
pub const ENV: &str = "URING_SYS_UAPI";

/// Where Debian's `linux-libc-dev` puts the headers.
pub const SYSTEM_DIR: &str = "/usr/include";

/// The header, relative to a uapi include directory.
pub const HEADER: &str = "linux/io_uring.h";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uapi {
    /// The include directory handed to clang and cc.
    pub dir: PathBuf,
    /// `dir/linux/io_uring.h`.
    pub header: PathBuf,
    /// True when the directory came from `URING_SYS_UAPI`.
    pub from_env: bool,
}

/// Picks the uapi directory: `URING_SYS_UAPI` when set (and non-empty), else
/// the system headers. Errors are complete sentences naming the fix.
pub fn locate(env_value: Option<&str>, system_dir: &Path) -> Result<Uapi, String> {
    let (dir, from_env) = match env_value.map(str::trim) {
        Some(v) if !v.is_empty() => (PathBuf::from(v), true),
        _ => (system_dir.to_path_buf(), false),
    };
    let header = dir.join(HEADER);
    if header.is_file() {
        return Ok(Uapi {
            dir,
            header,
            from_env,
        });
    }
    Err(if from_env {
        let hint = if dir.join("include").join(HEADER).is_file() {
            format!(
                " (it exists under {}: point {ENV} there)",
                dir.join("include").display()
            )
        } else if !dir.is_dir() {
            " (that directory does not exist)".to_string()
        } else {
            String::new()
        };
        format!(
            "{ENV}={} has no {HEADER}: looked for {}{hint}. Set {ENV} to the `usr/include` \
             directory written by `make headers_install INSTALL_HDR_PATH=DIR` in a kernel tree \
             (that is DIR/include), or unset it to use the system headers.",
            dir.display(),
            header.display()
        )
    } else {
        format!(
            "no {HEADER} in the system headers: looked for {}. Install the uapi headers \
             (Debian: apt-get install linux-libc-dev) or set {ENV} to a kernel's exported \
             headers (make headers_install).",
            header.display()
        )
    })
}

/// The sentence printed when libclang cannot be loaded.
pub fn libclang_missing(detail: &str) -> String {
    format!(
        "bindgen needs libclang and it could not be loaded ({detail}). Install it \
         (Debian/Ubuntu: apt-get install libclang-dev), or point LIBCLANG_PATH at the \
         directory holding libclang.so."
    )
}
