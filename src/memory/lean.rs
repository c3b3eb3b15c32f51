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
//! looked at in samples of `max(capacity, MIN_SAMPLE)` reads. A **recovery** starts when
//! `PERSIST` samples in a row are more than `DROP` below the sample before them, and aims back
//! at that earlier ratio; it ends once a sample reaches its target, which slides toward the
//! observed ratio by `SETTLE` of the gap per sample (within `BACK` of it is back), so a workload whose ratio stays lower for
//! good does not keep the store leaning toward recency. A **scan** also drops the ratio, but
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

/// Reads per sample at least (a sample's ratio over fewer reads is too noisy to act on).
const MIN_SAMPLE: u64 = 8_192;
/// How far (a fraction) a sample's hit ratio must fall below the one before the drop.
const DROP: f64 = 0.05;
/// Samples in a row that must stay that low: a lasting drop (a new hot set), not a burst.
const PERSIST: u32 = 3;
/// The share of the gap between target and observed ratio a recovery gives up per sample.
const SETTLE: f64 = 0.03;
/// A recovery ends once a sample is this close to its target.
const BACK: f64 = 0.005;
/// A sample whose ghost recalls per miss fall below this share of the last counted sample's
/// is a scan's.
const SCAN_RECALLS: f64 = 0.5;

/// A bounded store's lean: toward frequency, or toward recency during a recovery.
pub(crate) struct Lean {
    recency: AtomicBool,
    /// Ghost recalls reported by the shards so far.
    recalls: AtomicU64,
    sample: u64,
    watch: Mutex<Watch>,
}

/// Where the samples stand.
#[derive(Default)]
struct Watch {
    /// The counters at the start of the current sample.
    reads: u64,
    misses: u64,
    recalls: u64,
    /// The last counted sample's hit ratio and ghost recalls per miss.
    last: Option<f64>,
    recall_rate: Option<f64>,
    /// The ratio before a drop, and how many samples in a row have stayed below it.
    dropped_from: Option<f64>,
    low: u32,
    /// The ratio a recovery aims back at (`None`: not recovering).
    target: Option<f64>,
}

impl Lean {
    /// A lean for a store holding about `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        Lean {
            recency: AtomicBool::new(false),
            recalls: AtomicU64::new(0),
            sample: capacity.max(MIN_SAMPLE),
            watch: Mutex::new(Watch::default()),
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
        let read = reads.wrapping_sub(watch.reads);
        if read < self.sample {
            return;
        }
        let missed = misses.wrapping_sub(watch.misses).min(read);
        let ratio = 1.0 - missed as f64 / read as f64;
        let rate = recalls.wrapping_sub(watch.recalls) as f64 / missed.max(1) as f64;
        (watch.reads, watch.misses, watch.recalls) = (reads, misses, recalls);
        if watch.recall_rate.is_some_and(|r| rate < r * SCAN_RECALLS) {
            return;
        }
        watch.recall_rate = Some(rate);
        watch.step(ratio);
        self.recency
            .store(watch.target.is_some(), Ordering::Relaxed);
    }
}

impl Watch {
    /// Moves on by one counted sample of hit ratio `ratio`.
    fn step(&mut self, ratio: f64) {
        self.target = match self.target {
            Some(target) if ratio + BACK < target => Some(target - (target - ratio) * SETTLE),
            Some(_) => None,
            None => self.drop_lasted(ratio),
        };
        self.last = Some(ratio);
    }

    /// Counts `ratio` toward a lasting drop; the ratio to recover if the drop lasted long enough.
    fn drop_lasted(&mut self, ratio: f64) -> Option<f64> {
        let before = self.dropped_from.or(self.last)?;
        if ratio >= before - DROP {
            (self.dropped_from, self.low) = (None, 0);
            return None;
        }
        (self.dropped_from, self.low) = (Some(before), self.low + 1);
        if self.low < PERSIST {
            return None;
        }
        (self.dropped_from, self.low) = (None, 0);
        Some(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `lean` one sample of `reads` reads per entry of `samples`: (hit ratio, ghost
    /// recalls per miss). Returns the lean after each.
    fn feed(lean: &Lean, total: &mut (u64, u64), samples: &[(f64, f64)]) -> Vec<bool> {
        let each = lean.sample;
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
            "leans toward recency once the drop lasted {PERSIST} samples"
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
