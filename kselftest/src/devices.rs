//! What to measure: block devices found in sysfs (guest), or paths given on
//! the command line (host), each opened for `O_DIRECT` and checked.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::workload::IO_SIZE;

/// How the disk reaches the guest, read from the drivers in its sysfs path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ahci,
    VirtioBlk,
    Nvme,
    Other,
    /// A regular file given with `--file` on a host.
    File,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ahci => "ahci",
            Transport::VirtioBlk => "virtio_blk",
            Transport::Nvme => "nvme",
            Transport::Other => "other",
            Transport::File => "file",
        }
    }

    fn from_driver(driver: &str) -> Option<Transport> {
        match driver {
            "ahci" => Some(Transport::Ahci),
            "virtio_blk" => Some(Transport::VirtioBlk),
            "nvme" => Some(Transport::Nvme),
            _ => None,
        }
    }
}

/// A device or file to measure, before it is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Test name stem: transport and kernel name, e.g. `ahci_sda`.
    pub name: String,
    pub path: PathBuf,
    pub transport: Transport,
}

/// Block devices that are never disks under test.
fn ignored(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd", "md", "dm-", "nbd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Walks up the device's canonical sysfs path and returns the first driver
/// that names a transport: `0000:00:1f.2` bound to `ahci` above `sda`,
/// `virtio1` bound to `virtio_blk` above `vda`, the PCI function bound to
/// `nvme` above `nvme0n1`.
pub fn classify(sys_block_entry: &Path) -> Transport {
    let Ok(mut dir) = fs::canonicalize(sys_block_entry) else {
        return Transport::Other;
    };
    loop {
        if let Ok(target) = fs::read_link(dir.join("driver")) {
            if let Some(t) = target
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(Transport::from_driver)
            {
                return t;
            }
        }
        if !dir.pop() || dir.as_os_str().len() <= 1 {
            return Transport::Other;
        }
    }
}

/// Block devices under `sysfs/block`, named for their transport, with their
/// device nodes under `dev`. Sorted by name so test numbers are stable.
pub fn discover(sysfs: &Path, dev: &Path) -> Result<Vec<Target>> {
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
        let transport = classify(&entry);
        out.push(Target {
            name: format!("{}_{}", transport.name(), n),
            path: dev.join(&n),
            transport,
        });
    }
    Ok(out)
}

/// A target for a path given on the command line: a block device (classified
/// through /sys/class/block) or a regular file.
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
        let transport = classify(&sysfs.join("class/block").join(base));
        Ok(Target {
            name: format!("{}_{clean}", transport.name()),
            path: path.into(),
            transport,
        })
    } else if meta.is_file() {
        Ok(Target {
            name: format!("file_{clean}"),
            path: path.into(),
            transport: Transport::File,
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
    let size = if target.transport == Transport::File {
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
        // The SCSI disk layer binds `sd` below the AHCI controller: not a transport.
        fs::create_dir_all(drivers.join("sd")).unwrap();
        symlink(
            drivers.join("sd"),
            dev.join("0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/driver"),
        )
        .unwrap();
        fs::create_dir_all(dev.join("0000:00:03.0")).unwrap();
        mk("0000:00:03.0/virtio1", None, "vda", 2048);
        fs::create_dir_all(drivers.join("virtio_blk")).unwrap();
        symlink(
            drivers.join("virtio_blk"),
            dev.join("0000:00:03.0/virtio1/driver"),
        )
        .unwrap();
        mk("0000:00:04.0/nvme/nvme0", Some("nvme"), "nvme0n1", 2048);
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
    fn discovery_classifies_each_transport_and_skips_the_rest() {
        let t = tempfile::tempdir().unwrap();
        fake_sysfs(t.path());
        let got = discover(t.path(), Path::new("/dev")).unwrap();
        let names: Vec<_> = got.iter().map(|t| (t.name.as_str(), t.transport)).collect();
        // Sorted by kernel name; loop0 and the empty sr0 are skipped.
        assert_eq!(
            names,
            [
                ("nvme_nvme0n1", Transport::Nvme),
                ("ahci_sda", Transport::Ahci),
                ("virtio_blk_vda", Transport::VirtioBlk),
                ("other_xvdz", Transport::Other),
            ]
        );
        assert_eq!(got[1].path, Path::new("/dev/sda"));
    }
}
