//! What the runner watches while a scenario runs, every [`OBSERVE_EVERY`]: the sidecar's circuit
//! breakers (admin `/breakers`), the requests that reached the backend, and for a managed
//! sidecar whether it is alive and its RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::system::Sut;

/// How often the system is looked at: short against the breakers' periods (seconds) and the
/// fast-fail bounds, so a state change is seen within this long; long enough that the reads
/// (three small loopback requests) cost the machine nothing to speak of.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(25);

/// One breaker as `/breakers` showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerView {
    /// `upstream` or `upstream/tool`.
    pub id: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Times it opened so far.
    pub trips: u64,
    /// While open: how long it stays open, in milliseconds.
    pub open_remaining_ms: Option<u64>,
}

/// The system at one moment.
#[derive(Debug, Clone)]
pub struct Observation {
    /// From the start of the run.
    pub at: Duration,
    /// The breakers (empty when they could not be read).
    pub breakers: Vec<BreakerView>,
    /// Requests that reached the backend so far.
    pub backend_requests: Option<u64>,
    /// A managed sidecar's RSS in bytes.
    pub rss: Option<u64>,
    /// A managed sidecar is running (none: not managed, or being killed or restarted).
    pub alive: Option<bool>,
}

impl Observation {
    /// Whether any breaker is open.
    pub fn open(&self) -> bool {
        self.breakers.iter().any(|b| b.state == "open")
    }
}

/// Looks at `sut` every [`OBSERVE_EVERY`] from `origin` until `stop`, returning what it saw.
pub async fn watch(sut: &Sut, origin: Instant, stop: Arc<AtomicBool>) -> Vec<Observation> {
    let mut seen = Vec::new();
    let mut tick = tokio::time::interval(OBSERVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        seen.push(observe(sut, origin).await);
    }
    seen
}

/// The system now.
pub async fn observe(sut: &Sut, origin: Instant) -> Observation {
    let breakers = match &sut.admin {
        Some(admin) => admin
            .json("/breakers")
            .await
            .map(|v| breakers(&v))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let backend_requests = sut.backend_requests().await;
    // While the timeline holds the sidecar (killing or restarting it), it is not looked at.
    let (rss, alive) = match sut.managed.as_ref().map(|m| m.sidecar.try_lock()) {
        Some(Ok(mut sidecar)) => {
            let alive = sidecar.alive();
            (sidecar.rss_bytes(), Some(alive))
        }
        _ => (None, None),
    };
    Observation {
        at: origin.elapsed(),
        breakers,
        backend_requests,
        rss,
        alive,
    }
}

/// The breakers of a `/breakers` answer.
fn breakers(report: &Value) -> Vec<BreakerView> {
    report
        .get("breakers")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter_map(|b| {
                    Some(BreakerView {
                        id: b.get("id")?.as_str()?.to_owned(),
                        state: b.get("state")?.as_str()?.to_owned(),
                        trips: b.get("trips").and_then(Value::as_u64).unwrap_or(0),
                        open_remaining_ms: b.get("open_remaining_ms").and_then(Value::as_u64),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The sidecar's own count of its breakers' work (`/metrics`), read at the end of a run: the
/// second witness, beside `/breakers`, that the circuit opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BreakerMetrics {
    /// `mcp_sidecar_breaker_transitions_total{to="open"}`, summed over breakers.
    pub opened: u64,
    /// `mcp_sidecar_breaker_rejections_total`, summed over breakers.
    pub rejections: u64,
}

/// The breaker counters of a sidecar's `/metrics` (none when it cannot be read). A managed
/// sidecar restarted by the timeline counts from its restart.
pub async fn breaker_metrics(sut: &Sut) -> Option<BreakerMetrics> {
    let text = sut.admin.as_ref()?.text("/metrics").await?;
    Some(parse_breaker_metrics(&text))
}

/// Sums the two counters in Prometheus's text format. Read by hand: two counters' samples are
/// a line prefix and a last field each, and the sidecar writes the format itself.
pub fn parse_breaker_metrics(text: &str) -> BreakerMetrics {
    let value = |line: &str| {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map_or(0, |v| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = v as u64;
                n
            })
    };
    let mut m = BreakerMetrics::default();
    for line in text.lines() {
        if line.starts_with("mcp_sidecar_breaker_transitions_total{")
            && line.contains("to=\"open\"")
        {
            m.opened += value(line);
        } else if line.starts_with("mcp_sidecar_breaker_rejections_total{")
            || line.starts_with("mcp_sidecar_breaker_rejections_total ")
        {
            m.rejections += value(line);
        }
    }
    m
}
