//! `Cache::get` over a MemoryStore runs a copy of `MemoryStore::get`'s body
//! (`MemoryStore::get_counting_also`, through `Store::get_now_counting`), written out again on
//! purpose for speed (see its docs). This model test keeps the two copies from drifting: the
//! same random sequence of operations runs on two caches on one manual clock, one whose reads
//! take the copied fast path (a Cache over a MemoryStore) and one whose reads go through
//! `MemoryStore::get` itself (a Cache over a `FaultStore` wrapping a MemoryStore, which never
//! answers at once), and every observable must agree after every step: the value read, the
//! cache's and the store's hits and misses, the entry's remaining lifetime after a read (an
//! idle deadline refreshed), size evictions with their values (S3-FIFO's choice depends on
//! what reads marked), and, once the sequence is over and both stores are purged, every event
//! and listener delivery and the store's whole stats. Deadlines are a few milliseconds and the
//! clock moves by a few, so reads land before, at and after them.
//!
//! Expired entries can leave a store two ways that look alike from outside: a read that finds
//! one (a miss, an `Expired` removal) or the store's sweeper thread, woken by the manual clock.
//! Which one gets there first is up to the scheduler, so expiry removals are compared as a
//! whole at the end, not step by step; everything else is compared at every step.
mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use proptest::prelude::*;
use strata::{Cache, ManualClock, MemoryStore, RemovalCause, Store};
use support::fault_store::FaultStore;

/// One fixed hasher for both sides: S3-FIFO's ghost queue remembers hashes, so two random
/// seeds could make two honest stores choose different victims.
type Fixed = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
type Mem = MemoryStore<String, String, Fixed>;
type Delivery = (String, String, RemovalCause);
type Deliveries = Arc<Mutex<Vec<Delivery>>>;
/// The cache's and the store's `(hits, misses)`, and the deliveries that are not expiries.
type Counts = ((u64, u64), (u64, u64), Vec<Delivery>);

/// One step of a sequence.
#[derive(Clone, Debug)]
enum Op {
    Put {
        key: u8,
        value: u8,
        ttl_ms: Option<u64>,
    },
    Get(u8),
    Delete(u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..6u8, any::<u8>(), proptest::option::of(1..12u64))
            .prop_map(|(key, value, ttl_ms)| Op::Put { key, value, ttl_ms }),
        5 => (0..6u8).prop_map(Op::Get),
        1 => (0..6u8).prop_map(Op::Delete),
        2 => (0..8u64).prop_map(Op::Advance),
    ]
}

/// How the two stores are built: plain, idle-expiring, or bounded (S3-FIFO marks what reads
/// touch, which decides later evictions). The bounded stores get no deadlines: whether an
/// expired entry still takes a place when a put needs one would depend on the sweeper's timing.
#[derive(Clone, Copy, Debug)]
enum Config {
    Plain,
    Idle,
    Bounded,
}

fn config() -> impl Strategy<Value = Config> {
    prop_oneof![
        Just(Config::Plain),
        Just(Config::Idle),
        Just(Config::Bounded)
    ]
}

/// One side: its cache, the MemoryStore under it and what its listener received.
struct Side<S: Store<String, String> + 'static> {
    cache: Cache<String, String, S>,
    memory: Mem,
    delivered: Deliveries,
    events: strata::Events<String>,
}

fn memory(clock: &ManualClock, config: Config, delivered: &Deliveries) -> Mem {
    let delivered = delivered.clone();
    let mut builder = MemoryStore::builder()
        .hasher(Fixed::default())
        .clock(clock.clock())
        .shards(1)
        .eviction_listener(move |k: String, v: String, cause| {
            delivered.lock().unwrap().push((k, v, cause));
        });
    match config {
        Config::Plain => {}
        Config::Idle => builder = builder.time_to_idle(Duration::from_millis(5)),
        Config::Bounded => builder = builder.max_capacity(4),
    }
    builder.build().unwrap()
}

async fn side<S: Store<String, String> + 'static>(
    clock: &ManualClock,
    config: Config,
    over: impl FnOnce(Mem) -> S,
) -> Side<S> {
    let delivered = Deliveries::default();
    let memory = memory(clock, config, &delivered);
    let events = memory.subscribe();
    let cache = Cache::builder()
        .store(over(memory.clone()))
        .clock(clock.clock())
        .build()
        .await
        .unwrap();
    Side {
        cache,
        memory,
        delivered,
        events,
    }
}

impl<S: Store<String, String> + 'static> Side<S> {
    async fn apply(&self, op: &Op) -> Option<String> {
        match *op {
            Op::Put { key, value, ttl_ms } => {
                let ttl = ttl_ms.map(Duration::from_millis);
                self.cache
                    .put(key_of(key), value.to_string(), ttl)
                    .await
                    .unwrap();
                None
            }
            Op::Get(key) => self.cache.get(&key_of(key)).await.unwrap(),
            Op::Delete(key) => {
                self.cache.delete(&key_of(key)).await.unwrap();
                None
            }
            // Both sides share the clock: `run` advances it once.
            Op::Advance(_) => None,
        }
    }

    /// What must agree after every step: the cache's and the store's hits and misses, and the
    /// listener deliveries that are not expiries (those depend on the sweeper's timing).
    fn counts(&self) -> Counts {
        let (c, m) = (self.cache.stats(), self.memory.stats());
        let delivered = self
            .delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, cause)| *cause != RemovalCause::Expired)
            .cloned()
            .collect();
        ((c.hits, c.misses), (m.hits, m.misses), delivered)
    }

    /// Everything, once the stores are purged: stats, every delivery and event (sorted: the
    /// sweeper and reads may remove expired entries in another order), the entries left.
    fn everything(&mut self) -> String {
        self.memory.purge_expired();
        let mut delivered = self.delivered.lock().unwrap().clone();
        delivered.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        let mut events = Vec::new();
        while let Some(event) = self.events.try_recv() {
            events.push(format!("{:?} {:?}", event.kind, event.key));
        }
        events.sort();
        let mut keys = self.memory.keys();
        keys.sort();
        let stats = format!(
            "stats {:?}\ncache {:?}",
            self.memory.stats(),
            self.cache.stats()
        );
        let entries: Vec<_> = keys
            .into_iter()
            .map(|k| (self.memory.ttl(&k), self.memory.get(&k), k))
            .collect();
        format!("{stats}\ndelivered {delivered:?}\nevents {events:?}\nentries {entries:?}")
    }
}

fn key_of(key: u8) -> String {
    format!("k{key}")
}

async fn run(config: Config, ops: Vec<Op>) -> std::result::Result<(), TestCaseError> {
    let clock = ManualClock::starting_at(1_700_000_000_000);
    let mut fast = side(&clock, config, |m| m).await;
    let mut slow = side(&clock, config, FaultStore::new).await;
    for (step, mut op) in ops.into_iter().enumerate() {
        if let (Config::Bounded, Op::Put { ttl_ms, .. }) = (config, &mut op) {
            *ttl_ms = None;
        }
        let op = &op;
        let (got_fast, got_slow) = (fast.apply(op).await, slow.apply(op).await);
        if let Op::Advance(ms) = op {
            clock.advance(Duration::from_millis(*ms));
        }
        prop_assert_eq!(&got_fast, &got_slow, "value read, step {} {:?}", step, op);
        prop_assert_eq!(fast.counts(), slow.counts(), "step {} {:?}", step, op);
        if let Op::Get(key) = op {
            let key = key_of(*key);
            prop_assert_eq!(
                fast.memory.ttl(&key),
                slow.memory.ttl(&key),
                "remaining lifetime after the read, step {} {:?}",
                step,
                op
            );
        }
    }
    prop_assert_eq!(fast.everything(), slow.everything());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Both read paths of `Cache::get` over a MemoryStore agree on every observable.
    #[test]
    fn the_fast_and_the_awaited_read_agree(config in config(), ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(config, ops))?;
    }
}
