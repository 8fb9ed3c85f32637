//! A QEMU source tree: what it is (version, Debian package version) and
//! where `aio_add_sqe()` stands in it. Read-only: nothing here writes.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The file that holds `aio_add_sqe()` and the fix.
pub const AIO_POSIX: &str = "util/aio-posix.c";

#[derive(Clone, Debug)]
pub struct QemuTree {
    pub root: PathBuf,
    /// Contents of `VERSION`.
    pub version: String,
    /// The top entry of `debian/changelog`, for an unpacked source package.
    pub debian_version: Option<String>,
}

impl QemuTree {
    pub fn open(path: &Path) -> Result<QemuTree> {
        if !path.exists() {
            bail!("QEMU tree {} does not exist; pass --qemu-tree DIR with a QEMU source tree, or --qemu-src debian", path.display());
        }
        if !path.is_dir() {
            bail!(
                "QEMU tree {} is not a directory; pass the top of a QEMU source tree",
                path.display()
            );
        }
        let root = path
            .canonicalize()
            .with_context(|| format!("resolving {}", path.display()))?;
        let version_file = root.join("VERSION");
        let has_aio = root.join(AIO_POSIX).is_file();
        if !version_file.is_file()
            || !root.join("configure").is_file()
            || !root.join("include/block/aio.h").is_file()
        {
            let hint = if root.join("Makefile").is_file()
                && root.join("Kconfig").is_file()
                && root.join("kernel").is_dir()
            {
                " (it looks like a Linux kernel tree: pass that with --kernel-tree)"
            } else {
                ""
            };
            bail!(
                "{} is not a QEMU source tree: expected VERSION, configure and include/block/aio.h at its top{hint}",
                root.display()
            );
        }
        if !has_aio {
            bail!(
                "{}: QEMU tree without {AIO_POSIX} (QEMU before 2.x or a partial checkout?)",
                root.display()
            );
        }
        let version = std::fs::read_to_string(&version_file)
            .with_context(|| format!("reading {}", version_file.display()))?
            .trim()
            .to_string();
        let debian_version = std::fs::read_to_string(root.join("debian/changelog"))
            .ok()
            .and_then(|t| debian_version(&t));
        Ok(QemuTree {
            root,
            version,
            debian_version,
        })
    }

    pub fn aio_posix(&self) -> PathBuf {
        self.root.join(AIO_POSIX)
    }

    pub fn read_aio_posix(&self) -> Result<String> {
        let p = self.aio_posix();
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// `10.2.2 (Debian 1:10.2.2+ds-1)` or `10.2.2`.
    pub fn describe(&self) -> String {
        match &self.debian_version {
            Some(d) => format!("{} (Debian {d})", self.version),
            None => self.version.clone(),
        }
    }
}

/// The version in the first line of a Debian changelog:
/// `qemu (1:10.2.2+ds-1) unstable; urgency=medium`.
pub fn debian_version(changelog: &str) -> Option<String> {
    let first = changelog.lines().next()?;
    let open = first.find('(')?;
    let close = first[open..].find(')')? + open;
    Some(first[open + 1..close].to_string())
}

/// Blanks out C comments and string literals (same length, newlines kept) so
/// searches see only code and byte offsets still line up with the source.
pub fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            let end = src[i + 2..]
                .find("*/")
                .map(|e| i + 2 + e + 2)
                .unwrap_or(b.len());
            blank(&mut out[i..end]);
            i = end;
        } else if b[i..].starts_with(b"//") {
            let end = src[i..].find('\n').map(|e| i + e).unwrap_or(b.len());
            blank(&mut out[i..end]);
            i = end;
        } else if b[i] == b'"' || b[i] == b'\'' {
            let q = b[i];
            let mut j = i + 1;
            while j < b.len() && b[j] != q {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&mut out[i + 1..end.saturating_sub(1).max(i + 1)]);
            i = end;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

fn blank(s: &mut [u8]) {
    for c in s.iter_mut().filter(|c| **c != b'\n') {
        *c = b' ';
    }
}

/// Byte range of the body (between the braces) of the definition of
/// `aio_add_sqe()`, or None when the file has no such definition.
pub fn aio_add_sqe_body(src: &str) -> Option<Range<usize>> {
    let code = code_only(src);
    let mut from = 0;
    while let Some(pos) = code[from..].find("aio_add_sqe") {
        let start = from + pos;
        from = start + "aio_add_sqe".len();
        let before_ok = start == 0 || !is_ident(code.as_bytes()[start - 1]);
        let after = code[from..].trim_start();
        if !before_ok || !after.starts_with('(') {
            continue;
        }
        // A definition has its `{` before any `;`; a declaration or a call
        // meets `;` first.
        let rest = &code[from..];
        let (brace, semi) = (rest.find('{'), rest.find(';'));
        let Some(brace) = brace else { continue };
        if semi.is_some_and(|s| s < brace) {
            continue;
        }
        let open = from + brace;
        let mut depth = 0usize;
        for (k, ch) in code[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(open + 1..open + k);
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    None
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Range (within `src`) of the `aio_notify(...)` statement inside the body,
/// comments ignored: any argument counts, so upstream's wording and ours
/// and a backport's all qualify.
pub fn notify_in_body(src: &str, body: Range<usize>) -> Option<Range<usize>> {
    let code = code_only(src);
    let b = &code[body.clone()];
    let mut from = 0;
    while let Some(pos) = b[from..].find("aio_notify") {
        let start = from + pos;
        from = start + "aio_notify".len();
        if start > 0 && is_ident(b.as_bytes()[start - 1]) {
            continue;
        }
        let after = &b[from..];
        if !after.trim_start().starts_with('(') {
            continue;
        }
        let semi = after.find(';')?;
        return Some(body.start + start..body.start + from + semi + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRE: &str = "int x;\nvoid aio_add_sqe(void (*prep_sqe)(struct io_uring_sqe *sqe, void *opaque),\n                 void *opaque, CqeHandler *cqe_handler)\n{\n    AioContext *ctx = qemu_get_current_aio_context();\n    ctx->fdmon_ops->add_sqe(ctx, prep_sqe, opaque, cqe_handler);\n}\n";

    #[test]
    fn finds_the_definition_not_declarations_or_calls() {
        let src = format!("/* aio_add_sqe() is nice */\nvoid aio_add_sqe(int a);\nstatic void f(void) {{ aio_add_sqe(1); }}\n{PRE}");
        let body = aio_add_sqe_body(&src).unwrap();
        assert!(src[body].contains("fdmon_ops->add_sqe"));
        assert_eq!(aio_add_sqe_body("void aio_add_sqe(int a);\n"), None);
        assert_eq!(aio_add_sqe_body("void my_aio_add_sqe(void) { }\n"), None);
    }

    #[test]
    fn notify_in_a_comment_or_another_function_does_not_count() {
        let commented = PRE.replace(
            "cqe_handler);\n}",
            "cqe_handler);\n    /* aio_notify(ctx); */\n    // aio_notify(ctx);\n}",
        );
        let b = aio_add_sqe_body(&commented).unwrap();
        assert_eq!(notify_in_body(&commented, b), None);
        let elsewhere = format!("{PRE}void g(AioContext *ctx) {{ aio_notify(ctx); }}\n");
        let b = aio_add_sqe_body(&elsewhere).unwrap();
        assert_eq!(notify_in_body(&elsewhere, b), None);
        let other_arg = PRE.replace(
            "cqe_handler);\n}",
            "cqe_handler);\n    aio_notify(qemu_get_current_aio_context());\n}",
        );
        let b = aio_add_sqe_body(&other_arg).unwrap();
        let r = notify_in_body(&other_arg, b).unwrap();
        assert_eq!(&other_arg[r], "aio_notify(qemu_get_current_aio_context());");
    }

    #[test]
    fn debian_changelog_version() {
        assert_eq!(
            debian_version("qemu (1:10.2.2+ds-1) unstable; urgency=medium\n"),
            Some("1:10.2.2+ds-1".into())
        );
        assert_eq!(debian_version("garbage\n"), None);
    }

    #[test]
    fn code_only_keeps_offsets() {
        let s = "a /* b */ \"c;\" 'd' // e\nf";
        let c = code_only(s);
        assert_eq!(c.len(), s.len());
        assert_eq!(c.find('f'), s.find('f'));
        assert!(!c.contains('b') && !c.contains('e') && !c.contains(';'));
    }
}
