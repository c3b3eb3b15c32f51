//! `DiskStore`: Pow's MnesiaCache on one node — every live entry in memory for reads, every
//! write also in an embedded engine on disk, so a restart (or a crash) logs nobody out.
//!
//! # Layout and guarantees
//! - One directory ([`DiskDb`]) holds many namespaces; a record's key is `namespace:` followed by
//!   the key's [`Key`](crate::Key) bytes, its value the encoded value followed by the deadline.
//!   The engine is fjall (an LSM tree with a journal) behind a private trait.
//! - **Open** locks the directory (a second open, in this process or another, is
//!   [`Error::DirLocked`](crate::Error::DirLocked) after a 0.5 s grace period for a holder that
//!   is exiting), loads everything, deletes the expired
//!   records of *every* namespace (pow#713) and restores every deadline into the memory tier's
//!   sweeper. It fails with [`Error::Timeout`](crate::Error::Timeout) past `open_timeout`.
//! - **Writes** apply to the memory tier and are queued, per key in the same order, to one
//!   writer thread that group-commits. [`Writes::Sync`] returns once the commit reached the OS
//!   (it survives `kill -9`; add `fsync_interval` for power loss); [`Writes::Async`] returns at
//!   once. If a commit fails, the call returns [`Error::Backend`](crate::Error::Backend) and the
//!   write stays in memory only.
//! - **Expiry**: the memory tier hides and sweeps expired entries; their records are *not*
//!   deleted one by one on disk. The engine's compaction filter drops them when it compacts,
//!   and the next open purges whatever is left, so disk use stays bounded without a delete per
//!   expiry.
//! - **Undecodable values** (a type changed between releases) are a *counted miss*, not an
//!   error: at open they are skipped with one warning per namespace, counted in
//!   [`DiskStore::undecodable`], and left on disk until they expire, are overwritten or deleted
//!   — so rolling back to the old release reads them again. Reads of them miss.
//! - **Close**: dropping the last handle blocks while the writer thread commits what is queued,
//!   flushes the engine's write buffer to tables, retires the journal (fjall replays its whole
//!   active journal at open, so a big one is padded past fjall's rotation mark, sealed and
//!   deleted once flushed: the next open replays nothing) and fsyncs; then the directory is
//!   unlocked. A crash skips all this and the next open replays the journal as usual.
//! - **Queue**: async writes return once queued; the queue holds up to `queue_capacity` ops
//!   (1 048 576 by default), so a burst goes at memory speed and a sustained stream at the
//!   writer's. The writer applies each batch (up to 65 536 ops) in key order, which makes the
//!   engine's skip-list inserts cache-friendly.
//! - **Corruption**: unreadable engine files are [`Error::Corrupt`](crate::Error::Corrupt) with
//!   the path, or with [`OnCorrupt::Discard`] a warning and an empty start.

mod builder;
mod db;
mod engine;
mod faults;
mod load;
mod lock;
mod raw;
mod record;
mod store;
mod writer;

pub use builder::{
    DiskBuilder, DiskDbBuilder, DiskStoreBuilder, ForDb, ForStore, OnCorrupt, Writes,
};
pub use db::DiskDb;
#[doc(hidden)]
pub use faults::Faults;
pub use load::OpenSummary;
pub use raw::RawRecord;
pub use store::DiskStore;
