//! The guest contract: everything the selftest (in the guest) and the xtask
//! (on the host) must agree on, defined once.
//!
//! - `params`: what the host asks the guest to do, written on the kernel
//!   command line (`to_cmdline`) and read back by `/init` (`from_cmdline`).
//! - `record`: what the guest reports per test, as a JSON line inside KTAP.
//! - `boot`: how long each phase of the guest's boot took, as `/init` saw it.
//! - `exit`: the selftest's verdict carried through QEMU's isa-debug-exit.
//! - `ktap`: the KTAP lines both guests print, and the tally of results.
//! - `plan`: which blocks a guest reads and writes, from a seed.
//! - `config`: the configuration axes a disk runs in (aio, cache, iothread)
//!   and which rows each combination applies to.
//! - `controllers`: every disk controller the tool can attach, with how QEMU
//!   attaches it, what the guest kernel needs for it and how the guest
//!   recognises its disk.
//!
//! `no_std` with `alloc`, so the bare-metal probe guest reads and writes the
//! same types as the Linux selftest.

#![no_std]
extern crate alloc;

use alloc::string::String;

/// What `std`'s prelude would bring, for every module.
mod prelude {
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

pub mod boot;
pub mod config;
pub mod controllers;
pub mod exit;
pub mod ktap;
pub mod params;
pub mod plan;
pub mod record;

pub use boot::{BootPhases, BOOT_PREFIX};
pub use config::Config;
pub use controllers::{Controller, ProbeDriver, Role, CONTROLLERS};
pub use params::{Guest, GuestSet, Mode, ModeSet, Params, Think, Workload, BUDGET_MIN_SAMPLES};
pub use record::{BatchFigures, Neighbour, Record, Stats, JSON_PREFIX};

/// Where `/init` finds the list of modules to load, one absolute path a
/// line, in load order. The xtask writes it into the initramfs.
pub const MODULE_LIST: &str = "/etc/uring-idle/modules";

/// `value` as one JSON line after `prefix`, as the guest prints it inside
/// KTAP (a diagnostic line, so KTAP readers skip it).
pub(crate) fn json_line<T: serde::Serialize>(prefix: &str, value: &T) -> String {
    alloc::format!(
        "{prefix}{}",
        serde_json::to_string(value).expect("contract types always serialize")
    )
}

/// The value after `prefix` on a console line, wherever the prefix starts
/// (kernel messages may precede it on the same line).
pub(crate) fn find_json<T: serde::de::DeserializeOwned>(
    prefix: &str,
    line: &str,
) -> Option<core::result::Result<T, serde_json::Error>> {
    let at = line.find(prefix)?;
    Some(serde_json::from_str(&line[at + prefix.len()..]))
}

/// A parse error in the contract's text forms (command line, names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::Error(alloc::format!($($t)*))) };
}
pub(crate) use bail;
