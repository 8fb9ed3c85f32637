//! Inputs: where QEMU's and the kernel's sources come from (`source`,
//! `fetch` from Debian's archive), what a QEMU tree holds (`tree`), the
//! patch sets applied to work copies (`patch`), how the baseline is made
//! (`baseline`) and a matrix file's axes and cells (`matrix_config`).

pub mod baseline;
pub mod deb;
pub mod fetch;
pub mod matrix_config;
pub mod patch;
pub mod source;
pub mod tree;
