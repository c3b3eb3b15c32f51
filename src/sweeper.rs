//! The background sweeper's schedule, shared by every store that sweeps expired entries on a
//! thread of its own (`MemoryStore`, the disk store's compact tier): one thread per store,
//! started by the first write with a deadline, parked until the earliest deadline, and stopped
//! when the store is dropped (it holds only a weak reference; the drop unparks it).
//!
//! # The wake-up protocol
//!
//! Writers lower `next_wake` only when they schedule a deadline earlier than it, and unpark the
//! thread only while it is asleep (`sleeping`), so a steady stream of writes costs one relaxed
//! load each and never a syscall. A round resets `next_wake` to "none" *before* it scans, so a
//! deadline added during the scan is either seen by the scan or left in `next_wake` by its
//! writer; after the scan the sweeper announces `sleeping` and then re-reads `next_wake`, and a
//! writer lowers `next_wake` before it reads `sleeping` (both sequentially consistent), so
//! either the sweeper sees the new deadline or the writer sees it asleep and wakes it. Nothing
//! is lost. `tests::a_deadline_written_during_a_round_is_not_lost` and
//! `tests::a_deadline_written_after_the_round_wakes_the_sleeper` force both interleavings.
//!
//! A store may ask for a rest after a round (the compact tier scans whole shards, so it rests
//! in proportion to what it scanned); the thread then sleeps until the later of the next
//! deadline and the rest's end. Rests and sleeps are counted on the store's [`Clock`], so a
//! `ManualClock` drives the sweeper in tests (its `advance` wakes the thread).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock, Weak,
    },
    thread::Thread,
    time::Duration,
};

use crate::time::Clock;

/// The longest the sweeper sleeps without checking, as a safety net.
const MAX_NAP: Duration = Duration::from_secs(5);

/// What a round found.
pub(crate) struct Round {
    /// The earliest deadline the store still holds, if any.
    pub next: Option<u64>,
    /// How long to rest before the next round, in ms (0: none).
    pub rest_ms: u64,
}

/// A store the sweeper thread works for.
pub(crate) trait Swept: Send + Sync + Sized + 'static {
    /// The store's schedule.
    fn schedule(&self) -> &Schedule;
    /// The store's clock.
    fn clock(&self) -> &Clock;
    /// One round at `now`: removes what is due and says what is left.
    fn sweep(this: &Arc<Self>, now: u64) -> Round;
}

/// When the sweeper must wake next, and whether it sleeps (see the module docs).
pub(crate) struct Schedule {
    /// The earliest deadline the sweeper will wake for (`u64::MAX`: none).
    next_wake: AtomicU64,
    /// True while the sweeper is (about to be) parked; writers unpark it only then.
    sleeping: AtomicBool,
    /// The sweeper thread, once started (`None`: it could not be spawned).
    thread: OnceLock<Option<Thread>>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            next_wake: AtomicU64::new(u64::MAX),
            sleeping: AtomicBool::new(true),
            thread: OnceLock::new(),
        }
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        // The store is gone: woken, the sweeper finds its weak reference dead and stops.
        if let Some(Some(thread)) = self.thread.get() {
            thread.unpark();
        }
    }
}

impl Schedule {
    /// Makes sure the sweeper wakes by `deadline` (0 = no deadline: nothing to do), starting
    /// it with `start` if it is not running yet.
    #[inline]
    pub fn wake_for(&self, deadline: u64, start: impl FnOnce() -> Option<Thread>) {
        if deadline == 0 || deadline >= self.next_wake.load(Ordering::Acquire) {
            return;
        }
        self.next_wake.fetch_min(deadline, Ordering::SeqCst);
        if let Some(thread) = self.thread.get_or_init(start) {
            if self.sleeping.load(Ordering::SeqCst) {
                thread.unpark();
            }
        }
    }

    /// Starts a round: awake, nothing scheduled yet.
    fn begin_round(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        self.next_wake.store(u64::MAX, Ordering::SeqCst);
    }

    /// Ends a round that found `next` as the earliest deadline left.
    fn end_round(&self, next: Option<u64>) {
        if let Some(next) = next {
            self.next_wake.fetch_min(next, Ordering::SeqCst);
        }
    }

    /// Announces sleep, then reads until when (`None`: nothing scheduled).
    fn announce_sleep(&self) -> Option<u64> {
        self.sleeping.store(true, Ordering::SeqCst);
        let target = self.next_wake.load(Ordering::SeqCst);
        (target != u64::MAX).then_some(target)
    }
}

/// Spawns the sweeper thread for `owner` (the store's weak self-reference); `what` names the
/// store in the warning logged if the thread cannot be spawned.
pub(crate) fn start<T: Swept>(owner: Weak<T>, clock: &Clock, what: &str) -> Option<Thread> {
    let alive = owner.clone();
    let spawned = std::thread::Builder::new()
        .name("strata-sweeper".into())
        .spawn(move || sweep_loop(owner));
    match spawned {
        Ok(handle) => {
            let thread = handle.thread().clone();
            let waker = thread.clone();
            clock.on_advance(move || {
                waker.unpark();
                alive.strong_count() > 0
            });
            Some(thread)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not start the strata sweeper thread; expired entries of the {what} are hidden on read but freed only on write");
            None
        }
    }
}

fn sweep_loop<T: Swept>(owner: Weak<T>) {
    // The earliest time of the next round: the end of the last one's rest (0: no rest).
    let mut not_before = 0;
    loop {
        let Some(store) = owner.upgrade() else { return };
        let clock = store.clock().clone();
        let now = clock.now_ms();
        let schedule = store.schedule();
        if now >= not_before {
            schedule.begin_round();
            let round = T::sweep(&store, now);
            schedule.end_round(round.next);
            not_before = match round.rest_ms {
                0 => 0,
                rest => now.saturating_add(rest),
            };
        }
        let target = schedule.announce_sleep().map(|t| t.max(not_before));
        drop(store);
        match target.and_then(|t| clock.sleep_hint(t)) {
            Some(nap) if nap.is_zero() => {}
            Some(nap) => std::thread::park_timeout(nap.min(MAX_NAP)),
            None if clock.is_manual() => std::thread::park(),
            None => std::thread::park_timeout(MAX_NAP),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Barrier};

    use super::*;

    /// A writer that runs between a round's start and its announcement of sleep (the round's
    /// scan missed its entry) leaves its deadline for the sweeper to find.
    #[test]
    fn a_deadline_written_during_a_round_is_not_lost() {
        let schedule = Arc::new(Schedule::default());
        let barrier = Arc::new(Barrier::new(2));
        let sweeper = {
            let (schedule, barrier) = (schedule.clone(), barrier.clone());
            std::thread::spawn(move || {
                schedule.begin_round();
                barrier.wait(); // the scan runs: the writer writes now
                barrier.wait(); // the scan ends, without the writer's entry
                schedule.end_round(Some(5_000));
                schedule.announce_sleep()
            })
        };
        barrier.wait();
        schedule.wake_for(1_000, || None);
        barrier.wait();
        let target = sweeper.join().map_err(|_| "the sweeper panicked");
        assert_eq!(
            target,
            Ok(Some(1_000)),
            "the sweeper wakes for the new deadline"
        );
    }

    /// A writer that runs after the sweeper announced sleep finds it asleep and unparks it.
    #[test]
    fn a_deadline_written_after_the_round_wakes_the_sleeper() {
        let schedule = Arc::new(Schedule::default());
        let barrier = Arc::new(Barrier::new(2));
        let (woke, woken) = mpsc::channel();
        let sweeper = {
            let (schedule, barrier) = (schedule.clone(), barrier.clone());
            std::thread::spawn(move || {
                schedule.begin_round();
                schedule.end_round(None);
                let target = schedule.announce_sleep();
                barrier.wait(); // asleep, with nothing scheduled: the writer writes now
                barrier.wait();
                // Parks until unparked (an unpark that came first returns at once).
                std::thread::park();
                let _ = woke.send(target);
            })
        };
        let thread = sweeper.thread().clone();
        barrier.wait();
        schedule.wake_for(1_000, || Some(thread));
        barrier.wait();
        // The timeout only bounds a failure: without the unpark the sweeper sleeps for good.
        let target = woken.recv_timeout(Duration::from_secs(30));
        assert_eq!(target, Ok(None), "the writer unparked the sleeping sweeper");
        assert_eq!(schedule.next_wake.load(Ordering::SeqCst), 1_000);
    }

    /// A later deadline than one already scheduled neither moves the schedule nor wakes anyone.
    #[test]
    fn a_later_deadline_changes_nothing() {
        let schedule = Schedule::default();
        schedule.wake_for(1_000, || None);
        schedule.wake_for(2_000, || unreachable!("started once"));
        schedule.wake_for(0, || unreachable!("no deadline"));
        assert_eq!(schedule.next_wake.load(Ordering::SeqCst), 1_000);
    }
}
