//! The circuit breaker's logic as a plain state machine: no locks, no clock of its own (every call
//! takes `now`), so tests and the model-based property test drive it with any time they like.
//!
//! ```text
//!            N consecutive failures, or failure ratio >= R over the window (>= M requests)
//!   Closed ─────────────────────────────────────────────────────────────────────────► Open
//!     ▲                                                                                │ open period
//!     │ S probe successes                     any probe failure: open again, longer    ▼ elapsed
//!     └──────────────────────────────────── HalfOpen ◄──────────────────────────────────┘
//!                                     (at most P probes in flight)
//! ```
//!
//! Every change of phase starts a new *generation*. A ticket remembers the generation it was issued
//! in, and its outcome only counts if the machine is still in that generation: a slow request
//! admitted while closed cannot reopen a half-open circuit, and a stale success cannot close it.
//! An abandoned ticket (outcome `None`) frees its probe slot without counting, so an abandoned
//! probe never wedges the circuit half-open.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

/// Buckets of the rolling window: the ratio forgets old calls in steps of a tenth of the window.
pub const WINDOW_BUCKETS: u64 = 10;

/// The tunables of one breaker (see `BreakerConfig` for their meaning and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Consecutive failures that trip; 0 = off.
    pub consecutive_failures: u32,
    /// Failure ratio that trips; 0 = off.
    pub failure_ratio: f64,
    /// Rolling window of the ratio.
    pub window: Duration,
    /// Requests the window needs before the ratio counts.
    pub min_requests: u32,
    /// First open period.
    pub open_duration: Duration,
    /// Cap of the open period.
    pub max_open_duration: Duration,
    /// Growth of the open period per consecutive trip.
    pub backoff_multiplier: f64,
    /// Probes in flight at once while half-open.
    pub half_open_probes: u32,
    /// Probe successes that close.
    pub half_open_successes: u32,
}

impl From<&BreakerConfig> for Settings {
    fn from(c: &BreakerConfig) -> Self {
        Self {
            consecutive_failures: c.consecutive_failures,
            failure_ratio: c.failure_ratio,
            window: c.window,
            min_requests: c.min_requests,
            open_duration: c.open_duration,
            max_open_duration: c.max_open_duration,
            backoff_multiplier: c.backoff_multiplier,
            half_open_probes: c.half_open_probes,
            half_open_successes: c.half_open_successes,
        }
    }
}

impl Settings {
    /// The open period after the `trips`-th consecutive trip (1-based).
    pub fn open_period(&self, trips: u32) -> Duration {
        let exponent = i32::try_from(trips.saturating_sub(1))
            .unwrap_or(i32::MAX)
            .min(1024);
        let secs = self.open_duration.as_secs_f64() * self.backoff_multiplier.powi(exponent);
        if !secs.is_finite() || secs >= self.max_open_duration.as_secs_f64() {
            self.max_open_duration
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// A breaker's phase as reported (metrics gauge value in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Traffic flows (0).
    Closed,
    /// Probing: a few requests flow (1).
    HalfOpen,
    /// Failing fast (2).
    Open,
}

impl State {
    /// Label and JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    /// Value of the `mcp_sidecar_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// How an admitted request ended, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered (any status not in the failure list).
    Success,
    /// Connect error, reset, timeout or a failure status.
    Failure,
}

/// Proof of admission: which generation, and whether it holds a half-open probe slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    probe: bool,
}

impl Ticket {
    /// Whether this admission is a half-open probe.
    pub fn is_probe(self) -> bool {
        self.probe
    }
}

/// The circuit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Time left until the circuit half-opens (zero while half-open and out of probe slots;
    /// unknown, so the base open period, while held open by an operator).
    pub retry_after: Duration,
}

/// A change of phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Phase before.
    pub from: State,
    /// Phase after.
    pub to: State,
}

/// A point-in-time view of a breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Current phase.
    pub state: State,
    /// Held open by an operator.
    pub forced: bool,
    /// Consecutive failures while closed.
    pub consecutive_failures: u32,
    /// Requests and failures in the rolling window while closed.
    pub window_requests: u32,
    /// Failures in the rolling window while closed.
    pub window_failures: u32,
    /// Consecutive trips without a close (drives the open period's growth).
    pub trips: u32,
    /// Time left open (None unless open and not forced).
    pub open_for: Option<Duration>,
    /// Probes in flight and successes so far while half-open.
    pub probes_in_flight: u32,
    /// Probe successes so far while half-open.
    pub probe_successes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed,
    /// `until: None` = held open by an operator until closed by one.
    Open {
        until: Option<Instant>,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    bucket: u64,
    requests: u32,
    failures: u32,
}

/// The breaker's logic, without locking or clocks: every call takes `now`.
#[derive(Debug, Clone)]
pub struct Machine {
    settings: Settings,
    origin: Instant,
    bucket_nanos: u128,
    phase: Phase,
    generation: u64,
    trips: u32,
    consecutive: u32,
    slots: [Slot; WINDOW_BUCKETS as usize],
}

impl Machine {
    /// A closed breaker; `now` is the epoch of its window buckets.
    pub fn new(settings: Settings, now: Instant) -> Self {
        let bucket_nanos = (settings.window.as_nanos() / u128::from(WINDOW_BUCKETS)).max(1);
        Self {
            settings,
            origin: now,
            bucket_nanos,
            phase: Phase::Closed,
            generation: 0,
            trips: 0,
            consecutive: 0,
            slots: [Slot::default(); WINDOW_BUCKETS as usize],
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Index of the window bucket `now` falls in.
    pub fn bucket(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos() / self.bucket_nanos;
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// Admits a request or says for how long the circuit stays open.
    pub fn acquire(&mut self, now: Instant, out: &mut Vec<Transition>) -> Result<Ticket, Rejected> {
        self.advance(now, out);
        match &mut self.phase {
            Phase::Closed => Ok(Ticket {
                generation: self.generation,
                probe: false,
            }),
            Phase::Open { until: Some(until) } => Err(Rejected {
                retry_after: until.saturating_duration_since(now),
            }),
            Phase::Open { until: None } => Err(Rejected {
                retry_after: self.settings.open_duration,
            }),
            Phase::HalfOpen { in_flight, .. } => {
                if *in_flight < self.settings.half_open_probes {
                    *in_flight += 1;
                    Ok(Ticket {
                        generation: self.generation,
                        probe: true,
                    })
                } else {
                    Err(Rejected {
                        retry_after: Duration::ZERO,
                    })
                }
            }
        }
    }

    /// Records how an admitted request ended; `None` = abandoned (counts neither way).
    pub fn record(
        &mut self,
        ticket: Ticket,
        outcome: Option<Outcome>,
        now: Instant,
        out: &mut Vec<Transition>,
    ) {
        if ticket.generation != self.generation {
            return;
        }
        match &mut self.phase {
            Phase::Closed => match outcome {
                Some(Outcome::Success) => {
                    self.consecutive = 0;
                    self.count(now, false);
                }
                Some(Outcome::Failure) => {
                    self.consecutive = self.consecutive.saturating_add(1);
                    self.count(now, true);
                    if self.should_trip(now) {
                        self.trip(now, out);
                    }
                }
                None => {}
            },
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                *in_flight = in_flight.saturating_sub(1);
                match outcome {
                    Some(Outcome::Success) => {
                        *successes += 1;
                        if *successes >= self.settings.half_open_successes {
                            self.close(now, out);
                        }
                    }
                    Some(Outcome::Failure) => self.trip(now, out),
                    None => {}
                }
            }
            // No ticket is ever issued in an open generation.
            Phase::Open { .. } => {}
        }
    }

    /// A passing active health check: counts as one probe success while half-open.
    pub fn health_ok(&mut self, now: Instant, out: &mut Vec<Transition>) {
        self.advance(now, out);
        if let Phase::HalfOpen { successes, .. } = &mut self.phase {
            *successes += 1;
            if *successes >= self.settings.half_open_successes {
                self.close(now, out);
            }
        }
    }

    /// Holds the circuit open until [`force_close`](Self::force_close).
    pub fn force_open(&mut self, out: &mut Vec<Transition>) {
        let from = self.state();
        self.phase = Phase::Open { until: None };
        self.generation += 1;
        if from != State::Open {
            out.push(Transition {
                from,
                to: State::Open,
            });
        }
    }

    /// Closes the circuit and forgets every failure and trip.
    pub fn force_close(&mut self, now: Instant, out: &mut Vec<Transition>) {
        self.close(now, out);
    }

    /// The phase as of `now` (an elapsed open period reads as half-open).
    pub fn snapshot(&mut self, now: Instant, out: &mut Vec<Transition>) -> Snapshot {
        self.advance(now, out);
        let (requests, failures) = self.window_totals(now);
        let (open_for, forced) = match self.phase {
            Phase::Open { until: Some(u) } => (Some(u.saturating_duration_since(now)), false),
            Phase::Open { until: None } => (None, true),
            _ => (None, false),
        };
        let (probes_in_flight, probe_successes) = match self.phase {
            Phase::HalfOpen {
                in_flight,
                successes,
            } => (in_flight, successes),
            _ => (0, 0),
        };
        Snapshot {
            state: self.state(),
            forced,
            consecutive_failures: self.consecutive,
            window_requests: requests,
            window_failures: failures,
            trips: self.trips,
            open_for,
            probes_in_flight,
            probe_successes,
        }
    }

    fn state(&self) -> State {
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Time-driven change: an elapsed open period becomes half-open.
    fn advance(&mut self, now: Instant, out: &mut Vec<Transition>) {
        if let Phase::Open { until: Some(until) } = self.phase
            && now >= until
        {
            self.phase = Phase::HalfOpen {
                in_flight: 0,
                successes: 0,
            };
            self.generation += 1;
            out.push(Transition {
                from: State::Open,
                to: State::HalfOpen,
            });
        }
    }

    fn should_trip(&self, now: Instant) -> bool {
        let s = &self.settings;
        if s.consecutive_failures > 0 && self.consecutive >= s.consecutive_failures {
            return true;
        }
        if s.failure_ratio > 0.0 {
            let (requests, failures) = self.window_totals(now);
            return requests >= s.min_requests
                && f64::from(failures) >= s.failure_ratio * f64::from(requests);
        }
        false
    }

    fn trip(&mut self, now: Instant, out: &mut Vec<Transition>) {
        let from = self.state();
        self.trips = self.trips.saturating_add(1);
        let period = self.settings.open_period(self.trips);
        self.phase = Phase::Open {
            until: Some(now + period),
        };
        self.generation += 1;
        self.reset_counts();
        out.push(Transition {
            from,
            to: State::Open,
        });
    }

    fn close(&mut self, _now: Instant, out: &mut Vec<Transition>) {
        let from = self.state();
        self.phase = Phase::Closed;
        self.generation += 1;
        self.trips = 0;
        self.reset_counts();
        if from != State::Closed {
            out.push(Transition {
                from,
                to: State::Closed,
            });
        }
    }

    fn reset_counts(&mut self) {
        self.consecutive = 0;
        self.slots = [Slot::default(); WINDOW_BUCKETS as usize];
    }

    fn count(&mut self, now: Instant, failure: bool) {
        let bucket = self.bucket(now);
        let slot = &mut self.slots[(bucket % WINDOW_BUCKETS) as usize];
        if slot.bucket != bucket {
            *slot = Slot {
                bucket,
                requests: 0,
                failures: 0,
            };
        }
        slot.requests = slot.requests.saturating_add(1);
        if failure {
            slot.failures = slot.failures.saturating_add(1);
        }
    }

    fn window_totals(&self, now: Instant) -> (u32, u32) {
        let bucket = self.bucket(now);
        self.slots
            .iter()
            .filter(|s| s.bucket <= bucket && bucket - s.bucket < WINDOW_BUCKETS)
            .fold((0u32, 0u32), |(r, f), s| {
                (r.saturating_add(s.requests), f.saturating_add(s.failures))
            })
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "machine_model_tests.rs"]
mod model_tests;
