//! Model-based test of `ReplicatedStore`: two nodes (two stores, each with its own local tier,
//! Redis connection and invalidation subscription) over one real `redis-server` run random
//! sequences of put / delete / get / fill / replace / incr / incr_with_ttl from either node,
//! checked against a sequential model (a `HashMap`). After every operation the test waits until
//! both nodes have processed every invalidation published so far, deterministically: it
//! publishes a barrier message after the operation returned, on the channel of a namespace no
//! node serves, and Redis delivers messages to each subscriber in the order it ran the
//! `PUBLISH`es (across the channels of one pattern), while a node handles its messages one at a
//! time. Once both nodes counted the barrier (as a message for an unknown namespace, which drops
//! nothing; an unreadable one would drop the local tiers), each node's read of every key must
//! equal the model.
//!
//! Counter values are drawn around 2^53 and near `i64::MAX`, so the model also pins exact
//! `u64` totals and the overflow refusal.
#![cfg(feature = "redis")]

mod support;

use std::{collections::HashMap, time::Duration};

use proptest::{prelude::*, test_runner::TestRunner};
use strata::{
    replicated::DEFAULT_CHANNEL_PREFIX, Error, MemoryStore, RedisStore, ReplicatedStore, Store,
};
use support::RedisServer;

type Node = ReplicatedStore<String, u64, MemoryStore<String, u64>, RedisStore<String, u64>>;

const KEYS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    Put(usize, usize, u64),
    Delete(usize, usize),
    Get(usize, usize),
    /// Drop the node's local copy, then read (a fill from Redis).
    Fill(usize, usize),
    Replace(usize, usize, u64),
    Incr(usize, usize, i64),
    IncrWithTtl(usize, usize, i64),
}

fn value() -> impl Strategy<Value = u64> {
    let near_2_53 = ((1u64 << 53) - 4)..((1u64 << 53) + 4);
    let near_max = (i64::MAX as u64 - 3)..=(i64::MAX as u64);
    prop_oneof![0u64..10, near_2_53, near_max]
}

fn delta() -> impl Strategy<Value = i64> {
    prop_oneof![-3i64..=3, Just(1i64 << 53), Just(-(1i64 << 53))]
}

fn op() -> impl Strategy<Value = Op> {
    let (n, k) = (0usize..2, 0usize..KEYS.len());
    prop_oneof![
        (n.clone(), k.clone(), value()).prop_map(|(n, k, v)| Op::Put(n, k, v)),
        (n.clone(), k.clone()).prop_map(|(n, k)| Op::Delete(n, k)),
        (n.clone(), k.clone()).prop_map(|(n, k)| Op::Get(n, k)),
        (n.clone(), k.clone()).prop_map(|(n, k)| Op::Fill(n, k)),
        (n.clone(), k.clone(), value()).prop_map(|(n, k, v)| Op::Replace(n, k, v)),
        (n.clone(), k.clone(), delta()).prop_map(|(n, k, d)| Op::Incr(n, k, d)),
        (n, k, delta()).prop_map(|(n, k, d)| Op::IncrWithTtl(n, k, d)),
    ]
}

/// Two nodes of one namespace, and the barrier count so far.
struct Cluster<'a> {
    redis: &'a RedisServer,
    nodes: [Node; 2],
    channel: String,
    barriers: u64,
}

async fn node(redis: &RedisServer, namespace: &str) -> Node {
    let remote = RedisStore::builder()
        .url(redis.url())
        .namespace(namespace)
        .build()
        .await
        .expect("connect to the test redis-server");
    ReplicatedStore::builder()
        .local(MemoryStore::new())
        .remote(remote)
        .url(redis.url())
        .build()
        .await
        .expect("connect to the test redis-server")
}

impl<'a> Cluster<'a> {
    async fn new(redis: &'a RedisServer, namespace: &str) -> Self {
        Cluster {
            redis,
            nodes: [node(redis, namespace).await, node(redis, namespace).await],
            channel: format!("{DEFAULT_CHANNEL_PREFIX}{namespace}"),
            barriers: 0,
        }
    }

    /// Returns once both nodes have handled every message published before this call.
    async fn settle(&mut self) {
        // A valid one-key message, `[version 1][b'I'][node 7][sent at 0][key]`, all ASCII.
        let barrier = "\u{1}I\0\0\0\0\0\0\0\u{7}\0\0\0\0\0\0\0\0barrier";
        let channel = format!("{}-barrier", self.channel);
        self.redis.raw(&["PUBLISH", &channel, barrier]);
        self.barriers += 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for node in &self.nodes {
            while node.replication_stats().unknown_namespace < self.barriers {
                assert!(
                    std::time::Instant::now() < deadline,
                    "barrier never arrived"
                );
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The model's answer to an increment: the new total, or `None` (overflow, nothing changes).
fn model_incr(model: &mut HashMap<usize, u64>, k: usize, d: i64) -> Option<u64> {
    let base = i128::from(model.get(&k).copied().unwrap_or(0));
    let total = base + i128::from(d);
    let total = u64::try_from(total)
        .ok()
        .filter(|t| *t <= i64::MAX as u64)?;
    model.insert(k, total);
    Some(total)
}

fn check_incr(op: &Op, got: strata::Result<u64>, want: Option<u64>) {
    match (got, want) {
        (Ok(got), Some(want)) => assert_eq!(got, want, "{op:?}"),
        (Err(Error::Overflow { .. }), None) => {}
        (got, want) => panic!("{op:?}: got {got:?}, the model says {want:?}"),
    }
}

async fn apply(c: &Cluster<'_>, model: &mut HashMap<usize, u64>, op: &Op) {
    let key = |k: usize| KEYS[k].to_string();
    match *op {
        Op::Put(n, k, v) => {
            c.nodes[n].put(key(k), v, None).await.unwrap();
            model.insert(k, v);
        }
        Op::Delete(n, k) => {
            let removed = c.nodes[n].delete(&key(k)).await.unwrap();
            assert_eq!(removed, model.remove(&k).is_some(), "{op:?}");
        }
        Op::Get(n, k) => {
            let got = c.nodes[n].get(&key(k)).await.unwrap();
            assert_eq!(got, model.get(&k).copied(), "{op:?}");
        }
        Op::Fill(n, k) => {
            Store::delete(c.nodes[n].local(), &key(k)).await.unwrap();
            let got = c.nodes[n].get(&key(k)).await.unwrap();
            assert_eq!(got, model.get(&k).copied(), "{op:?}");
        }
        Op::Replace(n, k, v) => {
            let written = c.nodes[n].replace(key(k), v, None).await.unwrap();
            assert_eq!(written, model.contains_key(&k), "{op:?}");
            if written {
                model.insert(k, v);
            }
        }
        Op::Incr(n, k, d) => {
            let got = c.nodes[n].incr(&key(k), d).await;
            check_incr(op, got, model_incr(model, k, d));
        }
        Op::IncrWithTtl(n, k, d) => {
            let hour = Some(Duration::from_secs(3600));
            let got = c.nodes[n].incr_with_ttl(&key(k), d, hour).await;
            check_incr(op, got, model_incr(model, k, d));
        }
    }
}

/// Every node reads every key as the model has it.
async fn agree(c: &Cluster<'_>, model: &HashMap<usize, u64>, after: &Op) {
    for (n, node) in c.nodes.iter().enumerate() {
        for (k, name) in KEYS.iter().enumerate() {
            let got = node.get(&name.to_string()).await.unwrap();
            assert_eq!(
                got,
                model.get(&k).copied(),
                "node {n}, key {name}, after {after:?}"
            );
        }
    }
}

async fn run_case(redis: &RedisServer, namespace: &str, ops: &[Op]) {
    let mut cluster = Cluster::new(redis, namespace).await;
    let mut model = HashMap::new();
    for op in ops {
        apply(&cluster, &mut model, op).await;
        cluster.settle().await;
        agree(&cluster, &model, op).await;
    }
}

fn run_model(cases: u32) {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(cases));
    let case = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        let namespace = format!(
            "model{}",
            case.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        runtime.block_on(run_case(&redis, &namespace, &ops));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn two_nodes_agree_with_a_sequential_model() {
    run_model(64);
}

/// The long run: `cargo test --all-features --test replicated_model -- --ignored`.
#[test]
#[ignore = "long run (minutes); run by hand"]
fn two_nodes_agree_with_a_sequential_model_long() {
    run_model(1_000);
}
