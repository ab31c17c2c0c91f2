//! `--transport legacy`: the 2024-11-05 HTTP+SSE transport against the fixture directly and
//! through an in-process sidecar; JSON-RPC errors on the stream; a dropped stream failing the
//! calls waiting on it (and the session reopened for the next); a POST that is not a 202.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{legacy_sidecar, plan, target};
use http::{Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::service::service_fn;
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_loadtest::engine::{self, Load, Stop, Transport};
use mcp_loadtest::report::Report;
use mcp_loadtest::workload::Workload;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A legacy run of `requests` calls by `workers` over `sessions` sessions.
async fn run(url: &str, call: &str, workers: usize, requests: u64, sessions: usize) -> Report {
    let mut p = plan(Load::Concurrency(workers), Stop::Requests(requests));
    p.sessions = sessions;
    p.transport = Transport::Legacy;
    engine::run(
        target(url, workers),
        Workload::call(call).unwrap(),
        p,
        json!({}),
        std::future::pending(),
    )
    .await
    .unwrap()
}

/// Waits (boundedly) until the fixture has no legacy session open.
async fn sessions_ended(fx: &FixtureServer) -> u64 {
    for _ in 0..100 {
        if fx.stats().sessions_open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fx.stats().sessions_open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_run_against_the_fixture_counts_its_successes() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let r = run(
        &fx.legacy_sse_url(),
        r#"echo {"text":"n{{seq}}"}"#,
        4,
        200,
        2,
    )
    .await;
    assert_eq!((r.requests, r.errors), (200, 0), "{:?}", r.errors_by_kind);
    let stats = fx.stats();
    assert_eq!(stats.by_tool.get("echo"), Some(&200));
    assert_eq!(stats.by_method.get("initialize"), Some(&2));
    assert_eq!(stats.by_method.get("notifications/initialized"), Some(&2));
    assert_eq!(
        sessions_ended(&fx).await,
        0,
        "sessions end with their streams"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_run_through_the_sidecar_counts_its_successes() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let addr = legacy_sidecar(&fx).await;
    // The sidecar rewrites the endpoint event into its own path space (/legacy/messages).
    let r = run(
        &format!("http://{addr}/legacy/sse"),
        r#"echo {"text":"hi"}"#,
        4,
        200,
        2,
    )
    .await;
    assert_eq!((r.requests, r.errors), (200, 0), "{:?}", r.errors_by_kind);
    assert_eq!(fx.stats().by_tool.get("echo"), Some(&200));
    assert_eq!(
        sessions_ended(&fx).await,
        0,
        "sessions end with their streams"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_errors_on_the_legacy_stream_count_by_code() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let url = fx.legacy_sse_url();
    let r = run(
        &url,
        r#"fail {"mode":"jsonrpc_error","code":-32099}"#,
        2,
        30,
        1,
    )
    .await;
    assert_eq!((r.requests, r.errors), (30, 30));
    assert_eq!(r.errors_by_kind.get("jsonrpc_-32099"), Some(&30));
    let r = run(&url, r#"fail {"mode":"tool_error"}"#, 2, 10, 1).await;
    assert_eq!(r.errors_by_kind.get("tool_error"), Some(&10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_fails_its_waiting_calls_and_the_session_reopens() {
    let backend = LegacyBackend::start().await;
    // Three workers on one session: the first two calls are left waiting, the third makes
    // the server drop the stream. All three fail at once, not at the 10 s timeout; the next
    // three reopen the session and succeed.
    let r = run(&backend.url(), "pile {}", 3, 6, 1).await;
    assert_eq!(r.requests, 6);
    assert_eq!(
        r.errors_by_kind.get("stream_closed"),
        Some(&3),
        "{:?}",
        r.errors_by_kind
    );
    assert_eq!(r.errors, 3);
    assert!(r.latency_ms.max < 5_000.0, "{:?}", r.latency_ms);
    assert_eq!(backend.streams.load(Ordering::Relaxed), 2, "one reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_is_not_202_counts_by_status() {
    let backend = LegacyBackend::start().await;
    let r = run(&backend.url(), "status {}", 1, 4, 1).await;
    assert_eq!(
        r.errors_by_kind.get("http_500"),
        Some(&4),
        "{:?}",
        r.errors_by_kind
    );
}

/// A legacy server of this file's: `GET /sse` sends the endpoint event and then what the
/// session's channel carries; `POST /messages?sessionId=` is 202 with the answer on the
/// stream, except `tools/call` of `pile` (the first two are never answered, the third ends
/// the stream, later ones are answered) and of `status` (a 500, no answer).
struct LegacyBackend {
    addr: SocketAddr,
    streams: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    sessions: Mutex<HashMap<String, mpsc::UnboundedSender<Bytes>>>,
    piled: AtomicU64,
}

type Body = BoxBody<Bytes, Infallible>;

/// A response body fed by a channel: it ends when the last sender is dropped.
struct ChannelBody(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn full(status: u16, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(body).boxed())
        .unwrap()
}

fn message(value: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {value}\n\n"))
}

impl LegacyBackend {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let streams = Arc::new(AtomicU64::new(0));
        let opened = streams.clone();
        tokio::spawn(async move {
            let next_id = Arc::new(AtomicU64::new(1));
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (state, opened, next_id) = (state.clone(), opened.clone(), next_id.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (state, opened, next_id) =
                            (state.clone(), opened.clone(), next_id.clone());
                        async move {
                            Ok::<_, Infallible>(
                                LegacyBackend::answer(req, &state, &opened, &next_id).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, streams }
    }

    fn url(&self) -> String {
        format!("http://{}/sse", self.addr)
    }

    async fn answer(
        req: Request<hyper::body::Incoming>,
        state: &State,
        opened: &AtomicU64,
        next_id: &AtomicU64,
    ) -> Response<Body> {
        if req.method() == Method::GET {
            opened.fetch_add(1, Ordering::Relaxed);
            let id = next_id.fetch_add(1, Ordering::Relaxed).to_string();
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(Bytes::from(format!(
                "event: endpoint\ndata: /messages?sessionId={id}\n\n"
            )));
            state.sessions.lock().unwrap().insert(id, tx);
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(ChannelBody(rx).boxed())
                .unwrap();
        }
        let session = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("sessionId="))
            .unwrap_or_default()
            .to_owned();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let m: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(id) = m.get("id").cloned() else {
            return full(202, Bytes::new());
        };
        let result = match m["method"].as_str() {
            Some("initialize") => json!({"protocolVersion": "2024-11-05", "capabilities": {},
                "serverInfo": {"name": "legacy", "version": "1"}}),
            _ => match m.pointer("/params/name").and_then(Value::as_str) {
                Some("status") => return full(500, Bytes::new()),
                Some("pile") => match state.piled.fetch_add(1, Ordering::Relaxed) {
                    0 | 1 => return full(202, Bytes::new()),
                    2 => {
                        // Dropping the only sender ends the session's stream.
                        state.sessions.lock().unwrap().remove(&session);
                        return full(202, Bytes::new());
                    }
                    _ => json!({"content": [{"type": "text", "text": "ok"}]}),
                },
                _ => json!({"content": [{"type": "text", "text": "ok"}]}),
            },
        };
        if let Some(tx) = state.sessions.lock().unwrap().get(&session) {
            let _ = tx.send(message(
                &json!({"jsonrpc": "2.0", "id": id, "result": result}),
            ));
        }
        full(202, Bytes::new())
    }
}
