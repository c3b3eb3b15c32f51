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

/// A decoded message, borrowing the keys from the payload. Decoding allocates nothing: the
/// key list was checked whole, and [`Keys`] walks it again.
#[derive(Clone, Debug)]
pub(crate) struct Message<'a> {
    pub op: Op,
    pub node: u64,
    pub sent_at_us: u64,
    /// The keys to drop (one for `b'I'`, every key of a batch; none for a flush).
    pub keys: Keys<'a>,
}

/// The keys of a decoded message, in order, borrowed from its payload.
#[derive(Clone, Debug)]
pub(crate) enum Keys<'a> {
    /// None left (a flush, or every key was returned).
    None,
    /// The one key of `b'I'`.
    One(&'a [u8]),
    /// The `[length][key]` entries of a batch not yet returned; [`decode`] checked them all.
    List(&'a [u8]),
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match std::mem::replace(self, Keys::None) {
            Keys::None => None,
            Keys::One(key) => Some(key),
            Keys::List(entries) => {
                // Checked by `key_list`: a walk that fails here cannot happen, and ends the list.
                let (len, rest) = take_u32(entries).ok()?;
                let (key, rest) = rest.split_at_checked(len)?;
                if !rest.is_empty() {
                    *self = Keys::List(rest);
                }
                Some(key)
            }
        }
    }
}

/// True if `bytes` is a message this build reads whose header names `node`: the receiving
/// node's own echo, which it skips. Reads the header only, allocates nothing, and is false
/// for anything [`decode`] would refuse, so a garbled payload is still handled as one.
pub(crate) fn is_from(bytes: &[u8], node: u64) -> bool {
    let Some((head, body)) = bytes.split_at_checked(HEADER) else {
        return false;
    };
    if head[0] != VERSION || read_u64(head, 2) != node {
        return false;
    }
    match head[1] {
        ONE | FLUSH => true,
        BATCH => key_list(body).is_ok(),
        _ => false,
    }
}

fn read_u64(head: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]))
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
        ONE => (Op::Invalidate, Keys::One(body)),
        BATCH => (Op::Invalidate, key_list(body)?),
        FLUSH => (Op::Flush, Keys::None),
        other => return Err(Refused::Op(other)),
    };
    Ok(Message {
        op,
        node: read_u64(head, 2),
        sent_at_us: read_u64(head, 10),
        keys,
    })
}

/// The keys of a batch body, checked whole: exactly `count` entries, each within the body,
/// and nothing after the last.
fn key_list(body: &[u8]) -> Result<Keys<'_>, Refused> {
    let (count, entries) = take_u32(body)?;
    let mut rest = entries;
    for _ in 0..count {
        let (len, after) = take_u32(rest)?;
        rest = after.get(len..).ok_or(Refused::KeyList)?;
    }
    if !rest.is_empty() {
        return Err(Refused::KeyList);
    }
    Ok(match count {
        0 => Keys::None,
        _ => Keys::List(entries),
    })
}

fn take_u32(bytes: &[u8]) -> Result<(usize, &[u8]), Refused> {
    let (n, rest) = bytes.split_first_chunk::<4>().ok_or(Refused::KeyList)?;
    Ok((u32::from_be_bytes(*n) as usize, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded message as plain values: (op, node, sent at, keys).
    fn parts(m: Message<'_>) -> (Op, u64, u64, Vec<&[u8]>) {
        (m.op, m.node, m.sent_at_us, m.keys.collect())
    }

    #[test]
    fn roundtrips() {
        let bytes = encode(Op::Invalidate, 7, 99, b"user:1");
        let m = decode(&bytes).unwrap();
        let key: &[u8] = b"user:1";
        assert_eq!(parts(m), (Op::Invalidate, 7, 99, vec![key]));
        let flush = encode(Op::Flush, 1, 2, b"");
        assert_eq!(parts(decode(&flush).unwrap()), (Op::Flush, 1, 2, vec![]));
    }

    #[test]
    fn only_a_message_that_decodes_is_recognised_as_from_a_node() {
        let batch = encode_many(7, 99, &[b"ab", b"cd"]);
        assert!(is_from(&batch, 7));
        assert!(!is_from(&batch, 8), "another node's");
        assert!(is_from(&encode(Op::Flush, 7, 1, b""), 7));
        assert!(is_from(&encode(Op::Invalidate, 7, 1, b"k"), 7));
        for cut in 0..batch.len() {
            assert!(
                !is_from(&batch[..cut], 7),
                "cut at {cut}: garbled, not an echo"
            );
        }
        let mut newer = batch.clone();
        newer[0] = VERSION + 1;
        assert!(!is_from(&newer, 7), "a newer version is not read");
        let mut op = batch;
        op[1] = b'X';
        assert!(!is_from(&op, 7));
    }

    #[test]
    fn a_batch_roundtrips_and_a_batch_of_one_is_the_one_key_form() {
        let keys: [&[u8]; 3] = [b"a", b"", b"user:42"];
        let bytes = encode_many(7, 99, &keys);
        let m = decode(&bytes).unwrap();
        assert_eq!(parts(m), (Op::Invalidate, 7, 99, keys.to_vec()));
        let one = encode_many(7, 99, &[b"k"]);
        assert_eq!(one, encode(Op::Invalidate, 7, 99, b"k"));
        assert_eq!(decode(&encode_many(7, 99, &[])).unwrap().keys.count(), 0);
    }

    #[test]
    fn garbled_payloads_are_refused() {
        let refused = |bytes: &[u8]| decode(bytes).err();
        assert_eq!(refused(b""), Some(Refused::Short));
        assert_eq!(
            refused(b"hello world, this is not it"),
            Some(Refused::Version(b'h'))
        );
        let mut bytes = encode(Op::Invalidate, 7, 99, b"k");
        bytes[1] = b'X';
        assert_eq!(refused(&bytes), Some(Refused::Op(b'X')));
        bytes[1] = b'I';
        bytes[0] = 2;
        assert_eq!(
            refused(&bytes),
            Some(Refused::Version(2)),
            "a newer version is not guessed at"
        );
        assert_eq!(refused(&bytes[..HEADER - 1]), Some(Refused::Short));
    }

    #[test]
    fn a_garbled_key_list_is_refused() {
        let batch = encode_many(7, 99, &[b"ab", b"cd"]);
        let refused = |bytes: &[u8]| decode(bytes).err();
        for cut in HEADER..batch.len() {
            assert_eq!(
                refused(&batch[..cut]),
                Some(Refused::KeyList),
                "cut at {cut}"
            );
        }
        let mut trailing = batch.clone();
        trailing.push(0);
        assert_eq!(refused(&trailing), Some(Refused::KeyList));
        let mut huge = batch[..HEADER].to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            refused(&huge),
            Some(Refused::KeyList),
            "a count beyond the body"
        );
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
        /// the payload's body; `is_from` is true exactly when `decode` accepts the payload and
        /// it names that node.
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
                .run(&(payload, any::<u64>()), |(bytes, other)| {
                    let decoded = decode(&bytes);
                    if let Ok(m) = decoded.clone() {
                        let total: usize = m.keys.map(|k| k.len()).sum();
                        prop_assert!(total <= bytes.len() - HEADER);
                    }
                    // The echo check agrees with `decode`, for the payload's own node and another.
                    let node = bytes.get(2..10).map_or(0, |b| read_u64(b, 0));
                    for n in [node, other] {
                        let from_n = matches!(&decoded, Ok(m) if m.node == n);
                        prop_assert_eq!(is_from(&bytes, n), from_n);
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
                prop_assert_eq!(super::parts(m), (op, node, at, keys));
                prop_assert!(is_from(&bytes, node));
            }

            #[test]
            fn a_batch_roundtrips(node: u64, at: u64, keys in vec(vec(any::<u8>(), 0..16), 0..20)) {
                let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                let bytes = encode_many(node, at, &keys);
                let m = decode(&bytes).unwrap();
                prop_assert_eq!(super::parts(m), (Op::Invalidate, node, at, keys));
                prop_assert!(is_from(&bytes, node));
            }
        }
    }
}
