//! One selftest run: every target in every mode, printed as KTAP as it goes.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::devices::{self, Target};
use crate::workload::{self, RingError};
use crate::KSFT_FAIL;
use contract::ktap::{self, write_diag, Outcome, Tally};
use contract::plan::seed_for;
use contract::{BatchFigures, BootPhases, Params, Record, Think, Workload};

/// Milliseconds since the kernel started (CLOCK_BOOTTIME).
pub fn boottime_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// Kernel release from uname(2).
pub fn kernel_release() -> String {
    // SAFETY: uname fills the struct; release is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// The console as KTAP's writer: whole lines, each in one write and
/// flushed, so a host reading the serial console sees every line as it is
/// printed, and a kernel message printed meanwhile lands between lines,
/// never inside one (a JSON record split by a late "Attached SCSI disk"
/// was unreadable: seen once in an e2e boot when pieces went out apart).
pub struct Console<W: std::io::Write> {
    out: W,
    line: String,
}

impl<W: std::io::Write> Console<W> {
    pub fn new(out: W) -> Self {
        Console {
            out,
            line: String::new(),
        }
    }
}

impl<W: std::io::Write> Write for Console<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.line.push_str(s);
        let Some(end) = self.line.rfind('\n') else {
            return Ok(());
        };
        let rest = self.line.split_off(end + 1);
        let done = std::mem::replace(&mut self.line, rest);
        self.out
            .write_all(done.as_bytes())
            .and_then(|_| self.out.flush())
            .map_err(|_| std::fmt::Error)
    }
}

/// Runs every test and returns the kselftest exit code. `missing` names
/// requested controllers with no disk, and why: their tests are skipped.
pub fn run(
    targets: &[Target],
    missing: &[(String, String)],
    p: &Params,
    boot: Option<BootPhases>,
    out: &mut dyn Write,
) -> i32 {
    let modes: Vec<&str> = p.modes.modes().iter().map(|m| m.name()).collect();
    let per_target = modes.len() + usize::from(p.write_check);
    let _ = writeln!(out, "{}", ktap::header());
    // As a guest's PID 1: the boot's phases, stamped now that the header
    // is out, for the host to line up with when it saw the header.
    if let Some(mut b) = boot {
        b.header_ms = boottime_ms();
        let _ = writeln!(out, "{}", b.line());
    }
    write_diag(out, &format!("kernel: {}", kernel_release()));
    write_diag(out, &format!("uapi: {}", uring_sys::uapi_summary()));
    write_diag(
        out,
        &format!(
            "params: iterations={} warmup={} think_us={} think={} mode={} max_p99_ms={} write={}",
            p.iterations,
            p.warmup,
            p.think_us,
            p.think.name(),
            modes.join(","),
            p.max_p99_ms,
            p.write_check
        ),
    );
    let _ = writeln!(
        out,
        "{}",
        ktap::plan(targets.len() * per_target + missing.len() * modes.len())
    );
    let mut t = Tally::default();

    let mut ring = match workload::new_ring() {
        Ok(r) => r,
        Err(RingError::Unavailable(why)) => {
            for target in targets {
                for m in &modes {
                    t.emit(
                        out,
                        Outcome::Skip,
                        &format!("{}_{m}", target.name),
                        &why,
                        None,
                    );
                }
                if p.write_check {
                    t.emit(
                        out,
                        Outcome::Skip,
                        &format!("{}_integrity", target.name),
                        &why,
                        None,
                    );
                }
            }
            t.skip_missing(out, missing, &modes);
            return t.finish(out);
        }
        Err(RingError::Failed(e)) => {
            let _ = writeln!(out, "{}", ktap::bail_out(&format!("{e:#}")));
            return KSFT_FAIL;
        }
    };
    match workload::supported_ops(&ring) {
        Ok(ops) => {
            let names: Vec<String> = ops
                .iter()
                .map(|&op| {
                    uring_sys::op_name(op)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("op{op}"))
                })
                .collect();
            write_diag(
                out,
                &format!(
                    "io_uring ops supported ({}): {}",
                    ops.len(),
                    names.join(" ")
                ),
            );
        }
        Err(e) => {
            write_diag(out, &format!("io_uring probe unavailable: {e:#}"));
        }
    }

    // What a sleep of the batch workload's length really takes here, so the
    // report can say whether spinning was needed to keep 1 ms meaning 1 ms.
    let nap = (p.workload == Workload::Batch).then(|| {
        let d = workload::nanosleep_cost(std::time::Duration::from_micros(p.submit_sleep_us));
        write_diag(
            out,
            &format!(
                "batch: {} MiB in {} KiB reads, {} per batch; nanosleep({} us) takes {} us here; the sleeps {}",
                p.total_mb,
                p.chunk_kb,
                p.batch,
                p.submit_sleep_us,
                d.as_micros(),
                match p.think {
                    Think::Spin => "spin",
                    Think::Sleep => "use nanosleep",
                }
            ),
        );
        d
    });
    for target in targets {
        // Batch tests are named apart: their figures are per batch.
        let stem = match p.workload {
            Workload::Latency => target.name.clone(),
            w => format!("{}_{w}", target.name),
        };
        let record = |mode: &str| Record {
            workload: p.workload,
            ..Record::new(
                &stem,
                &target.name,
                &target.controller,
                &target.path.display().to_string(),
                mode,
            )
        };
        let dev = match devices::open(target, p.write_check) {
            Ok(d) => d,
            Err(e) => {
                let why = format!("{e:#}");
                t.fail_device(out, &record, &modes, p.write_check, &why);
                continue;
            }
        };
        write_diag(
            out,
            &format!(
                "{}: {} controller={} size={} bytes",
                target.name,
                target.path.display(),
                target.controller,
                dev.size
            ),
        );
        for &mode in p.modes.modes() {
            let mut stopped = None;
            let measured = match p.workload {
                Workload::Latency => {
                    workload::measure(&mut ring, &dev, mode, p, seed_for(&target.name)).map(|s| {
                        if let Some(why) = &s.stopped_early {
                            write_diag(out, &format!("{}: {why}", target.name));
                        }
                        stopped = s.stopped_early;
                        (s.latencies_ns, s.wall, None)
                    })
                }
                Workload::Batch => workload::batch(&mut ring, &dev, mode, p).map(|b| {
                    let secs = b.wall.as_secs_f64();
                    let figures = BatchFigures {
                        total_ms: (secs * 100_000.0).round() / 100.0,
                        mb_per_s: ((b.bytes as f64 / 1048576.0 / secs) * 100.0).round() / 100.0,
                        bytes: b.bytes,
                        batches: b.batch_ns.len() as u32,
                        sleeps: p.think.name().into(),
                        nanosleep_us: nap.map(|d| d.as_micros() as f64).unwrap_or(0.0),
                    };
                    (b.batch_ns, b.wall, Some(figures))
                }),
                // The xtask gives these to the probe guest alone.
                w @ (Workload::Flush | Workload::Neighbour) => Err(anyhow::anyhow!(
                    "the selftest does not run the {w} workload: the probe guest does"
                )),
            };
            match measured {
                Ok((ns, wall, batch)) => {
                    let base = record(mode.name());
                    let (mut r, figures) =
                        Record::measured(base, &ns, wall.as_nanos() as u64, batch, p.max_p99_ms);
                    r.stopped_early = stopped.take();
                    t.report(out, &r, &figures);
                }
                Err(e) => t.report(out, &record(mode.name()).failed(Some(format!("{e:#}"))), ""),
            }
        }
        if p.write_check {
            let nonce = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            let seed = workload::mix(nonce ^ seed_for(&target.name));
            let offsets = workload::pattern_offsets(seed, p.write_blocks, dev.blocks());
            let res = workload::write_pattern(&mut ring, &dev, seed, &offsets)
                .and_then(|_| workload::verify_pattern(&mut ring, &dev, seed, &offsets));
            let note = format!("{} blocks written and read back intact", offsets.len());
            let why = res.err().map(|e| format!("{e:#}"));
            t.report(out, &record("integrity").failed(why), &note);
        }
    }
    t.skip_missing(out, missing, &modes);
    t.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps each write it is given apart.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl std::io::Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_console_writes_whole_lines_at_once() {
        let mut c = Console::new(Writes::default());
        let _ = write!(c, "# uring-idle-json: {{\"a\":{}}}", 1);
        assert!(c.out.0.is_empty(), "no partial line goes out");
        let _ = writeln!(c, " and more");
        let _ = write!(c, "ok 1 x\nok 2 y\nnot");
        assert_eq!(
            c.out.0,
            [
                b"# uring-idle-json: {\"a\":1} and more\n".to_vec(),
                b"ok 1 x\nok 2 y\n".to_vec()
            ]
        );
    }
}
