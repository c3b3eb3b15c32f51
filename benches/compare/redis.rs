//! RedisStore against two raw Rust clients — redis-rs (a `MultiplexedConnection`) and fred (one
//! client) sending the same GET/SET with the same value bytes — and against `redis-benchmark -P 16
//! -t get,set -d 64`, on one `redis-server` started here on a free loopback port, with 1 and 64
//! concurrent tasks. Then the CPU each costs per operation: the client's (this process's user +
//! system time from `/proc/self/stat`; redis-benchmark's from its waited-for child time) and the
//! server's (`INFO cpu`), so a throughput gap can be told apart from a CPU-bound machine.
//!
//! **The raw clients do the same work as strata's caller gets done**: a GET ends with the
//! `String` strata returns, decoded from the same 64 bytes by the same MessagePack decoder
//! (`rmp_serde`, after strata's 3-byte header, which a raw user would not check), and a SET
//! encodes the `String` into those bytes first. Before 2026-12-06 evening the raw clients
//! stopped at the bytes (no decode, a pre-encoded value), which charged strata alone for the
//! (de)serialization its API does.

#[cfg(not(feature = "redis"))]
pub fn run(_: &mut crate::report::Report) {
    eprintln!("  redis      skipped: run `cargo bench --bench compare --features redis`");
}

#[cfg(feature = "redis")]
pub use bench::run;

#[cfg(feature = "redis")]
mod bench {
    use std::{cell::Cell, process::Command, sync::Arc, time::Duration};

    use ::redis::aio::MultiplexedConnection;
    use fred::prelude::{Client as FredClient, ClientLike, KeysInterface};
    use strata::{
        codec::{encode_value, MAGIC, VERSION},
        Format, RedisStore, Store,
    };
    use tokio::runtime::Runtime;

    use crate::{
        contest::{self, Contest, Entrant, Slice},
        report::{Report, Row},
    };

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

    fn key(i: u64) -> String {
        format!("k{}", i % KEYS as u64)
    }

    fn value() -> String {
        "v".repeat(VALUE_CHARS)
    }

    /// strata's value header for MessagePack: a raw client's user skips it.
    const HEADER: [u8; 3] = [MAGIC, VERSION, 1];

    /// What a raw client's user does to get the `String` strata's GET returns.
    fn decode(bytes: &[u8]) -> String {
        let payload = bytes.get(HEADER.len()..).expect("a headed value");
        rmp_serde::from_slice(payload).expect("a MessagePack string")
    }

    /// What a raw client's user does to send the bytes strata's SET sends.
    fn encode(value: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&HEADER);
        rmp_serde::encode::write(&mut out, value).expect("a MessagePack string");
        out
    }

    /// What every contender starts from: an empty database holding the `KEYS` keys once.
    fn refill(rt: &Runtime, conn: &MultiplexedConnection, bytes: &[u8]) {
        rt.block_on(async {
            let mut conn = conn.clone();
            ::redis::cmd("FLUSHDB")
                .query_async::<()>(&mut conn)
                .await
                .expect("FLUSHDB");
            let mut pipe = ::redis::pipe();
            for i in 0..KEYS as u64 {
                pipe.cmd("SET")
                    .arg(format!("bench:{}", key(i)))
                    .arg(bytes)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await.expect("fill");
        })
    }

    fn strata_slice(
        rt: &Runtime,
        store: &RedisStore<String, String>,
        op: Op,
        tasks: usize,
        slice: Duration,
    ) -> f64 {
        let (store, value) = (store.clone(), value());
        contest::tasks(rt, tasks, slice, move |t, i| {
            let (store, value) = (store.clone(), value.clone());
            async move {
                let k = key(t as u64 * 7919 + i);
                match op {
                    Op::Get => assert!(store.get(&k).await.expect("GET").is_some()),
                    Op::Set => store.put(k, value, None).await.expect("SET"),
                }
            }
        })
    }

    fn raw_slice(
        rt: &Runtime,
        conn: &MultiplexedConnection,
        op: Op,
        tasks: usize,
        slice: Duration,
    ) -> f64 {
        let (conn, value) = (conn.clone(), Arc::new(value()));
        contest::tasks(rt, tasks, slice, move |t, i| {
            let (mut conn, value) = (conn.clone(), value.clone());
            async move {
                let full = format!("bench:{}", key(t as u64 * 7919 + i));
                match op {
                    Op::Get => {
                        let mut cmd = ::redis::cmd("GET");
                        cmd.arg(&full);
                        let got: Option<Vec<u8>> = cmd.query_async(&mut conn).await.expect("GET");
                        assert_eq!(decode(&got.expect("GET hit")).len(), VALUE_CHARS);
                    }
                    Op::Set => {
                        let mut cmd = ::redis::cmd("SET");
                        cmd.arg(&full).arg(encode(&value));
                        cmd.query_async::<()>(&mut conn).await.expect("SET");
                    }
                }
            }
        })
    }

    fn fred_slice(rt: &Runtime, client: &FredClient, op: Op, tasks: usize, slice: Duration) -> f64 {
        let (client, value) = (client.clone(), Arc::new(value()));
        contest::tasks(rt, tasks, slice, move |t, i| {
            let (client, value) = (client.clone(), value.clone());
            async move {
                let full = format!("bench:{}", key(t as u64 * 7919 + i));
                match op {
                    Op::Get => {
                        let got: Option<Vec<u8>> = client.get(&full).await.expect("GET");
                        assert_eq!(decode(&got.expect("GET hit")).len(), VALUE_CHARS);
                    }
                    Op::Set => {
                        client
                            .set::<(), _, _>(&full, encode(&value), None, None, false)
                            .await
                            .expect("SET");
                    }
                }
            }
        })
    }

    /// `redis-benchmark -P 16 -t OP -d 64 -c 64`: requests per second. It has no time limit, so
    /// the request count is sized from its previous round's rate to fill about one slice.
    fn redis_benchmark(port: u16, op: Op, requests: usize) -> f64 {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", "16", "-t", op.name(), "-d", "64", "-c", "64", "--csv"])
            .args(["-n", &requests.to_string()])
            .output()
            .expect("redis-benchmark is not installed: apt-get install -y redis-tools");
        let text = String::from_utf8_lossy(&out.stdout);
        let test = op.name().to_uppercase();
        text.lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {test} line in redis-benchmark output:\n{text}"))
    }

    /// Everything a contest entrant needs: the server, the runtime, both clients.
    struct Setup {
        server: Server,
        rt: Runtime,
        store: RedisStore<String, String>,
        conn: MultiplexedConnection,
        fred: FredClient,
        bytes: Arc<Vec<u8>>,
    }

    fn setup() -> Setup {
        let server = Server::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let store = rt
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
        let fred = rt
            .block_on(async {
                let config = fred::prelude::Config::from_url(&server.url())?;
                let client = fred::prelude::Builder::from_config(config).build()?;
                client.init().await?;
                Ok::<_, fred::prelude::Error>(client)
            })
            .expect("connect fred");
        let bytes = Arc::new(encode_value(&value(), Format::MessagePack, "k").expect("encode"));
        assert_eq!(
            bytes.len(),
            64,
            "same 64 value bytes as redis-benchmark -d 64"
        );
        assert_eq!(
            encode(&value()),
            *bytes,
            "the raw clients send strata's bytes"
        );
        assert_eq!(decode(&bytes), value(), "and read them back as strata does");
        Setup {
            server,
            rt,
            store,
            conn,
            fred,
            bytes,
        }
    }

    fn contest<'a>(s: &'a Setup, op: Op, tasks: usize, last: &'a Cell<f64>) -> Contest<'a> {
        let ours = Entrant::ours("strata RedisStore", move || -> Slice<'a> {
            refill(&s.rt, &s.conn, &s.bytes);
            Box::new(move |slice| strata_slice(&s.rt, &s.store, op, tasks, slice))
        });
        let raw = Entrant::peer("redis-rs", move || -> Slice<'a> {
            refill(&s.rt, &s.conn, &s.bytes);
            Box::new(move |slice| raw_slice(&s.rt, &s.conn, op, tasks, slice))
        });
        let fred = Entrant::peer("fred", move || -> Slice<'a> {
            refill(&s.rt, &s.conn, &s.bytes);
            Box::new(move |slice| fred_slice(&s.rt, &s.fred, op, tasks, slice))
        });
        let mut entrants = vec![ours, raw, fred];
        if tasks == 64 {
            entrants.push(Entrant::peer(
                "redis-benchmark -P 16",
                move || -> Slice<'a> {
                    refill(&s.rt, &s.conn, &s.bytes);
                    Box::new(move |slice| {
                        let requests = (last.get() * slice.as_secs_f64()).max(1_000.0) as usize;
                        let rate = redis_benchmark(s.server.port(), op, requests);
                        last.set(rate);
                        rate
                    })
                },
            ));
        }
        let plural = if tasks == 1 { "" } else { "s" };
        Contest {
            section: "redis",
            label: format!("{} 64 B, {tasks} task{plural}", op.name()),
            chart: "throughput_redis",
            title: "RedisStore vs redis-rs, fred and redis-benchmark, 64 B values, loopback",
            group: format!("{} 64 B\n{tasks} task{plural}", op.name().to_uppercase()),
            entrants,
        }
    }

    pub fn run(report: &mut Report) {
        let s = setup();
        // redis-benchmark's first request count assumes 500k requests/s.
        let last = Cell::new(500_000.0);
        for tasks in [1, 64] {
            for op in [Op::Get, Op::Set] {
                contest::run(report, contest(&s, op, tasks, &last));
            }
        }
        for op in [Op::Get, Op::Set] {
            cpu_per_op(report, &s, op, &last);
        }
    }

    /// CPU seconds used so far by this process (every thread) and by its waited-for children:
    /// fields 14–17 of `/proc/self/stat` (utime, stime, cutime, cstime), in clock ticks.
    fn cpu_seconds() -> (f64, f64) {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
        // The command name (field 2) may hold spaces; the fields after its `)` are plain.
        let after = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
        let field = |n: usize| -> f64 {
            let ticks: u64 = after
                .split(' ')
                .nth(n - 3)
                .and_then(|f| f.parse().ok())
                .expect("stat field");
            ticks as f64 / 100.0 // USER_HZ is 100 on Linux
        };
        (field(14) + field(15), field(16) + field(17))
    }

    /// The server's CPU seconds so far (`used_cpu_user` + `used_cpu_sys` of `INFO cpu`).
    fn server_cpu_seconds(s: &Setup) -> f64 {
        let info: String = s.rt.block_on(async {
            let mut conn = s.conn.clone();
            ::redis::cmd("INFO")
                .arg("cpu")
                .query_async(&mut conn)
                .await
                .expect("INFO cpu")
        });
        let value = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        value("used_cpu_user") + value("used_cpu_sys")
    }

    /// One slice of each contender at 64 tasks, with the client's and the server's CPU time per
    /// operation: rows "client CPU/op" and "server CPU/op", strata against each peer.
    fn cpu_per_op(report: &mut Report, s: &Setup, op: Op, last: &Cell<f64>) {
        let slice = report.slice;
        let tasks = 64;
        let mut measured: Vec<(&str, f64, f64)> = Vec::new();
        let mut run = |name: &'static str, children: bool, go: &dyn Fn() -> f64| {
            refill(&s.rt, &s.conn, &s.bytes);
            let (self0, kids0) = cpu_seconds();
            let server0 = server_cpu_seconds(s);
            let began = std::time::Instant::now();
            let rate = go();
            let elapsed = began.elapsed().as_secs_f64();
            let (self1, kids1) = cpu_seconds();
            let server = server_cpu_seconds(s) - server0;
            // redis-benchmark reports its own rate; its run length is what it took.
            let ops = (rate * elapsed).max(1.0);
            let client = if children {
                kids1 - kids0
            } else {
                self1 - self0
            };
            measured.push((name, client / ops * 1e6, server / ops * 1e6));
        };
        run("strata RedisStore", false, &|| {
            strata_slice(&s.rt, &s.store, op, tasks, slice)
        });
        run("redis-rs", false, &|| {
            raw_slice(&s.rt, &s.conn, op, tasks, slice)
        });
        run("fred", false, &|| {
            fred_slice(&s.rt, &s.fred, op, tasks, slice)
        });
        run("redis-benchmark -P 16", true, &|| {
            let requests = (last.get() * slice.as_secs_f64()).max(1_000.0) as usize;
            redis_benchmark(s.server.port(), op, requests)
        });
        let (ours, peers) = measured.split_first().expect("strata measured");
        for (side, pick) in [("client", 1), ("server", 2)] {
            let of = |m: &(&str, f64, f64)| if pick == 1 { m.1 } else { m.2 };
            for peer in peers {
                report.add(Row {
                    section: "redis".into(),
                    label: format!("{side} CPU per {} 64 B, 64 tasks", op.name()),
                    strata: of(ours),
                    peer: Some((peer.0.to_string(), of(peer))),
                    unit: "us/op",
                    higher_is_better: false,
                });
            }
        }
    }
}
