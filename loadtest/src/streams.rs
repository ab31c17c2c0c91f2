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

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{EventReader, Session, Target, is_event_stream};
use crate::report::Outcome;

use crate::report::streams::{Collected, micros};
pub use crate::report::streams::{StreamReport, lines, markdown, merge};

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
        let sse = is_event_stream(response.headers());
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
    async fn read(&self, body: crate::leg::LegBody, sent: Instant) -> &'static str {
        let mut events = EventReader::with_limit(body, MAX_EVENT_BYTES);
        let mut last: Option<Instant> = None;
        loop {
            let event = match events.next().await {
                Ok(Some(event)) => event,
                Ok(None) => return "stream_closed",
                Err(class) => return class,
            };
            let now = Instant::now();
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

impl Collected {
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
}

#[cfg(test)]
#[path = "streams_tests.rs"]
mod tests;
