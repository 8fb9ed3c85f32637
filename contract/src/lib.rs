//! The guest contract: everything the selftest (in the guest) and the xtask
//! (on the host) must agree on, defined once.
//!
//! - `params`: what the host asks the guest to do, written on the kernel
//!   command line (`to_cmdline`) and read back by `/init` (`from_cmdline`).
//! - `record`: what the guest reports per test, as a JSON line inside KTAP.
//! - `boot`: how long each phase of the guest's boot took, as `/init` saw it.
//! - `exit`: the selftest's verdict carried through QEMU's isa-debug-exit.
//! - `controllers`: every disk controller the tool can attach, with how QEMU
//!   attaches it, what the guest kernel needs for it and how the guest
//!   recognises its disk.

pub mod boot;
pub mod controllers;
pub mod exit;
pub mod params;
pub mod record;

pub use boot::{BootPhases, BOOT_PREFIX};
pub use controllers::{Controller, Role, CONTROLLERS};
pub use params::{Mode, ModeSet, Params, Think, Workload, BUDGET_MIN_SAMPLES};
pub use record::{BatchFigures, Record, Stats, JSON_PREFIX};

/// Where `/init` finds the list of modules to load, one absolute path a
/// line, in load order. The xtask writes it into the initramfs.
pub const MODULE_LIST: &str = "/etc/uring-idle/modules";

/// `value` as one JSON line after `prefix`, as the guest prints it inside
/// KTAP (a diagnostic line, so KTAP readers skip it).
pub(crate) fn json_line<T: serde::Serialize>(prefix: &str, value: &T) -> String {
    format!(
        "{prefix}{}",
        serde_json::to_string(value).expect("contract types always serialize")
    )
}

/// The value after `prefix` on a console line, wherever the prefix starts
/// (kernel messages may precede it on the same line).
pub(crate) fn find_json<T: serde::de::DeserializeOwned>(
    prefix: &str,
    line: &str,
) -> Option<std::result::Result<T, serde_json::Error>> {
    let at = line.find(prefix)?;
    Some(serde_json::from_str(&line[at + prefix.len()..]))
}

/// A parse error in the contract's text forms (command line, names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::Error(format!($($t)*))) };
}
pub(crate) use bail;
