//! The disk controllers: one row each, and everything else derives from it
//! (QEMU arguments, the guest kernel's options and modules, how the guest
//! recognises the disk, the report's order and the verdict's roles).
//!
//! Each controller sits at its own PCI slot on the q35 root bus, so the
//! guest can tell apart rows that share a driver (virtio-blk with and
//! without ioeventfd): it reads the slot from the disk's sysfs path and
//! checks that the expected driver is bound there.

#[allow(unused_imports)]
use crate::prelude::*;
use crate::{bail, Result};

/// What the code predicts for a controller without the fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Its MMIO or port I/O handler starts block I/O in the vCPU thread: the
    /// queued SQE waits for the main loop. Expected to stall.
    Candidate,
    /// Its requests reach the AioContext through a notifying path (ioeventfd,
    /// a bottom half, an iothread), or complete synchronously in the vCPU
    /// thread, which then polls the AioContext itself. Expected not to
    /// stall: the yardstick.
    Control,
}

/// How the bare-metal probe guest drives a controller: one driver module
/// each in `probe/`, which finds the function at the row's slot by its PCI
/// class and IDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeDriver {
    /// AHCI 1.3 over ABAR (BAR5): port 0, polled PxCI / PxSACT.
    Ahci,
    /// virtio 1.0 PCI transport and block device (the virtio-drivers crate).
    VirtioBlk,
    /// NVMe: the admin queue and one I/O queue pair, completions polled.
    Nvme,
    /// PCI IDE (class 01:01), primary channel's device 0: READ/WRITE DMA
    /// EXT through the bus-master (BMIDE) registers and a PRD table,
    /// polled on the bus-master status.
    Ide,
    /// virtio-scsi on the virtio-drivers crate's transport and queue: the
    /// first request queue, target 0 LUN 0, READ/WRITE(10 or 16).
    VirtioScsi,
    /// MegaRAID SAS (megasas, megasas-gen2) through MFI frames: INIT with a
    /// reply queue in guest memory, LD_READ/LD_WRITE on logical drive 0,
    /// posted to the inbound queue port, the producer index polled.
    Megasas,
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
    /// QEMU Kconfig symbols its devices need (`CONFIG_` left off): QEMU is
    /// built with only these, the machine's and the boot path's.
    pub qemu_kconfig: &'static [&'static str],
    /// Kernel options a built guest kernel needs for it (`kselftest/config`
    /// holds every one). A kernel is built with the default controllers'
    /// options and those of the controllers a run asks for. `CONFIG_ACPI`
    /// only where the device's legacy PCI interrupt needs ACPI's routing on
    /// q35 (measured: without ACPI every other row's disk works).
    pub kconfig: &'static [&'static str],
    /// Modules a distro kernel must load for it, by module name.
    pub modules: &'static [&'static str],
    /// Drivers bound between the PCI function and the disk in sysfs, any of
    /// which marks the disk as this controller's.
    pub drivers: &'static [&'static str],
    /// The probe guest's driver for it, if it has one: the rows the probe
    /// can drive. The Linux guest drives every row.
    pub probe: Option<ProbeDriver>,
    /// Whether its first device takes an `iothread=` (the iothread axis,
    /// `config::Iothread`): virtio-blk and virtio-scsi with ioeventfd, whose
    /// kick an iothread's AioContext can handle. Rows without ioeventfd
    /// handle the kick in the vCPU thread, so an iothread is not theirs.
    pub iothread: bool,
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
        qemu_kconfig: &[],
        kconfig: &["CONFIG_ATA=y", "CONFIG_SATA_AHCI=y", "CONFIG_SCSI=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["ahci", "sd_mod"],
        drivers: &["ahci"],
        probe: Some(ProbeDriver::Ahci),
        iothread: false,
    },
    Controller {
        name: "ide",
        title: "legacy IDE (PIIX3, a PCI function on q35)",
        role: Role::Candidate,
        mechanism: "BMDMA start (port I/O) runs the transfer in the vCPU thread",
        slot: 0x09,
        objects: &[],
        devices: &["piix3-ide,id={id},addr={addr}", "ide-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["IDE_PIIX"],
        kconfig: &["CONFIG_ATA=y", "CONFIG_ATA_SFF=y", "CONFIG_ATA_BMDMA=y", "CONFIG_ATA_PIIX=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["ata_piix", "sd_mod"],
        drivers: &["ata_piix"],
        probe: Some(ProbeDriver::Ide),
        iothread: false,
    },
    Controller {
        name: "virtio_blk",
        title: "virtio-blk (PCI, ioeventfd on: the default)",
        role: Role::Control,
        mechanism: "ioeventfd: the kick is handled in the AioContext's thread",
        slot: 0x04,
        objects: &[],
        devices: &["virtio-blk-pci,addr={addr},drive={drive}"],
        qemu_kconfig: &["VIRTIO_PCI", "VIRTIO_BLK"],
        kconfig: &["CONFIG_VIRTIO_MENU=y", "CONFIG_VIRTIO=y", "CONFIG_VIRTIO_PCI=y", "CONFIG_VIRTIO_BLK=y"],
        modules: &["virtio_pci", "virtio_blk"],
        drivers: &["virtio_blk"],
        probe: Some(ProbeDriver::VirtioBlk),
        iothread: true,
    },
    Controller {
        name: "virtio_blk_noioeventfd",
        title: "virtio-blk with ioeventfd=off",
        role: Role::Candidate,
        mechanism: "without ioeventfd the queue notify is handled in the vCPU thread",
        slot: 0x05,
        objects: &[],
        devices: &["virtio-blk-pci,ioeventfd=off,addr={addr},drive={drive}"],
        qemu_kconfig: &["VIRTIO_PCI", "VIRTIO_BLK"],
        kconfig: &["CONFIG_VIRTIO_PCI=y", "CONFIG_VIRTIO_BLK=y"],
        modules: &["virtio_pci", "virtio_blk"],
        drivers: &["virtio_blk"],
        probe: Some(ProbeDriver::VirtioBlk),
        iothread: false,
    },
    Controller {
        name: "virtio_scsi",
        title: "virtio-scsi with scsi-hd (ioeventfd on: the default)",
        role: Role::Control,
        mechanism: "ioeventfd: the kick is handled in the AioContext's thread",
        slot: 0x07,
        objects: &[],
        devices: &["virtio-scsi-pci,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["VIRTIO_PCI", "VIRTIO_SCSI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_SCSI_VIRTIO=y", "CONFIG_VIRTIO_PCI=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["virtio_pci", "virtio_scsi", "sd_mod"],
        drivers: &["virtio_scsi"],
        probe: Some(ProbeDriver::VirtioScsi),
        iothread: true,
    },
    Controller {
        name: "virtio_scsi_noioeventfd",
        title: "virtio-scsi with ioeventfd=off",
        role: Role::Candidate,
        mechanism: "without ioeventfd the queue notify is handled in the vCPU thread",
        slot: 0x08,
        objects: &[],
        devices: &["virtio-scsi-pci,ioeventfd=off,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["VIRTIO_PCI", "VIRTIO_SCSI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_SCSI_VIRTIO=y", "CONFIG_VIRTIO_PCI=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["virtio_pci", "virtio_scsi", "sd_mod"],
        drivers: &["virtio_scsi"],
        probe: Some(ProbeDriver::VirtioScsi),
        iothread: false,
    },
    Controller {
        name: "lsi",
        title: "LSI 53C895A (lsi53c895a) with scsi-hd",
        role: Role::Candidate,
        mechanism: "a register write runs the SCRIPTS, and the request, in the vCPU thread",
        slot: 0x0a,
        objects: &[],
        devices: &["lsi53c895a,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["LSI_SCSI_PCI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_SCSI_SYM53C8XX_2=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["sym53c8xx", "sd_mod"],
        drivers: &["sym53c8xx"],
        probe: None,
        iothread: false,
    },
    Controller {
        name: "lsi53c810",
        title: "LSI 53C810 (lsi53c810) with scsi-hd",
        role: Role::Candidate,
        mechanism: "a register write runs the SCRIPTS, and the request, in the vCPU thread",
        slot: 0x0b,
        objects: &[],
        devices: &["lsi53c810,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["LSI_SCSI_PCI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_SCSI_SYM53C8XX_2=y", "CONFIG_BLK_DEV_SD=y", "CONFIG_ACPI=y"],
        modules: &["sym53c8xx", "sd_mod"],
        drivers: &["sym53c8xx"],
        probe: None,
        iothread: false,
    },
    Controller {
        name: "megasas",
        title: "MegaRAID SAS 1078 (megasas) with scsi-hd",
        role: Role::Candidate,
        mechanism: "the inbound-queue MMIO write starts the frame in the vCPU thread",
        slot: 0x0c,
        objects: &[],
        devices: &["megasas,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["MEGASAS_SCSI_PCI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_MEGARAID_SAS=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["megaraid_sas", "sd_mod"],
        drivers: &["megaraid_sas"],
        probe: Some(ProbeDriver::Megasas),
        iothread: false,
    },
    Controller {
        name: "megasas_gen2",
        title: "MegaRAID SAS 2108 (megasas-gen2) with scsi-hd",
        role: Role::Candidate,
        mechanism: "the inbound-queue MMIO write starts the frame in the vCPU thread",
        slot: 0x0d,
        objects: &[],
        devices: &["megasas-gen2,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["MEGASAS_SCSI_PCI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_MEGARAID_SAS=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["megaraid_sas", "sd_mod"],
        drivers: &["megaraid_sas"],
        probe: Some(ProbeDriver::Megasas),
        iothread: false,
    },
    Controller {
        name: "mptsas",
        title: "LSI SAS1068 (mptsas1068) with scsi-hd",
        role: Role::Candidate,
        mechanism: "the request-FIFO MMIO write starts the request in the vCPU thread",
        slot: 0x0e,
        objects: &[],
        devices: &["mptsas1068,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["MPTSAS_SCSI_PCI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_FUSION=y", "CONFIG_FUSION_SAS=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["mptsas", "sd_mod"],
        drivers: &["mptsas"],
        probe: None,
        iothread: false,
    },
    Controller {
        name: "pvscsi",
        title: "VMware PVSCSI with scsi-hd",
        role: Role::Candidate,
        mechanism: "the kick register write processes the request ring in the vCPU thread",
        slot: 0x0f,
        objects: &[],
        devices: &["pvscsi,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["VMW_PVSCSI_SCSI_PCI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_VMWARE_PVSCSI=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["vmw_pvscsi", "sd_mod"],
        drivers: &["vmw_pvscsi"],
        probe: None,
        iothread: false,
    },
    Controller {
        name: "am53c974",
        title: "AMD Am53c974 (am53c974) with scsi-hd",
        role: Role::Candidate,
        mechanism: "the ESP command register write starts the transfer in the vCPU thread",
        slot: 0x10,
        objects: &[],
        devices: &["am53c974,id={id},addr={addr}", "scsi-hd,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["ESP_PCI"],
        kconfig: &["CONFIG_SCSI_LOWLEVEL=y", "CONFIG_SCSI_AM53C974=y", "CONFIG_BLK_DEV_SD=y"],
        modules: &["am53c974", "sd_mod"],
        drivers: &["am53c974"],
        probe: None,
        iothread: false,
    },
    Controller {
        name: "usb_storage",
        title: "USB mass storage, bulk-only (usb-storage on qemu-xhci)",
        role: Role::Candidate,
        mechanism: "the xHCI doorbell MMIO write runs the transfer, and the SCSI request, in the vCPU thread",
        slot: 0x11,
        objects: &[],
        devices: &["qemu-xhci,id={id},addr={addr}", "usb-storage,bus={id}.0,drive={drive}"],
        qemu_kconfig: &["USB_XHCI_PCI", "USB_STORAGE_CLASSIC"],
        kconfig: &[
            "CONFIG_USB_SUPPORT=y",
            "CONFIG_USB=y",
            "CONFIG_USB_PCI=y",
            "CONFIG_USB_XHCI_HCD=y",
            "CONFIG_USB_XHCI_PCI=y",
            "CONFIG_USB_STORAGE=y",
            "CONFIG_BLK_DEV_SD=y",
        ],
        modules: &["xhci_pci", "usb_storage", "sd_mod"],
        drivers: &["usb-storage"],
        probe: None,
        iothread: false,
    },
    Controller {
        name: "usb_uas",
        title: "USB attached SCSI (usb-uas on qemu-xhci) with scsi-hd",
        role: Role::Candidate,
        mechanism: "the xHCI doorbell MMIO write runs the transfer, and the SCSI request, in the vCPU thread",
        slot: 0x12,
        objects: &[],
        devices: &[
            "qemu-xhci,id={id},addr={addr}",
            "usb-uas,id={id}-uas,bus={id}.0",
            "scsi-hd,bus={id}-uas.0,drive={drive}",
        ],
        qemu_kconfig: &["USB_XHCI_PCI", "USB_STORAGE_UAS"],
        kconfig: &[
            "CONFIG_USB_SUPPORT=y",
            "CONFIG_USB=y",
            "CONFIG_USB_PCI=y",
            "CONFIG_USB_XHCI_HCD=y",
            "CONFIG_USB_XHCI_PCI=y",
            "CONFIG_USB_UAS=y",
            "CONFIG_BLK_DEV_SD=y",
        ],
        modules: &["xhci_pci", "uas", "sd_mod"],
        drivers: &["uas"],
        probe: None,
        iothread: false,
    },
    Controller {
        name: "sdhci",
        title: "SD card on SDHCI (sdhci-pci with sd-card)",
        role: Role::Control,
        mechanism: "the card model reads with a synchronous blk_pread(): the vCPU thread polls the AioContext itself",
        slot: 0x13,
        objects: &[],
        devices: &["sdhci-pci,id={id},addr={addr}", "sd-card,drive={drive}"],
        qemu_kconfig: &["SDHCI_PCI", "SD"],
        kconfig: &["CONFIG_MMC=y", "CONFIG_MMC_BLOCK=y", "CONFIG_MMC_SDHCI=y", "CONFIG_MMC_SDHCI_PCI=y", "CONFIG_ACPI=y"],
        modules: &["sdhci_pci", "mmc_block"],
        drivers: &["sdhci-pci"],
        probe: None,
        iothread: false,
    },
    Controller {
        name: "nvme",
        title: "NVMe",
        role: Role::Control,
        mechanism: "doorbell MMIO schedules a bottom half, which notifies",
        slot: 0x03,
        objects: &[],
        devices: &["nvme,serial=uringidle,addr={addr},drive={drive}"],
        // NVMe calls the SPDM socket backend, which its Kconfig does not
        // select (QEMU 10.2.2): without it, a link error.
        qemu_kconfig: &["NVME_PCI", "SPDM_SOCKET"],
        kconfig: &["CONFIG_BLK_DEV_NVME=y"],
        modules: &["nvme"],
        drivers: &["nvme"],
        probe: Some(ProbeDriver::Nvme),
        iothread: false,
    },
];

/// Block controllers this QEMU offers on x86 that the table leaves out,
/// and why.
pub const LEFT_OUT: &[(&str, &str)] = &[
    ("dc390", "the Am53c974 chip and QEMU emulation of the am53c974 row, plus a boot EEPROM"),
    ("piix4-ide", "the PIIX emulation of the ide row (hw/ide/piix.c); its legacy ports allow one PIIX IDE per guest"),
    ("ufs (with ufs-lu)", "the 6.1 guest kernel cannot drive it: its ufshcd-pci knows only Intel UFS host IDs, not QEMU's"),
    ("floppy (isa-fdc)", "media of at most 2.88 MB, and the fdc reads with a synchronous blk_pread() in the vCPU thread: no SQE waits for the main loop"),
    ("isa-ide", "the IDE emulation of the ide row on the ISA bus alone; it needs the legacy ports the ide row already uses"),
];

/// QEMU Kconfig symbols of the machine and the boot path, besides the
/// controllers': q35 (with its built-in AHCI), isa-debug-exit for the
/// verdict, and the HPET, the guest's one tick under TCG. With default
/// devices off, `imply` and `default y` enable nothing: each is named.
/// CXL (with PXB, which it depends on, and CXL_MEM_DEVICE, which its code
/// calls, and PCIE_PORT, the parent type of its root port): QEMU 10.2.2's q35 ACPI code
/// (hw/acpi/cxl.c) calls cxl_fmws_get_all_sorted(), which has no stub
/// without it (a link error).
pub const QEMU_MACHINE_KCONFIG: &[&str] = &[
    "Q35",
    "ISA_DEBUG",
    "HPET",
    "PXB",
    "CXL",
    "CXL_MEM_DEVICE",
    "PCIE_PORT",
    // The NIC of --netdev user.
    "VIRTIO_NET",
];

/// The device configuration QEMU is built with: the machine's symbols and
/// every row's, so one build serves any `--controllers`.
pub fn qemu_devices_mak() -> String {
    let mut syms: Vec<&str> = QEMU_MACHINE_KCONFIG.to_vec();
    for c in CONTROLLERS {
        for s in c.qemu_kconfig {
            if !syms.contains(s) {
                syms.push(s);
            }
        }
    }
    let mut out = String::from(
        "# Written by uring-idle from its controller table: only what the guest runs use.\n",
    );
    for s in syms {
        out.push_str(&format!("CONFIG_{s}=y\n"));
    }
    out
}

/// Today's fast set: one affected controller and two controls.
pub const DEFAULT: &[&str] = &["ahci", "virtio_blk", "nvme"];

pub fn names() -> Vec<&'static str> {
    CONTROLLERS.iter().map(|c| c.name).collect()
}

/// The rows `guest` can drive, in table order.
pub fn driven_by(guest: crate::Guest) -> Vec<&'static str> {
    CONTROLLERS
        .iter()
        .filter(|c| c.drives(guest))
        .map(|c| c.name)
        .collect()
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

/// A `--controllers` list: comma-separated names, or `all`; each row once,
/// in table order.
pub fn parse_list(s: &str) -> Result<Vec<&'static Controller>> {
    if s.trim() == "all" {
        return Ok(CONTROLLERS.iter().collect());
    }
    let asked: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if asked.is_empty() {
        bail!(
            "the controller list is empty; valid names: {}, or all",
            names().join(", ")
        );
    }
    let mut v = Vec::new();
    for n in asked {
        let c = by_name(n)?;
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v.sort_by_key(|c| rank(c.name));
    Ok(v)
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
    /// Whether `guest` can drive this controller.
    pub fn drives(&self, guest: crate::Guest) -> bool {
        match guest {
            crate::Guest::Linux => true,
            crate::Guest::Probe => self.probe.is_some(),
        }
    }

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

    /// The QEMU device types it needs (`-device help` must list each).
    pub fn device_types(&self) -> Vec<&'static str> {
        self.devices
            .iter()
            .map(|d| d.split(',').next().unwrap_or(d))
            .collect()
    }

    /// `(flag, value)` pairs that attach this controller with its disk on
    /// the `-drive` whose id is `drive`, in the default configuration.
    pub fn qemu_args(&self, drive: &str) -> Vec<(&'static str, String)> {
        self.qemu_args_in(drive, &crate::Config::default())
    }

    /// The same in `config`: with an iothread on, an `iothread` object and
    /// the first device placed in it.
    pub fn qemu_args_in(&self, drive: &str, config: &crate::Config) -> Vec<(&'static str, String)> {
        let on = config.iothread == crate::config::Iothread::On && self.iothread;
        let io = format!("{}-io", self.qemu_id());
        let objects = self
            .objects
            .iter()
            .map(|o| ("-object", self.fill(o, drive)));
        let objects = objects.chain(on.then(|| ("-object", format!("iothread,id={io}"))));
        let devices = self.devices.iter().enumerate().map(|(i, d)| {
            let d = self.fill(d, drive);
            match d.split_once(',') {
                Some((ty, rest)) if on && i == 0 => {
                    ("-device", format!("{ty},iothread={io},{rest}"))
                }
                _ => ("-device", d),
            }
        });
        objects.chain(devices).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_in_table_order_each_row_once() {
        let names = |s| {
            parse_list(s)
                .unwrap()
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("nvme, ahci,nvme"), ["ahci", "nvme"]);
        assert_eq!(names("all").len(), CONTROLLERS.len());
        let e = parse_list("ahci,floppy9").unwrap_err().0;
        assert!(e.contains("floppy9") && e.contains("valid names"), "{e}");
        assert!(parse_list(" , ").unwrap_err().0.contains("empty"));
    }

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
        assert_eq!(
            by_name("usb_uas").unwrap().device_types(),
            ["qemu-xhci", "usb-uas", "scsi-hd"]
        );
        let v = by_name("virtio_blk").unwrap().qemu_args("d1");
        assert_eq!(
            v,
            [("-device", "virtio-blk-pci,addr=0x04,drive=d1".to_string())]
        );
        // The iothread axis: an object, and the first device placed in it.
        let on = crate::Config {
            iothread: crate::config::Iothread::On,
            ..crate::Config::default()
        };
        let v = by_name("virtio_blk").unwrap().qemu_args_in("d1", &on);
        assert_eq!(
            v,
            [
                ("-object", "iothread,id=c04-io".to_string()),
                (
                    "-device",
                    "virtio-blk-pci,iothread=c04-io,addr=0x04,drive=d1".to_string()
                )
            ]
        );
        let s = by_name("virtio_scsi").unwrap().qemu_args_in("d2", &on);
        assert_eq!(s[1].1, "virtio-scsi-pci,iothread=c07-io,id=c07,addr=0x07");
        assert_eq!(s[2].1, "scsi-hd,bus=c07.0,drive=d2");
        // A row that takes none is never given one.
        assert_eq!(
            by_name("ahci").unwrap().qemu_args_in("d0", &on),
            by_name("ahci").unwrap().qemu_args("d0")
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
    fn the_qemu_device_config_has_the_machine_and_every_row() {
        let mak = qemu_devices_mak();
        for s in [
            "CONFIG_Q35=y",
            "CONFIG_ISA_DEBUG=y",
            "CONFIG_LSI_SCSI_PCI=y",
            "CONFIG_USB_STORAGE_UAS=y",
            "CONFIG_NVME_PCI=y",
        ] {
            assert!(mak.lines().any(|l| l == s), "{s} missing:\n{mak}");
        }
        // Each symbol once.
        let lines: Vec<&str> = mak.lines().filter(|l| l.starts_with("CONFIG_")).collect();
        let mut dedup = lines.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(lines.len(), dedup.len());
    }

    #[test]
    fn the_probe_drives_the_default_trio_ide_the_virtio_rows_and_megasas() {
        use crate::Guest;
        assert_eq!(
            driven_by(Guest::Probe),
            [
                "ahci",
                "ide",
                "virtio_blk",
                "virtio_blk_noioeventfd",
                "virtio_scsi",
                "virtio_scsi_noioeventfd",
                "megasas",
                "megasas_gen2",
                "nvme"
            ]
        );
        assert_eq!(driven_by(Guest::Linux), names());
        for d in DEFAULT {
            assert!(by_name(d).unwrap().drives(Guest::Probe), "{d}");
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = by_name("sata").unwrap_err();
        assert!(
            e.0.contains("\"sata\"")
                && e.0.contains("ahci, ide, virtio_blk")
                && e.0.ends_with("nvme"),
            "{e}"
        );
    }
}
