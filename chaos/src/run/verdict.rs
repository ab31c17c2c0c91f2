//! The assertions judged on what a run recorded: the requests one by one ([`Sample`]), the
//! system over time ([`Observation`]), the jobs' ends and the sidecar's crashes. Each verdict
//! carries the measured value and what was expected, for the summary, the JSON report and JUnit.
//!
//! "The circuit is open" means some breaker showed `open` in `/breakers`, from the first look
//! that saw it to the first look that did not; a fault's windows are those that overlap it. Those
//! moments are known to within one look ([`OBSERVE_EVERY`]); the checks lean the safe way: the
//! requests judged fast or kept from the backend are the ones inside a window, less one look at
//! its end.

use std::time::Duration;

use serde::Serialize;

use super::jobs::JobEnd;
use super::observe::{BreakerMetrics, OBSERVE_EVERY, Observation};
use super::traffic::Sample;
use crate::scenario::{Assert, Check, Fault, FaultAction, Recovery, Scenario, SteadyState};

/// Requests in a row that must succeed for traffic to count as recovered: one success between
/// failures (a half-open probe) is not recovery.
const RECOVERED_RUN: usize = 10;

/// One assertion's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The assertion's name (its `name`, else its kind).
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its line in the scenario file (0: the steady state, which is not an `[[assert]]`).
    pub line: usize,
    /// Whether it held.
    pub passed: bool,
    /// What was measured.
    pub measured: String,
    /// What was required.
    pub expected: String,
}

/// What a run recorded, for the verdicts.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The requests, by when they were due.
    pub samples: Vec<Sample>,
    /// The probes signed with a key the JWKS lacks (`unknown_key_refused`).
    pub probes: Vec<Sample>,
    /// The system over time.
    pub observations: Vec<Observation>,
    /// The jobs' ends.
    pub jobs: Vec<JobEnd>,
    /// The sidecar's exits nobody asked for.
    pub crashes: Vec<String>,
    /// A managed sidecar was running at the end.
    pub alive_at_end: Option<bool>,
    /// The sidecar's breaker counters at the end (none: `/metrics` not readable).
    pub metrics: Option<BreakerMetrics>,
}

/// A window in which the circuit was seen open: `[from, to)` from the start of the run.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Duration,
    to: Duration,
    /// Requests that had reached the backend at the first and the last look inside it.
    backend: (Option<u64>, Option<u64>),
    /// The longest `open_remaining_ms` seen inside it.
    period_ms: u64,
}

/// The steady-state verdict over the samples due before `steady.duration`.
pub fn steady_state(steady: &SteadyState, samples: &[Sample]) -> Vec<Verdict> {
    let within: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start < steady.duration)
        .collect();
    let mut out = Vec::new();
    if let Some(min) = steady.min_success_rate {
        let rate = success_rate(&within);
        out.push(Verdict {
            name: "steady state: success rate".into(),
            kind: "steady_state".into(),
            line: 0,
            passed: !within.is_empty() && rate >= min,
            measured: format!("{:.4} of {} requests", rate, within.len()),
            expected: format!(">= {min}"),
        });
    }
    if let Some(max) = steady.max_p99 {
        let p99 = percentile(within.iter().map(|s| s.latency), 0.99);
        out.push(Verdict {
            name: "steady state: p99".into(),
            kind: "steady_state".into(),
            line: 0,
            passed: p99.is_some_and(|p| p < max),
            measured: p99.map_or_else(|| "no requests".into(), ms),
            expected: format!("< {}", ms(max)),
        });
    }
    out
}

/// The verdict of each of the scenario's assertions.
pub fn judge(scenario: &Scenario, record: &Record) -> Vec<Verdict> {
    let windows = windows(&record.observations);
    scenario
        .asserts
        .iter()
        .map(|a| one(scenario, a, record, &windows))
        .collect()
}

fn one(scenario: &Scenario, a: &Assert, record: &Record, windows: &[Window]) -> Verdict {
    let faults = |named: &Option<String>| -> Vec<&Fault> {
        match named {
            Some(n) => scenario.faults.iter().filter(|f| &f.name == n).collect(),
            None => scenario
                .faults
                .iter()
                .filter(|f| !matches!(f.action, FaultAction::KillSidecar { .. }))
                .collect(),
        }
    };
    let (passed, measured, expected) = match &a.check {
        Check::CircuitOpensWithin { requests, fault } => {
            let mut worst: Option<u64> = None;
            let mut never = Vec::new();
            for f in faults(fault) {
                match failures_before_open(f, &record.samples, windows) {
                    Some(n) => worst = Some(worst.map_or(n, |w| w.max(n))),
                    None => never.push(f.name.clone()),
                }
            }
            let mut measured = if never.is_empty() {
                format!("{} failed requests before it opened", worst.unwrap_or(0))
            } else {
                format!("never opened during fault(s) {}", never.join(", "))
            };
            // The sidecar's own counters must agree that it opened.
            let metrics_agree = match record.metrics {
                Some(m) => {
                    measured.push_str(&format!(
                        " (metrics: {} openings, {} fast rejections)",
                        m.opened, m.rejections
                    ));
                    !never.is_empty() || m.opened > 0
                }
                None => true,
            };
            (
                never.is_empty() && metrics_agree && worst.is_some_and(|w| w <= *requests),
                measured,
                format!("opens within {requests} failed requests"),
            )
        }
        Check::FastFail { p99, fault } => {
            let fast = open_samples(&faults(fault), &record.samples, windows);
            let got = percentile(fast.iter().map(|s| s.latency), 0.99);
            (
                got.is_some_and(|g| g < *p99),
                got.map_or_else(
                    || "no request was answered while the circuit was open".into(),
                    |g| format!("p99 {} over {} requests", ms(g), fast.len()),
                ),
                format!("p99 < {} while open", ms(*p99)),
            )
        }
        Check::NoBackendRequestsWhileOpen { fault } => {
            let mut reached = 0u64;
            let mut opened = 0usize;
            let mut unknown = false;
            for w in fault_windows(&faults(fault), windows) {
                opened += 1;
                match w.backend {
                    (Some(a), Some(b)) => reached += b.saturating_sub(a),
                    _ => unknown = true,
                }
            }
            let measured = if unknown {
                "the backend's requests could not be counted".to_owned()
            } else if opened == 0 {
                "the circuit never opened".to_owned()
            } else {
                format!("{reached} requests reached the backend in {opened} open window(s)")
            };
            (
                !unknown && opened > 0 && reached == 0,
                measured,
                "0 requests reach the backend while open".into(),
            )
        }
        Check::RecoversWithin { within, fault } => {
            let mut worst: Option<(Duration, Duration)> = None;
            let mut never = Vec::new();
            let mut passed = true;
            for f in faults(fault) {
                let allowed = match within {
                    Recovery::Within(d) => *d,
                    Recovery::OpenPeriodPlus(margin) => {
                        let period = fault_windows(&[f], windows)
                            .iter()
                            .map(|w| w.period_ms)
                            .max()
                            .unwrap_or(0);
                        Duration::from_millis(period) + *margin
                    }
                };
                match recovered_after(f, &record.samples) {
                    Some(took) => {
                        passed &= took <= allowed;
                        if worst.is_none_or(|(w, _)| took > w) {
                            worst = Some((took, allowed));
                        }
                    }
                    None => {
                        passed = false;
                        never.push(f.name.clone());
                    }
                }
            }
            let measured = match (never.is_empty(), worst) {
                (false, _) => format!("no recovery after fault(s) {}", never.join(", ")),
                (true, Some((took, _))) => format!("recovered {} after the fault ended", ms(took)),
                (true, None) => "no fault to recover from".into(),
            };
            let expected = match (within, worst) {
                (Recovery::Within(d), _) => format!("within {}", ms(*d)),
                (Recovery::OpenPeriodPlus(m), Some((_, allowed))) => {
                    format!("within {} (the open period plus {})", ms(allowed), ms(*m))
                }
                (Recovery::OpenPeriodPlus(m), None) => {
                    format!("within the open period plus {}", ms(*m))
                }
            };
            (passed && worst.is_some(), measured, expected)
        }
        Check::JobsAllTerminal => {
            let count = |end: &str| record.jobs.iter().filter(|j| j.end == end).count();
            let accepted = record.jobs.len() - count("not_accepted");
            let bad: Vec<String> = record
                .jobs
                .iter()
                .filter(|j| !matches!(j.end.as_str(), "completed" | "failed" | "not_accepted"))
                .map(|j| {
                    format!(
                        "job {} {}{}",
                        j.n,
                        j.end,
                        j.detail
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let measured = format!(
                "{accepted} accepted: {} completed, {} failed, {} bad{}; {} not accepted",
                count("completed"),
                count("failed"),
                bad.len(),
                if bad.is_empty() {
                    String::new()
                } else {
                    format!(
                        " [{}]",
                        bad.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                    )
                },
                count("not_accepted"),
            );
            (
                accepted > 0 && bad.is_empty(),
                measured,
                "every accepted job ends, completed ones with the backend's result".into(),
            )
        }
        Check::NoHangPastTimeout { margin } => {
            let bound = scenario.traffic.timeout;
            let hung = record
                .samples
                .iter()
                .filter(|s| s.class == "timeout")
                .count();
            let max = record.samples.iter().map(|s| s.latency).max();
            (
                hung == 0 && max.is_some_and(|m| m <= bound + *margin),
                format!(
                    "{hung} requests timed out; slowest {}",
                    max.map_or_else(|| "none".into(), ms)
                ),
                format!(
                    "every request answered within the client timeout {} (+{})",
                    ms(bound),
                    ms(*margin)
                ),
            )
        }
        Check::SidecarAlive => {
            let alive = record.alive_at_end == Some(true);
            let measured = match (record.crashes.is_empty(), alive) {
                (true, true) => "alive, never exited unasked".to_owned(),
                (true, false) => "not running at the end".to_owned(),
                (false, _) => format!("exited unasked: {}", record.crashes.join("; ")),
            };
            (
                alive && record.crashes.is_empty(),
                measured,
                "alive throughout and at the end".into(),
            )
        }
        Check::RssBelow { bytes } => {
            let max = record.observations.iter().filter_map(|o| o.rss).max();
            (
                max.is_some_and(|m| m < *bytes),
                max.map_or_else(
                    || "never measured".into(),
                    |m| format!("{} MiB at most", m / (1024 * 1024)),
                ),
                format!("< {} MiB", bytes / (1024 * 1024)),
            )
        }
        Check::StatusSeen {
            status,
            retry_after,
        } => {
            let seen: Vec<&Sample> = record
                .samples
                .iter()
                .filter(|s| s.status == Some(*status))
                .collect();
            let bad_retry = seen
                .iter()
                .filter(|s| !valid_retry_after(s.retry_after.as_deref()))
                .count();
            let measured = if *retry_after {
                format!(
                    "{} answers {status}, {bad_retry} without a valid Retry-After",
                    seen.len()
                )
            } else {
                format!("{} answers {status}", seen.len())
            };
            (
                !seen.is_empty() && (!retry_after || bad_retry == 0),
                measured,
                if *retry_after {
                    format!("at least one {status}, each with Retry-After: seconds >= 1")
                } else {
                    format!("at least one {status}")
                },
            )
        }
        Check::NoStatus { status } => {
            let seen = record
                .samples
                .iter()
                .filter(|s| s.status.is_some_and(|c| status.matches(c)))
                .count();
            let label = match status {
                crate::scenario::StatusPattern::Exact(c) => c.to_string(),
                crate::scenario::StatusPattern::Class(c) => format!("{c}xx"),
            };
            (
                seen == 0,
                format!("{seen} answers {label}"),
                format!("no {label}"),
            )
        }
        Check::SuccessRateDuring { min, fault } => {
            success_rate_during(*min, &faults(fault), record)
        }
        Check::OpenPeriodGrows { fault } => open_period_grows(&faults(fault), windows),
        Check::UnknownKeyRefused { status, fault } => {
            unknown_key_refused(*status, &faults(fault), record)
        }
    };
    Verdict {
        name: a.name.clone().unwrap_or_else(|| a.check.kind().to_owned()),
        kind: a.check.kind().to_owned(),
        line: a.line,
        passed,
        measured,
        expected,
    }
}

/// `success_rate_during`: the share of the requests due during `faults` that succeeded.
fn success_rate_during(min: f64, faults: &[&Fault], record: &Record) -> (bool, String, String) {
    let during = due_during(&record.samples, faults);
    let rate = success_rate(&during);
    (
        !during.is_empty() && rate >= min,
        format!(
            "{rate:.4} of {} requests due during the fault",
            during.len()
        ),
        format!(">= {min}"),
    )
}

/// `open_period_grows`: a later open window of `faults` longer than the first.
fn open_period_grows(faults: &[&Fault], windows: &[Window]) -> (bool, String, String) {
    let periods: Vec<u64> = fault_windows(faults, windows)
        .iter()
        .map(|w| w.period_ms)
        .collect();
    let grew = periods
        .first()
        .is_some_and(|first| periods.iter().any(|p| p > first));
    let list: Vec<String> = periods.iter().map(|p| format!("{p} ms")).collect();
    (
        grew,
        if list.is_empty() {
            "the circuit never opened".into()
        } else {
            format!("open periods {}", list.join(", "))
        },
        "a later open period longer than the first".into(),
    )
}

/// `unknown_key_refused`: every probe due during `faults` answered `status`.
fn unknown_key_refused(status: u16, faults: &[&Fault], record: &Record) -> (bool, String, String) {
    let during = due_during(&record.probes, faults);
    let wrong: Vec<&str> = during
        .iter()
        .filter(|s| s.status != Some(status))
        .map(|s| s.class.as_str())
        .collect();
    let slowest = during.iter().map(|s| s.latency).max();
    let others = if wrong.is_empty() {
        String::new()
    } else {
        format!(" (others: {})", wrong[..wrong.len().min(5)].join(", "))
    };
    (
        !during.is_empty() && wrong.is_empty(),
        format!(
            "{} of {} probes answered {status}{others}; slowest {}",
            during.len() - wrong.len(),
            during.len(),
            slowest.map_or_else(|| "none".into(), ms)
        ),
        format!("every probe signed with an unknown key answered {status}"),
    )
}

/// The samples due while one of `faults` was on.
fn due_during<'s>(samples: &'s [Sample], faults: &[&Fault]) -> Vec<&'s Sample> {
    samples
        .iter()
        .filter(|s| faults.iter().any(|f| s.start >= f.at && s.start < f.until))
        .collect()
}

/// The windows in which some breaker was seen open.
fn windows(observations: &[Observation]) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let mut current: Option<Window> = None;
    for o in observations {
        let period = o
            .breakers
            .iter()
            .filter(|b| b.state == "open")
            .filter_map(|b| b.open_remaining_ms)
            .max()
            .unwrap_or(0);
        match (&mut current, o.open()) {
            (None, true) => {
                current = Some(Window {
                    from: o.at,
                    to: o.at,
                    backend: (o.backend_requests, o.backend_requests),
                    period_ms: period,
                });
            }
            (Some(w), true) => {
                w.to = o.at;
                w.backend.1 = o.backend_requests;
                w.period_ms = w.period_ms.max(period);
            }
            (Some(w), false) => {
                w.to = o.at;
                out.push(*w);
                current = None;
            }
            (None, false) => {}
        }
    }
    out.extend(current);
    out
}

/// The windows that overlap one of `faults`.
fn fault_windows(faults: &[&Fault], windows: &[Window]) -> Vec<Window> {
    windows
        .iter()
        .filter(|w| faults.iter().any(|f| w.from < f.until && w.to > f.at))
        .copied()
        .collect()
}

/// Requests that failed (and were not refused by an open circuit) from the start of `f` until
/// the circuit opened; `None` if it never opened during `f`.
fn failures_before_open(f: &Fault, samples: &[Sample], windows: &[Window]) -> Option<u64> {
    let seen_open = windows
        .iter()
        .find(|w| w.from >= f.at && w.from < f.until)
        .map(|w| w.from);
    let first_refusal = samples
        .iter()
        .filter(|s| s.circuit_open && s.start >= f.at && s.start < f.until)
        .map(Sample::end)
        .min();
    let opened = match (seen_open, first_refusal) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(
        samples
            .iter()
            .filter(|s| s.start >= f.at && !s.ok() && !s.circuit_open && s.end() <= opened)
            .count() as u64,
    )
}

/// The requests due inside a window of `faults` (less one look at its end, when the circuit may
/// already have gone half-open).
fn open_samples<'a>(
    faults: &[&Fault],
    samples: &'a [Sample],
    windows: &[Window],
) -> Vec<&'a Sample> {
    let windows = fault_windows(faults, windows);
    samples
        .iter()
        .filter(|s| {
            windows
                .iter()
                .any(|w| s.start >= w.from && s.start + OBSERVE_EVERY < w.to)
        })
        .collect()
}

/// How long after `f` ended traffic succeeded again: the first request due after the end from
/// which [`RECOVERED_RUN`] requests in a row (or all that remain) succeeded.
fn recovered_after(f: &Fault, samples: &[Sample]) -> Option<Duration> {
    let mut after: Vec<&Sample> = samples.iter().filter(|s| s.start >= f.until).collect();
    after.sort_by_key(|s| s.start);
    (0..after.len()).find_map(|i| {
        let run = &after[i..after.len().min(i + RECOVERED_RUN)];
        run.iter()
            .all(|s| s.ok())
            .then(|| after[i].start.saturating_sub(f.until))
    })
}

/// A `Retry-After` a client can use: whole seconds, at least 1 (the sidecar never sends a date).
fn valid_retry_after(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().parse::<u64>().is_ok_and(|s| s >= 1))
}

fn success_rate(samples: &[&Sample]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = samples.iter().filter(|s| s.ok()).count() as f64 / samples.len() as f64;
    rate
}

/// The `q` quantile (nearest rank) of `values`.
pub fn percentile(values: impl Iterator<Item = Duration>, q: f64) -> Option<Duration> {
    let mut v: Vec<Duration> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// A duration in milliseconds, for people.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
