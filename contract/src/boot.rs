//! How the guest's boot went, from `/init`'s side: one JSON line after the
//! KTAP header. The host adds what only it sees (QEMU start, firmware and
//! the kernel's decompression) by subtracting `header_ms` from the moment
//! the header reached the console.

#[allow(unused_imports)]
use crate::prelude::*;
use serde::{Deserialize, Serialize};

pub const BOOT_PREFIX: &str = "# uring-idle-boot: ";

/// Milliseconds on CLOCK_BOOTTIME, which starts when the kernel sets up its
/// timekeeping, a few ms after it starts: those few ms land in the host's
/// share (QEMU, firmware, decompression).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BootPhases {
    /// The kernel's own start-up, up to `/init`'s first instruction.
    pub kernel_ms: f64,
    /// Mounting proc, sys and devtmpfs, reading the command line.
    pub mounts_ms: f64,
    /// Loading the modules of the module list (a distro kernel's drivers).
    pub modules_ms: f64,
    /// Waiting for every requested controller's disk to appear.
    pub disks_ms: f64,
    /// When the KTAP header was printed.
    pub header_ms: f64,
    /// The kernel's clocksource: every latency is measured on it.
    pub clocksource: String,
}

impl BootPhases {
    pub fn line(&self) -> String {
        crate::json_line(BOOT_PREFIX, self)
    }

    pub fn find_in(line: &str) -> Option<Result<BootPhases, serde_json::Error>> {
        crate::find_json(BOOT_PREFIX, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_console_line() {
        let b = BootPhases {
            kernel_ms: 812.5,
            mounts_ms: 1.25,
            modules_ms: 0.0,
            disks_ms: 301.0,
            header_ms: 1115.0,
            clocksource: "tsc".into(),
        };
        let line = format!("[    1.2] noise {}", b.line());
        assert_eq!(BootPhases::find_in(&line).unwrap().unwrap(), b);
        assert!(BootPhases::find_in("KTAP version 1").is_none());
    }
}
