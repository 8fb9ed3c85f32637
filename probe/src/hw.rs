//! The seams between the drivers and the machine: port I/O, MMIO register
//! windows, the clock and DMA memory. The real implementations are here too
//! (they compile on the host, where only the tests' fakes ever run).

use alloc::alloc::Layout;
#[cfg(not(test))]
use alloc::alloc::{alloc_zeroed, dealloc};
use core::ptr::NonNull;

/// x86 port I/O.
pub trait Ports {
    fn inb(&mut self, port: u16) -> u8;
    fn outb(&mut self, port: u16, v: u8);
    fn inw(&mut self, port: u16) -> u16;
    fn outw(&mut self, port: u16, v: u16);
    fn inl(&mut self, port: u16) -> u32;
    fn outl(&mut self, port: u16, v: u32);
}

/// The machine's own ports (only meaningful in the guest).
#[derive(Clone, Copy, Default)]
pub struct PortIo;

/// Writes the verdict to isa-debug-exit and halts (if QEMU has no such
/// device, for good).
pub fn exit(code: i32) -> ! {
    PortIo.outb(
        contract::exit::DEBUG_EXIT_PORT,
        contract::exit::encode(code),
    );
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

impl Ports for PortIo {
    fn inb(&mut self, port: u16) -> u8 {
        // SAFETY: the probe owns the whole machine; every port it reads is
        // one of the devices it drives.
        unsafe { x86_64::instructions::port::Port::<u8>::new(port).read() }
    }
    fn outb(&mut self, port: u16, v: u8) {
        // SAFETY: as in `inb`.
        unsafe { x86_64::instructions::port::Port::<u8>::new(port).write(v) }
    }
    fn inw(&mut self, port: u16) -> u16 {
        // SAFETY: as in `inb`.
        unsafe { x86_64::instructions::port::Port::<u16>::new(port).read() }
    }
    fn outw(&mut self, port: u16, v: u16) {
        // SAFETY: as in `inb`.
        unsafe { x86_64::instructions::port::Port::<u16>::new(port).write(v) }
    }
    fn inl(&mut self, port: u16) -> u32 {
        // SAFETY: as in `inb`.
        unsafe { x86_64::instructions::port::Port::<u32>::new(port).read() }
    }
    fn outl(&mut self, port: u16, v: u32) {
        // SAFETY: as in `inb`.
        unsafe { x86_64::instructions::port::Port::<u32>::new(port).write(v) }
    }
}

/// A device's register window (a BAR), by byte offset.
pub trait Regs {
    fn read32(&self, off: usize) -> u32;
    fn write32(&self, off: usize, v: u32);
    /// A 64-bit register as two 32-bit accesses, low half first.
    fn read64(&self, off: usize) -> u64 {
        u64::from(self.read32(off)) | (u64::from(self.read32(off + 4)) << 32)
    }
    fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
}

/// A memory-mapped register window at an identity-mapped address.
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    pub base: usize,
}

impl Regs for Mmio {
    fn read32(&self, off: usize) -> u32 {
        // SAFETY: `base` is a BAR the probe assigned, identity-mapped.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }
    fn write32(&self, off: usize, v: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }
}

/// Monotonic time in nanoseconds.
pub trait Clock {
    fn now_ns(&self) -> u64;

    /// Spins until `ns` have passed.
    fn spin_ns(&self, ns: u64) {
        let until = self.now_ns().saturating_add(ns);
        while self.now_ns() < until {
            core::hint::spin_loop();
        }
    }
}

/// The time-stamp counter at `khz` ticks per millisecond.
#[derive(Clone, Copy, Debug)]
pub struct Tsc {
    pub khz: u64,
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear.
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl Tsc {
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * 1_000_000 / u128::from(self.khz.max(1))) as u64
    }
}

impl Clock for Tsc {
    fn now_ns(&self) -> u64 {
        self.ticks_to_ns(rdtsc())
    }
}

/// Zeroed, page-aligned memory a device reads or writes: the probe maps all
/// memory 1:1, so its address is the bus address.
pub struct DmaBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl DmaBuf {
    pub fn new(len: usize) -> DmaBuf {
        let layout = Layout::from_size_align(len.max(1), 4096).expect("valid layout");
        #[cfg(not(test))]
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        #[cfg(test)]
        let ptr = low::alloc(layout.size());
        let ptr = NonNull::new(ptr).unwrap_or_else(|| alloc::alloc::handle_alloc_error(layout));
        DmaBuf { ptr, len }
    }
    /// The address as a 32-bit bus address, for DMA engines that take no
    /// more (IDE's PRD tables): the probe's heap is below 2 GiB.
    pub fn phys32(&self) -> Result<u32, alloc::string::String> {
        bus32(self.phys())
    }
    pub fn phys(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: valid for `len` bytes while we live.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold &mut self.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
    /// Volatile 32-bit read at byte offset `off` (the device writes here).
    pub fn read32(&self, off: usize) -> u32 {
        assert!(off + 4 <= self.len);
        // SAFETY: in bounds and 4-aligned (callers use aligned offsets).
        unsafe { core::ptr::read_volatile(self.ptr.as_ptr().add(off) as *const u32) }
    }
    pub fn write32(&self, off: usize, v: u32) {
        assert!(off + 4 <= self.len);
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(self.ptr.as_ptr().add(off) as *mut u32, v) }
    }
    pub fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
    /// Copies `bytes` in at `off` with volatile stores (descriptors the
    /// device reads).
    pub fn write_bytes(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len);
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: in bounds.
            unsafe { core::ptr::write_volatile(self.ptr.as_ptr().add(off + i), *b) }
        }
    }
    pub fn read_bytes(&self, off: usize, out: &mut [u8]) {
        assert!(off + out.len() <= self.len);
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: in bounds.
            *b = unsafe { core::ptr::read_volatile(self.ptr.as_ptr().add(off + i)) };
        }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len.max(1), 4096).expect("valid layout");
        #[cfg(not(test))]
        // SAFETY: allocated in `new` with this layout.
        unsafe {
            dealloc(self.ptr.as_ptr(), layout)
        }
        #[cfg(test)]
        low::free(self.ptr.as_ptr(), layout.size());
    }
}

/// `addr` as a 32-bit bus address, or why it is out of reach.
pub fn bus32(addr: u64) -> Result<u32, alloc::string::String> {
    u32::try_from(addr).map_err(|_| {
        alloc::format!("DMA address {addr:#x} is above 4 GiB: the engine takes 32 bits")
    })
}

/// The tests' DMA memory, below 2 GiB as all the guest's memory is
/// (`mmap` with MAP_32BIT), so the fakes of 32-bit DMA engines can follow
/// the addresses the drivers give them.
#[cfg(test)]
mod low {
    unsafe extern "C" {
        fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
        fn munmap(addr: *mut u8, len: usize) -> i32;
    }
    const PROT_READ_WRITE: i32 = 0x1 | 0x2;
    const MAP_PRIVATE_ANONYMOUS_32BIT: i32 = 0x02 | 0x20 | 0x40;

    /// Zeroed pages, or null.
    pub fn alloc(len: usize) -> *mut u8 {
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let p = unsafe {
            mmap(
                core::ptr::null_mut(),
                len,
                PROT_READ_WRITE,
                MAP_PRIVATE_ANONYMOUS_32BIT,
                -1,
                0,
            )
        };
        if p as isize == -1 {
            core::ptr::null_mut()
        } else {
            p
        }
    }

    pub fn free(p: *mut u8, len: usize) {
        // SAFETY: mapped by `alloc` with this length.
        unsafe { munmap(p, len) };
    }
}

/// Memory barrier between filling descriptors and ringing a doorbell.
pub fn fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Waits until `done()` or `timeout_ns` pass; `Err` names `what`.
pub fn wait_for(
    clock: &dyn Clock,
    timeout_ns: u64,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<(), alloc::string::String> {
    let start = clock.now_ns();
    loop {
        if done() {
            return Ok(());
        }
        if clock.now_ns().saturating_sub(start) > timeout_ns {
            return Err(alloc::format!(
                "timed out after {} ms waiting for {what}",
                timeout_ns / 1_000_000
            ));
        }
        core::hint::spin_loop();
    }
}

#[cfg(test)]
pub mod fake {
    //! Fakes for the host tests.
    use super::*;
    use core::cell::Cell;

    /// A clock that moves `step` ns every time it is read.
    pub struct StepClock {
        pub now: Cell<u64>,
        pub step: u64,
    }

    impl StepClock {
        pub fn new(step: u64) -> StepClock {
            StepClock {
                now: Cell::new(0),
                step,
            }
        }
    }

    impl Clock for StepClock {
        fn now_ns(&self) -> u64 {
            let t = self.now.get();
            self.now.set(t + self.step);
            t
        }
    }
}
