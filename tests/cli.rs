//! The `strata` binary, run as a process against data directories written by DiskStore.
#![cfg(feature = "cli")]

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use serde_json::{json, Value};
use strata::{DiskDb, ManualClock, Store};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap()
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// Runs `strata --json ARGS`, expects success and returns the JSON it printed.
fn json_ok(args: &[&str]) -> Value {
    let out = strata(&[&["--json"], args].concat());
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text_ok(args: &[&str]) -> String {
    let out = strata(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct User {
    name: String,
    visits: u32,
}

/// A directory with `sessions` (2 entries, 30 min TTL), `users` (1 entry, no TTL) and
/// `counters` (3 entries: 30 s, 2 h, 10 days).
fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let db = DiskDb::builder().dir(dir.path()).open().unwrap();
        let sessions = db.store::<String, String>("sessions").unwrap();
        let half_hour = Some(Duration::from_secs(1800));
        sessions
            .put("s1".into(), "ada".into(), half_hour)
            .await
            .unwrap();
        sessions
            .put("s2".into(), "grace".into(), half_hour)
            .await
            .unwrap();
        let users = db.store::<String, User>("users").unwrap();
        let ada = User {
            name: "ada".into(),
            visits: 3,
        };
        users.put("ada".into(), ada, None).await.unwrap();
        let counters = db.store::<String, Vec<u64>>("counters").unwrap();
        for (key, secs) in [("a", 30), ("b", 7200), ("c", 864_000)] {
            let ttl = Some(Duration::from_secs(secs));
            counters.put(key.into(), vec![1, 2], ttl).await.unwrap();
        }
    });
    dir
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn inspect_counts_entries_bytes_and_expiry_per_namespace() {
    let dir = populated();
    let report = json_ok(&["inspect", dir_arg(dir.path())]);
    assert_eq!(report["entries"], 6);
    let sessions = &report["namespaces"]["sessions"];
    assert_eq!(sessions["entries"], 2);
    assert!(sessions["bytes"].as_u64().unwrap() > 4);
    assert_eq!(sessions["expiry"]["lt_1h"], 2);
    assert_eq!(report["namespaces"]["users"]["expiry"]["never"], 1);
    let counters = &report["namespaces"]["counters"]["expiry"];
    assert_eq!(
        (
            counters["lt_1m"].clone(),
            counters["lt_1d"].clone(),
            counters["ge_7d"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );

    let text = text_ok(&["inspect", dir_arg(dir.path())]);
    assert!(text.contains("3 namespaces, 6 entries"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("sessions") && l.contains(" 2 ")),
        "{text}"
    );
}

#[test]
fn keys_lists_namespaced_keys_with_filters() {
    let dir = populated();
    let d = dir_arg(dir.path());
    let all = json_ok(&["keys", d]);
    assert_eq!(all.as_array().unwrap().len(), 6);
    let sessions = json_ok(&["keys", d, "--namespace", "sessions"]);
    let names: Vec<_> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].clone())
        .collect();
    assert_eq!(names, [json!("s1"), json!("s2")]);
    assert!(sessions[0]["ttl_ms"].as_u64().unwrap() <= 1_800_000);
    assert_eq!(
        json_ok(&["keys", d, "--limit", "4"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let text = text_ok(&["keys", d, "-n", "users"]);
    assert_eq!(text, "users:ada\tnever\n");
}

#[test]
fn get_renders_any_value_as_json() {
    let dir = populated();
    let d = dir_arg(dir.path());
    let got = json_ok(&["get", d, "users", "ada"]);
    assert_eq!(got["value"], json!({ "name": "ada", "visits": 3 }));
    assert_eq!(got["ttl_ms"], Value::Null);
    assert_eq!(
        json_ok(&["get", d, "counters", "b"])["value"],
        json!([1, 2])
    );
    let text = text_ok(&["get", d, "sessions", "s1"]);
    assert_eq!(text.trim(), "\"ada\"");

    let missing = strata(&["get", d, "users", "nobody"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no live entry users:nobody"));
}

/// Session ids are URL-safe base64, so one in 64 starts with `-`: such a key is a key, not a flag,
/// wherever `--json` is written (CI failed on a random id `-WkUiWc3CK-p7Frz9Ylh7g`). A key that is
/// also a flag's name (`-h`, `--json`) needs `--` before it, as with any command line.
#[test]
fn a_key_that_starts_with_a_dash_is_read_as_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let plain = ["-WkUiWc3CK-p7Frz9Ylh7g", "-x", "-"];
    let flag_like = ["-h", "--json", "--"];
    block_on(async {
        let db = DiskDb::builder().dir(dir.path()).open().unwrap();
        let sessions = db.store::<String, String>("sessions").unwrap();
        for key in plain.iter().chain(&flag_like) {
            let value = format!("v{key}");
            sessions.put(key.to_string(), value, None).await.unwrap();
        }
    });
    let d = dir_arg(dir.path());
    for key in plain {
        let value = json!(format!("v{key}"));
        assert_eq!(json_ok(&["get", d, "sessions", key])["value"], value);
        let out = strata(&["get", d, "sessions", key, "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{key}: {stderr}");
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["value"], value, "{key}");
    }
    for key in plain.iter().chain(&flag_like) {
        let text = text_ok(&["get", d, "sessions", "--", key]);
        assert_eq!(text.trim(), format!("\"v{key}\""), "{key}");
    }
}

#[test]
fn dump_then_load_copies_every_live_entry() {
    let dir = populated();
    let file = dir.path().with_extension("dump");
    let f = file.to_str().unwrap();
    let dumped = json_ok(&["dump", dir_arg(dir.path()), f]);
    assert_eq!(dumped["dumped"], 6);

    let copy = tempfile::tempdir().unwrap();
    let target = copy.path().join("data");
    let loaded = json_ok(&["load", f, target.to_str().unwrap()]);
    assert_eq!(loaded, json!({ "loaded": 6, "expired": 0 }));
    let report = json_ok(&["inspect", target.to_str().unwrap()]);
    assert_eq!(report["entries"], 6);
    assert_eq!(
        json_ok(&["get", target.to_str().unwrap(), "users", "ada"])["value"]["visits"],
        3
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn load_skips_expired_entries_and_refuses_a_truncated_dump() {
    let dir = populated();
    let file = dir.path().with_extension("dump");
    let f = file.to_str().unwrap();
    json_ok(&["dump", dir_arg(dir.path()), f]);
    let text = std::fs::read_to_string(&file).unwrap();

    // One entry's deadline moved to the past: skipped on load.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut entry: Value = serde_json::from_str(&lines[1]).unwrap();
    entry["deadline"] = json!(1_000);
    lines[1] = entry.to_string();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let target = tempfile::tempdir().unwrap();
    let loaded = json_ok(&["load", f, dir_arg(target.path())]);
    assert_eq!(loaded, json!({ "loaded": 5, "expired": 1 }));

    // Without its end line the dump is refused and nothing is written.
    std::fs::write(&file, lines[..lines.len() - 1].join("\n")).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let out = strata(&["load", f, dir_arg(fresh.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    assert_eq!(std::fs::read_dir(fresh.path()).unwrap().count(), 0);

    std::fs::write(&file, "garbage\n").unwrap();
    let out = strata(&["load", f, dir_arg(fresh.path())]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_file(&file).unwrap();
}

/// A dump of `namespaces` namespaces with `per` entries each, every value the `users` entry of
/// [`populated`] (dumped, then copied under other namespaces and keys).
fn dump_of_namespaces(namespaces: usize, per: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = populated();
    let file = dir.path().with_extension("dump");
    json_ok(&["dump", dir_arg(dir.path()), file.to_str().unwrap()]);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let user: Value = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["namespace"] == "users")
        .unwrap();
    let mut out = vec![lines[0].to_owned()];
    for ns in 0..namespaces {
        for k in 0..per {
            let mut entry = user.clone();
            entry["namespace"] = json!(format!("tenant{ns:02}"));
            entry["key"] = json!(format!("k{k}"));
            out.push(entry.to_string());
        }
    }
    out.push(json!({ "end": true, "entries": namespaces * per }).to_string());
    std::fs::write(&file, out.join("\n") + "\n").unwrap();
    (dir, file)
}

/// A dump holding more namespaces than a data directory takes (70, in more than one write
/// batch) is refused with a message saying so, before anything is written; so is one whose
/// new namespaces do not fit beside those the directory holds, which keeps its entries.
#[test]
fn a_dump_with_more_namespaces_than_a_directory_takes_loads_nothing() {
    let (_src, file) = dump_of_namespaces(70, 20);
    let f = file.to_str().unwrap();
    let target = tempfile::tempdir().unwrap();
    let out = strata(&["load", f, dir_arg(target.path())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("70 namespaces")
            && stderr.contains("at most 64")
            && stderr.contains("nothing was loaded"),
        "{stderr}"
    );
    let written = std::fs::read_dir(target.path()).unwrap().count();
    assert_eq!(written, 0, "the directory was left untouched");

    // 63 namespaces held, a dump of 3 (one of them held): one too many.
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let db = DiskDb::builder().dir(dir.path()).open().unwrap();
        for i in 0..63 {
            let store = db
                .store::<String, u64>(format!("tenant{:02}", i + 2))
                .unwrap();
            store.put("k".into(), 1, None).await.unwrap();
        }
        db.close().await;
    });
    let (_src, file) = dump_of_namespaces(3, 2);
    let f = file.to_str().unwrap();
    let out = strata(&["load", f, dir_arg(dir.path())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("holds 63 namespaces")
            && stderr.contains("2 new")
            && stderr.contains("nothing was loaded"),
        "{stderr}"
    );
    assert_eq!(json_ok(&["inspect", dir_arg(dir.path())])["entries"], 63);
    // One new namespace fits.
    let (_src, file) = dump_of_namespaces(1, 2);
    let loaded = json_ok(&["load", file.to_str().unwrap(), dir_arg(dir.path())]);
    assert_eq!(loaded["loaded"], 2);
    assert_eq!(json_ok(&["inspect", dir_arg(dir.path())])["entries"], 65);
}

/// A data directory that holds more namespaces than a new one takes (a format-1 directory
/// with 70, kept whole by the migration) can be dumped and loaded back into itself: the load
/// adds no namespace, so the limit does not refuse it. The old CLI refused any dump of more
/// than 64 namespaces before looking at the destination.
#[test]
fn a_dump_of_a_directory_past_the_limit_loads_back_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let live: Vec<strata::RawRecord> = (0..70)
        .map(|ns| strata::RawRecord {
            namespace: format!("tenant{ns:02}"),
            key: b"k".to_vec(),
            value: strata::codec::encode_value(
                &(ns as u64),
                strata::codec::Format::MessagePack,
                "k",
            )
            .unwrap(),
            deadline: None,
        })
        .collect();
    support::format1::write_format_1(dir.path(), &live, &[]);
    assert_eq!(json_ok(&["inspect", dir_arg(dir.path())])["entries"], 70);
    let file = dir.path().with_extension("dump");
    json_ok(&["dump", dir_arg(dir.path()), file.to_str().unwrap()]);
    let loaded = json_ok(&["load", file.to_str().unwrap(), dir_arg(dir.path())]);
    assert_eq!(loaded["loaded"], 70);
    assert_eq!(json_ok(&["inspect", dir_arg(dir.path())])["entries"], 70);
    std::fs::remove_file(&file).unwrap();
}

/// Session records written through `StrataSessionStore` into a `DiskStore`.
#[cfg(feature = "sessions")]
mod session_records {
    use std::collections::HashMap;

    use strata::sessions::StrataSessionStore;
    use tower_sessions::{
        cookie::time::{Duration as Span, OffsetDateTime},
        session::{Id, Record},
        SessionStore,
    };

    use super::*;

    /// Two sessions (a user id and a cart) in namespace `sessions` of a fresh directory.
    pub fn written() -> (tempfile::TempDir, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        let records = block_on(async {
            let db = DiskDb::builder().dir(dir.path()).open().unwrap();
            let store = StrataSessionStore::new(db.store::<String, Record>("sessions").unwrap());
            let mut records = Vec::new();
            for (user, cart) in [(7, vec!["apple"]), (8, vec!["pear", "fig"])] {
                let mut record = Record {
                    id: Id::default(),
                    data: HashMap::from([
                        ("user_id".to_owned(), json!(user)),
                        ("cart".to_owned(), json!(cart)),
                    ]),
                    expiry_date: OffsetDateTime::now_utc() + Span::minutes(30),
                };
                store.create(&mut record).await.unwrap();
                records.push(record);
            }
            records
        });
        (dir, records)
    }

    /// Every record reads back unchanged through `StrataSessionStore` from `dir`.
    pub fn assert_loadable(dir: &Path, records: &[Record]) {
        block_on(async {
            let db = DiskDb::builder().dir(dir).open().unwrap();
            let store = StrataSessionStore::new(db.store::<String, Record>("sessions").unwrap());
            for record in records {
                assert_eq!(store.load(&record.id).await.unwrap().as_ref(), Some(record));
            }
        });
    }

    #[test]
    fn get_shows_a_session_id_and_expiry_date_readably() {
        let (dir, records) = written();
        let id = records[1].id.to_string();
        let got = json_ok(&["get", dir_arg(dir.path()), "sessions", &id]);
        let value = &got["value"];
        assert_eq!(value["id"], json!(id));
        let expiry = records[1]
            .expiry_date
            .format(&tower_sessions::cookie::time::format_description::well_known::Rfc3339)
            .unwrap();
        assert_eq!(value["expiry_date"], json!(expiry));
        assert_eq!(value["data"]["cart"], json!(["pear", "fig"]));
        assert_eq!(value["data"]["user_id"], json!(8));
        let text = text_ok(&["get", dir_arg(dir.path()), "sessions", &id]);
        assert!(text.contains(&id) && text.contains(&expiry), "{text}");
    }

    #[test]
    fn dump_then_load_round_trips_session_records() {
        let (dir, records) = written();
        let file = dir.path().with_extension("dump");
        let f = file.to_str().unwrap();
        assert_eq!(json_ok(&["dump", dir_arg(dir.path()), f])["dumped"], 2);
        let copy = tempfile::tempdir().unwrap();
        assert_eq!(json_ok(&["load", f, dir_arg(copy.path())])["loaded"], 2);
        assert_loadable(copy.path(), &records);
        std::fs::remove_file(&file).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn dump_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = populated();
    let file = dir.path().with_extension("dump");
    json_ok(&["dump", dir_arg(dir.path()), file.to_str().unwrap()]);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(mode & 0o777, 0o600, "dump files hold live session ids");
}

/// A dump whose second line is 1 GiB of zero bytes without a newline (a sparse file: no disk
/// used), loaded under a 768 MiB address-space limit: reading the line whole would abort the
/// process; reading it through the line limit refuses it with exit code 1.
#[cfg(unix)]
#[test]
fn a_gigabyte_line_is_refused_without_reading_it_whole() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("huge.dump");
    std::fs::write(
        &file,
        "{\"format\":\"strata-dump\",\"version\":1,\"source\":\"t\"}\n",
    )
    .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(1 << 30).unwrap();
    let target = scratch.path().join("data");
    let script = format!(
        "ulimit -v 786432; exec \"$0\" load {} {}",
        file.display(),
        target.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_strata")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line 2 is longer than"), "{err}");
}

#[test]
fn purge_expired_deletes_what_expired_while_nothing_was_running() {
    let dir = tempfile::tempdir().unwrap();
    let two_hours_ago = ManualClock::starting_at(ManualClock::new().now_ms() - 7_200_000);
    block_on(async {
        let db = DiskDb::builder()
            .dir(dir.path())
            .clock(two_hours_ago.clock())
            .open()
            .unwrap();
        let store = db.store::<String, String>("tokens").unwrap();
        for key in ["a", "b", "c"] {
            store
                .put(key.into(), "t".into(), Some(Duration::from_secs(60)))
                .await
                .unwrap();
        }
        store.put("d".into(), "t".into(), None).await.unwrap();
    });
    let purged = json_ok(&["purge-expired", dir_arg(dir.path())]);
    assert_eq!(purged, json!({ "purged": 3, "live": 1 }));
    assert_eq!(
        json_ok(&["purge-expired", dir_arg(dir.path())])["purged"],
        0
    );
}

#[test]
fn a_directory_held_by_another_process_is_exit_code_2() {
    let dir = populated();
    let _held = DiskDb::builder().dir(dir.path()).open().unwrap();
    for args in [
        vec!["inspect", dir_arg(dir.path())],
        vec!["keys", dir_arg(dir.path())],
        vec!["purge-expired", dir_arg(dir.path())],
    ] {
        let out = strata(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("locked by another process"), "{err}");
    }
    let out = strata(&["--json", "inspect", dir_arg(dir.path())]);
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"], "unusable");
}

#[test]
fn a_missing_or_corrupt_directory_is_exit_code_2() {
    let out = strata(&["inspect", "/nonexistent/strata-data"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a strata data directory"));

    let dir = populated();
    corrupt(dir.path());
    let out = strata(&["inspect", dir_arg(dir.path())]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    assert!(
        err.contains("--discard-corrupt") && !err.contains("OnCorrupt"),
        "the hint names the CLI flag, not a Rust call: {err}"
    );
    let report = json_ok(&["--discard-corrupt", "inspect", dir_arg(dir.path())]);
    assert_eq!(report["entries"], 0);
}

#[test]
fn a_directory_that_is_not_a_data_directory_is_refused_untouched() {
    let plain = tempfile::tempdir().unwrap();
    std::fs::write(plain.path().join("notes.txt"), "mine").unwrap();
    let empty = tempfile::tempdir().unwrap();
    for dir in [plain.path(), empty.path()] {
        let before = walk(dir);
        for args in [
            vec!["inspect", dir_arg(dir)],
            vec!["keys", dir_arg(dir)],
            vec!["get", dir_arg(dir), "users", "ada"],
            vec!["purge-expired", dir_arg(dir)],
        ] {
            let out = strata(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("not a strata data directory") && err.contains("--create"),
                "{err}"
            );
            assert_eq!(
                walk(dir),
                before,
                "{args:?} created files in {}",
                dir.display()
            );
        }
    }
    // A dump is not loaded over someone else's files either.
    let data = populated();
    let file = data.path().with_extension("dump");
    json_ok(&["dump", dir_arg(data.path()), file.to_str().unwrap()]);
    let out = strata(&["load", file.to_str().unwrap(), dir_arg(plain.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(walk(plain.path()).len(), 1);
    std::fs::remove_file(&file).unwrap();

    assert_eq!(
        json_ok(&["--create", "inspect", dir_arg(empty.path())])["entries"],
        0
    );
    assert_eq!(json_ok(&["inspect", dir_arg(empty.path())])["entries"], 0);
}

#[test]
fn an_unknown_namespace_is_exit_code_1() {
    let dir = populated();
    let d = dir_arg(dir.path());
    let file = dir.path().with_extension("dump");
    for args in [
        vec!["keys", d, "--namespace", "nosuch"],
        vec!["dump", d, file.to_str().unwrap(), "--namespace", "nosuch"],
        vec!["keys", d, "--namespace", "bad:ns"],
    ] {
        let out = strata(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("nosuch") || err.contains("bad:ns"), "{err}");
    }
    assert!(
        !file.exists(),
        "no dump is written for an unknown namespace"
    );
}

#[test]
fn a_mistyped_url_never_prints_its_password() {
    let out = strata(&["inspect", "redis:/ada:hunter2@localhost:6379"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let out = strata(&["inspect", "http://ada:hunter2@localhost:6379"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

/// Overwrites the middle of every engine file with garbage.
fn corrupt(dir: &Path) {
    for entry in walk(dir) {
        let mut bytes = std::fs::read(&entry).unwrap();
        if bytes.len() > 16 && !entry.ends_with("LOCK") {
            let mid = bytes.len() / 2;
            let end = (mid + 64).min(bytes.len());
            bytes[mid..end].iter_mut().for_each(|b| *b ^= 0x5a);
            std::fs::write(&entry, bytes).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn usage_errors_are_exit_code_2() {
    assert_eq!(strata(&["inspect"]).status.code(), Some(2));
    assert_eq!(strata(&["frobnicate"]).status.code(), Some(2));
    assert!(strata(&["--help"]).status.success());
}

mod support;

#[cfg(feature = "redis")]
mod redis {
    //! The same commands against a real `redis-server` on loopback.

    use crate::support;

    use super::*;
    use strata::RedisStore;
    use support::RedisServer;

    async fn fill(url: &str) {
        let sessions: RedisStore<String, String> = RedisStore::builder()
            .url(url)
            .namespace("sessions")
            .build()
            .await
            .unwrap();
        let ttl = Some(Duration::from_secs(1800));
        sessions.put("s1".into(), "ada".into(), ttl).await.unwrap();
        let hits: RedisStore<String, u64> = RedisStore::builder()
            .url(url)
            .namespace("hits")
            .build()
            .await
            .unwrap();
        hits.incr(&"home".into(), 41).await.unwrap();
        hits.incr(&"home".into(), 1).await.unwrap();
    }

    #[test]
    fn inspect_keys_get_dump_and_load_over_redis() {
        let server = RedisServer::start();
        let url = server.url();
        block_on(fill(&url));
        server.raw(&["SET", "not-strata", "x"]);

        let report = json_ok(&["inspect", &url]);
        assert_eq!(report["entries"], 2, "{report}");
        assert_eq!(report["namespaces"]["sessions"]["expiry"]["lt_1h"], 1);
        assert_eq!(report["namespaces"]["hits"]["expiry"]["never"], 1);
        assert_eq!(json_ok(&["get", &url, "hits", "home"])["value"], 42);
        assert_eq!(json_ok(&["get", &url, "sessions", "s1"])["value"], "ada");
        let keys = json_ok(&["keys", &url, "--namespace", "sessions"]);
        assert_eq!(keys[0]["key"], "s1");

        // A directory's entries into Redis, and Redis' back into a directory.
        let dir = populated();
        let file = dir.path().with_extension("dump");
        let f = file.to_str().unwrap();
        json_ok(&["dump", dir_arg(dir.path()), f]);
        assert_eq!(json_ok(&["load", f, &url])["loaded"], 6);
        // sessions:s1 was in both: 2 + 6 - 1.
        assert_eq!(json_ok(&["inspect", &url])["entries"], 7);
        let ttl = server.raw(&["PTTL", "sessions:s2"]);
        let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        assert!(ttl > 1_700_000, "the TTL travels with the entry: {ttl}");
        assert_eq!(
            json_ok(&["get", &url, "users", "ada"])["value"]["visits"],
            3
        );

        json_ok(&["dump", &url, f]);
        let back = tempfile::tempdir().unwrap();
        assert_eq!(json_ok(&["load", f, dir_arg(back.path())])["loaded"], 7);
        assert_eq!(
            json_ok(&["get", dir_arg(back.path()), "hits", "home"])["value"],
            42
        );
        std::fs::remove_file(&file).unwrap();
    }

    #[cfg(feature = "sessions")]
    #[test]
    fn session_records_move_directory_to_redis_to_directory() {
        use crate::session_records::{assert_loadable, written};
        let server = RedisServer::start();
        let url = server.url();
        let (dir, records) = written();
        let file = dir.path().with_extension("dump");
        let f = file.to_str().unwrap();
        json_ok(&["dump", dir_arg(dir.path()), f]);
        assert_eq!(json_ok(&["load", f, &url])["loaded"], 2);
        let ttl = server.raw(&["PTTL", &format!("sessions:{}", records[0].id)]);
        let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        assert!(ttl > 1_700_000, "the session's TTL travels with it: {ttl}");

        json_ok(&["dump", &url, f]);
        let back = tempfile::tempdir().unwrap();
        assert_eq!(json_ok(&["load", f, dir_arg(back.path())])["loaded"], 2);
        assert_loadable(back.path(), &records);
        std::fs::remove_file(&file).unwrap();
    }

    /// A port that answers like a web server (one HTTP reply, then close).
    fn http_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(4) {
                use std::io::{Read, Write};
                let mut stream = stream.unwrap();
                let mut buf = [0; 512];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            }
        });
        port
    }

    #[test]
    fn a_port_that_is_not_redis_is_exit_code_2_with_a_clear_message() {
        let port = http_port();
        let out = strata(&["inspect", &format!("redis://ada:hunter2@127.0.0.1:{port}")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("not a Redis server"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn an_unknown_namespace_over_redis_is_exit_code_1() {
        let server = RedisServer::start();
        let url = server.url();
        block_on(fill(&url));
        let out = strata(&["keys", &url, "--namespace", "nosuch"]);
        assert_eq!(out.status.code(), Some(1));
        // A glob character is refused, not used as a SCAN pattern matching every namespace.
        let out = strata(&["keys", &url, "--namespace", "*"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    }

    #[test]
    fn commands_reach_the_master_the_sentinels_name() {
        use support::redis_sentinel::{Sentinels, MASTER_NAME};
        let set = Sentinels::start(Duration::from_secs(60));
        block_on(fill(&set.master.url()));
        let sentinels = set.urls().join(",");
        let via = |args: &[&str]| json_ok(&[&["--sentinel-master", MASTER_NAME], args].concat());
        assert_eq!(via(&["inspect", &sentinels])["entries"], 2);
        assert_eq!(via(&["get", &sentinels, "hits", "home"])["value"], 42);
        let dir = populated();
        let file = dir.path().with_extension("dump");
        let f = file.to_str().unwrap();
        json_ok(&["dump", dir_arg(dir.path()), f]);
        assert_eq!(via(&["load", f, &sentinels])["loaded"], 6);
        assert_eq!(set.master.raw(&["EXISTS", "sessions:s2"]), ":1");
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn a_sentinel_password_never_reaches_the_output() {
        let port = support::redis_server::free_port();
        let url = format!("redis://:s3cret-pass@127.0.0.1:{port}");
        let out = strata(&["--sentinel-master", "mymaster", "inspect", &url]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("via sentinels"), "{err}");
        assert!(!err.contains("s3cret-pass"), "{err}");
    }

    #[test]
    fn an_unreachable_redis_is_exit_code_2() {
        let port = support::redis_server::free_port();
        let out = strata(&["inspect", &format!("redis://127.0.0.1:{port}")]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    }
}
