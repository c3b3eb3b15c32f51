//! `time_to_idle` on a DiskStore ([`DiskBuilder::time_to_idle`](super::DiskBuilder::time_to_idle),
//! `Store::with_time_to_idle`): the memory tier is a [`MemoryStore`] with `time_to_idle`, which
//! decides when an entry idled out; this file makes that expiry reach the disk.
//!
//! The disk does not record reads (that would turn every read into a write), so a record's
//! deadline is its TTL deadline only and an entry that idled out would come back at the next
//! open. The tier's listener therefore records every expired key (in the same list as the
//! bounded mode's evictions, `disk::bounded`) and hands the list to the **settler**, one thread
//! per directory started on the first expiry. It settles each key as a write's
//! `settle_evictions` does: under the key's stripe lock, which every writer of the key holds
//! while it queues its op and applies it to memory, it queues the delete only if memory still
//! has no live entry. A write of the key racing the expiry is therefore either in memory
//! already (no delete) or queued after the delete (test
//! `disk_idle::a_write_racing_the_idle_delete_wins`). The settler waits for that lock (a sync
//! write holds it until its commit is applied), so it runs on a thread of its own, never on a
//! writer's or a reader's. Closing the directory settles what is still pending before the
//! writer drains.
//!
//! Opening loads every entry with a fresh idle window (the load is a write), so idle time
//! restarts at open; the TTL deadline on disk still holds.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use parking_lot::{Condvar, Mutex};
use serde::{de::DeserializeOwned, Serialize};

use super::{
    bounded::Evicted,
    db::{DbInner, DiskDb},
    engine::Op,
    store::DiskStore,
    writer::Ops,
};
use crate::{
    codec::Key,
    error::{Error, Result},
    memory::WeakMemoryStore,
};

/// Work for the settler thread, run with the directory it belongs to.
pub(super) type Job = Box<dyn FnOnce(&DbInner) + Send>;

/// Refuses an idle time `open()` or `with_time_to_idle` cannot honour.
pub(super) fn validate(idle: Duration, larger_than_memory: bool) -> Result<()> {
    if idle.as_millis() == 0 {
        return Err(Error::config(
            "time_to_idle",
            "must be at least 1 ms; leave it unset for no idle expiry",
        ));
    }
    if larger_than_memory {
        return Err(Error::config(
            "time_to_idle",
            "cannot be combined with memory_capacity: the disk does not record reads, so an entry only on disk could never idle out",
        ));
    }
    Ok(())
}

/// The settler's queue and the thread that runs it (see the module docs).
#[derive(Default)]
pub(super) struct Settler {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// How many times a settle waited for a write holding its key's stripe.
    waits: AtomicU64,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    started: bool,
    closed: bool,
}

impl Settler {
    /// Queues `job`, starting the thread on first use. After the close, `job` is dropped: the
    /// close settled everything that was pending.
    fn push(self: &Arc<Self>, db: &Weak<DbInner>, job: Job) {
        let mut queue = self.queue.lock();
        if queue.closed {
            return;
        }
        queue.jobs.push_back(job);
        if !queue.started {
            queue.started = self.start(db.clone());
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// Starts the thread; false if the OS refused (the jobs then run at the close).
    fn start(self: &Arc<Self>, db: Weak<DbInner>) -> bool {
        let settler = self.clone();
        let spawned = std::thread::Builder::new()
            .name("strata-idle-settler".into())
            .spawn(move || settler.run(&db));
        if let Err(e) = &spawned {
            tracing::error!(error = %e, "could not start the thread that deletes idle entries on disk; they are deleted when the directory closes");
        }
        spawned.is_ok()
    }

    /// The thread: waits for jobs and runs them with the directory, while it is open. The
    /// directory is upgraded before a job is taken, so a job is either run here or left for
    /// the close (`Settler::close`), never lost in between.
    fn run(&self, db: &Weak<DbInner>) {
        loop {
            {
                let mut queue = self.queue.lock();
                while queue.jobs.is_empty() && !queue.closed {
                    self.wake.wait(&mut queue);
                }
                if queue.closed {
                    return;
                }
            }
            let Some(inner) = db.upgrade() else { return };
            self.run_pending(&inner);
        }
    }

    fn run_pending(&self, inner: &DbInner) {
        loop {
            let Some(job) = self.queue.lock().jobs.pop_front() else {
                return;
            };
            job(inner);
        }
    }

    /// Blocks until every job queued so far has run, one under way included (`drop_namespace`:
    /// their deletes are then on the writer's queue). Nothing to wait for if the thread never
    /// started; after the close nothing runs, and the close ran them all.
    pub(super) fn wait_for_jobs(self: &Arc<Self>, db: &Weak<DbInner>) {
        if !self.queue.lock().started {
            return;
        }
        let (done, ran) = std::sync::mpsc::sync_channel::<()>(1);
        let marker: Job = Box::new(move |_| {
            let _ = done.send(());
        });
        self.push(db, marker);
        // An error: the marker was dropped unrun at the close, which ran every job before it.
        let _ = ran.recv();
    }

    /// Runs what is still queued (on the closing thread) and stops the thread.
    pub(super) fn close(&self, inner: &DbInner) {
        self.run_pending(inner);
        self.queue.lock().closed = true;
        self.wake.notify_all();
    }

    /// Notes that a settle waited for a write's stripe (seen by tests that pin that race).
    pub(super) fn note_wait(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a namespace's tier needs to hand its expired keys to the settler.
#[derive(Clone)]
pub(super) struct IdleHook {
    pub settler: Arc<Settler>,
    pub db: Weak<DbInner>,
}

impl IdleHook {
    /// Makes the settler delete on disk every key in `list` that memory no longer holds.
    pub(super) fn poke<K: Key, V: Clone + Send + Sync + 'static>(
        &self,
        mem: WeakMemoryStore<K, V>,
        list: Evicted<K>,
        prefix: Arc<[u8]>,
    ) {
        let job: Job = Box::new(move |db| settle(db, &mem, &list, &prefix));
        self.settler.push(&self.db, job);
    }
}

/// Settles every key of `list` (see the module docs). On the closing thread of an async
/// runtime it cannot wait for a stripe: a key whose stripe is held then keeps its record, and
/// gets a fresh idle window at the next open.
fn settle<K: Key, V: Clone + Send + Sync + 'static>(
    db: &DbInner,
    mem: &WeakMemoryStore<K, V>,
    list: &Evicted<K>,
    prefix: &[u8],
) {
    let Some(mem) = mem.upgrade() else { return };
    loop {
        let Some(key) = list.lock().pop() else { return };
        let disk_key = key.namespaced(prefix);
        let Some(_held) = db.lock_to_settle(&disk_key) else {
            continue;
        };
        if mem.contains(&key) {
            continue;
        }
        let delete = Ops::One(Op::Delete { key: disk_key });
        if db.writer.submit(delete, false, None).is_err() {
            return;
        }
    }
}

impl DiskDb {
    /// Waits until every idle expiry seen so far is settled (its delete queued, or skipped for
    /// a newer write) and committed. Hidden: for tests that check the disk after an expiry.
    #[doc(hidden)]
    pub async fn settle_idle(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done: Job = Box::new(move |_| {
            let _ = tx.send(());
        });
        let settler = &self.inner.settler;
        let started = settler.queue.lock().started;
        if started {
            settler.push(&Arc::downgrade(&self.inner), done);
            // An error means the job was dropped at the close, which settles everything.
            let _ = rx.await;
        }
        self.flush().await
    }

    /// How many times the idle settler waited for a write holding a key's stripe. Hidden: for
    /// the test that pins a write racing an idle delete.
    #[doc(hidden)]
    pub fn idle_waits(&self) -> u64 {
        self.inner.settler.waits.load(Ordering::Relaxed)
    }
}

impl<K, V> DiskStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// `Store::with_time_to_idle`: this namespace, in the same directory, with a memory tier
    /// that expires entries `idle` after their last read or write (see
    /// [`DiskBuilder::time_to_idle`](super::DiskBuilder::time_to_idle)).
    pub(super) fn with_idle(&self, idle: Duration) -> Result<Self> {
        validate(idle, self.db.larger_than_memory())?;
        // A compact tier by default is swapped for the default one below (`DiskDb::retier`);
        // one the builder asked for is kept, so idle expiry is refused.
        if self.compact().is_some() && self.db.inner.opts.compact_memory == Some(true) {
            return Err(Error::config(
                "compact_memory",
                "a compact tier has no idle expiry (reads would have to move each entry's deadline): use TTLs, or open without compact_memory(true)",
            ));
        }
        match self.tier_idle() {
            Some(current) if current == idle => Ok(self.clone()),
            // The old tier's idle expiries could still reach the disk after the swap.
            Some(current) => Err(Error::config(
                "time_to_idle",
                format!(
                    "{} already idles out after {current:?}: one idle time per namespace",
                    self.namespace
                ),
            )),
            None => self.db.retier(self, idle),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{disk::db::Stripes, ManualClock, Store, Writes};

    const IDLE: Duration = Duration::from_secs(60);

    /// A settle already under way when its namespace is dropped (it has found the expired key
    /// and waits for the key's stripe, held here by the test) queues its delete after the drop
    /// returned: the engine then re-created the dropped namespace's keyspace for it, which
    /// counts against the limit until the next open. The drop now waits for the settler's
    /// jobs, so the delete commits before the keyspace goes and nothing brings it back.
    #[test]
    fn a_drop_waits_for_a_settle_under_way_and_its_namespace_stays_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let time = ManualClock::new();
        let db = DiskDb::builder()
            .dir(dir.path())
            .clock(time.clock())
            .writes(Writes::Async)
            .time_to_idle(IDLE)
            .open()
            .unwrap();
        let store: DiskStore<u64, String> = db.store("old").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.put(1, "v".into(), None)).unwrap();
        let stripes = Stripes::of(&store.disk_key(&1));
        let held = db
            .try_lock_here(&stripes)
            .expect("the key's stripe is free");
        time.advance(IDLE);
        assert!(store.get_now(&1).unwrap().unwrap().is_none(), "idled out");
        let waited = Instant::now();
        while db.idle_waits() == 0 {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the settle waits"
            );
            std::thread::yield_now();
        }
        drop(store);
        let settler = db.inner.settler.clone();
        std::thread::scope(|scope| {
            let dropper = scope.spawn(|| db.drop_namespace("old"));
            // Until the drop is done, or waits behind the settle (its marker queued).
            while !dropper.is_finished() && settler.queue.lock().jobs.is_empty() {
                assert!(waited.elapsed() < Duration::from_secs(30), "the drop ran");
                std::thread::yield_now();
            }
            drop(held);
            assert!(dropper.join().unwrap().unwrap(), "the namespace was held");
        });
        rt.block_on(db.settle_idle()).unwrap();
        assert!(
            !db.drop_namespace("old").unwrap(),
            "nothing brought the dropped namespace back"
        );
    }
}
