use std::time::Duration;

use super::*;
use crate::run::observe::BreakerView;
use crate::scenario::{Link, Load, Request, StatusPattern, SteadyState, System, Traffic};

fn s(ms_at: u64, latency_ms: u64, class: &str) -> Sample {
    Sample {
        start: Duration::from_millis(ms_at),
        latency: Duration::from_millis(latency_ms),
        class: class.into(),
        status: class.strip_prefix("http_").and_then(|c| c.parse().ok()),
        retry_after: None,
        circuit_open: false,
    }
}

fn refused(ms_at: u64) -> Sample {
    Sample {
        retry_after: Some("5".into()),
        circuit_open: true,
        ..s(ms_at, 1, "http_503")
    }
}

fn look(ms_at: u64, state: &str, backend: u64) -> Observation {
    Observation {
        at: Duration::from_millis(ms_at),
        breakers: vec![BreakerView {
            id: "backend".into(),
            state: state.into(),
            trips: 1,
            open_remaining_ms: (state == "open").then_some(5000),
        }],
        backend_requests: Some(backend),
        rss: Some(20 << 20),
        alive: Some(true),
    }
}

fn fault(at: u64, until: u64) -> Fault {
    Fault {
        name: "down".into(),
        at: Duration::from_millis(at),
        until: Duration::from_millis(until),
        action: FaultAction::ProxyDown,
        link: Link::Backend,
        line: 10,
    }
}

fn scenario(asserts: Vec<Check>) -> Scenario {
    Scenario {
        name: "t".into(),
        description: "d".into(),
        seed: Some(1),
        system: System::External {
            target_url: "http://127.0.0.1:1/mcp".into(),
            admin_url: None,
            backend_stats_url: None,
        },
        traffic: Traffic {
            load: Load::Rate(10.0),
            request: Request::Method("ping".into()),
            sessions: 1,
            timeout: Duration::from_secs(5),
            duration: Duration::from_secs(20),
            jobs: 0,
            job_call: None,
        },
        steady_state: SteadyState {
            duration: Duration::from_secs(1),
            min_success_rate: Some(0.99),
            max_p99: None,
        },
        faults: vec![fault(2000, 4000)],
        asserts: asserts
            .into_iter()
            .enumerate()
            .map(|(i, check)| Assert {
                name: None,
                check,
                line: 20 + i,
            })
            .collect(),
    }
}

/// A run where the backend is down from 2 s to 4 s: three failures, then the circuit is open
/// (refusals) until 6 s, then success again.
fn breaker_run() -> Record {
    let mut samples = vec![s(1000, 5, "ok"), s(1500, 5, "ok")];
    samples.extend([
        s(2000, 3, "http_502"),
        s(2100, 3, "http_502"),
        s(2200, 3, "http_502"),
    ]);
    samples.extend((0..30).map(|i| refused(2300 + i * 100)));
    samples.extend((0..20).map(|i| s(6100 + i * 100, 5, "ok")));
    let mut observations = vec![look(1000, "closed", 10), look(2000, "closed", 10)];
    observations.extend((0..38).map(|i| look(2250 + i * 100, "open", 13)));
    observations.push(look(6100, "closed", 14));
    Record {
        samples,
        observations,
        alive_at_end: Some(true),
        ..Record::default()
    }
}

fn verdicts(checks: Vec<Check>, record: &Record) -> Vec<Verdict> {
    judge(&scenario(checks), record)
}

#[test]
fn circuit_opens_within_counts_the_failures_before_the_first_refusal() {
    let record = breaker_run();
    let v = verdicts(
        vec![
            Check::CircuitOpensWithin {
                requests: 3,
                fault: None,
            },
            Check::CircuitOpensWithin {
                requests: 2,
                fault: None,
            },
        ],
        &record,
    );
    assert!(v[0].passed, "{v:?}");
    assert_eq!(v[0].measured, "3 failed requests before it opened");
    assert!(!v[1].passed);
}

#[test]
fn a_circuit_that_never_opens_fails_naming_the_fault() {
    let mut record = breaker_run();
    record
        .observations
        .iter_mut()
        .for_each(|o| o.breakers[0].state = "closed".into());
    record
        .samples
        .iter_mut()
        .for_each(|s| s.circuit_open = false);
    let v = verdicts(
        vec![Check::CircuitOpensWithin {
            requests: 10,
            fault: None,
        }],
        &record,
    );
    assert!(!v[0].passed);
    assert_eq!(v[0].measured, "never opened during fault(s) down");
}

#[test]
fn fast_fail_judges_only_requests_due_while_open() {
    let mut record = breaker_run();
    let v = verdicts(
        vec![Check::FastFail {
            p99: Duration::from_millis(2),
            fault: None,
        }],
        &record,
    );
    assert!(v[0].passed, "{v:?}");
    // One slow answer inside the window is enough to fail a p99 over 30 requests.
    record.samples[10].latency = Duration::from_millis(900);
    let v = verdicts(
        vec![Check::FastFail {
            p99: Duration::from_millis(2),
            fault: None,
        }],
        &record,
    );
    assert!(!v[0].passed, "{v:?}");
}

#[test]
fn backend_requests_inside_an_open_window_fail_the_check() {
    let mut record = breaker_run();
    let v = verdicts(
        vec![Check::NoBackendRequestsWhileOpen { fault: None }],
        &record,
    );
    assert!(v[0].passed, "{v:?}");
    record.observations[20].backend_requests = Some(15);
    record.observations[21..]
        .iter_mut()
        .for_each(|o| o.backend_requests = Some(15));
    let v = verdicts(
        vec![Check::NoBackendRequestsWhileOpen { fault: None }],
        &record,
    );
    assert!(!v[0].passed);
    assert!(
        v[0].measured.starts_with("2 requests reached the backend"),
        "{v:?}"
    );
}

#[test]
fn recovery_is_timed_from_the_fault_end_to_a_run_of_successes() {
    let record = breaker_run();
    let v = verdicts(
        vec![
            Check::RecoversWithin {
                within: Recovery::OpenPeriodPlus(Duration::from_millis(500)),
                fault: None,
            },
            Check::RecoversWithin {
                within: Recovery::Within(Duration::from_secs(1)),
                fault: None,
            },
        ],
        &record,
    );
    // Success returns at 6.1 s, 2.1 s after the fault ended; the open period seen is 5 s.
    assert!(v[0].passed, "{v:?}");
    assert_eq!(v[0].measured, "recovered 2100.0 ms after the fault ended");
    assert!(!v[1].passed);
}

#[test]
fn one_success_between_failures_is_not_recovery() {
    let mut record = breaker_run();
    record.samples.truncate(35);
    record.samples.push(s(6100, 5, "ok"));
    record.samples.push(s(6200, 5, "http_503"));
    let v = verdicts(
        vec![Check::RecoversWithin {
            within: Recovery::Within(Duration::from_secs(10)),
            fault: None,
        }],
        &record,
    );
    assert!(!v[0].passed);
    assert_eq!(v[0].measured, "no recovery after fault(s) down");
}

#[test]
fn a_client_timeout_is_a_hang() {
    let mut record = breaker_run();
    let check = || {
        vec![Check::NoHangPastTimeout {
            margin: Duration::from_secs(1),
        }]
    };
    assert!(verdicts(check(), &record)[0].passed);
    record.samples.push(s(3000, 5000, "timeout"));
    let v = verdicts(check(), &record);
    assert!(!v[0].passed);
    assert!(v[0].measured.starts_with("1 requests timed out"), "{v:?}");
}

#[test]
fn status_seen_with_retry_after_needs_whole_seconds_of_at_least_one() {
    let mut record = breaker_run();
    let check = || {
        vec![Check::StatusSeen {
            status: 503,
            retry_after: true,
        }]
    };
    assert!(verdicts(check(), &record)[0].passed);
    record.samples[5].retry_after = Some("0".into());
    assert!(!verdicts(check(), &record)[0].passed);
    record.samples[5].retry_after = None;
    assert!(!verdicts(check(), &record)[0].passed);
}

#[test]
fn no_status_counts_a_class() {
    let record = breaker_run();
    let v = verdicts(
        vec![
            Check::NoStatus {
                status: StatusPattern::Class(5),
            },
            Check::NoStatus {
                status: StatusPattern::Exact(429),
            },
        ],
        &record,
    );
    assert!(!v[0].passed);
    assert_eq!(v[0].measured, "33 answers 5xx");
    assert!(v[1].passed);
}

#[test]
fn a_crash_fails_sidecar_alive_even_when_it_runs_at_the_end() {
    let mut record = breaker_run();
    assert!(verdicts(vec![Check::SidecarAlive], &record)[0].passed);
    record.crashes.push("signal: 11 (SIGSEGV)".into());
    let v = verdicts(vec![Check::SidecarAlive], &record);
    assert!(!v[0].passed);
    assert!(v[0].measured.contains("SIGSEGV"));
}

#[test]
fn steady_state_fails_without_requests_or_below_the_rate() {
    let steady = SteadyState {
        duration: Duration::from_secs(1),
        min_success_rate: Some(0.9),
        max_p99: Some(Duration::from_millis(10)),
    };
    let none = steady_state(&steady, &[]);
    assert!(none.iter().all(|v| !v.passed));
    let good: Vec<Sample> = (0..10).map(|i| s(i * 50, 2, "ok")).collect();
    assert!(steady_state(&steady, &good).iter().all(|v| v.passed));
    let mut bad = good;
    bad[0].class = "connect".into();
    bad[1].class = "connect".into();
    let v = steady_state(&steady, &bad);
    assert!(!v[0].passed && v[1].passed);
}

#[test]
fn percentile_is_nearest_rank() {
    let values = (1..=100).map(Duration::from_millis);
    assert_eq!(
        percentile(values.clone(), 0.99),
        Some(Duration::from_millis(99))
    );
    assert_eq!(percentile(values, 0.5), Some(Duration::from_millis(50)));
    assert_eq!(percentile(std::iter::empty(), 0.5), None);
}

#[test]
fn success_rate_during_counts_only_requests_due_inside_the_fault() {
    let record = breaker_run();
    // Inside 2 s..4 s: three 502s and the refusals due before 4 s.
    let v = verdicts(
        vec![
            Check::SuccessRateDuring {
                min: 0.0,
                fault: None,
            },
            Check::SuccessRateDuring {
                min: 0.5,
                fault: None,
            },
        ],
        &record,
    );
    assert!(v[0].passed, "{v:?}");
    assert_eq!(v[0].measured, "0.0000 of 20 requests due during the fault");
    assert!(!v[1].passed);
}

#[test]
fn open_period_grows_needs_a_later_longer_period() {
    let mut record = breaker_run();
    let check = || vec![Check::OpenPeriodGrows { fault: None }];
    // One window of 5 s: nothing grew.
    let v = verdicts(check(), &record);
    assert!(!v[0].passed);
    assert_eq!(v[0].measured, "open periods 5000 ms");
    // Half-open at 3.5 s, then open again for 10 s.
    record.observations[12].breakers[0].state = "half_open".into();
    for o in &mut record.observations[13..38] {
        o.breakers[0].open_remaining_ms = Some(10_000);
    }
    let v = verdicts(check(), &record);
    assert!(v[0].passed, "{v:?}");
    assert_eq!(v[0].measured, "open periods 5000 ms, 10000 ms");
}

#[test]
fn unknown_key_refused_wants_every_probe_in_the_fault_refused_with_the_status() {
    let mut record = breaker_run();
    let check = || {
        vec![Check::UnknownKeyRefused {
            status: 401,
            fault: None,
        }]
    };
    assert!(
        !verdicts(check(), &record)[0].passed,
        "no probes is no proof"
    );
    record.probes = (0..8).map(|i| s(2000 + i * 250, 3, "http_401")).collect();
    let v = verdicts(check(), &record);
    assert!(v[0].passed, "{v:?}");
    record.probes[3] = s(2750, 5000, "timeout");
    let v = verdicts(check(), &record);
    assert!(!v[0].passed);
    assert!(
        v[0].measured
            .starts_with("7 of 8 probes answered 401 (others: timeout)"),
        "{v:?}"
    );
}

#[test]
fn a_lost_job_fails_jobs_all_terminal_and_an_unaccepted_one_does_not() {
    let mut record = breaker_run();
    let job = |n: u64, end: &str| JobEnd {
        n,
        submitted_s: 1.0,
        end: end.into(),
        detail: None,
    };
    record.jobs = vec![
        job(1, "completed"),
        job(2, "failed"),
        job(3, "not_accepted"),
    ];
    assert!(verdicts(vec![Check::JobsAllTerminal], &record)[0].passed);
    record.jobs.push(job(4, "lost"));
    let v = verdicts(vec![Check::JobsAllTerminal], &record);
    assert!(!v[0].passed);
    assert!(v[0].measured.contains("[job 4 lost]"), "{v:?}");
    record.jobs[3] = job(4, "wrong_result");
    assert!(!verdicts(vec![Check::JobsAllTerminal], &record)[0].passed);
}

#[test]
fn breaker_metrics_are_summed_from_the_text_format() {
    let text = "# TYPE mcp_sidecar_breaker_transitions_total counter
mcp_sidecar_breaker_transitions_total{upstream=\"backend\",tool=\"\",from=\"closed\",to=\"open\"} 2
mcp_sidecar_breaker_transitions_total{upstream=\"backend\",tool=\"\",from=\"half_open\",to=\"open\"} 1
mcp_sidecar_breaker_transitions_total{upstream=\"backend\",tool=\"\",from=\"open\",to=\"half_open\"} 3
mcp_sidecar_breaker_rejections_total{upstream=\"backend\",tool=\"\"} 750
mcp_sidecar_breaker_rejections_totally_else 9
";
    let m = crate::run::observe::parse_breaker_metrics(text);
    assert_eq!(
        m,
        BreakerMetrics {
            opened: 3,
            rejections: 750
        }
    );
}

#[test]
fn circuit_opens_within_fails_when_the_metrics_saw_no_opening() {
    let mut record = breaker_run();
    record.metrics = Some(BreakerMetrics {
        opened: 0,
        rejections: 0,
    });
    let v = verdicts(
        vec![Check::CircuitOpensWithin {
            requests: 10,
            fault: None,
        }],
        &record,
    );
    assert!(!v[0].passed, "{v:?}");
    assert!(
        v[0].measured
            .ends_with("(metrics: 0 openings, 0 fast rejections)"),
        "{v:?}"
    );
    record.metrics = Some(BreakerMetrics {
        opened: 1,
        rejections: 30,
    });
    assert!(
        verdicts(
            vec![Check::CircuitOpensWithin {
                requests: 10,
                fault: None
            }],
            &record
        )[0]
        .passed
    );
}
