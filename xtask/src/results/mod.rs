//! Results: the guest's KTAP and QEMU's trace parsed (`ktap`, `trace`),
//! the findings and verdicts (`report`), the plot (`plot`), and the same
//! findings as CI systems read them (`cases`, `junit`, `kcidb`).

pub mod cases;
pub mod junit;
pub mod kcidb;
pub mod ktap;
pub mod plot;
pub mod report;
pub mod trace;
