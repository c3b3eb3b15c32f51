//! Which way a bounded store's S3-FIFO leans, adapted to the hit ratio it observes.
//!
//! No fixed setting of the policy serves every workload best (measured on
//! `benches/compare/hitratio.rs`): a ghost that recalls keys evicted longer ago and a lower cap
//! on the reads a main-queue entry keeps let a cache take in a **new hot set** faster, but on a
//! **stable** Zipf workload they let lukewarm keys displace frequent ones (−0.1 to −0.5 points
//! on every Zipf column when set for good). So the store leans toward frequency (the settings
//! in `policy.rs`) and **toward recency only while its hit ratio recovers from a lasting
//! drop**. This is the idea of Caffeine's adaptive window ("Adaptive Software Cache
//! Management", Einziger, Eytan, Friedman and Manes, Middleware 2018), which restarts its hill
//! climber when the hit rate changes sharply, applied to S3-FIFO's two knobs as a climber with
//! two positions.
//!
//! The hit ratio is the store's own read and miss counters (striped per thread, summed here),
//! looked at in samples of `max(capacity, 8 192)` reads by a [`RatioWatch`] (`ratio_watch.rs`,
//! shared with the GenerationalStore's adaptive aging; the numbers are in `TUNING`). A
//! **recovery** starts when 3 samples in a row are more than 5 points below the sample before
//! them, and aims back at that earlier ratio; it ends once a sample reaches its target, which
//! slides toward the observed ratio by 3 % of the gap per sample (within half a point of it is
//! back), so a workload whose ratio stays lower for good does not keep the store leaning toward recency. A **scan** also drops the ratio, but
//! leaning toward recency through one costs hits (its keys never come back; the hot set should
//! stay put): a sample whose misses the ghost recalls less than half as often as in the last
//! sample that counted is a scan's, and is skipped. Nothing here runs on a read: a writer that
//! ends a ghost epoch calls [`Lean::observe`], which gives up at once if another writer is in
//! it. A store built with `stats(false)` counts no reads and keeps leaning toward frequency.
//!
//! A heuristic, and it can miss: right after a move the ghost recalls none of the new keys, so
//! the first samples look like a scan's, and if the ratio is back before three counted samples
//! stayed low the store never leans. In the unit test's pattern (a 2 000-entry store whose
//! Zipf hot set of 20 000 keys moves) it leans on 26 of 32 hasher seeds
//! (`bounded::tests::the_store_leans_toward_recency_when_the_hot_set_moves_and_back_once_it_is_in`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::ratio_watch::{Gap, RatioWatch, Tuning};

/// How the store judges its samples of reads (`ratio_watch.rs`); `sample` is the least, a
/// store uses `max(capacity, sample)`.
const TUNING: Tuning = Tuning {
    // A sample's ratio over fewer reads is too noisy to act on.
    sample: 8_192,
    // A sample 5 points below the one before the drop is low.
    drop: Gap::Points(0.05),
    // Three low samples in a row: a lasting drop (a new hot set), not a burst.
    persist: 3,
    // A recovery gives up 3 % of the gap between target and observed ratio per sample...
    settle: 0.03,
    // ...and ends once a sample is within half a point of its target.
    back: Gap::Points(0.005),
    settle_at_start: false,
    // Every drop waits for `persist` samples.
    shallow: None,
};
/// A sample whose ghost recalls per miss fall below this share of the last counted sample's
/// is a scan's.
const SCAN_RECALLS: f64 = 0.5;

/// A bounded store's lean: toward frequency, or toward recency during a recovery.
pub(crate) struct Lean {
    recency: AtomicBool,
    /// Ghost recalls reported by the shards so far.
    recalls: AtomicU64,
    watch: Mutex<Watch>,
}

/// Where the samples stand.
struct Watch {
    ratio: RatioWatch,
    /// Ghost recalls at the start of the current sample.
    recalls: u64,
    /// The last counted sample's ghost recalls per miss.
    recall_rate: Option<f64>,
}

impl Lean {
    /// A lean for a store holding about `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        let tuning = Tuning {
            sample: capacity.max(TUNING.sample),
            ..TUNING
        };
        let watch = Watch {
            ratio: RatioWatch::new(tuning),
            recalls: 0,
            recall_rate: None,
        };
        Lean {
            recency: AtomicBool::new(false),
            recalls: AtomicU64::new(0),
            watch: Mutex::new(watch),
        }
    }

    /// True while the store recovers from a lasting drop of its hit ratio.
    #[inline]
    pub fn recency(&self) -> bool {
        self.recency.load(Ordering::Relaxed)
    }

    /// Takes the store's cumulative `reads` and `misses` and a shard's ghost recalls since it
    /// last reported; ends a sample once it holds enough reads and updates the lean from it.
    /// Gives up (keeping the recalls) if another writer is here.
    pub fn observe(&self, reads: u64, misses: u64, recalled: u64) {
        let recalls = self.recalls.fetch_add(recalled, Ordering::Relaxed) + recalled;
        let Some(mut watch) = self.watch.try_lock() else {
            return;
        };
        let Some(sample) = watch.ratio.sample(reads, misses) else {
            return;
        };
        let rate = recalls.wrapping_sub(watch.recalls) as f64 / sample.misses.max(1) as f64;
        watch.recalls = recalls;
        if watch.recall_rate.is_some_and(|r| rate < r * SCAN_RECALLS) {
            return;
        }
        watch.recall_rate = Some(rate);
        let recency = watch.ratio.step(sample.ratio());
        self.recency.store(recency, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `lean` one sample of `reads` reads per entry of `samples`: (hit ratio, ghost
    /// recalls per miss). Returns the lean after each.
    fn feed(lean: &Lean, total: &mut (u64, u64), samples: &[(f64, f64)]) -> Vec<bool> {
        let each = lean.watch.lock().ratio.sample_reads();
        let step = |&(ratio, recalls): &(f64, f64)| {
            let missed = ((1.0 - ratio) * each as f64) as u64;
            total.0 += each;
            total.1 += missed;
            lean.observe(total.0, total.1, (recalls * missed as f64) as u64);
            lean.recency()
        };
        samples.iter().map(step).collect()
    }

    #[test]
    fn a_lasting_drop_leans_toward_recency_until_the_ratio_is_back() {
        let lean = Lean::new(20_000);
        let mut total = (0, 0);
        let steady = [(0.84, 0.15); 4];
        assert_eq!(feed(&lean, &mut total, &steady), [false; 4]);
        // A new hot set: the ratio falls and climbs back over many samples.
        let shift = [(0.55, 0.15), (0.65, 0.15), (0.70, 0.15), (0.75, 0.15)];
        assert_eq!(
            feed(&lean, &mut total, &shift),
            [false, false, true, true],
            "leans toward recency once the drop lasted three samples"
        );
        assert_eq!(feed(&lean, &mut total, &[(0.80, 0.15)]), [true]);
        assert_eq!(
            feed(&lean, &mut total, &[(0.84, 0.15)]),
            [false],
            "back to frequency once the ratio is back"
        );
    }

    #[test]
    fn a_drop_that_does_not_last_changes_nothing() {
        let lean = Lean::new(1_000);
        let mut total = (0, 0);
        let blip = [
            (0.84, 0.15),
            (0.84, 0.15),
            (0.30, 0.15),
            (0.60, 0.15),
            (0.84, 0.15),
        ];
        assert_eq!(feed(&lean, &mut total, &blip), [false; 5]);
    }

    #[test]
    fn a_scan_is_not_a_new_hot_set() {
        let lean = Lean::new(1_000);
        let mut total = (0, 0);
        feed(&lean, &mut total, &[(0.47, 0.2); 3]);
        // Every read of a scan misses and the ghost recalls none of its keys.
        let scan = [
            (0.02, 0.0),
            (0.0, 0.0),
            (0.0, 0.0),
            (0.0, 0.0),
            (0.05, 0.01),
        ];
        assert_eq!(feed(&lean, &mut total, &scan), [false; 5]);
        assert_eq!(feed(&lean, &mut total, &[(0.47, 0.2)]), [false]);
    }

    #[test]
    fn a_lasting_lower_ratio_ends_the_recovery() {
        let lean = Lean::new(1_000);
        let mut total = (0, 0);
        feed(&lean, &mut total, &[(0.80, 0.15); 2]);
        let lower = feed(&lean, &mut total, &[(0.50, 0.15); 400]);
        assert!(lower[2], "recovering");
        assert!(!lower[399], "the target settled to the lower ratio");
    }
}
