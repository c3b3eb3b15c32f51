//! `fetch`: read through to a loader on a miss, with one loader call per key however many tasks
//! wait (single flight), as Cachex's Courier does.
//!
//! In-flight keys live in a map from key to a `watch` receiver. The first caller to miss becomes
//! the leader: it re-checks the store (cachex#347: another leader may have committed between our
//! miss and now), runs the loader in place, writes the value, then publishes the outcome to every
//! waiter. The leader's drop guard removes the key from the map whatever happens, so a loader
//! that panics (caught and reported to every waiter) or a leader whose future is dropped
//! (cancelled: its waiters see the channel close and one of them leads again) never wedges the
//! key (cachex#220).
//!
//! **Writes during a load win** (issue 12, item 6). Every cache write or delete of a key marks
//! that key's flight stale before it touches the store (`invalidate.rs`). The leader checks the
//! mark and writes its value under the key's commit lock; a writer that found a flight takes the
//! same lock around its store write. So either the writer marked first (the leader sees it and
//! does not commit), or the leader's commit landed first (the writer's write lands after it).
//! Either way the older loaded value never outlives a put or delete made during the load. The
//! loaded value is still returned to the leader and every waiter: it is what they asked for. A
//! write that started before the load was registered needs no mark: its caller changed the data
//! source first, so the loader, which starts later, reads the new data.
//!
//! **Across processes** (opt-in, `lease.rs`): with a distributed fetch the local leader is only
//! the first stage; it then takes a cluster-wide lease so one node runs the loader while the
//! other nodes' leaders wait for its notice, or take over when the lease lapses.

use std::{
    any::Any,
    fmt,
    future::Future,
    hash::Hash,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, watch};

use super::{
    cache::Cache,
    lease::{wait_notice, ClusterFetch, Holder, Leases, Notice, Outcome},
};
use crate::{error::Error, stats::Counter as Stat, store::Store};

/// What a loader passed to [`Cache::fetch`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Load<V> {
    /// Cache this value with the cache's default TTL and return it.
    Commit(V),
    /// Cache this value with its own TTL and return it.
    CommitFor(V, Duration),
    /// Return this value to every waiter without caching it.
    Ignore(V),
    /// Nothing exists for this key: return `None`, and with a `negative_ttl` remember the
    /// absence so the next fetches do not call the loader again (against enumeration).
    NotFound,
}

/// Why [`Cache::fetch`] failed.
#[derive(Debug)]
pub enum FetchError<E> {
    /// The loader returned this error; every waiting caller shares it. Nothing was cached.
    Load(Arc<E>),
    /// The store failed, or the loader panicked ([`Error::Loader`]) or timed out
    /// ([`Error::Timeout`]). Nothing was cached.
    Cache(Arc<Error>),
}

impl<E> FetchError<E> {
    fn cache(error: Error) -> Self {
        FetchError::Cache(Arc::new(error))
    }
}

impl<E> Clone for FetchError<E> {
    fn clone(&self) -> Self {
        match self {
            FetchError::Load(e) => FetchError::Load(e.clone()),
            FetchError::Cache(e) => FetchError::Cache(e.clone()),
        }
    }
}

impl<E> From<Error> for FetchError<E> {
    fn from(error: Error) -> Self {
        FetchError::cache(error)
    }
}

impl<E: fmt::Display> fmt::Display for FetchError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Load(e) => write!(f, "the loader failed: {e}"),
            FetchError::Cache(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for FetchError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Load(e) => Some(&**e),
            FetchError::Cache(e) => Some(&**e),
        }
    }
}

/// The outcome a leader publishes to its waiters. The loader's error type is erased, since
/// concurrent fetches of one key may pass different loaders.
#[derive(Clone)]
pub(super) enum Shared<V> {
    Value(Option<V>),
    LoadError(Arc<dyn Any + Send + Sync>),
    Failed(Arc<Error>),
}

impl<V> Shared<V> {
    pub(super) fn into_result<E: Send + Sync + 'static>(
        self,
        key: &impl fmt::Debug,
    ) -> Result<Option<V>, FetchError<E>> {
        match self {
            Shared::Value(v) => Ok(v),
            Shared::Failed(e) => Err(FetchError::Cache(e)),
            Shared::LoadError(e) => Err(e.downcast::<E>().map_or_else(
                |_| {
                    FetchError::cache(Error::from(crate::LoaderError {
                        key: format!("{key:?}"),
                        reason: "a concurrent fetch of this key used a loader with another error \
                                 type, and it failed"
                            .into(),
                    }))
                },
                FetchError::Load,
            )),
        }
    }
}

pub(super) type Slot<V> = watch::Receiver<Option<Shared<V>>>;

/// A key being loaded: its leader's id, the channel its outcome arrives on, and whether a write
/// or delete of the key has happened since the load began (then the leader must not commit).
pub(super) struct Flight<V> {
    id: u64,
    rx: Slot<V>,
    pub(super) stale: Arc<AtomicBool>,
}

pub(super) enum Role<K: Hash + Eq, V, S> {
    Wait(Slot<V>),
    Lead(Leader<K, V, S>),
}

/// The caller that runs the loader. Dropping it (done, panicked or cancelled) releases the key.
/// It owns a handle on the cache (one `Arc`), so a background refresh can move it into a task.
pub(super) struct Leader<K: Hash + Eq, V, S> {
    cache: Cache<K, V, S>,
    pub(super) key: K,
    id: u64,
    tx: watch::Sender<Option<Shared<V>>>,
    stale: Arc<AtomicBool>,
}

impl<K: Hash + Eq, V, S> Leader<K, V, S> {
    /// True if a write or delete of the key happened since the load began. Read under the
    /// key's commit lock, which every writer that marked the flight also takes.
    pub(super) fn overtaken(&self) -> bool {
        self.stale.load(Ordering::SeqCst)
    }

    pub(super) fn finish(self, outcome: Shared<V>) {
        self.tx.send_replace(Some(outcome));
    }

    pub(super) fn fail<E>(self, error: Error) -> FetchError<E> {
        let error = Arc::new(error);
        self.tx.send_replace(Some(Shared::Failed(error.clone())));
        FetchError::Cache(error)
    }
}

impl<K: Hash + Eq, V, S> Drop for Leader<K, V, S> {
    fn drop(&mut self) {
        let mut flights = self.cache.inner.flights.lock();
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
            self.cache.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Polls a loader's future, turning a panic into an error message.
pub(super) struct CatchUnwind<F: ?Sized>(pub(super) Pin<Box<F>>);

impl<F: Future + ?Sized> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.get_mut().0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic_message(panic))),
        }
    }
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => panic
            .downcast::<&'static str>()
            .map(|s| (*s).to_owned())
            .unwrap_or_else(|_| "a non-string panic payload".to_owned()),
    }
}

static NEXT_FLIGHT: AtomicU64 = AtomicU64::new(0);

pub(super) type LoadResult<V, E> = Result<Result<Load<V>, E>, Error>;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + fmt::Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// The value under `key`, or on a miss the loader's: exactly one loader runs per key however
    /// many callers wait for it, and all of them get its outcome.
    ///
    /// The loader returns a [`Load`] (commit, commit with a TTL, ignore, not found) or an error,
    /// which reaches every waiter as [`FetchError::Load`] and is not cached. A loader that panics
    /// or exceeds `load_timeout` gives every waiter [`FetchError::Cache`]; the key is released
    /// either way, so the next fetch retries. Loader time is counted in the stats.
    ///
    /// A loader may fetch other keys of the same cache, but not its own key: it would wait for
    /// itself (set `load_timeout` to turn such a bug into an error).
    ///
    /// The loader is `Send + 'static` (it owns what it uses) because with
    /// [`refresh_after`](super::CacheBuilder::refresh_after) a stale hit hands it to a
    /// background task.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use std::time::Duration;
    /// use strata::{Cache, Load, MemoryStore};
    ///
    /// let cache = Cache::builder()
    ///     .store(MemoryStore::<String, String>::new())
    ///     .negative_ttl(Duration::from_secs(60))
    ///     .build()
    ///     .await?;
    /// let user = cache
    ///     .fetch("token-1".to_string(), |token| async move {
    ///         // Query the database here; `?` works with your own error type.
    ///         Ok::<_, std::io::Error>(Load::Commit(format!("user of {token}")))
    ///     })
    ///     .await;
    /// assert_eq!(user.ok().flatten().as_deref(), Some("user of token-1"));
    ///
    /// // An unknown token: the absence is cached, so a second try skips the database.
    /// let none = cache.fetch("bogus".into(), |_| async { Ok::<_, std::io::Error>(Load::NotFound) });
    /// assert!(matches!(none.await, Ok(None)));
    /// let again = cache.fetch("bogus".into(), |_| async { unreachable!("cached absence") });
    /// assert!(matches!(again.await, Ok::<_, strata::FetchError<std::io::Error>>(None)));
    /// assert_eq!(cache.stats().loads, 2);
    /// # Ok(()) }
    /// ```
    pub async fn fetch<F, Fut, E>(&self, key: K, loader: F) -> Result<Option<V>, FetchError<E>>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Load<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        // The hit path stays small; the single-flight machinery is boxed, paid only on a miss.
        if let Some(value) = self.get(&key).await? {
            if self.inner.refresh_after.is_some() {
                Box::pin(self.refresh_if_stale(key, loader)).await;
            }
            return Ok(Some(value));
        }
        Box::pin(self.fetch_missed(key, loader)).await
    }

    async fn fetch_missed<F, Fut, E>(&self, key: K, loader: F) -> Result<Option<V>, FetchError<E>>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Load<V>, E>>,
        E: Send + Sync + 'static,
    {
        loop {
            if self.is_known_absent(&key) {
                return Ok(None);
            }
            let rx = match self.join_or_lead(&key) {
                Role::Lead(leader) => return self.lead(leader, loader).await,
                Role::Wait(rx) => rx,
            };
            if let Some(outcome) = wait(rx).await {
                return outcome.into_result(&key);
            }
            // The leader was cancelled: read again, then wait for another leader or lead.
            if let Some(value) = self.get(&key).await? {
                return Ok(Some(value));
            }
        }
    }

    pub(super) fn is_known_absent(&self, key: &K) -> bool {
        self.inner
            .negatives
            .as_ref()
            .is_some_and(|negatives| negatives.contains(key))
    }

    pub(super) fn join_or_lead(&self, key: &K) -> Role<K, V, S> {
        let mut flights = self.inner.flights.lock();
        if let Some(flight) = flights.get(key) {
            return Role::Wait(flight.rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        let id = NEXT_FLIGHT.fetch_add(1, Ordering::Relaxed);
        let stale = Arc::new(AtomicBool::new(false));
        let flight = Flight {
            id,
            rx,
            stale: stale.clone(),
        };
        flights.insert(key.clone(), flight);
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        Role::Lead(Leader {
            cache: self.clone(),
            key: key.clone(),
            id,
            tx,
            stale,
        })
    }

    async fn lead<F, Fut, E>(
        &self,
        leader: Leader<K, V, S>,
        loader: F,
    ) -> Result<Option<V>, FetchError<E>>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Load<V>, E>>,
        E: Send + Sync + 'static,
    {
        // Listen before reading: a holder elsewhere that stores after our read is heard.
        let mut notices = self.inner.cluster.as_ref().map(|c| c.leases.listen());
        // cachex#347: a leader that finished just before we took the lead has written the value.
        match self.inner.store.get(&leader.key).await {
            Ok(Some(value)) => {
                leader.finish(Shared::Value(Some(value.clone())));
                return Ok(Some(value));
            }
            Ok(None) if self.is_known_absent(&leader.key) => {
                leader.finish(Shared::Value(None));
                return Ok(None);
            }
            Ok(None) => {}
            Err(e) => return Err(leader.fail(e)),
        }
        let lease = match (&self.inner.cluster, notices.as_mut()) {
            (Some(cluster), Some(notices)) => {
                match self.cluster_lead(cluster, &leader.key, notices).await {
                    Ok(Cluster::Lead(lease)) => Some(lease),
                    Ok(Cluster::Found(value)) => {
                        leader.finish(Shared::Value(Some(value.clone())));
                        return Ok(Some(value));
                    }
                    Ok(Cluster::Absent) => return self.remember_absence(leader).await,
                    Err(e) => return Err(leader.fail(e)),
                }
            }
            _ => None,
        };
        drop(notices); // not needed while this node loads: let the channel forget for it
        let outcome = self.run_loader(&leader.key, loader).await;
        let told = told_others(&outcome);
        let result = self.settle(leader, outcome).await;
        if let Some(lease) = lease {
            lease
                .release(if result.is_ok() {
                    told
                } else {
                    Outcome::Nothing
                })
                .await;
        }
        result
    }

    /// The cluster-wide stage (see `lease.rs`): takes the lease, or waits for its holder's
    /// notice (at most the lease's remaining time) and reads the store again, until this node
    /// leads or another node's outcome answers.
    async fn cluster_lead(
        &self,
        cluster: &ClusterFetch<K>,
        key: &K,
        notices: &mut broadcast::Receiver<Notice>,
    ) -> Result<Cluster<V>, Error> {
        let stored = cluster.stored_key(key);
        let leases = &cluster.leases;
        loop {
            if let Some(token) = leases.acquire(&stored).await? {
                let lease = HeldLease {
                    leases: leases.clone(),
                    key: stored,
                    token,
                    absent_for: self.inner.negative_ttl,
                    released: false,
                };
                return self.lead_unless_stored(key, lease).await;
            }
            let heard = match leases.holder(&stored).await? {
                Holder::Absent => return Ok(Cluster::Absent),
                // Released since our attempt: its value, if any, is in the store now.
                Holder::Free => None,
                Holder::Loading(left) => {
                    let _waiting = Waiting::new(&**leases);
                    wait_notice(notices, &stored, left).await
                }
            };
            if heard == Some(Outcome::Absent) {
                return Ok(Cluster::Absent);
            }
            if let Some(value) = self.inner.store.get(key).await? {
                return Ok(Cluster::Found(value));
            }
        }
    }

    /// With the lease held, reads the store once more: another node may have loaded, stored
    /// and released the key between this node's last read and its `acquire` (then the lease
    /// was free); loading again would run the loader twice and overwrite that value (test
    /// `a_lease_taken_after_another_node_loaded_reads_that_value`). A failed read drops the
    /// lease, which releases it.
    async fn lead_unless_stored(&self, key: &K, lease: HeldLease) -> Result<Cluster<V>, Error> {
        match self.inner.store.get(key).await? {
            Some(value) => {
                lease.release(Outcome::Stored).await;
                Ok(Cluster::Found(value))
            }
            None => Ok(Cluster::Lead(lease)),
        }
    }

    pub(super) async fn run_loader<F, Fut, E>(&self, key: &K, loader: F) -> LoadResult<V, E>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Load<V>, E>>,
    {
        let started = Instant::now();
        let result = self.call_loader(key, loader).await;
        self.count(Stat::Loads, 1);
        self.count(Stat::LoadNanos, started.elapsed().as_nanos() as u64);
        result.map_err(|reason| match reason {
            LoaderFailure::Panicked(message) => Error::from(crate::LoaderError {
                key: format!("{key:?}"),
                reason: format!("the loader panicked: {message}"),
            }),
            LoaderFailure::TimedOut(after) => Error::from(crate::TimeoutError {
                context: format!("loading key {key:?}"),
                after,
            }),
        })
    }

    async fn call_loader<F, Fut, E>(
        &self,
        key: &K,
        loader: F,
    ) -> Result<Result<Load<V>, E>, LoaderFailure>
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Load<V>, E>>,
    {
        self.guard_loader(|| loader(key.clone())).await
    }

    /// Builds and runs a loader's future: a panic while building or polling it, or the
    /// `load_timeout`, becomes a [`LoaderFailure`].
    pub(super) async fn guard_loader<M, Fut>(&self, make: M) -> Result<Fut::Output, LoaderFailure>
    where
        M: FnOnce() -> Fut,
        Fut: Future,
    {
        let future = catch_unwind(AssertUnwindSafe(make))
            .map_err(|panic| LoaderFailure::Panicked(panic_message(panic)))?;
        let guarded = CatchUnwind(Box::pin(future));
        let result = match self.inner.load_timeout {
            None => guarded.await,
            Some(after) => tokio::time::timeout(after, guarded)
                .await
                .map_err(|_| LoaderFailure::TimedOut(after))?,
        };
        result.map_err(LoaderFailure::Panicked)
    }

    pub(super) async fn settle<E: Send + Sync + 'static>(
        &self,
        leader: Leader<K, V, S>,
        outcome: LoadResult<V, E>,
    ) -> Result<Option<V>, FetchError<E>> {
        match outcome {
            Ok(Ok(load)) => self.commit(leader, load).await,
            Ok(Err(error)) => {
                self.count(Stat::LoadErrors, 1);
                let error = Arc::new(error);
                leader.finish(Shared::LoadError(error.clone()));
                Err(FetchError::Load(error))
            }
            Err(error) => {
                self.count(Stat::LoadErrors, 1);
                Err(leader.fail(error))
            }
        }
    }

    pub(super) async fn commit<E>(
        &self,
        leader: Leader<K, V, S>,
        load: Load<V>,
    ) -> Result<Option<V>, FetchError<E>> {
        let (value, ttl) = match load {
            Load::Commit(value) => (value, self.inner.ttl),
            Load::CommitFor(value, ttl) => (value, Some(ttl)),
            Load::Ignore(value) => {
                leader.finish(Shared::Value(Some(value.clone())));
                return Ok(Some(value));
            }
            Load::NotFound => return self.remember_absence(leader).await,
        };
        let _commit = self.inner.commit_locks.lock(&leader.key).await;
        if leader.overtaken() {
            // A put or delete made during the load is newer than what the loader read.
            leader.finish(Shared::Value(Some(value.clone())));
            return Ok(Some(value));
        }
        let key = leader.key.clone();
        match self.inner.store.put(key, value.clone(), ttl).await {
            Ok(()) => {
                self.count(Stat::Writes, 1);
                leader.finish(Shared::Value(Some(value.clone())));
                Ok(Some(value))
            }
            Err(e) => Err(leader.fail(e)),
        }
    }

    pub(super) async fn remember_absence<E>(
        &self,
        leader: Leader<K, V, S>,
    ) -> Result<Option<V>, FetchError<E>> {
        let _commit = self.inner.commit_locks.lock(&leader.key).await;
        let remember = (&self.inner.negatives, self.inner.negative_ttl);
        if let (Some(negatives), Some(ttl), false) = (remember.0, remember.1, leader.overtaken()) {
            if let Err(e) = negatives.put(leader.key.clone(), (), Some(ttl)) {
                return Err(leader.fail(e));
            }
        }
        leader.finish(Shared::Value(None));
        Ok(None)
    }
}

/// Where the cluster-wide stage ended.
enum Cluster<V> {
    /// This node holds the lease: run the loader.
    Lead(HeldLease),
    /// Another node stored the value meanwhile.
    Found(V),
    /// Another node's loader found nothing.
    Absent,
}

/// What the lease holder publishes for a loader's outcome (if its commit succeeds).
fn told_others<V, E>(outcome: &LoadResult<V, E>) -> Outcome {
    match outcome {
        Ok(Ok(Load::Commit(_) | Load::CommitFor(..))) => Outcome::Stored,
        Ok(Ok(Load::NotFound)) => Outcome::Absent,
        _ => Outcome::Nothing,
    }
}

/// A cluster-wide lease this node holds. Released (compare-and-delete plus the outcome's
/// notice) when the load is settled; a holder dropped before that (its fetch was cancelled)
/// releases it from a spawned task with [`Outcome::Nothing`], so the others need not wait for
/// the lease to lapse.
struct HeldLease {
    leases: Arc<dyn Leases>,
    key: Vec<u8>,
    token: u64,
    /// The cache's `negative_ttl`: how long a "not found" may stay as an absence marker.
    absent_for: Option<Duration>,
    released: bool,
}

impl HeldLease {
    /// Releases the lease; a failure is logged (the lease then lapses by its TTL).
    async fn release(mut self, outcome: Outcome) {
        self.released = true;
        let absent_for = self.absent_for.filter(|_| outcome == Outcome::Absent);
        let released = self
            .leases
            .release(&self.key, self.token, outcome, absent_for)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not release a fetch lease; it lapses by its TTL");
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (leases, key, token) = (
            self.leases.clone(),
            std::mem::take(&mut self.key),
            self.token,
        );
        runtime.spawn(async move {
            let _ = leases.release(&key, token, Outcome::Nothing, None).await;
        });
    }
}

/// Counts this fetch among those waiting for another node's lease while it lives.
struct Waiting<'a>(&'a dyn Leases);

impl<'a> Waiting<'a> {
    fn new(leases: &'a dyn Leases) -> Self {
        leases.waiting(1);
        Waiting(leases)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting(-1);
    }
}

pub(super) enum LoaderFailure {
    Panicked(String),
    TimedOut(Duration),
}

/// Waits for a leader's outcome; `None` if the leader went away without one (cancelled).
pub(super) async fn wait<V: Clone>(mut rx: Slot<V>) -> Option<Shared<V>> {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}
