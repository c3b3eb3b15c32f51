//! DiskStore beyond the conformance suite: restarts, the directory lock, pow#713 purging,
//! corruption, undecodable values, compaction and kill -9 crash safety.
#![cfg(feature = "disk")]

use std::{path::Path, time::Duration};

use strata::{DiskDb, DiskStore, Error, ManualClock, Store};

const HOUR: Duration = Duration::from_secs(3600);

fn open(dir: &Path, clock: &ManualClock) -> DiskDb {
    DiskDb::builder()
        .dir(dir)
        .clock(clock.clock())
        .open()
        .expect("open the data directory")
}

#[tokio::test]
async fn entries_survive_a_restart_with_their_ttls() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = open(dir.path(), &time);
    let s: DiskStore<String, String> = db.store("sessions").unwrap();
    s.put("a".into(), "1".into(), Some(HOUR)).await.unwrap();
    s.put("b".into(), "2".into(), None).await.unwrap();
    s.put("gone".into(), "x".into(), None).await.unwrap();
    assert!(s.delete(&"gone".into()).await.unwrap());
    drop((s, db));

    time.advance(Duration::from_secs(600));
    let db = open(dir.path(), &time);
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
    assert_eq!(s.get(&"a".into()).await.unwrap(), None, "restored deadline fires");
}
