//! Admission mode: the sketch forgets faster while the store recovers from a moved hot set.
//!
//! The admission sketch halves its counters every `AGE_READS` reads per entry of capacity
//! (`sketch.rs`), so keys that were hot keep winning the candidate-against-victim test for a
//! while after nobody reads them: when the hot set moves, the new hot keys are rejected until
//! the old counts fade (3–4 points below quick_cache on `benches/compare/hitratio.rs`'s
//! shifting hot set at 20 % capacity without this). As the bounded MemoryStore's lean does
//! (`memory/lean.rs`, after Caffeine's adaptive window, Einziger et al., Middleware 2018), the
//! store watches its own hit ratio, in windows of `max(capacity, MIN_WINDOW)` reads: once
//! `PERSIST` windows in a row are more than `DROP` below the ratio before the drop, it halves
//! the sketch once per window until a window is back; the target slides toward the observed
//! ratio by `SETTLE` of the gap each time, so a workload whose ratio stays lower for good
//! stops the halving after a few windows. A scan lowers the ratio too, but the benchmark's
//! (a fifth of the keys, 20 000) spans at most two low windows in a row: `PERSIST` lets it by.
//!
//! Runs on a writer that evicts, every `CHECK_EVERY`th time, never on a read; a writer that
//! finds another one in it gives up. A store built with `stats(false)` counts no reads and
//! never adapts.

use parking_lot::Mutex;

use crate::stats::StatsRecorder;

/// Reads per window at least (a ratio over fewer is too noisy to act on).
const MIN_WINDOW: u64 = 16_384;
/// How far below the ratio before the drop (a fraction of it) a window counts as low.
const DROP: f64 = 0.05;
/// Low windows in a row before the first halving: a lasting drop, not a burst or a scan.
const PERSIST: u32 = 3;
/// The share of the gap between target and observed ratio given up at each halving.
const SETTLE: f64 = 0.25;
/// Evicting writes between two looks at the counters (a look sums the stats' stripes).
const CHECK_EVERY: u64 = 64;

/// Measured on `hitratio.rs` (one run each, against the code without this): the shifting hot
/// set −0.05/−0.70/−4.01 → −0.04/−0.24/−0.35 points behind the best peer at 1/5/20 %
/// capacity; the Zipf columns within ±0.3 (the hasher's seed moves them by as much).
pub(crate) struct Aging {
    window: u64,
    watch: Mutex<Watch>,
}

#[derive(Default)]
struct Watch {
    calls: u64,
    /// Reads and misses when the current window began.
    at: (u64, u64),
    /// The ratio to get back to (the last window that was not low).
    target: f64,
    low: u32,
}

impl Aging {
    /// For a store of `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        Aging {
            window: capacity.max(MIN_WINDOW),
            watch: Mutex::new(Watch::default()),
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
        self.sample(&mut watch, s.hits + s.misses, s.misses)
    }

    /// Ends a window if `reads` (and `misses`, both totals so far) complete one; true if the
    /// sketch should be halved.
    fn sample(&self, w: &mut Watch, reads: u64, misses: u64) -> bool {
        if reads < w.at.0 || misses < w.at.1 {
            *w = Watch::default(); // the counters were reset
            return false;
        }
        let (window_reads, window_misses) = (reads - w.at.0, misses - w.at.1);
        if window_reads < self.window {
            return false;
        }
        w.at = (reads, misses);
        let ratio = 1.0 - window_misses as f64 / window_reads as f64;
        if ratio >= w.target * (1.0 - DROP) {
            w.low = 0;
            w.target = ratio;
            return false;
        }
        w.low += 1;
        if w.low < PERSIST {
            return false;
        }
        w.target -= (w.target - ratio) * SETTLE;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds windows of `MIN_WINDOW` reads with the given hit ratios; returns after which
    /// windows (1-based) the sketch would be halved.
    fn halvings(ratios: &[f64]) -> Vec<usize> {
        let aging = Aging::new(1_000);
        let mut w = Watch::default();
        let (mut reads, mut misses) = (0, 0);
        let mut out = Vec::new();
        for (i, ratio) in ratios.iter().enumerate() {
            reads += MIN_WINDOW;
            misses += ((1.0 - ratio) * MIN_WINDOW as f64) as u64;
            if aging.sample(&mut w, reads, misses) {
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
        let aging = Aging::new(1_000);
        let mut w = Watch::default();
        assert!(!aging.sample(&mut w, 10 * MIN_WINDOW, MIN_WINDOW));
        assert!(!aging.sample(&mut w, 5, 5), "counters went back");
        assert_eq!(w.at, (0, 0));
    }
}
