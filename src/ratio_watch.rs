//! A store watching its own hit ratio for a lasting drop, and for the recovery after it.
//!
//! Two bounded stores adapt their policy to the workload this way (after Caffeine's adaptive
//! window, "Adaptive Software Cache Management", Einziger, Eytan, Friedman and Manes,
//! Middleware 2018, which restarts its hill climber when the hit rate changes sharply): the
//! bounded MemoryStore leans toward recency (`memory/lean.rs`) and the GenerationalStore's
//! admission sketch forgets faster (`generational/adapt.rs`) while the hit ratio recovers.
//!
//! The hit ratio is looked at in samples of a fixed number of reads, taken from the store's
//! cumulative read and miss counters. A sample is **low** when it falls more than a [`Gap`]
//! below the ratio before the drop; once [`Tuning::persist`] samples in a row are low (a new
//! hot set, not a burst), a **recovery** starts and aims back at that earlier ratio. It lasts
//! while samples stay more than [`Tuning::back`] below the target, which slides toward the
//! observed ratio by [`Tuning::settle`] of the gap per sample, so a workload whose ratio
//! stays lower for good ends its recovery after a while.

/// A distance below a reference ratio.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Gap {
    /// In absolute points of ratio (0.05: from 0.80 to below 0.75).
    Points(f64),
    /// A share of the reference (0.05: from 0.80 to below 0.76).
    Share(f64),
}

impl Gap {
    /// True if `ratio` is more than this gap below `reference`.
    #[inline]
    fn below(self, ratio: f64, reference: f64) -> bool {
        match self {
            Gap::Points(points) => ratio < reference - points,
            Gap::Share(share) => ratio < reference * (1.0 - share),
        }
    }
}

/// How a [`RatioWatch`] judges its samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Reads per sample (a ratio over fewer is too noisy to act on).
    pub sample: u64,
    /// How far below the ratio before the drop a sample counts as low.
    pub drop: Gap,
    /// Low samples in a row that start a recovery.
    pub persist: u32,
    /// The share of the gap between target and observed ratio given up per recovering sample.
    pub settle: f64,
    /// A recovery goes on while a sample is more than this below its target.
    pub back: Gap,
    /// Whether the sample that starts a recovery already settles the target (else the target
    /// starts at the ratio before the drop).
    pub settle_at_start: bool,
    /// A sooner start for a shallow drop: this many low samples in a row start a recovery if
    /// none of them fell more than the gap below the ratio before the drop. A scan of one-hit
    /// keys as long as one to two samples leaves a sample at least half made of it, so about
    /// half the ratio or less; a moved hot set lowers the ratio less, since its keys are read
    /// again as soon as they are in (see [`Shallow`]).
    pub shallow: Option<Shallow>,
}

/// See [`Tuning::shallow`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shallow {
    /// Low samples in a row that start a recovery when none of them was deep (fewer than
    /// [`Tuning::persist`]).
    pub persist: u32,
    /// A sample more than this below the ratio before the drop is deep.
    pub deep: Gap,
}

/// Where the samples stand (see the module docs).
#[derive(Debug)]
pub(crate) struct RatioWatch {
    tuning: Tuning,
    /// The read and miss counters at the start of the current sample.
    at: (u64, u64),
    /// The last counted sample's hit ratio.
    last: Option<f64>,
    /// The ratio before a drop, how many samples in a row have stayed below it, and whether one
    /// of them was deep ([`Shallow::deep`]).
    dropped_from: Option<f64>,
    low: u32,
    deep: bool,
    /// The ratio a recovery aims back at (`None`: not recovering).
    target: Option<f64>,
}

/// One sample's reads and misses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sample {
    pub reads: u64,
    pub misses: u64,
}

impl Sample {
    /// The sample's hit ratio.
    #[inline]
    pub fn ratio(self) -> f64 {
        1.0 - self.misses as f64 / self.reads as f64
    }
}

impl RatioWatch {
    pub fn new(tuning: Tuning) -> Self {
        RatioWatch {
            tuning,
            at: (0, 0),
            last: None,
            dropped_from: None,
            low: 0,
            deep: false,
            target: None,
        }
    }

    /// Reads per sample.
    #[cfg(test)]
    pub fn sample_reads(&self) -> u64 {
        self.tuning.sample
    }

    /// Takes the cumulative `reads` and `misses`; the sample they complete, if they do. Counters
    /// that went back (a stats reset) start the watch over.
    pub fn sample(&mut self, reads: u64, misses: u64) -> Option<Sample> {
        if reads < self.at.0 || misses < self.at.1 {
            *self = RatioWatch::new(self.tuning);
            return None;
        }
        let read = reads - self.at.0;
        if read < self.tuning.sample {
            return None;
        }
        let missed = (misses - self.at.1).min(read);
        self.at = (reads, misses);
        Some(Sample {
            reads: read,
            misses: missed,
        })
    }

    /// Moves on by one counted sample of hit ratio `ratio`; true while recovering.
    pub fn step(&mut self, ratio: f64) -> bool {
        self.target = match self.target {
            Some(target) if self.tuning.back.below(ratio, target) => {
                Some(self.settle(target, ratio))
            }
            Some(_) => None,
            None => self.drop_lasted(ratio),
        };
        self.last = Some(ratio);
        self.recovering()
    }

    /// True while the ratio recovers from a lasting drop.
    pub fn recovering(&self) -> bool {
        self.target.is_some()
    }

    fn settle(&self, target: f64, ratio: f64) -> f64 {
        target - (target - ratio) * self.tuning.settle
    }

    /// Counts `ratio` toward a lasting drop; the target of the recovery if it starts now.
    fn drop_lasted(&mut self, ratio: f64) -> Option<f64> {
        let before = self.dropped_from.or(self.last)?;
        if !self.tuning.drop.below(ratio, before) {
            (self.dropped_from, self.low, self.deep) = (None, 0, false);
            return None;
        }
        (self.dropped_from, self.low) = (Some(before), self.low + 1);
        let shallow = self.tuning.shallow.filter(|s| {
            self.deep |= s.deep.below(ratio, before);
            !self.deep && self.low >= s.persist
        });
        if self.low < self.tuning.persist && shallow.is_none() {
            return None;
        }
        (self.dropped_from, self.low, self.deep) = (None, 0, false);
        Some(match self.tuning.settle_at_start {
            true => self.settle(before, ratio),
            false => before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNING: Tuning = Tuning {
        sample: 1_000,
        drop: Gap::Points(0.05),
        persist: 3,
        settle: 0.25,
        back: Gap::Points(0.02),
        settle_at_start: false,
        shallow: None,
    };

    /// Feeds `watch` one sample per ratio (read through its counters); whether it recovers
    /// after each.
    fn feed(watch: &mut RatioWatch, total: &mut (u64, u64), ratios: &[f64]) -> Vec<bool> {
        let each = watch.sample_reads();
        let mut step = |&ratio: &f64| {
            total.0 += each;
            total.1 += ((1.0 - ratio) * each as f64).round() as u64;
            let sample = watch.sample(total.0, total.1).expect("a whole sample");
            watch.step(sample.ratio())
        };
        ratios.iter().map(&mut step).collect()
    }

    #[test]
    fn a_drop_that_lasts_starts_a_recovery_that_ends_near_the_target() {
        let mut watch = RatioWatch::new(TUNING);
        let mut total = (0, 0);
        let ratios = [0.8, 0.8, 0.5, 0.6, 0.7, 0.75, 0.79, 0.8];
        // Low three times (0.5, 0.6, 0.7): recovering from the third, aiming at 0.8; 0.75
        // settles the target to 0.7875; 0.79 is within 0.02 of it: back.
        let recovering = feed(&mut watch, &mut total, &ratios);
        let expected = [false, false, false, false, true, true, false, false];
        assert_eq!(recovering, expected);
    }

    #[test]
    fn settling_at_the_start_moves_the_target_on_the_first_recovering_sample() {
        let tuning = Tuning {
            settle_at_start: true,
            ..TUNING
        };
        let mut watch = RatioWatch::new(tuning);
        let mut total = (0, 0);
        feed(&mut watch, &mut total, &[0.8, 0.5, 0.5, 0.5]);
        let target = watch.target.expect("recovering");
        assert!((target - 0.725).abs() < 1e-9, "0.8 - 0.3 / 4, not {target}");
        let mut plain = RatioWatch::new(TUNING);
        feed(&mut plain, &mut (0, 0), &[0.8, 0.5, 0.5, 0.5]);
        assert_eq!(plain.target, Some(0.8));
    }

    #[test]
    fn a_short_dip_or_a_small_one_starts_nothing() {
        let mut watch = RatioWatch::new(TUNING);
        let ratios = [0.8, 0.1, 0.3, 0.8, 0.76, 0.76, 0.76, 0.76, 0.5, 0.8];
        assert_eq!(feed(&mut watch, &mut (0, 0), &ratios), [false; 10]);
    }

    #[test]
    fn a_share_gap_scales_with_the_ratio() {
        let tuning = Tuning {
            drop: Gap::Share(0.1),
            ..TUNING
        };
        // 0.2 -> 0.17 is 15 % down (low); 0.2 -> 0.185 is 7.5 % (not).
        let mut watch = RatioWatch::new(tuning);
        assert_eq!(
            feed(&mut watch, &mut (0, 0), &[0.2, 0.17, 0.17, 0.17]),
            [false, false, false, true]
        );
        let mut watch = RatioWatch::new(tuning);
        assert_eq!(
            feed(&mut watch, &mut (0, 0), &[0.2, 0.185, 0.185, 0.185]),
            [false; 4]
        );
    }

    #[test]
    fn a_shallow_drop_starts_sooner_unless_one_of_its_samples_was_deep() {
        let tuning = Tuning {
            shallow: Some(Shallow {
                persist: 2,
                deep: Gap::Points(0.3),
            }),
            ..TUNING
        };
        let run = |ratios: &[f64]| feed(&mut RatioWatch::new(tuning), &mut (0, 0), ratios);
        // 0.6 is low (more than 0.05 below 0.8) but not deep: the second one starts it.
        assert_eq!(run(&[0.8, 0.6, 0.6]), [false, false, true]);
        // A deep sample (0.45, as a scan gives), first or second: `persist` (3) samples.
        assert_eq!(run(&[0.8, 0.45, 0.6, 0.6]), [false, false, false, true]);
        assert_eq!(run(&[0.8, 0.6, 0.45, 0.6]), [false, false, false, true]);
        // A deep dip that ends resets the count: the next shallow drop starts after two.
        let after_dip = run(&[0.8, 0.4, 0.8, 0.6, 0.6]);
        assert_eq!(after_dip, [false, false, false, false, true]);
        // Without `shallow` (the bounded MemoryStore's lean), two are not enough.
        let plain = feed(&mut RatioWatch::new(TUNING), &mut (0, 0), &[0.8, 0.6, 0.6]);
        assert_eq!(plain, [false; 3]);
    }

    #[test]
    fn a_ratio_lower_for_good_ends_the_recovery() {
        let mut watch = RatioWatch::new(TUNING);
        let mut ratios = vec![0.8];
        ratios.extend([0.5; 40]);
        let recovering = feed(&mut watch, &mut (0, 0), &ratios);
        assert!(recovering[3], "recovering after three low samples");
        assert!(!recovering[40], "the target settled to the lower ratio");
    }

    #[test]
    fn a_sample_ends_once_it_holds_enough_reads() {
        let mut watch = RatioWatch::new(TUNING);
        assert_eq!(watch.sample(999, 500), None);
        let whole = Sample {
            reads: 1_200,
            misses: 300,
        };
        assert_eq!(watch.sample(1_200, 300), Some(whole));
        assert_eq!(watch.sample(2_100, 400), None, "900 reads into the next");
    }

    #[test]
    fn counters_that_went_back_start_the_watch_over() {
        let mut watch = RatioWatch::new(TUNING);
        let mut total = (0, 0);
        feed(&mut watch, &mut total, &[0.8, 0.5, 0.5]);
        assert_eq!(watch.sample(10, 10), None, "a stats reset");
        assert_eq!((watch.at, watch.low, watch.last), ((0, 0), 0, None));
        let sample = watch
            .sample(1_010, 210)
            .expect("a sample from the reset on");
        assert!(
            !watch.step(sample.ratio()),
            "the drop before the reset does not count"
        );
    }
}
