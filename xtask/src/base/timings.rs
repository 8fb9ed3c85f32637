//! Seconds per stage of a run, for the report's `timings_s`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Seconds per stage, in order, from the run's start.
pub struct Timings {
    started: Instant,
    stages: BTreeMap<String, f64>,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            started: Instant::now(),
            stages: BTreeMap::new(),
        }
    }
}

impl Timings {
    pub fn add(&mut self, stage: &str, since: Instant) {
        self.set(stage, since.elapsed());
    }

    /// A stage timed where it ran (another thread, or beside another step).
    pub fn set(&mut self, stage: &str, took: Duration) {
        self.stages.insert(stage.to_string(), secs(took));
    }

    /// Every stage, and `total`: the time since the run started.
    pub fn finish(mut self) -> BTreeMap<String, f64> {
        self.add("total", self.started);
        self.stages
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}
