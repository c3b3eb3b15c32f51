//! The sweeper thread's lifecycle, in a test binary of its own so no other test's sweepers are
//! counted.

use std::time::Duration;

use strata::MemoryStore;
#[cfg(target_os = "linux")]
use threads::{sweepers, within_10s};

#[cfg(target_os = "linux")]
#[path = "support/threads.rs"]
mod threads;

const SEC: Duration = Duration::from_secs(1);

#[cfg(target_os = "linux")]
#[test]
fn the_sweeper_thread_stops_when_the_store_is_dropped() {
    let stores: Vec<MemoryStore<u8, u8>> = (0..8).map(|_| MemoryStore::new()).collect();
    for s in &stores {
        s.put(1, 1, Some(SEC)).unwrap();
    }
    // A new thread names itself as it starts, so give the names a moment to appear.
    within_10s(|| sweepers() >= 8);
    let with = sweepers();
    assert_eq!(with, 8, "one sweeper per store that used a TTL");
    drop(stores);
    assert!(
        within_10s(|| sweepers() + 8 <= with),
        "sweeper threads still running after drop"
    );
}
