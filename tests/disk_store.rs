//! DiskStore beyond the conformance suite: restarts, the directory lock, pow#713 purging,
//! corruption, undecodable values, compaction and kill -9 crash safety.
#![cfg(feature = "disk")]

mod support;

use std::{path::Path, time::Duration};

use strata::{DiskDb, DiskStore, Error, ManualClock, Store};

/// The open timeout of the tests' opens: long enough that only a hang fails them. None of these
/// tests checks the timeout (`an_open_past_its_timeout_fails_and_leaves_the_directory_usable`
/// does, with its own); the default 15 s, which also counts the wait for a close finishing in
/// the background, ran out on a loaded machine (a debug build at load 16-18:
/// `a_big_namespace_reopens_whole_with_every_deadline*` here and
/// `a_backlog_bigger_than_a_writer_batch_commits_all_of_it_in_order` in disk_faults.rs).
const OPEN_WAIT: Duration = Duration::from_secs(120);

const HOUR: Duration = Duration::from_secs(3600);

/// The directory with the builder's defaults (a compact memory tier: every store here has
/// neither bounds nor idle expiry).
fn open(dir: &Path, clock: &ManualClock) -> DiskDb {
    DiskDb::builder()
        .open_timeout(crate::OPEN_WAIT)
        .dir(dir)
        .clock(clock.clock())
        .open()
        .expect("open the data directory")
}

/// [`open`] with the memory tier compact (`compact_memory`) or not.
fn open_in(dir: &Path, clock: &ManualClock, compact: bool) -> DiskDb {
    DiskDb::builder()
        .open_timeout(crate::OPEN_WAIT)
        .dir(dir)
        .clock(clock.clock())
        .compact_memory(compact)
        .open()
        .expect("open the data directory")
}

#[tokio::test]
async fn entries_survive_a_restart_with_their_ttls() {
    entries_survive_a_restart_with_their_ttls_in(false).await;
}

/// [`entries_survive_a_restart_with_their_ttls`] with a compact memory tier.
#[tokio::test]
async fn entries_survive_a_restart_with_their_ttls_compact() {
    entries_survive_a_restart_with_their_ttls_in(true).await;
}

async fn entries_survive_a_restart_with_their_ttls_in(compact: bool) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open_in(dir.path(), &time, compact);
    let s: DiskStore<String, String> = db.store("sessions").unwrap();
    s.put("a".into(), "1".into(), Some(HOUR)).await.unwrap();
    s.put("b".into(), "2".into(), None).await.unwrap();
    s.put("gone".into(), "x".into(), None).await.unwrap();
    assert!(s.delete(&"gone".into()).await.unwrap());
    drop((s, db));

    time.advance(Duration::from_secs(600));
    let db = open_in(dir.path(), &time, compact);
    assert_eq!(db.load_summary().live, 2);
    let s: DiskStore<String, String> = db.store("sessions").unwrap();
    assert_eq!(s.get(&"a".into()).await.unwrap().as_deref(), Some("1"));
    assert_eq!(s.get(&"b".into()).await.unwrap().as_deref(), Some("2"));
    assert_eq!(s.get(&"gone".into()).await.unwrap(), None);
    assert_eq!(
        s.ttl(&"a".into()).await.unwrap(),
        Some(strata::Expiry::In(Duration::from_secs(3000))),
        "deadline restored, not reset"
    );
    time.advance(Duration::from_secs(3001));
    assert_eq!(
        s.get(&"a".into()).await.unwrap(),
        None,
        "restored deadline fires"
    );
}

/// A namespace big enough to load on two threads and fill the memory tier in bulk comes back
/// whole: every value, every deadline (none, or its own), the ones that expired while the
/// store was closed gone, and the restored deadlines still firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_namespace_reopens_whole_with_every_deadline() {
    a_big_namespace_reopens_whole_with_every_deadline_in(false).await;
}

/// [`a_big_namespace_reopens_whole_with_every_deadline`] with a compact memory tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_namespace_reopens_whole_with_every_deadline_compact() {
    a_big_namespace_reopens_whole_with_every_deadline_in(true).await;
}

async fn a_big_namespace_reopens_whole_with_every_deadline_in(compact: bool) {
    const N: u64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open_in(dir.path(), &time, compact);
    let s: DiskStore<u64, String> = db.store("sessions").unwrap();
    // Key i: no TTL if 3 divides i, else i seconds (so keys below 600 expire while closed).
    let ttl = |i: u64| (!i.is_multiple_of(3)).then(|| Duration::from_secs(i));
    for i in 0..N {
        s.put(i, format!("v{i}"), ttl(i)).await.unwrap();
    }
    drop((s, db));

    time.advance(Duration::from_secs(600));
    let db = open_in(dir.path(), &time, compact);
    let s: DiskStore<u64, String> = db.store("sessions").unwrap();
    let live = |i: u64, after: u64| ttl(i).is_none_or(|t| t.as_secs() > after);
    let expected = (0..N).filter(|i| live(*i, 600)).count();
    assert_eq!(s.count().await.unwrap(), expected);
    for i in 0..N {
        let got = s.get(&i).await.unwrap();
        assert_eq!(got, live(i, 600).then(|| format!("v{i}")), "key {i}");
        if live(i, 600) {
            let left = ttl(i).map(|t| t - Duration::from_secs(600));
            let want = left.map_or(strata::Expiry::Never, strata::Expiry::In);
            assert_eq!(s.ttl(&i).await.unwrap(), Some(want), "key {i}");
        }
    }
    time.advance(Duration::from_secs(20_000));
    let expected = (0..N).filter(|i| live(*i, 20_600)).count();
    assert_eq!(s.count().await.unwrap(), expected);
    assert_eq!(
        s.get(&20_000).await.unwrap(),
        None,
        "restored deadline fires"
    );
    assert_eq!(s.get(&20_601).await.unwrap().as_deref(), Some("v20601"));
}

#[tokio::test]
async fn a_second_open_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open(dir.path(), &time);
    let err = DiskDb::builder().dir(dir.path()).open().unwrap_err();
    match &err {
        Error::DirLocked { path } => assert!(path.ends_with(dir.path().file_name().unwrap())),
        other => panic!("expected DirLocked, got {other:?}"),
    }
    assert!(err.to_string().contains("locked"), "{err}");
    drop(db);
    open(dir.path(), &time);
}

#[test]
fn unusable_directories_are_data_dir_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing_parent = dir.path().join("no/such/parent");
    match DiskDb::builder().dir(&missing_parent).open() {
        Err(Error::DataDir(e)) => {
            assert_eq!(e.path, missing_parent);
            assert_eq!(e.source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected DataDir, got {other:?}"),
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = DiskDb::builder().dir(&file).open().unwrap_err();
    assert!(
        matches!(&err, Error::DataDir(e) if e.path == file),
        "{err:?}"
    );
    assert!(err.to_string().contains("a-file"), "names the path: {err}");
}

#[test]
fn bad_options_are_config_errors() {
    let bad = [
        DiskDb::builder().open_timeout(Duration::ZERO).open(),
        DiskDb::builder().fsync_interval(Duration::ZERO).open(),
        DiskDb::builder().queue_capacity(0).open(),
    ];
    for result in bad {
        assert!(
            matches!(result, Err(Error::InvalidConfig { .. })),
            "{result:?}"
        );
    }
    let ns = DiskStore::<String, String>::builder()
        .namespace("a:b")
        .open();
    assert!(matches!(ns, Err(Error::InvalidNamespace { .. })));
}

#[test]
fn an_open_past_its_timeout_fails_and_leaves_the_directory_usable() {
    let dir = tempfile::tempdir().unwrap();
    let result = DiskDb::builder()
        .dir(dir.path())
        .open_timeout(Duration::from_nanos(1))
        .open();
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    DiskDb::builder()
        .open_timeout(crate::OPEN_WAIT)
        .dir(dir.path())
        .open()
        .unwrap();
}

/// pow#713: expired entries of *every* namespace are deleted at open, not only those of the
/// namespace the application happens to open first.
#[tokio::test]
async fn open_purges_expired_entries_of_every_namespace() {
    open_purges_expired_entries_of_every_namespace_in(false).await;
}

/// [`open_purges_expired_entries_of_every_namespace`] with a compact memory tier.
#[tokio::test]
async fn open_purges_expired_entries_of_every_namespace_compact() {
    open_purges_expired_entries_of_every_namespace_in(true).await;
}

async fn open_purges_expired_entries_of_every_namespace_in(compact: bool) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open_in(dir.path(), &time, compact);
    for ns in ["cache", "credentials", "sessions"] {
        let s: DiskStore<String, String> = db.store(ns).unwrap();
        s.put("short".into(), "x".into(), Some(Duration::from_secs(1)))
            .await
            .unwrap();
        s.put("long".into(), "y".into(), Some(HOUR)).await.unwrap();
    }
    drop(db);
    time.advance(Duration::from_secs(2));

    let db = open_in(dir.path(), &time, compact);
    let summary = db.load_summary();
    assert_eq!((summary.live, summary.purged), (3, 3));
    drop(db);
    let db = open_in(dir.path(), &time, compact);
    assert_eq!(
        db.load_summary().purged,
        0,
        "deleted from disk, not just hidden"
    );
    let creds: DiskStore<String, String> = db.store("credentials").unwrap();
    assert_eq!(creds.keys().await.unwrap(), ["long"]);
}

#[tokio::test]
async fn entries_that_expire_between_open_and_store_are_not_served() {
    entries_that_expire_between_open_and_store_are_not_served_in(false).await;
}

/// [`entries_that_expire_between_open_and_store_are_not_served`] with a compact memory tier.
#[tokio::test]
async fn entries_that_expire_between_open_and_store_are_not_served_compact() {
    entries_that_expire_between_open_and_store_are_not_served_in(true).await;
}

async fn entries_that_expire_between_open_and_store_are_not_served_in(compact: bool) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open_in(dir.path(), &time, compact);
    let s: DiskStore<String, u32> = db.store("n").unwrap();
    s.put("k".into(), 1, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    drop((s, db));
    let db = open_in(dir.path(), &time, compact);
    assert_eq!(db.load_summary().live, 1);
    time.advance(Duration::from_secs(6));
    let s: DiskStore<String, u32> = db.store("n").unwrap();
    assert_eq!(s.get(&"k".into()).await.unwrap(), None);
    db.flush().await.unwrap();
    drop((s, db));
    let db = open_in(dir.path(), &time, compact);
    assert_eq!(
        db.load_summary(),
        strata::OpenSummary {
            elapsed: db.load_summary().elapsed,
            ..Default::default()
        }
    );
}

/// A value whose type changed between releases is a counted miss, never a panic, and stays
/// on disk so the old release can still read it.
#[tokio::test]
async fn undecodable_values_are_counted_misses_and_kept() {
    undecodable_values_are_counted_misses_and_kept_in(false).await;
}

/// [`undecodable_values_are_counted_misses_and_kept`] with a compact memory tier.
#[tokio::test]
async fn undecodable_values_are_counted_misses_and_kept_compact() {
    undecodable_values_are_counted_misses_and_kept_in(true).await;
}

async fn undecodable_values_are_counted_misses_and_kept_in(compact: bool) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open_in(dir.path(), &time, compact);
    let s: DiskStore<String, String> = db.store("users").unwrap();
    s.put("ada".into(), "not a number".into(), None)
        .await
        .unwrap();
    s.put("bob".into(), "neither".into(), None).await.unwrap();
    drop((s, db));

    let db = open_in(dir.path(), &time, compact);
    let as_numbers: DiskStore<String, u64> = db.store("users").unwrap();
    assert_eq!(as_numbers.undecodable(), 2);
    assert_eq!(as_numbers.get(&"ada".into()).await.unwrap(), None);
    assert_eq!(as_numbers.count().await.unwrap(), 0);
    let other_types = db.store::<String, String>("users");
    assert!(matches!(other_types, Err(Error::InvalidConfig { .. })));
    // Deleting an undecodable key removes it from disk.
    as_numbers.delete(&"bob".into()).await.unwrap();
    drop((as_numbers, db));

    let db = open_in(dir.path(), &time, compact);
    let back: DiskStore<String, String> = db.store("users").unwrap();
    assert_eq!(back.undecodable(), 0);
    assert_eq!(
        back.get(&"ada".into()).await.unwrap().as_deref(),
        Some("not a number")
    );
    assert_eq!(back.get(&"bob".into()).await.unwrap(), None);
}

/// The warning about entries that no longer decode names the namespace, the count and the
/// reason, never a key: a key can be a session id, a bearer secret.
#[tokio::test]
async fn the_undecodable_warning_does_not_log_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open_in(dir.path(), &time, false);
    let s: DiskStore<String, String> = db.store("sessions").unwrap();
    s.put("secret-id-Xq9Zw".into(), "not a number".into(), None)
        .await
        .unwrap();
    drop((s, db));

    let (logs, capture) = support::log_capture::start();
    let db = open_in(dir.path(), &time, false);
    let as_numbers: DiskStore<String, u64> = db.store("sessions").unwrap();
    drop(capture);
    assert_eq!(as_numbers.undecodable(), 1);
    let text = logs.text();
    assert!(text.contains("do not decode"), "no warning logged: {text}");
    assert!(text.contains("sessions"), "the namespace is named: {text}");
    assert!(!text.contains("Xq9Zw"), "the key reached the log: {text}");
}

/// Garbage in the middle of a stored value (not a type change: bytes that are no encoding at
/// all) is a counted miss at load, never a panic, and the other entries load.
#[tokio::test]
async fn a_value_garbled_in_the_middle_is_a_counted_miss() {
    a_value_garbled_in_the_middle_is_a_counted_miss_in(false).await;
}

/// [`a_value_garbled_in_the_middle_is_a_counted_miss`] with a compact memory tier.
#[tokio::test]
async fn a_value_garbled_in_the_middle_is_a_counted_miss_compact() {
    a_value_garbled_in_the_middle_is_a_counted_miss_in(true).await;
}

async fn a_value_garbled_in_the_middle_is_a_counted_miss_in(compact: bool) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open_in(dir.path(), &time, compact);
    let s: DiskStore<String, Vec<u32>> = db.store("lists").unwrap();
    s.put("bad".into(), (0..100).collect(), None).await.unwrap();
    s.put("good".into(), vec![7], None).await.unwrap();
    let mut bad = None;
    db.scan_raw(Some("lists"), &mut |raw| {
        if raw.key == b"bad" {
            bad = Some(raw);
        }
        Ok(())
    })
    .unwrap();
    drop((s, db));
    let mut bad = bad.unwrap();
    let middle = bad.value.len() / 2;
    // 0xc1 is the one byte MessagePack never uses.
    bad.value[middle - 2..middle + 2].fill(0xc1);
    // Written raw by a DiskDb where the namespace has no store open (`put_raw` refuses else).
    let db = open_in(dir.path(), &time, compact);
    db.put_raw(vec![bad]).await.unwrap();
    drop(db);

    let db = open_in(dir.path(), &time, compact);
    let s: DiskStore<String, Vec<u32>> = db.store("lists").unwrap();
    assert_eq!(s.undecodable(), 1);
    assert_eq!(s.get(&"bad".into()).await.unwrap(), None);
    assert_eq!(s.get(&"good".into()).await.unwrap(), Some(vec![7]));
}

/// Sessions live in the data directory: it is created `0700`, and once closed every directory
/// under it is `0700` and every file `0600`, whatever the process umask.
#[cfg(unix)]
#[test]
fn the_data_directory_and_its_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let time = ManualClock::new();
    let db = open(&dir, &time);
    assert_eq!(mode(&dir), 0o700, "while open");
    let s: DiskStore<String, String> = db.store("sessions").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(s.put("sid".into(), "ada".into(), None))
        .unwrap();
    db.compact().unwrap(); // tables written while open
                           // Off the runtime, so the drop returns once the close is done.
    drop((s, db));
    let mut checked = 0;
    for path in walk_all(&dir) {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked > 5, "{checked} entries checked");
}

/// Every file and directory under `dir`, `dir` included.
#[cfg(unix)]
fn walk_all(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_all(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn async_writes_are_on_disk_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = DiskDb::builder()
        .open_timeout(crate::OPEN_WAIT)
        .dir(dir.path())
        .clock(time.clock())
        .writes(strata::Writes::Async)
        .fsync_interval(Duration::from_millis(10))
        .open()
        .unwrap();
    let s: DiskStore<u64, u64> = db.store("counters").unwrap();
    s.put_many((0..1000).map(|i| (i, i * 2)).collect(), None)
        .await
        .unwrap();
    s.incr(&7, 1).await.unwrap();
    s.delete(&8).await.unwrap();
    db.flush().await.unwrap();
    drop((s, db));
    let db = open(dir.path(), &time);
    let s: DiskStore<u64, u64> = db.store("counters").unwrap();
    assert_eq!(s.count().await.unwrap(), 999);
    assert_eq!(s.get(&7).await.unwrap(), Some(15));
    assert_eq!(s.get(&8).await.unwrap(), None);
}

/// An async put applies itself to memory with the coarse time its deadline was worked out from
/// as now (no second clock read). With the coarse time 50 ms behind the exact one, a 30 ms TTL
/// is already over by the exact time when the put lands: it is never served, before or after
/// a restart; a 1 h TTL is served until the exact time reaches its deadline (set from the
/// coarse time: 50 ms early), never at it.
#[tokio::test]
async fn an_async_put_is_served_exactly_until_its_deadline_while_the_coarse_clock_lags() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    time.set_coarse_lag(Duration::from_millis(50));
    let db = DiskDb::builder()
        .open_timeout(crate::OPEN_WAIT)
        .dir(dir.path())
        .clock(time.clock())
        .writes(strata::Writes::Async)
        .open()
        .unwrap();
    let s: DiskStore<u64, u64> = db.store("ttl").unwrap();
    s.put(1, 10, Some(Duration::from_millis(30))).await.unwrap();
    s.put(2, 20, Some(HOUR)).await.unwrap();
    s.put(3, 30, None).await.unwrap();
    assert_eq!(s.get(&1).await.unwrap(), None, "over by the exact time");
    assert_eq!(s.get(&2).await.unwrap(), Some(20));
    time.advance(HOUR - Duration::from_millis(51));
    assert_eq!(
        s.get(&2).await.unwrap(),
        Some(20),
        "1 ms before its deadline"
    );
    time.advance(Duration::from_millis(1));
    assert_eq!(s.get(&2).await.unwrap(), None, "at its deadline");
    db.flush().await.unwrap();
    drop((s, db));
    let db = open(dir.path(), &time);
    let s: DiskStore<u64, u64> = db.store("ttl").unwrap();
    assert_eq!(s.get(&1).await.unwrap(), None);
    assert_eq!(s.get(&2).await.unwrap(), None);
    assert_eq!(s.get(&3).await.unwrap(), Some(30));
}

#[tokio::test]
async fn clear_reaches_the_disk_and_spares_other_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open(dir.path(), &time);
    let a: DiskStore<String, u8> = db.store("a").unwrap();
    let b = a
        .with_namespace(&strata::Namespace::new("b").unwrap())
        .unwrap();
    for i in 0..10u8 {
        a.put(format!("k{i}"), i, None).await.unwrap();
        b.put(format!("k{i}"), i, None).await.unwrap();
    }
    assert_eq!(a.clear().await.unwrap(), 10);
    drop((a, b, db));
    let db = open(dir.path(), &time);
    assert_eq!(db.load_summary().live, 10);
    assert_eq!(
        db.store::<String, u8>("b").unwrap().count().await.unwrap(),
        10
    );
}

// ---------------------------------------------------------------------------------------------
// Crash safety: a child process writes with sync acknowledgements and is killed with SIGKILL at
// random moments; every acknowledged write must be there after reopening, and nothing that is
// there may be half-written. The child is this test binary, re-executed with an env var and a
// filter selecting the hidden `crash_child` test; it reports on stdout.

mod crash {
    use std::{
        collections::HashMap,
        io::{BufRead, BufReader},
        process::{Command, Stdio},
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    use strata::{DiskDb, DiskStore, Store, Writes};

    const DIR_VAR: &str = "STRATA_CRASH_DIR";
    const ROUND_VAR: &str = "STRATA_CRASH_ROUND";
    const WRITERS: u64 = 4;

    /// The one value a key may ever hold: anything else on disk is a torn or foreign write.
    fn value_for(key: &str) -> String {
        let len = key
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % 700;
        format!("{key}|{}", "x".repeat(len as usize))
    }

    /// The child: writes and deletes forever with sync acknowledgements, until killed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "child process of the crash tests; run by them"]
    async fn crash_child() {
        let Some(dir) = std::env::var_os(DIR_VAR) else {
            return;
        };
        let round: u64 = std::env::var(ROUND_VAR).unwrap().parse().unwrap();
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir)
            .writes(Writes::Sync)
            .open()
            .unwrap();
        let store: DiskStore<String, String> = db.store("crash").unwrap();
        println!("\nready");
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0u64.. {
                        let key = format!("r{round}-w{w}-{n}");
                        store.put(key.clone(), value_for(&key), None).await.unwrap();
                        println!("put {key}");
                        if n % 3 == 2 {
                            let old = format!("r{round}-w{w}-{}", n - 1);
                            println!("try-del {old}");
                            store.delete(&old).await.unwrap();
                            println!("del {old}");
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[derive(Default)]
    struct Acks {
        put: Vec<String>,
        try_del: Vec<String>,
        del: Vec<String>,
    }

    /// Runs the child for `delay` of writing, SIGKILLs it, returns what it acknowledged.
    fn run_child(dir: &std::path::Path, round: u64, delay: Duration) -> Acks {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir)
            .env(ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.with_extension("child-stderr")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let acks = Arc::new(Mutex::new(Acks::default()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let acks = acks.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut a = acks.lock().unwrap();
                    match line.split_once(' ') {
                        Some(("put", k)) => a.put.push(k.to_string()),
                        Some(("try-del", k)) => a.try_del.push(k.to_string()),
                        Some(("del", k)) => a.del.push(k.to_string()),
                        _ if line.ends_with("ready") => {
                            let _ = ready_tx.send(());
                        }
                        _ => {}
                    }
                }
            })
        };
        if let Err(e) = ready_rx.recv_timeout(Duration::from_secs(60)) {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let stderr = std::fs::read_to_string(dir.with_extension("child-stderr"));
            panic!("round {round}: the child never opened the directory ({e}; {status}); its stderr:\n{}", stderr.unwrap_or_default());
        }
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        let _ = std::fs::remove_file(dir.with_extension("child-stderr"));
        Arc::try_unwrap(acks).ok().unwrap().into_inner().unwrap()
    }

    /// What must hold for every key the child ever touched: `Some(true)` present, `Some(false)`
    /// absent, `None` either (a delete was in flight).
    fn expectations(model: &mut HashMap<String, Option<bool>>, acks: &Acks) {
        for k in &acks.put {
            model.insert(k.clone(), Some(true));
        }
        for k in &acks.try_del {
            model.insert(k.clone(), None);
        }
        for k in &acks.del {
            model.insert(k.clone(), Some(false));
        }
    }

    async fn check(dir: &std::path::Path, model: &HashMap<String, Option<bool>>, round: u64) {
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir)
            .open()
            .unwrap();
        assert_eq!(db.load_summary().foreign, 0, "round {round}");
        let store: DiskStore<String, String> = db.store("crash").unwrap();
        assert_eq!(
            store.undecodable(),
            0,
            "round {round}: a half-written value"
        );
        for key in store.keys().await.unwrap() {
            let value = store.get(&key).await.unwrap().unwrap();
            assert_eq!(
                value,
                value_for(&key),
                "round {round}: torn value under {key}"
            );
        }
        for (key, expected) in model {
            let present = store.contains(key).await.unwrap();
            if let Some(expected) = expected {
                assert_eq!(
                    present, *expected,
                    "round {round}: acknowledged state of {key} lost"
                );
            }
        }
        // The next child opens the directory right away: release it first (a drop on the
        // runtime would close it in the background).
        drop(store);
        db.close().await;
    }

    pub fn rounds(rounds: u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = HashMap::new();
        let mut seed =
            0x9E37_79B9_7F4A_7C15u64 ^ u64::from(Instant::now().elapsed().subsec_nanos());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut acked = 0;
        for round in 0..rounds {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let delay = Duration::from_millis(1 + seed % 60);
            let acks = run_child(dir.path(), round, delay);
            acked += acks.put.len() + acks.del.len();
            expectations(&mut model, &acks);
            rt.block_on(check(dir.path(), &model, round));
        }
        eprintln!(
            "crash: {rounds} rounds, {acked} acknowledged writes checked, {} keys tracked",
            model.len()
        );
        assert!(
            acked > 0,
            "the child acknowledged nothing; the test tested nothing"
        );
    }

    #[test]
    fn acknowledged_writes_survive_sigkill() {
        rounds(20);
    }

    #[test]
    #[ignore = "soak: cargo test --test disk_store -- --ignored crash_soak"]
    fn crash_soak() {
        let n = std::env::var("STRATA_CRASH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(150);
        rounds(n);
    }

    /// Another process is refused with `DirLocked` while this one holds the directory.
    #[test]
    fn another_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir.path())
            .open()
            .unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::lock_probe_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("probe: locked"), "{stdout}");
        drop(db);
    }

    #[test]
    #[ignore = "child process of another_process_is_refused"]
    fn lock_probe_child() {
        let Some(dir) = std::env::var_os(DIR_VAR) else {
            return;
        };
        println!("probe: opening");
        match DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir)
            .open()
        {
            Err(strata::Error::DirLocked { .. }) => println!("probe: locked"),
            Ok(_) => println!("probe: opened"),
            other => println!("probe: {other:?}"),
        }
    }

    /// A close finishing in the background (the last handle dropped on a runtime thread) keeps
    /// the directory locked; another process that opens it meanwhile waits for the close, past
    /// the short grace for a busy lock, instead of failing with `DirLocked`.
    #[tokio::test]
    async fn another_process_waits_for_a_close_finishing_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let faults = strata::Faults::new();
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir.path())
            .faults(faults.clone())
            .open()
            .unwrap();
        faults.park_close();
        drop(db);
        assert!(faults.wait_parked(), "the close runs in the background");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::lock_probe_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let opening = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.ends_with("probe: opening"));
        assert!(opening);
        // Not a race: the child keeps trying at least this long, twice its grace for a lock
        // that is merely busy, before the close may finish.
        std::thread::sleep(Duration::from_millis(1000));
        faults.release();
        let report: Vec<String> = lines.map_while(Result::ok).collect();
        child.wait().unwrap();
        assert!(
            report.iter().any(|l| l.ends_with("probe: opened")),
            "{report:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Corruption.

mod corruption {
    use std::path::{Path, PathBuf};

    use strata::{DiskDb, DiskStore, Error, OnCorrupt, Store};

    /// Writes some entries and closes cleanly, so they sit in a table file. The close is
    /// awaited: a `DiskDb` dropped on a runtime closes in the background, and a test that
    /// corrupts a table while that close still writes it raced the writer (seen once: the
    /// truncated table was written again and opened fine).
    async fn populated(dir: &Path) {
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir)
            .open()
            .unwrap();
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        for i in 0..200 {
            s.put(format!("user-{i}"), format!("session data {i}"), None)
                .await
                .unwrap();
        }
        drop(s);
        db.close().await;
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files(&path));
            } else {
                out.push(path);
            }
        }
        out.sort();
        out
    }

    /// The table holding the `entries` keyspace's data (the largest table file).
    fn data_table(dir: &Path) -> PathBuf {
        let tables = files(dir)
            .into_iter()
            .filter(|p| p.parent().is_some_and(|d| d.ends_with("tables")));
        tables
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .expect("a table file")
    }

    fn assert_corrupt(result: strata::Result<DiskDb>, dir: &Path) {
        match result {
            Err(Error::Corrupt(e)) => {
                assert!(e.path.starts_with(dir), "{:?} is inside {dir:?}", e.path);
                assert!(!e.reason.is_empty());
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    async fn discard_starts_empty(dir: &Path) {
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir)
            .on_corrupt(OnCorrupt::Discard)
            .open()
            .unwrap();
        assert_eq!(db.load_summary().live, 0);
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        s.put("fresh".into(), "start".into(), None).await.unwrap();
        drop((s, db));
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir)
            .open()
            .unwrap();
        assert_eq!(db.load_summary().live, 1, "usable after the discard");
    }

    #[tokio::test]
    async fn truncated_table_is_corrupt_and_can_be_discarded() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let table = data_table(dir.path());
        let len = std::fs::metadata(&table).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&table)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert_corrupt(DiskDb::builder().dir(dir.path()).open(), dir.path());
        discard_starts_empty(dir.path()).await;
    }

    #[tokio::test]
    async fn garbled_table_is_corrupt_and_can_be_discarded() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let table = data_table(dir.path());
        let mut bytes = std::fs::read(&table).unwrap();
        let garbled = bytes.len() * 3 / 4;
        for b in &mut bytes[..garbled] {
            *b ^= 0x5A;
        }
        std::fs::write(&table, bytes).unwrap();
        assert_corrupt(DiskDb::builder().dir(dir.path()).open(), dir.path());
        discard_starts_empty(dir.path()).await;
    }
}

/// Entries that expire (never deleted one by one) and deleted entries do not grow the files
/// without bound: after writing and expiring ten times the live set, the tables hold about the
/// live set once the engine compacts, and the journal stays under its 64 MiB cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_deleted_entries_do_not_grow_the_files() {
    const LIVE: u32 = 1_000;
    const JOURNAL_CAP: u64 = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open(dir.path(), &time);
    let s: DiskStore<u32, String> = db.store("sessions").unwrap();
    // Incompressible-ish values, so compression cannot hide what is kept.
    let value = |i: u32| -> String {
        let mut x = u64::from(i) | 1;
        (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{x:016x}")
            })
            .collect()
    };
    s.put_many((0..LIVE).map(|i| (i, value(i))).collect(), None)
        .await
        .unwrap();
    let compact = |db: &DiskDb| {
        let db = db.clone();
        async move {
            tokio::task::spawn_blocking(move || db.compact())
                .await
                .unwrap()
        }
    };
    compact(&db).await.unwrap();
    let baseline = table_bytes(dir.path());
    for round in 0..10 {
        let batch: Vec<_> = (0..LIVE)
            .map(|i| (LIVE * (round + 1) + i, value(i + round)))
            .collect();
        s.put_many(batch, Some(Duration::from_secs(1)))
            .await
            .unwrap();
        for i in 0..LIVE / 10 {
            s.put(LIVE * 100 + i, value(i), None).await.unwrap();
            s.delete(&(LIVE * 100 + i)).await.unwrap();
        }
        time.advance(Duration::from_secs(2));
    }
    compact(&db).await.unwrap();
    assert_eq!(s.count().await.unwrap(), LIVE as usize);
    drop((s, db));
    // fjall deletes the tables a compaction replaced once no version refers to them; a reopen
    // is the point where that has certainly happened.
    let db = open(dir.path(), &time);
    let tables = table_bytes(dir.path());
    let total = db.disk_usage().unwrap();
    eprintln!("tables: live set {baseline} B, after 10x churn {tables} B; directory {total} B");
    assert!(
        tables <= baseline * 2,
        "tables grew from {baseline} to {tables} bytes for the same live set"
    );
    assert!(
        total <= tables + JOURNAL_CAP + (1 << 20),
        "{total} bytes on disk"
    );
    assert_eq!(db.load_summary().live, LIVE as usize);
    // fjall may replay expired puts from the journal; the load purge deletes them for good.
    drop(db);
    let db = open(dir.path(), &time);
    assert_eq!(
        (db.load_summary().live, db.load_summary().purged),
        (LIVE as usize, 0)
    );
}

/// Bytes of table files (everything but the journal).
fn table_bytes(dir: &Path) -> u64 {
    let tables = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "jnl"));
    tables.map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A damaged journal (issue 12): fjall recovers a journal by cutting it at the first bad batch,
// so the commits after the damage would vanish without a word. A child process acknowledges
// N sync commits and is killed with SIGKILL (no clean close: the data lives only in the
// journal); the test then garbles the journal's tail and reopens.

mod journal_damage {
    use std::{
        io::{BufRead, BufReader},
        path::{Path, PathBuf},
        process::{Command, Stdio},
    };

    use strata::{DiskDb, DiskStore, Error, Store, Writes};

    const DIR_VAR: &str = "STRATA_JOURNAL_DIR";
    const COMMITS: u64 = 50;

    #[tokio::test]
    #[ignore = "child process of the journal_damage tests; run by them"]
    async fn journal_child() {
        let Some(dir) = std::env::var_os(DIR_VAR) else {
            return;
        };
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir)
            .writes(Writes::Sync)
            .open()
            .unwrap();
        let store: DiskStore<u64, String> = db.store("ns").unwrap();
        for n in 0..COMMITS {
            store.put(n, format!("value {n}"), None).await.unwrap();
        }
        println!("done");
        std::thread::sleep(std::time::Duration::from_secs(600));
    }

    /// Runs the child until its N commits are acknowledged, then SIGKILLs it.
    fn write_and_kill(dir: &Path) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "journal_damage::journal_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(DIR_VAR, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let done = lines.map_while(Result::ok).any(|l| l == "done");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(done, "the child acknowledged its commits");
    }

    /// The journal written last (fjall numbers them).
    fn active_journal(dir: &Path) -> PathBuf {
        std::fs::read_dir(dir.join("fjall"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
            .max_by_key(|p| {
                let stem = p.file_stem().unwrap().to_str().unwrap();
                stem.parse::<u64>().unwrap()
            })
            .expect("a journal file")
    }

    /// Flips `n` written bytes of the journal ending `at` (a fraction) of the way through what
    /// was written (it is preallocated with zeros, so that ends at the last non-zero byte).
    fn garble(journal: &Path, at: f64, n: usize) {
        let mut bytes = std::fs::read(journal).unwrap();
        let written = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        let end = ((written as f64 * at) as usize).clamp(n, written);
        for b in &mut bytes[end - n..end] {
            *b ^= 0xA5;
        }
        std::fs::write(journal, bytes).unwrap();
    }

    fn assert_lost_commits(dir: &Path) -> (u64, u64) {
        match DiskDb::builder().dir(dir).open() {
            Err(Error::LostCommits(e)) => {
                let strata::LostCommitsError {
                    path,
                    acknowledged,
                    recovered,
                } = *e;
                assert_eq!(path, dir);
                assert!(recovered < acknowledged, "{recovered} < {acknowledged}");
                (recovered, acknowledged)
            }
            other => panic!("expected LostCommits, got {other:?}"),
        }
    }

    async fn values(db: &DiskDb) -> Vec<u64> {
        let store: DiskStore<u64, String> = db.store("ns").unwrap();
        let mut keys = store.keys().await.unwrap();
        keys.sort_unstable();
        keys
    }

    #[tokio::test]
    async fn a_clean_journal_after_sigkill_reopens_with_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        write_and_kill(dir.path());
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir.path())
            .open()
            .unwrap();
        assert_eq!(values(&db).await, (0..COMMITS).collect::<Vec<_>>());
        drop(db);
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir.path())
            .open()
            .unwrap();
        assert_eq!(db.load_summary().live, COMMITS as usize, "reopens again");
    }

    #[tokio::test]
    async fn a_garbled_journal_tail_is_lost_commits_never_fewer_entries() {
        let dir = tempfile::tempdir().unwrap();
        write_and_kill(dir.path());
        garble(&active_journal(dir.path()), 1.0, 16);
        assert_eq!(assert_lost_commits(dir.path()), (COMMITS - 1, COMMITS));
        // Refused again: a failed open changes nothing.
        let again = DiskDb::builder().dir(dir.path()).open();
        assert!(matches!(again, Err(Error::LostCommits { .. })), "{again:?}");
        // Accepting the loss opens with what survived; from then on it opens as usual.
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir.path())
            .accept_data_loss(true)
            .open()
            .unwrap();
        let kept = values(&db).await;
        assert!(kept.len() < COMMITS as usize, "{} survived", kept.len());
        assert_eq!(kept, (0..kept.len() as u64).collect::<Vec<_>>(), "a prefix");
        drop(db);
        let db = DiskDb::builder()
            .open_timeout(crate::OPEN_WAIT)
            .dir(dir.path())
            .open()
            .unwrap();
        assert_eq!(db.load_summary().live, kept.len());
    }

    /// Cuts the zeros fjall preallocates off the journal (recovery reads them as the end),
    /// so copies of the directory are small.
    fn trim_journal(journal: &Path) {
        let bytes = std::fs::read(journal).unwrap();
        let written = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        std::fs::write(journal, &bytes[..written]).unwrap();
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_dir(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }

    /// Damage anywhere in the journal: fjall either refuses the journal (a length that makes
    /// no sense: `Corrupt`) or cuts it at the damage (`LostCommits`); it never opens.
    #[tokio::test]
    async fn a_journal_garbled_anywhere_never_opens_with_fewer_entries() {
        let template = tempfile::tempdir().unwrap();
        write_and_kill(template.path());
        trim_journal(&active_journal(template.path()));
        let mut seen = (0, 0);
        for tenth in 1..=10 {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template.path(), dir.path());
            garble(&active_journal(dir.path()), f64::from(tenth) / 10.0, 8);
            match DiskDb::builder().dir(dir.path()).open() {
                Err(Error::LostCommits(e)) => {
                    assert!(e.recovered < COMMITS);
                    seen.0 += 1;
                }
                Err(Error::Corrupt(e)) => {
                    assert!(e.path.starts_with(dir.path()), "{:?}", e.path);
                    seen.1 += 1;
                }
                other => panic!("damage at {tenth}/10: expected an error, got {other:?}"),
            }
        }
        assert!(seen.0 > 0, "LostCommits {}, Corrupt {}", seen.0, seen.1);
    }
}

/// The compact memory tier (`compact_memory`): what it refuses, and its events.
mod compact {
    use strata::{EventKind, EvictionListener};

    use super::*;

    fn refused_option(result: strata::Result<DiskDb>) -> String {
        match result {
            Err(Error::InvalidConfig(e)) if e.option == "compact_memory" => e.reason,
            other => panic!("expected a compact_memory config error, got {other:?}"),
        }
    }

    #[test]
    fn the_builder_refuses_the_modes_that_track_entries_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let builder = || DiskDb::builder().dir(dir.path()).compact_memory(true);
        let refused = [
            ("memory_capacity", builder().memory_capacity(10).open()),
            ("max_capacity", builder().max_capacity(10).open()),
            ("max_weight", builder().max_weight(1 << 20).open()),
            ("time_to_idle", builder().time_to_idle(HOUR).open()),
        ];
        for (option, result) in refused {
            let reason = refused_option(result);
            assert!(reason.contains(option), "{option}: {reason}");
        }
        drop(builder().open().expect("alone it opens"));
    }

    /// A compact tier the builder asked for takes an eviction listener (the conformance suite's
    /// `disk_compact` listener cases check what it hears) but refuses idle expiry, saying what
    /// to do.
    #[tokio::test]
    async fn an_asked_for_compact_tier_refuses_idle_expiry_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let time = ManualClock::new();
        let db = open_in(dir.path(), &time, true);
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        let listener: EvictionListener<String, String> = std::sync::Arc::new(|_, _, _| {});
        s.install_eviction_listener(listener).unwrap();
        let err = s.with_time_to_idle(HOUR).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(e) if e.reason.contains("TTL")),
            "{err}"
        );
        s.put("still".into(), "works".into(), None).await.unwrap();
        assert_eq!(
            s.get(&"still".into()).await.unwrap().as_deref(),
            Some("works")
        );
    }

    /// The compact tier by default (no `compact_memory` call): `with_time_to_idle` swaps it for
    /// a default tier idling out, which keeps every entry with its TTL deadline and the
    /// installed eviction listener; the listener then hears the idle expiry with its value.
    #[tokio::test]
    async fn by_default_with_time_to_idle_swaps_in_an_idle_tier_keeping_entries_and_listener() {
        swaps_in_an_idle_tier_keeping_entries_and_listener(None).await;
    }

    /// The same swap from the other tier (`compact_memory(false)`): the listener hears each
    /// expiry once, never again from the tier the swap left behind.
    #[tokio::test]
    async fn with_time_to_idle_on_the_other_tier_keeps_entries_and_listener_and_hears_each_expiry_once(
    ) {
        swaps_in_an_idle_tier_keeping_entries_and_listener(Some(false)).await;
    }

    async fn swaps_in_an_idle_tier_keeping_entries_and_listener(compact: Option<bool>) {
        let dir = tempfile::tempdir().unwrap();
        let time = ManualClock::new();
        let reopen = |time: &ManualClock| match compact {
            None => open(dir.path(), time),
            Some(compact) => open_in(dir.path(), time, compact),
        };
        let db = reopen(&time);
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        let heard = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = heard.clone();
        let listener: EvictionListener<String, String> =
            std::sync::Arc::new(move |k, v, cause| sink.lock().push((k, v, cause)));
        s.install_eviction_listener(listener).unwrap();
        s.put("short".into(), "1".into(), Some(Duration::from_secs(60)))
            .await
            .unwrap();
        s.put("idle".into(), "2".into(), None).await.unwrap();
        s.put("read".into(), "3".into(), None).await.unwrap();
        let stale = s;
        let s = stale.with_time_to_idle(HOUR).unwrap();
        assert_eq!(s.count().await.unwrap(), 3, "every entry kept");
        assert!(
            matches!(s.ttl(&"short".into()).await.unwrap(), Some(strata::Expiry::In(d)) if d <= Duration::from_secs(60)),
            "the TTL deadline kept"
        );
        time.advance(Duration::from_secs(61));
        assert_eq!(s.get(&"short".into()).await.unwrap(), None);
        // The handle the swap was called on is stale but still held: a read through it is
        // refused (`a_handle_left_stale_by_with_time_to_idle_refuses_every_call`), and the
        // tier it held is empty, so its sweeper hands nothing to the listener twice.
        assert!(matches!(
            stale.get(&"short".into()).await,
            Err(Error::Closed { .. })
        ));
        drop(stale);
        time.advance(HOUR - Duration::from_secs(120));
        assert_eq!(s.get(&"read".into()).await.unwrap().as_deref(), Some("3"));
        time.advance(Duration::from_secs(120));
        assert_eq!(s.get(&"idle".into()).await.unwrap(), None, "idled out");
        assert_eq!(s.get(&"read".into()).await.unwrap().as_deref(), Some("3"));
        // The tier's sweeper (woken by the advances) may be delivering them on its thread; the
        // timeout only bounds a failure.
        let waited = std::time::Instant::now();
        while heard.lock().len() < 2 {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "{:?}",
                heard.lock()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut got = heard.lock().clone();
        got.sort();
        use strata::RemovalCause::Expired;
        assert_eq!(
            got,
            [
                ("idle".to_string(), "2".to_string(), Expired),
                ("short".to_string(), "1".to_string(), Expired),
            ]
        );
        db.settle_idle().await.unwrap();
        drop((s, db));
        let db = reopen(&time);
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        assert_eq!(
            s.keys().await.unwrap(),
            ["read".to_string()],
            "the idled-out entry is gone on disk too"
        );
    }

    /// `with_time_to_idle` rebuilds the namespace's memory tier; the handle it was called on
    /// then goes stale. A write through it used to land on disk and in the replaced tier:
    /// invisible to the new handle, back at the next open. Every call through a stale handle
    /// is now a typed error naming what to use, and nothing reaches memory or the disk. Both
    /// tiers it can be swapped from.
    #[tokio::test]
    async fn a_handle_left_stale_by_with_time_to_idle_refuses_every_call() {
        for compact in [None, Some(false)] {
            stale_handle_refuses(compact).await;
        }
    }

    async fn stale_handle_refuses(compact: Option<bool>) {
        let dir = tempfile::tempdir().unwrap();
        let time = ManualClock::new();
        let reopen = |time: &ManualClock| match compact {
            None => open(dir.path(), time),
            Some(compact) => open_in(dir.path(), time, compact),
        };
        let db = reopen(&time);
        let stale: DiskStore<String, String> = db.store("sessions").unwrap();
        stale.put("kept".into(), "1".into(), None).await.unwrap();
        let s = stale.with_time_to_idle(HOUR).unwrap();
        let refused = |r: Result<(), Error>, what: &str| match r {
            Err(Error::Closed { reason }) => {
                assert!(reason.contains("with_time_to_idle"), "{what}: {reason}")
            }
            other => panic!("{what} through the stale handle ({compact:?}): {other:?}"),
        };
        let late = stale.put("late".into(), "2".into(), None).await;
        refused(late, "put");
        refused(stale.get(&"kept".into()).await.map(drop), "get");
        refused(stale.delete(&"kept".into()).await.map(drop), "delete");
        refused(stale.count().await.map(drop), "count");
        refused(stale.keys().await.map(drop), "keys");
        assert!(stale.get_now(&"kept".into()).is_some_and(|r| r.is_err()));
        assert_eq!(s.get(&"late".into()).await.unwrap(), None);
        assert_eq!(s.get(&"kept".into()).await.unwrap().as_deref(), Some("1"));
        drop((stale, s, db));
        let db = reopen(&time);
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        assert_eq!(s.keys().await.unwrap(), ["kept".to_string()], "{compact:?}");
    }

    #[tokio::test]
    async fn events_and_stats_are_those_of_the_default_tier() {
        for compact in [false, true] {
            events_and_stats_in(compact).await;
        }
    }

    async fn events_and_stats_in(compact: bool) {
        let dir = tempfile::tempdir().unwrap();
        let time = ManualClock::new();
        let db = open_in(dir.path(), &time, compact);
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        let mut events = s.subscribe();
        s.put("a".into(), "1".into(), None).await.unwrap();
        s.put("a".into(), "2".into(), None).await.unwrap();
        assert!(s.delete(&"a".into()).await.unwrap());
        s.put("b".into(), "1".into(), Some(Duration::from_secs(1)))
            .await
            .unwrap();
        time.advance(Duration::from_secs(2));
        assert_eq!(s.get(&"b".into()).await.unwrap(), None);
        // The default tier's sweeper may announce `b`'s expiry from its thread: wait for it.
        let mut kinds = Vec::new();
        while kinds.len() < 5 {
            let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
            let event = next
                .expect("every event arrives")
                .expect("the store is alive");
            kinds.push((event.key, event.kind));
        }
        assert_eq!(events.try_recv(), None, "no other event");
        let want = [
            ("a", EventKind::Put),
            ("a", EventKind::Replace),
            ("a", EventKind::Delete),
            ("b", EventKind::Put),
            ("b", EventKind::Expired),
        ];
        let want: Vec<(String, EventKind)> =
            want.iter().map(|(k, e)| (k.to_string(), *e)).collect();
        assert_eq!(kinds, want, "compact: {compact}");
        let stats = s.stats();
        let counts = (stats.writes, stats.updates, stats.deletes);
        assert_eq!(counts, (2, 1, 1), "compact: {compact}");
        let counts = (stats.expirations, stats.misses);
        assert_eq!(counts, (1, 1), "compact: {compact}");
    }

    /// Expired entries nobody reads or writes leave the compact tier: the clock moves past
    /// their deadlines and the tier's sweeper removes them, sending their `Expired` events,
    /// in both tiers alike.
    #[tokio::test]
    async fn the_sweeper_removes_expired_entries_nobody_touches() {
        for compact in [false, true] {
            the_sweeper_removes_expired_entries_in(compact).await;
        }
    }

    async fn the_sweeper_removes_expired_entries_in(compact: bool) {
        let dir = tempfile::tempdir().unwrap();
        let time = ManualClock::new();
        let db = open_in(dir.path(), &time, compact);
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        let mut events = s.subscribe();
        for i in 0..20 {
            let ttl = Duration::from_secs(if i < 15 { 1 } else { 3600 });
            s.put(format!("k{i}"), "v".into(), Some(ttl)).await.unwrap();
        }
        time.advance(Duration::from_secs(2));
        let mut expired = Vec::new();
        while expired.len() < 15 {
            let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
            let event = next.expect("the sweeper expires them").expect("alive");
            if event.kind == EventKind::Expired {
                expired.push(event.key);
            }
        }
        expired.sort();
        let mut want: Vec<String> = (0..15).map(|i| format!("k{i}")).collect();
        want.sort();
        assert_eq!(expired, want, "compact: {compact}");
        assert_eq!(s.stats().expirations, 15, "compact: {compact}");
        assert_eq!(s.stats().hits + s.stats().misses, 0, "no read found them");
        assert_eq!(s.purge_expired(), 0, "nothing left to purge");
        assert_eq!(s.count().await.unwrap(), 5);
    }

    /// A key stored in a form its type re-encodes differently (`007` for the u64 7) is found
    /// under the key it decodes as.
    #[tokio::test]
    async fn a_key_is_found_under_its_decoded_form() {
        let dir = tempfile::tempdir().unwrap();
        let time = ManualClock::new();
        let db = open_in(dir.path(), &time, true);
        let s: DiskStore<u64, String> = db.store("n").unwrap();
        s.put(7, "seven".into(), None).await.unwrap();
        let mut raw = Vec::new();
        db.scan_raw(Some("n"), &mut |r| {
            raw.push(r);
            Ok(())
        })
        .unwrap();
        assert!(s.delete(&7).await.unwrap());
        drop((s, db));
        raw[0].key = b"007".to_vec();
        let db = open_in(dir.path(), &time, true);
        db.put_raw(raw).await.unwrap();
        drop(db);
        for compact in [false, true] {
            let db = open_in(dir.path(), &time, compact);
            let s: DiskStore<u64, String> = db.store("n").unwrap();
            assert_eq!(s.count().await.unwrap(), 1, "only `007` is on disk");
            assert_eq!(
                s.get(&7).await.unwrap().as_deref(),
                Some("seven"),
                "{compact}"
            );
        }
        // Both `007` and `7` on disk: one entry, the later record in key order (`7`) in
        // both tiers (a load fills the compact tier's tables with one probe per key then).
        let db = open_in(dir.path(), &time, false);
        db.put_raw(vec![strata::RawRecord {
            namespace: "n".into(),
            key: b"7".to_vec(),
            ..raw_seven(&db)
        }])
        .await
        .unwrap();
        drop(db);
        for compact in [false, true] {
            let db = open_in(dir.path(), &time, compact);
            let s: DiskStore<u64, String> = db.store("n").unwrap();
            assert_eq!(s.count().await.unwrap(), 1, "{compact}");
            assert_eq!(s.keys().await.unwrap(), [7], "{compact}");
            assert_eq!(
                s.get(&7).await.unwrap().as_deref(),
                Some("seven"),
                "{compact}"
            );
        }
    }

    /// The raw record of `007` in namespace `n`.
    fn raw_seven(db: &DiskDb) -> strata::RawRecord {
        let mut raw = Vec::new();
        db.scan_raw(Some("n"), &mut |r| {
            raw.push(r);
            Ok(())
        })
        .unwrap();
        raw.remove(0)
    }

    /// An entry already expired when `with_time_to_idle` swaps the tier (the sweeper busy in
    /// the listener on another entry, so nothing removed it yet) is still heard, expired, once:
    /// the swap copied only live entries and then emptied the old tier, and the entry vanished
    /// unheard. Both tiers (the default compact one, and `compact_memory(false)`).
    #[test]
    fn an_entry_expired_at_the_swap_is_still_heard_by_the_listener() {
        for compact in [None, Some(false)] {
            expired_at_the_swap_is_heard(compact);
        }
    }

    fn expired_at_the_swap_is_heard(compact: Option<bool>) {
        use std::sync::{mpsc, Arc, Barrier};
        let dir = tempfile::tempdir().unwrap();
        let time = ManualClock::new();
        let db = match compact {
            None => open(dir.path(), &time),
            Some(compact) => open_in(dir.path(), &time, compact),
        };
        let s: DiskStore<String, String> = db.store("sessions").unwrap();
        let heard = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let gate = Arc::new(Barrier::new(2));
        let (parked_tx, parked) = mpsc::channel();
        let parked_tx = parking_lot::Mutex::new(parked_tx);
        let (sink, in_listener) = (heard.clone(), gate.clone());
        // The listener holds the sweeper on `gate`'s expiry until the test lets it go.
        let listener: EvictionListener<String, String> = Arc::new(move |k, v, cause| {
            let is_gate = k == "gate";
            sink.lock().push((k, v, cause));
            if is_gate {
                let _ = parked_tx.lock().send(());
                in_listener.wait();
            }
        });
        s.install_eviction_listener(listener).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            s.put("gate".into(), "g".into(), Some(Duration::from_secs(1)))
                .await
                .unwrap();
            s.put("short".into(), "1".into(), Some(Duration::from_secs(2)))
                .await
                .unwrap();
            s.put("keep".into(), "k".into(), None).await.unwrap();
        });
        time.advance(Duration::from_millis(1500));
        parked
            .recv_timeout(Duration::from_secs(60))
            .expect("the sweeper delivering gate's expiry, held in the listener");
        time.advance(Duration::from_secs(2));
        let swapped = s.with_time_to_idle(HOUR).unwrap();
        drop(s);
        gate.wait();
        // Delivered by the sweeper once it leaves the listener; the wait only bounds a failure.
        let waited = std::time::Instant::now();
        while !heard.lock().iter().any(|(k, _, _)| k == "short") {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "compact {compact:?}: never heard short; heard {:?}",
                heard.lock()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let got = heard.lock().clone();
        let shorts = got.iter().filter(|(k, _, _)| k == "short").count();
        assert_eq!(shorts, 1, "compact {compact:?}: {got:?}");
        assert!(
            got.contains(&("short".into(), "1".into(), strata::RemovalCause::Expired)),
            "{got:?}"
        );
        assert_eq!(rt.block_on(swapped.get(&"short".into())).unwrap(), None);
        assert_eq!(
            rt.block_on(swapped.get(&"keep".into())).unwrap().as_deref(),
            Some("k")
        );
    }
}
