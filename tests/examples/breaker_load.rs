//! Constant-rate latency load generator for `scripts/bench-breaker.sh` (wrk2-style: Debian has no
//! wrk2). Each case sends one POST at a time over one keep-alive HTTP/1.1 connection at a fixed
//! rate, and latency is measured from the *intended* send time, so a slow answer that delays the
//! next send is charged to the next request too (no coordinated omission).
//!
//! ```text
//! breaker_load NAME=URL=STATUS[=HEADER] ...
//!   BENCH_RATE=2000 requests/s per case    BENCH_SECS=5 per case and round
//!   BENCH_ROUNDS=3 rounds (cases interleaved, rotating order)    BENCH_WARMUP_SECS=1
//! ```
//!
//! The first case is the baseline: the table shows every case's percentiles and its ratio to the
//! baseline. Every answer must have STATUS (and HEADER, when given), or the exit code is 1.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// How long before the intended send time the pacer stops sleeping and spins: more than the
/// scheduler's usual wake-up lateness, so oversleeping is not charged to the sidecar.
const SPIN_BEFORE: Duration = Duration::from_micros(300);

const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

struct Case {
    name: String,
    uri: hyper::Uri,
    status: u16,
    header: Option<String>,
    latencies: Vec<Duration>,
    sent: u64,
    wrong: u64,
}

fn env_num(name: &str, default: f64) -> Result<f64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    let rate = env_num("BENCH_RATE", 2000.0)?;
    let secs = env_num("BENCH_SECS", 5.0)?;
    let rounds = env_num("BENCH_ROUNDS", 3.0)? as usize;
    let warmup = env_num("BENCH_WARMUP_SECS", 1.0)?;
    let mut cases = std::env::args()
        .skip(1)
        .map(|arg| {
            let parts: Vec<&str> = arg.splitn(4, '=').collect();
            let [name, uri, status, rest @ ..] = parts.as_slice() else {
                bail!("expected NAME=URL=STATUS[=HEADER], got {arg}");
            };
            Ok(Case {
                name: (*name).to_owned(),
                uri: uri.parse().with_context(|| format!("url {uri}"))?,
                status: status.parse().with_context(|| format!("status {status}"))?,
                header: rest.first().map(|h| h.to_ascii_lowercase()),
                latencies: Vec::new(),
                sent: 0,
                wrong: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if cases.is_empty() {
        bail!("no cases; usage: breaker_load NAME=URL=STATUS[=HEADER] ...");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let period = Duration::from_secs_f64(1.0 / rate);
        for case in cases.iter_mut() {
            run(case, period, Duration::from_secs_f64(warmup), false).await?;
        }
        for round in 0..rounds {
            let n = cases.len();
            for k in 0..n {
                let case = &mut cases[(round + k) % n];
                run(case, period, Duration::from_secs_f64(secs), true).await?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    report(&mut cases, rate, secs, rounds);
    if cases.iter().any(|c| c.wrong > 0) {
        bail!("some answers had the wrong status or lacked the expected header");
    }
    Ok(())
}

/// Sends at `period` intervals for `duration` over one connection.
async fn run(case: &mut Case, period: Duration, duration: Duration, record: bool) -> Result<()> {
    let authority = case
        .uri
        .authority()
        .context("url without host:port")?
        .clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let total = (duration.as_secs_f64() / period.as_secs_f64()) as u64;
    let start = Instant::now() + Duration::from_millis(10);
    for i in 0..total {
        let intended = start + period.mul_f64(i as f64);
        pace(intended);
        let req = http::Request::post(case.uri.clone())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let ok = resp.status().as_u16() == case.status
            && case
                .header
                .as_deref()
                .is_none_or(|h| resp.headers().contains_key(h));
        resp.into_body().collect().await?;
        let latency = intended.elapsed();
        case.sent += 1;
        if !ok {
            case.wrong += 1;
        }
        if record {
            case.latencies.push(latency);
        }
    }
    drop(sender);
    let _ = driver.await;
    Ok(())
}

/// Waits until `until`: sleeps most of the way, then spins.
fn pace(until: Instant) {
    let now = Instant::now();
    if until > now + SPIN_BEFORE {
        std::thread::sleep(until - now - SPIN_BEFORE);
    }
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(cases: &mut [Case], rate: f64, secs: f64, rounds: usize) {
    println!(
        "constant rate {rate} req/s, {secs} s x {rounds} rounds per case, 1 connection, \
         latency from intended send time (µs)"
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "case", "n", "p50", "p90", "p99", "p99.9", "max", "p50/base", "p99/base"
    );
    for case in cases.iter_mut() {
        case.latencies.sort_unstable();
    }
    let base50 = micros(percentile(&cases[0].latencies, 50.0));
    let base99 = micros(percentile(&cases[0].latencies, 99.0));
    for case in cases.iter() {
        let l = &case.latencies;
        let (p50, p99) = (micros(percentile(l, 50.0)), micros(percentile(l, 99.0)));
        println!(
            "{:<28} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>10.2} {:>10.2}",
            case.name,
            l.len(),
            p50,
            micros(percentile(l, 90.0)),
            p99,
            micros(percentile(l, 99.9)),
            micros(l.last().copied().unwrap_or_default()),
            p50 / base50,
            p99 / base99,
        );
    }
    for case in cases.iter() {
        println!(
            "sent[{}]={} wrong[{}]={} p99_us[{}]={:.1}",
            case.name,
            case.sent,
            case.name,
            case.wrong,
            case.name,
            micros(percentile(&case.latencies, 99.0))
        );
    }
}
