//! Decoders never panic (issue 12): every decoder of stored or received bytes is driven with
//! arbitrary bytes and with mutations of valid encodings (flipped, inserted, deleted, truncated
//! bytes; see `support/mutate.rs`) and must return an error, never panic.
//!
//! Each decoder runs [`QUICK`] inputs in a normal run and [`LONG`] (1 M) in its `#[ignore]`d
//! twin: `cargo test --release --all-features --test decoders -- --ignored`. The CLI's dump
//! parser is tested the same way in the `strata` binary's unit tests.

#[path = "support/mutate.rs"]
mod mutate;

use std::collections::HashMap;

use mutate::{fuzz, LONG, QUICK};
use serde::{Deserialize, Serialize};
use strata::{
    codec::{decode_value, encode_value, split_header, value_to_json, Format},
    split_stored_key, Key,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    visits: u32,
    tags: Vec<String>,
    score: Option<f64>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Guest,
    Member { since: u64 },
}

/// Valid encodings of every kind of value the stores write, in both formats.
fn value_seeds() -> Vec<Vec<u8>> {
    let profile = Profile {
        name: "ada".into(),
        visits: 3,
        tags: vec!["x".into(), "yz".into()],
        score: Some(1.5),
        kind: Kind::Member { since: 7 },
    };
    let map: HashMap<String, serde_json::Value> =
        HashMap::from([("cart".into(), serde_json::json!(["apple", 2, null]))]);
    let mut seeds = vec![b"42".to_vec(), b"-9223372036854775808".to_vec()];
    for format in [Format::MessagePack, Format::Json] {
        seeds.push(encode_value(&profile, format, "k").unwrap());
        seeds.push(encode_value(&map, format, "k").unwrap());
        seeds.push(encode_value(&"text", format, "k").unwrap());
        seeds.push(encode_value(&(i128::MIN, u128::MAX), format, "k").unwrap());
        seeds.push(encode_value(&vec![1u64, 2, u64::MAX], format, "k").unwrap());
        seeds.push(encode_value(&Kind::Guest, format, "k").unwrap());
        #[cfg(feature = "sessions")]
        seeds.push(encode_value(&session(), format, "k").unwrap());
    }
    seeds
}

#[cfg(feature = "sessions")]
fn session() -> tower_sessions_core::session::Record {
    use tower_sessions_core::session::{Id, Record};
    Record {
        id: Id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        data: HashMap::from([("user_id".into(), serde_json::json!(7))]),
        expiry_date: time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
    }
}

/// `decode_value` as `T`; if it succeeds, `value_to_json` must too (a value a store reads is
/// one `strata get` shows and `strata load` accepts).
fn typed<T: serde::de::DeserializeOwned>(bytes: &[u8]) {
    if decode_value::<T>(bytes, "k").is_ok() {
        assert!(
            value_to_json(bytes).is_ok(),
            "decodes as {} but does not render",
            std::any::type_name::<T>()
        );
    }
}

fn decode_every_way(bytes: &[u8]) {
    typed::<Profile>(bytes);
    typed::<HashMap<String, serde_json::Value>>(bytes);
    typed::<serde_json::Value>(bytes);
    typed::<String>(bytes);
    typed::<Vec<u8>>(bytes);
    typed::<Vec<u64>>(bytes);
    typed::<(i128, u128)>(bytes);
    typed::<Kind>(bytes);
    typed::<Option<String>>(bytes);
    typed::<u8>(bytes);
    typed::<u64>(bytes);
    typed::<i64>(bytes);
    typed::<f64>(bytes);
    typed::<bool>(bytes);
    #[cfg(feature = "sessions")]
    typed::<tower_sessions_core::session::Record>(bytes);
    let _ = value_to_json(bytes);
    let _ = split_header(bytes);
}

fn values(n: usize) -> usize {
    fuzz(n, 12, &value_seeds(), decode_every_way)
}

#[test]
fn values_never_panic() {
    values(QUICK);
}

#[test]
#[ignore = "long run: cargo test --release --all-features --test decoders -- --ignored"]
fn values_never_panic_1m() {
    values(LONG);
}

/// Deep nesting is refused by the deserializers' depth limits, not by a stack overflow.
#[test]
fn deeply_nested_values_are_errors() {
    for (format, open) in [(1u8, 0x91u8), (2, b'[')] {
        let mut bytes = vec![strata::codec::MAGIC, strata::codec::VERSION, format];
        bytes.extend(std::iter::repeat_n(open, 100_000));
        assert!(value_to_json(&bytes).is_err());
        assert!(decode_value::<serde_json::Value>(&bytes, "k").is_err());
    }
}

/// `decode_key` of `K`: never panics, and decoding is stable (what decodes re-encodes to bytes
/// that decode to the same key).
fn key_as<K: Key + PartialEq>(bytes: &[u8]) {
    if let Ok(key) = K::decode_key(bytes) {
        let mut again = Vec::new();
        key.encode_key(&mut again);
        assert_eq!(K::decode_key(&again).as_ref(), Ok(&key));
    }
}

fn decode_keys(bytes: &[u8]) {
    key_as::<String>(bytes);
    key_as::<Vec<u8>>(bytes);
    key_as::<u16>(bytes);
    key_as::<u32>(bytes);
    key_as::<u64>(bytes);
    key_as::<u128>(bytes);
    key_as::<i16>(bytes);
    key_as::<i32>(bytes);
    key_as::<i64>(bytes);
    key_as::<i128>(bytes);
    key_as::<usize>(bytes);
}

fn key_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![b"abc".to_vec(), "ünï".as_bytes().to_vec(), vec![0xff, 0]];
    for n in [
        "0",
        "-1",
        "65535",
        "340282366920938463463374607431768211455",
    ] {
        seeds.push(n.as_bytes().to_vec());
    }
    seeds
}

fn keys(n: usize) -> usize {
    fuzz(n, 13, &key_seeds(), decode_keys)
}

#[test]
fn keys_never_panic() {
    keys(QUICK);
}

#[test]
#[ignore = "long run: cargo test --release --all-features --test decoders -- --ignored"]
fn keys_never_panic_1m() {
    keys(LONG);
}

/// `split_stored_key`: never panics, and what it splits joins back to the input.
fn split(bytes: &[u8]) {
    if let Some((namespace, key)) = split_stored_key(bytes) {
        let mut joined = namespace.prefix();
        joined.extend_from_slice(key);
        assert_eq!(joined, bytes);
    }
}

fn stored_keys(n: usize) -> usize {
    let seeds = [
        &b"sessions:abc"[..],
        b"a:b:c",
        b"cache:",
        b"bad ns:k",
        b":k",
    ];
    fuzz(n, 14, &seeds.map(<[u8]>::to_vec), split)
}

#[test]
fn stored_keys_never_panic() {
    stored_keys(QUICK);
}

#[test]
#[ignore = "long run: cargo test --release --all-features --test decoders -- --ignored"]
fn stored_keys_never_panic_1m() {
    stored_keys(LONG);
}

mod cache_dumps {
    //! `Cache::load` (src/cache/dump.rs) through its public API: dump files mutated as bytes,
    //! and mutated inside a block with the block's CRC fixed up, so the mutation reaches the
    //! entry and value decoders behind the checksum.

    use std::{path::Path, time::Duration};

    use strata::{Cache, MemoryStore};

    use super::*;

    type Sessions = Cache<String, Profile, MemoryStore<String, Profile>>;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    async fn cache() -> Sessions {
        Cache::builder()
            .store(MemoryStore::new())
            .build()
            .await
            .unwrap()
    }

    /// A valid dump of three entries (one without TTL).
    fn valid_dump(rt: &tokio::runtime::Runtime, path: &Path) -> Vec<u8> {
        rt.block_on(async {
            let cache = cache().await;
            for (i, name) in ["ada", "grace", "edsger"].into_iter().enumerate() {
                let profile = Profile {
                    name: name.into(),
                    visits: i as u32,
                    tags: vec![name.into()],
                    score: None,
                    kind: Kind::Guest,
                };
                let ttl = (i > 0).then(|| Duration::from_secs(3600));
                cache.put(name.into(), profile, ttl).await.unwrap();
            }
            cache.dump(path).await.unwrap();
        });
        std::fs::read(path).unwrap()
    }

    /// CRC-32 (IEEE), as the dump format uses.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    /// Header (magic + version) length, then the first block: tag, len, crc, payload.
    const HEADER: usize = 12;

    /// `dump` with its first block's payload replaced by `payload` and the CRC recomputed.
    fn with_block_payload(dump: &[u8], payload: &[u8]) -> Vec<u8> {
        let len = u32::from_le_bytes(dump[HEADER + 1..HEADER + 5].try_into().unwrap()) as usize;
        let rest = &dump[HEADER + 9 + len..];
        let mut out = dump[..HEADER + 1].to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(rest);
        out
    }

    fn first_payload(dump: &[u8]) -> Vec<u8> {
        assert_eq!(dump[HEADER], 1, "the first block follows the header");
        let len = u32::from_le_bytes(dump[HEADER + 1..HEADER + 5].try_into().unwrap()) as usize;
        dump[HEADER + 9..HEADER + 9 + len].to_vec()
    }

    fn loads(n: usize, inside_blocks: bool) -> usize {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.dump");
        let dump = valid_dump(&rt, &file);
        // The fixture is what we think it is: it loads as written, and with its block rebuilt.
        let rebuilt = with_block_payload(&dump, &first_payload(&dump));
        assert_eq!(rebuilt, dump);
        let seeds = if inside_blocks {
            vec![first_payload(&dump)]
        } else {
            vec![dump.clone()]
        };
        let target = rt.block_on(cache());
        fuzz(n, 15 + u64::from(inside_blocks), &seeds, |input| {
            let bytes = if inside_blocks {
                with_block_payload(&dump, input)
            } else {
                input.to_vec()
            };
            std::fs::write(&file, &bytes).unwrap();
            let _ = rt.block_on(target.load(&file));
        })
    }

    #[test]
    fn dump_files_never_panic_the_loader() {
        loads(QUICK / 3, false);
        loads(QUICK / 3, true);
    }

    #[test]
    #[ignore = "long run: cargo test --release --all-features --test decoders -- --ignored"]
    fn dump_files_never_panic_the_loader_1m() {
        loads(LONG, false);
        loads(LONG, true);
    }
}
