//! A web app whose sessions survive restarts: sign in with a name, watch a visit counter, sign
//! out. Sessions live in a `DiskStore` under `./strata-data` (kill the server with `kill -9`,
//! start it again: you are still signed in, and the counter goes on), or in Redis when
//! `STRATA_REDIS_URL` is set (every node sees every session; needs `--features redis`).
//!
//! ```text
//! cargo run --release --example session_server
//! ```
//!
//! Environment:
//! - `STRATA_ADDR`: address to listen on (default `127.0.0.1:3000`); or `PORT`, which listens on
//!   `0.0.0.0:$PORT` as platforms that set it expect;
//! - `STRATA_DATA_DIR`: the DiskStore directory (default `./strata-data`);
//! - `STRATA_REDIS_URL`: keep sessions in Redis instead (`redis://127.0.0.1:6379`);
//! - `STRATA_REPLICATED=1` (with `STRATA_REDIS_URL`): a `ReplicatedStore` — each server keeps a
//!   local copy of the sessions it reads, Redis holds the truth, and a write on one server
//!   invalidates the others' copies over pub/sub;
//! - `STRATA_SESSION_IDLE_SECS`: a session ends after this long without a request (default 1800).
//!
//! The same program is built as the `strata-session-server` binary (feature `server`), which is
//! what the end-to-end tests run.

use std::{env, net::SocketAddr, process::ExitCode, time::Duration};

use axum::{
    extract::Form,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use strata::{sessions::StrataSessionStore, DiskStore};
use tower_sessions::{
    cookie::time, session::Record, Expiry, Session, SessionManagerLayer, SessionStore,
};

const NAME: &str = "name";
const VISITS: &str = "visits";

/// Starts the server; returns when it is stopped with Ctrl-C (or SIGTERM).
#[tokio::main]
pub async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("session_server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let addr = listen_addr()?;
    let idle = idle_timeout()?;
    let replicated = env::var("STRATA_REPLICATED").is_ok_and(|v| v == "1");
    match env::var("STRATA_REDIS_URL") {
        Ok(url) if !url.is_empty() && replicated => {
            serve(replicated_sessions(&url).await?, addr, idle).await
        }
        Ok(url) if !url.is_empty() => serve(redis_sessions(&url).await?, addr, idle).await,
        _ => {
            let dir = env::var("STRATA_DATA_DIR").unwrap_or_else(|_| "./strata-data".into());
            serve(disk_sessions(&dir)?, addr, idle).await
        }
    }
}

/// The store behind the sessions, and a line saying what it is.
type Chosen<S> = (StrataSessionStore<S>, String);

/// Sessions in a DiskStore: every write is committed to disk before the response goes out.
fn disk_sessions(dir: &str) -> Result<Chosen<DiskStore<String, Record>>, String> {
    let store = DiskStore::builder()
        .dir(dir)
        .namespace("sessions")
        .open()
        .map_err(|e| e.to_string())?;
    let loaded = store.db().load_summary();
    let what = format!(
        "DiskStore in {dir} ({} sessions loaded, {} expired purged)",
        loaded.live, loaded.purged
    );
    Ok((StrataSessionStore::new(store), what))
}

/// Sessions in Redis, shared by every server pointed at it.
#[cfg(feature = "redis")]
async fn redis_sessions(url: &str) -> Result<Chosen<strata::RedisStore<String, Record>>, String> {
    let store = redis_store(url).await?;
    Ok((
        StrataSessionStore::new(store),
        format!("RedisStore at {url}"),
    ))
}

/// The Redis store of the sessions.
#[cfg(feature = "redis")]
async fn redis_store(url: &str) -> Result<strata::RedisStore<String, Record>, String> {
    strata::RedisStore::builder()
        .url(url)
        .namespace("sessions")
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// Sessions read from a local copy, with Redis as the truth shared by every server.
#[cfg(feature = "redis")]
async fn replicated_sessions(url: &str) -> Result<Chosen<Replicated>, String> {
    let local = strata::MemoryStore::builder()
        .namespace("sessions")
        .build()
        .map_err(|e| e.to_string())?;
    let store = strata::ReplicatedStore::builder()
        .local(local)
        .remote(redis_store(url).await?)
        .url(url)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let what = format!("ReplicatedStore (local MemoryStore, RedisStore at {url})");
    Ok((StrataSessionStore::new(store), what))
}

/// A local MemoryStore in front of a RedisStore.
#[cfg(feature = "redis")]
type Replicated = strata::ReplicatedStore<
    String,
    Record,
    strata::MemoryStore<String, Record>,
    strata::RedisStore<String, Record>,
>;

#[cfg(not(feature = "redis"))]
async fn replicated_sessions(
    url: &str,
) -> Result<Chosen<strata::MemoryStore<String, Record>>, String> {
    redis_sessions(url).await
}

#[cfg(not(feature = "redis"))]
async fn redis_sessions(url: &str) -> Result<Chosen<strata::MemoryStore<String, Record>>, String> {
    Err(format!(
        "STRATA_REDIS_URL={url} needs Redis support: run with `--features redis`"
    ))
}

fn listen_addr() -> Result<SocketAddr, String> {
    let addr = match (env::var("STRATA_ADDR"), env::var("PORT")) {
        (Ok(addr), _) => addr,
        (Err(_), Ok(port)) => format!("0.0.0.0:{port}"),
        _ => "127.0.0.1:3000".into(),
    };
    addr.parse()
        .map_err(|e| format!("STRATA_ADDR/PORT gives {addr:?}, not an address: {e}"))
}

fn idle_timeout() -> Result<Duration, String> {
    match env::var("STRATA_SESSION_IDLE_SECS") {
        Ok(secs) => secs
            .parse()
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                format!("STRATA_SESSION_IDLE_SECS={secs:?} is not a positive number of seconds")
            }),
        Err(_) => Ok(Duration::from_secs(30 * 60)),
    }
}

async fn serve<S>((store, what): Chosen<S>, addr: SocketAddr, idle: Duration) -> Result<(), String>
where
    StrataSessionStore<S>: SessionStore + Clone,
{
    let idle = time::Duration::try_from(idle).map_err(|e| e.to_string())?;
    let sessions = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(idle));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("strata session server on http://{local} (sessions in {what})");
    axum::serve(listener, app().layer(sessions))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| format!("server error: {e}"))
}

fn app() -> Router {
    Router::new()
        .route("/", get(home))
        .route("/me", get(me))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A session error as a 500 (the store is down, for instance), never a panic.
fn internal(error: impl std::fmt::Display) -> Response {
    let body = format!("session store error: {error}");
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
}

/// The signed-in user and their visit count, counting this visit.
async fn visit(session: &Session) -> Result<Option<(String, u64)>, Response> {
    let Some(name) = session.get::<String>(NAME).await.map_err(internal)? else {
        return Ok(None);
    };
    let visits = session
        .get::<u64>(VISITS)
        .await
        .map_err(internal)?
        .unwrap_or(0)
        + 1;
    session.insert(VISITS, visits).await.map_err(internal)?;
    Ok(Some((name, visits)))
}

async fn home(session: Session) -> Response {
    match visit(&session).await {
        Ok(Some((name, visits))) => Html(signed_in_page(&name, visits)).into_response(),
        Ok(None) => Html(SIGN_IN_PAGE).into_response(),
        Err(response) => response,
    }
}

/// `{"name": .., "visits": ..}` for the signed-in user (without counting a visit), or 401.
async fn me(session: Session) -> Response {
    let name = session.get::<String>(NAME).await;
    let visits = session.get::<u64>(VISITS).await;
    match (name, visits) {
        (Ok(Some(name)), Ok(visits)) => {
            Json(serde_json::json!({ "name": name, "visits": visits.unwrap_or(0) })).into_response()
        }
        (Ok(None), _) => (axum::http::StatusCode::UNAUTHORIZED, "not signed in").into_response(),
        (Err(e), _) | (_, Err(e)) => internal(e),
    }
}

#[derive(Deserialize)]
struct SignIn {
    name: String,
}

async fn sign_in(session: Session, Form(form): Form<SignIn>) -> Response {
    let name = form.name.trim();
    if name.is_empty() || name.len() > 64 {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "a name is 1 to 64 characters",
        )
            .into_response();
    }
    // A new id on sign-in, so an id planted before it (session fixation) is worthless.
    let signed_in = async {
        session.cycle_id().await?;
        session.insert(NAME, name).await?;
        session.insert(VISITS, 0u64).await
    };
    match signed_in.await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => internal(e),
    }
}

async fn sign_out(session: Session) -> Response {
    match session.flush().await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => internal(e),
    }
}

const SIGN_IN_PAGE: &str = r#"<!doctype html><title>strata sessions</title>
<h1>Sign in</h1>
<form method="post" action="/sign-in"><input name="name" placeholder="your name" autofocus> <button>Sign in</button></form>
<p>Your session is kept by strata: restart the server, you stay signed in.</p>"#;

fn signed_in_page(name: &str, visits: u64) -> String {
    format!(
        r#"<!doctype html><title>strata sessions</title>
<h1>Hello, {}</h1>
<p>visit #{visits}</p>
<form method="post" action="/sign-out"><button>Sign out</button></form>"#,
        escape(name)
    )
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}
