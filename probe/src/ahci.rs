//! AHCI 1.3 (Serial ATA AHCI 1.3.1), port 0 only, polled: no interrupt is
//! enabled (GHC.IE and PxIE stay 0). Single requests are READ/WRITE DMA EXT
//! (completion: the PxCI bit clears); batches are NCQ, READ FPDMA QUEUED
//! (PxSACT bits set before PxCI; completion: the PxSACT bit clears, which
//! needs PxCMD.FRE for the Set Device Bits FIS). Register names as in the
//! spec and Linux's drivers/ata/ahci.h.

use alloc::format;
use alloc::string::String;

use crate::ata::{
    identify_sectors, ATA_CMD_FLUSH_CACHE_EXT, ATA_CMD_IDENTIFY_DEVICE, ATA_CMD_READ_DMA_EXT,
    ATA_CMD_READ_FPDMA_QUEUED, ATA_CMD_WRITE_DMA_EXT, ATA_DEVICE_LBA,
};
use crate::disk::{Completion, Disk, Op, Request};
use crate::hw::{fence, wait_for, Clock, DmaBuf, Regs};

// Generic host control.
pub const CAP: usize = 0x00;
pub const GHC: usize = 0x04;
pub const IS: usize = 0x08;
pub const PI: usize = 0x0C;
pub const VS: usize = 0x10;
pub const CAP_SNCQ: u32 = 1 << 30;
pub const CAP_NCS_SHIFT: u32 = 8;
pub const GHC_AE: u32 = 1 << 31;
pub const GHC_IE: u32 = 1 << 1;

// Port registers, relative to the port's base 0x100 + 0x80 * port.
pub const PORT_BASE: usize = 0x100;
pub const PORT_STRIDE: usize = 0x80;
pub const PX_CLB: usize = 0x00;
pub const PX_CLBU: usize = 0x04;
pub const PX_FB: usize = 0x08;
pub const PX_FBU: usize = 0x0C;
pub const PX_IS: usize = 0x10;
pub const PX_IE: usize = 0x14;
pub const PX_CMD: usize = 0x18;
pub const PX_TFD: usize = 0x20;
pub const PX_SIG: usize = 0x24;
pub const PX_SSTS: usize = 0x28;
pub const PX_SERR: usize = 0x30;
pub const PX_SACT: usize = 0x34;
pub const PX_CI: usize = 0x38;

pub const PX_CMD_ST: u32 = 1 << 0;
pub const PX_CMD_SUD: u32 = 1 << 1;
pub const PX_CMD_POD: u32 = 1 << 2;
pub const PX_CMD_FRE: u32 = 1 << 4;
pub const PX_CMD_FR: u32 = 1 << 14;
pub const PX_CMD_CR: u32 = 1 << 15;

pub const PX_IS_DHRS: u32 = 1 << 0;
pub const PX_IS_SDBS: u32 = 1 << 3;
pub const PX_IS_IFS: u32 = 1 << 27;
pub const PX_IS_HBDS: u32 = 1 << 28;
pub const PX_IS_HBFS: u32 = 1 << 29;
pub const PX_IS_TFES: u32 = 1 << 30;
pub const PX_IS_ERRORS: u32 = PX_IS_TFES | PX_IS_HBFS | PX_IS_HBDS | PX_IS_IFS;

pub const TFD_STS_ERR: u32 = 1 << 0;
pub const TFD_STS_DRQ: u32 = 1 << 3;
pub const TFD_STS_BSY: u32 = 1 << 7;
pub const SSTS_DET_MASK: u32 = 0xf;
pub const SSTS_DET_PRESENT: u32 = 3;

// FIS.
pub const FIS_TYPE_REG_H2D: u8 = 0x27;
pub const FIS_H2D_C: u8 = 1 << 7;
/// Length of a Register H2D FIS, dwords (the command header's CFL).
pub const H2D_FIS_DWORDS: u8 = 5;

// Command list and table layout.
pub const CMD_SLOTS: usize = 32;
pub const CMD_HEADER_LEN: usize = 32;
pub const CMD_HEADER_W: u32 = 1 << 6;
pub const CMD_HEADER_PRDTL_SHIFT: u32 = 16;
pub const CMD_TABLE_PRDT: usize = 0x80;
/// One command table: CFIS, ACMD, reserved, one PRD; 128-byte aligned.
pub const CMD_TABLE_LEN: usize = 0x100;
pub const PRD_MAX_BYTES: usize = 4 << 20;
pub const RX_FIS_LEN: usize = 256;

const SECTOR: usize = 512;
const MS: u64 = 1_000_000;

/// A Register Host-to-Device FIS (Serial ATA 3.x, 10.5.5), 20 bytes.
pub fn h2d_fis(command: u8, lba: u64, count: u16, features: u16, device: u8) -> [u8; 20] {
    let l = lba.to_le_bytes();
    let c = count.to_le_bytes();
    let f = features.to_le_bytes();
    [
        FIS_TYPE_REG_H2D,
        FIS_H2D_C,
        command,
        f[0],
        l[0],
        l[1],
        l[2],
        device,
        l[3],
        l[4],
        l[5],
        f[1],
        c[0],
        c[1],
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}

/// The FIS of `req` on `tag`: NCQ (READ FPDMA QUEUED: count in the
/// features, tag in count bits 7:3) for a queued read, else a DMA EXT
/// command or a flush.
pub fn request_fis(req: &Request, tag: usize) -> [u8; 20] {
    let sectors = req.sectors() as u16; // 65536 sectors: 0, as ATA says
    match req.op {
        Op::Read if req.queued => h2d_fis(
            ATA_CMD_READ_FPDMA_QUEUED,
            req.lba(),
            (tag as u16) << 3,
            sectors,
            ATA_DEVICE_LBA,
        ),
        Op::Read => h2d_fis(ATA_CMD_READ_DMA_EXT, req.lba(), sectors, 0, ATA_DEVICE_LBA),
        Op::Write => h2d_fis(ATA_CMD_WRITE_DMA_EXT, req.lba(), sectors, 0, ATA_DEVICE_LBA),
        Op::Flush => h2d_fis(ATA_CMD_FLUSH_CACHE_EXT, 0, 0, 0, ATA_DEVICE_LBA),
    }
}

/// A command header (AHCI 4.2.2), as its 8 dwords.
pub fn command_header(write: bool, prdtl: u16, ctba: u64) -> [u32; 8] {
    let dw0 = u32::from(H2D_FIS_DWORDS)
        | if write { CMD_HEADER_W } else { 0 }
        | (u32::from(prdtl) << CMD_HEADER_PRDTL_SHIFT);
    [dw0, 0, ctba as u32, (ctba >> 32) as u32, 0, 0, 0, 0]
}

/// A physical region descriptor (AHCI 4.2.3.3): DBC is the byte count
/// minus one; no interrupt on completion.
pub fn prd(addr: u64, len: usize) -> [u32; 4] {
    debug_assert!(len > 0 && len <= PRD_MAX_BYTES && len.is_multiple_of(2));
    [
        addr as u32,
        (addr >> 32) as u32,
        0,
        (len as u32 - 1) & 0x3f_ffff,
    ]
}

/// Tags of `outstanding` that the device has finished: their bit is clear
/// in `now` (PxCI or PxSACT as read).
pub fn finished(outstanding: u32, now: u32) -> u32 {
    outstanding & !now
}

pub struct Ahci<'c, R: Regs> {
    regs: R,
    clock: &'c dyn Clock,
    port: usize,
    clb: DmaBuf,
    _fb: DmaBuf,
    tables: DmaBuf,
    slots: usize,
    sectors: u64,
    /// Prepared, not yet issued: non-NCQ and NCQ tags.
    prep_ci: u32,
    prep_ncq: u32,
    /// Issued, not yet reaped.
    busy_ci: u32,
    busy_ncq: u32,
    /// Finished, not yet returned by `poll`, and those that failed.
    done: u32,
    failed: u32,
    error: String,
}

impl<'c, R: Regs> Ahci<'c, R> {
    fn px(&self, reg: usize) -> usize {
        PORT_BASE + PORT_STRIDE * self.port + reg
    }
    fn read(&self, reg: usize) -> u32 {
        self.regs.read32(self.px(reg))
    }
    fn write(&self, reg: usize, v: u32) {
        self.regs.write32(self.px(reg), v)
    }

    /// Brings up port 0: stop it, point it at our command list and FIS
    /// area, enable FIS receive, wait for the link and the drive, start it,
    /// and read the drive's size with IDENTIFY DEVICE.
    pub fn new(regs: R, clock: &'c dyn Clock) -> Result<Self, String> {
        let cap = regs.read32(CAP);
        regs.write32(GHC, (regs.read32(GHC) | GHC_AE) & !GHC_IE);
        if regs.read32(PI) & 1 == 0 {
            return Err(format!(
                "port 0 not implemented (PI={:#x})",
                regs.read32(PI)
            ));
        }
        let slots = (((cap >> CAP_NCS_SHIFT) & 0x1f) + 1) as usize;
        let mut a = Ahci {
            regs,
            clock,
            port: 0,
            clb: DmaBuf::new(CMD_SLOTS * CMD_HEADER_LEN),
            _fb: DmaBuf::new(RX_FIS_LEN),
            tables: DmaBuf::new(CMD_SLOTS * CMD_TABLE_LEN),
            slots: if cap & CAP_SNCQ != 0 { slots } else { 1 },
            sectors: 0,
            prep_ci: 0,
            prep_ncq: 0,
            busy_ci: 0,
            busy_ncq: 0,
            done: 0,
            failed: 0,
            error: String::new(),
        };
        a.stop()?;
        let (clb, fb) = (a.clb.phys(), a._fb.phys());
        a.write(PX_CLB, clb as u32);
        a.write(PX_CLBU, (clb >> 32) as u32);
        a.write(PX_FB, fb as u32);
        a.write(PX_FBU, (fb >> 32) as u32);
        a.write(
            PX_CMD,
            a.read(PX_CMD) | PX_CMD_FRE | PX_CMD_SUD | PX_CMD_POD,
        );
        a.write(PX_SERR, u32::MAX);
        a.write(PX_IE, 0);
        a.write(PX_IS, u32::MAX);
        wait_for(
            clock,
            1000 * MS,
            "PxSSTS.DET = 3 (a drive on the link)",
            || a.read(PX_SSTS) & SSTS_DET_MASK == SSTS_DET_PRESENT,
        )
        .map_err(|e| format!("port 0: {e} (PxSSTS={:#x})", a.read(PX_SSTS)))?;
        wait_for(clock, 1000 * MS, "PxTFD without BSY and DRQ", || {
            a.read(PX_TFD) & (TFD_STS_BSY | TFD_STS_DRQ) == 0
        })
        .map_err(|e| format!("port 0: {e} (PxTFD={:#x})", a.read(PX_TFD)))?;
        a.write(PX_CMD, a.read(PX_CMD) | PX_CMD_ST);
        a.sectors = a.identify()?;
        Ok(a)
    }

    /// Clears PxCMD.ST and FRE and waits for CR and FR to clear.
    fn stop(&mut self) -> Result<(), String> {
        let cmd = self.read(PX_CMD);
        if cmd & (PX_CMD_ST | PX_CMD_CR) != 0 {
            self.write(PX_CMD, cmd & !PX_CMD_ST);
            wait_for(self.clock, 500 * MS, "PxCMD.CR to clear", || {
                self.read(PX_CMD) & PX_CMD_CR == 0
            })?;
        }
        let cmd = self.read(PX_CMD);
        if cmd & (PX_CMD_FRE | PX_CMD_FR) != 0 {
            self.write(PX_CMD, cmd & !PX_CMD_FRE);
            wait_for(self.clock, 500 * MS, "PxCMD.FR to clear", || {
                self.read(PX_CMD) & PX_CMD_FR == 0
            })?;
        }
        Ok(())
    }

    fn build(&mut self, tag: usize, fis: &[u8; 20], write: bool, buf: u64, len: usize) {
        let table = self.tables.phys() + (tag * CMD_TABLE_LEN) as u64;
        let t = tag * CMD_TABLE_LEN;
        self.tables.write_bytes(t, fis);
        let prdtl = if len > 0 {
            for (i, d) in prd(buf, len).iter().enumerate() {
                self.tables.write32(t + CMD_TABLE_PRDT + 4 * i, *d);
            }
            1
        } else {
            0
        };
        for (i, d) in command_header(write, prdtl, table).iter().enumerate() {
            self.clb.write32(tag * CMD_HEADER_LEN + 4 * i, *d);
        }
    }

    fn identify(&mut self) -> Result<u64, String> {
        let buf = DmaBuf::new(SECTOR);
        let fis = h2d_fis(ATA_CMD_IDENTIFY_DEVICE, 0, 0, 0, 0);
        self.build(0, &fis, false, buf.phys(), SECTOR);
        fence();
        self.write(PX_CI, 1);
        wait_for(self.clock, 5000 * MS, "IDENTIFY DEVICE", || {
            self.read(PX_CI) & 1 == 0 || self.read(PX_IS) & PX_IS_TFES != 0
        })?;
        let (is, tfd) = (self.read(PX_IS), self.read(PX_TFD));
        self.write(PX_IS, is);
        if is & PX_IS_ERRORS != 0 || tfd & TFD_STS_ERR != 0 {
            return Err(format!(
                "IDENTIFY DEVICE failed: PxIS={is:#x} PxTFD={tfd:#x}"
            ));
        }
        let sectors = identify_sectors(buf.as_slice());
        if sectors == 0 {
            return Err("IDENTIFY DEVICE reports 0 sectors".into());
        }
        Ok(sectors)
    }

    /// The error path: fail everything in flight, then restart the port
    /// (ST off, errors cleared, ST on) so the next request can run.
    fn fail_all(&mut self, why: String) {
        self.failed |= self.busy_ci | self.busy_ncq;
        self.busy_ci = 0;
        self.busy_ncq = 0;
        self.error = why;
        let _ = self.stop();
        self.write(PX_SERR, u32::MAX);
        self.write(PX_IS, u32::MAX);
        self.write(PX_CMD, self.read(PX_CMD) | PX_CMD_FRE);
        self.write(PX_CMD, self.read(PX_CMD) | PX_CMD_ST);
    }
}

impl<R: Regs> Disk for Ahci<'_, R> {
    fn size(&self) -> u64 {
        self.sectors * SECTOR as u64
    }
    fn depth(&self) -> usize {
        self.slots
    }
    fn max_transfer(&self) -> usize {
        PRD_MAX_BYTES.min(65536 * SECTOR)
    }

    fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String> {
        if tag >= self.slots {
            return Err(format!(
                "tag {tag} beyond the port's {} command slots",
                self.slots
            ));
        }
        let bit = 1u32 << tag;
        if (self.prep_ci | self.prep_ncq | self.busy_ci | self.busy_ncq) & bit != 0 {
            return Err(format!("command slot {tag} is busy"));
        }
        if req.len > self.max_transfer() || !req.len.is_multiple_of(SECTOR) {
            return Err(format!(
                "a transfer of {} bytes does not fit one PRD",
                req.len
            ));
        }
        let ncq = req.queued && req.op == Op::Read;
        self.build(
            tag,
            &request_fis(req, tag),
            req.op == Op::Write,
            req.buf,
            req.len,
        );
        if ncq {
            self.prep_ncq |= bit;
        } else {
            self.prep_ci |= bit;
        }
        Ok(())
    }

    fn kick(&mut self) -> Result<(), String> {
        fence();
        if self.prep_ncq != 0 {
            self.write(PX_SACT, self.prep_ncq);
        }
        let ci = self.prep_ci | self.prep_ncq;
        if ci != 0 {
            self.write(PX_CI, ci);
        }
        self.busy_ci |= self.prep_ci;
        self.busy_ncq |= self.prep_ncq;
        self.prep_ci = 0;
        self.prep_ncq = 0;
        Ok(())
    }

    fn poll(&mut self) -> Option<Completion> {
        if self.done == 0 && self.failed == 0 && (self.busy_ci | self.busy_ncq) != 0 {
            let mut fin = 0;
            if self.busy_ci != 0 {
                fin |= finished(self.busy_ci, self.read(PX_CI));
            }
            if self.busy_ncq != 0 {
                fin |= finished(self.busy_ncq, self.read(PX_SACT));
            }
            let is = self.read(PX_IS);
            if is & PX_IS_ERRORS != 0 {
                let tfd = self.read(PX_TFD);
                self.fail_all(format!(
                    "AHCI port 0 error: PxIS={is:#x} PxTFD={tfd:#x} (ATA error {:#x})",
                    (tfd >> 8) & 0xff
                ));
            } else if fin != 0 {
                let tfd = self.read(PX_TFD);
                self.write(PX_IS, is);
                if fin & self.busy_ci != 0 && tfd & TFD_STS_ERR != 0 {
                    self.fail_all(format!(
                        "ATA error: PxTFD={tfd:#x} (error {:#x})",
                        (tfd >> 8) & 0xff
                    ));
                } else {
                    self.busy_ci &= !fin;
                    self.busy_ncq &= !fin;
                    self.done |= fin;
                }
            }
        }
        if self.failed != 0 {
            let tag = self.failed.trailing_zeros() as usize;
            self.failed &= !(1 << tag);
            return Some((tag, Err(self.error.clone())));
        }
        if self.done != 0 {
            let tag = self.done.trailing_zeros() as usize;
            self.done &= !(1 << tag);
            return Some((tag, Ok(())));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::fake::StepClock;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    #[test]
    fn read_dma_ext_fis() {
        let r = Request::read(0x1234_5678_9a00, 0x10_0000, 4096);
        let f = request_fis(&r, 0);
        // LBA 0x1234_5678_9a00 / 512 = 0x91a2_b3c4_d
        let lba = 0x1234_5678_9a00u64 / 512;
        assert_eq!(&f[..4], &[0x27, 0x80, 0x25, 0]);
        assert_eq!(
            [f[4], f[5], f[6], f[8], f[9], f[10]],
            [
                lba as u8,
                (lba >> 8) as u8,
                (lba >> 16) as u8,
                (lba >> 24) as u8,
                (lba >> 32) as u8,
                (lba >> 40) as u8
            ]
        );
        assert_eq!(f[7], 0x40);
        assert_eq!((f[12], f[13]), (8, 0)); // 8 sectors
    }

    #[test]
    fn ncq_fis_puts_the_count_in_features_and_the_tag_in_count() {
        let mut r = Request::read(512 * 1000, 0, 128 * 1024);
        r.queued = true;
        let f = request_fis(&r, 13);
        assert_eq!(f[2], ATA_CMD_READ_FPDMA_QUEUED);
        assert_eq!((f[3], f[11]), (0, 1)); // 256 sectors = 0x0100
        assert_eq!(f[12], 13 << 3);
        assert_eq!(f[7], ATA_DEVICE_LBA);
        assert_eq!(u16::from_le_bytes([f[4], f[5]]), 1000);
        // Writes and flushes are never queued.
        let mut w = Request::write(0, 0, 4096);
        w.queued = true;
        assert_eq!(request_fis(&w, 3)[2], ATA_CMD_WRITE_DMA_EXT);
        assert_eq!(
            request_fis(&Request::flush(), 0)[2],
            ATA_CMD_FLUSH_CACHE_EXT
        );
    }

    #[test]
    fn header_and_prd() {
        let h = command_header(true, 1, 0x1_2345_6780);
        assert_eq!(h[0], 5 | (1 << 6) | (1 << 16));
        assert_eq!((h[2], h[3]), (0x2345_6780, 1));
        assert_eq!(command_header(false, 0, 0)[0], 5);
        let p = prd(0x20_0000, 4096);
        assert_eq!(p, [0x20_0000, 0, 0, 4095]);
        assert_eq!(prd(0, PRD_MAX_BYTES)[3], 0x3f_ffff);
    }

    #[test]
    fn tag_arithmetic() {
        let outstanding = 0x0000_ffff; // 16 tags
        assert_eq!(finished(outstanding, 0x0000_fff0), 0xf);
        assert_eq!(finished(outstanding, 0), 0xffff);
        assert_eq!(finished(0, 0xffff_ffff), 0);
        assert_eq!(finished(1 << 31, 0x7fff_ffff), 1 << 31);
    }

    /// An HBA as QEMU's behaves for the probe's sequence: CI/SACT writes
    /// run the command at once; the disk is 64 MiB of a byte pattern.
    struct FakeHba {
        regs: RefCell<BTreeMap<usize, u32>>,
        /// FIS of every command issued.
        issued: RefCell<Vec<[u8; 20]>>,
        /// Leave NCQ commands in flight until `finish_ncq` is called.
        hold_ncq: bool,
    }

    const P0: usize = PORT_BASE;

    impl FakeHba {
        fn new() -> FakeHba {
            let mut r = BTreeMap::new();
            r.insert(CAP, CAP_SNCQ | (31 << CAP_NCS_SHIFT));
            r.insert(PI, 1);
            r.insert(P0 + PX_SSTS, 0x113);
            r.insert(P0 + PX_TFD, 0x50);
            FakeHba {
                regs: RefCell::new(r),
                issued: RefCell::new(Vec::new()),
                hold_ncq: false,
            }
        }
        fn get(&self, off: usize) -> u32 {
            *self.regs.borrow().get(&off).unwrap_or(&0)
        }
        fn set(&self, off: usize, v: u32) {
            self.regs.borrow_mut().insert(off, v);
        }
        fn run(&self, slot: usize) {
            let clb = (u64::from(self.get(P0 + PX_CLB)) | (u64::from(self.get(P0 + PX_CLBU)) << 32))
                as usize;
            // SAFETY: the driver's command list and tables are identity
            // memory of this process.
            unsafe {
                let hdr = (clb + slot * 32) as *const u32;
                let ctba = *hdr.add(2) as usize | ((*hdr.add(3) as usize) << 32);
                let prdtl = (*hdr >> 16) as usize;
                let mut fis = [0u8; 20];
                core::ptr::copy_nonoverlapping(ctba as *const u8, fis.as_mut_ptr(), 20);
                self.issued.borrow_mut().push(fis);
                if prdtl == 1 {
                    let p = (ctba + 0x80) as *const u32;
                    let addr = *p as usize | ((*p.add(1) as usize) << 32);
                    let len = (*p.add(3) & 0x3f_ffff) as usize + 1;
                    let dst = core::slice::from_raw_parts_mut(addr as *mut u8, len);
                    if fis[2] == ATA_CMD_IDENTIFY_DEVICE {
                        dst.fill(0);
                        dst[166] = 0; // no LBA48
                        dst[120..124].copy_from_slice(&(131072u32).to_le_bytes());
                    } else if fis[2] != ATA_CMD_WRITE_DMA_EXT {
                        dst.fill(0xa5);
                    }
                }
            }
        }
        fn finish_ncq(&self) {
            let sact = self.get(P0 + PX_SACT);
            self.set(P0 + PX_SACT, 0);
            self.set(P0 + PX_IS, self.get(P0 + PX_IS) | PX_IS_SDBS);
            let _ = sact;
        }
    }

    impl Regs for &FakeHba {
        fn read32(&self, off: usize) -> u32 {
            self.get(off)
        }
        fn write32(&self, off: usize, v: u32) {
            match off {
                o if o == P0 + PX_CMD => {
                    // CR follows ST, FR follows FRE at once.
                    let mut v = v & !(PX_CMD_CR | PX_CMD_FR);
                    if v & PX_CMD_ST != 0 {
                        v |= PX_CMD_CR;
                    }
                    if v & PX_CMD_FRE != 0 {
                        v |= PX_CMD_FR;
                    }
                    self.set(off, v);
                }
                o if o == P0 + PX_IS || o == P0 + PX_SERR => self.set(off, self.get(off) & !v),
                o if o == P0 + PX_SACT => self.set(off, self.get(off) | v),
                o if o == P0 + PX_CI => {
                    assert!(
                        self.get(P0 + PX_CMD) & PX_CMD_ST != 0,
                        "CI written with ST off"
                    );
                    for slot in 0..32 {
                        if v & (1 << slot) != 0 {
                            self.run(slot);
                        }
                    }
                    if !self.hold_ncq {
                        self.finish_ncq();
                    }
                    self.set(P0 + PX_IS, self.get(P0 + PX_IS) | PX_IS_DHRS);
                }
                _ => self.set(off, v),
            }
        }
    }

    #[test]
    fn brings_up_port_0_and_reads_one_block_and_an_ncq_batch() {
        let hba = FakeHba {
            hold_ncq: true,
            ..FakeHba::new()
        };
        let clock = StepClock::new(1000);
        let mut a = Ahci::new(&hba, &clock).unwrap();
        assert_eq!(a.size(), 131072 * 512);
        assert_eq!(a.depth(), 32);
        assert_eq!(hba.get(GHC) & GHC_AE, GHC_AE);
        assert_eq!(
            hba.get(P0 + PX_CMD) & (PX_CMD_ST | PX_CMD_FRE),
            PX_CMD_ST | PX_CMD_FRE
        );
        assert_eq!(hba.issued.borrow()[0][2], ATA_CMD_IDENTIFY_DEVICE);

        let mut buf = DmaBuf::new(4096);
        a.submit(0, &Request::read(8192, buf.phys(), 4096)).unwrap();
        assert_eq!(hba.issued.borrow().len(), 1, "nothing issued before kick");
        a.kick().unwrap();
        assert_eq!(a.poll(), Some((0, Ok(()))));
        assert_eq!(a.poll(), None);
        assert!(buf.as_mut_slice().iter().all(|&b| b == 0xa5));
        assert_eq!(hba.issued.borrow()[1][2], ATA_CMD_READ_DMA_EXT);

        let bufs: Vec<DmaBuf> = (0..4).map(|_| DmaBuf::new(128 * 1024)).collect();
        for (t, b) in bufs.iter().enumerate() {
            let mut r = Request::read(t as u64 * 131072, b.phys(), 131072);
            r.queued = true;
            a.submit(t, &r).unwrap();
        }
        a.kick().unwrap();
        assert_eq!(hba.get(P0 + PX_SACT), 0xf);
        assert_eq!(a.poll(), None, "NCQ tags complete only when PxSACT clears");
        hba.finish_ncq();
        let tags: Vec<usize> = core::iter::from_fn(|| a.poll())
            .map(|(t, r)| {
                assert!(r.is_ok());
                t
            })
            .collect();
        assert_eq!(tags, [0, 1, 2, 3]);
        let issued = hba.issued.borrow();
        assert!(issued[2..]
            .iter()
            .all(|f| f[2] == ATA_CMD_READ_FPDMA_QUEUED));
        assert_eq!(issued[5][12], 3 << 3);
    }

    #[test]
    fn a_task_file_error_fails_the_request_and_restarts_the_port() {
        let hba = FakeHba::new();
        let clock = StepClock::new(1000);
        let mut a = Ahci::new(&hba, &clock).unwrap();
        let buf = DmaBuf::new(4096);
        a.submit(2, &Request::read(0, buf.phys(), 4096)).unwrap();
        a.kick().unwrap();
        // The device reports a task file error for it.
        hba.set(P0 + PX_IS, PX_IS_TFES);
        hba.set(P0 + PX_TFD, 0x0451);
        let (tag, r) = a.poll().unwrap();
        assert_eq!(tag, 2);
        assert!(r.unwrap_err().contains("ATA error 0x4"));
        assert_eq!(hba.get(P0 + PX_CMD) & PX_CMD_ST, PX_CMD_ST);
    }
}
