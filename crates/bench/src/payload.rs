//! The benchmark's message payload and the parsing of its send time on the client side.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Key of the send time in a payload, as it appears in the JSON text.
const SENT_NS_KEY: &str = "\"sent_ns\":";

/// Returns the current time in nanoseconds since the UNIX epoch.
pub fn unix_nanos() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is set after 1970");
    u64::try_from(since_epoch.as_nanos()).expect("the time fits in u64 until the year 2554")
}

/// Builds the `data` of one benchmark message: 100 bytes of JSON carrying the send time.
///
/// `bench/socketio-server/server.js` builds the same object, so both servers send payloads
/// of the same size.
pub fn task_data(sent_ns: u64, counter: u64) -> Value {
    json!({
        "sent_ns": sent_ns,
        "n": counter,
        "title": "benchmark update",
        "pad": "x".repeat(24),
    })
}

/// Finds the send time in a received message's text without parsing the whole JSON.
pub fn find_sent_ns(text: &str) -> Option<u64> {
    let start = text.find(SENT_NS_KEY)? + SENT_NS_KEY.len();
    let digits = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_data_is_about_100_bytes() {
        let text = task_data(1_796_406_561_767_611_000, 123_456).to_string();

        assert!(
            (90..=110).contains(&text.len()),
            "{} bytes: {text}",
            text.len()
        );
    }

    #[test]
    fn find_sent_ns_reads_embedded_value() {
        let text = format!("42[\"taskUpdated\",{{\"data\":{}}}]", task_data(42, 7));

        assert_eq!(find_sent_ns(&text), Some(42));
    }

    #[test]
    fn find_sent_ns_without_key_is_none() {
        assert_eq!(find_sent_ns("{\"type\":6}"), None);
    }
}
