//! The bare-metal probe guest: booted by QEMU as `-bios probe.bin` on q35,
//! it stops every guest timer, drives AHCI, IDE, virtio-blk, virtio-scsi,
//! MegaRAID SAS (MFI) and NVMe controllers itself by polling with interrupts off, times each
//! request on the TSC and prints the Linux selftest's KTAP and JSON
//! records. With no guest timer armed, only QEMU's own timers wake its main
//! loop, as under KVM: an io_uring SQE queued from the vCPU thread then
//! waits the full main-loop cycle (~499 ms with user networking) on an
//! unfixed QEMU 10.2.
//!
//! Everything but the entry code, panic handler, allocator and mem*
//! functions (src/main.rs, the `image` feature) is here, and testable on
//! the host against fake registers, ports and memory.

#![cfg_attr(not(test), no_std)]
extern crate alloc;

pub mod ahci;
pub mod ata;
pub mod disk;
pub mod fwcfg;
pub mod hw;
pub mod ide;
pub mod machine;
pub mod megasas;
pub mod nvme;
pub mod pci;
pub mod run;
pub mod serial;
pub mod timers;
pub mod traps;
pub mod virtio;
pub mod virtio_scsi;
