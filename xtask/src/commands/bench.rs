//! `cargo xtask bench`: the performance figures docs/bench.md quotes, measured
//! the same way every time: warm `patch-and-test` runs (whole pipeline, each
//! guest boot's time to KTAP and total wall), and an incremental QEMU rebuild;
//! with `--cold`, first verdicts from a fresh clone with an empty cache;
//! with `--load N`, the same warm runs beside N CPU hogs, and how often
//! each verdict came out (the figures the busy-host rules are held to).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use comfy_table::{presets::ASCII_MARKDOWN, Table};
use serde_json::json;

use crate::report::Report;
use crate::source::QemuSource;
use crate::verdict::Kind;
use crate::{qemu, ui};

#[derive(clap::Args, Debug)]
pub struct Bench {
    #[command(flatten)]
    pub source: QemuSource,
    /// Warm patch-and-test runs to time (after one run that fills the cache).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// Write the figures here as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Fail (exit 1) when the warm run or the boot to KTAP is more than 25%
    /// slower (median) than the figures stored in docs/bench.json.
    #[arg(long, conflicts_with = "record")]
    pub check: bool,
    /// Store this run's medians in docs/bench.json, for --check.
    #[arg(long)]
    pub record: bool,
    /// Instead, time `--runs` first verdicts on a fresh machine: each a
    /// fresh `git clone` of this checkout's HEAD (so the xtask's own compile
    /// counts) running `cargo xtask patch-and-test` with an empty cache.
    /// Minutes each; measure with nothing else running.
    #[arg(long, conflicts_with_all = ["check", "record"])]
    pub cold: bool,
    /// Run N CPU hogs (threads of this process, each spinning on a core)
    /// beside the timed runs, started after the cache is warm and stopped
    /// when they end; the output then counts each verdict. Times under load
    /// are not the figures of docs/bench.md: no rebuild is timed.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with_all = ["check", "record", "cold"],
          value_parser = clap::value_parser!(u32).range(0..=64))]
    pub load: u32,
    /// Keep each timed run's report JSON in this directory (run1.json, ...).
    #[arg(long, value_name = "DIR")]
    pub reports: Option<PathBuf>,
    /// Arguments for every inner patch-and-test run, after `--`, e.g.
    /// `-- --kernel debian` or `-- --variant null=FILE`.
    #[arg(last = true, value_name = "PATCH-AND-TEST ARGS")]
    pub pass: Vec<String>,
}

/// CPU hogs: threads spinning until dropped. Threads of this process, so
/// none outlives the bench, whatever ends it; each inner patch-and-test
/// counts them as other processes' load.
pub struct Hogs {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hogs {
    pub fn start(n: u32) -> Hogs {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Hogs { stop, threads }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// How often each verdict came out over the timed runs: the run's own
/// verdict, each variant's and each guest's (from its findings), as
/// "name: kind x count" lines.
pub fn tally(docs: &[Report]) -> Vec<(String, BTreeMap<&'static str, u32>)> {
    let mut out: BTreeMap<String, BTreeMap<&'static str, u32>> = BTreeMap::new();
    let mut add = |name: String, k: Kind| {
        *out.entry(name).or_default().entry(k.head()).or_default() += 1;
    };
    for d in docs {
        add("run".into(), d.verdict);
        let several = d.variants.len() > 1;
        for v in &d.variants {
            if several {
                add(format!("variant {}", v.name), v.verdict.kind);
            }
            if v.guests.len() > 1 {
                for g in &v.guests {
                    let name = if several {
                        format!("variant {}, {} guest", v.name, g.guest)
                    } else {
                        format!("{} guest", g.guest)
                    };
                    add(name, g.kind);
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The figures `--check` compares against, kept in the repository.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub warm_s: f64,
    pub boot_to_ktap_s: f64,
}

/// A run this much slower than the stored figures fails `--check`.
pub const ALLOWED_SLOWDOWN: f64 = 1.25;

/// The cold first verdict's target on the project's 2-core machine.
pub const COLD_TARGET: (&str, &str) = (
    "cold patch-and-test (fresh clone, empty cache), wall",
    "<= 6 min",
);

/// The targets this project holds itself to on its 2-core machine.
pub const TARGETS: &[(&str, &str)] = &[
    ("warm patch-and-test, wall", "<= 25 s"),
    ("guest boot to first KTAP line", "<= 1.5 s"),
    ("probe guest: QEMU start to KTAP", "-"),
    ("one guest run, wall", "-"),
    ("QEMU incremental rebuild", "<= 5 s"),
];

pub fn stored_path() -> PathBuf {
    crate::workspace().join("docs/bench.json")
}

/// The figures that regressed against `stored`, in words.
pub fn regressions(stored: &Stored, now: &Stored) -> Vec<String> {
    let mut out = Vec::new();
    for (name, was, is) in [
        ("warm patch-and-test", stored.warm_s, now.warm_s),
        ("boot to KTAP", stored.boot_to_ktap_s, now.boot_to_ktap_s),
    ] {
        if is > was * ALLOWED_SLOWDOWN {
            out.push(format!(
                "{name}: median {is:.2} s against {was:.2} s stored ({:.0}% slower; {:.0}% allowed)",
                (is / was - 1.0) * 100.0,
                (ALLOWED_SLOWDOWN - 1.0) * 100.0
            ));
        }
    }
    out
}

/// User and system seconds of every child waited for so far, and of their
/// waited-for descendants (getrusage RUSAGE_CHILDREN).
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage only fills the struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        // A figure this run did not measure (a guest it did not boot).
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

impl Bench {
    fn pipeline(&self, json: &std::path::Path) -> Result<(f64, Report)> {
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let mut c = Command::new(exe);
        c.arg("patch-and-test").arg("--json").arg(json);
        self.source_args(&mut c);
        c.args(&self.pass);
        let t = Instant::now();
        crate::children::prepare(&mut c);
        let out = c.output().context("running patch-and-test")?;
        let wall = t.elapsed().as_secs_f64();
        // 0 and 1 are verdicts (verified, or not): the run completed and its
        // timings count. Anything else is an error.
        if !matches!(out.status.code(), Some(0 | 1)) {
            bail!(
                "patch-and-test failed during the benchmark:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((wall, Report::read(json)?))
    }

    /// The QEMU source for an inner patch-and-test. A tree as an absolute
    /// path: the cold run works in its clone, where a relative one would
    /// name another directory (a path that does not resolve is passed as
    /// given, for patch-and-test to name).
    fn source_args(&self, c: &mut Command) {
        match &self.source.qemu_tree {
            Some(t) => c
                .arg("--qemu-tree")
                .arg(t.canonicalize().unwrap_or_else(|_| t.clone())),
            None => c.arg("--qemu-src").arg(&self.source.qemu_src),
        };
    }

    /// One first verdict from nothing: a fresh clone of HEAD, an empty
    /// cache, `cargo xtask patch-and-test` (which compiles the xtask first).
    fn cold_pipeline(&self, dir: &std::path::Path) -> Result<(f64, f64, Report)> {
        let root = crate::workspace();
        let (clone, cache, json) = (dir.join("clone"), dir.join("cache"), dir.join("cold.json"));
        std::fs::create_dir_all(&cache)?;
        let sh = xshell::Shell::new()?;
        xshell::cmd!(sh, "git clone --quiet --no-hardlinks {root} {clone}")
            .quiet()
            .run()
            .context("bench --cold clones this checkout with git: it must be a git checkout")?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["xtask", "patch-and-test", "--json"])
            .arg(&json)
            .current_dir(&clone)
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("CARGO_TARGET_DIR");
        self.source_args(&mut c);
        c.args(&self.pass);
        let t = Instant::now();
        let cpu_before = children_cpu_s();
        let log = dir.join("cold.log");
        let r = ui::run_logged(c, &log, "cold patch-and-test", |l| {
            if l.starts_with("==> ") {
                ui::info(&format!("{:6.1} s {l}", t.elapsed().as_secs_f64()));
            }
        });
        let wall = t.elapsed().as_secs_f64();
        let cpu = children_cpu_s() - cpu_before;
        // A verdict's exit (not verified, say) is a completed run; SKIPPED
        // means the tree never had the stall and nothing was built.
        if let Err(e) = r {
            let code = e.downcast_ref::<ui::Failed>().and_then(|f| f.status.code());
            match code.and_then(Kind::of_exit_code) {
                Some(Kind::Skipped) => bail!("the QEMU tree has no aio_add_sqe() (patch-and-test says SKIPPED): nothing to build or time"),
                Some(_) if json.is_file() => {}
                _ => return Err(e),
            }
        }
        Ok((wall, cpu, Report::read(&json)?))
    }

    fn run_cold(&self) -> Result<i32> {
        let dirty = Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(crate::workspace())
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        if dirty {
            ui::warn("bench --cold measures the committed HEAD: uncommitted changes are not in the clone");
        }
        let (mut walls, mut cpus, mut stages) = (
            vec![],
            vec![],
            Vec::<std::collections::BTreeMap<String, f64>>::new(),
        );
        for i in 1..=self.runs {
            ui::stage(&format!(
                "cold run {i}/{} (fresh clone, empty cache)",
                self.runs
            ));
            let dir = tempfile::tempdir()?;
            let (wall, cpu, doc) = match self.cold_pipeline(dir.path()) {
                Ok(r) => r,
                Err(e) => {
                    // Its logs are what the error names: keep them.
                    let kept = dir.keep();
                    return Err(e.context(format!(
                        "cold run {i}: its clone, cache and logs are kept in {}",
                        kept.display()
                    )));
                }
            };
            ui::info(&format!(
                "{wall:.1} s ({cpu:.0} core-seconds): {}",
                doc.verdict_line
            ));
            walls.push(wall);
            cpus.push(cpu);
            stages.push(doc.timings_s.clone());
        }
        let (lo, mid, hi) = stats(walls.clone());
        let mut t = Table::new();
        t.load_preset(ASCII_MARKDOWN);
        t.set_header(["figure", "min", "median", "max", "target"]);
        t.add_row([
            COLD_TARGET.0.to_string(),
            format!("{lo:.1} s"),
            format!("{mid:.1} s"),
            format!("{hi:.1} s"),
            COLD_TARGET.1.to_string(),
        ]);
        // The floor scheduling cannot beat: the CPU time of everything the
        // run started, spread over every core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let (lo, mid, hi) = stats(cpus.clone());
        t.add_row([
            format!("  CPU time of every process (/ {cores} cores)"),
            format!("{lo:.0} s ({:.0} s)", lo / cores),
            format!("{mid:.0} s ({:.0} s)", mid / cores),
            format!("{hi:.0} s ({:.0} s)", hi / cores),
            "-".into(),
        ]);
        // Where the time went, from each run's own timings; the xtask's
        // compile is what the wall has beyond the run's total.
        let mut names: Vec<&String> = stages.iter().flat_map(|s| s.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let v: Vec<f64> = stages.iter().filter_map(|s| s.get(name).copied()).collect();
            let (lo, mid, hi) = stats(v);
            t.add_row([
                format!("  stage {name}"),
                format!("{lo:.1} s"),
                format!("{mid:.1} s"),
                format!("{hi:.1} s"),
                "-".into(),
            ]);
        }
        println!("{t}");
        if let Some(path) = &self.json {
            let doc = json!({ "cold_runs_s": walls, "cold_cpu_s": cpus, "cold_timings_s": stages });
            std::fs::write(path, serde_json::to_string_pretty(&doc)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(0)
    }

    pub fn run(self) -> Result<i32> {
        if self.cold {
            return self.run_cold();
        }
        let dir = tempfile::tempdir()?;
        ui::stage("warming the cache (one patch-and-test run)");
        let (first, _) = self.pipeline(&dir.path().join("warmup.json"))?;
        ui::info(&format!("first run: {first:.1} s"));
        let (mut walls, mut boots, mut guest_walls) = (vec![], vec![], vec![]);
        let (mut probe_boots, mut busy, mut docs) = (vec![], vec![], vec![]);
        let reports = match &self.reports {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating --reports directory {}", d.display()))?;
                d.clone()
            }
            None => dir.path().to_path_buf(),
        };
        let hogs = (self.load > 0).then(|| {
            ui::stage(&format!(
                "{} CPU hog(s) running beside the timed runs",
                self.load
            ));
            Hogs::start(self.load)
        });
        for i in 1..=self.runs {
            ui::stage(&format!("timed run {i}/{}", self.runs));
            let (wall, doc) = self.pipeline(&reports.join(format!("run{i}.json")))?;
            walls.push(wall);
            let most = doc
                .guest_runs
                .iter()
                .filter_map(|r| r.host_busy)
                .reduce(f64::max);
            busy.extend(doc.guest_runs.iter().filter_map(|r| r.host_busy));
            ui::info(&format!(
                "{wall:.1} s{}: {}",
                most.map(|b| format!(", other processes up to {:.0}% of the CPU", b * 100.0))
                    .unwrap_or_default(),
                doc.verdict_line
            ));
            for r in &doc.guest_runs {
                match r.guest {
                    contract::Guest::Linux => boots.extend(r.boot_to_ktap_s),
                    contract::Guest::Probe => probe_boots.extend(r.boot_to_ktap_s),
                }
                guest_walls.push(r.wall_s);
            }
            docs.push(doc);
        }
        drop(hogs);
        // A rebuild beside hogs times the hogs: under load it is left out.
        let rebuild = if self.load > 0 {
            None
        } else {
            ui::stage("incremental QEMU rebuild (util/aio-posix.c touched)");
            let tree = self.source.resolve()?;
            Some(qemu::time_incremental_rebuild(&tree)?)
        };

        let rows = [
            ("warm patch-and-test, wall", stats(walls.clone())),
            ("guest boot to first KTAP line", stats(boots.clone())),
            (
                "probe guest: QEMU start to KTAP",
                stats(probe_boots.clone()),
            ),
            ("one guest run, wall", stats(guest_walls.clone())),
            (
                "QEMU incremental rebuild",
                rebuild.map(|r| (r, r, r)).unwrap_or_default(),
            ),
        ];
        let mut t = Table::new();
        t.load_preset(ASCII_MARKDOWN);
        t.set_header(["figure", "min", "median", "max", "target"]);
        for (i, ((name, (lo, mid, hi)), (_, target))) in rows.iter().zip(TARGETS).enumerate() {
            // The last row is the rebuild, not timed under load.
            if rebuild.is_none() && i == rows.len() - 1 {
                continue;
            }
            let target = if self.load > 0 { "-" } else { target };
            t.add_row([
                name.to_string(),
                format!("{lo:.2} s"),
                format!("{mid:.2} s"),
                format!("{hi:.2} s"),
                target.to_string(),
            ]);
        }
        if self.load > 0 {
            let (lo, mid, hi) = stats(busy.clone());
            t.add_row([
                "other processes' share of the CPU, per boot".to_string(),
                format!("{:.0}%", lo * 100.0),
                format!("{:.0}%", mid * 100.0),
                format!("{:.0}%", hi * 100.0),
                "-".into(),
            ]);
        }
        println!("{t}");
        let counts = tally(&docs);
        let mut v = Table::new();
        v.load_preset(ASCII_MARKDOWN);
        v.set_header(["verdict of", "count"]);
        for (name, kinds) in &counts {
            let each: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            v.add_row([
                name.clone(),
                format!("{} of {}", each.join(", "), self.runs),
            ]);
        }
        println!("{v}");
        let now = Stored {
            warm_s: rows[0].1 .1,
            boot_to_ktap_s: rows[1].1 .1,
        };
        if self.record {
            std::fs::write(stored_path(), serde_json::to_string_pretty(&now)? + "\n")
                .with_context(|| format!("writing {}", stored_path().display()))?;
            println!("stored in {}", stored_path().display());
        }
        if self.check {
            let text = std::fs::read_to_string(stored_path()).with_context(|| {
                format!(
                    "reading {} (make it with bench --record)",
                    stored_path().display()
                )
            })?;
            let stored: Stored = serde_json::from_str(&text)?;
            let bad = regressions(&stored, &now);
            if !bad.is_empty() {
                println!("REGRESSED: {}", bad.join("; "));
                return Ok(1);
            }
            println!(
                "within {:.0}% of the stored figures",
                (ALLOWED_SLOWDOWN - 1.0) * 100.0
            );
        }
        if let Some(path) = &self.json {
            let doc = json!({
                "first_run_s": first, "warm_runs_s": walls, "boot_to_ktap_s": boots, "probe_boot_to_ktap_s": probe_boots,
                "guest_run_s": guest_walls, "qemu_incremental_rebuild_s": rebuild,
                "load_hogs": self.load, "host_busy": busy, "verdicts": counts,
            });
            std::fs::write(path, serde_json::to_string_pretty(&doc)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slowdown_past_a_quarter_fails_the_check() {
        let stored = super::Stored {
            warm_s: 20.0,
            boot_to_ktap_s: 1.6,
        };
        let ok = super::Stored {
            warm_s: 24.9,
            boot_to_ktap_s: 1.9,
        };
        assert!(super::regressions(&stored, &ok).is_empty());
        let slow = super::Stored {
            warm_s: 26.0,
            boot_to_ktap_s: 2.1,
        };
        let r = super::regressions(&stored, &slow);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].starts_with(
                "warm patch-and-test: median 26.00 s against 20.00 s stored (30% slower"
            ),
            "{}",
            r[0]
        );
    }

    #[test]
    fn min_median_max() {
        assert_eq!(super::stats(vec![3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
        assert_eq!(super::stats(vec![5.0]), (5.0, 5.0, 5.0));
    }
}
