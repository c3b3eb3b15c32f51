//! A small frequency sketch for the optional admission policy: how often a key was read lately.
//!
//! Four counters per key, saturating at `MAX_COUNT`, in one array of 16 per entry of capacity
//! (a counting Bloom filter, read as the minimum of the four, like TinyLFU's count-min sketch);
//! every counter is halved after about `AGE_READS` reads per entry of capacity, so old
//! popularity fades. Relaxed atomics: a lost increment under contention only makes an estimate
//! slightly low.

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
/// lost 1.4 on the shifting hot set at 20 % capacity. Those were measured while one fixed
/// eighth of the keys was sampled, which on the sim's seeds 1–4 counted 9.5–12 % of the reads
/// (a period of 16–20 reads per entry); with every eighth in turn
/// ([`Sketch::counts_toward_halving`]), measured in the hit-ratio sim (`sim.rs`, seeds 1–5,
/// the lowest seed; best peer in brackets): 15 / 16 / 17 / 18 gave the shifting hot set at
/// 5 % 71.09 / 71.07 / 71.19 / 71.14 (71.20) and at 20 % 80.43 / 80.27 / 80.40 / 80.16
/// (80.17), Zipf 0.99 at 20 % 83.94 / 83.95 / 84.02 / 84.03 (83.81); 17 also has the highest
/// sum of the 18 columns' means.
const AGE_READS: u64 = 17;

/// Entries of capacity a sketch is sized for at least (16 counters each: 128 KiB). A sketch
/// for a small store is otherwise saturated by the keys it never holds: with 16 counters per
/// entry of a 1 000-entry store, the hit-ratio bench's Zipf traces over 100 000 keys (and
/// their scans of 20 000) made unread keys look read, and scan keys won the admission test
/// (`tests::a_scan_through_a_small_store_leaves_unread_keys_looking_unread`). Measured on
/// `benches/compare/hitratio.rs` at 1 % capacity, two runs each (the hasher's seed moves a
/// column by up to ±0.3): Zipf 0.9+scan −0.53/−0.92 → −0.14/−0.20 points behind the best
/// peer with 4 096. 8 192 since the halving waits for `AGE_MIN_ENTRIES`: a scan of 20 000
/// keys now goes through the sketch without a halving, after which 2 567 of 10 000 unread keys
/// looked read at 4 096, 409 at 8 192 (the test); it also gained 0.02–0.06 points on the 1 %
/// Zipf columns in the hit-ratio sim (`sim.rs`).
const MIN_ENTRIES: u64 = 8_192;

/// Entries of capacity the halving period is counted for at least: a store of 1 000 entries
/// halves its sketch after 2 000 × `AGE_READS` reads, not 1 000 ×, so a scan of 20 000 keys
/// (the hit-ratio bench's, at 1 % capacity) no longer halves the counts of the hot keys halfway
/// through it.
/// Measured in the hit-ratio sim (`sim.rs`, 3 hasher seeds, means), at 1 % capacity, 64 →
/// 2 000: Zipf 0.9 46.15 → 46.68 %, with a scan 36.82 → 37.48 %, Zipf 0.99 59.40 → 59.86 %,
/// with a scan 47.57 → 48.13 %, the shifting hot set 58.85 → 59.14 %, the loop 77.32 →
/// 78.66 %; 4 096 did as well on the Zipf columns and 0.16 worse on the shifting hot set. The
/// other capacities (5 000 entries and more) are unchanged.
const AGE_MIN_ENTRIES: u64 = 2_000;

/// The most reads a counter holds (TinyLFU's 4-bit counters stop at 15). A key that was hot
/// looks unread three halvings after its last read instead of four, so after the hot set
/// moves the new keys win the admission test against the old ones sooner (while the store
/// recovers, `adapt.rs` halves and then quarters the counters: 7 → 3 → 0 instead of
/// 15 → 7 → 1). Measured in the hit-ratio sim (`sim.rs`, 3 hasher seeds, means; quick_cache
/// in brackets), 15 → 7: the shifting hot set at 5 / 20 % capacity 70.85 / 80.12 → 70.98 /
/// 80.25 % (71.19 / 80.16), Zipf 0.99 with a scan at 20 % 67.40 → 67.48 % (67.55); the price
/// is on the 1 % Zipf columns, 0.2–0.45 lower and still above both peers (Zipf 0.9 46.73 →
/// 46.28 %, quick_cache 45.96), and Zipf 0.9 with a scan at 5 % 49.71 → 49.42 % (49.21).
/// 10 and 8 moved nothing (within 0.05), 6 did as 7 but 0.07 / 0.08 less on the shifting
/// hot set.
const MAX_COUNT: u8 = 7;

pub(crate) struct Sketch {
    counters: Box<[AtomicU8]>,
    mask: usize,
    /// Sampled reads (one in 8) since the last halving.
    sampled: AtomicU64,
    sample_limit: u64,
    /// Which eighth of the hashes is sampled: a read counts toward the halving if its hash's
    /// low 3 bits equal this one's. It moves on at every halving (`age_by`).
    turn: AtomicU64,
}

impl Sketch {
    /// A sketch sized for `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        let width = (capacity.clamp(MIN_ENTRIES, 1 << 26) as usize * 16).next_power_of_two();
        Sketch {
            counters: (0..width).map(|_| AtomicU8::new(0)).collect(),
            mask: width - 1,
            sampled: AtomicU64::new(0),
            sample_limit: (capacity.max(AGE_MIN_ENTRIES) * AGE_READS) / 8,
            turn: AtomicU64::new(0),
        }
    }

    #[inline]
    fn index(&self, hash: u64, i: usize) -> usize {
        (hash.wrapping_mul(SEEDS[i]) >> 32) as usize & self.mask
    }

    /// True if a read of the key with `hash` counts toward the next halving: one eighth of the
    /// keys, a different eighth in each halving period. Sampling by key saves a shared write
    /// per read, but a fixed eighth ties the halving period to whether the hottest keys fall in
    /// it: under Zipf 0.99 over 100 000 keys the hottest key alone is ~8 % of the reads, so
    /// the share of sampled reads went from 9.5 % to 20.4 % with the hasher's seed (the
    /// hit-ratio sim's seeds 1–5), and the seed that sampled the hottest key halved the sketch
    /// 1.7 times as often and lost 0.6–1.0 points on the Zipf 0.99 columns at 5 and 20 %
    /// capacity (`tests::the_halving_period_does_not_hang_on_which_key_is_hot`). Taking each
    /// eighth in turn brings every seed within ±0.05 of the others there. Caffeine's sketch
    /// (Einziger et al., TinyLFU, ACM ToS 2017, section 3.3 "reset") counts every increment
    /// instead, a shared write per read.
    #[inline]
    fn counts_toward_halving(&self, hash: u64) -> bool {
        (hash ^ self.turn.load(Ordering::Relaxed)) & 7 == 0
    }

    /// Counts one read of the key with `hash`.
    #[inline]
    pub fn record(&self, hash: u64) {
        for i in 0..4 {
            let c = &self.counters[self.index(hash, i)];
            let v = c.load(Ordering::Relaxed);
            if v < MAX_COUNT {
                c.store(v + 1, Ordering::Relaxed);
            }
        }
        if self.counts_toward_halving(hash)
            && self.sampled.fetch_add(1, Ordering::Relaxed) + 1 >= self.sample_limit
        {
            self.age();
        }
    }

    /// Takes back the read of the key with `hash` from the count toward the next halving (not
    /// from its counters): a read of a scan (`gc.rs`'s scan guard) does not bring the halving
    /// closer, so the scan does not fade the counts of the keys read around it.
    #[inline]
    pub fn unsample(&self, hash: u64) {
        if self.counts_toward_halving(hash) {
            // One read-modify-write: a load then a store would lose the `record`s between them
            // and, around a halving's reset to 0, write back nearly the limit (the next sampled
            // read would halve the counters again).
            let _ = self
                .sampled
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_sub(1));
        }
    }

    /// The estimated number of recent reads of the key with `hash`.
    #[inline]
    pub fn estimate(&self, hash: u64) -> u8 {
        let each = (0..4).map(|i| self.counters[self.index(hash, i)].load(Ordering::Relaxed));
        each.min().unwrap_or(0)
    }

    /// Halves every counter.
    #[cold]
    pub fn age(&self) {
        self.age_by(1)
    }

    /// Shifts every counter right by `bits` (1: halves); also called early by `adapt.rs`.
    #[cold]
    pub fn age_by(&self, bits: u32) {
        self.sampled.store(0, Ordering::Relaxed);
        self.turn.fetch_add(1, Ordering::Relaxed);
        for c in self.counters.iter() {
            c.store(c.load(Ordering::Relaxed) >> bits, Ordering::Relaxed);
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

    /// Halvings of a 1 000-entry sketch over `reads` reads, a quarter of them of the key with
    /// `hot`, the rest of distinct keys; counted by a marker key read up to `MAX_COUNT` again
    /// each time its estimate drops.
    fn halvings(hot: u64, reads: u64) -> u32 {
        let sketch = Sketch::new(1_000);
        let marker = hashes(1 << 41, 100).find(|h| h & 7 == 3).unwrap_or(3);
        (0..MAX_COUNT).for_each(|_| sketch.record(marker));
        let (mut cold, mut seen) = (hashes(1 << 42, reads), 0);
        for i in 0..reads {
            match i % 4 {
                0 => sketch.record(hot),
                _ => sketch.record(cold.next().unwrap_or(i)),
            }
            if sketch.estimate(marker) < MAX_COUNT {
                seen += 1;
                (0..MAX_COUNT).for_each(|_| sketch.record(marker));
            }
        }
        seen
    }

    #[test]
    fn the_halving_period_does_not_hang_on_which_key_is_hot() {
        // 240 000 reads: 7 halvings if one in 8 reads counted (34 000 reads per period). With
        // the sampled eighth fixed (and 15 reads per entry), a hot key in it made 22 and one
        // outside it 6.
        let mut keys = hashes(1 << 40, 100);
        let in_first = keys.find(|h| h & 7 == 0).unwrap_or(0);
        let in_second = keys.find(|h| h & 7 == 1).unwrap_or(1);
        let (a, b) = (halvings(in_first, 240_000), halvings(in_second, 240_000));
        assert!(
            a.abs_diff(b) <= 2 && (5..=10).contains(&a),
            "{a} and {b} halvings"
        );
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
        // 8 676 with the sketch sized for 1 000 entries (16 384 counters) and halved during
        // the scan, 383 at 4 096; 2 567 at 4 096 and 409 at 8 192 without the halving (which
        // now waits for 2 000 * AGE_READS reads).
        assert!(
            looks_read < 1_000,
            "{looks_read} of 10 000 unread keys look read"
        );
    }

    #[test]
    fn a_scan_through_a_small_store_does_not_halve_the_sketch() {
        // A 1 000-entry store halves its sketch after 2 000 * AGE_READS reads, not 1 000 *
        // AGE_READS: a key read 4 times keeps its count through a scan of 20 000 keys.
        let sketch = Sketch::new(1_000);
        let read = hashes(1 << 40, 1).next().unwrap_or_default();
        (0..4).for_each(|_| sketch.record(read));
        hashes(0, 20_000).for_each(|h| sketch.record(h));
        assert!(sketch.estimate(read) >= 4, "{}", sketch.estimate(read));
    }

    #[test]
    fn reads_taken_back_do_not_bring_the_halving_closer() {
        // 40 000 sampled reads (hash & 7 == 0) are past the 4 250 a 1 000-entry sketch halves
        // after; taken back one by one (the scan guard, `gc.rs`), they halve nothing.
        let (guarded, plain) = (Sketch::new(1_000), Sketch::new(1_000));
        let read = hashes(1 << 40, 1).next().unwrap_or_default();
        for sketch in [&guarded, &plain] {
            (0..4).for_each(|_| sketch.record(read));
        }
        for h in hashes(0, 400_000).filter(|h| h & 7 == 0).take(40_000) {
            guarded.record(h);
            guarded.unsample(h);
            plain.record(h);
        }
        assert!(guarded.estimate(read) >= 4, "{}", guarded.estimate(read));
        assert!(plain.estimate(read) < 4, "{}", plain.estimate(read));
    }

    #[test]
    fn aging_by_two_bits_quarters_every_counter() {
        let sketch = Sketch::new(1_000);
        let read = hashes(7, 1).next().unwrap_or_default();
        (0..6).for_each(|_| sketch.record(read));
        assert_eq!(sketch.estimate(read), 6);
        sketch.age_by(2);
        assert_eq!(sketch.estimate(read), 1);
        (0..6).for_each(|_| sketch.record(read));
        sketch.age();
        assert_eq!(sketch.estimate(read), 3);
    }

    #[test]
    fn a_key_read_often_looks_unread_three_halvings_after_its_last_read() {
        // A key of a hot set that moved on: read a hundred times, then never again. Its count
        // stops at MAX_COUNT, so three halvings (or a halving and a quartering while the store
        // recovers, `adapt.rs`) leave a key read once since then beating it (15 left 1).
        let sketch = Sketch::new(1_000);
        let mut keys = hashes(1 << 40, 2);
        let (old, new) = (keys.next().unwrap_or_default(), keys.next().unwrap_or(1));
        (0..100).for_each(|_| sketch.record(old));
        assert_eq!(sketch.estimate(old), MAX_COUNT);
        (0..3).for_each(|_| sketch.age());
        assert_eq!(sketch.estimate(old), 0);
        let recovering = Sketch::new(1_000);
        (0..100).for_each(|_| recovering.record(old));
        recovering.age_by(1);
        recovering.age_by(2);
        recovering.record(new);
        assert!(recovering.estimate(new) > recovering.estimate(old));
    }
}
