//! The job API's 202 flow end to end through the real `mcp-sidecar` binary, with the fixture
//! MCP server as the backend: a result fetched later equals the live answer, progress arrives
//! while a job runs, events resume after `Last-Event-ID`, `DELETE` reaches the backend,
//! `Prefer: wait`, HTTP/2, listing, expiry, backend errors and misuse of the API. Who may see
//! and submit jobs is in `jobs_access.rs`, the bounds in `jobs_limits.rs`, restarts in
//! `jobs_durability.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jobs_support;

use std::time::{Duration, Instant};

use jobs_support::{
    Events, PATIENCE, POLL, Sidecar, calls, fixture, jsonrpc_response, reason, tool_call,
};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_fetched_later_is_json_equal_to_the_same_call_made_live() {
    let backend = fixture().await;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;

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
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_returns_the_answer_inline_when_the_job_ends_in_time() {
    let backend = fixture().await;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
async fn the_job_list_is_newest_first_and_pages_with_its_cursor() {
    let backend = fixture().await;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_api_misuse_gets_a_clear_error() {
    let backend = fixture().await;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
    let doc = sidecar.wait_end(&id, &[]).await;
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
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
    let sidecar =
        Sidecar::for_backend(&backend.mcp_url(), "result_ttl = \"2s\"\n", "", "", &[]).await;
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
async fn a_job_is_submitted_over_http2_as_over_http1() {
    let backend = fixture().await;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
