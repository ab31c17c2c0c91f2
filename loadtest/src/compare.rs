//! `mcp-load compare BASELINE TARGET`: alternating rounds against both (machine drift cancels
//! out), then the median throughput ratio and p50/p99 deltas with their range over the rounds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use http::HeaderMap;

use super::{http, load_of};
use crate::client::Target;
use crate::engine::{self, Load, Plan, Stop};
use crate::workload::Workload;

#[derive(Debug, clap::Args)]
pub(super) struct CompareArgs {
    /// The baseline endpoint.
    baseline: String,
    /// The endpoint compared with it.
    target: String,
    /// Rounds; each runs both, in alternating order (drift in the machine cancels out).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Length of each run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    duration: Duration,
    /// Left out at the start of each run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Open loop at this rate (latency deltas at a fixed load)...
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// ...or a closed loop with this many workers (the throughput ratio).
    #[arg(long)]
    concurrency: Option<usize>,
    /// The request: `TOOL JSON-ARGS` as a tools/call.
    #[arg(long, conflicts_with = "method")]
    call: Option<String>,
    /// Or a parameterless method.
    #[arg(long)]
    method: Option<String>,
    /// Per-request timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Speak HTTP/2 to both (as `run --http2`).
    #[arg(long)]
    http2: bool,
    /// Write the rounds and the comparison (JSON) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(super) async fn compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    if a.rounds == 0 || a.duration.is_zero() {
        anyhow::bail!("--rounds and --duration must be greater than zero");
    }
    let load = load_of(a.rate, a.concurrency, false)?;
    let workload = match (&a.call, &a.method) {
        (Some(c), _) => Workload::call(c)?,
        (None, Some(m)) => Workload::method(m),
        (None, None) => Workload::method("tools/list"),
    };
    let connections = match load {
        Load::Concurrency(c) => c,
        _ => 1024,
    };
    let mut rounds = Vec::new();
    for round in 0..a.rounds {
        let order = if round % 2 == 0 {
            [&a.baseline, &a.target]
        } else {
            [&a.target, &a.baseline]
        };
        let mut pair = Vec::new();
        for url in order {
            let target = Target::new(url, connections, HeaderMap::new(), None, a.timeout)?
                .with_http(http(a.http2))?;
            let plan = Plan {
                load: load.clone(),
                stop: Stop::Duration(a.duration),
                warmup: a.warmup,
                sessions: 1,
                interval: Duration::from_secs(1),
                max_in_flight: 10_000,
                seed: round as u64 + 1,
                live: None,
                offload: None,
                streams: None,
                transport: engine::Transport::Streamable,
            };
            let report = engine::run(
                target,
                workload.clone(),
                plan,
                serde_json::json!({"url": url}),
                std::future::pending(),
            )
            .await?;
            pair.push((url.clone(), report));
        }
        let (base, other) = if pair[0].0 == a.baseline {
            (&pair[0].1, &pair[1].1)
        } else {
            (&pair[1].1, &pair[0].1)
        };
        let r = Round {
            rps_ratio: other.rps / base.rps.max(1e-9),
            p50_delta_ms: other.latency_ms.p50 - base.latency_ms.p50,
            p99_delta_ms: other.latency_ms.p99 - base.latency_ms.p99,
            baseline_rps: base.rps,
            target_rps: other.rps,
            errors: base.errors + other.errors,
        };
        eprintln!(
            "round {}: baseline {:.1} rps, target {:.1} rps (x{:.3}); p50 {:+.3} ms, p99 {:+.3} ms",
            round + 1,
            r.baseline_rps,
            r.target_rps,
            r.rps_ratio,
            r.p50_delta_ms,
            r.p99_delta_ms
        );
        rounds.push(r);
    }
    let summary = |f: fn(&Round) -> f64| Spread::of(rounds.iter().map(f).collect());
    let result = serde_json::json!({
        "baseline": a.baseline,
        "target": a.target,
        "rps_ratio": summary(|r| r.rps_ratio),
        "p50_delta_ms": summary(|r| r.p50_delta_ms),
        "p99_delta_ms": summary(|r| r.p99_delta_ms),
        "rounds": rounds,
    });
    let (ratio, p50, p99) = (
        summary(|r| r.rps_ratio),
        summary(|r| r.p50_delta_ms),
        summary(|r| r.p99_delta_ms),
    );
    println!(
        "throughput target/baseline x{:.3} (rounds {:.3}..{:.3}); p50 {:+.3} ms ({:+.3}..{:+.3}); p99 {:+.3} ms ({:+.3}..{:+.3})",
        ratio.median,
        ratio.min,
        ratio.max,
        p50.median,
        p50.min,
        p50.max,
        p99.median,
        p99.min,
        p99.max
    );
    if rounds.iter().any(|r| r.errors > 0) {
        eprintln!("mcp-load: WARNING: some requests failed; the comparison is of unequal work");
    }
    if let Some(path) = &a.out {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One round of `compare`.
#[derive(Debug, serde::Serialize)]
struct Round {
    rps_ratio: f64,
    p50_delta_ms: f64,
    p99_delta_ms: f64,
    baseline_rps: f64,
    target_rps: f64,
    errors: u64,
}

/// The median of the rounds and their range: the spread says how far one round can be trusted.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => 0.0,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Self {
            median,
            min: values.first().copied().unwrap_or(0.0),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}
