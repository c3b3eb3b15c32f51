//! The user index's mechanics: one [`SessionRoster`](super::SessionRoster) per user, under the user id, naming that
//! user's sessions; what a page lists is read from the sessions' own records.
//!
//! Invariants (each pinned by a test in `tests/sessions_index.rs`):
//! - **every live session signed in as a user is named in that user's roster, which lives at
//!   least as long as the session**. `create` writes the record, then adds it to the roster (and
//!   removes the record again if that fails, so the request gets an error and no unlisted
//!   session exists). A `save` that changes the user, or moves the expiry date past what the
//!   roster covers, extends the roster *before* it replaces the record (and removes the record
//!   if that fails);
//! - the record notes, under [`ROSTER_KEY`], which user's roster names it and until when that
//!   roster lives, so a `save` that changes neither costs one `replace` and no index write;
//! - a roster may name sessions that are gone (a save that extended the roster and then found
//!   its session revoked, a crash between two writes): readers check each against its record
//!   and prune the dead ones. A member whose record is live is never pruned, even when it now
//!   belongs to another user (a request of the old user still in flight could save it back as
//!   theirs); listings and revokes skip it;
//! - a record whose id has been deleted never comes back (`save` is a `replace`, ids are never
//!   reused), so pruning a member whose record is missing is final.

use std::{fmt, sync::Arc, time::Duration};

use serde_json::Value;
use tower_sessions_core::session::Record;

use super::{SessionHandle, SessionInfo, CREATED_KEY, LAST_SEEN_KEY, USER_AGENT_KEY};
use crate::time::UnixMillis;

/// The record data key under which the store notes which user's roster names the session (by
/// its handle, so a copy of the data under another id — `cycle_id` — is not taken for it) and
/// until when that roster lives: `{"user": "ada", "handle": "<hex>", "until": <unix ms>}`.
pub(super) const ROSTER_KEY: &str = "strata.roster";

/// The least a roster outlives the expiry date of a session it names.
const ROSTER_SLACK: Duration = Duration::from_secs(60);

/// How many sessions a user has at most, unless `with_max_sessions_per_user` says otherwise.
pub(super) const DEFAULT_MAX_SESSIONS_PER_USER: usize = 100;

/// The index store, the record data key that names a session's user (`None`: no index), and
/// the most sessions a user may have.
#[derive(Clone)]
pub(super) struct UserIndex<I> {
    store: I,
    user_key: Option<Arc<str>>,
    max_sessions: usize,
}

impl UserIndex<super::NoIndex> {
    pub(super) fn none() -> Self {
        UserIndex {
            store: super::NoIndex,
            user_key: None,
            max_sessions: DEFAULT_MAX_SESSIONS_PER_USER,
        }
    }
}

impl<I> UserIndex<I> {
    pub(super) fn new(store: I, user_key: Arc<str>, max_sessions: usize) -> Self {
        UserIndex {
            store,
            user_key: Some(user_key),
            max_sessions,
        }
    }

    pub(super) fn store(&self) -> &I {
        &self.store
    }

    pub(super) fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    pub(super) fn set_max_sessions(&mut self, max: usize) {
        self.max_sessions = max.max(1);
    }

    pub(super) fn is_on(&self) -> bool {
        self.user_key.is_some()
    }

    /// The user `record` belongs to: the JSON string or number under the user key.
    pub(super) fn user_of(&self, record: &Record) -> Option<String> {
        let key = self.user_key.as_deref()?;
        match record.data.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Notes in a new session's data when it was created (listings read it).
    pub(super) fn stamp_created(&self, record: &mut Record, now: UnixMillis) {
        if self.is_on() {
            record.data.insert(CREATED_KEY.to_owned(), Value::from(now));
        }
    }

    /// Notes in the data of a session being saved that it was seen at `now`.
    pub(super) fn stamp_seen(&self, record: &mut Record, now: UnixMillis) {
        if self.is_on() {
            record
                .data
                .insert(LAST_SEEN_KEY.to_owned(), Value::from(now));
        }
    }

    /// If `record` (signed in as `user`, expiring at `expires`) is not known to be named in a
    /// roster of `user` that outlives it: the time the roster must live until.
    pub(super) fn roster_needed(
        &self,
        record: &Record,
        user: &str,
        expires: UnixMillis,
        now: UnixMillis,
    ) -> Option<UnixMillis> {
        let noted = record.data.get(ROSTER_KEY).and_then(|noted| {
            let noted_user = noted.get("user")?.as_str()?;
            let handle = noted.get("handle")?.as_str()?;
            let until = noted.get("until")?.as_u64()?;
            let same = noted_user == user && handle == SessionHandle::of(&record.id).as_str();
            Some((same, until))
        });
        let slack = duration_ms(ROSTER_SLACK);
        match noted {
            Some((true, until)) if until >= expires.saturating_add(slack) => None,
            // Cover the session's remaining life once more, so a session saved on every
            // request extends its roster about once per lifetime, not on every save.
            _ => Some(
                expires
                    .saturating_add(expires.saturating_sub(now))
                    .saturating_add(slack),
            ),
        }
    }

    /// Notes in `record` that `user`'s roster names it until `until`.
    pub(super) fn stamp_rostered(&self, record: &mut Record, user: &str, until: UnixMillis) {
        let handle = SessionHandle::of(&record.id);
        record.data.insert(
            ROSTER_KEY.to_owned(),
            serde_json::json!({ "user": user, "handle": handle.as_str(), "until": until }),
        );
    }
}

impl<I> fmt::Debug for UserIndex<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserIndex")
            .field("store", &std::any::type_name::<I>())
            .field("user_key", &self.user_key)
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

fn duration_ms(d: Duration) -> UnixMillis {
    UnixMillis::try_from(d.as_millis()).unwrap_or(UnixMillis::MAX)
}

/// The listing of `record`, stored under `session`.
pub(super) fn info_of(record: &Record, now: UnixMillis) -> SessionInfo {
    let stamp = |key: &str| record.data.get(key).and_then(Value::as_u64);
    let created = stamp(CREATED_KEY).unwrap_or(now);
    let last_seen = stamp(LAST_SEEN_KEY).unwrap_or(created);
    let user_agent = record
        .data
        .get(USER_AGENT_KEY)
        .and_then(Value::as_str)
        .map(str::to_owned);
    SessionInfo::new(&record.id, created, last_seen, user_agent)
}

/// The index key of `user`'s roster: the user id itself.
pub(super) fn roster_key(user: &str) -> String {
    user.to_owned()
}

/// `expiry` of a record as Unix milliseconds.
pub(super) fn expires_ms(record: &Record) -> UnixMillis {
    let ms = record.expiry_date.unix_timestamp_nanos() / 1_000_000;
    UnixMillis::try_from(ms.max(0)).unwrap_or(UnixMillis::MAX)
}
