//! `RedisStoreBuilder::wait_for_replicas` (issue 16 item 4): a write waits until a replica has
//! it, and says so with `Error::NotReplicated` when the replica does not answer in time. Real
//! processes on loopback: one master, one replica, three sentinels; the replica is frozen with
//! SIGSTOP to force the bad case.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use strata::{Error, RedisStore, Store};
use support::redis_sentinel::{Sentinels, MASTER_NAME};

/// Long enough that a frozen replica never makes the sentinels act during a test.
const DOWN_AFTER: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_millis(300);

async fn open(sentinels: &Sentinels) -> RedisStore<String, i64> {
    RedisStore::builder()
        .sentinel(sentinels.urls(), MASTER_NAME)
        .namespace("wait")
        .command_timeout(Duration::from_secs(5))
        .wait_for_replicas(1, WAIT)
        .build()
        .await
        .expect("connect through the sentinels")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_on_the_replica_when_it_returns_or_says_it_is_not() {
    let set = Sentinels::start(DOWN_AFTER);
    let store = open(&set).await;

    // Every kind of write is on the replica the moment it returns.
    store.put("a".into(), 1, None).await.unwrap();
    assert_eq!(set.replica.raw(&["GET", "wait:a"]), "1");
    store.incr(&"a".into(), 41).await.unwrap();
    assert_eq!(set.replica.raw(&["GET", "wait:a"]), "42");
    assert!(store
        .compare_and_set("a".into(), Some(42), 7, None)
        .await
        .unwrap());
    assert_eq!(set.replica.raw(&["GET", "wait:a"]), "7");
    store
        .put_many(vec![("b".into(), 2), ("c".into(), 3)], None)
        .await
        .unwrap();
    assert_eq!(set.replica.raw(&["GET", "wait:c"]), "3");
    assert!(store.delete(&"b".into()).await.unwrap());
    assert_eq!(set.replica.raw(&["EXISTS", "wait:b"]), ":0");

    // A frozen replica acknowledges nothing: the write is applied on the master, and says so.
    set.replica.pause();
    let err = store.put("d".into(), 4, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated(ref e) if e.acknowledged == 0 && e.wanted == 1
        ),
        "{err}"
    );
    assert!(err.to_string().contains("wait:d"), "{err}");
    assert_eq!(set.master.raw(&["GET", "wait:d"]), "4");
    let err = store.incr(&"a".into(), 1).await.unwrap_err();
    assert!(matches!(err, Error::NotReplicated { .. }), "{err}");
    set.replica.resume();

    // Once it runs again, writes are acknowledged again.
    store.put("e".into(), 5, None).await.unwrap();
    assert_eq!(set.replica.raw(&["GET", "wait:e"]), "5");
}
