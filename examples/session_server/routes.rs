//! The routes, and the server that puts them together with the session layer and the
//! hardening around it.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    extract::{ConnectInfo, Form, State},
    http::{header, HeaderMap, StatusCode},
    middleware,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use strata::sessions::{SessionHandle, StrataSessionStore, USER_AGENT_KEY};
use tower_sessions::{
    cookie::{
        time::{self, OffsetDateTime},
        SameSite,
    },
    Expiry, Session, SessionManagerLayer, SessionStore,
};

use super::{
    backend::{Backend, Panel},
    config::Config,
    devices::{bounded_user_agent, Device, Devices},
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
    devices: Arc<dyn Devices>,
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
pub async fn serve<S, I>(backend: Backend<S, I>, config: Config) -> Result<(), String>
where
    StrataSessionStore<S, I>: SessionStore + Clone + Devices + 'static,
{
    let app = App {
        panel: backend.panel,
        devices: Arc::new(backend.sessions.clone()),
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
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped: every request in flight was answered");
    Ok(())
}

/// The session cookie: `HttpOnly`, `SameSite=Lax` (sent when following a link here, not on
/// another site's form post), `Secure` when configured, ending after `config.idle` idle.
///
/// A session is saved when a request changes it: a page view (the visit counter), not the live
/// panel's poll of `/stats.json` nor `/me`. So "idle" and the devices panel's "last seen" mean
/// the last page view, and a forgotten open tab neither keeps its session alive forever nor
/// writes to disk every two seconds (which `with_always_save(true)` would do).
fn session_layer<Sessions>(
    sessions: Sessions,
    config: &Config,
) -> Result<SessionManagerLayer<Sessions>, String>
where
    Sessions: SessionStore + Clone,
{
    let idle = time::Duration::try_from(config.idle).map_err(|e| e.to_string())?;
    Ok(SessionManagerLayer::new(sessions)
        .with_secure(config.secure_cookie)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(idle)))
}

fn router<Sessions>(app: App, sessions: SessionManagerLayer<Sessions>) -> Router
where
    Sessions: SessionStore + Clone,
{
    Router::new()
        .route("/", get(home))
        .route("/me", get(me))
        .route("/stats.json", get(stats))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/devices/revoke", post(revoke))
        .route("/devices/revoke-others", post(revoke_others))
        .route("/devices/revoke-all", post(revoke_all))
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
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop the server with Ctrl-C");
                let _ = ctrl_c.await;
                return;
            }
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
    let devices = match devices_of(&app, &session, &name).await {
        Ok(devices) => devices,
        Err(response) => return response,
    };
    let home = Home {
        name: &name,
        visits,
        devices: &devices,
    };
    Html(pages::home(&app.about(), &home).into_string()).into_response()
}

/// The rows of `user`'s devices panel, this request's session marked.
async fn devices_of(app: &App, session: &Session, user: &str) -> Result<Vec<Device>, Response> {
    let infos = app.devices.list(user).await.map_err(internal)?;
    let current = session.id().map(|id| SessionHandle::of(&id));
    let now = OffsetDateTime::now_utc();
    Ok(infos
        .into_iter()
        .map(|info| Device::of(info, current.as_ref(), now))
        .collect())
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
    headers: HeaderMap,
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
        if let Some(agent) = user_agent(&headers) {
            session.insert(USER_AGENT_KEY, agent).await?;
        }
        session.insert(VISITS, 0u64).await
    };
    match signed_in.await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => internal(e),
    }
}

/// The request's `User-Agent`, bounded, for the devices panel (none if absent or not text).
fn user_agent(headers: &HeaderMap) -> Option<String> {
    let agent = headers.get(header::USER_AGENT)?.to_str().ok()?;
    Some(bounded_user_agent(agent))
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

/// The signed-in user, or the 401 page.
async fn signed_in(session: &Session) -> Result<String, Response> {
    match session.get::<String>(NAME).await {
        Ok(Some(name)) => Ok(name),
        Ok(None) => Err(error_page(StatusCode::UNAUTHORIZED)),
        Err(e) => Err(internal(e)),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    handle: String,
}

/// Signs out one of the user's devices, named by its handle. A handle that is not one of this
/// user's live sessions — forged, already signed out, or another user's — is a 404 and revokes
/// nothing. Revoking this very device signs it out now.
async fn revoke(
    State(app): State<App>,
    session: Session,
    Form(form): Form<RevokeForm>,
) -> Response {
    let user = match signed_in(&session).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let Ok(handle) = form.handle.parse::<SessionHandle>() else {
        return error_page(StatusCode::BAD_REQUEST);
    };
    match app.devices.revoke(&user, &handle).await {
        Ok(true) => {}
        Ok(false) => return no_such_device(),
        Err(e) => return internal(e),
    }
    tracing::info!(%handle, "session revoked");
    if session.id().map(|id| SessionHandle::of(&id)) == Some(handle) {
        return sign_out(session).await;
    }
    Redirect::to("/").into_response()
}

/// 404: the handle names none of this user's live sessions.
fn no_such_device() -> Response {
    let page = pages::error(
        "No such device",
        "That device is not signed in to your account (any more). Go back to your devices.",
    );
    (StatusCode::NOT_FOUND, Html(page.into_string())).into_response()
}

/// "Sign out everywhere else": every session of the user but this one.
async fn revoke_others(State(app): State<App>, session: Session) -> Response {
    let user = match signed_in(&session).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let Some(id) = session.id() else {
        return error_page(StatusCode::UNAUTHORIZED);
    };
    match app.devices.revoke_all_except(&user, &id).await {
        Ok(count) => {
            tracing::info!(count, "other sessions of a user revoked");
            Redirect::to("/").into_response()
        }
        Err(e) => internal(e),
    }
}

/// "Sign out everywhere": every session of the user, this one included.
async fn revoke_all(State(app): State<App>, session: Session) -> Response {
    let user = match signed_in(&session).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    match app.devices.revoke_all(&user).await {
        Ok(count) => tracing::info!(count, "every session of a user revoked"),
        Err(e) => return internal(e),
    }
    sign_out(session).await
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
