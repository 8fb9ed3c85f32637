//! PCI IDE (class 01:01; QEMU's piix3-ide on q35 here), the primary
//! channel's device 0, with bus-master DMA, polled: READ/WRITE DMA EXT
//! through a PRD table, FLUSH CACHE EXT, one command at a time (IDE has no
//! queue). Register names as in ATA8-ATA/ATAPI (the command and control
//! blocks), the Programming Interface for Bus Master IDE Controller 1.0
//! and Intel's PIIX3 datasheet (BMIC, BMIS, BMIDTP).
//!
//! Completion without interrupts: the bus-master status's interrupt bit
//! (BMIS.IDEINTS) latches the device's INTRQ, which the CPU never takes.
//! The device's nIEN stays clear: it would mask INTRQ, and QEMU sets that
//! bit only through the line. Under QEMU the write of BMIC.SSBM runs the
//! transfer, and queues its io_uring request, in the vCPU thread.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::ata::{
    identify_lba48, identify_sectors, ATA_CMD_FLUSH_CACHE_EXT, ATA_CMD_IDENTIFY_DEVICE,
    ATA_CMD_READ_DMA_EXT, ATA_CMD_WRITE_DMA_EXT, ATA_DEVICE_LBA, ATA_STATUS_BSY, ATA_STATUS_DF,
    ATA_STATUS_DRQ, ATA_STATUS_ERR, LBA48_MAX_SECTORS,
};
use crate::disk::{Completion, Disk, Op, Request};
use crate::hw::{bus32, fence, wait_for, Clock, DmaBuf, Ports};
use crate::pci::{self, Bdf, ConfigSpace, Ids, IoBar, IoWindow};

// Command block registers, from its base (0x1F0 for a legacy primary).
pub const ATA_REG_DATA: u16 = 0;
/// Read: Error; write: Features.
pub const ATA_REG_ERROR: u16 = 1;
pub const ATA_REG_FEATURES: u16 = 1;
pub const ATA_REG_SECTOR_COUNT: u16 = 2;
pub const ATA_REG_LBA_LOW: u16 = 3;
pub const ATA_REG_LBA_MID: u16 = 4;
pub const ATA_REG_LBA_HIGH: u16 = 5;
pub const ATA_REG_DEVICE: u16 = 6;
/// Read: Status (acknowledges INTRQ); write: Command.
pub const ATA_REG_STATUS: u16 = 7;
pub const ATA_REG_COMMAND: u16 = 7;
/// The control block's one register: read, Alternate Status (no
/// acknowledge); write, Device Control.
pub const DEVICE_CONTROL_NIEN: u8 = 1 << 1;

/// Compatibility-mode ports of the primary channel.
pub const LEGACY_PRIMARY_COMMAND: u16 = 0x1F0;
pub const LEGACY_PRIMARY_CONTROL: u16 = 0x3F6;
/// In native mode the control register is at offset 2 of BAR1's block.
pub const NATIVE_CONTROL_OFFSET: u16 = 2;

// Programming interface (the class code's low byte).
pub const PROG_IF_PRIMARY_NATIVE: u8 = 1 << 0;
pub const PROG_IF_BUS_MASTER: u8 = 1 << 7;
/// BAR4: the bus-master registers, the primary channel's first.
pub const BMIDE_BAR: usize = 4;

// Bus-master registers of a channel.
pub const BMIC: u16 = 0;
pub const BMIS: u16 = 2;
pub const BMIDTP: u16 = 4;
/// Start/Stop Bus Master.
pub const BMIC_SSBM: u8 = 1 << 0;
/// Read/Write Control: set, the bus master writes memory (a device read).
pub const BMIC_RWCON: u8 = 1 << 3;
/// Bus Master IDE Active.
pub const BMIS_BMIDEA: u8 = 1 << 0;
/// IDE DMA Error (write 1 to clear).
pub const BMIS_ERR: u8 = 1 << 1;
/// IDE Interrupt Status (write 1 to clear).
pub const BMIS_IDEINTS: u8 = 1 << 2;
/// Drive 0 DMA Capable (for software; kept on writes).
pub const BMIS_DMA0CAP: u8 = 1 << 5;
pub const BMIS_DMA1CAP: u8 = 1 << 6;

/// PIIX IDE Timing register of the primary channel (config 0x40, 16 bits):
/// its IDE Decode Enable gates the legacy ports on a real PIIX (QEMU
/// decodes them regardless).
pub const PIIX_IDETIM: u8 = 0x40;
pub const PIIX_IDETIM_IDE: u32 = 1 << 15;
pub const INTEL_VENDOR: u16 = 0x8086;

/// A physical region descriptor: base, then byte count (bits 15:1, 0 for
/// 64 KiB) and End Of Table in bit 31. A region may not cross 64 KiB.
pub const PRD_EOT: u32 = 1 << 31;
pub const PRD_MAX_BYTES: u64 = 64 << 10;
/// The largest transfer the driver takes; its PRD table has room for it on
/// any alignment.
pub const MAX_TRANSFER: usize = 4 << 20;
pub const PRD_TABLE_ENTRIES: usize = MAX_TRANSFER / PRD_MAX_BYTES as usize + 1;

const SECTOR: usize = 512;
const MS: u64 = 1_000_000;

/// Where one channel's registers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub command: u16,
    pub control: u16,
    pub bus_master: u16,
}

/// The primary channel's ports: compatibility (0x1F0, 0x3F6) or native
/// (BAR0, BAR1 + 2) by the programming interface; the bus master at BAR4.
pub fn primary_channel(prog_if: u8, bars: &[Option<IoBar>; 6]) -> Result<Channel, String> {
    let bus_master = match bars[BMIDE_BAR] {
        Some(b) if prog_if & PROG_IF_BUS_MASTER != 0 => b.port,
        _ => {
            return Err(format!(
                "no bus-master DMA (programming interface {prog_if:#04x}, BAR4 {:?})",
                bars[BMIDE_BAR]
            ))
        }
    };
    if prog_if & PROG_IF_PRIMARY_NATIVE == 0 {
        return Ok(Channel {
            command: LEGACY_PRIMARY_COMMAND,
            control: LEGACY_PRIMARY_CONTROL,
            bus_master,
        });
    }
    match (bars[0], bars[1]) {
        (Some(c), Some(k)) => Ok(Channel {
            command: c.port,
            control: k.port + NATIVE_CONTROL_OFFSET,
            bus_master,
        }),
        _ => Err("native-mode primary channel without I/O BAR0 and BAR1".into()),
    }
}

/// The PRD table of one transfer: regions split where the buffer crosses
/// a 64 KiB boundary, the last with EOT. `Err` if the buffer is beyond the
/// engine's 32 bits.
pub fn prd_table(addr: u64, len: usize) -> Result<Vec<[u32; 2]>, String> {
    bus32(addr + len as u64 - 1)?;
    let mut prds = Vec::new();
    let (mut at, end) = (addr, addr + len as u64);
    while at < end {
        let next = ((at / PRD_MAX_BYTES) + 1) * PRD_MAX_BYTES;
        let n = next.min(end) - at;
        // 64 KiB is written as 0.
        prds.push([at as u32, (n as u32) & 0xfffe]);
        at += n;
    }
    if let Some(last) = prds.last_mut() {
        last[1] |= PRD_EOT;
    }
    Ok(prds)
}

/// The task file of a 48-bit command, in the order it is written: each
/// register twice, the high-order ("previous") byte first. (Features is
/// not used by the DMA EXT commands.)
pub fn lba48_taskfile(lba: u64, sectors: u64) -> [(u16, u8); 8] {
    // 65536 sectors is a count of 0.
    let count = (sectors % LBA48_MAX_SECTORS) as u16;
    let l = lba.to_le_bytes();
    [
        (ATA_REG_SECTOR_COUNT, (count >> 8) as u8),
        (ATA_REG_SECTOR_COUNT, count as u8),
        (ATA_REG_LBA_LOW, l[3]),
        (ATA_REG_LBA_LOW, l[0]),
        (ATA_REG_LBA_MID, l[4]),
        (ATA_REG_LBA_MID, l[1]),
        (ATA_REG_LBA_HIGH, l[5]),
        (ATA_REG_LBA_HIGH, l[2]),
    ]
}

pub struct Ide<'c, P: Ports> {
    ports: P,
    ch: Channel,
    clock: &'c dyn Clock,
    prdt: DmaBuf,
    sectors: u64,
    prepared: Option<(usize, Request)>,
    busy: Option<(usize, Op)>,
}

/// Finds the channel of the IDE function at `bdf`, assigns its I/O BARs
/// from `window`, enables it and brings up its primary master on `ports`.
pub fn open<'c, P: Ports>(
    cam: &mut dyn ConfigSpace,
    bdf: Bdf,
    window: &mut IoWindow,
    ports: P,
    clock: &'c dyn Clock,
) -> Result<Ide<'c, P>, String> {
    let ids = Ids::read(cam, bdf).ok_or_else(|| format!("{bdf}: no function"))?;
    let bars = pci::enable_io(cam, bdf, window)?;
    let ch = primary_channel(ids.class.2, &bars).map_err(|e| format!("{bdf}: {e}"))?;
    if ids.vendor == INTEL_VENDOR && ch.command == LEGACY_PRIMARY_COMMAND {
        let t = cam.read32(bdf, PIIX_IDETIM);
        cam.write32(bdf, PIIX_IDETIM, t | PIIX_IDETIM_IDE);
    }
    Ide::new(ports, ch, clock)
}

impl<'c, P: Ports> Ide<'c, P> {
    fn out(&mut self, reg: u16, v: u8) {
        self.ports.outb(self.ch.command + reg, v)
    }
    fn inp(&mut self, reg: u16) -> u8 {
        self.ports.inb(self.ch.command + reg)
    }
    fn alt_status(&mut self) -> u8 {
        self.ports.inb(self.ch.control)
    }
    fn bm_out(&mut self, reg: u16, v: u8) {
        self.ports.outb(self.ch.bus_master + reg, v)
    }
    fn bm_in(&mut self, reg: u16) -> u8 {
        self.ports.inb(self.ch.bus_master + reg)
    }

    /// Clears BMIS's interrupt and error bits; marks drive 0 DMA capable.
    fn clear_bm_status(&mut self) {
        let s = self.bm_in(BMIS);
        self.bm_out(
            BMIS,
            (s & BMIS_DMA1CAP) | BMIS_DMA0CAP | BMIS_IDEINTS | BMIS_ERR,
        );
    }

    /// The 400 ns a device may take to show a new status (ATA8: read the
    /// Alternate Status and ignore it, four times).
    fn settle(&mut self) {
        for _ in 0..4 {
            self.alt_status();
        }
    }

    fn wait_status(
        &mut self,
        timeout_ms: u64,
        what: &str,
        done: fn(u8) -> bool,
    ) -> Result<u8, String> {
        let (ports, control, clock) = (&mut self.ports, self.ch.control, self.clock);
        let mut last = 0;
        wait_for(clock, timeout_ms * MS, what, || {
            last = ports.inb(control);
            done(last)
        })
        .map_err(|e| format!("{e} (status {last:#04x})"))?;
        Ok(last)
    }

    /// Stops the bus master, enables INTRQ, selects device 0 and reads its
    /// size with IDENTIFY DEVICE (PIO).
    pub fn new(ports: P, ch: Channel, clock: &'c dyn Clock) -> Result<Self, String> {
        let mut d = Ide {
            ports,
            ch,
            clock,
            prdt: DmaBuf::new(4096),
            sectors: 0,
            prepared: None,
            busy: None,
        };
        d.bm_out(BMIC, 0);
        d.clear_bm_status();
        d.ports.outb(ch.control, 0);
        d.out(ATA_REG_DEVICE, ATA_DEVICE_LBA);
        d.settle();
        if d.alt_status() == 0xff {
            return Err(format!(
                "no device 0 on the channel at {:#x} (status 0xff: nothing drives the bus)",
                ch.command
            ));
        }
        d.wait_status(1000, "the drive to clear BSY", |s| s & ATA_STATUS_BSY == 0)?;
        d.sectors = d.identify()?;
        Ok(d)
    }

    fn identify(&mut self) -> Result<u64, String> {
        self.out(ATA_REG_COMMAND, ATA_CMD_IDENTIFY_DEVICE);
        self.settle();
        let s = self.wait_status(5000, "IDENTIFY DEVICE", |s| {
            s & ATA_STATUS_BSY == 0 && s & (ATA_STATUS_DRQ | ATA_STATUS_ERR) != 0
        })?;
        if s & ATA_STATUS_ERR != 0 {
            let e = self.inp(ATA_REG_ERROR);
            return Err(format!(
                "IDENTIFY DEVICE aborted (status {s:#04x} error {e:#04x}): not an ATA disk"
            ));
        }
        let mut id = [0u8; SECTOR];
        for w in id.chunks_exact_mut(2) {
            w.copy_from_slice(&self.ports.inw(self.ch.command + ATA_REG_DATA).to_le_bytes());
        }
        self.inp(ATA_REG_STATUS);
        self.clear_bm_status();
        if !identify_lba48(&id) {
            return Err("the drive lacks the 48-bit feature set (READ DMA EXT)".into());
        }
        match identify_sectors(&id) {
            0 => Err("IDENTIFY DEVICE reports 0 sectors".into()),
            n => Ok(n),
        }
    }

    /// Programs the PRD table, the task file and the bus master for `req`,
    /// then starts it.
    fn start(&mut self, req: &Request) -> Result<(), String> {
        let s = self.alt_status();
        if s & (ATA_STATUS_BSY | ATA_STATUS_DRQ) != 0 {
            return Err(format!("the drive is busy (status {s:#04x})"));
        }
        self.clear_bm_status();
        let command = match req.op {
            Op::Flush => {
                self.out(ATA_REG_DEVICE, ATA_DEVICE_LBA);
                self.out(ATA_REG_COMMAND, ATA_CMD_FLUSH_CACHE_EXT);
                return Ok(());
            }
            Op::Read => ATA_CMD_READ_DMA_EXT,
            Op::Write => ATA_CMD_WRITE_DMA_EXT,
        };
        for (i, p) in prd_table(req.buf, req.len)?.iter().enumerate() {
            self.prdt.write32(8 * i, p[0]);
            self.prdt.write32(8 * i + 4, p[1]);
        }
        fence();
        let table = self.prdt.phys32()?;
        self.ports.outl(self.ch.bus_master + BMIDTP, table);
        let direction = if req.op == Op::Read { BMIC_RWCON } else { 0 };
        self.bm_out(BMIC, direction);
        self.out(ATA_REG_DEVICE, ATA_DEVICE_LBA);
        for (reg, v) in lba48_taskfile(req.lba(), req.sectors()) {
            self.out(reg, v);
        }
        self.out(ATA_REG_COMMAND, command);
        self.bm_out(BMIC, direction | BMIC_SSBM);
        Ok(())
    }
}

impl<P: Ports> Disk for Ide<'_, P> {
    fn size(&self) -> u64 {
        self.sectors * SECTOR as u64
    }
    fn depth(&self) -> usize {
        1
    }
    fn max_transfer(&self) -> usize {
        MAX_TRANSFER
    }

    fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String> {
        if tag != 0 {
            return Err(format!("tag {tag}: IDE runs one command at a time"));
        }
        if self.prepared.is_some() || self.busy.is_some() {
            return Err("the IDE channel is busy".into());
        }
        if req.op != Op::Flush {
            if req.len == 0 || req.len > MAX_TRANSFER || !req.len.is_multiple_of(SECTOR) {
                return Err(format!(
                    "a transfer of {} bytes is not 1 to {} whole sectors",
                    req.len,
                    MAX_TRANSFER / SECTOR
                ));
            }
            prd_table(req.buf, req.len)?;
        }
        self.prepared = Some((tag, *req));
        Ok(())
    }

    fn kick(&mut self) -> Result<(), String> {
        let Some((tag, req)) = self.prepared.take() else {
            return Ok(());
        };
        self.start(&req)?;
        self.busy = Some((tag, req.op));
        Ok(())
    }

    fn poll(&mut self) -> Option<Completion> {
        let (tag, op) = self.busy?;
        let bms = self.bm_in(BMIS);
        if bms & BMIS_IDEINTS == 0 {
            return None;
        }
        self.busy = None;
        if op != Op::Flush {
            self.bm_out(BMIC, 0);
        }
        let status = self.inp(ATA_REG_STATUS);
        self.clear_bm_status();
        let bad = ATA_STATUS_ERR | ATA_STATUS_DF | ATA_STATUS_BSY | ATA_STATUS_DRQ;
        if status & bad != 0 || bms & BMIS_ERR != 0 {
            let error = self.inp(ATA_REG_ERROR);
            return Some((
                tag,
                Err(format!(
                    "IDE {}: ATA status {status:#04x} error {error:#04x}, bus-master status {bms:#04x}",
                    op.name()
                )),
            ));
        }
        Some((tag, Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ata::ATA_STATUS_DRDY;
    use crate::hw::fake::StepClock;
    use crate::pci::fake::FakeCam;
    use alloc::vec;

    #[test]
    fn prds_split_at_64k_boundaries_and_end_the_table() {
        assert_eq!(
            prd_table(0xF000, 0x12000).unwrap(),
            [
                [0xF000, 0x1000],
                [0x1_0000, 0],
                [0x2_0000, 0x1000 | PRD_EOT]
            ]
        );
        assert_eq!(prd_table(0x2_0000, 65536).unwrap(), [[0x2_0000, PRD_EOT]]);
        assert_eq!(
            prd_table(0x10_0000, 4096).unwrap(),
            [[0x10_0000, 4096 | PRD_EOT]]
        );
        // The largest transfer fits the table on any 512-byte alignment.
        assert_eq!(
            prd_table(0x10_0200, MAX_TRANSFER).unwrap().len(),
            PRD_TABLE_ENTRIES
        );
        assert!(prd_table(0xFFFF_F000, 8192)
            .unwrap_err()
            .contains("above 4 GiB"));
    }

    #[test]
    fn the_48_bit_task_file_writes_the_high_byte_first() {
        let tf = lba48_taskfile(0x0000_1234_5678_9abc, 8);
        assert_eq!(
            tf,
            [
                (ATA_REG_SECTOR_COUNT, 0),
                (ATA_REG_SECTOR_COUNT, 8),
                (ATA_REG_LBA_LOW, 0x56),
                (ATA_REG_LBA_LOW, 0xbc),
                (ATA_REG_LBA_MID, 0x34),
                (ATA_REG_LBA_MID, 0x9a),
                (ATA_REG_LBA_HIGH, 0x12),
                (ATA_REG_LBA_HIGH, 0x78),
            ]
        );
        assert_eq!(lba48_taskfile(0, LBA48_MAX_SECTORS)[..2], [(2, 0), (2, 0)]);
    }

    #[test]
    fn channels_in_compatibility_and_native_mode() {
        let io = |port| Some(IoBar { port, size: 16 });
        let mut bars = [None; 6];
        bars[4] = io(0xC000);
        assert_eq!(
            primary_channel(0x80, &bars).unwrap(),
            Channel {
                command: 0x1F0,
                control: 0x3F6,
                bus_master: 0xC000
            }
        );
        assert!(primary_channel(0x85, &bars).unwrap_err().contains("BAR0"));
        bars[0] = io(0xC040);
        bars[1] = Some(IoBar {
            port: 0xC050,
            size: 4,
        });
        assert_eq!(
            primary_channel(0x85, &bars).unwrap(),
            Channel {
                command: 0xC040,
                control: 0xC052,
                bus_master: 0xC000
            }
        );
        assert!(primary_channel(0x00, &bars)
            .unwrap_err()
            .contains("no bus-master"));
    }

    const CMD: u16 = LEGACY_PRIMARY_COMMAND;
    const CTL: u16 = LEGACY_PRIMARY_CONTROL;
    const BM: u16 = 0xC000;

    /// A PIIX IDE channel with one disk as QEMU's behaves for the probe's
    /// sequence: a DMA command waits for SSBM, then moves the data through
    /// the PRD table and raises INTRQ, which latches BMIS.IDEINTS unless
    /// nIEN masks it.
    struct FakeIde {
        disk: Vec<u8>,
        /// Task-file registers: (previous, current).
        tf: [(u8, u8); 8],
        device: u8,
        control: u8,
        status: u8,
        error: u8,
        data: Vec<u16>,
        bmic: u8,
        bmis: u8,
        bmidtp: u32,
        /// A DMA command waiting for the bus master: (opcode, lba, sectors).
        pending: Option<(u8, u64, u64)>,
        /// Leave a started transfer unfinished until `finish`.
        hold: bool,
        started: Option<(u8, u64, u64)>,
        /// Every write: (port, value).
        writes: Vec<(u16, u32)>,
        commands: Vec<u8>,
    }

    impl FakeIde {
        fn new(sectors: usize) -> FakeIde {
            FakeIde {
                disk: (0..sectors * SECTOR)
                    .map(|i| (i / SECTOR) as u8 ^ 0x5a)
                    .collect(),
                tf: [(0, 0); 8],
                device: 0,
                control: 0,
                status: ATA_STATUS_DRDY,
                error: 0,
                data: vec![],
                bmic: 0,
                bmis: 0,
                bmidtp: 0,
                pending: None,
                hold: false,
                started: None,
                writes: vec![],
                commands: vec![],
            }
        }
        fn irq(&mut self) {
            if self.control & DEVICE_CONTROL_NIEN == 0 {
                self.bmis |= BMIS_IDEINTS;
            }
        }
        fn reg(&self, r: u16) -> (u64, u64) {
            let (p, c) = self.tf[r as usize];
            (u64::from(p), u64::from(c))
        }
        fn command(&mut self, op: u8) {
            self.commands.push(op);
            match op {
                ATA_CMD_IDENTIFY_DEVICE => {
                    let mut id = vec![0u16; 256];
                    id[83] = 1 << 10;
                    let n = (self.disk.len() / SECTOR) as u64;
                    for i in 0..4 {
                        id[100 + i] = (n >> (16 * i)) as u16;
                    }
                    self.data = id;
                    self.status = ATA_STATUS_DRDY | ATA_STATUS_DRQ;
                    self.irq();
                }
                ATA_CMD_READ_DMA_EXT | ATA_CMD_WRITE_DMA_EXT => {
                    let (sc_p, sc_c) = self.reg(ATA_REG_SECTOR_COUNT);
                    let (lo_p, lo_c) = self.reg(ATA_REG_LBA_LOW);
                    let (mid_p, mid_c) = self.reg(ATA_REG_LBA_MID);
                    let (hi_p, hi_c) = self.reg(ATA_REG_LBA_HIGH);
                    let lba = lo_c
                        | (mid_c << 8)
                        | (hi_c << 16)
                        | (lo_p << 24)
                        | (mid_p << 32)
                        | (hi_p << 40);
                    let n = match (sc_p << 8) | sc_c {
                        0 => LBA48_MAX_SECTORS,
                        n => n,
                    };
                    assert_eq!(self.device, ATA_DEVICE_LBA, "device 0, LBA");
                    self.pending = Some((op, lba, n));
                    self.status = ATA_STATUS_DRDY | ATA_STATUS_BSY;
                }
                ATA_CMD_FLUSH_CACHE_EXT => self.irq(),
                _ => panic!("unexpected command {op:#x}"),
            }
        }
        /// Runs the started transfer through the PRD table.
        fn finish(&mut self) {
            let (op, lba, n) = self.started.take().expect("a started transfer");
            let read = op == ATA_CMD_READ_DMA_EXT;
            assert_eq!(
                self.bmic & BMIC_RWCON != 0,
                read,
                "the direction matches the command"
            );
            let (start, len) = (lba as usize * SECTOR, n as usize * SECTOR);
            if start + len > self.disk.len() {
                self.status = ATA_STATUS_DRDY | ATA_STATUS_ERR;
                self.error = 0x10; // IDNF
            } else {
                let mut at = start;
                let mut prd = self.bmidtp as usize;
                loop {
                    // SAFETY: the driver's PRD table and buffers are this
                    // process's memory below 4 GiB (DmaBuf in tests).
                    let (base, count) = unsafe {
                        let p = prd as *const u32;
                        (*p as usize, *p.add(1))
                    };
                    let bytes = match count & 0xfffe {
                        0 => 65536,
                        b => b as usize,
                    };
                    // SAFETY: as above.
                    let mem = unsafe { core::slice::from_raw_parts_mut(base as *mut u8, bytes) };
                    if read {
                        mem.copy_from_slice(&self.disk[at..at + bytes]);
                    } else {
                        self.disk[at..at + bytes].copy_from_slice(mem);
                    }
                    at += bytes;
                    if count & PRD_EOT != 0 {
                        break;
                    }
                    prd += 8;
                }
                assert_eq!(at, start + len, "the PRD table covers the transfer");
                self.status = ATA_STATUS_DRDY;
            }
            self.bmis &= !BMIS_BMIDEA;
            self.irq();
        }
    }

    impl Ports for &mut FakeIde {
        fn inb(&mut self, port: u16) -> u8 {
            match port {
                CTL => self.status,
                p if p == CMD + ATA_REG_STATUS => self.status,
                p if p == CMD + ATA_REG_ERROR => self.error,
                p if p == BM + BMIS => self.bmis,
                p if p == BM + BMIC => self.bmic,
                p if (CMD..CMD + 8).contains(&p) => self.tf[(p - CMD) as usize].1,
                _ => 0xff,
            }
        }
        fn outb(&mut self, port: u16, v: u8) {
            self.writes.push((port, v.into()));
            match port {
                CTL => self.control = v,
                p if p == CMD + ATA_REG_DEVICE => self.device = v,
                p if p == CMD + ATA_REG_COMMAND => self.command(v),
                p if (CMD + 1..CMD + 6).contains(&p) => {
                    let r = &mut self.tf[(p - CMD) as usize];
                    *r = (r.1, v);
                }
                p if p == BM + BMIC => {
                    let start = v & BMIC_SSBM != 0 && self.bmic & BMIC_SSBM == 0;
                    self.bmic = v & (BMIC_SSBM | BMIC_RWCON);
                    if start {
                        self.bmis |= BMIS_BMIDEA;
                        self.started = self.pending.take();
                        if !self.hold && self.started.is_some() {
                            self.finish();
                        }
                    }
                }
                p if p == BM + BMIS => {
                    // QEMU's bmdma_status_writeb.
                    self.bmis = (v & 0x60)
                        | (self.bmis & BMIS_BMIDEA)
                        | (self.bmis & !v & (BMIS_ERR | BMIS_IDEINTS));
                }
                _ => panic!("write of {v:#x} to port {port:#x}"),
            }
        }
        fn inw(&mut self, port: u16) -> u16 {
            assert_eq!(port, CMD + ATA_REG_DATA);
            let w = self.data.remove(0);
            if self.data.is_empty() {
                self.status = ATA_STATUS_DRDY;
            }
            w
        }
        fn outw(&mut self, port: u16, _: u16) {
            panic!("outw {port:#x}")
        }
        fn inl(&mut self, port: u16) -> u32 {
            panic!("inl {port:#x}")
        }
        fn outl(&mut self, port: u16, v: u32) {
            assert_eq!(port, BM + BMIDTP);
            self.writes.push((port, v));
            self.bmidtp = v;
        }
    }

    const LEGACY: Channel = Channel {
        command: CMD,
        control: CTL,
        bus_master: BM,
    };

    #[test]
    fn a_read_runs_the_bus_master_sequence_and_completes_on_the_interrupt_bit() {
        let mut fake = FakeIde::new(2048);
        fake.hold = true;
        let clock = StepClock::new(1000);
        let mut d = Ide::new(&mut fake, LEGACY, &clock).unwrap();
        assert_eq!(d.size(), 2048 * 512);
        assert_eq!(d.depth(), 1);
        let buf = DmaBuf::new(4096);
        d.submit(0, &Request::read(8192, buf.phys(), 4096)).unwrap();
        let table = d.prdt.phys32().unwrap();
        assert!(
            d.ports.writes.iter().all(|w| w.1 != table),
            "nothing before kick"
        );
        let before = d.ports.writes.len();
        d.kick().unwrap();
        assert_eq!(d.poll(), None, "in flight until the transfer ends");
        let writes = d.ports.writes[before..].to_vec();
        assert_eq!(
            writes,
            [
                (BM + BMIS, u32::from(BMIS_DMA0CAP | BMIS_IDEINTS | BMIS_ERR)),
                (BM + BMIDTP, table),
                (BM + BMIC, u32::from(BMIC_RWCON)),
                (CMD + ATA_REG_DEVICE, u32::from(ATA_DEVICE_LBA)),
                (CMD + ATA_REG_SECTOR_COUNT, 0),
                (CMD + ATA_REG_SECTOR_COUNT, 8),
                (CMD + ATA_REG_LBA_LOW, 0),
                (CMD + ATA_REG_LBA_LOW, 16),
                (CMD + ATA_REG_LBA_MID, 0),
                (CMD + ATA_REG_LBA_MID, 0),
                (CMD + ATA_REG_LBA_HIGH, 0),
                (CMD + ATA_REG_LBA_HIGH, 0),
                (CMD + ATA_REG_COMMAND, u32::from(ATA_CMD_READ_DMA_EXT)),
                (BM + BMIC, u32::from(BMIC_RWCON | BMIC_SSBM)),
            ]
        );
        d.ports.finish();
        assert_eq!(d.poll(), Some((0, Ok(()))));
        assert_eq!(d.poll(), None);
        for (k, sector) in buf.as_slice().chunks(SECTOR).enumerate() {
            assert!(
                sector.iter().all(|&b| b == (16 + k as u8) ^ 0x5a),
                "sector {k}"
            );
        }
        assert_eq!(d.ports.bmic & BMIC_SSBM, 0, "the bus master stopped");
        assert_eq!(d.ports.bmis & BMIS_IDEINTS, 0, "the interrupt bit cleared");
        assert_eq!(d.ports.control & DEVICE_CONTROL_NIEN, 0);
        assert_eq!(
            d.ports.commands,
            [ATA_CMD_IDENTIFY_DEVICE, ATA_CMD_READ_DMA_EXT]
        );
    }

    #[test]
    fn writes_flushes_and_reads_across_64k_boundaries_round_trip() {
        let mut fake = FakeIde::new(2048);
        let clock = StepClock::new(1000);
        let mut d = Ide::new(&mut fake, LEGACY, &clock).unwrap();
        // 128 KiB from 4 KiB past a 64 KiB boundary: three regions.
        let mut out = DmaBuf::new(0x4_0000);
        let skew = (0x1_0000 - (out.phys() as usize & 0xffff)) % 0x1_0000 + 0x1000;
        let region = &mut out.as_mut_slice()[skew..skew + 0x2_0000];
        for (i, b) in region.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let at = out.phys() + skew as u64;
        assert!(prd_table(at, 0x2_0000).unwrap().len() >= 3);
        d.submit(0, &Request::write(512 * 100, at, 0x2_0000))
            .unwrap();
        d.kick().unwrap();
        assert_eq!(d.poll(), Some((0, Ok(()))));
        d.submit(0, &Request::flush()).unwrap();
        d.kick().unwrap();
        assert_eq!(d.poll(), Some((0, Ok(()))));
        let back = DmaBuf::new(0x2_0000);
        d.submit(0, &Request::read(512 * 100, back.phys(), 0x2_0000))
            .unwrap();
        d.kick().unwrap();
        assert_eq!(d.poll(), Some((0, Ok(()))));
        assert_eq!(back.as_slice(), &out.as_slice()[skew..skew + 0x2_0000]);
        assert_eq!(
            d.ports.commands[1..],
            [
                ATA_CMD_WRITE_DMA_EXT,
                ATA_CMD_FLUSH_CACHE_EXT,
                ATA_CMD_READ_DMA_EXT
            ]
        );
    }

    #[test]
    fn an_ata_error_fails_the_request_and_frees_the_channel() {
        let mut fake = FakeIde::new(64);
        let clock = StepClock::new(1000);
        let mut d = Ide::new(&mut fake, LEGACY, &clock).unwrap();
        let buf = DmaBuf::new(4096);
        // Past the end of the 32 KiB disk.
        d.submit(0, &Request::read(65536, buf.phys(), 4096))
            .unwrap();
        d.kick().unwrap();
        let (tag, r) = d.poll().unwrap();
        assert_eq!(tag, 0);
        let e = r.unwrap_err();
        assert!(e.contains("IDE read: ATA status 0x41 error 0x10"), "{e}");
        // Busy, wrong tags and odd sizes are refused before the device.
        assert!(d.submit(1, &Request::read(0, buf.phys(), 4096)).is_err());
        assert!(d.submit(0, &Request::read(0, buf.phys(), 100)).is_err());
        d.ports.status = ATA_STATUS_DRDY;
        d.submit(0, &Request::read(0, buf.phys(), 4096)).unwrap();
        assert!(d
            .submit(0, &Request::read(0, buf.phys(), 4096))
            .unwrap_err()
            .contains("busy"));
    }

    #[test]
    fn open_finds_the_legacy_channel_and_enables_decoding() {
        let mut cam = FakeCam::default();
        let bdf = Bdf {
            slot: 9,
            function: 0,
        };
        cam.set(bdf, pci::VENDOR_ID, 0x7010_8086);
        cam.set(bdf, pci::CLASS_REVISION, 0x0101_8000);
        cam.set(bdf, pci::BAR0 + 16, 0x1);
        cam.masks.insert((9, 0, pci::BAR0 + 16), 0xffff_fff0);
        let mut fake = FakeIde::new(256);
        let clock = StepClock::new(1000);
        let d = open(&mut cam, bdf, &mut IoWindow::new(), &mut fake, &clock).unwrap();
        assert_eq!(d.ch, LEGACY);
        assert_eq!(d.size(), 256 * 512);
        assert_eq!(cam.get(bdf, PIIX_IDETIM) & PIIX_IDETIM_IDE, PIIX_IDETIM_IDE);
        // No disk on the channel: the bus floats.
        let mut empty = FakeIde::new(0);
        empty.status = 0xff;
        let e = Ide::new(&mut empty, LEGACY, &clock).err().unwrap();
        assert!(e.contains("no device 0"), "{e}");
    }
}
