//! The HTTP/MCP fault proxy: an HTTP/1.1 reverse proxy (between the sidecar and a backend, or a
//! client and the sidecar) that applies per-request faults ([`HttpFault`]).
//!
//! The server leg is hyper's; the client leg is the sidecar library's pooled HTTP/1.1 client
//! ([`mcp_sidecar::upstream::build_client`]), so the proxy reaches a backend the way the sidecar
//! does. Responses stream through, never buffered. With no fault active a request is forwarded
//! as it came: no body read, no fault lookup beyond one atomic load. A fault that matches on the
//! JSON-RPC message (or answers to its id) reads the body up to [`MAX_MATCHED_BODY`] to classify
//! it, then forwards it unchanged.
//!
//! Faults are checked in the order they were added; the first that matches and fires acts. Each
//! draws from dice seeded by the run's seed and its name ([`crate::rng::Dice`]), so the same seed
//! and the same requests replay the same decisions.
//!
//! Controlled in-process (this module) or over an HTTP control API ([`api`]).

pub mod api;
mod body;
pub mod command;
mod fault;
pub mod spec;
mod sse_faults;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_sidecar::body::{BoxError, ProxyBody, full, read_prefix};
use mcp_sidecar::config::UpstreamConfig;
use mcp_sidecar::mcp::{Message, classify};
use mcp_sidecar::upstream::{Pool, PooledBody, build_client};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use body::{DroppedMidBody, FaultBody};
pub use fault::{Action, FaultCounts, FaultError, HttpFault, Match};
pub use sse_faults::SseFaultBody;

use fault::ActiveFault;
use sse_faults::SseShape;

/// Largest request body read to match a JSON-RPC method or tool name (1 MiB: far above any
/// `tools/call` a test sends, small enough that a fault never holds much memory). A larger body
/// is matched on what was read (the frame that crossed the bound is kept whole; a message cut
/// short does not parse, so JSON-RPC conditions fail) and forwarded whole.
pub const MAX_MATCHED_BODY: usize = 1024 * 1024;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The upstream URL is not an `http://` or `https://` origin.
    #[error("upstream URL `{0}`: expected http://host:port or https://host:port")]
    Upstream(String),
    /// The client leg could not be built (TLS settings).
    #[error("upstream client: {0}")]
    Client(String),
    /// The listen address could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// State shared by the proxy's connections and its handle.
#[derive(Debug)]
struct Shared {
    pool: Pool,
    /// `scheme://authority` of the upstream.
    origin: Uri,
    seed: u64,
    /// Whether any fault is set: the one check on a request when none is.
    active: AtomicBool,
    /// Requests received, faulted or not: what reached "the backend" as the sidecar sees it.
    requests: AtomicU64,
    faults: RwLock<Arc<[Arc<ActiveFault>]>>,
}

/// A running fault proxy; dropping it stops it: the listener and every open connection close
/// (as a proxy that went down would).
#[derive(Debug)]
pub struct HttpFaultProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
    /// Dropped with the proxy: its receivers, one per connection, then end their connections.
    _running: watch::Sender<()>,
}

impl HttpFaultProxy {
    /// Listens on `listen` and forwards to `upstream_url` (an origin: `http://host:port`; the
    /// request's path and query are kept), drawing fault decisions from `seed`.
    pub async fn start(
        listen: SocketAddr,
        upstream_url: &str,
        seed: u64,
    ) -> Result<Self, StartError> {
        let bad_url = || StartError::Upstream(upstream_url.to_owned());
        let uri: Uri = upstream_url.parse().map_err(|_| bad_url())?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(bad_url());
        };
        if scheme != &http::uri::Scheme::HTTP && scheme != &http::uri::Scheme::HTTPS {
            return Err(bad_url());
        }
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| bad_url())?;
        let config = UpstreamConfig::new("chaos", upstream_url, None);
        let pool =
            build_client(&config, origin.clone()).map_err(|e| StartError::Client(e.to_string()))?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            pool,
            origin,
            seed,
            active: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            faults: RwLock::new(Arc::from(Vec::new())),
        });
        let (running, stopped) = watch::channel(());
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        tracing::info!(%local_addr, upstream = upstream_url, seed, "http fault proxy listening");
        Ok(Self {
            shared,
            local_addr,
            accept,
            _running: running,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Adds a fault, checked after those already set.
    pub fn add_fault(&self, fault: HttpFault) -> Result<(), FaultError> {
        let active = ActiveFault::new(fault, self.shared.seed)?;
        self.shared.update(|faults| {
            if faults.iter().any(|f| f.fault.name == active.fault.name) {
                return Err(FaultError::Duplicate(active.fault.name));
            }
            faults.push(Arc::new(active));
            Ok(())
        })
    }

    /// Removes the fault named `name`; whether there was one.
    pub fn remove_fault(&self, name: &str) -> bool {
        self.shared
            .update(|faults| {
                let before = faults.len();
                faults.retain(|f| f.fault.name != name);
                Ok(faults.len() != before)
            })
            .unwrap_or(false)
    }

    /// Removes every fault.
    pub fn clear(&self) {
        let _ = self.shared.update(|faults| {
            faults.clear();
            Ok(())
        });
    }

    /// The faults set now, in order.
    pub fn faults(&self) -> Vec<HttpFault> {
        self.shared
            .snapshot()
            .iter()
            .map(|f| f.fault.clone())
            .collect()
    }

    /// Requests received so far, faulted or not (the scenario runner's proof that no request
    /// reached the backend while a circuit was open).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The decisions of the fault named `name` so far (`None`: no such fault set).
    pub fn counts(&self, name: &str) -> Option<FaultCounts> {
        self.shared
            .snapshot()
            .iter()
            .find(|f| f.fault.name == name)
            .map(|f| f.counts())
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Shared {
    fn snapshot(&self) -> Arc<[Arc<ActiveFault>]> {
        // The list is replaced whole; a panic elsewhere cannot leave it half-written.
        Arc::clone(&self.faults.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<Arc<ActiveFault>>) -> Result<T, FaultError>,
    ) -> Result<T, FaultError> {
        let mut slot = self.faults.write().unwrap_or_else(PoisonError::into_inner);
        let mut faults = slot.to_vec();
        let out = change(&mut faults)?;
        self.active.store(!faults.is_empty(), Ordering::Release);
        *slot = Arc::from(faults);
        Ok(out)
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stopped: watch::Receiver<()>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "http fault proxy: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "http fault proxy: connection ended");
                },
                // The proxy was dropped: the connection closes with it, mid-response or not.
                _ = stopped.changed() => {}
            }
        });
    }
}

/// One request: decide, then answer or forward.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<FaultBody> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if !shared.active.load(Ordering::Acquire) {
        return forward(shared, req.map(box_incoming), None).await;
    }
    let faults = shared.snapshot();
    let (parts, incoming) = req.into_parts();
    let candidates = || faults.iter().filter(|f| f.matches_head(&parts));
    let mut body = box_incoming(incoming);
    let mut message: Option<Message> = None;
    if candidates().any(|f| f.needs_message()) {
        let (prefix, rest) = match read_prefix(body, MAX_MATCHED_BODY).await {
            Ok(read) => read,
            Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("request body: {e}")),
        };
        message = classify(&prefix).ok().and_then(|c| c.single().cloned());
        body = match rest {
            None => full(prefix),
            Some(rest) => prefixed(prefix, rest),
        };
    }
    let fired = candidates()
        .filter(|f| f.matches_message(message.as_ref()))
        .find(|f| f.decide());
    let Some(fault) = fired else {
        return forward(shared, Request::from_parts(parts, body), None).await;
    };
    tracing::debug!(fault = %fault.fault.name, path = parts.uri.path(), "http fault fired");
    let id = message
        .as_ref()
        .and_then(|m| m.id.clone())
        .unwrap_or(serde_json::Value::Null);
    match &fault.fault.action {
        Action::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = Response::new(FaultBody::fixed(Bytes::new()));
            *response.status_mut() = status;
            response
        }
        Action::RpcError { code, message } => json_answer(&json!({
            "jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message},
        })),
        Action::ToolError(text) => json_answer(&json!({
            "jsonrpc": "2.0", "id": id,
            "result": {"content": [{"type": "text", "text": text}], "isError": true},
        })),
        Action::MalformedBody => {
            let mut response = Response::new(FaultBody::fixed(Bytes::from_static(
                b"{\"jsonrpc\": \"2.0\", \"id\": <malformed by mcp-chaos",
            )));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Action::Delay(delay) => {
            tokio::time::sleep(*delay).await;
            forward(shared, Request::from_parts(parts, body), None).await
        }
        action => forward(shared, Request::from_parts(parts, body), Some(action)).await,
    }
}

/// Forwards the request; `shaping` is a fault applied to the response body as it streams.
async fn forward(
    shared: &Shared,
    req: Request<ProxyBody>,
    shaping: Option<&Action>,
) -> Response<FaultBody> {
    let (mut parts, body) = req.into_parts();
    let target = match upstream_uri(&shared.origin, &parts.uri) {
        Ok(uri) => uri,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("request target: {e}")),
    };
    parts.uri = target;
    strip_hop_by_hop(&mut parts.headers);
    let response = match shared.pool.request(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(e) => return answer(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    };
    let (mut parts, upstream) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = match shaping {
        None => FaultBody::Pass(upstream),
        Some(action) => shape(action, upstream, &mut parts.headers),
    };
    Response::from_parts(parts, body)
}

/// The backend's body with a streaming fault applied.
fn shape(action: &Action, upstream: PooledBody, headers: &mut HeaderMap) -> FaultBody {
    let is_sse = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let shape = match action {
        Action::CutSseAfter(n) if is_sse => SseShape::CutAfter(*n),
        Action::DripSse(delay) if is_sse => SseShape::Drip(*delay),
        _ => return shape_bytes(action, upstream),
    };
    // The stream's length changes: the framing becomes chunked.
    headers.remove(header::CONTENT_LENGTH);
    FaultBody::Sse(Box::new(SseFaultBody::new(upstream, shape)))
}

/// The backend's body with a byte-level fault applied (any content type).
fn shape_bytes(action: &Action, upstream: PooledBody) -> FaultBody {
    match action {
        Action::SlowFirstByte(delay) => FaultBody::SlowFirstByte {
            inner: upstream,
            wait: Some(Box::pin(tokio::time::sleep(*delay))),
        },
        Action::DropMidBody(bytes) => FaultBody::DropAfter {
            inner: upstream,
            left: *bytes,
            flushed: false,
        },
        // SSE faults leave other bodies alone; the other actions answer before forwarding.
        _ => FaultBody::Pass(upstream),
    }
}

/// The upstream's absolute URI for a request's path and query.
fn upstream_uri(origin: &Uri, request: &Uri) -> Result<Uri, http::Error> {
    let mut parts = origin.clone().into_parts();
    // A clone shares the request's bytes: no copy, no parse.
    parts.path_and_query = Some(
        request
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    Ok(Uri::from_parts(parts)?)
}

/// Drops the headers that describe one connection, not the message (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn box_incoming(body: Incoming) -> ProxyBody {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
}

/// A body that was read in part (`prefix`) to match on, followed by the unread `rest`.
fn prefixed(prefix: Bytes, rest: ProxyBody) -> ProxyBody {
    let head = http_body_util::Full::new(prefix).map_err(|never| -> BoxError { match never {} });
    ChainBody {
        head: Some(head),
        rest,
    }
    .boxed_unsync()
}

/// `head` then `rest`.
struct ChainBody<H> {
    head: Option<H>,
    rest: ProxyBody,
}

impl<H> http_body::Body for ChainBody<H>
where
    H: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.as_mut() {
            match std::pin::Pin::new(head).poll_frame(cx) {
                std::task::Poll::Ready(None) => this.head = None,
                other => return other,
            }
        }
        std::pin::Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(H::is_end_stream) && self.rest.is_end_stream()
    }

    // Exact when the client announced a length: the backend gets the `Content-Length` it would
    // have had, not a chunked body.
    fn size_hint(&self) -> http_body::SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.size_hint().lower());
        let rest = self.rest.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(head + rest.lower());
        if let Some(upper) = rest.upper() {
            hint.set_upper(head + upper);
        }
        hint
    }
}

/// An answer of the proxy's own about a problem of its own (not a fault): plain text.
fn answer(status: StatusCode, message: &str) -> Response<FaultBody> {
    let mut response = Response::new(FaultBody::fixed(format!("mcp-chaos: {message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_answer(value: &serde_json::Value) -> Response<FaultBody> {
    let mut response = Response::new(FaultBody::fixed(value.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
