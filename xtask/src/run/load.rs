//! How busy the machine was while a guest ran, QEMU itself left out: the
//! CPU time every process used (`/proc/stat`) less this process's own and
//! its waited children's (`getrusage`: QEMU, once it has been waited for),
//! as a fraction of all the machine's cores over the boot's wall time.
//! During guest runs this xtask runs nothing else (builds wait for the
//! measure lock), so what is left is other people's work.

use std::time::Instant;

/// A boot's start, to measure from.
pub struct Meter {
    start: Instant,
    machine_s: f64,
    own_s: f64,
}

/// CPU seconds every process on the machine used (all cores), and how
/// many cores there are, from the first lines of `/proc/stat`.
pub fn machine_busy(stat: &str) -> Option<(f64, usize)> {
    let mut lines = stat.lines();
    let total = lines.next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = total
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already inside user and nice.
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    let cores = lines
        .take_while(|l| l.starts_with("cpu"))
        .filter(|l| l[3..].starts_with(|c: char| c.is_ascii_digit()))
        .count();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((busy as f64 / hz, cores.max(1)))
}

/// CPU seconds of this process and its waited children.
fn own() -> f64 {
    let used = |who| {
        // SAFETY: a zeroed rusage for getrusage to fill.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to it.
        if unsafe { libc::getrusage(who, &mut r) } != 0 {
            return 0.0;
        }
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        s(r.ru_utime) + s(r.ru_stime)
    };
    used(libc::RUSAGE_SELF) + used(libc::RUSAGE_CHILDREN)
}

fn read_stat() -> Option<(f64, usize)> {
    machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)
}

impl Meter {
    pub fn start() -> Option<Meter> {
        Some(Meter {
            start: Instant::now(),
            machine_s: read_stat()?.0,
            own_s: own(),
        })
    }

    /// Other processes' share of the machine's CPU since `start`, 0 to 1;
    /// call once QEMU has been waited for.
    pub fn others(&self) -> Option<f64> {
        let (machine_s, cores) = read_stat()?;
        let wall = self.start.elapsed().as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let others = (machine_s - self.machine_s) - (own() - self.own_s);
        Some((others / (wall * cores as f64)).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_time_and_cores() {
        let stat = "cpu  100 20 30 1000 50 5 5 10 7 0\ncpu0 50 10 15 500 25 2 2 5 3 0\ncpu1 50 10 15 500 25 3 3 5 4 0\nintr 1 2 3\n";
        let (busy, cores) = machine_busy(stat).unwrap();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        // user + nice + system + irq + softirq + steal; idle, iowait and
        // guest (already in user) left out.
        assert!((busy - 170.0 / hz).abs() < 1e-9, "{busy}");
        assert_eq!(cores, 2);
        assert!(machine_busy("intr 1\n").is_none());
    }

    #[test]
    fn a_meter_reads_a_share() {
        let m = Meter::start().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let share = m.others().unwrap();
        assert!((0.0..=1.0).contains(&share), "{share}");
    }
}
