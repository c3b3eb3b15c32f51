//! Failover with Redis Sentinel, timed with real processes on free loopback ports: one master,
//! one replica and three `redis-sentinel`s (the failover tests' helper,
//! `tests/support/redis_sentinel.rs`). Each round starts a fresh set, connects a RedisStore and
//! two ReplicatedStore nodes through the sentinels (`.sentinel(...)`), writes, `kill -9`s the
//! master and times, while the RedisStore keeps writing in a loop (a failed write is retried
//! after 5 ms, as a loaded server would):
//!
//! - the kill → the RedisStore's first write served again (on the promoted replica);
//! - the kill → the first sentinel names the replica as master (the promotion);
//! - the promotion → a ReplicatedStore node's first write accepted (its invalidation link back
//!   on the new master), and → the other node reading that write.
//!
//! A row is the median over the rounds (3 in a full run, 1 with `--quick`), the min–max column
//! the rounds' extremes. Not a contest: Redis has no peer to race here, and the time is mostly
//! the sentinels' `down-after-milliseconds` (2 s, as in the tests: at 500 ms sentinels starved
//! on a loaded machine declared live processes down) plus their vote. The smoke run (debug
//! `cargo test`) does one full round with `down-after` 1 s, a few seconds: the least that
//! proves every row is still emitted from a real failover.

#[cfg(not(feature = "redis"))]
pub fn run(_: &mut crate::report::Report) {
    eprintln!("  failover   skipped: run `cargo bench --bench compare --features redis`");
}

#[cfg(feature = "redis")]
pub use bench::run;

#[cfg(feature = "redis")]
mod bench {
    use std::time::{Duration, Instant};

    use strata::{MemoryStore, RedisStore, ReplicatedStore, Store};
    use tokio::runtime::Runtime;

    use crate::{
        redis_sentinel::{Sentinels, MASTER_NAME},
        report::{median, Report, Row, Spread},
    };

    type Node =
        ReplicatedStore<String, String, MemoryStore<String, String>, RedisStore<String, String>>;

    /// The bound that only catches a hang (a sentinel in TILT acts on nothing for 30 s; a
    /// split vote is retried after twice the failover timeout of 10 s).
    const BOUND: Duration = Duration::from_secs(90);
    /// Pause after a failed write before the next one.
    const RETRY: Duration = Duration::from_millis(5);
    const NAMESPACE: &str = "failover";

    /// One of a round's times.
    type Measure = fn(&Round) -> Duration;

    /// What one round measured.
    struct Round {
        /// Kill → the RedisStore's first write served.
        served: Duration,
        /// Writes the RedisStore saw fail meanwhile.
        failed: u32,
        /// Kill → the first sentinel names the replica.
        promoted: Duration,
        /// Promotion → node A's first write accepted.
        node_writes: Duration,
        /// Promotion → node B reads A's write.
        node_sees: Duration,
    }

    async fn redis_store(set: &Sentinels) -> RedisStore<String, String> {
        RedisStore::builder()
            .sentinel(set.urls(), MASTER_NAME)
            .namespace(NAMESPACE)
            .connect_timeout(Duration::from_secs(10))
            .command_timeout(Duration::from_millis(500))
            .build()
            .await
            .expect("connect a RedisStore through the sentinels")
    }

    async fn node(set: &Sentinels) -> Node {
        ReplicatedStore::builder()
            .local(MemoryStore::new())
            .remote(redis_store(set).await)
            .sentinel(set.urls(), MASTER_NAME)
            .connect_timeout(Duration::from_secs(10))
            .heartbeat(Duration::from_secs(1))
            .build()
            .await
            .expect("a ReplicatedStore node subscribes through the sentinels")
    }

    /// Writes until one is served; the time from `since` and the failures on the way.
    async fn first_write<F, Fut>(since: Instant, mut write: F) -> (Duration, u32)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = strata::Result<()>>,
    {
        let mut failed = 0;
        loop {
            match write().await {
                Ok(()) => return (since.elapsed(), failed),
                Err(_) => failed += 1,
            }
            assert!(since.elapsed() < BOUND, "no write served after {BOUND:?}");
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Polls the first sentinel until it names the replica; the time since `killed`.
    fn promotion(set: &Sentinels, killed: Instant) -> Duration {
        while set.master_port() != Some(set.replica.port()) {
            assert!(killed.elapsed() < BOUND, "no promotion after {BOUND:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        killed.elapsed()
    }

    /// Promotion → node `a`'s first write accepted, and → node `b` reading it.
    async fn nodes_follow(a: &Node, b: &Node) -> (Duration, Duration) {
        let since = Instant::now();
        let put = || a.put("x".into(), "after".into(), None);
        let (writes, _) = first_write(since, put).await;
        loop {
            if let Ok(Some(v)) = b.get(&"x".to_string()).await {
                if v == "after" {
                    return (writes, since.elapsed());
                }
            }
            assert!(since.elapsed() < BOUND, "node B never read A's write");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn round(rt: &Runtime, down_after: Duration) -> Round {
        let mut set = Sentinels::start(down_after);
        let (store, a, b) =
            rt.block_on(async { (redis_store(&set).await, node(&set).await, node(&set).await) });
        rt.block_on(async {
            for i in 0..100 {
                store
                    .put(format!("k{i}"), "v".into(), None)
                    .await
                    .expect("a write before the kill");
            }
            a.put("x".into(), "before".into(), None)
                .await
                .expect("a node's write");
            let got = b
                .get(&"x".to_string())
                .await
                .expect("the other node reads it");
            assert_eq!(got.as_deref(), Some("before"));
        });
        set.master.kill();
        let killed = Instant::now();
        let writer = {
            let store = store.clone();
            rt.spawn(async move {
                first_write(killed, || store.put("after".into(), "w".into(), None)).await
            })
        };
        let promoted = promotion(&set, killed);
        let (node_writes, node_sees) = rt.block_on(nodes_follow(&a, &b));
        let (served, failed) = rt.block_on(writer).expect("the writer task");
        // The write was served by the promoted replica, not by anything else.
        assert_eq!(set.replica.raw(&["EXISTS", "failover:after"]), ":1");
        assert!(failed > 0, "a write succeeded while no master could exist");
        drop((store, a, b));
        Round {
            served,
            failed,
            promoted,
            node_writes,
            node_sees,
        }
    }

    /// `/proc/loadavg`'s 1-minute figure (0 where it cannot be read).
    fn load() -> f64 {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        text.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    fn add(report: &mut Report, label: String, values: Vec<f64>, unit: &'static str) {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let row = Row {
            section: "failover".into(),
            label,
            strata: median(values),
            peer: None,
            unit,
            higher_is_better: false,
        };
        let spread = Spread {
            median: row.strata,
            min,
            max,
        };
        report.add_measured(row, spread);
    }

    pub fn run(report: &mut Report) {
        let (rounds, down_after) = match (report.smoke, report.quick) {
            (true, _) => (1, Duration::from_secs(1)),
            (false, true) => (1, Duration::from_secs(2)),
            (false, false) => (3, Duration::from_secs(2)),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let load_before = load();
        let results: Vec<Round> = (0..rounds).map(|_| round(&rt, down_after)).collect();
        let loads = vec![load_before, load()];
        let ms =
            |f: Measure| -> Vec<f64> { results.iter().map(|r| f(r).as_secs_f64() * 1e3).collect() };
        let setting = format!(
            "down-after {} ms, {rounds} round{}",
            down_after.as_millis(),
            if rounds == 1 { "" } else { "s" }
        );
        let rows: [(&str, Measure); 4] = [
            (
                "kill -9 of the master -> RedisStore write served again",
                |r| r.served,
            ),
            ("kill -9 of the master -> sentinels name the replica", |r| {
                r.promoted
            }),
            ("promotion -> ReplicatedStore node's write accepted", |r| {
                r.node_writes
            }),
            ("promotion -> the other node reads that write", |r| {
                r.node_sees
            }),
        ];
        for (what, f) in rows {
            add(report, format!("{what} [{setting}]"), ms(f), "ms");
        }
        let failed = results.iter().map(|r| f64::from(r.failed)).collect();
        let label = format!("failed RedisStore writes meanwhile, retried every 5 ms [{setting}]");
        add(report, label, failed, "writes");
        add(
            report,
            "load average (1 min), before and after the rounds".into(),
            loads,
            "load",
        );
    }
}
