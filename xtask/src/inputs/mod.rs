//! Inputs: where QEMU's and the kernel's sources come from (`source`,
//! `fetch` from Debian's archive), what a QEMU tree holds (`tree`) and the
//! patch sets applied to work copies (`patch`).

pub mod fetch;
pub mod patch;
pub mod source;
pub mod tree;
