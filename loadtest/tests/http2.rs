//! `--http2`: requests and standalone streams as HTTP/2 streams (h2c with prior knowledge on
//! http://): every request reaches a server as HTTP/2, through an in-process sidecar too; an
//! HTTP/1.1-only server cannot be spoken to at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{answer, plan, pooled, scripted_backend, sidecar};
use hyper::service::service_fn;
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_loadtest::engine::{self, Load, Stop};
use mcp_loadtest::leg::Version;
use mcp_loadtest::streams::{DEFAULT_TIMESTAMP, StreamPlan};
use mcp_loadtest::workload::Workload;
use serde_json::json;
use tokio::net::TcpListener;

/// A JSON-RPC backend (`common::answer`) that speaks HTTP/1.1 and HTTP/2 and counts the
/// requests that came as HTTP/2.
async fn counting_backend() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h2 = Arc::new(AtomicU64::new(0));
    let seen = h2.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    if req.version() == http::Version::HTTP_2 {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    (addr, h2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_arrive_as_http2_and_an_http1_only_server_cannot_be_spoken_to() {
    let (addr, h2) = counting_backend().await;
    let r = engine::run(
        pooled(&format!("http://{addr}/mcp"), 4)
            .with_http(Version::Http2)
            .unwrap(),
        Workload::method("tools/list"),
        plan(Load::Concurrency(4), Stop::Requests(50)),
        json!({}),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!((r.requests, r.errors), (50, 0), "{:?}", r.errors_by_kind);
    // The 50 calls, `initialize` and `notifications/initialized`.
    assert_eq!(h2.load(Ordering::Relaxed), 52);

    // HTTP/1.1 only: the session cannot even be opened, and the error says where.
    let old = scripted_backend().await;
    let e = engine::run(
        pooled(&format!("http://{old}/mcp"), 1)
            .with_http(Version::Http2)
            .unwrap(),
        Workload::method("tools/list"),
        plan(Load::Concurrency(1), Stop::Requests(1)),
        json!({}),
        std::future::pending(),
    )
    .await
    .expect_err("an HTTP/1.1-only server answered HTTP/2");
    assert!(e.to_string().contains("initialize"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_calls_through_the_sidecar_succeed() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let addr = sidecar(&fx, "").await;
    let url = format!("http://{addr}/mcp");
    let mut p = plan(Load::Concurrency(4), Stop::Requests(200));
    p.sessions = 2;
    let r = engine::run(
        pooled(&url, 4).with_http(Version::Http2).unwrap(),
        Workload::call(r#"echo {"text":"h2 {{seq}}"}"#).unwrap(),
        p,
        json!({}),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(r.requests, 200, "{r:?}");
    assert_eq!(r.errors, 0, "{:?}", r.errors_by_kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_through_the_sidecar_carry_their_events() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let addr = sidecar(&fx, "").await;
    let url = format!("http://{addr}/mcp");
    let mut p = plan(
        Load::Concurrency(1),
        Stop::Duration(Duration::from_millis(600)),
    );
    p.streams = Some(StreamPlan {
        count: 8,
        target: pooled(&format!("{url}?tick_ms=50"), 1)
            .with_http(Version::Http2)
            .unwrap(),
        timestamp: DEFAULT_TIMESTAMP.to_owned(),
        only: true,
    });
    let r = engine::run(
        pooled(&url, 1).with_http(Version::Http2).unwrap(),
        Workload::method("tools/list"),
        p,
        json!({}),
        std::future::pending(),
    )
    .await
    .unwrap();
    let s = r.streams.expect("a streams report");
    assert_eq!((s.asked, s.opened, s.errors), (8, 8, 0), "{s:?}");
    // Eight streams ticking every 50 ms for 0.6 s: each sees several events, all timed.
    assert!(s.events >= 8 * 4, "{s:?}");
    assert_eq!(s.timed_events, s.events, "{s:?}");
}
