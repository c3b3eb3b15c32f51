//! Joining the cluster: the local tier yields to what Redis holds (as Mnesia's
//! `set_master_nodes` makes the cluster's copy win over a node's own disk), and optionally
//! refills from Redis with `SCAN` (`warm_on_join`).

use super::store::Inner;
use crate::{codec::Key, store::Store};

/// How often warm and reconcile report progress.
const PROGRESS_EVERY: usize = 1000;

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
            tracing::warn!(namespace = %inner.namespace, error = %e, "cannot list the local tier; flushing it");
            inner.flush_local().await;
            return;
        }
    };
    let total = keys.len();
    let mut dropped = 0;
    for (done, key) in keys.iter().enumerate() {
        dropped += usize::from(!inner.refresh(key).await);
        progress("reconcile", inner.namespace.as_str(), done + 1, total);
    }
    tracing::info!(namespace = %inner.namespace, kept = total - dropped, dropped, "local tier reconciled with Redis");
}

/// Fills the local tier with every key of the namespace in Redis (`SCAN`), with its TTL.
pub(super) async fn warm<K, V, L, R>(inner: &Inner<K, V, L, R>)
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    let keys = match inner.remote.keys().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(namespace = %inner.namespace, error = %e, "warm: cannot list Redis keys; filling lazily instead");
            return;
        }
    };
    let total = keys.len();
    let mut loaded = 0;
    for (done, key) in keys.iter().enumerate() {
        loaded += usize::from(inner.refresh(key).await);
        progress("warm", inner.namespace.as_str(), done + 1, total);
    }
    tracing::info!(namespace = %inner.namespace, loaded, "local tier warmed from Redis");
}

fn progress(phase: &str, namespace: &str, done: usize, total: usize) {
    if done.is_multiple_of(PROGRESS_EVERY) || done == total {
        tracing::info!(
            phase,
            namespace,
            done,
            total,
            "replicated store join progress"
        );
    }
}
