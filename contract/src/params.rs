//! What the host asks the guest to measure: one struct, written on the
//! kernel command line as `uring_idle.KEY=VALUE` words by the xtask and read
//! back by the selftest's `/init` (or filled from flags on a host).

#[allow(unused_imports)]
use crate::prelude::*;
use crate::{bail, Error, Result};

/// Declares a unit enum with its text names: `NAMES`, `name()`, `FromStr`.
macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $v),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            pub const NAMES: &'static [&'static str] = &[$($s),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl core::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<$name> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => bail!("{} must be {}, not {s:?}", stringify!($name).to_lowercase(), $name::NAMES.join(" or ")),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
pub(crate) use named_enum;

named_enum!(
    /// How the selftest waits for a completion.
    Mode {
        /// Submit and wait for the completion inside `io_uring_enter`.
        Sleep = "sleep",
        /// Submit, then spin on the CQ ring without system calls.
        Poll = "poll",
    }
);

named_enum!(
    /// Which wait modes a run measures.
    ModeSet {
        Sleep = "sleep",
        Poll = "poll",
        Both = "both",
    }
);

impl ModeSet {
    pub fn modes(self) -> &'static [Mode] {
        match self {
            ModeSet::Sleep => &[Mode::Sleep],
            ModeSet::Poll => &[Mode::Poll],
            ModeSet::Both => &[Mode::Sleep, Mode::Poll],
        }
    }
}

named_enum!(
    /// How the idle time before each I/O is spent.
    Think {
        /// nanosleep: the CPU idles. Without high-resolution timers the sleep
        /// ends on a timer tick, so every I/O starts right after one.
        Sleep = "sleep",
        /// Spin on CLOCK_MONOTONIC: the CPU stays busy, so the I/O starts
        /// exactly the think time after the previous completion.
        Spin = "spin",
    }
);

named_enum!(
    /// What the selftest does on each disk.
    Workload {
        /// One 4 KiB read in flight, after a think time: the latency of each.
        Latency = "latency",
        /// The report's reproducer: 128 KiB reads in batches of 16, a 1 ms
        /// sleep before each batch submit and after each completion.
        Batch = "batch",
        /// Probe guest: one 8-sector write, a think time, then a flush
        /// (the controller's cache flush command), the flush alone timed.
        /// QEMU skips a flush with nothing written since the last, so each
        /// flush follows a write.
        Flush = "flush",
        /// Probe guest: reads as in `latency` while a neighbour disk (the
        /// first control row among the run's disks) keeps one read in
        /// flight back to back, polled between the candidate's polls: the
        /// stall a machine that is not idle shows. Each candidate is
        /// measured alone first, then beside the neighbour, in one boot.
        Neighbour = "neighbour",
    }
);

// The macro's derive list is every named enum's; only this one has a default.
#[allow(clippy::derivable_impls)]
impl Default for Workload {
    fn default() -> Workload {
        Workload::Latency
    }
}

impl Workload {
    pub fn is_latency(&self) -> bool {
        *self == Workload::Latency
    }

    /// Whether `guest` can run it: the Linux selftest runs `latency` and
    /// `batch`; the flush and neighbour workloads are the probe's.
    pub fn runs_on(self, guest: Guest) -> bool {
        match self {
            Workload::Latency | Workload::Batch => true,
            Workload::Flush | Workload::Neighbour => guest == Guest::Probe,
        }
    }

    /// The words a row, table or finding adds to name it: none for
    /// `latency` (the default) and `batch` (whose rows have tables of
    /// their own).
    pub fn tag(self) -> Option<&'static str> {
        match self {
            Workload::Latency | Workload::Batch => None,
            w => Some(w.name()),
        }
    }
}

named_enum!(
    /// Which guest runs the measurement: the same contract, two programs.
    Guest {
        /// A Linux kernel with the static selftest as `/init`: the stall as a
        /// real guest's io_uring sees it. Its timer tick wakes QEMU's main
        /// loop under TCG, which bounds the stall to the tick.
        Linux = "linux",
        /// The bare-metal probe (`probe/`): drives the controller itself by
        /// polling, with every timer off, so only QEMU's own timers wake its
        /// main loop, as under KVM.
        Probe = "probe",
    }
);

named_enum!(
    /// Which guests a run boots.
    GuestSet {
        Linux = "linux",
        Probe = "probe",
        Both = "both",
    }
);

impl GuestSet {
    pub fn guests(self) -> &'static [Guest] {
        match self {
            GuestSet::Linux => &[Guest::Linux],
            GuestSet::Probe => &[Guest::Probe],
            // The probe first: its full-size figure leads the report.
            GuestSet::Both => &[Guest::Probe, Guest::Linux],
        }
    }
}

named_enum!(
    /// Probe guest, for debugging: a CPU exception it raises on purpose
    /// after reading its parameters, before it touches the first disk, to
    /// show that its exception handlers report and exit.
    Fault {
        /// None: the normal run.
        None = "none",
        /// Invalid opcode (`ud2`): vector 6.
        InvalidOpcode = "ud",
        /// A write to an unmapped address: vector 14.
        PageFault = "pf",
        /// Division by zero: vector 0.
        DivideError = "de",
        /// An exception whose delivery faults twice (the stack pointer is
        /// unmapped): vector 8, handled on its own stack.
        DoubleFault = "df",
    }
);

/// The fw_cfg file the probe guest reads its parameters from: the same
/// words as the kernel command line's.
pub const FW_CFG_FILE: &str = "opt/uring-idle/params";

/// Prefix of every word of ours on the kernel command line.
pub const CMDLINE_PREFIX: &str = "uring_idle.";

#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Measured I/Os per device and mode.
    pub iterations: u32,
    /// I/Os issued and discarded before measuring (page-table, cache and
    /// device warm-up on the host side). Measured with none discarded, under
    /// TCG: the first 1-3 reads of each device and mode are slow (AHCI
    /// 17.8 ms against 8.0 ms, virtio-blk poll 0.9-1.3 ms against 0.3 ms),
    /// the rest settle; 5 leaves room above that.
    pub warmup: u32,
    /// Idle time between I/Os: the stall needs an idle main loop to show.
    pub think_us: u64,
    pub think: Think,
    pub modes: ModeSet,
    /// A test fails when its p99 exceeds this.
    pub max_p99_ms: f64,
    /// Write a pattern and read it back (scratch devices only).
    pub write_check: bool,
    /// Blocks written and verified by the write check.
    pub write_blocks: u32,
    /// Guest only: the controller-table rows whose disks must all be found
    /// (empty: measure whatever disks there are).
    pub controllers: Vec<String>,
    /// Guest only: how long to wait for them.
    pub settle_ms: u64,
    pub workload: Workload,
    /// Batch workload: MiB read per device and mode.
    pub total_mb: u32,
    /// Batch workload: KiB per read.
    pub chunk_kb: u32,
    /// Batch workload: reads submitted together.
    pub batch: u32,
    /// Batch workload: idle time before each batch is submitted, µs.
    pub submit_sleep_us: u64,
    /// Batch workload: idle time after each completion is processed, µs.
    pub completion_sleep_us: u64,
    /// Latency workload: stop a test once its measured loop has run this
    /// long (ms) with at least `BUDGET_MIN_SAMPLES` samples; 0: no budget.
    /// Under KVM an unfixed request can take ~0.5 s.
    pub budget_ms: u64,
    /// Probe guest: a request not complete after this long (ms) has no
    /// wake-up coming (no networking: QEMU's main loop sleeps without a
    /// timeout), so the probe wakes the main loop itself with a PIT one-shot
    /// and records that the request completed only after that wake.
    pub deadline_ms: u64,
    /// Probe guest: the TSC's rate in kHz when the host knows it (under TCG
    /// the guest's TSC is the host's); 0: the probe calibrates it against
    /// the PIT. The Linux guest gets it as `tsc_early_khz` instead.
    pub tsc_khz: u64,
    /// Probe guest, for debugging: an exception to raise on purpose (the
    /// Linux selftest ignores it). Written only when set.
    pub fault: Fault,
}

/// Samples a test keeps even past its time budget: enough for a p50.
pub const BUDGET_MIN_SAMPLES: usize = 10;

impl Default for Params {
    fn default() -> Self {
        Params {
            iterations: 200,
            warmup: 5,
            think_us: 2000,
            think: Think::Sleep,
            modes: ModeSet::Sleep,
            max_p99_ms: 50.0,
            write_check: false,
            write_blocks: 32,
            controllers: vec![],
            settle_ms: 10_000,
            workload: Workload::Latency,
            total_mb: 128,
            chunk_kb: 128,
            batch: 16,
            submit_sleep_us: 1000,
            completion_sleep_us: 1000,
            budget_ms: 0,
            deadline_ms: 5000,
            tsc_khz: 0,
            fault: Fault::None,
        }
    }
}

fn parse_bool(v: &str) -> Result<bool> {
    match v {
        "1" | "y" | "yes" | "true" | "on" => Ok(true),
        "0" | "n" | "no" | "false" | "off" => Ok(false),
        _ => bail!("expected 1/0, yes/no, true/false, not {v:?}"),
    }
}

fn num<T: core::str::FromStr>(v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error(format!("{v:?} is not a valid number")))
}

/// The keys, in the order `to_cmdline` writes them.
const KEYS: &[&str] = &[
    "iterations",
    "warmup",
    "think_us",
    "think",
    "mode",
    "max_p99_ms",
    "write",
    "write_blocks",
    "controllers",
    "settle_ms",
    "workload",
    "total_mb",
    "chunk_kb",
    "batch",
    "submit_sleep_us",
    "completion_sleep_us",
    "budget_ms",
    "deadline_ms",
    "tsc_khz",
    "fault",
];

impl Params {
    /// The `uring_idle.KEY=VALUE` words for a kernel command line, every key
    /// written so the guest never falls back to a default silently; but the
    /// debugging `fault`, only when set, so normal runs' words stay as they
    /// were.
    pub fn to_cmdline(&self) -> Vec<String> {
        let values = [
            self.iterations.to_string(),
            self.warmup.to_string(),
            self.think_us.to_string(),
            self.think.name().to_string(),
            self.modes.name().to_string(),
            self.max_p99_ms.to_string(),
            u8::from(self.write_check).to_string(),
            self.write_blocks.to_string(),
            self.controllers.join(","),
            self.settle_ms.to_string(),
            self.workload.name().to_string(),
            self.total_mb.to_string(),
            self.chunk_kb.to_string(),
            self.batch.to_string(),
            self.submit_sleep_us.to_string(),
            self.completion_sleep_us.to_string(),
            self.budget_ms.to_string(),
            self.deadline_ms.to_string(),
            self.tsc_khz.to_string(),
            self.fault.name().to_string(),
        ];
        KEYS.iter()
            .zip(values)
            .filter(|(k, _)| **k != "fault" || self.fault != Fault::None)
            .map(|(k, v)| format!("{CMDLINE_PREFIX}{k}={v}"))
            .collect()
    }

    /// Reads `uring_idle.KEY=VALUE` words from a kernel command line; other
    /// words are the kernel's and are ignored. Unknown keys are errors, so a
    /// typo never silently measures with defaults.
    pub fn from_cmdline(cmdline: &str) -> Result<Params> {
        let mut p = Params::default();
        for word in cmdline.split_whitespace() {
            let Some(kv) = word.strip_prefix(CMDLINE_PREFIX) else {
                continue;
            };
            let Some((k, v)) = kv.split_once('=') else {
                bail!("{word}: expected {CMDLINE_PREFIX}KEY=VALUE");
            };
            p.set(k, v).map_err(|e| {
                if KEYS.contains(&k) {
                    Error(format!("kernel command line {word}: {e}"))
                } else {
                    e
                }
            })?;
        }
        p.validate()?;
        Ok(p)
    }

    fn set(&mut self, k: &str, v: &str) -> Result<()> {
        match k {
            "iterations" => self.iterations = num(v)?,
            "warmup" => self.warmup = num(v)?,
            "think_us" => self.think_us = num(v)?,
            "think" => self.think = v.parse()?,
            "mode" => self.modes = v.parse()?,
            "max_p99_ms" => self.max_p99_ms = num(v)?,
            "write" => self.write_check = parse_bool(v)?,
            "write_blocks" => self.write_blocks = num(v)?,
            "controllers" => {
                self.controllers = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                for c in &self.controllers {
                    crate::controllers::by_name(c)?;
                }
            }
            "settle_ms" => self.settle_ms = num(v)?,
            "workload" => self.workload = v.parse()?,
            "total_mb" => self.total_mb = num(v)?,
            "chunk_kb" => self.chunk_kb = num(v)?,
            "batch" => self.batch = num(v)?,
            "submit_sleep_us" => self.submit_sleep_us = num(v)?,
            "completion_sleep_us" => self.completion_sleep_us = num(v)?,
            "budget_ms" => self.budget_ms = num(v)?,
            "deadline_ms" => self.deadline_ms = num(v)?,
            "tsc_khz" => self.tsc_khz = num(v)?,
            "fault" => self.fault = v.parse()?,
            _ => bail!(
                "unknown parameter {CMDLINE_PREFIX}{k}={v} (known: {})",
                KEYS.join(", ")
            ),
        }
        Ok(())
    }

    /// Why a latency test stops now, after `n` samples and `spent_ns` of
    /// its measured loop: its time budget is spent and it has the samples
    /// a p50 needs. `None`: it goes on.
    pub fn budget_spent(&self, n: usize, spent_ns: u64) -> Option<String> {
        (self.budget_ms > 0
            && spent_ns > self.budget_ms * 1_000_000
            && n >= BUDGET_MIN_SAMPLES
            && n < self.iterations as usize)
            .then(|| {
                format!(
                    "stopped after {n} of {} I/Os: the {} ms time budget was spent",
                    self.iterations, self.budget_ms
                )
            })
    }

    pub fn validate(&self) -> Result<()> {
        if self.iterations == 0 {
            bail!("iterations must be at least 1");
        }
        if !(self.max_p99_ms.is_finite() && self.max_p99_ms > 0.0) {
            bail!(
                "max_p99_ms must be a positive number, not {}",
                self.max_p99_ms
            );
        }
        if self.write_check && self.write_blocks == 0 {
            bail!("write_blocks must be at least 1 when the write check is on");
        }
        if self.workload == Workload::Batch {
            if self.total_mb == 0 || self.batch == 0 || self.batch > 256 {
                bail!("the batch workload needs total_mb >= 1 and a batch of 1 to 256 reads");
            }
            if self.chunk_kb == 0 || !self.chunk_kb.is_multiple_of(4) || self.chunk_kb > 4096 {
                bail!(
                    "chunk_kb must be a multiple of 4 from 4 to 4096 (O_DIRECT), not {}",
                    self.chunk_kb
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_words_override_defaults_and_kernel_words_are_ignored() {
        let p = Params::from_cmdline(
            "console=ttyS0 quiet uring_idle.iterations=150 uring_idle.mode=both \
             uring_idle.think_us=500 uring_idle.think=spin uring_idle.write=1 \
             uring_idle.controllers=ahci,nvme panic=-1",
        )
        .unwrap();
        assert_eq!(p.iterations, 150);
        assert_eq!(p.modes.modes(), [Mode::Sleep, Mode::Poll]);
        assert_eq!(p.think_us, 500);
        assert_eq!(p.think, Think::Spin);
        assert!(p.write_check);
        assert_eq!(p.controllers, ["ahci", "nvme"]);
        assert_eq!(p.warmup, Params::default().warmup);
    }

    #[test]
    fn to_cmdline_round_trips_every_field() {
        let p = Params {
            iterations: 7,
            warmup: 3,
            think_us: 1234,
            think: Think::Spin,
            modes: ModeSet::Poll,
            max_p99_ms: 12.5,
            write_check: true,
            write_blocks: 9,
            controllers: vec!["ahci".into(), "virtio_blk".into()],
            settle_ms: 777,
            workload: Workload::Batch,
            total_mb: 16,
            chunk_kb: 64,
            batch: 8,
            submit_sleep_us: 500,
            completion_sleep_us: 250,
            budget_ms: 4321,
            deadline_ms: 2500,
            tsc_khz: 2_596_159,
            fault: Fault::PageFault,
        };
        let line = format!("console=ttyS0 {} panic=-1", p.to_cmdline().join(" "));
        assert_eq!(Params::from_cmdline(&line).unwrap(), p);
        // Every key is written, so none falls back to a default.
        assert_eq!(p.to_cmdline().len(), KEYS.len());
        let d = Params::default();
        assert_eq!(Params::from_cmdline(&d.to_cmdline().join(" ")).unwrap(), d);
        // But the debugging fault only when set.
        assert_eq!(d.to_cmdline().len(), KEYS.len() - 1);
        assert!(!d.to_cmdline().iter().any(|w| w.contains("fault")));
    }

    #[test]
    fn the_budget_stops_a_test_only_with_samples_enough() {
        let p = Params {
            iterations: 100,
            budget_ms: 1000,
            ..Params::default()
        };
        assert_eq!(p.budget_spent(50, 900_000_000), None);
        assert_eq!(p.budget_spent(9, 2_000_000_000), None);
        assert_eq!(
            p.budget_spent(10, 2_000_000_000).unwrap(),
            "stopped after 10 of 100 I/Os: the 1000 ms time budget was spent"
        );
        // All asked for already, or no budget: nothing to stop.
        assert_eq!(p.budget_spent(100, 2_000_000_000), None);
        let unbounded = Params { budget_ms: 0, ..p };
        assert_eq!(unbounded.budget_spent(50, u64::MAX), None);
    }

    #[test]
    fn empty_cmdline_gives_defaults() {
        assert_eq!(
            Params::from_cmdline("console=ttyS0").unwrap(),
            Params::default()
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors_naming_the_word() {
        let e = Params::from_cmdline("uring_idle.iteration=5").unwrap_err();
        assert!(e.0.contains("uring_idle.iteration=5"), "{e}");
        let e = Params::from_cmdline("uring_idle.iterations=many").unwrap_err();
        assert!(e.0.contains("uring_idle.iterations=many"), "{e}");
        let e = Params::from_cmdline("uring_idle.mode=spin").unwrap_err();
        assert!(e.0.contains("sleep or poll or both"), "{e}");
        let e = Params::from_cmdline("uring_idle.controllers=ahci,scsi9").unwrap_err();
        assert!(e.0.contains("scsi9") && e.0.contains("nvme"), "{e}");
        assert!(Params::from_cmdline("uring_idle.iterations=0").is_err());
        assert!(Params::from_cmdline("uring_idle.max_p99_ms=-1").is_err());
        assert!(Params::from_cmdline("uring_idle.write").is_err());
        assert!(Params::from_cmdline("uring_idle.think=nap").is_err());
        assert!(Params::from_cmdline("uring_idle.workload=batch uring_idle.chunk_kb=6").is_err());
        assert!(Params::from_cmdline("uring_idle.workload=batch uring_idle.batch=0").is_err());
        assert!(Params::from_cmdline("uring_idle.workload=stream").is_err());
    }

    #[test]
    fn the_fault_parameter_names_an_exception() {
        for (word, fault) in [
            ("ud", Fault::InvalidOpcode),
            ("pf", Fault::PageFault),
            ("de", Fault::DivideError),
            ("df", Fault::DoubleFault),
            ("none", Fault::None),
        ] {
            let p = Params::from_cmdline(&format!("uring_idle.fault={word}")).unwrap();
            assert_eq!(p.fault, fault);
        }
        assert_eq!(Params::default().fault, Fault::None);
        let e = Params::from_cmdline("uring_idle.fault=gp").unwrap_err();
        assert!(
            e.0.contains("uring_idle.fault=gp") && e.0.contains("ud or pf"),
            "{e}"
        );
        let p = Params {
            fault: Fault::InvalidOpcode,
            ..Params::default()
        };
        assert_eq!(p.to_cmdline().last().unwrap(), "uring_idle.fault=ud");
    }

    #[test]
    fn enum_names_parse_back() {
        for m in ModeSet::ALL {
            assert_eq!(m.name().parse::<ModeSet>().unwrap(), *m);
        }
        for t in Think::ALL {
            assert_eq!(t.to_string().parse::<Think>().unwrap(), *t);
        }
        assert_eq!(Mode::NAMES, ["sleep", "poll"]);
    }
}
