//! A bounded product cache in front of a slow catalogue: the local-caching features together.
//!
//! - a `MemoryStore` bounded by **bytes** (`max_weight` with a weigher), its eviction policy
//!   keeping the hot products when a scan of cold ones goes through;
//! - an **eviction listener** that sees each removed key, value and cause;
//! - `refresh_after`: a stale hit is served at once while one background reload runs;
//! - `time_to_idle`: products nobody reads leave the cache;
//! - `fetch_many`: one catalogue query for every missing key, absences remembered;
//! - `transaction`: a stock move between two products that no other update interleaves with.
//!
//! Time is a [`ManualClock`], so the expiry steps are exact and the example runs instantly.
//! Run with `cargo run --example bounded_cache`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use strata::{Cache, Load, ManualClock, MemoryStore, RemovalCause};

/// The slow system of record: product id -> description, counting its queries.
struct Catalogue {
    queries: AtomicUsize,
}

impl Catalogue {
    /// One query for many ids; ids at or above 5 000 do not exist.
    async fn lookup(&self, ids: Vec<u32>) -> Result<Vec<(u32, Load<String>)>, std::io::Error> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        Ok(ids
            .into_iter()
            .map(|id| match id {
                0..=4999 => (
                    id,
                    Load::Commit(format!("product {id}: {}", "*".repeat(90))),
                ),
                _ => (id, Load::NotFound),
            })
            .collect())
    }
}

type Removals = Arc<Mutex<HashMap<RemovalCause, usize>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let time = ManualClock::new();
    let removals: Removals = Arc::default();
    let log = removals.clone();
    // About 100 products' worth of bytes: the weigher counts the key and the description.
    let store = MemoryStore::<u32, String>::builder()
        .clock(time.clock())
        .max_weight(100 * 110)
        .weigher(|_id, description| 4 + description.len() as u32)
        .build()?;
    let cache = Cache::builder()
        .store(store)
        .clock(time.clock())
        .ttl(Duration::from_secs(3600))
        .negative_ttl(Duration::from_secs(60))
        .refresh_after(Duration::from_secs(300))
        .time_to_idle(Duration::from_secs(1800))
        .eviction_listener(move |_id, _description, cause| {
            *log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(cause)
                .or_default() += 1;
        })
        .build()
        .await?;
    let catalogue = Arc::new(Catalogue {
        queries: AtomicUsize::new(0),
    });
    let load = |catalogue: &Arc<Catalogue>| {
        let catalogue = catalogue.clone();
        move |ids: Vec<u32>| {
            let catalogue = catalogue.clone();
            async move { catalogue.lookup(ids).await }
        }
    };

    // 1. A page of 20 products, two of them unknown: one catalogue query.
    let page: Vec<u32> = (0..18).chain([5000, 5001]).collect();
    let found = cache.fetch_many(&page, load(&catalogue)).await?;
    let known = found.iter().filter(|v| v.is_some()).count();
    println!(
        "page 1: {known} of {} found, {} query",
        page.len(),
        queries(&catalogue)
    );
    // Read again: everything from the cache, the two absences remembered.
    cache.fetch_many(&page, load(&catalogue)).await?;
    println!("page 1 again: still {} query", queries(&catalogue));

    // 2. The first 18 products are hot; then a crawler scans 2 000 cold ids once each.
    for _ in 0..5 {
        for id in 0..18 {
            cache.get(&id).await?;
        }
    }
    for chunk in (100..2100).collect::<Vec<u32>>().chunks(50) {
        cache.fetch_many(chunk, load(&catalogue)).await?;
    }
    let mut hot_kept = 0;
    for id in 0..18 {
        hot_kept += usize::from(cache.get(&id).await?.is_some());
    }
    println!("after a scan of 2000 cold ids: {hot_kept} of 18 hot products still cached");

    // 3. Stock moves: a transaction holds both keys until it ends.
    let stock = Cache::builder()
        .store(
            MemoryStore::<String, i64>::builder()
                .clock(time.clock())
                .build()?,
        )
        .build()
        .await?;
    stock.put("warehouse".into(), 40, None).await?;
    stock.put("shop".into(), 2, None).await?;
    let (from, to) = ("warehouse".to_string(), "shop".to_string());
    let moved = stock
        .transaction(&[from.clone(), to.clone()], |tx| async move {
            let available = tx.get(&from).await?.unwrap_or(0);
            let n = available.min(10);
            tx.put(from, available - n, None).await?;
            tx.incr(&to, n).await?;
            Ok(n)
        })
        .await?;
    println!(
        "moved {moved}: warehouse {:?}, shop {:?}",
        stock.get(&"warehouse".into()).await?,
        stock.get(&"shop".into()).await?
    );

    // 4. Six minutes later a hot product is stale: served at once, reloaded in the background.
    time.advance(Duration::from_secs(360));
    let before = queries(&catalogue);
    let catalogue_for_one = catalogue.clone();
    let stale = cache
        .fetch(1, move |id| async move {
            let mut loaded = catalogue_for_one.lookup(vec![id]).await?;
            Ok::<_, std::io::Error>(loaded.pop().map_or(Load::NotFound, |(_, l)| l))
        })
        .await?;
    while cache.loads_in_flight() > 0 {
        tokio::task::yield_now().await;
    }
    println!(
        "stale hit served: {}, reloads run: {}",
        stale.is_some(),
        queries(&catalogue) - before
    );

    // 5. Nobody reads for 31 minutes: the idle products leave.
    time.advance(Duration::from_secs(31 * 60));
    println!(
        "after 31 idle minutes: product 2 cached: {}",
        cache.get(&2).await?.is_some()
    );

    let removals = removals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut causes: Vec<_> = removals.into_iter().collect();
    causes.sort_by_key(|(cause, _)| format!("{cause:?}"));
    println!("removals seen by the listener: {causes:?}");
    Ok(())
}

fn queries(catalogue: &Catalogue) -> usize {
    catalogue.queries.load(Ordering::Relaxed)
}
