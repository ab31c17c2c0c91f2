//! The legacy HTTP+SSE transport (protocol 2024-11-05), `--transport legacy`: the run's URL is
//! the server's `GET /sse` endpoint.
//!
//! Each virtual session opens `GET URL`, reads the `endpoint` event (its URL resolved against
//! the run's, and refused on another origin), then POSTs `initialize` and
//! `notifications/initialized` to it. A request is a POST answered `202 Accepted` whose JSON-RPC
//! response arrives later as an `event: message` on the session's stream: one reader task per
//! session routes each response by its id to the call waiting for it (a map of one-shot
//! senders; the workload's ids are unique in a run, so in a session). A call is measured, as on
//! the streamable transport, from its intended start to its response event.
//!
//! Failures: a POST answered with anything but 202 counts as `http_NNN` (a 200 too: the answer
//! belongs on the stream); a call with no response by `--timeout` is a `timeout` and its waiter
//! is removed; a stream that ends fails every call waiting on it with `stream_closed`. The
//! session is then **reopened** by the next call (one reopen at a time; a reopen that fails
//! fails that call with its class, `connect` or `http_NNN`), so one dropped stream costs the
//! calls in flight on it, not the rest of the run. Sessions end by dropping their streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use mcp_sidecar::mcp::sse::{EventSplitter, decode};
use mcp_sidecar::upstream::PooledBody;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::client::{Answer, Session, Target, classify};
use crate::report::Outcome;

/// The revision the legacy transport belongs to, asked for in `initialize`.
pub const LEGACY_PROTOCOL_VERSION: &str = "2024-11-05";
/// Largest event read on a session's stream (the fixture's largest tool result is 64 MiB): a
/// bigger one ends the stream rather than holding unbounded memory.
const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024 + 4096;

/// The calls waiting for their responses on one stream, by the JSON text of their id; `None`
/// once the stream has ended (a call then cannot wait on it).
type Waiters = Arc<Mutex<Option<HashMap<String, oneshot::Sender<Value>>>>>;

/// A run's legacy sessions.
#[derive(Debug)]
pub struct Sessions {
    target: Target,
    sessions: Vec<LegacySession>,
}

/// One virtual session: its current stream, and a lock that makes one call at a time reopen
/// it.
#[derive(Debug)]
struct LegacySession {
    conn: Mutex<Arc<Conn>>,
    reopening: tokio::sync::Mutex<()>,
}

/// One open stream and the endpoint its session POSTs to.
#[derive(Debug)]
struct Conn {
    endpoint: http::Uri,
    waiters: Waiters,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the reader drops the stream's body, which closes its connection: how a
        // legacy session ends.
        self.reader.abort();
    }
}

impl Conn {
    fn closed(&self) -> bool {
        lock(&self.waiters).is_none()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a session's stream could not be opened: the class a call counts it as, and what to
/// tell a person at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    /// `http_<status>`, `connect`, `timeout`, `reset`, `stream_closed`, `bad_endpoint`, or the
    /// class of `initialize`'s answer (`jsonrpc_<code>`...).
    pub class: String,
    /// What happened.
    pub detail: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.class)
    }
}

fn open_error(class: impl Into<String>, detail: impl Into<String>) -> OpenError {
    OpenError {
        class: class.into(),
        detail: detail.into(),
    }
}

fn class_of(outcome: Outcome) -> String {
    match outcome {
        Outcome::Error(class) => class,
        Outcome::Success => "bad_answer".to_owned(),
    }
}

fn failed(class: &str) -> Answer {
    Answer {
        outcome: Outcome::Error(class.to_owned()),
        first_event: None,
        accepted: None,
    }
}

impl Sessions {
    /// Opens `count` sessions on `target` (the `GET /sse` URL).
    pub async fn open(target: &Target, count: usize) -> anyhow::Result<Self> {
        let mut sessions = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let conn = Conn::open(target)
                .await
                .map_err(|e| anyhow::anyhow!("legacy session at {}: {e}", target.uri()))?;
            sessions.push(LegacySession {
                conn: Mutex::new(Arc::new(conn)),
                reopening: tokio::sync::Mutex::new(()),
            });
        }
        Ok(Self {
            target: target.clone(),
            sessions,
        })
    }

    /// Sends request `n` (`body`, whose id is `id`) on its session and waits for its response
    /// event.
    pub async fn call(&self, n: u64, id: &Value, body: Bytes) -> Answer {
        let session = &self.sessions[(n as usize) % self.sessions.len()];
        let deadline = Instant::now() + self.target.timeout();
        let conn = match tokio::time::timeout_at(deadline, session.current(&self.target)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return failed(&e.class),
            Err(_) => return failed("timeout"),
        };
        let outcome = conn.exchange(&self.target, id, body, deadline).await;
        Answer {
            outcome,
            first_event: None,
            accepted: None,
        }
    }
}

impl LegacySession {
    /// The session's stream, reopened first if it ended.
    async fn current(&self, target: &Target) -> Result<Arc<Conn>, OpenError> {
        let conn = lock(&self.conn).clone();
        if !conn.closed() {
            return Ok(conn);
        }
        let _one_at_a_time = self.reopening.lock().await;
        let conn = lock(&self.conn).clone();
        if !conn.closed() {
            // Another call reopened it meanwhile.
            return Ok(conn);
        }
        let fresh = Arc::new(Conn::open(target).await?);
        *lock(&self.conn) = fresh.clone();
        Ok(fresh)
    }
}

impl Conn {
    /// `GET` the stream, read its `endpoint` event, start its reader, and initialize the
    /// session.
    async fn open(target: &Target) -> Result<Self, OpenError> {
        let mut req = target.request(Method::GET, &Session::default(), Bytes::new());
        let h = req.headers_mut();
        h.remove(header::CONTENT_TYPE);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let deadline = Instant::now() + target.timeout();
        let response = target
            .send(req, deadline)
            .await
            .map_err(|a| open_error(class_of(a.outcome), "the GET for the stream failed"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(open_error(
                format!("http_{}", status.as_u16()),
                format!("the GET for the stream was answered {status}"),
            ));
        }
        let mut reader = Reader::new(response.into_body());
        let endpoint = tokio::time::timeout_at(deadline, reader.endpoint())
            .await
            .map_err(|_| open_error("timeout", "no endpoint event within --timeout"))?
            .ok_or_else(|| {
                open_error(
                    "stream_closed",
                    "the stream ended before its endpoint event",
                )
            })?;
        let endpoint =
            resolve(target.uri(), &endpoint).map_err(|why| open_error("bad_endpoint", why))?;
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let routed = waiters.clone();
        let conn = Conn {
            endpoint,
            waiters,
            reader: tokio::spawn(async move { reader.route(routed).await }),
        };
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": LEGACY_PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "mcp-load", "version": env!("CARGO_PKG_VERSION")}}});
        let deadline = Instant::now() + target.timeout();
        match conn
            .exchange(target, &json!(0), Bytes::from(init.to_string()), deadline)
            .await
        {
            Outcome::Success => {}
            Outcome::Error(class) => return Err(open_error(class, "initialize failed")),
        }
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        conn.post(target, Bytes::from(note.to_string()), deadline)
            .await
            .map_err(|class| open_error(class, "notifications/initialized failed"))?;
        Ok(conn)
    }

    /// POSTs `body` to the endpoint: `Ok` for a 202, else the error class.
    async fn post(&self, target: &Target, body: Bytes, deadline: Instant) -> Result<(), String> {
        let mut req = target.request(Method::POST, &Session::default(), body);
        *req.uri_mut() = self.endpoint.clone();
        let response = target
            .send(req, deadline)
            .await
            .map_err(|a| class_of(a.outcome))?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        if status == StatusCode::ACCEPTED {
            Ok(())
        } else {
            Err(format!("http_{}", status.as_u16()))
        }
    }

    /// POSTs a request and waits by `deadline` for its response on the stream.
    async fn exchange(
        &self,
        target: &Target,
        id: &Value,
        body: Bytes,
        deadline: Instant,
    ) -> Outcome {
        let key = id.to_string();
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = lock(&self.waiters);
            let Some(map) = waiters.as_mut() else {
                return Outcome::Error("stream_closed".into());
            };
            if map.insert(key.clone(), tx).is_some() {
                // Ids are unique in a session: a clash is the workload's bug, not the server's.
                return Outcome::Error("duplicate_id".into());
            }
        }
        let forget = || {
            if let Some(map) = lock(&self.waiters).as_mut() {
                map.remove(&key);
            }
        };
        if let Err(class) = self.post(target, body, deadline).await {
            forget();
            return Outcome::Error(class);
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(message)) => classify(&message),
            // The reader dropped the sender: the stream ended.
            Ok(Err(_)) => Outcome::Error("stream_closed".into()),
            Err(_) => {
                forget();
                Outcome::Error("timeout".into())
            }
        }
    }
}

/// `reference` (the `endpoint` event's data) resolved against the stream's `base` URL; an
/// endpoint on another origin is refused (a client must not send its requests elsewhere).
pub fn resolve(base: &http::Uri, reference: &str) -> Result<http::Uri, String> {
    let bad = |why: &str| format!("bad_endpoint: `{reference}` {why}");
    let base_url = url::Url::parse(&base.to_string()).map_err(|e| bad(&e.to_string()))?;
    let joined = base_url
        .join(reference.trim())
        .map_err(|e| bad(&e.to_string()))?;
    if joined.origin() != base_url.origin() {
        return Err(bad("is on another origin than the stream"));
    }
    joined
        .as_str()
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))
}

/// A session's stream, read event by event.
struct Reader {
    body: PooledBody,
    splitter: EventSplitter,
    pending: BytesMut,
    scanned: usize,
    at_start: bool,
}

impl Reader {
    fn new(body: PooledBody) -> Self {
        Self {
            body,
            splitter: EventSplitter::default(),
            pending: BytesMut::new(),
            scanned: 0,
            at_start: true,
        }
    }

    /// The next dispatched event as (type, data); `None` when the stream ends or breaks.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            while let Some(end) = self.splitter.find_event_end(&self.pending[self.scanned..]) {
                let event = self.pending.split_to(self.scanned + end);
                self.scanned = 0;
                let decoded = decode(&event, self.at_start);
                self.at_start = false;
                if let Some(e) = decoded {
                    return Some((e.event_type, e.data));
                }
            }
            self.scanned = self.pending.len();
            if self.pending.len() > MAX_EVENT_BYTES {
                return None;
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.pending.extend_from_slice(&data);
            }
        }
    }

    /// The `endpoint` event's data (events before it are skipped); `None` if the stream ends
    /// first.
    async fn endpoint(&mut self) -> Option<String> {
        loop {
            match self.next().await? {
                (kind, data) if kind == "endpoint" => return Some(data),
                _ => {}
            }
        }
    }

    /// Routes each response on the stream to the call waiting for its id, until the stream
    /// ends; then fails every call still waiting (their senders are dropped).
    async fn route(mut self, waiters: Waiters) {
        while let Some((kind, data)) = self.next().await {
            if kind != "message" {
                continue;
            }
            let Ok(message) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            // Requests and notifications from the server are not answers: left alone.
            if message.get("result").is_none() && message.get("error").is_none() {
                continue;
            }
            let Some(id) = message.get("id") else {
                continue;
            };
            let waiter = lock(&waiters)
                .as_mut()
                .and_then(|m| m.remove(&id.to_string()));
            if let Some(tx) = waiter {
                let _ = tx.send(message);
            }
        }
        // Taking the map drops its senders: each waiting call sees `stream_closed`.
        let _ = lock(&waiters).take();
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "legacy_tests.rs"]
mod tests;
