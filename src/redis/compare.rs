//! `compare_and_set` as one Lua script: the `GET`, the comparison and the `SET` run as one
//! step inside Redis, so no other client's write can come between them (a GCRA rate limit
//! shared by many processes relies on it). The script compares encoded bytes and returns 0 or
//! 1; no value passes through a Lua number.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use super::{
    connection::Conn,
    store::{millis, Shared},
};
use crate::error::Result;

/// Writes `ARGV[2]` under `KEYS[1]` if the key holds exactly `ARGV[3]` (or, when `ARGV[1]` is
/// `"new"`, if the key is absent); `ARGV[4]`, when given, is the TTL in ms. Returns 1 if
/// written. An expired key is absent in Redis, so it compares as "no entry".
static COMPARE_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'new' then
  if current then return 0 end
elseif current ~= ARGV[3] then
  return 0
end
if ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
",
    )
});

/// Runs the script for `key` (already namespaced); `expected` and `new` are encoded values.
pub(super) async fn compare_and_set(
    shared: &Shared,
    key: &[u8],
    expected: Option<&[u8]>,
    new: &[u8],
    ttl: Option<Duration>,
) -> Result<bool> {
    let call = |conn| invoke(conn, key, expected, new, ttl);
    let context = || format!("compare-and-set {}", String::from_utf8_lossy(key));
    Ok(shared.call(call, context).await? == 1)
}

/// `EVALSHA` (loading the script on a `NOSCRIPT` reply, as redis-rs' `Script` does).
async fn invoke(
    mut conn: Conn,
    key: &[u8],
    expected: Option<&[u8]>,
    new: &[u8],
    ttl: Option<Duration>,
) -> redis::RedisResult<i64> {
    let mut invocation = COMPARE_AND_SET.key(key);
    match expected {
        Some(bytes) => invocation.arg("old").arg(new).arg(bytes),
        None => invocation.arg("new").arg(new).arg(""),
    };
    if let Some(ttl) = ttl {
        invocation.arg(millis(ttl));
    }
    invocation.invoke_async(&mut conn).await
}
