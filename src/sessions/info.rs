//! What the user index keeps per session: [`SessionInfo`], named by a [`SessionHandle`].

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions_core::session::Id;

use crate::{
    error::{Error, Result},
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
                reason: format!("expected {HANDLE_HEX_LEN} lowercase hex digits").into(),
            });
        }
        Ok(SessionHandle(s.to_owned()))
    }
}

/// One session of a user, as [`StrataSessionStore::sessions_of`] lists it: what a "your
/// devices" page shows.
///
/// It is read from the session's record (which the index names in the user's
/// [`SessionRoster`](super::SessionRoster)); the session id is not part of it, so nothing a page
/// serializes or logs from it can leak the id.
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
        }
    }
}

impl fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInfo")
            .field("handle", &self.handle)
            .field("created", &self.created)
            .field("last_seen", &self.last_seen)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// Unix milliseconds as a UTC date (the epoch for a value out of `time`'s range).
fn datetime(ms: UnixMillis) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
