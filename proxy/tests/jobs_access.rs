//! Who a job belongs to and what it carries, through the real `mcp-sidecar` binary: another
//! principal (or client address) gets 404 on every job URL, authorization and rate limits apply
//! at submission, the job's call carries the backend's credential and claim headers (never the
//! caller's key, which is never stored), and `Idempotency-Key` replays per principal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jobs_support;

use jobs_support::{PATIENCE, Sidecar, calls, fixture, reason, tool_call};
use reqwest::Method;
use serde_json::{Value, json};

const KEY_A: &str = "jobs-e2e-key-alice-0123456789";
const KEY_B: &str = "jobs-e2e-key-bob-0123456789ab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_principal_gets_404_on_every_job_url() {
    let backend = fixture().await;
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
    let sidecar = Sidecar::for_backend(
        &backend.mcp_url(),
        "",
        "",
        auth,
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
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
    let sidecar = Sidecar::for_backend(
        &backend.mcp_url(),
        "",
        upstream,
        auth,
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
    let stored = store_bytes(&sidecar.data_dir());
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
async fn on_a_public_upstream_the_owner_is_the_client_address_and_forwarded_headers_do_not_change_it()
 {
    let backend = fixture().await;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
async fn rate_limits_apply_at_submission_and_a_refused_submission_stores_nothing() {
    let backend = fixture().await;
    let limits = r#"
[[rate_limit]]
name = "slow-sleep"
key = ["client_ip"]
rate = 1
per = "1h"
tools = ["sleep"]
"#;
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", limits, &[]).await;
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
    let sidecar = Sidecar::for_backend(&backend.mcp_url(), "", "", "", &[]).await;
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
