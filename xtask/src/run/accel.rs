//! The accelerator: KVM when asked or when it boots a guest here, else
//! TCG, decided on the first boot and remembered per host boot when KVM
//! cannot boot a guest.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::event::{Event, Sink};
use crate::failure::BootFailure;
use crate::guest::{self, Boot, Run};
use crate::ui;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM when it boots a guest here, else TCG.
    Auto,
    /// KVM only; an error when /dev/kvm cannot be used.
    Kvm,
    /// Software emulation: slower, but works everywhere.
    Tcg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Picks the accelerator once per pipeline: KVM when asked or when it boots
/// a guest here within a few seconds, else TCG (nested kvm-pvm hosts open
/// /dev/kvm but hang ordinary guests before they print anything).
pub struct AccelPicker {
    decided: Option<Accel>,
    /// The bound on the first console byte of every boot but the KVM probe.
    first_output: Duration,
}

/// A working KVM guest prints its banner (loglevel=6 keeps it) well under a
/// second after start; 3 s leaves room for a loaded host and bounds what
/// the probe costs on hosts where KVM cannot boot a guest.
pub const KVM_FIRST_OUTPUT: Duration = Duration::from_secs(3);

/// The first console byte of every other boot (TCG, or KVM once chosen).
/// The probe guest prints ~0.05 s after QEMU starts and the Linux guest's
/// kernel within about a second under TCG; 10 s leaves room for a loaded
/// host and still names a QEMU that never starts the guest minutes before
/// the boot's deadline would.
pub const FIRST_OUTPUT: Duration = Duration::from_secs(10);

impl AccelPicker {
    pub fn new(choice: AccelChoice) -> Result<AccelPicker> {
        if choice == AccelChoice::Kvm && !kvm_usable() {
            bail!("--accel kvm: /dev/kvm cannot be opened read-write (no KVM here, or no permission); use --accel tcg or auto");
        }
        let decided = match choice {
            AccelChoice::Tcg => Some(Accel::Tcg),
            AccelChoice::Kvm => Some(Accel::Kvm),
            AccelChoice::Auto if !kvm_usable() => {
                ui::info("no usable /dev/kvm: using TCG");
                Some(Accel::Tcg)
            }
            AccelChoice::Auto => match remembered_kvm_failure() {
                Some(why) => {
                    ui::info(&format!("KVM failed earlier since this host booted ({why}): using TCG (--accel kvm forces a retry)"));
                    Some(Accel::Tcg)
                }
                None => None,
            },
        };
        Ok(AccelPicker {
            decided,
            first_output: FIRST_OUTPUT,
        })
    }

    /// Another bound than `FIRST_OUTPUT` on the first console byte (tests).
    pub fn with_first_output(self, first_output: Duration) -> AccelPicker {
        AccelPicker {
            first_output,
            ..self
        }
    }

    pub fn decided(&self) -> Option<Accel> {
        self.decided
    }

    /// Boots with the chosen accelerator, deciding on the first boot: a
    /// KVM guest that never prints (or a QEMU that dies before it does)
    /// sends this boot and every later one to TCG. A guest that fails is a
    /// `BootFailure`, under the accelerator it failed with.
    pub fn boot(
        &mut self,
        b: &Boot,
        label: &str,
        sink: Sink,
    ) -> Result<(Result<Run, BootFailure>, Accel)> {
        if let Some(a) = self.decided {
            return Ok((guest::boot(b, a, self.first_output, label, sink)?, a));
        }
        let failure = match guest::boot(b, Accel::Kvm, KVM_FIRST_OUTPUT, label, sink)? {
            // KVM started the guest: whatever became of it, KVM works.
            Err(f) if f.printed => {
                self.decided = Some(Accel::Kvm);
                return Ok((Err(f), Accel::Kvm));
            }
            Ok(run) => {
                self.decided = Some(Accel::Kvm);
                return Ok((Ok(run), Accel::Kvm));
            }
            Err(f) => f,
        };
        let why = failure.what();
        sink(Event::KvmFallback { why: &why });
        self.decided = Some(Accel::Tcg);
        let run = guest::boot(b, Accel::Tcg, self.first_output, label, sink)?;
        // Only a failure that TCG does not share is KVM's to remember.
        if run.is_ok() {
            remember_kvm_failure(&why);
        }
        Ok((run, Accel::Tcg))
    }
}

/// KVM's usability does not change while the host is up: a failed probe is
/// remembered under the host's boot id, so it costs one boot per host boot.
fn kvm_memo() -> Option<PathBuf> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(
        crate::cache::dir("accel")
            .ok()?
            .join(format!("kvm-unusable-{}", boot_id.trim())),
    )
}

fn remembered_kvm_failure() -> Option<String> {
    std::fs::read_to_string(kvm_memo()?)
        .ok()
        .filter(|s| !s.is_empty())
}

fn remember_kvm_failure(why: &str) {
    if let Some(p) = kvm_memo() {
        let _ = std::fs::write(p, why);
    }
}
