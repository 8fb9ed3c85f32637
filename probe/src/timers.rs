//! The machine's timers: the probe stops every one that would wake QEMU's
//! main loop (PIT channel 0, the RTC update timer), calibrates the TSC on
//! PIT channel 2 (which arms no QEMU timer), and arms a PIT channel 0
//! one-shot only to wake the main loop when a request misses its deadline.

use crate::hw::{rdtsc, Ports};

// Intel 8254 PIT.
pub const PIT_CH0: u16 = 0x40;
pub const PIT_CH2: u16 = 0x42;
pub const PIT_MODE: u16 = 0x43;
/// The PIT's input clock, Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// Control word (SC, RW, M, BCD = 00 11 000 0): channel 0, lobyte/hibyte,
/// mode 0 (interrupt on terminal count: a one-shot), binary; channel 2 alike.
pub const PIT_CH0_ONESHOT: u8 = 0b0011_0000;
pub const PIT_CH2_ONESHOT: u8 = 0b1011_0000;
/// Read-back (11, COUNT# 1, STATUS# 0, channels 001, 0): latch the status,
/// not the count, of channel 0.
pub const PIT_READBACK_STATUS_CH0: u8 = 0b1110_0010;
/// Read-back status bit: the channel's OUT pin.
pub const PIT_STATUS_OUT: u8 = 1 << 7;
/// NMI status and control (port 61h): channel 2 gate, speaker, OUT2.
pub const PORT_61: u16 = 0x61;
pub const P61_GATE2: u8 = 1 << 0;
pub const P61_SPEAKER: u8 = 1 << 1;
pub const P61_OUT2: u8 = 1 << 5;

// MC146818 RTC / CMOS.
pub const CMOS_INDEX: u16 = 0x70;
pub const CMOS_DATA: u16 = 0x71;
/// Register A, with NMI kept disabled.
pub const CMOS_REG_A_NMI_OFF: u8 = 0x80 | 0x0A;
/// Divider chain held in reset (DV = 110b), rate select 0: no update cycle
/// and no periodic interrupt, so QEMU arms no RTC timer.
pub const RTC_REG_A_STOPPED: u8 = 0x60;

/// PIT ticks for `us` microseconds (at least 1, at most 0xffff).
pub fn pit_count(us: u64) -> u16 {
    (us * PIT_HZ / 1_000_000).clamp(1, 0xffff) as u16
}

/// TSC rate from ticks counted over `pit_ticks` PIT ticks.
pub fn tsc_khz(tsc_ticks: u64, pit_ticks: u16) -> u64 {
    (u128::from(tsc_ticks) * u128::from(PIT_HZ) / (u128::from(pit_ticks) * 1000)) as u64
}

pub fn load_ch0_oneshot(p: &mut dyn Ports, count: u16) {
    p.outb(PIT_MODE, PIT_CH0_ONESHOT);
    p.outb(PIT_CH0, count as u8);
    p.outb(PIT_CH0, (count >> 8) as u8);
}

/// Whether channel 0's OUT is high: a mode 0 count has run out.
pub fn ch0_out(p: &mut dyn Ports) -> bool {
    p.outb(PIT_MODE, PIT_READBACK_STATUS_CH0);
    p.inb(PIT_CH0) & PIT_STATUS_OUT != 0
}

/// Stops channel 0's periodic timer (QEMU resets it to mode 3, count
/// 0x10000: a square wave whose every OUT edge is a main-loop timer, ~27 ms
/// apart): a control word alone leaves it
/// armed, so load a 1-tick one-shot and wait for it to run out, after which
/// QEMU arms nothing for it. Gives up after ~10 ms of TSC (`max_ticks`).
pub fn stop_pit(p: &mut dyn Ports, max_ticks: u64) -> bool {
    load_ch0_oneshot(p, 1);
    let start = rdtsc();
    while !ch0_out(p) {
        if rdtsc().wrapping_sub(start) > max_ticks {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Stops the RTC's update cycle. Register C is never read.
pub fn stop_rtc(p: &mut dyn Ports) {
    p.outb(CMOS_INDEX, CMOS_REG_A_NMI_OFF);
    p.outb(CMOS_DATA, RTC_REG_A_STOPPED);
}

/// Counts TSC ticks over `ms` milliseconds of PIT channel 2 (mode 0, gate
/// on, OUT2 polled on port 61h); returns the TSC rate in kHz.
pub fn calibrate_tsc(p: &mut dyn Ports, ms: u64) -> u64 {
    let count = pit_count(ms * 1000);
    let p61 = p.inb(PORT_61) & !(P61_SPEAKER | 0xf0);
    p.outb(PORT_61, p61 | P61_GATE2);
    p.outb(PIT_MODE, PIT_CH2_ONESHOT);
    p.outb(PIT_CH2, count as u8);
    p.outb(PIT_CH2, (count >> 8) as u8);
    let t0 = rdtsc();
    while p.inb(PORT_61) & P61_OUT2 == 0 {
        core::hint::spin_loop();
    }
    let t1 = rdtsc();
    p.outb(PORT_61, p61 & !P61_GATE2);
    tsc_khz(t1 - t0, count)
}

/// What the deadline logic asks the machine for.
pub trait Wake {
    /// Arms the one-shot that wakes QEMU's main loop.
    fn arm(&mut self);
    /// Waits until an armed one-shot has fired (so no pending timer hides
    /// the next request's stall); returns at once if none is armed.
    fn settle(&mut self);
}

/// Status reads after the wake's OUT went high (each a port access that
/// exits to QEMU, microseconds under TCG).
const SETTLE_READS: usize = 200;

/// The wake one-shot on PIT channel 0.
pub struct PitWake<'a> {
    pub ports: &'a mut dyn Ports,
    pub armed: bool,
    /// The one-shot's length, µs.
    pub us: u64,
}

impl Wake for PitWake<'_> {
    fn arm(&mut self) {
        load_ch0_oneshot(self.ports, pit_count(self.us));
        self.armed = true;
    }
    fn settle(&mut self) {
        if self.armed {
            while !ch0_out(self.ports) {
                core::hint::spin_loop();
            }
            // OUT is computed from QEMU's clock, so it can read high a
            // moment before the main loop has run the expiring timer: a
            // few more PIT reads give it that moment.
            for _ in 0..SETTLE_READS {
                let _ = ch0_out(self.ports);
            }
            self.armed = false;
        }
    }
}

/// One request's deadline: `due()` says, once, when it has passed.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub start_ns: u64,
    pub limit_ns: u64,
    pub woken: bool,
}

impl Deadline {
    pub fn new(start_ns: u64, limit_ms: u64) -> Deadline {
        Deadline {
            start_ns,
            limit_ns: limit_ms.saturating_mul(1_000_000),
            woken: false,
        }
    }
    /// True the first time `now` is past the deadline: time to wake.
    pub fn due(&mut self, now_ns: u64) -> bool {
        if !self.woken && now_ns.saturating_sub(self.start_ns) > self.limit_ns {
            self.woken = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
pub mod fake {
    use super::*;
    use alloc::vec::Vec;

    /// Records every port write; channel 0's OUT goes high after
    /// `out_after` status reads following a load.
    #[derive(Default)]
    pub struct FakePit {
        pub writes: Vec<(u16, u8)>,
        pub out_after: usize,
        pub reads_since_load: usize,
    }

    impl Ports for FakePit {
        fn inb(&mut self, port: u16) -> u8 {
            assert_eq!(port, PIT_CH0);
            self.reads_since_load += 1;
            if self.reads_since_load > self.out_after {
                PIT_STATUS_OUT
            } else {
                0
            }
        }
        fn outb(&mut self, port: u16, v: u8) {
            if port == PIT_MODE && v == PIT_CH0_ONESHOT {
                self.reads_since_load = 0;
            }
            self.writes.push((port, v));
        }
        fn inw(&mut self, _: u16) -> u16 {
            0
        }
        fn outw(&mut self, _: u16, _: u16) {}
        fn inl(&mut self, _: u16) -> u32 {
            0
        }
        fn outl(&mut self, _: u16, _: u32) {}
    }

    /// Counts arms and settles.
    #[derive(Default)]
    pub struct CountingWake {
        pub armed: u32,
        pub settled: u32,
    }

    impl Wake for CountingWake {
        fn arm(&mut self) {
            self.armed += 1;
        }
        fn settle(&mut self) {
            self.settled += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakePit;
    use super::*;

    #[test]
    fn pit_arithmetic() {
        assert_eq!(pit_count(1000), 1193);
        assert_eq!(pit_count(50_000), 59659);
        assert_eq!(pit_count(0), 1);
        assert_eq!(pit_count(1_000_000), 0xffff);
        // 2.4 GHz over 59659 PIT ticks (50 ms).
        let ticks = 2_400_000u64 * 59659 * 1000 / PIT_HZ;
        let khz = tsc_khz(ticks, 59659);
        assert!((2_399_990..=2_400_010).contains(&khz), "{khz}");
    }

    #[test]
    fn control_words() {
        assert_eq!(PIT_CH0_ONESHOT, 0x30);
        assert_eq!(PIT_CH2_ONESHOT, 0xB0);
        assert_eq!(PIT_READBACK_STATUS_CH0, 0xE2);
    }

    #[test]
    fn the_wake_one_shot_is_mode_0_and_settles_on_out_high() {
        let mut pit = FakePit {
            out_after: 3,
            ..Default::default()
        };
        let mut w = PitWake {
            ports: &mut pit,
            armed: false,
            us: 1000,
        };
        w.settle(); // nothing armed: no port touched
        w.arm();
        w.settle();
        assert!(!w.armed);
        // control word, count 1193 = 0x04a9 low then high, then read-backs.
        assert_eq!(
            &pit.writes[..3],
            &[(PIT_MODE, 0x30), (PIT_CH0, 0xa9), (PIT_CH0, 0x04)]
        );
        let readbacks = pit.writes[3..]
            .iter()
            .filter(|w| **w == (PIT_MODE, 0xE2))
            .count();
        // Until OUT reads high (the fake says so on the 4th), then the
        // margin's reads.
        assert_eq!(readbacks, 4 + SETTLE_READS);
    }

    #[test]
    fn stopping_the_pit_loads_a_one_tick_count() {
        let mut pit = FakePit {
            out_after: 0,
            ..Default::default()
        };
        assert!(stop_pit(&mut pit, u64::MAX));
        assert_eq!(
            &pit.writes[..3],
            &[(PIT_MODE, 0x30), (PIT_CH0, 1), (PIT_CH0, 0)]
        );
    }

    #[test]
    fn a_deadline_fires_once() {
        let mut d = Deadline::new(1_000, 5);
        assert!(!d.due(1_000 + 5_000_000));
        assert!(d.due(1_000 + 5_000_001));
        assert!(!d.due(1_000 + 9_000_000));
        assert!(d.woken);
    }
}
