//! PCI on bus 0 through configuration mechanism #1 (ports 0xCF8/0xCFC: q35's
//! ECAM window is not enabled without firmware): find a row's function by
//! slot and IDs, assign its memory or I/O BARs from bump windows, enable it.

use alloc::format;
use alloc::string::String;
use contract::ProbeDriver;

use crate::hw::{PortIo, Ports};

pub const CONFIG_ADDRESS: u16 = 0xCF8;
pub const CONFIG_DATA: u16 = 0xCFC;

// Configuration header offsets and bits (PCI Local Bus 3.0, 6.2).
pub const VENDOR_ID: u8 = 0x00;
pub const COMMAND: u8 = 0x04;
pub const CLASS_REVISION: u8 = 0x08;
pub const BAR0: u8 = 0x10;
pub const COMMAND_IO_SPACE: u32 = 1 << 0;
pub const COMMAND_MEMORY_SPACE: u32 = 1 << 1;
pub const COMMAND_BUS_MASTER: u32 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u32 = 1 << 10;
pub const BAR_IO: u32 = 1 << 0;
pub const BAR_TYPE_MASK: u32 = 0b110;
pub const BAR_TYPE_64: u32 = 0b100;

pub const VIRTIO_VENDOR: u16 = 0x1af4;
pub const VIRTIO_BLK_MODERN: u16 = 0x1042;
pub const VIRTIO_BLK_TRANSITIONAL: u16 = 0x1001;
pub const VIRTIO_SCSI_MODERN: u16 = 0x1048;
pub const VIRTIO_SCSI_TRANSITIONAL: u16 = 0x1004;
/// MegaRAID SAS 1078 (QEMU's `megasas`) and 2108 (`megasas-gen2`), as
/// QEMU's include/hw/pci/pci_ids.h names them.
pub const PCI_VENDOR_ID_LSI_LOGIC: u16 = 0x1000;
pub const PCI_DEVICE_ID_LSI_SAS1078: u16 = 0x0060;
pub const PCI_DEVICE_ID_LSI_SAS0079: u16 = 0x0079;
/// Mass storage / SATA / AHCI 1.0.
pub const CLASS_AHCI: (u8, u8, u8) = (0x01, 0x06, 0x01);
/// Mass storage / non-volatile memory / NVM Express.
pub const CLASS_NVME: (u8, u8, u8) = (0x01, 0x08, 0x02);
/// Mass storage / IDE: the programming interface says which channels are
/// in native mode and whether it has bus-master DMA.
pub const CLASS_IDE: (u8, u8) = (0x01, 0x01);

/// Where the probe puts BARs: free guest-physical space below 4 GiB on q35
/// (RAM ends lower; the IOAPIC, HPET, LAPIC and BIOS sit above 0xFEC00000).
pub const BAR_WINDOW: (u64, u64) = (0xC000_0000, 0xFE00_0000);

/// Where the probe puts I/O BARs: above the legacy ISA and chipset ports,
/// where firmware puts them too.
pub const IO_WINDOW: (u32, u32) = (0xC000, 0x1_0000);

/// Bus 0, device `slot`, function `function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    pub slot: u8,
    pub function: u8,
}

impl Bdf {
    /// The CONFIG_ADDRESS value for register `off` (dword-aligned).
    pub fn address(self, off: u8) -> u32 {
        0x8000_0000
            | (u32::from(self.slot & 0x1f) << 11)
            | (u32::from(self.function & 7) << 8)
            | u32::from(off & 0xfc)
    }
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "00:{:02x}.{}", self.slot, self.function)
    }
}

pub trait ConfigSpace {
    fn read32(&self, bdf: Bdf, off: u8) -> u32;
    fn write32(&mut self, bdf: Bdf, off: u8, v: u32);
}

/// Configuration mechanism #1 over the machine's ports.
#[derive(Clone, Copy, Default)]
pub struct PortCam;

impl ConfigSpace for PortCam {
    fn read32(&self, bdf: Bdf, off: u8) -> u32 {
        let mut p = PortIo;
        p.outl(CONFIG_ADDRESS, bdf.address(off));
        p.inl(CONFIG_DATA)
    }
    fn write32(&mut self, bdf: Bdf, off: u8, v: u32) {
        let mut p = PortIo;
        p.outl(CONFIG_ADDRESS, bdf.address(off));
        p.outl(CONFIG_DATA, v);
    }
}

/// virtio-drivers reads capabilities through its own trait: the same ports.
impl virtio_drivers::transport::pci::bus::ConfigurationAccess for PortCam {
    fn read_word(
        &self,
        df: virtio_drivers::transport::pci::bus::DeviceFunction,
        register_offset: u8,
    ) -> u32 {
        ConfigSpace::read32(
            self,
            Bdf {
                slot: df.device,
                function: df.function,
            },
            register_offset,
        )
    }
    fn write_word(
        &mut self,
        df: virtio_drivers::transport::pci::bus::DeviceFunction,
        register_offset: u8,
        data: u32,
    ) {
        ConfigSpace::write32(
            self,
            Bdf {
                slot: df.device,
                function: df.function,
            },
            register_offset,
            data,
        )
    }
    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// What sits at one function: IDs and class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub vendor: u16,
    pub device: u16,
    pub class: (u8, u8, u8),
}

impl Ids {
    pub fn read(cam: &dyn ConfigSpace, bdf: Bdf) -> Option<Ids> {
        let id = cam.read32(bdf, VENDOR_ID);
        if id as u16 == 0xffff {
            return None;
        }
        let c = cam.read32(bdf, CLASS_REVISION);
        Some(Ids {
            vendor: id as u16,
            device: (id >> 16) as u16,
            class: ((c >> 24) as u8, (c >> 16) as u8, (c >> 8) as u8),
        })
    }

    pub fn fits(&self, driver: ProbeDriver) -> bool {
        match driver {
            ProbeDriver::Ahci => self.class == CLASS_AHCI,
            ProbeDriver::Nvme => self.class == CLASS_NVME,
            ProbeDriver::Ide => (self.class.0, self.class.1) == CLASS_IDE,
            ProbeDriver::VirtioScsi => {
                self.vendor == VIRTIO_VENDOR
                    && matches!(self.device, VIRTIO_SCSI_MODERN | VIRTIO_SCSI_TRANSITIONAL)
            }
            ProbeDriver::VirtioBlk => {
                self.vendor == VIRTIO_VENDOR
                    && matches!(self.device, VIRTIO_BLK_MODERN | VIRTIO_BLK_TRANSITIONAL)
            }
            ProbeDriver::Megasas => {
                self.vendor == PCI_VENDOR_ID_LSI_LOGIC
                    && matches!(
                        self.device,
                        PCI_DEVICE_ID_LSI_SAS1078 | PCI_DEVICE_ID_LSI_SAS0079
                    )
            }
        }
    }
}

impl core::fmt::Display for Ids {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04x}:{:04x} class {:02x}:{:02x}:{:02x}",
            self.vendor, self.device, self.class.0, self.class.1, self.class.2
        )
    }
}

pub fn expected(driver: ProbeDriver) -> &'static str {
    match driver {
        ProbeDriver::Ahci => "an AHCI controller (class 01:06:01)",
        ProbeDriver::Nvme => "an NVMe controller (class 01:08:02)",
        ProbeDriver::Ide => "an IDE controller (class 01:01)",
        ProbeDriver::VirtioScsi => "a virtio-scsi device (1af4:1048 or 1af4:1004)",
        ProbeDriver::VirtioBlk => "a virtio-blk device (1af4:1042 or 1af4:1001)",
        ProbeDriver::Megasas => "a MegaRAID SAS controller (1000:0060 or 1000:0079)",
    }
}

/// The function at `slot` that `driver` drives, or why there is none.
pub fn find(cam: &dyn ConfigSpace, slot: u8, driver: ProbeDriver) -> Result<Bdf, String> {
    let mut seen = String::new();
    for function in 0..8 {
        let bdf = Bdf { slot, function };
        if let Some(ids) = Ids::read(cam, bdf) {
            if ids.fits(driver) {
                return Ok(bdf);
            }
            if !seen.is_empty() {
                seen.push_str(", ");
            }
            seen.push_str(&format!("{bdf} is {ids}"));
        }
    }
    if seen.is_empty() {
        Err(format!(
            "no PCI function at 00:{slot:02x}: expected {}",
            expected(driver)
        ))
    } else {
        Err(format!("no {} at 00:{slot:02x} ({seen})", expected(driver)))
    }
}

/// One assigned memory BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub addr: u64,
    pub size: u64,
    pub is64: bool,
}

/// Size of a memory BAR from what it reads back after all-ones were
/// written (`hi`: the upper half of a 64-bit BAR); 0 for an unused BAR.
pub fn bar_size(lo: u32, hi: Option<u32>) -> u64 {
    let mask = u64::from(lo & !0xf)
        | (u64::from(hi.unwrap_or(if lo & !0xf == 0 { 0 } else { u32::MAX })) << 32);
    if mask == 0 {
        0
    } else {
        (!mask).wrapping_add(1)
    }
}

/// Hands out naturally aligned addresses from `[next, end)`.
#[derive(Clone, Copy, Debug)]
pub struct BarWindow {
    pub next: u64,
    pub end: u64,
}

impl BarWindow {
    pub fn new() -> BarWindow {
        BarWindow {
            next: BAR_WINDOW.0,
            end: BAR_WINDOW.1,
        }
    }
    pub fn take(&mut self, size: u64) -> Option<u64> {
        let size = size.max(4096);
        let addr = self.next.checked_add(size - 1)? & !(size - 1);
        let end = addr.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(addr)
    }
}

impl Default for BarWindow {
    fn default() -> Self {
        BarWindow::new()
    }
}

/// Sizes and assigns every memory BAR of `bdf` from `window`, then enables
/// memory space and bus mastering (and masks INTx: the probe polls).
pub fn enable(
    cam: &mut dyn ConfigSpace,
    bdf: Bdf,
    window: &mut BarWindow,
) -> Result<[Option<Bar>; 6], String> {
    let cmd = cam.read32(bdf, COMMAND) & 0xffff;
    cam.write32(bdf, COMMAND, cmd & !(COMMAND_MEMORY_SPACE | 1));
    let mut bars = [None; 6];
    let mut i = 0;
    while i < 6 {
        let off = BAR0 + 4 * i as u8;
        let orig = cam.read32(bdf, off);
        if orig & BAR_IO != 0 {
            i += 1;
            continue;
        }
        let is64 = orig & BAR_TYPE_MASK == BAR_TYPE_64;
        cam.write32(bdf, off, u32::MAX);
        let lo = cam.read32(bdf, off);
        let hi = if is64 {
            cam.write32(bdf, off + 4, u32::MAX);
            Some(cam.read32(bdf, off + 4))
        } else {
            None
        };
        let size = bar_size(lo, hi);
        if size == 0 {
            cam.write32(bdf, off, orig);
        } else {
            let addr = window
                .take(size)
                .ok_or_else(|| format!("{bdf}: no room for BAR{i} of {size} bytes"))?;
            cam.write32(bdf, off, addr as u32 | (orig & 0xf));
            if is64 {
                cam.write32(bdf, off + 4, (addr >> 32) as u32);
            }
            bars[i] = Some(Bar { addr, size, is64 });
        }
        i += if is64 { 2 } else { 1 };
    }
    cam.write32(
        bdf,
        COMMAND,
        (cmd | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE) & !1,
    );
    Ok(bars)
}

/// One assigned I/O BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoBar {
    pub port: u16,
    pub size: u16,
}

/// Size of an I/O BAR from what it reads back after all-ones were
/// written; 0 for an unused BAR. I/O space is 64 KiB: the upper half may
/// read back as zeros.
pub fn io_bar_size(readback: u32) -> u32 {
    let mask = readback & 0xffff & !0x3;
    if mask == 0 {
        0
    } else {
        (!mask & 0xffff) + 1
    }
}

/// Hands out naturally aligned ports from `[next, end)`.
#[derive(Clone, Copy, Debug)]
pub struct IoWindow {
    pub next: u32,
    pub end: u32,
}

impl IoWindow {
    pub fn new() -> IoWindow {
        IoWindow {
            next: IO_WINDOW.0,
            end: IO_WINDOW.1,
        }
    }
    pub fn take(&mut self, size: u32) -> Option<u16> {
        let size = size.max(4);
        let port = self.next.checked_add(size - 1)? & !(size - 1);
        let end = port.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        u16::try_from(port).ok()
    }
}

impl Default for IoWindow {
    fn default() -> Self {
        IoWindow::new()
    }
}

/// Sizes and assigns every I/O BAR of `bdf` from `window`, then enables
/// I/O space and bus mastering (memory BARs are left alone).
pub fn enable_io(
    cam: &mut dyn ConfigSpace,
    bdf: Bdf,
    window: &mut IoWindow,
) -> Result<[Option<IoBar>; 6], String> {
    let cmd = cam.read32(bdf, COMMAND) & 0xffff;
    cam.write32(bdf, COMMAND, cmd & !COMMAND_IO_SPACE);
    let mut bars = [None; 6];
    let mut i = 0;
    while i < 6 {
        let off = BAR0 + 4 * i as u8;
        let orig = cam.read32(bdf, off);
        if orig & BAR_IO == 0 {
            // A memory BAR: the upper half of a 64-bit one is no BAR.
            i += if orig & BAR_TYPE_MASK == BAR_TYPE_64 {
                2
            } else {
                1
            };
            continue;
        }
        cam.write32(bdf, off, u32::MAX);
        let size = io_bar_size(cam.read32(bdf, off));
        if size == 0 {
            cam.write32(bdf, off, orig);
        } else {
            let port = window
                .take(size)
                .ok_or_else(|| format!("{bdf}: no room for I/O BAR{i} of {size} ports"))?;
            cam.write32(bdf, off, u32::from(port) | BAR_IO);
            bars[i] = Some(IoBar {
                port,
                size: size as u16,
            });
        }
        i += 1;
    }
    cam.write32(
        bdf,
        COMMAND,
        cmd | COMMAND_IO_SPACE | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE,
    );
    Ok(bars)
}

#[cfg(test)]
pub mod fake {
    use super::*;
    use alloc::collections::BTreeMap;
    use core::cell::RefCell;

    /// One function's config space: registers plus BAR size masks.
    #[derive(Default)]
    pub struct FakeCam {
        pub regs: RefCell<BTreeMap<(u8, u8, u8), u32>>,
        /// (slot, function, BAR register) -> size mask read back after all-ones.
        pub masks: BTreeMap<(u8, u8, u8), u32>,
    }

    impl FakeCam {
        pub fn set(&mut self, bdf: Bdf, off: u8, v: u32) {
            self.regs
                .borrow_mut()
                .insert((bdf.slot, bdf.function, off), v);
        }
        pub fn get(&self, bdf: Bdf, off: u8) -> u32 {
            *self
                .regs
                .borrow()
                .get(&(bdf.slot, bdf.function, off))
                .unwrap_or(&0)
        }
    }

    impl ConfigSpace for FakeCam {
        fn read32(&self, bdf: Bdf, off: u8) -> u32 {
            let r = self.regs.borrow();
            match r.get(&(bdf.slot, bdf.function, off)) {
                Some(v) => *v,
                None if off == VENDOR_ID => u32::MAX,
                None => 0,
            }
        }
        fn write32(&mut self, bdf: Bdf, off: u8, v: u32) {
            let key = (bdf.slot, bdf.function, off);
            let v = match self.masks.get(&key) {
                Some(mask) if v == u32::MAX => {
                    let old = self.get(bdf, off);
                    mask | (old & 0xf)
                }
                _ => v,
            };
            self.regs.borrow_mut().insert(key, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeCam;
    use super::*;

    #[test]
    fn config_addresses() {
        assert_eq!(
            Bdf {
                slot: 0x1f,
                function: 2
            }
            .address(0x24),
            0x8000_fa24
        );
        assert_eq!(
            Bdf {
                slot: 3,
                function: 0
            }
            .address(0x11),
            0x8000_1810
        );
        assert_eq!(
            Bdf {
                slot: 0x1f,
                function: 2
            }
            .to_string(),
            "00:1f.2"
        );
    }

    #[test]
    fn bar_sizes() {
        // 32-bit 8 KiB memory BAR.
        assert_eq!(bar_size(0xffff_e000, None), 0x2000);
        // 64-bit 16 KiB BAR (type bits 0b100 read back).
        assert_eq!(bar_size(0xffff_c004, Some(0xffff_ffff)), 0x4000);
        // 64-bit 8 GiB BAR.
        assert_eq!(bar_size(0x0000_000c, Some(0xffff_fffe)), 0x2_0000_0000);
        // Unused.
        assert_eq!(bar_size(0, None), 0);
    }

    #[test]
    fn the_window_aligns_naturally() {
        let mut w = BarWindow {
            next: 0xC000_1000,
            end: 0xC010_0000,
        };
        assert_eq!(w.take(0x4000), Some(0xC000_4000));
        assert_eq!(w.take(0x100), Some(0xC000_8000)); // at least a page
        assert_eq!(w.take(0x1000), Some(0xC000_9000));
        assert_eq!(w.take(0x10_0000), None);
    }

    #[test]
    fn enable_assigns_32_and_64_bit_bars_and_skips_io() {
        let mut cam = FakeCam::default();
        let bdf = Bdf {
            slot: 3,
            function: 0,
        };
        cam.set(bdf, VENDOR_ID, 0x0010_1b36);
        cam.set(bdf, CLASS_REVISION, 0x0108_0202);
        cam.set(bdf, BAR0, 0x4); // 64-bit memory
        cam.masks.insert((3, 0, BAR0), 0xffff_c000);
        cam.masks.insert((3, 0, BAR0 + 4), 0xffff_ffff);
        cam.set(bdf, BAR0 + 8, 0x1); // I/O
        cam.set(bdf, BAR0 + 12, 0x0); // 32-bit memory, 4 KiB
        cam.masks.insert((3, 0, BAR0 + 12), 0xffff_f000);
        let mut w = BarWindow::new();
        let bars = enable(&mut cam, bdf, &mut w).unwrap();
        assert_eq!(
            bars[0],
            Some(Bar {
                addr: 0xC000_0000,
                size: 0x4000,
                is64: true
            })
        );
        assert_eq!(bars[1], None);
        assert_eq!(bars[2], None);
        assert_eq!(
            bars[3],
            Some(Bar {
                addr: 0xC000_4000,
                size: 0x1000,
                is64: false
            })
        );
        assert_eq!(cam.get(bdf, BAR0), 0xC000_0004);
        assert_eq!(cam.get(bdf, BAR0 + 4), 0);
        assert_eq!(cam.get(bdf, BAR0 + 12), 0xC000_4000);
        let cmd = cam.get(bdf, COMMAND);
        assert_eq!(cmd & 0x6, 0x6);
        assert!(Ids::read(&cam, bdf).unwrap().fits(ProbeDriver::Nvme));
        assert!(!Ids::read(&cam, bdf).unwrap().fits(ProbeDriver::Ahci));
    }

    #[test]
    fn megasas_gen2_registers_sit_at_bar1_after_its_io_bar() {
        // QEMU's megasas-gen2 (1000:0079): BAR0 256 I/O ports, BAR1 the
        // 16 KiB 64-bit register BAR, BAR3 the 256 KiB 64-bit queue BAR.
        let mut cam = FakeCam::default();
        let bdf = Bdf {
            slot: 0x0d,
            function: 0,
        };
        cam.set(bdf, VENDOR_ID, 0x0079_1000);
        cam.set(bdf, CLASS_REVISION, 0x0104_0000);
        cam.set(bdf, BAR0, 0x1);
        cam.set(bdf, BAR0 + 4, 0x4);
        cam.masks.insert((0x0d, 0, BAR0 + 4), 0xffff_c000);
        cam.masks.insert((0x0d, 0, BAR0 + 8), 0xffff_ffff);
        cam.set(bdf, BAR0 + 12, 0x4);
        cam.masks.insert((0x0d, 0, BAR0 + 12), 0xfffc_0000);
        cam.masks.insert((0x0d, 0, BAR0 + 16), 0xffff_ffff);
        let ids = Ids::read(&cam, bdf).unwrap();
        assert!(ids.fits(ProbeDriver::Megasas) && !ids.fits(ProbeDriver::Ahci));
        assert_eq!(find(&cam, 0x0d, ProbeDriver::Megasas), Ok(bdf));
        let bars = enable(&mut cam, bdf, &mut BarWindow::new()).unwrap();
        assert_eq!(
            bars[1],
            Some(Bar {
                addr: 0xC000_0000,
                size: 0x4000,
                is64: true
            })
        );
        assert_eq!(bars[3].map(|b| b.size), Some(0x4_0000));
        assert_eq!((bars[0], bars[2]), (None, None));
    }

    #[test]
    fn io_bars_are_sized_assigned_and_enabled() {
        assert_eq!(io_bar_size(0xffff_fff1), 16);
        assert_eq!(io_bar_size(0x0000_fff1), 16, "upper half read as zeros");
        assert_eq!(io_bar_size(0xffff_ff01), 256);
        assert_eq!(io_bar_size(0), 0);
        let mut w = IoWindow::new();
        assert_eq!(w.take(16), Some(0xC000));
        assert_eq!(w.take(256), Some(0xC100));
        assert_eq!(w.take(2), Some(0xC200), "at least 4 ports");
        assert_eq!(w.take(0x4000), None);

        // A PIIX IDE: BAR0-3 unused, BAR4 16 I/O ports.
        let mut cam = FakeCam::default();
        let bdf = Bdf {
            slot: 9,
            function: 0,
        };
        cam.set(bdf, VENDOR_ID, 0x7010_8086);
        cam.set(bdf, CLASS_REVISION, 0x0101_8000);
        cam.set(bdf, BAR0 + 16, 0x1);
        cam.masks.insert((9, 0, BAR0 + 16), 0xffff_fff0);
        let bars = enable_io(&mut cam, bdf, &mut IoWindow::new()).unwrap();
        assert_eq!(
            bars[4],
            Some(IoBar {
                port: 0xC000,
                size: 16
            })
        );
        assert!(bars[..4].iter().all(Option::is_none));
        assert_eq!(cam.get(bdf, BAR0 + 16), 0xC001);
        assert_eq!(cam.get(bdf, COMMAND) & 0x5, 0x5, "I/O space and bus master");
        let ids = Ids::read(&cam, bdf).unwrap();
        assert!(ids.fits(ProbeDriver::Ide) && !ids.fits(ProbeDriver::Ahci));
        assert_eq!(
            ids.class.2, 0x80,
            "prog-if: bus master, both channels legacy"
        );
    }

    #[test]
    fn find_names_what_is_there_instead() {
        let mut cam = FakeCam::default();
        cam.set(
            Bdf {
                slot: 0x1f,
                function: 0,
            },
            VENDOR_ID,
            0x2918_8086,
        );
        cam.set(
            Bdf {
                slot: 0x1f,
                function: 0,
            },
            CLASS_REVISION,
            0x0601_0002,
        );
        cam.set(
            Bdf {
                slot: 0x1f,
                function: 2,
            },
            VENDOR_ID,
            0x2922_8086,
        );
        cam.set(
            Bdf {
                slot: 0x1f,
                function: 2,
            },
            CLASS_REVISION,
            0x0106_0102,
        );
        assert_eq!(
            find(&cam, 0x1f, ProbeDriver::Ahci),
            Ok(Bdf {
                slot: 0x1f,
                function: 2
            })
        );
        let e = find(&cam, 0x1f, ProbeDriver::Nvme).unwrap_err();
        assert!(e.contains("00:1f.0 is 8086:2918 class 06:01:00"), "{e}");
        let e = find(&cam, 0x04, ProbeDriver::VirtioBlk).unwrap_err();
        assert!(e.contains("no PCI function at 00:04"), "{e}");
    }
}
