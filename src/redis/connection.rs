//! The one connection a `RedisStore` and all its clones share: a multiplexed, auto-pipelined
//! connection to one server ([`Single`]: a [`Link`] that strata replaces by itself: strata's
//! own RESP2 driver over plain TCP, or redis-rs's multiplexed connection for TLS, a Unix
//! socket, RESP3 or `auto_pipeline(false)`) or to a Redis Cluster ([`ClusterConnection`], which
//! follows the slot map). Every command runs under the per-command timeout and its errors become
//! [`Error::Backend`] or [`Error::Timeout`] with the command and key in the message. On one
//! server (or Sentinel) the single commands that calls send at the same time go out as one
//! write (the driver's deferred write, or [`super::pipeline::Pipelined`] on redis-rs's
//! connection); a cluster's are sent one by one (its client routes each).
//!
//! **Reconnecting.** A single server's connection is replaced when a command on it fails in a
//! way that leaves the connection unusable (reset, EOF, a dead driver: redis-rs's
//! `is_unrecoverable_error`; on strata's own driver every `DriverError`, an I/O error here), and, with Sentinel, when the master went away or became a replica.
//! One task connects the replacement, retrying with exponential back-off (50 ms to 1 s) until
//! it succeeds or the store is dropped. Calls made meanwhile wait for it within their own
//! timeout; once an attempt has failed they return its error at once instead, until one
//! succeeds. This is what redis-rs's `ConnectionManager` does, without its per-command cost (an
//! `ArcSwap` load and a shared future cloned and polled on every command): the command path is
//! one uncontended lock and a clone of the connection, as a raw `MultiplexedConnection` user
//! pays for the clone.
//!
//! **Runtimes.** A store outlives runtimes (a per-request runtime, a test's, a `#[tokio::main]`
//! that ends while another runtime goes on), but every task it starts runs on the runtime of
//! the call that started it: a connection's driver, on the runtime that connected it; the
//! reconnect task, on the runtime of the call that found the connection broken. When that
//! runtime shuts down:
//! - a single server's connection fails its next command (the driver is gone), which renews it;
//! - an unfinished reconnect task is dropped; its guard ([`Orphaned`]) leaves the slot
//!   [`State::Idle`] and wakes the waiting calls, and the next call (or a woken one) starts a
//!   new task on its own runtime;
//! - a runtime kept alive but not driven (a current-thread runtime outside `block_on`) runs
//!   none of its tasks: a reconnect task there beats no more (it beats every 100 ms while it
//!   runs), and once it has not beaten for [`RECONNECT_STARVED`] the next call that waits for
//!   it starts a new one on its own runtime, which takes charge. The starved task, if it ever
//!   runs again, drops what it connected instead of installing it;
//! - a cluster connection's driver is gone too, which the cluster client does not notice, so a
//!   task spawned beside it ([`watch`]) marks it driverless when dropped, and the next failed
//!   command renews it.
//!
//! **Half-open connections.** A connection that breaks loudly is noticed at once, but not one
//! whose peer goes silent without closing (a partition, a dead host): every command then waits
//! for a reply that never comes, until TCP gives up minutes later. So a command that times out
//! on a single server replaces the connection too ([`Single::renew`]); once per connection,
//! however many calls timed out on it. The store serves again within one command timeout plus
//! the connect time. A cluster client has the same blind spot (its per-node connections retry a
//! timed-out command on the same silent socket), so a timeout on a cluster replaces the whole
//! cluster connection ([`Cluster::renew`]): the timed-out call returns after the new one is
//! connected (or the connect timeout passed), and the next call runs on it.

use std::{
    borrow::Cow,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    time::Duration,
};

use redis::{
    aio::ConnectionLike,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr},
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
    AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, Value,
};

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{
    driver::{DriverError, Reply},
    link::{self, Link, Own},
    pipeline::TimedOut,
};
use crate::{
    error::{Error, Result},
    redact::redact_url,
};

/// Delay before the first reconnection attempt; later attempts back off exponentially.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between reconnection attempts, so a restarted server is found quickly.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// How often a reconnect task says it is being run (see [`State::Connecting`]'s `beat`).
const RECONNECT_BEAT: Duration = Duration::from_millis(100);
/// A reconnect task whose runtime has not run it for this long (an idle current-thread runtime,
/// or one blocked) is taken over by the next call that needs the connection.
const RECONNECT_STARVED: Duration = Duration::from_secs(1);

/// Where and how to connect. Not `Debug`: the URLs may hold passwords (see `describe`).
#[derive(Clone)]
pub(crate) struct Settings {
    /// One URL for a single server; the seed nodes for a cluster.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// PEM root certificate(s) to trust for `rediss://` instead of the system's.
    pub tls_root_cert: Option<Vec<u8>>,
    /// Join concurrent single commands into pipelines (one server or Sentinel; not a cluster).
    pub auto_pipeline: bool,
    /// Reach a plain-TCP RESP2 server through strata's own driver (with `auto_pipeline`).
    pub own_driver: bool,
    /// With Sentinel: the monitored master's name (`urls` are then the sentinels).
    pub sentinel_master: Option<String>,
}

impl Settings {
    /// The servers, without user names or passwords, for messages.
    pub fn describe(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        urls.join(", ")
    }
}

/// A shared connection to one server or to a cluster. Cloning is cheap (an `Arc` or a channel).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(Single),
    Cluster(Cluster),
}

/// A cluster connection, replaced when a command on it times out or when the runtime that
/// drives it shut down.
#[derive(Clone)]
pub(crate) struct Cluster(Arc<ClusterInner>);

struct ClusterInner {
    client: ClusterClient,
    connect_timeout: Duration,
    /// The seed nodes, redacted, for log lines.
    servers: String,
    /// The connection in use and how many times it was replaced.
    current: Mutex<ClusterSlot>,
    /// One more than the newest generation whose driver is known gone: the runtime that
    /// connected it (and runs its driver task) shut down. 0: none.
    driverless: AtomicU64,
    /// Held while a replacement connects, so concurrent timeouts connect once.
    renewing: tokio::sync::Mutex<()>,
}

struct ClusterSlot {
    generation: u64,
    conn: ClusterConnection,
    /// The task that notices the end of the runtime `conn`'s driver runs on (see [`watch`]).
    watch: tokio::task::AbortHandle,
}

impl Drop for ClusterInner {
    fn drop(&mut self) {
        self.current
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .watch
            .abort();
    }
}

impl Cluster {
    fn new(client: ClusterClient, conn: ClusterConnection, settings: &Settings) -> Self {
        Cluster(Arc::new_cyclic(|inner| ClusterInner {
            client,
            connect_timeout: settings.connect_timeout,
            servers: settings.describe(),
            current: Mutex::new(ClusterSlot {
                generation: 0,
                conn,
                watch: watch(inner.clone(), 0),
            }),
            driverless: AtomicU64::new(0),
            renewing: tokio::sync::Mutex::new(()),
        }))
    }

    /// The connection in use and its generation (a poisoned lock still holds a valid one).
    pub(crate) fn current(&self) -> (u64, ClusterConnection) {
        let guard = self.0.current.lock().unwrap_or_else(|p| p.into_inner());
        (guard.generation, guard.conn.clone())
    }

    /// True if the driver of the connection of `generation` is gone with its runtime: every
    /// command on it fails, and the cluster client does not replace it.
    fn driverless(&self, generation: u64) -> bool {
        self.0.driverless.load(Ordering::Acquire) > generation
    }

    /// Replaces the connection of `generation` (one a command timed out on, or whose driver
    /// is gone) with a freshly connected one; a later generation is already fresh and is kept.
    /// If the cluster cannot be reached within the connect timeout, the old connection stays
    /// and the next timeout tries again.
    async fn renew(&self, generation: u64) {
        let _one_at_a_time = self.0.renewing.lock().await;
        if self.current().0 != generation {
            return;
        }
        let fresh =
            tokio::time::timeout(self.0.connect_timeout, self.0.client.get_async_connection())
                .await;
        match fresh {
            Ok(Ok(fresh)) => {
                tracing::warn!(servers = %self.0.servers, "a Redis Cluster command timed out or its connection's runtime shut down; reconnected");
                let next = ClusterSlot {
                    generation: generation + 1,
                    conn: fresh,
                    watch: watch(Arc::downgrade(&self.0), generation + 1),
                };
                let mut guard = self.0.current.lock().unwrap_or_else(|p| p.into_inner());
                let old = std::mem::replace(&mut *guard, next);
                drop(guard);
                old.watch.abort();
            }
            Ok(Err(e)) => {
                tracing::warn!(servers = %self.0.servers, error = %e, "could not replace a Redis Cluster connection that timed out");
            }
            Err(_) => {
                tracing::warn!(servers = %self.0.servers, "could not replace a Redis Cluster connection that timed out: connecting timed out");
            }
        }
    }
}

/// Spawns, on the runtime that just connected the cluster connection of `generation` (and so
/// runs its driver task), a task that never ends by itself: when that runtime shuts down it is
/// dropped, and its guard marks the generation driverless, so the next failed command renews
/// the connection on a runtime that runs. Aborted when the connection is replaced or dropped
/// (marking an old generation, which nothing reads any more).
fn watch(inner: Weak<ClusterInner>, generation: u64) -> tokio::task::AbortHandle {
    struct Guard(Weak<ClusterInner>, u64);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(inner) = self.0.upgrade() {
                inner.driverless.fetch_max(self.1 + 1, Ordering::AcqRel);
            }
        }
    }
    let guard = Guard(inner, generation);
    tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    })
    .abort_handle()
}

/// A single server's connection, replaced when it breaks, when a command on it times out, or
/// (with Sentinel) when its server is no longer the master.
#[derive(Clone)]
pub(crate) struct Single(Arc<SingleInner>);

struct SingleInner {
    source: Source,
    /// How each connection is made: the connect timeout, and no response timeout (the caller's
    /// one timer bounds every command, see [`Conn::guarded`]).
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    /// Whether single commands are auto-pipelined (see [`super::pipeline::Pipelined`]).
    auto_pipeline: bool,
    /// Whether strata's own driver carries the connection when it can.
    own_driver: bool,
    /// The database of the URL, for `get_db` while no connection is up.
    db: i64,
    /// The servers, redacted, for log lines.
    servers: String,
    /// The connection in use, or the state of its replacement.
    current: Mutex<Slot>,
    /// Woken whenever a connection attempt ends, connected or not.
    attempted: tokio::sync::Notify,
}

/// The connection and how many times it was replaced.
struct Slot {
    generation: u64,
    /// How many reconnect tasks were started, to tell the one in charge from those it replaced.
    tasks: u64,
    state: State,
}

enum State {
    Ready(Link),
    /// Reconnect task number `task` is connecting a replacement. After a failed attempt
    /// `failed` holds its error, which callers get at once until an attempt succeeds (the
    /// attempts go on, backing off). `beat`: when the task last ran (it beats every
    /// [`RECONNECT_BEAT`] while it lives); one that has not run for [`RECONNECT_STARVED`] is
    /// starved by its runtime and the next call starts another one, which takes charge.
    Connecting {
        failed: Option<RedisError>,
        task: u64,
        beat: Instant,
    },
    /// No connection and no task connecting one: the last one was dropped unfinished (its
    /// runtime shut down, or it panicked). The next call starts a new one on its own runtime.
    Idle,
}

/// Where a single server's connections go.
enum Source {
    /// The one server of the URL.
    Url(redis::Client),
    /// The master the sentinels name now, asked again at every renewal (after a failover the
    /// old master is gone or a read-only replica).
    Sentinel(SentinelAsk),
}

impl Source {
    /// A client for the server to use now.
    async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Source::Url(client) => Ok(client.clone()),
            Source::Sentinel(ask) => ask.client().await,
        }
    }
}

/// Asks the sentinels for the master. The sentinel client (which keeps its connections to the
/// sentinels) is used if it is free; if another ask holds it, this one asks with a client of its
/// own instead of waiting: the holder may be a task its runtime no longer runs (a reconnect or a
/// resubscription taken over after [`RECONNECT_STARVED`]), which would hold it for ever, and the
/// task that took over from it would never reach the master.
struct SentinelAsk {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// To build another client when `sentinel` is busy.
    settings: Box<Settings>,
}

impl SentinelAsk {
    fn new(settings: &Settings, name: &str) -> Result<Self> {
        Ok(SentinelAsk {
            sentinel: tokio::sync::Mutex::new(sentinel_client(settings, name)?),
            settings: Box::new(settings.clone()),
        })
    }

    async fn client(&self) -> redis::RedisResult<redis::Client> {
        if let Ok(mut sentinel) = self.sentinel.try_lock() {
            return sentinel.async_get_client().await;
        }
        let name = self.settings.sentinel_master.as_deref().unwrap_or_default();
        let mut own = sentinel_client(&self.settings, name)
            .map_err(|e| RedisError::from(std::io::Error::other(e.to_string())))?;
        own.async_get_client().await
    }
}

/// Finds the master the sentinels name now, for a connection of its own that a `RedisStore`
/// does not manage (the replicated store's invalidation subscription): asked again on every
/// call, so a reconnect after a failover reaches the promoted replica.
pub(crate) struct MasterLocator {
    sentinel: SentinelAsk,
    master: String,
    sentinels: String,
}

impl MasterLocator {
    /// Sentinels at `sentinels` (URLs) monitoring `master`; the master is reached with the user,
    /// password and database of the first sentinel URL. A URL that does not parse, or an empty
    /// list or name, is an [`Error::InvalidConfig`].
    pub fn new(sentinels: &[String], master: &str) -> Result<Self> {
        if sentinels.is_empty() || master.is_empty() {
            return Err(Error::config(
                "sentinel",
                "give the sentinels' URLs (redis://host:26379) and the name they monitor the master under (`sentinel monitor <name> …`)",
            ));
        }
        let settings = Settings {
            urls: sentinels.to_vec(),
            cluster: false,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            tls_root_cert: None,
            auto_pipeline: false,
            own_driver: false,
            sentinel_master: Some(master.to_owned()),
        };
        Ok(MasterLocator {
            sentinel: SentinelAsk::new(&settings, master)?,
            master: master.to_owned(),
            sentinels: settings.describe(),
        })
    }

    /// A client for the master the sentinels name now (redis-rs checks its `ROLE` too).
    pub async fn client(&self) -> Result<redis::Client> {
        self.sentinel.client().await
            .map_err(|e| {
                Error::backend(
                    format!(
                        "asking the sentinels {} for master {:?} (are they running, and do they monitor that name?)",
                        self.sentinels, self.master
                    ),
                    e,
                )
            })
    }

    /// The sentinels and the master's name, without passwords, for messages.
    pub fn describe(&self) -> String {
        format!("master {:?} via sentinels {}", self.master, self.sentinels)
    }
}

impl Single {
    fn new(
        source: Source,
        config: AsyncConnectionConfig,
        db: i64,
        connection: Link,
        settings: &Settings,
    ) -> Self {
        Single(Arc::new(SingleInner {
            source,
            config,
            connect_timeout: settings.connect_timeout,
            auto_pipeline: settings.auto_pipeline,
            own_driver: settings.own_driver,
            db,
            servers: settings.describe(),
            current: Mutex::new(Slot {
                generation: 0,
                tasks: 0,
                state: State::Ready(connection),
            }),
            attempted: tokio::sync::Notify::new(),
        }))
    }

    /// True if the server behind this connection can change (Sentinel failover).
    fn follows_failover(&self) -> bool {
        matches!(self.0.source, Source::Sentinel(_))
    }

    /// The connection in use and its generation; while it is being replaced, a handle that
    /// waits for the replacement. A poisoned lock still holds a valid slot (it is only ever
    /// replaced whole), so it is used as is.
    fn handle(&self) -> (u64, Handle) {
        let slot = self.0.lock();
        match &slot.state {
            State::Ready(connection) => (slot.generation, Handle::Single(connection.clone())),
            State::Connecting { .. } | State::Idle => {
                (slot.generation, Handle::Waiting(self.clone()))
            }
        }
    }

    /// The connection in use, once there is one: waits while a replacement connects (the
    /// caller's timeout bounds the wait), or returns the last failed attempt's error. With no
    /// task connecting one ([`State::Idle`]), or only one its runtime does not run (idle or
    /// blocked for [`RECONNECT_STARVED`]), it starts one on the caller's runtime, once: if that
    /// one is dropped unfinished too, the caller's own runtime is shutting down and the call
    /// fails instead of starting tasks that never run.
    async fn ready(&self) -> redis::RedisResult<Link> {
        let mut restarted = false;
        loop {
            let attempted = self.0.attempted.notified();
            let mut attempted = std::pin::pin!(attempted);
            let mut start = None;
            // Registered before the lock is released: the attempt's end, which sets the state
            // under the lock and then wakes, cannot be missed.
            attempted.as_mut().enable();
            let wait = {
                let mut slot = self.0.lock();
                let starved = match &slot.state {
                    State::Ready(connection) => return Ok(connection.clone()),
                    State::Idle => true,
                    State::Connecting { beat, .. } => beat.elapsed() >= RECONNECT_STARVED,
                };
                if starved && !restarted {
                    if let State::Connecting { .. } = slot.state {
                        tracing::warn!(servers = %self.0.servers, "the task reconnecting to Redis has not run for {RECONNECT_STARVED:?} (its runtime is idle or blocked); reconnecting from this call's runtime");
                    }
                    restarted = true;
                    start = Some(self.connecting(&mut slot));
                    Ok(None)
                } else {
                    match &slot.state {
                        State::Connecting {
                            failed: Some(e), ..
                        } => Err(e.clone()),
                        State::Connecting { beat, .. } if !restarted => {
                            Ok(Some(*beat + RECONNECT_STARVED))
                        }
                        // A call that started a task waits for it without a deadline (its own
                        // timeout bounds it): it starts at most one.
                        State::Connecting { .. } => Ok(None),
                        // Its own task was dropped unfinished (`Ready` returned above).
                        State::Idle | State::Ready(_) => Err(orphaned_error()),
                    }
                }
            };
            let starved_at = match wait {
                Ok(starved_at) => starved_at,
                Err(e) => {
                    // An error that is ready at once never returns to the scheduler: a caller
                    // that retries in a loop would hold its worker (and the timers it drives)
                    // forever.
                    tokio::task::yield_now().await;
                    return Err(e);
                }
            };
            if let Some(guard) = start {
                tokio::spawn(reconnect(guard));
            }
            match starved_at {
                Some(at) => {
                    tokio::select! {
                        () = attempted => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => attempted.await,
            }
        }
    }

    /// Replaces the connection of `generation` (one a command timed out or broke on, or, with
    /// Sentinel, one whose server went away or became a replica): from now on calls wait for a
    /// replacement that one task connects, to the master the sentinels name then. A later
    /// generation, or one already being replaced, is left alone.
    fn renew(&self, generation: u64) {
        let mut slot = self.0.lock();
        if slot.generation != generation || !matches!(slot.state, State::Ready(_)) {
            return;
        }
        slot.generation += 1;
        let guard = self.connecting(&mut slot);
        drop(slot);
        tracing::warn!(servers = %self.0.servers, "a Redis command timed out or its connection broke; reconnecting");
        tokio::spawn(reconnect(guard));
    }

    /// Marks `slot` as connecting; the guard returned is for the task that connects it, to be
    /// spawned (on the caller's runtime) once the lock is released: a runtime that is shutting
    /// down drops the task inside `spawn`, and the guard's drop takes the lock.
    fn connecting(&self, slot: &mut Slot) -> Orphaned {
        slot.tasks += 1;
        slot.state = State::Connecting {
            failed: None,
            task: slot.tasks,
            beat: Instant::now(),
        };
        Orphaned {
            inner: Arc::downgrade(&self.0),
            generation: slot.generation,
            task: slot.tasks,
        }
    }
}

/// A failed reconnect attempt's error, as the calls made until an attempt succeeds get it at
/// once. One that timed out is no longer a timeout: it would read as the call's own command
/// timeout ("timed out after 5s while GET ..."), though the call did not wait.
fn attempt_error(e: RedisError) -> RedisError {
    if !e.is_timeout() {
        return e;
    }
    RedisError::from(std::io::Error::other(format!(
        "the last attempt to reconnect to Redis failed: {e}; it is tried again, backing off"
    )))
}

/// The error of a call whose own reconnect task was dropped unfinished: its runtime is shutting
/// down.
fn orphaned_error() -> RedisError {
    RedisError::from(std::io::Error::other(
        "the task reconnecting to Redis was dropped unfinished (its runtime is shutting down); the next call on a running runtime reconnects",
    ))
}

/// Held by a reconnect task for its whole life. However the task ends, if it is still the one
/// in charge of connecting its generation then nobody is connecting it any more (the task was
/// dropped with its runtime, or panicked): the slot becomes [`State::Idle`] and the waiting
/// calls are woken, so one of them (or the next call) starts a new task on a runtime that runs.
/// A task that connected, or that another one replaced, or whose store is gone, leaves nothing
/// to do.
struct Orphaned {
    inner: Weak<SingleInner>,
    generation: u64,
    task: u64,
}

impl Orphaned {
    /// True if this task is still the one connecting the slot's generation.
    fn in_charge(&self, slot: &Slot) -> bool {
        slot.generation == self.generation
            && matches!(slot.state, State::Connecting { task, .. } if task == self.task)
    }

    /// Records that the task runs now; false once it is no longer in charge (or the store is
    /// gone).
    fn beat(&self) -> bool {
        let Some(inner) = self.inner.upgrade() else {
            return false;
        };
        let mut slot = inner.lock();
        if !self.in_charge(&slot) {
            return false;
        }
        if let State::Connecting { beat, .. } = &mut slot.state {
            *beat = Instant::now();
        }
        true
    }
}

impl Drop for Orphaned {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        {
            let mut slot = inner.lock();
            if !self.in_charge(&slot) {
                return;
            }
            slot.state = State::Idle;
        }
        inner.attempted.notify_waiters();
    }
}

impl SingleInner {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One attempt: ask for the server (the sentinels, with Sentinel) and connect to it, each
    /// within the connect timeout.
    async fn connect_once(&self) -> redis::RedisResult<Link> {
        let timed_out = |what: &str| {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{what} timed out"),
            ))
        };
        let client = tokio::time::timeout(self.connect_timeout, self.source.client())
            .await
            .map_err(|_| timed_out("asking for the server"))??;
        let connecting = Link::connect(&client, &self.config, self.auto_pipeline, self.own_driver);
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| timed_out("connecting"))?
    }
}

/// Connects the replacement of the guard's generation, backing off between failed attempts,
/// until one succeeds, the generation is replaced, another task takes charge of it, or the store
/// is dropped; and beats meanwhile, so that calls can tell it is being run (see
/// [`RECONNECT_STARVED`]).
async fn reconnect(guard: Orphaned) {
    let beating = async {
        while guard.beat() {
            tokio::time::sleep(RECONNECT_BEAT).await;
        }
        // No longer in charge: the attempt under way may still end (and says so).
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = attempts(&guard) => {}
        () = beating => {}
    }
}

/// The attempts of [`reconnect`]. Only the task in charge installs its connection: one that
/// another task replaced (its runtime starved it) may finish later, when the newer connection
/// is in use, and its connection's driver runs on the runtime that starved it.
async fn attempts(guard: &Orphaned) {
    let mut delay = RECONNECT_MIN_DELAY;
    loop {
        let Some(inner) = guard.inner.upgrade() else {
            return;
        };
        // A task replaced while it backed off (its runtime starved it) makes no attempt more.
        if !guard.in_charge(&inner.lock()) {
            return;
        }
        let attempt = inner.connect_once().await;
        let connected = attempt.is_ok();
        {
            let mut slot = inner.lock();
            // Another task took charge (this one's runtime starved it), or connected already.
            if !guard.in_charge(&slot) {
                drop(slot);
                tracing::debug!(servers = %inner.servers, connected, "a reconnect taken over by another call ended; its connection, if any, is dropped");
                return;
            }
            match attempt {
                Ok(connection) => slot.state = State::Ready(connection),
                Err(e) => {
                    tracing::debug!(servers = %inner.servers, error = %e, "could not reconnect to Redis; trying again");
                    if let State::Connecting { failed, .. } = &mut slot.state {
                        *failed = Some(attempt_error(e));
                    }
                }
            }
        }
        inner.attempted.notify_waiters();
        if connected {
            tracing::info!(servers = %inner.servers, "reconnected to Redis");
            return;
        }
        drop(inner);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX_DELAY);
    }
}

/// The connection one command runs on: the connection in use when it started, looked up once
/// (one lock, one clone) and driven directly, without a boxed wrapper; or, while a single
/// server's connection is being replaced, the wait for its replacement.
pub(crate) enum Handle {
    Single(Link),
    Waiting(Single),
    Cluster(ClusterConnection),
}

impl Handle {
    /// Sends one command: what `Cmd::query_async` does, minus the boxed future the
    /// connection's `ConnectionLike` impl allocates per command (its `send_packed_command` is a
    /// plain `async fn`). The cluster connection only offers the boxed form.
    /// The wait for a replacement connection is boxed, so that it does not make every call's
    /// future (moved a few times before it runs) larger.
    async fn send(self, cmd: Cow<'_, Cmd>) -> redis::RedisResult<Value> {
        match self {
            Handle::Single(connection) => connection.send(cmd).await,
            Handle::Waiting(single) => {
                let ready: BoxFuture<'_, _> = Box::pin(async move { single.ready().await });
                ready.await?.send(cmd).await
            }
            Handle::Cluster(mut conn) => conn.req_packed_command(&cmd).await,
        }
    }
}

/// The last check of a fenced pipeline ([`Conn::run_pipeline_fenced`]): false refuses it.
pub(crate) type Fence<'f> = &'f (dyn Fn() -> bool + Sync);

/// A connection that sends nothing unless its fence allows it, asked once the connection is
/// ready (after any wait for a replacement) and right before the request is handed to it, in
/// the same poll. `refused`: the fence said no and nothing was sent.
struct Fenced<'f> {
    handle: Handle,
    fence: Fence<'f>,
    refused: bool,
}

impl Fenced<'_> {
    /// The connection to hand the request to now, or an error if the fence refused.
    async fn ready(&mut self) -> redis::RedisResult<Handle> {
        let handle = match &self.handle {
            Handle::Waiting(single) => Handle::Single(single.ready().await?),
            Handle::Single(connection) => Handle::Single(connection.clone()),
            Handle::Cluster(conn) => Handle::Cluster(conn.clone()),
        };
        if !(self.fence)() {
            self.refused = true;
            return Err(RedisError::from(std::io::Error::other(
                "refused by its fence before it was sent",
            )));
        }
        Ok(handle)
    }
}

impl ConnectionLike for Fenced<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.ready().await?.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.ready().await? {
                // Sent directly, without the boxed future of `Handle`'s impl.
                Handle::Single(connection) => connection.send_pipeline(cmd, offset, count).await,
                mut handle => handle.req_packed_commands(cmd, offset, count).await,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.handle.get_db()
    }
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(connection) => Box::pin(connection.clone().send(Cow::Borrowed(cmd))),
            Handle::Waiting(single) => {
                Box::pin(async move { single.ready().await?.send(Cow::Borrowed(cmd)).await })
            }
            Handle::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(connection) => {
                Box::pin(async move { connection.send_pipeline(cmd, offset, count).await })
            }
            Handle::Waiting(single) => Box::pin(async move {
                let connection = single.ready().await?;
                connection.send_pipeline(cmd, offset, count).await
            }),
            Handle::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(connection) => connection.db(),
            Handle::Waiting(single) => single.0.db,
            Handle::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A cluster connection that sends every pipeline to the master of one key's slot, whatever
/// slot its other commands name: a `PUBLISH` beside the key's write (the cluster bus carries a
/// `PUBLISH` from any node to every node), where the client's own routing refuses the pipeline
/// as crossing slots.
struct ToKeyMaster {
    conn: ClusterConnection,
    route: Route,
}

impl ConnectionLike for ToKeyMaster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let route = SingleNodeRoutingInfo::SpecificNode(self.route);
        Box::pin(self.conn.route_pipeline(cmd.clone(), offset, count, route))
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (_, mut handle) = self.handle();
        Box::pin(async move { handle.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let (_, mut handle) = self.handle();
        Box::pin(async move { handle.req_packed_commands(cmd, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.handle().1.get_db()
    }
}

/// The server error among a driver call's replies, if any: the call's error.
pub(crate) trait Refusal {
    fn refusal(&self) -> Option<&str>;
}

impl Refusal for Reply {
    fn refusal(&self) -> Option<&str> {
        match self {
            Reply::Error(line) => Some(line),
            _ => None,
        }
    }
}

impl Refusal for Vec<Reply> {
    fn refusal(&self) -> Option<&str> {
        self.iter().find_map(Reply::refusal)
    }
}

/// A reply within the timeout, or [`TimedOut`].
pub(crate) type Timed<T> = std::result::Result<redis::RedisResult<T>, TimedOut>;

/// An error that says the master moved: the old one refuses or dropped the connection, or is a
/// replica now (`READONLY`).
fn failed_over(e: &RedisError) -> bool {
    e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_io_error()
        || e.code() == Some("READONLY")
}

impl Conn {
    /// A client for the server this connection reaches now (the master the sentinels name,
    /// with Sentinel), for a connection of its own such as a subscription. A Redis Cluster has
    /// no one server: [`Error::InvalidConfig`].
    pub async fn server_client(&self) -> Result<redis::Client> {
        match self {
            Conn::Single(s) => s.0.source.client().await.map_err(|e| {
                Error::backend(format!("asking for the server of {}", s.0.servers), e)
            }),
            Conn::Cluster(_) => Err(Error::config(
                "distributed_fetch",
                "needs one Redis server or Sentinel: a Redis Cluster has no one server to subscribe to",
            )),
        }
    }

    /// The connection in use and its generation.
    fn handle(&self) -> (u64, Handle) {
        match self {
            Conn::Single(s) => s.handle(),
            Conn::Cluster(c) => {
                let (generation, conn) = c.current();
                (generation, Handle::Cluster(conn))
            }
        }
    }

    /// Runs `call` on a clone of this connection under `timeout`. A timeout renews the
    /// connection the call ran on: a half-open connection never answers again, so waiting for
    /// the client to notice would wait for TCP (minutes).
    pub async fn timed<T, Fut>(&self, timeout: Duration, call: impl FnOnce(Conn) -> Fut) -> Timed<T>
    where
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let generation = self.handle().0;
        self.guarded(generation, timeout, call(self.clone())).await
    }

    /// Awaits `reply` (a call on the connection of `generation`) under `timeout`, and renews
    /// that connection if the call timed out (or, with Sentinel, found the master gone).
    async fn guarded<T>(
        &self,
        generation: u64,
        timeout: Duration,
        reply: impl Future<Output = redis::RedisResult<T>>,
    ) -> Timed<T> {
        let reply = tokio::time::timeout(timeout, reply)
            .await
            .map_err(|_| TimedOut);
        self.judge(generation, &reply).await;
        reply
    }

    /// Renews the connection of `generation` if `reply` (a call on it) timed out or broke it
    /// (or, with Sentinel, found the master gone).
    async fn judge<T>(&self, generation: u64, reply: &Timed<T>) {
        match (self, reply) {
            (_, Ok(Ok(_))) => {}
            (Conn::Single(s), Err(_)) => s.renew(generation),
            // A broken connection (reset, EOF, a dead driver) is replaced, as is, with
            // Sentinel, one whose server is gone or read-only: a failover, ask for the master.
            (Conn::Single(s), Ok(Err(e))) => {
                let broken = e.is_timeout() || e.is_unrecoverable_error() || e.is_io_error();
                if broken || (s.follows_failover() && failed_over(e)) {
                    s.renew(generation);
                }
            }
            // The cluster client reconnects its nodes itself, but not after a timeout (its own
            // response timeout's errors count too), nor once its driver task is gone with the
            // runtime that connected it.
            (Conn::Cluster(c), Err(_)) => c.renew(generation).await,
            (Conn::Cluster(c), Ok(Err(e))) => {
                if e.is_timeout() || c.driverless(generation) {
                    c.renew(generation).await;
                }
            }
        }
    }

    /// Runs `cmd` under `timeout`; `context` names it in errors (`"GET sessions:abc"`).
    pub async fn run<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        self.run_cmd(Cow::Borrowed(cmd), timeout, context).await
    }

    /// [`Conn::run`] with the command given: an auto-pipelined batch takes it as it is,
    /// without a copy.
    pub async fn run_owned<T: FromRedisValue>(
        &self,
        cmd: Cmd,
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        self.run_cmd(Cow::Owned(cmd), timeout, context).await
    }

    async fn run_cmd<T: FromRedisValue>(
        &self,
        cmd: Cow<'_, Cmd>,
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        let (generation, handle) = self.handle();
        // On one server's ready connection the call's deadline goes with it: a call that joins
        // an auto-pipelined batch waits under the batch's one timer instead of its own.
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let reply: Timed<Value> = match (handle, deadline) {
            (Handle::Single(connection), Some(deadline)) => connection.send_by(cmd, deadline).await,
            // The other paths (a replacement connecting, a cluster, a timeout past the clock's
            // range) are boxed, as is the judging of a failed call below: inline, their
            // futures made every call's future twice as large, and every call moves its future
            // a few times before it runs.
            (handle, _) => {
                let send: BoxFuture<'_, Timed<Value>> = Box::pin(async move {
                    tokio::time::timeout(timeout, handle.send(cmd))
                        .await
                        .map_err(|_| TimedOut)
                });
                send.await
            }
        };
        let reply = reply.map(|reply| -> redis::RedisResult<T> {
            Ok(redis::from_redis_value(reply?.extract_error()?)?)
        });
        self.judged(generation, reply, timeout, context).await
    }

    /// Renews the connection of `generation` if `reply` timed out or broke it ([`Conn::judge`],
    /// boxed and only on a failure: the hot path's future stays small), then settles `reply`
    /// into strata's `Result`, `context` naming the command in the error.
    #[inline]
    async fn judged<T>(
        &self,
        generation: u64,
        reply: Timed<T>,
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        let seen: Option<Timed<()>> = match &reply {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(Ok(Err(e.clone()))),
            Err(timed_out) => Some(Err(*timed_out)),
        };
        if let Some(seen) = seen {
            let judged: BoxFuture<'_, ()> =
                Box::pin(async move { self.judge(generation, &seen).await });
            judged.await;
        }
        settle(reply, timeout, context)
    }

    /// This connection's strata driver and its generation, when it is one server's ready
    /// connection on it: the store's hot commands are then encoded straight into the driver's
    /// buffer ([`Own::call`]) instead of through a redis-rs `Cmd`.
    pub(crate) fn own(&self) -> Option<(u64, Arc<Own>)> {
        let Conn::Single(single) = self else {
            return None;
        };
        let slot = single.0.lock();
        match &slot.state {
            State::Ready(Link::Own(own)) => Some((slot.generation, own.clone())),
            _ => None,
        }
    }

    /// Awaits `call` (queued on the driver of `generation`, see [`Conn::own`]) under `timeout`:
    /// a server error (any of a pipeline's) is the call's [`Error::Backend`], and a timeout or a
    /// broken connection renews the connection, as for [`Conn::run`].
    pub(crate) async fn settle_own<R: Refusal>(
        &self,
        generation: u64,
        call: impl Future<Output = std::result::Result<R, DriverError>>,
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<R> {
        let reply: Timed<R> = match tokio::time::Instant::now().checked_add(timeout) {
            Some(deadline) => tokio::time::timeout_at(deadline, call).await,
            None => Ok(call.await),
        }
        .map_err(|_| TimedOut)
        .map(|reply| match reply {
            Ok(reply) => match reply.refusal() {
                Some(line) => Err(link::refusal(line)),
                None => Ok(reply),
            },
            Err(e) => Err(link::broken(e)),
        });
        self.judged(generation, reply, timeout, context).await
    }

    /// Runs a pipeline under `timeout` (all its commands must hash to one slot on a cluster).
    pub async fn run_pipeline<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        let (generation, mut handle) = self.handle();
        let call = async move { pipe.query_async::<T>(&mut handle).await };
        let reply = self.guarded(generation, timeout, call).await;
        settle(reply, timeout, context)
    }
}

impl Conn {
    /// [`Conn::run_pipeline`], sent only if `fence` still allows it once the connection is
    /// ready: `None` if it refused, and then nothing was sent. The check and the hand-over to
    /// the client's request queue happen in one poll, run without a cooperative budget (which
    /// could otherwise make the hand-over yield after the check); the hand-over still waits if
    /// that queue is full (redis-rs holds 50 requests for the connection's driver task).
    pub async fn run_pipeline_fenced<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        timeout: Duration,
        fence: Fence<'_>,
        context: impl FnOnce() -> String,
    ) -> Result<Option<T>> {
        let (generation, handle) = self.handle();
        let mut fenced = Fenced {
            handle,
            fence,
            refused: false,
        };
        let call = async move {
            match pipe.query_async::<T>(&mut fenced).await {
                Err(_) if fenced.refused => Ok(None),
                reply => reply.map(Some),
            }
        };
        let call = tokio::task::coop::unconstrained(call);
        let reply = self.guarded(generation, timeout, call).await;
        settle(reply, timeout, context)
    }
}

impl Conn {
    /// Runs a pipeline under `timeout` on the server that holds `key`: on a cluster, the master
    /// of its slot, even if other commands (a `PUBLISH`) name other slots; on one server, like
    /// [`Conn::run_pipeline`]. Every key the pipeline writes must be in `key`'s slot.
    pub async fn run_pipeline_for_key<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        key: &[u8],
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        let Conn::Cluster(cluster) = self else {
            return self.run_pipeline(pipe, timeout, context).await;
        };
        let (generation, conn) = cluster.current();
        let route = Route::with_key(key, SlotAddr::Master);
        let mut routed = ToKeyMaster { conn, route };
        let call = async move { pipe.query_async::<T>(&mut routed).await };
        let reply = self.guarded(generation, timeout, call).await;
        settle(reply, timeout, context)
    }
}

/// Turns a timed reply into strata's result.
fn settle<T>(reply: Timed<T>, after: Duration, context: impl FnOnce() -> String) -> Result<T> {
    match reply {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(command_error(e, after, context())),
        Err(_) => Err(Error::from(crate::TimeoutError {
            context: context(),
            after,
        })),
    }
}

/// A driver error as strata's error: timeouts stay timeouts, the rest is a backend error.
pub(crate) fn command_error(e: RedisError, after: Duration, context: String) -> Error {
    if e.is_timeout() {
        return Error::from(crate::TimeoutError { context, after });
    }
    Error::backend(context, e)
}

/// Connects within the connect timeout; a wrong password or an unreachable server is a clear
/// error here, not on the first command.
pub(crate) async fn connect(settings: &Settings) -> Result<Conn> {
    let attempt = async {
        if settings.cluster {
            connect_cluster(settings).await
        } else {
            connect_single(settings).await
        }
    };
    match tokio::time::timeout(settings.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::from(crate::TimeoutError {
            context: format!(
                "connecting to {} (is the server running and reachable?)",
                settings.describe()
            ),
            after: settings.connect_timeout,
        })),
    }
}

/// A client for `url`, trusting `tls_root_cert` if one was given.
fn client(settings: &Settings, url: &str) -> Result<redis::Client> {
    #[cfg(feature = "tls")]
    if let Some(pem) = &settings.tls_root_cert {
        install_crypto_provider();
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        return redis::Client::build_with_tls(url, certs).map_err(|e| url_error(url, e));
    }
    if settings.tls_root_cert.is_some() {
        return Err(Error::config(
            "tls_root_cert",
            "needs strata's `tls` feature",
        ));
    }
    if url.starts_with("rediss") {
        install_crypto_provider();
    }
    redis::Client::open(url).map_err(|e| url_error(url, e))
}

/// rustls needs a process-wide crypto provider; install ring's unless one is installed.
fn install_crypto_provider() {
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The sentinels of `settings`, asking for the master `name`. The master is reached with the
/// user, password and database of the first sentinel URL.
// `SentinelClient::build` takes a `String` without redis' rustls feature and `impl AsRef<str>`
// with it: the owned name compiles either way.
#[allow(clippy::unnecessary_to_owned)]
fn sentinel_client(settings: &Settings, name: &str) -> Result<SentinelClient> {
    let mut infos = Vec::with_capacity(settings.urls.len());
    for url in &settings.urls {
        infos.push(
            url.as_str()
                .into_connection_info()
                .map_err(|e| url_error(url, e))?,
        );
    }
    let master = infos.first().map(|info| {
        SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(info.redis_settings().clone())
    });
    SentinelClient::build(infos, name.to_owned(), master, SentinelServerType::Master)
        .map_err(|e| url_error(&settings.describe(), e))
}

async fn connect_single(settings: &Settings) -> Result<Conn> {
    let source = match &settings.sentinel_master {
        Some(name) => Source::Sentinel(SentinelAsk::new(settings, name)?),
        None => {
            let url = settings.urls.first().map(String::as_str).unwrap_or("");
            Source::Url(client(settings, url)?)
        }
    };
    let client = source
        .client()
        .await
        .map_err(|e| connect_error(settings, e))?;
    // No response timeout inside the connection: `Conn::guarded` bounds every command (and
    // any wait for a reconnection) with one timer instead of two, and renews the connection on
    // a timeout. The first connection is made here, without retries, so a wrong password is
    // said as such (within `connect`'s timeout) instead of turning into a timeout.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(None);
    let connection = Link::connect(
        &client,
        &config,
        settings.auto_pipeline,
        settings.own_driver,
    )
    .await
    .map_err(|e| connect_error(settings, e))?;
    let db = client.get_connection_info().redis_settings().db();
    Ok(Conn::Single(Single::new(
        source, config, db, connection, settings,
    )))
}

async fn connect_cluster(settings: &Settings) -> Result<Conn> {
    for url in &settings.urls {
        client(settings, url)?;
    }
    let builder = ClusterClientBuilder::new(settings.urls.clone());
    #[cfg(feature = "tls")]
    let builder = match &settings.tls_root_cert {
        Some(pem) => builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        }),
        None => builder,
    };
    let client = builder
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.command_timeout)
        .retries(3)
        .build()
        .map_err(|e| url_error(&settings.describe(), e))?;
    let mut conn = client
        .get_async_connection()
        .await
        .map_err(|e| connect_error(settings, e))?;
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| connect_error(settings, e))?;
    Ok(Conn::Cluster(Cluster::new(client, conn, settings)))
}

fn url_error(url: &str, e: RedisError) -> Error {
    let advice = if e.kind() == ErrorKind::InvalidClientConfig && url.starts_with("rediss") {
        "; `rediss://` needs strata's `tls` feature"
    } else {
        ""
    };
    Error::config(
        "url",
        format!(
            "{} is not a usable Redis URL: {e}{advice}; expected redis://[user:password@]host:port[/db]",
            redact_url(url)
        ),
    )
}

fn connect_error(settings: &Settings, e: RedisError) -> Error {
    let advice = if is_auth_error(&e) {
        "authentication failed: check the user and password in the URL"
    } else if e.is_timeout() {
        "timed out: is the server reachable?"
    } else {
        "could not connect: is the server running and reachable?"
    };
    Error::backend(
        format!("connecting to {} ({advice})", settings.describe()),
        e,
    )
}

/// A refused `AUTH`, or a server that wants one (`NOAUTH`, `WRONGPASS`).
fn is_auth_error(e: &RedisError) -> bool {
    let text = e.to_string();
    e.kind() == ErrorKind::AuthenticationFailed
        || ["NOAUTH", "WRONGPASS"]
            .iter()
            .any(|code| e.code() == Some(code) || text.contains(code))
}
