//! The background sweeper: one thread per store, parked until the earliest deadline.
//!
//! Writers lower `next_wake` only when they schedule a deadline earlier than it, and unpark the
//! thread only if it is asleep (`sleeping`), so a steady stream of writes costs one relaxed load
//! each and never a syscall. The sweeper resets `next_wake` to "none" *before* it scans the
//! shards, so a deadline added during a scan is either seen by the scan or left in `next_wake`
//! by its writer; after the scan it announces `sleeping` and then re-reads `next_wake`, and a
//! writer lowers `next_wake` before it reads `sleeping` (both sequentially consistent), so either
//! the sweeper sees the new deadline or the writer sees it asleep and wakes it. Nothing is lost.

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
        inner.next_wake.fetch_min(deadline, Ordering::SeqCst);
        let thread = inner.sweeper.get_or_init(|| self.start_sweeper());
        if let Some(thread) = thread {
            if inner.sleeping.load(Ordering::SeqCst) {
                thread.unpark();
            }
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

    /// One round: purge what is due, then announce sleep and work out until when (`None`:
    /// nothing scheduled).
    fn sweep_once(&self) -> Option<u64> {
        let inner = &self.inner;
        inner.sleeping.store(false, Ordering::SeqCst);
        inner.next_wake.store(u64::MAX, Ordering::SeqCst);
        self.purge_expired();
        if let Some(next) = self.next_deadline() {
            inner.next_wake.fetch_min(next, Ordering::SeqCst);
        }
        inner.sleeping.store(true, Ordering::SeqCst);
        let target = inner.next_wake.load(Ordering::SeqCst);
        (target != u64::MAX).then_some(target)
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
        let target = store.sweep_once();
        let clock = store.inner.clock.clone();
        drop(store);
        match target.and_then(|t| clock.sleep_hint(t)) {
            Some(nap) if nap.is_zero() => {}
            Some(nap) => std::thread::park_timeout(nap.min(MAX_NAP)),
            None if clock.is_manual() => std::thread::park(),
            None => std::thread::park_timeout(MAX_NAP),
        }
    }
}
