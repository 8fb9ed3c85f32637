//! The QEMU command line of one boot, built from small functions with
//! `OsString` paths (a path is never squeezed through a lossy string): the
//! machine and accelerator, the guest's own arguments, the trace events,
//! one disk per controller in the boot's configuration (`contract::Config`),
//! and the network.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use contract::{Config, Controller};

use crate::accel::Accel;
use crate::guest::{Boot, Netdev};

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
pub fn clock_args(accel: Accel) -> String {
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
    ]));
    a.extend(debug_exit());
    a
}

/// One disk image in `config` (by default `aio=io_uring` without the host
/// page cache), attached as the controller's table row says.
fn disk(c: &Controller, index: usize, image: &Path, config: &Config) -> Vec<OsString> {
    let id = format!("d{index}");
    let mut drive = opt_path("file=", image);
    drive.push(format!(
        ",if=none,id={id},format=raw,{}",
        config.drive_opts()
    ));
    let mut a = vec!["-drive".into(), drive];
    for (flag, value) in c.qemu_args_in(&id, config) {
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

/// The device the guest reports its result through: one definition of
/// its port, the contract's, which the guest writes to.
fn debug_exit() -> Vec<OsString> {
    vec![
        "-device".into(),
        format!(
            "isa-debug-exit,iobase={:#x},iosize=0x04",
            contract::exit::DEBUG_EXIT_PORT
        )
        .into(),
    ]
}

/// QEMU's trace log of boot `label`, when traced.
pub fn trace_log(b: &Boot, label: &str) -> Option<PathBuf> {
    b.trace.then(|| b.dir.join(format!("trace-{label}.log")))
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
        a.extend(disk(c, i, img, &b.config));
    }
    a.extend(network(b.netdev)?);
    Ok(a)
}

/// The argument list as one shell-quoted line, for the console log (a user
/// can paste it to rerun the boot) and tests.
pub fn shell_words(args: &[OsString]) -> String {
    shell_words::join(args.iter().map(|a| a.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{controllers, Params};

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
            config: Config::default(),
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
                && a.contains("isa-debug-exit,iobase=0xf4,iosize=0x04"),
            "{a}"
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
    fn each_configuration_yields_its_drive_options_and_iothread() {
        use contract::config::{Aio, Cache, Iothread};
        let mut b = boot_of(&["ahci", "virtio_blk"]);
        b.config = Config {
            aio: Aio::Threads,
            cache: Cache::Writeback,
            iothread: Iothread::On,
        };
        let ctrls = b.controllers().unwrap();
        let images = [PathBuf::from("/d0"), PathBuf::from("/d1")];
        let a: Vec<String> = args(&b, Accel::Tcg, &ctrls, &images, "x")
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let a = a.join(" ");
        assert_eq!(
            a.matches("format=raw,aio=threads,cache=writeback").count(),
            2
        );
        // The iothread goes to the row that takes one, not to AHCI.
        assert!(
            a.contains("-object iothread,id=c04-io -device virtio-blk-pci,iothread=c04-io,addr=0x04,drive=d1")
                && a.contains("-device ide-hd,bus=ide.0,drive=d0 "),
            "{a}"
        );
        assert_eq!(a.matches("iothread,id=").count(), 1);
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
