//! A small frequency sketch for the optional admission policy: how often a key was read lately.
//!
//! Four 4-bit-saturating counters per key in one array of 16 per entry of capacity (a counting Bloom filter, read as the
//! minimum of the four, like TinyLFU's count-min sketch); every counter is halved after about
//! `AGE_READS` reads per entry of capacity, so old popularity fades. Relaxed atomics: a lost increment
//! under contention only makes an estimate slightly low.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x27D4_EB2F_1656_67C5,
];

/// Reads per entry of capacity between two halvings (more often while the store recovers from
/// a moved hot set: `adapt.rs`). TinyLFU uses 10; with the candidate-against-victim test
/// (`gc.rs`), 10 and 8 lost 0.1–1.8 points on the Zipf columns of the hit-ratio bench and 20
/// lost 1.4 on the shifting hot set at 20 % capacity.
const AGE_READS: u64 = 15;

/// Entries of capacity a sketch is sized for at least (16 counters each: 64 KiB). A sketch
/// for a small store is otherwise saturated by the keys it never holds: with 16 counters per
/// entry of a 1 000-entry store, the hit-ratio bench's Zipf traces over 100 000 keys (and
/// their scans of 20 000) made unread keys look read, and scan keys won the admission test
/// (`tests::a_scan_through_a_small_store_leaves_unread_keys_looking_unread`). Measured on
/// `benches/compare/hitratio.rs` at 1 % capacity, two runs each (the hasher's seed moves a
/// column by up to ±0.3): Zipf 0.9+scan −0.53/−0.92 → −0.14/−0.20 points behind the best
/// peer; the other columns within that spread.
const MIN_ENTRIES: u64 = 4_096;

pub(crate) struct Sketch {
    counters: Box<[AtomicU8]>,
    mask: usize,
    /// Sampled reads (one in 8) since the last halving.
    sampled: AtomicU64,
    sample_limit: u64,
}

impl Sketch {
    /// A sketch sized for `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        let width = (capacity.clamp(MIN_ENTRIES, 1 << 26) as usize * 16).next_power_of_two();
        Sketch {
            counters: (0..width).map(|_| AtomicU8::new(0)).collect(),
            mask: width - 1,
            sampled: AtomicU64::new(0),
            sample_limit: (capacity.max(64) * AGE_READS) / 8,
        }
    }

    #[inline]
    fn index(&self, hash: u64, i: usize) -> usize {
        (hash.wrapping_mul(SEEDS[i]) >> 32) as usize & self.mask
    }

    /// Counts one read of the key with `hash`.
    #[inline]
    pub fn record(&self, hash: u64) {
        for i in 0..4 {
            let c = &self.counters[self.index(hash, i)];
            let v = c.load(Ordering::Relaxed);
            if v < 15 {
                c.store(v + 1, Ordering::Relaxed);
            }
        }
        if hash & 7 == 0 && self.sampled.fetch_add(1, Ordering::Relaxed) + 1 >= self.sample_limit {
            self.age();
        }
    }

    /// The estimated number of recent reads of the key with `hash`.
    #[inline]
    pub fn estimate(&self, hash: u64) -> u8 {
        let each = (0..4).map(|i| self.counters[self.index(hash, i)].load(Ordering::Relaxed));
        each.min().unwrap_or(0)
    }

    /// Halves every counter (also called early by `adapt.rs`).
    #[cold]
    pub fn age(&self) {
        self.sampled.store(0, Ordering::Relaxed);
        for c in self.counters.iter() {
            c.store(c.load(Ordering::Relaxed) >> 1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spread of hashes, as the store's hasher gives (splitmix64).
    fn hashes(from: u64, count: u64) -> impl Iterator<Item = u64> {
        (from..from + count).map(|i| {
            let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    }

    #[test]
    fn a_scan_through_a_small_store_leaves_unread_keys_looking_unread() {
        // A 1 000-entry store, 20 000 keys read once each (what the hit-ratio bench's scan
        // does): a key never read must still look unread, or it beats an entry unread since
        // the last halving.
        let sketch = Sketch::new(1_000);
        hashes(0, 20_000).for_each(|h| sketch.record(h));
        let unread = hashes(1 << 40, 10_000);
        let looks_read = unread.filter(|&h| sketch.estimate(h) > 0).count();
        // 8 676 with the sketch sized for 1 000 entries (16 384 counters), 383 at 4 096.
        assert!(
            looks_read < 1_000,
            "{looks_read} of 10 000 unread keys look read"
        );
    }
}
