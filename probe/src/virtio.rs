//! virtio-blk on the virtio-drivers crate's PCI transport (config space
//! through our port CAM) and `VirtQueue`, with the requests built here
//! (reads, writes and flushes: the crate's `VirtIOBlk` only blocks on a
//! flush), polled on the used ring. Interrupts stay off (the CPU takes
//! none).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use virtio_drivers::device::blk::SECTOR_SIZE;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceType, Transport};
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

/// The request queue (virtio-blk has one).
pub const QUEUE: u16 = 0;
/// Descriptors in the queue.
pub const QUEUE_SIZE: usize = 16;
/// Request types (virtio 1.2 section 5.2.6).
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
/// The status byte's success value.
pub const S_OK: u8 = 0;
/// The request header's length: type, reserved, sector.
pub const HEADER_LEN: usize = 16;

bitflags::bitflags! {
    /// The features the probe negotiates: virtio 1.0 with indirect
    /// descriptors, and the flush command.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BlkFeature: u64 {
        const FLUSH = 1 << 9;
        const RING_INDIRECT_DESC = 1 << 28;
        const RING_EVENT_IDX = 1 << 29;
        const VERSION_1 = 1 << 32;
    }
}

/// A request's header: type, a reserved word and the sector, little-endian.
pub fn header(op: Op, sector: u64) -> [u8; HEADER_LEN] {
    let t = match op {
        Op::Read => T_IN,
        Op::Write => T_OUT,
        Op::Flush => T_FLUSH,
    };
    let mut h = [0; HEADER_LEN];
    h[..4].copy_from_slice(&t.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

struct Slot {
    hdr: [u8; HEADER_LEN],
    status: [u8; 1],
    op: Op,
    buf: u64,
    len: usize,
    token: Option<u16>,
}

/// virtio-blk on virtio-drivers' transport and `VirtQueue`, with requests
/// built here: reads, writes and flushes alike go on the queue and are
/// polled on the used ring (the crate's own `flush()` blocks).
pub struct VirtioBlk<T: Transport = PciTransport> {
    transport: T,
    queue: VirtQueue<ProbeHal, QUEUE_SIZE>,
    capacity: u64,
    depth: usize,
    slots: Vec<Slot>,
}

/// The workload's buffer of a request (none for a flush).
fn buf_slice<'a>(buf: u64, len: usize) -> &'a mut [u8] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: the workload owns the buffer for the request's lifetime.
    unsafe { core::slice::from_raw_parts_mut(buf as *mut u8, len) }
}

impl VirtioBlk {
    /// Sets up the function at `bdf`, whose BARs are assigned and enabled.
    pub fn open(bdf: Bdf) -> Result<VirtioBlk, String> {
        let mut root = PciRoot::new(PortCam);
        let df = DeviceFunction {
            bus: 0,
            device: bdf.slot,
            function: bdf.function,
        };
        let transport = PciTransport::new::<ProbeHal, PortCam>(&mut root, df)
            .map_err(|e| format!("virtio PCI transport: {e}"))?;
        VirtioBlk::new(transport)
    }
}

impl<T: Transport> VirtioBlk<T> {
    /// Negotiates features (the flush among them), reads the capacity and
    /// sets up the request queue.
    pub fn new(mut transport: T) -> Result<Self, String> {
        if transport.device_type() != DeviceType::Block {
            return Err(format!(
                "a virtio {:?} device, not a block device",
                transport.device_type()
            ));
        }
        let features = transport.begin_init(BlkFeature::all());
        if !features.contains(BlkFeature::FLUSH) {
            return Err(
                "virtio-blk offers no flush (VIRTIO_BLK_F_FLUSH): its write cache is off".into(),
            );
        }
        let cfg = |t: &T, off: usize| {
            t.read_config_space::<u32>(off)
                .map_err(|e| format!("virtio-blk config capacity: {e}"))
        };
        let capacity = u64::from(cfg(&transport, 0)?) | (u64::from(cfg(&transport, 4)?) << 32);
        let indirect = features.contains(BlkFeature::RING_INDIRECT_DESC);
        let queue = VirtQueue::new(
            &mut transport,
            QUEUE,
            indirect,
            features.contains(BlkFeature::RING_EVENT_IDX),
        )
        .map_err(|e| format!("virtio-blk request queue: {e}"))?;
        transport.finish_init();
        // Without indirect descriptors a read or write takes three.
        let depth = if indirect { QUEUE_SIZE } else { QUEUE_SIZE / 3 };
        Ok(VirtioBlk {
            transport,
            queue,
            capacity,
            depth,
            slots: (0..depth)
                .map(|_| Slot {
                    hdr: [0; HEADER_LEN],
                    status: [0xff],
                    op: Op::Read,
                    buf: 0,
                    len: 0,
                    token: None,
                })
                .collect(),
        })
    }
}

impl<T: Transport> Disk for VirtioBlk<T> {
    fn size(&self) -> u64 {
        self.capacity * SECTOR_SIZE as u64
    }
    fn depth(&self) -> usize {
        self.depth
    }
    fn max_transfer(&self) -> usize {
        4 << 20
    }

    fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String> {
        if tag >= self.depth || self.slots[tag].token.is_some() {
            return Err(format!("virtio-blk tag {tag} is busy or out of range"));
        }
        if req.op != Op::Flush && (req.len == 0 || !req.len.is_multiple_of(SECTOR_SIZE)) {
            return Err(format!(
                "virtio-blk: {} bytes is not whole sectors",
                req.len
            ));
        }
        let s = &mut self.slots[tag];
        s.hdr = header(req.op, req.lba());
        s.status = [0xff];
        s.op = req.op;
        s.buf = req.buf;
        s.len = if req.op == Op::Flush { 0 } else { req.len };
        let data = buf_slice(s.buf, s.len);
        // SAFETY: the header, status and data stay untouched until the
        // request is popped from the used ring.
        let token = unsafe {
            match s.op {
                Op::Read => self.queue.add(&[&s.hdr], &mut [data, &mut s.status]),
                Op::Write => self.queue.add(&[&s.hdr, data], &mut [&mut s.status]),
                Op::Flush => self.queue.add(&[&s.hdr], &mut [&mut s.status]),
            }
        }
        .map_err(|e| format!("virtio-blk request: {e}"))?;
        s.token = Some(token);
        Ok(())
    }

    fn kick(&mut self) -> Result<(), String> {
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
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
        let r = unsafe {
            match s.op {
                Op::Read => self
                    .queue
                    .pop_used(token, &[&s.hdr], &mut [data, &mut s.status]),
                Op::Write => self
                    .queue
                    .pop_used(token, &[&s.hdr, data], &mut [&mut s.status]),
                Op::Flush => self.queue.pop_used(token, &[&s.hdr], &mut [&mut s.status]),
            }
        };
        let r = match r {
            Ok(_) if s.status[0] == S_OK => Ok(()),
            Ok(_) => Err(format!("virtio-blk {} status {}", s.op.name(), s.status[0])),
            Err(e) => Err(format!("virtio-blk: {e}")),
        };
        Some((tag, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_the_type_and_sector_little_endian() {
        assert_eq!(
            header(Op::Read, 0x0102_0304_0506_0708),
            [0, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert_eq!(header(Op::Write, 1)[..4], [1, 0, 0, 0]);
        assert_eq!(header(Op::Flush, 0)[..4], [4, 0, 0, 0]);
        // The flush bit the block layer needs to keep its write cache on.
        assert_eq!(BlkFeature::FLUSH.bits(), 1 << 9);
    }
}
