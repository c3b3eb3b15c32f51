//! The lock around one shard: a reader-writer lock whose readers do not share a cache line.
//!
//! A `get` on a read-mostly store spends most of its time on one thing when two cores read the
//! same shards: the lock word. Every reader of an ordinary reader-writer lock (`parking_lot`'s,
//! `std`'s) adds itself to one counter with an atomic read-modify-write, so the counter's cache
//! line moves to each reading core in turn; two threads reading one store at 95/5 ran at half
//! the rate of two threads reading a store each. Here each thread counts itself in one of
//! [`SLOTS`] reader counters, each on cache lines of its own, picked once per thread: readers on
//! different cores write different lines, and a read costs the same two atomic operations as
//! before, on a line that stays in the reader's cache.
//!
//! A writer pays for that: it takes the writer mutex, raises the `writing` flag, and waits for
//! every slot to drain (it reads each slot's line). This is the distributed reader-writer lock
//! of Linux's `percpu-rwsem` and of Hsieh and Weihl (1992), with one flag for all slots.
//!
//! # Why it is sound
//!
//! A reader adds itself to its slot, then reads `writing`; a writer sets `writing`, then reads
//! the slots. All four are sequentially consistent, so at least one side sees the other: the
//! reader sees the flag (it leaves its slot and waits on the writer mutex) or the writer sees
//! the reader (it waits until the slot drains). A reader leaves its slot with a release and the
//! writer waits with acquire loads, so a write follows every read it waited for; a writer lowers
//! the flag with a release after its write, and a reader reads the flag with a sequentially
//! consistent (so acquiring) load, so a read that sees the flag down sees the write.

use std::{
    cell::Cell,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use lock_api::{GuardNoSend, RawMutex as _, RawRwLock};

/// Reader counters per lock. Threads are spread over them round-robin in the order they first
/// read; more threads than slots share (correct, and as costly as one shared counter).
pub(crate) const SLOTS: usize = 4;

/// A counter on its own pair of cache lines (x86 prefetches lines in pairs).
#[repr(align(128))]
struct Slot(AtomicUsize);

/// The raw lock: [`SLOTS`] reader counters, a flag that a writer wants in or is in, and the
/// mutex writers queue on (and readers wait on while the flag is up).
#[repr(align(128))]
pub(crate) struct RawShardLock {
    writer: parking_lot::RawMutex,
    writing: AtomicBool,
    slots: [Slot; SLOTS],
    /// How often a reader found a writer in and waited (tests wait for it to be sure a
    /// reader is blocked, not merely late).
    #[cfg(test)]
    reader_waits: AtomicUsize,
    /// How often a writer found a reader in and waited.
    #[cfg(test)]
    writer_waits: AtomicUsize,
}

/// A shard's lock.
pub(crate) type ShardLock<T> = lock_api::RwLock<RawShardLock, T>;

thread_local! {
    /// This thread's slot, or `usize::MAX` before its first read. No destructor, so readable
    /// while the thread is torn down.
    static THREAD_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's reader slot: the same on every call (a read guard is released on the thread
/// that took it, `GuardNoSend`, so unlocking finds the slot locking used).
#[inline]
fn thread_slot() -> usize {
    let slot = THREAD_SLOT.with(Cell::get);
    if slot < SLOTS {
        slot
    } else {
        assign_slot()
    }
}

#[cold]
fn assign_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    THREAD_SLOT.with(|s| s.set(slot));
    slot
}

impl RawShardLock {
    /// Waits while a writer holds or wants the lock: on the writer mutex, so the thread parks.
    #[cold]
    fn wait_for_writer(&self) {
        #[cfg(test)]
        self.reader_waits.fetch_add(1, Ordering::SeqCst);
        self.writer.lock();
        // SAFETY: this thread locked `writer` on the line above.
        unsafe { self.writer.unlock() };
    }

    /// With `writing` raised, waits until no reader is left in any slot. Out of line: a writer
    /// that finds every slot empty (the common case) does not get here.
    #[cold]
    fn drain_readers(&self) {
        for slot in &self.slots {
            let mut spins = 0u32;
            while slot.0.load(Ordering::SeqCst) != 0 {
                #[cfg(test)]
                self.writer_waits.fetch_add(1, Ordering::SeqCst);
                backoff(&mut spins);
            }
        }
    }

    /// True if some slot holds a reader: every slot read, without a branch per slot.
    #[inline]
    fn any_reader(&self) -> bool {
        let readers = self
            .slots
            .iter()
            .fold(0, |n, s| n | s.0.load(Ordering::SeqCst));
        readers != 0
    }
}

/// Spins a little longer each time, then yields the CPU (a reader holds the lock for a table
/// lookup; it is late only if it was preempted).
#[inline]
fn backoff(spins: &mut u32) {
    if *spins < 6 {
        for _ in 0..1u32 << *spins {
            std::hint::spin_loop();
        }
        *spins += 1;
    } else {
        std::thread::yield_now();
    }
}

// SAFETY: exclusive access excludes every other access, and shared access excludes exclusive
// access (see the module docs): a writer holds `writer` (so one writer at a time) and enters
// only once every slot is empty after it raised `writing`; a reader enters only while `writing`
// is down after it counted itself in its slot.
unsafe impl RawRwLock for RawShardLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawShardLock {
        writer: parking_lot::RawMutex::INIT,
        writing: AtomicBool::new(false),
        slots: [const { Slot(AtomicUsize::new(0)) }; SLOTS],
        #[cfg(test)]
        reader_waits: AtomicUsize::new(0),
        #[cfg(test)]
        writer_waits: AtomicUsize::new(0),
    };

    type GuardMarker = GuardNoSend;

    #[inline]
    fn lock_shared(&self) {
        let slot = &self.slots[thread_slot()].0;
        loop {
            slot.fetch_add(1, Ordering::SeqCst);
            if !self.writing.load(Ordering::SeqCst) {
                return;
            }
            slot.fetch_sub(1, Ordering::Release);
            self.wait_for_writer();
        }
    }

    #[inline]
    fn try_lock_shared(&self) -> bool {
        let slot = &self.slots[thread_slot()].0;
        slot.fetch_add(1, Ordering::SeqCst);
        if !self.writing.load(Ordering::SeqCst) {
            return true;
        }
        slot.fetch_sub(1, Ordering::Release);
        false
    }

    #[inline]
    unsafe fn unlock_shared(&self) {
        self.slots[thread_slot()].0.fetch_sub(1, Ordering::Release);
    }

    #[inline]
    fn lock_exclusive(&self) {
        self.writer.lock();
        self.writing.store(true, Ordering::SeqCst);
        if self.any_reader() {
            self.drain_readers();
        }
    }

    fn try_lock_exclusive(&self) -> bool {
        if !self.writer.try_lock() {
            return false;
        }
        self.writing.store(true, Ordering::SeqCst);
        if self.any_reader() {
            self.writing.store(false, Ordering::Release);
            // SAFETY: locked by the `try_lock` above.
            unsafe { self.writer.unlock() };
            return false;
        }
        true
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        self.writing.store(false, Ordering::Release);
        // SAFETY: the caller holds the exclusive lock, so this thread locked `writer`.
        unsafe { self.writer.unlock() };
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{mpsc, Barrier},
        thread,
        time::{Duration, Instant},
    };

    use super::*;

    /// Puts this thread's reads in `slot`.
    fn use_slot(slot: usize) {
        THREAD_SLOT.with(|s| s.set(slot));
    }

    fn raw<T>(lock: &ShardLock<T>) -> &RawShardLock {
        // SAFETY: only the test counters are read through it; it never locks or unlocks.
        unsafe { lock.raw() }
    }

    /// Waits (yielding) until `done` holds, for up to 20 s; true if it came to hold.
    fn waited_until(done: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        while !done() {
            if Instant::now() > end {
                return false;
            }
            thread::yield_now();
        }
        true
    }

    #[test]
    fn readers_in_any_slots_share_the_lock() {
        let lock = ShardLock::new(5u32);
        for (a, b) in [(0, 0), (0, 1), (3, 2)] {
            use_slot(a);
            let first = lock.read();
            thread::scope(|s| {
                s.spawn(|| {
                    use_slot(b);
                    assert_eq!(lock.try_read().as_deref(), Some(&5));
                });
            });
            drop(first);
        }
    }

    /// A writer checks every slot, not only its own: a reader in any other slot keeps it out.
    #[test]
    fn a_reader_in_any_slot_keeps_a_writer_out() {
        let lock = ShardLock::new(0u32);
        for reader in 0..SLOTS {
            let (held, release) = (Barrier::new(2), Barrier::new(2));
            thread::scope(|s| {
                s.spawn(|| {
                    use_slot(reader);
                    let guard = lock.read();
                    held.wait();
                    release.wait();
                    drop(guard);
                });
                held.wait();
                use_slot((reader + 1) % SLOTS);
                assert!(
                    lock.try_write().is_none(),
                    "a reader in slot {reader} let a writer in"
                );
                assert!(lock.try_read().is_some());
                release.wait();
            });
            assert!(lock.try_write().is_some());
        }
    }

    #[test]
    fn a_writer_keeps_every_reader_out() {
        let lock = ShardLock::new(0u32);
        let guard = lock.write();
        for slot in 0..SLOTS {
            thread::scope(|s| {
                s.spawn(|| {
                    use_slot(slot);
                    assert!(lock.try_read().is_none(), "slot {slot} read under a writer");
                });
            });
        }
        use_slot(1);
        assert!(lock.try_write().is_none());
        drop(guard);
        assert!(lock.try_read().is_some());
    }

    /// A writer that finds a reader in waits for it (the reader, still in, sees the old value)
    /// and then writes.
    #[test]
    fn a_writer_waits_until_the_reader_leaves() {
        let lock = ShardLock::new(0u32);
        let (held, release) = (Barrier::new(2), Barrier::new(2));
        thread::scope(|s| {
            s.spawn(|| {
                use_slot(2);
                let guard = lock.read();
                held.wait();
                release.wait();
                assert_eq!(*guard, 0, "a writer got in while a reader was in");
            });
            held.wait();
            let writer = s.spawn(|| {
                use_slot(0);
                *lock.write() = 1;
            });
            let waited = waited_until(|| raw(&lock).writer_waits.load(Ordering::SeqCst) > 0);
            release.wait();
            writer.join().expect("writer");
            assert!(waited, "the writer never waited for the reader");
        });
        assert_eq!(*lock.read(), 1);
    }

    /// A reader that finds a writer in waits for it and then sees its write.
    #[test]
    fn a_reader_waits_for_the_writer_and_sees_its_write() {
        let lock = ShardLock::new(0u32);
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            use_slot(0);
            let mut guard = lock.write();
            s.spawn(|| {
                use_slot(3);
                tx.send(*lock.read()).expect("send");
            });
            let waited = waited_until(|| raw(&lock).reader_waits.load(Ordering::SeqCst) > 0);
            *guard = 7;
            drop(guard);
            assert!(waited, "the reader never waited for the writer");
        });
        assert_eq!(rx.recv().ok(), Some(7));
    }

    /// Readers never see a write half done, with threads in every slot and two sharing one.
    #[test]
    fn readers_never_see_a_half_done_write() {
        let rounds = if cfg!(miri) { 50 } else { 20_000 };
        let lock = ShardLock::new((0u64, 0u64));
        thread::scope(|s| {
            for t in 0..SLOTS + 1 {
                let lock = &lock;
                s.spawn(move || {
                    use_slot(t % SLOTS);
                    for i in 0..rounds {
                        if i % 8 == t % 8 {
                            let mut pair = lock.write();
                            pair.0 += 1;
                            std::hint::black_box(&mut *pair);
                            pair.1 += 1;
                        } else {
                            let pair = lock.read();
                            assert_eq!(pair.0, pair.1, "a read saw a write half done");
                        }
                    }
                });
            }
        });
        let writes = (0..SLOTS + 1)
            .map(|t| (0..rounds).filter(|i| i % 8 == t % 8).count() as u64)
            .sum::<u64>();
        assert_eq!(*lock.read(), (writes, writes));
    }
}
