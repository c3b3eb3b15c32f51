//! GCRA's read-then-write race, forced: one limiter is parked between reading the stored
//! arrival time and writing the next one while another limiter (another process, in effect:
//! its own key locks) admits a request on the same key. The parked check must then see the
//! other's write and be denied, so a burst of 1 admits exactly 1.

mod support;

use std::time::Duration;

use strata::{ManualClock, MemoryStore, RateLimiter};
use support::fault_store::{FaultStore, Op};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_check_racing_another_process_between_read_and_write_is_denied() {
    let time = ManualClock::new();
    let store = MemoryStore::<String, i64>::builder()
        .clock(time.clock())
        .build()
        .unwrap();
    let faults = FaultStore::new(store.clone());
    let parked_side = RateLimiter::with_clock(faults.clone(), time.clock());
    let other_side = RateLimiter::with_clock(store, time.clock());

    // Parked right before its write: it has read "no arrival time yet" and not written.
    let mut parked = faults.park_next(Op::CompareAndSet);
    let first = tokio::spawn(async move { parked_side.check_gcra("ip", 1, MINUTE).await });
    parked.reached().await;
    let other = other_side.check_gcra("ip", 1, MINUTE).await.unwrap();
    parked.release();
    let first = first.await.unwrap().unwrap();

    assert!(other.allowed, "the uncontended check is admitted");
    assert!(
        !first.allowed,
        "the parked check wrote over the other's arrival time: 2 admitted with a burst of 1"
    );
    assert_eq!(first.retry_after, Some(MINUTE));
}
