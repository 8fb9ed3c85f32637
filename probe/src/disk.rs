//! What the workload needs from a driver: queue requests by tag, make them
//! visible to the device in one go, and reap completions by polling.

use alloc::string::String;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
        }
    }
}

/// One request over an identity-mapped, physically contiguous buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub op: Op,
    /// Byte offset on the device (a multiple of 512).
    pub offset: u64,
    /// Buffer address (physical = virtual) and length in bytes.
    pub buf: u64,
    pub len: usize,
    /// Part of a batch in flight together: AHCI uses NCQ for it.
    pub queued: bool,
}

impl Request {
    pub fn read(offset: u64, buf: u64, len: usize) -> Request {
        Request {
            op: Op::Read,
            offset,
            buf,
            len,
            queued: false,
        }
    }
    pub fn write(offset: u64, buf: u64, len: usize) -> Request {
        Request {
            op: Op::Write,
            offset,
            buf,
            len,
            queued: false,
        }
    }
    pub fn flush() -> Request {
        Request {
            op: Op::Flush,
            offset: 0,
            buf: 0,
            len: 0,
            queued: false,
        }
    }
    pub fn sectors(&self) -> u64 {
        self.len as u64 / 512
    }
    pub fn lba(&self) -> u64 {
        self.offset / 512
    }
}

pub type Completion = (usize, Result<(), String>);

pub trait Disk {
    /// Capacity in bytes.
    fn size(&self) -> u64;
    /// Tags usable at once (`0..depth`).
    fn depth(&self) -> usize;
    /// Largest transfer of one request, bytes.
    fn max_transfer(&self) -> usize;
    /// Prepares request `tag`; the device may not see it before `kick`.
    fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String>;
    /// Hands every prepared request to the device.
    fn kick(&mut self) -> Result<(), String>;
    /// One completed request, if any has completed since the last call.
    fn poll(&mut self) -> Option<Completion>;
}
