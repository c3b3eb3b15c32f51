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
//! A shallow drop starts sooner, after 2 low windows (`Shallow`): one of a scan's windows is
//! at least half scan (one that spans one to two windows leaves at least half of itself in
//! one), so its ratio falls to about half or less, more than 40 % below; after a moved hot set
//! the new keys are read again as soon as they are in, and the sim's windows fall 17–35 %.
//! Measured in the hit-ratio sim (`sim.rs`, 3 hasher seeds, means; quick_cache in brackets):
//! the shifting hot set at 5 / 20 % capacity 70.98 / 80.25 → 71.13 / 80.44 % (71.19 /
//! 80.15), the Zipf columns unchanged to the hundredth, the loop at 5 / 20 % 78.55 / 74.92 →
//! 78.02 / 75.74 % (quick_cache 60.46 / 63.73). A first aging that quartered after a shallow
//! start gave 71.15 at 5 % but 69.51 on the loop at 20 %. A scan shorter than a window that
//! falls across two can pass for a shallow drop: it costs one halving and one demotion.
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
    ratio_watch::{Gap, RatioWatch, Shallow, Tuning},
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
    // Two low windows, neither more than 40 % below, start it too: a moved hot set, not a scan
    // (module docs).
    shallow: Some(Shallow {
        persist: 2,
        deep: Gap::Share(0.4),
    }),
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
        // Two moves of the hot set (windows 3 and 10), each a shallow drop (0.5 is 37.5 %
        // below 0.8) and a recovery of three agings: after the second, third and fourth low
        // windows (4 to 6, then 11 to 13).
        let ratios = [0.8, 0.8, 0.5, 0.55, 0.6, 0.65, 0.7, 0.78, 0.8];
        let mut twice = ratios.to_vec();
        twice.extend(&ratios[2..]);
        let later = [(4, 1), (5, LATER_SHIFT), (6, LATER_SHIFT)];
        let expected: Vec<_> = later
            .iter()
            .chain(&later.map(|(w, b)| (w + 7, b)))
            .copied()
            .collect();
        assert_eq!(agings(&twice), expected);
    }

    #[test]
    fn a_lasting_drop_that_began_deep_halves_the_sketch_after_three_windows_until_back() {
        // Stable at 0.8, then a deep window (0.4, half the ratio, as a scan gives) and a
        // lasting drop, recovering. Halved after the third low window (the target settles to
        // 0.75) and the fourth (0.725); the fifth, 0.7, is within 5 % of that: back.
        let ratios = [0.8, 0.8, 0.8, 0.4, 0.55, 0.6, 0.65, 0.7, 0.78, 0.8];
        assert_eq!(halvings(&ratios), vec![6, 7]);
    }

    #[test]
    fn a_shallow_lasting_drop_halves_the_sketch_after_two_windows() {
        // The same drop with no window below 60 % of 0.8: a moved hot set. The second low
        // window starts the recovery (target 0.7375), then 0.6 and 0.65 are low against the
        // settling target and 0.7 is back.
        let ratios = [0.8, 0.8, 0.8, 0.5, 0.55, 0.6, 0.65, 0.7, 0.78, 0.8];
        assert_eq!(halvings(&ratios), vec![5, 6, 7]);
    }

    #[test]
    fn the_bench_s_moved_hot_set_ages_one_window_sooner_and_its_scans_do_not() {
        // Windows of the hit-ratio sim (`sim.rs`, seed 1) at 5 % capacity: the shifting hot
        // set's second move lands 8 600 reads before a window ends; the first aging now comes
        // after the window of 0.518, one window sooner.
        let moved = [0.728, 0.732, 0.557, 0.518, 0.574, 0.595, 0.639, 0.667];
        assert_eq!(halvings(&moved)[0], 4);
        // Zipf 0.99 with a scan of 20 000 keys: a window almost all scan, and one shared.
        let scan = [0.710, 0.047, 0.504, 0.712, 0.716];
        assert_eq!(halvings(&scan), Vec::<usize>::new());
        // At 20 % capacity (Zipf 0.9): the scan split about evenly over two windows.
        let split = [0.713, 0.335, 0.384, 0.721, 0.728];
        assert_eq!(halvings(&split), Vec::<usize>::new());
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
        // A shallow drop (0.5 is 37.5 % below 0.8): the second low window starts it.
        assert_eq!(halved[0], 5);
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
