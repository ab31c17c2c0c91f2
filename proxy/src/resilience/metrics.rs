//! The resilience layer's metrics, registered into the sidecar's registry.
//!
//! Labels are bounded: `upstream` and `tool` (a `[[upstream.tool]]` glob, `""` for an upstream's
//! own breaker) come from config; `reason`, `kind`, `from` and `to` are fixed sets.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::breaker::BreakerMetrics;
use super::machine::State;

/// Every metric of breakers, retries and timeouts.
#[derive(Debug, Clone)]
pub struct ResilienceMetrics {
    /// `mcp_sidecar_breaker_state{upstream,tool}`: 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGaugeVec,
    /// `mcp_sidecar_breaker_transitions_total{upstream,tool,from,to}`.
    pub breaker_transitions: IntCounterVec,
    /// `mcp_sidecar_breaker_rejections_total{upstream,tool}`: requests failed fast.
    pub breaker_rejections: IntCounterVec,
    /// `mcp_sidecar_upstream_failures_total{upstream,reason}`: attempts the breaker counted as
    /// failures (`connect`, `reset`, `timeout`, `status`).
    pub upstream_failures: IntCounterVec,
    /// `mcp_sidecar_retries_total{upstream,reason}`: retries sent (`connect`, `reset`, `status`).
    pub retries: IntCounterVec,
    /// `mcp_sidecar_retry_budget_exhausted_total{upstream}`: retries refused by the budget.
    pub retry_budget_exhausted: IntCounterVec,
    /// `mcp_sidecar_timeouts_total{upstream,kind}`: `connect`, `response`, `stream_idle`.
    pub timeouts: IntCounterVec,
    /// `mcp_sidecar_health_checks_total{upstream,result}`: active checks (`ok`, `fail`).
    pub health_checks: IntCounterVec,
}

impl ResilienceMetrics {
    /// Creates the metrics and registers them into `registry` (`None`: unregistered, for a proxy
    /// built without the resilience layer).
    pub fn new(registry: Option<&Registry>) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let metrics = Self {
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "mcp_sidecar_breaker_state",
                    "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                ),
                &["upstream", "tool"],
            )?,
            breaker_transitions: counter(
                "mcp_sidecar_breaker_transitions_total",
                "Circuit breaker state changes, by from and to state.",
                &["upstream", "tool", "from", "to"],
            )?,
            breaker_rejections: counter(
                "mcp_sidecar_breaker_rejections_total",
                "Requests failed fast (503) by an open or saturated half-open circuit.",
                &["upstream", "tool"],
            )?,
            upstream_failures: counter(
                "mcp_sidecar_upstream_failures_total",
                "Upstream attempts counted as failures by the breaker, by reason.",
                &["upstream", "reason"],
            )?,
            retries: counter(
                "mcp_sidecar_retries_total",
                "Retries sent by the sidecar, by the reason of the failed attempt.",
                &["upstream", "reason"],
            )?,
            retry_budget_exhausted: counter(
                "mcp_sidecar_retry_budget_exhausted_total",
                "Retries not sent because the retry budget was spent.",
                &["upstream"],
            )?,
            timeouts: counter(
                "mcp_sidecar_timeouts_total",
                "Timeouts, by kind (connect, response, stream_idle).",
                &["upstream", "kind"],
            )?,
            health_checks: counter(
                "mcp_sidecar_health_checks_total",
                "Background upstream checks, by result (ok, fail).",
                &["upstream", "result"],
            )?,
        };
        if let Some(registry) = registry {
            registry.register(Box::new(metrics.breaker_state.clone()))?;
            registry.register(Box::new(metrics.breaker_transitions.clone()))?;
            registry.register(Box::new(metrics.breaker_rejections.clone()))?;
            registry.register(Box::new(metrics.upstream_failures.clone()))?;
            registry.register(Box::new(metrics.retries.clone()))?;
            registry.register(Box::new(metrics.retry_budget_exhausted.clone()))?;
            registry.register(Box::new(metrics.timeouts.clone()))?;
            registry.register(Box::new(metrics.health_checks.clone()))?;
        }
        Ok(metrics)
    }

    /// The handles of one breaker (its series start at zero, closed).
    pub fn breaker(&self, upstream: &str, tool: &str) -> BreakerMetrics {
        let state = self.breaker_state.with_label_values(&[upstream, tool]);
        state.set(State::Closed.gauge());
        BreakerMetrics {
            state,
            rejections: self.breaker_rejections.with_label_values(&[upstream, tool]),
            transitions: self.breaker_transitions.clone(),
        }
    }

    /// Pre-creates an upstream's series so dashboards see zeros before the first event.
    pub fn init_upstream(&self, upstream: &str) {
        for kind in ["connect", "response", "stream_idle"] {
            self.timeouts.with_label_values(&[upstream, kind]);
        }
        self.retry_budget_exhausted.with_label_values(&[upstream]);
    }
}
