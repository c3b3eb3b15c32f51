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
//! 3 windows in a row are more than 5 % below the ratio before the drop, it halves the sketch
//! once per window until a window is back; the target slides toward the observed ratio by a
//! quarter of the gap each time (`TUNING`), so a workload whose ratio stays lower for good
//! stops the halving after a few windows. A scan lowers the ratio too, but the benchmark's
//! (a fifth of the keys, 20 000) spans at most two low windows in a row: it lets it by.
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

/// Measured on `hitratio.rs` (one run each, against the code without this): the shifting hot
/// set −0.05/−0.70/−4.01 → −0.04/−0.24/−0.35 points behind the best peer at 1/5/20 %
/// capacity; the Zipf columns within ±0.3 (the hasher's seed moves them by as much).
pub(crate) struct Aging {
    watch: Mutex<Watch>,
}

struct Watch {
    calls: u64,
    ratio: RatioWatch,
}

impl Aging {
    /// For a store of `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        let ratio = RatioWatch::new(Tuning {
            sample: capacity.max(TUNING.sample),
            ..TUNING
        });
        Aging {
            watch: Mutex::new(Watch { calls: 0, ratio }),
        }
    }

    /// Called by a writer that evicts: true if the sketch should be halved now.
    pub fn observe(&self, stats: &StatsRecorder) -> bool {
        let Some(mut watch) = self.watch.try_lock() else {
            return false;
        };
        watch.calls += 1;
        if watch.calls % CHECK_EVERY != 0 || !stats.enabled() {
            return false;
        }
        let s = stats.snapshot();
        Self::sample(&mut watch.ratio, s.hits + s.misses, s.misses)
    }

    /// Ends a window if `reads` (and `misses`, both totals so far) complete one; true if the
    /// sketch should be halved.
    fn sample(watch: &mut RatioWatch, reads: u64, misses: u64) -> bool {
        watch
            .sample(reads, misses)
            .is_some_and(|window| watch.step(window.ratio()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds windows of `TUNING.sample` reads with the given hit ratios; returns after which
    /// windows (1-based) the sketch would be halved.
    fn halvings(ratios: &[f64]) -> Vec<usize> {
        let mut w = Aging::new(1_000).watch.into_inner().ratio;
        let (mut reads, mut misses) = (0, 0);
        let mut out = Vec::new();
        for (i, ratio) in ratios.iter().enumerate() {
            reads += TUNING.sample;
            misses += ((1.0 - ratio) * TUNING.sample as f64) as u64;
            if Aging::sample(&mut w, reads, misses) {
                out.push(i + 1);
            }
        }
        out
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
        let mut w = Aging::new(1_000).watch.into_inner().ratio;
        assert!(!Aging::sample(&mut w, 10 * TUNING.sample, TUNING.sample));
        assert!(!Aging::sample(&mut w, 5, 5), "counters went back");
        assert!(
            w.sample(TUNING.sample, 0).is_some(),
            "a window from zero on"
        );
    }
}
