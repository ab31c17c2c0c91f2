//! The open loop's pacing (requests leave at their intended start, not on tokio's next
//! millisecond) and runs without sessions (`--sessions 0`: no `initialize`), which the
//! benchmarks' error-path cases (a 404 route, an open circuit) rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use mcp_fixtures::{FixtureConfig, FixtureServer};
use mcp_loadtest::engine::{self, Load, Stop};
use mcp_loadtest::workload::Workload;

fn echo() -> Workload {
    Workload::call(r#"echo {"text":"hi"}"#).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_between_timer_ticks_sends_every_request_and_reports_its_lag() {
    let fx = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..FixtureConfig::default()
    })
    .await
    .unwrap();
    // 2,000/s: a request every 0.5 ms, between the timer's millisecond ticks (on tokio's timer
    // alone the median send lag was 0.85-1.06 ms, paced ~0.01 ms: BENCHMARKS.md); all sent.
    let plan = common::plan(
        Load::Rate {
            rate: 2000.0,
            poisson: false,
        },
        Stop::Requests(1000),
    );
    let report = engine::run(
        common::pooled(&fx.mcp_url(), 64),
        echo(),
        plan,
        serde_json::json!({}),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.requests, 1000);
    assert_eq!(report.errors, 0, "{:?}", report.errors_by_kind);
    // How much earlier than the timer tick the requests leave is a unit test of `pace`
    // (engine_tests.rs), measured against the timer in the same run; here the lag is reported.
    assert!(report.send_lag_ms.max > 0.0, "{:?}", report.send_lag_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sessions_an_endpoint_that_only_answers_errors_is_measured() {
    let fx = FixtureServer::start(FixtureConfig::default())
        .await
        .unwrap();
    let sidecar = common::sidecar(&fx, "").await;
    // The sidecar has no route here: every request, `initialize` included, gets a 404.
    let url = format!("http://{sidecar}/nope");
    let with_session = engine::run(
        common::pooled(&url, 4),
        echo(),
        common::plan(Load::Concurrency(1), Stop::Requests(5)),
        serde_json::json!({}),
        std::future::pending(),
    )
    .await;
    assert!(with_session.is_err(), "initialize cannot succeed on a 404");
    let mut plan = common::plan(Load::Concurrency(2), Stop::Requests(20));
    plan.sessions = 0;
    let report = engine::run(
        common::pooled(&url, 4),
        echo(),
        plan,
        serde_json::json!({}),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.requests, 20);
    assert_eq!(
        report.errors_by_kind,
        [("http_404".to_owned(), 20)].into_iter().collect()
    );
}
