//! One probe run: every target in every mode, printed as KTAP as it goes,
//! in the Linux selftest's order and with its counts and wording
//! (kselftest/src/run.rs and workload.rs), so the host reads both guests
//! alike and pairs QEMU's trace events with the same plan.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use contract::plan::{
    self, fill_pattern, first_difference, mix, offset, pattern_offsets, seed_for, IO_SIZE,
};
use contract::{BatchFigures, BootPhases, Mode, Params, Record, Workload};

use crate::disk::{Disk, Request};
use crate::hw::{Clock, DmaBuf};
use crate::timers::{Deadline, Wake};
use contract::ktap::{self, Outcome, Tally};
use contract::record::round_to;

/// Why a sleep-mode test is skipped here.
pub const NO_SLEEP: &str = "the probe guest takes no interrupts: it only polls";

/// A wait longer than this after the wake-up is a hung device.
pub const GIVE_UP_NS: u64 = 60_000_000_000;

/// Time between two polls of a device: each MMIO poll takes QEMU's big
/// lock, which the main loop needs to complete the request.
pub const POLL_GAP_NS: u64 = 2_000;

/// One requested controller whose function was found.
pub struct Target<'a> {
    /// `{row}_probe`.
    pub name: String,
    pub controller: String,
    /// Where: `pci 00:1f.2 port 0`.
    pub path: String,
    /// The driver, or why it failed to come up (then every test of the
    /// target is `not ok` with that reason).
    pub disk: Result<Box<dyn Disk + 'a>, String>,
}

/// What a run needs from the machine.
pub struct Env<'a> {
    pub clock: &'a dyn Clock,
    pub wake: &'a mut dyn Wake,
    /// Varies between runs: seeds the write check's pattern.
    pub nonce: u64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

use contract::ktap::write_diag as diag;

/// Runs every test and returns the kselftest exit code. `missing`: rows
/// whose function is not there, and why (skipped, after the targets, as
/// the selftest skips controllers without a disk). `diags`: lines for
/// after the parameters (the TSC rate).
pub fn run(
    targets: &mut [Target],
    missing: &[(String, String)],
    p: &Params,
    boot: Option<BootPhases>,
    diags: &[String],
    env: &mut Env,
    out: &mut dyn Write,
) -> i32 {
    let modes: Vec<&str> = p.modes.modes().iter().map(|m| m.name()).collect();
    let nb = neighbour_of(targets, p.workload);
    // The tests of target `i`: its stem and workload, per mode.
    let tests_of = |i: usize, name: &str| -> Vec<(String, Workload)> {
        match p.workload {
            Workload::Latency => vec![(name.into(), Workload::Latency)],
            // Alone first, then beside the neighbour (which has no
            // neighbour test of its own).
            Workload::Neighbour if nb == Some(i) => vec![(name.into(), Workload::Latency)],
            Workload::Neighbour => vec![
                (name.into(), Workload::Latency),
                (format!("{name}_neighbour"), Workload::Neighbour),
            ],
            w => vec![(format!("{name}_{w}"), w)],
        }
    };
    let planned: usize = (0..targets.len())
        .map(|i| modes.len() * tests_of(i, &targets[i].name).len() + usize::from(p.write_check))
        .sum();
    let _ = writeln!(out, "{}", ktap::header());
    if let Some(mut b) = boot {
        b.header_ms = round_to(ms(env.clock.now_ns()), 100.0);
        let _ = writeln!(out, "{}", b.line());
    }
    diag(
        out,
        &format!("kernel: uring-idle-probe {}", env!("CARGO_PKG_VERSION")),
    );
    diag(
        out,
        &format!(
            "params: iterations={} warmup={} think_us={} think=spin mode={} max_p99_ms={} write={} deadline_ms={}",
            p.iterations,
            p.warmup,
            p.think_us,
            modes.join(","),
            p.max_p99_ms,
            p.write_check,
            p.deadline_ms
        ),
    );
    for d in diags {
        diag(out, d);
    }
    let _ = writeln!(out, "{}", ktap::plan(planned + missing.len() * modes.len()));
    let mut t = Tally::default();
    if p.workload == Workload::Batch {
        diag(
            out,
            &format!(
                "batch: {} MiB in {} KiB reads, {} per batch; the sleeps spin (the probe arms no timer)",
                p.total_mb, p.chunk_kb, p.batch
            ),
        );
    }

    if let (Workload::Neighbour, Some(i)) = (p.workload, nb) {
        diag(
            out,
            &format!(
                "neighbour: {} keeps one read in flight while each other disk is measured beside it",
                targets[i].name
            ),
        );
    }

    for i in 0..targets.len() {
        let tests = tests_of(i, &targets[i].name);
        let (target, mut neighbour) = split(targets, i, nb);
        let record = |stem: &str, w: Workload, mode: &str| Record {
            workload: w,
            ..Record::new(stem, &target.name, &target.controller, &target.path, mode)
        };
        let disk = match &mut target.disk {
            Ok(d) => d,
            Err(why) => {
                for (k, (stem, w)) in tests.iter().enumerate() {
                    let check = p.write_check && k == 0;
                    t.fail_device(out, &|m| record(stem, *w, m), &modes, check, why);
                }
                continue;
            }
        };
        let disk: &mut dyn Disk = disk.as_mut();
        diag(
            out,
            &format!(
                "{}: {} controller={} size={} bytes",
                target.name,
                target.path,
                target.controller,
                disk.size()
            ),
        );
        for (stem, workload) in &tests {
            let (stem, workload) = (stem.as_str(), *workload);
            for &mode in p.modes.modes() {
                if mode == Mode::Sleep {
                    t.emit(
                        out,
                        Outcome::Skip,
                        &format!("{stem}_{}", mode.name()),
                        NO_SLEEP,
                        None,
                    );
                    continue;
                }
                let mut stopped = None;
                let mut beside = None;
                let measured = match workload {
                Workload::Latency => measure(disk, env, p, seed_for(&target.name)).map(|s| {
                    if let Some(why) = &s.stopped_early {
                        diag(out, &format!("{}: {why}", target.name));
                    }
                    stopped = s.stopped_early;
                    (s.latencies_ns, s.wall_ns, None, s.woken)
                }),
                Workload::Flush => flushes(disk, env, p, seed_for(&target.name)).map(|s| {
                    if let Some(why) = &s.stopped_early {
                        diag(out, &format!("{}: {why}", target.name));
                    }
                    stopped = s.stopped_early;
                    (s.latencies_ns, s.wall_ns, None, s.woken)
                }),
                Workload::Neighbour => match neighbour.as_mut().map(|n| (n.controller.clone(), &mut n.disk)) {
                    Some((row, Ok(nd))) => {
                        let nd: &mut dyn Disk = nd.as_mut();
                        measure_beside(disk, nd, env, p, seed_for(&target.name)).map(|(s, reads, issued)| {
                            if let Some(why) = &s.stopped_early {
                                diag(out, &format!("{}: {why}", target.name));
                            }
                            beside = Some(contract::Neighbour {
                                controller: row,
                                reads,
                                reads_per_s: round_to(reads as f64 / (s.wall_ns.max(1) as f64 / 1e9), 10.0),
                                issued,
                            });
                            stopped = s.stopped_early;
                            (s.latencies_ns, s.wall_ns, None, s.woken)
                        })
                    }
                    Some((row, Err(why))) => Err(format!("the neighbour {row} has no driver: {why}")),
                    None => Err("no control row among the run's disks to be the neighbour (add virtio_blk or nvme)".into()),
                },
                Workload::Batch => batch(disk, env, p).map(|b| {
                    let secs = b.wall_ns as f64 / 1e9;
                    let figures = BatchFigures {
                        total_ms: round_to(secs * 1000.0, 100.0),
                        mb_per_s: round_to(b.bytes as f64 / 1048576.0 / secs, 100.0),
                        bytes: b.bytes,
                        batches: b.batch_ns.len() as u32,
                        sleeps: "spin".into(),
                        nanosleep_us: 0.0,
                    };
                    (b.batch_ns, b.wall_ns, Some(figures), b.woken)
                }),
            };
                match measured {
                    Ok((ns, wall, batch, woken)) => {
                        let base = record(stem, workload, mode.name());
                        let (mut r, figures) =
                            Record::measured(base, &ns, wall, batch, p.max_p99_ms);
                        r.stopped_early = stopped.take();
                        r.woken = woken;
                        r.neighbour = beside.take();
                        t.report(out, &r, &figures);
                    }
                    Err(e) => t.report(
                        out,
                        &record(stem, workload, mode.name()).failed(Some(e)),
                        "",
                    ),
                }
            }
        }
        if p.write_check {
            let seed = mix(env.nonce ^ seed_for(&target.name));
            let blocks = disk.size() / IO_SIZE as u64;
            let offsets = pattern_offsets(seed, p.write_blocks, blocks);
            let res = write_pattern(disk, env, p, seed, &offsets)
                .and_then(|_| verify_pattern(disk, env, p, seed, &offsets));
            let note = format!("{} blocks written and read back intact", offsets.len());
            let why = res.err();
            let (stem, w) = &tests[0];
            t.report(out, &record(stem, *w, "integrity").failed(why), &note);
        }
    }
    t.skip_missing(out, missing, &modes);
    t.finish(out)
}

/// The neighbour workload's neighbour: the first control row among the
/// run's disks that came up.
fn neighbour_of(targets: &[Target], w: Workload) -> Option<usize> {
    if w != Workload::Neighbour {
        return None;
    }
    targets.iter().position(|t| {
        t.disk.is_ok()
            && contract::controllers::by_name(&t.controller)
                .is_ok_and(|c| c.role == contract::Role::Control)
    })
}

/// Target `i`, and the neighbour `nb` beside it when that is another.
fn split<'t, 'a>(
    targets: &'t mut [Target<'a>],
    i: usize,
    nb: Option<usize>,
) -> (&'t mut Target<'a>, Option<&'t mut Target<'a>>) {
    match nb {
        Some(n) if n < i => {
            let (lo, hi) = targets.split_at_mut(i);
            (&mut hi[0], Some(&mut lo[n]))
        }
        Some(n) if n > i => {
            let (lo, hi) = targets.split_at_mut(n);
            (&mut lo[i], Some(&mut hi[0]))
        }
        _ => (&mut targets[i], None),
    }
}

/// A disk kept at one read in flight, back to back: polled between the
/// measured disk's polls (the probe has no interrupts or threads), each
/// completion followed at once by the next read.
pub struct Busy<'d> {
    disk: &'d mut dyn Disk,
    buf: DmaBuf,
    blocks: u64,
    seed: u64,
    /// Reads completed.
    pub reads: u64,
    /// Reads submitted.
    pub issued: u64,
    in_flight: bool,
}

impl<'d> Busy<'d> {
    pub fn new(disk: &'d mut dyn Disk, seed: u64) -> Busy<'d> {
        let blocks = (disk.size() / IO_SIZE as u64).max(1);
        Busy {
            disk,
            buf: DmaBuf::new(IO_SIZE),
            blocks,
            seed,
            reads: 0,
            issued: 0,
            in_flight: false,
        }
    }

    fn submit(&mut self) -> Result<(), String> {
        let off = offset(self.seed, self.reads, self.blocks);
        self.disk
            .submit(0, &Request::read(off, self.buf.phys(), IO_SIZE))?;
        self.disk.kick()?;
        self.in_flight = true;
        self.issued += 1;
        Ok(())
    }

    /// Reaps a completed read and starts the next.
    pub fn tend(&mut self) -> Result<(), String> {
        if !self.in_flight {
            return self.submit();
        }
        if let Some((_, r)) = self.disk.poll() {
            r.map_err(|e| format!("the neighbour's read: {e}"))?;
            self.reads += 1;
            self.submit()?;
        }
        Ok(())
    }

    /// Waits for the read in flight, so the disk is idle again.
    pub fn stop(&mut self, env: &mut Env, p: &Params) -> Result<(), String> {
        if !self.in_flight {
            return Ok(());
        }
        let mut deadline = Deadline::new(env.clock.now_ns(), p.deadline_ms);
        let (_, r) = wait_one(self.disk, env, &mut deadline, None)?;
        if deadline.woken {
            env.wake.settle();
        }
        self.in_flight = false;
        r.map_err(|e| format!("the neighbour's last read: {e}"))
    }
}

/// Spins `ns`, tending the neighbour meanwhile.
fn spin_beside(env: &Env, ns: u64, busy: &mut Busy) -> Result<(), String> {
    let until = env.clock.now_ns().saturating_add(ns);
    while env.clock.now_ns() < until {
        busy.tend()?;
        env.clock.spin_ns(POLL_GAP_NS);
    }
    Ok(())
}

/// The neighbour workload's second test: `measure`'s reads on `disk` while
/// `neighbour` keeps one read in flight; returns the samples, how many
/// reads the neighbour completed during the measured loop and how many it
/// was given in all.
pub fn measure_beside(
    disk: &mut dyn Disk,
    neighbour: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    seed: u64,
) -> Result<(Samples, u64, u64), String> {
    let blocks = blocks_of(disk)?;
    let mut busy = Busy::new(neighbour, mix(seed));
    busy.tend()?;
    let buf = DmaBuf::new(IO_SIZE);
    let mut read = |env: &mut Env, busy: &mut Busy, i: u64| -> Result<(u64, bool), String> {
        let off = offset(seed, i, blocks);
        one_io_beside(
            disk,
            env,
            p,
            &Request::read(off, buf.phys(), IO_SIZE),
            Some(busy),
        )
        .map_err(|e| format!("read at offset {off}: {e}"))
    };
    for i in 0..u64::from(p.warmup) {
        read(env, &mut busy, i).map_err(|e| format!("warm-up read: {e}"))?;
    }
    let before = busy.reads;
    let samples = timed(env, p, |env, i| {
        spin_beside(env, p.think_us * 1000, &mut busy)?;
        read(env, &mut busy, i)
    })?;
    let reads = busy.reads - before;
    busy.stop(env, p)?;
    Ok((samples, reads, busy.issued))
}

/// The next completion, polled, tending `beside` between polls: once
/// `deadline` passes, wake QEMU's main loop (and count it in `woke`) and
/// keep polling.
fn wait_one(
    disk: &mut dyn Disk,
    env: &mut Env,
    deadline: &mut Deadline,
    mut beside: Option<&mut Busy>,
) -> Result<(usize, Result<(), String>), String> {
    loop {
        if let Some(c) = disk.poll() {
            return Ok(c);
        }
        if let Some(b) = beside.as_deref_mut() {
            b.tend()?;
        }
        let now = env.clock.now_ns();
        if deadline.due(now) {
            env.wake.arm();
        }
        if now.saturating_sub(deadline.start_ns) > deadline.limit_ns.saturating_add(GIVE_UP_NS) {
            return Err(format!(
                "no completion {} s after the {} ms deadline's wake-up",
                GIVE_UP_NS / 1_000_000_000,
                deadline.limit_ns / 1_000_000
            ));
        }
        env.clock.spin_ns(POLL_GAP_NS);
    }
}

/// One request from submit to completion: its time (ns) and whether it
/// needed the wake-up. A wake-up's one-shot has fired when this returns.
fn one_io(
    disk: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    req: &Request,
) -> Result<(u64, bool), String> {
    one_io_beside(disk, env, p, req, None)
}

/// `one_io`, tending a neighbour while it waits.
fn one_io_beside(
    disk: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    req: &Request,
    beside: Option<&mut Busy>,
) -> Result<(u64, bool), String> {
    let start = env.clock.now_ns();
    let mut deadline = Deadline::new(start, p.deadline_ms);
    disk.submit(0, req)?;
    disk.kick()?;
    let (_, r) = wait_one(disk, env, &mut deadline, beside)?;
    let t = env.clock.now_ns() - start;
    if deadline.woken {
        env.wake.settle();
    }
    r.map(|_| (t, deadline.woken))
}

fn read_at(
    disk: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    buf: &DmaBuf,
    off: u64,
) -> Result<(u64, bool), String> {
    one_io(disk, env, p, &Request::read(off, buf.phys(), IO_SIZE))
        .map_err(|e| format!("read at offset {off}: {e}"))
}

/// How many `IO_SIZE` blocks the disk holds (at least one).
fn blocks_of(disk: &dyn Disk) -> Result<u64, String> {
    match disk.size() / IO_SIZE as u64 {
        0 => Err(format!(
            "{} bytes is smaller than one {IO_SIZE}-byte I/O",
            disk.size()
        )),
        blocks => Ok(blocks),
    }
}

/// Latency samples of one device.
#[derive(Debug)]
pub struct Samples {
    pub latencies_ns: Vec<u64>,
    pub wall_ns: u64,
    pub stopped_early: Option<String>,
    pub woken: u32,
}

/// The selftest's `measure`: `warmup` reads discarded, then `iterations`
/// reads, each after `think_us` of spinning, at the same offsets.
pub fn measure(
    disk: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    seed: u64,
) -> Result<Samples, String> {
    let blocks = blocks_of(disk)?;
    let buf = DmaBuf::new(IO_SIZE);
    for i in 0..u64::from(p.warmup) {
        read_at(disk, env, p, &buf, offset(seed, i, blocks))
            .map_err(|e| format!("warm-up read: {e}"))?;
    }
    timed(env, p, |env, i| {
        env.clock.spin_ns(p.think_us * 1000);
        read_at(disk, env, p, &buf, offset(seed, i, blocks))
    })
}

/// `iterations` timed operations, `op(env, i)` each (`i` counting on from
/// the warm-up's), until they are done or the time budget is spent.
fn timed(
    env: &mut Env,
    p: &Params,
    mut op: impl FnMut(&mut Env, u64) -> Result<(u64, bool), String>,
) -> Result<Samples, String> {
    let mut latencies_ns = Vec::with_capacity(p.iterations as usize);
    let mut woken = 0;
    let start = env.clock.now_ns();
    for i in 0..u64::from(p.iterations) {
        let (t, woke) = op(env, u64::from(p.warmup) + i)?;
        latencies_ns.push(t);
        woken += u32::from(woke);
        let spent = env.clock.now_ns() - start;
        if let Some(why) = p.budget_spent(latencies_ns.len(), spent) {
            return Ok(Samples {
                latencies_ns,
                wall_ns: spent,
                stopped_early: Some(why),
                woken,
            });
        }
    }
    Ok(Samples {
        latencies_ns,
        wall_ns: env.clock.now_ns() - start,
        stopped_early: None,
        woken,
    })
}

/// The flush workload: `warmup` discarded, then `iterations` timed
/// flushes, each after one `IO_SIZE` (8-sector) write at the latency
/// plan's offsets and `think_us` of spinning. QEMU skips a flush with
/// nothing written since the last, so each has a write of its own; only
/// the flush is timed, with the same deadline wake as a read.
pub fn flushes(
    disk: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    seed: u64,
) -> Result<Samples, String> {
    let blocks = blocks_of(disk)?;
    let buf = DmaBuf::new(IO_SIZE);
    let mut write_then_flush = |env: &mut Env, i: u64| -> Result<(u64, bool), String> {
        let off = offset(seed, i, blocks);
        one_io(disk, env, p, &Request::write(off, buf.phys(), IO_SIZE))
            .map_err(|e| format!("write at offset {off}: {e}"))?;
        // The main loop goes back to sleep after the write's completion,
        // as it does before a read.
        env.clock.spin_ns(p.think_us * 1000);
        flush_once(disk, env, p)
    };
    for i in 0..u64::from(p.warmup) {
        write_then_flush(env, i).map_err(|e| format!("warm-up: {e}"))?;
    }
    timed(env, p, write_then_flush)
}

/// One flush, timed alone: a request on the queue like a read, with the
/// same deadline wake.
fn flush_once(disk: &mut dyn Disk, env: &mut Env, p: &Params) -> Result<(u64, bool), String> {
    one_io(disk, env, p, &Request::flush()).map_err(|e| format!("flush: {e}"))
}

/// One run of the batch workload.
#[derive(Debug)]
pub struct BatchRun {
    pub batch_ns: Vec<u64>,
    pub wall_ns: u64,
    pub bytes: u64,
    /// Waits that passed their deadline and needed the wake-up.
    pub woken: u32,
}

/// The selftest's `batch`: `total_mb` MiB from the start of the device in
/// `chunk_kb` KiB reads, `batch` in flight together (NCQ on AHCI); spin
/// `submit_sleep_us` before each batch and `completion_sleep_us` after
/// each completion. A device with fewer tags than `batch` gets the rest as
/// tags free up.
pub fn batch(disk: &mut dyn Disk, env: &mut Env, p: &Params) -> Result<BatchRun, String> {
    let chunk = p.chunk_kb as usize * 1024;
    let bytes = u64::from(p.total_mb) << 20;
    if bytes > disk.size() {
        return Err(format!(
            "the batch workload reads {} MiB but the target holds {} bytes: use a larger disk image, or a smaller total (--total-mb)",
            p.total_mb,
            disk.size()
        ));
    }
    if chunk > disk.max_transfer() {
        return Err(format!(
            "chunk_kb={} exceeds the controller's largest transfer of {} KiB",
            p.chunk_kb,
            disk.max_transfer() / 1024
        ));
    }
    let chunks = bytes.div_ceil(chunk as u64);
    let bufs: Vec<DmaBuf> = (0..p.batch).map(|_| DmaBuf::new(chunk)).collect();
    let mut batch_ns = Vec::new();
    let mut woken = 0;
    let start = env.clock.now_ns();
    let mut next = 0u64;
    while next < chunks {
        let t0 = env.clock.now_ns();
        env.clock.spin_ns(p.submit_sleep_us * 1000);
        let n = (chunks - next).min(u64::from(p.batch)) as usize;
        let reqs: Vec<Request> = (0..n)
            .map(|i| Request::read((next + i as u64) * chunk as u64, bufs[i].phys(), chunk))
            .collect();
        woken += all_at_once(disk, env, p, &reqs, p.completion_sleep_us * 1000)?;
        batch_ns.push(env.clock.now_ns() - t0);
        next += n as u64;
    }
    Ok(BatchRun {
        batch_ns,
        wall_ns: env.clock.now_ns() - start,
        bytes,
        woken,
    })
}

/// Every request of `reqs` in flight together, as many at once as the
/// device has tags (NCQ on AHCI), the rest as tags free up: an unfixed
/// controller then pays one main-loop wait per batch, not per request.
/// Spins `after_each_ns` after each completion; returns how many waits
/// passed their deadline and needed the wake-up.
fn all_at_once(
    disk: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    reqs: &[Request],
    after_each_ns: u64,
) -> Result<u32, String> {
    let depth = disk.depth().min(reqs.len()).max(1);
    let queued = |i: usize| Request {
        queued: true,
        ..reqs[i]
    };
    // Which request each tag carries.
    let mut carries = vec![0usize; depth];
    for (tag, c) in carries.iter_mut().enumerate().take(depth.min(reqs.len())) {
        disk.submit(tag, &queued(tag))?;
        *c = tag;
    }
    disk.kick()?;
    let mut issued = depth.min(reqs.len());
    let mut woken = 0;
    for _ in 0..reqs.len() {
        let mut deadline = Deadline::new(env.clock.now_ns(), p.deadline_ms);
        let (tag, r) = wait_one(disk, env, &mut deadline, None)?;
        if deadline.woken {
            woken += 1;
            env.wake.settle();
        }
        let i = carries.get(tag).copied().unwrap_or(usize::MAX);
        r.map_err(|e| match reqs.get(i) {
            Some(r) => format!("{} at offset {}: {e}", r.op.name(), r.offset),
            None => format!("a completion of unknown tag {tag}: {e}"),
        })?;
        if issued < reqs.len() {
            disk.submit(tag, &queued(issued))?;
            disk.kick()?;
            carries[tag] = issued;
            issued += 1;
        }
        env.clock.spin_ns(after_each_ns);
    }
    Ok(woken)
}

/// Writes the pattern to every offset, all in flight together, and flushes
/// it to the device.
pub fn write_pattern(
    disk: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    seed: u64,
    offsets: &[u64],
) -> Result<(), String> {
    let mut bufs: Vec<DmaBuf> = offsets.iter().map(|_| DmaBuf::new(IO_SIZE)).collect();
    let mut reqs = Vec::new();
    for (buf, &off) in bufs.iter_mut().zip(offsets) {
        fill_pattern(buf.as_mut_slice(), seed, off);
        reqs.push(Request::write(off, buf.phys(), IO_SIZE));
    }
    all_at_once(disk, env, p, &reqs, 0).map_err(|e| format!("writing the pattern: {e}"))?;
    flush_once(disk, env, p)?;
    Ok(())
}

/// Reads every offset back, all in flight together, and compares each with
/// the pattern.
pub fn verify_pattern(
    disk: &mut dyn Disk,
    env: &mut Env,
    p: &Params,
    seed: u64,
    offsets: &[u64],
) -> Result<(), String> {
    let bufs: Vec<DmaBuf> = offsets.iter().map(|_| DmaBuf::new(IO_SIZE)).collect();
    let reqs: Vec<Request> = bufs
        .iter()
        .zip(offsets)
        .map(|(b, &off)| Request::read(off, b.phys(), IO_SIZE))
        .collect();
    all_at_once(disk, env, p, &reqs, 0).map_err(|e| format!("reading the pattern back: {e}"))?;
    let mut want = vec![0u8; IO_SIZE];
    let mut bad = Vec::new();
    for (buf, &off) in bufs.iter().zip(offsets) {
        plan::fill_pattern(&mut want, seed, off);
        if let Some(pos) = first_difference(buf.as_slice(), &want) {
            bad.push((off, pos, buf.as_slice()[pos], want[pos]));
        }
    }
    if let Some((off, pos, got, exp)) = bad.first() {
        return Err(format!(
            "data mismatch in {} of {} blocks; first at offset {} byte {pos}: read {got:#04x}, wrote {exp:#04x}",
            bad.len(),
            offsets.len(),
            off + *pos as u64
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{Completion, Op};
    use crate::hw::fake::StepClock;
    use crate::timers::fake::CountingWake;
    use alloc::collections::VecDeque;
    use alloc::rc::Rc;
    use contract::exit::{KSFT_FAIL, KSFT_PASS};
    use core::cell::{Cell, RefCell};

    /// What the fake disk was asked to do, in order.
    type Log = Rc<RefCell<Vec<(Op, u64, usize, bool, usize)>>>;

    /// A RAM disk that completes a request on the first poll after its
    /// kick, or (stalled) only once the wake has been armed since.
    struct MemDisk {
        data: Vec<u8>,
        depth: usize,
        prepared: Vec<(usize, Request)>,
        inflight: VecDeque<(usize, Request, u32)>,
        stall: bool,
        wakes: Rc<Cell<u32>>,
        log: Log,
    }

    impl MemDisk {
        fn new(size: usize, depth: usize, log: &Log, wakes: &Rc<Cell<u32>>) -> MemDisk {
            MemDisk {
                data: vec![0; size],
                depth,
                prepared: vec![],
                inflight: VecDeque::new(),
                stall: false,
                wakes: wakes.clone(),
                log: log.clone(),
            }
        }
    }

    impl Disk for MemDisk {
        fn size(&self) -> u64 {
            self.data.len() as u64
        }
        fn depth(&self) -> usize {
            self.depth
        }
        fn max_transfer(&self) -> usize {
            1 << 20
        }
        fn submit(&mut self, tag: usize, req: &Request) -> Result<(), String> {
            assert!(tag < self.depth, "tag {tag}");
            assert!(
                self.inflight.iter().all(|(t, ..)| *t != tag),
                "tag {tag} reused while busy"
            );
            self.log
                .borrow_mut()
                .push((req.op, req.offset, req.len, req.queued, tag));
            self.prepared.push((tag, *req));
            Ok(())
        }
        fn kick(&mut self) -> Result<(), String> {
            let w = self.wakes.get();
            for (tag, r) in self.prepared.drain(..) {
                self.inflight.push_back((tag, r, w));
            }
            Ok(())
        }
        fn poll(&mut self) -> Option<Completion> {
            let &(tag, r, w) = self.inflight.front()?;
            if self.stall && self.wakes.get() == w {
                return None;
            }
            self.inflight.pop_front();
            let (off, len) = (r.offset as usize, r.len);
            if r.op == Op::Flush {
                return Some((tag, Ok(())));
            }
            // SAFETY: the workload's DmaBuf of `len` bytes.
            let buf = unsafe { core::slice::from_raw_parts_mut(r.buf as *mut u8, len) };
            match r.op {
                Op::Read => buf.copy_from_slice(&self.data[off..off + len]),
                Op::Write => self.data[off..off + len].copy_from_slice(buf),
                Op::Flush => {}
            }
            Some((tag, Ok(())))
        }
    }

    /// A wake that the stalled disk sees.
    struct SharedWake {
        inner: CountingWake,
        wakes: Rc<Cell<u32>>,
    }

    impl Wake for SharedWake {
        fn arm(&mut self) {
            self.inner.arm();
            self.wakes.set(self.wakes.get() + 1);
        }
        fn settle(&mut self) {
            self.inner.settle();
        }
    }

    fn params() -> Params {
        Params {
            iterations: 3,
            warmup: 2,
            think_us: 20,
            modes: contract::ModeSet::Both,
            write_check: true,
            write_blocks: 4,
            ..Params::default()
        }
    }

    fn target<'a>(name: &str, disk: Result<Box<dyn Disk + 'a>, String>) -> Target<'a> {
        Target {
            name: format!("{name}_probe"),
            controller: name.into(),
            path: "pci 00:1f.2 port 0".into(),
            disk,
        }
    }

    #[test]
    fn a_fake_run_prints_the_selftests_structure() {
        let log: Log = Rc::default();
        let wakes = Rc::new(Cell::new(0));
        let clock = StepClock::new(1000);
        clock.now.set(12_340_000);
        let mut wake = SharedWake {
            inner: CountingWake::default(),
            wakes: wakes.clone(),
        };
        let mut env = Env {
            clock: &clock,
            wake: &mut wake,
            nonce: 42,
        };
        let mut targets = vec![
            target(
                "ahci",
                Ok(Box::new(MemDisk::new(1 << 20, 32, &log, &wakes))),
            ),
            target("nvme", Err("nvme at 00:03.0: boom".into())),
        ];
        let missing = vec![(
            "virtio_blk".to_string(),
            "no PCI function at 00:04".to_string(),
        )];
        let boot = BootPhases {
            kernel_ms: 1.5,
            clocksource: "tsc".into(),
            ..Default::default()
        };
        let mut out = String::new();
        let code = run(
            &mut targets,
            &missing,
            &params(),
            Some(boot),
            &["tsc: 2600000 kHz (PIT channel 2, 50 ms)".into()],
            &mut env,
            &mut out,
        );
        assert_eq!(code, KSFT_FAIL);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "KTAP version 1");
        let b = BootPhases::find_in(lines[1]).unwrap().unwrap();
        assert_eq!(
            (b.header_ms, b.kernel_ms),
            (12.34, 1.5),
            "the header's TSC time"
        );
        assert_eq!(
            lines[2],
            format!("# kernel: uring-idle-probe {}", env!("CARGO_PKG_VERSION"))
        );
        assert!(
            lines[3].starts_with(
                "# params: iterations=3 warmup=2 think_us=20 think=spin mode=sleep,poll"
            ),
            "{}",
            lines[3]
        );
        assert_eq!(lines[4], "# tsc: 2600000 kHz (PIT channel 2, 50 ms)");
        assert_eq!(lines[5], "1..8");
        assert_eq!(
            lines[6],
            "# ahci_probe: pci 00:1f.2 port 0 controller=ahci size=1048576 bytes"
        );
        let results: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
            .collect();
        assert_eq!(results.len(), 8);
        assert_eq!(
            results[0],
            format!("ok 1 ahci_probe_sleep # SKIP {NO_SLEEP}")
        );
        assert!(
            results[1].starts_with("ok 2 ahci_probe_poll # n=3 p50_us="),
            "{}",
            results[1]
        );
        assert_eq!(
            results[2],
            "ok 3 ahci_probe_integrity # 4 blocks written and read back intact"
        );
        assert_eq!(
            results[3],
            "not ok 4 nvme_probe_sleep # nvme at 00:03.0: boom"
        );
        assert_eq!(
            results[5],
            "not ok 6 nvme_probe_integrity # nvme at 00:03.0: boom"
        );
        assert_eq!(
            results[6],
            "ok 7 virtio_blk_sleep # SKIP no PCI function at 00:04"
        );
        assert_eq!(
            results[7],
            "ok 8 virtio_blk_poll # SKIP no PCI function at 00:04"
        );
        assert_eq!(
            *lines.last().unwrap(),
            "# Totals: pass:2 fail:3 xfail:0 xpass:0 skip:3 error:0"
        );

        let records: Vec<Record> = lines
            .iter()
            .filter_map(|l| Record::find_in(l))
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            records.len(),
            5,
            "a record per measured or failed test, none for skips"
        );
        let poll = &records[0];
        assert_eq!(
            (
                poll.test.as_str(),
                poll.device.as_str(),
                poll.controller.as_str(),
                poll.mode.as_str()
            ),
            ("ahci_probe_poll", "ahci_probe", "ahci", "poll")
        );
        assert_eq!(
            (
                poll.samples_us.len(),
                poll.woken,
                poll.stats.as_ref().unwrap().n
            ),
            (3, 0, 3)
        );

        // The plan's I/O, in order: 2 warm-up and 3 measured reads at the
        // selftest's offsets, then 4 writes, a flush, 4 reads back.
        let log = log.borrow();
        let seed = seed_for("ahci_probe");
        let reads: Vec<u64> = log[..5].iter().map(|e| e.1).collect();
        let want: Vec<u64> = (0..5).map(|i| offset(seed, i, 256)).collect();
        assert_eq!(reads, want);
        assert!(log[..5]
            .iter()
            .all(|e| e.0 == Op::Read && e.2 == IO_SIZE && !e.3));
        let ops: Vec<Op> = log[5..].iter().map(|e| e.0).collect();
        assert_eq!(
            ops,
            [
                Op::Write,
                Op::Write,
                Op::Write,
                Op::Write,
                Op::Flush,
                Op::Read,
                Op::Read,
                Op::Read,
                Op::Read
            ]
        );
        let offs = pattern_offsets(mix(42 ^ seed), 4, 256);
        assert_eq!(log[5..9].iter().map(|e| e.1).collect::<Vec<_>>(), offs);
    }

    #[test]
    fn a_stalled_request_is_woken_at_its_deadline_and_counted() {
        let log: Log = Rc::default();
        let wakes = Rc::new(Cell::new(0));
        let clock = StepClock::new(1000);
        let mut wake = SharedWake {
            inner: CountingWake::default(),
            wakes: wakes.clone(),
        };
        let mut disk = MemDisk::new(1 << 20, 1, &log, &wakes);
        disk.stall = true;
        let p = Params {
            iterations: 3,
            warmup: 1,
            deadline_ms: 5,
            ..params()
        };
        let mut env = Env {
            clock: &clock,
            wake: &mut wake,
            nonce: 1,
        };
        let s = measure(&mut disk, &mut env, &p, 7).unwrap();
        assert_eq!(s.woken, 3, "the warm-up's wake is not counted");
        assert!(
            s.latencies_ns
                .iter()
                .all(|&t| t > 5_000_000 && t < 5_100_000),
            "{:?}",
            s.latencies_ns
        );
        assert_eq!(
            (wake.inner.armed, wake.inner.settled),
            (4, 4),
            "each wake settles before the next request"
        );
    }

    #[test]
    fn the_flush_workload_times_each_flush_after_a_write_of_its_own() {
        let log: Log = Rc::default();
        let wakes = Rc::new(Cell::new(0));
        let clock = StepClock::new(1000);
        let mut wake = SharedWake {
            inner: CountingWake::default(),
            wakes: wakes.clone(),
        };
        let mut disk = MemDisk::new(1 << 20, 1, &log, &wakes);
        disk.stall = true;
        let p = Params {
            workload: Workload::Flush,
            iterations: 3,
            warmup: 1,
            deadline_ms: 5,
            ..params()
        };
        let mut env = Env {
            clock: &clock,
            wake: &mut wake,
            nonce: 1,
        };
        let s = flushes(&mut disk, &mut env, &p, 7).unwrap();
        // Writes stall too, but only the flushes are timed and counted.
        assert_eq!(s.woken, 3);
        assert!(
            s.latencies_ns
                .iter()
                .all(|&t| t > 5_000_000 && t < 5_100_000),
            "{:?}",
            s.latencies_ns
        );
        let log = log.borrow();
        let ops: Vec<Op> = log.iter().map(|e| e.0).collect();
        assert_eq!(ops, [Op::Write, Op::Flush].repeat(4));
        // The writes go where the latency workload reads, 8 sectors each.
        let offs: Vec<u64> = log.iter().step_by(2).map(|e| e.1).collect();
        assert_eq!(offs, (0..4).map(|i| offset(7, i, 256)).collect::<Vec<_>>());
        assert!(log.iter().step_by(2).all(|e| e.2 == IO_SIZE));
    }

    #[test]
    fn the_neighbour_workload_measures_each_candidate_alone_then_beside_the_first_control() {
        let (log, nlog): (Log, Log) = (Rc::default(), Rc::default());
        let wakes = Rc::new(Cell::new(0));
        let clock = StepClock::new(1000);
        let mut wake = SharedWake {
            inner: CountingWake::default(),
            wakes: wakes.clone(),
        };
        let mut env = Env {
            clock: &clock,
            wake: &mut wake,
            nonce: 1,
        };
        let mut targets = vec![
            target("ahci", Ok(Box::new(MemDisk::new(1 << 20, 1, &log, &wakes)))),
            target(
                "virtio_blk",
                Ok(Box::new(MemDisk::new(1 << 20, 1, &nlog, &wakes))),
            ),
        ];
        let p = Params {
            workload: Workload::Neighbour,
            modes: contract::ModeSet::Poll,
            write_check: false,
            ..params()
        };
        let mut out = String::new();
        assert_eq!(
            run(&mut targets, &[], &p, None, &[], &mut env, &mut out),
            contract::exit::KSFT_PASS
        );
        let results: Vec<&str> = out.lines().filter(|l| l.starts_with("ok ")).collect();
        assert!(out.contains("\n1..3\n"), "{out}");
        assert!(results[0].starts_with("ok 1 ahci_probe_poll "), "{out}");
        assert!(
            results[1].starts_with("ok 2 ahci_probe_neighbour_poll "),
            "{out}"
        );
        assert!(
            results[2].starts_with("ok 3 virtio_blk_probe_poll "),
            "{out}"
        );
        let records: Vec<Record> = out
            .lines()
            .filter_map(Record::find_in)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            records.iter().map(|r| r.workload).collect::<Vec<_>>(),
            [Workload::Latency, Workload::Neighbour, Workload::Latency]
        );
        let n = records[1].neighbour.as_ref().unwrap();
        assert_eq!(n.controller, "virtio_blk");
        assert!(n.reads > 0 && n.reads_per_s > 0.0, "{n:?}");
        // The neighbour read back to back while the candidate was measured
        // beside it, and was idle again before its own test.
        let nlog = nlog.borrow();
        let mine = 2 + 3;
        assert!(nlog.len() > mine, "{}", nlog.len());
        // Every read it was given is counted, for the host trace's pairing.
        assert_eq!(n.issued as usize, nlog.len() - mine);
        assert!(n.issued > n.reads);
        assert!(nlog.iter().all(|e| e.0 == Op::Read));
        assert_eq!(log.borrow().len(), 2 * (2 + 3));
    }

    #[test]
    fn batches_reuse_tags_when_the_device_has_fewer_than_the_batch() {
        let log: Log = Rc::default();
        let wakes = Rc::new(Cell::new(0));
        let clock = StepClock::new(1000);
        let mut wake = SharedWake {
            inner: CountingWake::default(),
            wakes: wakes.clone(),
        };
        let mut disk = MemDisk::new(8 << 20, 4, &log, &wakes);
        let p = Params {
            workload: Workload::Batch,
            total_mb: 4,
            chunk_kb: 128,
            batch: 16,
            submit_sleep_us: 10,
            completion_sleep_us: 10,
            ..params()
        };
        let mut env = Env {
            clock: &clock,
            wake: &mut wake,
            nonce: 1,
        };
        let b = batch(&mut disk, &mut env, &p).unwrap();
        assert_eq!((b.batch_ns.len(), b.bytes, b.woken), (2, 4 << 20, 0));
        let log = log.borrow();
        assert_eq!(log.len(), 32);
        let mut offs: Vec<u64> = log.iter().map(|e| e.1).collect();
        offs.sort();
        assert_eq!(offs, (0..32).map(|i| i * 131072).collect::<Vec<_>>());
        assert!(log
            .iter()
            .all(|e| e.0 == Op::Read && e.2 == 131072 && e.3 && e.4 < 4));
        // Too much for the disk: the selftest's error.
        let p = Params { total_mb: 16, ..p };
        assert!(batch(&mut disk, &mut env, &p)
            .unwrap_err()
            .contains("the batch workload reads 16 MiB"));
    }

    #[test]
    fn the_budget_stops_a_slow_test_after_the_minimum_samples() {
        let log: Log = Rc::default();
        let wakes = Rc::new(Cell::new(0));
        let clock = StepClock::new(1000);
        let mut wake = SharedWake {
            inner: CountingWake::default(),
            wakes: wakes.clone(),
        };
        let mut targets = vec![target(
            "ahci",
            Ok(Box::new(MemDisk::new(1 << 20, 1, &log, &wakes))),
        )];
        let p = Params {
            iterations: 50,
            warmup: 0,
            think_us: 200,
            budget_ms: 1,
            modes: contract::ModeSet::Poll,
            write_check: false,
            ..params()
        };
        let mut env = Env {
            clock: &clock,
            wake: &mut wake,
            nonce: 1,
        };
        let mut out = String::new();
        assert_eq!(
            run(&mut targets, &[], &p, None, &[], &mut env, &mut out),
            KSFT_PASS
        );
        let why = format!(
            "stopped after {} of 50 I/Os: the 1 ms time budget was spent",
            contract::BUDGET_MIN_SAMPLES
        );
        assert!(out.contains(&format!("# ahci_probe: {why}\n")), "{out}");
        let r = out.lines().find_map(Record::find_in).unwrap().unwrap();
        assert_eq!(r.stopped_early.as_deref(), Some(why.as_str()));
        assert_eq!(r.samples_us.len(), contract::BUDGET_MIN_SAMPLES);
    }
}
