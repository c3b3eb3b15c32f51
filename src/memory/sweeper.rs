//! The background sweeper: one thread per store, parked until the earliest deadline.
//!
//! Writers lower `next_wake` (and unpark the thread) only when they schedule a deadline earlier
//! than the one the sweeper sleeps for. The sweeper resets `next_wake` to "none" *before* it
//! scans the shards, so a deadline added during a scan is either seen by the scan or seen by its
//! writer as earlier than `next_wake`, and never lost.

use std::{
    hash::{BuildHasher, Hash},
    sync::{atomic::Ordering, Weak},
    thread::Thread,
    time::Duration,
};

use super::store::{Inner, MemoryStore};

/// The longest the sweeper sleeps without checking, as a safety net.
const MAX_NAP: Duration = Duration::from_secs(5);

impl<K, V, S> MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Makes sure the sweeper wakes by `deadline` (0 = no deadline: nothing to do).
    #[inline]
    pub(super) fn wake_sweeper_for(&self, deadline: u64) {
        let inner = &self.inner;
        if deadline == 0 || deadline >= inner.next_wake.load(Ordering::Acquire) {
            return;
        }
        inner.next_wake.fetch_min(deadline, Ordering::AcqRel);
        if let Some(thread) = inner.sweeper.get_or_init(|| self.start_sweeper()) {
            thread.unpark();
        }
    }

    fn start_sweeper(&self) -> Option<Thread> {
        let weak = self.inner.me.clone();
        let spawned = std::thread::Builder::new()
            .name("strata-sweeper".into())
            .spawn(move || sweep_loop(weak));
        match spawned {
            Ok(handle) => {
                let thread = handle.thread().clone();
                let waker = thread.clone();
                let alive = self.inner.me.clone();
                self.inner.clock.on_advance(move || {
                    waker.unpark();
                    alive.strong_count() > 0
                });
                Some(thread)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not start the strata sweeper thread; expired entries are hidden on read but freed only on write");
                None
            }
        }
    }

    /// One round: purge what is due, then work out how long to sleep.
    fn sweep_once(&self) -> Option<Duration> {
        self.inner.next_wake.store(u64::MAX, Ordering::Release);
        self.purge_expired();
        let next = self.next_deadline()?;
        self.inner.next_wake.fetch_min(next, Ordering::AcqRel);
        self.inner.clock.sleep_hint(next)
    }
}

fn sweep_loop<K, V, S>(weak: Weak<Inner<K, V, S>>)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let store = MemoryStore { inner };
        let nap = store.sweep_once();
        let manual = store.inner.clock.is_manual();
        drop(store);
        match nap {
            Some(nap) => std::thread::park_timeout(nap.min(MAX_NAP)),
            None if manual => std::thread::park(),
            None => std::thread::park_timeout(MAX_NAP),
        }
    }
}
