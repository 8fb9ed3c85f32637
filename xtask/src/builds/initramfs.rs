//! The guest's initramfs: a newc cpio (the `cpio` crate) with the selftest
//! as /init, a console node, and the modules a modular kernel needs. Every
//! header field is fixed (mtime 0, root owner, inode by position), so the
//! same inputs give the same bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cpio::newc::{trailer, Builder};

use crate::cache;

/// Where /init finds the module list, relative to the archive's root.
fn module_list() -> &'static str {
    contract::MODULE_LIST.trim_start_matches('/')
}
const MODULE_DIR: &str = "lib/modules/uring-idle";

enum Item {
    Dir,
    File(Vec<u8>, u32),
    CharDev(u32, u32),
}

/// The archive's bytes for `init` and `modules` (load order kept).
pub fn archive(init: &[u8], modules: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    // The mount points, and every folder above the module list and the
    // modules, parents first.
    let mut dirs: Vec<String> = ["dev", "proc", "sys"].map(String::from).to_vec();
    let list_dir = Path::new(module_list()).parent().unwrap_or(Path::new(""));
    for d in [list_dir, Path::new(MODULE_DIR)] {
        let mut chain: Vec<String> = d
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .map(|a| a.display().to_string())
            .collect();
        chain.reverse();
        for c in chain {
            if !dirs.contains(&c) {
                dirs.push(c);
            }
        }
    }
    let mut items: Vec<(String, Item)> = dirs.into_iter().map(|d| (d, Item::Dir)).collect();
    // The kernel opens /dev/console for PID 1 before anything is mounted.
    items.push(("dev/console".into(), Item::CharDev(5, 1)));
    items.push(("init".into(), Item::File(init.to_vec(), 0o755)));
    let mut list = String::new();
    for (name, bytes) in modules {
        let path = format!("{MODULE_DIR}/{name}");
        list.push_str(&format!("/{path}\n"));
        items.push((path, Item::File(bytes.clone(), 0o644)));
    }
    if !modules.is_empty() {
        items.push((module_list().into(), Item::File(list.into_bytes(), 0o644)));
    }
    let mut out = Vec::new();
    for (ino, (name, item)) in items.into_iter().enumerate() {
        let b = Builder::new(&name)
            .ino(ino as u32 + 1)
            .uid(0)
            .gid(0)
            .mtime(0);
        match item {
            Item::Dir => {
                b.mode(0o040_755).nlink(2).write(&mut out, 0).finish()?;
            }
            Item::CharDev(major, minor) => {
                b.mode(0o020_600)
                    .nlink(1)
                    .rdev_major(major)
                    .rdev_minor(minor)
                    .write(&mut out, 0)
                    .finish()?;
            }
            Item::File(data, perm) => {
                let mut w = b
                    .mode(0o100_000 | perm)
                    .nlink(1)
                    .write(&mut out, data.len() as u32);
                w.write_all(&data)?;
                w.finish()?;
            }
        }
    }
    trailer(&mut out)?;
    Ok(out)
}

/// Writes the initramfs into the cache, named by its content.
pub fn pack(init: &Path, modules: &[PathBuf]) -> Result<PathBuf> {
    let init_bytes = std::fs::read(init).with_context(|| format!("reading {}", init.display()))?;
    let mut mods = Vec::new();
    for m in modules {
        let bytes = std::fs::read(m).with_context(|| format!("reading module {}", m.display()))?;
        let name = m
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        mods.push((name, bytes));
    }
    let bytes = archive(&init_bytes, &mods)?;
    let path = cache::dir("initramfs")?.join(format!("{}.cpio", cache::key([&bytes])));
    if !path.is_file() {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpio::newc::Reader;

    fn entries(mut bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut r = Reader::new(bytes).unwrap();
            if r.entry().is_trailer() {
                return out;
            }
            let e = r.entry();
            let (name, mode, maj, min) = (
                e.name().to_string(),
                e.mode(),
                e.rdev_major(),
                e.rdev_minor(),
            );
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut data).unwrap();
            out.push((name, mode, maj, min, data));
            bytes = r.finish().unwrap();
        }
    }

    #[test]
    fn same_inputs_same_bytes_and_the_expected_tree() {
        let mods = vec![
            ("libata.ko.xz".to_string(), b"L".to_vec()),
            ("ahci.ko.xz".to_string(), b"A".to_vec()),
        ];
        let a = archive(b"\x7fELF-init", &mods).unwrap();
        assert_eq!(a, archive(b"\x7fELF-init", &mods).unwrap());
        assert_ne!(a, archive(b"\x7fELF-other", &mods).unwrap());
        let e = entries(&a);
        let find = |n: &str| {
            e.iter()
                .find(|x| x.0 == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        assert_eq!(find("init").1, 0o100_755);
        assert_eq!(find("init").4, b"\x7fELF-init");
        assert_eq!(
            (
                find("dev/console").1,
                find("dev/console").2,
                find("dev/console").3
            ),
            (0o020_600, 5, 1)
        );
        assert_eq!(find("proc").1, 0o040_755);
        // Every folder, parents first: the mount points, then the ones above
        // the module list and the modules.
        let dirs: Vec<&str> = e
            .iter()
            .filter(|x| x.1 == 0o040_755)
            .map(|x| x.0.as_str())
            .collect();
        assert_eq!(
            dirs,
            [
                "dev",
                "proc",
                "sys",
                "etc",
                "etc/uring-idle",
                "lib",
                "lib/modules",
                "lib/modules/uring-idle"
            ]
        );
        // The list keeps load order: dependencies first.
        assert_eq!(
            find(module_list()).4,
            b"/lib/modules/uring-idle/libata.ko.xz\n/lib/modules/uring-idle/ahci.ko.xz\n"
        );
        assert_eq!(find("lib/modules/uring-idle/ahci.ko.xz").4, b"A");
    }

    #[test]
    fn no_modules_no_list() {
        let e = entries(&archive(b"x", &[]).unwrap());
        assert!(!e.iter().any(|x| x.0 == module_list()));
    }
}
