//! Builds, each cached by its inputs: QEMU (`qemu`), the guest kernel
//! (`kernel`) and its patched variants (`kernel_variant`), the selftest
//! (`selftest`) and its initramfs (`initramfs`), the probe's image
//! (`probe_image`).

pub mod at_once;
pub mod initramfs;
pub mod kernel;
pub mod kernel_variant;
pub mod probe_image;
pub mod qemu;
pub mod selftest;
pub mod shipped;
pub mod variants;
