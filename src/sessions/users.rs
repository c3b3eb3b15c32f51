//! Every device of a user: list and revoke a user's sessions through the user index.

use tower_sessions_core::session::{Id, Record};

use super::{
    index::{entry_key, user_prefix},
    SessionHandle, SessionInfo, StrataSessionStore,
};
use crate::{
    error::{Error, Result},
    store::Store,
};

/// One of a user's sessions, checked against its record.
struct Entry {
    /// The entry's key in the index store.
    key: String,
    info: SessionInfo,
    /// The session's key in the session store.
    session: String,
}

impl<S, I> StrataSessionStore<S, I>
where
    S: Store<String, Record> + 'static,
    I: Store<String, SessionInfo> + 'static,
{
    /// The live sessions of `user`, most recently seen first.
    ///
    /// Costs one prefix listing of the index (see `Store::keys_with_prefix` for what that costs
    /// per store) and two batched reads. Entries whose session is gone, expired or now belongs
    /// to someone else are left out and removed from the index.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>> {
        let mut infos: Vec<SessionInfo> = self
            .live_entries(user)
            .await?
            .into_iter()
            .map(|entry| entry.info.public())
            .collect();
        infos.sort_by_key(|info| std::cmp::Reverse(info.last_seen));
        Ok(infos)
    }

    /// Signs out the session of `user` named `handle`; true if a live session was removed.
    /// A handle of another user's session removes nothing. A request of that session that is
    /// still in flight cannot save it back.
    pub async fn revoke(&self, user: &str, handle: &SessionHandle) -> Result<bool> {
        self.require_index()?;
        let key = entry_key(user, handle);
        let Some(info) = self.index.store().get(&key).await? else {
            return Ok(false);
        };
        let removed = match info.session_key() {
            Some(session) if self.belongs_to(session, user).await? => {
                self.store.delete(&session.to_owned()).await?
            }
            _ => false,
        };
        self.index.store().delete(&key).await?;
        Ok(removed)
    }

    /// "Sign out everywhere": removes every live session of `user`; returns how many.
    pub async fn revoke_all(&self, user: &str) -> Result<usize> {
        self.revoke_where(user, |_| true).await
    }

    /// "Sign out every other device": removes every live session of `user` but `keep` (the
    /// current request's `session.id()`); returns how many.
    pub async fn revoke_all_except(&self, user: &str, keep: &Id) -> Result<usize> {
        let keep = keep.to_string();
        self.revoke_where(user, |session| session != keep).await
    }

    /// Removes the live sessions of `user` whose session key `pick` accepts, record first (so a
    /// failure never leaves a live session without its entry).
    async fn revoke_where(&self, user: &str, pick: impl Fn(&str) -> bool) -> Result<usize> {
        let mut removed = 0;
        for entry in self.live_entries(user).await? {
            if !pick(&entry.session) {
                continue;
            }
            removed += usize::from(self.store.delete(&entry.session).await?);
            self.index.store().delete(&entry.key).await?;
        }
        Ok(removed)
    }

    /// `user`'s index entries whose session is live and still theirs; removes the others.
    async fn live_entries(&self, user: &str) -> Result<Vec<Entry>> {
        self.require_index()?;
        let keys = self
            .index
            .store()
            .keys_with_prefix(&user_prefix(user))
            .await?;
        let infos = self.index.store().get_many(&keys).await?;
        let mut entries = Vec::with_capacity(keys.len());
        let mut stale = Vec::new();
        for (key, info) in keys.into_iter().zip(infos) {
            match info.and_then(|info| Some((info.session_key()?.to_owned(), info))) {
                Some((session, info)) => entries.push(Entry { key, info, session }),
                None => stale.push(key),
            }
        }
        let sessions: Vec<String> = entries.iter().map(|e| e.session.clone()).collect();
        let records = self.store.get_many(&sessions).await?;
        let mut live = Vec::with_capacity(entries.len());
        for (entry, record) in entries.into_iter().zip(records) {
            if record.is_some_and(|r| self.is_live_session_of(r, &entry.session, user)) {
                live.push(entry);
            } else {
                stale.push(entry.key);
            }
        }
        self.index.store().delete_many(&stale).await?;
        Ok(live)
    }

    /// True if `record`, stored under `session`, is live and signed in as `user`.
    fn is_live_session_of(&self, record: Record, session: &str, user: &str) -> bool {
        record.id.to_string() == session
            && self.ttl_of(&record).is_some()
            && self.index.user_of(&record).as_deref() == Some(user)
    }

    /// True if the record under `session` is live and signed in as `user`.
    async fn belongs_to(&self, session: &str, user: &str) -> Result<bool> {
        let key = session.to_owned();
        Ok(self
            .store
            .get(&key)
            .await?
            .is_some_and(|r| self.is_live_session_of(r, session, user)))
    }

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
