//! Model-based test of `Cache`: a fetch whose loader is parked on a oneshot, generated puts,
//! deletes, reads and clock moves around it, and the loader released at a generated point. Each
//! read is checked against a sequential model in which the loader's value commits at its
//! release only if no put or delete of the key happened since the fetch began (issue 12, item
//! 6); expiry follows a manual clock.

use std::time::Duration;

use proptest::prelude::*;
use strata::{Cache, Load, ManualClock, MemoryStore};
use tokio::sync::oneshot;

const TTL: u64 = 10;

#[derive(Clone, Debug)]
enum Op {
    Put(u8),
    Delete,
    Get,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u8>().prop_map(Op::Put),
        Just(Op::Delete),
        Just(Op::Get),
        (1..=TTL).prop_map(Op::Advance),
    ]
}

/// The model: the key's value and its deadline (seconds on the model clock).
#[derive(Default)]
struct Model {
    now: u64,
    entry: Option<(String, u64)>,
    overtaken: bool,
}

impl Model {
    fn live(&self) -> Option<String> {
        self.entry
            .clone()
            .filter(|(_, d)| *d > self.now)
            .map(|(v, _)| v)
    }
}

async fn run(ops: Vec<Op>, release_at: usize) {
    let time = ManualClock::new();
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let cache = Cache::builder()
        .store(store)
        .clock(time.clock())
        .ttl(Duration::from_secs(TTL))
        .build()
        .await
        .unwrap();
    let (release, parked) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel::<()>();
    let loading = cache.clone();
    let fetch = tokio::spawn(async move {
        let loader = |_| async move {
            started_tx.send(()).unwrap();
            parked.await.unwrap();
            Ok::<_, std::io::Error>(Load::Commit("loaded".to_string()))
        };
        loading.fetch("k".to_string(), loader).await.unwrap()
    });
    started.await.unwrap();
    let mut model = Model::default();
    let mut release = Some((release, fetch));
    let key = "k".to_string();
    for (i, op) in ops.into_iter().enumerate() {
        if i == release_at {
            let (release, fetch) = release.take().unwrap();
            release.send(()).unwrap();
            let loaded = fetch.await.unwrap();
            assert_eq!(
                loaded.as_deref(),
                Some("loaded"),
                "the caller gets its load"
            );
            if !model.overtaken {
                model.entry = Some(("loaded".into(), model.now + TTL));
            }
        }
        apply(&cache, &time, &mut model, &key, op).await;
    }
    // A final read after everything (and after the load, if it was never released above).
    if let Some((release, fetch)) = release {
        release.send(()).unwrap();
        fetch.await.unwrap();
        if !model.overtaken {
            model.entry = Some(("loaded".into(), model.now + TTL));
        }
    }
    assert_eq!(cache.get(&key).await.unwrap(), model.live());
}

proptest! {
    #[test]
    fn cache_reads_match_the_model_around_a_parked_load(
        ops in proptest::collection::vec(op(), 0..24),
        release_at in 0usize..24,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops, release_at));
    }
}

async fn apply(
    cache: &Cache<String, String, MemoryStore<String, String>>,
    time: &ManualClock,
    model: &mut Model,
    key: &String,
    op: Op,
) {
    match op {
        Op::Put(v) => {
            cache.put(key.clone(), v.to_string(), None).await.unwrap();
            model.entry = Some((v.to_string(), model.now + TTL));
            model.overtaken = true;
        }
        Op::Delete => {
            cache.delete(key).await.unwrap();
            model.entry = None;
            model.overtaken = true;
        }
        Op::Get => assert_eq!(cache.get(key).await.unwrap(), model.live()),
        Op::Advance(s) => {
            time.advance(Duration::from_secs(s));
            model.now += s;
        }
    }
}
