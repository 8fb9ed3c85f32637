//! COM1 output by polling: wait for LSR.THRE, write THR. The receive
//! buffer is never read (a read of it kicks QEMU's main loop).

use crate::hw::{PortIo, Ports};

pub const COM1: u16 = 0x3F8;
pub const THR: u16 = 0;
pub const IER: u16 = 1;
pub const LCR: u16 = 3;
pub const LSR: u16 = 5;
pub const LSR_THRE: u8 = 1 << 5;
pub const LCR_8N1: u8 = 0x03;

/// The console: COM1 through port I/O.
pub fn console() -> Serial {
    Serial { ports: PortIo }
}

pub struct Serial<P: Ports = PortIo> {
    pub ports: P,
}

impl<P: Ports> Serial<P> {
    /// 8N1, no UART interrupts.
    pub fn init(&mut self) {
        self.ports.outb(COM1 + IER, 0);
        self.ports.outb(COM1 + LCR, LCR_8N1);
    }

    pub fn put(&mut self, b: u8) {
        let mut spins = 0u32;
        while self.ports.inb(COM1 + LSR) & LSR_THRE == 0 && spins < 1_000_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        self.ports.outb(COM1 + THR, b);
    }
}

impl<P: Ports> core::fmt::Write for Serial<P> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            self.put(b);
        }
        Ok(())
    }
}
