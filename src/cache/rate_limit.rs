//! `RateLimiter`: request limits kept in any store, so limits in Redis are shared by every node
//! (seed 003: throttle token enumeration instead of making the cache clever).
//!
//! Two algorithms:
//! - **Fixed window** ([`RateLimiter::check`]): one counter per key and window, counted with
//!   `incr_with_ttl` (the window's TTL on the counter it creates), atomic in every strata
//!   store, so the limit is exact across nodes. A burst of up to twice the
//!   limit can straddle a window boundary.
//! - **GCRA** ([`RateLimiter::check_gcra`]): one "theoretical arrival time" (TAT) per key,
//!   smooth (no boundary bursts). Each check is one [`Store::gcra`] step: read the TAT, decide,
//!   write the next TAT, atomically. On Redis (and a ReplicatedStore over it) that is one Lua
//!   script, as redis-cell does: one round trip per check, the limit exact across processes
//!   and nodes. Other stores take the trait's default, a read and a
//!   [`Store::compare_and_set`] against the value read, again if another writer came in
//!   between: exact too. Checks of one key inside one limiter are also serialized by a key
//!   lock, so that default's retries only happen between processes.

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
    /// most `limit` that refills smoothly. Exact across processes sharing the store (see the
    /// module docs).
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
    /// for _ in 0..2 {
    ///     assert!(limiter.check_gcra("api:ada", 2, minute).await?.allowed);
    /// }
    /// let denied = limiter.check_gcra("api:ada", 2, minute).await?;
    /// assert_eq!(denied.retry_after, Some(Duration::from_secs(30)));
    /// time.advance(Duration::from_secs(30)); // one request's worth refilled
    /// assert!(limiter.check_gcra("api:ada", 2, minute).await?.allowed);
    /// # Ok(()) }
    /// ```
    pub async fn check_gcra(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateDecision> {
        let window_ms = validate(limit, window)?;
        let rate = Gcra::new(limit, window_ms);
        let state = format!("gcra:{key}");
        let _guard = self.inner.locks.lock(&state).await;
        let now = self.inner.clock.now_ms();
        let step = self
            .inner
            .store
            .gcra(&state, now, rate.interval, rate.tolerance)
            .await?;
        Ok(rate.decide(step.tat_ms, now).1)
    }
}

/// GCRA's constants for one limit: the emission interval and the burst tolerance, in ms.
#[derive(Clone, Copy)]
struct Gcra {
    window_ms: u64,
    interval: u64,
    tolerance: u64,
}

impl Gcra {
    fn new(limit: u64, window_ms: u64) -> Self {
        let interval = (window_ms / limit).max(1);
        Gcra {
            window_ms,
            interval,
            tolerance: window_ms.saturating_sub(interval),
        }
    }

    /// The decision for a request at `now` given the theoretical arrival time `tat` (at least
    /// `now`), and the TAT to store if it is allowed.
    fn decide(self, tat: u64, now: u64) -> (Option<u64>, RateDecision) {
        if tat - now > self.tolerance {
            let denied = RateDecision {
                allowed: false,
                remaining: 0,
                retry_after: Some(Duration::from_millis(tat - now - self.tolerance)),
            };
            return (None, denied);
        }
        let next = tat + self.interval;
        let allowed = RateDecision {
            allowed: true,
            remaining: self.window_ms.saturating_sub(next - now) / self.interval,
            retry_after: None,
        };
        (Some(next), allowed)
    }
}
