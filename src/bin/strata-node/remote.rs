//! The remote store of a node: the truth and the TTLs in Redis.
//!
//! A stand-in with the few commands the node needs (raw string values) until `RedisStore`
//! lands; every error is `Error::Backend`.

use std::{future::Future, time::Duration};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    AsyncCommands,
};
use strata::{Error, Expiry, Namespace, Result, Store};

/// String keys and values under `namespace:` in one Redis.
#[derive(Clone)]
pub struct Remote {
    conn: ConnectionManager,
    namespace: Namespace,
}

fn backend(context: &str) -> impl FnOnce(redis::RedisError) -> Error + '_ {
    move |e| Error::backend(context, e)
}

fn expiry(pttl: i64) -> Option<Expiry> {
    match pttl {
        -2 => None,
        -1 => Some(Expiry::Never),
        ms => Some(Expiry::In(Duration::from_millis(ms.max(1) as u64))),
    }
}

impl Remote {
    /// Connects to `url`, keys under `namespace:`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let namespace = Namespace::new(namespace)?;
        let client = redis::Client::open(url).map_err(|e| Error::config("redis", e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(backend("connecting to Redis"))?;
        Ok(Remote { conn, namespace })
    }

    fn full(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }
}

impl Store<String, String> for Remote {
    fn put(
        &self,
        key: String,
        value: String,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        let (mut conn, full) = (self.conn.clone(), self.full(&key));
        async move {
            strata::check_ttl(ttl)?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(&full).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
            }
            cmd.query_async::<()>(&mut conn)
                .await
                .map_err(backend("SET"))
        }
    }

    fn get(&self, key: &String) -> impl Future<Output = Result<Option<String>>> + Send {
        let (mut conn, full) = (self.conn.clone(), self.full(key));
        async move { conn.get(full).await.map_err(backend("GET")) }
    }

    fn delete(&self, key: &String) -> impl Future<Output = Result<bool>> + Send {
        let (mut conn, full) = (self.conn.clone(), self.full(key));
        async move {
            conn.del::<_, i64>(full)
                .await
                .map(|n| n > 0)
                .map_err(backend("DEL"))
        }
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<String>>> + Send {
        let mut conn = self.conn.clone();
        let prefix = format!("{}:", self.namespace);
        async move {
            let pattern = format!("{prefix}*");
            let mut out = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .query_async(&mut conn)
                    .await
                    .map_err(backend("SCAN"))?;
                out.extend(
                    batch
                        .into_iter()
                        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)),
                );
                if next == 0 {
                    return Ok(out);
                }
                cursor = next;
            }
        }
    }

    fn ttl(&self, key: &String) -> impl Future<Output = Result<Option<Expiry>>> + Send {
        let (mut conn, full) = (self.conn.clone(), self.full(key));
        async move {
            conn.pttl::<_, i64>(full)
                .await
                .map(expiry)
                .map_err(backend("PTTL"))
        }
    }

    fn get_with_ttl(
        &self,
        key: &String,
    ) -> impl Future<Output = Result<Option<(String, Expiry)>>> + Send {
        let (mut conn, full) = (self.conn.clone(), self.full(key));
        async move {
            let (value, pttl): (Option<String>, i64) = redis::pipe()
                .get(&full)
                .pttl(&full)
                .query_async(&mut conn)
                .await
                .map_err(backend("GET+PTTL"))?;
            Ok(value.zip(expiry(pttl)))
        }
    }

    fn expire(
        &self,
        key: &String,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        let (mut conn, full) = (self.conn.clone(), self.full(key));
        async move {
            strata::check_ttl(ttl)?;
            let done: bool = match ttl {
                Some(ttl) => conn.pexpire(&full, ttl.as_millis().max(1) as i64).await,
                None => {
                    let exists: bool = conn.exists(&full).await.map_err(backend("EXISTS"))?;
                    let _: bool = conn.persist(&full).await.map_err(backend("PERSIST"))?;
                    Ok(exists)
                }
            }
            .map_err(backend("PEXPIRE"))?;
            Ok(done)
        }
    }

    fn namespace(&self) -> Namespace {
        self.namespace.clone()
    }
}
