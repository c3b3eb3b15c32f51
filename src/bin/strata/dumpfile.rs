//! The dump file: JSON Lines, so a dump can be read (and filtered) with standard tools.
//!
//! The first line is a header `{"format":"strata-dump","version":1,...}`, then one line per
//! entry `{"namespace":..,"key":..,"value":<base64 of the encoded value>,"deadline":<Unix ms or
//! null>}` (a key that is not UTF-8 is `"key_b64"` instead of `"key"`), and a last line
//! `{"end":true,"entries":N}`, so a truncated file is refused instead of half-loaded. Deadlines
//! are absolute: time spent between dump and load counts, and entries that expired meanwhile
//! are skipped on load. The file is written to a temporary name and renamed into place, and
//! is readable by its owner only (0600): it holds live session ids.
//!
//! Reading never trusts the file: a line is read through a limit ([`MAX_LINE`]), so a
//! gigabyte without a newline is refused after reading `MAX_LINE` bytes, and every field is
//! checked (namespace as [`strata::Namespace`], base64, value as a strata value) before
//! anything is returned. [`parse`] takes any reader, so the property tests drive it directly.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{Deserialize, Serialize};
use strata::RawRecord;

use crate::fail::Failure;

const FORMAT: &str = "strata-dump";
const VERSION: u32 = 1;
/// Longest line accepted when loading (a value larger than this is not a cache entry).
pub const MAX_LINE: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    source: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_b64: Option<String>,
    value: String,
    deadline: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct End {
    end: bool,
    entries: u64,
}

/// Writes `records` to `path` (owner-only permissions), calling `tick` after each.
pub fn write(
    path: &Path,
    source: &str,
    records: &[RawRecord],
    tick: &dyn Fn(),
) -> Result<(), Failure> {
    let tmp = temp_path(path);
    let io = |e: std::io::Error| Failure::other(format!("cannot write {}: {e}", tmp.display()));
    let mut out = BufWriter::new(create_private(&tmp).map_err(io)?);
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        source: source.into(),
    };
    write_line(&mut out, &header).map_err(io)?;
    for raw in records {
        write_line(&mut out, &to_line(raw)).map_err(io)?;
        tick();
    }
    let end = End {
        end: true,
        entries: records.len() as u64,
    };
    write_line(&mut out, &end).map_err(io)?;
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Failure::other(format!("cannot rename {} into place: {e}", tmp.display())))
}

/// `FILE.tmp` next to `path` (same filesystem, so the rename is atomic).
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// A new file readable and writable by its owner only. A leftover temporary file is removed
/// first: opening an existing file would keep its (possibly wider) permissions.
fn create_private(path: &Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn write_line(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

fn to_line(raw: &RawRecord) -> Line {
    let (key, key_b64) = match std::str::from_utf8(&raw.key) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(STANDARD.encode(&raw.key))),
    };
    Line {
        namespace: raw.namespace.clone(),
        key,
        key_b64,
        value: STANDARD.encode(&raw.value),
        deadline: raw.deadline,
    }
}

/// Reads and checks a whole dump file; nothing is returned unless every line is valid.
pub fn read(path: &Path) -> Result<Vec<RawRecord>, Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::other(format!("cannot open {}: {e}", path.display())))?;
    parse(BufReader::new(file), MAX_LINE)
        .map_err(|e| Failure::other(format!("{}{e}", path.display())))
}

/// Parses a dump from `reader`, refusing any line longer than `max_line` bytes without
/// reading past it. The error text follows the file's name (` line 3 is ...`).
pub fn parse(mut reader: impl BufRead, max_line: usize) -> Result<Vec<RawRecord>, String> {
    let mut lines = Lines {
        reader: &mut reader,
        max_line,
        n: 0,
    };
    let header: Header = lines.next_json()?;
    if header.format != FORMAT || header.version > VERSION {
        return Err(format!(
            " line 1 is not a strata dump header: format {} version {} (this strata reads {FORMAT} up to version {VERSION})",
            header.format, header.version
        ));
    }
    let mut records = Vec::new();
    loop {
        let text = lines.next_text()?;
        if let Ok(end) = serde_json::from_str::<End>(&text) {
            return finish(records, end);
        }
        let bad = |why: String| format!(" line {} is not a strata dump line: {why}", lines.n);
        let line: Line = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        records.push(from_line(line).map_err(bad)?);
    }
}

/// Numbered lines of a reader, each read through a limit.
struct Lines<'a, R> {
    reader: &'a mut R,
    max_line: usize,
    n: usize,
}

impl<R: BufRead> Lines<'_, R> {
    fn next_text(&mut self) -> Result<String, String> {
        self.n += 1;
        let n = self.n;
        let mut buf = Vec::new();
        let limit = u64::try_from(self.max_line)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        (&mut *self.reader)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!(": cannot read line {n}: {e}"))?;
        if buf.is_empty() {
            return Err(format!(
                " ends at line {n} without its end line: the dump is truncated; nothing was loaded"
            ));
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.len() > self.max_line {
            return Err(format!(
                " line {n} is longer than {} bytes; nothing was loaded",
                self.max_line
            ));
        }
        String::from_utf8(buf).map_err(|_| format!(" line {n} is not UTF-8 text"))
    }

    fn next_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        let text = self.next_text()?;
        serde_json::from_str(&text)
            .map_err(|e| format!(" line {} is not a strata dump header: {e}", self.n))
    }
}

fn finish(records: Vec<RawRecord>, end: End) -> Result<Vec<RawRecord>, String> {
    if end.end && end.entries == records.len() as u64 {
        return Ok(records);
    }
    Err(format!(
        " says it holds {} entries but has {}; nothing was loaded",
        end.entries,
        records.len()
    ))
}

/// One entry line as a record, every field checked: a value `load` accepts is one `get` shows.
fn from_line(line: Line) -> Result<RawRecord, String> {
    let namespace = strata::Namespace::new(&line.namespace).map_err(|e| e.to_string())?;
    let key = match (line.key, line.key_b64) {
        (Some(key), None) => key.into_bytes(),
        (None, Some(b64)) => STANDARD.decode(b64).map_err(|e| format!("key_b64: {e}"))?,
        _ => return Err("an entry needs exactly one of `key` and `key_b64`".into()),
    };
    let value = STANDARD
        .decode(line.value)
        .map_err(|e| format!("value: {e}"))?;
    strata::codec::value_to_json(&value)
        .map_err(|e| format!("value is not a strata value: {e}"))?;
    Ok(RawRecord {
        namespace: namespace.as_str().to_owned(),
        key,
        value,
        deadline: line.deadline,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// An endless line of `a`s that counts what was read from it.
    struct Endless {
        read: usize,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(b'a');
            self.read += buf.len();
            Ok(buf.len())
        }
    }

    fn header() -> Vec<u8> {
        b"{\"format\":\"strata-dump\",\"version\":1,\"source\":\"t\"}\n".to_vec()
    }

    #[test]
    fn an_endless_line_is_refused_after_the_limit() {
        let mut endless = Endless { read: 0 };
        let reader = BufReader::with_capacity(4096, Cursor::new(header()).chain(&mut endless));
        let err = parse(reader, 100_000).unwrap_err();
        assert!(err.contains("line 2 is longer than 100000 bytes"), "{err}");
        // The limit plus at most one buffer: memory stays bounded by the limit, not the line.
        assert!(endless.read <= 100_001 + 4096, "read {}", endless.read);
    }

    fn sample() -> Vec<RawRecord> {
        let value = strata::codec::encode_value(&"ada", strata::Format::MessagePack, "k").unwrap();
        vec![
            RawRecord {
                namespace: "sessions".into(),
                key: b"s1".to_vec(),
                value: value.clone(),
                deadline: Some(5),
            },
            RawRecord {
                namespace: "bin".into(),
                key: vec![0xff, 0],
                value: b"42".to_vec(),
                deadline: None,
            },
        ]
    }

    fn encoded(records: &[RawRecord]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.dump");
        write(&path, "test", records, &|| {}).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn what_is_written_parses_back() {
        let records = sample();
        assert_eq!(parse(&encoded(&records)[..], MAX_LINE).unwrap(), records);
    }

    #[cfg(unix)]
    #[test]
    fn dump_files_are_private_even_over_a_wider_leftover() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.dump");
        std::fs::write(temp_path(&path), b"old").unwrap();
        std::fs::set_permissions(temp_path(&path), std::fs::Permissions::from_mode(0o666)).unwrap();
        write(&path, "test", &sample(), &|| {}).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Decoders never panic (issue 12): the dump parser on arbitrary and mutated dumps.
    fn parse_fuzzed(n: usize) -> usize {
        let mut text = encoded(&sample());
        let seeds = vec![text.clone(), {
            text.truncate(text.len() / 2);
            text
        }];
        crate::mutate::fuzz(n, 21, &seeds, |input| {
            if let Ok(records) = parse(input, 4096) {
                for raw in records {
                    assert!(strata::Namespace::new(&raw.namespace).is_ok());
                    assert!(strata::codec::value_to_json(&raw.value).is_ok());
                }
            }
        })
    }

    #[test]
    fn dump_lines_never_panic_the_parser() {
        parse_fuzzed(crate::mutate::QUICK);
    }

    #[test]
    #[ignore = "long run: cargo test --release --all-features --bin strata -- --ignored"]
    fn dump_lines_never_panic_the_parser_1m() {
        parse_fuzzed(crate::mutate::LONG);
    }

    #[test]
    fn a_namespace_strata_would_refuse_is_refused() {
        for bad in ["a:b", "x*", "has space", ""] {
            let mut records = sample();
            records[0].namespace = bad.into();
            let err = parse(&encoded(&records)[..], MAX_LINE).unwrap_err();
            assert!(err.contains("line 2"), "{bad:?}: {err}");
        }
    }
}
