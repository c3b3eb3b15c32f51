//! The `Store` contract: Pow's four operations, plus provided methods with correct defaults.
//!
//! A store is where entries live (memory, disk, Redis, ...). It is async with static dispatch:
//! every method returns `impl Future + Send`, so there is no boxing on the hot path and the
//! in-memory stores' futures are ready at once. Only `put`, `get`, `delete` and `keys` are
//! required; the rest have defaults built from those four, which a store overrides where it can
//! be atomic or faster.
//!
//! **Atomicity of the defaults.** The provided `take`, `put_new`, `replace`, `incr`/`decr`,
//! `incr_with_ttl`, `compare_and_set`, `expire`, `persist` and `clear` are *not* atomic: they are a read followed by a write, and a concurrent
//! writer can slip in between. Every store in strata overrides them with atomic versions
//! (a shard lock in memory, `GETDEL`/`INCRBY`/`SET NX` in Redis); a store of your own inherits the
//! non-atomic defaults until it overrides them.

use std::{future::Future, time::Duration};

use crate::{
    codec::Key,
    error::{Error, Result},
    namespace::Namespace,
    stats::StatsRecorder,
};

/// True if `key`'s encoded form starts with `prefix` (what [`Store::keys_with_prefix`] matches).
pub fn key_has_prefix<K: Key>(key: &K, prefix: &[u8]) -> bool {
    let mut encoded = Vec::new();
    key.encode_key(&mut encoded);
    encoded.starts_with(prefix)
}

/// Remaining lifetime of an entry, as returned by [`Store::ttl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// The entry never expires.
    Never,
    /// The entry expires after this much more time.
    In(Duration),
}

impl Expiry {
    /// The remaining time, or `None` for [`Expiry::Never`].
    pub fn remaining(self) -> Option<Duration> {
        match self {
            Expiry::Never => None,
            Expiry::In(d) => Some(d),
        }
    }
}

impl Expiry {
    /// A Redis `PTTL` reply as an expiry: `-1` is a key without a TTL, `-2` (or any other
    /// negative) is no key, and `0` counts as no key too (it expires within the millisecond, and
    /// a zero TTL is not a TTL strata can write). The one mapping of TTL replies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::Expiry;
    /// assert_eq!(Expiry::from_pttl(-1), Some(Expiry::Never));
    /// assert_eq!(Expiry::from_pttl(-2), None);
    /// assert_eq!(Expiry::from_pttl(0), None);
    /// assert_eq!(Expiry::from_pttl(1500), Some(Expiry::In(Duration::from_millis(1500))));
    /// ```
    pub fn from_pttl(ms: i64) -> Option<Expiry> {
        match ms {
            -1 => Some(Expiry::Never),
            ms if ms <= 0 => None,
            ms => Some(Expiry::In(Duration::from_millis(ms.unsigned_abs()))),
        }
    }
}

/// A message for other nodes about a write, which a store may send together with the write
/// (see [`Store::put_and_notify`]): Redis pub/sub's `PUBLISH channel payload`.
#[derive(Clone, Copy, Debug)]
pub struct Notice<'a> {
    /// The pub/sub channel.
    pub channel: &'a str,
    /// The message.
    pub payload: &'a [u8],
}

/// One write of a batch sent with [`Store::write_many_and_notify`].
///
/// ```
/// use std::time::Duration;
/// use strata::BatchWrite;
///
/// let writes: Vec<BatchWrite<String, String>> = vec![
///     BatchWrite::Put { key: "a".into(), value: "1".into(), ttl: Some(Duration::from_secs(60)) },
///     BatchWrite::Delete("b".into()),
/// ];
/// assert_eq!(writes[1].key(), "b");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchWrite<K, V> {
    /// [`Store::put`]: `value` under `key`, with its own `ttl`.
    Put {
        /// The key.
        key: K,
        /// The value.
        value: V,
        /// This write's TTL (`None`: no expiry).
        ttl: Option<Duration>,
    },
    /// [`Store::delete`] of the key.
    Delete(K),
}

impl<K, V> BatchWrite<K, V> {
    /// The key this write changes.
    pub fn key(&self) -> &K {
        match self {
            BatchWrite::Put { key, .. } | BatchWrite::Delete(key) => key,
        }
    }
}

/// Integer values that [`Store::incr`] and [`Store::decr`] can count with.
pub trait Counter: Sized + Send + Sync {
    /// The value of a counter that did not exist yet.
    fn zero() -> Self;
    /// `self + delta`, or `None` on overflow.
    fn add(&self, delta: i64) -> Option<Self>;
    /// This value as an `i64`, if it fits.
    fn to_i64(&self) -> Option<i64>;
    /// An `i64` as this type, if it fits.
    fn from_i64(value: i64) -> Option<Self>;
}

macro_rules! counter {
    ($($t:ty),*) => {$(
        impl Counter for $t {
            fn zero() -> Self { 0 }
            fn add(&self, delta: i64) -> Option<Self> {
                let sum = i128::from(*self).checked_add(i128::from(delta))?;
                <$t>::try_from(sum).ok()
            }
            fn to_i64(&self) -> Option<i64> { i64::try_from(*self).ok() }
            fn from_i64(value: i64) -> Option<Self> { <$t>::try_from(value).ok() }
        }
    )*};
}
counter!(i8, i16, i32, i64, u8, u16, u32, u64);

/// What one [`Store::gcra`] step found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcraStep {
    /// The theoretical arrival time the step found, in ms on the caller's timeline: the stored
    /// one, or `now_ms` if that is later or nothing was stored.
    pub tat_ms: u64,
    /// True if the request conforms (`tat_ms - now_ms <= tolerance_ms`): the store then holds
    /// `tat_ms + interval_ms`, expiring when the caller's clock reaches it. False: nothing was
    /// written.
    pub allowed: bool,
}

/// How many times the default [`Store::gcra`] re-reads a state that other writers keep changing.
const GCRA_ATTEMPTS: usize = 1_000;

/// [`Store::gcra`] as a read and a [`Store::compare_and_set`] against the value read, again
/// while another writer changes the key in between: exact wherever `compare_and_set` is. A
/// refused write means another step was admitted, and a denied step writes nothing, so every
/// round admits someone until the burst is used up; the retries are bounded all the same.
pub(crate) async fn gcra_by_compare_and_set<K, V, S>(
    store: &S,
    key: &K,
    now_ms: u64,
    interval_ms: u64,
    tolerance_ms: u64,
) -> Result<GcraStep>
where
    K: Clone + Send + Sync + std::fmt::Debug,
    V: Counter + PartialEq + Clone,
    S: Store<K, V> + ?Sized,
{
    let overflow = || Error::Overflow {
        key: format!("{key:?}").into(),
    };
    for _ in 0..GCRA_ATTEMPTS {
        let stored = store.get(key).await?;
        let tat = stored
            .as_ref()
            .and_then(Counter::to_i64)
            .map_or(now_ms, |t| u64::try_from(t).unwrap_or(0))
            .max(now_ms);
        if tat - now_ms > tolerance_ms {
            return Ok(GcraStep {
                tat_ms: tat,
                allowed: false,
            });
        }
        let next = tat.checked_add(interval_ms).ok_or_else(overflow)?;
        let value = i64::try_from(next)
            .ok()
            .and_then(V::from_i64)
            .ok_or_else(overflow)?;
        let ttl = Some(Duration::from_millis((next - now_ms).max(1)));
        if store
            .compare_and_set(key.clone(), stored, value, ttl)
            .await?
        {
            return Ok(GcraStep {
                tat_ms: tat,
                allowed: true,
            });
        }
    }
    Err(Error::backend(
        format!("a GCRA step on {key:?}"),
        format!("its state changed under every one of {GCRA_ATTEMPTS} attempts; retry the request"),
    ))
}

impl Counter for isize {
    fn zero() -> Self {
        0
    }
    fn add(&self, delta: i64) -> Option<Self> {
        (*self as i64).checked_add(delta).map(|v| v as isize)
    }
    fn to_i64(&self) -> Option<i64> {
        Some(*self as i64)
    }
    fn from_i64(value: i64) -> Option<Self> {
        isize::try_from(value).ok()
    }
}

impl Counter for usize {
    fn zero() -> Self {
        0
    }
    fn add(&self, delta: i64) -> Option<Self> {
        (*self as u64)
            .add(delta)
            .and_then(|v| usize::try_from(v).ok())
    }
    fn to_i64(&self) -> Option<i64> {
        i64::try_from(*self).ok()
    }
    fn from_i64(value: i64) -> Option<Self> {
        usize::try_from(value).ok()
    }
}

/// Where entries live: Pow's four operations and everything built on them.
///
/// `ttl: None` means the entry never expires; a zero TTL is [`Error::InvalidTtl`]. An expired
/// entry is never returned by any method, whether or not a background sweeper has removed it.
///
/// # Writing your own store
///
/// Four methods are enough, as in Pow's Redis guide. This one keeps entries in a `HashMap` and
/// ignores TTLs (a real store must honour them):
///
/// ```
/// use std::{collections::HashMap, future::Future, sync::Mutex, time::Duration};
/// use strata::{Error, Result, Store};
///
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<String, String>>);
///
/// impl MapStore {
///     fn map(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, String>>> {
///         self.0.lock().map_err(|_| Error::Closed { reason: "a writer panicked".into() })
///     }
/// }
///
/// impl Store<String, String> for MapStore {
///     fn put(&self, key: String, value: String, ttl: Option<Duration>) -> impl Future<Output = Result<()>> + Send {
///         let result = strata::check_ttl(ttl).and_then(|_| Ok(self.map()?.insert(key, value)).map(|_| ()));
///         std::future::ready(result)
///     }
///     fn get(&self, key: &String) -> impl Future<Output = Result<Option<String>>> + Send {
///         std::future::ready(self.map().map(|m| m.get(key).cloned()))
///     }
///     fn delete(&self, key: &String) -> impl Future<Output = Result<bool>> + Send {
///         std::future::ready(self.map().map(|mut m| m.remove(key).is_some()))
///     }
///     fn keys(&self) -> impl Future<Output = Result<Vec<String>>> + Send {
///         std::future::ready(self.map().map(|m| m.keys().cloned().collect()))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let store = MapStore::default();
/// store.put("key".into(), "value".into(), None).await?;
/// assert_eq!(store.get(&"key".into()).await?, Some("value".into()));
/// // Provided methods work at once (not atomically; see the module docs):
/// assert_eq!(store.take(&"key".into()).await?, Some("value".into()));
/// assert_eq!(store.count().await?, 0);
/// # Ok(()) }
/// ```
pub trait Store<K, V>: Send + Sync
where
    K: Clone + Send + Sync,
    V: Send + Sync,
{
    /// Writes `value` under `key`, replacing any previous value and TTL.
    fn put(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The live value under `key`, if any.
    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send;

    /// [`Store::get`] answered at once, without a future, where the store can: `Some(result)` is
    /// exactly what `get` would have returned (and counted), `None` means this read has to wait
    /// (a network round trip, a cold read from disk) and the caller must use `get` instead, which
    /// counts it once. A `None` counts nothing.
    ///
    /// [`Cache::get`](crate::Cache::get) tries it first, so a read of an in-memory entry costs a
    /// function call rather than a future. Default: `None` (a store of your own need not
    /// override it). The in-memory stores, the memory tier of a [`DiskStore`](crate::DiskStore)
    /// and a [`Cache`](crate::Cache) over any of them answer every read; Redis never does.
    ///
    /// ```
    /// use strata::{MemoryStore, Store};
    /// # fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, u32>::new();
    /// store.put("a".into(), 1, None)?;
    /// assert_eq!(Store::get_now(&store, &"a".into()).transpose()?, Some(Some(1)));
    /// assert_eq!(Store::get_now(&store, &"b".into()).transpose()?, Some(None));
    /// # Ok(()) }
    /// ```
    fn get_now(&self, key: &K) -> Option<Result<Option<V>>> {
        let _ = key;
        None
    }

    /// [`Store::get_now`] for a [`Cache`](crate::Cache) over this store, counting the read on
    /// the Cache's `stats` as well (a read, and a miss when nothing is found; nothing when the
    /// store declines or fails). An implementation detail of `Cache::get`: the default counts
    /// around `get_now`, and the `MemoryStore` counts both its own stats and `stats` in one
    /// lookup of the thread's stats stripe. A store of your own need not override it.
    #[doc(hidden)]
    #[inline(always)]
    fn get_now_counting(&self, key: &K, stats: &StatsRecorder) -> Option<Result<Option<V>>> {
        // Counted before the lookup; the guard takes the read back when the store cannot
        // answer now (or fails, or panics).
        let read = stats.begin_read();
        let value = match self.get_now(key)? {
            Ok(value) => value,
            Err(e) => return Some(Err(e)),
        };
        read.settle(value.is_some());
        Some(Ok(value))
    }

    /// Removes `key`; true if a live entry was removed.
    fn delete(&self, key: &K) -> impl Future<Output = Result<bool>> + Send;

    /// Every live key, in no particular order.
    fn keys(&self) -> impl Future<Output = Result<Vec<K>>> + Send;

    /// True if `key` has a live entry.
    fn contains(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        async move { Ok(self.get(key).await?.is_some()) }
    }

    /// Removes `key` and returns its value. Default: `get` then `delete` (not atomic).
    fn take(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        async move {
            let value = self.get(key).await?;
            if value.is_some() && !self.delete(key).await? {
                return Ok(None);
            }
            Ok(value)
        }
    }

    /// Writes `value` only if `key` has no live entry; true if written. Default: not atomic.
    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        async move {
            crate::time::check_ttl(ttl)?;
            if self.contains(&key).await? {
                return Ok(false);
            }
            self.put(key, value, ttl).await?;
            Ok(true)
        }
    }

    /// The live values of `keys`, in the same order.
    fn get_many(&self, keys: &[K]) -> impl Future<Output = Result<Vec<Option<V>>>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get(key).await?);
            }
            Ok(out)
        }
    }

    /// The live values of `keys` with their remaining lifetimes, in the same order, read
    /// together where the store can (one pipeline of `MGET` + `PTTL`s per cluster slot in
    /// Redis). A replicated store fills its local misses with it in one round trip.
    ///
    /// Default: [`Store::get_with_ttl`] for each key.
    ///
    /// ```
    /// use strata::{Expiry, MemoryStore, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, u32>::builder().build()?;
    /// Store::put(&store, "a".into(), 1, None).await?;
    /// let got = Store::get_many_with_ttl(&store, &["a".into(), "b".into()]).await?;
    /// assert_eq!(got, [Some((1, Expiry::Never)), None]);
    /// # Ok(()) }
    /// ```
    fn get_many_with_ttl(
        &self,
        keys: &[K],
    ) -> impl Future<Output = Result<Vec<Option<(V, Expiry)>>>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get_with_ttl(key).await?);
            }
            Ok(out)
        }
    }

    /// Writes every entry with the same TTL.
    fn put_many(
        &self,
        entries: Vec<(K, V)>,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send
    where
        V: 'static,
        K: 'static,
    {
        async move {
            crate::time::check_ttl(ttl)?;
            for (key, value) in entries {
                self.put(key, value, ttl).await?;
            }
            Ok(())
        }
    }

    /// Deletes every key in `keys`; returns how many live entries were removed.
    fn delete_many(&self, keys: &[K]) -> impl Future<Output = Result<usize>> + Send {
        async move {
            let mut removed = 0;
            for key in keys {
                removed += usize::from(self.delete(key).await?);
            }
            Ok(removed)
        }
    }

    /// The remaining lifetime of `key`, or `None` if it has no live entry.
    ///
    /// Default: [`Error::Unsupported`], since the four required methods carry no TTLs.
    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<Expiry>>> + Send {
        let _ = key;
        std::future::ready(Err(Error::Unsupported { operation: "ttl" }))
    }

    /// The live value under `key` together with its remaining lifetime, read together where the
    /// store can (one lock in memory, one round trip in Redis). A replicated store uses it so a
    /// local copy never outlives the TTL it was read with. Default: `get`, then `ttl` (not atomic;
    /// a store without TTL support reports [`Expiry::Never`]).
    fn get_with_ttl(&self, key: &K) -> impl Future<Output = Result<Option<(V, Expiry)>>> + Send {
        async move {
            let Some(value) = self.get(key).await? else {
                return Ok(None);
            };
            match self.ttl(key).await {
                Ok(Some(expiry)) => Ok(Some((value, expiry))),
                Ok(None) => Ok(None),
                Err(Error::Unsupported { .. }) => Ok(Some((value, Expiry::Never))),
                Err(e) => Err(e),
            }
        }
    }

    /// Gives `key` a new TTL counted from now (`None`: never expire); true if the key was live.
    /// Default: `get` then `put` (not atomic).
    fn expire(&self, key: &K, ttl: Option<Duration>) -> impl Future<Output = Result<bool>> + Send {
        async move {
            crate::time::check_ttl(ttl)?;
            match self.get(key).await? {
                Some(value) => self.put(key.clone(), value, ttl).await.map(|_| true),
                None => Ok(false),
            }
        }
    }

    /// Removes `key`'s TTL so it never expires; true if the key was live.
    fn persist(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        self.expire(key, None)
    }

    /// Marks `key` as used without changing its expiry; true if the key was live. Stores with an
    /// access order (the generational store promotes the entry) override it.
    fn touch(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        self.contains(key)
    }

    /// Adds `delta` to the integer under `key` (a missing key counts from zero, with no TTL) and
    /// returns the new value; an existing TTL is kept. Default: not atomic.
    fn incr(&self, key: &K, delta: i64) -> impl Future<Output = Result<V>> + Send
    where
        V: Counter + Clone,
        K: std::fmt::Debug,
    {
        // A new counter gets no TTL: the same steps as `incr_with_ttl` without one.
        self.incr_with_ttl(key, delta, None)
    }

    /// Adds `delta` to the integer under `key` and returns the new value; a counter this call
    /// creates gets `ttl_if_new`, an existing counter keeps its TTL (or lack of one). One atomic
    /// step in every strata store (a shard or stripe lock locally; `SET NX PX` + `INCRBY` in one
    /// `MULTI` on Redis), so a counter that expires between two calls is never re-created without
    /// a TTL. This is what `Cache::incr` and `RateLimiter` use.
    ///
    /// Default: `get`, `ttl`, `put` (not atomic; a store of your own should override it).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{MemoryStore, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, u64>::builder().build()?;
    /// let minute = Some(Duration::from_secs(60));
    /// let key = "failed_logins:ada".to_string();
    /// assert_eq!(Store::incr_with_ttl(&store, &key, 1, minute).await?, 1);
    /// assert_eq!(Store::incr_with_ttl(&store, &key, 1, minute).await?, 2);
    /// assert!(Store::ttl(&store, &key).await?.and_then(|e| e.remaining()).is_some());
    /// # Ok(()) }
    /// ```
    fn incr_with_ttl(
        &self,
        key: &K,
        delta: i64,
        ttl_if_new: Option<Duration>,
    ) -> impl Future<Output = Result<V>> + Send
    where
        V: Counter + Clone,
        K: std::fmt::Debug,
    {
        async move {
            crate::time::check_ttl(ttl_if_new)?;
            let current = self.get(key).await?;
            let ttl = match current {
                Some(_) => match self.ttl(key).await {
                    Ok(expiry) => expiry.and_then(Expiry::remaining),
                    Err(Error::Unsupported { .. }) => None,
                    Err(e) => return Err(e),
                },
                None => ttl_if_new,
            };
            let base = current.unwrap_or_else(V::zero);
            let next = base.add(delta).ok_or_else(|| Error::Overflow {
                key: format!("{key:?}").into(),
            })?;
            self.put(key.clone(), next.clone(), ttl).await?;
            Ok(next)
        }
    }

    /// Writes `value` under `key` only if `key` has a live entry (Redis `SET .. XX`), replacing
    /// its value and TTL; true if written. A key deleted (or expired) before this call is not
    /// brought back, which is what makes a session sign-out stick against a request that was
    /// in flight. Atomic in every strata store.
    ///
    /// Default: `contains` then `put` (not atomic; a store of your own should override it).
    ///
    /// ```
    /// use strata::{MemoryStore, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, String>::builder().build()?;
    /// let key = "session:1".to_string();
    /// assert!(!Store::replace(&store, key.clone(), "ada".into(), None).await?);
    /// assert_eq!(Store::get(&store, &key).await?, None);
    /// Store::put(&store, key.clone(), "ada".into(), None).await?;
    /// assert!(Store::replace(&store, key.clone(), "grace".into(), None).await?);
    /// assert_eq!(Store::get(&store, &key).await?.as_deref(), Some("grace"));
    /// # Ok(()) }
    /// ```
    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        async move {
            crate::time::check_ttl(ttl)?;
            if !self.contains(&key).await? {
                return Ok(false);
            }
            self.put(key, value, ttl).await?;
            Ok(true)
        }
    }

    /// [`Store::put`], and `notice` sent to other nodes along with it where the store can make
    /// both one round trip (Redis: `SET` and `PUBLISH` in one pipeline); true if the notice was
    /// sent, false if the caller must still send it. A replicated store's writes use it.
    ///
    /// Default: `put`, and false (nothing sent).
    fn put_and_notify(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
        notice: Notice<'_>,
    ) -> impl Future<Output = Result<bool>> + Send {
        let _ = notice;
        async move { self.put(key, value, ttl).await.map(|_| false) }
    }

    /// [`Store::delete`], and `notice` sent with it where the store can (Redis: `UNLINK` and
    /// `PUBLISH` in one pipeline); returns (removed, notice sent).
    ///
    /// Default: `delete`, and nothing sent.
    fn delete_and_notify(
        &self,
        key: &K,
        notice: Notice<'_>,
    ) -> impl Future<Output = Result<(bool, bool)>> + Send {
        let _ = notice;
        async move { self.delete(key).await.map(|removed| (removed, false)) }
    }

    /// Every write of `writes`, in order, and `notice` sent to other nodes along with them
    /// where the store can make it all one round trip (Redis: the `SET`s and `UNLINK`s and one
    /// `PUBLISH` in one pipeline, one pipeline per slot on a cluster, sent concurrently). Returns
    /// one flag per write (a put: true; a delete: whether a live entry was removed) and whether
    /// the notice was sent. On an error some writes may have been applied and others not. A
    /// replicated store's group commit uses it.
    ///
    /// The writes are borrowed, so a caller that still needs them afterwards (a replicated
    /// store caches each value locally once Redis acknowledged it) does not clone them first.
    ///
    /// Default: each write in turn with `put` or `delete` (a put clones its key and value),
    /// and false (nothing sent).
    ///
    /// ```
    /// use strata::{BatchWrite, MemoryStore, Notice, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, String>::new();
    /// Store::put(&store, "old".into(), "x".into(), None).await?;
    /// let writes = vec![
    ///     BatchWrite::Put { key: "new".into(), value: "y".into(), ttl: None },
    ///     BatchWrite::Delete("old".into()),
    ///     BatchWrite::Delete("never".into()),
    /// ];
    /// let notice = Notice { channel: "changes", payload: b"new old never" };
    /// let (done, sent) = store.write_many_and_notify(&writes, notice).await?;
    /// assert_eq!((done, sent), (vec![true, true, false], false), "memory sends no notice");
    /// assert_eq!(Store::get(&store, &"new".into()).await?.as_deref(), Some("y"));
    /// # Ok(()) }
    /// ```
    fn write_many_and_notify(
        &self,
        writes: &[BatchWrite<K, V>],
        notice: Notice<'_>,
    ) -> impl Future<Output = Result<(Vec<bool>, bool)>> + Send
    where
        V: Clone,
    {
        let _ = notice;
        async move {
            let mut done = Vec::with_capacity(writes.len());
            for write in writes {
                done.push(match write {
                    BatchWrite::Put { key, value, ttl } => {
                        let (key, value) = (key.clone(), value.clone());
                        self.put(key, value, *ttl).await.map(|_| true)?
                    }
                    BatchWrite::Delete(key) => self.delete(key).await?,
                });
            }
            Ok((done, false))
        }
    }

    /// [`Store::write_many_and_notify`], sent only if `fence` still returns true at the last
    /// moment before the writes leave: once whatever the call waits for first (a connection
    /// being replaced) is ready, with no further wait between the check and the hand-over.
    /// `None`: the fence refused and nothing was sent. A replicated store's group commit passes
    /// "is this writer still the one in charge?", so a writer that was replaced while its call
    /// waited never sends its batch late, over writes made since.
    ///
    /// On Redis the check is made once the connection is ready, right before the pipeline is
    /// handed to the client, in the same poll; on a cluster once per slot's pipeline (`None` if
    /// any was refused: the others may have been applied). Default: the check, then
    /// `write_many_and_notify` (a store of your own whose call can wait before it writes should
    /// override it).
    ///
    /// ```
    /// use strata::{BatchWrite, MemoryStore, Notice, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, String>::new();
    /// let writes = [BatchWrite::Put { key: "k".into(), value: "v".into(), ttl: None }];
    /// let notice = Notice { channel: "changes", payload: b"k" };
    /// let refused = store.write_many_and_notify_fenced(&writes, notice, &|| false).await?;
    /// assert_eq!(refused, None);
    /// assert_eq!(Store::get(&store, &"k".into()).await?, None, "nothing was written");
    /// let sent = store.write_many_and_notify_fenced(&writes, notice, &|| true).await?;
    /// assert_eq!(sent, Some((vec![true], false)));
    /// # Ok(()) }
    /// ```
    fn write_many_and_notify_fenced(
        &self,
        writes: &[BatchWrite<K, V>],
        notice: Notice<'_>,
        fence: &(dyn Fn() -> bool + Sync),
    ) -> impl Future<Output = Result<Option<(Vec<bool>, bool)>>> + Send
    where
        V: Clone,
    {
        async move {
            if !fence() {
                return Ok(None);
            }
            self.write_many_and_notify(writes, notice).await.map(Some)
        }
    }

    /// Writes `new` (with `ttl`) under `key` only if the live value there is `expected`
    /// (`None`: only if `key` has no live entry); true if written. This is the step that lets
    /// several processes update one value without losing each other's writes: read, compute,
    /// `compare_and_set`, and on `false` read again (the GCRA [`crate::RateLimiter`] does this).
    /// Atomic in every strata store: under the shard or partition lock in memory, under the key
    /// lock on disk, one Lua script in Redis (which compares the *encoded* bytes, so two values
    /// that encode alike are equal there).
    ///
    /// Default: `get`, compare, `put` (not atomic; a store of your own should override it).
    ///
    /// ```
    /// use strata::{MemoryStore, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, i64>::builder().build()?;
    /// let key = "tat:ada".to_string();
    /// assert!(Store::compare_and_set(&store, key.clone(), None, 10, None).await?);
    /// assert!(!Store::compare_and_set(&store, key.clone(), None, 20, None).await?);
    /// assert!(!Store::compare_and_set(&store, key.clone(), Some(11), 20, None).await?);
    /// assert!(Store::compare_and_set(&store, key.clone(), Some(10), 20, None).await?);
    /// assert_eq!(Store::get(&store, &key).await?, Some(20));
    /// # Ok(()) }
    /// ```
    fn compare_and_set(
        &self,
        key: K,
        expected: Option<V>,
        new: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send
    where
        V: PartialEq,
    {
        async move {
            crate::time::check_ttl(ttl)?;
            if self.get(&key).await? != expected {
                return Ok(false);
            }
            self.put(key, new, ttl).await?;
            Ok(true)
        }
    }

    /// One step of GCRA (the generic cell rate algorithm, what [`RateLimiter::check_gcra`]
    /// runs) on the integer under `key`, as one atomic step: the stored theoretical arrival
    /// time `tat` (or `now_ms`, if later or absent) is compared with `now_ms`; if
    /// `tat - now_ms <= tolerance_ms` the request conforms and `tat + interval_ms` is written,
    /// with a TTL that ends it when the caller's clock reaches it; otherwise nothing is written.
    /// Times are the caller's milliseconds (every process sharing a key should use the same
    /// timeline, as with any GCRA).
    ///
    /// Default: a read and a [`compare_and_set`](Store::compare_and_set) against the value read,
    /// again if another writer changed the key in between, so it is exact wherever
    /// `compare_and_set` is (two round trips per admitted step on a remote store).
    /// [`RedisStore`](crate::RedisStore) runs it as one Lua script: one round trip, the read
    /// and the write one step inside Redis (redis-cell's approach).
    ///
    /// [`RateLimiter::check_gcra`]: crate::RateLimiter::check_gcra
    ///
    /// ```
    /// use strata::{MemoryStore, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, i64>::builder().build()?;
    /// let key = "gcra:api:ada".to_string();
    /// let (now, interval, tolerance) = (1_000_000, 10_000, 10_000); // a burst of 2
    /// assert!(Store::gcra(&store, &key, now, interval, tolerance).await?.allowed);
    /// assert!(Store::gcra(&store, &key, now, interval, tolerance).await?.allowed);
    /// let denied = Store::gcra(&store, &key, now, interval, tolerance).await?;
    /// assert!(!denied.allowed);
    /// assert_eq!(denied.tat_ms - now - tolerance, 10_000); // retry after 10 s
    /// assert_eq!(Store::get(&store, &key).await?, Some(1_020_000));
    /// # Ok(()) }
    /// ```
    fn gcra(
        &self,
        key: &K,
        now_ms: u64,
        interval_ms: u64,
        tolerance_ms: u64,
    ) -> impl Future<Output = Result<GcraStep>> + Send
    where
        V: Counter + PartialEq + Clone,
        K: std::fmt::Debug,
    {
        gcra_by_compare_and_set(self, key, now_ms, interval_ms, tolerance_ms)
    }

    /// Every live key whose encoded form ([`Key::encode_key`]: a `String` key's bytes) starts
    /// with `prefix`, in no particular order. Stores answer it without visiting other keys
    /// where they can: a prefix range on disk, `SCAN MATCH namespace:prefix*` (glob characters
    /// escaped) on Redis. An empty prefix matches every key.
    ///
    /// Default: [`Store::keys`] filtered (visits every key).
    ///
    /// ```
    /// use strata::{MemoryStore, Store};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let store = MemoryStore::<String, u32>::builder().build()?;
    /// for key in ["user:1:a", "user:1:b", "user:2:a", "user:10:a"] {
    ///     Store::put(&store, key.to_string(), 0, None).await?;
    /// }
    /// let mut keys = Store::keys_with_prefix(&store, "user:1:").await?;
    /// keys.sort();
    /// assert_eq!(keys, ["user:1:a", "user:1:b"]);
    /// # Ok(()) }
    /// ```
    fn keys_with_prefix(&self, prefix: &str) -> impl Future<Output = Result<Vec<K>>> + Send
    where
        K: Key,
    {
        async move {
            let mut keys = self.keys().await?;
            keys.retain(|key| key_has_prefix(key, prefix.as_bytes()));
            Ok(keys)
        }
    }

    /// Subtracts `delta` from the integer under `key`; see [`Store::incr`].
    fn decr(&self, key: &K, delta: i64) -> impl Future<Output = Result<V>> + Send
    where
        V: Counter + Clone,
        K: std::fmt::Debug,
    {
        async move {
            let negated = delta.checked_neg().ok_or_else(|| Error::Overflow {
                key: format!("{key:?}").into(),
            })?;
            self.incr(key, negated).await
        }
    }

    /// The namespace this store's keys live in (`namespace:key` in shared backends).
    /// Default: [`Namespace::default`] (`"cache"`).
    fn namespace(&self) -> Namespace {
        Namespace::default()
    }

    /// A store of the same kind and options over the same backend (the same Redis connection,
    /// the same data directory) whose keys live in `namespace`. The `Cache` builder's
    /// `.namespace(..)` calls this. Default: [`Error::Unsupported`].
    fn with_namespace(&self, namespace: &Namespace) -> Result<Self>
    where
        Self: Sized,
    {
        let _ = namespace;
        Err(Error::Unsupported {
            operation: "with_namespace",
        })
    }

    /// How many live entries there are.
    fn count(&self) -> impl Future<Output = Result<usize>> + Send {
        async move { Ok(self.keys().await?.len()) }
    }

    /// Deletes every entry; returns how many were removed.
    fn clear(&self) -> impl Future<Output = Result<usize>> + Send {
        async move {
            let keys = self.keys().await?;
            self.delete_many(&keys).await
        }
    }

    /// A new subscription to the store's events (put, delete, expired, evicted …), or `None`
    /// if the store cannot report them. A capability the store declares in its own `Store`
    /// impl: a [`Cache`](crate::Cache) over it forwards these events to its subscribers.
    /// Default: `None` (then `Cache::subscribe` is [`Error::Unsupported`]).
    ///
    /// ```
    /// use strata::{MemoryStore, Store};
    /// let store = MemoryStore::<String, u64>::builder().build()?;
    /// assert!(Store::subscribe_events(&store).is_some());
    /// # Ok::<(), strata::Error>(())
    /// ```
    fn subscribe_events(&self) -> Option<crate::Events<K>> {
        None
    }

    /// The store's own counters (a `Cache` reads `evictions` and `expirations` from them: it
    /// cannot see entries leave by TTL or size itself), or `None` if it keeps none. Default:
    /// `None`.
    fn store_stats(&self) -> Option<crate::Stats> {
        None
    }

    /// Hands every entry this store removes from now on to `listener`, with its value and
    /// cause (see [`EvictionListener`](crate::EvictionListener) for the delivery guarantees).
    /// A capability of the stores that remove entries themselves: MemoryStore,
    /// GenerationalStore, and DiskStore in its all-in-memory mode (its memory tier holds every
    /// live entry, so the tier's removals are the store's); `Cache::builder().eviction_listener(..)`
    /// installs it here. A DiskStore with `memory_capacity` refuses it with
    /// [`Error::Unsupported`]: there an eviction from memory keeps the entry on disk, and a
    /// delete of an entry only on disk never reaches the memory tier.
    /// A store has at most one listener: a second is an error.
    ///
    /// Default: [`Error::Unsupported`]. A remote store cannot offer it: Redis evicts
    /// (`maxmemory`) and expires keys on the server, and tells clients at most the key, on a
    /// best-effort channel (keyspace notifications), never the value — and a store that
    /// drops removals would break the "every removal" promise.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use strata::{MemoryStore, Store};
    ///
    /// let store = MemoryStore::<String, u64>::new();
    /// Store::install_eviction_listener(&store, Arc::new(|_key, _value, _cause| {}))?;
    /// assert!(Store::install_eviction_listener(&store, Arc::new(|_, _, _| {})).is_err());
    /// # Ok::<(), strata::Error>(())
    /// ```
    fn install_eviction_listener(&self, listener: crate::EvictionListener<K, V>) -> Result<()> {
        let _ = listener;
        Err(Error::Unsupported {
            operation: "install_eviction_listener",
        })
    }

    /// A store of the same kind, options and namespace whose entries also expire `idle` after
    /// their last read or write (`time_to_idle`; with a TTL, whichever deadline comes first).
    /// The `Cache` builder's `.time_to_idle(..)` calls this, as `.namespace(..)` calls
    /// [`with_namespace`](Self::with_namespace), and like it the answer depends on where the
    /// entries live: the in-memory stores return a new, empty store (each is its own
    /// namespace), while DiskStore returns the same namespace of the same directory, its
    /// entries kept (see its impl). Default: [`Error::Unsupported`]. A remote store cannot
    /// support it: Redis has no idle expiry per key (`OBJECT IDLETIME` only feeds its own
    /// eviction), and refreshing a TTL on every read would turn each read into a write.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{MemoryStore, Store};
    ///
    /// let store = MemoryStore::<String, u64>::new();
    /// let idle = Store::with_time_to_idle(&store, Duration::from_secs(60))?;
    /// # drop(idle);
    /// # Ok::<(), strata::Error>(())
    /// ```
    fn with_time_to_idle(&self, idle: Duration) -> Result<Self>
    where
        Self: Sized,
    {
        let _ = idle;
        Err(Error::Unsupported {
            operation: "with_time_to_idle",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_refuse_overflow() {
        assert_eq!(u8::MAX.add(1), None);
        assert_eq!(0u64.add(-1), None);
        assert_eq!(5u32.add(-2), Some(3));
        assert_eq!(i64::MAX.add(1), None);
        assert_eq!(usize::zero().add(7), Some(7));
        assert_eq!(u64::from_i64(-1), None);
    }

    #[test]
    fn expiry_remaining() {
        assert_eq!(Expiry::Never.remaining(), None);
        let d = Duration::from_secs(1);
        assert_eq!(Expiry::In(d).remaining(), Some(d));
    }
}
