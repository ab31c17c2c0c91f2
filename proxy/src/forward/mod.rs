//! The request path, written down once. [`Proxy::serve`] is the outermost layer (request id,
//! span, metrics, access log; every error becomes a response), and `dispatch` below runs the
//! phases **in order: this is the one place the order is written**; each phase says there why
//! it sits where it sits. Policies' phases share one call shape ([`crate::exchange`]): they
//! return `Next`, or `Answer` to end the request with their own response (a CORS preflight, the
//! protected resource metadata), or an error. After the last refusal the [`Tail`] takes over:
//! breaker admission, upstream headers, send, response phase.
//!
//! README's request-path diagram draws the same order for users; when the order changes, it
//! changes here and there.

mod job_runner;
mod tail;

use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::auth::Auth;
use crate::body::{
    BodyReadLimits, BoxError, ProxyBody, ReadTimeoutBody, body_read_timeout, body_too_large, full,
    read_prefix,
};
use crate::codec::request::HeadError;
use crate::conn_info::ConnInfo;
use crate::cors::Cors;
use crate::downstream::Handler;
use crate::error::ProxyError;
use crate::exchange::{Exchange, Policy, Step};
use crate::flood_logs::FloodLogs;
use crate::headers;
use crate::job_api::{JobApi, Route as JobRoute};
use crate::limits::Limits;
use crate::mcp;
use crate::metrics::{self, Metrics};
use crate::observe::{AccessLog, GaugeGuard, ObservedBody};
use crate::resilience::Resilience;
use crate::tasks::{Tasks, routing};
use crate::trace::{Failed, Routed};
use crate::upstream::Router;
use crate::upstream::check_path;
pub use job_runner::JobRunner;
pub use tail::{Services, Tail};

/// Runs one phase of `dispatch`: `Next` goes on; `Answer` ends the request with that answer;
/// an error ends it with the error's answer.
macro_rules! phase {
    ($outcome:expr) => {
        if let Step::Answer(answer) = $outcome? {
            return Ok(Phased::Answered(answer));
        }
    };
}

/// How the phases ended for a request they did not refuse.
enum Phased {
    /// A phase answered it.
    Answered(Response<ProxyBody>),
    /// Every phase let it through: on to the [`Tail`].
    Forward {
        upstream: Arc<crate::upstream::Upstream>,
        uri: http::Uri,
        body: ProxyBody,
    },
}

/// The proxy: routing table, policies and per-request settings. Shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    router: Router,
    max_body_bytes: usize,
    body_read: BodyReadLimits,
    /// Metrics, auth and resilience, shared with every request's [`Tail`].
    services: Arc<Services>,
    limits: Option<Arc<Limits>>,
    cors: Option<Cors>,
    /// The job API and engine (without: `Prefer: respond-async` is ignored, `/jobs` is not
    /// served).
    jobs: Option<JobApi>,
    /// One warning per interval for the failures that come in floods (open circuit, shed,
    /// descriptors exhausted); every other failure is logged each time.
    flood_logs: FloodLogs,
}

/// Each policy's own state for one request ([`crate::exchange::Policy::State`]); what the
/// phases share is the [`Exchange`].
#[derive(Debug, Default)]
pub struct RequestContext {
    /// Permits and rate-limit headers held from the limits phases.
    pub limits: <Limits as Policy>::State,
    /// What the answer to a request with an `Origin` gets from the CORS policy.
    pub cors: <Cors as Policy>::State,
    /// Whether the request came to the job API to become a job.
    pub jobs: <JobApi as Policy>::State,
}

impl Proxy {
    /// A proxy over these upstreams.
    pub fn new(router: Router, metrics: Metrics, max_body_bytes: usize) -> Self {
        Self {
            router,
            max_body_bytes,
            body_read: BodyReadLimits::default(),
            services: Arc::new(Services {
                metrics,
                auth: Arc::new(Auth::disabled()),
                resilience: None,
                tasks: None,
                tracing: None,
            }),
            limits: None,
            cors: None,
            jobs: None,
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
        Arc::make_mut(&mut self.services).resilience = Some(resilience);
        self
    }

    /// Adds authentication, authorization and Host/Origin checks (without: none).
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        Arc::make_mut(&mut self.services).auth = auth;
        self
    }

    /// Sets the CORS policy (`None`, the default: the sidecar does no CORS, and a preflight is
    /// an ordinary `OPTIONS` request).
    pub fn with_cors(mut self, cors: Option<Cors>) -> Self {
        self.cors = cors;
        self
    }

    /// Adds the job API and engine (without: calls always run live).
    pub fn with_jobs(mut self, jobs: Option<JobApi>) -> Self {
        self.jobs = jobs;
        self
    }

    /// Adds the MCP Tasks facade (without: Tasks are the backend's business alone).
    pub fn with_tasks(mut self, tasks: Option<Tasks>) -> Self {
        Arc::make_mut(&mut self.services).tasks = tasks;
        self
    }

    /// Adds OpenTelemetry spans (without: none, and the request's trace fields go to the
    /// backend untouched).
    pub fn with_tracing(mut self, tracing: Option<Arc<crate::trace::Tracing>>) -> Self {
        Arc::make_mut(&mut self.services).tracing = tracing;
        self
    }

    /// The job API, for the server's lifecycle (start, drain) and the admin view.
    pub fn jobs(&self) -> Option<&JobApi> {
        self.jobs.as_ref()
    }

    /// What runs jobs' calls: this proxy's routes, upstream pool, credentials, breakers and
    /// in-flight caps, through the same tail as a live call.
    pub fn job_runner(&self, max_result_bytes: usize) -> JobRunner {
        JobRunner::new(
            self.router.clone(),
            self.services.clone(),
            self.limits.clone(),
            max_result_bytes,
        )
    }

    fn metrics(&self) -> &Metrics {
        &self.services.metrics
    }

    fn auth(&self) -> &Auth {
        &self.services.auth
    }

    /// Serves one request. Infallible: every failure becomes an HTTP response here, because an
    /// error that reaches hyper drops the connection without an answer.
    pub async fn serve<B>(&self, req: Request<B>, conn: ConnInfo) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        let (mut head, body) = req.into_parts();
        let request_id = headers::request_id(&head.headers);
        let rid = headers::request_id_str(&request_id);
        let method = head.method.clone();
        // A clone shares the parsed URI's bytes; only its path is logged.
        let uri = head.uri.clone();
        // A span per request only at debug level: at info the access-log event carries the request
        // id, and an info span (fields formatted at creation, entered on every poll) was a visible
        // share of the sidecar's CPU per request (BENCHMARKS.md, "Figures behind code decisions").
        // Warnings below name the request id themselves.
        let span = tracing::debug_span!("request", request_id = %rid, method = %method, path = %uri.path());
        // One `None` check when tracing is off.
        let mut server_span = self
            .services
            .tracing
            .as_ref()
            .map(|t| t.server_span(&mut head, &conn));
        let mut ex = Exchange::new(head, conn);
        let mut cx = RequestContext::default();
        // The span is entered around each poll of the phases, pinned where they are built:
        // `.instrument(span)` would move the whole dispatch future (large: see BENCHMARKS.md,
        // "Figures behind code decisions") into its wrapper once per request, into memory the
        // connection's last request left cold.
        let phased = {
            let dispatch = pin!(self.dispatch(&mut ex, body, &mut cx));
            polled_in(&span, dispatch).await
        };
        // The tail runs after the phases' future has ended, not inside it: while the request
        // waits on the backend, each poll goes one future less deep.
        let (result, facts) = match phased {
            Ok(Phased::Forward {
                upstream,
                uri,
                body,
            }) => {
                // The tail owns what it needs, the exchange included: a job could run it
                // later, detached from this request. It gives back what the answer and the log
                // line need.
                let tail = Tail {
                    services: self.services.clone(),
                    upstream,
                    ex,
                    uri,
                    body,
                    request_id: request_id.clone(),
                    held: std::mem::take(&mut cx.limits),
                };
                let running = pin!(tail.run());
                polled_in(&span, running).await
            }
            Ok(Phased::Answered(answer)) => (Ok((answer, false)), ex.into_facts()),
            Err(err) => (Err(err), ex.into_facts()),
        };
        let (mut response, sse, error) = match result {
            Ok((response, sse)) => (response, sse, None),
            Err(err) => {
                self.metrics()
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
                let jsonrpc_id = facts
                    .classified
                    .as_ref()
                    .and_then(mcp::Classified::request_id);
                let response = err.to_response(jsonrpc_id, rid);
                if let Some(span) = &mut server_span {
                    let failure = Failed {
                        reason: err.reason(),
                        detail: &err,
                    };
                    let routed = facts.upstream.as_deref().map(routed);
                    let classified = facts.classified.as_ref();
                    span.answered(routed, classified, response.status(), Some(failure));
                }
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
        if error.is_none()
            && let Some(span) = &mut server_span
        {
            let routed = facts.upstream.as_deref().map(routed);
            span.answered(routed, facts.classified.as_ref(), status, None);
        }
        let ttfb = start.elapsed();
        match &facts.upstream {
            Some(u) => {
                u.metrics
                    .record_request(&method, status, ttfb.as_secs_f64());
                // Per JSON-RPC method and tool: only for a body the path read and classified.
                if let Some(classified) = &facts.classified {
                    u.metrics.rpc.record(classified, status, ttfb.as_secs_f64());
                }
            }
            None => self.metrics().record_request(
                metrics::NO_UPSTREAM,
                &method,
                status,
                ttfb.as_secs_f64(),
            ),
        }
        // Only a routed request can have become a stream.
        let gauge = facts
            .upstream
            .as_ref()
            .filter(|_| sse)
            .map(|u| GaugeGuard::new(u.metrics.sse_streams_open.clone()));
        let log = AccessLog {
            method,
            uri,
            status: status.as_u16(),
            upstream: facts.upstream.as_ref().map(|u| u.name.clone()),
            request_id,
            start,
            ttfb,
            error,
            subject: facts.principal.as_ref().map(|p| p.subject.clone()),
            trace: server_span,
        };
        let stream_errors = Some(self.metrics().stream_errors.clone());
        let idle_timeouts = self
            .services
            .resilience
            .as_ref()
            .map(|r| r.metrics().timeouts.clone());
        response.map(|body| {
            ObservedBody::new(body, log, gauge, stream_errors)
                .with_idle_timeouts(idle_timeouts)
                .boxed_unsync()
        })
    }

    /// The answer to a request the server could not read (a malformed or oversized head, an
    /// unmet `Expect`), counted like every error answer. Its request id is new: the head that
    /// would carry the client's was not read.
    pub fn refuse(&self, err: &ProxyError) -> Response<ProxyBody> {
        self.metrics()
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

    /// The phases, in order: **the one place the order is written**. Each may end the request
    /// with an answer or an error; a request that passes them all goes on to the [`Tail`].
    async fn dispatch<B>(
        &self,
        ex: &mut Exchange,
        body: B,
        cx: &mut RequestContext,
    ) -> Result<Phased, ProxyError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let RequestContext { limits, cors, jobs } = cx;
        // The path rule first: a path the backend could resolve differently (`..\`, `%2e%2e`,
        // `%2f`) could land outside the mount that routing and authentication were decided for.
        let path = ex.head.uri.path();
        if let Err(why) = check_path(path) {
            return Err(ProxyError::BadRequest(format!(
                "path `{}` refused: {why}",
                path.escape_default()
            )));
        }
        // Protected resource metadata is the sidecar's own document; clients fetch it tokenless,
        // and its well-known path routes to no upstream.
        phase!(self.auth().metadata(ex, &mut ()));
        // The job API's paths are the sidecar's, not an upstream's. A submission
        // (`POST /jobs/<mount>`) goes on through every phase as a request to `<mount>`, so it is
        // authenticated, authorized and limited exactly as a live call; the other routes are
        // answered here (boxed: only they pay for their future).
        if let Some(api) = &self.jobs
            && let Some(route) = api.route(&ex.head.method, ex.head.uri.path())
        {
            match route {
                JobRoute::Submit(mount) => {
                    ex.head.uri = with_path(&ex.head.uri, &mount)?;
                    jobs.forced = true;
                }
                route => {
                    return match Box::pin(api.serve(ex, self.auth(), route)).await? {
                        Step::Answer(answer) => Ok(Phased::Answered(answer)),
                        Step::Next => Err(ProxyError::NoRoute {
                            path: ex.head.uri.path().to_owned(),
                        }),
                    };
                }
            }
        }
        let (upstream, rest) =
            self.router
                .route(ex.head.uri.path())
                .ok_or_else(|| ProxyError::NoRoute {
                    path: ex.head.uri.path().to_owned(),
                })?;
        // Mapped now (while `rest` borrows the path), refused in its turn below.
        let uri = upstream.upstream_uri_for(&ex.head.uri, rest);
        let upstream = upstream.clone();
        ex.upstream = Some(upstream.clone());
        if !matches!(
            ex.head.method,
            Method::POST | Method::GET | Method::DELETE | Method::OPTIONS
        ) {
            return Err(ProxyError::MethodNotAllowed {
                method: ex.head.method.to_string(),
            });
        }
        // DNS-rebinding protection before anything else is spent on the request.
        phase!(self.auth().check_host_origin(ex, &mut ()));
        // CORS preflights are answered here: they carry no credential by design, so forwarding
        // them would hand unauthenticated requests to a protected backend.
        if let Some(c) = &self.cors {
            phase!(c.preflight(ex, cors));
        }
        // Load shedding right after routing: refusing before the body is read costs nothing.
        if let Some(l) = &self.limits {
            phase!(l.shed(ex, limits));
        }
        let uri =
            uri.map_err(|e| ProxyError::BadRequest(format!("cannot map path to upstream: {e}")))?;
        // Whoever reads the body from here (the 401 peek, classification, the upstream send)
        // reads it under the body read timeout: a stalled body ends in 408, freeing its slots.
        let body = ReadTimeoutBody::new(body, self.body_read);

        // Authentication before the body is read: unauthenticated clients cannot make us buffer.
        match await_in_place!(self.auth().authenticate(ex, &mut ())) {
            Ok(Step::Next) => {}
            Ok(Step::Answer(answer)) => return Ok(Phased::Answered(answer)),
            Err(err) => {
                // The 401 carries the JSON-RPC id when the body is already on its way; a client
                // waiting for `100 Continue` has not sent it, and reading would invite the upload.
                if ex.head.method == Method::POST && !expects_continue(&ex.head.headers) {
                    ex.classified =
                        await_in_place!(crate::auth::peek_classified(&ex.head.headers, body));
                }
                return Err(err);
            }
        }

        // Classification: every later decision (and any error answer's id) needs to know what the
        // POST carries. The body is read once, bounded, and forwarded byte for byte.
        let body = if ex.head.method == Method::POST {
            let bytes = await_in_place!(self.read_body(&ex.head.headers, body))?;
            ex.classified = Some(mcp::classify(&bytes)?);
            ex.body = Some(bytes.clone());
            full(bytes)
        } else {
            body.map_err(Into::into).boxed_unsync()
        };
        // The routing headers must say what the body says: authorization below decides on the
        // body, a router behind the sidecar may decide on the headers.
        if ex.head.method == Method::POST {
            routing::check(ex)?;
        }
        // Authorization needs the classification (method and tool of every message). The Tasks
        // facade's own task methods reach only the caller's own tasks, authorized when they
        // were created (see `Tasks::answers_own_task_method`).
        let own_task_method = self
            .services
            .tasks
            .as_ref()
            .is_some_and(|t| t.answers_own_task_method(ex));
        if !own_task_method {
            phase!(self.auth().authorize(ex, &mut ()));
        }
        if let Some(l) = &self.limits {
            // Rate limits need the classification (only requests are limited, keys use
            // method/tool). Global rules ask Redis: that path is async and boxed, so a sidecar
            // without them keeps the synchronous phase and its smaller request future.
            if l.has_global_rules() {
                phase!(Box::pin(l.admit_global(ex, limits)).await);
            } else {
                phase!(l.admit(ex, limits));
            }
        }
        // MCP Tasks (the facade): a task is a job, admitted like a live call; task methods are
        // answered from the job store. Boxed, and entered only by a tools/call or tasks/*
        // request to an upstream the facade serves.
        if let Some(tasks) = &self.services.tasks
            && tasks.may_serve(ex)
        {
            phase!(Box::pin(tasks.serve(ex)).await);
        }
        // A job is admitted like a live call (authorization, rate limits above) but takes no
        // upstream slot now: it takes one when it runs. Its answer is the 202.
        // Entered only by a request that may become a job, and boxed: the others pay two
        // lookups, not the submission's future.
        if let Some(api) = &self.jobs
            && api.may_offload(ex, jobs)
        {
            phase!(Box::pin(api.offload(ex, jobs)).await);
        }
        if let Some(l) = &self.limits {
            // The upstream's in-flight cap guards the send; it sheds before the breaker takes a
            // slot.
            phase!(l.reserve_upstream(ex, limits));
        }

        Ok(Phased::Forward {
            upstream,
            uri,
            body,
        })
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
                if body_too_large(e.as_ref()).is_some() {
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
}

impl Handler for Proxy {
    fn call<B>(
        &self,
        req: Request<B>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<ProxyBody>> + Send
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.serve(req, conn)
    }

    fn refuse(&self, err: HeadError) -> Response<ProxyBody> {
        Proxy::refuse(self, &ProxyError::from(err))
    }

    fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes as u64
    }
}

/// `uri` with its path replaced by `path` (query and authority kept).
fn with_path(uri: &http::Uri, path: &str) -> Result<http::Uri, ProxyError> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e| ProxyError::BadRequest(format!("job submission path: {e}")))?,
    );
    http::Uri::from_parts(parts)
        .map_err(|e| ProxyError::BadRequest(format!("job submission path: {e}")))
}

/// An upstream as the request's server span records it.
fn routed(upstream: &crate::upstream::Upstream) -> Routed<'_> {
    Routed {
        name: &upstream.name,
        mount: &upstream.mount,
        rpc: &upstream.metrics.rpc,
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

#[cfg(test)]
#[cfg(unix)]
#[path = "forward_failure_tests.rs"]
mod failure_tests;

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
