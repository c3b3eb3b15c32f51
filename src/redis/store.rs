//! `RedisStore`: every `Store` operation as the one Redis command that does it atomically.

use std::{cell::Cell, collections::HashSet, marker::PhantomData, sync::Arc, time::Duration};

use redis::Cmd;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    builder::{Parts, RedisStoreBuilder},
    compare,
    connection::{Conn, Fence},
    counter,
    driver::{encode_array, encode_parts, Call, Reply},
    gcra,
    link::Own,
    scan::{self, Scan},
    slot,
    value::decode_owned,
};
use crate::{
    codec::{encode_value, encode_value_into, Format, Key},
    error::{Error, Result},
    namespace::Namespace,
    store::{gcra_by_compare_and_set, BatchWrite, Counter, Expiry, GcraStep, Notice, Store},
    time::check_ttl,
};

/// What every clone and every namespace of a store shares: the connection and the options.
pub(super) struct Shared {
    pub conn: Conn,
    pub command_timeout: Duration,
    pub scan_batch: usize,
    pub format: Format,
    /// `wait_for_replicas`: every write is followed by `WAIT replicas timeout`.
    pub wait: Option<WaitForReplicas>,
}

impl Shared {
    /// Takes `cmd` by value: an auto-pipelined batch keeps it without a copy.
    async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: Cmd,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        self.conn
            .run_owned(cmd, self.command_timeout, context)
            .await
    }

    /// `call` (a script invocation, say) on the connection under the command timeout, its
    /// errors as strata's, named by `context`.
    pub(super) async fn call<T, Fut>(
        &self,
        call: impl FnOnce(Conn) -> Fut,
        context: impl Fn() -> String,
    ) -> Result<T>
    where
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.command_timeout;
        match self.conn.timed(timeout, call).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(super::connection::command_error(e, timeout, context())),
            Err(_) => Err(Error::from(crate::TimeoutError {
                context: context(),
                after: timeout,
            })),
        }
    }

    /// A write: `cmd`, and with `wait_for_replicas` a `WAIT` in the same pipeline (one round
    /// trip). [`Error::NotReplicated`] if fewer replicas acknowledged it in time.
    pub(super) async fn write<T: redis::FromRedisValue>(
        &self,
        cmd: Cmd,
        context: impl Fn() -> String,
    ) -> Result<T> {
        if self.wait.is_none() {
            return self.run(cmd, context).await;
        }
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        let (reply,): (T,) = self.write_pipeline(pipe, context).await?;
        Ok(reply)
    }

    /// A pipeline of writes, with `wait_for_replicas` followed by `WAIT` in the same pipeline;
    /// `T` is read from the replies of the commands not marked `ignore`.
    pub(super) async fn write_pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
        context: impl Fn() -> String,
    ) -> Result<T> {
        self.write_pipeline_to(pipe, None, context).await
    }

    /// [`Shared::write_pipeline`] sent, on a cluster, to the master of `key` when one is given
    /// (whatever slot a `PUBLISH` in it names), else where the client routes it.
    async fn write_pipeline_to<T: redis::FromRedisValue>(
        &self,
        mut pipe: redis::Pipeline,
        key: Option<&[u8]>,
        context: impl Fn() -> String,
    ) -> Result<T> {
        let Some(wait) = self.wait else {
            return self.pipeline_to(&pipe, key, context).await;
        };
        wait.append_to(&mut pipe);
        let replies: Vec<redis::Value> = self.pipeline_to(&pipe, key, &context).await?;
        wait.replies(replies, &context)
    }

    /// [`Shared::write_pipeline`], sent only if `fence` allows it once the connection is ready
    /// ([`Conn::run_pipeline_fenced`]); `None`: refused, nothing sent.
    async fn write_pipeline_fenced<T: redis::FromRedisValue>(
        &self,
        mut pipe: redis::Pipeline,
        fence: Fence<'_>,
        context: impl Fn() -> String,
    ) -> Result<Option<T>> {
        let timeout = self.command_timeout;
        let Some(wait) = self.wait else {
            return (self.conn)
                .run_pipeline_fenced(&pipe, timeout, fence, context)
                .await;
        };
        wait.append_to(&mut pipe);
        let replies: Option<Vec<redis::Value>> = (self.conn)
            .run_pipeline_fenced(&pipe, timeout, fence, &context)
            .await?;
        replies.map(|r| wait.replies(r, &context)).transpose()
    }

    async fn pipeline_to<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        key: Option<&[u8]>,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        let timeout = self.command_timeout;
        match key {
            Some(key) => {
                (self.conn)
                    .run_pipeline_for_key(pipe, key, timeout, context)
                    .await
            }
            None => self.conn.run_pipeline(pipe, timeout, context).await,
        }
    }

    /// After a write sent on its own (a script): `WAIT`, and its check.
    pub(super) async fn wait_after(&self, context: impl Fn() -> String) -> Result<()> {
        let Some(wait) = self.wait else {
            return Ok(());
        };
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wait.replicas).arg(millis(wait.timeout));
        let acknowledged: u64 = self.run(cmd, &context).await?;
        wait.check(acknowledged, &context)
    }
}

/// `wait_for_replicas(replicas, timeout)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct WaitForReplicas {
    pub replicas: u64,
    pub timeout: Duration,
}

impl WaitForReplicas {
    /// The replies of a pipeline that ends with `WAIT`: checks its count, then reads `T` from
    /// the others.
    fn replies<T: redis::FromRedisValue>(
        self,
        mut replies: Vec<redis::Value>,
        context: impl Fn() -> String,
    ) -> Result<T> {
        let acknowledged = replies.pop().map(redis::from_redis_value::<u64>);
        let acknowledged = match acknowledged {
            Some(Ok(n)) => n,
            _ => return Err(Error::backend(context(), "WAIT gave no replica count")),
        };
        self.check(acknowledged, &context)?;
        redis::from_redis_value(redis::Value::Array(replies))
            .map_err(|e| Error::backend(context(), e))
    }

    fn append_to(self, pipe: &mut redis::Pipeline) {
        pipe.cmd("WAIT")
            .arg(self.replicas)
            .arg(millis(self.timeout));
    }

    fn check(self, acknowledged: u64, context: impl Fn() -> String) -> Result<()> {
        if acknowledged >= self.replicas {
            return Ok(());
        }
        Err(Error::from(crate::NotReplicatedError {
            context: context(),
            acknowledged,
            wanted: self.replicas,
            after: self.timeout,
        }))
    }
}

/// A [`Store`] in Redis or Redis Cluster (Pow's Redix backend, done for production).
///
/// Keys are stored as `namespace:key` (string keys read naturally in `redis-cli`), values
/// through [`crate::codec`]; Redis keeps the TTLs. Every operation is one atomic command:
/// `SET .. PX`, `GET`, `UNLINK`, `GETDEL`, `SET NX`, `SET XX` (`replace`), `INCRBY`, `PTTL`,
/// `PEXPIRE`, `PERSIST`, `MGET`; `compare_and_set` is one Lua script; `incr_with_ttl` is `SET NX PX` + `INCRBY` in one `MULTI`;
/// `keys`, `count` and `clear` walk `SCAN MATCH namespace:*`, and `keys_with_prefix` walks
/// `SCAN MATCH namespace:<prefix>*` with the prefix's glob characters escaped (every master on
/// a cluster). Counters are exact over the whole `i64` range; a `u64` counter above
/// `i64::MAX` is [`Error::Overflow`] (Redis integers are signed 64-bit).
/// Clones share one multiplexed, auto-pipelined connection that reconnects by itself, also
/// after a command timed out on a connection that went silent (half-open); while Redis is
/// away, calls return [`Error::Backend`] or [`Error::Timeout`] within the command timeout, and
/// the same store serves again once Redis is back. A store may outlive the runtime it was
/// built on (a per-request runtime, a test's): the tasks that drive and replace its connection
/// run on the runtime of the call that (re)connected, and when that runtime shuts down at most
/// one call fails, with a transient error, before the store reconnects on the caller's runtime.
/// A runtime kept alive but not driven (a current-thread runtime outside `block_on`) does not
/// run those tasks either: a reconnect started there is taken over by the first call on another
/// runtime once it has not run for a second, so such calls wait at most that second (within
/// their timeout) before the store reconnects on their runtime. A connection made on such a
/// runtime stops answering while the runtime idles: the call that times out on it renews it.
///
/// ```no_run
/// use std::time::Duration;
/// use strata::{RedisStore, Store};
///
/// # async fn demo() -> strata::Result<()> {
/// let store = RedisStore::<String, String>::builder()
///     .url("redis://127.0.0.1:6379/")
///     .namespace("sessions")
///     .build()
///     .await?;
/// store.put("abc".into(), "ada".into(), Some(Duration::from_secs(60))).await?;
/// assert_eq!(store.get(&"abc".into()).await?.as_deref(), Some("ada"));
/// // redis-cli GET sessions:abc shows the MessagePack bytes of "ada".
/// # Ok(()) }
/// ```
///
/// **Many concurrent calls on few cores.** The connection's driver task runs on the runtime the
/// store is built on. Where the Redis calls of a program can run on one thread (a worker, a
/// batch job), building the store and making the calls on a current-thread runtime costs less
/// client CPU per call than a multi-thread runtime does: no wake crosses threads, and every call
/// that is ready joins the batch before the socket is polled again. At 64 concurrent calls on 2
/// cores, about a fifth less (GET 2.44 → 1.93 µs, SET 2.34 → 1.89 µs; BENCHMARKS.md), and the
/// other core is left to Redis.
///
/// ```no_run
/// use strata::{RedisStore, Store};
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let runtime = tokio::runtime::Builder::new_current_thread()
///     .enable_all()
///     .build()?;
/// runtime.block_on(async {
///     // Built inside the runtime that makes the calls: its driver task runs there too.
///     let store = RedisStore::<String, String>::builder()
///         .url("redis://127.0.0.1:6379/")
///         .build()
///         .await?;
///     let calls: Vec<_> = (0..64)
///         .map(|i| {
///             let store = store.clone();
///             tokio::spawn(async move { store.get(&format!("k{i}")).await })
///         })
///         .collect();
///     for call in calls {
///         let _value: Option<String> = call.await??;
///     }
///     Ok(())
/// })
/// # }
/// ```
pub struct RedisStore<K, V> {
    shared: Arc<Shared>,
    namespace: Namespace,
    prefix: Arc<[u8]>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for RedisStore<K, V> {
    fn clone(&self) -> Self {
        RedisStore {
            shared: self.shared.clone(),
            namespace: self.namespace.clone(),
            prefix: self.prefix.clone(),
            types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for RedisStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace.as_str())
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

/// `key` for messages (lossy UTF-8).
fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// A codec error with the key's text filled in: built only when a value fails, not on every
/// read and write (a lossy UTF-8 pass over the key was ~1 % of a GET's client instructions).
fn naming(mut e: Error, key: &[u8]) -> Error {
    match &mut e {
        Error::Decode(d) => d.key = show(key),
        Error::Encode(d) => d.key = show(key),
        _ => {}
    }
    e
}

/// A TTL as Redis milliseconds, at least 1 (a sub-millisecond TTL is not "forever").
pub(super) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Which `SET` condition to add: none, `NX` (only a new key) or `XX` (only a live key).
#[derive(Clone, Copy)]
enum SetIf {
    Always,
    New,
    Live,
}

/// `SET key value [PX ms] [NX|XX]`.
fn set_cmd(key: &[u8], value: &[u8], ttl: Option<Duration>, condition: SetIf) -> Cmd {
    // SET key value [PX <20 digits>] [NX|XX], sized up front (see `key_cmd`).
    let mut cmd = Cmd::with_capacity(6, 3 + key.len() + value.len() + 2 + 20 + 2);
    cmd.arg("SET").arg(key).arg(value);
    if let Some(ttl) = ttl {
        cmd.arg("PX").arg(millis(ttl));
    }
    match condition {
        SetIf::Always => {}
        SetIf::New => {
            cmd.arg("NX");
        }
        SetIf::Live => {
            cmd.arg("XX");
        }
    }
    cmd
}

/// `SET key value [PX ms] [NX|XX]` straight into strata's own driver's buffer (no `Cmd`).
fn encode_set(
    out: &mut Vec<u8>,
    key: &[u8],
    value: &[u8],
    ttl: Option<Duration>,
    condition: SetIf,
) {
    let args =
        3 + 2 * usize::from(ttl.is_some()) + usize::from(!matches!(condition, SetIf::Always));
    encode_array(out, args);
    encode_parts(out, &[b"SET"]);
    encode_parts(out, &[key]);
    encode_parts(out, &[value]);
    if let Some(ttl) = ttl {
        encode_parts(out, &[b"PX"]);
        encode_parts(out, &[itoa::Buffer::new().format(millis(ttl)).as_bytes()]);
    }
    match condition {
        SetIf::Always => {}
        SetIf::New => encode_parts(out, &[b"NX"]),
        SetIf::Live => encode_parts(out, &[b"XX"]),
    }
}

/// `name key` straight into strata's own driver's buffer (no `Cmd`).
fn encode_key_command(out: &mut Vec<u8>, name: &[u8], key: &[u8]) {
    encode_array(out, 2);
    encode_parts(out, &[name]);
    encode_parts(out, &[key]);
}

/// A reply the command does not give (the connection is out of step, or not Redis).
fn unexpected(reply: &Reply, context: impl FnOnce() -> String) -> Error {
    Error::backend(
        context(),
        format!(
            "Redis answered with {}, which this command does not return",
            reply.kind()
        ),
    )
}

/// The values (raw bytes) an `MGET` returned, one per key.
type Values = Vec<Option<Vec<u8>>>;

/// The replies of `MGET` + `count` `PTTL`s: the values and the TTLs, or why they are malformed.
fn split_mget_pttl(
    mut replies: Vec<redis::Value>,
    count: usize,
) -> std::result::Result<(Values, Vec<i64>), String> {
    if replies.len() != count + 1 {
        return Err(format!("{} replies for {} keys", replies.len(), count));
    }
    let ttls = replies.split_off(1);
    let values: Values = replies
        .pop()
        .map(redis::from_redis_value)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let ttls = ttls
        .into_iter()
        .map(redis::from_redis_value::<i64>)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if values.len() != count {
        return Err(format!(
            "MGET returned {} values for {count} keys",
            values.len()
        ));
    }
    Ok((values, ttls))
}

/// `cmd` then `PUBLISH notice`, pipelined: one round trip, sent in one write. Not a `MULTI`:
/// that adds two commands per write and measured 0.30x a plain put against 0.36x without it
/// (`cargo bench --all-features --bench compare -- replicated --quick`); a write whose
/// `PUBLISH` is lost with its connection gets an error, and the replicated store then
/// invalidates again (`settle`). On a cluster the pipeline goes to the key's master
/// ([`Shared::write_pipeline_to`]): the channel hashes to another slot, and a `PUBLISH` on
/// any node reaches every node's subscribers after the write it follows.
fn with_notice(cmd: Cmd, notice: Notice<'_>) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.add_command(cmd)
        .cmd("PUBLISH")
        .arg(notice.channel)
        .arg(notice.payload)
        .ignore();
    pipe
}

/// `prefix` with the glob characters of `SCAN MATCH` (`* ? [ ] \`) escaped, then `*`.
pub(super) fn prefix_pattern(namespace_prefix: &[u8], prefix: &[u8]) -> Vec<u8> {
    let mut pattern = namespace_prefix.to_vec();
    for &byte in prefix {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(byte);
    }
    pattern.push(b'*');
    pattern
}

/// The most a thread's [`SCRATCH`] keeps between commands: a bigger value's room is given back.
const SCRATCH_KEPT: usize = 64 * 1024;

thread_local! {
    /// Where `GET` and `SET` encode their namespaced key (and value) before copying them into
    /// the command: one buffer per thread, reused, in place of a key and a value buffer
    /// allocated and freed per command (two of the four allocations a batched SET made besides
    /// its command's own, callgrind).
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// `build` given this thread's scratch buffer, empty. A call made inside `build` (a value's
/// `Serialize` impl using a store) finds no buffer there and uses a new one.
fn with_scratch<T>(build: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    let mut buffer = SCRATCH.try_with(Cell::take).unwrap_or_default();
    buffer.clear();
    let built = build(&mut buffer);
    if buffer.capacity() <= SCRATCH_KEPT {
        let _ = SCRATCH.try_with(|scratch| scratch.set(buffer));
    }
    built
}

/// Sized up front: growing the command's two buffers arg by arg cost more allocations than
/// the command itself (callgrind, batched GET).
fn key_cmd(name: &str, key: &[u8]) -> Cmd {
    let mut cmd = Cmd::with_capacity(2, name.len() + key.len());
    cmd.arg(name).arg(key);
    cmd
}

impl<K, V> RedisStore<K, V> {
    /// A builder; `build().await` connects.
    pub fn builder() -> RedisStoreBuilder<K, V> {
        RedisStoreBuilder::new()
    }

    pub(super) fn from_parts(parts: Parts, conn: Conn) -> Self {
        let shared = Shared {
            conn,
            command_timeout: parts.settings.command_timeout,
            scan_batch: parts.scan_batch,
            format: parts.format,
            wait: parts.wait,
        };
        Self::in_namespace(Arc::new(shared), parts.namespace)
    }

    fn in_namespace(shared: Arc<Shared>, namespace: Namespace) -> Self {
        RedisStore {
            shared,
            prefix: namespace.prefix().into(),
            namespace,
            types: PhantomData,
        }
    }

    /// The connection and options every clone shares.
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// True if this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.shared.conn, Conn::Cluster(_))
    }

    fn pattern(&self, prefix: &str) -> Vec<u8> {
        prefix_pattern(&self.prefix, prefix.as_bytes())
    }
}

impl<K: Key, V: Serialize + DeserializeOwned + Send + Sync> RedisStore<K, V> {
    fn key(&self, key: &K) -> Vec<u8> {
        key.namespaced(&self.prefix)
    }

    /// `name key` queued on strata's own driver `own`, the namespaced key encoded in the
    /// thread's scratch buffer and copied into the driver's.
    fn own_key_call<'o>(&self, own: &'o Own, name: &[u8], key: &K) -> Call<'o> {
        with_scratch(|buffer| {
            buffer.extend_from_slice(&self.prefix);
            key.encode_key(buffer);
            own.call(|out| encode_key_command(out, name, buffer))
        })
    }

    /// `SET key value ...` queued on strata's own driver `own`, encoded as [`Self::set_command`]
    /// does.
    fn own_set_call<'o>(
        &self,
        own: &'o Own,
        key: &K,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<Call<'o>> {
        self.with_key_and_value(key, value, |key, value| {
            own.call(|out| encode_set(out, key, value, ttl, SetIf::Always))
        })
    }

    /// `name key` with the namespaced key encoded in the thread's scratch buffer, not a buffer
    /// of its own.
    fn key_command(&self, name: &str, key: &K) -> Cmd {
        with_scratch(|buffer| {
            buffer.extend_from_slice(&self.prefix);
            key.encode_key(buffer);
            key_cmd(name, buffer)
        })
    }

    /// `f` of the namespaced key and the encoded value, both in the thread's scratch buffer
    /// (no buffer of their own); a value that does not encode is an error naming the key.
    #[inline]
    fn with_key_and_value<T>(
        &self,
        key: &K,
        value: &V,
        f: impl FnOnce(&[u8], &[u8]) -> T,
    ) -> Result<T> {
        with_scratch(|buffer| {
            buffer.extend_from_slice(&self.prefix);
            key.encode_key(buffer);
            let key_len = buffer.len();
            encode_value_into(value, self.shared.format, "", buffer)
                .map_err(|e| naming(e, &buffer[..key_len]))?;
            let (key, value) = buffer.split_at(key_len);
            Ok(f(key, value))
        })
    }

    /// `SET key value ...` with the namespaced key and the encoded value in the thread's
    /// scratch buffer, not buffers of their own.
    fn set_command(
        &self,
        key: &K,
        value: &V,
        ttl: Option<Duration>,
        condition: SetIf,
    ) -> Result<Cmd> {
        self.with_key_and_value(key, value, |key, value| set_cmd(key, value, ttl, condition))
    }

    fn encode(&self, key: &[u8], value: &V) -> Result<Vec<u8>> {
        encode_value(value, self.shared.format, "").map_err(|e| naming(e, key))
    }

    fn decode(key: &[u8], bytes: Option<Vec<u8>>) -> Result<Option<V>> {
        let value = bytes.map(|b| decode_owned(b, "")).transpose();
        value.map_err(|e| naming(e, key))
    }

    fn decode_key(&self, full: &[u8]) -> Result<K> {
        let raw = full.strip_prefix(&*self.prefix).unwrap_or(full);
        K::decode_key(raw).map_err(|reason| {
            Error::from(crate::DecodeError {
                key: show(full),
                reason: format!("the key's name does not parse: {reason}"),
            })
        })
    }

    /// One `SCAN MATCH namespace:<prefix>*` cursor per node (every master on a cluster).
    async fn scans(&self, prefix: &str) -> Result<Vec<Scan<'_>>> {
        let shared = &*self.shared;
        let nodes = scan::nodes(&shared.conn, shared.command_timeout).await?;
        let scan = |node| {
            Scan::new(
                &shared.conn,
                node,
                self.pattern(prefix),
                shared.scan_batch,
                shared.command_timeout,
            )
        };
        Ok(nodes.into_iter().map(scan).collect())
    }

    /// Every key of this namespace starting with `prefix`, with the namespace. `SCAN` may
    /// return a key twice (while the server rehashes); the set reports it once.
    async fn scan_all(&self, prefix: &str) -> Result<HashSet<Vec<u8>>> {
        let mut seen = HashSet::new();
        for mut scan in self.scans(prefix).await? {
            while let Some(page) = scan.next_page().await? {
                seen.extend(page);
            }
        }
        Ok(seen)
    }

    async fn unlink(&self, keys: &[Vec<u8>]) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(keys);
        let removed: usize = self
            .shared
            .write(cmd, || {
                format!("UNLINK {} keys of {}", keys.len(), self.namespace)
            })
            .await?;
        Ok(removed)
    }

    /// `PERSIST`, then `EXISTS` when there was no TTL to remove: true if the key is live.
    async fn persist_key(&self, key: &[u8]) -> Result<bool> {
        let removed: bool = self
            .shared
            .write(key_cmd("PERSIST", key), || format!("PERSIST {}", show(key)))
            .await?;
        if removed {
            return Ok(true);
        }
        self.shared
            .run(key_cmd("EXISTS", key), || format!("EXISTS {}", show(key)))
            .await
    }

    /// `MGET` of `group` (one slot) and a `PTTL` per key, pipelined: one round trip.
    async fn read_group(
        &self,
        group: Vec<(usize, Vec<u8>)>,
    ) -> Result<Vec<(usize, Option<(V, Expiry)>)>> {
        let mut pipe = redis::pipe();
        let mut mget = redis::cmd("MGET");
        group.iter().for_each(|(_, key)| {
            mget.arg(key);
        });
        pipe.add_command(mget);
        group.iter().for_each(|(_, key)| {
            pipe.cmd("PTTL").arg(key);
        });
        let timeout = self.shared.command_timeout;
        let context = || format!("MGET+PTTL of {} keys in {}", group.len(), self.namespace);
        let replies: Vec<redis::Value> = self
            .shared
            .conn
            .run_pipeline(&pipe, timeout, context)
            .await?;
        let (values, ttls) = split_mget_pttl(replies, group.len())
            .map_err(|reason| Error::backend(context(), reason))?;
        let items = group.into_iter().zip(values).zip(ttls);
        items
            .map(|(((i, key), bytes), ms)| {
                let value = Self::decode(&key, bytes)?;
                Ok((i, value.zip(Expiry::from_pttl(ms))))
            })
            .collect()
    }

    /// One pipeline of `SET`s per slot (a single server is one slot), run concurrently.
    async fn put_batches(
        &self,
        sets: Vec<(Vec<u8>, Vec<u8>)>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let cluster = self.is_cluster();
        let groups = slot::group(sets, |(key, _)| if cluster { slot::of(key) } else { 0 });
        let pipelines = groups.into_values().map(|group| {
            let mut pipe = redis::pipe();
            for (key, value) in &group {
                pipe.add_command(set_cmd(key, value, ttl, SetIf::Always))
                    .ignore();
            }
            let count = group.len();
            async move {
                let context = || format!("pipeline of {count} SETs in {}", self.namespace);
                self.shared.write_pipeline::<()>(pipe, context).await
            }
        });
        for result in futures_util::future::join_all(pipelines).await {
            result?;
        }
        Ok(())
    }
}

/// One command of a batch: its index in the batch, its full key (for the slot), the command,
/// and whether it is a delete (its reply is a count, a put's is `OK`).
type BatchCmd = (usize, Vec<u8>, Cmd, bool);

impl<K: Key, V: Serialize + DeserializeOwned + Send + Sync> RedisStore<K, V> {
    fn batch_cmd(&self, index: usize, write: &BatchWrite<K, V>) -> Result<BatchCmd> {
        Ok(match write {
            BatchWrite::Put { key, value, ttl } => {
                check_ttl(*ttl)?;
                let key = self.key(key);
                let set = set_cmd(&key, &self.encode(&key, value)?, *ttl, SetIf::Always);
                (index, key, set, false)
            }
            BatchWrite::Delete(key) => {
                let key = self.key(key);
                let unlink = key_cmd("UNLINK", &key);
                (index, key, unlink, true)
            }
        })
    }

    /// One pipeline: the group's commands, then `PUBLISH notice` if it carries it; with a
    /// `fence`, sent only if it allows it once the connection is ready (`None`: refused, nothing
    /// sent). Returns each command's index in the batch and its flag (put: true; delete:
    /// removed).
    async fn write_group(
        &self,
        group: Vec<BatchCmd>,
        notice: Option<Notice<'_>>,
        fence: Option<Fence<'_>>,
    ) -> Result<Option<Vec<(usize, bool)>>> {
        let mut pipe = redis::Pipeline::with_capacity(group.len() + 1);
        let mut kinds = Vec::with_capacity(group.len());
        for (index, _, cmd, delete) in group {
            pipe.add_command(cmd);
            kinds.push((index, delete));
        }
        if let Some(notice) = notice {
            pipe.cmd("PUBLISH")
                .arg(notice.channel)
                .arg(notice.payload)
                .ignore();
        }
        let count = kinds.len();
        let context = || format!("pipeline of {count} writes in {}", self.namespace);
        let replies: Vec<redis::Value> = match fence {
            None => self.shared.write_pipeline(pipe, context).await?,
            Some(fence) => match self
                .shared
                .write_pipeline_fenced(pipe, fence, context)
                .await?
            {
                Some(replies) => replies,
                None => return Ok(None),
            },
        };
        if replies.len() != count {
            let why = format!("{} replies for {count} writes", replies.len());
            return Err(Error::backend(context(), why));
        }
        kinds
            .into_iter()
            .zip(replies)
            .map(|((index, delete), reply)| match delete {
                false => Ok((index, true)),
                true => redis::from_redis_value::<i64>(reply)
                    .map(|removed| (index, removed > 0))
                    .map_err(|e| Error::backend(context(), e)),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    /// [`Store::write_many_and_notify`], and with a `fence` its fenced form: each pipeline is
    /// sent only if the fence allows it once its connection is ready; `None` if one was refused.
    async fn write_many(
        &self,
        writes: &[BatchWrite<K, V>],
        notice: Notice<'_>,
        fence: Option<Fence<'_>>,
    ) -> Result<Option<(Vec<bool>, bool)>> {
        if let (Some(own), None) = (self.shared.conn.own(), self.shared.wait) {
            return self.write_many_own(own, writes, notice, fence).await;
        }
        let count = writes.len();
        let cmds = (writes.iter().enumerate())
            .map(|(i, write)| self.batch_cmd(i, write))
            .collect::<Result<Vec<_>>>()?;
        let cluster = self.is_cluster();
        // One server: one pipeline of the whole batch, in order (grouping it by slot hashed
        // every write into a map only to find one group: ~250 instructions per write).
        let groups: Vec<Vec<BatchCmd>> = match cluster {
            false => vec![cmds],
            true => slot::group(cmds, |(_, key, ..)| slot::of(key))
                .into_values()
                .collect(),
        };
        let mut inline = (!cluster).then_some(notice);
        let pipelines: Vec<_> = (groups.into_iter())
            .map(|group| self.write_group(group, inline.take(), fence))
            .collect();
        let mut done = vec![false; count];
        let mut refused = false;
        for result in futures_util::future::join_all(pipelines).await {
            let Some(flags) = result? else {
                refused = true;
                continue;
            };
            for (index, flag) in flags {
                done[index] = flag;
            }
        }
        if refused {
            return Ok(None);
        }
        if cluster && count > 0 {
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(notice.channel).arg(notice.payload);
            let context = || format!("PUBLISH after {count} writes in {}", self.namespace);
            let _: i64 = self.shared.run(publish, context).await?;
        }
        Ok(Some((done, count > 0)))
    }
}

impl<K: Key, V: Serialize + DeserializeOwned + Send + Sync> RedisStore<K, V> {
    /// [`Self::write_many`] on strata's own driver (one server, no `wait_for_replicas`): the
    /// `SET`s and `UNLINK`s and the `PUBLISH` encoded straight into the driver's buffer (no
    /// `Cmd` per write) and queued as one call, written in one write. With a `fence`, asked
    /// right before they are queued (the connection is ready); `None`: refused, nothing sent.
    async fn write_many_own(
        &self,
        (generation, own): (u64, Arc<Own>),
        writes: &[BatchWrite<K, V>],
        notice: Notice<'_>,
        fence: Option<Fence<'_>>,
    ) -> Result<Option<(Vec<bool>, bool)>> {
        let count = writes.len();
        let packed = self.pack_writes(writes, notice)?;
        if fence.is_some_and(|fence| !fence()) {
            return Ok(None);
        }
        let call = own.call_many(count + 1, |out| out.extend_from_slice(&packed));
        drop(packed);
        let context = || format!("pipeline of {count} writes in {}", self.namespace);
        let timeout = self.shared.command_timeout;
        let replies = self
            .shared
            .conn
            .settle_own(generation, call, timeout, context)
            .await?;
        let done = (writes.iter().zip(&replies))
            .map(|(write, reply)| match (write, reply) {
                (BatchWrite::Put { .. }, Reply::Ok) => Ok(true),
                (BatchWrite::Delete(_), Reply::Int(removed)) => Ok(*removed > 0),
                (_, other) => Err(unexpected(other, context)),
            })
            .collect::<Result<Vec<bool>>>()?;
        Ok(Some((done, count > 0)))
    }

    /// The writes as `SET`/`UNLINK` commands and then `PUBLISH notice`, packed for the driver;
    /// each key and value encoded in the thread's scratch buffer on the way.
    fn pack_writes(&self, writes: &[BatchWrite<K, V>], notice: Notice<'_>) -> Result<Vec<u8>> {
        let mut packed = Vec::with_capacity(writes.len() * 128 + 64);
        with_scratch(|buffer| {
            writes.iter().try_for_each(|write| {
                buffer.clear();
                buffer.extend_from_slice(&self.prefix);
                self.pack_write(&mut packed, buffer, write)
            })
        })?;
        encode_array(&mut packed, 3);
        encode_parts(&mut packed, &[b"PUBLISH"]);
        encode_parts(&mut packed, &[notice.channel.as_bytes()]);
        encode_parts(&mut packed, &[notice.payload]);
        Ok(packed)
    }

    /// One write into `packed`; `buffer` holds the namespace's prefix.
    fn pack_write(
        &self,
        packed: &mut Vec<u8>,
        buffer: &mut Vec<u8>,
        write: &BatchWrite<K, V>,
    ) -> Result<()> {
        match write {
            BatchWrite::Put { key, value, ttl } => {
                check_ttl(*ttl)?;
                key.encode_key(buffer);
                let key_len = buffer.len();
                encode_value_into(value, self.shared.format, "", buffer)
                    .map_err(|e| naming(e, &buffer[..key_len]))?;
                let (key, value) = buffer.split_at(key_len);
                encode_set(packed, key, value, *ttl, SetIf::Always);
            }
            BatchWrite::Delete(key) => {
                key.encode_key(buffer);
                encode_key_command(packed, b"UNLINK", buffer);
            }
        }
        Ok(())
    }
}

impl<K, V> Store<K, V> for RedisStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Send + Sync,
{
    async fn put(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        check_ttl(ttl)?;
        let context = || format!("SET {}", show(&self.key(&key)));
        if let (Some((generation, own)), None) = (self.shared.conn.own(), self.shared.wait) {
            let call = self.own_set_call(&own, &key, &value, ttl)?;
            let timeout = self.shared.command_timeout;
            return match self
                .shared
                .conn
                .settle_own(generation, call, timeout, context)
                .await?
            {
                Reply::Ok => Ok(()),
                other => Err(unexpected(&other, context)),
            };
        }
        let cmd = self.set_command(&key, &value, ttl, SetIf::Always)?;
        self.shared
            .write(cmd, || format!("SET {}", show(&self.key(&key))))
            .await
    }

    async fn get(&self, key: &K) -> Result<Option<V>> {
        if let Some((generation, own)) = self.shared.conn.own() {
            let call = self.own_key_call(&own, b"GET", key);
            let context = || format!("GET {}", show(&self.key(key)));
            let timeout = self.shared.command_timeout;
            let bytes = match self
                .shared
                .conn
                .settle_own(generation, call, timeout, context)
                .await?
            {
                Reply::Bulk(bytes) => bytes,
                Reply::Nil => return Ok(None),
                other => return Err(unexpected(&other, context)),
            };
            return decode_owned(bytes, "")
                .map(Some)
                .map_err(|e| naming(e, &self.key(key)));
        }
        let cmd = self.key_command("GET", key);
        let bytes: Option<Vec<u8>> = self
            .shared
            .run(cmd, || format!("GET {}", show(&self.key(key))))
            .await?;
        let value = bytes.map(|b| decode_owned(b, "")).transpose();
        value.map_err(|e| naming(e, &self.key(key)))
    }

    async fn delete(&self, key: &K) -> Result<bool> {
        if let (Some((generation, own)), None) = (self.shared.conn.own(), self.shared.wait) {
            let call = self.own_key_call(&own, b"UNLINK", key);
            let context = || format!("UNLINK {}", show(&self.key(key)));
            let timeout = self.shared.command_timeout;
            return match self
                .shared
                .conn
                .settle_own(generation, call, timeout, context)
                .await?
            {
                Reply::Int(removed) => Ok(removed > 0),
                other => Err(unexpected(&other, context)),
            };
        }
        let key = self.key(key);
        self.shared
            .write(key_cmd("UNLINK", &key), || format!("UNLINK {}", show(&key)))
            .await
    }

    async fn keys(&self) -> Result<Vec<K>> {
        let raw = self.scan_all("").await?;
        raw.iter().map(|full| self.decode_key(full)).collect()
    }

    async fn contains(&self, key: &K) -> Result<bool> {
        let key = self.key(key);
        self.shared
            .run(key_cmd("EXISTS", &key), || format!("EXISTS {}", show(&key)))
            .await
    }

    async fn take(&self, key: &K) -> Result<Option<V>> {
        let key = self.key(key);
        let bytes = self
            .shared
            .write(key_cmd("GETDEL", &key), || format!("GETDEL {}", show(&key)))
            .await?;
        Self::decode(&key, bytes)
    }

    async fn put_new(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        check_ttl(ttl)?;
        let key = self.key(&key);
        let cmd = set_cmd(&key, &self.encode(&key, &value)?, ttl, SetIf::New);
        let reply: Option<String> = self
            .shared
            .write(cmd, || format!("SET NX {}", show(&key)))
            .await?;
        Ok(reply.is_some())
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&keys);
        let values: Vec<Option<Vec<u8>>> = self
            .shared
            .run(cmd, || {
                format!("MGET {} keys of {}", keys.len(), self.namespace)
            })
            .await?;
        keys.iter()
            .zip(values)
            .map(|(k, v)| Self::decode(k, v))
            .collect()
    }

    /// One pipeline of `MGET` + `PTTL`s per cluster slot (one on a single server).
    async fn get_many_with_ttl(&self, keys: &[K]) -> Result<Vec<Option<(V, Expiry)>>> {
        let cluster = self.is_cluster();
        let full = keys.iter().map(|k| self.key(k)).enumerate().collect();
        let groups = slot::group(full, |(_, key)| if cluster { slot::of(key) } else { 0 });
        let reads = groups.into_values().map(|group| self.read_group(group));
        let mut out: Vec<_> = keys.iter().map(|_| None).collect();
        for result in futures_util::future::join_all(reads).await {
            for (i, item) in result? {
                out[i] = item;
            }
        }
        Ok(out)
    }

    /// `SET` and `PUBLISH` pipelined: one round trip (on a cluster, to the key's master).
    async fn put_and_notify(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
        notice: Notice<'_>,
    ) -> Result<bool> {
        check_ttl(ttl)?;
        let key = self.key(&key);
        let set = set_cmd(&key, &self.encode(&key, &value)?, ttl, SetIf::Always);
        let pipe = with_notice(set, notice);
        let context = || format!("SET+PUBLISH {}", show(&key));
        let shared = &self.shared;
        let _: redis::Value = shared.write_pipeline_to(pipe, Some(&key), context).await?;
        Ok(true)
    }

    /// `UNLINK` and `PUBLISH` pipelined: one round trip (on a cluster, to the key's master).
    async fn delete_and_notify(&self, key: &K, notice: Notice<'_>) -> Result<(bool, bool)> {
        let key = self.key(key);
        let pipe = with_notice(key_cmd("UNLINK", &key), notice);
        let context = || format!("UNLINK+PUBLISH {}", show(&key));
        let shared = &self.shared;
        let (removed,): (bool,) = shared.write_pipeline_to(pipe, Some(&key), context).await?;
        Ok((removed, true))
    }

    /// On one server: the `SET`s and `UNLINK`s and one `PUBLISH` of `notice` in one pipeline,
    /// one round trip. On a cluster: one pipeline per slot, sent at once, then the `PUBLISH`
    /// once every one was acknowledged (a pipeline cannot cross slots, and a `PUBLISH` sent
    /// beside them could reach a node before a write it announces): two round trips.
    async fn write_many_and_notify(
        &self,
        writes: &[BatchWrite<K, V>],
        notice: Notice<'_>,
    ) -> Result<(Vec<bool>, bool)> {
        match self.write_many(writes, notice, None).await? {
            Some(outcome) => Ok(outcome),
            None => Err(Error::backend(
                format!("a batch of writes in {}", self.namespace),
                "sent without a fence, it came back refused by one (a bug in strata: please report it)",
            )),
        }
    }

    /// [`Store::write_many_and_notify`] with `fence` asked once each pipeline's connection is
    /// ready, right before the pipeline is handed to it (see
    /// [`Store::write_many_and_notify_fenced`]).
    async fn write_many_and_notify_fenced(
        &self,
        writes: &[BatchWrite<K, V>],
        notice: Notice<'_>,
        fence: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<(Vec<bool>, bool)>> {
        self.write_many(writes, notice, Some(fence)).await
    }

    async fn put_many(&self, entries: Vec<(K, V)>, ttl: Option<Duration>) -> Result<()>
    where
        V: 'static,
        K: 'static,
    {
        check_ttl(ttl)?;
        let sets = entries
            .iter()
            .map(|(k, v)| {
                let key = self.key(k);
                let value = self.encode(&key, v)?;
                Ok((key, value))
            })
            .collect::<Result<Vec<_>>>()?;
        self.put_batches(sets, ttl).await
    }

    async fn delete_many(&self, keys: &[K]) -> Result<usize> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        self.unlink(&keys).await
    }

    /// `GET` and `PTTL` pipelined in one round trip (one key, so one slot on a cluster). Not a
    /// `MULTI`: a write between the two replies is possible, and a replicated tier's fill guard
    /// covers it; a key that expires in between reads as absent.
    async fn get_with_ttl(&self, key: &K) -> Result<Option<(V, Expiry)>> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        let timeout = self.shared.command_timeout;
        let context = || format!("GET+PTTL {}", show(&key));
        let (bytes, ms): (Option<Vec<u8>>, i64) = self
            .shared
            .conn
            .run_pipeline(&pipe, timeout, context)
            .await?;
        let Some(value) = Self::decode(&key, bytes)? else {
            return Ok(None);
        };
        Ok(Expiry::from_pttl(ms).map(|expiry| (value, expiry)))
    }

    async fn ttl(&self, key: &K) -> Result<Option<Expiry>> {
        let key = self.key(key);
        let ms: i64 = self
            .shared
            .run(key_cmd("PTTL", &key), || format!("PTTL {}", show(&key)))
            .await?;
        Ok(Expiry::from_pttl(ms))
    }

    async fn expire(&self, key: &K, ttl: Option<Duration>) -> Result<bool> {
        check_ttl(ttl)?;
        let key = self.key(key);
        let Some(ttl) = ttl else {
            return self.persist_key(&key).await;
        };
        let mut cmd = key_cmd("PEXPIRE", &key);
        cmd.arg(millis(ttl));
        self.shared
            .write(cmd, || format!("PEXPIRE {}", show(&key)))
            .await
    }

    async fn persist(&self, key: &K) -> Result<bool> {
        self.persist_key(&self.key(key)).await
    }

    async fn incr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter + Clone,
        K: std::fmt::Debug,
    {
        let key = self.key(key);
        let total = counter::incr::<V>(&self.shared, &key, delta, None).await?;
        self.shared
            .wait_after(|| format!("INCRBY {}", show(&key)))
            .await?;
        V::from_i64(total).ok_or_else(|| Error::Overflow {
            key: show(&key).into(),
        })
    }

    /// One atomic step: `MULTI; SET key 0 NX PX ttl; INCRBY key delta; EXEC` (a script with a
    /// range check for types narrower than `i64`), so only the counter this call creates gets
    /// the TTL and no expiry between two calls leaves a counter without one.
    async fn incr_with_ttl(&self, key: &K, delta: i64, ttl_if_new: Option<Duration>) -> Result<V>
    where
        V: Counter + Clone,
        K: std::fmt::Debug,
    {
        check_ttl(ttl_if_new)?;
        let key = self.key(key);
        let total = counter::incr::<V>(&self.shared, &key, delta, ttl_if_new).await?;
        self.shared
            .wait_after(|| format!("INCRBY {}", show(&key)))
            .await?;
        V::from_i64(total).ok_or_else(|| Error::Overflow {
            key: show(&key).into(),
        })
    }

    /// One Lua script: the read, the decision and the write are one step in Redis and one
    /// round trip; see [`Store::gcra`]. A value type narrower than `i64`/`u64`, or times at or
    /// above 2^53 ms (beyond a Lua number's exact integers), take the default path instead.
    async fn gcra(
        &self,
        key: &K,
        now_ms: u64,
        interval_ms: u64,
        tolerance_ms: u64,
    ) -> Result<GcraStep>
    where
        V: Counter + PartialEq + Clone,
        K: std::fmt::Debug,
    {
        let exact = [now_ms, interval_ms, tolerance_ms]
            .iter()
            .try_fold(0u64, |sum, t| sum.checked_add(*t))
            .is_some_and(|sum| sum < gcra::EXACT);
        if !exact || V::from_i64(i64::MAX).is_none() {
            return gcra_by_compare_and_set(self, key, now_ms, interval_ms, tolerance_ms).await;
        }
        let key = self.key(key);
        let step = gcra::gcra(&self.shared, &key, now_ms, interval_ms, tolerance_ms).await?;
        if step.allowed {
            self.shared
                .wait_after(|| format!("a GCRA step on {}", show(&key)))
                .await?;
        }
        Ok(step)
    }

    /// `SET key value XX [PX ttl]`: one command, so a key deleted before it is never revived.
    async fn replace(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        check_ttl(ttl)?;
        let key = self.key(&key);
        let cmd = set_cmd(&key, &self.encode(&key, &value)?, ttl, SetIf::Live);
        let reply: Option<String> = self
            .shared
            .write(cmd, || format!("SET XX {}", show(&key)))
            .await?;
        Ok(reply.is_some())
    }

    /// One Lua script (`GET`, compare the encoded bytes, `SET [PX]`), so the check and the
    /// write are one step in Redis; see [`Store::compare_and_set`].
    async fn compare_and_set(
        &self,
        key: K,
        expected: Option<V>,
        new: V,
        ttl: Option<Duration>,
    ) -> Result<bool>
    where
        V: PartialEq,
    {
        check_ttl(ttl)?;
        let key = self.key(&key);
        let expected = expected.map(|v| self.encode(&key, &v)).transpose()?;
        let new = self.encode(&key, &new)?;
        let written =
            compare::compare_and_set(&self.shared, &key, expected.as_deref(), &new, ttl).await?;
        if written {
            let context = || format!("compare-and-set {}", show(&key));
            self.shared.wait_after(context).await?;
        }
        Ok(written)
    }

    /// `SCAN MATCH namespace:<prefix>*` with the prefix's glob characters escaped, on every
    /// master of a cluster.
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<K>> {
        let raw = self.scan_all(prefix).await?;
        raw.iter().map(|full| self.decode_key(full)).collect()
    }

    fn namespace(&self) -> Namespace {
        self.namespace.clone()
    }

    /// A store over the same connection whose keys live under `namespace:`.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Self> {
        Ok(Self::in_namespace(self.shared.clone(), namespace.clone()))
    }

    async fn count(&self) -> Result<usize> {
        Ok(self.scan_all("").await?.len())
    }

    async fn clear(&self) -> Result<usize> {
        let mut removed = 0;
        for mut scan in self.scans("").await? {
            while let Some(page) = scan.next_page().await? {
                removed += self.unlink(&page).await?;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::{prefix_pattern, with_scratch, SCRATCH_KEPT};

    #[test]
    fn prefix_patterns_escape_every_glob_character() {
        assert_eq!(prefix_pattern(b"ns:", b"user:1:"), b"ns:user:1:*");
        assert_eq!(
            prefix_pattern(b"ns:", b"a*?[]\\b"),
            b"ns:a\\*\\?\\[\\]\\\\b*"
        );
        assert_eq!(prefix_pattern(b"ns:", b""), b"ns:*");
    }

    /// The scratch buffer is handed over empty, though the last command left bytes in it, and
    /// its room is reused.
    #[test]
    fn the_scratch_buffer_comes_empty_and_is_reused() {
        let room = with_scratch(|buffer| {
            buffer.extend_from_slice(b"ns:key and its value");
            buffer.capacity()
        });
        let (len, again) = with_scratch(|buffer| (buffer.len(), buffer.capacity()));
        assert_eq!(len, 0, "handed over empty");
        assert_eq!(again, room, "the same room, not a new allocation");
    }

    /// A command built while another is being built on the same thread (a value's `Serialize`
    /// impl calling a store) gets a buffer of its own: neither sees the other's bytes.
    #[test]
    fn a_nested_build_gets_its_own_scratch_buffer() {
        let (outer, inner) = with_scratch(|outer| {
            outer.extend_from_slice(b"outer");
            let inner = with_scratch(|inner| {
                assert!(inner.is_empty(), "not the outer buffer: {inner:?}");
                inner.extend_from_slice(b"inner");
                inner.clone()
            });
            outer.extend_from_slice(b"!");
            (outer.clone(), inner)
        });
        assert_eq!((&outer[..], &inner[..]), (&b"outer!"[..], &b"inner"[..]));
    }

    /// A big value's room is given back, not kept by the thread for ever.
    #[test]
    fn a_scratch_buffer_grown_past_the_limit_is_not_kept() {
        with_scratch(|buffer| buffer.resize(SCRATCH_KEPT + 1, 0));
        let kept = with_scratch(|buffer| buffer.capacity());
        assert!(kept <= SCRATCH_KEPT, "kept {kept} bytes");
    }
}
