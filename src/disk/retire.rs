//! Opt-in ([`DiskBuilder::retire_journal_on_close`](crate::DiskBuilder::retire_journal_on_close)):
//! retiring fjall's journal at close, so the next open has nothing to replay.
//!
//! fjall replays its whole active journal at open (skipping what is already in tables, but
//! reading and decoding all of it: 1.6–3.5 s for a million entries in the README's benchmark)
//! and offers no API to retire it. It seals the active journal, and deletes it once its
//! contents are in tables, only when its write position is past an internal mark
//! ([`JOURNAL_SEALED_PAST`], `worker_pool.rs` in fjall 3.1). With the data already flushed,
//! padding the journal past that mark and flushing makes fjall do exactly that. The price,
//! paid at close on the thread that closes (never an async runtime's): up to 64 MB of writes
//! and ~1.5 s. It relies on that undocumented mark: if a fjall release moves it, the wait below
//! times out and the close logs a warning (the next open then replays the journal as without
//! this option). A crash at any point leaves a journal fjall recovers as usual and a padding
//! keyspace the next open clears.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use super::engine::allocated;

/// Name of the keyspace that only ever holds padding; cleared right after a close used it.
const PAD_KEYSPACE: &str = "journal-pad";
/// fjall 3.1's flush worker seals the active journal when its write position is past this.
const JOURNAL_SEALED_PAST: u64 = 64_000_000;
/// Retire only a journal holding at least this much: replaying less is cheaper than padding.
const RETIRE_JOURNAL_ABOVE: u64 = 4 << 20;
/// One padding value: random bytes so fjall's journal compression cannot shrink them.
const PAD_CHUNK: usize = 1 << 20;

/// The padding keyspace of an open database.
pub(crate) struct Retirer {
    pad: Keyspace,
}

impl Retirer {
    /// Opens the padding keyspace, clearing what an interrupted close left in it.
    pub(crate) fn open(db: &Database) -> fjall::Result<Self> {
        let pad = db.keyspace(PAD_KEYSPACE, KeyspaceCreateOptions::default)?;
        if !pad.is_empty()? {
            pad.clear()?;
        }
        Ok(Retirer { pad })
    }

    /// Clears a padding keyspace left by an interrupted close when the option is off.
    pub(crate) fn clean_up(db: &Database) -> fjall::Result<()> {
        if db.keyspace_exists(PAD_KEYSPACE) {
            Retirer::open(db)?;
        }
        Ok(())
    }

    /// Leaves an empty active journal in `path` (the database's directory); call it once the
    /// data is flushed to tables.
    pub(crate) fn retire(&self, db: &Database, path: &Path, wait: Duration) -> Result<(), String> {
        let Some((id, written)) = active_journal(path).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        // Elsewhere the journal's allocation does not tell what was written.
        if !cfg!(unix) || written < RETIRE_JOURNAL_ABOVE {
            return Ok(());
        }
        self.pad_past_the_mark(written)?;
        let started = Instant::now();
        loop {
            match active_journal(path).map_err(|e| e.to_string())? {
                Some((now, _)) if now > id && db.journal_count() == 1 => break,
                _ if started.elapsed() > wait => {
                    return Err(format!("the journal was not retired within {wait:?}"));
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        self.pad.clear().map_err(|e| e.to_string())
    }

    /// Writes padding until the journal is past the mark, then hands it to the flush worker.
    fn pad_past_the_mark(&self, written: u64) -> Result<(), String> {
        let chunk = pad_chunk();
        let mut padded = written;
        while padded <= JOURNAL_SEALED_PAST + PAD_CHUNK as u64 {
            self.pad
                .insert(b"pad".as_slice(), chunk.clone())
                .map_err(|e| e.to_string())?;
            padded += PAD_CHUNK as u64;
        }
        self.pad.rotate_memtable().map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The id of the active (highest-numbered) journal in `path` and the bytes written to it.
pub(crate) fn active_journal(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let mut active: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(path)? {
        let path = entry?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            if active.as_ref().is_none_or(|(a, _)| id > *a) {
                active = Some((id, path));
            }
        }
    }
    let Some((id, path)) = active else {
        return Ok(None);
    };
    // The journal is preallocated sparsely: its allocated blocks are what was written.
    Ok(Some((id, allocated(&std::fs::metadata(path)?))))
}

/// A padding value that compression cannot shrink (xorshift noise).
fn pad_chunk() -> fjall::Slice {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(PAD_CHUNK);
    while out.len() < PAD_CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.into()
}
