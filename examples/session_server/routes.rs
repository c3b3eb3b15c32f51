//! The routes, and the server that puts them together with the session layer and the
//! hardening around it.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    extract::{ConnectInfo, Form, State},
    http::{header, StatusCode},
    middleware,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use strata::sessions::StrataSessionStore;
use tower_sessions::{
    cookie::{time, SameSite},
    Expiry, Session, SessionManagerLayer, SessionStore,
};

use super::{
    backend::{Backend, Panel},
    config::Config,
    hardening::{self, error_page},
    pages::{self, About, Home},
    sign_in_limit::SignInLimit,
};

const NAME: &str = "name";
const VISITS: &str = "visits";
/// The longest name, in characters (not bytes: "é" is one).
const MAX_NAME_CHARS: usize = 64;

/// What every handler shares.
#[derive(Clone)]
struct App {
    panel: Arc<dyn Panel>,
    limit: SignInLimit,
    started: Instant,
    pid: u32,
}

impl App {
    fn about(&self) -> About<'_> {
        About {
            store: self.panel.describe(),
            pid: self.pid,
            up: self.started.elapsed(),
        }
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn serve<S>(backend: Backend<S>, config: Config) -> Result<(), String>
where
    StrataSessionStore<S>: SessionStore + Clone,
{
    let app = App {
        panel: backend.panel,
        limit: SignInLimit::new(config.sign_ins_per_minute)?,
        started: Instant::now(),
        pid: std::process::id(),
    };
    let router = router(app, session_layer(backend.sessions, &config)?);
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "strata session server on http://{local} (sessions in {})",
        backend.opened
    );
    tracing::info!(%local, store = %backend.opened, "listening");
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| format!("server error: {e}"))
}

/// The session cookie: `HttpOnly`, `SameSite=Lax` (sent when following a link here, not on
/// another site's form post), `Secure` when configured, ending after `config.idle` idle.
fn session_layer<S>(
    sessions: StrataSessionStore<S>,
    config: &Config,
) -> Result<SessionManagerLayer<StrataSessionStore<S>>, String>
where
    StrataSessionStore<S>: SessionStore + Clone,
{
    let idle = time::Duration::try_from(config.idle).map_err(|e| e.to_string())?;
    Ok(SessionManagerLayer::new(sessions)
        .with_secure(config.secure_cookie)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(idle)))
}

fn router<S>(app: App, sessions: SessionManagerLayer<StrataSessionStore<S>>) -> Router
where
    StrataSessionStore<S>: SessionStore + Clone,
{
    Router::new()
        .route("/", get(home))
        .route("/me", get(me))
        .route("/stats.json", get(stats))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/static/style.css", get(style))
        .route("/static/panel.js", get(panel_js))
        .fallback(|| async { error_page(StatusCode::NOT_FOUND) })
        .layer(sessions)
        .layer(middleware::from_fn(hardening::plain_errors))
        .layer(middleware::from_fn(hardening::same_origin_posts))
        .layer(middleware::map_response(hardening::security_headers))
        .with_state(app)
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

/// A session store error: logged with its cause, answered with the plain 500 page.
fn internal(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "session store error");
    error_page(StatusCode::INTERNAL_SERVER_ERROR)
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

/// The signed-in page, or the sign-in form. Showing the form stores nothing: a session is
/// written only by signing in.
async fn home(State(app): State<App>, session: Session) -> Response {
    let (name, visits) = match visit(&session).await {
        Ok(Some(user)) => user,
        Ok(None) => return Html(pages::sign_in(&app.about(), None).into_string()).into_response(),
        Err(response) => return response,
    };
    let home = Home {
        name: &name,
        visits,
    };
    Html(pages::home(&app.about(), &home).into_string()).into_response()
}

/// `{"name": .., "visits": ..}` for the signed-in user (without counting a visit), or 401.
async fn me(session: Session) -> Response {
    let name = session.get::<String>(NAME).await;
    let visits = session.get::<u64>(VISITS).await;
    match (name, visits) {
        (Ok(Some(name)), Ok(visits)) => {
            Json(serde_json::json!({ "name": name, "visits": visits.unwrap_or(0) })).into_response()
        }
        (Ok(None), _) => error_page(StatusCode::UNAUTHORIZED),
        (Err(e), _) | (_, Err(e)) => internal(e),
    }
}

/// The store's numbers, for the live panel; signed-in users only.
async fn stats(State(app): State<App>, session: Session) -> Response {
    match session.get::<String>(NAME).await {
        Ok(Some(_)) => Json(app.panel.snapshot().await).into_response(),
        Ok(None) => error_page(StatusCode::UNAUTHORIZED),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct SignIn {
    name: String,
}

/// Signs in, at most `STRATA_SIGN_IN_LIMIT` times a minute per client address.
async fn sign_in(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    Form(form): Form<SignIn>,
) -> Response {
    match app.limit.check(peer.ip()).await {
        Ok(decision) if decision.allowed => {}
        Ok(decision) => return too_many(decision.retry_after),
        Err(e) => return internal(e),
    }
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        let problem = format!("A name is 1 to {MAX_NAME_CHARS} characters.");
        let page = pages::sign_in(&app.about(), Some(&problem)).into_string();
        return (StatusCode::BAD_REQUEST, Html(page)).into_response();
    }
    let signed_in = async {
        // Loading forgets an id the store does not know; an id it does know (planted by an
        // attacker: session fixation) is replaced by a new one. A visitor without a session
        // costs no store round trip before the one write that creates it.
        session.get::<String>(NAME).await?;
        if session.id().is_some() {
            session.cycle_id().await?;
        }
        session.insert(NAME, name).await?;
        session.insert(VISITS, 0u64).await
    };
    match signed_in.await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => internal(e),
    }
}

/// 429 with `Retry-After` in whole seconds (at least 1).
fn too_many(retry_after: Option<std::time::Duration>) -> Response {
    let secs = retry_after.map_or(60, |d| d.as_secs().max(1));
    let mut response = error_page(StatusCode::TOO_MANY_REQUESTS);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    response
}

async fn sign_out(session: Session) -> Response {
    match session.flush().await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => internal(e),
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLE,
    )
        .into_response()
}

async fn panel_js() -> Response {
    let js = "text/javascript; charset=utf-8";
    ([(header::CONTENT_TYPE, js)], pages::PANEL_JS).into_response()
}
