//! `RateLimiter`: request limits kept in any store, so limits in Redis are shared by every node
//! (seed 003: throttle token enumeration instead of making the cache clever).
//!
//! Two algorithms:
//! - **Fixed window** ([`RateLimiter::check`]): one counter per key and window, counted with
//!   `incr_with_ttl` (the window's TTL on the counter it creates), atomic in every strata
//!   store, so the limit is exact across nodes. A burst of up to twice the
//!   limit can straddle a window boundary.
//! - **GCRA** ([`RateLimiter::check_gcra`]): one "theoretical arrival time" per key, smooth
//!   (no boundary bursts). It is a read then a write: serialized per key inside this limiter
//!   (exact within a process), but two nodes checking the same key at the same instant over Redis
//!   may both pass; use the fixed window where the limit must be exact across nodes.

use std::{sync::Arc, time::Duration};

use super::keylock::KeyLocks;
use crate::{
    error::{Error, Result},
    store::Store,
    time::{ttl_ms, Clock},
};

/// The answer to a rate-limit check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateDecision {
    /// True if the request may proceed.
    pub allowed: bool,
    /// Requests still allowed now (0 when denied).
    pub remaining: u64,
    /// When denied, how long until a request would be allowed.
    pub retry_after: Option<Duration>,
}

/// Rate limits over a `Store<String, i64>`. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// use std::time::Duration;
/// use strata::{ManualClock, MemoryStore, RateLimiter};
///
/// let time = ManualClock::new();
/// let store = MemoryStore::builder().clock(time.clock()).build()?;
/// let limiter = RateLimiter::with_clock(store, time.clock());
/// let minute = Duration::from_secs(60);
/// for _ in 0..3 {
///     assert!(limiter.check("login:10.0.0.1", 3, minute).await?.allowed);
/// }
/// let denied = limiter.check("login:10.0.0.1", 3, minute).await?;
/// assert!(!denied.allowed && denied.retry_after.is_some());
/// time.advance(minute);
/// assert!(limiter.check("login:10.0.0.1", 3, minute).await?.allowed);
/// # Ok(()) }
/// ```
pub struct RateLimiter<S> {
    inner: Arc<LimiterInner<S>>,
}

struct LimiterInner<S> {
    store: S,
    clock: Clock,
    locks: KeyLocks,
}

impl<S> Clone for RateLimiter<S> {
    fn clone(&self) -> Self {
        RateLimiter {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for RateLimiter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

fn validate(limit: u64, window: Duration) -> Result<u64> {
    if limit == 0 {
        return Err(Error::config("limit", "must be at least 1"));
    }
    if window.is_zero() {
        return Err(Error::InvalidTtl { ttl: window });
    }
    Ok(ttl_ms(window))
}

impl<S: Store<String, i64>> RateLimiter<S> {
    /// A limiter on the system clock.
    pub fn new(store: S) -> Self {
        Self::with_clock(store, Clock::system())
    }

    /// A limiter on `clock` (give it the store's clock; a manual one in tests).
    pub fn with_clock(store: S, clock: Clock) -> Self {
        RateLimiter {
            inner: Arc::new(LimiterInner {
                store,
                clock,
                locks: KeyLocks::new(),
            }),
        }
    }

    /// Counts one request for `key` against `limit` per fixed `window`.
    pub async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateDecision> {
        let window_ms = validate(limit, window)?;
        let now = self.inner.clock.now_ms();
        let start = now - now % window_ms;
        let left = Duration::from_millis(start + window_ms - now);
        let counter = format!("fw:{key}:{start}");
        let store = &self.inner.store;
        // One atomic step: a counter this call creates expires with its window.
        let count = store.incr_with_ttl(&counter, 1, Some(left)).await?;
        let count = u64::try_from(count).unwrap_or(0);
        Ok(RateDecision {
            allowed: count <= limit,
            remaining: limit.saturating_sub(count),
            retry_after: (count > limit).then_some(left),
        })
    }

    /// Checks one request for `key` with GCRA: `limit` requests per `window`, as a burst of at
    /// most `limit` that refills smoothly.
    pub async fn check_gcra(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateDecision> {
        let window_ms = validate(limit, window)?;
        let interval = (window_ms / limit).max(1);
        let tolerance = window_ms.saturating_sub(interval);
        let state = format!("gcra:{key}");
        let _guard = self.inner.locks.lock(&state).await;
        let now = self.inner.clock.now_ms();
        let stored = self.inner.store.get(&state).await?;
        let tat = stored
            .map_or(now, |t| u64::try_from(t).unwrap_or(0))
            .max(now);
        if tat - now > tolerance {
            return Ok(RateDecision {
                allowed: false,
                remaining: 0,
                retry_after: Some(Duration::from_millis(tat - now - tolerance)),
            });
        }
        let next = tat + interval;
        let value = i64::try_from(next).map_err(|_| Error::Overflow { key: state.clone() })?;
        let ttl = Duration::from_millis(next - now);
        self.inner.store.put(state, value, Some(ttl)).await?;
        Ok(RateDecision {
            allowed: true,
            remaining: window_ms.saturating_sub(next - now) / interval,
            retry_after: None,
        })
    }
}
