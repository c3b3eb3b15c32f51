//! Refresh-ahead (Caffeine `refreshAfterWrite`, see
//! [`CacheBuilder::refresh_after`](super::CacheBuilder::refresh_after)): a `fetch` hit on an
//! entry older than `refresh_after` returns the cached value and starts one background reload.
//!
//! **Age without a side map.** The entry's write time is derived from the store: age = default
//! TTL − remaining TTL (the builder requires a default TTL longer than `refresh_after`). This
//! costs one `ttl` read per fetch hit and no memory per entry, and it sees writes by other
//! processes that share the store. A side map of write times would have to be kept in step
//! with every write, expiry and eviction of the store underneath, and would be wrong for
//! writes made by another node.
//!
//! **One reload, the same single flight.** The reload registers as the key's flight leader
//! (`join_or_lead`) before the hit returns, so every other stale hit sees a flight and returns
//! at once, and a concurrent miss of the key waits for the reload's outcome instead of loading
//! again. The leader is then moved into a spawned task with the loader; its drop guard releases
//! the key whatever happens to the task (done, panicked, runtime shut down).
//!
//! **Writes win, failures keep.** The reload commits through `commit` (the commit lock and the
//! overtaken mark, `invalidate.rs`), so a put or delete made while it runs wins. A loader error,
//! panic, timeout or `Load::Ignore` commits nothing: the old value stays until its TTL ends
//! (a load error is counted in the stats and logged, without the key, which may be a secret).
//! `Load::NotFound` removes the entry (unless a write overtook the reload) and remembers the
//! absence like a fetch would.

use std::{fmt::Debug, future::Future, hash::Hash};

use super::{
    cache::Cache,
    fetch::{FetchError, Leader, Load, LoadResult, Role},
};
use crate::{stats::Counter as Stat, store::Expiry, store::Store};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// After a fetch hit: if the entry is at least `refresh_after` old and nobody loads the key,
    /// leads a reload in a background task. Never fails the hit (a store that cannot tell the
    /// TTL, or no runtime to spawn on, means no refresh).
    pub(super) async fn refresh_if_stale<F, Fut, E>(&self, key: K, loader: F)
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Load<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let (Some(after), Some(ttl)) = (self.inner.refresh_after, self.inner.ttl) else {
            return;
        };
        let remaining = match self.inner.store.ttl(&key).await {
            Ok(Some(Expiry::In(remaining))) => remaining,
            // No TTL, gone since the hit, or the store cannot tell: nothing to measure.
            Ok(_) | Err(_) => return,
        };
        if ttl.saturating_sub(remaining) < after {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let leader = match self.join_or_lead(&key) {
            Role::Lead(leader) => leader,
            // A load or another refresh of this key runs already.
            Role::Wait(_) => return,
        };
        let cache = self.clone();
        runtime.spawn(async move { cache.reload(leader, loader).await });
    }

    /// The background reload: runs the loader as the key's leader and settles its outcome.
    async fn reload<F, Fut, E>(self, leader: Leader<K, V, S>, loader: F)
    where
        F: FnOnce(K) -> Fut,
        Fut: Future<Output = Result<Load<V>, E>>,
        E: Send + Sync + 'static,
    {
        let outcome: LoadResult<V, E> = self.run_loader(&leader.key, loader).await;
        let settled = match outcome {
            Ok(Ok(Load::NotFound)) => self.retire(leader).await,
            Ok(Ok(Load::Ignore(value))) => {
                tracing::debug!("a refresh loader returned Load::Ignore; the old value stays");
                self.commit::<E>(leader, Load::Ignore(value)).await
            }
            outcome => self.settle(leader, outcome).await,
        };
        match settled {
            Ok(_) => {}
            Err(FetchError::Load(_)) => {
                tracing::warn!("a refresh loader failed; the old value stays until its TTL ends")
            }
            Err(FetchError::Cache(e)) => {
                tracing::warn!(error = %e, "a refresh failed; the old value stays until its TTL ends")
            }
        }
    }

    /// A reload found nothing: removes the entry, unless a write overtook the reload, then
    /// remembers the absence (with a `negative_ttl`) as a fetch would.
    async fn retire<E>(&self, leader: Leader<K, V, S>) -> Result<Option<V>, FetchError<E>> {
        {
            let _commit = self.inner.commit_locks.lock(&leader.key).await;
            if !leader.overtaken() {
                let removed = self.inner.store.delete(&leader.key).await;
                match removed {
                    Ok(removed) => self.count(Stat::Deletes, u64::from(removed)),
                    Err(e) => return Err(leader.fail(e)),
                }
            }
        }
        self.remember_absence(leader).await
    }
}
