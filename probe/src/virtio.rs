//! virtio-blk through the virtio-drivers crate: its PCI transport (config
//! space through our port CAM), its `VirtIOBlk`, and its non-blocking
//! request API, polled on the used ring. Interrupts stay off
//! (VIRTQ_AVAIL_F_NO_INTERRUPT, and the CPU takes none anyway).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use crate::disk::{Completion, Disk, Op, Request};
use crate::pci::{Bdf, PortCam};

/// Identity-mapped memory: physical = virtual, DMA pages from the heap.
pub struct ProbeHal;

// SAFETY: allocations are page-aligned, zeroed and live until dealloc;
// every address is its own physical address.
unsafe impl Hal for ProbeHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = core::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE)
            .expect("valid layout");
        // SAFETY: non-zero size.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(p) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            None => (0, NonNull::dangling()),
        }
    }
    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = core::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE)
            .expect("valid layout");
        // SAFETY: allocated by dma_alloc with this layout.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("non-null MMIO address")
    }
    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }
    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

struct Slot {
    req: BlkReq,
    resp: BlkResp,
    op: Op,
    sector: u64,
    buf: u64,
    len: usize,
    token: Option<u16>,
}

pub struct VirtioBlk {
    blk: VirtIOBlk<ProbeHal, PciTransport>,
    slots: Vec<Slot>,
    /// Tags prepared while the virtqueue had no room: added as others
    /// complete.
    waiting: VecDeque<usize>,
    /// Flushes done (synchronously) and not yet reaped.
    flushed: VecDeque<Completion>,
}

/// Tags the workload may use: the crate's queue holds 16 descriptors, one
/// per request with indirect descriptors (QEMU offers them).
pub const DEPTH: usize = 16;

fn buf_slice<'a>(buf: u64, len: usize) -> &'a mut [u8] {
    // SAFETY: the workload owns the buffer for the request's lifetime.
    unsafe { core::slice::from_raw_parts_mut(buf as *mut u8, len) }
}

impl VirtioBlk {
    /// Sets up the function at `bdf`, whose BARs are assigned and enabled.
    pub fn new(bdf: Bdf) -> Result<VirtioBlk, String> {
        let mut root = PciRoot::new(PortCam);
        let df = DeviceFunction {
            bus: 0,
            device: bdf.slot,
            function: bdf.function,
        };
        let transport = PciTransport::new::<ProbeHal, PortCam>(&mut root, df)
            .map_err(|e| format!("virtio PCI transport: {e}"))?;
        let mut blk = VirtIOBlk::<ProbeHal, _>::new(transport)
            .map_err(|e| format!("virtio-blk set-up: {e}"))?;
        blk.disable_interrupts();
        let slots = (0..DEPTH)
            .map(|_| Slot {
                req: BlkReq::default(),
                resp: BlkResp::default(),
                op: Op::Read,
                sector: 0,
                buf: 0,
                len: 0,
                token: None,
            })
            .collect();
        Ok(VirtioBlk {
            blk,
            slots,
            waiting: VecDeque::new(),
            flushed: VecDeque::new(),
        })
    }

    /// Adds slot `tag` to the virtqueue; `false` if it has no room.
    fn add(&mut self, tag: usize) -> Result<bool, String> {
        let s = &mut self.slots[tag];
        let buf = buf_slice(s.buf, s.len);
        let block = s.sector as usize;
        // SAFETY: req, resp and buf stay untouched until completion.
        let r = unsafe {
            match s.op {
                Op::Read => self.blk.read_blocks_nb(block, &mut s.req, buf, &mut s.resp),
                _ => self
                    .blk
                    .write_blocks_nb(block, &mut s.req, buf, &mut s.resp),
            }
        };
        match r {
            Ok(token) => {
                s.token = Some(token);
                Ok(true)
            }
            Err(virtio_drivers::Error::QueueFull) => Ok(false),
            Err(e) => Err(format!("virtio-blk request: {e}")),
        }
    }
}

impl Disk for VirtioBlk {
    fn size(&self) -> u64 {
        self.blk.capacity() * SECTOR_SIZE as u64
    }
    fn depth(&self) -> usize {
        DEPTH
    }
    fn max_transfer(&self) -> usize {
        4 << 20
    }
    /// A flush runs synchronously here (the crate has no non-blocking
    /// flush): the workload arms its wake one-shot around it.
    fn blocking_flush(&self) -> bool {
        true
    }

    fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String> {
        if tag >= DEPTH || self.slots[tag].token.is_some() || self.waiting.contains(&tag) {
            return Err(format!("virtio-blk tag {tag} is busy or out of range"));
        }
        if req.op == Op::Flush {
            let r = self
                .blk
                .flush()
                .map_err(|e| format!("virtio-blk flush: {e}"));
            self.flushed.push_back((tag, r));
            return Ok(());
        }
        if req.len == 0 || !req.len.is_multiple_of(SECTOR_SIZE) {
            return Err(format!(
                "virtio-blk: {} bytes is not whole sectors",
                req.len
            ));
        }
        let s = &mut self.slots[tag];
        s.op = req.op;
        s.buf = req.buf;
        s.len = req.len;
        s.sector = req.lba();
        if !self.add(tag)? {
            self.waiting.push_back(tag);
        }
        Ok(())
    }

    fn kick(&mut self) -> Result<(), String> {
        // read_blocks_nb notified the device already (when it asked to be).
        Ok(())
    }

    fn poll(&mut self) -> Option<Completion> {
        if let Some(c) = self.flushed.pop_front() {
            return Some(c);
        }
        let token = self.blk.peek_used()?;
        let tag = self.slots.iter().position(|s| s.token == Some(token))?;
        let s = &mut self.slots[tag];
        s.token = None;
        let buf = buf_slice(s.buf, s.len);
        // SAFETY: the same buffers as were added with this token.
        let r = unsafe {
            match s.op {
                Op::Read => self
                    .blk
                    .complete_read_blocks(token, &s.req, buf, &mut s.resp),
                _ => self
                    .blk
                    .complete_write_blocks(token, &s.req, buf, &mut s.resp),
            }
        };
        let r = match r {
            Ok(()) if s.resp.status() == RespStatus::OK => Ok(()),
            Ok(()) => Err(format!("virtio-blk status {:?}", s.resp.status())),
            Err(e) => Err(format!("virtio-blk: {e}")),
        };
        // Room again: add the next waiting request.
        if let Some(next) = self.waiting.pop_front() {
            match self.add(next) {
                Ok(true) => {}
                Ok(false) => self.waiting.push_front(next),
                Err(e) => self.flushed.push_back((next, Err(e))),
            }
        }
        Some((tag, r))
    }
}
