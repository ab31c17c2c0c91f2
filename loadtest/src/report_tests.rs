use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn percentiles_come_from_the_histogram_and_errors_count_by_class() {
    let mut r = Recorder::new(Duration::from_secs(1));
    for i in 1..=100 {
        r.record(ms((i - 1) * 10), ms(i), Duration::ZERO, Outcome::Success);
    }
    r.record(
        ms(1500),
        ms(1),
        Duration::ZERO,
        Outcome::Error("jsonrpc_-32601".into()),
    );
    let report = r.report(Duration::from_secs(2), serde_json::json!({}));
    assert_eq!((report.requests, report.errors), (101, 1));
    assert_eq!(report.errors_by_kind["jsonrpc_-32601"], 1);
    assert!(
        (report.latency_ms.p50 - 50.0).abs() < 0.1,
        "{:?}",
        report.latency_ms
    );
    assert!((report.latency_ms.max - 100.0).abs() < 0.1);
    assert_eq!(report.intervals.len(), 2);
    assert_eq!(report.intervals[0].requests, 100);
    assert_eq!(report.intervals[1].errors, 1);
    assert!((report.rps - 50.5).abs() < 1e-9);
}

#[test]
fn merged_shards_equal_one_run_over_the_same_requests() {
    let interval = Duration::from_secs(1);
    let (mut one, mut a, mut b) = (
        Recorder::new(interval),
        Recorder::new(interval),
        Recorder::new(interval),
    );
    for i in 0..5000u64 {
        let at = ms(i % 3000);
        let latency = Duration::from_micros(100 + (i * 7919) % 250_000);
        let outcome = if i % 97 == 0 {
            Outcome::Error("timeout".into())
        } else {
            Outcome::Success
        };
        one.record(at, latency, Duration::ZERO, outcome.clone());
        let shard = if i % 2 == 0 { &mut a } else { &mut b };
        shard.record(at, latency, Duration::ZERO, outcome);
    }
    let d = Duration::from_secs(3);
    let whole = one.report(d, serde_json::json!({}));
    let merged = merge(&[
        a.report(d, serde_json::json!({})),
        b.report(d, serde_json::json!({})),
    ])
    .unwrap();
    assert_eq!(merged.latency_ms, whole.latency_ms);
    assert_eq!(
        merged.histogram, whole.histogram,
        "the same histogram, bit for bit"
    );
    assert_eq!(
        (merged.requests, merged.errors),
        (whole.requests, whole.errors)
    );
    assert_eq!(merged.errors_by_kind, whole.errors_by_kind);
    assert!((merged.rps - whole.rps).abs() < 1e-6);
    for (m, w) in merged.intervals.iter().zip(&whole.intervals) {
        assert_eq!((m.requests, m.latency_ms), (w.requests, w.latency_ms));
    }
}

#[test]
fn merge_refuses_what_it_cannot_combine() {
    assert!(matches!(merge(&[]), Err(ReportError::Empty)));
    let a =
        Recorder::new(Duration::from_secs(1)).report(Duration::from_secs(1), serde_json::json!({}));
    let b =
        Recorder::new(Duration::from_secs(2)).report(Duration::from_secs(1), serde_json::json!({}));
    assert!(matches!(
        merge(&[a.clone(), b]),
        Err(ReportError::Intervals(..))
    ));
    let mut bad = a;
    bad.histogram = "not base64!".into();
    let err = merge(&[bad]).unwrap_err().to_string();
    assert!(err.contains("report 0"), "{err}");
}

#[test]
fn the_report_has_the_documented_top_level_fields() {
    let report =
        Recorder::new(Duration::from_secs(1)).report(Duration::from_secs(1), serde_json::json!({}));
    let v = serde_json::to_value(&report).unwrap();
    for key in ["requests", "errors", "rps", "latency_ms"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_ms"].get(p).is_some(), "{p}");
    }
    assert!(markdown(&report).contains("| requests |"));
}
