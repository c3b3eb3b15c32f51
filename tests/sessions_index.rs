//! Every device of a user: the sessions adapter's user index on every store — listing, revoking
//! one, all, all but the current one — and its consistency when saves race revokes, users
//! change, and the index store fails.
#![cfg(all(feature = "sessions", feature = "disk"))]

mod support;

use std::{collections::HashMap, time::Duration};

use proptest::prelude::*;
use strata::{
    sessions::{SessionHandle, SessionInfo, StrataSessionStore, CREATED_KEY, USER_AGENT_KEY},
    DiskDb, Error, ManualClock, MemoryStore, Store,
};
use support::fault_store::{FaultStore, Op};
use tower_sessions::{
    cookie::time,
    session::{Id, Record},
    SessionStore,
};

const USER_KEY: &str = "user_id";

/// A record of a session signed in as `user` (none: anonymous) from `user_agent`.
fn record(user: Option<serde_json::Value>, user_agent: &str) -> Record {
    let mut data = HashMap::from([(USER_AGENT_KEY.to_owned(), user_agent.into())]);
    if let Some(user) = user {
        data.insert(USER_KEY.to_owned(), user);
    }
    Record {
        id: Id::default(),
        data,
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
    }
}

async fn sign_in<St: SessionStore>(sessions: &St, user: &str, user_agent: &str) -> Record {
    let mut record = record(Some(user.into()), user_agent);
    sessions.create(&mut record).await.unwrap();
    record
}

fn handles(infos: &[SessionInfo]) -> Vec<SessionHandle> {
    let mut handles: Vec<_> = infos.iter().map(|i| i.handle.clone()).collect();
    handles.sort();
    handles
}

fn handles_of(records: &[&Record]) -> Vec<SessionHandle> {
    let mut handles: Vec<_> = records.iter().map(|r| SessionHandle::of(&r.id)).collect();
    handles.sort();
    handles
}

/// Lists a user's devices with their details; revokes one, all but one, all; a revoked session
/// cannot be saved back and its entry does not come back.
async fn lists_and_revokes<S, I>(sessions: &StrataSessionStore<S, I>)
where
    S: Store<String, Record> + Clone + 'static,
    I: Store<String, SessionInfo> + Clone + 'static,
{
    let firefox = sign_in(sessions, "ada", "Firefox").await;
    let safari = sign_in(sessions, "ada", "Safari").await;
    let curl = sign_in(sessions, "ada", "curl").await;
    let bob = sign_in(sessions, "bob", "Edge").await;
    let ada = sessions.sessions_of("ada").await.unwrap();
    assert_eq!(handles(&ada), handles_of(&[&firefox, &safari, &curl]));
    let firefox_info = ada
        .iter()
        .find(|i| i.handle == SessionHandle::of(&firefox.id))
        .unwrap();
    assert_eq!(firefox_info.user_agent.as_deref(), Some("Firefox"));
    assert!(firefox_info.created <= firefox_info.last_seen);
    assert_eq!(
        handles(&sessions.sessions_of("bob").await.unwrap()),
        handles_of(&[&bob])
    );

    // Another user's handle revokes nothing.
    assert!(!sessions
        .revoke("bob", &SessionHandle::of(&firefox.id))
        .await
        .unwrap());
    assert_eq!(sessions.sessions_of("ada").await.unwrap().len(), 3);

    // Revoke one device while one of its requests is in flight: the request cannot save it back.
    let in_flight = sessions.load(&firefox.id).await.unwrap().unwrap();
    assert!(sessions
        .revoke("ada", &SessionHandle::of(&firefox.id))
        .await
        .unwrap());
    sessions.save(&in_flight).await.unwrap();
    assert_eq!(sessions.load(&firefox.id).await.unwrap(), None);
    assert_eq!(
        handles(&sessions.sessions_of("ada").await.unwrap()),
        handles_of(&[&safari, &curl])
    );
    assert!(!sessions
        .revoke("ada", &SessionHandle::of(&firefox.id))
        .await
        .unwrap());

    // "Sign out every other device", then everywhere.
    assert_eq!(
        sessions.revoke_all_except("ada", &safari.id).await.unwrap(),
        1
    );
    assert_eq!(sessions.load(&curl.id).await.unwrap(), None);
    assert_eq!(
        handles(&sessions.sessions_of("ada").await.unwrap()),
        handles_of(&[&safari])
    );
    let in_flight = sessions.load(&safari.id).await.unwrap().unwrap();
    assert_eq!(sessions.revoke_all("ada").await.unwrap(), 1);
    sessions.save(&in_flight).await.unwrap();
    assert_eq!(sessions.load(&safari.id).await.unwrap(), None);
    assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
    assert!(sessions
        .index_store()
        .keys_with_prefix("ada:")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        sessions.sessions_of("bob").await.unwrap().len(),
        1,
        "bob untouched"
    );
}

/// No user's listing reaches another's, whatever characters the ids hold (`:` separates the
/// user from the handle; `*?[]\` are glob characters for Redis `SCAN MATCH`).
async fn users_never_see_each_other<S, I>(sessions: &StrataSessionStore<S, I>)
where
    S: Store<String, Record> + Clone + 'static,
    I: Store<String, SessionInfo> + Clone + 'static,
{
    let users = [
        "u", "u:b", "u%3Ab", "u*", "u?", "u[b]", "u\\", "u%", ":", "ü",
    ];
    let mut records = Vec::new();
    for user in users {
        records.push(sign_in(sessions, user, "any").await);
    }
    for (user, record) in users.iter().zip(&records) {
        let listed = sessions.sessions_of(user).await.unwrap();
        assert_eq!(handles(&listed), handles_of(&[record]), "user {user:?}");
    }
    assert_eq!(sessions.revoke_all("u").await.unwrap(), 1);
    assert_eq!(sessions.sessions_of("u:b").await.unwrap().len(), 1);
}

/// A number as the user id is listed under its decimal form; an anonymous session is not indexed.
async fn numeric_and_anonymous_users<S, I>(sessions: &StrataSessionStore<S, I>)
where
    S: Store<String, Record> + Clone + 'static,
    I: Store<String, SessionInfo> + Clone + 'static,
{
    let mut numeric = record(Some(42.into()), "any");
    sessions.create(&mut numeric).await.unwrap();
    assert_eq!(
        handles(&sessions.sessions_of("42").await.unwrap()),
        handles_of(&[&numeric])
    );
    let before = sessions.index_store().keys().await.unwrap().len();
    let mut anonymous = record(None, "any");
    sessions.create(&mut anonymous).await.unwrap();
    sessions.save(&anonymous).await.unwrap();
    assert_eq!(sessions.index_store().keys().await.unwrap().len(), before);
}

/// Signing in as someone else on the same session (no `cycle_id`) moves it between users; the
/// old user's entry is dropped by their next listing. Deleting a session drops its entry.
async fn a_user_change_moves_the_session<S, I>(sessions: &StrataSessionStore<S, I>)
where
    S: Store<String, Record> + Clone + 'static,
    I: Store<String, SessionInfo> + Clone + 'static,
{
    let mut record = sign_in(sessions, "carol", "any").await;
    record.data.insert(USER_KEY.into(), "dave".into());
    sessions.save(&record).await.unwrap();
    assert!(sessions.sessions_of("carol").await.unwrap().is_empty());
    assert!(sessions
        .index_store()
        .keys_with_prefix("carol:")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        handles(&sessions.sessions_of("dave").await.unwrap()),
        handles_of(&[&record])
    );
    assert_eq!(
        sessions.revoke_all("carol").await.unwrap(),
        0,
        "not carol's any more"
    );

    sessions.delete(&record.id).await.unwrap();
    assert!(sessions.sessions_of("dave").await.unwrap().is_empty());
    assert!(sessions
        .index_store()
        .keys_with_prefix("dave:")
        .await
        .unwrap()
        .is_empty());
}

macro_rules! index_cases {
    ($open:expr) => {
        #[tokio::test]
        async fn lists_and_revokes() {
            let (_keep, sessions) = $open("lr").await;
            super::lists_and_revokes(&sessions).await;
        }

        #[tokio::test]
        async fn users_never_see_each_other() {
            let (_keep, sessions) = $open("un").await;
            super::users_never_see_each_other(&sessions).await;
        }

        #[tokio::test]
        async fn numeric_and_anonymous_users() {
            let (_keep, sessions) = $open("na").await;
            super::numeric_and_anonymous_users(&sessions).await;
        }

        #[tokio::test]
        async fn a_user_change_moves_the_session() {
            let (_keep, sessions) = $open("uc").await;
            super::a_user_change_moves_the_session(&sessions).await;
        }
    };
}

type MemorySessions =
    StrataSessionStore<MemoryStore<String, Record>, MemoryStore<String, SessionInfo>>;

fn memory_sessions(clock: &ManualClock) -> MemorySessions {
    StrataSessionStore::new(MemoryStore::builder().clock(clock.clock()).build().unwrap())
        .with_clock(clock.clock())
        .with_user_index(
            MemoryStore::builder().clock(clock.clock()).build().unwrap(),
            USER_KEY,
        )
}

mod memory {
    use super::*;

    async fn open(_: &str) -> (ManualClock, MemorySessions) {
        let clock = ManualClock::new();
        let sessions = memory_sessions(&clock);
        (clock, sessions)
    }

    index_cases!(open);
}

mod disk {
    use strata::DiskStore;

    use super::*;

    type Disk = StrataSessionStore<DiskStore<String, Record>, DiskStore<String, SessionInfo>>;

    async fn open(_: &str) -> ((tempfile::TempDir, DiskDb), Disk) {
        let dir = tempfile::tempdir().unwrap();
        let db = DiskDb::builder().dir(dir.path().join("db")).open().unwrap();
        let sessions = StrataSessionStore::new(db.store("sessions").unwrap())
            .with_user_index(db.store("session_index").unwrap(), USER_KEY);
        ((dir, db), sessions)
    }

    index_cases!(open);

    /// The index lives in the data directory: a restart keeps every device list.
    #[tokio::test]
    async fn the_index_survives_a_restart() {
        let ((dir, db), sessions) = open("").await;
        let record = sign_in(&sessions, "ada", "Firefox").await;
        drop(sessions);
        drop(db);
        let db = DiskDb::builder().dir(dir.path().join("db")).open().unwrap();
        let sessions: Disk = StrataSessionStore::new(db.store("sessions").unwrap())
            .with_user_index(db.store("session_index").unwrap(), USER_KEY);
        let listed = sessions.sessions_of("ada").await.unwrap();
        assert_eq!(handles(&listed), handles_of(&[&record]));
        assert_eq!(listed[0].user_agent.as_deref(), Some("Firefox"));
    }
}

#[cfg(feature = "redis")]
mod redis {
    use strata::RedisStore;

    use super::*;
    use crate::support::RedisServer;

    type Redis = StrataSessionStore<RedisStore<String, Record>, RedisStore<String, SessionInfo>>;

    async fn open(_: &str) -> (RedisServer, Redis) {
        let server = RedisServer::start();
        let url = server.url();
        let records = RedisStore::builder()
            .url(&url)
            .namespace("sessions")
            .build();
        let index = RedisStore::builder()
            .url(&url)
            .namespace("session_index")
            .build();
        let sessions = StrataSessionStore::new(records.await.unwrap())
            .with_user_index(index.await.unwrap(), USER_KEY);
        (server, sessions)
    }

    index_cases!(open);

    /// A tampered index entry and a tampered session record (garbage bytes in Redis) neither
    /// fail the listing nor hide the user's other sessions; they are dropped from the index,
    /// and the logs name no session id.
    #[tokio::test]
    async fn garbage_entries_are_skipped_and_removed() {
        let (logs, _guard) = crate::support::log_capture::start();
        let (server, sessions) = open("").await;
        let healthy = sign_in(&sessions, "ada", "Firefox").await;
        let tampered = sign_in(&sessions, "ada", "Safari").await;
        server.raw(&["SET", &format!("sessions:{}", tampered.id), "garbage"]);
        let bogus = format!("session_index:ada:{}", SessionHandle::of(&Id::default()));
        server.raw(&["SET", &bogus, "garbage"]);
        assert_eq!(
            sessions
                .index_store()
                .keys_with_prefix("ada:")
                .await
                .unwrap()
                .len(),
            3
        );

        let listed = sessions.sessions_of("ada").await.unwrap();
        assert_eq!(handles(&listed), handles_of(&[&healthy]));
        assert_eq!(
            sessions
                .index_store()
                .keys_with_prefix("ada:")
                .await
                .unwrap()
                .len(),
            1
        );
        let logs = logs.text();
        assert!(logs.contains("does not decode"), "{logs}");
        assert!(!logs.contains(&tampered.id.to_string()), "{logs}");
    }
}

#[cfg(feature = "redis")]
mod redis_cluster {
    //! The shared three-master cluster: a user's entries hash to every slot, so listing and
    //! reading them crosses nodes.
    use strata::RedisStore;

    use super::*;

    type Redis = StrataSessionStore<RedisStore<String, Record>, RedisStore<String, SessionInfo>>;

    async fn open(case: &str) -> ((), Redis) {
        let urls = crate::support::redis_cluster::shared().urls();
        let unique = format!("{case}{}", std::process::id());
        let records = RedisStore::builder()
            .cluster(urls.clone())
            .namespace(format!("s{unique}"))
            .build();
        let index = RedisStore::builder()
            .cluster(urls)
            .namespace(format!("i{unique}"))
            .build();
        let sessions = StrataSessionStore::new(records.await.unwrap())
            .with_user_index(index.await.unwrap(), USER_KEY);
        ((), sessions)
    }

    index_cases!(open);
}

type Faulty =
    StrataSessionStore<MemoryStore<String, Record>, FaultStore<MemoryStore<String, SessionInfo>>>;

fn faulty() -> Faulty {
    StrataSessionStore::new(MemoryStore::builder().build().unwrap()).with_user_index(
        FaultStore::new(MemoryStore::builder().build().unwrap()),
        USER_KEY,
    )
}

/// The save's replace succeeds, then the session is revoked, then the save writes its index
/// entry: an orphan, which the next listing skips and removes.
#[tokio::test]
async fn an_index_write_that_lands_after_a_revoke_is_dropped_by_the_next_listing() {
    let sessions = faulty();
    let record = sign_in(&sessions, "ada", "Firefox").await;
    let mut parked = sessions.index_store().park_next(Op::Put);
    let save = tokio::spawn({
        let (sessions, record) = (sessions.clone(), record.clone());
        async move { sessions.save(&record).await }
    });
    parked.reached().await;
    assert_eq!(sessions.revoke_all("ada").await.unwrap(), 1);
    parked.release();
    save.await.unwrap().unwrap();
    assert_eq!(
        sessions.index_store().keys().await.unwrap().len(),
        1,
        "the late write left an orphan entry"
    );
    assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
    assert!(
        sessions.index_store().keys().await.unwrap().is_empty(),
        "and the listing removed it"
    );
    assert_eq!(sessions.load(&record.id).await.unwrap(), None);
}

/// A session the index cannot list is one "sign out everywhere" cannot reach: if the index
/// write fails, the session is removed and the request gets the error.
#[tokio::test]
async fn a_failed_index_write_fails_closed() {
    let sessions = faulty();
    sessions.index_store().fail_next(Op::Put);
    let mut record = record(Some("ada".into()), "Firefox");
    assert!(sessions.create(&mut record).await.is_err());
    assert_eq!(
        sessions.load(&record.id).await.unwrap(),
        None,
        "not left unindexed"
    );

    let record = sign_in(&sessions, "ada", "Firefox").await;
    sessions.index_store().fail_next(Op::Put);
    assert!(sessions.save(&record).await.is_err());
    assert_eq!(
        sessions.load(&record.id).await.unwrap(),
        None,
        "not left unindexed"
    );
}

#[tokio::test]
async fn expired_sessions_are_not_listed() {
    let clock = ManualClock::new();
    let sessions = memory_sessions(&clock);
    sign_in(&sessions, "ada", "Firefox").await;
    clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(sessions.sessions_of("ada").await.unwrap().len(), 1);
    clock.advance(Duration::from_secs(2 * 60));
    assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
}

/// `created` is stamped once by `create`; `last_seen` moves with every save.
#[tokio::test]
async fn created_stays_and_last_seen_moves() {
    let clock = ManualClock::new();
    let sessions = memory_sessions(&clock);
    let record = sign_in(&sessions, "ada", "Firefox").await;
    assert!(record.data.contains_key(CREATED_KEY));
    let first = sessions.sessions_of("ada").await.unwrap().remove(0);
    clock.advance(Duration::from_secs(60));
    sessions.save(&record).await.unwrap();
    let second = sessions.sessions_of("ada").await.unwrap().remove(0);
    assert_eq!(second.created, first.created);
    assert_eq!(
        second.last_seen - first.last_seen,
        time::Duration::seconds(60)
    );
}

/// The session id is a bearer secret: it never appears in what a page gets (the listed infos,
/// their JSON, their `Debug`), only the handle does.
#[tokio::test]
async fn listed_sessions_never_show_the_session_id() {
    let clock = ManualClock::new();
    let sessions = memory_sessions(&clock);
    let record = sign_in(&sessions, "ada", "Firefox").await;
    let id = record.id.to_string();
    let info = sessions.sessions_of("ada").await.unwrap().remove(0);
    let json = serde_json::to_string(&info).unwrap();
    let debug = format!("{info:?} {sessions:?}");
    assert!(!json.contains(&id), "{json}");
    assert!(!debug.contains(&id), "{debug}");
    assert!(json.contains(info.handle.as_str()), "{json}");
    assert!(!info.handle.to_string().contains(&id));
}

#[tokio::test]
async fn listing_without_the_index_says_how_to_turn_it_on() {
    let sessions =
        StrataSessionStore::new(MemoryStore::<String, Record>::builder().build().unwrap());
    let error = sessions.sessions_of("ada").await.unwrap_err();
    assert!(matches!(error, Error::InvalidConfig { .. }), "{error}");
    assert!(error.to_string().contains("with_user_index"), "{error}");
}

proptest! {
    /// Whatever a form posts, parsing a handle returns a handle or an error, never panics; and
    /// only what a handle prints parses.
    #[test]
    fn handle_parsing_never_panics(input in ".{0,64}") {
        if let Ok(handle) = input.parse::<SessionHandle>() {
            prop_assert_eq!(handle.to_string(), input);
        }
    }

    #[test]
    fn handles_round_trip(id in any::<i128>()) {
        let handle = SessionHandle::of(&Id(id));
        prop_assert_eq!(handle.to_string().parse::<SessionHandle>().unwrap(), handle);
    }
}
