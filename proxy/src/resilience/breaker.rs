//! The thread-safe circuit breaker: a [`Machine`] behind a mutex, read with tokio's clock (paused
//! in tests), with its metrics and the [`Permit`]s that record outcomes.
//!
//! Half-open probe accounting is exact under concurrency (every decision is taken under the lock),
//! and a permit dropped without an outcome (the client went away) releases its probe slot.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus::{IntCounter, IntCounterVec, IntGauge};
use tokio::time::Instant;

use super::machine::{Machine, Outcome, Rejected, Snapshot, State, Ticket, Transition};
use crate::config::BreakerConfig;

/// Metric handles of one breaker, resolved once so the request path does no label lookups.
#[derive(Debug, Clone)]
pub struct BreakerMetrics {
    /// `mcp_sidecar_breaker_state{upstream,tool}`.
    pub state: IntGauge,
    /// `mcp_sidecar_breaker_rejections_total{upstream,tool}`.
    pub rejections: IntCounter,
    /// `mcp_sidecar_breaker_transitions_total{upstream,tool,from,to}`.
    pub transitions: IntCounterVec,
}

/// A breaker shared by every request it governs.
#[derive(Debug)]
pub struct Breaker {
    /// `upstream` or `upstream/tool-glob`: the `X-Circuit-Open` value and admin path.
    pub id: Arc<str>,
    /// Upstream name.
    pub upstream: Arc<str>,
    /// Tool glob of a tool's own breaker.
    pub tool: Option<Arc<str>>,
    /// Statuses counted as failures.
    pub failure_statuses: Vec<u16>,
    machine: Mutex<Machine>,
    metrics: BreakerMetrics,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(
        upstream: Arc<str>,
        tool: Option<Arc<str>>,
        config: &BreakerConfig,
        metrics: BreakerMetrics,
    ) -> Arc<Self> {
        let id: Arc<str> = match &tool {
            Some(t) => format!("{upstream}/{t}").into(),
            None => upstream.clone(),
        };
        metrics.state.set(State::Closed.gauge());
        Arc::new(Self {
            id,
            upstream,
            tool,
            failure_statuses: config.failure_statuses.clone(),
            machine: Mutex::new(Machine::new(config.into(), Instant::now())),
            metrics,
        })
    }

    /// Admits a request (the permit records its outcome) or refuses it.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Rejected> {
        let mut transitions = Vec::new();
        let result = self.with(|m| m.acquire(Instant::now(), &mut transitions));
        self.publish(&transitions);
        match result {
            Ok(ticket) => Ok(Permit {
                breaker: self.clone(),
                ticket: Some(ticket),
            }),
            Err(rejected) => {
                self.metrics.rejections.inc();
                Err(rejected)
            }
        }
    }

    /// Whether `status` counts as a failure.
    pub fn is_failure_status(&self, status: u16) -> bool {
        self.failure_statuses.contains(&status)
    }

    /// A passing active health check.
    pub fn health_ok(&self) {
        let mut transitions = Vec::new();
        self.with(|m| m.health_ok(Instant::now(), &mut transitions));
        self.publish(&transitions);
    }

    /// Operator override: hold open, or close and forget.
    pub fn force(&self, open: bool) {
        let mut transitions = Vec::new();
        self.with(|m| {
            if open {
                m.force_open(&mut transitions);
            } else {
                m.force_close(Instant::now(), &mut transitions);
            }
        });
        tracing::warn!(breaker = %self.id, open, "circuit forced by an operator");
        self.publish(&transitions);
    }

    /// The current view.
    pub fn snapshot(&self) -> Snapshot {
        let mut transitions = Vec::new();
        let snapshot = self.with(|m| m.snapshot(Instant::now(), &mut transitions));
        self.publish(&transitions);
        snapshot
    }

    fn record(&self, ticket: Ticket, outcome: Option<Outcome>) {
        let mut transitions = Vec::new();
        self.with(|m| m.record(ticket, outcome, Instant::now(), &mut transitions));
        self.publish(&transitions);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Machine) -> R) -> R {
        // Every method leaves the machine consistent before it could panic, so a poisoned lock
        // holds a usable state.
        let mut machine = self.machine.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut machine)
    }

    fn publish(&self, transitions: &[Transition]) {
        for t in transitions {
            self.metrics.state.set(t.to.gauge());
            self.metrics
                .transitions
                .with_label_values(&[
                    &*self.upstream,
                    self.tool.as_deref().unwrap_or(""),
                    t.from.as_str(),
                    t.to.as_str(),
                ])
                .inc();
            match t.to {
                State::Open => {
                    tracing::warn!(breaker = %self.id, from = t.from.as_str(), "circuit opened")
                }
                State::HalfOpen => tracing::info!(breaker = %self.id, "circuit half-open: probing"),
                State::Closed => tracing::info!(breaker = %self.id, "circuit closed"),
            }
        }
    }
}

/// One admitted request's claim on a breaker. Record its outcome with [`Permit::record`]; dropped
/// without one (the client went away, shutdown), it releases its probe slot without counting.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    ticket: Option<Ticket>,
}

impl Permit {
    /// The breaker that admitted the request.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Records the outcome.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.record(ticket, Some(outcome));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.record(ticket, None);
        }
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
