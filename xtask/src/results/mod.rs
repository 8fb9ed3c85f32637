//! Results: from a campaign's samples to what the user reads, one module
//! per job: the rules and their margins (`rules`), samples collected into
//! rows (`samples`), a finding per controller (`findings`), the verdict
//! (`verdict`; the batch workload's in `batch`), text tables (`tables`), notes for the reader (`notes`), what a run says once its guests are done (`summary`),
//! how figures are written (`units`), the JSON document (`report`), the
//! plot (`plot`), the same findings as CI systems read them (`cases`,
//! `junit`, `kcidb`), the files they are written to (`outputs`), and
//! `scan`'s findings per cell (`scan_findings`).

pub mod batch;
pub mod cases;
pub mod findings;
pub mod junit;
pub mod kcidb;
pub mod notes;
pub mod outputs;
pub mod plot;
pub mod provenance;
pub mod report;
pub mod rules;
pub mod samples;
pub mod scan_findings;
pub mod scan_report;
pub mod summary;
pub mod tables;
pub mod units;
pub mod verdict;
