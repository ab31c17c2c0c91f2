//! The tail of the request path: upstream request headers, breaker admission, the send (with
//! the per-tool timeout and safe retries) and the response phase. [`Tail`] owns everything it
//! needs (shared handles, the head, the body), so the live path runs it right away and a job task
//! can run it later, detached from the request.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;

use crate::auth::Auth;
use crate::body::rewrite::{self, MessageRewrite, Rewrites, Target};
use crate::body::{BoxError, EndpointRewrite, EndpointRewriteBody, ProxyBody, SseBody};
use crate::error::ProxyError;
use crate::exchange::{Exchange, Facts};
use crate::headers::{self, ForwardContext};
use crate::limits::{self, Held};
use crate::mcp::Classified;
use crate::metrics::Metrics;
use crate::resilience::{self, Resilience};
use crate::rpc_metrics::ToolLearner;
use crate::tasks::{Tasks, advert::ADVERTISED};
use crate::upstream::{PooledBody, Upstream};

/// What the tail needs from the sidecar, shared by every request.
#[derive(Debug, Clone)]
pub struct Services {
    /// The sidecar's metrics.
    pub metrics: Metrics,
    /// Credentials for the backend, claim headers and the `tools/list` filter.
    pub auth: Arc<Auth>,
    /// Breakers, per-tool timeouts and retries (without: one attempt, the upstream's timeouts).
    pub resilience: Option<Arc<Resilience>>,
    /// The MCP Tasks facade, for what it adds to answers (without: nothing is added).
    pub tasks: Option<Tasks>,
    /// OpenTelemetry spans (without: none, and no trace field is read or written).
    pub tracing: Option<Arc<crate::trace::Tracing>>,
}

/// One admitted request's way to the upstream and back, owning all it needs.
#[derive(Debug)]
pub struct Tail {
    /// The sidecar's shared services.
    pub services: Arc<Services>,
    /// Where the request goes (the upstream `ex` routed to).
    pub upstream: Arc<Upstream>,
    /// The request as the phases left it; its head is rewritten into the upstream request.
    pub ex: Exchange,
    /// The upstream URI the path maps to.
    pub uri: Uri,
    /// The request body (the POST body as read, or the client's stream). The POST body's
    /// bytes are also in `ex.body`, for a retry.
    pub body: ProxyBody,
    /// The request id sent upstream.
    pub request_id: HeaderValue,
    /// Permits and `RateLimit` fields from the limits; they ride on the answer's body.
    pub held: Held,
}

impl Tail {
    /// Admits at the breaker, prepares the upstream headers, sends and builds the answer.
    /// Returns the answer (and whether it is an event stream) or the error that ends the
    /// request, with the [`Facts`] the answer and the log line need.
    pub async fn run(self) -> (Result<(Response<ProxyBody>, bool), ProxyError>, Facts) {
        let Exchange {
            mut head,
            conn,
            upstream: routed,
            origin: _,
            classified,
            body: replay,
            principal,
        } = self.ex;
        let facts = Facts {
            upstream: routed,
            classified,
            principal,
        };
        let upstream = &self.upstream;
        let services = &self.services;
        // Circuit breaker admission first (after authorization and rate limits, so refused
        // requests never count against the backend), before anything is built or sent.
        let call = match resilience::admit(
            services.resilience.as_ref(),
            upstream,
            facts.classified.as_ref(),
            &head.method,
        ) {
            Ok(call) => call,
            Err(err) => return (Err(err), facts),
        };
        let is_get = head.method == Method::GET;
        head.uri = self.uri;
        head.version = http::Version::HTTP_11;
        headers::prepare_upstream_request(
            &mut head.headers,
            &ForwardContext {
                client_ip: &conn.forwarded_for,
                client_proto: if conn.tls { "https" } else { "http" },
                request_id: &self.request_id,
            },
        );
        // The client's credential stays here; the backend gets its own and the claim headers.
        services.auth.prepare_upstream_headers(
            upstream,
            facts.principal.as_deref(),
            &mut head.headers,
        );
        // Decided before the head goes: the Tasks additions depend on the request's revision.
        let rewrites = answer_rewrites(services, upstream, &facts, &head.headers);
        // A GET's URI is kept for the legacy endpoint rewrite (a cheap clone: shared bytes).
        let get_uri = is_get.then(|| head.uri.clone());
        let awaits = if is_get {
            Awaits::GetStream
        } else if facts
            .classified
            .as_ref()
            .is_some_and(Classified::opens_subscription)
        {
            Awaits::Subscription
        } else {
            Awaits::Answer
        };
        let idle_timeout = call.stream_idle_timeout();
        let sent = await_in_place!(call.send(
            upstream,
            &services.metrics,
            services.tracing.as_deref(),
            head,
            self.body,
            replay
        ));
        let response = match sent {
            Ok(response) => response,
            Err(err) => return (Err(err), facts),
        };
        let mut held = self.held;
        let (response, sse) = respond(
            upstream,
            response,
            get_uri.as_ref(),
            Silence {
                awaits,
                idle_timeout,
            },
            &mut held,
        );
        // `tools/list` answers show only the tools the caller may call; the Tasks facade adds
        // its capability and `taskSupport`.
        let response = match rewrites {
            Some((target, rewrites)) if sse || matches!(target, Target::Ids(_)) => {
                rewrite::apply(response, sse, target, rewrites)
            }
            _ => response,
        };
        (Ok((response, sse)), facts)
    }
}

/// What the answer's JSON-RPC responses need rewritten: the `tools/list` filter of the
/// caller's rules and the Tasks facade's additions, and which responses they apply to (the ids
/// of the requests they concern; by shape on a GET stream, where only the filter applies).
fn answer_rewrites(
    services: &Services,
    upstream: &Arc<Upstream>,
    facts: &Facts,
    headers: &http::HeaderMap,
) -> Option<(Target, Rewrites)> {
    let viewer = services
        .auth
        .tools_filter(upstream, facts.principal.as_ref());
    let advert = services
        .tasks
        .as_ref()
        .and_then(|t| t.advert(upstream, facts.classified.as_ref(), headers));
    // The tool labels of the metrics are learned from the backend's own `tools/list` answers
    // (POSTs only; none once the upstream's labels are all given). Other requests pay one scan
    // of their (usually one) messages' methods.
    let lists_tools = facts.classified.as_ref().is_some_and(|c| {
        c.messages.iter().any(|m| {
            m.kind == crate::mcp::Kind::Request && m.method.as_deref() == Some("tools/list")
        })
    });
    let learner = lists_tools
        .then(|| upstream.metrics.rpc.learner())
        .flatten();
    if viewer.is_none() && advert.is_none() && learner.is_none() {
        return None;
    }
    let target = match &facts.classified {
        Some(c) => {
            let ids: Vec<_> = c
                .messages
                .iter()
                .filter(|m| m.kind == crate::mcp::Kind::Request)
                .filter(|m| {
                    m.method.as_deref().is_some_and(|method| {
                        ((viewer.is_some() || learner.is_some()) && method == "tools/list")
                            || (advert.is_some() && ADVERTISED.contains(&method))
                    })
                })
                .filter_map(|m| m.id.clone())
                .collect();
            if ids.is_empty() {
                return None;
            }
            Target::Ids(ids)
        }
        None => Target::Shape,
    };
    let mut rewrites: Vec<Arc<dyn MessageRewrite>> = Vec::with_capacity(3);
    // First: it must see the backend's whole list, before the filter below shrinks it.
    if let Some(l) = learner.filter(|_| matches!(target, Target::Ids(_))) {
        rewrites.push(Arc::new(Learn(l)));
    }
    if let Some(v) = viewer {
        rewrites.push(Arc::new(v));
    }
    // Not on GET streams: the facade answers task calls on POSTs only.
    if let Some(a) = advert.filter(|_| matches!(target, Target::Ids(_))) {
        rewrites.push(Arc::new(a));
    }
    (!rewrites.is_empty()).then_some((target, Rewrites(rewrites)))
}

/// The metrics' tool-name learner as an answer rewrite that reads and never changes.
struct Learn(ToolLearner);

impl MessageRewrite for Learn {
    fn rewrite(&self, message: &mut serde_json::Value) -> bool {
        self.0.learn_from(message);
        false
    }
}

/// The response phase: header hygiene and the streaming body wrappers.
fn respond(
    upstream: &Upstream,
    response: Response<PooledBody>,
    get_uri: Option<&Uri>,
    silence: Silence,
    held: &mut Held,
) -> (Response<ProxyBody>, bool) {
    let (mut parts, body) = response.into_parts();
    let sse = headers::is_event_stream(&parts.headers) && parts.status == StatusCode::OK;
    headers::prepare_downstream_response(&mut parts.headers, sse);
    // The permits ride on the body: a streamed response holds its slots until it ends.
    let permits = held.take_for(&mut parts.headers);
    let config = &upstream.config;
    // A length-delimited answer is finite: it goes out with the backend's framing, byte for
    // byte (no keepalive comments), and keeps the idle timeout like any answer.
    let finite = body.size_hint().exact().is_some();
    let keepalive =
        (sse && !finite && !config.sse_keepalive.is_zero()).then_some(config.sse_keepalive);
    let idle_timeout =
        (!silence.is_normal(sse, finite, parts.status)).then_some(silence.idle_timeout);
    let body = body.map_err(BoxError::from);
    // A legacy HTTP+SSE backend announces its POST URL in its own path space; the client must
    // be sent back through our mount instead.
    let rewrite = get_uri
        .filter(|_| sse && upstream.base_path != upstream.mount)
        .and_then(|uri| url::Url::parse(&uri.to_string()).ok())
        .map(|url| EndpointRewrite::new(url, &upstream.base_path, &upstream.mount));
    // One box each; the rewrite changes the length, so that stream is re-framed (chunked).
    let body: ProxyBody = match rewrite {
        Some(rewrite) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            hold(
                SseBody::new(
                    EndpointRewriteBody::new(body, rewrite),
                    keepalive,
                    idle_timeout,
                ),
                permits,
            )
        }
        None => hold(SseBody::new(body, keepalive, idle_timeout), permits),
    };
    (Response::from_parts(parts, body), sse)
}

/// What a request waits for, which decides what silence on its answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Awaits {
    /// An answer the client is waiting on (a POST's result, a DELETE's status).
    Answer,
    /// A GET: its SSE answer is a standing stream (Streamable HTTP's standalone stream, the
    /// legacy `GET /sse`), silent whenever the server has nothing to say.
    GetStream,
    /// `subscriptions/listen` (2026-07-28): its answer is a standing stream, SSE or not.
    Subscription,
}

/// How long the backend may stay silent on an answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Silence {
    pub(super) awaits: Awaits,
    /// `stream_idle_timeout` of the upstream (or the tool).
    pub(super) idle_timeout: std::time::Duration,
}

impl Silence {
    /// Whether silence is normal on this answer, so no idle timeout applies: an open-ended 200
    /// answer to a request that opens a standing stream. Such a stream lives as long as both
    /// ends do (TCP keepalive and write failures find a dead peer); every other answer, a
    /// length-delimited one included, is cut after `idle_timeout` of backend silence.
    pub(super) fn is_normal(&self, sse: bool, finite: bool, status: StatusCode) -> bool {
        if finite || status != StatusCode::OK {
            return false;
        }
        match self.awaits {
            Awaits::Answer => false,
            Awaits::GetStream => sse,
            Awaits::Subscription => true,
        }
    }
}

/// `body`, holding `permits` until it ends, boxed once.
fn hold<B>(body: B, permits: Option<limits::Permits>) -> ProxyBody
where
    B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
{
    match permits {
        Some(permits) => limits::HeldBody::new(body, permits).boxed_unsync(),
        None => body.boxed_unsync(),
    }
}
