//! Raw records of a data directory, for tools such as the `strata` CLI: every namespace, keys
//! and values as bytes, exactly as stored (values keep their codec header, so
//! [`value_to_json`](crate::codec::value_to_json) can render any of them).
//!
//! Reads scan the engine, so they see what every store of this `DiskDb` has committed. Writes
//! go through the writer thread like a store's, but bypass the memory tiers: they are refused for
//! a namespace that has a store open in this `DiskDb` (its tier would not see them). A store
//! opened later in this `DiskDb` sees them: it waits for their commit and loads its namespace
//! from the engine rather than from what the open loaded.

use super::{db::DiskDb, engine::Op, record};
use crate::{
    error::{Error, Result},
    namespace::Namespace,
    time::UnixMillis,
};

/// One record as stored in a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// The namespace (the key's part before the first `:`).
    pub namespace: String,
    /// The key's bytes after `namespace:` ([`Key::encode_key`](crate::Key::encode_key)).
    pub key: Vec<u8>,
    /// The encoded value ([`encode_value`](crate::codec::encode_value)).
    pub value: Vec<u8>,
    /// When the entry expires, in Unix milliseconds; `None` if never.
    pub deadline: Option<UnixMillis>,
}

impl DiskDb {
    /// Visits every live record of every namespace (or of `namespace` only), in key order.
    /// Expired records and records that are not strata's are skipped.
    pub fn scan_raw(
        &self,
        namespace: Option<&str>,
        visit: &mut dyn FnMut(RawRecord) -> Result<()>,
    ) -> Result<()> {
        let prefix = match namespace {
            Some(ns) => Namespace::new(ns)?.prefix(),
            None => Vec::new(),
        };
        let now = self.inner.opts.clock.now_ms();
        self.inner
            .engine
            .scan(&prefix, &mut |key, rec| match parse(key, rec) {
                Some(raw) if raw.deadline.is_none_or(|d| d > now) => visit(raw),
                _ => Ok(()),
            })
    }

    /// Writes `records` (replacing what their keys held) in ONE commit (all or none) and returns
    /// once it is committed.
    /// Refused with [`Error::InvalidConfig`] for a namespace with a store open in this `DiskDb`;
    /// a store of its namespace opened later in this `DiskDb` (even while this call is still
    /// committing) holds the records.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{codec::{encode_value, Format}, DiskDb, RawRecord, Store};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = DiskDb::builder().dir(dir.path()).open()?;
    /// let value = encode_value(&7u64, Format::MessagePack, "k")?;
    /// db.put_raw(vec![RawRecord { namespace: "sessions".into(), key: b"k".to_vec(), value, deadline: None }])
    ///     .await?;
    /// let sessions = db.store::<String, u64>("sessions")?;
    /// assert_eq!(sessions.get(&"k".into()).await?, Some(7));
    /// # Ok(()) }
    /// ```
    pub async fn put_raw(&self, records: Vec<RawRecord>) -> Result<()> {
        let mut namespaces: Vec<Namespace> = Vec::new();
        for raw in &records {
            if namespaces
                .last()
                .is_none_or(|ns| ns.as_str() != raw.namespace)
            {
                namespaces.push(Namespace::new(&raw.namespace)?);
            }
        }
        namespaces.sort_unstable();
        namespaces.dedup();
        let writer = &self.inner.writer;
        // Checked and queued under the lock `DiskDb::store` loads a namespace under: a store
        // opened before this sees it open and it is refused; a store opened after it waits for
        // its commit and loads its namespace from the engine, not from the open's snapshot.
        // The wait for room in a full queue comes after the lock is released, so opening a
        // store of another namespace never waits behind a slow writer
        // (`disk_faults::a_put_raw_waiting_for_room_does_not_hold_up_opening_a_store`).
        let (ack, room) = {
            let tiers = self.inner.tiers.lock();
            if let Some(open) = namespaces.iter().find(|ns| tiers.contains_key(*ns)) {
                return Err(Error::config(
                    "namespace",
                    format!("{open} has a store open in this DiskDb; write through the store"),
                ));
            }
            // Every new namespace at once: past the limit, none is created and nothing written.
            self.inner.engine.open_namespaces(&namespaces)?;
            let ops = records.into_iter().map(raw_op).collect();
            let queued = writer.send_then_wait(ops, true)?;
            self.inner.raw_written.lock().extend(namespaces);
            drop(tiers);
            queued
        };
        room.wait();
        match ack {
            Some(ack) => writer.wait(ack).await,
            None => Ok(()),
        }
    }

    /// Makes room in this directory for every namespace of `namespaces`, all or none: the
    /// ones it does not hold yet are created together, or, if they would take it past the
    /// most namespaces one directory takes (64), none is and the call is
    /// [`Error::TooManyNamespaces`](crate::Error::TooManyNamespaces). A tool writing records
    /// of many namespaces in several [`put_raw`](DiskDb::put_raw) batches (`strata load`)
    /// calls it first, so a dump that cannot fit is refused before anything is written.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = strata::DiskDb::builder().dir(dir.path()).open()?;
    /// db.open_namespaces(["sessions", "tokens"])?;
    /// let too_many: Vec<String> = (0..64).map(|i| format!("ns{i}")).collect();
    /// let err = db.open_namespaces(&too_many).unwrap_err();
    /// assert!(matches!(err, strata::Error::TooManyNamespaces(_)));
    /// // None of the 64 was created: 62 of them still fit.
    /// db.open_namespaces(&too_many[..62])?;
    /// # Ok(()) }
    /// ```
    pub fn open_namespaces<I>(&self, namespaces: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let namespaces = namespaces
            .into_iter()
            .map(Namespace::new)
            .collect::<Result<Vec<_>>>()?;
        self.inner.engine.open_namespaces(&namespaces)
    }
}

/// The put of `raw` (its namespace already open).
fn raw_op(raw: RawRecord) -> Op {
    let mut buf = Vec::with_capacity(raw.value.len() + 8 + raw.namespace.len() + 1 + raw.key.len());
    buf.extend_from_slice(&raw.value);
    buf.extend_from_slice(&raw.deadline.unwrap_or(0).to_be_bytes());
    let key_at = buf.len();
    buf.extend_from_slice(raw.namespace.as_bytes());
    buf.push(b':');
    buf.extend_from_slice(&raw.key);
    Op::Put { buf, key_at }
}

/// A stored `(key, record)` as a [`RawRecord`], or `None` if it is not strata's.
fn parse(key: &[u8], rec: &[u8]) -> Option<RawRecord> {
    let (namespace, key) = crate::namespace::split_stored_key(key)?;
    let deadline = record::deadline(rec)?;
    Some(RawRecord {
        namespace: namespace.as_str().to_owned(),
        key: key.to_vec(),
        value: record::value(rec).to_vec(),
        deadline: (deadline != 0).then_some(deadline),
    })
}

/// Decodes a stored `(key, record)` the way opening a directory does: `None` for a record
/// strata did not write (no `namespace:` or too short), else the key, the value and the
/// deadline (0: never), or an error saying why it does not decode as `K`/`V`. Never panics,
/// whatever the bytes (property-tested in `tests/disk_faults.rs`). Hidden: a test hook over
/// the real decoders, not an API.
///
/// ```
/// // A value that is not a strata codec payload, then an 8-byte deadline trailer (0: never).
/// let decoded = strata::decode_stored_record::<String, u64>(b"ns:k", b"garbage!\0\0\0\0\0\0\0\0");
/// assert!(matches!(decoded, Some(Err(_))));
/// // Too short to hold a deadline: not a strata record at all.
/// assert!(strata::decode_stored_record::<String, u64>(b"ns:k", b"garbage").is_none());
/// ```
#[doc(hidden)]
pub fn decode_stored_record<K: crate::Key, V: serde::de::DeserializeOwned>(
    key: &[u8],
    record: &[u8],
) -> Option<std::result::Result<(K, V, u64), String>> {
    let raw = parse(key, record)?;
    Some(super::db::decode_entry::<K, V>(&raw.key, record))
}
