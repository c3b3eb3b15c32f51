//! `DiskDb`: one opened data directory — its lock, engine, writer thread and the memory tier of
//! every namespace opened in it.

use std::{
    any::Any,
    collections::{HashMap, HashSet},
    hash::BuildHasher,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    builder::{AnyWeigher, DiskDbBuilder, OnCorrupt, Options, WeighFn, Writes},
    closing::{self, Closing},
    compact::Compact,
    engine::{allocated, DeadScan, Engine, FjallEngine, Op, BLOCK_CACHE, BLOCK_CACHE_COLD},
    fifo::Fifo,
    idle::{IdleHook, Settler},
    load::{self, OpenSummary, RawEntries},
    lock::{self, DirLock},
    marker, perms, record,
    store::{put_at, DiskStore, Tier},
    stripe::{OwnedStripeGuard, Stripe, StripeGuard},
    writer::{self, Ops, Writer},
};
use crate::{
    codec::{decode_value, Key},
    error::{Error, Result},
    memory::{Fill, MemoryStore},
    namespace::Namespace,
};

/// The engine's own directory inside the data directory.
const ENGINE_DIR: &str = "fjall";

/// Stripes of the per-key lock that keeps memory and disk in the same order.
const STRIPES: usize = 256;

/// The stripes of the per-key write lock a write takes.
pub(super) enum Stripes {
    /// The stripe of one key.
    One(usize),
    /// The stripes of several keys: sorted, no duplicates.
    Many(Vec<usize>),
    /// Every stripe (a namespace's `clear`).
    All,
}

impl Stripes {
    /// The stripe covering `key`.
    pub(super) fn of(key: &[u8]) -> Self {
        Stripes::One(stripe_of(key))
    }

    /// The stripes covering `keys`.
    pub(super) fn of_all<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut stripes: Vec<usize> = keys.into_iter().map(stripe_of).collect();
        stripes.sort_unstable();
        stripes.dedup();
        Stripes::Many(stripes)
    }

    /// The stripe indices, in order.
    fn indices(self) -> impl Iterator<Item = usize> {
        let (one, many, all) = match self {
            Stripes::One(stripe) => (Some(stripe), Vec::new(), 0..0),
            Stripes::Many(stripes) => (None, stripes, 0..0),
            Stripes::All => (None, Vec::new(), 0..STRIPES),
        };
        one.into_iter().chain(many).chain(all)
    }
}

fn stripe_of(key: &[u8]) -> usize {
    foldhash::fast::FixedState::default().hash_one(key) as usize % STRIPES
}

/// Stripes held by an async write until it is dropped.
pub(super) struct Held<'a> {
    _one: Option<StripeGuard<'a>>,
    _many: Vec<StripeGuard<'a>>,
}

/// An opened data directory, holding many namespaces (Pow's MnesiaCache table, on one node).
///
/// Opening takes an exclusive lock on the directory, loads every entry, deletes the expired
/// ones of *every* namespace (pow#713) and keeps the live ones until [`DiskDb::store`] claims
/// their namespace. Cheap to clone; the directory is closed (everything queued committed, the
/// write buffer flushed, fsynced) and unlocked when the last clone and the last store are
/// dropped — on a thread of its own if that happens on an async runtime's thread (await
/// [`DiskDb::close`] to wait for it there).
///
/// ```
/// use std::time::Duration;
/// use strata::{DiskDb, Store};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let db = DiskDb::builder().dir(dir.path()).open()?;
/// let sessions = db.store::<String, String>("sessions")?;
/// sessions.put("abc".into(), "ada".into(), Some(Duration::from_secs(60))).await?;
/// drop((sessions, db)); // restart
/// let db = DiskDb::builder().dir(dir.path()).open()?;
/// let sessions = db.store::<String, String>("sessions")?;
/// assert_eq!(sessions.get(&"abc".into()).await?.as_deref(), Some("ada"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DiskDb {
    pub(super) inner: Arc<DbInner>,
}

pub(super) struct DbInner {
    pub opts: Options,
    pub writer: Writer,
    pub(super) engine: Arc<dyn Engine>,
    pub(super) stripes: Box<[Arc<Stripe>]>,
    pending: Mutex<HashMap<Box<[u8]>, RawEntries>>,
    pub(super) tiers: Mutex<HashMap<Namespace, OpenTier>>,
    /// Namespaces `put_raw` wrote to since the open (changed only under `tiers`): `pending`
    /// no longer holds all of their records, so their store loads them from the engine.
    pub(super) raw_written: Mutex<HashSet<Namespace>>,
    summary: OpenSummary,
    /// Deletes on disk what idled out in memory (`disk::idle`).
    pub(super) settler: Arc<Settler>,
    /// Times a memory tier's swap found a stripe or the tiers' map taken (tests pin a write
    /// in flight during the swap with it).
    #[cfg(test)]
    pub(super) swap_tries: std::sync::atomic::AtomicUsize,
    // Dropped last (or by `Closing`): the directory stays locked until the engine is closed.
    lock: Option<DirLock>,
}

/// A namespace's memory tier in the directory's map, with a way to tell whether a store on it
/// is still open.
pub(super) struct OpenTier {
    /// The `Tier<K, V>`.
    tier: Box<dyn Any + Send + Sync>,
    /// The tier's `handles`: more than the map's own clone alive means a store is open on it.
    handles: std::sync::Weak<()>,
}

impl OpenTier {
    fn new<K, V>(tier: &Tier<K, V>) -> Self
    where
        K: Send + Sync + 'static,
        V: Send + Sync + 'static,
    {
        OpenTier {
            handles: Arc::downgrade(&tier.handles),
            tier: Box::new(tier.clone()),
        }
    }

    fn get<K: 'static, V: 'static>(&self) -> Option<&Tier<K, V>> {
        self.tier.downcast_ref()
    }

    /// True while a store (a handle other than the map's) is open on the tier.
    fn in_use(&self) -> bool {
        self.handles.strong_count() > 1
    }
}

/// Off an async runtime the drop waits for the close, and the directory can be reopened right
/// after; on a runtime's thread the close finishes on a thread of its own (see `closing`).
impl Drop for DbInner {
    fn drop(&mut self) {
        // Idle deletes still pending go into the writer's queue before it drains.
        self.settler.close(self);
        if tokio::runtime::Handle::try_current().is_err() {
            // The fields drop next, in order: the engine, then the lock.
            return writer::join(self.writer.stop());
        }
        let mut lock = self.lock.take();
        if let Some(lock) = &mut lock {
            lock.mark_closing();
        }
        let closing = Closing::new(
            &self.opts.dir,
            self.writer.stop(),
            self.engine.clone(),
            lock,
        );
        closing.in_background();
    }
}

impl std::fmt::Debug for DiskDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskDb")
            .field("dir", &self.inner.opts.dir)
            .field("writes", &self.inner.opts.writes)
            .finish_non_exhaustive()
    }
}

impl DiskDb {
    /// The most namespaces one data directory holds: each is an engine keyspace of its own.
    /// A new namespace past it is [`Error::TooManyNamespaces`]; a namespace without live
    /// entries stops counting at the next open (see the module docs of `disk`), and
    /// [`drop_namespace`](Self::drop_namespace) frees one at once.
    ///
    /// ```
    /// assert_eq!(strata::DiskDb::MAX_NAMESPACES, 64);
    /// ```
    pub const MAX_NAMESPACES: usize = super::engine::MAX_NAMESPACES;

    /// A builder with the defaults (see [`DiskBuilder`](crate::DiskBuilder)).
    pub fn builder() -> DiskDbBuilder {
        DiskDbBuilder::new()
    }

    pub(super) fn open(opts: Options) -> Result<Self> {
        let started = Instant::now();
        let lock = lock::acquire(&opts.dir)?;
        let (engine, loaded) = open_engine(&opts, started)?;
        let mut engine: Arc<dyn Engine> = Arc::new(engine);
        if let Some(faults) = &opts.faults {
            engine = faults.wrap(engine);
        }
        let writer = Writer::start(
            opts.dir.clone(),
            engine.clone(),
            opts.queue_capacity,
            opts.fsync_interval,
        )?;
        let inner = DbInner {
            opts,
            writer,
            engine,
            stripes: (0..STRIPES).map(|_| Arc::new(Stripe::default())).collect(),
            pending: Mutex::new(loaded.by_namespace),
            tiers: Mutex::new(HashMap::new()),
            raw_written: Mutex::default(),
            summary: loaded.summary,
            settler: Arc::default(),
            #[cfg(test)]
            swap_tries: std::sync::atomic::AtomicUsize::new(0),
            lock: Some(lock),
        };
        Ok(DiskDb {
            inner: Arc::new(inner),
        })
    }

    /// The store of `namespace` in this directory, with its entries loaded.
    ///
    /// Every call for the same namespace shares one memory tier. Asking for a namespace already
    /// open with other key or value types is [`Error::InvalidConfig`]. Entries whose key or
    /// value no longer decodes as `K`/`V` are skipped with a warning and counted (see
    /// [`DiskStore::undecodable`]); they stay on disk untouched.
    pub fn store<K, V>(&self, namespace: impl AsRef<str>) -> Result<DiskStore<K, V>>
    where
        K: Key,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let namespace = Namespace::new(namespace)?;
        let mut tiers = self.inner.tiers.lock();
        if let Some(tier) = tiers.get(&namespace) {
            let tier = tier.get::<K, V>().ok_or_else(|| {
                Error::config(
                    "namespace",
                    format!("{namespace} is already open in this directory with other key/value types; use one type per namespace"),
                )
            })?;
            return Ok(DiskStore::new(self.clone(), namespace, tier.clone()));
        }
        self.inner
            .engine
            .open_namespaces(std::slice::from_ref(&namespace))?;
        let tier = self.load_tier::<K, V>(&namespace)?;
        // Open from here on: `put_raw` refuses it.
        self.inner.raw_written.lock().remove(&namespace);
        tiers.insert(namespace.clone(), OpenTier::new(&tier));
        Ok(DiskStore::new(self.clone(), namespace, tier))
    }

    /// Deletes `namespace` from this directory, every entry in it (live ones too), and frees
    /// its place under [`MAX_NAMESPACES`](Self::MAX_NAMESPACES) at once; false if the
    /// directory did not hold it. For a process that rotates namespace names (one per deploy,
    /// per tenant) and would otherwise hit [`Error::TooManyNamespaces`] until a restart drops
    /// the namespaces left without live entries.
    ///
    /// Refused with [`Error::InvalidConfig`] while a store of it is open in this `DiskDb`
    /// (drop every clone of its [`DiskStore`] first). Writes of it still queued (async writes
    /// of a store just dropped, a [`put_raw`](Self::put_raw)) are committed first and dropped
    /// with it, and so are the disk deletes of entries that idled out
    /// ([`time_to_idle`](crate::DiskBuilder::time_to_idle)): the drop waits for the settler
    /// queueing them, so none lands after it and brings the namespace back. Decided under the lock [`store`](Self::store) and `put_raw` open namespaces
    /// under, so a store or raw write of the same namespace racing it comes entirely before
    /// the drop (and is dropped) or entirely after (a new, empty namespace). Blocks while the
    /// writer commits what is queued, and opening a store in this `DiskDb` waits for it
    /// meanwhile (as it does behind a store opened on a namespace `put_raw` wrote to): run it
    /// off the async runtime's threads in a busy process, and never from an eviction listener
    /// (a sync write's listener runs on the writer thread it would wait for).
    ///
    /// ```
    /// use strata::{DiskDb, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = DiskDb::builder().dir(dir.path()).open()?;
    /// let old = db.store::<String, u64>("sessions-v1")?;
    /// old.put("k".into(), 1, None).await?;
    /// // Refused while a store of it is open.
    /// assert!(db.drop_namespace("sessions-v1").is_err());
    /// drop(old);
    /// assert!(db.drop_namespace("sessions-v1")?);
    /// // Gone, and its place under the 64-namespace limit is free again.
    /// let reopened = db.store::<String, u64>("sessions-v1")?;
    /// assert_eq!(reopened.get(&"k".into()).await?, None);
    /// # Ok(()) }
    /// ```
    pub fn drop_namespace(&self, namespace: impl AsRef<str>) -> Result<bool> {
        let namespace = Namespace::new(namespace)?;
        let mut tiers = self.inner.tiers.lock();
        if tiers.get(&namespace).is_some_and(OpenTier::in_use) {
            return Err(Error::config(
                "namespace",
                format!("{namespace} has a store open in this DiskDb; drop every handle on it before dropping the namespace"),
            ));
        }
        // Its memory tier goes first, so an idle settle queued from now on finds it gone; one
        // under way (it holds the tier) queues its delete before the settler's queue is
        // drained. Then its queued writes reach the engine: committed after the drop they would
        // bring the namespace back. No new write can be queued while `tiers` is held.
        tiers.remove(&namespace);
        self.inner
            .settler
            .wait_for_jobs(&Arc::downgrade(&self.inner));
        self.wait_for_queued_writes()?;
        self.inner
            .pending
            .lock()
            .remove(namespace.as_str().as_bytes());
        self.inner.raw_written.lock().remove(&namespace);
        let dropped = self.inner.engine.drop_namespace(&namespace)?;
        if dropped {
            tracing::info!(path = %self.inner.opts.dir.display(), namespace = %namespace, "dropped a namespace and its entries");
        }
        Ok(dropped)
    }

    /// Blocks until everything queued on the writer so far has been committed (or failed).
    fn wait_for_queued_writes(&self) -> Result<()> {
        let (done, committed) = std::sync::mpsc::sync_channel::<()>(1);
        let marker = Box::new(move || {
            let _ = done.send(());
        });
        self.inner
            .writer
            .submit(Ops::Many(Vec::new()), false, Some(marker))?;
        // Dropped unrun if its batch failed: the writer is past the writes before it either way.
        let _ = committed.recv();
        Ok(())
    }

    fn load_tier<K, V>(&self, namespace: &Namespace) -> Result<Tier<K, V>>
    where
        K: Key,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let snapshot = self
            .inner
            .pending
            .lock()
            .remove(namespace.as_str().as_bytes())
            .unwrap_or_default();
        // Called under `tiers`, the lock `put_raw` queues its writes under: a raw write of this
        // namespace is queued before this point or refused after it.
        let raw = if self.inner.raw_written.lock().contains(namespace) {
            self.wait_for_queued_writes()?;
            drop(snapshot);
            if self.larger_than_memory() {
                // Starts cold either way: reads find the raw writes in the engine.
                RawEntries::default()
            } else {
                load::scan_namespace(self.inner.engine.as_ref(), namespace)?
            }
        } else {
            snapshot
        };
        let tti = self.inner.opts.time_to_idle;
        let mut tier = self.new_tier::<K, V>(namespace, tti, Some(raw.len()))?;
        if let (Some(_), Some(limit)) = (
            self.inner.opts.memory_capacity,
            self.inner.opts.max_capacity,
        ) {
            // Larger than memory with a disk limit: the FIFO of what the disk holds.
            let now = self.inner.opts.clock.now_ms();
            let mut fifo = Fifo::scan(self.inner.engine.as_ref(), &namespace.prefix(), now)?;
            let surplus = super::fifo::trim_at_open(&mut fifo, limit);
            if !surplus.is_empty() {
                // Committed before the store is handed out: its reads go to the engine. No
                // write of this namespace can be queued yet (it is opened for the first time).
                self.inner
                    .engine
                    .commit(&surplus)
                    .map_err(|e| Error::backend("trimming the disk to max_capacity", e.reason))?;
            }
            tier.fifo = Some(Arc::new(Mutex::new(fifo)));
        }
        let now = self.inner.opts.clock.now_ms();
        let (undecodable, mut expired) = match &tier.compact {
            Some(compact) => load_compact(compact, namespace, &raw, now)?,
            None => load_entries(&tier.mem, namespace, &raw, now)?,
        };
        drop(raw);
        // More records than the limit (a limit lowered, a delete lost to a crash): the tier
        // evicted the surplus while loading; delete it on disk too.
        expired.extend(self.evicted_while_filling(&tier, namespace));
        if !expired.is_empty() {
            self.inner.writer.send(expired, false)?;
        }
        undecodable.report(namespace);
        tier.undecodable = undecodable.count;
        Ok(tier)
    }

    /// An empty memory tier for `namespace`, idling out after `tti`, with the listener that
    /// deletes its evictions and idle expiries on disk when the options ask for either; sized
    /// for the `expected` entries it is about to load.
    fn new_tier<K, V>(
        &self,
        namespace: &Namespace,
        tti: Option<Duration>,
        expected: Option<usize>,
    ) -> Result<Tier<K, V>>
    where
        K: Key,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let opts = &self.inner.opts;
        let mut mem = MemoryStore::builder()
            .namespace(namespace.as_str())
            .clock(opts.clock.clone());
        if let Some(entries) = opts.memory_capacity.or(opts.max_capacity) {
            mem = mem.max_capacity(entries);
        }
        if let Some(weight) = opts.max_weight {
            let weigh = weigher::<K, V>(opts, namespace);
            mem = mem
                .max_weight(weight)
                .weigher(move |k: &K, v: &V| weigh(k, v));
        }
        if let Some(idle) = tti {
            mem = mem.time_to_idle(idle);
        }
        // A tier idling out (`with_time_to_idle` on a compact one included) is the default one.
        let compact = (tti.is_none() && opts.compact_tier())
            .then(|| Compact::new(opts.clock.clone(), opts.format, expected.unwrap_or(0)));
        if let (Some(entries), None) = (expected, &compact) {
            mem = mem.expected_entries(entries);
        }
        let mem = mem.build()?;
        let idle = tti.map(|_| {
            let hook = IdleHook {
                settler: self.inner.settler.clone(),
                db: Arc::downgrade(&self.inner),
            };
            (hook, Arc::from(namespace.prefix()))
        });
        let (evicted, forward) = if opts.bounded() || idle.is_some() {
            let (evicted, forward) = super::bounded::record_evictions(&mem, idle)?;
            (Some(evicted), Some(forward))
        } else {
            (None, None)
        };
        Ok(Tier {
            mem,
            compact,
            undecodable: 0,
            evicted,
            forward,
            tti,
            fifo: None,
            handles: Arc::default(),
            retired: Arc::default(),
        })
    }

    /// The deletes for what `tier` evicted while it was being filled (nothing else runs on it
    /// yet).
    fn evicted_while_filling<K, V>(&self, tier: &Tier<K, V>, namespace: &Namespace) -> Vec<Op>
    where
        K: Key,
        V: Clone + Send + Sync + 'static,
    {
        match (&tier.evicted, self.inner.opts.bounded()) {
            (Some(evicted), true) => {
                let prefix = namespace.prefix();
                super::bounded::evicted_at_load(&tier.mem, evicted, prefix.as_ref())
            }
            _ => Vec::new(),
        }
    }

    /// `Store::with_time_to_idle`: replaces `store`'s memory tier by one idling out after
    /// `idle`, holding the same entries (each with a fresh idle window and its TTL deadline).
    /// Refused while another handle shares the tier: it would go on using the old one.
    pub(super) fn retier<K, V>(
        &self,
        store: &DiskStore<K, V>,
        idle: Duration,
    ) -> Result<DiskStore<K, V>>
    where
        K: Key,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let namespace = store.namespace.clone();
        // Every stripe held: no write is between its stripe and its memory update (a sync
        // write holds its stripe until its commit has updated the tier it started on), so the
        // copy below sees every write made so far, and none lands in the old tier after it.
        // `tiers` is taken with them, only once all are free: held while waiting, it would
        // stall every other namespace's open behind a slow write.
        let (_stripes, mut tiers) = self.all_stripes_and_tiers()?;
        let current = tiers.get(&namespace).and_then(|tier| tier.get::<K, V>());
        let old = store.tier();
        let alone = current.is_some_and(|tier| Arc::ptr_eq(&tier.handles, &old.handles))
            && Arc::strong_count(&old.handles) == 2;
        if !alone {
            return Err(Error::config(
                "time_to_idle",
                format!("{namespace} has other open handles in this directory, which would keep a memory tier without idle expiry: call it on the namespace's only handle, or open the directory with DiskBuilder::time_to_idle"),
            ));
        }
        let mut tier = self.new_tier::<K, V>(&namespace, Some(idle), None)?;
        tier.undecodable = old.undecodable;
        // The user's eviction listener, if one was installed, follows to the new tier.
        let user = match (&old.forward, &old.compact) {
            (Some(forward), _) => forward.get().cloned(),
            (None, Some(compact)) => compact.listener(),
            (None, None) => old.mem.listener(),
        };
        if let (Some(user), Some(forward)) = (user, &tier.forward) {
            let _ = forward.set(user);
        }
        // Entries already expired are not copied: they leave the old tier now, heard by the
        // listener as expired, rather than vanish with it.
        match &old.compact {
            Some(compact) => {
                compact.purge_expired();
            }
            None => {
                old.mem.purge_expired();
            }
        }
        match &old.compact {
            // The default tier by default: it idles entries out, the compact one cannot.
            Some(compact) => {
                for (key, value, deadline) in compact.entries() {
                    put_at(&tier.mem, key, value, deadline, None);
                }
                compact.retire();
            }
            None => {
                for key in old.mem.keys() {
                    if let Some((value, deadline)) = old.mem.peek_ttl_deadline(&key) {
                        put_at(&tier.mem, key, value, deadline, None);
                    }
                }
                // Its entries live on in the new tier: emptied without a trace, so neither its
                // sweeper nor a stale handle's read hands one's removal to the listener again.
                old.mem.retire();
            }
        }
        // Still under every stripe: a write through a stale handle is either done or refused.
        old.retired
            .store(true, std::sync::atomic::Ordering::Release);
        let evicted = self.evicted_while_filling(&tier, &namespace);
        if !evicted.is_empty() {
            self.inner.writer.send(evicted, false)?;
        }
        tiers.insert(namespace.clone(), OpenTier::new(&tier));
        Ok(DiskStore::new(self.clone(), namespace, tier))
    }

    /// Every stripe of the directory's per-key write lock and then the open tiers' map, taken
    /// without blocking a thread an async write may need and without holding anything while
    /// waiting: all free at once, or let go and tried again, until the open timeout (then
    /// [`Error::Timeout`]: a write is stuck, e.g. on a parked disk). `drop_namespace` holds
    /// the map while the idle settler it waits for may wait for a stripe; taking neither
    /// while waiting for the other keeps both from waiting on each other.
    fn all_stripes_and_tiers(&self) -> Result<HeldForSwap<'_>> {
        let started = std::time::Instant::now();
        loop {
            let held: Vec<_> = self
                .inner
                .stripes
                .iter()
                .map_while(|stripe| stripe.try_lock())
                .collect();
            if held.len() == self.inner.stripes.len() {
                if let Some(tiers) = self.inner.tiers.try_lock() {
                    return Ok((held, tiers));
                }
            }
            drop(held);
            #[cfg(test)]
            self.inner
                .swap_tries
                .fetch_add(1, std::sync::atomic::Ordering::Release);
            if started.elapsed() >= self.inner.opts.open_timeout {
                return Err(Error::from(crate::TimeoutError {
                    context: "time_to_idle: waiting for the writes in flight on this directory to finish (retry once the disk answers)".into(),
                    after: started.elapsed(),
                }));
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// True if `path` holds a strata data directory: the engine directory (`<path>/fjall`) that
    /// opening one creates. It does not lock or open anything, so it also answers for a
    /// directory another process has open.
    ///
    /// ```
    /// use strata::DiskDb;
    ///
    /// let dir = tempfile::tempdir()?;
    /// assert!(!DiskDb::is_data_dir(dir.path()));
    /// drop(DiskDb::builder().dir(dir.path()).open()?);
    /// assert!(DiskDb::is_data_dir(dir.path()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_data_dir(path: impl AsRef<Path>) -> bool {
        path.as_ref().join(ENGINE_DIR).is_dir()
    }

    /// What opening the directory found: live entries, purged expired ones, foreign records.
    pub fn load_summary(&self) -> OpenSummary {
        self.inner.summary
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.opts.dir
    }

    /// Bytes the directory's files occupy on disk (the engine's journal and tables).
    pub fn disk_usage(&self) -> Result<u64> {
        dir_size(&self.inner.opts.dir).map_err(|e| {
            Error::from(crate::DataDirError {
                path: self.inner.opts.dir.clone(),
                source: e,
            })
        })
    }

    /// Waits until every write queued so far is committed (useful with [`Writes::Async`]).
    /// [`Error::Unavailable`] if one of them could not be.
    pub async fn flush(&self) -> Result<()> {
        let writer = &self.inner.writer;
        if let Some(ack) = writer.send(Vec::new(), true)? {
            writer.wait(ack).await?;
        }
        // An earlier batch of async writes may have failed while this marker waited.
        self.check()
    }

    /// Drops this handle and, if it was the directory's last (stores included), waits until
    /// the directory is closed — queued writes committed, the write buffer flushed, fsynced,
    /// the lock released — without blocking the runtime's threads.
    ///
    /// Dropping the last handle on a runtime thread does the same work on a thread of its own
    /// and returns at once; a process that exits right after (the end of `main`) would cut
    /// that work short and lose [`Writes::Async`] writes still queued. Await this (or
    /// [`DiskDb::flush`]) before exiting.
    ///
    /// ```
    /// use strata::{DiskDb, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = DiskDb::builder().dir(dir.path()).open()?;
    /// let sessions = db.store::<String, String>("sessions")?;
    /// sessions.put("abc".into(), "ada".into(), None).await?;
    /// drop(sessions);
    /// db.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) {
        let dir = self.inner.opts.dir.clone();
        drop(self);
        // Only a panic could make this fail, and `wait_for` does not panic.
        let _ = tokio::task::spawn_blocking(move || closing::wait_for(&dir)).await;
    }

    /// Writes queued for the writer thread and not yet committed (hidden: for tests that pin
    /// an interleaving, such as group commit behind a parked commit).
    #[doc(hidden)]
    pub fn queued_ops(&self) -> usize {
        self.inner.writer.queued()
    }

    /// Async writers blocked right now because the queue is over capacity (hidden: for tests
    /// that pin back-pressure).
    #[doc(hidden)]
    pub fn writers_waiting_for_room(&self) -> usize {
        self.inner.writer.waiting_for_room()
    }

    /// Flushes the engine's write buffer to tables and compacts them, dropping expired and
    /// deleted records now rather than when the engine gets to it. Blocks; run it off the async
    /// runtime's threads.
    pub fn compact(&self) -> Result<()> {
        self.inner.engine.compact()
    }

    /// True in the larger-than-memory mode: the memory tier holds a hot set, the disk all.
    pub(super) fn larger_than_memory(&self) -> bool {
        self.inner.opts.memory_capacity.is_some()
    }

    pub(super) fn sync_writes(&self) -> bool {
        self.inner.opts.writes == Writes::Sync
    }

    /// Locks `stripes` (in stripe order, so two writers never deadlock). The guards are
    /// owned: a sync write hands them to the writer thread, which drops them once the commit
    /// is applied to memory.
    pub(super) async fn lock_owned(&self, stripes: Stripes) -> Vec<OwnedStripeGuard> {
        let mut guards = Vec::new();
        for stripe in stripes.indices() {
            guards.push(self.inner.stripes[stripe].clone().lock_owned().await);
        }
        guards
    }

    /// Locks `stripes` for a write that releases them before its next await (an async
    /// write): borrowed guards, and for one key no allocation and no await when the stripe is
    /// free (`try_lock` first: a free stripe costs no `Vec`).
    pub(super) async fn lock_here(&self, stripes: Stripes) -> Held<'_> {
        if let Stripes::One(stripe) = stripes {
            let mutex = &self.inner.stripes[stripe];
            let guard = match mutex.try_lock() {
                Some(guard) => guard,
                None => mutex.lock().await,
            };
            return Held {
                _one: Some(guard),
                _many: Vec::new(),
            };
        }
        let mut many = Vec::new();
        for stripe in stripes.indices() {
            many.push(self.inner.stripes[stripe].lock().await);
        }
        Held {
            _one: None,
            _many: many,
        }
    }

    /// For an async write of one key whose stripe is free: that stripe, locked without
    /// awaiting (`None` for a sync write, several stripes or a stripe in use: lock them with
    /// [`DiskDb::lock_here`] or [`DiskDb::lock_owned`]).
    #[inline]
    pub(super) fn try_lock_here(&self, stripes: &Stripes) -> Option<Held<'_>> {
        let Stripes::One(stripe) = stripes else {
            return None;
        };
        if self.sync_writes() {
            return None;
        }
        let guard = self.inner.stripes[*stripe].try_lock()?;
        Some(Held {
            _one: Some(guard),
            _many: Vec::new(),
        })
    }

    /// The stripe lock of `key` if no write holds it (a read that promotes what it read).
    pub(super) fn try_lock_one(&self, key: &[u8]) -> Option<StripeGuard<'_>> {
        self.inner.stripes[stripe_of(key)].try_lock()
    }

    /// `Ok` while the directory takes work; [`Error::Unavailable`] after a failure it cannot
    /// recover from.
    pub(super) fn check(&self) -> Result<()> {
        self.inner.writer.health.check()
    }
}

/// Every stripe and the open tiers' map, held by a memory tier's swap.
type HeldForSwap<'a> = (
    Vec<StripeGuard<'a>>,
    parking_lot::MutexGuard<'a, HashMap<Namespace, OpenTier>>,
);

impl DbInner {
    /// The stripe lock of `disk_key` for the idle settler: waited for on its own thread; on
    /// an async runtime's thread (a close there) taken only if free.
    pub(super) fn lock_to_settle(&self, disk_key: &[u8]) -> Option<StripeGuard<'_>> {
        let mutex = &self.stripes[stripe_of(disk_key)];
        if let Some(guard) = mutex.try_lock() {
            return Some(guard);
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            return None;
        }
        self.settler.note_wait();
        Some(mutex.lock_blocking())
    }
}

/// The weigher of `namespace`'s entries: the store builder's, if it weighs `K` and `V`, else
/// the entry's encoded size on disk (key with its namespace, value, deadline).
fn weigher<K, V>(opts: &Options, namespace: &Namespace) -> Arc<WeighFn<K, V>>
where
    K: Key,
    V: Serialize + Send + Sync + 'static,
{
    if let Some(weigh) = opts.weigher.as_ref().and_then(AnyWeigher::of::<K, V>) {
        return weigh;
    }
    let (prefix, format) = (namespace.prefix(), opts.format);
    Arc::new(move |key: &K, value: &V| {
        // The value was encoded when it was written, so this cannot fail for a stored entry.
        let size = match record::put_op(&prefix, key, value, 0, format) {
            Ok(Op::Put { buf, .. }) => buf.len(),
            _ => 0,
        };
        u32::try_from(size).unwrap_or(u32::MAX)
    })
}

/// Below this many entries a namespace loads on the calling thread alone.
const PARALLEL_LOAD_MIN: usize = 32 * 1024;

/// Decodes `raw` into `mem`, on every core for a big namespace; returns the undecodable
/// entries and deletes for the records that expired since the directory was opened.
fn load_entries<K, V>(
    mem: &MemoryStore<K, V>,
    namespace: &Namespace,
    raw: &RawEntries,
    now: u64,
) -> Result<(Undecodable, Vec<Op>)>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let parts = in_parts(raw, |part| load_part(mem, namespace, raw, part, now));
    let (fills, undecodable, expired) = merge_parts(parts.into_iter().collect::<Result<Vec<_>>>()?);
    mem.fill(fills);
    Ok((undecodable, expired))
}

/// The parts of a load joined: each part's gathered entries in order, the undecodable entries
/// and the deletes of all of them.
fn merge_parts<G>(parts: Vec<(G, Undecodable, Vec<Op>)>) -> (Vec<G>, Undecodable, Vec<Op>) {
    let (mut gathered, mut undecodable, mut expired) =
        (Vec::new(), Undecodable::default(), Vec::new());
    for (g, u, e) in parts {
        gathered.push(g);
        undecodable.merge(u);
        expired.extend(e);
    }
    (gathered, undecodable, expired)
}

/// Runs `work` on `raw`'s records split in one part per core, or in one part on the calling
/// thread for a small namespace; the results in order.
fn in_parts<T: Send>(
    raw: &RawEntries,
    work: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let all = 0..raw.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || raw.len() < PARALLEL_LOAD_MIN {
        return vec![work(all)];
    }
    let per_thread = raw.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = all
            .step_by(per_thread)
            .map(|start| {
                let part = start..(start + per_thread).min(raw.len());
                scope.spawn(move || work(part))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// [`load_entries`] into a compact tier: every record is decoded once to check it still
/// decodes (as the default tier's load does), then its bytes are copied into the tier.
fn load_compact<K, V>(
    compact: &Compact<K, V>,
    namespace: &Namespace,
    raw: &RawEntries,
    now: u64,
) -> Result<(Undecodable, Vec<Op>)>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let parts = in_parts(raw, |part| {
        let mut gathered = compact.gather(part.len());
        let (mut undecodable, mut expired) = (Undecodable::default(), Vec::new());
        for index in part {
            let (raw_key, rec) = raw.get(index);
            match decode_entry::<K, V>(raw_key, rec) {
                Ok((_, _, deadline)) if record::is_expired(deadline, now) => {
                    expired.push(Op::Delete {
                        key: namespaced(namespace, raw_key),
                    });
                }
                Ok((key, _, _)) => compact.add(&mut gathered, index, raw_key, rec, &key),
                Err(reason) => undecodable.note(raw_key, reason),
            }
        }
        (gathered, undecodable, expired)
    });
    let (gathered, undecodable, expired) = merge_parts(parts);
    compact.fill(raw, gathered);
    Ok((undecodable, expired))
}

/// What one thread of a load decoded: the entries to fill the tier with, the undecodable
/// ones, the deletes for the expired ones.
type Part<K, V> = (Fill<K, V>, Undecodable, Vec<Op>);

fn load_part<K, V>(
    mem: &MemoryStore<K, V>,
    namespace: &Namespace,
    raw: &RawEntries,
    part: std::ops::Range<usize>,
    now: u64,
) -> Result<Part<K, V>>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let mut fill = mem.new_fill(part.len());
    let mut undecodable = Undecodable::default();
    let mut expired = Vec::new();
    for index in part {
        let (raw_key, rec) = raw.get(index);
        match decode_entry::<K, V>(raw_key, rec) {
            Ok((_, _, deadline)) if record::is_expired(deadline, now) => {
                expired.push(Op::Delete {
                    key: namespaced(namespace, raw_key),
                });
            }
            Ok((key, value, deadline)) => mem.add(&mut fill, key, value, deadline),
            Err(reason) => undecodable.note(raw_key, reason),
        }
    }
    Ok((fill, undecodable, expired))
}

pub(super) fn namespaced(namespace: &Namespace, key: &[u8]) -> Vec<u8> {
    let mut out = namespace.prefix();
    out.extend_from_slice(key);
    out
}

pub(super) fn decode_entry<K: Key, V: DeserializeOwned>(
    raw_key: &[u8],
    rec: &[u8],
) -> std::result::Result<(K, V, u64), String> {
    let key = K::decode_key(raw_key)?;
    let deadline = record::deadline(rec).ok_or("record too short")?;
    let value = decode_value(record::value(rec), "").map_err(|e| match e {
        Error::Decode(e) => e.reason,
        other => other.to_string(),
    })?;
    Ok((key, value, deadline))
}

/// Entries of a namespace that no longer decode: counted, the first one's reason logged. Its
/// key is not: a key can be a session id (a bearer secret), and the store's `undecodable`
/// count, the CLI's `inspect` and `scan_raw` find the entries.
#[derive(Default)]
struct Undecodable {
    count: usize,
    first: Option<(usize, String)>,
}

impl Undecodable {
    fn note(&mut self, key: &[u8], reason: String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((key.len(), reason));
        }
    }

    /// Adds what a later part of the same namespace found.
    fn merge(&mut self, later: Undecodable) {
        self.count += later.count;
        if self.first.is_none() {
            self.first = later.first;
        }
    }

    fn report(&self, namespace: &Namespace) {
        if let Some((key_bytes, reason)) = &self.first {
            tracing::warn!(%namespace, count = self.count, first_key_bytes = key_bytes, %reason, "entries on disk do not decode as this store's key/value types (did a type change?); they are skipped (reads miss) and left on disk until they expire or are overwritten");
        }
    }
}

fn open_engine(opts: &Options, started: Instant) -> Result<(FjallEngine, load::Loaded)> {
    let path = opts.dir.join(ENGINE_DIR);
    match try_open(opts, &path, started) {
        Err(e @ (Error::Corrupt { .. } | Error::LostCommits { .. }))
            if opts.on_corrupt == OnCorrupt::Discard =>
        {
            tracing::warn!(path = %path.display(), reason = %e, "the disk store is corrupt; discarding it and starting empty (on_corrupt = Discard)");
            discard(&opts.dir, &path)?;
            try_open(opts, &path, started)
        }
        other => other,
    }
}

/// Deletes the engine's directory and the commit marker that describes it.
fn discard(dir: &Path, engine: &Path) -> Result<()> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::from(crate::DataDirError { path, source })
    };
    std::fs::remove_dir_all(engine).map_err(failed(engine))?;
    let marker = dir.join(marker::FILE);
    match std::fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(&marker)(e)),
        _ => Ok(()),
    }
}

fn try_open(opts: &Options, path: &Path, started: Instant) -> Result<(FjallEngine, load::Loaded)> {
    let engine = open_fjall(path, opts, started)?;
    // Expired records the engine dropped with their namespaces at open were purged, in both
    // memory modes.
    let dropped = usize::try_from(engine.dropped_expired()).unwrap_or(usize::MAX);
    if opts.memory_capacity.is_some() {
        // Larger than memory: the tier starts cold and reads check deadlines (see the option).
        let mut loaded = load::Loaded::default();
        loaded.summary.purged = dropped;
        return Ok((engine, loaded));
    }
    // The one-time move of a format-1 directory does not count against `open_timeout`: it is
    // bounded by the directory's size, not by how the machine is doing, and a first start
    // after an upgrade that timed out on it would fail the deploy. The load after it gets the
    // whole timeout.
    let started = if engine.migrated() > 0 {
        Instant::now()
    } else {
        started
    };
    let loaded = match load::load(&engine, opts.clock.now_ms(), started, opts.open_timeout) {
        // A load timing out right after the one-time migration (done and durable by now): say
        // so, and that the next open will not repeat the move.
        Err(Error::Timeout(mut e)) if engine.migrated() > 0 => {
            e.context = format!(
                "loading the disk store after moving its {} records to format 2 (done, and kept: open it again, the next open does not move them)",
                engine.migrated()
            );
            return Err(Error::Timeout(e));
        }
        other => other?,
    };
    let mut loaded = loaded;
    loaded.summary.purged = loaded.summary.purged.saturating_add(dropped);
    Ok((engine, loaded))
}

/// Opens fjall in an owner-only directory, retrying briefly if its own lock file is still held
/// (see `lock::BUSY_WAIT`), then restricts the files it created.
fn open_fjall(path: &Path, opts: &Options, opened: Instant) -> Result<FjallEngine> {
    let data_dir = |source| {
        Error::from(crate::DataDirError {
            path: path.to_owned(),
            source,
        })
    };
    perms::create_dir(path).map_err(data_dir)?;
    let started = Instant::now();
    let engine = loop {
        let clock = opts.clock.clone();
        let recovery = (opts.accept_data_loss, opts.retire_journal_on_close);
        let cache = match opts.memory_capacity {
            Some(_) => BLOCK_CACHE_COLD,
            None => BLOCK_CACHE,
        };
        let migration = opts
            .faults
            .as_ref()
            .map(|f| f.migration())
            .unwrap_or_default();
        // Half the timeout at most for the search for dead namespaces, the rest for the load.
        let dead_scan = DeadScan {
            started: opened,
            budget: opts.open_timeout / 2,
        };
        match FjallEngine::open(
            path, &opts.dir, clock, recovery, cache, migration, dead_scan,
        ) {
            Err(Error::DirLocked { .. }) if started.elapsed() < lock::BUSY_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other?,
        }
    };
    perms::restrict_tree(&opts.dir).map_err(data_dir)?;
    Ok(engine)
}

fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            allocated(&meta)
        };
    }
    Ok(total)
}
