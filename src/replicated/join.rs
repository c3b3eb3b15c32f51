//! Joining the cluster: the local tier yields to what Redis holds (as Mnesia's
//! `set_master_nodes` makes the cluster's copy win over a node's own disk), and optionally
//! refills from Redis (`warm_on_join`), at start and in the background after every reconnect.
//!
//! Both read in batches of [`BATCH`] keys (one `MGET` + `PTTL` pipeline each on Redis), with
//! [`IN_FLIGHT`] batches outstanding, through [`Inner::fill_many`]: its stripe guards make an
//! invalidation (or a write on this node) that lands while a batch is in flight win over the
//! batch's older read.

use std::sync::atomic::Ordering;

use futures_util::{stream::FuturesUnordered, StreamExt};

use super::store::Inner;
use crate::{codec::Key, store::Store};

/// Keys per remote read.
pub(super) const BATCH: usize = 512;

/// Batches read concurrently (pipelined on the remote store's multiplexed connection).
const IN_FLIGHT: usize = 4;

/// How often warm and reconcile report progress (in batches).
const PROGRESS_EVERY: usize = 64;

/// Makes every key already in the local tier (a disk tier from a previous run) agree with the
/// remote store: dropped if Redis no longer has it, replaced by Redis' value and TTL if it does.
pub(super) async fn reconcile<K, V, L, R>(inner: &Inner<K, V, L, R>)
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    let keys = match inner.local.keys().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(namespace = %inner.namespace, error = %super::without_key(&e), "cannot list the local tier; flushing it");
            inner.flush_local().await;
            return;
        }
    };
    let total = keys.len();
    let mut dropped = 0;
    for (done, batch) in keys.chunks(BATCH).enumerate() {
        dropped += reconcile_batch(inner, batch).await;
        progress("reconcile", inner, done + 1, total);
    }
    tracing::info!(namespace = %inner.namespace, kept = total - dropped, dropped, "local tier reconciled with Redis");
}

/// One batch of [`reconcile`]; returns how many local copies it dropped.
async fn reconcile_batch<K, V, L, R>(inner: &Inner<K, V, L, R>, batch: &[K]) -> usize
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    let found = match fill_batch(inner, "reconcile", batch).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(namespace = %inner.namespace, error = %super::without_key(&e), keys = batch.len(), "could not check local copies against Redis; dropping them");
            vec![None; batch.len()]
        }
    };
    let mut dropped = 0;
    for (key, value) in batch.iter().zip(found) {
        if value.is_none() {
            inner.drop_local(key).await;
            dropped += 1;
        }
    }
    dropped
}

/// Fills the local tier with every key of the namespace in Redis (`SCAN`), with its TTL, until
/// done (true) or the link drops after `epoch` (false: the tier is suspect again, and the next
/// reconnect flushes it and warms anew). A batch that fails is left to fill lazily.
pub(super) async fn warm<K, V, L, R>(inner: &Inner<K, V, L, R>, epoch: u64) -> bool
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    let link = &inner.hub.link;
    let keys = match list_remote(inner, epoch).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(namespace = %inner.namespace, error = %super::without_key(&e), "warm: cannot list Redis keys; filling lazily instead");
            return false;
        }
    };
    let total = keys.len();
    let mut batches = keys.chunks(BATCH);
    let mut reads = FuturesUnordered::new();
    let (mut done, mut loaded) = (0, 0);
    loop {
        while reads.len() < IN_FLIGHT && link.still_up(epoch) {
            let Some(batch) = batches.next() else { break };
            reads.push(fill_batch(inner, "warm", batch));
        }
        let Some(read) = reads.next().await else {
            break;
        };
        done += 1;
        match read {
            Ok(found) => loaded += found.iter().filter(|v| v.is_some()).count(),
            Err(e) => {
                tracing::warn!(namespace = %inner.namespace, error = %super::without_key(&e), "warm: a batch failed; those keys fill lazily")
            }
        }
        progress("warm", inner, done, total);
    }
    let finished = link.still_up(epoch);
    tracing::info!(namespace = %inner.namespace, loaded, total, finished, "local tier warmed from Redis");
    finished
}

/// [`Inner::fill_many`] for the join: a batch that fails only because a value in Redis does not
/// decode (a type changed at a deploy, a stray `SET`) is read again key by key, so that key
/// alone is a miss (counted in `ReplicationStats::undecodable`; one warning per batch, with the
/// count and without any key) and every other key of the batch is cached. Any other failure fails the batch.
async fn fill_batch<K, V, L, R>(
    inner: &Inner<K, V, L, R>,
    phase: &str,
    batch: &[K],
) -> crate::Result<Vec<Option<V>>>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    match inner.fill_many(batch).await {
        Err(crate::Error::Decode(_)) => {}
        other => return other,
    }
    // Each read guarded as a lone fill; pipelined on the remote's multiplexed connection.
    let reads = futures_util::future::join_all(batch.iter().map(|key| inner.fill(key))).await;
    let mut out = Vec::with_capacity(batch.len());
    // One warning per batch, with the count and the first reason: a type changed at a deploy
    // makes every value undecodable, and a line per key would flood the log.
    let mut undecodable = 0u64;
    let mut first = None;
    for read in reads {
        match read {
            Ok(found) => out.push(found),
            Err(e @ crate::Error::Decode(_)) => {
                undecodable += 1;
                first.get_or_insert(e);
                out.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = first {
        inner
            .hub
            .counters
            .undecodable
            .fetch_add(undecodable, Ordering::Relaxed);
        tracing::warn!(namespace = %inner.namespace, phase, undecodable, error = %super::without_key(&e), "a value in Redis could not be decoded (undecodable: how many in this batch): those keys are misses, the rest of their batch is cached");
    }
    Ok(out)
}

/// Attempts at listing the remote keys before a warm gives up.
const LIST_ATTEMPTS: u32 = 8;
/// The pause after the first failed listing; doubled after each further one, up to 1 s.
const LIST_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The remote keys, retried with back-off while the link stays up in `epoch`: after a Sentinel
/// failover the link can reconnect to the promoted master before the remote store has left the
/// old one (its first command fails and makes it ask the sentinels), so one failure is not the
/// end of the warm.
async fn list_remote<K, V, L, R>(inner: &Inner<K, V, L, R>, epoch: u64) -> crate::Result<Vec<K>>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    let mut pause = LIST_RETRY;
    let mut attempt = 1;
    loop {
        match inner.remote.keys().await {
            Ok(keys) => return Ok(keys),
            Err(e) if attempt >= LIST_ATTEMPTS || !inner.hub.link.still_up(epoch) => return Err(e),
            Err(e) => {
                tracing::debug!(namespace = %inner.namespace, error = %super::without_key(&e), attempt, "warm: listing Redis keys failed; retrying");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(1));
        attempt += 1;
    }
}

fn progress<K, V, L, R>(phase: &str, inner: &Inner<K, V, L, R>, batches: usize, total: usize) {
    let done = (batches * BATCH).min(total);
    if batches.is_multiple_of(PROGRESS_EVERY) || done == total {
        let namespace = inner.namespace.as_str();
        tracing::debug!(
            phase,
            namespace,
            done,
            total,
            "replicated store join progress"
        );
    }
}
