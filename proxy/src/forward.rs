//! The request path, written down once: [`Proxy::serve`] runs the phases in order, and each phase
//! is a function of its own below it.
//!
//! ```text
//! serve:     request id + span + metrics + access log   (outermost; every error becomes a response)
//! dispatch:  path sanity -> route to upstream -> method check -> Host/Origin check (421/403)
//!            -> CORS: a preflight is answered here (never forwarded); an allowed Origin's
//!               headers go on whatever answer follows, errors included (see crate::cors)
//!            -> global in-flight cap (503) -> authentication before the body (401)
//!            -> POST: read the body once (bounded, 413 above; 408 when it stalls or
//!               trickles) and classify it (kind, method, tool, id)
//!            -> rate limits on requests, stream caps on GET (429); upstream in-flight cap (503)
//!            -> circuit breaker admission (open: 503 at once) and per-tool policy (resilience)
//!            -> upstream request headers (hop-by-hop, Host, X-Forwarded-*, X-Request-Id)
//!            -> pooled client with (per-tool) response timeout; outcome to the breaker; safe retries
//!            -> response headers back; SSE passthrough (keepalive, endpoint rewrite); idle timeout
//!               on answers the client waits for, none on standing streams (GET SSE, listen)
//! ```

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::auth::{Auth, Principal};
use crate::body::{
    BodyReadLimits, BoxError, EndpointRewrite, EndpointRewriteBody, ProxyBody, ReadTimeoutBody,
    SseBody, body_read_timeout, full, read_prefix,
};
use crate::cors::{self, Cors};
use crate::downstream::body::BodyError;
use crate::error::ProxyError;
use crate::flood_logs::FloodLogs;
use crate::headers::{self, ForwardContext};
use crate::limits::{self, Limits};
use crate::mcp::{self, Classified};
use crate::metrics::{self, Metrics};
use crate::observe::{AccessLog, GaugeGuard, ObservedBody};
use crate::resilience::{self, Resilience};
use crate::upstream::check_path;
use crate::upstream::{Router, Upstream};

/// What the sidecar knows about the connection a request came in on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// Whether the client connected with TLS.
    pub tls: bool,
    /// The client's IP as an `X-Forwarded-For` element, formatted once per connection rather
    /// than once per request (clones share it).
    pub forwarded_for: HeaderValue,
}

impl ConnInfo {
    /// The connection from `remote`, with or without TLS.
    pub fn new(remote: SocketAddr, tls: bool) -> Self {
        Self {
            remote,
            tls,
            forwarded_for: headers::ip_value(remote.ip()),
        }
    }
}

/// The proxy: routing table, metrics and per-request settings. Shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    router: Router,
    metrics: Metrics,
    max_body_bytes: usize,
    body_read: BodyReadLimits,
    auth: Arc<Auth>,
    resilience: Option<Arc<Resilience>>,
    limits: Option<Arc<Limits>>,
    cors: Option<Cors>,
    /// One warning per interval for the failures that come in floods (open circuit, shed,
    /// descriptors exhausted); every other failure is logged each time.
    flood_logs: FloodLogs,
}

/// What the phases learned about a request so far; later phases and error answers read it.
#[derive(Debug, Default)]
pub struct RequestContext {
    /// The upstream the path routed to.
    pub upstream: Option<Arc<Upstream>>,
    /// The classified POST body.
    pub classified: Option<Classified>,
    /// The authenticated caller (none for public upstreams or without `[auth]`).
    pub principal: Option<Arc<Principal>>,
    /// Permits and rate-limit headers held from the limits phases.
    pub limits: limits::Held,
    /// What the answer to a request with an `Origin` gets from the CORS policy.
    pub cors: Option<cors::Grant>,
}

impl Proxy {
    /// A proxy over these upstreams.
    pub fn new(router: Router, metrics: Metrics, max_body_bytes: usize) -> Self {
        Self {
            router,
            metrics,
            max_body_bytes,
            body_read: BodyReadLimits::default(),
            auth: Arc::new(Auth::disabled()),
            resilience: None,
            limits: None,
            cors: None,
            flood_logs: FloodLogs::default(),
        }
    }

    /// Sets the request body read timeout and minimum rate (without: the defaults).
    pub fn with_body_read_limits(mut self, limits: BodyReadLimits) -> Self {
        self.body_read = limits;
        self
    }

    /// Adds rate limits and overload protection (without: no caps, no rules).
    pub fn with_limits(mut self, limits: Arc<Limits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The limits, for the background sweep of idle keys.
    pub fn limits(&self) -> Option<&Arc<Limits>> {
        self.limits.as_ref()
    }

    /// Adds circuit breakers, per-tool timeouts and retries (without: one attempt, the
    /// upstream's timeouts).
    pub fn with_resilience(mut self, resilience: Arc<Resilience>) -> Self {
        self.resilience = Some(resilience);
        self
    }

    /// Adds authentication, authorization and Host/Origin checks (without: none).
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the CORS policy (`None`, the default: the sidecar does no CORS, and a preflight is
    /// an ordinary `OPTIONS` request).
    pub fn with_cors(mut self, cors: Option<Cors>) -> Self {
        self.cors = cors;
        self
    }

    /// Serves one request. Infallible: every failure becomes an HTTP response here, because an
    /// error that reaches hyper drops the connection without an answer.
    pub async fn serve<B>(&self, req: Request<B>, conn: ConnInfo) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        let request_id = headers::request_id(req.headers());
        let rid = headers::request_id_str(&request_id);
        let method = req.method().clone();
        // A clone shares the parsed URI's bytes; only its path is logged.
        let uri = req.uri().clone();
        // A span per request only at debug level: at info the access-log event carries the request
        // id, and an info span (fields formatted at creation, entered on every poll) was a visible
        // share of the sidecar's CPU per request (BENCHMARKS.md, "Figures behind code decisions").
        // Warnings below name the request id themselves.
        let span = tracing::debug_span!("request", request_id = %rid, method = %method, path = %uri.path());
        let mut cx = RequestContext::default();
        // The span is entered around each poll of the phases, pinned where they are built:
        // `.instrument(span)` would move the whole dispatch future (large: see BENCHMARKS.md,
        // "Figures behind code decisions") into its wrapper once per request, into memory the
        // connection's last request left cold.
        let result = {
            let dispatch = pin!(self.dispatch(req, &request_id, conn, &mut cx));
            polled_in(&span, dispatch).await
        };
        let (mut response, sse, error) = match result {
            Ok((response, sse)) => (response, sse, None),
            Err(err) => {
                self.metrics
                    .proxy_errors
                    .with_label_values(&[err.reason()])
                    .inc();
                if err.status().is_server_error() {
                    match self.flood_logs.limiter(&err).map(|l| l.admit(start)) {
                        None => tracing::warn!(request_id = %rid, error = %err, "request failed"),
                        // `suppressed`: lines like it left out since the last one written.
                        Some(Some(suppressed)) => {
                            tracing::warn!(request_id = %rid, error = %err, suppressed, "request failed")
                        }
                        Some(None) => {}
                    }
                } else {
                    tracing::debug!(request_id = %rid, error = %err, "request refused");
                }
                let jsonrpc_id = cx.classified.as_ref().and_then(Classified::request_id);
                let response = err.to_response(jsonrpc_id, rid);
                (response, false, Some(err.reason()))
            }
        };
        response
            .headers_mut()
            .insert(headers::X_REQUEST_ID.clone(), request_id.clone());
        // Only requests with an allowed `Origin` have a grant: others pay one `Option` check.
        if let Some(grant) = cx.cors.take()
            && let Some(cors) = &self.cors
        {
            cors.apply(grant, response.headers_mut());
        }
        let status = response.status();
        let ttfb = start.elapsed();
        match &cx.upstream {
            Some(u) => u
                .metrics
                .record_request(&method, status, ttfb.as_secs_f64()),
            None => self.metrics.record_request(
                metrics::NO_UPSTREAM,
                &method,
                status,
                ttfb.as_secs_f64(),
            ),
        }
        // Only a routed request can have become a stream.
        let gauge = cx
            .upstream
            .as_ref()
            .filter(|_| sse)
            .map(|u| GaugeGuard::new(u.metrics.sse_streams_open.clone()));
        let log = AccessLog {
            method,
            uri,
            status: status.as_u16(),
            upstream: cx.upstream.as_ref().map(|u| u.name.clone()),
            request_id,
            start,
            ttfb,
            error,
            subject: cx.principal.as_ref().map(|p| p.subject.clone()),
        };
        let stream_errors = Some(self.metrics.stream_errors.clone());
        let idle_timeouts = self
            .resilience
            .as_ref()
            .map(|r| r.metrics().timeouts.clone());
        response.map(|body| {
            ObservedBody::new(body, log, gauge, stream_errors)
                .with_idle_timeouts(idle_timeouts)
                .boxed_unsync()
        })
    }

    /// `listen.max_body_bytes`, which the HTTP/1 server leg also enforces on chunk sizes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The answer to a request the server could not read (a malformed or oversized head, an
    /// unmet `Expect`), counted like every error answer. Its request id is new: the head that
    /// would carry the client's was not read.
    pub fn refuse(&self, err: &ProxyError) -> Response<ProxyBody> {
        self.metrics
            .proxy_errors
            .with_label_values(&[err.reason()])
            .inc();
        let request_id = headers::request_id(&http::HeaderMap::new());
        let mut response = err.to_response(None, headers::request_id_str(&request_id));
        response
            .headers_mut()
            .insert(headers::X_REQUEST_ID.clone(), request_id);
        response
    }

    /// The phases between routing and the upstream call, in order. Each returns early with the
    /// [`ProxyError`] that ends the request.
    async fn dispatch<B>(
        &self,
        req: Request<B>,
        request_id: &HeaderValue,
        conn: ConnInfo,
        cx: &mut RequestContext,
    ) -> Result<(Response<ProxyBody>, bool), ProxyError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        // The path rule first: a path the backend could resolve differently (`..\`, `%2e%2e`,
        // `%2f`) could land outside the mount that routing and authentication were decided for.
        let path = req.uri().path();
        if let Err(why) = check_path(path) {
            return Err(ProxyError::BadRequest(format!(
                "path `{}` refused: {why}",
                path.escape_default()
            )));
        }
        // Protected resource metadata is the sidecar's own document; clients fetch it tokenless.
        if let Some(answer) = self.auth.metadata(req.method(), path) {
            return answer.map(|r| (r, false));
        }
        let (upstream, rest) = self.router.route(path).ok_or_else(|| ProxyError::NoRoute {
            path: path.to_owned(),
        })?;
        let upstream = upstream.clone();
        cx.upstream = Some(upstream.clone());
        if !matches!(
            *req.method(),
            Method::POST | Method::GET | Method::DELETE | Method::OPTIONS
        ) {
            return Err(ProxyError::MethodNotAllowed {
                method: req.method().to_string(),
            });
        }
        // DNS-rebinding protection before anything else is spent on the request.
        let origin = self.auth.check_host_origin(req.headers(), req.uri())?;
        // CORS preflights are answered here: they carry no credential by design, so forwarding
        // them would hand unauthenticated requests to a protected backend.
        if let Some(origin) = origin
            && let Some(cors) = &self.cors
        {
            match cors.on_request(req.method(), req.headers(), origin) {
                cors::Phase::Preflight(answer) => return Ok((answer, false)),
                cors::Phase::Actual(grant) => cx.cors = Some(grant),
            }
        }
        // Load shedding right after routing: refusing before the body is read costs nothing.
        limits::shed(
            self.limits.as_deref(),
            &upstream,
            req.method(),
            &mut cx.limits,
        )?;
        let uri = upstream
            .upstream_uri_for(req.uri(), rest)
            .map_err(|e| ProxyError::BadRequest(format!("cannot map path to upstream: {e}")))?;
        let (mut parts, body) = req.into_parts();
        // Whoever reads the body from here (the 401 peek, classification, the upstream send)
        // reads it under the body read timeout: a stalled body ends in 408, freeing its slots.
        let body = ReadTimeoutBody::new(body, self.body_read);

        // Authentication before the body is read: unauthenticated clients cannot make us buffer.
        let body = match await_in_place!(self.auth.authenticate(&upstream, &parts.headers)) {
            Ok(principal) => {
                cx.principal = principal;
                body
            }
            Err(err) => {
                // The 401 carries the JSON-RPC id when the body is already on its way; a client
                // waiting for `100 Continue` has not sent it, and reading would invite the upload.
                if parts.method == Method::POST && !expects_continue(&parts.headers) {
                    cx.classified =
                        await_in_place!(crate::auth::peek_classified(&parts.headers, body));
                }
                return Err(err);
            }
        };

        // Classification: every later decision (and any error answer's id) needs to know what the
        // POST carries. The body is read once, bounded, and forwarded byte for byte.
        let mut replay = None;
        let body = if parts.method == Method::POST {
            let bytes = await_in_place!(self.read_body(&parts.headers, body))?;
            cx.classified = Some(mcp::classify(&bytes)?);
            replay = Some(bytes.clone());
            full(bytes)
        } else {
            body.map_err(Into::into).boxed_unsync()
        };
        // Authorization needs the classification (method and tool of every message).
        self.auth
            .authorize(&upstream, cx.principal.as_ref(), cx.classified.as_ref())?;
        // Rate limits need the classification (only requests are limited, keys use method/tool).
        limits::admit(
            self.limits.as_deref(),
            &upstream,
            &parts.headers,
            conn.remote.ip(),
            cx,
        )?;

        // The upstream's in-flight cap guards the send; it sheds before the breaker takes a slot.
        limits::reserve_upstream(self.limits.as_deref(), &upstream, cx)?;

        // Circuit breaker admission last among the refusals (after authorization and rate limits,
        // so refused requests never count against the backend), before anything is built or sent.
        let call = resilience::admit(
            self.resilience.as_deref(),
            &upstream,
            cx.classified.as_ref(),
            &parts.method,
        )?;

        let is_get = parts.method == Method::GET;
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        headers::prepare_upstream_request(
            &mut parts.headers,
            &ForwardContext {
                client_ip: &conn.forwarded_for,
                client_proto: if conn.tls { "https" } else { "http" },
                request_id,
            },
        );
        // The client's credential stays here; the backend gets its own and the claim headers.
        self.auth
            .prepare_upstream_headers(&upstream, cx.principal.as_deref(), &mut parts.headers);
        // A GET's URI is kept for the legacy endpoint rewrite (a cheap clone: shared bytes).
        let get_uri = is_get.then(|| parts.uri.clone());
        let awaits = if is_get {
            Awaits::GetStream
        } else if cx
            .classified
            .as_ref()
            .is_some_and(Classified::opens_subscription)
        {
            Awaits::Subscription
        } else {
            Awaits::Answer
        };
        let idle_timeout = call.stream_idle_timeout();
        let response = await_in_place!(call.send(&upstream, &self.metrics, parts, body, replay))?;
        let (response, sse) = self.respond(
            &upstream,
            response,
            get_uri.as_ref(),
            Silence {
                awaits,
                idle_timeout,
            },
            &mut cx.limits,
        );
        // `tools/list` answers show only the tools the caller may call.
        let response = self.auth.filter_response(
            &upstream,
            cx.principal.as_ref(),
            cx.classified.as_ref(),
            sse,
            response,
        );
        Ok((response, sse))
    }

    /// Reads a POST body whole, refusing more than `max_body_bytes` (413) before reading it when
    /// `Content-Length` already says so.
    async fn read_body<B>(&self, headers: &http::HeaderMap, body: B) -> Result<Bytes, ProxyError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let limit = self.max_body_bytes;
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(ProxyError::PayloadTooLarge { limit });
        }
        let (bytes, rest) = read_prefix(body, limit.saturating_add(1))
            .await
            .map_err(|e| {
                if let Some(timeout) = body_read_timeout(e.as_ref()) {
                    return ProxyError::RequestBodyTimeout(timeout);
                }
                // The server leg refuses a chunk size past the limit before its data arrives.
                if let Some(BodyError::TooLarge { .. }) = e.downcast_ref::<BodyError>() {
                    ProxyError::PayloadTooLarge { limit }
                } else {
                    ProxyError::BadRequest(format!("reading request body: {e}"))
                }
            })?;
        if rest.is_some() || bytes.len() > limit {
            return Err(ProxyError::PayloadTooLarge { limit });
        }
        Ok(bytes)
    }

    /// The response phase: header hygiene and the streaming body wrappers.
    fn respond(
        &self,
        upstream: &Upstream,
        response: Response<crate::upstream::PooledBody>,
        get_uri: Option<&http::Uri>,
        silence: Silence,
        held: &mut limits::Held,
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
}

/// What a request waits for, which decides what silence on its answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaits {
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
struct Silence {
    awaits: Awaits,
    /// `stream_idle_timeout` of the upstream (or the tool).
    idle_timeout: std::time::Duration,
}

impl Silence {
    /// Whether silence is normal on this answer, so no idle timeout applies: an open-ended 200
    /// answer to a request that opens a standing stream. Such a stream lives as long as both
    /// ends do (TCP keepalive and write failures find a dead peer); every other answer, a
    /// length-delimited one included, is cut after `idle_timeout` of backend silence.
    fn is_normal(&self, sse: bool, finite: bool, status: StatusCode) -> bool {
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

/// Whether the client waits for `100 Continue` before sending the body (`Expect: 100-continue`;
/// any other expectation was refused with the head). Reading such a body sends the `100`.
fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::EXPECT).is_some_and(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    })
}

/// Awaits `fut` with `span` entered around each poll: `Instrument::instrument` without moving
/// the future into a wrapper (it stays pinned where the caller built it).
async fn polled_in<F: Future>(span: &tracing::Span, mut fut: std::pin::Pin<&mut F>) -> F::Output {
    std::future::poll_fn(|task| {
        let _entered = span.enter();
        fut.as_mut().poll(task)
    })
    .await
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

/// `error: cause: cause` for logs and error bodies; hyper's top-level messages alone are vague.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
#[cfg(unix)]
#[path = "forward_failure_tests.rs"]
mod failure_tests;

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
