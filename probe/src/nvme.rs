//! NVMe 1.4 over BAR0, polled: the admin queue plus one I/O queue pair whose
//! completion queue has interrupts off (IEN = 0); completions are found in
//! memory by their phase tag.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::disk::{Completion, Disk, Op, Request};
use crate::hw::{fence, wait_for, Clock, DmaBuf, Regs};

// Controller registers.
pub const CAP: usize = 0x00;
pub const VS: usize = 0x08;
pub const INTMS: usize = 0x0C;
pub const CC: usize = 0x14;
pub const CSTS: usize = 0x1C;
pub const AQA: usize = 0x24;
pub const ASQ: usize = 0x28;
pub const ACQ: usize = 0x30;
pub const DOORBELL_BASE: usize = 0x1000;

pub const CC_EN: u32 = 1 << 0;
pub const CC_CSS_NVM: u32 = 0 << 4;
pub const CC_MPS_4K: u32 = 0 << 7;
pub const CC_IOSQES_SHIFT: u32 = 16;
pub const CC_IOCQES_SHIFT: u32 = 20;
pub const CSTS_RDY: u32 = 1 << 0;
pub const CSTS_CFS: u32 = 1 << 1;

/// log2 of the entry sizes: 64-byte SQEs, 16-byte CQEs.
pub const SQES: u32 = 6;
pub const CQES: u32 = 4;
pub const SQE_LEN: usize = 1 << SQES;
pub const CQE_LEN: usize = 1 << CQES;
pub const PAGE: usize = 4096;

// Opcodes.
pub const ADMIN_CREATE_IO_SQ: u8 = 0x01;
pub const ADMIN_CREATE_IO_CQ: u8 = 0x05;
pub const ADMIN_IDENTIFY: u8 = 0x06;
pub const IDENTIFY_CNS_NAMESPACE: u32 = 0x00;
pub const IDENTIFY_CNS_CONTROLLER: u32 = 0x01;
pub const NVM_FLUSH: u8 = 0x00;
pub const NVM_WRITE: u8 = 0x01;
pub const NVM_READ: u8 = 0x02;
/// Physically contiguous queue (Create I/O SQ/CQ CDW11 bit 0).
pub const QUEUE_PC: u32 = 1 << 0;

pub const ADMIN_QUEUE_SIZE: u16 = 16;
pub const IO_QUEUE_SIZE: u16 = 64;
pub const NSID: u32 = 1;

/// The doorbell of queue `qid`: the SQ tail or the CQ head.
pub fn doorbell(qid: u16, cq: bool, dstrd: u32) -> usize {
    DOORBELL_BASE + (2 * qid as usize + cq as usize) * (4 << dstrd)
}

/// A submission queue entry (NVMe 1.4, 4.2) as its 16 dwords.
#[allow(clippy::too_many_arguments)]
pub fn sqe(
    opcode: u8,
    cid: u16,
    nsid: u32,
    prp1: u64,
    prp2: u64,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
) -> [u32; 16] {
    let mut d = [0u32; 16];
    d[0] = u32::from(opcode) | (u32::from(cid) << 16);
    d[1] = nsid;
    d[6] = prp1 as u32;
    d[7] = (prp1 >> 32) as u32;
    d[8] = prp2 as u32;
    d[9] = (prp2 >> 32) as u32;
    d[10] = cdw10;
    d[11] = cdw11;
    d[12] = cdw12;
    d
}

/// PRP1, PRP2 and the PRP list entries for a page-aligned buffer of `len`
/// bytes: one page needs PRP1 only, two put the second in PRP2, more put a
/// list (at `list`) of every page after the first in PRP2.
pub fn prps(buf: u64, len: usize, list: u64) -> (u64, u64, Vec<u64>) {
    let pages = len.div_ceil(PAGE).max(1);
    match pages {
        1 => (buf, 0, Vec::new()),
        2 => (buf, buf + PAGE as u64, Vec::new()),
        n => (buf, list, (1..n).map(|i| buf + (i * PAGE) as u64).collect()),
    }
}

/// The next head and expected phase after consuming one entry.
pub fn advance(head: u16, phase: bool, size: u16) -> (u16, bool) {
    if head + 1 == size {
        (0, !phase)
    } else {
        (head + 1, phase)
    }
}

/// A completion queue entry's command id, phase tag and status field
/// (status code and type, without the phase).
pub fn cqe_fields(dw: [u32; 4]) -> (u16, bool, u16) {
    (dw[3] as u16, dw[3] & (1 << 16) != 0, (dw[3] >> 17) as u16)
}

struct Queue {
    qid: u16,
    size: u16,
    sq: DmaBuf,
    cq: DmaBuf,
    tail: u16,
    head: u16,
    phase: bool,
}

impl Queue {
    fn new(qid: u16, size: u16) -> Queue {
        Queue {
            qid,
            size,
            sq: DmaBuf::new(size as usize * SQE_LEN),
            cq: DmaBuf::new(size as usize * CQE_LEN),
            tail: 0,
            head: 0,
            phase: true,
        }
    }
    fn push(&mut self, entry: &[u32; 16]) {
        for (i, d) in entry.iter().enumerate() {
            self.sq.write32(self.tail as usize * SQE_LEN + 4 * i, *d);
        }
        self.tail = (self.tail + 1) % self.size;
    }
    /// The entry at the head if its phase says it is new, consumed.
    fn pop(&mut self) -> Option<[u32; 4]> {
        let at = self.head as usize * CQE_LEN;
        let dw3 = self.cq.read32(at + 12);
        if (dw3 & (1 << 16) != 0) != self.phase {
            return None;
        }
        let dw = [
            self.cq.read32(at),
            self.cq.read32(at + 4),
            self.cq.read32(at + 8),
            dw3,
        ];
        (self.head, self.phase) = advance(self.head, self.phase, self.size);
        Some(dw)
    }
}

pub struct Nvme<'c, R: Regs> {
    regs: R,
    clock: &'c dyn Clock,
    dstrd: u32,
    timeout_ns: u64,
    admin: Queue,
    io: Queue,
    /// One PRP list page per tag.
    lists: DmaBuf,
    blocks: u64,
    max_transfer: usize,
    in_flight: usize,
    prepared: bool,
}

impl<'c, R: Regs> Nvme<'c, R> {
    /// Resets and enables the controller, identifies it and namespace 1,
    /// and creates I/O queue pair 1.
    pub fn new(regs: R, clock: &'c dyn Clock) -> Result<Self, String> {
        let cap = regs.read64(CAP);
        let mqes = (cap & 0xffff) as u16;
        let dstrd = ((cap >> 32) & 0xf) as u32;
        let timeout_ns = ((cap >> 24) & 0xff).max(1) * 500 * 1_000_000;
        let io_size = IO_QUEUE_SIZE.min(mqes.saturating_add(1));
        let mut n = Nvme {
            regs,
            clock,
            dstrd,
            timeout_ns,
            admin: Queue::new(0, ADMIN_QUEUE_SIZE.min(mqes.saturating_add(1))),
            io: Queue::new(1, io_size),
            lists: DmaBuf::new(io_size as usize * PAGE),
            blocks: 0,
            max_transfer: 0,
            in_flight: 0,
            prepared: false,
        };
        if n.regs.read32(CC) & CC_EN != 0 {
            n.regs.write32(CC, n.regs.read32(CC) & !CC_EN);
        }
        wait_for(clock, timeout_ns, "CSTS.RDY = 0", || {
            n.regs.read32(CSTS) & CSTS_RDY == 0
        })?;
        n.regs.write32(INTMS, u32::MAX);
        let a = &n.admin;
        n.regs
            .write32(AQA, (u32::from(a.size - 1) << 16) | u32::from(a.size - 1));
        n.regs.write64(ASQ, a.sq.phys());
        n.regs.write64(ACQ, a.cq.phys());
        n.regs.write32(
            CC,
            (SQES << CC_IOSQES_SHIFT) | (CQES << CC_IOCQES_SHIFT) | CC_MPS_4K | CC_CSS_NVM | CC_EN,
        );
        wait_for(clock, timeout_ns, "CSTS.RDY = 1", || {
            n.regs.read32(CSTS) & (CSTS_RDY | CSTS_CFS) != 0
        })?;
        if n.regs.read32(CSTS) & CSTS_CFS != 0 {
            return Err("controller fatal status (CSTS.CFS) on enable".into());
        }

        let id = DmaBuf::new(PAGE);
        n.admin_cmd(
            sqe(
                ADMIN_IDENTIFY,
                1,
                0,
                id.phys(),
                0,
                IDENTIFY_CNS_CONTROLLER,
                0,
                0,
            ),
            "Identify controller",
        )?;
        let mut b = [0u8; 1];
        id.read_bytes(77, &mut b);
        let mdts = b[0];
        n.max_transfer = if mdts == 0 {
            2 << 20
        } else {
            (PAGE << mdts).min(2 << 20)
        };

        n.admin_cmd(
            sqe(
                ADMIN_IDENTIFY,
                2,
                NSID,
                id.phys(),
                0,
                IDENTIFY_CNS_NAMESPACE,
                0,
                0,
            ),
            "Identify namespace 1",
        )?;
        let mut ns = [0u8; 8];
        id.read_bytes(0, &mut ns);
        n.blocks = u64::from_le_bytes(ns);
        let mut flbas = [0u8; 1];
        id.read_bytes(26, &mut flbas);
        let mut lbaf = [0u8; 4];
        id.read_bytes(128 + 4 * (flbas[0] & 0xf) as usize, &mut lbaf);
        if lbaf[2] != 9 {
            return Err(format!(
                "namespace 1 has {}-byte blocks; the probe needs 512",
                1u64 << lbaf[2]
            ));
        }
        if n.blocks == 0 {
            return Err("namespace 1 is empty (NSZE 0)".into());
        }

        let q = (u32::from(n.io.size - 1) << 16) | u32::from(n.io.qid);
        n.admin_cmd(
            sqe(ADMIN_CREATE_IO_CQ, 3, 0, n.io.cq.phys(), 0, q, QUEUE_PC, 0),
            "Create I/O CQ",
        )?;
        n.admin_cmd(
            sqe(
                ADMIN_CREATE_IO_SQ,
                4,
                0,
                n.io.sq.phys(),
                0,
                q,
                (u32::from(n.io.qid) << 16) | QUEUE_PC,
                0,
            ),
            "Create I/O SQ",
        )?;
        Ok(n)
    }

    fn admin_cmd(&mut self, entry: [u32; 16], what: &str) -> Result<(), String> {
        self.admin.push(&entry);
        fence();
        self.regs
            .write32(doorbell(0, false, self.dstrd), u32::from(self.admin.tail));
        let mut got = None;
        let (clock, timeout) = (self.clock, self.timeout_ns);
        wait_for(clock, timeout, what, || {
            got = self.admin.pop();
            got.is_some()
        })?;
        self.regs
            .write32(doorbell(0, true, self.dstrd), u32::from(self.admin.head));
        let (_, _, status) = cqe_fields(got.unwrap_or_default());
        if status != 0 {
            return Err(format!("{what}: status {status:#x}"));
        }
        Ok(())
    }
}

impl<R: Regs> Disk for Nvme<'_, R> {
    fn size(&self) -> u64 {
        self.blocks * 512
    }
    fn depth(&self) -> usize {
        self.io.size as usize - 1
    }
    fn max_transfer(&self) -> usize {
        self.max_transfer
    }

    fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String> {
        if self.in_flight >= self.depth() || tag >= self.depth() {
            return Err(format!("I/O queue full (tag {tag})"));
        }
        if req.len > self.max_transfer {
            return Err(format!(
                "a transfer of {} bytes exceeds the controller's {} (MDTS)",
                req.len, self.max_transfer
            ));
        }
        let cid = tag as u16;
        let entry = match req.op {
            Op::Flush => sqe(NVM_FLUSH, cid, NSID, 0, 0, 0, 0, 0),
            Op::Read | Op::Write => {
                let list = self.lists.phys() + (tag * PAGE) as u64;
                let (p1, p2, entries) = prps(req.buf, req.len, list);
                for (i, e) in entries.iter().enumerate() {
                    self.lists.write64(tag * PAGE + 8 * i, *e);
                }
                let lba = req.lba();
                let nlb = (req.sectors() - 1) as u32;
                let op = if req.op == Op::Read {
                    NVM_READ
                } else {
                    NVM_WRITE
                };
                sqe(
                    op,
                    cid,
                    NSID,
                    p1,
                    p2,
                    lba as u32,
                    (lba >> 32) as u32,
                    nlb & 0xffff,
                )
            }
        };
        self.io.push(&entry);
        self.in_flight += 1;
        self.prepared = true;
        Ok(())
    }

    fn kick(&mut self) -> Result<(), String> {
        if self.prepared {
            fence();
            self.regs.write32(
                doorbell(self.io.qid, false, self.dstrd),
                u32::from(self.io.tail),
            );
            self.prepared = false;
        }
        Ok(())
    }

    fn poll(&mut self) -> Option<Completion> {
        if self.in_flight == 0 {
            return None;
        }
        let dw = self.io.pop()?;
        self.in_flight -= 1;
        self.regs.write32(
            doorbell(self.io.qid, true, self.dstrd),
            u32::from(self.io.head),
        );
        let (cid, _, status) = cqe_fields(dw);
        let r = if status == 0 {
            Ok(())
        } else {
            Err(format!(
                "NVMe error: status code type {:#x}, status code {:#x}",
                (status >> 8) & 7,
                status & 0xff
            ))
        };
        Some((cid as usize, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::fake::StepClock;
    use alloc::collections::BTreeMap;
    use core::cell::RefCell;

    #[test]
    fn doorbell_offsets() {
        assert_eq!(doorbell(0, false, 0), 0x1000);
        assert_eq!(doorbell(0, true, 0), 0x1004);
        assert_eq!(doorbell(1, false, 0), 0x1008);
        assert_eq!(doorbell(1, true, 0), 0x100c);
        // DSTRD 2: 16-byte stride.
        assert_eq!(doorbell(1, true, 2), 0x1000 + 3 * 16);
    }

    #[test]
    fn read_sqe() {
        let d = sqe(
            NVM_READ,
            7,
            1,
            0x1000_0000,
            0x2000_0000,
            0x89ab_cdef,
            0x1,
            7,
        );
        assert_eq!(d[0], 0x0007_0002);
        assert_eq!(d[1], 1);
        assert_eq!((d[6], d[7], d[8], d[9]), (0x1000_0000, 0, 0x2000_0000, 0));
        assert_eq!((d[10], d[11], d[12]), (0x89ab_cdef, 1, 7));
        assert_eq!(&d[2..6], &[0; 4]);
    }

    #[test]
    fn prp_forms() {
        assert_eq!(prps(0x10_0000, 4096, 0x9000), (0x10_0000, 0, vec![]));
        assert_eq!(prps(0x10_0000, 512, 0x9000), (0x10_0000, 0, vec![]));
        assert_eq!(
            prps(0x10_0000, 8192, 0x9000),
            (0x10_0000, 0x10_1000, vec![])
        );
        let (p1, p2, list) = prps(0x10_0000, 128 * 1024, 0x9000);
        assert_eq!((p1, p2, list.len()), (0x10_0000, 0x9000, 31));
        assert_eq!(list[0], 0x10_1000);
        assert_eq!(list[30], 0x10_0000 + 31 * 4096);
    }

    #[test]
    fn phase_wraps_with_the_head() {
        assert_eq!(advance(0, true, 4), (1, true));
        assert_eq!(advance(3, true, 4), (0, false));
        assert_eq!(advance(3, false, 4), (0, true));
        assert_eq!(cqe_fields([0, 0, 0, 0x0001_0005]), (5, true, 0));
        assert_eq!(cqe_fields([0, 0, 0, (0x0281 << 17) | 9]), (9, false, 0x281));
    }

    /// (sq base, cq base, size, sq head, cq tail, phase).
    type FakeQueue = (u64, u64, u16, u16, u16, bool);

    /// A controller that executes commands when their SQ tail doorbell is
    /// rung and posts completions with the right phase.
    struct FakeCtrl {
        regs: RefCell<BTreeMap<usize, u32>>,
        /// (sq base, cq base, size, sq head, cq tail, phase) per qid.
        queues: RefCell<BTreeMap<u16, FakeQueue>>,
        ops: RefCell<Vec<[u32; 16]>>,
    }

    impl FakeCtrl {
        fn new() -> FakeCtrl {
            let mut r = BTreeMap::new();
            r.insert(CAP, 0x0f00_ffff); // MQES 0xffff, TO 15
            r.insert(CAP + 4, 0);
            FakeCtrl {
                regs: RefCell::new(r),
                queues: RefCell::new(BTreeMap::new()),
                ops: RefCell::new(Vec::new()),
            }
        }
        fn get(&self, o: usize) -> u32 {
            *self.regs.borrow().get(&o).unwrap_or(&0)
        }
        fn exec(&self, qid: u16, tail: u16) {
            let mut qs = self.queues.borrow_mut();
            let q = qs.get_mut(&qid).unwrap();
            while q.3 != tail {
                // SAFETY: queues and buffers are this process's memory.
                let e: [u32; 16] =
                    unsafe { *((q.0 as usize + q.3 as usize * 64) as *const [u32; 16]) };
                self.ops.borrow_mut().push(e);
                let prp1 = (e[6] as u64 | (e[7] as u64) << 32) as usize;
                let op = e[0] as u8;
                unsafe {
                    if qid == 0 && op == ADMIN_IDENTIFY {
                        let page = core::slice::from_raw_parts_mut(prp1 as *mut u8, 4096);
                        page.fill(0);
                        if e[10] == IDENTIFY_CNS_CONTROLLER {
                            page[77] = 5;
                        } else {
                            page[0..8].copy_from_slice(&131072u64.to_le_bytes());
                            page[128 + 2] = 9;
                        }
                    } else if qid == 0 && op == ADMIN_CREATE_IO_CQ {
                        let size = (e[10] >> 16) as u16 + 1;
                        qs_insert_later(&self.regs, (e[10] & 0xffff) as u16, prp1 as u64, size);
                    } else if qid == 1 && op == NVM_READ {
                        core::slice::from_raw_parts_mut(prp1 as *mut u8, 4096).fill(0x5a);
                    }
                }
                q.3 = (q.3 + 1) % q.2;
                // Post the completion.
                let at = q.1 as usize + q.4 as usize * 16;
                let dw3 = (e[0] >> 16) | if q.5 { 1 << 16 } else { 0 };
                unsafe { core::ptr::write_volatile((at + 12) as *mut u32, dw3) };
                q.4 += 1;
                if q.4 == q.2 {
                    q.4 = 0;
                    q.5 = !q.5;
                }
            }
        }
    }

    /// Create I/O CQ records the CQ; Create I/O SQ (seen later) completes it.
    fn qs_insert_later(regs: &RefCell<BTreeMap<usize, u32>>, qid: u16, cq: u64, size: u16) {
        let mut r = regs.borrow_mut();
        r.insert(0x9000 + qid as usize * 16, cq as u32);
        r.insert(0x9004 + qid as usize * 16, (cq >> 32) as u32);
        r.insert(0x9008 + qid as usize * 16, size as u32);
    }

    impl Regs for &FakeCtrl {
        fn read32(&self, off: usize) -> u32 {
            self.get(off)
        }
        fn write32(&self, off: usize, v: u32) {
            self.regs.borrow_mut().insert(off, v);
            match off {
                CC => {
                    let rdy = v & CC_EN;
                    self.regs.borrow_mut().insert(CSTS, rdy);
                    if rdy != 0 {
                        let asq = self.get(ASQ) as u64 | (self.get(ASQ + 4) as u64) << 32;
                        let acq = self.get(ACQ) as u64 | (self.get(ACQ + 4) as u64) << 32;
                        let size = (self.get(AQA) & 0xfff) as u16 + 1;
                        self.queues
                            .borrow_mut()
                            .insert(0, (asq, acq, size, 0, 0, true));
                    }
                }
                0x1000 => self.exec(0, v as u16),
                0x1008 => {
                    if !self.queues.borrow().contains_key(&1) {
                        let ops = self.ops.borrow();
                        let sq = ops
                            .iter()
                            .find(|e| e[0] as u8 == ADMIN_CREATE_IO_SQ)
                            .unwrap();
                        let sq = sq[6] as u64 | (sq[7] as u64) << 32;
                        let cq = self.get(0x9010) as u64 | (self.get(0x9014) as u64) << 32;
                        let size = self.get(0x9018) as u16;
                        drop(ops);
                        self.queues
                            .borrow_mut()
                            .insert(1, (sq, cq, size, 0, 0, true));
                    }
                    self.exec(1, v as u16)
                }
                _ => {}
            }
        }
    }

    #[test]
    fn brings_up_the_controller_and_wraps_the_io_queue() {
        let ctrl = FakeCtrl::new();
        let clock = StepClock::new(1000);
        let mut n = Nvme::new(&ctrl, &clock).unwrap();
        assert_eq!(n.size(), 131072 * 512);
        assert_eq!(n.max_transfer(), 4096 << 5);
        assert_eq!(n.depth(), 63);
        let cc = ctrl.get(CC);
        assert_eq!(cc, (6 << 16) | (4 << 20) | 1);
        // Create I/O CQ: PC=1, IEN=0, size 64, qid 1.
        let ops = ctrl.ops.borrow().clone();
        let cq = ops
            .iter()
            .find(|e| e[0] as u8 == ADMIN_CREATE_IO_CQ)
            .unwrap();
        assert_eq!((cq[10], cq[11]), ((63 << 16) | 1, 1));
        let sq = ops
            .iter()
            .find(|e| e[0] as u8 == ADMIN_CREATE_IO_SQ)
            .unwrap();
        assert_eq!(sq[11], (1 << 16) | 1);
        // 150 reads, one at a time: the 64-entry queues wrap twice, and the
        // phase flips each time.
        let mut buf = DmaBuf::new(4096);
        for i in 0..150u64 {
            n.submit(0, &Request::read(i * 4096, buf.phys(), 4096))
                .unwrap();
            n.kick().unwrap();
            assert_eq!(n.poll(), Some((0, Ok(()))), "read {i}");
            assert_eq!(n.poll(), None);
        }
        assert_eq!(ctrl.get(doorbell(1, false, 0)), 150 % 64);
        assert_eq!(ctrl.get(doorbell(1, true, 0)), 150 % 64);
        assert!(buf.as_mut_slice().iter().all(|&b| b == 0x5a));
        let last = ctrl.ops.borrow().last().copied().unwrap();
        assert_eq!((last[0] as u8, last[10], last[12]), (NVM_READ, 149 * 8, 7));
    }
}
