//! RedisStore behind Redis Sentinel, against real processes on loopback: one master, one
//! replica, three sentinels. The master is killed under load; the store must serve again once a
//! sentinel promotes the replica, with no panic, and keep what was replicated. Two
//! `ReplicatedStore` nodes on the same sentinels must follow a failover with their data and their
//! invalidation link alike, and serve nothing the new master does not hold.
#![cfg(feature = "redis")]

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use strata::{MemoryStore, RedisStore, ReplicatedStore, Store};
use support::{
    proxy::Proxy,
    redis_sentinel::{Sentinels, MASTER_NAME},
};

/// Sentinels declare the master down after this long without answers. At 500 ms, sentinels
/// starved on a loaded machine (load 17) declared a live master, replica or sentinel down and
/// started a second failover on the freshly promoted master.
const DOWN_AFTER: Duration = Duration::from_secs(2);
/// How long a failover may take before the test fails: down-after, the sentinels' vote and the
/// promotion take a few seconds on loopback. The bound only catches a hang: a sentinel whose
/// timer ran 2 s late enters TILT and acts on nothing for 30 s, and a split vote is retried
/// after twice the failover timeout (20 s); at 30 s both failover tests failed that way at load
/// 15-17 (the sentinels' logs, shown on failure, said +tilt).
const FAILOVER_BOUND: Duration = Duration::from_secs(90);
/// The connect timeout of the stores under test: a loaded machine (load 17) took more than 2 s
/// to connect through the sentinels; only a hang should fail the set-up.
const CONNECT: Duration = Duration::from_secs(10);

/// One failover at a time: two sets of five processes failing over at once on a 2-core machine
/// make each other's timings meaningless.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn open(sentinels: &Sentinels) -> RedisStore<String, String> {
    RedisStore::builder()
        .sentinel(sentinels.urls(), MASTER_NAME)
        .namespace("test")
        .connect_timeout(CONNECT)
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

/// A node of a replicated store whose data and invalidation link both go through the sentinels.
type Node =
    ReplicatedStore<String, String, MemoryStore<String, String>, RedisStore<String, String>>;

async fn node(sentinels: &Sentinels, warm: bool) -> Node {
    ReplicatedStore::builder()
        .local(MemoryStore::new())
        .remote(open(sentinels).await)
        .sentinel(sentinels.urls(), MASTER_NAME)
        .connect_timeout(CONNECT)
        // A ping unanswered within the heartbeat drops the link, and writes fail while it is
        // down: at 200 ms a loaded machine (load 20) failed the set-up's writes that way. A
        // failover resets the connections, which the link sees at once, whatever the heartbeat.
        .heartbeat(Duration::from_secs(1))
        .warm_on_join(warm)
        .build()
        .await
        .expect("the invalidation link subscribes on the master the sentinels name")
}

/// How the master goes away.
#[derive(Clone, Copy, Debug)]
enum Failover {
    /// `kill -9` of the master process: the sentinels promote the replica after `DOWN_AFTER`.
    Kill,
    /// `SENTINEL FAILOVER`: the old master stays up and is demoted to a replica.
    Command,
}

/// Keys both nodes cache before the failover.
const KEYS: usize = 40;

fn key(i: usize) -> String {
    format!("k{i}")
}

/// Retries `op` until it answers (a store reconnecting after the failover fails a few calls).
async fn answered<T, F: std::future::Future<Output = strata::Result<T>>>(
    what: &str,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + FAILOVER_BOUND;
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{what}: still failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two nodes cache every key from the old master; the replica (the master to be) is given newer
/// values of half of them that the old master never saw, so after the promotion a node that kept
/// its copy from the old master would serve a value Redis no longer holds. After the failover a
/// write on A must reach B as an invalidation through the new master, and every key must read
/// on both nodes as Redis holds it.
async fn replicated_nodes_follow(how: Failover) {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut set = Sentinels::start(DOWN_AFTER);
    let a = node(&set, false).await;
    let b = node(&set, true).await;
    for i in 0..KEYS {
        a.put(key(i), "old".into(), None).await.unwrap();
    }
    for i in 0..KEYS {
        for n in [&a, &b] {
            assert_eq!(n.get(&key(i)).await.unwrap().as_deref(), Some("old"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.replica.raw(&["DBSIZE"]) != format!(":{KEYS}") {
        assert!(
            Instant::now() < deadline,
            "the keys never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Diverge: write straight to the replica (made writable) what the old master never sees.
    set.replica
        .raw(&["CONFIG", "SET", "replica-read-only", "no"]);
    let on_replica = RedisStore::<String, String>::builder()
        .url(set.replica.url())
        .namespace("test")
        .build()
        .await
        .unwrap();
    for i in (0..KEYS).step_by(2) {
        on_replica
            .put(key(i), "promoted".into(), None)
            .await
            .unwrap();
    }
    drop(on_replica);

    let old_master = set.master.port();
    let started = Instant::now();
    match how {
        Failover::Kill => set.master.kill(),
        Failover::Command => {
            let reply = set.sentinel_raw(&["SENTINEL", "FAILOVER", MASTER_NAME]);
            assert!(reply.starts_with("+OK"), "{reply}");
        }
    }
    // Promotion: the sentinels name the replica, and a master still up is demoted (it closes
    // its clients on the role change: a reset is "not yet").
    let settled = || {
        set.master_port() == Some(set.replica.port())
            && match how {
                Failover::Kill => true,
                Failover::Command => set
                    .master
                    .try_raw(&["ROLE"])
                    .is_ok_and(|role| role.starts_with("slave")),
            }
    };
    let deadline = started + FAILOVER_BOUND;
    while !settled() {
        assert!(
            Instant::now() < deadline,
            "the failover never completed ({how:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(set.replica.port(), old_master);
    let promoted = started.elapsed();

    // A write on A after the promotion: refused while A's link is down, then accepted.
    let wrote = Instant::now();
    answered("a write on node A", || {
        a.put("x".into(), "new".into(), None)
    })
    .await;
    let a_writes = wrote.elapsed();
    let deadline = Instant::now() + FAILOVER_BOUND;
    loop {
        if let Ok(Some(v)) = b.get(&"x".into()).await {
            if v == "new" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "node B never saw A's write");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b_sees = wrote.elapsed();

    // The invalidation path itself: B caches x from the new master, A overwrites it, and B must
    // drop its copy on A's message (counted as applied), not on a TTL.
    let deadline = Instant::now() + FAILOVER_BOUND;
    while !(a.replication_stats().connected && b.replication_stats().connected) {
        assert!(Instant::now() < deadline, "a link never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.get(&"x".into()).await.unwrap().as_deref(), Some("new"));
    let applied = b.replication_stats().applied;
    let overwrote = Instant::now();
    a.put("x".into(), "newer".into(), None).await.unwrap();
    let deadline = Instant::now() + FAILOVER_BOUND;
    while b.get(&"x".into()).await.unwrap().as_deref() != Some("newer") {
        assert!(
            Instant::now() < deadline,
            "B kept its copy of x: the invalidation never came through the new master"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let invalidated = overwrote.elapsed();
    assert!(b.replication_stats().applied > applied);

    // Nothing older than Redis: every key reads on both nodes as the new master holds it.
    let truth = open(&set).await;
    for i in 0..KEYS {
        let k = key(i);
        let held = answered("reading Redis", || truth.get(&k)).await;
        let want = if i % 2 == 0 { "promoted" } else { "old" };
        assert_eq!(held.as_deref(), Some(want), "Redis after the failover");
        for (name, n) in [("A", &a), ("B", &b)] {
            assert_eq!(
                n.get(&key(i)).await.unwrap(),
                held,
                "node {name} serves {} differently from Redis",
                key(i)
            );
        }
    }
    for (name, n) in [("A", &a), ("B", &b)] {
        let stats = n.replication_stats();
        assert!(
            stats.disconnects >= 1 && stats.recoveries >= 1,
            "node {name}: the failover must drop and restore the link: {stats:?}"
        );
    }
    // B warms in the background after its reconnect (the rules of a lost link hold).
    let deadline = Instant::now() + FAILOVER_BOUND;
    while b.replication_stats().warms == 0 {
        assert!(
            Instant::now() < deadline,
            "B's background warm never finished"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if std::env::var_os("STRATA_REPORT").is_some() {
        eprintln!(
            "replicated sentinel failover ({how:?}): promoted {promoted:?} after the failover began; \
             then A's write accepted in {a_writes:?}, seen on B in {b_sees:?}; \
             an invalidation A -> B through the new master took {invalidated:?} (down-after {DOWN_AFTER:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_nodes_follow_a_killed_master() {
    replicated_nodes_follow(Failover::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_nodes_follow_a_sentinel_failover_command() {
    replicated_nodes_follow(Failover::Command).await;
}

#[tokio::test]
async fn a_replicated_store_with_no_sentinel_reachable_is_a_clear_error() {
    let port = support::redis_server::free_port();
    let err = ReplicatedStore::builder()
        .local(MemoryStore::<String, String>::new())
        .remote(MemoryStore::<String, String>::new())
        .sentinel([format!("redis://127.0.0.1:{port}/")], MASTER_NAME)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&port.to_string()) && text.contains(MASTER_NAME),
        "names the sentinel and the master: {text}"
    );
}

/// With Sentinel, the reconnect task asks the sentinels for the master under a lock (the
/// sentinel client keeps its connections to them). Its runtime may starve it while it waits for
/// the sentinel's answer (a current-thread runtime kept alive, not driven): it then holds that
/// lock for as long as the runtime idles, and the call on another runtime that takes the
/// reconnect over must still reach the master. Both calls timed out, and every later one
/// (the task taking over waited on the lock until its connect timeout, again and again), before
/// a busy sentinel client was replaced by one of the caller's own.
#[test]
fn a_reconnect_starved_while_asking_the_sentinels_is_taken_over() {
    let (set, proxy, idle) = starvation_setup();
    let store: RedisStore<String, String> = idle.block_on(async {
        RedisStore::builder()
            .sentinel(vec![proxy.url()], MASTER_NAME)
            .namespace("test")
            .connect_timeout(Duration::from_secs(2))
            .command_timeout(Duration::from_secs(5))
            .build()
            .await
            .expect("connect through the sentinel's proxy")
    });
    idle.block_on(store.put("k".into(), "v".into(), None))
        .unwrap();
    // Break the master connection; the call on `idle` that finds it broken spawns the reconnect
    // there, which asks the sentinel (through the proxy, whose replies are held) and waits.
    set.master.raw(&["CLIENT", "KILL", "TYPE", "normal"]);
    proxy.hold_replies(true);
    let before = proxy.requests();
    idle.block_on(async {
        let _ = store.get(&"k".into()).await;
        asked_after(&proxy, before, "the reconnect never asked the sentinel").await;
    });
    proxy.hold_replies(false);
    let other = multi_thread_runtime();
    for call in 0..2 {
        let got = other.block_on(store.get(&"k".into()));
        assert_eq!(
            got.unwrap().as_deref(),
            Some("v"),
            "call {call} on another runtime while the reconnect holding the sentinel client idles"
        );
    }
    drop(idle);
}

/// For the starvation tests: a Sentinel set, a proxy in front of its first sentinel (so the
/// test can hold its replies), and a current-thread runtime the test stops driving.
fn starvation_setup() -> (Sentinels, Proxy, tokio::runtime::Runtime) {
    let set = Sentinels::start(DOWN_AFTER);
    let port: u16 = set.urls()[0]
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .expect("a sentinel URL on loopback");
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port)));
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (set, proxy, idle)
}

/// A runtime that is always driven, for the calls that take over from a starved task.
fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until the proxy has seen a request after `before` (the bound only catches a hang).
async fn asked_after(proxy: &Proxy, before: usize, hung: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.requests() <= before {
        assert!(Instant::now() < deadline, "{hung}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The same for a replicated node's invalidation task: starved while it asks the sentinels for
/// the master (to resubscribe after its subscription broke), it holds the sentinel client, and
/// the task that a call on another runtime starts once the starved one is noticed must still
/// reach the master and resubscribe. It never did before a busy sentinel client was replaced
/// by one of the caller's own (each attempt waited on the lock until its connect timeout).
#[test]
fn a_replicated_node_starved_while_asking_the_sentinels_resubscribes_from_another_runtime() {
    let (set, proxy, idle) = starvation_setup();
    let a: Node = idle.block_on(async {
        ReplicatedStore::builder()
            .local(MemoryStore::new())
            .remote(open(&set).await)
            .sentinel(vec![proxy.url()], MASTER_NAME)
            .connect_timeout(Duration::from_secs(2))
            .heartbeat(Duration::from_millis(200))
            .build()
            .await
            .expect("the invalidation link subscribes through the sentinel's proxy")
    });
    // Break the subscription; the task resubscribes on `idle`, asking the sentinel (through the
    // proxy, whose replies are held) for the master, and waits there.
    proxy.hold_replies(true);
    let before = proxy.requests();
    set.master.raw(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    idle.block_on(asked_after(
        &proxy,
        before,
        "the task never asked the sentinel",
    ));
    proxy.hold_replies(false);
    let other = multi_thread_runtime();
    other.block_on(async {
        // The watchdog notices after 20 s without a beat; the bound only catches a hang.
        let deadline = Instant::now() + Duration::from_secs(60);
        while a.is_connected() {
            assert!(
                Instant::now() < deadline,
                "the starved task was never noticed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !a.is_connected() {
            assert!(
                Instant::now() < deadline,
                "never resubscribed while the starved task holds the sentinel client"
            );
            let _ = a.get(&"k".into()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    drop(idle);
}
