//! Cluster-wide single flight and negative caching (Cachex's distributed fetch), the cache's
//! side. The Redis side (the lease commands and the notice channel) is
//! `crate::redis::DistributedFetch`; this file names no store.
//!
//! **Two stages.** A miss first goes through the local single flight (`fetch.rs`): one task per
//! process leads. With [`CacheBuilder::distributed_fetch`](super::CacheBuilder::distributed_fetch)
//! the local leader then takes a short cluster-wide lease (`SET lease-key token NX PX ttl`)
//! before it runs the loader:
//!
//! - it got the lease: it runs the loader, commits the value to the store, then releases the
//!   lease with a compare-and-delete script (only its own token is deleted, so a holder whose
//!   lease lapsed never deletes the next holder's) that also publishes the outcome (stored, not
//!   found, nothing) on the notice channel. A "not found" with a `negative_ttl` leaves the
//!   lease as an absence marker for at most the lease TTL instead of deleting it, so a node
//!   that comes to the lease after the notice went out still answers `None` without loading;
//! - another node holds it: it waits for that node's notice, at most for the lease's remaining
//!   time (`PTTL`), then reads the store again. A value: done. A "not found" notice or marker:
//!   `None`, remembered with `negative_ttl` as if its own loader had said so. Otherwise (the
//!   holder failed, its loader's value was not cached, or it died and the lease lapsed) it
//!   tries to take the lease itself, and so on.
//!
//! The receiver is subscribed before the lease is tried, so a notice sent after the attempt
//! cannot be missed. Waiting is one timer per lease period, never a polling loop.
//!
//! **Remembered absences.** A cache with distributed fetch announces every write or delete of a
//! key on the notice channel before it writes the store; every node's cache forgets its
//! remembered absence of that key when the announcement arrives, and every node forgets all its
//! absences when its subscription was lost and comes back (it may have missed announcements).
//! Writes that bypass the caches (another program, `cache.store().put(..)`) announce nothing:
//! their absences live until `negative_ttl` runs out.
//!
//! **Outcomes that are not shared.** A loader error, a panic or a `Load::Ignore` value reaches
//! the waiters of the holder's own process only (as with the local single flight); the other
//! nodes hear "nothing", and the next of them takes the lease and loads in turn.
//!
//! **What it costs and what it does not promise.** A miss pays `SET NX` and, when the lease is
//! held elsewhere, a `PTTL` and one notice; a write pays one `PUBLISH`. A loader slower than the
//! lease's TTL lets a second node take over and load too: pick a TTL above the slowest load.
//! A holder that is killed keeps the others waiting until its lease lapses (the TTL bounds it).
// Only the Redis side implements and calls the service.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::sync::broadcast;

use crate::{error::Result, memory::MemoryStore};

/// A boxed future, for the object-safe [`Leases`].
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a notice on the channel says about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The lease holder committed a value to the store.
    Stored,
    /// The lease holder's loader found nothing (`Load::NotFound`).
    Absent,
    /// The lease holder let go without a cached value (loader error, panic, `Load::Ignore`,
    /// or its load was overtaken by a write).
    Nothing,
    /// A cache wrote or deleted the key: forget its remembered absence.
    Written,
    /// A `sync` marker (the key is the marker's token).
    Sync,
}

impl Outcome {
    /// The first byte of a notice's payload.
    pub(crate) fn byte(self) -> u8 {
        match self {
            Outcome::Stored => b'v',
            Outcome::Absent => b'n',
            Outcome::Nothing => b'x',
            Outcome::Written => b'w',
            Outcome::Sync => b's',
        }
    }

    /// The outcome a payload's first byte names, if any.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'v' => Outcome::Stored,
            b'n' => Outcome::Absent,
            b'x' => Outcome::Nothing,
            b'w' => Outcome::Written,
            b's' => Outcome::Sync,
            _ => return None,
        })
    }
}

/// One notice: what happened to which stored key (namespace included).
#[derive(Clone, Debug)]
pub(crate) struct Notice {
    pub outcome: Outcome,
    pub key: Arc<[u8]>,
}

/// A cache's reaction to announcements: forget remembered absences.
pub(crate) trait AbsenceHandler: Send + Sync {
    /// Forgets the absence of the stored key `key`, if it is one of this cache's keys.
    fn forget(&self, key: &[u8]);
    /// Forgets every absence (announcements may have been missed).
    fn forget_all(&self);
}

/// The cluster-wide lease service a cache's fetch uses (implemented over Redis).
pub(crate) trait Leases: Send + Sync {
    /// Takes the lease on the stored key `key` if nobody holds it: the owner's token.
    fn acquire<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<u64>>>;
    /// Who holds the lease on `key` now.
    fn holder<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Holder>>;
    /// If `token` still owns the lease: deletes it, or with `absent_for` turns it into an
    /// absence marker for that long (capped at the lease TTL). Then publishes `outcome`.
    fn release<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        outcome: Outcome,
        absent_for: Option<Duration>,
    ) -> BoxFuture<'a, Result<()>>;
    /// Publishes that a cache writes `key` (every node forgets its absence).
    fn announce<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<()>>;
    /// A receiver of every notice that arrives from now on.
    fn listen(&self) -> broadcast::Receiver<Notice>;
    /// Calls `handler` for every announcement until it is dropped.
    fn register(&self, handler: Weak<dyn AbsenceHandler>);
    /// Counts fetches that wait for another node's lease (+1 on start, -1 on end).
    fn waiting(&self, delta: isize);
}

/// The state of a key's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nobody holds it.
    Free,
    /// A node is loading; its lease runs this much longer.
    Loading(Duration),
    /// A node's loader just found nothing: the lease is an absence marker (it is kept for at
    /// most the lease TTL, and only by caches with a `negative_ttl`, so that a node that missed
    /// the notice does not load again).
    Absent,
}

/// What the builder hands the cache: the service and how to turn keys into stored keys.
pub(crate) struct Distributed<K> {
    pub leases: Arc<dyn Leases>,
    pub encode: fn(&K, &[u8]) -> Vec<u8>,
    pub decode: fn(&[u8]) -> Option<K>,
}

/// A cache's distributed fetch: the service, its namespace prefix, and its absence handler
/// (kept alive here; the service holds it weakly).
pub(super) struct ClusterFetch<K> {
    pub leases: Arc<dyn Leases>,
    prefix: Vec<u8>,
    encode: fn(&K, &[u8]) -> Vec<u8>,
    _handler: Arc<dyn AbsenceHandler>,
}

impl<K: Send + Sync + 'static> ClusterFetch<K> {
    /// Registers the cache's absences (if it remembers any) with the service.
    pub(super) fn new(
        distributed: Distributed<K>,
        prefix: Vec<u8>,
        negatives: Option<MemoryStore<K, ()>>,
    ) -> Self
    where
        K: std::hash::Hash + Eq + Clone,
    {
        let handler: Arc<dyn AbsenceHandler> = Arc::new(Absences {
            negatives,
            prefix: prefix.clone(),
            decode: distributed.decode,
        });
        distributed.leases.register(Arc::downgrade(&handler));
        ClusterFetch {
            leases: distributed.leases,
            prefix,
            encode: distributed.encode,
            _handler: handler,
        }
    }

    /// `key` as stored (namespace prefix included): the name of its lease and notices.
    pub(super) fn stored_key(&self, key: &K) -> Vec<u8> {
        (self.encode)(key, &self.prefix)
    }
}

/// Forgets the remembered absences of one cache's keys.
struct Absences<K> {
    negatives: Option<MemoryStore<K, ()>>,
    prefix: Vec<u8>,
    decode: fn(&[u8]) -> Option<K>,
}

impl<K> AbsenceHandler for Absences<K>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    fn forget(&self, key: &[u8]) {
        let Some(negatives) = &self.negatives else {
            return;
        };
        if let Some(key) = key.strip_prefix(&*self.prefix).and_then(self.decode) {
            negatives.delete(&key);
        }
    }

    fn forget_all(&self) {
        if let Some(negatives) = &self.negatives {
            negatives.clear();
        }
    }
}

/// Waits for a notice about `key` other than a write, at most `limit`: the outcome, or `None`
/// when the time ran out, the channel lagged or closed (the caller reads the store again).
pub(super) async fn wait_notice(
    rx: &mut broadcast::Receiver<Notice>,
    key: &[u8],
    limit: Duration,
) -> Option<Outcome> {
    let matching = async {
        loop {
            match rx.recv().await {
                Ok(n) if &*n.key == key && n.outcome != Outcome::Written => return Some(n.outcome),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(limit, matching).await.ok().flatten()
}
