//! The traffic of a run, sent with mcp-load's library (its MCP client: sessions, JSON and SSE
//! answers, the judgement of each answer, sidecar jobs) and recorded request by request, since
//! the assertions look at what happened when (which answers came while the circuit was open,
//! when success returned).
//!
//! Open loop at a rate (each request's latency counts from when it was due, so a stalled system
//! cannot hide its stall: no coordinated omission), or closed loop at a concurrency. A session
//! the server no longer knows (404, as after a sidecar restart) is opened again, as a client
//! must.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::HeaderMap;
use mcp_loadtest::client::{Observed, Session, Target};
use mcp_loadtest::report::Outcome;
use mcp_loadtest::workload::Workload;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::RunError;
use crate::scenario::{Load, Request, Traffic};

/// Requests in flight at most in open loop: far above what a scenario's rate and timeout need
/// (50/s × 5 s = 250), low enough that a hung system cannot exhaust descriptors. Past it the
/// generator waits, and the wait shows in the latencies (they count from when each was due).
const MAX_IN_FLIGHT: usize = 2048;
/// How often a probe (`unknown_key_refused`) is sent: a few a second is enough to see every
/// fault window, and adds nothing to speak of to the traffic.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// One request as it went.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was due, from the start of the run.
    pub start: Duration,
    /// From when it was due to its outcome.
    pub latency: Duration,
    /// `ok`, or the error's class (`http_503`, `timeout`, `connect`, `jsonrpc_-32603`, ...).
    pub class: String,
    /// The status of an answer that was not a 2xx.
    pub status: Option<u16>,
    /// Its `Retry-After`, when it had one.
    pub retry_after: Option<String>,
    /// It carried the sidecar's `X-Circuit-Open` (refused by an open circuit).
    pub circuit_open: bool,
}

impl Sample {
    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        self.class == "ok"
    }

    /// When its outcome came, from the start of the run.
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }
}

/// The samples so far, shared between the senders and the runner.
pub type Samples = Arc<Mutex<Vec<Sample>>>;

/// Reads the samples so far.
pub fn snapshot(samples: &Samples) -> Vec<Sample> {
    samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The scenario's sessions, each opened again when the server forgets it.
#[derive(Debug)]
pub struct Sessions {
    target: Target,
    slots: Vec<Mutex<Session>>,
    reopening: Vec<AtomicBool>,
}

impl Sessions {
    /// Opens `n` sessions on `target`.
    pub async fn open(target: &Target, n: u32) -> Result<Arc<Self>, RunError> {
        let mut slots = Vec::new();
        for _ in 0..n.max(1) {
            let session = target
                .open()
                .await
                .map_err(|e| RunError::Setup(format!("opening a session on the target: {e:#}")))?;
            slots.push(Mutex::new(session));
        }
        let reopening = slots.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Arc::new(Self {
            target: target.clone(),
            slots,
            reopening,
        }))
    }

    /// Session `n` (spread over the slots).
    pub fn get(&self, n: u64) -> (usize, Session) {
        let i = usize::try_from(n % self.slots.len() as u64).unwrap_or(0);
        let session = self.slots[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (i, session)
    }

    /// Opens slot `i` again in the background (once at a time), after a 404 said the server
    /// no longer knows it.
    fn reopen(self: &Arc<Self>, i: usize) {
        if self.reopening[i].swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Ok(session) = this.target.open().await {
                *this.slots[i].lock().unwrap_or_else(PoisonError::into_inner) = session;
            }
            this.reopening[i].store(false, Ordering::Release);
        });
    }

    /// Closes every session.
    pub async fn close(&self) {
        for slot in &self.slots {
            let session = slot.lock().unwrap_or_else(PoisonError::into_inner).clone();
            self.target.close(&session).await;
        }
    }
}

/// The workload of the traffic's request (or of `call` when given).
pub fn workload(request: &Request) -> Result<Workload, RunError> {
    match request {
        Request::Call(call) => {
            Workload::call(call).map_err(|e| RunError::Setup(format!("traffic.call: {e}")))
        }
        Request::Method(method) => Ok(Workload::method(method)),
    }
}

/// Sends the traffic from `origin` until `origin + traffic.duration` (or `stop`), recording
/// each request in `samples`. Returns once every request has its outcome.
pub async fn send(
    traffic: &Traffic,
    sessions: Arc<Sessions>,
    workload: Arc<Workload>,
    origin: Instant,
    samples: Samples,
    stop: Arc<AtomicBool>,
) {
    let end = origin + traffic.duration;
    let next = Arc::new(AtomicU64::new(0));
    match traffic.load {
        Load::Rate(rate) => {
            let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            let mut tasks = tokio::task::JoinSet::new();
            for n in 0u64.. {
                #[allow(clippy::cast_precision_loss)]
                let due = origin + Duration::from_secs_f64(n as f64 / rate);
                if due >= end || stop.load(Ordering::Acquire) {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let (sessions, workload, samples) = (
                    Arc::clone(&sessions),
                    Arc::clone(&workload),
                    Arc::clone(&samples),
                );
                tasks.spawn(async move {
                    let sample = one(&sessions, &workload, n, origin, due).await;
                    record(&samples, sample);
                    drop(permit);
                });
                // Reap finished tasks as we go, so the set stays as small as what is in flight.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
        Load::Concurrency(c) => {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..c {
                let (sessions, workload, samples, next, stop) = (
                    Arc::clone(&sessions),
                    Arc::clone(&workload),
                    Arc::clone(&samples),
                    Arc::clone(&next),
                    Arc::clone(&stop),
                );
                tasks.spawn(async move {
                    loop {
                        let due = Instant::now();
                        if due >= end || stop.load(Ordering::Acquire) {
                            break;
                        }
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let sample = one(&sessions, &workload, n, origin, due).await;
                        record(&samples, sample);
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Every [`PROBE_EVERY`] from `origin` for `duration` (or until `stop`): one request of
/// `workload` with no session, by `target` (whose credential the sidecar must refuse), recorded
/// in `probes`.
pub async fn probe(
    target: &Target,
    workload: &Workload,
    origin: Instant,
    duration: Duration,
    probes: Samples,
    stop: Arc<AtomicBool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0u64.. {
        let due = origin + PROBE_EVERY * u32::try_from(n).unwrap_or(u32::MAX);
        if due >= origin + duration || stop.load(Ordering::Acquire) {
            break;
        }
        tokio::time::sleep_until(due).await;
        let (target, probes) = (target.clone(), Arc::clone(&probes));
        let (id, body) = workload.request(n);
        tasks.spawn(async move {
            let observed = target.call_observed(&Session::default(), &id, body).await;
            record(&probes, sample(&observed, origin, due));
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

fn record(samples: &Samples, sample: Sample) {
    samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(sample);
}

/// Request `n`, due at `due`.
async fn one(
    sessions: &Arc<Sessions>,
    workload: &Workload,
    n: u64,
    origin: Instant,
    due: Instant,
) -> Sample {
    let (slot, session) = sessions.get(n);
    let (id, body) = workload.request(n);
    let observed = sessions.target.call_observed(&session, &id, body).await;
    let class = match &observed.answer.outcome {
        Outcome::Success => "ok".to_owned(),
        Outcome::Error(class) => class.clone(),
    };
    if class == "http_404" && session.stateful() {
        sessions.reopen(slot);
    }
    sample(&observed, origin, due)
}

/// The sample of an observed call due at `due`.
fn sample(observed: &Observed, origin: Instant, due: Instant) -> Sample {
    let headers = observed.refusal.as_ref().map(|r| &r.headers);
    Sample {
        start: due.saturating_duration_since(origin),
        latency: due.elapsed(),
        class: match &observed.answer.outcome {
            Outcome::Success => "ok".to_owned(),
            Outcome::Error(class) => class.clone(),
        },
        status: observed.refusal.as_ref().map(|r| r.status.as_u16()),
        retry_after: headers.and_then(|h| header(h, "retry-after")),
        circuit_open: headers.is_some_and(|h| h.contains_key("x-circuit-open")),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
