//! RedisStore against two raw Rust clients — redis-rs (a `MultiplexedConnection`) and fred (one
//! client) sending the same GET/SET with the same value bytes — and against `redis-benchmark -P 16
//! -t get,set -d 64`, on one `redis-server` started here on a free loopback port, with 1 and 64
//! concurrent tasks. At 64 tasks, also what each costs per operation, summed over every round of
//! its contest (each slice metered on its own, the rows the median of per-round ratios): the
//! client's CPU (this process's user + system time from `getrusage`, in microseconds; for
//! redis-benchmark its waited-for child time), the server's (`INFO cpu`), how many commands the
//! server found per read of a client socket (`INFO stats`; what the client's writes and the
//! server's scheduling let pile up: more per read is less server CPU per command) and this
//! process's context switches per thousand operations (its wake-ups). Operations are counted by
//! the server (`total_commands_processed`).
//!
//! **Two runtimes.** The 64-task contests run twice: on a 2-worker multi-thread `tokio` runtime,
//! and on a current-thread one (rows marked `current-thread`), each client connected from inside
//! the runtime it runs on, so its connection's driver task (redis-rs's and fred's; strata's is
//! redis-rs's) is spawned there too (checked at set-up: the runtime's live tasks grow when each
//! client connects). On one thread no wake crosses threads and every ready task runs before the
//! I/O driver is polled, so the batches are as large as the load allows; with `redis-server` on
//! the other core this is redis-benchmark's shape (one client thread beside the server).
//! `STRATA_REDIS_RUNTIME=multi` or `current` runs only that runtime's contests (both by default).
//!
//! **strata's own driver (prototype).** At 64 tasks a second strata entrant, `strata driver
//! prototype` (`strata::redis_driver`, on its own connection), does the store's work for the same
//! call (the namespaced key and the value encoded straight into its write buffer, the GET's bytes
//! decoded to the same `String`) without redis-rs: its rows carry `[strata driver prototype]`, the
//! store's throughput rows `[strata RedisStore]` (see BENCHMARKS.md, issue 16 item 1).
//!
//! `STRATA_REDIS_AUTO_PIPELINE=0` builds the RedisStore with `auto_pipeline(false)` (one write per
//! command, as before 2026-12-07), to compare the two with the same binary.
//!
//! `STRATA_REDIS_OWN_DRIVER=0` builds the store with `own_driver(false)` (on redis-rs's
//! connection, as before strata's own driver carried it).
//! `STRATA_REDIS_PROBE=CLIENT:OP:N[:wait]` (CLIENT `strata`, `redis-rs`, `fred`, `driver` or
//! `driver-timed` (the driver with a 5 s `tokio::time::timeout` per call), OP `get` or
//! `set`; or `redis-rs-p16`: redis-rs sending pipelines of 16, as redis-benchmark `-P 16` does, to
//! show what batching would save) instead runs N operations of that one client at 64 tasks and
//! exits, for a profiler or
//! `perf stat -e 'syscalls:sys_enter_*'` (run it twice with different N and subtract: setup
//! cancels out). `STRATA_REDIS_PROBE_TASKS=1` runs them from one task instead of 64 (the
//! latency of a lone caller: wall time / N); `STRATA_REDIS_PROBE_RUNTIME=current` on a
//! current-thread runtime instead of the 2-worker multi-thread one. With `:wait` it prints `probe ready <pid>` once set up and waits for a line on
//! stdin before the operations, so `perf stat -p <pid>` counts them without the setup or the
//! `redis-server` child. It ends by printing what the operations cost each: this process's user
//! and system CPU (`getrusage`, the set-up excluded), the server's CPU (`INFO cpu`), commands per
//! server read and context switches, operations counted by the server.
//!
//! **The raw clients do the same work as strata's caller gets done**: a GET ends with the
//! `String` strata returns, decoded from the same 64 bytes by the same MessagePack decoder
//! (`rmp_serde`, after strata's 3-byte header, which a raw user would not check), and a SET
//! encodes the `String` into those bytes first. Before 2026-12-06 evening the raw clients
//! stopped at the bytes (no decode, a pre-encoded value), which charged strata alone for the
//! (de)serialization its API does.

/// A redis-rs multiplexed connection for the raw contenders and the set-ups, with 60 s
/// connection and response timeouts instead of redis-rs's 1 s and 500 ms: the smoke run under
/// `cargo test` failed at load 20 filling 10 000 keys in one pipeline ("fill: timed out").
/// Either way a request carries one timer, so the contests measure the same work.
#[cfg(feature = "redis")]
pub async fn raw_connection(
    client: &::redis::Client,
    config: ::redis::AsyncConnectionConfig,
) -> ::redis::RedisResult<::redis::aio::MultiplexedConnection> {
    let patient = Some(std::time::Duration::from_secs(60));
    let config = config
        .set_connection_timeout(patient)
        .set_response_timeout(patient);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

#[cfg(not(feature = "redis"))]
pub fn run(_: &mut crate::report::Report) {
    eprintln!("  redis      skipped: run `cargo bench --bench compare --features redis`");
}

#[cfg(feature = "redis")]
pub use bench::run;

#[cfg(feature = "redis")]
mod bench {
    use std::{
        cell::{Cell, RefCell},
        process::Command,
        rc::Rc,
        sync::Arc,
        time::Duration,
    };

    use ::redis::aio::MultiplexedConnection;
    use fred::prelude::{Client as FredClient, ClientLike, KeysInterface};
    use strata::{
        codec::{encode_value, encode_value_into, MAGIC, VERSION},
        redis_driver::{self as driver, Driver, Reply},
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

    async fn strata_op(store: &RedisStore<String, String>, op: Op, k: String, value: &str) {
        match op {
            Op::Get => assert!(store.get(&k).await.expect("GET").is_some()),
            Op::Set => store.put(k, value.to_owned(), None).await.expect("SET"),
        }
    }

    /// strata's own driver (prototype) doing what `RedisStore` does for the same call: the
    /// namespaced key and the value encoded straight into the write buffer (the value through a
    /// reused scratch buffer, as the store's `set_command`), a GET's bytes decoded in place.
    async fn driver_op(driver: &Driver, op: Op, k: String, value: &str) {
        match op {
            Op::Get => {
                let reply = driver
                    .call_with(|out| {
                        driver::encode_array(out, 2);
                        driver::encode_parts(out, &[b"GET"]);
                        driver::encode_parts(out, &[b"bench:", k.as_bytes()]);
                    })
                    .await
                    .expect("GET");
                let Reply::Bulk(bytes) = reply else {
                    panic!("GET: {reply:?}")
                };
                let got: String = driver::decode_owned(bytes).expect("decode");
                assert_eq!(got.len(), VALUE_CHARS);
            }
            Op::Set => {
                thread_local! {
                    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
                }
                let reply = SCRATCH.with_borrow_mut(|scratch| {
                    scratch.clear();
                    encode_value_into(value, Format::MessagePack, "", scratch).expect("encode");
                    driver.call_with(|out| {
                        driver::encode_array(out, 3);
                        driver::encode_parts(out, &[b"SET"]);
                        driver::encode_parts(out, &[b"bench:", k.as_bytes()]);
                        driver::encode_parts(out, &[scratch]);
                    })
                });
                assert_eq!(reply.await.expect("SET"), Reply::Ok);
            }
        }
    }

    async fn raw_op(mut conn: MultiplexedConnection, op: Op, k: String, value: &str) {
        let full = format!("bench:{k}");
        match op {
            Op::Get => {
                let mut cmd = ::redis::cmd("GET");
                cmd.arg(&full);
                let got: Option<Vec<u8>> = cmd.query_async(&mut conn).await.expect("GET");
                assert_eq!(decode(&got.expect("GET hit")).len(), VALUE_CHARS);
            }
            Op::Set => {
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(&full).arg(encode(value));
                cmd.query_async::<()>(&mut conn).await.expect("SET");
            }
        }
    }

    /// 16 operations from key `first` on, as one pipeline (the probe's batching yardstick).
    async fn raw_pipeline(mut conn: MultiplexedConnection, op: Op, first: u64, value: &str) {
        let mut pipe = ::redis::pipe();
        for i in first..first + 16 {
            let full = format!("bench:{}", key(i));
            match op {
                Op::Get => pipe.cmd("GET").arg(full),
                Op::Set => pipe.cmd("SET").arg(full).arg(encode(value)).ignore(),
            };
        }
        if op == Op::Set {
            return pipe.query_async::<()>(&mut conn).await.expect("SET x16");
        }
        let got: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await.expect("GET x16");
        for bytes in got {
            assert_eq!(decode(&bytes.expect("GET hit")).len(), VALUE_CHARS);
        }
    }

    async fn fred_op(client: &FredClient, op: Op, k: String, value: &str) {
        let full = format!("bench:{k}");
        match op {
            Op::Get => {
                let got: Option<Vec<u8>> = client.get(&full).await.expect("GET");
                assert_eq!(decode(&got.expect("GET hit")).len(), VALUE_CHARS);
            }
            Op::Set => {
                client
                    .set::<(), _, _>(&full, encode(value), None, None, false)
                    .await
                    .expect("SET");
            }
        }
    }

    fn strata_slice(
        rt: &Runtime,
        store: &RedisStore<String, String>,
        op: Op,
        tasks: usize,
        slice: Duration,
    ) -> f64 {
        let (store, value) = (store.clone(), Arc::new(value()));
        contest::tasks(rt, tasks, slice, move |t, i| {
            let (store, value) = (store.clone(), value.clone());
            async move { strata_op(&store, op, key(t as u64 * 7919 + i), &value).await }
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
            let (conn, value) = (conn.clone(), value.clone());
            async move { raw_op(conn, op, key(t as u64 * 7919 + i), &value).await }
        })
    }

    fn driver_slice(
        rt: &Runtime,
        driver: &Arc<Driver>,
        op: Op,
        tasks: usize,
        slice: Duration,
    ) -> f64 {
        let (driver, value) = (driver.clone(), Arc::new(value()));
        contest::tasks(rt, tasks, slice, move |t, i| {
            let (driver, value) = (driver.clone(), value.clone());
            async move { driver_op(&driver, op, key(t as u64 * 7919 + i), &value).await }
        })
    }

    fn fred_slice(rt: &Runtime, client: &FredClient, op: Op, tasks: usize, slice: Duration) -> f64 {
        let (client, value) = (client.clone(), Arc::new(value()));
        contest::tasks(rt, tasks, slice, move |t, i| {
            let (client, value) = (client.clone(), value.clone());
            async move { fred_op(&client, op, key(t as u64 * 7919 + i), &value).await }
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

    /// Which `tokio` runtime the clients run on.
    #[derive(Clone, Copy, PartialEq)]
    enum Flavor {
        /// 2 worker threads (one per core here).
        Multi,
        /// One thread: the one that calls `block_on`.
        Current,
    }

    impl Flavor {
        fn runtime(self) -> Runtime {
            match self {
                Flavor::Multi => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build(),
                Flavor::Current => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
            }
            .expect("tokio runtime")
        }

        /// What the rows of this runtime append to their label.
        fn suffix(self) -> &'static str {
            match self {
                Flavor::Multi => "",
                Flavor::Current => ", current-thread",
            }
        }

        /// `STRATA_REDIS_RUNTIME`: `multi`, `current`, or both (unset).
        fn wanted() -> Vec<Flavor> {
            match std::env::var("STRATA_REDIS_RUNTIME").as_deref() {
                Err(_) | Ok("") | Ok("both") => vec![Flavor::Multi, Flavor::Current],
                Ok("multi") => vec![Flavor::Multi],
                Ok("current") => vec![Flavor::Current],
                Ok(other) => {
                    panic!("STRATA_REDIS_RUNTIME={other}: expected multi, current or both")
                }
            }
        }
    }

    /// Connects a client with `connect` on `rt` and checks that its driver task landed there:
    /// the runtime's live tasks grow (a driver spawned on another runtime would not count).
    fn connected<T>(rt: &Runtime, what: &str, connect: impl std::future::Future<Output = T>) -> T {
        let before = rt.metrics().num_alive_tasks();
        let client = rt.block_on(connect);
        let after = rt.metrics().num_alive_tasks();
        assert!(
            after > before,
            "{what}: no task of its connection runs on the runtime it connected from \
             ({before} live tasks before, {after} after)"
        );
        client
    }

    /// Everything a contest entrant needs: the server, the runtime, both clients.
    struct Setup {
        server: Rc<Server>,
        flavor: Flavor,
        rt: Runtime,
        store: RedisStore<String, String>,
        conn: MultiplexedConnection,
        fred: FredClient,
        /// strata's own driver (prototype), on its own connection.
        driver: Arc<Driver>,
        bytes: Arc<Vec<u8>>,
    }

    /// Every client connected on a fresh runtime of `flavor`, to `server`.
    fn setup(server: Rc<Server>, flavor: Flavor) -> Setup {
        let rt = flavor.runtime();
        let store = connected(
            &rt,
            "RedisStore",
            RedisStore::builder()
                .url(server.url())
                .namespace("bench")
                .auto_pipeline(
                    std::env::var_os("STRATA_REDIS_AUTO_PIPELINE").is_none_or(|v| v != "0"),
                )
                // `STRATA_REDIS_OWN_DRIVER=0`: the store on redis-rs's connection, as before
                // strata's own driver carried it (the before/after of one binary).
                .own_driver(std::env::var_os("STRATA_REDIS_OWN_DRIVER").is_none_or(|v| v != "0"))
                .build(),
        )
        .expect("connect RedisStore");
        let conn = connected(&rt, "redis-rs", async {
            let client = ::redis::Client::open(server.url())?;
            crate::redis::raw_connection(&client, Default::default()).await
        })
        .expect("connect redis-rs");
        let fred = connected(&rt, "fred", async {
            let config = fred::prelude::Config::from_url(&server.url())?;
            let client = fred::prelude::Builder::from_config(config).build()?;
            client.init().await?;
            Ok::<_, fred::prelude::Error>(client)
        })
        .expect("connect fred");
        let driver = connected(&rt, "strata driver", async {
            Driver::connect(("127.0.0.1", server.port())).await
        })
        .expect("connect strata driver");
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
            flavor,
            rt,
            store,
            conn,
            fred,
            driver: Arc::new(driver),
            bytes,
        }
    }

    /// One contest's entrants; with `meters`, each slice's [`Cost`] is recorded in its
    /// entrant's meter (strata, redis-rs, fred, redis-benchmark, strata's driver prototype).
    /// At 64 tasks strata's own driver (prototype) runs too, as a second "ours": its rows are
    /// labelled `[strata driver prototype]`, the store's `[strata RedisStore]`.
    fn contest<'a>(
        s: &'a Setup,
        op: Op,
        tasks: usize,
        last: &'a Cell<f64>,
        meters: Option<&'a [Meter; METERS]>,
    ) -> Contest<'a> {
        let metered = move |m: usize, child: bool, go: Slice<'a>| -> Slice<'a> {
            match meters {
                None => go,
                Some(meters) => Box::new(move |slice| {
                    let before = Cost::now(s, child);
                    let rate = go(slice);
                    meters[m]
                        .borrow_mut()
                        .push(Cost::now(s, child).since(&before));
                    rate
                }),
            }
        };
        let ours = Entrant::ours("strata RedisStore", move || -> Slice<'a> {
            refill(&s.rt, &s.conn, &s.bytes);
            let go = Box::new(move |slice| strata_slice(&s.rt, &s.store, op, tasks, slice));
            metered(0, false, go)
        });
        let raw = Entrant::peer("redis-rs", move || -> Slice<'a> {
            refill(&s.rt, &s.conn, &s.bytes);
            let go = Box::new(move |slice| raw_slice(&s.rt, &s.conn, op, tasks, slice));
            metered(1, false, go)
        });
        let fred = Entrant::peer("fred", move || -> Slice<'a> {
            refill(&s.rt, &s.conn, &s.bytes);
            let go = Box::new(move |slice| fred_slice(&s.rt, &s.fred, op, tasks, slice));
            metered(2, false, go)
        });
        let mut entrants = vec![ours, raw, fred];
        if tasks == 64 {
            entrants.push(Entrant::ours(DRIVER, move || -> Slice<'a> {
                refill(&s.rt, &s.conn, &s.bytes);
                let go = Box::new(move |slice| driver_slice(&s.rt, &s.driver, op, tasks, slice));
                metered(4, false, go)
            }));
            entrants.push(Entrant::peer(
                "redis-benchmark -P 16",
                move || -> Slice<'a> {
                    refill(&s.rt, &s.conn, &s.bytes);
                    let go = Box::new(move |slice: Duration| {
                        let requests = (last.get() * slice.as_secs_f64()).max(1_000.0) as usize;
                        let rate = redis_benchmark(s.server.port(), op, requests);
                        last.set(rate);
                        rate
                    });
                    metered(3, true, go)
                },
            ));
        }
        let plural = if tasks == 1 { "" } else { "s" };
        let (suffix, line) = match s.flavor {
            Flavor::Multi => ("", ""),
            Flavor::Current => (s.flavor.suffix(), "\ncurrent-thread"),
        };
        Contest {
            section: "redis",
            label: format!("{} 64 B, {tasks} task{plural}{suffix}", op.name()),
            chart: "throughput_redis",
            title: "RedisStore vs redis-rs, fred and redis-benchmark, 64 B values, loopback",
            group: format!(
                "{} 64 B\n{tasks} task{plural}{line}",
                op.name().to_uppercase()
            ),
            entrants,
        }
    }

    pub fn run(report: &mut Report) {
        if let Some(probe) = std::env::var_os("STRATA_REDIS_PROBE") {
            return self::probe(&probe.to_string_lossy());
        }
        let server = Rc::new(Server::start());
        // redis-benchmark's first request count assumes 500k requests/s.
        let last = Cell::new(500_000.0);
        for flavor in Flavor::wanted() {
            let s = setup(server.clone(), flavor);
            // The 1-task rows only on the multi-thread runtime: a lone caller waits a round
            // trip per call on either.
            let counts: &[usize] = match flavor {
                Flavor::Multi => &[1, 64],
                Flavor::Current => &[64],
            };
            for &tasks in counts {
                for op in [Op::Get, Op::Set] {
                    let meters: [Meter; METERS] = Default::default();
                    let metered = (tasks == 64).then_some(&meters);
                    contest::run(report, contest(&s, op, tasks, &last, metered));
                    if tasks == 64 {
                        cost_rows(report, op, flavor, &meters);
                    }
                }
            }
        }
    }

    /// `STRATA_REDIS_PROBE=CLIENT:OP:N`: N operations of one client at 64 tasks, then exit.
    fn probe(spec: &str) {
        let parts: Vec<&str> = spec.split(':').collect();
        let (client, op, n, wait) = match parts[..] {
            [client, op, n] => (client, op, n, false),
            [client, op, n, "wait"] => (client, op, n, true),
            _ => panic!(
                "STRATA_REDIS_PROBE={spec}: expected CLIENT:OP:N[:wait], e.g. strata:get:100000"
            ),
        };
        let op = match op {
            "get" => Op::Get,
            "set" => Op::Set,
            _ => panic!("STRATA_REDIS_PROBE: OP is get or set, not {op}"),
        };
        let n: u64 = n.parse().expect("STRATA_REDIS_PROBE: N is a count");
        let flavor = match std::env::var("STRATA_REDIS_PROBE_RUNTIME").as_deref() {
            Err(_) | Ok("") | Ok("multi") => Flavor::Multi,
            Ok("current") => Flavor::Current,
            Ok(other) => panic!("STRATA_REDIS_PROBE_RUNTIME={other}: expected multi or current"),
        };
        let s = setup(Rc::new(Server::start()), flavor);
        refill(&s.rt, &s.conn, &s.bytes);
        let tasks: u64 = std::env::var("STRATA_REDIS_PROBE_TASKS").map_or(64, |t| {
            t.parse().expect("STRATA_REDIS_PROBE_TASKS: a count")
        });
        let per_task = n.div_ceil(tasks);
        if wait {
            eprintln!("probe ready {}", std::process::id());
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("read stdin");
        }
        let began = std::time::Instant::now();
        let (cost_before, own_before) = (Cost::now(&s, false), rusage(libc::RUSAGE_SELF));
        s.rt.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let (store, conn, fred) = (s.store.clone(), s.conn.clone(), s.fred.clone());
                    let driver = s.driver.clone();
                    let (client, value) = (client.to_string(), value());
                    tokio::spawn(async move {
                        for i in 0..per_task {
                            let k = key(t * 7919 + i);
                            match client.as_str() {
                                "strata" => strata_op(&store, op, k, &value).await,
                                "redis-rs" => raw_op(conn.clone(), op, k, &value).await,
                                "fred" => fred_op(&fred, op, k, &value).await,
                                "driver" => driver_op(&driver, op, k, &value).await,
                                // The driver with a timer per call, as a store call without
                                // the batch's shared timer would pay: the upper bound of
                                // what the store's deadline adds on the driver.
                                "driver-timed" => {
                                    let call = driver_op(&driver, op, k, &value);
                                    tokio::time::timeout(Duration::from_secs(5), call)
                                        .await
                                        .expect("a driver call timed out")
                                }
                                "redis-rs-p16" if i % 16 == 0 => {
                                    raw_pipeline(conn.clone(), op, t * 7919 + i, &value).await
                                }
                                "redis-rs-p16" => {}
                                other => panic!("STRATA_REDIS_PROBE: no client {other}"),
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("probe task");
            }
        });
        let elapsed = began.elapsed();
        let (cost, own) = (
            Cost::now(&s, false).since(&cost_before),
            rusage(libc::RUSAGE_SELF),
        );
        let ops = cost.commands;
        let per_op =
            |after: libc::timeval, before: libc::timeval| (micros(after) - micros(before)) / ops;
        eprintln!(
            "probe {client} {}{} x{}: {elapsed:?}; per op: client user {:.3} us, sys {:.3} us; \
             server {:.3} us; {:.1} commands per server read; {:.3} context switches",
            op.name(),
            flavor.suffix(),
            per_task * tasks,
            per_op(own.ru_utime, own_before.ru_utime),
            per_op(own.ru_stime, own_before.ru_stime),
            cost.server_us / ops,
            cost.commands / cost.reads,
            cost.switches / ops,
        );
    }

    /// What the slices of one entrant cost, one [`Cost`] per round.
    type Meter = RefCell<Vec<Cost>>;
    /// One meter per entrant of a 64-task contest: strata, redis-rs, fred, redis-benchmark,
    /// strata's driver prototype.
    const METERS: usize = 5;
    /// strata's own driver's name in the contests.
    const DRIVER: &str = "strata driver prototype";

    /// What a stretch of work cost: counters read before and after it, subtracted.
    #[derive(Clone, Copy, Default)]
    struct Cost {
        /// CPU µs of this process (every thread), or of its waited-for children.
        client_us: f64,
        /// `INFO cpu`: the server's user + system CPU, µs.
        server_us: f64,
        /// `INFO stats`: commands the server ran, and reads of client sockets it made.
        commands: f64,
        reads: f64,
        /// Voluntary + involuntary context switches of this process.
        switches: f64,
    }

    impl Cost {
        /// The counters now; the client's CPU is this process's, or its children's.
        fn now(s: &Setup, children: bool) -> Self {
            let info: String = s.rt.block_on(async {
                let mut conn = s.conn.clone();
                ::redis::cmd("INFO")
                    .arg("cpu")
                    .arg("stats")
                    .query_async(&mut conn)
                    .await
                    .expect("INFO cpu stats")
            });
            let value = |name: &str| -> f64 {
                info.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
                    .unwrap_or(0.0)
            };
            let own = rusage(libc::RUSAGE_SELF);
            let client = if children {
                rusage(libc::RUSAGE_CHILDREN)
            } else {
                own
            };
            Cost {
                client_us: micros(client.ru_utime) + micros(client.ru_stime),
                server_us: (value("used_cpu_user") + value("used_cpu_sys")) * 1e6,
                commands: value("total_commands_processed"),
                reads: value("total_reads_processed"),
                switches: (own.ru_nvcsw + own.ru_nivcsw) as f64,
            }
        }

        /// What happened between `before` and `self`, less the `INFO` command itself.
        fn since(&self, before: &Cost) -> Cost {
            Cost {
                client_us: self.client_us - before.client_us,
                server_us: self.server_us - before.server_us,
                commands: (self.commands - before.commands - 1.0).max(1.0),
                reads: (self.reads - before.reads - 1.0).max(1.0),
                switches: self.switches - before.switches,
            }
        }
    }

    fn rusage(who: libc::c_int) -> libc::rusage {
        // SAFETY: `getrusage` only writes the struct it is given, which is plain data and
        // zeroed (a valid `rusage`) before the call.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        }
    }

    fn micros(t: libc::timeval) -> f64 {
        t.tv_sec as f64 * 1e6 + t.tv_usec as f64
    }

    /// The rows of one 64-task contest's costs: client and server CPU per operation against
    /// every peer, and, against redis-rs (the same driver strata sends through), commands per
    /// server read and context switches per operation. Each is the median of per-round ratios.
    fn cost_rows(report: &mut Report, op: Op, flavor: Flavor, meters: &[Meter; METERS]) {
        let names = [
            "strata RedisStore",
            "redis-rs",
            "fred",
            "redis-benchmark -P 16",
        ];
        for (o, ours_name) in [(0, names[0]), (4, DRIVER)] {
            cost_rows_of(report, op, flavor, meters, o, ours_name, &names);
        }
    }

    /// [`cost_rows`] of one of strata's entrants (`meters[o]`); the store's rows keep their
    /// labels, the driver's carry its name.
    fn cost_rows_of(
        report: &mut Report,
        op: Op,
        flavor: Flavor,
        meters: &[Meter; METERS],
        o: usize,
        ours_name: &str,
        names: &[&str; 4],
    ) {
        let tag = if o == 0 {
            String::new()
        } else {
            format!(" [{ours_name}]")
        };
        let ours = meters[o].borrow();
        type Figure = fn(&Cost) -> f64;
        let figures: [(&str, &'static str, bool, Figure, usize); 4] = [
            (
                "client CPU per",
                "us/op",
                false,
                |c| c.client_us / c.commands,
                4,
            ),
            (
                "server CPU per",
                "us/op",
                false,
                |c| c.server_us / c.commands,
                4,
            ),
            (
                "commands per server read,",
                "cmd/read",
                true,
                |c| c.commands / c.reads,
                2,
            ),
            (
                "context switches per 1k",
                "/1k op",
                false,
                |c| c.switches / c.commands * 1e3,
                2,
            ),
        ];
        for (what, unit, higher_is_better, figure, peers) in figures {
            let ours_per_round: Vec<f64> = ours.iter().map(figure).collect();
            for p in 1..peers {
                let peer_per_round: Vec<f64> = meters[p].borrow().iter().map(figure).collect();
                let row = Row {
                    section: "redis".into(),
                    label: format!(
                        "{what} {} 64 B, 64 tasks{}{tag}",
                        op.name(),
                        flavor.suffix()
                    ),
                    strata: crate::report::median(ours_per_round.clone()),
                    peer: Some((
                        names[p].to_string(),
                        crate::report::median(peer_per_round.clone()),
                    )),
                    unit,
                    higher_is_better,
                };
                report.add_measured(row, contest::spread(&ours_per_round, &peer_per_round));
            }
        }
    }
}
