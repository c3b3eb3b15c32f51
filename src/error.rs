//! The one error type of strata. Every variant says what went wrong and what to do about it.

use std::{path::PathBuf, time::Duration};

/// A boxed error from a driver or engine underneath a store, kept as the `#[source]`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, strata::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strata.
///
/// The enum is `#[non_exhaustive]`: match the variants you handle and keep a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A TTL of zero was given. Zero does not mean "forever" in strata.
    #[error("invalid TTL {ttl:?}: a TTL must be greater than zero; pass `None` for an entry that never expires")]
    InvalidTtl {
        /// The rejected TTL.
        ttl: Duration,
    },

    /// A namespace was empty, too long or contained a forbidden character.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The rejected namespace.
        namespace: String,
        /// Why it was rejected and what is allowed.
        reason: &'static str,
    },

    /// A builder option had a value that cannot work.
    #[error("invalid option `{option}`: {reason}")]
    InvalidConfig {
        /// The option's name as the builder spells it.
        option: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// `incr`/`decr` would overflow the integer type of the value.
    #[error("counter {key} would overflow: reset it with `put` or use a wider integer type")]
    Overflow {
        /// The key of the counter, rendered for humans.
        key: String,
    },

    /// The store was closed or dropped (or its background worker died) while a call was in flight.
    #[error("the store is closed: {reason}; build or open a new store")]
    Closed {
        /// What closed it.
        reason: String,
    },

    /// A backend (Redis, the disk engine) failed. The driver's error is the source.
    #[error("backend error while {context}: {source}")]
    Backend {
        /// What strata was doing, e.g. `"GET sessions:abc"`.
        context: String,
        /// The driver or engine error.
        #[source]
        source: BoxError,
    },

    /// An operation did not finish within its configured timeout.
    #[error("timed out after {after:?} while {context}; raise the timeout or check the backend")]
    Timeout {
        /// What strata was waiting for.
        context: String,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// A write reached the Redis master, but fewer replicas than `wait_for_replicas` asked for
    /// acknowledged it in time (`WAIT`): it is applied, and it may be lost if the master fails
    /// before a replica has it.
    #[error(
        "{context}: only {acknowledged} of {wanted} replicas acknowledged the write within \
         {after:?}; it is applied on the master but may be lost in a failover — check the \
         replicas (`INFO replication`) and retry if it must be durable"
    )]
    NotReplicated {
        /// The write.
        context: String,
        /// How many replicas acknowledged it.
        acknowledged: u64,
        /// How many were asked for.
        wanted: u64,
        /// How long `WAIT` waited.
        after: Duration,
    },

    /// A stored value could not be decoded (corrupt bytes, or the value's type changed).
    #[error(
        "value under key {key} could not be decoded: {reason}; delete the key or migrate the data"
    )]
    Decode {
        /// The key whose value failed to decode, rendered for humans.
        key: String,
        /// What was wrong with the bytes.
        reason: String,
    },

    /// A value could not be encoded for disk or the network.
    #[error("value under key {key} could not be encoded: {reason}")]
    Encode {
        /// The key being written, rendered for humans.
        key: String,
        /// What serde reported.
        reason: String,
    },

    /// A data directory cannot be used (missing parent, not writable, not a directory).
    #[error("data directory {path} cannot be used: {source}; create it or point `dir` at a writable directory")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Another process (or another store in this process) holds the data directory.
    #[error("data directory {path} is locked by another process; stop it or give each node its own directory")]
    DirLocked {
        /// The locked directory.
        path: PathBuf,
    },

    /// A file on disk is corrupt.
    #[error("data in {path} is corrupt: {reason}; open with `on_corrupt(OnCorrupt::Discard)` to start empty")]
    Corrupt {
        /// The corrupt file or directory.
        path: PathBuf,
        /// What was found.
        reason: String,
    },

    /// The disk engine recovered fewer commits than it had acknowledged: its journal was
    /// damaged (garbled or cut short) and the engine's recovery dropped the commits after the
    /// damage. Opening refuses rather than load silently fewer entries.
    #[error("the disk store in {path} recovered commit {recovered} but had acknowledged commit {acknowledged}: its journal was damaged and {lost} acknowledged commit(s) are missing; open with `accept_data_loss(true)` to continue with what survived, or `on_corrupt(OnCorrupt::Discard)` to start empty", lost = acknowledged.saturating_sub(*recovered))]
    LostCommits {
        /// The data directory.
        path: PathBuf,
        /// The last commit acknowledged to a caller (from the commit marker).
        acknowledged: u64,
        /// The last commit the engine recovered.
        recovered: u64,
    },

    /// A disk store stopped taking work because its engine failed in a way later calls would
    /// repeat (a journal write failed: disk full, I/O error) or an async write it acknowledged
    /// could not be committed. Every later call of every handle on the directory returns this.
    #[error("the disk store in {path} is unavailable: {reason}; free disk space or fix the disk, then drop every handle and reopen the directory (what was committed before the failure is kept)")]
    Unavailable {
        /// The data directory.
        path: PathBuf,
        /// The engine failure that made it unavailable.
        reason: String,
    },

    /// An I/O error outside a data directory (dump files, sockets).
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What strata was doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The store cannot do this operation (a user store that implements only the four required
    /// methods cannot report TTLs, for instance).
    #[error("`{operation}` is not supported by this store; implement `Store::{operation}` for it")]
    Unsupported {
        /// The operation's method name.
        operation: &'static str,
    },

    /// A string posted back as a session handle is not one (see `sessions::SessionHandle`).
    #[error("not a session handle: {reason}; post back a handle that `sessions_of` listed")]
    InvalidSessionHandle {
        /// What is wrong with it.
        reason: String,
    },

    /// A loader passed to `fetch` failed or panicked; every waiting caller gets this.
    #[error("loader for key {key} failed: {reason}")]
    Loader {
        /// The key being loaded, rendered for humans.
        key: String,
        /// The loader's error message, or the panic message.
        reason: String,
    },

    /// A [`crate::Transaction`] handle was used after its `Cache::transaction` call returned.
    #[error("this transaction has ended: use its handle only inside the closure given to `Cache::transaction`, and start a new transaction for more work")]
    TransactionEnded,

    /// A cache dump file cannot be loaded (truncated, checksum mismatch, not a dump, or written
    /// by a newer strata). It was checked before anything was written: nothing was loaded.
    #[error("dump file {path} cannot be loaded: {reason}; nothing was loaded")]
    InvalidDump {
        /// The dump file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },
}

impl Error {
    /// Wraps a backend driver error with what strata was doing when it happened.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(option: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            option,
            reason: reason.into(),
        }
    }

    /// True for errors that may go away if the call is retried (backend trouble, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Backend { .. } | Error::Timeout { .. } | Error::NotReplicated { .. }
        )
    }
}
