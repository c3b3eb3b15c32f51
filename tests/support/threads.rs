//! Counting the threads of this test process by name (Linux: `/proc/self/task/*/comm`), for
//! tests of a background thread's lifecycle. Each such test lives in a binary of its own, so no
//! other test's threads are counted.

use std::time::{Duration, Instant};

/// How many threads of this process are named `name`.
pub fn named(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        panic!("/proc/self/task is readable on Linux");
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == name)
        .count()
}

/// How many sweeper threads (`strata-sweeper`) this process runs.
pub fn sweepers() -> usize {
    named("strata-sweeper")
}

/// Polls `done` until it holds or 10 s pass (threads name themselves as they start, and stop
/// once woken; the time only bounds a failure).
pub fn within_10s(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}
