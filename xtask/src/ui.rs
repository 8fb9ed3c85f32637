//! What the user sees while long steps run: stage lines, a progress line
//! that updates in place on a terminal (plain lines otherwise), and a runner
//! for long commands whose full output goes to a log file.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// A stage heading, e.g. `==> building QEMU (baseline)`.
pub fn stage(msg: &str) {
    eprintln!("==> {msg}");
}

/// A detail under the current stage.
pub fn info(msg: &str) {
    eprintln!("    {msg}");
}

pub fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

/// Shows what a guest run reports: its start, each KTAP result as it comes
/// (the console itself goes to the run's log file), the fallback from KVM,
/// and the run's figures.
pub fn guest_event(e: crate::guest::Event) {
    use crate::guest::Event;
    match e {
        Event::BootStarted { label, accel } => {
            stage(&format!("guest run {label} ({})", accel.name()))
        }
        Event::Console { label, line } => {
            if line.starts_with("ok ")
                || line.starts_with("not ok ")
                || line.starts_with("Bail out!")
            {
                info(&format!(
                    "[{label}] {}",
                    line.split(" # ").next().unwrap_or(line)
                ));
            }
        }
        Event::KvmFallback { why } => warn(&format!(
            "the KVM guest {why} (nested or restricted KVM, e.g. kvm-pvm): falling back to TCG"
        )),
        Event::Finished { label, run } => info(&format!(
            "{label}: {:.1} s wall, KTAP after {:.1} s, guest status {}",
            run.elapsed.as_secs_f64(),
            run.to_ktap.map(|d| d.as_secs_f64()).unwrap_or(0.0),
            run.code
        )),
    }
}

/// Renders `[done/total] label` in place on a terminal; on a log it prints
/// at most one line per tenth of the work so CI logs stay short.
pub struct Progress {
    label: String,
    tty: bool,
    last_decile: Option<u64>,
    drawn: bool,
}

impl Progress {
    pub fn new(label: &str) -> Progress {
        Progress {
            label: label.into(),
            tty: is_tty(),
            last_decile: None,
            drawn: false,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        if self.tty {
            eprint!("\r\x1b[2K    [{done}/{total}] {}", self.label);
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else {
            let decile = done * 10 / total;
            if self.last_decile != Some(decile) {
                self.last_decile = Some(decile);
                eprintln!("    [{done}/{total}] {}", self.label);
            }
        }
    }

    /// For work of unknown size: a count, redrawn on a terminal and printed
    /// every 500 on a log.
    pub fn tick(&mut self, done: u64) {
        if self.tty {
            if done.is_multiple_of(10) {
                eprint!("\r\x1b[2K    {done} {}", self.label);
                let _ = std::io::stderr().flush();
                self.drawn = true;
            }
        } else if done.is_multiple_of(500) {
            eprintln!("    {done} {}", self.label);
        }
    }

    pub fn finish(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.drawn = false;
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

/// Runs `cmd` with stdout and stderr appended to `log`, feeding each line to
/// `on_line` (for progress). On failure the error names the log and shows
/// its last lines.
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
    crate::children::prepare(&mut cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    let _registered = crate::children::register(child.id());
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
        bail!(
            "{what} failed ({status}); full log: {}\n--- last lines ---\n{}",
            log.display(),
            tail(log, 25)
        );
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
        let e = format!(
            "{:#}",
            run_logged(c, &log, "failing step", |_| {}).unwrap_err()
        );
        assert!(
            e.contains("failing step failed")
                && e.contains(&log.display().to_string())
                && e.contains("last-words"),
            "{e}"
        );
    }
}
