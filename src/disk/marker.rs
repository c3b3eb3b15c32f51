//! The commit marker: a 16-byte sidecar file, `<dir>/COMMITTED`, holding the sequence number
//! of the last commit the engine acknowledged.
//!
//! Every engine batch also writes its sequence number into the engine itself (a meta keyspace,
//! in the same atomic batch). fjall recovers a garbled journal by cutting it at the first bad
//! batch and carrying on, so without a check a damaged journal would load as silently fewer
//! entries. At open the sequence the engine recovered is compared with this marker: below it,
//! acknowledged commits were lost and the open fails with
//! [`Error::LostCommits`](crate::Error::LostCommits).
//!
//! Cost: one `pwrite` of 16 bytes per batch, no fsync (the marker is fsynced with the engine:
//! on `fsync_interval` and at close). The marker is written only after its commit returned,
//! so after `kill -9` it is never ahead of the journal (both sit in the OS page cache); after a
//! power loss without `fsync_interval` it may be, which is reported as the loss it is.

use std::{
    fs::{File, OpenOptions},
    io::Read,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

/// The marker's file name inside the data directory.
pub(crate) const FILE: &str = "COMMITTED";

/// The open marker file.
pub(crate) struct Marker {
    path: PathBuf,
    file: File,
}

impl Marker {
    /// Opens (or creates, owner-only) the marker in `dir`; returns it with the sequence it
    /// holds, `None` for a new (empty) marker.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Option<u64>)> {
        let path = dir.join(FILE);
        let data_dir = |source| {
            Error::from(crate::DataDirError {
                path: path.clone(),
                source,
            })
        };
        let mut file = owner_only()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(data_dir)?;
        let mut bytes = Vec::new();
        // At most 17 bytes: a longer file is corrupt, and never read whole.
        (&mut file)
            .take(17)
            .read_to_end(&mut bytes)
            .map_err(data_dir)?;
        let seq = decode(&bytes).map_err(|reason| {
            Error::from(crate::CorruptError {
                path: path.clone(),
                reason,
            })
        })?;
        Ok((Marker { path, file }, seq))
    }

    /// Records `seq` as the last acknowledged commit (reaches the OS, not the platter).
    pub(crate) fn store(&self, seq: u64) -> std::io::Result<()> {
        write_at(&self.file, &encode(seq))
    }

    /// Makes the marker durable against power loss.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// The marker's path (for messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The sequence, then its complement: a torn or garbled marker never reads as a number.
fn encode(seq: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..].copy_from_slice(&(!seq).to_le_bytes());
    out
}

/// `None` for an empty marker; an error for anything but the 16 bytes [`encode`] writes.
fn decode(bytes: &[u8]) -> std::result::Result<Option<u64>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let (Some(seq), Some(check)) = (bytes.get(..8), bytes.get(8..)) else {
        return Err(format!("commit marker is {} bytes, not 16", bytes.len()));
    };
    let (Ok(seq), Ok(check)) = (<[u8; 8]>::try_from(seq), <[u8; 8]>::try_from(check)) else {
        return Err(format!("commit marker is {} bytes, not 16", bytes.len()));
    };
    let seq = u64::from_le_bytes(seq);
    if !seq != u64::from_le_bytes(check) {
        return Err("commit marker fails its check (garbled)".into());
    }
    Ok(Some(seq))
}

/// Options that create a file readable and writable by its owner only (sessions live here).
pub(crate) fn owner_only() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, 0)
}

#[cfg(windows)]
fn write_at(file: &File, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    let written = file.seek_write(bytes, 0)?;
    if written == bytes.len() {
        Ok(())
    } else {
        Err(std::io::ErrorKind::WriteZero.into())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_stored_sequence_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (marker, seq) = Marker::open(dir.path()).unwrap();
        assert_eq!(seq, None);
        marker.store(41).unwrap();
        marker.store(42).unwrap();
        drop(marker);
        assert_eq!(Marker::open(dir.path()).unwrap().1, Some(42));
    }

    #[test]
    fn a_garbled_marker_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode(7);
        bytes[3] ^= 1;
        std::fs::write(dir.path().join(FILE), bytes).unwrap();
        let err = Marker::open(dir.path()).err().unwrap();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    }

    proptest! {
        #[test]
        fn any_marker_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let decoded = decode(&bytes);
            if bytes.len() != 16 && !bytes.is_empty() {
                prop_assert!(decoded.is_err());
            }
        }
    }
}
