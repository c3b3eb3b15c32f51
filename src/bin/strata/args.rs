//! The command line: subcommands, their arguments and the global `--json` flag.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Inspect, dump and load strata caches: a DiskStore data directory or a Redis server.
///
/// A SOURCE is a data directory (`./strata-data`) or a Redis URL (`redis://127.0.0.1:6379`);
/// with `--sentinel-master NAME`, a Redis SOURCE lists the sentinels instead, comma-separated
/// (`redis://127.0.0.1:26379,redis://127.0.0.1:26380`), and the master they name is used.
/// Exit codes: 0 success, 1 failure (missing key or namespace, bad dump file, backend error),
/// 2 the source cannot be used (directory locked by another process, corrupt, not a strata data
/// directory, not a Redis server) or bad usage.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Use a directory that is not (yet) a strata data directory: make it one. Without it, such a
    /// directory is refused untouched (exit 2), so a mistyped path never gets files written into it.
    #[arg(long, global = true)]
    pub create: bool,

    /// Open a data directory whose files are corrupt by deleting them and starting empty (cache
    /// data is ephemeral; copy the directory first if you want to look into it).
    #[arg(long, global = true)]
    pub discard_corrupt: bool,

    /// Reach Redis through Sentinel: a Redis SOURCE is then the sentinels' URLs, comma-separated,
    /// and this is the name they monitor the master under (`mymaster`). The master's password
    /// goes in the first sentinel URL.
    #[arg(long, global = true, value_name = "NAME")]
    pub sentinel_master: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Entries, bytes and an expiry histogram per namespace.
    Inspect {
        /// A data directory or a Redis URL.
        source: String,
    },
    /// List keys (as `namespace:key`) with their remaining TTL.
    Keys {
        /// A data directory or a Redis URL.
        source: String,
        /// Only this namespace.
        #[arg(long, short)]
        namespace: Option<String>,
        /// At most this many keys.
        #[arg(long, short)]
        limit: Option<usize>,
    },
    /// Show one value as JSON.
    Get {
        /// A data directory or a Redis URL.
        source: String,
        /// The namespace (`sessions`).
        namespace: String,
        /// The key within the namespace. A key that starts with `-` is read as a key (session ids
        /// may); one that is also a flag (`-h`, `--json`) goes after `--`.
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Write every live entry (all namespaces) with its deadline to a dump file.
    Dump {
        /// A data directory or a Redis URL.
        source: String,
        /// The dump file to write (replaced atomically).
        file: PathBuf,
        /// Only this namespace.
        #[arg(long, short)]
        namespace: Option<String>,
    },
    /// Write the entries of a dump file that have not expired into a destination (a missing or
    /// empty directory becomes a data directory).
    Load {
        /// A dump file written by `strata dump`.
        file: PathBuf,
        /// A data directory or a Redis URL.
        destination: String,
    },
    /// Delete expired entries from a data directory now.
    PurgeExpired {
        /// A data directory.
        dir: PathBuf,
    },
}
