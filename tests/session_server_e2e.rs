//! End to end: the session server (`strata-session-server`, the `session_server` example built
//! as a program) over loopback HTTP, killed with SIGKILL and started again on the same data
//! directory.
#![cfg(feature = "server")]

use std::{path::Path, time::Duration};

use strata::{DiskStore, ManualClock, Store};
use tower_sessions::{cookie::time, session::Record};

mod server_support;

use server_support::{command, me, Server};

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
            redis.raw(&["DBSIZE"]).trim(),
            ":0",
            "signing out deletes the session"
        );
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
