//! The host-trace parser on QEMU trace logs recorded from a real run
//! (`--controllers ahci,lsi,usb_storage,virtio_blk,nvme --iterations 10
//! --rounds 1 --mode poll`, Debian QEMU 10.2.2 with the fix reverted, then
//! patched), and on damaged and interleaved copies of them.

use std::collections::BTreeMap;

use contract::{Mode, Workload};
use xtask::trace::{by_disk, pair, parse_line, DiskPhases, DiskPlan, Event, Paired};

const BASELINE: &str = include_str!("fixtures/trace-baseline.log");
const PATCHED: &str = include_str!("fixtures/trace-patched.log");

/// The descriptors that run's QEMU had open on each image (its JSON's `fds`).
fn fds() -> BTreeMap<i32, String> {
    [
        (11, "virtio_blk"),
        (12, "lsi"),
        (13, "usb_storage"),
        (14, "nvme"),
        (16, "ahci"),
    ]
    .into_iter()
    .map(|(f, n)| (f, n.to_string()))
    .collect()
}

fn parse(text: &str) -> Paired {
    pair(text.lines().filter_map(parse_line))
}

fn disks(text: &str) -> BTreeMap<String, DiskPhases> {
    let plan = DiskPlan::uniform(&[Mode::Poll], 10, 10);
    let plans = fds().into_values().map(|c| (c, plan.clone())).collect();
    by_disk(&parse(text), &fds(), &plans)
}

fn median(v: &[u32]) -> u32 {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

#[test]
fn baseline_vcpu_thread_requests_wait_in_qemu_for_the_tick() {
    let d = disks(BASELINE);
    assert_eq!(d.len(), 5);
    for (name, p) in &d {
        // One partition-table read at boot, 10 warm-up + 10 measured reads,
        // 32 writes + a flush + 32 reads back: matched exactly.
        assert!(p.matched, "{name}");
        assert_eq!(
            (
                p.boot.len(),
                p.measured[&(Mode::Poll, Workload::Latency)].len(),
                p.write_phase
            ),
            (1, 10, 65),
            "{name}"
        );
    }
    // The stall, seen from the host: the SQE waits ~7 ms for the main loop
    // (guest p50 8 ms = tick 10 ms - think 2 ms; the rest is guest-side).
    for stalled in ["ahci", "lsi", "usb_storage"] {
        let m = median(&d[stalled].measured[&(Mode::Poll, Workload::Latency)]);
        assert!((5_000..10_000).contains(&m), "{stalled}: {m} us");
    }
    for control in ["virtio_blk", "nvme"] {
        let m = median(&d[control].measured[&(Mode::Poll, Workload::Latency)]);
        assert!(m < 500, "{control}: {m} us");
    }
}

#[test]
fn patched_requests_are_submitted_at_once() {
    let d = disks(PATCHED);
    for (name, p) in &d {
        assert!(p.matched, "{name}");
        let m = median(&p.measured[&(Mode::Poll, Workload::Latency)]);
        assert!(m < 500, "{name}: {m} us queued");
    }
    assert_eq!(parse(PATCHED).unfinished, 0);
}

#[test]
fn a_truncated_log_keeps_what_is_whole_and_counts_the_rest() {
    let lines: Vec<&str> = BASELINE.lines().collect();
    // Cut in the middle of a request: its SQE is queued, its completion lost.
    let cut = lines
        .iter()
        .rposition(|l| l.contains("fdmon_io_uring_add_sqe"))
        .unwrap();
    let text = lines[..=cut].join("\n");
    let p = parse(&text);
    assert_eq!(p.unfinished, 1);
    // Cut at 40%: the disks measured later have fewer reads than the plan
    // and claim no measured figures; earlier ones stay whole.
    let text = lines[..lines.len() * 2 / 5].join("\n");
    let d = disks(&text);
    assert!(d.values().any(|p| p.matched), "{d:?}");
    for p in d.values().filter(|p| !p.matched) {
        assert!(p.measured.is_empty());
    }
    // A half-written last line is ignored, not an error.
    let torn = format!("{}\n2026-11-22T02:47:39.69", lines[..20].join("\n"));
    assert!(parse(&torn).requests.len() <= 10);
}

#[test]
fn interleaved_disks_pair_by_handler() {
    // Two disks' recorded requests, merged so that each request's queueing
    // and completion straddle the other disk's: A add, B add, A done, B done.
    let events: Vec<Event> = BASELINE.lines().filter_map(parse_line).collect();
    let fd_of = |e: &Event| match e {
        Event::Queued { fd, .. } => Some(*fd),
        _ => None,
    };
    let requests_of = |fd: i32| -> Vec<(Event, Event)> {
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if fd_of(e) == Some(fd) {
                out.push((e.clone(), events[i + 1].clone()));
            }
        }
        out
    };
    let (ahci, nvme) = (requests_of(16), requests_of(14));
    let t = |e: &Event| match e {
        Event::Queued { t_us, .. } | Event::Completed { t_us, .. } => *t_us,
    };
    let n = ahci.len().min(nvme.len());
    let mut merged = Vec::new();
    for ((aq, ac), (nq, nc)) in ahci.iter().zip(&nvme) {
        merged.extend([aq.clone(), nq.clone(), ac.clone(), nc.clone()]);
    }
    let p = pair(merged);
    assert_eq!((p.unfinished, p.requests.len()), (0, 2 * n));
    // Each request keeps exactly the time it had on its own.
    for (fd, reqs) in [(16, &ahci), (14, &nvme)] {
        let mut want: Vec<u32> = reqs[..n]
            .iter()
            .map(|(q, c)| (t(c) - t(q)) as u32)
            .collect();
        let mut got: Vec<u32> = p
            .requests
            .iter()
            .filter(|r| r.fd == fd)
            .map(|r| r.queued_for_us)
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "fd {fd}");
    }
}
