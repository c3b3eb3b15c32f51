//! The sweeper thread's lifecycle, in a test binary of its own so no other test's sweepers are
//! counted.

use std::time::Duration;

use strata::MemoryStore;

const SEC: Duration = Duration::from_secs(1);

#[cfg(target_os = "linux")]
#[test]
fn the_sweeper_thread_stops_when_the_store_is_dropped() {
    fn sweepers() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "strata-sweeper")
            .count()
    }
    let stores: Vec<MemoryStore<u8, u8>> = (0..8).map(|_| MemoryStore::new()).collect();
    for s in &stores {
        s.put(1, 1, Some(SEC)).unwrap();
    }
    // A new thread names itself as it starts, so give the names a moment to appear.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sweepers() < 8 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let with = sweepers();
    assert_eq!(with, 8, "one sweeper per store that used a TTL");
    drop(stores);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sweepers() + 8 > with && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        sweepers() + 8 <= with,
        "sweeper threads still running after drop"
    );
}
