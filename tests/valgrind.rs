//! strata runs under valgrind: the system clock's coarse reading must not crash a program that
//! valgrind runs (rustix's own vDSO parser did, rustix#1559; strata reads the clock through libc).

use std::{process::Command, time::Duration};

use strata::{Clock, MemoryStore};

const CHILD: &str = "STRATA_VALGRIND_CHILD";

/// Reads the system clock every way the stores do: a put with a TTL (coarse time), a get of it
/// (coarse check), a get near its deadline (precise time) and `now_ms`.
fn use_the_clock() {
    let store = MemoryStore::builder()
        .build()
        .expect("default options are valid");
    store
        .put(1u64, 1u64, Some(Duration::from_secs(60)))
        .expect("a positive TTL is valid");
    assert_eq!(store.get(&1), Some(1));
    store
        .put(2u64, 2u64, Some(Duration::from_millis(1)))
        .expect("a positive TTL is valid");
    let _ = store.get(&2);
    assert!(Clock::system().now_ms() > 0);
}

#[test]
fn the_system_clock_works_under_valgrind() {
    if std::env::var_os(CHILD).is_some() {
        use_the_clock();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    let out = Command::new("valgrind")
        .args(["--tool=none", "-q", "--error-exitcode=99"])
        .arg(exe)
        .args([
            "--exact",
            "the_system_clock_works_under_valgrind",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("valgrind runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "the test under valgrind failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
