//! The breaker against a model of its specification, over random sequences of admissions,
//! outcomes, abandoned requests, health checks, operator overrides and clock steps.

use proptest::prelude::*;

use super::*;

// ---- model-based property test -------------------------------------------------------------

/// The specification, written as plainly as possible: time in whole milliseconds, the window as
/// a list of (bucket, failed) events, tickets as (episode, probe).
#[derive(Debug)]
struct Model {
    s: Settings,
    bucket_ms: u64,
    state: ModelState,
    episode: u64,
    trips: u32,
    consecutive: u32,
    events: Vec<(u64, bool)>,
    probes_out: u32,
    successes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ModelState {
    Closed,
    Open(Option<u64>),
    HalfOpen,
}

impl Model {
    fn new(s: Settings) -> Self {
        let bucket_ms = u64::try_from(s.window.as_millis()).unwrap() / WINDOW_BUCKETS;
        Self {
            s,
            bucket_ms,
            state: ModelState::Closed,
            episode: 0,
            trips: 0,
            consecutive: 0,
            events: Vec::new(),
            probes_out: 0,
            successes: 0,
        }
    }

    fn tick(&mut self, t: u64) {
        if let ModelState::Open(Some(until)) = self.state
            && t >= until
        {
            self.enter(ModelState::HalfOpen);
        }
    }

    fn enter(&mut self, state: ModelState) {
        self.state = state;
        self.episode += 1;
        self.probes_out = 0;
        self.successes = 0;
    }

    fn acquire(&mut self, t: u64) -> Result<(u64, bool), u64> {
        self.tick(t);
        match self.state {
            ModelState::Closed => Ok((self.episode, false)),
            ModelState::Open(Some(until)) => Err(until - t),
            ModelState::Open(None) => Err(self.s.open_duration.as_millis() as u64),
            ModelState::HalfOpen if self.probes_out < self.s.half_open_probes => {
                self.probes_out += 1;
                Ok((self.episode, true))
            }
            ModelState::HalfOpen => Err(0),
        }
    }

    fn window(&self, t: u64) -> (u32, u32) {
        let now = t / self.bucket_ms;
        let live: Vec<_> = self
            .events
            .iter()
            .filter(|(b, _)| now - b < WINDOW_BUCKETS)
            .collect();
        (
            live.len() as u32,
            live.iter().filter(|(_, f)| *f).count() as u32,
        )
    }

    fn trip(&mut self, t: u64) {
        self.trips += 1;
        let base = self.s.open_duration.as_millis() as u64;
        let cap = self.s.max_open_duration.as_millis() as u64;
        let period = (0..self.trips - 1)
            .fold(base, |p, _| (p * 2).min(cap))
            .min(cap);
        self.enter(ModelState::Open(Some(t + period)));
        self.consecutive = 0;
        self.events.clear();
    }

    fn close(&mut self) {
        self.enter(ModelState::Closed);
        self.trips = 0;
        self.consecutive = 0;
        self.events.clear();
    }

    fn record(&mut self, ticket: (u64, bool), outcome: Option<bool>, t: u64) {
        if ticket.0 != self.episode {
            return;
        }
        match self.state {
            ModelState::Closed => {
                let Some(failed) = outcome else { return };
                self.consecutive = if failed { self.consecutive + 1 } else { 0 };
                self.events.push((t / self.bucket_ms, failed));
                let (requests, failures) = self.window(t);
                let by_count = self.s.consecutive_failures > 0
                    && self.consecutive >= self.s.consecutive_failures;
                let by_ratio = self.s.failure_ratio > 0.0
                    && requests >= self.s.min_requests
                    && f64::from(failures) >= self.s.failure_ratio * f64::from(requests);
                if failed && (by_count || by_ratio) {
                    self.trip(t);
                }
            }
            ModelState::HalfOpen => {
                assert!(ticket.1, "only probes are issued while half-open");
                self.probes_out -= 1;
                match outcome {
                    Some(false) => {
                        self.successes += 1;
                        if self.successes >= self.s.half_open_successes {
                            self.close();
                        }
                    }
                    Some(true) => self.trip(t),
                    None => {}
                }
            }
            ModelState::Open(_) => unreachable!("no ticket of an open episode exists"),
        }
    }

    fn health_ok(&mut self, t: u64) {
        self.tick(t);
        if self.state == ModelState::HalfOpen {
            self.successes += 1;
            if self.successes >= self.s.half_open_successes {
                self.close();
            }
        }
    }

    fn state_name(&mut self, t: u64) -> State {
        self.tick(t);
        match self.state {
            ModelState::Closed => State::Closed,
            ModelState::Open(_) => State::Open,
            ModelState::HalfOpen => State::HalfOpen,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Finish(usize, bool),
    Abandon(usize),
    Advance(u64),
    Health,
    ForceOpen,
    ForceClose,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Acquire),
        6 => (any::<usize>(), prop::bool::weighted(0.6)).prop_map(|(i, f)| Op::Finish(i, f)),
        1 => any::<usize>().prop_map(Op::Abandon),
        4 => prop_oneof![0u64..2_000, 0u64..400_000].prop_map(Op::Advance),
        1 => Just(Op::Health),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::ForceClose),
    ]
}

fn model_settings() -> impl Strategy<Value = Settings> {
    (
        0u32..5,
        prop_oneof![Just(0.0), Just(0.5), Just(0.25), Just(1.0)],
        1u64..=20,
        1u32..6,
        1u64..=30,
        1u64..=8,
        1u32..4,
        1u32..4,
    )
        .prop_filter("some trigger", |(cf, ratio, ..)| *cf > 0 || *ratio > 0.0)
        .prop_map(
            |(cf, ratio, window_tenths, min, open, cap_factor, probes, successes)| Settings {
                consecutive_failures: cf,
                failure_ratio: ratio,
                window: Duration::from_millis(window_tenths * 1000),
                min_requests: min,
                open_duration: Duration::from_secs(open),
                max_open_duration: Duration::from_secs(open * cap_factor),
                backoff_multiplier: 2.0,
                half_open_probes: probes,
                half_open_successes: successes,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_breaker_never_disagrees_with_the_model(
        s in model_settings(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let start = Instant::now();
        let mut machine = Machine::new(s.clone(), start);
        let mut model = Model::new(s.clone());
        let mut out = Vec::new();
        let mut t = 0u64;
        // Outstanding admissions: the machine's ticket next to the model's.
        let mut tickets: Vec<(Ticket, (u64, bool))> = Vec::new();
        for op in ops {
            let now = start + Duration::from_millis(t);
            match op {
                Op::Acquire => {
                    let before = machine.snapshot(now, &mut out);
                    let real = machine.acquire(now, &mut out);
                    // The two safety properties, explicitly: nothing passes an open circuit, and
                    // half-open never has more probes in flight than configured.
                    if before.state == State::Open {
                        prop_assert!(real.is_err(), "admitted while open");
                    }
                    if before.state == State::HalfOpen
                        && before.probes_in_flight == s.half_open_probes
                    {
                        prop_assert!(real.is_err(), "more probes than configured");
                    }
                    let spec = model.acquire(t);
                    match (real, spec) {
                        (Ok(ticket), Ok(m)) => {
                            prop_assert_eq!(ticket.is_probe(), m.1);
                            tickets.push((ticket, m));
                        }
                        (Err(r), Err(ms)) => {
                            prop_assert_eq!(r.retry_after, Duration::from_millis(ms));
                        }
                        (real, spec) => prop_assert!(false, "machine {:?} vs model {:?}", real, spec),
                    }
                }
                Op::Finish(..) | Op::Abandon(_) if tickets.is_empty() => {}
                Op::Finish(i, failed) => {
                    let (ticket, m) = tickets.remove(i % tickets.len());
                    let outcome = if failed { Outcome::Failure } else { Outcome::Success };
                    machine.record(ticket, Some(outcome), now, &mut out);
                    model.record(m, Some(failed), t);
                }
                Op::Abandon(i) => {
                    let (ticket, m) = tickets.remove(i % tickets.len());
                    machine.record(ticket, None, now, &mut out);
                    model.record(m, None, t);
                }
                Op::Advance(ms) => t += ms,
                Op::Health => {
                    machine.health_ok(now, &mut out);
                    model.health_ok(t);
                }
                Op::ForceOpen => {
                    machine.force_open(&mut out);
                    model.tick(t);
                    model.enter(ModelState::Open(None));
                }
                Op::ForceClose => {
                    machine.force_close(now, &mut out);
                    model.close();
                }
            }
            let now = start + Duration::from_millis(t);
            let snap = machine.snapshot(now, &mut out);
            prop_assert_eq!(snap.state, model.state_name(t));
            prop_assert_eq!(snap.trips, model.trips);
            prop_assert_eq!(snap.consecutive_failures, model.consecutive);
            prop_assert_eq!((snap.window_requests, snap.window_failures), model.window(t));
            prop_assert!(snap.probes_in_flight <= s.half_open_probes);
            prop_assert_eq!(snap.probes_in_flight, model.probes_out);
            if snap.state == State::HalfOpen {
                prop_assert_eq!(snap.probe_successes, model.successes);
            }
        }
        // Transitions always alternate consistently: each starts where the previous ended.
        for pair in out.windows(2) {
            prop_assert_eq!(pair[0].to, pair[1].from);
        }
    }
}
