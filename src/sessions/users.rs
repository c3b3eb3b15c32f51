//! Every device of a user: list and revoke a user's sessions through their roster.
//!
//! Each operation reads one roster (one key) and the records it names (one batched read), so it
//! costs O(sessions of that user) on every store, whatever the total number of sessions.

use tower_sessions_core::session::{Id, Record};

use super::{
    index::{info_of, roster_key},
    store::handle_of_key,
    SessionHandle, SessionInfo, SessionRoster, StrataSessionStore,
};
use crate::{
    error::{Error, Result},
    store::Store,
};

/// How many times a roster update re-reads the roster after another writer changed it first.
const MAX_ROSTER_ATTEMPTS: usize = 32;

impl<S, I> StrataSessionStore<S, I>
where
    S: Store<String, Record> + 'static,
    I: Store<String, SessionRoster> + 'static,
{
    /// The live sessions of `user`, most recently seen first.
    ///
    /// Costs one read of the user's roster and one batched read of the records it names:
    /// O(sessions of that user) on every store. Sessions that are gone or expired are left out
    /// and pruned from the roster; a session now signed in as someone else is left out.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>> {
        let now = self.clock.now_ms();
        let mut infos: Vec<SessionInfo> = self
            .live_sessions(user)
            .await?
            .iter()
            .map(|(_, record)| info_of(record, now))
            .collect();
        infos.sort_by_key(|info| std::cmp::Reverse(info.last_seen));
        Ok(infos)
    }

    /// Signs out the session of `user` named `handle`; true if a live session was removed.
    /// A handle of another user's session removes nothing. A request of that session that is
    /// still in flight cannot save it back.
    pub async fn revoke(&self, user: &str, handle: &SessionHandle) -> Result<bool> {
        let picked: Vec<String> = self
            .live_sessions(user)
            .await?
            .into_iter()
            .filter(|(_, record)| SessionHandle::of(&record.id) == *handle)
            .map(|(session, _)| session)
            .collect();
        Ok(self.remove_sessions(user, &picked).await? > 0)
    }

    /// "Sign out everywhere": removes every live session of `user`; returns how many.
    ///
    /// A sign-in racing it is either removed or, if it was added to the user's roster after
    /// this call read the roster, listed by the next `sessions_of` (and removed by the next
    /// `revoke_all`); a session is never live and unlisted once its `create` has returned.
    pub async fn revoke_all(&self, user: &str) -> Result<usize> {
        self.revoke_where(user, |_| true).await
    }

    /// "Sign out every other device": removes every live session of `user` but `keep` (the
    /// current request's `session.id()`); returns how many.
    pub async fn revoke_all_except(&self, user: &str, keep: &Id) -> Result<usize> {
        let keep = keep.to_string();
        self.revoke_where(user, |session| session != keep).await
    }

    /// Removes the live sessions of `user` whose session key `pick` accepts.
    async fn revoke_where(&self, user: &str, pick: impl Fn(&str) -> bool) -> Result<usize> {
        let picked: Vec<String> = self
            .live_sessions(user)
            .await?
            .into_iter()
            .map(|(session, _)| session)
            .filter(|session| pick(session))
            .collect();
        self.remove_sessions(user, &picked).await
    }

    /// Deletes the records of `sessions` (one batched delete), then their names from `user`'s
    /// roster (records first, so a failure never leaves a live session unlisted); returns how
    /// many records were removed.
    async fn remove_sessions(&self, user: &str, sessions: &[String]) -> Result<usize> {
        if sessions.is_empty() {
            return Ok(0);
        }
        let removed = self.store.delete_many(sessions).await?;
        self.unroster(user, sessions).await?;
        Ok(removed)
    }

    /// `user`'s live sessions (key and record) named in their roster; prunes the dead ones.
    async fn live_sessions(&self, user: &str) -> Result<Vec<(String, Record)>> {
        self.require_index()?;
        let Some(roster) = self.index.store().get(&roster_key(user)).await? else {
            return Ok(Vec::new());
        };
        let sessions = roster.sessions().to_vec();
        let records = read_each(&self.store, &sessions).await?;
        let mut live = Vec::with_capacity(sessions.len());
        let mut dead = Vec::new();
        for (session, record) in sessions.into_iter().zip(records) {
            match record.filter(|r| self.is_live(r, &session)) {
                Some(record) if self.index.user_of(&record).as_deref() == Some(user) => {
                    live.push((session, record));
                }
                // Now another user's: kept, as a request of this user still in flight may save
                // it back as theirs (see the index invariants).
                Some(_) => {}
                None => dead.push(session),
            }
        }
        self.unroster(user, &dead).await?;
        Ok(live)
    }

    /// True if `record`, stored under `session`, is that session's and has not expired.
    fn is_live(&self, record: &Record, session: &str) -> bool {
        record.id.to_string() == session && self.ttl_of(record).is_some()
    }

    /// Makes `user`'s roster name `session` and live at least until `until` (Unix ms). If that
    /// takes the roster over the limit, first drops the sessions that are gone, then signs out
    /// the oldest.
    pub(super) async fn enroll(&self, user: &str, session: &str, until: u64) -> Result<()> {
        let key = roster_key(user);
        for _ in 0..MAX_ROSTER_ATTEMPTS {
            let current = self.index.store().get(&key).await?;
            if current.as_ref().is_some_and(|r| r.covers(session, until)) {
                return Ok(());
            }
            let mut next = current.clone().unwrap_or_default().with(session, until);
            if next.len() > self.index.max_sessions() {
                next = self.make_room(next, user, session).await?;
            }
            let ttl = next.ttl(self.clock.now_ms());
            if self
                .index
                .store()
                .compare_and_set(key.clone(), current, next, Some(ttl))
                .await?
            {
                return Ok(());
            }
        }
        Err(contended("adding a session to a user's roster"))
    }

    /// `roster` within the limit: without its dead sessions, then without its oldest ones
    /// (signed out if they are still this roster's user's) — never without `keep`.
    async fn make_room(
        &self,
        roster: SessionRoster,
        user: &str,
        keep: &str,
    ) -> Result<SessionRoster> {
        let sessions = roster.sessions().to_vec();
        let records = read_each(&self.store, &sessions).await?;
        let mut dead = Vec::new();
        let mut theirs = std::collections::HashSet::new();
        for (session, record) in sessions.into_iter().zip(records) {
            match record.filter(|r| self.is_live(r, &session)) {
                Some(r) if self.index.user_of(&r).as_deref() == Some(user) => {
                    theirs.insert(session);
                }
                Some(_) => {}
                None if session == keep => {}
                None => dead.push(session),
            }
        }
        let mut roster = roster.without(&dead);
        let mut evicted = Vec::new();
        while roster.len() > self.index.max_sessions() {
            match roster.pop_oldest_except(keep) {
                // Another user's session (see the index invariants) only leaves this roster.
                Some(oldest) if theirs.contains(&oldest) => evicted.push(oldest),
                Some(_) => {}
                None => break,
            }
        }
        if !evicted.is_empty() {
            tracing::info!(
                count = evicted.len(),
                "a sign-in went over the user's session limit; signing out their oldest sessions"
            );
            self.store.delete_many(&evicted).await?;
        }
        Ok(roster)
    }

    /// Removes `gone` from `user`'s roster (a no-op if it names none of them).
    pub(super) async fn unroster(&self, user: &str, gone: &[String]) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let key = roster_key(user);
        for _ in 0..MAX_ROSTER_ATTEMPTS {
            let Some(current) = self.index.store().get(&key).await? else {
                return Ok(());
            };
            let next = current.clone().without(gone);
            if next == current {
                return Ok(());
            }
            let ttl = next.ttl(self.clock.now_ms());
            if self
                .index
                .store()
                .compare_and_set(key.clone(), Some(current), next, Some(ttl))
                .await?
            {
                return Ok(());
            }
        }
        Err(contended("removing sessions from a user's roster"))
    }

    /// Fails unless `with_user_index` turned the index on.
    fn require_index(&self) -> Result<()> {
        if self.index.is_on() {
            return Ok(());
        }
        Err(Error::config(
            "user_index",
            "listing or revoking a user's sessions needs the user index: build the store with `with_user_index`",
        ))
    }
}

/// The error for a roster that other writers kept changing.
fn contended(what: &str) -> Error {
    Error::backend(
        what,
        format!(
            "the roster changed under {MAX_ROSTER_ATTEMPTS} attempts in a row (many sign-ins or revokes of one user at once); retry the request"
        ),
    )
}

/// The records under `keys`, batched; if one does not decode (a tampered or outdated record),
/// read them one by one and count each undecodable one as absent, so one bad record never hides
/// a user's other sessions. The caller then prunes the absent ones from the roster.
async fn read_each<St>(store: &St, keys: &[String]) -> Result<Vec<Option<Record>>>
where
    St: Store<String, Record>,
{
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    match store.get_many(keys).await {
        Err(Error::Decode { .. }) => {}
        other => return other,
    }
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        values.push(match store.get(key).await {
            Err(Error::Decode(e)) => {
                let (entry, reason) = (handle_of_key(&e.key), &e.reason);
                tracing::warn!(%entry, %reason, "a session record does not decode; treating it as absent");
                None
            }
            other => other?,
        });
    }
    Ok(values)
}
