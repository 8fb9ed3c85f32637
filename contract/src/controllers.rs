//! The disk controllers: one row each, and everything else derives from it
//! (QEMU arguments, the guest kernel's options and modules, how the guest
//! recognises the disk, the report's order and the verdict's roles).
//!
//! Each controller sits at its own PCI slot on the q35 root bus, so the
//! guest can tell apart rows that share a driver (virtio-blk with and
//! without ioeventfd): it reads the slot from the disk's sysfs path and
//! checks that the expected driver is bound there.

use crate::{bail, Result};

/// What the code predicts for a controller without the fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Its MMIO or port I/O handler starts block I/O in the vCPU thread: the
    /// queued SQE waits for the main loop. Expected to stall.
    Candidate,
    /// Its requests reach the AioContext through a notifying path (ioeventfd,
    /// a bottom half, an iothread). Expected not to stall: the yardstick.
    Control,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Controller {
    /// Short name: test names, `--controllers`, the report.
    pub name: &'static str,
    /// What it is, for people.
    pub title: &'static str,
    pub role: Role,
    /// Why it does or does not stall, in a few words.
    pub mechanism: &'static str,
    /// PCI slot on the q35 root bus (function 0, except AHCI's built-in 1f.2).
    pub slot: u8,
    /// `-object` values, with the placeholders of `devices`.
    pub objects: &'static [&'static str],
    /// `-device` values in order. `{id}` is this controller's QEMU id,
    /// `{addr}` its PCI slot, `{drive}` the id of its `-drive`.
    pub devices: &'static [&'static str],
    /// Kernel options a built guest kernel needs for it (`kselftest/config`
    /// holds every one).
    pub kconfig: &'static [&'static str],
    /// Modules a distro kernel must load for it, by module name.
    pub modules: &'static [&'static str],
    /// Drivers bound between the PCI function and the disk in sysfs, any of
    /// which marks the disk as this controller's.
    pub drivers: &'static [&'static str],
}

pub const CONTROLLERS: &[Controller] = &[
    Controller {
        name: "ahci",
        title: "AHCI (ICH9, built into q35)",
        role: Role::Candidate,
        mechanism: "PxCI MMIO write runs the command in the vCPU thread",
        slot: 0x1f,
        objects: &[],
        devices: &["ide-hd,bus=ide.0,drive={drive}"],
        kconfig: &[
            "CONFIG_ATA=y",
            "CONFIG_SATA_AHCI=y",
            "CONFIG_SCSI=y",
            "CONFIG_BLK_DEV_SD=y",
        ],
        modules: &["ahci", "sd_mod"],
        drivers: &["ahci"],
    },
    Controller {
        name: "virtio_blk",
        title: "virtio-blk (PCI, ioeventfd on: the default)",
        role: Role::Control,
        mechanism: "ioeventfd: the kick is handled in the AioContext's thread",
        slot: 0x04,
        objects: &[],
        devices: &["virtio-blk-pci,addr={addr},drive={drive}"],
        kconfig: &[
            "CONFIG_VIRTIO_MENU=y",
            "CONFIG_VIRTIO=y",
            "CONFIG_VIRTIO_PCI=y",
            "CONFIG_VIRTIO_BLK=y",
        ],
        modules: &["virtio_pci", "virtio_blk"],
        drivers: &["virtio_blk"],
    },
    Controller {
        name: "nvme",
        title: "NVMe",
        role: Role::Control,
        mechanism: "doorbell MMIO schedules a bottom half, which notifies",
        slot: 0x03,
        objects: &[],
        devices: &["nvme,serial=uringidle,addr={addr},drive={drive}"],
        kconfig: &["CONFIG_BLK_DEV_NVME=y"],
        modules: &["nvme"],
        drivers: &["nvme"],
    },
];

/// Today's fast set: one affected controller and two controls.
pub const DEFAULT: &[&str] = &["ahci", "virtio_blk", "nvme"];

pub fn names() -> Vec<&'static str> {
    CONTROLLERS.iter().map(|c| c.name).collect()
}

pub fn by_name(name: &str) -> Result<&'static Controller> {
    match CONTROLLERS.iter().find(|c| c.name == name) {
        Some(c) => Ok(c),
        None => bail!(
            "unknown controller {name:?}; valid names: {}",
            names().join(", ")
        ),
    }
}

/// Position in the table: the report's row order.
pub fn rank(name: &str) -> usize {
    CONTROLLERS
        .iter()
        .position(|c| c.name == name)
        .unwrap_or(CONTROLLERS.len())
}

/// The controller a disk belongs to, from its PCI slot and the drivers bound
/// on its sysfs path. `by_slot` trusts the slot (a guest the xtask built,
/// where every controller has its own); otherwise the first row whose
/// driver is bound there names it (a host's disks).
pub fn identify(
    slot: Option<u8>,
    drivers: &[String],
    by_slot: bool,
) -> Option<&'static Controller> {
    let bound = |c: &&Controller| c.drivers.iter().any(|d| drivers.iter().any(|x| x == d));
    if by_slot {
        return CONTROLLERS
            .iter()
            .filter(|c| Some(c.slot) == slot)
            .find(bound);
    }
    CONTROLLERS.iter().find(bound)
}

impl Controller {
    /// QEMU's id for this controller's device (unique: one row, one slot).
    pub fn qemu_id(&self) -> String {
        format!("c{:02x}", self.slot)
    }

    fn fill(&self, template: &str, drive: &str) -> String {
        template
            .replace("{id}", &self.qemu_id())
            .replace("{addr}", &format!("{:#04x}", self.slot))
            .replace("{drive}", drive)
    }

    /// `(flag, value)` pairs that attach this controller with its disk on
    /// the `-drive` whose id is `drive`.
    pub fn qemu_args(&self, drive: &str) -> Vec<(&'static str, String)> {
        self.objects
            .iter()
            .map(|o| ("-object", self.fill(o, drive)))
            .chain(
                self.devices
                    .iter()
                    .map(|d| ("-device", self.fill(d, drive))),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_slots_are_unique() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CONTROLLERS.len());
        let mut slots: Vec<u8> = CONTROLLERS.iter().map(|c| c.slot).collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), CONTROLLERS.len());
        for d in DEFAULT {
            by_name(d).unwrap();
        }
    }

    #[test]
    fn every_template_is_filled() {
        for c in CONTROLLERS {
            for (flag, v) in c.qemu_args("d0") {
                assert!(
                    !v.contains('{') && !v.contains('}'),
                    "{}: {flag} {v}",
                    c.name
                );
            }
            let args = c.qemu_args("d7");
            assert!(
                args.iter().any(|(_, v)| v.contains("drive=d7")),
                "{}",
                c.name
            );
            assert!(!c.drivers.is_empty() && !c.kconfig.is_empty() && !c.modules.is_empty());
        }
        let v = by_name("virtio_blk").unwrap().qemu_args("d1");
        assert_eq!(
            v,
            [("-device", "virtio-blk-pci,addr=0x04,drive=d1".to_string())]
        );
    }

    #[test]
    fn identification_by_slot_and_by_driver() {
        let drv = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            identify(Some(0x1f), &drv(&["sd", "ahci"]), true)
                .unwrap()
                .name,
            "ahci"
        );
        // A slot whose bound driver is not the row's is not that row.
        assert!(identify(Some(0x1f), &drv(&["nvme"]), true).is_none());
        // On a host, the driver names it wherever it sits.
        assert_eq!(
            identify(Some(0x09), &drv(&["nvme"]), false).unwrap().name,
            "nvme"
        );
        assert!(identify(None, &drv(&["xen_blkfront"]), false).is_none());
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = by_name("sata").unwrap_err();
        assert!(
            e.0.contains("\"sata\"") && e.0.contains("ahci, virtio_blk, nvme"),
            "{e}"
        );
    }
}
