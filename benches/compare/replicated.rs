//! ReplicatedStore (a MemoryStore tier in front of a RedisStore) on one `redis-server` started
//! here: local-hit read throughput against a bare MemoryStore (target ratio ≥ 0.8), reads and
//! writes against a plain RedisStore, and the publish-to-apply latency of invalidations between
//! two nodes of one process (each with its own subscription).

#[cfg(not(feature = "redis"))]
pub fn run(_: &mut crate::report::Report) {
    eprintln!("  replicated skipped: run `cargo bench --bench compare --features redis`");
}

#[cfg(feature = "redis")]
pub use bench::run;

#[cfg(feature = "redis")]
mod bench {
    use std::{
        sync::Arc,
        time::{Duration, Instant},
    };

    use strata::{MemoryStore, RedisStore, ReplicatedStore, Store};
    use tokio::runtime::Runtime;

    use crate::{
        report::{interleaved, rate, Report, Row},
        workload::{scramble, zipf_keys},
    };

    const KEYS: usize = 10_000;

    type Node = ReplicatedStore<u64, String, MemoryStore<u64, String>, RedisStore<u64, String>>;

    use crate::redis_server::RedisServer as Server;

    fn value() -> String {
        "v".repeat(59)
    }

    async fn redis_store(url: &str) -> RedisStore<u64, String> {
        RedisStore::builder()
            .url(url)
            .namespace("bench")
            .build()
            .await
            .expect("connect RedisStore")
    }

    async fn node(url: &str) -> Node {
        ReplicatedStore::builder()
            .local(MemoryStore::new())
            .remote(redis_store(url).await)
            .url(url)
            .build()
            .await
            .expect("connect ReplicatedStore")
    }

    /// Single-threaded gets of `keys` through the async `Store` API (ready futures for hits).
    fn gets<S: Store<u64, String>>(rt: &Runtime, store: &S, keys: &[u64]) -> f64 {
        rt.block_on(async {
            let start = Instant::now();
            let mut hits = 0usize;
            for k in keys {
                hits += usize::from(store.get(k).await.expect("get").is_some());
            }
            assert_eq!(hits, keys.len(), "every key is resident");
            rate(keys.len() as u64, start.elapsed())
        })
    }

    /// `ops` operations over `tasks` concurrent tasks; returns ops/s.
    fn drive<S, F, Fut>(rt: &Runtime, store: &S, tasks: usize, ops: usize, one: F) -> f64
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, u64) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let one = Arc::new(one);
        let per_task = ops / tasks;
        rt.block_on(async {
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let (one, store) = (one.clone(), store.clone());
                    tokio::spawn(async move {
                        for i in 0..per_task {
                            one(store.clone(), ((t * per_task + i) % KEYS) as u64).await;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("bench task");
            }
            rate((per_task * tasks) as u64, start.elapsed())
        })
    }

    fn reads<S: Store<u64, String> + Clone + 'static>(rt: &Runtime, s: &S, ops: usize) -> f64 {
        drive(rt, s, 64, ops, |s: S, k| async move {
            assert!(s.get(&k).await.expect("get").is_some());
        })
    }

    fn writes<S: Store<u64, String> + Clone + 'static>(rt: &Runtime, s: &S, ops: usize) -> f64 {
        drive(rt, s, 64, ops, |s: S, k| async move {
            s.put(k, value(), None).await.expect("put");
        })
    }

    fn row(label: &str, ours: f64, peer: &str, theirs: Option<f64>, unit: &'static str) -> Row {
        Row {
            section: "replicated".into(),
            label: label.into(),
            strata: ours,
            peer: theirs.map(|t| (peer.into(), t)),
            unit,
            higher_is_better: unit == "ops/s",
        }
    }

    /// Publish-to-apply latency (µs) of `samples` sequential writes on `a`, seen by `b`.
    fn latencies(rt: &Runtime, a: &Node, b: &Node, samples: usize) -> Vec<f64> {
        rt.block_on(async {
            let mut out = Vec::with_capacity(samples);
            for i in 0..samples {
                let before = b.replication_stats().applied;
                a.put(i as u64 % 100, value(), None).await.expect("put");
                let deadline = Instant::now() + Duration::from_secs(5);
                while b.replication_stats().applied == before {
                    assert!(Instant::now() < deadline, "invalidation never arrived");
                    tokio::task::yield_now().await;
                }
                let latency = b.replication_stats().last_latency.expect("applied");
                out.push(latency.as_secs_f64() * 1e6);
            }
            out
        })
    }

    fn micros(t: Instant) -> f64 {
        t.elapsed().as_secs_f64() * 1e6
    }

    /// The alternative channel, measured raw: a `SET` on one connection to the `invalidate` push
    /// on a RESP3 connection with `CLIENT TRACKING ON BCAST PREFIX track: NOLOOP`.
    async fn tracking_latencies(url: &str, samples: usize) -> redis::RedisResult<Vec<f64>> {
        let client = redis::Client::open(format!("{url}?protocol=resp3"))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
        let mut tracker = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg(&["TRACKING", "ON", "BCAST", "PREFIX", "track:", "NOLOOP"])
            .query_async::<()>(&mut tracker)
            .await?;
        let mut writer = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        let mut out = Vec::with_capacity(samples);
        for i in 0..samples {
            let start = Instant::now();
            redis::cmd("SET")
                .arg(format!("track:k{}", i % 100))
                .arg("v")
                .query_async::<()>(&mut writer)
                .await?;
            while let Some(push) = rx.recv().await {
                if push.kind == redis::PushKind::Invalidate {
                    break;
                }
            }
            out.push(micros(start));
        }
        Ok(out)
    }

    /// The channel strata uses, measured raw: `PUBLISH` to the message on a subscriber.
    async fn pubsub_latencies(url: &str, samples: usize) -> redis::RedisResult<Vec<f64>> {
        use futures_util::StreamExt;
        let client = redis::Client::open(url)?;
        let mut subscriber = client.get_async_pubsub().await?;
        subscriber.subscribe("track-ps").await?;
        let mut messages = subscriber.into_on_message();
        let mut publisher = client.get_multiplexed_async_connection().await?;
        let mut out = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            redis::cmd("PUBLISH")
                .arg("track-ps")
                .arg("k")
                .query_async::<i64>(&mut publisher)
                .await?;
            messages.next().await;
            out.push(micros(start));
        }
        Ok(out)
    }

    fn latency_rows(report: &mut Report, name: &str, mut lat: Vec<f64>) {
        lat.sort_by(|x, y| x.total_cmp(y));
        for (p_name, p) in [("p50", 0.5), ("p99", 0.99)] {
            let label = format!("{name} {p_name}");
            report.add(row(&label, percentile(&lat, p), "", None, "us"));
        }
    }

    fn percentile(sorted: &[f64], p: f64) -> f64 {
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
    }

    /// The same local-hit reads with a DiskStore tier (reads are served from its memory tier).
    #[cfg(feature = "disk")]
    fn disk_tier(
        report: &mut Report,
        rt: &Runtime,
        url: &str,
        keys: &[u64],
        memory: &MemoryStore<u64, String>,
    ) {
        let dir = tempfile::tempdir().expect("scratch dir");
        let local = strata::DiskStore::builder()
            .dir(dir.path())
            .writes(strata::Writes::Async)
            .open()
            .expect("open DiskStore");
        let node = rt.block_on(async {
            let node = ReplicatedStore::builder()
                .local(local)
                .remote(redis_store(url).await)
                .url(url)
                .build()
                .await
                .expect("connect ReplicatedStore");
            for k in 0..KEYS as u64 {
                node.get(&scramble(k)).await.expect("fill from Redis");
            }
            node
        });
        let (ours, mem) = interleaved(
            report.rounds,
            || gets(rt, &node, keys),
            || gets(rt, memory, keys),
        );
        report.add(row(
            "local-hit get, DiskStore tier, 1 thread",
            ours,
            "MemoryStore",
            Some(mem),
            "ops/s",
        ));
    }

    pub fn run(report: &mut Report) {
        let server = Server::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let url = server.url();
        let (a, b, plain) =
            rt.block_on(async { (node(&url).await, node(&url).await, redis_store(&url).await) });
        let memory: MemoryStore<u64, String> = MemoryStore::new();
        rt.block_on(async {
            for k in 0..KEYS as u64 {
                a.put(k, value(), None).await.expect("fill");
                a.put(scramble(k), value(), None).await.expect("fill");
                memory.put(scramble(k), value(), None).expect("fill");
            }
        });
        let scale = report.scale();
        let keys = zipf_keys(KEYS, 0.99, 2_000_000 / scale, 7);
        let (ours, mem) = interleaved(
            report.rounds,
            || gets(&rt, &a, &keys),
            || gets(&rt, &memory, &keys),
        );
        report.add(row(
            "local-hit get, Zipf 0.99, 1 thread",
            ours,
            "MemoryStore",
            Some(mem),
            "ops/s",
        ));

        #[cfg(feature = "disk")]
        disk_tier(report, &rt, &url, &keys, &memory);

        let ops = 100_000 / scale;
        let (ours, theirs) = interleaved(
            report.rounds,
            || reads(&rt, &a, ops),
            || reads(&rt, &plain, ops),
        );
        report.add(row(
            "get 64 B, 64 tasks (local hits)",
            ours,
            "RedisStore",
            Some(theirs),
            "ops/s",
        ));
        let ops = 20_000 / scale;
        let (ours, theirs) = interleaved(
            report.rounds,
            || writes(&rt, &a, ops),
            || writes(&rt, &plain, ops),
        );
        report.add(row(
            "put 64 B, 64 tasks (SET + PUBLISH, one pipeline)",
            ours,
            "RedisStore",
            Some(theirs),
            "ops/s",
        ));

        let samples = 2_000 / scale;
        let lat = latencies(&rt, &a, &b, samples);
        latency_rows(report, "node to node: publish->applied", lat);
        let raw = rt
            .block_on(pubsub_latencies(&url, samples))
            .expect("pub/sub");
        latency_rows(report, "raw pub/sub: PUBLISH->message", raw);
        let raw = rt
            .block_on(tracking_latencies(&url, samples))
            .expect("tracking");
        latency_rows(report, "raw RESP3 tracking BCAST: SET->push", raw);
        drop(server);
    }
}
