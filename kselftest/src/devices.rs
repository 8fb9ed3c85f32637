//! What to measure: block devices found in sysfs (guest), or paths given on
//! the command line (host), each opened for `O_DIRECT` and checked.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use contract::plan::IO_SIZE;

/// A device or file to measure, before it is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Device name and test-name stem: controller and kernel name, e.g. `ahci_sda`.
    pub name: String,
    pub path: PathBuf,
    /// The controller-table row (`contract::CONTROLLERS`), or `other` for a
    /// disk no row describes, or `file` for a regular file.
    pub controller: String,
    /// A regular file given with `--file` on a host.
    pub is_file: bool,
}

/// Block devices that are never disks under test.
fn ignored(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd", "md", "dm-", "nbd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The PCI slot of the root-bus function above a sysfs device path
/// (`.../pci0000:00/0000:00:1f.2/ata1/...` gives 0x1f).
pub fn root_slot(path: &Path) -> Option<u8> {
    let mut parts = path.iter().map(|p| p.to_string_lossy());
    parts.find(|p| p.starts_with("pci0000:"))?;
    let bdf = parts.next()?;
    let (_, dev_fn) = bdf.rsplit_once(':')?;
    let (dev, _) = dev_fn.split_once('.')?;
    u8::from_str_radix(dev, 16).ok()
}

/// Walks up the device's canonical sysfs path and collects the drivers
/// bound on the way (`sd` above `sda`, `ahci` on `0000:00:1f.2`, ...), with
/// the PCI slot it sits under.
pub fn sysfs_origin(sys_block_entry: &Path) -> (Option<u8>, Vec<String>) {
    let Ok(mut dir) = fs::canonicalize(sys_block_entry) else {
        return (None, vec![]);
    };
    let slot = root_slot(&dir);
    let mut drivers = Vec::new();
    loop {
        if let Ok(target) = fs::read_link(dir.join("driver")) {
            if let Some(n) = target.file_name().and_then(|n| n.to_str()) {
                drivers.push(n.to_string());
            }
        }
        if !dir.pop() || dir.as_os_str().len() <= 1 {
            return (slot, drivers);
        }
    }
}

/// The controller row a block device belongs to (see
/// `contract::controllers::identify`), or `other`.
pub fn classify(sys_block_entry: &Path, by_slot: bool) -> String {
    let (slot, drivers) = sysfs_origin(sys_block_entry);
    contract::controllers::identify(slot, &drivers, by_slot)
        .map(|c| c.name.to_string())
        .unwrap_or_else(|| "other".into())
}

/// Block devices under `sysfs/block`, named for their controller, with
/// their device nodes under `dev`. Sorted by kernel name.
pub fn discover(sysfs: &Path, dev: &Path, by_slot: bool) -> Result<Vec<Target>> {
    let block = sysfs.join("block");
    let mut names: Vec<String> = fs::read_dir(&block)
        .with_context(|| format!("listing {}", block.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !ignored(n))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let entry = block.join(&n);
        // An empty drive (no medium) reports size 0: nothing to read.
        let sectors: u64 = fs::read_to_string(entry.join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if sectors * 512 < IO_SIZE as u64 {
            continue;
        }
        let controller = classify(&entry, by_slot);
        out.push(Target {
            name: format!("{controller}_{n}"),
            path: dev.join(&n),
            controller,
            is_file: false,
        });
    }
    Ok(out)
}

/// The first disk of each requested controller, in the controller table's
/// order (the order the report uses), so test numbers are stable even when
/// probing order makes kernel names differ between boots.
pub fn in_table_order(found: Vec<Target>, wanted: &[String]) -> Vec<Target> {
    let mut picked: Vec<Target> = wanted
        .iter()
        .filter_map(|w| found.iter().find(|t| &t.controller == w).cloned())
        .collect();
    picked.sort_by_key(|t| contract::controllers::rank(&t.controller));
    picked
}

/// A target for a path given on the command line: a block device (named
/// through /sys/class/block by its driver) or a regular file.
pub fn from_path(path: &Path, sysfs: &Path) -> Result<Target> {
    let meta = fs::metadata(path)
        .with_context(|| format!("{}: cannot stat it (does it exist?)", path.display()))?;
    let base = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("target");
    let clean: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if meta.file_type().is_block_device() {
        let controller = classify(&sysfs.join("class/block").join(base), false);
        Ok(Target {
            name: format!("{controller}_{clean}"),
            path: path.into(),
            controller,
            is_file: false,
        })
    } else if meta.is_file() {
        Ok(Target {
            name: format!("file_{clean}"),
            path: path.into(),
            controller: "file".into(),
            is_file: true,
        })
    } else {
        bail!("{}: not a block device or a regular file", path.display())
    }
}

/// An open target: `O_DIRECT`, size known and large enough for one I/O.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub size: u64,
}

impl Opened {
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Number of whole `IO_SIZE` blocks.
    pub fn blocks(&self) -> u64 {
        self.size / IO_SIZE as u64
    }
}

pub fn open(target: &Target, write: bool) -> Result<Opened> {
    let path = &target.path;
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    let size = if target.is_file {
        file.metadata()
            .with_context(|| format!("{}: stat", path.display()))?
            .len()
    } else {
        block_size(&file).with_context(|| format!("{}: BLKGETSIZE64", path.display()))?
    };
    if size < IO_SIZE as u64 {
        bail!(
            "{}: {size} bytes is smaller than one {IO_SIZE}-byte I/O",
            path.display()
        );
    }
    Ok(Opened { file, size })
}

/// EINVAL from an `O_DIRECT` open means the filesystem cannot do direct
/// I/O; say so instead of printing "Invalid argument".
fn open_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::EINVAL) {
        anyhow::anyhow!(
            "{}: the filesystem does not support O_DIRECT; put the file on a disk-backed filesystem",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("{}: cannot open with O_DIRECT", path.display()))
    }
}

fn block_size(file: &File) -> std::io::Result<u64> {
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: the ioctl writes one u64 through the pointer.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A miniature sysfs shaped like a q35 guest's: AHCI, virtio-blk, NVMe,
    /// a loop device and an empty CD drive.
    fn fake_sysfs(root: &Path) {
        let dev = root.join("devices/pci0000:00");
        let drivers = root.join("bus/pci/drivers");
        let mk = |rel: &str, driver: Option<&str>, block: &str, sectors: u64| {
            let d = dev.join(rel);
            fs::create_dir_all(d.join("block").join(block)).unwrap();
            fs::write(
                d.join("block").join(block).join("size"),
                format!("{sectors}\n"),
            )
            .unwrap();
            if let Some(drv) = driver {
                fs::create_dir_all(drivers.join(drv)).unwrap();
                let base = rel.split('/').next().unwrap();
                let _ = symlink(drivers.join(drv), dev.join(base).join("driver"));
            }
            fs::create_dir_all(root.join("block")).unwrap();
            symlink(d.join("block").join(block), root.join("block").join(block)).unwrap();
        };
        mk(
            "0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0",
            Some("ahci"),
            "sda",
            2048,
        );
        // The SCSI disk layer binds `sd` below the AHCI controller: not a controller.
        fs::create_dir_all(drivers.join("sd")).unwrap();
        symlink(
            drivers.join("sd"),
            dev.join("0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/driver"),
        )
        .unwrap();
        fs::create_dir_all(dev.join("0000:00:04.0")).unwrap();
        mk("0000:00:04.0/virtio1", None, "vda", 2048);
        fs::create_dir_all(drivers.join("virtio_blk")).unwrap();
        symlink(
            drivers.join("virtio_blk"),
            dev.join("0000:00:04.0/virtio1/driver"),
        )
        .unwrap();
        // A second virtio disk at a slot no row of the table has.
        fs::create_dir_all(dev.join("0000:00:1e.0")).unwrap();
        mk("0000:00:1e.0/virtio2", None, "vdb", 2048);
        symlink(
            drivers.join("virtio_blk"),
            dev.join("0000:00:1e.0/virtio2/driver"),
        )
        .unwrap();
        mk("0000:00:03.0/nvme/nvme0", Some("nvme"), "nvme0n1", 2048);
        mk(
            "0000:00:1f.3/ata2/host1/target1:0:0/1:0:0:0",
            Some("ahci2"),
            "sr0",
            0,
        );
        fs::create_dir_all(root.join("devices/virtual/block/loop0")).unwrap();
        fs::write(root.join("devices/virtual/block/loop0/size"), "2048\n").unwrap();
        symlink(
            root.join("devices/virtual/block/loop0"),
            root.join("block/loop0"),
        )
        .unwrap();
        fs::create_dir_all(root.join("devices/virtual/block/xvdz")).unwrap();
        fs::write(root.join("devices/virtual/block/xvdz/size"), "2048\n").unwrap();
        symlink(
            root.join("devices/virtual/block/xvdz"),
            root.join("block/xvdz"),
        )
        .unwrap();
    }

    #[test]
    fn open_errors_name_the_path_and_the_cause() {
        let p = Path::new("/mnt/x.img");
        let e = open_error(p, std::io::Error::from_raw_os_error(libc::EINVAL)).to_string();
        assert!(
            e.contains("/mnt/x.img") && e.contains("does not support O_DIRECT"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            open_error(p, std::io::Error::from_raw_os_error(libc::EACCES))
        );
        assert!(
            e.contains("/mnt/x.img: cannot open with O_DIRECT") && e.contains("ermission denied"),
            "{e}"
        );
    }

    #[test]
    fn discovery_names_each_controller_and_skips_the_rest() {
        let t = tempfile::tempdir().unwrap();
        fake_sysfs(t.path());
        let got = discover(t.path(), Path::new("/dev"), true).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|t| (t.name.as_str(), t.controller.as_str()))
            .collect();
        // Sorted by kernel name; loop0 and the empty sr0 are skipped; by
        // slot, the virtio disk at 1e.0 belongs to no row of the table.
        assert_eq!(
            names,
            [
                ("nvme_nvme0n1", "nvme"),
                ("ahci_sda", "ahci"),
                ("virtio_blk_vda", "virtio_blk"),
                ("other_vdb", "other"),
                ("other_xvdz", "other"),
            ]
        );
        assert_eq!(got[1].path, Path::new("/dev/sda"));
        // In table order, one disk per requested controller.
        let wanted: Vec<String> = ["nvme", "ahci"].map(String::from).to_vec();
        let picked: Vec<_> = in_table_order(got, &wanted)
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(picked, ["ahci_sda", "nvme_nvme0n1"]);
        // On a host the driver alone names a disk, wherever it sits.
        let host = discover(t.path(), Path::new("/dev"), false).unwrap();
        assert_eq!(host[3].name, "virtio_blk_vdb");
    }

    #[test]
    fn root_slot_is_read_from_the_pci_path() {
        let p = Path::new(
            "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
        );
        assert_eq!(root_slot(p), Some(0x1f));
        assert_eq!(
            root_slot(Path::new("/sys/devices/virtual/block/loop0")),
            None
        );
    }
}
