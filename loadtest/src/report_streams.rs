//! The streams' part of a report (`--streams`): what they measured, merged exactly across
//! shards, and shown as terminal lines and Markdown. Part of `report` (the bottom layer), so the
//! report never imports the `streams` module that measures them.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use serde::{Deserialize, Serialize};

use super::{Percentiles, ReportError, decode as decode_histogram, encode};

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

/// The collector's totals.
#[derive(Debug)]
pub(crate) struct Collected {
    pub(crate) opened: u64,
    pub(crate) failed: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) events: u64,
    pub(crate) timed: u64,
    pub(crate) open: Histogram<u64>,
    pub(crate) first_event: Histogram<u64>,
    pub(crate) gap: Histogram<u64>,
    pub(crate) delivery: Histogram<u64>,
}

impl Collected {
    pub(crate) fn new() -> Self {
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

    pub(crate) fn report(&self, asked: u64, elapsed: Duration) -> StreamReport {
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

/// A duration in whole microseconds, as the histograms count.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
