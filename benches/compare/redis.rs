//! RedisStore against raw redis-rs (a `MultiplexedConnection` sending the same GET/SET with the
//! same value bytes) and against `redis-benchmark -P 16 -t get,set -d 64`, on one
//! `redis-server` started here on a free loopback port, with 1 and 64 concurrent tasks.

#[cfg(not(feature = "redis"))]
pub fn run(_: &mut crate::report::Report) {
    eprintln!("  redis      skipped: run `cargo bench --bench compare --features redis`");
}

#[cfg(feature = "redis")]
pub use bench::run;

#[cfg(feature = "redis")]
mod bench {
    use std::{process::Command, sync::Arc, time::Instant};

    use ::redis::aio::MultiplexedConnection;
    use strata::{codec::encode_value, Format, RedisStore, Store};
    use tokio::runtime::Runtime;

    use crate::report::{median, rate, Report, Row};

    /// Distinct keys the workloads cycle through.
    const KEYS: usize = 10_000;
    /// 3 header bytes + 2 bytes of MessagePack string length + 59 characters = 64 bytes.
    const VALUE_CHARS: usize = 59;

    use crate::redis_server::RedisServer as Server;

    #[derive(Clone, Copy, PartialEq)]
    enum Op {
        Get,
        Set,
    }

    impl Op {
        fn name(self) -> &'static str {
            match self {
                Op::Get => "get",
                Op::Set => "set",
            }
        }
    }

    fn key(i: usize) -> String {
        format!("k{}", i % KEYS)
    }

    fn value() -> String {
        "v".repeat(VALUE_CHARS)
    }

    /// Runs `ops` operations split over `tasks` tasks; returns ops/s.
    fn drive<F, Fut>(rt: &Runtime, tasks: usize, ops: usize, one: F) -> f64
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let one = Arc::new(one);
        let per_task = ops / tasks;
        rt.block_on(async {
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let one = one.clone();
                    tokio::spawn(async move {
                        for i in 0..per_task {
                            one(t * per_task + i).await;
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

    fn strata_round(
        rt: &Runtime,
        store: &RedisStore<String, String>,
        op: Op,
        tasks: usize,
        ops: usize,
    ) -> f64 {
        let (store, value) = (store.clone(), value());
        drive(rt, tasks, ops, move |i| {
            let (store, value) = (store.clone(), value.clone());
            async move {
                match op {
                    Op::Get => assert!(store.get(&key(i)).await.expect("GET").is_some()),
                    Op::Set => store.put(key(i), value, None).await.expect("SET"),
                }
            }
        })
    }

    fn raw_round(
        rt: &Runtime,
        conn: &MultiplexedConnection,
        bytes: &Arc<Vec<u8>>,
        op: Op,
        tasks: usize,
        ops: usize,
    ) -> f64 {
        let (conn, bytes) = (conn.clone(), bytes.clone());
        drive(rt, tasks, ops, move |i| {
            let (mut conn, bytes) = (conn.clone(), bytes.clone());
            async move {
                let full = format!("bench:{}", key(i));
                match op {
                    Op::Get => {
                        let mut cmd = ::redis::cmd("GET");
                        cmd.arg(&full);
                        let got: Option<Vec<u8>> = cmd.query_async(&mut conn).await.expect("GET");
                        assert!(got.is_some());
                    }
                    Op::Set => {
                        let mut cmd = ::redis::cmd("SET");
                        cmd.arg(&full).arg(&bytes[..]);
                        cmd.query_async::<()>(&mut conn).await.expect("SET");
                    }
                }
            }
        })
    }

    /// `redis-benchmark -P 16 -t get,set -d 64 -c 64`: requests per second for GET and SET.
    fn redis_benchmark(port: u16, requests: usize) -> (f64, f64) {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", "16", "-t", "get,set", "-d", "64", "-c", "64", "--csv"])
            .args(["-n", &requests.to_string()])
            .output()
            .expect("redis-benchmark is not installed: apt-get install -y redis-tools");
        let text = String::from_utf8_lossy(&out.stdout);
        let rps = |test: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("\"{test}\"")))
                .and_then(|l| l.split(',').nth(1))
                .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {test} line in redis-benchmark output:\n{text}"))
        };
        (rps("GET"), rps("SET"))
    }

    pub fn run(report: &mut Report) {
        let server = Server::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let store: RedisStore<String, String> = rt
            .block_on(
                RedisStore::builder()
                    .url(server.url())
                    .namespace("bench")
                    .build(),
            )
            .expect("connect RedisStore");
        let conn = rt
            .block_on(async {
                let client = ::redis::Client::open(server.url())?;
                client.get_multiplexed_async_connection().await
            })
            .expect("connect redis-rs");
        let bytes = Arc::new(encode_value(&value(), Format::MessagePack, "k").expect("encode"));
        assert_eq!(
            bytes.len(),
            64,
            "same 64 value bytes as redis-benchmark -d 64"
        );
        // Fill every key once so GETs hit.
        strata_round(&rt, &store, Op::Set, 16, KEYS);

        let scale = report.scale();
        for tasks in [1, 64] {
            let ops = if tasks == 1 { 10_000 } else { 100_000 } / scale;
            for op in [Op::Get, Op::Set] {
                let (mut ours, mut raw, mut peer) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..report.rounds {
                    ours.push(strata_round(&rt, &store, op, tasks, ops));
                    raw.push(raw_round(&rt, &conn, &bytes, op, tasks, ops));
                    if tasks == 64 {
                        let (get, set) = redis_benchmark(server.port(), ops * 2);
                        peer.push(if op == Op::Get { get } else { set });
                    }
                }
                let ours = median(ours);
                let label = format!(
                    "{} 64 B, {tasks} task{}",
                    op.name(),
                    if tasks == 1 { "" } else { "s" }
                );
                report.add(row(&label, ours, "redis-rs", median(raw)));
                if tasks == 64 {
                    report.add(row(&label, ours, "redis-benchmark -P 16", median(peer)));
                }
            }
        }
        drop(server);
    }

    fn row(label: &str, ours: f64, peer: &str, theirs: f64) -> Row {
        Row {
            section: "redis".into(),
            label: label.into(),
            strata: ours,
            peer: Some((peer.into(), theirs)),
            unit: "ops/s",
            higher_is_better: true,
        }
    }
}
