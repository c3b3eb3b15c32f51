//! Keys and values to bytes, for the stores that leave the process (disk, Redis).
//!
//! Values carry a 3-byte header — a magic byte, a format version and the payload format — and
//! then the serde payload: MessagePack by default (self-describing, so the CLI can render any
//! value as JSON and other languages can read what we wrote), JSON on request. Decoding checks the
//! header first and never panics or allocates from an unchecked length: a slice deserializer
//! borrows from the input, so a length field larger than the input is an error, not a huge
//! allocation. Keys are encoded without a header so they read naturally in `redis-cli`
//! (`sessions:abc`).
//!
//! **Integers are written raw.** A value that serializes as a plain integer (`i8`..`i64`,
//! `u8`..`u64`, `isize`, `usize`) is written as ASCII decimal with no header, exactly like a
//! native Redis counter: `redis-cli GET cache:hits` shows `42`, and Redis' `INCRBY` can add to
//! it atomically. [`decode_value`] tells the two apart by the first byte: a digit or `-` is raw
//! decimal, [`MAGIC`] (never a digit) starts a headed value.

use std::hash::Hash;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

mod any_json;

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
    // Room for a typical small value, so the serializer does not regrow the buffer 4 times.
    let mut out = Vec::with_capacity(64);
    encode_value_into(value, format, key, &mut out)?;
    Ok(out)
}

/// Appends the bytes [`encode_value`] returns for `value` to `out`, so a caller building a
/// bigger buffer (a disk record with its key) needs no buffer of the value's own. On an error
/// `out` is left as it was.
///
/// ```
/// use strata::codec::{decode_value, encode_value, encode_value_into, Format};
/// let mut out = b"prefix".to_vec();
/// encode_value_into(&42u64, Format::MessagePack, "k", &mut out)?;
/// assert_eq!(out, b"prefix42");
/// encode_value_into(&"ada", Format::MessagePack, "k", &mut out)?;
/// assert_eq!(&out[8..], encode_value(&"ada", Format::MessagePack, "k")?);
/// assert_eq!(decode_value::<String>(&out[8..], "k")?, "ada");
/// # Ok::<(), strata::Error>(())
/// ```
pub fn encode_value_into<V: Serialize + ?Sized>(
    value: &V,
    format: Format,
    key: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    // The probe writes only when the value is a plain integer, and then all of it.
    if value.serialize(int_probe::IntProbe(out)).is_ok() {
        return Ok(());
    }
    let start = out.len();
    out.extend_from_slice(&[MAGIC, VERSION, format.tag()]);
    let encoded = match format {
        Format::MessagePack => {
            rmp_serde::encode::write_named(&mut *out, value).map_err(|e| e.to_string())
        }
        Format::Json => serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string()),
    };
    encoded.map_err(|reason| {
        out.truncate(start);
        Error::from(crate::EncodeError {
            key: key.to_owned(),
            reason,
        })
    })
}

/// Decodes bytes written by [`encode_value`], in whichever format they were written (raw
/// decimal integers included).
pub fn decode_value<V: DeserializeOwned>(bytes: &[u8], key: &str) -> Result<V> {
    let fail = |reason: String| {
        Error::from(crate::DecodeError {
            key: key.to_owned(),
            reason,
        })
    };
    if is_raw_decimal(bytes) {
        return decode_decimal(bytes).map_err(fail);
    }
    let (format, payload) = split_header(bytes).map_err(fail)?;
    from_payload(format, payload).map_err(fail)
}

/// Deepest nesting of arrays and maps accepted when decoding: serde_json's own limit. The
/// rmp-serde default (1024) lets a few kilobytes of `[[[[…` overflow a 2 MiB thread stack (a
/// tokio worker's, a test thread's) in a debug build; no cached value nests this deep.
pub const MAX_DEPTH: usize = 128;

/// Deserializes a payload of `format`, nesting bounded by [`MAX_DEPTH`].
fn from_payload<T: DeserializeOwned>(
    format: Format,
    payload: &[u8],
) -> std::result::Result<T, String> {
    match format {
        Format::MessagePack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(payload);
            de.set_max_depth(MAX_DEPTH);
            T::deserialize(&mut de).map_err(|e| e.to_string())
        }
        Format::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
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

/// True if `bytes` start like a raw decimal integer (a digit or `-`), not like a headed value.
pub fn is_raw_decimal(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(b'0'..=b'9' | b'-'))
}

/// Deserializes `V` from a raw decimal integer (`-12`, `42`).
fn decode_decimal<V: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<V, String> {
    use serde::de::{value::Error as DeError, IntoDeserializer};
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.len() <= 20)
        .ok_or("not a decimal integer")?;
    let result: std::result::Result<V, DeError> = if let Ok(n) = text.parse::<i64>() {
        V::deserialize(n.into_deserializer())
    } else if let Ok(n) = text.parse::<u64>() {
        V::deserialize(n.into_deserializer())
    } else {
        return Err(format!("{text:?} is not a 64-bit decimal integer"));
    };
    result.map_err(|e| format!("integer {text} does not fit the value type: {e}"))
}

/// Renders any encoded value as JSON, whatever its Rust type (for the CLI and for debugging).
///
/// Every value [`encode_value`] writes renders, including what JSON has no type for: byte
/// strings become arrays of numbers (MessagePack stores a 128-bit integer as 16 bytes, so a
/// tower-sessions id shows as those), 128-bit integers read from a format that has them become
/// numbers, or decimal strings beyond 64 bits. An error means the bytes are not a strata value
/// (bad header or malformed payload).
///
/// ```
/// use strata::codec::{encode_value, value_to_json, Format};
/// let bytes = encode_value(&(7u8, "ada"), Format::MessagePack, "k")?;
/// assert_eq!(value_to_json(&bytes).unwrap(), serde_json::json!([7, "ada"]));
/// let id = encode_value(&1i128, Format::MessagePack, "k")?;
/// assert_eq!(value_to_json(&id).unwrap().as_array().map(Vec::len), Some(16));
/// assert!(value_to_json(b"garbage").is_err());
/// # Ok::<(), strata::Error>(())
/// ```
pub fn value_to_json(bytes: &[u8]) -> std::result::Result<serde_json::Value, String> {
    if is_raw_decimal(bytes) {
        return decode_decimal(bytes);
    }
    let (format, payload) = split_header(bytes)?;
    from_payload::<any_json::AnyJson>(format, payload).map(|any| any.0)
}

/// Appends `n` in decimal, without allocating.
fn push_decimal(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

mod int_probe {
    //! A serializer that accepts only a plain integer and appends it as decimal (no allocation);
    //! anything else fails at once, writing nothing, so probing a non-integer value costs one
    //! call.

    use serde::ser::{Impossible, Serialize, Serializer};

    pub(super) struct IntProbe<'a>(pub(super) &'a mut Vec<u8>);

    #[derive(Debug)]
    pub(super) struct NotAnInteger;

    impl std::fmt::Display for NotAnInteger {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("not a plain integer")
        }
    }

    impl std::error::Error for NotAnInteger {}

    impl serde::ser::Error for NotAnInteger {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            NotAnInteger
        }
    }

    use super::push_decimal;

    macro_rules! ints {
        ($($f:ident: $t:ty),*) => {$(
            fn $f(self, v: $t) -> Result<(), NotAnInteger> {
                push_decimal(self.0, v);
                Ok(())
            }
        )*};
    }

    macro_rules! refuse {
        ($($f:ident($($t:ty),*)),*) => {$(
            fn $f(self, $(_: $t),*) -> Result<(), NotAnInteger> {
                Err(NotAnInteger)
            }
        )*};
    }

    type No = Impossible<(), NotAnInteger>;

    impl Serializer for IntProbe<'_> {
        type Ok = ();
        type Error = NotAnInteger;
        type SerializeSeq = No;
        type SerializeTuple = No;
        type SerializeTupleStruct = No;
        type SerializeTupleVariant = No;
        type SerializeMap = No;
        type SerializeStruct = No;
        type SerializeStructVariant = No;

        ints!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
              serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);
        refuse!(
            serialize_bool(bool),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
            serialize_str(&str),
            serialize_bytes(&[u8]),
            serialize_none(),
            serialize_unit(),
            serialize_unit_struct(&'static str),
            serialize_i128(i128),
            serialize_u128(u128),
            serialize_unit_variant(&'static str, u32, &'static str)
        );

        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<(), NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<No, NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_tuple(self, _: usize) -> Result<No, NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<No, NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<No, NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<No, NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<No, NotAnInteger> {
            Err(NotAnInteger)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<No, NotAnInteger> {
            Err(NotAnInteger)
        }
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

/// `bytes` as a decimal number if they are 1 to 19 ASCII digits (so the value fits a `u64`);
/// `None` for anything else, which the caller parses the general way. A receiving node decodes
/// every key of every other node's invalidations: this spares each one a UTF-8 check and the
/// generic `str::parse` (~160 instructions per key under callgrind, for a u64).
fn plain_digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then(|| n * 10 + u64::from(digit))
    })
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                push_decimal(out, *self);
            }
            fn decode_key(bytes: &[u8]) -> std::result::Result<Self, String> {
                // The plain digits `encode_key` writes, read at once; anything else (a sign, a
                // value out of range, not digits) takes `str::parse`, as before.
                if let Some(value) = plain_digits(bytes).and_then(|v| <$t>::try_from(v).ok()) {
                    return Ok(value);
                }
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
            Err(Error::Decode(e)) => assert_eq!(e.key, "k1"),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn newer_version_is_refused_with_advice() {
        let mut bytes = encode_value(&[1u8], Format::MessagePack, "k").unwrap();
        bytes[1] = 9;
        let err = decode_value::<[u8; 1]>(&bytes, "k")
            .unwrap_err()
            .to_string();
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

    #[test]
    fn integers_are_raw_decimal_and_roundtrip() {
        for format in [Format::MessagePack, Format::Json] {
            assert_eq!(encode_value(&42u8, format, "k").unwrap(), b"42");
            assert_eq!(encode_value(&-7i64, format, "k").unwrap(), b"-7");
            let max = encode_value(&u64::MAX, format, "k").unwrap();
            assert_eq!(decode_value::<u64>(&max, "k").unwrap(), u64::MAX);
            let min = encode_value(&i64::MIN, format, "k").unwrap();
            assert_eq!(decode_value::<i64>(&min, "k").unwrap(), i64::MIN);
        }
        assert_eq!(value_to_json(b"-3").unwrap(), serde_json::json!(-3));
        // Other values keep their header, including Option and floats.
        assert_eq!(
            encode_value(&Some(1u8), Format::MessagePack, "k").unwrap()[0],
            MAGIC
        );
        assert_eq!(
            encode_value(&1.5f64, Format::MessagePack, "k").unwrap()[0],
            MAGIC
        );
        assert_eq!(encode_value(&"12", Format::Json, "k").unwrap()[0], MAGIC);
    }

    #[test]
    fn raw_decimal_out_of_range_is_a_decode_error() {
        assert!(matches!(
            decode_value::<u8>(b"300", "k"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            decode_value::<u64>(b"-1", "k"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            decode_value::<i64>(b"99999999999999999999", "k"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            decode_value::<String>(b"12", "k"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            decode_value::<i64>(b"-", "k"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            decode_value::<i64>(b"1x", "k"),
            Err(Error::Decode { .. })
        ));
    }

    /// A value that fails to serialize halfway through (after the map header was written).
    struct FailsMidway;

    impl serde::Serialize for FailsMidway {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::{Error as _, SerializeMap};
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry("a", &1u8)?;
            Err(S::Error::custom("this value cannot be encoded"))
        }
    }

    #[test]
    fn a_failed_encode_into_leaves_the_buffer_as_it_was() {
        for format in [Format::MessagePack, Format::Json] {
            let mut out = b"kept".to_vec();
            let err = encode_value_into(&FailsMidway, format, "k9", &mut out).unwrap_err();
            assert!(matches!(&err, Error::Encode(e) if e.key == "k9"), "{err}");
            assert_eq!(out, b"kept");
        }
    }

    proptest! {
        #[test]
        fn any_integer_roundtrips_raw(n in any::<i64>(), u in any::<u64>()) {
            let bytes = encode_value(&n, Format::MessagePack, "k").unwrap();
            prop_assert_eq!(decode_value::<i64>(&bytes, "k").unwrap(), n);
            let bytes = encode_value(&u, Format::Json, "k").unwrap();
            prop_assert_eq!(decode_value::<u64>(&bytes, "k").unwrap(), u);
        }

        #[test]
        fn encode_into_appends_what_encode_returns(
            n in any::<i64>(),
            u in any::<u64>(),
            small in any::<i8>(),
            text in ".{0,40}",
            head in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            for format in [Format::MessagePack, Format::Json] {
                let mut out = head.clone();
                encode_value_into(&n, format, "k", &mut out).unwrap();
                encode_value_into(&u, format, "k", &mut out).unwrap();
                encode_value_into(&small, format, "k", &mut out).unwrap();
                encode_value_into(&text, format, "k", &mut out).unwrap();
                let mut expected = head.clone();
                expected.extend(n.to_string().bytes());
                expected.extend(u.to_string().bytes());
                expected.extend(small.to_string().bytes());
                expected.extend(encode_value(&text, format, "k").unwrap());
                prop_assert_eq!(out, expected);
            }
        }

        #[test]
        fn integer_keys_are_their_decimal_digits(
            a in any::<u64>(), b in any::<i64>(), c in any::<u128>(), d in any::<i128>(),
            e in any::<u16>(), f in any::<i16>(), g in any::<usize>(),
        ) {
            fn check<K: Key + ToString>(k: K) -> std::result::Result<(), TestCaseError> {
                let mut out = b"ns:".to_vec();
                k.encode_key(&mut out);
                let text = k.to_string();
                prop_assert_eq!(&out[3..], text.as_bytes());
                prop_assert_eq!(K::decode_key(&out[3..]).unwrap(), k);
                Ok(())
            }
            check(a)?; check(b)?; check(c)?; check(d)?; check(e)?; check(f)?; check(g)?;
            for edge in [u128::MAX, u128::from(u64::MAX), u128::from(u64::MAX) + 1, 0] {
                check(edge)?;
            }
            for edge in [i128::MIN, i128::MAX, i128::from(i64::MIN), -1] {
                check(edge)?;
            }
        }

        /// The digit fast path of the integer keys' `decode_key` accepts and refuses exactly
        /// what `str::parse` does, for any bytes that look like a number (signs, leading
        /// zeros, too long, out of range, a stray byte).
        #[test]
        fn integer_keys_decode_as_str_parse_does(
            head in prop_oneof![Just(b'-'), Just(b'+'), b'0'..=b'9'],
            tail in proptest::collection::vec(prop_oneof![8 => b'0'..=b'9', 1 => any::<u8>()], 0..42),
        ) {
            let mut bytes = vec![head];
            bytes.extend(tail);
            fn same<K: Key + std::str::FromStr>(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
                let parsed = std::str::from_utf8(bytes).ok().and_then(|s| s.parse::<K>().ok());
                prop_assert_eq!(K::decode_key(bytes).ok(), parsed);
                Ok(())
            }
            for cut in 0..=bytes.len() {
                let b = &bytes[..cut];
                same::<u64>(b)?; same::<i64>(b)?; same::<u16>(b)?; same::<i16>(b)?;
                same::<u32>(b)?; same::<i32>(b)?; same::<u128>(b)?; same::<i128>(b)?;
                same::<usize>(b)?;
            }
        }

        #[test]
        fn arbitrary_decimal_like_bytes_never_panic(
            head in prop_oneof![Just(b'-'), b'0'..=b'9'],
            tail in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut bytes = vec![head];
            bytes.extend(tail);
            let _ = decode_value::<i64>(&bytes, "k");
            let _ = decode_value::<u8>(&bytes, "k");
            let _ = decode_value::<Session>(&bytes, "k");
            let _ = value_to_json(&bytes);
        }

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
