//! Guest runs: a plan's boots as typed outcomes (`campaign`), one boot and
//! its events (`guest`), its accelerator (`accel`), QEMU's command line
//! (`qemu_args`), how a boot fails (`failure`), what differs per guest
//! kind (`guests`), how busy the host was meanwhile (`load`), what a boot
//! leaves parsed: the guest's KTAP (`ktap`) and QEMU's trace (`trace`),
//! and what it records of itself (`outcome`).

pub mod accel;
pub mod boots;
pub mod campaign;
pub mod failure;
pub mod guest;
pub mod guests;
pub mod ktap;
pub mod load;
pub mod outcome;
pub mod qemu_args;
pub mod trace;
