//! The on-disk record: the encoded value (codec header + payload) followed by the deadline.
//!
//! The deadline is a trailer (8 bytes, big-endian Unix milliseconds, 0 = never) so a record is
//! built by appending to what `encode_value` returned, without copying the value. Keys are
//! `namespace:` followed by [`Key::encode_key`](crate::Key::encode_key) bytes.

use serde::Serialize;

use crate::{
    codec::{encode_value, Format},
    error::{Error, Result},
};

const DEADLINE_LEN: usize = 8;

/// Encodes `value` with `deadline` (0: never expires); `key` names the entry in errors.
pub(crate) fn encode<V: Serialize>(
    value: &V,
    deadline: u64,
    format: Format,
    key: &dyn std::fmt::Debug,
) -> Result<Vec<u8>> {
    let mut out = encode_value(value, format, "").map_err(|e| match e {
        Error::Encode { reason, .. } => Error::Encode {
            key: format!("{key:?}"),
            reason,
        },
        other => other,
    })?;
    out.extend_from_slice(&deadline.to_be_bytes());
    Ok(out)
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
