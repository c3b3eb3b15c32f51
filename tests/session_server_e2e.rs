//! End to end: the session server (`strata-session-server`, the `session_server` example built
//! as a program) over loopback HTTP, killed with SIGKILL and started again on the same data
//! directory.
#![cfg(feature = "server")]

use std::{path::Path, time::Duration};

use strata::{DiskStore, ManualClock, Store};
use tower_sessions::{cookie::time, session::Record};

mod server_support;

use server_support::{command, me, stored_records, stored_sessions, Request, Server};

const FIREFOX_ON_MAC: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0";
const CHROME_ON_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// Signs in as `name` from a browser sending `user_agent`; returns the session cookie.
fn sign_in_from(server: &Server, name: &str, user_agent: &str) -> String {
    let request = Request::new("POST", "/sign-in")
        .header("User-Agent", user_agent)
        .form(&format!("name={name}"));
    let reply = server.send(request);
    assert_eq!(reply.status, 303, "{}", reply.body);
    reply.cookie.expect("signing in sets the session cookie")
}

/// The rows of the devices panel on `page`.
fn device_rows(page: &str) -> usize {
    page.matches("<tr class=\"device").count()
}

/// The handles the page's "Revoke" buttons post (one per other device).
fn revoke_handles(page: &str) -> Vec<String> {
    page.split("name=\"handle\" value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// Posts `form` to `path` as the browser holding `cookie` would (same-origin).
fn post(server: &Server, path: &str, cookie: &str, form: &str) -> server_support::Reply {
    server.request("POST", path, Some(cookie), form)
}

/// The session id inside a cookie `id=...`: the secret that must never be printed.
fn session_id(cookie: &str) -> &str {
    cookie.strip_prefix("id=").unwrap()
}

#[test]
fn a_user_sees_every_device_and_revokes_another() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = sign_in_from(&server, "ada", FIREFOX_ON_MAC);
    let b = sign_in_from(&server, "ada", CHROME_ON_LINUX);
    server.get("/", &b);

    let page = server.get("/", &a).body;
    assert_eq!(device_rows(&page), 2, "{page}");
    assert!(
        page.contains("Firefox on macOS") && page.contains("Chrome on Linux"),
        "{page}"
    );
    assert_eq!(page.matches("this device").count(), 1, "{page}");
    for cookie in [&a, &b] {
        assert!(
            !page.contains(session_id(cookie)),
            "a session id is printed: {page}"
        );
    }
    let handles = revoke_handles(&page);
    assert_eq!(
        handles.len(),
        1,
        "one Revoke button, for the other device: {page}"
    );

    assert_eq!(
        post(
            &server,
            "/devices/revoke",
            &a,
            &format!("handle={}", handles[0])
        )
        .status,
        303
    );
    assert_eq!(
        me(&server, &b).status,
        401,
        "the revoked device is signed out"
    );
    let reply = server.get("/", &b);
    assert!(reply.body.contains("Sign in"), "{}", reply.body);
    let page = server.get("/", &a).body;
    assert_eq!(device_rows(&page), 1, "{page}");
    assert_eq!(
        me(&server, &a).status,
        200,
        "the revoking device stays signed in"
    );

    let log = server.kill_and_read_log();
    for cookie in [&a, &b] {
        assert!(
            !log.contains(session_id(cookie)),
            "a session id is logged: {log}"
        );
    }
    assert!(log.contains("session revoked"), "{log}");
}

/// The expiry date of the one stored session (the server must be stopped).
fn stored_expiry(dir: &Path) -> time::OffsetDateTime {
    let records = stored_records(dir);
    assert_eq!(records.len(), 1);
    records[0].expiry_date
}

#[test]
fn polling_the_live_panel_neither_saves_nor_extends_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cookie = server.sign_in("ada");
    server.kill();
    let signed_in = stored_expiry(dir.path());

    let server = Server::start(dir.path());
    for _ in 0..5 {
        assert_eq!(server.get("/stats.json", &cookie).status, 200);
        assert_eq!(me(&server, &cookie).status, 200);
    }
    server.kill();
    assert_eq!(
        stored_expiry(dir.path()),
        signed_in,
        "a poll saved the session (a forgotten tab would keep it alive forever)"
    );

    // The check can see a save: a page view, one restart later, moves the expiry on.
    let server = Server::start(dir.path());
    assert!(server.get("/", &cookie).body.contains("visit #1"));
    server.kill();
    assert!(stored_expiry(dir.path()) > signed_in);
}

#[test]
fn a_revoked_device_stays_signed_out_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = sign_in_from(&server, "ada", FIREFOX_ON_MAC);
    let b = sign_in_from(&server, "ada", CHROME_ON_LINUX);
    let handle = revoke_handles(&server.get("/", &a).body).remove(0);
    assert_eq!(
        post(&server, "/devices/revoke", &a, &format!("handle={handle}")).status,
        303
    );
    server.kill();

    let server = Server::start(dir.path());
    assert_eq!(me(&server, &b).status, 401);
    let page = server.get("/", &a).body;
    assert_eq!(
        device_rows(&page),
        1,
        "the index survived the restart too: {page}"
    );
}

#[test]
fn sign_out_everywhere_else_keeps_only_this_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = sign_in_from(&server, "ada", FIREFOX_ON_MAC);
    let b = sign_in_from(&server, "ada", CHROME_ON_LINUX);
    let c = server.sign_in("ada");
    assert_eq!(device_rows(&server.get("/", &a).body), 3);

    assert_eq!(post(&server, "/devices/revoke-others", &a, "").status, 303);
    assert_eq!(me(&server, &b).status, 401);
    assert_eq!(me(&server, &c).status, 401);
    assert_eq!(me(&server, &a).status, 200);
    let page = server.get("/", &a).body;
    assert_eq!(device_rows(&page), 1, "{page}");
    assert!(
        !page.contains("Sign out everywhere else"),
        "no other device left: {page}"
    );
}

#[test]
fn sign_out_everywhere_signs_out_this_device_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = sign_in_from(&server, "ada", FIREFOX_ON_MAC);
    let b = sign_in_from(&server, "ada", CHROME_ON_LINUX);
    let grace = server.sign_in("grace");

    let reply = post(&server, "/devices/revoke-all", &a, "");
    assert_eq!(reply.status, 303);
    let removal = reply.header("set-cookie").unwrap_or_default();
    assert!(
        removal.contains("Max-Age=0"),
        "the cookie is removed now: {removal}"
    );
    assert_eq!(me(&server, &a).status, 401);
    assert_eq!(me(&server, &b).status, 401);
    assert_eq!(
        me(&server, &grace).status,
        200,
        "another user is not signed out"
    );
    server.kill();
    assert_eq!(
        stored_sessions(dir.path()),
        1,
        "only grace's session is left"
    );
}

#[test]
fn a_forged_or_unknown_handle_is_refused_and_revokes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = sign_in_from(&server, "ada", FIREFOX_ON_MAC);
    let b = sign_in_from(&server, "ada", CHROME_ON_LINUX);
    let unknown = "0123456789abcdef0123456789abcdef";
    let cases = [
        ("handle=zzz".to_owned(), 400),
        ("handle=".to_owned(), 400),
        ("handle=%00%FF%FE".to_owned(), 400),
        (format!("handle={}", "f".repeat(10_000)), 400),
        (format!("handle={}", unknown.to_uppercase()), 400),
        // The session id itself is not a handle.
        (format!("handle={}", session_id(&b)), 400),
        (format!("handle={unknown}"), 404),
        ("nothing=here".to_owned(), 422),
        (String::new(), 422),
    ];
    for (form, status) in cases {
        let reply = post(&server, "/devices/revoke", &a, &form);
        assert_eq!(reply.status, status, "{form:.40}: {}", reply.body);
        assert!(
            reply.body.contains("<h1>"),
            "a plain page for {form:.40}: {}",
            reply.body
        );
    }
    let signed_out = server.request(
        "POST",
        "/devices/revoke",
        None,
        &format!("handle={unknown}"),
    );
    assert_eq!(signed_out.status, 401);
    assert_eq!(me(&server, &a).status, 200);
    assert_eq!(me(&server, &b).status, 200);
    assert_eq!(device_rows(&server.get("/", &a).body), 2);
}

#[test]
fn another_users_session_cannot_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ada = sign_in_from(&server, "ada", FIREFOX_ON_MAC);
    let grace = sign_in_from(&server, "grace", CHROME_ON_LINUX);
    let grace_phone = server.sign_in("grace");
    // Grace's page shows her other device's handle; ada learns it (a shared screen, a log).
    let handle = revoke_handles(&server.get("/", &grace).body).remove(0);
    let form = format!("handle={handle}");

    assert_eq!(post(&server, "/devices/revoke", &ada, &form).status, 404);
    assert_eq!(
        me(&server, &grace_phone).status,
        200,
        "grace's device is still signed in"
    );
    assert_eq!(device_rows(&server.get("/", &grace).body), 2);
    assert_eq!(
        device_rows(&server.get("/", &ada).body),
        1,
        "ada sees only her own"
    );
    // Ada's "sign out everywhere" reaches only ada.
    assert_eq!(post(&server, "/devices/revoke-all", &ada, "").status, 303);
    assert_eq!(me(&server, &grace).status, 200);
    assert_eq!(me(&server, &grace_phone).status, 200);
}

#[test]
fn a_cross_site_revoke_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = sign_in_from(&server, "ada", FIREFOX_ON_MAC);
    let b = sign_in_from(&server, "ada", CHROME_ON_LINUX);
    let handle = revoke_handles(&server.get("/", &a).body).remove(0);
    for (path, form) in [
        ("/devices/revoke", format!("handle={handle}")),
        ("/devices/revoke-others", String::new()),
        ("/devices/revoke-all", String::new()),
    ] {
        let request = Request::new("POST", path)
            .cookie(&a)
            .header("Origin", "http://evil.example")
            .header("Sec-Fetch-Site", "cross-site")
            .form(&form);
        assert_eq!(server.send(request).status, 403, "{path}");
    }
    assert_eq!(me(&server, &a).status, 200);
    assert_eq!(me(&server, &b).status, 200);
}

#[test]
fn a_session_and_its_counter_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert!(server.banner.contains("DiskStore"), "{}", server.banner);
    let cookie = server.sign_in("ada");
    assert!(server.get("/", &cookie).body.contains("visit #1"));
    assert!(server.get("/", &cookie).body.contains("visit #2"));
    server.kill();

    let server = Server::start(dir.path());
    assert!(
        server.banner.contains("1 sessions loaded"),
        "{}",
        server.banner
    );
    let reply = me(&server, &cookie);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"name":"ada","visits":2}"#);
    let reply = server.get("/", &cookie);
    assert!(
        reply.body.contains("Hello, ada") && reply.body.contains("visit #3"),
        "{}",
        reply.body
    );
    // The page shows the point: a new process, and the session is still there.
    assert!(
        reply.body.contains(&format!("(pid {})", server.pid()))
            && reply.body.contains("you are still signed in"),
        "{}",
        reply.body
    );
}

#[test]
fn the_live_panel_reports_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.request("GET", "/stats.json", None, "").status, 401);
    let cookie = server.sign_in("ada");
    server.sign_in("grace");
    let page = server.get("/", &cookie).body;
    assert!(
        page.contains("DiskStore in") && page.contains("/static/panel.js"),
        "{page}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&server.get("/stats.json", &cookie).body).unwrap();
    assert_eq!(stats["entries"], 2, "{stats}");
    assert!(stats["hits"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["disk_bytes"].as_u64().unwrap() > 0, "{stats}");
}

#[test]
fn sign_out_ends_the_session_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cookie = server.sign_in("grace");
    assert_eq!(me(&server, &cookie).status, 200);
    assert_eq!(
        server
            .request("POST", "/sign-out", Some(&cookie), "")
            .status,
        303
    );
    assert_eq!(me(&server, &cookie).status, 401);
    server.kill();
    let server = Server::start(dir.path());
    assert_eq!(
        me(&server, &cookie).status,
        401,
        "still signed out after a restart"
    );
}

/// Rewrites the one stored session with `clock`, giving it `expiry_date` and a store TTL.
fn rewrite_session(dir: &Path, clock: &ManualClock, expires_in: time::Duration, ttl: Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: DiskStore<String, Record> = DiskStore::builder()
            .dir(dir)
            .namespace("sessions")
            .clock(clock.clock())
            .open()
            .unwrap();
        let keys = Store::keys(&store).await.unwrap();
        assert_eq!(keys.len(), 1);
        let mut record = Store::get(&store, &keys[0]).await.unwrap().unwrap();
        record.expiry_date = time::OffsetDateTime::now_utc() + expires_in;
        Store::put(&store, keys[0].clone(), record, Some(ttl))
            .await
            .unwrap();
    });
}

#[test]
fn an_expired_session_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cookie = server.sign_in("ada");
    server.kill();

    // The record's own expiry date has passed (its store entry has not expired yet).
    let now = ManualClock::new();
    rewrite_session(
        dir.path(),
        &now,
        time::Duration::seconds(-1),
        Duration::from_secs(3600),
    );
    let server = Server::start(dir.path());
    assert_eq!(me(&server, &cookie).status, 401);
    let reply = server.get("/", &cookie);
    assert!(reply.body.contains("Sign in"), "{}", reply.body);
    assert_ne!(reply.cookie.as_deref(), Some(cookie.as_str()));
}

#[test]
fn a_session_whose_entry_expired_while_down_is_purged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cookie = server.sign_in("ada");
    server.kill();

    // Written two hours ago with a 30-minute TTL: the entry's deadline passed while the server
    // was down. The record's own date is still ahead, so only the store's expiry can refuse it.
    let two_hours_ago = ManualClock::starting_at(ManualClock::new().now_ms() - 7_200_000);
    rewrite_session(
        dir.path(),
        &two_hours_ago,
        time::Duration::hours(1),
        Duration::from_secs(1800),
    );
    let server = Server::start(dir.path());
    assert!(
        server
            .banner
            .contains("0 sessions loaded, 1 expired purged"),
        "{}",
        server.banner
    );
    assert_eq!(me(&server, &cookie).status, 401);
}

#[test]
fn tampered_cookies_get_a_fresh_session_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cookie = server.sign_in("ada");
    for bad in [
        "id=%00%01",
        "id=!!!!",
        "id=",
        &format!("{cookie}x"),
        &cookie[..cookie.len() - 2],
    ] {
        let reply = server.get("/", bad);
        assert_eq!(reply.status, 200, "cookie {bad:?}");
        assert!(
            reply.body.contains("Sign in"),
            "cookie {bad:?}: {}",
            reply.body
        );
    }
    assert_eq!(me(&server, &cookie).body, r#"{"name":"ada","visits":0}"#);
}

#[test]
fn a_second_server_on_the_same_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::start(dir.path());
    let out = command()
        .env("STRATA_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("locked by another process"), "{err}");
}

#[cfg(feature = "redis")]
mod support;

#[cfg(feature = "redis")]
mod redis {
    //! Sessions in Redis: shared by two servers, and kept through a SIGKILL of both.

    use crate::support;

    use super::*;

    fn start_on_redis(url: &str) -> Server {
        start_with_redis(url, "0")
    }

    /// A server on `url`; `replicated` is `STRATA_REPLICATED` ("1": a ReplicatedStore).
    fn start_with_redis(url: &str, replicated: &str) -> Server {
        Server::spawn(
            command()
                .env("STRATA_REDIS_URL", url)
                .env("STRATA_REPLICATED", replicated),
        )
    }

    /// After the last sign-out the Redis holds at most `user`'s empty roster, expiring within a
    /// minute.
    fn only_an_expiring_roster_is_left(redis: &support::RedisServer, user: &str) {
        let size = redis.raw(&["DBSIZE"]);
        if size == ":0" {
            return;
        }
        assert_eq!(size, ":1", "only the roster may be left");
        let pttl = redis.raw(&["PTTL", &format!("devices:{user}")]);
        let pttl: i64 = pttl.trim_start_matches(':').parse().unwrap();
        assert!((0..=60_000).contains(&pttl), "roster PTTL {pttl}");
    }

    #[test]
    fn a_server_keeps_its_sessions_in_the_master_its_sentinels_name() {
        use support::redis_sentinel::{Sentinels, MASTER_NAME};
        let set = Sentinels::start(Duration::from_secs(60));
        let server = Server::spawn(
            command()
                .env("STRATA_REDIS_SENTINELS", set.urls().join(","))
                .env("STRATA_REDIS_MASTER", MASTER_NAME),
        );
        assert!(server.banner.contains("via sentinels"), "{}", server.banner);
        let cookie = server.sign_in("ada");
        assert!(server.get("/", &cookie).body.contains("visit #1"));
        assert!(server.get("/", &cookie).body.contains("visit #2"));
        let stored = set.master.raw(&["KEYS", "sessions:*"]);
        assert!(stored.starts_with("sessions:"), "{stored:?}");
        server.kill();
    }

    /// Polls `done` every 20 ms until it holds; fails naming `what` after 30 s.
    fn within_30s(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn replicated_servers_on_sentinel_follow_a_failover() {
        use support::redis_sentinel::{Sentinels, MASTER_NAME};
        let set = Sentinels::start(Duration::from_secs(60));
        let start = || {
            Server::spawn(
                command()
                    .env("STRATA_REDIS_SENTINELS", set.urls().join(","))
                    .env("STRATA_REDIS_MASTER", MASTER_NAME)
                    .env("STRATA_REPLICATED", "1"),
            )
        };
        let a = start();
        let b = start();
        for banner in [&a.banner, &b.banner] {
            assert!(
                banner.contains("ReplicatedStore") && banner.contains("via sentinels"),
                "{banner}"
            );
        }
        let cookie = a.sign_in("ada");
        assert!(a.get("/", &cookie).body.contains("visit #1"));
        // B caches the session as it is now: one visit.
        assert_eq!(me(&b, &cookie).body, r#"{"name":"ada","visits":1}"#);
        let key = format!("sessions:{}", session_id(&cookie));
        within_30s("the session to reach the replica", || {
            set.replica.raw(&["EXISTS", &key]) == ":1"
        });
        let old_master = set.master.port();
        let reply = set.sentinel_raw(&["SENTINEL", "FAILOVER", MASTER_NAME]);
        assert!(reply.starts_with("+OK"), "{reply}");
        within_30s(
            "the replica to be promoted and the old master demoted",
            || {
                set.master_port() == Some(set.replica.port())
                    && set
                        .master
                        .try_raw(&["ROLE"])
                        .is_ok_and(|role| role.starts_with("slave"))
            },
        );
        assert_ne!(set.replica.port(), old_master);
        // A visit on A once A reaches the new master (refused while its link is down).
        within_30s("a page view on A after the failover", || {
            let page = a.get("/", &cookie);
            page.status == 200 && page.body.contains("visit #2")
        });
        // B must drop its one-visit copy: it reads what the new master holds.
        within_30s("B to see A's visit", || {
            me(&b, &cookie).body == r#"{"name":"ada","visits":2}"#
        });
        assert_eq!(
            set.replica.raw(&["EXISTS", &key]),
            ":1",
            "the session is on the new master"
        );
        a.kill();
        b.kill();
    }

    #[test]
    fn two_servers_share_sessions_through_redis() {
        let redis = support::RedisServer::start();
        let a = start_on_redis(&redis.url());
        let b = start_on_redis(&redis.url());
        assert!(a.banner.contains("RedisStore"), "{}", a.banner);
        let cookie = a.sign_in("ada");
        assert!(a.get("/", &cookie).body.contains("visit #1"));
        assert!(
            b.get("/", &cookie).body.contains("visit #2"),
            "node b sees node a's session"
        );
        a.kill();
        b.kill();
        let c = start_on_redis(&redis.url());
        assert_eq!(me(&c, &cookie).body, r#"{"name":"ada","visits":2}"#);
        assert_eq!(
            c.request("POST", "/sign-out", Some(&cookie), "").status,
            303
        );
        assert_eq!(
            redis.raw(&["EXISTS", &format!("sessions:{}", session_id(&cookie))]),
            ":0",
            "signing out deletes the session"
        );
        only_an_expiring_roster_is_left(&redis, "ada");
    }

    #[test]
    fn a_device_signed_in_on_one_server_is_listed_and_revoked_from_another() {
        let redis = support::RedisServer::start();
        for replicated in ["0", "1"] {
            let a = start_with_redis(&redis.url(), replicated);
            let b = start_with_redis(&redis.url(), replicated);
            let laptop = sign_in_from(&a, "ada", FIREFOX_ON_MAC);
            let phone = sign_in_from(&b, "ada", CHROME_ON_LINUX);
            assert_eq!(me(&b, &laptop).status, 200, "replicated={replicated}");
            let page = a.get("/", &laptop).body;
            assert_eq!(device_rows(&page), 2, "replicated={replicated}: {page}");
            let handle = revoke_handles(&page).remove(0);
            let form = format!("handle={handle}");
            assert_eq!(post(&a, "/devices/revoke", &laptop, &form).status, 303);
            assert_eq!(me(&b, &phone).status, 401, "replicated={replicated}");
            assert_eq!(me(&a, &phone).status, 401, "replicated={replicated}");
            assert_eq!(post(&b, "/devices/revoke-all", &laptop, "").status, 303);
            assert_eq!(me(&a, &laptop).status, 401, "replicated={replicated}");
            for cookie in [&laptop, &phone] {
                let key = format!("sessions:{}", session_id(cookie));
                assert_eq!(
                    redis.raw(&["EXISTS", &key]),
                    ":0",
                    "replicated={replicated}"
                );
            }
            only_an_expiring_roster_is_left(&redis, "ada");
        }
    }

    #[test]
    fn replicated_servers_share_sessions_and_redis_keeps_them() {
        let redis = support::RedisServer::start();
        let a = start_with_redis(&redis.url(), "1");
        let b = start_with_redis(&redis.url(), "1");
        assert!(a.banner.contains("ReplicatedStore"), "{}", a.banner);
        let cookie = a.sign_in("ada");
        // B has no copy yet: it reads Redis, then writes the visit through to it.
        assert_eq!(me(&b, &cookie).body, r#"{"name":"ada","visits":0}"#);
        assert!(b.get("/", &cookie).body.contains("visit #1"));
        a.kill();
        b.kill();
        let c = start_with_redis(&redis.url(), "1");
        assert_eq!(me(&c, &cookie).body, r#"{"name":"ada","visits":1}"#);
    }
}

/// SIGTERM: the server answers what is in flight, closes the data directory and exits 0; the
/// directory reopens with every acknowledged session, and a new server serves them.
#[test]
fn sigterm_closes_the_store_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cookies: Vec<String> = ["ada", "grace", "edsger"]
        .iter()
        .map(|name| server.sign_in(name))
        .collect();
    for cookie in &cookies {
        assert!(server.get("/", cookie).body.contains("visit #1"));
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "exit status {status}: {log}");
    assert!(log.contains("data directory closed"), "{log}");
    assert_eq!(stored_sessions(dir.path()), cookies.len());

    let server = Server::start(dir.path());
    for cookie in &cookies {
        assert!(server.get("/", cookie).body.contains("visit #2"));
    }
}

/// `GET /` per second, from `CLIENTS` threads, over `views` page views of the session `cookie`.
fn page_views_per_second(server: &Server, cookie: &str, views: usize) -> f64 {
    const CLIENTS: usize = 4;
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                for _ in 0..views / CLIENTS {
                    assert_eq!(server.get("/", cookie).status, 200);
                }
            });
        }
    });
    (views / CLIENTS * CLIENTS) as f64 / started.elapsed().as_secs_f64()
}

/// Issue 14's measurement: `GET /` per second for one signed-in session on a DiskStore, at its
/// first page views and after 20 000 (every view rewrites the session). Prints with
/// `STRATA_REPORT=1`; `STRATA_SERVER_BIN` runs another build of the server (to compare with).
/// `STRATA_REPORT=1 cargo test --release --all-features --test session_server_e2e -- --ignored page_view_rate`
#[test]
#[ignore = "a measurement, not a check"]
fn page_view_rate_after_20k_views_of_one_session() {
    const WINDOW: usize = 2_000;
    const VIEWS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let mut command = match std::env::var_os("STRATA_SERVER_BIN") {
        Some(bin) => server_support::command_for(&bin),
        None => command(),
    };
    let server = Server::spawn(command.env("STRATA_DATA_DIR", dir.path()));
    let cookie = server.sign_in("ada");
    let start = page_views_per_second(&server, &cookie, WINDOW);
    page_views_per_second(&server, &cookie, VIEWS - 2 * WINDOW);
    let after = page_views_per_second(&server, &cookie, WINDOW);
    let body = server.get("/", &cookie).body;
    assert!(body.contains("Hello, ada"), "{body}");
    if std::env::var_os("STRATA_REPORT").is_some_and(|v| v == "1") {
        println!(
            "GET / per second, DiskStore, one session: first {WINDOW} views {start:.0}/s, views {}..{VIEWS} {after:.0}/s (after/start {:.2})",
            VIEWS - WINDOW,
            after / start
        );
    }
}
