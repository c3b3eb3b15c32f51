//! RedisStore behind Redis Sentinel, against real processes on loopback: one master, one
//! replica, three sentinels. The master is killed under load; the store must serve again once a
//! sentinel promotes the replica, with no panic, and keep what was replicated.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use strata::{RedisStore, Store};
use support::redis_sentinel::{Sentinels, MASTER_NAME};

/// Sentinels declare the master down after this long without answers.
const DOWN_AFTER: Duration = Duration::from_millis(500);
/// How long a failover may take before the test fails: down-after, the sentinels' vote and the
/// promotion take a few seconds on loopback; this bound leaves room for a loaded CI machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

/// One failover at a time: two sets of five processes failing over at once on a 2-core machine
/// make each other's timings meaningless.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn open(sentinels: &Sentinels) -> RedisStore<String, String> {
    RedisStore::builder()
        .sentinel(sentinels.urls(), MASTER_NAME)
        .namespace("test")
        .connect_timeout(Duration::from_secs(2))
        .command_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("connect through the sentinels")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_followed_to_the_promoted_replica() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut set = Sentinels::start(DOWN_AFTER);
    let store = open(&set).await;
    store.put("kept".into(), "v".into(), None).await.unwrap();
    // Wait until the replica has it: only a replicated write survives a failover.
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.replica.raw(&["GET", "test:kept"]) == "(nil)" {
        assert!(
            Instant::now() < deadline,
            "the write never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let old_master = set.master.port();
    set.master.kill();
    let killed = Instant::now();
    // Keep writing, as a server under load would: errors while no master exists, never a panic.
    let mut failed = 0u32;
    let served_after = loop {
        match store.put("after".into(), "w".into(), None).await {
            Ok(()) => break killed.elapsed(),
            Err(_) => failed += 1,
        }
        assert!(
            killed.elapsed() < FAILOVER_BOUND,
            "no master after {FAILOVER_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(failed > 0, "a write succeeded while no master could exist");
    // Every sentinel agrees on the promoted replica (the store may have heard it first).
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.master_port() != Some(set.replica.port()) {
        assert!(
            Instant::now() < deadline,
            "the sentinels still name {:?}, not the replica",
            set.master_port()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(set.replica.port(), old_master);
    assert_eq!(
        store.get(&"kept".into()).await.unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(
        store.get(&"after".into()).await.unwrap().as_deref(),
        Some("w")
    );
    if std::env::var_os("STRATA_REPORT").is_some() {
        eprintln!("sentinel failover: served again {served_after:?} after the kill ({failed} failed writes; down-after {DOWN_AFTER:?})");
    }
}

#[tokio::test]
async fn no_sentinel_reachable_is_a_clear_error() {
    let port = support::redis_server::free_port();
    let err = RedisStore::<String, String>::builder()
        .sentinel([format!("redis://127.0.0.1:{port}/")], MASTER_NAME)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&port.to_string()),
        "names the sentinel: {text}"
    );
}

/// A failover with the old master still up (`SENTINEL FAILOVER`): it becomes a replica and
/// answers writes with `READONLY` at once, so no timeout ever fires. The store must take that as
/// a failover and ask the sentinels for the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_master_answering_readonly_is_left_for_the_new_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    let set = Sentinels::start(DOWN_AFTER);
    let store = open(&set).await;
    store.put("before".into(), "v".into(), None).await.unwrap();
    let old_master = set.master.port();
    let reply = set.sentinel_raw(&["SENTINEL", "FAILOVER", MASTER_NAME]);
    assert!(reply.starts_with("+OK"), "{reply}");
    let deadline = Instant::now() + FAILOVER_BOUND;
    // The old master closes its clients when it turns into a replica: a reset is "not yet".
    let demoted = || {
        set.master
            .try_raw(&["ROLE"])
            .is_ok_and(|role| role.starts_with("slave"))
    };
    while set.master_port() == Some(old_master) || !demoted() {
        assert!(Instant::now() < deadline, "the failover never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + FAILOVER_BOUND;
    loop {
        match store.put("after".into(), "w".into(), None).await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        set.replica.raw(&["EXISTS", "test:after"]),
        ":1",
        "written to the new master"
    );
    assert_eq!(
        store.get(&"after".into()).await.unwrap().as_deref(),
        Some("w")
    );
}
