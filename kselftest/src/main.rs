//! io_uring_idle_latency: per-device io_uring latency selftest.
//!
//! As PID 1 it is a guest's whole userspace (see `kselftest::init`); as an
//! ordinary program it measures the devices or files named on the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use contract::{Params, JSON_PREFIX};
use kselftest::{devices, run, KSFT_FAIL};

const USAGE: &str = "\
usage: io_uring_idle_latency [--device PATH | --file PATH]... [options]

Measures io_uring O_DIRECT reads per target and prints KTAP: the latency of
4 KiB reads, one in flight (--workload latency), or the batch reproducer
(--workload batch: 128 MiB in 128 KiB reads, 16 per batch, a 1 ms sleep before
each batch submit and after each completion; its total time, per-batch times
and MB/s).
As PID 1 (a guest's /init) it reads uring_idle.* from the kernel command line.

  --device PATH      block device to measure (repeatable)
  --file PATH        regular file to measure (repeatable; on a filesystem with O_DIRECT)
  --iterations N     measured I/Os per target and mode        [default: 200]
  --warmup N         discarded I/Os before measuring          [default: 5]
  --think-us N       idle time before each I/O, microseconds  [default: 2000]
  --think HOW        spend the think time in nanosleep or spinning: sleep, spin [default: sleep]
  --mode MODE        sleep, poll or both                       [default: sleep]
  --max-p99-ms X     a test fails when its p99 exceeds X ms    [default: 50]
  --workload W       latency or batch                         [default: latency]
  --total-mb N       batch: MiB read per target and mode      [default: 128]
  --chunk-kb N       batch: KiB per read (multiple of 4)      [default: 128]
  --batch N          batch: reads submitted together          [default: 16]
  --submit-sleep-us N      batch: idle before each submit     [default: 1000]
  --completion-sleep-us N  batch: idle after each completion  [default: 1000]
  --budget-ms N      stop a latency test after N ms (keeping >= 10 samples)
                                                              [default: 0, none]
  --write            also write a pattern and read it back (DESTROYS data at the
                     blocks it writes: scratch targets only)
  --write-blocks N   blocks the write check covers             [default: 32]
  --json             print only the machine-readable records, one JSON object a line
  -h, --help         this text

Without arguments (as kselftest's run_kselftest.sh runs it), the targets come
from URING_IDLE_TARGETS: scratch files or block devices, separated by spaces
or colons, each measured as --file or --device by what it is; with none set,
the test is skipped.

Exit status (kselftest): 0 pass, 1 fail or bad input, 4 skip (no io_uring, or
no targets under run_kselftest.sh).";

/// The targets kselftest's runner gives us: it passes no arguments.
pub const TARGETS_ENV: &str = "URING_IDLE_TARGETS";

struct Cli {
    paths: Vec<(PathBuf, bool)>,
    params: Params,
    json: bool,
}

fn parse(args: &[String]) -> Result<Option<Cli>, String> {
    let mut cli = Cli {
        paths: vec![],
        params: Params::default(),
        json: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a whole number"))
        };
        let p = &mut cli.params;
        match flag {
            "-h" | "--help" => return Ok(None),
            "--device" => cli.paths.push((value()?.into(), true)),
            "--file" => cli.paths.push((value()?.into(), false)),
            "--iterations" => {
                p.iterations =
                    u32::try_from(num(value()?)?).map_err(|_| "--iterations: too large")?
            }
            "--warmup" => {
                p.warmup = u32::try_from(num(value()?)?).map_err(|_| "--warmup: too large")?
            }
            "--think-us" => p.think_us = num(value()?)?,
            "--think" => p.think = value()?.parse().map_err(|e| format!("--think: {e}"))?,
            "--mode" => p.modes = value()?.parse().map_err(|e| format!("--mode: {e}"))?,
            "--max-p99-ms" => {
                let v = value()?;
                p.max_p99_ms = v
                    .parse()
                    .map_err(|_| format!("--max-p99-ms: {v:?} is not a number"))?
            }
            "--workload" => {
                p.workload = value()?.parse().map_err(|e| format!("--workload: {e}"))?
            }
            "--total-mb" => {
                p.total_mb = u32::try_from(num(value()?)?).map_err(|_| "--total-mb: too large")?
            }
            "--chunk-kb" => {
                p.chunk_kb = u32::try_from(num(value()?)?).map_err(|_| "--chunk-kb: too large")?
            }
            "--batch" => {
                p.batch = u32::try_from(num(value()?)?).map_err(|_| "--batch: too large")?
            }
            "--submit-sleep-us" => p.submit_sleep_us = num(value()?)?,
            "--budget-ms" => p.budget_ms = num(value()?)?,
            "--completion-sleep-us" => p.completion_sleep_us = num(value()?)?,
            "--write" => p.write_check = true,
            "--write-blocks" => {
                p.write_blocks =
                    u32::try_from(num(value()?)?).map_err(|_| "--write-blocks: too large")?
            }
            "--json" => cli.json = true,
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    cli.params.validate().map_err(|e| e.to_string())?;
    if cli.paths.is_empty() {
        return Err("nothing to measure: give at least one --device PATH or --file PATH".into());
    }
    Ok(Some(cli))
}

fn main() -> ExitCode {
    if std::process::id() == 1 {
        kselftest::init::main();
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        let targets = std::env::var(TARGETS_ENV).unwrap_or_default();
        let paths: Vec<&str> = targets
            .split([' ', ':'])
            .filter(|p| !p.is_empty())
            .collect();
        if paths.is_empty() {
            println!("{}", contract::ktap::header());
            println!("1..0 # SKIP no targets: set {TARGETS_ENV} to scratch files or block devices (their data is read, and written only with --write)");
            return ExitCode::from(kselftest::KSFT_SKIP as u8);
        }
        for p in paths {
            let is_block = std::fs::metadata(p)
                .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
                .unwrap_or(false);
            args.push(if is_block { "--device" } else { "--file" }.into());
            args.push(p.into());
        }
    }
    let cli = match parse(&args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("io_uring_idle_latency: {e}\n\n{USAGE}");
            return ExitCode::from(KSFT_FAIL as u8);
        }
    };
    // Bad input is an error before any KTAP is printed: a wrong path is the
    // user's to fix, not a test result.
    let mut targets = Vec::new();
    for (path, want_block) in &cli.paths {
        let checked = devices::from_path(path, Path::new("/sys")).and_then(|t| {
            let is_block = !t.is_file;
            if is_block != *want_block {
                anyhow::bail!(
                    "{}: {} (use {})",
                    path.display(),
                    if is_block {
                        "is a block device"
                    } else {
                        "is a regular file, not a block device"
                    },
                    if is_block { "--device" } else { "--file" }
                );
            }
            let dev = devices::open(&t, cli.params.write_check)?;
            let need = u64::from(cli.params.total_mb) << 20;
            if cli.params.workload == contract::Workload::Batch && dev.size < need {
                anyhow::bail!(
                    "{}: {} bytes is smaller than the {} MiB the batch workload reads; use --total-mb {} or a larger target",
                    path.display(),
                    dev.size,
                    cli.params.total_mb,
                    dev.size >> 20
                );
            }
            Ok(t)
        });
        match checked {
            Ok(t) => targets.push(t),
            Err(e) => {
                eprintln!("io_uring_idle_latency: {e:#}");
                return ExitCode::from(KSFT_FAIL as u8);
            }
        }
    }
    let code = if cli.json {
        let mut text = String::new();
        let code = run::run(&targets, &[], &cli.params, None, &mut text);
        for line in text.lines().filter_map(|l| l.strip_prefix(JSON_PREFIX)) {
            println!("{line}");
        }
        code
    } else {
        run::run(
            &targets,
            &[],
            &cli.params,
            None,
            &mut run::Console::new(std::io::stdout()),
        )
    };
    ExitCode::from(code as u8)
}
