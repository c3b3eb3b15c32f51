//! What every response gets (security headers, `no-store`), what every form post must pass
//! (a same-origin check against login CSRF), and the plain error pages that replace any
//! internal error text.

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::pages;

/// Scripts, styles and images from this origin only (no inline code), forms post here only,
/// and no other site may frame the pages (clickjacking).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to `response`. Pages carry a session, so nothing is cached
/// (`no-store`): a shared proxy or the back button must not show one user's page to another.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Refuses a cross-site form post (login CSRF: another site signing the visitor in as the
/// attacker, or out). Browsers mark every request with `Sec-Fetch-Site`, or at least send
/// `Origin` on a POST; a request with neither is not from a browser, so it cannot carry a
/// victim's cookies and passes. The same rule as Go's `http.CrossOriginProtection`.
pub async fn same_origin_posts(request: Request, next: Next) -> Response {
    if is_safe(request.method()) || is_same_origin(request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!(method = %request.method(), path = %request.uri().path(), "cross-origin form post refused");
    error_page(StatusCode::FORBIDDEN)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin_matches_host(origin, headers.get(header::HOST)),
    }
}

/// True if `origin` (`http://host:port`) names the host the request was sent to.
fn origin_matches_host(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(HeaderValue::to_str)) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// Gives every error response that is not already one of our pages the plain error page:
/// tower-sessions answers a failed session save with an empty 500 (after logging it), and
/// axum's extractors answer a bad form with their internal message as text.
pub async fn plain_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    if (status.is_client_error() || status.is_server_error()) && !is_page {
        return error_page(status);
    }
    response
}

/// A plain page for `status`: what happened and what to do, never internal error text (that
/// goes to the log).
pub fn error_page(status: StatusCode) -> Response {
    let (title, advice) = match status {
        StatusCode::NOT_FOUND => ("Not found", "There is no such page. Go back to the start."),
        StatusCode::FORBIDDEN => (
            "Refused",
            "This form was posted from another site. Sign in from this site's own page.",
        ),
        StatusCode::TOO_MANY_REQUESTS => (
            "Too many sign-ins",
            "Too many sign-ins from your address. Wait a minute and try again.",
        ),
        s if s.is_client_error() => ("Bad request", "The request could not be understood."),
        _ => (
            "Something went wrong",
            "The server could not complete this request. Try again in a moment.",
        ),
    };
    let body = Body::from(pages::error(title, advice).into_string());
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}
