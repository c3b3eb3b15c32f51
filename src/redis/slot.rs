//! Redis Cluster hash slots (CRC16/XMODEM of the key, or of its `{hash tag}`, mod 16384), to
//! split a batch into one pipeline per slot.

use std::collections::HashMap;

/// Number of hash slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// The cluster slot of `key`.
pub(crate) fn of(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// The part between the first `{` and the next `}`, if it is not empty.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// `items` grouped by `slot_of`, each group in its original order.
pub(crate) fn group<T>(items: Vec<T>, slot_of: impl Fn(&T) -> u16) -> HashMap<u16, Vec<T>> {
    let mut groups: HashMap<u16, Vec<T>> = HashMap::new();
    for item in items {
        groups.entry(slot_of(&item)).or_default().push(item);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_cluster_keyslot() {
        // Values from `redis-cli CLUSTER KEYSLOT`.
        assert_eq!(of(b"foo"), 12182);
        assert_eq!(of(b"{user1000}.following"), of(b"user1000"));
        assert_eq!(of(b"foo{}{bar}"), of(b"foo{}{bar}"));
        assert_eq!(hash_tag(b"foo{}{bar}"), None);
        assert_eq!(hash_tag(b"a{b}c"), Some(&b"b"[..]));
    }
}
