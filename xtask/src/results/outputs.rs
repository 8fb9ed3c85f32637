//! A run's files for people and CI systems: the JSON document, JUnit and
//! KCIDB, written in one place for `patch-and-test` (one cell) and
//! `matrix merge` (many).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cases::NamedReport;

/// Where the CI formats go; each is written only when asked for.
#[derive(Clone, Debug, Default)]
pub struct CiFiles {
    pub junit: Option<PathBuf>,
    pub kcidb: Option<PathBuf>,
}

/// Writes `text` to `path`, naming the file on failure.
pub fn write(path: &Path, text: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A value as pretty JSON, into `path`.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write(path, serde_json::to_string_pretty(value)?)
}

impl CiFiles {
    /// JUnit XML and the KCIDB document of `cells`, where asked for. The
    /// texts come from `junit::write` and `kcidb::text`, which
    /// `tests/ci_formats.rs` holds to the recorded runs byte for byte.
    pub fn write(&self, cells: &[NamedReport]) -> Result<()> {
        if let Some(p) = &self.junit {
            write(p, crate::junit::write(cells)?)?;
        }
        if let Some(p) = &self.kcidb {
            write(p, crate::kcidb::text(cells)?)?;
        }
        Ok(())
    }
}
