//! `DistributedFetch`: the Redis side of cluster-wide single flight (the protocol is in
//! `crate::cache`'s `lease.rs`).
//!
//! A lease is `strata:lease:<namespace>:<key>` holding its owner's random token, taken with
//! `SET .. NX PX ttl` and released by a script that deletes it only if it still holds the
//! owner's token and then publishes the outcome. Notices travel on one channel,
//! `strata:fetch`, as one byte (what happened) followed by the stored key. Each
//! `DistributedFetch` keeps one subscription to it, read by a background task that forgets
//! remembered absences and hands the notices to waiting fetches; the task resubscribes with
//! back-off when the connection drops, and then has every cache forget all its absences (it
//! may have missed announcements). A waiting fetch never depends on the subscription alone:
//! it waits at most for the lease's remaining time, then reads the store again.
//!
//! **Runtimes.** The task runs on the runtime that built the service. If that runtime shuts
//! down (the task is dropped) or is kept alive but not driven (a current-thread runtime outside
//! `block_on`: the task beats every [`LISTENER_BEAT`] while it runs), the next lease call
//! (a fetch that misses, a release, an announced write, `sync`) on a running runtime finds the
//! task gone or without a beat for [`LISTENER_STARVED`], has every cache forget its absences and
//! starts a new task there, which subscribes again. A replaced task that runs again exits. Until
//! that call, a waiting fetch still waits at most for the lease's remaining time, and an absence
//! remembered here outlives another node's write of the key until then or until its
//! `negative_ttl` ends.

use std::{
    sync::{
        atomic::{AtomicIsize, AtomicU64, Ordering},
        Arc, LazyLock, Weak,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::{
    aio::{PubSubSink, PubSubStream},
    Script,
};
use tokio::{
    sync::{broadcast, watch},
    time::Instant,
};

use super::{
    connection::{command_error, Conn},
    store::{millis, RedisStore},
};
use crate::{
    cache::{AbsenceHandler, BoxFuture, Holder, Leases, Notice, Outcome},
    error::{Error, Result},
};

/// The channel every notice travels on.
const CHANNEL: &str = "strata:fetch";
/// The prefix of lease keys (before the stored key, namespace included).
const LEASE_PREFIX: &[u8] = b"strata:lease:";
/// Waiting fetches buffered per node before a slow one lags (it then reads the store).
const NOTICE_BUFFER: usize = 1024;
/// First and longest pause between resubscription attempts.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How often the task reading the notices records that its runtime runs it.
const LISTENER_BEAT: Duration = Duration::from_millis(100);
/// A task reading the notices that its runtime has not run for this long is replaced by the
/// next lease call. A false alarm costs one subscription and the caches' absences.
const LISTENER_STARVED: Duration = Duration::from_secs(1);

/// The value of a lease that has become an absence marker.
const ABSENT: &str = "absent";

/// If `KEYS[1]` holds `ARGV[1]` (only the owner's token): deletes it, or when `ARGV[4]` is a
/// positive number of ms, makes it the absence marker for that long. Then publishes `ARGV[3]`
/// on `ARGV[2]` either way (the waiters read the store again whoever owns the lease now).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[4]) > 0 then
    redis.call('SET', KEYS[1], 'absent', 'PX', ARGV[4])
  else
    redis.call('DEL', KEYS[1])
  end
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
",
    )
});

/// Deletes `KEYS[1]` if it is an absence marker (the key is being written, so it is no longer
/// absent), then publishes `ARGV[2]` on `ARGV[1]`.
static ANNOUNCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == 'absent' then
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
",
    )
});

/// Cluster-wide single flight for [`Cache::fetch`](crate::Cache::fetch): short leases and a
/// notice channel in the Redis of a [`RedisStore`]. Hand it to
/// [`CacheBuilder::distributed_fetch`](crate::CacheBuilder::distributed_fetch); one service
/// may serve several caches. Cheap to clone. Needs a single server or Sentinel (a Redis
/// Cluster is refused with [`Error::InvalidConfig`]).
///
/// ```no_run
/// # async fn demo() -> strata::Result<()> {
/// use std::time::Duration;
/// use strata::RedisStore;
///
/// let store = RedisStore::<String, String>::builder().build().await?;
/// let leases = store.distributed_fetch(Duration::from_secs(10)).await?;
/// assert_eq!(leases.waiting(), 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DistributedFetch {
    service: Arc<Service>,
}

impl std::fmt::Debug for DistributedFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedFetch")
            .field("lease_ttl", &self.service.lease_ttl)
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

struct Service {
    conn: Conn,
    command_timeout: Duration,
    lease_ttl: Duration,
    notices: broadcast::Sender<Notice>,
    handlers: RwLock<Vec<Weak<dyn AbsenceHandler>>>,
    waiting: AtomicIsize,
    /// Which task reads the notices, and whether its runtime runs it.
    listener: Mutex<Listener>,
    /// True while the task in charge is subscribed (`sync` waits for it).
    subscribed: watch::Sender<bool>,
    /// To spawn a replacement task from `&self`.
    me: Weak<Service>,
    /// Dropped with the service: every task reading the notices exits.
    _shutdown: watch::Sender<()>,
}

/// The task in charge of the subscription.
struct Listener {
    /// Numbered from 1.
    id: u64,
    /// False once the task in charge was dropped (its runtime shut down).
    running: bool,
    /// When the task in charge last ran (it beats every [`LISTENER_BEAT`]).
    beat: Instant,
}

/// A live subscription (the sink is kept: dropping it may end the stream).
struct Subscription {
    stream: PubSubStream,
    _sink: PubSubSink,
}

impl<K, V> RedisStore<K, V> {
    /// A [`DistributedFetch`] over this store's Redis with leases of `lease_ttl`: subscribes
    /// to the notice channel before it returns. `lease_ttl` must be at least 1 ms; pick one
    /// above the slowest load. For a [`ReplicatedStore`](crate::ReplicatedStore), call it on
    /// its `remote()` store.
    pub async fn distributed_fetch(&self, lease_ttl: Duration) -> Result<DistributedFetch> {
        if lease_ttl < Duration::from_millis(1) {
            return Err(Error::config(
                "distributed_fetch",
                "the lease TTL must be at least 1 ms (above the slowest load)",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "distributed_fetch",
                "call it inside a Tokio runtime (its notice task runs there)",
            )
        })?;
        let shared = self.shared();
        let first = subscribe(&shared.conn, shared.command_timeout).await?;
        let (shutdown, _) = watch::channel(());
        let service = Arc::new_cyclic(|me| Service {
            conn: shared.conn.clone(),
            command_timeout: shared.command_timeout,
            lease_ttl,
            notices: broadcast::channel(NOTICE_BUFFER).0,
            handlers: RwLock::new(Vec::new()),
            waiting: AtomicIsize::new(0),
            listener: Mutex::new(Listener {
                id: 1,
                running: true,
                beat: Instant::now(),
            }),
            subscribed: watch::channel(true).0,
            me: me.clone(),
            _shutdown: shutdown,
        });
        let stop = service._shutdown.subscribe();
        spawn_listener(&runtime, Arc::downgrade(&service), 1, Some(first), stop);
        Ok(DistributedFetch { service })
    }
}

impl DistributedFetch {
    /// How many fetches of this node wait for another node's lease right now.
    pub fn waiting(&self) -> usize {
        self.service.waiting.load(Ordering::SeqCst).max(0) as usize
    }

    /// Returns once every notice published anywhere before this call has been applied here
    /// (absences forgotten): it publishes a marker and waits for its own echo, which Redis
    /// delivers after every earlier message. [`Error::Timeout`] after the command timeout.
    ///
    /// ```no_run
    /// # async fn demo(leases: strata::DistributedFetch) -> strata::Result<()> {
    /// // After another node's `cache.put(..)` returned:
    /// leases.sync().await?;
    /// // this node's caches have forgotten their absences of that key.
    /// # Ok(()) }
    /// ```
    pub async fn sync(&self) -> Result<()> {
        self.service.ensure_listener();
        let timeout = self.service.command_timeout;
        let mut up = self.service.subscribed.subscribe();
        // A task that just took over subscribes first: a marker published before would be lost.
        if tokio::time::timeout(timeout, up.wait_for(|up| *up))
            .await
            .is_err()
        {
            return Err(Error::from(crate::TimeoutError {
                context: format!("waiting for the subscription to {CHANNEL} (is Redis reachable?)"),
                after: timeout,
            }));
        }
        let marker = new_token().to_string().into_bytes();
        let mut notices = self.service.notices.subscribe();
        self.service.publish(Outcome::Sync, &marker).await?;
        let echo = async {
            loop {
                match notices.recv().await {
                    Ok(n) if n.outcome == Outcome::Sync && *n.key == *marker => return true,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        match tokio::time::timeout(self.service.command_timeout, echo).await {
            Ok(true) => Ok(()),
            _ => Err(Error::from(crate::TimeoutError {
                context: format!(
                    "waiting for the echo of a marker on {CHANNEL} (is the subscription up?)"
                ),
                after: self.service.command_timeout,
            })),
        }
    }

    pub(crate) fn service(&self) -> Arc<dyn Leases> {
        self.service.clone()
    }
}

/// A fresh random lease token.
fn new_token() -> u64 {
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = (
        std::process::id(),
        now,
        COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    foldhash::quality::RandomState::default().hash_one(seed)
}

fn lease_key(key: &[u8]) -> Vec<u8> {
    [LEASE_PREFIX, key].concat()
}

fn payload(outcome: Outcome, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(outcome.byte());
    out.extend_from_slice(key);
    out
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

impl Service {
    /// Called by every lease call: if the task reading the notices was dropped with its runtime,
    /// or its runtime has not run it for [`LISTENER_STARVED`], every cache forgets its absences
    /// (announcements may have been missed) and a new task starts on the caller's runtime.
    fn ensure_listener(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let id = {
            let mut slot = self.listener.lock();
            if slot.running && slot.beat.elapsed() < LISTENER_STARVED {
                return;
            }
            slot.id += 1;
            slot.running = true;
            slot.beat = Instant::now();
            slot.id
        };
        self.subscribed.send_replace(false);
        self.each_handler(|h| h.forget_all());
        tracing::warn!(
            "the task reading the fetch notices stopped or has not run for {LISTENER_STARVED:?} \
             (its runtime shut down, is idle or blocked); remembered absences were forgotten and \
             the notices are read from this call's runtime"
        );
        let stop = self._shutdown.subscribe();
        spawn_listener(&runtime, self.me.clone(), id, None, stop);
    }

    /// Records that task `id` runs now; false once it is no longer in charge.
    fn beat(&self, id: u64) -> bool {
        let mut slot = self.listener.lock();
        if slot.id != id || !slot.running {
            return false;
        }
        slot.beat = Instant::now();
        true
    }

    /// Sets whether task `id`'s subscription is up, if it is in charge.
    fn mark_subscribed(&self, id: u64, up: bool) {
        let slot = self.listener.lock();
        if slot.id == id && slot.running {
            self.subscribed.send_replace(up);
        }
    }

    async fn publish(&self, outcome: Outcome, key: &[u8]) -> Result<()> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(CHANNEL).arg(payload(outcome, key));
        let context = || format!("PUBLISH {CHANNEL} (a write of {})", show(key));
        let _: i64 = self.conn.run(&cmd, self.command_timeout, context).await?;
        Ok(())
    }

    async fn try_acquire(&self, key: &[u8]) -> Result<Option<u64>> {
        let token = new_token();
        let lease = lease_key(key);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&lease)
            .arg(token.to_string())
            .arg("NX")
            .arg("PX")
            .arg(millis(self.lease_ttl));
        let context = || format!("SET NX {}", show(&lease));
        let reply: Option<String> = self.conn.run(&cmd, self.command_timeout, context).await?;
        Ok(reply.map(|_| token))
    }

    /// `GET` and `PTTL` of the lease, pipelined.
    /// A cache writes `key`: drops its absence marker and tells every node.
    async fn announce_write(&self, key: &[u8]) -> Result<()> {
        let lease = lease_key(key);
        let notice = payload(Outcome::Written, key);
        let call = |mut conn: Conn| {
            let mut invocation = ANNOUNCE.key(&lease);
            invocation.arg(CHANNEL).arg(&notice);
            async move { invocation.invoke_async::<i64>(&mut conn).await }
        };
        let context = || format!("announcing a write of {}", show(key));
        self.script(call, context).await
    }

    /// Runs a script invocation under the command timeout.
    async fn script<Fut>(
        &self,
        call: impl FnOnce(Conn) -> Fut,
        context: impl FnOnce() -> String,
    ) -> Result<()>
    where
        Fut: std::future::Future<Output = redis::RedisResult<i64>>,
    {
        let timeout = self.command_timeout;
        match self.conn.timed(timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(command_error(e, timeout, context())),
            Err(_) => Err(Error::from(crate::TimeoutError {
                context: context(),
                after: timeout,
            })),
        }
    }

    async fn lease_state(&self, key: &[u8]) -> Result<Holder> {
        let lease = lease_key(key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&lease).cmd("PTTL").arg(&lease);
        let context = || format!("GET+PTTL {}", show(&lease));
        let (value, ms): (Option<String>, i64) = self
            .conn
            .run_pipeline(&pipe, self.command_timeout, context)
            .await?;
        Ok(match (value, ms) {
            (None, _) | (_, -2) => Holder::Free,
            (Some(v), _) if v == ABSENT => Holder::Absent,
            (Some(_), ms) if ms < 0 => Holder::Loading(self.lease_ttl),
            (Some(_), ms) => Holder::Loading(Duration::from_millis(ms as u64)),
        })
    }

    async fn let_go(
        &self,
        key: &[u8],
        token: u64,
        outcome: Outcome,
        absent_for: Option<Duration>,
    ) -> Result<()> {
        let lease = lease_key(key);
        let notice = payload(outcome, key);
        let token = token.to_string();
        let marker_ms = absent_for.map_or(0, |d| millis(d.min(self.lease_ttl)));
        let call = |mut conn: Conn| {
            let mut invocation = RELEASE.key(&lease);
            invocation
                .arg(&token)
                .arg(CHANNEL)
                .arg(&notice)
                .arg(marker_ms);
            async move { invocation.invoke_async::<i64>(&mut conn).await }
        };
        let context = || format!("releasing the lease {}", show(&lease));
        self.script(call, context).await
    }

    /// Applies one message of the subscription: absences first, then the waiters.
    fn dispatch(&self, bytes: &[u8]) {
        let Some((&first, key)) = bytes.split_first() else {
            return;
        };
        let Some(outcome) = Outcome::from_byte(first) else {
            return;
        };
        if matches!(outcome, Outcome::Written | Outcome::Stored) {
            self.each_handler(|h| h.forget(key));
        }
        let _ = self.notices.send(Notice {
            outcome,
            key: key.into(),
        });
    }

    fn each_handler(&self, apply: impl Fn(&dyn AbsenceHandler)) {
        let mut stale = false;
        for handler in self.handlers.read().iter() {
            match handler.upgrade() {
                Some(h) => apply(&*h),
                None => stale = true,
            }
        }
        if stale {
            self.handlers.write().retain(|h| h.strong_count() > 0);
        }
    }
}

impl Leases for Service {
    fn acquire<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<u64>>> {
        self.ensure_listener();
        Box::pin(self.try_acquire(key))
    }

    fn holder<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Holder>> {
        self.ensure_listener();
        Box::pin(self.lease_state(key))
    }

    fn release<'a>(
        &'a self,
        key: &'a [u8],
        token: u64,
        outcome: Outcome,
        absent_for: Option<Duration>,
    ) -> BoxFuture<'a, Result<()>> {
        self.ensure_listener();
        Box::pin(self.let_go(key, token, outcome, absent_for))
    }

    fn announce<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<()>> {
        self.ensure_listener();
        Box::pin(self.announce_write(key))
    }

    fn listen(&self) -> broadcast::Receiver<Notice> {
        self.ensure_listener();
        self.notices.subscribe()
    }

    fn register(&self, handler: Weak<dyn AbsenceHandler>) {
        self.handlers.write().push(handler);
    }

    fn waiting(&self, delta: isize) {
        self.waiting.fetch_add(delta, Ordering::SeqCst);
    }
}

/// Subscribes to the notice channel on the server the connection reaches now (the master the
/// sentinels name, with Sentinel), within `timeout`.
async fn subscribe(conn: &Conn, timeout: Duration) -> Result<Subscription> {
    let attempt = async {
        let client = conn.server_client().await?;
        let backend = |e| Error::backend(format!("subscribing to {CHANNEL}"), e);
        let pubsub = client.get_async_pubsub().await.map_err(backend)?;
        let (mut sink, stream) = pubsub.split();
        sink.subscribe(CHANNEL).await.map_err(backend)?;
        Ok(Subscription {
            stream,
            _sink: sink,
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Error::from(crate::TimeoutError {
                context: format!("subscribing to {CHANNEL}"),
                after: timeout,
            }))
        })
}

/// Task `id`, which reads the subscription (or first subscribes, when `sub` is `None`) until
/// the service is dropped, resubscribing with back-off when the connection drops; it beats
/// meanwhile, and exits once another task replaced it.
/// Spawns task `id` on `runtime`. Its guard exists before the task first runs: a runtime that
/// drops the task unpolled (it shuts down first) still marks it gone.
fn spawn_listener(
    runtime: &tokio::runtime::Handle,
    service: Weak<Service>,
    id: u64,
    sub: Option<Subscription>,
    stop: watch::Receiver<()>,
) {
    let guard = Orphaned {
        service: service.clone(),
        id,
    };
    runtime.spawn(listen(guard, service, id, sub, stop));
}

async fn listen(
    _guard: Orphaned,
    service: Weak<Service>,
    id: u64,
    sub: Option<Subscription>,
    mut stop: watch::Receiver<()>,
) {
    let beating = async {
        while service.upgrade().is_some_and(|s| s.beat(id)) {
            tokio::time::sleep(LISTENER_BEAT).await;
        }
    };
    tokio::select! {
        // First: a task that runs again after it was replaced exits before it reads anything.
        biased;
        () = beating => {}
        () = read(&service, id, sub, &mut stop) => {}
    }
}

/// Marks the task in charge gone when it is dropped (its runtime shut down): the next lease
/// call starts another.
struct Orphaned {
    service: Weak<Service>,
    id: u64,
}

impl Drop for Orphaned {
    fn drop(&mut self) {
        let Some(service) = self.service.upgrade() else {
            return;
        };
        let mut slot = service.listener.lock();
        if slot.id == self.id && slot.running {
            slot.running = false;
            service.subscribed.send_replace(false);
        }
    }
}

async fn read(
    service: &Weak<Service>,
    id: u64,
    mut sub: Option<Subscription>,
    stop: &mut watch::Receiver<()>,
) {
    // A task that takes over subscribes at once; after a drop, the first attempt waits.
    let mut pause = false;
    loop {
        let mut live = match sub.take() {
            Some(live) => live,
            None => match resubscribe(service, id, stop, pause).await {
                Some(fresh) => fresh,
                None => return,
            },
        };
        pause = true;
        loop {
            let message = tokio::select! {
                _ = stop.changed() => return,
                message = live.stream.next() => message,
            };
            let Some(message) = message else { break };
            let Some(service) = service.upgrade() else {
                return;
            };
            service.dispatch(message.get_payload_bytes());
        }
        match service.upgrade() {
            Some(s) => s.mark_subscribed(id, false),
            None => return,
        }
    }
}

/// Subscribes again (after a first pause if `pause`), backing off between attempts; then every
/// cache forgets all its absences. `None` once the service is gone.
async fn resubscribe(
    service: &Weak<Service>,
    id: u64,
    stop: &mut watch::Receiver<()>,
    pause: bool,
) -> Option<Subscription> {
    let mut delay = RETRY_MIN;
    if pause {
        tokio::select! {
            _ = stop.changed() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    loop {
        let live = service.upgrade()?;
        match subscribe(&live.conn, live.command_timeout).await {
            Ok(fresh) => {
                live.each_handler(|h| h.forget_all());
                live.mark_subscribed(id, true);
                tracing::warn!(
                    "the fetch notice subscription came back; remembered absences were forgotten"
                );
                return Some(fresh);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not resubscribe to the fetch notices; retrying");
            }
        }
        drop(live);
        tokio::select! {
            _ = stop.changed() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}
