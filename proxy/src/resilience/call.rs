//! One admitted request's trip to the upstream: attempts bounded by the (per-tool) response
//! timeout, each judged for the breaker, and retried only where that is safe.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::Body;
use tokio::time::Instant;

use super::breaker::{Breaker, Permit};
use super::machine::Outcome;
use super::{Resilience, ResilienceMetrics, UpstreamPolicy};
use crate::body::{ProxyBody, body_read_timeout, full};
use crate::error::ProxyError;
use crate::error::error_chain;
use crate::local_resources::LocalResource;
use crate::metrics::{self, Metrics};
use crate::trace::{self, Tracing};
use crate::upstream::h1::ClientError;
use crate::upstream::{PoolError, PooledBody, Unsent, Upstream};

/// An admitted request: its breaker permit and the policy that applies to it. Owns what it
/// needs (shared handles, no borrows), so a detached tail (a job) can carry it to its task.
#[derive(Debug)]
pub struct Call {
    pub(super) timeout: Duration,
    pub(super) stream_idle_timeout: Duration,
    pub(super) idempotent: bool,
    pub(super) breaker: Option<Arc<Breaker>>,
    pub(super) permit: Option<Permit>,
    pub(super) policy: Option<Arc<UpstreamPolicy>>,
    pub(super) resilience: Option<Arc<Resilience>>,
}

/// Why an attempt failed (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Reset,
    Timeout,
    Status,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Status => "status",
        }
    }
}

/// What is needed to send the request again.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Replay {
    fn request(&self) -> Request<ProxyBody> {
        let mut req = Request::new(full(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

impl Call {
    /// A call without breaker or retries, with the upstream's own timeouts.
    pub(super) fn plain(upstream: &Upstream) -> Self {
        Self {
            timeout: upstream.config.response_timeout,
            stream_idle_timeout: upstream.config.stream_idle_timeout,
            idempotent: false,
            breaker: None,
            permit: None,
            policy: None,
            resilience: None,
        }
    }

    /// The statuses that count as the backend failing: the breaker's, else the upstream's.
    fn failure_statuses(&self) -> &[u16] {
        match (&self.breaker, &self.policy) {
            (Some(b), _) => &b.failure_statuses,
            (None, Some(p)) => &p.failure_statuses,
            (None, None) => &[],
        }
    }

    fn metrics(&self) -> Option<&ResilienceMetrics> {
        self.resilience.as_deref().map(Resilience::metrics)
    }

    /// The idle timeout for a streamed answer (the tool's, else the upstream's).
    pub fn stream_idle_timeout(&self) -> Duration {
        self.stream_idle_timeout
    }

    /// The response timeout (the tool's, else the upstream's).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends the request, retrying where safe. A request that never left (no connection could be
    /// made) comes back from the pool and is sent again as it is; one that may have reached the
    /// backend is sent again only when idempotent, rebuilt from `replay` (the POST body as read)
    /// or an empty body, so only those keep a copy of their headers.
    pub async fn send(
        mut self,
        upstream: &Upstream,
        metrics: &Metrics,
        tracing: Option<&Tracing>,
        parts: Parts,
        body: ProxyBody,
        replay: Option<Bytes>,
    ) -> Result<Response<PooledBody>, ProxyError> {
        let mut permit = self.permit.take();
        // Every attempt is a child of the span the request's `traceparent` names.
        let parent = tracing.map(|t| (t, t.attempts_parent(&parts.headers)));
        let max_retries = self.policy.as_ref().map_or(0, |p| p.max_retries);
        let replay = (max_retries > 0 && self.idempotent)
            .then(|| replay.or_else(|| body.is_end_stream().then(Bytes::new)))
            .flatten()
            .map(|body| Replay {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                version: parts.version,
                headers: parts.headers.clone(),
                body,
            });
        if let Some(p) = &self.policy {
            p.budget.deposit(Instant::now());
        }
        let mut req = Request::from_parts(parts, body);
        let mut retries = 0;
        loop {
            let span = parent
                .as_ref()
                .map(|(t, cx)| t.attempt(cx, &mut req, &upstream.name, retries));
            let (result, unsent) = await_in_place!(attempt(
                upstream,
                metrics,
                self.metrics(),
                req,
                self.timeout
            ));
            if let Some(span) = span {
                span.end(match &result {
                    Ok(response) => Ok(response.status()),
                    Err(err) => Err(trace::Failed {
                        reason: err.reason(),
                        detail: err,
                    }),
                });
            }
            if let Err(
                ProxyError::LocalResourceExhausted { .. }
                | ProxyError::RequestBodyTimeout(_)
                | ProxyError::BadRequest(_),
            ) = &result
            {
                // The sidecar's own shortage, or the client's body failing while it was streamed
                // to the backend, says nothing about the backend: the permit goes back without an
                // outcome, and a retry would meet the same shortage or have no body to send.
                drop(permit.take());
                return result;
            }
            let failure = self.judge(&result);
            if let (Some(f), Some(m)) = (failure, self.metrics()) {
                m.upstream_failures
                    .with_label_values(&[&upstream.name, f.label()])
                    .inc();
            }
            if let Some(permit) = permit.take() {
                permit.record(if failure.is_some() {
                    Outcome::Failure
                } else {
                    Outcome::Success
                });
            }
            let (Some(policy), Some(m)) = (self.policy.as_deref(), self.metrics()) else {
                return result;
            };
            let Some(reason) = self.retry_reason(&result, policy) else {
                return result;
            };
            let next = match (unsent, &replay) {
                (Some(unsent), _) => unsent,
                (None, Some(replay)) => replay.request(),
                (None, None) => return result,
            };
            if retries >= max_retries {
                return result;
            }
            if !policy.budget.try_withdraw(Instant::now()) {
                m.retry_budget_exhausted
                    .with_label_values(&[&upstream.name])
                    .inc();
                tracing::debug!(reason = reason.label(), "retry budget spent; not retrying");
                return result;
            }
            tokio::time::sleep(backoff(policy, retries)).await;
            if let Some(b) = &self.breaker {
                match b.try_acquire() {
                    Ok(p) => permit = Some(p),
                    // The circuit opened meanwhile: the retry would be refused anyway.
                    Err(_) => return result,
                }
            }
            drop(result);
            retries += 1;
            m.retries
                .with_label_values(&[&upstream.name, reason.label()])
                .inc();
            tracing::debug!(
                retry = retries,
                reason = reason.label(),
                "retrying upstream request"
            );
            req = next;
        }
    }

    fn judge(&self, result: &Result<Response<PooledBody>, ProxyError>) -> Option<Failure> {
        match result {
            Ok(resp) => self
                .failure_statuses()
                .contains(&resp.status().as_u16())
                .then_some(Failure::Status),
            Err(ProxyError::UpstreamUnreachable { .. }) => Some(Failure::Connect),
            Err(ProxyError::UpstreamTimeout { .. }) => Some(Failure::Timeout),
            Err(_) => Some(Failure::Reset),
        }
    }

    /// Why the attempt may be retried, if it may: connect errors always (nothing was sent); a
    /// reset or a retry status only for idempotent requests (the backend may have acted on it); a
    /// timeout never (the caller has already waited the whole timeout once).
    fn retry_reason(
        &self,
        result: &Result<Response<PooledBody>, ProxyError>,
        policy: &UpstreamPolicy,
    ) -> Option<Failure> {
        match result {
            Err(ProxyError::UpstreamUnreachable { .. }) => Some(Failure::Connect),
            Err(ProxyError::UpstreamTimeout { .. }) => None,
            Err(_) => self.idempotent.then_some(Failure::Reset),
            Ok(resp) => (self.idempotent
                && policy.retry_statuses.contains(&resp.status().as_u16()))
            .then_some(Failure::Status),
        }
    }
}

/// Full jitter: a random wait up to `backoff * 2^retry`, capped at `max_backoff`.
fn backoff(policy: &UpstreamPolicy, retry: u32) -> Duration {
    let ceiling = policy
        .backoff
        .saturating_mul(1u32 << retry.min(16))
        .min(policy.max_backoff);
    ceiling.mul_f64(random_unit())
}

/// A random number in [0, 1): std's per-process random hash keys are enough for jitter.
fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// One exchange bounded by `timeout`; failures are mapped and counted. A request that never left
/// comes back with the error.
async fn attempt(
    upstream: &Upstream,
    metrics: &Metrics,
    resilience: Option<&ResilienceMetrics>,
    req: Request<ProxyBody>,
    timeout: Duration,
) -> (
    Result<Response<PooledBody>, ProxyError>,
    Option<Request<ProxyBody>>,
) {
    // tokio's clock: the deadline and the duration both follow a paused test clock.
    let started = tokio::time::Instant::now();
    let result = await_in_place!(upstream.client.send(req, started + timeout));
    let errors = |kind: &str| {
        metrics
            .upstream_errors
            .with_label_values(&[&upstream.name, kind])
            .inc();
    };
    let timeouts = |kind: &str| {
        if let Some(m) = resilience {
            m.timeouts.with_label_values(&[&upstream.name, kind]).inc();
        }
    };
    match result {
        Ok(response) => {
            upstream
                .metrics
                .upstream_duration
                .observe(started.elapsed().as_secs_f64());
            (Ok(response), None)
        }
        Err(Unsent {
            error: PoolError::Timeout,
            ..
        }) => {
            errors("timeout");
            timeouts("response");
            (
                Err(ProxyError::UpstreamTimeout {
                    upstream: upstream.name.to_string(),
                    after: timeout,
                }),
                None,
            )
        }
        Err(Unsent { error, request }) => {
            // The sidecar's own shortage first: it is not the backend's connect error.
            let local = error.is_connect().then(|| LocalResource::find(&error));
            if let Some(kind) = local.flatten() {
                metrics
                    .local_resource_errors
                    .with_label_values(&[kind.label(), metrics::OP_CONNECT])
                    .inc();
                let upstream = upstream.name.to_string();
                return (
                    Err(ProxyError::LocalResourceExhausted { upstream, kind }),
                    None,
                );
            }
            // The client's body failed (stalled past the body read timeout, cut, malformed)
            // while it was streamed: the client's fault, never the backend's.
            if let PoolError::Request(ClientError::RequestBody(cause)) = &error {
                let mapped = match body_read_timeout(cause.as_ref()) {
                    Some(timeout) => ProxyError::RequestBodyTimeout(timeout),
                    None => ProxyError::BadRequest(format!(
                        "reading request body: {}",
                        error_chain(cause.as_ref())
                    )),
                };
                return (Err(mapped), None);
            }
            let detail = error_chain(&error);
            let mapped = if error.is_connect() {
                errors("connect");
                if is_timeout(&error) {
                    timeouts("connect");
                }
                ProxyError::UpstreamUnreachable {
                    upstream: upstream.name.to_string(),
                    detail,
                }
            } else {
                errors("reset");
                ProxyError::UpstreamFailed {
                    upstream: upstream.name.to_string(),
                    detail,
                }
            };
            (Err(mapped), request)
        }
    }
}

/// Whether an error was caused by a timeout (the connector's connect timeout is an
/// `io::ErrorKind::TimedOut` somewhere in the chain).
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_ceiling() {
        for _ in 0..1000 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x));
        }
        let distinct: std::collections::HashSet<u64> =
            (0..100).map(|_| random_unit().to_bits()).collect();
        assert!(distinct.len() > 90, "jitter is not constant");
    }

    #[test]
    fn timeouts_are_found_in_the_error_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp connect error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Outer(std::io::Error::new(std::io::ErrorKind::TimedOut, "elapsed"));
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_timeout(&timed_out));
        assert!(!is_timeout(&refused));
    }
}
