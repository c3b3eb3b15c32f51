//! Issue 13 item 4: `Cache::transaction` (Cachex `transaction/3`). Each guarantee is forced: a
//! block parked on a oneshot holds the locks while the test checks who waits; the release on
//! error, panic and cancellation is shown by a second transaction that would wait forever.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use strata::{Cache, Error, MemoryStore, Transaction, Update};
use tokio::sync::oneshot;

type Mem = MemoryStore<String, i64>;

fn s(v: &str) -> String {
    v.to_string()
}

async fn cache() -> Cache<String, i64, Mem> {
    Cache::builder().store(Mem::new()).build().await.unwrap()
}

/// Lets every other ready task on this current-thread runtime run until it blocks.
async fn let_others_run() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A hang would otherwise be the failure mode: fail with a message instead.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: still waiting after 20 s (a lock was never released)"),
    }
}

/// Starts a transaction on `keys` whose block reports that it entered, then waits for `go`.
fn parked(
    cache: &Cache<String, i64, Mem>,
    keys: Vec<String>,
) -> (
    oneshot::Receiver<()>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<strata::Result<()>>,
) {
    let (entered_tx, entered) = oneshot::channel();
    let (go, go_rx) = oneshot::channel::<()>();
    let cache = cache.clone();
    let task = tokio::spawn(async move {
        cache
            .transaction(&keys, |tx| async move {
                tx.put(s("a"), 1, None).await?;
                let _ = entered_tx.send(());
                let _ = go_rx.await;
                tx.put(s("a"), 2, None).await?;
                Ok(())
            })
            .await
    });
    (entered, go, task)
}

#[tokio::test(flavor = "current_thread")]
async fn a_transaction_waits_for_another_on_a_shared_key_and_sees_its_whole_effect() {
    let cache = cache().await;
    let (entered, go, first) = parked(&cache, vec![s("a"), s("b")]);
    entered.await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let second = tokio::spawn({
        let (cache, ran) = (cache.clone(), ran.clone());
        async move {
            cache
                .transaction(&[s("a")], |tx| async move {
                    ran.store(true, Ordering::SeqCst);
                    tx.get(&s("a")).await
                })
                .await
        }
    });
    let_others_run().await;
    assert!(
        !ran.load(Ordering::SeqCst),
        "a second transaction on a locked key ran while the first was inside its block"
    );
    go.send(()).unwrap();
    within("first", first).await.unwrap().unwrap();
    let seen = within("second", second).await.unwrap().unwrap();
    assert_eq!(
        seen,
        Some(2),
        "the second transaction saw a half-done first one"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn update_and_incr_on_a_locked_key_wait_for_the_transaction() {
    let cache = cache().await;
    let (entered, go, first) = parked(&cache, vec![s("a")]);
    entered.await.unwrap();
    let update = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_and_update(&s("a"), |old| Update::Commit(old.unwrap_or(0) * 10))
                .await
        }
    });
    let incr = tokio::spawn({
        let cache = cache.clone();
        async move { cache.incr(&s("a"), 1).await }
    });
    let_others_run().await;
    assert!(!update.is_finished(), "get_and_update did not wait");
    assert!(!incr.is_finished(), "incr did not wait");
    go.send(()).unwrap();
    within("first", first).await.unwrap().unwrap();
    within("update", update).await.unwrap().unwrap();
    within("incr", incr).await.unwrap().unwrap();
    // Both ran after the block's final write (2), in either order: 2*10+1 or (2+1)*10.
    let end = cache.get(&s("a")).await.unwrap();
    assert!(matches!(end, Some(21) | Some(30)), "got {end:?}");
}

/// Paused time: a transaction that waits makes the runtime idle, so its timeout fires at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_transaction_on_other_keys_does_not_wait() {
    let cache = cache().await;
    let (entered, go, first) = parked(&cache, vec![s("a")]);
    entered.await.unwrap();
    // Keys on other lock stripes than "a" run at once.
    let mut ran_alongside = 0;
    for i in 0..20 {
        let key = format!("other{i}");
        let keys = [key.clone()];
        let done = cache.transaction(&keys, |tx| async move { tx.put(key, 1, None).await });
        if tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .is_ok()
        {
            ran_alongside += 1;
        }
    }
    // 64 stripes: at most a few of the 20 keys share "a"'s stripe.
    assert!(
        ran_alongside >= 15,
        "only {ran_alongside} of 20 ran alongside"
    );
    go.send(()).unwrap();
    within("first", first).await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_locks_are_released_when_the_block_fails() {
    let cache = cache().await;
    let failed = cache
        .transaction(&[s("a")], |tx| async move {
            tx.put(s("a"), 1, None).await?;
            Err::<(), _>(Error::config("test", "the block fails"))
        })
        .await;
    assert!(matches!(failed, Err(Error::InvalidConfig { .. })));
    let a = [s("a")];
    let next = cache.transaction(&a, |tx| async move { tx.get(&s("a")).await });
    assert_eq!(within("next", next).await.unwrap(), Some(1));
}

#[tokio::test(flavor = "current_thread")]
async fn the_locks_are_released_when_the_block_panics() {
    let cache = cache().await;
    let panicked = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .transaction(&[s("a")], |_tx| async move {
                    if true {
                        panic!("the block panics");
                    }
                    Ok(())
                })
                .await
        }
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let a = [s("a")];
    let next = cache.transaction(&a, |tx| async move { tx.incr(&s("a"), 1).await });
    assert_eq!(within("next", next).await.unwrap(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn the_locks_are_released_when_the_transaction_is_cancelled() {
    let cache = cache().await;
    let (entered, _go, first) = parked(&cache, vec![s("a")]);
    entered.await.unwrap();
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let a = [s("a")];
    let next = cache.transaction(&a, |tx| async move { tx.get(&s("a")).await });
    assert_eq!(within("next", next).await.unwrap(), Some(1));
}

#[tokio::test(flavor = "current_thread")]
async fn inside_the_block_the_handle_updates_locked_keys_without_deadlock() {
    let cache = cache().await;
    let keys = [s("a"), s("b")];
    let out = cache.transaction(&keys, |tx| async move {
        tx.incr(&s("a"), 5).await?;
        tx.get_and_update(&s("b"), |old| Update::Commit(old.unwrap_or(0) + 7))
            .await?;
        // A key the transaction did not lock goes through the normal (waiting) path.
        tx.get_and_update(&s("c"), |_| Update::Commit(1)).await?;
        Ok(tx.get(&s("a")).await?.zip(tx.get(&s("b")).await?))
    });
    assert_eq!(within("block", out).await.unwrap(), Some((5, 7)));
}

#[tokio::test(flavor = "current_thread")]
async fn a_handle_used_after_its_transaction_ended_fails() {
    let cache = cache().await;
    let kept: Transaction<String, i64, Mem> = cache
        .transaction(&[s("a")], |tx| async move { Ok(tx.clone()) })
        .await
        .unwrap();
    assert!(matches!(
        kept.put(s("a"), 1, None).await,
        Err(Error::TransactionEnded)
    ));
    assert!(matches!(
        kept.get(&s("a")).await,
        Err(Error::TransactionEnded)
    ));
    assert_eq!(cache.get(&s("a")).await.unwrap(), None);
}

/// Many concurrent transfers between two accounts, each a read then a write with a yield in
/// between: without the locks, two transfers read the same balance and one is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_never_lose_or_create_money() {
    let cache = cache().await;
    cache.put(s("alice"), 1_000, None).await.unwrap();
    cache.put(s("bob"), 1_000, None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let cache = cache.clone();
        let (from, to) = if i % 2 == 0 {
            (s("alice"), s("bob"))
        } else {
            (s("bob"), s("alice"))
        };
        tasks.push(tokio::spawn(async move {
            let keys = [from.clone(), to.clone()];
            cache
                .transaction(&keys, |tx| async move {
                    let a = tx.get(&from).await?.unwrap_or(0);
                    let b = tx.get(&to).await?.unwrap_or(0);
                    tokio::task::yield_now().await;
                    tx.put(from, a - 1, None).await?;
                    tx.put(to, b + 1, None).await?;
                    Ok(())
                })
                .await
        }));
    }
    for task in tasks {
        within("transfer", task).await.unwrap().unwrap();
    }
    let alice = cache.get(&s("alice")).await.unwrap().unwrap();
    let bob = cache.get(&s("bob")).await.unwrap().unwrap();
    assert_eq!((alice, bob), (1_000, 1_000), "100 transfers each way");
}
