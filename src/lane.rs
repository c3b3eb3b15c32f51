//! Which shard (or partition) of a store a key's hash goes to.

/// The shard of `hash` among `shards`: the hash is mixed (xor-shift, then a multiply by 2⁶⁴/φ)
/// and the top 24 bits of the mix are scaled to the count by a multiply-shift, so any count
/// works (a bounded store picks the count that fits its tables, rarely a power of two) without a
/// division.
///
/// The mix is needed: foldhash, the default hasher, hashes an integer key as one multiply, so for
/// sequential keys (user ids, row ids) any fixed bit range of the hash steps through a Weyl
/// sequence, and for one seed in a few hundred that sequence fills a few shards and starves the
/// rest (see the test below). The xor-shift brings the high half's carries into the low half,
/// which breaks the linearity, and the multiply spreads every input bit to the top bits. hashbrown
/// takes the hash's low bits for the bucket and its top 7 for the control byte, a ghost the low
/// 32 for its slot: the shard, taken from the mix, skews none of them.
#[inline]
pub(crate) fn lane_of(hash: u64, shards: usize) -> usize {
    let mixed = (hash ^ (hash >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (((mixed >> 40) * shards as u64) >> 24) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequential integer keys (user ids, row ids) spread evenly over the shards for every hasher
    /// seed. foldhash hashes such a key as one multiply, so hash bits 32–55 moved in a Weyl
    /// sequence: with global seed 463, 60 000 keys filled 8 of 16 shards with 8 572 each (2.3×
    /// the mean) and left 6 empty, and a seed drawn at random did as badly about once in a
    /// hundred processes (`fill::tests::a_store_sized_for_its_fill_…` failed that often).
    #[test]
    fn sequential_keys_spread_evenly_over_the_shards_whatever_the_seed() {
        use std::hash::BuildHasher;
        static SEEDS: [foldhash::SharedSeed; 4] = [
            foldhash::SharedSeed::from_u64(0),
            foldhash::SharedSeed::from_u64(431),
            foldhash::SharedSeed::from_u64(463),
            foldhash::SharedSeed::from_u64(2004),
        ];
        for (seed, shared) in [0, 431, 463, 2004].into_iter().zip(&SEEDS) {
            let hasher = foldhash::fast::SeedableRandomState::with_seed(7, shared);
            for shards in [7usize, 16, 20] {
                let mut counts = vec![0u32; shards];
                for key in 0..60_000u64 {
                    counts[lane_of(hasher.hash_one(key), shards)] += 1;
                }
                let mean = 60_000 / shards as u32;
                let (least, most) = (counts.iter().min(), counts.iter().max());
                assert!(
                    counts.iter().all(|n| n.abs_diff(mean) * 10 < mean),
                    "seed {seed}, {shards} shards: {least:?}..{most:?} keys per shard, mean {mean}"
                );
            }
        }
    }
}
