//! RedisStore beyond the conformance suite: faults (Redis killed mid-load and restarted), auth,
//! bad data under our keys (garbage bytes, WRONGTYPE), counters as native Redis integers, and
//! keys that read naturally in `redis-cli`. Every test runs against a real `redis-server`.
#![cfg(feature = "redis")]

mod support;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use strata::{Error, Format, RedisStore, Store};
use support::{proxy::Proxy, redis_server::free_port, RedisServer};

const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

async fn open<V>(url: &str) -> strata::Result<RedisStore<String, V>>
where
    V: Serialize + serde::de::DeserializeOwned + Send + Sync,
{
    RedisStore::builder()
        .url(url)
        .namespace("test")
        .connect_timeout(Duration::from_secs(2))
        .command_timeout(COMMAND_TIMEOUT)
        .build()
        .await
}

/// One call of the load: ok, or a backend/timeout error, within its timeout plus a margin.
async fn checked_call(store: &RedisStore<String, String>, i: usize) -> bool {
    let key = format!("load{}", i % 100);
    let call = async {
        if i.is_multiple_of(2) {
            store.put(key, "v".into(), None).await
        } else {
            store.get(&key).await.map(|_| ())
        }
    };
    let limit = COMMAND_TIMEOUT + Duration::from_secs(1);
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(())) => true,
        Ok(Err(Error::Backend { .. } | Error::Timeout { .. })) => false,
        Ok(Err(other)) => panic!("unexpected error while Redis was away: {other}"),
        Err(_) => panic!("a call hung past its {COMMAND_TIMEOUT:?} timeout"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_killed_mid_load_and_restarted() {
    let mut server = RedisServer::start();
    let store = open::<String>(&server.url()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (oks, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (store, stop, oks, errors) =
                (store.clone(), stop.clone(), oks.clone(), errors.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let counter = if checked_call(&store, i).await {
                        &oks
                    } else {
                        &errors
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    i += 8;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let errors_while_down = errors.load(Ordering::Relaxed);
    server.restart();
    // The same store serves again once Redis is back, without being rebuilt.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store
        .put("after".into(), "restart".into(), None)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "store did not recover after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("no worker panicked");
    }
    assert!(errors_while_down > 0, "calls failed while Redis was down");
    assert!(oks.load(Ordering::Relaxed) > 0);
    let again = store.get(&"after".into()).await.unwrap();
    assert_eq!(again.as_deref(), Some("restart"));
}

#[tokio::test]
async fn redis_down_at_start_is_a_clear_error() {
    let port = free_port();
    let started = Instant::now();
    let err = open::<String>(&format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the connect timeout"
    );
    assert!(
        matches!(err, Error::Backend { .. } | Error::Timeout { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("running"), "says what to check: {text}");
}

#[tokio::test]
async fn wrong_password_is_a_clear_error_at_connect() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = |auth: &str| format!("redis://{auth}127.0.0.1:{}/", server.port());
    for auth in [":wrongpw@", ""] {
        let err = open::<String>(&url(auth)).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Backend { .. }), "{text}");
        assert!(text.contains("authentication failed"), "{text}");
        assert!(
            !text.contains("wrongpw"),
            "the password is not echoed: {text}"
        );
    }
    let store = open::<String>(&url(":s3cret@")).await.unwrap();
    store.put("k".into(), "v".into(), None).await.unwrap();
    assert_eq!(store.get(&"k".into()).await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn acl_user_in_the_url() {
    let server = RedisServer::start();
    let setup = [
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">app-pass",
        "~test:*",
        "+@all",
    ];
    assert_eq!(server.raw(&setup), "+OK");
    let url = |pass: &str| format!("redis://app:{pass}@127.0.0.1:{}/", server.port());
    let err = open::<String>(&url("nope")).await.unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    let store = open::<String>(&url("app-pass")).await.unwrap();
    store.put("k".into(), "v".into(), None).await.unwrap();
    assert_eq!(store.keys().await.unwrap(), ["k"]);
}

#[tokio::test]
async fn garbage_and_wrongtype_are_typed_errors_and_other_keys_still_work() {
    let server = RedisServer::start();
    let store = open::<String>(&server.url()).await.unwrap();
    store.put("good".into(), "fine".into(), None).await.unwrap();
    server.raw(&["SET", "test:garbage", "\u{7f}not strata"]);
    server.raw(&["SET", "test:digits", "12abc"]);
    server.raw(&["LPUSH", "test:list", "x"]);
    for key in ["garbage", "digits"] {
        match store.get(&key.into()).await {
            Err(Error::Decode(e)) => assert_eq!(e.key, format!("test:{key}")),
            other => panic!("expected a decode error naming the key, got {other:?}"),
        }
    }
    let err = store.get(&"list".into()).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert!(matches!(
        store.take(&"list".into()).await,
        Err(Error::Backend { .. })
    ));
    let many = store.get_many(&["good".into(), "garbage".into()]).await;
    assert!(matches!(many, Err(Error::Decode { .. })), "{many:?}");
    assert_eq!(
        store.get(&"good".into()).await.unwrap().as_deref(),
        Some("fine")
    );
    assert_eq!(
        store.count().await.unwrap(),
        4,
        "foreign values are still keys"
    );
    assert_eq!(store.clear().await.unwrap(), 4);
}

#[tokio::test]
async fn keys_and_counters_read_naturally_in_redis_cli() {
    let server = RedisServer::start();
    let store = open::<i64>(&server.url()).await.unwrap();
    store
        .put("hits".into(), 5, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(store.incr(&"hits".into(), 2).await.unwrap(), 7);
    assert_eq!(server.raw(&["GET", "test:hits"]), "7");
    server.raw(&["INCRBY", "test:hits", "10"]);
    assert_eq!(store.get(&"hits".into()).await.unwrap(), Some(17));
    let text = open::<String>(&server.url()).await.unwrap();
    text.put("word".into(), "hello".into(), None).await.unwrap();
    assert_eq!(server.raw(&["EXISTS", "test:word"]), ":1");
    let err = store.incr(&"word".into(), 1).await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
}

#[tokio::test]
async fn narrow_counters_refuse_to_leave_their_range_atomically() {
    let server = RedisServer::start();
    let store = open::<u8>(&server.url()).await.unwrap();
    store.put("n".into(), 250, None).await.unwrap();
    assert_eq!(store.incr(&"n".into(), 5).await.unwrap(), 255);
    assert!(matches!(
        store.incr(&"n".into(), 1).await,
        Err(Error::Overflow { .. })
    ));
    assert!(matches!(
        store.decr(&"n".into(), 256).await,
        Err(Error::Overflow { .. })
    ));
    assert_eq!(
        store.get(&"n".into()).await.unwrap(),
        Some(255),
        "unchanged"
    );
    assert!(matches!(
        store.incr(&"fresh".into(), 300).await,
        Err(Error::Overflow { .. })
    ));
    assert_eq!(
        server.raw(&["EXISTS", "test:fresh"]),
        ":0",
        "no counter left behind"
    );
    let unsigned = open::<u64>(&server.url()).await.unwrap();
    assert!(matches!(
        unsigned.decr(&"u".into(), 1).await,
        Err(Error::Overflow { .. })
    ));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Session {
    user: String,
    visits: u32,
}

/// A value the format cannot write (JSON object keys must be strings) is an encode error that
/// names the full key, and nothing is written.
#[tokio::test]
async fn a_value_that_cannot_be_encoded_is_an_error_naming_the_key() {
    let server = RedisServer::start();
    let store = RedisStore::<String, std::collections::HashMap<(u8, u8), u8>>::builder()
        .url(server.url())
        .namespace("grid")
        .format(Format::Json)
        .build()
        .await
        .unwrap();
    let value = [((1, 2), 3)].into_iter().collect();
    match store.put("cell".into(), value, None).await {
        Err(Error::Encode(e)) => assert_eq!(e.key, "grid:cell"),
        other => panic!("expected an encode error naming the key, got {other:?}"),
    }
    assert_eq!(server.raw(&["EXISTS", "grid:cell"]), ":0");
}

#[tokio::test]
async fn json_format_and_namespaces_share_one_connection() {
    let server = RedisServer::start();
    let store = RedisStore::<String, Session>::builder()
        .url(server.url())
        .namespace("sessions")
        .format(Format::Json)
        .scan_batch(2)
        .build()
        .await
        .unwrap();
    let ada = Session {
        user: "ada".into(),
        visits: 3,
    };
    store.put("abc".into(), ada, None).await.unwrap();
    assert!(server
        .raw(&["GET", "sessions:abc"])
        .contains(r#"{"user":"ada","visits":3}"#));
    let other = store
        .with_namespace(&strata::Namespace::new("other").unwrap())
        .unwrap();
    assert_eq!(other.namespace().as_str(), "other");
    for i in 0..7 {
        other
            .put(
                format!("k{i}"),
                Session {
                    user: "x".into(),
                    visits: i,
                },
                None,
            )
            .await
            .unwrap();
    }
    assert_eq!(other.count().await.unwrap(), 7, "SCAN pages of 2");
    assert_eq!(store.keys().await.unwrap(), ["abc"]);
    assert_eq!(other.clear().await.unwrap(), 7);
    assert_eq!(
        store.get(&"abc".into()).await.unwrap().map(|s| s.visits),
        Some(3)
    );
}

#[tokio::test]
async fn invalid_urls_are_config_errors() {
    for url in ["http://127.0.0.1:1/", "not a url"] {
        let err = open::<String>(url).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig(ref e) if e.option == "url"),
            "{err}"
        );
    }
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir`; returns the CA's PEM.
#[cfg(feature = "tls")]
fn write_test_certs(dir: &std::path::Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    ca_cert.pem()
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn rediss_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let ca = write_test_certs(certs.path());
    let file = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let tls_port = free_port().to_string();
    let (cert, key, ca_file) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let _server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    let untrusted = open::<String>(&url).await.unwrap_err();
    assert!(matches!(untrusted, Error::Backend { .. }), "{untrusted}");
    let store = RedisStore::<String, String>::builder()
        .url(&url)
        .namespace("test")
        .tls_root_cert(ca)
        .build()
        .await
        .unwrap();
    store
        .put("k".into(), "over tls".into(), None)
        .await
        .unwrap();
    assert_eq!(
        store.get(&"k".into()).await.unwrap().as_deref(),
        Some("over tls")
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_at_connect() {
    // Accepts TCP connections (the kernel does) but never speaks Redis.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", silent.local_addr().unwrap());
    let started = Instant::now();
    let err = RedisStore::<String, String>::builder()
        .url(url)
        .connect_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(
        elapsed < Duration::from_secs(2),
        "gave up after {elapsed:?}"
    );
}

/// A server that stops answering (frozen with SIGSTOP, as a hung host is) costs a call its
/// timeout, not a hang; once it runs again the same store serves. The freeze is in effect
/// before the call is made (a `DEBUG SLEEP` sent from another thread 100 ms earlier was a window
/// a loaded machine could miss), and the call's own `Timeout` error plus the lower bound prove
/// the timeout; the upper bound only turns a hang into a failure (no timed asserts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_is_a_timeout_then_serves_again() {
    let server = RedisServer::start();
    let store = open::<String>(&server.url()).await.unwrap();
    store.put("k".into(), "v".into(), None).await.unwrap();
    server.pause();
    let started = Instant::now();
    let err = store.get(&"k".into()).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(took >= COMMAND_TIMEOUT, "not before the timeout: {took:?}");
    assert!(took < Duration::from_secs(60), "hung: {took:?}");
    server.resume();
    assert_eq!(store.get(&"k".into()).await.unwrap().as_deref(), Some("v"));
}

/// Issue 12 item 9: `u64` counters went through Lua, whose numbers are doubles, so totals
/// above 2^53 came back rounded. Every total around 2^53 must be exact, and a stored value
/// above `i64::MAX` (Redis' counter range) is refused as an overflow, never wrapped or rounded.
#[tokio::test]
async fn u64_counter_totals_above_2_pow_53_are_not_rounded() {
    let server = RedisServer::start();
    let store = open::<u64>(&server.url()).await.unwrap();
    let start = (1u64 << 53) - 2;
    store.put("big".into(), start, None).await.unwrap();
    for step in 1..=4u64 {
        let total = store.incr(&"big".into(), 1).await.unwrap();
        assert_eq!(total, start + step, "total after {step} increments");
    }
    assert_eq!(server.raw(&["GET", "test:big"]), "9007199254740994");
    assert_eq!(store.decr(&"big".into(), 3).await.unwrap(), (1 << 53) - 1);
    let ttl = Some(Duration::from_secs(60));
    let fresh = store
        .incr_with_ttl(&"fresh".into(), (1 << 53) + 1, ttl)
        .await;
    assert_eq!(fresh.unwrap(), (1 << 53) + 1);
    store.put("max".into(), u64::MAX, None).await.unwrap();
    let err = store.incr(&"max".into(), 1).await.unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
    assert_eq!(store.get(&"max".into()).await.unwrap(), Some(u64::MAX));
    store
        .put("top".into(), i64::MAX as u64, None)
        .await
        .unwrap();
    let err = store.incr(&"top".into(), 1).await.unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
}

/// Black-holes every connection `store` has through `proxy`: the next call times out, the one
/// after it is served on a new connection through the proxy.
async fn black_hole_costs_one_timeout(
    store: &RedisStore<String, String>,
    proxy: &support::proxy::Proxy,
) {
    store.put("k".into(), "v".into(), None).await.unwrap();
    let before = proxy.accepted();
    proxy.black_hole();
    let err = store.get(&"k".into()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let again = store.get(&"k".into()).await;
    assert_eq!(
        again.unwrap().as_deref(),
        Some("v"),
        "served on a new connection"
    );
    assert!(proxy.accepted() > before, "reconnected through the proxy");
}

/// Issue 12 item 8: after a silent network failure (the peer stops answering without closing)
/// every call timed out, but nothing reconnected, so the store stayed unusable until TCP gave
/// up (minutes). A call that times out must lead to a reconnect: the call after it serves
/// again, so the store is back within 2 × `command_timeout` + connect time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_replaced_after_one_timeout() {
    let server = RedisServer::start();
    let proxy = support::proxy::Proxy::start(server.addr());
    let store = open::<String>(&proxy.url()).await.unwrap();
    black_hole_costs_one_timeout(&store, &proxy).await;
    for i in 0..20 {
        let key = format!("after{i}");
        store.put(key.clone(), "w".into(), None).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().as_deref(), Some("w"));
    }
}

/// A connection the network resets (the proxy closes it both ways) is replaced: at most the
/// call that finds it broken fails, the next one is served on a new connection. The store waits
/// up to 5 s per call (a reset is seen at once, not by a timeout): with `open`'s 300 ms, the
/// next call's wait for the reconnect timed out once at load 12.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_costs_at_most_one_call() {
    let server = RedisServer::start();
    let proxy = support::proxy::Proxy::start(server.addr());
    let store = open_patient(&proxy.url()).await;
    store.put("k".into(), "v".into(), None).await.unwrap();
    for round in 0..3 {
        let before = proxy.accepted();
        proxy.cut_all();
        if let Err(e) = store.get(&"k".into()).await {
            assert!(matches!(e, Error::Backend { .. }), "round {round}: {e}");
        }
        let again = store.get(&"k".into()).await.unwrap();
        assert_eq!(again.as_deref(), Some("v"), "round {round}");
        assert!(proxy.accepted() > before, "round {round}: reconnected");
    }
}

/// A store whose calls wait up to 5 s: long enough for a reconnect through the proxy on a loaded
/// machine, so a test fails only when a call waits for a reconnect that never comes.
async fn open_patient(url: &str) -> RedisStore<String, String> {
    RedisStore::builder()
        .url(url)
        .namespace("test")
        .connect_timeout(Duration::from_secs(5))
        .command_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

/// Polls `call` once: `Pending` means it is waiting on something.
async fn poll_once<F: Future>(mut call: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(move |cx| Poll::Ready(call.as_mut().poll(cx))).await
}

/// Breaks the connection `store` has through `proxy` and lets a call find it broken, so the
/// store starts connecting a replacement (on the calling runtime); returns once that connect is
/// parked in the proxy, where it stays until `proxy.park_new(false)`.
async fn break_and_park_the_reconnect(store: &RedisStore<String, String>, proxy: &Proxy) {
    store.put("k".into(), "v".into(), None).await.unwrap();
    proxy.park_new(true);
    proxy.cut_all();
    let _ = store.get(&"k".into()).await;
    proxy.wait_parked(1, Duration::from_secs(10)).await;
}

/// The calls made after a reconnect attempt failed get its error at once, until one succeeds;
/// an attempt that timed out must not read as the call's own command timeout ("timed out after
/// 5s while GET ...": the call did not wait) but say that reconnecting failed. The attempt is
/// parked in the proxy until the 300 ms connect timeout ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_given_a_failed_reconnects_error_is_not_told_its_command_timed_out() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let store = RedisStore::builder()
        .url(proxy.url())
        .connect_timeout(Duration::from_millis(300))
        .command_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    break_and_park_the_reconnect(&store, &proxy).await;
    let got = tokio::time::timeout(Duration::from_secs(60), store.get(&"k".into())).await;
    match got {
        Ok(Err(Error::Timeout(e))) => panic!("a command timeout it did not wait for: {e}"),
        Ok(Err(e)) => {
            assert!(e.is_transient(), "{e}");
            let text = format!("{e} {:?}", std::error::Error::source(&e));
            assert!(
                text.contains("reconnect"),
                "says reconnecting failed: {text}"
            );
        }
        other => panic!("the failed attempt's error: {other:?}"),
    }
}

/// A call made while the replacement of a broken connection is still connecting waits for it
/// instead of failing. The replacement's connect is parked in the proxy, so the call is made
/// (polled once, and left waiting) inside the reconnect window, which only then ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_while_reconnecting_waits_for_the_new_connection() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let store = open_patient(&proxy.url()).await;
    break_and_park_the_reconnect(&store, &proxy).await;
    let key = "k".to_string();
    let mut call = std::pin::pin!(store.get(&key));
    let first = poll_once(call.as_mut()).await;
    assert!(first.is_pending(), "waits for the reconnect: {first:?}");
    proxy.park_new(false);
    let again = call.await;
    assert_eq!(again.unwrap().as_deref(), Some("v"), "waited, then served");
}

/// A runtime of its own, as a user's per-request runtime or a test's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A store outlives runtimes, but the task replacing a broken connection runs on the runtime of
/// the call that found it broken. That runtime shut down while the task was connecting (parked
/// in the proxy), which dropped the task: the store stayed "connecting" for good and every
/// later call, on any runtime, waited out its timeout. The next call must start a new reconnect
/// on its own runtime and be served.
#[test]
fn a_reconnect_dropped_with_its_runtime_is_started_again_by_the_next_call() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let first = runtime();
    let store = first.block_on(open_patient(&proxy.url()));
    first.block_on(break_and_park_the_reconnect(&store, &proxy));
    drop(first);
    proxy.park_new(false);
    let got = runtime().block_on(store.get(&"k".into()));
    assert_eq!(
        got.unwrap().as_deref(),
        Some("v"),
        "served on a new runtime"
    );
}

/// As above, with a call on another runtime already waiting for the reconnect when the runtime
/// running it shuts down: the waiting call is woken and starts a new reconnect itself.
#[test]
fn a_call_waiting_for_a_reconnect_dropped_with_its_runtime_starts_a_new_one() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let first = runtime();
    let store = first.block_on(open_patient(&proxy.url()));
    first.block_on(break_and_park_the_reconnect(&store, &proxy));
    runtime().block_on(async {
        let key = "k".to_string();
        let mut call = std::pin::pin!(store.get(&key));
        let polled = poll_once(call.as_mut()).await;
        assert!(polled.is_pending(), "waits for the reconnect: {polled:?}");
        // Dropped on a thread of its own: a runtime cannot be dropped inside another's context.
        std::thread::spawn(move || drop(first)).join().unwrap();
        proxy.park_new(false);
        let got = call.await;
        assert_eq!(got.unwrap().as_deref(), Some("v"), "woken, then served");
    });
}

/// A call restarts a dropped reconnect at most once: if the reconnect it started is dropped
/// unfinished too (its own runtime is shutting down), it fails instead of starting tasks that
/// never run. Forced by polling one call on three runtimes: it starts waiting on B for the
/// reconnect running on A; A is dropped, so the call, polled once on X, restarts the reconnect
/// there; X is dropped, and the call, back on B, must fail at once (and the next one is served).
#[test]
fn a_call_whose_restarted_reconnect_is_dropped_too_fails_instead_of_restarting_again() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let first = runtime();
    let store = first.block_on(open_patient(&proxy.url()));
    first.block_on(break_and_park_the_reconnect(&store, &proxy));
    let b = runtime();
    let key = "k".to_string();
    let mut call = Box::pin(store.get(&key));
    let polled = b.block_on(poll_once(call.as_mut()));
    assert!(
        polled.is_pending(),
        "waits for the reconnect on A: {polled:?}"
    );
    drop(first);
    let x = runtime();
    let polled = x.block_on(poll_once(call.as_mut()));
    assert!(
        polled.is_pending(),
        "restarted the reconnect on X: {polled:?}"
    );
    drop(x);
    let accepted = proxy.accepted();
    let failed = b.block_on(call);
    let e = failed.expect_err("its own reconnect was dropped unfinished");
    assert!(
        matches!(e, Error::Backend { .. }) && e.to_string().contains("dropped unfinished"),
        "{e}"
    );
    assert_eq!(
        proxy.accepted(),
        accepted,
        "no third reconnect started by that call"
    );
    proxy.park_new(false);
    let got = b.block_on(store.get(&"k".into()));
    assert_eq!(
        got.unwrap().as_deref(),
        Some("v"),
        "the next call is served"
    );
}

/// A runtime whose worker threads run its tasks whether or not anything blocks on it.
fn driven_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Builds the store from `open` on a current-thread runtime and lets a call there find its
/// connection broken, so the reconnect task is spawned there; returns once that task's connect
/// is parked in the proxy, then lets connections through. The runtime is returned alive but
/// idle (no `block_on` runs on it): the task is starved, neither run nor dropped.
fn starve_a_reconnect(
    proxy: &Proxy,
    open: impl Future<Output = RedisStore<String, String>>,
) -> (tokio::runtime::Runtime, RedisStore<String, String>) {
    let idle = runtime();
    let store = idle.block_on(open);
    idle.block_on(break_and_park_the_reconnect(&store, proxy));
    proxy.park_new(false);
    (idle, store)
}

/// The reconnect task runs on the runtime of the call that found the connection broken. When
/// that runtime is a current-thread runtime kept alive but not driven (a `Runtime` kept in a
/// struct after its `block_on` returned), the task never runs, and every call on every other
/// runtime waited out its timeout, for as long as that runtime lived. A call on another runtime
/// must take the reconnect over and be served within its timeout.
#[test]
fn a_reconnect_starved_by_an_idle_runtime_is_taken_over_by_a_call_on_another() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let (idle, store) = starve_a_reconnect(&proxy, open_patient(&proxy.url()));
    let other = runtime();
    for call in 0..2 {
        let got = other.block_on(store.get(&"k".into()));
        assert_eq!(
            got.unwrap().as_deref(),
            Some("v"),
            "call {call} on another runtime while the reconnecting one idles"
        );
    }
    drop(idle);
}

/// A reconnect task whose runtime starved it while it backed off after a failed attempt, and
/// that another call replaced meanwhile, makes no attempt more when its runtime runs again: it
/// checks that it is still in charge before each attempt (the proxy counts the connections).
#[test]
fn a_replaced_reconnect_that_runs_again_makes_no_further_attempt() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let other = driven_runtime();
    let store = other.block_on(open_patient(&proxy.url()));
    other
        .block_on(store.put("k".into(), "v".into(), None))
        .unwrap();
    let idle = runtime();
    proxy.refuse_new(true);
    proxy.cut_all();
    // On `idle`: the call that finds the connection broken starts the reconnect there, and the
    // next one returns the failed attempt's error, after which the task backs off.
    let _ = idle.block_on(store.get(&"k".into()));
    let failed = idle.block_on(store.get(&"k".into()));
    assert!(failed.is_err(), "the attempt was refused: {failed:?}");
    proxy.refuse_new(false);
    let got = other.block_on(async {
        // Past the 1 s after which a call replaces a task that has not run (nothing on `idle`
        // runs meanwhile, so this is exact).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        store.get(&"k".into()).await
    });
    assert_eq!(got.unwrap().as_deref(), Some("v"), "taken over");
    let accepted = proxy.accepted();
    let metrics = idle.metrics();
    idle.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while metrics.num_alive_tasks() > 0 {
            assert!(Instant::now() < deadline, "the replaced task did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert_eq!(
        proxy.accepted(),
        accepted,
        "no connection by the replaced task"
    );
}

/// After a call took a starved reconnect over, the starved task may run again (its runtime is
/// driven for a while) and finish connecting. It must drop that connection, not install it over
/// the newer one: its driver task runs on that runtime, idle again afterwards, so every call
/// would time out on it.
#[test]
fn a_starved_reconnect_that_runs_again_keeps_the_newer_connection() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    // A connect timeout far longer than the test, so the starved connect, run again, connects.
    let open = RedisStore::builder()
        .url(proxy.url())
        .namespace("test")
        .connect_timeout(Duration::from_secs(60))
        .command_timeout(Duration::from_secs(5))
        .build();
    let (idle, store) = starve_a_reconnect(&proxy, async { open.await.unwrap() });
    let other = driven_runtime();
    let got = other.block_on(store.get(&"k".into()));
    assert_eq!(got.unwrap().as_deref(), Some("v"), "taken over");
    // Run the starved runtime until its old task has ended (it logs on this thread either way).
    let (logs, _capture) = support::log_capture::start();
    idle.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = logs.text();
            if text.contains("reconnected to Redis")
                || text.contains("taken over by another call ended")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the old reconnect did not end: {text}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    for call in 0..2 {
        let got = other.block_on(store.get(&"k".into()));
        assert_eq!(
            got.unwrap().as_deref(),
            Some("v"),
            "call {call}: served on the newer connection while the old task's runtime idles again"
        );
    }
    let got = idle.block_on(store.get(&"k".into()));
    assert_eq!(
        got.unwrap().as_deref(),
        Some("v"),
        "and on the old task's runtime"
    );
    drop(idle);
}

/// While no connection can be made (the proxy closes every new one at once), calls fail within
/// their timeout, never hang; the store keeps trying in the background and serves again as soon
/// as connections are accepted, without being rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_connections_are_refused_calls_fail_fast_and_the_store_keeps_trying() {
    let server = RedisServer::start();
    let proxy = support::proxy::Proxy::start(server.addr());
    let store = open::<String>(&proxy.url()).await.unwrap();
    store.put("k".into(), "v".into(), None).await.unwrap();
    proxy.refuse_new(true);
    proxy.cut_all();
    let refused_from = proxy.accepted();
    for i in 0..10 {
        assert!(
            !checked_call(&store, i).await,
            "call {i} served with no connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        proxy.accepted() >= refused_from + 2,
        "tried to reconnect more than once"
    );
    proxy.refuse_new(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.get(&"k".into()).await {
            Ok(value) => break assert_eq!(value.as_deref(), Some("v")),
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 12 item 8, on a Redis Cluster: the cluster client's per-node connections retry a timed
/// out command on the same silent connection, so a black-holed node stayed unusable. A one-node
/// cluster announces the proxy's port, so every connection the client makes goes through the
/// proxy; black-holing it must cost one timed-out call, then the store serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_cluster_connection_is_replaced_after_one_timeout() {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let proxy = support::proxy::Proxy::start(server.addr());
    let announce = proxy.addr().port().to_string();
    for (name, value) in [
        ("cluster-announce-ip", "127.0.0.1"),
        ("cluster-announce-port", &announce),
    ] {
        assert!(server
            .raw(&["CONFIG", "SET", name, value])
            .starts_with("+OK"));
    }
    assert!(server
        .raw(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .starts_with("+OK"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .raw(&["CLUSTER", "INFO"])
        .contains("cluster_state:ok")
    {
        assert!(Instant::now() < deadline, "cluster_state:ok not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store: RedisStore<String, String> = RedisStore::builder()
        .cluster([proxy.url()])
        .namespace("test")
        .connect_timeout(Duration::from_secs(2))
        .command_timeout(COMMAND_TIMEOUT)
        .build()
        .await
        .unwrap();
    black_hole_costs_one_timeout(&store, &proxy).await;
}

/// A builder's `Debug` (e.g. in a startup log of the config) never shows the password.
#[test]
fn builder_debug_never_shows_the_password() {
    let builder =
        RedisStore::<String, String>::builder().url("redis://ada:s3cret-pw@127.0.0.1:6379/");
    let shown = format!("{builder:?}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(shown.contains("127.0.0.1:6379"), "{shown}");
}

/// The cluster slot of `key`, as the cluster itself computes it (`CLUSTER KEYSLOT`).
async fn cluster_keyslot(url: &str, key: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A subscription to `channel` on one cluster node.
async fn subscribe(url: &str, channel: &str) -> redis::aio::PubSub {
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    pubsub
}

/// The next message on each subscription, within a bound (the notice is sent before the
/// call returns, so it is on its way; the bound only keeps a lost one from hanging the test).
async fn next_payloads(subs: &mut [redis::aio::PubSub]) -> Vec<Vec<u8>> {
    use futures_util::StreamExt;
    let mut payloads = Vec::new();
    for sub in subs.iter_mut() {
        let mut messages = sub.on_message();
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next());
        let msg = next.await.expect("the notice reached every node").unwrap();
        payloads.push(msg.get_payload_bytes().to_vec());
    }
    payloads
}

/// The known bug: on a Redis Cluster `put_and_notify` and `delete_and_notify` sent the write and
/// its `PUBLISH` as one pipeline, which the cluster client refuses when the key and the channel
/// hash to different slots. Now the pipeline goes to the key's master, whose cluster bus carries
/// the `PUBLISH` to every node: subscribers on every master hear it, and the write is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_put_and_delete_with_a_notice_write_and_reach_every_node() {
    let cluster = support::redis_cluster::shared();
    let urls = cluster.urls();
    let store = RedisStore::<String, String>::builder()
        .cluster(urls.clone())
        .namespace("notify")
        .command_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let (key, channel) = ("session-1".to_string(), "notify-changes");
    let key_slot = cluster_keyslot(&urls[0], "notify:session-1").await;
    assert_ne!(key_slot, cluster_keyslot(&urls[0], channel).await);
    let mut subs = Vec::new();
    for url in &urls {
        subs.push(subscribe(url, channel).await);
    }
    let put = strata::Notice {
        channel,
        payload: b"put",
    };
    let sent = store
        .put_and_notify(
            key.clone(),
            "ada".into(),
            Some(Duration::from_secs(60)),
            put,
        )
        .await
        .unwrap();
    assert!(sent, "the notice went with the write");
    assert_eq!(next_payloads(&mut subs).await, vec![b"put".to_vec(); 3]);
    assert_eq!(store.get(&key).await.unwrap().as_deref(), Some("ada"));
    let delete = strata::Notice {
        channel,
        payload: b"delete",
    };
    let (removed, sent) = store.delete_and_notify(&key, delete).await.unwrap();
    assert!(removed && sent);
    assert_eq!(next_payloads(&mut subs).await, vec![b"delete".to_vec(); 3]);
    assert_eq!(store.get(&key).await.unwrap(), None);
}

/// `MONITOR` on one cluster node: the commands it runs, in order, read once a marker sent after
/// them comes through (a node logs the commands it runs in the order it runs them).
struct Monitor {
    port: u16,
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Monitor {
    fn start(port: u16) -> Self {
        use std::io::{BufRead, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"*1\r\n$7\r\nMONITOR\r\n").unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok).unwrap();
        assert_eq!(ok.trim_end(), "+OK", "MONITOR on {port}");
        Monitor { port, reader }
    }

    /// The arguments of every `command` the node ran since `start` whose first key starts with
    /// `prefix`.
    fn ran(mut self, command: &str, prefix: &str) -> Vec<Vec<String>> {
        use std::io::BufRead;
        let marker = format!("monitor-marker-{}", self.port);
        RedisServer::raw_at(self.port, &["ECHO", &marker]);
        let mut found = Vec::new();
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).unwrap();
            assert!(read > 0, "MONITOR on {} closed", self.port);
            if line.contains(&marker) {
                return found;
            }
            // `+1701955200.123456 [0 127.0.0.1:54321] "MGET" "ns:a" "ns:b"`: quoted arguments.
            let quoted = line.split_once("] ").map_or("", |(_, args)| args);
            let args: Vec<String> = quoted
                .split('"')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect();
            let ours = args.get(1).is_some_and(|k| k.starts_with(prefix));
            if args
                .first()
                .is_some_and(|c| c.eq_ignore_ascii_case(command))
                && ours
            {
                found.push(args[1..].to_vec());
            }
        }
    }
}

/// The `MGET`s each node of `ports` ran for keys under `prefix` while `call` ran: (port, keys).
async fn mgets_during<F: Future>(
    ports: &[u16],
    prefix: &str,
    call: F,
) -> (F::Output, Vec<(u16, Vec<String>)>) {
    let monitors: Vec<Monitor> = ports.iter().map(|&p| Monitor::start(p)).collect();
    let out = call.await;
    let mut mgets = Vec::new();
    for monitor in monitors {
        let port = monitor.port;
        mgets.extend(
            monitor
                .ran("MGET", prefix)
                .into_iter()
                .map(|keys| (port, keys)),
        );
    }
    (out, mgets)
}

/// On a Redis Cluster a `get_many` (and `get_many_with_ttl`, what a ReplicatedStore reads its
/// local misses with) sends each node ONE `MGET` per slot its keys fall in, carrying every key
/// of that slot, not one command per key: counted with `MONITOR` on every node. Three hash-tag
/// groups of five keys (one slot each, on three different masters) and four untagged keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_get_many_sends_one_mget_per_slot_group_not_per_key() {
    let cluster = support::redis_cluster::shared();
    let store = RedisStore::<String, String>::builder()
        .cluster(cluster.urls())
        .namespace("mget_rounds")
        .command_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let tagged = ["a", "b", "c"].map(|t| (0..5).map(move |i| format!("{{{t}}}{i}")));
    let keys: Vec<String> = tagged
        .into_iter()
        .flatten()
        .chain((0..4).map(|i| format!("solo{i}")))
        .collect();
    for key in &keys {
        store
            .put(key.clone(), format!("v-{key}"), None)
            .await
            .unwrap();
    }
    // The slot groups, as the cluster computes slots: each group's full keys, sorted.
    let port = cluster.ports()[0];
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for key in &keys {
        let full = format!("mget_rounds:{key}");
        let slot = RedisServer::raw_at(port, &["CLUSTER", "KEYSLOT", &full]);
        groups.entry(slot).or_default().push(full);
    }
    let mut want: Vec<Vec<String>> = groups.into_values().collect();
    want.sort();
    assert_eq!(want.len(), 3 + 4, "three tag groups and four lone slots");

    let (got, mgets) = mgets_during(cluster.ports(), "mget_rounds:", store.get_many(&keys)).await;
    let values: Vec<Option<String>> = keys.iter().map(|k| Some(format!("v-{k}"))).collect();
    assert_eq!(got.unwrap(), values);
    let with_ttl = store.get_many_with_ttl(&keys);
    let (got_ttl, mgets_ttl) = mgets_during(cluster.ports(), "mget_rounds:", with_ttl).await;
    let got_ttl: Vec<Option<String>> = got_ttl
        .unwrap()
        .into_iter()
        .map(|e| e.map(|(v, _)| v))
        .collect();
    assert_eq!(got_ttl, values);

    for (call, mgets) in [("get_many", mgets), ("get_many_with_ttl", mgets_ttl)] {
        let nodes: std::collections::BTreeSet<u16> = mgets.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            nodes.len(),
            3,
            "{call}: the tag groups live on three masters: {mgets:?}"
        );
        let mut sent: Vec<Vec<String>> = mgets
            .into_iter()
            .map(|(_, mut k)| {
                k.sort();
                k
            })
            .collect();
        sent.sort();
        assert_eq!(
            sent, want,
            "{call}: one MGET per slot group, holding all its keys"
        );
    }
}

/// The driver task of a connection runs on the runtime that connected it. When that runtime
/// shuts down while the store lives on (`keep_runtime` false), the connection is dead for every
/// other runtime; when it stays alive but idle (a current-thread runtime outside `block_on`,
/// `keep_runtime` true), the connection does not answer, since its driver never runs. Either
/// way at most the call on another runtime that finds it so fails (dead, or timed out), renewing
/// the connection there, and the next call is served.
fn a_connection_whose_runtime_is_gone_costs_at_most_one_call(
    open: impl std::future::Future<Output = RedisStore<String, String>>,
    keep_runtime: bool,
) {
    let first = runtime();
    let store = first.block_on(open);
    first
        .block_on(store.put("k".into(), "v".into(), None))
        .unwrap();
    let idle = keep_runtime.then_some(first); // `false`: the runtime is dropped here
    let second = runtime();
    if let Err(e) = second.block_on(store.get(&"k".into())) {
        assert!(e.is_transient(), "{e}");
    }
    let got = second.block_on(store.get(&"k".into()));
    assert_eq!(
        got.unwrap().as_deref(),
        Some("v"),
        "served on another runtime"
    );
    drop(idle);
}

#[test]
fn a_connection_made_on_a_runtime_that_shut_down_is_replaced() {
    let server = RedisServer::start();
    a_connection_whose_runtime_is_gone_costs_at_most_one_call(open_patient(&server.url()), false);
}

#[test]
fn a_connection_made_on_an_idle_runtime_costs_at_most_one_call() {
    let server = RedisServer::start();
    a_connection_whose_runtime_is_gone_costs_at_most_one_call(open_patient(&server.url()), true);
}

#[test]
fn a_cluster_connection_made_on_a_runtime_that_shut_down_is_replaced() {
    let urls = support::redis_cluster::shared().urls();
    let open = RedisStore::builder()
        .cluster(urls)
        .namespace("runtimes")
        .connect_timeout(Duration::from_secs(5))
        .command_timeout(Duration::from_secs(5))
        .build();
    a_connection_whose_runtime_is_gone_costs_at_most_one_call(async { open.await.unwrap() }, false);
}

// Auto-pipelining: of the calls `tokio::join!` polls in one pass, the first finds the connection
// idle and goes alone, the others are one batch (a batch is sent only once the runtime has run
// its other ready tasks, which needs this task to yield first), so each test below makes its
// batch by construction, not by timing. Two writes at most: the lone call and the batch.

/// How many times the server ran `command` (lower case), from `INFO commandstats`.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let stats = server.raw(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) until the server has run `command` at least `at_least` times in all: the
/// commands sent reached it, however the proxy's reads cut the bytes (strata's own driver
/// writes a lone call and the batch after it microseconds apart, which a loaded proxy thread
/// reads as one request).
async fn wait_calls(server: &RedisServer, command: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls(server, command) < at_least {
        assert!(
            Instant::now() < deadline,
            "the {command}s never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stores `key{i}` = `value{i}` for i in 0..n.
async fn fill(store: &RedisStore<String, String>, n: usize) {
    for i in 0..n {
        let (key, value) = (format!("key{i}"), format!("value{i}"));
        store.put(key, value, None).await.unwrap();
    }
}

/// Polls `call` once (it must be waiting, so it joined the open batch), then drops it.
async fn join_then_drop<F: Future>(call: Pin<Box<F>>) {
    let mut call = call;
    assert!(poll_once(call.as_mut()).await.is_pending(), "joined");
}

/// A batch of three GETs whose middle call is dropped after it joined, once before the batch
/// is sent and once while its replies are on the way: the other two get their own values (a
/// reply handed out by position in what is left would shift), and the connection is still in
/// step afterwards.
#[tokio::test]
async fn a_call_dropped_inside_a_batch_leaves_the_others_their_own_replies() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let store = open_patient(&proxy.url()).await;
    fill(&store, 4).await;
    let keys: Vec<String> = (0..4).map(|i| format!("key{i}")).collect();

    // Dropped before the batch is sent: it joins in the same poll as the others. The batch is
    // key2, key1 (dropped), key3; key0 goes alone.
    let before = proxy.requests();
    let dropped = Box::pin(store.get(&keys[1]));
    let (a, c, (), d) = tokio::join!(
        store.get(&keys[0]),
        store.get(&keys[2]),
        join_then_drop(dropped),
        store.get(&keys[3]),
    );
    assert_eq!(a.unwrap().as_deref(), Some("value0"));
    assert_eq!(c.unwrap().as_deref(), Some("value2"));
    assert_eq!(d.unwrap().as_deref(), Some("value3"));
    assert!(
        proxy.requests() - before <= 2,
        "the lone call, then one batch"
    );

    // Dropped once the batch reached the server, while its replies wait in the proxy.
    proxy.hold_replies(true);
    let before = proxy.requests();
    let gets = calls(&server, "get");
    let mut dropped = Some(Box::pin(store.get(&keys[1])));
    let (a, c, (), d) = tokio::join!(
        store.get(&keys[3]),
        store.get(&keys[2]),
        async {
            if let Some(call) = dropped.as_mut() {
                assert!(poll_once(call.as_mut()).await.is_pending(), "joined");
            }
            // The lone call's GET and the batch's three reached the server.
            wait_calls(&server, "get", gets + 4).await;
            drop(dropped.take());
            proxy.hold_replies(false);
        },
        store.get(&keys[0]),
    );
    assert_eq!(a.unwrap().as_deref(), Some("value3"));
    assert_eq!(c.unwrap().as_deref(), Some("value2"));
    assert_eq!(d.unwrap().as_deref(), Some("value0"));
    assert!(
        proxy.requests() - before <= 2,
        "the lone call, then one batch"
    );

    for (i, key) in keys.iter().enumerate() {
        let got = store.get(key).await.unwrap();
        assert_eq!(got, Some(format!("value{i}")), "in step afterwards");
    }
}

/// A batch whose middle command fails on the server (`WRONGTYPE`): only that call fails.
#[tokio::test]
async fn one_failing_command_of_a_batch_fails_only_its_call() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let store = open_patient(&proxy.url()).await;
    fill(&store, 3).await;
    server.raw(&["LPUSH", "test:list", "x"]);
    let keys = ["key0", "key1", "list", "key2"].map(String::from);
    let before = proxy.requests();
    let (alone, a, b, c) = tokio::join!(
        store.get(&keys[0]),
        store.get(&keys[1]),
        store.get(&keys[2]),
        store.get(&keys[3]),
    );
    assert!(
        proxy.requests() - before <= 2,
        "the lone call, then one batch"
    );
    assert_eq!(alone.unwrap().as_deref(), Some("value0"));
    assert_eq!(a.unwrap().as_deref(), Some("value1"));
    let err = b.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert_eq!(c.unwrap().as_deref(), Some("value2"));
}

/// The connection is cut after a batch reached the server and before its replies came back:
/// every call of the batch fails (none hangs, none gets another's reply), and the next call
/// is served on a new connection.
#[tokio::test]
async fn a_connection_cut_mid_batch_fails_every_call_of_the_batch() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let store = open_patient(&proxy.url()).await;
    fill(&store, 3).await;
    let keys: Vec<String> = (0..3).map(|i| format!("key{i}")).collect();
    proxy.hold_replies(true);
    let before = proxy.requests();
    let (gets, sets) = (calls(&server, "get"), calls(&server, "set"));
    let limit = Duration::from_secs(10);
    let batch = async {
        tokio::join!(
            store.get(&keys[0]),
            store.put(keys[1].clone(), "new".into(), None),
            store.get(&keys[2]),
        )
    };
    let ((a, b, c), ()) = tokio::time::timeout(limit, async {
        tokio::join!(batch, async {
            wait_calls(&server, "get", gets + 2).await;
            wait_calls(&server, "set", sets + 1).await;
            proxy.cut_all();
            proxy.hold_replies(false);
        })
    })
    .await
    .expect("a call of the cut batch hung");
    assert!(
        proxy.requests() - before <= 2,
        "the lone call, then one batch"
    );
    for err in [a.unwrap_err(), b.unwrap_err(), c.unwrap_err()] {
        assert!(matches!(err, Error::Backend { .. }), "{err}");
    }
    let again = store.get(&keys[0]).await.unwrap();
    assert_eq!(
        again.as_deref(),
        Some("value0"),
        "served on a new connection"
    );
}

/// A batch whose replies never come: every call of it times out at its own timeout, and the
/// store serves again (on a new connection) once replies flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_batch_that_gets_no_reply_times_out() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let store = open::<String>(&proxy.url()).await.unwrap();
    fill(&store, 3).await;
    let (k0, k1, k2) = ("key0".to_string(), "key1".to_string(), "key2".to_string());
    proxy.hold_replies(true);
    let began = Instant::now();
    let (a, b, c) = tokio::join!(store.get(&k0), store.get(&k1), store.get(&k2));
    let took = began.elapsed();
    for err in [a.unwrap_err(), b.unwrap_err(), c.unwrap_err()] {
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
    assert!(took >= COMMAND_TIMEOUT, "not before the timeout: {took:?}");
    // Each call ended with its own Timeout error; the bound only turns a hang into a failure
    // (a wall-clock bound near the timeout would fail on a loaded machine: no timed asserts).
    assert!(took < Duration::from_secs(60), "hung: {took:?}");
    proxy.hold_replies(false);
    // A call may still find the reconnect (its handshake's replies were held too) unfinished
    // within its short timeout; a bounded number of calls must be served.
    for attempt in 0.. {
        match store.get(&k1).await {
            Ok(again) => {
                assert_eq!(again.as_deref(), Some("value1"), "served again");
                break;
            }
            Err(e) if attempt < 20 => assert!(matches!(e, Error::Timeout { .. }), "{e}"),
            Err(e) => panic!("not served again: {e}"),
        }
    }
}

/// Lets the runtime run (the connection's driver writes the batch) until the proxy has seen
/// `count` requests in all, without letting the paused clock move (a yield leaves work to do, so
/// the runtime never parks long enough to advance it). Bounded in real time.
async fn until_requests(proxy: &Proxy, count: usize) {
    let began = Instant::now();
    while proxy.requests() < count {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the proxy saw {} requests, not {count}",
            proxy.requests()
        );
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One timer per batch, each call at its own deadline: a call that joined a batch half a
/// timeout after the call that opened it times out half a timeout later than that one, not
/// at the batch's first timer (set for the opener's deadline); and the opener times out at its
/// deadline, not before. Paused clock, replies held in the proxy.
#[tokio::test]
async fn each_call_of_a_batch_times_out_at_its_own_deadline() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.addr());
    let timeout = Duration::from_secs(10);
    let store = RedisStore::<String, String>::builder()
        .url(proxy.url())
        .namespace("test")
        .connect_timeout(Duration::from_secs(5))
        .command_timeout(timeout)
        .build()
        .await
        .unwrap();
    fill(&store, 3).await;
    let (k0, k1, k2) = ("key0".to_string(), "key1".to_string(), "key2".to_string());
    proxy.hold_replies(true);
    tokio::time::pause();
    let before = proxy.requests();
    // Sent alone (the connection was idle) and left in flight, so the next call opens a batch.
    let mut alone = Box::pin(store.get(&k0));
    assert!(poll_once(alone.as_mut()).await.is_pending(), "sent alone");
    until_requests(&proxy, before + 1).await;
    let mut first = Box::pin(store.get(&k1));
    assert!(
        poll_once(first.as_mut()).await.is_pending(),
        "opened a batch"
    );
    let half = timeout / 2;
    // The batch falls due meanwhile (the runtime ran its deferred wake), but is not sent: its
    // one member is not polled.
    tokio::time::advance(half).await;
    let mut late = Box::pin(store.get(&k2));
    assert!(
        poll_once(late.as_mut()).await.is_pending(),
        "joined the batch"
    );
    // `late` found the batch due and sent it, with both commands: one more request. (Had it
    // opened a batch of its own, nothing would be sent until the next deferred wake, and
    // `first`'s batch not until `first` is polled.)
    until_requests(&proxy, before + 2).await;
    // Timers fire on the first millisecond tick at or after their deadline: a call is still
    // waiting a tick before its deadline and has timed out a tick after it.
    let tick = Duration::from_millis(1);
    tokio::time::advance(half - tick).await;
    assert!(
        poll_once(first.as_mut()).await.is_pending(),
        "the opener timed out before its deadline"
    );
    tokio::time::advance(2 * tick).await;
    match poll_once(first.as_mut()).await {
        Poll::Ready(Err(Error::Timeout { .. })) => {}
        Poll::Ready(other) => panic!("the opener at its deadline: {other:?}"),
        Poll::Pending => panic!("the opener outlived its deadline"),
    }
    assert!(
        poll_once(late.as_mut()).await.is_pending(),
        "the late joiner was cut short at the opener's deadline"
    );
    tokio::time::advance(half - 2 * tick).await;
    assert!(
        poll_once(late.as_mut()).await.is_pending(),
        "the late joiner timed out before its deadline"
    );
    tokio::time::advance(2 * tick).await;
    match poll_once(late.as_mut()).await {
        Poll::Ready(Err(Error::Timeout { .. })) => {}
        Poll::Ready(other) => panic!("the late joiner at its deadline: {other:?}"),
        Poll::Pending => panic!("the late joiner outlived its deadline"),
    }
    drop((alone, first, late));
}

/// Many tasks, each writing then reading its own key and bumping one shared counter: every
/// read sees its own task's last write (a caller's commands run in its order), and no
/// increment is lost or doubled across batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_reads_its_own_writes_across_batches() {
    let server = RedisServer::start();
    let store = open_patient(&server.url()).await;
    let counters = RedisStore::<String, i64>::builder()
        .url(server.url())
        .namespace("counters")
        .build()
        .await
        .unwrap();
    let (tasks, rounds) = (32, 40);
    let workers: Vec<_> = (0..tasks)
        .map(|t| {
            let (store, counters) = (store.clone(), counters.clone());
            tokio::spawn(async move {
                let key = format!("task{t}");
                for round in 0..rounds {
                    let value = format!("{t}:{round}");
                    store.put(key.clone(), value.clone(), None).await.unwrap();
                    assert_eq!(store.get(&key).await.unwrap(), Some(value));
                    counters.incr(&"total".into(), 1).await.unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let total = counters.incr(&"total".into(), 0).await.unwrap();
    assert_eq!(total, tasks * rounds);
}

/// A batch opened on a runtime that then shut down (before the batch was due) must not stay
/// open: every later call would join it and wait out its timeout. Once with the call that
/// opened it still alive (its future outlives the runtime), once with it dropped.
#[test]
fn a_batch_opened_on_a_runtime_that_shut_down_does_not_strand_the_store() {
    let server = RedisServer::start();
    // The connection's driver runs on `home`, which outlives the test.
    let home = runtime();
    let store = home.block_on(open_patient(&server.url()));
    home.block_on(fill(&store, 1));
    let key = "key0".to_string();
    for keep_the_call in [true, false] {
        let first = runtime();
        // The first call goes alone (the connection was idle) and stays in flight, so the
        // second opens a batch.
        let mut alone = Box::pin(store.get(&key));
        let mut call = Box::pin(store.get(&key));
        first.block_on(async {
            assert!(poll_once(alone.as_mut()).await.is_pending(), "sent alone");
            assert!(
                poll_once(call.as_mut()).await.is_pending(),
                "opened a batch"
            );
        });
        drop(first);
        if !keep_the_call {
            drop((alone, call));
            (alone, call) = (Box::pin(store.get(&key)), Box::pin(store.get(&key)));
        }
        let limit = Duration::from_secs(3);
        let got = home.block_on(async { tokio::time::timeout(limit, store.get(&key)).await });
        let got = got.expect("a later call was stranded in the dead runtime's batch");
        assert_eq!(
            got.unwrap().as_deref(),
            Some("value0"),
            "keep {keep_the_call}"
        );
        drop((alone, call));
    }
}

/// `auto_pipeline(false)`: every command is sent on its own, with the same replies.
#[tokio::test]
async fn auto_pipeline_off_gives_each_call_its_reply() {
    let server = RedisServer::start();
    let store = RedisStore::<String, String>::builder()
        .url(server.url())
        .namespace("test")
        .auto_pipeline(false)
        .build()
        .await
        .unwrap();
    fill(&store, 2).await;
    let (k0, k1) = ("key0".to_string(), "key1".to_string());
    let (a, b) = tokio::join!(store.get(&k0), store.get(&k1));
    assert_eq!(a.unwrap().as_deref(), Some("value0"));
    assert_eq!(b.unwrap().as_deref(), Some("value1"));
}

/// A single command whose call is dropped alone before its
/// batch is due (another command in flight, so it opened a batch) must not be sent later with an
/// unrelated call, after a newer write by another client.
#[tokio::test]
async fn a_write_dropped_alone_in_its_batch_is_not_sent_later() {
    let server = RedisServer::start();
    let store = open_patient(&server.url()).await;
    let other = open_patient(&server.url()).await;
    store.put("k".into(), "old".into(), None).await.unwrap();
    let x = "x".to_string();
    let mut busy = Box::pin(store.get(&x));
    assert!(poll_once(busy.as_mut()).await.is_pending(), "in flight");
    {
        let mut call = Box::pin(store.put("k".into(), "cancelled".into(), None));
        assert!(
            poll_once(call.as_mut()).await.is_pending(),
            "joined a batch"
        );
    }
    busy.await.unwrap();
    tokio::task::yield_now().await;
    other.put("k".into(), "new".into(), None).await.unwrap();
    let _ = store.get(&"unrelated".to_string()).await.unwrap();
    assert_eq!(
        other.get(&"k".to_string()).await.unwrap().as_deref(),
        Some("new"),
        "a cancelled write was sent after a newer one"
    );
}

/// Counts its wakes (and polls nothing): stands for a member's task.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Wakes {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Polls `call` once with this waker.
    fn poll<F: Future>(self: &Arc<Self>, call: Pin<&mut F>) -> Poll<F::Output> {
        let waker = Waker::from(self.clone());
        call.poll(&mut Context::from_waker(&waker))
    }
}

/// Lets the runtime run (its deferred wakes, the connection's driver) until `done`, bounded.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// On redis-rs's connection (a RESP3 URL: strata's own driver carries RESP2 only), when a
/// batch becomes due, one member is woken to send it, not every member (each is woken
/// once per command: waking all of them cost a batched GET a whole extra task poll); and if
/// that one is dropped without sending, the next one waiting is woken instead, so the batch is
/// neither stranded until the others' timeouts nor sent twice. Each member's task is a counting
/// waker here, so what is woken is seen, not inferred from timing.
#[tokio::test]
async fn a_due_batch_wakes_one_member_to_send_it_and_another_if_that_one_is_dropped() {
    let server = RedisServer::start();
    let store = open_patient(&format!("{}?protocol=resp3", server.url())).await;
    fill(&store, 3).await;
    let keys: Vec<String> = (0..3).map(|i| format!("key{i}")).collect();
    // In flight, so the next calls make a batch.
    let mut busy = Box::pin(store.get(&keys[0]));
    assert!(poll_once(busy.as_mut()).await.is_pending(), "sent alone");
    let (w1, w2, w3) = <[Arc<Wakes>; 3]>::default().into();
    let mut first = Box::pin(store.get(&keys[1]));
    let mut second = Box::pin(store.get(&keys[2]));
    let mut third = Box::pin(store.get(&keys[0]));
    assert!(w1.poll(first.as_mut()).is_pending(), "opened a batch");
    assert!(w2.poll(second.as_mut()).is_pending(), "joined it");
    assert!(w3.poll(third.as_mut()).is_pending(), "joined it");
    until("the batch falling due", || w1.count() > 0).await;
    assert_eq!(
        (w1.count(), w2.count(), w3.count()),
        (1, 0, 0),
        "one member woken to send the due batch"
    );
    drop(first);
    assert_eq!(
        (w2.count(), w3.count()),
        (1, 0),
        "the next member woken in place of the dropped one"
    );
    assert!(w2.poll(second.as_mut()).is_pending(), "sent, waiting");
    until("the replies", || w2.count() > 1).await;
    let Poll::Ready(got) = w2.poll(second.as_mut()) else {
        panic!("woken with its reply in");
    };
    assert_eq!(got.unwrap().as_deref(), Some("value2"));
    assert_eq!(
        w3.count(),
        1,
        "the last member woken once, with its reply in"
    );
    let Poll::Ready(got) = w3.poll(third.as_mut()) else {
        panic!("woken with its reply in");
    };
    assert_eq!(got.unwrap().as_deref(), Some("value0"));
    assert_eq!(busy.await.unwrap().as_deref(), Some("value0"));
    for (i, key) in keys.iter().enumerate() {
        let got = store.get(key).await.unwrap();
        assert_eq!(got, Some(format!("value{i}")), "in step afterwards");
    }
}

/// On strata's own driver (a plain `redis://` URL) a batch is written by the runtime's deferred
/// wake itself: no member is woken to send it, each is woken once, with its reply in; and one
/// dropped before its reply takes nothing with it (its reply is read and dropped), so the others
/// get their own replies. Counting wakers, as above.
#[tokio::test]
async fn on_the_driver_a_batch_wakes_each_member_once_with_its_reply() {
    let server = RedisServer::start();
    let store = open_patient(&server.url()).await;
    fill(&store, 3).await;
    let keys: Vec<String> = (0..3).map(|i| format!("key{i}")).collect();
    let mut busy = Box::pin(store.get(&keys[0]));
    assert!(poll_once(busy.as_mut()).await.is_pending(), "sent alone");
    let (w1, w2, w3) = <[Arc<Wakes>; 3]>::default().into();
    let mut first = Box::pin(store.get(&keys[1]));
    let mut second = Box::pin(store.get(&keys[2]));
    let mut third = Box::pin(store.get(&keys[0]));
    assert!(w1.poll(first.as_mut()).is_pending(), "queued");
    assert!(w2.poll(second.as_mut()).is_pending(), "queued");
    assert!(w3.poll(third.as_mut()).is_pending(), "queued");
    drop(first);
    until("the replies", || w2.count() > 0 && w3.count() > 0).await;
    assert_eq!(
        (w1.count(), w2.count(), w3.count()),
        (0, 1, 1),
        "each woken once"
    );
    let Poll::Ready(got) = w2.poll(second.as_mut()) else {
        panic!("woken with its reply in");
    };
    assert_eq!(got.unwrap().as_deref(), Some("value2"));
    let Poll::Ready(got) = w3.poll(third.as_mut()) else {
        panic!("woken with its reply in");
    };
    assert_eq!(got.unwrap().as_deref(), Some("value0"));
    assert_eq!(busy.await.unwrap().as_deref(), Some("value0"));
    for (i, key) in keys.iter().enumerate() {
        let got = store.get(key).await.unwrap();
        assert_eq!(got, Some(format!("value{i}")), "in step afterwards");
    }
}
