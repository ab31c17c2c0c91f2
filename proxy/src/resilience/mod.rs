//! Fail fast, recover by itself: circuit breakers, per-tool timeouts and retries around the
//! upstream call, and the hooks the health checks and the admin endpoints use.
//!
//! The request path's tail (`forward::Tail`; where it runs in the order is written in
//! `forward`'s `dispatch`) calls [`admit`] and then sends through the returned [`Call`], which
//! owns what it needs so the tail can run detached:
//!
//! ```text
//! admit:  exempt? (notification / client response / OPTIONS: never blocked, never counted)
//!         -> policy: first `[[upstream.tool]]` whose glob matches the `tools/call` tool, else the
//!            upstream's own settings (timeout, stream idle timeout, idempotent, which breaker)
//!         -> breaker admission: open -> 503 now, without touching the upstream
//! Call::send, per attempt:
//!         -> pooled client, bounded by the (per-tool) response timeout
//!         -> judge: connect error / reset / timeout / failure status = failure, else success;
//!            the breaker records it at response headers (a streamed body that breaks later is
//!            not a breaker failure); the sidecar's own shortage (EMFILE, ENOBUFS... on
//!            connect: `503 local_resources`) is neither: no outcome, no retry
//!         -> retry? connect errors always (nothing was sent); resets and retry statuses only when
//!            idempotent; never timeouts; at most `max_retries`, within the budget, after a
//!            jittered backoff, and only if the breaker admits the retry
//! ```
//!
//! Failures are judged on the HTTP exchange only: a JSON-RPC error or a tool error inside a 200
//! answer is the backend answering, and bodies (JSON or SSE) are never parsed for it.

mod breaker;
mod budget;
mod call;
mod machine;
mod metrics;
mod reload;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

pub use breaker::{Breaker, BreakerMetrics, Permit};
pub use budget::RetryBudget;
pub use call::Call;
pub use machine::{
    Machine, Outcome, Rejected, Settings, Snapshot, State, Ticket, Transition, WINDOW_BUCKETS,
};
pub use metrics::ResilienceMetrics;

use crate::config::UpstreamConfig;
use crate::error::ProxyError;
use crate::glob::glob_match;
use crate::mcp::{Classified, Kind, Message};
use crate::metrics::Metrics;
use crate::upstream::ByName;
use crate::upstream::Upstream;

/// Breakers, budgets and policies of every upstream; shared by the proxy, the health checks and
/// the admin listener.
#[derive(Debug)]
pub struct Resilience {
    upstreams: ByName<Arc<str>, Arc<UpstreamPolicy>>,
    /// Breakers in config order (upstream, then its tools), for the admin report.
    breakers: Vec<Arc<Breaker>>,
    metrics: ResilienceMetrics,
}

/// What the resilience layer knows about one upstream.
#[derive(Debug)]
struct UpstreamPolicy {
    breaker: Option<Arc<Breaker>>,
    failure_statuses: Vec<u16>,
    tools: Vec<ToolPolicy>,
    response_timeout: Duration,
    stream_idle_timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    retry_statuses: Vec<u16>,
    idempotent_methods: Vec<String>,
    budget: RetryBudget,
    health_closes_breaker: bool,
}

#[derive(Debug)]
struct ToolPolicy {
    glob: String,
    timeout: Option<Duration>,
    stream_idle_timeout: Option<Duration>,
    idempotent: bool,
    breaker: ToolBreaker,
}

#[derive(Debug)]
enum ToolBreaker {
    /// The upstream's breaker governs the tool.
    Upstream,
    /// The tool has a circuit of its own (its outcomes do not reach the upstream's).
    Own(Arc<Breaker>),
    /// `breaker = { enabled = false }`: the tool is never broken and never counted.
    Off,
}

impl Resilience {
    /// Builds every upstream's breakers and budget and registers the metrics into the sidecar's
    /// registry.
    pub fn new(upstreams: &[Arc<Upstream>], metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let metrics = ResilienceMetrics::new(Some(metrics.registry()))?;
        let now = Instant::now();
        let mut by_name = ByName::default();
        for upstream in upstreams {
            let policy =
                UpstreamPolicy::new(&upstream.name, &upstream.config, &metrics, now, &|_| None);
            metrics.init_upstream(&upstream.name);
            by_name.insert(upstream.name.clone(), Arc::new(policy));
        }
        Ok(Self::from_policies(upstreams, by_name, metrics))
    }

    /// The layer over `policies` (one per upstream), its breakers listed in config order.
    fn from_policies(
        upstreams: &[Arc<Upstream>],
        policies: ByName<Arc<str>, Arc<UpstreamPolicy>>,
        metrics: ResilienceMetrics,
    ) -> Self {
        let mut breakers: Vec<Arc<Breaker>> = Vec::new();
        for policy in upstreams.iter().filter_map(|u| policies.get(&u.name)) {
            breakers.extend(policy.breaker.iter().cloned());
            breakers.extend(policy.tools.iter().filter_map(|t| match &t.breaker {
                ToolBreaker::Own(b) => Some(b.clone()),
                _ => None,
            }));
        }
        Self {
            upstreams: policies,
            breakers,
            metrics,
        }
    }

    /// The metrics (for the stream idle timeout counter and the health checks).
    pub fn metrics(&self) -> &ResilienceMetrics {
        &self.metrics
    }

    /// A passing active health check of `upstream`: counts as a probe success for its half-open
    /// breaker (when `health_check.closes_breaker`).
    pub fn health_ok(&self, upstream: &str) {
        if let Some(p) = self.upstreams.get(upstream)
            && p.health_closes_breaker
            && let Some(b) = &p.breaker
        {
            b.health_ok();
        }
    }

    /// The breaker named `id` (`upstream` or `upstream/tool-glob`).
    pub fn breaker(&self, id: &str) -> Option<&Arc<Breaker>> {
        self.breakers.iter().find(|b| &*b.id == id)
    }

    /// `GET /breakers`: every breaker's state.
    pub fn report(&self) -> Value {
        let breakers: Vec<Value> = self.breakers.iter().map(|b| breaker_json(b)).collect();
        json!({ "breakers": breakers })
    }

    /// `POST /breakers/{id}/open|close`: forces a breaker; its new state, or `None` if unknown.
    pub fn force(&self, id: &str, open: bool) -> Option<Value> {
        let breaker = self.breaker(id)?;
        breaker.force(open);
        Some(breaker_json(breaker))
    }
}

/// One breaker in the admin report.
pub fn breaker_json(b: &Breaker) -> Value {
    let s = b.snapshot();
    json!({
        "id": &*b.id,
        "upstream": &*b.upstream,
        "tool": b.tool.as_deref(),
        "state": s.state.as_str(),
        "forced": s.forced,
        "consecutive_failures": s.consecutive_failures,
        "window": { "requests": s.window_requests, "failures": s.window_failures },
        "trips": s.trips,
        "open_remaining_ms": s.open_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "probes_in_flight": s.probes_in_flight,
        "probe_successes": s.probe_successes,
    })
}

/// A breaker a config reload keeps, asked for by id (`upstream` or `upstream/tool-glob`) and
/// settings: `None` builds a new one.
type KeepBreaker<'a> = dyn Fn(BreakerKey<'_>) -> Option<Arc<Breaker>> + 'a;

/// What identifies a breaker across reloads: where it sits and how it is set.
#[derive(Debug, Clone, Copy)]
struct BreakerKey<'a> {
    upstream: &'a str,
    tool: Option<&'a str>,
    settings: &'a crate::config::BreakerConfig,
}

impl UpstreamPolicy {
    fn new(
        name: &Arc<str>,
        c: &UpstreamConfig,
        metrics: &ResilienceMetrics,
        now: Instant,
        keep: &KeepBreaker<'_>,
    ) -> Self {
        let breaker = c.breaker.enabled.then(|| {
            keep(BreakerKey {
                upstream: name,
                tool: None,
                settings: &c.breaker,
            })
            .unwrap_or_else(|| {
                Breaker::new(name.clone(), None, &c.breaker, metrics.breaker(name, ""))
            })
        });
        let tools = c
            .tool
            .iter()
            .map(|t| {
                let breaker = match &t.breaker {
                    None => ToolBreaker::Upstream,
                    Some(o) => {
                        let own = o.apply(&c.breaker);
                        if own.enabled {
                            let key = BreakerKey {
                                upstream: name,
                                tool: Some(&t.name),
                                settings: &own,
                            };
                            ToolBreaker::Own(keep(key).unwrap_or_else(|| {
                                let glob: Arc<str> = t.name.as_str().into();
                                let m = metrics.breaker(name, &t.name);
                                Breaker::new(name.clone(), Some(glob), &own, m)
                            }))
                        } else {
                            ToolBreaker::Off
                        }
                    }
                };
                ToolPolicy {
                    glob: t.name.clone(),
                    timeout: t.timeout,
                    stream_idle_timeout: t.stream_idle_timeout,
                    idempotent: t.idempotent,
                    breaker,
                }
            })
            .collect();
        let r = &c.retry;
        Self {
            breaker,
            failure_statuses: c.breaker.failure_statuses.clone(),
            tools,
            response_timeout: c.response_timeout,
            stream_idle_timeout: c.stream_idle_timeout,
            max_retries: r.max_retries,
            backoff: r.backoff,
            max_backoff: r.max_backoff,
            retry_statuses: r.statuses.clone(),
            idempotent_methods: r.idempotent_methods.clone(),
            budget: RetryBudget::new(r.budget_ratio, r.budget_min_per_second, r.budget_ttl, now),
            health_closes_breaker: c.health_check.closes_breaker,
        }
    }

    fn tool(&self, name: &str) -> Option<&ToolPolicy> {
        self.tools.iter().find(|t| glob_match(&t.glob, name))
    }

    /// Whether sending `m` twice is harmless.
    fn idempotent(&self, m: &Message) -> bool {
        let Some(method) = m.method.as_deref() else {
            return false;
        };
        if method == "tools/call" {
            return m
                .tool
                .as_deref()
                .and_then(|t| self.tool(t))
                .is_some_and(|t| t.idempotent);
        }
        self.idempotent_methods.iter().any(|i| i == method)
    }
}

/// The tool of a single `tools/call` request.
fn called_tool(classified: Option<&Classified>) -> Option<&str> {
    let m = classified?.single()?;
    (m.kind == Kind::Request && m.method.as_deref() == Some("tools/call"))
        .then_some(m.tool.as_deref())
        .flatten()
}

/// Breaker admission and policy for one request. `Err` is the 503 of an open circuit.
///
/// Notifications, client responses and `OPTIONS` are exempt: they are never refused and never
/// counted (a notification such as `notifications/cancelled` must always reach the backend). CORS
/// preflights never get here: the sidecar answers them ([`crate::cors`]).
pub fn admit(
    resilience: Option<&Arc<Resilience>>,
    upstream: &Upstream,
    classified: Option<&Classified>,
    method: &Method,
) -> Result<Call, ProxyError> {
    let Some((r, policy)) =
        resilience.and_then(|r| r.upstreams.get(&upstream.name).map(|p| (r, p)))
    else {
        return Ok(Call::plain(upstream));
    };
    let governed = match *method {
        Method::POST => classified.is_some_and(Classified::has_request),
        Method::GET | Method::DELETE => true,
        _ => false,
    };
    let tool = called_tool(classified).and_then(|t| policy.tool(t));
    let breaker = if governed {
        match tool.map(|t| &t.breaker) {
            Some(ToolBreaker::Own(b)) => Some(b),
            Some(ToolBreaker::Off) => None,
            Some(ToolBreaker::Upstream) | None => policy.breaker.as_ref(),
        }
    } else {
        None
    };
    let permit =
        match breaker {
            Some(b) => Some(b.try_acquire().map_err(|Rejected { retry_after }| {
                ProxyError::CircuitOpen {
                    circuit: b.id.to_string(),
                    upstream: upstream.name.to_string(),
                    retry_after,
                }
            })?),
            None => None,
        };
    let idempotent = *method == Method::POST
        && classified.is_some_and(|c| {
            c.messages
                .iter()
                .all(|m| m.kind == Kind::Request && policy.idempotent(m))
        });
    Ok(Call {
        timeout: tool
            .and_then(|t| t.timeout)
            .unwrap_or(policy.response_timeout),
        stream_idle_timeout: tool
            .and_then(|t| t.stream_idle_timeout)
            .unwrap_or(policy.stream_idle_timeout),
        idempotent,
        breaker: breaker.cloned(),
        permit,
        policy: Some(policy.clone()),
        resilience: Some(r.clone()),
    })
}

/// Percent-decodes an admin path segment (`%2A` -> `*`); `None` if malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_ids_are_percent_decoded() {
        assert_eq!(percent_decode("u/crawl_%2A").as_deref(), Some("u/crawl_*"));
        assert_eq!(percent_decode("a%3Fb").as_deref(), Some("a?b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }
}
