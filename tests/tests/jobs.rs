//! Jobs through an in-process sidecar (memory store) and the fixture: what the runner makes of
//! the backend's answers (JSON, SSE with progress, too large, an HTTP error), `Prefer: wait`,
//! stateful sessions, and HTTP/2 submissions. The binary-level flows are in `proxy/tests/`:
//! `jobs_e2e.rs` (the 202 flow, cancellation reaching the backend), `jobs_access.rs` (owners,
//! auth, idempotency), `jobs_limits.rs` (caps, deadlines, circuits, SIGTERM) and
//! `jobs_durability.rs` (kill -9 and restart).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_e2e_tests::{call, client, config, initialize, start, upstream};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use serde_json::{Value, json};

async fn fixture(mode: ResponseMode, stateless: bool) -> FixtureServer {
    FixtureServer::start(FixtureConfig {
        response_mode: mode,
        stateless,
        ..FixtureConfig::default()
    })
    .await
    .unwrap()
}

/// Submits `body` with `Prefer: respond-async` (plus `extra` headers); the 202's job document.
async fn submit(url: &str, body: String, extra: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("prefer", "respond-async");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// Polls the job until it has ended (bounded).
async fn ended(base: &str, id: &str) -> Value {
    for _ in 0..400 {
        let doc: Value = client()
            .get(format!("{base}/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            doc["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} did not end");
}

async fn result(base: &str, id: &str) -> (reqwest::StatusCode, Value) {
    let resp = client()
        .get(format!("{base}/jobs/{id}/result"))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn an_sse_answer_becomes_the_result_and_its_progress_the_jobs() {
    let fx = fixture(ResponseMode::Sse, true).await;
    let sidecar = start(config(vec![upstream(fx.mcp_url(), Some("/mcp"))])).await;
    let base = sidecar.url("");
    let (status, doc) = submit(
        &sidecar.url("/mcp"),
        call(7, "progress", json!({"steps": 3, "interval_ms": 20})),
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let id = doc["id"].as_str().unwrap().to_owned();
    let done = ended(&base, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["progress"], 3.0);
    assert_eq!(done["progress"]["total"], 3.0);
    let (status, answer) = result(&base, &id).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "completed 3 steps"}]}})
    );
}

#[tokio::test]
async fn an_answer_over_max_result_bytes_fails_the_job_with_a_clear_reason() {
    let fx = fixture(ResponseMode::Json, true).await;
    let mut cfg = config(vec![upstream(fx.mcp_url(), Some("/mcp"))]);
    cfg.jobs.max_result_bytes = 10_000;
    let sidecar = start(cfg).await;
    let base = sidecar.url("");
    let (_, doc) = submit(
        &sidecar.url("/mcp"),
        call(1, "large", json!({"bytes": 20_000})),
        &[],
    )
    .await;
    let id = doc["id"].as_str().unwrap().to_owned();
    let done = ended(&base, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["reason"], "result_too_large");
    let (status, answer) = result(&base, &id).await;
    assert_eq!(status, 200);
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["error"]["code"], -32047);
    assert_eq!(answer["error"]["data"]["reason"], "result_too_large");
}

#[tokio::test]
async fn an_http_error_from_the_backend_fails_the_job_as_a_bad_answer() {
    let fx = fixture(ResponseMode::Json, true).await;
    let mut up = upstream(fx.mcp_url(), Some("/mcp"));
    up.breaker.enabled = false;
    let sidecar = start(config(vec![up])).await;
    let base = sidecar.url("");
    let (_, doc) = submit(
        &sidecar.url("/mcp"),
        call(1, "fail", json!({"mode": "http_status", "status": 500})),
        &[],
    )
    .await;
    let done = ended(&base, doc["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["reason"], "bad_answer");
    assert!(
        done["error"]["message"].as_str().unwrap().contains("500"),
        "{done}"
    );
}

#[tokio::test]
async fn prefer_wait_returns_the_result_inline_when_it_comes_in_time() {
    let fx = fixture(ResponseMode::Json, true).await;
    let sidecar = start(config(vec![upstream(fx.mcp_url(), Some("/mcp"))])).await;
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("prefer", "respond-async, wait=10")
        .body(call(3, "echo", json!({"text": "inline"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/jobs/")
    );
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["id"], 3);
    assert_eq!(answer["result"]["content"][0]["text"], "inline");
    // A call slower than the wait gets the 202.
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("prefer", "respond-async, wait=1")
        .body(call(4, "sleep", json!({"ms": 3000})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn a_stateful_sessions_job_runs_in_that_session() {
    let fx = fixture(ResponseMode::Json, false).await;
    let sidecar = start(config(vec![upstream(fx.mcp_url(), Some("/mcp"))])).await;
    let init = client()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize(1))
        .send()
        .await
        .unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, doc) = submit(
        &sidecar.url("/mcp"),
        call(2, "echo", json!({"text": "in session"})),
        &[("mcp-session-id", &session)],
    )
    .await;
    assert_eq!(status, 202);
    let done = ended(&sidecar.url(""), doc["id"].as_str().unwrap()).await;
    // Without the session the fixture would have answered 400; the job's call carried it.
    assert_eq!(done["status"], "completed", "{done}");
    let (_, answer) = result(&sidecar.url(""), doc["id"].as_str().unwrap()).await;
    assert_eq!(answer["result"]["content"][0]["text"], "in session");
}

#[tokio::test]
async fn a_notification_or_another_method_with_prefer_runs_live() {
    let fx = fixture(ResponseMode::Json, true).await;
    let sidecar = start(config(vec![upstream(fx.mcp_url(), Some("/mcp"))])).await;
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("prefer", "respond-async")
        .body(mcp_e2e_tests::rpc(5, "tools/list", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("preference-applied").is_none());
    // POSTed to the job API, the same method is refused with a reason.
    let resp = client()
        .post(sidecar.url("/jobs/mcp"))
        .header("content-type", "application/json")
        .body(mcp_e2e_tests::rpc(5, "tools/list", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["data"]["reason"], "offload_not_allowed");
}

#[tokio::test]
async fn an_http2_submission_is_a_job_too() {
    let fx = fixture(ResponseMode::Json, true).await;
    let sidecar = start(config(vec![upstream(fx.mcp_url(), Some("/mcp"))])).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(call(9, "echo", json!({"text": "h2"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let doc: Value = resp.json().await.unwrap();
    let done = ended(&sidecar.url(""), doc["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed");
}

#[tokio::test]
async fn a_job_on_a_legacy_sse_backend_fails_saying_why() {
    let fx = fixture(ResponseMode::Json, false).await;
    let legacy = upstream(format!("http://{}/", fx.addr()), Some("/legacy"));
    let sidecar = start(config(vec![legacy])).await;
    let stream = client()
        .get(sidecar.url("/legacy/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut events = mcp_e2e_tests::EventReader::new(stream);
    let endpoint = events.next_event().await.unwrap();
    let post_path = endpoint
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .unwrap()
        .to_owned();
    let (status, doc) = submit(
        &sidecar.url(&post_path),
        call(1, "echo", json!({"text": "x"})),
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let done = ended(&sidecar.url(""), doc["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["reason"], "bad_answer");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("legacy HTTP+SSE"),
        "{done}"
    );
}

#[tokio::test]
async fn with_jobs_off_prefer_is_ignored_and_the_job_api_is_not_served() {
    let fx = fixture(ResponseMode::Json, true).await;
    let mut cfg = config(vec![upstream(fx.mcp_url(), Some("/mcp"))]);
    cfg.jobs.enabled = false;
    let sidecar = start(cfg).await;
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(call(1, "echo", json!({"text": "live"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("preference-applied").is_none());
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "live");
    let resp = client().get(sidecar.url("/jobs")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["data"]["reason"], "no_route");
    let admin = client()
        .get(sidecar.admin_url("/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 404);
}
