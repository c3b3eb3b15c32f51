//! Where entries come from and go to: a DiskStore data directory or a Redis server, seen as raw
//! records of every namespace (bytes as stored, values with their codec header).

use std::path::Path;

use strata::{DiskDb, OnCorrupt, RawRecord};

use crate::fail::Failure;

/// An opened source or destination.
pub enum Source {
    /// A data directory, held (locked) while the command runs.
    Disk(DiskDb),
    /// A Redis server.
    #[cfg(feature = "redis")]
    Redis(crate::redis_source::RedisSource),
}

/// How a data directory may be opened: the global `--create` and `--discard-corrupt` flags.
#[derive(Clone, Debug, Default)]
pub struct Opening {
    /// Make a directory that is not a data directory into one.
    pub create: bool,
    /// Delete corrupt engine files and start empty.
    pub discard_corrupt: bool,
    /// `--sentinel-master`: a Redis source lists sentinels, and this is their master's name.
    pub sentinel_master: Option<String>,
}

/// True if `spec` names a Redis server rather than a directory.
pub fn is_redis_url(spec: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| spec.starts_with(scheme))
}

/// `spec` safe to print: credentials hidden even in a mistyped URL (`redis:/user:pw@host`).
pub fn shown(spec: &str) -> String {
    if spec.contains("://") {
        return strata::redact_url(spec);
    }
    match (spec.find(':'), spec.rfind('@')) {
        (Some(colon), Some(at)) if colon < at => format!("{}***{}", &spec[..=colon], &spec[at..]),
        _ => spec.to_owned(),
    }
}

/// True if `dir` is missing or empty: a fine place for a new data directory.
fn is_vacant(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

fn not_a_data_dir(spec: &str) -> Failure {
    Failure::unusable(format!(
        "{} is not a strata data directory (nor a redis:// URL); give the directory your DiskStore uses, or pass --create to make this one a data directory",
        shown(spec)
    ))
}

/// Opens `spec` to read: an existing data directory or a Redis URL.
pub async fn open_existing(spec: &str, how: Opening) -> Result<Source, Failure> {
    if is_redis_url(spec) {
        return open_redis(spec, how.sentinel_master.as_deref()).await;
    }
    let dir = Path::new(spec);
    if !dir.is_dir() && !how.create {
        return Err(not_a_data_dir(spec));
    }
    Ok(Source::Disk(open_db(spec, how, DiskDb::is_data_dir(dir))?))
}

/// Opens `spec` to write: a data directory (created if missing or empty) or a Redis URL.
pub async fn open(spec: &str, how: Opening) -> Result<Source, Failure> {
    if is_redis_url(spec) {
        return open_redis(spec, how.sentinel_master.as_deref()).await;
    }
    let dir = Path::new(spec);
    let usable = DiskDb::is_data_dir(dir) || is_vacant(dir);
    Ok(Source::Disk(open_db(spec, how, usable)?))
}

/// Opens the data directory `spec`, refused untouched unless `usable` or `--create` is given.
fn open_db(spec: &str, how: Opening, usable: bool) -> Result<DiskDb, Failure> {
    if !usable && !how.create {
        return Err(not_a_data_dir(spec));
    }
    let on_corrupt = if how.discard_corrupt {
        OnCorrupt::Discard
    } else {
        OnCorrupt::Fail
    };
    Ok(DiskDb::builder().dir(spec).on_corrupt(on_corrupt).open()?)
}

/// Opens the existing data directory `dir` itself (for commands that only take a directory).
pub fn open_existing_dir(dir: &Path, how: Opening) -> Result<DiskDb, Failure> {
    let spec = dir.to_string_lossy();
    if !dir.is_dir() && !how.create {
        return Err(not_a_data_dir(&spec));
    }
    open_db(&spec, how, DiskDb::is_data_dir(dir))
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str, sentinel_master: Option<&str>) -> Result<Source, Failure> {
    let source = match sentinel_master {
        Some(master) => crate::redis_source::RedisSource::through_sentinels(url, master).await?,
        None => crate::redis_source::RedisSource::connect(url).await?,
    };
    Ok(Source::Redis(source))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(url: &str, _sentinel_master: Option<&str>) -> Result<Source, Failure> {
    Err(Failure::unusable(format!(
        "{} is a Redis URL but this strata was built without Redis support; install it with `cargo install strata --features cli,redis`",
        shown(url)
    )))
}

impl Source {
    /// Closes the source, then returns `result`: a data directory's queued writes are
    /// committed, flushed and fsynced and its lock released before the process exits.
    pub async fn close_after<T>(self, result: Result<T, Failure>) -> Result<T, Failure> {
        match self {
            Source::Disk(db) => db.close().await,
            #[cfg(feature = "redis")]
            Source::Redis(_) => {}
        }
        result
    }

    /// `disk ./dir` or `redis redis://host`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Disk(db) => format!("disk {}", db.dir().display()),
            #[cfg(feature = "redis")]
            Source::Redis(redis) => format!("redis {}", redis.url()),
        }
    }

    /// About how many entries a full scan will visit, if cheap to know (for progress bars):
    /// the live entries loaded from a directory, `DBSIZE` for Redis.
    pub async fn size_hint(&self) -> Option<u64> {
        match self {
            Source::Disk(db) => u64::try_from(db.load_summary().live).ok(),
            #[cfg(feature = "redis")]
            Source::Redis(redis) => redis.size().await,
        }
    }

    /// Visits every live record (of `namespace` only, if given).
    pub async fn scan(
        &self,
        namespace: Option<&str>,
        visit: &mut (dyn FnMut(RawRecord) + Send),
    ) -> Result<(), Failure> {
        match self {
            Source::Disk(db) => Ok(db.scan_raw(namespace, &mut |raw| {
                visit(raw);
                Ok(())
            })?),
            #[cfg(feature = "redis")]
            Source::Redis(redis) => redis.scan(namespace, visit).await,
        }
    }

    /// The live record under `namespace:key`, if any.
    pub async fn get(&self, namespace: &str, key: &[u8]) -> Result<Option<RawRecord>, Failure> {
        match self {
            Source::Disk(_) => {
                let mut found = None;
                self.scan(Some(namespace), &mut |raw| {
                    if raw.key == key {
                        found = Some(raw);
                    }
                })
                .await?;
                Ok(found)
            }
            #[cfg(feature = "redis")]
            Source::Redis(redis) => redis.get(namespace, key).await,
        }
    }

    /// Makes room for every namespace of `namespaces` at once (a data directory takes at most
    /// 64; Redis has no such limit): all of them, or none and `TooManyNamespaces`.
    pub fn make_room(
        &self,
        namespaces: &std::collections::BTreeSet<String>,
    ) -> Result<(), strata::Error> {
        match self {
            Source::Disk(db) => db.open_namespaces(namespaces),
            #[cfg(feature = "redis")]
            Source::Redis(_) => Ok(()),
        }
    }

    /// Writes `records`, replacing what their keys held.
    pub async fn put(&self, records: Vec<RawRecord>) -> Result<(), Failure> {
        match self {
            Source::Disk(db) => Ok(db.put_raw(records).await?),
            #[cfg(feature = "redis")]
            Source::Redis(redis) => redis.put(records).await,
        }
    }
}
