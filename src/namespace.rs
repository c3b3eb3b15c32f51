//! Namespaces: the prefix that keeps two caches' keys apart in one backend (`sessions:abc`).

use std::{fmt, sync::Arc};

use crate::error::{Error, Result};

/// The namespace used when none is given, as in Pow.
pub const DEFAULT_NAMESPACE: &str = "cache";

/// Longest namespace accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// A validated namespace: 1–128 bytes, no `:` (the separator), no whitespace or control
/// characters, and none of Redis' glob characters `* ? [ ] \`, so `SCAN MATCH namespace:*` can
/// never match another namespace's keys.
///
/// ```
/// use strata::Namespace;
/// assert!(Namespace::new("sessions").is_ok());
/// assert!(Namespace::new("bad:ns").is_err());
/// assert_eq!(Namespace::default().as_str(), "cache");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Arc<str>);

impl Namespace {
    /// Validates `name`.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        let invalid = |reason| {
            Error::from(crate::InvalidNamespaceError {
                namespace: name.to_owned(),
                reason,
            })
        };
        if name.is_empty() {
            return Err(invalid("a namespace must not be empty"));
        }
        if name.len() > MAX_NAMESPACE_LEN {
            return Err(invalid("a namespace must be at most 128 bytes"));
        }
        if name.contains(':') {
            return Err(invalid(
                "`:` separates the namespace from the key; use `_`, `-` or `.` instead",
            ));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "*?[]\\".contains(c))
        {
            return Err(invalid(
                "whitespace, control characters and the glob characters * ? [ ] \\ are not allowed",
            ));
        }
        Ok(Namespace(name.into()))
    }

    /// The namespace as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `namespace:` as bytes, the prefix of every stored key.
    pub fn prefix(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.0.len() + 1);
        p.extend_from_slice(self.0.as_bytes());
        p.push(b':');
        p
    }
}

/// Splits a stored key `namespace:key` into its namespace and key bytes: the one parser of the
/// layout, used by the disk loader, the raw record readers and the CLI. `None` if the key has no
/// `:` or its namespace is not a valid [`Namespace`] (a key strata did not write).
///
/// ```
/// use strata::split_stored_key;
/// let (ns, key) = split_stored_key(b"sessions:a:b").unwrap();
/// assert_eq!((ns.as_str(), key), ("sessions", &b"a:b"[..]));
/// assert!(split_stored_key(b"no-separator").is_none());
/// assert!(split_stored_key(b"bad ns:k").is_none());
/// ```
pub fn split_stored_key(stored: &[u8]) -> Option<(Namespace, &[u8])> {
    let colon = stored.iter().position(|&b| b == b':')?;
    let namespace = std::str::from_utf8(&stored[..colon]).ok()?;
    let namespace = Namespace::new(namespace).ok()?;
    Some((namespace, &stored[colon + 1..]))
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace(DEFAULT_NAMESPACE.into())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Namespace {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Namespace::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_would_break_prefix_matching() {
        for bad in ["", "a:b", "a b", "a*", "a?", "[a]", "a\\b", "\u{7}"] {
            let err = Namespace::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidNamespace { .. }), "{bad:?}");
        }
        assert!(Namespace::new("x".repeat(129)).is_err());
        assert!(Namespace::new("x".repeat(128)).is_ok());
    }

    #[test]
    fn accepts_ordinary_names() {
        for good in [
            "cache",
            "sessions",
            "user-tokens",
            "pow.v2",
            "ns_1",
            "ünïcode",
        ] {
            assert_eq!(Namespace::new(good).unwrap().as_str(), good);
        }
        assert_eq!(Namespace::new("s").unwrap().prefix(), b"s:");
    }

    proptest::proptest! {
        #[test]
        fn split_stored_key_never_panics_and_inverts_prefix(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            if let Some((ns, key)) = split_stored_key(&bytes) {
                let mut joined = ns.prefix();
                joined.extend_from_slice(key);
                proptest::prop_assert_eq!(joined, bytes);
            }
        }
    }
}
