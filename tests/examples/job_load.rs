//! Job submission load generator for `scripts/bench-jobs.sh`: time to the answer at a steady
//! rate (open loop), then the most submissions per second a pool of connections gets.
//!
//! ```text
//! job_load NAME=URL=STATUS[=async] ...
//!   BENCH_RATE=1000 submissions/s per case    BENCH_SECS=5 per case and round
//!   BENCH_ROUNDS=3    BENCH_WARMUP_SECS=1    BENCH_CONNECTIONS=32
//!   BENCH_PEAK_SECS=3 seconds of the closed-loop peak phase per case (0: skip)
//! ```
//!
//! Steady phase: one request is due every 1/RATE s (paced by sleeping, then spinning for the
//! last millisecond: tokio's timer alone is up to 1 ms late); each is sent on a free keep-alive
//! connection of the pool (a new one is opened when none is free, so a slow answer never holds
//! back the next send) and its latency counts from its *intended* send time, so queueing in the
//! client is charged too: no coordinated omission. Peak phase, after every steady round: every
//! connection sends its next request as soon as its answer arrives; answers per second is the
//! throughput.
//!
//! `async` sends `Prefer: respond-async` (a job submission). The first case is the baseline: each
//! case's percentiles are printed with their ratio to it. Every answer must have STATUS, or the
//! exit code is 1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// The fixture's cheapest tool: the job's own run costs little, so what is measured is the
/// submission (classification, the durable write, the 202).
const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

#[derive(Clone)]
struct Case {
    name: String,
    uri: hyper::Uri,
    status: u16,
    respond_async: bool,
}

#[derive(Default)]
struct Results {
    latencies: Vec<Duration>,
    sent: u64,
    wrong: u64,
    peak_per_sec: Vec<f64>,
}

fn env_num(name: &str, default: f64) -> Result<f64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let rate = env_num("BENCH_RATE", 1000.0)?;
    let secs = env_num("BENCH_SECS", 5.0)?;
    let rounds = env_num("BENCH_ROUNDS", 3.0)? as usize;
    let warmup = env_num("BENCH_WARMUP_SECS", 1.0)?;
    let connections = env_num("BENCH_CONNECTIONS", 32.0)? as usize;
    let peak_secs = env_num("BENCH_PEAK_SECS", 3.0)?;
    let cases = std::env::args()
        .skip(1)
        .map(|arg| {
            let parts: Vec<&str> = arg.splitn(4, '=').collect();
            let [name, uri, status, rest @ ..] = parts.as_slice() else {
                bail!("expected NAME=URL=STATUS[=async], got {arg}");
            };
            let respond_async = match rest.first() {
                None => false,
                Some(&"async") => true,
                Some(other) => bail!("`{other}`: the fourth part can only be `async`"),
            };
            Ok(Case {
                name: (*name).to_owned(),
                uri: uri.parse().with_context(|| format!("url {uri}"))?,
                status: status.parse().with_context(|| format!("status {status}"))?,
                respond_async,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if cases.is_empty() {
        bail!("no cases; usage: job_load NAME=URL=STATUS[=async] ...");
    }
    let mut results: Vec<Results> = cases.iter().map(|_| Results::default()).collect();
    let period = Duration::from_secs_f64(1.0 / rate);
    for case in &cases {
        steady(
            case,
            period,
            Duration::from_secs_f64(warmup),
            &mut Results::default(),
        )
        .await?;
    }
    // Every steady round first: a peak phase leaves its sidecar a backlog of jobs to run, which
    // would take CPU from the steady phase that follows it.
    for round in 0..rounds {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            let case = &cases[i];
            steady(case, period, Duration::from_secs_f64(secs), &mut results[i]).await?;
        }
    }
    if peak_secs > 0.0 {
        for round in 0..rounds {
            for k in 0..cases.len() {
                let i = (round + k) % cases.len();
                let per_sec =
                    peak(&cases[i], connections, Duration::from_secs_f64(peak_secs)).await?;
                results[i].peak_per_sec.push(per_sec);
            }
        }
    }
    report(&cases, &mut results, rate, secs, rounds, connections);
    if results.iter().any(|r| r.wrong > 0) {
        bail!("some answers had another status than expected");
    }
    Ok(())
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(uri: &hyper::Uri) -> Result<Sender> {
    let authority = uri
        .authority()
        .context("url without host:port")?
        .to_string();
    let stream = tokio::net::TcpStream::connect(&authority).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn request(case: &Case) -> Result<hyper::Request<Full<Bytes>>> {
    let authority = case
        .uri
        .authority()
        .context("url without host:port")?
        .to_string();
    let mut builder = hyper::Request::post(case.uri.path())
        .header("host", authority)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if case.respond_async {
        builder = builder.header("prefer", "respond-async");
    }
    Ok(builder.body(Full::new(Bytes::from_static(BODY.as_bytes())))?)
}

/// Sends one request and reads its answer whole; whether it was the expected one.
async fn exchange(sender: &mut Sender, case: &Case) -> Result<bool> {
    sender.ready().await?;
    let response = sender.send_request(request(case)?).await?;
    let ok = response.status().as_u16() == case.status;
    response.into_body().collect().await?;
    Ok(ok)
}

/// The open-loop phase: one request due every `period` for `duration`.
async fn steady(
    case: &Case,
    period: Duration,
    duration: Duration,
    out: &mut Results,
) -> Result<()> {
    let free: Arc<Mutex<Vec<Sender>>> = Arc::new(Mutex::new(Vec::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let wrong = Arc::new(AtomicU64::new(0));
    let total = (duration.as_secs_f64() / period.as_secs_f64()) as u64;
    let start = Instant::now() + Duration::from_millis(10);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let intended = start + period.mul_f64(i as f64);
        pace(intended).await;
        let free = free.clone();
        let latencies = latencies.clone();
        let wrong = wrong.clone();
        let case = case.clone();
        tasks.spawn(async move {
            let pooled = free.lock().ok().and_then(|mut f| f.pop());
            let mut sender = match pooled {
                Some(s) => s,
                None => connect(&case.uri).await?,
            };
            let ok = exchange(&mut sender, &case).await?;
            let latency = intended.elapsed();
            if !ok {
                wrong.fetch_add(1, Ordering::Relaxed);
            }
            if let Ok(mut l) = latencies.lock() {
                l.push(latency);
            }
            if let Ok(mut f) = free.lock() {
                f.push(sender);
            }
            anyhow::Ok(())
        });
        while tasks.try_join_next().is_some() {}
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    out.sent += total;
    out.wrong += wrong.load(Ordering::Relaxed);
    if let Ok(mut l) = latencies.lock() {
        out.latencies.append(&mut l);
    }
    Ok(())
}

/// How long before a send the pacer stops sleeping and spins: tokio's timer fires up to a
/// millisecond late, which would be charged to the server as latency.
const SPIN_BEFORE: Duration = Duration::from_millis(1);

/// Waits until `until`: sleeps most of the way, then spins (yielding to the tasks on this
/// worker), so the send is on time to within microseconds.
async fn pace(until: Instant) {
    if let Some(early) = until.checked_sub(SPIN_BEFORE)
        && early > Instant::now()
    {
        tokio::time::sleep_until(early).await;
    }
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

/// The closed-loop phase: `connections` senders back to back for `duration`; answers per second.
async fn peak(case: &Case, connections: usize, duration: Duration) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let case = case.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let mut sender = connect(&case.uri).await?;
            while Instant::now() < end {
                if !exchange(&mut sender, &case).await? {
                    bail!("{}: wrong answer in the peak phase", case.name);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    let start = Instant::now();
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn report(
    cases: &[Case],
    results: &mut [Results],
    rate: f64,
    secs: f64,
    rounds: usize,
    connections: usize,
) {
    println!(
        "steady: {rate} req/s, {secs} s x {rounds} rounds per case, open loop (latency from the \
         intended send time, ms); peak: {connections} connections back to back (answers/s, median of rounds)"
    );
    println!(
        "{:<22} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9} {:>10} {:>10}",
        "case", "p50", "p90", "p99", "p99.9", "max", "answers/s", "p50 ratio", "p99 ratio"
    );
    for r in results.iter_mut() {
        r.latencies.sort();
    }
    let base50 = ms(percentile(&results[0].latencies, 50.0));
    let base99 = ms(percentile(&results[0].latencies, 99.0));
    for (case, r) in cases.iter().zip(results.iter()) {
        let p = |q| ms(percentile(&r.latencies, q));
        println!(
            "{:<22} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>8.3} {:>9.0} {:>10.2} {:>10.2}",
            case.name,
            p(50.0),
            p(90.0),
            p(99.0),
            p(99.9),
            p(100.0),
            median(&r.peak_per_sec),
            p(50.0) / base50,
            p(99.0) / base99,
        );
        if r.wrong > 0 {
            println!(
                "  {}: {} of {} answers had another status",
                case.name, r.wrong, r.sent
            );
        }
    }
}
