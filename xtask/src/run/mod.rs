//! Guest runs: one boot and its events (`guest`), what differs per guest
//! kind (`guests`), how busy the host was meanwhile (`load`), what a boot
//! leaves parsed: the guest's KTAP (`ktap`) and QEMU's trace (`trace`),
//! and what it records of itself (`outcome`).

pub mod accel;
pub mod failure;
pub mod guest;
pub mod guests;
pub mod ktap;
pub mod load;
pub mod outcome;
pub mod qemu_args;
pub mod trace;
