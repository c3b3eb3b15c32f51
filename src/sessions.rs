//! tower-sessions on strata: keep a web app's sessions in any [`Store`].
//!
//! [`StrataSessionStore`] implements `tower_sessions_core::SessionStore` over any
//! `Store<String, Record>` — a `MemoryStore` for one process, a `DiskStore` so sessions survive a
//! restart (nobody gets logged out by a deploy), a `RedisStore` so every node sees them. It is
//! usable on its own or as either half of tower-sessions' `CachingSessionStore` (a `MemoryStore`
//! in front of Redis, for example).
//!
//! How the tower-sessions contract maps onto the store:
//! - the key is the session id as tower-sessions prints it (22 URL-safe base64 characters); give
//!   the store a namespace such as `sessions` so `redis-cli --scan --pattern 'sessions:*'` lists
//!   them;
//! - the record's absolute `expiry_date` becomes the entry's TTL, so the store expires the
//!   session by itself; a record whose expiry date has already passed is deleted, not written;
//! - `create` writes with [`Store::put_new`] and draws a new id on a collision (as the
//!   tower-sessions Redis store does with `SET NX`), so two sessions never share an id;
//! - `load` returns `None` for a missing, expired or undecodable record; an undecodable one (a
//!   tampered or outdated entry) is logged with `tracing::warn!` and deleted;
//! - `ExpiredDeletion::delete_expired` removes records whose expiry date has passed and
//!   records that no longer decode. strata's stores expire entries themselves, so it is only
//!   needed for a store of your own that ignores TTLs.
//!
//! As with every tower-sessions store, concurrent requests of one session each load, change and
//! save their own copy of the record: the last save wins (a counter bumped by 8 parallel requests
//! can lose increments). Keep per-session data that must not lose updates in its own key and use
//! [`Store::incr`].
//!
//! ```
//! use strata::{sessions::StrataSessionStore, MemoryStore};
//! use tower_sessions_core::session::Record;
//!
//! let store = MemoryStore::<String, Record>::builder().build()?;
//! let sessions = StrataSessionStore::new(store);
//! // `SessionManagerLayer::new(sessions)` in an axum app, or
//! // `CachingSessionStore::new(sessions, redis_sessions)` as the near half.
//! # let _ = sessions;
//! # Ok::<(), strata::Error>(())
//! ```

use std::{fmt, time::Duration};

use async_trait::async_trait;
use tower_sessions_core::{
    session::{Id, Record},
    session_store::{self, ExpiredDeletion, SessionStore},
};

use crate::{error::Error, store::Store, time::Clock};

/// How many fresh ids `create` draws before giving up. With 128-bit random ids a second draw is
/// already astronomically unlikely; the bound only stops a broken store from looping forever.
const MAX_CREATE_ATTEMPTS: usize = 16;

/// A tower-sessions `SessionStore` over any strata [`Store`] of `String` ids to `Record`s.
///
/// See the [module docs](self) for how records, ids and expiry dates map onto the store.
#[derive(Clone)]
pub struct StrataSessionStore<S> {
    store: S,
    clock: Clock,
}

impl<S> StrataSessionStore<S> {
    /// Sessions kept in `store`, with expiry dates read against the system clock.
    pub fn new(store: S) -> Self {
        Self {
            store,
            clock: Clock::system(),
        }
    }

    /// Reads "now" from `clock` when turning expiry dates into TTLs (give it the store's
    /// `ManualClock` in tests, so moving time expires sessions).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The time `record` has left, or `None` if its expiry date has passed.
    fn ttl_of(&self, record: &Record) -> Option<Duration> {
        let expires_ms = record.expiry_date.unix_timestamp_nanos() / 1_000_000;
        let left_ms = expires_ms - i128::from(self.clock.now_ms());
        (left_ms > 0).then(|| Duration::from_millis(u64::try_from(left_ms).unwrap_or(u64::MAX)))
    }
}

impl<S> fmt::Debug for StrataSessionStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrataSessionStore")
            .field("store", &std::any::type_name::<S>())
            .field("clock", &self.clock)
            .finish()
    }
}

/// tower-sessions' error for a strata error.
fn to_session_error(error: Error) -> session_store::Error {
    match error {
        Error::Encode { .. } => session_store::Error::Encode(error.to_string()),
        Error::Decode { .. } => session_store::Error::Decode(error.to_string()),
        other => session_store::Error::Backend(other.to_string()),
    }
}

impl<S> StrataSessionStore<S>
where
    S: Store<String, Record> + 'static,
{
    /// Writes `record` under a fresh id if its id is taken; false if it has already expired.
    async fn insert_new(&self, record: &mut Record) -> Result<bool, Error> {
        let Some(ttl) = self.ttl_of(record) else {
            return Ok(false);
        };
        for _ in 0..MAX_CREATE_ATTEMPTS {
            if self
                .store
                .put_new(record.id.to_string(), record.clone(), Some(ttl))
                .await?
            {
                return Ok(true);
            }
            tracing::debug!("session id collision; drawing a new id");
            record.id = Id::default();
        }
        Err(Error::backend(
            "creating a session",
            format!("every one of {MAX_CREATE_ATTEMPTS} fresh session ids was taken; check that the store's put_new is correct"),
        ))
    }

    /// The live record under `id`; an undecodable one is logged, deleted and reported absent.
    async fn read(&self, id: &Id) -> Result<Option<Record>, Error> {
        let key = id.to_string();
        match self.store.get(&key).await {
            Ok(Some(record)) => Ok(self.live(id, record)),
            Ok(None) => Ok(None),
            Err(Error::Decode { reason, .. }) => {
                tracing::warn!(session = %key, %reason, "session record does not decode; treating it as absent and deleting it");
                self.forget(&key).await;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `record` if it belongs to `id` and has not expired.
    fn live(&self, id: &Id, record: Record) -> Option<Record> {
        (record.id == *id && self.ttl_of(&record).is_some()).then_some(record)
    }

    /// Deletes `key`, logging (not returning) a failure: used on paths that already answer
    /// "absent" and must not fail because a clean-up did.
    async fn forget(&self, key: &String) {
        if let Err(error) = self.store.delete(key).await {
            tracing::warn!(session = %key, %error, "could not delete a bad session record");
        }
    }

    /// True if the entry under `key` is expired by its record's date or does not decode.
    async fn is_stale(&self, key: &String) -> Result<bool, Error> {
        match self.store.get(key).await {
            Ok(Some(record)) => Ok(self.ttl_of(&record).is_none()),
            Ok(None) => Ok(false),
            Err(Error::Decode { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl<S> SessionStore for StrataSessionStore<S>
where
    S: Store<String, Record> + 'static,
{
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.insert_new(record)
            .await
            .map(|_| ())
            .map_err(to_session_error)
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let key = record.id.to_string();
        let result = match self.ttl_of(record) {
            Some(ttl) => self.store.put(key, record.clone(), Some(ttl)).await,
            None => self.store.delete(&key).await.map(|_| ()),
        };
        result.map_err(to_session_error)
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        self.read(session_id).await.map_err(to_session_error)
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.store
            .delete(&session_id.to_string())
            .await
            .map(|_| ())
            .map_err(to_session_error)
    }
}

#[async_trait]
impl<S> ExpiredDeletion for StrataSessionStore<S>
where
    S: Store<String, Record> + 'static,
{
    async fn delete_expired(&self) -> session_store::Result<()> {
        let keys = self.store.keys().await.map_err(to_session_error)?;
        for key in keys {
            if self.is_stale(&key).await.map_err(to_session_error)? {
                self.forget(&key).await;
            }
        }
        Ok(())
    }
}
