//! The invalidation channel: one Redis pub/sub connection per node (the `Hub`), shared by every
//! namespace of a [`ReplicatedStore`](super::ReplicatedStore).
//!
//! Each namespace publishes on `{prefix}{namespace}`; the hub `PSUBSCRIBE`s `{prefix}*` and hands
//! each message to the local tiers registered for that namespace. Messages from this node (its
//! own echoes) or for namespaces nobody here registered are counted and ignored; one that does
//! not decode (or names a key this node cannot decode) is counted as garbled and flushes the
//! namespace's local tiers, since which key changed is unknown. A background task owns the subscription: it pings every `heartbeat`, and when the
//! connection drops (or a ping goes unanswered) it marks the [`Link`] down, reconnects with
//! back-off, has every registered tier flush itself, marks the link up again, and only then
//! lets the tiers that warm refill in the background (writes are never held up by a warm).
//!
//! **Runtimes.** The task runs on the runtime that built the hub. If that runtime shuts down
//! (the task is dropped) the link goes down at once; if it is kept alive but not driven (a
//! current-thread runtime outside `block_on`: the task is neither run nor dropped), a watchdog
//! thread notices that the task has not beaten (every 100 ms) for [`TASK_STARVED`] and marks the
//! link down. Either way the local tiers are no longer trusted, and the next call that finds
//! the link down starts a new task on its own runtime, which resubscribes, flushes the tiers and
//! marks the link up. A replaced task that runs again exits without touching the link.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::watch;

use super::{
    link::Link,
    message::{self, Op},
};
use crate::{
    error::{Error, Result},
    time::Clock,
};

/// A boxed future, for the object-safe [`Handler`] (used off the hot path only).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A local tier that reacts to invalidations (one per namespace and store).
pub(crate) trait Handler: Send + Sync {
    /// Drops the local copies of `keys` (one message's: one boxed future per message, not per
    /// key), in order; false at the first one whose bytes are not a key (the keys after it
    /// are left to the caller's flush).
    fn invalidate<'a>(&'a self, keys: message::Keys<'a>) -> BoxFuture<'a, bool>;
    /// Drops every local copy (another node cleared the namespace, or the link came back).
    fn flush(&self) -> BoxFuture<'_, ()>;
    /// After a reconnect, once the link is up again: refills the local tier from Redis if
    /// configured to (`warm_on_join`). Runs in a task of its own, beside the hub's, so the
    /// invalidations that arrive meanwhile are applied (and win over the warm's older reads).
    /// It stops early when the link drops again after `epoch` (the next reconnect warms anew).
    fn warm(self: Arc<Self>, epoch: u64) -> BoxFuture<'static, ()>;
    /// Called by the watchdog's thread every 200 ms: relieves the store's group-commit writer
    /// if its runtime starves it (its callers wait with no timer of their own).
    fn relieve_starved_writer(&self);
}

/// Where the hub subscribes. Not `Debug`: the URLs may hold passwords.
#[derive(Clone)]
pub(crate) enum Target {
    /// One server.
    Url(String),
    /// The master the sentinels name, asked again on every (re)connect.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

/// The server behind a [`Target`]: a fixed client, or the sentinels to ask.
enum Source {
    Url(redis::Client),
    Sentinel(crate::redis::MasterLocator),
}

impl Source {
    fn new(target: &Target) -> Result<Source> {
        match target {
            Target::Url(url) => redis::Client::open(url.as_str())
                .map(Source::Url)
                .map_err(|e| Error::config("url", format!("{e}; use redis://host:port/"))),
            Target::Sentinel { sentinels, master } => {
                crate::redis::MasterLocator::new(sentinels, master).map(Source::Sentinel)
            }
        }
    }

    /// A client for the server to subscribe and publish on now: with Sentinel, the master the
    /// sentinels name at this moment (after a failover, the promoted replica).
    async fn client(&self) -> Result<redis::Client> {
        match self {
            Source::Url(client) => Ok(client.clone()),
            Source::Sentinel(locator) => locator.client().await,
        }
    }

    /// Where, without passwords, for messages.
    fn describe(&self) -> String {
        match self {
            Source::Url(client) => {
                let info = client.get_connection_info();
                format!("Redis at {}", info.addr())
            }
            Source::Sentinel(locator) => locator.describe(),
        }
    }
}

/// How a hub connects and watches its connection. Not `Debug`: the URL may hold a password.
#[derive(Clone)]
pub(crate) struct HubOptions {
    pub target: Target,
    pub prefix: String,
    pub connect_timeout: Duration,
    pub heartbeat: Duration,
    pub allow_start_offline: bool,
    pub clock: Clock,
}

/// Counters of what the hub received, read through `ReplicatedStore::replication_stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub applied: AtomicU64,
    pub own_echoes: AtomicU64,
    pub unknown_namespace: AtomicU64,
    pub garbled: AtomicU64,
    pub disconnects: AtomicU64,
    pub recoveries: AtomicU64,
    /// Background warms (after a reconnect) that ran to the end.
    pub warms: AtomicU64,
    /// Values in Redis the warm or the reconcile could not decode (see `join::fill_batch`).
    pub undecodable: AtomicU64,
    /// Microseconds from publish to apply of the last applied message; `u64::MAX`: none yet.
    pub last_latency_us: AtomicU64,
    /// Group commits sent (`commit`), and the puts and deletes they carried.
    pub batches: AtomicU64,
    pub batched_writes: AtomicU64,
    /// Puts and deletes queued behind the batch in flight, now.
    pub waiting: AtomicU64,
}

type Handlers = HashMap<String, Vec<Weak<dyn Handler>>>;

/// One node's end of the invalidation channel.
pub(crate) struct Hub {
    node: u64,
    source: Source,
    options: HubOptions,
    pub link: Link,
    pub counters: Counters,
    publisher: RwLock<Option<MultiplexedConnection>>,
    handlers: RwLock<Handlers>,
    /// The task that owns the subscription. Every change it makes to the link (down, up, a new
    /// publisher) is made under this lock and only while it is in charge, so a task that was
    /// replaced cannot undo what its successor did.
    task: Mutex<Task>,
    /// Dropped with the hub: every task (the one in charge, and any it replaced) exits.
    shutdown: watch::Sender<()>,
}

/// Which task owns the subscription, and whether its runtime still runs it.
struct Task {
    /// The task in charge (numbered from 1).
    id: u64,
    /// False once the task in charge ended, was dropped with its runtime, or was found starved
    /// (see [`TASK_STARVED`]): the next call on a running runtime starts another.
    running: bool,
    /// When the task in charge last ran (it beats every [`TASK_BEAT`]).
    beat: Instant,
}

/// How often the task owning the subscription records that its runtime runs it.
const TASK_BEAT: Duration = Duration::from_millis(100);
/// A task its runtime has not run for this long (a current-thread runtime kept alive outside
/// `block_on`, or one blocked) receives no invalidations: the link is marked down, the task is
/// replaced by the next call, and the local tiers are flushed when the new one subscribes.
///
/// Long enough that a busy or descheduled runtime never trips it: a false trip fails writes
/// (the link is down) and flushes every local tier. At 3 s, two `replicated_store` tests
/// failed that way in a full test run at load 9-10 on 2 cores ("the invalidation link to Redis
/// is down"; a disconnect counted); an idle runtime is still noticed, 20 s later.
const TASK_STARVED: Duration = Duration::from_secs(20);

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.node)
            .field("prefix", &self.options.prefix)
            .field("up", &self.link.is_up())
            .finish_non_exhaustive()
    }
}

/// A live subscription: the stream of messages and the sink used to ping.
struct Conn {
    stream: PubSubStream,
    sink: PubSubSink,
}

/// Wall-clock microseconds, comparable across the processes of one host (message latency).
pub(crate) fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn new_node_id() -> u64 {
    use std::hash::BuildHasher;
    let seed = (std::process::id(), wall_us(), &() as *const () as usize);
    foldhash::quality::RandomState::default().hash_one(seed) | 1
}

impl Hub {
    /// Connects (or, with `allow_start_offline`, starts disconnected) and spawns the task that
    /// keeps the subscription alive. Must run inside a Tokio runtime.
    pub async fn start(options: HubOptions) -> Result<Arc<Hub>> {
        let source = Source::new(&options.target)?;
        let (shutdown, _) = watch::channel(());
        let hub = Arc::new(Hub {
            node: new_node_id(),
            source,
            options,
            link: Link::default(),
            counters: Counters {
                last_latency_us: AtomicU64::new(u64::MAX),
                ..Counters::default()
            },
            publisher: RwLock::new(None),
            handlers: RwLock::new(HashMap::new()),
            task: Mutex::new(Task {
                id: 1,
                running: true,
                beat: Instant::now(),
            }),
            shutdown,
        });
        let first = hub.first_connect().await?;
        hub.task.lock().beat = Instant::now();
        tokio::spawn(run(
            Arc::downgrade(&hub),
            1,
            first,
            hub.shutdown.subscribe(),
        ));
        watchdog::watch(&hub);
        Ok(hub)
    }

    async fn first_connect(&self) -> Result<Option<Conn>> {
        match self.connect(1).await {
            Ok(conn) => {
                self.link.mark_up(self.options.clock.now_ms());
                tracing::info!(node = self.node, prefix = %self.options.prefix, "invalidation channel connected");
                Ok(Some(conn))
            }
            Err(e) if self.options.allow_start_offline => {
                tracing::warn!(node = self.node, error = %e, "Redis unreachable at start; starting offline and retrying in the background");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// This node's id, carried in every message it publishes.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Registers the local tier of `namespace`; it receives that namespace's messages until dropped.
    pub fn register(&self, namespace: &str, handler: Weak<dyn Handler>) {
        let mut handlers = self.handlers.write();
        let list = handlers.entry(namespace.to_owned()).or_default();
        list.retain(|h| h.strong_count() > 0);
        list.push(handler);
    }

    fn handlers_for(&self, namespace: &str) -> Vec<Arc<dyn Handler>> {
        let handlers = self.handlers.read();
        handlers
            .get(namespace)
            .map(|list| list.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// The channel of `namespace`.
    pub fn channel(&self, namespace: &str) -> String {
        format!("{}{}", self.options.prefix, namespace)
    }

    /// The message [`Hub::publish`] sends for `op` on `key`, for a write that carries it
    /// itself ([`crate::Store::put_and_notify`]).
    pub fn message(&self, op: Op, key: &[u8]) -> Vec<u8> {
        message::encode(op, self.node, wall_us(), key)
    }

    /// The message that invalidates every key of a group commit (one key: the one-key form).
    pub fn message_many(&self, keys: &[&[u8]]) -> Vec<u8> {
        message::encode_many(self.node, wall_us(), keys)
    }

    /// Tells every other node to drop `key` (or, for [`Op::Flush`], everything) in `channel`.
    pub async fn publish(&self, channel: &str, op: Op, key: &[u8]) -> Result<()> {
        self.publish_payload(channel, self.message(op, key)).await
    }

    /// Publishes `payload` (a message made by [`Hub::message`] or [`Hub::message_many`]) on
    /// `channel`.
    pub(crate) async fn publish_payload(&self, channel: &str, payload: Vec<u8>) -> Result<()> {
        let context = || format!("PUBLISH invalidation on {channel}");
        let mut conn =
            self.publisher.read().clone().ok_or_else(|| {
                Error::backend(context(), "the invalidation link to Redis is down")
            })?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| Error::backend(context(), e))
    }

    /// Opens the subscription and a fresh publishing connection, for task `task`.
    async fn connect(&self, task: u64) -> Result<Conn> {
        let after = self.options.connect_timeout;
        let timeout = || {
            Error::from(crate::TimeoutError {
                context: format!(
                    "connecting the invalidation channel to {} (is it running and reachable?)",
                    self.source.describe()
                ),
                after,
            })
        };
        tokio::time::timeout(after, self.open(task))
            .await
            .map_err(|_| timeout())?
    }

    async fn open(&self, task: u64) -> Result<Conn> {
        let backend = |e| Error::backend(format!("subscribing to {}*", self.options.prefix), e);
        // With Sentinel this asks for the master anew on every (re)connect: after a failover
        // the subscription and the publisher move to the promoted replica, where the data is.
        let client = self.source.client().await?;
        let pubsub = client.get_async_pubsub().await.map_err(backend)?;
        let (mut sink, stream) = pubsub.split();
        let pattern = format!("{}*", self.options.prefix);
        sink.psubscribe(pattern).await.map_err(backend)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.connect_timeout));
        let publisher = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(backend)?;
        self.if_in_charge(task, || *self.publisher.write() = Some(publisher));
        Ok(Conn { stream, sink })
    }

    /// Handles one message from the subscription.
    async fn dispatch(&self, channel: &str, payload: &[u8]) {
        self.link.touch(self.options.clock.now_ms());
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        // This node's own echo (Redis sends a publisher its own messages): recognised from
        // the header, with nothing decoded or allocated.
        if message::is_from(payload, self.node) {
            self.counters.own_echoes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let namespace = channel.strip_prefix(&self.options.prefix).unwrap_or("");
        let msg = match message::decode(payload) {
            Ok(msg) => msg,
            Err(why) => {
                tracing::debug!(
                    node = self.node,
                    ?why,
                    "a message that does not decode: dropping the namespace's local copies"
                );
                self.counters.garbled.fetch_add(1, Ordering::Relaxed);
                // It may be a newer build's invalidation: which key changed is unknown.
                for handler in self.handlers_for(namespace) {
                    handler.flush().await;
                }
                return;
            }
        };
        tracing::trace!(
            node = self.node,
            from = msg.node,
            namespace,
            "invalidation received"
        );
        let handlers = self.handlers_for(namespace);
        if handlers.is_empty() {
            self.counters
                .unknown_namespace
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        for handler in handlers {
            self.apply(&*handler, &msg).await;
        }
        let latency = wall_us().saturating_sub(msg.sent_at_us);
        self.counters
            .last_latency_us
            .store(latency, Ordering::Relaxed);
        self.counters.applied.fetch_add(1, Ordering::Relaxed);
    }

    async fn apply(&self, handler: &dyn Handler, msg: &message::Message<'_>) {
        match msg.op {
            Op::Invalidate => {
                if !handler.invalidate(msg.keys.clone()).await {
                    // A key this node cannot decode: its copy cannot be found, so all go.
                    self.counters.garbled.fetch_add(1, Ordering::Relaxed);
                    handler.flush().await;
                }
            }
            Op::Flush => handler.flush().await,
        }
    }

    /// Runs `change` (to the link) if task `task` is in charge, under the task lock; false if
    /// it is not.
    fn if_in_charge(&self, task: u64, change: impl FnOnce()) -> bool {
        let slot = self.task.lock();
        if slot.id != task || !slot.running {
            return false;
        }
        change();
        true
    }

    /// Records that task `task` runs now; false if it is no longer in charge.
    fn beat(&self, task: u64) -> bool {
        let mut slot = self.task.lock();
        if slot.id != task || !slot.running {
            return false;
        }
        slot.beat = Instant::now();
        true
    }

    /// The link is down, with nobody to receive invalidations: the local tiers are suspect.
    fn mark_down(&self) {
        self.link.mark_down();
        *self.publisher.write() = None;
        self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Task `task` ended: if it was in charge nobody owns the subscription now, and unless it
    /// ended by itself (the hub is being dropped) the link is down.
    fn task_ended(&self, task: u64, by_itself: bool) {
        let mut slot = self.task.lock();
        if slot.id != task || !slot.running {
            return;
        }
        slot.running = false;
        if by_itself {
            return;
        }
        self.mark_down();
        drop(slot);
        tracing::warn!(
            node = self.node,
            "the invalidation task stopped with the runtime that ran it; local tiers are not \
             trusted (reads go to Redis) until the next call resubscribes on its own runtime"
        );
    }

    /// Called by the watchdog: a task in charge that its runtime has not run for
    /// [`TASK_STARVED`] receives no invalidations. It is relieved (if it runs again it finds
    /// itself replaced and exits) and the link goes down until the next call resubscribes.
    fn check_starved(&self) {
        let mut slot = self.task.lock();
        if !slot.running || slot.beat.elapsed() < TASK_STARVED {
            return;
        }
        slot.running = false;
        let was_up = self.link.is_up();
        self.mark_down();
        drop(slot);
        tracing::warn!(
            node = self.node,
            was_up,
            "the invalidation task has not run for {TASK_STARVED:?} (its runtime is idle or \
             blocked); local tiers are not trusted (reads go to Redis) until the next call \
             resubscribes on its own runtime"
        );
    }

    /// Called by the watchdog: relieves every registered store's writer that its runtime
    /// starves.
    fn check_writers(&self) {
        let handlers: Vec<_> = {
            let all = self.handlers.read();
            all.values().flatten().filter_map(Weak::upgrade).collect()
        };
        for handler in handlers {
            handler.relieve_starved_writer();
        }
    }

    /// Called by every operation that found the link down: if no task owns the subscription
    /// (it ended with its runtime, or starved), starts one on the caller's runtime, which
    /// resubscribes, flushes the local tiers and marks the link up again.
    pub fn resubscribe(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = {
            let mut slot = self.task.lock();
            if slot.running {
                return;
            }
            slot.id += 1;
            slot.running = true;
            slot.beat = Instant::now();
            slot.id
        };
        tracing::info!(
            node = self.node,
            task,
            "resubscribing the invalidation channel from this call's runtime"
        );
        runtime.spawn(run(
            Arc::downgrade(self),
            task,
            None,
            self.shutdown.subscribe(),
        ));
    }

    /// The subscription of task `task` dropped: the local tiers are suspect from now on.
    fn lost(&self, task: u64) {
        if self.if_in_charge(task, || self.mark_down()) {
            tracing::warn!(
                node = self.node,
                "invalidation link to Redis lost; local tiers are suspect until reconnect"
            );
        }
    }

    /// Task `task` reconnected: every local tier flushes, the link is up (writes are accepted
    /// again), and the tiers that warm refill in the background while this task applies
    /// invalidations. A task no longer in charge changes nothing.
    async fn recovered(&self, task: u64) {
        let handlers: Vec<_> = {
            let all = self.handlers.read();
            all.values().flatten().filter_map(Weak::upgrade).collect()
        };
        for handler in &handlers {
            handler.flush().await;
        }
        let epoch = self.link.epoch();
        if !self.if_in_charge(task, || self.link.mark_up(self.options.clock.now_ms())) {
            return;
        }
        self.counters.recoveries.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            node = self.node,
            tiers = handlers.len(),
            "invalidation link to Redis back; local tiers flushed"
        );
        for handler in handlers {
            tokio::spawn(handler.warm(epoch));
        }
    }
}

enum Flow {
    Reconnect,
    Exit,
}

const MIN_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// With Sentinel the pause is shorter: while no master exists every attempt fails fast (the
/// sentinels answer, the old master refuses), and a long pause would delay the return after the
/// promotion by up to its length.
const MAX_BACKOFF_SENTINEL: Duration = Duration::from_millis(200);

/// Task `task`, which owns the subscription; it exits when the hub is dropped, or once another
/// task replaced it (its runtime starved it). It beats meanwhile (see [`Task::beat`]).
///
/// Its [`Orphaned`] guard is made here, before the future is spawned, not when it first runs:
/// a runtime that shuts down before ever polling the task (a node built by `block_on` on a
/// current-thread runtime, then used elsewhere) drops it unpolled, and the link must go down
/// then too.
fn run(
    hub: Weak<Hub>,
    task: u64,
    conn: Option<Conn>,
    shutdown: watch::Receiver<()>,
) -> impl std::future::Future<Output = ()> + Send {
    let guard = Orphaned {
        hub: hub.clone(),
        task,
        ended: false,
    };
    run_guarded(hub, task, conn, shutdown, guard)
}

async fn run_guarded(
    hub: Weak<Hub>,
    task: u64,
    conn: Option<Conn>,
    mut shutdown: watch::Receiver<()>,
    mut guard: Orphaned,
) {
    let beating = async {
        while hub.upgrade().is_some_and(|h| h.beat(task)) {
            tokio::time::sleep(TASK_BEAT).await;
        }
    };
    tokio::select! {
        // First: a task that runs again after it was replaced exits before it handles anything.
        biased;
        () = beating => {}
        () = keep_subscribed(hub.clone(), task, conn, &mut shutdown) => {}
    }
    guard.ended = true;
}

/// Marks the link down when the task in charge is dropped before it ends by itself: its runtime
/// shut down while the hub lives on (a store built once and used from other runtimes), so no
/// invalidation reaches this node until the next call resubscribes, and its local tiers must
/// not be trusted meanwhile.
struct Orphaned {
    hub: Weak<Hub>,
    task: u64,
    ended: bool,
}

impl Drop for Orphaned {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.task_ended(self.task, self.ended);
        }
    }
}

async fn keep_subscribed(
    hub: Weak<Hub>,
    task: u64,
    mut conn: Option<Conn>,
    shutdown: &mut watch::Receiver<()>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let live = match conn.take() {
            Some(live) => live,
            None => match reconnect(&hub, task, shutdown, &mut backoff).await {
                Some(live) => live,
                None => return,
            },
        };
        if let Flow::Exit = serve(&hub, live, shutdown).await {
            return;
        }
        match hub.upgrade() {
            Some(h) => h.lost(task),
            None => return,
        }
    }
}

/// Retries until connected (`Some`) or the hub is gone (`None`).
async fn reconnect(
    hub: &Weak<Hub>,
    task: u64,
    shutdown: &mut watch::Receiver<()>,
    backoff: &mut Duration,
) -> Option<Conn> {
    loop {
        let attempt = hub.upgrade()?.connect(task).await;
        match attempt {
            Ok(live) => {
                hub.upgrade()?.recovered(task).await;
                *backoff = MIN_BACKOFF;
                return Some(live);
            }
            Err(e) => tracing::debug!(error = %e, "reconnecting the invalidation channel"),
        }
        tokio::select! {
            _ = shutdown.changed() => return None,
            _ = tokio::time::sleep(*backoff) => {}
        }
        let cap = match hub.upgrade()?.source {
            Source::Sentinel(_) => MAX_BACKOFF_SENTINEL,
            Source::Url(_) => MAX_BACKOFF,
        };
        *backoff = (*backoff * 2).min(cap);
    }
}

/// Applies messages and pings until the connection drops.
async fn serve(hub: &Weak<Hub>, conn: Conn, shutdown: &mut watch::Receiver<()>) -> Flow {
    let Conn {
        mut stream,
        mut sink,
    } = conn;
    let Some((heartbeat, clock)) = hub
        .upgrade()
        .map(|h| (h.options.heartbeat, h.options.clock.clone()))
    else {
        return Flow::Exit;
    };
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Flow::Exit,
            msg = stream.next() => {
                let Some(msg) = msg else { return Flow::Reconnect };
                let Some(h) = hub.upgrade() else { return Flow::Exit };
                h.dispatch(msg.get_channel_name(), msg.get_payload_bytes()).await;
            }
            _ = ticker.tick() => {
                let pong = tokio::time::timeout(heartbeat, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return Flow::Reconnect;
                }
                let Some(h) = hub.upgrade() else { return Flow::Exit };
                h.link.touch(clock.now_ms());
            }
        }
    }
}

/// One thread per process, running while any hub lives, that relieves the tasks their runtimes
/// starve ([`Hub::check_starved`]): such a task cannot notice by itself, and the calls that
/// trust the link read no clock on their hot path.
mod watchdog {
    use std::sync::{Arc, Weak};

    use parking_lot::Mutex;

    use super::{Hub, TASK_BEAT};

    struct Hubs {
        hubs: Vec<Weak<Hub>>,
        /// True while the thread runs; it ends once no hub is left.
        running: bool,
    }

    static HUBS: Mutex<Hubs> = Mutex::new(Hubs {
        hubs: Vec::new(),
        running: false,
    });

    /// Watches `hub` until it is dropped.
    pub(super) fn watch(hub: &Arc<Hub>) {
        let mut hubs = HUBS.lock();
        hubs.hubs.push(Arc::downgrade(hub));
        if hubs.running {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("strata-invalidation-watchdog".into())
            .spawn(watch_loop);
        match spawned {
            Ok(_) => hubs.running = true,
            Err(e) => {
                tracing::warn!(error = %e, "could not start the thread that notices an invalidation task its runtime starves; such a task goes unnoticed")
            }
        }
    }

    fn watch_loop() {
        loop {
            std::thread::sleep(TASK_BEAT * 2);
            let live: Vec<Arc<Hub>> = {
                let mut hubs = HUBS.lock();
                hubs.hubs.retain(|h| h.strong_count() > 0);
                if hubs.hubs.is_empty() {
                    hubs.running = false;
                    return;
                }
                hubs.hubs.iter().filter_map(Weak::upgrade).collect()
            };
            for hub in live {
                hub.check_starved();
                hub.check_writers();
            }
        }
    }
}
