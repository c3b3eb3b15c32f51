//! One function per subcommand.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

use serde::Serialize;
use strata::RawRecord;

use crate::{
    args::{Cli, Command},
    dumpfile,
    fail::Failure,
    output::{self, human_bytes, human_ttl, key_text},
    source::{self, Opening, Source},
};

/// Entries written to a destination per batch when loading.
const LOAD_BATCH: usize = 1024;

/// Runs the command `cli` names.
pub async fn run(cli: &Cli) -> Result<(), Failure> {
    let json = cli.json;
    let how = Opening {
        create: cli.create,
        discard_corrupt: cli.discard_corrupt,
        sentinel_master: cli.sentinel_master.clone(),
    };
    match &cli.command {
        Command::Inspect { source } => {
            let src = source::open_existing(source, how).await?;
            let result = inspect(&src, json).await;
            src.close_after(result).await
        }
        Command::Keys {
            source,
            namespace,
            limit,
        } => {
            let namespace = checked(namespace.as_deref())?;
            let src = source::open_existing(source, how).await?;
            let result = keys(&src, namespace.as_deref(), *limit, json).await;
            src.close_after(result).await
        }
        Command::Get {
            source,
            namespace,
            key,
        } => {
            checked(Some(namespace))?;
            let src = source::open_existing(source, how).await?;
            let result = get(&src, namespace, key, json).await;
            src.close_after(result).await
        }
        Command::Dump {
            source,
            file,
            namespace,
        } => {
            let namespace = checked(namespace.as_deref())?;
            let src = source::open_existing(source, how).await?;
            let result = dump(&src, file, namespace.as_deref(), json).await;
            src.close_after(result).await
        }
        Command::Load { file, destination } => load(file, destination, how, json).await,
        Command::PurgeExpired { dir } => {
            let db = source::open_existing_dir(dir, how)?;
            let purged = purge_expired(&db, json);
            db.close().await;
            purged
        }
    }
}

/// A `--namespace` validated as strata validates namespaces (exit 1 if it could never exist),
/// so no glob character reaches a `SCAN MATCH` pattern.
fn checked(namespace: Option<&str>) -> Result<Option<String>, Failure> {
    namespace
        .map(|ns| strata::Namespace::new(ns).map(|ns| ns.as_str().to_owned()))
        .transpose()
        .map_err(|e| Failure::other(e.to_string()))
}

/// The failure for a `--namespace` under which `src` holds no live entry.
fn no_namespace(src: &Source, namespace: &str) -> Failure {
    Failure::not_found(format!(
        "namespace {namespace} has no live entries in {}; `strata inspect` lists the namespaces",
        src.describe()
    ))
}

/// Milliseconds since the Unix epoch, by the system clock.
fn now_ms() -> u64 {
    strata::Clock::system().now_ms()
}

/// Time left before `deadline` (`None`: never expires).
fn remaining(deadline: Option<u64>, now: u64) -> Option<Duration> {
    deadline.map(|d| Duration::from_millis(d.saturating_sub(now)))
}

/// Entries, bytes and an expiry histogram of one namespace.
#[derive(Default, Serialize)]
struct NamespaceStats {
    entries: u64,
    bytes: u64,
    expiry: Histogram,
}

/// How many entries expire within each bucket of time from now.
#[derive(Default, Serialize)]
struct Histogram {
    lt_1m: u64,
    lt_1h: u64,
    lt_1d: u64,
    lt_7d: u64,
    ge_7d: u64,
    never: u64,
}

impl Histogram {
    const LABELS: [&'static str; 6] = ["<1m", "<1h", "<1d", "<7d", ">=7d", "never"];

    fn add(&mut self, ttl: Option<Duration>) {
        let bucket = match ttl.map(|t| t.as_secs()) {
            None => &mut self.never,
            Some(0..60) => &mut self.lt_1m,
            Some(60..3_600) => &mut self.lt_1h,
            Some(3_600..86_400) => &mut self.lt_1d,
            Some(86_400..604_800) => &mut self.lt_7d,
            Some(_) => &mut self.ge_7d,
        };
        *bucket += 1;
    }

    fn counts(&self) -> [u64; 6] {
        [
            self.lt_1m, self.lt_1h, self.lt_1d, self.lt_7d, self.ge_7d, self.never,
        ]
    }
}

#[derive(Serialize)]
struct Inspection {
    source: String,
    entries: u64,
    bytes: u64,
    namespaces: BTreeMap<String, NamespaceStats>,
}

async fn inspect(src: &Source, json: bool) -> Result<(), Failure> {
    let bar = output::bar(src.size_hint().await, "inspecting");
    let now = now_ms();
    let mut namespaces: BTreeMap<String, NamespaceStats> = BTreeMap::new();
    src.scan(None, &mut |raw| {
        let stats = namespaces.entry(raw.namespace.clone()).or_default();
        stats.entries += 1;
        stats.bytes += (raw.key.len() + raw.value.len()) as u64;
        stats.expiry.add(remaining(raw.deadline, now));
        bar.inc(1);
    })
    .await?;
    bar.finish_and_clear();
    let report = Inspection {
        source: src.describe(),
        entries: namespaces.values().map(|s| s.entries).sum(),
        bytes: namespaces.values().map(|s| s.bytes).sum(),
        namespaces,
    };
    if json {
        output::json(&report);
    } else {
        print_inspection(&report);
    }
    Ok(())
}

fn print_inspection(report: &Inspection) {
    println!(
        "{}: {} namespaces, {} entries, {} of keys and values",
        report.source,
        report.namespaces.len(),
        report.entries,
        human_bytes(report.bytes)
    );
    if report.namespaces.is_empty() {
        return;
    }
    print!("{:<20} {:>10} {:>12}", "NAMESPACE", "ENTRIES", "BYTES");
    for label in Histogram::LABELS {
        print!(" {label:>8}");
    }
    println!();
    for (name, stats) in &report.namespaces {
        print!(
            "{name:<20} {:>10} {:>12}",
            stats.entries,
            human_bytes(stats.bytes)
        );
        for count in stats.expiry.counts() {
            print!(" {count:>8}");
        }
        println!();
    }
}

#[derive(Serialize)]
struct KeyLine {
    namespace: String,
    key: String,
    ttl_ms: Option<u64>,
}

async fn keys(
    src: &Source,
    namespace: Option<&str>,
    limit: Option<usize>,
    json: bool,
) -> Result<(), Failure> {
    let now = now_ms();
    let limit = limit.unwrap_or(usize::MAX);
    let mut lines = Vec::new();
    let mut seen = 0u64;
    src.scan(namespace, &mut |raw| {
        seen += 1;
        if lines.len() < limit {
            lines.push(KeyLine {
                namespace: raw.namespace,
                key: key_text(&raw.key),
                ttl_ms: raw.deadline.map(|d| d.saturating_sub(now)),
            });
        }
    })
    .await?;
    if let (Some(ns), 0) = (namespace, seen) {
        return Err(no_namespace(src, ns));
    }
    if json {
        output::json(&lines);
        return Ok(());
    }
    for line in lines {
        let ttl = human_ttl(line.ttl_ms.map(Duration::from_millis));
        println!("{}:{}\t{ttl}", line.namespace, line.key);
    }
    Ok(())
}

#[derive(Serialize)]
struct Value {
    namespace: String,
    key: String,
    ttl_ms: Option<u64>,
    value: serde_json::Value,
}

async fn get(src: &Source, namespace: &str, key: &str, json: bool) -> Result<(), Failure> {
    let raw = src.get(namespace, key.as_bytes()).await?.ok_or_else(|| {
        Failure::not_found(format!(
            "no live entry {namespace}:{key} in {}",
            src.describe()
        ))
    })?;
    let value = output::value_json(&raw.value).map_err(|e| {
        Failure::other(format!(
            "the value under {namespace}:{key} does not decode: {e}"
        ))
    })?;
    let ttl_ms = raw.deadline.map(|d| d.saturating_sub(now_ms()));
    if json {
        let out = Value {
            namespace: namespace.into(),
            key: key.into(),
            ttl_ms,
            value,
        };
        output::json(&out);
    } else {
        let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
        println!("{text}");
    }
    Ok(())
}

async fn dump(
    src: &Source,
    file: &Path,
    namespace: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let bar = output::bar(src.size_hint().await, "reading");
    let mut records = Vec::new();
    src.scan(namespace, &mut |raw| {
        records.push(raw);
        bar.inc(1);
    })
    .await?;
    bar.finish_and_clear();
    if let (Some(ns), true) = (namespace, records.is_empty()) {
        return Err(no_namespace(src, ns));
    }
    let bar = output::bar(Some(records.len() as u64), "writing");
    dumpfile::write(file, &src.describe(), &records, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if json {
        output::json(&serde_json::json!({ "dumped": records.len(), "file": file }));
    } else {
        println!(
            "dumped {} entries from {} to {}",
            records.len(),
            src.describe(),
            file.display()
        );
    }
    Ok(())
}

async fn load(file: &Path, destination: &str, how: Opening, json: bool) -> Result<(), Failure> {
    let records = dumpfile::read(file)?;
    let now = now_ms();
    let total = records.len();
    let live: Vec<RawRecord> = records
        .into_iter()
        .filter(|raw| raw.deadline.is_none_or(|d| d > now))
        .collect();
    let expired = total - live.len();
    let namespaces: BTreeSet<String> = live.iter().map(|raw| raw.namespace.clone()).collect();
    let limit = strata::DiskDb::MAX_NAMESPACES;
    let fresh_dir =
        !source::is_redis_url(destination) && !strata::DiskDb::is_data_dir(Path::new(destination));
    if namespaces.len() > limit && fresh_dir {
        // No new data directory takes it: refused before the destination is even created.
        // An existing one may already hold them all (a format-1 directory keeps its
        // namespaces past the limit): `make_room` below decides there.
        return Err(Failure::other(format!(
            "the dump holds {} namespaces and a data directory takes at most {limit}, so nothing was loaded; dump the namespaces in groups (`strata dump --namespace NS`) and load each group into a directory of its own",
            namespaces.len()
        )));
    }
    let dst = source::open(destination, how).await?;
    let bar = output::bar(Some(live.len() as u64), "loading");
    let loaded = live.len();
    let written = async {
        // Every namespace the dump adds, at once, before the first write: a dump that does not
        // fit beside what the directory holds is refused with nothing written.
        dst.make_room(&namespaces).map_err(|e| match e {
            strata::Error::TooManyNamespaces(e) => Failure::other(format!(
                "{} holds {} namespaces and the dump adds {} new ones, past the {} one data directory takes, so nothing was loaded; load it into another directory, or delete the entries of namespaces no longer used there (a namespace without live entries stops counting at the directory's next open)",
                dst.describe(),
                e.held,
                e.new,
                e.limit
            )),
            other => other.into(),
        })?;
        let mut rest = live;
        while !rest.is_empty() {
            let batch: Vec<RawRecord> = rest.drain(..rest.len().min(LOAD_BATCH)).collect();
            let n = batch.len() as u64;
            dst.put(batch).await?;
            bar.inc(n);
        }
        Ok::<(), Failure>(())
    }
    .await;
    bar.finish_and_clear();
    let described = dst.describe();
    dst.close_after(written).await?;
    if json {
        output::json(&serde_json::json!({ "loaded": loaded, "expired": expired }));
    } else {
        println!(
            "loaded {loaded} entries into {described} ({expired} had expired and were skipped)"
        );
    }
    Ok(())
}

fn purge_expired(db: &strata::DiskDb, json: bool) -> Result<(), Failure> {
    // Opening a data directory deletes the expired records of every namespace.
    let summary = db.load_summary();
    db.compact()?;
    if json {
        output::json(&serde_json::json!({ "purged": summary.purged, "live": summary.live }));
    } else {
        println!(
            "purged {} expired entries from {} ({} live)",
            summary.purged,
            db.dir().display(),
            summary.live
        );
    }
    Ok(())
}
