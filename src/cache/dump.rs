//! `dump` and `load`: a cache's entries to a file and back, keeping each entry's remaining TTL.
//!
//! Format (little-endian): the magic `STRATADUMP`, a `u16` format version, then blocks of up to
//! 1024 entries, each `[u8 tag = 1][u32 len][u32 crc32(payload)][payload]`, the payload being
//! entries `[u32 key len][key][u32 value len][value][u64 deadline, Unix ms, 0 = never]`, and a
//! trailer `[u8 tag = 0xFF][u64 entry count][u32 crc32(count)]`. Keys use [`Key`], values
//! [`encode_value`] (MessagePack, self-describing).
//!
//! Dumping streams: it lists the keys, then reads values and TTLs a block at a time with
//! `get_many`/`ttl`, so a large cache is never held twice in memory. Deadlines are absolute, so
//! time spent between dump and load counts, and an entry that expired meanwhile is skipped.
//! Loading reads the file twice: the first pass checks every block, checksum and value without
//! writing; only a file that passes is written to the store, so a truncated or foreign file
//! loads nothing. Both use blocking file I/O in the calling task.

use std::{
    fmt::Debug,
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Serialize};

use super::cache::Cache;
use crate::{
    codec::{decode_value, encode_value, Format, Key},
    error::{Error, Result},
    stats::Counter as Stat,
    store::{Expiry, Store},
};

/// The dump format version this build writes (and the newest it reads).
pub const DUMP_VERSION: u16 = 1;

const MAGIC: &[u8; 10] = b"STRATADUMP";
const BLOCK: u8 = 1;
const TRAILER: u8 = 0xFF;
const BATCH: usize = 1024;
/// Largest block payload accepted when loading, so a corrupt length cannot allocate gigabytes.
const MAX_BLOCK: usize = 256 << 20;

/// What [`Cache::load`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadSummary {
    /// Entries written to the cache.
    pub loaded: usize,
    /// Entries skipped because they expired before the load.
    pub expired: usize,
}

struct Entry<K, V> {
    key: K,
    value: V,
    deadline: u64,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Key,
    V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    S: Store<K, V> + 'static,
{
    /// Writes every live entry and its remaining TTL to `path` (atomically: a temporary file
    /// renamed into place); the number of entries written.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use std::time::Duration;
    /// use strata::{Cache, MemoryStore};
    ///
    /// let dir = std::env::temp_dir().join(format!("strata-doc-dump-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).ok();
    /// let path = dir.join("sessions.dump");
    /// let cache = Cache::builder().store(MemoryStore::<String, u32>::new()).build().await?;
    /// cache.put("a".into(), 1, Some(Duration::from_secs(60))).await?;
    /// assert_eq!(cache.dump(&path).await?, 1);
    ///
    /// let restored = Cache::builder().store(MemoryStore::<String, u32>::new()).build().await?;
    /// assert_eq!(restored.load(&path).await?.loaded, 1);
    /// assert_eq!(restored.get(&"a".into()).await?, Some(1));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn dump(&self, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        let tmp = temporary_path(path);
        let file = File::create(&tmp).map_err(|e| io_error("creating", &tmp, e))?;
        let mut out = BufWriter::new(file);
        let written = self.write_dump(&mut out, &tmp).await?;
        let file = out
            .into_inner()
            .map_err(|e| io_error("writing", &tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io_error("syncing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error("renaming into", path, e))?;
        Ok(written)
    }

    async fn write_dump(&self, out: &mut impl Write, path: &Path) -> Result<usize> {
        write_all(out, path, MAGIC)?;
        write_all(out, path, &DUMP_VERSION.to_le_bytes())?;
        let keys = self.inner.store.keys().await?;
        let mut written = 0u64;
        for batch in keys.chunks(BATCH) {
            let payload = self.encode_batch(batch).await?;
            written += payload.1;
            write_block(out, path, &payload.0)?;
        }
        let count = written.to_le_bytes();
        write_all(out, path, &[TRAILER])?;
        write_all(out, path, &count)?;
        write_all(out, path, &crc32(&count).to_le_bytes())?;
        Ok(written as usize)
    }

    /// One block's payload and how many entries it holds (keys gone since listing are skipped).
    async fn encode_batch(&self, keys: &[K]) -> Result<(Vec<u8>, u64)> {
        let values = self.inner.store.get_many(keys).await?;
        let mut payload = Vec::new();
        let mut count = 0;
        for (key, value) in keys.iter().zip(values) {
            let Some(value) = value else { continue };
            let Some(deadline) = self.deadline_of(key).await? else {
                continue;
            };
            encode_entry(&mut payload, key, &value, deadline)?;
            count += 1;
        }
        Ok((payload, count))
    }

    /// The absolute deadline of `key` (0 = never), or `None` if it expired meanwhile. A store that
    /// cannot report TTLs gets the cache's default TTL.
    async fn deadline_of(&self, key: &K) -> Result<Option<u64>> {
        let expiry = match self.inner.store.ttl(key).await {
            Ok(expiry) => expiry,
            Err(Error::Unsupported { .. }) => {
                Some(self.inner.ttl.map_or(Expiry::Never, Expiry::In))
            }
            Err(e) => return Err(e),
        };
        Ok(expiry.map(|e| match e {
            Expiry::Never => 0,
            Expiry::In(left) => self.inner.clock.now_ms() + (left.as_millis() as u64).max(1),
        }))
    }

    /// Merges the entries of a dump at `path` into the cache, each with the TTL it had left
    /// (entries that expired since are skipped). The whole file is checked first: a truncated,
    /// corrupt or newer-version file is [`Error::InvalidDump`] and nothing is written.
    pub async fn load(&self, path: impl AsRef<Path>) -> Result<LoadSummary> {
        let path = path.as_ref();
        let total = verify_dump::<K, V>(path)?;
        let mut summary = LoadSummary::default();
        let mut reader = DumpReader::open(path)?;
        while let Some(payload) = reader.next_block()? {
            let mut entries = Vec::with_capacity(BATCH);
            decode_block(&payload, path, &mut |entry| {
                entries.push(entry);
                Ok(())
            })?;
            for entry in entries {
                self.load_entry(entry, &mut summary)
                    .await
                    .map_err(|e| partial_load(path, &summary, total, e))?;
            }
        }
        Ok(summary)
    }

    async fn load_entry(&self, entry: Entry<K, V>, summary: &mut LoadSummary) -> Result<()> {
        let ttl = match entry.deadline {
            0 => None,
            deadline => match self.inner.clock.remaining(deadline) {
                Some(left) => Some(left),
                None => {
                    summary.expired += 1;
                    return Ok(());
                }
            },
        };
        // A merged entry is a write like `put`: a load in flight must not commit over it.
        self.overtake_load(&entry.key).await;
        self.forget_absence(&entry.key).await?;
        self.inner.store.put(entry.key, entry.value, ttl).await?;
        self.count(Stat::Writes, 1);
        summary.loaded += 1;
        Ok(())
    }
}

fn partial_load(path: &Path, summary: &LoadSummary, total: u64, error: Error) -> Error {
    Error::from(crate::BackendError {
        context: format!(
            "loading dump {}: the store failed after {} of {total} entries were written \
             (the cache holds a partial load; load again once the store is back)",
            path.display(),
            summary.loaded + summary.expired
        ),
        source: Box::new(error),
    })
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn io_error(what: &str, path: &Path, source: std::io::Error) -> Error {
    Error::from(crate::IoError {
        context: format!("{what} dump file {}", path.display()),
        source,
    })
}

fn write_all(out: &mut impl Write, path: &Path, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes)
        .map_err(|e| io_error("writing", path, e))
}

fn write_block(out: &mut impl Write, path: &Path, payload: &[u8]) -> Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        Error::from(crate::EncodeError {
            key: "(dump block)".into(),
            reason: "a block of 1024 entries exceeds 4 GiB; values this large cannot be dumped"
                .into(),
        })
    })?;
    write_all(out, path, &[BLOCK])?;
    write_all(out, path, &len.to_le_bytes())?;
    write_all(out, path, &crc32(payload).to_le_bytes())?;
    write_all(out, path, payload)
}

fn encode_entry<K: Key, V: Serialize>(
    out: &mut Vec<u8>,
    key: &K,
    value: &V,
    deadline: u64,
) -> Result<()> {
    let mut key_bytes = Vec::new();
    key.encode_key(&mut key_bytes);
    let value_bytes = encode_value(value, Format::MessagePack, &format!("{key:?}"))?;
    for part in [&key_bytes, &value_bytes] {
        let len = u32::try_from(part.len()).map_err(|_| {
            Error::from(crate::EncodeError {
                key: format!("{key:?}"),
                reason: "longer than 4 GiB".into(),
            })
        })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&deadline.to_le_bytes());
    Ok(())
}

/// Reads and checks a whole dump (every checksum, key and value) without keeping it; the count.
fn verify_dump<K: Key, V: DeserializeOwned>(path: &Path) -> Result<u64> {
    let mut reader = DumpReader::open(path)?;
    let mut seen = 0u64;
    while let Some(payload) = reader.next_block()? {
        seen += decode_block::<K, V>(&payload, path, &mut |_| Ok(()))?;
    }
    Ok(seen)
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::from(crate::InvalidDumpError {
        path: path.to_owned(),
        reason: reason.into(),
    })
}

struct DumpReader<'a, R> {
    input: R,
    path: &'a Path,
    seen: u64,
}

impl<'a> DumpReader<'a, BufReader<File>> {
    /// Opens `path` and checks its header.
    fn open(path: &'a Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| io_error("opening", path, e))?;
        let mut reader = DumpReader {
            input: BufReader::new(file),
            path,
            seen: 0,
        };
        reader.header()?;
        Ok(reader)
    }
}

impl<R: Read> DumpReader<'_, R> {
    /// The next block's checked payload, or `None` after a valid trailer.
    fn next_block(&mut self) -> Result<Option<Vec<u8>>> {
        match self.byte("a block tag")? {
            BLOCK => {
                let payload = self.block()?;
                self.seen += count_entries(&payload);
                Ok(Some(payload))
            }
            TRAILER => self.trailer().map(|_| None),
            other => Err(invalid(
                self.path,
                format!("unknown block tag {other:#04x}"),
            )),
        }
    }

    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => invalid(
                self.path,
                format!("the file is truncated (it ends inside {what}); dump again"),
            ),
            _ => io_error("reading", self.path, e),
        })
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        let mut b = [0u8; 1];
        self.exact(&mut b, what)?;
        Ok(b[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn header(&mut self) -> Result<()> {
        let mut magic = [0u8; 10];
        self.exact(&mut magic, "the header")?;
        if &magic != MAGIC {
            return Err(invalid(self.path, "not a strata dump (bad magic bytes)"));
        }
        let mut version = [0u8; 2];
        self.exact(&mut version, "the header")?;
        let version = u16::from_le_bytes(version);
        if version > DUMP_VERSION {
            return Err(invalid(
                self.path,
                format!(
                    "written by a newer strata (dump format version {version}, this build \
                     reads up to {DUMP_VERSION}); upgrade strata"
                ),
            ));
        }
        Ok(())
    }

    fn block(&mut self) -> Result<Vec<u8>> {
        let len = self.u32("a block header")? as usize;
        let crc = self.u32("a block header")?;
        if len > MAX_BLOCK {
            return Err(invalid(self.path, format!("a block claims {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        self.exact(&mut payload, "a block")?;
        if crc32(&payload) != crc {
            return Err(invalid(self.path, "a block's checksum does not match"));
        }
        Ok(payload)
    }

    fn trailer(&mut self) -> Result<u64> {
        let seen = self.seen;
        let mut count = [0u8; 8];
        self.exact(&mut count, "the trailer")?;
        let crc = self.u32("the trailer")?;
        let count_value = u64::from_le_bytes(count);
        if crc32(&count) != crc || count_value != seen {
            return Err(invalid(
                self.path,
                format!("the trailer says {count_value} entries but the blocks hold {seen}"),
            ));
        }
        Ok(seen)
    }
}

fn decode_block<K: Key, V: DeserializeOwned>(
    mut payload: &[u8],
    path: &Path,
    each: &mut impl FnMut(Entry<K, V>) -> Result<()>,
) -> Result<u64> {
    let mut count = 0;
    while !payload.is_empty() {
        let key_bytes = take_part(&mut payload, path)?;
        let value_bytes = take_part(&mut payload, path)?;
        let deadline = take_u64(&mut payload, path)?;
        let key = K::decode_key(key_bytes).map_err(|reason| invalid(path, reason))?;
        let value = decode_value(value_bytes, &format!("{key:?}"))
            .map_err(|e| invalid(path, e.to_string()))?;
        each(Entry {
            key,
            value,
            deadline,
        })?;
        count += 1;
    }
    Ok(count)
}

/// How many entries a checked block holds (stops at the first malformed entry; decoding reports it).
fn count_entries(mut payload: &[u8]) -> u64 {
    let mut count = 0;
    let path = Path::new("");
    while take_part(&mut payload, path).is_ok()
        && take_part(&mut payload, path).is_ok()
        && take_u64(&mut payload, path).is_ok()
    {
        count += 1;
    }
    count
}

fn take_part<'a>(payload: &mut &'a [u8], path: &Path) -> Result<&'a [u8]> {
    let short = || invalid(path, "an entry runs past the end of its block");
    let len_bytes = payload.get(..4).ok_or_else(short)?;
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let end = 4usize.checked_add(len as usize).ok_or_else(short)?;
    let part = payload.get(4..end).ok_or_else(short)?;
    *payload = &payload[end..];
    Ok(part)
}

fn take_u64(payload: &mut &[u8], path: &Path) -> Result<u64> {
    let bytes = payload
        .get(..8)
        .ok_or_else(|| invalid(path, "an entry runs past the end of its block"))?;
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    *payload = &payload[8..];
    Ok(u64::from_le_bytes(b))
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// CRC-32 (IEEE), as zip and PNG use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn entries_round_trip_through_a_block() {
        let mut payload = Vec::new();
        encode_entry(&mut payload, &"k".to_string(), &42u32, 7).unwrap();
        let mut got = Vec::new();
        let n = decode_block::<String, u32>(&payload, Path::new("x"), &mut |e| {
            got.push((e.key, e.value, e.deadline));
            Ok(())
        })
        .unwrap();
        assert_eq!((n, got), (1, vec![("k".to_string(), 42, 7)]));
        assert!(
            decode_block::<String, u32>(&payload[..5], Path::new("x"), &mut |_| Ok(())).is_err()
        );
    }
}
