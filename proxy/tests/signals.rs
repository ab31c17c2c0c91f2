//! The `mcp-sidecar` binary's signals: SIGTERM's drain delay (readiness off at once, connections
//! still accepted), streams cut at the end of the grace period logged as `shutdown`, and SIGHUP
//! reloading the config file (no longer ending the process).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jobs_support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use jobs_support::{PATIENCE, POLL, Sidecar, config, data_dir, fixture, tool_call};
use serde_json::{Value, json};

/// Waits (bounded) until a log line satisfies `found`; that line, parsed.
async fn wait_for_line(log: &Arc<Mutex<Vec<String>>>, found: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let hit = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| found(v));
        if let Some(v) = hit {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no such log line: {:#?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_logged_as_a_reload_request_and_does_not_end_the_process() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&backend.mcp_url(), &data_dir(dir.path()), "", "", "");
    let sidecar = Sidecar::start(&cfg, dir.path(), &[]).await;
    let log = sidecar.log_handle();
    sidecar.signal("HUP");
    let line = wait_for_line(&log, |v| {
        v["message"].as_str().is_some_and(|m| m.contains("SIGHUP"))
    })
    .await;
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("reload requested"),
        "{line}"
    );
    // Still serving, on both listeners.
    let health = reqwest::get(sidecar.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let resp = sidecar
        .post(
            "/mcp",
            &tool_call(1, "echo", json!({"text": "after hup"})),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200);
    sidecar.terminate();
    assert_eq!(sidecar.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file_and_refuses_an_invalid_one() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&backend.mcp_url(), &data_dir(dir.path()), "", "", "");
    let sidecar = Sidecar::start(&cfg, dir.path(), &[]).await;
    let log = sidecar.log_handle();
    let file = dir.path().join("sidecar.toml");
    let other = format!(
        "{cfg}\n[[upstream]]\nname = \"other\"\nurl = \"{}\"\npath = \"/other\"\n",
        backend.mcp_url()
    );
    std::fs::write(&file, &other).unwrap();
    sidecar.signal("HUP");
    let reloaded = wait_for_line(&log, |v| v["message"] == "config reloaded").await;
    assert_eq!(reloaded["trigger"], "SIGHUP", "{reloaded}");
    let resp = sidecar
        .post(
            "/other",
            &tool_call(1, "echo", json!({"text": "new route"})),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200);

    std::fs::write(
        &file,
        other.replace("path = \"/other\"", "pth = \"/other\""),
    )
    .unwrap();
    sidecar.signal("HUP");
    let refused = wait_for_line(&log, |v| {
        v["message"] == "config reload refused; the running config stays"
    })
    .await;
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("did you mean `path`"), "{error}");
    assert!(error.contains(&format!("{}:", file.display())), "{error}");
    // Both routes still served: the running config stayed.
    for path in ["/mcp", "/other"] {
        let resp = sidecar
            .post(path, &tool_call(2, "echo", json!({"text": "still"})), &[])
            .await;
        assert_eq!(resp.status(), 200, "{path}");
    }
    sidecar.terminate();
    assert_eq!(sidecar.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_accepting_through_the_drain_delay_and_logs_cut_streams_as_shutdown() {
    let backend = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&backend.mcp_url(), &data_dir(dir.path()), "", "", "").replace(
        "grace_period = \"2s\"",
        "grace_period = \"1s\"\ndrain_delay = \"3s\"",
    );
    let sidecar = Sidecar::start(&cfg, dir.path(), &[]).await;
    let log = sidecar.log_handle();
    // A standing stream: it outlives the grace period, so the sidecar cuts it.
    let mut stream = reqwest::Client::new()
        .get(sidecar.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The same over HTTP/2, whose streams run in tasks of their own.
    let mut h2_stream = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .get(sidecar.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(h2_stream.status(), 200);
    assert_eq!(h2_stream.version(), reqwest::Version::HTTP_2);

    let began = Instant::now();
    sidecar.terminate();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ready = reqwest::get(sidecar.admin_url("/readyz")).await.unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(POLL).await;
    }
    // A new client connection during the delay is still served.
    let resp = reqwest::Client::new()
        .post(sidecar.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(tool_call(2, "echo", json!({"text": "during the delay"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        began.elapsed() < std::time::Duration::from_secs(3),
        "served within the drain delay: {:?}",
        began.elapsed()
    );
    while let Ok(Some(_)) = stream.chunk().await {}
    while let Ok(Some(_)) = h2_stream.chunk().await {}
    assert_eq!(sidecar.wait_exit().await, Some(0));
    assert!(began.elapsed() >= std::time::Duration::from_secs(4));
    let cut = |v: &Value| v["target"] == "access" && v["method"] == "GET";
    // Both lines were written before the exit; the reader thread may still be taking them in.
    let deadline = Instant::now() + PATIENCE;
    let lines = loop {
        let lines: Vec<Value> = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| cut(v))
            .collect();
        if lines.len() >= 2 || Instant::now() >= deadline {
            break lines;
        }
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(lines.len(), 2, "one line per stream: {lines:#?}");
    for line in &lines {
        assert_eq!(line["outcome"], "shutdown", "{line}");
    }
    let served = wait_for_line(&log, |v| v["target"] == "access" && v["method"] == "POST").await;
    assert_eq!(served["outcome"], "complete", "{served}");
}
