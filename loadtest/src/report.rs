//! What a run measured, and its JSON report.
//!
//! Latencies go into HdrHistograms (microseconds, 3 significant digits): one for the whole run
//! and one per interval, never averaged; percentiles always come from a histogram, and reports
//! carry their histograms (serialised, base64) so that [`merge`] combines runs exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

#[path = "report_streams.rs"]
pub mod streams;

/// Significant digits kept: 0.1% relative error, the precision wrk and HdrHistogram users
/// expect.
const SIGFIGS: u8 = 3;
/// Longest latency recorded (one hour, in microseconds); a longer one is clamped to it.
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants within HdrHistogram's limits: this cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_US, SIGFIGS).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(MAX_US)
        .clamp(1, MAX_US)
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx with the matching JSON-RPC `result` (not a tool error).
    Success,
    /// Anything else, by class: `http_503`, `jsonrpc_-32601`, `tool_error`, `timeout`,
    /// `connect`, `reset`, `bad_answer`.
    Error(String),
}

/// Collects a run's measurements (one per finished request), by interval.
#[derive(Debug)]
pub struct Recorder {
    interval: Duration,
    total: Histogram<u64>,
    send_lag: Histogram<u64>,
    first_event: Histogram<u64>,
    completion: Histogram<u64>,
    intervals: Vec<(Histogram<u64>, u64, u64)>,
    requests: u64,
    errors: BTreeMap<String, u64>,
}

impl Recorder {
    /// A recorder whose series has one point per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(10)),
            total: histogram(),
            send_lag: histogram(),
            first_event: histogram(),
            completion: histogram(),
            intervals: Vec::new(),
            requests: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Records a request that ended `at` after the measurement began, `latency` after its
    /// intended start, sent `lag` after it.
    pub fn record(&mut self, at: Duration, latency: Duration, lag: Duration, outcome: Outcome) {
        let index = usize::try_from(at.as_nanos() / self.interval.as_nanos().max(1))
            .unwrap_or(usize::MAX)
            .min(1_000_000);
        while self.intervals.len() <= index {
            self.intervals.push((histogram(), 0, 0));
        }
        let us = micros(latency);
        self.total.saturating_record(us);
        self.send_lag.saturating_record(micros(lag));
        let slot = &mut self.intervals[index];
        slot.0.saturating_record(us);
        slot.1 += 1;
        self.requests += 1;
        if let Outcome::Error(class) = outcome {
            slot.2 += 1;
            *self.errors.entry(class).or_insert(0) += 1;
        }
    }

    /// Records when a job ended (from the request's intended start).
    pub fn record_completion(&mut self, after: Duration) {
        self.completion.saturating_record(micros(after));
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The p99 so far, in microseconds.
    pub fn p99_us(&self) -> u64 {
        self.total.value_at_quantile(0.99)
    }

    /// Records when an SSE answer's first event came (from the request's intended start).
    pub fn record_first_event(&mut self, after: Duration) {
        self.first_event.saturating_record(micros(after));
    }

    /// The report of the run so far, measured over `elapsed`.
    pub fn report(&self, elapsed: Duration, config: serde_json::Value) -> Report {
        let errors = self.errors.values().sum();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let step = self.interval.as_secs_f64();
        Report {
            tool: format!("mcp-load {}", env!("CARGO_PKG_VERSION")),
            config,
            requests: self.requests,
            errors,
            rps: self.requests as f64 / secs,
            duration_s: elapsed.as_secs_f64(),
            latency_ms: Percentiles::of(&self.total),
            error_rate: rate(errors, self.requests),
            errors_by_kind: self.errors.clone(),
            send_lag_ms: Percentiles::of(&self.send_lag),
            sse_answers: self.first_event.len(),
            first_event_ms: Percentiles::of(&self.first_event),
            first_event_histogram: encode(&self.first_event),
            jobs: self.completion.len(),
            completion_ms: Percentiles::of(&self.completion),
            completion_histogram: encode(&self.completion),
            interval_s: step,
            intervals: series(&self.intervals, step),
            histogram: encode(&self.total),
            streams: None,
        }
    }
}

/// The report's series from each interval's histogram, requests and errors.
fn series(intervals: &[(Histogram<u64>, u64, u64)], step: f64) -> Vec<Interval> {
    intervals
        .iter()
        .enumerate()
        .map(|(i, (h, requests, errors))| Interval {
            start_s: i as f64 * step,
            requests: *requests,
            errors: *errors,
            rps: *requests as f64 / step,
            latency_ms: Percentiles::of(h),
            histogram: encode(h),
        })
        .collect()
}

fn rate(errors: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    fn zero() -> Self {
        Self::of(&histogram())
    }

    /// The percentiles of `h` (microseconds) in milliseconds; all zero when empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One interval of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Start, in seconds after the measurement began.
    pub start_s: f64,
    /// Requests that ended in it.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// Requests per second over it.
    pub rps: f64,
    /// Its latency percentiles.
    pub latency_ms: Percentiles,
    /// Its histogram (HdrHistogram V2, base64).
    pub histogram: String,
}

/// A run's report (`--out report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `mcp-load <version>`.
    pub tool: String,
    /// What was run: target, rate model, workload.
    pub config: serde_json::Value,
    /// Requests measured (warm-up excluded).
    pub requests: u64,
    /// Of which failed (see `errors_by_kind`).
    pub errors: u64,
    /// Requests per second over the measured time.
    pub rps: f64,
    /// The measured time, in seconds.
    pub duration_s: f64,
    /// Latency from each request's intended start (open loop) or send (closed loop) to its
    /// answer.
    pub latency_ms: Percentiles,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Errors by class.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// How late the generator sent requests after their intended start (open loop; zero in a
    /// closed loop).
    pub send_lag_ms: Percentiles,
    /// Answers that came as an event stream.
    #[serde(default)]
    pub sse_answers: u64,
    /// For those, the time to their first event (the time to the final response is
    /// `latency_ms`).
    #[serde(default = "Percentiles::zero")]
    pub first_event_ms: Percentiles,
    /// Their histogram (HdrHistogram V2, base64).
    #[serde(default)]
    pub first_event_histogram: String,
    /// Calls submitted as sidecar jobs (`--jobs`) or run as MCP tasks (`--tasks`);
    /// `latency_ms` is then the time to their `202 Accepted` or `CreateTaskResult`.
    #[serde(default)]
    pub jobs: u64,
    /// For those, the time to their result.
    #[serde(default = "Percentiles::zero")]
    pub completion_ms: Percentiles,
    /// Their histogram (HdrHistogram V2, base64).
    #[serde(default)]
    pub completion_histogram: String,
    /// Length of an interval of the series, in seconds.
    pub interval_s: f64,
    /// The series.
    pub intervals: Vec<Interval>,
    /// The whole run's histogram (HdrHistogram V2, base64).
    pub histogram: String,
    /// Standalone SSE streams held open (`--streams`), when there were any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<streams::StreamReport>,
}

/// A histogram as base64 of its HdrHistogram V2 serialisation.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail for a valid histogram.
    let _ = V2Serializer::new().serialize(h, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Why reports could not be read or merged.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A histogram field is not one this tool wrote.
    #[error("{what}: not an encoded histogram ({why})")]
    Histogram {
        /// Which histogram.
        what: String,
        /// Why.
        why: String,
    },
    /// Reports of different interval lengths cannot be aligned.
    #[error(
        "reports have different intervals ({0} s and {1} s): run them with the same --interval"
    )]
    Intervals(f64, f64),
    /// Nothing to merge.
    #[error("no report to merge")]
    Empty,
}

/// Reads a histogram this tool encoded.
pub fn decode(text: &str, what: &str) -> Result<Histogram<u64>, ReportError> {
    let bad = |why: String| ReportError::Histogram {
        what: what.to_owned(),
        why,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| bad(e.to_string()))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| bad(format!("{e:?}")))
}

/// Combines reports of shards that ran at the same time (`--shard i/n` on several machines):
/// histograms added, counts summed, throughputs summed, series aligned by interval.
pub fn merge(reports: &[Report]) -> Result<Report, ReportError> {
    let first = reports.first().ok_or(ReportError::Empty)?;
    let mut total = histogram();
    let mut first_events = histogram();
    let mut completions = histogram();
    let mut intervals: Vec<(Histogram<u64>, u64, u64)> = Vec::new();
    let mut errors_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let (mut requests, mut errors, mut rps, mut duration) = (0, 0, 0.0, 0.0_f64);
    for (n, r) in reports.iter().enumerate() {
        if (r.interval_s - first.interval_s).abs() > 1e-9 {
            return Err(ReportError::Intervals(first.interval_s, r.interval_s));
        }
        let _ = total.add(decode(&r.histogram, &format!("report {n}"))?);
        if !r.first_event_histogram.is_empty() {
            let h = decode(
                &r.first_event_histogram,
                &format!("report {n} first events"),
            )?;
            let _ = first_events.add(h);
        }
        if !r.completion_histogram.is_empty() {
            let h = decode(&r.completion_histogram, &format!("report {n} completions"))?;
            let _ = completions.add(h);
        }
        for (i, interval) in r.intervals.iter().enumerate() {
            while intervals.len() <= i {
                intervals.push((histogram(), 0, 0));
            }
            let h = decode(&interval.histogram, &format!("report {n} interval {i}"))?;
            let _ = intervals[i].0.add(h);
            intervals[i].1 += interval.requests;
            intervals[i].2 += interval.errors;
        }
        for (k, v) in &r.errors_by_kind {
            *errors_by_kind.entry(k.clone()).or_insert(0) += v;
        }
        requests += r.requests;
        errors += r.errors;
        rps += r.rps;
        duration = duration.max(r.duration_s);
    }
    let step = first.interval_s;
    let streams: Vec<_> = reports.iter().filter_map(|r| r.streams.as_ref()).collect();
    let streams = streams::merge(&streams)?;
    Ok(Report {
        tool: first.tool.clone(),
        config: serde_json::json!({
            "merged": reports.iter().map(|r| r.config.clone()).collect::<Vec<_>>(),
        }),
        requests,
        errors,
        rps,
        duration_s: duration,
        latency_ms: Percentiles::of(&total),
        error_rate: rate(errors, requests),
        errors_by_kind,
        // Lags are per generator: the worst shard's.
        send_lag_ms: reports
            .iter()
            .map(|r| r.send_lag_ms)
            .max_by(|a, b| a.p99.total_cmp(&b.p99))
            .unwrap_or(first.send_lag_ms),
        sse_answers: reports.iter().map(|r| r.sse_answers).sum(),
        first_event_ms: Percentiles::of(&first_events),
        first_event_histogram: encode(&first_events),
        jobs: reports.iter().map(|r| r.jobs).sum(),
        completion_ms: Percentiles::of(&completions),
        completion_histogram: encode(&completions),
        interval_s: step,
        intervals: series(&intervals, step),
        histogram: encode(&total),
        streams,
    })
}

/// The report as a Markdown summary (for a CI job summary).
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    out.push_str("### mcp-load\n\n");
    out.push_str("| requests | errors | error rate | rps | p50 | p90 | p99 | p99.9 | max |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let l = &r.latency_ms;
    out.push_str(&format!(
        "| {} | {} | {:.3}% | {:.1} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |\n",
        r.requests,
        r.errors,
        r.error_rate * 100.0,
        r.rps,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max
    ));
    if !r.errors_by_kind.is_empty() {
        out.push_str("\n| error | count |\n|---|---:|\n");
        for (k, v) in &r.errors_by_kind {
            out.push_str(&format!("| `{k}` | {v} |\n"));
        }
    }
    if let Some(s) = &r.streams {
        out.push_str(&streams::markdown(s));
    }
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
