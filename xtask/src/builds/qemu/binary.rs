//! What a QEMU binary offers: its version, machines, devices, network
//! backends, and whether it takes aio=io_uring, asked of the binary itself.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The device types `-device help` lists: lines like
/// `name "lsi53c895a", bus PCI, alias "lsi"`.
pub fn parse_device_help(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("name \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// What a prebuilt QEMU binary is, checked before it is measured.
pub fn probe(binary: &Path) -> Result<String> {
    let run = |args: &[&str]| -> Result<(bool, String)> {
        let out = Command::new(binary)
            .args(args)
            .output()
            .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    };
    let (ok, text) = run(&["--version"])?;
    let version = text
        .lines()
        .find_map(|l| l.split("QEMU emulator version ").nth(1))
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_string());
    let Some(version) = version.filter(|_| ok) else {
        bail!(
            "{} is not a QEMU system emulator: `--version` said {:?}; pass a qemu-system-x86_64 binary",
            binary.display(),
            text.lines().next().unwrap_or("nothing")
        );
    };
    let (_, machines) = run(&["-machine", "help"])?;
    if !machines
        .lines()
        .any(|l| l.split_whitespace().next() == Some("q35"))
    {
        bail!(
            "{} (QEMU {version}) has no q35 machine: pass a qemu-system-x86_64 built with it",
            binary.display()
        );
    }
    if !device_types(binary)?.contains("isa-debug-exit") {
        bail!(
            "{} (QEMU {version}) has no isa-debug-exit device, which carries the guest's verdict",
            binary.display()
        );
    }
    // aio=io_uring on a real file: a build without liburing refuses it at
    // once; one with it starts (paused) and is stopped here.
    let mut c = Command::new(binary);
    c.args([
        "-machine",
        "none",
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-S",
        "-drive",
        "file=/dev/null,if=none,format=raw,readonly=on,aio=io_uring",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let (mut child, _registered) =
        crate::children::spawn(&mut c).context("starting QEMU to check aio=io_uring")?;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            if !status.success() {
                bail!(
                    "{} (QEMU {version}) refuses aio=io_uring: {}; it needs a build with liburing (--enable-linux-io-uring)",
                    binary.display(),
                    err.trim()
                );
            }
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(version)
}

/// The network backends a QEMU binary offers (`-netdev help`).
pub fn netdev_backends(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new(binary)
        .args(["-machine", "none", "-netdev", "help"])
        .output()
        .with_context(|| format!("running {} -netdev help", binary.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip_while(|l| !l.starts_with("Available netdev backend types"))
        .skip(1)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Whether a binary can run user networking (`--netdev user` or
/// `hostfwd`, the probe guest's default): one message naming the fix.
pub fn require_user_networking(binary: &Path) -> Result<()> {
    let backends = netdev_backends(binary)?;
    if !backends.iter().any(|b| b == "user") {
        bail!(
            "--netdev user/hostfwd (hostfwd is the probe guest's default): {} has no user networking (-netdev help lists: {}); build QEMU with libslirp (configure --enable-slirp; Debian: libslirp-dev) or pass --netdev none",
            binary.display(),
            if backends.is_empty() { "nothing".to_string() } else { backends.join(", ") }
        );
    }
    if !device_types(binary)?.contains("virtio-net-pci") {
        bail!(
            "--netdev user/hostfwd (hostfwd is the probe guest's default): {} has no virtio-net-pci NIC to attach it to (-device help); pass --netdev none",
            binary.display()
        );
    }
    Ok(())
}

/// The device types a QEMU binary offers.
pub fn device_types(binary: &Path) -> Result<std::collections::BTreeSet<String>> {
    let out = Command::new(binary)
        .args(["-machine", "none", "-device", "help"])
        .output()
        .with_context(|| format!("running {} -device help", binary.display()))?;
    if !out.status.success() {
        bail!(
            "{} -device help failed ({}): {}",
            binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_device_help(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_help_is_read_by_name() {
        let t = "Storage devices:\nname \"lsi53c895a\", bus PCI, alias \"lsi\"\nname \"scsi-hd\", bus SCSI, desc \"virtual SCSI disk\"\n\nUSB devices:\nname \"qemu-xhci\", bus PCI\n";
        let d = parse_device_help(t);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            ["lsi53c895a", "qemu-xhci", "scsi-hd"]
        );
    }
}
