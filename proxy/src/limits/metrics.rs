//! The limits' own metrics, registered into the sidecar's registry. Labels are bounded: rule
//! names and upstream names come from config; `mode` and `cap` are fixed sets.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::rule::RuleMetrics;
use super::store::StoreMetrics;

/// Every limits metric.
#[derive(Debug, Clone)]
pub struct LimitMetrics {
    /// `mcp_sidecar_rate_limit_admitted_total{rule}`
    pub admitted: IntCounterVec,
    /// `mcp_sidecar_rate_limit_rejected_total{rule,mode}`: `mode` is `enforce` or `shadow`.
    pub rejected: IntCounterVec,
    /// `mcp_sidecar_rate_limit_tracked_keys{rule}`
    pub tracked_keys: IntGaugeVec,
    /// `mcp_sidecar_rate_limit_key_overflow_total{rule}`: decisions on the overflow bucket.
    pub key_overflow: IntCounterVec,
    /// `mcp_sidecar_rate_limit_fallback_total{rule,mode}`: decisions of a global rule taken by
    /// its fallback because Redis could not answer; `mode` is `fail_open` or `fail_closed`.
    pub fallback: IntCounterVec,
    /// `mcp_sidecar_in_flight`: requests in flight through the sidecar (streams excluded).
    pub in_flight: IntGauge,
    /// `mcp_sidecar_upstream_in_flight{upstream}`
    pub upstream_in_flight: IntGaugeVec,
    /// `mcp_sidecar_standalone_streams_open`: standing streams (GET, `subscriptions/listen`) open.
    pub streams_open: IntGauge,
    /// `mcp_sidecar_shed_total{upstream,cap}`: `cap` is `global`, `upstream` or `streams`.
    pub shed: IntCounterVec,
}

impl LimitMetrics {
    /// Creates the metrics (unregistered).
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            admitted: IntCounterVec::new(
                Opts::new(
                    "mcp_sidecar_rate_limit_admitted_total",
                    "JSON-RPC requests a rate-limit rule admitted, by rule.",
                ),
                &["rule"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "mcp_sidecar_rate_limit_rejected_total",
                    "JSON-RPC requests a rate-limit rule rejected (mode=enforce) or would have \
                     rejected (mode=shadow), by rule.",
                ),
                &["rule", "mode"],
            )?,
            tracked_keys: IntGaugeVec::new(
                Opts::new(
                    "mcp_sidecar_rate_limit_tracked_keys",
                    "Keys a rate-limit rule tracks now, by rule.",
                ),
                &["rule"],
            )?,
            key_overflow: IntCounterVec::new(
                Opts::new(
                    "mcp_sidecar_rate_limit_key_overflow_total",
                    "Requests with a new key decided on the rule's shared overflow bucket \
                     because the rule tracked max_keys keys, by rule.",
                ),
                &["rule"],
            )?,
            fallback: IntCounterVec::new(
                Opts::new(
                    "mcp_sidecar_rate_limit_fallback_total",
                    "Requests a global rate-limit rule decided by its fallback because Redis \
                     could not answer (mode=fail_open: on the replica's own bucket; \
                     mode=fail_closed: refused), by rule.",
                ),
                &["rule", "mode"],
            )?,
            in_flight: IntGauge::new(
                "mcp_sidecar_in_flight",
                "Requests in flight through the sidecar (standalone streams excluded).",
            )?,
            upstream_in_flight: IntGaugeVec::new(
                Opts::new(
                    "mcp_sidecar_upstream_in_flight",
                    "Requests in flight to an upstream (standalone streams excluded).",
                ),
                &["upstream"],
            )?,
            streams_open: IntGauge::new(
                "mcp_sidecar_standalone_streams_open",
                "Standing streams (GET, subscriptions/listen) open through the sidecar.",
            )?,
            shed: IntCounterVec::new(
                Opts::new(
                    "mcp_sidecar_shed_total",
                    "Requests refused with 503 because a concurrency cap was reached, by \
                     upstream and cap (global, upstream, streams).",
                ),
                &["upstream", "cap"],
            )?,
        })
    }

    /// Registers every metric into `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.admitted.clone()))?;
        registry.register(Box::new(self.rejected.clone()))?;
        registry.register(Box::new(self.tracked_keys.clone()))?;
        registry.register(Box::new(self.key_overflow.clone()))?;
        registry.register(Box::new(self.fallback.clone()))?;
        registry.register(Box::new(self.in_flight.clone()))?;
        registry.register(Box::new(self.upstream_in_flight.clone()))?;
        registry.register(Box::new(self.streams_open.clone()))?;
        registry.register(Box::new(self.shed.clone()))?;
        Ok(())
    }

    /// The handles of one rule (created now, so the series exist before the first request).
    pub fn rule(&self, name: &str, shadow: bool) -> RuleMetrics {
        let mode = if shadow { "shadow" } else { "enforce" };
        RuleMetrics {
            admitted: self.admitted.with_label_values(&[name]),
            rejected: self.rejected.with_label_values(&[name, mode]),
            store: StoreMetrics {
                tracked: self.tracked_keys.with_label_values(&[name]),
                overflow: self.key_overflow.with_label_values(&[name]),
            },
        }
    }
}
