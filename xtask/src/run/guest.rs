//! Booting the guest: one QEMU process with one disk per requested
//! controller, its serial console copied live to a log file, a deadline for
//! the first byte (the KVM probe) and one for the whole run, and the
//! selftest's verdict read from QEMU's exit status (isa-debug-exit).
//!
//! Running is kept apart from showing: what happens is reported as
//! `Event`s to whoever displays them (the pipeline hands them to `ui`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use contract::{controllers, Controller, Params};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// A loopback TCP port nobody listens on now, for the `hostfwd` rule (the
/// kernel hands out a free one; QEMU binds it a moment later).
fn free_loopback_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("finding a free loopback port for --netdev hostfwd")?;
    Ok(l.local_addr()?.port())
}

/// The NIC's PCI slot: one no controller-table row uses (a test checks).
pub const NIC_SLOT: u8 = 0x14;

fn network(n: Netdev) -> Result<Vec<OsString>> {
    let netdev = match n {
        Netdev::None => return Ok(vec![]),
        Netdev::User => "user,id=net0".to_string(),
        Netdev::Hostfwd => format!(
            "user,id=net0,hostfwd=tcp:127.0.0.1:{}-:22",
            free_loopback_port()?
        ),
    };
    Ok(vec![
        "-netdev".into(),
        netdev.into(),
        "-device".into(),
        // No option ROM: qboot never network-boots, and a +ds QEMU
        // ships none to find.
        format!("virtio-net-pci,netdev=net0,addr={NIC_SLOT:#04x},romfile=").into(),
    ])
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

/// How one boot ended, when it ended in a way the caller may act on.
#[derive(Debug)]
enum Outcome {
    Reported(Run),
    /// Nothing on the console before the first-output deadline, or QEMU
    /// died before printing anything; says which.
    Silent(String),
}

pub use crate::event::{Event, Sink};

pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The guest's clock and tick.
///
/// `tsc=reliable`: the latencies are read from the TSC (the guest starts on
/// tsc-early). A built guest kernel without ACPI (the default controllers
/// need none) has no HPET or ACPI PM timer to check the TSC against, and
/// without this it drops to jiffies when it refines the TSC, a second or so
/// into the run (measured: the fourth boot of a run read jiffies).
///
/// `tsc_early_khz`, TCG only: the guest's TSC is the host's (QEMU returns
/// the host counter), so the host says its rate rather than the guest
/// calibrating it against the emulated PIT, which failed in one boot of a
/// cold run ("tsc: Unable to calibrate against PIT", then a jiffies clock)
/// when there was no HPET to fall back on.
///
/// `nolapic_timer`, TCG only: every guest timer is then a timer of QEMU's
/// main loop, so each one wakes the loop and ends a stall. With both the
/// LAPIC timer and the HPET ticking, their phase offset (random per boot)
/// made the stall 10 ms in some boots and ~5 ms in others; with one tick
/// source (the HPET, or the PIT in a kernel without ACPI) it is the same
/// every boot. Under KVM the LAPIC lives in the host kernel and must stay:
/// moving the tick into QEMU would hide the ~500 ms stall.
pub(crate) fn clock_args(accel: Accel) -> String {
    match accel {
        Accel::Tcg => match host_tsc_khz() {
            Some(khz) => format!(" tsc=reliable tsc_early_khz={khz} nolapic_timer"),
            None => " tsc=reliable nolapic_timer".into(),
        },
        Accel::Kvm => " tsc=reliable".into(),
    }
}

/// The host's TSC rate in kHz, when the host's TSC is invariant (its
/// /proc/cpuinfo says constant_tsc and nonstop_tsc): the median of three
/// 20 ms readings against CLOCK_MONOTONIC_RAW, measured once per process.
pub fn host_tsc_khz() -> Option<u64> {
    static KHZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
        let flags = info.lines().find(|l| l.starts_with("flags"))?;
        let has = |f: &str| flags.split_whitespace().any(|w| w == f);
        if !(has("constant_tsc") && has("nonstop_tsc")) {
            return None;
        }
        let mut khz: Vec<u64> = (0..3).filter_map(|_| tsc_khz_once()).collect();
        khz.sort_unstable();
        khz.get(khz.len() / 2).copied()
    })
}

#[cfg(target_arch = "x86_64")]
fn tsc_khz_once() -> Option<u64> {
    fn now() -> (u64, u64) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill; RDTSC has no preconditions.
        unsafe {
            libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts);
            let tsc = core::arch::x86_64::_rdtsc();
            (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64, tsc)
        }
    }
    let (n0, t0) = now();
    std::thread::sleep(Duration::from_millis(20));
    let (n1, t1) = now();
    let khz = u128::from(t1.checked_sub(t0)?) * 1_000_000 / u128::from(n1.checked_sub(n0)?.max(1));
    // A TSC between 100 MHz and 10 GHz; anything else is a misreading.
    (100_000..10_000_000).contains(&khz).then_some(khz as u64)
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc_khz_once() -> Option<u64> {
    None
}

fn os(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

/// `KEY=PATH` for a QEMU option value: a comma in the path is doubled, as
/// QEMU's option syntax wants.
fn opt_path(prefix: &str, path: &Path) -> OsString {
    let mut v = prefix.as_bytes().to_vec();
    for &b in path.as_os_str().as_bytes() {
        v.push(b);
        if b == b',' {
            v.push(b',');
        }
    }
    OsString::from_vec(v)
}

fn machine(accel: Accel) -> Vec<OsString> {
    let cpu = match accel {
        Accel::Kvm => "host",
        Accel::Tcg => "qemu64",
    };
    let mut a = vec![
        "-machine".into(),
        format!("q35,accel={}", accel.name()).into(),
    ];
    a.extend(os(&[
        "-cpu",
        cpu,
        "-m",
        "256M",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]));
    a
}

/// One disk image on `aio=io_uring` without the host page cache, attached
/// as the controller's table row says.
fn disk(c: &Controller, index: usize, image: &Path) -> Vec<OsString> {
    let id = format!("d{index}");
    let mut drive = opt_path("file=", image);
    drive.push(format!(
        ",if=none,id={id},format=raw,aio=io_uring,cache=none"
    ));
    let mut a = vec!["-drive".into(), drive];
    for (flag, value) in c.qemu_args(&id) {
        a.push(flag.into());
        a.push(value.into());
    }
    a
}

/// QEMU's own trace events into `log`, stamped to the microsecond.
fn tracing(log: &Path) -> Vec<OsString> {
    let mut a = Vec::new();
    for e in crate::trace::EVENTS {
        a.push("-trace".into());
        a.push(format!("enable={e}").into());
    }
    a.extend(os(&["-msg", "timestamp=on"]));
    a.push("-D".into());
    a.push(log.into());
    a
}

fn trace_log(b: &Boot, label: &str) -> Option<PathBuf> {
    b.trace.then(|| b.dir.join(format!("trace-{label}.log")))
}

/// Which controller's image each of a process's descriptors has open,
/// read from /proc/PID/fd (images are named `{controller}.img`).
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
        if let Some(i) = images.iter().position(|img| *img == target) {
            out.insert(fd, ctrls[i].name.to_string());
        }
    }
    out
}

/// The whole QEMU argument list; `images` holds one image per controller.
pub fn args(
    b: &Boot,
    accel: Accel,
    ctrls: &[&Controller],
    images: &[PathBuf],
    label: &str,
) -> Result<Vec<OsString>> {
    let mut a = machine(accel);
    a.extend(b.image.boot_args(&b.params, accel));
    if let Some(log) = trace_log(b, label) {
        a.extend(tracing(&log));
    }
    for (i, (c, img)) in ctrls.iter().zip(images).enumerate() {
        a.extend(disk(c, i, img));
    }
    a.extend(network(b.netdev)?);
    Ok(a)
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

enum Line {
    Text(String),
    Eof,
}

/// The argument list as one shell-quoted line, for the console log (a user
/// can paste it to rerun the boot) and tests.
fn shell_words(args: &[OsString]) -> String {
    shell_words::join(args.iter().map(|a| a.to_string_lossy()))
}

/// Boots once. `first_output` bounds the wait for the first console byte.
fn boot(
    b: &Boot,
    accel: Accel,
    first_output: Option<Duration>,
    label: &str,
    sink: Sink,
) -> Result<Outcome> {
    std::fs::create_dir_all(&b.dir)?;
    let ctrls = b.controllers()?;
    let mut images = Vec::new();
    for c in &ctrls {
        let p = b.dir.join(format!("{}.img", c.name));
        // Fresh sparse images each boot: the write check leaves a pattern.
        let f = std::fs::File::create(&p)
            .with_context(|| format!("creating disk image {}", p.display()))?;
        f.set_len(DISK_BYTES)?;
        images.push(p);
    }
    let console = b.dir.join(format!("console-{label}.log"));
    let stderr_path = b.dir.join(format!("qemu-{label}.stderr"));
    let mut log = std::fs::File::create(&console)
        .with_context(|| format!("creating {}", console.display()))?;
    let args = args(b, accel, &ctrls, &images, label)?;
    let mut line = vec![b.qemu.clone().into_os_string()];
    line.extend(args.iter().cloned());
    writeln!(log, "# {}", shell_words(&line))?;
    sink(Event::BootStarted {
        label,
        accel: accel.name(),
    });
    let meter = crate::load::Meter::start();
    let start = Instant::now();
    let mut cmd = Command::new(&b.qemu);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path)?);
    raise_priority(&mut cmd);
    let (mut child, _registered) = crate::children::spawn(&mut cmd)
        .with_context(|| format!("starting {}", b.qemu.display()))?;
    let qemu_nice = nice_of(child.id());
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

    let mut seen_output = false;
    let mut to_ktap = None;
    let mut first_line_at = None;
    let mut phases = None;
    let mut fds = BTreeMap::new();
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
            Ok(Line::Text(l)) => {
                if !seen_output {
                    // QEMU opened every drive before the guest printed.
                    fds = image_fds(child.id(), &ctrls, &images);
                }
                seen_output = true;
                first_line_at.get_or_insert_with(|| start.elapsed());
                writeln!(log, "{l}")?;
                if to_ktap.is_none() && l.contains("KTAP version 1") {
                    to_ktap = Some(start.elapsed());
                }
                if phases.is_none() {
                    match contract::BootPhases::find_in(&l) {
                        Some(Ok(p)) => phases = Some(p),
                        Some(Err(e)) => ui::warn(&format!(
                            "{label}: unreadable boot-phase line ({e}): the run goes on without its phases"
                        )),
                        None => {}
                    }
                }
                sink(Event::Console { label, line: &l });
            }
            Ok(Line::Eof) => break,
            Err(_) => {
                kill(&mut child);
                let _ = reader.join();
                if !seen_output && first_output.is_some() {
                    return Ok(Outcome::Silent(format!(
                        "printed nothing in {} s",
                        limit.as_secs()
                    )));
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
    // The images are made anew each boot; the logs and traces stay.
    for img in &images {
        let _ = std::fs::remove_file(img);
    }
    log.flush()?;
    let elapsed = start.elapsed();
    if !seen_output && first_output.is_some() {
        return Ok(Outcome::Silent(format!(
            "QEMU exited ({status}) before printing anything: {}",
            ui::tail(&stderr_path, 2).replace('\n', " / ")
        )));
    }
    match contract::exit::decode(status.code()) {
        Ok(code) => {
            let run = Run {
                code,
                console,
                elapsed,
                to_ktap,
                boot: match (to_ktap, first_line_at, &phases) {
                    (Some(k), Some(f), Some(p)) => Some(BootReport::new(k, f, p)),
                    _ => None,
                },
                trace_log: trace_log(b, label),
                fds,
                // QEMU has been waited for, so its CPU is this process's.
                host_busy: meter.and_then(|m| m.others()),
                qemu_nice,
            };
            sink(Event::Finished {
                label,
                wall: run.elapsed,
                to_ktap: run.to_ktap,
                phases: run.boot.as_ref().map(BootReport::summary),
                status: run.code,
                host_busy: run.host_busy,
            });
            Ok(Outcome::Reported(run))
        }
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
    pub fn boot(&mut self, b: &Boot, label: &str, sink: Sink) -> Result<(Run, Accel)> {
        if let Some(a) = self.decided {
            let first = (self.choice == AccelChoice::Kvm).then_some(b.deadline);
            return match boot(b, a, first, label, sink)? {
                Outcome::Reported(run) => Ok((run, a)),
                Outcome::Silent(why) => bail!(
                    "the guest under {}: {why} (console log {})",
                    a.name(),
                    b.dir.join(format!("console-{label}.log")).display()
                ),
            };
        }
        match boot(b, Accel::Kvm, Some(KVM_FIRST_OUTPUT), label, sink)? {
            Outcome::Reported(run) => {
                self.decided = Some(Accel::Kvm);
                Ok((run, Accel::Kvm))
            }
            Outcome::Silent(why) => {
                sink(Event::KvmFallback { why: &why });
                self.decided = Some(Accel::Tcg);
                let run = match boot(b, Accel::Tcg, None, label, sink)? {
                    Outcome::Reported(run) => run,
                    Outcome::Silent(why) => bail!("the guest under tcg: {why}"),
                };
                // Only a failure that TCG does not share is KVM's to remember.
                remember_kvm_failure(&why);
                Ok((run, Accel::Tcg))
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
    use crate::guests::QBOOT;
    if !Path::new(QBOOT).is_file() {
        bail!("{QBOOT} is missing: install Debian's qemu-system-data (cargo xtask deps --install)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot_of(controllers: &[&str]) -> Boot {
        Boot {
            qemu: "q".into(),
            image: crate::guests::GuestImage::Linux {
                kernel: "k".into(),
                initrd: "i".into(),
            },
            params: Params {
                controllers: controllers.iter().map(|s| s.to_string()).collect(),
                ..Params::default()
            },
            dir: "/tmp".into(),
            deadline: Duration::from_secs(1),
            trace: true,
            netdev: Netdev::None,
        }
    }

    #[test]
    fn every_disk_is_on_io_uring_without_host_cache() {
        let b = boot_of(&["nvme", "ahci", "virtio_blk"]);
        let ctrls = b.controllers().unwrap();
        // Table order, whatever order they were asked for in.
        assert_eq!(
            ctrls.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["ahci", "virtio_blk", "nvme"]
        );
        let images: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("/d{i}"))).collect();
        let orig: Vec<String> = args(&b, Accel::Tcg, &ctrls, &images, "baseline-r1")
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let a = orig.join(" ");
        assert_eq!(a.matches("aio=io_uring,cache=none").count(), 3);
        assert!(
            a.contains("ide-hd,bus=ide.0,drive=d0")
                && a.contains("virtio-blk-pci,addr=0x04,drive=d1")
                && a.contains("nvme,serial=uringidle,addr=0x03,drive=d2"),
            "{a}"
        );
        assert!(
            a.contains("q35,accel=tcg")
                && a.contains(crate::guests::QBOOT)
                && a.contains("isa-debug-exit")
        );
        // The guest is told which controllers to wait for.
        assert!(
            a.contains("uring_idle.controllers=nvme,ahci,virtio_blk"),
            "{a}"
        );
        // One guest timer source under TCG; KVM keeps its in-kernel LAPIC
        // timer. Both trust the TSC the latencies are read from, and under
        // TCG the host tells its rate.
        let khz = host_tsc_khz()
            .map(|k| format!(" tsc_early_khz={k}"))
            .unwrap_or_default();
        assert!(
            a.contains(&format!(" tsc=reliable{khz} nolapic_timer ")),
            "{a}"
        );
        // Traced: the events, microsecond stamps, the log in the run folder.
        assert!(
            a.contains(
                "-trace enable=fdmon_io_uring_add_sqe -trace enable=fdmon_io_uring_cqe_handler"
            ) && a.contains("-msg timestamp=on -D /tmp/trace-baseline-r1.log"),
            "{a}"
        );
        let k = shell_words(&args(&b, Accel::Kvm, &ctrls, &images, "x").unwrap());
        assert!(
            k.contains(" tsc=reliable ") && !k.contains("nolapic_timer"),
            "{k}"
        );
        assert!(!k.contains("tsc_early_khz"), "{k}");
        // The logged line is a shell command: it splits back into the same
        // arguments (the kernel command line is one of them, spaces and all).
        let logged = shell_words(&args(&b, Accel::Tcg, &ctrls, &images, "baseline-r1").unwrap());
        assert_eq!(shell_words::split(&logged).unwrap(), orig);
        assert!(orig.iter().any(|a| a.starts_with("console=ttyS0 ")));
    }

    #[test]
    fn the_host_tsc_rate_is_measured_steadily() {
        // This project's hosts have an invariant TSC (2596 MHz here); two
        // measurements agree to far better than the 0.1% checked.
        let Some(khz) = host_tsc_khz() else {
            let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
            assert!(
                !info.contains("nonstop_tsc"),
                "an invariant TSC was not measured"
            );
            return;
        };
        let again = tsc_khz_once().unwrap();
        assert!(khz.abs_diff(again) * 1000 < khz, "{khz} vs {again} kHz");
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

    #[test]
    fn user_networking_adds_a_nic_on_a_free_slot() {
        let mut b = boot_of(&["ahci"]);
        let ctrls = b.controllers().unwrap();
        let img = [PathBuf::from("/d0")];
        let none = args(&b, Accel::Tcg, &ctrls, &img, "x").unwrap();
        assert!(!none.iter().any(|a| a == "-netdev"));
        b.netdev = Netdev::User;
        let user: Vec<String> = args(&b, Accel::Tcg, &ctrls, &img, "x")
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = user.iter().position(|a| a == "-netdev").unwrap();
        assert_eq!(
            user[at..],
            [
                "-netdev",
                "user,id=net0",
                "-device",
                "virtio-net-pci,netdev=net0,addr=0x14,romfile="
            ]
        );
        assert!(controllers::CONTROLLERS.iter().all(|c| c.slot != NIC_SLOT));
        // A forwarded port: a loopback port of its own, to the guest's ssh.
        b.netdev = Netdev::Hostfwd;
        let fwd = shell_words(&args(&b, Accel::Tcg, &ctrls, &img, "x").unwrap());
        let rule = fwd.split("hostfwd=tcp:127.0.0.1:").nth(1).unwrap();
        let port: u16 = rule.split('-').next().unwrap().parse().unwrap();
        assert!(
            port > 0 && rule.starts_with(&format!("{port}-:22'")),
            "{fwd}"
        );
    }

    #[test]
    fn paths_are_passed_whole_with_commas_escaped() {
        let p = Path::new("/tmp/a,b/disk.img");
        assert_eq!(
            opt_path("file=", p),
            OsString::from("file=/tmp/a,,b/disk.img")
        );
        // Bytes that are not UTF-8 survive: nothing goes through a lossy string.
        let odd = OsString::from_vec(b"/tmp/\xff.img".to_vec());
        assert_eq!(
            opt_path("file=", Path::new(&odd)).as_bytes(),
            b"file=/tmp/\xff.img"
        );
    }
}
