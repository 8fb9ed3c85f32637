//! The guest's /init: the kselftest binary, built static for x86-64 against
//! the uapi headers of the guest kernel (`URING_SYS_UAPI`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::ui;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";
pub const BIN: &str = "io_uring_idle_latency";

pub struct Selftest {
    pub binary: PathBuf,
    pub build_s: f64,
}

/// `cargo build` of the kselftest crate: static glibc, not PIE, so `file`
/// says "statically linked" and the kernel needs no interpreter.
pub fn build(uapi: Option<&Path>) -> Result<Selftest> {
    let (mut c, target_dir) = crate::cargo_build_cached(
        "selftest",
        &[uapi.map(|p| p.display().to_string()).unwrap_or_default()],
        &["-p", "kselftest", "--bin", BIN, "--target", TARGET],
    )?;
    c.env(
        "RUSTFLAGS",
        "-C target-feature=+crt-static -C relocation-model=static",
    )
    .env_remove("CARGO_ENCODED_RUSTFLAGS");
    match uapi {
        Some(dir) => c.env("URING_SYS_UAPI", dir),
        None => c.env_remove("URING_SYS_UAPI"),
    };
    let log = target_dir.join("build.log");
    std::fs::create_dir_all(&target_dir)?;
    let _ = std::fs::remove_file(&log);
    let start = Instant::now();
    ui::run_logged(
        c,
        &log,
        "building the selftest (cargo build -p kselftest)",
        |_| {},
    )?;
    let binary = target_dir.join(TARGET).join("release").join(BIN);
    let bytes = std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    if !is_static_exec(&bytes) {
        bail!(
            "{} is not a static executable (it has a program interpreter); the guest has no libc",
            binary.display()
        );
    }
    Ok(Selftest {
        binary,
        build_s: start.elapsed().as_secs_f64(),
    })
}

/// An ELF64 executable (`ET_EXEC`) with no `PT_INTERP` program header.
pub fn is_static_exec(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    const ET_EXEC: u16 = 2;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (
        u64_at(0x20) as usize,
        u16_at(0x36) as usize,
        u16_at(0x38) as usize,
    );
    if u16_at(0x10) != ET_EXEC || phoff + phentsize * phnum > elf.len() {
        return false;
    }
    (0..phnum).all(|i| u32_at(phoff + i * phentsize) != PT_INTERP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_executables_are_not_static() {
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(!is_static_exec(&sh));
        assert!(!is_static_exec(b"#!/bin/sh\n"));
    }
}
