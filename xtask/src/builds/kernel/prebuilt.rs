//! A prebuilt guest kernel: its image's release, and the modules its disks
//! need, in load order, from its modules directory; Debian's
//! linux-image-amd64 fetched into the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use contract::Controller;

use super::{bzimage_version, Kernel};
use crate::fetch::Apt;
use crate::{cache, ui};

/// Debian's current prebuilt kernel (the package `linux-image-amd64` points
/// at) unpacked into the cache, with modules.dep made by depmod (the .deb
/// ships none: its postinst makes it). Returns the image and modules dir.
pub(super) fn debian_image() -> Result<(PathBuf, PathBuf)> {
    ui::stage("guest kernel: Debian's prebuilt linux-image-amd64");
    let apt = Apt::new()?;
    apt.update()?;
    let pkg = apt.image_package("linux-image-amd64")?;
    let base = cache::dir("sources")?.join(&pkg);
    let root = base.join("root");
    let release = pkg.trim_start_matches("linux-image-").to_string();
    let (image, modules) = (
        root.join(format!("boot/vmlinuz-{release}")),
        root.join(format!("lib/modules/{release}")),
    );
    if cache::is_filled(&base) {
        return Ok((image, modules));
    }
    cache::refill(&base, |base| {
        ui::info(&format!("downloading {pkg}"));
        let deb = apt.download_deb(&pkg)?;
        let log = base.join("unpack.log");
        let mut c = Command::new("dpkg-deb");
        c.arg("-x").arg(&deb).arg(&root);
        ui::run_logged(c, &log, "dpkg-deb -x", |_| {})?;
        let _ = std::fs::remove_file(&deb);
        let mut c = Command::new("depmod");
        c.arg("-b").arg(&root).arg(&release);
        ui::run_logged(c, &log, "depmod (install kmod)", |_| {})?;
        if !image.is_file() || !modules.join("modules.dep").is_file() {
            bail!(
                "{pkg} did not unpack to {} and {}",
                image.display(),
                modules.display()
            );
        }
        Ok(())
    })?;
    Ok((image, modules))
}

/// Modules the disks of `ctrls` need, by module name, each once, in table
/// order.
pub fn guest_modules(ctrls: &[&Controller]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for m in ctrls.iter().flat_map(|c| c.modules) {
        if !v.contains(m) {
            v.push(m);
        }
    }
    v
}

/// Load order for `wanted` from a modules.dep: each module's dependencies
/// (deepest first) before it, each once. Paths are relative to the dir.
pub fn module_order(modules_dep: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let mut deps = std::collections::HashMap::new();
    let name_of = |path: &str| -> String {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    for line in modules_dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            name_of(module),
            (
                module.to_string(),
                rest.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
        );
    }
    let mut order: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for w in wanted {
        let Some((path, its_deps)) = deps.get(&w.replace('-', "_")) else {
            missing.push(*w);
            continue;
        };
        // modules.dep lists dependencies so that loading them last-to-first works.
        for d in its_deps.iter().rev().chain(std::iter::once(path)) {
            if !order.contains(d) {
                order.push(d.clone());
            }
        }
    }
    if !missing.is_empty() {
        // Not in modules.dep means built in (or absent): only an error when
        // the image does not have them built in, which the guest reports.
        ui::info(&format!(
            "not modules in this kernel (built in?): {}",
            missing.join(", ")
        ));
    }
    Ok(order)
}

pub(super) fn prebuilt(
    image: &Path,
    modules: Option<&Path>,
    ctrls: &[&Controller],
) -> Result<Kernel> {
    let bytes = std::fs::read(image)
        .with_context(|| format!("reading kernel image {}", image.display()))?;
    let version = bzimage_version(&bytes).with_context(|| {
        format!(
            "{} is not an x86 bzImage (no HdrS boot header); pass a kernel image built for x86_64",
            image.display()
        )
    })?;
    let release = version
        .split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_string();
    let mut list = Vec::new();
    if let Some(dir) = modules {
        let dep = dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep).with_context(|| {
            format!("{} has no modules.dep: pass the kernel's /lib/modules/RELEASE directory (run depmod there first)", dir.display())
        })?;
        if dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy() != release)
        {
            ui::warn(&format!(
                "modules directory {} does not match the image's release {release}",
                dir.display()
            ));
        }
        list = module_order(&text, &guest_modules(ctrls))?
            .into_iter()
            .map(|rel| dir.join(rel))
            .collect();
    }
    Ok(Kernel {
        image: image.canonicalize()?,
        uapi: None,
        modules: list,
        release,
        source: format!("image {}", image.display()),
        build_s: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_from_the_table_once_each() {
        let ctrls: Vec<&Controller> = ["ahci", "virtio_blk", "nvme"]
            .iter()
            .map(|n| contract::controllers::by_name(n).unwrap())
            .collect();
        assert_eq!(
            guest_modules(&ctrls),
            ["ahci", "sd_mod", "virtio_pci", "virtio_blk", "nvme"]
        );
    }

    #[test]
    fn module_order_puts_dependencies_first_once() {
        let dep = "kernel/drivers/ata/ahci.ko.xz: kernel/drivers/ata/libahci.ko.xz kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz\n\
                   kernel/drivers/ata/libahci.ko.xz: kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz\n\
                   kernel/drivers/scsi/sd_mod.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz\n\
                   kernel/drivers/nvme/host/nvme.ko.xz: kernel/drivers/nvme/host/nvme-core.ko.xz\n";
        let o = module_order(dep, &["ahci", "sd_mod", "nvme", "virtio_blk"]).unwrap();
        assert_eq!(
            o,
            [
                "kernel/drivers/scsi/scsi_mod.ko.xz",
                "kernel/drivers/ata/libata.ko.xz",
                "kernel/drivers/ata/libahci.ko.xz",
                "kernel/drivers/ata/ahci.ko.xz",
                "kernel/drivers/scsi/sd_mod.ko.xz",
                "kernel/drivers/nvme/host/nvme-core.ko.xz",
                "kernel/drivers/nvme/host/nvme.ko.xz",
            ]
        );
    }
}
