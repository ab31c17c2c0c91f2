//! Readiness: a background task per upstream checks that it accepts TCP connections, and
//! `/readyz` reads the last results (a probe never waits on a backend).
//!
//! The sidecar is ready when it is not shutting down and every upstream passed its last check.
//! Before the first check completes an upstream is `unknown`, which counts as not ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::upstream::Upstream;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Shared readiness state.
#[derive(Debug)]
pub struct Readiness {
    shutting_down: AtomicBool,
    upstreams: Vec<UpstreamHealth>,
}

#[derive(Debug)]
struct UpstreamHealth {
    name: Arc<str>,
    state: AtomicU8,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Readiness {
    /// State for these upstreams, all `unknown`.
    pub fn new(upstreams: &[Arc<Upstream>]) -> Arc<Self> {
        Arc::new(Self {
            shutting_down: AtomicBool::new(false),
            upstreams: upstreams
                .iter()
                .map(|u| UpstreamHealth {
                    name: u.name.clone(),
                    state: AtomicU8::new(UNKNOWN),
                    last_error: std::sync::Mutex::new(None),
                })
                .collect(),
        })
    }

    /// Marks the start of shutdown: readiness fails from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether the sidecar can serve.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down()
            && self
                .upstreams
                .iter()
                .all(|u| u.state.load(Ordering::SeqCst) == UP)
    }

    /// Each component's state, for the `/readyz` body.
    pub fn report(&self) -> Value {
        let upstreams: serde_json::Map<String, Value> = self
            .upstreams
            .iter()
            .map(|u| {
                let state = match u.state.load(Ordering::SeqCst) {
                    UP => "up",
                    DOWN => "down",
                    _ => "unknown",
                };
                let mut entry = json!({ "state": state });
                if let Ok(err) = u.last_error.lock()
                    && let Some(err) = err.as_ref()
                {
                    entry["error"] = Value::String(err.clone());
                }
                (u.name.to_string(), entry)
            })
            .collect();
        json!({
            "ready": self.is_ready(),
            "shutting_down": self.is_shutting_down(),
            "upstreams": upstreams,
        })
    }

    fn record(&self, index: usize, result: Result<(), String>) {
        let Some(u) = self.upstreams.get(index) else {
            return;
        };
        let was = u
            .state
            .swap(if result.is_ok() { UP } else { DOWN }, Ordering::SeqCst);
        match (&result, was) {
            (Ok(()), UP) | (Err(_), DOWN) => {}
            (Ok(()), _) => tracing::info!(upstream = %u.name, "upstream reachable"),
            (Err(e), _) => tracing::warn!(upstream = %u.name, error = %e, "upstream unreachable"),
        }
        if let Ok(mut slot) = u.last_error.lock() {
            *slot = result.err();
        }
    }
}

/// Spawns one reachability check loop per upstream; they stop when `cancel` fires.
pub fn spawn_checks(
    readiness: Arc<Readiness>,
    upstreams: &[Arc<Upstream>],
    metrics: Metrics,
    cancel: CancellationToken,
) {
    for (index, upstream) in upstreams.iter().enumerate() {
        let readiness = readiness.clone();
        let upstream = upstream.clone();
        let metrics = metrics.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(upstream.config.health_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = interval.tick() => {}
                }
                let result = check(&upstream).await;
                metrics
                    .upstream_up
                    .with_label_values(&[&upstream.name])
                    .set(i64::from(result.is_ok()));
                readiness.record(index, result);
            }
        });
    }
}

/// One check: can a TCP connection be opened to the upstream within its connect timeout?
async fn check(upstream: &Upstream) -> Result<(), String> {
    let host = upstream
        .url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = upstream.url.port_or_known_default().unwrap_or(80);
    let timeout: Duration = upstream.config.connect_timeout;
    match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect {host}:{port}: {e}")),
        Err(_) => Err(format!(
            "connect {host}:{port}: timed out after {timeout:?}"
        )),
    }
}
