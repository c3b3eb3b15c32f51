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
/// Name of the keyspace that only ever holds padding, written on close to seal the journal
/// (see [`FjallEngine::retire_journal`]); cleared right after.
const PAD_KEYSPACE: &str = "journal-pad";
/// fjall's flush worker seals the active journal (and deletes it once its contents are in
/// tables) when the journal's write position is past this many bytes; below it, the journal
/// is replayed in full at every open, flushed or not.
const JOURNAL_SEALED_PAST: u64 = 64_000_000;
/// A clean close retires the journal when it holds at least this much: replaying less is
/// cheaper than padding it (about 4 ms per MB replayed).
const RETIRE_JOURNAL_ABOVE: u64 = 4 << 20;
/// One padding value: random bytes so fjall's journal compression cannot shrink them.
const PAD_CHUNK: usize = 1 << 20;

/// The journal's cap: past it fjall flushes the write buffers and recycles old journals, so the
/// journal never holds more than this (fjall's minimum; its default is 512 MiB).
pub(crate) const MAX_JOURNAL: u64 = 64 * 1024 * 1024;

/// One change to the engine, applied in queue order.
#[derive(Debug)]
pub(crate) enum Op {
    /// Writes a record: `buf` is the key (`namespace:key`) then the record, `key_len` where
    /// the key ends (one allocation per write).
    Put { buf: Vec<u8>, key_len: usize },
    /// Removes `key`.
    Delete { key: Vec<u8> },
    /// Removes every key starting with `prefix` (a namespace's `clear`).
    DeletePrefix { prefix: Vec<u8> },
}

impl Op {
    /// A put of `record` under `key`.
    #[cfg(test)]
    pub(crate) fn put(key: &[u8], record: &[u8]) -> Op {
        Op::Put {
            buf: [key, record].concat(),
            key_len: key.len(),
        }
    }

    /// The key an op writes (a prefix for a prefix delete).
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Op::Put { buf, key_len } => &buf[..*key_len],
            Op::Delete { key } => key,
            Op::DeletePrefix { prefix } => prefix,
        }
    }
}

/// Why a commit failed.
#[derive(Clone, Debug)]
pub(crate) struct CommitError {
    /// The engine's message.
    pub reason: String,
    /// True if the engine refuses every later commit too (fjall poisons its journal when a
    /// journal write fails): the store must stop accepting work rather than half-accept it.
    pub fatal: bool,
}

/// Called with every `(key, record)` a scan visits; an error stops the scan.
pub(crate) type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// What strata needs from an embedded engine.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Visits every `(key, record)` starting with `prefix`, in key order.
    fn scan(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()>;
    /// Applies `ops` atomically (all or none); durable against a process crash when it returns.
    fn commit(&self, ops: &[Op]) -> std::result::Result<(), CommitError>;
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
    pad: Keyspace,
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
        let pad = db
            .keyspace(PAD_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(classify)?;
        if !pad.is_empty().map_err(classify)? {
            // A crash interrupted a close while it was padding the journal.
            pad.clear().map_err(classify)?;
        }
        Ok(FjallEngine {
            path: path.to_owned(),
            db,
            entries,
            pad,
        })
    }

    /// Applies `ops` as ONE fjall batch, so a commit is all or nothing: a prefix delete becomes
    /// removes of the committed keys under the prefix plus of this batch's earlier keys under
    /// it (the writer thread is the only committer, so the scan sees everything before `ops`).
    fn apply(&self, ops: &[Op]) -> fjall::Result<()> {
        let mut on_disk: Vec<Vec<fjall::Slice>> = Vec::new();
        for op in ops {
            if let Op::DeletePrefix { prefix } = op {
                let keys = self.entries.prefix(prefix).map(|kv| kv.key());
                on_disk.push(keys.collect::<fjall::Result<_>>()?);
            }
        }
        let mut on_disk = on_disk.iter();
        let mut run: Vec<(&[u8], Option<&[u8]>)> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { buf, key_len } => {
                    let (key, record) = buf.split_at(*key_len);
                    run.push((key, Some(record)));
                }
                Op::Delete { key } => run.push((key, None)),
                Op::DeletePrefix { prefix } => {
                    let earlier: Vec<&[u8]> = run
                        .iter()
                        .filter(|(k, _)| k.starts_with(prefix))
                        .map(|(k, _)| *k)
                        .collect();
                    run.extend(earlier.into_iter().map(|k| (k, None)));
                    let committed = on_disk.next().into_iter().flatten();
                    run.extend(committed.map(|k| (k.as_ref(), None)));
                }
            }
        }
        self.commit_run(run)
    }

    /// Commits `run` as one batch.
    fn commit_run(&self, mut run: Vec<(&[u8], Option<&[u8]>)>) -> fjall::Result<()> {
        let mut batch = self.batch();
        // Consecutive inserts into the write buffer (a skip list) walk the same, cached,
        // nodes, which makes a big batch several times faster than random order. The sort is
        // stable and a batch is applied as one sequence number, so the last op on a key wins.
        run.sort_by(|a, b| a.0.cmp(b.0));
        for (key, record) in run {
            match record {
                Some(record) => batch.insert(&self.entries, key, record),
                None => batch.remove(&self.entries, key),
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

    fn commit(&self, ops: &[Op]) -> std::result::Result<(), CommitError> {
        self.apply(ops).map_err(|e| CommitError {
            reason: e.to_string(),
            // fjall poisons itself when a journal write or persist fails (an I/O error): every
            // later commit is `Poisoned` until the database is reopened.
            fatal: matches!(e, fjall::Error::Poisoned | fjall::Error::Io(_)),
        })
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
        let flushed = self
            .flush(CLOSE_FLUSH_WAIT)
            .and_then(|()| self.retire_journal(CLOSE_FLUSH_WAIT));
        if let Err(e) = flushed {
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

impl FjallEngine {
    /// Leaves an empty active journal, so the next open has nothing to replay.
    ///
    /// fjall replays the whole active journal at open (skipping what is already in tables, but
    /// reading and decoding all of it), and only seals it once it is past
    /// [`JOURNAL_SEALED_PAST`]. With the data already flushed to tables, padding the journal
    /// past that mark and flushing makes fjall seal it, see that its contents are in tables
    /// and delete it. A crash at any point leaves a journal fjall recovers as usual (and a
    /// padding keyspace that the next open clears).
    fn retire_journal(&self, wait: Duration) -> std::result::Result<(), String> {
        let journal = self.active_journal().map_err(|e| e.to_string())?;
        let Some((id, written)) = journal else {
            return Ok(());
        };
        // Elsewhere the journal's allocation does not tell what was written.
        if !cfg!(unix) || written < RETIRE_JOURNAL_ABOVE {
            return Ok(());
        }
        let chunk = pad_chunk();
        let mut padded = written;
        while padded <= JOURNAL_SEALED_PAST + PAD_CHUNK as u64 {
            self.pad
                .insert(b"pad".as_slice(), chunk.clone())
                .map_err(|e| e.to_string())?;
            padded += PAD_CHUNK as u64;
        }
        self.pad.rotate_memtable().map_err(|e| e.to_string())?;
        let started = Instant::now();
        loop {
            match self.active_journal().map_err(|e| e.to_string())? {
                Some((now, _)) if now > id && self.db.journal_count() == 1 => break,
                _ if started.elapsed() > wait => {
                    return Err(format!("the journal was not retired within {wait:?}"));
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        self.pad.clear().map_err(|e| e.to_string())
    }

    /// The id of the active (highest-numbered) journal and the bytes written to it.
    fn active_journal(&self) -> std::io::Result<Option<(u64, u64)>> {
        let mut active: Option<(u64, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.path)? {
            let path = entry?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jnl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                if active.as_ref().is_none_or(|(a, _)| id > *a) {
                    active = Some((id, path));
                }
            }
        }
        let Some((id, path)) = active else {
            return Ok(None);
        };
        // The journal is preallocated sparsely: its allocated blocks are what was written.
        Ok(Some((id, allocated(&std::fs::metadata(path)?))))
    }
}

/// Bytes a file occupies on disk (its allocated blocks where the OS reports them: fjall's
/// journal is preallocated sparsely, so its length overstates it).
pub(crate) fn allocated(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.blocks() * 512
    }
    #[cfg(not(unix))]
    {
        meta.len()
    }
}

/// A padding value that compression cannot shrink (xorshift noise).
fn pad_chunk() -> fjall::Slice {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(PAD_CHUNK);
    while out.len() < PAD_CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.into()
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
        engine.commit(&[Op::put(b"ns:k", &record)]).unwrap();
        engine.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(engine.entries.table_count(), 1);
    }

    #[test]
    fn close_retires_a_big_journal_so_the_next_open_replays_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjall");
        let record =
            record::encode(&"x".repeat(1000), 0, crate::Format::MessagePack, &"k").unwrap();
        let n = 6_000;
        {
            let engine = FjallEngine::open(&path, Clock::system()).unwrap();
            for chunk in (0..n).collect::<Vec<u32>>().chunks(500) {
                let ops: Vec<Op> = chunk
                    .iter()
                    .map(|i| Op::put(format!("ns:{i:05}").as_bytes(), &record))
                    .collect();
                engine.commit(&ops).unwrap();
            }
            let (first, written) = engine.active_journal().unwrap().unwrap();
            assert!(written >= RETIRE_JOURNAL_ABOVE, "{written} B journaled");
            engine.close();
            let (active, written) = engine.active_journal().unwrap().unwrap();
            assert!(active > first, "the journal was sealed");
            assert!(written < 1 << 20, "{written} B left to replay");
            assert_eq!(
                engine.db.journal_count(),
                1,
                "the sealed journal was deleted"
            );
        }
        let engine = FjallEngine::open(&path, Clock::system()).unwrap();
        let mut seen = 0;
        engine
            .scan(b"", &mut |_, rec| {
                assert_eq!(rec, record.as_slice());
                seen += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, n);
        assert!(engine.pad.is_empty().unwrap(), "no padding is left");
    }
}
