use super::*;

#[test]
fn stages_ramp_linearly_and_count_the_area_under_the_rate() {
    let stages = parse_stages("10s:100, 10s:100, 10s:0").unwrap();
    // 0 to 100 over 10 s is 500 requests; then 1000; then 500 more.
    let count = (1..)
        .map(|k| staged_offset(&stages, f64::from(k)))
        .take_while(Option::is_some)
        .count();
    assert_eq!(count, 2000);
    // Halfway up the first ramp (5 s) 125 requests are due; the plateau is even.
    let t = staged_offset(&stages, 125.0).unwrap();
    assert!((t - 5.0).abs() < 1e-6, "{t}");
    let (a, b) = (
        staged_offset(&stages, 600.0).unwrap(),
        staged_offset(&stages, 601.0).unwrap(),
    );
    assert!((b - a - 0.01).abs() < 1e-9, "{a} {b}");
    assert_eq!(staged_offset(&stages, 2001.0), None);
}

#[test]
fn malformed_stages_are_refused_naming_the_stage() {
    for (text, why) in [
        ("30s", "DURATION:RATE"),
        ("30x:1", "30x:1"),
        ("0s:10", "greater than zero"),
        ("10s:-1", "non-negative"),
        ("10s:0", "nothing would be sent"),
    ] {
        let err = parse_stages(text).unwrap_err();
        assert!(err.contains(why), "{text}: {err}");
    }
}
