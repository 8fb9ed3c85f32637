//! Host-side evidence from QEMU's own trace events: how long each request
//! sat in QEMU between `fdmon_io_uring_add_sqe` (the SQE is queued) and
//! `fdmon_io_uring_cqe_handler` (its completion is handled). In the
//! baseline the SQE of a vCPU-thread request waits there for the main loop
//! to wake; patched it is submitted at once.
//!
//! The `log` trace backend with `-msg timestamp=on` writes lines like
//! `2026-11-22T01:56:35.986975Z fdmon_io_uring_add_sqe ctx 0x55d0 opaque
//! 0x7f12 opcode 22 fd 14 off 2727936 cqe_handler 0x7f34`. Requests are
//! attributed to disks by file descriptor (the xtask reads which image each
//! of QEMU's fds opens), paired by the cqe_handler pointer, and split by
//! order into boot I/O, warm-up, measured reads per mode and the write phase.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use anyhow::{Context, Result};
use contract::{Mode, Workload};

/// The events every traced run enables.
pub const EVENTS: &[&str] = &[
    "fdmon_io_uring_add_sqe",
    "fdmon_io_uring_cqe_handler",
    "luring_co_submit",
];

/// io_uring opcodes QEMU's block/io_uring.c uses (include/uapi io_uring.h).
const OP_FSYNC: u32 = 3;
const OP_READ: u32 = 22;
const OP_WRITE: u32 = 23;
const OP_READV: u32 = 1;
const OP_WRITEV: u32 = 2;

fn is_read(op: u32) -> bool {
    op == OP_READ || op == OP_READV
}

fn is_write(op: u32) -> bool {
    op == OP_WRITE || op == OP_WRITEV || op == OP_FSYNC
}

/// One traced line.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An SQE queued for `fd`; `handler` identifies its completion.
    Queued {
        t_us: i64,
        fd: i32,
        opcode: u32,
        offset: u64,
        handler: u64,
    },
    /// The completion of the SQE whose handler is `handler`.
    Completed { t_us: i64, handler: u64, res: i64 },
}

/// Microseconds since the epoch of `2026-11-22T01:56:35.986975Z`.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Fractions of any length, as microseconds.
    let frac_us = format!("{frac:0<6}")[..6].parse::<i64>().ok()?;
    Some(((days_from_civil(y, m, day) * 24 + hh) * 60 + mm) * 60_000_000 + ss * 1_000_000 + frac_us)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn field<'a>(words: &[&'a str], name: &str) -> Option<&'a str> {
    words.windows(2).find(|w| w[0] == name).map(|w| w[1])
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// One line of a trace log, if it is an event we pair.
pub fn parse_line(line: &str) -> Option<Event> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let t_us = parse_timestamp(words.first()?)?;
    match *words.get(1)? {
        "fdmon_io_uring_add_sqe" => Some(Event::Queued {
            t_us,
            fd: field(&words, "fd")?.parse().ok()?,
            opcode: field(&words, "opcode")?.parse().ok()?,
            offset: field(&words, "off")?.parse().ok()?,
            handler: hex(field(&words, "cqe_handler")?)?,
        }),
        "fdmon_io_uring_cqe_handler" => Some(Event::Completed {
            t_us,
            handler: hex(field(&words, "cqe_handler")?)?,
            res: field(&words, "cqe_res")?.parse().ok()?,
        }),
        _ => None,
    }
}

/// One request's life inside QEMU.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub fd: i32,
    pub opcode: u32,
    pub offset: u64,
    pub queued_us: i64,
    pub queued_for_us: u32,
}

/// Requests paired from a log's events, and how many queued SQEs never saw
/// their completion (a truncated log, or a run that was killed).
#[derive(Debug, Default)]
pub struct Paired {
    pub requests: Vec<Request>,
    pub unfinished: usize,
}

/// Pairs each queued SQE with the next completion of the same handler.
/// A handler pointer is reused by later requests, so each is a FIFO.
pub fn pair(events: impl IntoIterator<Item = Event>) -> Paired {
    let mut open: HashMap<u64, VecDeque<(i64, i32, u32, u64)>> = HashMap::new();
    let mut requests = Vec::new();
    for e in events {
        match e {
            Event::Queued {
                t_us,
                fd,
                opcode,
                offset,
                handler,
            } => open
                .entry(handler)
                .or_default()
                .push_back((t_us, fd, opcode, offset)),
            Event::Completed { t_us, handler, .. } => {
                if let Some((q, fd, opcode, offset)) =
                    open.get_mut(&handler).and_then(|v| v.pop_front())
                {
                    requests.push(Request {
                        fd,
                        opcode,
                        offset,
                        queued_us: q,
                        queued_for_us: (t_us - q).clamp(0, i64::from(u32::MAX)) as u32,
                    });
                }
            }
        }
    }
    requests.sort_by_key(|r| r.queued_us);
    Paired {
        requests,
        unfinished: open.values().map(VecDeque::len).sum(),
    }
}

pub fn read_log(path: &Path) -> Result<Paired> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading trace log {}", path.display()))?;
    Ok(pair(text.lines().filter_map(parse_line)))
}

/// One disk's requests, split by what the guest was doing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskPhases {
    /// Reads before the selftest's first warm-up read (partition scans).
    pub boot: Vec<u32>,
    /// Time queued in QEMU of each measured request (reads; the flush
    /// workload's flushes), per mode and workload, in order.
    pub measured: BTreeMap<(Mode, Workload), Vec<u32>>,
    /// Writes, flushes and the read-back of the integrity check.
    pub write_phase: usize,
    /// Whether the counts matched the guest's plan; if not, `measured` is
    /// empty and `boot` holds every read.
    pub matched: bool,
}

/// One test of a disk: its mode, workload, discarded and measured
/// requests.
pub type Step = (Mode, Workload, u32, u32);

/// What a guest did on one disk, in order: per test, the requests it
/// discarded (warm-up), then those it measured: reads, or for the flush
/// workload flushes (each after a write of its own).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskPlan(pub Vec<Step>);

impl DiskPlan {
    /// The same warm-up and count of latency reads in every mode.
    pub fn uniform(modes: &[Mode], warmup: u32, measured: u32) -> DiskPlan {
        DiskPlan(
            modes
                .iter()
                .map(|&m| (m, Workload::Latency, warmup, measured))
                .collect(),
        )
    }

    /// Each disk's plan as its records say it ran: a latency (or flush, or
    /// neighbour) test measured as many requests as it has samples (fewer
    /// than asked when its budget stopped it), after `warmup`; a batch test
    /// has no warm-up and read its bytes in `chunk_bytes` requests.
    /// Integrity records are the write phase, which the first write starts.
    pub fn from_records(
        records: &[contract::Record],
        warmup: u32,
        chunk_bytes: u64,
    ) -> BTreeMap<String, DiskPlan> {
        let mut out: BTreeMap<String, DiskPlan> = BTreeMap::new();
        // Disks whose write phase has begun: reads after it are not
        // counted back from the first write.
        let mut written = std::collections::BTreeSet::new();
        for r in records {
            let Ok(mode) = r.mode.parse::<Mode>() else {
                written.insert(r.controller.clone());
                continue;
            };
            let step = match &r.batch {
                Some(b) => (mode, r.workload, 0, (b.bytes / chunk_bytes.max(1)) as u32),
                None => (mode, r.workload, warmup, r.samples_us.len() as u32),
            };
            out.entry(r.controller.clone()).or_default().0.push(step);
            // The neighbour's reads meanwhile sit on its own disk, in this
            // order among its tests: counted, none measured.
            match &r.neighbour {
                Some(n) if !written.contains(&n.controller) => {
                    let reads = (mode, Workload::Neighbour, n.issued as u32, 0);
                    out.entry(n.controller.clone()).or_default().0.push(reads);
                }
                _ => {}
            }
        }
        out
    }

    /// Whether its tests time flushes (the flush workload) rather than
    /// reads.
    fn flushes(&self) -> bool {
        self.0.iter().any(|s| s.1 == Workload::Flush)
    }
}

/// Splits one disk's requests (in queue order) by what the guest did:
/// boot reads, then per test its discarded and its measured requests, then
/// the write phase (writes, a flush, reads back). Reads are counted back
/// from the first write, so boot I/O of any length is kept apart; the flush
/// workload's flushes are the first fsyncs (boot I/O writes nothing), each
/// after its own write, and the write phase follows the last of them.
pub fn phases(reqs: &[&Request], plan: &DiskPlan) -> DiskPhases {
    let first_write = reqs
        .iter()
        .position(|r| is_write(r.opcode))
        .unwrap_or(reqs.len());
    let reads: Vec<u32> = reqs[..first_write]
        .iter()
        .filter(|r| is_read(r.opcode))
        .map(|r| r.queued_for_us)
        .collect();
    let planned: usize = plan.0.iter().map(|&(_, _, w, n)| (w + n) as usize).sum();
    let unmatched = |boot: Vec<u32>| DiskPhases {
        boot,
        measured: BTreeMap::new(),
        write_phase: reqs.len() - first_write,
        matched: false,
    };
    if plan.flushes() {
        let fsyncs: Vec<usize> = (0..reqs.len())
            .filter(|&i| reqs[i].opcode == OP_FSYNC)
            .collect();
        if fsyncs.len() < planned || planned == 0 {
            return unmatched(reads);
        }
        let queued: Vec<u32> = fsyncs.iter().map(|&i| reqs[i].queued_for_us).collect();
        return DiskPhases {
            boot: reads,
            measured: split(&queued, 0, plan),
            write_phase: reqs.len() - fsyncs[planned - 1] - 1,
            matched: true,
        };
    }
    if reads.len() < planned {
        return unmatched(reads);
    }
    let boot_n = reads.len() - planned;
    DiskPhases {
        boot: reads[..boot_n].to_vec(),
        measured: split(&reads, boot_n, plan),
        write_phase: reqs.len() - first_write,
        matched: true,
    }
}

/// The measured requests of each test of `plan`, laid out from `at`.
fn split(queued: &[u32], mut at: usize, plan: &DiskPlan) -> BTreeMap<(Mode, Workload), Vec<u32>> {
    let mut measured = BTreeMap::new();
    for &(m, w, warmup, n) in &plan.0 {
        let start = at + warmup as usize;
        if n > 0 {
            measured.insert((m, w), queued[start..start + n as usize].to_vec());
        }
        at = start + n as usize;
    }
    measured
}

/// Every disk's phases, by the name `fds` gives each file descriptor and
/// the plan `plans` has for that name (none: all its reads are boot I/O).
pub fn by_disk(
    paired: &Paired,
    fds: &BTreeMap<i32, String>,
    plans: &BTreeMap<String, DiskPlan>,
) -> BTreeMap<String, DiskPhases> {
    let mut per: BTreeMap<&str, Vec<&Request>> = BTreeMap::new();
    for r in &paired.requests {
        if let Some(name) = fds.get(&r.fd) {
            per.entry(name).or_default().push(r);
        }
    }
    let none = DiskPlan::default();
    per.into_iter()
        .map(|(name, reqs)| {
            let plan = plans.get(name).unwrap_or(&none);
            (name.to_string(), phases(&reqs, plan))
        })
        .collect()
}

/// Whether a QEMU binary's trace backend has every event we need, from its
/// `-trace help` output; `Err` says which are missing.
pub fn check_events(trace_help: &str) -> std::result::Result<(), String> {
    let have: std::collections::HashSet<&str> = trace_help.lines().map(str::trim).collect();
    let missing: Vec<&str> = EVENTS
        .iter()
        .copied()
        .filter(|e| !have.contains(e))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "its trace backend has no {} event (a QEMU before 10.2, or a build without the log backend): no host-side evidence",
            missing.join(", ")
        ))
    }
}

/// Runs `binary -trace help` and checks the events.
pub fn binary_supports(binary: &Path) -> std::result::Result<(), String> {
    let qemu = crate::qemu::QemuBinary::of(binary);
    check_events(qemu.trace_help().map_err(|e| format!("{e:#}"))?)
        .map_err(|e| format!("{}: {e}", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: &str = "2026-11-22T01:56:35.986975Z fdmon_io_uring_add_sqe ctx 0x55d01 opaque 0x7f12 opcode 22 fd 14 off 2727936 cqe_handler 0x7f34a0";
    const CQE: &str = "2026-11-22T01:56:35.993875Z fdmon_io_uring_cqe_handler ctx 0x55d01 cqe_handler 0x7f34a0 cqe_res 4096";

    #[test]
    fn lines_parse_with_their_microsecond_stamps() {
        let Some(Event::Queued {
            t_us,
            fd,
            opcode,
            offset,
            handler,
        }) = parse_line(ADD)
        else {
            panic!("not parsed")
        };
        assert_eq!((fd, opcode, offset, handler), (14, 22, 2_727_936, 0x7f34a0));
        let Some(Event::Completed { t_us: t2, res, .. }) = parse_line(CQE) else {
            panic!("not parsed")
        };
        assert_eq!((t2 - t_us, res), (6900, 4096));
        assert!(parse_line("2026-11-22T01:56:35.1Z luring_co_submit bs 0x1 req 0x2 fd 14 offset 0 nbytes 4096 type 1").is_none());
        assert!(parse_line("garbage").is_none());
        // Across midnight and month ends.
        assert_eq!(
            parse_timestamp("2026-03-01T00:00:00.000001Z").unwrap()
                - parse_timestamp("2026-02-28T23:59:59.999999Z").unwrap(),
            2
        );
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z"), Some(1_500_000));
    }

    fn ev_add(t: i64, fd: i32, op: u32, h: u64) -> Event {
        Event::Queued {
            t_us: t,
            fd,
            opcode: op,
            offset: 0,
            handler: h,
        }
    }

    fn ev_cqe(t: i64, h: u64) -> Event {
        Event::Completed {
            t_us: t,
            handler: h,
            res: 4096,
        }
    }

    #[test]
    fn pairing_follows_each_handler_in_order_and_counts_the_unfinished() {
        // Two disks interleaved; handler 1 reused by a second request.
        let p = pair([
            ev_add(0, 10, OP_READ, 1),
            ev_add(5, 11, OP_READ, 2),
            ev_cqe(7000, 1),
            ev_add(7100, 10, OP_READ, 1),
            ev_cqe(7150, 2),
            ev_cqe(7160, 1),
            ev_add(8000, 11, OP_READ, 3),
        ]);
        let got: Vec<(i32, u32)> = p.requests.iter().map(|r| (r.fd, r.queued_for_us)).collect();
        assert_eq!(got, [(10, 7000), (11, 7145), (10, 60)]);
        assert_eq!(p.unfinished, 1);
    }

    fn reqs(ops: &[(u32, u32)]) -> Vec<Request> {
        ops.iter()
            .enumerate()
            .map(|(i, &(op, q))| Request {
                fd: 9,
                opcode: op,
                offset: 0,
                queued_us: i as i64,
                queued_for_us: q,
            })
            .collect()
    }

    #[test]
    fn phases_keep_boot_warmup_and_writes_apart() {
        // 3 boot reads, then per mode 2 warm-up + 4 measured, then 2 writes,
        // a flush and 2 read-backs.
        let mut ops = vec![(OP_READ, 1); 3];
        ops.extend([(OP_READ, 50), (OP_READ, 50)]);
        ops.extend([
            (OP_READ, 7000),
            (OP_READ, 7001),
            (OP_READ, 7002),
            (OP_READ, 7003),
        ]);
        ops.extend([(OP_READ, 60), (OP_READ, 60)]);
        ops.extend([
            (OP_READ, 6900),
            (OP_READ, 6901),
            (OP_READ, 6902),
            (OP_READ, 6903),
        ]);
        ops.extend([
            (OP_WRITE, 5),
            (OP_WRITE, 5),
            (OP_FSYNC, 5),
            (OP_READ, 5),
            (OP_READ, 5),
        ]);
        let r = reqs(&ops);
        let refs: Vec<&Request> = r.iter().collect();
        let plan = DiskPlan::uniform(&[Mode::Sleep, Mode::Poll], 2, 4);
        let p = phases(&refs, &plan);
        assert!(p.matched);
        assert_eq!(p.boot, [1, 1, 1]);
        let (sleep, poll) = (
            (Mode::Sleep, Workload::Latency),
            (Mode::Poll, Workload::Latency),
        );
        assert_eq!(p.measured[&sleep], [7000, 7001, 7002, 7003]);
        assert_eq!(p.measured[&poll], [6900, 6901, 6902, 6903]);
        assert_eq!(p.write_phase, 5);
        // Fewer reads than the plan: nothing is called measured.
        let short: Vec<&Request> = refs[..8].to_vec();
        let p = phases(&short, &plan);
        assert!(!p.matched && p.measured.is_empty() && p.boot.len() == 8);
        // A test its budget stopped measured fewer: the plan from the
        // records says so, and the split still lines up.
        let stopped = DiskPlan(vec![
            (Mode::Sleep, Workload::Latency, 2, 4),
            (Mode::Poll, Workload::Latency, 2, 3),
        ]);
        let p = phases(&refs[..refs.len() - 6], &stopped);
        assert!(p.matched, "{p:?}");
        assert_eq!(p.measured[&poll], [6900, 6901, 6902]);
    }

    #[test]
    fn a_neighbours_reads_are_counted_on_its_own_disk_none_measured() {
        // virtio_blk's own test (1 warm-up, 3 measured), then the reads it
        // served as nvme's neighbour, 7 in all; no write check after.
        let nb = |issued| contract::Neighbour {
            controller: "virtio_blk".into(),
            reads: 5,
            reads_per_s: 1000.0,
            issued,
        };
        let rec = |c: &str, w, neighbour| contract::Record {
            samples_us: vec![1; 3],
            workload: w,
            neighbour,
            ..contract::Record::new(c, c, c, "/dev/x", "poll")
        };
        let records = [
            rec("virtio_blk", Workload::Latency, None),
            rec("nvme", Workload::Latency, None),
            rec("nvme", Workload::Neighbour, Some(nb(7))),
        ];
        let plans = DiskPlan::from_records(&records, 1, 4096);
        assert_eq!(
            plans["virtio_blk"].0,
            [
                (Mode::Poll, Workload::Latency, 1, 3),
                (Mode::Poll, Workload::Neighbour, 7, 0)
            ]
        );
        let mut ops = vec![(OP_READ, 1); 2];
        ops.extend([(OP_READ, 50), (OP_READ, 60), (OP_READ, 61), (OP_READ, 62)]);
        ops.extend([(OP_READ, 9); 7]);
        let r = reqs(&ops);
        let refs: Vec<&Request> = r.iter().collect();
        let p = phases(&refs, &plans["virtio_blk"]);
        assert!(p.matched, "{p:?}");
        assert_eq!(p.boot, [1, 1]);
        assert_eq!(p.measured.len(), 1, "{p:?}");
        assert_eq!(p.measured[&(Mode::Poll, Workload::Latency)], [60, 61, 62]);
        // With its write check between (2 writes, a flush, 2 reads back),
        // the neighbour's later reads follow the write phase: not counted
        // back from the first write.
        let mut records = records.to_vec();
        records.insert(
            1,
            contract::Record::new(
                "virtio_blk",
                "virtio_blk",
                "virtio_blk",
                "/dev/x",
                "integrity",
            ),
        );
        let plans = DiskPlan::from_records(&records, 1, 4096);
        assert_eq!(
            plans["virtio_blk"].0,
            [(Mode::Poll, Workload::Latency, 1, 3)]
        );
        let mut ops = ops[..6].to_vec();
        ops.extend([
            (OP_WRITE, 5),
            (OP_WRITE, 5),
            (OP_FSYNC, 5),
            (OP_READ, 5),
            (OP_READ, 5),
        ]);
        ops.extend([(OP_READ, 9); 7]);
        let r = reqs(&ops);
        let refs: Vec<&Request> = r.iter().collect();
        let p = phases(&refs, &plans["virtio_blk"]);
        assert!(p.matched, "{p:?}");
        assert_eq!(p.measured[&(Mode::Poll, Workload::Latency)], [60, 61, 62]);
    }

    #[test]
    fn the_flush_workload_is_paired_by_its_flushes_not_its_reads() {
        // 2 boot reads; 1 warm-up and 3 measured write-then-flush pairs;
        // the write phase: 2 writes, a flush, 2 read-backs.
        let mut ops = vec![(OP_READ, 1); 2];
        ops.extend([(OP_WRITE, 9), (OP_FSYNC, 40)]);
        for t in [499_000, 499_001, 499_002] {
            ops.extend([(OP_WRITE, 9), (OP_FSYNC, t)]);
        }
        ops.extend([
            (OP_WRITE, 5),
            (OP_WRITE, 5),
            (OP_FSYNC, 7),
            (OP_READ, 5),
            (OP_READ, 5),
        ]);
        let r = reqs(&ops);
        let refs: Vec<&Request> = r.iter().collect();
        let plan = DiskPlan(vec![(Mode::Poll, Workload::Flush, 1, 3)]);
        let p = phases(&refs, &plan);
        assert!(p.matched, "{p:?}");
        assert_eq!(p.boot, [1, 1]);
        assert_eq!(
            p.measured[&(Mode::Poll, Workload::Flush)],
            [499_000, 499_001, 499_002]
        );
        assert_eq!(p.write_phase, 5);
        // Read-counting would have called the boot reads the flushes.
        let reads = DiskPlan(vec![(Mode::Poll, Workload::Latency, 0, 2)]);
        assert!(phases(&refs, &reads).measured[&(Mode::Poll, Workload::Latency)] == [1, 1]);
        // Fewer flushes than planned: nothing is measured.
        let p = phases(&refs[..6], &plan);
        assert!(!p.matched && p.measured.is_empty());
    }

    #[test]
    fn a_binary_without_the_events_is_named() {
        assert!(check_events(
            "fdmon_io_uring_add_sqe\nfdmon_io_uring_cqe_handler\nluring_co_submit\n"
        )
        .is_ok());
        let e = check_events("luring_co_submit\nvirtio_blk_req_complete\n").unwrap_err();
        assert!(
            e.contains("fdmon_io_uring_add_sqe, fdmon_io_uring_cqe_handler")
                && e.contains("no host-side evidence"),
            "{e}"
        );
    }
}
