//! The embedded engine behind a private trait, and its fjall implementation.
//!
//! Everything above this file speaks in [`Op`]s and raw bytes; only this file knows fjall. The
//! engine choice (fjall over redb) was measured, see the module docs of `disk`. Errors met while
//! opening or scanning are classified here: I/O trouble with the directory is
//! [`Error::DataDir`], anything the engine cannot make sense of is [`Error::Corrupt`].

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use fjall::{
    compaction::filter::{CompactionFilter, Context, Factory, ItemAccessor, Verdict},
    Database, Keyspace, KeyspaceCreateOptions, PersistMode,
};

use super::{marker::Marker, perms, record, retire::Retirer};
use crate::{
    error::{Error, Result},
    time::Clock,
};

/// Name of the single keyspace that holds every namespace (`namespace:key` → record).
const KEYSPACE: &str = "entries";
/// Name of the keyspace that holds strata's own bookkeeping: the commit sequence.
const META_KEYSPACE: &str = "strata-meta";
/// The meta key holding the sequence number of the last commit (u64, big-endian), written in
/// every batch so it is recovered exactly as far as the batches are.
const SEQ_KEY: &[u8] = b"commit-seq";

/// The journal's cap: past it fjall flushes the write buffers and recycles old journals, so the
/// journal never holds more than this (fjall's minimum; its default is 512 MiB).
pub(crate) const MAX_JOURNAL: u64 = 64 * 1024 * 1024;

/// fjall's block cache when every read is served by the memory tier: the engine is read only
/// by the open's scan and prefix scans, which go through a block once, so a bigger cache only
/// holds blocks nobody reads again. fjall's default (32 MiB) was ~33 B per entry of resident
/// memory after reopening a million sessions; 4 MiB was still ~40 B per entry at 100 k (the
/// open's scan fills it).
pub(crate) const BLOCK_CACHE: u64 = 1024 * 1024;
/// fjall's block cache in the larger-than-memory mode, where reads that miss memory read the
/// engine (fjall's default).
pub(crate) const BLOCK_CACHE_COLD: u64 = 32 * 1024 * 1024;

/// One change to the engine, applied in queue order.
#[derive(Debug)]
pub(crate) enum Op {
    /// Writes a record: `buf` is the record then the key (`namespace:key`), `key_at` where
    /// the key starts (one allocation per write: the value's encoding, grown in place).
    Put { buf: Vec<u8>, key_at: usize },
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
            buf: [record, key].concat(),
            key_at: record.len(),
        }
    }

    /// The record a put writes (`None` for a delete).
    pub(crate) fn record(&self) -> Option<&[u8]> {
        match self {
            Op::Put { buf, key_at } => Some(&buf[..*key_at]),
            Op::Delete { .. } | Op::DeletePrefix { .. } => None,
        }
    }

    /// The key an op writes (a prefix for a prefix delete).
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Op::Put { buf, key_at } => &buf[*key_at..],
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
    /// The record under `key`, if any (a read that missed a bounded memory tier).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
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
    meta: Keyspace,
    /// The last committed sequence number (only the writer thread commits).
    seq: AtomicU64,
    marker: Marker,
    /// Set with `retire_journal_on_close`.
    retirer: Option<Retirer>,
    /// Declared last, so dropped last: after `db`, `entries` and `meta`, whose drop waits for
    /// fjall's worker threads. A worker finishing a flush or compaction after `close` writes a
    /// new version file with the umask's permissions; this restricts the tree once they are gone.
    _restrict_after_workers: RestrictOnDrop,
}

/// Makes the engine's directory owner-only when dropped (see `FjallEngine`).
struct RestrictOnDrop(PathBuf);

impl Drop for RestrictOnDrop {
    fn drop(&mut self) {
        if let Err(e) = perms::restrict_tree(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "could not make the disk store's files owner-only");
        }
    }
}

impl FjallEngine {
    /// [`Engine::close`], waiting up to `wait` (each) for the write buffer to reach tables and
    /// for a big journal to be retired; past that the next open replays the journal.
    fn close_within(&self, wait: Duration) {
        let flushed = self.flush(wait).and_then(|()| match &self.retirer {
            Some(retirer) => retirer.retire(&self.db, &self.path, wait),
            None => Ok(()),
        });
        if let Err(e) = flushed {
            tracing::warn!(path = %self.path.display(), error = %e, "could not flush the disk store on close; the next open replays its journal");
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not fsync the disk store on close");
        }
        if let Err(e) = self.marker.sync() {
            tracing::warn!(path = %self.marker.path().display(), error = %e, "could not fsync the disk store's commit marker on close");
        }
        // Files fjall created while open (tables, journals) got the umask's permissions.
        if let Err(e) = perms::restrict_tree(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not make the disk store's files owner-only");
        }
    }

    /// Opens (or creates) the database at `path`; expired records are dropped by compaction.
    /// [`Error::LostCommits`] if it recovers fewer commits than the marker in `marker_dir`
    /// says were acknowledged, unless `accept_loss` (then a warning, and the marker follows).
    /// With `retire_journal`, a clean close retires the journal (see `retire`). `cache_bytes`
    /// sizes fjall's block cache.
    pub(crate) fn open(
        path: &Path,
        marker_dir: &Path,
        clock: Clock,
        (accept_loss, retire_journal): (bool, bool),
        cache_bytes: u64,
    ) -> Result<Self> {
        let classify = |e| classify(path, e);
        let filter: Arc<dyn Factory> = Arc::new(ExpiredFilter {
            clock: std::panic::AssertUnwindSafe(clock),
        });
        let db = Database::builder(path)
            .max_journaling_size(MAX_JOURNAL)
            .cache_size(cache_bytes)
            // Only the entries keyspace holds records with a deadline; the meta keyspace's
            // values (the commit sequence) are not records and must never be filtered.
            .with_compaction_filter_factories(Arc::new(move |keyspace: &str| {
                (keyspace == KEYSPACE).then(|| filter.clone())
            }))
            .open()
            .map_err(classify)?;
        let entries = db
            .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(classify)?;
        let meta = db
            .keyspace(META_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(classify)?;
        let retirer = if retire_journal {
            Some(Retirer::open(&db).map_err(classify)?)
        } else {
            Retirer::clean_up(&db).map_err(classify)?;
            None
        };
        let recovered = recovered_seq(path, &meta)?;
        let (marker, acknowledged) = Marker::open(marker_dir)?;
        check_recovered(marker_dir, recovered, acknowledged, accept_loss)?;
        marker.store(recovered).map_err(|e| {
            Error::from(crate::DataDirError {
                path: marker.path().to_owned(),
                source: e,
            })
        })?;
        Ok(FjallEngine {
            path: path.to_owned(),
            db,
            entries,
            meta,
            seq: AtomicU64::new(recovered),
            marker,
            retirer,
            _restrict_after_workers: RestrictOnDrop(path.to_owned()),
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
                Op::Put { buf, key_at } => {
                    let (record, key) = buf.split_at(*key_at);
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

    /// Commits `run` as one batch, with the next commit sequence number, then records that
    /// number in the marker.
    fn commit_run(&self, run: Vec<(&[u8], Option<&[u8]>)>) -> fjall::Result<()> {
        let mut batch = self.batch();
        let seq = self.seq.load(Ordering::Acquire) + 1;
        batch.insert(&self.meta, SEQ_KEY, seq.to_be_bytes());
        // Consecutive inserts into the write buffer (a skip list) walk the same, cached,
        // nodes, which makes a big batch several times faster than random order. The order is
        // by key then position in the run (a stable sort) and a batch is applied as one
        // sequence number, so the last op on a key wins.
        for i in key_order(&run) {
            let (key, record) = run[i];
            match record {
                Some(record) => batch.insert(&self.entries, key, record),
                None => batch.remove(&self.entries, key),
            }
        }
        batch.commit()?;
        self.seq.store(seq, Ordering::Release);
        self.note_committed(seq);
        Ok(())
    }

    /// Moves the marker to `seq`. A failure only weakens the check at the next open (the
    /// marker lags, so it can never report a loss that did not happen): logged, not fatal.
    fn note_committed(&self, seq: u64) {
        if let Err(e) = self.marker.store(seq) {
            tracing::warn!(path = %self.marker.path().display(), error = %e, "could not update the disk store's commit marker; a damaged journal may go unnoticed at the next open");
        }
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

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let found = self.entries.get(key).map_err(|e| classify(&self.path, e))?;
        Ok(found.map(|record| record.to_vec()))
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
            .map_err(|e| e.to_string())?;
        self.marker.sync().map_err(|e| e.to_string())
    }

    fn compact(&self) -> Result<()> {
        let fail = |e: fjall::Error| Error::backend("compacting the disk store", e);
        self.flush(Duration::from_secs(30))
            .map_err(|e| Error::backend("flushing the disk store", e))?;
        self.entries.major_compact().map_err(fail)
    }

    fn close(&self) {
        self.close_within(CLOSE_FLUSH_WAIT);
    }
}

/// The positions of `run` in key order, equal keys in run order (what a stable sort by key
/// gives), for a fraction of its cost: each position is sorted with the 8 bytes that follow
/// the prefix every key shares (big-endian, zero-padded: the same order as the bytes), so most
/// comparisons are one integer's, and only equal heads compare the keys' remaining bytes.
fn key_order(run: &[(&[u8], Option<&[u8]>)]) -> Vec<usize> {
    let shared = match run.first() {
        Some((first, _)) => run.iter().fold(first.len(), |shared, (key, _)| {
            shared.min(common_prefix(&first[..shared], key))
        }),
        None => 0,
    };
    let mut heads: Vec<(u64, usize)> = run
        .iter()
        .enumerate()
        .map(|(i, (key, _))| {
            let rest = &key[shared..];
            let mut head = [0u8; 8];
            let n = rest.len().min(8);
            head[..n].copy_from_slice(&rest[..n]);
            (u64::from_be_bytes(head), i)
        })
        .collect();
    heads.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let (ka, kb) = (run[a.1].0, run[b.1].0);
            ka[shared..].cmp(&kb[shared..]).then(a.1.cmp(&b.1))
        })
    });
    heads.into_iter().map(|(_, i)| i).collect()
}

/// The length of the prefix `a` and `b` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How long a clean close waits for the write buffer to reach tables.
const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(2);

impl FjallEngine {
    /// Seals the write buffer and waits up to `wait` for fjall to write it out as a table.
    fn flush(&self, wait: Duration) -> std::result::Result<(), String> {
        self.entries.rotate_memtable().map_err(|e| e.to_string())?;
        self.meta.rotate_memtable().map_err(|e| e.to_string())?;
        let started = Instant::now();
        while self.entries.sealed_memtable_count() + self.meta.sealed_memtable_count() > 0 {
            if started.elapsed() > wait {
                return Err(format!("the write buffer was not flushed within {wait:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
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

/// The sequence number the engine recovered (0 for a new directory).
fn recovered_seq(path: &Path, meta: &Keyspace) -> Result<u64> {
    let Some(bytes) = meta.get(SEQ_KEY).map_err(|e| classify(path, e))? else {
        return Ok(0);
    };
    let bytes = <[u8; 8]>::try_from(bytes.as_ref()).map_err(|_| {
        Error::from(crate::CorruptError {
            path: path.to_owned(),
            reason: format!("the commit sequence is {} bytes, not 8", bytes.len()),
        })
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Refuses an engine that recovered fewer commits than were acknowledged (see `marker`).
fn check_recovered(
    dir: &Path,
    recovered: u64,
    acknowledged: Option<u64>,
    accept_loss: bool,
) -> Result<()> {
    let Some(acknowledged) = acknowledged.filter(|&a| a > recovered) else {
        return Ok(());
    };
    if !accept_loss {
        return Err(Error::from(crate::LostCommitsError {
            path: dir.to_owned(),
            acknowledged,
            recovered,
        }));
    }
    tracing::warn!(dir = %dir.display(), acknowledged, recovered, lost = acknowledged - recovered, "the disk store's journal was damaged: acknowledged commits are missing; continuing with what survived (accept_data_loss)");
    Ok(())
}

/// Turns an engine error met while opening or loading into what the user can act on.
fn classify(path: &Path, e: fjall::Error) -> Error {
    match e {
        fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => io_error(path, io),
        fjall::Error::Locked => Error::DirLocked { path: path.into() },
        fjall::Error::Poisoned => Error::backend("opening the disk store", e),
        other => Error::from(crate::CorruptError {
            path: path.to_owned(),
            reason: format!("{other:?}"),
        }),
    }
}

/// Directory trouble is [`Error::DataDir`]; bytes that end early or make no sense are corrupt.
fn io_error(path: &Path, io: std::io::Error) -> Error {
    match io.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::InvalidData | ErrorKind::InvalidInput => {
            Error::from(crate::CorruptError {
                path: path.to_owned(),
                reason: io.to_string(),
            })
        }
        _ => Error::from(crate::DataDirError {
            path: path.to_owned(),
            source: io,
        }),
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
        let engine = open(&dir.path().join("fjall"), dir.path()).unwrap();
        engine.scan(b"", &mut |_, _| Ok(())).unwrap();
        let record = record::encode(&1u8, 0, crate::Format::MessagePack, &"k").unwrap();
        engine.commit(&[Op::put(b"ns:k", &record)]).unwrap();
        engine.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(engine.entries.table_count(), 1);
    }

    /// The expiry filter read the last 8 bytes of every value as a deadline, in every
    /// keyspace: in the meta keyspace that is the commit sequence itself, a number far below
    /// any Unix time in ms, so the first compaction of the meta keyspace dropped it and the next
    /// open failed with `LostCommits { recovered: 0 }` (seen once per ~100 crash-test rounds:
    /// each clean close adds a meta table until one compacts).
    #[test]
    fn a_compaction_of_the_meta_keyspace_keeps_the_commit_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjall");
        {
            let engine = open(&path, dir.path()).unwrap();
            commit_k(&engine, 3, |engine| {
                engine.flush(Duration::from_secs(30)).unwrap();
            });
            engine.meta.major_compact().unwrap();
            assert_eq!(
                recovered_seq(&path, &engine.meta).unwrap(),
                3,
                "the compaction dropped the commit sequence"
            );
            engine.close();
        }
        let engine = open(&path, dir.path()).expect("reopen after a meta compaction");
        assert_eq!(engine.seq.load(Ordering::SeqCst), 3);
    }

    proptest::proptest! {
        /// `key_order` is a stable sort by key: keys sharing long prefixes, keys that are
        /// prefixes of others, zero bytes (the head's padding), duplicates (the last op wins).
        #[test]
        fn key_order_is_a_stable_sort_by_key(
            prefix in proptest::collection::vec(0u8..3, 0..12),
            tails in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..12), 0..64),
        ) {
            let keys: Vec<Vec<u8>> = tails.iter().map(|t| [&prefix[..], t].concat()).collect();
            let run: Vec<(&[u8], Option<&[u8]>)> =
                keys.iter().map(|k| (k.as_slice(), None)).collect();
            let mut expected: Vec<usize> = (0..run.len()).collect();
            expected.sort_by(|&a, &b| run[a].0.cmp(run[b].0));
            proptest::prop_assert_eq!(key_order(&run), expected);
        }
    }

    /// Commits a put of `ns:k` `n` times, calling `after` after each commit.
    fn commit_k(engine: &FjallEngine, n: usize, after: impl Fn(&FjallEngine)) {
        let record = record::encode(&1u8, 0, crate::Format::MessagePack, &"k").unwrap();
        for _ in 0..n {
            engine.commit(&[Op::put(b"ns:k", &record)]).unwrap();
            after(engine);
        }
    }

    /// Bytes this thread has passed to `write` so far (Linux: `/proc/thread-self/io`).
    fn written_by_this_thread() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let line = io.lines().find(|l| l.starts_with("wchar:")).unwrap();
        line["wchar:".len()..].trim().parse().unwrap()
    }

    /// Reopens the engine at `path` and counts its records, each of which must equal `record`.
    fn reopened_records(path: &Path, marker_dir: &Path, record: &[u8]) -> usize {
        let engine = open(path, marker_dir).unwrap();
        let mut seen = 0;
        engine
            .scan(b"", &mut |_, rec| {
                assert_eq!(rec, record);
                seen += 1;
                Ok(())
            })
            .unwrap();
        seen
    }

    fn open(path: &Path, marker_dir: &Path) -> Result<FjallEngine> {
        FjallEngine::open(
            path,
            marker_dir,
            Clock::system(),
            (false, false),
            BLOCK_CACHE,
        )
    }

    /// Issue 15: close used to pad a journal of a few MB past fjall's 64 MB rotation mark.
    #[cfg(target_os = "linux")]
    #[test]
    fn close_writes_no_journal_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjall");
        let record =
            record::encode(&"x".repeat(1000), 0, crate::Format::MessagePack, &"k").unwrap();
        let n = 6_000;
        {
            let engine = open(&path, dir.path()).unwrap();
            for chunk in (0..n).collect::<Vec<u32>>().chunks(500) {
                let ops: Vec<Op> = chunk
                    .iter()
                    .map(|i| Op::put(format!("ns:{i:05}").as_bytes(), &record))
                    .collect();
                engine.commit(&ops).unwrap();
            }
            let before = written_by_this_thread();
            engine.close();
            let by_close = written_by_this_thread() - before;
            assert!(by_close < 1 << 20, "close wrote {by_close} B");
        }
        assert_eq!(reopened_records(&path, dir.path(), &record), n as usize);
    }

    #[test]
    fn every_commit_moves_the_sequence_and_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjall");
        {
            let engine = open(&path, dir.path()).unwrap();
            commit_k(&engine, 3, |_| {});
        }
        let engine = open(&path, dir.path()).unwrap();
        assert_eq!(engine.seq.load(Ordering::Acquire), 3);
        drop(engine);
        assert_eq!(Marker::open(dir.path()).unwrap().1, Some(3));
    }

    #[test]
    fn fewer_commits_than_the_marker_is_lost_commits_unless_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjall");
        drop(open(&path, dir.path()).unwrap());
        Marker::open(dir.path()).unwrap().0.store(5).unwrap();
        let err = open(&path, dir.path()).err().unwrap();
        assert!(
            matches!(
                err,
                Error::LostCommits(ref e) if e.acknowledged == 5 && e.recovered == 0
            ),
            "{err:?}"
        );
        let engine = FjallEngine::open(
            &path,
            dir.path(),
            Clock::system(),
            (true, false),
            BLOCK_CACHE,
        )
        .unwrap();
        drop(engine);
        assert!(
            open(&path, dir.path()).is_ok(),
            "the marker follows an accepted loss"
        );
    }

    #[test]
    fn close_retires_a_big_journal_when_asked_so_the_next_open_replays_nothing() {
        use super::super::retire::active_journal;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjall");
        let record =
            record::encode(&"x".repeat(1000), 0, crate::Format::MessagePack, &"k").unwrap();
        let n = 6_000;
        {
            let engine = FjallEngine::open(
                &path,
                dir.path(),
                Clock::system(),
                (false, true),
                BLOCK_CACHE,
            )
            .unwrap();
            for chunk in (0..n).collect::<Vec<u32>>().chunks(500) {
                let ops: Vec<Op> = chunk
                    .iter()
                    .map(|i| Op::put(format!("ns:{i:05}").as_bytes(), &record))
                    .collect();
                engine.commit(&ops).unwrap();
            }
            let (first, written) = active_journal(&path).unwrap().unwrap();
            assert!(written >= 4 << 20, "{written} B journaled");
            // What a close does when fjall's flush keeps up; with the 2 s of `close` it did not
            // once, at load 11, and the journal stayed unsealed (replayed at the next open).
            engine.close_within(Duration::from_secs(60));
            let (active, written) = active_journal(&path).unwrap().unwrap();
            assert!(active > first, "the journal was sealed");
            assert!(written < 1 << 20, "{written} B left to replay");
            assert_eq!(
                engine.db.journal_count(),
                1,
                "the sealed journal was deleted"
            );
        }
        assert_eq!(reopened_records(&path, dir.path(), &record), n as usize);
    }
}
