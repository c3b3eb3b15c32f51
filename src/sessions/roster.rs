//! [`SessionRoster`]: what the user index keeps per user — the ids of that user's sessions.

use std::{future::Future, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{error::Result, store::Store, time::UnixMillis};

/// How long a roster that names no session is kept (milliseconds).
const EMPTY_ROSTER_TTL_MS: UnixMillis = 60_000;

/// One user's entry in the user index: the ids of that user's sessions (oldest sign-in first)
/// and the time until which the entry must live (the latest expiry date of those sessions it
/// was told about, with slack). It is kept under the user id in the index store given to
/// [`with_user_index`](super::StrataSessionStore::with_user_index), and changed only with
/// [`Store::compare_and_set`], so concurrent sign-ins and revokes never lose each other's
/// changes.
///
/// Its content is private (it names session ids, which are bearer secrets); what a page needs
/// comes from [`sessions_of`](super::StrataSessionStore::sessions_of). `Debug` shows only the
/// number of sessions.
///
/// ```
/// use strata::{sessions::{SessionRoster, StrataSessionStore}, MemoryStore, Store};
/// use tower_sessions_core::{session::{Id, Record}, SessionStore};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sessions = StrataSessionStore::new(MemoryStore::<String, Record>::builder().build()?)
///     .with_user_index(MemoryStore::<String, SessionRoster>::builder().build()?, "user_id");
/// let mut record = Record {
///     id: Id::default(),
///     data: [("user_id".to_owned(), "ada".into())].into(),
///     expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
/// };
/// sessions.create(&mut record).await?;
/// let roster = Store::get(sessions.index_store(), &"ada".to_string()).await?;
/// assert_eq!(roster.map(|r| r.len()), Some(1));
/// # Ok(()) }
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRoster {
    /// Unix milliseconds until which this roster must live.
    until: UnixMillis,
    /// Session ids (the session store's keys), oldest first.
    sessions: Vec<String>,
}

impl SessionRoster {
    /// How many sessions the roster names (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True if the roster names no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session ids, oldest first.
    pub(super) fn sessions(&self) -> &[String] {
        &self.sessions
    }

    /// True if it names `session` and lives at least until `until`.
    pub(super) fn covers(&self, session: &str, until: UnixMillis) -> bool {
        self.until >= until && self.sessions.iter().any(|s| s == session)
    }

    /// This roster naming `session` too, living at least until `until`.
    pub(super) fn with(mut self, session: &str, until: UnixMillis) -> Self {
        if !self.sessions.iter().any(|s| s == session) {
            self.sessions.push(session.to_owned());
        }
        self.until = self.until.max(until);
        self
    }

    /// This roster without the sessions in `gone`.
    pub(super) fn without(mut self, gone: &[String]) -> Self {
        self.sessions.retain(|s| !gone.contains(s));
        self
    }

    /// Drops the oldest session other than `keep`; returns its id.
    pub(super) fn pop_oldest_except(&mut self, keep: &str) -> Option<String> {
        let at = self.sessions.iter().position(|s| s != keep)?;
        Some(self.sessions.remove(at))
    }

    /// The TTL to store it with at `now` (at least one millisecond): until `until`, or for an
    /// empty roster at most [`EMPTY_ROSTER_TTL_MS`] (it names no session it must outlive, so a
    /// signed-out user leaves nothing behind for long; a sign-in re-extends it).
    pub(super) fn ttl(&self, now: UnixMillis) -> Duration {
        let mut left = self.until.saturating_sub(now);
        if self.sessions.is_empty() {
            left = left.min(EMPTY_ROSTER_TTL_MS);
        }
        Duration::from_millis(left.max(1))
    }
}

impl std::fmt::Debug for SessionRoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRoster")
            .field("sessions", &self.sessions.len())
            .field("until", &self.until)
            .finish()
    }
}

/// The index of a [`StrataSessionStore`](super::StrataSessionStore) without a user index: a
/// store that keeps nothing. `with_user_index` replaces it with a real one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIndex;

impl Store<String, SessionRoster> for NoIndex {
    fn put(
        &self,
        _key: String,
        _value: SessionRoster,
        _ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }

    fn get(&self, _key: &String) -> impl Future<Output = Result<Option<SessionRoster>>> + Send {
        std::future::ready(Ok(None))
    }

    fn delete(&self, _key: &String) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(Ok(false))
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<String>>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}
