//! The user index's mechanics: one entry per (user, session) under `<escaped user>:<handle>`.
//!
//! Invariants:
//! - an entry is written only after its session's record was written (`create`, or a `save`
//!   whose replace succeeded), and a record whose entry cannot be written is removed again, so
//!   every live signed-in session has an entry (refreshed on each save, with the record's TTL
//!   plus [`INDEX_TTL_SLACK`], so it never expires before its record);
//! - an entry can outlive its session (a save racing a revoke, a user change, a crash between
//!   two deletes): readers check each entry against its record and remove the stale ones.

use std::{fmt, sync::Arc, time::Duration};

use serde_json::Value;
use tower_sessions_core::session::Record;

use super::{SessionHandle, SessionInfo, CREATED_KEY, USER_AGENT_KEY};
use crate::{error::Result, store::Store, time::UnixMillis};

/// How much longer an index entry lives than its record: enough to cover the time between the
/// record write and the entry write, so a live session is never missing from its user's list.
const INDEX_TTL_SLACK: Duration = Duration::from_secs(60);

/// The index store and the record data key that names a session's user (`None`: no index).
#[derive(Clone)]
pub(super) struct UserIndex<I> {
    store: I,
    user_key: Option<Arc<str>>,
}

impl UserIndex<super::NoIndex> {
    pub(super) fn none() -> Self {
        UserIndex {
            store: super::NoIndex,
            user_key: None,
        }
    }
}

impl<I> UserIndex<I> {
    pub(super) fn new(store: I, user_key: Arc<str>) -> Self {
        UserIndex {
            store,
            user_key: Some(user_key),
        }
    }

    pub(super) fn store(&self) -> &I {
        &self.store
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

    /// Notes in a new session's data when it was created (the index reads it on every save).
    pub(super) fn stamp_created(&self, record: &mut Record, now: UnixMillis) {
        if self.is_on() {
            record.data.insert(CREATED_KEY.to_owned(), Value::from(now));
        }
    }
}

impl<I: Store<String, SessionInfo>> UserIndex<I> {
    /// Writes (or refreshes) the entry of `record` if it has a user; `ttl` is the record's.
    pub(super) async fn write(
        &self,
        record: &Record,
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<()> {
        let Some(user) = self.user_of(record) else {
            return Ok(());
        };
        let info = info_of(record, now);
        let key = entry_key(&user, &info.handle);
        self.store
            .put(key, info, Some(ttl.saturating_add(INDEX_TTL_SLACK)))
            .await
    }

    /// Removes the entry of a deleted `record`, if it had a user.
    pub(super) async fn remove(&self, record: &Record) -> Result<()> {
        let Some(user) = self.user_of(record) else {
            return Ok(());
        };
        let key = entry_key(&user, &SessionHandle::of(&record.id));
        self.store.delete(&key).await.map(|_| ())
    }
}

impl<I> fmt::Debug for UserIndex<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserIndex")
            .field("store", &std::any::type_name::<I>())
            .field("user_key", &self.user_key)
            .finish()
    }
}

/// The index entry for `record`, seen at `now`.
fn info_of(record: &Record, now: UnixMillis) -> SessionInfo {
    let created = record
        .data
        .get(CREATED_KEY)
        .and_then(Value::as_u64)
        .unwrap_or(now);
    let user_agent = record
        .data
        .get(USER_AGENT_KEY)
        .and_then(Value::as_str)
        .map(str::to_owned);
    SessionInfo::new(&record.id, created, now, user_agent)
}

/// `user` with `%` and `:` percent-escaped, so no user's prefix is a prefix of another's
/// (`a:` never matches `a%3Ab:...`, the entries of user `a:b`).
fn escape_user(user: &str) -> String {
    user.replace('%', "%25").replace(':', "%3A")
}

/// The prefix every entry of `user` starts with.
pub(super) fn user_prefix(user: &str) -> String {
    format!("{}:", escape_user(user))
}

/// The key of `user`'s entry for the session named `handle`.
pub(super) fn entry_key(user: &str, handle: &SessionHandle) -> String {
    format!("{}{handle}", user_prefix(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_user_prefix_is_a_prefix_of_another_users_keys() {
        let users = ["a", "a:b", "a%3Ab", "a%", "%", ":", "", "a:"];
        let handle = SessionHandle::of(&tower_sessions_core::session::Id::default());
        for user in users {
            for other in users.iter().filter(|o| **o != user) {
                let key = entry_key(other, &handle);
                assert!(
                    !key.starts_with(&user_prefix(user)),
                    "{user:?} matches {other:?}'s key {key:?}"
                );
            }
        }
    }
}
