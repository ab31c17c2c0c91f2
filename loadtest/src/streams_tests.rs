#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;

use super::*;

#[test]
fn the_send_time_is_read_at_the_pointer_as_unix_microseconds() {
    let data = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":{"tick":1,"sent_unix_us":1700000000123456}}}"#;
    assert_eq!(
        sent_at(data, DEFAULT_TIMESTAMP),
        Some(1_700_000_000_123_456)
    );
    assert_eq!(sent_at(r#"{"t":12.9}"#, "/t"), Some(12));
}

#[test]
fn an_event_without_a_send_time_is_not_timed() {
    assert_eq!(sent_at(r#"{"params":{}}"#, DEFAULT_TIMESTAMP), None);
    assert_eq!(sent_at("plain text", DEFAULT_TIMESTAMP), None);
    assert_eq!(sent_at(r#"{"t":"soon"}"#, "/t"), None);
    assert_eq!(sent_at(r#"{"t":-5}"#, "/t"), None);
}

#[test]
fn events_before_the_measured_time_are_left_out_and_opens_are_not() {
    let mut c = Collected::new();
    let start = Instant::now();
    let event = |at| Seen::Event {
        gap: Some(Duration::from_millis(100)),
        delivery: Some(Duration::from_millis(2)),
        at,
    };
    c.add(Seen::Opened(Duration::from_millis(5)), None);
    // Before the run says when it is measured from, everything is the warm-up's.
    c.add(event(start), None);
    let from = Some(start + Duration::from_secs(1));
    c.add(event(start), from);
    c.add(event(start + Duration::from_secs(2)), from);
    c.add(Seen::Closed("stream_closed".into()), from);
    c.add(Seen::Failed("http_405".into()), from);
    let r = c.report(2, Duration::from_secs(4));
    assert_eq!((r.opened, r.failed, r.errors), (1, 1, 2));
    assert_eq!((r.events, r.timed_events), (1, 1));
    assert!((r.events_per_s - 0.25).abs() < 1e-9);
    assert_eq!(r.errors_by_kind.get("stream_closed"), Some(&1));
}

#[test]
fn reports_without_streams_merge_into_none() {
    assert_eq!(merge(&[]).unwrap(), None);
}

#[test]
fn stream_thresholds_read_the_streams_and_a_run_without_them_has_none() {
    use crate::threshold::Threshold;
    let mut report = crate::report::Recorder::new(Duration::from_secs(1))
        .report(Duration::from_secs(1), serde_json::json!({}));
    let check = |text: &str, r: &crate::report::Report| text.parse::<Threshold>().unwrap().check(r);
    assert!(check("stream_errors<1", &report).is_ok());
    assert!(check("streams_opened>=1", &report).is_err());
    let mut c = Collected::new();
    let start = Instant::now();
    c.add(Seen::MeasureFrom(start), Some(start));
    for _ in 0..3 {
        c.add(Seen::Opened(Duration::from_millis(5)), Some(start));
    }
    c.add(Seen::Closed("stream_closed".into()), Some(start));
    c.add(
        Seen::Event {
            gap: None,
            delivery: Some(Duration::from_millis(40)),
            at: start,
        },
        Some(start),
    );
    report.streams = Some(c.report(3, Duration::from_secs(1)));
    assert!(check("streams_opened>=3", &report).is_ok());
    let crossed = check("stream_errors<1", &report).unwrap_err();
    assert_eq!(crossed.measured, "1");
    let crossed = check("delivery_p99<10ms", &report).unwrap_err();
    assert!(crossed.measured.starts_with("40.0"), "{crossed}");
    assert!(
        "delivery_p99<10".parse::<Threshold>().is_err(),
        "a unit is needed"
    );
}

#[test]
fn the_summary_and_the_page_show_the_streams() {
    let mut c = Collected::new();
    c.add(Seen::Opened(Duration::from_millis(5)), None);
    c.add(Seen::Failed("http_405".into()), None);
    let mut report = crate::report::Recorder::new(Duration::from_secs(1))
        .report(Duration::from_secs(1), serde_json::json!({}));
    report.streams = Some(c.report(2, Duration::from_secs(1)));
    let md = crate::report::markdown(&report);
    assert!(md.contains("| streams | opened |"), "{md}");
    assert!(md.contains("| `http_405` | 1 |"), "{md}");
    let page = crate::html::page(&report);
    assert!(page.contains("<h2>SSE streams</h2>"));
    assert!(page.contains("<code>http_405</code>"));
    assert!(
        lines(report.streams.as_ref().unwrap())[0]
            .starts_with("streams 2 asked  1 opened  1 failed")
    );
}
