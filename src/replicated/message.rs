//! The invalidation message: what one node tells the others after it changed keys.
//!
//! Binary and versioned so a garbled payload, or one from a newer build, is recognised; the node
//! that receives it cannot tell which key changed, so it drops the namespace's local copies:
//! `[version = 1][op][node id: u64 BE][sent at, Unix µs: u64 BE][body]`, where the op and body are
//! - `b'I'`: one key, the body is the key's bytes;
//! - `b'B'`: a batch (a group commit), the body is `[count: u32 BE]` then, per key,
//!   `[length: u32 BE][key bytes]`, and nothing after the last key;
//! - `b'F'`: every key of the namespace (after `clear`), the body is empty.
//!
//! A batch of one key is written as `b'I'`, so a node of an older build still understands it.
//! The namespace travels in the channel name (`{prefix}{namespace}`), the keys without it.

/// The payload format version this build writes and reads.
pub(crate) const VERSION: u8 = 1;

const HEADER: usize = 1 + 1 + 8 + 8;
const ONE: u8 = b'I';
const BATCH: u8 = b'B';
const FLUSH: u8 = b'F';

/// What the receiving nodes must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Drop the local copies of the message's keys.
    Invalidate,
    /// Drop every local copy in the namespace (after `clear`).
    Flush,
}

/// A decoded message, borrowing the keys from the payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub op: Op,
    pub node: u64,
    pub sent_at_us: u64,
    /// The keys to drop (one for `b'I'`, every key of a batch; none for a flush).
    pub keys: Vec<&'a [u8]>,
}

/// Why a payload was refused (it is then counted as garbled and the namespace's local tier
/// dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Shorter than the header.
    Short,
    /// A version this build does not read (a newer one is not guessed at).
    Version(u8),
    /// An op byte this build does not know.
    Op(u8),
    /// A batch whose key list is cut short, overruns the payload, or has bytes after its end.
    KeyList,
}

fn header(op: u8, node: u64, sent_at_us: u64, body: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body);
    out.push(VERSION);
    out.push(op);
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(&sent_at_us.to_be_bytes());
    out
}

/// Encodes a message about one key (or, for [`Op::Flush`], the namespace; `key` is then empty).
pub(crate) fn encode(op: Op, node: u64, sent_at_us: u64, key: &[u8]) -> Vec<u8> {
    let op = match op {
        Op::Invalidate => ONE,
        Op::Flush => FLUSH,
    };
    let mut out = header(op, node, sent_at_us, key.len());
    out.extend_from_slice(key);
    out
}

/// Encodes an invalidation of `keys` (a single key in the one-key form).
pub(crate) fn encode_many(node: u64, sent_at_us: u64, keys: &[&[u8]]) -> Vec<u8> {
    if let [key] = keys {
        return encode(Op::Invalidate, node, sent_at_us, key);
    }
    let body = 4 + keys.iter().map(|k| 4 + k.len()).sum::<usize>();
    let mut out = header(BATCH, node, sent_at_us, body);
    out.extend_from_slice(&len32(keys.len()).to_be_bytes());
    for key in keys {
        out.extend_from_slice(&len32(key.len()).to_be_bytes());
        out.extend_from_slice(key);
    }
    out
}

/// A length as written on the wire. Redis caps a payload at 512 MB, far below `u32::MAX`.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Decodes a payload, or says why it is not a message this build understands.
pub(crate) fn decode(bytes: &[u8]) -> Result<Message<'_>, Refused> {
    let (head, body) = bytes.split_at_checked(HEADER).ok_or(Refused::Short)?;
    if head[0] != VERSION {
        return Err(Refused::Version(head[0]));
    }
    let (op, keys) = match head[1] {
        ONE => (Op::Invalidate, vec![body]),
        BATCH => (Op::Invalidate, key_list(body)?),
        FLUSH => (Op::Flush, Vec::new()),
        other => return Err(Refused::Op(other)),
    };
    let word = |at: usize| u64::from_be_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
    Ok(Message {
        op,
        node: word(2),
        sent_at_us: word(10),
        keys,
    })
}

/// The keys of a batch body. The count is checked against what the body can hold before
/// anything is allocated (each key takes at least its 4-byte length).
fn key_list(body: &[u8]) -> Result<Vec<&[u8]>, Refused> {
    let (count, mut rest) = take_u32(body)?;
    if count > rest.len() / 4 {
        return Err(Refused::KeyList);
    }
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, after) = take_u32(rest)?;
        let (key, after) = after.split_at_checked(len).ok_or(Refused::KeyList)?;
        keys.push(key);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(Refused::KeyList);
    }
    Ok(keys)
}

fn take_u32(bytes: &[u8]) -> Result<(usize, &[u8]), Refused> {
    let (n, rest) = bytes.split_first_chunk::<4>().ok_or(Refused::KeyList)?;
    Ok((u32::from_be_bytes(*n) as usize, rest))
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
                keys: vec![b"user:1"]
            }
        );
        let flush = encode(Op::Flush, 1, 2, b"");
        assert_eq!(decode(&flush).unwrap().op, Op::Flush);
    }

    #[test]
    fn a_batch_roundtrips_and_a_batch_of_one_is_the_one_key_form() {
        let keys: [&[u8]; 3] = [b"a", b"", b"user:42"];
        let bytes = encode_many(7, 99, &keys);
        let m = decode(&bytes).unwrap();
        assert_eq!((m.op, m.node, m.sent_at_us), (Op::Invalidate, 7, 99));
        assert_eq!(m.keys, keys);
        let one = encode_many(7, 99, &[b"k"]);
        assert_eq!(one, encode(Op::Invalidate, 7, 99, b"k"));
        assert_eq!(decode(&encode_many(7, 99, &[])).unwrap().keys.len(), 0);
    }

    #[test]
    fn garbled_payloads_are_refused() {
        assert_eq!(decode(b""), Err(Refused::Short));
        assert_eq!(
            decode(b"hello world, this is not it"),
            Err(Refused::Version(b'h'))
        );
        let mut bytes = encode(Op::Invalidate, 7, 99, b"k");
        bytes[1] = b'X';
        assert_eq!(decode(&bytes), Err(Refused::Op(b'X')));
        bytes[1] = b'I';
        bytes[0] = 2;
        assert_eq!(
            decode(&bytes),
            Err(Refused::Version(2)),
            "a newer version is not guessed at"
        );
        assert_eq!(decode(&bytes[..HEADER - 1]), Err(Refused::Short));
    }

    #[test]
    fn a_garbled_key_list_is_refused() {
        let batch = encode_many(7, 99, &[b"ab", b"cd"]);
        for cut in HEADER..batch.len() {
            assert_eq!(decode(&batch[..cut]), Err(Refused::KeyList), "cut at {cut}");
        }
        let mut trailing = batch.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(Refused::KeyList));
        let mut huge = batch[..HEADER].to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&huge), Err(Refused::KeyList), "no allocation");
    }

    mod prop {
        use proptest::{collection::vec, prelude::*, test_runner::TestRunner};

        use super::super::*;

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![Just(Op::Invalidate), Just(Op::Flush)]
        }

        /// A valid payload of either form: one key (or a flush), or a batch.
        fn valid() -> impl Strategy<Value = Vec<u8>> {
            let keys = vec(vec(any::<u8>(), 0..8), 0..6);
            prop_oneof![
                (op(), any::<u64>(), any::<u64>(), vec(any::<u8>(), 0..16))
                    .prop_map(|(op, node, at, key)| encode(op, node, at, &key)),
                (any::<u64>(), any::<u64>(), keys).prop_map(|(node, at, keys)| {
                    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                    encode_many(node, at, &keys)
                }),
            ]
        }

        /// Arbitrary payloads, and valid ones with one byte changed or cut short: `decode`
        /// returns a message or an error, never panics, and every key it returns lies inside
        /// the payload's body.
        fn never_panics(cases: u32) {
            let payload = prop_oneof![
                vec(any::<u8>(), 0..48),
                (valid(), any::<usize>(), any::<u8>()).prop_map(|(mut bytes, at_byte, byte)| {
                    let i = at_byte % bytes.len();
                    bytes[i] = byte;
                    bytes.truncate(at_byte % (bytes.len() + 1));
                    bytes
                }),
            ];
            let mut runner = TestRunner::new(ProptestConfig::with_cases(cases));
            runner
                .run(&payload, |bytes| {
                    if let Ok(m) = decode(&bytes) {
                        let total: usize = m.keys.iter().map(|k| k.len()).sum();
                        prop_assert!(total <= bytes.len() - HEADER);
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
                let keys: Vec<&[u8]> = match op {
                    Op::Invalidate => vec![&key],
                    Op::Flush => vec![],
                };
                prop_assert_eq!(m, Message { op, node, sent_at_us: at, keys });
            }

            #[test]
            fn a_batch_roundtrips(node: u64, at: u64, keys in vec(vec(any::<u8>(), 0..16), 0..20)) {
                let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                let bytes = encode_many(node, at, &keys);
                let m = decode(&bytes).unwrap();
                prop_assert_eq!(m, Message { op: Op::Invalidate, node, sent_at_us: at, keys });
            }
        }
    }
}
