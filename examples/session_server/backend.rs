//! The store that keeps the sessions — a DiskStore by default, Redis or a ReplicatedStore on
//! request — and the live panel of its numbers shown on the page.

use std::{future::Future, path::Path, pin::Pin, sync::Arc};

#[cfg(feature = "redis")]
use strata::redact_url;
use strata::{
    sessions::{SessionRoster, StrataSessionStore},
    DiskStore, Store,
};
use tower_sessions::session::Record;

use super::config::RedisTarget;

/// A boxed future, so the panel can sit behind a trait object whatever the store.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The user index's key in a session: the signed-in name is the user.
pub const USER_KEY: &str = "name";

/// The chosen store: the sessions over it (with their user index in `I`), and what the page
/// says about it.
pub struct Backend<S, I> {
    /// tower-sessions' view of the store.
    pub sessions: StrataSessionStore<S, I>,
    /// The store's description and numbers.
    pub panel: Arc<dyn Panel>,
    /// What opening the store found (for the start-up banner).
    pub opened: String,
}

/// The store's numbers at one instant; `None` where the store does not keep that number.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Snapshot {
    /// Sessions stored (live entries).
    pub entries: Option<usize>,
    /// Reads that found a session.
    pub hits: Option<u64>,
    /// Reads that found none.
    pub misses: Option<u64>,
    /// Bytes of the data directory.
    pub disk_bytes: Option<u64>,
}

/// What the page shows about the store.
pub trait Panel: Send + Sync {
    /// One line naming the store and where it keeps data, secrets redacted.
    fn describe(&self) -> &str;
    /// Its numbers now.
    fn snapshot(&self) -> BoxFuture<'_, Snapshot>;
}

/// A panel over any store, given how to read its hit/miss counters and disk usage.
struct StorePanel<S> {
    store: S,
    what: String,
    counters: fn(&S) -> Option<(u64, u64)>,
    disk_bytes: fn(&S) -> Option<u64>,
}

impl<S: Store<String, Record> + Sync> Panel for StorePanel<S> {
    fn describe(&self) -> &str {
        &self.what
    }

    fn snapshot(&self) -> BoxFuture<'_, Snapshot> {
        Box::pin(async move {
            let counters = (self.counters)(&self.store);
            Snapshot {
                entries: self.store.count().await.ok(),
                hits: counters.map(|c| c.0),
                misses: counters.map(|c| c.1),
                disk_bytes: (self.disk_bytes)(&self.store),
            }
        })
    }
}

#[cfg(feature = "redis")]
fn none<S, T>(_: &S) -> Option<T> {
    None
}

/// The disk backend: sessions, and their user index in the same directory.
pub type Disk = Backend<DiskStore<String, Record>, DiskStore<String, SessionRoster>>;

/// Sessions in a DiskStore: every write is committed to disk before the response goes out. The
/// user index is the `devices` namespace of the same directory.
pub async fn disk(dir: &Path) -> Result<Disk, String> {
    let store = DiskStore::builder()
        .dir(dir)
        .namespace("sessions")
        .open()
        .map_err(|e| e.to_string())?;
    let index = store
        .db()
        .store::<String, SessionRoster>("devices")
        .map_err(|e| e.to_string())?;
    let purged = store.db().load_summary().purged;
    let loaded = store.count().await.map_err(|e| e.to_string())?;
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let panel = StorePanel {
        store: store.clone(),
        what: format!("DiskStore in {}", shown.display()),
        counters: |s: &DiskStore<String, Record>| Some((s.stats().hits, s.stats().misses)),
        disk_bytes: |s: &DiskStore<String, Record>| s.db().disk_usage().ok(),
    };
    Ok(Backend {
        opened: format!(
            "DiskStore in {} ({loaded} sessions loaded, {purged} expired purged)",
            dir.display(),
        ),
        sessions: StrataSessionStore::new(store).with_user_index(index, USER_KEY),
        panel: Arc::new(panel),
    })
}

/// The user index in Redis, beside the sessions: its own namespace, so listing one user's
/// devices never scans the sessions' keys.
#[cfg(feature = "redis")]
pub type RedisIndex = strata::RedisStore<String, SessionRoster>;

/// Sessions in Redis, shared by every server pointed at it.
#[cfg(feature = "redis")]
pub async fn redis(
    target: &RedisTarget,
) -> Result<Backend<strata::RedisStore<String, Record>, RedisIndex>, String> {
    let store = redis_store(target, "sessions").await?;
    let index = redis_store(target, "devices").await?;
    let what = format!("RedisStore at {}", target.describe());
    let panel = StorePanel {
        store: store.clone(),
        what: what.clone(),
        counters: none,
        disk_bytes: none,
    };
    Ok(Backend {
        sessions: StrataSessionStore::new(store).with_user_index(index, USER_KEY),
        panel: Arc::new(panel),
        opened: what,
    })
}

/// A Redis store of `namespace`. Its errors can quote a URL, so they are redacted too.
#[cfg(feature = "redis")]
async fn redis_store<V>(
    target: &RedisTarget,
    namespace: &str,
) -> Result<strata::RedisStore<String, V>, String>
where
    V: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let builder = match target {
        RedisTarget::Url(url) => strata::RedisStore::builder().url(url),
        RedisTarget::Sentinel { sentinels, master } => {
            strata::RedisStore::builder().sentinel(sentinels.clone(), master.clone())
        }
    };
    builder
        .namespace(namespace)
        .build()
        .await
        .map_err(|e| redacted_error(target, &e))
}

/// `error` as text, with the URLs' credentials removed wherever the text quotes them.
#[cfg(feature = "redis")]
fn redacted_error(target: &RedisTarget, error: &dyn std::fmt::Display) -> String {
    let mut text = error.to_string();
    for url in target.urls() {
        text = text.replace(url, &redact_url(url));
    }
    format!("cannot use Redis at {}: {text}", target.describe())
}

/// A local MemoryStore in front of a RedisStore.
#[cfg(feature = "redis")]
pub type Replicated = strata::ReplicatedStore<
    String,
    Record,
    strata::MemoryStore<String, Record>,
    strata::RedisStore<String, Record>,
>;

/// Sessions read from a local copy, with Redis as the truth shared by every server. The user
/// index is read from Redis directly: a devices page is rare, and must see every node's writes.
#[cfg(feature = "redis")]
pub async fn replicated(target: &RedisTarget) -> Result<Backend<Replicated, RedisIndex>, String> {
    let local = strata::MemoryStore::builder()
        .namespace("sessions")
        .build()
        .map_err(|e| e.to_string())?;
    let builder = strata::ReplicatedStore::builder()
        .local(local)
        .remote(redis_store(target, "sessions").await?);
    // The invalidation channel goes where the data goes: with Sentinel, to the master the
    // sentinels name, asked again after every failover.
    let builder = match target {
        RedisTarget::Url(url) => builder.url(url),
        RedisTarget::Sentinel { sentinels, master } => {
            builder.sentinel(sentinels.clone(), master.clone())
        }
    };
    let store = builder
        .build()
        .await
        .map_err(|e| redacted_error(target, &e))?;
    let what = format!(
        "ReplicatedStore (local MemoryStore, RedisStore at {})",
        target.describe()
    );
    let panel = StorePanel {
        store: store.clone(),
        what: what.clone(),
        counters: none,
        disk_bytes: none,
    };
    let index = redis_store(target, "devices").await?;
    Ok(Backend {
        sessions: StrataSessionStore::new(store).with_user_index(index, USER_KEY),
        panel: Arc::new(panel),
        opened: what,
    })
}

#[cfg(not(feature = "redis"))]
pub async fn replicated(target: &RedisTarget) -> Result<Disk, String> {
    redis(target).await
}

#[cfg(not(feature = "redis"))]
pub async fn redis(target: &RedisTarget) -> Result<Disk, String> {
    Err(format!(
        "Redis at {} needs Redis support: run with `--features redis`",
        target.describe()
    ))
}
