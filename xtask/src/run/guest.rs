//! Booting the guest: one QEMU process with one disk per requested
//! controller, its serial console copied live to a log file, a bound on
//! the wait for the first byte and a deadline for the whole run, and the
//! selftest's verdict read from QEMU's exit status (isa-debug-exit). A
//! guest that does not report (QEMU refuses, crashes, never prints, or the
//! guest stops early) is a `BootFailure` with its evidence; only the
//! host's own steps (an image, a log, starting QEMU) are errors.
//!
//! Running is kept apart from showing: what happens is reported as
//! `Event`s to whoever displays them (the pipeline hands them to `ui`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use contract::{controllers, Controller, Params};

pub use crate::accel::{Accel, AccelChoice, AccelPicker};
pub use crate::event::{Event, Sink};
use crate::failure::{BootFailure, Evidence, Failure};
use crate::{qemu_args, ui};

const DISK_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug)]
pub struct Boot {
    pub qemu: PathBuf,
    /// The guest kind and what QEMU boots of it.
    pub image: crate::guests::GuestImage,
    /// What the guest does; its `controllers` are the disks attached.
    pub params: Params,
    /// Where disks and logs of this run go.
    pub dir: PathBuf,
    pub deadline: Duration,
    /// Enable QEMU's io_uring trace events (`crate::trace::EVENTS`).
    pub trace: bool,
    pub netdev: Netdev,
    /// The configuration every disk runs in (`-drive aio=,cache=`, an
    /// iothread).
    pub config: contract::Config,
}

/// A network backend beside the disks (`--netdev`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Netdev {
    /// No network: QEMU's main loop sleeps as long as its timers allow.
    None,
    /// User networking (libslirp) on a virtio-net NIC and no socket open:
    /// slirp caps each main-loop sleep at 1000 ms.
    User,
    /// User networking with a forwarded TCP port (a `hostfwd` rule on a free
    /// loopback port), as the report's ssh-reachable guests had: the
    /// listener sits in slirp's TCP list, which caps each main-loop sleep at
    /// 499 ms, the report's figure.
    Hostfwd,
}

impl Netdev {
    pub fn name(self) -> &'static str {
        match self {
            Netdev::None => "none",
            Netdev::User => "user",
            Netdev::Hostfwd => "hostfwd",
        }
    }
}

impl Boot {
    /// The controller rows of `params.controllers`, in table order.
    pub fn controllers(&self) -> Result<Vec<&'static Controller>> {
        let mut v = self
            .params
            .controllers
            .iter()
            .map(|n| controllers::by_name(n))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        v.sort_by_key(|c| controllers::rank(c.name));
        Ok(v)
    }
}

/// A guest run that reported its result through isa-debug-exit.
#[derive(Debug)]
pub struct Run {
    /// The selftest's kselftest code.
    pub code: i32,
    pub console: PathBuf,
    /// QEMU's stderr.
    pub stderr: PathBuf,
    pub elapsed: Duration,
    /// From QEMU start to the `KTAP version 1` line.
    pub to_ktap: Option<Duration>,
    /// Where the boot's time went, when the guest said (our `/init`).
    pub boot: Option<BootReport>,
    /// QEMU's trace log, when traced.
    pub trace_log: Option<PathBuf>,
    /// Which controller's image each of QEMU's file descriptors opens.
    pub fds: BTreeMap<i32, String>,
    /// Other processes' share of the machine's CPU during the boot, 0 to 1
    /// (`crate::load`), when /proc/stat could be read.
    pub host_busy: Option<f64>,
    /// The nice value QEMU ran at (`QEMU_NICE` where allowed).
    pub qemu_nice: Option<i32>,
}

/// The nice value every QEMU of a guest run starts at: its threads (all
/// inherit it) then preempt other work on the machine when they wake.
/// Measured beside two CPU hogs (one per core), probe guest, 16 boots
/// each: at nice 0 the controls' p50 sat at the host's ~2 ms scheduling
/// slice in 11 of 32 disk-boots (QEMU's main loop woke to the guest's kick
/// and waited for a hog's slice to end), and the verdict held in 5 of 8
/// runs (one REGRESSION); at -10, in none: every control 0.04-0.14 ms,
/// 8 of 8 verified. Quiet, it changes nothing (nothing to preempt). It
/// needs root or CAP_SYS_NICE; without, QEMU keeps the xtask's nice and the
/// report says so when the host was busy.
pub const QEMU_NICE: i32 = -10;

/// Starts the command at `QEMU_NICE`, if the system allows it.
fn raise_priority(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setpriority(2) is async-signal-safe; a refusal (EPERM) is
    // not an error: the boot runs at the inherited nice, as recorded.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, QEMU_NICE);
            Ok(())
        });
    }
}

/// A process's nice value, from `/proc/PID/stat` (the 19th field).
fn nice_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(16)?.parse().ok()
}

/// One boot's phases up to the KTAP header, in seconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BootReport {
    /// QEMU's start, the firmware, loading and decompressing the kernel:
    /// the host's time to the header less the guest's own clock then.
    pub qemu_firmware_decompress_s: f64,
    /// The kernel's start-up, to `/init`.
    pub kernel_s: f64,
    /// `/init` mounting and reading its command line.
    pub mounts_s: f64,
    /// Loading a distro kernel's driver modules.
    pub modules_s: f64,
    /// Waiting for every requested controller's disk.
    pub disks_s: f64,
    /// From QEMU's start to the first console line (the kernel prints once
    /// its console is up, a moment after it starts).
    pub first_output_s: f64,
    /// The guest's clocksource, on which every latency is read.
    pub clocksource: String,
}

impl BootReport {
    pub fn new(to_ktap: Duration, first_output: Duration, g: &contract::BootPhases) -> BootReport {
        let s = |ms: f64| (ms / 1e3 * 1e4).round() / 1e4;
        BootReport {
            qemu_firmware_decompress_s: s((to_ktap.as_secs_f64() * 1e3 - g.header_ms).max(0.0)),
            kernel_s: s(g.kernel_ms),
            mounts_s: s(g.mounts_ms),
            modules_s: s(g.modules_ms),
            disks_s: s(g.disks_ms),
            first_output_s: s(first_output.as_secs_f64() * 1e3),
            clocksource: g.clocksource.clone(),
        }
    }

    /// One line for the progress log.
    pub fn summary(&self) -> String {
        let mut parts = vec![
            format!("QEMU+firmware {:.2} s", self.qemu_firmware_decompress_s),
            format!("kernel {:.2} s", self.kernel_s),
        ];
        if self.modules_s >= 0.005 {
            parts.push(format!("modules {:.2} s", self.modules_s));
        }
        parts.push(format!("disks {:.2} s", self.disks_s));
        parts.join(", ")
    }
}

/// Fresh sparse images, one per controller, each boot: the write check
/// leaves a pattern.
fn fresh_images(b: &Boot, ctrls: &[&Controller]) -> Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for c in ctrls {
        let p = b.dir.join(format!("{}.img", c.name));
        let f = File::create(&p).with_context(|| format!("creating disk image {}", p.display()))?;
        f.set_len(DISK_BYTES)
            .with_context(|| format!("sizing disk image {}", p.display()))?;
        images.push(p);
    }
    Ok(images)
}

/// Which controller's image each of a process's descriptors has open,
/// read from /proc/PID/fd (images are named `{controller}.img`). A QEMU in
/// a suite's tree (`--qemu-deb`) opens them through a bind mount at the
/// same path inside the tree, and the host reads that as the tree's root
/// followed by the image's path: a target ending in the path is the image.
fn image_fds(pid: u32, ctrls: &[&Controller], images: &[PathBuf]) -> BTreeMap<i32, String> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in dir.flatten() {
        let (Some(fd), Ok(target)) = (
            e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()),
            std::fs::read_link(e.path()),
        ) else {
            continue;
        };
        if let Some(i) = images.iter().position(|img| is_image(&target, img)) {
            out.insert(fd, ctrls[i].name.to_string());
        }
    }
    out
}

/// Whether a descriptor's `target` is `img`, directly or through a tree.
fn is_image(target: &Path, img: &Path) -> bool {
    target == img || target.ends_with(img.strip_prefix("/").unwrap_or(img))
}

/// One line of QEMU's stdout, or its end.
enum Line {
    Text(String),
    Eof,
}

/// A running QEMU: the child (leader of its own process group), its
/// console's lines as they come, and the thread reading them. Dropped
/// before it was waited for, it kills the group and reaps the child, so
/// no boot leaves a process behind, whatever ended it.
struct Qemu {
    child: Child,
    lines: mpsc::Receiver<Line>,
    reader: Option<JoinHandle<()>>,
    reaped: bool,
    // Dropped after the child was reaped (fields drop after `drop`).
    _registered: crate::children::Registered,
}

impl Qemu {
    fn start(b: &Boot, args: &[OsString], stderr: &Path) -> Result<Qemu> {
        let err = File::create(stderr).with_context(|| format!("creating {}", stderr.display()))?;
        let mut cmd = Command::new(&b.qemu);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err);
        raise_priority(&mut cmd);
        let (mut child, registered) = crate::children::spawn(&mut cmd)
            .with_context(|| format!("starting {}", b.qemu.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                if tx.send(Line::Text(text)).is_err() {
                    break;
                }
            }
            let _ = tx.send(Line::Eof);
        });
        Ok(Qemu {
            child,
            lines: rx,
            reader: Some(reader),
            reaped: false,
            _registered: registered,
        })
    }

    /// QEMU's exit status, once its console has closed.
    fn wait(&mut self) -> Result<ExitStatus> {
        let status = self.child.wait().context("waiting for QEMU")?;
        self.reaped = true;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Ok(status)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill(2) of the child's own group (`children::spawn`
            // made it the leader); not yet reaped, its id is still its own.
            unsafe {
                libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Every writer of the console pipe is gone: the reader ends.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// What the console showed, as it came (times from QEMU's start).
#[derive(Default)]
struct Seen {
    first_line_at: Option<Duration>,
    to_ktap: Option<Duration>,
    phases: Option<contract::BootPhases>,
    /// Which controller's image each of QEMU's descriptors opened.
    fds: BTreeMap<i32, String>,
}

impl Seen {
    fn line(&mut self, l: &str, at: Duration, label: &str) {
        self.first_line_at.get_or_insert(at);
        if self.to_ktap.is_none() && l.contains("KTAP version 1") {
            self.to_ktap = Some(at);
        }
        if self.phases.is_none() {
            match contract::BootPhases::find_in(l) {
                Some(Ok(p)) => self.phases = Some(p),
                Some(Err(e)) => ui::warn(&format!(
                    "{label}: unreadable boot-phase line ({e}): the run goes on without its phases"
                )),
                None => {}
            }
        }
    }
}

/// How the console ended: QEMU closed it, or a bound passed first.
enum Ended {
    Closed,
    TimedOut { limit: Duration },
}

/// The two bounds of a boot: on its first console line, and on all of it.
struct Bounds {
    first_output: Duration,
    deadline: Duration,
}

/// Copies QEMU's console to `log` and `sink` until it closes or a bound
/// passes. `on_first` runs at the first line (QEMU has opened every drive
/// by then).
fn watch(
    q: &Qemu,
    start: Instant,
    bounds: &Bounds,
    log: &mut File,
    label: &str,
    sink: Sink,
    on_first: &mut dyn FnMut() -> BTreeMap<i32, String>,
) -> Result<(Seen, Ended)> {
    let mut seen = Seen::default();
    loop {
        let limit = match seen.first_line_at {
            None => bounds.first_output.min(bounds.deadline),
            Some(_) => bounds.deadline,
        };
        let l = match q.lines.recv_timeout(limit.saturating_sub(start.elapsed())) {
            Ok(Line::Text(l)) => l,
            Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                return Ok((seen, Ended::Closed))
            }
            Err(RecvTimeoutError::Timeout) => return Ok((seen, Ended::TimedOut { limit })),
        };
        if seen.first_line_at.is_none() {
            seen.fds = on_first();
        }
        seen.line(&l, start.elapsed(), label);
        writeln!(log, "{l}").context("writing the console log")?;
        sink(Event::Console { label, line: &l });
    }
}

/// A closed console's exit status: the guest's kselftest code, or how
/// QEMU ended without one.
fn judge(status: ExitStatus, printed: bool) -> std::result::Result<i32, Failure> {
    contract::exit::decode(status.code()).map_err(|why| match (status.signal(), status.code()) {
        (Some(signal), _) => Failure::Crashed { signal },
        (None, Some(code)) if code != 0 && !printed => Failure::Refused { status: code },
        _ => Failure::BadExit { why },
    })
}

/// Boots once under `accel`; `first_output` bounds the wait for the first
/// console byte (never past the boot's deadline).
pub fn boot(
    b: &Boot,
    accel: Accel,
    first_output: Duration,
    label: &str,
    sink: Sink,
) -> Result<std::result::Result<Run, BootFailure>> {
    std::fs::create_dir_all(&b.dir).with_context(|| format!("creating {}", b.dir.display()))?;
    let ctrls = b.controllers()?;
    let images = fresh_images(b, &ctrls)?;
    let console = b.dir.join(format!("console-{label}.log"));
    let stderr = b.dir.join(format!("qemu-{label}.stderr"));
    let args = qemu_args::args(b, accel, &ctrls, &images, label)?;
    let mut log = console_log(&console, &b.qemu, &args)?;
    sink(Event::BootStarted {
        label,
        accel: accel.name(),
    });
    let meter = crate::load::Meter::start();
    let start = Instant::now();
    let mut qemu = Qemu::start(b, &args, &stderr)?;
    let (pid, qemu_nice) = (qemu.child.id(), nice_of(qemu.child.id()));
    let bounds = Bounds {
        first_output,
        deadline: b.deadline,
    };
    let mut fds = || image_fds(pid, &ctrls, &images);
    let (seen, ended) = watch(&qemu, start, &bounds, &mut log, label, sink, &mut fds)?;
    let printed = seen.first_line_at.is_some();
    let judged = match ended {
        Ended::Closed => judge(qemu.wait()?, printed),
        Ended::TimedOut { limit } if !printed => Err(Failure::Silent { waited: limit }),
        Ended::TimedOut { .. } => Err(Failure::Unfinished {
            deadline: b.deadline,
        }),
    };
    drop(qemu);
    let elapsed = start.elapsed();
    // The images are made anew each boot; the logs and traces stay.
    for img in &images {
        let _ = std::fs::remove_file(img);
    }
    log.flush()?;
    let code = match judged {
        Ok(code) => code,
        Err(kind) => {
            return Ok(Err(BootFailure {
                label: label.to_string(),
                accel,
                kind,
                printed,
                evidence: Evidence::read(&console, &stderr),
            }))
        }
    };
    let run = Run {
        code,
        console,
        stderr,
        elapsed,
        to_ktap: seen.to_ktap,
        boot: match (seen.to_ktap, seen.first_line_at, &seen.phases) {
            (Some(k), Some(f), Some(p)) => Some(BootReport::new(k, f, p)),
            _ => None,
        },
        trace_log: qemu_args::trace_log(b, label),
        fds: seen.fds,
        // QEMU has been waited for, so its CPU is this process's.
        host_busy: meter.and_then(|m| m.others()),
        qemu_nice,
    };
    sink(run.finished(label));
    Ok(Ok(run))
}

/// The console log, its first line `# ` and the QEMU command, shell-quoted
/// (a user can paste it to rerun the boot; `Evidence` reads it back).
fn console_log(path: &Path, qemu: &Path, args: &[OsString]) -> Result<File> {
    let mut log = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut line = vec![qemu.as_os_str().to_owned()];
    line.extend(args.iter().cloned());
    writeln!(log, "# {}", qemu_args::shell_words(&line))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(log)
}

impl Run {
    /// The figures the display shows of a finished boot.
    fn finished<'a>(&self, label: &'a str) -> Event<'a> {
        Event::Finished {
            label,
            wall: self.elapsed,
            to_ktap: self.to_ktap,
            phases: self.boot.as_ref().map(BootReport::summary),
            status: self.code,
            host_busy: self.host_busy,
        }
    }
}

pub fn firmware_present() -> Result<()> {
    use crate::guests::QBOOT;
    if !Path::new(QBOOT).is_file() {
        bail!("{QBOOT} is missing: install Debian's qemu-system-data (cargo xtask deps --install)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_known_on_the_host_and_through_a_suite_tree() {
        let img = Path::new("/c/runs/r1/ahci.img");
        assert!(is_image(img, img));
        assert!(is_image(
            Path::new("/c/suite-trees/unstable/root/c/runs/r1/ahci.img"),
            img
        ));
        assert!(!is_image(Path::new("/c/runs/r1/nvme.img"), img));
        assert!(!is_image(Path::new("/c/runs/r2/ahci.img"), img));
    }

    #[test]
    fn boot_phases_split_the_host_time_to_the_header() {
        let g = contract::BootPhases {
            kernel_ms: 640.0,
            mounts_ms: 1.5,
            modules_ms: 0.0,
            disks_ms: 310.0,
            header_ms: 952.0,
            clocksource: "tsc".into(),
        };
        let b = BootReport::new(Duration::from_millis(1300), Duration::from_millis(700), &g);
        // What the guest's clock did not see: QEMU, firmware, decompression.
        assert_eq!(b.qemu_firmware_decompress_s, 0.348);
        assert_eq!((b.kernel_s, b.disks_s, b.first_output_s), (0.64, 0.31, 0.7));
        assert_eq!(
            b.summary(),
            "QEMU+firmware 0.35 s, kernel 0.64 s, disks 0.31 s"
        );
        // A guest clock ahead of the host's stopwatch is not a negative phase.
        let late = BootReport::new(Duration::from_millis(900), Duration::from_millis(700), &g);
        assert_eq!(late.qemu_firmware_decompress_s, 0.0);
    }

    /// A fake QEMU: `script` in sh, which notes its pid (and any child's)
    /// in `pids`; a boot of one disk with a short deadline.
    fn fake(dir: &Path, script: &str, deadline: Duration) -> Boot {
        let qemu = dir.join("qemu-system-x86_64");
        let pids = dir.join("pids");
        std::fs::write(
            &qemu,
            format!(
                "#!/bin/sh\nulimit -c 0\necho $$ >> {}\n{script}\n",
                pids.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        Boot {
            qemu,
            image: crate::guests::GuestImage::Probe {
                bios: dir.join("probe.bin"),
            },
            params: Params {
                controllers: vec!["ahci".into()],
                ..Params::default()
            },
            dir: dir.join("run"),
            deadline,
            trace: false,
            config: contract::Config::default(),
            netdev: Netdev::None,
        }
    }

    /// Boots the fake; checks what every failed boot must leave: its
    /// command line, QEMU's stderr, and no process of it still running.
    fn fail(script: &str, first_output: Duration, deadline: Duration) -> BootFailure {
        let t = tempfile::tempdir().unwrap();
        let b = fake(t.path(), script, deadline);
        let mut events = Vec::new();
        let start = Instant::now();
        let f = boot(&b, Accel::Tcg, first_output, "fake-r1", &mut |e| {
            events.push(format!("{e:?}"))
        })
        .unwrap()
        .unwrap_err();
        assert!(start.elapsed() < deadline + Duration::from_secs(2), "{f}");
        assert_eq!((f.label.as_str(), f.accel), ("fake-r1", Accel::Tcg));
        assert!(
            f.evidence
                .command_line
                .starts_with(&b.qemu.display().to_string())
                && f.evidence
                    .command_line
                    .contains("isa-debug-exit,iobase=0xf4"),
            "{}",
            f.evidence.command_line
        );
        assert_eq!(f.evidence.stderr, b.dir.join("qemu-fake-r1.stderr"));
        assert!(events[0].starts_with("BootStarted"), "{events:?}");
        assert!(!events.iter().any(|e| e.starts_with("Finished")));
        let pids = std::fs::read_to_string(t.path().join("pids")).unwrap();
        for pid in pids.split_whitespace() {
            assert!(gone(pid), "process {pid} of the fake QEMU is still running");
        }
        // The disk image is not left behind either.
        assert!(!b.dir.join("ahci.img").exists());
        f
    }

    /// Whether a process has ended (gone, or a zombie not yet reaped by
    /// whoever inherited it), within a second.
    fn gone(pid: &str) -> bool {
        (0..20).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
            let ended = state.is_none_or(|s| s.starts_with('Z'));
            if !ended {
                std::thread::sleep(Duration::from_millis(50));
            }
            ended
        })
    }

    const LONG: Duration = Duration::from_secs(20);

    #[test]
    fn a_qemu_that_exits_at_once_refused_the_guest() {
        let f = fail(
            "echo 'qemu-system-x86_64: -drive file=d0: aio=native was specified, but is not supported' >&2; exit 1",
            LONG,
            LONG,
        );
        assert_eq!(
            (f.kind.clone(), f.printed),
            (Failure::Refused { status: 1 }, false)
        );
        assert!(
            f.evidence.stderr_tail.contains("aio=native was specified"),
            "{f}"
        );
        assert!(
            f.what()
                .starts_with("QEMU refused to start the guest: it exited (exit status: 1)")
                && f.what()
                    .ends_with("aio=native was specified, but is not supported"),
            "{}",
            f.what()
        );
    }

    #[test]
    fn a_qemu_killed_by_a_signal_crashed() {
        let f = fail("echo 'about to fall over' >&2; kill -SEGV $$", LONG, LONG);
        assert_eq!(f.kind, Failure::Crashed { signal: 11 });
        assert!(f.evidence.stderr_tail.contains("about to fall over"), "{f}");
    }

    #[test]
    fn a_guest_that_never_prints_is_silent_within_the_bound() {
        // A child of its own too: the whole group goes.
        let start = Instant::now();
        let f = fail(
            "echo 'waiting' >&2; sleep 1000 & echo $! >> \"$(dirname \"$0\")/pids\"; wait",
            Duration::from_millis(400),
            LONG,
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            f.kind,
            Failure::Silent {
                waited: Duration::from_millis(400)
            }
        );
        assert!(!f.printed && f.evidence.stderr_tail == "waiting", "{f}");
        assert!(f
            .to_string()
            .contains("printed nothing in 0.4 s (fake-r1, tcg)"));
    }

    #[test]
    fn a_guest_that_powers_off_without_reporting_exited_badly() {
        let f = fail(
            "echo 'Linux version 6.1'; echo 'no init' >&2; exit 0",
            LONG,
            LONG,
        );
        let Failure::BadExit { why } = &f.kind else {
            panic!("{f}")
        };
        assert!(why.contains("powered off without reporting"), "{why}");
        assert!(
            f.printed && f.evidence.console_tail == "Linux version 6.1",
            "{f}"
        );
        assert_eq!(f.evidence.stderr_tail, "no init");
    }

    #[test]
    fn a_guest_that_stops_reporting_is_unfinished_at_the_deadline() {
        let f = fail(
            "echo 'KTAP version 1'; echo 'stuck' >&2; exec sleep 1000",
            LONG,
            Duration::from_millis(600),
        );
        assert_eq!(
            f.kind,
            Failure::Unfinished {
                deadline: Duration::from_millis(600)
            }
        );
        assert!(f.printed && f.evidence.stderr_tail == "stuck", "{f}");
    }

    #[test]
    fn a_guest_that_reports_is_a_run() {
        let t = tempfile::tempdir().unwrap();
        // isa-debug-exit's status for kselftest 0: ((0x20 | 0) << 1) | 1.
        let b = fake(
            t.path(),
            "echo 'KTAP version 1'; echo '1..0'; exit 65",
            LONG,
        );
        let mut finished = None;
        let run = boot(&b, Accel::Tcg, LONG, "fake-r1", &mut |e| {
            if let Event::Finished { status, .. } = e {
                finished = Some(status);
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!((run.code, finished), (0, Some(0)));
        assert!(run.to_ktap.is_some() && run.trace_log.is_none());
        let log = std::fs::read_to_string(&run.console).unwrap();
        assert!(
            log.starts_with("# ") && log.ends_with("KTAP version 1\n1..0\n"),
            "{log}"
        );
    }
}
