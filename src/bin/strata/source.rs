//! Where entries come from and go to: a DiskStore data directory or a Redis server, seen as raw
//! records of every namespace (bytes as stored, values with their codec header).

use std::path::Path;

use strata::{DiskDb, RawRecord};

use crate::fail::Failure;

/// An opened source or destination.
pub enum Source {
    /// A data directory, held (locked) while the command runs.
    Disk(DiskDb),
    /// A Redis server.
    #[cfg(feature = "redis")]
    Redis(crate::redis_source::RedisSource),
}

/// True if `spec` names a Redis server rather than a directory.
pub fn is_redis_url(spec: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| spec.starts_with(scheme))
}

/// Opens `spec` to read: an existing data directory or a Redis URL.
pub async fn open_existing(spec: &str) -> Result<Source, Failure> {
    if !is_redis_url(spec) && !Path::new(spec).is_dir() {
        return Err(Failure::unusable(format!(
            "{spec} is not a data directory (and not a redis:// URL); give the `dir` your DiskStore uses"
        )));
    }
    open(spec).await
}

/// Opens `spec`: a data directory (created if missing) or a Redis URL.
pub async fn open(spec: &str) -> Result<Source, Failure> {
    if is_redis_url(spec) {
        return open_redis(spec).await;
    }
    let db = DiskDb::builder().dir(spec).open()?;
    Ok(Source::Disk(db))
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str) -> Result<Source, Failure> {
    Ok(Source::Redis(
        crate::redis_source::RedisSource::connect(url).await?,
    ))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(url: &str) -> Result<Source, Failure> {
    Err(Failure::unusable(format!(
        "{url} is a Redis URL but this strata was built without Redis support; install it with `cargo install strata --features cli,redis`"
    )))
}

impl Source {
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

    /// Writes `records`, replacing what their keys held.
    pub async fn put(&self, records: Vec<RawRecord>) -> Result<(), Failure> {
        match self {
            Source::Disk(db) => Ok(db.put_raw(records).await?),
            #[cfg(feature = "redis")]
            Source::Redis(redis) => redis.put(records).await,
        }
    }
}
