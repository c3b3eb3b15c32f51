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
//! A reader adds itself to its slot (an acquiring read-modify-write), then reads `writing`
//! (acquire); a writer, holding the writer mutex, raises `writing`, then reads every slot with
//! a read-modify-write that adds nothing (`fetch_or(0)`, acquire and release). Two
//! read-modify-writes of one slot are ordered, and each reads the latest value:
//!
//! - if the reader's add comes first, the writer's read-modify-write sees it (the slot is not
//!   empty) and the writer waits until the slot drains;
//! - if the writer's comes first, the reader's add reads from it, so the writer's raising of the
//!   flag happens before the reader reads the flag: the reader sees it up (or lowered again by
//!   that writer's unlock, after its write), leaves its slot and waits on the writer mutex.
//!
//! So the proof needs acquire/release and the single order of each slot's read-modify-writes,
//! not sequential consistency (a writer that read the slots with plain loads would need it:
//! `loom` checks sequentially consistent loads and stores only as acquire/release, and the
//! store-buffer reordering x86 does allow would let both in). A reader leaves its slot with a
//! release and a writer reads the slots with acquire, so a write follows every read it waited
//! for; a writer lowers the flag with a release after its write, and a reader that reads the
//! flag down (acquire) sees the write.
//!
//! `cargo test` checks it with threads (below); `loom` checks every interleaving of small
//! models (`RUSTFLAGS="--cfg strata_loom" cargo test --lib --release memory::lock`, see
//! `src/consistency.md`), with the writer mutex modelled by `loom`'s mutex and condition
//! variable and this module's atomics by `loom`'s. Under `--cfg strata_loom` the rest of the
//! crate uses `parking_lot`'s lock, whose `INIT` constant `loom`'s atomics cannot build. (The
//! cfg is not the usual `loom`: under `--cfg loom` tokio leaves out `tokio::net`, which a
//! dev-dependency needs, so `cargo test` could not build.)

#[cfg(not(strata_loom))]
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(not(strata_loom))]
use lock_api::{GuardNoSend, RawMutex as _, RawRwLock};
#[cfg(strata_loom)]
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Reader counters per lock. Threads are spread over them round-robin in the order they first
/// read; more threads than slots share (correct, and as costly as one shared counter).
pub(crate) const SLOTS: usize = 4;

/// A counter on its own pair of cache lines (x86 prefetches lines in pairs).
#[repr(align(128))]
struct Slot(AtomicUsize);

/// The mutex writers queue on.
#[cfg(not(strata_loom))]
type WriterMutex = parking_lot::RawMutex;

/// The raw lock: [`SLOTS`] reader counters, a flag that a writer wants in or is in, and the
/// mutex writers queue on (and readers wait on while the flag is up).
#[repr(align(128))]
#[cfg_attr(strata_loom, allow(dead_code))] // under loom only the models use it
pub(crate) struct RawShardLock {
    writer: WriterMutex,
    writing: AtomicBool,
    slots: [Slot; SLOTS],
    /// How often a reader found a writer in and waited (tests wait for it to be sure a
    /// reader is blocked, not merely late).
    #[cfg(test)]
    reader_waits: std::sync::atomic::AtomicUsize,
    /// How often a writer found a reader in and waited.
    #[cfg(test)]
    writer_waits: std::sync::atomic::AtomicUsize,
}

/// A shard's lock.
#[cfg(not(strata_loom))]
pub(crate) type ShardLock<T> = lock_api::RwLock<RawShardLock, T>;
/// Under `--cfg strata_loom` the crate runs on `parking_lot`'s lock; the models check the raw lock.
#[cfg(strata_loom)]
pub(crate) type ShardLock<T> = parking_lot::RwLock<T>;

#[cfg(not(strata_loom))]
thread_local! {
    /// This thread's slot, or `usize::MAX` before its first read. No destructor, so readable
    /// while the thread is torn down.
    static THREAD_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}
#[cfg(strata_loom)]
loom::thread_local! {
    static THREAD_SLOT: std::cell::Cell<usize> = std::cell::Cell::new(usize::MAX);
}

/// This thread's reader slot: the same on every call (a read guard is released on the thread
/// that took it, `GuardNoSend`, so unlocking finds the slot locking used).
#[inline]
fn thread_slot() -> usize {
    let slot = THREAD_SLOT.with(std::cell::Cell::get);
    if slot < SLOTS {
        slot
    } else {
        assign_slot()
    }
}

#[cold]
fn assign_slot() -> usize {
    // Which slot a thread gets is not part of the protocol: a plain counter, also under loom.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let slot = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SLOTS;
    THREAD_SLOT.with(|s| s.set(slot));
    slot
}

#[cfg_attr(strata_loom, allow(dead_code))]
impl RawShardLock {
    /// Waits while a writer holds or wants the lock: on the writer mutex, so the thread parks.
    #[cold]
    fn wait_for_writer(&self) {
        #[cfg(test)]
        self.reader_waits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.writer.lock();
        // SAFETY: this thread locked `writer` on the line above.
        unsafe { self.writer.unlock() };
    }

    /// With `writing` raised, waits until no reader is left in any slot. Out of line: a writer
    /// that finds every slot empty (the common case) does not get here. A slot once read by
    /// the writer's read-modify-write in `any_reader` can be polled with loads: a later load
    /// never reads an older value, so the 0 it ends on is a reader's release.
    #[cold]
    fn drain_readers(&self) {
        for slot in &self.slots {
            let mut spins = 0u32;
            while slot.0.load(Ordering::Acquire) != 0 {
                #[cfg(test)]
                self.writer_waits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                backoff(&mut spins);
            }
        }
    }

    /// True if some slot holds a reader: every slot read by a read-modify-write that changes
    /// nothing (see the module docs: a plain load could read a value older than a reader's add
    /// that the reader's own read of the flag missed), without a branch per slot.
    #[inline]
    fn any_reader(&self) -> bool {
        let readers = self
            .slots
            .iter()
            .fold(0, |n, s| n | s.0.fetch_or(0, Ordering::AcqRel));
        readers != 0
    }

    /// Takes the lock shared, waiting while a writer holds or wants it.
    #[inline]
    fn lock_read(&self) {
        let slot = &self.slots[thread_slot()].0;
        loop {
            slot.fetch_add(1, Ordering::Acquire);
            if !self.writing.load(Ordering::Acquire) {
                return;
            }
            slot.fetch_sub(1, Ordering::Release);
            self.wait_for_writer();
        }
    }

    /// Takes the lock shared unless a writer holds or wants it.
    #[inline]
    fn try_lock_read(&self) -> bool {
        let slot = &self.slots[thread_slot()].0;
        slot.fetch_add(1, Ordering::Acquire);
        if !self.writing.load(Ordering::Acquire) {
            return true;
        }
        slot.fetch_sub(1, Ordering::Release);
        false
    }

    /// Releases a shared hold taken on this thread.
    #[inline]
    fn unlock_read(&self) {
        self.slots[thread_slot()].0.fetch_sub(1, Ordering::Release);
    }

    /// Takes the lock exclusive: the writer mutex, then the flag, then waits for the readers.
    #[inline]
    fn lock_write(&self) {
        self.writer.lock();
        self.writing.store(true, Ordering::Relaxed);
        if self.any_reader() {
            self.drain_readers();
        }
    }

    /// Takes the lock exclusive if no writer holds it and no reader is in.
    fn try_lock_write(&self) -> bool {
        if !self.writer.try_lock() {
            return false;
        }
        self.writing.store(true, Ordering::Relaxed);
        if self.any_reader() {
            self.writing.store(false, Ordering::Release);
            // SAFETY: locked by the `try_lock` above.
            unsafe { self.writer.unlock() };
            return false;
        }
        true
    }

    /// Releases the exclusive hold.
    ///
    /// # Safety
    /// The caller holds the lock exclusive.
    #[inline]
    unsafe fn unlock_write(&self) {
        self.writing.store(false, Ordering::Release);
        // SAFETY: the caller holds the exclusive lock, so this thread locked `writer`.
        unsafe { self.writer.unlock() };
    }
}

/// Spins a little longer each time, then yields the CPU (a reader holds the lock for a table
/// lookup; it is late only if it was preempted).
#[inline]
#[cfg_attr(strata_loom, allow(dead_code))]
fn backoff(spins: &mut u32) {
    #[cfg(strata_loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(strata_loom))]
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
#[cfg(not(strata_loom))]
unsafe impl RawRwLock for RawShardLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawShardLock {
        writer: parking_lot::RawMutex::INIT,
        writing: AtomicBool::new(false),
        slots: [const { Slot(AtomicUsize::new(0)) }; SLOTS],
        #[cfg(test)]
        reader_waits: std::sync::atomic::AtomicUsize::new(0),
        #[cfg(test)]
        writer_waits: std::sync::atomic::AtomicUsize::new(0),
    };

    type GuardMarker = GuardNoSend;

    #[inline]
    fn lock_shared(&self) {
        self.lock_read();
    }

    #[inline]
    fn try_lock_shared(&self) -> bool {
        self.try_lock_read()
    }

    #[inline]
    unsafe fn unlock_shared(&self) {
        self.unlock_read();
    }

    #[inline]
    fn lock_exclusive(&self) {
        self.lock_write();
    }

    fn try_lock_exclusive(&self) -> bool {
        self.try_lock_write()
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        // SAFETY: the caller holds the lock exclusive.
        unsafe { self.unlock_write() };
    }
}

/// Under loom: the writer mutex as a flag behind `loom`'s mutex and condition variable, so the
/// model sees every way a writer or a waiting reader blocks and is woken.
#[cfg(strata_loom)]
struct WriterMutex {
    locked: loom::sync::Mutex<bool>,
    freed: loom::sync::Condvar,
}

#[cfg(strata_loom)]
impl WriterMutex {
    fn lock(&self) {
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        while *locked {
            locked = self.freed.wait(locked).unwrap_or_else(|e| e.into_inner());
        }
        *locked = true;
    }

    fn try_lock(&self) -> bool {
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        !std::mem::replace(&mut *locked, true)
    }

    unsafe fn unlock(&self) {
        *self.locked.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.freed.notify_all();
    }
}

#[cfg(strata_loom)]
impl RawShardLock {
    fn new() -> Self {
        RawShardLock {
            writer: WriterMutex {
                locked: loom::sync::Mutex::new(false),
                freed: loom::sync::Condvar::new(),
            },
            writing: AtomicBool::new(false),
            slots: std::array::from_fn(|_| Slot(AtomicUsize::new(0))),
            #[cfg(test)]
            reader_waits: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(test)]
            writer_waits: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

#[cfg(all(test, not(strata_loom)))]
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

/// `loom` models: every interleaving (and every value a weak memory order lets a load read) of
/// a few threads on one lock. Run with
/// `RUSTFLAGS="--cfg strata_loom" cargo test --lib --release memory::lock` (a build of its own:
/// use a separate `CARGO_TARGET_DIR`); see `src/consistency.md` for the run counts.
#[cfg(all(test, strata_loom))]
mod model {
    use loom::{cell::UnsafeCell, sync::Arc, thread};

    use super::*;

    /// A value behind the raw lock; `loom`'s cell fails the model on any access that is not
    /// ordered after every conflicting one (a reader and a writer inside together, or a reader
    /// that does not see the write it followed).
    struct Locked {
        raw: RawShardLock,
        value: UnsafeCell<u64>,
    }

    impl Locked {
        fn new() -> Arc<Self> {
            Arc::new(Locked {
                raw: RawShardLock::new(),
                value: UnsafeCell::new(0),
            })
        }

        fn read(&self) -> u64 {
            self.raw.lock_read();
            let v = self.value.with(|p| unsafe { *p });
            self.raw.unlock_read();
            v
        }

        fn try_read(&self) -> Option<u64> {
            if !self.raw.try_lock_read() {
                return None;
            }
            let v = self.value.with(|p| unsafe { *p });
            self.raw.unlock_read();
            Some(v)
        }

        /// Adds 1 in two steps, so a reader inside would see an odd value.
        fn write(&self) {
            self.raw.lock_write();
            self.bump();
            unsafe { self.raw.unlock_write() };
        }

        fn try_write(&self) -> bool {
            if !self.raw.try_lock_write() {
                return false;
            }
            self.bump();
            unsafe { self.raw.unlock_write() };
            true
        }

        fn bump(&self) {
            self.value.with_mut(|p| unsafe { *p += 1 });
            self.value.with_mut(|p| unsafe { *p += 1 });
        }
    }

    fn use_slot(slot: usize) {
        THREAD_SLOT.with(|s| s.set(slot));
    }

    /// Preemptions per execution that the models explore (see `src/consistency.md`).
    const PREEMPTIONS: usize = 3;

    /// Checks `f` in every execution loom explores, and prints how many (seen with
    /// `--nocapture`).
    fn check(f: impl Fn() + Sync + Send + 'static) {
        let mut model = loom::model::Builder::new();
        // LOOM_MAX_PREEMPTIONS overrides the bound.
        model.preemption_bound = model.preemption_bound.or(Some(PREEMPTIONS));
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        model.check(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f();
        });
        let name = std::thread::current().name().map(str::to_owned);
        println!("{name:?}: {runs:?} executions");
    }

    /// A reader and a writer, in other slots: never inside together, the reader sees the
    /// value before or after the write, and the last read sees it.
    #[test]
    fn a_reader_and_a_writer_never_overlap() {
        check(|| {
            let lock = Locked::new();
            let l = lock.clone();
            let reader = thread::spawn(move || {
                use_slot(1);
                l.read()
            });
            use_slot(0);
            lock.write();
            let seen = reader.join().expect("reader");
            assert!(seen == 0 || seen == 2, "read {seen}");
            assert_eq!(lock.read(), 2);
        });
    }

    /// Two readers in two slots and a writer: the writer must find a reader in either slot.
    #[test]
    fn readers_in_two_slots_and_a_writer_never_overlap() {
        check(|| {
            let lock = Locked::new();
            let readers: Vec<_> = (1..3)
                .map(|slot| {
                    let l = lock.clone();
                    thread::spawn(move || {
                        use_slot(slot);
                        l.read()
                    })
                })
                .collect();
            use_slot(0);
            lock.write();
            for r in readers {
                let seen = r.join().expect("reader");
                assert!(seen == 0 || seen == 2, "read {seen}");
            }
        });
    }

    /// Two writers and a reader sharing one's slot: writers exclude each other, and a reader
    /// woken by one writer's release while the other waits neither enters under the second nor
    /// waits for ever (a lost wake-up would leave every thread blocked: loom fails on that).
    #[test]
    fn two_writers_and_a_reader_never_overlap_and_all_finish() {
        check(|| {
            let lock = Locked::new();
            let l = lock.clone();
            let writer = thread::spawn(move || {
                use_slot(1);
                l.write();
            });
            let l = lock.clone();
            let reader = thread::spawn(move || {
                use_slot(0);
                l.read()
            });
            use_slot(0);
            lock.write();
            writer.join().expect("writer");
            let seen = reader.join().expect("reader");
            assert!([0, 2, 4].contains(&seen), "read {seen}");
            assert_eq!(lock.read(), 4);
        });
    }

    /// The `try_` forms: a try-read and a try-write never both get in, a failed try leaves the
    /// lock usable (the try-writer lowers its flag and frees the mutex).
    #[test]
    fn a_try_read_and_a_try_write_never_overlap() {
        check(|| {
            let lock = Locked::new();
            let l = lock.clone();
            let reader = thread::spawn(move || {
                use_slot(1);
                l.try_read()
            });
            use_slot(0);
            let wrote = lock.try_write();
            let seen = reader.join().expect("reader");
            assert!(matches!(seen, None | Some(0) | Some(2)), "read {seen:?}");
            assert_eq!(lock.read(), if wrote { 2 } else { 0 });
            lock.write();
            assert_eq!(lock.try_read(), Some(if wrote { 4 } else { 2 }));
        });
    }

    /// A writer is not starved: a reader that reads again and again until the writer is done
    /// stops getting in once the flag is up, so the writer gets in and every execution ends.
    #[test]
    fn a_writer_gets_in_while_a_reader_keeps_reading() {
        check(|| {
            let lock = Locked::new();
            let done = Arc::new(AtomicBool::new(false));
            let (l, d) = (lock.clone(), done.clone());
            let reader = thread::spawn(move || {
                use_slot(1);
                while !d.load(Ordering::Acquire) {
                    let seen = l.read();
                    assert!(seen == 0 || seen == 2, "read {seen}");
                    thread::yield_now();
                }
            });
            use_slot(0);
            lock.write();
            done.store(true, Ordering::Release);
            reader.join().expect("reader");
        });
    }
}
