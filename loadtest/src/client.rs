//! One MCP endpoint as the load generator sees it: an HTTP leg ([`crate::leg`]: the sidecar
//! library's pooled HTTP/1.1 client, or HTTP/2; rustls for `https://`, an optional CA file), MCP
//! sessions (`initialize`,
//! `notifications/initialized`, `Mcp-Session-Id`, the negotiated revision, `DELETE` at the end;
//! stateless servers work too; on 2026-07-28 no session at all, `server/discover` and the
//! per-request envelope of [`crate::stateless`]), and the judgement of one call's answer, JSON or
//! SSE (scanned with the library's event scanner): a success is a 2xx carrying the matching
//! JSON-RPC `result` that is not a tool error.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use mcp_sidecar::body::full;
use mcp_sidecar::config::UpstreamConfig;
use mcp_sidecar::mcp::sse::{DecodedEvent, EventSplitter, decode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::leg::{Leg, LegBody, LegError, Version};
use crate::report::Outcome;
use crate::stateless;

/// The revision a session asks for unless told otherwise (`--protocol`): the newest with
/// sessions; a server may answer an older one.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Largest answer read (64 MiB, the fixture's largest tool result): a bigger one is an error,
/// not a reason to hold unbounded memory.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// `Mcp-Session-Id`.
const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`.
const PROTOCOL: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method` (2026-07-28).
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name` (2026-07-28).
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// Where the load goes, and how.
#[derive(Debug, Clone)]
pub struct Target {
    uri: http::Uri,
    pub(crate) pool: Leg,
    /// What the leg was built from, to build it again in another HTTP version.
    leg_config: std::sync::Arc<UpstreamConfig>,
    headers: HeaderMap,
    pub(crate) timeout: Duration,
    /// The revision asked for: in `initialize`, or (2026-07-28 on) in every request.
    protocol: String,
}

/// One virtual client's session (no id: a stateless server).
#[derive(Debug, Clone, Default)]
pub struct Session {
    id: Option<HeaderValue>,
    version: Option<HeaderValue>,
    /// On the stateless protocol (2026-07-28): every request carries the envelope.
    envelope: bool,
}

impl Session {
    /// Whether the server gave a session id.
    pub fn stateful(&self) -> bool {
        self.id.is_some()
    }

    /// Whether requests carry 2026-07-28's per-request envelope (no session).
    pub fn stateless(&self) -> bool {
        self.envelope
    }
}

/// How a call ended, and when the moments measured apart came.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Success or the error's class.
    pub outcome: Outcome,
    /// For an SSE answer: when its first event was complete.
    pub first_event: Option<Instant>,
    /// For a sidecar job: when its `202 Accepted` came (the answer is then its result).
    pub accepted: Option<Instant>,
}

/// A call's answer as [`Target::call_observed`] gives it.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The outcome and its moments.
    pub answer: Answer,
    /// The head of an answer that was not a 2xx.
    pub refusal: Option<Refusal>,
    /// The JSON-RPC response, when one came.
    pub message: Option<Value>,
}

/// The head of an answer that was not a 2xx.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
}

impl Target {
    /// The endpoint at `url`, over at most `connections` kept-alive connections, with `headers`
    /// on every request (credentials among them), a `ca_file` trusted beside the system roots,
    /// and `timeout` per request.
    pub fn new(
        url: &str,
        connections: usize,
        headers: HeaderMap,
        ca_file: Option<PathBuf>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("URL `{url}`: {e}"))?;
        let (Some(scheme), Some(_)) = (uri.scheme_str(), uri.authority()) else {
            anyhow::bail!("URL `{url}` must be absolute: http://host:port/path or https://…");
        };
        if scheme != "http" && scheme != "https" {
            anyhow::bail!("URL `{url}`: the scheme must be http or https");
        }
        let mut config = UpstreamConfig::new("load", url, None);
        config.ca_file = ca_file;
        config.pool_max_idle = connections.max(1);
        config.pool_idle_timeout = Duration::from_secs(60);
        config.connect_timeout = timeout;
        let pool = Leg::new(Version::Http1, &config, origin(&uri)?)?;
        Ok(Self {
            uri,
            pool,
            leg_config: std::sync::Arc::new(config),
            headers,
            timeout,
            protocol: PROTOCOL_VERSION.to_owned(),
        })
    }

    /// Speaks `version` of HTTP (HTTP/1.1 unless told otherwise).
    pub fn with_http(mut self, version: Version) -> anyhow::Result<Self> {
        self.pool = Leg::new(version, &self.leg_config, origin(&self.uri)?)?;
        Ok(self)
    }

    /// Asks for revision `version` (`YYYY-MM-DD`): in `initialize`, or from 2026-07-28 on with
    /// no session, the revision and the client's capabilities in every request.
    pub fn with_protocol(mut self, version: &str) -> anyhow::Result<Self> {
        if !stateless::is_revision(version) {
            anyhow::bail!(
                "protocol revision `{version}`: a revision is a date, such as 2026-07-28"
            );
        }
        version.clone_into(&mut self.protocol);
        Ok(self)
    }

    /// A request to the target's URL with the target's headers and the session's.
    pub(crate) fn request(
        &self,
        method: Method,
        session: &Session,
        body: Bytes,
    ) -> Request<mcp_sidecar::body::ProxyBody> {
        let mut req = Request::new(full(body));
        *req.method_mut() = method;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.clone_from(&self.headers);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(id) = &session.id {
            h.insert(SESSION_ID, id.clone());
        }
        if let Some(v) = &session.version {
            h.insert(PROTOCOL, v.clone());
        }
        req
    }

    /// A POST of the JSON-RPC request `body` in `session`; on the stateless protocol with its
    /// envelope, the Tasks extension declared when `tasks`.
    pub(crate) fn post(
        &self,
        session: &Session,
        body: Bytes,
        tasks: bool,
    ) -> Request<mcp_sidecar::body::ProxyBody> {
        if !session.envelope {
            return self.request(Method::POST, session, body);
        }
        // The workload writes each body whole; the envelope goes in here, so a run on an older
        // revision pays nothing for it.
        match serde_json::from_slice::<Value>(&body) {
            Ok(message) => self.post_message(session, message, tasks),
            Err(_) => self.request(Method::POST, session, body),
        }
    }

    /// A POST of `message` in `session`, as [`Target::post`].
    pub(crate) fn post_message(
        &self,
        session: &Session,
        mut message: Value,
        tasks: bool,
    ) -> Request<mcp_sidecar::body::ProxyBody> {
        if !session.envelope {
            return self.request(Method::POST, session, Bytes::from(message.to_string()));
        }
        let routing = stateless::wrap(&mut message, &self.protocol, stateless::capabilities(tasks));
        let mut req = self.request(Method::POST, session, Bytes::from(message.to_string()));
        let h = req.headers_mut();
        if let Some(method) = routing.method {
            h.insert(MCP_METHOD, method);
        }
        if let Some(name) = routing.name {
            h.insert(MCP_NAME, name);
        }
        req
    }

    /// The per-request timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The target's URL.
    pub(crate) fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// Opens a session: `initialize` (its answer must be a result) and
    /// `notifications/initialized`; on the stateless protocol, `server/discover` instead (its
    /// answer must be a result that lists the revision, when it lists any), and no session.
    pub async fn open(&self) -> anyhow::Result<Session> {
        if stateless::is_stateless(&self.protocol) {
            return self.discover().await;
        }
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": self.protocol, "capabilities": {},
            "clientInfo": {"name": "mcp-load", "version": env!("CARGO_PKG_VERSION")}}});
        let req = self.request(
            Method::POST,
            &Session::default(),
            Bytes::from(init.to_string()),
        );
        let response = tokio::time::timeout(self.timeout, self.pool.request(req))
            .await
            .map_err(|_| anyhow::anyhow!("initialize: no answer within {:?}", self.timeout))?
            .map_err(|e| anyhow::anyhow!("initialize: {e}"))?;
        let status = response.status();
        let id = response.headers().get(&SESSION_ID).cloned();
        let (outcome, answer) = self.judge(response, &json!(0), &mut None).await;
        if outcome != Outcome::Success {
            anyhow::bail!("initialize failed ({status}): {outcome:?}");
        }
        let version = answer
            .as_ref()
            .and_then(|a| a.pointer("/result/protocolVersion"))
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok());
        let session = Session {
            id,
            version,
            envelope: false,
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let req = self.request(Method::POST, &session, Bytes::from(note.to_string()));
        if let Ok(Ok(r)) = tokio::time::timeout(self.timeout, self.pool.request(req)).await {
            let _ = r.into_body().collect().await;
        }
        Ok(session)
    }

    /// `server/discover` on the stateless protocol: the server must answer it and speak the
    /// revision.
    async fn discover(&self) -> anyhow::Result<Session> {
        let session = Session {
            id: None,
            version: HeaderValue::from_str(&self.protocol).ok(),
            envelope: true,
        };
        let req = self.post_message(&session, stateless::discover(), false);
        let response = tokio::time::timeout(self.timeout, self.pool.request(req))
            .await
            .map_err(|_| anyhow::anyhow!("server/discover: no answer within {:?}", self.timeout))?
            .map_err(|e| anyhow::anyhow!("server/discover: {e}"))?;
        let status = response.status();
        let (outcome, answer) = self.judge(response, &json!(0), &mut None).await;
        if outcome != Outcome::Success {
            anyhow::bail!(
                "server/discover failed ({status}): {outcome:?}: does the server speak {}?",
                self.protocol
            );
        }
        let supported = answer
            .as_ref()
            .and_then(|a| a.pointer("/result/supportedVersions"))
            .and_then(Value::as_array);
        if let Some(list) = supported
            && !list
                .iter()
                .any(|v| v.as_str() == Some(self.protocol.as_str()))
        {
            anyhow::bail!(
                "server/discover: the server does not speak {} (it lists {})",
                self.protocol,
                Value::Array(list.clone())
            );
        }
        Ok(session)
    }

    /// Ends a session (`DELETE`); nothing for a stateless one.
    pub async fn close(&self, session: &Session) {
        if !session.stateful() {
            return;
        }
        let req = self.request(Method::DELETE, session, Bytes::new());
        if let Ok(Ok(r)) = tokio::time::timeout(self.timeout, self.pool.request(req)).await {
            let _ = r.into_body().collect().await;
        }
    }

    /// Sends one JSON-RPC request (`body`, whose id is `id`) and judges its answer.
    pub async fn call(&self, session: &Session, id: &Value, body: Bytes) -> Answer {
        self.call_observed(session, id, body).await.answer
    }

    /// [`Target::call`], with what callers that check more than the outcome need (mcp-chaos):
    /// the head of an answer that was not a 2xx (its status and headers: `Retry-After`, the
    /// sidecar's `X-Circuit-Open`) and the JSON-RPC response itself.
    pub async fn call_observed(&self, session: &Session, id: &Value, body: Bytes) -> Observed {
        let req = self.post(session, body, false);
        let deadline = Instant::now() + self.timeout;
        let response = match self.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => {
                return Observed {
                    answer,
                    refusal: None,
                    message: None,
                };
            }
        };
        let refusal = (!response.status().is_success()).then(|| Refusal {
            status: response.status(),
            headers: response.headers().clone(),
        });
        let mut first_event = None;
        let judged =
            tokio::time::timeout_at(deadline, self.judge(response, id, &mut first_event)).await;
        let (answer, message) = match judged {
            Ok((outcome, message)) => (
                Answer {
                    outcome,
                    first_event,
                    accepted: None,
                },
                message,
            ),
            Err(_) => (
                Answer {
                    first_event,
                    ..error("timeout")
                },
                None,
            ),
        };
        Observed {
            answer,
            refusal,
            message,
        }
    }

    /// `reference` (an absolute path, as `Location` gives) on the target's origin.
    pub(crate) fn resolve(&self, reference: &str) -> Result<http::Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = self.uri.scheme().cloned();
        parts.authority = self.uri.authority().cloned();
        parts.path_and_query = Some(reference.parse()?);
        Ok(http::Uri::from_parts(parts)?)
    }

    /// Sends `req` by `deadline`: the response head, or the failed call's answer (`timeout`,
    /// `connect`, `reset`).
    pub(crate) async fn send(
        &self,
        req: Request<mcp_sidecar::body::ProxyBody>,
        deadline: Instant,
    ) -> Result<http::Response<LegBody>, Answer> {
        match tokio::time::timeout_at(deadline, self.pool.request(req)).await {
            Err(_) | Ok(Err(LegError::Timeout)) => Err(error("timeout")),
            Ok(Err(LegError::Connect(_))) => Err(error("connect")),
            Ok(Err(LegError::Reset(_))) => Err(error("reset")),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// The outcome of an answer to the request with `id`, and the response message.
    pub(crate) async fn judge(
        &self,
        response: http::Response<LegBody>,
        id: &Value,
        first_event: &mut Option<Instant>,
    ) -> (Outcome, Option<Value>) {
        let status = response.status();
        if !status.is_success() {
            let _ = response.into_body().collect().await;
            return (Outcome::Error(format!("http_{}", status.as_u16())), None);
        }
        let sse = is_event_stream(response.headers());
        let mut body = response.into_body();
        if sse {
            let mut events = EventReader::new(body);
            loop {
                match events.next().await {
                    Ok(Some(event)) => {
                        first_event.get_or_insert_with(Instant::now);
                        if event.event_type == "message"
                            && let Some(message) = response_to(&event.data, id)
                        {
                            return (classify(&message), Some(message));
                        }
                    }
                    Ok(None) => return (Outcome::Error("no_answer".into()), None),
                    Err(class) => return (Outcome::Error(class.into()), None),
                }
            }
        }
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return (Outcome::Error("reset".into()), None);
            };
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > MAX_ANSWER_BYTES {
                    return (Outcome::Error("too_large".into()), None);
                }
            }
        }
        if status == StatusCode::ACCEPTED && buf.is_empty() {
            // A notification's answer.
            return (Outcome::Success, None);
        }
        match std::str::from_utf8(&buf)
            .ok()
            .and_then(|t| response_to(t, id))
        {
            Some(message) => (classify(&message), Some(message)),
            None => (Outcome::Error("bad_answer".into()), None),
        }
    }
}

/// A call that failed with `class` before anything was measured apart.
pub(crate) fn error(class: &str) -> Answer {
    Answer {
        outcome: Outcome::Error(class.to_owned()),
        first_event: None,
        accepted: None,
    }
}

/// An event stream read event by event, as a client dispatches them (comment-only blocks
/// skipped), with the library's event scanner.
pub(crate) struct EventReader {
    body: LegBody,
    splitter: EventSplitter,
    pending: BytesMut,
    scanned: usize,
    at_start: bool,
    limit: usize,
}

impl EventReader {
    /// Reads `body`, an event of at most the largest answer read.
    pub(crate) fn new(body: LegBody) -> Self {
        Self::with_limit(body, MAX_ANSWER_BYTES)
    }

    /// Reads `body`, an event of at most `limit` bytes.
    pub(crate) fn with_limit(body: LegBody, limit: usize) -> Self {
        Self {
            body,
            splitter: EventSplitter::default(),
            pending: BytesMut::new(),
            scanned: 0,
            at_start: true,
            limit,
        }
    }

    /// The next event; `None` at the end of the stream; the error's class when the stream
    /// broke off (`reset`) or an event grew past the largest answer read (`too_large`).
    pub(crate) async fn next(&mut self) -> Result<Option<DecodedEvent>, &'static str> {
        loop {
            while let Some(end) = self.splitter.find_event_end(&self.pending[self.scanned..]) {
                let event = self.pending.split_to(self.scanned + end);
                self.scanned = 0;
                let decoded = decode(&event, self.at_start);
                self.at_start = false;
                if decoded.is_some() {
                    return Ok(decoded);
                }
            }
            self.scanned = self.pending.len();
            if self.pending.len() > self.limit {
                return Err("too_large");
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(_)) => return Err("reset"),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Whether a response is an event stream (`Content-Type: text/event-stream`).
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// `text` parsed when it is a JSON-RPC response to the request with `id`.
pub(crate) fn response_to(text: &str, id: &Value) -> Option<Value> {
    let message: Value = serde_json::from_str(text).ok()?;
    let is_response = message.get("result").is_some() || message.get("error").is_some();
    (is_response && message.get("id") == Some(id)).then_some(message)
}

/// A response's outcome: a result is a success unless it is a tool error; an error counts by
/// its code.
pub fn classify(message: &Value) -> Outcome {
    if let Some(e) = message.get("error") {
        let code = e.get("code").and_then(Value::as_i64).unwrap_or(0);
        return Outcome::Error(format!("jsonrpc_{code}"));
    }
    match message.get("result") {
        Some(r) if r.get("isError") == Some(&Value::Bool(true)) => {
            Outcome::Error("tool_error".into())
        }
        Some(_) => Outcome::Success,
        None => Outcome::Error("bad_answer".into()),
    }
}

/// `scheme://authority` of an absolute `uri`.
fn origin(uri: &http::Uri) -> anyhow::Result<http::Uri> {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok(format!("{scheme}://{authority}").parse()?),
        _ => anyhow::bail!("URL `{uri}` must be absolute: http://host:port/path or https://…"),
    }
}
