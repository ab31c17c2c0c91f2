//! Helpers shared by the streams and legacy-transport tests: a run's plan, an in-process
//! sidecar in front of the fixture, and a scripted backend for the cases the fixture does not
//! produce (a stream the server ends early, a GET it refuses).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use mcp_fixtures::FixtureServer;
use mcp_loadtest::client::Target;
use mcp_loadtest::engine::{Load, Plan, Stop, Transport};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A plan with no streams, no jobs, quarter-second intervals.
pub(crate) fn plan(load: Load, stop: Stop) -> Plan {
    Plan {
        load,
        stop,
        warmup: Duration::ZERO,
        sessions: 1,
        interval: Duration::from_millis(250),
        max_in_flight: 10_000,
        seed: 7,
        live: None,
        jobs: None,
        tasks: None,
        streams: None,
        transport: Transport::Streamable,
    }
}

/// A target at `url` with a 10 s timeout.
pub(crate) fn target(url: &str, connections: usize) -> Target {
    Target::new(
        url,
        connections,
        HeaderMap::new(),
        None,
        Duration::from_secs(10),
    )
    .unwrap()
}

/// An in-process sidecar in front of `fx` (no policies); its address.
pub(crate) async fn sidecar(fx: &FixtureServer) -> SocketAddr {
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[jobs]\nstore = \"memory\"\n\
         [[upstream]]\nname = \"fx\"\nurl = \"{}\"\n",
        fx.mcp_url()
    );
    let config = mcp_sidecar::config::Config::from_toml_with_env(&toml, &|_| None).unwrap();
    let sidecar = mcp_sidecar::server::Sidecar::bind(config).await.unwrap();
    let addr = sidecar.local_addr().unwrap();
    tokio::spawn(sidecar.serve(std::future::pending::<()>()));
    addr
}

/// A stateless JSON-RPC backend: a POSTed request gets a result at once (a notification a
/// 202); `GET /short` is an event stream of two events that then ends; any other GET is 405.
pub(crate) async fn scripted_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(answer(req).await)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if req.method() == Method::GET {
        if req.uri().path() == "/short" {
            let events = "event: message\ndata: {\"n\":1}\n\nevent: message\ndata: {\"n\":2}\n\n";
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(events)))
                .unwrap();
        }
        return Response::builder()
            .status(405)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = message.get("id") else {
        return Response::builder()
            .status(202)
            .body(Full::new(Bytes::new()))
            .unwrap();
    };
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "serverInfo": {"name": "scripted", "version": "1"}, "tools": []}});
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap()
}

/// An in-process sidecar that mounts `fx` at `/legacy` (so its legacy transport is at
/// `/legacy/sse`); its address.
pub(crate) async fn legacy_sidecar(fx: &FixtureServer) -> SocketAddr {
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[jobs]\nstore = \"memory\"\n\
         [[upstream]]\nname = \"fx\"\nurl = \"http://{}/\"\npath = \"/legacy\"\n",
        fx.addr()
    );
    let config = mcp_sidecar::config::Config::from_toml_with_env(&toml, &|_| None).unwrap();
    let sidecar = mcp_sidecar::server::Sidecar::bind(config).await.unwrap();
    let addr = sidecar.local_addr().unwrap();
    tokio::spawn(sidecar.serve(std::future::pending::<()>()));
    addr
}
