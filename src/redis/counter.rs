//! `incr`/`decr` as Redis counters. Integers are stored as raw decimal (see [`crate::codec`]),
//! so `INCRBY` adds to them atomically and keeps the TTL. For value types narrower than `i64`
//! (`u8`, `u32`, `u64`, ...) a small Lua script adds and checks the type's range in one atomic
//! step, undoing the addition when the result would not fit.

use std::sync::LazyLock;

use redis::{RedisError, Script};

use super::{connection::command_error, store::Shared};
use crate::{
    error::{Error, Result},
    store::Counter,
};

/// `INCRBY KEYS[1] ARGV[1]`, refused (and undone) if the total leaves `[ARGV[2], ARGV[3]]`.
/// Bounds of types narrower than `i64` are exact in Lua's doubles.
static CHECKED_INCRBY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('EXISTS', KEYS[1])
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total < tonumber(ARGV[2]) or total > tonumber(ARGV[3]) then
  if existed == 0 then redis.call('DEL', KEYS[1]) else redis.call('DECRBY', KEYS[1], ARGV[1]) end
  return redis.error_reply('STRATA_OVERFLOW the total does not fit the value type')
end
return total
",
    )
});

/// Adds `delta` to the counter at `key` and returns the new total.
pub(super) async fn incr<V: Counter>(shared: &Shared, key: &[u8], delta: i64) -> Result<i64> {
    let (min, max) = range::<V>();
    let context = || format!("INCRBY {}", String::from_utf8_lossy(key));
    let timeout = shared.command_timeout;
    let mut conn = shared.conn.clone();
    let reply = if (min, max) == (i64::MIN, i64::MAX) {
        let mut cmd = redis::cmd("INCRBY");
        cmd.arg(key).arg(delta);
        tokio::time::timeout(timeout, cmd.query_async::<i64>(&mut conn)).await
    } else {
        let mut invocation = CHECKED_INCRBY.key(key);
        invocation.arg(delta).arg(min).arg(max);
        tokio::time::timeout(timeout, invocation.invoke_async::<i64>(&mut conn)).await
    };
    match reply {
        Ok(Ok(total)) => Ok(total),
        Ok(Err(e)) => Err(counter_error(e, key, timeout, context())),
        Err(_) => Err(Error::Timeout {
            context: context(),
            after: timeout,
        }),
    }
}

/// Overflow and "not an integer" get their own variants; the rest is a backend error.
fn counter_error(
    e: RedisError,
    key: &[u8],
    timeout: std::time::Duration,
    context: String,
) -> Error {
    let text = e.to_string();
    let key = String::from_utf8_lossy(key).into_owned();
    if text.contains("would overflow") || text.contains("STRATA_OVERFLOW") {
        return Error::Overflow { key };
    }
    if text.contains("not an integer") {
        return Error::Decode {
            key,
            reason: "the value is not an integer counter, so it cannot be incremented".into(),
        };
    }
    command_error(e, timeout, context)
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
