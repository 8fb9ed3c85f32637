//! Test parameters, from command-line flags on a host or from
//! `uring_idle.*` words on the kernel command line in a guest.

use anyhow::{bail, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Submit and wait for the completion inside `io_uring_enter`.
    Sleep,
    /// Submit, then spin on the CQ ring without system calls.
    Poll,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sleep => "sleep",
            Mode::Poll => "poll",
        }
    }
}

/// Parses `sleep`, `poll` or `both`.
pub fn parse_modes(s: &str) -> Result<Vec<Mode>> {
    Ok(match s {
        "sleep" => vec![Mode::Sleep],
        "poll" => vec![Mode::Poll],
        "both" => vec![Mode::Sleep, Mode::Poll],
        _ => bail!("mode must be sleep, poll or both, not {s:?}"),
    })
}

/// How the idle time between I/Os is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Think {
    /// nanosleep: the CPU idles. Without high-resolution timers the sleep
    /// ends on a timer tick, so every I/O starts right after one.
    Sleep,
    /// Spin on CLOCK_MONOTONIC: the I/O starts at a phase unrelated to the
    /// timer tick.
    Spin,
}

impl Think {
    pub fn parse(s: &str) -> Result<Think> {
        match s {
            "sleep" => Ok(Think::Sleep),
            "spin" => Ok(Think::Spin),
            _ => bail!("think must be sleep or spin, not {s:?}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Think::Sleep => "sleep",
            Think::Spin => "spin",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Measured I/Os per device and mode.
    pub iterations: u32,
    /// I/Os issued and discarded before measuring (page-table, cache and
    /// device warm-up on the host side).
    pub warmup: u32,
    /// Idle time between I/Os: the stall needs an idle main loop to show.
    pub think_us: u64,
    pub think: Think,
    pub modes: Vec<Mode>,
    /// A test fails when its p99 exceeds this.
    pub max_p99_ms: f64,
    /// Write a pattern and read it back (scratch devices only).
    pub write_check: bool,
    /// Blocks written and verified by the write check.
    pub write_blocks: u32,
    /// Guest only: how many disks to wait for before starting.
    pub expect_devices: usize,
    /// Guest only: how long to wait for them.
    pub settle_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            iterations: 200,
            warmup: 10,
            think_us: 2000,
            think: Think::Sleep,
            modes: vec![Mode::Sleep],
            max_p99_ms: 50.0,
            write_check: false,
            write_blocks: 32,
            expect_devices: 0,
            settle_ms: 10_000,
        }
    }
}

pub const CMDLINE_PREFIX: &str = "uring_idle.";

impl Params {
    /// Reads `uring_idle.KEY=VALUE` words from a kernel command line; other
    /// words are the kernel's and are ignored. Unknown keys are errors, so a
    /// typo never silently measures with defaults.
    pub fn from_cmdline(cmdline: &str) -> Result<Params> {
        let mut p = Params::default();
        for word in cmdline.split_whitespace() {
            let Some(kv) = word.strip_prefix(CMDLINE_PREFIX) else {
                continue;
            };
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("{word}: expected {CMDLINE_PREFIX}KEY=VALUE"))?;
            let ctx = || format!("kernel command line {word}");
            match k {
                "iterations" => p.iterations = v.parse().with_context(ctx)?,
                "warmup" => p.warmup = v.parse().with_context(ctx)?,
                "think_us" => p.think_us = v.parse().with_context(ctx)?,
                "mode" => p.modes = parse_modes(v).with_context(ctx)?,
                "think" => p.think = Think::parse(v).with_context(ctx)?,
                "max_p99_ms" => p.max_p99_ms = v.parse().with_context(ctx)?,
                "write" => p.write_check = parse_bool(v).with_context(ctx)?,
                "write_blocks" => p.write_blocks = v.parse().with_context(ctx)?,
                "expect" => p.expect_devices = v.parse().with_context(ctx)?,
                "settle_ms" => p.settle_ms = v.parse().with_context(ctx)?,
                _ => bail!("unknown parameter {word} (known: iterations, warmup, think_us, think, mode, max_p99_ms, write, write_blocks, expect, settle_ms)"),
            }
        }
        p.validate()?;
        Ok(p)
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
        Ok(())
    }
}

fn parse_bool(v: &str) -> Result<bool> {
    match v {
        "1" | "y" | "yes" | "true" | "on" => Ok(true),
        "0" | "n" | "no" | "false" | "off" => Ok(false),
        _ => bail!("expected 1/0, yes/no, true/false, not {v:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_words_override_defaults_and_kernel_words_are_ignored() {
        let p = Params::from_cmdline(
            "console=ttyS0 quiet uring_idle.iterations=150 uring_idle.mode=both \
             uring_idle.think_us=500 uring_idle.think=spin uring_idle.write=1 uring_idle.expect=3 panic=-1",
        )
        .unwrap();
        assert_eq!(p.iterations, 150);
        assert_eq!(p.modes, vec![Mode::Sleep, Mode::Poll]);
        assert_eq!(p.think_us, 500);
        assert_eq!(p.think, Think::Spin);
        assert!(p.write_check);
        assert_eq!(p.expect_devices, 3);
        assert_eq!(p.warmup, Params::default().warmup);
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
        assert!(format!("{e:#}").contains("uring_idle.iteration=5"), "{e:#}");
        let e = Params::from_cmdline("uring_idle.iterations=many").unwrap_err();
        assert!(
            format!("{e:#}").contains("uring_idle.iterations=many"),
            "{e:#}"
        );
        let e = Params::from_cmdline("uring_idle.mode=spin").unwrap_err();
        assert!(format!("{e:#}").contains("sleep, poll or both"), "{e:#}");
        assert!(Params::from_cmdline("uring_idle.iterations=0").is_err());
        assert!(Params::from_cmdline("uring_idle.max_p99_ms=-1").is_err());
        assert!(Params::from_cmdline("uring_idle.write").is_err());
        assert!(Params::from_cmdline("uring_idle.think=nap").is_err());
    }
}
