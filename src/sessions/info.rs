//! What the user index keeps per session: [`SessionInfo`], named by a [`SessionHandle`].

use std::{fmt, future::Future, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions_core::session::Id;

use crate::{
    error::{Error, Result},
    store::Store,
    time::UnixMillis,
};

/// Hex digits in a handle: 128 bits of SHA-256, as unguessable as the session id itself.
const HANDLE_HEX_LEN: usize = 32;

/// An opaque, non-secret name for one session, safe to show on a page and post back in a form
/// to revoke that session.
///
/// It is derived from the session id with SHA-256, so every node computes the same handle
/// without sharing state, and knowing a handle tells nothing about the id (the id is a bearer
/// secret; the handle is not). It prints and parses as 32 lowercase hex digits.
///
/// ```
/// use strata::sessions::SessionHandle;
/// let handle: SessionHandle = "0123456789abcdef0123456789abcdef".parse()?;
/// assert_eq!(handle.to_string(), "0123456789abcdef0123456789abcdef");
/// assert!("not a handle".parse::<SessionHandle>().is_err());
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionHandle(String);

impl SessionHandle {
    /// The handle of the session `id`.
    pub fn of(id: &Id) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"strata session handle\0");
        hasher.update(id.to_string().as_bytes());
        let digest = hasher.finalize();
        let hex = digest[..HANDLE_HEX_LEN / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        SessionHandle(hex)
    }

    /// The handle as text (what `Display` prints).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SessionHandle {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if s.len() != HANDLE_HEX_LEN || !s.chars().all(is_hex) {
            return Err(Error::InvalidSessionHandle {
                reason: format!("expected {HANDLE_HEX_LEN} lowercase hex digits"),
            });
        }
        Ok(SessionHandle(s.to_owned()))
    }
}

/// One session of a user, as [`StrataSessionStore::sessions_of`] lists it: what a "your
/// devices" page shows.
///
/// The index stores this type, together with the session id it needs to revoke the session. The
/// id never leaves the crate: it is absent from what `sessions_of` returns, from `Debug`, and so
/// from anything a page serializes.
///
/// [`StrataSessionStore::sessions_of`]: super::StrataSessionStore::sessions_of
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's non-secret name (post it back to `revoke`).
    pub handle: SessionHandle,
    /// When the session id was created (sign-in, or `cycle_id`).
    pub created: OffsetDateTime,
    /// When the session was last saved (every request with `with_always_save(true)`).
    pub last_seen: OffsetDateTime,
    /// What the app stored under [`USER_AGENT_KEY`](super::USER_AGENT_KEY), if anything.
    pub user_agent: Option<String>,
    /// The session id: stored in the index, stripped before an info is handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

impl SessionInfo {
    /// An index entry for session `id`.
    pub(crate) fn new(
        id: &Id,
        created: UnixMillis,
        last_seen: UnixMillis,
        user_agent: Option<String>,
    ) -> Self {
        SessionInfo {
            handle: SessionHandle::of(id),
            created: datetime(created),
            last_seen: datetime(last_seen),
            user_agent,
            session: Some(id.to_string()),
        }
    }

    /// The session id (the store's key) this entry points at, if it has one.
    pub(crate) fn session_key(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// This info without the session id, for handing out.
    pub(crate) fn public(mut self) -> Self {
        self.session = None;
        self
    }
}

impl fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInfo")
            .field("handle", &self.handle)
            .field("created", &self.created)
            .field("last_seen", &self.last_seen)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

/// Unix milliseconds as a UTC date (the epoch for a value out of `time`'s range).
fn datetime(ms: UnixMillis) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The index of a [`StrataSessionStore`](super::StrataSessionStore) without a user index: a
/// store that keeps nothing. `with_user_index` replaces it with a real one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIndex;

impl Store<String, SessionInfo> for NoIndex {
    fn put(
        &self,
        _key: String,
        _value: SessionInfo,
        _ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }

    fn get(&self, _key: &String) -> impl Future<Output = Result<Option<SessionInfo>>> + Send {
        std::future::ready(Ok(None))
    }

    fn delete(&self, _key: &String) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(Ok(false))
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<String>>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}
