//! The invalidation message: what one node tells the others after it changed a key.
//!
//! Binary and versioned so a garbled or foreign payload is recognised and ignored:
//! `[version = 1][op: b'I' | b'F'][node id: u64 BE][sent at, Unix µs: u64 BE][key bytes ...]`.
//! The namespace travels in the channel name (`{prefix}{namespace}`), the key without it.

/// The payload format version this build writes and reads.
pub(crate) const VERSION: u8 = 1;

const HEADER: usize = 1 + 1 + 8 + 8;

/// What the receiving nodes must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Drop the local copy of one key.
    Invalidate,
    /// Drop every local copy in the namespace (after `clear`).
    Flush,
}

impl Op {
    fn byte(self) -> u8 {
        match self {
            Op::Invalidate => b'I',
            Op::Flush => b'F',
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'I' => Some(Op::Invalidate),
            b'F' => Some(Op::Flush),
            _ => None,
        }
    }
}

/// A decoded message, borrowing the key from the payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub op: Op,
    pub node: u64,
    pub sent_at_us: u64,
    pub key: &'a [u8],
}

/// Encodes a message.
pub(crate) fn encode(op: Op, node: u64, sent_at_us: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + key.len());
    out.push(VERSION);
    out.push(op.byte());
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(&sent_at_us.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Decodes a payload; `None` if it is not a message this build understands.
pub(crate) fn decode(bytes: &[u8]) -> Option<Message<'_>> {
    if bytes.len() < HEADER || bytes[0] != VERSION {
        return None;
    }
    let op = Op::from_byte(bytes[1])?;
    let node = u64::from_be_bytes(bytes[2..10].try_into().ok()?);
    let sent_at_us = u64::from_be_bytes(bytes[10..18].try_into().ok()?);
    Some(Message {
        op,
        node,
        sent_at_us,
        key: &bytes[HEADER..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips() {
        let bytes = encode(Op::Invalidate, 7, 99, b"user:1");
        let m = decode(&bytes).unwrap();
        assert_eq!(
            m,
            Message {
                op: Op::Invalidate,
                node: 7,
                sent_at_us: 99,
                key: b"user:1"
            }
        );
        let flush = encode(Op::Flush, 1, 2, b"");
        assert_eq!(decode(&flush).unwrap().op, Op::Flush);
    }

    #[test]
    fn garbled_payloads_are_refused() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"hello world, this is not it"), None);
        let mut bytes = encode(Op::Invalidate, 7, 99, b"k");
        bytes[1] = b'X';
        assert_eq!(decode(&bytes), None);
        bytes[1] = b'I';
        bytes[0] = 2;
        assert_eq!(decode(&bytes), None, "a newer version is not guessed at");
        assert_eq!(decode(&bytes[..HEADER - 1]), None);
    }
}
