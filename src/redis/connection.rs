//! The one connection a `RedisStore` and all its clones share: a multiplexed, auto-pipelined
//! connection to one server ([`ConnectionManager`], which reconnects by itself) or to a Redis
//! Cluster ([`ClusterConnection`], which follows the slot map). Every command runs under the
//! per-command timeout and its errors become [`Error::Backend`] or [`Error::Timeout`] with the
//! command and key in the message.

use std::time::Duration;

use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture,
    Value,
};

use crate::{
    error::{Error, Result},
    redact::redact_url,
};

/// Delay before the first reconnection attempt; later attempts back off exponentially.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between reconnection attempts, so a restarted server is found quickly.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// Where and how to connect.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// One URL for a single server; the seed nodes for a cluster.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// PEM root certificate(s) to trust for `rediss://` instead of the system's.
    pub tls_root_cert: Option<Vec<u8>>,
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
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Runs `cmd` under `timeout`; `context` names it in errors (`"GET sessions:abc"`).
    pub async fn run<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        let mut conn = self.clone();
        let reply = tokio::time::timeout(timeout, cmd.query_async::<T>(&mut conn)).await;
        settle(reply, timeout, context)
    }

    /// Runs a pipeline under `timeout` (all its commands must hash to one slot on a cluster).
    pub async fn run_pipeline<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        timeout: Duration,
        context: impl FnOnce() -> String,
    ) -> Result<T> {
        let mut conn = self.clone();
        let reply = tokio::time::timeout(timeout, pipe.query_async::<T>(&mut conn)).await;
        settle(reply, timeout, context)
    }
}

/// Turns a timed reply into strata's result.
fn settle<T>(
    reply: std::result::Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    after: Duration,
    context: impl FnOnce() -> String,
) -> Result<T> {
    match reply {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(command_error(e, after, context())),
        Err(_) => Err(Error::Timeout {
            context: context(),
            after,
        }),
    }
}

/// A driver error as strata's error: timeouts stay timeouts, the rest is a backend error.
pub(crate) fn command_error(e: RedisError, after: Duration, context: String) -> Error {
    if e.is_timeout() {
        return Error::Timeout { context, after };
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
        Err(_) => Err(Error::Timeout {
            context: format!(
                "connecting to {} (is the server running and reachable?)",
                settings.describe()
            ),
            after: settings.connect_timeout,
        }),
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

async fn connect_single(settings: &Settings) -> Result<Conn> {
    let url = settings.urls.first().map(String::as_str).unwrap_or("");
    let client = client(settings, url)?;
    // One direct attempt first: the manager retries with back-off, which would turn a wrong
    // password into a timeout instead of saying what is wrong.
    let probe = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.command_timeout));
    let mut probe = client
        .get_multiplexed_async_connection_with_config(&probe)
        .await
        .map_err(|e| connect_error(settings, e))?;
    redis::cmd("PING")
        .query_async::<()>(&mut probe)
        .await
        .map_err(|e| connect_error(settings, e))?;
    // No response timeout inside the manager: `Conn::run` bounds every command (and any wait
    // for a reconnection) with one timer instead of two.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(None)
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY);
    let manager = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| connect_error(settings, e))?;
    Ok(Conn::Single(manager))
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
    Ok(Conn::Cluster(conn))
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
