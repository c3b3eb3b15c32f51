//! `RedisStoreBuilder`: where the Redis server (or cluster) is and how to talk to it, validated
//! and connected at `build()`.

use std::{marker::PhantomData, time::Duration};

use serde::{de::DeserializeOwned, Serialize};

use super::{
    connection::{self, Settings},
    store::{RedisStore, WaitForReplicas},
};
use crate::{
    codec::{Format, Key},
    error::{Error, Result},
    namespace::Namespace,
};

/// Builds a [`RedisStore`]; `build()` validates the options and connects.
///
/// # Defaults
/// - `url`: `redis://127.0.0.1:6379/` (one server; `cluster([..])` for Redis Cluster);
/// - `namespace`: `"cache"` (keys are stored as `cache:KEY`);
/// - `connect_timeout`: 5 s (the whole connect, retries included);
/// - `command_timeout`: 2 s per command (waiting for a reconnection included);
/// - `scan_batch`: 500 keys per `SCAN` page (and per `UNLINK` in `clear`);
/// - `format`: [`Format::MessagePack`] (integers are always raw decimal, see [`crate::codec`]);
/// - `tls_root_cert`: none (`rediss://` trusts the system's root certificates);
/// - `wait_for_replicas`: off (a write returns once the master has it);
/// - `auto_pipeline`: on (concurrent single commands share one write; one server or Sentinel).
/// - `own_driver`: on (a plain-TCP server or Sentinel master is reached through strata's own
///   RESP2 driver; TLS, Unix sockets, RESP3 and a cluster through redis-rs).
///
/// ```
/// use std::time::Duration;
/// use strata::RedisStore;
///
/// let builder = RedisStore::<String, String>::builder()
///     .url("redis://user:secret@127.0.0.1:6379/0")
///     .namespace("sessions")
///     .command_timeout(Duration::from_millis(500));
/// // `builder.build().await?` connects.
/// # let _ = builder;
/// ```
#[must_use]
pub struct RedisStoreBuilder<K, V> {
    types: PhantomData<fn() -> (K, V)>,
    urls: Vec<String>,
    cluster: bool,
    namespace: Result<Namespace>,
    connect_timeout: Duration,
    command_timeout: Duration,
    scan_batch: usize,
    format: Format,
    tls_root_cert: Option<Vec<u8>>,
    sentinel_master: Option<String>,
    wait_for_replicas: Option<WaitForReplicas>,
    auto_pipeline: bool,
    own_driver: bool,
}

/// Shows the URLs without passwords.
impl<K, V> std::fmt::Debug for RedisStoreBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| crate::redact_url(u)).collect();
        f.debug_struct("RedisStoreBuilder")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("sentinel_master", &self.sentinel_master)
            .field("namespace", &self.namespace)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("scan_batch", &self.scan_batch)
            .field("format", &self.format)
            .field("wait_for_replicas", &self.wait_for_replicas)
            .field("auto_pipeline", &self.auto_pipeline)
            .field("own_driver", &self.own_driver)
            .finish_non_exhaustive()
    }
}

/// Validated options, handed to the store.
pub(super) struct Parts {
    pub settings: Settings,
    pub namespace: Namespace,
    pub scan_batch: usize,
    pub format: Format,
    pub wait: Option<WaitForReplicas>,
}

impl<K, V> RedisStoreBuilder<K, V> {
    pub(super) fn new() -> Self {
        RedisStoreBuilder {
            types: PhantomData,
            urls: vec!["redis://127.0.0.1:6379/".to_owned()],
            cluster: false,
            namespace: Ok(Namespace::default()),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
            scan_batch: 500,
            format: Format::default(),
            tls_root_cert: None,
            sentinel_master: None,
            wait_for_replicas: None,
            auto_pipeline: true,
            own_driver: true,
        }
    }

    /// One Redis server: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS (with
    /// the `tls` feature).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls = vec![url.into()];
        self.cluster = false;
        self.sentinel_master = None;
        self
    }

    /// Redis behind Sentinel: `sentinels` are the sentinels' URLs (`redis://host:26379`), and
    /// `master` the name they monitor (`sentinel monitor <master> …`). The store asks them for
    /// the master at connect time and again whenever a command times out or finds the server
    /// gone or read-only (a failover), so it follows a promotion by itself. The master is
    /// reached with the user, password and database of the first sentinel URL.
    ///
    /// Durability is Redis' own: a write acknowledged by the old master just before it failed
    /// may be lost if it had not reached the replica that was promoted.
    ///
    /// ```
    /// use strata::RedisStore;
    /// let builder = RedisStore::<String, String>::builder()
    ///     .sentinel(["redis://127.0.0.1:26379", "redis://127.0.0.1:26380"], "mymaster")
    ///     .namespace("sessions");
    /// // `builder.build().await?` asks the sentinels for the master and connects.
    /// # let _ = builder;
    /// ```
    pub fn sentinel<I, S>(mut self, sentinels: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls = sentinels.into_iter().map(Into::into).collect();
        self.cluster = false;
        self.sentinel_master = Some(master.into());
        self
    }

    /// A Redis Cluster, reached through these seed nodes (any reachable master or replica; the
    /// rest of the cluster is discovered). Credentials go in the URLs.
    pub fn cluster<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls = urls.into_iter().map(Into::into).collect();
        self.cluster = true;
        self.sentinel_master = None;
        self
    }

    /// The namespace (validated at `build()`): keys are stored as `namespace:key`.
    pub fn namespace(mut self, namespace: impl AsRef<str>) -> Self {
        self.namespace = Namespace::new(namespace);
        self
    }

    /// How long `build()` may take to connect, retries included.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may take, waiting for a reconnection included.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Keys per `SCAN` page (the `COUNT` hint) and per `UNLINK` batch in `clear`.
    pub fn scan_batch(mut self, batch: usize) -> Self {
        self.scan_batch = batch;
        self
    }

    /// The payload format of values.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// For `rediss://`: trust these PEM root certificates (a private CA) instead of the
    /// system's trust store. Needs the `tls` feature (`build()` says so otherwise).
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Makes every write wait until `replicas` replicas have it, for at most `timeout`: each
    /// write is followed by `WAIT replicas timeout` in the same pipeline (one round trip; a
    /// `compare_and_set` or counter script is followed by its own `WAIT`). If fewer replicas
    /// acknowledged in time the write returns [`Error::NotReplicated`]: it is applied on the
    /// master, but a failover now may lose it. `WAIT` narrows the window Sentinel leaves for
    /// losing acknowledged writes; it does not make Redis strongly consistent. `timeout` must
    /// be shorter than `command_timeout` (checked at `build()`), and `replicas` at least 1;
    /// a Redis Cluster is refused (one server or Sentinel only).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::RedisStore;
    ///
    /// let builder = RedisStore::<String, String>::builder()
    ///     .sentinel(["redis://127.0.0.1:26379"], "mymaster")
    ///     .wait_for_replicas(1, Duration::from_millis(200));
    /// // `builder.build().await?`; then a put returns once one replica has it, or
    /// // `Err(Error::NotReplicated { .. })` after 200 ms.
    /// # let _ = builder;
    /// ```
    pub fn wait_for_replicas(mut self, replicas: u64, timeout: Duration) -> Self {
        self.wait_for_replicas = Some(WaitForReplicas { replicas, timeout });
        self
    }

    /// Auto-pipelining, on by default: the single commands (`get`, `put`, `delete`, counters…)
    /// that tasks send at the same time on one server's connection go out as one pipeline, in
    /// one socket write, instead of one write each; each call still gets its own reply (a
    /// `WRONGTYPE` fails only its call) and its own timeout, and a call that is dropped does not
    /// disturb the others. A command sent while no other is in flight goes at once, on its own
    /// (a lone task pays nothing); the ones sent while others are in flight join a batch, sent
    /// once the runtime has run the other tasks ready at the time, so under load one write
    /// carries tens of commands and the client spends about 0.6–0.7× the CPU per command
    /// (BENCHMARKS.md). `false` sends every command on its own. A Redis Cluster's commands are
    /// always sent on their own (its client routes each one).
    ///
    /// ```
    /// use strata::RedisStore;
    ///
    /// let builder = RedisStore::<String, String>::builder()
    ///     .url("redis://127.0.0.1:6379/")
    ///     .auto_pipeline(false);
    /// // `builder.build().await?`: every command is its own write.
    /// # let _ = builder;
    /// ```
    pub fn auto_pipeline(mut self, on: bool) -> Self {
        self.auto_pipeline = on;
        self
    }

    /// Whether a plain-TCP server (or Sentinel master) is reached through strata's own RESP2
    /// driver (on, the default: about half the client instructions per command of redis-rs's
    /// connection, BENCHMARKS.md) or through redis-rs's multiplexed connection (`false`: the
    /// escape hatch, and the bench's before/after). With `auto_pipeline(false)`, or a URL the
    /// driver does not carry (TLS, a Unix socket, RESP3), redis-rs's connection is used anyway.
    ///
    /// ```
    /// use strata::RedisStore;
    ///
    /// let builder = RedisStore::<String, String>::builder()
    ///     .url("redis://127.0.0.1:6379/")
    ///     .own_driver(false);
    /// // `builder.build().await?` connects through redis-rs.
    /// # let _ = builder;
    /// ```
    pub fn own_driver(mut self, on: bool) -> Self {
        self.own_driver = on;
        self
    }

    fn validate(self) -> Result<Parts> {
        if self.urls.is_empty() {
            return Err(Error::config("cluster", "give at least one seed node URL"));
        }
        if self.sentinel_master.as_deref() == Some("") {
            return Err(Error::config(
                "sentinel",
                "name the master the sentinels monitor (`sentinel monitor <name> …`)",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config(
                "connect_timeout",
                "must be greater than zero",
            ));
        }
        if self.command_timeout.is_zero() {
            return Err(Error::config(
                "command_timeout",
                "must be greater than zero",
            ));
        }
        if let Some(wait) = &self.wait_for_replicas {
            if self.cluster {
                return Err(Error::config(
                    "wait_for_replicas",
                    "is for one server or Sentinel: on a Redis Cluster a WAIT would not follow \
                     each write to its slot's master",
                ));
            }
            if wait.replicas == 0 || wait.timeout.is_zero() {
                return Err(Error::config(
                    "wait_for_replicas",
                    "ask for at least 1 replica and a timeout greater than zero",
                ));
            }
            if wait.timeout >= self.command_timeout {
                return Err(Error::config(
                    "wait_for_replicas",
                    "the timeout must be shorter than command_timeout (the WAIT runs inside it)",
                ));
            }
        }
        if self.scan_batch == 0 {
            return Err(Error::config("scan_batch", "must be at least 1"));
        }
        Ok(Parts {
            settings: Settings {
                urls: self.urls,
                cluster: self.cluster,
                connect_timeout: self.connect_timeout,
                command_timeout: self.command_timeout,
                tls_root_cert: self.tls_root_cert,
                sentinel_master: self.sentinel_master,
                auto_pipeline: self.auto_pipeline,
                own_driver: self.own_driver,
            },
            namespace: self.namespace?,
            scan_batch: self.scan_batch,
            format: self.format,
            wait: self.wait_for_replicas,
        })
    }

    /// Validates the options and connects. A server that cannot be reached within
    /// `connect_timeout` is [`Error::Timeout`]; a refused connection or a wrong password is
    /// [`Error::Backend`] saying which.
    pub async fn build(self) -> Result<RedisStore<K, V>>
    where
        K: Key,
        V: Serialize + DeserializeOwned + Send + Sync,
    {
        let parts = self.validate()?;
        let conn = connection::connect(&parts.settings).await?;
        Ok(RedisStore::from_parts(parts, conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(builder: RedisStoreBuilder<String, String>) -> &'static str {
        match builder.validate() {
            Err(Error::InvalidConfig(e)) => e.option,
            Err(other) => panic!("expected InvalidConfig, got {other}"),
            Ok(_) => panic!("expected InvalidConfig, got valid options"),
        }
    }

    #[test]
    fn refuses_options_that_cannot_work() {
        let b = RedisStoreBuilder::<String, String>::new;
        assert_eq!(
            invalid(b().connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            invalid(b().command_timeout(Duration::ZERO)),
            "command_timeout"
        );
        assert_eq!(invalid(b().scan_batch(0)), "scan_batch");
        let second = Duration::from_secs(1);
        assert_eq!(
            invalid(b().wait_for_replicas(0, second)),
            "wait_for_replicas"
        );
        assert_eq!(
            invalid(b().wait_for_replicas(1, Duration::ZERO)),
            "wait_for_replicas"
        );
        assert_eq!(
            invalid(b().command_timeout(second).wait_for_replicas(1, second)),
            "wait_for_replicas"
        );
        let cluster = b().cluster(["redis://127.0.0.1:7000"]);
        assert_eq!(
            invalid(cluster.wait_for_replicas(1, Duration::from_millis(100))),
            "wait_for_replicas"
        );
        assert_eq!(invalid(b().cluster(Vec::<String>::new())), "cluster");
        assert_eq!(
            invalid(b().sentinel(["redis://127.0.0.1:26379"], "")),
            "sentinel"
        );
        assert!(matches!(
            b().namespace("a:b").validate(),
            Err(Error::InvalidNamespace { .. })
        ));
        assert!(b().validate().is_ok());
    }
}
