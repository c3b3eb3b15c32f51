//! `fetch_many`: read many keys through one batch loader call, single flight per key with
//! `fetch` and other `fetch_many` calls.
//!
//! Each missing key goes through the same flight map as `fetch` (`fetch.rs`): the call leads
//! the keys nobody loads yet and waits for the others. The keys it leads are re-read from the
//! store (cachex#347), then loaded by **one** loader call, then committed one by one through
//! `commit` (commit lock, overtaken mark: a write made during the load wins, as for `fetch`).
//! Every lead key is settled before the call waits for the keys others load, so a waiter of one
//! of our keys never waits for a key we wait for. A loader error, panic or timeout reaches
//! every waiter of every key of the batch. Dropping the call (cancelled) drops its leaders,
//! which releases their keys: their waiters lead in turn. A key whose other leader went away
//! without an outcome is loaded by a further loader call (hence `Fn`, not `FnOnce`).

use std::{collections::HashMap, fmt::Debug, future::Future, hash::Hash, sync::Arc};

use super::{
    cache::Cache,
    fetch::{wait, FetchError, Leader, Load, LoaderFailure, Role, Shared},
};
use crate::{error::Error, stats::Counter as Stat, store::Store};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// The values of `keys`, in order: hits from the store, and every miss loaded by **one**
    /// call of `loader` with the missing keys (Cachex `fetch` for a batch, Caffeine `getAll`).
    ///
    /// Single flight per key: a key that a concurrent [`fetch`](Cache::fetch) or `fetch_many`
    /// is loading is awaited, not passed to the loader again; a key with a remembered absence
    /// (`negative_ttl`) is `None` without loading. The loader returns a `(key, Load)` pair per
    /// key it knows; a key it leaves out counts as [`Load::NotFound`], a key it was not asked
    /// for is ignored. Each value is committed as `fetch` commits (a put or delete made during
    /// the load wins). A loader error reaches every waiter of every key of the batch as
    /// [`FetchError::Load`]; a panic or `load_timeout` as [`FetchError::Cache`]; the keys are
    /// released either way, and also when the call is dropped (cancelled). The call returns the
    /// first error it meets, after settling every key it led.
    ///
    /// Not available with `distributed_fetch` (no cluster-wide lease is taken per key yet):
    /// such a cache answers [`Error::Unsupported`]; use `fetch` per key there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, Load, MemoryStore};
    ///
    /// let cache = Cache::builder().store(MemoryStore::<u32, String>::new()).build().await?;
    /// cache.put(1, "one".into(), None).await?;
    /// let values = cache
    ///     .fetch_many(&[1, 2, 3], |missing| async move {
    ///         // One query for every missing key (here 2 and 3); 3 does not exist.
    ///         assert_eq!(missing, [2, 3]);
    ///         Ok::<_, std::io::Error>(vec![(2, Load::Commit("two".to_string()))])
    ///     })
    ///     .await;
    /// let values = values.map_err(|e| strata::Error::config("example", e.to_string()))?;
    /// assert_eq!(values, [Some("one".into()), Some("two".into()), None]);
    /// assert_eq!(cache.get(&2).await?.as_deref(), Some("two"));
    /// # Ok(()) }
    /// ```
    pub async fn fetch_many<F, Fut, E>(
        &self,
        keys: &[K],
        loader: F,
    ) -> Result<Vec<Option<V>>, FetchError<E>>
    where
        F: Fn(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, Load<V>)>, E>>,
        E: Send + Sync + 'static,
    {
        if self.inner.cluster.is_some() {
            return Err(FetchError::Cache(Arc::new(Error::Unsupported {
                operation: "fetch_many (with distributed_fetch; call fetch per key)",
            })));
        }
        let mut out = self.get_many(keys).await?;
        let mut todo: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        while !todo.is_empty() {
            let mut leaders = Vec::new();
            let mut waits = Vec::new();
            for i in todo {
                if self.is_known_absent(&keys[i]) {
                    continue;
                }
                match self.join_or_lead(&keys[i]) {
                    Role::Lead(leader) => leaders.push((i, leader)),
                    Role::Wait(rx) => waits.push((i, rx)),
                }
            }
            if !leaders.is_empty() {
                self.lead_batch(leaders, &loader, &mut out).await?;
            }
            let mut again = Vec::new();
            for (i, rx) in waits {
                match wait(rx).await {
                    Some(outcome) => out[i] = outcome.into_result(&keys[i])?,
                    // Its leader was cancelled: read again, then lead or wait once more.
                    None => match self.inner.store.get(&keys[i]).await? {
                        Some(value) => out[i] = Some(value),
                        None => again.push(i),
                    },
                }
            }
            todo = again;
        }
        Ok(out)
    }

    /// Loads the keys `leaders` lead with one loader call and settles every one of them.
    async fn lead_batch<F, Fut, E>(
        &self,
        leaders: Vec<(usize, Leader<K, V, S>)>,
        loader: &F,
        out: &mut [Option<V>],
    ) -> Result<(), FetchError<E>>
    where
        F: Fn(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, Load<V>)>, E>>,
        E: Send + Sync + 'static,
    {
        // cachex#347: a leader that finished just before we took the lead has written the value.
        let lead_keys: Vec<K> = leaders.iter().map(|(_, l)| l.key.clone()).collect();
        let found = match self.inner.store.get_many(&lead_keys).await {
            Ok(found) => found,
            Err(e) => return Err(fail_all(leaders, Arc::new(e))),
        };
        let mut loading = Vec::with_capacity(leaders.len());
        for ((i, leader), found) in leaders.into_iter().zip(found) {
            match found {
                Some(value) => {
                    leader.finish(Shared::Value(Some(value.clone())));
                    out[i] = Some(value);
                }
                None if self.is_known_absent(&leader.key) => leader.finish(Shared::Value(None)),
                None => loading.push((i, leader)),
            }
        }
        if loading.is_empty() {
            return Ok(());
        }
        let missing: Vec<K> = loading.iter().map(|(_, l)| l.key.clone()).collect();
        let started = std::time::Instant::now();
        let described = describe(&missing);
        let outcome = self.guard_loader(|| loader(missing)).await;
        self.count(Stat::Loads, 1);
        self.count(Stat::LoadNanos, started.elapsed().as_nanos() as u64);
        let loaded = match outcome {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(error)) => {
                self.count(Stat::LoadErrors, 1);
                let error = Arc::new(error);
                for (_, leader) in loading {
                    leader.finish(Shared::LoadError(error.clone()));
                }
                return Err(FetchError::Load(error));
            }
            Err(failure) => {
                self.count(Stat::LoadErrors, 1);
                let error = match failure {
                    LoaderFailure::Panicked(message) => Error::from(crate::LoaderError {
                        key: described,
                        reason: format!("the batch loader panicked: {message}"),
                    }),
                    LoaderFailure::TimedOut(after) => Error::from(crate::TimeoutError {
                        context: format!("loading keys {described}"),
                        after,
                    }),
                };
                return Err(fail_all(loading, Arc::new(error)));
            }
        };
        let mut loaded: HashMap<K, Load<V>> = loaded.into_iter().collect();
        let mut first_error = None;
        for (i, leader) in loading {
            let load = loaded.remove(&leader.key).unwrap_or(Load::NotFound);
            match self.commit(leader, load).await {
                Ok(value) => out[i] = value,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Gives every leader the same failure; the error for the caller.
fn fail_all<K: Hash + Eq, V, S, E>(
    leaders: Vec<(usize, Leader<K, V, S>)>,
    error: Arc<Error>,
) -> FetchError<E> {
    for (_, leader) in leaders {
        leader.finish(Shared::Failed(error.clone()));
    }
    FetchError::Cache(error)
}

/// The keys of a batch, for an error message: the first one and how many more.
fn describe<K: Debug>(keys: &[K]) -> String {
    match keys {
        [] => "none".to_owned(),
        [one] => format!("{one:?}"),
        [first, rest @ ..] => format!("{first:?} and {} more", rest.len()),
    }
}
