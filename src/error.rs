//! The one error type of strata. Every variant says what went wrong and what to do about it.
//!
//! [`Error`] is kept small (24 bytes, pinned by a test below) because every read returns a
//! `Result<Option<V>>`: a variant with more than 16 bytes of fields keeps them behind a `Box`
//! (an error type of its own, named after the variant, with the same fields and message), so
//! that a `Result<Option<u64>>` is 24 bytes instead of 56 and a hit is not copied through a
//! large return slot (measured in `benches/compare/cache.rs`).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// A boxed error from a driver or engine underneath a store, kept as the `#[source]`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, strata::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strata.
///
/// The enum is `#[non_exhaustive]`: match the variants you handle and keep a `_` arm.
///
/// A variant whose fields would make every `Result` larger holds them in a boxed error type
/// named after it ([`DecodeError`] for [`Error::Decode`], ...), with the same fields and the same
/// message; build one with `Error::from(DecodeError { .. })` and read its fields through the box
/// (`Error::Decode(e) => &e.key`). A pattern `Error::Decode { .. }` matches it as before. The
/// single-text variants keep their field as a `Box<str>` (`Box<Path>` for [`Error::DirLocked`]).
/// (Changed in 2026-12, when the fields were inline: `Error` was 56 bytes, now 24.)
///
/// ```
/// use strata::{DecodeError, Error};
/// let e = Error::from(DecodeError { key: "a".into(), reason: "not MessagePack".into() });
/// assert!(matches!(&e, Error::Decode(d) if d.key == "a"));
/// assert_eq!(
///     e.to_string(),
///     "value under key a could not be decoded: not MessagePack; delete the key or migrate the data"
/// );
/// ```
///
/// # Upgrading code written before 2026-12
///
/// Fourteen variants changed from inline fields to one boxed field: `InvalidNamespace`,
/// `InvalidConfig`, `Backend`, `Timeout`, `NotReplicated`, `Decode`, `Encode`, `DataDir`,
/// `Corrupt`, `LostCommits`, `Unavailable`, `Io`, `Loader` and `InvalidDump`, each now holding
/// the error type of the same name with an `Error` suffix. What to change:
///
/// | before | now |
/// |---|---|
/// | `Error::Decode { key, reason } => ..` | `Error::Decode(e) => ..` and use `e.key`, `e.reason` |
/// | `Error::Decode { .. } => ..` | unchanged (a `{ .. }` pattern matches a tuple variant) |
/// | `Error::Timeout { context, after }` (to build one) | `Error::from(TimeoutError { context, after })` |
/// | `Error::Overflow { key }` with `key: String` | `key` is a `Box<str>`: `&*key`, or `key.into()` to build |
/// | `Error::Closed { reason }`, `Error::InvalidSessionHandle { reason }` | `reason` is a `Box<str>` |
/// | `Error::DirLocked { path }` with `path: PathBuf` | `path` is a `Box<Path>`: `path.to_path_buf()` |
///
/// The messages (`Display`), the `source()` chains and [`Error::is_transient`] are unchanged; the
/// `Debug` output now names the boxed type (`Decode(DecodeError { key: .. })`).
///
/// ```
/// use std::time::Duration;
/// use strata::{Error, TimeoutError};
///
/// fn what_to_do(e: &Error) -> String {
///     match e {
///         // Before: `Error::Timeout { context, after } => ..`
///         Error::Timeout(t) => format!("retry {} (waited {:?})", t.context, t.after),
///         // Before: `Error::Overflow { key } => ..` with `key: String`
///         Error::Overflow { key } => format!("reset counter {}", &**key),
///         Error::Decode { .. } => "delete the key".to_owned(),
///         _ => e.to_string(),
///     }
/// }
///
/// let e = Error::from(TimeoutError { context: "GET a".into(), after: Duration::from_secs(1) });
/// assert_eq!(what_to_do(&e), "retry GET a (waited 1s)");
/// let e = Error::Overflow { key: "hits".into() };
/// assert_eq!(what_to_do(&e), "reset counter hits");
/// ```
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
    ///
    /// Its fields are in [`InvalidNamespaceError`].
    #[error(transparent)]
    InvalidNamespace(Box<InvalidNamespaceError>),

    /// A builder option had a value that cannot work.
    ///
    /// Its fields are in [`InvalidConfigError`].
    #[error(transparent)]
    InvalidConfig(Box<InvalidConfigError>),

    /// `incr`/`decr` would overflow the integer type of the value.
    #[error("counter {key} would overflow: reset it with `put` or use a wider integer type")]
    Overflow {
        /// The key of the counter, rendered for humans.
        key: Box<str>,
    },

    /// The store was closed or dropped (or its background worker died) while a call was in flight.
    #[error("the store is closed: {reason}; build or open a new store")]
    Closed {
        /// What closed it.
        reason: Box<str>,
    },

    /// A backend (Redis, the disk engine) failed. The driver's error is the source.
    ///
    /// Its fields are in [`BackendError`].
    #[error(transparent)]
    Backend(Box<BackendError>),

    /// An operation did not finish within its configured timeout.
    ///
    /// Its fields are in [`TimeoutError`].
    #[error(transparent)]
    Timeout(Box<TimeoutError>),

    /// A write reached the Redis master, but fewer replicas than `wait_for_replicas` asked for
    /// acknowledged it in time (`WAIT`): it is applied, and it may be lost if the master fails
    /// before a replica has it.
    ///
    /// Its fields are in [`NotReplicatedError`].
    #[error(transparent)]
    NotReplicated(Box<NotReplicatedError>),

    /// A stored value could not be decoded (corrupt bytes, or the value's type changed).
    ///
    /// Its fields are in [`DecodeError`].
    #[error(transparent)]
    Decode(Box<DecodeError>),

    /// A value could not be encoded for disk or the network.
    ///
    /// Its fields are in [`EncodeError`].
    #[error(transparent)]
    Encode(Box<EncodeError>),

    /// A data directory cannot be used (missing parent, not writable, not a directory).
    ///
    /// Its fields are in [`DataDirError`].
    #[error(transparent)]
    DataDir(Box<DataDirError>),

    /// Another process (or another store in this process) holds the data directory.
    #[error("data directory {} is locked by another process; stop it or give each node its own directory", path.display())]
    DirLocked {
        /// The locked directory.
        path: Box<Path>,
    },

    /// A file on disk is corrupt.
    ///
    /// Its fields are in [`CorruptError`].
    #[error(transparent)]
    Corrupt(Box<CorruptError>),

    /// The disk engine recovered fewer commits than it had acknowledged: its journal was
    /// damaged (garbled or cut short) and the engine's recovery dropped the commits after the
    /// damage. Opening refuses rather than load silently fewer entries.
    ///
    /// Its fields are in [`LostCommitsError`].
    #[error(transparent)]
    LostCommits(Box<LostCommitsError>),

    /// A data directory already holds as many namespaces as one directory takes
    /// (`DiskDb`: each namespace is an engine keyspace of its own) and a new one was asked for.
    ///
    /// Its fields are in [`TooManyNamespacesError`].
    #[error(transparent)]
    TooManyNamespaces(Box<TooManyNamespacesError>),

    /// A data directory was written in an on-disk format newer than this strata reads.
    ///
    /// Its fields are in [`NewerFormatError`].
    #[error(transparent)]
    NewerFormat(Box<NewerFormatError>),

    /// A disk store stopped taking work because its engine failed in a way later calls would
    /// repeat (a journal write failed: disk full, I/O error) or an async write it acknowledged
    /// could not be committed. Every later call of every handle on the directory returns this.
    ///
    /// Its fields are in [`UnavailableError`].
    #[error(transparent)]
    Unavailable(Box<UnavailableError>),

    /// An I/O error outside a data directory (dump files, sockets).
    ///
    /// Its fields are in [`IoError`].
    #[error(transparent)]
    Io(Box<IoError>),

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
        reason: Box<str>,
    },

    /// A loader passed to `fetch` failed or panicked; every waiting caller gets this.
    ///
    /// Its fields are in [`LoaderError`].
    #[error(transparent)]
    Loader(Box<LoaderError>),

    /// A [`crate::Transaction`] handle was used after its `Cache::transaction` call returned.
    #[error("this transaction has ended: use its handle only inside the closure given to `Cache::transaction`, and start a new transaction for more work")]
    TransactionEnded,

    /// A cache dump file cannot be loaded (truncated, checksum mismatch, not a dump, or written
    /// by a newer strata). It was checked before anything was written: nothing was loaded.
    ///
    /// Its fields are in [`InvalidDumpError`].
    #[error(transparent)]
    InvalidDump(Box<InvalidDumpError>),
}

/// The fields of [`Error::InvalidNamespace`]: a namespace was empty, too long or contained a forbidden character.
#[derive(Debug, thiserror::Error)]
#[error("invalid namespace {namespace:?}: {reason}")]
pub struct InvalidNamespaceError {
    /// The rejected namespace.
    pub namespace: String,
    /// Why it was rejected and what is allowed.
    pub reason: &'static str,
}

/// The fields of [`Error::InvalidConfig`]: a builder option had a value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid option `{option}`: {reason}")]
pub struct InvalidConfigError {
    /// The option's name as the builder spells it.
    pub option: &'static str,
    /// What is wrong and what is allowed.
    pub reason: String,
}

/// The fields of [`Error::Backend`]: a backend (Redis, the disk engine) failed. The driver's error is the source.
#[derive(Debug, thiserror::Error)]
#[error("backend error while {context}: {source}")]
pub struct BackendError {
    /// What strata was doing, e.g. `"GET sessions:abc"`.
    pub context: String,
    /// The driver or engine error.
    #[source]
    pub source: BoxError,
}

/// The fields of [`Error::Timeout`]: an operation did not finish within its configured timeout.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {after:?} while {context}; raise the timeout or check the backend")]
pub struct TimeoutError {
    /// What strata was waiting for.
    pub context: String,
    /// The timeout that elapsed.
    pub after: Duration,
}

/// The fields of [`Error::NotReplicated`]: a write reached the Redis master, but fewer replicas than `wait_for_replicas` asked for
/// acknowledged it in time (`WAIT`): it is applied, and it may be lost if the master fails
/// before a replica has it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{context}: only {acknowledged} of {wanted} replicas acknowledged the write within \
     {after:?}; it is applied on the master but may be lost in a failover — check the \
     replicas (`INFO replication`) and retry if it must be durable"
)]
pub struct NotReplicatedError {
    /// The write.
    pub context: String,
    /// How many replicas acknowledged it.
    pub acknowledged: u64,
    /// How many were asked for.
    pub wanted: u64,
    /// How long `WAIT` waited.
    pub after: Duration,
}

/// The fields of [`Error::Decode`]: a stored value could not be decoded (corrupt bytes, or the value's type changed).
#[derive(Debug, thiserror::Error)]
#[error("value under key {key} could not be decoded: {reason}; delete the key or migrate the data")]
pub struct DecodeError {
    /// The key whose value failed to decode, rendered for humans.
    pub key: String,
    /// What was wrong with the bytes.
    pub reason: String,
}

/// The fields of [`Error::Encode`]: a value could not be encoded for disk or the network.
#[derive(Debug, thiserror::Error)]
#[error("value under key {key} could not be encoded: {reason}")]
pub struct EncodeError {
    /// The key being written, rendered for humans.
    pub key: String,
    /// What serde reported.
    pub reason: String,
}

/// The fields of [`Error::DataDir`]: a data directory cannot be used (missing parent, not writable, not a directory).
#[derive(Debug, thiserror::Error)]
#[error("data directory {path} cannot be used: {source}; create it or point `dir` at a writable directory")]
pub struct DataDirError {
    /// The directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// The fields of [`Error::Corrupt`]: a file on disk is corrupt.
#[derive(Debug, thiserror::Error)]
#[error("data in {path} is corrupt: {reason}; open with `on_corrupt(OnCorrupt::Discard)` to start empty")]
pub struct CorruptError {
    /// The corrupt file or directory.
    pub path: PathBuf,
    /// What was found.
    pub reason: String,
}

/// The fields of [`Error::LostCommits`]: the disk engine recovered fewer commits than it had acknowledged: its journal was
/// damaged (garbled or cut short) and the engine's recovery dropped the commits after the
/// damage. Opening refuses rather than load silently fewer entries.
#[derive(Debug, thiserror::Error)]
#[error("the disk store in {path} recovered commit {recovered} but had acknowledged commit {acknowledged}: its journal was damaged and {lost} acknowledged commit(s) are missing; open with `accept_data_loss(true)` to continue with what survived, or `on_corrupt(OnCorrupt::Discard)` to start empty", lost = acknowledged.saturating_sub(*recovered))]
pub struct LostCommitsError {
    /// The data directory.
    pub path: PathBuf,
    /// The last commit acknowledged to a caller (from the commit marker).
    pub acknowledged: u64,
    /// The last commit the engine recovered.
    pub recovered: u64,
}

/// The fields of [`Error::TooManyNamespaces`]: the data directory holds `held` namespaces and
/// `new` more were asked for at once (one for a store, every new one of a `put_raw` batch or
/// a `strata load`), which would take it past `limit`; `namespace` is the first that does not
/// fit. Nothing was created or written.
#[derive(Debug, thiserror::Error)]
#[error("the data directory {path} holds {held} namespaces and one directory takes at most {limit}; {new} new namespace(s) would pass that (namespace {namespace:?} is the first that does not fit), so none was created: keep these entries in an existing namespace (prefix their keys instead), delete the entries of namespaces no longer used (a namespace without live entries stops counting at the next open), or give them a data directory of their own")]
pub struct TooManyNamespacesError {
    /// The data directory.
    pub path: PathBuf,
    /// The first namespace that did not fit.
    pub namespace: String,
    /// The namespaces the directory held.
    pub held: usize,
    /// The new namespaces asked for at once.
    pub new: usize,
    /// The most namespaces one directory holds.
    pub limit: usize,
}

/// The fields of [`Error::NewerFormat`]: the directory's format is `found`, this strata reads
/// up to `supported`.
#[derive(Debug, thiserror::Error)]
#[error("the data directory {path} is in on-disk format {found}, written by a newer strata; this strata reads formats up to {supported}: upgrade strata to open it (the directory was left untouched)")]
pub struct NewerFormatError {
    /// The data directory.
    pub path: PathBuf,
    /// The directory's format.
    pub found: u64,
    /// The newest format this strata reads.
    pub supported: u64,
}

/// The fields of [`Error::Unavailable`]: a disk store stopped taking work because its engine failed in a way later calls would
/// repeat (a journal write failed: disk full, I/O error) or an async write it acknowledged
/// could not be committed. Every later call of every handle on the directory returns this.
#[derive(Debug, thiserror::Error)]
#[error("the disk store in {path} is unavailable: {reason}; free disk space or fix the disk, then drop every handle and reopen the directory (what was committed before the failure is kept)")]
pub struct UnavailableError {
    /// The data directory.
    pub path: PathBuf,
    /// The engine failure that made it unavailable.
    pub reason: String,
}

/// The fields of [`Error::Io`]: an I/O error outside a data directory (dump files, sockets).
#[derive(Debug, thiserror::Error)]
#[error("I/O error while {context}: {source}")]
pub struct IoError {
    /// What strata was doing.
    pub context: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// The fields of [`Error::Loader`]: a loader passed to `fetch` failed or panicked; every waiting caller gets this.
#[derive(Debug, thiserror::Error)]
#[error("loader for key {key} failed: {reason}")]
pub struct LoaderError {
    /// The key being loaded, rendered for humans.
    pub key: String,
    /// The loader's error message, or the panic message.
    pub reason: String,
}

/// The fields of [`Error::InvalidDump`]: a cache dump file cannot be loaded (truncated, checksum mismatch, not a dump, or written
/// by a newer strata). It was checked before anything was written: nothing was loaded.
#[derive(Debug, thiserror::Error)]
#[error("dump file {path} cannot be loaded: {reason}; nothing was loaded")]
pub struct InvalidDumpError {
    /// The dump file.
    pub path: PathBuf,
    /// What is wrong with it and what to do.
    pub reason: String,
}

/// `From<FieldsError> for Error` for each boxed variant: `Error::from(DecodeError { .. })`.
macro_rules! boxed_variants {
    ($($fields:ident => $variant:ident),* $(,)?) => {$(
        impl From<$fields> for Error {
            fn from(e: $fields) -> Self {
                Error::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_variants!(
    InvalidNamespaceError => InvalidNamespace,
    InvalidConfigError => InvalidConfig,
    BackendError => Backend,
    TimeoutError => Timeout,
    NotReplicatedError => NotReplicated,
    DecodeError => Decode,
    EncodeError => Encode,
    DataDirError => DataDir,
    CorruptError => Corrupt,
    LostCommitsError => LostCommits,
    TooManyNamespacesError => TooManyNamespaces,
    NewerFormatError => NewerFormat,
    UnavailableError => Unavailable,
    IoError => Io,
    LoaderError => Loader,
    InvalidDumpError => InvalidDump,
);

impl Error {
    /// Wraps a backend driver error with what strata was doing when it happened.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::from(BackendError {
            context: context.into(),
            source: source.into(),
        })
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(option: &'static str, reason: impl Into<String>) -> Self {
        Error::from(InvalidConfigError {
            option,
            reason: reason.into(),
        })
    }

    /// True for errors that may go away if the call is retried (backend trouble, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Backend { .. } | Error::Timeout { .. } | Error::NotReplicated { .. }
        )
    }
}

// Every read returns a `Result<Option<V>>`: keep it three words for a `u64` value (see the
// module doc). A new variant with more than 16 bytes of fields goes behind a `Box`.
const _: () = assert!(std::mem::size_of::<Error>() <= 24);
const _: () = assert!(std::mem::size_of::<Result<Option<u64>>>() <= 24);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_result_is_three_words() {
        assert_eq!(std::mem::size_of::<Error>(), 24);
        assert_eq!(std::mem::size_of::<Result<Option<u64>>>(), 24);
    }

    #[test]
    fn a_boxed_variant_keeps_its_message_and_source() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::backend("GET sessions:abc", io);
        assert_eq!(
            e.to_string(),
            "backend error while GET sessions:abc: disk on fire"
        );
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk on fire"));
        assert!(e.is_transient());
    }
}
