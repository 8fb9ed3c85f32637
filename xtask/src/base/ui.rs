//! What the user sees while long steps run: stage lines, a progress line
//! that updates in place on a terminal (plain lines otherwise), and a runner
//! for long commands whose full output goes to a log file.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Every bar on a terminal belongs to this one: the kernel's compile runs
/// in its own thread while this one prints the selftest's and QEMU's lines,
/// and a line printed past a bar would tear it.
fn bars() -> &'static indicatif::MultiProgress {
    static BARS: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    BARS.get_or_init(indicatif::MultiProgress::new)
}

/// One line on stderr, above any bars.
fn say(line: &str) {
    if is_tty() {
        bars().suspend(|| eprintln!("{line}"));
    } else {
        eprintln!("{line}");
    }
}

/// A stage heading, e.g. `==> building QEMU (baseline)`.
pub fn stage(msg: &str) {
    say(&format!("==> {msg}"));
}

/// A detail under the current stage.
pub fn info(msg: &str) {
    say(&format!("    {msg}"));
}

pub fn warn(msg: &str) {
    say(&format!("warning: {msg}"));
}

/// Shows what guest runs report: each boot's start, each KTAP result as it
/// comes (the console itself goes to the run's log file) with a bar over
/// the boot's planned tests on a terminal, the fallback from KVM, and the
/// run's figures.
#[derive(Default)]
pub struct GuestDisplay {
    progress: Option<Progress>,
    plan: u64,
}

impl GuestDisplay {
    pub fn event(&mut self, e: crate::event::Event) {
        use crate::event::Event;
        match e {
            Event::BootStarted { label, accel } => {
                self.progress = None;
                stage(&format!("guest run {label} ({accel})"));
                self.progress = Some(Progress::new(&format!("{label} tests")));
                self.plan = 0;
            }
            Event::Console { label, line } => {
                if let Some(n) = line.strip_prefix("1..").and_then(|n| n.trim().parse().ok()) {
                    self.plan = n;
                }
                let result = line.starts_with("ok ") || line.starts_with("not ok ");
                if result || line.starts_with("Bail out!") {
                    let text =
                        format!("    [{label}] {}", line.split(" # ").next().unwrap_or(line));
                    say(&text);
                }
                if let (true, Some(p)) = (result, &mut self.progress) {
                    let n: u64 = line
                        .trim_start_matches("not ")
                        .trim_start_matches("ok ")
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    if self.plan > 0 && p.bar.is_some() {
                        p.update(n, self.plan);
                    }
                }
            }
            Event::KvmFallback { why } => warn(&format!(
                "under KVM, {why} (nested or restricted KVM, e.g. kvm-pvm): falling back to TCG"
            )),
            Event::Finished {
                label,
                wall,
                to_ktap,
                phases,
                status,
                host_busy,
            } => {
                self.progress = None;
                let phases = phases.map(|p| format!(" ({p})")).unwrap_or_default();
                let busy = host_busy
                    .map(|b| format!(", other processes {:.0}% of the CPU", b * 100.0))
                    .unwrap_or_default();
                info(&format!(
                    "{label}: {:.1} s wall, KTAP after {:.2} s{phases}, guest status {status}{busy}",
                    wall.as_secs_f64(),
                    to_ktap.map(|d| d.as_secs_f64()).unwrap_or(0.0),
                ))
            }
        }
    }
}

/// Progress of a long step: on a terminal an indicatif bar with elapsed
/// time and an estimate; on a log at most one line per tenth of the work,
/// so CI logs stay short.
pub struct Progress {
    label: String,
    bar: Option<indicatif::ProgressBar>,
    last_decile: Option<u64>,
}

impl Progress {
    pub fn new(label: &str) -> Progress {
        let bar = is_tty().then(|| {
            let b = bars().add(indicatif::ProgressBar::new(0));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "    {msg} [{bar:30}] {pos}/{len} {elapsed} elapsed, ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_message(label.to_string());
            b
        });
        Progress {
            label: label.into(),
            bar,
            last_decile: None,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(done);
            }
            None => {
                let decile = done * 10 / total;
                if self.last_decile != Some(decile) {
                    self.last_decile = Some(decile);
                    say(&format!("    [{done}/{total}] {}", self.label));
                }
            }
        }
    }

    /// For work whose size is known only from an earlier run: a bar with
    /// an estimate when `expected` is known, else a count.
    pub fn tick(&mut self, done: u64, expected: Option<u64>) {
        if let Some(total) = expected {
            return self.update(done.min(total), total);
        }
        match &self.bar {
            Some(b) => {
                b.set_position(done);
            }
            None if done.is_multiple_of(500) => say(&format!("    {done} {}", self.label)),
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            bars().remove(&b);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Reads ninja's and make's `[N/M]` progress prefix.
pub fn ninja_progress(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (inner, _) = rest.split_once(']')?;
    let (n, m) = inner.split_once('/')?;
    Some((n.trim().parse().ok()?, m.trim().parse().ok()?))
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A command `run_logged` ran that did not succeed: the error shown (the
/// log named, its last lines) and, for callers that tell exit codes apart,
/// the status (`anyhow::Error::downcast_ref`).
#[derive(Debug)]
pub struct Failed {
    pub what: String,
    pub status: std::process::ExitStatus,
    pub log: std::path::PathBuf,
    pub tail: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed ({}); full log: {}\n--- last lines ---\n{}",
            self.what,
            self.status,
            self.log.display(),
            self.tail
        )
    }
}

impl std::error::Error for Failed {}

/// Runs `cmd` with stdout and stderr appended to `log`, feeding each line to
/// `on_line` (for progress). On failure the error (a `Failed`) names the log
/// and shows its last lines.
pub fn run_logged(
    mut cmd: Command,
    log: &Path,
    what: &str,
    mut on_line: impl FnMut(&str),
) -> Result<Duration> {
    let start = Instant::now();
    let mut logf = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    writeln!(logf, "$ {cmd:?}")?;
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    cmd.stdout(writer.try_clone()?)
        .stderr(writer)
        .stdin(std::process::Stdio::null());
    let (mut child, _registered) = crate::children::spawn(&mut cmd)
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    drop(cmd); // close our copies of the pipe's write end so EOF arrives
    for line in BufReader::new(reader).split(b'\n') {
        let line = line.context("reading command output")?;
        let line = String::from_utf8_lossy(&line);
        let _ = writeln!(logf, "{line}");
        on_line(&line);
    }
    let status = child
        .wait()
        .with_context(|| format!("{what}: waiting for the command"))?;
    if !status.success() {
        return Err(Failed {
            what: what.to_string(),
            status,
            log: log.to_path_buf(),
            tail: tail(log, 25),
        }
        .into());
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninja_progress_lines() {
        assert_eq!(
            ninja_progress("[12/1812] Compiling C object foo.o"),
            Some((12, 1812))
        );
        assert_eq!(ninja_progress("  [ 3/ 9] x"), Some((3, 9)));
        assert_eq!(ninja_progress("CC foo.o"), None);
        assert_eq!(ninja_progress("[warn] x"), None);
    }

    #[test]
    fn run_logged_keeps_output_and_reports_failures_with_the_log_tail() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("x.log");
        let mut seen = Vec::new();
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; echo '[1/2] a'"]);
        run_logged(c, &log, "demo", |l| seen.push(l.to_string())).unwrap();
        assert_eq!(seen, ["out", "err", "[1/2] a"]);
        let mut c = Command::new("sh");
        c.args(["-c", "echo last-words; exit 3"]);
        let err = run_logged(c, &log, "failing step", |_| {}).unwrap_err();
        let code = err.downcast_ref::<Failed>().and_then(|f| f.status.code());
        assert_eq!(
            code,
            Some(3),
            "the exit status, for callers that tell codes apart"
        );
        let e = format!("{err:#}");
        assert!(
            e.contains("failing step failed")
                && e.contains(&log.display().to_string())
                && e.contains("last-words"),
            "{e}"
        );
    }
}
