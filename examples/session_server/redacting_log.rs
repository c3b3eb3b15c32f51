//! The log's last line of defence for session ids: every formatted log line passes through
//! [`redact_session_ids`] before it reaches stderr.
//!
//! Session ids are credentials, yet a store error can quote the key it failed on
//! (`GET sessions:<id>`), and tower-sessions logs such errors itself. Rather than trusting every
//! layer below to leave ids out, the writer removes anything shaped like one: 22 URL-safe base64
//! characters (a 128-bit tower-sessions id) standing alone.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// The length of a tower-sessions id as text.
const ID_CHARS: usize = 22;

/// Writes log lines to stderr with session ids replaced by `<session id>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for RedactingStderr {
    /// The fmt layer hands over one whole formatted event per call, so no id is split across
    /// two writes.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = redact_session_ids(&String::from_utf8_lossy(buf));
        io::stderr().lock().write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// True if `token` could be a session id. Words of lower-case letters and `_` (module paths,
/// field names) are kept: a random id has an upper-case letter or a digit with certainty
/// (1 − (27/64)^22).
fn looks_like_id(token: &str) -> bool {
    token.len() == ID_CHARS
        && token
            .chars()
            .any(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// `text` with every standalone run of 22 URL-safe base64 characters replaced.
pub fn redact_session_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_id_char) {
        out.push_str(&rest[..start]);
        let token_len = rest[start..]
            .find(|c| !is_id_char(c))
            .unwrap_or(rest.len() - start);
        let token = &rest[start..start + token_len];
        out.push_str(if looks_like_id(token) {
            "<session id>"
        } else {
            token
        });
        rest = &rest[start + token_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tower_sessions::session::Id;

    use super::redact_session_ids;

    #[test]
    fn keeps_what_is_not_an_id() {
        let line =
            "INFO strata_session_server::session_server::routes: listening local=127.0.0.1:3000";
        assert_eq!(redact_session_ids(line), line);
    }

    proptest! {
        #[test]
        fn no_session_id_survives(before in "[ -~]{0,30}", after in "[ -~]{0,30}", seed in any::<i128>()) {
            let id = Id(seed).to_string();
            let line = format!("{before} GET sessions:{id}: broken pipe session={id} {after}");
            prop_assert!(!redact_session_ids(&line).contains(&id));
        }
    }
}
