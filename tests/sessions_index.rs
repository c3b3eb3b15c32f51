//! Every device of a user: the sessions adapter's user index on every store — listing, revoking
//! one, all, all but the current one — and its consistency when saves race revokes, users
//! change, and the index store fails.
#![cfg(all(feature = "sessions", feature = "disk"))]

mod support;

use std::{collections::HashMap, time::Duration};

use proptest::prelude::*;
use strata::{
    sessions::{
        SessionHandle, SessionInfo, SessionRoster, StrataSessionStore, CREATED_KEY, USER_AGENT_KEY,
    },
    DiskDb, Error, ManualClock, MemoryStore, Store,
};
use support::fault_store::{At, FaultStore, Op};
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

/// How many sessions `user`'s roster names (0 without a roster).
async fn roster_len<S, I>(sessions: &StrataSessionStore<S, I>, user: &str) -> usize
where
    I: Store<String, SessionRoster>,
{
    let roster = sessions.index_store().get(&user.to_owned()).await.unwrap();
    roster.map_or(0, |r| r.len())
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
    I: Store<String, SessionRoster> + Clone + 'static,
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
    assert_eq!(roster_len(sessions, "ada").await, 0);
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
    I: Store<String, SessionRoster> + Clone + 'static,
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
    I: Store<String, SessionRoster> + Clone + 'static,
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

/// Signing in as someone else on the same session (no `cycle_id`) moves it between users: the
/// old user neither lists nor revokes it. Deleting a session drops it from the rosters (the new
/// user's at once, the old user's at their next listing).
async fn a_user_change_moves_the_session<S, I>(sessions: &StrataSessionStore<S, I>)
where
    S: Store<String, Record> + Clone + 'static,
    I: Store<String, SessionRoster> + Clone + 'static,
{
    let mut record = sign_in(sessions, "carol", "any").await;
    record.data.insert(USER_KEY.into(), "dave".into());
    sessions.save(&record).await.unwrap();
    assert!(sessions.sessions_of("carol").await.unwrap().is_empty());
    assert_eq!(
        handles(&sessions.sessions_of("dave").await.unwrap()),
        handles_of(&[&record])
    );
    assert_eq!(
        sessions.revoke_all("carol").await.unwrap(),
        0,
        "not carol's any more"
    );
    assert!(
        sessions.load(&record.id).await.unwrap().is_some(),
        "carol's revoke left dave's session alone"
    );

    sessions.delete(&record.id).await.unwrap();
    assert_eq!(roster_len(sessions, "dave").await, 0);
    assert!(sessions.sessions_of("dave").await.unwrap().is_empty());
    assert!(sessions.sessions_of("carol").await.unwrap().is_empty());
    assert_eq!(roster_len(sessions, "carol").await, 0);
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
    StrataSessionStore<MemoryStore<String, Record>, MemoryStore<String, SessionRoster>>;

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

    type Disk = StrataSessionStore<DiskStore<String, Record>, DiskStore<String, SessionRoster>>;

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

    type Redis = StrataSessionStore<RedisStore<String, Record>, RedisStore<String, SessionRoster>>;

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

    /// A tampered session record (garbage bytes in Redis) neither fails the listing nor hides
    /// the user's other sessions; it is pruned from the roster, and the logs name no session
    /// id. A tampered roster fails the listing with a decode error (never an empty list that
    /// would hide live sessions).
    #[tokio::test]
    async fn garbage_is_skipped_or_refused() {
        let (logs, _guard) = crate::support::log_capture::start();
        let (server, sessions) = open("").await;
        let healthy = sign_in(&sessions, "ada", "Firefox").await;
        let tampered = sign_in(&sessions, "ada", "Safari").await;
        server.raw(&["SET", &format!("sessions:{}", tampered.id), "garbage"]);
        assert_eq!(roster_len(&sessions, "ada").await, 2);

        let listed = sessions.sessions_of("ada").await.unwrap();
        assert_eq!(handles(&listed), handles_of(&[&healthy]));
        assert_eq!(roster_len(&sessions, "ada").await, 1);
        let logs = logs.text();
        assert!(logs.contains("does not decode"), "{logs}");
        assert!(!logs.contains(&tampered.id.to_string()), "{logs}");

        server.raw(&["SET", "session_index:ada", "garbage"]);
        let error = sessions.sessions_of("ada").await.unwrap_err();
        assert!(matches!(error, Error::Decode { .. }), "{error}");
    }
}

#[cfg(feature = "redis")]
mod redis_cluster {
    //! The shared three-master cluster: a user's entries hash to every slot, so listing and
    //! reading them crosses nodes.
    use strata::RedisStore;

    use super::*;

    type Redis = StrataSessionStore<RedisStore<String, Record>, RedisStore<String, SessionRoster>>;

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

type Faulty = StrataSessionStore<
    FaultStore<MemoryStore<String, Record>>,
    FaultStore<MemoryStore<String, SessionRoster>>,
>;

/// Both the sessions and the rosters behind fault wrappers, on `clock`.
fn faulty_on(clock: &ManualClock) -> Faulty {
    let records = MemoryStore::builder().clock(clock.clock()).build().unwrap();
    let rosters = MemoryStore::builder().clock(clock.clock()).build().unwrap();
    StrataSessionStore::new(FaultStore::new(records))
        .with_clock(clock.clock())
        .with_user_index(FaultStore::new(rosters), USER_KEY)
}

fn faulty() -> Faulty {
    faulty_on(&ManualClock::new())
}

/// `record` with its expiry date pushed far past what its roster covers, so its next save
/// must extend the roster before it replaces the record.
fn outliving_its_roster(record: &Record) -> Record {
    let mut record = record.clone();
    record.expiry_date += time::Duration::days(30);
    record
}

/// A save's roster write is parked; the session is revoked; the roster write lands: it names
/// the revoked session again, but the save's replace finds no record, so the session stays
/// dead, and the next listing prunes the orphan name.
#[tokio::test]
async fn an_index_write_that_lands_after_a_revoke_is_dropped_by_the_next_listing() {
    let sessions = faulty();
    let record = sign_in(&sessions, "ada", "Firefox").await;
    let in_flight = outliving_its_roster(&sessions.load(&record.id).await.unwrap().unwrap());
    let mut parked = sessions.index_store().park_next(Op::CompareAndSet);
    let save = tokio::spawn({
        let sessions = sessions.clone();
        async move { sessions.save(&in_flight).await }
    });
    parked.reached().await;
    assert_eq!(sessions.revoke_all("ada").await.unwrap(), 1);
    parked.release();
    save.await.unwrap().unwrap();
    assert_eq!(
        roster_len(&sessions, "ada").await,
        1,
        "the late roster write named the revoked session again"
    );
    assert_eq!(
        sessions.load(&record.id).await.unwrap(),
        None,
        "resurrected"
    );
    assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
    assert_eq!(
        roster_len(&sessions, "ada").await,
        0,
        "and the listing pruned it"
    );
}

/// A session the index cannot list is one "sign out everywhere" cannot reach: if the roster
/// write fails, the session is removed and the request gets the error — on `create`, and on a
/// `save` that had to extend the roster.
#[tokio::test]
async fn a_failed_index_write_fails_closed() {
    let sessions = faulty();
    sessions.index_store().fail_next(Op::CompareAndSet);
    let mut record = record(Some("ada".into()), "Firefox");
    assert!(sessions.create(&mut record).await.is_err());
    assert_eq!(
        sessions.load(&record.id).await.unwrap(),
        None,
        "not left unindexed"
    );

    let record = sign_in(&sessions, "ada", "Firefox").await;
    let loaded = sessions.load(&record.id).await.unwrap().unwrap();
    sessions.index_store().fail_next(Op::CompareAndSet);
    assert!(sessions.save(&outliving_its_roster(&loaded)).await.is_err());
    assert_eq!(
        sessions.load(&record.id).await.unwrap(),
        None,
        "not left unindexed"
    );

    // A user set by a save (no `cycle_id`) is indexed the same way.
    let mut anonymous = self::record(None, "Firefox");
    sessions.create(&mut anonymous).await.unwrap();
    anonymous.data.insert(USER_KEY.into(), "ada".into());
    sessions.index_store().fail_next(Op::Get);
    assert!(sessions.save(&anonymous).await.is_err());
    assert_eq!(sessions.load(&anonymous.id).await.unwrap(), None);
}

/// A sign-in parked between its record write and its roster write while the user signs out
/// everywhere: once the sign-in returns, its session is listed (and the next revoke reaches
/// it) — never live and unlisted.
#[tokio::test]
async fn a_sign_in_racing_a_revoke_all_is_listed_or_revoked() {
    let sessions = faulty();
    let old = sign_in(&sessions, "ada", "Firefox").await;
    let mut parked = sessions.index_store().park_next(Op::CompareAndSet);
    let signing_in = tokio::spawn({
        let sessions = sessions.clone();
        async move { sign_in(&sessions, "ada", "Safari").await }
    });
    parked.reached().await;
    assert_eq!(sessions.revoke_all("ada").await.unwrap(), 1);
    parked.release();
    let new = signing_in.await.unwrap();
    assert_eq!(sessions.load(&old.id).await.unwrap(), None);
    assert!(sessions.load(&new.id).await.unwrap().is_some());
    let listed = sessions.sessions_of("ada").await.unwrap();
    assert_eq!(handles(&listed), handles_of(&[&new]), "live, so listed");
    assert_eq!(sessions.revoke_all("ada").await.unwrap(), 1);
    assert_eq!(sessions.load(&new.id).await.unwrap(), None);
}

/// The other order: "sign out everywhere" has deleted the records and is parked before it
/// rewrites the roster; a sign-in adds itself meanwhile. The revoke's roster write must not
/// drop the newcomer.
#[tokio::test]
async fn a_revoke_all_keeps_a_sign_in_that_joined_the_roster_meanwhile() {
    let sessions = faulty();
    let old = sign_in(&sessions, "ada", "Firefox").await;
    let mut parked = sessions.index_store().park_next(Op::CompareAndSet);
    let revoking = tokio::spawn({
        let sessions = sessions.clone();
        async move { sessions.revoke_all("ada").await }
    });
    parked.reached().await;
    let new = sign_in(&sessions, "ada", "Safari").await;
    parked.release();
    assert_eq!(revoking.await.unwrap().unwrap(), 1);
    assert_eq!(sessions.load(&old.id).await.unwrap(), None);
    let listed = sessions.sessions_of("ada").await.unwrap();
    assert_eq!(handles(&listed), handles_of(&[&new]));
}

/// A save that sets the user names the session in the roster before it replaces the record; a
/// listing in between sees a roster naming a session whose record is not signed in yet. It must
/// not prune it: once the save returns, the session is listed.
#[tokio::test]
async fn a_listing_between_a_roster_write_and_its_record_write_prunes_nothing_live() {
    let sessions = faulty();
    let mut anonymous = record(None, "Firefox");
    sessions.create(&mut anonymous).await.unwrap();
    anonymous.data.insert(USER_KEY.into(), "ada".into());
    let mut parked = sessions.store().park_next(Op::Replace);
    let saving = tokio::spawn({
        let (sessions, record) = (sessions.clone(), anonymous.clone());
        async move { sessions.save(&record).await }
    });
    parked.reached().await;
    assert_eq!(roster_len(&sessions, "ada").await, 1);
    assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
    assert_eq!(sessions.revoke_all("ada").await.unwrap(), 0);
    parked.release();
    saving.await.unwrap().unwrap();
    let listed = sessions.sessions_of("ada").await.unwrap();
    assert_eq!(handles(&listed), handles_of(&[&anonymous]));
}

/// A save that keeps the user and stays within what the roster covers touches the index not
/// at all: the page-view path is one record write.
#[tokio::test]
async fn a_plain_save_writes_only_the_record() {
    let sessions = faulty();
    let record = sign_in(&sessions, "ada", "Firefox").await;
    let loaded = sessions.load(&record.id).await.unwrap().unwrap();
    let touched = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = touched.clone();
    let every_op = [
        Op::Get,
        Op::GetMany,
        Op::Put,
        Op::CompareAndSet,
        Op::Delete,
        Op::DeleteMany,
    ];
    let points: Vec<At> = every_op.iter().map(|op| At::Before(*op)).collect();
    sessions.index_store().arm(&points, move || {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    for _ in 0..3 {
        sessions.save(&loaded).await.unwrap();
    }
    assert!(
        !touched.load(std::sync::atomic::Ordering::SeqCst),
        "a plain save touched the index"
    );
    assert!(sessions.index_store().armed());
}

/// Sessions saved on every request live far longer than their first expiry date: their
/// roster is extended as their expiry date moves, so they stay listed (manual clock).
#[tokio::test]
async fn a_roster_outlives_every_session_it_names() {
    let clock = ManualClock::new();
    let sessions = faulty_on(&clock);
    let mut record = sign_in(&sessions, "ada", "Firefox").await;
    for _ in 0..40 {
        clock.advance(Duration::from_secs(20 * 60));
        record = sessions
            .load(&record.id)
            .await
            .unwrap()
            .expect("still live");
        record.expiry_date = time::OffsetDateTime::from_unix_timestamp(
            i64::try_from(clock.clock().now_ms() / 1000).unwrap(),
        )
        .unwrap()
            + time::Duration::minutes(30);
        sessions.save(&record).await.unwrap();
        let listed = sessions.sessions_of("ada").await.unwrap();
        assert_eq!(handles(&listed), handles_of(&[&record]));
    }
}

/// A user has at most `with_max_sessions_per_user` sessions: a sign-in beyond it signs out the
/// oldest; sessions that are gone are dropped first, and another user's sessions never are.
#[tokio::test]
async fn a_sign_in_over_the_limit_signs_out_the_oldest() {
    let clock = ManualClock::new();
    let sessions = memory_sessions(&clock).with_max_sessions_per_user(2);
    let first = sign_in(&sessions, "ada", "one").await;
    let second = sign_in(&sessions, "ada", "two").await;
    let bob = sign_in(&sessions, "bob", "bob").await;
    let third = sign_in(&sessions, "ada", "three").await;
    assert_eq!(sessions.load(&first.id).await.unwrap(), None);
    let listed = sessions.sessions_of("ada").await.unwrap();
    assert_eq!(handles(&listed), handles_of(&[&second, &third]));
    assert!(sessions.load(&bob.id).await.unwrap().is_some());

    // Gone without a sign-out (expired, lost): the roster still names it.
    Store::delete(sessions.store(), &second.id.to_string())
        .await
        .unwrap();
    assert_eq!(roster_len(&sessions, "ada").await, 2);
    let fourth = sign_in(&sessions, "ada", "four").await;
    assert!(
        sessions.load(&third.id).await.unwrap().is_some(),
        "room was made by the gone one"
    );
    let listed = sessions.sessions_of("ada").await.unwrap();
    assert_eq!(handles(&listed), handles_of(&[&third, &fourth]));
    assert!(roster_len(&sessions, "ada").await <= 2);
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

/// A user signed out everywhere leaves nothing behind for long: their empty roster expires
/// within a minute (manual clock), while a roster naming a live session never does.
#[tokio::test]
async fn an_empty_roster_expires_within_a_minute() {
    let clock = ManualClock::new();
    let sessions = memory_sessions(&clock);
    sign_in(&sessions, "ada", "Firefox").await;
    sign_in(&sessions, "bob", "Safari").await;
    assert_eq!(sessions.revoke_all("ada").await.unwrap(), 1);
    clock.advance(Duration::from_secs(61));
    assert_eq!(Store::keys(sessions.index_store()).await.unwrap(), ["bob"]);
}

/// `cycle_id` as the same user (a re-authentication): tower-sessions deletes the old id and
/// creates the new one with a copy of its data, the store's roster note included. The new id
/// must still join the roster, or "sign out everywhere" would miss it.
#[tokio::test]
async fn a_cycled_id_of_the_same_user_is_listed_and_revoked() {
    let clock = ManualClock::new();
    let sessions = memory_sessions(&clock);
    let old = sign_in(&sessions, "ada", "Firefox").await;
    let loaded = sessions.load(&old.id).await.unwrap().unwrap();
    sessions.delete(&old.id).await.unwrap();
    let mut cycled = Record {
        id: Id::default(),
        ..loaded
    };
    sessions.create(&mut cycled).await.unwrap();
    let listed = sessions.sessions_of("ada").await.unwrap();
    assert_eq!(handles(&listed), handles_of(&[&cycled]));
    // And its saves keep it listed (the note now names the new id).
    let loaded = sessions.load(&cycled.id).await.unwrap().unwrap();
    sessions.save(&loaded).await.unwrap();
    assert_eq!(sessions.revoke_all("ada").await.unwrap(), 1);
    assert_eq!(sessions.load(&cycled.id).await.unwrap(), None);
}
