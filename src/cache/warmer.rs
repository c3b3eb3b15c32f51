//! Warmers: fill the cache from a source of truth at start and on an interval, without making
//! start-up brittle (seed 003: a deploy while the database is down must not crash the app).
//!
//! Each warmer runs in its own tokio task holding only a weak reference to the cache, so the
//! task ends when the cache is dropped (the cache also aborts it). A failing (or panicking) run
//! is logged and retried with exponential back-off and jitter; a success waits `interval`.
//! `build()` waits only for warmers registered as required, with a timeout.

use std::{
    fmt::Debug,
    future::Future,
    hash::{BuildHasher, Hash},
    pin::Pin,
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::sync::watch;

use super::{
    cache::{Cache, Inner},
    fetch::CatchUnwind,
};
use crate::{
    error::{BoxError, Error, Result},
    store::Store,
};

/// A source of entries for the cache (Cachex's `Cachex.Warmer`).
///
/// ```
/// use strata::{BoxError, Warmer};
///
/// struct Countries;
///
/// impl Warmer<String, String> for Countries {
///     fn name(&self) -> &str {
///         "countries"
///     }
///     async fn warm(&self) -> Result<Vec<(String, String)>, BoxError> {
///         // Read the database here; an error is retried with back-off.
///         Ok(vec![("fr".into(), "France".into()), ("de".into(), "Germany".into())])
///     }
/// }
/// ```
pub trait Warmer<K, V>: Send + Sync + 'static {
    /// A name for logs and errors (default: the type's name).
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Reads the entries to write (with the cache's default TTL), or an error.
    fn warm(&self) -> impl Future<Output = Result<Vec<(K, V)>, BoxError>> + Send;
}

type Entries<K, V> = Result<Vec<(K, V)>, BoxError>;

/// A [`Warmer`] behind a pointer, so a cache can hold warmers of different types.
pub(super) trait DynWarmer<K, V>: Send + Sync {
    fn name(&self) -> &str;
    fn run(&self) -> Pin<Box<dyn Future<Output = Entries<K, V>> + Send + '_>>;
}

impl<K: 'static, V: 'static, W: Warmer<K, V>> DynWarmer<K, V> for W {
    fn name(&self) -> &str {
        Warmer::name(self)
    }
    fn run(&self) -> Pin<Box<dyn Future<Output = Entries<K, V>> + Send + '_>> {
        Box::pin(self.warm())
    }
}

pub(super) struct WarmerSpec<K, V> {
    pub warmer: Arc<dyn DynWarmer<K, V>>,
    pub interval: Duration,
    pub required: bool,
}

/// Exponential back-off with ±25 % jitter, so many nodes retrying a database do not stampede.
#[derive(Clone, Copy, Debug)]
pub(super) struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 = the first).
    pub(super) fn delay(&self, failures: u32) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let base = doubled.min(self.max);
        let random = foldhash::fast::RandomState::default().hash_one(failures);
        let factor = 0.75 + (random % 1000) as f64 / 2000.0; // 0.75 ..= 1.25
        base.mul_f64(factor)
    }
}

#[derive(Clone, Debug, Default)]
struct Status {
    successes: u64,
    last_error: Option<String>,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// Spawns one task per warmer and waits for each required one to succeed once.
    pub(super) async fn start_warmers(&self, warm_timeout: Duration) -> Result<()> {
        if self.inner.warmers.is_empty() {
            return Ok(());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "warmer",
                "warmers run on tokio: build the cache inside a runtime",
            )
        })?;
        let mut required = Vec::new();
        for (index, spec) in self.inner.warmers.iter().enumerate() {
            let (tx, rx) = watch::channel(Status::default());
            let task = runtime.spawn(warm_loop(Arc::downgrade(&self.inner), index, tx));
            self.inner.tasks.lock().push(task);
            if spec.required {
                required.push((spec.warmer.name().to_owned(), rx));
            }
        }
        for (name, rx) in required {
            wait_first_success(name, rx, warm_timeout).await?;
        }
        Ok(())
    }

    /// Runs every warmer once, now, and writes what they return; the number of entries written.
    /// Every warmer runs even if one fails; the first failure is returned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// # use std::time::Duration;
    /// # use strata::{BoxError, Cache, MemoryStore, Warmer};
    /// # struct Countries;
    /// # impl Warmer<String, String> for Countries {
    /// #     async fn warm(&self) -> Result<Vec<(String, String)>, BoxError> {
    /// #         Ok(vec![("fr".into(), "France".into())])
    /// #     }
    /// # }
    /// let cache = Cache::builder()
    ///     .store(MemoryStore::new())
    ///     .required_warmer(Countries, Duration::from_secs(3600))
    ///     .build()
    ///     .await?; // waits for the first successful run
    /// assert_eq!(cache.get(&"fr".to_string()).await?.as_deref(), Some("France"));
    /// assert_eq!(cache.warm_now().await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn warm_now(&self) -> Result<usize> {
        let mut written = 0;
        let mut first_error = None;
        for index in 0..self.inner.warmers.len() {
            match self.run_warmer(index).await {
                Ok(n) => written += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(written), Err)
    }

    async fn run_warmer(&self, index: usize) -> Result<usize> {
        let warmer = self.inner.warmers[index].warmer.clone();
        let entries = read_source(&*warmer).await?;
        self.write_warmed(entries).await
    }

    async fn write_warmed(&self, entries: Vec<(K, V)>) -> Result<usize> {
        let written = entries.len();
        self.put_many(entries, None).await?;
        Ok(written)
    }
}

/// Runs a warmer's source, turning an error or a panic into [`Error::Backend`] naming it.
async fn read_source<K, V>(warmer: &dyn DynWarmer<K, V>) -> Result<Vec<(K, V)>> {
    let failed = |source: BoxError| {
        Error::from(crate::BackendError {
            context: format!("running warmer `{}`", warmer.name()),
            source,
        })
    };
    match CatchUnwind(warmer.run()).await {
        Ok(result) => result.map_err(failed),
        Err(panic) => Err(failed(format!("the warmer panicked: {panic}").into())),
    }
}

async fn wait_first_success(
    name: String,
    mut rx: watch::Receiver<Status>,
    after: Duration,
) -> Result<()> {
    let waited = tokio::time::timeout(after, rx.wait_for(|s| s.successes > 0))
        .await
        .map(|r| r.is_ok());
    if waited == Ok(true) {
        return Ok(());
    }
    let last = rx.borrow().last_error.clone();
    Err(Error::from(crate::TimeoutError {
        context: format!(
            "waiting for required warmer `{name}` to succeed once (last error: {}); \
             fix its source, raise `warm_timeout`, or register it with `.warmer(..)` so \
             start-up does not wait",
            last.as_deref().unwrap_or("none yet")
        ),
        after,
    }))
}

/// One warmer's life: run, then sleep `interval` after a success or a back-off after a failure,
/// until the cache is gone.
async fn warm_loop<K, V, S>(weak: Weak<Inner<K, V, S>>, index: usize, status: watch::Sender<Status>)
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    let mut failures = 0u32;
    loop {
        let Some(delay) = warm_once(&weak, index, &status, &mut failures).await else {
            return;
        };
        tokio::time::sleep(delay).await;
    }
}

/// One run of a warmer; the delay before the next, or `None` once the cache is gone. The cache
/// is held only while writing, never while the source runs, so dropping the cache (which aborts
/// this task) is never delayed by a hanging source.
async fn warm_once<K, V, S>(
    weak: &Weak<Inner<K, V, S>>,
    index: usize,
    status: &watch::Sender<Status>,
    failures: &mut u32,
) -> Option<Duration>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    let (warmer, interval, backoff) = {
        let inner = weak.upgrade()?;
        let spec = &inner.warmers[index];
        (spec.warmer.clone(), spec.interval, inner.backoff)
    };
    let result = match read_source(&*warmer).await {
        Ok(entries) => {
            let cache = Cache {
                inner: weak.upgrade()?,
            };
            cache.write_warmed(entries).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            *failures = 0;
            status.send_modify(|s| s.successes += 1);
            Some(interval)
        }
        Err(error) => {
            *failures = failures.saturating_add(1);
            tracing::warn!(%error, failures = *failures, "cache warmer failed; retrying with back-off");
            status.send_modify(|s| s.last_error = Some(error.to_string()));
            Some(backoff.delay(*failures))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for (failures, base) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let d = b.delay(failures).as_secs_f64() * 1000.0;
            let base = base as f64;
            assert!(
                d >= base * 0.75 - 1e-6 && d <= base * 1.25 + 1e-6,
                "{failures}: {d}"
            );
        }
    }
}
