//! The rate models.
//!
//! - **Open loop** (`--rate`): request *i* has an intended start, `i / rate` after the start
//!   (constant arrival) or the sum of exponential gaps (Poisson arrival). It is sent at that time
//!   whatever happened to the ones before, and its latency is measured **from its intended
//!   start**: a server that stalls for a second shows a second in the high percentiles instead of
//!   hiding behind requests the generator politely did not send (coordinated omission). How late
//!   the generator itself sent each request is reported as the send lag.
//! - **Closed loop** (`--concurrency`): that many workers, each sending its next request when the
//!   last is answered; for maximum-throughput runs. Latency is from the send.
//!
//! Results of requests that started during the warm-up are left out; Ctrl-C (or any `stop`
//! future) ends the run and what was measured is still reported.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Session, Target};
use crate::legacy;
use crate::offload::Offload;
use crate::report::{Outcome, Recorder, Report};
use crate::streams::{self, StreamPlan};
use crate::workload::Workload;

/// How requests arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Open loop at `rate` requests per second; exponential gaps when `poisson`.
    Rate {
        /// Requests per second.
        rate: f64,
        /// Poisson arrivals instead of evenly spaced ones.
        poisson: bool,
    },
    /// Closed loop with this many workers.
    Concurrency(usize),
    /// Open loop whose rate ramps linearly through these stages (evenly spaced arrivals).
    Stages(Vec<Stage>),
}

/// One ramp stage (`--stages 30s:100,60s:1000,30s:0`): over `duration` the rate moves linearly
/// from the previous stage's target (0 before the first) to `target`, as k6's stages do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// How long the ramp takes.
    pub duration: Duration,
    /// The rate at its end, requests per second.
    pub target: f64,
}

/// Parses `30s:100,60s:1000,30s:0`.
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, String> {
    let stages = text
        .split(',')
        .map(|part| {
            let (d, r) = part.trim().split_once(':').ok_or_else(|| {
                format!("stage `{part}`: write it as DURATION:RATE, such as 30s:100")
            })?;
            let duration =
                humantime::parse_duration(d.trim()).map_err(|e| format!("stage `{part}`: {e}"))?;
            let target: f64 = r
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| format!("stage `{part}`: the rate must be a non-negative number"))?;
            if duration.is_zero() {
                return Err(format!(
                    "stage `{part}`: the duration must be greater than zero"
                ));
            }
            Ok(Stage { duration, target })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if stages.iter().all(|s| s.target == 0.0) {
        return Err("--stages: every stage's rate is 0: nothing would be sent".into());
    }
    Ok(stages)
}

/// When request `k` (1-based) of a staged run is due, after the start: where the integral of
/// the piecewise-linear rate reaches `k`. `None` after the last stage.
fn staged_offset(stages: &[Stage], k: f64) -> Option<f64> {
    let (mut from, mut start, mut done) = (0.0_f64, 0.0_f64, 0.0_f64);
    for s in stages {
        let d = s.duration.as_secs_f64();
        let to = s.target;
        let count = (from + to) / 2.0 * d;
        if done + count >= k {
            let need = k - done;
            let alpha = (to - from) / (2.0 * d);
            let t = if alpha.abs() < 1e-12 {
                need / from.max(1e-12)
            } else {
                let disc = (from * from + 4.0 * alpha * need).max(0.0);
                (-from + disc.sqrt()) / (2.0 * alpha)
            };
            return Some(start + t.clamp(0.0, d));
        }
        done += count;
        start += d;
        from = to;
    }
    None
}

/// How requests reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Streamable HTTP: each request a POST answered with JSON or SSE.
    #[default]
    Streamable,
    /// The legacy HTTP+SSE transport (2024-11-05): POSTs answered 202, responses on the
    /// session's stream (see [`crate::legacy`]).
    Legacy,
}

/// When the run ends (after the warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long.
    Duration(Duration),
    /// After this many requests have been started.
    Requests(u64),
}

/// A run to make.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The rate model.
    pub load: Load,
    /// The end.
    pub stop: Stop,
    /// Left out of the results at the start.
    pub warmup: Duration,
    /// Virtual sessions the requests are spread over.
    pub sessions: usize,
    /// Length of a point of the series.
    pub interval: Duration,
    /// Requests in flight at most (open loop): past it the generator waits, and says so in its
    /// send lag.
    pub max_in_flight: usize,
    /// Seed of the Poisson arrivals.
    pub seed: u64,
    /// Where the running totals go for a progress line (none: nobody is watching).
    pub live: Option<Arc<Live>>,
    /// Calls are offloaded: sidecar jobs (polled or followed) or MCP tasks.
    pub offload: Option<Offload>,
    /// Standalone SSE streams held open for the run (`--streams`).
    pub streams: Option<StreamPlan>,
    /// The transport.
    pub transport: Transport,
}

/// The running totals of a run, for a progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests measured so far.
    pub requests: AtomicU64,
    /// Of which errors.
    pub errors: AtomicU64,
    /// The p99 so far, in microseconds (refreshed every few hundred requests).
    pub p99_us: AtomicU64,
}

/// One measured request, sent to the recorder.
struct Measured {
    end: Instant,
    latency: Duration,
    lag: Duration,
    first_event: Option<Duration>,
    completed: Option<Duration>,
    outcome: Outcome,
}

/// Runs `plan` against `target`; `stop` ends it early (Ctrl-C). The report covers the measured
/// time, the warm-up excluded.
pub async fn run(
    target: Target,
    workload: Workload,
    plan: Plan,
    config: Value,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Report> {
    let mut sessions = Vec::with_capacity(plan.sessions.max(1));
    let legacy = match plan.transport {
        Transport::Streamable => {
            // No sessions (`--sessions 0`): requests go without `initialize`, so an endpoint
            // that answers only errors (a 404 route, an open circuit) can be measured too.
            if plan.sessions == 0 {
                sessions.push(Session::default());
            }
            for _ in 0..plan.sessions {
                sessions.push(target.open().await?);
            }
            None
        }
        Transport::Legacy => {
            if plan.streams.is_some() || plan.offload.is_some() {
                anyhow::bail!(
                    "the legacy transport has no standalone streams, jobs or tasks: they are Streamable HTTP's"
                );
            }
            Some(Arc::new(
                legacy::Sessions::open(&target, plan.sessions).await?,
            ))
        }
    };
    let sessions: Arc<[Session]> = sessions.into();
    let mut stop = std::pin::pin!(stop);
    // Streams open before the measured run starts, so that they are held for all of it.
    let held = match &plan.streams {
        Some(s) => {
            let opening = streams::open(s, sessions.clone());
            tokio::select! {
                held = opening => Some(held),
                () = &mut stop => {
                    for s in sessions.iter() {
                        target.close(s).await;
                    }
                    return Ok(interrupted(config, plan.interval));
                }
            }
        }
        None => None,
    };
    let workload = Arc::new(workload);
    let (tx, mut rx) = mpsc::unbounded_channel::<Measured>();
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    if let Some(held) = &held {
        held.measure_from(measure_from);
    }
    let collector = {
        let interval = plan.interval;
        let live = plan.live.clone();
        tokio::spawn(async move {
            let mut recorder = Recorder::new(interval);
            let mut last = measure_from;
            while let Some(m) = rx.recv().await {
                last = last.max(m.end);
                recorder.record(
                    m.end.saturating_duration_since(measure_from),
                    m.latency,
                    m.lag,
                    m.outcome,
                );
                if let Some(first) = m.first_event {
                    recorder.record_first_event(first);
                }
                if let Some(done) = m.completed {
                    recorder.record_completion(done);
                }
                if let Some(live) = &live {
                    let n = live.requests.fetch_add(1, Ordering::Relaxed) + 1;
                    live.errors.store(recorder.errors(), Ordering::Relaxed);
                    // A percentile walks the histogram: every 256 requests is often enough.
                    if n % 256 == 1 {
                        live.p99_us.store(recorder.p99_us(), Ordering::Relaxed);
                    }
                }
            }
            (recorder, last)
        })
    };
    let issued = Arc::new(AtomicU64::new(0));
    let ctx = Ctx {
        target: target.clone(),
        workload,
        sessions: sessions.clone(),
        issued: issued.clone(),
        tx,
        measure_from,
        offload: plan.offload,
        legacy: legacy.clone(),
    };
    let streams_only = plan.streams.as_ref().is_some_and(|s| s.only);
    let generate = async {
        match &plan.load {
            // Only streams: they are held until the end, and nothing else is sent.
            _ if streams_only => {
                if let Stop::Duration(d) = plan.stop {
                    tokio::time::sleep_until(measure_from + d).await;
                }
            }
            Load::Rate { rate, poisson } => {
                open_loop(&ctx, &plan, Arrivals::Rate(*rate, *poisson), start).await
            }
            Load::Stages(stages) => {
                open_loop(&ctx, &plan, Arrivals::Stages(stages.clone()), start).await
            }
            Load::Concurrency(n) => closed_loop(&ctx, &plan, *n, start).await,
        }
    };
    tokio::select! {
        () = generate => {}
        () = &mut stop => {}
    }
    drop(ctx);
    let (recorder, last) = collector.await?;
    // A legacy session ends by dropping its stream.
    drop(legacy);
    // A timed run is measured over its duration (or until Ctrl-C); a counted one until its
    // last answer.
    let elapsed = match plan.stop {
        Stop::Duration(d) => d.min(Instant::now().saturating_duration_since(measure_from)),
        Stop::Requests(_) => last.saturating_duration_since(measure_from),
    };
    // The streams end before the sessions do: a session's DELETE ends its streams, which
    // would otherwise count as closed early.
    let streams = match held {
        Some(held) => Some(held.finish(elapsed).await),
        None => None,
    };
    for s in sessions.iter() {
        target.close(s).await;
    }
    let mut report = recorder.report(elapsed, config);
    report.streams = streams;
    Ok(report)
}

/// The report of a run stopped (Ctrl-C) before it began.
fn interrupted(config: Value, interval: Duration) -> Report {
    Recorder::new(interval).report(Duration::ZERO, config)
}

/// What the generators share.
struct Ctx {
    target: Target,
    workload: Arc<Workload>,
    sessions: Arc<[Session]>,
    issued: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<Measured>,
    measure_from: Instant,
    offload: Option<Offload>,
    legacy: Option<Arc<legacy::Sessions>>,
}

impl Ctx {
    /// Takes the next request number, unless the run is over.
    fn next(&self, plan: &Plan, now: Instant) -> Option<u64> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let over = match plan.stop {
            Stop::Duration(d) => now > self.measure_from + d,
            Stop::Requests(max) => n >= max,
        };
        (!over).then_some(n)
    }

    /// Sends request `n` that was meant to start at `intended`, and records it.
    async fn one(&self, n: u64, intended: Instant) {
        let (id, body): (Value, Bytes) = self.workload.request(n);
        let sent = Instant::now();
        let answer = if let Some(legacy) = &self.legacy {
            legacy.call(n, &id, body).await
        } else {
            let session = &self.sessions[(n as usize) % self.sessions.len()];
            match self.offload {
                Some(offload) => self.target.offloaded(offload, session, &id, body).await,
                None => self.target.call(session, &id, body).await,
            }
        };
        let end = Instant::now();
        if intended < self.measure_from {
            return;
        }
        // A job's latency is to its 202 (a task's to its creation); its completion is measured
        // apart.
        let answered = answer.accepted.unwrap_or(end);
        let _ = self.tx.send(Measured {
            end,
            latency: answered.saturating_duration_since(intended),
            completed: answer
                .accepted
                .map(|_| end.saturating_duration_since(intended)),
            lag: sent.saturating_duration_since(intended),
            first_event: answer
                .first_event
                .map(|t| t.saturating_duration_since(intended)),
            outcome: answer.outcome,
        });
    }
}

/// When open-loop requests are due.
enum Arrivals {
    /// A fixed rate, evenly spaced or Poisson.
    Rate(f64, bool),
    /// Ramp stages.
    Stages(Vec<Stage>),
}

async fn open_loop(ctx: &Ctx, plan: &Plan, arrivals: Arrivals, start: Instant) {
    let slots = Arc::new(Semaphore::new(plan.max_in_flight.max(1)));
    let mut rng = XorShift::new(plan.seed);
    let mut offset = 0.0_f64;
    let mut due = 0.0_f64;
    let mut tasks = JoinSet::new();
    let ctx = Arc::new(ctx_clone(ctx));
    loop {
        // Request k is due when k requests' worth of time has passed: a run of D seconds at R
        // per second sends R x D requests.
        match &arrivals {
            Arrivals::Stages(stages) => {
                due += 1.0;
                match staged_offset(stages, due) {
                    Some(t) => offset = t,
                    None => break,
                }
            }
            Arrivals::Rate(rate, poisson) => {
                let rate = rate.max(1e-6);
                offset += if *poisson {
                    -(1.0 - rng.uniform()).ln() / rate
                } else {
                    1.0 / rate
                };
            }
        }
        let intended = start + Duration::from_secs_f64(offset);
        pace(intended).await;
        let Some(n) = ctx.next(plan, intended) else {
            break;
        };
        // At the in-flight cap the generator waits: the wait shows as send lag, and the
        // latency still counts from the intended start.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let c = ctx.clone();
        tasks.spawn(async move {
            c.one(n, intended).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// How long before a request is due the open loop stops sleeping on tokio's timer and yields
/// until then. The timer fires on whole milliseconds, about 1 ms late on average: at thousands
/// of requests per second that lateness was most of the latency measured (BENCHMARKS.md, "mcp-load
/// against breaker_load"). The price, as for any wrk2-style pacer, is a busy core at rates above
/// ~500/s: give the generator a core of its own.
const SPIN_BEFORE: Duration = Duration::from_millis(2);

/// Waits until `until`: on tokio's timer most of the way, then yielding to the runtime (which
/// goes on polling I/O, so answers are read on time) until the moment comes.
async fn pace(until: Instant) {
    if let Some(early) = until.checked_sub(SPIN_BEFORE) {
        tokio::time::sleep_until(early).await;
    }
    // The rest on the real clock, so that a paused test clock cannot make it spin forever.
    let deadline = std::time::Instant::now() + until.saturating_duration_since(Instant::now());
    while std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

async fn closed_loop(ctx: &Ctx, plan: &Plan, workers: usize, _start: Instant) {
    let ctx = Arc::new(ctx_clone(ctx));
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let c = ctx.clone();
        let plan = plan.clone();
        tasks.spawn(async move {
            loop {
                let now = Instant::now();
                let Some(n) = c.next(&plan, now) else { return };
                c.one(n, now).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn ctx_clone(ctx: &Ctx) -> Ctx {
    Ctx {
        target: ctx.target.clone(),
        workload: ctx.workload.clone(),
        sessions: ctx.sessions.clone(),
        issued: ctx.issued.clone(),
        tx: ctx.tx.clone(),
        measure_from: ctx.measure_from,
        offload: ctx.offload,
        legacy: ctx.legacy.clone(),
    }
}

/// xorshift64*: one uniform number per Poisson gap, reproducible from `--seed`. A generator
/// crate would be more code than this for one distribution.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
