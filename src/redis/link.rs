//! One server's connection as a `Single` (see `connection`) holds it: **strata's own driver**
//! ([`super::driver`]) for a plain-TCP RESP2 server with auto-pipelining on (the driver batches
//! the calls made meanwhile into one write by itself), or **redis-rs's multiplexed connection**
//! under [`Pipelined`] for what the driver does not carry (TLS, a Unix socket, RESP3) and for
//! `auto_pipeline(false)`.
//!
//! The store's commands reach the driver as redis-rs `Cmd`s and `Pipeline`s, written packed
//! into its buffer, and its replies come back as `redis::Value`s: one connection, so a write and
//! the `WAIT` or script after it are on the same server connection, as before. Every
//! [`DriverError`] is an I/O error to the caller, which renews the connection (`connection`'s
//! `judge`). A call dropped before its reply (its deadline, a cancelled request) keeps its place
//! in the driver's queue, so no reply reaches another call.

use std::{borrow::Cow, io, sync::Arc};

use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisResult, Value};
use tokio::time::Instant;

use super::{
    driver::{Call, CallMany, ConnectError, Driver, DriverError, Reply},
    pipeline::{Pipelined, TimedOut},
};

/// A connection to one server: strata's own driver or redis-rs's. Cloning is an `Arc` clone.
#[derive(Clone)]
pub(crate) enum Link {
    Own(Arc<Own>),
    Redis(Arc<Pipelined>),
}

/// A connection on strata's own driver, and the database it selected.
pub(crate) struct Own {
    driver: Driver,
    db: i64,
}

impl Link {
    /// Connects to `client`'s server (no timeout here: the caller bounds it) and checks it
    /// answers a `PING`; on strata's own driver when it carries the connection and both `auto`
    /// (auto-pipelining) and `own` (`own_driver`) are on.
    pub(crate) async fn connect(
        client: &redis::Client,
        config: &AsyncConnectionConfig,
        auto: bool,
        own: bool,
    ) -> RedisResult<Link> {
        let info = client.get_connection_info();
        if auto && own && own_carries(info) {
            let driver = Driver::connect_info(info).await.map_err(connect_error)?;
            let db = info.redis_settings().db();
            return Ok(Link::Own(Arc::new(Own { driver, db })));
        }
        let mut connection = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await?;
        Ok(Link::Redis(Pipelined::new(connection, auto)))
    }

    /// Sends one command and returns its reply (a server error as [`Value::ServerError`]). The
    /// caller bounds the wait.
    pub(crate) async fn send(self, cmd: Cow<'_, Cmd>) -> RedisResult<Value> {
        match self {
            Link::Own(own) => own.send(&cmd).await,
            Link::Redis(pipelined) => pipelined.send(cmd).await,
        }
    }

    /// [`Link::send`] within `deadline`.
    pub(crate) async fn send_by(
        self,
        cmd: Cow<'_, Cmd>,
        deadline: Instant,
    ) -> Result<RedisResult<Value>, TimedOut> {
        match self {
            Link::Own(own) => tokio::time::timeout_at(deadline, own.send(&cmd))
                .await
                .map_err(|_| TimedOut),
            Link::Redis(pipelined) => pipelined.send_by(cmd, deadline).await,
        }
    }

    /// Sends `pipe` and returns the replies of its commands from `offset` on (`count` of them),
    /// as redis-rs's `ConnectionLike::req_packed_commands` does.
    pub(crate) async fn send_pipeline(
        &self,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Link::Own(own) => own.send_pipeline(pipe, offset, count).await,
            Link::Redis(pipelined) => {
                let mut connection = pipelined.connection();
                connection.send_packed_commands(pipe, offset, count).await
            }
        }
    }

    /// The database the connection selected.
    pub(crate) fn db(&self) -> i64 {
        match self {
            Link::Own(own) => own.db,
            Link::Redis(pipelined) => pipelined.db(),
        }
    }
}

impl Own {
    /// Queues the one command `encode` appends to the driver's buffer (with the driver's
    /// encoders: no `Cmd`), now; the store's hot path ([`super::connection::Conn::settle_own`]
    /// awaits it).
    pub(crate) fn call(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Call<'_> {
        self.driver.call_with(encode)
    }

    /// Queues the `n` commands `encode` appends, now, as one call of `n` replies.
    pub(crate) fn call_many(&self, n: usize, encode: impl FnOnce(&mut Vec<u8>)) -> CallMany<'_> {
        self.driver.call_many(n, encode)
    }

    async fn send(&self, cmd: &Cmd) -> RedisResult<Value> {
        let call = self.driver.call_with(|out| cmd.write_packed_command(out));
        value(call.await.map_err(broken)?)
    }

    /// A transaction's replies before `offset` are `MULTI`'s and the `QUEUED`s: an error among
    /// them (a command Redis refused to queue) fails the transaction, as redis-rs's does.
    async fn send_pipeline(
        &self,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let n = offset + count;
        let packed = pipe.get_packed_pipeline();
        let call = self
            .driver
            .call_many(n, |out| out.extend_from_slice(&packed));
        let mut replies = call.await.map_err(broken)?;
        let skipped: Vec<Reply> = replies.drain(..offset.min(replies.len())).collect();
        if pipe.is_transaction() {
            let refused = skipped.into_iter().find_map(|r| match r {
                Reply::Error(e) => Some(e),
                _ => None,
            });
            if let Some(e) = refused {
                return Err(refusal(&e));
            }
        }
        replies.into_iter().map(value).collect()
    }
}

/// True if strata's own driver carries a connection to `info`: plain TCP, RESP2.
fn own_carries(info: &redis::ConnectionInfo) -> bool {
    matches!(info.addr(), redis::ConnectionAddr::Tcp(..))
        && info.redis_settings().protocol() == redis::ProtocolVersion::RESP2
}

/// A reply as redis-rs's value.
fn value(reply: Reply) -> RedisResult<Value> {
    Ok(match reply {
        Reply::Ok => Value::Okay,
        Reply::Status(status) => Value::SimpleString(status),
        Reply::Error(e) => return server_error(&e),
        Reply::Int(n) => Value::Int(n),
        Reply::Bulk(bytes) => Value::BulkString(bytes),
        Reply::Nil => Value::Nil,
        Reply::Array(items) => {
            Value::Array(items.into_iter().map(value).collect::<RedisResult<_>>()?)
        }
    })
}

/// A server error line as redis-rs's [`Value::ServerError`] (which only its parser builds).
fn server_error(line: &str) -> RedisResult<Value> {
    let mut wire = Vec::with_capacity(line.len() + 3);
    wire.push(b'-');
    wire.extend_from_slice(line.as_bytes());
    wire.extend_from_slice(b"\r\n");
    redis::parse_redis_value(&wire)
}

/// A server error line as redis-rs's error.
pub(crate) fn refusal(line: &str) -> RedisError {
    match server_error(line).map(Value::extract_error) {
        Ok(Err(e)) | Err(e) => e,
        Ok(Ok(_)) => RedisError::from(io::Error::other(format!("Redis refused: {line}"))),
    }
}

/// The connection broke: an I/O error, which renews it.
pub(crate) fn broken(e: DriverError) -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::ConnectionReset,
        e.to_string(),
    ))
}

/// A failed connect as redis-rs's error: a refused connection stays one (Sentinel's failover
/// check reads it), and the server's refusal keeps its text (`WRONGPASS`, never the password).
fn connect_error(e: ConnectError) -> RedisError {
    let kind = match &e {
        ConnectError::Io { source, .. } => source.kind(),
        _ => io::ErrorKind::Other,
    };
    RedisError::from(io::Error::new(kind, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_redis_values() {
        let reply = Reply::Array(vec![
            Reply::Ok,
            Reply::Status("QUEUED".into()),
            Reply::Int(-3),
            Reply::Bulk(b"v".to_vec()),
            Reply::Nil,
        ]);
        assert_eq!(
            value(reply).unwrap(),
            Value::Array(vec![
                Value::Okay,
                Value::SimpleString("QUEUED".into()),
                Value::Int(-3),
                Value::BulkString(b"v".to_vec()),
                Value::Nil,
            ])
        );
        let error = value(Reply::Error("WRONGTYPE Operation against a key".into())).unwrap();
        let Value::ServerError(e) = error else {
            panic!("not a server error: {error:?}");
        };
        assert_eq!(e.code(), "WRONGTYPE");
    }
}
