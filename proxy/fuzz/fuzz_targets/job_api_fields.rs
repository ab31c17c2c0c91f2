//! The job API's readers of untrusted text (`mcp_sidecar::job_api::fields`, `JobId::parse`) on
//! arbitrary input: never a panic, and what they accept is what their documents say: a job id
//! is 32 lowercase hex digits and prints back as the same text, a cursor prints back as a
//! cursor that reads the same, numbers are digits only, an `Idempotency-Key` is 1 to 255
//! visible ASCII characters taken from the field, `Prefer: wait` is capped.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_sidecar::job_api::fields::{
    self, MAX_IDEMPOTENCY_KEY, MAX_PREFER_WAIT, cursor, digits, idempotency_key, last_event_id,
    prefer, query_param,
};
use mcp_sidecar::jobs::JobId;

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        if let Some(id) = JobId::parse(text) {
            assert_eq!(id.to_string(), text, "an id prints back as the text it was read from");
        }
        if let Some(n) = digits(text) {
            assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?} read as {n}");
        }
        if let Some(c) = cursor(text) {
            let printed = format!("{}-{}", c.created_ms, c.id);
            assert_eq!(cursor(&printed), Some(c), "{text:?}");
        }
        let _ = query_param(Some(text), "upstream");
    }
    let Ok(value) = HeaderValue::from_bytes(input) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(fields::PREFER, value.clone());
    headers.insert("idempotency-key", value.clone());
    headers.insert("last-event-id", value);
    let p = prefer(&headers);
    assert!(p.wait.is_none_or(|w| w <= MAX_PREFER_WAIT));
    if let Ok(Some(key)) = idempotency_key(&headers) {
        assert!((1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()));
        assert!(key.bytes().all(|b| b.is_ascii_graphic()));
        assert!(input.windows(key.len()).any(|w| w == key.as_bytes()));
    }
    if let Some(n) = last_event_id(&headers) {
        let trimmed = std::str::from_utf8(input).map(str::trim).unwrap_or("");
        assert_eq!(digits(trimmed), Some(n));
    }
});
