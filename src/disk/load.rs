//! Opening a directory: scan every record of every namespace, purge the expired ones, keep the
//! live ones (raw) until a typed store for their namespace claims them.
//!
//! Purging every namespace is Pow's security fix for pow#713 (v1.0.34): before it, expired
//! entries of namespaces other than the one configured at start survived restarts. Here the purge
//! does not depend on which stores get opened: every expired record in the directory is deleted
//! before `open` returns.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{
    engine::{Engine, Op},
    record,
};
use crate::{
    error::{Error, Result},
    namespace::Namespace,
};

/// Log a progress line every this many records.
const PROGRESS_EVERY: usize = 250_000;
/// Delete expired records in batches of this many.
const PURGE_BATCH: usize = 4096;

/// The live records of one namespace that has not been opened yet, packed in one buffer
/// (no allocation per record).
#[derive(Default)]
pub(crate) struct RawEntries {
    bytes: Vec<u8>,
    /// Per record: where it starts in `bytes`, its key's length, its record's length.
    spans: Vec<(usize, u32, u32)>,
}

impl RawEntries {
    /// Appends a record: `key` is the key bytes after `namespace:`, `record` the whole record.
    fn push(&mut self, key: &[u8], record: &[u8]) {
        // fjall caps keys at 64 KiB and values at 4 GiB, so both lengths fit in a u32.
        self.spans
            .push((self.bytes.len(), key.len() as u32, record.len() as u32));
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(record);
    }

    /// Empty, with room for about `records` records of `bytes` bytes in all (a hint: more
    /// grows the buffers as usual). Room never written to costs no memory: the pages of an
    /// allocation this big are only mapped when first written.
    /// If the allocator refuses that much (a hint far past the memory there is: a directory
    /// full of expired records), the buffers start empty instead.
    fn with_room(records: usize, bytes: usize) -> Self {
        let mut raw = RawEntries::default();
        if raw.bytes.try_reserve_exact(bytes).is_err()
            || raw.spans.try_reserve_exact(records).is_err()
        {
            raw = RawEntries::default();
        }
        raw
    }

    /// Raw entries of `(key, record)` pairs, for tests.
    #[cfg(test)]
    pub(crate) fn of(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        let mut raw = RawEntries::default();
        for (key, record) in entries {
            raw.push(&key, &record);
        }
        raw
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// The key (after `namespace:`) and the record at `index`.
    pub fn get(&self, index: usize) -> (&[u8], &[u8]) {
        let (start, key, record) = self.spans[index];
        let split = start + key as usize;
        (
            &self.bytes[start..split],
            &self.bytes[split..split + record as usize],
        )
    }
}

/// What the load found.
#[derive(Default)]
pub(crate) struct Loaded {
    /// Live records by namespace bytes.
    pub by_namespace: HashMap<Box<[u8]>, RawEntries>,
    pub summary: OpenSummary,
    /// Per namespace name: roughly how many records and bytes it holds (the engine's hint).
    hints: HashMap<Box<[u8]>, (usize, usize)>,
    /// The namespace being filled. Records come in key order, so a namespace's records are
    /// contiguous: its name is validated and looked up once, not once per record.
    current: Option<(Box<[u8]>, RawEntries)>,
}

/// What opening a data directory found, for logs and monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenSummary {
    /// Live records loaded, over all namespaces.
    pub live: usize,
    /// Expired records deleted from disk (every namespace, pow#713), those dropped with the
    /// keyspace of a namespace that held nothing else included.
    pub purged: usize,
    /// Records that are not strata's (no `namespace:` in the key, or too short): left alone
    /// and logged.
    pub foreign: usize,
    /// How long the load took.
    pub elapsed: Duration,
}

/// Scans everything, deletes expired records, returns the live ones.
/// `started` is when opening began: the whole open must fit in `timeout`.
pub(crate) fn load(
    engine: &dyn Engine,
    now: u64,
    started: Instant,
    timeout: Duration,
) -> Result<Loaded> {
    check_timeout(started, timeout)?;
    // Each namespace's buffer sized once from the engine's hint instead of grown by doubling
    // (each doubling copied everything so far and faulted in fresh pages: ~10 % of a 1 M
    // session reopen's samples). Records take about what they take on disk, plus a quarter
    // for compression and the key bytes a keyspace leaves out.
    let hints = engine
        .size_hints()
        .into_iter()
        .map(|(name, records, bytes)| {
            let bytes = usize::try_from(bytes.saturating_add(bytes / 4)).unwrap_or(usize::MAX);
            (name.into_boxed_slice(), (records, bytes))
        })
        .collect();
    let mut loaded = Loaded {
        hints,
        ..Loaded::default()
    };
    let mut expired = Vec::new();
    let mut seen = 0usize;
    engine.scan(b"", &mut |key, rec| {
        seen += 1;
        if seen.is_multiple_of(1024) {
            check_timeout(started, timeout)?;
        }
        if seen.is_multiple_of(PROGRESS_EVERY) {
            tracing::info!(records = seen, "loading the strata disk store");
        }
        loaded.keep(key, rec, now, &mut expired);
        Ok(())
    })?;
    loaded.finish_namespace();
    loaded.summary.purged = purge(engine, expired)?;
    loaded.summary.elapsed = started.elapsed();
    let s = &loaded.summary;
    tracing::info!(
        live = s.live,
        purged = s.purged,
        foreign = s.foreign,
        elapsed_ms = s.elapsed.as_millis() as u64,
        "strata disk store loaded"
    );
    Ok(loaded)
}

/// The records of `namespace` as the engine holds them now (for a namespace written since the
/// open, whose records the open's load no longer has all of). Records that are not strata's
/// are left out, as the open leaves them; expired ones are kept (the tier's load deletes them).
pub(crate) fn scan_namespace(engine: &dyn Engine, namespace: &Namespace) -> Result<RawEntries> {
    let prefix = namespace.prefix();
    let mut raw = RawEntries::default();
    engine.scan(&prefix, &mut |key, rec| {
        if let (Some(key), Some(_)) = (key.strip_prefix(prefix.as_slice()), record::deadline(rec)) {
            raw.push(key, rec);
        }
        Ok(())
    })?;
    Ok(raw)
}

impl Loaded {
    fn keep(&mut self, key: &[u8], rec: &[u8], now: u64, expired: &mut Vec<Vec<u8>>) {
        let split = self.namespace_len(key);
        let (Some(split), Some(deadline)) = (split, record::deadline(rec)) else {
            self.summary.foreign += 1;
            // Not the key itself: it can hold a session id (a record cut short, say).
            tracing::warn!(
                key_bytes = key.len(),
                "found a record that strata did not write in the disk store; leaving it alone"
            );
            return;
        };
        if record::is_expired(deadline, now) {
            expired.push(key.to_vec());
            return;
        }
        self.summary.live += 1;
        let namespace = &key[..split];
        self.entries_of(namespace).push(&key[split + 1..], rec);
    }

    /// The length of `key`'s namespace, `None` if `key` is not `namespace:key`.
    fn namespace_len(&self, key: &[u8]) -> Option<usize> {
        if let Some((ns, _)) = &self.current {
            if key.len() > ns.len() && key.starts_with(ns) && key[ns.len()] == b':' {
                return Some(ns.len());
            }
        }
        crate::namespace::split_stored_key(key).map(|(ns, _)| ns.as_str().len())
    }

    /// The entries of `namespace`, made the current one if it is not.
    fn entries_of(&mut self, namespace: &[u8]) -> &mut RawEntries {
        if self
            .current
            .as_ref()
            .is_none_or(|(ns, _)| **ns != *namespace)
        {
            self.finish_namespace();
            let entries = self.by_namespace.remove(namespace).unwrap_or_else(|| {
                match self.hints.get(namespace) {
                    Some(&(records, bytes)) => RawEntries::with_room(records, bytes),
                    None => RawEntries::default(),
                }
            });
            self.current = Some((namespace.into(), entries));
        }
        match &mut self.current {
            Some((_, entries)) => entries,
            None => unreachable!("set above"),
        }
    }

    /// Files the current namespace's entries under its name.
    fn finish_namespace(&mut self) {
        if let Some((namespace, entries)) = self.current.take() {
            self.by_namespace.insert(namespace, entries);
        }
    }
}

fn purge(engine: &dyn Engine, expired: Vec<Vec<u8>>) -> Result<usize> {
    let count = expired.len();
    let mut ops = Vec::with_capacity(PURGE_BATCH.min(count));
    for key in expired {
        ops.push(Op::Delete { key });
        if ops.len() == PURGE_BATCH {
            commit(engine, &mut ops)?;
        }
    }
    commit(engine, &mut ops)?;
    Ok(count)
}

fn commit(engine: &dyn Engine, ops: &mut Vec<Op>) -> Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    engine
        .commit(ops)
        .map_err(|e| Error::backend("purging expired records", e.reason))?;
    ops.clear();
    Ok(())
}

fn check_timeout(started: Instant, timeout: Duration) -> Result<()> {
    if started.elapsed() > timeout {
        return Err(Error::from(crate::TimeoutError {
            context: "loading the disk store".into(),
            after: timeout,
        }));
    }
    Ok(())
}
