//! One MCP endpoint as the load generator sees it: the sidecar library's pooled HTTP/1.1 client
//! leg (rustls for `https://`, an optional CA file), MCP sessions (`initialize`,
//! `notifications/initialized`, `Mcp-Session-Id`, the negotiated revision, `DELETE` at the end;
//! stateless servers work too), and the judgement of one call's answer, JSON or SSE (scanned with
//! the library's event scanner): a success is a 2xx carrying the matching JSON-RPC `result` that
//! is not a tool error.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use mcp_sidecar::body::full;
use mcp_sidecar::config::UpstreamConfig;
use mcp_sidecar::mcp::sse::{EventSplitter, decode};
use mcp_sidecar::upstream::{Pool, PoolError, build_client};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::report::Outcome;

/// The revision a session asks for: the newest with sessions; a server may answer an older one.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Largest answer read (64 MiB, the fixture's largest tool result): a bigger one is an error,
/// not a reason to hold unbounded memory.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// `Mcp-Session-Id`.
const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`.
const PROTOCOL: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Where the load goes, and how.
#[derive(Debug, Clone)]
pub struct Target {
    uri: http::Uri,
    pool: Pool,
    headers: HeaderMap,
    timeout: Duration,
}

/// One virtual client's session (no id: a stateless server).
#[derive(Debug, Clone, Default)]
pub struct Session {
    id: Option<HeaderValue>,
    version: Option<HeaderValue>,
}

impl Session {
    /// Whether the server gave a session id.
    pub fn stateful(&self) -> bool {
        self.id.is_some()
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
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
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
        let pool = build_client(&config, format!("{scheme}://{authority}").parse()?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            uri,
            pool,
            headers,
            timeout,
        })
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

    /// The per-request timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The target's URL.
    pub(crate) fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// Opens a session: `initialize` (its answer must be a result) and
    /// `notifications/initialized`.
    pub async fn open(&self) -> anyhow::Result<Session> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
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
        let session = Session { id, version };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let req = self.request(Method::POST, &session, Bytes::from(note.to_string()));
        if let Ok(Ok(r)) = tokio::time::timeout(self.timeout, self.pool.request(req)).await {
            let _ = r.into_body().collect().await;
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
        let req = self.request(Method::POST, session, body);
        let deadline = Instant::now() + self.timeout;
        let response = match self.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let mut first_event = None;
        match tokio::time::timeout_at(deadline, self.judge(response, id, &mut first_event)).await {
            Ok((outcome, _)) => Answer {
                outcome,
                first_event,
                accepted: None,
            },
            Err(_) => Answer {
                first_event,
                ..error("timeout")
            },
        }
    }

    /// Submits the call as a sidecar job (`Prefer: respond-async`): the `202 Accepted` and its
    /// `Location`, then `GET <location>/result` every `poll` (409 until the job ends) and its
    /// JSON-RPC response judged as a live answer is. A submission that is not a 202 with a
    /// `Location` is `not_accepted` (or its HTTP status).
    pub async fn job(&self, session: &Session, id: &Value, body: Bytes, poll: Duration) -> Answer {
        let mut req = self.request(Method::POST, session, body);
        req.headers_mut()
            .insert("prefer", HeaderValue::from_static("respond-async"));
        let deadline = Instant::now() + self.timeout;
        let response = match self.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let accepted = Instant::now();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = response.into_body().collect().await;
        let Some(location) = location.filter(|_| status == StatusCode::ACCEPTED) else {
            let class = if status.is_success() {
                "not_accepted".to_owned()
            } else {
                format!("http_{}", status.as_u16())
            };
            return error(&class);
        };
        let Ok(result_uri) = self.resolve(&format!("{location}/result")) else {
            return error("bad_location");
        };
        let done = |outcome| Answer {
            outcome,
            first_event: None,
            accepted: Some(accepted),
        };
        // The wait for the end is bounded too: a job that never ends is a timeout, not a hang.
        let end_by = accepted + self.timeout;
        loop {
            tokio::time::sleep(poll).await;
            if Instant::now() >= end_by {
                return done(Outcome::Error("timeout".into()));
            }
            let mut req = self.request(Method::GET, session, Bytes::new());
            *req.uri_mut() = result_uri.clone();
            let response = match self.pool.request(req).await {
                Ok(r) => r,
                Err(PoolError::Connect(_)) => return done(Outcome::Error("connect".into())),
                Err(_) => return done(Outcome::Error("reset".into())),
            };
            if response.status() == StatusCode::CONFLICT {
                let _ = response.into_body().collect().await;
                continue;
            }
            let (outcome, _) = self.judge(response, id, &mut None).await;
            return done(outcome);
        }
    }

    /// Runs the call as an MCP task (2025-11-25: `params.task` on the session's `tools/call`):
    /// the `CreateTaskResult`, then `tasks/get` every `poll` until the task ends, then
    /// `tasks/result`, judged as a live answer is. A call answered without a task is
    /// `not_a_task`.
    pub async fn task(&self, session: &Session, id: &Value, body: Bytes, poll: Duration) -> Answer {
        let Ok(mut call) = serde_json::from_slice::<Value>(&body) else {
            return error("bad_request");
        };
        if let Some(params) = call.get_mut("params").and_then(Value::as_object_mut) {
            params.insert("task".into(), json!({}));
        }
        let req = self.request(Method::POST, session, Bytes::from(call.to_string()));
        let deadline = Instant::now() + self.timeout;
        let response = match self.send(req, deadline).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let (outcome, message) = self.judge(response, id, &mut None).await;
        let accepted = Instant::now();
        let task_id = message
            .as_ref()
            .and_then(|m| m.pointer("/result/task/taskId"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(task_id) = task_id else {
            let class = match outcome {
                Outcome::Success => "not_a_task".to_owned(),
                Outcome::Error(class) => class,
            };
            return error(&class);
        };
        let done = |outcome| Answer {
            outcome,
            first_event: None,
            accepted: Some(accepted),
        };
        let ask = |method: &str| {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method,
                "params": {"taskId": task_id}});
            self.request(Method::POST, session, Bytes::from(body.to_string()))
        };
        let end_by = accepted + self.timeout;
        loop {
            tokio::time::sleep(poll).await;
            if Instant::now() >= end_by {
                return done(Outcome::Error("timeout".into()));
            }
            let response = match self.pool.request(ask("tasks/get")).await {
                Ok(r) => r,
                Err(PoolError::Connect(_)) => return done(Outcome::Error("connect".into())),
                Err(_) => return done(Outcome::Error("reset".into())),
            };
            let (outcome, message) = self.judge(response, id, &mut None).await;
            if outcome != Outcome::Success {
                return done(outcome);
            }
            let status = message
                .as_ref()
                .and_then(|m| m.pointer("/result/status"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if matches!(status, "completed" | "failed" | "cancelled") {
                break;
            }
        }
        match self.pool.request(ask("tasks/result")).await {
            Ok(response) => done(self.judge(response, id, &mut None).await.0),
            Err(PoolError::Connect(_)) => done(Outcome::Error("connect".into())),
            Err(_) => done(Outcome::Error("reset".into())),
        }
    }

    /// `reference` (an absolute path, as `Location` gives) on the target's origin.
    fn resolve(&self, reference: &str) -> Result<http::Uri, http::Error> {
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
    ) -> Result<http::Response<mcp_sidecar::upstream::PooledBody>, Answer> {
        match tokio::time::timeout_at(deadline, self.pool.request(req)).await {
            Err(_) | Ok(Err(PoolError::Timeout)) => Err(error("timeout")),
            Ok(Err(PoolError::Connect(_))) => Err(error("connect")),
            Ok(Err(PoolError::Request(_))) => Err(error("reset")),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// The outcome of an answer to the request with `id`, and the response message.
    async fn judge(
        &self,
        response: http::Response<mcp_sidecar::upstream::PooledBody>,
        id: &Value,
        first_event: &mut Option<Instant>,
    ) -> (Outcome, Option<Value>) {
        let status = response.status();
        if !status.is_success() {
            let _ = response.into_body().collect().await;
            return (Outcome::Error(format!("http_{}", status.as_u16())), None);
        }
        let sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let mut body = response.into_body();
        if sse {
            let mut splitter = EventSplitter::default();
            let mut pending = BytesMut::new();
            let mut scanned = 0;
            let mut at_start = true;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return (Outcome::Error("reset".into()), None);
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                while let Some(end) = splitter.find_event_end(&pending[scanned..]) {
                    first_event.get_or_insert_with(Instant::now);
                    let event = pending.split_to(scanned + end);
                    scanned = 0;
                    let decoded = decode(&event, at_start);
                    at_start = false;
                    if let Some(e) = decoded.filter(|e| e.event_type == "message")
                        && let Some(message) = response_to(&e.data, id)
                    {
                        return (classify(&message), Some(message));
                    }
                }
                if pending.len() > MAX_ANSWER_BYTES {
                    return (Outcome::Error("too_large".into()), None);
                }
                scanned = pending.len();
            }
            return (Outcome::Error("no_answer".into()), None);
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

fn error(class: &str) -> Answer {
    Answer {
        outcome: Outcome::Error(class.to_owned()),
        first_event: None,
        accepted: None,
    }
}

/// `text` parsed when it is a JSON-RPC response to the request with `id`.
fn response_to(text: &str, id: &Value) -> Option<Value> {
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
