//! mcp-load's offloaded calls against real servers on loopback: sidecar jobs followed on their
//! event stream, MCP Tasks on the 2026-07-28 wire through the sidecar's facade (completed,
//! failed), and plain calls on 2026-07-28 (no session, the envelope in every request). A
//! backend of this file's cuts a job's event stream short.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{plan, run, run_on, sidecar, target};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_loadtest::engine::{Load, Stop};
use mcp_loadtest::offload::Offload;
use mcp_loadtest::workload::Workload;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CORE: &str = "2025-11-25";
const STATELESS: &str = "2026-07-28";
/// The fixture's tools the sidecar's Tasks facade serves in these tests.
const FACADE_TOOLS: &str = "[[upstream.tool]]\nname = \"sleep\"\noffload = \"allowed\"\n\
    [[upstream.tool]]\nname = \"fail\"\noffload = \"allowed\"\n";

async fn fixture() -> FixtureServer {
    FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_jobs_report_the_202_latency_and_the_completion_apart() {
    let fx = fixture().await;
    let addr = sidecar(&fx, "").await;
    let url = format!("http://{addr}/mcp");
    let mut p = plan(Load::Concurrency(4), Stop::Requests(20));
    p.offload = Some(Offload::JobsFollow);
    let r = run(
        &url,
        CORE,
        Workload::call(r#"sleep {"ms":150}"#).unwrap(),
        p,
    )
    .await;
    assert_eq!(
        (r.requests, r.errors, r.jobs),
        (20, 0, 20),
        "{:?}",
        r.errors_by_kind
    );
    // The 202 comes at once; the end after the tool's 150 ms, seen on the stream as it
    // happens (no poll interval added).
    assert!(r.latency_ms.p50 < 150.0, "{:?}", r.latency_ms); // before the tool could end
    assert!(r.completion_ms.p50 >= 150.0, "{:?}", r.completion_ms);
    assert!(r.completion_ms.p50 < 1000.0, "{:?}", r.completion_ms);
    assert_eq!(fx.stats().by_tool.get("sleep"), Some(&20));

    // A job that does not end within --timeout is a timeout, its stream not held open.
    let mut p = plan(Load::Concurrency(1), Stop::Requests(1));
    p.offload = Some(Offload::JobsFollow);
    let r = run_on(
        target(&url, CORE, Duration::from_millis(300)),
        Workload::call(r#"sleep {"ms":5000}"#).unwrap(),
        p,
    )
    .await;
    assert_eq!(
        r.errors_by_kind.get("timeout"),
        Some(&1),
        "{:?}",
        r.errors_by_kind
    );
}

/// The one event of [`cut_stream_backend`]'s job stream: the job is working.
const WORKING: &[u8] =
    b"retry: 2000\nid: 1\nevent: status\ndata: {\"id\":\"j1\",\"status\":\"working\"}\n\n";

/// A backend that accepts every call as a job (`202`, `Location: /jobs/j1`) and whose job
/// event stream shows the job working, then ends: the job never ends on it.
async fn cut_stream_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_owned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let response = Response::builder();
                    let response = if path == "/jobs/j1/events" {
                        response
                            .header("content-type", "text/event-stream")
                            .body(Full::new(Bytes::from_static(WORKING)))
                    } else if message["method"] == "initialize" {
                        let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                            "protocolVersion": CORE, "capabilities": {},
                            "serverInfo": {"name": "cut", "version": "1"}}});
                        response
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer.to_string())))
                    } else if message.get("id").is_none() {
                        response.status(202).body(Full::new(Bytes::new()))
                    } else {
                        let job = json!({"id": "j1", "status": "queued", "links": {
                            "self": "/jobs/j1", "result": "/jobs/j1/result",
                            "events": "/jobs/j1/events"}});
                        response
                            .status(202)
                            .header("location", "/jobs/j1")
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(job.to_string())))
                    };
                    Ok::<_, Infallible>(response.unwrap())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stream_that_ends_before_the_job_does_is_stream_closed() {
    let addr = cut_stream_backend().await;
    let mut p = plan(Load::Concurrency(2), Stop::Requests(6));
    p.offload = Some(Offload::JobsFollow);
    let r = run(
        &format!("http://{addr}/mcp"),
        CORE,
        Workload::call(r#"sleep {"ms":1}"#).unwrap(),
        p,
    )
    .await;
    assert_eq!((r.requests, r.errors), (6, 6), "{:?}", r.errors_by_kind);
    assert_eq!(
        r.errors_by_kind.get("stream_closed"),
        Some(&6),
        "{:?}",
        r.errors_by_kind
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_the_2026_07_28_wire_complete_through_the_facade_and_are_counted() {
    let fx = fixture().await;
    let addr = sidecar(&fx, FACADE_TOOLS).await;
    let mut p = plan(Load::Concurrency(4), Stop::Requests(8));
    p.offload = Some(Offload::Tasks(Duration::from_millis(20)));
    let r = run(
        &format!("http://{addr}/mcp"),
        STATELESS,
        Workload::call(r#"sleep {"ms":150}"#).unwrap(),
        p,
    )
    .await;
    assert_eq!(
        (r.requests, r.errors, r.jobs),
        (8, 0, 8),
        "{:?}",
        r.errors_by_kind
    );
    assert!(r.latency_ms.p50 < 150.0, "{:?}", r.latency_ms); // before the tool could end
    // The facade asks for 500 ms between polls, longer than the 20 ms given: honoured.
    assert!(r.completion_ms.p50 >= 500.0, "{:?}", r.completion_ms);
    let stats = fx.stats();
    assert_eq!(stats.by_tool.get("sleep"), Some(&8));
    assert_eq!(
        stats.by_method.get("initialize"),
        None,
        "no session at 2026-07-28"
    );

    // A tool the facade does not serve is answered at once, as SEP-2663 lets a server: a live
    // answer, not a task.
    let mut p = plan(Load::Concurrency(1), Stop::Requests(3));
    p.offload = Some(Offload::Tasks(Duration::from_millis(20)));
    let r = run(
        &format!("http://{addr}/mcp"),
        STATELESS,
        Workload::call(r#"echo {"text":"x"}"#).unwrap(),
        p,
    )
    .await;
    assert_eq!(
        (r.requests, r.errors, r.jobs),
        (3, 0, 0),
        "{:?}",
        r.errors_by_kind
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_task_that_fails_counts_by_its_error() {
    let fx = fixture().await;
    let addr = sidecar(&fx, FACADE_TOOLS).await;
    let url = format!("http://{addr}/mcp");
    for (args, class) in [
        (
            r#"{"mode":"jsonrpc_error","code":-32099}"#,
            "jsonrpc_-32099",
        ),
        (r#"{"mode":"tool_error"}"#, "tool_error"),
    ] {
        let mut p = plan(Load::Concurrency(2), Stop::Requests(4));
        p.offload = Some(Offload::Tasks(Duration::from_millis(20)));
        let r = run(
            &url,
            STATELESS,
            Workload::call(&format!("fail {args}")).unwrap(),
            p,
        )
        .await;
        assert_eq!((r.requests, r.jobs), (4, 4), "{:?}", r.errors_by_kind);
        assert_eq!(
            r.errors_by_kind.get(class),
            Some(&4),
            "{:?}",
            r.errors_by_kind
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_calls_on_2026_07_28_need_no_session_and_carry_the_routing_headers() {
    let fx = fixture().await;
    let r = run(
        &fx.mcp_url(),
        STATELESS,
        Workload::call(r#"echo {"text":"n{{seq}}"}"#).unwrap(),
        plan(Load::Concurrency(2), Stop::Requests(20)),
    )
    .await;
    assert_eq!((r.requests, r.errors), (20, 0), "{:?}", r.errors_by_kind);
    let stats = fx.stats();
    assert_eq!(stats.by_method.get("server/discover"), Some(&1));
    assert_eq!(stats.by_method.get("initialize"), None);
    assert_eq!(stats.sessions_open, 0);
    let headers = &stats.last_request_headers;
    assert_eq!(
        headers.get("mcp-protocol-version").map(String::as_str),
        Some(STATELESS)
    );
    assert_eq!(
        headers.get("mcp-method").map(String::as_str),
        Some("tools/call")
    );
    assert_eq!(headers.get("mcp-name").map(String::as_str), Some("echo"));
    assert!(!headers.contains_key("mcp-session-id"), "{headers:?}");

    // Through the sidecar, which refuses routing headers that disagree with the body.
    let addr = sidecar(&fx, "").await;
    let r = run(
        &format!("http://{addr}/mcp"),
        STATELESS,
        Workload::method("tools/list"),
        plan(Load::Concurrency(2), Stop::Requests(20)),
    )
    .await;
    assert_eq!((r.requests, r.errors), (20, 0), "{:?}", r.errors_by_kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_the_protocol_and_the_offload_flags() {
    let fx = fixture().await;
    let addr = sidecar(&fx, FACADE_TOOLS).await;
    let dir = std::env::temp_dir().join(format!("mcp-load-offload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("report.json");
    let (url, path) = (format!("http://{addr}/mcp"), out.clone());
    let (tasks, follow, bad) = tokio::task::spawn_blocking(move || {
        let load = |extra: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_mcp-load"))
                .args(["run", &url, "--concurrency", "2", "--requests", "4"])
                .args(["--call", r#"sleep {"ms":50}"#])
                .args(extra)
                .output()
                .unwrap()
        };
        let tasks = load(&[
            "--protocol",
            STATELESS,
            "--tasks",
            "20ms",
            "--out",
            path.to_str().unwrap(),
        ]);
        let follow = load(&["--jobs-follow", "--threshold", "errors==0"]);
        let bad = load(&["--protocol", "latest"]);
        (tasks, follow, bad)
    })
    .await
    .unwrap();
    assert!(tasks.status.success(), "{tasks:?}");
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        (report["requests"].as_u64(), report["jobs"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(report["config"]["protocol"], STATELESS);
    assert_eq!(report["config"]["offload"]["tasks_poll_s"], 0.02);
    assert!(follow.status.success(), "{follow:?}");
    assert!(
        String::from_utf8_lossy(&follow.stdout).contains("jobs or tasks 4"),
        "{follow:?}"
    );
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("a revision is a date"));
    let _ = std::fs::remove_dir_all(&dir);
}
