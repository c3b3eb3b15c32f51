//! The embedded engine behind a private trait, and its fjall implementation.
//!
//! Everything above this file speaks in [`Op`]s and raw bytes; only this file knows fjall. The
//! engine choice (fjall over redb) was measured, see the module docs of `disk`. Errors met while
//! opening or scanning are classified here: I/O trouble with the directory is
//! [`Error::DataDir`], anything the engine cannot make sense of is [`Error::Corrupt`].

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use fjall::{
    compaction::filter::{CompactionFilter, Context, Factory, ItemAccessor, Verdict},
    Database, Keyspace, KeyspaceCreateOptions, PersistMode,
};

use super::record;
use crate::{
    error::{Error, Result},
    time::Clock,
};

/// Name of the single keyspace that holds every namespace (`namespace:key` → record).
const KEYSPACE: &str = "entries";

/// The journal's cap: past it fjall flushes the write buffers and recycles old journals, so the
/// journal never holds more than this (fjall's minimum; its default is 512 MiB).
pub(crate) const MAX_JOURNAL: u64 = 64 * 1024 * 1024;

/// One change to the engine, applied in queue order.
#[derive(Debug)]
pub(crate) enum Op {
    /// Writes `record` under `key`.
    Put { key: Vec<u8>, record: Vec<u8> },
    /// Removes `key`.
    Delete { key: Vec<u8> },
    /// Removes every key starting with `prefix` (a namespace's `clear`).
    DeletePrefix { prefix: Vec<u8> },
}

/// Called with every `(key, record)` a scan visits; an error stops the scan.
pub(crate) type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// What strata needs from an embedded engine.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Visits every `(key, record)` starting with `prefix`, in key order.
    fn scan(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()>;
    /// Applies `ops` atomically; durable against a process crash when it returns.
    fn commit(&self, ops: &[Op]) -> std::result::Result<(), String>;
    /// Makes everything committed durable against power loss (fsync).
    fn sync(&self) -> std::result::Result<(), String>;
    /// Flushes the write buffer to tables and compacts them, dropping expired records.
    fn compact(&self) -> Result<()>;
    /// Called once on a clean close: leaves the data in tables so the next open is a scan, not
    /// a journal replay.
    fn close(&self);
}

/// The fjall engine: one database in `<dir>/fjall`, one keyspace.
pub(crate) struct FjallEngine {
    path: PathBuf,
    db: Database,
    entries: Keyspace,
}

impl FjallEngine {
    /// Opens (or creates) the database at `path`; expired records are dropped by compaction.
    pub(crate) fn open(path: &Path, clock: Clock) -> Result<Self> {
        let classify = |e| classify(path, e);
        let filter: Arc<dyn Factory> = Arc::new(ExpiredFilter {
            clock: std::panic::AssertUnwindSafe(clock),
        });
        let db = Database::builder(path)
            .max_journaling_size(MAX_JOURNAL)
            .with_compaction_filter_factories(Arc::new(move |_| Some(filter.clone())))
            .open()
            .map_err(classify)?;
        let entries = db
            .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(classify)?;
        Ok(FjallEngine {
            path: path.to_owned(),
            db,
            entries,
        })
    }

    fn apply(&self, ops: &[Op]) -> fjall::Result<()> {
        let mut batch = self.batch();
        for op in ops {
            match op {
                Op::Put { key, record } => {
                    batch.insert(&self.entries, key.as_slice(), record.as_slice())
                }
                Op::Delete { key } => batch.remove(&self.entries, key.as_slice()),
                Op::DeletePrefix { prefix } => {
                    // Earlier ops of this batch are not visible to a scan until committed.
                    std::mem::replace(&mut batch, self.batch()).commit()?;
                    for kv in self.entries.prefix(prefix) {
                        batch.remove(&self.entries, kv.key()?);
                    }
                }
            }
        }
        batch.commit()
    }

    /// A batch that reaches the OS when committed (fjall's batches default to its own buffer).
    fn batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch().durability(Some(PersistMode::Buffer))
    }
}

impl Engine for FjallEngine {
    fn scan(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        for kv in self.entries.prefix(prefix) {
            let (key, record) = kv.into_inner().map_err(|e| classify(&self.path, e))?;
            visit(&key, &record)?;
        }
        Ok(())
    }

    fn commit(&self, ops: &[Op]) -> std::result::Result<(), String> {
        self.apply(ops).map_err(|e| e.to_string())
    }

    fn sync(&self) -> std::result::Result<(), String> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(|e| e.to_string())
    }

    fn compact(&self) -> Result<()> {
        let fail = |e: fjall::Error| Error::backend("compacting the disk store", e);
        self.flush(Duration::from_secs(30))
            .map_err(|e| Error::backend("flushing the disk store", e))?;
        self.entries.major_compact().map_err(fail)
    }

    fn close(&self) {
        if let Err(e) = self.flush(CLOSE_FLUSH_WAIT) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not flush the disk store on close; the next open replays its journal");
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not fsync the disk store on close");
        }
    }
}

/// How long a clean close waits for the write buffer to reach tables.
const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(2);

impl FjallEngine {
    /// Seals the write buffer and waits up to `wait` for fjall to write it out as a table.
    fn flush(&self, wait: Duration) -> std::result::Result<(), String> {
        self.entries.rotate_memtable().map_err(|e| e.to_string())?;
        let started = Instant::now();
        while self.entries.sealed_memtable_count() > 0 {
            if started.elapsed() > wait {
                return Err(format!("the write buffer was not flushed within {wait:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// Turns an engine error met while opening or loading into what the user can act on.
fn classify(path: &Path, e: fjall::Error) -> Error {
    match e {
        fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => io_error(path, io),
        fjall::Error::Locked => Error::DirLocked {
            path: path.to_owned(),
        },
        fjall::Error::Poisoned => Error::backend("opening the disk store", e),
        other => Error::Corrupt {
            path: path.to_owned(),
            reason: format!("{other:?}"),
        },
    }
}

/// Directory trouble is [`Error::DataDir`]; bytes that end early or make no sense are corrupt.
fn io_error(path: &Path, io: std::io::Error) -> Error {
    match io.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::InvalidData | ErrorKind::InvalidInput => {
            Error::Corrupt {
                path: path.to_owned(),
                reason: io.to_string(),
            }
        }
        _ => Error::DataDir {
            path: path.to_owned(),
            source: io,
        },
    }
}

/// Drops records whose deadline has passed when fjall compacts the tables holding them.
///
/// `Verdict::Remove` leaves a tombstone, so an older version of the key in a lower level can
/// never come back; the tombstone itself is dropped when it reaches the last level.
struct ExpiredFilter {
    // Only `now_ms` is called on it, which cannot leave it half-updated by a panic.
    clock: std::panic::AssertUnwindSafe<Clock>,
}

impl Factory for ExpiredFilter {
    fn name(&self) -> &str {
        "strata-expired"
    }

    fn make_filter(&self, _: &Context) -> Box<dyn CompactionFilter> {
        Box::new(ExpiredRun {
            now: self.clock.now_ms(),
        })
    }
}

struct ExpiredRun {
    now: u64,
}

impl CompactionFilter for ExpiredRun {
    fn filter_item(
        &mut self,
        item: ItemAccessor<'_>,
        _: &Context,
    ) -> fjall::compaction::filter::CompactionFilterResult {
        let value = item.value()?;
        Ok(match record::deadline(&value) {
            Some(d) if d != 0 && d <= self.now => Verdict::Remove,
            _ => Verdict::Keep,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_flushes_the_write_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(&dir.path().join("fjall"), Clock::system()).unwrap();
        engine.scan(b"", &mut |_, _| Ok(())).unwrap();
        let record = record::encode(&1u8, 0, crate::Format::MessagePack, &"k").unwrap();
        engine
            .commit(&[Op::Put {
                key: b"ns:k".to_vec(),
                record,
            }])
            .unwrap();
        engine.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(engine.entries.table_count(), 1);
    }
}
