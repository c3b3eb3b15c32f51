//! A DiskStore data directory in on-disk format 1, written as strata's format-1 engine wrote
//! it (before one keyspace per namespace): for the migration and CLI tests.

use std::path::Path;

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use strata::RawRecord;

/// A stored record as the engine keeps it: key bytes, value bytes.
pub type Record = (Vec<u8>, Vec<u8>);

/// Writes a format-1 directory at `dir` holding `live` and `other`, as strata's format-1
/// engine did (one commit per 1000 records, the commit sequence in the same batch).
pub fn write_format_1(dir: &Path, live: &[RawRecord], other: &[Record]) {
    let db = Database::builder(dir.join("fjall"))
        .max_journaling_size(64 * 1024 * 1024)
        .open()
        .unwrap();
    let entries = db
        .keyspace("entries", KeyspaceCreateOptions::default)
        .unwrap();
    let meta = db
        .keyspace("strata-meta", KeyspaceCreateOptions::default)
        .unwrap();
    let mut records: Vec<Record> = live
        .iter()
        .map(|raw| {
            let key = [raw.namespace.as_bytes(), b":", &raw.key].concat();
            let mut rec = raw.value.clone();
            rec.extend_from_slice(&raw.deadline.unwrap_or(0).to_be_bytes());
            (key, rec)
        })
        .collect();
    records.extend(other.iter().cloned());
    for (seq, chunk) in records.chunks(1000).enumerate() {
        let mut batch = db.batch();
        batch.insert(&meta, b"commit-seq", (seq as u64 + 1).to_be_bytes());
        for (key, rec) in chunk {
            batch.insert(&entries, key.as_slice(), rec.as_slice());
        }
        batch.commit().unwrap();
    }
    db.persist(PersistMode::SyncAll).unwrap();
}
