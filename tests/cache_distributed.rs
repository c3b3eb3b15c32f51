//! Cluster-wide single flight and negative caching (issue 16 item 5): `Cache::fetch` with
//! `distributed_fetch` over a real `redis-server`.
//!
//! The multi-process cases re-run this test binary as children (`node_child`), each one
//! node with its own connection, driven over stdin: `fetch KEY` (the loader counts its call
//! with `INCR loads:KEY` in Redis, says `loading`, and with `gated` waits for `release`),
//! `watch` (say `waiting` once a fetch of this node waits for another node's lease). Every
//! interleaving is pinned by those lines, never by sleeps: a holder is mid-load when it said
//! `loading`, a waiter is waiting when it said `waiting`.
#![cfg(feature = "redis")]

mod support;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use strata::{
    Cache, CacheBuilder, DistributedFetch, Load, MemoryStore, RedisStore, ReplicatedStore, Store,
};
use support::{
    fault_store::{At, FaultStore, Op},
    RedisServer,
};
use tokio::sync::Semaphore;

const URL_VAR: &str = "STRATA_DISTRIBUTED_CHILD_URL";
const NAME_VAR: &str = "STRATA_DISTRIBUTED_CHILD_NAME";
const LEASE_VAR: &str = "STRATA_DISTRIBUTED_CHILD_LEASE_MS";

type Node = Cache<String, String, RedisStore<String, String>>;

async fn redis(url: &str, namespace: &str) -> RedisStore<String, String> {
    RedisStore::builder()
        .url(url)
        .namespace(namespace)
        .command_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap()
}

/// One node: its own connection, leases of `lease`, absences remembered for an hour.
/// `cache.fetch(key)` in its own task with its loader parked: returns once the loader runs,
/// with the semaphore that lets it answer `load` (add one permit) and the fetch's task.
async fn parked_fetch<S>(
    cache: &Cache<String, String, S>,
    key: String,
    load: Load<String>,
) -> (
    Arc<Semaphore>,
    tokio::task::JoinHandle<Result<Option<String>, strata::FetchError<strata::Error>>>,
)
where
    S: strata::Store<String, String> + 'static,
{
    let (loading, go) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let fetch = tokio::spawn({
        let (cache, loading, go) = (cache.clone(), loading.clone(), go.clone());
        async move {
            cache
                .fetch(key, |_| async move {
                    loading.add_permits(1);
                    go.acquire().await.unwrap().forget();
                    Ok::<_, strata::Error>(load)
                })
                .await
        }
    });
    loading.acquire().await.unwrap().forget();
    (go, fetch)
}

async fn node(url: &str, lease: Duration) -> (Node, DistributedFetch) {
    let store = redis(url, "items").await;
    let leases = store.distributed_fetch(lease).await.unwrap();
    let cache = leased(store, &leases, |b| {
        b.negative_ttl(Duration::from_secs(3600))
    })
    .await;
    (cache, leases)
}

/// A cache over `store` whose fetches load under `leases`, built with `options`.
async fn leased<S>(
    store: S,
    leases: &DistributedFetch,
    options: impl FnOnce(CacheBuilder<String, String, S>) -> CacheBuilder<String, String, S>,
) -> Cache<String, String, S>
where
    S: Store<String, String> + 'static,
{
    let builder = Cache::builder()
        .store(store)
        .distributed_fetch(leases.clone());
    options(builder).build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the cache_distributed tests; run by them"]
async fn node_child() {
    let (Some(url), Some(name), Some(lease)) = (
        std::env::var(URL_VAR).ok(),
        std::env::var(NAME_VAR).ok(),
        std::env::var(LEASE_VAR).ok(),
    ) else {
        return;
    };
    let lease = Duration::from_millis(lease.parse().unwrap());
    let (cache, leases) = node(&url, lease).await;
    let counter = RedisStore::<String, i64>::builder()
        .url(&url)
        .namespace("loads")
        .build()
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    println!("ready");
    while let Some(line) = lines.recv().await {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match words.first().map(String::as_str) {
            Some("fetch") => {
                let (cache, counter, gate, name) =
                    (cache.clone(), counter.clone(), gate.clone(), name.clone());
                let gated = words.get(2).is_some_and(|w| w == "gated");
                let key = words[1].clone();
                tokio::spawn(async move {
                    let loaded = cache
                        .fetch(key, move |key| async move {
                            counter.incr(&key, 1).await?;
                            println!("loading");
                            if gated {
                                gate.acquire().await.unwrap().forget();
                            }
                            Ok::<_, strata::Error>(Load::Commit(format!("from-{name}")))
                        })
                        .await;
                    println!("value {}", loaded.unwrap().unwrap_or_default());
                });
            }
            Some("release") => gate.add_permits(1),
            Some("watch") => {
                let leases = leases.clone();
                tokio::spawn(async move {
                    while leases.waiting() == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    println!("waiting");
                });
            }
            _ => panic!("unknown command {line:?}"),
        }
    }
}

/// A node process and its stdout.
struct NodeProcess {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl NodeProcess {
    fn spawn(url: &str, name: &str, lease: Duration) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["node_child", "--exact", "--ignored", "--nocapture"])
            .env(URL_VAR, url)
            .env(NAME_VAR, name)
            .env(LEASE_VAR, lease.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut node = NodeProcess { child, out };
        node.expect("ready");
        node
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The node's next line of its own (the harness prints lines too).
    fn next(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert_ne!(self.out.read_line(&mut line).unwrap(), 0, "the node exited");
            let line = line.trim();
            let ours = ["ready", "loading", "waiting"].contains(&line);
            if ours || line.starts_with("value ") {
                return line.to_owned();
            }
        }
    }

    fn expect(&mut self, line: &str) {
        assert_eq!(self.next(), line);
    }

    /// The value its fetch returned (past a `loading` of its own: Redis counts the loads).
    fn value(&mut self) -> String {
        let mut line = self.next();
        while line == "loading" {
            line = self.next();
        }
        line.strip_prefix("value ")
            .unwrap_or_else(|| panic!("expected a fetched value, got {line:?}"))
            .to_owned()
    }

    /// Starts a fetch of `key` that waits for another node's lease, and returns once it does.
    fn fetch_waiting(&mut self, key: &str) {
        self.send("watch");
        self.send(&format!("fetch {key}"));
        self.expect("waiting");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loads(server: &RedisServer, key: &str) -> String {
    server.raw(&["GET", &format!("loads:{key}")])
}

#[test]
fn three_processes_missing_one_key_run_the_loader_once() {
    let server = RedisServer::start();
    let lease = Duration::from_secs(30);
    let mut a = NodeProcess::spawn(&server.url(), "a", lease);
    let mut b = NodeProcess::spawn(&server.url(), "b", lease);
    let mut c = NodeProcess::spawn(&server.url(), "c", lease);
    a.send("fetch report gated");
    a.expect("loading");
    b.fetch_waiting("report");
    c.fetch_waiting("report");
    a.send("release");
    for node in [&mut a, &mut b, &mut c] {
        assert_eq!(node.value(), "from-a");
    }
    assert_eq!(loads(&server, "report"), "1");
}

#[test]
fn a_killed_lease_holder_is_taken_over_once_its_lease_lapses() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(1500);
    let mut a = NodeProcess::spawn(&server.url(), "a", lease);
    let mut b = NodeProcess::spawn(&server.url(), "b", lease);
    let mut c = NodeProcess::spawn(&server.url(), "c", lease);
    a.send("fetch report gated");
    a.expect("loading");
    b.fetch_waiting("report");
    c.fetch_waiting("report");
    a.child.kill().unwrap(); // SIGKILL mid-load: the lease is never released
    a.child.wait().unwrap();
    let (from_b, from_c) = (b.value(), c.value());
    assert_eq!(from_b, from_c, "both waiters get the one value loaded");
    assert!(from_b == "from-b" || from_b == "from-c", "{from_b}");
    assert_eq!(
        loads(&server, "report"),
        "2",
        "the dead holder's load and one takeover"
    );
}

/// A node that read "no value", then took the lease after another node had loaded, committed
/// and released it, ran the loader a second time and overwrote the first value (seen once in
/// `a_killed_lease_holder_is_taken_over_once_its_lease_lapses`: the two waiters got different
/// values). The store is read again once the lease is held. Pinned: b's read returns `None`
/// and parks, a commits and releases, then b takes the free lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_after_another_node_loaded_reads_that_value() {
    let server = RedisServer::start();
    let (a, _) = node(&server.url(), Duration::from_secs(30)).await;
    let store = FaultStore::new(redis(&server.url(), "items").await);
    let leases = store
        .inner()
        .distributed_fetch(Duration::from_secs(30))
        .await
        .unwrap();
    let b = leased(store.clone(), &leases, |b| b).await;
    let (a_go, a_fetch) = parked_fetch(&a, "k".to_string(), Load::Commit("a".to_string())).await;
    // The fetch's first read is its hit check; the second, the leader's, is the one to pin.
    let (parked_tx, parked_rx) = tokio::sync::oneshot::channel();
    let after_get = At::After(Op::Get);
    store.arm(&[after_get], {
        let store = store.clone();
        move || {
            let _ = parked_tx.send(store.park(after_get));
        }
    });
    let b_loads = Arc::new(AtomicUsize::new(0));
    let b_fetch = tokio::spawn({
        let (b, b_loads) = (b.clone(), b_loads.clone());
        async move {
            b.fetch("k".to_string(), |_| async move {
                b_loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, strata::Error>(Load::Commit("b".to_string()))
            })
            .await
        }
    });
    let mut read = parked_rx.await.unwrap();
    read.reached().await; // the leader of b has read "no value"
    a_go.add_permits(1);
    assert_eq!(a_fetch.await.unwrap().unwrap().as_deref(), Some("a"));
    read.release();
    assert_eq!(b_fetch.await.unwrap().unwrap().as_deref(), Some("a"));
    assert_eq!(b_loads.load(Ordering::SeqCst), 0, "b loaded again");
    assert_eq!(
        server.raw(&["EXISTS", "strata:lease:items:k"]),
        ":0",
        "b released the lease it took"
    );
}

/// A holder whose lease lapsed (here: deleted under it, as if it had expired) must not delete
/// the next holder's lease when it finishes: the release compares tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_holder_releases_only_its_own_lease() {
    let server = RedisServer::start();
    let (a, _) = node(&server.url(), Duration::from_secs(30)).await;
    let (b, _) = node(&server.url(), Duration::from_secs(30)).await;
    let (a_go, a_fetch) = parked_fetch(&a, "k".to_string(), Load::Ignore("a".to_string())).await;
    let lease = "strata:lease:items:k";
    assert_ne!(server.raw(&["GET", lease]), "(nil)", "a holds the lease");
    server.raw(&["DEL", lease]); // a's lease lapses
    let (b_go, b_fetch) = parked_fetch(&b, "k".to_string(), Load::Commit("b".to_string())).await;
    let b_token = server.raw(&["GET", lease]);
    a_go.add_permits(1);
    assert_eq!(a_fetch.await.unwrap().unwrap().as_deref(), Some("a"));
    assert_eq!(
        server.raw(&["GET", lease]),
        b_token,
        "a left b's lease alone"
    );
    b_go.add_permits(1);
    assert_eq!(b_fetch.await.unwrap().unwrap().as_deref(), Some("b"));
    assert_eq!(
        server.raw(&["EXISTS", lease]),
        ":0",
        "b released its own lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_on_one_node_clears_an_absence_remembered_by_another() {
    let server = RedisServer::start();
    let (a, _) = node(&server.url(), Duration::from_secs(30)).await;
    let (b, b_leases) = node(&server.url(), Duration::from_secs(30)).await;
    let not_found = |_| async { Ok::<_, strata::Error>(Load::NotFound) };
    assert_eq!(
        b.fetch("user:7".to_string(), not_found).await.unwrap(),
        None
    );
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = calls.clone();
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, strata::Error>(Load::NotFound) }
        }
    };
    assert_eq!(b.fetch("user:7".to_string(), counted).await.unwrap(), None);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "b remembers the absence");
    a.put("user:7".to_string(), "ada".to_string(), None)
        .await
        .unwrap();
    b.store().delete(&"user:7".to_string()).await.unwrap(); // only b's memory could answer now
    b_leases.sync().await.unwrap(); // every announcement made before now has reached b
    let loaded = b
        .fetch("user:7".to_string(), |_| async {
            Ok::<_, strata::Error>(Load::Commit("loaded".to_string()))
        })
        .await
        .unwrap();
    assert_eq!(loaded.as_deref(), Some("loaded"), "b forgot its absence");
}

/// Over ReplicatedStore (the service comes from its remote store): one node's loader
/// answers a waiting node, and its "not found" is remembered by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_nodes_share_one_load_and_its_absence() {
    type Replicated =
        ReplicatedStore<String, String, MemoryStore<String, String>, RedisStore<String, String>>;
    let server = RedisServer::start();
    let replicated = |url: String| async move {
        let store: Replicated = ReplicatedStore::builder()
            .local(MemoryStore::new())
            .remote(redis(&url, "items").await)
            .url(&url)
            .build()
            .await
            .unwrap();
        let leases = store
            .remote()
            .distributed_fetch(Duration::from_secs(30))
            .await
            .unwrap();
        let cache = leased(store, &leases, |b| {
            b.negative_ttl(Duration::from_secs(3600))
        })
        .await;
        (cache, leases)
    };
    let (a, _) = replicated(server.url()).await;
    let (b, b_leases) = replicated(server.url()).await;
    let (go, a_fetch) = parked_fetch(&a, "gone".to_string(), Load::NotFound).await;
    let b_fetch = tokio::spawn({
        let b = b.clone();
        async move {
            b.fetch("gone".to_string(), |_| async {
                Ok::<_, strata::Error>(Load::Commit("b loaded".to_string()))
            })
            .await
        }
    });
    while b_leases.waiting() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    go.add_permits(1);
    assert_eq!(a_fetch.await.unwrap().unwrap(), None);
    assert_eq!(b_fetch.await.unwrap().unwrap(), None, "b got a's outcome");
    let never = |_| async { Ok::<_, strata::Error>(Load::Commit("x".to_string())) };
    assert_eq!(b.fetch("gone".to_string(), never).await.unwrap(), None);
    assert_eq!(b.stats().loads, 0, "b never ran its loader");
}

// ------------------------------------------------ a notice task outliving its runtime

/// The task that reads a `DistributedFetch`'s notices runs on the runtime that built it. Here
/// that runtime (`first`, current-thread) is shut down, or kept alive but not driven, while the
/// store's own connection and every call run on a driven runtime. The next lease call starts a
/// new task there: `sync` returns (its marker's echo arrives) instead of timing out, and an
/// absence remembered afterwards is forgotten when another node writes the key. An idle runtime
/// that runs again sees its replaced task exit.
fn notices_survive_the_runtime_of_their_task(keep_runtime: bool) {
    let server = RedisServer::start();
    let driven = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = driven.block_on(redis(&server.url(), "items"));
    let leases = first
        .block_on(store.distributed_fetch(Duration::from_secs(30)))
        .unwrap();
    let idle = keep_runtime.then_some(first); // `false`: the runtime is dropped here
    driven.block_on(async {
        if idle.is_some() {
            // Long enough that the idle task's last beat is older than the 1 s after which a
            // call replaces it (nothing on `first` runs meanwhile, so this is exact).
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        let b = leased(store, &leases, |b| {
            b.negative_ttl(Duration::from_secs(3600))
        })
        .await;
        let (a, _) = node(&server.url(), Duration::from_secs(30)).await;
        let synced = tokio::time::timeout(Duration::from_secs(60), leases.sync()).await;
        assert!(
            matches!(synced, Ok(Ok(()))),
            "the notices are read again: {synced:?}"
        );
        let not_found = |_| async { Ok::<_, strata::Error>(Load::NotFound) };
        assert_eq!(b.fetch(k7(), not_found).await.unwrap(), None);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = {
            let calls = calls.clone();
            move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, strata::Error>(Load::NotFound) }
            }
        };
        assert_eq!(b.fetch(k7(), counted).await.unwrap(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 0, "b remembers the absence");
        a.put(k7(), "ada".to_string(), None).await.unwrap();
        b.store().delete(&k7()).await.unwrap(); // only b's memory could answer now
        leases.sync().await.unwrap();
        let loaded = b
            .fetch(k7(), |_| async {
                Ok::<_, strata::Error>(Load::Commit("loaded".to_string()))
            })
            .await
            .unwrap();
        assert_eq!(loaded.as_deref(), Some("loaded"), "b forgot its absence");
    });
    let Some(idle) = idle else { return };
    // `first` runs again: the replaced task must exit, closing its subscription.
    let subscribers = || {
        let list = server.raw(&["CLIENT", "LIST", "TYPE", "pubsub"]);
        list.matches("id=").count()
    };
    // `a` was dropped as `driven.block_on` returned; its task closes its subscription on
    // `driven` in the background, so wait for that (bounded: it only turns a hang into a
    // failure). Nothing runs `first` meanwhile, so b's old subscription cannot leave here.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while subscribers() > 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        subscribers(),
        2,
        "b's old subscription and its new one (a is gone)"
    );
    idle.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while subscribers() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the replaced task kept its subscription"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

fn k7() -> String {
    "user:7".to_string()
}

#[test]
fn notices_are_read_again_after_the_runtime_of_their_task_shut_down() {
    notices_survive_the_runtime_of_their_task(false);
}

#[test]
fn notices_are_read_again_when_the_runtime_of_their_task_is_idle() {
    notices_survive_the_runtime_of_their_task(true);
}
