//! The dump file: JSON Lines, so a dump can be read (and filtered) with standard tools.
//!
//! The first line is a header `{"format":"strata-dump","version":1,...}`, then one line per
//! entry `{"namespace":..,"key":..,"value":<base64 of the encoded value>,"deadline":<Unix ms or
//! null>}` (a key that is not UTF-8 is `"key_b64"` instead of `"key"`), and a last line
//! `{"end":true,"entries":N}`, so a truncated file is refused instead of half-loaded. Deadlines
//! are absolute: time spent between dump and load counts, and entries that expired meanwhile
//! are skipped on load. The file is written to a temporary name and renamed into place.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::Path,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{Deserialize, Serialize};
use strata::RawRecord;

use crate::fail::Failure;

const FORMAT: &str = "strata-dump";
const VERSION: u32 = 1;
/// Longest line accepted when loading (a value larger than this is not a cache entry).
const MAX_LINE: usize = 64 << 20;

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

/// Writes `records` to `path`, calling `tick` after each.
pub fn write(
    path: &Path,
    source: &str,
    records: &[RawRecord],
    tick: &dyn Fn(),
) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| Failure::other(format!("cannot write {}: {e}", tmp.display()));
    let mut out = BufWriter::new(File::create(&tmp).map_err(io)?);
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
    let mut lines = BufReader::new(file).lines();
    let bad = |n: usize, why: String| {
        Failure::other(format!(
            "{} line {n} is not a strata dump line: {why}",
            path.display()
        ))
    };
    let header: Header = parse(next_line(&mut lines, 1, path)?.as_str()).map_err(|e| bad(1, e))?;
    if header.format != FORMAT || header.version > VERSION {
        return Err(bad(
            1,
            format!(
                "format {} version {} (this strata reads {FORMAT} up to version {VERSION})",
                header.format, header.version
            ),
        ));
    }
    let mut records = Vec::new();
    for n in 2.. {
        let text = next_line(&mut lines, n, path)?;
        if let Ok(end) = parse::<End>(&text) {
            return finish(records, end, path);
        }
        let line: Line = parse(&text).map_err(|e| bad(n, e))?;
        records.push(from_line(line).map_err(|e| bad(n, e))?);
    }
    unreachable!("the loop above only ends by returning")
}

fn next_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    n: usize,
    path: &Path,
) -> Result<String, Failure> {
    match lines.next() {
        Some(Ok(text)) if text.len() <= MAX_LINE => Ok(text),
        Some(Ok(_)) => Err(Failure::other(format!(
            "{} line {n} is longer than {MAX_LINE} bytes",
            path.display()
        ))),
        Some(Err(e)) => Err(Failure::other(format!(
            "cannot read {} line {n}: {e}",
            path.display()
        ))),
        None => Err(Failure::other(format!(
            "{} ends at line {n} without its end line: the dump is truncated; nothing was loaded",
            path.display()
        ))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn finish(records: Vec<RawRecord>, end: End, path: &Path) -> Result<Vec<RawRecord>, Failure> {
    if end.end && end.entries == records.len() as u64 {
        return Ok(records);
    }
    Err(Failure::other(format!(
        "{} says it holds {} entries but has {}; nothing was loaded",
        path.display(),
        end.entries,
        records.len()
    )))
}

fn from_line(line: Line) -> Result<RawRecord, String> {
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
        namespace: line.namespace,
        key,
        value,
        deadline: line.deadline,
    })
}
