//! tower-sessions over strata: the session layer of an axum app, driven with `oneshot` requests.
#![cfg(feature = "sessions")]

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{body::Body, routing::get, Router};
use http_body_util::BodyExt;
use strata::{sessions::StrataSessionStore, Error, ManualClock, MemoryStore, Result, Store};
use tower::ServiceExt;
use tower_sessions::{
    cookie::time,
    session::{Id, Record},
    session_store::ExpiredDeletion,
    CachingSessionStore, Expiry, Session, SessionManagerLayer, SessionStore,
};

type Sessions = MemoryStore<String, Record>;

fn memory(clock: &ManualClock) -> Sessions {
    MemoryStore::builder().clock(clock.clock()).build().unwrap()
}

fn adapter(clock: &ManualClock) -> StrataSessionStore<Sessions> {
    StrataSessionStore::new(memory(clock)).with_clock(clock.clock())
}

/// `/` counts visits in the session and answers the count.
async fn visit(session: Session) -> String {
    let visits: u64 = session.get("visits").await.unwrap().unwrap_or(0) + 1;
    session.insert("visits", visits).await.unwrap();
    visits.to_string()
}

fn app<S: SessionStore + Clone>(store: S) -> Router {
    let layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(10)));
    Router::new().route("/", get(visit)).layer(layer)
}

/// Sends `GET /` with `cookie` (if any); returns the body and the session cookie set, if any.
async fn request(app: &Router, cookie: Option<&str>) -> (String, Option<String>) {
    let mut req = axum::http::Request::builder().uri("/");
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8(body.to_vec()).unwrap(), set_cookie)
}

#[tokio::test]
async fn counts_visits_in_a_session() {
    let clock = ManualClock::new();
    let app = app(adapter(&clock));
    let (body, cookie) = request(&app, None).await;
    assert_eq!(body, "1");
    let cookie = cookie.expect("a new session sets a cookie");
    assert_eq!(request(&app, Some(&cookie)).await.0, "2");
    assert_eq!(request(&app, Some(&cookie)).await.0, "3");
    // Without the cookie: a different session.
    assert_eq!(request(&app, None).await.0, "1");
}

#[tokio::test]
async fn sessions_run_through_a_cache_with_its_stats() {
    let clock = ManualClock::new();
    let cache = strata::Cache::builder()
        .store(memory(&clock))
        .namespace("sessions")
        .build()
        .await
        .unwrap();
    let app = app(StrataSessionStore::new(cache.clone()).with_clock(clock.clock()));
    let (body, cookie) = request(&app, None).await;
    assert_eq!(body, "1");
    let cookie = cookie.expect("a new session sets a cookie");
    assert_eq!(request(&app, Some(&cookie)).await.0, "2");
    let stats = cache.stats();
    assert!(
        stats.hits >= 1,
        "the second request loaded the session through the cache: {stats:?}"
    );
    assert!(stats.writes + stats.updates >= 2, "{stats:?}");
    assert_eq!(cache.keys().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_record_lives_in_the_store_with_its_expiry_as_ttl() {
    let clock = ManualClock::new();
    let sessions = adapter(&clock);
    let app = app(sessions.clone());
    let (_, cookie) = request(&app, None).await;
    let id = cookie.unwrap().trim_start_matches("id=").to_owned();
    let store = sessions.store();
    let record = Store::get(store, &id)
        .await
        .unwrap()
        .expect("the session is in the store");
    assert_eq!(record.data["visits"], 1);
    let ttl = Store::ttl(store, &id)
        .await
        .unwrap()
        .unwrap()
        .remaining()
        .unwrap();
    // Ten minutes from the wall-clock time tower-sessions read, counted on the manual clock
    // (which started a moment earlier): ten minutes, give or take the test's own runtime.
    let ten_minutes = Duration::from_secs(600);
    assert!(ttl > ten_minutes - Duration::from_secs(10), "{ttl:?}");
    assert!(ttl < ten_minutes + Duration::from_secs(10), "{ttl:?}");
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let clock = ManualClock::new();
    let app = app(adapter(&clock));
    let (_, cookie) = request(&app, None).await;
    let cookie = cookie.unwrap();
    assert_eq!(request(&app, Some(&cookie)).await.0, "2");
    clock.advance(Duration::from_secs(11 * 60));
    let (body, new_cookie) = request(&app, Some(&cookie)).await;
    assert_eq!(body, "1", "an expired session starts over");
    assert_ne!(new_cookie.unwrap(), cookie, "with a new id");
}

#[tokio::test]
async fn tampered_cookies_get_a_new_session() {
    let clock = ManualClock::new();
    let app = app(adapter(&clock));
    let (_, cookie) = request(&app, None).await;
    let cookie = cookie.unwrap();
    let unknown = format!("id={}", Id::default());
    let mut flipped = cookie.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        "id=not-base64!!",
        "id=",
        "id=AAAA",
        "id=%FF%FE",
        &"id=".repeat(500),
        &unknown,
        &flipped,
    ] {
        let (body, new_cookie) = request(&app, Some(bad)).await;
        assert_eq!(
            body, "1",
            "cookie {bad:?} must not reach an existing session"
        );
        assert_ne!(new_cookie.as_deref(), Some(cookie.as_str()));
    }
    assert_eq!(
        request(&app, Some(&cookie)).await.0,
        "2",
        "the real session is intact"
    );
}

fn record(id: Id, expires_in: time::Duration, visits: u64) -> Record {
    let data = HashMap::from([("visits".to_owned(), visits.into())]);
    Record {
        id,
        data,
        expiry_date: time::OffsetDateTime::now_utc() + expires_in,
    }
}

#[tokio::test]
async fn create_refuses_an_id_collision() {
    let clock = ManualClock::new();
    let sessions = adapter(&clock);
    let taken = Id::default();
    let mut first = record(taken, time::Duration::hours(1), 1);
    sessions.create(&mut first).await.unwrap();
    assert_eq!(first.id, taken);
    let mut second = record(taken, time::Duration::hours(1), 99);
    sessions.create(&mut second).await.unwrap();
    assert_ne!(second.id, taken, "a colliding create draws a new id");
    assert_eq!(
        sessions.load(&taken).await.unwrap().unwrap().data["visits"],
        1
    );
    assert_eq!(
        sessions.load(&second.id).await.unwrap().unwrap().data["visits"],
        99
    );
}

#[tokio::test]
async fn save_load_delete_and_expired_records() {
    let clock = ManualClock::new();
    let sessions = adapter(&clock);
    let mut live = record(Id::default(), time::Duration::minutes(5), 3);
    sessions.save(&live).await.unwrap();
    assert_eq!(
        sessions.load(&live.id).await.unwrap(),
        None,
        "save writes only over an existing session"
    );
    sessions.create(&mut live).await.unwrap();
    live.data.insert("visits".into(), 4.into());
    sessions.save(&live).await.unwrap();
    assert_eq!(sessions.load(&live.id).await.unwrap(), Some(live.clone()));
    sessions.delete(&live.id).await.unwrap();
    assert_eq!(sessions.load(&live.id).await.unwrap(), None);

    let mut expired = record(Id::default(), time::Duration::seconds(-1), 1);
    sessions.save(&expired).await.unwrap();
    assert_eq!(
        Store::count(sessions.store()).await.unwrap(),
        0,
        "not written"
    );
    sessions.create(&mut expired).await.unwrap();
    assert_eq!(
        Store::count(sessions.store()).await.unwrap(),
        0,
        "not created"
    );

    // A record saved under a key that is not its own id is not handed out for that key.
    let other = record(Id::default(), time::Duration::minutes(5), 1);
    let key = Id::default();
    let ttl = Some(Duration::from_secs(60));
    Store::put(sessions.store(), key.to_string(), other, ttl)
        .await
        .unwrap();
    assert_eq!(sessions.load(&key).await.unwrap(), None);
}

/// A store that ignores TTLs and can hold entries that fail to decode, like a user's own store
/// over a database.
#[derive(Clone, Default)]
struct PlainStore {
    map: Arc<Mutex<HashMap<String, Option<Record>>>>,
    deletes: Arc<AtomicUsize>,
}

impl PlainStore {
    fn insert_garbage(&self, key: &str) {
        self.map.lock().unwrap().insert(key.to_owned(), None);
    }
}

impl Store<String, Record> for PlainStore {
    fn put(
        &self,
        key: String,
        value: Record,
        _ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.map.lock().unwrap().insert(key, Some(value));
        std::future::ready(Ok(()))
    }
    fn get(&self, key: &String) -> impl Future<Output = Result<Option<Record>>> + Send {
        let result = match self.map.lock().unwrap().get(key) {
            Some(Some(record)) => Ok(Some(record.clone())),
            Some(None) => Err(Error::from(strata::DecodeError {
                key: key.clone(),
                reason: "not a session record".into(),
            })),
            None => Ok(None),
        };
        std::future::ready(result)
    }
    fn delete(&self, key: &String) -> impl Future<Output = Result<bool>> + Send {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(self.map.lock().unwrap().remove(key).is_some()))
    }
    fn keys(&self) -> impl Future<Output = Result<Vec<String>>> + Send {
        std::future::ready(Ok(self.map.lock().unwrap().keys().cloned().collect()))
    }
}

#[tokio::test]
async fn a_record_that_fails_to_decode_is_absent_and_removed() {
    let plain = PlainStore::default();
    let sessions = StrataSessionStore::new(plain.clone());
    let id = Id::default();
    plain.insert_garbage(&id.to_string());
    assert_eq!(sessions.load(&id).await.unwrap(), None);
    assert!(
        plain.map.lock().unwrap().is_empty(),
        "the bad record is deleted"
    );

    // Over HTTP: a cookie naming an undecodable record gets a fresh session.
    plain.insert_garbage(&id.to_string());
    let app = app(sessions);
    let (body, cookie) = request(&app, Some(&format!("id={id}"))).await;
    assert_eq!(body, "1");
    assert_ne!(cookie.unwrap(), format!("id={id}"));
}

/// The session id is a bearer secret: a bad record is logged by its handle, never its id.
#[tokio::test]
async fn a_bad_record_is_logged_without_its_session_id() {
    let (logs, _guard) = support::log_capture::start();
    let plain = PlainStore::default();
    let sessions = StrataSessionStore::new(plain.clone());
    let id = Id::default();
    plain.insert_garbage(&id.to_string());
    assert_eq!(sessions.load(&id).await.unwrap(), None);
    let logs = logs.text();
    assert!(
        logs.contains("does not decode"),
        "the bad record is logged: {logs}"
    );
    assert!(!logs.contains(&id.to_string()), "{logs}");
}

#[tokio::test]
async fn delete_expired_removes_past_and_undecodable_records() {
    let plain = PlainStore::default();
    let sessions = StrataSessionStore::new(plain.clone());
    let live = record(Id::default(), time::Duration::minutes(5), 1);
    let past = record(Id::default(), time::Duration::seconds(-5), 1);
    plain
        .put(live.id.to_string(), live.clone(), None)
        .await
        .unwrap();
    plain
        .put(past.id.to_string(), past.clone(), None)
        .await
        .unwrap();
    plain.insert_garbage("garbage");
    assert_eq!(
        sessions.load(&past.id).await.unwrap(),
        None,
        "never handed out"
    );
    sessions.delete_expired().await.unwrap();
    let keys = plain.keys().await.unwrap();
    assert_eq!(keys, vec![live.id.to_string()]);
}

#[tokio::test]
async fn works_as_either_half_of_a_caching_session_store() {
    let clock = ManualClock::new();
    // The near half is filled with `save` by CachingSessionStore, so it must upsert.
    let near = adapter(&clock).near_cache();
    let far = adapter(&clock);
    let app = app(CachingSessionStore::new(near.clone(), far.clone()));
    let (_, cookie) = request(&app, None).await;
    let cookie = cookie.unwrap();
    assert_eq!(request(&app, Some(&cookie)).await.0, "2");
    assert_eq!(Store::count(near.store()).await.unwrap(), 1);
    assert_eq!(Store::count(far.store()).await.unwrap(), 1);
    // The near copy is lost (a restart of a memory tier): the far store still has the session.
    Store::clear(near.store()).await.unwrap();
    assert_eq!(request(&app, Some(&cookie)).await.0, "3");
    assert_eq!(
        Store::count(near.store()).await.unwrap(),
        1,
        "hydrated again"
    );
}

mod support;

#[cfg(feature = "redis")]
mod redis {
    //! The adapter over a real Redis: expiry as `PX`, collisions refused by `SET NX`, garbage
    //! under a session key treated as absent.

    use strata::RedisStore;

    use super::*;
    use crate::support::RedisServer;

    async fn redis_sessions(
        server: &RedisServer,
    ) -> StrataSessionStore<RedisStore<String, Record>> {
        let store = RedisStore::builder()
            .url(server.url())
            .namespace("sessions")
            .build()
            .await
            .unwrap();
        StrataSessionStore::new(store)
    }

    fn pttl(server: &RedisServer, id: Id) -> i64 {
        let reply = server.raw(&["PTTL", &format!("sessions:{id}")]);
        reply.trim().trim_start_matches(':').parse().unwrap()
    }

    #[tokio::test]
    async fn sessions_in_redis_expire_by_their_record_and_refuse_collisions() {
        let server = RedisServer::start();
        let sessions = redis_sessions(&server).await;
        let mut first = record(Id::default(), time::Duration::minutes(10), 1);
        sessions.create(&mut first).await.unwrap();
        let ttl = pttl(&server, first.id);
        // Ten minutes, within the millisecond or so by which strata's and Redis' clocks differ.
        assert!(ttl > 590_000 && ttl <= 601_000, "{ttl}");

        let mut second = record(first.id, time::Duration::minutes(10), 2);
        sessions.create(&mut second).await.unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(
            sessions.load(&first.id).await.unwrap().unwrap().data["visits"],
            1
        );

        let app = app(sessions.clone());
        let (_, cookie) = request(&app, None).await;
        let cookie = cookie.unwrap();
        assert_eq!(request(&app, Some(&cookie)).await.0, "2");
    }

    /// The session id is a bearer secret, and tower-sessions logs a store's errors: a Redis
    /// that does not answer (paused) or is gone (killed) fails load, save and delete with an
    /// error that names the session by its handle, never by its id (RedisStore's own error
    /// context is `GET sessions:<id>`).
    #[tokio::test]
    async fn a_backend_failure_reaches_tower_sessions_without_the_session_id() {
        let mut server = RedisServer::start();
        let store = RedisStore::builder()
            .url(server.url())
            .namespace("sessions")
            .command_timeout(Duration::from_millis(200))
            .build()
            .await
            .unwrap();
        let sessions = StrataSessionStore::new(store);
        let mut saved = record(Id::default(), time::Duration::minutes(10), 1);
        sessions.create(&mut saved).await.unwrap();
        let id = saved.id;
        let handle = strata::sessions::SessionHandle::of(&id).to_string();
        for stop in ["paused", "killed"] {
            match stop {
                "paused" => server.pause(),
                _ => {
                    server.resume();
                    server.kill();
                }
            }
            let errors = [
                sessions.load(&id).await.unwrap_err(),
                sessions.save(&saved).await.unwrap_err(),
                sessions.delete(&id).await.unwrap_err(),
            ];
            for error in errors {
                let text = error.to_string();
                assert!(!text.contains(&id.to_string()), "{stop}: {text}");
                assert!(text.contains(&handle), "{stop}: names the handle: {text}");
            }
        }
    }

    #[tokio::test]
    async fn garbage_under_a_session_key_is_absent_and_deleted() {
        let server = RedisServer::start();
        let sessions = redis_sessions(&server).await;
        let id = Id::default();
        let key = format!("sessions:{id}");
        server.raw(&["SET", &key, "not a strata value"]);
        assert_eq!(sessions.load(&id).await.unwrap(), None);
        assert_eq!(server.raw(&["EXISTS", &key]).trim(), ":0");

        server.raw(&["SET", &key, "garbage"]);
        let (body, new_cookie) = request(&app(sessions), Some(&format!("id={id}"))).await;
        assert_eq!(body, "1");
        assert_ne!(new_cookie.unwrap(), format!("id={id}"));
    }
}
