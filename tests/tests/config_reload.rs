//! Config reload (issue 20, "Change it without a restart"): `POST /config/reload` on the admin
//! listener reads the config file again. A valid file applies to new requests while a stream and
//! a slow call started before finish on the old config; an open circuit of an unchanged upstream
//! stays open; an invalid file is refused with its place and the old config serves on; a changed
//! listener address is refused as needing a restart. (SIGHUP, the same reload, is proven on the
//! binary in `proxy/tests/signals.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use mcp_e2e_tests::{
    ACCEPT_BOTH, EventReader, RunningSidecar, call, client, eventually, json_fixture, metric_value,
    start_from_file,
};
use serde_json::{Value, json};

/// A config file's text: ephemeral loopback ports, no job engine, `rest` after.
fn config(rest: &str) -> String {
    format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[shutdown]
drain_delay = "0s"
[jobs]
enabled = false
{rest}
"#
    )
}

fn upstream(name: &str, url: &str, path: &str) -> String {
    format!("[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\npath = \"{path}\"\n")
}

async fn post(sidecar: &RunningSidecar, path: &str, body: String) -> reqwest::Response {
    client()
        .post(sidecar.url(path))
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `POST /config/reload`: the status and the JSON answer.
async fn reload(sidecar: &RunningSidecar) -> (u16, Value) {
    let resp = client()
        .post(sidecar.admin_url("/config/reload"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn running_hash(sidecar: &RunningSidecar) -> String {
    let doc: Value = reqwest::get(sidecar.admin_url("/config"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["hash"].as_str().unwrap().to_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_to_new_requests_while_a_stream_and_a_slow_call_finish() {
    let backend = json_fixture().await;
    let url = backend.mcp_url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.toml");
    write(&file, &config(&upstream("u", &url, "/mcp")));
    let sidecar = start_from_file(&file).await;
    let hash_before = running_hash(&sidecar).await;

    // Started on the old config: a streamed call (progress events, then its result) and a slow
    // plain call.
    let progress = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "progress", "arguments": {"steps": 4, "interval_ms": 250},
        "_meta": {"progressToken": "t"}}});
    let stream = post(&sidecar, "/mcp", progress.to_string()).await;
    assert_eq!(stream.status(), 200);
    let mut events = EventReader::new(stream);
    assert!(events.next_event().await.is_some(), "the stream is open");
    let slow = tokio::spawn({
        let url = sidecar.url("/mcp");
        async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .header("accept", ACCEPT_BOTH)
                .body(call(2, "sleep", json!({"ms": 800})))
                .send()
                .await
                .unwrap()
        }
    });

    // The slow call is with the backend (so admitted on the old config) before the reload.
    eventually("the slow call reached the backend", || {
        backend.stats().by_tool.get("sleep") == Some(&1)
    })
    .await;

    // The new config: a second route, and a rate limit of one call a minute per client.
    write(
        &file,
        &config(&format!(
            "{}{}[[rate_limit]]\nname = \"one-a-minute\"\nrate = 1\nper = \"1m\"\nkey = [\"client_ip\"]\n",
            upstream("u", &url, "/mcp"),
            upstream("v", &url, "/v"),
        )),
    );
    let (status, answer) = reload(&sidecar).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "ok");
    assert_eq!(answer["previous_hash"], hash_before.as_str());
    let hash_after = answer["hash"].as_str().unwrap().to_owned();
    assert_ne!(hash_after, hash_before);
    assert_eq!(answer["changed"], json!(["rate_limit", "upstream"]));

    // New requests: the new route serves, and the new rule counts from the first.
    let resp = post(
        &sidecar,
        "/v",
        call(3, "echo", json!({"text": "new route"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = post(
        &sidecar,
        "/mcp",
        call(4, "echo", json!({"text": "limited"})),
    )
    .await;
    assert_eq!(resp.status(), 429);

    // What started before finishes, on the old config.
    let mut last = None;
    while let Some(event) = events.next_event().await {
        last = Some(event);
    }
    let last = last.expect("the stream went on after the reload");
    assert!(
        last.contains("completed 4 steps"),
        "ends with the result: {last}"
    );
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 200);
    assert!(slow.text().await.unwrap().contains("slept 800 ms"));

    // Every view of the running config says the new one.
    assert_eq!(running_hash(&sidecar).await, hash_after);
    let metrics = sidecar.metrics().await;
    let info = format!("mcp_sidecar_config_info{{hash=\"{hash_after}\"}}");
    assert_eq!(metric_value(&metrics, &info), Some(1.0), "{metrics}");
    assert!(
        !metrics.contains(&hash_before),
        "the old hash's series is gone"
    );
    assert_eq!(
        metric_value(&metrics, "mcp_sidecar_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_of_an_unchanged_upstream_stays_open_across_a_reload() {
    let backend = json_fixture().await;
    // Nothing listens on port 9 (discard) on loopback: every attempt fails at connect, at once.
    let broken = format!(
        "{}[upstream.retry]\nmax_retries = 0\n[upstream.breaker]\nconsecutive_failures = 2\n\
         open_duration = \"1h\"\nmax_open_duration = \"1h\"\n",
        upstream("down", "http://127.0.0.1:9/mcp", "/down")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.toml");
    write(&file, &config(&broken));
    let sidecar = start_from_file(&file).await;
    for id in 0..2 {
        let resp = post(&sidecar, "/down", call(id, "echo", json!({"text": "x"}))).await;
        assert_eq!(resp.status(), 502);
    }
    let resp = post(&sidecar, "/down", call(2, "echo", json!({"text": "x"}))).await;
    assert_eq!(resp.status(), 503, "the circuit opened");

    write(
        &file,
        &config(&format!(
            "{broken}{}",
            upstream("ok", &backend.mcp_url(), "/ok")
        )),
    );
    let (status, answer) = reload(&sidecar).await;
    assert_eq!(status, 200, "{answer}");

    let resp = post(&sidecar, "/down", call(3, "echo", json!({"text": "x"}))).await;
    assert_eq!(resp.status(), 503, "still open after the reload");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["data"]["reason"], "circuit_open");
    let breakers: Value = reqwest::get(sidecar.admin_url("/breakers"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let down = breakers["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "down")
        .unwrap();
    assert_eq!(down["state"], "open");
    assert_eq!(down["trips"], 1);
    let resp = post(&sidecar, "/ok", call(4, "echo", json!({"text": "new"}))).await;
    assert_eq!(resp.status(), 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_with_its_place_and_the_old_config_serves_on() {
    let backend = json_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.toml");
    let good = config(&upstream("u", &backend.mcp_url(), "/mcp"));
    write(&file, &good);
    let sidecar = start_from_file(&file).await;
    let hash = running_hash(&sidecar).await;

    write(
        &file,
        &good.replace(
            "path = \"/mcp\"",
            "path = \"/mcp\"\nconect_timeout = \"1s\"",
        ),
    );
    let (status, answer) = reload(&sidecar).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["result"], "error");
    let error = answer["error"].as_str().unwrap();
    // As `mcp-sidecar check` says it: the field's path, the closest key, FILE:LINE:COL.
    assert!(error.contains("upstream[0]"), "{error}");
    assert!(error.contains("did you mean `connect_timeout`"), "{error}");
    let line = good.lines().position(|l| l == "path = \"/mcp\"").unwrap() + 2;
    assert!(
        error.contains(&format!("{}:{line}:1", file.display())),
        "{error}"
    );

    let resp = post(&sidecar, "/mcp", call(1, "echo", json!({"text": "still"}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(running_hash(&sidecar).await, hash);
    let metrics = sidecar.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "mcp_sidecar_config_reloads_total{result=\"error\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "mcp_sidecar_config_last_reload_successful"),
        Some(0.0)
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_listener_address_is_refused_as_needing_a_restart() {
    let backend = json_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.toml");
    let good = config(&upstream("u", &backend.mcp_url(), "/mcp"));
    write(&file, &good);
    let sidecar = start_from_file(&file).await;
    let hash = running_hash(&sidecar).await;

    // A new route along with it: nothing of the file applies (all or nothing).
    let moved = format!(
        "{}{}",
        good.replace(
            "[admin]\naddr = \"127.0.0.1:0\"",
            "[admin]\naddr = \"127.0.0.1:1\""
        ),
        upstream("v", &backend.mcp_url(), "/v")
    );
    write(&file, &moved);
    let (status, answer) = reload(&sidecar).await;
    assert_eq!(status, 409, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("admin.addr"), "{error}");
    assert!(error.contains("needs a restart"), "{error}");
    assert_eq!(running_hash(&sidecar).await, hash);
    let resp = post(&sidecar, "/v", call(1, "echo", json!({"text": "no"}))).await;
    assert_eq!(resp.status(), 404);
    let resp = post(&sidecar, "/mcp", call(2, "echo", json!({"text": "yes"}))).await;
    assert_eq!(resp.status(), 200);
    sidecar.stop().await;
}

/// Submits `body` as a job (`Prefer: respond-async`); its id.
async fn submit(sidecar: &RunningSidecar, body: String) -> String {
    let resp = client()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("prefer", "respond-async")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let doc: Value = resp.json().await.unwrap();
    doc["id"].as_str().unwrap().to_owned()
}

/// Polls the job until it has ended (bounded); its document.
async fn ended(sidecar: &RunningSidecar, id: &str) -> Value {
    reached(sidecar, id, &["completed", "failed", "cancelled"]).await
}

/// Polls the job until its status is one of `statuses` (bounded); its document.
async fn reached(sidecar: &RunningSidecar, id: &str, statuses: &[&str]) -> Value {
    for _ in 0..400 {
        let doc: Value = client()
            .get(sidecar.url(&format!("/jobs/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if doc["status"]
            .as_str()
            .is_some_and(|s| statuses.contains(&s))
        {
            return doc;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("job {id} never reached {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_reload_and_a_queued_one_runs_on_the_new_config() {
    let old_backend = json_fixture().await;
    let new_backend = json_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.toml");
    // One job at a time, in memory: the second waits in the queue across the reload.
    let with_jobs = |url: &str| {
        config(&upstream("u", url, "/mcp")).replace(
            "[jobs]\nenabled = false",
            "[jobs]\nstore = \"memory\"\nmax_running = 1",
        )
    };
    write(&file, &with_jobs(&old_backend.mcp_url()));
    let sidecar = start_from_file(&file).await;
    let running = submit(&sidecar, call(1, "sleep", json!({"ms": 600}))).await;
    reached(&sidecar, &running, &["working"]).await;
    let queued = submit(&sidecar, call(2, "echo", json!({"text": "queued"}))).await;
    let doc = reached(&sidecar, &queued, &["queued"]).await;
    assert_eq!(doc["status"], "queued");

    // The same upstream, moved to another backend.
    write(&file, &with_jobs(&new_backend.mcp_url()));
    let (status, answer) = reload(&sidecar).await;
    assert_eq!(status, 200, "{answer}");

    let done = ended(&sidecar, &running).await;
    assert_eq!(done["status"], "completed", "{done}");
    let done = ended(&sidecar, &queued).await;
    assert_eq!(done["status"], "completed", "{done}");
    let calls = |backend: &mcp_fixtures::FixtureServer, tool: &str| {
        backend.stats().by_tool.get(tool).copied().unwrap_or(0)
    };
    // The running job finished where it started; the queued one ran on the new config.
    assert_eq!(calls(&old_backend, "sleep"), 1);
    assert_eq!(calls(&old_backend, "echo"), 0);
    assert_eq!(calls(&new_backend, "echo"), 1);
    sidecar.stop().await;
}
