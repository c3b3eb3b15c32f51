//! Sign-ins are rate limited per client address with strata's own `RateLimiter`, so one client
//! cannot fill the store with sessions by posting the sign-in form in a loop.
//!
//! The counters live in a MemoryStore of this process: the limit is per server. (Give the
//! limiter a `RedisStore<String, i64>` instead and every node shares it; its fixed window is
//! exact across nodes.) The client address is the TCP peer: behind a reverse proxy every client
//! shares the proxy's address, so configure the limit there or raise `STRATA_SIGN_IN_LIMIT`.

use std::{net::IpAddr, time::Duration};

use strata::{MemoryStore, RateDecision, RateLimiter};

const WINDOW: Duration = Duration::from_secs(60);

/// Sign-ins allowed per client address per minute.
#[derive(Clone)]
pub struct SignInLimit {
    limiter: RateLimiter<MemoryStore<String, i64>>,
    per_minute: u64,
}

impl SignInLimit {
    /// `per_minute` sign-ins per client address per minute.
    pub fn new(per_minute: u64) -> Result<SignInLimit, String> {
        let store = MemoryStore::builder()
            .namespace("sign-in")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SignInLimit {
            limiter: RateLimiter::new(store),
            per_minute,
        })
    }

    /// Counts one sign-in attempt from `client`.
    pub async fn check(&self, client: IpAddr) -> strata::Result<RateDecision> {
        let key = client.to_string();
        self.limiter.check(&key, self.per_minute, WINDOW).await
    }
}
