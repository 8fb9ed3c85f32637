//! cargo xtask: check a QEMU tree for the io_uring submission-stall fix,
//! build, boot, measure and report. Modules by role, in the order data
//! flows: inputs (`source`, `fetch`, `tree`, `patch`), builds (`qemu`,
//! `kernel`, `selftest`, `initramfs`, `probe_image`), guest runs (`guest`; `guests` holds what differs per guest kind), parsed results
//! (`ktap`, `trace`), output (`report`, `plot`); `pipeline` wires them; `cache`, `ui` and
//! `deps` serve all. The binary (`main.rs`) only parses flags and dispatches.

/// The workspace's root: the checkout this xtask was built from.
pub fn workspace() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub mod bench;
pub mod build_qemu;
pub mod cache;
pub mod check;
pub mod children;
pub mod ci;
pub mod deps;
pub mod fetch;
pub mod guest;
pub mod guests;
pub mod initramfs;
pub mod kernel;
pub mod kselftest_install;
pub mod ktap;
pub mod patch;
pub mod pipeline;
pub mod plot;
pub mod probe_image;
pub mod qemu;
pub mod report;
pub mod selftest;
pub mod source;
pub mod trace;
pub mod tree;
pub mod ui;
