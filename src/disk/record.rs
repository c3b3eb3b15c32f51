//! The on-disk record: the encoded value (codec header + payload) followed by the deadline.
//!
//! The deadline is a trailer (8 bytes, big-endian Unix milliseconds, 0 = never) so a record is
//! built by appending to the value's encoding, in the buffer it was encoded into. Keys are
//! `namespace:` followed by [`Key::encode_key`](crate::Key::encode_key) bytes; the engine
//! stores the part after `namespace:` in the namespace's own keyspace (format 2).

use serde::Serialize;

use super::engine::Op;
use crate::{
    codec::{encode_value_into, Format, Key},
    error::{Error, Result},
};

const DEADLINE_LEN: usize = 8;

/// Bytes reserved for the key in a put's buffer (a longer key grows it once).
const KEY_ROOM: usize = 24;

/// Bytes reserved for the encoded value in a put's buffer (a bigger value grows it while it
/// is encoded).
const VALUE_ROOM: usize = 24;

/// Encodes `value` with `deadline` (0: never expires); `key` names the entry in errors.
#[cfg(test)]
pub(crate) fn encode<V: Serialize>(
    value: &V,
    deadline: u64,
    format: Format,
    key: &dyn std::fmt::Debug,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, format, key, &mut out)?;
    out.extend_from_slice(&deadline.to_be_bytes());
    Ok(out)
}

/// The op writing `value` with `deadline` under `prefix` + `key`, in one buffer: the record,
/// then the key. The value is encoded straight into the buffer, which is sized for a small
/// value, the deadline and the key up front: one allocation per put, no copy.
pub(crate) fn put_op<K: Key, V: Serialize>(
    prefix: &[u8],
    key: &K,
    value: &V,
    deadline: u64,
    format: Format,
) -> Result<Op> {
    let tail = DEADLINE_LEN + prefix.len() + KEY_ROOM;
    let mut buf = Vec::with_capacity(VALUE_ROOM + tail);
    encode_into(value, format, key, &mut buf)?;
    buf.reserve(tail);
    buf.extend_from_slice(&deadline.to_be_bytes());
    let key_at = buf.len();
    buf.extend_from_slice(prefix);
    key.encode_key(&mut buf);
    Ok(Op::Put { buf, key_at })
}

/// A put's encoded value and key bytes, copied from its op for the compact memory tier (the
/// op itself goes to the writer): one allocation, and the key is not encoded a second time.
pub(crate) struct Encoded {
    buf: Box<[u8]>,
    key_at: usize,
    prefix_len: usize,
}

impl Encoded {
    /// The bytes of `op` if it is a put; `prefix_len`: the length of its key's `namespace:`.
    pub(crate) fn of(op: &Op, prefix_len: usize) -> Option<Self> {
        let Op::Put { buf, key_at } = op else {
            return None;
        };
        Some(Encoded {
            buf: buf[..].into(),
            key_at: *key_at,
            prefix_len,
        })
    }

    /// The encoded value.
    pub(crate) fn value(&self) -> &[u8] {
        value(&self.buf[..self.key_at])
    }

    /// The key's [`Key::encode_key`](crate::Key::encode_key) bytes.
    pub(crate) fn key(&self) -> &[u8] {
        self.buf
            .get(self.key_at + self.prefix_len..)
            .unwrap_or_default()
    }
}

/// Appends `value`'s encoding to `out`; an error names `key`.
fn encode_into<V: Serialize>(
    value: &V,
    format: Format,
    key: &dyn std::fmt::Debug,
    out: &mut Vec<u8>,
) -> Result<()> {
    encode_value_into(value, format, "", out).map_err(|e| match e {
        Error::Encode(e) => Error::from(crate::EncodeError {
            key: format!("{key:?}"),
            reason: e.reason,
        }),
        other => other,
    })
}

/// The deadline of a record, or `None` if it is too short to be one.
pub(crate) fn deadline(record: &[u8]) -> Option<u64> {
    let split = record.len().checked_sub(DEADLINE_LEN)?;
    let bytes: [u8; DEADLINE_LEN] = record[split..].try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The encoded value of a record (everything before the deadline).
pub(crate) fn value(record: &[u8]) -> &[u8] {
    &record[..record.len().saturating_sub(DEADLINE_LEN)]
}

/// True if a record with `deadline` is expired at `now`.
pub(crate) fn is_expired(deadline: u64, now: u64) -> bool {
    deadline != 0 && deadline <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_op_copied_for_the_compact_tier_gives_its_value_and_key_bytes() {
        let op = put_op(b"ns:", &"key".to_string(), &7u64, 42, Format::MessagePack).unwrap();
        let enc = Encoded::of(&op, 3).unwrap();
        assert_eq!(enc.key(), b"key");
        let v: u64 = crate::codec::decode_value(enc.value(), "k").unwrap();
        assert_eq!(v, 7);
        assert!(Encoded::of(
            &Op::Delete {
                key: b"ns:key".to_vec()
            },
            3
        )
        .is_none());
    }

    #[test]
    fn deadline_trails_the_value() {
        let rec = encode(&"v", 42, Format::MessagePack, &"k").unwrap();
        assert_eq!(deadline(&rec), Some(42));
        let v: String = crate::codec::decode_value(value(&rec), "k").unwrap();
        assert_eq!(v, "v");
        assert_eq!(deadline(b"short"), None);
        assert!(is_expired(5, 5) && !is_expired(0, 5) && !is_expired(6, 5));
    }
}
