//! What happens during guest runs, as plain data for whoever displays it
//! (`ui::GuestDisplay`): running and showing never mix, and the display
//! needs nothing from the run stage.

use std::time::Duration;

#[derive(Debug)]
pub enum Event<'a> {
    /// QEMU is starting for run `label` under accelerator `accel` (its name).
    BootStarted { label: &'a str, accel: &'a str },
    /// A line the guest printed on its console.
    Console { label: &'a str, line: &'a str },
    /// KVM could not boot a guest; the run goes on under TCG.
    KvmFallback { why: &'a str },
    /// The guest reported its result: the figures shown for it.
    Finished {
        label: &'a str,
        /// From QEMU's start to its exit.
        wall: Duration,
        /// From QEMU's start to the `KTAP version 1` line.
        to_ktap: Option<Duration>,
        /// Where the boot's time went, one line, when the guest said.
        phases: Option<String>,
        /// The selftest's kselftest code.
        status: i32,
        /// Other processes' share of the machine's CPU, 0 to 1.
        host_busy: Option<f64>,
    },
}

/// Where a guest run sends its events.
pub type Sink<'a> = &'a mut dyn FnMut(Event);
