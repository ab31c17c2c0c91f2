//! The job API (HTTP 202 offloading) end to end through the real `mcp-sidecar` binary, with the
//! fixture MCP server as the backend: results equal to live calls, progress while a job runs,
//! cancellation reaching the backend, owner-only visibility, idempotency keys, the queue bound,
//! the wait behind an open circuit, the per-tool `offload` modes and submissions after SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jobs_support;

use std::time::{Duration, Instant};

use jobs_support::{
    Events, PATIENCE, POLL, Sidecar, config, data_dir, fixture, jsonrpc_response, tool_call,
};
use mcp_fixtures::{FixtureConfig, FixtureServer, ResponseMode};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The calls of `tool` the fixture has seen.
fn calls(backend: &FixtureServer, tool: &str) -> u64 {
    backend.stats().by_tool.get(tool).copied().unwrap_or(0)
}

/// `error.data.reason` of a sidecar error answer.
fn reason(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["data"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_fetched_later_is_json_equal_to_the_same_call_made_live() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;

    let cases = [
        tool_call(7, "echo", json!({"text": "hello, jobs"})),
        tool_call(8, "progress", json!({"steps": 3, "interval_ms": 50})),
    ];
    for (i, body) in cases.iter().enumerate() {
        let live = sidecar.post("/mcp", body, &[]).await;
        assert_eq!(live.status(), 200);
        let ct = live.headers()["content-type"].to_str().unwrap().to_owned();
        let live = jsonrpc_response(&ct, &live.text().await.unwrap());
        assert!(live.get("result").is_some(), "{live}");

        // Once with `Prefer: respond-async` on the mount, once on `POST /jobs/<mount>`.
        let (resp, prefer) = if i == 0 {
            (
                sidecar
                    .post("/mcp", body, &[("prefer", "respond-async")])
                    .await,
                true,
            )
        } else {
            (sidecar.post("/jobs/mcp", body, &[]).await, false)
        };
        assert_eq!(resp.status(), 202);
        let headers = resp.headers().clone();
        let job: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        assert_eq!(headers["location"], format!("/jobs/{id}").as_str());
        assert_eq!(
            headers
                .get("preference-applied")
                .map(|v| v.to_str().unwrap()),
            prefer.then_some("respond-async")
        );
        assert_eq!(job["upstream"], "shield");
        assert_eq!(job["method"], "tools/call");
        assert_eq!(job["links"]["result"], format!("/jobs/{id}/result"));

        let done = sidecar.wait_status(&id, "completed", &[]).await;
        assert!(done["finishedAt"].is_string(), "{done}");
        let later = sidecar.result(&id, &[]).await;
        assert_eq!(later, live, "job result differs from the live answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_events_arrive_while_the_job_is_still_working() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    // Five steps 400 ms apart: after the first progress the backend itself needs 1.6 s more.
    let job = sidecar
        .submit(
            &tool_call(1, "progress", json!({"steps": 5, "interval_ms": 400})),
            &[],
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let mut events = Events::open(&sidecar, &id, &[]).await;

    let mut seen = Vec::new();
    let mut working_after_first_progress = None;
    while let Some(event) = events.next().await {
        let at = Instant::now();
        let doc = event.json();
        if event.event == "progress" && working_after_first_progress.is_none() {
            // The job is still running when its first progress reaches the follower.
            let now = sidecar.job(&id, &[]).await;
            working_after_first_progress = Some(now["status"].as_str().unwrap().to_owned());
        }
        seen.push((event, doc, at));
    }
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|(e, d, _)| (e.event.as_str(), d["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        working_after_first_progress.as_deref(),
        Some("working"),
        "{kinds:?}"
    );
    let (last, last_doc, finished_at) = seen.last().unwrap();
    assert_eq!(last.event, "status", "{kinds:?}");
    assert_eq!(last_doc["status"], "completed", "{kinds:?}");
    let progress: Vec<&(jobs_support::Event, Value, Instant)> = seen
        .iter()
        .filter(|(e, _, _)| e.event == "progress")
        .collect();
    assert!(progress.len() >= 2, "{kinds:?}");
    for (_, doc, _) in &progress {
        assert_eq!(doc["status"], "working", "{kinds:?}");
        assert!(
            doc["progress"]["progress"].as_f64().unwrap() >= 1.0,
            "{doc}"
        );
    }
    // Not all at the end: the first progress came well before the completion (the backend
    // spent at least 1.6 s in between; a sidecar that held them back would send all at once).
    let first_at = progress[0].2;
    assert!(
        finished_at.duration_since(first_at) >= Duration::from_millis(800),
        "progress arrived only at the end: {:?}",
        finished_at.duration_since(first_at)
    );
    // Event ids are the job's sequence numbers: increasing.
    let ids: Vec<u64> = seen
        .iter()
        .map(|(e, _, _)| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // Opened late: the current (final) state, then the end; with `Last-Event-ID` of that
    // state, nothing more.
    let mut late = Events::open(&sidecar, &id, &[]).await;
    let only = late.next().await.unwrap();
    assert_eq!(only.event, "status");
    assert_eq!(only.json()["status"], "completed");
    assert!(late.next().await.is_none());
    let last_id = ids.last().unwrap().to_string();
    let mut resumed = Events::open(&sidecar, &id, &[("last-event-id", &last_id)]).await;
    assert!(resumed.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_abandons_the_call_and_sends_notifications_cancelled_in_its_session() {
    // A stateful backend: the job's call and its cancellation belong to a session.
    let backend = mcp_fixtures::FixtureServer::start(mcp_fixtures::FixtureConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"jobs-e2e","version":"1"}}})
    .to_string();
    let resp = sidecar.post("/mcp", &init, &[]).await;
    assert_eq!(resp.status(), 200);
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let session_headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let initialized = json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string();
    let resp = sidecar.post("/mcp", &initialized, &session_headers).await;
    assert_eq!(resp.status(), 202);

    let job = sidecar
        .submit(
            &tool_call(42, "sleep", json!({"ms": 60_000})),
            &session_headers,
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    sidecar.wait_status(&id, "working", &[]).await;
    // The call reached the backend and is in flight there.
    let deadline = Instant::now() + PATIENCE;
    while calls(&backend, "sleep") == 0 || backend.stats().in_flight == 0 {
        assert!(Instant::now() < deadline, "{:?}", backend.stats());
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(backend.stats().cancelled_total, 0);

    let (status, _, body) = sidecar
        .call(Method::DELETE, &format!("/jobs/{id}"), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["status"], "cancelled", "{doc}");

    // The backend saw the call dropped and the cancellation, in the call's session.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = backend.stats();
        let notified = stats
            .by_method
            .get("notifications/cancelled")
            .copied()
            .unwrap_or(0);
        if stats.cancelled_total >= 1 && notified >= 1 && stats.in_flight == 0 {
            assert_eq!(
                stats
                    .last_request_headers
                    .get("mcp-session-id")
                    .map(String::as_str),
                Some(session.as_str()),
                "{stats:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(POLL).await;
    }

    assert_eq!(sidecar.job(&id, &[]).await["status"], "cancelled");
    let result = sidecar.result(&id, &[]).await;
    assert_eq!(result["id"], 42, "{result}");
    assert_eq!(result["error"]["code"], -32048, "{result}");
    assert_eq!(result["error"]["data"]["reason"], "cancelled", "{result}");
}

const KEY_A: &str = "jobs-e2e-key-alice-0123456789";
const KEY_B: &str = "jobs-e2e-key-bob-0123456789ab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_principal_gets_404_on_every_job_url() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = r#"
[auth]
public_url = "http://127.0.0.1"
[[auth.api_keys]]
id = "alice"
key = "${JOBS_KEY_A}"
[[auth.api_keys]]
id = "bob"
key = "${JOBS_KEY_B}"
"#;
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", auth),
        dir.path(),
        &[("JOBS_KEY_A", KEY_A), ("JOBS_KEY_B", KEY_B)],
    )
    .await;
    let alice = [("x-api-key", KEY_A)];
    let bob_bearer = format!("Bearer {KEY_B}");
    let bob = [("authorization", bob_bearer.as_str())];

    // No credential: not even a submission.
    let resp = sidecar
        .post(
            "/mcp",
            &tool_call(1, "echo", json!({"text": "x"})),
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(resp.status(), 401);

    let job = sidecar
        .submit(&tool_call(1, "sleep", json!({"ms": 3000})), &alice)
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    // A well-formed id that names no job: the answer another principal gets must be the same.
    let unknown = "0123456789abcdef0123456789abcdef";

    let urls = [
        (Method::GET, format!("/jobs/{id}")),
        (Method::GET, format!("/jobs/{id}/result")),
        (Method::GET, format!("/jobs/{id}/events")),
        (Method::DELETE, format!("/jobs/{id}")),
    ];
    for (method, path) in &urls {
        let (status, _, body) = sidecar.call(method.clone(), path, &bob).await;
        assert_eq!(status, 404, "bob {method} {path}: {body}");
        assert_eq!(reason(&body), "job_not_found", "{body}");
        assert!(!body.contains("alice"), "{body}");
        let (status, _, body) = sidecar.call(method.clone(), path, &[]).await;
        assert_eq!(status, 401, "anonymous {method} {path}: {body}");
        let other = path.replace(&id, unknown);
        let (status, _, _) = sidecar.call(method.clone(), &other, &bob).await;
        assert_eq!(status, 404, "bob {method} {other}");
    }
    // Bob's list does not show it; Alice's does.
    let (status, _, body) = sidecar.call(Method::GET, "/jobs", &bob).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&id), "{body}");
    let (status, _, body) = sidecar.call(Method::GET, "/jobs", &alice).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["jobs"][0]["id"], id.as_str(), "{list}");

    // Idempotency keys belong to their principal: Bob's same key and body is a job of his.
    let keyed = tool_call(5, "echo", json!({"text": "keyed"}));
    let a = sidecar
        .submit(&keyed, &[alice[0], ("idempotency-key", "shared-key")])
        .await;
    let b = sidecar
        .post(
            "/mcp",
            &keyed,
            &[
                bob[0],
                ("prefer", "respond-async"),
                ("idempotency-key", "shared-key"),
            ],
        )
        .await;
    assert_eq!(b.status(), 202);
    assert!(b.headers().get("idempotent-replayed").is_none());
    let b: Value = b.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);

    // Bob's DELETE did nothing: the job runs on to completion for its owner.
    let done = sidecar.wait_status(&id, "completed", &alice).await;
    assert_eq!(done["attempts"], 1);
    let result = sidecar.result(&id, &alice).await;
    assert!(result["result"].is_object(), "{result}");
    // Finished, it is still hidden from Bob.
    for (method, path) in &urls {
        let (status, _, _) = sidecar.call(method.clone(), path, &bob).await;
        assert_eq!(status, 404, "bob {method} {path} after the end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_same_job_and_refuses_another_body() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let body = tool_call(1, "echo", json!({"text": "once"}));
    let key = [("prefer", "respond-async"), ("idempotency-key", "order-17")];

    let first = sidecar.post("/mcp", &body, &key).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = serde_json::from_str(&first.text().await.unwrap()).unwrap();
    let id = first["id"].as_str().unwrap().to_owned();

    let again = sidecar.post("/mcp", &body, &key).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = serde_json::from_str(&again.text().await.unwrap()).unwrap();
    assert_eq!(again["id"], id.as_str());

    sidecar.wait_status(&id, "completed", &[]).await;
    // After the end, too: the same job, its result, no new call.
    let late = sidecar.post("/mcp", &body, &key).await;
    assert_eq!(late.status(), 202);
    assert_eq!(late.headers()["idempotent-replayed"], "true");
    let late: Value = serde_json::from_str(&late.text().await.unwrap()).unwrap();
    assert_eq!(late["id"], id.as_str());
    assert_eq!(late["status"], "completed");

    // The same key with another request.
    let other = tool_call(1, "echo", json!({"text": "twice"}));
    let resp = sidecar.post("/mcp", &other, &key).await;
    assert_eq!(resp.status(), 422);
    let text = resp.text().await.unwrap();
    assert_eq!(reason(&text), "idempotency_key_reused", "{text}");

    assert_eq!(calls(&backend, "echo"), 1, "{:?}", backend.stats());
    let (_, _, list) = sidecar.call(Method::GET, "/jobs", &[]).await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_with_retry_after_and_stores_nothing() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let jobs = "max_running = 1\nmax_running_per_upstream = 1\nmax_queued = 1\n";
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), jobs, "", ""),
        dir.path(),
        &[],
    )
    .await;
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
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
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
    let dir = tempfile::tempdir().unwrap();
    let tools = r#"
[[upstream.tool]]
name = "sleep"
offload = "required"
[[upstream.tool]]
name = "echo"
offload = "never"
"#;
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", tools, ""),
        dir.path(),
        &[],
    )
    .await;
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
async fn prefer_wait_returns_the_answer_inline_when_the_job_ends_in_time() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let body = tool_call(5, "echo", json!({"text": "soon"}));
    let resp = sidecar
        .post("/mcp", &body, &[("prefer", "respond-async, wait=20")])
        .await;
    assert_eq!(resp.status(), 200);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let inline: Value = resp.json().await.unwrap();
    assert_eq!(inline["id"], 5);
    assert!(inline.to_string().contains("soon"), "{inline}");
    // The job it ran is there as well, with the same answer.
    let id = location.trim_start_matches("/jobs/");
    assert_eq!(sidecar.result(id, &[]).await, inline);

    // Not done within the wait: the 202 after it, and the job goes on.
    let started = Instant::now();
    let resp = sidecar
        .post(
            "/mcp",
            &tool_call(6, "sleep", json!({"ms": 4000})),
            &[("prefer", "respond-async, wait=1")],
        )
        .await;
    assert_eq!(resp.status(), 202);
    assert!(started.elapsed() >= Duration::from_millis(900));
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    sidecar.wait_status(&id, "completed", &[]).await;
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

/// Every file under `dir`, read whole.
fn store_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(store_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

const BACKEND_TOKEN: &str = "jobs-e2e-backend-token-42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_authorized_at_submission_and_runs_with_the_backends_credential_not_the_callers() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    let auth = r#"
[auth]
public_url = "http://127.0.0.1"
claim_headers = { sub = "X-Auth-Subject" }
[[auth.api_keys]]
id = "alice"
key = "${JOBS_KEY_A}"
scopes = ["tools:all"]
[[auth.api_keys]]
id = "bob"
key = "${JOBS_KEY_B}"
scopes = ["tools:echo"]
"#;
    let upstream = r#"
[upstream.auth]
credential = { header = "Authorization", value = "Bearer ${BACKEND_TOKEN}" }
[[upstream.auth.rules]]
scopes = ["tools:all"]
tools = ["*"]
[[upstream.auth.rules]]
scopes = ["tools:echo"]
tools = ["echo"]
"#;
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data, "", upstream, auth),
        dir.path(),
        &[
            ("JOBS_KEY_A", KEY_A),
            ("JOBS_KEY_B", KEY_B),
            ("BACKEND_TOKEN", BACKEND_TOKEN),
        ],
    )
    .await;
    let alice = [("x-api-key", KEY_A)];
    let bob = [("x-api-key", KEY_B)];

    // Bob may not call `sleep`: not live, not as a job, and nothing is stored for him.
    for path in ["/mcp", "/jobs/mcp"] {
        let resp = sidecar
            .post(
                path,
                &tool_call(1, "sleep", json!({"ms": 1})),
                &[("prefer", "respond-async"), bob[0]],
            )
            .await;
        assert_eq!(resp.status(), 403, "{path}");
    }
    let (_, _, list) = sidecar.call(Method::GET, "/jobs", &bob).await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["jobs"], json!([]), "{list}");
    assert_eq!(calls(&backend, "sleep"), 0);

    // Alice's job reaches the backend with the backend's credential and her subject (not
    // the one she claims), and without her key.
    let job = sidecar
        .submit(
            &tool_call(2, "sleep", json!({"ms": 1})),
            &[alice[0], ("x-auth-subject", "bob")],
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    sidecar.wait_status(&id, "completed", &alice).await;
    let seen = backend.stats().last_request_headers;
    assert_eq!(
        seen.get("authorization").map(String::as_str),
        Some(format!("Bearer {BACKEND_TOKEN}").as_str()),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("x-auth-subject").map(String::as_str),
        Some("alice"),
        "{seen:?}"
    );
    assert!(!seen.contains_key("x-api-key"), "{seen:?}");
    assert!(!seen.values().any(|v| v.contains(KEY_A)), "{seen:?}");

    // Neither credential is written to the store.
    let stored = store_bytes(&data);
    assert!(!stored.is_empty());
    assert!(
        !contains(&stored, KEY_A),
        "the caller's key is in the store"
    );
    assert!(
        !contains(&stored, BACKEND_TOKEN),
        "the backend's credential is in the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_fails_and_its_call_is_cancelled_at_the_backend() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let tools = "[[upstream.tool]]\nname = \"sleep\"\njob_deadline = \"1s\"\n";
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", tools, ""),
        dir.path(),
        &[],
    )
    .await;
    let job = sidecar
        .submit(&tool_call(9, "sleep", json!({"ms": 60_000})), &[])
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + PATIENCE;
    let doc = loop {
        let doc = sidecar.job(&id, &[]).await;
        if doc["status"] != "queued" && doc["status"] != "working" {
            break doc;
        }
        assert!(Instant::now() < deadline, "{doc}");
        tokio::time::sleep(POLL).await;
    };
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
        let dir = tempfile::tempdir().unwrap();
        let sidecar = Sidecar::start(
            &config(
                &backend.mcp_url(),
                &data_dir(dir.path()),
                "max_result_bytes = 4096\n",
                "",
                "",
            ),
            dir.path(),
            &[],
        )
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
        let deadline = Instant::now() + PATIENCE;
        let doc = loop {
            let doc = sidecar.job(id, &[]).await;
            if doc["status"] != "queued" && doc["status"] != "working" {
                break doc;
            }
            assert!(Instant::now() < deadline, "{doc}");
            tokio::time::sleep(POLL).await;
        };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_list_is_newest_first_and_pages_with_its_cursor() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let job = sidecar
            .submit(&tool_call(n, "echo", json!({"text": n.to_string()})), &[])
            .await;
        ids.push(job["id"].as_str().unwrap().to_owned());
        // Distinct creation times (the list's order), on a coarse clock too.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ids.reverse();
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/jobs?upstream=shield&limit=2&cursor={c}"),
            None => "/jobs?upstream=shield&limit=2".to_owned(),
        };
        let (status, _, body) = sidecar.call(Method::GET, &path, &[]).await;
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2, "{page}");
        listed.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    let (status, _, body) = sidecar.call(Method::GET, "/jobs?upstream=nope", &[]).await;
    assert_eq!(status, 400, "{body}");
}

/// `max_result_bytes` bounds the result, not the whole stream: a long job that reports
/// progress often must not fail for the notifications it sent on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_do_not_count_against_max_result_bytes() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(
            &backend.mcp_url(),
            &data_dir(dir.path()),
            "max_result_bytes = 4096\n",
            "",
            "",
        ),
        dir.path(),
        &[],
    )
    .await;
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
async fn on_a_public_upstream_the_owner_is_the_client_address_and_forwarded_headers_do_not_change_it()
 {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let job = sidecar
        .submit(&tool_call(1, "echo", json!({"text": "mine"})), &[])
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    sidecar.wait_status(&id, "completed", &[]).await;

    // Another loopback address is another client; claiming the first one's address in
    // forwarding headers changes nothing.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{id}/result"),
        format!("/jobs/{id}/events"),
    ] {
        let resp = other
            .get(sidecar.url(&path))
            .header("x-forwarded-for", "127.0.0.1")
            .header("forwarded", "for=127.0.0.1")
            .header("x-real-ip", "127.0.0.1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = other
        .delete(sidecar.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(sidecar.job(&id, &[]).await["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_api_misuse_gets_a_clear_error() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let call = tool_call(1, "echo", json!({"text": "x"}));
    // Not a job id, a path that names no mount, a method the route does not take.
    for (method, path, want) in [
        (Method::GET, "/jobs/not-an-id", 404),
        (Method::GET, "/jobs/0123456789ABCDEF0123456789ABCDEF", 404),
        (
            Method::GET,
            "/jobs/0123456789abcdef0123456789abcdef/other",
            405,
        ),
        (Method::PUT, "/jobs", 405),
    ] {
        let (status, _, body) = sidecar.call(method.clone(), path, &[]).await;
        assert_eq!(status, want, "{method} {path}: {body}");
    }
    let resp = sidecar.post("/jobs/nowhere", &call, &[]).await;
    assert_eq!(resp.status(), 404);
    // Only `tools/call` runs as a job; a batch or a notification is refused on `/jobs/...`
    // and answered live with `Prefer`.
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string();
    let resp = sidecar.post("/jobs/mcp", &list, &[]).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert_eq!(reason(&text), "offload_not_allowed", "{text}");
    let resp = sidecar
        .post("/mcp", &list, &[("prefer", "respond-async")])
        .await;
    assert_eq!(resp.status(), 200);
    let batch = format!("[{call}]");
    let resp = sidecar.post("/jobs/mcp", &batch, &[]).await;
    assert_eq!(resp.status(), 400);
    // A bad Idempotency-Key.
    let resp = sidecar
        .post(
            "/mcp",
            &call,
            &[("prefer", "respond-async"), ("idempotency-key", "")],
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(calls(&backend, "echo"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_end_the_job_as_the_live_call_was_answered_and_are_not_retried() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    // A JSON-RPC error and a tool error are answers: the job completes with them, equal to
    // the live answer.
    for mode in ["jsonrpc_error", "tool_error"] {
        let body = tool_call(3, "fail", json!({"mode": mode, "message": "nope"}));
        let live = sidecar.post("/mcp", &body, &[]).await;
        let ct = live.headers()["content-type"].to_str().unwrap().to_owned();
        let live = jsonrpc_response(&ct, &live.text().await.unwrap());
        let job = sidecar.submit(&body, &[]).await;
        let id = job["id"].as_str().unwrap().to_owned();
        sidecar.wait_status(&id, "completed", &[]).await;
        assert_eq!(sidecar.result(&id, &[]).await, live, "{mode}");
    }
    // A connection dropped without an answer: the job fails, and the call (not idempotent)
    // is not sent again.
    backend.reset_stats();
    let job = sidecar
        .submit(&tool_call(4, "fail", json!({"mode": "drop"})), &[])
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + PATIENCE;
    let doc = loop {
        let doc = sidecar.job(&id, &[]).await;
        if doc["status"] != "queued" && doc["status"] != "working" {
            break doc;
        }
        assert!(Instant::now() < deadline, "{doc}");
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["reason"], "upstream", "{doc}");
    assert_eq!(doc["attempts"], 1, "{doc}");
    let result = sidecar.result(&id, &[]).await;
    assert_eq!(result["id"], 4, "{result}");
    assert_eq!(result["error"]["code"], -32047, "{result}");
    assert_eq!(calls(&backend, "fail"), 1, "{:?}", backend.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_after_last_event_id_without_repeating_what_was_seen() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let job = sidecar
        .submit(
            &tool_call(1, "progress", json!({"steps": 8, "interval_ms": 300})),
            &[],
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    sidecar.wait_status(&id, "working", &[]).await;
    let mut first = Events::open(&sidecar, &id, &[]).await;
    // The current state first (working), then at least one progress event.
    let opening = first.next().await.unwrap();
    assert_eq!(opening.event, "status");
    assert_eq!(opening.json()["status"], "working");
    let seen = first.next().await.unwrap();
    assert_eq!(seen.event, "progress", "{seen:?}");
    let seen_id: u64 = seen.id.as_deref().unwrap().parse().unwrap();
    drop(first);

    let seen_text = seen_id.to_string();
    let mut resumed = Events::open(&sidecar, &id, &[("last-event-id", &seen_text)]).await;
    let mut ids = Vec::new();
    let mut last = None;
    while let Some(event) = resumed.next().await {
        ids.push(event.id.as_deref().unwrap().parse::<u64>().unwrap());
        last = Some(event);
    }
    assert!(ids.iter().all(|&i| i > seen_id), "{seen_id} then {ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let last = last.unwrap();
    assert_eq!(last.json()["status"], "completed", "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_gone_for_everyone_after_its_result_ttl() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(
            &backend.mcp_url(),
            &data_dir(dir.path()),
            "result_ttl = \"2s\"\n",
            "",
            "",
        ),
        dir.path(),
        &[],
    )
    .await;
    let job = sidecar
        .submit(&tool_call(1, "echo", json!({"text": "brief"})), &[])
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let done = sidecar.wait_status(&id, "completed", &[]).await;
    let finished = humantime::parse_rfc3339(done["finishedAt"].as_str().unwrap()).unwrap();
    let expires = humantime::parse_rfc3339(done["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires.duration_since(finished).unwrap(),
        Duration::from_secs(2)
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, _, _) = sidecar.call(Method::GET, &format!("/jobs/{id}"), &[]).await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(POLL).await;
    }
    for path in [format!("/jobs/{id}/result"), format!("/jobs/{id}/events")] {
        let (status, _, _) = sidecar.call(Method::GET, &path, &[]).await;
        assert_eq!(status, 404, "{path}");
    }
    let (_, _, list) = sidecar.call(Method::GET, "/jobs", &[]).await;
    assert!(!list.contains(&id), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_running_per_upstream_keeps_further_jobs_queued() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(
            &backend.mcp_url(),
            &data_dir(dir.path()),
            "max_running = 8\nmax_running_per_upstream = 2\n",
            "",
            "",
        ),
        dir.path(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_submitted_over_http2_as_over_http1() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let resp = h2
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("prefer", "respond-async")
        .body(tool_call(1, "echo", json!({"text": "h2"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["preference-applied"], "respond-async");
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    sidecar.wait_status(&id, "completed", &[]).await;
    let result: Value = h2
        .get(sidecar.url(&format!("/jobs/{id}/result")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(result.to_string().contains("h2"), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_at_submission_and_a_refused_submission_stores_nothing() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let limits = r#"
[[rate_limit]]
name = "slow-sleep"
key = ["client_ip"]
rate = 1
per = "1h"
tools = ["sleep"]
"#;
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", limits),
        dir.path(),
        &[],
    )
    .await;
    let call = tool_call(1, "sleep", json!({"ms": 1}));
    let job = sidecar.submit(&call, &[]).await;
    let id = job["id"].as_str().unwrap().to_owned();
    for path in ["/mcp", "/jobs/mcp"] {
        let resp = sidecar
            .post(path, &call, &[("prefer", "respond-async")])
            .await;
        assert_eq!(resp.status(), 429, "{path}");
        assert!(resp.headers().contains_key("retry-after"));
        let text = resp.text().await.unwrap();
        assert_eq!(reason(&text), "rate_limited", "{text}");
    }
    sidecar.wait_status(&id, "completed", &[]).await;
    let (_, _, list) = sidecar.call(Method::GET, "/jobs", &[]).await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
    // The job itself ran without counting again: one call.
    assert_eq!(calls(&backend, "sleep"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_with_one_idempotency_key_make_one_job_and_one_call() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        &config(&backend.mcp_url(), &data_dir(dir.path()), "", "", ""),
        dir.path(),
        &[],
    )
    .await;
    let body = tool_call(1, "sleep", json!({"ms": 200}));
    let headers = [("prefer", "respond-async"), ("idempotency-key", "race-1")];
    let sends = (0..16).map(|_| sidecar.post("/mcp", &body, &headers));
    let mut ids = std::collections::BTreeSet::new();
    let mut replayed = 0;
    for resp in futures_util::future::join_all(sends).await {
        assert_eq!(resp.status(), 202);
        if resp.headers().contains_key("idempotent-replayed") {
            replayed += 1;
        }
        let job: Value = resp.json().await.unwrap();
        ids.insert(job["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(replayed, 15);
    let id = ids.into_iter().next().unwrap();
    sidecar.wait_status(&id, "completed", &[]).await;
    assert_eq!(calls(&backend, "sleep"), 1, "{:?}", backend.stats());
}
