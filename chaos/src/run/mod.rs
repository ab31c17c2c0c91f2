//! `mcp-chaos run`: executes scenarios. For each: set up the system under test ([`system`]);
//! send the traffic from the start ([`traffic`]) and watch the system ([`observe`]); check the
//! steady state before anything breaks (a system that is not healthy to begin with proves
//! nothing, so the faults are then not injected); put each fault on and off on its timeline;
//! submit and follow the jobs ([`jobs`]); remove every fault at the end, whatever happened; judge
//! the assertions ([`verdict`]) and report ([`report`]).
//!
//! Layers (imports point down): this module → `system`, `traffic`, `jobs`, `observe` →
//! `sidecar`, `admin`; `verdict` → `report`.

mod admin;
pub mod jobs;
mod jwks;
pub mod observe;
pub mod report;
mod sidecar;
pub mod system;
pub mod traffic;
pub mod verdict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::HeaderMap;
use mcp_loadtest::client::Target;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scenario::{Check, Fault, FaultAction, Scenario};
use observe::Observation;
use report::{Event, ScenarioReport, TrafficSummary};
use system::Sut;
use traffic::Sessions;
use verdict::{Record, Verdict};

pub use sidecar::find_binary;

/// Connections the traffic may keep open to the target: enough for the scenarios' rates with
/// answers as slow as their timeouts allow (50/s × 5 s) to reuse connections.
const TRAFFIC_CONNECTIONS: usize = 256;
/// After the steady state's last request was due, how long its answers are waited for before
/// it is judged: a healthy system answers well within this.
const STEADY_GRACE: Duration = Duration::from_millis(500);

/// Why a scenario could not be run (not an assertion that failed).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Something the run needs could not be set up.
    #[error("{0}")]
    Setup(String),
    /// The sidecar under test could not be started, killed or restarted.
    #[error("sidecar: {0}")]
    Sidecar(String),
    /// Ctrl-C cut the run short.
    #[error("interrupted (Ctrl-C): the assertions were not judged")]
    Interrupted,
    /// A fault could not be put on or taken off.
    #[error("fault `{0}`: {1}")]
    Fault(String, String),
}

/// How scenarios are run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `mcp-sidecar` binary for managed scenarios.
    pub sidecar_bin: PathBuf,
    /// Overrides every scenario's seed.
    pub seed: Option<u64>,
}

/// Runs `scenario` (read from `file`); `cancel` (Ctrl-C) cuts it short, faults removed and the
/// sidecar stopped all the same.
pub async fn run(
    scenario: &Scenario,
    file: &Path,
    options: &Options,
    cancel: &CancellationToken,
) -> ScenarioReport {
    let seed = options
        .seed
        .or(scenario.seed)
        .unwrap_or_else(crate::rng::clock_seed);
    let started = std::time::Instant::now();
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        file: file.display().to_string(),
        description: scenario.description.clone(),
        seed,
        passed: false,
        error: None,
        duration_s: 0.0,
        traffic: TrafficSummary::default(),
        timeline: Vec::new(),
        verdicts: Vec::new(),
        jobs: Vec::new(),
        sidecar_log_tail: None,
    };
    let sut = match Sut::start(&scenario.system, &options.sidecar_bin, seed).await {
        Ok(sut) => sut,
        Err(e) => {
            report.error = Some(e.to_string());
            report.duration_s = started.elapsed().as_secs_f64();
            return report;
        }
    };
    let outcome = execute(scenario, &sut, cancel, &mut report).await;
    let interrupted = matches!(outcome, Err(RunError::Interrupted));
    if let Err(e) = outcome {
        report.error = Some(e.to_string());
    }
    report.passed = report.error.is_none() && report.verdicts.iter().all(|v| v.passed);
    if !report.passed
        && !interrupted
        && let Some(m) = &sut.managed
    {
        report.sidecar_log_tail = Some(m.sidecar.lock().await.log_tail());
    }
    sut.shutdown().await;
    report.duration_s = started.elapsed().as_secs_f64();
    report
}

/// The run proper, on a system that is up.
async fn execute(
    scenario: &Scenario,
    sut: &Sut,
    cancel: &CancellationToken,
    report: &mut ScenarioReport,
) -> Result<(), RunError> {
    let traffic_spec = &scenario.traffic;
    let target = client(sut, sut.bearer.as_deref(), traffic_spec.timeout)?;
    let sessions = Sessions::open(&target, traffic_spec.sessions).await?;
    let workload = Arc::new(traffic::workload(&traffic_spec.request)?);
    let job_workload = match &traffic_spec.job_call {
        Some(call) => traffic::workload(&crate::scenario::Request::Call(call.clone()))?,
        None => traffic::workload(&traffic_spec.request)?,
    };
    let samples: traffic::Samples = Arc::default();
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let stop_watch = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let mut timeline = vec![Event {
        at_s: 0.0,
        what: format!(
            "traffic starts: {} for {}",
            match traffic_spec.load {
                crate::scenario::Load::Rate(r) => format!("{r} requests/s"),
                crate::scenario::Load::Concurrency(c) => format!("{c} in flight"),
            },
            humantime::format_duration(traffic_spec.duration)
        ),
    }];

    let sender = traffic::send(
        traffic_spec,
        Arc::clone(&sessions),
        Arc::clone(&workload),
        origin,
        Arc::clone(&samples),
        Arc::clone(&stop_traffic),
    );
    let watcher = observe::watch(sut, origin, Arc::clone(&stop_watch));
    let submitter = async {
        if traffic_spec.jobs == 0 {
            return Vec::new();
        }
        jobs::submit(
            &target,
            &sessions,
            &job_workload,
            traffic_spec.jobs,
            origin,
            traffic_spec.duration / 2,
            &stop_traffic,
        )
        .await
    };
    let wants_probes = scenario
        .asserts
        .iter()
        .any(|a| matches!(a.check, Check::UnknownKeyRefused { .. }));
    let probes: traffic::Samples = Arc::default();
    let prober = async {
        if !wants_probes {
            return Ok(());
        }
        let probe_target = client(
            sut,
            Some(&jwks::unknown_key_bearer()?),
            traffic_spec.timeout,
        )?;
        traffic::probe(
            &probe_target,
            &workload,
            origin,
            traffic_spec.duration,
            Arc::clone(&probes),
            Arc::clone(&stop_traffic),
        )
        .await;
        Ok::<(), RunError>(())
    };
    let conductor = async {
        let result = conduct(scenario, sut, &samples, origin, cancel, &mut timeline).await;
        // Whatever happened: every fault off, the sidecar running, the traffic stopped when
        // the run was cut short.
        let cleanup = remove_all(sut).await;
        let steady_held = result
            .as_ref()
            .is_ok_and(|steady| steady.iter().all(|v| v.passed));
        if !steady_held || cancel.is_cancelled() {
            stop_traffic.store(true, Ordering::Release);
        }
        if cancel.is_cancelled() {
            timeline.push(Event {
                at_s: report::at(origin.elapsed()),
                what: "interrupted: every fault removed, traffic stopped".into(),
            });
        }
        match (result, cleanup) {
            (Ok(steady), Ok(())) => Ok(steady),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    };
    let sent_and_submitted = async {
        let ((), submitted, probed) = tokio::join!(sender, submitter, prober);
        (submitted, probed)
    };
    let watched = async {
        let (submitted, conducted) = tokio::join!(sent_and_submitted, conductor);
        stop_watch.store(true, Ordering::Release);
        (submitted, conducted)
    };
    let (((submitted, probed), conducted), observations) = tokio::join!(watched, watcher);
    probed?;
    let steady = conducted?;
    let steady_failed = steady.is_empty() || !steady.iter().all(|v| v.passed);
    if steady.is_empty() {
        // Cut short before the steady state was judged.
        return Err(RunError::Interrupted);
    }
    timeline.push(Event {
        at_s: report::at(origin.elapsed()),
        what: "traffic ends".into(),
    });
    let samples = traffic::snapshot(&samples);

    // The jobs, followed after the run (the system is whole again).
    let mut job_ends = Vec::new();
    if !submitted.is_empty() && !steady_failed && !cancel.is_cancelled() {
        let expected = expected_results(sut, &job_workload, &submitted).await;
        let deadline = Instant::now() + traffic_spec.timeout;
        job_ends = jobs::follow(&target, &submitted, &expected, deadline).await;
        timeline.push(Event {
            at_s: report::at(origin.elapsed()),
            what: format!("{} jobs followed to their end", job_ends.len()),
        });
    }
    sessions.close().await;

    let (crashes, alive_at_end) = match &sut.managed {
        Some(m) => {
            let mut sidecar = m.sidecar.lock().await;
            let alive = sidecar.alive();
            (sidecar.crashes().to_vec(), Some(alive))
        }
        None => (Vec::new(), None),
    };
    let metrics = observe::breaker_metrics(sut).await;
    timeline.extend(breaker_events(&observations));
    timeline.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let record = Record {
        probes: traffic::snapshot(&probes),
        samples,
        observations,
        jobs: job_ends,
        crashes,
        alive_at_end,
        metrics,
    };
    report.traffic = TrafficSummary::of(&record.samples);
    report.timeline = timeline;
    report.verdicts = steady;
    if cancel.is_cancelled() {
        // A run cut short proves nothing either way: its assertions are not judged.
        report.jobs = record.jobs;
        return Err(RunError::Interrupted);
    }
    if !steady_failed {
        report.verdicts.extend(verdict::judge(scenario, &record));
    }
    report.jobs = record.jobs;
    Ok(())
}

/// A client of the system's MCP URL, with `bearer` as its `Authorization`.
fn client(sut: &Sut, bearer: Option<&str>, timeout: Duration) -> Result<Target, RunError> {
    let mut headers = HeaderMap::new();
    if let Some(bearer) = bearer {
        let value = http::HeaderValue::from_str(bearer)
            .map_err(|e| RunError::Setup(format!("Authorization: {e}")))?;
        headers.insert(http::header::AUTHORIZATION, value);
    }
    Target::new(&sut.target_url, TRAFFIC_CONNECTIONS, headers, None, timeout)
        .map_err(|e| RunError::Setup(format!("target {}: {e:#}", sut.target_url)))
}

/// The timeline: the steady state judged at its end, then each fault on and off. Returns the
/// steady state's verdicts; when it failed, no fault is injected and the traffic is stopped.
async fn conduct(
    scenario: &Scenario,
    sut: &Sut,
    samples: &traffic::Samples,
    origin: Instant,
    cancel: &CancellationToken,
    timeline: &mut Vec<Event>,
) -> Result<Vec<Verdict>, RunError> {
    let steady = &scenario.steady_state;
    if !wait_until(origin + steady.duration + STEADY_GRACE, cancel).await {
        return Ok(Vec::new());
    }
    let verdicts = verdict::steady_state(steady, &traffic::snapshot(samples));
    let held = verdicts.iter().all(|v| v.passed);
    timeline.push(Event {
        at_s: report::at(origin.elapsed()),
        what: if held {
            "steady state holds".into()
        } else {
            "steady state does NOT hold: no fault is injected".into()
        },
    });
    if !held {
        return Ok(verdicts);
    }
    // Every fault's start and end, in time order (an end before a start at the same moment).
    let mut steps: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, f) in scenario.faults.iter().enumerate() {
        steps.push((f.at, true, i));
        steps.push((f.until, false, i));
    }
    steps.sort_by_key(|&(at, on, _)| (at, on));
    for (at, on, i) in steps {
        if !wait_until(origin + at, cancel).await {
            break;
        }
        let fault = &scenario.faults[i];
        let what = switch(sut, fault, on)
            .await
            .map_err(|e| RunError::Fault(fault.name.clone(), e))?;
        timeline.push(Event {
            at_s: report::at(origin.elapsed()),
            what: format!(
                "fault `{}` {}: {what}",
                fault.name,
                if on { "on" } else { "off" }
            ),
        });
    }
    wait_until(origin + scenario.traffic.duration, cancel).await;
    Ok(verdicts)
}

/// Sleeps until `when`; false when cancelled first.
async fn wait_until(when: Instant, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep_until(when) => true,
        () = cancel.cancelled() => false,
    }
}

/// Puts a fault on (`on`) or takes it off; what was done, for the timeline.
async fn switch(sut: &Sut, fault: &Fault, on: bool) -> Result<String, String> {
    let m = sut
        .managed
        .as_ref()
        .ok_or_else(|| "needs a managed system".to_owned())?;
    let name = fault.link.as_str();
    let link = || {
        sut.link(fault.link)
            .ok_or_else(|| format!("no {name} link in this system"))
    };
    let text = |e: &dyn std::fmt::Display| e.to_string();
    match (&fault.action, on) {
        (FaultAction::Toxic(t), true) => {
            link()?.add_toxic(t.clone()).map_err(|e| text(&e))?;
            Ok(format!("toxic {} on the {name} link", t.kind.type_name()))
        }
        (FaultAction::Toxic(t), false) => {
            link()?.remove_toxic(&t.name).map_err(|e| text(&e))?;
            Ok("toxic removed".into())
        }
        (FaultAction::ProxyDown, on) => {
            link()?.set_enabled(!on).await.map_err(|e| text(&e))?;
            Ok(if on {
                format!("{name} link down (connections refused)")
            } else {
                format!("{name} link up")
            })
        }
        (FaultAction::Http(f), true) => {
            m.http.add_fault(f.clone()).map_err(|e| text(&e))?;
            Ok(format!("HTTP fault, {}% of matching requests", f.percent))
        }
        (FaultAction::Http(f), false) => {
            m.http.remove_fault(&f.name);
            Ok("HTTP fault removed".into())
        }
        (FaultAction::KillSidecar { signal }, true) => {
            let mut sidecar = m.sidecar.lock().await;
            sidecar.kill(*signal).await.map_err(|e| text(&e))?;
            Ok(format!("sidecar killed ({signal:?})"))
        }
        (FaultAction::KillSidecar { .. }, false) => {
            let mut sidecar = m.sidecar.lock().await;
            sidecar.start().await.map_err(|e| text(&e))?;
            Ok("sidecar restarted and ready".into())
        }
    }
}

/// Every fault off and the sidecar running, at the end of a run whatever happened.
async fn remove_all(sut: &Sut) -> Result<(), RunError> {
    let Some(m) = &sut.managed else {
        return Ok(());
    };
    m.http.clear();
    for link in [Some(&m.tcp), m.jwks.as_ref().map(|(_, link)| link)]
        .into_iter()
        .flatten()
    {
        link.reset()
            .await
            .map_err(|e| RunError::Fault("(all)".into(), e.to_string()))?;
    }
    let mut sidecar = m.sidecar.lock().await;
    if !sidecar.alive() && sidecar.crashes().is_empty() {
        // Killed by the timeline and not yet restarted (the run was cut short).
        sidecar.start().await?;
    }
    Ok(())
}

/// Each job's result straight from the fixture backend (a managed system only).
async fn expected_results(
    sut: &Sut,
    workload: &mcp_loadtest::workload::Workload,
    submitted: &[jobs::Submitted],
) -> BTreeMap<u64, serde_json::Value> {
    let mut out = BTreeMap::new();
    let Some(m) = &sut.managed else {
        return out;
    };
    let Ok(direct) = Target::new(
        &m.fixture.mcp_url(),
        submitted.len().max(1),
        HeaderMap::new(),
        None,
        Duration::from_secs(60),
    ) else {
        return out;
    };
    let Ok(session) = direct.open().await else {
        return out;
    };
    let mut calls = tokio::task::JoinSet::new();
    for job in submitted.iter().filter(|j| j.accepted.is_ok()) {
        let (id, body) = workload.request(job.n);
        let (direct, session, n) = (direct.clone(), session.clone(), job.n);
        calls.spawn(async move {
            let observed = direct.call_observed(&session, &id, body).await;
            (n, observed.message.and_then(|m| m.get("result").cloned()))
        });
    }
    while let Some(done) = calls.join_next().await {
        if let Ok((n, Some(result))) = done {
            out.insert(n, result);
        }
    }
    direct.close(&session).await;
    out
}

/// The breakers' state changes, for the timeline.
fn breaker_events(observations: &[Observation]) -> Vec<Event> {
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for o in observations {
        for b in &o.breakers {
            let prev = last.insert(b.id.clone(), b.state.clone());
            let changed = prev.as_deref().is_some_and(|p| p != b.state)
                || (prev.is_none() && b.state != "closed");
            if changed {
                let detail = match (b.state.as_str(), b.open_remaining_ms) {
                    ("open", Some(ms)) => format!(" for {ms} ms (trip {})", b.trips),
                    _ => String::new(),
                };
                out.push(Event {
                    at_s: report::at(o.at),
                    what: format!("circuit `{}` {}{detail}", b.id, b.state),
                });
            }
        }
    }
    out
}
