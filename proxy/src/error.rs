//! The one error type for everything the sidecar itself refuses or fails at, and its one mapping to
//! an HTTP response and to a metrics label. No other module builds error responses.
//!
//! Every error answer is a JSON-RPC error object: when the request was a JSON-RPC request whose `id`
//! could be read, the object carries that `id`, so an MCP client surfaces the message against the
//! call that failed; otherwise `id` is `null` (as JSON-RPC prescribes when the id is unknown).
//! Proxy error codes sit in JSON-RPC's implementation-defined range: -32001..-32019 for the
//! request path, -32040..-32049 for jobs (-32020 and -32021 are MCP's own since 2026-07-28).

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{ProxyBody, full};
use crate::local_resources::{LOCAL_RESOURCES_RETRY_AFTER, LocalResource};
use crate::mcp::ClassifyError;

/// What the sidecar could not do, and why.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No upstream is mounted at the request's path.
    #[error("no upstream is mounted at `{path}`")]
    NoRoute {
        /// The request path.
        path: String,
    },
    /// The HTTP method is not one MCP uses.
    #[error("method {method} is not allowed; MCP endpoints take POST, GET, DELETE and OPTIONS")]
    MethodNotAllowed {
        /// The method.
        method: String,
    },
    /// The request is malformed in a way the sidecar refuses to forward.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The POST body exceeds `listen.max_body_bytes`.
    #[error("request body exceeds the {limit}-byte limit (listen.max_body_bytes)")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The request body stopped arriving, or arrived too slowly (`listen.body_read_timeout`,
    /// `listen.body_min_rate`): 408, and the connection is closed after the answer.
    #[error("{0}")]
    RequestBodyTimeout(crate::body::BodyReadTimeout),
    /// The request head (request line and header fields) is larger than the sidecar accepts.
    #[error("request head exceeds {limit} {what}")]
    RequestHeadTooLarge {
        /// The limit that was crossed.
        limit: usize,
        /// What it counts: `bytes` or `header fields`.
        what: &'static str,
    },
    /// The request's `Transfer-Encoding` names a coding other than `chunked` (501, RFC 9112
    /// §6.1): the sidecar decodes none, and forwarding it undecoded would leave the backend to
    /// frame the body by a coding the sidecar did not check.
    #[error(
        "transfer coding `{0}` is not implemented; request bodies must be `Transfer-Encoding: chunked` or have a `Content-Length`"
    )]
    UnsupportedTransferCoding(String),
    /// The request carries an `Expect` the sidecar cannot meet (only `100-continue` exists).
    #[error("unsupported expectation `Expect: {0}`; only `100-continue` is defined")]
    ExpectationFailed(String),
    /// The POST body is not a JSON-RPC message.
    #[error("{0}")]
    NotJsonRpc(#[from] crate::mcp::ClassifyError),
    /// The upstream could not be connected to.
    #[error("upstream `{upstream}` is unreachable: {detail}")]
    UpstreamUnreachable {
        /// Upstream name.
        upstream: String,
        /// What the connector said.
        detail: String,
    },
    /// The upstream did not send response headers in time.
    #[error("upstream `{upstream}` did not respond within {}", humantime::format_duration(*after))]
    UpstreamTimeout {
        /// Upstream name.
        upstream: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The upstream connection failed after it was established (reset, closed early, bad HTTP).
    #[error("upstream `{upstream}` failed: {detail}")]
    UpstreamFailed {
        /// Upstream name.
        upstream: String,
        /// What went wrong.
        detail: String,
    },
    /// No valid credential (401): missing, malformed, expired, wrong audience...
    #[error("authentication required: {detail}")]
    Unauthorized {
        /// Metric outcome (`missing`, `expired`, ...), already counted by the auth module.
        outcome: &'static str,
        /// What was wrong, safe to show the client.
        detail: String,
        /// The `WWW-Authenticate` challenge.
        challenge: HeaderValue,
    },
    /// Authenticated, but the upstream's rules do not allow this method or tool (403).
    #[error("forbidden: {detail}")]
    Forbidden {
        /// Who may not call what.
        detail: String,
        /// The `WWW-Authenticate` challenge (`error="insufficient_scope"`).
        challenge: HeaderValue,
    },
    /// `Origin` present but not allowed (403): cross-site or DNS-rebinding request.
    #[error("origin `{origin}` is not allowed (auth.allowed_origins)")]
    OriginNotAllowed {
        /// The Origin header.
        origin: String,
    },
    /// `Host` not allowed (421): DNS-rebinding protection.
    #[error("host `{host}` is not served here (auth.allowed_hosts)")]
    HostNotAllowed {
        /// The Host header.
        host: String,
    },
    /// The circuit breaker is open (or half-open with every probe slot taken): failed fast.
    #[error(
        "circuit `{circuit}` is open after repeated upstream failures; retry in {} s",
        retry_after_secs(*retry_after)
    )]
    CircuitOpen {
        /// `upstream` or `upstream/tool-glob`.
        circuit: String,
        /// Upstream name.
        upstream: String,
        /// Time left open.
        retry_after: Duration,
    },
    /// A rate-limit rule (or the per-principal stream cap) refused the request (429).
    #[error("{0}")]
    RateLimited(Box<Rejection>),
    /// A global rate-limit rule with `redis_failure = "fail_closed"` could not ask Redis: the
    /// request is refused rather than admitted uncounted (503).
    #[error(
        "rate limit `{rule}` cannot be checked now (its shared state in Redis is unreachable); \
         retry in {} s",
        retry_after_secs(*retry_after)
    )]
    RateLimitUnavailable {
        /// The rule.
        rule: std::sync::Arc<str>,
        /// Time until Redis is asked again (the Redis breaker's), at least one second.
        retry_after: Duration,
    },
    /// A concurrency cap is reached: the request is shed at once instead of queued (503).
    #[error("{}", overload_message(scope, upstream, *limit, *retry_after))]
    Overloaded {
        /// Which cap: `global`, `upstream` or `streams`.
        scope: &'static str,
        /// Upstream name.
        upstream: String,
        /// The cap that was reached.
        limit: usize,
        /// `Retry-After` (`limits.shed_retry_after`).
        retry_after: Duration,
    },
    /// No such job, or not the caller's (404: a job's existence is not disclosed to others).
    #[error("no job `{id}` here")]
    JobNotFound {
        /// The id as requested.
        id: String,
    },
    /// The job's result was asked for before it ended (409, with `Retry-After`).
    #[error("job `{id}` is {status}; its result is not there yet")]
    JobNotFinished {
        /// The job.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// The `Idempotency-Key` was used before with a different request (422).
    #[error("Idempotency-Key `{key}` was already used with a different request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
    /// `jobs.max_queued` jobs are waiting: nothing was stored (503, with `Retry-After`).
    #[error("the job queue is full ({limit} jobs waiting); retry later")]
    JobQueueFull {
        /// `jobs.max_queued`.
        limit: usize,
    },
    /// The job engine cannot take or show jobs now: shutdown began, or its store failed (503).
    /// The sidecar's own state, never the backend's.
    #[error("jobs are unavailable: {0}")]
    JobsUnavailable(String),
    /// The shared job store (Redis) cannot be reached now: nothing was stored or read (503,
    /// with `Retry-After`). The sidecar's own dependency, never the backend's.
    #[error("the job store is unavailable; retry later ({0})")]
    JobStoreUnavailable(String),
    /// A live call to a tool configured `offload = "required"` (400).
    #[error(
        "tool `{tool}` runs only as a job: send `Prefer: respond-async`, or POST the call to `{submit}`"
    )]
    OffloadRequired {
        /// The tool.
        tool: String,
        /// Where to submit it.
        submit: String,
    },
    /// A job asked for a call that does not run as one (400): a tool with
    /// `offload = "never"`, or not a `tools/call` request.
    #[error("{0}")]
    OffloadNotAllowed(String),
    /// An MCP request the sidecar answers itself (the Tasks facade, the routing headers)
    /// refused with one of MCP's own JSON-RPC errors.
    #[error("{}", .0.message)]
    Mcp(McpRefusal),
    /// The sidecar itself ran out of descriptors, buffers or ports reaching the upstream (503):
    /// not a backend failure, so no breaker or retry counts it.
    #[error(
        "the sidecar is out of local resources reaching upstream `{upstream}`: {}; retry in {} s",
        kind.describe(),
        retry_after_secs(LOCAL_RESOURCES_RETRY_AFTER)
    )]
    LocalResourceExhausted {
        /// Upstream name.
        upstream: String,
        /// What ran out.
        kind: LocalResource,
    },
}

/// One of MCP's own JSON-RPC errors, as the sidecar answers it for the requests it serves
/// itself.
#[derive(Debug, Clone)]
pub struct McpRefusal {
    /// Which error.
    pub kind: McpErrorKind,
    /// Why, for people.
    pub message: String,
    /// The request came on the stateless protocol (2026-07-28), whose errors carry their HTTP
    /// status (400, 404); earlier revisions get their JSON-RPC errors in a `200`, where clients
    /// read them.
    pub stateless: bool,
}

/// The MCP errors the sidecar answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpErrorKind {
    /// `Mcp-Method` or `Mcp-Name` disagrees with the body (-32020, always 400).
    HeaderMismatch,
    /// The request needs the Tasks extension, which the client did not declare (-32021).
    MissingTasksCapability,
    /// The method does not exist here (-32601).
    MethodNotFound,
    /// The params are wrong, or name a task the caller does not have (-32602).
    InvalidParams,
}

impl McpRefusal {
    /// The refusal of `kind` with `message`.
    pub fn new(kind: McpErrorKind, message: impl Into<String>, stateless: bool) -> Self {
        Self {
            kind,
            message: message.into(),
            stateless,
        }
    }

    fn status(&self) -> StatusCode {
        match (self.kind, self.stateless) {
            (McpErrorKind::HeaderMismatch, _) => StatusCode::BAD_REQUEST,
            (_, false) => StatusCode::OK,
            (McpErrorKind::MethodNotFound, true) => StatusCode::NOT_FOUND,
            (_, true) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> i64 {
        match self.kind {
            McpErrorKind::HeaderMismatch => codes::HEADER_MISMATCH,
            McpErrorKind::MissingTasksCapability => codes::MISSING_CLIENT_CAPABILITY,
            McpErrorKind::MethodNotFound => codes::METHOD_NOT_FOUND,
            McpErrorKind::InvalidParams => codes::INVALID_PARAMS,
        }
    }

    fn reason(&self) -> &'static str {
        match self.kind {
            McpErrorKind::HeaderMismatch => "header_mismatch",
            McpErrorKind::MissingTasksCapability => "missing_client_capability",
            McpErrorKind::MethodNotFound => "method_not_found",
            McpErrorKind::InvalidParams => "invalid_params",
        }
    }
}

/// The Tasks extension's identifier (SEP-2663), as capabilities name it.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// `Retry-After` of a result asked for before the job ended: jobs report progress every second
/// or so, and a poller that asks more often learns nothing new.
pub const JOB_POLL_RETRY_AFTER: Duration = Duration::from_secs(1);
/// `Retry-After` when the job queue is full or the engine unavailable: long enough for running
/// jobs to drain some of the queue, short enough for a batch submitter to keep going.
pub const JOBS_BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Names the open circuit (`upstream` or `upstream/tool-glob`) on a fast-failed answer.
pub const X_CIRCUIT_OPEN: &str = "x-circuit-open";

/// `Retry-After` seconds: the time left, rounded up, at least 1 (0 would invite a retry storm).
pub fn retry_after_secs(left: Duration) -> u64 {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    secs.max(1)
}

/// JSON-RPC error codes of the sidecar's own errors (documented in the README's error table).
pub mod codes {
    /// Upstream unreachable (connect failed or timed out).
    pub const UPSTREAM_UNREACHABLE: i64 = -32001;
    /// Upstream did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32002;
    /// Upstream connection failed mid-exchange.
    pub const UPSTREAM_FAILED: i64 = -32003;
    /// Nothing mounted at the path.
    pub const NO_ROUTE: i64 = -32004;
    /// HTTP method not allowed.
    pub const METHOD_NOT_ALLOWED: i64 = -32005;
    /// Malformed request refused by the sidecar.
    pub const BAD_REQUEST: i64 = -32006;
    /// POST body over the limit.
    pub const PAYLOAD_TOO_LARGE: i64 = -32007;
    /// Request head over the limit (431).
    pub const REQUEST_HEAD_TOO_LARGE: i64 = -32008;
    /// An `Expect` other than `100-continue` (417).
    pub const EXPECTATION_FAILED: i64 = -32009;
    /// A transfer coding other than `chunked` (501).
    pub const UNSUPPORTED_TRANSFER_CODING: i64 = -32018;
    /// No valid credential (401).
    pub const UNAUTHORIZED: i64 = -32010;
    /// Not allowed by the authorization rules (403).
    pub const FORBIDDEN: i64 = -32011;
    /// Origin not allowed (403).
    pub const ORIGIN_NOT_ALLOWED: i64 = -32012;
    /// Host not allowed (421).
    pub const HOST_NOT_ALLOWED: i64 = -32013;
    /// The request body timed out (408).
    pub const REQUEST_BODY_TIMEOUT: i64 = -32017;
    /// Circuit open: failed fast without reaching the upstream.
    pub const CIRCUIT_OPEN: i64 = -32016;
    /// A rate limit refused the request (429).
    pub const RATE_LIMITED: i64 = -32014;
    /// Load shed at a concurrency cap (503).
    pub const OVERLOADED: i64 = -32015;
    /// A global rate limit could not be checked and fails closed (503).
    pub const RATE_LIMIT_UNAVAILABLE: i64 = -32030;
    /// The sidecar ran out of descriptors, buffers or ports (503).
    pub const LOCAL_RESOURCES: i64 = -32019;
    /// No such job (404).
    pub const JOB_NOT_FOUND: i64 = -32040;
    /// The job has not finished (409).
    pub const JOB_NOT_FINISHED: i64 = -32041;
    /// `Idempotency-Key` reused with another request (422).
    pub const IDEMPOTENCY_KEY_REUSED: i64 = -32042;
    /// The job queue is full (503).
    pub const JOB_QUEUE_FULL: i64 = -32043;
    /// Jobs unavailable: shutting down or store failure (503).
    pub const JOBS_UNAVAILABLE: i64 = -32044;
    /// The tool runs only as a job (400).
    pub const OFFLOAD_REQUIRED: i64 = -32045;
    /// The call does not run as a job (400).
    pub const OFFLOAD_NOT_ALLOWED: i64 = -32046;
    /// A failed job's result (in `GET /jobs/{id}/result`, not an HTTP error).
    pub const JOB_FAILED: i64 = -32047;
    /// A cancelled job's result.
    pub const JOB_CANCELLED: i64 = -32048;
    /// MCP: `Mcp-Method`/`Mcp-Name` disagree with the body (2026-07-28).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP: a client capability the request needs was not declared (2026-07-28).
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// JSON-RPC: no such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// JSON-RPC: invalid params (an unknown task id among them).
    pub const INVALID_PARAMS: i64 = -32602;
    /// JSON-RPC's own code for a body that is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON-RPC's own code for JSON that is not a JSON-RPC message.
    pub const INVALID_REQUEST: i64 = -32600;
}

impl ProxyError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) | Self::NotJsonRpc(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RequestHeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::ExpectationFailed(_) => StatusCode::EXPECTATION_FAILED,
            Self::UnsupportedTransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            Self::UpstreamUnreachable { .. } | Self::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } | Self::OriginNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::HostNotAllowed { .. } => StatusCode::MISDIRECTED_REQUEST,
            Self::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded { .. }
            | Self::LocalResourceExhausted { .. }
            | Self::RateLimitUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::JobNotFound { .. } => StatusCode::NOT_FOUND,
            Self::JobNotFinished { .. } => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::JobQueueFull { .. } | Self::JobsUnavailable(_) | Self::JobStoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::OffloadRequired { .. } | Self::OffloadNotAllowed(_) => StatusCode::BAD_REQUEST,
            Self::Mcp(r) => r.status(),
        }
    }

    /// Bounded label for metrics and the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "no_route",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BadRequest(_) => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RequestBodyTimeout(_) => "request_body_timeout",
            Self::RequestHeadTooLarge { .. } => "request_head_too_large",
            Self::ExpectationFailed(_) => "expectation_failed",
            Self::UnsupportedTransferCoding(_) => "unsupported_transfer_coding",
            Self::NotJsonRpc(ClassifyError::Parse(_)) => "parse_error",
            Self::NotJsonRpc(ClassifyError::Invalid(_)) => "invalid_request",
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamFailed { .. } => "upstream_failed",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::OriginNotAllowed { .. } => "origin_not_allowed",
            Self::HostNotAllowed { .. } => "host_not_allowed",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::RateLimited(_) => "rate_limited",
            Self::Overloaded { .. } => "overloaded",
            Self::RateLimitUnavailable { .. } => "rate_limit_unavailable",
            Self::LocalResourceExhausted { .. } => "local_resources",
            Self::JobNotFound { .. } => "job_not_found",
            Self::JobNotFinished { .. } => "job_not_finished",
            Self::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            Self::JobQueueFull { .. } => "job_queue_full",
            Self::JobsUnavailable(_) => "jobs_unavailable",
            Self::JobStoreUnavailable(_) => "job_store_unavailable",
            Self::OffloadRequired { .. } => "offload_required",
            Self::OffloadNotAllowed(_) => "offload_not_allowed",
            Self::Mcp(r) => r.reason(),
        }
    }

    /// The JSON-RPC error code.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            Self::NoRoute { .. } => codes::NO_ROUTE,
            Self::MethodNotAllowed { .. } => codes::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => codes::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => codes::PAYLOAD_TOO_LARGE,
            Self::RequestBodyTimeout(_) => codes::REQUEST_BODY_TIMEOUT,
            Self::RequestHeadTooLarge { .. } => codes::REQUEST_HEAD_TOO_LARGE,
            Self::ExpectationFailed(_) => codes::EXPECTATION_FAILED,
            Self::UnsupportedTransferCoding(_) => codes::UNSUPPORTED_TRANSFER_CODING,
            Self::NotJsonRpc(ClassifyError::Parse(_)) => codes::PARSE_ERROR,
            Self::NotJsonRpc(ClassifyError::Invalid(_)) => codes::INVALID_REQUEST,
            Self::UpstreamUnreachable { .. } => codes::UPSTREAM_UNREACHABLE,
            Self::UpstreamTimeout { .. } => codes::UPSTREAM_TIMEOUT,
            Self::UpstreamFailed { .. } => codes::UPSTREAM_FAILED,
            Self::Unauthorized { .. } => codes::UNAUTHORIZED,
            Self::Forbidden { .. } => codes::FORBIDDEN,
            Self::OriginNotAllowed { .. } => codes::ORIGIN_NOT_ALLOWED,
            Self::HostNotAllowed { .. } => codes::HOST_NOT_ALLOWED,
            Self::CircuitOpen { .. } => codes::CIRCUIT_OPEN,
            Self::RateLimited(_) => codes::RATE_LIMITED,
            Self::Overloaded { .. } => codes::OVERLOADED,
            Self::RateLimitUnavailable { .. } => codes::RATE_LIMIT_UNAVAILABLE,
            Self::LocalResourceExhausted { .. } => codes::LOCAL_RESOURCES,
            Self::JobNotFound { .. } => codes::JOB_NOT_FOUND,
            Self::JobNotFinished { .. } => codes::JOB_NOT_FINISHED,
            Self::IdempotencyKeyReused { .. } => codes::IDEMPOTENCY_KEY_REUSED,
            Self::JobQueueFull { .. } => codes::JOB_QUEUE_FULL,
            Self::JobsUnavailable(_) | Self::JobStoreUnavailable(_) => codes::JOBS_UNAVAILABLE,
            Self::OffloadRequired { .. } => codes::OFFLOAD_REQUIRED,
            Self::OffloadNotAllowed(_) => codes::OFFLOAD_NOT_ALLOWED,
            Self::Mcp(r) => r.code(),
        }
    }

    fn upstream(&self) -> Option<&str> {
        match self {
            Self::UpstreamUnreachable { upstream, .. }
            | Self::UpstreamTimeout { upstream, .. }
            | Self::UpstreamFailed { upstream, .. }
            | Self::CircuitOpen { upstream, .. }
            | Self::Overloaded { upstream, .. }
            | Self::LocalResourceExhausted { upstream, .. } => Some(upstream),
            _ => None,
        }
    }

    /// The response for this error. `jsonrpc_id` is the id of the JSON-RPC request, when known.
    pub fn to_response(&self, jsonrpc_id: Option<&Value>, request_id: &str) -> Response<ProxyBody> {
        let mut data = json!({ "reason": self.reason(), "request_id": request_id });
        if let Some(up) = self.upstream() {
            data["upstream"] = Value::String(up.to_owned());
        }
        match self {
            Self::RateLimited(r) => {
                data["retry_after"] = r.retry_after_secs().into();
                data["rule"] = Value::String(r.rule.to_string());
            }
            Self::Overloaded {
                scope, retry_after, ..
            } => {
                data["retry_after"] = retry_after_secs(*retry_after).into();
                data["cap"] = Value::String((*scope).to_owned());
            }
            Self::RateLimitUnavailable { rule, retry_after } => {
                data["retry_after"] = retry_after_secs(*retry_after).into();
                data["rule"] = Value::String(rule.to_string());
            }
            Self::LocalResourceExhausted { kind, .. } => {
                data["retry_after"] = retry_after_secs(LOCAL_RESOURCES_RETRY_AFTER).into();
                data["resource"] = Value::String(kind.label().to_owned());
            }
            // SEP-2575: the capabilities the request needs, shaped as the client declares them.
            Self::Mcp(McpRefusal {
                kind: McpErrorKind::MissingTasksCapability,
                ..
            }) => {
                data["requiredCapabilities"] = json!({"extensions": {TASKS_EXTENSION: {}}});
            }
            _ => {}
        }
        let body = json!({
            "jsonrpc": "2.0",
            "id": jsonrpc_id.cloned().unwrap_or(Value::Null),
            "error": { "code": self.jsonrpc_code(), "message": self.to_string(), "data": data },
        });
        let mut response = Response::new(full(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Self::MethodNotAllowed { .. } = self {
            headers.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
        }
        if let Self::Unauthorized { challenge, .. } | Self::Forbidden { challenge, .. } = self {
            headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        if let Self::CircuitOpen {
            circuit,
            retry_after,
            ..
        } = self
        {
            headers.insert(header::RETRY_AFTER, retry_after_secs(*retry_after).into());
            if let Ok(value) = HeaderValue::from_str(circuit) {
                headers.insert(X_CIRCUIT_OPEN, value);
            }
        }
        match self {
            Self::RateLimited(r) => {
                headers.insert(header::RETRY_AFTER, r.retry_after_secs().into());
                headers.insert(crate::headers::RATELIMIT_POLICY.clone(), r.policy.clone());
                headers.insert(crate::headers::RATELIMIT.clone(), r.state.clone());
            }
            Self::Overloaded { retry_after, .. }
            | Self::RateLimitUnavailable { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, retry_after_secs(*retry_after).into());
            }
            Self::LocalResourceExhausted { .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    retry_after_secs(LOCAL_RESOURCES_RETRY_AFTER).into(),
                );
            }
            Self::JobNotFinished { .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    retry_after_secs(JOB_POLL_RETRY_AFTER).into(),
                );
            }
            Self::JobQueueFull { .. } | Self::JobsUnavailable(_) | Self::JobStoreUnavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    retry_after_secs(JOBS_BUSY_RETRY_AFTER).into(),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<crate::codec::request::HeadError> for ProxyError {
    fn from(err: crate::codec::request::HeadError) -> Self {
        use crate::codec::request::HeadError;
        match err {
            HeadError::TooLarge { limit, what } => Self::RequestHeadTooLarge { limit, what },
            HeadError::Malformed(why) => Self::BadRequest(why),
            HeadError::UnsupportedTransferCoding(coding) => Self::UnsupportedTransferCoding(coding),
            HeadError::ExpectationFailed(expect) => Self::ExpectationFailed(expect),
        }
    }
}

/// Why a request was refused by a rate limit (a 429). Built here, answered by [`ProxyError`].
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The policy that refused.
    pub rule: std::sync::Arc<str>,
    /// Time until the request would be admitted.
    pub retry_after: Duration,
    /// `RateLimit-Policy` value.
    pub policy: HeaderValue,
    /// `RateLimit` value (`r=0`, `t` = the `Retry-After` seconds).
    pub state: HeaderValue,
    /// Human-readable reason.
    pub detail: String,
}

impl Rejection {
    /// `Retry-After` in whole seconds, rounded up (and at least 1), so a client that waits this
    /// long is admitted.
    pub fn retry_after_secs(&self) -> u64 {
        retry_after_secs(self.retry_after)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The message of a shed answer ([`ProxyError::Overloaded`]), naming the cap's setting.
pub fn overload_message(
    scope: &str,
    upstream: &str,
    limit: usize,
    retry_after: Duration,
) -> String {
    let secs = retry_after_secs(retry_after);
    match scope {
        "upstream" => format!(
            "upstream `{upstream}` has {limit} requests in flight, its cap \
             (upstream.max_in_flight); retry in {secs} s"
        ),
        "streams" => format!(
            "{limit} standalone streams are open, the sidecar's cap (limits.max_streams); \
             retry in {secs} s"
        ),
        _ => format!(
            "the sidecar has {limit} requests in flight, its cap (limits.max_in_flight); \
             retry in {secs} s"
        ),
    }
}

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({field}): {source}")]
    Bind {
        /// Config field of the address.
        field: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Metrics could not be registered (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The job store could not be opened or read (the message names the file).
    #[error("jobs: {0}")]
    Jobs(String),
    /// The `[redis]` connection could not be set up.
    #[error("{0}")]
    Redis(String),
    /// The span exporter could not be set up (`[tracing]`).
    #[error("tracing: {0}")]
    Tracing(String),
}

/// `error: cause: cause` for logs and error bodies; hyper's top-level messages alone are vague.
pub fn error_chain(err: &dyn std::error::Error) -> String {
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
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(resp: Response<ProxyBody>) -> Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn unreachable_is_502_with_jsonrpc_id() {
        let err = ProxyError::UpstreamUnreachable {
            upstream: "shield".into(),
            detail: "refused".into(),
        };
        let resp = err.to_response(Some(&json!(7)), "rid");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let v = body_json(resp).await;
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], codes::UPSTREAM_UNREACHABLE);
        assert_eq!(v["error"]["data"]["upstream"], "shield");
        assert_eq!(v["error"]["data"]["request_id"], "rid");
    }

    #[tokio::test]
    async fn timeout_is_504_and_unknown_id_is_null() {
        let err = ProxyError::UpstreamTimeout {
            upstream: "u".into(),
            after: Duration::from_secs(5),
        };
        let resp = err.to_response(None, "rid");
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        let v = body_json(resp).await;
        assert!(v["id"].is_null());
        assert!(v["error"]["message"].as_str().unwrap().contains("5s"));
    }

    #[tokio::test]
    async fn circuit_open_is_503_with_retry_after_and_the_circuit() {
        let err = ProxyError::CircuitOpen {
            circuit: "search/crawl_*".into(),
            upstream: "search".into(),
            retry_after: Duration::from_millis(41_200),
        };
        let resp = err.to_response(Some(&json!("a")), "rid");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "42");
        assert_eq!(resp.headers()[X_CIRCUIT_OPEN], "search/crawl_*");
        let v = body_json(resp).await;
        assert_eq!(v["id"], "a");
        assert_eq!(v["error"]["code"], codes::CIRCUIT_OPEN);
        assert_eq!(v["error"]["data"]["reason"], "circuit_open");
        assert_eq!(v["error"]["data"]["upstream"], "search");
    }

    #[tokio::test]
    async fn local_resources_is_503_with_retry_after_and_the_resource() {
        let err = ProxyError::LocalResourceExhausted {
            upstream: "search".into(),
            kind: LocalResource::Emfile,
        };
        let resp = err.to_response(Some(&json!(3)), "rid");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert!(resp.headers().get(X_CIRCUIT_OPEN).is_none());
        let v = body_json(resp).await;
        assert_eq!(v["error"]["code"], codes::LOCAL_RESOURCES);
        assert_eq!(v["error"]["data"]["reason"], "local_resources");
        assert_eq!(v["error"]["data"]["resource"], "emfile");
        assert_eq!(v["error"]["data"]["upstream"], "search");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("EMFILE"),
            "{v}"
        );
    }

    #[tokio::test]
    async fn a_request_body_timeout_is_408_naming_the_setting() {
        let err = ProxyError::RequestBodyTimeout(crate::body::BodyReadTimeout {
            rule: crate::body::BodyReadRule::MinRate,
            limits: crate::body::BodyReadLimits {
                idle: Duration::from_secs(30),
                min_rate: 8192,
            },
            received: 12,
        });
        let resp = err.to_response(None, "rid");
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        let v = body_json(resp).await;
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], codes::REQUEST_BODY_TIMEOUT);
        assert_eq!(v["error"]["data"]["reason"], "request_body_timeout");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("listen.body_min_rate"), "{message}");
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
        assert_eq!(retry_after_secs(Duration::from_millis(60_001)), 61);
    }

    #[test]
    fn every_code_is_in_the_proxy_range() {
        let all = [
            ProxyError::Unauthorized {
                outcome: "missing",
                detail: "d".into(),
                challenge: HeaderValue::from_static("Bearer"),
            },
            ProxyError::Forbidden {
                detail: "d".into(),
                challenge: HeaderValue::from_static("Bearer"),
            },
            ProxyError::OriginNotAllowed { origin: "o".into() },
            ProxyError::HostNotAllowed { host: "h".into() },
            ProxyError::NoRoute { path: "/".into() },
            ProxyError::MethodNotAllowed {
                method: "PUT".into(),
            },
            ProxyError::BadRequest("x".into()),
            ProxyError::PayloadTooLarge { limit: 1 },
            ProxyError::RequestBodyTimeout(crate::body::BodyReadTimeout {
                rule: crate::body::BodyReadRule::Idle,
                limits: crate::body::BodyReadLimits::default(),
                received: 0,
            }),
            ProxyError::UnsupportedTransferCoding("gzip".into()),
            ProxyError::UpstreamUnreachable {
                upstream: "u".into(),
                detail: "d".into(),
            },
            ProxyError::UpstreamTimeout {
                upstream: "u".into(),
                after: Duration::from_secs(1),
            },
            ProxyError::UpstreamFailed {
                upstream: "u".into(),
                detail: "d".into(),
            },
            ProxyError::CircuitOpen {
                circuit: "u".into(),
                upstream: "u".into(),
                retry_after: Duration::from_secs(1),
            },
            ProxyError::Overloaded {
                scope: "global",
                upstream: "u".into(),
                limit: 1,
                retry_after: Duration::from_secs(1),
            },
            ProxyError::LocalResourceExhausted {
                upstream: "u".into(),
                kind: LocalResource::Enfile,
            },
        ];
        for e in all {
            assert!((-32019..=-32000).contains(&e.jsonrpc_code()), "{e}");
        }
    }
}
