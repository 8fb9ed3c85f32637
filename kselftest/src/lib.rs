//! io_uring per-device latency selftest.
//!
//! Data flows one way: the parameters (`contract::Params`, from flags or the
//! kernel command line) and `devices` (what to measure) feed `run`, which
//! drives `workload` on each target, condenses samples into
//! `contract::Record`s and prints `ktap`. `init` wraps it all for PID 1 in a
//! guest. What the host must agree on lives in the `contract` crate.

pub mod devices;
pub mod init;
pub mod run;
pub mod workload;

pub use contract::exit::{KSFT_FAIL, KSFT_PASS, KSFT_SKIP};
