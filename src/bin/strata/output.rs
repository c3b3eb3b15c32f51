//! Rendering for people and for scripts, and progress bars for long scans.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Scans of fewer entries than this get no progress bar.
const BAR_THRESHOLD: u64 = 10_000;

/// A progress bar on stderr for `len` entries, hidden for small jobs and when stderr is not a
/// terminal (indicatif draws nothing then).
pub fn bar(len: Option<u64>, what: &'static str) -> ProgressBar {
    match len {
        Some(len) if len >= BAR_THRESHOLD => {
            let style = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(len).with_style(style).with_message(what)
        }
        _ => ProgressBar::hidden(),
    }
}

/// Prints `value` as one line of JSON.
pub fn json(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("strata: cannot render JSON: {e}"),
    }
}

/// A key's bytes for display: the text if UTF-8, else `0x` and hex.
pub fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// A duration for people: `45s`, `12m`, `3h`, `2d`.
pub fn human_ttl(ttl: Option<Duration>) -> String {
    let Some(ttl) = ttl else {
        return "never".into();
    };
    let secs = ttl.as_secs();
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7_199 => format!("{}m", secs / 60),
        7_200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A byte count for people: `512 B`, `3.4 KiB`, `1.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Any encoded value as JSON (see [`value_to_json`](strata::codec::value_to_json)); a
/// tower-sessions record with its id and expiry date readable.
pub fn value_json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    #[cfg(feature = "sessions")]
    if let Some(session) = crate::session_view::render(bytes) {
        return Ok(session);
    }
    strata::codec::value_to_json(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_for_people() {
        assert_eq!(human_ttl(None), "never");
        assert_eq!(human_ttl(Some(Duration::from_secs(45))), "45s");
        assert_eq!(human_ttl(Some(Duration::from_secs(1800))), "30m");
        assert_eq!(human_ttl(Some(Duration::from_secs(3 * 3600))), "3h");
        assert_eq!(human_ttl(Some(Duration::from_secs(10 * 86_400))), "10d");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 + 512), "3.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(key_text(b"abc"), "abc");
        assert_eq!(key_text(&[0xff, 0x00]), "0xff00");
    }

    #[test]
    fn values_with_bytes_and_wide_integers_still_render() {
        #[derive(serde::Serialize)]
        struct Odd {
            id: i128,
            #[serde(with = "serde_bytes_like")]
            blob: Vec<u8>,
        }
        mod serde_bytes_like {
            pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        let odd = Odd {
            id: -7,
            blob: vec![1, 2],
        };
        let bytes = strata::codec::encode_value(&odd, strata::Format::MessagePack, "k").unwrap();
        let json = value_json(&bytes).unwrap();
        assert_eq!(json["blob"], serde_json::json!([1, 2]));
        assert!(value_json(b"garbage").is_err());
    }
}
