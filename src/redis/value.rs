//! A value read from Redis, decoded from the reply's own buffer: what
//! [`crate::codec::decode_value`] returns, with one shortcut for the commonest case. A
//! MessagePack string decoded into a `String` (or `Box<str>`, `PathBuf`, … anything that asks
//! serde for an owned string) keeps the bytes Redis sent: the header is moved out of the way
//! and the rest becomes the `String` after the UTF-8 check it needs anyway, instead of a second
//! allocation, a copy and the reply's free. Every other value, and a string the target type
//! does not take that way, goes through `decode_value` unchanged, so the result (and any error)
//! is the same either way.

use std::fmt;

use serde::{
    de::{self, DeserializeOwned, Visitor},
    forward_to_deserialize_any, Deserializer,
};

use crate::{
    codec::{decode_value, is_raw_decimal, split_header, Format},
    error::Result,
};

/// Decodes `bytes` as [`decode_value`] does; `key` only names the entry in errors.
pub(super) fn decode_owned<V: DeserializeOwned>(bytes: Vec<u8>, key: &str) -> Result<V> {
    let Some(start) = whole_str_start(&bytes) else {
        return decode_value(&bytes, key);
    };
    let mut slot = Some(bytes);
    let refused = match V::deserialize(OwnedStr {
        slot: &mut slot,
        start,
    }) {
        Ok(value) => return Ok(value),
        Err(Declined(refused)) => refused,
    };
    match (slot, refused) {
        (Some(bytes), _) => decode_value(&bytes, key),
        // The type took the string and refused it (its own check failed): its reason, as the
        // codec would have given it.
        (None, reason) => Err(crate::Error::from(crate::DecodeError {
            key: key.to_owned(),
            reason: reason.unwrap_or_else(|| "the value's type refused its string".into()),
        })),
    }
}

/// Where the text starts if `bytes` is a headed MessagePack value that is one string filling
/// the rest of the bytes (the codec ignores bytes after the value; those take the long way).
fn whole_str_start(bytes: &[u8]) -> Option<usize> {
    if is_raw_decimal(bytes) {
        return None;
    }
    let Ok((Format::MessagePack, payload)) = split_header(bytes) else {
        return None;
    };
    let (&marker, rest) = payload.split_first()?;
    let (len, width) = match marker {
        0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
        0xd9 => (usize::from(*rest.first()?), 1),
        0xda => (
            usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            2,
        ),
        0xdb => (
            usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?,
            4,
        ),
        _ => return None,
    };
    (rest.len() == width + len).then(|| bytes.len() - len)
}

/// A deserializer that offers the reply's bytes as an owned string to a type that asks for one
/// (`deserialize_string`), and refuses every other request without touching them.
struct OwnedStr<'a> {
    slot: &'a mut Option<Vec<u8>>,
    /// Where the text starts: after the header and the string's marker and length.
    start: usize,
}

/// "Not this way": the caller decodes through the codec instead. Holds the type's own reason
/// if it took the string and refused it.
#[derive(Debug)]
struct Declined(Option<String>);

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("not an owned string"))
    }
}

impl std::error::Error for Declined {}

impl de::Error for Declined {
    fn custom<T: fmt::Display>(reason: T) -> Self {
        Declined(Some(reason.to_string()))
    }
}

impl<'de> Deserializer<'de> for OwnedStr<'_> {
    type Error = Declined;

    fn deserialize_any<W: Visitor<'de>>(self, _: W) -> std::result::Result<W::Value, Declined> {
        Err(Declined(None))
    }

    fn deserialize_string<W: Visitor<'de>>(
        self,
        visitor: W,
    ) -> std::result::Result<W::Value, Declined> {
        let Some(mut bytes) = self.slot.take() else {
            return Err(Declined(None));
        };
        // At most 3 header bytes, a marker and a 4-byte length.
        let mut prefix = [0u8; 8];
        let prefix = &mut prefix[..self.start];
        prefix.copy_from_slice(&bytes[..self.start]);
        bytes.copy_within(self.start.., 0);
        bytes.truncate(bytes.len() - self.start);
        match String::from_utf8(bytes) {
            Ok(text) => visitor.visit_string(text),
            Err(e) => {
                // Put the bytes back as they came, for the codec to say what is wrong.
                let mut bytes = e.into_bytes();
                bytes.splice(..0, prefix.iter().copied());
                *self.slot = Some(bytes);
                Err(Declined(None))
            }
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::PathBuf};

    use serde::Deserialize;

    use super::*;
    use crate::codec::encode_value;

    fn both<V: DeserializeOwned + PartialEq + fmt::Debug>(bytes: &[u8]) {
        let slow = decode_value::<V>(bytes, "k").map_err(|e| e.to_string());
        let fast = decode_owned::<V>(bytes.to_vec(), "k").map_err(|e| e.to_string());
        assert_eq!(fast, slow, "bytes {bytes:02x?}");
    }

    fn encoded<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
        encode_value(value, Format::MessagePack, "k").unwrap()
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Colour {
        Red,
        Green,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Name(String);

    /// Takes a string and checks it: a refusal must read as the codec's.
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(try_from = "String")]
    struct Short(String);

    impl TryFrom<String> for Short {
        type Error = String;

        fn try_from(text: String) -> std::result::Result<Self, String> {
            if text.len() > 3 {
                return Err(format!("{text:?} is longer than 3 bytes"));
            }
            Ok(Short(text))
        }
    }

    #[test]
    fn strings_of_every_length_marker_decode_as_the_codec_does() {
        for len in [0, 1, 31, 32, 255, 256, 65_535, 65_536] {
            let text = "é".repeat(len / 2) + &"v".repeat(len % 2);
            let bytes = encoded(&text);
            assert_eq!(whole_str_start(&bytes), Some(bytes.len() - text.len()));
            assert_eq!(decode_owned::<String>(bytes.clone(), "k").unwrap(), text);
            both::<String>(&bytes);
            both::<Box<str>>(&bytes);
            both::<PathBuf>(&bytes);
        }
    }

    #[test]
    fn other_targets_of_a_string_take_the_codec_path_with_the_same_result() {
        let bytes = encoded("Red");
        both::<Colour>(&bytes);
        both::<Name>(&bytes);
        both::<Option<String>>(&bytes);
        both::<serde_json::Value>(&bytes);
        both::<char>(&encoded("x"));
        both::<u32>(&bytes);
        both::<Vec<u8>>(&bytes);
        both::<Short>(&encoded("ab"));
        both::<Short>(&encoded("abcdef"));
        assert!(decode_owned::<Short>(encoded("abcdef"), "k").is_err());
    }

    #[test]
    fn values_that_are_not_one_whole_string_decode_as_the_codec_does() {
        let mut map = BTreeMap::new();
        map.insert("a".to_string(), 1u32);
        both::<BTreeMap<String, u32>>(&encoded(&map));
        both::<String>(&encoded(&map));
        both::<u64>(b"42");
        both::<String>(b"42");
        both::<Colour>(&encoded("Green"));
        let json = encode_value("ada", Format::Json, "k").unwrap();
        both::<String>(&json);
        // Trailing bytes after the string: the codec ignores them, so the long way is taken.
        let mut trailing = encoded("ada");
        trailing.push(0xc0);
        assert_eq!(whole_str_start(&trailing), None);
        both::<String>(&trailing);
    }

    #[test]
    fn corrupt_strings_are_the_codec_errors_never_a_panic() {
        let mut bad_utf8 = encoded("abc");
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        both::<String>(&bad_utf8);
        assert!(decode_owned::<String>(bad_utf8, "k").is_err());
        // A length longer than the bytes, truncated markers, no payload, a foreign header.
        for bytes in [
            &[0xa7, 1, 1, 0xa5, b'a'][..],
            &[0xa7, 1, 1, 0xd9],
            &[0xa7, 1, 1, 0xda, 0],
            &[0xa7, 1, 1, 0xdb, 0, 0],
            &[0xa7, 1, 1],
            &[0xa7, 9, 1, 0xa1, b'a'],
            &[],
            &b"garbage"[..],
        ] {
            both::<String>(bytes);
        }
    }
}
