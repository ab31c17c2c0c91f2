//! The command line: `mcp-load run URL ...` and `mcp-load merge REPORT...`.
//!
//! Exit codes: 0 all well; 1 the run could not be made (unreachable target, bad file); 2 bad
//! usage; 3 a `--threshold` was crossed (each named with its measured value).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::client::{PROTOCOL_VERSION, Target};
use crate::engine::{self, Load, Plan, Stop};
use crate::offload::Offload;
use crate::report::{self, Report};
use crate::streams::StreamPlan;
use crate::threshold::Threshold;
use crate::workload::Workload;

#[path = "compare.rs"]
mod compare;

/// Exit code of a run that crossed a threshold.
pub const EXIT_THRESHOLD: u8 = 3;
/// Default length of a point of the series: a second, as wrk and k6 report.
const DEFAULT_INTERVAL: &str = "1s";

/// MCP-aware load generator: open or closed loop, HDR histograms, thresholds for CI.
#[derive(Debug, Parser)]
#[command(name = "mcp-load", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send load to an MCP endpoint and report.
    Run(Box<RunArgs>),
    /// Combine the reports of shards that ran at the same time (histograms merged exactly).
    Merge(MergeArgs),
    /// Alternating rounds against a baseline and a target (say the backend directly and the
    /// sidecar in front of it): the throughput ratio and latency deltas, with their spread.
    Compare(Box<compare::CompareArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Arrival {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (a Poisson process), reproducible with --seed.
    Poisson,
}

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    /// Streamable HTTP (2025-03-26 on): the URL is the MCP endpoint.
    Streamable,
    /// The legacy HTTP+SSE transport (2024-11-05): the URL is its `GET /sse` endpoint;
    /// requests are POSTed to the endpoint it names and answered on its stream.
    Legacy,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The MCP endpoint (Streamable HTTP; with --transport legacy its `GET /sse` URL),
    /// http:// or https://.
    url: String,
    /// The MCP transport.
    #[arg(long, value_enum, default_value_t = TransportArg::Streamable)]
    transport: TransportArg,
    /// Open loop: requests per second, each measured from its intended start.
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: this many workers sending back to back.
    #[arg(long)]
    concurrency: Option<usize>,
    /// How open-loop requests arrive.
    #[arg(long, value_enum, default_value_t = Arrival::Constant)]
    arrival: Arrival,
    /// How long to measure (after the warm-up), e.g. 30s, 2m.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Or: how many requests to send.
    #[arg(long)]
    requests: Option<u64>,
    /// Left out of the results at the start.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    warmup: Duration,
    /// The request: `TOOL JSON-ARGS` as a tools/call (`{{seq}}` is the sequence number).
    #[arg(long, conflicts_with = "method")]
    call: Option<String>,
    /// Or a parameterless method: tools/list, ping, prompts/list.
    #[arg(long, conflicts_with = "scenario")]
    method: Option<String>,
    /// Or a scenario file (TOML): a weighted mix of requests with templates.
    #[arg(long, conflicts_with = "call")]
    scenario: Option<PathBuf>,
    /// Open loop with ramp stages: DURATION:RATE,... (the rate moves linearly to each stage's),
    /// e.g. 30s:100,60s:1000,30s:0. Replaces --rate and --duration.
    #[arg(long, conflicts_with_all = ["rate", "concurrency", "duration", "requests"])]
    stages: Option<String>,
    /// Virtual sessions the requests are spread over (each initializes, and ends with DELETE);
    /// 0 sends the requests as they are, with no `initialize` (or `server/discover`) first: an
    /// endpoint that answers only errors (a 404 route, an open circuit) can be measured too.
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Extra header, `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Environment variable holding a bearer token (sent as `Authorization: Bearer ...`); a
    /// secret never goes on the command line, where shell history keeps it.
    #[arg(long)]
    bearer_env: Option<String>,
    /// Environment variable holding an API key (sent as `X-API-Key`).
    #[arg(long)]
    api_key_env: Option<String>,
    /// Extra PEM CA file trusted for https:// (besides the system roots).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Speak HTTP/2 (ALPN `h2` for https://, prior knowledge for http://): every request and
    /// stream of the run on one multiplexed connection. HTTP/1.1 otherwise.
    #[arg(long)]
    http2: bool,
    /// Per-request timeout (counted as `timeout`); with --jobs or --tasks it also bounds the
    /// wait for the end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Length of a point of the report's series.
    #[arg(long, value_parser = humantime::parse_duration, default_value = DEFAULT_INTERVAL)]
    interval: Duration,
    /// Open loop: requests in flight at most; past it the generator waits (shown as send lag).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Seed of the Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// This machine's share of a run spread over several: `i/n` sends 1/n of --rate (or of
    /// --concurrency, or of --stages' rates), with a seed of its own; `merge` combines the
    /// reports.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u32, u32)>,
    /// The MCP revision asked for. From 2026-07-28 on there is no session: `server/discover`,
    /// then every request carries the revision and the client's capabilities in `_meta` and
    /// the `Mcp-Method` / `Mcp-Name` headers.
    #[arg(long, default_value = PROTOCOL_VERSION, value_parser = parse_protocol)]
    protocol: String,
    /// Submit each call as a sidecar job (`Prefer: respond-async`) and poll its result every
    /// this long: the 202's latency and the completion time are reported apart.
    #[arg(
        long,
        value_parser = humantime::parse_duration,
        conflicts_with_all = ["tasks", "jobs_follow"]
    )]
    jobs: Option<Duration>,
    /// Submit each call as a sidecar job and follow its event stream (`GET …/events`) to the
    /// end instead of polling, then fetch its result once; a stream that ends first is
    /// `stream_closed`.
    #[arg(long, conflicts_with = "tasks")]
    jobs_follow: bool,
    /// Run each call as an MCP task on the --protocol revision (2025-11-25: `params.task`;
    /// 2026-07-28: the Tasks extension) and poll it with `tasks/get` every this long, or as
    /// the server's `pollInterval` asks when that is longer: the create answer's latency and
    /// the completion time are reported apart.
    #[arg(long, value_parser = humantime::parse_duration)]
    tasks: Option<Duration>,
    /// Hold this many standalone SSE GET streams open for the whole run (each on its own
    /// connection, spread over the sessions; opened before the measured run starts, and
    /// `streams open: N` printed on stderr when all have opened or failed). Without --rate,
    /// --concurrency, --stages, --requests, --call, --method or --scenario the run sends no
    /// requests: it holds the streams for --duration.
    #[arg(long, default_value_t = 0)]
    streams: usize,
    /// The streams' URL when it is not the run's (query parameters pass through, e.g.
    /// `http://host/mcp?tick_ms=100`).
    #[arg(long)]
    stream_url: Option<String>,
    /// JSON pointer into a stream event's data to its send time in Unix microseconds (the
    /// event delivery latency); events without it are counted but not timed.
    #[arg(long, default_value = crate::streams::DEFAULT_TIMESTAMP)]
    stream_timestamp: String,
    /// Pass/fail rule, e.g. 'p99<250ms', 'error_rate<0.1%', 'rps>900' (repeatable).
    #[arg(long = "threshold")]
    thresholds: Vec<Threshold>,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the HTML report (one self-contained page with charts) here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Print a Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set).
    #[arg(long)]
    summary: bool,
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// Reports to combine.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Write the merged report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the merged HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Pass/fail rules checked on the merged report.
    #[arg(long = "threshold")]
    thresholds: Vec<Threshold>,
    /// Print a Markdown summary.
    #[arg(long)]
    summary: bool,
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Run(a) => run(*a).await,
            Command::Merge(a) => merge(a),
            Command::Compare(a) => compare::compare(*a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The rate model of `--rate` or `--concurrency` (one worker without either).
fn load_of(rate: Option<f64>, concurrency: Option<usize>, poisson: bool) -> anyhow::Result<Load> {
    Ok(match (rate, concurrency) {
        (Some(r), None) if r > 0.0 && r.is_finite() => Load::Rate { rate: r, poisson },
        (Some(r), None) => {
            anyhow::bail!("--rate {r}: must be a positive number of requests per second")
        }
        (None, Some(0)) => anyhow::bail!("--concurrency 0: at least one worker"),
        (None, Some(c)) => Load::Concurrency(c),
        _ => Load::Concurrency(1),
    })
}

/// A revision: `YYYY-MM-DD`.
fn parse_protocol(text: &str) -> Result<String, String> {
    if crate::stateless::is_revision(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "--protocol `{text}`: a revision is a date, such as 2025-11-25 or 2026-07-28"
        ))
    }
}

/// The HTTP version `--http2` asks for.
fn http(http2: bool) -> crate::leg::Version {
    if http2 {
        crate::leg::Version::Http2
    } else {
        crate::leg::Version::Http1
    }
}

/// `i/n` with 1 <= i <= n.
fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("--shard `{text}`: write it as i/n, such as 2/3"))?;
    let (i, n): (u32, u32) = (
        i.trim()
            .parse()
            .map_err(|_| format!("--shard `{text}`: i is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("--shard `{text}`: n is not a number"))?,
    );
    if n == 0 || i == 0 || i > n {
        return Err(format!("--shard `{text}`: needs 1 <= i <= n"));
    }
    Ok((i, n))
}

async fn run(mut a: RunArgs) -> anyhow::Result<ExitCode> {
    // Every connection and stream is a descriptor, and many systems start processes with a soft
    // limit of 1,024 under a far higher hard one: raise it first (as the sidecar does).
    let nofile = mcp_sidecar::fd_budget::raise_nofile()
        .map_err(|e| anyhow::anyhow!("cannot raise the descriptor limit (RLIMIT_NOFILE): {e}"))?;
    if let Some((i, n)) = a.shard {
        let share = f64::from(n);
        a.rate = a.rate.map(|r| r / share);
        a.concurrency = a
            .concurrency
            .map(|c| (c / n as usize + usize::from((i as usize) <= c % n as usize)).max(1));
        a.stages = a.stages.as_deref().map(|text| {
            text.split(',')
                .map(|part| match part.split_once(':') {
                    Some((d, r)) => match r.trim().parse::<f64>() {
                        Ok(r) => format!("{d}:{}", r / share),
                        Err(_) => part.to_owned(),
                    },
                    None => part.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(",")
        });
        a.seed = a.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(i));
    }
    if a.transport == TransportArg::Legacy
        && (a.streams > 0 || a.jobs.is_some() || a.jobs_follow || a.tasks.is_some())
    {
        anyhow::bail!(
            "--transport legacy: --streams, --jobs, --jobs-follow and --tasks are Streamable HTTP's; the legacy transport has none"
        );
    }
    if a.transport == TransportArg::Legacy && a.sessions == 0 {
        anyhow::bail!(
            "--transport legacy --sessions 0: a legacy request needs its session's stream; at least 1"
        );
    }
    if a.transport == TransportArg::Legacy && a.protocol != PROTOCOL_VERSION {
        anyhow::bail!(
            "--transport legacy speaks its own revision, 2024-11-05: --protocol {} does not apply",
            a.protocol
        );
    }
    let stages = match &a.stages {
        Some(text) => {
            if matches!(a.arrival, Arrival::Poisson) {
                anyhow::bail!("--stages arrive evenly spaced; --arrival poisson goes with --rate");
            }
            Some(engine::parse_stages(text).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        None => None,
    };
    let load = match &stages {
        Some(stages) => Load::Stages(stages.clone()),
        None => load_of(a.rate, a.concurrency, matches!(a.arrival, Arrival::Poisson))?,
    };
    let stop = match (a.duration, a.requests) {
        _ if stages.is_some() => Stop::Duration(stages.iter().flatten().map(|s| s.duration).sum()),
        (Some(d), None) if !d.is_zero() => Stop::Duration(d),
        (None, Some(n)) if n > 0 => Stop::Requests(n),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
        _ => anyhow::bail!("--duration and --requests must be greater than zero"),
    };
    let workload = match (&a.call, &a.method, &a.scenario) {
        (Some(c), _, _) => Workload::call(c)?,
        (None, Some(m), _) => Workload::method(m),
        (None, None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Workload::scenario(&text, &path.display().to_string())?
        }
        (None, None, None) => Workload::method("tools/list"),
    };
    let headers = headers(&a)?;
    let connections = match load {
        Load::Concurrency(c) => c,
        Load::Rate { .. } | Load::Stages(_) => a.max_in_flight.min(1024),
    };
    let streams = stream_plan(&a, &headers, connections, nofile)?;
    let target = Target::new(&a.url, connections, headers, a.ca_file.clone(), a.timeout)?
        .with_http(http(a.http2))?
        .with_protocol(&a.protocol)?;
    let offload = match (a.jobs, a.jobs_follow, a.tasks) {
        (Some(poll), _, _) => Some(Offload::JobsPoll(poll)),
        (None, true, _) => Some(Offload::JobsFollow),
        (None, false, Some(poll)) => Some(Offload::Tasks(poll)),
        (None, false, None) => None,
    };
    let config = serde_json::json!({
        "url": a.url,
        "load": match &load {
            Load::Rate { rate, poisson } => serde_json::json!({"rate": rate, "arrival": if *poisson { "poisson" } else { "constant" }}),
            Load::Concurrency(c) => serde_json::json!({"concurrency": c}),
            Load::Stages(_) => serde_json::json!({"stages": a.stages}),
        },
        "stop": match stop {
            Stop::Duration(d) => serde_json::json!({"duration_s": d.as_secs_f64()}),
            Stop::Requests(n) => serde_json::json!({"requests": n}),
        },
        "warmup_s": a.warmup.as_secs_f64(),
        "sessions": a.sessions,
        "call": a.call,
        "method": a.method,
        "scenario": a.scenario,
        "shard": a.shard.map(|(i, n)| format!("{i}/{n}")),
        "protocol": a.protocol,
        "offload": match offload {
            Some(Offload::JobsPoll(poll)) => serde_json::json!({"jobs_poll_s": poll.as_secs_f64()}),
            Some(Offload::JobsFollow) => serde_json::json!("jobs_follow"),
            Some(Offload::Tasks(poll)) => serde_json::json!({"tasks_poll_s": poll.as_secs_f64()}),
            None => serde_json::Value::Null,
        },
        "http": if a.http2 { "2" } else { "1.1" },
        "transport": match a.transport {
            TransportArg::Streamable => "streamable",
            TransportArg::Legacy => "legacy",
        },
        "streams": (a.streams > 0).then(|| serde_json::json!({
            "count": a.streams,
            "url": a.stream_url.as_deref().unwrap_or(&a.url),
            "timestamp": a.stream_timestamp,
            "only": streams.as_ref().is_some_and(|s| s.only),
        })),
    });
    let rate = match &load {
        Load::Rate { rate, .. } => Some(*rate),
        _ => None,
    };
    let open_loop = !matches!(load, Load::Concurrency(_));
    let live = std::io::IsTerminal::is_terminal(&std::io::stderr())
        .then(|| std::sync::Arc::new(engine::Live::default()));
    let plan = Plan {
        load,
        stop,
        warmup: a.warmup,
        sessions: a.sessions,
        interval: a.interval,
        max_in_flight: a.max_in_flight,
        seed: a.seed,
        live: live.clone(),
        offload,
        streams,
        transport: match a.transport {
            TransportArg::Streamable => engine::Transport::Streamable,
            TransportArg::Legacy => engine::Transport::Legacy,
        },
    };
    let progress = live.map(progress_line);
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        eprintln!("mcp-load: interrupted; reporting what was measured");
    };
    let report = engine::run(target, workload, plan, config, ctrl_c).await;
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let report = report?;
    if let Some(rate) = rate {
        eprintln!("target rate {rate:.1}/s, achieved {:.1}/s", report.rps);
    }
    if open_loop {
        eprintln!(
            "send lag p50 {:.3} ms, p99 {:.3} ms",
            report.send_lag_ms.p50, report.send_lag_ms.p99
        );
        // The generator, not the server, set the pace: its own lag is large.
        if report.send_lag_ms.p99 > GENERATOR_LAG_WARN_MS {
            eprintln!(
                "mcp-load: WARNING: the generator sent requests up to {:.1} ms late (p99): it, not the server, may be the limit; give it more cores or lower the rate",
                report.send_lag_ms.p99
            );
        }
    }
    finish(
        &report,
        &a.thresholds,
        a.out.as_ref(),
        a.html.as_ref(),
        a.summary,
    )
}

/// Descriptors mcp-load needs besides its connections: standard streams, the runtime's epoll
/// and wake-up descriptors, files it writes. A few dozen in practice.
const FD_SLACK: u64 = 64;

/// The streams of `--streams`, with the descriptor limit checked: the soft `RLIMIT_NOFILE`
/// (raised to the hard one at start) must hold a descriptor per stream, and should hold the
/// requests' `connections` too.
fn stream_plan(
    a: &RunArgs,
    headers: &HeaderMap,
    connections: usize,
    limit: mcp_sidecar::fd_budget::NofileLimit,
) -> anyhow::Result<Option<StreamPlan>> {
    if a.streams == 0 {
        return Ok(None);
    }
    // No request flag: the run only holds the streams (what a memory benchmark wants).
    let only = a.rate.is_none()
        && a.concurrency.is_none()
        && a.stages.is_none()
        && a.requests.is_none()
        && a.call.is_none()
        && a.method.is_none()
        && a.scenario.is_none();
    if let Some(soft) = limit.soft {
        let streams = a.streams as u64 + FD_SLACK;
        let with_requests = streams + if only { 0 } else { connections as u64 };
        if soft < streams {
            anyhow::bail!(
                "--streams {}: the descriptor limit (RLIMIT_NOFILE) is {soft}, hard limit {}; \
                 each stream holds one: raise it (ulimit -n) or ask for fewer",
                a.streams,
                limit.hard.map_or("unlimited".to_owned(), |h| h.to_string())
            );
        }
        if soft < with_requests {
            eprintln!(
                "mcp-load: WARNING: the descriptor limit (RLIMIT_NOFILE) is {soft}: {} streams and up to {connections} request connections may not fit",
                a.streams
            );
        }
    }
    let url = a.stream_url.as_deref().unwrap_or(&a.url);
    // Streams never return their connection: a pool of their own keeps none idle.
    let target = Target::new(url, 1, headers.clone(), a.ca_file.clone(), a.timeout)?
        .with_http(http(a.http2))?;
    Ok(Some(StreamPlan {
        count: a.streams,
        target,
        timestamp: a.stream_timestamp.clone(),
        only,
    }))
}

/// A progress line on stderr (a terminal): elapsed time, rate, errors and p99, refreshed
/// four times a second.
fn progress_line(
    live: std::sync::Arc<engine::Live>,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    use std::sync::atomic::Ordering;
    let bar = indicatif::ProgressBar::new_spinner();
    let shown = bar.clone();
    let ticker = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let secs = start.elapsed().as_secs_f64().max(1e-3);
            let n = live.requests.load(Ordering::Relaxed);
            shown.set_message(format!(
                "{secs:.0} s  {:.0} req/s  {n} requests  {} errors  p99 {:.2} ms",
                n as f64 / secs,
                live.errors.load(Ordering::Relaxed),
                live.p99_us.load(Ordering::Relaxed) as f64 / 1000.0
            ));
            shown.tick();
        }
    });
    (bar, ticker)
}

/// Send lag (p99) past which the generator warns that it is the bottleneck: a few ms is
/// scheduler noise; more means requests left late because the generator was busy.
const GENERATOR_LAG_WARN_MS: f64 = 10.0;

fn headers(a: &RunArgs) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for h in &a.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--header `{h}`: write it as `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| anyhow::anyhow!("--header `{h}`: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| anyhow::anyhow!("--header `{h}`: {e}"))?;
        map.append(name, value);
    }
    let secret = |var: &str| {
        std::env::var(var).map_err(|_| anyhow::anyhow!("environment variable `{var}` is not set"))
    };
    if let Some(var) = &a.bearer_env {
        let v = HeaderValue::from_str(&format!("Bearer {}", secret(var)?))
            .map_err(|_| anyhow::anyhow!("`{var}` holds bytes a header cannot carry"))?;
        map.insert(http::header::AUTHORIZATION, v);
    }
    if let Some(var) = &a.api_key_env {
        let v = HeaderValue::from_str(&secret(var)?)
            .map_err(|_| anyhow::anyhow!("`{var}` holds bytes a header cannot carry"))?;
        map.insert(HeaderName::from_static("x-api-key"), v);
    }
    Ok(map)
}

fn merge(a: MergeArgs) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for path in &a.reports {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let r: Report = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not an mcp-load report: {e}", path.display()))?;
        reports.push(r);
    }
    let merged = report::merge(&reports)?;
    finish(
        &merged,
        &a.thresholds,
        a.out.as_ref(),
        a.html.as_ref(),
        a.summary,
    )
}

/// Prints the table, writes the report, checks the thresholds.
fn finish(
    report: &Report,
    thresholds: &[Threshold],
    out: Option<&PathBuf>,
    html: Option<&PathBuf>,
    summary: bool,
) -> anyhow::Result<ExitCode> {
    let l = &report.latency_ms;
    println!(
        "requests {}  errors {} ({:.3}%)  rps {:.1}  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        report.requests,
        report.errors,
        report.error_rate * 100.0,
        report.rps,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max
    );
    for (kind, n) in &report.errors_by_kind {
        println!("  error {kind}: {n}");
    }
    if let Some(s) = &report.streams {
        for line in crate::streams::lines(s) {
            println!("{line}");
        }
    }
    if report.jobs > 0 {
        let c = &report.completion_ms;
        println!(
            "jobs or tasks {}  completion ms: p50 {:.3}  p99 {:.3}  max {:.3} (latency above is to the 202 or the task's creation)",
            report.jobs, c.p50, c.p99, c.max
        );
    }
    if let Some(path) = out {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if let Some(path) = html {
        std::fs::write(path, crate::html::page(report))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if summary {
        let md = report::markdown(report);
        println!("{md}");
        if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
            use std::io::Write as _;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                let _ = f.write_all(md.as_bytes());
            }
        }
    }
    let crossed: Vec<_> = thresholds
        .iter()
        .filter_map(|t| t.check(report).err())
        .collect();
    for c in &crossed {
        eprintln!("mcp-load: {c}");
    }
    Ok(if crossed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_THRESHOLD)
    })
}
