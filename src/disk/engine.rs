//! The embedded engine behind a private trait, and its fjall implementation.
//!
//! Everything above this file speaks in [`Op`]s and raw bytes; only this file knows fjall. The
//! engine choice (fjall over redb) was measured, see the module docs of `disk`. Errors met while
//! opening or scanning are classified here: I/O trouble with the directory is
//! [`Error::DataDir`], anything the engine cannot make sense of is [`Error::Corrupt`].

use std::{
    borrow::Cow,
    collections::BTreeMap,
    io::ErrorKind,
    ops::Bound,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use fjall::{
    compaction::filter::{CompactionFilter, Context, Factory, ItemAccessor, Verdict},
    Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable,
};
use parking_lot::RwLock;

use super::{marker::Marker, perms, record, retire::Retirer};
use crate::{
    error::{Error, Result},
    namespace::Namespace,
    time::Clock,
};

/// Format 1's single keyspace, holding every namespace (`namespace:key` → record); an open
/// moves its records into their namespaces' keyspaces (see [`FjallEngine::migrate`]).
const LEGACY_KEYSPACE: &str = "entries";
/// Format 2: namespace `ns` is the keyspace `ns:ns`, holding the bare key bytes (`key` →
/// record; see [`escape`] for the one change made to them). Keys then differ from their first byte, which is what fjall's write buffer
/// compares first (a 4-byte inline prefix: `namespace:` put the same bytes there for every key,
/// so every comparison of a skip-list search went to a `memcmp` of both keys).
const SPACE_PREFIX: &str = "ns:";
/// The meta key holding the directory's format (u64, big-endian); absent in format 1.
const FORMAT_KEY: &[u8] = b"format";
/// The on-disk format this strata writes, and the newest it reads.
pub(crate) const FORMAT: u64 = 2;
/// Most namespaces one directory takes: each is a keyspace with its own write buffer, tables
/// and compactions, and a close flushes the written ones one by one (measured, release build:
/// ~8 ms of close, ~1.2 ms of open and ~32 KB on disk per namespace holding data; 256 of them
/// took 2.2 s to close, past the close's 2 s flush wait). A directory migrated from format 1
/// keeps all its namespaces, more than this included; only new ones past it are refused.
pub(crate) const MAX_NAMESPACES: usize = 64;
/// Records the open's search for dead namespaces reads between two looks at its deadline (and
/// one look before each namespace).
const DEAD_SCAN_CHECK_EVERY: u64 = 1024;

/// How long an open may spend looking for namespaces without live entries: until `budget`
/// after `started` (the open's start), or after the end of a format-1 move.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeadScan {
    pub started: Instant,
    pub budget: Duration,
}

impl DeadScan {
    /// No limit that a test would reach.
    #[cfg(test)]
    pub(crate) fn unbounded() -> Self {
        DeadScan {
            started: Instant::now(),
            budget: Duration::from_secs(3600),
        }
    }
}

/// Records a migration moves per engine batch.
const MIGRATION_BATCH: usize = 16_384;
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
    /// Makes every namespace of `namespaces` writable (its keyspace), all or none: refused
    /// with [`Error::TooManyNamespaces`], creating none, if the new ones would take the
    /// directory past [`MAX_NAMESPACES`].
    fn open_namespaces(&self, namespaces: &[Namespace]) -> Result<()>;
    /// Deletes `namespace`'s keyspace with every record in it, freeing its place under
    /// [`MAX_NAMESPACES`]; false if the directory did not hold it. The caller makes sure no
    /// write of it is queued or can be.
    fn drop_namespace(&self, namespace: &Namespace) -> Result<bool>;
    /// Visits every `(key, record)` starting with `prefix`, in key order.
    fn scan(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()>;
    /// Roughly how many records and how many bytes on disk each namespace's keyspace holds,
    /// by the namespace's name: a hint for sizing a load's buffers, never a count to trust.
    fn size_hints(&self) -> Vec<(Vec<u8>, usize, u64)> {
        Vec::new()
    }
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

/// How an open migrates a format-1 directory: records per batch, and (tests) where the
/// process aborts, as a crash there would, and how long the move stalls before it starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    pub batch: usize,
    pub crash: Option<MigrationCrash>,
    pub stall: Duration,
}

/// After which step a migrating open aborts the process (tests only, through `Faults`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MigrationCrash {
    /// Right after the `n`th batch is committed.
    Batch(u64),
    /// Once every record has moved and the moves are fsynced, before the old keyspace is
    /// dropped.
    Persisted,
    /// Once the old keyspace is dropped, before the format is recorded.
    Dropped,
}

impl Migration {
    /// Dies like `kill -9` if this is the point a test asked for: nothing flushed or closed.
    fn crash_at(&self, point: MigrationCrash) {
        if self.crash == Some(point) {
            std::process::abort();
        }
    }
}

impl Default for Migration {
    fn default() -> Self {
        Migration {
            batch: MIGRATION_BATCH,
            crash: None,
            stall: Duration::ZERO,
        }
    }
}

/// The fjall engine: one database in `<dir>/fjall`, one keyspace per namespace.
pub(crate) struct FjallEngine {
    path: PathBuf,
    db: Database,
    /// Every namespace's keyspace, by its stored keys' prefix (`namespace:`): in this order,
    /// their records come in the order of format 1's `namespace:key` keys.
    spaces: RwLock<BTreeMap<Vec<u8>, Keyspace>>,
    /// A format-1 keyspace still holding records that are not strata's (no valid namespace):
    /// left in place, visited by scans.
    legacy: Option<Keyspace>,
    meta: Keyspace,
    /// Records this open moved from format 1 (see [`FjallEngine::migrate`]).
    migrated: u64,
    /// Expired records this open dropped with their namespaces' keyspaces (see
    /// [`FjallEngine::drop_dead_namespaces`]).
    dropped_expired: u64,
    /// The last committed sequence number (only the writer thread commits).
    seq: AtomicU64,
    marker: Marker,
    /// Set with `retire_journal_on_close`.
    retirer: Option<Retirer>,
    /// Tests: where a new namespace's open waits, between finding the namespace missing and
    /// creating it (see `two_new_namespaces_racing_at_the_limit_open_only_one`).
    #[cfg(test)]
    before_create: parking_lot::Mutex<Option<Arc<std::sync::Barrier>>>,
    /// Declared last, so dropped last: after `db` and the keyspaces, whose drop waits for
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
        migration: Migration,
        dead_scan: DeadScan,
    ) -> Result<Self> {
        let classify = |e| classify(path, e);
        let now = clock.now_ms();
        let filter: Arc<dyn Factory> = Arc::new(ExpiredFilter {
            clock: std::panic::AssertUnwindSafe(clock),
        });
        let builder = Database::builder(path)
            .max_journaling_size(MAX_JOURNAL)
            .cache_size(cache_bytes)
            // Only the namespaces' keyspaces hold records with a deadline; the meta keyspace's
            // values (the commit sequence) are not records and must never be filtered.
            .with_compaction_filter_factories(Arc::new(move |keyspace: &str| {
                (keyspace.starts_with(SPACE_PREFIX) || keyspace == LEGACY_KEYSPACE)
                    .then(|| filter.clone())
            }));
        // fjall asserts things about the journal it recovers (in debug builds, e.g. that a
        // value's two lengths agree): on a damaged journal that is a panic, which must be a
        // `Corrupt` directory for the caller, not a crash of its process.
        let db = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.open())) {
            Ok(opened) => opened.map_err(classify)?,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(Error::from(crate::CorruptError {
                    path: path.to_owned(),
                    reason: format!("the engine failed while recovering its journal: {what}"),
                }));
            }
        };
        let meta = db
            .keyspace(META_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(classify)?;
        let format = stored_format(path, &meta)?;
        if format > FORMAT {
            return Err(Error::from(crate::NewerFormatError {
                path: path.to_owned(),
                found: format,
                supported: FORMAT,
            }));
        }
        let mut spaces = BTreeMap::new();
        for name in db.list_keyspace_names() {
            if let Some(namespace) = name.strip_prefix(SPACE_PREFIX) {
                let space = db
                    .keyspace(&name, KeyspaceCreateOptions::default)
                    .map_err(classify)?;
                spaces.insert(stored_prefix(namespace), space);
            }
        }
        let legacy = if db.keyspace_exists(LEGACY_KEYSPACE) {
            Some(
                db.keyspace(LEGACY_KEYSPACE, KeyspaceCreateOptions::default)
                    .map_err(classify)?,
            )
        } else {
            None
        };
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
        let mut engine = FjallEngine {
            path: path.to_owned(),
            db,
            spaces: RwLock::new(spaces),
            legacy,
            meta,
            migrated: 0,
            dropped_expired: 0,
            seq: AtomicU64::new(recovered),
            marker,
            retirer,
            #[cfg(test)]
            before_create: parking_lot::Mutex::new(None),
            _restrict_after_workers: RestrictOnDrop(path.to_owned()),
        };
        // After the commit check: a damaged journal is refused before anything is moved.
        engine.migrate(migration).map_err(classify)?;
        if format < FORMAT {
            engine.store_format().map_err(classify)?;
        }
        // The one-time move does not count against the open's time (see `try_open`).
        // A budget too long to add to an instant (`open_timeout(Duration::MAX)`) is no limit.
        let deadline = match engine.migrated {
            0 => dead_scan.started.checked_add(dead_scan.budget),
            _ => Instant::now().checked_add(dead_scan.budget),
        };
        engine
            .drop_dead_namespaces(now, deadline)
            .map_err(classify)?;
        Ok(engine)
    }

    /// Drops the keyspace of every namespace holding no live record (none, or only records
    /// whose deadline passed by `now`), so it stops counting against [`MAX_NAMESPACES`]: a
    /// namespace whose entries all expired, were cleared or deleted, or that was opened and
    /// never written. Nothing is lost (expired records are never served) and the namespace
    /// opens again, empty, like a new one. Records that are not strata's keep theirs.
    ///
    /// A dead namespace is read whole (every record must have expired), so this stops at
    /// `deadline` (half the open's timeout; none: no limit): the namespaces not decided by then are kept and
    /// looked at again by the next open (`DiskDb::drop_namespace` frees one at once).
    fn drop_dead_namespaces(&mut self, now: u64, deadline: Option<Instant>) -> fjall::Result<()> {
        let mut dead = Vec::new();
        let mut expired = 0u64;
        let mut out_of_time = false;
        'spaces: for (prefix, space) in self.spaces.get_mut().iter() {
            let mut live = false;
            let mut records = 0u64;
            for kv in space.iter() {
                if records.is_multiple_of(DEAD_SCAN_CHECK_EVERY)
                    && deadline.is_some_and(|deadline| Instant::now() >= deadline)
                {
                    out_of_time = true;
                    break 'spaces;
                }
                let record = kv.value()?;
                if record::deadline(&record).is_none_or(|d| d == 0 || d > now) {
                    live = true;
                    break;
                }
                records += 1;
            }
            if !live {
                dead.push(prefix.clone());
                expired += records;
            }
        }
        if out_of_time {
            tracing::info!(path = %self.path.display(), dropped = dead.len(), "stopped looking for namespaces without live entries at half the open timeout; the next open goes on");
        }
        self.dropped_expired = expired;
        for prefix in &dead {
            if let Some(space) = self.spaces.get_mut().remove(prefix) {
                self.db.delete_keyspace(space)?;
            }
        }
        if !dead.is_empty() {
            let names: Vec<String> = dead
                .iter()
                .map(|p| String::from_utf8_lossy(&p[..p.len() - 1]).into_owned())
                .collect();
            tracing::info!(path = %self.path.display(), namespaces = ?names, "dropped the keyspaces of namespaces without live entries (they no longer count against the 64-namespace limit)");
        }
        Ok(())
    }

    /// Moves format 1's records (`namespace:key` in one keyspace) into their namespaces'
    /// keyspaces, `migration.batch` records per engine batch. Each batch inserts its records
    /// under their bare keys and removes them from the old keyspace in ONE commit, so at every
    /// point (a crash included) each record is in exactly one of the two places, and an
    /// interrupted migration goes on from where it stopped at the next open. Once every
    /// record has moved, the moves are fsynced and only then is the old keyspace dropped.
    /// Records that are not strata's stay where they are (scans still visit them).
    fn migrate(&mut self, migration: Migration) -> fjall::Result<()> {
        let Some(legacy) = self.legacy.clone() else {
            return Ok(());
        };
        if !migration.stall.is_zero() {
            // Test hook: a move slower than the open's timeout.
            std::thread::sleep(migration.stall);
        }
        let (mut moved, mut batches) = (0u64, 0u64);
        // Records left in place sort before the ones still to move: start past them.
        let mut after: Option<fjall::Slice> = None;
        loop {
            let range = match &after {
                Some(key) => (Bound::Excluded(key.to_vec()), Bound::Unbounded),
                None => (Bound::Unbounded, Bound::Unbounded),
            };
            let chunk = legacy
                .range(range)
                .take(migration.batch.max(1))
                .map(|kv| kv.into_inner())
                .collect::<fjall::Result<Vec<_>>>()?;
            let Some((last, _)) = chunk.last() else {
                break;
            };
            after = Some(last.clone());
            let mut batch = self.batch();
            let mut in_batch = 0;
            for (key, record) in &chunk {
                let Some((namespace, bare)) = crate::namespace::split_stored_key(key) else {
                    continue;
                };
                let space = self.space_or_create(&namespace)?;
                batch.insert(&space, &*escape(bare), record.clone());
                batch.remove(&legacy, key.clone());
                in_batch += 1;
            }
            if in_batch == 0 {
                continue;
            }
            batch.commit()?;
            moved += in_batch;
            batches += 1;
            if batches.is_multiple_of(64) {
                tracing::info!(path = %self.path.display(), records = moved, "moving the disk store's records to one keyspace per namespace (format 2)");
            }
            migration.crash_at(MigrationCrash::Batch(batches));
        }
        self.migrated = moved;
        if moved > 0 {
            tracing::info!(path = %self.path.display(), records = moved, "moved the disk store's records to one keyspace per namespace (format 2)");
        }
        // Durable before the old keyspace goes: a power loss must not keep the drop and lose
        // the moves.
        self.db.persist(PersistMode::SyncAll)?;
        migration.crash_at(MigrationCrash::Persisted);
        if legacy.first_key_value().is_none() {
            self.db.delete_keyspace(legacy)?;
            self.legacy = None;
            migration.crash_at(MigrationCrash::Dropped);
        }
        Ok(())
    }

    /// Expired records this open dropped with the keyspaces of namespaces holding nothing
    /// else (counted as purged).
    pub(crate) fn dropped_expired(&self) -> u64 {
        self.dropped_expired
    }

    /// Records this open moved from format 1 to format 2 (0 if there was nothing to move).
    pub(crate) fn migrated(&self) -> u64 {
        self.migrated
    }

    /// Records [`FORMAT`] in the meta keyspace, durably.
    fn store_format(&self) -> fjall::Result<()> {
        let mut batch = self.batch();
        batch.insert(&self.meta, FORMAT_KEY, FORMAT.to_be_bytes());
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)
    }

    /// The keyspace of `namespace`, created if it does not exist yet, with no limit: only the
    /// migration from format 1 calls it, which keeps every namespace the directory holds.
    fn space_or_create(&self, namespace: &Namespace) -> fjall::Result<Keyspace> {
        if let Some(space) = self.spaces.read().get(&namespace.prefix()) {
            return Ok(space.clone());
        }
        self.create_space(&mut self.spaces.write(), namespace)
    }

    /// The keyspace of `namespace` in `spaces` (the write-locked map), created if missing.
    fn create_space(
        &self,
        spaces: &mut BTreeMap<Vec<u8>, Keyspace>,
        namespace: &Namespace,
    ) -> fjall::Result<Keyspace> {
        let prefix = namespace.prefix();
        if let Some(space) = spaces.get(&prefix) {
            return Ok(space.clone());
        }
        let space = self.db.keyspace(
            &format!("{SPACE_PREFIX}{namespace}"),
            KeyspaceCreateOptions::default,
        )?;
        spaces.insert(prefix, space.clone());
        Ok(space)
    }

    /// The keyspaces whose records a scan of `prefix` visits, each with its stored prefix and
    /// the prefix to scan inside it (`None`: all of it).
    fn spaces_under<'p>(&self, prefix: &'p [u8]) -> Vec<Under<'p>> {
        self.spaces
            .read()
            .iter()
            .filter_map(|(stored, space)| {
                if prefix.len() <= stored.len() {
                    stored
                        .starts_with(prefix)
                        .then(|| (stored.clone(), space.clone(), None))
                } else {
                    prefix
                        .starts_with(stored)
                        .then(|| (stored.clone(), space.clone(), Some(&prefix[stored.len()..])))
                }
            })
            .collect()
    }

    /// Applies `ops` as ONE fjall batch, so a commit is all or nothing: a prefix delete becomes
    /// removes of the committed keys under the prefix plus of this batch's earlier keys under
    /// it (the writer thread is the only committer, so the scan sees everything before `ops`).
    fn apply(&self, ops: &[Op]) -> std::result::Result<(), CommitError> {
        let mut spaces = Resolver::default();
        let mut on_disk: Vec<Vec<(usize, fjall::Slice)>> = Vec::new();
        for op in ops {
            if let Op::DeletePrefix { prefix } = op {
                let mut keys = Vec::new();
                for (stored, space, inner) in self.spaces_under(prefix) {
                    let at = spaces.index(self, &stored)?;
                    for kv in scan_of(&space, inner) {
                        keys.push((at, kv.key().map_err(commit_error)?));
                    }
                }
                on_disk.push(keys);
            }
        }
        let mut on_disk = on_disk.iter();
        let mut run: Vec<Write<'_>> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { buf, key_at } => {
                    let (record, key) = buf.split_at(*key_at);
                    let (space, bare) = spaces.resolve(self, key)?;
                    run.push(Write {
                        space,
                        bare: escape(bare),
                        full: Some(key),
                        record: Some(record),
                    });
                }
                Op::Delete { key } => {
                    let (space, bare) = spaces.resolve(self, key)?;
                    run.push(Write {
                        space,
                        bare: escape(bare),
                        full: Some(key),
                        record: None,
                    });
                }
                Op::DeletePrefix { prefix } => {
                    let earlier: Vec<Write<'_>> = run
                        .iter()
                        .filter(|w| w.full.is_some_and(|k| k.starts_with(prefix)))
                        .map(|w| Write {
                            record: None,
                            ..w.clone()
                        })
                        .collect();
                    run.extend(earlier);
                    let committed = on_disk.next().into_iter().flatten();
                    // Already escaped: as found on disk.
                    run.extend(committed.map(|(space, bare)| Write {
                        space: *space,
                        bare: Cow::Borrowed(bare.as_ref()),
                        full: None,
                        record: None,
                    }));
                }
            }
        }
        self.commit_run(&spaces.used, run).map_err(commit_error)
    }

    /// Commits `run` as one batch, with the next commit sequence number, then records that
    /// number in the marker.
    fn commit_run(&self, spaces: &[(Vec<u8>, Keyspace)], run: Vec<Write<'_>>) -> fjall::Result<()> {
        let mut batch = self.batch();
        let seq = self.seq.load(Ordering::Acquire) + 1;
        batch.insert(&self.meta, SEQ_KEY, seq.to_be_bytes());
        // Consecutive inserts into the write buffer (a skip list) walk the same, cached,
        // nodes, which makes a big batch several times faster than random order. The order is
        // by keyspace and key then position in the run (a stable sort) and a batch is applied
        // as one sequence number, so the last op on a key wins.
        for i in key_order(&run) {
            let w = &run[i];
            let space = &spaces[w.space].1;
            match w.record {
                Some(record) => batch.insert(space, &*w.bare, record),
                None => batch.remove(space, &*w.bare),
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

impl FjallEngine {
    /// Tests: waits at the barrier set in `before_create`, if any.
    #[cfg(test)]
    fn wait_before_create(&self) {
        let barrier = self.before_create.lock().clone();
        if let Some(barrier) = barrier {
            barrier.wait();
        }
    }
}

impl Engine for FjallEngine {
    fn size_hints(&self) -> Vec<(Vec<u8>, usize, u64)> {
        self.spaces
            .read()
            .iter()
            .map(|(stored, space)| {
                // `stored` is `namespace:`.
                let name = stored.strip_suffix(b":").unwrap_or(stored);
                (name.to_vec(), space.approximate_len(), space.disk_space())
            })
            .collect()
    }

    fn open_namespaces(&self, namespaces: &[Namespace]) -> Result<()> {
        let missing = |spaces: &BTreeMap<Vec<u8>, Keyspace>| -> Vec<&Namespace> {
            let mut seen = std::collections::BTreeSet::new();
            namespaces
                .iter()
                .filter(|ns| {
                    let prefix = ns.prefix();
                    !spaces.contains_key(&prefix) && seen.insert(prefix)
                })
                .collect()
        };
        if missing(&self.spaces.read()).is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        self.wait_before_create();
        // Counted and created under the write lock: two opens of new namespaces racing at
        // the limit cannot both find a place left.
        let mut spaces = self.spaces.write();
        let new = missing(&spaces);
        if new.is_empty() {
            // Created by another open since the read above.
            return Ok(());
        }
        let held = spaces.len();
        if held + new.len() > MAX_NAMESPACES {
            let first_refused = new[MAX_NAMESPACES.saturating_sub(held).min(new.len() - 1)];
            return Err(Error::from(crate::TooManyNamespacesError {
                path: self.path.parent().unwrap_or(&self.path).to_owned(),
                namespace: first_refused.as_str().to_owned(),
                held,
                new: new.len(),
                limit: MAX_NAMESPACES,
            }));
        }
        for namespace in new {
            self.create_space(&mut spaces, namespace)
                .map_err(|e| classify(&self.path, e))?;
        }
        Ok(())
    }

    fn drop_namespace(&self, namespace: &Namespace) -> Result<bool> {
        // Under the write lock that counts namespaces: a new namespace racing this sees the
        // place taken or free, never both.
        let mut spaces = self.spaces.write();
        let prefix = namespace.prefix();
        let Some(space) = spaces.get(&prefix).cloned() else {
            return Ok(false);
        };
        self.db
            .delete_keyspace(space)
            .map_err(|e| classify(&self.path, e))?;
        spaces.remove(&prefix);
        Ok(true)
    }

    fn scan(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        let classify = |e| classify(&self.path, e);
        // One snapshot for every keyspace: a commit spanning namespaces is seen whole or not
        // at all (each keyspace's own iterator would start at its own moment).
        let snapshot = self.db.snapshot();
        let mut key = Vec::new();
        for (stored, space, inner) in self.spaces_under(prefix) {
            for kv in snapshot_scan_of(&snapshot, &space, inner) {
                let (bare, record) = kv.into_inner().map_err(classify)?;
                key.clear();
                key.extend_from_slice(&stored);
                key.extend_from_slice(unescape(&bare));
                visit(&key, &record)?;
            }
        }
        if let Some(legacy) = &self.legacy {
            for kv in snapshot.prefix(legacy, prefix) {
                let (key, record) = kv.into_inner().map_err(classify)?;
                visit(&key, &record)?;
            }
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(colon) = key.iter().position(|&b| b == b':') else {
            return Ok(None);
        };
        let Some(space) = self.spaces.read().get(&key[..=colon]).cloned() else {
            return Ok(None);
        };
        let found = space
            .get(escape(&key[colon + 1..]))
            .map_err(|e| classify(&self.path, e))?;
        Ok(found.map(|record| record.to_vec()))
    }

    fn commit(&self, ops: &[Op]) -> std::result::Result<(), CommitError> {
        self.apply(ops)
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
        for space in self.keyspaces() {
            space.major_compact().map_err(fail)?;
        }
        Ok(())
    }

    fn close(&self) {
        self.close_within(CLOSE_FLUSH_WAIT);
    }
}

/// A keyspace a scan visits: its stored prefix (`namespace:`), the keyspace, and the prefix
/// to scan in it (`None`: all of it).
type Under<'p> = (Vec<u8>, Keyspace, Option<&'p [u8]>);

/// A fjall error as a failed commit.
fn commit_error(e: fjall::Error) -> CommitError {
    CommitError {
        reason: e.to_string(),
        // fjall poisons itself when a journal write or persist fails (an I/O error): every
        // later commit is `Poisoned` until the database is reopened.
        fatal: matches!(e, fjall::Error::Poisoned | fjall::Error::Io(_)),
    }
}

/// One write of a batch: its keyspace (an index into the batch's [`Resolver`]), the key in
/// it, the stored key (`namespace:key`; `None` for a key a prefix delete found on disk) and
/// the record (`None`: a remove).
#[derive(Clone)]
struct Write<'a> {
    space: usize,
    /// As stored: [`escape`]d.
    bare: Cow<'a, [u8]>,
    full: Option<&'a [u8]>,
    record: Option<&'a [u8]>,
}

/// The keyspaces a batch writes, each looked up once per batch.
#[derive(Default)]
struct Resolver {
    /// Stored prefix (`namespace:`) and keyspace.
    used: Vec<(Vec<u8>, Keyspace)>,
}

impl Resolver {
    /// The keyspace of the stored key `key` (`namespace:key`) and the key in it.
    fn resolve<'k>(
        &mut self,
        engine: &FjallEngine,
        key: &'k [u8],
    ) -> std::result::Result<(usize, &'k [u8]), CommitError> {
        let Some(colon) = key.iter().position(|&b| b == b':') else {
            return Err(CommitError {
                reason: "a key without a namespace reached the disk engine".into(),
                fatal: false,
            });
        };
        Ok((self.index(engine, &key[..=colon])?, &key[colon + 1..]))
    }

    /// The index of the keyspace of the stored prefix `stored` (`namespace:`).
    fn index(
        &mut self,
        engine: &FjallEngine,
        stored: &[u8],
    ) -> std::result::Result<usize, CommitError> {
        if let Some(at) = self.used.iter().rposition(|(p, _)| p == stored) {
            return Ok(at);
        }
        let found = engine.spaces.read().get(stored).cloned();
        let space = match found {
            Some(space) => space,
            None => {
                // Stores and `put_raw` open their namespaces first: this is a safety net.
                let name = std::str::from_utf8(&stored[..stored.len() - 1]).ok();
                let namespace =
                    name.and_then(|n| Namespace::new(n).ok())
                        .ok_or_else(|| CommitError {
                            reason: "a key with an invalid namespace reached the disk engine"
                                .into(),
                            fatal: false,
                        })?;
                // Within the limit like every other new namespace.
                engine
                    .open_namespaces(std::slice::from_ref(&namespace))
                    .map_err(|e| CommitError {
                        reason: e.to_string(),
                        fatal: false,
                    })?;
                engine
                    .spaces
                    .read()
                    .get(stored)
                    .cloned()
                    .ok_or_else(|| CommitError {
                        reason: format!("the keyspace of namespace {namespace} vanished"),
                        fatal: false,
                    })?
            }
        };
        self.used.push((stored.to_vec(), space));
        Ok(self.used.len() - 1)
    }
}

/// The positions of `run` in (keyspace, key) order, equal keys in run order (what a stable
/// sort gives), for a fraction of its cost: each position is sorted with one integer, the 8
/// bytes that follow the prefix every key shares (big-endian, zero-padded: the same order as
/// the bytes), with the keyspace in the top byte when the run writes more than one (the key's
/// bytes shifted down by one: still the same order), so most comparisons are one integer's,
/// and only equal heads compare keyspaces and the keys' remaining bytes.
fn key_order(run: &[Write<'_>]) -> Vec<usize> {
    let shared = match run.first() {
        Some(first) => run.iter().fold(first.bare.len(), |shared, w| {
            shared.min(common_prefix(&first.bare[..shared], &w.bare))
        }),
        None => 0,
    };
    let spaces = run.iter().map(|w| w.space).max().unwrap_or(0);
    let (Ok(_), Ok(top)) = (u32::try_from(run.len()), u8::try_from(spaces)) else {
        // Past 4 G writes or 256 keyspaces in one run: a plain stable sort.
        let mut order: Vec<usize> = (0..run.len()).collect();
        order.sort_by(|&a, &b| (run[a].space, &run[a].bare).cmp(&(run[b].space, &run[b].bare)));
        return order;
    };
    let mut heads: Vec<(u64, u32)> = run
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let rest = &w.bare[shared..];
            let mut head = [0u8; 8];
            let n = rest.len().min(8);
            head[..n].copy_from_slice(&rest[..n]);
            let head = u64::from_be_bytes(head);
            let head = match top {
                0 => head,
                _ => ((w.space as u64) << 56) | (head >> 8),
            };
            // `i` fits: the run's length does.
            (head, i as u32)
        })
        .collect();
    heads.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let (wa, wb) = (&run[a.1 as usize], &run[b.1 as usize]);
            (wa.space, &wa.bare[shared..])
                .cmp(&(wb.space, &wb.bare[shared..]))
                .then(a.1.cmp(&b.1))
        })
    });
    heads.into_iter().map(|(_, i)| i as usize).collect()
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
        let spaces = self.keyspaces();
        for space in &spaces {
            space.rotate_memtable().map_err(|e| e.to_string())?;
        }
        self.meta.rotate_memtable().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let sealed = || {
            spaces
                .iter()
                .chain([&self.meta])
                .map(Keyspace::sealed_memtable_count)
                .sum::<usize>()
        };
        while sealed() > 0 {
            if started.elapsed() > wait {
                return Err(format!("the write buffer was not flushed within {wait:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl FjallEngine {
    /// Every keyspace holding records: the namespaces' and a format-1 leftover.
    fn keyspaces(&self) -> Vec<Keyspace> {
        let mut all: Vec<Keyspace> = self.spaces.read().values().cloned().collect();
        all.extend(self.legacy.clone());
        all
    }
}

/// A key as its namespace's keyspace stores it. fjall refuses empty keys, and the empty key
/// is a valid one (`""`), so a key that is empty or starts with a zero byte gets a zero byte
/// in front; every other key is stored as it is. That keeps the keys' order (the empty key
/// first, then those starting with a zero byte, then the rest, each group in its own order)
/// and their prefixes (see [`scan_of`]), and a key whose first byte is not zero (every
/// string key but `""`, every number) is not copied.
fn escape(key: &[u8]) -> Cow<'_, [u8]> {
    match key.first() {
        Some(&first) if first != 0 => Cow::Borrowed(key),
        _ => Cow::Owned([&[0u8][..], key].concat()),
    }
}

/// The key that [`escape`] stored as `stored`.
fn unescape(stored: &[u8]) -> &[u8] {
    match stored.split_first() {
        Some((0, key)) => key,
        _ => stored,
    }
}

/// The records of `space` whose (unescaped) keys start with `prefix`; all of them for `None`
/// or an empty prefix.
fn scan_of(space: &Keyspace, prefix: Option<&[u8]>) -> fjall::Iter {
    match prefix {
        // The escape of a non-empty prefix is the prefix of the escapes of its keys; the empty
        // prefix matches every key, the escaped empty key (a lone zero byte) included.
        Some(prefix) if !prefix.is_empty() => space.prefix(escape(prefix)),
        _ => space.iter(),
    }
}

/// [`scan_of`] as of `snapshot`.
fn snapshot_scan_of(
    snapshot: &fjall::Snapshot,
    space: &Keyspace,
    prefix: Option<&[u8]>,
) -> fjall::Iter {
    match prefix {
        Some(prefix) if !prefix.is_empty() => snapshot.prefix(space, escape(prefix)),
        _ => snapshot.iter(space),
    }
}

/// `namespace:` as bytes.
fn stored_prefix(namespace: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(namespace.len() + 1);
    prefix.extend_from_slice(namespace.as_bytes());
    prefix.push(b':');
    prefix
}

/// The directory's format: 1 if it records none (directories written before formats were).
fn stored_format(path: &Path, meta: &Keyspace) -> Result<u64> {
    Ok(meta_u64(path, meta, FORMAT_KEY, "the format number")?.unwrap_or(1))
}

/// The big-endian u64 the meta keyspace holds under `key` (`what` names it in the error if
/// it is not 8 bytes), if any.
fn meta_u64(path: &Path, meta: &Keyspace, key: &[u8], what: &str) -> Result<Option<u64>> {
    let Some(bytes) = meta.get(key).map_err(|e| classify(path, e))? else {
        return Ok(None);
    };
    let bytes = <[u8; 8]>::try_from(bytes.as_ref()).map_err(|_| {
        Error::from(crate::CorruptError {
            path: path.to_owned(),
            reason: format!("{what} is {} bytes, not 8", bytes.len()),
        })
    })?;
    Ok(Some(u64::from_be_bytes(bytes)))
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
    Ok(meta_u64(path, meta, SEQ_KEY, "the commit sequence")?.unwrap_or(0))
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
        let tables: usize = engine.keyspaces().iter().map(|s| s.table_count()).sum();
        assert_eq!(tables, 1);
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
        /// `key_order` is a stable sort by keyspace and key: keys sharing long prefixes, keys that are
        /// prefixes of others, zero bytes (the head's padding), duplicates (the last op wins).
        #[test]
        fn key_order_is_a_stable_sort_by_key(
            prefix in proptest::collection::vec(0u8..3, 0..12),
            tails in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..12), 0..64),
            spread in proptest::sample::select(vec![0usize, 1, 300]),
        ) {
            let keys: Vec<Vec<u8>> = tails.iter().map(|t| [&prefix[..], t].concat()).collect();
            let run: Vec<Write<'_>> = keys
                .iter()
                .map(|k| Write {
                    // The first byte of the tail picks the keyspace: 0, 1 or 2 (packed into
                    // the head), or 0, 300 or 600 (too many for the head: the plain sort).
                    space: usize::from(k.get(prefix.len()).copied().unwrap_or(0)) * spread,
                    bare: Cow::Borrowed(k),
                    full: None,
                    record: None,
                })
                .collect();
            let mut expected: Vec<usize> = (0..run.len()).collect();
            expected.sort_by(|&a, &b| (run[a].space, &run[a].bare).cmp(&(run[b].space, &run[b].bare)));
            proptest::prop_assert_eq!(key_order(&run), expected);
        }
    }

    proptest::proptest! {
        /// [`escape`] keeps the order of keys and which keys a prefix matches ([`scan_of`]),
        /// and [`unescape`] inverts it; nothing it stores is empty (fjall refuses that).
        #[test]
        fn escaped_keys_keep_their_order_and_prefixes(
            a in proptest::collection::vec(0u8..3, 0..5),
            b in proptest::collection::vec(0u8..3, 0..5),
        ) {
            let (ea, eb) = (escape(&a), escape(&b));
            proptest::prop_assert!(!ea.is_empty());
            proptest::prop_assert_eq!(unescape(&ea), &a[..]);
            proptest::prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
            let matched = b.is_empty() || ea.starts_with(&escape(&b));
            proptest::prop_assert_eq!(matched, a.starts_with(&b));
        }
    }

    #[test]
    fn the_empty_key_and_keys_starting_with_zero_round_trip_through_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(&dir.path().join("fjall"), dir.path()).unwrap();
        let record = record::encode(&1u8, 0, crate::Format::MessagePack, &"k").unwrap();
        let keys: [&[u8]; 4] = [b"ns:", b"ns:\0", b"ns:\0a", b"ns:a"];
        let ops: Vec<Op> = keys.iter().map(|k| Op::put(k, &record)).collect();
        engine.commit(&ops).unwrap();
        let scanned = |prefix: &[u8]| {
            let mut seen = Vec::new();
            engine
                .scan(prefix, &mut |key, _| {
                    seen.push(key.to_vec());
                    Ok(())
                })
                .unwrap();
            seen
        };
        assert_eq!(scanned(b"ns:"), keys.map(<[u8]>::to_vec));
        assert_eq!(scanned(b"ns:\0"), keys[1..3].to_vec());
        for key in keys {
            assert_eq!(engine.get(key).unwrap().as_deref(), Some(&record[..]));
        }
        engine
            .commit(&[Op::Delete {
                key: b"ns:".to_vec(),
            }])
            .unwrap();
        assert_eq!(engine.get(b"ns:").unwrap(), None);
        engine
            .commit(&[Op::DeletePrefix {
                prefix: b"ns:\0".to_vec(),
            }])
            .unwrap();
        assert_eq!(scanned(b""), vec![b"ns:a".to_vec()]);
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

    /// A scan over several namespaces reads one snapshot: a commit spanning two namespaces
    /// made while the scan is in the first one is seen whole or not at all, never half
    /// (here: not at all, the scan having started before it).
    #[test]
    fn a_scan_sees_a_commit_over_two_namespaces_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(&dir.path().join("fjall"), dir.path()).unwrap();
        let record = record::encode(&1u8, 0, crate::Format::MessagePack, &"k").unwrap();
        engine
            .commit(&[Op::put(b"a:1", &record), Op::put(b"b:1", &record)])
            .unwrap();
        let mut seen = Vec::new();
        engine
            .scan(b"", &mut |key, _| {
                if seen.is_empty() {
                    // In the middle of the scan: one commit writing both namespaces.
                    engine
                        .commit(&[Op::put(b"a:2", &record), Op::put(b"b:2", &record)])
                        .unwrap();
                }
                seen.push(String::from_utf8_lossy(key).into_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, ["a:1", "b:1"], "a commit seen in part");
    }

    /// Two threads opening two new namespaces when the directory holds one fewer than the
    /// limit: both find their namespace missing at once (held at a barrier right there), and
    /// exactly one gets the last place; the directory never holds more than the limit.
    #[test]
    fn two_new_namespaces_racing_at_the_limit_open_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjall");
        let engine = open(&path, dir.path()).unwrap();
        for i in 0..MAX_NAMESPACES - 1 {
            engine
                .open_namespaces(&[Namespace::new(format!("ns{i}")).unwrap()])
                .unwrap();
        }
        *engine.before_create.lock() = Some(Arc::new(std::sync::Barrier::new(2)));
        let opened: Vec<Result<()>> = std::thread::scope(|s| {
            let racers: Vec<_> = ["late-a", "late-b"]
                .map(|name| {
                    let engine = &engine;
                    s.spawn(move || engine.open_namespaces(&[Namespace::new(name).unwrap()]))
                })
                .into_iter()
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        *engine.before_create.lock() = None;
        let refused = opened
            .iter()
            .filter(|r| matches!(r, Err(Error::TooManyNamespaces(_))))
            .count();
        assert_eq!(
            (opened.iter().filter(|r| r.is_ok()).count(), refused),
            (1, 1),
            "{opened:?}"
        );
        assert_eq!(engine.spaces.read().len(), MAX_NAMESPACES);
        // One record in each, so the reopen keeps them all (an empty namespace is dropped).
        let record = record::encode(&1u8, 0, crate::Format::MessagePack, &"k").unwrap();
        let prefixes: Vec<Vec<u8>> = engine.spaces.read().keys().cloned().collect();
        let ops: Vec<Op> = prefixes
            .iter()
            .map(|p| Op::put(&[&p[..], b"k"].concat(), &record))
            .collect();
        engine.commit(&ops).unwrap();
        drop(engine);
        let keyspaces = open(&path, dir.path()).unwrap().spaces.read().len();
        assert_eq!(keyspaces, MAX_NAMESPACES, "after a reopen");
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
            Migration::default(),
            DeadScan::unbounded(),
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
            Migration::default(),
            DeadScan::unbounded(),
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
                Migration::default(),
                DeadScan::unbounded(),
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
