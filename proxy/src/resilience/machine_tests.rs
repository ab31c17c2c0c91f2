use super::*;

fn settings() -> Settings {
    Settings {
        consecutive_failures: 3,
        failure_ratio: 0.0,
        window: Duration::from_secs(10),
        min_requests: 1,
        open_duration: Duration::from_secs(60),
        max_open_duration: Duration::from_secs(300),
        backoff_multiplier: 2.0,
        half_open_probes: 1,
        half_open_successes: 2,
    }
}

struct Clocked {
    m: Machine,
    now: Instant,
    out: Vec<Transition>,
}

impl Clocked {
    fn new(s: Settings) -> Self {
        let now = Instant::now();
        Self {
            m: Machine::new(s, now),
            now,
            out: Vec::new(),
        }
    }
    fn advance(&mut self, d: Duration) {
        self.now += d;
    }
    fn acquire(&mut self) -> Result<Ticket, Rejected> {
        self.m.acquire(self.now, &mut self.out)
    }
    fn record(&mut self, t: Ticket, o: Option<Outcome>) {
        self.m.record(t, o, self.now, &mut self.out);
    }
    fn call(&mut self, o: Outcome) -> bool {
        match self.acquire() {
            Ok(t) => {
                self.record(t, Some(o));
                true
            }
            Err(_) => false,
        }
    }
    fn state(&mut self) -> State {
        self.m.snapshot(self.now, &mut self.out).state
    }
}

#[test]
fn trips_after_n_consecutive_failures_and_a_success_resets_the_count() {
    let mut b = Clocked::new(settings());
    b.call(Outcome::Failure);
    b.call(Outcome::Failure);
    b.call(Outcome::Success);
    b.call(Outcome::Failure);
    b.call(Outcome::Failure);
    assert_eq!(b.state(), State::Closed);
    b.call(Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        b.out,
        vec![Transition {
            from: State::Closed,
            to: State::Open
        }]
    );
    let rejected = b.acquire().unwrap_err();
    assert_eq!(rejected.retry_after, Duration::from_secs(60));
}

#[test]
fn ratio_trips_only_with_enough_requests_and_forgets_old_buckets() {
    let mut s = settings();
    s.consecutive_failures = 0;
    s.failure_ratio = 0.5;
    s.min_requests = 4;
    let mut b = Clocked::new(s);
    // 1 failure, 1 success, 1 failure: 3 requests, below the minimum.
    b.call(Outcome::Failure);
    b.call(Outcome::Success);
    b.call(Outcome::Failure);
    assert_eq!(b.state(), State::Closed);
    // The window is 10 s: after 11 s those calls are forgotten.
    b.advance(Duration::from_secs(11));
    b.call(Outcome::Success);
    b.call(Outcome::Success);
    b.call(Outcome::Failure);
    assert_eq!(b.state(), State::Closed, "1 of 3 in the window");
    b.call(Outcome::Failure);
    assert_eq!(b.state(), State::Open, "2 of 4 = 0.5");
}

#[test]
fn one_probe_after_the_open_period_and_successes_close() {
    let mut b = Clocked::new(settings());
    for _ in 0..3 {
        b.call(Outcome::Failure);
    }
    b.advance(Duration::from_secs(59));
    assert_eq!(b.acquire().unwrap_err().retry_after, Duration::from_secs(1));
    b.advance(Duration::from_secs(1));
    let probe = b.acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.acquire().unwrap_err().retry_after, Duration::ZERO);
    b.record(probe, Some(Outcome::Success));
    assert_eq!(b.state(), State::HalfOpen, "two successes needed");
    assert!(b.call(Outcome::Success));
    assert_eq!(b.state(), State::Closed);
    assert!(b.call(Outcome::Success));
}

#[test]
fn repeated_trips_back_off_up_to_the_cap_and_closing_resets_it() {
    let mut b = Clocked::new(settings());
    for _ in 0..3 {
        b.call(Outcome::Failure);
    }
    let mut expected = [60u64, 120, 240, 300, 300].into_iter();
    let first = expected.next().unwrap();
    assert_eq!(
        b.acquire().unwrap_err().retry_after,
        Duration::from_secs(first)
    );
    let mut period = first;
    for next in expected {
        b.advance(Duration::from_secs(period));
        assert!(b.call(Outcome::Failure), "the probe is admitted");
        assert_eq!(
            b.acquire().unwrap_err().retry_after,
            Duration::from_secs(next)
        );
        period = next;
    }
    b.advance(Duration::from_secs(period));
    assert!(b.call(Outcome::Success));
    assert!(b.call(Outcome::Success));
    for _ in 0..3 {
        b.call(Outcome::Failure);
    }
    assert_eq!(
        b.acquire().unwrap_err().retry_after,
        Duration::from_secs(60),
        "a close resets the backoff"
    );
}

#[test]
fn stale_outcomes_do_not_count() {
    let mut b = Clocked::new(settings());
    let slow = b.acquire().unwrap();
    for _ in 0..3 {
        b.call(Outcome::Failure);
    }
    b.advance(Duration::from_secs(60));
    let probe = b.acquire().unwrap();
    // The slow request admitted while closed fails now: it must not reopen the half-open circuit.
    b.record(slow, Some(Outcome::Failure));
    assert_eq!(b.state(), State::HalfOpen);
    b.record(probe, Some(Outcome::Success));
    assert!(b.call(Outcome::Success));
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn an_abandoned_probe_frees_its_slot_without_counting() {
    let mut b = Clocked::new(settings());
    for _ in 0..3 {
        b.call(Outcome::Failure);
    }
    b.advance(Duration::from_secs(60));
    let probe = b.acquire().unwrap();
    assert!(b.acquire().is_err());
    b.record(probe, None);
    let snapshot = b.m.snapshot(b.now, &mut b.out);
    assert_eq!(
        (snapshot.probes_in_flight, snapshot.probe_successes),
        (0, 0)
    );
    assert!(b.acquire().unwrap().is_probe());
}

#[test]
fn health_checks_close_a_half_open_circuit_sooner_but_not_an_open_one() {
    let mut b = Clocked::new(settings());
    for _ in 0..3 {
        b.call(Outcome::Failure);
    }
    b.m.health_ok(b.now, &mut b.out);
    assert_eq!(b.state(), State::Open, "the open period is not cut short");
    b.advance(Duration::from_secs(60));
    b.m.health_ok(b.now, &mut b.out);
    assert_eq!(b.state(), State::HalfOpen);
    assert!(b.call(Outcome::Success));
    assert_eq!(
        b.state(),
        State::Closed,
        "one check + one probe = two successes"
    );
}

#[test]
fn forced_open_holds_until_forced_closed() {
    let mut b = Clocked::new(settings());
    b.m.force_open(&mut b.out);
    b.advance(Duration::from_secs(3600));
    assert_eq!(
        b.acquire().unwrap_err().retry_after,
        Duration::from_secs(60)
    );
    let snapshot = b.m.snapshot(b.now, &mut b.out);
    assert!(snapshot.forced);
    b.m.force_close(b.now, &mut b.out);
    assert!(b.call(Outcome::Success));
}
