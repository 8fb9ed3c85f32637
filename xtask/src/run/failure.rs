//! A boot that did not give results: what went wrong, as a value the
//! campaign keeps with its evidence and goes on from, put into words in
//! one place (`BootFailure::what` and its `Display`).

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::accel::Accel;

/// How a boot failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// QEMU exited with `status` before the guest printed anything (e.g.
    /// "aio=native was specified, but is not supported").
    Refused { status: i32 },
    /// QEMU was killed by `signal`.
    Crashed { signal: i32 },
    /// Nothing on the console within the first-output bound.
    Silent { waited: Duration },
    /// The guest printed but did not report within the boot's deadline.
    Unfinished { deadline: Duration },
    /// QEMU exited without a valid isa-debug-exit mark (`contract::exit`).
    BadExit { why: String },
    /// The guest's KTAP has a `Bail out!` line (`reason`, what follows it):
    /// the probe's CPU exception, a selftest that could not go on.
    BailedOut { reason: String },
    /// The guest reported, but its results do not count: unreadable KTAP,
    /// every test skipped, data read back wrong, a disk not found.
    Invalid { why: String },
}

/// What a failed boot leaves to read.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    /// The console log (its first line the QEMU command).
    pub console: PathBuf,
    /// QEMU's stderr.
    pub stderr: PathBuf,
    /// The shell-quoted QEMU command line, to rerun the boot by hand.
    pub command_line: String,
    /// The console's last lines (the guest's output only).
    pub console_tail: String,
    /// QEMU's stderr's last lines.
    pub stderr_tail: String,
}

/// Console lines, and stderr lines, a failure shows.
const CONSOLE_TAIL: usize = 15;
const STDERR_TAIL: usize = 10;

impl Evidence {
    /// Reads a boot's files: the console log whose first line is `# ` and
    /// the QEMU command (as `guest::boot` writes it), and QEMU's stderr.
    pub fn read(console: &Path, stderr: &Path) -> Evidence {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().collect();
        let command_line = match lines.first().and_then(|l| l.strip_prefix("# ")) {
            Some(c) => {
                let c = c.to_string();
                lines.remove(0);
                c
            }
            None => String::new(),
        };
        Evidence {
            console: console.to_path_buf(),
            stderr: stderr.to_path_buf(),
            command_line,
            console_tail: last(&lines, CONSOLE_TAIL),
            stderr_tail: crate::ui::tail(stderr, STDERR_TAIL),
        }
    }
}

/// The words of a guest's `Bail out!` line, wherever it is reported.
pub fn bailed_out(reason: &str) -> String {
    format!("the guest bailed out: {reason}")
}

fn last(lines: &[&str], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "console log {}\n--- QEMU command ---\n{}\n--- last console lines ---\n{}\n--- QEMU stderr ({}) ---\n{}",
            self.console.display(),
            self.command_line,
            self.console_tail,
            self.stderr.display(),
            self.stderr_tail
        )
    }
}

/// One boot that did not give results.
#[derive(Clone, Debug, PartialEq)]
pub struct BootFailure {
    pub label: String,
    pub accel: Accel,
    pub kind: Failure,
    /// Whether the guest printed anything first (a KVM guest that did not
    /// is what sends a run to TCG).
    pub printed: bool,
    pub evidence: Evidence,
}

impl BootFailure {
    /// What went wrong, in a few words: the verdict's line, the KVM
    /// fallback's warning.
    pub fn what(&self) -> String {
        match &self.kind {
            Failure::Refused { status } => format!(
                "QEMU refused to start the guest: it exited ({}) before printing anything: {}",
                ExitStatus::from_raw(status << 8),
                last(&self.evidence.stderr_tail.lines().collect::<Vec<_>>(), 2)
                    .replace('\n', " / ")
            ),
            Failure::Crashed { signal } => format!(
                "QEMU crashed ({}){}",
                ExitStatus::from_raw(*signal),
                if self.printed {
                    " while the guest ran"
                } else {
                    " before the guest printed anything"
                }
            ),
            Failure::Silent { waited } => format!(
                "QEMU never started the guest: it printed nothing in {} s",
                waited.as_secs_f64()
            ),
            Failure::Unfinished { deadline } => {
                format!("the guest did not finish within {deadline:?}")
            }
            // The console log follows in the evidence.
            Failure::BailedOut { reason } => bailed_out(reason),
            Failure::BadExit { why } | Failure::Invalid { why } => why.clone(),
        }
    }
}

impl fmt::Display for BootFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}); {}",
            self.what(),
            self.label,
            self.accel.name(),
            self.evidence
        )
    }
}

impl std::error::Error for BootFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: Failure, printed: bool) -> BootFailure {
        BootFailure {
            label: "patched-r1".into(),
            accel: Accel::Tcg,
            kind,
            printed,
            evidence: Evidence {
                console: "/runs/console-patched-r1.log".into(),
                stderr: "/runs/qemu-patched-r1.stderr".into(),
                command_line: "/q/qemu-system-x86_64 -machine q35,accel=tcg".into(),
                console_tail: "KTAP version 1\n1..6".into(),
                stderr_tail:
                    "warning: a\nwarning: b\nqemu: aio=native was specified, but is not supported"
                        .into(),
            },
        }
    }

    #[test]
    fn each_failure_says_what_went_wrong() {
        let what = |k, printed| failure(k, printed).what();
        assert_eq!(
            what(Failure::Refused { status: 1 }, false),
            "QEMU refused to start the guest: it exited (exit status: 1) before printing anything: warning: b / qemu: aio=native was specified, but is not supported"
        );
        assert_eq!(
            what(Failure::Crashed { signal: 11 }, true),
            "QEMU crashed (signal: 11 (SIGSEGV)) while the guest ran"
        );
        assert_eq!(
            what(
                Failure::Silent {
                    waited: Duration::from_secs(3)
                },
                false
            ),
            "QEMU never started the guest: it printed nothing in 3 s"
        );
        assert_eq!(
            what(
                Failure::Silent {
                    waited: Duration::from_millis(300)
                },
                false
            ),
            "QEMU never started the guest: it printed nothing in 0.3 s"
        );
        assert_eq!(
            what(
                Failure::Unfinished {
                    deadline: Duration::from_secs(90)
                },
                true
            ),
            "the guest did not finish within 90s"
        );
        // A guest that bailed out: its line quoted (its console log
        // follows in the evidence).
        assert_eq!(
            what(
                Failure::BailedOut {
                    reason: "cpu exception 14 (#PF) error 0x2 at rip 0x102a3c cr2 0x4000000000"
                        .into()
                },
                true
            ),
            "the guest bailed out: cpu exception 14 (#PF) error 0x2 at rip 0x102a3c cr2 0x4000000000"
        );
        // The whole text: the words, the boot, and what to read.
        let e = failure(
            Failure::BadExit {
                why: "the guest powered off without reporting a result".into(),
            },
            true,
        )
        .to_string();
        assert_eq!(
            e,
            "the guest powered off without reporting a result (patched-r1, tcg); console log /runs/console-patched-r1.log\n\
             --- QEMU command ---\n/q/qemu-system-x86_64 -machine q35,accel=tcg\n\
             --- last console lines ---\nKTAP version 1\n1..6\n\
             --- QEMU stderr (/runs/qemu-patched-r1.stderr) ---\nwarning: a\nwarning: b\nqemu: aio=native was specified, but is not supported"
        );
    }

    #[test]
    fn evidence_keeps_the_command_apart_from_the_console() {
        let t = tempfile::tempdir().unwrap();
        let console = t.path().join("console.log");
        let stderr = t.path().join("qemu.stderr");
        let mut text = "# /q/qemu -machine 'q35,accel=tcg'\n".to_string();
        for i in 1..=20 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&console, text).unwrap();
        std::fs::write(&stderr, "qemu: bad\n").unwrap();
        let e = Evidence::read(&console, &stderr);
        assert_eq!(e.command_line, "/q/qemu -machine 'q35,accel=tcg'");
        assert_eq!(e.console_tail.lines().count(), CONSOLE_TAIL);
        assert!(e.console_tail.starts_with("line 6\n") && e.console_tail.ends_with("line 20"));
        assert_eq!(e.stderr_tail, "qemu: bad");
        // A boot that never got as far as its log.
        let none = Evidence::read(&t.path().join("absent.log"), &stderr);
        assert_eq!(
            (none.command_line.as_str(), none.console_tail.as_str()),
            ("", "")
        );
    }
}
