//! Results: the findings and verdicts (`report`), the plot (`plot`), and
//! the same findings as CI systems read them (`cases`, `junit`, `kcidb`).

pub mod cases;
pub mod junit;
pub mod kcidb;
pub mod plot;
pub mod report;
