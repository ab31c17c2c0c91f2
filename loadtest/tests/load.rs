//! mcp-load against real servers on loopback: the fixture (sessions, JSON and SSE answers,
//! JSON-RPC errors) and a backend of this file's that stalls for a second in the middle of an
//! open-loop run (the coordinated-omission check); and the binary's exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use mcp_loadtest::client::Target;
use mcp_loadtest::engine::{self, Load, Plan, Stop};
use mcp_loadtest::offload::Offload;
use mcp_loadtest::report::Report;
use mcp_loadtest::workload::Workload;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

mod common;

use common::{plan, pooled, run_on, sidecar};

/// Runs `plan` against `url` over as many connections as the load needs.
async fn run(url: &str, workload: Workload, plan: Plan) -> Report {
    let connections = match plan.load {
        Load::Concurrency(c) => c,
        Load::Rate { .. } | Load::Stages(_) => 256,
    };
    run_on(pooled(url, connections), workload, plan).await
}

/// A JSON-RPC backend that answers at once, except that every request arriving between 1 s and
/// 2 s after it started waits until 2 s: the whole server stalls for a second.
async fn stalling_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    let (from, until) = (
        started + Duration::from_secs(1),
        started + Duration::from_secs(2),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let now = Instant::now();
                    if now >= from && now < until {
                        tokio::time::sleep_until(until).await;
                    }
                    let answer = match message.get("id") {
                        None => {
                            return Ok::<_, Infallible>(
                                Response::builder()
                                    .status(202)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            );
                        }
                        Some(id) => json!({"jsonrpc": "2.0", "id": id, "result": {
                            "protocolVersion": "2025-11-25", "capabilities": {},
                            "serverInfo": {"name": "stall", "version": "1"},
                            "content": [{"type": "text", "text": "ok"}]}}),
                    };
                    Ok(Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(answer.to_string())))
                        .unwrap())
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
async fn a_one_second_stall_shows_in_the_open_loop_percentiles() {
    let addr = stalling_backend().await;
    let report = run(
        &format!("http://{addr}/mcp"),
        Workload::call("echo {}").unwrap(),
        plan(
            Load::Rate {
                rate: 200.0,
                poisson: false,
            },
            Stop::Duration(Duration::from_secs(3)),
        ),
    )
    .await;
    assert_eq!(report.errors, 0, "{:?}", report.errors_by_kind);
    // A fifth of the requests were due during the stall: each waited what was left of it, from
    // its intended start. A closed-loop tool would show one slow request, not a fifth.
    assert!(report.latency_ms.p90 >= 400.0, "{:?}", report.latency_ms);
    assert!(report.latency_ms.p99 >= 800.0, "{:?}", report.latency_ms);
    assert!(report.latency_ms.p50 < 200.0, "{:?}", report.latency_ms);
    assert!(
        report.requests >= 550,
        "the schedule went on: {}",
        report.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_errors_and_tool_errors_are_not_successes() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let stop = Stop::Requests(40);
    let r = run(
        &fx.mcp_url(),
        Workload::call(r#"fail {"mode":"jsonrpc_error","code":-32099}"#).unwrap(),
        plan(Load::Concurrency(2), stop),
    )
    .await;
    assert_eq!((r.requests, r.errors), (40, 40));
    assert_eq!(r.errors_by_kind["jsonrpc_-32099"], 40);
    let r = run(
        &fx.mcp_url(),
        Workload::call(r#"fail {"mode":"tool_error"}"#).unwrap(),
        plan(Load::Concurrency(2), stop),
    )
    .await;
    assert_eq!(r.errors_by_kind["tool_error"], 40);
    let r = run(
        &fx.mcp_url(),
        Workload::call(r#"fail {"mode":"http_status","status":503}"#).unwrap(),
        plan(Load::Concurrency(2), stop),
    )
    .await;
    assert_eq!(r.errors_by_kind["http_503"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_initialize_answer_over_sse_and_end_with_delete() {
    let fx = FixtureServer::start(FixtureConfig {
        response_mode: ResponseMode::Sse,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    let mut p = plan(Load::Concurrency(4), Stop::Requests(200));
    p.sessions = 3;
    let r = run(
        &fx.mcp_url(),
        Workload::call(r#"echo {"text":"n{{seq}}"}"#).unwrap(),
        p,
    )
    .await;
    assert_eq!((r.requests, r.errors), (200, 0), "{:?}", r.errors_by_kind);
    // Every answer was an event stream: the time to its first event is measured apart.
    assert_eq!(r.sse_answers, 200);
    assert!(r.first_event_ms.p50 > 0.0 && r.first_event_ms.p50 <= r.latency_ms.p50 + 1.0);
    let stats = fx.stats();
    assert_eq!(stats.by_method.get("initialize"), Some(&3));
    assert_eq!(stats.by_method.get("notifications/initialized"), Some(&3));
    assert_eq!(stats.by_tool.get("echo"), Some(&200));
    assert_eq!(stats.sessions_open, 0, "every session ended with DELETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_3_naming_a_crossed_threshold_and_writes_its_report() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("mcp-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("report.json");
    let url = fx.mcp_url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-load"))
            .args(["run", &url, "--concurrency", "2", "--requests", "50"])
            .args(["--call", r#"echo {"text":"hi"}"#])
            .args(["--threshold", "p99<60s", "--threshold", "rps>1000000"])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("threshold `rps>1000000` crossed: measured"),
        "{stderr}"
    );
    assert!(!stderr.contains("p99<60s"), "{stderr}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["requests"], 50);
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&dir);

    // Usage errors are 2 (clap), a target that cannot be reached is 1.
    let bad = Command::new(env!("CARGO_BIN_EXE_mcp-load"))
        .args(["run", "http://127.0.0.1:1/mcp", "--requests", "1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let usage = Command::new(env!("CARGO_BIN_EXE_mcp-load"))
        .args(["run", "http://x/", "--threshold", "p99<250"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    assert!(String::from_utf8_lossy(&usage.stderr).contains("needs a unit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_server_is_loaded_without_sessions() {
    let fx = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    let r = run(
        &fx.mcp_url(),
        Workload::method("tools/list"),
        plan(
            Load::Rate {
                rate: 100.0,
                poisson: true,
            },
            Stop::Requests(50),
        ),
    )
    .await;
    assert_eq!((r.requests, r.errors), (50, 0), "{:?}", r.errors_by_kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_stages_send_the_area_under_the_rate() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let stages = engine::parse_stages("1s:100,1s:100").unwrap();
    let r = run(
        &fx.mcp_url(),
        Workload::call(r#"echo {"text":"x"}"#).unwrap(),
        plan(Load::Stages(stages), Stop::Duration(Duration::from_secs(2))),
    )
    .await;
    // 0 to 100/s over a second is 50 requests, then 100 in the second at 100/s.
    assert_eq!((r.requests, r.errors), (150, 0), "{:?}", r.errors_by_kind);
    assert_eq!(fx.stats().by_tool.get("echo"), Some(&150));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_alternates_rounds_and_reports_the_ratio_with_its_spread() {
    let a = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let b = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("mcp-load-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("compare.json");
    let (base, target, path) = (a.mcp_url(), b.mcp_url(), out.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-load"))
            .args([
                "compare",
                &base,
                &target,
                "--rounds",
                "2",
                "--duration",
                "300ms",
            ])
            .args([
                "--warmup",
                "0s",
                "--concurrency",
                "2",
                "--call",
                r#"echo {"text":"x"}"#,
            ])
            .arg("--out")
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let result: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(result["rounds"].as_array().unwrap().len(), 2);
    let ratio = &result["rps_ratio"];
    assert!(ratio["median"].as_f64().unwrap() > 0.0, "{result}");
    assert!(ratio["min"].as_f64().unwrap() <= ratio["max"].as_f64().unwrap());
    // Both were loaded, each in both rounds.
    assert!(a.stats().by_tool.get("echo").copied().unwrap_or(0) > 0);
    assert!(b.stats().by_tool.get("echo").copied().unwrap_or(0) > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_send_their_share_and_merge_into_the_whole() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("mcp-load-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = fx.mcp_url();
    let d = dir.clone();
    let merged = tokio::task::spawn_blocking(move || {
        let shard = |i: u32| {
            let out = d.join(format!("{i}.json"));
            let status = Command::new(env!("CARGO_BIN_EXE_mcp-load"))
                .args(["run", &url, "--rate", "200", "--duration", "1s"])
                .args([
                    "--shard",
                    &format!("{i}/2"),
                    "--call",
                    r#"echo {"text":"s"}"#,
                ])
                .arg("--out")
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success());
            out
        };
        let (a, b) = (shard(1), shard(2));
        let out = Command::new(env!("CARGO_BIN_EXE_mcp-load"))
            .arg("merge")
            .args([&a, &b])
            .args(["--threshold", "requests==200"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let bad = Command::new(env!("CARGO_BIN_EXE_mcp-load"))
            .args(["run", "http://x/", "--shard", "3/2"])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap();
    // Each shard sent 100 (half of 200/s for a second); together the whole.
    assert!(merged.starts_with("requests 200 "), "{merged}");
    assert_eq!(fx.stats().by_tool.get("echo"), Some(&200));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_report_the_202_latency_and_the_completion_apart() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let addr = sidecar(&fx, "").await;
    let mut p = plan(Load::Concurrency(4), Stop::Requests(20));
    p.offload = Some(Offload::JobsPoll(Duration::from_millis(20)));
    let r = run(
        &format!("http://{addr}/mcp"),
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
    // The 202 comes at once; the result after the tool's 150 ms.
    assert!(r.latency_ms.p50 < 150.0, "{:?}", r.latency_ms); // before the tool could end
    assert!(r.completion_ms.p50 >= 150.0, "{:?}", r.completion_ms);
    assert_eq!(fx.stats().by_tool.get("sleep"), Some(&20));

    // A job that does not end within --timeout is a timeout, not a hang.
    let target = Target::new(
        &format!("http://{addr}/mcp"),
        1,
        HeaderMap::new(),
        None,
        Duration::from_millis(300),
    )
    .unwrap();
    let mut p = plan(Load::Concurrency(1), Stop::Requests(1));
    p.offload = Some(Offload::JobsPoll(Duration::from_millis(20)));
    let r = engine::run(
        target,
        Workload::call(r#"sleep {"ms":5000}"#).unwrap(),
        p,
        json!({}),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.errors_by_kind.get("timeout"),
        Some(&1),
        "{:?}",
        r.errors_by_kind
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_report_the_creation_latency_and_the_completion_apart() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    // The sidecar's Tasks facade makes `sleep` a task-capable tool.
    let addr = sidecar(
        &fx,
        "[[upstream.tool]]\nname = \"sleep\"\noffload = \"allowed\"\n",
    )
    .await;
    let mut p = plan(Load::Concurrency(4), Stop::Requests(12));
    p.offload = Some(Offload::Tasks(Duration::from_millis(20)));
    let r = run(
        &format!("http://{addr}/mcp"),
        Workload::call(r#"sleep {"ms":150}"#).unwrap(),
        p,
    )
    .await;
    assert_eq!(
        (r.requests, r.errors, r.jobs),
        (12, 0, 12),
        "{:?}",
        r.errors_by_kind
    );
    assert!(r.latency_ms.p50 < 150.0, "{:?}", r.latency_ms); // before the tool could end
    assert!(r.completion_ms.p50 >= 150.0, "{:?}", r.completion_ms);
    // A tool the facade does not serve answers live: not a task.
    let mut p = plan(Load::Concurrency(1), Stop::Requests(3));
    p.offload = Some(Offload::Tasks(Duration::from_millis(20)));
    let r = run(
        &format!("http://{addr}/mcp"),
        Workload::call(r#"echo {"text":"x"}"#).unwrap(),
        p,
    )
    .await;
    assert_eq!(
        r.errors_by_kind.values().sum::<u64>(),
        3,
        "{:?}",
        r.errors_by_kind
    );
}
