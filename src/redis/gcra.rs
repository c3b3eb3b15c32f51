//! [`Store::gcra`](crate::Store::gcra) as one Lua script (redis-cell's approach): the read of the
//! stored theoretical arrival time, the decision and the write run as one step inside Redis, so
//! processes sharing a limit never overwrite each other and an admitted request costs one round
//! trip. Times are integers below 2^53 (the caller checks), so Lua's doubles hold them exactly;
//! the value is written as decimal text, as every strata counter is.

use std::sync::LazyLock;

use redis::Script;

use super::connection::Conn;
use super::store::Shared;
use crate::{error::Result, store::GcraStep};

/// The largest time the script takes: every integer up to it is an exact double.
pub(super) const EXACT: u64 = 1 << 53;

/// `ARGV`: now, interval, tolerance (ms). Returns `{allowed (0/1), tat}`; writes `tat +
/// interval` with `PX` up to that time when allowed. A stored value that is not a decimal
/// number is an error reply, never overwritten.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  local t = tonumber(stored)
  if not t then
    return redis.error_reply('STRATA_NOT_A_COUNTER the stored value is not a decimal integer')
  end
  if t > tat then tat = t end
end
if tat - now > tolerance then return {0, tat} end
local nxt = tat + interval
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', string.format('%d', math.max(nxt - now, 1)))
return {1, tat}
",
    )
});

/// Runs the script for `key` (already namespaced).
pub(super) async fn gcra(
    shared: &Shared,
    key: &[u8],
    now_ms: u64,
    interval_ms: u64,
    tolerance_ms: u64,
) -> Result<GcraStep> {
    let call = |conn| invoke(conn, key, now_ms, interval_ms, tolerance_ms);
    let context = || format!("a GCRA step on {}", String::from_utf8_lossy(key));
    let (allowed, tat): (i64, i64) = shared.call(call, context).await?;
    Ok(GcraStep {
        tat_ms: u64::try_from(tat).unwrap_or(0).max(now_ms),
        allowed: allowed == 1,
    })
}

/// `EVALSHA` (loading the script on a `NOSCRIPT` reply, as redis-rs' `Script` does).
async fn invoke(
    mut conn: Conn,
    key: &[u8],
    now_ms: u64,
    interval_ms: u64,
    tolerance_ms: u64,
) -> redis::RedisResult<(i64, i64)> {
    GCRA.key(key)
        .arg(now_ms)
        .arg(interval_ms)
        .arg(tolerance_ms)
        .invoke_async(&mut conn)
        .await
}
