use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use proptest::prelude::*;

use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_is_read() {
    let p = parse_traceparent(VALID.as_bytes()).unwrap();
    assert_eq!(
        TraceId::from_bytes(p.trace_id),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    assert_eq!(
        SpanId::from_bytes(p.parent_id),
        SpanId::from_hex("00f067aa0ba902b7").unwrap()
    );
    assert!(p.sampled);
    let unsampled = parse_traceparent(VALID.replace("-01", "-00").as_bytes()).unwrap();
    assert!(!unsampled.sampled);
    // Other flag bits are allowed; only `sampled` is read.
    assert!(
        parse_traceparent(VALID.replace("-01", "-03").as_bytes())
            .unwrap()
            .sampled
    );
}

#[test]
fn a_later_version_is_read_by_its_first_55_characters() {
    let v1 = VALID.replacen("00-", "01-", 1);
    assert!(parse_traceparent(v1.as_bytes()).is_some());
    assert!(parse_traceparent(format!("{v1}-extra").as_bytes()).is_some());
    assert!(parse_traceparent(format!("{v1}extra").as_bytes()).is_none());
}

#[test]
fn malformed_traceparents_are_ignored() {
    for bad in [
        "",
        "00",
        // Version ff is forbidden; version 00 has exactly 55 characters.
        &VALID.replacen("00-", "ff-", 1),
        &format!("{VALID}-"),
        &format!(" {VALID}"),
        &format!("{VALID} "),
        &VALID[..54],
        // Uppercase hex.
        &VALID.to_uppercase(),
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        // Zero ids.
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // Wrong separators, non-hex, a sign.
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        // Short ids padded elsewhere.
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-0101",
    ] {
        assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad:?}");
    }
}

#[test]
fn several_traceparent_fields_are_ambiguous_and_ignored() {
    let mut headers = http::HeaderMap::new();
    headers.append(TRACEPARENT, VALID.parse().unwrap());
    assert!(remote_parent(&headers).is_some());
    headers.append(TRACEPARENT, VALID.parse().unwrap());
    assert!(remote_parent(&headers).is_none());
}

#[test]
fn tracestate_is_kept_when_valid_and_dropped_when_not() {
    let mut headers = http::HeaderMap::new();
    headers.insert(TRACEPARENT, VALID.parse().unwrap());
    headers.append(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
    headers.append(TRACESTATE, "rojo=00f067aa0ba902b7".parse().unwrap());
    let cx = remote_parent(&headers).unwrap();
    assert!(cx.is_remote());
    assert_eq!(cx.trace_state().get("congo"), Some("t61rcWkgMzE"));
    assert_eq!(cx.trace_state().get("rojo"), Some("00f067aa0ba902b7"));

    headers.insert(TRACESTATE, "not a valid=state=".parse().unwrap());
    let cx = remote_parent(&headers).unwrap();
    assert_eq!(cx.trace_state(), &TraceState::NONE);

    let long = format!("k={}", "v".repeat(MAX_TRACESTATE_LEN));
    headers.insert(TRACESTATE, long.parse().unwrap());
    assert_eq!(
        remote_parent(&headers).unwrap().trace_state(),
        &TraceState::NONE
    );
}

#[test]
fn the_written_traceparent_reads_back() {
    let cx = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    );
    assert_eq!(traceparent_value(&cx), VALID);
    assert_eq!(
        &trace_id_hex(cx.trace_id()),
        b"4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

proptest! {
    #[test]
    fn any_traceparent_written_reads_back(trace in 1u128.., span in 1u64.., sampled: bool) {
        let cx = SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() },
            false,
            TraceState::NONE,
        );
        let value = traceparent_value(&cx);
        let parsed = parse_traceparent(value.as_bytes()).unwrap();
        prop_assert_eq!(TraceId::from_bytes(parsed.trace_id), cx.trace_id());
        prop_assert_eq!(SpanId::from_bytes(parsed.parent_id), cx.span_id());
        prop_assert_eq!(parsed.sampled, sampled);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = parse_traceparent(&bytes);
    }
}
