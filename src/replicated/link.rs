//! The state a node's reads and writes consult: is the invalidation link up, when was it last
//! known good, and per-key fill guards that keep a slow fill from caching a value an
//! invalidation has already superseded.

use std::{
    hash::BuildHasher,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use crate::time::UnixMillis;

/// Whether the node is connected to the invalidation channel, and since when it is not.
#[derive(Debug, Default)]
pub(crate) struct Link {
    up: AtomicBool,
    /// Last time (clock ms) the link was proven good: a message, a pong, a (re)connect. 0: never.
    last_ok_ms: AtomicU64,
    /// How many times the link went down: a background warm started in one epoch stops when
    /// the link drops again (the next reconnect starts a fresh one).
    epoch: AtomicU64,
}

impl Link {
    /// True while every invalidation sent to this node is being received.
    #[inline]
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The link is good again (after the local tier was flushed).
    pub fn mark_up(&self, now: UnixMillis) {
        self.touch(now);
        self.up.store(true, Ordering::Release);
    }

    /// The link dropped: from now on the local tier is suspect.
    pub fn mark_down(&self) {
        self.up.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Which connection of the link this is: changes every time the link goes down.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// True while the link is up and has not dropped since `epoch` was read.
    pub fn still_up(&self, epoch: u64) -> bool {
        self.is_up() && self.epoch() == epoch
    }

    /// Records proof that the link was good at `now`.
    pub fn touch(&self, now: UnixMillis) {
        self.last_ok_ms.fetch_max(now, Ordering::AcqRel);
    }

    /// True if a local copy may still be served at `now` while the link is down: the link was
    /// last known good less than `stale_for` ago. Always false with `stale_for` zero, or if the
    /// link was never up.
    pub fn stale_ok(&self, now: UnixMillis, stale_for: Duration) -> bool {
        let last = self.last_ok_ms.load(Ordering::Acquire);
        last != 0 && u128::from(now.saturating_sub(last)) < stale_for.as_millis()
    }
}

/// A fill guard: which stripe a key hashes to and the stripe's counter when the operation began.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Guard {
    pub stripe: usize,
    pub token: u64,
}

/// Counters striped by key hash, bumped by every invalidation (and every flush). An operation
/// that reads Redis and then writes the local tier takes a [`Guard`] first and drops its local
/// copy if the counter moved meanwhile: the value it read may already be superseded.
#[derive(Debug)]
pub(crate) struct Stripes {
    counters: Box<[AtomicU64]>,
    hasher: foldhash::fast::FixedState,
}

const STRIPES: usize = 1024;

impl Default for Stripes {
    fn default() -> Self {
        Stripes {
            counters: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x5752_4154_4131),
        }
    }
}

impl Stripes {
    /// A guard for the key whose encoded bytes are `key`.
    pub fn guard(&self, key: &[u8]) -> Guard {
        let stripe = self.hasher.hash_one(key) as usize % STRIPES;
        Guard {
            stripe,
            token: self.counters[stripe].load(Ordering::Acquire),
        }
    }

    /// Bumps the stripe of `key` (an invalidation arrived) and returns the new counter.
    pub fn bump(&self, key: &[u8]) -> u64 {
        self.bump_stripe(self.guard(key).stripe)
    }

    /// Bumps one stripe and returns its new counter.
    pub fn bump_stripe(&self, stripe: usize) -> u64 {
        self.counters[stripe].fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A write on this node, after Redis acknowledged it: bumps `guard`'s stripe *before* the
    /// write touches the local tier, so every fill that began earlier (and may hold the value
    /// this write replaced) fails its check, whenever its local put lands. Returns the guard
    /// the write's own local put is checked against, or `None` if another change of the stripe
    /// came in during the write (then neither value is known to be the last: cache nothing).
    pub fn claim(&self, guard: Guard) -> Option<Guard> {
        let now = self.bump_stripe(guard.stripe);
        (now == guard.token + 1).then_some(Guard {
            stripe: guard.stripe,
            token: now,
        })
    }

    /// Bumps every stripe (the whole local tier is being flushed).
    pub fn bump_all(&self) {
        for c in self.counters.iter() {
            c.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// True if nothing bumped `guard`'s stripe since the guard was taken.
    pub fn unchanged(&self, guard: Guard) -> bool {
        self.counters[guard.stripe].load(Ordering::Acquire) == guard.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_window_counts_from_last_proof() {
        let link = Link::default();
        assert!(!link.stale_ok(1_000, Duration::from_secs(60)), "never up");
        link.mark_up(1_000);
        link.mark_down();
        assert!(link.stale_ok(1_500, Duration::from_secs(1)));
        assert!(!link.stale_ok(2_000, Duration::from_secs(1)));
        assert!(!link.stale_ok(1_000, Duration::ZERO), "zero: never stale");
    }

    #[test]
    fn a_drop_ends_the_epoch_even_if_the_link_is_back() {
        let link = Link::default();
        link.mark_up(1_000);
        let epoch = link.epoch();
        assert!(link.still_up(epoch));
        link.mark_down();
        link.mark_up(2_000);
        assert!(link.is_up() && !link.still_up(epoch));
    }

    #[test]
    fn a_claim_fails_if_the_stripe_moved_during_the_write() {
        let s = Stripes::default();
        let g = s.guard(b"k");
        let claimed = s.claim(g).expect("nothing else moved");
        assert!(!s.unchanged(g), "earlier fills now fail");
        assert!(s.unchanged(claimed));
        let late = s.guard(b"k");
        s.bump(b"k");
        assert!(s.claim(late).is_none());
    }

    #[test]
    fn guards_see_bumps_of_their_stripe() {
        let s = Stripes::default();
        let g = s.guard(b"k");
        assert!(s.unchanged(g));
        s.bump(b"k");
        assert!(!s.unchanged(g));
        let g = s.guard(b"k");
        s.bump_all();
        assert!(!s.unchanged(g));
    }
}
