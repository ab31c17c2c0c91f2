//! The job engine's bounds through the real `mcp-sidecar` binary: the queue cap (503), the
//! per-upstream running cap, `max_result_bytes`, a job's deadline, the wait behind an open
//! circuit, the per-tool `offload` modes, and submissions refused once SIGTERM arrived.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jobs_support;

use std::time::{Duration, Instant};

use jobs_support::{
    PATIENCE, POLL, Sidecar, calls, config, data_dir, fixture, jsonrpc_response, reason, tool_call,
};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_with_retry_after_and_stores_nothing() {
    let backend = fixture().await;
    let jobs = "max_running = 1\nmax_running_per_upstream = 1\nmax_queued = 1\n";
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), jobs, "", "", &[]).await;
    let long = tool_call(1, "sleep", json!({"ms": 60_000}));
    let running = sidecar.submit(&long, &[]).await;
    let running = running["id"].as_str().unwrap().to_owned();
    sidecar.wait_status(&running, "working", &[]).await;
    let queued = sidecar.submit(&long, &[]).await;
    let queued = queued["id"].as_str().unwrap().to_owned();
    assert_eq!(sidecar.job(&queued, &[]).await["status"], "queued");

    let resp = sidecar
        .post(
            "/mcp",
            &tool_call(2, "echo", json!({"text": "no room"})),
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(resp.status(), 503);
    let retry_after = resp.headers()["retry-after"].to_str().unwrap().to_owned();
    assert!(retry_after.parse::<u64>().unwrap() >= 1, "{retry_after}");
    let text = resp.text().await.unwrap();
    assert_eq!(reason(&text), "job_queue_full", "{text}");

    // Nothing stored and nothing sent for the refused one.
    let (_, _, list) = sidecar.call(Method::GET, "/jobs", &[]).await;
    let list: Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [queued.as_str(), running.as_str()], "{list}");
    assert_eq!(calls(&backend, "echo"), 0);
    // The operator view counts them.
    let view: Value = sidecar
        .client
        .get(sidecar.admin_url("/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        view.to_string().contains("oldest_queued_age_seconds"),
        "{view}"
    );

    // Cancelling the queued job frees its place at once; it never reaches the backend.
    let (status, _, body) = sidecar
        .call(Method::DELETE, &format!("/jobs/{queued}"), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["status"], "cancelled", "{doc}");
    assert!(doc["startedAt"].is_null(), "{doc}");
    assert_eq!(calls(&backend, "sleep"), 1);
    let resp = sidecar
        .post(
            "/mcp",
            &tool_call(3, "echo", json!({"text": "room"})),
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(resp.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_behind_an_open_circuit_waits_and_completes_once_it_closes() {
    let backend = fixture().await;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
    let (status, body) = sidecar.admin_post("/breakers/shield/open").await;
    assert_eq!(status, 200, "{body}");
    // A live call is refused at once: the circuit is really open.
    let live = sidecar
        .post("/mcp", &tool_call(1, "echo", json!({"text": "live"})), &[])
        .await;
    assert_eq!(live.status(), 503);

    let job = sidecar
        .submit(&tool_call(2, "echo", json!({"text": "patient"})), &[])
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    // It waits (several backoff rounds), neither failing nor reaching the backend.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let doc = sidecar.job(&id, &[]).await;
        let status = doc["status"].as_str().unwrap();
        assert!(matches!(status, "queued" | "working"), "{doc}");
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(calls(&backend, "echo"), 0);

    let (status, body) = sidecar.admin_post("/breakers/shield/close").await;
    assert_eq!(status, 200, "{body}");
    sidecar.wait_status(&id, "completed", &[]).await;
    let result = sidecar.result(&id, &[]).await;
    assert_eq!(result["id"], 2);
    assert!(result.to_string().contains("patient"), "{result}");
    assert_eq!(calls(&backend, "echo"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_required_refuses_live_calls_and_never_keeps_them_live() {
    let backend = fixture().await;
    let tools = r#"
[[upstream.tool]]
name = "sleep"
offload = "required"
[[upstream.tool]]
name = "echo"
offload = "never"
"#;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", tools, "", &[]).await;
    let sleep = tool_call(1, "sleep", json!({"ms": 10}));

    // Required: live is refused with directions to the job API, and never reaches the backend.
    let resp = sidecar.post("/mcp", &sleep, &[]).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert_eq!(reason(&text), "offload_required", "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    let message = message["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("respond-async") && message.contains("/jobs/mcp"),
        "{message}"
    );
    assert_eq!(calls(&backend, "sleep"), 0);
    // As a job it runs.
    let job = sidecar.submit(&sleep, &[]).await;
    sidecar
        .wait_status(job["id"].as_str().unwrap(), "completed", &[])
        .await;
    let resp = sidecar.post("/jobs/mcp", &sleep, &[]).await;
    assert_eq!(resp.status(), 202);

    // Never: the preference is ignored (answered live), `POST /jobs/<mount>` is refused.
    let echo = tool_call(2, "echo", json!({"text": "live only"}));
    let resp = sidecar
        .post("/mcp", &echo, &[("prefer", "respond-async")])
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("preference-applied").is_none());
    assert!(resp.headers().get("location").is_none());
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let live = jsonrpc_response(&ct, &resp.text().await.unwrap());
    assert!(live.to_string().contains("live only"), "{live}");
    let resp = sidecar.post("/jobs/mcp", &echo, &[]).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert_eq!(reason(&text), "offload_not_allowed", "{text}");
    assert_eq!(calls(&backend, "echo"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_after_sigterm_are_refused_with_503() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    // A long grace period: the sidecar is still draining while the test submits.
    let cfg = config(&backend.mcp_url(), &data_dir(dir.path()), "", "", "")
        .replace("grace_period = \"2s\"", "grace_period = \"20s\"");
    let sidecar = Sidecar::start(&cfg, dir.path(), &[]).await;
    // A running job keeps the sidecar in its shutdown's drain.
    let job = sidecar
        .submit(&tool_call(1, "sleep", json!({"ms": 5000})), &[])
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    sidecar.wait_status(&id, "working", &[]).await;
    // A request begun before SIGTERM (its head half sent), so the drain serves it instead of
    // closing an idle connection, and finished after: it meets the job engine shut.
    let body = tool_call(2, "echo", json!({"text": "late"}));
    let mut conn = tokio::net::TcpStream::connect(sidecar.listen)
        .await
        .unwrap();
    conn.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    sidecar.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = format!(
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Prefer: respond-async\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, conn.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nretry-after: "),
        "{answer}"
    );
    assert!(answer.contains("\"jobs_unavailable\""), "{answer}");
    assert_eq!(calls(&backend, "echo"), 0);
    // The running job finishes within the grace period and the process exits cleanly.
    assert_eq!(sidecar.wait_exit().await, Some(0));
    let again = Sidecar::start(&cfg, dir.path(), &[]).await;
    let job = again.job(&id, &[]).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(calls(&backend, "sleep"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_fails_and_its_call_is_cancelled_at_the_backend() {
    let backend = fixture().await;
    let tools = "[[upstream.tool]]\nname = \"sleep\"\njob_deadline = \"1s\"\n";
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", tools, "", &[]).await;
    let job = sidecar
        .submit(&tool_call(9, "sleep", json!({"ms": 60_000})), &[])
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let doc = sidecar.wait_end(&id, &[]).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["reason"], "deadline_exceeded", "{doc}");
    let result = sidecar.result(&id, &[]).await;
    assert_eq!(result["id"], 9, "{result}");
    assert_eq!(result["error"]["code"], -32047, "{result}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = backend.stats();
        let notified = stats.by_method.get("notifications/cancelled").copied();
        if stats.cancelled_total >= 1 && notified >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_max_result_bytes_fails_the_job_with_a_clear_reason() {
    // Both ways a backend answers: a JSON body and an event stream.
    for mode in [ResponseMode::Json, ResponseMode::Sse] {
        let backend = FixtureServer::start(FixtureConfig {
            stateless: true,
            response_mode: mode,
            ..Default::default()
        })
        .await
        .unwrap();
        let sidecar =
            Sidecar::for_backend(&backend.mcp_url(), "max_result_bytes = 4096\n", "", "", &[])
                .await;
        let small = sidecar
            .submit(&tool_call(1, "large", json!({"bytes": 1000})), &[])
            .await;
        let big = sidecar
            .submit(&tool_call(2, "large", json!({"bytes": 100_000})), &[])
            .await;
        sidecar
            .wait_status(small["id"].as_str().unwrap(), "completed", &[])
            .await;
        let id = big["id"].as_str().unwrap();
        let doc = sidecar.wait_end(id, &[]).await;
        assert_eq!(doc["status"], "failed", "{mode:?}: {doc}");
        assert_eq!(
            doc["error"]["reason"], "result_too_large",
            "{mode:?}: {doc}"
        );
        assert!(
            doc["error"]["message"].as_str().unwrap().contains("4096"),
            "{doc}"
        );
    }
}

/// `max_result_bytes` bounds the result, not the whole stream: a long job that reports
/// progress often must not fail for the notifications it sent on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_do_not_count_against_max_result_bytes() {
    let backend = fixture().await;
    let sidecar =
        Sidecar::for_backend(&backend.mcp_url(), "max_result_bytes = 4096\n", "", "", &[]).await;
    // 80 notifications of ~150 bytes each: three times the cap, the answer far below it.
    let job = sidecar
        .submit(
            &tool_call(1, "progress", json!({"steps": 80, "interval_ms": 5})),
            &[],
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let done = sidecar.wait_status(&id, "completed", &[]).await;
    assert_eq!(done["progress"]["progress"].as_f64(), Some(80.0), "{done}");
    let result = sidecar.result(&id, &[]).await;
    assert!(
        result.to_string().contains("completed 80 steps"),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_running_per_upstream_keeps_further_jobs_queued() {
    let backend = fixture().await;
    let sidecar = Sidecar::for_backend(
        &backend.mcp_url(),
        "max_running = 8\nmax_running_per_upstream = 2\n",
        "",
        "",
        &[],
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let job = sidecar
            .submit(&tool_call(n, "sleep", json!({"ms": 1500})), &[])
            .await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    sidecar.wait_status(&ids[0], "working", &[]).await;
    sidecar.wait_status(&ids[1], "working", &[]).await;
    // While the first two run, the third waits, and the backend never has more than two.
    let mut most = 0;
    let mut held_back = false;
    let deadline = Instant::now() + PATIENCE;
    loop {
        most = most.max(backend.stats().in_flight);
        let first = sidecar.job(&ids[0], &[]).await;
        let second = sidecar.job(&ids[1], &[]).await;
        let third = sidecar.job(&ids[2], &[]).await;
        if third["status"] != "queued" {
            break;
        }
        held_back |= first["status"] == "working" && second["status"] == "working";
        assert!(Instant::now() < deadline, "{third}");
        tokio::time::sleep(POLL).await;
    }
    assert!(held_back);
    let mut done = Vec::new();
    for id in &ids {
        done.push(sidecar.wait_status(id, "completed", &[]).await);
    }
    // The third started only when one of the first two had finished.
    let at =
        |doc: &Value, field: &str| humantime::parse_rfc3339(doc[field].as_str().unwrap()).unwrap();
    let freed = at(&done[0], "finishedAt").min(at(&done[1], "finishedAt"));
    assert!(at(&done[2], "startedAt") >= freed, "{done:#?}");
    assert!(most <= 2, "{most} calls at once");
}
