//! Errors the sidecar generates itself when the backend fails: status, JSON-RPC body with the
//! request's id, metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{ACCEPT_BOTH, call, client, config, eventually, metric_value, start, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer};
use serde_json::{Value, json};
use tokio::time::Instant;

async fn post(url: String, body: String) -> reqwest::Response {
    client()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn slow_upstream_is_504_after_the_response_timeout() {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut up = upstream(backend.mcp_url(), None);
    up.response_timeout = Duration::from_secs(3);
    let sidecar = start(config(vec![up])).await;
    let began = Instant::now();
    let resp = post(
        sidecar.url("/mcp"),
        call(11, "sleep", json!({"ms": 60_000})),
    )
    .await;
    assert_eq!(resp.status(), 504);
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], 11);
    assert_eq!(v["error"]["code"], -32002);
    assert_eq!(v["error"]["data"]["reason"], "upstream_timeout");
    // Giving up also cancels the call at the backend.
    eventually("backend call cancelled", || {
        backend.stats().cancelled_total == 1
    })
    .await;
    let metrics = sidecar.metrics().await;
    let timeouts = metric_value(
        &metrics,
        r#"mcp_sidecar_upstream_connection_errors_total{kind="timeout",upstream="u"}"#,
    );
    assert_eq!(timeouts, Some(1.0), "{metrics}");
}

#[tokio::test]
async fn upstream_dropping_the_connection_is_502_upstream_failed() {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let resp = post(
        sidecar.url("/mcp"),
        call(12, "fail", json!({"mode": "drop"})),
    )
    .await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], 12);
    assert_eq!(v["error"]["code"], -32003);
    assert_eq!(v["error"]["data"]["upstream"], "u");
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"mcp_sidecar_proxy_errors_total{reason="upstream_failed"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn backend_http_errors_and_jsonrpc_errors_pass_through_unchanged() {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    for (direct, proxied) in [
        (
            post(
                backend.mcp_url(),
                call(1, "fail", json!({"mode": "http_status", "status": 503})),
            )
            .await,
            post(
                sidecar.url("/mcp"),
                call(1, "fail", json!({"mode": "http_status", "status": 503})),
            )
            .await,
        ),
        (
            post(
                backend.mcp_url(),
                call(2, "fail", json!({"mode": "jsonrpc_error", "code": -32099})),
            )
            .await,
            post(
                sidecar.url("/mcp"),
                call(2, "fail", json!({"mode": "jsonrpc_error", "code": -32099})),
            )
            .await,
        ),
        (
            post(backend.mcp_url(), call(3, "nope", json!({}))).await,
            post(sidecar.url("/mcp"), call(3, "nope", json!({}))).await,
        ),
    ] {
        assert_eq!(direct.status(), proxied.status());
        assert_eq!(
            direct.headers().get("content-type"),
            proxied.headers().get("content-type")
        );
        assert_eq!(direct.text().await.unwrap(), proxied.text().await.unwrap());
    }
}

#[tokio::test]
async fn large_response_passes_through_intact() {
    let backend = FixtureServer::start(FixtureConfig {
        stateless: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let sidecar = start(config(vec![upstream(backend.mcp_url(), None)])).await;
    let resp = post(
        sidecar.url("/mcp"),
        call(5, "large", json!({"bytes": 8_000_000})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"].as_str().unwrap().len(),
        8_000_000
    );
}
