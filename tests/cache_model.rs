//! A model-based test of `Cache`: generated sequences of fetch / release-a-loader / put /
//! delete / incr / clock moves, checked after every step (each key's value and remaining TTL)
//! against a sequential model.
//!
//! Concurrency is forced, not hoped for: each fetch runs in its own task on a current-thread
//! runtime, a leader's loader parks on a oneshot, and the test releases parked loaders in a
//! generated order, so puts, deletes and increments land *during* loads. Expiry is driven by a
//! `ManualClock`, including one clock move pinned inside `Cache::incr` (a `FaultStore` hook).
//! The model: a write or delete made during a load wins (the load's value is returned to its
//! callers but not cached); a counter created by `incr` always has the default TTL.
//!
//! Two generators drive the one harness: free sequences over three keys, and the focused case
//! of one load of one key parked while writes, deletes and clock moves happen around it,
//! released at a generated point (issue 12, item 6).

mod support;

use std::{collections::BTreeMap, time::Duration};

use proptest::prelude::*;
use strata::{Cache, Expiry, Load, ManualClock, MemoryStore};
use support::fault_store::{At, FaultStore, Op as StoreOp};
use tokio::{sync::oneshot, task::JoinHandle};

type Store = FaultStore<MemoryStore<u8, i64>>;
type ModelCache = Cache<u8, i64, Store>;

const TTL_MS: u64 = 5_000;
const KEYS: u8 = 3;

#[derive(Clone, Debug)]
enum Op {
    Fetch(u8),
    Release(usize),
    Put(u8, i64),
    Delete(u8),
    Incr(u8),
    /// `incr` with the key's expiry pinned inside the call (between any check and the write).
    IncrAcrossExpiry(u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        4 => key.clone().prop_map(Op::Fetch),
        3 => (0usize..4).prop_map(Op::Release),
        2 => (key.clone(), 0i64..100).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key.clone().prop_map(Op::Delete),
        2 => key.clone().prop_map(Op::Incr),
        1 => key.prop_map(Op::IncrAcrossExpiry),
        1 => (1u64..4_000).prop_map(Op::Advance),
    ]
}

/// A load in flight: its leader's loaded value, whether a write overtook it, and the tasks.
struct Flight {
    loaded: i64,
    overtaken: bool,
    release: oneshot::Sender<()>,
    tasks: Vec<JoinHandle<Option<i64>>>,
}

struct Model {
    now: u64,
    entries: BTreeMap<u8, (i64, u64)>,
    flights: BTreeMap<u8, Flight>,
    next_loaded: i64,
}

impl Model {
    fn live(&self, key: u8) -> Option<(i64, u64)> {
        self.entries
            .get(&key)
            .copied()
            .filter(|(_, d)| *d > self.now)
    }

    fn write(&mut self, key: u8, entry: Option<(i64, u64)>) {
        match entry {
            Some(e) => self.entries.insert(key, e),
            None => self.entries.remove(&key),
        };
        if let Some(flight) = self.flights.get_mut(&key) {
            flight.overtaken = true;
        }
    }

    fn incremented(&self, key: u8) -> (i64, u64) {
        match self.live(key) {
            Some((v, d)) => (v + 1, d),
            None => (1, self.now + TTL_MS),
        }
    }
}

struct Harness {
    time: ManualClock,
    store: Store,
    cache: ModelCache,
    model: Model,
}

/// Lets every runnable task run (current-thread runtime: others run only when this yields).
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

impl Harness {
    async fn new() -> Self {
        let time = ManualClock::new();
        let memory = MemoryStore::builder().clock(time.clock()).build().unwrap();
        let store = FaultStore::new(memory);
        let cache = Cache::builder()
            .store(store.clone())
            .clock(time.clock())
            .ttl(Duration::from_millis(TTL_MS))
            .build()
            .await
            .unwrap();
        let model = Model {
            now: 0,
            entries: BTreeMap::new(),
            flights: BTreeMap::new(),
            next_loaded: 1_000,
        };
        Harness {
            time,
            store,
            cache,
            model,
        }
    }

    /// Spawns `fetch(key)` whose loader (if it leads) returns `loaded` once `parked` fires.
    fn spawn_fetch(&self, key: u8, loaded: i64) -> (oneshot::Sender<()>, JoinHandle<Option<i64>>) {
        let (release, parked) = oneshot::channel::<()>();
        let cache = self.cache.clone();
        let task = tokio::spawn(async move {
            let loader = move |_| async move {
                let _ = parked.await;
                Ok::<_, std::io::Error>(Load::Commit(loaded))
            };
            cache.fetch(key, loader).await.unwrap()
        });
        (release, task)
    }

    async fn fetch(&mut self, key: u8) -> Result<(), TestCaseError> {
        let loaded = self.model.next_loaded;
        self.model.next_loaded += 1;
        let (release, task) = self.spawn_fetch(key, loaded);
        settle().await;
        if let Some((value, _)) = self.model.live(key) {
            prop_assert!(task.is_finished(), "a fetch of a live key waited");
            prop_assert_eq!(task.await.unwrap(), Some(value));
        } else if let Some(flight) = self.model.flights.get_mut(&key) {
            prop_assert!(
                !task.is_finished(),
                "a fetch did not join the load in flight"
            );
            flight.tasks.push(task);
        } else {
            prop_assert!(
                !task.is_finished(),
                "a missed fetch did not wait for its loader"
            );
            let flight = Flight {
                loaded,
                overtaken: false,
                release,
                tasks: vec![task],
            };
            self.model.flights.insert(key, flight);
        }
        Ok(())
    }

    async fn release(&mut self, index: usize) -> Result<(), TestCaseError> {
        let Some(&key) = self
            .model
            .flights
            .keys()
            .nth(index % self.model.flights.len().max(1))
        else {
            return Ok(());
        };
        let flight = self.model.flights.remove(&key).unwrap();
        flight.release.send(()).unwrap();
        settle().await;
        for task in flight.tasks {
            prop_assert!(
                task.is_finished(),
                "a caller still waits after its load finished"
            );
            prop_assert_eq!(task.await.unwrap(), Some(flight.loaded));
        }
        if !flight.overtaken {
            let deadline = self.model.now + TTL_MS;
            self.model.entries.insert(key, (flight.loaded, deadline));
        }
        Ok(())
    }

    async fn incr_across_expiry(&mut self, key: u8) -> Result<(), TestCaseError> {
        let Some((_, deadline)) = self.model.live(key) else {
            return self.incr(key).await;
        };
        let (time, gap) = (self.time.clone(), deadline - self.model.now);
        let inside = [
            At::After(StoreOp::Contains),
            At::Before(StoreOp::IncrWithTtl),
            At::Before(StoreOp::Incr),
        ];
        self.store
            .arm(&inside, move || time.advance(Duration::from_millis(gap)));
        self.model.now = deadline;
        self.incr(key).await?;
        prop_assert!(!self.store.armed(), "the expiry was not pinned inside incr");
        Ok(())
    }

    async fn incr(&mut self, key: u8) -> Result<(), TestCaseError> {
        let expected = self.model.incremented(key);
        prop_assert_eq!(self.cache.incr(&key, 1).await.unwrap(), expected.0);
        self.model.write(key, Some(expected));
        Ok(())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Fetch(key) => self.fetch(key).await?,
            Op::Release(index) => self.release(index).await?,
            Op::Put(key, value) => {
                self.cache.put(key, value, None).await.unwrap();
                let deadline = self.model.now + TTL_MS;
                self.model.write(key, Some((value, deadline)));
            }
            Op::Delete(key) => {
                let removed = self.cache.delete(&key).await.unwrap();
                prop_assert_eq!(removed, self.model.live(key).is_some());
                self.model.write(key, None);
            }
            Op::Incr(key) => self.incr(key).await?,
            Op::IncrAcrossExpiry(key) => self.incr_across_expiry(key).await?,
            Op::Advance(ms) => {
                self.time.advance(Duration::from_millis(ms));
                self.model.now += ms;
            }
        }
        Ok(())
    }

    /// Every key's value and remaining TTL equal the model's.
    async fn check(&self) -> Result<(), TestCaseError> {
        for key in 0..KEYS {
            let live = self.model.live(key);
            let value = self.cache.get(&key).await.unwrap();
            prop_assert_eq!(value, live.map(|(v, _)| v), "value of key {}", key);
            let ttl = self.cache.ttl(&key).await.unwrap();
            let expected = live.map(|(_, d)| Expiry::In(Duration::from_millis(d - self.model.now)));
            prop_assert_eq!(ttl, expected, "TTL of key {}", key);
        }
        Ok(())
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new().await;
    for op in &ops {
        h.apply(op).await?;
        h.check().await?;
    }
    let pending: Vec<u8> = h.model.flights.keys().copied().collect();
    for _ in pending {
        h.release(0).await?;
        h.check().await?;
    }
    Ok(())
}

/// The ops around one parked load of key 0: writes, deletes and clock moves.
fn around_a_load() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..100).prop_map(|v| Op::Put(0, v)),
        Just(Op::Delete(0)),
        (1..=TTL_MS).prop_map(Op::Advance),
    ]
}

fn check_on_a_runtime(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(run(ops))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cache_agrees_with_its_sequential_model(ops in prop::collection::vec(op(), 1..40)) {
        check_on_a_runtime(ops)?;
    }

    #[test]
    fn cache_reads_match_the_model_around_a_parked_load(
        mut ops in prop::collection::vec(around_a_load(), 0..24),
        release_at in 0usize..24,
    ) {
        ops.insert(release_at.min(ops.len()), Op::Release(0));
        ops.insert(0, Op::Fetch(0));
        check_on_a_runtime(ops)?;
    }
}
