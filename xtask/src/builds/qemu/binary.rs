//! What a QEMU binary offers, asked of the binary itself: its version,
//! machines, device types, network backends and trace events, and whether
//! it takes aio=io_uring. One runner (`ask`) starts it, stdin closed and
//! under a deadline, so a binary that hangs fails with its name instead of
//! stalling the run; each answer is read once per binary and process
//! (`QemuBinary::of`), however many stages ask.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

/// How long a listing (`--version`, `-device help`, ...) may take: QEMU
/// answers in well under a second.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// How long a paused start with an aio=io_uring drive has to be refused: a
/// build without liburing refuses it at once; one with it stays up.
const IO_URING_REFUSED_WITHIN: Duration = Duration::from_secs(3);

/// How a run of the binary ended.
#[derive(Debug)]
pub enum Answer {
    Exited {
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    /// Still running at the deadline (then killed).
    Running,
}

/// Runs `binary args` with stdin closed, its output read as it comes,
/// killed if it is still running after `within`.
pub fn ask(binary: &Path, args: &[&str], within: Duration) -> Result<Answer> {
    let mut c = Command::new(binary);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, _registered) = crate::children::spawn(&mut c)
        .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
    // Read both pipes meanwhile: `-trace help` says more than a pipe holds.
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for QEMU")? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    Ok(match status {
        Some(status) => Answer::Exited {
            status,
            stdout,
            stderr,
        },
        None => Answer::Running,
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// One QEMU binary and what it said, each question asked on first use.
#[derive(Debug)]
pub struct QemuBinary {
    pub path: PathBuf,
    version: OnceLock<String>,
    machines: OnceLock<BTreeSet<String>>,
    devices: OnceLock<BTreeSet<String>>,
    netdevs: OnceLock<Vec<String>>,
    trace_help: OnceLock<String>,
}

/// The binaries asked so far, by path and by size and mtime (a binary
/// rebuilt at the same path is asked again).
type Known = BTreeMap<(PathBuf, Option<(u64, SystemTime)>), &'static QemuBinary>;
static KNOWN: Mutex<Known> = Mutex::new(BTreeMap::new());

impl QemuBinary {
    /// The binary at `path`, with whatever it already answered in this
    /// process. (Kept for the process: a run asks about a handful.)
    pub fn of(path: &Path) -> &'static QemuBinary {
        let stamp = std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)));
        let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        known.entry((path.to_path_buf(), stamp)).or_insert_with(|| {
            Box::leak(Box::new(QemuBinary {
                path: path.to_path_buf(),
                version: OnceLock::new(),
                machines: OnceLock::new(),
                devices: OnceLock::new(),
                netdevs: OnceLock::new(),
                trace_help: OnceLock::new(),
            }))
        })
    }

    /// `args`' answer: exit status, stdout and stderr.
    fn listing(&self, args: &[&str]) -> Result<(ExitStatus, String, String)> {
        match ask(&self.path, args, ANSWER_WITHIN)? {
            Answer::Exited {
                status,
                stdout,
                stderr,
            } => Ok((status, stdout, stderr)),
            Answer::Running => bail!(
                "{} {} gave no answer within {} s",
                self.path.display(),
                args.join(" "),
                ANSWER_WITHIN.as_secs()
            ),
        }
    }

    /// Its version (`QEMU emulator version 10.2.1 (...)` says 10.2.1); an
    /// error naming what it said when it is no QEMU system emulator.
    pub fn version(&self) -> Result<&str> {
        once(&self.version, || {
            let (status, out, err) = self.listing(&["--version"])?;
            let text = format!("{out}{err}");
            match parse_version(&text).filter(|_| status.success()) {
                Some(v) => Ok(v),
                None => bail!(
                    "{} is not a QEMU system emulator: `--version` said {:?}; pass a qemu-system-x86_64 binary",
                    self.path.display(),
                    text.lines().next().unwrap_or("nothing")
                ),
            }
        })
        .map(String::as_str)
    }

    /// The machine types `-machine help` lists (`q35`, `pc`, ...).
    pub fn machines(&self) -> Result<&BTreeSet<String>> {
        once(&self.machines, || {
            let (_, out, err) = self.listing(&["-machine", "help"])?;
            Ok(format!("{out}{err}")
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string)
                .collect())
        })
    }

    /// The device types `-device help` lists.
    pub fn devices(&self) -> Result<&BTreeSet<String>> {
        once(&self.devices, || {
            let (status, out, err) = self.listing(&["-machine", "none", "-device", "help"])?;
            if !status.success() {
                bail!(
                    "{} -device help failed ({status}): {}",
                    self.path.display(),
                    err.trim()
                );
            }
            Ok(parse_device_help(&out))
        })
    }

    /// The network backends `-netdev help` lists.
    pub fn netdevs(&self) -> Result<&[String]> {
        once(&self.netdevs, || {
            let (_, out, _) = self.listing(&["-machine", "none", "-netdev", "help"])?;
            Ok(parse_netdev_help(&out))
        })
        .map(Vec::as_slice)
    }

    /// What `-trace help` says: one trace event a line (on stdout, or on
    /// stderr on some versions).
    pub fn trace_help(&self) -> Result<&str> {
        once(&self.trace_help, || {
            let (_, out, err) = self.listing(&["-machine", "none", "-trace", "help"])?;
            Ok(format!("{out}{err}"))
        })
        .map(String::as_str)
    }

    /// Why it refuses an aio=io_uring drive (a build without liburing does,
    /// at once), or None: one with it starts, paused, and is stopped.
    pub fn io_uring_refusal(&self) -> Result<Option<String>> {
        let args = [
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
        ];
        Ok(match ask(&self.path, &args, IO_URING_REFUSED_WITHIN)? {
            Answer::Exited { status, stderr, .. } if !status.success() => {
                Some(stderr.trim().to_string())
            }
            _ => None,
        })
    }
}

/// The value in `cell`, made by `make` the first time it succeeds (an error
/// is not kept: the next caller asks again).
fn once<T>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = make()?;
    Ok(cell.get_or_init(|| v))
}

/// `10.2.1` of `QEMU emulator version 10.2.1 (Debian 1:10.2.1+ds-1)`.
pub fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.split("QEMU emulator version ").nth(1))
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_string())
}

/// The device types `-device help` lists: lines like
/// `name "lsi53c895a", bus PCI, alias "lsi"`.
pub fn parse_device_help(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("name \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The backends `-netdev help` lists, one a line after its heading.
pub fn parse_netdev_help(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Available netdev backend types"))
        .skip(1)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What a prebuilt QEMU binary is, checked before it is measured: a QEMU
/// system emulator (its version is returned) with the q35 machine, the
/// isa-debug-exit device and aio=io_uring.
pub fn probe(binary: &Path) -> Result<String> {
    let b = QemuBinary::of(binary);
    let version = b.version()?;
    if !b.machines()?.contains("q35") {
        bail!(
            "{} (QEMU {version}) has no q35 machine: pass a qemu-system-x86_64 built with it",
            binary.display()
        );
    }
    if !b.devices()?.contains("isa-debug-exit") {
        bail!(
            "{} (QEMU {version}) has no isa-debug-exit device, which carries the guest's verdict",
            binary.display()
        );
    }
    if let Some(why) = b.io_uring_refusal()? {
        bail!(
            "{} (QEMU {version}) refuses aio=io_uring: {why}; it needs a build with liburing (--enable-linux-io-uring)",
            binary.display()
        );
    }
    Ok(version.to_string())
}

/// The network backends a QEMU binary offers (`-netdev help`).
pub fn netdev_backends(binary: &Path) -> Result<Vec<String>> {
    QemuBinary::of(binary).netdevs().map(<[String]>::to_vec)
}

/// Whether a binary can run user networking (`--netdev user` or
/// `hostfwd`, the probe guest's default): one message naming the fix.
pub fn require_user_networking(binary: &Path) -> Result<()> {
    let b = QemuBinary::of(binary);
    let backends = b.netdevs()?;
    if !backends.iter().any(|n| n == "user") {
        bail!(
            "--netdev user/hostfwd (hostfwd is the probe guest's default): {} has no user networking (-netdev help lists: {}); build QEMU with libslirp (configure --enable-slirp; Debian: libslirp-dev) or pass --netdev none",
            binary.display(),
            if backends.is_empty() { "nothing".to_string() } else { backends.join(", ") }
        );
    }
    if !b.devices()?.contains("virtio-net-pci") {
        bail!(
            "--netdev user/hostfwd (hostfwd is the probe guest's default): {} has no virtio-net-pci NIC to attach it to (-device help); pass --netdev none",
            binary.display()
        );
    }
    Ok(())
}

/// The device types a QEMU binary offers.
pub fn device_types(binary: &Path) -> Result<BTreeSet<String>> {
    QemuBinary::of(binary).devices().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QEMU 10.2.1 as far as its listings go, that logs each question
    /// (to `asked` beside it) and accepts aio=io_uring by exiting 0.
    const FAKE: &str = r#"#!/bin/sh
echo "$*" >> "$(dirname "$0")/asked"
case "$*" in
--version) printf 'QEMU emulator version 10.2.1 (Debian 1:10.2.1+ds-1)\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n' ;;
"-machine help") printf 'Supported machines are:\npc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.2)\nq35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.2)\nnone                 empty machine\n' ;;
"-machine none -device help") printf 'Storage devices:\nname "ahci", bus PCI, alias "ich9-ahci"\nname "nvme", bus PCI, desc "Non-Volatile Memory Express"\n\nMisc devices:\nname "isa-debug-exit", bus ISA\n\nNetwork devices:\nname "virtio-net-pci", bus PCI, alias "virtio-net"\n' ;;
"-machine none -netdev help") printf 'Available netdev backend types:\nsocket\nstream\nuser\ntap\n' ;;
"-machine none -trace help") printf 'fdmon_io_uring_add_sqe\nfdmon_io_uring_cqe_handler\n' >&2 ;;
*aio=io_uring*) exit 0 ;;
*) exit 1 ;;
esac
"#;

    /// `script` as an executable `qemu-system-x86_64` in a tempdir.
    fn fake(script: &str) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("qemu-system-x86_64");
        // `--ping` only runs it (see below).
        let script = script.replacen('\n', "\n[ \"$1\" = --ping ] && exit 0\n", 1);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another test's child forked while the file was open for writing
        // holds it until its exec (ETXTBSY): wait for that to pass.
        for _ in 0..100 {
            match Command::new(&path).arg("--ping").status() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
        (t, path)
    }

    fn asked(t: &tempfile::TempDir) -> Vec<String> {
        std::fs::read_to_string(t.path().join("asked"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_question_is_answered_from_the_binarys_own_listing() {
        let (_t, path) = fake(FAKE);
        let b = QemuBinary::of(&path);
        assert_eq!(b.version().unwrap(), "10.2.1");
        assert!(b.machines().unwrap().contains("q35"));
        assert!(!b.machines().unwrap().contains("microvm"));
        assert_eq!(
            b.devices().unwrap().iter().collect::<Vec<_>>(),
            ["ahci", "isa-debug-exit", "nvme", "virtio-net-pci"]
        );
        assert_eq!(b.netdevs().unwrap(), ["socket", "stream", "user", "tap"]);
        // Events on stderr count as on stdout.
        assert_eq!(
            b.trace_help().unwrap(),
            "fdmon_io_uring_add_sqe\nfdmon_io_uring_cqe_handler\n"
        );
        assert_eq!(b.io_uring_refusal().unwrap(), None);
        assert_eq!(probe(&path).unwrap(), "10.2.1");
        require_user_networking(&path).unwrap();
    }

    #[test]
    fn each_question_is_asked_once_per_binary() {
        let (t, path) = fake(FAKE);
        for _ in 0..2 {
            device_types(&path).unwrap();
            netdev_backends(&path).unwrap();
            QemuBinary::of(&path).trace_help().unwrap();
        }
        probe(&path).unwrap();
        assert_eq!(
            asked(&t),
            [
                "-machine none -device help",
                "-machine none -netdev help",
                "-machine none -trace help",
                "--version",
                "-machine help",
                "-machine none -nodefaults -display none -monitor none -S -drive file=/dev/null,if=none,format=raw,readonly=on,aio=io_uring",
            ]
        );
    }

    #[test]
    fn what_a_binary_lacks_is_named_with_the_fix() {
        let (_t, path) = fake(&FAKE.replace("q35 ", "q99 "));
        let e = format!("{:#}", probe(&path).unwrap_err());
        assert!(e.contains("(QEMU 10.2.1) has no q35 machine"), "{e}");

        let (_t, path) = fake(&FAKE.replace(
            "*aio=io_uring*) exit 0",
            "*aio=io_uring*) echo 'aio=io_uring: this build has no io_uring' >&2; exit 1",
        ));
        let e = format!("{:#}", probe(&path).unwrap_err());
        assert!(
            e.contains("refuses aio=io_uring: aio=io_uring: this build has no io_uring; it needs a build with liburing"),
            "{e}"
        );

        let (_t, path) = fake(&FAKE.replace("\\nuser\\n", "\\n"));
        let e = format!("{:#}", require_user_networking(&path).unwrap_err());
        assert!(
            e.contains("has no user networking (-netdev help lists: socket, stream, tap)"),
            "{e}"
        );

        let (_t, path) = fake("#!/bin/sh\necho 'cat (GNU coreutils) 9.1'\n");
        let e = format!("{:#}", probe(&path).unwrap_err());
        assert!(
            e.contains(
                "is not a QEMU system emulator: `--version` said \"cat (GNU coreutils) 9.1\""
            ),
            "{e}"
        );

        let (_t, path) = fake("#!/bin/sh\necho 'no such machine' >&2\nexit 1\n");
        let e = format!("{:#}", device_types(&path).unwrap_err());
        assert!(
            e.contains("-device help failed (exit status: 1): no such machine"),
            "{e}"
        );
    }

    #[test]
    fn a_binary_that_hangs_is_stopped_at_the_deadline() {
        let (_t, path) = fake("#!/bin/sh\nexec sleep 30\n");
        let t = Instant::now();
        let a = ask(&path, &["--version"], Duration::from_millis(200)).unwrap();
        assert!(matches!(a, Answer::Running), "{a:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let e = ask(
            &PathBuf::from("/nonexistent/qemu"),
            &["--version"],
            ANSWER_WITHIN,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").starts_with("running /nonexistent/qemu --version"),
            "{e:#}"
        );
    }

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
