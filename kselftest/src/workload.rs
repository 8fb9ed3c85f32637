//! The I/O itself: one 4 KiB `O_DIRECT` request in flight at a time, through
//! the io-uring crate, timed with `CLOCK_MONOTONIC` from submit to completion.

use std::alloc::{self, Layout};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use io_uring::{opcode, types, IoUring};

use crate::devices::Opened;
use contract::{Mode, Params, Think};

pub use contract::plan::{fill_pattern, first_difference, mix, offset, pattern_offsets, IO_SIZE};

/// A poll-mode wait longer than this is a hung device, not a slow one: the
/// reported stall is ~0.5 s, so a minute leaves two orders of magnitude.
const POLL_GIVE_UP: Duration = Duration::from_secs(60);

/// A page-aligned buffer, as `O_DIRECT` requires.
pub struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len, 4096).expect("valid layout");
        // SAFETY: non-zero size; zeroed so a short read never exposes garbage.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, layout }
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for layout.size() bytes for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Error text for a failed io_uring set-up: ENOSYS and EPERM mean the kernel
/// has no io_uring for us, which is a skip, not a failure.
pub enum RingError {
    Unavailable(String),
    Failed(anyhow::Error),
}

pub fn new_ring() -> std::result::Result<IoUring, RingError> {
    // Room for a whole batch of the batch workload in flight.
    IoUring::new(256).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => RingError::Unavailable("io_uring_setup: ENOSYS (kernel built without CONFIG_IO_URING)".into()),
        Some(libc::EPERM) => RingError::Unavailable(
            "io_uring_setup: EPERM (disabled by sysctl kernel.io_uring_disabled, or by a seccomp policy)".into(),
        ),
        _ => RingError::Failed(anyhow::Error::new(e).context("io_uring_setup")),
    })
}

/// Opcodes the running kernel supports, by number.
pub fn supported_ops(ring: &IoUring) -> Result<Vec<u8>> {
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .context("IORING_REGISTER_PROBE")?;
    Ok((0..=u8::MAX).filter(|op| probe.is_supported(*op)).collect())
}

/// Submits one request and waits for it in the given mode. Returns the
/// completion's result and the submit-to-completion time.
fn one_io(
    ring: &mut IoUring,
    entry: io_uring::squeue::Entry,
    mode: Mode,
) -> Result<(i32, Duration)> {
    let start = Instant::now();
    // SAFETY: the buffer behind `entry` outlives this call, which waits for
    // the completion before returning.
    unsafe { ring.submission().push(&entry) }
        .map_err(|_| anyhow::anyhow!("submission queue full"))?;
    match mode {
        Mode::Sleep => {
            ring.submit_and_wait(1)
                .context("io_uring_enter(GETEVENTS)")?;
        }
        Mode::Poll => {
            ring.submit().context("io_uring_enter(submit)")?;
            let mut cq = ring.completion();
            while cq.is_empty() {
                std::hint::spin_loop();
                cq.sync();
                if start.elapsed() > POLL_GIVE_UP {
                    bail!("no completion after {POLL_GIVE_UP:?} of polling the CQ ring");
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let cqe = ring
        .completion()
        .next()
        .context("woke with an empty completion queue")?;
    Ok((cqe.result(), elapsed))
}

/// A completion's result: an error, a short transfer, or `len` bytes.
fn check_result(res: i32, what: &str, off: u64, len: usize) -> Result<()> {
    if res < 0 {
        bail!(
            "{what} at offset {off}: {}",
            std::io::Error::from_raw_os_error(-res)
        );
    }
    if res as usize != len {
        bail!("{what} at offset {off}: short transfer of {res} bytes");
    }
    Ok(())
}

fn read_at(
    ring: &mut IoUring,
    dev: &Opened,
    buf: &mut AlignedBuf,
    off: u64,
    mode: Mode,
) -> Result<Duration> {
    let e = opcode::Read::new(
        types::Fd(dev.fd()),
        buf.as_mut_slice().as_mut_ptr(),
        IO_SIZE as u32,
    )
    .offset(off)
    .build();
    let (res, t) = one_io(ring, e, mode)?;
    check_result(res, "read", off, IO_SIZE)?;
    Ok(t)
}

/// Latency samples of one device in one mode.
#[derive(Debug, Clone)]
pub struct Samples {
    pub latencies_ns: Vec<u64>,
    /// Wall time of the measured loop, think time included.
    pub wall: Duration,
    /// Why the loop stopped before `iterations`, if it did.
    pub stopped_early: Option<String>,
}

pub fn measure(
    ring: &mut IoUring,
    dev: &Opened,
    mode: Mode,
    p: &Params,
    seed: u64,
) -> Result<Samples> {
    let mut buf = AlignedBuf::new(IO_SIZE);
    let think = Duration::from_micros(p.think_us);
    let blocks = dev.blocks();
    for i in 0..u64::from(p.warmup) {
        read_at(ring, dev, &mut buf, offset(seed, i, blocks), mode).context("warm-up read")?;
    }
    let mut latencies_ns = Vec::with_capacity(p.iterations as usize);
    let start = Instant::now();
    for i in 0..u64::from(p.iterations) {
        // Idle first: the stall needs a main loop that has gone back to sleep.
        idle(think, p.think);
        let off = offset(seed, u64::from(p.warmup) + i, blocks);
        let t = read_at(ring, dev, &mut buf, off, mode)?;
        latencies_ns.push(t.as_nanos() as u64);
        let spent = start.elapsed();
        if let Some(why) = p.budget_spent(latencies_ns.len(), spent.as_nanos() as u64) {
            return Ok(Samples {
                latencies_ns,
                wall: spent,
                stopped_early: Some(why),
            });
        }
    }
    Ok(Samples {
        latencies_ns,
        wall: start.elapsed(),
        stopped_early: None,
    })
}

/// Idles for `d`: nanosleep, or a spin on CLOCK_MONOTONIC.
pub fn idle(d: Duration, how: Think) {
    match how {
        Think::Sleep => std::thread::sleep(d),
        Think::Spin => {
            let until = Instant::now() + d;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
}

/// What one nanosleep of `d` really takes here (median of 9): without
/// high-resolution timers it rounds up to the kernel's tick.
pub fn nanosleep_cost(d: Duration) -> Duration {
    let mut v: Vec<Duration> = (0..9)
        .map(|_| {
            let t = Instant::now();
            std::thread::sleep(d);
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

/// One run of the batch workload on one device.
#[derive(Debug, Clone)]
pub struct BatchRun {
    /// Each batch's time: the sleep before its submit, the submit, and
    /// every completion with the sleep after it.
    pub batch_ns: Vec<u64>,
    pub wall: Duration,
    pub bytes: u64,
}

/// The report's reproducer: read `total_mb` MiB in `chunk_kb` KiB
/// `O_DIRECT` reads from the start of the device, `batch` at a time;
/// idle `submit_sleep_us` before each batch is submitted and
/// `completion_sleep_us` after each completion is processed.
pub fn batch(ring: &mut IoUring, dev: &Opened, mode: Mode, p: &Params) -> Result<BatchRun> {
    let chunk = p.chunk_kb as usize * 1024;
    let bytes = u64::from(p.total_mb) << 20;
    if bytes > dev.size {
        bail!(
            "the batch workload reads {} MiB but the target holds {} bytes: use a larger file or device, or a smaller total (--total-mb)",
            p.total_mb,
            dev.size
        );
    }
    let chunks = bytes.div_ceil(chunk as u64);
    let mut bufs: Vec<AlignedBuf> = (0..p.batch).map(|_| AlignedBuf::new(chunk)).collect();
    let (before, after) = (
        Duration::from_micros(p.submit_sleep_us),
        Duration::from_micros(p.completion_sleep_us),
    );
    let mut batch_ns = Vec::new();
    let start = Instant::now();
    let mut next = 0u64;
    while next < chunks {
        let t = Instant::now();
        idle(before, p.think);
        let n = (chunks - next).min(u64::from(p.batch)) as usize;
        for (i, buf) in bufs.iter_mut().take(n).enumerate() {
            let off = (next + i as u64) * chunk as u64;
            let e = opcode::Read::new(
                types::Fd(dev.fd()),
                buf.as_mut_slice().as_mut_ptr(),
                chunk as u32,
            )
            .offset(off)
            .build()
            .user_data(off);
            // SAFETY: the buffers outlive the batch, which is drained below.
            unsafe { ring.submission().push(&e) }
                .map_err(|_| anyhow::anyhow!("submission queue full"))?;
        }
        ring.submit().context("io_uring_enter(submit)")?;
        for _ in 0..n {
            let cqe = wait_one(ring, mode)?;
            check_result(cqe.result(), "read", cqe.user_data(), chunk)?;
            idle(after, p.think);
        }
        batch_ns.push(t.elapsed().as_nanos() as u64);
        next += n as u64;
    }
    Ok(BatchRun {
        batch_ns,
        wall: start.elapsed(),
        bytes,
    })
}

/// The next completion, waited for in `mode`.
fn wait_one(ring: &mut IoUring, mode: Mode) -> Result<io_uring::cqueue::Entry> {
    let start = Instant::now();
    loop {
        if let Some(c) = ring.completion().next() {
            return Ok(c);
        }
        match mode {
            Mode::Sleep => {
                ring.submit_and_wait(1)
                    .context("io_uring_enter(GETEVENTS)")?;
            }
            Mode::Poll => {
                std::hint::spin_loop();
                if start.elapsed() > POLL_GIVE_UP {
                    bail!("no completion after {POLL_GIVE_UP:?} of polling the CQ ring");
                }
            }
        }
    }
}

/// Writes the pattern to every offset and flushes it to the device.
pub fn write_pattern(ring: &mut IoUring, dev: &Opened, seed: u64, offsets: &[u64]) -> Result<()> {
    let mut buf = AlignedBuf::new(IO_SIZE);
    for &off in offsets {
        fill_pattern(buf.as_mut_slice(), seed, off);
        let e = opcode::Write::new(types::Fd(dev.fd()), buf.as_slice().as_ptr(), IO_SIZE as u32)
            .offset(off)
            .build();
        let (res, _) = one_io(ring, e, Mode::Sleep)?;
        check_result(res, "write", off, IO_SIZE)?;
    }
    let e = opcode::Fsync::new(types::Fd(dev.fd())).build();
    let (res, _) = one_io(ring, e, Mode::Sleep)?;
    if res < 0 {
        bail!("fsync: {}", std::io::Error::from_raw_os_error(-res));
    }
    Ok(())
}

/// Reads every offset back and compares it with the pattern. The error
/// names the first block and byte that differ.
pub fn verify_pattern(ring: &mut IoUring, dev: &Opened, seed: u64, offsets: &[u64]) -> Result<()> {
    let mut buf = AlignedBuf::new(IO_SIZE);
    let mut want = vec![0u8; IO_SIZE];
    let mut bad = Vec::new();
    for &off in offsets {
        read_at(ring, dev, &mut buf, off, Mode::Sleep)?;
        fill_pattern(&mut want, seed, off);
        if let Some(pos) = first_difference(buf.as_slice(), &want) {
            bad.push((off, pos, buf.as_slice()[pos], want[pos]));
        }
    }
    if let Some((off, pos, got, exp)) = bad.first() {
        bail!(
            "data mismatch in {} of {} blocks; first at offset {} byte {pos}: read {got:#04x}, wrote {exp:#04x}",
            bad.len(),
            offsets.len(),
            off + *pos as u64
        );
    }
    Ok(())
}
