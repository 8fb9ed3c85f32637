//! Which blocks a guest reads and writes, and what it writes there: pure
//! functions of a seed, shared by the Linux selftest and the probe guest so
//! each reads the same blocks of a device in every run (the seed is the
//! device's name), so a baseline and a patched boot read the same blocks.

#[allow(unused_imports)]
use crate::prelude::*;

/// Bytes per latency-workload request and per pattern block.
pub const IO_SIZE: usize = 4096;

/// splitmix64: a tiny, well-mixed generator for offsets and patterns, so a
/// run is reproducible from its seed.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Byte offset of the i-th I/O: aligned, spread over the whole device of
/// `blocks` blocks of `IO_SIZE`.
pub fn offset(seed: u64, i: u64, blocks: u64) -> u64 {
    (mix(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)) % blocks) * IO_SIZE as u64
}

/// A device's seed, from its stable name: the same offsets for the same
/// device in every run, so baseline and patched runs read the same blocks.
pub fn seed_for(name: &str) -> u64 {
    name.bytes()
        .fold(0x7572_696e_6769_646c, |h, b| mix(h ^ u64::from(b)))
}

/// The content of one pattern block: depends on the run's seed and the
/// offset, so stale data from another run or another block never matches.
pub fn fill_pattern(buf: &mut [u8], seed: u64, off: u64) {
    for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(seed ^ off ^ ((i as u64) << 48)).to_le_bytes());
    }
}

/// Distinct block offsets for the write check.
pub fn pattern_offsets(seed: u64, count: u32, blocks: u64) -> Vec<u64> {
    let count = u64::from(count).min(blocks);
    let mut out: Vec<u64> = Vec::with_capacity(count as usize);
    let mut i = 0u64;
    while (out.len() as u64) < count {
        let off = offset(seed ^ 0x5752_4954, i, blocks);
        if !out.contains(&off) {
            out.push(off);
        }
        i += 1;
    }
    out
}

/// Index of the first byte where `a` and `b` differ (a length difference
/// counts at the shorter length).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or(if a.len() == b.len() {
            None
        } else {
            Some(a.len().min(b.len()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;

    #[test]
    fn offsets_are_aligned_in_range_and_spread() {
        let blocks = 1000;
        let offs: Vec<u64> = (0..200).map(|i| offset(7, i, blocks)).collect();
        assert!(offs
            .iter()
            .all(|o| o % IO_SIZE as u64 == 0 && *o < blocks * IO_SIZE as u64));
        // Spread: 200 draws over 1000 blocks hit well over 100 distinct ones
        // (the birthday expectation is ~181).
        let distinct: BTreeSet<_> = offs.iter().collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        assert!(
            offs.iter().any(|o| *o >= 500 * IO_SIZE as u64),
            "upper half never touched"
        );
    }

    #[test]
    fn pattern_depends_on_seed_and_offset() {
        let mut a = vec![0u8; IO_SIZE];
        let mut b = vec![0u8; IO_SIZE];
        fill_pattern(&mut a, 1, 4096);
        fill_pattern(&mut b, 1, 4096);
        assert_eq!(a, b);
        fill_pattern(&mut b, 2, 4096);
        assert_ne!(a, b);
        fill_pattern(&mut b, 1, 8192);
        assert_ne!(a, b);
    }

    #[test]
    fn pattern_offsets_are_distinct_and_capped_by_size() {
        let o = pattern_offsets(3, 32, 1000);
        let set: BTreeSet<_> = o.iter().collect();
        assert_eq!((o.len(), set.len()), (32, 32));
        assert_eq!(pattern_offsets(3, 32, 4).len(), 4);
    }

    #[test]
    fn first_difference_finds_the_byte() {
        assert_eq!(first_difference(b"abcd", b"abcd"), None);
        assert_eq!(first_difference(b"abXd", b"abcd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }

    #[test]
    fn seeds_are_stable_and_differ_by_name() {
        // Pinned: a change here moves every run's blocks.
        assert_eq!(seed_for(""), 0x7572_696e_6769_646c);
        assert_eq!(seed_for("a"), mix(0x7572_696e_6769_646c ^ 0x61));
        assert_ne!(seed_for("ahci_sda"), seed_for("ahci_sdb"));
    }
}
