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

/// How late `wait` leaves for each of `n` deadlines 0.5 ms apart (between the timer's
/// millisecond ticks), sorted.
async fn lateness<F: std::future::Future<Output = ()>>(
    n: u32,
    wait: impl Fn(Instant) -> F,
) -> Vec<Duration> {
    let start = Instant::now() + Duration::from_millis(5);
    let mut late = Vec::new();
    for i in 0..n {
        let due = start + Duration::from_micros(500) * i;
        wait(due).await;
        late.push(Instant::now().saturating_duration_since(due));
    }
    late.sort();
    late
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_sends_leave_nearer_their_due_time_than_on_the_timer_tick() {
    // Measured against tokio's timer in the same test (a ratio, not a wall-clock limit): the
    // timer fires on whole milliseconds, so it leaves ~0.5 ms late on average whatever the
    // machine; the pacer yields through the last stretch and leaves on time.
    let mut wins = 0;
    for _ in 0..3 {
        let timer = lateness(200, tokio::time::sleep_until).await;
        let paced = lateness(200, pace).await;
        if paced[100] * 2 < timer[100] {
            wins += 1;
        }
    }
    assert!(
        wins >= 2,
        "the pacer was not earlier than the timer in 2 of 3 rounds"
    );
}
