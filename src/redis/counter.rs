//! `incr`/`decr`/`incr_with_ttl` as Redis counters. Integers are stored as raw decimal (see
//! [`crate::codec`]), so `INCRBY` adds to them atomically and keeps the TTL.
//!
//! **Exactness.** Every total reaches strata as Redis' own decimal text or `INCRBY` integer
//! reply, never as a Lua number: Lua numbers are doubles, which round totals above 2^53. So an
//! `i64` counter is a plain `INCRBY` (with `SET NX PX` before it in one `MULTI` when a new
//! counter gets a TTL), and a narrower type (`u8`, `u32`, `u64`, ...) runs a small script that
//! adds, checks the type's range and undoes the addition when the total would not fit, then
//! returns the counter's exact text with `GET`. The range checks inside the script compare
//! doubles, which is exact here: the bounds of types narrower than `i64` are exact doubles
//! and so is every double near them, and rounding preserves order against them.
//!
//! **Range.** Redis counters are signed 64-bit, so a `u64` counter holds `0..=i64::MAX`: a
//! total above `i64::MAX`, or an increment of a stored value above it (a `u64::MAX` written
//! with `put`), is [`Error::Overflow`], never a wrapped or rounded number.

use std::{sync::LazyLock, time::Duration};

use redis::{RedisError, Script};

use super::{
    connection::{command_error, Conn},
    store::Shared,
};
use crate::{
    error::{Error, Result},
    store::Counter,
};

/// `INCRBY KEYS[1] ARGV[1]`, refused (and undone) if the total leaves `[ARGV[2], ARGV[3]]`;
/// a counter this call creates gets the TTL `ARGV[4]` (ms) if given. Returns the counter's
/// text (exact), never a Lua number (a double).
static CHECKED_INCRBY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('EXISTS', KEYS[1])
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total < tonumber(ARGV[2]) or total > tonumber(ARGV[3]) then
  if existed == 0 then redis.call('DEL', KEYS[1]) else redis.call('DECRBY', KEYS[1], ARGV[1]) end
  return redis.error_reply('STRATA_OVERFLOW the total does not fit the value type')
end
if existed == 0 and ARGV[4] then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return redis.call('GET', KEYS[1])
",
    )
});

/// Adds `delta` to the counter at `key` and returns the new total; a counter this call
/// creates gets `ttl_if_new`, an existing one keeps its TTL.
pub(super) async fn incr<V: Counter>(
    shared: &Shared,
    key: &[u8],
    delta: i64,
    ttl_if_new: Option<Duration>,
) -> Result<i64> {
    let (min, max) = range::<V>();
    let timeout = shared.command_timeout;
    let reply = if (min, max) == (i64::MIN, i64::MAX) {
        let call = |conn| full_range(conn, key, delta, ttl_if_new);
        shared.conn.timed(timeout, call).await
    } else {
        let call = |conn| checked(conn, key, delta, (min, max), ttl_if_new);
        shared.conn.timed(timeout, call).await
    };
    let context = || format!("INCRBY {}", String::from_utf8_lossy(key));
    match reply {
        Ok(Ok(total)) => Ok(total),
        Ok(Err(e)) => Err(counter_error(shared, e, key, context()).await),
        Err(_) => Err(Error::from(crate::TimeoutError {
            context: context(),
            after: timeout,
        })),
    }
}

/// `INCRBY`, or `MULTI; SET key 0 NX PX ttl; INCRBY; EXEC` when a new counter gets a TTL.
async fn full_range(
    mut conn: Conn,
    key: &[u8],
    delta: i64,
    ttl_if_new: Option<Duration>,
) -> redis::RedisResult<i64> {
    let Some(ttl) = ttl_if_new else {
        let mut cmd = redis::cmd("INCRBY");
        cmd.arg(key).arg(delta);
        return cmd.query_async(&mut conn).await;
    };
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("SET")
        .arg(key)
        .arg(0)
        .arg("NX")
        .arg("PX")
        .arg(super::store::millis(ttl))
        .ignore()
        .cmd("INCRBY")
        .arg(key)
        .arg(delta);
    let (total,): (i64,) = pipe.query_async(&mut conn).await?;
    Ok(total)
}

/// The range-checking script; its reply is the counter's decimal text.
async fn checked(
    mut conn: Conn,
    key: &[u8],
    delta: i64,
    (min, max): (i64, i64),
    ttl_if_new: Option<Duration>,
) -> redis::RedisResult<i64> {
    let mut invocation = CHECKED_INCRBY.key(key);
    invocation.arg(delta).arg(min).arg(max);
    if let Some(ttl) = ttl_if_new {
        invocation.arg(super::store::millis(ttl));
    }
    let text: String = invocation.invoke_async(&mut conn).await?;
    text.parse().map_err(|_| {
        RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the counter's text is not an integer",
        ))
    })
}

/// Overflow and "not an integer" get their own variants; the rest is a backend error. Redis
/// calls an integer beyond `i64` "not an integer or out of range": a stored value that is a
/// decimal integer (a `u64` above `i64::MAX`) is an overflow, anything else a decode error.
async fn counter_error(shared: &Shared, e: RedisError, key: &[u8], context: String) -> Error {
    let text = e.to_string();
    let shown = String::from_utf8_lossy(key).into_owned();
    if text.contains("would overflow") || text.contains("STRATA_OVERFLOW") {
        return Error::Overflow { key: shown.into() };
    }
    if text.contains("not an integer") {
        if stored_is_integer(shared, key).await {
            return Error::Overflow { key: shown.into() };
        }
        return Error::from(crate::DecodeError {
            key: shown,
            reason: "the value is not an integer counter, so it cannot be incremented".into(),
        });
    }
    command_error(e, shared.command_timeout, context)
}

/// True if `key` holds a decimal integer (of any size), e.g. a `u64` above `i64::MAX`.
async fn stored_is_integer(shared: &Shared, key: &[u8]) -> bool {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    let stored: Result<Option<Vec<u8>>> = shared
        .conn
        .run(&cmd, shared.command_timeout, String::new)
        .await;
    let Ok(Some(bytes)) = stored else {
        return false;
    };
    std::str::from_utf8(&bytes).is_ok_and(|s| s.parse::<i128>().is_ok())
}

/// The smallest and largest `i64` that `V` can hold.
fn range<V: Counter>() -> (i64, i64) {
    let fits = |n: i64| V::from_i64(n).is_some();
    let max = if fits(i64::MAX) {
        i64::MAX
    } else {
        boundary(0, i64::MAX, fits)
    };
    let min = if fits(i64::MIN) {
        i64::MIN
    } else if !fits(-1) {
        0
    } else {
        -boundary(1, i64::MAX, |n| fits(-n))
    };
    (min, max)
}

/// The largest `n` in `[lo, hi]` with `fits(n)`, given `fits(lo)` and that fitting values form
/// a prefix of the range.
fn boundary(mut lo: i64, mut hi: i64, fits: impl Fn(i64) -> bool) -> i64 {
    while lo < hi {
        let mid = lo + (hi - lo) / 2 + 1;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_of_counter_types() {
        assert_eq!(range::<i64>(), (i64::MIN, i64::MAX));
        assert_eq!(range::<u64>(), (0, i64::MAX));
        assert_eq!(range::<u8>(), (0, 255));
        assert_eq!(range::<i8>(), (-128, 127));
        assert_eq!(range::<i32>(), (i32::MIN.into(), i32::MAX.into()));
        assert_eq!(range::<u32>(), (0, u32::MAX.into()));
    }
}
