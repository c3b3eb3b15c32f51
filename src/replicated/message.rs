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

    mod prop {
        use proptest::{collection::vec, prelude::*, test_runner::TestRunner};

        use super::super::*;

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![Just(Op::Invalidate), Just(Op::Flush)]
        }

        /// Arbitrary payloads, and valid ones with one byte changed or cut short: `decode`
        /// returns a message or `None`, never panics, and never reads past the payload.
        fn never_panics(cases: u32) {
            let payload = prop_oneof![
                vec(any::<u8>(), 0..48),
                (
                    op(),
                    any::<u64>(),
                    any::<u64>(),
                    vec(any::<u8>(), 0..16),
                    any::<usize>(),
                    any::<u8>()
                )
                    .prop_map(|(op, node, at, key, at_byte, byte)| {
                        let mut bytes = encode(op, node, at, &key);
                        let i = at_byte % bytes.len();
                        bytes[i] = byte;
                        bytes.truncate(at_byte % (bytes.len() + 1));
                        bytes
                    }),
            ];
            let mut runner = TestRunner::new(ProptestConfig::with_cases(cases));
            runner
                .run(&payload, |bytes| {
                    if let Some(m) = decode(&bytes) {
                        prop_assert_eq!(m.key.len(), bytes.len() - HEADER);
                    }
                    Ok(())
                })
                .unwrap();
        }

        #[test]
        fn decode_never_panics_on_arbitrary_bytes() {
            never_panics(2_000);
        }

        /// `cargo test --all-features --lib decode_never_panics_long -- --ignored`
        #[test]
        #[ignore = "1 M cases; run by hand"]
        fn decode_never_panics_long() {
            never_panics(1_000_000);
        }

        proptest! {
            #[test]
            fn encode_then_decode_roundtrips(op in op(), node: u64, at: u64, key in vec(any::<u8>(), 0..64)) {
                let bytes = encode(op, node, at, &key);
                let m = decode(&bytes).unwrap();
                prop_assert_eq!(m, Message { op, node, sent_at_us: at, key: &key });
            }
        }
    }
}
