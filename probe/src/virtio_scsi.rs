//! virtio-scsi (virtio 1.x, 5.6) on the virtio-drivers crate's PCI
//! transport and `VirtQueue`: the first request queue (queue 2), target 0
//! LUN 0, READ/WRITE(10) or (16) and SYNCHRONIZE CACHE(10), completions
//! polled on the used ring. The control and event queues stay disabled:
//! the probe sends no task management and takes no events. Interrupts are
//! off (INTx masked; the CPU takes none anyway).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use virtio_drivers::device::common::Feature;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceType, Transport};

use crate::disk::{Completion, Disk, Op, Request};
use crate::hw::{wait_for, Clock};
use crate::pci::{Bdf, PortCam};
use crate::virtio::ProbeHal;

pub const REQUEST_QUEUE: u16 = 2;
/// Descriptors in the request queue: one per request with indirect
/// descriptors (QEMU offers them), else three (header, data, response).
pub const QUEUE_SIZE: usize = 16;

// Device configuration (virtio 1.2, 5.6.4), byte offsets.
pub const CFG_NUM_QUEUES: usize = 0;
pub const CFG_SEG_MAX: usize = 4;
pub const CFG_MAX_SECTORS: usize = 8;
pub const CFG_SENSE_SIZE: usize = 20;
pub const CFG_CDB_SIZE: usize = 24;

/// The sizes the request and response carry: the device's defaults
/// (VIRTIO_SCSI_CDB_DEFAULT_SIZE, VIRTIO_SCSI_SENSE_DEFAULT_SIZE).
pub const CDB_SIZE: usize = 32;
pub const SENSE_SIZE: usize = 96;
/// virtio_scsi_req_cmd's device-readable part: lun[8], id, task_attr,
/// prio, crn, cdb (then data-out, a buffer of its own here).
pub const REQ_LEN: usize = 8 + 8 + 3 + CDB_SIZE;
/// Its device-writable part: sense_len, residual, status_qualifier,
/// status, response, sense (then data-in: the response comes first).
pub const RESP_LEN: usize = 4 + 4 + 2 + 1 + 1 + SENSE_SIZE;
const RESP_STATUS: usize = 10;
const RESP_RESPONSE: usize = 11;
const RESP_SENSE: usize = 12;

/// virtio-scsi response codes, by value.
pub const VIRTIO_SCSI_S_OK: u8 = 0;
pub const RESPONSES: &[&str] = &[
    "OK",
    "OVERRUN",
    "ABORTED",
    "BAD_TARGET",
    "RESET",
    "BUSY",
    "TRANSPORT_FAILURE",
    "TARGET_FAILURE",
    "NEXUS_FAILURE",
    "FAILURE",
];

// SCSI (SPC-4, SBC-3).
pub const SAM_STAT_GOOD: u8 = 0x00;
pub const SAM_STAT_CHECK_CONDITION: u8 = 0x02;
pub const TEST_UNIT_READY: u8 = 0x00;
pub const READ_CAPACITY_10: u8 = 0x25;
pub const READ_10: u8 = 0x28;
pub const WRITE_10: u8 = 0x2A;
pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
pub const READ_16: u8 = 0x88;
pub const WRITE_16: u8 = 0x8A;
pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
pub const SAI_READ_CAPACITY_16: u8 = 0x10;
pub const READ_CAPACITY_16_LEN: usize = 32;
pub const SENSE_KEY_UNIT_ATTENTION: u8 = 0x6;

/// Transfers per request at most.
pub const MAX_TRANSFER: usize = 4 << 20;
const MS: u64 = 1_000_000;

/// The single-level LUN address of `target`, `lun` (virtio 1.2, 5.6.6).
pub fn lun_address(target: u8, lun: u16) -> [u8; 8] {
    [1, target, 0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0]
}

pub type Cdb = [u8; CDB_SIZE];

/// READ or WRITE of `blocks` at `lba`: the 10-byte form while it fits
/// (32-bit LBA, 16-bit count), else the 16-byte form.
pub fn rw_cdb(write: bool, lba: u64, blocks: u32) -> Cdb {
    let mut c = [0u8; CDB_SIZE];
    let end = lba + u64::from(blocks);
    if end <= 1 << 32 && blocks <= 0xffff {
        c[0] = if write { WRITE_10 } else { READ_10 };
        c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
        c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
    } else {
        c[0] = if write { WRITE_16 } else { READ_16 };
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&blocks.to_be_bytes());
    }
    c
}

/// SYNCHRONIZE CACHE(10) of the whole medium (LBA 0, 0 blocks).
pub fn sync_cache_cdb() -> Cdb {
    let mut c = [0u8; CDB_SIZE];
    c[0] = SYNCHRONIZE_CACHE_10;
    c
}

pub fn simple_cdb(opcode: u8) -> Cdb {
    let mut c = [0u8; CDB_SIZE];
    c[0] = opcode;
    c
}

pub fn read_capacity_16_cdb() -> Cdb {
    let mut c = simple_cdb(SERVICE_ACTION_IN_16);
    c[1] = SAI_READ_CAPACITY_16;
    c[10..14].copy_from_slice(&(READ_CAPACITY_16_LEN as u32).to_be_bytes());
    c
}

/// (blocks, block length) from READ CAPACITY(10) data; `None` when the
/// medium needs the 16-byte form.
pub fn capacity_10(d: &[u8; 8]) -> Option<(u64, u32)> {
    let last = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let len = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    (last != u32::MAX).then_some((u64::from(last) + 1, len))
}

/// (blocks, block length) from READ CAPACITY(16) data.
pub fn capacity_16(d: &[u8; READ_CAPACITY_16_LEN]) -> (u64, u32) {
    let mut last = [0u8; 8];
    last.copy_from_slice(&d[0..8]);
    (
        u64::from_be_bytes(last) + 1,
        u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
    )
}

/// The request header of `cdb` for the LUN at `lun`, tagged `id`.
pub fn request(lun: [u8; 8], id: u64, cdb: &Cdb) -> [u8; REQ_LEN] {
    let mut r = [0u8; REQ_LEN];
    r[0..8].copy_from_slice(&lun);
    r[8..16].copy_from_slice(&id.to_le_bytes());
    // task_attr SIMPLE (0), prio 0, crn 0.
    r[19..].copy_from_slice(cdb);
    r
}

/// Sense key, ASC and ASCQ of fixed (0x70/0x71) or descriptor (0x72/0x73)
/// sense data.
pub fn sense_key(sense: &[u8]) -> Option<(u8, u8, u8)> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 if sense.len() >= 14 => Some((sense[2] & 0xf, sense[12], sense[13])),
        0x72 | 0x73 if sense.len() >= 4 => Some((sense[1] & 0xf, sense[2], sense[3])),
        _ => None,
    }
}

/// The outcome of a completed command from its response.
pub fn outcome(resp: &[u8; RESP_LEN]) -> Result<(), String> {
    let response = resp[RESP_RESPONSE];
    if response != VIRTIO_SCSI_S_OK {
        return Err(format!(
            "virtio-scsi response {}",
            RESPONSES
                .get(usize::from(response))
                .copied()
                .unwrap_or("unknown")
        ));
    }
    let status = resp[RESP_STATUS];
    if status == SAM_STAT_GOOD {
        return Ok(());
    }
    let sense_len = u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]) as usize;
    let sense = &resp[RESP_SENSE..RESP_SENSE + sense_len.min(SENSE_SIZE)];
    Err(match sense_key(sense) {
        Some((k, asc, ascq)) => {
            format!("SCSI status {status:#04x}, sense key {k:#x} asc {asc:#04x} ascq {ascq:#04x}")
        }
        None => format!("SCSI status {status:#04x}"),
    })
}

struct Slot {
    req: [u8; REQ_LEN],
    resp: [u8; RESP_LEN],
    op: Op,
    buf: u64,
    len: usize,
    token: Option<u16>,
}

/// The workload's buffer of a request (none for a flush).
fn buf_slice<'a>(buf: u64, len: usize) -> &'a mut [u8] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: the workload owns the buffer for the request's lifetime.
    unsafe { core::slice::from_raw_parts_mut(buf as *mut u8, len) }
}

pub struct VirtioScsi<'c, T: Transport = PciTransport> {
    transport: T,
    queue: VirtQueue<ProbeHal, QUEUE_SIZE>,
    clock: &'c dyn Clock,
    lun: [u8; 8],
    blocks: u64,
    block_len: u32,
    depth: usize,
    max_transfer: usize,
    slots: Vec<Slot>,
}

/// Sets up the function at `bdf`, whose BARs are assigned and enabled.
pub fn open<'c>(bdf: Bdf, clock: &'c dyn Clock) -> Result<VirtioScsi<'c>, String> {
    let mut root = PciRoot::new(PortCam);
    let df = DeviceFunction {
        bus: 0,
        device: bdf.slot,
        function: bdf.function,
    };
    let transport = PciTransport::new::<ProbeHal, PortCam>(&mut root, df)
        .map_err(|e| format!("virtio PCI transport: {e}"))?;
    VirtioScsi::new(transport, clock)
}

impl<'c, T: Transport> VirtioScsi<'c, T> {
    /// Negotiates features, sets up the request queue, then finds target 0
    /// LUN 0 ready and reads its capacity.
    pub fn new(mut transport: T, clock: &'c dyn Clock) -> Result<Self, String> {
        if transport.device_type() != DeviceType::ScsiHost {
            return Err(format!(
                "a virtio {:?} device, not SCSI",
                transport.device_type()
            ));
        }
        let features = transport
            .begin_init(Feature::VERSION_1 | Feature::RING_INDIRECT_DESC | Feature::RING_EVENT_IDX);
        let cfg = |t: &T, off: usize, what: &str| {
            t.read_config_space::<u32>(off)
                .map_err(|e| format!("virtio-scsi config {what}: {e}"))
        };
        let (cdb, sense) = (
            cfg(&transport, CFG_CDB_SIZE, "cdb_size")?,
            cfg(&transport, CFG_SENSE_SIZE, "sense_size")?,
        );
        if (cdb as usize, sense as usize) != (CDB_SIZE, SENSE_SIZE) {
            return Err(format!(
                "virtio-scsi cdb_size {cdb} and sense_size {sense}: the probe's requests carry {CDB_SIZE} and {SENSE_SIZE}"
            ));
        }
        if cfg(&transport, CFG_NUM_QUEUES, "num_queues")? == 0 {
            return Err("virtio-scsi offers no request queue".into());
        }
        let max_sectors = cfg(&transport, CFG_MAX_SECTORS, "max_sectors")? as usize;
        let seg_max = cfg(&transport, CFG_SEG_MAX, "seg_max")?;
        let indirect = features.contains(Feature::RING_INDIRECT_DESC);
        let queue = VirtQueue::new(
            &mut transport,
            REQUEST_QUEUE,
            indirect,
            features.contains(Feature::RING_EVENT_IDX),
        )
        .map_err(|e| format!("virtio-scsi request queue: {e}"))?;
        transport.finish_init();
        if seg_max == 0 {
            return Err("virtio-scsi seg_max is 0: no room for a data buffer".into());
        }
        let depth = if indirect { QUEUE_SIZE } else { QUEUE_SIZE / 3 };
        let mut s = VirtioScsi {
            transport,
            queue,
            clock,
            lun: lun_address(0, 0),
            blocks: 0,
            block_len: 0,
            depth,
            max_transfer: MAX_TRANSFER.min(max_sectors.max(1) * 512),
            slots: (0..depth)
                .map(|_| Slot {
                    req: [0; REQ_LEN],
                    resp: [0; RESP_LEN],
                    op: Op::Read,
                    buf: 0,
                    len: 0,
                    token: None,
                })
                .collect(),
        };
        s.ready()?;
        let (blocks, len) = s.capacity()?;
        if len < 512 || !len.is_power_of_two() {
            return Err(format!("a block length of {len} bytes"));
        }
        (s.blocks, s.block_len) = (blocks, len);
        Ok(s)
    }

    /// One command that reads `data` (may be empty), waited for (set-up
    /// only: no request is in flight).
    fn command(&mut self, cdb: &Cdb, data: &mut [u8]) -> Result<(), String> {
        let req = request(self.lun, u64::MAX, cdb);
        let mut resp = [0u8; RESP_LEN];
        let inputs: [&[u8]; 1] = [&req];
        // No zero-length descriptor: QEMU refuses the whole queue for one.
        let empty = data.is_empty();
        let mut with_data: [&mut [u8]; 2] = [&mut resp, data];
        let outputs = if empty {
            &mut with_data[..1]
        } else {
            &mut with_data[..]
        };
        // SAFETY: the buffers live until `pop_used` below, or the queue
        // (never used again after a timeout's error) is dropped.
        let token =
            unsafe { self.queue.add(&inputs, outputs) }.map_err(|e| format!("virtio-scsi: {e}"))?;
        if self.queue.should_notify() {
            self.transport.notify(REQUEST_QUEUE);
        }
        let queue = &self.queue;
        wait_for(self.clock, 5000 * MS, "a virtio-scsi command", || {
            queue.can_pop()
        })?;
        // SAFETY: the buffers `add` was given, still valid.
        unsafe { self.queue.pop_used(token, &inputs, outputs) }
            .map_err(|e| format!("virtio-scsi: {e}"))?;
        outcome(&resp)
    }

    /// TEST UNIT READY until GOOD: the first commands after a reset may
    /// report UNIT ATTENTION.
    fn ready(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..5 {
            match self.command(&simple_cdb(TEST_UNIT_READY), &mut []) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(format!("target 0 LUN 0 is not ready: {last}"))
    }

    fn capacity(&mut self) -> Result<(u64, u32), String> {
        let mut d = [0u8; 8];
        self.command(&simple_cdb(READ_CAPACITY_10), &mut d)
            .map_err(|e| format!("READ CAPACITY(10): {e}"))?;
        if let Some(c) = capacity_10(&d) {
            return Ok(c);
        }
        let mut d = [0u8; READ_CAPACITY_16_LEN];
        self.command(&read_capacity_16_cdb(), &mut d)
            .map_err(|e| format!("READ CAPACITY(16): {e}"))?;
        Ok(capacity_16(&d))
    }
}

impl<T: Transport> Disk for VirtioScsi<'_, T> {
    fn size(&self) -> u64 {
        self.blocks * u64::from(self.block_len)
    }
    fn depth(&self) -> usize {
        self.depth
    }
    fn max_transfer(&self) -> usize {
        self.max_transfer
    }

    fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String> {
        let bl = u64::from(self.block_len);
        let Some(s) = self.slots.get_mut(tag).filter(|s| s.token.is_none()) else {
            return Err(format!("virtio-scsi tag {tag} is busy or out of range"));
        };
        let cdb = match req.op {
            Op::Flush => sync_cache_cdb(),
            _ if req.len == 0
                || req.len > self.max_transfer
                || !req.offset.is_multiple_of(bl)
                || !(req.len as u64).is_multiple_of(bl) =>
            {
                return Err(format!(
                    "virtio-scsi: {} bytes at {} is not whole {bl}-byte blocks within {} bytes",
                    req.len, req.offset, self.max_transfer
                ))
            }
            op => rw_cdb(
                op == Op::Write,
                req.offset / bl,
                (req.len as u64 / bl) as u32,
            ),
        };
        s.req = request(self.lun, tag as u64, &cdb);
        s.resp = [0; RESP_LEN];
        (s.op, s.buf, s.len) = (req.op, req.buf, req.len);
        let data = buf_slice(s.buf, s.len);
        // SAFETY: the header, data and response stay untouched until the
        // token is popped in `poll`.
        let token = unsafe {
            match s.op {
                Op::Read => self.queue.add(&[&s.req], &mut [&mut s.resp, data]),
                Op::Write => self.queue.add(&[&s.req, data], &mut [&mut s.resp]),
                Op::Flush => self.queue.add(&[&s.req], &mut [&mut s.resp]),
            }
        }
        .map_err(|e| format!("virtio-scsi request: {e}"))?;
        s.token = Some(token);
        Ok(())
    }

    fn kick(&mut self) -> Result<(), String> {
        if self.queue.should_notify() {
            self.transport.notify(REQUEST_QUEUE);
        }
        Ok(())
    }

    fn poll(&mut self) -> Option<Completion> {
        let token = self.queue.peek_used()?;
        let tag = self.slots.iter().position(|s| s.token == Some(token))?;
        let s = &mut self.slots[tag];
        s.token = None;
        let data = buf_slice(s.buf, s.len);
        // SAFETY: the same buffers as were added with this token.
        let popped = unsafe {
            match s.op {
                Op::Read => self
                    .queue
                    .pop_used(token, &[&s.req], &mut [&mut s.resp, data]),
                Op::Write => self
                    .queue
                    .pop_used(token, &[&s.req, data], &mut [&mut s.resp]),
                Op::Flush => self.queue.pop_used(token, &[&s.req], &mut [&mut s.resp]),
            }
        };
        let r = match popped {
            Ok(_) => outcome(&s.resp).map_err(|e| format!("{} {e}", s.op.name())),
            Err(e) => Err(format!("virtio-scsi: {e}")),
        };
        Some((tag, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::fake::StepClock;
    use crate::hw::DmaBuf;
    use alloc::vec;
    use core::cell::RefCell;
    use virtio_drivers::transport::{DeviceStatus, InterruptStatus};
    use virtio_drivers::PhysAddr;

    const BLOCK: usize = 512;
    const VIRTQ_DESC_F_NEXT: u16 = 1;
    const VIRTQ_DESC_F_WRITE: u16 = 2;
    const VIRTQ_DESC_F_INDIRECT: u16 = 4;

    /// A virtio-scsi device with one LUN, as the spec lays out its split
    /// virtqueue and requests (the response before data-in): it runs the
    /// available requests when notified, or later with `hold`.
    struct FakeScsi {
        disk: Vec<u8>,
        /// The request queue: size, descriptor table, avail and used rings.
        queue: Option<(u16, u64, u64, u64)>,
        last_avail: u16,
        status: DeviceStatus,
        hold: bool,
        unit_attention: bool,
        opcodes: Vec<u8>,
        notifies: usize,
    }

    fn rd<T: Copy>(addr: u64) -> T {
        // SAFETY: the driver's rings and buffers, in this process.
        unsafe { core::ptr::read_volatile(addr as *const T) }
    }
    fn wr<T: Copy>(addr: u64, v: T) {
        // SAFETY: as in `rd`.
        unsafe { core::ptr::write_volatile(addr as *mut T, v) }
    }

    impl FakeScsi {
        fn new(blocks: usize) -> RefCell<FakeScsi> {
            RefCell::new(FakeScsi {
                disk: (0..blocks * BLOCK).map(|i| (i / BLOCK) as u8).collect(),
                queue: None,
                last_avail: 0,
                status: DeviceStatus::empty(),
                hold: false,
                unit_attention: true,
                opcodes: vec![],
                notifies: 0,
            })
        }

        /// A descriptor chain's buffers: (address, length, device-writable).
        fn chain(table: u64, head: u16) -> Vec<(u64, usize, bool)> {
            let mut out = vec![];
            let mut i = head;
            loop {
                let d = table + 16 * u64::from(i);
                let (addr, len, flags, next) = (
                    rd::<u64>(d),
                    rd::<u32>(d + 8),
                    rd::<u16>(d + 12),
                    rd::<u16>(d + 14),
                );
                if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                    out.extend(Self::chain(addr, 0));
                } else {
                    assert!(len > 0, "a zero-length buffer");
                    out.push((addr, len as usize, flags & VIRTQ_DESC_F_WRITE != 0));
                }
                if flags & VIRTQ_DESC_F_NEXT == 0 {
                    return out;
                }
                i = next;
            }
        }

        /// Runs one request: (response, data-in).
        fn execute(&mut self, req: &[u8], data_out: &[u8]) -> ([u8; RESP_LEN], Vec<u8>) {
            let mut resp = [0u8; RESP_LEN];
            let check = |resp: &mut [u8; RESP_LEN], key: u8, asc: u8| {
                resp[RESP_STATUS] = SAM_STAT_CHECK_CONDITION;
                resp[..4].copy_from_slice(&18u32.to_le_bytes());
                resp[RESP_SENSE] = 0x70;
                resp[RESP_SENSE + 2] = key;
                resp[RESP_SENSE + 12] = asc;
            };
            if req[..8] != lun_address(0, 0) {
                resp[RESP_RESPONSE] = 3; // BAD_TARGET
                return (resp, vec![]);
            }
            let cdb = &req[19..19 + CDB_SIZE];
            self.opcodes.push(cdb[0]);
            if self.unit_attention {
                self.unit_attention = false;
                check(&mut resp, SENSE_KEY_UNIT_ATTENTION, 0x29);
                return (resp, vec![]);
            }
            let blocks = (self.disk.len() / BLOCK) as u64;
            let range = |lba: u64, n: u64| {
                (lba + n <= blocks).then(|| lba as usize * BLOCK..(lba + n) as usize * BLOCK)
            };
            let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            match cdb[0] {
                TEST_UNIT_READY | SYNCHRONIZE_CACHE_10 => (resp, vec![]),
                READ_CAPACITY_10 => {
                    let mut d = ((blocks - 1) as u32).to_be_bytes().to_vec();
                    d.extend((BLOCK as u32).to_be_bytes());
                    (resp, d)
                }
                READ_10 | WRITE_10 => {
                    let (lba, n) = (be32(&cdb[2..6]), u16::from_be_bytes([cdb[7], cdb[8]]));
                    match range(u64::from(lba), u64::from(n)) {
                        None => {
                            check(&mut resp, 0x5, 0x21); // LBA out of range
                            (resp, vec![])
                        }
                        Some(r) if cdb[0] == READ_10 => (resp, self.disk[r].to_vec()),
                        Some(r) => {
                            assert_eq!(data_out.len(), r.len(), "data-out carries the blocks");
                            self.disk[r].copy_from_slice(data_out);
                            (resp, vec![])
                        }
                    }
                }
                op => panic!("unexpected SCSI opcode {op:#x}"),
            }
        }

        /// Uses every available request.
        fn process(&mut self) {
            let (size, desc, avail, used) = self.queue.expect("the request queue is set up");
            while self.last_avail != rd::<u16>(avail + 2) {
                let slot = u64::from(self.last_avail % size);
                let head = rd::<u16>(avail + 4 + 2 * slot);
                let bufs = Self::chain(desc, head);
                let mut readable = vec![];
                for &(a, l, w) in &bufs {
                    if !w {
                        // SAFETY: a buffer the driver added.
                        readable.extend_from_slice(unsafe {
                            core::slice::from_raw_parts(a as *const u8, l)
                        });
                    }
                }
                let (resp, data_in) = self.execute(&readable[..REQ_LEN], &readable[REQ_LEN..]);
                let mut written = resp.to_vec();
                written.extend(data_in);
                let mut at = 0;
                for &(a, l, _) in bufs.iter().filter(|b| b.2) {
                    let n = l.min(written.len() - at);
                    // SAFETY: as above.
                    unsafe {
                        core::ptr::copy_nonoverlapping(written[at..].as_ptr(), a as *mut u8, n)
                    };
                    at += n;
                }
                assert_eq!(at, written.len(), "room for the response and data-in");
                let idx = rd::<u16>(used + 2);
                let elem = used + 4 + 8 * u64::from(idx % size);
                wr(elem, u32::from(head));
                wr(elem + 4, at as u32);
                wr(used + 2, idx.wrapping_add(1));
                self.last_avail = self.last_avail.wrapping_add(1);
            }
        }
    }

    struct Dev<'a>(&'a RefCell<FakeScsi>);

    impl Transport for Dev<'_> {
        fn device_type(&self) -> DeviceType {
            DeviceType::ScsiHost
        }
        fn read_device_features(&mut self) -> u64 {
            (Feature::VERSION_1 | Feature::RING_INDIRECT_DESC).bits()
        }
        fn write_driver_features(&mut self, _: u64) {}
        fn max_queue_size(&mut self, _: u16) -> u32 {
            128
        }
        fn notify(&mut self, queue: u16) {
            assert_eq!(queue, REQUEST_QUEUE);
            let mut d = self.0.borrow_mut();
            d.notifies += 1;
            if !d.hold {
                d.process();
            }
        }
        fn get_status(&self) -> DeviceStatus {
            self.0.borrow().status
        }
        fn set_status(&mut self, status: DeviceStatus) {
            self.0.borrow_mut().status = status;
        }
        fn set_guest_page_size(&mut self, _: u32) {}
        fn requires_legacy_layout(&self) -> bool {
            false
        }
        fn queue_set(
            &mut self,
            queue: u16,
            size: u32,
            desc: PhysAddr,
            avail: PhysAddr,
            used: PhysAddr,
        ) {
            assert_eq!(queue, REQUEST_QUEUE, "only the request queue is used");
            self.0.borrow_mut().queue = Some((size as u16, desc, avail, used));
        }
        fn queue_unset(&mut self, _: u16) {}
        fn queue_used(&mut self, queue: u16) -> bool {
            queue == REQUEST_QUEUE && self.0.borrow().queue.is_some()
        }
        fn ack_interrupt(&mut self) -> InterruptStatus {
            InterruptStatus::empty()
        }
        fn read_config_generation(&self) -> u32 {
            0
        }
        fn read_config_space<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
            &self,
            offset: usize,
        ) -> virtio_drivers::Result<T> {
            // num_queues, seg_max, max_sectors, cmd_per_lun,
            // event_info_size, sense_size, cdb_size.
            let mut cfg = [0u8; 36];
            for (i, v) in [1u32, 126, 0xffff, 128, 16, 96, 32].iter().enumerate() {
                cfg[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
            }
            T::read_from_bytes(&cfg[offset..offset + core::mem::size_of::<T>()])
                .map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)
        }
        fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
            &mut self,
            _: usize,
            _: T,
        ) -> virtio_drivers::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn brings_up_lun_0_then_reads_writes_and_flushes_on_the_request_queue() {
        let fake = FakeScsi::new(2048);
        let clock = StepClock::new(1000);
        let mut s = VirtioScsi::new(Dev(&fake), &clock).unwrap();
        assert_eq!((s.size(), s.depth()), (2048 * 512, QUEUE_SIZE));
        // The first TEST UNIT READY meets the reset's UNIT ATTENTION.
        assert_eq!(
            fake.borrow().opcodes,
            [TEST_UNIT_READY, TEST_UNIT_READY, READ_CAPACITY_10]
        );

        fake.borrow_mut().hold = true;
        let bufs: Vec<DmaBuf> = (0..3).map(|_| DmaBuf::new(4096)).collect();
        for (tag, b) in bufs.iter().enumerate() {
            let r = Request::read(8192 * (tag as u64 + 1), b.phys(), 4096);
            s.submit(tag, &r).unwrap();
        }
        assert!(s.submit(1, &Request::flush()).unwrap_err().contains("busy"));
        let before = fake.borrow().notifies;
        s.kick().unwrap();
        assert_eq!(fake.borrow().notifies, before + 1, "one notify for the lot");
        assert_eq!(s.poll(), None, "nothing used yet");
        fake.borrow_mut().process();
        let mut tags: Vec<usize> = core::iter::from_fn(|| s.poll())
            .map(|(t, r)| {
                r.unwrap();
                t
            })
            .collect();
        tags.sort();
        assert_eq!(tags, [0, 1, 2]);
        for (tag, b) in bufs.iter().enumerate() {
            let first = 16 * (tag as u8 + 1);
            for (k, block) in b.as_slice().chunks(BLOCK).enumerate() {
                assert!(block.iter().all(|&x| x == first + k as u8), "tag {tag}");
            }
        }

        fake.borrow_mut().hold = false;
        let mut w = DmaBuf::new(8192);
        w.as_mut_slice().fill(0xab);
        s.submit(0, &Request::write(512 * 100, w.phys(), 8192))
            .unwrap();
        s.kick().unwrap();
        assert_eq!(s.poll(), Some((0, Ok(()))));
        s.submit(0, &Request::flush()).unwrap();
        s.kick().unwrap();
        assert_eq!(s.poll(), Some((0, Ok(()))));
        assert!(fake.borrow().disk[512 * 100..512 * 116]
            .iter()
            .all(|&x| x == 0xab));
        assert_eq!(
            fake.borrow().opcodes[3..],
            [READ_10, READ_10, READ_10, WRITE_10, SYNCHRONIZE_CACHE_10]
        );
    }

    #[test]
    fn a_check_condition_fails_the_request_with_its_sense() {
        let fake = FakeScsi::new(16);
        let clock = StepClock::new(1000);
        let mut s = VirtioScsi::new(Dev(&fake), &clock).unwrap();
        let b = DmaBuf::new(4096);
        s.submit(3, &Request::read(512 * 16, b.phys(), 4096))
            .unwrap();
        s.kick().unwrap();
        let (tag, r) = s.poll().unwrap();
        assert_eq!(tag, 3);
        assert_eq!(
            r.unwrap_err(),
            "read SCSI status 0x02, sense key 0x5 asc 0x21 ascq 0x00"
        );
        // Not whole blocks, or a tag beyond the queue: refused up front.
        assert!(s.submit(0, &Request::read(100, b.phys(), 4096)).is_err());
        assert!(s
            .submit(QUEUE_SIZE, &Request::read(0, b.phys(), 4096))
            .is_err());
    }

    #[test]
    fn read_and_write_cdbs_take_the_short_form_while_it_fits() {
        let c = rw_cdb(false, 0x1234_5678, 8);
        assert_eq!(&c[..10], &[READ_10, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 8, 0]);
        assert!(c[10..].iter().all(|&b| b == 0));
        let c = rw_cdb(true, 16, 0xffff);
        assert_eq!(&c[..10], &[WRITE_10, 0, 0, 0, 0, 16, 0, 0xff, 0xff, 0]);
        // Past 2 TiB of 512-byte blocks, or over 65535 blocks: 16 bytes.
        let c = rw_cdb(false, 0x1_0000_0000, 8);
        assert_eq!(
            &c[..16],
            &[READ_16, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0]
        );
        let c = rw_cdb(true, 0xffff_fff8, 8);
        assert_eq!(c[0], WRITE_10, "ends exactly at 2^32 blocks");
        assert_eq!(rw_cdb(true, 0xffff_fff9, 8)[0], WRITE_16);
        assert_eq!(rw_cdb(false, 0, 0x1_0000)[0], READ_16);
        assert_eq!(sync_cache_cdb()[..10], [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let rc = read_capacity_16_cdb();
        assert_eq!(
            &rc[..14],
            &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32]
        );
    }

    #[test]
    fn the_request_header_addresses_target_0_lun_0() {
        assert_eq!(lun_address(0, 0), [1, 0, 0x40, 0, 0, 0, 0, 0]);
        assert_eq!(lun_address(3, 0x105), [1, 3, 0x41, 0x05, 0, 0, 0, 0]);
        let r = request(lun_address(0, 0), 7, &rw_cdb(false, 1, 8));
        assert_eq!(r.len(), 51);
        assert_eq!(&r[..8], &[1, 0, 0x40, 0, 0, 0, 0, 0]);
        assert_eq!(&r[8..16], &7u64.to_le_bytes());
        assert_eq!(&r[16..19], &[0, 0, 0]);
        assert_eq!(&r[19..21], &[READ_10, 0]);
        assert_eq!(RESP_LEN, 108);
    }

    #[test]
    fn capacities_from_both_forms() {
        let d = [0, 0, 0x1f, 0xff, 0, 0, 2, 0];
        assert_eq!(capacity_10(&d), Some((0x2000, 512)));
        assert_eq!(capacity_10(&[0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0]), None);
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&0x1_0000_0000u64.to_be_bytes());
        d[8..12].copy_from_slice(&4096u32.to_be_bytes());
        assert_eq!(capacity_16(&d), (0x1_0000_0001, 4096));
    }

    #[test]
    fn responses_name_the_failure_and_the_sense() {
        let mut r = [0u8; RESP_LEN];
        assert_eq!(outcome(&r), Ok(()));
        r[RESP_RESPONSE] = 3;
        assert_eq!(outcome(&r).unwrap_err(), "virtio-scsi response BAD_TARGET");
        r[RESP_RESPONSE] = 0;
        r[RESP_STATUS] = SAM_STAT_CHECK_CONDITION;
        assert_eq!(outcome(&r).unwrap_err(), "SCSI status 0x02");
        // Fixed-format sense: UNIT ATTENTION, power on or reset (29/00).
        r[..4].copy_from_slice(&18u32.to_le_bytes());
        r[RESP_SENSE] = 0x70;
        r[RESP_SENSE + 2] = SENSE_KEY_UNIT_ATTENTION;
        r[RESP_SENSE + 12] = 0x29;
        assert_eq!(
            outcome(&r).unwrap_err(),
            "SCSI status 0x02, sense key 0x6 asc 0x29 ascq 0x00"
        );
        assert_eq!(sense_key(&[0x72, 0x5, 0x21, 0x00]), Some((5, 0x21, 0)));
        assert_eq!(sense_key(&[]), None);
    }
}
