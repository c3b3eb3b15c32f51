//! tower-sessions records for people: the id as the base64 text a cookie carries (the key it is
//! stored under) and the expiry date as an RFC 3339 date, instead of the 16 bytes and the tuple
//! of integers serde writes for them.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use tower_sessions_core::session::Record;

/// `bytes` as a readable session record, if they hold one.
pub fn render(bytes: &[u8]) -> Option<Value> {
    let record: Record = strata::codec::decode_value(bytes, "session").ok()?;
    // Formatting fails only for years outside 0..=9999; show the date as time prints it then.
    let expiry = record
        .expiry_date
        .format(&Rfc3339)
        .unwrap_or_else(|_| record.expiry_date.to_string());
    Some(json!({
        "id": record.id.to_string(),
        "expiry_date": expiry,
        "data": record.data,
    }))
}
