//! Booting the guest: one QEMU process with the three disks, its serial
//! console copied live to a log file, a deadline for the first byte (the
//! KVM probe) and one for the whole run, and the selftest's verdict read
//! from QEMU's exit status (isa-debug-exit).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::ui;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM when it boots a guest here, else TCG.
    Auto,
    /// KVM only; an error when /dev/kvm cannot be used.
    Kvm,
    /// Software emulation: slower, but works everywhere.
    Tcg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Firmware and option ROMs: the +ds QEMU build ships none; Debian's
/// qemu-system-data has qboot (SeaBIOS costs ~30 s of TCG boot time).
pub const DATA_DIR: &str = "/usr/share/qemu";
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// The transports and how QEMU attaches each, all on `aio=io_uring`.
pub const DISKS: &[(&str, &str)] = &[
    ("ahci", "ide-hd,bus=ide.0"),
    ("virtio_blk", "virtio-blk-pci"),
    ("nvme", "nvme,serial=uringidle"),
];
const DISK_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug)]
pub struct Boot {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `uring_idle.*` words for the selftest.
    pub params: Vec<String>,
    /// Where disks and logs of this run go.
    pub dir: PathBuf,
    pub deadline: Duration,
}

#[derive(Debug)]
pub enum Exit {
    /// isa-debug-exit carried the selftest's kselftest code.
    Reported(i32),
    /// Nothing on the console before the first-output deadline, or QEMU
    /// died before printing anything; says which.
    Silent(String),
}

#[derive(Debug)]
pub struct Run {
    pub exit: Exit,
    pub console: PathBuf,
    pub elapsed: Duration,
    /// From QEMU start to the `KTAP version 1` line.
    pub to_ktap: Option<Duration>,
}

pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Under TCG every guest timer is a timer of QEMU's main loop, so each one
/// wakes the loop and ends a stall. With both the LAPIC timer and the HPET
/// ticking, their phase offset (random per boot) made the stall 10 ms in
/// some boots and ~5 ms in others; with the HPET alone it is the same every
/// boot. Under KVM the LAPIC lives in the host kernel and must stay: moving
/// the tick into QEMU would hide the ~500 ms stall.
fn tcg_tick(accel: Accel) -> &'static str {
    match accel {
        Accel::Tcg => "nolapic_timer ",
        Accel::Kvm => "",
    }
}

/// The QEMU argument list. On the kernel command line, loglevel=6 keeps
/// NOTICE (the banner) and quiets INFO chatter that would interleave with
/// KTAP; panic=-1 turns a dead init into an exit.
pub fn args(b: &Boot, accel: Accel, disks: &[PathBuf]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-machine".into(),
        format!("q35,accel={}", accel.name()),
        "-cpu".into(),
        if accel == Accel::Kvm {
            "host"
        } else {
            "qemu64"
        }
        .into(),
        "-m".into(),
        "256M".into(),
        "-smp".into(),
        "1".into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        "stdio".into(),
        "-no-reboot".into(),
        "-bios".into(),
        QBOOT.into(),
        "-L".into(),
        DATA_DIR.into(),
        "-kernel".into(),
        b.kernel.display().to_string(),
        "-initrd".into(),
        b.initrd.display().to_string(),
        "-append".into(),
        format!(
            "console=ttyS0 loglevel=6 panic=-1 {}{}",
            tcg_tick(accel),
            b.params.join(" ")
        ),
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
    ];
    for (i, ((_, dev), img)) in DISKS.iter().zip(disks).enumerate() {
        a.push("-drive".into());
        a.push(format!(
            "file={},if=none,id=d{i},format=raw,aio=io_uring,cache=none",
            img.display()
        ));
        a.push("-device".into());
        a.push(format!("{dev},drive=d{i}"));
    }
    a
}

/// The selftest writes `0x20 | code` to isa-debug-exit (kselftest's
/// init::DEBUG_EXIT_MARK), so QEMU exits with `((0x20 | code) << 1) | 1`:
/// 65 pass, 67 fail, 73 skip. QEMU's own errors exit with 1, a guest that
/// powered off without reporting with 0.
const DEBUG_EXIT_MARK: i32 = 0x20;

/// Decodes QEMU's exit status into the selftest's kselftest code.
pub fn decode_status(status: Option<i32>) -> Result<i32, String> {
    match status {
        Some(s) if s % 2 == 1 && (s >> 1) & DEBUG_EXIT_MARK != 0 => Ok((s >> 1) & 0x1f),
        Some(0) => Err(
            "the guest powered off without reporting a result (did /init die? see the console log)"
                .into(),
        ),
        Some(s) => Err(format!(
            "QEMU exited with status {s} before the guest reported (see QEMU stderr)"
        )),
        None => Err("QEMU was killed by a signal".into()),
    }
}

/// What a failed boot leaves to read: the console log's path and tail, and
/// QEMU's stderr tail.
fn evidence(console: &Path, stderr: &Path) -> String {
    format!(
        "console log {}\n--- last console lines ---\n{}\n--- QEMU stderr ---\n{}",
        console.display(),
        ui::tail(console, 15),
        ui::tail(stderr, 10)
    )
}

enum Event {
    Line(String),
    Eof,
}

/// Boots once. `first_output` bounds the wait for the first console byte.
pub fn boot(b: &Boot, accel: Accel, first_output: Option<Duration>, label: &str) -> Result<Run> {
    std::fs::create_dir_all(&b.dir)?;
    let mut disks = Vec::new();
    for (name, _) in DISKS {
        let p = b.dir.join(format!("{name}.img"));
        // Fresh sparse images each boot: the write check leaves a pattern.
        let f = std::fs::File::create(&p)
            .with_context(|| format!("creating disk image {}", p.display()))?;
        f.set_len(DISK_BYTES)?;
        disks.push(p);
    }
    let console = b.dir.join(format!("console-{label}.log"));
    let stderr_path = b.dir.join(format!("qemu-{label}.stderr"));
    let mut log = std::fs::File::create(&console)
        .with_context(|| format!("creating {}", console.display()))?;
    let args = args(b, accel, &disks);
    writeln!(log, "# {} {}", b.qemu.display(), args.join(" "))?;
    let start = Instant::now();
    let mut child = Command::new(&b.qemu)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("starting {}", b.qemu.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(Event::Line(text)).is_err() {
                break;
            }
        }
        let _ = tx.send(Event::Eof);
    });

    let mut seen_output = false;
    let mut to_ktap = None;
    let kill = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    loop {
        let limit = match (seen_output, first_output) {
            (false, Some(f)) => f.min(b.deadline),
            _ => b.deadline,
        };
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(Event::Line(l)) => {
                seen_output = true;
                writeln!(log, "{l}")?;
                if to_ktap.is_none() && l.contains("KTAP version 1") {
                    to_ktap = Some(start.elapsed());
                }
                if l.starts_with("ok ") || l.starts_with("not ok ") || l.starts_with("Bail out!") {
                    ui::info(&format!(
                        "[{label}] {}",
                        l.split(" # ").next().unwrap_or(&l)
                    ));
                }
            }
            Ok(Event::Eof) => break,
            Err(_) => {
                kill(&mut child);
                let _ = reader.join();
                if !seen_output && first_output.is_some() {
                    let why = format!("printed nothing in {} s", limit.as_secs());
                    return Ok(Run {
                        exit: Exit::Silent(why),
                        console,
                        elapsed: start.elapsed(),
                        to_ktap,
                    });
                }
                bail!(
                    "the guest ({label}, {}) did not finish within {:?}; {}",
                    accel.name(),
                    b.deadline,
                    evidence(&console, &stderr_path)
                );
            }
        }
    }
    let status = child.wait().context("waiting for QEMU")?;
    let _ = reader.join();
    log.flush()?;
    let elapsed = start.elapsed();
    if !seen_output && first_output.is_some() {
        let why = format!(
            "QEMU exited ({status}) before printing anything: {}",
            ui::tail(&stderr_path, 2).replace('\n', " / ")
        );
        return Ok(Run {
            exit: Exit::Silent(why),
            console,
            elapsed,
            to_ktap,
        });
    }
    match decode_status(status.code()) {
        Ok(code) => Ok(Run {
            exit: Exit::Reported(code),
            console,
            elapsed,
            to_ktap,
        }),
        Err(why) => bail!(
            "{why} ({label}, {}); {}",
            accel.name(),
            evidence(&console, &stderr_path)
        ),
    }
}

/// Picks the accelerator once per pipeline: KVM when asked or when it boots
/// a guest here within a few seconds, else TCG (nested kvm-pvm hosts open
/// /dev/kvm but hang ordinary guests before they print anything).
pub struct AccelPicker {
    choice: AccelChoice,
    decided: Option<Accel>,
}

/// A working KVM guest prints its banner (loglevel=6 keeps it) well under a
/// second after start; 3 s leaves room for a loaded host and bounds what
/// the probe costs on hosts where KVM cannot boot a guest.
pub const KVM_FIRST_OUTPUT: Duration = Duration::from_secs(3);

impl AccelPicker {
    pub fn new(choice: AccelChoice) -> Result<AccelPicker> {
        if choice == AccelChoice::Kvm && !kvm_usable() {
            bail!("--accel kvm: /dev/kvm cannot be opened read-write (no KVM here, or no permission); use --accel tcg or auto");
        }
        let decided = match choice {
            AccelChoice::Tcg => Some(Accel::Tcg),
            AccelChoice::Kvm => Some(Accel::Kvm),
            AccelChoice::Auto if !kvm_usable() => {
                ui::info("no usable /dev/kvm: using TCG");
                Some(Accel::Tcg)
            }
            AccelChoice::Auto => match remembered_kvm_failure() {
                Some(why) => {
                    ui::info(&format!("KVM failed earlier since this host booted ({why}): using TCG (--accel kvm forces a retry)"));
                    Some(Accel::Tcg)
                }
                None => None,
            },
        };
        Ok(AccelPicker { choice, decided })
    }

    pub fn decided(&self) -> Option<Accel> {
        self.decided
    }

    /// Boots with the chosen accelerator, deciding on the first boot.
    pub fn boot(&mut self, b: &Boot, label: &str) -> Result<(Run, Accel)> {
        if let Some(a) = self.decided {
            let first = if self.choice == AccelChoice::Kvm {
                Some(b.deadline)
            } else {
                None
            };
            let run = boot(b, a, first, label)?;
            if let Exit::Silent(why) = &run.exit {
                bail!(
                    "the guest under {}: {why} (console log {})",
                    a.name(),
                    run.console.display()
                );
            }
            return Ok((run, a));
        }
        let run = boot(b, Accel::Kvm, Some(KVM_FIRST_OUTPUT), label)?;
        match run.exit {
            Exit::Silent(why) => {
                ui::warn(&format!("the KVM guest {why} (nested or restricted KVM, e.g. kvm-pvm): falling back to TCG"));
                self.decided = Some(Accel::Tcg);
                let run = boot(b, Accel::Tcg, None, label)?;
                // Only a failure that TCG does not share is KVM's to remember.
                remember_kvm_failure(&why);
                Ok((run, Accel::Tcg))
            }
            Exit::Reported(_) => {
                self.decided = Some(Accel::Kvm);
                Ok((run, Accel::Kvm))
            }
        }
    }
}

/// KVM's usability does not change while the host is up: a failed probe is
/// remembered under the host's boot id, so it costs one boot per host boot.
fn kvm_memo() -> Option<PathBuf> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(
        crate::cache::dir("accel")
            .ok()?
            .join(format!("kvm-unusable-{}", boot_id.trim())),
    )
}

fn remembered_kvm_failure() -> Option<String> {
    std::fs::read_to_string(kvm_memo()?)
        .ok()
        .filter(|s| !s.is_empty())
}

fn remember_kvm_failure(why: &str) {
    if let Some(p) = kvm_memo() {
        let _ = std::fs::write(p, why);
    }
}

pub fn firmware_present() -> Result<()> {
    if !Path::new(QBOOT).is_file() {
        bail!("{QBOOT} is missing: install Debian's qemu-system-data (cargo xtask deps --install)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_decoding() {
        assert_eq!(decode_status(Some(65)), Ok(0));
        assert_eq!(decode_status(Some(67)), Ok(1));
        assert_eq!(decode_status(Some(73)), Ok(4));
        // QEMU's own failure (bad option, unopenable disk) is never a pass.
        assert!(decode_status(Some(1))
            .unwrap_err()
            .contains("QEMU exited with status 1"));
        assert!(decode_status(Some(0))
            .unwrap_err()
            .contains("without reporting"));
        assert!(decode_status(Some(3)).is_err());
        assert!(decode_status(None).is_err());
    }

    #[test]
    fn every_disk_is_on_io_uring_without_host_cache() {
        let b = Boot {
            qemu: "q".into(),
            kernel: "k".into(),
            initrd: "i".into(),
            params: vec!["uring_idle.expect=3".into()],
            dir: "/tmp".into(),
            deadline: Duration::from_secs(1),
        };
        let disks: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("/d{i}"))).collect();
        let a = args(&b, Accel::Tcg, &disks).join(" ");
        assert_eq!(a.matches("aio=io_uring,cache=none").count(), 3);
        assert!(
            a.contains("ide-hd,bus=ide.0,drive=d0")
                && a.contains("virtio-blk-pci,drive=d1")
                && a.contains("nvme,serial=uringidle,drive=d2")
        );
        assert!(a.contains("q35,accel=tcg") && a.contains(QBOOT) && a.contains("isa-debug-exit"));
        assert!(a.contains("uring_idle.expect=3"));
        // One guest timer source under TCG; KVM keeps its in-kernel LAPIC timer.
        assert!(a.contains(" nolapic_timer "));
        assert!(!args(&b, Accel::Kvm, &disks)
            .join(" ")
            .contains("nolapic_timer"));
    }
}
