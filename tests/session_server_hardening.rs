//! The session server's hardening, each guarantee forced from outside the process: a private
//! data directory, no session before sign-in, a sign-in rate limit per client, cross-site posts
//! refused, cookie flags, security headers, plain error pages, secrets kept out of banners and
//! logs, and the listen address.
#![cfg(feature = "server")]

use std::{os::unix::fs::PermissionsExt, path::Path};

mod server_support;

use server_support::{command, me, refused_with, stored_sessions, Request, Server};

/// Every directory under `root` (itself included) is 0700 and every file 0600.
fn assert_private(root: &Path) {
    let meta = std::fs::metadata(root).unwrap();
    let mode = meta.permissions().mode() & 0o777;
    let want = if meta.is_dir() { 0o700 } else { 0o600 };
    assert_eq!(mode, want, "{} is {mode:o}", root.display());
    if meta.is_dir() {
        for entry in std::fs::read_dir(root).unwrap() {
            assert_private(&entry.unwrap().path());
        }
    }
}

#[test]
fn the_data_dir_is_0700_and_its_files_0600() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("strata-data");
    let server = Server::start(&dir);
    let cookie = server.sign_in("ada");
    server.get("/", &cookie);
    server.kill();
    assert_private(&dir);
}

#[test]
fn an_existing_world_readable_data_dir_is_tightened() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("strata-data");
    let server = Server::start(&dir);
    server.sign_in("ada");
    server.kill();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    Server::start(&dir).kill();
    assert_private(&dir);
}

#[test]
fn browsing_without_signing_in_stores_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for _ in 0..20 {
        let reply = server.request("GET", "/", None, "");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.cookie, None, "the sign-in page sets no cookie");
    }
    for (method, path, form) in [
        ("GET", "/me", ""),
        ("GET", "/stats.json", ""),
        ("POST", "/sign-in", "name="),
        ("POST", "/sign-out", ""),
        (
            "POST",
            "/devices/revoke",
            "handle=0123456789abcdef0123456789abcdef",
        ),
        ("POST", "/devices/revoke-others", ""),
        ("POST", "/devices/revoke-all", ""),
        ("GET", "/nowhere", ""),
    ] {
        let reply = server.request(method, path, None, form);
        assert_eq!(reply.cookie, None, "{method} {path} sets no cookie");
    }
    server.kill();
    assert_eq!(stored_sessions(dir.path()), 0);
}

#[test]
fn one_client_cannot_create_unlimited_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("STRATA_SIGN_IN_LIMIT", "5")]);
    let statuses: Vec<u16> = (0..20)
        .map(|i| {
            let reply = server.request("POST", "/sign-in", None, &format!("name=bot{i}"));
            if reply.status == 429 {
                let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "Retry-After: {retry}");
                assert_eq!(reply.cookie, None);
                assert!(reply.body.contains("Too many sign-ins"), "{}", reply.body);
            }
            reply.status
        })
        .collect();
    // A window boundary can fall inside the loop: at most twice the limit gets through.
    let allowed = statuses.iter().filter(|&&s| s == 303).count();
    assert!((5..=10).contains(&allowed), "{statuses:?}");
    assert_eq!(allowed + statuses.iter().filter(|&&s| s == 429).count(), 20);
    server.kill();
    assert_eq!(stored_sessions(dir.path()), allowed);
}

#[test]
fn a_cross_site_sign_in_or_sign_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let post = |headers: &[(&str, &str)]| {
        let mut request = Request::new("POST", "/sign-in").form("name=mallory");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        server.send(request)
    };
    for refused in [
        &[("Origin", "http://evil.example")][..],
        &[("Origin", "null")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "http://evil.example"),
        ],
    ] {
        let reply = post(refused);
        assert_eq!(reply.status, 403, "{refused:?}");
        assert_eq!(reply.cookie, None, "{refused:?}");
        assert!(!reply.body.contains("mallory"));
    }
    let origin = format!("http://{}", server.addr);
    assert_eq!(post(&[("Origin", &origin)]).status, 303);
    let cookie = post(&[("Sec-Fetch-Site", "same-origin")]).cookie.unwrap();

    let sign_out = Request::new("POST", "/sign-out")
        .cookie(&cookie)
        .header("Sec-Fetch-Site", "cross-site");
    assert_eq!(server.send(sign_out).status, 403);
    assert_eq!(me(&server, &cookie).status, 200, "still signed in");
    server.kill();
    assert_eq!(stored_sessions(dir.path()), 2);
}

fn set_cookie(server: &Server) -> String {
    let reply = server.request("POST", "/sign-in", None, "name=ada");
    reply.header("set-cookie").unwrap().to_owned()
}

#[test]
fn the_cookie_is_http_only_same_site_lax_and_secure_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cookie = set_cookie(&server);
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    server.kill();

    let server = Server::start_with(dir.path(), &[("STRATA_SECURE_COOKIE", "1")]);
    let cookie = set_cookie(&server);
    assert!(
        cookie.contains("Secure") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
}

#[test]
fn every_response_carries_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cookie = server.sign_in("ada");
    let replies = [
        server.request("GET", "/", None, ""),
        server.get("/", &cookie),
        server.get("/stats.json", &cookie),
        server.request("GET", "/me", None, ""),
        server.request("GET", "/nowhere", None, ""),
        server.request("POST", "/sign-in", None, "name=grace"),
        server.request("GET", "/static/style.css", None, ""),
    ];
    for reply in replies {
        let has = |name: &str, value: &str| {
            let got = reply.header(name);
            assert!(got.is_some_and(|v| v.contains(value)), "{name}: {got:?}");
        };
        has("cache-control", "no-store");
        has("x-content-type-options", "nosniff");
        has("x-frame-options", "DENY");
        has("referrer-policy", "no-referrer");
        has("content-security-policy", "frame-ancestors 'none'");
        has("content-security-policy", "default-src 'none'");
    }
}

#[test]
fn error_pages_are_plain_html() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let missing = server.request("GET", "/nowhere", None, "");
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("<h1>Not found</h1>"),
        "{}",
        missing.body
    );
    let unauthorized = server.request("GET", "/me", None, "");
    assert_eq!(unauthorized.status, 401);
    assert!(
        unauthorized.body.contains("<!DOCTYPE html>"),
        "{}",
        unauthorized.body
    );
    let bad_form = server.request("POST", "/sign-in", None, "nom=ada");
    assert_eq!(bad_form.status, 422);
    assert!(
        bad_form.body.contains("Bad request") && !bad_form.body.contains("missing field"),
        "{}",
        bad_form.body
    );
}

#[test]
fn names_are_limited_in_characters_and_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let e_acute = "%C3%A9";
    let cookie = server.sign_in(&e_acute.repeat(64));
    assert!(server.get("/", &cookie).body.contains(&"é".repeat(64)));
    let too_long = server.request(
        "POST",
        "/sign-in",
        None,
        &format!("name={}", e_acute.repeat(65)),
    );
    assert_eq!(too_long.status, 400);
    assert!(
        too_long.body.contains("1 to 64 characters"),
        "{}",
        too_long.body
    );

    let cookie = server.sign_in("%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    let page = server.get("/", &cookie).body;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
}

#[test]
fn port_alone_listens_on_loopback_and_strata_addr_picks_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut only_port = command();
    only_port
        .env_remove("STRATA_ADDR")
        .env("PORT", &port)
        .env("STRATA_DATA_DIR", dir.path());
    let server = Server::spawn(&mut only_port);
    assert_eq!(server.addr, format!("127.0.0.1:{port}"));
    server.kill();

    let mut host_and_port = command();
    host_and_port
        .env("STRATA_ADDR", "127.0.0.1")
        .env("PORT", &port)
        .env("STRATA_DATA_DIR", dir.path());
    assert_eq!(
        Server::spawn(&mut host_and_port).addr,
        format!("127.0.0.1:{port}")
    );
}

#[test]
fn a_bad_setting_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("STRATA_SECURE_COOKIE", "yes"),
        ("STRATA_SIGN_IN_LIMIT", "0"),
        ("STRATA_SESSION_IDLE_SECS", "soon"),
        ("STRATA_ADDR", "localhost:http"),
    ] {
        let err = refused_with(command().env("STRATA_DATA_DIR", dir.path()).env(var, value));
        assert!(err.contains(var), "{var}={value}: {err}");
    }
}

#[test]
fn session_ids_never_reach_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("RUST_LOG", "trace")]);
    let cookie = server.sign_in("ada");
    server.get("/", &cookie);
    me(&server, &cookie);
    server.get("/", &format!("{cookie}x"));
    server.request("POST", "/sign-out", Some(&cookie), "");
    me(&server, &cookie);
    let log = server.kill_and_read_log();
    assert!(log.contains("listening"), "logging is on: {log}");
    let id = cookie.strip_prefix("id=").unwrap();
    assert!(!log.contains(id), "the session id is in the log:\n{log}");
}

#[cfg(feature = "redis")]
mod support;

#[cfg(feature = "redis")]
mod redis {
    //! Secrets in the Redis URL, and a store that fails under the server.

    use super::{command, refused_with, support::RedisServer, Server};

    const PASSWORD: &str = "s3cret-pass";

    #[test]
    fn the_redis_password_never_reaches_the_banner_the_log_or_an_error() {
        let redis = RedisServer::start_with(&["--requirepass", PASSWORD]);
        let url = format!("redis://:{PASSWORD}@{}", redis.addr());
        let server = Server::spawn(command().env("STRATA_REDIS_URL", &url));
        assert!(server.banner.contains("***@"), "{}", server.banner);
        assert!(!server.banner.contains(PASSWORD), "{}", server.banner);
        let cookie = server.sign_in("ada");
        assert!(!server.get("/", &cookie).body.contains(PASSWORD));
        assert!(!server.kill_and_read_log().contains(PASSWORD));

        let wrong = format!("redis://:{PASSWORD}-wrong@{}", redis.addr());
        let err = refused_with(command().env("STRATA_REDIS_URL", &wrong));
        assert!(err.contains("***@"), "{err}");
        assert!(!err.contains(PASSWORD), "{err}");
    }

    #[test]
    fn a_sentinel_password_never_reaches_an_error() {
        let closed = super::support::redis_server::free_port();
        let sentinels = format!("redis://:{PASSWORD}@127.0.0.1:{closed}");
        for replicated in ["0", "1"] {
            let err = refused_with(
                command()
                    .env("STRATA_REPLICATED", replicated)
                    .env("STRATA_REDIS_SENTINELS", &sentinels)
                    .env("STRATA_REDIS_MASTER", "mymaster"),
            );
            assert!(
                err.contains("via sentinels"),
                "replicated={replicated}: {err}"
            );
            assert!(!err.contains(PASSWORD), "replicated={replicated}: {err}");
            let half = refused_with(
                command()
                    .env("STRATA_REPLICATED", replicated)
                    .env("STRATA_REDIS_SENTINELS", &sentinels),
            );
            assert!(half.contains("STRATA_REDIS_MASTER"), "{half}");
            assert!(!half.contains(PASSWORD), "{half}");
        }
    }

    #[test]
    fn a_failed_save_is_logged_and_answered_with_a_plain_page() {
        let mut redis = RedisServer::start();
        let server = Server::spawn(command().env("STRATA_REDIS_URL", redis.url()));
        let cookie = server.sign_in("ada");
        redis.kill();
        let reply = server.request("POST", "/sign-in", None, "name=grace");
        assert_eq!(reply.status, 500);
        assert!(
            reply.body.contains("Something went wrong"),
            "{}",
            reply.body
        );
        let reply = server.get("/", &cookie);
        assert_eq!(reply.status, 500);
        assert!(
            reply.body.contains("Something went wrong"),
            "{}",
            reply.body
        );
        let log = server.kill_and_read_log();
        assert!(log.contains("failed to save session"), "{log}");
        assert!(log.contains("session store error"), "{log}");
        let id = cookie.strip_prefix("id=").unwrap();
        assert!(!log.contains(id), "the session id is in the log:\n{log}");
    }
}
