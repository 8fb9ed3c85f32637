//! `scan`'s findings: one per cell (a controller in one configuration
//! under one workload), decided by typed rules from the probe's records or
//! the boot's failure, and put into words once (`Finding::line`), a table,
//! the "what to change" advice and the exit code.
//!
//! The probe arms no timer and the scan boots it with no network, so a
//! request whose wakeup QEMU lost completes only when the probe's own
//! deadline wake comes: it is counted in the record's `woken`. A request
//! that was only slow completes before a doubled deadline; a lost one waits
//! that one too. So a cell is `lost wakeup` only when its requests needed
//! the wake at both deadlines.

use std::path::PathBuf;

use contract::{Config, Controller, Record, Workload};
use serde::Serialize;

use crate::campaign::{BootOutcome, BootRecord};
use crate::failure::Failure;

/// Measured requests per cell. The class of bug the scan looks for delays
/// every request that takes the path (measured: every read, batch and flush
/// of the reverted build waited the full wake, none of the fixed build's),
/// so a few decide; 5, after the probe's one discarded warm-up read.
pub const REQUESTS: u32 = 5;

/// The probe's first deadline, ms. A healthy request completes in well
/// under a millisecond under TCG (0.06-0.5 ms measured, a loaded host a
/// few ms): 100 ms is 200 times the slowest, and a request that was only
/// slow gets the retry. Each request of a lost cell costs the deadline and
/// the wake's settling: measured on the reverted 10.2.2, a boot of four
/// lost rows took 7.2 s at 200 ms (warm-up, 5 reads, and the one-block
/// write, flush and read-back per row).
pub const DEADLINE_MS: u64 = 100;

/// Measured requests per cell in the retry at the doubled deadline: a
/// lost wakeup holds every request, so two show the wait growing.
pub const RETRY_REQUESTS: u32 = 2;

/// One cell's finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// Every request completed before the deadline with no wake.
    Clean {
        requests: u32,
        max_ms: f64,
    },
    /// Requests completed only after the probe's wake, at both deadlines.
    LostWakeup {
        requests: u32,
        woken: u32,
        /// The woken requests' median wait at the first and the doubled
        /// deadline, ms.
        waited_ms: f64,
        retried_ms: f64,
        /// Their median time queued in QEMU (`fdmon_io_uring_*` trace
        /// events, 10.2 and later), when traced.
        queued_ms: Option<f64>,
    },
    /// A request still unfinished after the wake, or a QEMU that never let
    /// the guest print (`at_start`).
    Hung {
        at_start: bool,
        why: String,
    },
    Crashed {
        signal: i32,
    },
    /// QEMU rejected a combination the table thought valid.
    Refused {
        why: String,
    },
    /// Known before booting.
    NotApplicable {
        why: String,
    },
    /// Booted, but nothing that counts came back (bad exit, invalid KTAP).
    Unmeasured {
        why: String,
    },
}

impl Finding {
    pub fn name(&self) -> &'static str {
        match self {
            Finding::Clean { .. } => "clean",
            Finding::LostWakeup { .. } => "lost wakeup",
            Finding::Hung { at_start: true, .. } => "hung at start",
            Finding::Hung { .. } => "hung",
            Finding::Crashed { .. } => "crashed",
            Finding::Refused { .. } => "refused",
            Finding::NotApplicable { .. } => "not applicable",
            Finding::Unmeasured { .. } => "unmeasured",
        }
    }

    /// A finding that makes the scan exit 1.
    pub fn is_bad(&self) -> bool {
        matches!(
            self,
            Finding::LostWakeup { .. } | Finding::Hung { .. } | Finding::Crashed { .. }
        )
    }

    /// Whether the cell was measured (clean or not).
    pub fn measured(&self) -> bool {
        self.is_bad() || matches!(self, Finding::Clean { .. })
    }

    /// The finding in words, once.
    pub fn line(&self) -> String {
        match self {
            Finding::Clean { requests, max_ms } => {
                format!("clean: {requests} of {requests} requests completed with no wake (max {max_ms:.2} ms)")
            }
            Finding::LostWakeup {
                requests,
                woken,
                waited_ms,
                retried_ms,
                queued_ms,
            } => {
                let evidence = match queued_ms {
                    Some(q) => format!("queued in QEMU {q:.1} ms (host trace)"),
                    None => "the evidence is the guest's wake alone (no trace event for this path)".into(),
                };
                format!(
                    "lost wakeup: {woken} of {requests} requests completed only after the probe's wake, \
                     waiting {waited_ms:.1} ms, and {retried_ms:.1} ms at the doubled deadline; {evidence}"
                )
            }
            Finding::Hung { at_start: true, why } => format!("hung at start: {why}"),
            Finding::Hung { why, .. } => format!(
                "hung: {why} (the probe's wake ends only the main loop's sleep: a wakeup lost in an iothread's event loop shows this way)"
            ),
            Finding::Crashed { signal } => format!("crashed: QEMU killed by signal {signal}"),
            Finding::Refused { why } => format!("refused: {why}"),
            Finding::NotApplicable { why } => format!("not applicable: {why}"),
            Finding::Unmeasured { why } => format!("unmeasured: {why}"),
        }
    }
}

/// One cell and its finding, with the files that show it.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub controller: String,
    pub config: Config,
    pub workload: String,
    #[serde(flatten)]
    pub finding: Finding,
    pub line: String,
    /// The console log (its first line the QEMU command), QEMU's stderr
    /// and the command line, for every finding but clean and not
    /// applicable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Cell {
    pub fn new(c: &Controller, config: Config, workload: Workload, finding: Finding) -> Cell {
        Cell {
            controller: c.name.into(),
            config,
            workload: workload.name().into(),
            line: finding.line(),
            finding,
            console: None,
            stderr: None,
            command: None,
        }
    }
}

/// What one try of a cell showed.
#[derive(Clone, Debug, PartialEq)]
pub enum Tried {
    /// The guest measured it: requests, how many needed the wake, the
    /// woken ones' waits (µs), every request's, and the host trace's queue
    /// times for it.
    Measured {
        requests: u32,
        woken: u32,
        woken_us: Vec<u32>,
        all_us: Vec<u32>,
        queued_us: Vec<u32>,
        /// A test the probe gave up on: no completion long after the wake.
        unfinished: Option<String>,
    },
    /// The boot failed as a whole.
    Failed(Failure),
    /// The boot reported, but without this controller's record.
    Missing(String),
}

/// What `record` of a boot says of `controller`, at deadline `deadline_ms`.
pub fn tried(b: &BootRecord, controller: &str, deadline_ms: u64) -> Tried {
    let m = match &b.outcome {
        BootOutcome::Failed(f) => return Tried::Failed(f.kind.clone()),
        BootOutcome::Measured(m) => m,
    };
    let recs: Vec<&Record> = m
        .records
        .iter()
        .filter(|r| r.controller == controller && r.mode != "integrity")
        .collect();
    if recs.is_empty() {
        let why = m
            .skipped
            .iter()
            .find(|s| s.controller == controller)
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| "the guest reported no test of it".into());
        return Tried::Missing(why);
    }
    let all_us: Vec<u32> = recs.iter().flat_map(|r| r.samples_us.clone()).collect();
    let bound = (deadline_ms * 1000) as u32;
    Tried::Measured {
        requests: all_us.len() as u32,
        woken: recs.iter().map(|r| r.woken).sum(),
        woken_us: all_us.iter().copied().filter(|&u| u >= bound).collect(),
        queued_us: m
            .host
            .iter()
            .filter(|h| h.controller == controller)
            .flat_map(|h| h.queued_us.clone())
            .collect(),
        // The write phase's record too: a write or flush can hang.
        unfinished: m
            .records
            .iter()
            .filter(|r| r.controller == controller)
            .filter_map(|r| r.reason.as_ref())
            .find(|why| why.contains("no completion"))
            .cloned(),
        all_us,
    }
}

fn median_ms(v: &[u32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    f64::from(s[s.len() / 2]) / 1000.0
}

/// The finding of a first try, or `None` when it must be tried again at
/// the doubled deadline (requests needed the wake).
pub fn first(t: &Tried) -> Option<Finding> {
    match t {
        Tried::Failed(f) => Some(of_failure(f)),
        Tried::Missing(why) => Some(Finding::Unmeasured { why: why.clone() }),
        Tried::Measured {
            unfinished: Some(why),
            ..
        } => Some(Finding::Hung {
            at_start: false,
            why: why.clone(),
        }),
        Tried::Measured {
            requests,
            woken: 0,
            all_us,
            ..
        } => Some(Finding::Clean {
            requests: *requests,
            max_ms: all_us.iter().max().map_or(0.0, |&m| f64::from(m) / 1000.0),
        }),
        Tried::Measured { .. } => None,
    }
}

/// The finding of a cell whose first try needed the wake, from the retry
/// at the doubled deadline: woken again, a lost wakeup (a woken request
/// waited at least the doubled deadline: its wait grew with it); not, only
/// slow the first time, so clean.
pub fn retried(first: &Tried, again: &Tried) -> Finding {
    match (first, again) {
        (
            Tried::Measured {
                requests,
                woken,
                woken_us,
                queued_us,
                ..
            },
            Tried::Measured {
                woken: w2,
                woken_us: again_us,
                unfinished: None,
                ..
            },
        ) if *w2 > 0 => Finding::LostWakeup {
            requests: *requests,
            woken: *woken,
            waited_ms: median_ms(woken_us),
            retried_ms: median_ms(again_us),
            queued_ms: (!queued_us.is_empty()).then(|| median_ms(queued_us)),
        },
        (_, t) => first_or_clean(t),
    }
}

fn first_or_clean(t: &Tried) -> Finding {
    first(t).unwrap_or_else(|| Finding::Unmeasured {
        why: "needed the wake at the doubled deadline but not at the first".into(),
    })
}

/// A whole boot's failure, as every cell of that boot's finding.
pub fn of_failure(f: &Failure) -> Finding {
    match f {
        Failure::Refused { status } => Finding::Refused {
            why: format!("QEMU exited {status} before the guest printed"),
        },
        Failure::Crashed { signal } => Finding::Crashed { signal: *signal },
        Failure::Silent { waited } => Finding::Hung {
            at_start: true,
            why: format!(
                "QEMU never let the guest print ({:.1} s)",
                waited.as_secs_f64()
            ),
        },
        Failure::Unfinished { deadline } => Finding::Hung {
            at_start: false,
            why: format!(
                "the guest did not report within the boot's {:.0} s deadline",
                deadline.as_secs_f64()
            ),
        },
        // A write or flush of the write phase the probe gave up on fails
        // the integrity check, so the whole boot.
        Failure::Invalid { why } if why.contains("no completion") => Finding::Hung {
            at_start: false,
            why: why.clone(),
        },
        // The guest itself stopped (its KTAP `Bail out!`): nothing of QEMU's
        // was measured.
        Failure::BailedOut { reason } => Finding::Unmeasured {
            why: format!("the guest bailed out: {reason}"),
        },
        Failure::BadExit { why } | Failure::Invalid { why } => {
            Finding::Unmeasured { why: why.clone() }
        }
    }
}

/// The scan's exit code: 1 when any cell is lost, hung or crashed; 0 when
/// every measured cell is clean; 2 when nothing could be measured.
pub fn exit_code(cells: &[Cell]) -> i32 {
    if cells.iter().any(|c| c.finding.is_bad()) {
        1
    } else if cells.iter().any(|c| c.finding.measured()) {
        0
    } else {
        2
    }
}

/// The table: a row per controller, a column per configuration, each cell
/// its finding's name.
pub fn table(cells: &[Cell], configs: &[Config]) -> String {
    // A configuration no row can take is no column.
    let configs: Vec<Config> = configs
        .iter()
        .copied()
        .filter(|k| {
            cells
                .iter()
                .any(|c| c.config == *k && !matches!(c.finding, Finding::NotApplicable { .. }))
        })
        .collect();
    let configs = &configs[..];
    let mut rows: Vec<&str> = Vec::new();
    for c in cells {
        if !rows.contains(&c.controller.as_str()) {
            rows.push(&c.controller);
        }
    }
    let mut header = vec!["controller".to_string()];
    header.extend(configs.iter().map(|c| c.name()));
    let mut body = Vec::new();
    for r in rows {
        let mut line = vec![r.to_string()];
        for k in configs {
            let f = cells
                .iter()
                .find(|c| c.controller == r && c.config == *k)
                .map(|c| c.finding.name())
                .unwrap_or("-");
            line.push(f.to_string());
        }
        body.push(line);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            std::iter::once(&header)
                .chain(&body)
                .map(|l| l[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let fmt = |l: &[String]| {
        let cols: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        format!("| {} |\n", cols.join(" | "))
    };
    let mut out = fmt(&header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for l in &body {
        out.push_str(&fmt(l));
    }
    out
}

/// What to change: for every controller with a lost wakeup, the measured
/// configurations in which the same binary was clean, in QEMU's, libvirt's
/// and Proxmox VE's terms; or that none exists.
pub fn what_to_change(cells: &[Cell]) -> Vec<String> {
    let mut lost: Vec<&str> = Vec::new();
    for c in cells {
        if matches!(c.finding, Finding::LostWakeup { .. }) && !lost.contains(&c.controller.as_str())
        {
            lost.push(&c.controller);
        }
    }
    lost.into_iter()
        .map(|row| {
            let lost_in: Vec<String> = cells
                .iter()
                .filter(|c| c.controller == row && matches!(c.finding, Finding::LostWakeup { .. }))
                .map(|c| c.config.name())
                .collect();
            let clean: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.controller == row && matches!(c.finding, Finding::Clean { .. }))
                .collect();
            if clean.is_empty() {
                return format!(
                    "{row}: loses wakeups in {}; no measured configuration of this binary was clean: upgrade QEMU",
                    lost_in.join("; ")
                );
            }
            let ways: String = clean
                .iter()
                .map(|c| {
                    format!(
                        "\n    QEMU -drive {} | libvirt {} | Proxmox {}",
                        c.config.name(),
                        c.config.libvirt(),
                        c.config.proxmox()
                    )
                })
                .collect();
            format!(
                "{row}: loses wakeups in {}; clean with the same binary in:{ways}",
                lost_in.join("; "),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan_report::{junit, kcidb, ScanReport};
    use contract::config::{Aio, Cache, Iothread};
    use contract::controllers::by_name;
    use std::time::Duration;

    fn measured(woken: u32, all_us: &[u32], deadline_ms: u64) -> Tried {
        let bound = (deadline_ms * 1000) as u32;
        Tried::Measured {
            requests: all_us.len() as u32,
            woken,
            woken_us: all_us.iter().copied().filter(|&u| u >= bound).collect(),
            all_us: all_us.to_vec(),
            queued_us: vec![],
            unfinished: None,
        }
    }

    #[test]
    fn clean_needs_every_request_before_the_deadline() {
        let t = measured(0, &[90, 110, 300, 95, 100], DEADLINE_MS);
        assert_eq!(
            first(&t),
            Some(Finding::Clean {
                requests: 5,
                max_ms: 0.3
            })
        );
        // One woken request: tried again before anything is called.
        assert_eq!(
            first(&measured(1, &[90, 200_300, 95, 100, 90], DEADLINE_MS)),
            None
        );
    }

    #[test]
    fn a_lost_wakeup_waits_the_doubled_deadline_too_a_slow_request_does_not() {
        let once = measured(5, &[200_200; 5], 200);
        let again = measured(5, &[400_150; 5], 400);
        let f = retried(&once, &again);
        assert_eq!(
            f,
            Finding::LostWakeup {
                requests: 5,
                woken: 5,
                waited_ms: 200.2,
                retried_ms: 400.15,
                queued_ms: None
            }
        );
        assert!(f.line().starts_with(
            "lost wakeup: 5 of 5 requests completed only after the probe's wake, waiting 200.2 ms, and 400.1 ms"
        ) && f.line().contains("the guest's wake alone"), "{}", f.line());
        // Slow once (a loaded host), fine at the doubled deadline: clean.
        let slow_once = measured(1, &[90, 200_300, 95, 100, 90], 200);
        let fine = measured(0, &[90, 95, 100, 90, 92], 400);
        assert_eq!(retried(&slow_once, &fine).name(), "clean");
    }

    #[test]
    fn failed_boots_and_unfinished_requests_have_their_findings() {
        let f = |k: Failure| first(&Tried::Failed(k)).unwrap();
        assert_eq!(
            f(Failure::Crashed { signal: 11 }).line(),
            "crashed: QEMU killed by signal 11"
        );
        assert_eq!(f(Failure::Refused { status: 1 }).name(), "refused");
        assert_eq!(
            f(Failure::Silent {
                waited: Duration::from_secs(3)
            })
            .line(),
            "hung at start: QEMU never let the guest print (3.0 s)"
        );
        assert_eq!(
            f(Failure::Unfinished {
                deadline: Duration::from_secs(90)
            })
            .name(),
            "hung"
        );
        let mut t = measured(0, &[100], DEADLINE_MS);
        if let Tried::Measured { unfinished, .. } = &mut t {
            *unfinished = Some("no completion 60 s after the 200 ms deadline's wake-up".into());
        }
        assert!(first(&t).unwrap().line().contains("iothread's event loop"));
    }

    fn cell(row: &str, config: Config, finding: Finding) -> Cell {
        Cell::new(by_name(row).unwrap(), config, Workload::Latency, finding)
    }

    #[test]
    fn exit_codes_and_the_advice_follow_the_findings() {
        let threads = Config {
            aio: Aio::Threads,
            ..Config::default()
        };
        let lost = Finding::LostWakeup {
            requests: 5,
            woken: 5,
            waited_ms: 200.0,
            retried_ms: 400.0,
            queued_ms: Some(199.0),
        };
        let clean = Finding::Clean {
            requests: 5,
            max_ms: 0.2,
        };
        let na = Finding::NotApplicable {
            why: "this device takes no iothread".into(),
        };
        let cells = vec![
            cell("ahci", Config::default(), lost.clone()),
            cell("ahci", threads, clean.clone()),
            cell("nvme", Config::default(), clean.clone()),
            cell("nvme", threads, clean.clone()),
            cell(
                "ahci",
                Config {
                    iothread: Iothread::On,
                    ..Config::default()
                },
                na.clone(),
            ),
        ];
        assert_eq!(exit_code(&cells), 1);
        assert_eq!(exit_code(&cells[2..]), 0);
        assert_eq!(exit_code(&cells[4..]), 2);
        assert_eq!(
            what_to_change(&cells),
            ["ahci: loses wakeups in aio=io_uring,cache=none; clean with the same binary in:\n    \
              QEMU -drive aio=threads,cache=none | libvirt <driver io='threads' cache='none'/> | Proxmox aio=threads,cache=none"]
        );
        assert!(what_to_change(&cells[..1])[0]
            .ends_with("no measured configuration of this binary was clean: upgrade QEMU"));
        let t = table(&cells, &[Config::default(), threads]);
        assert_eq!(
            t,
            "| controller | aio=io_uring,cache=none | aio=threads,cache=none |\n\
             |------------|-------------------------|------------------------|\n\
             | ahci       | lost wakeup             | clean                  |\n\
             | nvme       | clean                   | clean                  |\n"
        );
        let _ = Cache::Writeback;
        // The CI formats: a case per cell, with the same statuses.
        let doc = ScanReport {
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            qemu_version: "10.2.1".into(),
            deadline_ms: DEADLINE_MS,
            requests: REQUESTS,
            cells: &cells,
            what_to_change: vec![],
            exit_code: 1,
            run_dirs: vec![],
        };
        let x = junit(&doc).unwrap();
        assert!(
            x.contains(r#"tests="5" failures="1" errors="0" skipped="1""#)
                && x.contains(
                    r#"<testcase classname="io_uring_idle.scan.io_uring-none" name="ahci.latency">"#
                )
                && x.contains(r#"type="lost wakeup""#),
            "{x}"
        );
        let k: serde_json::Value = serde_json::from_str(&kcidb(&doc).unwrap()).unwrap();
        let statuses: Vec<&str> = k["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["FAIL", "PASS", "PASS", "PASS", "SKIP"]);
        assert_eq!(
            k["tests"][0]["path"],
            "io_uring_idle.scan.io_uring-none.ahci.latency"
        );
        assert_eq!(k["tests"][0]["number"]["value"], 200.0);
    }
}
