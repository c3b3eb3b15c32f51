//! ReplicatedStore (a MemoryStore tier in front of a RedisStore) on one `redis-server` started
//! here, on the contest harness (`contest.rs`: rotating order, a fresh node and a fresh fill per
//! entrant per round, equal time slices, median of per-round ratios): local-hit read throughput
//! against a bare MemoryStore (target ratio ≥ 0.8), reads and writes against a plain RedisStore
//! (with a raw redis-rs `SET`+`PUBLISH` pipeline as the floor of what a replicated write costs),
//! the CPU per put in this process and in redis-server, the warm rate at join and on resync,
//! and the publish-to-apply latency of invalidations between two nodes of one process.

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
        contest::{self, Contest, Entrant, Slice},
        report::{Report, Row},
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

    /// A node whose local tier `warm_on_join` fills from what Redis holds.
    async fn node(url: &str) -> Node {
        ReplicatedStore::builder()
            .local(MemoryStore::new())
            .remote(redis_store(url).await)
            .url(url)
            .warm_on_join(true)
            .build()
            .await
            .expect("connect ReplicatedStore")
    }

    /// Empties Redis and writes `keys` (pipelined), so each round starts from the same data.
    fn refill(rt: &Runtime, plain: &RedisStore<u64, String>, keys: impl Iterator<Item = u64>) {
        rt.block_on(async {
            plain.clear().await.expect("clear");
            // In pipelines of 10 k: one of 200 k can outlast the 2 s command timeout while
            // the machine is busy (seen with 2 cores shared by several builds).
            let entries: Vec<(u64, String)> = keys.map(|k| (k, value())).collect();
            for chunk in entries.chunks(10_000) {
                plain.put_many(chunk.to_vec(), None).await.expect("fill");
            }
        })
    }

    fn gets<S: Store<u64, String>>(rt: &Runtime, store: &S, keys: &[u64], slice: Duration) -> f64 {
        contest::sequential_async(rt, slice, |i| {
            let k = keys[i as usize % keys.len()];
            async move { assert!(store.get(&k).await.expect("get").is_some()) }
        })
    }

    fn reads<S>(rt: &Runtime, store: &S, slice: Duration) -> f64
    where
        S: Store<u64, String> + Clone + 'static,
    {
        let store = store.clone();
        contest::tasks(rt, 64, slice, move |t, i| {
            let store = store.clone();
            async move {
                let k = (t as u64 * 7919 + i) % KEYS as u64;
                assert!(store.get(&k).await.expect("get").is_some());
            }
        })
    }

    fn writes<S>(rt: &Runtime, store: &S, slice: Duration) -> f64
    where
        S: Store<u64, String> + Clone + 'static,
    {
        let store = store.clone();
        contest::tasks(rt, 64, slice, move |t, i| {
            let store = store.clone();
            async move {
                let k = (t as u64 * 7919 + i) % KEYS as u64;
                store.put(k, value(), None).await.expect("put");
            }
        })
    }

    /// What the replicated put adds, without strata: `SET` + `PUBLISH` in one pipeline on a
    /// multiplexed redis-rs connection, the message fanned out to the subscribed nodes.
    fn raw_set_publish(rt: &Runtime, url: &str, slice: Duration) -> f64 {
        let conn = rt
            .block_on(async {
                let client = redis::Client::open(url)?;
                crate::redis::raw_connection(&client, Default::default()).await
            })
            .expect("connect redis-rs");
        let payload: Arc<Vec<u8>> = Arc::new(vec![b'x'; 26]);
        contest::tasks(rt, 64, slice, move |t, i| {
            let (mut conn, payload) = (conn.clone(), payload.clone());
            async move {
                let k = (t as u64 * 7919 + i) % KEYS as u64;
                let mut pipe = redis::pipe();
                pipe.cmd("SET").arg(format!("bench:raw:{k}")).arg(value());
                pipe.cmd("PUBLISH")
                    .arg("strata:inv:bench")
                    .arg(&payload[..])
                    .ignore();
                pipe.query_async::<()>(&mut conn)
                    .await
                    .expect("SET+PUBLISH");
            }
        })
    }

    /// One node of the design that would replace `PUBLISH` with server-assisted client-side
    /// caching, raw: a RESP2 pub/sub connection subscribed to `__redis__:invalidate`, and a data
    /// connection with `CLIENT TRACKING ON REDIRECT <that id> BCAST PREFIX bench: NOLOOP`, so
    /// Redis itself sends every write of a `bench:` key by any other connection to the
    /// subscription (batched per event-loop turn), and none of this connection's own. The
    /// drain task reads and decodes the pushes as a node would; it ends with the node.
    struct TrackingNode {
        data: redis::aio::MultiplexedConnection,
        drain: tokio::task::JoinHandle<()>,
    }

    impl Drop for TrackingNode {
        fn drop(&mut self) {
            self.drain.abort();
        }
    }

    async fn tracking_node(url: &str) -> redis::RedisResult<TrackingNode> {
        use futures_util::StreamExt;
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe("__redis__:invalidate").await?;
        let mut data = crate::redis::raw_connection(&client, Default::default()).await?;
        // A subscribed RESP2 connection cannot run `CLIENT ID`: the newest pub/sub client is
        // the one just opened (this bench opens them one at a time).
        let list: String = redis::cmd("CLIENT")
            .arg(&["LIST", "TYPE", "pubsub"])
            .query_async(&mut data)
            .await?;
        let id = list
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .next()?
                    .strip_prefix("id=")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        redis::cmd("CLIENT")
            .arg(&["TRACKING", "ON", "REDIRECT"])
            .arg(id)
            .arg(&["BCAST", "PREFIX", "bench:", "NOLOOP"])
            .query_async::<()>(&mut data)
            .await?;
        let drain = tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let keys: Vec<Vec<u8>> = msg.get_payload().unwrap_or_default();
                std::hint::black_box(keys);
            }
        });
        Ok(TrackingNode { data, drain })
    }

    /// A raw subscriber of the group-commit floor: a redis-rs pub/sub connection on
    /// `rawgc:inv:*` that parses every batch message into its keys, as a node would (the keys
    /// are only looked at, not applied). It ends with the value.
    struct BatchSubscriber(tokio::task::JoinHandle<()>);

    impl Drop for BatchSubscriber {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    async fn batch_subscriber(url: &str) -> redis::RedisResult<BatchSubscriber> {
        use futures_util::StreamExt;
        let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
        pubsub.psubscribe("rawgc:inv:*").await?;
        Ok(BatchSubscriber(tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                std::hint::black_box(batch_keys(msg.get_payload_bytes()));
            }
        })))
    }

    /// The keys of a batch message: `[u32 BE count]` then `[u16 BE length][key]` per key,
    /// after the 18-byte header a node message has (version, op, node id, sent-at µs).
    fn batch_keys(payload: &[u8]) -> Vec<&[u8]> {
        let mut rest = payload.get(18..).unwrap_or_default();
        let mut keys = Vec::new();
        let Some((count, tail)) = rest.split_first_chunk::<4>() else {
            return keys;
        };
        rest = tail;
        for _ in 0..u32::from_be_bytes(*count) {
            let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                break;
            };
            let len = u16::from_be_bytes(*len) as usize;
            let Some((key, tail)) = (len <= tail.len()).then(|| tail.split_at(len)) else {
                break;
            };
            keys.push(key);
            rest = tail;
        }
        keys
    }

    fn batch_message(keys: &[String]) -> Vec<u8> {
        let mut out = vec![0u8; 18];
        out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
        for key in keys {
            out.extend_from_slice(&(key.len() as u16).to_be_bytes());
            out.extend_from_slice(key.as_bytes());
        }
        out
    }

    type Queued = (u64, tokio::sync::oneshot::Sender<()>);

    /// Group commit, raw: one writer takes whatever queued while its previous batch was in
    /// flight (a lone put goes alone; after a batch of several it yields once first, as
    /// strata's does), sends its `SET`s and ONE `PUBLISH` listing every key in one pipeline,
    /// and answers each caller once Redis acknowledged them all.
    async fn group_writer(
        mut conn: redis::aio::MultiplexedConnection,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Queued>,
    ) {
        let mut last = 0;
        while let Some(first) = rx.recv().await {
            if last > 1 {
                // As strata's writer: under load, let the callers just answered queue again.
                tokio::task::yield_now().await;
            }
            let mut batch = vec![first];
            while let Ok(next) = rx.try_recv() {
                batch.push(next);
            }
            let keys: Vec<String> = batch
                .iter()
                .map(|(k, _)| format!("bench:raw:{k}"))
                .collect();
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("SET").arg(key).arg(value()).ignore();
            }
            pipe.cmd("PUBLISH")
                .arg("rawgc:inv:bench")
                .arg(batch_message(&keys))
                .ignore();
            pipe.query_async::<()>(&mut conn)
                .await
                .expect("SETs+PUBLISH");
            last = batch.len();
            for (_, done) in batch {
                let _ = done.send(());
            }
        }
    }

    /// The group-commit floor: 64 tasks queue their puts to [`group_writer`] while two raw
    /// subscribers receive and parse every batch message.
    fn batched_two_subscribers(s: &Setup) -> Slice<'_> {
        let (conn, subscribers) =
            s.rt.block_on(async {
                let client = redis::Client::open(s.url.as_str())?;
                let conn = crate::redis::raw_connection(&client, Default::default()).await?;
                let subscribers = [
                    batch_subscriber(&s.url).await?,
                    batch_subscriber(&s.url).await?,
                ];
                redis::RedisResult::Ok((conn, subscribers))
            })
            .expect("connect redis-rs");
        Box::new(move |slice| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let writer = s.rt.spawn(group_writer(conn, rx));
            let rate = contest::tasks(&s.rt, 64, slice, move |t, i| {
                let tx = tx.clone();
                async move {
                    let k = (t as u64 * 7919 + i) % KEYS as u64;
                    let (done, acked) = tokio::sync::oneshot::channel();
                    tx.send((k, done)).expect("writer alive");
                    acked.await.expect("batch acknowledged");
                }
            });
            writer.abort();
            drop(subscribers);
            rate
        })
    }

    /// `SET`s on `conn` from 64 tasks, as the raw floors measure them.
    fn raw_sets(rt: &Runtime, conn: redis::aio::MultiplexedConnection, slice: Duration) -> f64 {
        contest::tasks(rt, 64, slice, move |t, i| {
            let mut conn = conn.clone();
            async move {
                let k = (t as u64 * 7919 + i) % KEYS as u64;
                redis::cmd("SET")
                    .arg(format!("bench:raw:{k}"))
                    .arg(value())
                    .query_async::<()>(&mut conn)
                    .await
                    .expect("SET");
            }
        })
    }

    /// `nodes` tracking nodes (the writer and `nodes - 1` receivers), connected in order.
    fn tracking_nodes(rt: &Runtime, url: &str, nodes: usize) -> Vec<TrackingNode> {
        rt.block_on(async {
            let mut all = Vec::with_capacity(nodes);
            for _ in 0..nodes {
                all.push(tracking_node(url).await?);
            }
            redis::RedisResult::Ok(all)
        })
        .expect("connect tracking nodes")
    }

    /// What a replicated put could cost at best, raw redis-rs against a plain `SET`: the write
    /// strata does today (`SET`+`PUBLISH`, 2 nodes subscribed), group commit (a pipeline of the
    /// `SET`s that queued meanwhile and one `PUBLISH` per batch, 2 subscribers parsing every
    /// batch), and the `SET` of a design built on `CLIENT TRACKING ... BCAST NOLOOP` (2 nodes
    /// tracking the namespace).
    fn floors(report: &mut Report, s: &Setup) {
        let entrants = vec![
            Entrant::ours(
                "SET on a tracked connection, 2 nodes tracking",
                move || -> Slice<'_> {
                    let nodes = tracking_nodes(&s.rt, &s.url, 2);
                    Box::new(move |slice| {
                        let rate = raw_sets(&s.rt, nodes[0].data.clone(), slice);
                        drop(nodes);
                        rate
                    })
                },
            ),
            Entrant::ours("SET+PUBLISH pipeline, 2 nodes subscribed", move || {
                set_publish_two_nodes(s)
            }),
            Entrant::ours(
                "batched SETs + one PUBLISH per batch, 2 nodes subscribed",
                move || batched_two_subscribers(s),
            ),
            Entrant::peer("redis-rs plain SET", move || -> Slice<'_> {
                let conn =
                    s.rt.block_on(async {
                        let client = redis::Client::open(s.url.as_str())?;
                        crate::redis::raw_connection(&client, Default::default()).await
                    })
                    .expect("connect redis-rs");
                Box::new(move |slice| raw_sets(&s.rt, conn, slice))
            }),
        ];
        run_contest(
            report,
            "floor of a replicated put, raw redis-rs, 64 tasks",
            entrants,
        );
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
        let mut tracker = crate::redis::raw_connection(&client, config).await?;
        redis::cmd("CLIENT")
            .arg(&["TRACKING", "ON", "BCAST", "PREFIX", "track:", "NOLOOP"])
            .query_async::<()>(&mut tracker)
            .await?;
        let mut writer =
            crate::redis::raw_connection(&redis::Client::open(url)?, Default::default()).await?;
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
        let mut publisher = crate::redis::raw_connection(&client, Default::default()).await?;
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

    /// A node over a DiskStore tier (reads are served from its memory tier), warmed on join.
    #[cfg(feature = "disk")]
    fn disk_node(
        rt: &Runtime,
        url: &str,
        dir: &std::path::Path,
    ) -> ReplicatedStore<u64, String, strata::DiskStore<u64, String>, RedisStore<u64, String>> {
        let local = strata::DiskStore::builder()
            .dir(dir)
            .writes(strata::Writes::Async)
            .open()
            .expect("open DiskStore");
        rt.block_on(async {
            ReplicatedStore::builder()
                .local(local)
                .remote(redis_store(url).await)
                .url(url)
                .warm_on_join(true)
                .build()
                .await
                .expect("connect ReplicatedStore")
        })
    }

    struct Setup {
        rt: Runtime,
        url: String,
        plain: RedisStore<u64, String>,
        zipf: Vec<u64>,
    }

    fn local_hits(report: &mut Report, s: &Setup) {
        let scrambled = || (0..KEYS as u64).map(scramble);
        let mut entrants = vec![
            Entrant::ours("ReplicatedStore, MemoryStore tier", move || -> Slice<'_> {
                refill(&s.rt, &s.plain, scrambled());
                let node = s.rt.block_on(node(&s.url));
                Box::new(move |slice| gets(&s.rt, &node, &s.zipf, slice))
            }),
            Entrant::peer("MemoryStore", move || -> Slice<'_> {
                let memory: MemoryStore<u64, String> = MemoryStore::new();
                for k in scrambled() {
                    memory.put(k, value(), None).expect("fill");
                }
                Box::new(move |slice| gets(&s.rt, &memory, &s.zipf, slice))
            }),
        ];
        #[cfg(feature = "disk")]
        entrants.push(Entrant::ours(
            "ReplicatedStore, DiskStore tier",
            move || -> Slice<'_> {
                refill(&s.rt, &s.plain, scrambled());
                let dir = tempfile::tempdir().expect("scratch dir");
                let node = disk_node(&s.rt, &s.url, dir.path());
                Box::new(move |slice| {
                    let rate = gets(&s.rt, &node, &s.zipf, slice);
                    drop((node, dir));
                    rate
                })
            },
        ));
        run_contest(report, "local-hit get, Zipf 0.99, 1 thread", entrants);
    }

    fn run_contest(report: &mut Report, label: &str, entrants: Vec<Entrant<'_>>) {
        contest::run(
            report,
            Contest {
                section: "replicated",
                label: label.into(),
                chart: "throughput_replicated",
                title: "ReplicatedStore vs its parts (higher is better)",
                group: label.into(),
                entrants,
            },
        );
    }

    fn remote_reads(report: &mut Report, s: &Setup) {
        let entrants = vec![
            Entrant::ours("ReplicatedStore", move || -> Slice<'_> {
                refill(&s.rt, &s.plain, 0..KEYS as u64);
                let node = s.rt.block_on(node(&s.url));
                Box::new(move |slice| reads(&s.rt, &node, slice))
            }),
            Entrant::peer("RedisStore", move || -> Slice<'_> {
                refill(&s.rt, &s.plain, 0..KEYS as u64);
                Box::new(move |slice| reads(&s.rt, &s.plain, slice))
            }),
        ];
        run_contest(report, "get 64 B, 64 tasks (local hits)", entrants);
    }

    /// The raw floor of a replicated write: a redis-rs SET+PUBLISH pipeline while two nodes
    /// are subscribed (they receive every invalidation). An entrant of both contests.
    fn set_publish_two_nodes(s: &Setup) -> Slice<'_> {
        let nodes = two_nodes(s);
        Box::new(move |slice| {
            let rate = raw_set_publish(&s.rt, &s.url, slice);
            drop(nodes);
            rate
        })
    }

    /// Two nodes, `a` writing and `b` subscribed (each `PUBLISH` reaches both).
    fn two_nodes(s: &Setup) -> (Node, Node) {
        refill(&s.rt, &s.plain, 0..KEYS as u64);
        s.rt.block_on(async { (node(&s.url).await, node(&s.url).await) })
    }

    fn puts(report: &mut Report, s: &Setup) {
        let entrants = vec![
            Entrant::ours("ReplicatedStore, 2 nodes", move || -> Slice<'_> {
                let (a, b) = two_nodes(s);
                Box::new(move |slice| {
                    let rate = writes(&s.rt, &a, slice);
                    drop(b);
                    rate
                })
            }),
            Entrant::ours("ReplicatedStore, 1 node", move || -> Slice<'_> {
                refill(&s.rt, &s.plain, 0..KEYS as u64);
                let a = s.rt.block_on(node(&s.url));
                Box::new(move |slice| writes(&s.rt, &a, slice))
            }),
            Entrant::peer("RedisStore", move || -> Slice<'_> {
                refill(&s.rt, &s.plain, 0..KEYS as u64);
                Box::new(move |slice| writes(&s.rt, &s.plain, slice))
            }),
            Entrant::peer(
                "redis-rs SET+PUBLISH pipeline, 2 nodes subscribed",
                move || set_publish_two_nodes(s),
            ),
        ];
        run_contest(report, "put 64 B, 64 tasks", entrants);
    }

    /// CPU seconds this process has used (user + sys, every thread).
    fn client_cpu() -> f64 {
        crate::cpu::process_ms() / 1000.0
    }

    /// CPU seconds redis-server has used (`INFO cpu`: used_cpu_user + used_cpu_sys).
    fn server_cpu(server: &Server) -> f64 {
        let info = server.raw(&["INFO", "cpu"]);
        info.lines()
            .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum()
    }

    /// (client µs, redis-server µs) of CPU per put over one slice of 64 tasks.
    fn cpu_per_put(
        server: &Server,
        slice: Duration,
        put: impl FnOnce(Duration) -> f64,
    ) -> (f64, f64) {
        let (client, srv, began) = (client_cpu(), server_cpu(server), Instant::now());
        let ops = put(slice) * began.elapsed().as_secs_f64();
        let per_op = |secs: f64| secs * 1e6 / ops.max(1.0);
        (
            per_op(client_cpu() - client),
            per_op(server_cpu(server) - srv),
        )
    }

    /// Where a replicated put's time goes: CPU per op in this process and in redis-server.
    fn put_cpu(report: &mut Report, s: &Setup, server: &Server) {
        let slice = report.slice;
        let (a, b) = two_nodes(s);
        let before = a.replication_stats();
        let ours = cpu_per_put(server, slice, |t| writes(&s.rt, &a, t));
        let after = a.replication_stats();
        let batches = (after.batches - before.batches).max(1);
        let per_batch = (after.batched_writes - before.batched_writes) as f64 / batches as f64;
        let label = "put 64 B, 64 tasks, 2 nodes: writes per group commit";
        report.add(row(label, per_batch, "", None, "writes"));
        drop((a, b));
        refill(&s.rt, &s.plain, 0..KEYS as u64);
        let theirs = cpu_per_put(server, slice, |t| writes(&s.rt, &s.plain, t));
        let rows = [
            ("client process", ours.0, theirs.0),
            ("redis-server", ours.1, theirs.1),
        ];
        for (side, o, t) in rows {
            let label = format!("put 64 B, 64 tasks, 2 nodes: CPU per op, {side}");
            let mut r = row(&label, o, "RedisStore", Some(t), "us");
            r.higher_is_better = false;
            report.add(r);
        }
    }

    /// Keys/s of a warm: at join (`build()` returns once warmed), and in the background after
    /// the subscription is killed (from the kill until the warm reports done).
    fn warm_rates(report: &mut Report, s: &Setup, server: &Server) {
        let keys = 200_000 / report.scale().min(100);
        refill(&s.rt, &s.plain, 0..keys as u64);
        let began = Instant::now();
        let a = s.rt.block_on(node(&s.url));
        let join = keys as f64 / began.elapsed().as_secs_f64();
        assert_eq!(a.local().count(), keys, "warmed");
        let began = Instant::now();
        server.raw(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        while a.replication_stats().warms == 0 {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "resync never ended"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let resync = keys as f64 / began.elapsed().as_secs_f64();
        let k = keys / 1000;
        let mut add = |label: String, rate: f64| report.add(row(&label, rate, "", None, "keys/s"));
        add(format!("warm at join, {k}k keys (target 100 k/s)"), join);
        add(
            format!("resync after CLIENT KILL, {k}k keys, writes open (target 100 k/s)"),
            resync,
        );
    }

    pub fn run(report: &mut Report) {
        let server = Server::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let url = server.url();
        let plain = rt.block_on(redis_store(&url));
        let zipf = zipf_keys(KEYS, 0.99, 2_000_000 / report.scale(), 7);
        let s = Setup {
            rt,
            url,
            plain,
            zipf,
        };
        local_hits(report, &s);
        remote_reads(report, &s);
        puts(report, &s);
        floors(report, &s);
        put_cpu(report, &s, &server);
        warm_rates(report, &s, &server);

        let (a, b) = two_nodes(&s);
        let samples = 2_000 / report.scale();
        let lat = latencies(&s.rt, &a, &b, samples);
        latency_rows(report, "node to node: publish->applied", lat);
        let raw =
            s.rt.block_on(pubsub_latencies(&s.url, samples))
                .expect("pub/sub");
        latency_rows(report, "raw pub/sub: PUBLISH->message", raw);
        let raw =
            s.rt.block_on(tracking_latencies(&s.url, samples))
                .expect("tracking");
        latency_rows(report, "raw RESP3 tracking BCAST: SET->push", raw);
        drop((a, b, s));
        drop(server);
    }
}
