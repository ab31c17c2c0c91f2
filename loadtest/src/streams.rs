//! Standalone SSE GET streams held open for a whole run (`--streams N`), the traffic a server
//! with many idle or slowly ticking subscribers carries.
//!
//! Each stream is a `GET` with `Accept: text/event-stream` and its session's `Mcp-Session-Id` and
//! `MCP-Protocol-Version` (streams are spread round-robin over the sessions), on a connection of
//! its own: HTTP/1.1 cannot multiplex, so a stream holds its connection for as long as it lives,
//! and the streams have a pool of their own, apart from the requests'. They are opened before the
//! measured run starts, at most [`OPEN_AT_ONCE`] connecting at a time, and when every one has
//! opened or failed the line `streams open: N` goes to stderr (what a script waits for before it
//! measures a server holding N streams).
//!
//! Measured: the time to each stream's `200` head and to its first event, events and their
//! rate, the gap between consecutive events of a stream, and the **delivery latency** of each
//! event that carries its send time (Unix microseconds at a JSON pointer into its data, by
//! default the fixture's [`DEFAULT_TIMESTAMP`]): the receiving clock minus the sending one, so
//! across machines it includes their clock difference. A stream that fails to open counts by
//! class as a request does (`http_405`, `connect`, `timeout`, `reset`); one that ends before the
//! run does counts as `stream_closed` and is not reopened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use http::{HeaderValue, Method, header};
use http_body_util::BodyExt;
use mcp_sidecar::mcp::sse::{EventSplitter, decode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Session, Target};
use crate::report::{Outcome, Percentiles, ReportError, decode as decode_histogram, encode};

/// Where the fixture's tick notifications carry their send time (Unix microseconds).
pub const DEFAULT_TIMESTAMP: &str = "/params/data/sent_unix_us";
/// Streams connecting at once. A connection the server has not yet accepted waits in its listen
/// backlog, which is often only 128 (the fixture's and the sidecar's listeners here, Linux's
/// `somaxconn` before 5.4): thousands of connects at the same instant overflow it, and the
/// dropped SYNs come back as one-second retransmits or connect errors that are the generator's
/// doing, not the server's (seen at 256: open p99 of 1.2 s). Half the common backlog still
/// opens ten thousand streams in seconds.
pub const OPEN_AT_ONCE: usize = 64;
/// Largest event read: a bigger one ends the stream as `too_large` rather than holding
/// unbounded memory per stream.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The streams of a run.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// How many to hold open.
    pub count: usize,
    /// The stream endpoint (its own pool: streams never take the requests' connections).
    pub target: Target,
    /// JSON pointer into an event's data to its send time in Unix microseconds.
    pub timestamp: String,
    /// No request load: the run holds the streams for its duration and sends nothing else.
    pub only: bool,
}

/// What the streams measured (the `streams` object of the JSON report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    /// Streams asked for.
    pub asked: u64,
    /// Of which opened (a 2xx event stream).
    pub opened: u64,
    /// Of which failed to open.
    pub failed: u64,
    /// Errors: those that failed to open and those that ended before the run did.
    pub errors: u64,
    /// Errors by class: `http_NNN`, `connect`, `timeout`, `reset`, `not_sse`, `stream_closed`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Events received during the measured time.
    pub events: u64,
    /// Events per second over the measured time.
    pub events_per_s: f64,
    /// Events that carried a send time.
    pub timed_events: u64,
    /// The measured time, in seconds.
    pub duration_s: f64,
    /// Time from sending the `GET` to the response head.
    pub open_ms: Percentiles,
    /// Its histogram (HdrHistogram V2, base64).
    pub open_histogram: String,
    /// Time from sending the `GET` to the first complete event.
    pub first_event_ms: Percentiles,
    /// Its histogram.
    pub first_event_histogram: String,
    /// Time between consecutive events of one stream.
    pub gap_ms: Percentiles,
    /// Its histogram.
    pub gap_histogram: String,
    /// Receive time minus the event's own send time.
    pub delivery_ms: Percentiles,
    /// Its histogram.
    pub delivery_histogram: String,
}

/// One thing a stream saw, sent to the collector.
enum Seen {
    Opened(Duration),
    Failed(String),
    FirstEvent(Duration),
    Event {
        gap: Option<Duration>,
        delivery: Option<Duration>,
        at: Instant,
    },
    Closed(String),
    /// The measured time starts at this instant (events before it are the warm-up's).
    MeasureFrom(Instant),
}

/// The streams of a run, open and being read.
#[derive(Debug)]
pub struct Held {
    tasks: JoinSet<()>,
    tx: mpsc::UnboundedSender<Seen>,
    collector: tokio::task::JoinHandle<Collected>,
    asked: u64,
}

/// Opens `plan.count` streams spread over `sessions`, at most [`OPEN_AT_ONCE`] connecting at a
/// time, and returns once each has opened or failed (having said so on stderr). Events count
/// from [`Held::measure_from`] on.
pub async fn open(plan: &StreamPlan, sessions: Arc<[Session]>) -> Held {
    let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<bool>();
    let collector = tokio::spawn(async move {
        let mut c = Collected::new();
        // Until the run says when it is measured from, everything is warm-up.
        let mut measure_from = None;
        while let Some(seen) = rx.recv().await {
            match seen {
                Seen::MeasureFrom(at) => measure_from = Some(at),
                seen => c.add(seen, measure_from),
            }
        }
        c
    });
    let slots = Arc::new(Semaphore::new(OPEN_AT_ONCE));
    let timestamp: Arc<str> = plan.timestamp.clone().into();
    let mut tasks = JoinSet::new();
    for i in 0..plan.count {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let stream = Stream {
            target: plan.target.clone(),
            session: sessions[i % sessions.len().max(1)].clone(),
            timestamp: timestamp.clone(),
            tx: tx.clone(),
        };
        let opened = opened_tx.clone();
        tasks.spawn(async move {
            stream.run(permit, opened).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(opened_tx);
    // Every stream says once whether it opened; the channel also ends when every task has
    // dropped its sender, so a task that ended unexpectedly cannot hang this wait.
    let (mut open, mut failed) = (0_u64, 0_u64);
    while let Some(ok) = opened_rx.recv().await {
        if ok {
            open += 1;
        } else {
            failed += 1;
        }
    }
    // The moment a script waits for (`streams open: N`) before it measures the server.
    eprintln!("streams open: {open}");
    if failed > 0 {
        eprintln!("streams failed to open: {failed} (see the report's streams.errors_by_kind)");
    }
    Held {
        tasks,
        tx,
        collector,
        asked: plan.count as u64,
    }
}

impl Held {
    /// Events count from `at` on (the end of the warm-up).
    pub fn measure_from(&self, at: Instant) {
        let _ = self.tx.send(Seen::MeasureFrom(at));
    }

    /// Ends the streams (dropping each closes its connection) and reports what they measured
    /// over `elapsed`, the run's measured time.
    pub async fn finish(mut self, elapsed: Duration) -> StreamReport {
        self.tasks.shutdown().await;
        drop(self.tx);
        let collected = self.collector.await.unwrap_or_else(|_| Collected::new());
        collected.report(self.asked, elapsed)
    }
}

/// One stream's task.
struct Stream {
    target: Target,
    session: Session,
    timestamp: Arc<str>,
    tx: mpsc::UnboundedSender<Seen>,
}

impl Stream {
    /// Opens the stream (holding `permit` until the head came or the open failed, then saying so
    /// on `opened`), then reads its events until it ends or the task is dropped.
    async fn run(
        self,
        permit: tokio::sync::OwnedSemaphorePermit,
        opened: mpsc::UnboundedSender<bool>,
    ) {
        let mut req = self
            .target
            .request(Method::GET, &self.session, Bytes::new());
        let h = req.headers_mut();
        h.remove(header::CONTENT_TYPE);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let sent = Instant::now();
        let deadline = sent + self.target.timeout();
        let response = match self.target.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => {
                self.fail(answer.outcome);
                let _ = opened.send(false);
                return;
            }
        };
        let status = response.status();
        let sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !status.is_success() || !sse {
            let class = if status.is_success() {
                "not_sse".to_owned()
            } else {
                format!("http_{}", status.as_u16())
            };
            self.fail(Outcome::Error(class));
            let _ = opened.send(false);
            return;
        }
        let _ = self.tx.send(Seen::Opened(sent.elapsed()));
        drop(permit);
        let _ = opened.send(true);
        drop(opened);
        let why = self.read(response.into_body(), sent).await;
        let _ = self.tx.send(Seen::Closed(why.to_owned()));
    }

    fn fail(&self, outcome: Outcome) {
        let class = match outcome {
            Outcome::Error(class) => class,
            Outcome::Success => "bad_answer".to_owned(),
        };
        let _ = self.tx.send(Seen::Failed(class));
    }

    /// Reads events until the stream ends; why it ended (`stream_closed` when the server ended
    /// it cleanly).
    async fn read(
        &self,
        mut body: mcp_sidecar::upstream::PooledBody,
        sent: Instant,
    ) -> &'static str {
        let mut splitter = EventSplitter::default();
        let mut pending = BytesMut::new();
        let (mut scanned, mut at_start) = (0, true);
        let mut last: Option<Instant> = None;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return "reset";
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = splitter.find_event_end(&pending[scanned..]) {
                let now = Instant::now();
                let event = pending.split_to(scanned + end);
                scanned = 0;
                let decoded = decode(&event, at_start);
                at_start = false;
                let Some(event) = decoded else {
                    continue;
                };
                if last.is_none() {
                    let _ = self
                        .tx
                        .send(Seen::FirstEvent(now.saturating_duration_since(sent)));
                }
                let delivery = sent_at(&event.data, &self.timestamp)
                    .map(|sent_us| Duration::from_micros(unix_micros().saturating_sub(sent_us)));
                let _ = self.tx.send(Seen::Event {
                    gap: last.map(|l| now.saturating_duration_since(l)),
                    delivery,
                    at: now,
                });
                last = Some(now);
            }
            if pending.len() > MAX_EVENT_BYTES {
                return "too_large";
            }
            scanned = pending.len();
        }
        "stream_closed"
    }
}

/// The send time (Unix microseconds) at `pointer` in an event's JSON data, if it has one.
pub fn sent_at(data: &str, pointer: &str) -> Option<u64> {
    if !data.trim_start().starts_with('{') {
        return None;
    }
    let value: Value = serde_json::from_str(data).ok()?;
    let at = value.pointer(pointer)?;
    at.as_u64()
        .or_else(|| at.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Now, in Unix microseconds (the clock an event's send time is read against).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The collector's totals.
#[derive(Debug)]
struct Collected {
    opened: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    events: u64,
    timed: u64,
    open: Histogram<u64>,
    first_event: Histogram<u64>,
    gap: Histogram<u64>,
    delivery: Histogram<u64>,
}

impl Collected {
    fn new() -> Self {
        Self {
            opened: 0,
            failed: 0,
            errors: BTreeMap::new(),
            events: 0,
            timed: 0,
            open: crate::report::histogram(),
            first_event: crate::report::histogram(),
            gap: crate::report::histogram(),
            delivery: crate::report::histogram(),
        }
    }

    fn add(&mut self, seen: Seen, measure_from: Option<Instant>) {
        match seen {
            Seen::Opened(d) => {
                self.opened += 1;
                self.open.saturating_record(micros(d));
            }
            Seen::Failed(class) => {
                self.failed += 1;
                *self.errors.entry(class).or_insert(0) += 1;
            }
            Seen::FirstEvent(d) => self.first_event.saturating_record(micros(d)),
            // Events of the warm-up are left out, as its requests are.
            Seen::Event { at, .. } if measure_from.is_none_or(|m| at < m) => {}
            Seen::Event { gap, delivery, .. } => {
                self.events += 1;
                if let Some(g) = gap {
                    self.gap.saturating_record(micros(g));
                }
                if let Some(d) = delivery {
                    self.timed += 1;
                    self.delivery.saturating_record(micros(d));
                }
            }
            Seen::Closed(class) => *self.errors.entry(class).or_insert(0) += 1,
            Seen::MeasureFrom(_) => {}
        }
    }

    fn report(&self, asked: u64, elapsed: Duration) -> StreamReport {
        let secs = elapsed.as_secs_f64();
        StreamReport {
            asked,
            opened: self.opened,
            failed: self.failed,
            errors: self.errors.values().sum(),
            errors_by_kind: self.errors.clone(),
            events: self.events,
            events_per_s: self.events as f64 / secs.max(1e-9),
            timed_events: self.timed,
            duration_s: secs,
            open_ms: Percentiles::of(&self.open),
            open_histogram: encode(&self.open),
            first_event_ms: Percentiles::of(&self.first_event),
            first_event_histogram: encode(&self.first_event),
            gap_ms: Percentiles::of(&self.gap),
            gap_histogram: encode(&self.gap),
            delivery_ms: Percentiles::of(&self.delivery),
            delivery_histogram: encode(&self.delivery),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Combines the streams of shards that ran at the same time: counts and rates summed,
/// histograms added.
pub fn merge(parts: &[&StreamReport]) -> Result<Option<StreamReport>, ReportError> {
    if parts.is_empty() {
        return Ok(None);
    }
    let mut c = Collected::new();
    let (mut asked, mut rate, mut duration) = (0, 0.0, 0.0_f64);
    for (n, s) in parts.iter().enumerate() {
        for (h, text, what) in [
            (&mut c.open, &s.open_histogram, "open"),
            (&mut c.first_event, &s.first_event_histogram, "first event"),
            (&mut c.gap, &s.gap_histogram, "gap"),
            (&mut c.delivery, &s.delivery_histogram, "delivery"),
        ] {
            let _ = h.add(decode_histogram(
                text,
                &format!("report {n} streams {what}"),
            )?);
        }
        for (k, v) in &s.errors_by_kind {
            *c.errors.entry(k.clone()).or_insert(0) += v;
        }
        c.opened += s.opened;
        c.failed += s.failed;
        c.events += s.events;
        c.timed += s.timed_events;
        asked += s.asked;
        rate += s.events_per_s;
        duration = duration.max(s.duration_s);
    }
    let mut merged = c.report(asked, Duration::from_secs_f64(duration.max(0.0)));
    // Shards run side by side: their rates add up.
    merged.events_per_s = rate;
    Ok(Some(merged))
}

/// The terminal lines for the streams.
pub fn lines(s: &StreamReport) -> Vec<String> {
    let mut out = vec![
        format!(
            "streams {} asked  {} opened  {} failed  {} errors  events {} ({:.1}/s)",
            s.asked, s.opened, s.failed, s.errors, s.events, s.events_per_s
        ),
        format!(
            "  stream open ms: p50 {:.3}  p99 {:.3}  max {:.3};  first event ms: p50 {:.3}  p99 {:.3}",
            s.open_ms.p50, s.open_ms.p99, s.open_ms.max, s.first_event_ms.p50, s.first_event_ms.p99
        ),
        format!(
            "  event gap ms: p50 {:.3}  p99 {:.3}  max {:.3};  delivery ms ({} timed): p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            s.gap_ms.p50,
            s.gap_ms.p99,
            s.gap_ms.max,
            s.timed_events,
            s.delivery_ms.p50,
            s.delivery_ms.p90,
            s.delivery_ms.p99,
            s.delivery_ms.max
        ),
    ];
    for (kind, n) in &s.errors_by_kind {
        out.push(format!("  stream error {kind}: {n}"));
    }
    out
}

/// The streams as Markdown (the summary's and, escaped, the HTML page's table).
pub fn markdown(s: &StreamReport) -> String {
    let mut out = String::from(
        "\n| streams | opened | failed | errors | events | events/s | open p50 | open p99 | first event p50 | gap p50 | delivery p50 | delivery p99 | delivery max |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    out.push_str(&format!(
        "| {} | {} | {} | {} | {} | {:.1} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |\n",
        s.asked,
        s.opened,
        s.failed,
        s.errors,
        s.events,
        s.events_per_s,
        s.open_ms.p50,
        s.open_ms.p99,
        s.first_event_ms.p50,
        s.gap_ms.p50,
        s.delivery_ms.p50,
        s.delivery_ms.p99,
        s.delivery_ms.max
    ));
    if !s.errors_by_kind.is_empty() {
        out.push_str("\n| stream error | count |\n|---|---:|\n");
        for (k, v) in &s.errors_by_kind {
            out.push_str(&format!("| `{k}` | {v} |\n"));
        }
    }
    out
}

#[cfg(test)]
#[path = "streams_tests.rs"]
mod tests;
