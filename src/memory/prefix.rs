//! Matching keys by the prefix of their encoded form, without allocating per key.

use crate::codec::Key;

/// Tests keys against one byte prefix, encoding each into a reused buffer. The in-memory stores
/// run it under their read locks, so only matching keys are cloned.
pub(crate) struct PrefixFilter<'a> {
    prefix: &'a [u8],
    buf: Vec<u8>,
}

impl<'a> PrefixFilter<'a> {
    pub(crate) fn new(prefix: &'a str) -> Self {
        PrefixFilter {
            prefix: prefix.as_bytes(),
            buf: Vec::new(),
        }
    }

    /// True if `key`'s encoded form starts with the prefix (an empty prefix matches every key).
    pub(crate) fn matches<K: Key>(&mut self, key: &K) -> bool {
        if self.prefix.is_empty() {
            return true;
        }
        self.buf.clear();
        key.encode_key(&mut self.buf);
        self.buf.starts_with(self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_encoded_bytes_exactly() {
        let mut filter = PrefixFilter::new("user:1:");
        assert!(filter.matches(&"user:1:a".to_string()));
        assert!(!filter.matches(&"user:10:a".to_string()));
        assert!(!filter.matches(&"user:1".to_string()));
        let mut digits = PrefixFilter::new("12");
        assert!(digits.matches(&123u64) && !digits.matches(&213u64));
        assert!(PrefixFilter::new("").matches(&"anything".to_string()));
    }
}
