//! io_uring per-device latency selftest.
//!
//! Data flows one way: `params` (flags or kernel command line) and `devices`
//! (what to measure) feed `run`, which drives `workload` on each target,
//! condenses samples with `stats` and prints `ktap`. `init` wraps it all for
//! PID 1 in a guest.

pub mod devices;
pub mod init;
pub mod ktap;
pub mod params;
pub mod run;
pub mod stats;
pub mod workload;

/// kselftest exit codes (tools/testing/selftests/kselftest.h).
pub const KSFT_PASS: i32 = 0;
pub const KSFT_FAIL: i32 = 1;
pub const KSFT_SKIP: i32 = 4;
