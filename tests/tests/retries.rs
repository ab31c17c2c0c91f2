//! Retries through the real sidecar and the fixture MCP server, on paused time: only in the safe
//! cases (connect errors; resets and retry statuses for idempotent requests; never timeouts),
//! stopping at the budget. The fixture's per-tool counters prove how often a call reached it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{
    RunningSidecar, call, config, metric_value, post, rpc, start, tool_calls, upstream,
};
use mcp_fixtures::FixtureServer;
use mcp_sidecar::config::{ToolConfig, UpstreamConfig};
use serde_json::json;
use tokio::time::sleep;

async fn fixture() -> FixtureServer {
    mcp_e2e_tests::json_fixture().await
}

fn tool(name: &str) -> ToolConfig {
    ToolConfig {
        name: name.into(),
        timeout: None,
        stream_idle_timeout: None,
        idempotent: false,
        breaker: None,
        offload: None,
        tasks: None,
        task_wait: None,
        job_deadline: None,
    }
}

fn fail_503(id: u64) -> String {
    call(id, "fail", json!({"mode": "http_status", "status": 503}))
}

fn echo(id: u64) -> String {
    call(id, "echo", json!({"text": "hi"}))
}

/// Two mounts of one backend: `/plain` with default retry settings, `/idem` where `fail` and
/// `sleep` are idempotent. Breakers off so they cannot interfere with the counts.
async fn retry_sidecar(backend: &FixtureServer) -> RunningSidecar {
    let mut plain = UpstreamConfig::new("plain", backend.mcp_url(), Some("/plain".into()));
    plain.breaker.enabled = false;
    let mut idem = UpstreamConfig::new("idem", backend.mcp_url(), Some("/idem".into()));
    idem.breaker.enabled = false;
    idem.response_timeout = Duration::from_secs(1);
    idem.tool = ["fail", "sleep"]
        .into_iter()
        .map(|n| ToolConfig {
            idempotent: true,
            ..tool(n)
        })
        .collect();
    start(config(vec![plain, idem])).await
}

#[tokio::test(start_paused = true)]
async fn idempotent_calls_are_retried_after_503_and_resets_but_plain_tool_calls_are_not() {
    let backend = fixture().await;
    let sidecar = retry_sidecar(&backend).await;
    let reset = || call(1, "fail", json!({"mode": "drop"}));

    assert_eq!(post(&sidecar, "/plain", fail_503(1)).await.status(), 503);
    assert_eq!(
        tool_calls(&backend, "fail"),
        1,
        "a plain tools/call is never retried"
    );
    assert_eq!(post(&sidecar, "/plain", reset()).await.status(), 502);
    assert_eq!(tool_calls(&backend, "fail"), 2);

    assert_eq!(post(&sidecar, "/idem", fail_503(2)).await.status(), 503);
    assert_eq!(tool_calls(&backend, "fail"), 5, "1 attempt + 2 retries");
    assert_eq!(post(&sidecar, "/idem", reset()).await.status(), 502);
    assert_eq!(tool_calls(&backend, "fail"), 8);
    // A status outside `retry.statuses` is the backend's answer: not retried.
    let teapot = call(3, "fail", json!({"mode": "http_status", "status": 500}));
    assert_eq!(post(&sidecar, "/idem", teapot).await.status(), 500);
    assert_eq!(tool_calls(&backend, "fail"), 9);
    // Read-only MCP methods are idempotent by default.
    assert_eq!(
        post(&sidecar, "/plain", rpc(4, "tools/list", json!({})))
            .await
            .status(),
        200
    );

    let m = sidecar.metrics().await;
    let value = |s: &str| metric_value(&m, s).unwrap_or(0.0);
    assert_eq!(
        value(r#"mcp_sidecar_retries_total{reason="status",upstream="idem"}"#),
        2.0
    );
    assert_eq!(
        value(r#"mcp_sidecar_retries_total{reason="reset",upstream="idem"}"#),
        2.0
    );
    assert_eq!(
        value(r#"mcp_sidecar_retries_total{reason="status",upstream="plain"}"#),
        0.0
    );
    assert_eq!(
        value(r#"mcp_sidecar_retries_total{reason="reset",upstream="plain"}"#),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_never_retried() {
    let backend = fixture().await;
    let sidecar = retry_sidecar(&backend).await;
    let resp = post(&sidecar, "/idem", call(1, "sleep", json!({"ms": 5000}))).await;
    assert_eq!(resp.status(), 504);
    assert_eq!(tool_calls(&backend, "sleep"), 1);
}

#[tokio::test(start_paused = true)]
async fn connect_errors_are_retried_for_any_request_since_nothing_was_sent() {
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut u = upstream(format!("http://127.0.0.1:{dead_port}/mcp"), None);
    u.breaker.enabled = false;
    let sidecar = start(config(vec![u])).await;
    let resp = post(&sidecar, "/mcp", echo(1)).await;
    assert_eq!(resp.status(), 502);
    let m = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_retries_total{reason="connect",upstream="u"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_upstream_connection_errors_total{kind="connect",upstream="u"}"#
        ),
        Some(3.0)
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_budget() {
    let backend = fixture().await;
    let mut u = upstream(backend.mcp_url(), None);
    u.breaker.enabled = false;
    u.retry.budget_ratio = 0.0;
    // 0.3 retries per second over a 10 s TTL: a reserve of 3 retries.
    u.retry.budget_min_per_second = 0.3;
    u.retry.budget_ttl = Duration::from_secs(10);
    u.tool = vec![ToolConfig {
        idempotent: true,
        ..tool("fail")
    }];
    let sidecar = start(config(vec![u])).await;
    for id in 1..=5 {
        assert_eq!(post(&sidecar, "/mcp", fail_503(id)).await.status(), 503);
    }
    // Call 1: 2 retries; call 2: the last one; calls 2-5 then find the budget spent.
    assert_eq!(tool_calls(&backend, "fail"), 5 + 3);
    let m = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_retries_total{reason="status",upstream="u"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &m,
            r#"mcp_sidecar_retry_budget_exhausted_total{upstream="u"}"#
        ),
        Some(4.0)
    );
    // Once the TTL has passed the reserve is back.
    sleep(Duration::from_secs(11)).await;
    assert_eq!(post(&sidecar, "/mcp", fail_503(6)).await.status(), 503);
    assert_eq!(tool_calls(&backend, "fail"), 8 + 3);
}
