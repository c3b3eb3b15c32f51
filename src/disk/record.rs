//! The on-disk record: the encoded value (codec header + payload) followed by the deadline.
//!
//! The deadline is a trailer (8 bytes, big-endian Unix milliseconds, 0 = never) so a record is
//! built by appending to what `encode_value` returned, without copying the value. Keys are
//! `namespace:` followed by [`Key::encode_key`](crate::Key::encode_key) bytes.

use serde::Serialize;

use super::engine::Op;
use crate::{
    codec::{encode_value, Format, Key},
    error::{Error, Result},
};

const DEADLINE_LEN: usize = 8;

/// Bytes reserved for the key in a put's buffer (a longer key grows it once).
const KEY_ROOM: usize = 24;

/// Encodes `value` with `deadline` (0: never expires); `key` names the entry in errors.
#[cfg(test)]
pub(crate) fn encode<V: Serialize>(
    value: &V,
    deadline: u64,
    format: Format,
    key: &dyn std::fmt::Debug,
) -> Result<Vec<u8>> {
    let mut out = encoded(value, format, key)?;
    out.extend_from_slice(&deadline.to_be_bytes());
    Ok(out)
}

/// The op writing `value` with `deadline` under `prefix` + `key`, in one buffer: the record,
/// then the key. The buffer is the value's encoding itself, grown (in place when the
/// allocator can) by the deadline and the key: one allocation per put, not two and a copy.
pub(crate) fn put_op<K: Key, V: Serialize>(
    prefix: &[u8],
    key: &K,
    value: &V,
    deadline: u64,
    format: Format,
) -> Result<Op> {
    let mut buf = encoded(value, format, key)?;
    buf.reserve(DEADLINE_LEN + prefix.len() + KEY_ROOM);
    buf.extend_from_slice(&deadline.to_be_bytes());
    let key_at = buf.len();
    buf.extend_from_slice(prefix);
    key.encode_key(&mut buf);
    Ok(Op::Put { buf, key_at })
}

fn encoded<V: Serialize>(value: &V, format: Format, key: &dyn std::fmt::Debug) -> Result<Vec<u8>> {
    encode_value(value, format, "").map_err(|e| match e {
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
    fn deadline_trails_the_value() {
        let rec = encode(&"v", 42, Format::MessagePack, &"k").unwrap();
        assert_eq!(deadline(&rec), Some(42));
        let v: String = crate::codec::decode_value(value(&rec), "k").unwrap();
        assert_eq!(v, "v");
        assert_eq!(deadline(b"short"), None);
        assert!(is_expired(5, 5) && !is_expired(0, 5) && !is_expired(6, 5));
    }
}
