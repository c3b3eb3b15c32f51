//! A key's bytes as the fill guards hash them and the invalidation message carries them: inline
//! when short, so a write or a fill allocates nothing for them (a `Vec` per put was one of its
//! allocations, issue 16 item 2).

use std::cell::RefCell;

use smallvec::SmallVec;

use crate::codec::Key;

/// Up to 32 bytes inline: an integer key's digits, a session id.
pub(crate) type KeyBytes = SmallVec<[u8; 32]>;

/// A scratch buffer over this size is not kept for the thread's next key.
const SCRATCH_KEPT: usize = 4096;

thread_local! {
    /// Where [`Key::encode_key`] writes, reused: the trait writes into a `Vec`.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `key` encoded as [`Key::encode_key`] does.
pub(crate) fn key_bytes<K: Key>(key: &K) -> KeyBytes {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => encode_into(key, &mut scratch),
        // Only if a key's own `encode_key` encodes another key through here.
        Err(_) => encode_into(key, &mut Vec::new()),
    })
}

fn encode_into<K: Key>(key: &K, scratch: &mut Vec<u8>) -> KeyBytes {
    scratch.clear();
    key.encode_key(scratch);
    let bytes = KeyBytes::from_slice(scratch);
    if scratch.capacity() > SCRATCH_KEPT {
        *scratch = Vec::new();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_stay_inline_and_long_ones_are_whole() {
        let short = key_bytes(&18_446_744_073_709_551_615_u64);
        assert_eq!(&short[..], b"18446744073709551615");
        assert!(!short.spilled());
        let long = "k".repeat(SCRATCH_KEPT + 1);
        assert_eq!(&key_bytes(&long)[..], long.as_bytes());
        assert_eq!(&key_bytes(&"after".to_string())[..], b"after");
    }
}
