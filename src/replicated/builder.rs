//! `ReplicatedStoreBuilder`: options for a `ReplicatedStore`, validated at `build()`.

use std::{marker::PhantomData, sync::Arc, time::Duration};

use super::{
    invalidation::{Hub, HubOptions, Target},
    join,
    store::{Inner, ReplicatedStore},
    Stripes,
};
use crate::{
    codec::Key,
    error::{Error, Result},
    store::Store,
    time::Clock,
};

/// The default prefix of invalidation channels (`strata:inv:{namespace}`).
pub const DEFAULT_CHANNEL_PREFIX: &str = "strata:inv:";

/// Builds a [`ReplicatedStore`].
///
/// The namespace is the remote store's (`remote.namespace()`): it names the Redis keys and the
/// invalidation channel alike.
///
/// # Defaults
/// - `local`, `remote`, and `url` or `sentinel`: required;
/// - `stale_for`: zero — while the link to Redis is down, reads go to Redis and fail if it
///   does not answer, instead of serving a local copy;
/// - `local_ttl`: none — a local copy lives as long as the remote TTL it was read with;
/// - `reconcile_on_join`: on — keys already in the local tier (a disk tier from a previous run)
///   are checked against Redis at start, and Redis wins;
/// - `warm_on_join`: off — the local tier fills lazily; on, it is filled from Redis with `SCAN`
///   and batched reads at start (before `build()` returns) and after every reconnect (in the
///   background: writes are accepted as soon as the link is back);
/// - `allow_start_offline`: off — `build()` fails if Redis cannot be reached within
///   `connect_timeout`;
/// - `connect_timeout`: 5 s; `heartbeat`: 1 s (a ping on the subscription; an unanswered ping
///   counts as a dropped link);
/// - `channel_prefix`: `"strata:inv:"`;
/// - `clock`: [`Clock::system`] (give the local tier the same clock).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use strata::{MemoryStore, ReplicatedStore};
///
/// let missing_url = ReplicatedStore::builder()
///     .local(MemoryStore::<String, String>::new())
///     .remote(MemoryStore::<String, String>::new())
///     .build()
///     .await;
/// assert!(matches!(missing_url, Err(strata::Error::InvalidConfig(e)) if e.option == "url"));
/// # }
/// ```
#[must_use]
pub struct ReplicatedStoreBuilder<K, V, L, R> {
    types: PhantomData<fn() -> (K, V)>,
    local: Option<L>,
    remote: Option<R>,
    target: Option<Target>,
    stale_for: Duration,
    local_ttl: Option<Duration>,
    reconcile_on_join: bool,
    warm_on_join: bool,
    allow_start_offline: bool,
    connect_timeout: Duration,
    heartbeat: Duration,
    channel_prefix: String,
    clock: Clock,
}

impl<K, V, L, R> std::fmt::Debug for ReplicatedStoreBuilder<K, V, L, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedStoreBuilder")
            .field("target", &self.target.as_ref().map(describe))
            .field("stale_for", &self.stale_for)
            .field("local_ttl", &self.local_ttl)
            .field("warm_on_join", &self.warm_on_join)
            .field("allow_start_offline", &self.allow_start_offline)
            .finish_non_exhaustive()
    }
}

impl<K, V, L, R> ReplicatedStoreBuilder<K, V, L, R> {
    pub(super) fn new() -> Self {
        ReplicatedStoreBuilder {
            types: PhantomData,
            local: None,
            remote: None,
            target: None,
            stale_for: Duration::ZERO,
            local_ttl: None,
            reconcile_on_join: true,
            warm_on_join: false,
            allow_start_offline: false,
            connect_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            channel_prefix: DEFAULT_CHANNEL_PREFIX.to_owned(),
            clock: Clock::system(),
        }
    }

    /// The local tier this node reads from first (a `MemoryStore`, or a disk store).
    pub fn local(mut self, local: L) -> Self {
        self.local = Some(local);
        self
    }

    /// The remote store that holds the truth and the TTLs (a `RedisStore`).
    pub fn remote(mut self, remote: R) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The Redis URL of the invalidation channel: the same Redis as the remote store.
    /// Replaces an earlier [`sentinel`](Self::sentinel).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.target = Some(Target::Url(url.into()));
        self
    }

    /// The invalidation channel on the master the sentinels name, for a remote `RedisStore`
    /// built with the same [`RedisStoreBuilder::sentinel`](crate::RedisStoreBuilder::sentinel):
    /// the link asks the sentinels for the master on connect and on every reconnect, so after a
    /// failover data and invalidations both go to the promoted replica. A failover drops the
    /// subscription (the old master dies, or is demoted and closes its clients), so the usual
    /// rules of a lost link hold meanwhile: writes are refused, the local tier is flushed on
    /// reconnect and refilled lazily or by a background warm. The master is reached with the
    /// user, password and database of the first sentinel URL. Replaces an earlier
    /// [`url`](Self::url).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use strata::{MemoryStore, ReplicatedStore};
    ///
    /// let builder: strata::ReplicatedStoreBuilder<String, String, _, _> = ReplicatedStore::builder()
    ///     .local(MemoryStore::<String, String>::new())
    ///     // In production: RedisStore::builder().sentinel(same sentinels, "mymaster").build().await?
    ///     .remote(MemoryStore::<String, String>::new())
    ///     .sentinel(["redis://127.0.0.1:26379", "redis://127.0.0.1:26380"], "mymaster");
    /// // `builder.build().await?` asks the sentinels for the master and subscribes there.
    /// let no_name = ReplicatedStore::builder()
    ///     .local(MemoryStore::<String, String>::new())
    ///     .remote(MemoryStore::<String, String>::new())
    ///     .sentinel(["redis://127.0.0.1:26379"], "")
    ///     .build()
    ///     .await;
    /// assert!(matches!(no_name, Err(strata::Error::InvalidConfig(e)) if e.option == "sentinel"));
    /// # drop(builder);
    /// # }
    /// ```
    pub fn sentinel<I, S>(mut self, sentinels: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.target = Some(Target::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master.into(),
        });
        self
    }

    /// How long after the link was last known good a local copy may still be served while the
    /// invalidation link is down (without asking Redis, which may be gone). Zero (the default)
    /// never serves one: reads go to Redis and fail if it does not answer.
    pub fn stale_for(mut self, stale_for: Duration) -> Self {
        self.stale_for = stale_for;
        self
    }

    /// Caps how long a local copy lives, whatever its remote TTL.
    pub fn local_ttl(mut self, cap: Duration) -> Self {
        self.local_ttl = Some(cap);
        self
    }

    /// Whether keys already in the local tier are checked against Redis at start.
    pub fn reconcile_on_join(mut self, enabled: bool) -> Self {
        self.reconcile_on_join = enabled;
        self
    }

    /// Whether the local tier is filled from Redis (`SCAN`, then batched `MGET`s) at start and,
    /// in the background, after reconnects. A value in Redis that does not decode as `V` (a
    /// type changed at a deploy, a stray `SET`) is a miss for that key only, counted in
    /// [`ReplicationStats::undecodable`](crate::ReplicationStats::undecodable) and warned
    /// without the key; the rest of its batch is cached. The reconcile at join treats it the
    /// same way (that key's local copy is dropped).
    pub fn warm_on_join(mut self, enabled: bool) -> Self {
        self.warm_on_join = enabled;
        self
    }

    /// Whether `build()` succeeds when Redis is unreachable; the store then starts cold and
    /// disconnected (writes fail, reads fail) until the link comes up. The remote store must
    /// itself be constructible while Redis is down for this to help.
    pub fn allow_start_offline(mut self, enabled: bool) -> Self {
        self.allow_start_offline = enabled;
        self
    }

    /// How long one connection attempt to Redis may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often the subscription is pinged; a ping unanswered for this long drops the link.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// The prefix of invalidation channel names; every node of a cluster must use the same.
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }

    /// The clock for local TTLs and the stale window (give the local tier the same one).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.connect_timeout.is_zero() {
            return Err(Error::config(
                "connect_timeout",
                "must be greater than zero",
            ));
        }
        if self.heartbeat.is_zero() {
            return Err(Error::config("heartbeat", "must be greater than zero"));
        }
        if self.local_ttl.is_some_and(|d| d.is_zero()) {
            return Err(Error::config("local_ttl", "must be greater than zero"));
        }
        let prefix = &self.channel_prefix;
        if prefix.is_empty() || prefix.chars().any(|c| "*?[]\\".contains(c)) {
            return Err(Error::config(
                "channel_prefix",
                format!("{prefix:?} must be non-empty and free of the glob characters * ? [ ] \\"),
            ));
        }
        Ok(())
    }
}

impl<K, V, L, R> ReplicatedStoreBuilder<K, V, L, R>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    /// Connects the invalidation channel, reconciles (and optionally warms) the local tier.
    ///
    /// Fails with [`Error::InvalidConfig`] for a missing or bad option, and with
    /// [`Error::Timeout`] or [`Error::Backend`] if Redis is unreachable (unless
    /// `allow_start_offline`). Must run inside a Tokio runtime.
    pub async fn build(self) -> Result<ReplicatedStore<K, V, L, R>> {
        self.validate()?;
        let target = self.target.clone().ok_or_else(|| {
            Error::config(
                "url",
                "required: the Redis URL for invalidations, e.g. redis://127.0.0.1:6379/ \
                 (or `sentinel(urls, master)` for Redis behind Sentinel)",
            )
        })?;
        let local = self
            .local
            .ok_or_else(|| Error::config("local", "required: the local tier"))?;
        let remote = self
            .remote
            .ok_or_else(|| Error::config("remote", "required: the store holding the truth"))?;
        let hub = Hub::start(HubOptions {
            target,
            prefix: self.channel_prefix,
            connect_timeout: self.connect_timeout,
            heartbeat: self.heartbeat,
            allow_start_offline: self.allow_start_offline,
            clock: self.clock.clone(),
        })
        .await?;
        let namespace = remote.namespace();
        let inner = Arc::new(Inner {
            local,
            remote,
            channel: hub.channel(namespace.as_str()),
            hub,
            namespace,
            clock: self.clock,
            stale_for: self.stale_for,
            local_ttl: self.local_ttl,
            warm: self.warm_on_join,
            stripes: Stripes::default(),
            commits: Default::default(),
            types: PhantomData,
        });
        let store = ReplicatedStore::registered(inner);
        join_cluster(&store.inner, self.reconcile_on_join).await;
        Ok(store)
    }
}

/// The invalidation target without passwords, for `Debug`.
fn describe(target: &Target) -> String {
    match target {
        Target::Url(url) => crate::redact_url(url),
        Target::Sentinel { sentinels, master } => {
            let urls: Vec<String> = sentinels.iter().map(|u| crate::redact_url(u)).collect();
            format!("master {master:?} via sentinels {}", urls.join(", "))
        }
    }
}

/// The cluster wins over the local tier: reconcile what is there, then warm if asked to.
/// Offline, there is nothing to check against: the node starts cold (the tier is flushed).
async fn join_cluster<K, V, L, R>(inner: &Inner<K, V, L, R>, reconcile: bool)
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    if !inner.hub.link.is_up() {
        inner.flush_local().await;
        return;
    }
    if reconcile {
        join::reconcile(inner).await;
    }
    if inner.warm {
        join::warm(inner, inner.hub.link.epoch()).await;
    }
}
