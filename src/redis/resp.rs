//! RESP2 on the wire, for strata's own connection driver ([`super::driver`]): commands encoded
//! straight into a write buffer, replies decoded from the bytes received.
//!
//! The decoder is a decoder of network bytes: it never panics, says "need more" for a reply cut
//! short ([`Decoder::decode`] returns no reply, and resumes there when given the rest), and
//! returns a typed [`ProtocolError`] for bytes that are not RESP2 (the connection is then out of
//! step and must be dropped). Lengths a server
//! announces are checked against Redis's own limits before anything is reserved for them.

/// One RESP2 reply.
///
/// A bulk string is its own `Vec<u8>`: a GET's reply becomes the caller's value (strata's
/// decoder turns a MessagePack string's bytes into the returned `String` in place), so a slice
/// of the read buffer would only add a copy there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, the commonest status, without an allocation.
    Ok,
    /// Another simple string (`+PONG`, `+QUEUED`).
    Status(String),
    /// A server error (`-WRONGTYPE ...`): the command's reply, the connection stays usable.
    Error(String),
    /// `:N`.
    Int(i64),
    /// `$N` followed by N bytes.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*N` followed by N replies.
    Array(Vec<Reply>),
}

impl Reply {
    /// The reply's type, for an error that must not show its bytes.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Reply::Ok | Reply::Status(_) => "a status",
            Reply::Error(_) => "an error",
            Reply::Int(_) => "an integer",
            Reply::Bulk(_) => "a bulk string",
            Reply::Nil => "nil",
            Reply::Array(_) => "an array",
        }
    }
}

/// Bytes that are not a RESP2 reply: the connection is out of step and must be replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A reply starts with a byte that is no RESP2 type marker.
    #[error("Redis sent a reply starting with byte {0:#04x}, which no RESP2 reply starts with; the connection is out of step and is dropped")]
    UnknownType(u8),
    /// A line ends with `\r` not followed by `\n`, or a bulk string's bytes are not followed
    /// by `\r\n`.
    #[error("Redis sent a RESP2 line without its \\r\\n ending; the connection is out of step and is dropped")]
    BadLineEnd,
    /// A length or integer that is not a decimal number.
    #[error("Redis sent a RESP2 length or integer that is not a decimal number; the connection is out of step and is dropped")]
    BadNumber,
    /// A length past Redis's own limits (512 MiB a bulk string, 2^32 an array), or below -1.
    #[error("Redis announced a RESP2 length of {0}, past what Redis sends; the connection is out of step and is dropped")]
    BadLength(i64),
    /// A line longer than `MAX_LINE` (64 KiB) without its ending.
    #[error("Redis sent a RESP2 line longer than {MAX_LINE} bytes; the connection is out of step and is dropped")]
    LineTooLong,
    /// Arrays nested deeper than `MAX_DEPTH` (32).
    #[error("Redis sent RESP2 arrays nested deeper than {MAX_DEPTH}; the connection is out of step and is dropped")]
    TooDeep,
    /// A status or error line that is not UTF-8.
    #[error("Redis sent a RESP2 status or error line that is not UTF-8; the connection is out of step and is dropped")]
    NotUtf8,
}

/// The longest status, error or length line accepted (Redis's longest lines are error
/// messages, far below this).
pub const MAX_LINE: usize = 64 * 1024;
/// The longest bulk string Redis sends (`proto-max-bulk-len`'s ceiling).
pub const MAX_BULK: i64 = 512 * 1024 * 1024;
/// The most elements of an array Redis sends.
pub const MAX_ARRAY: i64 = 1 << 32;
/// The deepest nesting of arrays accepted (Redis nests a few levels: `EXEC`, `SCAN`, scripts).
pub const MAX_DEPTH: usize = 32;

/// Decodes the first reply in `bytes`: the reply and how many bytes it took, `Ok(None)` if
/// `bytes` holds only part of it (read more and call again with the same start), or the
/// [`ProtocolError`] that makes the connection unusable. `+OK\r\n:7\r\n` gives `Reply::Ok`
/// and 5; `$3\r\nab` gives `None` (the tests below hold every case). The driver's reader gets
/// its bytes in pieces and uses a [`Decoder`] instead, which does not decode a cut reply again.
#[cfg(test)]
pub fn decode(bytes: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    Ok(match Decoder::default().decode(bytes)? {
        (Some(reply), used) => Some((reply, used)),
        (None, _) => None,
    })
}

/// A decoder that resumes where it stopped: the arrays it has begun keep the items decoded so
/// far, so a reply that arrives in pieces is decoded once, not from its start at every piece
/// (quadratic in its size for a large `MGET`'s).
#[derive(Debug, Default)]
pub struct Decoder {
    /// The arrays begun, outermost first: their items so far and their announced length.
    open: Vec<(Vec<Reply>, usize)>,
}

/// A reply whole, or the header of an array whose items follow.
enum Element {
    Whole(Reply),
    Array(usize),
}

impl Decoder {
    /// Decodes from `bytes`, the bytes the earlier calls did not use: `(Some(reply), used)` for
    /// a whole reply; `(None, used)` if it is cut short, where the `used` bytes (the whole items
    /// of the arrays begun) are kept by the decoder and must not be given again. After an error
    /// the decoder is out of step, as its connection is.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(Option<Reply>, usize), ProtocolError> {
        let mut at = 0;
        loop {
            if let Some(reply) = self.close_full() {
                return Ok((Some(reply), at));
            }
            let mut next = at;
            let reply = match element(bytes, &mut next, self.open.len())? {
                None => return Ok((None, at)),
                Some(Element::Array(len)) if len > 0 => {
                    // Each item takes at least 3 bytes (`+\r\n`): no more room is reserved than
                    // the bytes here could fill, whatever length was announced.
                    let room = (bytes.len() - next) / 3;
                    self.open.push((Vec::with_capacity(room.min(len)), len));
                    at = next;
                    continue;
                }
                Some(Element::Array(_)) => Reply::Array(Vec::new()),
                Some(Element::Whole(reply)) => reply,
            };
            at = next;
            match self.open.last_mut() {
                Some((items, _)) => items.push(reply),
                None => return Ok((Some(reply), at)),
            }
        }
    }

    /// Closes every innermost array whose items are all in, each becoming an item of the one
    /// around it; the outermost one closed is returned (a whole reply).
    fn close_full(&mut self) -> Option<Reply> {
        while self
            .open
            .last()
            .is_some_and(|(items, len)| items.len() >= *len)
        {
            let (items, _) = self.open.pop()?;
            let array = Reply::Array(items);
            match self.open.last_mut() {
                Some((parent, _)) => parent.push(array),
                None => return Some(array),
            }
        }
        None
    }
}

/// The element at `*at` (a whole reply other than an array, or an array's header), moving
/// `*at` past it; `None` (and `*at` anywhere) if cut short. `depth`: the arrays around it.
fn element(bytes: &[u8], at: &mut usize, depth: usize) -> Result<Option<Element>, ProtocolError> {
    let Some(&marker) = bytes.get(*at) else {
        return Ok(None);
    };
    *at += 1;
    let Some(line) = line(bytes, at)? else {
        return Ok(None);
    };
    let whole = |reply| Ok(Some(Element::Whole(reply)));
    match marker {
        b'+' if line == b"OK" => whole(Reply::Ok),
        b'+' => whole(Reply::Status(text(line)?)),
        b'-' => whole(Reply::Error(text(line)?)),
        b':' => whole(Reply::Int(number(line)?)),
        b'$' => bulk(bytes, at, number(line)?),
        b'*' => array(number(line)?, depth),
        other => Err(ProtocolError::UnknownType(other)),
    }
}

/// A bulk string of `len` bytes at `*at` (after its header), moving `*at` past it.
fn bulk(bytes: &[u8], at: &mut usize, len: i64) -> Result<Option<Element>, ProtocolError> {
    if len == -1 {
        return Ok(Some(Element::Whole(Reply::Nil)));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|_| len <= MAX_BULK)
        .ok_or(ProtocolError::BadLength(len))?;
    let end = *at + len;
    let Some(ending) = bytes.get(end..end + 2) else {
        return Ok(None);
    };
    if ending != b"\r\n" {
        return Err(ProtocolError::BadLineEnd);
    }
    let body = bytes[*at..end].to_vec();
    *at = end + 2;
    Ok(Some(Element::Whole(Reply::Bulk(body))))
}

/// An array's header announcing `len` items, inside `depth` arrays.
fn array(len: i64, depth: usize) -> Result<Option<Element>, ProtocolError> {
    if len == -1 {
        return Ok(Some(Element::Whole(Reply::Nil)));
    }
    if !(0..=MAX_ARRAY).contains(&len) {
        return Err(ProtocolError::BadLength(len));
    }
    if depth >= MAX_DEPTH {
        return Err(ProtocolError::TooDeep);
    }
    Ok(Some(Element::Array(
        usize::try_from(len).unwrap_or(usize::MAX),
    )))
}

/// The line at `*at` without its `\r\n`, moving `*at` past it; `None` if its end is not in.
fn line<'a>(bytes: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, ProtocolError> {
    let rest = &bytes[(*at).min(bytes.len())..];
    let window = &rest[..rest.len().min(MAX_LINE + 1)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.len() > MAX_LINE {
            return Err(ProtocolError::LineTooLong);
        }
        return Ok(None);
    };
    match rest.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => {
            *at += cr + 2;
            Ok(Some(&rest[..cr]))
        }
        Some(_) => Err(ProtocolError::BadLineEnd),
    }
}

fn text(line: &[u8]) -> Result<String, ProtocolError> {
    std::str::from_utf8(line)
        .map(str::to_owned)
        .map_err(|_| ProtocolError::NotUtf8)
}

/// A signed decimal, digits only after an optional `-` (what Redis sends).
fn number(line: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(ProtocolError::BadNumber);
    }
    // Built as the magnitude (19 digits fit a u64), so `i64::MIN`, whose magnitude no i64
    // holds, decodes too.
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ProtocolError::BadNumber);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(ProtocolError::BadNumber)?;
    }
    let value = if negative {
        0i64.checked_sub_unsigned(n)
    } else {
        i64::try_from(n).ok()
    };
    value.ok_or(ProtocolError::BadNumber)
}

/// Appends `args` as one RESP2 command (`*N\r\n$len\r\narg\r\n...`) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for arg in args {
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the bulk string whose bytes are the concatenation of `parts` (a namespaced key:
/// the prefix, then the key) without joining them first.
pub fn encode_parts(out: &mut Vec<u8>, parts: &[&[u8]]) {
    header(out, b'$', parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `*N\r\n` (an array's header): the start of a command of N arguments.
pub fn encode_array(out: &mut Vec<u8>, len: usize) {
    header(out, b'*', len);
}

fn header(out: &mut Vec<u8>, marker: u8, n: usize) {
    out.push(marker);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(bytes: &[u8]) -> Result<Vec<Reply>, ProtocolError> {
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((reply, used)) = decode(&bytes[at..])? {
            out.push(reply);
            at += used;
        }
        Ok(out)
    }

    #[test]
    fn decodes_every_reply_type() {
        let wire = b"+OK\r\n+PONG\r\n-ERR no\r\n:-42\r\n$3\r\nabc\r\n$0\r\n\r\n$-1\r\n*-1\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n";
        assert_eq!(
            all(wire),
            Ok(vec![
                Reply::Ok,
                Reply::Status("PONG".into()),
                Reply::Error("ERR no".into()),
                Reply::Int(-42),
                Reply::Bulk(b"abc".to_vec()),
                Reply::Bulk(Vec::new()),
                Reply::Nil,
                Reply::Nil,
                Reply::Array(vec![
                    Reply::Int(1),
                    Reply::Array(vec![Reply::Bulk(b"x".to_vec())])
                ]),
            ])
        );
    }

    #[test]
    fn a_reply_cut_anywhere_needs_more() {
        let wire = b"*3\r\n$5\r\nhello\r\n:12\r\n-ERR x\r\n";
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(decode(wire), Ok(Some((_, n))) if n == wire.len()));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert_eq!(decode(b"?x\r\n"), Err(ProtocolError::UnknownType(b'?')));
        assert_eq!(decode(b":1\rx"), Err(ProtocolError::BadLineEnd));
        assert_eq!(decode(b"$1\r\nabc"), Err(ProtocolError::BadLineEnd));
        assert_eq!(decode(b":1a\r\n"), Err(ProtocolError::BadNumber));
        assert_eq!(decode(b":\r\n"), Err(ProtocolError::BadNumber));
        assert_eq!(
            decode(b":99999999999999999999\r\n"),
            Err(ProtocolError::BadNumber)
        );
        assert_eq!(decode(b"$-2\r\n"), Err(ProtocolError::BadLength(-2)));
        assert_eq!(
            decode(b"$536870913\r\n"),
            Err(ProtocolError::BadLength(536_870_913))
        );
        assert_eq!(
            decode(b"*4294967297\r\n"),
            Err(ProtocolError::BadLength(4_294_967_297))
        );
        assert_eq!(decode(b"+\xff\r\n"), Err(ProtocolError::NotUtf8));
        let long = vec![b'+'; MAX_LINE + 2];
        assert_eq!(decode(&long), Err(ProtocolError::LineTooLong));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(decode(&deep), Err(ProtocolError::TooDeep));
        // A huge announced array with few bytes behind it reserves nothing for it.
        assert_eq!(decode(b"*4294967296\r\n:1\r\n"), Ok(None));
    }

    #[test]
    fn encodes_a_command() {
        let mut out = Vec::new();
        encode(&mut out, &[b"GET", b"k"]);
        encode_array(&mut out, 2);
        encode_parts(&mut out, &[b"GET"]);
        encode_parts(&mut out, &[b"ns:", b"key"]);
        assert_eq!(
            out,
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$6\r\nns:key\r\n"
        );
    }

    /// Every i64 Redis can send decodes, the two ends included (`INCRBY k 0` on a key holding
    /// `-9223372036854775808` answers it); one past either end is a typed error.
    #[test]
    fn integers_decode_over_the_whole_i64_range() {
        for n in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            let line = format!(":{n}\r\n");
            assert_eq!(
                decode(line.as_bytes()),
                Ok(Some((Reply::Int(n), line.len()))),
                "{line:?}"
            );
        }
        for past in [
            ":-9223372036854775809\r\n",
            ":9223372036854775808\r\n",
            ":-\r\n",
        ] {
            assert_eq!(
                decode(past.as_bytes()),
                Err(ProtocolError::BadNumber),
                "{past:?}"
            );
        }
    }

    fn any_reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            Just(Reply::Ok),
            "[a-zA-Z0-9 ]{0,20}"
                .prop_filter("not OK", |s| s != "OK")
                .prop_map(Reply::Status),
            "[a-zA-Z0-9 ]{0,20}".prop_map(Reply::Error),
            prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()].prop_map(Reply::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Bulk),
            Just(Reply::Nil),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Reply::Array)
        })
    }

    fn wire(reply: &Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
            Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(b) => encode_parts(out, &[b]),
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                encode_array(out, items.len());
                items.iter().for_each(|i| wire(i, out));
            }
        }
    }

    /// Every split of a stream of replies decodes to the same replies: fed in two pieces, the
    /// first piece says "need more" or gives whole replies only.
    fn split_roundtrip(replies: &[Reply], cut: usize) {
        let mut bytes = Vec::new();
        replies.iter().for_each(|r| wire(r, &mut bytes));
        let cut = cut % (bytes.len() + 1);
        let mut got = Vec::new();
        let mut at = 0;
        for end in [cut, bytes.len()] {
            while let Some((reply, used)) = decode(&bytes[at..end]).expect("valid RESP") {
                got.push(reply);
                at += used;
            }
        }
        assert_eq!(at, bytes.len());
        assert_eq!(got, replies);
    }

    /// A stream of replies fed to one [`Decoder`] in pieces cut at `cuts` decodes to the same
    /// replies; the bytes it used are dropped from what it is given next.
    fn pieces_roundtrip(replies: &[Reply], cuts: &[usize]) {
        let mut bytes = Vec::new();
        replies.iter().for_each(|r| wire(r, &mut bytes));
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut decoder = Decoder::default();
        let (mut got, mut pending, mut from) = (Vec::new(), Vec::new(), 0);
        for cut in cuts {
            pending.extend_from_slice(&bytes[from..cut]);
            from = cut;
            loop {
                let (reply, used) = decoder.decode(&pending).expect("valid RESP");
                pending.drain(..used);
                match reply {
                    Some(reply) => got.push(reply),
                    None => break,
                }
            }
        }
        assert!(pending.is_empty(), "{} bytes left", pending.len());
        assert_eq!(got, replies);
    }

    /// Reviewer (052fa3e): the resumable path (arrays kept open between calls) on bytes that
    /// are NOT valid RESP: fed in pieces to one [`Decoder`], any stream gives what decoding it
    /// whole gives (the same replies, or the same error), and never panics.
    fn pieces_agree_with_whole(bytes: &[u8], cuts: &[usize]) {
        let whole = all(bytes);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut decoder = Decoder::default();
        let (mut got, mut pending, mut from) = (Vec::new(), Vec::new(), 0);
        let piecewise = 'feed: {
            for cut in cuts {
                pending.extend_from_slice(&bytes[from..cut]);
                from = cut;
                loop {
                    match decoder.decode(&pending) {
                        Err(e) => break 'feed Err(e),
                        Ok((reply, used)) => {
                            pending.drain(..used);
                            match reply {
                                Some(reply) => got.push(reply),
                                None => break,
                            }
                        }
                    }
                }
            }
            Ok(got)
        };
        assert_eq!(piecewise, whole);
    }

    proptest! {
        #[test]
        fn replies_roundtrip_split_anywhere(replies in proptest::collection::vec(any_reply(), 0..8), cut in any::<usize>()) {
            split_roundtrip(&replies, cut);
        }

        #[test]
        fn replies_roundtrip_through_a_decoder_in_pieces(replies in proptest::collection::vec(any_reply(), 0..8), cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
            pieces_roundtrip(&replies, &cuts);
        }

        #[test]
        fn mangled_replies_in_pieces_decode_as_they_do_whole(replies in proptest::collection::vec(any_reply(), 1..6), at in any::<usize>(), byte in any::<u8>(), cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
            let mut bytes = Vec::new();
            replies.iter().for_each(|r| wire(r, &mut bytes));
            let at = at % bytes.len();
            bytes[at] = byte;
            pieces_agree_with_whole(&bytes, &cuts);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = all(&bytes);
        }

        #[test]
        fn mangled_replies_never_panic(replies in proptest::collection::vec(any_reply(), 1..6), at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = Vec::new();
            replies.iter().for_each(|r| wire(r, &mut bytes));
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = all(&bytes);
        }
    }

    /// The long run of the properties above: `cargo test --release --all-features --lib
    /// redis::resp -- --ignored` (200 000 split round trips, 1 000 000 arbitrary inputs and
    /// 1 000 000 mangled replies).
    #[test]
    #[ignore = "long: 2.2 million decoder inputs"]
    fn decoder_properties_long() {
        let runner =
            |cases| proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
        runner(200_000)
            .run(
                &(proptest::collection::vec(any_reply(), 0..8), any::<usize>()),
                |(replies, cut)| {
                    split_roundtrip(&replies, cut);
                    Ok(())
                },
            )
            .expect("roundtrip");
        runner(1_000_000)
            .run(&proptest::collection::vec(any::<u8>(), 0..1024), |bytes| {
                let _ = all(&bytes);
                Ok(())
            })
            .expect("no panic on arbitrary bytes");
        let mangled = (
            proptest::collection::vec(any_reply(), 1..6),
            any::<usize>(),
            any::<u8>(),
        );
        runner(1_000_000)
            .run(&mangled, |(replies, at, byte)| {
                let mut bytes = Vec::new();
                replies.iter().for_each(|r| wire(r, &mut bytes));
                let at = at % bytes.len();
                bytes[at] = byte;
                let _ = all(&bytes);
                Ok(())
            })
            .expect("no panic on mangled replies");
    }
}
