//! Admission mode: the sketch forgets faster while the store recovers from a moved hot set.
//!
//! The admission sketch halves its counters every `AGE_READS` reads per entry of capacity
//! (`sketch.rs`), so keys that were hot keep winning the candidate-against-victim test for a
//! while after nobody reads them: when the hot set moves, the new hot keys are rejected until
//! the old counts fade (3–4 points below quick_cache on `benches/compare/hitratio.rs`'s
//! shifting hot set at 20 % capacity without this). As the bounded MemoryStore's lean does
//! (`memory/lean.rs`, after Caffeine's adaptive window, Einziger et al., Middleware 2018), the
//! store watches its own hit ratio (a [`RatioWatch`], `ratio_watch.rs`, shared with the lean),
//! in windows of `max(capacity, 16 384)` reads: once
//! 3 windows in a row are more than 5 % below the ratio before the drop, it ages the sketch
//! once per window until a window is back; the target slides toward the observed ratio by a
//! quarter of the gap each time (`TUNING`), so a workload whose ratio stays lower for good
//! stops the aging after a few windows. A scan lowers the ratio too, but the benchmark's
//! (a fifth of the keys, 20 000) spans at most two low windows in a row: it lets it by.
//!
//! Each aging also demotes the newer generation whole to the older one (`gc.rs`): after a
//! move the newer generation holds the old hot keys, promoted before the move, and nothing else
//! demotes them until it fills with new ones. The first aging of a recovery halves the
//! counters; the next ones quarter them (`LATER_SHIFT`): a scan followed by a short dip may
//! start a recovery that ages once, a moved hot set keeps it going.
//!
//! Runs on a writer that evicts, every `CHECK_EVERY`th time, never on a read; a writer that
//! finds another one in it gives up. A store built with `stats(false)` counts no reads and
//! never adapts.

use parking_lot::Mutex;

use crate::{
    ratio_watch::{Gap, RatioWatch, Tuning},
    stats::StatsRecorder,
};

/// How the store judges its windows of reads (`ratio_watch.rs`); `sample` is the least, a
/// store uses `max(capacity, sample)`.
const TUNING: Tuning = Tuning {
    // A ratio over fewer reads is too noisy to act on.
    sample: 16_384,
    // A window 5 % below the ratio before the drop (a share of it) is low.
    drop: Gap::Share(0.05),
    // Three low windows in a row before the first halving: a lasting drop, not a burst or a
    // scan.
    persist: 3,
    // Each halving gives up a quarter of the gap between the target and the observed ratio.
    settle: 0.25,
    // Back once a window is within 5 % of the (settling) target; every low window from the
    // third on halves, so the third already settles.
    back: Gap::Share(0.05),
    settle_at_start: true,
};
/// Evicting writes between two looks at the counters (a look sums the stats' stripes).
const CHECK_EVERY: u64 = 64;

/// Bits the counters are shifted by on the second and later agings of one recovery (1 on the
/// first). Measured in the hit-ratio sim (`sim.rs`, 3 hasher seeds, the newer generation
/// demoted at each aging): the shifting hot set at 5 / 20 % capacity 70.77 / 79.79 % with
/// every aging a halving, 70.85 / 80.12 % with this; 2 bits from the first aging on gave
/// 70.92 / 80.27 % but cost Zipf 0.99 with a scan at 5 % 0.24 points (58.60 → 58.36 %: a scan
/// there starts a short recovery now and then), 3 bits from the second on 70.79 / 80.04 %.
const LATER_SHIFT: u32 = 2;

/// Measured on `hitratio.rs` (one run each, against the code without this): the shifting hot
/// set −0.05/−0.70/−4.01 → −0.04/−0.24/−0.35 points behind the best peer at 1/5/20 %
/// capacity; the Zipf columns within ±0.3 (the hasher's seed moves them by as much).
pub(crate) struct Aging {
    watch: Mutex<Watch>,
}

struct Watch {
    calls: u64,
    ratio: RatioWatch,
    /// Agings in the current recovery.
    agings: u32,
}

impl Aging {
    /// For a store of `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        let ratio = RatioWatch::new(Tuning {
            sample: capacity.max(TUNING.sample),
            ..TUNING
        });
        Aging {
            watch: Mutex::new(Watch {
                calls: 0,
                ratio,
                agings: 0,
            }),
        }
    }

    /// Called by a writer that evicts: if the sketch should be aged now (and the newer
    /// generation demoted), the bits to shift its counters by.
    pub fn observe(&self, stats: &StatsRecorder) -> Option<u32> {
        let mut watch = self.watch.try_lock()?;
        watch.calls += 1;
        if watch.calls % CHECK_EVERY != 0 || !stats.enabled() {
            return None;
        }
        let s = stats.snapshot();
        Self::sample(&mut watch, s.hits + s.misses, s.misses)
    }

    /// Ends a window if `reads` (and `misses`, both totals so far) complete one; the bits to
    /// shift the sketch's counters by if it should be aged.
    fn sample(watch: &mut Watch, reads: u64, misses: u64) -> Option<u32> {
        let window = watch.ratio.sample(reads, misses)?;
        if !watch.ratio.step(window.ratio()) {
            watch.agings = 0;
            return None;
        }
        watch.agings += 1;
        Some(if watch.agings == 1 { 1 } else { LATER_SHIFT })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds windows of `TUNING.sample` reads with the given hit ratios; returns after which
    /// windows (1-based) the sketch would be aged, and by how many bits.
    fn agings(ratios: &[f64]) -> Vec<(usize, u32)> {
        let mut w = Aging::new(1_000).watch.into_inner();
        let (mut reads, mut misses) = (0, 0);
        let mut out = Vec::new();
        for (i, ratio) in ratios.iter().enumerate() {
            reads += TUNING.sample;
            misses += ((1.0 - ratio) * TUNING.sample as f64) as u64;
            if let Some(bits) = Aging::sample(&mut w, reads, misses) {
                out.push((i + 1, bits));
            }
        }
        out
    }

    /// After which windows the sketch would be aged.
    fn halvings(ratios: &[f64]) -> Vec<usize> {
        agings(ratios)
            .into_iter()
            .map(|(window, _)| window)
            .collect()
    }

    #[test]
    fn a_recovery_halves_first_then_quarters_and_the_next_one_halves_first_again() {
        // Two moves of the hot set (windows 3 and 10), each a recovery of two agings: after
        // the third and fourth low windows (5 and 6, then 12 and 13).
        let ratios = [0.8, 0.8, 0.5, 0.55, 0.6, 0.65, 0.7, 0.78, 0.8];
        let mut twice = ratios.to_vec();
        twice.extend(&ratios[2..]);
        let expected = vec![(5, 1), (6, LATER_SHIFT), (12, 1), (13, LATER_SHIFT)];
        assert_eq!(agings(&twice), expected);
    }

    #[test]
    fn a_lasting_drop_halves_the_sketch_until_the_ratio_is_back() {
        // Stable at 0.8, then the hot set moves: 0.5, recovering. Halved after the third low
        // window (the target settles to 0.75) and the fourth (0.725); the fifth, 0.7, is
        // within 5 % of that: back.
        let ratios = [0.8, 0.8, 0.8, 0.5, 0.55, 0.6, 0.65, 0.7, 0.78, 0.8];
        assert_eq!(halvings(&ratios), vec![6, 7]);
    }

    #[test]
    fn a_short_dip_such_as_a_scan_does_not() {
        let ratios = [0.8, 0.8, 0.1, 0.4, 0.8, 0.8, 0.3, 0.79, 0.8];
        assert_eq!(halvings(&ratios), Vec::<usize>::new());
    }

    #[test]
    fn a_ratio_lower_for_good_stops_the_halving() {
        let mut ratios = vec![0.8; 3];
        ratios.extend([0.5; 40]);
        let halved = halvings(&ratios);
        assert!(!halved.is_empty() && halved.len() < 12, "{halved:?}");
        assert_eq!(halved[0], 6);
    }

    #[test]
    fn reset_counters_start_over() {
        let mut w = Aging::new(1_000).watch.into_inner();
        assert_eq!(
            Aging::sample(&mut w, 10 * TUNING.sample, TUNING.sample),
            None
        );
        assert_eq!(Aging::sample(&mut w, 5, 5), None, "counters went back");
        assert!(
            w.ratio.sample(TUNING.sample, 0).is_some(),
            "a window from zero on"
        );
    }
}
