//! A callgrind probe of what one replicated put costs the client, in instructions (issue 16
//! item 2): `OPS` puts of 64 B values by 64 tasks (the `replicated` section's put workload) on a
//! current-thread runtime, so every task of the client — the callers, ReplicatedStore's group
//! commit writer, the invalidation hub receiving the echoes, redis-rs's connection drivers —
//! runs on this one thread inside the probe, against a `redis-server` started here:
//!
//! - `probe_redis_put`: a plain RedisStore (the peer);
//! - `probe_replicated_put_1`: a ReplicatedStore node alone on its channel (its hub receives
//!   its own echoes);
//! - `probe_replicated_put_2`: the same with a second node subscribed in this process (it
//!   receives and applies every batch message);
//! - `probe_replicated_put_3`: with two other nodes subscribed (the layout of the first
//!   version of this probe, whose two probes shared one channel with every node built).
//!
//! Each probe's inclusive instruction count divided by `OPS` is the cost per put. Run it under
//! callgrind, collecting only inside the probes:
//!
//! ```text
//! cargo bench --all-features --bench compare --no-run   # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/replcost.cg \
//!     --toggle-collect='compare::replcost::probe::probe_*' target/release/deps/compare-HASH replcost
//! callgrind_annotate --inclusive=yes /tmp/replcost.cg | grep 'replcost::probe_'
//! ```
//!
//! redis-server's own work is not in the count (another process); the kernel's side of the
//! client's socket calls is not either (callgrind counts user-space instructions). Outside
//! callgrind the section also reports, per put, the client's CPU time (user + sys, from
//! `/proc/self/stat`), its allocations, and the writes per group commit: rows without a
//! wall-clock in them, so they hold on a loaded machine.

#[cfg(not(feature = "redis"))]
pub fn run(_: &mut crate::report::Report) {
    eprintln!("  replcost skipped: run `cargo bench --bench compare --features redis`");
}

#[cfg(feature = "redis")]
pub use probe::run;

#[cfg(feature = "redis")]
mod probe {
    use std::{hint::black_box, time::Duration};

    use strata::{MemoryStore, RedisStore, ReplicatedStore, Store};
    use tokio::runtime::Runtime;

    use crate::{
        redis_server::RedisServer,
        report::{Report, Row},
    };

    /// Puts per probe in a full run (the cost of one is the probe's instructions / `OPS`).
    const OPS: u64 = 64_000;
    const TASKS: u64 = 64;
    const KEYS: u64 = 10_000;
    /// Every timeout and heartbeat: callgrind runs the client ~50× slower than Redis expects,
    /// and a put that timed out, or a link marked down, would end the probe.
    const PATIENT: Duration = Duration::from_secs(600);

    type Plain = RedisStore<u64, String>;
    type Node = ReplicatedStore<u64, String, MemoryStore<u64, String>, Plain>;

    fn value() -> String {
        "v".repeat(59)
    }

    async fn plain(url: &str) -> Plain {
        RedisStore::builder()
            .url(url)
            .namespace("bench")
            .connect_timeout(PATIENT)
            .command_timeout(PATIENT)
            .build()
            .await
            .expect("connect RedisStore")
    }

    /// A node on the invalidation channels of `prefix` (one prefix per probe: only its nodes
    /// receive its writes' messages).
    async fn node(url: &str, prefix: &str) -> Node {
        ReplicatedStore::builder()
            .local(MemoryStore::new())
            .remote(plain(url).await)
            .url(url)
            .channel_prefix(prefix)
            .connect_timeout(PATIENT)
            .heartbeat(PATIENT)
            .build()
            .await
            .expect("connect ReplicatedStore")
    }

    /// `ops` puts of the `replicated` section's keys by [`TASKS`] tasks, each awaiting its put
    /// before the next, on the current runtime.
    async fn puts<S>(store: &S, ops: u64)
    where
        S: Store<u64, String> + Clone + 'static,
    {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..ops / TASKS {
                        let k = (t * 7919 + i) % KEYS;
                        store.put(k, value(), None).await.expect("put");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("put task");
        }
    }

    // One function per probe: `#[inline(never)]` and a plain name, so callgrind's
    // `--toggle-collect` can find it; each reads its own name first, so the linker cannot fold
    // two probes into one function.

    #[inline(never)]
    fn probe_redis_put(rt: &Runtime, store: &Plain, ops: u64) {
        black_box("probe_redis_put");
        rt.block_on(puts(store, ops));
    }

    #[inline(never)]
    fn probe_replicated_put_1(rt: &Runtime, store: &Node, ops: u64) {
        black_box("probe_replicated_put_1");
        rt.block_on(puts(store, ops));
    }

    #[inline(never)]
    fn probe_replicated_put_2(rt: &Runtime, store: &Node, ops: u64) {
        black_box("probe_replicated_put_2");
        rt.block_on(puts(store, ops));
    }

    #[inline(never)]
    fn probe_replicated_put_3(rt: &Runtime, store: &Node, ops: u64) {
        black_box("probe_replicated_put_3");
        rt.block_on(puts(store, ops));
    }

    /// Client CPU µs and allocations per put of `probe`, which does `ops` puts.
    fn measured(ops: u64, probe: impl FnOnce()) -> (f64, f64) {
        let cpu = crate::cpu::process_ms();
        let ((), allocations) = crate::alloc::allocations(probe);
        let us = (crate::cpu::process_ms() - cpu) * 1000.0 / ops as f64;
        (us, allocations as f64 / ops as f64)
    }

    fn row(label: &str, ours: f64, theirs: f64, unit: &'static str) -> Row {
        Row {
            section: "replcost".into(),
            label: label.into(),
            strata: ours,
            peer: Some(("RedisStore".into(), theirs)),
            unit,
            higher_is_better: false,
        }
    }

    pub fn run(report: &mut Report) {
        let ops = report.n(OPS as usize, OPS as usize) as u64 / TASKS * TASKS;
        let server = RedisServer::start();
        let url = server.url();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (redis, one, two, three) = rt.block_on(async {
            let redis = plain(&url).await;
            let one = node(&url, "solo:").await;
            let two = [node(&url, "pair:").await, node(&url, "pair:").await];
            let three = [
                node(&url, "trio:").await,
                node(&url, "trio:").await,
                node(&url, "trio:").await,
            ];
            (redis, one, two, three)
        });
        // Once unmeasured: every key exists, connections and buffers are warm.
        rt.block_on(puts(&redis, KEYS * 2));
        rt.block_on(puts(&one, KEYS));
        rt.block_on(puts(&two[0], KEYS));
        rt.block_on(puts(&three[0], KEYS));
        let plain = measured(ops, || probe_redis_put(&rt, &redis, ops));
        let before = one.replication_stats();
        let alone = measured(ops, || probe_replicated_put_1(&rt, &one, ops));
        let after = one.replication_stats();
        let batch = (after.batched_writes - before.batched_writes) as f64
            / (after.batches - before.batches).max(1) as f64;
        let pair = measured(ops, || probe_replicated_put_2(&rt, &two[0], ops));
        let trio = measured(ops, || probe_replicated_put_3(&rt, &three[0], ops));
        drop((one, two, three, redis));
        let kinds = [("client CPU", "us"), ("allocations", "allocs")];
        for (i, (what, unit)) in kinds.into_iter().enumerate() {
            let pick = |m: (f64, f64)| if i == 0 { m.0 } else { m.1 };
            for (nodes, ours) in [("1 node", alone), ("2 nodes", pair), ("3 nodes", trio)] {
                let label =
                    format!("{what} per put, 64 tasks, current-thread [ReplicatedStore, {nodes}]");
                report.add(row(&label, pick(ours), pick(plain), unit));
            }
        }
        let mut r = row("writes per group commit, 1 node", batch, 0.0, "writes");
        r.peer = None;
        report.add(r);
        if !report.smoke {
            println!("replcost: {ops} puts per probe_* function (instructions / {ops} = per put)");
        }
    }
}
