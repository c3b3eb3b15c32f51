//! Raw entries of a Redis server (one node): `SCAN` over `namespace:*` (or every string key),
//! `GET` and `PTTL` pipelined per page, and `SET .. PX` to write. Values are the bytes RedisStore
//! wrote (codec header, or a raw decimal integer for counters).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use strata::{Expiry, RawRecord};

use crate::fail::Failure;

/// Keys asked for per `SCAN` call.
const SCAN_COUNT: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one Redis server.
pub struct RedisSource {
    url: String,
    conn: MultiplexedConnection,
}

impl RedisSource {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`).
    pub async fn connect(url: &str) -> Result<Self, Failure> {
        let shown = strata::redact_url(url);
        let client = redis::Client::open(url)
            .map_err(|e| Failure::unusable(format!("{shown} is not a usable Redis URL: {e}")))?;
        Self::connect_client(client, shown).await
    }

    /// Connects to the master that the sentinels of `list` (URLs, comma-separated) name
    /// `master`, with the user, password and database of the first sentinel URL.
    pub async fn through_sentinels(list: &str, master: &str) -> Result<Self, Failure> {
        let urls: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let redacted: Vec<String> = urls.iter().map(|u| strata::redact_url(u)).collect();
        let shown = format!("master {master:?} via sentinels {}", redacted.join(","));
        let mut infos = Vec::with_capacity(urls.len());
        for (url, redacted) in urls.iter().zip(&redacted) {
            let info = redis::IntoConnectionInfo::into_connection_info(*url).map_err(|e| {
                Failure::unusable(format!("{redacted} is not a usable sentinel URL: {e}"))
            })?;
            infos.push(info);
        }
        let client = tokio::time::timeout(CONNECT_TIMEOUT, master_client(infos, master))
            .await
            .map_err(|_| {
                Failure::unusable(format!(
                    "no answer from the sentinels within {CONNECT_TIMEOUT:?}: {shown}"
                ))
            })?
            .map_err(|e| unusable(&shown, &e))?;
        Self::connect_client(client, shown).await
    }

    async fn connect_client(client: redis::Client, shown: String) -> Result<Self, Failure> {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| {
                Failure::unusable(format!(
                    "no answer from {shown} within {CONNECT_TIMEOUT:?}; is Redis running?"
                ))
            })?
            .map_err(|e| unusable(&shown, &e))?;
        let source = RedisSource { url: shown, conn };
        source.ping().await?;
        Ok(source)
    }

    /// Checks that the server speaks Redis: a TCP connection alone is accepted by any port (a
    /// web server, a database), and its first reply would otherwise surface as a parse error.
    async fn ping(&self) -> Result<(), Failure> {
        let reply = tokio::time::timeout(
            CONNECT_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut self.conn.clone()),
        )
        .await;
        match reply {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unusable(&self.url, &e)),
            Err(_) => Err(Failure::unusable(format!(
                "{} accepted the connection but did not answer PING within {CONNECT_TIMEOUT:?}; is it a Redis port?",
                self.url
            ))),
        }
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `DBSIZE`: every key of the database, strata's or not (a progress bar's length).
    pub async fn size(&self) -> Option<u64> {
        redis::cmd("DBSIZE")
            .query_async(&mut self.conn.clone())
            .await
            .ok()
    }

    fn failed(&self, what: &str, e: redis::RedisError) -> Failure {
        Failure::other(format!("{what} on {} failed: {e}", self.url))
    }

    /// Visits every live string key that has a `namespace:` prefix (of `namespace` only, if given).
    pub async fn scan(
        &self,
        namespace: Option<&str>,
        visit: &mut (dyn FnMut(RawRecord) + Send),
    ) -> Result<(), Failure> {
        let pattern = namespace.map_or_else(|| "*".to_owned(), |ns| format!("{ns}:*"));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .arg("TYPE")
                .arg("string")
                .query_async(&mut self.conn.clone())
                .await
                .map_err(|e| self.failed("SCAN", e))?;
            for raw in self.read(&keys).await? {
                visit(raw);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// The live records under `keys` (full Redis keys), skipping keys gone or not strata's.
    async fn read(&self, keys: &[Vec<u8>]) -> Result<Vec<RawRecord>, Failure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
        }
        let replies: Vec<(Option<Vec<u8>>, i64)> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("GET/PTTL", e))?;
        let now = strata::Clock::system().now_ms();
        let records = keys
            .iter()
            .zip(replies)
            .filter_map(|(key, (value, pttl))| record(key, value?, pttl, now))
            .collect();
        Ok(records)
    }

    /// The live record under `namespace:key`, if any.
    pub async fn get(&self, namespace: &str, key: &[u8]) -> Result<Option<RawRecord>, Failure> {
        let mut full = format!("{namespace}:").into_bytes();
        full.extend_from_slice(key);
        Ok(self.read(&[full]).await?.pop())
    }

    /// Writes `records` with their remaining TTLs; already expired ones are skipped.
    pub async fn put(&self, records: Vec<RawRecord>) -> Result<(), Failure> {
        let now = strata::Clock::system().now_ms();
        let mut pipe = redis::pipe();
        for raw in records {
            // The same check as a data directory's: a namespace with `:` or a glob character
            // would write keys another namespace's SCAN reads.
            let mut key = strata::Namespace::new(&raw.namespace)?.prefix();
            key.extend_from_slice(&raw.key);
            match raw.deadline.map(|d| d.saturating_sub(now)) {
                None => pipe.cmd("SET").arg(key).arg(raw.value).ignore(),
                Some(0) => continue,
                Some(ms) => pipe
                    .cmd("SET")
                    .arg(key)
                    .arg(raw.value)
                    .arg("PX")
                    .arg(ms)
                    .ignore(),
            };
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("SET", e))
    }
}

/// A client for the master the sentinels of `infos` name `master` (asked at once).
// `SentinelClient::build` takes a `String` without redis' rustls feature and `impl AsRef<str>`
// with it: the owned name compiles either way.
#[allow(clippy::unnecessary_to_owned)]
async fn master_client(
    infos: Vec<redis::ConnectionInfo>,
    master: &str,
) -> redis::RedisResult<redis::Client> {
    use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
    let node = infos.first().map(|info| {
        SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(info.redis_settings().clone())
    });
    let mut sentinels =
        SentinelClient::build(infos, master.to_owned(), node, SentinelServerType::Master)?;
    sentinels.async_get_client().await
}

/// Why `url` (shown redacted) cannot be used, with what to check: an I/O error means nothing
/// usable listens there, a refused login the credentials, anything else (an answer that does
/// not parse as RESP, an unexpected reply) that the port is not a Redis server's.
fn unusable(url: &str, e: &redis::RedisError) -> Failure {
    Failure::unusable(if e.is_io_error() {
        format!("cannot connect to {url}: {e}; is Redis running there?")
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed || e.code() == Some("NOAUTH") {
        format!("{url} refused the credentials: {e}; check the user and password in the URL")
    } else {
        format!(
            "{url} is not a Redis server (its answer was not Redis': {e}); check the host and port"
        )
    })
}

/// A Redis key and its value and PTTL as a record; `None` for a key without `namespace:`.
fn record(key: &[u8], value: Vec<u8>, pttl: i64, now: u64) -> Option<RawRecord> {
    let (namespace, key) = strata::split_stored_key(key)?;
    // None: gone between SCAN and GET (or expiring within the millisecond).
    let deadline = match Expiry::from_pttl(pttl)? {
        Expiry::Never => None,
        Expiry::In(left) => {
            Some(now.saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)))
        }
    };
    Some(RawRecord {
        namespace: namespace.as_str().to_owned(),
        key: key.to_vec(),
        value,
        deadline,
    })
}
