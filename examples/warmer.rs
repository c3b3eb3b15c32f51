//! Warmer: fill a session cache from a database that is down while the app starts (seed 003).
//!
//! The "database" refuses the first three connections. The warmer is optional, so the cache is
//! up at once and serves `fetch` (one database query per key, absences cached against token
//! enumeration) while the warmer retries with back-off in the background; once the database is
//! back, the warm entries appear. Run with `cargo run --example warmer`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use strata::{BoxError, Cache, Load, MemoryStore, Warmer};

/// A database that is unreachable for its first `down_for` calls.
struct FlakyDatabase {
    calls: AtomicUsize,
    down_for: usize,
}

impl FlakyDatabase {
    fn connect(&self) -> Result<(), BoxError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.down_for {
            return Err(format!("connection refused (attempt {})", call + 1).into());
        }
        Ok(())
    }

    async fn active_sessions(&self) -> Result<Vec<(String, String)>, BoxError> {
        self.connect()?;
        Ok((1..=3)
            .map(|i| (format!("token-{i}"), format!("user-{i}")))
            .collect())
    }

    async fn session(&self, token: &str) -> Result<Option<String>, BoxError> {
        self.connect()?;
        Ok(token.strip_prefix("token-").map(|id| format!("user-{id}")))
    }
}

/// Reads every active session, as the warm-up task in the seed's `application.ex` did.
struct Sessions(Arc<FlakyDatabase>);

impl Warmer<String, String> for Sessions {
    fn name(&self) -> &str {
        "sessions"
    }
    async fn warm(&self) -> Result<Vec<(String, String)>, BoxError> {
        self.0.active_sessions().await
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let db = Arc::new(FlakyDatabase {
        calls: AtomicUsize::new(0),
        down_for: 3,
    });
    let cache = Cache::builder()
        .store(MemoryStore::new())
        .namespace("sessions")
        .ttl(Duration::from_secs(300))
        .negative_ttl(Duration::from_secs(60))
        .warmer(Sessions(db.clone()), Duration::from_secs(60))
        .warmer_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .build()
        .await?;
    println!(
        "cache up at once; warmed entries so far: {}",
        cache.len().await?
    );

    for _ in 0..20 {
        if cache.len().await? > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "after back-off the warmer succeeded: {} sessions, database calls so far: {}",
        cache.len().await?,
        db.calls.load(Ordering::SeqCst)
    );

    // A token the warmer did not load: one database query, then cached.
    for token in ["token-7", "token-7", "forged-token", "forged-token"] {
        let db = db.clone();
        let user = cache
            .fetch(token.to_string(), |token| async move {
                match db.session(&token).await? {
                    Some(user) => Ok::<_, BoxError>(Load::Commit(user)),
                    None => Ok(Load::NotFound),
                }
            })
            .await;
        println!("fetch {token} -> {:?}", user.map_err(|e| e.to_string()));
    }

    let stats = cache.stats();
    println!(
        "hits {}, misses {}, loads {}, writes {}, database calls {}",
        stats.hits,
        stats.misses,
        stats.loads,
        stats.writes,
        db.calls.load(Ordering::SeqCst)
    );
    Ok(())
}
