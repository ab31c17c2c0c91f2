use std::time::Duration;

use super::*;
use crate::report::{Outcome, Recorder};

fn report(latencies_ms: &[u64], errors: usize) -> Report {
    let mut r = Recorder::new(Duration::from_secs(1));
    for (i, l) in latencies_ms.iter().enumerate() {
        let outcome = if i < errors {
            Outcome::Error("http_500".into())
        } else {
            Outcome::Success
        };
        r.record(
            Duration::ZERO,
            Duration::from_millis(*l),
            Duration::ZERO,
            outcome,
        );
    }
    r.report(Duration::from_secs(1), serde_json::json!({}))
}

#[test]
fn thresholds_parse_with_units_and_fail_naming_the_measured_value() {
    let r = report(&[10; 1000], 0);
    let t: Threshold = "p99<250ms".parse().unwrap();
    assert!(t.check(&r).is_ok());
    let t: Threshold = "p99 < 5ms".parse().unwrap();
    let crossed = t.check(&r).unwrap_err();
    assert_eq!(crossed.threshold, "p99 < 5ms");
    assert!(crossed.measured.starts_with("10.0"), "{crossed}");
    // Histogram values are exact to 0.1%: 10 ms reads as at most 10.01 ms.
    assert!(
        "max<=0.0101s"
            .parse::<Threshold>()
            .unwrap()
            .check(&r)
            .is_ok()
    );
    assert!(
        "mean<10100us"
            .parse::<Threshold>()
            .unwrap()
            .check(&r)
            .is_ok()
    );
    assert!("rps>900".parse::<Threshold>().unwrap().check(&r).is_ok());
    assert!("rps>1001".parse::<Threshold>().unwrap().check(&r).is_err());
    assert!(
        "requests>=1000"
            .parse::<Threshold>()
            .unwrap()
            .check(&r)
            .is_ok()
    );
    assert!("errors==0".parse::<Threshold>().unwrap().check(&r).is_ok());
}

#[test]
fn error_rate_takes_a_percentage_or_a_fraction() {
    let r = report(&[1; 1000], 2); // 0.2%
    assert!(
        "error_rate<0.1%"
            .parse::<Threshold>()
            .unwrap()
            .check(&r)
            .is_err()
    );
    assert!(
        "error_rate<0.5%"
            .parse::<Threshold>()
            .unwrap()
            .check(&r)
            .is_ok()
    );
    assert!(
        "error_rate<0.001"
            .parse::<Threshold>()
            .unwrap()
            .check(&r)
            .is_err()
    );
    let crossed = "error_rate<0.1%"
        .parse::<Threshold>()
        .unwrap()
        .check(&r)
        .unwrap_err();
    assert_eq!(crossed.measured, "0.2000%");
}

#[test]
fn malformed_thresholds_are_refused_naming_the_problem() {
    for (text, why) in [
        ("p99", "no comparison"),
        ("p99=<1ms", "comparison"),
        ("p98<1ms", "unknown metric"),
        ("p99<250", "needs a unit"),
        ("p99<-1ms", "non-negative"),
        ("rps>lots", "non-negative number"),
    ] {
        let err = text.parse::<Threshold>().unwrap_err().to_string();
        assert!(err.contains(why) && err.contains(text), "{text}: {err}");
    }
}
