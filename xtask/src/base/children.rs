//! Every long-running child (QEMU, make, ninja, configure, cargo, apt)
//! dies with the xtask. Each runs in its own process group with a
//! parent-death signal, so even a SIGKILL of the xtask takes QEMU down; on
//! SIGINT, SIGTERM and SIGHUP the handler kills every registered group and
//! exits 128 + the signal (130, 143, 129). Cache entries are only marked
//! complete after they are filled (`cache::refill`), so an interrupted one
//! is redone next time.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

const SLOTS: usize = 64;
static CHILDREN: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

extern "C" fn on_signal(sig: libc::c_int) {
    kill_all();
    // SAFETY: _exit(2) is async-signal-safe and skips destructors on purpose.
    unsafe { libc::_exit(128 + sig) }
}

/// Set while a failed step's partner is being stopped: no new child starts.
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Stops the work of steps running beside one that failed (or is not
/// needed): refuses new children until `resume`, asks every registered
/// child's group to stop (SIGTERM: make and ninja delete the target they
/// were writing, so a half-written object never passes for a built one),
/// and kills what is left after a grace period.
pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
    signal_all(libc::SIGTERM);
    for _ in 0..50 {
        if CHILDREN.iter().all(|s| s.load(Ordering::SeqCst) == 0) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    kill_all();
}

pub fn resume() {
    CANCELLED.store(false, Ordering::SeqCst);
}

/// Kills every registered child's group. Async-signal-safe.
fn kill_all() {
    signal_all(libc::SIGKILL);
}

fn signal_all(sig: libc::c_int) {
    for slot in &CHILDREN {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe; the group is the child's own.
            unsafe {
                libc::kill(-pid, sig);
                libc::kill(pid, sig);
            }
        }
    }
}

/// Installs the handlers; call once at start.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a plain C handler that only calls async-signal-safe functions.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Makes `cmd`'s child the leader of its own process group, killed when
/// the xtask dies however it dies.
pub fn prepare(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Prepares `cmd` and starts it, registered for the signal handler until
/// the returned guard is dropped (keep it until the child was waited for).
pub fn spawn(cmd: &mut Command) -> std::io::Result<(std::process::Child, Registered)> {
    if CANCELLED.load(Ordering::SeqCst) {
        return Err(std::io::Error::other(
            "cancelled: a step running beside it failed",
        ));
    }
    prepare(cmd);
    let child = cmd.spawn()?;
    let registered = register(child.id());
    // A cancel between the check and the registration missed this child.
    if CANCELLED.load(Ordering::SeqCst) {
        kill_all();
    }
    Ok((child, registered))
}

/// A registered child: the signal handler kills its group until this is
/// dropped (after the child was waited for).
pub struct Registered(usize);

pub fn register(pid: u32) -> Registered {
    for (i, slot) in CHILDREN.iter().enumerate() {
        if slot
            .compare_exchange(0, pid as i32, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Registered(i);
        }
    }
    // More than SLOTS at once never happens here (two at most: one per
    // build track, the kernel's beside QEMU's or the selftest's); the
    // parent-death signal still covers it.
    Registered(SLOTS)
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(slot) = CHILDREN.get(self.0) {
            slot.store(0, Ordering::SeqCst);
        }
    }
}

/// Runs `here` in this thread and `there` in another, at once. The first
/// to fail stops the other: its children started through `spawn` (make,
/// ninja, cargo, configure, apt, tar: every long step) are stopped and no
/// new one starts, so the error shows within seconds, not after the other's
/// minutes (a short step not started through `spawn`, such as rsync of a
/// work copy, finishes first). The first failure's error is the one
/// returned.
pub fn at_once<A, B: Send>(
    here: impl FnOnce() -> anyhow::Result<A>,
    there: impl FnOnce() -> anyhow::Result<B> + Send,
) -> anyhow::Result<(A, B)> {
    let first_failure = AtomicU8::new(0);
    let failed = |who: u8| {
        if first_failure
            .compare_exchange(0, who, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            cancel();
        }
    };
    let (a, b) = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let r = there();
            if r.is_err() {
                failed(2);
            }
            r
        });
        let a = here();
        if a.is_err() {
            failed(1);
        }
        (a, other.join().expect("a build thread panicked"))
    });
    resume();
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(a), Err(b)) => Err(if first_failure.into_inner() == 2 {
            b
        } else {
            a
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_takes_and_frees_a_slot() {
        let a = register(4242);
        let b = register(4243);
        assert_ne!(a.0, b.0);
        assert!(CHILDREN.iter().any(|s| s.load(Ordering::SeqCst) == 4242));
        drop(a);
        assert!(!CHILDREN.iter().any(|s| s.load(Ordering::SeqCst) == 4242));
        drop(b);
    }

    #[test]
    fn a_prepared_child_leads_its_own_group() {
        let mut c = Command::new("sh");
        c.args(["-c", "ps -o pgid= -p $$; echo $$"]);
        prepare(&mut c);
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(v.len(), 2, "{text}");
        assert_eq!(v[0], v[1], "pgid == pid: {text}");
    }
}
