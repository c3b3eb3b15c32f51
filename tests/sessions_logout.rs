//! A logout that sticks: a request that loaded a session before its sign-out (or a revoke) can
//! never write it back. Deterministic store-level cases, and an axum app whose requests are
//! parked between their load and their save while the session is signed out.
#![cfg(all(feature = "sessions", feature = "disk"))]

mod support;

use std::{str::FromStr, sync::Arc};

use axum::{
    body::Body,
    extract::Path,
    http::{Method, Request},
    routing::{get, post},
    Router,
};
use http_body_util::BodyExt;
use strata::{
    sessions::{NoIndex, SessionRoster, StrataSessionStore},
    DiskDb, MemoryStore,
};
use tokio::sync::Barrier;
use tower::ServiceExt;
use tower_sessions::{
    cookie::time,
    session::{Id, Record},
    Expiry, Session, SessionManagerLayer, SessionStore,
};

/// Requests per trial that race the sign-out, and trials per store.
const RACERS: usize = 6;
const TRIALS: usize = 100;

/// Where parked requests wait: every racer and the test meet at `loaded` (all racers have
/// loaded the session), then at `go` (the sign-out is done; save now).
#[derive(Clone)]
struct Gate {
    loaded: Arc<Barrier>,
    go: Arc<Barrier>,
}

impl Gate {
    fn new(racers: usize) -> Self {
        Gate {
            loaded: Arc::new(Barrier::new(racers + 1)),
            go: Arc::new(Barrier::new(racers + 1)),
        }
    }

    async fn pass(&self) {
        self.loaded.wait().await;
        self.go.wait().await;
    }
}

async fn user(session: &Session) -> String {
    let name: Option<String> = session.get("user_id").await.unwrap();
    name.unwrap_or_else(|| "anonymous".to_owned())
}

/// Loads the session, changes it, and so saves it at the end of the request.
async fn touch(session: &Session) -> String {
    let name = user(session).await;
    let hits: u64 = session.get("hits").await.unwrap().unwrap_or(0);
    session.insert("hits", hits + 1).await.unwrap();
    name
}

/// The app: sign in (with `cycle_id`, against fixation), who am I, a request that touches the
/// session, one that does so parked on `gate` between its load and its save, and sign out.
fn app<S>(sessions: S, gate: Gate) -> Router
where
    S: SessionStore + Clone,
{
    let layer = SessionManagerLayer::new(sessions)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(10)));
    Router::new()
        .route(
            "/login/{name}",
            post(|session: Session, Path(name): Path<String>| async move {
                session.cycle_id().await.unwrap();
                session.insert("user_id", name).await.unwrap();
            }),
        )
        .route(
            "/whoami",
            get(|session: Session| async move { user(&session).await }),
        )
        .route(
            "/touch",
            get(|session: Session| async move { touch(&session).await }),
        )
        .route(
            "/parked",
            get(move |session: Session| async move {
                let name = user(&session).await;
                gate.pass().await;
                touch(&session).await;
                name
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move { session.flush().await.unwrap() }),
        )
        .layer(layer)
}

/// Sends a request with `cookie`; returns the body and the session cookie set, if any.
async fn send(app: &Router, method: Method, uri: &str, cookie: &str) -> (String, Option<String>) {
    let mut req = Request::builder().method(method).uri(uri);
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{uri}: {}",
        response.status()
    );
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8(body.to_vec()).unwrap(), set_cookie)
}

async fn login(app: &Router, name: &str, cookie: &str) -> String {
    let (_, set) = send(app, Method::POST, &format!("/login/{name}"), cookie).await;
    set.expect("signing in sets a cookie")
}

async fn whoami(app: &Router, cookie: &str) -> String {
    send(app, Method::GET, "/whoami", cookie).await.0
}

fn id_of(cookie: &str) -> Id {
    Id::from_str(cookie.trim_start_matches("id=")).unwrap()
}

/// One forced trial: racers load the signed-in session and park; the session is signed out;
/// the racers save. True if the session came back.
async fn parked_trial<S: SessionStore + Clone>(sessions: &S) -> bool {
    let app = app(sessions.clone(), Gate::new(0));
    let cookie = login(&app, "ada", "").await;
    let sign_out = async |app: &Router| {
        send(app, Method::POST, "/logout", &cookie).await;
    };
    parked_around(sessions, std::slice::from_ref(&cookie), sign_out).await
}

/// Parks `RACERS` requests of each session in `cookies` between their load and their save,
/// runs `sign_out`, lets them save; true if any session came back.
async fn parked_around<S, F>(sessions: &S, cookies: &[String], sign_out: F) -> bool
where
    S: SessionStore + Clone,
    F: AsyncFnOnce(&Router),
{
    let gate = Gate::new(RACERS * cookies.len());
    let app = app(sessions.clone(), gate.clone());
    let mut racers = Vec::new();
    for cookie in cookies {
        for _ in 0..RACERS {
            let (app, cookie) = (app.clone(), cookie.clone());
            racers.push(tokio::spawn(async move {
                send(&app, Method::GET, "/parked", &cookie).await.0
            }));
        }
    }
    gate.loaded.wait().await;
    sign_out(&app).await;
    gate.go.wait().await;
    for racer in racers {
        let name = racer.await.unwrap();
        assert_eq!(name, "ada", "every racer loaded before the sign-out");
    }
    let mut back = false;
    for cookie in cookies {
        back |= whoami(&app, cookie).await != "anonymous";
        back |= sessions.load(&id_of(cookie)).await.unwrap().is_some();
    }
    back
}

/// "Sign out everywhere" while requests of both devices are parked: neither comes back, and
/// neither reappears in the user's list.
async fn sign_out_everywhere_trial<S, I>(sessions: &StrataSessionStore<S, I>) -> bool
where
    S: strata::Store<String, Record> + Clone + 'static,
    I: strata::Store<String, SessionRoster> + Clone + 'static,
{
    let app = app(sessions.clone(), Gate::new(0));
    let cookies = [login(&app, "ada", "").await, login(&app, "ada", "").await];
    let sign_out = async |_: &Router| {
        assert_eq!(sessions.revoke_all("ada").await.unwrap(), 2);
    };
    let back = parked_around(sessions, &cookies, sign_out).await;
    back || !sessions.sessions_of("ada").await.unwrap().is_empty()
}

/// Signing in as someone else on the same browser (`cycle_id`) moves the session between users.
async fn signing_in_as_another_user_moves_the_session<S, I>(sessions: &StrataSessionStore<S, I>)
where
    S: strata::Store<String, Record> + Clone + 'static,
    I: strata::Store<String, SessionRoster> + Clone + 'static,
{
    let app = app(sessions.clone(), Gate::new(0));
    let ada = login(&app, "ada", "").await;
    assert_eq!(sessions.sessions_of("ada").await.unwrap().len(), 1);
    let bob = login(&app, "bob", &ada).await;
    assert_eq!(whoami(&app, &bob).await, "bob");
    assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
    let listed = sessions.sessions_of("bob").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].handle,
        strata::sessions::SessionHandle::of(&id_of(&bob))
    );
}

/// One unforced trial: racers and the sign-out are sent at once. True if the session came back.
async fn racing_trial<S: SessionStore + Clone>(sessions: &S) -> bool {
    let app = app(sessions.clone(), Gate::new(0));
    let cookie = login(&app, "ada", "").await;
    let mut tasks = Vec::new();
    for i in 0..=RACERS {
        let (app, cookie) = (app.clone(), cookie.clone());
        let (method, uri) = if i == RACERS / 2 {
            (Method::POST, "/logout")
        } else {
            (Method::GET, "/touch")
        };
        tasks.push(tokio::spawn(async move {
            send(&app, method, uri, &cookie).await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let back = whoami(&app, &cookie).await != "anonymous";
    back || sessions.load(&id_of(&cookie)).await.unwrap().is_some()
}

async fn resurrections<S, F>(sessions: &S, trial: F) -> usize
where
    S: SessionStore + Clone,
    F: AsyncFn(&S) -> bool,
{
    let mut back = 0;
    for _ in 0..TRIALS {
        back += usize::from(trial(sessions).await);
    }
    back
}

fn record(expires_in: time::Duration) -> Record {
    Record {
        id: Id::default(),
        data: [("user_id".to_owned(), "ada".into())].into(),
        expiry_date: time::OffsetDateTime::now_utc() + expires_in,
    }
}

/// Load, delete, save the loaded copy: the session stays deleted.
async fn save_after_delete_stays_deleted<S: SessionStore>(sessions: &S) {
    let mut created = record(time::Duration::minutes(5));
    sessions.create(&mut created).await.unwrap();
    let loaded = sessions.load(&created.id).await.unwrap().expect("created");
    sessions.delete(&created.id).await.unwrap();
    sessions.save(&loaded).await.unwrap();
    assert_eq!(
        sessions.load(&created.id).await.unwrap(),
        None,
        "resurrected"
    );
}

/// `cycle_id` (delete, then create under a new id) still signs in; the old id stays dead.
async fn cycle_id_still_signs_in<S: SessionStore + Clone>(sessions: &S) {
    let app = app(sessions.clone(), Gate::new(0));
    let anonymous = send(&app, Method::GET, "/touch", "").await.1.unwrap();
    let ada = login(&app, "ada", &anonymous).await;
    assert_ne!(ada, anonymous, "signing in draws a new id");
    assert_eq!(whoami(&app, &ada).await, "ada");
    assert_eq!(whoami(&app, &anonymous).await, "anonymous");
    assert_eq!(sessions.load(&id_of(&anonymous)).await.unwrap(), None);
}

type Memory = StrataSessionStore<MemoryStore<String, Record>>;

fn memory() -> Memory {
    StrataSessionStore::new(MemoryStore::builder().build().unwrap())
}

type Disk =
    StrataSessionStore<strata::DiskStore<String, Record>, strata::DiskStore<String, SessionRoster>>;

fn disk(db: &DiskDb) -> Disk {
    StrataSessionStore::new(db.store("sessions").unwrap())
        .with_user_index(db.store("session_index").unwrap(), "user_id")
}

fn disk_db() -> (tempfile::TempDir, DiskDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = DiskDb::builder().dir(dir.path().join("db")).open().unwrap();
    (dir, db)
}

#[tokio::test]
async fn memory_a_save_after_delete_does_not_resurrect() {
    save_after_delete_stays_deleted(&memory()).await;
    cycle_id_still_signs_in(&memory()).await;
}

#[tokio::test]
async fn disk_a_save_after_delete_does_not_resurrect() {
    let (_dir, db) = disk_db();
    save_after_delete_stays_deleted(&disk(&db)).await;
    save_after_delete_stays_deleted(&StrataSessionStore::new(
        db.store::<String, Record>("plain").unwrap(),
    ))
    .await;
    cycle_id_still_signs_in(&disk(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_parked_requests_never_resurrect_a_signed_out_session() {
    assert_eq!(resurrections(&memory(), parked_trial).await, 0);
}

/// Unforced: relies on the store's `replace` being atomic (a check-then-write can lose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_racing_requests_never_resurrect_a_signed_out_session() {
    assert_eq!(resurrections(&memory(), racing_trial).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_parked_requests_never_resurrect_a_signed_out_session() {
    let (_dir, db) = disk_db();
    let sessions = disk(&db);
    assert_eq!(resurrections(&sessions, parked_trial).await, 0);
    assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_sign_out_everywhere_sticks_against_parked_requests() {
    let (_dir, db) = disk_db();
    let sessions = disk(&db);
    signing_in_as_another_user_moves_the_session(&sessions).await;
    assert_eq!(resurrections(&sessions, sign_out_everywhere_trial).await, 0);
}

/// Unforced: relies on `DiskStore::replace` being atomic (a check-then-write can lose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_racing_requests_never_resurrect_a_signed_out_session() {
    let (_dir, db) = disk_db();
    let sessions = disk(&db);
    assert_eq!(resurrections(&sessions, racing_trial).await, 0);
    assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
}

#[cfg(feature = "redis")]
mod redis {
    use strata::RedisStore;

    use super::*;
    use crate::support::RedisServer;

    type Redis = StrataSessionStore<RedisStore<String, Record>, RedisStore<String, SessionRoster>>;

    async fn redis(server: &RedisServer) -> Redis {
        let url = server.url();
        let sessions = RedisStore::builder()
            .url(&url)
            .namespace("sessions")
            .build();
        let index = RedisStore::builder()
            .url(&url)
            .namespace("session_index")
            .build();
        let plain: StrataSessionStore<_, NoIndex> =
            StrataSessionStore::new(sessions.await.unwrap());
        plain.with_user_index(index.await.unwrap(), "user_id")
    }

    #[tokio::test]
    async fn redis_a_save_after_delete_does_not_resurrect() {
        let server = RedisServer::start();
        let sessions = redis(&server).await;
        save_after_delete_stays_deleted(&sessions).await;
        cycle_id_still_signs_in(&sessions).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_parked_requests_never_resurrect_a_signed_out_session() {
        let server = RedisServer::start();
        let sessions = redis(&server).await;
        assert_eq!(resurrections(&sessions, parked_trial).await, 0);
        assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_sign_out_everywhere_sticks_against_parked_requests() {
        let server = RedisServer::start();
        let sessions = redis(&server).await;
        signing_in_as_another_user_moves_the_session(&sessions).await;
        assert_eq!(resurrections(&sessions, sign_out_everywhere_trial).await, 0);
    }

    /// Unforced: relies on `RedisStore::replace` being one `SET XX`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_racing_requests_never_resurrect_a_signed_out_session() {
        let server = RedisServer::start();
        let sessions = redis(&server).await;
        assert_eq!(resurrections(&sessions, racing_trial).await, 0);
        assert!(sessions.sessions_of("ada").await.unwrap().is_empty());
    }
}
