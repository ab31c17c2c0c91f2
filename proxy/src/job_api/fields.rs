//! The job API's readers of untrusted text: `Prefer` (RFC 7240), `Idempotency-Key`,
//! `Last-Event-ID`, query parameters and list cursors. Numbers are digits only (no sign, no
//! space inside), escapes must be well formed, and anything else is refused or ignored as each
//! function says; `proxy/fuzz/fuzz_targets/job_api_fields.rs` holds them to it.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::jobs::{Cursor, JobId};

/// `Prefer`, looked up on every POST: a static name, not parsed per request.
pub const PREFER: HeaderName = HeaderName::from_static("prefer");
/// Longest `Prefer: wait` honoured. The connection carries nothing while it waits; half the
/// 60 s idle cut of common load balancers keeps the wait itself from being cut.
pub const MAX_PREFER_WAIT: Duration = Duration::from_secs(30);
/// Longest `Idempotency-Key` accepted (the IETF draft sets none; Stripe's is 255).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `Prefer` preferences the job API honours.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Prefer {
    /// `respond-async`: the caller wants a job.
    pub respond_async: bool,
    /// `wait=N` (at most [`MAX_PREFER_WAIT`]): how long the answer may wait for the result.
    pub wait: Option<Duration>,
}

/// Reads every `Prefer` field: comma-separated preferences, names case-insensitive,
/// parameters after `;` ignored (RFC 7240 §2). Unknown preferences, and a `wait` that is not
/// `1*DIGIT` (optionally quoted), are ignored, as the RFC lets a server do.
pub fn prefer(headers: &HeaderMap) -> Prefer {
    let mut out = Prefer::default();
    for value in headers.get_all(&PREFER) {
        let Ok(value) = value.to_str() else { continue };
        for pref in value.split(',') {
            let pref = pref.split(';').next().unwrap_or("").trim();
            let (name, val) = match pref.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (pref, None),
            };
            if name.eq_ignore_ascii_case("respond-async") {
                out.respond_async = true;
            } else if name.eq_ignore_ascii_case("wait")
                && let Some(secs) = val.and_then(digits)
            {
                out.wait = Some(Duration::from_secs(secs).min(MAX_PREFER_WAIT));
            }
        }
    }
    out
}

/// `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header: a structured string, so
/// quotes are taken off): 1 to 255 visible ASCII characters, one field. `Err` says what is
/// wrong, for a 400.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Idempotency-Key field".into());
    }
    let key = unquote(value.to_str().unwrap_or("").trim());
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ));
    }
    Ok(Some(key.to_owned()))
}

/// `Last-Event-ID` as a job event sequence number (digits; anything else is no id).
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| digits(v.trim()))
}

/// The value of `name` in a query string (its first occurrence), percent-decoded. `Err` for a
/// value whose escapes are malformed or do not decode to UTF-8.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, String> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return crate::resilience::percent_decode(v)
                .map(Some)
                .ok_or_else(|| format!("`{name}` has a malformed percent-escape"));
        }
    }
    Ok(None)
}

/// `<created_ms>-<id>`, as a list's `nextCursor` gives it.
pub fn cursor(text: &str) -> Option<Cursor> {
    let (ms, id) = text.split_once('-')?;
    Some(Cursor {
        created_ms: digits(ms)?,
        id: JobId::parse(id)?,
    })
}

/// `1*DIGIT` as a number: no sign, no space, no overflow.
pub fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `text` without one pair of surrounding double quotes.
fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn prefer_reads_respond_async_and_wait_across_fields_and_case() {
        let p = prefer(&headers(&[
            ("prefer", "handling=lenient, Respond-Async; x=1"),
            ("prefer", "wait=10"),
        ]));
        assert_eq!(
            p,
            Prefer {
                respond_async: true,
                wait: Some(Duration::from_secs(10))
            }
        );
        let p = prefer(&headers(&[("prefer", "wait=100000")]));
        assert_eq!(p.wait, Some(MAX_PREFER_WAIT));
        assert_eq!(
            prefer(&headers(&[("prefer", "wait=\"5\"")])).wait,
            Some(Duration::from_secs(5))
        );
        assert!(!prefer(&headers(&[("prefer", "respond-asynchronously")])).respond_async);
    }

    #[test]
    fn a_wait_that_is_not_digits_is_ignored() {
        for bad in [
            "wait=+5",
            "wait=-1",
            "wait=5s",
            "wait=",
            "wait=1 2",
            "wait=99999999999999999999",
        ] {
            assert_eq!(prefer(&headers(&[("prefer", bad)])).wait, None, "{bad}");
        }
    }

    #[test]
    fn idempotency_key_is_unquoted_bounded_and_single() {
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", "\"abc\"")]))
                .unwrap()
                .as_deref(),
            Some("abc")
        );
        assert!(idempotency_key(&headers(&[("idempotency-key", "")])).is_err());
        assert!(idempotency_key(&headers(&[("idempotency-key", "\"\"")])).is_err());
        assert!(idempotency_key(&headers(&[("idempotency-key", "a b")])).is_err());
        assert!(idempotency_key(&headers(&[("idempotency-key", &"k".repeat(256))])).is_err());
        assert!(
            idempotency_key(&headers(&[
                ("idempotency-key", "a"),
                ("idempotency-key", "b")
            ]))
            .is_err()
        );
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = JobId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let c = cursor(&format!("1700000000000-{id}")).unwrap();
        assert_eq!((c.created_ms, c.id), (1_700_000_000_000, id));
        for bad in [
            "",
            "x-y",
            "12",
            "12-zz",
            &format!("-{id}"),
            &format!("+12-{id}"),
        ] {
            assert_eq!(cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_params_are_found_decoded_and_malformed_escapes_refused() {
        assert_eq!(
            query_param(Some("a=1&upstream=my%2Dup"), "upstream")
                .unwrap()
                .as_deref(),
            Some("my-up")
        );
        assert_eq!(query_param(Some("upstreamx=1"), "upstream").unwrap(), None);
        assert_eq!(query_param(None, "upstream").unwrap(), None);
        assert!(query_param(Some("upstream=%zz"), "upstream").is_err());
        assert!(query_param(Some("upstream=%ff"), "upstream").is_err());
    }

    #[test]
    fn last_event_id_is_a_sequence_number() {
        let mut h = HeaderMap::new();
        assert_eq!(last_event_id(&h), None);
        h.insert("last-event-id", HeaderValue::from_static(" 7 "));
        assert_eq!(last_event_id(&h), Some(7));
        for bad in ["abc", "+7", "-7", "7 8"] {
            h.insert("last-event-id", HeaderValue::from_static(bad));
            assert_eq!(last_event_id(&h), None, "{bad}");
        }
    }
}
