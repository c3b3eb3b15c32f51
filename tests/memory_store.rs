//! MemoryStore-specific behaviour: the sweeper, events, stats, the hasher option, and a
//! model-based test against a `BTreeMap` with a manual clock.

use std::{
    collections::{hash_map::RandomState, BTreeMap},
    time::Duration,
};

use proptest::prelude::*;
use strata::{EventKind, Expiry, ManualClock, MemoryStore};

const SEC: Duration = Duration::from_secs(1);

fn store_with(time: &ManualClock) -> MemoryStore<String, u64> {
    MemoryStore::builder().clock(time.clock()).build().unwrap()
}

async fn next_event(events: &mut strata::Events<String>) -> strata::Event<String> {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("store alive")
}

#[tokio::test]
async fn sweeper_removes_expired_entries_when_the_clock_advances() {
    let time = ManualClock::new();
    let store = store_with(&time);
    let mut events = store.subscribe();
    store.put("short".into(), 1, Some(SEC)).unwrap();
    store.put("long".into(), 2, Some(60 * SEC)).unwrap();
    store.put("forever".into(), 3, None).unwrap();
    for _ in 0..3 {
        assert_eq!(next_event(&mut events).await.kind, EventKind::Put);
    }
    time.advance(2 * SEC);
    // No read touches the key: the background sweeper alone must find and remove it.
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.key.as_str(), event.kind),
        ("short", EventKind::Expired)
    );
    assert_eq!(store.stats().expirations, 1);
    time.advance(60 * SEC);
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.key.as_str(), event.kind),
        ("long", EventKind::Expired)
    );
    assert_eq!(store.keys(), ["forever"]);
}

/// A rewrite that moves a deadline later does not index it again at once: the sweeper, woken
/// for the first deadline, finds the entry alive, must leave it, and must come back for it
/// (without the second visit this waits for the event in vain and fails).
#[tokio::test]
async fn the_sweeper_comes_back_for_an_entry_a_rewrite_moved_to_a_later_deadline() {
    let time = ManualClock::new();
    let store: MemoryStore<String, u64> = MemoryStore::builder()
        .clock(time.clock())
        .shards(1)
        .build()
        .unwrap();
    let mut events = store.subscribe();
    store.put("moved".into(), 1, Some(SEC)).unwrap();
    // Expires after the first deadline of "moved": its event says the sweeper got past it.
    store.put("marker".into(), 0, Some(SEC + SEC / 10)).unwrap();
    time.advance(SEC / 2);
    store.put("moved".into(), 2, Some(SEC)).unwrap(); // now due at 1.5 s
    for _ in 0..3 {
        assert_ne!(next_event(&mut events).await.kind, EventKind::Expired);
    }
    time.advance(SEC / 2 + SEC / 5); // 1.2 s
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.key.as_str(), event.kind),
        ("marker", EventKind::Expired)
    );
    assert_eq!(store.get("moved"), Some(2), "swept before its deadline");
    time.advance(SEC / 2); // 1.7 s
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.key.as_str(), event.kind),
        ("moved", EventKind::Expired)
    );
    assert_eq!(store.stats().expirations, 2);
}

#[test]
fn purge_expired_is_exact_and_idempotent() {
    let time = ManualClock::new();
    let store = store_with(&time);
    for i in 0..1000u64 {
        store
            .put(format!("k{i}"), i, Some(Duration::from_millis(1 + i)))
            .unwrap();
    }
    time.advance(Duration::from_millis(500));
    // The sweeper may already have run; what it and purge_expired removed adds up to exactly 500.
    store.purge_expired();
    assert_eq!(store.count(), 500);
    assert_eq!(store.purge_expired(), 0);
    assert_eq!(store.stats().expirations, 500);
}

#[test]
fn overwritten_deadlines_expire_once() {
    let time = ManualClock::new();
    let store: MemoryStore<u64, u64> = MemoryStore::builder()
        .clock(time.clock())
        .shards(1)
        .build()
        .unwrap();
    for round in 0..200 {
        for k in 0..100 {
            store.put(k, round, Some(60 * SEC)).unwrap();
        }
    }
    assert_eq!(store.count(), 100);
    assert_eq!(store.get(&7), Some(199));
    time.advance(61 * SEC);
    store.purge_expired();
    assert_eq!(
        store.stats().expirations,
        100,
        "each key expires once, however often written"
    );
    assert_eq!(store.count(), 0);
}

#[test]
fn events_and_stats_follow_every_kind_of_write() {
    let time = ManualClock::new();
    let store = store_with(&time);
    let mut events = store.subscribe();
    store.put("a".into(), 1, None).unwrap();
    store.put("a".into(), 2, None).unwrap();
    assert_eq!(store.get("a"), Some(2));
    assert_eq!(store.get("missing"), None);
    assert!(store.delete("a"));
    store.put("b".into(), 1, Some(SEC)).unwrap();
    time.advance(2 * SEC);
    store.put("b".into(), 5, None).unwrap(); // replaces an expired entry: expired + put
    let kinds: Vec<_> = std::iter::from_fn(|| events.try_recv())
        .map(|e| e.kind)
        .collect();
    use EventKind::*;
    assert_eq!(kinds, [Put, Replace, Delete, Put, Expired, Put]);
    let stats = store.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.writes,
            stats.updates,
            stats.deletes,
            stats.expirations
        ),
        (1, 1, 3, 1, 1, 1)
    );
}

#[test]
fn stats_can_be_switched_off() {
    let store: MemoryStore<u8, u8> = MemoryStore::builder().stats(false).build().unwrap();
    store.put(1, 1, None).unwrap();
    assert_eq!(store.get(&1), Some(1));
    assert_eq!(store.stats(), strata::Stats::default());
}

#[test]
fn a_keyed_hasher_can_be_chosen_for_attacker_controlled_keys() {
    let store: MemoryStore<String, u8, RandomState> = MemoryStore::builder()
        .hasher(RandomState::new())
        .build()
        .unwrap();
    store.put("k".into(), 7, None).unwrap();
    assert_eq!(store.get("k"), Some(7));
}

#[test]
fn bad_options_are_typed_errors() {
    let err = MemoryStore::<u8, u8>::builder()
        .shards(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            strata::Error::InvalidConfig(ref e) if e.option == "shards"
        ),
        "{err}"
    );
    let err = MemoryStore::<u8, u8>::builder()
        .namespace("a:b")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, strata::Error::InvalidNamespace { .. }),
        "{err}"
    );
    let err = MemoryStore::<u8, u8>::builder()
        .event_capacity(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("event_capacity"), "{err}");
}

#[test]
fn borrowed_lookups_and_entries() {
    let store: MemoryStore<String, String> = MemoryStore::new();
    store.put("k".into(), "v".into(), Some(10 * SEC)).unwrap();
    assert!(store.contains("k"));
    assert!(matches!(store.ttl("k"), Some(Expiry::In(_))));
    let entries = store.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].0.as_str(), entries[0].1.as_str()), ("k", "v"));
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, Option<u8>),
    PutNew(u8, u8, Option<u8>),
    Get(u8),
    Take(u8),
    Delete(u8),
    Incr(u8, i8),
    Expire(u8, Option<u8>),
    Advance(u8),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..16;
    let ttl = proptest::option::of(1u8..10);
    prop_oneof![
        (key.clone(), any::<u8>(), ttl.clone()).prop_map(|(k, v, t)| Op::Put(k, v, t)),
        (key.clone(), any::<u8>(), ttl.clone()).prop_map(|(k, v, t)| Op::PutNew(k, v, t)),
        key.clone().prop_map(Op::Get),
        key.clone().prop_map(Op::Take),
        key.clone().prop_map(Op::Delete),
        (key.clone(), any::<i8>()).prop_map(|(k, d)| Op::Incr(k, d)),
        (key, ttl).prop_map(|(k, t)| Op::Expire(k, t)),
        (0u8..12).prop_map(Op::Advance),
        Just(Op::Purge),
    ]
}

/// The reference model: key -> (value, deadline in seconds).
#[derive(Default)]
struct Model {
    now: u64,
    map: BTreeMap<u8, (i64, Option<u64>)>,
}

impl Model {
    fn live(&self, k: u8) -> Option<(i64, Option<u64>)> {
        self.map
            .get(&k)
            .copied()
            .filter(|(_, d)| d.is_none_or(|d| d > self.now))
    }
    fn deadline(&self, ttl: Option<u8>) -> Option<u64> {
        ttl.map(|t| self.now + u64::from(t))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn behaves_like_a_map_with_deadlines(ops in proptest::collection::vec(op(), 1..120)) {
        let time = ManualClock::new();
        let store: MemoryStore<u8, i64> = MemoryStore::builder().clock(time.clock()).shards(2).build().unwrap();
        let mut model = Model::default();
        let secs = |t: Option<u8>| t.map(|t| Duration::from_secs(u64::from(t)));
        for op in ops {
            match op {
                Op::Put(k, v, t) => {
                    store.put(k, i64::from(v), secs(t)).unwrap();
                    let d = model.deadline(t);
                    model.map.insert(k, (i64::from(v), d));
                }
                Op::PutNew(k, v, t) => {
                    let expected = model.live(k).is_none();
                    prop_assert_eq!(store.put_new(k, i64::from(v), secs(t)).unwrap(), expected);
                    if expected {
                        let d = model.deadline(t);
                        model.map.insert(k, (i64::from(v), d));
                    }
                }
                Op::Get(k) => prop_assert_eq!(store.get(&k), model.live(k).map(|(v, _)| v)),
                Op::Take(k) => {
                    prop_assert_eq!(store.take(&k), model.live(k).map(|(v, _)| v));
                    model.map.remove(&k);
                }
                Op::Delete(k) => {
                    prop_assert_eq!(store.delete(&k), model.live(k).is_some());
                    model.map.remove(&k);
                }
                Op::Incr(k, d) => {
                    let (base, deadline) = model.live(k).unwrap_or((0, None));
                    let next = base + i64::from(d);
                    prop_assert_eq!(store.incr(&k, i64::from(d)).unwrap(), next);
                    model.map.insert(k, (next, deadline));
                }
                Op::Expire(k, t) => {
                    let live = model.live(k).is_some();
                    prop_assert_eq!(store.expire(&k, secs(t)).unwrap(), live);
                    if live {
                        let d = model.deadline(t);
                        if let Some(e) = model.map.get_mut(&k) { e.1 = d; }
                    }
                }
                Op::Advance(s) => {
                    time.advance(Duration::from_secs(u64::from(s)));
                    model.now += u64::from(s);
                }
                Op::Purge => { store.purge_expired(); }
            }
            let mut keys = store.keys();
            keys.sort();
            let expected: Vec<u8> = model.map.keys().copied().filter(|k| model.live(*k).is_some()).collect();
            prop_assert_eq!(keys, expected);
            for k in 0..16u8 {
                let ttl = store.ttl(&k);
                let want = model.live(k).map(|(_, d)| match d {
                    None => Expiry::Never,
                    Some(d) => Expiry::In(Duration::from_secs(d - model.now)),
                });
                prop_assert_eq!(ttl, want);
            }
        }
    }
}

/// Whoever hears of an expiry (an event or the eviction listener) finds it already counted in
/// `stats().expirations`. The listener runs inside the purge (after each batch), so on code that
/// counted a purge's expirations only at its end it always read 0.
#[test]
fn an_expiry_is_counted_before_anyone_hears_of_it() {
    use std::sync::{mpsc, Arc, OnceLock};

    use strata::RemovalCause;

    let time = ManualClock::new();
    let this: Arc<OnceLock<MemoryStore<String, u64>>> = Arc::default();
    let (heard, counted) = mpsc::channel();
    let store = {
        let this = this.clone();
        MemoryStore::builder()
            .clock(time.clock())
            .eviction_listener(move |_, _, cause| {
                let expirations = this.get().map(|s| s.stats().expirations);
                let _ = heard.send((cause, expirations));
            })
            .build()
            .unwrap()
    };
    let _ = this.set(store.clone());
    store.put("short".into(), 1, Some(SEC)).unwrap();
    time.advance(2 * SEC);
    // The sweeper or this call removes it; either way the listener hears of it once.
    store.purge_expired();
    let heard = counted.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(heard, (RemovalCause::Expired, Some(1)));
}
