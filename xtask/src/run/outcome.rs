//! What a guest run records about itself: one boot (`GuestRun`), its host
//! trace (`HostRun`, `HostDisk`), and a requested controller it did not
//! measure (`Skipped`). The report carries them as they are
//! (`report::Report::guest_runs`, `skipped`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use contract::Guest;
use serde::{Deserialize, Serialize};

use crate::accel::Accel;

/// Reports written before the probe guest existed are the Linux guest's.
fn linux() -> Guest {
    Guest::Linux
}

/// A requested controller that was not measured, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub controller: String,
    pub reason: String,
    /// The guest that could not drive it; none when no guest could (the
    /// QEMU binary lacks the device).
    #[serde(default)]
    pub guest: Option<Guest>,
}

/// One disk's requests in one run's host trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostDisk {
    pub controller: String,
    /// Reads before the selftest's (partition scans at boot).
    pub boot_requests: usize,
    /// Measured reads matched to the guest's, all modes.
    pub measured: usize,
    /// Writes, flush and read-back of the integrity check.
    pub write_phase: usize,
    /// Whether the counts matched the guest's plan.
    pub matched: bool,
}

/// What one run's host trace held.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostRun {
    /// SQEs queued whose completion the log never shows.
    pub unfinished: usize,
    /// Which controller's image each of QEMU's file descriptors opened.
    pub fds: BTreeMap<i32, String>,
    pub disks: Vec<HostDisk>,
}

/// One boot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuestRun {
    /// Which guest booted.
    #[serde(default = "linux")]
    pub guest: Guest,
    /// Its network (`--netdev`, or the guest kind's default).
    #[serde(default)]
    pub netdev: String,
    pub label: String,
    pub variant: String,
    pub round: u32,
    pub accel: Accel,
    /// When the boot started (Unix time; the KVM probe, if any, included).
    #[serde(default)]
    pub started_unix_s: f64,
    pub wall_s: f64,
    pub boot_to_ktap_s: Option<f64>,
    pub guest_exit: i32,
    pub console_log: PathBuf,
    /// QEMU's trace log of this boot, when traced.
    #[serde(default)]
    pub trace_log: Option<PathBuf>,
    #[serde(default)]
    pub host: Option<HostRun>,
    /// Where the boot's time went, when the guest said (our `/init`).
    #[serde(default)]
    pub boot: Option<crate::guest::BootReport>,
    /// Other processes' share of the machine's CPU during the boot, 0 to 1
    /// (QEMU and this run left out), when it could be read.
    #[serde(default)]
    pub host_busy: Option<f64>,
    /// The nice value QEMU ran at (`guest::QEMU_NICE` where allowed).
    #[serde(default)]
    pub qemu_nice: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_boot_record_reads_as_the_linux_guests() {
        // Written before the probe guest, the network and the host trace.
        let old = r#"{"label":"baseline-r1","variant":"baseline","round":1,"accel":"tcg",
            "wall_s":12.5,"boot_to_ktap_s":1.5,"guest_exit":0,"console_log":"/r/c.log"}"#;
        let r: GuestRun = serde_json::from_str(old).unwrap();
        assert_eq!((r.guest, r.netdev.as_str()), (Guest::Linux, ""));
        assert!(r.host.is_none() && r.trace_log.is_none());
        // Written back, every field is named, in declaration order.
        let back = serde_json::to_string(&r).unwrap();
        assert!(
            back.starts_with(r#"{"guest":"linux","netdev":"","label":"baseline-r1","#),
            "{back}"
        );
        let s: Skipped = serde_json::from_str(r#"{"controller":"ide","reason":"x"}"#).unwrap();
        assert_eq!(s.guest, None);
    }
}
