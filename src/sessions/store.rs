//! [`StrataSessionStore`]: the tower-sessions `SessionStore` over a strata [`Store`].

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use tower_sessions_core::{
    session::{Id, Record},
    session_store::{self, ExpiredDeletion, SessionStore},
};

use super::{
    index::{expires_ms, UserIndex, DEFAULT_MAX_SESSIONS_PER_USER},
    NoIndex, SessionHandle, SessionRoster,
};
use crate::{error::Error, store::Store, time::Clock};

/// How many fresh ids `create` draws before giving up. With 128-bit random ids a second draw is
/// already astronomically unlikely; the bound only stops a broken store from looping forever.
const MAX_CREATE_ATTEMPTS: usize = 16;

/// A tower-sessions `SessionStore` over any strata [`Store`] of `String` ids to `Record`s.
///
/// See the [module docs](super) for how records, ids and expiry dates map onto the store, and
/// for the guarantees. `I` is the user index's store ([`NoIndex`] until
/// [`with_user_index`](Self::with_user_index)).
#[derive(Clone)]
pub struct StrataSessionStore<S, I = NoIndex> {
    pub(super) store: S,
    pub(super) clock: Clock,
    pub(super) index: UserIndex<I>,
    /// True for the near half of a `CachingSessionStore`: `save` writes even over no entry.
    upsert: bool,
}

impl<S> StrataSessionStore<S> {
    /// Sessions kept in `store`, with expiry dates read against the system clock.
    pub fn new(store: S) -> Self {
        Self {
            store,
            clock: Clock::system(),
            index: UserIndex::none(),
            upsert: false,
        }
    }

    /// Turns on the user index: a session whose record data holds `user_key` (a JSON string or
    /// number, e.g. `session.insert("user_id", "ada")`) is named in that user's
    /// [`SessionRoster`] in `index`, typically the same backend as the sessions under another
    /// namespace. A user has at most 100 sessions (see
    /// [`with_max_sessions_per_user`](StrataSessionStore::with_max_sessions_per_user)). See the
    /// [module docs](super#every-device-of-a-user) for an example.
    #[must_use]
    pub fn with_user_index<I>(self, index: I, user_key: &str) -> StrataSessionStore<S, I>
    where
        I: Store<String, SessionRoster>,
    {
        StrataSessionStore {
            store: self.store,
            clock: self.clock,
            index: UserIndex::new(index, Arc::from(user_key), DEFAULT_MAX_SESSIONS_PER_USER),
            upsert: self.upsert,
        }
    }
}

impl<S, I> StrataSessionStore<S, I> {
    /// Reads "now" from `clock` when turning expiry dates into TTLs (give it the store's
    /// `ManualClock` in tests, so moving time expires sessions).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The most sessions one user may have with the user index on (default 100, at least 1):
    /// a sign-in beyond it first drops the user's sessions that are gone, then signs out the
    /// user's oldest session. This bounds what one user's roster costs to read and write.
    ///
    /// ```
    /// use strata::{sessions::{SessionRoster, StrataSessionStore}, MemoryStore};
    /// use tower_sessions_core::session::Record;
    /// let sessions = StrataSessionStore::new(MemoryStore::<String, Record>::new())
    ///     .with_user_index(MemoryStore::<String, SessionRoster>::new(), "user_id")
    ///     .with_max_sessions_per_user(10);
    /// # let _ = sessions;
    /// ```
    #[must_use]
    pub fn with_max_sessions_per_user(mut self, max: usize) -> Self {
        self.index.set_max_sessions(max);
        self
    }

    /// Makes `save` write even when the session has no entry, for the near half of
    /// tower-sessions' `CachingSessionStore` (which fills its near store with `save`).
    ///
    /// This gives up "a logout sticks" for the near copy: a request that was in flight during a
    /// sign-out can write the session back into this store, and this process serves it from
    /// there until it expires. The far store keeps the guarantee. For a near tier that keeps
    /// it, put a `ReplicatedStore` (which invalidates every node's copy) under one
    /// `StrataSessionStore` instead.
    #[must_use]
    pub fn near_cache(mut self) -> Self {
        self.upsert = true;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The user index's store ([`NoIndex`] if there is none).
    pub fn index_store(&self) -> &I {
        self.index.store()
    }

    /// The time `record` has left, or `None` if its expiry date has passed.
    pub(super) fn ttl_of(&self, record: &Record) -> Option<Duration> {
        let expires_ms = record.expiry_date.unix_timestamp_nanos() / 1_000_000;
        let left_ms = expires_ms - i128::from(self.clock.now_ms());
        (left_ms > 0).then(|| Duration::from_millis(u64::try_from(left_ms).unwrap_or(u64::MAX)))
    }
}

impl<S, I> fmt::Debug for StrataSessionStore<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrataSessionStore")
            .field("store", &std::any::type_name::<S>())
            .field("index", &self.index)
            .field("clock", &self.clock)
            .field("near_cache", &self.upsert)
            .finish()
    }
}

/// tower-sessions' error for a strata error, without the session id (tower-sessions logs it).
pub(super) fn to_session_error(error: Error) -> session_store::Error {
    match redacted(error) {
        error @ Error::Encode { .. } => session_store::Error::Encode(without_ids(&error)),
        error @ Error::Decode { .. } => session_store::Error::Decode(without_ids(&error)),
        other => session_store::Error::Backend(without_ids(&other)),
    }
}

/// `error`'s message with every session id in it replaced by the session's handle. A store
/// names the key in its own context (`GET sessions:<id>` from Redis, a timeout's context, a
/// driver's message), which [`redacted`] cannot reach field by field.
pub(super) fn without_ids(error: &Error) -> String {
    let text = error.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find(is_id_char) {
        let len = rest[start..]
            .find(|c| !is_id_char(c))
            .unwrap_or(rest.len() - start);
        let (before, word, after) = (
            &rest[..start],
            &rest[start..start + len],
            &rest[start + len..],
        );
        out.push_str(before);
        match word.parse::<Id>() {
            Ok(id) => out.push_str(&format!("<session {}>", SessionHandle::of(&id))),
            Err(_) => out.push_str(word),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A character of a session id as tower-sessions writes it (URL-safe base64).
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// `error` with a session id in its key replaced by the session's handle: the id is a bearer
/// secret and must not reach logs or error pages.
pub(super) fn redacted(error: Error) -> Error {
    match error {
        Error::Decode(mut e) => {
            e.key = handle_of_key(&e.key);
            Error::Decode(e)
        }
        Error::Encode(mut e) => {
            e.key = handle_of_key(&e.key);
            Error::Encode(e)
        }
        other => other,
    }
}

/// How logs name the session stored under `key`: `session <handle>`.
pub(super) fn handle_of_key(key: &str) -> String {
    let id = key.rsplit(':').next().and_then(|id| id.parse::<Id>().ok());
    match id {
        Some(id) => format!("session {}", SessionHandle::of(&id)),
        None => "a key that is not a session id".to_owned(),
    }
}

impl<S, I> StrataSessionStore<S, I>
where
    S: Store<String, Record> + 'static,
    I: Store<String, SessionRoster> + 'static,
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

    /// `create`: a fresh entry, then its user's roster names it. If the roster cannot be
    /// written the session is removed again, so every signed-in session is one that "sign out
    /// everywhere" reaches.
    async fn create_session(&self, record: &mut Record) -> Result<(), Error> {
        let now = self.clock.now_ms();
        self.index.stamp_created(record, now);
        self.index.stamp_seen(record, now);
        // Always enrolled, whatever the data says: `cycle_id` creates the new id with a copy of
        // the old session's data, roster note included.
        record.data.remove(super::index::ROSTER_KEY);
        let roster = self.roster_needed(record, now);
        if let Some((user, until)) = &roster {
            // Names this id's handle: if `insert_new` has to draw another id (a collision),
            // the note no longer matches and the next save just extends the roster again.
            self.index.stamp_rostered(record, user, *until);
        }
        if !self.insert_new(record).await? {
            return Ok(());
        }
        let Some((user, until)) = roster else {
            return Ok(());
        };
        let key = record.id.to_string();
        if let Err(error) = self.enroll(&user, &key, until).await {
            self.forget(&key).await;
            return Err(error);
        }
        Ok(())
    }

    /// `record`'s user and the time their roster must live until, if the record is not known
    /// to be named in a roster of that user that outlives it.
    fn roster_needed(&self, record: &Record, now: u64) -> Option<(String, u64)> {
        let user = self.index.user_of(record)?;
        let until = self
            .index
            .roster_needed(record, &user, expires_ms(record), now)?;
        Some((user, until))
    }

    /// `save`: replaces the live entry only, so a session deleted while this request ran (a
    /// sign-out, a revoke) stays deleted. If the user changed, or the expiry date moved past
    /// what the user's roster covers, the roster is extended first; otherwise (almost every
    /// save) the replace is the only write.
    async fn save_session(&self, record: &Record) -> Result<(), Error> {
        let key = record.id.to_string();
        let Some(ttl) = self.ttl_of(record) else {
            return self.delete_session(&record.id).await;
        };
        let mut record = record.clone();
        if self.index.is_on() {
            let now = self.clock.now_ms();
            self.index.stamp_seen(&mut record, now);
            if let Some((user, until)) = self.roster_needed(&record, now) {
                if let Err(error) = self.enroll(&user, &key, until).await {
                    self.forget(&key).await;
                    return Err(error);
                }
                self.index.stamp_rostered(&mut record, &user, until);
            }
        }
        let written = if self.upsert {
            self.store
                .put(key, record, Some(ttl))
                .await
                .map(|()| true)?
        } else {
            self.store.replace(key, record, Some(ttl)).await?
        };
        if !written {
            tracing::debug!(
                "session not saved: it was deleted (signed out or revoked) while the request ran"
            );
        }
        Ok(())
    }

    /// `delete`: removes the record, and its name from its user's roster if it had a user.
    async fn delete_session(&self, id: &Id) -> Result<(), Error> {
        let key = id.to_string();
        if !self.index.is_on() {
            return self.store.delete(&key).await.map(|_| ());
        }
        match self.store.take(&key).await {
            Ok(Some(record)) => match self.index.user_of(&record) {
                Some(user) => self.unroster(&user, &[key]).await,
                None => Ok(()),
            },
            Ok(None) => Ok(()),
            Err(Error::Decode { .. }) => self.store.delete(&key).await.map(|_| ()),
            Err(e) => Err(e),
        }
    }

    /// The live record under `id`; an undecodable one is logged, deleted and reported absent.
    pub(super) async fn read(&self, id: &Id) -> Result<Option<Record>, Error> {
        let key = id.to_string();
        match self.store.get(&key).await {
            Ok(Some(record)) => Ok(self.live(id, record)),
            Ok(None) => Ok(None),
            Err(Error::Decode(e)) => {
                let reason = &e.reason;
                let handle = SessionHandle::of(id);
                tracing::warn!(%handle, %reason, "session record does not decode; treating it as absent and deleting it");
                self.forget(&key).await;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `record` if it belongs to `id` and has not expired.
    pub(super) fn live(&self, id: &Id, record: Record) -> Option<Record> {
        (record.id == *id && self.ttl_of(&record).is_some()).then_some(record)
    }

    /// Deletes `key`, logging (not returning) a failure: used on paths that already answer
    /// "absent" and must not fail because a clean-up did.
    pub(super) async fn forget(&self, key: &String) {
        if let Err(error) = self.store.delete(key).await {
            let handle = handle_of_key(key);
            let error = without_ids(&redacted(error));
            tracing::warn!(%handle, %error, "could not delete a bad session record");
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
impl<S, I> SessionStore for StrataSessionStore<S, I>
where
    S: Store<String, Record> + 'static,
    I: Store<String, SessionRoster> + 'static,
{
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.create_session(record).await.map_err(to_session_error)
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.save_session(record).await.map_err(to_session_error)
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        self.read(session_id).await.map_err(to_session_error)
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.delete_session(session_id)
            .await
            .map_err(to_session_error)
    }
}

#[async_trait]
impl<S, I> ExpiredDeletion for StrataSessionStore<S, I>
where
    S: Store<String, Record> + 'static,
    I: Store<String, SessionRoster> + 'static,
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
