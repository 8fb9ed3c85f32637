//! Guest runs: one boot and its events (`guest`), what differs per guest
//! kind (`guests`), how busy the host was meanwhile (`load`), and what a
//! boot leaves parsed: the guest's KTAP (`ktap`) and QEMU's trace
//! (`trace`).

pub mod guest;
pub mod guests;
pub mod ktap;
pub mod load;
pub mod trace;
