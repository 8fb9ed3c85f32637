//! The probe guest's image: the `probe/` crate built as a freestanding
//! static ELF for the host target (no extra rustup target: `#![no_std]`, its
//! own linker script and entry code), then flattened by `objcopy` into the
//! ROM image QEMU maps below 4 GiB for `-bios`. Built in a target directory
//! of the cache keyed by the checkout, like the selftest; cargo makes
//! reruns incremental.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::ui;

pub struct ProbeImage {
    /// The flat image for `-bios`.
    pub image: PathBuf,
    pub build_s: f64,
}

/// QEMU maps a `-bios` image so that it ends at 4 GiB, and wants its size a
/// multiple of 64 KiB; the reset vector is its last 16 bytes.
pub fn check_image(bytes: &[u8]) -> std::result::Result<(), String> {
    const UNIT: usize = 64 << 10;
    if bytes.is_empty() || !bytes.len().is_multiple_of(UNIT) || bytes.len() > 16 << 20 {
        return Err(format!(
            "{} bytes: a -bios image is a whole number of 64 KiB blocks, at most 16 MiB",
            bytes.len()
        ));
    }
    // The first instruction at the reset vector is a jump (short, near or far).
    let reset = bytes[bytes.len() - 16];
    if ![0xeb, 0xe9, 0xea].contains(&reset) {
        return Err(format!(
            "the byte at the reset vector is {reset:#04x}, not a jump: the linker script did not place the entry code"
        ));
    }
    Ok(())
}

pub fn build() -> Result<ProbeImage> {
    let (mut c, target_dir) = crate::cargo_build_cached(
        "probe",
        &[],
        &["-p", "probe", "--features", "image", "--bin", "probe"],
    )?;
    // The probe's own link arguments come from its build script; flags meant
    // for hosted binaries (the selftest's crt-static) must not reach it.
    c.env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    let log = target_dir.join("build.log");
    let _ = std::fs::remove_file(&log);
    let start = Instant::now();
    ui::run_logged(
        c,
        &log,
        "building the probe guest (cargo build -p probe)",
        |_| {},
    )?;
    let elf = target_dir.join("release").join("probe");
    let image = target_dir.join("probe.bin");
    flatten(&elf, &image)?;
    Ok(ProbeImage {
        image,
        build_s: start.elapsed().as_secs_f64(),
    })
}

/// `objcopy -O binary`, into a name of this process first, checked, then
/// renamed: a half-written or unusable image never replaces a good one,
/// and two runs sharing the cache never write the same file.
fn flatten(elf: &Path, image: &Path) -> Result<()> {
    let part = image.with_extension(format!("bin.{}", std::process::id()));
    let made = (|| -> Result<()> {
        let mut cmd = Command::new("objcopy");
        cmd.args(["-O", "binary"])
            .arg(elf)
            .arg(&part)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let (child, _registered) = crate::children::spawn(&mut cmd)
            .context("running objcopy (Debian package binutils)")?;
        let out = child.wait_with_output().context("waiting for objcopy")?;
        if !out.status.success() {
            bail!(
                "objcopy -O binary {} failed: {}",
                elf.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let bytes = std::fs::read(&part).with_context(|| format!("reading {}", part.display()))?;
        if let Err(why) = check_image(&bytes) {
            bail!("the probe image {} is unusable: {why}", elf.display());
        }
        std::fs::rename(&part, image).with_context(|| format!("writing {}", image.display()))
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_whole_64k_blocks_ending_in_a_jump() {
        let mut img = vec![0u8; 128 << 10];
        let n = img.len();
        assert!(check_image(&img).unwrap_err().contains("not a jump"));
        img[n - 16] = 0xea;
        check_image(&img).unwrap();
        img.push(0);
        assert!(check_image(&img).unwrap_err().contains("64 KiB"));
        assert!(check_image(&[]).is_err());
    }
}
