//! Secrets out of anything printed: the one redaction function for URLs (banners, logs, errors).

/// `url` with its user name and password replaced by `***`, so it can be printed in a banner,
/// a log line or an error message. Only the authority part (before the first `/` after the
/// scheme) is searched for credentials; a URL without any is returned as it is.
///
/// ```
/// use strata::redact_url;
/// assert_eq!(redact_url("redis://user:secret@10.0.0.1:6379/0"), "redis://***@10.0.0.1:6379/0");
/// assert_eq!(redact_url("rediss://:secret@host"), "rediss://***@host");
/// assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact_url("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact_url("redis://u:p@ss@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact_url("redis://h:1/"), "redis://h:1/");
        assert_eq!(redact_url("redis://h/path@x"), "redis://h/path@x");
        assert_eq!(redact_url("nonsense"), "nonsense");
    }

    proptest::proptest! {
        #[test]
        fn never_prints_the_password(user in "[a-z]{0,8}", pass in "[a-zA-Z0-9]{6,12}") {
            let out = redact_url(&format!("redis://{user}:{pass}@host:1/0"));
            proptest::prop_assert!(!out.contains(&pass));
        }
    }
}
