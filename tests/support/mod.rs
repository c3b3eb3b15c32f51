//! Test support shared by the integration tests: a per-test context (clock, scratch directory,
//! Redis server) and a real `redis-server` on a free loopback port.
#![allow(dead_code)]

pub mod fault_store;
#[cfg(feature = "disk")]
pub mod format1;
pub mod four_methods;
pub mod log_capture;
pub mod opener;
pub mod proxy;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;

use std::{any::Any, sync::Mutex, time::Duration};

pub use redis_server::RedisServer;
use strata::{Clock, ManualClock};

/// What a conformance case needs besides the store: a clock it can move, and whatever the store
/// under test needs kept alive (a directory, a Redis server).
pub struct Ctx {
    /// A store-specific handle shared by every store a case opens (an opened data directory, a
    /// client), created on first use by [`Ctx::shared`]. Declared first so it drops first,
    /// before the directory or server it uses.
    pub shared: Mutex<Option<Box<dyn Any + Send + Sync>>>,
    pub manual: Option<ManualClock>,
    pub dir: Option<tempfile::TempDir>,
    pub redis: Option<RedisServer>,
}

impl Ctx {
    /// A context with a manual clock, for stores whose expiry strata controls.
    pub fn manual() -> Self {
        Ctx {
            manual: Some(ManualClock::new()),
            dir: None,
            redis: None,
            shared: Mutex::new(None),
        }
    }

    /// A context on the system clock (for backends that keep their own time, like Redis).
    pub fn real() -> Self {
        Ctx {
            manual: None,
            dir: None,
            redis: None,
            shared: Mutex::new(None),
        }
    }

    /// Adds a scratch directory, removed when the context drops.
    pub fn with_dir(mut self) -> Self {
        self.dir = Some(tempfile::tempdir().expect("create a scratch directory"));
        self
    }

    /// Adds a fresh `redis-server` on a free loopback port.
    pub fn with_redis(mut self) -> Self {
        self.redis = Some(RedisServer::start());
        self
    }

    /// The shared handle of type `T`, created by `init` the first time (e.g. one opened data
    /// directory that every namespace of a case lives in).
    pub fn shared<T: Clone + Send + Sync + 'static>(&self, init: impl FnOnce() -> T) -> T {
        let mut slot = self.shared.lock().expect("ctx lock");
        if let Some(existing) = slot.as_ref().and_then(|b| b.downcast_ref::<T>()) {
            return existing.clone();
        }
        let value = init();
        *slot = Some(Box::new(value.clone()));
        value
    }

    /// The clock to give the store under test.
    pub fn clock(&self) -> Clock {
        self.manual
            .as_ref()
            .map_or_else(Clock::system, ManualClock::clock)
    }

    /// A stopwatch started now on this context's clock: with a manual clock it reads exactly
    /// what was advanced; on the system clock it reads real time, so a real-clock case can
    /// bound a remaining TTL by the time that really passed (a loaded machine oversleeps)
    /// instead of by a fixed slack.
    pub fn stopwatch(&self) -> Stopwatch {
        Stopwatch {
            manual: self.manual.as_ref().map(|m| (m.clone(), m.now_ms())),
            started: std::time::Instant::now(),
        }
    }

    /// Lets `by` pass: advances the manual clock, or sleeps on the system clock.
    pub async fn advance(&self, by: Duration) {
        match &self.manual {
            Some(m) => m.advance(by),
            None => tokio::time::sleep(by).await,
        }
    }

    /// The scratch directory (panics if the context has none: a bug in the test).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().expect("context built with_dir()").path()
    }

    /// The Redis URL (panics if the context has no server: a bug in the test).
    pub fn redis_url(&self) -> String {
        self.redis
            .as_ref()
            .expect("context built with_redis()")
            .url()
    }
}

/// Time passed since [`Ctx::stopwatch`] on the context's clock.
pub struct Stopwatch {
    manual: Option<(ManualClock, u64)>,
    started: std::time::Instant,
}

impl Stopwatch {
    /// How long ago the stopwatch started.
    pub fn elapsed(&self) -> Duration {
        match &self.manual {
            Some((clock, t0)) => Duration::from_millis(clock.now_ms() - t0),
            None => self.started.elapsed(),
        }
    }
}
