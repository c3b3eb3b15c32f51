//! Keys and values to bytes, for the stores that leave the process (disk, Redis).
//!
//! Values carry a 3-byte header — a magic byte, a format version and the payload format — and
//! then the serde payload: MessagePack by default (self-describing, so the CLI can render any
//! value as JSON and other languages can read what we wrote), JSON on request. Decoding checks the
//! header first and never panics or allocates from an unchecked length: a slice deserializer
//! borrows from the input, so a length field larger than the input is an error, not a huge
//! allocation. Keys are encoded without a header so they read naturally in `redis-cli`
//! (`sessions:abc`).

use std::hash::Hash;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// First byte of every encoded value.
pub const MAGIC: u8 = 0xA7;
/// Current version of the value header.
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = 3;

/// The payload format of encoded values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// MessagePack through `rmp-serde` (the default).
    #[default]
    MessagePack,
    /// JSON through `serde_json`.
    Json,
}

impl Format {
    fn tag(self) -> u8 {
        match self {
            Format::MessagePack => 1,
            Format::Json => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Format::MessagePack),
            2 => Some(Format::Json),
            _ => None,
        }
    }
}

/// Encodes `value` with a header; `key` only names the entry in errors.
///
/// ```
/// use strata::codec::{decode_value, encode_value, Format};
/// let bytes = encode_value(&vec![1u32, 2, 3], Format::MessagePack, "k")?;
/// let back: Vec<u32> = decode_value(&bytes, "k")?;
/// assert_eq!(back, [1, 2, 3]);
/// assert!(decode_value::<Vec<u32>>(b"garbage", "k").is_err());
/// # Ok::<(), strata::Error>(())
/// ```
pub fn encode_value<V: Serialize + ?Sized>(
    value: &V,
    format: Format,
    key: &str,
) -> Result<Vec<u8>> {
    let mut out = vec![MAGIC, VERSION, format.tag()];
    let encoded = match format {
        Format::MessagePack => {
            rmp_serde::encode::write_named(&mut out, value).map_err(|e| e.to_string())
        }
        Format::Json => serde_json::to_writer(&mut out, value).map_err(|e| e.to_string()),
    };
    encoded.map_err(|reason| Error::Encode {
        key: key.to_owned(),
        reason,
    })?;
    Ok(out)
}

/// Decodes bytes written by [`encode_value`], in whichever format they were written.
pub fn decode_value<V: DeserializeOwned>(bytes: &[u8], key: &str) -> Result<V> {
    let fail = |reason: String| Error::Decode {
        key: key.to_owned(),
        reason,
    };
    let (format, payload) = split_header(bytes).map_err(fail)?;
    match format {
        Format::MessagePack => rmp_serde::from_slice(payload).map_err(|e| fail(e.to_string())),
        Format::Json => serde_json::from_slice(payload).map_err(|e| fail(e.to_string())),
    }
}

/// Checks the header and returns the format and the payload.
pub fn split_header(bytes: &[u8]) -> std::result::Result<(Format, &[u8]), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is too short for a strata value",
            bytes.len()
        ));
    }
    if bytes[0] != MAGIC {
        return Err(format!("not a strata value (first byte {:#04x})", bytes[0]));
    }
    if bytes[1] != VERSION {
        return Err(format!(
            "written by a newer strata (value format version {}); upgrade strata",
            bytes[1]
        ));
    }
    let format =
        Format::from_tag(bytes[2]).ok_or_else(|| format!("unknown payload format {}", bytes[2]))?;
    Ok((format, &bytes[HEADER_LEN..]))
}

/// Renders any encoded value as JSON, whatever its Rust type (for the CLI and for debugging).
pub fn value_to_json(bytes: &[u8]) -> std::result::Result<serde_json::Value, String> {
    let (format, payload) = split_header(bytes)?;
    match format {
        Format::MessagePack => rmp_serde::from_slice(payload).map_err(|e| e.to_string()),
        Format::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
    }
}

/// Keys that can be stored outside the process: encoded without a header, so string keys read
/// as themselves (`sessions:abc`) and integer keys as decimal digits.
pub trait Key: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static {
    /// Appends this key's bytes to `out`.
    fn encode_key(&self, out: &mut Vec<u8>);
    /// Reads a key back from its bytes; a description of the problem if they don't parse.
    fn decode_key(bytes: &[u8]) -> std::result::Result<Self, String>;

    /// This key's bytes prefixed with `namespace:`.
    fn namespaced(&self, prefix: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(prefix.len() + 16);
        out.extend_from_slice(prefix);
        self.encode_key(&mut out);
        out
    }
}

impl Key for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode_key(bytes: &[u8]) -> std::result::Result<Self, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("key is not UTF-8: {e}"))
    }
}

impl Key for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode_key(bytes: &[u8]) -> std::result::Result<Self, String> {
        Ok(bytes.to_vec())
    }
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.to_string().as_bytes());
            }
            fn decode_key(bytes: &[u8]) -> std::result::Result<Self, String> {
                std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("key {:?} is not a {}", String::from_utf8_lossy(bytes), stringify!($t)))
            }
        }
    )*};
}
int_key!(u16, u32, u64, u128, i16, i32, i64, i128, usize);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Session {
        user: String,
        visits: u32,
        tags: Vec<String>,
    }

    #[test]
    fn roundtrips_in_both_formats() {
        let s = Session {
            user: "ada".into(),
            visits: 3,
            tags: vec!["x".into()],
        };
        for format in [Format::MessagePack, Format::Json] {
            let bytes = encode_value(&s, format, "k").unwrap();
            assert_eq!(decode_value::<Session>(&bytes, "k").unwrap(), s);
            let json = value_to_json(&bytes).unwrap();
            assert_eq!(json["user"], "ada");
        }
    }

    #[test]
    fn wrong_type_is_a_decode_error_naming_the_key() {
        let bytes = encode_value(&"text", Format::MessagePack, "k1").unwrap();
        match decode_value::<u64>(&bytes, "k1") {
            Err(Error::Decode { key, .. }) => assert_eq!(key, "k1"),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn newer_version_is_refused_with_advice() {
        let mut bytes = encode_value(&1u8, Format::MessagePack, "k").unwrap();
        bytes[1] = 9;
        let err = decode_value::<u8>(&bytes, "k").unwrap_err().to_string();
        assert!(err.contains("newer strata"), "{err}");
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // MessagePack bin32 claiming 4 GiB, followed by nothing.
        let bytes = [MAGIC, VERSION, 1, 0xc6, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_value::<Vec<u8>>(&bytes, "k").is_err());
        // array32 claiming 4 billion elements.
        let bytes = [MAGIC, VERSION, 1, 0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_value::<Vec<u64>>(&bytes, "k").is_err());
    }

    #[test]
    fn keys_read_naturally() {
        assert_eq!("abc".to_string().namespaced(b"s:"), b"s:abc");
        assert_eq!(42u64.namespaced(b"n:"), b"n:42");
        assert_eq!(u64::decode_key(b"42").unwrap(), 42);
        assert!(u64::decode_key(b"x").is_err());
        assert!(String::decode_key(&[0xff]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_value::<Session>(&bytes, "k");
            let _ = decode_value::<Vec<String>>(&bytes, "k");
            let _ = value_to_json(&bytes);
        }

        #[test]
        fn arbitrary_payload_after_valid_header_never_panics(
            fmt in 1u8..=2,
            payload in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut bytes = vec![MAGIC, VERSION, fmt];
            bytes.extend(payload);
            let _ = decode_value::<Session>(&bytes, "k");
            let _ = decode_value::<std::collections::HashMap<String, Vec<u8>>>(&bytes, "k");
        }
    }
}
