//! Guest runs: one boot and its events (`guest`), what differs per guest
//! kind (`guests`), and how busy the host was meanwhile (`load`).

pub mod guest;
pub mod guests;
pub mod load;
