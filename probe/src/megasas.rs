//! MegaRAID SAS through MFI frames (QEMU's `megasas`, an SAS1078, and
//! `megasas-gen2`, an SAS2108: the same registers at a different BAR),
//! logical drive 0 (the row's `scsi-hd`: QEMU's default RAID mode makes each
//! target an LD). Names as in QEMU's hw/scsi/mfi.h and Linux's
//! megaraid_sas.h.
//!
//! Bring-up: the firmware to READY (MFI_OSP0), an MFI_CMD_INIT frame naming
//! the reply queue and its producer and consumer indices in our memory,
//! polled on the frame's cmd_status. Requests: MFI_CMD_LD_READ/LD_WRITE
//! frames, and MFI_CMD_LD_SCSI_IO with SYNCHRONIZE CACHE(10) for a flush,
//! each posted by one write of its address to the inbound queue port
//! (MFI_IQP, handled in the vCPU thread); completion: the reply queue's
//! producer index, polled.
//!
//! The outbound interrupt mask (MFI_OMSK) is opened after INIT, because
//! QEMU advances the producer index only while the mask is open (with it
//! closed every completion overwrites the same reply entry). The interrupt
//! goes nowhere: INTx is disabled in the PCI command register, MSI and
//! MSI-X stay off and the CPU takes none.

use alloc::format;
use alloc::string::String;

use crate::disk::{Completion, Disk, Op, Request};
use crate::hw::{bus32, fence, wait_for, Clock, DmaBuf, Regs};
use crate::pci::{PCI_DEVICE_ID_LSI_SAS0079, PCI_DEVICE_ID_LSI_SAS1078};
use crate::virtio_scsi::{
    capacity_10, capacity_16, read_capacity_16_cdb, sense_key, simple_cdb, sync_cache_cdb, Cdb,
    READ_CAPACITY_10, READ_CAPACITY_16_LEN, TEST_UNIT_READY,
};

/// The register BAR of each model: BAR0 on the SAS1078 (`megasas`), BAR1
/// on the SAS2108 (`megasas-gen2`, whose BAR0 is its I/O ports).
pub fn mmio_bar(device: u16) -> Option<usize> {
    match device {
        PCI_DEVICE_ID_LSI_SAS1078 => Some(0),
        PCI_DEVICE_ID_LSI_SAS0079 => Some(1),
        _ => None,
    }
}

// Registers (mfi.h), byte offsets in the register BAR.
/// Inbound doorbell: MFI_FWINIT_* requests to the firmware.
pub const MFI_IDB: usize = 0x20;
/// Outbound interrupt mask: all ones is closed.
pub const MFI_OMSK: usize = 0x34;
/// Inbound queue port: a frame's address (32-byte aligned), its count of
/// extra frames in bits 4:1, bit 0 set.
pub const MFI_IQP: usize = 0x40;
/// Outbound scratch pad 0: firmware state, max SGEs, max commands.
pub const MFI_OSP0: usize = 0xb0;

pub const MFI_FWSTATE_MASK: u32 = 0xf000_0000;
pub const MFI_FWSTATE_WAIT_HANDSHAKE: u32 = 0x6000_0000;
pub const MFI_FWSTATE_BOOT_MSG_PENDING: u32 = 0x9000_0000;
pub const MFI_FWSTATE_READY: u32 = 0xb000_0000;
pub const MFI_FWSTATE_OPERATIONAL: u32 = 0xc000_0000;
pub const MFI_FWSTATE_FAULT: u32 = 0xf000_0000;
pub const MFI_FWSTATE_MAXCMD_MASK: u32 = 0x0000_ffff;

pub const MFI_FWINIT_ABORT: u32 = 0x01;
pub const MFI_FWINIT_READY: u32 = 0x02;
pub const MFI_FWINIT_CLEAR_HANDSHAKE: u32 = 0x08;
pub const MFI_FWINIT_HOTPLUG: u32 = 0x10;

/// MFI_OMSK with every outbound interrupt unmasked.
pub const MFI_OMSK_OPEN: u32 = 0;

// Frame commands (mfi_cmd).
pub const MFI_CMD_INIT: u8 = 0x00;
pub const MFI_CMD_LD_READ: u8 = 0x01;
pub const MFI_CMD_LD_WRITE: u8 = 0x02;
pub const MFI_CMD_LD_SCSI_IO: u8 = 0x03;

// Frame flags (mfi_frame_flags).
pub const MFI_FRAME_DONT_POST_IN_REPLY_QUEUE: u16 = 0x0001;
pub const MFI_FRAME_SGL64: u16 = 0x0002;
pub const MFI_FRAME_SENSE64: u16 = 0x0004;
pub const MFI_FRAME_DIR_WRITE: u16 = 0x0008;
pub const MFI_FRAME_DIR_READ: u16 = 0x0010;

// Command status (mfi_status), by value.
pub const MFI_STAT_OK: u8 = 0x00;
pub const MFI_STAT_INVALID_CMD: u8 = 0x01;
pub const MFI_STAT_INVALID_PARAMETER: u8 = 0x03;
pub const MFI_STAT_DEVICE_NOT_FOUND: u8 = 0x0c;
pub const MFI_STAT_MEMORY_NOT_AVAILABLE: u8 = 0x20;
pub const MFI_STAT_SCSI_DONE_WITH_ERROR: u8 = 0x2d;
pub const MFI_STAT_SCSI_IO_FAILED: u8 = 0x2e;
/// What the driver leaves in cmd_status until the firmware writes it.
pub const MFI_STAT_INVALID_STATUS: u8 = 0xff;

// mfi_frame_header, byte offsets.
pub const HDR_FRAME_CMD: usize = 0x00;
pub const HDR_SENSE_LEN: usize = 0x01;
pub const HDR_CMD_STATUS: usize = 0x02;
pub const HDR_SCSI_STATUS: usize = 0x03;
pub const HDR_TARGET_ID: usize = 0x04;
pub const HDR_LUN_ID: usize = 0x05;
pub const HDR_CDB_LEN: usize = 0x06;
pub const HDR_SGE_COUNT: usize = 0x07;
pub const HDR_CONTEXT: usize = 0x08;
pub const HDR_FLAGS: usize = 0x10;
pub const HDR_DATA_LEN: usize = 0x14;
// mfi_init_frame.
pub const INIT_QINFO_NEW_ADDR_LO: usize = 0x18;
pub const INIT_QINFO_NEW_ADDR_HI: usize = 0x1c;
// mfi_io_frame (LD_READ/LD_WRITE): data_len counts blocks.
pub const IO_SENSE_ADDR_LO: usize = 0x18;
pub const IO_SENSE_ADDR_HI: usize = 0x1c;
pub const IO_LBA_LO: usize = 0x20;
pub const IO_LBA_HI: usize = 0x24;
pub const IO_SGL: usize = 0x28;
// mfi_pass_frame (LD_SCSI_IO): data_len counts bytes.
pub const PASS_SENSE_ADDR_LO: usize = 0x18;
pub const PASS_SENSE_ADDR_HI: usize = 0x1c;
pub const PASS_CDB: usize = 0x20;
pub const PASS_CDB_LEN: usize = 16;
pub const PASS_SGL: usize = 0x30;
// mfi_sg64: addr, len.
pub const SG64_LEN: usize = 12;

// mfi_init_qinfo, byte offsets.
pub const QINFO_FLAGS: usize = 0x00;
pub const QINFO_RQ_ENTRIES: usize = 0x04;
pub const QINFO_RQ_ADDR_LO: usize = 0x08;
pub const QINFO_RQ_ADDR_HI: usize = 0x0c;
pub const QINFO_PI_ADDR_LO: usize = 0x10;
pub const QINFO_PI_ADDR_HI: usize = 0x14;
pub const QINFO_CI_ADDR_LO: usize = 0x18;
pub const QINFO_CI_ADDR_HI: usize = 0x1c;
pub const QINFO_LEN: usize = 0x20;
/// The producer and consumer indices, in the same page as the qinfo.
pub const PRODUCER: usize = 0x40;
pub const CONSUMER: usize = 0x80;

/// One MFI frame (MEGAMFI_FRAME_SIZE): room for either frame with one SGE.
pub const FRAME_LEN: usize = 64;
/// Per tag: the frame, then its sense buffer at `SENSE_AT`.
pub const FRAME_STRIDE: usize = 256;
pub const SENSE_AT: usize = 128;
pub const SENSE_LEN: usize = 96;
/// QEMU maps 2 KiB from each frame (MEGASAS_MAX_SGE SGL unions): the frame
/// buffer runs that far past the last frame.
pub const FRAME_MAP: usize = 2048;
/// Tags the probe uses at once (QEMU offers ~1000 commands).
pub const DEPTH: usize = 32;
/// Commands, and so reply queue entries, at most (QEMU's
/// MEGASAS_MAX_FRAMES is 2048).
pub const MAX_ENTRIES: u32 = 4096;
pub const MAX_TRANSFER: usize = 4 << 20;

const MS: u64 = 1_000_000;

pub type Frame = [u8; FRAME_LEN];

fn put16(f: &mut Frame, at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(f: &mut Frame, at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(f: &mut Frame, at: usize, v: u64) {
    f[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The header every frame starts with; cmd_status is MFI_STAT_INVALID_STATUS
/// until the firmware answers.
fn header(cmd: u8, context: u32, flags: u16, data_len: u32) -> Frame {
    let mut f = [0u8; FRAME_LEN];
    f[HDR_FRAME_CMD] = cmd;
    f[HDR_CMD_STATUS] = MFI_STAT_INVALID_STATUS;
    put64(&mut f, HDR_CONTEXT, u64::from(context));
    put16(&mut f, HDR_FLAGS, flags);
    put32(&mut f, HDR_DATA_LEN, data_len);
    f
}

/// MFI_CMD_INIT naming the mfi_init_qinfo at `qinfo`.
pub fn init_frame(qinfo: u64) -> Frame {
    let mut f = header(
        MFI_CMD_INIT,
        0,
        MFI_FRAME_DONT_POST_IN_REPLY_QUEUE,
        QINFO_LEN as u32,
    );
    put32(&mut f, INIT_QINFO_NEW_ADDR_LO, qinfo as u32);
    put32(&mut f, INIT_QINFO_NEW_ADDR_HI, (qinfo >> 32) as u32);
    f
}

/// The mfi_init_qinfo: `entries` 32-bit reply entries at `rq`, the
/// producer index at `pi`, the consumer index at `ci`.
pub fn init_qinfo(entries: u32, rq: u64, pi: u64, ci: u64) -> [u8; QINFO_LEN] {
    let mut q = [0u8; QINFO_LEN];
    let mut put = |at: usize, v: u32| q[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(QINFO_FLAGS, 0); // 32-bit contexts (no MFI_QUEUE_FLAG_CONTEXT64)
    put(QINFO_RQ_ENTRIES, entries);
    put(QINFO_RQ_ADDR_LO, rq as u32);
    put(QINFO_RQ_ADDR_HI, (rq >> 32) as u32);
    put(QINFO_PI_ADDR_LO, pi as u32);
    put(QINFO_PI_ADDR_HI, (pi >> 32) as u32);
    put(QINFO_CI_ADDR_LO, ci as u32);
    put(QINFO_CI_ADDR_HI, (ci >> 32) as u32);
    q
}

fn target_and_sense(f: &mut Frame, target: u8, sense: u64) {
    f[HDR_TARGET_ID] = target;
    f[HDR_SENSE_LEN] = SENSE_LEN as u8;
    put32(f, IO_SENSE_ADDR_LO, sense as u32);
    put32(f, IO_SENSE_ADDR_HI, (sense >> 32) as u32);
}

fn sg64(f: &mut Frame, at: usize, addr: u64, len: usize) {
    f[HDR_SGE_COUNT] = 1;
    put64(f, at, addr);
    put32(f, at + 8, len as u32);
}

/// MFI_CMD_LD_READ or LD_WRITE of `blocks` at `lba` on logical drive
/// `target`, one 64-bit SGE over `buf`.
#[allow(clippy::too_many_arguments)]
pub fn io_frame(
    write: bool,
    target: u8,
    lba: u64,
    blocks: u32,
    buf: u64,
    len: usize,
    sense: u64,
    context: u32,
) -> Frame {
    let (cmd, dir) = if write {
        (MFI_CMD_LD_WRITE, MFI_FRAME_DIR_WRITE)
    } else {
        (MFI_CMD_LD_READ, MFI_FRAME_DIR_READ)
    };
    let mut f = header(
        cmd,
        context,
        MFI_FRAME_SGL64 | MFI_FRAME_SENSE64 | dir,
        blocks,
    );
    target_and_sense(&mut f, target, sense);
    put32(&mut f, IO_LBA_LO, lba as u32);
    put32(&mut f, IO_LBA_HI, (lba >> 32) as u32);
    sg64(&mut f, IO_SGL, buf, len);
    f
}

/// The length of a CDB from its opcode's group code (SPC-4, 4.2.5.1).
pub fn cdb_len(opcode: u8) -> u8 {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 16,
    }
}

/// MFI_CMD_LD_SCSI_IO of `cdb` on logical drive `target`, reading `len`
/// bytes into `buf`. QEMU maps the SGL even for a command without data
/// and refuses an empty one, so such a command points its SGE at `buf`
/// anyway, with a data length of 0.
pub fn pass_frame(
    target: u8,
    cdb: &Cdb,
    buf: u64,
    buf_len: usize,
    len: usize,
    sense: u64,
    context: u32,
) -> Frame {
    let dir = if len > 0 { MFI_FRAME_DIR_READ } else { 0 };
    let mut f = header(
        MFI_CMD_LD_SCSI_IO,
        context,
        MFI_FRAME_SGL64 | MFI_FRAME_SENSE64 | dir,
        len as u32,
    );
    target_and_sense(&mut f, target, sense);
    f[HDR_CDB_LEN] = cdb_len(cdb[0]);
    f[PASS_CDB..PASS_CDB + PASS_CDB_LEN].copy_from_slice(&cdb[..PASS_CDB_LEN]);
    sg64(&mut f, PASS_SGL, buf, if len > 0 { len } else { buf_len });
    f
}

/// The value posted to MFI_IQP for the frame at `frame` (no extra frames).
pub fn inbound_queue_value(frame: u32) -> u32 {
    frame | 1
}

/// A few mfi_status values by name, for messages.
pub fn status_name(s: u8) -> &'static str {
    match s {
        MFI_STAT_OK => "OK",
        MFI_STAT_INVALID_CMD => "INVALID_CMD",
        MFI_STAT_INVALID_PARAMETER => "INVALID_PARAMETER",
        MFI_STAT_DEVICE_NOT_FOUND => "DEVICE_NOT_FOUND",
        MFI_STAT_MEMORY_NOT_AVAILABLE => "MEMORY_NOT_AVAILABLE",
        MFI_STAT_SCSI_DONE_WITH_ERROR => "SCSI_DONE_WITH_ERROR",
        MFI_STAT_SCSI_IO_FAILED => "SCSI_IO_FAILED",
        MFI_STAT_INVALID_STATUS => "INVALID_STATUS",
        _ => "unknown",
    }
}

/// The outcome of a completed frame from its cmd_status, scsi_status and
/// sense buffer.
pub fn outcome(cmd_status: u8, scsi_status: u8, sense: &[u8]) -> Result<(), String> {
    match cmd_status {
        MFI_STAT_OK => Ok(()),
        MFI_STAT_SCSI_DONE_WITH_ERROR => Err(match sense_key(sense) {
            Some((k, asc, ascq)) => format!(
                "SCSI status {scsi_status:#04x}, sense key {k:#x} asc {asc:#04x} ascq {ascq:#04x}"
            ),
            None => format!("SCSI status {scsi_status:#04x}"),
        }),
        s => Err(format!("MFI status {s:#04x} ({})", status_name(s))),
    }
}

pub struct Megasas<'c, R: Regs> {
    regs: R,
    clock: &'c dyn Clock,
    /// DEPTH frames with their sense buffers.
    frames: DmaBuf,
    /// The qinfo, producer and consumer indices.
    queue: DmaBuf,
    /// The reply queue: one 32-bit context (our tag) per entry.
    replies: DmaBuf,
    /// For commands without data: QEMU wants an SGE regardless.
    scratch: DmaBuf,
    entries: u32,
    consumer: u32,
    target: u8,
    blocks: u64,
    block_len: u32,
    /// The request on each tag; `None` for a set-up command.
    ops: [Option<Op>; DEPTH],
    /// Prepared, not yet posted; posted, not yet reaped.
    prepared: u32,
    busy: u32,
}

impl<'c, R: Regs> Megasas<'c, R> {
    /// The firmware to READY, INIT with our reply queue, the outbound mask
    /// open, then logical drive 0 ready and its capacity.
    pub fn new(regs: R, clock: &'c dyn Clock) -> Result<Self, String> {
        let state = to_ready(&regs, clock)?;
        let fw_cmds = state & MFI_FWSTATE_MAXCMD_MASK;
        if !(2..=MAX_ENTRIES).contains(&fw_cmds) {
            return Err(format!(
                "the firmware offers {fw_cmds} commands (MFI_OSP0={state:#x})"
            ));
        }
        // QEMU wraps the reply queue at its command count, whatever
        // rq_entries says: give it that many.
        let entries = fw_cmds;
        let mut m = Megasas {
            regs,
            clock,
            frames: DmaBuf::new(DEPTH * FRAME_STRIDE + FRAME_MAP),
            queue: DmaBuf::new(4096),
            replies: DmaBuf::new(entries as usize * 4),
            scratch: DmaBuf::new(512),
            entries,
            consumer: 0,
            target: 0,
            blocks: 0,
            block_len: 0,
            ops: [None; DEPTH],
            prepared: 0,
            busy: 0,
        };
        m.init()?;
        m.regs.write32(MFI_OMSK, MFI_OMSK_OPEN);
        m.ready()?;
        let (blocks, len) = m.capacity()?;
        if len < 512 || !len.is_power_of_two() {
            return Err(format!("a block length of {len} bytes"));
        }
        (m.blocks, m.block_len) = (blocks, len);
        Ok(m)
    }

    fn frame_at(&self, tag: usize) -> u64 {
        self.frames.phys() + (tag * FRAME_STRIDE) as u64
    }
    fn sense_at(&self, tag: usize) -> u64 {
        self.frame_at(tag) + SENSE_AT as u64
    }
    fn cmd_status(&self, tag: usize) -> u8 {
        (self.frames.read32(tag * FRAME_STRIDE) >> (8 * HDR_CMD_STATUS)) as u8
    }
    fn write_frame(&self, tag: usize, f: &Frame) {
        self.frames.write_bytes(tag * FRAME_STRIDE, f);
    }
    fn post(&self, tag: usize) -> Result<(), String> {
        let frame = bus32(self.frame_at(tag))?;
        self.regs.write32(MFI_IQP, inbound_queue_value(frame));
        Ok(())
    }
    fn producer(&self) -> u32 {
        self.queue.read32(PRODUCER)
    }

    /// MFI_CMD_INIT in frame 0, polled on its cmd_status: the interrupt
    /// mask is still closed, so the producer index does not move for it.
    fn init(&mut self) -> Result<(), String> {
        let q = self.queue.phys();
        let qinfo = init_qinfo(
            self.entries,
            self.replies.phys(),
            q + PRODUCER as u64,
            q + CONSUMER as u64,
        );
        self.queue.write_bytes(0, &qinfo);
        self.write_frame(0, &init_frame(q));
        fence();
        self.post(0)?;
        wait_for(self.clock, 1000 * MS, "the MFI INIT frame", || {
            self.cmd_status(0) != MFI_STAT_INVALID_STATUS
        })?;
        match self.cmd_status(0) {
            MFI_STAT_OK => Ok(()),
            s => Err(format!("MFI INIT: status {s:#04x} ({})", status_name(s))),
        }
    }

    /// One LD_SCSI_IO command on tag 0 reading `len` bytes into the scratch
    /// buffer, waited for (set-up only: nothing else is in flight).
    fn command(&mut self, cdb: &Cdb, len: usize) -> Result<(), String> {
        let f = pass_frame(
            self.target,
            cdb,
            self.scratch.phys(),
            self.scratch.len(),
            len,
            self.sense_at(0),
            0,
        );
        self.write_frame(0, &f);
        self.prepared |= 1;
        self.ops[0] = None;
        self.kick()?;
        let mut done = None;
        let clock = self.clock;
        wait_for(clock, 5000 * MS, "an MFI command", || {
            done = self.poll();
            done.is_some()
        })?;
        match done {
            Some((0, r)) => r,
            other => Err(format!("MFI: tag 0 expected, got {other:?}")),
        }
    }

    /// TEST UNIT READY until GOOD: the first command after a reset may meet
    /// a UNIT ATTENTION.
    fn ready(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..5 {
            match self.command(&simple_cdb(TEST_UNIT_READY), 0) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(format!("logical drive 0 is not ready: {last}"))
    }

    fn capacity(&mut self) -> Result<(u64, u32), String> {
        self.command(&simple_cdb(READ_CAPACITY_10), 8)
            .map_err(|e| format!("READ CAPACITY(10): {e}"))?;
        let mut d = [0u8; 8];
        self.scratch.read_bytes(0, &mut d);
        if let Some(c) = capacity_10(&d) {
            return Ok(c);
        }
        self.command(&read_capacity_16_cdb(), READ_CAPACITY_16_LEN)
            .map_err(|e| format!("READ CAPACITY(16): {e}"))?;
        let mut d = [0u8; READ_CAPACITY_16_LEN];
        self.scratch.read_bytes(0, &mut d);
        Ok(capacity_16(&d))
    }
}

/// Brings the firmware to READY from where MFI_OSP0 says it is, as Linux's
/// megasas_transition_to_ready does; the state word it ends in.
fn to_ready(regs: &impl Regs, clock: &dyn Clock) -> Result<u32, String> {
    let state = regs.read32(MFI_OSP0);
    let doorbell = match state & MFI_FWSTATE_MASK {
        MFI_FWSTATE_READY => return Ok(state),
        MFI_FWSTATE_FAULT => return Err(format!("the firmware is in FAULT (MFI_OSP0={state:#x})")),
        MFI_FWSTATE_OPERATIONAL => MFI_FWINIT_ABORT | MFI_FWINIT_READY,
        MFI_FWSTATE_WAIT_HANDSHAKE => MFI_FWINIT_CLEAR_HANDSHAKE | MFI_FWINIT_HOTPLUG,
        MFI_FWSTATE_BOOT_MSG_PENDING => MFI_FWINIT_HOTPLUG,
        _ => 0, // still starting: wait
    };
    if doorbell != 0 {
        regs.write32(MFI_IDB, doorbell);
    }
    wait_for(clock, 1000 * MS, "the firmware's READY state", || {
        regs.read32(MFI_OSP0) & MFI_FWSTATE_MASK == MFI_FWSTATE_READY
    })
    .map_err(|e| format!("{e} (MFI_OSP0={:#x})", regs.read32(MFI_OSP0)))?;
    Ok(regs.read32(MFI_OSP0))
}

impl<R: Regs> Disk for Megasas<'_, R> {
    fn size(&self) -> u64 {
        self.blocks * u64::from(self.block_len)
    }
    fn depth(&self) -> usize {
        DEPTH.min(self.entries as usize - 1)
    }
    fn max_transfer(&self) -> usize {
        MAX_TRANSFER
    }

    fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String> {
        if tag >= self.depth() || (self.prepared | self.busy) & (1 << tag) != 0 {
            return Err(format!("MFI tag {tag} is busy or out of range"));
        }
        let bl = u64::from(self.block_len);
        let f = match req.op {
            Op::Flush => pass_frame(
                self.target,
                &sync_cache_cdb(),
                self.scratch.phys(),
                self.scratch.len(),
                0,
                self.sense_at(tag),
                tag as u32,
            ),
            _ if req.len == 0
                || req.len > MAX_TRANSFER
                || !req.offset.is_multiple_of(bl)
                || !(req.len as u64).is_multiple_of(bl) =>
            {
                return Err(format!(
                    "MFI: {} bytes at {} is not whole {bl}-byte blocks within {MAX_TRANSFER} bytes",
                    req.len, req.offset
                ))
            }
            op => io_frame(
                op == Op::Write,
                self.target,
                req.offset / bl,
                (req.len as u64 / bl) as u32,
                req.buf,
                req.len,
                self.sense_at(tag),
                tag as u32,
            ),
        };
        self.write_frame(tag, &f);
        self.ops[tag] = Some(req.op);
        self.prepared |= 1 << tag;
        Ok(())
    }

    fn kick(&mut self) -> Result<(), String> {
        fence();
        let mut p = self.prepared;
        while p != 0 {
            let tag = p.trailing_zeros() as usize;
            p &= !(1 << tag);
            self.post(tag)?;
            self.prepared &= !(1 << tag);
            self.busy |= 1 << tag;
        }
        Ok(())
    }

    fn poll(&mut self) -> Option<Completion> {
        while self.consumer != self.producer() {
            fence();
            let context = self.replies.read32(4 * self.consumer as usize);
            self.consumer = (self.consumer + 1) % self.entries;
            self.queue.write32(CONSUMER, self.consumer);
            let tag = context as usize;
            if tag >= DEPTH || self.busy & (1 << tag) == 0 {
                continue; // not ours in flight: nothing to hand back
            }
            self.busy &= !(1 << tag);
            let word = self.frames.read32(tag * FRAME_STRIDE);
            let (cmd_status, scsi_status) = ((word >> 16) as u8, (word >> 24) as u8);
            let mut sense = [0u8; SENSE_LEN];
            if cmd_status != MFI_STAT_OK {
                self.frames
                    .read_bytes(tag * FRAME_STRIDE + SENSE_AT, &mut sense);
            }
            let r = outcome(cmd_status, scsi_status, &sense).map_err(|e| match self.ops[tag] {
                Some(op) => format!("{} {e}", op.name()),
                None => e,
            });
            return Some((tag, r));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::fake::StepClock;
    use crate::virtio_scsi::{
        SAM_STAT_CHECK_CONDITION, SENSE_KEY_UNIT_ATTENTION, SERVICE_ACTION_IN_16,
        SYNCHRONIZE_CACHE_10,
    };
    use alloc::vec;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    const BLOCK: usize = 512;

    fn rd<T: Copy>(addr: u64) -> T {
        // SAFETY: the driver's frames, queues and buffers, in this process.
        unsafe { core::ptr::read_unaligned(addr as *const T) }
    }
    fn wr<T: Copy>(addr: u64, v: T) {
        // SAFETY: as in `rd`.
        unsafe { core::ptr::write_unaligned(addr as *mut T, v) }
    }
    fn bytes<'a>(addr: u64, len: usize) -> &'a mut [u8] {
        // SAFETY: as in `rd`.
        unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
    }

    /// QEMU's megasas as the probe meets it: MFI_OSP0 says READY (or
    /// OPERATIONAL until MFI_IDB resets it), a frame posted to MFI_IQP runs
    /// at once (or waits for `finish` with `hold`), and a completion goes
    /// to the reply queue's head, which advances (and the producer index
    /// with it) only while MFI_OMSK is open, as megasas_complete_frame does.
    struct FakeMfi {
        disk: Vec<u8>,
        state: u32,
        fw_cmds: u32,
        omsk: u32,
        /// (reply queue, producer, consumer) from INIT.
        queue: Option<(u64, u64, u64)>,
        head: u32,
        hold: bool,
        held: Vec<u64>,
        unit_attention: bool,
        /// Every frame's command and, for SCSI frames, the CDB's opcode.
        seen: Vec<(u8, u8)>,
        idb: Vec<u32>,
    }

    impl FakeMfi {
        fn new(blocks: usize, fw_cmds: u32) -> RefCell<FakeMfi> {
            RefCell::new(FakeMfi {
                disk: (0..blocks * BLOCK).map(|i| (i / BLOCK) as u8).collect(),
                state: MFI_FWSTATE_READY,
                fw_cmds,
                omsk: u32::MAX,
                queue: None,
                head: 0,
                hold: false,
                held: vec![],
                unit_attention: true,
                seen: vec![],
                idb: vec![],
            })
        }

        fn finish(&mut self) {
            for f in core::mem::take(&mut self.held) {
                self.run(f);
            }
        }

        /// Runs the frame at `f`: (cmd_status, scsi_status).
        fn execute(&mut self, f: u64) -> (u8, u8) {
            let cmd = rd::<u8>(f);
            let data_len = rd::<u32>(f + HDR_DATA_LEN as u64);
            let flags = rd::<u16>(f + HDR_FLAGS as u64);
            let sense = rd::<u64>(f + IO_SENSE_ADDR_LO as u64);
            let sge = |at: usize| {
                assert_eq!(rd::<u8>(f + HDR_SGE_COUNT as u64), 1, "one SGE");
                assert_ne!(flags & MFI_FRAME_SGL64, 0, "64-bit SGEs");
                let a = f + at as u64;
                (rd::<u64>(a), rd::<u32>(a + 8) as usize)
            };
            let check = |key: u8, asc: u8| {
                let s = bytes(sense, 18);
                s.fill(0);
                (s[0], s[2], s[7], s[12]) = (0xf0, key, 10, asc);
                (MFI_STAT_SCSI_DONE_WITH_ERROR, SAM_STAT_CHECK_CONDITION)
            };
            let blocks = (self.disk.len() / BLOCK) as u64;
            match cmd {
                MFI_CMD_INIT => {
                    self.seen.push((cmd, 0));
                    let q = rd::<u64>(f + INIT_QINFO_NEW_ADDR_LO as u64);
                    let entries = rd::<u32>(q + QINFO_RQ_ENTRIES as u64);
                    if entries > self.fw_cmds {
                        return (MFI_STAT_INVALID_PARAMETER, 0);
                    }
                    self.queue = Some((
                        rd::<u64>(q + QINFO_RQ_ADDR_LO as u64),
                        rd::<u64>(q + QINFO_PI_ADDR_LO as u64),
                        rd::<u64>(q + QINFO_CI_ADDR_LO as u64),
                    ));
                    self.head = rd::<u32>(rd::<u64>(q + QINFO_PI_ADDR_LO as u64));
                    self.state = MFI_FWSTATE_OPERATIONAL;
                    (MFI_STAT_OK, 0)
                }
                MFI_CMD_LD_READ | MFI_CMD_LD_WRITE => {
                    self.seen.push((cmd, 0));
                    let lba = rd::<u64>(f + IO_LBA_LO as u64);
                    let (addr, len) = sge(IO_SGL);
                    assert_eq!(len, data_len as usize * BLOCK, "the SGE holds the blocks");
                    if lba + u64::from(data_len) > blocks {
                        return check(0x5, 0x21);
                    }
                    let r = lba as usize * BLOCK..lba as usize * BLOCK + len;
                    if cmd == MFI_CMD_LD_READ {
                        bytes(addr, len).copy_from_slice(&self.disk[r]);
                    } else {
                        self.disk[r].copy_from_slice(bytes(addr, len));
                    }
                    (MFI_STAT_OK, 0)
                }
                MFI_CMD_LD_SCSI_IO => {
                    let cdb = bytes(f + PASS_CDB as u64, PASS_CDB_LEN).to_vec();
                    self.seen.push((cmd, cdb[0]));
                    assert_eq!(rd::<u8>(f + HDR_CDB_LEN as u64), cdb_len(cdb[0]));
                    let (addr, len) = sge(PASS_SGL);
                    assert!(addr != 0 && len != 0, "QEMU refuses an empty SGE");
                    if core::mem::take(&mut self.unit_attention) {
                        return check(SENSE_KEY_UNIT_ATTENTION, 0x29);
                    }
                    match cdb[0] {
                        TEST_UNIT_READY | SYNCHRONIZE_CACHE_10 => assert_eq!(data_len, 0),
                        READ_CAPACITY_10 => {
                            let d = bytes(addr, 8);
                            d[..4].copy_from_slice(&((blocks - 1) as u32).to_be_bytes());
                            d[4..].copy_from_slice(&(BLOCK as u32).to_be_bytes());
                        }
                        op => panic!("unexpected SCSI opcode {op:#x}"),
                    }
                    (MFI_STAT_OK, 0)
                }
                other => panic!("unexpected MFI command {other:#x}"),
            }
        }

        fn run(&mut self, f: u64) {
            let (cmd_status, scsi_status) = self.execute(f);
            wr(f + HDR_SCSI_STATUS as u64, scsi_status);
            wr(f + HDR_CMD_STATUS as u64, cmd_status);
            let context = rd::<u64>(f + HDR_CONTEXT as u64) as u32;
            // INIT refused: no reply queue to post to.
            let Some((rq, pi, _)) = self.queue else {
                return;
            };
            wr(rq + 4 * u64::from(self.head), context);
            if self.omsk != u32::MAX {
                self.head = (self.head + 1) % self.fw_cmds;
                wr(pi, self.head);
            }
        }
    }

    struct Dev<'a>(&'a RefCell<FakeMfi>);

    impl Regs for Dev<'_> {
        fn read32(&self, off: usize) -> u32 {
            let d = self.0.borrow();
            match off {
                MFI_OSP0 => d.state | (80 << 16) | d.fw_cmds,
                MFI_OMSK => d.omsk,
                _ => 0,
            }
        }
        fn write32(&self, off: usize, v: u32) {
            let mut d = self.0.borrow_mut();
            match off {
                MFI_IDB => {
                    d.idb.push(v);
                    if v & MFI_FWINIT_READY != 0 {
                        d.state = MFI_FWSTATE_READY;
                        d.queue = None;
                        d.omsk = u32::MAX;
                    }
                }
                MFI_OMSK => d.omsk = v,
                MFI_IQP => {
                    assert_eq!(v & 1, 1, "bit 0 marks an MFI frame");
                    let f = u64::from(v & !0x1f);
                    if d.queue.is_some() && d.hold {
                        d.held.push(f);
                    } else {
                        d.run(f);
                    }
                }
                o => panic!("unexpected register write {o:#x}"),
            }
        }
    }

    #[test]
    fn brings_the_firmware_up_then_reads_writes_and_flushes_through_the_reply_queue() {
        let fake = FakeMfi::new(2048, 1000);
        let clock = StepClock::new(1000);
        let mut m = Megasas::new(Dev(&fake), &clock).unwrap();
        assert_eq!((m.size(), m.depth()), (2048 * 512, DEPTH));
        assert_eq!(fake.borrow().omsk, MFI_OMSK_OPEN, "the mask opened");
        assert!(fake.borrow().idb.is_empty(), "READY already: no doorbell");
        // INIT, then TEST UNIT READY twice (the reset's UNIT ATTENTION).
        assert_eq!(
            fake.borrow().seen,
            [
                (MFI_CMD_INIT, 0),
                (MFI_CMD_LD_SCSI_IO, TEST_UNIT_READY),
                (MFI_CMD_LD_SCSI_IO, TEST_UNIT_READY),
                (MFI_CMD_LD_SCSI_IO, READ_CAPACITY_10)
            ]
        );

        // A batch in flight together: nothing completes before the device.
        fake.borrow_mut().hold = true;
        let bufs: Vec<DmaBuf> = (0..3).map(|_| DmaBuf::new(4096)).collect();
        for (tag, b) in bufs.iter().enumerate() {
            m.submit(tag, &Request::read(8192 * (tag as u64 + 1), b.phys(), 4096))
                .unwrap();
        }
        assert!(m.submit(1, &Request::flush()).unwrap_err().contains("busy"));
        assert!(fake.borrow().held.is_empty(), "nothing posted before kick");
        m.kick().unwrap();
        assert_eq!(fake.borrow().held.len(), 3, "one MFI_IQP write each");
        assert_eq!(m.poll(), None, "the producer has not moved");
        fake.borrow_mut().finish();
        let tags: Vec<usize> = core::iter::from_fn(|| m.poll())
            .map(|(t, r)| {
                r.unwrap();
                t
            })
            .collect();
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
        m.submit(5, &Request::write(512 * 100, w.phys(), 8192))
            .unwrap();
        m.kick().unwrap();
        assert_eq!(m.poll(), Some((5, Ok(()))));
        m.submit(0, &Request::flush()).unwrap();
        m.kick().unwrap();
        assert_eq!(m.poll(), Some((0, Ok(()))));
        assert_eq!(m.poll(), None);
        assert!(fake.borrow().disk[512 * 100..512 * 116]
            .iter()
            .all(|&x| x == 0xab));
        assert_eq!(
            fake.borrow().seen[4..],
            [
                (MFI_CMD_LD_READ, 0),
                (MFI_CMD_LD_READ, 0),
                (MFI_CMD_LD_READ, 0),
                (MFI_CMD_LD_WRITE, 0),
                (MFI_CMD_LD_SCSI_IO, SYNCHRONIZE_CACHE_10)
            ]
        );
        // Producer and consumer agree: 3 set-up commands and 5 requests.
        assert_eq!(m.producer(), 8);
        assert_eq!(m.queue.read32(CONSUMER), 8);
    }

    #[test]
    fn an_operational_firmware_is_reset_to_ready_and_the_reply_queue_wraps() {
        let fake = FakeMfi::new(64, 8);
        fake.borrow_mut().state = MFI_FWSTATE_OPERATIONAL;
        let clock = StepClock::new(1000);
        let mut m = Megasas::new(Dev(&fake), &clock).unwrap();
        assert_eq!(
            fake.borrow().idb,
            [MFI_FWINIT_ABORT | MFI_FWINIT_READY],
            "MFI_IDB moved it to READY before INIT"
        );
        assert_eq!(m.depth(), 7, "a reply entry left free");
        let b = DmaBuf::new(512);
        for i in 0..20u64 {
            m.submit(3, &Request::read(512 * (i % 64), b.phys(), 512))
                .unwrap();
            m.kick().unwrap();
            assert_eq!(m.poll(), Some((3, Ok(()))), "request {i}");
            assert_eq!(b.as_slice()[0], (i % 64) as u8);
        }
        // 3 set-up commands and 20 reads, around a queue of 8.
        assert_eq!(m.consumer, 23 % 8);
    }

    #[test]
    fn a_check_condition_fails_the_request_with_its_sense() {
        let fake = FakeMfi::new(16, 1000);
        let clock = StepClock::new(1000);
        let mut m = Megasas::new(Dev(&fake), &clock).unwrap();
        let b = DmaBuf::new(4096);
        m.submit(2, &Request::read(512 * 16, b.phys(), 4096))
            .unwrap();
        m.kick().unwrap();
        let (tag, r) = m.poll().unwrap();
        assert_eq!(tag, 2);
        assert_eq!(
            r.unwrap_err(),
            "read SCSI status 0x02, sense key 0x5 asc 0x21 ascq 0x00"
        );
        assert!(m.submit(0, &Request::read(100, b.phys(), 4096)).is_err());
        assert!(m.submit(DEPTH, &Request::read(0, b.phys(), 512)).is_err());
    }

    #[test]
    fn a_faulted_firmware_or_a_refused_init_is_an_error() {
        let fake = FakeMfi::new(16, 1000);
        fake.borrow_mut().state = MFI_FWSTATE_FAULT;
        let clock = StepClock::new(1000);
        let e = Megasas::new(Dev(&fake), &clock).err().unwrap();
        assert!(e.contains("FAULT"), "{e}");
        // A firmware with no command to spare for the reply queue.
        let fake = FakeMfi::new(16, 1000);
        fake.borrow_mut().fw_cmds = 1;
        let e = Megasas::new(Dev(&fake), &clock).err().unwrap();
        assert!(e.contains("offers 1 commands"), "{e}");
    }

    #[test]
    fn frames_lay_out_as_mfi_h_says() {
        let f = io_frame(false, 0, 0x1_2345_6789, 8, 0x20_0000, 4096, 0x30_0080, 7);
        assert_eq!(&f[..8], &[MFI_CMD_LD_READ, 96, 0xff, 0, 0, 0, 0, 1]);
        assert_eq!(&f[8..16], &7u64.to_le_bytes());
        assert_eq!(
            u16::from_le_bytes([f[0x10], f[0x11]]),
            MFI_FRAME_SGL64 | MFI_FRAME_SENSE64 | MFI_FRAME_DIR_READ
        );
        assert_eq!(&f[0x14..0x18], &8u32.to_le_bytes(), "data_len in blocks");
        assert_eq!(&f[0x18..0x20], &0x30_0080u64.to_le_bytes());
        assert_eq!(&f[0x20..0x28], &0x1_2345_6789u64.to_le_bytes());
        assert_eq!(&f[0x28..0x30], &0x20_0000u64.to_le_bytes());
        assert_eq!(&f[0x30..0x34], &4096u32.to_le_bytes());
        assert_eq!(io_frame(true, 0, 0, 1, 1, 512, 0, 0)[0], MFI_CMD_LD_WRITE);

        let p = pass_frame(0, &sync_cache_cdb(), 0x5000, 512, 0, 0x6000, 3);
        assert_eq!(&p[..8], &[MFI_CMD_LD_SCSI_IO, 96, 0xff, 0, 0, 0, 10, 1]);
        assert_eq!(&p[0x14..0x18], &0u32.to_le_bytes(), "no data");
        assert_eq!(&p[0x20..0x2a], &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&p[0x30..0x38], &0x5000u64.to_le_bytes());
        assert_eq!(&p[0x38..0x3c], &512u32.to_le_bytes(), "an SGE all the same");
        let rc = pass_frame(0, &read_capacity_16_cdb(), 0x5000, 512, 32, 0, 0);
        assert_eq!((rc[HDR_CDB_LEN], rc[PASS_CDB]), (16, SERVICE_ACTION_IN_16));

        let i = init_frame(0x1_0000_1000);
        assert_eq!(&i[..4], &[MFI_CMD_INIT, 0, 0xff, 0]);
        assert_eq!(&i[0x14..0x18], &32u32.to_le_bytes());
        assert_eq!(&i[0x18..0x20], &0x1_0000_1000u64.to_le_bytes());
        let q = init_qinfo(1000, 0x7000, 0x8040, 0x8080);
        assert_eq!(&q[..8], &[0, 0, 0, 0, 0xe8, 0x03, 0, 0]);
        assert_eq!(&q[8..16], &0x7000u64.to_le_bytes());
        assert_eq!(&q[16..24], &0x8040u64.to_le_bytes());
        assert_eq!(&q[24..32], &0x8080u64.to_le_bytes());

        assert_eq!(inbound_queue_value(0x12_3400), 0x12_3401);
        assert_eq!((cdb_len(0x00), cdb_len(0x25), cdb_len(0x88)), (6, 10, 16));
        assert_eq!(
            (mmio_bar(0x0060), mmio_bar(0x0079), mmio_bar(0x005b)),
            (Some(0), Some(1), None)
        );
    }

    #[test]
    fn statuses_name_the_failure() {
        assert_eq!(outcome(MFI_STAT_OK, 0, &[]), Ok(()));
        assert_eq!(
            outcome(MFI_STAT_DEVICE_NOT_FOUND, 0, &[]).unwrap_err(),
            "MFI status 0x0c (DEVICE_NOT_FOUND)"
        );
        assert_eq!(
            outcome(MFI_STAT_SCSI_DONE_WITH_ERROR, 0x08, &[]).unwrap_err(),
            "SCSI status 0x08"
        );
    }
}
